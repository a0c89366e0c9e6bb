"""``GET /playbooks``: each playbook with its description, params and a form to start a
run; ``POST /playbooks/{name}/run`` starts it (or, with the "Dry run" button, shows the
plan ``run P --dry-run`` prints) through the chat command ``run P k=v ...``, so the params
are checked exactly as in chat and the API. A bad param re-renders the form with the
message and the values given (secrets are asked again), and starts nothing; that answer
shows the one playbook's form, so the message is in sight, not below the others."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from bot.dashboard import actions, forms
from bot.dashboard.render import baton_of, page
from engine.playbooks import params as paramlib
from engine.playbooks import paramsecrets
from engine.playbooks.model import Playbook

FIELD = "param-"  # a param's form field: param-NAME (no clash with csrf or dry_run)


def described(playbook: Playbook) -> list[dict[str, Any]]:
    """A playbook's params as its form shows them: kind, default, choices, help."""
    lines = dict(zip(playbook.params, paramlib.describe(playbook), strict=True))
    secrets = paramsecrets.secret_names(playbook)
    out = []
    for name, spec in playbook.params.items():
        secret = name in secrets
        default = spec.default if spec.default is not None and not secret else None
        out.append(
            {
                "name": name,
                "type": str(spec.type),
                "required": spec.required,
                "default": paramlib.text(default) if default is not None else "",
                "choices": [paramlib.text(c) for c in spec.choices or []],
                "secret": secret,
                "help": spec.help,
                "line": lines[name],
                "example": paramlib.example(spec) if str(spec.type) == "list" else "",
            }
        )
    return out


def _cards(request: web.Request) -> list[dict[str, Any]]:
    catalog = baton_of(request).engine.catalog
    return [
        {
            "name": pb.name,
            "description": (pb.description or "").strip(),
            "params": described(pb),
            "steps": [s.id for s in pb.steps],
        }
        for pb in catalog
    ]


async def playbooks(request: web.Request) -> web.Response:
    return page(
        request, "playbooks.html", cards=_cards(request), given={}, chosen="", plan=None, said=None
    )


def _given(form: Any) -> dict[str, str]:
    """The params typed in the form (left empty: the default applies)."""
    values = {
        key[len(FIELD) :]: str(value).strip()
        for key, value in form.items()
        if key.startswith(FIELD)
    }
    return {k: v for k, v in values.items() if v != ""}


async def start(request: web.Request) -> web.StreamResponse:
    refused = await actions.viewer_refused(request)
    if refused is not None:
        return refused
    name = request.match_info["name"]
    form = await forms.posted(request, baton_of(request).settings.read_timeout)
    catalog = baton_of(request).engine.catalog
    playbook = catalog.get(name) if name in catalog else None
    given = _given(form)
    dry_run = bool(form.get("dry_run"))
    words = ["run", name, *(f"{k}={v}" for k, v in given.items())]
    reply = await actions.carry_out(request, [*words, *(["--dry-run"] if dry_run else [])])
    started = reply.data.get("started")
    if reply.ok and started:
        raise web.HTTPSeeOther(f"/runs/{started}")
    secrets = paramsecrets.secret_names(playbook) if playbook is not None else set()
    kept = {k: v for k, v in given.items() if k not in secrets}  # a secret is asked again
    cards = [card for card in _cards(request) if card["name"] == name]  # its form alone
    return page(
        request,
        "playbooks.html",
        status=actions.status_of(reply),
        cards=cards or _cards(request),
        given=kept,
        chosen=name,
        plan=reply.text if reply.ok else None,
        said=None if reply.ok else reply.text,  # shown by the playbook's form
        # a playbook gone since the form was drawn (a reload): the message goes on top
        error=None if cards or reply.ok else reply.text,
    )
