"""The README's examples are real: its playbook validates, its config files load."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from bot.alerts import chat
from bot.settings import describe_settings
from engine import validate
from engine.access import AccessRules
from engine.actions.registry import Registry
from engine.playbook import ParamType

README = (Path(__file__).parent.parent.parent / "README.md").read_text()
BLOCKS = re.findall(r"```yaml\n(.*?)```", README, flags=re.S)


def test_the_playbook_reference_example_validates(tmp_path: Path) -> None:
    (example,) = [b for b in BLOCKS if b.startswith("name: restart-api")]
    path = tmp_path / "restart-api.yaml"
    path.write_text(example)
    playbooks, problems = validate.validate_paths([path], Registry.from_entry_points())
    assert problems == [] and len(playbooks) == 1


def test_the_config_examples_load(tmp_path: Path) -> None:
    access = [b for b in BLOCKS if b.startswith("groups:")]
    alerts = [b for b in BLOCKS if b.startswith("alerts:")]
    assert access and alerts
    for text in access:
        assert not AccessRules.parse(text, "README").open
    for text in alerts:
        path = tmp_path / "baton.yaml"
        path.write_text(text)
        rules = chat.load(path)
        assert rules and yaml.safe_load(text)["alerts"]["chat"][0]["channel"] == rules[0].channel


def test_every_setting_is_in_the_settings_table() -> None:
    table = README.split("## Settings", 1)[1].split("\n## ", 1)[0]
    missing = []
    for name, _, _ in describe_settings():
        if (
            f"| `{name}` |" not in table
            and f"`{name}` /" not in table
            and f"/ `{name}`" not in table
        ):
            missing.append(name)
    assert missing == []


def test_every_param_type_is_in_the_params_table() -> None:
    table = README.split("### Params", 1)[1].split("\n### ", 1)[0]
    missing = [kind.value for kind in ParamType if f"| `{kind.value}` |" not in table]
    assert missing == []
