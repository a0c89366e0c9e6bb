"""``POST /slack/events`` before bolt sees it: the request is proved to come from Slack
before its body is parsed.

Bolt parses the body (JSON, a form, a form's ``payload`` JSON) when it builds its
request, before its own signature check runs, so a body that does not parse was a 500
with a traceback for anyone who could reach the port. Here, in order: a compressed body
is refused (415: Slack never compresses), the signing headers are checked (401 when they
are missing, 400 when the timestamp is not a number), the body is read by ``bot.edge``
(1 MiB, ``BATON_READ_TIMEOUT``), the signature is verified with slack_sdk's
``SignatureVerifier`` (401), and only then is the body parsed (400 when it does not).
Bolt's own check still runs after this one.
"""

from __future__ import annotations

from aiohttp import web
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.signature import SignatureVerifier

from bot import api_kit, edge
from bot.settings import Settings

SIGNATURE = "X-Slack-Signature"
TIMESTAMP = "X-Slack-Request-Timestamp"


async def bolt_request(request: web.Request, settings: Settings) -> AsyncBoltRequest | web.Response:
    """Bolt's request for a verified Slack request, or the answer to give instead."""
    refused = edge.encoding_refusal(request)
    if refused is not None:
        return refused
    signature, timestamp = request.headers.get(SIGNATURE), request.headers.get(TIMESTAMP)
    if not signature or not timestamp:
        return edge.refusal(401, f"missing {SIGNATURE} or {TIMESTAMP}: only Slack posts here")
    if not (timestamp.isascii() and timestamp.isdigit()):
        return edge.refusal(400, f"{TIMESTAMP} must be a Unix time in seconds, not {timestamp!r}")
    body = await edge.read(
        request,
        limit=api_kit.MAX_BODY,
        seconds=settings.read_timeout,
        limit_name="Slack's requests",
    )
    if isinstance(body, edge.Refused):
        return body.answer
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return edge.refusal(400, "body is not UTF-8 text, as Slack's requests are")
    secret = settings.slack_signing_secret
    assert secret is not None, "HTTP mode needs SLACK_SIGNING_SECRET"
    if not SignatureVerifier(secret.get_secret_value()).is_valid(text, timestamp, signature):
        return edge.refusal(
            401, f"{SIGNATURE} does not match SLACK_SIGNING_SECRET, or the request is stale"
        )
    try:
        return AsyncBoltRequest(
            body=text,
            query=request.query_string,
            headers=request.headers,  # type: ignore[arg-type]
        )
    # a signed body that does not parse, nests deeper than Python reads, or has a shape
    # bolt's reading of it trips on (a mapping where it expects a list: KeyError)
    except Exception as exc:
        return edge.refusal(400, f"body is not a Slack request: {exc}")
