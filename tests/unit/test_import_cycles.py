"""No import cycles among bot/'s modules: every import counts, at the top, under
TYPE_CHECKING or inside a function (a lazy import does not make a cycle go away)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import bot

ROOT = Path(bot.__file__).parent


def modules() -> dict[str, Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


IMPORT = re.compile(
    r"^[ \t]*(?:from[ \t]+(\.*[\w.]*)[ \t]+import[ \t]+(\([^)]*\)|[^\n]*)|import[ \t]+([^\n]*))",
    re.MULTILINE,
)
"""An import statement at any depth (read as text: parsing every module takes 20 times
longer, and finds the same imports here)."""


def imported(name: str, path: Path, known: dict[str, Path]) -> Iterator[str]:
    """The modules of ``known`` that module ``name`` imports (a package's own submodules
    aside: a package may name what it is made of)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for found in IMPORT.finditer(path.read_text()):
        base, names, plain = found.groups()
        if plain:
            wanted = [part.split(" as ")[0].strip() for part in plain.split("#")[0].split(",")]
        else:
            level = len(base) - len(base.lstrip("."))
            if level:
                up = package.split(".")[: len(package.split(".")) - level + 1]
                base = ".".join([*up, *([base.lstrip(".")] if base.lstrip(".") else [])])
            listed = re.sub(r"#[^\n]*", "", names).strip("() \n")
            parts = [part.split(" as ")[0].strip() for part in listed.split(",")]
            wanted = [f"{base}.{part}" for part in parts if part]
        for target in wanted:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name and not target.startswith(name + "."):
                yield target


def cycle_in(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as the modules along it, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_cycle_in_finds_a_cycle() -> None:
    assert cycle_in({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle_in({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_bot_has_no_import_cycle() -> None:
    known = modules()
    graph = {name: set(imported(name, path, known)) for name, path in known.items()}
    assert cycle_in(graph) is None, " -> ".join(cycle_in(graph) or [])
