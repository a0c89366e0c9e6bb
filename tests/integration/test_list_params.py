"""``type: list`` params wherever params go: chat, schedules, alert triggers, templates,
a shell step's ``PARAM_*``, the HTTP API and the Slack run form; on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp.test_utils import TestClient, TestServer

from bot import api
from bot.app import Baton, open_baton
from bot.commands import Actor, Commands, Reply
from bot.settings import Settings
from bot.slack import blocks
from engine.alerts.model import Alert
from engine.alerts.router import AlertPolicy, AlertRouter
from engine.timing import ManualClock, ManualTimers
from engine.views import queries
from storage import tables as t
from tests.conftest import HarnessFactory
from tests.fakes import slack as fake
from tests.harness import Harness
from tests.integration.slack_support import SlackBaton, served, settings_for, texts
from tests.integration.slack_support import write_playbooks as write_slack_playbooks

FANOUT = """
    name: fanout
    description: Touch every host.
    params:
      hosts: {type: list, required: true, pattern: "[a-z0-9,.-]+", help: hosts to touch}
      ports: {type: list, items: int, default: [80, 443], max: 3}
      zones: {type: list, choices: [eu, us, ap], default: [eu]}
      token: {type: secret}
    steps:
      - id: env
        action: shell
        with: {script: 'printf "%s|%s" "$PARAM_HOSTS" "$PARAM_PORTS"'}
      - id: each
        action: shell
        with: {argv: [echo, "{{ params.hosts | join(' ') }}", "{{ params.ports[0] + 1 }}"]}
      - id: said
        action: log
        with: {message: "{{ params.hosts | length }} hosts: {{ params.hosts | join(',') }}"}
"""

SWEEP = """
    name: sweep
    params:
      hosts: {type: list, required: true}
      zones: {type: list, items: int}
    triggers:
      - alert:
          match: {alertname: Sweep}
          params:
            hosts: "{{ alert.labels.instances }}"
            zones: "{{ alert.labels.zones.split(' ') }}"
    steps:
      - id: look
        action: log
        with: {message: "{{ params.hosts | join(',') }} in {{ params.zones | sum }}"}
"""

WHOLE = """
    name: whole
    params:
      hosts: {type: list, required: true}  # no default: validate has no value to check
    steps:
      - id: echo
        action: shell
        with: {argv: [echo, "{{ params.hosts }}"]}
"""

ALICE = Actor(id="alice", name="Alice", via="console")
WHERE: dict[str, Any] = {"front_end": "console"}


async def _chat(harness: HarnessFactory) -> tuple[Harness, Commands]:
    h = await harness({"fanout": FANOUT, "sweep": SWEEP, "whole": WHOLE})
    return h, Commands(engine=h.engine, schedules=h.schedules, timezone="UTC")


async def say(h: Harness, cmds: Commands, text: str) -> Reply:
    reply = await cmds.handle(ALICE, text, WHERE)
    await h.engine.wait_idle()
    assert "Traceback" not in reply.text
    return reply


# --- a run: templates, PARAM_*, the stored params ---------------------------------------


async def test_a_list_reaches_templates_and_shell_steps_as_a_list(
    harness: HarnessFactory,
) -> None:
    h, cmds = await _chat(harness)
    reply = await say(h, cmds, "run fanout hosts=web-1,web-2 ports=22")
    assert reply.ok, reply.text
    run = await queries.get_run(h.store, str(reply.run_id))
    assert run["status"] == "succeeded", run
    assert run["params"]["hosts"] == ["web-1", "web-2"] and run["params"]["ports"] == [22]
    steps = {s["id"]: s for s in run["steps"]}
    assert steps["env"]["output"]["stdout"] == '["web-1", "web-2"]|[22]'
    assert steps["each"]["output"]["stdout"] == "web-1 web-2 23\n"
    assert steps["said"]["output"]["message"] == "2 hosts: web-1,web-2"


async def test_a_whole_list_is_not_one_argument(harness: HarnessFactory) -> None:
    h, cmds = await _chat(harness)
    reply = await say(h, cmds, "run whole hosts=a,b")
    run = await queries.get_run(h.store, str(reply.run_id))
    assert run["status"] == "failed"
    (step,) = run["steps"]
    assert "join" in step["error"], step["error"]


async def test_an_item_holding_a_comma_is_given_as_a_json_list(harness: HarnessFactory) -> None:
    h, cmds = await _chat(harness)
    reply = await say(h, cmds, """run fanout hosts='["a,b", "c"]' zones=us,AP""")
    assert reply.ok, reply.text
    run = await queries.get_run(h.store, str(reply.run_id))
    assert run["params"]["hosts"] == ["a,b", "c"] and run["params"]["zones"] == ["us", "ap"]
    status = await say(h, cmds, f"status {reply.run_id}")
    assert """hosts=["a,b", "c"]""" in status.text and "zones=us,ap" in status.text


@pytest.mark.parametrize(
    ("words", "needle"),
    [
        ("hosts=a,,b", "hosts: item 2 is empty (separate items with one comma: hosts=a,b,c)"),
        ("hosts=a ports=1,x", "ports: item 2: 'x' is not an int"),
        ("hosts=a ports=1,2,3,4", "ports: 4 items given, more than the maximum 3 items"),
        ("hosts=a zones=eu,mars", "zones: item 2: 'mars' is not one of eu, us, ap"),
        ("""hosts='["a",'""", "hosts: '[\"a\",' is not a JSON list"),
    ],
    ids=["empty-item", "int-item", "too-many", "choice", "bad-json"],
)
async def test_a_bad_list_in_chat_gets_which_item_and_why(
    harness: HarnessFactory, words: str, needle: str
) -> None:
    h, cmds = await _chat(harness)
    reply = await say(h, cmds, f"run fanout {words}")
    assert not reply.ok and needle in reply.text
    assert await queries.list_runs(h.store) == []


async def test_describe_dry_run_and_a_missing_list(harness: HarnessFactory) -> None:
    h, cmds = await _chat(harness)
    described = await say(h, cmds, "describe fanout")
    assert "hosts (list; required; pattern [a-z0-9,.-]+) - hosts to touch" in described.text
    assert "ports (list of int; default 80,443; ..3 items)" in described.text
    assert "zones (list, each one of eu, us, ap; default eu)" in described.text
    plan = await say(h, cmds, "run fanout hosts=a,b --dry-run")
    assert plan.ok and "hosts=a,b ports=80,443 zones=eu" in plan.text
    missing = await say(h, cmds, 'run fanout ports="22, 80"')
    assert not missing.ok and "needs hosts" in missing.text
    assert "say `run fanout 'ports=22, 80' hosts=a,b,c`" in missing.text  # pasteable
    assert await queries.list_runs(h.store) == []


async def test_a_schedule_keeps_a_list_and_its_fire_gets_it(harness: HarnessFactory) -> None:
    h, cmds = await _chat(harness)
    bad = await say(h, cmds, "schedule fanout in 30m hosts=a,")
    assert not bad.ok and "hosts: item 2 is empty" in bad.text
    made = await say(h, cmds, 'schedule fanout in 30m hosts="db-1, db-2"')
    assert made.ok, made.text
    listed = await say(h, cmds, "schedules")
    assert "hosts=db-1, db-2" in listed.text
    await h.advance(30 * 60)
    (run,) = await queries.list_runs(h.store)
    assert run["trigger"] == "schedule" and run["status"] == "succeeded"
    assert run["params"]["hosts"] == ["db-1", "db-2"]


NIGHTLY = """
    name: nightly
    params:
      hosts: {type: list, required: true}
    triggers:
      - schedule: {cron: "0 1 * * *", timezone: UTC, params: {hosts: [n1, n2]}}
    steps:
      - id: say
        action: log
        with: {message: "{{ params.hosts | join(' and ') }}"}
"""


async def test_a_declared_schedule_gives_its_yaml_list(harness: HarnessFactory) -> None:
    h = await harness({"nightly": NIGHTLY})
    cmds = Commands(engine=h.engine, schedules=h.schedules, timezone="UTC")
    listed = await say(h, cmds, "schedules")
    assert "0 1 * * *" in listed.text and "hosts=n1,n2" in listed.text
    await h.advance(3600)  # the harness's clock starts at midnight UTC
    (run,) = await queries.list_runs(h.store)
    assert run["trigger"] == "schedule" and run["params"] == {"hosts": ["n1", "n2"]}
    (step,) = await h.store.all(sa.select(t.steps))
    assert step.output["message"] == "n1 and n2"


async def test_an_alert_trigger_gives_a_list_from_a_comma_string_or_a_template(
    harness: HarnessFactory,
) -> None:
    h = await harness({"sweep": SWEEP})
    alerts = AlertRouter(h.engine, AlertPolicy(global_rate=(100, 60.0)))
    await alerts.start()
    try:
        labels = {"alertname": "Sweep", "instances": "n1, n2,n3", "zones": "1 2"}
        alert = Alert(source="generic", fingerprint="fp", status="firing", labels=labels)
        await alerts.receive([alert])
        await alerts.idle()
        await h.engine.wait_idle()
    finally:
        await alerts.stop()
    (row,) = await h.store.all(sa.select(t.runs))
    assert row.params == {"hosts": ["n1", "n2", "n3"], "zones": [1, 2]}
    (step,) = await h.store.all(sa.select(t.steps))
    assert step.status == "succeeded" and step.output["message"] == "n1,n2,n3 in 3"


# --- the HTTP API ------------------------------------------------------------------------

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def client(tmp_path: Path, db_url: str) -> AsyncIterator[tuple[TestClient[Any, Any], Baton]]:
    folder = tmp_path / "playbooks"
    folder.mkdir()
    (folder / "fanout.yaml").write_text(textwrap.dedent(FANOUT))
    settings = Settings(
        database_url=db_url, playbooks=folder, api_token=TOKEN, key_file=tmp_path / "key"
    )
    clock = ManualClock()
    async with open_baton(settings, clock=clock, timers=ManualTimers(clock)) as baton:
        test_client = TestClient(TestServer(api.create_app(settings, baton)))
        await test_client.start_server()
        try:
            yield test_client, baton
        finally:
            await test_client.close()


async def test_the_api_takes_a_json_list_and_its_run_json_holds_it(
    client: tuple[TestClient[Any, Any], Baton],
) -> None:
    http, baton = client
    body = {"playbook": "fanout", "params": {"hosts": ["a,b", " c "], "ports": [8080]}}
    resp = await http.post("/api/runs", json=body, headers=AUTH)
    assert resp.status == 201, await resp.text()
    run_id = (await resp.json())["id"]
    await baton.engine.wait_for(run_id)
    run = await (await http.get(f"/api/runs/{run_id}")).json()
    assert run["status"] == "succeeded"
    assert run["params"] == {"hosts": ["a,b", "c"], "ports": [8080], "zones": ["eu"], "token": None}
    env = next(s for s in run["steps"] if s["id"] == "env")
    assert env["output"]["stdout"] == '["a,b", "c"]|[8080]'


@pytest.mark.parametrize(
    ("hosts", "needle"),
    [
        ([], "missing required param hosts"),
        (["a", ""], "hosts: item 2 is empty"),
        (["a", ["b"]], "hosts: item 2 is not a single value"),
        ({"a": 1}, "is not a list"),
    ],
    ids=["empty", "empty-item", "nested", "object"],
)
async def test_a_bad_list_over_the_api_is_400_naming_it(
    client: tuple[TestClient[Any, Any], Baton], hosts: Any, needle: str
) -> None:
    http, baton = client
    body = {"playbook": "fanout", "params": {"hosts": hosts}}
    resp = await http.post("/api/runs", json=body, headers=AUTH)
    assert resp.status == 400
    assert needle in json.dumps(await resp.json())
    assert await baton.store.scalar(sa.select(sa.func.count()).select_from(t.runs)) == 0


# --- the Slack run form ------------------------------------------------------------------


@pytest.fixture
async def sb(tmp_path: Path, db_url: str) -> AsyncIterator[SlackBaton]:
    write_slack_playbooks(tmp_path / "playbooks", {"fanout": FANOUT})
    async with fake.FakeSlack() as slack, served(settings_for(tmp_path, db_url, slack), slack) as s:
        yield s


async def test_the_run_form_asks_for_a_list_as_text_with_commas(sb: SlackBaton) -> None:
    await sb.command("run fanout ports=22,8080")
    (opened,) = await sb.slack.wait_for("views.open")
    view = opened.args["view"]
    fields = {b["block_id"]: b for b in view["blocks"] if b["type"] == "input"}
    hosts = fields["param:hosts"]
    assert hosts["element"]["type"] == "plain_text_input"
    assert "separate items with commas" in hosts["hint"]["text"]
    assert fields["param:ports"]["element"]["initial_value"] == "22,8080"
    zones = fields["param:zones"]["element"]
    assert zones["type"] == "multi_static_select"
    assert [o["value"] for o in zones["options"]] == ["eu", "us", "ap"]
    assert [o["value"] for o in zones["initial_options"]] == ["eu"]

    def values(text: str) -> dict[str, Any]:
        picked = [{"value": "us"}, {"value": "ap"}]
        return {
            "param:hosts": {"value": {"type": "plain_text_input", "value": text}},
            "param:ports": {"value": {"type": "plain_text_input", "value": "22, 8080"}},
            "param:zones": {"value": {"type": "multi_static_select", "selected_options": picked}},
            "param:token": {"value": {"type": "plain_text_input", "value": None}},
        }

    meta = view["private_metadata"]
    bad = fake.view_submission(blocks.RUN_FORM, values("a,,b"), private_metadata=meta)
    status, text = await sb.post(*fake.encode_interactive(bad))
    assert status == 200
    answer = json.loads(text)
    assert answer["response_action"] == "errors"
    assert "item 2 is empty" in answer["errors"]["param:hosts"]
    assert await sb.baton.store.all(sa.select(t.runs)) == []

    good = fake.view_submission(blocks.RUN_FORM, values("web-1, web-2"), private_metadata=meta)
    status, text = await sb.post(*fake.encode_interactive(good))
    assert status == 200 and text == ""
    await sb.slack.wait_for("chat.postMessage", lambda c: "fanout" in (c.args.get("text") or ""))
    run = await sb.latest_run()
    await sb.settle(run["id"])
    run = await sb.latest_run()
    assert run["status"] == "succeeded"
    assert run["params"]["hosts"] == ["web-1", "web-2"]
    assert run["params"]["ports"] == [22, 8080] and run["params"]["zones"] == ["us", "ap"]
    card = await sb.card_of(run["id"])
    assert "hosts=web-1,web-2" in texts(card) and "zones=us,ap" in texts(card)
