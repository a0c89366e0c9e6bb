"""The README's Fleets section is true: its inventories (YAML and INI) read to the same
hosts, its playbook validates and renders what it says with them, and `baton hosts web`
prints the table it shows."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.hosts import listing
from engine.actions.registry import Registry
from engine.errors import TemplateError
from engine.fleet import inventory
from engine.playbooks import templating, validate

README = (Path(__file__).parent.parent.parent / "README.md").read_text()
FLEETS = README.split("\n## Fleets\n", 1)[1].split("\n## ", 1)[0]


def block(language: str, starts: str) -> str:
    (found,) = [
        b
        for b in re.findall(rf"```{language}\n(.*?)```", FLEETS, flags=re.S)
        if b.startswith(starts)
    ]
    return str(found)


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[inventory.Inventory]:
    (tmp_path / "inventory").mkdir()
    (tmp_path / "inventory" / "hosts.yml").write_text(block("yaml", "all:"))
    config = tmp_path / "baton.yml"
    config.write_text(block("yaml", "inventory:"))
    loaded = inventory.from_config(config)
    inventory.activate(loaded)
    yield loaded
    inventory.activate(inventory.Inventory())


def test_the_yaml_and_ini_inventories_are_the_same_fleet(
    fleet: inventory.Inventory, tmp_path: Path
) -> None:
    ini = tmp_path / "hosts.ini"
    ini.write_text(block("ini", "[web]"))
    same = inventory.load([ini])
    assert list(same.hosts) == list(fleet.hosts)
    for name, host in fleet.hosts.items():
        assert same.hosts[name] == host
        assert same.groups_of(name) == fleet.groups_of(name)


def test_the_playbook_validates_and_renders_what_the_readme_says(
    fleet: inventory.Inventory, tmp_path: Path
) -> None:
    path = tmp_path / "web-report.yaml"
    path.write_text(block("yaml", "name: web-report"))
    playbooks, problems = validate.validate_paths([path], Registry.from_entry_points())
    assert problems == [] and len(playbooks) == 1
    message = playbooks["web-report"][0].steps[0].with_["message"]
    assert templating.render(message, {}) == (
        "web01.example.com, web02.example.com, web-canary; canary on 10.0.0.9"
    )
    with pytest.raises(TemplateError) as caught:
        templating.render("{{ hosts('webb') }}", {})
    shown = re.search(r"`(no host matches 'webb'[^`]*)`", FLEETS)
    assert shown is not None and str(caught.value).endswith(shown.group(1))


def test_baton_hosts_web_prints_the_table_shown(fleet: inventory.Inventory) -> None:
    shown = block("text", "$ baton hosts web").splitlines()[1:]
    assert listing(fleet, "web").lines == shown
