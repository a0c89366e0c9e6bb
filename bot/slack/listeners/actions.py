"""Buttons: Cancel and Retry on run cards and failure notices, Approve and Reject on
approval prompts, and "Fill in the params".

A click is a command like a typed one (``cancel RUN``, ``retry RUN``), through the same
``Commands`` — access rules, audit row and all. The card shows the result; a refusal or
a mistake goes to the clicker alone.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Coroutine
from typing import Any

from slack_bolt.app.async_app import AsyncApp
from slack_sdk.errors import SlackApiError

from bot.slack import blocks
from bot.slack.contract import Front, Where
from engine.errors import BatonError


def _where(body: dict[str, Any]) -> Where:
    channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get(
        "channel_id"
    )
    message = body.get("message") or {}
    return Where(
        channel=channel,
        channel_name=(body.get("channel") or {}).get("name"),
        user=body["user"]["id"],
        thread_ts=message.get("thread_ts"),
    )


def register(app: AsyncApp, front: Front) -> None:
    def later(work: Callable[[Any, Where], Coroutine[Any, Any, None]], body: Any) -> None:
        """The click's work after the ack; a failure of it is told to the clicker."""
        where = _where(body)
        front.later(work(body, where), front.teller(where))

    async def click(verb: str, body: dict[str, Any], where: Where, quiet: bool = False) -> None:
        """``quiet``: the message the button is on shows the outcome; only a refusal or a
        mistake is told to the clicker."""
        action = body["actions"][0]
        user = body["user"]
        actor = await front.actor(user["id"], user.get("username") or user.get("name", ""))
        line = f"{verb} {action['value']}"
        await front.run_command(actor, line, where, front.teller(where), quiet=quiet)

    @app.action(blocks.CANCEL)
    async def cancel(ack: Any, body: dict[str, Any]) -> None:
        await ack()
        later(functools.partial(click, "cancel"), body)

    @app.action(blocks.RETRY)
    async def retry(ack: Any, body: dict[str, Any]) -> None:
        await ack()
        later(functools.partial(click, "retry"), body)

    @app.action(blocks.APPROVE)
    async def approve(ack: Any, body: dict[str, Any]) -> None:
        await ack()
        later(functools.partial(click, "approve", quiet=True), body)

    @app.action(blocks.REJECT)
    async def reject(ack: Any, body: dict[str, Any]) -> None:
        await ack()
        later(reject_work, body)

    async def reject_work(body: dict[str, Any], where: Where) -> None:
        """Ask for the reason in a form, unless the clicker may not decide anyway."""
        approval_id = body["actions"][0]["value"]
        try:
            problem = await front.engine.may_decide(approval_id, where.user)
        except BatonError as exc:
            problem = str(exc)
        if problem is not None:
            await front.tell(where, problem, blocks.reply_blocks([problem], ok=False))
            return
        form = blocks.reject_form(approval_id, {"where": where.source()})
        try:
            await front.client.views_open(trigger_id=body["trigger_id"], view=form)
        except SlackApiError:
            hint = f"Slack would not open the form: say `reject {approval_id} REASON`."
            await front.tell(where, hint, blocks.reply_blocks([hint], ok=False))

    @app.action(blocks.OPEN_FORM)
    async def open_form(ack: Any, body: dict[str, Any]) -> None:
        await ack()
        later(open_form_work, body)

    async def open_form_work(body: dict[str, Any], where: Where) -> None:
        form = json.loads(body["actions"][0]["value"])
        if form.get("playbook") not in front.engine.catalog:
            await front.tell(where, "That playbook is gone; `playbooks` lists them.", [])
            return
        if not await front.open_form(body["trigger_id"], form, where):
            await front.tell(where, "Slack would not open the form; try the command again.", [])
