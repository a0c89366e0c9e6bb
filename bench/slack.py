"""Slack slash commands over HTTP: how fast ``/baton run`` is acknowledged, and how long
until its run card is posted, one at a time and 200 at once.

Baton is composed as ``baton serve`` composes it: the engine on a SQLite file (WAL) in a
temp folder, the Slack front end in HTTP mode with bolt's request verification on, and
Baton's aiohttp server on 127.0.0.1 serving ``POST /slack/events``. The fake Slack of the
tests (tests/fakes/slack.py) stands in for the Web API (``SLACK_API_URL``) and notes when
each card's ``chat.postMessage`` reached it. Every command is signed the way Slack signs
it and comes from a user and channel of its own, so the runs are independent.

The client runs in Baton's process and event loop, so its own cost (opening connections,
reading responses) is inside the figures; a real Slack adds network time instead. Baton
listens as ``baton serve`` does (aiohttp's TCPSite, listen backlog 128): connections beyond
the backlog that the loop has not accepted yet are dropped and the client's SYN is retried
a second later, which the "listen queue overflows" figure shows.
"""

from __future__ import annotations

import asyncio
import gc
import math
import os
import re
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import sqlalchemy as sa
from aiohttp import web
from pydantic import SecretStr

from bench.common import ONE_STEP_LOG, figure, heading, write_playbooks
from bot import api
from bot.app import Baton, open_baton
from bot.settings import Settings
from bot.slack.front import SlackFront
from engine import queries
from tests.fakes import slack as fake

CONCURRENT = int(os.environ.get("BATON_BENCH_SLACK_COMMANDS", "200"))
SEQUENTIAL = 50
WARM_UP = 5
CARD_INTERVAL = 1.0  # slack_card_interval: the default (only edits after the first wait)
ACK_TIMEOUT = 30.0  # per request; Slack itself gives up after 3 s
CARD_TIMEOUT = 30.0
SECRET = "bench-signing-secret-0123456789ab"
PLAYBOOK = "one"
RUN_IN_CARD = re.compile(r"run `([^`]+)`")


class TimedSlack(fake.FakeSlack):
    """The fake Slack, noting when each run card (a ``chat.postMessage`` outside any
    thread) arrives, per channel."""

    def __init__(self) -> None:
        super().__init__()
        self.cards: dict[str, tuple[float, str]] = {}  # channel -> (perf_counter, run id)
        self._waiting: dict[str, asyncio.Future[None]] = {}

    async def _record(self, call: fake.Call) -> None:
        at = time.perf_counter()
        if call.method == "chat.postMessage" and not call.args.get("thread_ts"):
            channel = str(call.args.get("channel"))
            if channel not in self.cards:
                text = str(call.args.get("text") or "") + str(call.args.get("blocks") or "")
                found = RUN_IN_CARD.search(text)
                self.cards[channel] = (at, found.group(1) if found else "")
                waiter = self._waiting.pop(channel, None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(None)
        await super()._record(call)

    def expect_card(self, channel: str) -> asyncio.Future[None]:
        waiter = asyncio.get_running_loop().create_future()
        if channel in self.cards:
            waiter.set_result(None)
        else:
            self._waiting[channel] = waiter
        return waiter


@dataclass
class Command:
    user: str
    channel: str
    body: str
    headers: dict[str, str]
    sent: float = 0.0
    acked: float = 0.0
    card_at: float = 0.0
    run_id: str = ""
    card: asyncio.Future[None] | None = field(default=None, repr=False)

    @property
    def ack_ms(self) -> float:
        return (self.acked - self.sent) * 1000

    @property
    def card_ms(self) -> float:
        return (self.card_at - self.sent) * 1000


@dataclass
class Served:
    slack: TimedSlack
    baton: Baton
    front: SlackFront
    url: str
    session: aiohttp.ClientSession
    numbers: int = 0

    def command(self) -> Command:
        """A signed ``/baton run`` from a user and channel of its own."""
        self.numbers += 1
        n = self.numbers
        user, channel = f"U0BENCH{n:05d}", f"C0BENCH{n:05d}"
        self.slack.channels[channel] = f"bench-{n}"
        fields = fake.slash_command(
            f"run {PLAYBOOK} who=user{n}",
            user=user,
            channel=channel,
            channel_name=f"bench-{n}",
            response_url=self.slack.response_url(f"bench-{n}"),
        )
        body, content_type = fake.encode_command(fields)
        return Command(user, channel, body, fake.sign(body, SECRET, content_type=content_type))

    async def send(self, command: Command) -> None:
        """POST it; note when it left and when its HTTP 200 came back."""
        command.card = self.slack.expect_card(command.channel)
        command.sent = time.perf_counter()
        async with self.session.post(
            f"{self.url}/slack/events", data=command.body.encode(), headers=command.headers
        ) as response:
            text = await response.text()
            command.acked = time.perf_counter()
        if response.status != 200 or text:  # ack() answers an empty 200
            raise RuntimeError(
                f"{command.user}'s command was answered {response.status}: {text[:500]!r}"
            )

    async def cards_of(self, commands: list[Command]) -> None:
        """Wait for every command's card; fail with what is missing after CARD_TIMEOUT."""
        try:
            async with asyncio.timeout(CARD_TIMEOUT):
                await asyncio.gather(*(c.card for c in commands if c.card is not None))
        except TimeoutError:
            missing = [c.channel for c in commands if c.channel not in self.slack.cards]
            replies = [call.args for call in self.slack.calls_to("response_url")][:5]
            raise RuntimeError(
                f"{len(missing)} of {len(commands)} run cards did not arrive within "
                f"{CARD_TIMEOUT:.0f}s (first: {missing[:5]}); answers sent instead: {replies}"
            ) from None
        for c in commands:
            at, run_id = self.slack.cards[c.channel]
            c.card_at, c.run_id = at, run_id


def settings_for(root: Path, slack: fake.FakeSlack) -> Settings:
    return Settings(
        _env_file=None,
        database_url=f"sqlite:///{root / 'baton.db'}",
        playbooks=root / "playbooks",
        key_file=root / "key",
        config=None,
        slack_bot_token=SecretStr(slack.bot_token),
        slack_app_token=None,
        slack_signing_secret=SecretStr(SECRET),
        slack_api_url=slack.url,
        slack_runs_channel=None,
        slack_oncall_channel=None,
        slack_card_interval=CARD_INTERVAL,
    )


@asynccontextmanager
async def served(root: Path) -> AsyncIterator[Served]:
    """The fake Slack, and Baton as ``baton serve`` composes it on a free port."""
    async with AsyncExitStack() as stack:
        slack = TimedSlack()
        await stack.enter_async_context(slack)
        settings = settings_for(root, slack)
        baton = await stack.enter_async_context(open_baton(settings))
        front = await stack.enter_async_context(SlackFront(settings, baton.commands()))
        runner = web.AppRunner(api.create_app(settings, baton, front), access_log=None)
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        connector = aiohttp.TCPConnector(limit=0)
        timeout = aiohttp.ClientTimeout(total=ACK_TIMEOUT)
        session = await stack.enter_async_context(
            aiohttp.ClientSession(connector=connector, timeout=timeout)
        )
        yield Served(slack, baton, front, f"http://127.0.0.1:{port}", session)
        if front.cards is not None:  # let the last card edits go out before closing
            await front.cards.idle()


def pct(values: list[float], p: float) -> float:
    """The nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


async def one_at_a_time(s: Served, n: int) -> list[Command]:
    """Each command on an idle server: the next leaves once the card of the last is in."""
    done = []
    for _ in range(n):
        command = s.command()
        await s.send(command)
        await s.cards_of([command])
        done.append(command)
    return done


async def check_runs(s: Served, commands: list[Command]) -> tuple[int, int]:
    """(runs the database holds for these commands, how many succeeded); each command
    must have exactly one run, the one its card names."""
    users = {c.user for c in commands}
    rows = await queries.list_runs(s.baton.store, limit=100_000, playbook=PLAYBOOK)
    runs = [r for r in rows if r["requested_by"] in users]
    by_user: dict[str, list[str]] = {}
    for r in runs:
        by_user.setdefault(r["requested_by"], []).append(r["id"])
    wrong = [c for c in commands if by_user.get(c.user) != [c.run_id]]
    if wrong:
        raise RuntimeError(
            f"{len(wrong)} commands lack exactly one run matching their card, e.g. "
            f"{wrong[0].user}: runs {by_user.get(wrong[0].user)}, card names {wrong[0].run_id!r}"
        )
    statuses = await asyncio.gather(*(s.baton.engine.wait_for(c.run_id) for c in commands))
    return len(runs), sum(1 for st in statuses if st.value == "succeeded")


def listen_overflows() -> int:
    """The kernel's count of connections dropped because a listen queue was full (all
    sockets; nothing else listens much here), or -1 where /proc/net/netstat is missing."""
    try:
        lines = Path("/proc/net/netstat").read_text().splitlines()
    except OSError:
        return -1
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        if names.startswith("TcpExt:"):
            table = dict(zip(names.split()[1:], values.split()[1:], strict=False))
            return int(table.get("ListenOverflows", -1))
    return -1


async def journal_mode(s: Served) -> str:
    def read(conn: sa.Connection) -> str:
        return str(conn.exec_driver_sql("PRAGMA journal_mode").scalar())

    return await s.baton.store.read(read)


async def bench() -> None:
    with tempfile.TemporaryDirectory(prefix="baton-bench-slack-") as tmp:
        root = Path(tmp)
        write_playbooks(root / "playbooks", {PLAYBOOK: ONE_STEP_LOG})
        async with served(root) as s:
            mode = await journal_mode(s)
            print(
                f"slack benchmarks (POST /slack/events on 127.0.0.1, bolt request "
                f"verification on, SQLite {mode} in a temp folder, fake Slack Web API, "
                f"one-step `log` playbook, slack_card_interval={CARD_INTERVAL:g} (default))"
            )
            await one_at_a_time(s, WARM_UP)

            seq = await one_at_a_time(s, SEQUENTIAL)
            heading(f"{SEQUENTIAL} slash commands, one at a time (each after the last card)")
            acks = [c.ack_ms for c in seq]
            figure("ack latency (POST -> HTTP 200), median", statistics.median(acks), "ms")
            figure("ack latency p95", pct(acks, 95), "ms")
            figure("ack latency p99", pct(acks, 99), "ms", "< 100 ms")
            figure("ack latency max", max(acks), "ms")
            cards_seq = [c.card_ms for c in seq]
            figure("POST -> run card at Slack, median", statistics.median(cards_seq), "ms")
            figure("POST -> run card at Slack, max", max(cards_seq), "ms")

            burst = [s.command() for _ in range(CONCURRENT)]
            assert s.front.cards is not None
            await s.front.cards.idle()
            posts_before = len(s.slack.calls_to("chat.postMessage"))
            updates_before = len(s.slack.calls_to("chat.update"))
            overflows_before = listen_overflows()
            t0 = time.perf_counter()
            await asyncio.gather(*(s.send(c) for c in burst))
            all_acked = time.perf_counter() - t0
            overflows = listen_overflows() - overflows_before
            await s.cards_of(burst)
            all_cards = max(c.card_at for c in burst) - t0
            runs, succeeded = await check_runs(s, burst)
            await s.front.cards.idle()
            channels = {c.channel for c in burst}
            cards = sum(
                1
                for call in s.slack.calls_to("chat.postMessage")
                if call.args.get("channel") in channels and not call.args.get("thread_ts")
            )
            answers = s.slack.calls_to("response_url")
            if answers:
                raise RuntimeError(f"commands answered instead of starting: {answers[0].args}")

            heading(f"{CONCURRENT} slash commands at once (asyncio.gather, one client session)")
            acks = [c.ack_ms for c in burst]
            figure("ack latency (POST -> HTTP 200), median", statistics.median(acks), "ms")
            figure("ack latency p95", pct(acks, 95), "ms")
            figure("ack latency p99", pct(acks, 99), "ms", "< 100 ms")
            figure("ack latency max", max(acks), "ms", "< 3,000 ms (Slack's limit)")
            to_card = [c.card_ms for c in burst]
            figure("POST -> run card at Slack, median", statistics.median(to_card), "ms")
            figure("POST -> run card at Slack, p99", pct(to_card, 99), "ms")
            figure("POST -> run card at Slack, max", max(to_card), "ms")
            figure("runs started (rows in the runs table)", f"{runs} of {CONCURRENT}")
            figure("runs succeeded", f"{succeeded} of {CONCURRENT}")
            figure("run cards posted", f"{cards} of {CONCURRENT}")
            figure(
                "chat.postMessage calls (cards + thread log lines)",
                len(s.slack.calls_to("chat.postMessage")) - posts_before,
            )
            figure(
                "chat.update calls (card edits)",
                len(s.slack.calls_to("chat.update")) - updates_before,
            )
            if overflows >= 0:
                figure(
                    "listen queue overflows (SYN retried after 1 s)",
                    str(overflows),
                    target="0",
                )
            figure("wall time: first POST -> last HTTP 200", all_acked * 1000, "ms")
            figure("wall time: first POST -> last run card", all_cards * 1000, "ms")
            if runs != CONCURRENT or cards != CONCURRENT:
                raise RuntimeError(f"{runs} runs and {cards} cards for {CONCURRENT} commands")


def main() -> None:
    # As `baton serve` runs: it raises the collector's thresholds (bot/app.py, serve).
    thresholds = gc.get_threshold()
    gc.set_threshold(50_000, 20, 100)
    try:
        asyncio.run(bench())
    finally:
        gc.set_threshold(*thresholds)
