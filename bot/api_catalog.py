"""The API's view of what the console knows besides runs: playbooks (with their params),
the approval gates waiting for decisions, and schedules (list, add, remove).

Reads follow ``BATON_API_READ_TOKEN`` like every ``GET /api/*``; writes need a token.
A schedule made or removed here goes through the same access rules as chat, on behalf of
the ``user`` the body names (the service token vouches for it, as for decisions) or of
the person whose token it is (``bot.api_auth``)."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from aiohttp import web

from bot import api_auth, api_kit, grammar
from engine.errors import BatonError, PlaybookNotFound
from engine.playbooks import params as paramlib
from engine.playbooks import paramsecrets
from engine.playbooks.model import Playbook
from engine.views import queries
from storage import tables as t

if TYPE_CHECKING:
    from bot.settings import Settings


def _param_json(pb: Playbook, name: str) -> dict[str, Any]:
    spec = pb.params[name]
    secret = name in paramsecrets.secret_names(pb)
    return {
        "name": name,
        "type": spec.type.value,
        "required": spec.required,
        "default": paramlib.MASK if secret and spec.default is not None else spec.default,
        "choices": spec.choices,
        "pattern": spec.pattern,
        "min": spec.min,
        "max": spec.max,
        "help": spec.help,
    }


def playbook_json(pb: Playbook, *, full: bool) -> dict[str, Any]:
    """A playbook as the API shows it: its params always; with ``full`` its steps and
    triggers too."""
    out: dict[str, Any] = {
        "name": pb.name,
        "description": pb.description,
        "params": [_param_json(pb, name) for name in pb.params],
    }
    if full:
        out["steps"] = [
            {"id": s.id, "action": s.action, "needs": list(s.needs), "phase": phase.value}
            for phase, s in pb.all_steps()
        ]
        out["triggers"] = [  # the params they give are left out: one may be a secret
            {kind: spec.model_dump(mode="json", exclude={"params"})}
            for trig in pb.triggers
            for kind, spec in (("schedule", trig.schedule), ("alert", trig.alert))
            if spec is not None
        ]
    return out


async def list_playbooks(request: web.Request) -> web.Response:
    catalog = api_kit.baton_of(request).engine.catalog
    return web.json_response([playbook_json(pb, full=False) for pb in catalog])


async def get_playbook(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    try:
        pb = api_kit.baton_of(request).engine.catalog.get(name)
    except PlaybookNotFound as exc:
        return api_kit.error(404, str(exc), suggestions=exc.suggestions)
    return web.json_response(playbook_json(pb, full=True))


async def list_approvals(request: web.Request) -> web.Response:
    """The gates waiting for decisions, oldest first: id, run, playbook, step, message,
    who may decide, how many approvals it needs and has, and its deadline."""
    store = api_kit.baton_of(request).store

    def read(conn: sa.Connection) -> list[dict[str, Any]]:
        a = t.approvals.c
        rows = conn.execute(
            sa.select(t.approvals, t.runs.c.playbook)
            .join(t.runs, t.runs.c.id == a.run_id)
            .where(a.status == "pending")
            .order_by(a.created_at, a.id)
        ).all()
        approvals = {r.id: 0 for r in rows}
        approvals.update(queries.approvals_counted(conn, list(approvals)))
        return [
            {
                "id": r.id,
                "run_id": r.run_id,
                "playbook": r.playbook,
                "step": r.step_id,
                "message": (r.spec or {}).get("message") or "approval needed",
                "approvers": queries.approver_names(r.spec or {}, r.requested_by),
                "allow_self_approval": bool((r.spec or {}).get("allow_self_approval", False)),
                "min_approvals": (r.spec or {}).get("min_approvals", 1),
                "approvals": approvals[r.id],
                "requested_by": r.requested_by,
                "created_at": _iso(r.created_at),
                "deadline_at": _iso(r.deadline_at),
            }
            for r in rows
        ]

    return web.json_response(await store.read(read))


def _iso(at: datetime | None) -> str | None:
    return at.isoformat() if at is not None else None


def _schedule_json(view: Any) -> dict[str, Any]:
    out = dataclasses.asdict(view)
    for key, value in out.items():
        if isinstance(value, datetime):
            out[key] = value.isoformat()
    return out


async def list_schedules(request: web.Request) -> web.Response:
    book = api_kit.baton_of(request).schedules
    views = await book.list(request.query.get("playbook"))
    return web.json_response([_schedule_json(v) for v in views])


async def add_schedule(request: web.Request) -> web.Response:
    """``{"user", "playbook", "cron": "0 9 * * 1-5"` or `"when": "in 30m" | "at 18:00",
    "params": {...}, "timezone": "Europe/Paris"}`` -> 201 with the schedule."""
    baton = api_kit.baton_of(request)
    who = api_kit.caller(request)
    if isinstance(who, web.Response):
        return who
    body = await api_kit.json_body(request)
    if isinstance(body, web.Response):
        return body
    wrong = api_kit.typed(body, user=str, playbook=str, cron=str, when=str, timezone=str)
    if wrong is not None:
        return wrong
    user, playbook = api_auth.on_behalf(who, body.get("user"), "user", ""), body.get("playbook")
    if isinstance(user, api_auth.Denied):
        return api_kit.denied(user)
    if not user:
        return api_kit.error(400, 'missing "user": on whose behalf the schedule is made')
    if not playbook:
        return api_kit.error(400, 'missing "playbook": the playbook to run')
    params = body.get("params") or {}
    if not isinstance(params, dict):
        return api_kit.error(400, '"params" must be a JSON object of name: value')
    cron, when = body.get("cron"), body.get("when")
    if bool(cron) == bool(when):
        return api_kit.error(
            400, 'give exactly one of "cron" ("0 9 * * 1-5") and "when" ("in 30m")'
        )
    command = grammar.Schedule(playbook, cron=cron, when=when, params=params)
    refused = await api_auth.permitted(baton, request.remote or "", user, command)
    if refused is not None:
        return api_kit.denied(refused)
    try:
        made = await baton.schedules.add(
            playbook,
            params,
            user,
            cron_expression=cron,
            when=when,
            timezone=body.get("timezone") or baton.settings.timezone,
            origin="api",
        )
    except BatonError as exc:
        return api_kit.maperror(exc)
    return web.json_response(_schedule_json(made), status=201)


async def remove_schedule(request: web.Request) -> web.Response:
    """``DELETE /api/schedules/{id}?user=NAME``: removed on behalf of ``user`` (with a
    person's token: that person; ``user`` may be left out)."""
    baton = api_kit.baton_of(request)
    who = api_kit.caller(request)
    if isinstance(who, web.Response):
        return who
    user = api_auth.on_behalf(who, request.query.get("user"), "user", "")
    if isinstance(user, api_auth.Denied):
        return api_kit.denied(user)
    if not user:
        return api_kit.error(400, "missing ?user=NAME: on whose behalf the schedule is removed")
    schedule_id = request.match_info["schedule_id"]
    refused = await api_auth.permitted(
        baton, request.remote or "", user, grammar.Unschedule(schedule_id)
    )
    if refused is not None:
        return api_kit.denied(refused)
    try:
        gone = await baton.schedules.remove(schedule_id, user)
    except BatonError as exc:
        return api_kit.maperror(exc)
    return web.json_response(_schedule_json(gone))


def add_routes(app: web.Application, settings: Settings) -> None:
    read = api_kit.reader
    app.router.add_get("/api/playbooks", read(list_playbooks, settings))
    app.router.add_get("/api/playbooks/{name}", read(get_playbook, settings))
    app.router.add_get("/api/approvals", read(list_approvals, settings))
    app.router.add_get("/api/schedules", read(list_schedules, settings))
    app.router.add_post("/api/schedules", add_schedule)
    app.router.add_delete("/api/schedules/{schedule_id}", remove_schedule)
