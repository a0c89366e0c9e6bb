"""Shared set-up: a temp folder with playbooks, a real Store and a real Engine."""

from __future__ import annotations

import asyncio
import math
import statistics
import tempfile
import textwrap
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from engine.actions import ActionContext
from engine.actions.registry import Registry
from engine.playbooks.catalog import Catalog
from engine.runs.engine import Engine
from engine.runs.requests import RunRequest
from engine.secrets import SecretBox
from engine.timing import SchedulerTimers
from storage.store import Store

STEPS = 50
FAN_OUT = 20


class NoopInputs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    message: str = ""


class NoopAction:
    """An in-process action that does nothing: what is left is the engine's own cost."""

    name: ClassVar[str] = "noop"
    Inputs: ClassVar[type[BaseModel]] = NoopInputs
    calls = 0

    async def run(self, ctx: ActionContext, inputs: NoopInputs) -> dict[str, Any]:
        NoopAction.calls += 1
        return {}


def chain(name: str, action: str, steps: int = STEPS) -> str:
    """A sequential playbook: each step needs the one before."""
    lines = [f"name: {name}", "steps:"]
    for i in range(steps):
        lines += [f"  - id: s{i}", f"    action: {action}"]
        if i:
            lines.append(f"    needs: s{i - 1}")
        lines.append(f"    with: {{message: 'step {i}'}}")
    return "\n".join(lines) + "\n"


def fan(name: str, action: str, width: int = FAN_OUT) -> str:
    """One step, ``width`` parallel steps needing it, one join step needing them all."""
    mids = [f"m{i}" for i in range(width)]
    lines = [f"name: {name}", "steps:", f"  - id: first\n    action: {action}"]
    for m in mids:
        lines += [f"  - id: {m}", f"    action: {action}", "    needs: first"]
        lines.append(f"    with: {{message: '{m}'}}")
    lines += ["  - id: join", f"    action: {action}", f"    needs: [{', '.join(mids)}]"]
    return "\n".join(lines) + "\n"


FOREACH_ITEMS = 1000
FOREACH_PARALLEL = 50


def for_each(name: str, action: str, items: int, parallel: int) -> str:
    """One ``for_each`` step over ``range(items)``, ``parallel`` items at a time."""
    return textwrap.dedent(f"""\
        name: {name}
        steps:
          - id: each
            action: {action}
            for_each: {{items: "{{{{ range({items}) | list }}}}", parallel: {parallel}}}
            with: {{message: "item {{{{ item }}}} of {{{{ index }}}}"}}
        """)


PLAYBOOKS = {
    "chain-noop": chain("chain-noop", "noop"),
    "chain-log": chain("chain-log", "log"),
    "fan-noop": fan("fan-noop", "noop"),
    "one-noop": chain("one-noop", "noop", 1),
    "one-log": chain("one-log", "log", 1),
    "foreach-log": for_each("foreach-log", "log", FOREACH_ITEMS, FOREACH_PARALLEL),
}

ONE_STEP_LOG = textwrap.dedent(
    """\
    name: one
    steps:
      - id: hello
        action: log
        with: {message: "hello {{ params.who }}"}
    params:
      who: {default: bench}
    """
)


def write_playbooks(folder: Path, playbooks: dict[str, str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in playbooks.items():
        (folder / f"{name}.yaml").write_text(text)


@dataclass
class Bench:
    root: Path
    store: Store
    engine: Engine
    events: int = 0

    async def run(self, playbook: str) -> str:
        run_id = await self.engine.start_run(
            RunRequest(playbook=playbook, params={}, requested_by="bench", trigger="cli")
        )
        status = await self.engine.wait_for(run_id)
        if status.value != "succeeded":
            raise RuntimeError(f"run {run_id} of {playbook} ended {status}")
        return run_id


async def open_store(root: Path) -> Store:
    """A Store on ``root/bench.db`` (SQLite, WAL), opened."""
    store = Store(f"sqlite:///{root / 'bench.db'}")
    await store.open()
    return store


def new_engine(root: Path, store: Store) -> Engine:
    """A real Engine on ``store``: the playbooks in ``root/playbooks``, the built-in actions
    plus ``noop``, the real SchedulerTimers (APScheduler). Not started."""
    registry = Registry.from_entry_points()
    registry.add("noop", NoopAction())
    catalog = Catalog.load(root / "playbooks", registry)
    if catalog.problems:
        raise RuntimeError("\n".join(map(str, catalog.problems)))
    return Engine(
        store=store,
        catalog=catalog,
        registry=registry,
        secret_box=SecretBox.from_settings(None, root / "key"),
        timers=SchedulerTimers(),
    )


@asynccontextmanager
async def open_bench(subscriber: bool = True) -> AsyncIterator[Bench]:
    """A real engine on a SQLite WAL file in a fresh temp folder.

    ``subscriber`` adds one event consumer (as the Slack notifier would be in a server),
    so publishing costs what it costs in production.
    """
    with tempfile.TemporaryDirectory(prefix="baton-bench-") as tmp:
        root = Path(tmp)
        write_playbooks(root / "playbooks", PLAYBOOKS)
        store = await open_store(root)
        engine = new_engine(root, store)
        bench = Bench(root, store, engine)
        consumer: asyncio.Task[None] | None = None
        if subscriber:
            sub = engine.bus.subscribe()

            async def consume() -> None:
                async for _ in sub:
                    bench.events += 1

            consumer = asyncio.create_task(consume())
        await engine.start()
        try:
            yield bench
        finally:
            await engine.stop(drain=5)
            if consumer is not None:
                consumer.cancel()
            await store.close()


class Timer:
    def __init__(self) -> None:
        self.start = 0.0
        self.elapsed = 0.0

    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.elapsed = time.perf_counter() - self.start


def figure(label: str, value: float | str, unit: str = "", target: str = "") -> None:
    text = value if isinstance(value, str) else _num(value)
    line = f"  {label:<52} {text}{(' ' + unit) if unit else ''}"
    if target:
        line = f"{line:<80} [target {target}]"
    print(line, flush=True)


def _num(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}" if value < 1 else f"{value:.2f}"


def pct(values: list[float], p: float) -> float:
    """The nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def latencies(
    name: str, measured: str, ms: list[float], p99_target: str, max_target: str = ""
) -> None:
    """The median, p95, p99 and max of ``ms`` as figures: "``name`` (``measured``),
    median", "``name`` p95" and so on."""
    figure(f"{name} ({measured}), median", statistics.median(ms), "ms")
    figure(f"{name} p95", pct(ms, 95), "ms")
    figure(f"{name} p99", pct(ms, 99), "ms", p99_target)
    figure(f"{name} max", max(ms), "ms", max_target)


def heading(text: str) -> None:
    print(f"\n{text}", flush=True)
