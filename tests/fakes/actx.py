"""A real ``ActionContext`` for action tests, with a log that records its lines."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

import aiohttp

from engine.actions import ActionContext, stepenv


class RecordingLog:
    """An async ``ctx.log`` that keeps every line it is given."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.levels: list[str] = []

    async def __call__(self, message: str, level: str = "info") -> None:
        self.lines.append(message)
        self.levels.append(level)


def _no_http() -> aiohttp.ClientSession:
    raise AssertionError("this test context has no HTTP session: make_ctx(http=lambda: session)")


def make_ctx(**overrides: Any) -> ActionContext:
    """An ``ActionContext`` with harmless defaults; any field can be overridden."""
    fields: dict[str, Any] = {
        "run_id": "run-1",
        "step_id": "step-1",
        "attempt": 1,
        "params": {},
        "secrets": {},
        "requested_by": "U_TEST",
        "now": lambda: datetime(2024, 1, 1, tzinfo=UTC),
        "http": _no_http,
        "log": RecordingLog(),
        "env": stepenv.build(os.environ),  # what the engine gives by default
    }
    fields.update(overrides)
    return ActionContext(**fields)
