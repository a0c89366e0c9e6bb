"""The README's examples are real: its playbook validates, its config files load."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import yaml

from bot.alerts import chat, parsers
from bot.settings import Settings, describe_settings
from engine.access import config as accessconfig
from engine.actions.registry import Registry
from engine.alerts import matchers
from engine.playbooks import sandbox, validate, yamldoc
from engine.playbooks.model import ParamType

ROOT = Path(__file__).parent.parent.parent
README = (ROOT / "README.md").read_text()
LIBRARY = ROOT / "playbooks"
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
        assert not accessconfig.parse(text, "README").open
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


def alertmanager_sample() -> dict[str, Any]:
    """The body of the README's `curl ... /alerts/alertmanager` example."""
    (body,) = re.findall(r"/alerts/alertmanager .*?<<'EOF'\n(.*?)\nEOF\n", README, flags=re.S)
    parsed: dict[str, Any] = json.loads(body)
    return parsed


def test_the_alertmanager_sample_starts_the_playbook_the_readme_names() -> None:
    """A real webhook v4 body: every alert in it parses, and among the shipped playbooks
    the one the README names, and only that one, has a trigger that matches it."""
    body = alertmanager_sample()
    parsed = parsers.alertmanager(body)
    assert parsed.rejected == [] and len(parsed.alerts) == 1
    (alert,) = parsed.alerts
    labels = {**alert.labels, "severity": alert.severity or ""}
    valid, problems = validate.validate_paths([LIBRARY], Registry.from_entry_points())
    assert problems == []
    matched = {
        pb.name
        for pb, _ in valid.values()
        for trig in pb.triggers
        if trig.alert is not None
        and trig.alert.source in (None, "alertmanager")
        and matchers.all_match(trig.alert.all_matchers(), labels)
    }
    assert matched == {"disk-full"}
    said = " ".join(README.split())  # the README's words, whatever its line breaks
    name = alert.labels["alertname"]
    assert (
        f"the shipped `disk-full` playbook has an alert trigger for node_exporter's `{name}`"
        in said
    )


def test_the_file_limits_it_states_are_the_loaders() -> None:
    assert yamldoc.MAX_FILE_BYTES == 1024 * 1024 and "at most 1 MiB" in README
    assert f"at most {yamldoc.MAX_VALUES:,} values" in README


def test_the_template_budget_it_states_is_the_sandboxs() -> None:
    assert Settings.model_fields["template_budget"].default == sandbox.DEFAULT_BUDGET
    assert f"`BATON_TEMPLATE_BUDGET` units of work ({sandbox.DEFAULT_BUDGET:,})" in README
    assert f"at most {sandbox.MAX_SECONDS:g} s of processor time" in README
    assert f"`range()` up to {sandbox.MAX_RANGE:,} items" in README
    assert f"strings of up to {sandbox.MAX_TEXT:,} characters" in README
    assert f"lists of up to {sandbox.MAX_ITEMS:,} items" in README
    assert f"more than {sandbox.ON_LOOP_UNITS:,} units are rendered again" in README


def test_the_mutation_run_it_describes_is_the_configured_one() -> None:
    """``make mutate``: the modules the README names are the ones mutmut changes, and every
    test file it runs them against exists (mutmut would stop on a missing one)."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mutmut"]
    section = README.split("## Development", 1)[1]
    assert [m for m in config["only_mutate"] if f"`{m}`" not in section] == []
    tests = config["pytest_add_cli_args_test_selection"]
    assert [t for t in tests if not (ROOT / t).is_file()] == []
    assert "fails below 90% (`MUTATE_MIN=90`)" in section
    assert "MUTATE_MIN  ?= 90" in (ROOT / "Makefile").read_text()


def test_every_param_type_is_in_the_params_table() -> None:
    table = README.split("### Params", 1)[1].split("\n### ", 1)[0]
    missing = [kind.value for kind in ParamType if f"| `{kind.value}` |" not in table]
    assert missing == []


def test_the_schema_revision_it_shows_is_the_head() -> None:
    from storage import schema

    assert f"`{schema.HEAD} (head)`" in README
