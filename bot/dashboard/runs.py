"""``GET /``: the runs, newest first, filtered and paged on the server along the runs'
indexes (``engine.views.queries.runs_page``: keyset paging, no count of everything)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from bot.dashboard import forms
from bot.dashboard.render import baton_of, page
from engine.errors import BadCursor
from engine.runs.requests import TRIGGERS, trigger_problem
from engine.runs.state import RunStatus
from engine.views import queries

FILTERS = {"playbook": "playbook", "status": "status", "trigger": "trigger", "who": "requested_by"}
"""The query's names -> the run filters (``queries.RUN_FILTERS``)."""


async def runs(request: web.Request) -> web.Response:
    baton = baton_of(request)
    chosen = {name: request.query.get(name, "").strip() for name in (*FILTERS, "since", "until")}
    context: dict[str, Any] = {
        "chosen": chosen,
        "playbooks": baton.engine.catalog.names(),
        "statuses": [str(s) for s in RunStatus],
        "triggers": TRIGGERS,
        "runs": [],
        "next_url": None,
        "first_url": None,
        "error": None,
    }
    try:
        status = chosen["status"]
        if status and status not in set(RunStatus):
            raise forms.FormError(f"status must be one of {', '.join(RunStatus)}, not {status!r}")
        problem = trigger_problem(chosen["trigger"]) if chosen["trigger"] else None
        if problem is not None:
            raise forms.FormError(problem)
        limit = forms.limit_of(request)
        since, until = forms.time_range(request, baton.engine.clock.now())
        found = await queries.runs_page(
            baton.store,
            limit=limit,
            cursor=request.query.get("cursor") or None,
            filters={column: chosen[name] or None for name, column in FILTERS.items()},
            since=since,
            until=until,
        )
    except (forms.FormError, BadCursor) as exc:
        context["error"] = str(exc)
        return page(request, "runs.html", status=400, **context)
    context["runs"] = found.items
    context["next_url"] = forms.next_url(request, found.next)
    context["first_url"] = forms.first_url(request)
    return page(request, "runs.html", **context)
