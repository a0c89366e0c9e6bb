"""The dashboard's live feed of one run (``bot.dashboard.live.Feed``): what it sends as
the run's logs grow: the lines added at the end alone, the cut tail when the page would
otherwise hold too much or when something changed inside."""

from __future__ import annotations

from typing import Any

import pytest

from bot.dashboard import live
from engine.bus import EventBus
from engine.views import runlogs
from tests.fakes.livepage import LivePage


def logs(lines: int, status: str = "running", extra: list[str] | None = None) -> runlogs.Logs:
    sections = [runlogs.Section("run", ["run r1 (pb)"])]
    sections += [runlogs.Section("x", extra)] if extra else []  # an attempt's, say
    sections += [runlogs.Section(f"log:{n}", [f"line {n}"]) for n in range(lines)]
    sections.append(runlogs.Section("end", [f"run r1 {status}"], status != "running"))
    return runlogs.Logs("r1", status, sections)


def data(event: bytes) -> str:
    return "\n".join(line[6:] for line in event.decode().splitlines() if line.startswith("data: "))


def shown(feed: live.Feed) -> LivePage:
    """The page of a client that got the feed's events so far."""
    page = LivePage()
    for event in [feed.log, *feed.appends, feed.footer]:
        name = event.decode().split("\n", 1)[0].removeprefix("event: ")
        page.apply(name, data(event))
    return page


def text(sections: list[runlogs.Section]) -> str:
    return "\n".join(line for s in sections for line in s.lines)


async def test_lines_go_out_alone_until_the_page_holds_twice_the_tail(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def read(store: Any, run_id: str) -> runlogs.Logs:
        return logs(390)

    monkeypatch.setattr(runlogs, "read", read)
    feed = live.Feed(None, EventBus(), "r1")  # type: ignore[arg-type]
    try:
        await feed.ready
        assert shown(feed).text.splitlines()[0] == "run r1 (pb)" and not feed.appends
        assert data(feed.footer) == "run r1 running"
        first = feed.log

        feed._update(logs(400))  # 10 lines more: only they go out
        assert feed.log is first and len(feed.appends) == 1
        assert shown(feed).text == text(logs(400).sections)
        assert "line 389" not in data(feed.appends[0])

        feed._update(logs(800))  # the page would show 801 lines: the tail, cut, instead
        assert feed.appends == []
        lines = shown(feed).text.splitlines()
        assert lines[0] == "... 401 earlier lines: see the full logs"
        assert lines[1:-1] == [f"line {n}" for n in range(400, 800)]  # TAIL lines, and
        assert lines[-1] == "run r1 running"  # the run's own

        feed._update(logs(801))  # and from there, lines alone again
        assert [data(e) for e in feed.appends] == [
            '<span hx-swap-oob="afterend:#l-log-799"><span id="l-log-800">line 800\n</span></span>'
        ]

        before = feed.log
        feed._update(logs(801, extra=["an attempt's output"]))  # before the cut: the tail
        assert feed.log is not before and feed.appends == []
        assert shown(feed).text.startswith("... 403 earlier lines")

        feed._update(logs(801, "succeeded", extra=["an attempt's output"]))
        assert data(feed.footer) == "run r1 succeeded" and data(feed.end) == "succeeded"
    finally:
        feed.close()


def parallel(left: list[str], right: list[str], done: str = "") -> runlogs.Logs:
    """Two steps running side by side, each attempt followed by the lines it logged."""

    def step(name: str, said: list[str]) -> list[runlogs.Section]:
        ended = name == done
        head = f"== {name} . attempt 1 . {'succeeded' if ended else 'running'} =="
        attempt = runlogs.Section(f"attempt:{name}", [head, f"[stdout]\n{name} out"], ended)
        return [attempt] + [
            runlogs.Section(f"log:{name}{n}", [line]) for n, line in enumerate(said)
        ]

    sections = [runlogs.Section("run", ["run r1 (pb)"]), *step("a", left), *step("b", right)]
    sections.append(runlogs.Section("end", ["run r1 running"], False))
    return runlogs.Logs("r1", "running", sections)


async def test_parallel_steps_logging_in_the_middle_send_only_what_changed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def read(store: Any, run_id: str) -> runlogs.Logs:
        return parallel(["a says 0"], ["b says 0"])

    monkeypatch.setattr(runlogs, "read", read)
    feed = live.Feed(None, EventBus(), "r1")  # type: ignore[arg-type]
    try:
        await feed.ready
        first = feed.log
        steps = [
            parallel(["a says 0", "a says 1"], ["b says 0"]),  # a line in the middle
            parallel(["a says 0", "a says 1"], ["b says 0", "b says 1"]),
            parallel(["a says 0", "a says 1"], ["b says 0", "b says 1"], done="a"),  # a ends
        ]
        for n, now in enumerate(steps, 1):
            feed._update(now)
            assert feed.log is first and len(feed.appends) == n  # never the whole tail again
            page = shown(feed)
            assert (
                page.text
                == "".join(line + "\n" for _, lines in live.body(now) for line in lines)
                + "run r1 running"
            )
        assert "b says" not in data(feed.appends[0]) and "run r1" not in data(feed.appends[2])
        assert shown(feed).ids == [
            "l-run", "l-attempt-a", "l-log-a0", "l-log-a1", "l-attempt-b", "l-log-b0", "l-log-b1"
        ]  # fmt: skip
        assert "a out" in data(feed.appends[2])  # the ended attempt, whole, in its place
    finally:
        feed.close()


def test_a_carriage_return_ends_a_data_line_and_cannot_pose_as_an_event() -> None:
    """An event stream ends lines at CR, LF or CRLF: a progress bar's ``\\r`` left inside a
    ``data:`` line cut the event short, and what followed could read as events."""
    sent = live.event("log", "progress 10%\r\revent: end\rdata: forged\r\n\rdone")
    lines = sent.decode().split("\n")
    assert lines == [
        "event: log",
        "data: progress 10%",
        "data: ",
        "data: event: end",
        "data: data: forged",
        "data: ",
        "data: done",
        "",
        "",
    ]
    assert "\r" not in sent.decode()
