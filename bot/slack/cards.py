"""Run cards: the engine's events, rendered into Slack.

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
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack import blocks
from bot.slack.people import Directory
from engine import events as ev
from engine import queries
from engine.bus import Subscription
from engine.durations import format_duration
from engine.errors import BatonError
from engine.outbox import Outbox, Post
from engine.runs.engine import Engine

log = logging.getLogger(__name__)

NOT_THERE = ("not_in_channel", "channel_not_found", "is_archived", "restricted_action")


@dataclass(frozen=True)
class CardOptions:
    interval: float = 1.0  # seconds between two edits of one card
    runs_channel: str | None = None  # runs not asked for in Slack
    oncall_channel: str | None = None  # failure notices, besides the run's thread
    approvals_channel: str | None = None  # a copy of every approval prompt
    groups: Mapping[str, frozenset[str]] = field(default_factory=dict)  # Baton groups


@dataclass
class _Failure:
    step_id: str
    attempt: int
    error: str
    output: dict[str, Any]


@dataclass
class _Run:
    """What is waiting to be shown about one run."""

    run_id: str
    dirty: bool = True
    finished: bool = False
    failures: list[_Failure] = field(default_factory=list)
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
                    _Failure(event.step_id, event.attempt, event.error, dict(event.output))
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
                await self._upsert(run_id, "held", "", channel, None, line, [blocks.section(line)])
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
                    await self._gate(None, None, gate)
                if notice and not run.cardless:
                    await self._notice(data, None, None)
                return
            card = found
        thread = card.thread_ts or str(card.ts)
        for gate in sorted(gates):
            await self._gate(card, thread, gate)
        for gate, kind, whom in nudges:
            await self._nudge(card, thread, gate, kind, whom)
        for event in resolved:
            key = f"resolved:{event.fingerprint}"[:64]
            post = await self._once(data, key, card.channel, thread)
            if post is not None:
                name, took = blocks.escape(event.name), format_duration(event.after)
                line = f":white_check_mark: alert *{name}* resolved after {took}"
                ts = await self._post(card.channel, line, [blocks.section(line)], thread)
                await self.outbox.posted(post, ts=ts, at=self.engine.clock.now())
        if details:
            text, body, cut = blocks.step_outputs(details)
            await self._post(card.channel, text, body, thread)
            for step_id in cut:
                await self._upload(data, card.channel, thread, step_id)
        for failure in failures:
            await self._step_failure(data, card, thread, failure)
        if logs:
            text, body = blocks.log_lines(logs)
            await self._post(card.channel, text, body, thread)
        if notice and not run.cardless:  # a child's failure is its parent's to tell
            await self._notice(data, card, thread)

    async def _card(self, run: _Run, data: dict[str, Any]) -> Post | None:
        assert run.place is not None
        channel, thread_ts, requester = run.place
        now = self.engine.clock.now()
        extra = await self._alert_lines(run) if run.source.get("front_end") == "alert" else []
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
        ts, where = await self._post_card(card, text, body, requester)
        await self.outbox.posted(card, ts=ts, at=now, channel=where)
        run.card = Post(
            card.run_id, "", "card", where or card.channel, card.thread_ts, ts, "posted"
        )
        return run.card

    async def _post_card(
        self, card: Post, text: str, body: list[dict[str, Any]], requester: str | None
    ) -> tuple[str | None, str | None]:
        try:
            resp = await self.client.chat_postMessage(
                channel=card.channel, thread_ts=card.thread_ts, text=text, blocks=body
            )
            return resp["ts"], resp["channel"]
        except SlackApiError as exc:
            error = exc.response.get("error")
            if error not in NOT_THERE or requester is None:
                log.warning("cannot post the card of run %s: %s", card.run_id, error)
                return None, None
        # Not a member of the channel: tell the requester, in a DM, and keep the card there.
        hint = blocks.context(
            f":information_source: I cannot post in <#{card.channel}> ({error}): "
            "invite me with `/invite @Baton` to see run cards there."
        )
        resp = await self.client.chat_postMessage(
            channel=requester, text=text, blocks=[*body[: blocks.MAX_BLOCKS - 1], hint]
        )
        return resp["ts"], resp["channel"]

    async def _post(
        self, channel: str, text: str, body: list[dict[str, Any]], thread: str | None
    ) -> str | None:
        resp = await self.client.chat_postMessage(
            channel=channel, thread_ts=thread, text=text, blocks=body
        )
        return str(resp["ts"])

    async def _once(
        self, data: dict[str, Any], kind: str, channel: str, thread: str | None, step: str = ""
    ) -> Post | None:
        """Claim a one-time message; None when it was claimed before (posted already)."""
        post = await self.outbox.claim(
            data["id"], kind, channel, step_id=step, thread_ts=thread, at=self.engine.clock.now()
        )
        return post if post.fresh else None

    async def _step_failure(
        self, data: dict[str, Any], card: Post, thread: str, failure: _Failure
    ) -> None:
        kind = f"step-failed:{data.get('attempt', 1)}:{failure.attempt}"
        post = await self._once(data, kind, card.channel, thread, failure.step_id)
        if post is None:
            return
        text, body, cut = blocks.step_failure(
            data["id"], failure.step_id, failure.error, failure.output, failure.attempt
        )
        ts = await self._post(card.channel, text, body, thread)
        await self.outbox.posted(post, ts=ts, at=self.engine.clock.now())
        if cut:
            await self._upload(data, card.channel, thread, failure.step_id)

    async def _upload(self, data: dict[str, Any], channel: str, thread: str, step: str) -> None:
        """The whole output of a step, as a file in the thread (never cut silently)."""
        full = await queries.full_outputs(self.engine.store, data["id"], step)
        content = blocks.output_text(full)
        if not content:
            return
        await self.client.files_upload_v2(
            channel=channel,
            thread_ts=thread,
            content=content,
            filename=f"{data['playbook']}-{data['id']}-{step}.txt",
            title=f"output of step {step} (run {data['id']})",
        )

    async def _alert_lines(self, run: _Run) -> list[str]:
        """What a run started by an alert shows under its title: the alert, its links,
        its owners, how often it fired again, whether it is resolved."""
        alert = run.source.get("alert") or {}
        severity = f" ({blocks.escape(str(alert['severity']))})" if alert.get("severity") else ""
        lines = [
            f":rotating_light: alert *{blocks.escape(str(alert.get('name', '')))}*{severity}"
            f" from {alert.get('source', '?')}: {blocks.escape(str(alert.get('summary', '')))}"
        ]
        found = await queries.alert_links(self.engine.store, run.run_id)
        resolved = any(link["after"] is not None for link in found)
        links = [
            f"<{link['url']}|{blocks.escape(link.get('title') or 'link')}>"
            for link in alert.get("links") or []
            if str(link.get("url", "")).startswith(("http://", "https://"))
            # a silence is for a firing alert: once resolved, only the source is useful
            and not (resolved and link.get("title") in ("Alertmanager", "Silence"))
        ]
        if links:
            lines.append(" · ".join(links[:8]))
        owners = [await self.directory.mention(m) for m in run.source.get("mention") or []]
        if owners:
            lines.append("owners: " + " ".join(owners))
        for link in found:
            if link["repeats"]:
                lines.append(f"fired {link['repeats']} more time{'s' * (link['repeats'] > 1)}")
            if link["after"] is not None:
                lines.append(f":white_check_mark: resolved after {format_duration(link['after'])}")
        return lines

    # --- approval gates ----------------------------------------------------------------

    async def approvers_text(self, spec: dict[str, Any], requested_by: str) -> str:
        """Who may decide, as mentions (a Baton group with its members)."""
        approvers = spec.get("approvers") or {}
        shown = [await self.directory.mention(u) for u in approvers.get("users") or []]
        for ug in approvers.get("usergroups") or []:
            shown.append(await self.directory.mention(ug if ug[:1] in "@S" else f"@{ug}"))
        for name in approvers.get("groups") or []:
            members = [await self.directory.mention(m) for m in self.options.groups.get(name, ())]
            shown.append(f"group {name}" + (f" ({' '.join(members)})" if members else ""))
        if not shown:
            shown = ["anyone"]
        if not spec.get("allow_self_approval"):
            shown.append(f"(not <@{requested_by}>, who asked)")
        return " ".join(shown)

    async def _gate(self, card: Post | None, thread: str | None, approval_id: str) -> None:
        gate = await queries.approval_view(self.engine.store, approval_id)
        approvers = await self.approvers_text(gate["spec"], gate["requested_by"])
        text, body = blocks.approval_prompt(gate, approvers, self.engine.clock.now())
        if gate["status"] == "pending":  # the approvers are notified from the text
            text = f"{approvers}: {text}"
        key, step = f"approval:{approval_id}", gate["step_id"]
        if card is not None:
            await self._upsert(gate["run_id"], key, step, card.channel, thread, text, body)
        copy = self.options.approvals_channel
        if copy is not None and (card is None or copy != card.channel):
            await self._upsert(gate["run_id"], f"{key}:copy", step, copy, None, text, body)

    async def _upsert(
        self,
        run_id: str,
        kind: str,
        step: str,
        channel: str,
        thread: str | None,
        text: str,
        body: list[dict[str, Any]],
    ) -> None:
        """Post a message once, then edit it in place (the outbox remembers where)."""
        now = self.engine.clock.now()
        post = await self.outbox.claim(
            run_id, kind, channel, step_id=step, thread_ts=thread, at=now
        )
        if post.ts is not None:
            await self.client.chat_update(channel=post.channel, ts=post.ts, text=text, blocks=body)
            return
        ts: str | None = None
        where: str | None = None
        try:
            resp = await self.client.chat_postMessage(
                channel=channel, thread_ts=thread, text=text, blocks=body
            )
            ts, where = str(resp["ts"]), str(resp["channel"])
        except SlackApiError as exc:
            log.warning("cannot post %s of run %s: %s", kind, run_id, exc.response.get("error"))
        # the channel's id, not the #name the setting gave: chat.update takes ids only
        await self.outbox.posted(post, ts=ts, at=now, channel=where)

    async def _nudge(
        self, card: Post, thread: str, approval_id: str, kind: str, whom: dict[str, list[str]]
    ) -> None:
        gate = await queries.approval_view(self.engine.store, approval_id)
        if gate["status"] != "pending":
            return
        decided = {d["user"] for d in gate["decisions"]}
        spec = {**gate["spec"], "approvers": whom}
        mentions = await self.approvers_text(spec, gate["requested_by"])
        for user in decided:
            mentions = mentions.replace(f"<@{user}>", "").replace("  ", " ")
        deadline = blocks.when(gate["deadline_at"])
        if kind == "escalated":
            head = f":arrow_up: approval `{approval_id}` escalated: {mentions} please decide"
        else:
            head = f":bell: reminder: approval `{approval_id}` waits for {mentions}"
        line = head + (f" by {deadline}" if deadline else "")
        text = f"approval {approval_id} {kind}"
        await self._post(card.channel, text, [blocks.section(line)], thread)
        copy = self.options.approvals_channel
        if copy is not None and copy != card.channel:
            await self._post(copy, text, [blocks.section(line)], None)

    async def _notice(self, data: dict[str, Any], card: Post | None, thread: str | None) -> None:
        attempt = data.get("attempt", 1)
        mentions: list[str] = []
        oncall = self.options.oncall_channel
        if data["playbook"] in self.engine.catalog:
            notify = self.engine.catalog.get(data["playbook"]).notify
            mentions = [await self.directory.mention(m) for m in notify.mention]
            oncall = notify.channel or oncall
        tail = ""
        failed = [s for s in data["steps"] if s["id"] == data.get("failed_step")]
        if failed:
            tail = blocks.clip_tail(blocks.output_text(failed[0]["output"]), 1500)[0]
        if card is not None:
            here = await self._once(data, f"run-failed:{attempt}", card.channel, thread)
            if here is not None:
                text, body = blocks.run_failure(data, tail, mentions=mentions)
                ts = await self._post(card.channel, text, body, thread)
                await self.outbox.posted(here, ts=ts, at=self.engine.clock.now())
        if oncall is None or (card is not None and oncall == card.channel):
            return
        there = await self._once(data, f"oncall:{attempt}", oncall, None)
        if there is None:
            return
        link = None
        if card is not None:
            with contextlib.suppress(SlackApiError):
                got = await self.client.chat_getPermalink(
                    channel=card.channel, message_ts=str(card.ts)
                )
                link = got.get("permalink")
        text, body = blocks.run_failure(data, tail, mentions=mentions, link=link)
        try:
            ts = await self._post(oncall, text, body, None)
        except SlackApiError as exc:
            log.warning(
                "cannot post in the on-call channel %s: %s", oncall, exc.response.get("error")
            )
            ts = None
        await self.outbox.posted(there, ts=ts, at=self.engine.clock.now())
