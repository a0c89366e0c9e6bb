"""Analytics (``engine.views.analytics``) on runs made through the engine with a manual clock,
so every duration is known; the chat command ``stats`` over the same runs. SQLite and
PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from bot.commands import Actor, Commands
from engine.alerts.model import Alert
from engine.alerts.router import AlertPolicy, AlertRouter
from engine.errors import PlaybookNotFound
from engine.views import analytics
from tests.conftest import HarnessFactory
from tests.harness import Harness

PLAYBOOKS = {
    "diamond": """
        name: diamond
        steps:
          - {id: a, action: wait, with: {for: 10s}}
          - {id: b, action: wait, needs: a, with: {for: 20s}}
          - {id: c, action: wait, needs: a, with: {for: 60s}}
          - {id: d, action: wait, needs: [b, c], with: {for: 10s}}
    """,
    "flaky": """
        name: flaky
        params:
          marker: {type: string, required: true}
        steps:
          - id: flip
            action: shell
            with:
              argv: [sh, -c, 'test -e "$0" || { touch "$0"; exit 1; }', "{{ params.marker }}"]
            retry: {attempts: 2, delay: 5s}
          - {id: after, action: log, needs: flip, with: {message: done}}
    """,
    "broken": """
        name: broken
        steps:
          - {id: boom, action: shell, with: {argv: ["false"]}}
    """,
    "disk": """
        name: disk
        triggers:
          - alert: {match: {alertname: DiskFull}}
        steps:
          - {id: clean, action: wait, with: {for: 5m}}
    """,
}
ALICE = Actor(id="alice", name="Alice", via="console")


async def diamond(h: Harness) -> str:
    """One diamond run: a 10 s, then b 20 s and c 60 s side by side, then d 10 s."""
    run_id = await h.run("diamond")
    for seconds in (10, 20, 40, 10):
        await h.advance(seconds)
    assert (await h.run_row(run_id)).status == "succeeded"
    return run_id


async def flaky(h: Harness, tmp_path: Path, n: int) -> None:
    """A run whose step fails once, then succeeds on its retry 5 s later."""
    run_id = await h.run("flaky", {"marker": str(tmp_path / f"marker-{n}")})
    await h.advance(5)
    assert (await h.run_row(run_id)).status == "succeeded"


async def test_durations_success_flaky_steps_and_the_critical_path(
    harness: HarnessFactory, tmp_path: Path
) -> None:
    h = await harness(PLAYBOOKS)
    await diamond(h)
    await diamond(h)
    await flaky(h, tmp_path, 1)
    await h.run("broken")
    stats = await analytics.of_engine(h.engine)

    by_name = {pb.playbook: pb for pb in stats.playbooks}
    assert set(by_name) == {"diamond", "flaky", "broken"}
    assert (by_name["diamond"].runs, by_name["diamond"].success_rate) == (2, 1.0)
    assert by_name["diamond"].duration.p50 == pytest.approx(80, abs=0.01)
    assert by_name["broken"].success_rate == 0.0
    today = h.clock.now().date().isoformat()
    assert by_name["diamond"].per_day[today] == 2 and len(by_name["diamond"].per_day) == 31
    assert by_name["diamond"].steps == []  # the details come with one playbook

    (pb,) = (await analytics.of_engine(h.engine, playbook="diamond")).playbooks
    steps = {s.step: s for s in pb.steps}
    assert {k: s.duration.p95 for k, s in steps.items()} == pytest.approx(
        {"a": 10, "b": 20, "c": 60, "d": 10}, abs=0.01
    )
    assert pb.critical_path is not None
    assert pb.critical_path.chain == ["a", "c", "d"] and pb.critical_path.chain_runs == 2
    assert pb.critical_path.share == pytest.approx({"a": 0.125, "c": 0.75, "d": 0.125}, abs=1e-3)
    assert pb.flaky == []

    (pb,) = (await analytics.of_engine(h.engine, playbook="flaky")).playbooks
    steps = {s.step: s for s in pb.steps}
    assert pb.flaky == ["flip"]
    assert (steps["flip"].flaky, steps["flip"].retry_rate, steps["flip"].failure_rate) == (1, 1, 0)
    assert steps["after"].retry_rate == 0 and pb.success_rate == 1.0
    (pb,) = (await analytics.of_engine(h.engine, playbook="broken")).playbooks
    assert pb.steps[0].failure_rate == 1.0 and pb.flaky == []

    h.clock.advance(timedelta(days=31))  # the runs fall out of the window
    assert (await analytics.of_engine(h.engine)).playbooks == []
    assert (await analytics.of_engine(h.engine, days=40)).playbooks


async def test_time_from_the_alert_to_the_end_of_the_run_it_started(
    harness: HarnessFactory,
) -> None:
    h = await harness(PLAYBOOKS)
    alerts = AlertRouter(h.engine, AlertPolicy(global_rate=(100, 60.0)))
    await alerts.start()
    try:
        began = h.clock.now() - timedelta(minutes=1)  # it fired a minute before Baton heard
        alert = Alert(
            source="alertmanager",
            fingerprint="fp-1",
            status="firing",
            labels={"alertname": "DiskFull"},
            starts_at=began,
        )
        await alerts.receive([alert])
        await alerts.idle()
        await h.engine.wait_idle()
        await h.advance(300)
    finally:
        await alerts.stop()
    stats = await analytics.of_engine(h.engine, playbook="disk")
    (pb,) = stats.playbooks
    assert (pb.runs, pb.succeeded) == (1, 1)
    assert pb.mttr.count == 1 and pb.mttr.p50 == pytest.approx(360, abs=0.01)
    assert stats.mttr.p95 == pytest.approx(360, abs=0.01)
    assert (await analytics.of_engine(h.engine, playbook="diamond")).mttr.count == 0


async def test_stats_in_chat(harness: HarnessFactory, tmp_path: Path) -> None:
    h = await harness(PLAYBOOKS)
    cmds = Commands(engine=h.engine, schedules=h.schedules, timezone="UTC")
    empty = await cmds.handle(ALICE, "stats", {})
    assert empty.ok and empty.lines == ["no runs in the last 30 days"]
    await diamond(h)
    await flaky(h, tmp_path, 1)

    reply = await cmds.handle(ALICE, "stats", {})
    assert reply.ok and reply.table_at == 1
    header, *rows = reply.lines[1:]
    assert header.split() == ["playbook", "runs", "succeeded", "p50", "p95", "alert->end", "p95"]
    assert [r.split()[:3] for r in rows] == [["diamond", "1", "100%"], ["flaky", "1", "100%"]]
    column = header.index("runs")  # aligned: every count starts under its header
    assert all(row[column - 2 : column] == "  " and row[column] != " " for row in rows)

    reply = await cmds.handle(ALICE, "stats diamond days=7", {})
    assert reply.ok and reply.lines[0].startswith("diamond, the last 7 days: 1 runs, 100%")
    assert "critical path (1 of 1 recent runs): a -> c -> d" in reply.lines
    assert "share of the time: c 75%, a 12%, d 12%" in reply.lines
    table = reply.lines[reply.table_at or 0 :]
    assert table[0].split() == ["step", "runs", "p50", "p95", "failed", "retried", "flaky"]
    assert table[3].split() == ["c", "1", "1m00s", "1m00s", "0%", "0%", "0"]
    column = table[0].index("p95")
    assert all(line[column - 2 : column] == "  " and line[column] != " " for line in table)

    reply = await cmds.handle(ALICE, "stats flaky", {})
    assert "flaky (succeeded only after retries): flip" in reply.lines

    unknown = await cmds.handle(ALICE, "stats diamnod", {})
    assert not unknown.ok and "Did you mean `diamond`?" in unknown.text
    for bad in ("stats days=0", "stats a b", "stats days=x"):
        answer = await cmds.handle(ALICE, bad, {})
        assert not answer.ok and "stats" in answer.text and "Traceback" not in answer.text
    with pytest.raises(PlaybookNotFound):
        await analytics.of_engine(h.engine, playbook="nope")
