"""The dashboard ``baton serve`` shows: server-rendered pages (aiohttp + Jinja2,
autoescaped), live updates over server-sent events (htmx and its SSE extension, vendored
in ``static/``: every asset is served by Baton, nothing from a CDN).

Pages: ``/`` runs, ``/runs/{id}`` one run, ``/playbooks``, ``/approvals``, ``/schedules``,
``/alerts``, ``/audit``. Buttons post chat commands through ``bot.commands.Commands`` as
the person ``bot.dashboard.auth`` says is logged in (``bot.dashboard.actions``). Pages are
reads: with ``BATON_API_READ_TOKEN=required`` they need a bearer token too, as the API's
reads do (the login of ``auth`` takes over there)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from bot import api_auth
from bot.dashboard import actions, auth, dag, lists, live, playbooks, render, run, runs

if TYPE_CHECKING:
    from bot.app import Baton
    from bot.settings import Settings

STATIC = Path(__file__).parent / "static"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def reading(settings: Settings, baton: Baton) -> Callable[[Handler], Handler]:
    """Pages behind a bearer token when ``BATON_API_READ_TOKEN=required`` (the same
    answer as the API's reads); open otherwise."""

    def wrap(handler: Handler) -> Handler:
        if settings.api_read_token != "required":
            return handler

        async def guarded(request: web.Request) -> web.StreamResponse:
            scheme, _, token = request.headers.get("Authorization", "").partition(" ")
            sent = token if scheme.lower() == "bearer" and token else None
            found = api_auth.identify(sent, settings.api_token, baton.rules.people)
            if isinstance(found, api_auth.Denied):
                return web.json_response({"error": found.message}, status=found.status)
            return await handler(request)

        return guarded

    return wrap


def add_routes(app: web.Application, settings: Settings, baton: Baton) -> None:
    """The dashboard's pages, actions, live streams and static files on ``app``."""
    app[render.BATON] = baton
    app[render.TEMPLATES] = render.environment()
    app[run.DRAWINGS] = dag.Drawings()
    read = reading(settings, baton)
    get, post = app.router.add_get, app.router.add_post
    get("/", read(runs.runs))
    get("/runs/{run_id}", read(run.show))
    get("/runs/{run_id}/panel", read(run.panel))
    get("/runs/{run_id}/live", read(live.stream))
    post("/runs/{run_id}/{action:cancel|retry|retry-failed}", actions.run_action)
    get("/playbooks", read(playbooks.playbooks))
    post("/playbooks/{name}/run", playbooks.start)
    get("/approvals", read(lists.approvals))
    post("/approvals/{approval_id}/{decision:approve|reject}", actions.decide)
    get("/schedules", read(lists.schedules))
    post("/schedules/{schedule_id}/{action:pause|resume|trigger}", actions.schedule_action)
    get("/alerts", read(lists.alerts))
    get("/audit", read(lists.audit))
    app.router.add_static("/static/", STATIC, name="static")
    auth.add_routes(app, settings, baton)
