"""Run cards: the engine's events, rendered into Slack (the feed: intake, pacing, where
each card goes, what it shows).

One card per run, posted where the run was asked for (the channel of the slash command,
the thread of the mention, the DM) — or, for runs nobody asked for in Slack (schedules,
the API, the console), in the runs channel when one is set. The card is edited in place
as the run moves; details go into its thread: failed steps with their error and output
(the whole output uploaded as a file when it is longer than a message holds), log lines,
and on failure a notice with a Retry button, also posted in the on-call channel
mentioning whoever the playbook names.

Each run has one flusher task, so a run's messages keep their order (the card exists
before anything is posted in its thread) and a run's card is edited at most once per
``interval`` seconds: events that arrive meanwhile are folded into the next edit. Every
message is claimed in the outbox before it is posted, so a retried event, a restart or
another Baton never posts it twice; after a restart the card is found there and edited.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack import blocks
from bot.slack.cards.approvals import Approvals
from bot.slack.cards.notices import Failure, Notices
from bot.slack.cards.options import CardOptions
from bot.slack.cards.posting import Poster
from bot.slack.people import Directory
from engine import events as ev
from engine.bus import Subscription
from engine.errors import BatonError
from engine.runs.engine import Engine
from engine.runs.outbox import Outbox, Post
from engine.views import queries

log = logging.getLogger("bot.slack.cards")


@dataclass
class _Run:
    """What is waiting to be shown about one run."""

    run_id: str
    dirty: bool = True
    finished: bool = False
    failures: list[Failure] = field(default_factory=list)
    logs: list[tuple[str | None, str, str]] = field(default_factory=list)
    notice: bool = False
    task: asyncio.Task[None] | None = None
    last_edit: float = float("-inf")
    place: tuple[str, str | None, str | None] | None = None  # channel, thread, requester
    skip: bool = False
    card: Post | None = None
    cardless: bool = False  # a child run: its gates and failures go to the parent's thread
    source: dict[str, Any] = field(default_factory=dict)
    resolved: list[ev.AlertResolved] = field(default_factory=list)
    details: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    gates: set[str] = field(default_factory=set)
    nudges: list[tuple[str, str, dict[str, list[str]]]] = field(default_factory=list)


class Cards:
    def __init__(
        self,
        *,
        engine: Engine,
        client: AsyncWebClient,
        outbox: Outbox,
        directory: Directory,
        options: CardOptions,
    ) -> None:
        self.engine = engine
        self.client = client
        self.outbox = outbox
        self.directory = directory
        self.options = options
        self.poster = Poster(engine=engine, client=client, outbox=outbox)
        poster = self.poster
        self.approvals = Approvals(
            engine=engine, poster=poster, directory=directory, options=options
        )
        self.notices = Notices(engine=engine, poster=poster, directory=directory, options=options)
        self._runs: dict[str, _Run] = {}
        self._pump: asyncio.Task[None] | None = None
        self._sub: Subscription | None = None
        self._held: dict[str, ev.AlertsHeld] = {}
        self._held_flushers: dict[str, asyncio.Task[None]] = {}
        self._held_shown: dict[str, tuple[int, float]] = {}
        self.monotonic = time.monotonic  # how edits are spaced; tests give a clock of theirs
        self.sleep = asyncio.sleep

    async def start(self) -> None:
        self._sub = self.engine.bus.subscribe()
        self._pump = asyncio.create_task(self._read(), name="slack-cards")
        await self._catch_up()

    async def _catch_up(self) -> None:
        """Show what happened while no one was listening: runs resumed before Slack
        connected, gates whose prompt a crash kept from being posted, and runs that ended
        in the last hour (their last edit may have been lost). Posting is idempotent
        (the outbox), so catching up twice changes nothing."""
        store = self.engine.store
        gates = await queries.open_gates(store)
        since = self.engine.clock.now() - timedelta(hours=1)
        ended = await queries.finished_with_card(store, since)
        for run_id in self.engine.active_runs:
            self.touch(run_id)
        for run_id in ended:
            self.touch(run_id).finished = True  # one edit, then forgotten
        for run_id, gate in gates:
            if run_id in self._runs:
                self._runs[run_id].gates.add(gate)

    async def stop(self, grace: float = 5.0) -> None:
        """Stop reading events; give the cards still being written ``grace`` seconds."""
        if self._sub is not None:
            self._sub.close()
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
        pending = [r.task for r in self._runs.values() if r.task and not r.task.done()]
        pending += [task for task in self._held_flushers.values() if not task.done()]
        if pending:
            _, late = await asyncio.wait(pending, timeout=grace)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)

    async def idle(self) -> None:
        """Wait until every event read so far is shown (tests and the bench use it)."""
        while True:
            if self._sub is not None and not self._sub.queue.empty():
                await asyncio.sleep(0)
                continue
            pending = [r.task for r in self._runs.values() if r.task and not r.task.done()]
            pending += [task for task in self._held_flushers.values() if not task.done()]
            if not pending:
                return
            await asyncio.wait(pending)

    async def _read(self) -> None:
        assert self._sub is not None
        async for event in self._sub:
            try:
                self.note(event)
            except Exception:
                log.exception("could not take %r for Slack", event)

    def touch(self, run_id: str) -> _Run:
        """Make sure the card of ``run_id`` shows its current state soon."""
        run = self._runs.get(run_id)
        if run is None:
            run = self._runs[run_id] = _Run(run_id)
        if run.skip:
            return run
        run.dirty = True
        if run.task is None or run.task.done():
            run.task = asyncio.create_task(self._flush(run), name=f"card-{run.run_id}")
        return run

    def note(self, event: ev.Event) -> None:
        """Take one event: remember what to show, and make sure a flusher runs."""
        if isinstance(event, ev.AlertsHeld):
            self._note_held(event)
            return
        run = self._runs.get(event.run_id)
        if run is None:
            run = self._runs[event.run_id] = _Run(event.run_id)
        if run.skip:
            if isinstance(event, ev.RunFinished):
                del self._runs[event.run_id]
            return
        match event:
            case ev.RunStarted():
                run.finished = False
            case ev.StepFailed(will_retry=False):
                run.failures.append(
                    Failure(event.step_id, event.attempt, event.error, dict(event.output))
                )
            case ev.StepSucceeded() if blocks.has_text(event.output):
                run.details.append((event.step_id, dict(event.output)))
            case ev.RunLogged():
                run.logs.append((event.step_id, event.level, event.message))
            case ev.ApprovalEscalated():
                run.gates.add(event.approval_id)
                run.nudges.append((event.approval_id, "escalated", event.added))
            case ev.ApprovalReminded():
                run.nudges.append((event.approval_id, "reminder", event.approvers))
            case ev.ApprovalRequested() | ev.ApprovalDecided() | ev.ApprovalClosed():
                run.gates.add(event.approval_id)
            case ev.AlertResolved():
                run.resolved.append(event)
            case ev.RunFinished():
                run.finished = True
                run.notice = run.notice or event.status in ("failed", "timed_out")
        self.touch(run.run_id)

    # --- alerts held by a rate limit ------------------------------------------------------

    def _note_held(self, event: ev.AlertsHeld) -> None:
        """One message per hold episode, edited as the count grows (at the cards' pace)."""
        channel = event.channel or self.options.runs_channel or self.options.oncall_channel
        if channel is None:
            return
        self._held[event.key] = event
        running = self._held_flushers.get(event.key)
        if running is None or running.done():
            task = asyncio.create_task(self._flush_held(event.key, channel), name="held")
            self._held_flushers[event.key] = task

    async def _flush_held(self, key: str, channel: str) -> None:
        shown, last = self._held_shown.get(key, (0, float("-inf")))
        try:
            while self._held[key].held != shown:
                wait = last + self.options.interval - self.monotonic()
                if wait > 0:
                    await self.sleep(wait)
                event = self._held[key]
                shown, last = event.held, self.monotonic()
                self._held_shown[key] = (shown, last)
                name = blocks.escape(event.name)
                line = (
                    f":pause_button: {event.held} more *{name}* alert"
                    f"{'s' * (event.held > 1)} held: over the limit of {event.limit}. They "
                    "are stored, not run: `alerts held` lists them."
                )
                run_id = "held-" + hashlib.sha1(key.encode()).hexdigest()[:24]
                await self.poster.upsert(
                    run_id, "held", "", channel, None, line, [blocks.section(line)]
                )
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("could not post the held alerts of %s", key)

    # --- one run's flusher -------------------------------------------------------------

    async def _flush(self, run: _Run) -> None:
        try:
            if run.place is None and not await self._locate(run):
                run.skip = True
                return
            while run.dirty:
                wait = run.last_edit + self.options.interval - self.monotonic()
                if wait > 0:
                    await self.sleep(wait)  # coalesce: events meanwhile join this edit
                run.dirty = False
                run.last_edit = self.monotonic()
                await self._show(run)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("could not update the Slack card of run %s", run.run_id)
        finally:
            if run.finished and not run.dirty and self._runs.get(run.run_id) is run:
                del self._runs[run.run_id]

    async def _locate(self, run: _Run) -> bool:
        """Where this run's card goes; False when it has none (a child run, or a run not
        asked for in Slack with no runs channel set)."""
        try:
            origin = await queries.run_origin(self.engine.store, run.run_id)
        except BatonError:
            return False
        if origin["parent_run_id"]:  # a step of its parent's card; talks in that thread
            parent_id = origin["parent_run_id"]
            posting = self._runs.get(parent_id)
            if posting is not None and posting.task is not None and not posting.task.done():
                await asyncio.shield(posting.task)  # the parent's card is on its way
            parent = await self.outbox.find(parent_id, "card")
            if parent is None or parent.ts is None:
                return False
            run.cardless = True
            run.place = (parent.channel, parent.thread_ts or parent.ts, None)
            return True
        source = run.source = origin["source"]
        channel = None
        if source.get("front_end") in ("slack", "alert"):
            channel = source.get("channel")
        if channel is None:
            channel = self.options.runs_channel
            if channel is None:
                return False
            run.place = (channel, None, None)
            return True
        run.place = (channel, source.get("thread_ts"), source.get("user"))
        return True

    async def _show(self, run: _Run) -> None:
        failures, run.failures = run.failures, []
        logs, run.logs = run.logs, []
        notice, run.notice = run.notice, False
        gates, run.gates = run.gates, set()
        nudges, run.nudges = run.nudges, []
        resolved, run.resolved = run.resolved, []
        details, run.details = run.details, []
        data = await queries.get_run(self.engine.store, run.run_id)
        if run.cardless:
            assert run.place is not None
            channel, thread_ts, _ = run.place
            card = Post(run.run_id, "", "card", channel, thread_ts, thread_ts, "posted")
        else:
            found = await self._card(run, data)
            if found is None or found.ts is None:
                # no card (Slack refused it): the gates and the failure still go where
                # they can, the approvals and on-call channels
                for gate in sorted(gates):
                    await self.approvals.gate(None, None, gate)
                if notice and not run.cardless:
                    await self.notices.run_failure(data, None, None)
                return
            card = found
        thread = card.thread_ts or str(card.ts)
        for gate in sorted(gates):
            await self.approvals.gate(card, thread, gate)
        for gate, kind, whom in nudges:
            await self.approvals.nudge(card, thread, gate, kind, whom)
        for event in resolved:
            await self.notices.resolved(data, card, thread, event)
        if details:
            text, body, cut = blocks.step_outputs(details)
            await self.poster.post(card.channel, text, body, thread)
            for step_id in cut:
                await self.poster.upload(data, card.channel, thread, step_id)
        for failure in failures:
            await self.notices.step_failure(data, card, thread, failure)
        if logs:
            text, body = blocks.log_lines(logs)
            await self.poster.post(card.channel, text, body, thread)
        if notice and not run.cardless:  # a child's failure is its parent's to tell
            await self.notices.run_failure(data, card, thread)

    async def _card(self, run: _Run, data: dict[str, Any]) -> Post | None:
        assert run.place is not None
        channel, thread_ts, requester = run.place
        now = self.engine.clock.now()
        extra: list[str] = []
        if run.source.get("front_end") == "alert":
            extra = await self.notices.alert_lines(run.run_id, run.source)
        text, body = blocks.run_card(data, now, extra=extra)
        owners = [line for line in extra if line.startswith("owners: ")]
        if owners:  # Slack notifies the mentions of a message's text
            text = f"{text} ({owners[0]})"
        if run.card is None:
            run.card = await self.outbox.claim(
                run.run_id, "card", channel, thread_ts=thread_ts, at=now
            )
        card = run.card
        if card.ts is not None:
            try:
                await self.client.chat_update(
                    channel=card.channel, ts=card.ts, text=text, blocks=body
                )
                return card
            except SlackApiError as exc:
                if exc.response.get("error") != "message_not_found":
                    raise
                log.info("the card of run %s was deleted; posting a new one", run.run_id)
        # A fresh claim, or a claim whose post never completed (a crash, a deleted card):
        # a card posted twice is better than a run nobody sees.
        ts, where = await self.poster.post_card(card, text, body, requester)
        await self.outbox.posted(card, ts=ts, at=now, channel=where)
        run.card = Post(
            card.run_id, "", "card", where or card.channel, card.thread_ts, ts, "posted"
        )
        return run.card
