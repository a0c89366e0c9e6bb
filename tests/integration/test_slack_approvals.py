"""Approval gates in Slack: signed clicks and forms through ``POST /slack/events``, the fake
Slack recording the prompt and its edits, the database holding decisions and audit rows.
Time is a manual clock: deadlines, reminders and escalations fire when the test says."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from bot.slack import blocks
from engine.timing import ManualClock, ManualTimers
from storage import tables as t
from tests.fakes import slack as fake
from tests.integration.slack_support import (
    SlackBaton,
    buttons,
    served,
    settings_for,
    texts,
    write_playbooks,
)

GATE = """
name: ship
description: Ship a release, after two approvals.
params:
  env: {type: string, default: prod}
  token: {type: secret, default: hunter2}
steps:
  - id: plan
    action: log
    with: {message: "plan for {{ params.env }}"}
  - id: go-ahead
    action: approval
    needs: [plan]
    with:
      approvers: {users: [U0BOB, U0ALICE], usergroups: ["@oncall"]}
      min_approvals: 2
      message: "Ship to {{ params.env }}?"
      timeout: 1h
      on_timeout: escalate
      escalate: {approvers: {groups: [leads]}, timeout: 30m, on_timeout: reject}
      remind: 20m
      show: {diff: "- replicas: 2\\n+ replicas: 4"}
  - id: deploy
    action: log
    needs: [go-ahead]
    with: {message: shipped}
"""

CONFIG = "groups:\n  leads: [U0CAROL]\n"


@pytest.fixture
async def gated(tmp_path: Path, db_url: str) -> AsyncIterator[tuple[SlackBaton, ManualClock]]:
    write_playbooks(tmp_path / "playbooks", {"ship": GATE})
    config = tmp_path / "baton.yaml"
    config.write_text(CONFIG)
    clock = ManualClock()
    async with fake.FakeSlack() as slack:
        slack.users["U0DAVE"] = "dave"
        settings = settings_for(
            tmp_path, db_url, slack, config=config, slack_approvals_channel="#deploys"
        )
        async with served(settings, slack, clock) as sb:
            yield sb, clock


async def open_gate(sb: SlackBaton, user: str = "U0DAVE") -> tuple[str, str, dict[str, Any]]:
    """Dave (or ``user``) runs `ship`; the run id, the gate id and its prompt."""
    run = await sb.started(sb.command("run ship", user=user))
    await sb.settle()
    post = await sb.front.outbox.find(run["id"], "card")
    assert post is not None and post.ts is not None
    gates = await sb.baton.store.all(
        sa.select(t.approvals).where(t.approvals.c.run_id == run["id"])
    )
    (gate,) = gates
    return run["id"], gate.id, await prompt(sb, run["id"], gate.id)


async def prompt(sb: SlackBaton, run_id: str, gate_id: str, copy: bool = False) -> dict[str, Any]:
    kind = f"approval:{gate_id}" + (":copy" if copy else "")
    post = await sb.front.outbox.find(run_id, kind, step_id="go-ahead")
    assert post is not None and post.ts is not None, f"no {kind} prompt"
    return sb.slack.message(post.channel, post.ts)


async def click(sb: SlackBaton, action: str, gate_id: str, user: str) -> None:
    status, _ = await sb.click(action, gate_id, user=user)
    assert status == 200
    await sb.settle()


async def ephemerals_to(sb: SlackBaton, user: str) -> list[str]:
    return [str(c.args.get("text")) for c in sb.slack.calls_to("chat.postEphemeral")
            if c.args.get("user") == user]  # fmt: skip


async def decisions(sb: SlackBaton, gate_id: str) -> list[tuple[str, str, str]]:
    rows = await sb.baton.store.all(
        sa.select(t.decisions)
        .where(t.decisions.c.approval_id == gate_id)
        .order_by(t.decisions.c.id)
    )
    return [(r.user, r.decision, r.comment) for r in rows]


async def run_status(sb: SlackBaton, run_id: str) -> str:
    row = await sb.baton.store.one(sa.select(t.runs.c.status).where(t.runs.c.id == run_id))
    assert row is not None
    return str(row.status)


async def test_the_prompt_shows_what_is_asked_and_a_quorum_of_two_lets_the_run_go_on(
    gated: tuple[SlackBaton, ManualClock],
) -> None:
    sb, _ = gated
    run_id, gate_id, shown = await open_gate(sb)
    card = await sb.card_of(run_id)
    assert shown["thread_ts"] == card["ts"], "the prompt is in the run's thread"
    text = texts(shown)
    assert "Ship to prod?" in text and "<@U0DAVE>" in text and "needs 2 approvals" in text
    assert "<@U0BOB>" in text and "<@U0ALICE>" in text and "<!subteam^S0ONCALL>" in text
    assert "replicas: 4" in text, "the context the step shows"
    assert "token=***" in text and "hunter2" not in text
    assert "<!date^" in text, "the deadline, in each reader's time zone"
    assert buttons(shown) == [blocks.APPROVE, blocks.REJECT]
    assert "<@U0BOB>" in shown["text"], "the approvers are notified"
    copy = await prompt(sb, run_id, gate_id, copy=True)
    assert copy["channel"] == "C0DEPLOYS" and buttons(copy) == [blocks.APPROVE, blocks.REJECT]

    await click(sb, blocks.APPROVE, gate_id, "U0BOB")
    shown = await prompt(sb, run_id, gate_id)
    assert "<@U0BOB> approved" in texts(shown) and buttons(shown) == [blocks.APPROVE, blocks.REJECT]
    assert await run_status(sb, run_id) == "waiting"

    await click(sb, blocks.APPROVE, gate_id, "U0ALICE")
    await sb.settle(run_id)
    shown = await prompt(sb, run_id, gate_id)
    assert buttons(shown) == [], "a closed gate has no buttons"
    assert "*approved*" in texts(shown) and "<@U0ALICE> approved" in texts(shown)
    assert buttons(await prompt(sb, run_id, gate_id, copy=True)) == []
    assert await run_status(sb, run_id) == "succeeded"
    assert await decisions(sb, gate_id) == [("U0BOB", "approve", ""), ("U0ALICE", "approve", "")]
    edits = (await prompt(sb, run_id, gate_id))["edits"]
    await click(sb, blocks.REJECT, gate_id, "U0BOB")  # a click on a closed gate
    assert "already approved" in (await ephemerals_to(sb, "U0BOB"))[-1]
    assert (await prompt(sb, run_id, gate_id))["edits"] == edits
    assert len(await decisions(sb, gate_id)) == 2


async def test_self_approval_outsiders_and_double_clicks_change_nothing(
    gated: tuple[SlackBaton, ManualClock],
) -> None:
    sb, _ = gated
    run_id, gate_id, _ = await open_gate(sb, user="U0BOB")  # bob asks: he may not approve
    await click(sb, blocks.APPROVE, gate_id, "U0BOB")
    (said,) = await ephemerals_to(sb, "U0BOB")
    assert "cannot approve" in said and "U0BOB started run" in said

    await click(sb, blocks.APPROVE, gate_id, "U0DAVE")  # not an approver
    (said,) = await ephemerals_to(sb, "U0DAVE")
    assert "may not decide" in said and "U0ALICE" in said and "@oncall" in said
    await click(sb, blocks.REJECT, gate_id, "U0DAVE")
    assert sb.slack.calls_to("views.open") == [], "no reason form for someone who may not"
    assert len(await ephemerals_to(sb, "U0DAVE")) == 2

    await click(sb, blocks.APPROVE, gate_id, "U0ALICE")
    edits = (await prompt(sb, run_id, gate_id))["edits"]
    await click(sb, blocks.APPROVE, gate_id, "U0ALICE")  # the double click
    (said,) = await ephemerals_to(sb, "U0ALICE")
    assert "already decided" in said
    assert (await prompt(sb, run_id, gate_id))["edits"] == edits
    assert await decisions(sb, gate_id) == [("U0ALICE", "approve", "")]
    assert await run_status(sb, run_id) == "waiting"

    audit = await sb.baton.store.all(
        sa.select(t.audit.c.actor, t.audit.c.action, t.audit.c.outcome)
        .where(t.audit.c.target == gate_id)
        .order_by(t.audit.c.id)
    )
    assert [tuple(r) for r in audit] == [
        ("U0BOB", "approval-request", "ok"),
        ("U0BOB", "approve", "refused"),
        ("U0BOB", "command:approve", "refused"),
        ("U0DAVE", "approve", "refused"),
        ("U0DAVE", "command:approve", "refused"),
        ("U0ALICE", "approve", "ok"),
        ("U0ALICE", "command:approve", "ok"),
        ("U0ALICE", "approve", "duplicate"),
        ("U0ALICE", "command:approve", "invalid"),
    ]


async def test_reject_asks_for_a_reason_and_the_run_takes_its_failure_path(
    gated: tuple[SlackBaton, ManualClock],
) -> None:
    sb, _ = gated
    run_id, gate_id, _ = await open_gate(sb)
    await click(sb, blocks.REJECT, gate_id, "U0BOB")
    (opened,) = sb.slack.calls_to("views.open")
    form = opened.args["view"]
    assert form["callback_id"] == blocks.REJECT_FORM
    meta = form["private_metadata"]

    empty = fake.view_submission(
        blocks.REJECT_FORM,
        {"reason": {"value": {"type": "plain_text_input", "value": " "}}},
        private_metadata=meta,
        user="U0BOB",
    )
    status, text = await sb.post(*fake.encode_interactive(empty))
    assert status == 200 and json.loads(text)["response_action"] == "errors"

    reason = "not on a Friday, it's the release freeze"
    sent = fake.view_submission(
        blocks.REJECT_FORM,
        {"reason": {"value": {"type": "plain_text_input", "value": reason}}},
        private_metadata=meta,
        user="U0BOB",
    )
    status, _ = await sb.post(*fake.encode_interactive(sent))
    assert status == 200
    await sb.settle(run_id)
    await sb.settle()
    assert await run_status(sb, run_id) == "failed"
    shown = await prompt(sb, run_id, gate_id)
    assert buttons(shown) == [] and "*rejected*" in texts(shown) and reason in texts(shown)
    card = await sb.card_of(run_id)
    assert reason in texts(card), "the run's error carries the reason"
    assert await decisions(sb, gate_id) == [("U0BOB", "reject", reason)]


async def test_reminder_then_escalation_then_timeout_on_time(
    gated: tuple[SlackBaton, ManualClock],
) -> None:
    sb, clock = gated
    run_id, gate_id, _ = await open_gate(sb)
    card = await sb.card_of(run_id)
    timers = sb.baton.engine.timers
    assert isinstance(timers, ManualTimers)

    async def advance(minutes: int) -> None:
        timers.advance(timedelta(minutes=minutes))
        await sb.baton.engine.wait_idle()
        await sb.settle()

    def thread_says(needle: str) -> list[dict[str, Any]]:
        return [m for m in sb.slack.thread("C0OPS", card["ts"]) if needle in texts(m)]

    await advance(19)
    assert thread_says(":bell:") == []
    await advance(1)
    (reminder,) = thread_says(":bell: reminder")
    assert "<@U0BOB>" in texts(reminder) and "<!subteam^S0ONCALL>" in texts(reminder)

    await click(sb, blocks.APPROVE, gate_id, "U0CAROL")  # not an approver yet
    assert "may not decide" in (await ephemerals_to(sb, "U0CAROL"))[0]
    await advance(40)  # the hour is up: escalate to group leads (carol)
    (escalated,) = thread_says("please decide")
    assert "group leads (<@U0CAROL>)" in texts(escalated)
    shown = await prompt(sb, run_id, gate_id)
    assert "escalated" in texts(shown) and buttons(shown) == [blocks.APPROVE, blocks.REJECT]
    assert await run_status(sb, run_id) == "waiting"
    row = await sb.baton.store.one(sa.select(t.approvals).where(t.approvals.c.id == gate_id))
    assert row is not None and row.deadline_at == clock.now() + timedelta(minutes=30)

    await click(sb, blocks.APPROVE, gate_id, "U0CAROL")  # now she may
    assert await decisions(sb, gate_id) == [("U0CAROL", "approve", "")]
    await advance(20)  # the escalation reminds too: the ones who have not decided
    reminders = thread_says(":bell: reminder")
    assert len(reminders) == 2 and "group leads" in texts(reminders[1])
    await advance(10)  # one approval of two: the escalation's on_timeout rejects
    await sb.settle(run_id)
    assert await run_status(sb, run_id) == "failed"
    shown = await prompt(sb, run_id, gate_id)
    assert buttons(shown) == [] and "timed out" in texts(shown)
    actions = [
        r.action
        for r in await sb.baton.store.all(
            sa.select(t.audit.c.action).where(t.audit.c.target == gate_id).order_by(t.audit.c.id)
        )
    ]
    assert [a for a in actions if a.startswith("approval-")] == [
        "approval-request",
        "approval-reminder",
        "approval-escalated",
        "approval-reminder",  # each stage reminds once
        "approval-timeout",
    ]


async def test_a_gate_waiting_across_a_restart_keeps_its_prompt_and_deadline(
    tmp_path: Path, db_url: str
) -> None:
    write_playbooks(tmp_path / "playbooks", {"ship": GATE})
    config = tmp_path / "baton.yaml"
    config.write_text(CONFIG)
    clock = ManualClock()
    async with fake.FakeSlack() as slack:
        settings = settings_for(tmp_path, db_url, slack, config=config)
        async with served(settings, slack, clock) as first:
            run_id, gate_id, before = await open_gate(first)
            await click(first, blocks.APPROVE, gate_id, "U0BOB")
        async with served(settings, slack, clock) as second:
            await second.settle()
            await click(second, blocks.APPROVE, gate_id, "U0ALICE")
            await second.settle(run_id)
            await second.settle()
            assert await run_status(second, run_id) == "succeeded"
            after = await prompt(second, run_id, gate_id)
            assert after["ts"] == before["ts"] and buttons(after) == []
            assert "<@U0BOB> approved" in texts(after) and "<@U0ALICE> approved" in texts(after)
        async with served(settings, slack, clock) as third:
            # a second gate, then a restart: its deadline still fires (reminder included)
            run2, gate2, _ = await open_gate(third)
        async with served(settings, slack, clock) as fourth:
            timers = fourth.baton.engine.timers
            assert isinstance(timers, ManualTimers)
            timers.advance(timedelta(minutes=20))  # the reminder, armed before the restart
            await fourth.baton.engine.wait_idle()
            await fourth.settle()
            card = await fourth.card_of(run2)
            thread = slack.thread("C0OPS", card["ts"])
            assert [m for m in thread if ":bell: reminder" in texts(m)]
            timers.advance(timedelta(minutes=40))  # escalated, with a new half hour
            await fourth.baton.engine.wait_idle()
            await fourth.settle()
            thread = slack.thread("C0OPS", card["ts"])
            assert [m for m in thread if "please decide" in texts(m)]
            assert await run_status(fourth, run2) == "waiting"
            timers.advance(timedelta(minutes=30))
            await fourth.settle(run2)
            assert await run_status(fourth, run2) == "failed"
            row = await fourth.baton.store.one(
                sa.select(t.approvals.c.status).where(t.approvals.c.id == gate2)
            )
            assert row is not None and row.status == "timed_out"
            actions = [
                r.action
                for r in await fourth.baton.store.all(
                    sa.select(t.audit.c.action)
                    .where(t.audit.c.target == gate2)
                    .order_by(t.audit.c.id)
                )
            ]
            assert [a for a in actions if a.startswith("approval-")] == [
                "approval-request",
                "approval-reminder",
                "approval-escalated",
                "approval-reminder",
                "approval-timeout",
            ]
