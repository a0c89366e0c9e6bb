"""Slack slash commands over HTTP: how fast ``/baton run`` is acknowledged, and how long
until its run card is posted, one at a time and 200 at once.

Baton is composed as ``baton serve`` composes it: the engine on a SQLite file (WAL) in a
temp folder, the Slack front end in HTTP mode with bolt's request verification on (its
listeners ack at once and carry the work out in tasks the front end tracks), and Baton's
aiohttp server on 127.0.0.1 serving ``POST /slack/events`` with a listen backlog of 1024.
The fake Slack of the tests (tests/fakes/slack.py) stands in for the Web API
(``SLACK_API_URL``) and notes when each card's ``chat.postMessage`` reached it. Every
command is signed the way Slack signs it and comes from a user and channel of its own, so
the runs are independent.

The commands come from another process (bench/slack_client.py), as they would from Slack,
so Baton's event loop does not also pay for the client; on a machine with one core the
two still share it. Both sides take times from ``time.monotonic()`` (CLOCK_MONOTONIC, one
clock for the whole system), so a command's send time in the client and its card's
arrival at the fake Slack here can be subtracted. A real Slack adds network time. The
"listen queue overflows" figure is the kernel's count for every socket on the machine
(nothing else here listens much): connections the listen queue had no room for, whose
SYN the client retries a second later; with the backlog of 1024 it should stay 0.
"""

from __future__ import annotations

import asyncio
import os
import re
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import SecretStr

from bench import served, slack_client
from bench.common import ONE_STEP_LOG, figure, heading, latencies, pct, write_playbooks
from bot.app import Baton
from bot.settings import Settings
from bot.slack.front import SlackFront
from engine.views import queries
from tests.fakes import slack as fake

CONCURRENT = int(os.environ.get("BATON_BENCH_SLACK_COMMANDS", "200"))
SEQUENTIAL = 50
WARM_UP = 5
CARD_INTERVAL = 1.0  # slack_card_interval: the default (only edits after the first wait)
ACK_TIMEOUT = 30.0  # per request; Slack itself gives up after 3 s
CARD_TIMEOUT = 30.0
CLIENT_TIMEOUT = 60.0  # for the client process to start, or to answer a batch
SECRET = "bench-signing-secret-0123456789ab"
PLAYBOOK = slack_client.PLAYBOOK
RUN_IN_CARD = re.compile(r"run `([^`]+)`")


class TimedSlack(fake.FakeSlack):
    """The fake Slack, noting when each run card (a ``chat.postMessage`` outside any
    thread) arrives, per channel."""

    def __init__(self) -> None:
        super().__init__()
        self.cards: dict[str, tuple[float, str]] = {}  # channel -> (monotonic, run id)
        self._waiting: dict[str, asyncio.Future[None]] = {}

    async def _record(self, call: fake.Call) -> None:
        at = time.monotonic()
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
    n: int
    user: str
    channel: str
    sent: float = 0.0  # time.monotonic(), in the client process
    acked: float = 0.0
    card_at: float = 0.0  # time.monotonic(), when the fake Slack got the card
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
    client: served.ClientProcess  # bench/slack_client.py: sends commands n .. n+k-1 at once
    numbers: int = 0

    def commands(self, count: int) -> list[Command]:
        """The next ``count`` commands, each from a user and channel of its own, their
        channels known to the fake Slack and their cards awaited."""
        made = []
        for n in range(self.numbers + 1, self.numbers + count + 1):
            channel = slack_client.channel_of(n)
            self.slack.channels[channel] = slack_client.channel_name_of(n)
            command = Command(n, slack_client.user_of(n), channel)
            command.card = self.slack.expect_card(channel)
            made.append(command)
        self.numbers += count
        return made

    async def send(self, commands: list[Command]) -> tuple[float, float]:
        """Have the client POST them all at once; note when each left and when its HTTP
        200 came back. Returns when the first left and when the last answer was read."""
        answer = await self.client.ask({"first": commands[0].n, "count": len(commands)})
        by_n = {c.n: c for c in commands}
        for r in answer["requests"]:
            command = by_n[r["n"]]
            command.sent, command.acked = r["sent"], r["acked"]
            if r["error"] or r["status"] != 200 or r["text"]:  # ack() answers an empty 200
                raise RuntimeError(
                    f"{command.user}'s command was answered {r['status']} "
                    f"{r['error'] or repr(r['text'][:500])}"
                )
        return answer["start"], answer["end"]

    async def settle(self) -> None:
        """Wait for the work of every request so far and the card edits it caused."""
        await self.front.idle()
        if self.front.cards is not None:
            await self.front.cards.idle()

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
    return served.settings_in(
        root,
        slack_bot_token=SecretStr(slack.bot_token),
        slack_app_token=None,
        slack_signing_secret=SecretStr(SECRET),
        slack_api_url=slack.url,
        slack_runs_channel=None,
        slack_oncall_channel=None,
        slack_card_interval=CARD_INTERVAL,
    )


@asynccontextmanager
async def serving(root: Path) -> AsyncIterator[Served]:
    """The fake Slack, Baton as ``baton serve`` composes it on a free port, and the client
    process pointed at it."""
    async with AsyncExitStack() as stack:
        slack = TimedSlack()
        await stack.enter_async_context(slack)
        c = await stack.enter_async_context(served.composed(settings_for(root, slack), slack=True))
        assert c.front is not None
        client = await served.ClientProcess.start(
            "bench.slack_client",
            [
                f"{c.url}/slack/events",
                "--response-url",
                slack.response_url("bench-{n}"),
                "--timeout",
                str(ACK_TIMEOUT),
            ],
            {slack_client.SECRET_ENV: SECRET},
            "the Slack client process",
            CLIENT_TIMEOUT,
        )
        stack.push_async_callback(client.close)
        s = Served(slack, c.baton, c.front, client)
        yield s
        await s.settle()  # let the last card edits go out before closing


async def one_at_a_time(s: Served, n: int) -> list[Command]:
    """Each command on an idle server: the next leaves once the card of the last is in."""
    done = []
    for _ in range(n):
        command = s.commands(1)
        await s.send(command)
        await s.cards_of(command)
        done += command
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


async def bench() -> None:
    with tempfile.TemporaryDirectory(prefix="baton-bench-slack-") as tmp:
        root = Path(tmp)
        write_playbooks(root / "playbooks", {PLAYBOOK: ONE_STEP_LOG})
        async with serving(root) as s:
            mode = await served.journal_mode(s.baton)
            print(
                f"slack benchmarks (POST /slack/events on 127.0.0.1, listen backlog "
                f"{served.BACKLOG}, bolt request verification on, SQLite {mode} in a temp folder, "
                f"fake Slack Web API, one-step `log` playbook, "
                f"slack_card_interval={CARD_INTERVAL:g} (default); commands sent by a "
                f"client process of their own, {os.cpu_count()} CPUs)"
            )
            await one_at_a_time(s, WARM_UP)

            seq = await one_at_a_time(s, SEQUENTIAL)
            heading(f"{SEQUENTIAL} slash commands, one at a time (each after the last card)")
            latencies("ack latency", "POST -> HTTP 200", [c.ack_ms for c in seq], "< 100 ms")
            cards_seq = [c.card_ms for c in seq]
            figure("POST -> run card at Slack, median", statistics.median(cards_seq), "ms")
            figure("POST -> run card at Slack, max", max(cards_seq), "ms")

            await s.settle()
            burst = s.commands(CONCURRENT)
            posts_before = len(s.slack.calls_to("chat.postMessage"))
            updates_before = len(s.slack.calls_to("chat.update"))
            overflows_before = served.listen_overflows()
            t0, t1 = await s.send(burst)
            all_acked = t1 - t0
            overflows = served.listen_overflows() - overflows_before
            await s.cards_of(burst)
            all_cards = max(c.card_at for c in burst) - t0
            runs, succeeded = await check_runs(s, burst)
            await s.settle()
            channels = {c.channel for c in burst}
            cards = sum(
                1
                for call in s.slack.calls_to("chat.postMessage")
                if call.args.get("channel") in channels and not call.args.get("thread_ts")
            )
            answers = s.slack.calls_to("response_url")
            if answers:
                raise RuntimeError(f"commands answered instead of starting: {answers[0].args}")

            heading(
                f"{CONCURRENT} slash commands at once (client process: asyncio.gather, "
                "one aiohttp session)"
            )
            latencies(
                "ack latency",
                "POST -> HTTP 200",
                [c.ack_ms for c in burst],
                "< 100 ms",
                max_target="< 3,000 ms (Slack's limit)",
            )
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
    served.run_as_served(bench)
