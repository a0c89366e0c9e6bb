"""``GET /metrics`` after real runs, approvals, alerts, a schedule's fire and failed Slack
calls, parsed as Prometheus parses it; and ``GET /api/stats`` (shape and read token).
SQLite and PostgreSQL."""

from __future__ import annotations

import json
import re
import textwrap
from collections.abc import AsyncIterator
from datetime import timedelta
from importlib.metadata import version
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import sqlalchemy as sa
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from slack_sdk.errors import SlackApiError

from bot import api
from bot import metrics as metrics_module
from bot.app import Baton, open_baton
from bot.settings import Settings
from bot.slack.client import make_client
from engine.alerts.model import Alert, Rejected
from engine.runs.requests import RunRequest
from engine.timing import ManualClock, ManualTimers
from storage import definitions
from storage import tables as t
from tests.fakes.slack import FakeSlack

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PLAYBOOKS = {
    "hello": "name: hello\nsteps:\n  - {id: say, action: log, with: {message: hi}}\n",
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
    """,
    "gate": """
        name: gate
        steps:
          - {id: ask, action: approval, with: {message: "go?", approvers: {users: [bob]}}}
          - {id: after, action: log, needs: ask, with: {message: done}}
    """,
    "disk": """
        name: disk
        triggers:
          - alert: {match: {alertname: DiskFull}}
        steps:
          - {id: clean, action: wait, with: {for: 10m}}
    """,
}
LABELS = {"playbook", "trigger", "status", "action", "source", "outcome", "method", "version"}
LABELS |= {"le"}  # histogram buckets
DASHBOARD = Path(__file__).parents[2] / "deploy" / "grafana" / "baton.json"
Served = tuple[TestClient[Any, Any], Baton, ManualTimers]


@pytest.fixture
async def served(tmp_path: Path, db_url: str) -> AsyncIterator[Served]:
    folder = tmp_path / "playbooks"
    folder.mkdir()
    for name, text in PLAYBOOKS.items():
        (folder / f"{name}.yaml").write_text(textwrap.dedent(text))
    settings = Settings(
        database_url=db_url,
        playbooks=folder,
        api_token=TOKEN,
        api_read_token="required",
        key_file=tmp_path / "key",
    )
    clock = ManualClock()
    timers = ManualTimers(clock)
    async with open_baton(settings, clock=clock, timers=timers) as baton:
        client = TestClient(TestServer(api.create_app(settings, baton)))
        await client.start_server()
        try:
            yield client, baton, timers
        finally:
            await client.close()


async def scrape(client: TestClient[Any, Any]) -> dict[str, list[Sample]]:
    resp = await client.get("/metrics")  # open, even with BATON_API_READ_TOKEN=required
    assert resp.status == 200 and resp.content_type == "text/plain"
    families = text_string_to_metric_families(await resp.text())
    return {f.name: f.samples for f in families}


def value(samples: list[Sample], name: str, **labels: str) -> float:
    found = [s.value for s in samples if s.name == name and s.labels == labels]
    assert len(found) == 1, (name, labels, [s for s in samples if s.name == name])
    return found[0]


async def advance(baton: Baton, timers: ManualTimers, seconds: float) -> None:
    timers.advance(timedelta(seconds=seconds))
    await baton.engine.wait_idle()


async def test_the_families_count_what_happened(served: Served, tmp_path: Path) -> None:
    client, baton, timers = served
    engine = baton.engine
    resp = await client.post("/api/runs", json={"playbook": "hello"}, headers=AUTH)
    await engine.wait_for((await resp.json())["id"])
    flaky = await engine.start_run(
        RunRequest("flaky", {"marker": str(tmp_path / "m")}, requested_by="alice", trigger="cli")
    )
    await engine.wait_idle()
    await advance(baton, timers, 5)
    assert await engine.wait_for(flaky) == "succeeded"
    gate = await engine.start_run(RunRequest("gate", {}, requested_by="carol", trigger="odd"))
    await engine.wait_idle()
    (approval_id,) = await baton.store.all(
        sa.select(t.approvals.c.id).where(t.approvals.c.run_id == gate)
    )
    (baton.settings.playbooks / "gate.yaml").unlink()  # its runs go on; no longer a label
    await baton.reload()
    await advance(baton, timers, 120)
    await engine.decide(approval_id.id, "bob", "approve", "")
    assert await engine.wait_for(gate) == "succeeded"

    assert baton.alerts is not None
    await baton.alerts.receive(
        [
            Alert("alertmanager", "f2", "firing", labels={"alertname": "DiskFull"}),
            Alert("grafana", "f3", "firing", labels={"alertname": "Other"}),
        ],
        [Rejected("generic", "no status", {"a": 1})],
    )
    await baton.alerts.idle()
    await engine.wait_idle()
    await baton.schedules.add(playbook="hello", params={}, by="dave", when="in 1m")
    await advance(baton, timers, 60)

    async with FakeSlack() as slack, aiohttp.ClientSession() as session:
        settings = Settings(slack_bot_token="xoxb-test", slack_api_url=slack.url)
        assert baton.metrics is not None
        web = make_client(settings, session, baton.metrics.slack_error)
        slack.fail("chat.postMessage", "channel_not_found")
        with pytest.raises(SlackApiError):
            await web.chat_postMessage(channel="C404", text="hi")
        slack.fail_raw("chat.update", 503)  # a proxy's page: counted as failed too
        with pytest.raises(SlackApiError):
            await web.chat_update(channel="C1", ts="1.0", text="hi")

    m = await scrape(client)
    started = m["baton_runs_started"]
    assert value(started, "baton_runs_started_total", playbook="hello", trigger="api") == 1
    assert value(started, "baton_runs_started_total", playbook="hello", trigger="schedule") == 1
    assert value(started, "baton_runs_started_total", playbook="flaky", trigger="cli") == 1
    assert value(started, "baton_runs_started_total", playbook="gate", trigger="other") == 1
    assert value(started, "baton_runs_started_total", playbook="disk", trigger="alert") == 1
    finished = m["baton_runs_finished"]
    assert value(finished, "baton_runs_finished_total", playbook="hello", status="succeeded") == 2
    assert value(finished, "baton_runs_finished_total", playbook="other", status="succeeded") == 1
    assert value(m["baton_run_duration_seconds"], "baton_run_duration_seconds_count") == 4
    assert value(m["baton_run_duration_seconds"], "baton_run_duration_seconds_sum") == 125
    steps = m["baton_steps_finished"]
    assert value(steps, "baton_steps_finished_total", action="log", status="succeeded") == 2
    assert value(steps, "baton_steps_finished_total", action="shell", status="succeeded") == 1
    assert value(steps, "baton_steps_finished_total", action="other", status="succeeded") == 2
    assert value(m["baton_step_retries"], "baton_step_retries_total") == 1
    waits = m["baton_approval_wait_seconds"]
    assert value(waits, "baton_approval_wait_seconds_sum") == 120
    alerts, received = m["baton_alerts_received"], "baton_alerts_received_total"
    assert value(alerts, received, source="alertmanager", outcome="started") == 1
    assert value(alerts, received, source="grafana", outcome="unmatched") == 1
    assert value(alerts, received, source="generic", outcome="rejected") == 1
    assert value(m["baton_schedule_fires"], "baton_schedule_fires_total", outcome="started") == 1
    errors = m["baton_slack_api_errors"]
    assert value(errors, "baton_slack_api_errors_total", method="chat.postMessage") == 1
    assert value(errors, "baton_slack_api_errors_total", method="chat.update") == 1
    active = m["baton_runs_active"]
    assert value(active, "baton_runs_active", status="waiting") == 1  # disk: a 10 min wait
    assert value(active, "baton_runs_active", status="running") == 0
    assert value(m["baton_runs"], "baton_runs", status="succeeded") == 4
    assert value(m["baton_playbooks"], "baton_playbooks") == 3
    assert value(m["baton_store_commits"], "baton_store_commits_total") > 0
    (build,) = m["baton_build_info"]
    assert build.name == "baton_build_info" and build.labels == {"version": version("baton")}

    # the Grafana dashboard asks only for series Baton serves
    served_names = {sample.name for samples in m.values() for sample in samples}
    panels = json.loads(DASHBOARD.read_text())["panels"]
    asked = {n for p in panels for q in p["targets"] for n in re.findall(r"baton_\w+", q["expr"])}
    assert len(asked) >= 10 and asked <= served_names, asked - served_names

    # no label of unbounded cardinality: no run id, no user, only the fixed names
    runs = {r.id for r in await baton.store.all(sa.select(t.runs.c.id))}
    people = {"alice", "bob", "carol", "dave"}
    for samples in m.values():
        for sample in samples:
            assert set(sample.labels) <= LABELS, sample
            assert not (set(sample.labels.values()) & (runs | people)), sample


async def test_stats_over_http(served: Served) -> None:
    client, baton, _ = served
    resp = await client.post("/api/runs", json={"playbook": "hello"}, headers=AUTH)
    await baton.engine.wait_for((await resp.json())["id"])
    assert (await client.get("/api/stats")).status == 401  # reads need the token here
    resp = await client.get("/api/stats?days=7", headers=AUTH)
    assert resp.status == 200
    body = await resp.json()
    assert set(body) == {"since", "until", "days", "playbooks", "mttr"} and body["days"] == 7
    (pb,) = body["playbooks"]
    assert (pb["playbook"], pb["runs"], pb["success_rate"]) == ("hello", 1, 1.0)
    assert set(pb["duration"]) == {"count", "p50", "p95"} and len(pb["per_day"]) == 8
    resp = await client.get("/api/stats?playbook=hello", headers=AUTH)
    (pb,) = (await resp.json())["playbooks"]
    assert pb["steps"][0]["step"] == "say" and pb["critical_path"]["chain"] == ["say"]
    for bad, status, words in (
        ("?days=0", 400, "days must be a whole number from 1 to 366"),
        ("?days=x", 400, "days must be"),
        ("?playbook=helo", 404, "Did you mean"),
    ):
        resp = await client.get(f"/api/stats{bad}", headers=AUTH)
        assert resp.status == status and words in (await resp.json())["error"]


async def test_runs_in_progress_are_counted_at_every_scrape_finished_ones_each_minute(
    served: Served,
) -> None:
    client, baton, _ = served
    metrics = baton.metrics
    assert metrics is not None
    now = [1000.0]
    metrics.monotonic = lambda: now[0]
    at = baton.engine.clock.now()
    before = await scrape(client)
    done = value(before["baton_runs"], "baton_runs", status="succeeded")
    row = {
        "playbook": "quick",
        "params": {},
        "trigger": "cli",
        "source": {},
        "requested_by": "amy",
        "definition_digest": definitions.digest({}),
        "created_at": at,
        "started_at": at,
    }
    await baton.store.write(definitions.put({}, at)[1])  # the definition the runs refer to
    await baton.store.write(
        t.runs.insert().values(id="r-done", status="succeeded", finished_at=at, **row),
        t.runs.insert().values(id="r-busy", status="running", **row),
    )
    m = await scrape(client)  # a moment later: in progress now, the history as counted
    assert value(m["baton_runs_active"], "baton_runs_active", status="running") == 1
    assert value(m["baton_runs"], "baton_runs", status="running") == 1
    assert value(m["baton_runs"], "baton_runs", status="succeeded") == done
    now[0] += metrics_module.TOTALS_EVERY
    m = await scrape(client)
    assert value(m["baton_runs"], "baton_runs", status="succeeded") == done + 1
