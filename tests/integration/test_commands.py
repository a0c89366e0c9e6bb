"""The chat command language against a real engine, on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from bot.approvers import ApproverCheck
from bot.commands import Actor, Commands, Reply
from engine.access import config as accessconfig
from engine.views import queries
from storage import tables as t
from tests.conftest import HarnessFactory
from tests.harness import Harness

PLAYBOOKS = {
    "greet": """
        name: greet
        description: Greet someone.
        params:
          who: {type: string, default: world, help: who to greet}
          env: {type: choice, choices: [prod, staging], default: staging}
          token: {type: secret, required: false}
        steps:
          - id: hello
            action: log
            with: {message: "hello {{ params.who }}"}
          - id: bye
            action: log
            needs: hello
            with: {message: bye}
    """,
    "fail": """
        name: fail
        steps:
          - id: boom
            action: shell
            with: {script: "echo broken >&2; exit 4"}
    """,
    "pause": """
        name: pause
        steps:
          - id: nap
            action: wait
            with: {for: 1h}
    """,
    "gate": """
        name: gate
        steps:
          - id: ask
            action: approval
            with: {message: "Restart prod?", approvers: {users: [alice, bob]}}
          - id: after
            action: log
            needs: ask
            with: {message: done}
    """,
}

ALICE = Actor(id="alice", name="Alice", via="console")
BOB = Actor(id="bob", name="Bob", via="console")
WHERE: dict[str, Any] = {"front_end": "console"}


async def _setup(harness: HarnessFactory) -> tuple[Harness, Commands]:
    h = await harness(PLAYBOOKS)
    return h, Commands(engine=h.engine, schedules=h.schedules, timezone="UTC")


async def say(h: Harness, cmds: Commands, text: str, actor: Actor = ALICE) -> Reply:
    reply = await cmds.handle(actor, text, WHERE)
    await h.engine.wait_idle()
    assert "Traceback" not in reply.text
    return reply


async def _audit(h: Harness) -> list[sa.Row[Any]]:
    return await h.store.all(
        sa.select(t.audit).where(t.audit.c.action.like("command:%")).order_by(t.audit.c.id)
    )


async def test_run_from_chat_is_a_run_like_any_other(harness: HarnessFactory) -> None:
    h, cmds = await _setup(harness)
    reply = await say(h, cmds, 'run greet who="ops team" env=prod token=s3cret')
    assert reply.ok and reply.run_id and reply.follow
    (run,) = await queries.list_runs(h.store)
    assert run["id"] == reply.run_id
    assert (run["status"], run["trigger"], run["requested_by"]) == ("succeeded", "console", "alice")
    assert run["params"]["who"] == "ops team" and run["params"]["token"] == "***"
    assert (await h.run_row(reply.run_id)).source == WHERE
    (row,) = await _audit(h)
    assert (row.actor, row.action, row.target) == ("alice", "command:run", "greet")
    assert row.outcome == "ok"
    assert "s3cret" not in str(row.detail) and "'token=***'" in row.detail["text"]


async def test_dry_run_shows_the_plan_and_stores_nothing(harness: HarnessFactory) -> None:
    h, cmds = await _setup(harness)
    reply = await say(h, cmds, "run greet who=x --dry-run")
    assert reply.ok and reply.run_id is None
    assert "dry run of greet: nothing will be executed" in reply.text
    assert "1. hello" in reply.text and "2. bye" in reply.text and "who=x" in reply.text
    assert await queries.list_runs(h.store) == []


async def test_status_of_a_failed_run_and_of_mine(harness: HarnessFactory) -> None:
    h, cmds = await _setup(harness)
    run_id = (await say(h, cmds, "run fail")).run_id
    assert run_id is not None
    status = await say(h, cmds, f"status {run_id}")
    assert f"run {run_id}: fail failed" in status.text
    assert "boom: failed" in status.text and "exit status 4" in status.text
    mine = await say(h, cmds, "status")
    assert run_id in mine.text and "recent:" in mine.text
    assert "has no runs yet" in (await say(h, cmds, "status", BOB)).text
    missing = await say(h, cmds, "status nope")
    assert not missing.ok and "No run with id 'nope'" in missing.text


async def test_cancel_and_retry(harness: HarnessFactory) -> None:
    h, cmds = await _setup(harness)
    run_id = (await say(h, cmds, "run pause")).run_id
    assert run_id is not None
    assert (await h.run_row(run_id)).status == "waiting"
    assert "nap: waiting" in (await say(h, cmds, f"status {run_id}")).text
    cancelled = await say(h, cmds, f"cancel {run_id}")
    assert cancelled.ok and cancelled.run_id == run_id
    assert (await h.run_row(run_id)).status == "cancelled"
    again = await say(h, cmds, f"cancel {run_id}")
    assert not again.ok and "already cancelled" in again.text
    retried = await say(h, cmds, f"retry {run_id}")
    assert retried.ok
    row = await h.run_row(run_id)
    assert (row.status, row.attempt) == ("waiting", 2)
    refused = await say(h, cmds, f"retry {run_id}")
    assert not refused.ok and "still active" in refused.text


async def test_approve_flow_and_the_requester_may_not_approve(harness: HarnessFactory) -> None:
    h, cmds = await _setup(harness)
    run_id = (await say(h, cmds, "run gate")).run_id
    assert run_id is not None
    status = await say(h, cmds, f"status {run_id}")
    gate = status.data["approvals"][0]["id"]
    assert f"waiting for approval {gate}" in status.text
    assert "approvers: bob" in status.text and f"approve {gate}" in status.text
    own = await say(h, cmds, f"approve {gate} me myself")
    assert not own.ok and "cannot approve" in own.text
    assert (await h.run_row(run_id)).status == "waiting"
    ok = await say(h, cmds, f"approve {gate} looks good", BOB)
    assert ok.ok and ok.run_id == run_id and "approved" in ok.text
    assert (await h.run_row(run_id)).status == "succeeded"
    rows = await _audit(h)
    outcomes = [(r.actor, r.action, r.target, r.outcome) for r in rows[-2:]]
    assert outcomes == [
        ("alice", "command:approve", gate, "refused"),
        ("bob", "command:approve", gate, "ok"),
    ]


async def test_reject_ends_the_run(harness: HarnessFactory) -> None:
    h, cmds = await _setup(harness)
    run_id = (await say(h, cmds, "run gate")).run_id
    assert run_id is not None
    gate = (await say(h, cmds, f"status {run_id}")).data["approvals"][0]["id"]
    no = await say(h, cmds, f"reject {gate} don't, it's Friday", BOB)
    assert no.ok
    row = await h.run_row(run_id)
    assert row.status == "failed"
    decided = await h.store.one(sa.select(t.decisions).where(t.decisions.c.approval_id == gate))
    assert decided is not None and decided.comment == "don't, it's Friday"
    unknown = await say(h, cmds, "approve nope", BOB)
    assert not unknown.ok and "No approval with id 'nope'" in unknown.text


async def test_schedule_schedules_unschedule(harness: HarnessFactory) -> None:
    h, cmds = await _setup(harness)
    cron = await say(h, cmds, 'schedule greet "0 9 * * 1-5" who=team')
    assert cron.ok, cron.text
    sid = cron.data["schedule_id"]
    later = await say(h, cmds, "schedule greet in 30m")
    at = await say(h, cmds, "schedule greet at 18:00 env=prod")
    assert later.ok and at.ok, later.text + at.text
    listed = await say(h, cmds, "schedules")
    assert sid in listed.text and "0 9 * * 1-5" in listed.text and "who=team" in listed.text
    assert len(listed.data["schedules"]) == 3
    (view,) = [v for v in await h.schedules.list() if v.id == sid]
    assert (view.created_by, view.origin) == ("alice", "console")
    gone = await say(h, cmds, f"unschedule {sid}")
    assert gone.ok and sid not in (await say(h, cmds, "schedules")).text
    await h.advance(30 * 60)  # the `in 30m` one fires
    (run,) = await queries.list_runs(h.store)
    assert (run["playbook"], run["trigger"], run["status"]) == ("greet", "schedule", "succeeded")


async def test_schedules_show_their_next_fire_in_their_own_zone(harness: HarnessFactory) -> None:
    h = await harness(PLAYBOOKS)
    cmds = Commands(engine=h.engine, schedules=h.schedules, timezone="Europe/Paris")
    made = await say(h, cmds, 'schedule greet "0 9 * * *"')
    (view,) = await h.schedules.list()
    local = view.next_fire_at.astimezone(ZoneInfo("Europe/Paris"))
    assert (local.hour, local.minute) == (9, 0)
    shown = f"{local:%Y-%m-%d} 09:00:00 Europe/Paris"
    assert made.text.endswith(f"(Europe/Paris); next run {shown}")
    listed = await say(h, cmds, "schedules")
    assert f"0 9 * * * (Europe/Paris)  {shown}  alice" in listed.text
    assert "UTC" not in listed.text


async def test_crontab_weekdays_from_chat(harness: HarnessFactory) -> None:
    """`7` is Sunday as in crontab, `0-6` every day; what crontab lacks is refused with
    the forms it has."""
    h, cmds = await _setup(harness)
    sunday = await say(h, cmds, 'schedule greet "0 9 * * 7"')
    daily = await say(h, cmds, 'schedule greet "0 9 * * 0-6" who=all')
    assert sunday.ok and daily.ok, sunday.text + daily.text
    views = {v.id: v for v in await h.schedules.list()}
    nxt = views[sunday.data["schedule_id"]].next_fire_at
    assert nxt is not None and nxt.strftime("%A %H:%M") == "Sunday 09:00"
    tomorrow = views[daily.data["schedule_id"]].next_fire_at
    assert tomorrow is not None and (tomorrow - h.clock.now()).total_seconds() <= 86400
    wrong = await say(h, cmds, 'schedule greet "0 9 * * 1#2"')
    assert not wrong.ok and "0 and 7 are Sunday" in wrong.text
    assert len(await h.schedules.list()) == 2


def columns(line: str) -> list[int]:
    """Where each column of a table line starts (columns are two spaces apart)."""
    return [m.start() for m in re.finditer(r"(?:^|(?<=  ))\S", line)]


async def test_history(harness: HarnessFactory) -> None:
    h, cmds = await _setup(harness)
    assert "no runs yet" in (await say(h, cmds, "history")).text
    first = (await say(h, cmds, "run greet")).run_id
    second = (await say(h, cmds, "run fail", BOB)).run_id
    everything = await say(h, cmds, "history")
    assert str(first) in everything.text and str(second) in everything.text
    header, *rows = everything.lines
    assert everything.table_at == 0 and header.split() == [
        "RUN",
        "PLAYBOOK",
        "STATUS",
        "TOOK",
        "BY",
        "VIA",
        "CREATED",
    ]
    for row in rows:  # every cell starts under its title, whatever the cells' widths
        assert columns(row) == columns(header), f"{header}\n{row}"
    only = await say(h, cmds, "history greet")
    assert str(first) in only.text and str(second) not in only.text
    wrong = await say(h, cmds, "history gret")
    assert not wrong.ok and "Did you mean `greet`" in wrong.text


async def test_help_and_describe_show_params(harness: HarnessFactory) -> None:
    h, cmds = await _setup(harness)
    everything = await say(h, cmds, "help")
    for word in ("run PLAYBOOK", "approve ID", "schedules", "greet", "Greet someone."):
        assert word in everything.text
    run = await say(h, cmds, "help run")
    assert "who (string; default world) - who to greet" in run.text
    assert "env (choice: prod, staging; default staging)" in run.text
    described = await say(h, cmds, "describe greet")
    assert "token (secret; optional)" in described.text and "steps: hello, bye" in described.text
    assert "Did you mean `describe`" in (await say(h, cmds, "help descrbe")).text


async def test_an_invalid_playbook_is_called_invalid_not_unknown(harness: HarnessFactory) -> None:
    h, cmds = await _setup(harness)
    path = h.root / "playbooks" / "typo.yaml"
    path.write_text("name: typo\nsteps:\n  - id: a\n    action: log\n    colour: red\n")
    h.engine.reload()
    reply = await say(h, cmds, "run typo")
    assert not reply.ok
    assert reply.text.splitlines() == [
        f"Playbook 'typo' is invalid, so it cannot run ({path}):",
        f"  {path}:3: step 'a': action 'log' needs input 'message'",
        f"  {path}:5: steps[0].colour: unknown key",
        f"Fix it, then check it with `baton validate {path}`.",
    ]
    assert await queries.list_runs(h.store) == []


async def test_mistakes_get_a_short_answer_and_are_audited(harness: HarnessFactory) -> None:
    h, cmds = await _setup(harness)
    unknown = await say(h, cmds, "rnu greet")
    assert not unknown.ok and "Did you mean `run`?" in unknown.text
    playbook = await say(h, cmds, "run gret")
    assert not playbook.ok and "Unknown playbook 'gret'. Did you mean `greet`" in playbook.text
    bad = await say(h, cmds, "run greet env=dev whom=x")
    assert not bad.ok
    assert "env: 'dev' is not one of prod, staging" in bad.text
    assert "unknown param 'whom' (did you mean who?)" in bad.text
    assert await queries.list_runs(h.store) == []
    rows = await _audit(h)
    assert [(r.action, r.target, r.outcome) for r in rows] == [
        ("command:rnu", "", "invalid"),
        ("command:run", "gret", "invalid"),
        ("command:run", "greet", "invalid"),
    ]


async def test_an_unexpected_error_is_a_generic_reply(harness: HarnessFactory) -> None:
    h, cmds = await _setup(harness)

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("database on fire")

    cmds.schedules.list = broken  # type: ignore[method-assign]
    reply = await say(h, cmds, "schedules")
    assert not reply.ok
    assert reply.text == "Something went wrong; the server log has the details."
    (row,) = await _audit(h)
    assert (row.action, row.outcome) == ("command:schedules", "error")


ESCALATING = """
    name: two-keys
    steps:
      - id: ask
        action: approval
        with:
          message: "Drop the old table?"
          approvers: {users: [bob, carol]}
          min_approvals: 2
          timeout: 1h
          on_timeout: escalate
          escalate: {approvers: {groups: [dba]}, timeout: 30m, on_timeout: approve}
          remind: 45m
"""


async def test_console_gate_quorum_double_outsider_escalation_and_status(
    harness: HarnessFactory,
) -> None:
    h = await harness({**PLAYBOOKS, "two-keys": ESCALATING})
    rules = accessconfig.parse("groups:\n  dba: [dave]\n")
    h.engine.approver_check = ApproverCheck(rules)
    cmds = Commands(engine=h.engine, schedules=h.schedules, rules=rules)
    dave = Actor(id="dave", via="console")
    run_id = (await say(h, cmds, "run two-keys")).run_id
    assert run_id is not None
    gate = (await say(h, cmds, f"status {run_id}")).data["approvals"][0]["id"]

    assert (await say(h, cmds, f"approve {gate} ok", BOB)).ok
    again = await say(h, cmds, f"approve {gate} ok again", BOB)
    assert not again.ok and "already decided" in again.text
    outsider = await say(h, cmds, f"approve {gate}", dave)
    assert not outsider.ok and "may not decide" in outsider.text
    status = await say(h, cmds, f"status {run_id}")
    assert "1 of 2 approvals, until 2026-01-01 01:00:00 UTC then escalate" in status.text
    assert "bob approved: ok" in status.text

    await h.advance(3600)  # nobody else decided: group dba is asked too, for 30 minutes
    status = await say(h, cmds, f"status {run_id}")
    assert "(escalated)" in status.text and "then approve" in status.text
    assert (await h.run_row(run_id)).status == "waiting"
    assert (await say(h, cmds, f"approve {gate} fine by me", dave)).ok
    assert (await h.run_row(run_id)).status == "succeeded"
    decided = await h.store.all(
        sa.select(t.decisions.c.user).where(t.decisions.c.approval_id == gate)
    )
    assert sorted(r.user for r in decided) == ["bob", "dave"]


async def test_a_huge_param_is_stored_once_in_the_audit(harness: HarnessFactory) -> None:
    """The run's (or schedule's) audit row keeps the params; the audit row of the command
    that made it names a long value by its size instead of keeping it a second time.
    A refused command keeps its whole text: it is the only row."""
    h, cmds = await _setup(harness)
    huge = "z" * 100_000
    ran = await say(h, cmds, f"run greet who={huge} env=prod")
    scheduled = await say(h, cmds, f"schedule greet in 30m who={huge}")
    refused = await say(h, cmds, f"run greet who={huge} env=dev")
    assert ran.ok and scheduled.ok and not refused.ok
    rows = await h.store.all(sa.select(t.audit).order_by(t.audit.c.id))
    assert [r.action for r in rows] == [
        *("run", "command:run", "schedule", "command:schedule", "command:run")
    ]
    assert rows[0].detail["params"]["who"] == huge
    assert rows[1].detail["text"] == (
        "run greet 'who=<100,000 characters, kept with the run>' env=prod"
    )
    assert rows[2].detail["params"]["who"] == huge
    assert rows[3].detail["text"] == (
        "schedule greet 'in 30m' 'who=<100,000 characters, kept with the schedule>'"
    )
    assert huge in rows[4].detail["text"]  # refused: no other row holds it
    stored = sum(len(str(r.detail)) for r in rows)
    assert stored < 3 * len(huge) + 1_000  # once each for the run, schedule and refusal
