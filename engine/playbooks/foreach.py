"""``for_each``: one step run once per item of a list, in rolling batches.

The playbook key (``ForEach``) and the rules of a fan-out that need no I/O: how many
failures it tolerates, what its output looks like, how its progress reads. The driving
of the items is ``engine.runs.fanout``; their rows are ``storage.tables.step_items``.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
RESERVED = frozenset({"params", "steps", "secrets", "run", "failure", "alert", "index"})
"""Names a template already uses: ``as`` may not hide one of them."""
MAX_ITEMS = 10_000
"""A list longer than this is refused when the step starts (a runaway template)."""
NO_SUSPEND = ("approval", "playbook", "wait")
"""Actions that park their step (a gate, a child run, a timer): not per item."""
SHOWN_NAMES = 3
"""How many failed items a progress line names before "and N more"."""
KEPT_NAMES = 10
"""How many failed items' names a progress report carries (it counts them all)."""


class ForEach(BaseModel):
    """``for_each: LIST`` or ``for_each: {items, as, parallel, max_failures}``."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    items: str | list[Any]
    as_: str = Field(default="item", alias="as")
    parallel: int = 1
    max_failures: int | str = 0

    @model_validator(mode="before")
    @classmethod
    def _list_alone(cls, v: Any) -> Any:
        """``for_each: [a, b]`` and ``for_each: "{{ params.hosts }}"`` are the items."""
        return {"items": v} if isinstance(v, list | str) else v

    @field_validator("as_")
    @classmethod
    def _a_name(cls, v: str) -> str:
        if not NAME.match(v):
            raise ValueError(
                f"for_each.as {v!r} is not a name: use letters, digits and _ (e.g. host)"
            )
        if v in RESERVED:
            raise ValueError(
                f"for_each.as {v!r} would hide the template name {v!r}: pick another (e.g. host)"
            )
        return v

    @field_validator("parallel", mode="before")
    @classmethod
    def _at_least_one(cls, v: Any) -> Any:
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(
                f"for_each.parallel is how many items run at once: a whole number >= 1, not {v!r}"
            )
        return v

    @field_validator("max_failures", mode="before")
    @classmethod
    def _count_or_percent(cls, v: Any) -> Any:
        if isinstance(v, int) and not isinstance(v, bool) and v >= 0:
            return v
        if isinstance(v, str) and _percent(v) is not None:
            return v.strip()
        raise ValueError(
            f'for_each.max_failures is a number of items (e.g. 2) or a percent (e.g. "10%"), '
            f"not {v!r}"
        )

    @property
    def name(self) -> str:
        """The item's name in the step's templates."""
        return self.as_

    def limit(self, total: int) -> int:
        """How many failed items the step tolerates out of ``total``."""
        percent = _percent(self.max_failures) if isinstance(self.max_failures, str) else None
        if percent is None:
            return int(self.max_failures)
        return math.floor(total * percent / 100)


def _percent(text: str) -> float | None:
    """``"10%"`` -> 10.0; None when ``text`` is not a percent from 0 to 100."""
    body = text.strip()
    if not body.endswith("%"):
        return None
    try:
        value = float(body[:-1])
    except ValueError:
        return None
    return value if 0 <= value <= 100 else None


def names_of(spec: ForEach | None) -> frozenset[str]:
    """The template names a step's ``with`` gains from its ``for_each``."""
    return frozenset() if spec is None else frozenset({spec.name, "index"})


def action_problem(action: str) -> str | None:
    """Why ``action`` cannot run once per item, if it cannot."""
    if action not in NO_SUSPEND:
        return None
    return (
        f"for_each cannot run action {action!r}: it parks its step (an approval, a child "
        f"run, a timer), not an item. Put one {action} step before or after the "
        "for_each step (needs: [...]) instead"
    )


# --- items -------------------------------------------------------------------------------

FAILED = frozenset({"failed", "timed_out", "interrupted"})
FINISHED = frozenset({"succeeded", "skipped", "cancelled"} | FAILED)


@dataclass
class Item:
    """One item of a fan-out, as the driver holds it and ``step_items`` stores it."""

    index: int
    value: Any
    status: str = "pending"
    attempts: int = 0
    output: dict[str, Any] | None = None
    error: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None

    @property
    def failed(self) -> bool:
        return self.status in FAILED

    def copy(self) -> Item:
        """The item as it is now (``dataclasses.replace`` costs 30 µs an item here)."""
        return Item(
            self.index,
            self.value,
            self.status,
            self.attempts,
            self.output,
            self.error,
            self.started_at,
            self.finished_at,
        )

    @property
    def done(self) -> bool:
        return self.status in FINISHED

    def shown(self) -> dict[str, Any]:
        """The item as the step's output lists it."""
        return {
            "item": self.value,
            "status": self.status,
            "output": self.output or {},
            "error": self.error,
            "attempts": self.attempts,
        }


def label(value: Any) -> str:
    """An item as a person reads it in a list of names: a host name, a number."""
    if isinstance(value, dict):
        for key in ("name", "id", "host"):
            if key in value:
                return str(value[key])
    return str(value)


@dataclass(frozen=True)
class Tally:
    """Where a fan-out stands: ``12/40 done, 1 failed, 5 running``."""

    total: int
    done: int = 0
    failed: int = 0
    running: int = 0
    failed_names: tuple[str, ...] = field(default=())
    """The first ``KEPT_NAMES`` failed items, by name."""

    @classmethod
    def of(cls, items: Iterable[Item]) -> Tally:
        items = list(items)
        counts = Counter(i.status for i in items)
        failed = [i for i in items if i.failed]
        return cls(
            total=len(items),
            done=sum(n for s, n in counts.items() if s in FINISHED),
            failed=len(failed),
            running=counts["running"] + counts["waiting"],
            failed_names=tuple(label(i.value) for i in failed[:KEPT_NAMES]),
        )

    def text(self) -> str:
        parts = [f"{self.done}/{self.total} done"]
        if self.failed:
            parts.append(f"{self.failed} failed")
        if self.running:
            parts.append(f"{self.running} running")
        return ", ".join(parts)

    def failures(self, shown: int = SHOWN_NAMES) -> str:
        """The failed items by name: the first few, then "and N more"."""
        return names(self.failed_names, shown, self.failed)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Tally:
        """From the run JSON's ``items`` (``json`` plus ``failed_items``)."""
        return cls(
            total=data["total"],
            done=data["done"],
            failed=data["failed"],
            running=data["running"],
            failed_names=tuple(data.get("failed_items") or ()),
        )

    def summary(self) -> str:
        """``12/40 done, 1 failed, 5 running; failed: web3``."""
        failed = self.failures()
        return self.text() + (f"; failed: {failed}" if failed else "")

    def json(self) -> dict[str, int]:
        return {
            "total": self.total,
            "done": self.done,
            "failed": self.failed,
            "running": self.running,
        }


def names(known: Sequence[str], shown: int = SHOWN_NAMES, count: int | None = None) -> str:
    """``web1, web2, web3 and 4 more``: the first ``shown`` of ``known`` names, out of
    ``count`` (default: as many as are known)."""
    head = ", ".join(known[:shown])
    rest = (len(known) if count is None else count) - min(shown, len(known))
    return f"{head} and {rest} more" if rest > 0 else head


def over_limit(spec: ForEach, items: Sequence[Item]) -> bool:
    """More items failed than the step tolerates: no new item may start."""
    return sum(1 for i in items if i.failed) > spec.limit(len(items))


def outcome(spec: ForEach, items: Sequence[Item]) -> tuple[str, str | None]:
    """The step's status and error once no item runs any more."""
    failed = [label(i.value) for i in items if i.failed]
    if len(failed) > spec.limit(len(items)):
        return "failed", f"{len(failed)} of {len(items)} items failed: {names(failed)}"
    return "succeeded", None


def output(items: Sequence[Item]) -> dict[str, Any]:
    """The step's output: its items in order, each with how it went."""
    return {"items": [i.shown() for i in items]}
