"""The inventory reader: Ansible YAML and INI files, merged as Ansible merges them, and
every bad file refused with its file, line and what to write."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from engine.fleet import inventory, ranges
from engine.fleet.hosts import Host
from engine.fleet.inventory import Inventory, InventoryError

YAML = """\
all:
  vars: {color: all, ansible_user: root, from_all: yes}
  hosts:
    bastion: {ansible_host: 203.0.113.7}
  children:
    prod:
      vars: {color: prod, from_prod: 1}
      children:
        web:
          vars: {color: web}
          hosts:
            web1: {ansible_host: 10.0.0.1, ansible_port: 2222, color: host}
            web2:
        db:
          hosts:
            db1: {ansible_ssh_private_key_file: ~/.ssh/db}
"""

INI = """\
# hosts before any section are in no group but all
lonely ansible_host=192.0.2.5

[web]
web[01:03].example.com ansible_user=deploy motd="hello world" weight=5
canary:2200

[web:vars]
http_port=8080
tags=['a', 'b']

[lab]
lab-[a:c]

[prod:children]
web
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


def problems_of(paths: list[Path]) -> list[tuple[str, int | None, str]]:
    with pytest.raises(InventoryError) as caught:
        inventory.load(paths)
    return [(Path(p.file).name, p.line, p.message) for p in caught.value.problems]


def test_yaml_groups_children_hosts_and_connection_vars(tmp_path: Path) -> None:
    inv = inventory.load([write(tmp_path, "hosts.yml", YAML)])
    assert list(inv.hosts) == ["bastion", "web1", "web2", "db1"]
    assert inv.host("web1") == Host(
        name="web1",
        address="10.0.0.1",
        port=2222,
        user="root",
        key_file=None,
        vars={
            "color": "host",
            "ansible_user": "root",
            "from_all": True,
            "from_prod": 1,
            "ansible_host": "10.0.0.1",
            "ansible_port": 2222,
        },
    )
    assert inv.host("web2") is not None and inv.host("web2").address == "web2"  # type: ignore[union-attr]
    assert inv.host("db1").key_file == "~/.ssh/db"  # type: ignore[union-attr]
    assert inv.host("nope") is None
    assert inv.groups["prod"] == {"web1", "web2", "db1"}
    assert inv.groups["ungrouped"] == {"bastion"}
    assert inv.groups_of("web1") == ("prod", "web")
    assert inv.groups_of("bastion") == ("ungrouped",)


def test_vars_precedence_host_over_child_over_parent_over_all(tmp_path: Path) -> None:
    inv = inventory.load([write(tmp_path, "hosts.yml", YAML)])
    colors = {name: host.vars["color"] for name, host in inv.hosts.items()}
    assert colors == {"bastion": "all", "web1": "host", "web2": "web", "db1": "prod"}


def test_groups_of_one_depth_merge_by_name_then_priority(tmp_path: Path) -> None:
    text = """\
    [b]
    h1
    [a]
    h1
    [a:vars]
    x=from-a
    [b:vars]
    x=from-b
    """
    assert inventory.load([write(tmp_path, "one.ini", text)]).hosts["h1"].vars["x"] == "from-b"
    text += "[a:vars]\nansible_group_priority=10\n"
    assert inventory.load([write(tmp_path, "two.ini", text)]).hosts["h1"].vars["x"] == "from-a"


def test_ini_sections_vars_children_ranges_and_ports(tmp_path: Path) -> None:
    inv = inventory.load([write(tmp_path, "hosts.ini", INI)])
    assert list(inv.hosts) == [
        "lonely",
        "web01.example.com",
        "web02.example.com",
        "web03.example.com",
        "canary",
        "lab-a",
        "lab-b",
        "lab-c",
    ]
    web = inv.hosts["web02.example.com"]
    assert (web.address, web.port, web.user) == ("web02.example.com", None, "deploy")
    assert web.vars["motd"] == "hello world" and web.vars["weight"] == 5
    assert web.vars["http_port"] == 8080 and web.vars["tags"] == ["a", "b"]
    assert inv.hosts["canary"].port == 2200
    assert inv.hosts["lonely"].address == "192.0.2.5"
    assert inv.groups["prod"] == inv.groups["web"]
    assert inv.groups["ungrouped"] == {"lonely"}
    assert inv.groups_of("canary") == ("prod", "web")


def test_several_files_merge_in_order_the_later_value_wins(tmp_path: Path) -> None:
    first = write(tmp_path, "a.yml", YAML)
    second = write(tmp_path, "b.ini", "[web]\nweb2 color=second\nweb9\n")
    inv = inventory.load([first, second])
    assert list(inv.hosts) == ["bastion", "web1", "web2", "db1", "web9"]
    assert inv.hosts["web2"].vars["color"] == "second"
    assert inv.groups["prod"] >= {"web9"}  # web's parent, from the first file
    assert inv.sources == (str(first), str(second))


def test_a_folder_is_every_file_in_it_sorted_backups_left_out(tmp_path: Path) -> None:
    folder = tmp_path / "inventory"
    folder.mkdir()
    write(folder, "20-lab.ini", "[web]\nweb1 color=later\n")
    write(folder, "10-prod.yml", YAML)
    write(folder, "10-prod.yml~", "[web]\nweb1 color=backup\n")
    write(folder, ".hidden.ini", "[web]\nweb1 color=hidden\n")
    write(folder, "README.md", "# not an inventory\n")
    (folder / "group_vars").mkdir()
    inv = inventory.load([folder])
    assert inv.hosts["web1"].vars["color"] == "later"
    assert [Path(s).name for s in inv.sources] == ["10-prod.yml", "20-lab.ini"]


def test_config_key_paths_relative_to_the_config_file(tmp_path: Path) -> None:
    write(tmp_path, "hosts.yml", YAML)
    write(tmp_path, "lab.ini", "[lab]\nlab1\n")
    config = write(
        tmp_path, "baton.yml", "groups: {sre: [alice]}\ninventory: [hosts.yml, lab.ini]\n"
    )
    inv = inventory.from_config(config)
    assert "lab1" in inv.hosts and "web1" in inv.hosts
    single = write(tmp_path, "single.yml", f"inventory: {tmp_path / 'lab.ini'}\n")
    assert list(inventory.from_config(single).hosts) == ["lab1"]
    assert len(inventory.from_config(write(tmp_path, "none.yml", "groups: {}\n"))) == 0
    assert len(inventory.from_config(None)) == 0


@pytest.mark.parametrize(
    ("config", "line", "says"),
    [
        ("groups: {}\ninventory: 3\n", 2, "inventory: give a path"),
        ("inventory: []\n", 1, "a list of them"),
        ("inventory: missing.yml\n", None, "no such inventory file or folder"),
    ],
)
def test_config_key_that_does_not_read(
    tmp_path: Path, config: str, line: int | None, says: str
) -> None:
    path = write(tmp_path, "baton.yml", config)
    with pytest.raises(InventoryError) as caught:
        inventory.from_config(path)
    problem = caught.value.problems[0]
    assert problem.line == line and says in problem.message


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        pytest.param(
            "bad.ini",
            "[web\nweb1\n",
            [("bad.ini", 1,
             "'[web' is not a section: write [group], [group:vars] or "
             "[group:children]")],
            id="ini-section",
        ),
        pytest.param(
            "bad.ini",
            "[web]\nweb1 port 22\n",
            [("bad.ini", 2,
             "'port' after host web1: host vars are key=value (one host per line; "
             "quote values with blanks)")],
            id="ini-host-var",
        ),
        pytest.param(
            "bad.ini",
            "[web]\nweb1\n\n[webb:vars]\nx=1\n",
            [("bad.ini", 4,
             "[webb:vars] sets vars of a group no section defines; did you mean "
             "[web:vars]? add a [webb] section (it may be empty) or fix the name")],
            id="ini-vars-of-a-typo",
        ),
        pytest.param(
            "bad.ini",
            "[web:hosts]\nweb1\n",
            [("bad.ini", 1,
             "[web:hosts]: unknown kind of section; [web] lists hosts, [web:vars] "
             "sets vars, [web:children] lists groups")],
            id="ini-section-kind",
        ),
        pytest.param(
            "bad.ini",
            "[web]\nweb1 motd='unclosed\n",
            [("bad.ini", 2, "cannot read this line (No closing quotation): close the quote")],
            id="ini-quote",
        ),
        pytest.param(
            "bad.ini",
            "[web]\nweb[9:1]\nweb[a:9]\n",
            [
                ("bad.ini", 2, "[9:1] starts after it ends: write the smaller end first"),
                ("bad.ini", 3,
                 "[a:9] is not a host range: write numbers ([01:40]) or single letters "
                 "([a:f]), optionally with a step ([1:9:2])"),
            ],
            id="ini-ranges",
        ),
        pytest.param(
            "bad.ini",
            "[web]\nweb1 ansible_port=ssh\n",
            [("bad.ini", 2, "host web1: ansible_port is 'ssh'; give a number from 1 to 65535")],
            id="ini-port",
        ),
        pytest.param(
            "bad.ini",
            "[a]\nh1\n[a:children]\nb\n[b:children]\na\n",
            [("bad.ini", 6,
             "group a is a child of b, which is already under a: children may not "
             "loop; remove one of the two")],
            id="ini-loop",
        ),
        pytest.param(
            "bad.yml",
            "all:\n  children:\n    web:\n      host:\n        web1:\n",
            [("bad.yml", 4,
             "group web: unknown key 'host'; did you mean `hosts`? a group holds "
             "hosts, children and vars (a host goes under `hosts:`)")],
            id="yaml-group-key",
        ),
        pytest.param(
            "bad.yml",
            "all:\n  hosts:\n    web1:\n      ansible_port: 70000\n",
            [("bad.yml", 4, "host web1: ansible_port is 70000; give a number from 1 to 65535")],
            id="yaml-port",
        ),
        pytest.param(
            "bad.yml",
            "all:\n  hosts: [web1, web2]\n",
            [("bad.yml", 2, "group all: hosts map each host name to its vars (or to nothing)")],
            id="yaml-hosts-list",
        ),
        pytest.param(
            "bad.yml",
            "all:\n  hosts:\n    web1:\n    web1:\n",
            [("bad.yml", 4,
             "duplicate key 'web1' (first on line 3): a mapping may hold each key "
             "once; merge the two or remove one")],
            id="yaml-duplicate",
        ),
        pytest.param(
            "bad.yml",
            "plugin: aws_ec2\nregions: [eu-west-1]\n",
            [("bad.yml", 1,
             "dynamic inventory plugins are not read by Baton: write the hosts out "
             "(`ansible-inventory -i SOURCE --list --yaml` prints them)")],
            id="yaml-plugin",
        ),
        pytest.param(
            "bad.yml",
            "all:\n  hosts:\n    web1: [a]\n",
            [("bad.yml", 3, "host web1: vars are a mapping of names to values")],
            id="yaml-host-vars",
        ),
        pytest.param(
            "bad.yml",
            "all: {hosts: {web1: {}}\n",
            [("bad.yml", 2, "YAML syntax error: expected ',' or '}', but got '<stream end>'")],
            id="yaml-syntax",
        ),
    ],
)  # fmt: skip
def test_bad_files_say_file_line_and_fix(
    tmp_path: Path, name: str, text: str, expected: list[tuple[str, int, str]]
) -> None:
    assert problems_of([write(tmp_path, name, text)]) == expected


def test_every_problem_of_every_file_at_once(tmp_path: Path) -> None:
    first = write(tmp_path, "a.ini", "[web]\nweb1 port\n")
    second = write(tmp_path, "b.yml", "all:\n  hosts:\n    db1: {ansible_port: x}\n")
    found = problems_of([first, second])
    assert [(f, line) for f, line, _ in found] == [("a.ini", 2), ("b.yml", 3)]


def test_hostile_files_are_refused_unread(tmp_path: Path) -> None:
    big = tmp_path / "big.ini"
    big.write_text("[web]\n" + "web1 x=1\n" * 200_000)
    levels = "".join(
        f"{c}: &{c} [{', '.join([f'*{p}'] * 10)}]\n"
        for p, c in zip("abcdef", "bcdefg", strict=True)
    )
    bomb = write(tmp_path, "bomb.yml", "a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n" + levels)
    found = problems_of([big, bomb])
    assert found[0][0] == "big.ini" and "file too large" in found[0][2]
    assert found[1][0] == "bomb.yml" and "YAML aliases expand too far" in found[1][2]
    huge = write(tmp_path, "huge.ini", "[web]\nweb[0:99999999]\n")
    assert "more than the 50,000 one line may" in problems_of([huge])[0][2]


@pytest.mark.parametrize(
    ("name", "hosts"),
    [
        ("web[01:03]", ["web01", "web02", "web03"]),
        ("web[8:10].x", ["web8.x", "web9.x", "web10.x"]),
        ("db-[a:c]", ["db-a", "db-b", "db-c"]),
        ("n[0:6:3]", ["n0", "n3", "n6"]),
        ("r[1:2]-[a:b]", ["r1-a", "r1-b", "r2-a", "r2-b"]),
        ("plain", ["plain"]),
    ],
)
def test_ranges(name: str, hosts: list[str]) -> None:
    assert ranges.expand(name) == hosts


def test_no_inventory_is_empty_and_says_so() -> None:
    empty = Inventory()
    assert len(empty) == 0 and empty.host("web1") is None
    assert empty.match("all") == []
    assert "no inventory is loaded" in empty.no_match("web")
    assert "no inventory" in empty.summary()


def test_a_loop_is_named_by_its_closing_edge_not_a_group_below_it(tmp_path: Path) -> None:
    text = "[a:children]\nb\n[b:children]\na\nc\n[c]\nh1\n"
    assert problems_of([write(tmp_path, "loop.ini", text)]) == [
        (
            "loop.ini",
            4,
            "group a is a child of b, which is already under a: children may not loop; "
            "remove one of the two",
        )
    ]


def test_group_vars_and_host_vars_folders_beside_the_inventory(tmp_path: Path) -> None:
    hosts = write(tmp_path, "hosts.ini", "[web]\nweb1 color=inline\nweb2\n[web:vars]\nport=80\n")
    (tmp_path / "group_vars" / "web").mkdir(parents=True)
    (tmp_path / "host_vars").mkdir()
    write(tmp_path / "group_vars", "all.yml", "region: eu\ncolor: all\n")
    write(tmp_path / "group_vars" / "web", "10-main.yml", "port: 8080\nteam: web\n")
    write(tmp_path / "group_vars" / "web", "20-more.yaml", "team: platform\n")
    write(tmp_path / "group_vars", "nosuchgroup.yml", "{broken\n")  # not read: no such group
    write(tmp_path / "host_vars", "web1", "color: host-file\nansible_port: 2201\n")
    write(tmp_path / "host_vars", "web2.yml.bak", "color: backup\n")
    inv = inventory.load([hosts])
    assert dict(inv.hosts["web1"].vars) == {
        "region": "eu",
        "color": "host-file",
        "port": 8080,
        "team": "platform",
        "ansible_port": 2201,
    }
    assert inv.hosts["web1"].port == 2201
    assert inv.hosts["web2"].vars["color"] == "all"
    write(tmp_path / "host_vars", "web2.yml", "- a list\n")
    write(tmp_path / "host_vars", "web1", "ansible_port: none\n")
    assert problems_of([hosts]) == [
        ("web1", 1, "host web1: ansible_port is 'none'; give a number from 1 to 65535"),
        ("web2.yml", 1, "a vars file holds a mapping of var names to values"),
    ]


def test_a_groups_bad_var_is_one_problem_at_its_own_line(tmp_path: Path) -> None:
    ini = write(tmp_path, "hosts.ini", "[web]\nweb[1:50]\n\n[web:vars]\nx=1\nansible_port=http\n")
    yml = write(
        tmp_path,
        "hosts.yml",
        "all:\n  children:\n    db:\n      hosts: {db1: }\n"
        "      vars:\n        ansible_user: [a]\n",
    )
    assert problems_of([ini, yml]) == [
        ("hosts.ini", 6, "group web: ansible_port is 'http'; give a number from 1 to 65535"),
        ("hosts.yml", 6, "group db: ansible_user is ['a']; give it as text"),
    ]
