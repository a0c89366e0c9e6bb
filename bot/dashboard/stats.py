"""``GET /stats``: how playbooks did over the last ``days`` (``engine.views.analytics``, as the
chat's ``stats`` and ``GET /api/stats`` tell it): a row per playbook, and with
``?playbook=P`` that playbook's steps, flaky steps and critical path. The charts are
``bot.charts.stats_svgs`` inlined in the page: SVG drawn on the server is no script, so
the Content-Security-Policy holds, and nothing is loaded from elsewhere."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web
from markupsafe import Markup

from bot.charts import stats_svgs
from bot.dashboard.render import baton_of, page
from bot.stats_chat import percent, seconds
from engine.errors import BatonError, PlaybookNotFound
from engine.views import analytics
from engine.views.analytics import PlaybookStats, Spread, Stats

_NAMESPACE = re.compile(r"""\s+xmlns(:\w+)?=(['"])[^'"]*\2""")


def inline(svg: str) -> Markup:
    """A chart fit to sit in the page: without its namespace URL (inline SVG needs none,
    and a page names no other site). ``bot.charts`` escapes every text it draws."""
    return Markup(_NAMESPACE.sub("", svg))


def playbook_rows(stats: Stats) -> list[dict[str, Any]]:
    """One row per playbook with runs in the window, as the chat's overview has it."""
    return [
        {
            "playbook": pb.playbook,
            "runs": pb.runs,
            "finished": pb.finished,
            "success": percent(pb.success_rate),
            "p50": seconds(pb.duration.p50),
            "p95": seconds(pb.duration.p95),
            "mttr": seconds(pb.mttr.p95),
        }
        for pb in stats.playbooks
    ]


def step_rows(pb: PlaybookStats) -> list[dict[str, Any]]:
    """One row per step of one playbook: its runs, p50/p95, failures, retries, flakes."""
    return [
        {
            "step": s.step,
            "runs": s.started,
            "p50": seconds(s.duration.p50),
            "p95": seconds(s.duration.p95),
            "failed": percent(s.failure_rate),
            "retried": percent(s.retry_rate),
            "flaky": s.flaky,
        }
        for s in pb.steps
    ]


def spread(of: Spread) -> str:
    """``p50 1m12s, p95 4m05s over 14`` (empty when there is nothing to tell)."""
    if not of.count:
        return ""
    return f"p50 {seconds(of.p50)}, p95 {seconds(of.p95)} over {of.count}"


def detail_of(stats: Stats) -> dict[str, Any] | None:
    """The one playbook asked for: its steps, flaky steps and critical path."""
    if len(stats.playbooks) != 1 or not stats.playbooks[0].runs:
        return None
    pb = stats.playbooks[0]
    path = pb.critical_path
    shares = sorted(path.share.items(), key=lambda kv: (-kv[1], kv[0])) if path else []
    return {
        "playbook": pb.playbook,
        "steps": step_rows(pb),
        "flaky": pb.flaky,
        "path": path,
        "shares": [(step, percent(share)) for step, share in shares],
    }


async def stats(request: web.Request) -> web.Response:
    """``?playbook=P`` (one playbook in detail) and ``?days=N`` (30; 1 to 366)."""
    baton = baton_of(request)
    chosen = request.query.get("playbook", "").strip()
    typed_days = request.query.get("days", "").strip()
    context: dict[str, Any] = {
        "chosen": chosen,
        "days": typed_days or str(analytics.DEFAULT_DAYS),
        "playbooks": baton.engine.catalog.names(),
        "stats": None,
    }
    try:
        days = analytics.parse_days(typed_days or None)
        found = await analytics.of_engine(baton.engine, days=days, playbook=chosen or None)
    except PlaybookNotFound as exc:
        near = ", ".join(exc.suggestions)
        hint = f" Did you mean {near}?" if near else " The picker lists the playbooks."
        error = f"No playbook {chosen!r} has runs or is loaded.{hint}"
        return page(request, "stats.html", status=404, error=error, **context)
    except BatonError as exc:
        return page(request, "stats.html", status=400, error=str(exc), **context)
    return page(
        request,
        "stats.html",
        **{
            **context,
            "stats": found,
            "rows": playbook_rows(found),
            "mttr": spread(found.mttr),
            "detail": detail_of(found) if chosen else None,
            "charts": {name: inline(svg) for name, svg in stats_svgs(found).items()},
        },
    )
