"""The dashboard ``baton serve`` shows: server-rendered pages (aiohttp + Jinja2,
autoescaped), live updates over server-sent events (htmx and its SSE extension, vendored
in ``static/``: every asset is served by Baton, nothing from a CDN).

Pages: ``/`` runs, ``/runs/{id}`` one run, ``/playbooks``, ``/approvals``, ``/schedules``,
``/alerts``, ``/audit``, ``/stats``. ``bot.dashboard.auth`` decides who is looking (a login, an SSO
proxy's header, or the local person); buttons post chat commands through
``bot.commands.Commands`` as that person (``bot.dashboard.actions``), so chat's checks
apply."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from bot.dashboard import actions, auth, dag, lists, live, playbooks, render, run, runs, stats

if TYPE_CHECKING:
    from bot.app import Baton
    from bot.settings import Settings

STATIC = Path(__file__).parent / "static"


def add_routes(app: web.Application, settings: Settings, baton: Baton) -> None:
    """The dashboard's pages, actions, live streams and static files on ``app``."""
    app[render.BATON] = baton
    app[render.TEMPLATES] = render.environment()
    app[run.DRAWINGS] = dag.Drawings()
    app[live.FEEDS] = {}
    get, post = app.router.add_get, app.router.add_post
    get("/", runs.runs)
    get("/runs/{run_id}", run.show)
    get("/runs/{run_id}/panel", run.panel)
    get("/runs/{run_id}/live", live.stream)
    post("/runs/{run_id}/{action:cancel|retry|retry-failed}", actions.run_action)
    get("/playbooks", playbooks.playbooks)
    post("/playbooks/{name}/run", playbooks.start)
    get("/approvals", lists.approvals)
    post("/approvals/{approval_id}/{decision:approve|reject}", actions.decide)
    get("/schedules", lists.schedules)
    post("/schedules/{schedule_id}/{action:pause|resume|trigger}", actions.schedule_action)
    get("/alerts", lists.alerts)
    get("/audit", lists.audit)
    get("/stats", stats.stats)
    app.router.add_static("/static/", STATIC, name="static")
    auth.add_routes(app, settings, baton)
