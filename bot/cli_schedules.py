"""``baton schedule``, ``baton schedules`` and ``baton unschedule``: schedules from the
command line, through the same grammar and access rules as chat."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from bot.zoned import zoned

if TYPE_CHECKING:
    from bot.settings import Settings


async def run(settings: Settings, args: argparse.Namespace) -> int:
    import shlex

    from bot import commands
    from bot.app import open_baton
    from bot.cli_identity import acting_as, check

    async with open_baton(settings, kind="cli") as baton:
        book = baton.schedules
        if args.command == "schedules":
            _print_schedules(await book.list())
            return 0
        if args.command == "unschedule":
            user = await acting_as(baton, args.user)
            await check(baton, user, commands.Unschedule(args.id))
            gone = await book.remove(args.id, user)
            print(f"removed schedule {gone.id} ({gone.playbook}, {gone.when})")
            return 0
        extra = argparse.ArgumentParser(prog="baton schedule", add_help=False)
        extra.add_argument("--timezone", default=args.timezone)
        extra.add_argument("--as", dest="user", default=args.user)
        more, words = extra.parse_known_args(args.when)
        user = await acting_as(baton, more.user)
        zone = more.timezone or settings.timezone
        # the chat grammar reads the words: one meaning of `schedule` everywhere
        wanted = commands.parse(shlex.join(["schedule", args.playbook, *words]))
        assert isinstance(wanted, commands.Schedule)
        await check(baton, user, wanted)
        made = await book.add(
            wanted.playbook,
            wanted.params,
            user,
            cron_expression=wanted.cron,
            when=wanted.when,
            timezone=zone,
        )
        nxt = zoned(made.next_fire_at, made.timezone) or "never"
        print(
            f"scheduled {made.playbook} as {made.id}: {made.when} ({made.timezone}); next run {nxt}"
        )
        return 0


def _print_schedules(views: list[Any]) -> None:
    if not views:
        print("no schedules")
        return
    header = ("ID", "PLAYBOOK", "WHEN", "TZ", "NEXT", "LAST", "LAST RUN", "BY", "MISSED")
    rows: list[tuple[str, ...]] = [header]
    for v in views:
        rows.append(
            (
                v.id,
                v.playbook,
                v.when,
                v.timezone,
                zoned(v.next_fire_at, v.timezone),
                zoned(v.last_fire_at, v.timezone),
                v.last_run_id or "",
                v.created_by,
                str(v.missed or ""),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
