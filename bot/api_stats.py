"""``GET /metrics`` (Prometheus text, open like /healthz) and ``GET /api/stats`` (the
analytics of ``engine.views.analytics`` as JSON, a read like the other ``GET /api`` routes).

Handlers are made for one Baton (``metrics(baton)``), so this module needs nothing of
``bot.api``: the routes are added there, behind its ``reader`` guard where reads are.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from aiohttp import web

from engine.errors import BatonError, PlaybookNotFound
from engine.views import analytics

if TYPE_CHECKING:
    from bot.app import Baton

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def metrics(baton: Baton) -> Handler:
    async def serve_metrics(request: web.Request) -> web.StreamResponse:
        kept = baton.metrics
        if kept is None:
            message = "metrics are kept by `baton serve` only"
            return web.json_response({"error": message}, status=503)
        body = await kept.exposition()
        return web.Response(body=body, headers={"Content-Type": kept.content_type})

    return serve_metrics


def stats(baton: Baton) -> Handler:
    """``?days=N`` (30 by default, up to 366) and ``?playbook=P`` (that playbook in
    detail: steps, flaky steps, critical path)."""

    async def serve_stats(request: web.Request) -> web.StreamResponse:
        try:
            days = analytics.parse_days(request.query.get("days"))
            found = await analytics.of_engine(
                baton.engine, days=days, playbook=request.query.get("playbook") or None
            )
        except PlaybookNotFound as exc:
            return web.json_response(
                {"error": str(exc), "suggestions": exc.suggestions}, status=404
            )
        except BatonError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(found.to_json())

    return serve_stats
