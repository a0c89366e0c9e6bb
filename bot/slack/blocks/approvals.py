"""Approval prompts (who asked, what is shown, the buttons) and the reject form."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from bot.slack.blocks.kit import (
    MAX_BLOCKS,
    MAX_METADATA,
    button,
    code,
    context,
    escape,
    fit,
    section,
)
from bot.slack.blocks.runs import params_text, who

APPROVE = "baton_approve"
REJECT = "baton_reject"
REJECT_FORM = "baton_reject_form"

GATE_EMOJI = {
    "approved": ":white_check_mark:",
    "rejected": ":x:",
    "timed_out": ":alarm_clock:",
    "cancelled": ":no_entry_sign:",
}


def when(iso: str | None) -> str:
    """A time as Slack shows it in each reader's own time zone."""
    if not iso:
        return ""
    moment = datetime.fromisoformat(iso)
    return f"<!date^{int(moment.timestamp())}^{{date_short_pretty}} {{time}}|{iso[:16]} UTC>"


def _shown_context(show: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for key, value in show.items():
        text = value if isinstance(value, str) else json.dumps(value, indent=2, default=str)
        body, cut = code(text, 1500)
        note = " (the end)" if cut else ""
        out.append(section(f"*{escape(str(key))}*{note}\n{body}"))
    return out


def approval_prompt(
    gate: dict[str, Any], approvers: str, now: datetime
) -> tuple[str, list[dict[str, Any]]]:
    """The prompt of an approval gate: who asked, for what, with which context, who may
    decide and until when; the decisions so far; Approve / Reject while it is open."""
    spec = gate["spec"]
    status = gate["status"]
    head = (
        f":raised_hand: *Approval needed* · `{escape(gate['playbook'])}` run `{gate['run_id']}`"
        f" · step `{escape(gate['step_id'])}` · approval `{gate['id']}`"
    )
    asked = spec.get("message") or "Approval needed to continue."
    body: list[dict[str, Any]] = [section(head), section(escape(asked))]
    facts = [f"asked by {who(gate['requested_by'], 'slack')}"]
    params = params_text(gate.get("params") or {})
    if params:
        facts.append(f"params: {params}")
    quorum = int(spec.get("min_approvals") or 1)
    facts.append(f"needs {quorum} approval{'s' if quorum > 1 else ''}")
    if gate.get("deadline_at") and status == "pending":
        then = spec.get("on_timeout", "reject")
        facts.append(f"decide by {when(gate['deadline_at'])} (then: {then})")
    body.append(context(*facts))
    body.append(context(f"approvers: {approvers}"))
    if spec.get("stage"):
        body.append(context(":arrow_up: escalated: more approvers were asked"))
    body += _shown_context(spec.get("show") or {})[:10]
    for d in gate["decisions"]:
        mark = ":white_check_mark:" if d["decision"] == "approve" else ":x:"
        said = f": {escape(d['comment'])}" if d["comment"] else ""
        body.append(context(f"{mark} <@{d['user']}> {d['decision']}d {when(d['at'])}{said}"))
    if status == "pending":
        body.append(
            {
                "type": "actions",
                "block_id": f"gate:{gate['id']}",
                "elements": [
                    button("Approve", APPROVE, gate["id"], "primary"),
                    button("Reject", REJECT, gate["id"], "danger"),
                ],
            }
        )
    else:
        reason = gate.get("reason") or ""
        shown = status.replace("_", " ")
        closed = f"{GATE_EMOJI.get(status, '')} *{shown}*"
        if reason and reason != shown:
            closed += f" · {escape(reason)}"
        body.append(section(closed))
    body = fit(body, MAX_BLOCKS, lambda n: f"… {n} more parts: `status {gate['run_id']}`")
    text = f"approval {gate['id']} for {gate['playbook']} ({gate['step_id']}): {status}"
    return text, body


def reject_form(approval_id: str, metadata: dict[str, Any]) -> dict[str, Any]:
    """The modal that asks a rejecter for the reason (the run's failure says it)."""
    return {
        "type": "modal",
        "callback_id": REJECT_FORM,
        "title": {"type": "plain_text", "text": "Reject"},
        "submit": {"type": "plain_text", "text": "Reject"},
        "close": {"type": "plain_text", "text": "Back"},
        "private_metadata": json.dumps({**metadata, "approval_id": approval_id})[:MAX_METADATA],
        "blocks": [
            section(f"Reject approval `{approval_id}`: the step fails with your reason."),
            {
                "type": "input",
                "block_id": "reason",
                "label": {"type": "plain_text", "text": "Reason"},
                "element": {
                    "type": "plain_text_input",
                    "action_id": "value",
                    "multiline": True,
                    "max_length": 2000,
                },
            },
        ],
    }
