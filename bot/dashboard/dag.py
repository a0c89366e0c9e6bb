"""A run's step graph as SVG, drawn by Graphviz (``dot -Tsvg``) on the server.

``dot`` runs as a subprocess with a timeout (never on the event loop), and a drawing is
cached by the run's *status fingerprint* (its steps' statuses and attempts): a page
reloaded while nothing moved costs no subprocess. The SVG is inlined in the page, so it
is trimmed of its XML prolog, comments and namespace URLs (no external URL in a page).
Each step is one node ``<g id="step-ID" class="node step status-STATUS">`` filled with
its status colour."""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections import OrderedDict
from typing import Any

from engine.views.runview import Node

DOT = "dot"
TIMEOUT = 5.0
CACHED = 256

COLOURS = {  # fill, and the same in static/dashboard.css (.status-*)
    "pending": "#e5e7eb",
    "queued": "#e5e7eb",
    "running": "#93c5fd",
    "waiting": "#fde68a",
    "succeeded": "#86efac",
    "failed": "#fca5a5",
    "timed_out": "#fca5a5",
    "interrupted": "#fdba74",
    "cancelled": "#d1d5db",
    "skipped": "#f3f4f6",
}
PHASE_STYLE = {"main": "solid", "on_failure": "dashed", "finally": "dotted"}


class DrawError(Exception):
    """Graphviz could not draw the graph (missing, too slow, or it refused the input)."""


def quoted(text: str) -> str:
    """``text`` as a DOT double-quoted string."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def label_of(node: Node, step: dict[str, Any] | None) -> str:
    """What a node says: its title, its status and attempts. A ``for_each`` step shows
    its items' counts by status here (``Node.counts``), as one node."""
    status = step["status"] if step else "pending"
    lines = [node.title, status]
    if step and step.get("attempts", 0) > 1:
        lines[-1] += f" x{step['attempts']}"
    if node.counts:  # 6/12 done, 1 failed, 3 running
        counts = node.counts
        shown = [f"{counts.get('done', 0)}/{counts['total']} done"] if "total" in counts else []
        shown += [f"{counts[k]} {k}" for k in ("failed", "running") if counts.get(k)]
        lines.append(", ".join(shown))
    return "\n".join(lines)


def source(nodes: list[Node], steps: dict[str, dict[str, Any]]) -> str:
    """The DOT text of a run's graph: a node per step, an edge per ``needs``; the
    on_failure and finally phases after the main one, with dashed and dotted borders."""
    out = [
        "digraph run {",
        '  graph [rankdir=LR, bgcolor="transparent", nodesep=0.25, ranksep=0.4];',
        '  node [shape=box, style="rounded,filled", fontname="sans-serif", fontsize=11];',
        '  edge [color="#6b7280"];',
    ]
    for node in nodes:
        step = steps.get(node.id)
        status = step["status"] if step else "pending"
        border = PHASE_STYLE.get(node.phase, "solid")
        attrs = {
            "id": f"step-{node.id}",
            "class": f"step status-{status}",
            "label": label_of(node, step),
            "fillcolor": COLOURS.get(status, "#ffffff"),
            "style": f"rounded,filled,{border}",
            "tooltip": f"{node.id} ({node.action}, {node.phase}): {status}",
        }
        shown = ", ".join(f"{k}={quoted(v)}" for k, v in attrs.items())
        out.append(f"  {quoted(node.id)} [{shown}];")
    known = {n.id for n in nodes}
    for node in nodes:
        for need in node.needs:
            if need in known:
                out.append(f"  {quoted(need)} -> {quoted(node.id)};")
    out.append("}")
    return "\n".join(out) + "\n"


_PROLOG = re.compile(r"<\?xml.*?\?>|<!DOCTYPE.*?>|<!--.*?-->", re.S)
_NAMESPACES = re.compile(r'\s+xmlns(:\w+)?="[^"]*"')


def inline(svg: str) -> str:
    """Graphviz's SVG made fit to sit inside an HTML page."""
    svg = _NAMESPACES.sub("", _PROLOG.sub("", svg)).strip()
    return svg.replace("&#45;", "-")  # dot writes every hyphen so: ids read as written


async def draw(dot_source: str, *, seconds: float = TIMEOUT) -> str:
    """``dot -Tsvg`` of ``dot_source``, inlined; DrawError when it cannot."""
    try:
        proc = await asyncio.create_subprocess_exec(
            DOT,
            "-Tsvg",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except OSError as exc:
        raise DrawError(f"Graphviz is not installed ({exc}): install graphviz") from exc
    try:
        out, err = await asyncio.wait_for(proc.communicate(dot_source.encode()), seconds)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise DrawError(f"Graphviz took longer than {seconds:g} s") from None
    if proc.returncode != 0:
        raise DrawError(f"Graphviz failed: {err.decode(errors='replace').strip()[:200]}")
    return inline(out.decode())


def fingerprint(run: dict[str, Any], nodes: list[Node]) -> str:
    """What changes a drawing: the run's steps, their statuses and attempts."""
    parts = [run["id"], *(f"{n.id}>{','.join(n.needs)}|{n.counts}" for n in nodes)]
    parts += [f"{s['id']}={s['status']}x{s['attempts']}" for s in run["steps"]]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


class Drawings:
    """Drawn graphs by fingerprint, the newest ``size`` kept."""

    def __init__(self, size: int = CACHED) -> None:
        self.size = size
        self._svgs: OrderedDict[str, str] = OrderedDict()
        self.drawn = 0  # how many times dot ran (tests and the bench read it)

    async def svg(self, run: dict[str, Any], nodes: list[Node]) -> str:
        key = fingerprint(run, nodes)
        if key in self._svgs:
            self._svgs.move_to_end(key)
            return self._svgs[key]
        steps = {s["id"]: s for s in run["steps"]}
        svg = await draw(source(nodes, steps))
        self.drawn += 1
        self._svgs[key] = svg
        while len(self._svgs) > self.size:
            self._svgs.popitem(last=False)
        return svg
