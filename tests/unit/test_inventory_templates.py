"""``hosts()`` and ``hostvars`` inside the template sandbox: what they give, the errors
that name what there is, the budget they count towards, and no way out of the sandbox
through them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.errors import TemplateError
from engine.fleet import inventory
from engine.playbooks import templating

INI = """\
[web]
web[1:3] ansible_user=deploy
[db]
db1 ansible_host=10.0.0.5 ansible_port=5022 role=primary
[prod:children]
web
db
"""
GROUPS = "(groups: web, db, prod, all)"


@pytest.fixture(autouse=True)
def fleet(tmp_path: Path) -> Iterator[inventory.Inventory]:
    path = tmp_path / "hosts.ini"
    path.write_text(INI)
    loaded = inventory.load([path])
    inventory.activate(loaded)
    yield loaded
    inventory.activate(inventory.Inventory())


def render(text: str) -> object:
    return templating.render(text, {"params": {"group": "db"}})


def test_hosts_is_a_list_and_hostvars_a_hosts_vars() -> None:
    assert render("{{ hosts('web') }}") == ["web1", "web2", "web3"]
    assert render("{{ hosts(params.group ~ ':web[0]') }}") == ["web1", "db1"]
    assert (
        render(
            "{% for h in hosts('prod:!web') %}{{ h }}:{{ hostvars[h].ansible_port }}{% endfor %}"
        )
        == "db1:5022"
    )
    assert (
        render("{{ hostvars.db1.role }} {{ hostvars['web2'].inventory_hostname }}")
        == "primary web2"
    )
    assert (
        render("{{ hostvars.web1.ansible_host }} {{ hostvars.web1.group_names }}")
        == "web1 ['prod', 'web']"
    )
    assert (
        render("{{ 'db1' in hostvars }} {{ 'db9' in hostvars }} {{ hostvars.get('db9', 'none') }}")
        == "True False none"
    )
    assert render("{{ hostvars | length }}") == 4


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("{{ hosts('dbs') }}", f"no host matches 'dbs' {GROUPS}; did you mean 'db'?"),
        ("{{ hosts('web:&db') | length }}", f"no host matches 'web:&db' {GROUPS}"),
        ("{{ hosts('~db.*') }}", "regular expressions (~...) are not supported in host patterns"),
        ("{{ hosts(3) }}", "hosts() takes a pattern as text (hosts('web')), not 3"),
        ("{{ hostvars['db2'].role }}", "no host 'db2' in the inventory; did you mean 'db1'?"),
        ("{{ hostvars.web9 }}", "hostvars: no host 'web9' in the inventory; did you mean 'web3'?"),
    ],
)  # fmt: skip
def test_names_that_match_nothing_fail_the_render_saying_what_there_is(
    text: str, says: str
) -> None:
    with pytest.raises(TemplateError) as caught:
        render(text)
    assert says in str(caught.value)


@pytest.mark.parametrize(
    "text",
    [
        "{{ hostvars._inventory }}",
        "{{ hosts.__globals__ }}",
        "{{ hostvars.__class__.__init__.__globals__ }}",
    ],
)
def test_no_way_out_of_the_sandbox(text: str) -> None:
    with pytest.raises(TemplateError):
        render(text)


def test_calls_count_towards_the_template_budget() -> None:
    with pytest.raises(TemplateError) as caught:
        render("{% for i in range(10000) %}{{ hosts('all') | length }}{% endfor %}")
    assert "template budget exceeded" in str(caught.value)


def test_without_an_inventory_the_message_says_how_to_set_one() -> None:
    inventory.activate(inventory.Inventory())
    with pytest.raises(TemplateError) as caught:
        render("{{ hosts('web') }}")
    assert "no inventory is loaded (set `inventory:` in BATON_CONFIG)" in str(caught.value)
