"""The critical path of a run: the chain of steps that decided how long it took.

Walk back from the step that finished last, each time through the ``needs`` edge whose
step finished latest (the dependency that held the step up), until a step needs nothing.
Over many runs: the most common chain, and each step's share of the runs' total time
spent on a critical path.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

Span = tuple[datetime, datetime]  # a step's start and finish


@dataclass(frozen=True)
class RunTimes:
    """One finished run as the critical path needs it: its own span, its steps' spans
    (the steps that ran), and the ``needs`` edges of its definition."""

    span: Span
    steps: Mapping[str, Span]
    needs: Mapping[str, Sequence[str]]


@dataclass(frozen=True)
class CriticalPath:
    runs: int  # runs looked at
    chain: list[str]  # the most common chain, first step first
    chain_runs: int  # how many of the runs had that chain
    share: dict[str, float]  # step -> its time on critical paths / the runs' total time


def needs_of(definition: Mapping[str, Any]) -> dict[str, list[str]]:
    """The ``needs`` edges of a playbook definition as kept with a run (main steps)."""
    edges: dict[str, list[str]] = {}
    for step in definition.get("steps") or []:
        needs = step.get("needs") or []
        edges[str(step.get("id"))] = [needs] if isinstance(needs, str) else list(needs)
    return edges


def chain(steps: Mapping[str, Span], needs: Mapping[str, Sequence[str]]) -> list[str]:
    """The critical chain of one run, first step first (empty when no step ran). Ties
    go to the step named first, so the answer does not depend on row order."""
    if not steps:
        return []
    current = max(sorted(steps), key=lambda s: steps[s][1])
    path = [current]
    while True:
        ran = sorted(n for n in needs.get(current, ()) if n in steps and n not in path)
        if not ran:
            return path[::-1]
        current = max(ran, key=lambda s: steps[s][1])
        path.append(current)


def aggregate(runs: Iterable[RunTimes]) -> CriticalPath | None:
    """The most common chain over ``runs`` and each step's share of their total time."""
    chains: Counter[tuple[str, ...]] = Counter()
    on_path: dict[str, float] = defaultdict(float)
    total = 0.0
    count = 0
    for run in runs:
        found = chain(run.steps, run.needs)
        if not found:
            continue
        count += 1
        chains[tuple(found)] += 1
        total += max((run.span[1] - run.span[0]).total_seconds(), 0.0)
        for step in found:
            start, finish = run.steps[step]
            on_path[step] += max((finish - start).total_seconds(), 0.0)
    if not count:
        return None
    (top, times), *_ = sorted(chains.items(), key=lambda kv: (-kv[1], kv[0]))
    share = {step: (seconds / total if total else 0.0) for step, seconds in on_path.items()}
    return CriticalPath(runs=count, chain=list(top), chain_runs=times, share=share)
