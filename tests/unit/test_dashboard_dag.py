"""The run graph's DOT text and Graphviz's SVG, drawn by the real ``dot``."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from bot.dashboard import dag, timeline
from engine.views.runview import Bar, Node, nodes_of


def node(step_id: str, *needs: str, title: str = "", phase: str = "main") -> Node:
    return Node(step_id, phase, needs, "shell", title or step_id)


async def test_a_node_per_step_in_its_status_colour_and_an_edge_per_need() -> None:
    nodes = [node("build"), node("test", "build"), node("ship", "test", "build")]
    steps = {"build": {"id": "build", "status": "succeeded", "attempts": 2}}
    svg = await dag.draw(dag.source(nodes, steps))
    groups = dict(re.findall(r'<g id="step-([\w-]+)" class="node step status-(\w+)">', svg))
    assert groups == {"build": "succeeded", "test": "pending", "ship": "pending"}
    assert 'fill="#86efac"' in svg.split('id="step-build"')[1].split("</g>")[0]
    assert svg.count('class="edge"') == 3
    assert "succeeded x2" in svg
    assert "http://" not in svg and "<?xml" not in svg and "<!--" not in svg


async def test_labels_are_quoted_for_dot_and_escaped_in_the_svg() -> None:
    nasty = 'say "hi" \\ <script>alert(1)</script>\nnext'
    svg = await dag.draw(dag.source([node("a", title=nasty)], {}))
    assert "<script>" not in svg and "&lt;script&gt;" in svg


async def test_dot_missing_or_too_slow_is_a_draw_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dag, "DOT", "/nonexistent/dot")
    with pytest.raises(dag.DrawError, match="Graphviz is not installed"):
        await dag.draw("digraph { a }")


async def test_bad_dot_input_is_a_draw_error() -> None:
    with pytest.raises(dag.DrawError, match="Graphviz failed"):
        await dag.draw("digraph { a -> }")


def test_the_graph_of_a_stored_definition_keeps_phases_and_needs() -> None:
    definition = {
        "steps": [{"id": "a", "action": "log"}, {"id": "b", "action": "log", "needs": "a"}],
        "on_failure": [{"id": "undo", "action": "shell", "name": "Roll back"}],
        "finally": [{"id": "tell", "action": "log"}],
    }
    nodes = nodes_of(definition)
    assert [(n.id, n.phase, n.needs, n.title) for n in nodes] == [
        ("a", "main", (), "a"),
        ("b", "main", ("a",), "b"),
        ("undo", "on_failure", (), "Roll back"),
        ("tell", "finally", (), "tell"),
    ]
    dot_text = dag.source(nodes, {})
    assert '"undo" [id="step-undo"' in dot_text and "dashed" in dot_text


async def test_drawings_are_cached_by_the_status_fingerprint() -> None:
    drawings = dag.Drawings(size=1)
    nodes = [node("a")]
    run = {"id": "r1", "steps": [{"id": "a", "status": "running", "attempts": 1}]}
    first = await drawings.svg(run, nodes)
    assert await drawings.svg(run, nodes) == first and drawings.drawn == 1
    run["steps"][0]["status"] = "succeeded"
    assert "status-succeeded" in await drawings.svg(run, nodes) and drawings.drawn == 2


def test_timeline_bars_of_a_retried_run_say_which_run_attempt_they_belong_to() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    bars = [
        Bar("deploy", 1, 1, "failed", t0, t0 + timedelta(seconds=2)),
        Bar("deploy", 1, 2, "succeeded", t0 + timedelta(minutes=5), t0 + timedelta(minutes=6)),
    ]
    first, second = timeline.layout(bars, ["deploy"], t0).boxes
    assert first.title == "deploy attempt 1: failed, 2.0s"
    assert second.title == "deploy attempt 1 (run attempt 2): succeeded, 1m00s"
