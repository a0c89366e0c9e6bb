"""The run form: a modal built from a playbook's params, and the values read back."""

from __future__ import annotations

import json
from typing import Any

from bot.slack.blocks.kit import (
    MAX_BUTTON,
    MAX_METADATA,
    MAX_MODAL_BLOCKS,
    MAX_OPTIONS,
    RUN_FORM,
    clip,
    escape,
    fit,
    section,
)
from engine.playbooks import params as paramlib
from engine.playbooks.model import ParamType, Playbook


def _option(value: Any) -> dict[str, Any]:
    text = str(value).lower() if isinstance(value, bool) else str(value)
    return {"text": {"type": "plain_text", "text": clip(text, MAX_BUTTON)}, "value": text[:150]}


def _initial_items(spec: paramlib.Param, initial: Any) -> list[Any]:
    try:
        return list(paramlib.coerce_value("value", spec, initial)) if initial is not None else []
    except ValueError:
        return []


def _element(spec: paramlib.Param, given: Any) -> dict[str, Any]:
    initial = given if given not in (None, "") else spec.default
    if spec.type is ParamType.LIST and spec.choices:
        options = [_option(c) for c in spec.choices][:MAX_OPTIONS]
        element: dict[str, Any] = {"type": "multi_static_select", "options": options}
        picked = {_option(c)["value"] for c in _initial_items(spec, initial)}
        chosen = [o for o in options if o["value"] in picked]
        if chosen:
            element["initial_options"] = chosen
        return element
    if spec.type is ParamType.CHOICE:
        options = [_option(c) for c in (spec.choices or [])][:MAX_OPTIONS]
        element = {"type": "static_select", "options": options}
        chosen = [o for o in options if initial is not None and o["value"] == str(initial)]
        if chosen:
            element["initial_option"] = chosen[0]
        return element
    if spec.type is ParamType.BOOL:
        yes = {"text": {"type": "plain_text", "text": "yes"}, "value": "true"}
        element = {"type": "checkboxes", "options": [yes]}
        if str(initial).lower() in ("true", "yes", "1", "on"):
            element["initial_options"] = [yes]
        return element
    if spec.type in (ParamType.INT, ParamType.FLOAT):
        element = {"type": "number_input", "is_decimal_allowed": spec.type is ParamType.FLOAT}
        if spec.min is not None:
            element["min_value"] = str(spec.min if spec.type is ParamType.FLOAT else int(spec.min))
        if spec.max is not None:
            element["max_value"] = str(spec.max if spec.type is ParamType.FLOAT else int(spec.max))
        if initial is not None:
            element["initial_value"] = str(initial)
        return element
    element = {"type": "plain_text_input"}
    if initial not in (None, []) and spec.type is not ParamType.SECRET:
        element["initial_value"] = paramlib.text(initial)[:3000]
    return element


def param_block_id(name: str) -> str:
    return f"param:{name}"


def run_form(playbook: Playbook, given: dict[str, str], metadata: dict[str, Any]) -> dict:
    """The modal that asks for a playbook's params: choices as selects, booleans as
    checkboxes, numbers as number inputs, secrets as text never shown back (Slack has no
    masked input; the value is stored encrypted and shown as ***), lists as text with
    commas between items (a list with choices as a multi-select)."""
    blocks: list[dict[str, Any]] = []
    if playbook.description:
        blocks.append(section(escape(playbook.description.strip())))
    for name, spec in playbook.params.items():
        block: dict[str, Any] = {
            "type": "input",
            "block_id": param_block_id(name),
            "label": {"type": "plain_text", "text": clip(name, 2000)},
            "optional": not spec.required or spec.type is ParamType.BOOL,
            "element": {**_element(spec, given.get(name)), "action_id": "value"},
        }
        hint = spec.help
        if spec.type is ParamType.SECRET:
            hint = (hint + " " if hint else "") + "(secret: stored encrypted, shown as ***)"
        if spec.type is ParamType.LIST and not spec.choices:
            hint = (hint + " " if hint else "") + "(separate items with commas: a,b,c)"
        if spec.pattern:
            hint = (hint + " " if hint else "") + f"(pattern {spec.pattern})"
        if hint:
            block["hint"] = {"type": "plain_text", "text": clip(hint, 2000)}
        blocks.append(block)
    blocks = fit(blocks, MAX_MODAL_BLOCKS, lambda n: f"… {n} more params: use `run` with k=v")
    raw = json.dumps(metadata, separators=(",", ":"))
    if len(raw) > MAX_METADATA:  # given values are a convenience; drop them before failing
        raw = json.dumps({**metadata, "given": {}}, separators=(",", ":"))
    return {
        "type": "modal",
        "callback_id": RUN_FORM,
        "title": {"type": "plain_text", "text": clip(f"Run {playbook.name}", 24)},
        "submit": {"type": "plain_text", "text": "Run"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "private_metadata": raw,
        "blocks": blocks,
    }


def form_values(playbook: Playbook, state: dict[str, Any]) -> dict[str, str]:
    """The submitted modal's values as ``key=value`` strings, as typed in chat."""
    out: dict[str, str] = {}
    for name, spec in playbook.params.items():
        field = (state.get(param_block_id(name)) or {}).get("value") or {}
        kind = field.get("type")
        if kind == "checkboxes":
            out[name] = "true" if field.get("selected_options") else "false"
        elif kind == "static_select":
            option = field.get("selected_option")
            if option:
                out[name] = str(option["value"])
        elif kind == "multi_static_select":
            picked = [str(o["value"]) for o in field.get("selected_options") or []]
            if picked:
                out[name] = paramlib.text(picked)
        else:
            value = field.get("value")
            if value not in (None, ""):
                out[name] = str(value)
        if spec.type is ParamType.BOOL and name not in out:
            out[name] = "false"
    return out
