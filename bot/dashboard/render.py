"""Rendering the dashboard's pages: one Jinja2 environment (autoescape on, templates from
this package), the context every page shares (who is logged in, their CSRF token, the
navigation) and the small formatters templates use."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import jinja2
from aiohttp import web

from bot.dashboard import auth
from engine.playbooks.durations import format_duration

if TYPE_CHECKING:
    from bot.app import Baton

BATON = web.AppKey("dashboard.baton", object)
TEMPLATES = web.AppKey("dashboard.templates", jinja2.Environment)

NAV = (
    ("/", "Runs"),
    ("/playbooks", "Playbooks"),
    ("/approvals", "Approvals"),
    ("/schedules", "Schedules"),
    ("/alerts", "Alerts"),
    ("/audit", "Audit"),
    ("/stats", "Stats"),
)


def environment() -> jinja2.Environment:
    """Templates of ``bot/dashboard/templates``; every value is escaped unless a handler
    marks it safe (only the SVG Graphviz draws from escaped labels)."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("bot.dashboard", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = when
    env.filters["took"] = took
    env.filters["shown"] = shown
    return env


def baton_of(request: web.Request) -> Baton:
    return request.app[BATON]  # type: ignore[return-value]


def page(request: web.Request, template: str, *, status: int = 200, **context: Any) -> web.Response:
    """``template`` rendered with ``context`` and what every page shows."""
    person = auth.who(request)
    context.setdefault("error", None)  # what went wrong, shown at the top of the page
    context.setdefault("notice", "")  # what an action did
    text = (
        request.app[TEMPLATES]
        .get_template(template)
        .render(
            who=person,
            can_act=person.can_act,
            csrf=auth.csrf_token(request),
            nav=NAV,
            path=request.path,
            **context,
        )
    )
    return web.Response(text=text, status=status, content_type="text/html", charset="utf-8")


def when(iso: str | datetime | None) -> str:
    """A time as people read it, to the second, in UTC."""
    if iso is None or iso == "":
        return ""
    at = datetime.fromisoformat(iso) if isinstance(iso, str) else iso
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def took(started: str | None, finished: str | None) -> str:
    if not started or not finished:
        return ""
    seconds = (datetime.fromisoformat(finished) - datetime.fromisoformat(started)).total_seconds()
    return format_duration(max(0.0, seconds))


def shown(value: Any) -> str:
    """A param or output value as text (JSON-ish for lists and maps)."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)
