"""Alert routing on a real engine and database: matching, dedup, storms, resolution.
Time is the harness's manual clock; rate windows use a monotonic clock of the test's."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from engine import events as ev
from engine.alerts.model import Alert, Link, Rejected
from engine.alerts.router import AlertPolicy, AlertRouter
from storage import tables as t
from tests.conftest import HarnessFactory
from tests.harness import Harness

DISK = """
    name: disk-cleanup
    params:
      host: {type: string, required: true}
      pct: {type: int, default: 90}
    triggers:
      - alert:
          source: alertmanager
          match: {alertname: DiskFull, severity: "critical|warning", env: "!dev"}
          params: {host: "{{ alert.labels.instance }}"}
          channel: C0OPS
          mention: ["@oncall"]
          rate: 2/10m
          dedup: 10m
          on_resolved: {playbook: disk-report, params: {host: "{{ alert.labels.instance }}"}}
    steps:
      - id: clean
        action: wait
        with: {for: 5m}
"""

REPORT = """
    name: disk-report
    params:
      host: {type: string, required: true}
    steps:
      - id: say
        action: log
        with: {message: "{{ params.host }} is fine again"}
"""

ANY_DISK = """
    name: disk-audit
    triggers:
      - alert: {matchers: ['alertname="DiskFull"'], cancel_on_resolved: true}
    steps:
      - id: look
        action: wait
        with: {for: 1h}
"""

BROKEN = """
    name: needs-number
    params:
      n: {type: int, required: true}
    triggers:
      - alert: {match: {alertname: Weird}, params: {n: "{{ alert.labels.count }}"}}
    steps:
      - id: a
        action: log
        with: {message: "{{ params.n }}"}
"""

PLAYBOOKS = {"disk-cleanup": DISK, "disk-report": REPORT, "disk-audit": ANY_DISK, "weird": BROKEN}


class Ticks:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def routed(harness: HarnessFactory) -> AsyncIterator[tuple[Harness, AlertRouter, Ticks]]:
    h = await harness(PLAYBOOKS)
    ticks = Ticks()
    alerts = AlertRouter(h.engine, AlertPolicy(global_rate=(100, 60.0)), monotonic=ticks)
    await alerts.start()
    yield h, alerts, ticks
    await alerts.stop()


def disk(
    host: str = "db-1", status: str = "firing", severity: str = "critical", **labels: str
) -> Alert:
    return Alert(
        source="alertmanager",
        fingerprint=f"fp-{host}",
        status=status,  # type: ignore[arg-type]
        labels={"alertname": "DiskFull", "instance": host, "severity": severity, **labels},
        annotations={"summary": f"/var on {host} is 97% full"},
        severity=severity,
        links=(Link("https://prom.example/graph?g0.expr=disk", "Prometheus"),),
    )


async def send(h: Harness, alerts: AlertRouter, *items: Alert) -> list[int]:
    receipt = await alerts.receive(list(items))
    await alerts.idle()
    await h.engine.wait_idle()
    return receipt.ids


async def rows(h: Harness) -> list[Any]:
    return await h.store.all(sa.select(t.alerts).order_by(t.alerts.c.id))


async def runs_of(h: Harness, playbook: str) -> list[Any]:
    return await h.store.all(
        sa.select(t.runs).where(t.runs.c.playbook == playbook).order_by(t.runs.c.created_at)
    )


async def test_a_matching_alert_starts_each_matching_playbook_with_templated_params(
    routed: tuple[Harness, AlertRouter, Ticks],
) -> None:
    h, alerts, _ = routed
    await send(h, alerts, disk("db-1"))
    (cleanup,) = await runs_of(h, "disk-cleanup")
    assert cleanup.params["host"] == "db-1" and cleanup.trigger == "alert"
    assert cleanup.requested_by == "alert:alertmanager"
    assert cleanup.source["channel"] == "C0OPS" and cleanup.source["mention"] == ["@oncall"]
    assert cleanup.source["alert"]["summary"] == "/var on db-1 is 97% full"
    assert len(await runs_of(h, "disk-audit")) == 1, "several playbooks may match one alert"
    (row,) = await rows(h)
    assert row.outcome == "started" and row.run_id is not None
    assert "disk-cleanup: started" in row.reason and "disk-audit: started" in row.reason


@pytest.mark.parametrize(
    ("labels", "severity", "started"),
    [
        ({}, "critical", True),
        ({}, "warning", True),
        ({}, "info", False),
        ({"env": "dev"}, "critical", False),
        ({"env": "prod"}, "critical", True),
    ],
    ids=["critical", "warning", "info-no", "dev-negated", "prod"],
)
async def test_matchers_follow_alertmanager(
    routed: tuple[Harness, AlertRouter, Ticks],
    labels: dict[str, str],
    severity: str,
    started: bool,
) -> None:
    h, alerts, _ = routed
    await send(h, alerts, disk("db-2", severity=severity, **labels))
    assert bool(await runs_of(h, "disk-cleanup")) is started


async def test_a_repeat_attaches_to_the_run_while_active_and_within_the_window_after(
    routed: tuple[Harness, AlertRouter, Ticks],
) -> None:
    h, alerts, _ = routed
    await send(h, alerts, disk("db-1"))
    (run,) = await runs_of(h, "disk-cleanup")
    h.events.drain()
    await send(h, alerts, disk("db-1"), disk("db-1"))
    assert len(await runs_of(h, "disk-cleanup")) == 1
    repeats = [e for e in h.events.drain() if isinstance(e, ev.AlertRepeated)]
    assert [e.repeats for e in repeats if e.run_id == run.id] == [1, 2]
    outcomes = [r.outcome for r in await rows(h)]
    assert outcomes == ["started", "attached", "attached"]

    await h.advance(5 * 60)  # the run ends (its wait step is 5 minutes)
    assert (await h.run_row(run.id)).status == "succeeded"
    h.clock.advance(timedelta(minutes=9))  # still inside `dedup: 10m`
    await send(h, alerts, disk("db-1"))
    assert len(await runs_of(h, "disk-cleanup")) == 1
    h.clock.advance(timedelta(minutes=2))  # past it: a new run
    await send(h, alerts, disk("db-1"))
    assert len(await runs_of(h, "disk-cleanup")) == 2


async def test_storms_are_held_beyond_the_rate_and_summed_up_never_dropped(
    routed: tuple[Harness, AlertRouter, Ticks],
) -> None:
    h, alerts, ticks = routed
    h.events.drain()
    await send(h, alerts, *[disk(f"db-{i}") for i in range(6)])
    assert len(await runs_of(h, "disk-cleanup")) == 2, "rate: 2/10m"
    cleanup_rows = [r for r in await rows(h) if "disk-cleanup" in (r.reason or "")]
    assert len(await rows(h)) == 6, "every alert is stored"
    assert [r.outcome for r in cleanup_rows].count("started") == 6  # disk-audit started all
    held = [e for e in h.events.drain() if isinstance(e, ev.AlertsHeld)]
    assert [e.held for e in held] == [1, 2, 3, 4]
    assert len({e.key for e in held}) == 1 and held[0].channel == "C0OPS"
    assert held[0].limit == "the rate 2/10m of disk-cleanup's alert trigger 1"
    reasons = [r.reason for r in await rows(h)]
    why = "disk-cleanup: held (over the limit of the rate 2/10m of disk-cleanup's alert trigger 1)"
    assert sum(why in (x or "") for x in reasons) == 4

    ticks.now += 601  # the window has passed: runs start again, a new hold episode after
    await send(h, alerts, *[disk(f"web-{i}") for i in range(3)])
    assert len(await runs_of(h, "disk-cleanup")) == 4
    later = [e for e in h.events.drain() if isinstance(e, ev.AlertsHeld)]
    assert [e.held for e in later] == [1] and later[0].key != held[0].key


async def test_the_global_cap_holds_alerts_of_every_trigger(harness: HarnessFactory) -> None:
    h = await harness(PLAYBOOKS)
    alerts = AlertRouter(h.engine, AlertPolicy(global_rate=(3, 60.0)), monotonic=Ticks())
    await alerts.start()
    try:
        await send(h, alerts, *[disk(f"db-{i}") for i in range(4)])
        started = len(await runs_of(h, "disk-cleanup")) + len(await runs_of(h, "disk-audit"))
        assert started == 3
        found = await rows(h)
        assert [r.outcome for r in found].count("held") == 2  # db-2 partly, db-3 all
        held = [r.reason for r in found if r.outcome == "held"]
        why = "over the limit of BATON_ALERT_RATE 3/1m, shared by all alert triggers"
        assert all(why in reason for reason in held) and "disk-cleanup: held (" in held[-1]
    finally:
        await alerts.stop()


async def test_resolution_marks_the_runs_cancels_waiting_ones_and_runs_on_resolved(
    routed: tuple[Harness, AlertRouter, Ticks],
) -> None:
    h, alerts, _ = routed
    await send(h, alerts, disk("db-1"))
    (cleanup,) = await runs_of(h, "disk-cleanup")
    (audit,) = await runs_of(h, "disk-audit")
    h.events.drain()
    h.clock.advance(timedelta(minutes=3))
    await send(h, alerts, disk("db-1", status="resolved"))
    resolved = [e for e in h.events.drain() if isinstance(e, ev.AlertResolved)]
    assert sorted(e.run_id for e in resolved) == sorted([cleanup.id, audit.id])
    assert all(e.after == 180.0 for e in resolved)
    assert (await h.run_row(audit.id)).status == "cancelled", "cancel_on_resolved"
    assert (await h.run_row(cleanup.id)).status == "waiting", "its trigger does not cancel"
    (report,) = await runs_of(h, "disk-report")
    assert report.params["host"] == "db-1" and report.source["resolves"] == cleanup.id
    assert len(await runs_of(h, "disk-cleanup")) == 1, "a resolution never starts its trigger"
    last = (await rows(h))[-1]
    assert last.outcome == "resolved" and last.run_id in (cleanup.id, audit.id)

    await send(h, alerts, disk("db-9", status="resolved"))
    assert (await rows(h))[-1].reason == "no run was started for it"


async def test_unmatched_failed_and_rejected_alerts_are_stored_with_why(
    routed: tuple[Harness, AlertRouter, Ticks],
) -> None:
    h, alerts, _ = routed
    other = Alert(source="grafana", fingerprint="g1", status="firing", labels={"alertname": "X"})
    weird = Alert(
        source="generic", fingerprint="w1", status="firing", labels={"alertname": "Weird"}
    )
    receipt = await alerts.receive([other, weird], [Rejected("generic", "no status", {"a": 1})])
    assert receipt.accepted == 2 and receipt.rejected == 1
    await alerts.idle()
    by_name = {r.fingerprint: r for r in await rows(h)}
    assert by_name["g1"].outcome == "unmatched"
    assert by_name["w1"].outcome == "failed" and "n" in by_name["w1"].reason
    rejected = [r for r in by_name.values() if r.outcome == "rejected"]
    assert len(rejected) == 1 and rejected[0].reason == "no status"


async def test_a_long_fingerprint_is_kept_as_a_hash_and_repeats_still_attach(
    routed: tuple[Harness, AlertRouter, Ticks],
) -> None:
    h, alerts, _ = routed
    long = dataclasses.replace(disk("db-1"), fingerprint="x" * 500, severity="s" * 100)
    await send(h, alerts, long, long)
    first, second = await rows(h)
    assert first.fingerprint.startswith("sha256:") and len(first.fingerprint) <= 200
    assert (first.outcome, second.outcome) == ("started", "attached")
    assert len(first.severity) == 64


async def test_alerts_stored_but_not_routed_before_a_crash_are_routed_at_start(
    harness: HarnessFactory,
) -> None:
    h = await harness(PLAYBOOKS)
    first = AlertRouter(h.engine, AlertPolicy(), monotonic=Ticks())
    await first.receive([disk("db-7")])  # stored; no worker ever ran
    assert [r.outcome for r in await rows(h)] == ["pending"]
    second = AlertRouter(h.engine, AlertPolicy(), monotonic=Ticks())
    await second.start()
    try:
        await second.idle()
        await h.engine.wait_idle()
        assert [r.outcome for r in await rows(h)] == ["started"]
        assert len(await runs_of(h, "disk-cleanup")) == 1
    finally:
        await second.stop()
