"""The chat command language, the same in every front end (console, Slack, DMs).

Two halves: ``bot.grammar.parse(text)`` turns one line into a typed command, and
``Commands.handle`` (here) checks access, carries it out against the engine through the
module of its family (``bot.chat``: runs, approvals, schedules, lists, help) and answers
with a ``Reply``: plain data (lines of text plus a few structured fields) that the
console prints and the Slack front end turns into blocks.

Decisions:

- ``approve ID [comment]`` / ``reject ID [reason]``: the comment is free text, kept as
  typed (``reject X don't, it's Friday``); one quoted string is unquoted.
- Every command, allowed or refused, leaves one audit row: action ``command:VERB``, the
  target (playbook, run, approval or schedule), the line with secret values masked, and
  the outcome (``ok``, ``refused``, ``invalid`` for bad input, ``error`` for a bug).
- ``status`` without a run lists the asker's active runs and their latest others.
- Access: ``Commands.authorize`` is the one place that asks ``engine.access.rules.authorize``;
  every command passes through it (the CLI's ``baton run --as`` too). Commands that
  change something (run, schedule, unschedule, retry, cancel) are checked against the
  playbook they touch; the rest only read. Whoever started a run may always cancel it.
  A person's role (``users:`` in ``BATON_CONFIG``) comes first: a viewer may only read
  (no approve or reject either), an admin passes every rule.
- ``run P`` without a required param answers with what is missing and, in
  ``data["form"]``, what a front end needs to ask for it (Slack opens a form).
"""

from __future__ import annotations

import functools
import logging
import shlex
from typing import Any

from bot.chat import approvals, guide, lists, runs, schedules
from bot.chat.replies import Reply, fail, failure_kind
from bot.grammar import (
    Cancel,
    Command,
    CommandError,
    Decide,
    Describe,
    Help,
    History,
    Hosts,
    ListAlerts,
    ListPlaybooks,
    ListSchedules,
    Logs,
    Pause,
    Resume,
    Retry,
    Run,
    Schedule,
    Stats,
    Status,
    Trigger,
    Unschedule,
    parse,
    shown_as_text,
    target_of,
    verb_of,
)
from engine import storable
from engine.access import rules as access
from engine.access.rules import Actor
from engine.errors import BatonError, NotAllowed, PlaybookNotFound, PlaybookUnusable
from engine.playbooks import params as paramlib
from engine.playbooks import paramsecrets
from engine.runs.engine import Engine
from engine.schedules import service as schedlib
from engine.views import queries

__all__ = [  # the grammar's names, for callers that know this module only
    "Actor",
    "Cancel",
    "Command",
    "CommandError",
    "Commands",
    "Decide",
    "Describe",
    "Help",
    "History",
    "ListPlaybooks",
    "ListSchedules",
    "Reply",
    "Retry",
    "Run",
    "Schedule",
    "Status",
    "Unschedule",
    "parse",
]

log = logging.getLogger(__name__)

LONG_VALUE = 256
"""A param value longer than this is left out of a command's audit text when the run's
(or schedule's) own audit row keeps it: a huge value is stored once."""


class Commands:
    """Runs parsed commands against the engine; one instance serves every front end."""

    def __init__(
        self,
        *,
        engine: Engine,
        schedules: schedlib.Schedules,
        timezone: str = "UTC",
        rules: access.AccessRules | None = None,
    ) -> None:
        self.engine = engine
        self.schedules = schedules
        self.store = engine.store
        self.timezone = timezone
        self.rules = rules or access.AccessRules()

    async def handle(self, actor: Actor, text: str, where: dict[str, Any]) -> Reply:
        """Answer one line of chat. Never raises: mistakes and refusals become replies,
        a bug becomes a generic reply (details in the log)."""
        unreadable = storable.problem(text)
        if unreadable is not None:  # kept out of every query, and out of the audit row
            text = storable.clean_text(text)
        verb = text.strip().split(" ", 1)[0].lower()[:40]
        target, shown, outcome = "", verb, "ok"
        try:
            if unreadable is not None:
                raise BatonError(f"That line cannot be read: {unreadable}. Type it again.")
            command = parse(text)
            verb, target, shown = verb_of(command), target_of(command), self._masked(command)
            await self.authorize(actor, command, where)
            reply = await self._execute(actor, command, where)
            if not reply.ok:
                outcome = "invalid"
            elif reply.run_id or reply.data.get("schedule_id"):  # its own row keeps the params
                shown = self._masked(
                    command, kept="schedule" if reply.data.get("schedule_id") else "run"
                )
        except NotAllowed as exc:
            outcome, reply = "refused", fail(str(exc))
            reply.data["failure"] = "refused"
            reply.data["refused"] = True  # a refusal, not a mistake (the web answers 403)
            if isinstance(exc, access.Refused):  # front ends may word it their way
                reply.data["refusal"] = exc.decision
        except PlaybookUnusable as exc:  # its file fails validation: say so, and why
            outcome, reply = "invalid", fail(*str(exc).splitlines())
            reply.data["failure"] = failure_kind(exc)
        except PlaybookNotFound as exc:
            outcome = "invalid"
            hint = ", ".join(f"`{s}`" for s in exc.suggestions)
            more = f"Did you mean {hint}?" if hint else "`playbooks` lists them."
            reply = fail(f"Unknown playbook {exc.name!r}. {more}")
            reply.data["failure"] = failure_kind(exc)
        except BatonError as exc:
            outcome, reply = "invalid", fail(*str(exc).splitlines())
            reply.data["failure"] = failure_kind(exc)  # the web answers with its status
        except Exception:
            log.exception("command %r from %s failed", shown, actor.id)
            outcome = "error"
            reply = fail("Something went wrong; the server log has the details.")
        try:
            await self.engine.audit(
                actor.id,
                f"command:{verb}"[:64],
                target[:500],
                {"text": shown, "via": actor.via},
                outcome,
                where,
            )
        except Exception:
            log.exception("could not write the audit row of %r from %s", shown, actor.id)
        return reply

    async def authorize(self, actor: Actor, command: Command, where: dict[str, Any]) -> None:
        """The one place access is checked: raises NotAllowed saying who may."""
        action, playbook, own = verb_of(command), "", False
        match command:
            case Run(dry_run=True):
                return
            case Run() | Schedule():
                playbook = command.playbook
            case Cancel() | Retry():
                run = await queries.run_origin(self.store, command.run_id)
                own = self.rules.people.same(actor.id, run["requested_by"])
                playbook = run["playbook"]
            case Unschedule() | Pause() | Resume() | Trigger():
                views = {v.id: v for v in await self.schedules.list()}
                if command.schedule_id not in views:
                    return  # the schedules module says it does not exist
                playbook = views[command.schedule_id].playbook
                action = SCHEDULE_ACCESS.get(action, action)
            case Decide():
                pass  # a viewer may not decide; the engine checks the gate's approvers
            case _:
                return
        place = place_of(actor, where)
        decision = access.authorize(self.rules, actor, action, playbook, place, own=own)
        if not decision.allowed:
            raise access.Refused(decision)

    def may_run(self, actor: Actor, playbook: str, where: dict[str, Any]) -> bool:
        place = place_of(actor, where)
        return access.authorize(self.rules, actor, "run", playbook, place).allowed

    def _masked(self, command: Command, kept: str = "") -> str:
        """The command as text for the audit trail, secret values replaced by ``***``.
        ``kept``: the audit row (``run``, ``schedule``) that keeps the params already,
        where a long value is left, not stored twice."""
        if not isinstance(command, Run | Schedule):
            return shown_as_text(command)
        try:
            playbook = self.engine.catalog.get(command.playbook)
        except PlaybookNotFound:
            params = dict.fromkeys(command.params, paramlib.MASK)
        else:
            params = paramsecrets.typed_masked(playbook, command.params)
        words = [verb_of(command), command.playbook]
        if isinstance(command, Schedule):
            words.append(command.when or command.cron or "")
        words += [
            f"{k}=<{len(str(v)):,} characters, kept with the {kept}>"
            if kept and len(str(v)) > LONG_VALUE
            else f"{k}={v}"
            for k, v in params.items()
        ]
        if isinstance(command, Run) and command.dry_run:
            words.append("--dry-run")
        return shlex.join(words)

    async def _execute(self, actor: Actor, command: Command, where: dict[str, Any]) -> Reply:
        engine, book = self.engine, self.schedules
        match command:
            case Help():
                may_run = functools.partial(self.may_run, actor, where=where)
                return guide.help_on(engine.catalog, command.topic, may_run)
            case ListPlaybooks():
                return guide.playbooks(engine.catalog)
            case Describe():
                return guide.describe(engine.catalog, command.playbook)
            case Run():
                return await runs.run(engine, actor, command, where)
            case Status():
                if command.run_id is None:
                    return await runs.my_runs(self.store, actor)
                return await runs.status(self.store, command.run_id)
            case Cancel():
                return await runs.cancel(engine, actor, command)
            case Retry():
                return await runs.retry(engine, actor, command)
            case Logs():
                return await runs.logs(self.store, command)
            case Decide():
                return await approvals.decide(engine, actor, command)
            case Schedule():
                return await schedules.schedule(book, actor, command, self.timezone)
            case ListSchedules():
                return await schedules.listing(book)
            case Unschedule():
                return await schedules.unschedule(book, actor, command)
            case Pause() | Resume() | Trigger():
                return await schedules.operate(book, actor, command)
            case History():
                return await lists.history(engine, command.playbook)
            case ListAlerts():
                return await lists.alerts(self.store, command.outcome)
            case Stats():
                return await lists.stats(engine, command)
            case Hosts():
                return await lists.hosts(command)


SCHEDULE_ACCESS = {"pause": "schedule", "resume": "schedule", "trigger": "run"}
"""The access rules' action a schedule command is checked as: pausing and resuming change
a schedule, triggering starts a run."""


def place_of(actor: Actor, where: dict[str, Any]) -> access.Place:
    """The place access rules see: the chat channel, or Baton's own front end."""
    if where.get("channel") or where.get("channel_name"):
        return access.Place(where.get("channel"), where.get("channel_name"))
    return access.Place(channel_name=str(where.get("front_end") or actor.via))
