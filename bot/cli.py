"""``baton``: the command line. Heavy imports happen inside the commands, so that
``baton --help`` answers at once."""

from __future__ import annotations

import argparse
import asyncio
import io
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.app import Baton
    from bot.commands import Command
    from bot.settings import Settings

EPILOG = """\
settings come from the environment (BATON_DATABASE_URL, BATON_PLAYBOOKS, BATON_HOST,
BATON_PORT, BATON_API_TOKEN, ...); see the README for the full list.

examples:
  baton serve
  baton console --as alice
  baton run nightly-backup source=/etc keep=3
  baton run disaster-recovery --dry-run
  baton validate playbooks/
  baton runs --status failed
  baton db upgrade
  baton worker --labels dc1
"""
SERVICES = ("serve", "worker")
"""The commands that log what they do at INFO (the others only warnings)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="baton",
        description="Baton: chat-ops in front of an orchestration engine. Playbooks of steps "
        "with dependencies, retries, timeouts, approvals; runs kept in a database.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    sub.add_parser(
        "serve",
        help="run the engine and the HTTP API until stopped (SIGINT/SIGTERM; SIGHUP reloads "
        "playbooks)",
        description="Run the engine and the HTTP API (GET /healthz, /api/runs, /metrics) on "
        "BATON_HOST:BATON_PORT. An older database schema is upgraded first (unless "
        "BATON_AUTO_UPGRADE is false). Runs left active by a previous process resume. SIGHUP "
        "reloads the playbook folder; SIGINT/SIGTERM let running steps finish "
        "(BATON_DRAIN_TIMEOUT) and stop.",
    )

    console = sub.add_parser(
        "console",
        help="chat with Baton in the terminal (the chat grammar; `help` inside lists it)",
        description="Chat with Baton in this terminal, with the grammar of Slack and DMs: "
        "help, playbooks, describe P, run P [k=v ...] [--dry-run], status [RUN], cancel RUN, "
        "retry RUN [--from-failed], approve ID [comment], reject ID [reason], "
        'schedule P "CRON" | in 30m | at 18:00 [k=v ...], schedules, unschedule ID, '
        "history [P], alerts [OUTCOME], hosts [PATTERN], stats [P]. Runs "
        "started here show "
        "their progress live, approval prompts included; runs started by alerts and schedules, "
        "and failed runs, are announced in one line each (`quiet` toggles that). The "
        "console drives only the runs "
        "it starts; cancel, retry and decisions reach runs driven elsewhere through their "
        "inbox. Commands are read from standard input, so a script can pipe them in; at the "
        "end of input (or `quit`), the console waits until its runs have finished or wait "
        "for a person, then exits 0, leaving those still in progress to `baton serve`.",
    )
    console.add_argument(
        "--as",
        dest="user",
        default=None,
        help="who is chatting (default: $USER; only where `console_as:` in BATON_CONFIG allows it)",
    )

    run = sub.add_parser(
        "run",
        help="run a playbook here, with live progress",
        description="Run a playbook in this process with live progress. The run is stored "
        "like any other (see `baton runs`). Exit status: 0 succeeded, 1 failed, cancelled or "
        "timed out, 2 bad input.",
    )
    run.add_argument("playbook", help="playbook name (see `baton playbooks`)")
    run.add_argument("params", nargs="*", metavar="KEY=VALUE", help="parameters, e.g. env=prod")
    run.add_argument(
        "--dry-run",
        action="store_true",
        help="print the plan (resolved params, step order, parallel groups); run nothing",
    )
    run.add_argument(
        "--detach",
        action="store_true",
        help="start the run and return at once, printing its id; a `baton serve` carries it "
        "out (the next one to start, if none runs now)",
    )
    run.add_argument(
        "--as",
        dest="user",
        default=None,
        help="who is asking (default: $USER; only where `console_as:` in BATON_CONFIG allows it)",
    )

    val = sub.add_parser(
        "validate",
        help="check playbook files; exit 1 on any problem",
        description="Check playbook files: YAML syntax, schema, actions and their inputs, "
        "needs (unknown, cyclic), duplicate ids, templates and the names they use; and the "
        "inventory BATON_CONFIG names. Every problem is printed with file and line.",
    )
    val.add_argument(
        "paths", nargs="*", type=Path, help="files or folders (default: BATON_PLAYBOOKS)"
    )

    sub.add_parser(
        "playbooks",
        help="list the playbooks with their descriptions",
        description="List the playbooks in BATON_PLAYBOOKS.",
    )

    runs = sub.add_parser(
        "runs", help="show recent runs", description="Show recent runs, newest first."
    )
    runs.add_argument("--limit", type=_count, default=20, help="how many (default 20)")
    runs.add_argument("--playbook", help="only runs of this playbook")
    runs.add_argument(
        "--status",
        choices=("queued", "running", "waiting", "succeeded", "failed", "cancelled", "timed_out"),
        help="only runs with this status",
    )
    runs.add_argument("--cursor", help="the page after the one whose last line names it")

    sched = sub.add_parser(
        "schedule",
        help='schedule a playbook: "CRON", in 30m, or at 18:00',
        description='Schedule a playbook: on a cron (`baton schedule backup "0 2 * * *" '
        "keep=7`; 5 fields, or 6 with seconds first), once after a delay (`in 30m`), or once "
        "at a time of day (`at 18:00`, in --timezone) or an ISO time. Params are checked "
        "now. A running `baton serve` picks the schedule up within BATON_SCHEDULE_POLL "
        "seconds.",
    )
    sched.add_argument("playbook", help="playbook name")
    sched.add_argument(
        "when",
        nargs=argparse.REMAINDER,
        metavar='"CRON" | in DURATION | at TIME',
        help="when, then KEY=VALUE params (options may come anywhere)",
    )
    sched.add_argument(
        "--timezone",
        default=None,
        help="time zone of the cron or the time of day (default BATON_TIMEZONE)",
    )
    sched.add_argument(
        "--as",
        dest="user",
        default=None,
        help="who asks (default: $USER; only where `console_as:` in BATON_CONFIG allows it)",
    )

    sub.add_parser(
        "schedules",
        help="list schedules with their next and last fire",
        description="List schedules, the next due first.",
    )

    unsched = sub.add_parser(
        "unschedule",
        help="remove a schedule made at run time",
        description="Remove a schedule by id (see `baton schedules`). "
        "Schedules declared in a playbook go away with their trigger.",
    )
    unsched.add_argument("id", help="schedule id")
    unsched.add_argument(
        "--as",
        dest="user",
        default=None,
        help="who asks (default: $USER; only where `console_as:` in BATON_CONFIG allows it)",
    )

    from bot import cli_db, cli_hosts, cli_logs, cli_worker

    add_retry_parser(sub)
    cli_db.add_parser(sub)
    cli_logs.add_parser(sub)
    cli_hosts.add_parser(sub)
    cli_worker.add_parser(sub)
    return parser


def add_retry_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    retry = sub.add_parser(
        "retry",
        help="run a failed, cancelled or timed-out run again, here, with live progress",
        description="Start a new attempt of a finished run and drive it here with live "
        "progress: succeeded steps keep their outputs, the rest run again. --from-failed: "
        "only the failed steps and what depends on them run again. Exit status: 0 "
        "succeeded, 1 failed again, 2 refused (the run is active or succeeded).",
    )
    retry.add_argument("run_id", metavar="RUN")
    retry.add_argument(
        "--from-failed",
        action="store_true",
        help="restart at the failed steps (and their dependents); other steps keep results",
    )
    retry.add_argument(
        "--as",
        dest="user",
        default=None,
        help="who asks (default: $USER; only where `console_as:` in BATON_CONFIG allows it)",
    )


def _count(text: str) -> int:
    """A whole number from 1 to 1000, or argparse's own clear error."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= value <= 1000:
        raise argparse.ArgumentTypeError("give a number from 1 to 1000")
    return value


def printable_output() -> None:
    """Text Baton prints comes from the database too (params, outputs, names), and may
    hold what the terminal's encoding cannot show (a lone surrogate, or any non-ASCII
    on an ASCII terminal): it is shown as a backslash escape, never a crash."""
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="backslashreplace")


def main(argv: Sequence[str] | None = None) -> int:
    printable_output()
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    from bot.settings import Settings
    from engine.errors import BatonError
    from storage.errors import StorageError

    try:
        settings = Settings()
    except Exception as exc:  # pydantic's ValidationError: say which setting is wrong
        from bot.settings import explain

        for line in explain(exc):
            print(f"baton: bad setting {line}", file=sys.stderr)
        return 2
    from bot import logs

    logs.setup(settings.log_level, settings.log_format, quiet=args.command not in SERVICES)
    if args.command in ("serve", "run", "console", "worker"):  # the commands that run steps
        from bot.hardening import hide_environment

        if not hide_environment():
            logging.getLogger("baton").info("cannot hide Baton's environment from its steps")
    try:
        if args.command == "serve":
            from bot.app import serve

            asyncio.run(serve(settings))
            return 0
        if args.command == "console":
            return asyncio.run(_console(settings, args.user))
        if args.command == "run":
            return asyncio.run(_run(settings, args))
        if args.command == "validate":
            return _validate(settings, args.paths)
        if args.command == "playbooks":
            return _playbooks(settings)
        if args.command == "runs":
            return asyncio.run(_runs(settings, args))
        if args.command in ("schedule", "schedules", "unschedule"):
            from bot import cli_schedules

            return asyncio.run(cli_schedules.run(settings, args))
        if args.command == "retry":
            from bot import cli_runs

            return asyncio.run(cli_runs.retry(settings, args))
        if args.command == "logs":
            from bot import cli_logs

            return asyncio.run(cli_logs.run(settings, args))
        if args.command == "hosts":
            from bot import cli_hosts

            return cli_hosts.run(settings, args)
        if args.command == "db":
            from bot import cli_db

            return cli_db.run(settings, args)
        if args.command == "worker":
            from bot import cli_worker

            return cli_worker.run(settings, args)
    except (BatonError, StorageError) as exc:
        print(f"baton: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, BatonError) else 1
    except KeyboardInterrupt:
        print("baton: interrupted", file=sys.stderr)
        return 130
    parser.error(f"unknown command {args.command}")
    return 2


async def _console(settings: Settings, user: str | None) -> int:
    from bot.app import open_baton, run_console

    async with open_baton(settings, kind="console") as baton:
        chat = asyncio.ensure_future(run_console(baton, await acting_as(baton, user)))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGHUP):  # a closed terminal: stop the steps
            loop.add_signal_handler(sig, chat.cancel)
        try:
            await asyncio.wait({chat})
        finally:
            for sig in (signal.SIGTERM, signal.SIGHUP):
                loop.remove_signal_handler(sig)
        if not chat.cancelled():
            chat.result()
        await baton.engine.stop(0 if chat.cancelled() else settings.drain_timeout)
        from bot import cli_runs

        await cli_runs.left_behind(baton)
    return 0


async def _run(settings: Settings, args: argparse.Namespace) -> int:
    import dataclasses
    import getpass

    from bot.progress import Progress
    from engine import params as paramlib
    from engine.requests import RunRequest

    raw = paramlib.parse_assignments(args.params, args.playbook)
    user = args.user or getpass.getuser()  # a dry run only reads: any name will do
    request = RunRequest(playbook=args.playbook, params=raw, requested_by=user, trigger="cli")
    progress = Progress()
    if args.dry_run:
        from engine import planning
        from engine.actions.registry import Registry
        from engine.catalog import Catalog
        from storage.db import is_postgres

        registry = Registry.from_entry_points()
        workers = is_postgres(settings.database_url)
        catalog = Catalog.load(settings.playbooks, registry, workers=workers)
        progress.plan(planning.plan(catalog, request))
        return 0
    from bot.app import open_baton

    async with open_baton(settings, kind="run") as baton:
        from bot import commands

        user = await acting_as(baton, args.user)
        request = dataclasses.replace(request, requested_by=user)
        await check(baton, user, commands.Run(args.playbook, raw))
        if args.detach:
            run_id = await baton.engine.start_run(request, detach=True)
            print(run_id)
            servers = await baton.engine.servers_alive()
            if not servers:
                print(
                    f"run {run_id} is queued; no `baton serve` is running to carry it out "
                    "yet: the next one to start will",
                    file=sys.stderr,
                )
            return 0
        from bot import cli_runs

        return await cli_runs.drive_here(baton, request, progress)


def _validate(settings: Settings, paths: list[Path]) -> int:
    from bot import cli_hosts
    from engine import validate
    from engine.access import AccessRules, ConfigError
    from engine.actions.registry import Registry
    from storage.db import is_postgres

    targets = paths or [settings.playbooks]
    try:  # with the config's groups, an approval's groups are checked and counted
        groups = AccessRules.load(settings.config).groups if settings.config else None
    except ConfigError as exc:
        print(f"{exc} (approval groups are not checked)", file=sys.stderr)
        groups = None
    playbooks, problems = validate.validate_paths(
        targets, Registry.from_entry_points(), groups, workers=is_postgres(settings.database_url)
    )
    problems += cli_hosts.inventory_problems(settings.config)
    for problem in problems:
        print(problem)
    if problems:
        files = len({p.file for p in problems})
        print(f"\n{len(problems)} problem(s) in {files} file(s)", file=sys.stderr)
        return 1
    print(f"{len(playbooks)} playbook(s) valid")
    return 0


def _playbooks(settings: Settings) -> int:
    from engine.actions.registry import Registry
    from engine.catalog import Catalog
    from storage.db import is_postgres

    registry = Registry.from_entry_points()
    workers = is_postgres(settings.database_url)
    catalog = Catalog.load(settings.playbooks, registry, workers=workers)
    if not len(catalog):
        print(f"no playbooks in {settings.playbooks}")
    width = max((len(n) for n in catalog.names()), default=0)
    for pb in catalog:
        first = pb.description.strip().splitlines()[0] if pb.description.strip() else ""
        print(f"{pb.name:<{width}}  {first}")
    for problem in catalog.problems:
        print(f"(not loaded) {problem}", file=sys.stderr)
    return 0


async def _runs(settings: Settings, args: argparse.Namespace) -> int:
    from engine import queries
    from storage.store import Store

    filters = {"playbook": args.playbook, "status": args.status}
    async with Store(settings.database_url) as store:
        page = await queries.runs_page(store, limit=args.limit, cursor=args.cursor, filters=filters)
    runs = page.items
    if not runs:
        print("no runs yet")
        return 0
    header = ("RUN", "PLAYBOOK", "STATUS", "BY", "TRIGGER", "CREATED", "DURATION")
    rows = [header]
    from datetime import datetime

    from engine.durations import format_duration

    for r in runs:
        started, finished = r["started_at"], r["finished_at"]
        duration = ""
        if started and finished:
            delta = datetime.fromisoformat(finished) - datetime.fromisoformat(started)
            duration = format_duration(delta.total_seconds())
        created = r["created_at"][:19].replace("T", " ")
        rows.append(
            (
                r["id"],
                r["playbook"],
                r["status"],
                r["requested_by"],
                r["trigger"],
                created,
                duration,
            )
        )
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(header))]
    for row in rows:
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    if page.next is not None:
        more = [f"--{k}={v}" for k, v in (("limit", args.limit), *filters.items()) if v]
        print(f"older runs: baton runs {' '.join(more)} --cursor={page.next}")
    return 0


async def acting_as(baton: Baton, asked: str | None) -> str:
    """Who the command line acts as: the login user, or ``--as USER`` where BATON_CONFIG
    allows it (``console_as``; anyone when the file has neither rules nor people). A
    refusal names the setting and is audited."""
    import getpass

    from engine import people
    from engine.errors import NotAllowed

    me = getpass.getuser()
    if asked is None:
        return me
    if not asked.strip():
        raise NotAllowed("--as needs a name: leave it out to act as yourself")
    why = people.may_act_as(baton.rules, me, asked)
    if why is not None:
        where = {"front_end": "cli", "user": me}
        await baton.engine.audit(me, "cli:as", asked, {}, "refused", where)
        raise NotAllowed(why)
    return asked


async def check(baton: Baton, user: str, command: Command) -> None:
    """The command line's identity goes through the same access rules as chat; a refusal
    is audited like one in chat."""
    from engine.access import Actor
    from engine.errors import NotAllowed

    where = {"front_end": "cli", "user": user}
    try:
        await baton.commands().authorize(Actor(id=user, via="cli"), command, where)
    except NotAllowed:
        verb = type(command).__name__.lower()
        target = getattr(command, "playbook", "") or getattr(command, "schedule_id", "")
        await baton.engine.audit(user, f"cli:{verb}", target, {}, "refused", where)
        raise


if __name__ == "__main__":
    raise SystemExit(main())
