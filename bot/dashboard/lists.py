"""The dashboard's other lists: ``/approvals`` (the gates waiting on the person logged
in, then the others), ``/schedules``, ``/alerts`` (what became of each, with its run) and
``/audit`` (filtered by who, action, target and time). Lists that grow are paged by
keyset, as the runs are."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from aiohttp import web

from bot.dashboard import auth, forms
from bot.dashboard.render import baton_of, page
from engine.alerts.model import OUTCOMES
from engine.errors import BadCursor
from engine.views import queries, runview

RUN_VERBS = frozenset({"cancel", "retry", "status", "logs"})
"""Audit actions (``cancel``, ``command:cancel``, ``api:cancel``...) whose target is a run."""


async def approvals(request: web.Request) -> web.Response:
    """Gates the person logged in may decide on first (``Engine.may_decide``: approvers,
    self-approval), then those waiting on others."""
    baton = baton_of(request)
    me = auth.who(request).name
    mine: list[dict[str, Any]] = []
    others: list[dict[str, Any]] = []
    for gate in await runview.pending_gates(baton.store):
        why_not = await baton.engine.may_decide(gate["id"], me)
        (mine if why_not is None else others).append({**gate, "why_not": why_not})
    return page(request, "approvals.html", mine=mine, others=others)


async def schedules(request: web.Request) -> web.Response:
    views = await baton_of(request).schedules.list(request.query.get("playbook") or None)
    return page(request, "schedules.html", schedules=views)


async def alerts(request: web.Request) -> web.Response:
    outcome = request.query.get("outcome") or None
    context: dict[str, Any] = {
        "outcomes": OUTCOMES,
        "outcome": outcome or "",
        "alerts": [],
        "next_url": None,
        "first_url": forms.first_url(request),
        "error": None,
    }
    try:
        if outcome is not None and outcome not in OUTCOMES:
            raise forms.FormError(f"outcome must be one of {', '.join(OUTCOMES)}, not {outcome!r}")
        found = await queries.alerts_page(
            baton_of(request).store,
            limit=forms.limit_of(request),
            outcome=outcome,
            cursor=request.query.get("cursor") or None,
        )
    except (forms.FormError, BadCursor) as exc:
        context["error"] = str(exc)
        return page(request, "alerts.html", status=400, **context)
    context.update(alerts=found.items, next_url=forms.next_url(request, found.next))
    return page(request, "alerts.html", **context)


async def audit(request: web.Request) -> web.Response:
    baton = baton_of(request)
    chosen = {name: request.query.get(name, "").strip() for name in ("who", "action", "target")}
    chosen.update(since=request.query.get("since", ""), until=request.query.get("until", ""))
    context: dict[str, Any] = {
        "chosen": chosen,
        "rows": [],
        "next_url": None,
        "first_url": forms.first_url(request),
        "error": None,
    }
    try:
        since, until = forms.time_range(request, baton.engine.clock.now())
        found = await runview.audit_page(
            baton.store,
            limit=forms.limit_of(request),
            cursor=request.query.get("cursor") or None,
            filters={
                "actor": chosen["who"],
                "action": chosen["action"],
                "target": chosen["target"],
            },
            since=since,
            until=until,
        )
    except (forms.FormError, BadCursor) as exc:
        context["error"] = str(exc)
        return page(request, "audit.html", status=400, **context)
    rows = [{**row, "link": target_link(row)} for row in found.items]
    context.update(rows=rows, next_url=forms.next_url(request, found.next))
    return page(request, "audit.html", **context)


def target_link(row: dict[str, Any]) -> str | None:
    """Where an audit row's target leads: the run's page for what was done to a run (and
    for a ``run`` row, the run it started); for anything else named (an approval, a
    schedule, a playbook), its own trail. Approval and run ids look alike, so the action
    decides, not the id's shape."""
    verb = row["action"].rsplit(":", 1)[-1]
    target = row["target"]
    if verb in RUN_VERBS and target:
        return f"/runs/{target}"
    started = row["detail"].get("run_id")
    if verb == "run" and isinstance(started, str) and started:
        return f"/runs/{started}"
    if target and not target.startswith("/"):  # a path: a refused POST's, no page
        return f"/audit?target={quote(target, safe='')}"
    return None
