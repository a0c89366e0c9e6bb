"""``baton logs RUN [STEP] [--follow]``: a run's full output and log lines, from any
process (they are read from the database). ``--follow`` prints each attempt as it ends
and each log line as it comes, until the run ends; Ctrl-C stops following (the run goes
on)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bot.settings import Settings

POLL = 0.5
"""Seconds between two reads while following."""


def add_parser(sub: Any) -> None:
    logs = sub.add_parser(
        "logs",
        help="a run's full output and log lines",
        description="Print every attempt's full output (stdout, stderr, error) and the run's"
        " log lines, of every step or of one; cancelled and timed-out attempts keep what"
        " they printed.",
    )
    logs.add_argument("run_id", metavar="RUN")
    logs.add_argument("step_id", metavar="STEP", nargs="?", help="only this step")
    logs.add_argument(
        "-f", "--follow", action="store_true", help="go on printing until the run ends"
    )


async def run(settings: Settings, args: argparse.Namespace) -> int:
    from engine.views import runlogs
    from storage.store import Store

    async with Store(settings.database_url) as store:
        printed: set[str] = set()
        while True:
            logs = await runlogs.read(store, args.run_id, args.step_id)
            for section in logs.sections:
                if section.key in printed or (args.follow and not section.done):
                    continue
                printed.add(section.key)
                sys.stdout.write("\n".join(section.lines) + "\n")
            sys.stdout.flush()
            if not args.follow or "end" in printed:
                return 0
            await asyncio.sleep(POLL)
