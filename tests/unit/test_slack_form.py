"""The run form's fields for list params, and its values read back as chat would type them."""

from __future__ import annotations

from typing import Any

from bot.slack import blocks
from engine.playbooks import params
from engine.playbooks.model import Playbook

PLAYBOOK = Playbook.model_validate(
    {
        "name": "fanout",
        "params": {
            "hosts": {"type": "list", "default": [], "help": "where"},
            "ports": {"type": "list", "items": "int", "default": [80, 443]},
            "sites": {"type": "list", "choices": ["paris, fr", "lyon", "nice"]},
        },
        "steps": [{"id": "a", "action": "log"}],
    }
)


def fields(given: dict[str, str]) -> dict[str, dict[str, Any]]:
    view = blocks.run_form(PLAYBOOK, given, {"playbook": "fanout"})
    return {b["block_id"]: b for b in view["blocks"] if b["type"] == "input"}


def test_a_list_is_a_text_field_with_its_items_typed_with_commas() -> None:
    shown = fields({})
    hosts = shown["param:hosts"]
    assert hosts["element"]["type"] == "plain_text_input"
    assert "initial_value" not in hosts["element"], "an empty default shows an empty field"
    assert hosts["hint"]["text"] == "where (separate items with commas: a,b,c)"
    assert shown["param:ports"]["element"]["initial_value"] == "80,443"
    assert fields({"ports": "22, 23"})["param:ports"]["element"]["initial_value"] == "22, 23"


def test_a_list_with_choices_is_a_multi_select_read_back_as_a_list() -> None:
    sites = fields({"sites": "lyon,nice"})["param:sites"]["element"]
    assert sites["type"] == "multi_static_select"
    assert [o["value"] for o in sites["initial_options"]] == ["lyon", "nice"]
    picked = [{"value": "paris, fr"}, {"value": "nice"}]
    state = {"param:sites": {"value": {"type": "multi_static_select", "selected_options": picked}}}
    typed = blocks.form_values(PLAYBOOK, state)
    assert typed == {"sites": '["paris, fr", "nice"]'}
    assert params.coerce(PLAYBOOK, typed)["sites"] == ["paris, fr", "nice"]
