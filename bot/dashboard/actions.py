"""The dashboard's buttons: every one becomes the chat command it stands for (``cancel
RUN``, ``retry RUN``, ``approve ID``, ``reject ID REASON``, ``run P k=v``) and is carried
out by ``bot.commands.Commands`` as the person logged in, so roles, the access rules,
approvers, quorum and self-approval apply exactly as in chat, and each leaves the same
audit row. A viewer's POST is refused (403) before anything happens."""

from __future__ import annotations

import shlex
from typing import Any

from aiohttp import web

from bot import api_kit
from bot.commands import Reply
from bot.dashboard import auth, forms
from bot.dashboard.render import baton_of, page
from bot.dashboard.run import run_page
from engine.access.rules import Actor
from engine.runs.requests import Trigger

VIA = Trigger.WEB
RUN_COMMANDS = {
    "cancel": ["cancel", "{run}"],
    "retry": ["retry", "{run}"],
    "retry-failed": ["retry", "{run}", "--from-failed"],  # engine op: `retry RUN --from-failed`
}


def actor_of(request: web.Request) -> Actor:
    person = auth.who(request)
    return Actor(id=person.name, name=person.name, via=VIA)


def where_of(request: web.Request) -> dict[str, Any]:
    """Where a command comes from, for the access rules and the audit trail."""
    return {"front_end": VIA, "user": auth.who(request).name, "remote": request.remote or ""}


async def carry_out(request: web.Request, words: list[str]) -> Reply:
    """The chat command ``words`` (joined as chat would read them), as the person logged
    in."""
    baton = baton_of(request)
    return await baton.commands().handle(actor_of(request), shlex.join(words), where_of(request))


def status_of(reply: Reply) -> int:
    """200 for done, else the API's status for the same failure: 403 for a refusal
    (role, access rules, approvers), 404 for what does not exist (a run, an approval, a
    schedule, a playbook), 409 for what the run's state does not allow now, 400 for the
    rest (``bot.api_kit.STATUS``)."""
    if reply.ok:
        return 200
    if reply.data.get("refused"):
        return 403
    return api_kit.STATUS[reply.data.get("failure", "invalid")]


async def viewer_refused(request: web.Request) -> web.Response | None:
    """The 403 page for a viewer's POST (the page shows them no button either); the
    refusal is audited as ``web:POST`` with the path, as the API audits its refusals."""
    person = auth.who(request)
    if person.can_act:
        return None
    engine = baton_of(request).engine
    await engine.audit(person.name, "web:POST", request.path, {}, "refused", where_of(request))
    return page(
        request,
        "result.html",
        status=403,
        error=f"{person.name} is a viewer: viewers may look but not act. "
        "Ask an admin for the operator role.",
        back="/",
    )


def back_of(raw: Any, default: str) -> str:
    """Where to go after a decision: a path of this site only (no open redirect; ``/\\x``
    is ``//x`` to a browser)."""
    text = str(raw or "")
    return text if auth.local_path(text) == text else default


async def run_action(request: web.Request) -> web.StreamResponse:
    """``POST /runs/{id}/{cancel|retry|retry-failed}``."""
    refused = await viewer_refused(request)
    if refused is not None:
        return refused
    run_id = request.match_info["run_id"]
    words = [w.format(run=run_id) for w in RUN_COMMANDS[request.match_info["action"]]]
    reply = await carry_out(request, words)
    if reply.ok:
        raise web.HTTPSeeOther(f"/runs/{run_id}")
    return await run_page(request, error=reply.text, status=status_of(reply))


async def decide(request: web.Request) -> web.StreamResponse:
    """``POST /approvals/{id}/{approve|reject}`` with ``reason`` (required to reject) or
    ``comment`` (optional, to approve): the decision's comment, as chat's ``approve ID
    [comment]`` and ``reject ID REASON`` give it."""
    refused = await viewer_refused(request)
    if refused is not None:
        return refused
    form = await forms.posted(request, baton_of(request).settings.read_timeout)
    approval_id = request.match_info["approval_id"]
    decision = request.match_info["decision"]
    said = "reason" if decision == "reject" else "comment"
    reason = str(form.get(said) or "").strip()
    back = back_of(form.get("back"), "/approvals")
    if decision == "reject" and not reason:
        return page(
            request,
            "result.html",
            status=400,
            error=f"Say why you reject {approval_id}: the reason is required.",
            back=back,
        )
    reply = await carry_out(request, [decision, approval_id, *([reason] if reason else [])])
    if reply.ok:
        raise web.HTTPSeeOther(back)
    return page(request, "result.html", status=status_of(reply), error=reply.text, back=back)


async def schedule_action(request: web.Request) -> web.StreamResponse:
    """``POST /schedules/{id}/{pause|resume|trigger}``: the chat commands ``pause ID``,
    ``resume ID`` and ``trigger ID``."""
    refused = await viewer_refused(request)
    if refused is not None:
        return refused
    words = [request.match_info["action"], request.match_info["schedule_id"]]
    reply = await carry_out(request, words)
    if reply.ok and reply.run_id:
        raise web.HTTPSeeOther(f"/runs/{reply.run_id}")
    if reply.ok:
        raise web.HTTPSeeOther("/schedules")
    status = status_of(reply)
    return page(request, "result.html", status=status, error=reply.text, back="/schedules")
