"""The chat command language: one line of chat in, a typed command out.

Words are split by ``shlex`` (so ``run deploy msg="hello world"`` works, and ``#ops`` is a
channel, not a comment); ``approve ID [comment]`` / ``reject ID [reason]`` keep their free
text as typed. ``parse`` raises ``CommandError`` (or the engine's ParamError for a
``key=value`` that is not one) with the expected form. ``bot.commands`` carries commands
out.
"""

from __future__ import annotations

import io
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from engine.alerts import model as alerts
from engine.errors import BatonError, closest
from engine.playbooks import params as paramlib
from engine.views.analytics import MAX_DAYS

SMART_QUOTES = str.maketrans({"\u201c": '"', "\u201d": '"', "\u2018": "'", "\u2019": "'"})


# --- commands ---------------------------------------------------------------------------


class CommandError(BatonError):
    """A line that is not a valid command; the message says what was expected."""


@dataclass(frozen=True)
class Help:
    topic: str | None = None


@dataclass(frozen=True)
class ListPlaybooks:
    pass


@dataclass(frozen=True)
class Describe:
    playbook: str


@dataclass(frozen=True)
class Run:
    playbook: str
    params: dict[str, str] = field(default_factory=dict)
    dry_run: bool = False


@dataclass(frozen=True)
class Status:
    run_id: str | None = None


@dataclass(frozen=True)
class Cancel:
    run_id: str


@dataclass(frozen=True)
class Retry:
    run_id: str
    from_failed: bool = False


@dataclass(frozen=True)
class Decide:
    approval_id: str
    decision: Literal["approve", "reject"]
    comment: str = ""


@dataclass(frozen=True)
class Schedule:
    """``cron`` for ``schedule P "CRON"``, ``when`` for ``in 30m`` / ``at 18:00``."""

    playbook: str
    cron: str | None = None
    when: str | None = None
    params: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ListSchedules:
    pass


@dataclass(frozen=True)
class Unschedule:
    schedule_id: str


@dataclass(frozen=True)
class Pause:
    """``pause ID``: a cron schedule stops firing until ``resume ID``."""

    schedule_id: str


@dataclass(frozen=True)
class Resume:
    schedule_id: str


@dataclass(frozen=True)
class Trigger:
    """``trigger ID``: run a schedule's playbook with its params now."""

    schedule_id: str


@dataclass(frozen=True)
class History:
    playbook: str | None = None


@dataclass(frozen=True)
class Stats:
    """``stats [PLAYBOOK] [days=N]``: how playbooks did (``engine.views.analytics``)."""

    playbook: str | None = None
    days: int | None = None


@dataclass(frozen=True)
class Logs:
    """``logs RUN [STEP]``: every attempt's full output and the run's log lines."""

    run_id: str
    step_id: str | None = None


@dataclass(frozen=True)
class ListAlerts:
    """``alerts`` (the latest) or ``alerts OUTCOME`` (``held``, ``started``, ...)."""

    outcome: str | None = None


@dataclass(frozen=True)
class Hosts:
    """``hosts [PATTERN]``: the inventory's hosts an Ansible pattern names (default all)."""

    pattern: str | None = None


Command = (
    Help
    | ListPlaybooks
    | Describe
    | Run
    | Status
    | Cancel
    | Retry
    | Decide
    | Schedule
    | ListSchedules
    | Unschedule
    | Pause
    | Resume
    | Trigger
    | History
    | ListAlerts
    | Logs
    | Stats
    | Hosts
)

USAGE: dict[str, tuple[str, str]] = {
    "help": ("help [COMMAND]", "list commands and playbooks, or explain one command"),
    "playbooks": ("playbooks", "list the playbooks"),
    "describe": ("describe PLAYBOOK", "a playbook's steps and params (types, defaults)"),
    "run": (
        "run PLAYBOOK [key=value ...] [--dry-run]",
        'start a run (quote values with spaces: msg="hello world"); --dry-run shows the plan',
    ),
    "status": ("status [RUN]", "a run's steps, errors and approvals; no RUN: your runs"),
    "cancel": ("cancel RUN", "cancel an active or queued run"),
    "retry": (
        "retry RUN [--from-failed]",
        "run a failed, cancelled or timed-out run again; --from-failed: only its failed "
        "steps and what depends on them",
    ),
    "approve": ("approve ID [comment]", "approve a waiting approval"),
    "reject": ("reject ID [reason]", "reject a waiting approval"),
    "schedule": (
        'schedule PLAYBOOK "CRON" | in 30m | at 18:00 [key=value ...]',
        "run a playbook on a cron, after a delay, or at a time of day",
    ),
    "schedules": ("schedules", "list schedules with their next fire"),
    "unschedule": ("unschedule ID", "remove a schedule"),
    "pause": ("pause ID", "stop a cron schedule firing until `resume ID`"),
    "resume": ("resume ID", "let a paused schedule fire again, from its next time"),
    "trigger": ("trigger ID", "run a schedule's playbook with its params now"),
    "history": ("history [PLAYBOOK]", "recent runs, of one playbook or of all"),
    "alerts": (
        "alerts [OUTCOME]",
        "recent alerts and what became of each (held, started, attached, ...)",
    ),
    "logs": ("logs RUN [STEP]", "a run's full output and log lines, of every step or one"),
    "stats": (
        "stats [PLAYBOOK] [days=N]",
        "runs, success rate and durations over 30 days; one playbook: its steps too",
    ),
    "hosts": ("hosts [PATTERN]", "the inventory's hosts a pattern names (web, web:&prod, db*)"),
}
VERBS = tuple(USAGE)
SCHEDULE_VERBS: dict[str, type[Pause | Resume | Trigger]] = {
    "pause": Pause,
    "resume": Resume,
    "trigger": Trigger,
}


def _usage(verb: str) -> str:
    return f"usage: {USAGE[verb][0]}"


def _split(text: str) -> list[str]:
    try:
        return shlex.split(text)
    except ValueError as exc:  # "No closing quotation", "No escaped character"
        raise CommandError(f"cannot read that line ({exc}): close the quote") from None


def _arity(verb: str, args: Sequence[str], low: int, high: int) -> None:
    if not low <= len(args) <= high:
        raise CommandError(_usage(verb))


def parse(text: str) -> Command:
    """One line of chat -> a command; CommandError (or the engine's ParamError for a
    ``key=value`` that is not one) with the expected form otherwise."""
    line = text.translate(SMART_QUOTES).strip()
    if not line:
        raise CommandError("say something: `help` lists the commands")
    stream = io.StringIO(line)  # kept: the free text after an approval id is read raw
    lexer = shlex.shlex(stream, posix=True)
    lexer.whitespace_split = True
    lexer.commenters = ""  # `#ops` is a channel, not a comment
    try:
        verb = (lexer.get_token() or "").lower()
    except ValueError as exc:
        raise CommandError(f"cannot read that line ({exc}): close the quote") from None
    if verb in ("approve", "reject"):
        return _parse_decision(verb, lexer, stream)
    args = _split(line)[1:]
    match verb:
        case "help":
            _arity(verb, args, 0, 1)
            return Help(args[0].lower() if args else None)
        case "playbooks":
            _arity(verb, args, 0, 0)
            return ListPlaybooks()
        case "describe":
            _arity(verb, args, 1, 1)
            return Describe(args[0])
        case "run":
            return _parse_run(args)
        case "status":
            _arity(verb, args, 0, 1)
            return Status(args[0] if args else None)
        case "cancel":
            _arity(verb, args, 1, 1)
            return Cancel(args[0])
        case "retry":
            flag = "--from-failed"
            rest = [a for a in args if a != flag]
            if any(a.startswith("-") for a in rest):
                raise CommandError(f"retry knows one option, {flag}: {_usage(verb)}")
            _arity(verb, rest, 1, 1)
            return Retry(rest[0], from_failed=flag in args)
        case "schedule":
            return _parse_schedule(args)
        case "schedules":
            _arity(verb, args, 0, 0)
            return ListSchedules()
        case "unschedule":
            _arity(verb, args, 1, 1)
            return Unschedule(args[0])
        case "pause" | "resume" | "trigger":
            _arity(verb, args, 1, 1)
            return SCHEDULE_VERBS[verb](args[0])
        case "history":
            _arity(verb, args, 0, 1)
            return History(args[0] if args else None)
        case "alerts":
            _arity(verb, args, 0, 1)
            return _parse_alerts(args)
        case "logs":
            _arity(verb, args, 1, 2)
            return Logs(args[0], args[1] if len(args) > 1 else None)
        case "stats":
            return _parse_stats(args)
        case "hosts":
            _arity(verb, args, 0, 1)
            return Hosts(args[0] if args else None)
    hint = closest(verb, VERBS, n=1)
    extra = f" Did you mean `{hint[0]}`?" if hint else ""
    raise CommandError(f"Unknown command {verb!r}.{extra} `help` lists the commands.")


def _parse_decision(verb: str, lexer: shlex.shlex, stream: io.StringIO) -> Decide:
    try:
        approval_id = lexer.get_token()
    except ValueError:
        approval_id = None
    if not approval_id:
        raise CommandError(_usage(verb))
    rest = stream.read().strip()
    comment = rest  # free text, kept as typed (apostrophes included) ...
    if rest[:1] in ("'", '"'):  # ... unless it is one quoted string
        try:
            words = shlex.split(rest)
        except ValueError:
            words = []
        if len(words) == 1:
            comment = words[0]
    return Decide(approval_id, "approve" if verb == "approve" else "reject", comment)


def _parse_run(args: list[str]) -> Run:
    dry_run = False
    words: list[str] = []
    for arg in args:
        if arg == "--dry-run":
            dry_run = True
        elif arg.startswith("--") and "=" not in arg:
            raise CommandError(f"unknown option {arg!r}; {_usage('run')}")
        else:
            words.append(arg)
    if not words:
        raise CommandError(_usage("run"))
    playbook, rest = words[0], words[1:]
    return Run(playbook, paramlib.parse_assignments(rest, playbook), dry_run)


def _parse_schedule(args: list[str]) -> Schedule:
    if len(args) < 2:
        raise CommandError(f"say which playbook and when: {_usage('schedule')}")
    playbook, first = args[0], args[1]
    if first.lower() in ("in", "at"):
        # the time is every word up to the first k=v: `in 1h 30m`, `in 10 minutes`
        end = next((i for i, arg in enumerate(args[2:], 2) if "=" in arg), len(args))
        if end == 2:
            raise CommandError(f"say when after {first!r}: e.g. `in 30m` or `at 18:00`")
        when = " ".join([first.lower(), *args[2:end]])
        return Schedule(
            playbook, when=when, params=paramlib.parse_assignments(args[end:], playbook)
        )
    if "=" in first:
        raise CommandError(f"say when before the params: {_usage('schedule')}")
    return Schedule(playbook, cron=first, params=paramlib.parse_assignments(args[2:], playbook))


def _parse_stats(args: Sequence[str]) -> Stats:
    _arity("stats", args, 0, 2)
    days = [a for a in args if a.lower().startswith("days=")]
    names = [a for a in args if a not in days]
    if len(days) > 1 or len(names) > 1:
        raise CommandError(_usage("stats"))
    number = days[0].split("=", 1)[1] if days else None
    whole = number is not None and number.isascii() and number.isdigit()
    if number is not None and not (whole and 1 <= int(number) <= MAX_DAYS):
        raise CommandError(f"days must be a whole number from 1 to {MAX_DAYS}: `stats days=7`")
    return Stats(names[0] if names else None, int(number) if number else None)


OUTCOMES = alerts.OUTCOMES


def _parse_alerts(args: Sequence[str]) -> ListAlerts:
    if not args:
        return ListAlerts()
    outcome = args[0].lower()
    if outcome not in OUTCOMES:
        hint = closest(outcome, OUTCOMES, n=1)
        extra = f" Did you mean `{hint[0]}`?" if hint else ""
        raise CommandError(f"No alert outcome {outcome!r}.{extra} One of: {', '.join(OUTCOMES)}.")
    return ListAlerts(outcome)


def target_of(command: Command) -> str:
    match command:
        case Describe() | Run() | Schedule():
            return command.playbook
        case Status() | Cancel() | Retry() | Logs():
            return command.run_id or ""
        case Decide():
            return command.approval_id
        case Unschedule() | Pause() | Resume() | Trigger():
            return command.schedule_id
        case History() | Stats():
            return command.playbook or ""
        case ListAlerts():
            return command.outcome or ""
        case Hosts():
            return command.pattern or ""
        case Help():
            return command.topic or ""
    return ""


def verb_of(command: Command) -> str:
    if isinstance(command, Decide):
        return command.decision
    names: dict[type, str] = {
        Help: "help",
        ListPlaybooks: "playbooks",
        Describe: "describe",
        Run: "run",
        Status: "status",
        Cancel: "cancel",
        Retry: "retry",
        Schedule: "schedule",
        ListSchedules: "schedules",
        Unschedule: "unschedule",
        Pause: "pause",
        Resume: "resume",
        Trigger: "trigger",
        History: "history",
        ListAlerts: "alerts",
        Logs: "logs",
        Stats: "stats",
        Hosts: "hosts",
    }
    return names[type(command)]


def shown_as_text(command: Command) -> str:
    verb = verb_of(command)
    match command:
        case Decide():
            words = [verb, command.approval_id] + ([command.comment] if command.comment else [])
            return shlex.join(words)
        case Logs():
            return shlex.join(
                [verb, command.run_id, *([command.step_id] if command.step_id else [])]
            )
        case Retry(from_failed=True):  # the audit trail tells the two retries apart
            return shlex.join([verb, command.run_id, "--from-failed"])
        case _:
            target = target_of(command)
            return f"{verb} {shlex.quote(target)}" if target else verb
