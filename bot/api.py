"""The HTTP API (aiohttp): health, metrics and the run API (README, "HTTP API").

Writes need ``Authorization: Bearer $BATON_API_TOKEN`` (the service token) or a person's
own token (``bot.api_auth``: the request then acts as that person); reads (``GET /api/*``
and the dashboard's pages, ``bot.dashboard``) need one of them too when
``BATON_API_READ_TOKEN=required``.
``/healthz`` and ``/metrics`` are always open: they give status and counts, no names,
params or outputs.

Adapters convert, the engine decides: handlers parse JSON into a ``RunRequest`` and map
Baton's errors to status codes with the same message the CLI prints.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from aiohttp import web

from bot import api_auth, api_catalog, api_stats, dashboard, grammar
from bot.alerts import http as alert_http
from bot.api_kit import (
    BATON,
    MAX_BODY,
    Handler,
    baton_of,
    caller,
    denied,
    error,
    json_body,
    maperror,
    reader,
    typed,
)
from bot.dashboard import auth
from engine import storable
from engine.alerts.model import OUTCOMES
from engine.errors import (
    ApprovalNotFound,
    BadCursor,
    BatonError,
    NotAllowed,
    RunNotFound,
)
from engine.runs.requests import RunRequest, Trigger, trigger_problem
from engine.runs.state import RunStatus
from engine.views import paging, queries, runlogs

if TYPE_CHECKING:
    from bot.app import Baton
    from bot.settings import Settings
    from bot.slack.front import SlackFront


async def healthz(request: web.Request) -> web.Response:
    baton = baton_of(request)
    try:
        await queries.ping(baton.store)
    except Exception as exc:
        return error(503, f"database unavailable: {exc}")
    if baton.store.failing is not None:  # reads answer, writes do not (a full disk, say)
        return error(503, f"database writes fail: {baton.store.failing}")
    return web.json_response(
        {
            "status": "ok",
            "active_runs": len(baton.engine.active_runs),
            "playbooks": len(baton.engine.catalog),
        }
    )


async def create_run(request: web.Request) -> web.Response:
    baton = baton_of(request)
    who = caller(request)
    if isinstance(who, web.Response):
        return who
    body = await json_body(request)
    if isinstance(body, web.Response):
        return body
    playbook = body.get("playbook")
    params = body.get("params", {})
    if not isinstance(playbook, str) or not playbook:
        return error(400, 'missing "playbook": the name of the playbook to run')
    if not isinstance(params, dict):
        return error(400, '"params" must be a JSON object of name: value')
    wrong = typed(body, requested_by=str, dry_run=bool)
    if wrong is not None:
        return wrong
    by = api_auth.on_behalf(who, body.get("requested_by"), "requested_by", "api")
    if isinstance(by, api_auth.Denied):
        return denied(by)
    if who.person is not None:  # the service token is trusted; a person is checked
        command = grammar.Run(playbook, params, dry_run=bool(body.get("dry_run")))
        refused = await api_auth.permitted(baton, request.remote or "", by, command)
        if refused is not None:
            return denied(refused)
    run_request = RunRequest(
        playbook=playbook,
        params=params,
        requested_by=by,
        trigger=Trigger.API,
        source={"remote": request.remote or ""},
    )
    try:
        if body.get("dry_run"):
            plan = baton.engine.plan(run_request)
            return web.json_response({"dry_run": True, **_plan_json(plan)})
        run_id = await baton.engine.start_run(run_request)
    except BatonError as exc:
        return maperror(exc)
    run = await queries.get_run(baton.store, run_id)
    return web.json_response(
        {"id": run_id, "status": run["status"], "url": f"/api/runs/{run_id}"}, status=201
    )


def _plan_json(plan: Any) -> dict[str, Any]:
    return {
        "playbook": plan.playbook,
        "params": plan.params,
        "waves": plan.waves,
        "on_failure": plan.on_failure,
        "finally": plan.finally_,
        "concurrency_key": plan.concurrency_key,
    }


def _limit(request: web.Request) -> int | web.Response:
    try:
        limit = int(request.query.get("limit", "50"))
    except ValueError:
        return error(400, "limit must be a whole number from 1 to 500")
    if not 1 <= limit <= 500:
        return error(400, "limit must be a whole number from 1 to 500")
    return limit


def _paged(request: web.Request, page: paging.Page[dict[str, Any]]) -> web.Response:
    """A page as a JSON list; when more follow, ``Link: <URL>; rel="next"`` names the
    next page (the same query with ``cursor``), as GitHub's API does."""
    headers = {}
    if page.next is not None:
        url = request.rel_url.update_query(cursor=page.next)
        headers["Link"] = f'<{url}>; rel="next"'
    return web.json_response(page.items, headers=headers)


async def list_alerts(request: web.Request) -> web.Response:
    """Alerts as received, newest first, with their outcome (``?outcome=held``), a page
    at a time."""
    limit = _limit(request)
    if isinstance(limit, web.Response):
        return limit
    store = baton_of(request).store
    outcome = request.query.get("outcome")
    if outcome is not None and outcome not in OUTCOMES:
        return error(400, f"outcome must be one of {', '.join(OUTCOMES)}")
    try:
        page = await queries.alerts_page(
            store, limit=limit, outcome=outcome, cursor=request.query.get("cursor")
        )
    except BadCursor as exc:
        return error(400, str(exc))
    return _paged(request, page)


async def list_runs(request: web.Request) -> web.Response:
    """Runs newest first, narrowed by ``playbook``, ``status``, ``trigger`` and
    ``requested_by``, a page at a time."""
    baton = baton_of(request)
    limit = _limit(request)
    if isinstance(limit, web.Response):
        return limit
    status = request.query.get("status")
    if status is not None and status not in set(RunStatus):
        return error(400, f"status must be one of {', '.join(RunStatus)}")
    trigger = request.query.get("trigger")
    problem = trigger_problem(trigger) if trigger else None
    if problem is not None:
        return error(400, problem)
    filters = {name: request.query.get(name) for name in queries.RUN_FILTERS}
    try:
        page = await queries.runs_page(
            baton.store, limit=limit, cursor=request.query.get("cursor"), filters=filters
        )
    except BadCursor as exc:
        return error(400, str(exc))
    return _paged(request, page)


async def get_run(request: web.Request) -> web.Response:
    try:
        run = await queries.get_run(baton_of(request).store, request.match_info["run_id"])
    except RunNotFound as exc:
        return error(404, str(exc))
    return web.json_response(run)


async def get_logs(request: web.Request) -> web.Response:
    """Every attempt's full output and the run's log lines, as text (``?step=ID``: one
    step's)."""
    run_id = request.match_info["run_id"]
    try:
        text = await runlogs.text(baton_of(request).store, run_id, request.query.get("step"))
    except (RunNotFound, runlogs.StepNotFound) as exc:
        return error(404, str(exc))
    return web.Response(text=text, content_type="text/plain", charset="utf-8")


async def run_action(request: web.Request) -> web.Response:
    """Cancel or retry a run, ``?by=NAME`` (the service token's word; a person's token
    is that person, checked against the access rules)."""
    baton = baton_of(request)
    who = caller(request)
    if isinstance(who, web.Response):
        return who
    run_id = request.match_info["run_id"]
    action = request.match_info["action"]
    by = api_auth.on_behalf(who, request.query.get("by"), "by", "api")
    if isinstance(by, api_auth.Denied):
        return denied(by)
    from_failed = await _from_failed(request) if action == "retry" else False
    if isinstance(from_failed, web.Response):
        return from_failed
    message = f"retrying run {run_id}" + (" from its failed steps" if from_failed else "")
    try:
        if who.person is not None:
            retry = grammar.Retry(run_id, from_failed=from_failed)
            command = grammar.Cancel(run_id) if action == "cancel" else retry
            refused = await api_auth.permitted(baton, request.remote or "", by, command)
            if refused is not None:
                return denied(refused)
        if action == "cancel":
            answer = await baton.engine.cancel(run_id, by)
            if answer.state == "refused":
                return error(409, answer.message)
            message = answer.message
        else:
            await baton.engine.retry(run_id, by, from_failed=from_failed)
    except BatonError as exc:
        return maperror(exc)
    run = await queries.get_run(baton.store, run_id)
    return web.json_response({**run, "message": message}, status=202)


async def _from_failed(request: web.Request) -> bool | web.Response:
    """A retry's ``{"from_failed": true}`` (no body: a plain retry)."""
    if not request.body_exists:
        return False
    body = await json_body(request)
    if isinstance(body, web.Response):
        return body
    return typed(body, from_failed=bool) or bool(body.get("from_failed", False))


async def decide(request: web.Request) -> web.Response:
    """``POST /api/approvals/{id}`` ``{"user": ..., "decision": "approve"|"reject",
    "comment": ...}``: a decision made elsewhere (a web form, a script) by ``user``, whom
    the service token vouches for; with a person's token ``user`` is that person (it may
    be left out). The same checks as in chat apply."""
    baton = baton_of(request)
    who = caller(request)
    if isinstance(who, web.Response):
        return who
    body = await json_body(request)
    if isinstance(body, web.Response):
        return body
    given, decision = body.get("user"), body.get("decision")
    if given is not None and not isinstance(given, str):
        return error(400, f'"user" must be a string, not {json.dumps(given)[:80]}')
    if who.person is None and not given:
        return error(400, 'missing "user": who decides')
    if decision not in ("approve", "reject"):
        return error(400, '"decision" must be "approve" or "reject"')
    wrong = typed(body, comment=str)
    if wrong is not None:
        return wrong
    user = api_auth.on_behalf(who, given, "user", "")
    if isinstance(user, api_auth.Denied):
        return denied(user)
    if who.person is not None:
        command = grammar.Decide(request.match_info["approval_id"], decision, "")
        refused = await api_auth.permitted(baton, request.remote or "", user, command)
        if refused is not None:
            return denied(refused)
    try:
        result = await baton.engine.decide(
            request.match_info["approval_id"], user, decision, str(body.get("comment") or "")
        )
    except NotAllowed as exc:
        return error(403, str(exc))
    except ApprovalNotFound as exc:
        return error(404, str(exc))
    except BatonError as exc:
        return maperror(exc)
    return web.json_response(
        {
            "approval_id": result.approval_id,
            "recorded": result.recorded,
            "status": result.status,
            "message": result.message,
        }
    )


@web.middleware
async def storable_words(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A path or query value no database stores (a NUL, a lone surrogate) is a 400 with
    the reason, before any handler puts it in a query (PostgreSQL would refuse it); so is
    a query field given more than once (``?status=a&status=b``), on pages and the API."""
    for name, value in (*request.match_info.items(), *request.query.items()):
        bad = storable.problem(value)
        if bad is None and len(given := request.query.getall(name, ())) > 1:
            # every query field takes one value: a repeat was kept silently, as its first
            bad = f"given {len(given)} times; give it once (each field takes one value)"
        if bad is not None:
            if auth.is_dashboard(request.path):  # a page, under the dashboard's headers
                return auth.page("Bad request", f"{name}: {bad}", 400)
            return error(400, f"{name}: {bad}")
    return await handler(request)


def create_app(
    settings: Settings, baton: Baton, slack: SlackFront | None = None
) -> web.Application:
    # bodies are inflated by bot.edge, bounded, on the routes that take compression;
    # aiohttp's own inflating would run on any body, even one refused or left unread
    app = web.Application(
        client_max_size=MAX_BODY,
        middlewares=[*auth.middlewares(settings, baton), storable_words],
        handler_args={"auto_decompress": False},
    )
    app[BATON] = baton
    if slack is not None and slack.http_enabled:
        app.router.add_post("/slack/events", slack.handle_http)
    # /healthz and /metrics stay open (status and counts: no names, params or outputs)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", api_stats.metrics(baton))
    app.router.add_get("/api/stats", reader(api_stats.stats(baton), settings))
    app.router.add_post("/api/runs", create_run)
    app.router.add_get("/api/runs", reader(list_runs, settings))
    app.router.add_get("/api/runs/{run_id}", reader(get_run, settings))
    app.router.add_get("/api/runs/{run_id}/logs", reader(get_logs, settings))
    app.router.add_post("/api/runs/{run_id}/{action:cancel|retry}", run_action)
    app.router.add_post("/api/approvals/{approval_id}", decide)
    app.router.add_get("/api/alerts", reader(list_alerts, settings))
    api_catalog.add_routes(app, settings)
    dashboard.add_routes(app, settings, baton)  # "/" and the other pages (README, "Dashboard")
    if baton.alerts is not None:
        app.router.add_post("/alerts/{source}", alert_http.make_handler(baton))
    return app
