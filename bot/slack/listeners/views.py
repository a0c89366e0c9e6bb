"""The run form's submission: the params are checked before the modal closes (a bad
value is shown under its field), then the run starts as ``run P k=v ...`` would."""

from __future__ import annotations

import json
import logging
import shlex
from typing import Any

from slack_bolt.app.async_app import AsyncApp

from bot.slack import blocks
from bot.slack.contract import Front, Where
from engine.errors import ParamError
from engine.playbooks import params as paramlib

log = logging.getLogger(__name__)


def field_errors(names: list[str], problems: list[str]) -> dict[str, str]:
    """ParamError's problems, each under the field it is about (the first field when a
    problem names none)."""
    out: dict[str, str] = {}
    for problem in problems:
        words = problem.replace(":", " ").replace("(", " ").split()
        name = next((n for n in names if n in words), names[0] if names else None)
        if name is None:
            continue
        key = blocks.param_block_id(name)
        out[key] = blocks.clip(f"{out[key]}; {problem}" if key in out else problem, 2000)
    return out


def register(app: AsyncApp, front: Front) -> None:
    @app.view(blocks.REJECT_FORM)
    async def rejected(ack: Any, body: dict[str, Any], view: dict[str, Any]) -> None:
        meta = json.loads(view.get("private_metadata") or "{}")
        field = view["state"]["values"].get("reason", {}).get("value", {})
        reason = (field.get("value") or "").strip()
        if not reason:
            await ack(response_action="errors", errors={"reason": "say why"})
            return
        await ack()
        line = f"reject {meta['approval_id']} {shlex.quote(reason)}"
        carry_out(body, meta, line, quiet=True)

    def carry_out(body: dict[str, Any], meta: dict[str, Any], line: str, **kw: Any) -> None:
        """A form's command, as its submitter, answered where the form was opened (a
        failure too)."""
        source = meta.get("where") or {}
        user = body["user"]
        where = Where(
            channel=source.get("channel"),
            channel_name=source.get("channel_name"),
            user=user["id"],
            thread_ts=source.get("thread_ts"),
        )
        answer = front.teller(where)

        async def work() -> None:
            actor = await front.actor(user["id"], user.get("username") or user.get("name", ""))
            await front.run_command(actor, line, where, answer, **kw)

        front.later(work(), answer)

    @app.view(blocks.RUN_FORM)
    async def submitted(ack: Any, body: dict[str, Any], view: dict[str, Any]) -> None:
        meta = json.loads(view.get("private_metadata") or "{}")
        name = meta.get("playbook", "")
        if name not in front.engine.catalog:
            await ack()
            log.info("run form for a playbook no longer loaded: %r", name)
            return
        playbook = front.engine.catalog.get(name)
        values = blocks.form_values(playbook, view["state"]["values"])
        try:
            paramlib.coerce(playbook, values)
        except ParamError as exc:
            errors = field_errors(list(playbook.params), exc.errors)
            if errors:
                await ack(response_action="errors", errors=errors)
                return
        await ack()
        line = shlex.join(["run", name, *(f"{k}={v}" for k, v in values.items())])
        carry_out(body, meta, line)
