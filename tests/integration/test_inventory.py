"""The inventory inside a running Baton (``open_baton``, the real engine and chat): a
step's ``with:`` renders ``hosts('web')`` and ``hostvars``, its action finds hosts through
``ActionContext.hosts``, a pattern naming nothing fails the step with what there is,
``hosts web`` answers in chat, and a reload picks up an edited inventory (a broken edit
keeps the previous one)."""

from __future__ import annotations

import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.app import Baton, open_baton
from bot.commands import Actor
from bot.settings import Settings
from engine.actions import ActionContext
from engine.fleet import inventory
from engine.runs.requests import RunRequest
from engine.timing import ManualClock, ManualTimers
from engine.views import queries

INVENTORY = """\
all:
  vars: {ansible_user: deploy}
  children:
    web:
      hosts:
        web1: {ansible_host: 10.0.0.1, ansible_port: 2222}
        web2: {ansible_host: 10.0.0.2}
      vars: {http_port: 8080}
    db:
      hosts:
        db1:
"""

FLEET = """\
name: fleet
steps:
  - id: look
    action: python
    with:
      call: tests.integration.test_inventory:look
      args:
        names: "{{ hosts('web') }}"
        everyone: "{{ hosts('all:!db') | join(' ') }}"
        address: "{{ hostvars['web1'].ansible_host }}"
        port: "{{ hostvars.web1.http_port }}"
        groups: "{{ hostvars['web2'].group_names }}"
"""

TYPO = """\
name: typo
steps:
  - id: look
    action: log
    with: {message: "{{ hosts('nosuchgroup') }}"}
"""

ALICE = Actor(id="alice", via="console")
WHERE = {"front_end": "console"}


async def look(ctx: ActionContext, **args: Any) -> dict[str, Any]:
    """What the step got: its rendered inputs, and web1 as ``ctx.hosts`` finds it."""
    found = ctx.hosts("web1")
    assert found is not None and ctx.hosts("nope") is None
    return {**args, "web1": [found.address, found.port, found.user]}


@pytest.fixture
async def baton(tmp_path: Path) -> AsyncIterator[Baton]:
    folder = tmp_path / "playbooks"
    folder.mkdir()
    (folder / "fleet.yaml").write_text(FLEET)
    (folder / "typo.yaml").write_text(TYPO)
    (tmp_path / "hosts.yml").write_text(INVENTORY)
    config = tmp_path / "baton.yml"
    config.write_text("inventory: hosts.yml\n")
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'baton.db'}",
        playbooks=folder,
        config=config,
        key_file=tmp_path / "key",
    )
    clock = ManualClock()
    async with open_baton(settings, clock=clock, timers=ManualTimers(clock)) as opened:
        yield opened
    inventory.activate(inventory.Inventory())  # the next test starts from none


async def run(baton: Baton, playbook: str) -> dict[str, Any]:
    run_id = await baton.engine.start_run(
        RunRequest(playbook=playbook, params={}, requested_by="alice")
    )
    await baton.engine.wait_for(run_id)
    return await queries.get_run(baton.store, run_id)


async def test_a_step_renders_hosts_and_hostvars_and_finds_hosts_by_name(baton: Baton) -> None:
    done = await run(baton, "fleet")
    assert done["status"] == "succeeded", done
    assert done["steps"][0]["output"] == {
        "names": ["web1", "web2"],
        "everyone": "web1 web2",
        "address": "10.0.0.1",
        "port": 8080,
        "groups": ["web"],
        "web1": ["10.0.0.1", 2222, "deploy"],
    }


async def test_a_pattern_naming_no_host_fails_the_step_with_what_there_is(baton: Baton) -> None:
    done = await run(baton, "typo")
    assert done["status"] == "failed"
    assert done["steps"][0]["error"] == (
        "template \"{{ hosts('nosuchgroup') }}\": no host matches 'nosuchgroup' "
        "(groups: web, db, all)"
    )


async def test_chat_hosts_lists_a_table_or_says_nothing_matches(baton: Baton) -> None:
    commands = baton.commands()
    reply = await commands.handle(ALICE, "hosts web", WHERE)
    assert reply.ok and reply.table_at == 0
    assert reply.lines == [
        "HOST  ADDRESS   PORT  USER    GROUPS",
        "web1  10.0.0.1  2222  deploy  web",
        "web2  10.0.0.2  22    deploy  web",
    ]
    everyone = await commands.handle(ALICE, "hosts", WHERE)
    assert [line.split()[0] for line in everyone.lines[1:]] == ["web1", "web2", "db1"]
    none = await commands.handle(ALICE, "hosts 'web:&db'", WHERE)
    assert not none.ok and none.lines == ["no host matches 'web:&db' (groups: web, db, all)"]
    bad = await commands.handle(ALICE, "hosts ~web.*", WHERE)
    assert not bad.ok and "regular expressions (~...) are not supported" in bad.text
    usage = await commands.handle(ALICE, "hosts web db", WHERE)
    assert not usage.ok and usage.text == "usage: hosts [PATTERN]"


async def test_reload_picks_up_an_edited_inventory_and_keeps_it_past_a_broken_edit(
    baton: Baton, tmp_path: Path
) -> None:
    commands = baton.commands()
    (tmp_path / "hosts.yml").write_text(INVENTORY + "        db2: {ansible_port: 5433}\n")
    assert await baton.reload() == []
    reply = await commands.handle(ALICE, "hosts db", WHERE)
    assert [line.split()[:3] for line in reply.lines[1:]] == [
        ["db1", "db1", "22"],
        ["db2", "db2", "5433"],
    ]
    (tmp_path / "hosts.yml").write_text(
        textwrap.dedent("""\
        all:
          hosts:
            web9: {ansible_port: many}
        """)
    )
    problems = await baton.reload()
    assert problems == [
        f"{tmp_path / 'hosts.yml'}:3: host web9: ansible_port is 'many'; "
        "give a number from 1 to 65535"
    ]
    kept = await commands.handle(ALICE, "hosts db", WHERE)
    assert [line.split()[0] for line in kept.lines[1:]] == ["db1", "db2"]


async def test_chat_lists_at_most_a_hundred_hosts_and_says_how_many_more(
    baton: Baton, tmp_path: Path
) -> None:
    (tmp_path / "hosts.yml").write_text("all:\n  hosts:\n    node[001:250]:\n")
    assert await baton.reload() == []
    reply = await baton.commands().handle(ALICE, "hosts node*", WHERE)
    assert len(reply.lines) == 1 + 100 + 1
    assert reply.lines[100].startswith("node100 ")
    assert reply.lines[-1] == "... and 150 more: narrow the pattern (web:&prod)"
