"""The dashboard served for tests: the real app (``bot.api.create_app``) on SQLite with a
real engine and a manual clock, and who is logged in chosen per request by a test header
(``X-Test-Who: name:role``), put where the real login middleware puts it."""

from __future__ import annotations

import re
import textwrap
import warnings
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from bot import api
from bot.app import Baton, open_baton
from bot.dashboard import auth
from bot.settings import Settings
from engine.timing import ManualClock, ManualTimers

PLAYBOOKS = {
    "hello": """
        name: hello
        description: Say hello.
        params:
          who: {type: string, required: true, help: who to greet}
          times: {type: int, default: 1, min: 1, max: 3}
          token: {type: secret, default: hunter2}
        steps:
          - id: greet
            action: shell
            with: {argv: [echo, "hello {{ params.who }} x{{ params.times }}"]}
    """,
    "chain": """
        name: chain
        description: Three steps, the second fails.
        steps:
          - id: first
            action: log
            with: {message: "first done"}
          - id: second
            action: shell
            needs: first
            with: {argv: ["false"]}
          - id: third
            action: log
            needs: second
            with: {message: "never"}
    """,
    "gated": """
        name: gated
        description: Waits for bob or local, then logs.
        steps:
          - id: prepare
            action: log
            with: {message: "prepared"}
          - id: gate
            action: approval
            needs: prepare
            with: {approvers: [bob, local], message: "go?"}
          - id: after
            action: log
            needs: gate
            with: {message: "after the gate"}
    """,
    "nap": """
        name: nap
        description: Waits an hour.
        triggers:
          - schedule: {cron: "0 9 * * *", timezone: UTC}
        steps:
          - id: sleep
            action: wait
            with: {for: 1h}
    """,
}

TEST_WHO = "X-Test-Who"


@web.middleware
async def test_login(request: web.Request, handler: Any) -> web.StreamResponse:
    """What the real login middleware does, from a header: ``name:role``."""
    given = request.headers.get(TEST_WHO)
    if given:
        name, role = given.split(":")
        with warnings.catch_warnings():  # the interface's key is a string (auth.WHO)
            warnings.simplefilter("ignore", web.NotAppKeyWarning)
            request[auth.WHO] = auth.Who(name, role)
    return await handler(request)


def as_(name: str, role: str = "operator") -> dict[str, str]:
    return {TEST_WHO: f"{name}:{role}"}


@asynccontextmanager
async def dashboard(
    tmp_path: Path, playbooks: Mapping[str, str] = PLAYBOOKS, **settings: Any
) -> AsyncIterator[tuple[TestClient[Any, Any], Baton]]:
    folder = tmp_path / "playbooks"
    folder.mkdir(exist_ok=True)
    for name, text in playbooks.items():
        (folder / f"{name}.yaml").write_text(textwrap.dedent(text))
    config = Settings(
        database_url=f"sqlite:///{tmp_path / 'baton.db'}",
        playbooks=folder,
        key_file=tmp_path / "key",
        **settings,
    )
    clock = ManualClock()
    async with open_baton(config, clock=clock, timers=ManualTimers(clock)) as baton:
        app = api.create_app(config, baton)
        app.middlewares.insert(0, test_login)
        client = TestClient(TestServer(app))
        await client.start_server()
        try:
            yield client, baton
        finally:
            await client.close()


async def text_of(client: TestClient[Any, Any], path: str, status: int = 200, **kw: Any) -> str:
    resp = await client.get(path, **kw)
    body = await resp.text()
    assert resp.status == status, (path, resp.status, body[:2000])
    return body


def ids_in(body: str, attribute: str) -> list[str]:
    """The values of ``attribute="..."`` in a page, in order."""
    return re.findall(rf'{attribute}="([^"]*)"', body)
