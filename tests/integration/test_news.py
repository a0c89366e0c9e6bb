"""A console's news, read from the database on SQLite and PostgreSQL: runs started by
alerts and schedules, and failed runs, each told once; the console's own runs and what
happened before it opened are not news; `quiet` silences it."""

from __future__ import annotations

from datetime import timedelta

from bot.news import News
from tests.conftest import HarnessFactory

OK = """
    name: ok
    steps:
      - id: hello
        action: log
        with: {message: hello}
"""

BAD = """
    name: bad
    steps:
      - id: boom
        action: shell
        with: {argv: [sh, -c, "echo 'disk full' >&2; exit 3"]}
"""


async def test_news_of_runs_started_elsewhere_and_of_failures(harness: HarnessFactory) -> None:
    h = await harness({"ok": OK, "bad": BAD})
    await h.run("bad", trigger="alert", requested_by="alert:alertmanager")  # before: old news
    mine: set[str] = set()
    news = News(h.store, watched=mine.__contains__)
    await news.start()
    assert await news.look() == []

    scheduled = await h.run("ok", trigger="schedule", requested_by="playbook:ok")
    assert await news.look() == [f"» run {scheduled}: ok started by a schedule (playbook:ok)"]
    assert await news.look() == []  # told once, though its instant is the cursor's

    failed = await h.run("bad", trigger="cli", requested_by="bob")
    by_alert = await h.run("bad", trigger="alert", requested_by="alert:grafana")
    said = await news.look()  # starts first; runs of one instant (the manual clock's) by id
    assert said[0] == f"» run {by_alert}: bad started by an alert (alert:grafana)"
    assert sorted(said[1:]) == sorted(
        f"✗ run {run}: bad failed: step boom failed: exit status 3: disk full"
        for run in (failed, by_alert)
    )
    h.clock.advance(timedelta(seconds=5))  # the cursors move on
    later = await h.run("bad", trigger="api", requested_by="ci")
    assert await news.look() == [
        f"✗ run {later}: bad failed: step boom failed: exit status 3: disk full"
    ]

    own = await h.run("bad", trigger="console", requested_by="carol")
    mine.add(own)  # the console shows its own runs' progress: no news of them
    await h.run("ok", trigger="api", requested_by="ci")  # neither started by nor failed
    assert await news.look() == []
    assert [await news.look() for _ in range(2)] == [[], []]
    assert news.lines.qsize() == 5  # what the console prints, in order


async def test_quiet_silences_the_news_until_toggled_again(harness: HarnessFactory) -> None:
    h = await harness({"ok": OK, "bad": BAD})
    news = News(h.store)
    await news.start()
    assert (await news.toggle()).startswith("quiet:")
    await h.run("ok", trigger="schedule", requested_by="playbook:ok")
    await h.run("bad", trigger="cli", requested_by="bob")
    assert await news.look() == []
    assert (await news.toggle()).startswith("announcing")
    assert await news.look() == []  # what happened while quiet stays untold
    failed = await h.run("bad", trigger="cli", requested_by="bob")
    assert await news.look() == [
        f"✗ run {failed}: bad failed: step boom failed: exit status 3: disk full"
    ]


async def test_a_run_committed_after_a_look_it_predates_is_still_news(
    harness: HarnessFactory,
) -> None:
    """Another process stamps its run, the console looks (seeing a newer run), and only
    then that run's commit lands: the next look still tells of it."""
    h = await harness({"ok": OK})
    news = News(h.store)
    await news.start()
    h.clock.advance(timedelta(seconds=10))
    newer = await h.run("ok", trigger="schedule", requested_by="playbook:ok")
    assert len(await news.look()) == 1
    h.clock.advance(timedelta(seconds=-3))  # stamped before the run the look saw
    older = await h.run("ok", trigger="alert", requested_by="alert:alertmanager")
    assert await news.look() == [f"» run {older}: ok started by an alert (alert:alertmanager)"]
    assert newer != older and await news.look() == []
