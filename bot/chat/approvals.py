"""``approve`` and ``reject``, and the approvals a run waits on as ``status`` shows them."""

from __future__ import annotations

from typing import Any

from bot.chat.replies import Reply, when
from bot.grammar import Decide
from engine.access.rules import Actor
from engine.runs.engine import Engine
from engine.views import queries
from storage.store import Store


async def decide(engine: Engine, actor: Actor, command: Decide) -> Reply:
    result = await engine.decide(command.approval_id, actor.id, command.decision, command.comment)
    run_id = await queries.approval_run(engine.store, command.approval_id)
    lines = [result.message]
    if result.recorded and result.status == "pending":
        lines.append(f"approval {command.approval_id} still needs more approvals")
    elif result.recorded:
        lines.append(f"approval {command.approval_id} is {result.status}; run {run_id} goes on")
    return Reply(
        lines,
        ok=result.recorded,
        run_id=run_id,
        follow=result.recorded,
        data={"approval_id": command.approval_id, "status": result.status},
    )


async def pending(store: Store, run_id: str) -> tuple[list[dict[str, Any]], list[str]]:
    """The approvals ``run_id`` waits on, and lines saying each one's state and how to
    decide it."""
    approvals = await queries.pending_approvals(store, run_id)
    lines = []
    for gate in approvals:
        lines.append(
            f"waiting for approval {gate['id']} on step {gate['step_id']}: "
            f"{gate['message']} (approvers: {gate['approvers']}) "
            f"- `approve {gate['id']}` or `reject {gate['id']} REASON`"
        )
        view = await queries.approval_view(store, gate["id"])
        spec = view["spec"]
        state = f"  {len([d for d in view['decisions'] if d['decision'] == 'approve'])}"
        state += f" of {spec.get('min_approvals', 1)} approvals"
        if view["deadline_at"]:
            state += f", until {when(view['deadline_at'])} UTC then {spec.get('on_timeout')}"
        if spec.get("stage"):
            state += " (escalated)"
        lines.append(state)
        lines += [
            f"    {d['user']} {d['decision']}d" + (f": {d['comment']}" if d["comment"] else "")
            for d in view["decisions"]
        ]
    return approvals, lines
