"""The rows of ``for_each`` items (``storage.tables.step_items``): the news of items a
fan-out sends its run's driver, what the driver commits and publishes for it, and the
reads of items for resuming, ``status`` and the API."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

import sqlalchemy as sa

from engine import events as ev
from engine import storable
from engine.playbooks.foreach import Item, Tally
from engine.runs.state import RunState
from engine.secrets import SecretBox
from storage import tables as t
from storage.rows import Rows
from storage.store import Op, Store


@dataclass(frozen=True)
class ItemNews:
    """Items of a fan-out moved (``kind`` ``item_new``: they were planned; ``item``:
    one changed). ``committed`` is resolved once the driver committed the news."""

    step_id: str
    kind: str
    items: tuple[Item, ...]
    tally: Tally
    committed: asyncio.Future[None] | None = None


def settle(committed: asyncio.Future[None]) -> None:
    """The news a fan-out waits on is committed: it may go on."""
    if not committed.done():
        committed.set_result(None)


def record(run: RunState, news: ItemNews, now: datetime) -> tuple[list[Op], ev.ItemsProgressed]:
    """What the driver commits for ``news`` and the progress event it publishes."""
    rows = [_row(run, news.step_id, item, news.kind) for item in news.items]
    tally = news.tally
    event = ev.ItemsProgressed(
        run_id=run.id,
        playbook=run.playbook.name,
        at=now,
        step_id=news.step_id,
        total=tally.total,
        done=tally.done,
        failed=tally.failed,
        running=tally.running,
        failed_names=tuple(run.masker.mask_text(n) for n in tally.failed_names),
        text=run.masker.mask_text(tally.text()),
        failures=run.masker.mask_text(tally.failures()),
    )
    return [Rows(news.kind, rows)], event


def _row(run: RunState, step_id: str, item: Item, kind: str) -> dict[str, Any]:
    key = {"run_id": run.id, "step_id": step_id, "run_attempt": run.attempt, "idx": item.index}
    if kind == "item_new":
        return {**key, "item": _kept(run, item.value), "status": item.status, "attempts": 0}
    out = storable.clean(run.masker.mask(item.output)) if item.output else item.output
    error = storable.clean_text(run.masker.mask_text(item.error)) if item.error else None
    return {
        **key,
        "status": item.status,
        "attempts": item.attempts,
        "output": out,
        "error": error,
        "started_at": item.started_at,
        "finished_at": item.finished_at,
    }


SEALED = "$sealed"
"""The key of an item value stored sealed (it holds a secret), beside ``shown``."""


def _kept(run: RunState, value: Any) -> Any:
    """An item's value as stored: as it is, or, when it holds a secret, sealed with the
    run's key beside its masked form (what ``status`` and the API show); a resumed
    fan-out unseals it to run the item with its real value."""
    value = storable.clean(value)
    shown = storable.clean(run.masker.mask(value))
    if shown == value:
        return value
    if run.box is None:  # nothing to seal with: never the secret in clear
        return shown
    return {SEALED: run.box.seal(value), "shown": shown}


def _shown(value: Any) -> Any:
    return value["shown"] if isinstance(value, dict) and SEALED in value else value


def _opened(value: Any, box: SecretBox | None) -> Any:
    if not (isinstance(value, dict) and SEALED in value):
        return value
    return box.unseal(str(value[SEALED])) if box is not None else value["shown"]


async def stored(
    store: Store, run_id: str, step_id: str, run_attempt: int, box: SecretBox | None = None
) -> list[Item]:
    """The items of a fan-out as committed, in order (none before it planned them);
    sealed values opened with ``box``."""
    rows = await store.all(
        sa.select(t.step_items)
        .where(
            t.step_items.c.run_id == run_id,
            t.step_items.c.step_id == step_id,
            t.step_items.c.run_attempt == run_attempt,
        )
        .order_by(t.step_items.c.idx)
    )
    return [
        Item(
            index=r.idx,
            value=_opened(r.item, box),
            status=r.status,
            attempts=r.attempts,
            output=r.output,
            error=r.error,
            started_at=r.started_at,
            finished_at=r.finished_at,
        )
        for r in rows
    ]


async def tallies(store: Store, run_id: str, run_attempt: int) -> dict[str, Tally]:
    """How each fan-out of a run stands, by step id (for ``status`` and the API)."""
    return await store.read(partial(tallies_in, run_id=run_id, run_attempt=run_attempt))


def tallies_in(conn: sa.Connection, run_id: str, run_attempt: int) -> dict[str, Tally]:
    """``tallies``, read on a connection already open."""
    rows = conn.execute(
        sa.select(t.step_items.c.step_id, t.step_items.c.status, t.step_items.c.item)
        .where(t.step_items.c.run_id == run_id, t.step_items.c.run_attempt == run_attempt)
        .order_by(t.step_items.c.step_id, t.step_items.c.idx)
    )
    by_step: dict[str, list[Item]] = {}
    for r in rows:
        items = by_step.setdefault(r.step_id, [])
        items.append(Item(index=len(items), value=_shown(r.item), status=r.status))
    return {step_id: Tally.of(items) for step_id, items in by_step.items()}
