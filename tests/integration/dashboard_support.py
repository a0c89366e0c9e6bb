"""The dashboard served for tests: the real app (``bot.api.create_app``) on SQLite with a
real engine and a manual clock, behind its real logins (``bot.dashboard.auth``).

People are under ``users:`` in a ``BATON_CONFIG`` of the test's own: alice and bob
(operators) and vera (a viewer). ``Site.visitor(name)`` is one person's browser: their
own cookies, logged in through ``/login`` with their token, and every POST carries the
CSRF token of a page they read, as the page's forms do. ``people=False`` leaves
``users:`` out: then the dashboard acts as the local person (the OS user, an operator)."""

from __future__ import annotations

import getpass
import hashlib
import html
import re
import textwrap
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer

from bot import api
from bot.app import Baton, open_baton
from bot.settings import Settings
from engine.runs.requests import RunRequest
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
        description: Waits for bob or alice, then logs.
        steps:
          - id: prepare
            action: log
            with: {message: "prepared"}
          - id: gate
            action: approval
            needs: prepare
            with: {approvers: [bob, alice], message: "go?"}
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

ROLES = {"alice": "operator", "bob": "operator", "vera": "viewer"}
LOCAL = getpass.getuser()
"""The local person's name: the dashboard without ``users:`` acts as the OS user."""


def token_of(name: str) -> str:
    return f"{name}-dashboard-token-0123456789"


def config_text() -> str:
    lines = ["users:"]
    for name, role in ROLES.items():
        digest = hashlib.sha256(token_of(name).encode()).hexdigest()
        lines.append(f"  {name}: {{token_sha256: {digest}, role: {role}}}")
    return "\n".join(lines) + "\n"


def csrf_in(page: str) -> str:
    """The CSRF token a dashboard page's forms carry."""
    found = re.search(r'name="csrf" value="([^"]*)"', page)
    assert found is not None and found.group(1), page[:2000]
    return found.group(1)


def form_fields(page: str, action: str) -> dict[str, str]:
    """The hidden inputs of the form posting to ``action`` on ``page`` (as a browser
    sends them); an AssertionError when the page has no such form (no such button)."""
    found = re.search(rf'<form[^>]*action="{re.escape(action)}"[^>]*>(.*?)</form>', page, re.S)
    assert found is not None, f"no form posting to {action}"
    hidden = re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', found.group(1))
    return {name: html.unescape(value) for name, value in hidden}


@dataclass
class Visitor:
    """One person's browser on the dashboard."""

    name: str
    client: TestClient[Any, Any]
    csrf: str = ""
    last: str = field(default="", repr=False)

    async def text(self, path: str, status: int = 200, **kw: Any) -> str:
        """The page at ``path`` (its CSRF token kept for the next POST)."""
        resp = await self.client.get(path, **kw)
        body = await resp.text()
        assert resp.status == status, (path, resp.status, body[:2000])
        if 'name="csrf"' in body:
            self.csrf, self.last = csrf_in(body), body
        return body

    async def post(self, path: str, data: Mapping[str, str] | None = None) -> ClientResponse:
        """A POST with the CSRF token of the last page read (no button needed: what a
        hand-made form or a script would send)."""
        assert self.csrf, "read a page first: its forms carry the CSRF token"
        sent = {"csrf": self.csrf, **(data or {})}
        return await self.client.post(path, data=sent, allow_redirects=False)

    async def submit(self, page: str, action: str, **fields: str) -> ClientResponse:
        """Read ``page``, then press the button of its form posting to ``action``, with
        ``fields`` typed in (the form's hidden inputs, its CSRF token among them, go
        too)."""
        body = await self.text(page)
        data = {**form_fields(body, action), **fields}
        return await self.client.post(action, data=data, allow_redirects=False)


@dataclass
class Site:
    baton: Baton
    server: TestServer
    clients: list[TestClient[Any, Any]] = field(default_factory=list)

    async def browser(self) -> TestClient[Any, Any]:
        client = TestClient(self.server)
        await client.start_server()
        self.clients.append(client)
        return client

    async def visitor(self, name: str) -> Visitor:
        """``name`` logged in with their own token (the local person: no login)."""
        client = await self.browser()
        visitor = Visitor(name, client)
        if name == LOCAL:
            await visitor.text("/")
            return visitor
        form = await visitor.text("/login")
        sent = {"token": token_of(name), "csrf": csrf_in(form), "next": "/"}
        resp = await client.post("/login", data=sent, allow_redirects=False)
        assert resp.status == 303, (name, resp.status, await resp.text())
        home = await visitor.text("/")
        assert f"{name} ({ROLES[name]})" in home
        return visitor


@asynccontextmanager
async def dashboard(
    tmp_path: Path, playbooks: Mapping[str, str] = PLAYBOOKS, people: bool = True, **given: Any
) -> AsyncIterator[Site]:
    folder = tmp_path / "playbooks"
    folder.mkdir(exist_ok=True)
    for name, text in playbooks.items():
        (folder / f"{name}.yaml").write_text(textwrap.dedent(text))
    if people:
        (tmp_path / "baton.yaml").write_text(config_text())
        given.setdefault("config", tmp_path / "baton.yaml")
    given.setdefault("database_url", f"sqlite:///{tmp_path / 'baton.db'}")
    settings = Settings(
        playbooks=folder,
        key_file=tmp_path / "key",
        **given,
    )
    clock = ManualClock()
    async with open_baton(settings, clock=clock, timers=ManualTimers(clock)) as baton:
        server = TestServer(api.create_app(settings, baton))
        await server.start_server()
        site = Site(baton, server)
        try:
            yield site
        finally:
            for client in site.clients:
                await client.close()
            await server.close()


async def start(baton: Baton, playbook: str, by: str = "alice", **params: Any) -> str:
    """A run through the engine, a second after the one before (so they sort by time)."""
    clock = baton.engine.clock
    assert isinstance(clock, ManualClock)
    clock.advance(timedelta(seconds=1))
    run_id = await baton.engine.start_run(
        RunRequest(playbook=playbook, params=params, requested_by=by, trigger="api")
    )
    await baton.engine.wait_idle()
    return run_id


def ids_in(body: str, attribute: str) -> list[str]:
    """The values of ``attribute="..."`` in a page, in order."""
    return re.findall(rf'{attribute}="([^"]*)"', body)
