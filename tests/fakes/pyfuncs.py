"""Sample callables for the ``python`` action tests (``tests.fakes.pyfuncs:NAME``)."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from engine.actions import ActionContext
from engine.errors import ActionError

NOT_CALLABLE = 42


async def greet(ctx: ActionContext, name: str, punctuation: str = "!") -> dict[str, Any]:
    await ctx.log(f"greeting {name}")
    return {"greeting": f"hello {name}{punctuation}", "run": ctx.run_id}


async def nothing(ctx: ActionContext) -> None:
    return None


async def answer(ctx: ActionContext) -> int:
    return 42


async def explode(ctx: ActionContext, what: str = "boom") -> None:
    raise RuntimeError(what)


async def refuse(ctx: ActionContext) -> None:
    raise ActionError("refused on purpose", output={"reason": "test"})


def plain(ctx: ActionContext) -> dict[str, Any]:
    return {}


class Tools:
    @staticmethod
    async def ping(ctx: ActionContext) -> dict[str, Any]:
        return {"pong": True}


class Callable:
    async def __call__(self, ctx: ActionContext, n: int) -> dict[str, Any]:
        return {"double": n * 2}


instance = Callable()


async def unstorable(ctx: ActionContext) -> dict[str, Any]:
    """What no database stores as it is: a lone surrogate, a NUL, NaN and infinities."""
    await ctx.log("log \ud800 line\x00")
    return {
        "text": "a\ud800b\x00c",
        "numbers": [float("nan"), float("inf"), -float("inf"), 1.5],
        "\udcffkey": "value",
    }


async def _appears(path: str, within: float) -> None:
    """Until ``path`` exists (looked for every 20 ms), up to ``within`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await asyncio.to_thread(os.path.exists, path):
        if loop.time() > deadline:
            raise TimeoutError(f"{path} did not appear within {within:g} s")
        await asyncio.sleep(0.02)


async def wait_for_file(ctx: ActionContext, path: str, within: float = 30.0) -> dict[str, Any]:
    """A running step that logs as it goes: a line, then (once a test creates ``path``)
    another. It looks for the file every 20 ms, up to ``within`` seconds."""
    name = os.path.basename(path)
    await ctx.log(f"waiting for {name}")
    await _appears(path, within)
    await ctx.log(f"{name} appeared")
    return {"waited_for": name}


async def lines_between_files(
    ctx: ActionContext, dir: str, lines: int = 3, within: float = 30.0
) -> dict[str, Any]:
    """Once a test creates ``dir``/go, log ``lines`` lines; then end once it creates
    ``dir``/stop (the lines are logged while the step still runs)."""
    await _appears(os.path.join(dir, "go"), within)
    for n in range(1, lines + 1):
        await ctx.log(f"line {n} of {lines}")
    await _appears(os.path.join(dir, "stop"), within)
    return {"lines": lines}
