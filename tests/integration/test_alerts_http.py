"""Alert webhooks through Baton's real HTTP server, with the Slack front end on the fake
Slack: authentication, limits, rejections, the card of an alert's run, repeats,
resolution, held storms, and alerts read from chat messages."""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from storage import tables as t
from tests.fakes import slack as fake
from tests.integration.slack_support import (
    SlackBaton,
    served,
    settings_for,
    texts,
    write_playbooks,
)

TOKEN = "alert-token"
PD_SECRET = "pd-signing-secret"
FIXTURES = Path(__file__).parent.parent / "fakes" / "alerts"

ERRORS = """
name: api-errors
params:
  instance: {type: string, required: true}
triggers:
  - alert:
      source: alertmanager
      match: {alertname: HighErrorRate}
      params: {instance: "{{ alert.labels.instance }}"}
      channel: C0ALERTS
      mention: ["@oncall", U0CAROL]
      rate: 1/10m
steps:
  - id: look
    action: wait
    with: {for: 1h}
"""

DISK_CHAT = """
name: chat-disk
params:
  host: {type: string, required: true}
triggers:
  - alert:
      source: chat
      match: {alertname: DiskFull}
      params: {host: "{{ alert.labels.instance }}"}
steps:
  - id: look
    action: log
    with: {message: "{{ params.host }}"}
"""

CONFIG = r"""
alerts:
  chat:
    - channel: "#alerts"
      pattern: '\[(?P<status>FIRING|RESOLVED)\] (?P<alertname>\w+) on (?P<instance>\S+)'
      fingerprint: "{alertname}:{instance}"
"""


@pytest.fixture
async def sb(tmp_path: Path, db_url: str) -> AsyncIterator[SlackBaton]:
    write_playbooks(tmp_path / "playbooks", {"api-errors": ERRORS, "chat-disk": DISK_CHAT})
    config = tmp_path / "baton.yaml"
    config.write_text(CONFIG)
    async with fake.FakeSlack() as slack:
        settings = settings_for(
            tmp_path,
            db_url,
            slack,
            alert_token=TOKEN,
            pagerduty_secret=PD_SECRET,
            alert_max_body=4096,
            config=config,
        )
        async with served(settings, slack) as s:
            yield s


def payload(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def one_alert(status: str = "firing", instance: str = "api-1:8080") -> dict[str, Any]:
    """An Alertmanager notification of one alert (group_by fingerprint)."""
    body = payload("alertmanager_firing")
    alert = copy.deepcopy(body["alerts"][0])
    alert["status"] = status
    alert["labels"]["instance"] = instance
    alert["fingerprint"] = hashlib.sha256(instance.encode()).hexdigest()[:16]
    if status == "resolved":
        alert["endsAt"] = "2026-11-26T10:30:00Z"
    return {**body, "status": status, "alerts": [alert]}


async def post(
    sb: SlackBaton, source: str, body: Any, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    sent = {"Content-Type": "application/json", **(headers or {})}
    async with sb.session.post(f"{sb.url}/alerts/{source}", data=data, headers=sent) as resp:
        text = await resp.text()
        return resp.status, json.loads(text) if text.startswith("{") else text


AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def routed(sb: SlackBaton) -> None:
    assert sb.baton.alerts is not None
    await sb.baton.alerts.idle()
    await sb.baton.engine.wait_idle()
    await sb.settle()


async def stored(sb: SlackBaton) -> list[Any]:
    return await sb.baton.store.all(sa.select(t.alerts).order_by(t.alerts.c.id))


@pytest.mark.parametrize(
    ("headers", "needle"),
    [
        ({}, "missing bearer token"),
        ({"Authorization": "Bearer nope"}, "wrong bearer token"),
        ({"Authorization": "Basic " + TOKEN}, "missing bearer token"),
    ],
    ids=["none", "wrong", "not-bearer"],
)
async def test_without_the_token_nothing_is_stored(
    sb: SlackBaton, headers: dict[str, str], needle: str
) -> None:
    status, answer = await post(sb, "alertmanager", one_alert(), headers)
    assert status == 401 and needle in answer["error"]
    assert await stored(sb) == []


async def test_a_large_body_sent_in_pieces_is_read_whole(tmp_path: Path, db_url: str) -> None:
    write_playbooks(tmp_path / "playbooks", {"api-errors": ERRORS})
    async with fake.FakeSlack() as slack:
        settings = settings_for(tmp_path, db_url, slack, alert_token=TOKEN)
        async with served(settings, slack) as sb:
            body = one_alert()
            body["alerts"] = [
                {**body["alerts"][0], "fingerprint": f"fp{i}", "labels": {"alertname": "X"}}
                for i in range(600)
            ]
            raw = json.dumps(body).encode()
            assert len(raw) > 200_000

            async def pieces() -> Any:
                for start in range(0, len(raw), 16_384):
                    yield raw[start : start + 16_384]

            async with sb.session.post(
                f"{sb.url}/alerts/alertmanager", data=pieces(), headers=AUTH
            ) as resp:
                assert resp.status == 202, await resp.text()
                assert (await resp.json())["accepted"] == 600


async def test_oversize_and_malformed_bodies_get_a_reason_and_store_nothing(
    sb: SlackBaton,
) -> None:
    status, answer = await post(sb, "alertmanager", b"{" + b" " * 5000 + b"}", AUTH)
    assert status == 413 and "4096 bytes" in answer["error"]
    status, answer = await post(sb, "alertmanager", b'{"version": "4", "alerts": [', AUTH)
    assert status == 400 and "not valid JSON" in answer["error"]
    status, answer = await post(sb, "generic", b"[" * 1500 + b"]" * 1500, AUTH)
    assert status == 400 and "nested too deep" in answer["error"]
    api_auth = {"Authorization": "Bearer api-token", "Content-Type": "application/json"}
    async with sb.session.post(
        f"{sb.url}/api/runs", data=b'{"n": ' + b"9" * 5000 + b"}", headers=api_auth
    ) as resp:
        assert resp.status == 400 and "not valid JSON" in (await resp.json())["error"]
    status, answer = await post(sb, "nagios", one_alert(), AUTH)
    assert status == 404 and "alertmanager" in answer["error"]
    assert await stored(sb) == []


async def test_entries_lacking_fields_are_stored_as_rejected_with_the_reason(
    sb: SlackBaton,
) -> None:
    body = one_alert()
    body["alerts"].append({"status": "firing", "annotations": {}})  # no labels
    status, answer = await post(sb, "alertmanager", body, AUTH)
    assert status == 202 and answer["accepted"] == 1 and answer["rejected"] == 1
    assert "labels" in answer["reasons"][0]
    await routed(sb)
    rows = await stored(sb)
    assert sorted(r.outcome for r in rows) == ["rejected", "started"]
    (rejected,) = [r for r in rows if r.outcome == "rejected"]
    assert "labels" in rejected.reason and rejected.raw["status"] == "firing"


async def test_pagerduty_is_authenticated_by_its_signature(sb: SlackBaton) -> None:
    raw = json.dumps(payload("pagerduty_incident_triggered")).encode()
    good = hmac.new(PD_SECRET.encode(), raw, hashlib.sha256).hexdigest()
    status, _ = await post(sb, "pagerduty", raw, {"X-PagerDuty-Signature": f"v1={good}"})
    assert status == 202
    status, answer = await post(sb, "pagerduty", raw, {"X-PagerDuty-Signature": "v1=00ff"})
    assert status == 401 and "X-PagerDuty-Signature" in answer["error"]
    status, _ = await post(sb, "pagerduty", raw, AUTH)  # or the bearer token
    assert status == 202
    await routed(sb)
    assert [r.source for r in await stored(sb)] == ["pagerduty", "pagerduty"]


async def test_an_alerts_run_card_repeats_and_resolution(sb: SlackBaton) -> None:
    status, answer = await post(sb, "alertmanager", one_alert(), AUTH)
    assert status == 202 and answer["accepted"] == 1
    await routed(sb)
    (row,) = await stored(sb)
    assert row.outcome == "started" and row.run_id
    card = await sb.card_of(row.run_id)
    assert card["channel"] == "C0ALERTS"
    shown = texts(card)
    assert "HighErrorRate" in shown and "API 5xx rate above 5%" in shown
    assert "prometheus.example.org" in shown, "the alert's links"
    assert "<!subteam^S0ONCALL>" in shown and "<@U0CAROL>" in shown, "the owners"
    assert "<!subteam^S0ONCALL>" in card["text"], "mentions notify from the text"

    await post(sb, "alertmanager", one_alert(), AUTH)
    await post(sb, "alertmanager", one_alert(), AUTH)
    await routed(sb)
    assert "fired 2 more times" in texts(await sb.card_of(row.run_id))
    runs = await sb.baton.store.all(sa.select(t.runs))
    assert len(runs) == 1, "repeats attach, they start nothing"

    status, _ = await post(sb, "alertmanager", one_alert("resolved"), AUTH)
    assert status == 202
    await routed(sb)
    card = await sb.card_of(row.run_id)
    assert "resolved after" in texts(card)
    thread = sb.slack.thread("C0ALERTS", card["ts"])
    assert [m for m in thread if "resolved after" in texts(m)]
    assert len(await sb.baton.store.all(sa.select(t.runs))) == 1, "never a new alert"
    assert len([m for m in sb.slack.messages("C0ALERTS") if not m.get("thread_ts")]) == 1


async def test_a_storm_beyond_the_rate_is_held_and_summed_up_in_one_message(
    sb: SlackBaton,
) -> None:
    for i in range(4):
        await post(sb, "alertmanager", one_alert(instance=f"api-{i}:8080"), AUTH)
    await routed(sb)
    outcomes = sorted(r.outcome for r in await stored(sb))
    assert outcomes == ["held", "held", "held", "started"]
    held = [m for m in sb.slack.messages("C0ALERTS") if ":pause_button:" in texts(m)]
    assert len(held) == 1, "one message, edited as the count grows"
    assert "3 more *HighErrorRate* alerts held" in texts(held[0])
    async with sb.session.get(f"{sb.url}/api/alerts?outcome=held") as resp:
        listed = await resp.json()
    assert len(listed) == 3 and all(a["outcome"] == "held" for a in listed)
    await sb.command("alerts held", response_url=sb.slack.response_url("held"))
    (answer,) = await sb.slack.wait_for("response_url", lambda c: c.args["_name"] == "held")
    said = answer.args["text"]
    assert said.count("HighErrorRate") == 3 and "over the limit" in said
    await sb.command("alerts hled", response_url=sb.slack.response_url("typo"))
    (typo,) = await sb.slack.wait_for("response_url", lambda c: c.args["_name"] == "typo")
    assert "Did you mean `held`" in typo.args["text"]


async def test_alert_messages_in_a_watched_channel_become_alerts(sb: SlackBaton) -> None:
    said = fake.bot_message("[FIRING] DiskFull on db-3 (97%)", channel="C0ALERTS")
    status, _ = await sb.event(said)
    assert status == 200
    await sb.settle()
    await routed(sb)
    (row,) = await stored(sb)
    assert row.source == "chat" and row.fingerprint == "DiskFull:db-3"
    assert row.outcome == "started"
    run = await sb.baton.store.one(sa.select(t.runs).where(t.runs.c.id == row.run_id))
    assert run is not None and run.params == {"host": "db-3"}
    other = fake.bot_message("lunch is ready", channel="C0ALERTS")
    await sb.event(other)
    own = fake.bot_message("[FIRING] DiskFull on db-4", channel="C0ALERTS", bot_id="BBATON")
    await sb.event(own)  # Baton's own messages are never read as alerts
    await sb.settle()
    await routed(sb)
    assert len(await stored(sb)) == 1


FAILING = """
name: failing-fix
triggers:
  - alert: {source: alertmanager, match: {alertname: Broken}, channel: C0ALERTS}
steps:
  - id: fix
    action: shell
    with: {script: "echo cannot fix >&2; exit 1"}
"""


async def test_when_the_card_cannot_be_posted_the_failure_still_reaches_on_call(
    tmp_path: Path, db_url: str
) -> None:
    write_playbooks(tmp_path / "playbooks", {"failing-fix": FAILING})
    async with fake.FakeSlack() as slack:
        settings = settings_for(tmp_path, db_url, slack, alert_token=TOKEN)
        async with served(settings, slack) as sb:
            slack.fail("chat.postMessage", "not_in_channel", times=1)  # the card's post
            body = one_alert()
            body["alerts"][0]["labels"]["alertname"] = "Broken"
            status, _ = await post(sb, "alertmanager", body, AUTH)
            assert status == 202
            await routed(sb)
            (row,) = await stored(sb)
            await sb.settle(row.run_id)
            notices = [m for m in slack.messages("C0DEPLOYS") if ":rotating_light:" in texts(m)]
            assert len(notices) == 1 and "cannot fix" in texts(notices[0])
