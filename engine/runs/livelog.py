"""A worker's step logs, written to the run's log while the step runs.

A step on a worker logs through ``ctx.log`` as it would on a server; the worker writes its
lines into ``run_logs`` every ``FLUSH`` seconds (one transaction for the lines of that
time), so the run page, ``baton logs`` and the console show a long remote step as it goes
rather than all at once at its end. Each write is fenced like the worker's report: it
lands only while the run is at the job's epoch and the step at the job's attempt and
running, so a worker whose step was taken back or re-delivered writes nothing more. The
lines not yet written when the step ends go with its report (``remainder``), which the
driver writes with the step's end.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from engine import storable
from engine.secrets import Masker
from storage import tables as t
from storage.store import Store, transient

log = logging.getLogger(__name__)

FLUSH = 0.5
"""Seconds between two writes of a running step's new lines (they are gathered meanwhile)."""


class LiveLog:
    def __init__(self, store: Store, spec: Mapping[str, Any], mask: Masker) -> None:
        self.store = store
        self.run_id = str(spec["run_id"])
        self.step_id = str(spec["step_id"])
        self.attempt = int(spec["attempt"])
        self.epoch = spec.get("epoch")
        self.mask = mask
        self.lines: list[list[str]] = []
        self.written = 0
        self._live = True  # until the fence or the database refuses a write
        self._more = asyncio.Event()
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(self._follow(), name=f"live-log-{self.run_id}")

    async def add(self, message: str, level: str = "info") -> None:
        """``ctx.log`` of the step."""
        self.lines.append([message, level])
        self._more.set()

    async def remainder(self) -> list[list[str]]:
        """Stop writing (a write under way ends first) and give the lines not written."""
        self._stop.set()
        self._more.set()
        await self._task
        return self.lines[self.written :]

    async def _follow(self) -> None:
        while True:
            await self._more.wait()
            self._more.clear()
            if self._stop.is_set():
                return
            if self._live and self.written < len(self.lines):
                await self._write()
            with contextlib.suppress(TimeoutError):  # gather the lines of FLUSH seconds
                await asyncio.wait_for(self._stop.wait(), FLUSH)

    async def _write(self) -> None:
        batch = self.lines[self.written :]
        at = datetime.now(UTC)
        rows = [
            {
                "run_id": self.run_id,
                "step_id": self.step_id,
                "at": at,
                "level": level,
                "message": storable.clean_text(self.mask.mask_text(message)),
            }
            for message, level in batch
        ]
        try:
            landed = await self.store.write(self._fenced(rows))
        except Exception as exc:
            if transient(exc):  # the database away: the next round tries again
                self._more.set()
                return
            log.warning(
                "run %s step %s: live log lines not written: %s", self.run_id, self.step_id, exc
            )
            self._live = False
            return
        if landed[0]:
            self.written += len(batch)
        else:  # taken back or re-delivered: nothing more from here
            self._live = False

    def _fenced(self, rows: list[dict[str, Any]]) -> Any:
        steps, runs = t.steps.c, t.runs.c
        current = (
            sa.select(sa.literal(1))
            .select_from(t.runs.join(t.steps, t.steps.c.run_id == t.runs.c.id))
            .where(
                runs.id == self.run_id,
                runs.epoch == self.epoch,
                steps.step_id == self.step_id,
                steps.attempts == self.attempt,
                steps.status == "running",
            )
        )

        def op(conn: sa.Connection) -> bool:
            if conn.execute(current).first() is None:
                return False
            conn.execute(t.run_logs.insert(), rows)
            return True

        return op
