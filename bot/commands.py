"""The chat command language, the same in every front end (console, Slack, DMs).

Two halves: ``bot.grammar.parse(text)`` turns one line into a typed command, and
``Commands.handle`` (here) carries it out against the engine and answers with a
``Reply``: plain data (lines of text plus a few structured fields) that the console
prints and the Slack front end turns into blocks.

Decisions:

- ``approve ID [comment]`` / ``reject ID [reason]``: the comment is free text, kept as
  typed (``reject X don't, it's Friday``); one quoted string is unquoted.
- Every command, allowed or refused, leaves one audit row: action ``command:VERB``, the
  target (playbook, run, approval or schedule), the line with secret values masked, and
  the outcome (``ok``, ``refused``, ``invalid`` for bad input, ``error`` for a bug).
- ``status`` without a run lists the asker's active runs and their latest others.
- Access: ``Commands.authorize`` is the one place that asks ``engine.access.authorize``;
  every command passes through it (the CLI's ``baton run --as`` too). Commands that
  change something (run, schedule, unschedule, retry, cancel) are checked against the
  playbook they touch; the rest only read. Whoever started a run may always cancel it.
  A person's role (``users:`` in ``BATON_CONFIG``) comes first: a viewer may only read
  (no approve or reject either), an admin passes every rule.
- ``run P`` without a required param answers with what is missing and, in
  ``data["form"]``, what a front end needs to ask for it (Slack opens a form).
"""

from __future__ import annotations

import asyncio
import io
import logging
import shlex
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bot import hosts, stats_chat, zoned
from bot.grammar import (
    USAGE,
    VERBS,
    Alerts,
    Cancel,
    Command,
    CommandError,
    Decide,
    Describe,
    Help,
    History,
    Hosts,
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
from bot.progress import Progress
from bot.tables import table
from engine import access, analytics, queries, runlogs, schedule_ops, storable
from engine import params as paramlib
from engine import schedules as schedlib
from engine.access import Actor
from engine.durations import format_duration
from engine.errors import (
    BatonError,
    InvalidTransition,
    NotAllowed,
    PlaybookNotFound,
    PlaybookUnusable,
    closest,
)
from engine.fleet import inventory
from engine.foreach import Tally
from engine.requests import RunRequest
from engine.runner import Engine

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

HISTORY_LIMIT = 10
HOSTS_LIMIT = 100
STATUS_LIMIT = 10
ACTIVE = ("queued", "running", "waiting")


# --- who asks, and the answer ----------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """A front-end-agnostic answer. ``ok`` False marks a refusal or a mistake;
    ``run_id`` names the run the answer is about, ``follow`` asks the front end to show
    that run's live progress; ``data`` carries structured details for richer renderers;
    ``table_at``: the lines from that index on are a table, aligned in columns (Slack
    shows them as code, so that they stay aligned)."""

    lines: list[str]
    ok: bool = True
    run_id: str | None = None
    follow: bool = False
    data: dict[str, Any] = field(default_factory=dict)
    table_at: int | None = None

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def _fail(*lines: str) -> Reply:
    return Reply(list(lines), ok=False)


# --- carrying commands out ---------------------------------------------------------


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
        except NotAllowed as exc:
            outcome, reply = "refused", _fail(str(exc))
            reply.data["refused"] = True  # a refusal, not a mistake (the web answers 403)
            if isinstance(exc, access.Refused):  # front ends may word it their way
                reply.data["refusal"] = exc.decision
        except PlaybookUnusable as exc:  # its file fails validation: say so, and why
            outcome, reply = "invalid", _fail(*str(exc).splitlines())
        except PlaybookNotFound as exc:
            outcome = "invalid"
            hint = ", ".join(f"`{s}`" for s in exc.suggestions)
            more = f"Did you mean {hint}?" if hint else "`playbooks` lists them."
            reply = _fail(f"Unknown playbook {exc.name!r}. {more}")
        except BatonError as exc:
            outcome, reply = "invalid", _fail(*str(exc).splitlines())
        except Exception:
            log.exception("command %r from %s failed", shown, actor.id)
            outcome = "error"
            reply = _fail("Something went wrong; the server log has the details.")
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

    def _masked(self, command: Command) -> str:
        """The command as text for the audit trail, secret values replaced by ``***``."""
        if not isinstance(command, Run | Schedule):
            return shown_as_text(command)
        try:
            playbook = self.engine.catalog.get(command.playbook)
        except PlaybookNotFound:
            params = dict.fromkeys(command.params, paramlib.MASK)
        else:
            params = paramlib.typed_masked(playbook, command.params)
        words = [verb_of(command), command.playbook]
        if isinstance(command, Schedule):
            words.append(command.when or command.cron or "")
        words += [f"{k}={v}" for k, v in params.items()]
        if isinstance(command, Run) and command.dry_run:
            words.append("--dry-run")
        return shlex.join(words)

    async def _execute(self, actor: Actor, command: Command, where: dict[str, Any]) -> Reply:
        match command:
            case Help():
                return self._help(command.topic, actor, where)
            case ListPlaybooks():
                return self._playbooks()
            case Describe():
                return self._describe(command.playbook)
            case Run():
                return await self._run(actor, command, where)
            case Status():
                if command.run_id is None:
                    return await self._my_runs(actor)
                return await self._status(command.run_id)
            case Cancel():
                answer = await self.engine.cancel(command.run_id, actor.id)
                if answer.state == "refused":
                    raise InvalidTransition(answer.message)
                return Reply([answer.message], run_id=command.run_id, follow=True)
            case Retry():
                await self.engine.retry(command.run_id, actor.id, from_failed=command.from_failed)
                steps = " from its failed steps" if command.from_failed else ""
                said = [f"retrying run {command.run_id}{steps}"]
                return Reply(said, run_id=command.run_id, follow=True)
            case Decide():
                return await self._decide(actor, command)
            case Schedule():
                return await self._schedule(actor, command)
            case ListSchedules():
                return await self._schedules()
            case Unschedule():
                gone = await self.schedules.remove(command.schedule_id, actor.id)
                return Reply([f"removed schedule {gone.id} ({gone.playbook}, {gone.when})"])
            case Pause() | Resume() | Trigger():
                return await self._schedule_op(actor, command)
            case History():
                return await self._history(command.playbook)
            case Alerts():
                return await self._alerts(command.outcome)
            case Stats():
                return await self._stats(command)
            case Hosts():
                # a glob looks at every host: off the loop for a big inventory
                fleet, pattern = inventory.active(), command.pattern
                found = await asyncio.to_thread(hosts.listing, fleet, pattern, HOSTS_LIMIT)
                return Reply(found.lines, ok=found.found, table_at=0 if found.found else None)
            case Logs():
                text = await runlogs.text(self.store, command.run_id, command.step_id)
                lines = text.rstrip("\n").split("\n")
                return Reply(lines, run_id=command.run_id, data={"logs": text})

    # --- help and playbooks ------------------------------------------------------------

    def _help(self, topic: str | None, actor: Actor, where: dict[str, Any]) -> Reply:
        """The commands and playbooks this asker may use (the others are not shown)."""
        if topic is None:
            mine = [pb.name for pb in self.engine.catalog if self.may_run(actor, pb.name, where)]
            verbs = [v for v in USAGE if v not in CHANGING or mine]
            width = max(len(USAGE[v][0]) for v in verbs)
            lines = ["commands:"]
            lines += [f"  {USAGE[v][0]:<{width}}  {USAGE[v][1]}" for v in verbs]
            if mine:
                lines.append("playbooks you may run:")
                lines += [f"  {line}" for line in self._playbooks(set(mine)).lines]
            elif len(self.engine.catalog):
                lines.append("you may run no playbook here; `playbooks` lists them all")
            lines.append("`help COMMAND` for one command, `describe PLAYBOOK` for its params")
            return Reply(lines)
        if topic in self.engine.catalog and topic not in USAGE:
            return self._describe(topic)
        if topic not in USAGE:
            hint = closest(topic, VERBS, n=1)
            extra = f" Did you mean `{hint[0]}`?" if hint else ""
            return _fail(f"No command {topic!r}.{extra} `help` lists the commands.")
        usage, what = USAGE[topic]
        lines = [usage, f"  {what}"]
        if topic in ("run", "schedule"):
            for pb in self.engine.catalog:
                described = paramlib.describe(pb)
                lines.append(f"{pb.name}:" if described else f"{pb.name}: (no params)")
                lines += [f"  {d}" for d in described]
        return Reply(lines)

    def _playbooks(self, only: set[str] | None = None) -> Reply:
        shown = [pb for pb in self.engine.catalog if only is None or pb.name in only]
        if not shown:
            return Reply(["no playbooks loaded"])
        width = max(len(pb.name) for pb in shown)
        return Reply(
            [f"{pb.name:<{width}}  {_first_line(pb.description)}".rstrip() for pb in shown]
        )

    def _describe(self, name: str) -> Reply:
        pb = self.engine.catalog.get(name)
        lines = [f"{pb.name}: {_first_line(pb.description)}".rstrip()]
        described = paramlib.describe(pb)
        lines.append("params:" if described else "params: (none)")
        lines += [f"  {d}" for d in described]
        lines.append("steps: " + ", ".join(step.id for step in pb.steps))
        example = " ".join(f"{n}=..." for n, spec in pb.params.items() if spec.required)
        lines.append(f"run it: run {pb.name} {example}".rstrip())
        return Reply(lines, data={"playbook": pb.name})

    # --- runs --------------------------------------------------------------------------

    async def _run(self, actor: Actor, command: Run, where: dict[str, Any]) -> Reply:
        request = RunRequest(
            playbook=command.playbook,
            params=command.params,
            requested_by=actor.id,
            trigger=actor.via,
            source=dict(where),
        )
        if command.dry_run:
            buf = io.StringIO()
            Progress(buf).plan(self.engine.plan(request))
            return Reply(buf.getvalue().splitlines(), data={"playbook": command.playbook})
        playbook = self.engine.catalog.get(command.playbook)
        missing = paramlib.missing(playbook, command.params)
        if missing:
            described = dict(zip(playbook.params, paramlib.describe(playbook), strict=True))
            lines = [f"`{playbook.name}` needs {', '.join(missing)}:"]
            lines += [f"  {described[name]}" for name in missing]
            shown = paramlib.typed_masked(playbook, command.params)
            example = " ".join(shlex.quote(f"{k}={v}") for k, v in shown.items())
            wanted = " ".join(f"{name}={_example(playbook.params[name])}" for name in missing)
            lines.append(f"say `run {playbook.name} {example} {wanted}`".replace("  ", " "))
            # a secret (or what may be one) typed in chat is not carried into a form or a
            # button: asked again
            plain = set(playbook.params) - paramlib.secret_names(playbook)
            given = {k: v for k, v in command.params.items() if k in plain}
            form = {"playbook": playbook.name, "given": given}
            return Reply(lines, ok=False, data={"form": form, "playbook": playbook.name})
        run_id = await self.engine.start_run(request)
        return Reply(
            [f"started {command.playbook} as run {run_id}"],
            run_id=run_id,
            follow=True,
            data={"playbook": command.playbook, "started": run_id},
        )

    async def _status(self, run_id: str) -> Reply:
        run = await queries.get_run(self.store, run_id)
        lines = [
            f"run {run['id']}: {run['playbook']} {run['status']}"
            f" (by {run['requested_by']} via {run['trigger']}, {_when(run['created_at'])})",
        ]
        shown = _params(run["params"])
        if shown:
            lines.append(f"params: {shown}")
        if run["error"]:
            lines.append(f"error: {run['error']}")
        for step in run["steps"]:
            tries = f", {step['attempts']} attempts" if step["attempts"] > 1 else ""
            took = _took(step["started_at"], step["finished_at"])
            took = f", {took}" if took else ""
            phase = f" [{step['phase']}]" if step.get("phase", "main") != "main" else ""
            lines.append(f"  {step['id']}{phase}: {step['status']}{tries}{took}")
            if step.get("items"):
                lines.append(f"    items: {Tally.from_json(step['items']).summary()}")
            waiting_for = queries.waiting_for(step)
            if waiting_for:
                lines.append(f"    waiting for {waiting_for}")
            if step["error"]:
                lines.append(f"    {_first_line(step['error'])}")
        approvals = await queries.pending_approvals(self.store, run_id)
        for gate in approvals:
            lines.append(
                f"waiting for approval {gate['id']} on step {gate['step_id']}: "
                f"{gate['message']} (approvers: {gate['approvers']}) "
                f"- `approve {gate['id']}` or `reject {gate['id']} REASON`"
            )
            view = await queries.approval_view(self.store, gate["id"])
            spec = view["spec"]
            state = f"  {len([d for d in view['decisions'] if d['decision'] == 'approve'])}"
            state += f" of {spec.get('min_approvals', 1)} approvals"
            if view["deadline_at"]:
                state += f", until {_when(view['deadline_at'])} UTC then {spec.get('on_timeout')}"
            if spec.get("stage"):
                state += " (escalated)"
            lines.append(state)
            lines += [
                f"    {d['user']} {d['decision']}d" + (f": {d['comment']}" if d["comment"] else "")
                for d in view["decisions"]
            ]
        return Reply(lines, run_id=run_id, data={"run": run, "approvals": approvals})

    async def _my_runs(self, actor: Actor) -> Reply:
        mine = actor.id
        active = [  # by status first: a person's whole history is never read
            run
            for status in ACTIVE
            for run in await queries.list_runs(
                self.store, limit=200, requested_by=mine, status=status
            )
        ]
        active.sort(key=lambda r: (r["created_at"], r["id"]), reverse=True)
        room = max(0, STATUS_LIMIT - len(active))
        latest = await queries.list_runs(self.store, limit=room + len(active), requested_by=mine)
        recent = [r for r in latest if r["status"] not in ACTIVE][:room]
        if not active and not recent:
            return Reply([f"{actor.shown} has no runs yet; `history` shows everyone's"])
        title = f"active runs of {actor.shown}" if active else f"no active runs of {actor.shown}"
        title += (", then recent:" if active else "; recent:") if recent else ":"
        rows = _run_rows(active) + _run_rows(recent)  # one table: the columns line up
        lines = [title, *table(RUN_HEADER, rows)]
        return Reply(lines, data={"runs": active + recent}, table_at=1)

    async def _history(self, playbook: str | None) -> Reply:
        runs = await queries.list_runs(self.store, limit=HISTORY_LIMIT, playbook=playbook)
        if not runs:
            if playbook is not None and playbook not in self.engine.catalog:
                raise PlaybookNotFound(playbook, self.engine.catalog.names())
            return Reply([f"no runs of {playbook} yet" if playbook else "no runs yet"])
        return Reply(table(RUN_HEADER, _run_rows(runs)), data={"runs": runs}, table_at=0)

    async def _stats(self, command: Stats) -> Reply:
        days = command.days or analytics.DEFAULT_DAYS
        found = await analytics.of_engine(self.engine, days=days, playbook=command.playbook)
        lines, at = (stats_chat.detail if command.playbook else stats_chat.overview)(found)
        return Reply(lines, data={"stats": found.to_json()}, table_at=at)

    async def _decide(self, actor: Actor, command: Decide) -> Reply:
        result = await self.engine.decide(
            command.approval_id, actor.id, command.decision, command.comment
        )
        run_id = await queries.approval_run(self.store, command.approval_id)
        lines = [result.message]
        if result.recorded and result.status == "pending":
            lines.append(f"approval {command.approval_id} still needs more approvals")
        elif result.recorded:
            lines.append(f"approval {command.approval_id} is {result.status}; run {run_id} goes on")
        return Reply(
            lines,
            ok=result.recorded,
            run_id=run_id,
            follow=result.recorded,
            data={"approval_id": command.approval_id, "status": result.status},
        )

    async def _alerts(self, outcome: str | None) -> Reply:
        found = await queries.recent_alerts(self.store, limit=HISTORY_LIMIT, outcome=outcome)
        if not found:
            return Reply([f"no {outcome} alerts" if outcome else "no alerts received yet"])
        rows = []
        for a in found:
            why = a["reason"] if a["outcome"] in ("held", "failed", "rejected", "unmatched") else ""
            rows.append(
                [
                    a["id"],
                    a["name"] or a["fingerprint"],
                    a["status"],
                    a["outcome"],
                    a["run_id"] or "",
                    a["source"],
                    _when(a["received_at"]),
                    why or "",
                ]
            )
        header = ("ALERT", "NAME", "STATUS", "OUTCOME", "RUN", "FROM", "RECEIVED", "WHY")
        return Reply(table(header, rows), data={"alerts": found}, table_at=0)

    # --- schedules -----------------------------------------------------------------------

    async def _schedule(self, actor: Actor, command: Schedule) -> Reply:
        made = await self.schedules.add(
            command.playbook,
            command.params,
            actor.id,
            cron_expression=command.cron,
            when=command.when,
            timezone=self.timezone,
            origin=actor.via,
        )
        nxt = zoned.zoned(made.next_fire_at, made.timezone) or "never"
        return Reply(
            [
                f"scheduled {made.playbook} as {made.id}: {made.when} ({made.timezone}); "
                f"next run {nxt}"
            ],
            data={"schedule_id": made.id},
        )

    async def _schedule_op(self, actor: Actor, command: Pause | Resume | Trigger) -> Reply:
        sid = command.schedule_id
        if isinstance(command, Trigger):
            run_id = await schedule_ops.trigger(self.schedules, sid, actor.id)
            line = f"triggered schedule {sid}: run {run_id}"
            return Reply([line], run_id=run_id, follow=True, data={"started": run_id})
        if isinstance(command, Pause):
            view = await schedule_ops.pause(self.schedules, sid, actor.id)
            return Reply([f"paused schedule {sid} ({view.playbook}); `resume {sid}` to go on"])
        view = await schedule_ops.resume(self.schedules, sid, actor.id)
        nxt = zoned.zoned(view.next_fire_at, view.timezone)
        return Reply([f"resumed schedule {sid} ({view.playbook}); next run {nxt}"])

    async def _schedules(self) -> Reply:
        views = await self.schedules.list()
        if not views:
            return Reply(["no schedules"])
        rows = [
            [
                v.id,
                v.playbook,
                f"{v.when} ({v.timezone})",
                zoned.zoned(v.next_fire_at, v.timezone) or "-",
                v.created_by,
                _params(v.params),
            ]
            for v in views
        ]
        header = ("SCHEDULE", "PLAYBOOK", "WHEN", "NEXT", "BY", "PARAMS")
        return Reply(table(header, rows), data={"schedules": [v.id for v in views]}, table_at=0)


# --- formatting --------------------------------------------------------------------------


CHANGING = ("run", "schedule", "unschedule", "retry", "cancel", "pause", "resume", "trigger")
SCHEDULE_ACCESS = {"pause": "schedule", "resume": "schedule", "trigger": "run"}
"""The access rules' action a schedule command is checked as: pausing and resuming change
a schedule, triggering starts a run."""


def place_of(actor: Actor, where: dict[str, Any]) -> access.Place:
    """The place access rules see: the chat channel, or Baton's own front end."""
    if where.get("channel") or where.get("channel_name"):
        return access.Place(where.get("channel"), where.get("channel_name"))
    return access.Place(channel_name=str(where.get("front_end") or actor.via))


def _first_line(text: str | None) -> str:
    return text.strip().splitlines()[0] if text and text.strip() else ""


def _example(spec: paramlib.Param) -> str:
    return paramlib.example(spec) if spec.type is paramlib.ParamType.LIST else "..."


def _params(params: dict[str, Any] | None) -> str:
    return " ".join(f"{k}={paramlib.text(v)}" for k, v in (params or {}).items() if v is not None)


def _when(iso: str | None) -> str:
    return iso[:19].replace("T", " ") if iso else ""


def _took(started: str | None, finished: str | None) -> str:
    if not started or not finished:
        return ""
    delta = datetime.fromisoformat(finished) - datetime.fromisoformat(started)
    return format_duration(delta.total_seconds())


RUN_HEADER = ("RUN", "PLAYBOOK", "STATUS", "TOOK", "BY", "VIA", "CREATED")


def _run_rows(runs: list[dict[str, Any]]) -> list[list[str]]:
    return [
        [
            run["id"],
            run["playbook"],
            run["status"],
            _took(run["started_at"], run["finished_at"]),
            str(run["requested_by"]),
            str(run["trigger"]),
            _when(run["created_at"]),
        ]
        for run in runs
    ]
