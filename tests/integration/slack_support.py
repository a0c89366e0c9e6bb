"""A served Baton with its Slack front end, talking to the fake Slack.

``SlackBaton`` opens the real composition: the engine on a real database, the Slack
front end (bolt AsyncApp, run cards), Baton's HTTP server on 127.0.0.1 with
``POST /slack/events`` — and a fake Slack Web API for everything Baton sends. Tests post
signed requests exactly as Slack would and assert on what the fake received and on the
rows in the database.
"""

from __future__ import annotations

import asyncio
import json
import random
import textwrap
from collections.abc import AsyncIterator, Awaitable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from bot import api
from bot.alerts import chat
from bot.app import Baton, open_baton
from bot.settings import Settings
from bot.slack.front import SlackFront
from engine import events as ev
from engine.timing import ManualClock, ManualTimers
from engine.views import queries
from tests.fakes import slack as fake

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"

HELLO = """
name: hello
description: Say hello.
params:
  who: {type: string, required: true, help: who to greet}
steps:
  - id: greet
    action: shell
    with: {argv: [echo, "hello {{ params.who }}"]}
"""

DEPLOY = """
name: deploy
description: Deploy a version.
params:
  env: {type: choice, choices: [staging, prod], required: true}
  version: {type: string, required: true, pattern: "v[0-9.]+"}
  replicas: {type: int, default: 2, min: 1, max: 10}
  canary: {type: bool, default: false}
  token: {type: secret, required: false}
steps:
  - id: ship
    action: log
    with: {message: "deploying {{ params.version }} to {{ params.env }}"}
"""

BOOM = """
name: boom
description: Fails loudly.
notify: {channel: C0ALERTS, mention: ["@oncall", U0CAROL]}
steps:
  - id: noisy
    action: shell
    with:
      script: |
        i=1; while [ $i -le 3000 ]; do echo "line $i of the noisy step"; i=$((i+1)); done
        echo "disk full" >&2
        exit 3
"""

SLOW = """
name: slow
description: Waits a long time.
steps:
  - id: nap
    action: wait
    with: {for: 1h}
"""

PLAYBOOKS = {"hello": HELLO, "deploy": DEPLOY, "boom": BOOM, "slow": SLOW}


@dataclass
class SlackBaton:
    slack: fake.FakeSlack
    baton: Baton
    front: SlackFront
    url: str
    session: aiohttp.ClientSession

    async def post(self, body: str, content_type: str, **kw: Any) -> tuple[int, str]:
        return await fake.post_signed(
            self.session, f"{self.url}/slack/events", body, content_type, SECRET, **kw
        )

    async def command(self, text: str, **kw: Any) -> tuple[int, str]:
        return await self.post(*fake.encode_command(fake.slash_command(text, **kw)))

    async def click(self, action_id: str, value: str, **kw: Any) -> tuple[int, str]:
        return await self.post(*fake.encode_interactive(fake.block_action(action_id, value, **kw)))

    async def event(self, payload: dict[str, Any], **kw: Any) -> tuple[int, str]:
        return await self.post(*fake.encode_event(payload), **kw)

    async def started(self, send: Awaitable[Any]) -> dict[str, Any]:
        """Send a request that starts a run; the run, once the engine has it."""
        with self.baton.engine.bus.subscribe(
            lambda e: isinstance(e, ev.RunStarted | ev.RunQueued)
        ) as events:
            await send
            async with asyncio.timeout(10):
                first = await events.queue.get()
        return await queries.get_run(self.baton.store, first.run_id)

    async def settle(self, run_id: str | None = None) -> None:
        """Let the work of the requests sent so far end, the run end (when given), and
        every card catch up with the events."""
        await self.front.idle()
        if run_id is not None:
            await self.baton.engine.wait_for(run_id)
        assert self.front.cards is not None
        await self.front.cards.idle()

    async def latest_run(self) -> dict[str, Any]:
        runs = await queries.list_runs(self.baton.store, limit=1)
        assert runs, "no run was started"
        return runs[0]

    async def card_of(self, run_id: str) -> dict[str, Any]:
        """The run's card as the fake holds it now."""
        post = await self.front.outbox.find(run_id, "card")
        assert post is not None and post.ts is not None, f"run {run_id} has no card"
        return self.slack.message(post.channel, post.ts)


def texts(message: dict[str, Any]) -> str:
    """Every bit of text in a message's blocks, for assertions."""
    return json.dumps(message.get("blocks") or [], ensure_ascii=False) + (message.get("text") or "")


def buttons(message: dict[str, Any]) -> list[str]:
    """The action ids of a message's buttons, in order."""
    return [
        e["action_id"]
        for b in message.get("blocks") or []
        if b["type"] == "actions"
        for e in b["elements"]
    ]


def write_playbooks(folder: Path, playbooks: dict[str, str]) -> None:
    folder.mkdir(exist_ok=True)
    for name, text in playbooks.items():
        (folder / f"{name}.yaml").write_text(textwrap.dedent(text))


def settings_for(tmp_path: Path, db_url: str, slack: fake.FakeSlack, **extra: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": db_url,
        "playbooks": tmp_path / "playbooks",
        "key_file": tmp_path / "key",
        "slack_bot_token": "xoxb-test",
        "slack_signing_secret": SECRET,
        "slack_api_url": slack.url,
        "slack_card_interval": 0,
        "slack_oncall_channel": "C0DEPLOYS",
        "api_token": "api-token",
    }
    return Settings(**{**values, **extra})


@asynccontextmanager
async def served(
    settings: Settings,
    slack: fake.FakeSlack,
    clock: ManualClock | None = None,
) -> AsyncIterator[SlackBaton]:
    """Baton as ``baton serve`` composes it, on 127.0.0.1 with a free port; with
    ``clock``, time (timers, deadlines) moves only when the test moves it."""
    async with AsyncExitStack() as stack:
        timers = ManualTimers(clock) if clock is not None else None
        baton = await stack.enter_async_context(open_baton(settings, clock=clock, timers=timers))
        rules = chat.load(settings.config)
        front = await stack.enter_async_context(
            SlackFront(settings, baton.commands(), baton.alerts, rules)
        )
        runner = web.AppRunner(api.create_app(settings, baton, front))
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        session = await stack.enter_async_context(aiohttp.ClientSession())
        yield SlackBaton(slack, baton, front, f"http://127.0.0.1:{port}", session)


def no_jitter(monkeypatch: Any) -> None:
    """slack_sdk's 429 handler waits Retry-After plus random() seconds: make it exact."""
    monkeypatch.setattr(random, "random", lambda: 0.0)
