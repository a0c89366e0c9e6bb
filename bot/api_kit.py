"""What Baton's HTTP routes share (the run API, its catalog routes, the alert webhooks,
Slack's events): the Baton an app serves, error answers, bearer tokens and who they
speak for, reads behind the token, and JSON bodies read within limits."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from bot import api_auth, edge
from bot.chat.replies import failure_kind
from engine import storable
from engine.errors import BatonError, ParamError, PlaybookNotFound

if TYPE_CHECKING:
    from pydantic import SecretStr

    from bot.app import Baton
    from bot.settings import Settings

BATON = web.AppKey("baton", object)
MAX_BODY = 1024 * 1024


def error(status: int, message: str, **extra: Any) -> web.Response:
    """An error answer of Baton's HTTP routes: ``{"error": message, ...}``."""
    return web.json_response({"error": message, **extra}, status=status)


def bearer(request: web.Request) -> str | None:
    """The token sent as ``Authorization: Bearer TOKEN``, if any."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token if scheme.lower() == "bearer" and token else None


def token_matches(sent: str, expected: SecretStr) -> bool:
    return api_auth.token_matches(sent, expected)


def caller(request: web.Request) -> api_auth.Caller | web.Response:
    """Who the request's bearer token speaks for, or the 401/403 answer."""
    baton = baton_of(request)
    found = api_auth.identify(bearer(request), baton.settings.api_token, baton.rules.people)
    return denied(found) if isinstance(found, api_auth.Denied) else found


def denied(refusal: api_auth.Denied) -> web.Response:
    return error(refusal.status, refusal.message)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def reader(handler: Handler, settings: Settings) -> Handler:
    """``handler`` behind the API token when ``BATON_API_READ_TOKEN=required``."""
    if settings.api_read_token != "required":
        return handler

    async def guarded(request: web.Request) -> web.StreamResponse:
        who = caller(request)
        return who if isinstance(who, web.Response) else await handler(request)

    return guarded


def baton_of(request: web.Request) -> Baton:
    """The Baton this app serves (``create_app`` puts it there)."""
    return request.app[BATON]  # type: ignore[return-value]


STATUS = {"not_found": 404, "conflict": 409, "refused": 403, "invalid": 400}
"""The HTTP status of each kind of failure (``bot.chat.replies.failure_kind``), the same
on the API and the dashboard's pages."""


def maperror(exc: BatonError) -> web.Response:
    """The answer to one of Baton's errors: its message, with the status it means."""
    status = STATUS[failure_kind(exc)]
    if isinstance(exc, PlaybookNotFound):
        return error(status, str(exc), suggestions=exc.suggestions)
    if isinstance(exc, ParamError):
        return error(status, str(exc), details=exc.errors)
    return error(status, str(exc))


def json_or_error(raw: bytes) -> Any:
    """The JSON in ``raw``, or a 400 answer saying what is wrong with it (nesting too
    deep and numbers too long included: both are the sender's mistake)."""
    try:
        return json.loads(raw or b"null")
    except RecursionError:
        return error(400, "body is not valid JSON: nested too deep")
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, a 5,000-digit number
        if "integer string conversion" in str(exc):  # Python's own wording, with its fix
            why = "a number of over 4,300 digits (send it as text)"
            return error(400, f"body is not valid JSON: {why}")
        return error(400, f"body is not valid JSON: {exc}")


async def json_body(request: web.Request) -> dict[str, Any] | web.Response:
    """The JSON object of a write, read by ``bot.edge`` (1 MiB at most, uncompressed,
    within BATON_READ_TIMEOUT); a value no database stores is a 400 naming its field."""
    raw = await edge.read(
        request,
        limit=MAX_BODY,
        seconds=baton_of(request).settings.read_timeout,
        limit_name="the API's limit",
    )
    if isinstance(raw, edge.Refused):
        return raw.answer
    body = json_or_error(raw)
    if isinstance(body, web.Response):
        return body
    if not isinstance(body, dict):
        return error(400, 'body must be a JSON object: {"playbook": ..., "params": {...}}')
    found = storable.find(body)
    if found is not None:
        return error(400, f"{found[0]}: {found[1]}")
    return body


def typed(body: dict[str, Any], **kinds: type) -> web.Response | None:
    """400 naming the first field of ``body`` that is there with another JSON type."""
    names = {str: "a string", bool: "true or false"}
    for name, kind in kinds.items():
        value = body.get(name)
        if value is not None and not isinstance(value, kind):
            return error(400, f'"{name}" must be {names[kind]}, not {json.dumps(value)[:80]}')
    return None
