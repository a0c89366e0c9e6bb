"""``GET /runs/{id}/live``: a run's logs and state as server-sent events, for htmx's SSE
extension on the run page.

Events: ``log`` (the logs' tail as HTML, sent whenever it changes: a log line, an attempt
that ended), ``state`` (the run's status, whenever a step or the run moves: the page then
re-reads its panel) and ``end`` once the run is over (the page closes the stream).
The stream wakes on the engine's events for the run (``engine.bus``); a run driven by
another process publishes nothing here, so the stream also looks every ``POLL`` seconds
(and writes a comment, which finds clients that went away)."""

from __future__ import annotations

import asyncio
import html

from aiohttp import web

from bot.dashboard.render import baton_of
from engine import runlogs
from engine.bus import Subscription
from engine.errors import RunNotFound
from engine.state import RunStatus

POLL = 2.0
TAIL = 400  # lines of the logs a page shows; the whole text is at /api/runs/{id}/logs


def tail(logs: runlogs.Logs, lines: int = TAIL) -> str:
    """The last ``lines`` lines of a run's logs: what ended, and the header of what runs."""
    shown = [line for s in logs.sections for line in (s.lines if s.done else s.lines[:1])]
    cut = len(shown) - lines
    if cut > 0:
        shown = [f"... {cut} earlier lines: see the full logs", *shown[cut:]]
    return "\n".join(shown)


def event(name: str, data: str) -> bytes:
    """One server-sent event; a multi-line ``data`` becomes several ``data:`` lines."""
    body = "".join(f"data: {line}\n" for line in data.split("\n"))
    return f"event: {name}\n{body}\n".encode()


async def stream(request: web.Request) -> web.StreamResponse:
    baton = baton_of(request)
    run_id = request.match_info["run_id"]
    try:
        logs = await runlogs.read(baton.store, run_id)
    except RunNotFound as exc:
        raise web.HTTPNotFound(text=str(exc)) from None
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",  # a proxy in front must not hold the events back
        }
    )
    await response.prepare(request)
    with baton.engine.bus.subscribe(lambda e: e.run_id == run_id) as moves:
        shown, status = "", ""
        while True:
            text = html.escape(tail(logs), quote=False)
            if text != shown:
                shown = text
                await response.write(event("log", text))
            if logs.status != status:
                status = logs.status
                await response.write(event("state", status))
            if RunStatus(status).terminal:
                await response.write(event("end", status))
                return response
            await _next_move(moves, response)
            logs = await runlogs.read(baton.store, run_id)


async def _next_move(moves: Subscription, response: web.StreamResponse) -> None:
    """Until the engine says the run moved, or ``POLL`` seconds (then a keep-alive
    comment); every other event already waiting is taken too (one read for a burst)."""
    try:
        await asyncio.wait_for(moves.queue.get(), POLL)
    except TimeoutError:
        await response.write(b": still here\n\n")
    moves.drain()
