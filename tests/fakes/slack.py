"""A fake Slack for tests: Web API, file uploads, response_url and Socket Mode on one
local aiohttp server, plus real-shaped inbound payloads and request signing.

Slack is unreachable from tests, so the bot talks to this instead. It answers the way
Slack does (HTTP 200 with ``{"ok": ...}``, 429 + ``Retry-After`` when rate limited), keeps
enough state (messages with their edits, files, views) for tests to assert on outcomes,
and records every request as a ``Call`` so a test can also assert on what was sent.
Waiting is always on a condition notified per request, never on a sleep.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import hashlib
import hmac
import itertools
import json
import re
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlencode

import aiohttp
from aiohttp import WSCloseCode, WSMsgType, web

TEAM_ID = "T0BATON"
TEAM_NAME = "Baton Test"
TEAM_DOMAIN = "baton-test"
APP_ID = "A0BATON"
BOT_USER_ID = "UBATON"
BOT_ID = "BBATON"
BOT_NAME = "baton"

DEFAULT_CHANNELS: dict[str, str] = {
    "C0OPS": "ops",
    "C0DEPLOYS": "deploys",
    "C0ALERTS": "alerts",
    "G0SECRET": "secret-ops",
}
DEFAULT_USERS: dict[str, str] = {
    "U0ALICE": "alice",
    "U0BOB": "bob",
    "U0CAROL": "carol",
    BOT_USER_ID: BOT_NAME,
}
DEFAULT_USERGROUPS: dict[str, dict[str, Any]] = {
    "S0ONCALL": {"handle": "oncall", "users": ["U0ALICE", "U0BOB"]},
    "S0ADMINS": {"handle": "admins", "users": ["U0CAROL"]},
}

# Form/query fields Slack accepts as JSON-encoded strings; decoded so tests see objects.
_JSON_FIELDS = frozenset({"blocks", "attachments", "files", "view", "metadata"})
_MESSAGE_FIELDS = ("text", "blocks", "attachments", "metadata")
_FIRST_TS_MICROS = 1_700_000_000_000_000
FORM = "application/x-www-form-urlencoded"
JSON = "application/json"


@dataclass
class Call:
    """One request the fake received: the method, its merged arguments and headers.

    ``limited`` marks an attempt rejected by ``FakeSlack.rate_limit``; ``response`` is the
    JSON body the fake answered, so a test can tell failed calls from successful ones."""

    method: str
    args: dict[str, Any]
    headers: dict[str, str]
    limited: bool = False
    response: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return bool(self.response.get("ok"))


@dataclass
class StoredFile:
    """A file completed through ``files.completeUploadExternal``, with the bytes uploaded."""

    id: str
    name: str
    title: str
    content: bytes
    channel: str | None
    thread_ts: str | None
    initial_comment: str | None

    @property
    def text(self) -> str:
        return self.content.decode("utf-8")


class SlackError(Exception):
    """Raised by a method handler to answer ``{"ok": false, "error": error}``."""

    def __init__(self, error: str, *, status: int = 200, retry_after: int | None = None) -> None:
        super().__init__(error)
        self.error = error
        self.status = status
        self.retry_after = retry_after


def ts_from_micros(micros: int) -> str:
    """Slack's ``"seconds.micros"`` timestamp string; sorts the same as a string and a float."""
    return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"


def _flag(value: Any) -> bool:
    """Slack booleans arrive as ``true``, ``"true"`` or ``"1"`` depending on the encoding."""
    return value is True or str(value).lower() in ("1", "true")


def _decode_json_field(name: str, value: Any) -> Any:
    if name in _JSON_FIELDS and isinstance(value, str) and value[:1] in ("[", "{"):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


async def _read_args(request: web.Request) -> dict[str, Any]:
    """Merge query, form and JSON body like Slack does: slack_sdk sends some POST methods
    with every argument in the query string and an empty form body."""
    args: dict[str, Any] = dict(request.query)
    if request.can_read_body:
        if request.content_type == JSON:
            body = await request.json()
            if isinstance(body, dict):
                args.update(body)
        elif request.content_type in (FORM, "multipart/form-data"):
            form = await request.post()
            args.update({k: v for k, v in form.items() if isinstance(v, str)})
    return {name: _decode_json_field(name, value) for name, value in args.items()}


def _bearer(headers: Mapping[str, str]) -> str | None:
    auth = headers.get("Authorization", "")
    if not auth.startswith("Bearer "):
        return None
    return auth.removeprefix("Bearer ").strip() or None


class FakeSocketMode:
    """The Socket Mode side: a websocket endpoint that greets with ``hello``, pushes
    envelopes, collects the client's acks and can ask the client to reconnect."""

    def __init__(self) -> None:
        self.connections = 0
        self.acks: list[dict[str, Any]] = []
        self.sent: list[dict[str, Any]] = []
        self.received: list[Any] = []
        self._open: list[web.WebSocketResponse] = []
        self._tickets: set[str] = set()
        self._ticket_numbers = itertools.count(1)
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._changed = asyncio.Condition()

    @property
    def open_connections(self) -> int:
        return len(self._open)

    def issue_ticket(self) -> str:
        """A one-use ticket, like the one in the URL ``apps.connections.open`` returns."""
        ticket = str(next(self._ticket_numbers))
        self._tickets.add(ticket)
        return ticket

    async def handle(self, request: web.Request) -> web.StreamResponse:
        ticket = request.query.get("ticket", "")
        if ticket not in self._tickets:
            raise web.HTTPUnauthorized(text="invalid or used ticket")
        self._tickets.discard(ticket)
        ws = web.WebSocketResponse(autoping=True, timeout=2.0)
        await ws.prepare(request)
        self._open.append(ws)
        try:
            await ws.send_json(self._hello())
            async with self._changed:
                self.connections += 1
                self._changed.notify_all()
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    self._on_client_message(msg.data)
        finally:
            self._open.remove(ws)
        return ws

    def _hello(self) -> dict[str, Any]:
        return {
            "type": "hello",
            "num_connections": len(self._open),
            "debug_info": {
                "host": "applink-fake",
                "build_number": 1,
                "approximate_connection_time": 18060,
            },
            "connection_info": {"app_id": APP_ID},
        }

    def _on_client_message(self, data: str) -> None:
        try:
            message = json.loads(data)
        except ValueError:
            self.received.append(data)
            return
        if not isinstance(message, dict) or "envelope_id" not in message:
            self.received.append(message)
            return
        self.acks.append(message)
        waiter = self._pending.get(message["envelope_id"])
        if waiter is not None and not waiter.done():
            waiter.set_result(message)

    async def wait_connected(self, n: int = 1, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Wait until the ``n``-th connection since start has been greeted."""
        try:
            async with asyncio.timeout(timeout), self._changed:
                await self._changed.wait_for(lambda: self.connections >= n)
        except TimeoutError:
            raise AssertionError(
                f"socket mode: {self.connections} connection(s) after {timeout}s, wanted {n}"
            ) from None

    def _newest(self) -> web.WebSocketResponse:
        for ws in reversed(self._open):
            if not ws.closed:
                return ws
        raise AssertionError("socket mode: no open connection (did the client connect?)")

    async def send(
        self,
        type: str,
        payload: dict[str, Any],
        accepts_response_payload: bool = False,
        *,
        retry_attempt: int = 0,
        retry_reason: str = "",
        timeout: float = 5.0,  # noqa: ASYNC109
    ) -> dict[str, Any]:
        """Push an envelope (``slash_commands``, ``interactive``, ``events_api``) on the
        newest connection and return the client's ack, failing if none comes in time."""
        ws = self._newest()
        envelope_id = str(uuid.uuid4())
        envelope = {
            "envelope_id": envelope_id,
            "type": type,
            "payload": payload,
            "accepts_response_payload": accepts_response_payload,
            "retry_attempt": retry_attempt,
            "retry_reason": retry_reason,
        }
        waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[envelope_id] = waiter
        try:
            self.sent.append(envelope)
            await ws.send_json(envelope)
            return await asyncio.wait_for(waiter, timeout)
        except TimeoutError:
            raise AssertionError(
                f"socket mode: no ack for {type} envelope within {timeout}s; acks: {self.acks}"
            ) from None
        finally:
            del self._pending[envelope_id]

    async def disconnect(self, reason: str = "refresh_requested") -> None:
        """Tell the client to reconnect, as Slack does before recycling a connection: the
        client fetches a new URL through ``apps.connections.open`` and closes this one."""
        await self._newest().send_json(
            {"type": "disconnect", "reason": reason, "debug_info": {"host": "fake"}}
        )

    async def close(self) -> None:
        for ws in list(self._open):
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"fake slack shutting down")


class FakeSlack:
    """The fake Slack server. Use as ``async with FakeSlack() as slack`` and point
    ``AsyncWebClient(base_url=slack.url)`` (or ``SLACK_API_URL``) at it."""

    def __init__(self, bot_token: str = "xoxb-test", app_token: str = "xapp-test") -> None:
        self.bot_token = bot_token
        self.app_token = app_token
        self.channels: dict[str, str] = dict(DEFAULT_CHANNELS)
        self.users: dict[str, str] = dict(DEFAULT_USERS)
        self.usergroups: dict[str, dict[str, Any]] = copy.deepcopy(DEFAULT_USERGROUPS)
        self.calls: list[Call] = []
        self.files: list[StoredFile] = []
        self.ephemerals: list[dict[str, Any]] = []
        self.views: dict[str, dict[str, Any]] = {}
        self.socket = FakeSocketMode()
        self._messages: dict[str, list[dict[str, Any]]] = {}
        self._uploads: dict[str, dict[str, Any]] = {}
        self._clock = itertools.count(1)
        self._ids = itertools.count(1)
        self._rate_limits: dict[str, deque[int]] = {}
        self._failures: dict[str, deque[str]] = {}
        self._raw_failures: dict[str, deque[tuple[int, str, str]]] = {}
        self._changed = asyncio.Condition()
        self._methods: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "auth.test": self._auth_test,
            "apps.connections.open": self._apps_connections_open,
            "chat.postMessage": self._chat_post_message,
            "chat.update": self._chat_update,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "chat.delete": self._chat_delete,
            "chat.getPermalink": self._chat_get_permalink,
            "conversations.info": self._conversations_info,
            "conversations.open": self._conversations_open,
            "users.info": self._users_info,
            "usergroups.list": self._usergroups_list,
            "usergroups.users.list": self._usergroups_users_list,
            "views.open": self._views_open,
            "views.push": self._views_open,
            "views.update": self._views_update,
            "files.getUploadURLExternal": self._files_get_upload_url,
            "files.completeUploadExternal": self._files_complete_upload,
        }
        self._runner: web.AppRunner | None = None
        self._port = 0

    # -- lifecycle -------------------------------------------------------------------

    async def __aenter__(self) -> FakeSlack:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._handle_api)
        app.router.add_post("/upload/{file_id}", self._handle_upload)
        app.router.add_post("/respond/{name}", self._handle_respond)
        app.router.add_get("/link", self.socket.handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self._port = self._runner.addresses[0][1]

    async def close(self) -> None:
        """Close open websockets first: the runner would otherwise wait on their handlers."""
        if self._runner is None:
            return
        await self.socket.close()
        await self._runner.cleanup()
        self._runner = None

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    @property
    def url(self) -> str:
        """The Web API base URL, ending with ``/api/`` like ``https://slack.com/api/``."""
        return f"{self.root}/api/"

    def response_url(self, name: str = "default") -> str:
        """A ``response_url`` whose POSTs are recorded as calls to ``"response_url"``."""
        return f"{self.root}/respond/{name}"

    # -- failure injection -----------------------------------------------------------

    def rate_limit(self, method: str, times: int = 1, retry_after: int = 0) -> None:
        """Answer the next ``times`` calls of ``method`` with 429 and ``Retry-After``."""
        self._rate_limits.setdefault(method, deque()).extend([retry_after] * times)

    def fail(self, method: str, error: str, times: int = 1) -> None:
        """Answer the next ``times`` calls of ``method`` with ``{"ok": false, error}``."""
        self._failures.setdefault(method, deque()).extend([error] * times)

    def fail_raw(
        self,
        method: str,
        status: int = 503,
        body: str = "<html><body><h1>503 Service Unavailable</h1></body></html>",
        content_type: str = "text/html",
        times: int = 1,
    ) -> None:
        """Answer the next ``times`` calls of ``method`` with something that is not Slack's
        JSON, as a proxy in front of Slack may: a 503 page, a 405 in plain text, a body
        that claims to be JSON and is not. The call is recorded with ``response``
        ``{"ok": False, "status": status, "body": body}``."""
        answer = (status, body, content_type)
        self._raw_failures.setdefault(method, deque()).extend([answer] * times)

    def _inject(self, call: Call) -> None:
        limits = self._rate_limits.get(call.method)
        if limits:
            call.limited = True
            raise SlackError("ratelimited", status=429, retry_after=limits.popleft())
        failures = self._failures.get(call.method)
        if failures:
            raise SlackError(failures.popleft())

    # -- inspection ------------------------------------------------------------------

    def calls_to(self, method: str) -> list[Call]:
        return [call for call in self.calls if call.method == method]

    def messages(self, channel: str) -> list[dict[str, Any]]:
        """Current state of the channel's messages, oldest first: ``ts``, ``thread_ts``,
        ``text``, ``blocks``, ``edits`` (how many updates) and ``history`` (the earlier
        versions). ``channel`` may be an id, ``#name`` or a user id (their DM)."""
        try:
            channel_id = self._resolve_channel(channel)
        except SlackError:
            return []
        return copy.deepcopy(self._messages.get(channel_id, []))

    def message(self, channel: str, ts: str) -> dict[str, Any]:
        for message in self.messages(channel):
            if message["ts"] == ts:
                return message
        seen = [m["ts"] for m in self.messages(channel)]
        raise AssertionError(f"no message ts={ts} in {channel}; have {seen}")

    def thread(self, channel: str, thread_ts: str) -> list[dict[str, Any]]:
        """The replies posted under ``thread_ts`` (not the parent)."""
        return [
            m
            for m in self.messages(channel)
            if m["thread_ts"] == thread_ts and m["ts"] != thread_ts
        ]

    async def wait_for(
        self,
        method: str,
        predicate: Callable[[Call], bool] | None = None,
        count: int = 1,
        timeout: float = 5.0,  # noqa: ASYNC109
    ) -> list[Call]:
        """Wait until ``count`` calls of ``method`` (matching ``predicate``) have arrived and
        return all the matching ones; on timeout fail with what did arrive."""

        def matching() -> list[Call]:
            return [c for c in self.calls_to(method) if predicate is None or predicate(c)]

        try:
            async with asyncio.timeout(timeout), self._changed:
                await self._changed.wait_for(lambda: len(matching()) >= count)
        except TimeoutError:
            seen = [(c.method, c.args, c.response) for c in self.calls]
            raise AssertionError(
                f"waited {timeout}s for {count} matching {method} call(s), "
                f"got {len(matching())}; all calls: {seen}"
            ) from None
        return matching()

    # -- HTTP plumbing ---------------------------------------------------------------

    async def _record(self, call: Call) -> None:
        async with self._changed:
            self.calls.append(call)
            self._changed.notify_all()

    async def _answer(
        self, call: Call, handler: Callable[[dict[str, Any]], dict[str, Any]]
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        """Run ``handler`` behind failure injection, record the call, and say how to answer."""
        status, headers = 200, {}
        try:
            body = {"ok": True, **handler(call.args)}
        except SlackError as e:
            body = {"ok": False, "error": e.error}
            status = e.status
            if e.retry_after is not None:
                headers["Retry-After"] = str(e.retry_after)
        call.response = body
        await self._record(call)
        return status, body, headers

    async def _handle_api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        call = Call(method, await _read_args(request), dict(request.headers))
        raw = self._raw_failures.get(method)
        if raw:
            status, text, content_type = raw.popleft()
            call.response = {"ok": False, "status": status, "body": text}
            await self._record(call)
            response = web.Response(status=status, body=text.encode())
            response.headers["Content-Type"] = content_type  # as given, even when untrue
            return response

        def run(args: dict[str, Any]) -> dict[str, Any]:
            handler = self._methods.get(method)
            if handler is None:
                raise SlackError("unknown_method")
            self._authenticate(method, _bearer(request.headers) or args.get("token"))
            self._inject(call)
            return handler(args)

        status, body, headers = await self._answer(call, run)
        return web.json_response(body, status=status, headers=headers)

    def _authenticate(self, method: str, token: str | None) -> None:
        if not token:
            raise SlackError("not_authed")
        expected = self.app_token if method == "apps.connections.open" else self.bot_token
        if token == expected:
            return
        if token in (self.app_token, self.bot_token):
            raise SlackError("not_allowed_token_type")
        raise SlackError("invalid_auth")

    async def _handle_upload(self, request: web.Request) -> web.Response:
        """The upload URL: slack_sdk POSTs the raw bytes (application/octet-stream, no
        token, since the URL itself authorizes); multipart is accepted too."""
        file_id = request.match_info["file_id"]
        content = await _read_upload(request)
        call = Call("upload", {"file_id": file_id, "length": len(content)}, dict(request.headers))

        def store(args: dict[str, Any]) -> dict[str, Any]:
            self._inject(call)
            upload = self._uploads.get(file_id)
            if upload is None:
                raise SlackError("file_not_found", status=404)
            upload["content"] = content
            return {}

        status, body, headers = await self._answer(call, store)
        if body["ok"]:
            return web.Response(text=f"OK - {len(content)}", content_type="text/plain")
        return web.json_response(body, status=status, headers=headers)

    async def _handle_respond(self, request: web.Request) -> web.Response:
        body = await request.json() if request.content_type == JSON else {}
        args = {**body, "_name": request.match_info["name"]}
        call = Call("response_url", args, dict(request.headers))

        def accept(args: dict[str, Any]) -> dict[str, Any]:
            self._inject(call)
            return {}

        status, answer, headers = await self._answer(call, accept)
        return web.json_response(answer, status=status, headers=headers)

    # -- ids and channels ------------------------------------------------------------

    def _next_ts(self) -> str:
        return ts_from_micros(_FIRST_TS_MICROS + 100 * next(self._clock))

    def _next_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):010d}"

    def _resolve_channel(self, ref: Any) -> str:
        """A channel id, a ``#name`` (or bare name) or a user id (their DM) → a channel id."""
        if not isinstance(ref, str) or not ref:
            raise SlackError("channel_not_found")
        if ref in self.channels or re.fullmatch(r"D[A-Z0-9]+", ref):
            return ref
        if re.fullmatch(r"[UW][A-Z0-9]+", ref):
            return dm_channel(ref)
        name = ref.removeprefix("#")
        for channel_id, channel_name in self.channels.items():
            if channel_name == name:
                return channel_id
        raise SlackError("channel_not_found")

    def _find_message(self, channel: str, ts: Any) -> dict[str, Any]:
        for message in self._messages.get(channel, []):
            if message["ts"] == ts:
                return message
        raise SlackError("message_not_found")

    # -- Web API methods -------------------------------------------------------------

    def _auth_test(self, args: dict[str, Any]) -> dict[str, Any]:
        return {
            "url": f"https://{TEAM_DOMAIN}.slack.com/",
            "team": TEAM_NAME,
            "user": BOT_NAME,
            "team_id": TEAM_ID,
            "user_id": BOT_USER_ID,
            "bot_id": BOT_ID,
            "is_enterprise_install": False,
        }

    def _apps_connections_open(self, args: dict[str, Any]) -> dict[str, Any]:
        ticket = self.socket.issue_ticket()
        return {"url": f"ws://127.0.0.1:{self._port}/link?ticket={ticket}"}

    def _chat_post_message(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._resolve_channel(args.get("channel"))
        if not any(args.get(name) for name in (*_MESSAGE_FIELDS, "markdown_text")):
            raise SlackError("no_text")
        ts = self._next_ts()
        message = {
            "type": "message",
            "text": args.get("text") or args.get("markdown_text") or "",
            "user": BOT_USER_ID,
            "bot_id": BOT_ID,
            "app_id": APP_ID,
            "team": TEAM_ID,
            "ts": ts,
            "thread_ts": args.get("thread_ts"),
            "blocks": args.get("blocks") or [],
        }
        for name in ("attachments", "metadata", "username"):
            if args.get(name):
                message[name] = args[name]
        self._store(channel, message)
        return {"channel": channel, "ts": ts, "message": _public(message)}

    def _store(self, channel: str, message: dict[str, Any]) -> None:
        self._messages.setdefault(channel, []).append(
            {**message, "channel": channel, "edits": 0, "history": []}
        )

    def _chat_update(self, args: dict[str, Any]) -> dict[str, Any]:
        if str(args.get("channel", "")).startswith("#"):
            raise SlackError("channel_not_found")  # as Slack: chat.update wants an id
        channel = self._resolve_channel(args.get("channel"))
        message = self._find_message(channel, args.get("ts"))
        message["history"].append({k: copy.deepcopy(message.get(k)) for k in _MESSAGE_FIELDS})
        message["edits"] += 1
        for name in _MESSAGE_FIELDS:
            if name in args:
                message[name] = args[name]
        return {
            "channel": channel,
            "ts": message["ts"],
            "text": message["text"],
            "message": _public(message),
        }

    def _chat_post_ephemeral(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._resolve_channel(args.get("channel"))
        if not args.get("user"):
            raise SlackError("user_not_in_channel")
        if not any(args.get(name) for name in _MESSAGE_FIELDS):
            raise SlackError("no_text")
        ts = self._next_ts()
        self.ephemerals.append(
            {
                "channel": channel,
                "user": args["user"],
                "ts": ts,
                "thread_ts": args.get("thread_ts"),
                "text": args.get("text", ""),
                "blocks": args.get("blocks") or [],
            }
        )
        return {"message_ts": ts}

    def _chat_delete(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._resolve_channel(args.get("channel"))
        message = self._find_message(channel, args.get("ts"))
        self._messages[channel].remove(message)
        return {"channel": channel, "ts": message["ts"]}

    def _chat_get_permalink(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._resolve_channel(args.get("channel"))
        message = self._find_message(channel, args.get("message_ts"))
        packed_ts = message["ts"].replace(".", "")
        link = f"https://{TEAM_DOMAIN}.slack.com/archives/{channel}/p{packed_ts}"
        thread_ts = message["thread_ts"]
        if thread_ts and thread_ts != message["ts"]:
            link += f"?thread_ts={thread_ts}&cid={channel}"
        return {"channel": channel, "permalink": link}

    def _conversations_info(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = args.get("channel")
        if isinstance(channel, str) and channel.startswith("D"):
            user = "U" + channel[1:]
            return {"channel": {"id": channel, "is_im": True, "user": user, "is_open": True}}
        if channel not in self.channels:
            raise SlackError("channel_not_found")
        name = self.channels[channel]
        private = channel.startswith("G")
        return {
            "channel": {
                "id": channel,
                "name": name,
                "name_normalized": name,
                "is_channel": not private,
                "is_group": private,
                "is_im": False,
                "is_mpim": False,
                "is_private": private,
                "is_archived": False,
                "is_general": False,
                "is_member": True,
                "created": 1_600_000_000,
                "creator": "U0ALICE",
                "topic": {"value": "", "creator": "", "last_set": 0},
                "purpose": {"value": "", "creator": "", "last_set": 0},
            }
        }

    def _conversations_open(self, args: dict[str, Any]) -> dict[str, Any]:
        users = [u for u in str(args.get("users") or "").split(",") if u]
        if len(users) != 1:
            raise SlackError("users_list_not_supplied" if not users else "not_supported")
        return {"channel": {"id": dm_channel(users[0])}}

    def _users_info(self, args: dict[str, Any]) -> dict[str, Any]:
        user_id = args.get("user")
        if not isinstance(user_id, str) or not user_id:
            raise SlackError("user_not_found")
        name = self.users.get(user_id, f"user-{user_id.lower()}")
        real_name = name.capitalize()
        return {
            "user": {
                "id": user_id,
                "team_id": TEAM_ID,
                "name": name,
                "deleted": False,
                "real_name": real_name,
                "tz": "Europe/London",
                "is_admin": False,
                "is_bot": user_id == BOT_USER_ID,
                "profile": {
                    "real_name": real_name,
                    "display_name": name,
                    "email": f"{name}@example.com",
                    "team": TEAM_ID,
                },
            }
        }

    def _usergroups_list(self, args: dict[str, Any]) -> dict[str, Any]:
        groups = []
        for group_id, group in self.usergroups.items():
            entry = {
                "id": group_id,
                "team_id": TEAM_ID,
                "is_usergroup": True,
                "name": group.get("name", group["handle"]),
                "description": group.get("description", ""),
                "handle": group["handle"],
                "user_count": len(group["users"]),
            }
            if _flag(args.get("include_users")):
                entry["users"] = list(group["users"])
            groups.append(entry)
        return {"usergroups": groups}

    def _usergroups_users_list(self, args: dict[str, Any]) -> dict[str, Any]:
        group = self.usergroups.get(args.get("usergroup", ""))
        if group is None:
            raise SlackError("no_such_subteam")
        return {"users": list(group["users"])}

    def _views_open(self, args: dict[str, Any]) -> dict[str, Any]:
        if not (args.get("trigger_id") or args.get("interactivity_pointer")):
            raise SlackError("invalid_arguments")
        view = args.get("view")
        if not isinstance(view, dict):
            raise SlackError("invalid_arguments")
        view_id = self._next_id("V")
        stored = {
            "team_id": TEAM_ID,
            "type": "modal",
            "blocks": [],
            "private_metadata": "",
            "callback_id": "",
            "external_id": "",
            "clear_on_close": False,
            "notify_on_close": False,
            "close": None,
            "submit": None,
            "previous_view_id": None,
            **view,
            "id": view_id,
            "state": {"values": {}},
            "hash": self._view_hash(),
            "root_view_id": view_id,
            "app_id": APP_ID,
            "app_installed_team_id": TEAM_ID,
            "bot_id": BOT_ID,
        }
        self.views[view_id] = stored
        return {"view": copy.deepcopy(stored)}

    def _view_hash(self) -> str:
        return f"{self._next_ts().split('.')[0]}.{next(self._ids):08x}"

    def _views_update(self, args: dict[str, Any]) -> dict[str, Any]:
        view = args.get("view")
        if not isinstance(view, dict):
            raise SlackError("invalid_arguments")
        current = self.views.get(args.get("view_id", ""))
        if current is None and args.get("external_id"):
            found = [v for v in self.views.values() if v["external_id"] == args["external_id"]]
            current = found[0] if found else None
        if current is None:
            raise SlackError("not_found")
        if args.get("hash") and args["hash"] != current["hash"]:
            raise SlackError("hash_conflict")
        current.update({**view, "id": current["id"], "hash": self._view_hash()})
        return {"view": copy.deepcopy(current)}

    def _files_get_upload_url(self, args: dict[str, Any]) -> dict[str, Any]:
        filename, length = args.get("filename"), args.get("length")
        if not filename or length is None:
            raise SlackError("invalid_arguments")
        file_id = self._next_id("F")
        self._uploads[file_id] = {"filename": filename, "length": int(length), "content": None}
        return {"upload_url": f"{self.root}/upload/{file_id}", "file_id": file_id}

    def _files_complete_upload(self, args: dict[str, Any]) -> dict[str, Any]:
        entries = args.get("files")
        if not isinstance(entries, list) or not entries:
            raise SlackError("invalid_arguments")
        targets = [args["channel_id"]] if args.get("channel_id") else []
        targets += [c for c in str(args.get("channels") or "").split(",") if c]
        channels = [self._resolve_channel(target) for target in targets]
        completed = []
        for entry in entries:
            upload = self._uploads.get(entry.get("id", ""))
            if upload is None or upload["content"] is None:
                raise SlackError("file_not_found")
            completed.append((entry, upload))
        results = []
        for entry, upload in completed:
            stored = StoredFile(
                id=entry["id"],
                name=upload["filename"],
                title=entry.get("title") or upload["filename"],
                content=upload["content"],
                channel=channels[0] if channels else None,
                thread_ts=args.get("thread_ts"),
                initial_comment=args.get("initial_comment"),
            )
            self.files.append(stored)
            del self._uploads[stored.id]
            results.append(
                {
                    "id": stored.id,
                    "name": stored.name,
                    "title": stored.title,
                    "size": len(stored.content),
                }
            )
        for channel in channels:
            self._share_files(channel, results, args)
        return {"files": results}

    def _share_files(self, channel: str, files: list[dict[str, Any]], args: dict[str, Any]) -> None:
        """Sharing a completed upload posts a message carrying the files, as Slack does."""
        message = {
            "type": "message",
            "text": args.get("initial_comment") or "",
            "user": BOT_USER_ID,
            "bot_id": BOT_ID,
            "team": TEAM_ID,
            "ts": self._next_ts(),
            "thread_ts": args.get("thread_ts"),
            "blocks": [],
            "files": copy.deepcopy(files),
            "upload": True,
        }
        self._store(channel, message)


def _public(message: dict[str, Any]) -> dict[str, Any]:
    """A stored message as Slack shows it: without the fake's bookkeeping or empty fields."""
    hidden = {"channel", "edits", "history"}
    return {k: copy.deepcopy(v) for k, v in message.items() if k not in hidden and v is not None}


async def _read_upload(request: web.Request) -> bytes:
    if request.content_type.startswith("multipart/"):
        reader = await request.multipart()
        async for part in reader:
            if isinstance(part, aiohttp.BodyPartReader):
                return bytes(await part.read())
        return b""
    return await request.read()


def dm_channel(user_id: str) -> str:
    """The fake's DM channel with a user: ``U0ALICE`` → ``D0ALICE``."""
    return "D" + user_id[1:]


# -- inbound payloads -----------------------------------------------------------------

_PAYLOADS = Path(__file__).with_name("payloads")
_payload_numbers = itertools.count(1)


@functools.cache
def _template(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((_PAYLOADS / f"{name}.json").read_text())
    return loaded


def _load(name: str) -> dict[str, Any]:
    return copy.deepcopy(_template(name))


def _unique() -> int:
    return next(_payload_numbers)


def _event_ts() -> str:
    """Event timestamps from a clock of their own, well after the fake's message ts."""
    return ts_from_micros(_FIRST_TS_MICROS + 10_000_000_000 + 100 * _unique())


def _trigger_id() -> str:
    n = _unique()
    return f"1700000000{n:03d}.1700000000.{n:032x}"


def _user_name(user: str) -> str:
    return DEFAULT_USERS.get(user, f"user-{user.lower()}")


def _channel_name(channel: str) -> str:
    return DEFAULT_CHANNELS.get(channel, "directmessage" if channel.startswith("D") else "")


def _response_url(kind: str) -> str:
    return f"https://hooks.slack.com/{kind}/{TEAM_ID}/{_unique()}/{uuid.uuid4().hex[:24]}"


def slash_command(
    text: str,
    *,
    command: str = "/baton",
    user: str = "U0ALICE",
    user_name: str | None = None,
    channel: str = "C0OPS",
    channel_name: str | None = None,
    response_url: str | None = None,
    trigger_id: str | None = None,
) -> dict[str, str]:
    """A slash command's fields, all strings, as Slack form-posts them (or puts them in
    a ``slash_commands`` envelope's payload)."""
    fields = _load("slash_command")
    fields.update(
        {
            "command": command,
            "text": text,
            "user_id": user,
            "user_name": user_name or _user_name(user),
            "channel_id": channel,
            "channel_name": channel_name or _channel_name(channel),
            "response_url": response_url or _response_url("commands"),
            "trigger_id": trigger_id or _trigger_id(),
        }
    )
    return {k: str(v) for k, v in fields.items()}


def block_action(
    action_id: str,
    value: str,
    *,
    block_id: str = "baton",
    user: str = "U0ALICE",
    user_name: str | None = None,
    channel: str = "C0OPS",
    channel_name: str | None = None,
    message_ts: str = "1700000000.000100",
    message: dict[str, Any] | None = None,
    trigger_id: str | None = None,
    response_url: str | None = None,
) -> dict[str, Any]:
    """A button click (``block_actions``) on a message. Pass ``message`` (e.g. from
    ``FakeSlack.message``) to embed the real message the button was on."""
    payload = _load("block_actions")
    name = user_name or _user_name(user)
    payload["user"].update({"id": user, "username": name, "name": name})
    payload["container"].update({"message_ts": message_ts, "channel_id": channel})
    payload["channel"] = {"id": channel, "name": channel_name or _channel_name(channel)}
    if message is not None:
        payload["message"] = _public(message)
    payload["message"]["ts"] = message_ts
    payload["trigger_id"] = trigger_id or _trigger_id()
    payload["response_url"] = response_url or _response_url("actions")
    action = payload["actions"][0]
    action.update(
        {"action_id": action_id, "block_id": block_id, "value": value, "action_ts": _event_ts()}
    )
    return payload


def view_submission(
    callback_id: str,
    values: dict[str, dict[str, dict[str, Any]]],
    *,
    private_metadata: str = "",
    user: str = "U0ALICE",
    user_name: str | None = None,
    view_id: str | None = None,
    trigger_id: str | None = None,
) -> dict[str, Any]:
    """A modal submission; ``values`` is ``state.values``: block_id → action_id →
    ``{"type": ..., "value" | "selected_option" | "selected_options": ...}``."""
    payload = _load("view_submission")
    name = user_name or _user_name(user)
    payload["user"].update({"id": user, "username": name, "name": name})
    payload["trigger_id"] = trigger_id or _trigger_id()
    view = payload["view"]
    view_id = view_id or f"V{_unique():010d}"
    view.update(
        {
            "id": view_id,
            "root_view_id": view_id,
            "callback_id": callback_id,
            "private_metadata": private_metadata,
            "state": {"values": copy.deepcopy(values)},
        }
    )
    return payload


def _rich_text(text: str) -> list[dict[str, Any]]:
    """The ``rich_text`` block Slack adds to user messages, with ``<@U…>`` as user elements."""
    elements: list[dict[str, Any]] = []
    for piece in re.split(r"(<@[UW][A-Z0-9]+>)", text):
        mention = re.fullmatch(r"<@([UW][A-Z0-9]+)>", piece)
        if mention:
            elements.append({"type": "user", "user_id": mention.group(1)})
        elif piece:
            elements.append({"type": "text", "text": piece})
    section = {"type": "rich_text_section", "elements": elements}
    return [{"type": "rich_text", "block_id": uuid.uuid4().hex[:5], "elements": [section]}]


def _event_callback(
    template: str, event: dict[str, Any], ts: str | None, event_id: str | None
) -> dict[str, Any]:
    payload = _load(template)
    ts = ts or _event_ts()
    payload["event"].update({**event, "ts": ts, "event_ts": ts})
    if "client_msg_id" in payload["event"]:
        payload["event"]["client_msg_id"] = str(uuid.uuid4())
        payload["event"]["blocks"] = _rich_text(event["text"])
    payload["event_id"] = event_id or f"Ev{_unique():010d}"
    payload["event_time"] = int(float(ts))
    return payload


def app_mention(
    text: str,
    *,
    user: str = "U0ALICE",
    channel: str = "C0OPS",
    ts: str | None = None,
    thread_ts: str | None = None,
    event_id: str | None = None,
) -> dict[str, Any]:
    """An ``event_callback`` with an ``app_mention``; ``text`` should contain ``<@UBATON>``."""
    event: dict[str, Any] = {"text": text, "user": user, "channel": channel}
    if thread_ts:
        event["thread_ts"] = thread_ts
    return _event_callback("app_mention", event, ts, event_id)


def im_message(
    text: str,
    *,
    user: str = "U0ALICE",
    channel: str = "D0ALICE",
    ts: str | None = None,
    thread_ts: str | None = None,
    event_id: str | None = None,
) -> dict[str, Any]:
    """An ``event_callback`` with a user's ``message`` in their DM with the bot."""
    event: dict[str, Any] = {"text": text, "user": user, "channel": channel}
    if thread_ts:
        event["thread_ts"] = thread_ts
    return _event_callback("im_message", event, ts, event_id)


def bot_message(
    text: str,
    *,
    channel: str = "C0ALERTS",
    bot_id: str = "B0ALERTS",
    username: str = "alertmanager",
    ts: str | None = None,
    event_id: str | None = None,
) -> dict[str, Any]:
    """An ``event_callback`` with a ``bot_message`` another integration posted in a channel."""
    event = {"text": text, "channel": channel, "bot_id": bot_id, "username": username}
    return _event_callback("bot_message", event, ts, event_id)


# -- HTTP mode: encoding and signing ---------------------------------------------------


def sign(
    body: bytes | str,
    secret: str,
    timestamp: int | None = None,
    *,
    content_type: str | None = None,
) -> dict[str, str]:
    """The headers bolt's request verification checks: ``v0=`` HMAC-SHA256 of
    ``v0:{timestamp}:{body}`` keyed by the signing secret (timestamp defaults to now,
    since bolt rejects requests older than five minutes)."""
    raw = body.encode() if isinstance(body, str) else body
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), b"v0:" + stamp.encode() + b":" + raw, hashlib.sha256)
    guessed = JSON if raw.lstrip()[:1] in (b"{", b"[") else FORM
    return {
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": "v0=" + digest.hexdigest(),
        "Content-Type": content_type or guessed,
    }


def encode_command(fields: Mapping[str, str]) -> tuple[str, str]:
    """A slash command body as Slack sends it: url-encoded form fields."""
    return urlencode(dict(fields)), FORM


def encode_interactive(payload: Mapping[str, Any]) -> tuple[str, str]:
    """An interaction body as Slack sends it: a form with one ``payload`` JSON field."""
    return urlencode({"payload": json.dumps(payload)}), FORM


def encode_event(payload: Mapping[str, Any]) -> tuple[str, str]:
    """An Events API body as Slack sends it: plain JSON."""
    return json.dumps(payload), JSON


async def post_signed(
    session: aiohttp.ClientSession,
    url: str,
    body: str,
    content_type: str,
    secret: str,
    *,
    timestamp: int | None = None,
    headers: Mapping[str, str] | None = None,
) -> tuple[int, str]:
    """POST ``body`` signed with ``secret`` the way Slack does; returns (status, text)."""
    all_headers = {**sign(body, secret, timestamp, content_type=content_type), **(headers or {})}
    async with session.post(url, data=body.encode(), headers=all_headers) as response:
        return response.status, await response.text()
