"""The Slack front end: a bolt ``AsyncApp`` in front of the same ``Commands`` as the
console, in Socket Mode (``SLACK_APP_TOKEN``) and/or HTTP mode (``SLACK_SIGNING_SECRET``,
``POST /slack/events`` on Baton's own server).

Every request is acknowledged before the work is done: a listener acks and hands the
rest to ``SlackFront.later`` (a tracked task), so Slack's 3-second rule holds whatever a
command costs, and the acknowledgement leaves at once. When that work fails all the same,
the asker is told that something went wrong (the log has the details): a request is
never dropped without a word. The Web API client is ``bot.slack.client``'s.

``SlackFront`` owns the client's HTTP session, the run cards' event subscription and
the Socket Mode connection; the composition root opens and closes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Coroutine, Sequence
from typing import Any
from urllib.parse import parse_qsl

import aiohttp
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.app.async_app import AsyncApp
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.request.async_internals import build_async_context
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.alerts.parsers import ChatRule
from bot.approvers import ApproverCheck
from bot.commands import Commands, Reply
from bot.settings import Settings
from bot.slack import blocks, middleware
from bot.slack import http as slack_http
from bot.slack.cards import CardOptions, Cards
from bot.slack.client import make_client
from bot.slack.contract import Answer, Where, plain
from bot.slack.listeners import actions, views
from bot.slack.listeners import commands as command_listeners
from bot.slack.people import Directory
from engine.access.rules import Actor
from engine.alerts.router import AlertRouter
from engine.errors import BatonError
from engine.runs.outbox import Outbox
from engine.runs.requests import Trigger

log = logging.getLogger(__name__)

LOGS_INLINE = 2500
"""Characters of logs answered in the message itself; longer ones come as a file."""
LOGS_TAIL_LINES = 30


class SlackFront:
    """Everything Slack, opened and closed as one resource. The client, the directory,
    the bolt app and the cards exist once it is open."""

    client: AsyncWebClient
    directory: Directory

    def __init__(
        self,
        settings: Settings,
        commands: Commands,
        alerts: AlertRouter | None = None,
        chat_rules: Sequence[ChatRule] = (),
        on_api_error: Callable[[str], None] | None = None,
    ) -> None:
        self.settings = settings
        self.on_api_error = on_api_error  # told the method of every failed Web API call
        self.commands = commands
        self.alerts = alerts
        self.chat_rules = list(chat_rules) if alerts is not None else []
        self.bot_ids: set[str] = set()  # Baton's own user and bot ids (auth.test)
        self.engine = commands.engine
        self.outbox = Outbox(self.engine.store)
        self._session: aiohttp.ClientSession | None = None
        self._socket: Any = None
        self.cards: Cards | None = None
        self.app: AsyncApp | None = None
        self._work: set[asyncio.Task[Any]] = set()

    def later(self, work: Coroutine[Any, Any, Any], answer: Answer | None = None) -> None:
        """Carry out a request's work after its acknowledgement, in a task this front end
        tracks (and waits for, briefly, when Baton stops). A request seen before does
        nothing (``middleware``). A failure is logged, and the asker is told through
        ``answer`` that something went wrong."""
        task = asyncio.create_task(self._logged(work, answer, middleware.current()))
        self._work.add(task)
        task.add_done_callback(self._work.discard)

    async def _logged(
        self,
        work: Coroutine[Any, Any, Any],
        answer: Answer | None,
        once: middleware.Once | None,
    ) -> None:
        """The work, unless the request is a repeat (a retried event, a replay)."""
        try:
            if once is None or await once.first():
                await work
        except Exception:
            log.exception("a Slack request failed after its acknowledgement")
            if answer is not None:
                await self.sorry(answer)
        finally:
            work.close()  # a repeat's work never started (nor a failed check's)

    async def sorry(self, answer: Answer) -> None:
        """Tell the asker their request failed; when even that fails, the log says so."""
        try:
            await answer(middleware.SORRY, blocks.reply_blocks([middleware.SORRY], ok=False))
        except Exception as exc:
            log.warning("could not tell the asker that their request failed: %r", exc)

    def teller(self, where: Where) -> Answer:
        """An ``answer`` that tells ``where``'s user alone (``tell``)."""

        async def answer(text: str, body: list[dict[str, Any]]) -> None:
            await self.tell(where, text, body)

        return answer

    async def idle(self) -> None:
        """Wait until the work of every request received so far is done."""
        while self._work:
            await asyncio.wait(set(self._work))

    @property
    def http_enabled(self) -> bool:
        return self.settings.slack_signing_secret is not None

    async def __aenter__(self) -> SlackFront:
        try:
            return await self._open()
        except BaseException:
            await self.__aexit__(None, None, None)
            raise

    async def _check_tokens(self) -> None:
        """A wrong token stops Baton at start with what to do; Slack being unreachable
        does not (calls are retried, Socket Mode reconnects)."""
        which = "SLACK_BOT_TOKEN"
        hint = "the Bot User OAuth Token (xoxb-...), from OAuth & Permissions"
        try:
            me = await self.client.auth_test()
            self.bot_ids = {str(me.get("user_id") or ""), str(me.get("bot_id") or "")} - {""}
            if self.settings.slack_app_token is not None:
                which = "SLACK_APP_TOKEN"
                hint = "an app-level token (xapp-...) with connections:write (Basic Information)"
                token = self.settings.slack_app_token.get_secret_value()
                await self.client.apps_connections_open(app_token=token)
        except SlackApiError as exc:
            error = exc.response.get("error")
            raise BatonError(f"Slack refused {which} ({error}): set it to {hint}") from None
        except (aiohttp.ClientError, OSError) as exc:
            log.warning("cannot reach Slack (%s); going on, Slack calls are retried", exc)

    async def _open(self) -> SlackFront:
        self._session = aiohttp.ClientSession()
        self.client = make_client(self.settings, self._session, self.on_api_error)
        self.directory = Directory(self.client)
        check = self.engine.approver_check
        if isinstance(check, ApproverCheck):  # approvers named by Slack user group
            check.groups_of = self.directory.groups_of
        self.app = create_app(self)
        self.cards = Cards(
            engine=self.engine,
            client=self.client,
            outbox=self.outbox,
            directory=self.directory,
            options=CardOptions(
                interval=self.settings.slack_card_interval,
                runs_channel=self.settings.slack_runs_channel,
                oncall_channel=self.settings.slack_oncall_channel,
                approvals_channel=self.settings.slack_approvals_channel,
                groups=self.commands.rules.groups,
            ),
        )
        await self._check_tokens()
        await self.cards.start()
        if self.settings.slack_app_token is not None:
            from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler

            self._socket = AsyncSocketModeHandler(
                self.app,
                self.settings.slack_app_token.get_secret_value(),
                web_client=self.client,
            )
            await self._socket.connect_async()
            log.info("Slack: connected in Socket Mode")
        if self.http_enabled:
            log.info("Slack: HTTP mode at POST /slack/events")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._work:
            _, late = await asyncio.wait(set(self._work), timeout=5.0)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        if self._socket is not None:
            with contextlib.suppress(Exception):
                await self._socket.close_async()
        if self.cards is not None:
            await self.cards.stop()
        if self._session is not None:
            await self._session.close()

    async def handle_http(self, request: web.Request) -> web.Response:
        """``POST /slack/events``: the signature is verified before the body is parsed
        (``bot.slack.http``: 401 when it is bad or stale, 400 for a body that does not
        parse), then bolt dispatches; the response leaves as soon as the listener acks."""
        assert self.app is not None
        verified = await slack_http.bolt_request(request, self.settings)
        if isinstance(verified, web.Response):
            return verified
        bolt_request = _form_fixed(verified)
        bolt_response = await self.app.async_dispatch(bolt_request)
        return await to_aiohttp_response(bolt_response)

    async def chat_alert(self, event: dict[str, Any]) -> None:
        """A message in a watched channel that a rule reads as an alert: routed like a
        webhook's (stored, then matched to playbooks)."""
        from bot.alerts import parsers

        assert self.alerts is not None
        channel = event.get("channel") or ""
        text = event.get("text") or ""
        if not text and event.get("attachments"):  # many alerting bots post attachments
            text = "\n".join(
                str(a.get("fallback") or a.get("text") or "") for a in event["attachments"]
            )
        name = await self.directory.channel_name(channel)
        parsed = parsers.storable_only(
            parsers.chat(plain(text), channel, self.chat_rules, channel_name=name)
        )
        if parsed.alerts or parsed.rejected:
            await self.alerts.receive(parsed.alerts, parsed.rejected)

    # --- who and where ---------------------------------------------------------------

    async def actor(self, user: str, name: str = "") -> Actor:
        groups: frozenset[str] = frozenset()
        if self.commands.rules.names_usergroups():
            groups = await self.directory.groups_of(user)
        return Actor(id=user, name=name, via=Trigger.SLACK, usergroups=groups)

    async def channel_name(self, channel: str | None, given: str | None = None) -> str | None:
        if given or channel is None or channel.startswith("D"):
            return given
        return await self.directory.channel_name(channel)

    # --- answering -------------------------------------------------------------------

    async def run_command(
        self,
        actor: Actor,
        text: str,
        where: Where,
        answer: Any,
        trigger_id: str | None = None,
        quiet: bool = False,
    ) -> Reply:
        """One line of chat, answered with ``answer(text, blocks)``; a run's card is its
        answer, and missing params open the run form. ``quiet``: answer only a refusal
        or a mistake (a button's message shows the rest)."""
        reply = await self.commands.handle(actor, text, where.source())
        form = reply.data.get("form")
        if form is not None:
            if trigger_id and await self.open_form(trigger_id, form, where):
                return reply
            value = json.dumps({"playbook": form["playbook"], "given": form["given"]})
            if len(value) > 2000:  # a button's value holds 2,000 characters: ask afresh
                value = json.dumps({"playbook": form["playbook"], "given": {}})
            body = [
                *blocks.reply_blocks(reply.lines, ok=True),
                {
                    "type": "actions",
                    "elements": [
                        blocks.button("Fill in the params", blocks.OPEN_FORM, value, "primary")
                    ],
                },
            ]
            await answer(blocks.escape(reply.text), body)
            return reply
        if reply.data.get("started") or (quiet and reply.ok):
            return reply  # the run card (or the message clicked) shows it
        decision = reply.data.get("refusal")
        if decision is not None:  # said with mentions of who may
            text = blocks.refusal(decision)
            await answer(text, blocks.reply_blocks([text], ok=False, escaped=True))
            return reply
        logs = reply.data.get("logs")
        if logs is not None and len(logs) > LOGS_INLINE:
            await self._long_logs(reply, logs, where, answer)
            return reply
        shown = blocks.reply_blocks(reply.lines, reply.ok, table_at=reply.table_at)
        await answer(blocks.escape(reply.text), shown)
        return reply

    async def _long_logs(self, reply: Reply, logs: str, where: Where, answer: Any) -> None:
        """Logs too long for a message: their last lines, and the whole text as a file in
        the same place (never cut silently)."""
        tail = reply.lines[-LOGS_TAIL_LINES:]
        head = f"{reply.lines[0]}: the last {len(tail)} of {len(reply.lines)} lines"
        text = blocks.escape(head)
        body = blocks.reply_blocks([head, *tail, "(the whole log is attached as a file)"])
        await answer(text, body)
        if where.channel is None:
            return
        await self.client.files_upload_v2(
            channel=where.channel,
            thread_ts=where.thread_ts,
            content=logs,
            filename=f"run-{reply.run_id}-logs.txt",
            title=f"logs of run {reply.run_id}",
        )

    async def open_form(self, trigger_id: str, form: dict[str, Any], where: Where) -> bool:
        """Open the run form; False when Slack refuses (an expired trigger, say)."""
        playbook = self.engine.catalog.get(form["playbook"])
        metadata = {
            "playbook": playbook.name,
            "given": form.get("given") or {},
            "where": where.source(),
        }
        view = blocks.run_form(playbook, form.get("given") or {}, metadata)
        try:
            await self.client.views_open(trigger_id=trigger_id, view=view)
        except SlackApiError as exc:
            log.warning("cannot open the run form: %s", exc.response.get("error"))
            return False
        return True

    async def tell(self, where: Where, text: str, body: list[dict[str, Any]]) -> None:
        """An answer only the asker sees, in the channel (or a DM when that fails)."""
        try:
            if where.channel and not where.channel.startswith("D"):
                await self.client.chat_postEphemeral(
                    channel=where.channel, user=where.user, text=text, blocks=body,
                    thread_ts=where.thread_ts,
                )  # fmt: skip
            else:
                await self.client.chat_postMessage(
                    channel=where.channel or where.user, text=text, blocks=body
                )
        except SlackApiError as exc:
            log.info("ephemeral answer failed (%s); sending a DM", exc.response.get("error"))
            await self.client.chat_postMessage(channel=where.user, text=text, blocks=body)


class _NoTokenNoise(logging.Filter):
    """Bolt warns that SLACK_BOT_TOKEN is unused when given a client: it is the client's."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "token will be unused" not in record.getMessage()


def _form_fixed(req: AsyncBoltRequest) -> AsyncBoltRequest:
    """Work around bolt 1.30 reading any form body that merely *contains* the word
    "payload" as an interaction and losing it (``/baton run x payload=y`` became ``{}``):
    a form without a ``payload`` field is read as the plain form it is."""
    if req.body or "payload" not in req.raw_body or req.raw_body.startswith("{"):
        return req
    fields = dict(parse_qsl(req.raw_body, keep_blank_values=True))
    if "payload" in fields:
        return req
    req.body = fields
    req.context = build_async_context(AsyncBoltContext({}), fields)
    return req


def create_app(front: SlackFront) -> AsyncApp:
    """The bolt app, its middleware and listeners; nothing at import time."""
    settings = front.settings
    secret = settings.slack_signing_secret
    bolt_log = logging.getLogger("baton.slack.bolt")
    if not any(isinstance(f, _NoTokenNoise) for f in bolt_log.filters):
        bolt_log.addFilter(_NoTokenNoise())
    app = AsyncApp(
        client=front.client,
        signing_secret=secret.get_secret_value() if secret else "",
        request_verification_enabled=secret is not None,
        # Listeners ack and hand their work to `front.later`, so the response leaves at
        # once; bolt's own way (False) polls for the ack every 10 ms.
        process_before_response=True,
        logger=bolt_log,
    )

    middleware.register(app, front)
    command_listeners.register(app, front)
    actions.register(app, front)
    views.register(app, front)
    return app
