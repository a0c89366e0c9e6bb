"""Reading YAML files that someone made hostile or careless: alias bombs, duplicate keys,
huge files, devices and FIFOs. Each is refused with a file:line message, and the other
playbooks of the folder still load."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, ClassVar

import pytest
from pydantic import BaseModel, ConfigDict

from engine.access import config as accessconfig
from engine.access import rules as access
from engine.actions import ActionContext, Output, Suspend
from engine.actions.registry import Registry
from engine.errors import PlaybookInvalid
from engine.playbooks import model as playbook
from engine.playbooks import validate, yamldoc
from engine.playbooks.catalog import Catalog


class LogInputs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    message: str


class FakeLog:
    name: ClassVar[str] = "log"
    Inputs: ClassVar[type[BaseModel]] = LogInputs

    async def run(self, ctx: ActionContext, inputs: Any) -> Output | Suspend:
        return {}


@pytest.fixture
def registry() -> Registry:
    return Registry({"log": FakeLog()})


def good(name: str, message: str = "hi") -> str:
    return f"name: {name}\nsteps:\n  - id: say\n    action: log\n    with: {{message: {message}}}\n"


def bomb(levels: int, name: str = "bomb") -> str:
    """A "billion laughs": each level is a list of ten aliases of the level before."""
    text = f"name: {name}\nl0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
    for i in range(1, levels + 1):
        text += f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]\n"
    return text + f"steps:\n  - id: a\n    action: log\n    with: {{message: *l{levels}}}\n"


def problems_of(text: str) -> list[tuple[int | None, str]]:
    with pytest.raises(PlaybookInvalid) as exc:
        yamldoc.parse(text, "pb.yaml")
    assert all(p.file == "pb.yaml" for p in exc.value.problems)
    return [(p.line, p.message) for p in exc.value.problems]


def test_an_alias_bomb_is_refused_at_the_alias_that_expands_too_far() -> None:
    # a million values: today's recorder walked each of them; the loader counts instead
    [(line, message)] = problems_of(bomb(5))
    assert line == 6  # `l4: &l4 [*l3, ...]`: the ninth *l3 passes the bound
    assert message.startswith("YAML aliases expand too far: at alias *l3 the document stands")
    assert f"more than {yamldoc.MAX_VALUES:,} values" in message


def test_aliases_within_the_bound_still_load_with_their_lines() -> None:
    data, lines = yamldoc.parse(bomb(2), "pb.yaml")
    assert len(data["steps"][0]["with"]["message"]) == 10
    assert lines[("steps", 0, "with", "message")] == 8


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("x: &a [1, *a]\n", id="list"),
        pytest.param("x: &a {k: *a}\n", id="mapping"),
    ],
)
def test_an_alias_inside_its_own_anchor_is_refused(text: str) -> None:
    assert problems_of(text) == [(1, "YAML alias *a is used inside its own anchor &a")]


def test_duplicate_keys_are_refused_with_both_lines() -> None:
    text = "name: x\nsteps: [1]\nparams: {a: 1, a: 2}\nsteps: [2]\n"
    assert problems_of(text) == [
        (
            3,
            "duplicate key 'a' (first on line 3): a mapping may hold each key once; "
            "merge the two or remove one",
        ),
        (
            4,
            "duplicate key 'steps' (first on line 2): a mapping may hold each key once; "
            "merge the two or remove one",
        ),
    ]


def test_a_merge_key_may_be_overridden() -> None:
    text = "base: &b {x: 1, y: 2}\nmore: {<<: *b, x: 3}\nother: {y: 4, <<: *b}\n"
    data, _ = yamldoc.parse(text, "pb.yaml")
    assert data["more"] == {"x": 3, "y": 2}
    assert data["other"] == {"x": 1, "y": 4}


def test_a_file_over_the_cap_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text(good("big") + "#" * yamldoc.MAX_FILE_BYTES + "\n")
    with pytest.raises(PlaybookInvalid) as exc:
        playbook.load_file(path)
    [problem] = exc.value.problems
    assert (problem.file, problem.line) == (str(path), None)
    assert problem.message.startswith("file too large (")
    assert f"at most {yamldoc.MAX_FILE_BYTES:,} are read" in problem.message


def test_devices_and_fifos_are_refused_and_the_others_load(
    tmp_path: Path, registry: Registry
) -> None:
    folder = tmp_path / "playbooks"
    folder.mkdir()
    (folder / "a-good.yaml").write_text(good("good"))
    os.mkfifo(folder / "fifo.yaml")  # nobody writes: a plain open() would wait forever
    (folder / "null.yaml").symlink_to("/dev/null")
    (folder / "dir.yaml").mkdir()

    catalog = Catalog.load(folder, registry)

    assert catalog.names() == ["good"]
    found = {Path(p.file).name: p.message for p in catalog.problems}
    assert found == {
        "dir.yaml": "not a regular file: it is a directory; only files are read",
        "fifo.yaml": "not a regular file: it is a FIFO (named pipe); only files are read",
        "null.yaml": "not a regular file: it is a symlink to /dev/null, which is a character "
        "device; only files are read",
    }


def test_a_fifo_named_on_the_command_line_is_refused(tmp_path: Path, registry: Registry) -> None:
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    found, problems = validate.validate_paths([fifo], registry)
    assert found == {}
    assert [(p.file, p.message.split(":")[0]) for p in problems] == [
        (str(fifo), "not a regular file")
    ]


def test_reload_refuses_a_bomb_and_keeps_the_previous_version(
    tmp_path: Path, registry: Registry
) -> None:
    folder = tmp_path / "playbooks"
    folder.mkdir()
    (folder / "a.yaml").write_text(good("alpha"))
    (folder / "b.yaml").write_text(good("beta"))
    catalog = Catalog.load(folder, registry)
    before = catalog.get("alpha")

    (folder / "a.yaml").write_text(bomb(9, name="alpha"))  # a billion values
    (folder / "b.yaml").write_text(good("beta", message="edited") + "steps: []\n")
    (folder / "c.yaml").write_text(good("gamma"))
    fresh = catalog.reload()

    assert fresh.names() == ["alpha", "beta", "gamma"]
    assert fresh.get("alpha") is before
    assert fresh.get("beta").steps[0].with_ == {"message": "hi"}  # the duplicate was refused
    assert fresh.kept == ["alpha", "beta"]
    messages = [f"{Path(p.file).name}:{p.line}: {p.message.split(':')[0]}" for p in fresh.problems]
    assert "a.yaml:6: YAML aliases expand too far" in messages
    assert "b.yaml:6: duplicate key 'steps' (first on line 2)" in messages


def test_the_config_file_is_read_the_same_way(tmp_path: Path) -> None:
    fifo = tmp_path / "baton.yaml"
    os.mkfifo(fifo)
    with pytest.raises(access.ConfigError) as exc:
        accessconfig.load(fifo)
    assert str(exc.value) == (
        f"BATON_CONFIG points at {fifo}: not a regular file: it is a FIFO (named pipe); "
        "only files are read"
    )
