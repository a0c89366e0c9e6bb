"""The Slack Web API client: slack_sdk's ``AsyncWebClient``, retrying 429s after
``Retry-After`` and connection errors with slack_sdk's own retry handlers, pointed
elsewhere by ``SLACK_API_URL`` (tests use a fake Slack).

Slack answers every Web API call with JSON (``{"ok": ...}``). Something in between may
not: a proxy's 503 page in HTML, a 405, an empty 502, a captive portal's 200. slack_sdk
then hands back the body as a string (or raises with the bare HTTP response), and code
that reads ``exc.response.get("error")`` meets a ``str`` and fails in its own error
handler. This client reads such an answer as the failed call it is, the way Slack would
have said it: ``{"ok": false, "error": "http_503"}`` (``"not_json"`` for a 200). Every
caller then handles it like any refused call, and the log says what came back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

from bot.settings import Settings

log = logging.getLogger(__name__)

SHOWN = 200  # characters of a foreign body kept for the log


def make_client(
    settings: Settings,
    session: aiohttp.ClientSession | None,
    on_error: Callable[[str], None] | None = None,
) -> AsyncWebClient:
    """The Web API client; ``on_error(method)`` hears of every call Slack did not answer
    with ``ok`` (``bot.metrics`` counts them)."""
    token = settings.slack_bot_token.get_secret_value() if settings.slack_bot_token else None
    kwargs: dict[str, Any] = {}
    if settings.slack_api_url:
        url = settings.slack_api_url
        kwargs["base_url"] = url if url.endswith("/") else url + "/"
    client = WebClient(
        token=token,
        session=session,
        retry_handlers=[
            AsyncConnectionErrorRetryHandler(max_retry_count=2),
            AsyncRateLimitErrorRetryHandler(max_retry_count=5),
        ],
        **kwargs,
    )
    client.on_error = on_error
    return client


def not_slack(api_url: str, status: int | None, body: object) -> dict[str, Any]:
    """What Slack would have answered for a call whose answer was not Slack's JSON."""
    error = "not_json" if status in (None, 200) else f"http_{status}"
    shown = body if isinstance(body, str) else ""
    log.warning(
        "Slack %s answered HTTP %s with something that is not Slack's JSON (a proxy in "
        "the way?): %r",
        api_url.rsplit("/", 1)[-1],
        status,
        shown[:SHOWN],
    )
    return {"ok": False, "error": error}


def reason(exc: BaseException) -> str:
    """Why a Slack call failed, in a word, whatever came back: the API's error code, the
    HTTP status, or the exception."""
    data = getattr(getattr(exc, "response", None), "data", None)
    if isinstance(data, dict) and data.get("error"):
        return str(data["error"])
    status = getattr(getattr(exc, "response", None), "status_code", None)
    return f"http_{status}" if status else (str(exc) or type(exc).__name__)


class WebClient(AsyncWebClient):
    """``AsyncWebClient`` whose failed calls always carry Slack's JSON shape, and are
    told to ``on_error`` by method name."""

    on_error: Callable[[str], None] | None = None

    async def _request(  # type: ignore[no-untyped-def]
        self, *, http_verb, api_url, req_args
    ) -> dict[str, Any]:
        res = await self._answer(http_verb=http_verb, api_url=api_url, req_args=req_args)
        data = res.get("data")
        if self.on_error is not None and isinstance(data, dict) and not data.get("ok", True):
            self.on_error(api_url.rsplit("/", 1)[-1])
        return res

    async def _answer(  # type: ignore[no-untyped-def]
        self, *, http_verb, api_url, req_args
    ) -> dict[str, Any]:
        try:
            res: dict[str, Any] = await super()._request(
                http_verb=http_verb, api_url=api_url, req_args=req_args
            )
        except SlackApiError as exc:  # a JSON content type whose body is not JSON
            if isinstance(getattr(exc.response, "data", None), dict):
                raise
            status = getattr(exc.response, "status", None)
            answer = not_slack(api_url, status, str(exc))
            return {"data": answer, "headers": {}, "status_code": status}
        data = res.get("data")
        if isinstance(data, bytes) or (isinstance(data, dict) and data):
            return res
        return {**res, "data": not_slack(api_url, res.get("status_code"), data)}
