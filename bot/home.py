"""The ``/`` page: recent runs, who is looking, and, for whoever may act, a button that
retries a finished run from its failed steps (``POST /runs/{id}/retry``).

A stand-in until the dashboard's own pages (``bot.dashboard``) take ``/`` over; it is a
dashboard page, so ``bot.dashboard.auth`` decides who sees it (login, CSRF, headers).
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

from aiohttp import web

from bot import api_auth, grammar
from bot.dashboard import auth
from engine import queries
from engine.errors import BatonError

if TYPE_CHECKING:
    from bot.app import Baton

RETRYABLE = ("failed", "cancelled", "timed_out")


def _retry_form(run_id: str, csrf: str) -> str:
    e = html.escape
    return (
        f"<form method='post' action='/runs/{e(run_id)}/retry' class='action'>"
        f"<input type='hidden' name='csrf' value='{e(csrf)}'>"
        "<button type='submit'>Retry from the failed step</button></form>"
    )


def _who_bar(request: web.Request) -> str:
    e, me = html.escape, auth.who(request)
    return (
        f"<div class='who'>{e(me.name)} ({e(me.role)}) "
        "<form method='post' action='/logout' class='logout'>"
        f"<input type='hidden' name='csrf' value='{e(auth.csrf_token(request))}'>"
        "<button type='submit'>Log out</button></form></div>"
    )


def add_routes(app: web.Application, baton: Baton) -> None:
    """``GET /`` and ``POST /runs/{id}/retry`` on ``baton``."""

    async def index(request: web.Request) -> web.Response:
        runs = await queries.list_runs(baton.store, limit=50)
        e, me, csrf = html.escape, auth.who(request), auth.csrf_token(request)
        rows = "".join(
            f"<tr><td><a href='/api/runs/{e(r['id'])}'>{e(r['id'])}</a></td>"
            f"<td>{e(r['playbook'])}</td><td class='{e(r['status'])}'>{e(r['status'])}</td>"
            f"<td>{e(r['requested_by'])}</td><td>{e(str(r['created_at']))}</td><td>"
            f"{_retry_form(r['id'], csrf) if me.can_act and r['status'] in RETRYABLE else ''}"
            "</td></tr>"
            for r in runs
        )
        page = (
            "<!doctype html><html><head><meta charset='utf-8'><title>Baton</title></head>"
            f"<body><h1>Baton</h1>{_who_bar(request)}"
            "<p>Recent runs (JSON at <a href='/api/runs'>/api/runs</a>)</p><table><tr>"
            "<th>run</th><th>playbook</th><th>status</th><th>by</th><th>created</th><th></th>"
            f"</tr>{rows}</table></body></html>"
        )
        return web.Response(text=page, content_type="text/html")

    async def retry(request: web.Request) -> web.Response:
        """A new attempt from the failed steps, as the person logged in, under their
        role and the access rules (a refusal is audited, as in chat)."""
        me, run_id = auth.who(request), request.match_info["run_id"]
        command = grammar.Retry(run_id, from_failed=True)
        refused = await api_auth.permitted(baton, request.remote or "", me.name, command)
        if refused is not None:
            return auth.page("Refused", refused.message, refused.status)
        try:
            await baton.engine.retry(run_id, me.name, from_failed=True)
        except BatonError as exc:
            return auth.page("Not retried", str(exc), 409)
        raise web.HTTPSeeOther("/")

    app.router.add_get("/", index)
    app.router.add_post("/runs/{run_id}/retry", retry)
