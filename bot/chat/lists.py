"""``history``, ``alerts``, ``stats`` and ``hosts``: what happened, and where."""

from __future__ import annotations

import asyncio

from bot import hosts as hostlib
from bot import stats_chat
from bot.chat.replies import RUN_HEADER, Reply, run_rows, when
from bot.grammar import Hosts, Stats
from bot.tables import table
from engine.errors import PlaybookNotFound
from engine.fleet import inventory
from engine.runs.engine import Engine
from engine.views import analytics, queries
from storage.store import Store

HISTORY_LIMIT = 10
HOSTS_LIMIT = 100


async def history(engine: Engine, playbook: str | None) -> Reply:
    runs = await queries.list_runs(engine.store, limit=HISTORY_LIMIT, playbook=playbook)
    if not runs:
        if playbook is not None and playbook not in engine.catalog:
            raise PlaybookNotFound(playbook, engine.catalog.names())
        return Reply([f"no runs of {playbook} yet" if playbook else "no runs yet"])
    return Reply(table(RUN_HEADER, run_rows(runs)), data={"runs": runs}, table_at=0)


async def stats(engine: Engine, command: Stats) -> Reply:
    days = command.days or analytics.DEFAULT_DAYS
    found = await analytics.of_engine(engine, days=days, playbook=command.playbook)
    lines, at = (stats_chat.detail if command.playbook else stats_chat.overview)(found)
    return Reply(lines, data={"stats": found.to_json()}, table_at=at)


async def alerts(store: Store, outcome: str | None) -> Reply:
    found = await queries.recent_alerts(store, limit=HISTORY_LIMIT, outcome=outcome)
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
                when(a["received_at"]),
                why or "",
            ]
        )
    header = ("ALERT", "NAME", "STATUS", "OUTCOME", "RUN", "FROM", "RECEIVED", "WHY")
    return Reply(table(header, rows), data={"alerts": found}, table_at=0)


async def hosts(command: Hosts) -> Reply:
    # a glob looks at every host: off the loop for a big inventory
    fleet, pattern = inventory.active(), command.pattern
    found = await asyncio.to_thread(hostlib.listing, fleet, pattern, HOSTS_LIMIT)
    return Reply(found.lines, ok=found.found, table_at=0 if found.found else None)
