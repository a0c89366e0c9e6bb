"""``GET /runs/{id}``: one run. Its step graph (Graphviz SVG, ``bot.dashboard.dag``), its
timeline (``bot.dashboard.timeline``), its approvals, params (secrets masked, as the run's
JSON has them) and outputs, the actions its state allows, and its logs, which
``bot.dashboard.live`` keeps following while the run goes on. ``GET /runs/{id}/panel``
is the part that changes with the run's state, re-read when the live stream says so."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web

from bot.dashboard import auth, dag, live, timeline
from bot.dashboard.render import baton_of, page
from engine.errors import RunNotFound
from engine.runs.state import RunStatus
from engine.views import runlogs, runview

DRAWINGS = web.AppKey("dashboard.drawings", dag.Drawings)


async def panel_context(request: web.Request, run_id: str) -> dict[str, Any]:
    """What the run's panel shows; RunNotFound for an unknown run."""
    baton = baton_of(request)
    run, nodes, bars = await runview.run_detail(baton.store, run_id)
    try:
        svg, draw_error = await request.app[DRAWINGS].svg(run, nodes), None
    except dag.DrawError as exc:
        svg, draw_error = "", str(exc)
    status = RunStatus(run["status"])
    me = auth.who(request).name
    for gate in run.get("approvals") or []:  # why this person may not decide (the requester)
        pending = gate.get("status") == "pending"
        gate["why_not"] = await baton.engine.may_decide(gate["id"], me) if pending else None
    order = [n.id for n in nodes] or [s["id"] for s in run["steps"]]
    return {
        "run": run,
        "svg": svg,
        "draw_error": draw_error,
        "timeline": timeline.layout(bars, order, baton.engine.clock.now()),
        "active": not status.terminal,
        "may_cancel": not status.terminal,
        "may_retry": status.terminal and status is not RunStatus.SUCCEEDED,
        "may_retry_failed": status is RunStatus.FAILED and bool(run["failed_step"]),
        "colours": dag.COLOURS,
    }


def _missing(request: web.Request, run_id: str) -> web.Response:
    return page(
        request,
        "missing.html",
        status=404,
        error=f"No run {run_id!r}: it may have been pruned, or the id is mistyped. "
        "The runs page lists them.",
    )


async def run_page(
    request: web.Request, *, notice: str = "", error: str = "", status: int = 200
) -> web.Response:
    """The run page; the action handlers render it too, with what their action said
    (``notice``) or why it was refused (``error``, with its HTTP ``status``)."""
    run_id = request.match_info["run_id"]
    try:  # the logs are read while dot draws the graph
        context, logs = await asyncio.gather(
            panel_context(request, run_id), runlogs.read(baton_of(request).store, run_id)
        )
    except RunNotFound:
        return _missing(request, run_id)
    return page(
        request,
        "run.html",
        status=status,
        logs=live.page(logs),
        notice=notice,
        error=error or None,
        **context,
    )


async def show(request: web.Request) -> web.Response:
    return await run_page(request)


async def panel(request: web.Request) -> web.Response:
    run_id = request.match_info["run_id"]
    try:
        context = await panel_context(request, run_id)
    except RunNotFound:
        return _missing(request, run_id)
    return page(request, "_panel.html", **context)
