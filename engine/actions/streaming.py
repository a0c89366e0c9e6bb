"""A command's output lines in the run's log while it runs (the ``shell`` and ``ssh``
actions), so the run page's live log, ``logs`` and the console show a long step as it
goes instead of all at once at its end.

The first ``STREAM_LINES`` lines of an attempt's output (stdout and stderr together, in
the order they came) go to ``ctx.log``, each masked with the run's secrets (``ctx.mask``)
before it is cut to ``STREAM_WIDTH`` characters, so a cut never leaves the start of a
secret in clear; then one note says the rest is in the step's output, which keeps
everything as before (this copy takes nothing from it). A line longer than ``LINE_CAP``
bytes keeps its head (what is shown of it anyway).

A stream may keep ``quiet`` for its first seconds (the shell action: ``QUIET``): a command
that ends by then sends nothing, its output holds every line already (a quick ``echo``
puts no copy of its output in the run's log, the chat thread, ``logs``); one that runs on
sends what it printed so far, then as it comes. Lines are sent in batches: the first as
soon as it may go, then what came meanwhile every ``FLUSH`` seconds, all of a batch in one
go. On a server, the lines of one batch reach the
run's driver together and commit as one write; on a worker, ``engine.runs.livelog``
gathers them the same way. A command printing a line a millisecond costs two writes a
second, not a thousand.
"""

from __future__ import annotations

import asyncio
import contextlib

from engine.actions import ActionContext

STREAM_LINES = 100
"""Lines of one attempt's output copied to the run's log."""
STREAM_WIDTH = 300
"""Characters of one streamed line (masked first, then cut, marked ``[...]``)."""
LINE_CAP = 4096
"""Bytes of one line kept until its end comes (the rest is dropped from the copy)."""
FLUSH = 0.5
"""Seconds between two batches of lines (the worker's live log writes at the same pace)."""
QUIET = 2.0
"""Seconds a shell command runs before its lines go (one that ended by then sends none)."""
MORE = "[more output is not streamed; the step's output has it]"


class LineStream:
    """Copies a command's output lines to ``ctx.log``: ``feed`` takes raw bytes as they
    come (the shell action), ``emit`` whole lines (the ssh session splits them itself);
    ``close`` sends what is left (a last line without its newline too) and stops.

    ``label`` names where the command ran (``web1``): lines read ``web1: ...`` and
    ``web1 (stderr): ...``; without one, ``...`` and ``(stderr) ...``. ``quiet``: seconds
    before the first line may go; closed by then, the stream sends nothing."""

    def __init__(self, ctx: ActionContext, label: str = "", quiet: float = 0.0) -> None:
        self.ctx = ctx
        self.label = label
        self.quiet = quiet
        self.count = 0
        self._pending: dict[str, bytearray] = {}
        self._queue: list[str] = []
        self._more = asyncio.Event()
        self._closing = asyncio.Event()
        self._task = asyncio.create_task(self._forward(), name=f"lines-{ctx.run_id}-{ctx.step_id}")

    @property
    def full(self) -> bool:
        """True once no more lines are copied (the note said so)."""
        return self.count > STREAM_LINES

    def feed(self, stream: str, data: bytes) -> None:
        """Raw output of ``stream`` (``stdout``, ``stderr``): its complete lines go."""
        if self.full or not data:
            return
        pending = self._pending.setdefault(stream, bytearray())
        start = 0
        while (end := data.find(b"\n", start)) >= 0:
            pending += data[start : start + max(0, min(end - start, LINE_CAP - len(pending)))]
            self.emit(stream, pending.decode("utf-8", errors="replace"))
            pending.clear()
            start = end + 1
            if self.full:
                return
        room = LINE_CAP - len(pending)
        if room > 0:
            pending += data[start : start + room]

    def emit(self, stream: str, line: str) -> None:
        """One whole line of ``stream``, without its newline."""
        self.count += 1
        if self.count > STREAM_LINES:
            if self.count == STREAM_LINES + 1:
                self._send(f"{self.label}: {MORE}" if self.label else MORE)
            return
        text = self.ctx.mask(line.removesuffix("\r"))
        if len(text) > STREAM_WIDTH:
            text = text[:STREAM_WIDTH] + " [...]"
        if self.label:
            where = f"{self.label}: " if stream == "stdout" else f"{self.label} ({stream}): "
        else:
            where = "" if stream == "stdout" else f"({stream}) "
        self._send(where + text)

    def _send(self, line: str) -> None:
        self._queue.append(line)
        self._more.set()

    async def close(self) -> None:
        """Send the lines not sent yet, a last one without its newline among them, then
        stop (also while the step is being cancelled: what it printed still goes)."""
        for stream, rest in self._pending.items():
            if rest and not self.full:
                self.emit(stream, rest.decode("utf-8", errors="replace"))
            rest.clear()
        self._closing.set()
        self._more.set()
        await asyncio.shield(self._task)

    async def _forward(self) -> None:
        if self.quiet > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), self.quiet)
            if self._closing.is_set():  # a quick command: its output has every line
                return
        while True:
            await self._more.wait()
            self._more.clear()
            while self._queue:  # a batch: no await in between on a server's ctx.log
                batch, self._queue = self._queue, []
                for line in batch:
                    await self.ctx.log(line)
            if self._closing.is_set():
                return
            with contextlib.suppress(TimeoutError):  # gather the lines of FLUSH seconds
                await asyncio.wait_for(self._closing.wait(), FLUSH)
