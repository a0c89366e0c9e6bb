"""The dashboard's live feed of one run (``bot.dashboard.live.Feed``): what it sends as
the run's logs grow: the lines added at the end alone, the cut tail when the page would
otherwise hold too much or when something changed inside."""

from __future__ import annotations

from typing import Any

import pytest

from bot.dashboard import live
from engine import runlogs
from engine.bus import EventBus


def logs(lines: int, status: str = "running", extra: list[str] | None = None) -> runlogs.Logs:
    sections = [runlogs.Section("run", ["run r1 (pb)"])]
    sections += [runlogs.Section("x", extra)] if extra else []  # an attempt's, say
    sections += [runlogs.Section(f"log:{n}", [f"line {n}"]) for n in range(lines)]
    sections.append(runlogs.Section("end", [f"run r1 {status}"], status != "running"))
    return runlogs.Logs("r1", status, sections)


def data(event: bytes) -> str:
    return "\n".join(line[6:] for line in event.decode().splitlines() if line.startswith("data: "))


async def test_lines_go_out_alone_until_the_page_holds_twice_the_tail(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def read(store: Any, run_id: str) -> runlogs.Logs:
        return logs(390)

    monkeypatch.setattr(runlogs, "read", read)
    feed = live.Feed(None, EventBus(), "r1")  # type: ignore[arg-type]
    try:
        await feed.ready
        assert data(feed.log).splitlines()[0] == "run r1 (pb)" and not feed.appends
        assert data(feed.footer) == "run r1 running"
        first = feed.log

        feed._update(logs(400))  # 10 lines more: only they go out
        assert feed.log is first
        assert [data(e) for e in feed.appends] == [
            "\n" + "\n".join(f"line {n}" for n in range(390, 400))
        ]

        feed._update(logs(800))  # the page would show 801 lines: the tail, cut, instead
        assert feed.appends == []
        shown = data(feed.log).splitlines()
        assert shown[0] == "... 402 earlier lines: see the full logs"
        assert shown[1:] == [f"line {n}" for n in range(401, 800)] and len(shown) == 400

        feed._update(logs(801))  # and from there, lines alone again
        assert [data(e) for e in feed.appends] == ["\nline 800"]

        before = feed.log
        feed._update(logs(801, extra=["an attempt's output"]))  # not at the end: the tail
        assert feed.log is not before and feed.appends == []
        assert data(feed.log).startswith("... 404 earlier lines")

        feed._update(logs(801, "succeeded", extra=["an attempt's output"]))
        assert data(feed.footer) == "run r1 succeeded" and data(feed.end) == "succeeded"
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
