"""The Store: how the engine persists. One writer thread commits groups of transitions.

Every write is a *unit*: a list of Core statements (or callables taking a connection)
that must commit together. Units queue up for a single writer thread, which takes all
the units waiting, runs them in one transaction and commits once (group commit), then
resolves each unit's future on the event loop. A unit that fails is retried alone, so
one bad unit never takes the others down. Reads run in worker threads on their own
connections (SQLite's WAL lets them proceed while the writer writes).

``guard(run_id, epoch)`` makes a unit conditional on the run's claim: if another owner
moved the epoch on, the unit rolls back with ``ClaimLost``.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import sqlalchemy as sa

from storage import db, schema
from storage.errors import DatabaseUnavailable, StorageError
from storage.rows import Guard, Rows, RowWriter, coalesce

log = logging.getLogger(__name__)

T = TypeVar("T")
Op = sa.Executable | Rows | Guard | Callable[[sa.Connection], Any]

_MAX_BATCH = 256


@dataclass
class _Unit:
    ops: Sequence[Op]
    future: asyncio.Future[list[Any]]
    results: list[Any] = field(default_factory=list)
    error: BaseException | None = None


def transient(exc: BaseException) -> bool:
    """True when a failed write may succeed if tried again later: the database is
    unreachable, restarting, locked, or out of space (not a value it refuses)."""
    if isinstance(exc, DatabaseUnavailable | sa.exc.OperationalError | sa.exc.InterfaceError):
        return True
    return isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated


def guard(run_id: str, epoch: int) -> Guard:
    """An op that fails the unit with ClaimLost unless the run still has ``epoch``."""
    return Guard(run_id, epoch)


class Store:
    def __init__(self, url: str, *, upgrade: bool = False, idle_limit: float | None = None) -> None:
        """``upgrade``: bring an older schema to head at ``open`` (``baton serve``);
        without it an older schema is refused with what to run. A database with no
        tables is created either way. ``idle_limit``: seconds a PostgreSQL session may
        idle inside a transaction (a frozen node's locks go with it)."""
        self.url = url
        self.upgrade = upgrade
        self.engine = db.create_engine(url, idle_limit=idle_limit)
        self._rows = RowWriter(self.engine.dialect.name)
        self._queue: queue.SimpleQueue[_Unit | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.commits = 0
        self._reading = 0  # reads running in worker threads
        self._reads_done = threading.Condition()
        self.failing: str | None = None
        """Why writes fail right now (the database unreachable, a full disk), or None."""

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    async def open(self) -> None:
        await asyncio.to_thread(schema.prepare, self.engine, upgrade=self.upgrade)
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._writer, name="baton-writer", daemon=True)
        self._thread.start()

    async def close(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            await asyncio.to_thread(self._thread.join)
            self._thread = None
        await asyncio.to_thread(self._quiet_then_dispose)

    def _quiet_then_dispose(self) -> None:
        """Dispose of the pool once no read holds a connection: a read whose awaiting
        task was cancelled (a keeper stopping) still runs in its thread."""
        with self._reads_done:
            self._reads_done.wait_for(lambda: self._reading == 0, timeout=30)
        self.engine.dispose()

    async def __aenter__(self) -> Store:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- writes --------------------------------------------------------------------

    async def write(self, *ops: Op) -> list[Any]:
        """Commit ``ops`` as one unit; returns each op's result (CursorResult or value)."""
        if self._thread is None or self._loop is None:
            raise StorageError("the store is not open")
        fut: asyncio.Future[list[Any]] = self._loop.create_future()
        self._queue.put(_Unit(ops, fut))
        return await fut

    def _writer(self) -> None:
        # One connection for the writer's whole life: a pool check-out and reset per
        # commit would cost more than the commit itself. After a lost connection
        # SQLAlchemy reconnects on the next use.
        conn = self.engine.connect()
        try:
            while True:
                first = self._queue.get()
                if first is None:
                    return
                batch = [first]
                stop = False
                while len(batch) < _MAX_BATCH:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is None:
                        stop = True
                        break
                    batch.append(item)
                try:
                    self._commit(conn, batch)
                except Exception as exc:  # never let the writer die with futures waiting
                    log.exception("the store's writer failed a batch")
                    for unit in batch:
                        unit.error = exc
                assert self._loop is not None
                try:
                    self._loop.call_soon_threadsafe(_resolve, batch)
                except RuntimeError:  # loop closed: nobody waits any more
                    return
                if stop:
                    return
        finally:
            conn.close()

    def _commit(self, conn: sa.Connection, batch: list[_Unit]) -> None:
        """Commit a batch of units at once. Their row writes are merged into one
        ``executemany`` per kind and their claims checked in one query, after the
        batch's other statements and before its row writes: every call here
        releases and retakes the GIL, which the event loop's thread may hold. If the
        batch fails, each unit is tried alone so that one bad unit fails by itself.

        Units guarded on the same run are never checked together: each may be the one
        that moves the run's epoch on (two starts of one queued run, a retry's and an
        admission round's), and one check before both row writes would let both land."""
        if _guards_overlap(batch):
            self._each_alone(conn, batch)
            return
        try:
            with conn.begin():
                rows: list[Rows] = []
                guards: list[Guard] = []
                for unit in batch:
                    unit.results = []
                    for op in unit.ops:
                        if isinstance(op, Rows):
                            rows.append(op)
                            unit.results.append(None)
                        elif isinstance(op, Guard):
                            guards.append(op)
                            unit.results.append(None)
                        else:
                            unit.results.append(self._run(conn, op))
                # after every other op of the batch: a unit that moved a run's epoch on
                # (a claim, a cancel of a queued run) fences the guarded units beside it
                self._rows.check(conn, guards)
                for op in coalesce(rows):
                    self._rows.execute(conn, op)
            self.commits += 1
            self.failing = None
            return
        except Exception as exc:
            self._note(exc)
            if len(batch) == 1:
                batch[0].error = exc
                return
        self._each_alone(conn, batch)

    def _each_alone(self, conn: sa.Connection, batch: list[_Unit]) -> None:
        """Commit each unit of ``batch`` in a transaction of its own, in order."""
        for unit in batch:
            unit.error = None
            try:
                with conn.begin():
                    unit.results = [self._run(conn, op) for op in unit.ops]
                self.commits += 1
                self.failing = None
            except Exception as exc:
                self._note(exc)
                unit.error = exc

    def _note(self, exc: BaseException) -> None:
        if transient(exc):
            text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
            self.failing = text[0] if text else type(exc).__name__

    def _run(self, conn: sa.Connection, op: Op) -> Any:
        if isinstance(op, Rows):
            return self._rows.execute(conn, op)
        if isinstance(op, Guard):
            return self._rows.check(conn, [op])
        if isinstance(op, sa.Executable):
            return conn.execute(op)
        return op(conn)

    # --- reads ---------------------------------------------------------------------

    async def read(self, fn: Callable[[sa.Connection], T]) -> T:
        return await asyncio.to_thread(self._read, fn)

    def _read(self, fn: Callable[[sa.Connection], T]) -> T:
        with self._reads_done:
            self._reading += 1
        try:
            with self.engine.connect().execution_options(baton_read=True) as conn:
                return fn(conn)
        finally:
            with self._reads_done:
                self._reading -= 1
                self._reads_done.notify_all()

    async def all(self, stmt: sa.Select[Any]) -> list[sa.Row[Any]]:
        return await self.read(lambda conn: list(conn.execute(stmt)))

    async def one(self, stmt: sa.Select[Any]) -> sa.Row[Any] | None:
        return await self.read(lambda conn: conn.execute(stmt).first())

    async def scalar(self, stmt: sa.Select[Any]) -> Any:
        return await self.read(lambda conn: conn.execute(stmt).scalar())


def _guards_overlap(batch: list[_Unit]) -> bool:
    """True when two units of ``batch`` are guarded on the same run."""
    seen: set[str] = set()
    for unit in batch:
        runs = {op.run_id for op in unit.ops if isinstance(op, Guard)}
        if seen & runs:
            return True
        seen |= runs
    return False


def _resolve(batch: list[_Unit]) -> None:
    for unit in batch:
        if unit.future.done():
            continue
        if unit.error is not None:
            unit.future.set_exception(unit.error)
        else:
            unit.future.set_result(unit.results)
