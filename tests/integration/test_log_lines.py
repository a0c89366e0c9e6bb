"""Baton's own log lines, from a real engine on SQLite and PostgreSQL: one line per run
started, resumed and ended, per approval requested, decided and closed, per alert
received and routed, per schedule fired."""

from __future__ import annotations

import logging

import pytest

from bot import logs
from engine.alerts.model import Alert
from engine.alerts.router import AlertPolicy, AlertRouter
from tests.conftest import HarnessFactory
from tests.integration.support import approval_id

GATE = """
    name: gate
    params:
      fail: {type: bool, default: false}
    steps:
      - id: ask
        action: approval
        with: {message: "Ship it?", approvers: [bob]}
      - id: ship
        action: shell
        needs: [ask]
        with: {argv: [sh, -c, "exit {{ 3 if params.fail else 0 }}"]}
"""

DISK = """
    name: disk-cleanup
    triggers:
      - alert: {match: {alertname: DiskFull}}
      - schedule: {cron: "0 * * * *"}
    steps:
      - id: clean
        action: log
        with: {message: cleaned}
"""


def messages(caplog: pytest.LogCaptureFixture, name: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == name]


async def test_one_line_per_run_and_approval_event(
    harness: HarnessFactory, caplog: pytest.LogCaptureFixture
) -> None:
    h = await harness({"gate": GATE})

    caplog.set_level(logging.INFO)
    event_log = logs.EventLog(h.engine.bus)
    event_log.start()
    run_id = await h.run("gate", {"fail": True}, requested_by="alice", trigger="api")
    gate = await approval_id(h, run_id, "ask")
    await h.engine.decide(gate, "bob", "approve")
    await h.engine.wait_idle()
    await event_log.close()
    records = messages(caplog, "baton.events")
    lines = [r.getMessage() for r in records]
    assert lines[0] == f"run {run_id} of gate started: trigger api, by alice"
    assert lines[1] == f"run {run_id} of gate: approval {gate} requested at step ask (1 needed)"
    assert lines[2] == f"run {run_id} of gate: bob decided approve on approval {gate}"
    assert lines[3].startswith(f"run {run_id} of gate: approval {gate} approved")
    assert lines[4].startswith(f"run {run_id} of gate failed after ")
    assert lines[4].endswith(": step ship failed: exit status 3")
    assert len(lines) == 5, lines
    assert records[4].levelno == logging.WARNING  # a failed run stands out
    assert all(getattr(r, "run_id", None) == run_id for r in records)
    assert all(getattr(r, "playbook", None) == "gate" for r in records)


async def test_a_resumed_run_says_so(
    harness: HarnessFactory, caplog: pytest.LogCaptureFixture
) -> None:
    h = await harness({"gate": GATE})
    run_id = await h.run("gate")
    caplog.set_level(logging.INFO)
    await h.restart()  # the run waits for its approval: the new engine resumes it
    for event in h.seen():  # what the new engine published, as serve's subscriber gets it
        logs.EventLog.write(event)
    lines = [r.getMessage() for r in messages(caplog, "baton.events")]
    assert lines == [f"run {run_id} of gate resumed"]


async def test_alerts_and_schedules_log_what_they_did(
    harness: HarnessFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    h = await harness({"disk-cleanup": DISK})
    alerts = AlertRouter(h.engine, AlertPolicy(global_rate=(100, 60.0)))
    await alerts.start()
    try:
        fired = Alert(
            source="alertmanager",
            fingerprint="fp-1",
            status="firing",
            labels={"alertname": "DiskFull", "instance": "db-1"},
        )
        other = Alert(source="generic", fingerprint="fp-2", status="firing", labels={"x": "y"})
        receipt = await alerts.receive([fired, other])
        await alerts.idle()
    finally:
        await alerts.stop()
    first, second = receipt.ids
    lines = [r.getMessage() for r in messages(caplog, "engine.alerts.router")]
    assert f"alert {first} received from alertmanager: DiskFull (firing, fingerprint fp-1)" in (
        lines
    )
    routed = [line for line in lines if line.startswith(f"alert {first} routed: started")]
    assert routed and "disk-cleanup" in routed[0]
    assert f"alert {second} routed: unmatched (no playbook trigger matches)" in lines

    await h.advance(3600)  # the hourly schedule fires
    (fire,) = [r for r in messages(caplog, "engine.schedules.service") if "fired" in r.getMessage()]
    assert "of disk-cleanup" in fire.getMessage()
    assert getattr(fire, "playbook", None) == "disk-cleanup" and getattr(fire, "run_id", None)
