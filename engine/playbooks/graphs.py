"""The ``needs`` graph of a list of steps, as ``engine.playbooks.validate`` checks it."""

from __future__ import annotations


def cycles(graph: dict[str, list[str]]) -> list[list[str]]:
    """Each distinct cycle once, as ``[a, b, a]`` (a needs b, b needs a)."""
    found: list[list[str]] = []
    seen_sets: set[frozenset[str]] = set()
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in graph.get(node, []):
            if state.get(nxt) == 1:
                cycle = [*stack[stack.index(nxt) :], nxt]
                members = frozenset(cycle)
                if members not in seen_sets:
                    seen_sets.add(members)
                    found.append(cycle)
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node)
    return found
