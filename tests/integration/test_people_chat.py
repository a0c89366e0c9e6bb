"""A Slack user mapped to a person (``users.NAME.slack``) has the person's groups and role
in chat, and is the same person for the no-self-approval rule. SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from bot.approvers import ApproverCheck
from bot.commands import Actor, Commands, Reply
from engine.access import config as accessconfig
from tests.conftest import HarnessFactory
from tests.harness import Harness

PLAYBOOKS = {
    "restart-api": """
        name: restart-api
        steps:
          - id: ask
            action: approval
            with: {message: "Restart?", approvers: {groups: [sre]}}
          - id: after
            action: log
            needs: ask
            with: {message: done}
    """,
}

CONFIG = """
users:
  alice: {slack: U01AAA, groups: [sre]}
  bob: {slack: U02BBB, groups: [sre]}
  vera: {slack: U03VVV, role: viewer}
access:
  rules:
    - playbooks: "restart-*"
      groups: [sre]
      channels: ["#ops", console]
"""

OPS: dict[str, Any] = {"channel": "C0OPS", "channel_name": "ops"}


def slack(user: str) -> Actor:
    return Actor(id=user, via="slack")


async def say(h: Harness, cmds: Commands, actor: Actor, text: str) -> Reply:
    reply = await cmds.handle(actor, text, OPS)
    await h.engine.wait_idle()
    return reply


async def test_a_mapped_slack_user_acts_with_the_persons_groups_and_role(
    harness: HarnessFactory,
) -> None:
    h = await harness(PLAYBOOKS)
    rules = accessconfig.parse(CONFIG, "baton.yaml")
    h.engine.approver_check = ApproverCheck(rules)
    h.engine.same_person = rules.people.same
    cmds = Commands(engine=h.engine, schedules=h.schedules, rules=rules)

    stranger = await say(h, cmds, slack("U09ZZZ"), "run restart-api")
    assert not stranger.ok and "can be run by group sre" in stranger.text
    viewer = await say(h, cmds, slack("U03VVV"), "run restart-api")
    assert not viewer.ok and "vera is a viewer" in viewer.text

    started = await say(h, cmds, slack("U01AAA"), "run restart-api")  # alice, in group sre
    assert started.ok, started.text
    run_id = started.run_id
    assert run_id is not None
    gate = (await say(h, cmds, slack("U01AAA"), f"status {run_id}")).data["approvals"][0]["id"]

    # alice on the console (her login name) is still the one who started the run
    own = await cmds.handle(Actor(id="alice", via="console"), f"approve {gate}", {})
    assert not own.ok and "started run" in own.text
    looked = await say(h, cmds, slack("U03VVV"), f"approve {gate}")
    assert not looked.ok and "vera is a viewer" in looked.text
    assert (await h.run_row(run_id)).status == "waiting"
    approved = await say(h, cmds, slack("U02BBB"), f"approve {gate} go")  # bob, group sre
    assert approved.ok, approved.text
    assert (await h.run_row(run_id)).status == "succeeded"
