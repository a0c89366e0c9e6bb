"""``baton``: the command line. Heavy imports happen inside the commands, so that
``baton --help`` answers at once."""

from __future__ import annotations

import argparse
import asyncio
import io
import logging
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from bot import cli_parsers
from bot.cli_identity import acting_as, check

if TYPE_CHECKING:
    from bot.settings import Settings

SERVICES = ("serve", "worker")
"""The commands that log what they do at INFO (the others only warnings)."""


def printable_output() -> None:
    """Text Baton prints comes from the database too (params, outputs, names), and may
    hold what the terminal's encoding cannot show (a lone surrogate, or any non-ASCII
    on an ASCII terminal): it is shown as a backslash escape, never a crash."""
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="backslashreplace")


def main(argv: Sequence[str] | None = None) -> int:
    printable_output()
    parser = cli_parsers.build_parser()
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
            from bot.serve import serve

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
    from engine.playbooks import params as paramlib
    from engine.runs.requests import RunRequest, Trigger

    raw = paramlib.parse_assignments(args.params, args.playbook)
    user = args.user or getpass.getuser()  # a dry run only reads: any name will do
    request = RunRequest(playbook=args.playbook, params=raw, requested_by=user, trigger=Trigger.CLI)
    progress = Progress()
    if args.dry_run:
        from engine.actions.registry import Registry
        from engine.playbooks import planning
        from engine.playbooks.catalog import Catalog
        from storage.db import is_postgres

        registry = Registry.from_entry_points()
        workers = is_postgres(settings.database_url)
        catalog = Catalog.load(
            settings.playbooks, registry, workers=workers, groups=_approval_groups(settings)
        )
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


def _approval_groups(settings: Settings) -> Mapping[str, frozenset[str]] | None:
    """The Baton groups an approval may name (BATON_CONFIG's; none without it), checked
    and counted by validation; None (not checked) when the config does not read."""
    from engine.access import config as accessconfig
    from engine.access.rules import ConfigError

    try:
        return accessconfig.load(settings.config).approver_groups()
    except ConfigError as exc:
        print(f"{exc} (approval groups are not checked)", file=sys.stderr)
        return None


def _validate(settings: Settings, paths: list[Path]) -> int:
    from bot import cli_hosts
    from engine.actions.registry import Registry
    from engine.playbooks import validate
    from engine.playbooks.model import playbook_files
    from storage.db import is_postgres

    targets = paths or [settings.playbooks]
    groups = _approval_groups(settings)
    playbooks, problems = validate.validate_paths(
        targets, Registry.from_entry_points(), groups, workers=is_postgres(settings.database_url)
    )
    sources = [f for root in targets if root.exists() for f in playbook_files(root)]
    problems += cli_hosts.inventory_problems(settings.config, sources)
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
    from engine.playbooks.catalog import Catalog
    from storage.db import is_postgres

    registry = Registry.from_entry_points()
    workers = is_postgres(settings.database_url)
    groups = _approval_groups(settings)
    catalog = Catalog.load(settings.playbooks, registry, workers=workers, groups=groups)
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
    from engine.views import queries
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

    from engine.playbooks.durations import format_duration

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


if __name__ == "__main__":
    raise SystemExit(main())
