"""From alerts to runs: routing, dedup, rate limits, resolution.

``AlertRouter.receive`` stores what a webhook brought (one write, the webhook answers right
after) and queues it; one worker task then routes each alert, in the order received:

- **Routing.** Every playbook trigger ``alert: {source, match/matchers, params, ...}``
  whose matchers accept the alert's labels (its severity counts as a ``severity`` label
  when it has none) gets it; several playbooks may match one alert.
- **Dedup.** While a run that an alert fingerprint started for a trigger is active, and
  for ``dedup`` (the trigger's, else the policy's window) after it ended, a repeat of the
  firing alert attaches to that run (counted, shown on its card) instead of starting
  another.
- **Storms.** A trigger's ``rate`` (``5/10m``) and a global cap on alert-started runs;
  alerts beyond them are stored as ``held`` and summed up in one message per trigger and
  hold episode (``AlertsHeld``), never dropped. Alerts wait in their own queue, worked by
  one task, so a storm cannot crowd out commands typed by people.
- **Resolution.** A resolved notification finds the runs its fingerprint started,
  marks them resolved (``AlertResolved``: the card and thread say "resolved after 12 min"),
  cancels a run still queued or waiting when the trigger (or policy) says so, and may
  start the trigger's ``on_resolved`` playbook. It never starts a run of its own trigger.

Every alert row ends with an ``outcome`` (started, attached, held, unmatched, resolved,
failed, rejected) and a reason. A ``pending`` row names the node routing it (``node``):
with several replicas, the pending alerts of a node that died or stopped are taken over
by a live one (``take_over``, at start and then every few seconds), in the order they
were received; a node that stops cleanly lets its own go at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from engine import events as ev
from engine.alerts import matchers as matcherlib
from engine.alerts import pickup
from engine.alerts import rates as alertrates
from engine.alerts import rows as alertrows
from engine.alerts.model import Alert, Rejected
from engine.errors import BatonError
from engine.playbooks import templating
from engine.playbooks.model import AlertTrigger, parse_rate
from engine.runs.engine import Engine
from engine.runs.requests import RunRequest, Trigger
from storage import tables as t
from storage.rows import Rows

log = logging.getLogger(__name__)

TAKE_OVER = 1000  # pending alerts of nodes gone taken in one round (the rest: next rounds)

RANK = {"started": 5, "attached": 4, "held": 3, "failed": 2, "unmatched": 1}


@dataclass(frozen=True)
class AlertPolicy:
    dedup_window: float = 900.0  # seconds after a run ended that repeats still attach
    global_rate: tuple[int, float] = (30, 60.0)  # alert-started runs, all triggers
    cancel_on_resolved: bool = False


@dataclass(frozen=True)
class Receipt:
    ids: list[str]
    accepted: int
    rejected: int


class AlertRouter:
    def __init__(
        self,
        engine: Engine,
        policy: AlertPolicy | None = None,
        monotonic: Any = time.monotonic,
        look_every: float | None = None,
    ) -> None:
        self.engine = engine
        self.store = engine.store
        self.policy = policy or AlertPolicy()
        self.monotonic = monotonic
        self.look_every = look_every  # seconds between looks for alerts of nodes gone
        self._queue: asyncio.Queue[tuple[str, Alert]] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._windows: dict[str, alertrates.Window] = {}
        self._busy = 0
        self._idle = asyncio.Event()
        self._idle.set()

    # --- life -----------------------------------------------------------------------

    async def start(self) -> None:
        """Route what nodes gone (this one's earlier life included) stored but did not
        route, then wait for more, looking again every few seconds for the pending
        alerts of a node that died meanwhile."""
        await self.take_over(mine=True)
        self._worker = asyncio.create_task(self._work(), name="alerts")
        self._sweeper = asyncio.create_task(self._sweep(), name="alerts: take over")

    async def stop(self) -> None:
        """Stop routing; the alerts still pending in this node's queue are let go, for
        another node to take over at once (or this one at its next start)."""
        for task in (self._sweeper, self._worker):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._sweeper = self._worker = None
        with contextlib.suppress(Exception):  # the database is gone: they wait for a lease
            await self.store.write(pickup.let_go(self.node))

    @property
    def node(self) -> str:
        return self.engine.leases.owner

    async def take_over(self, *, mine: bool = False) -> int:
        """Take the pending alerts no live ``serve`` node routes (theirs died or let them
        go) and queue them, oldest first; ``mine``: this node's own too (at start, when
        its queue is empty). Two nodes looking at once cannot both take an alert.
        Returns how many were taken."""
        leases = self.engine.leases
        servers = await self.store.all(pickup.SERVERS)
        gone = leases.dead(r.id for r in servers)  # of this host: no need to wait a lease
        since = self.engine.clock.now() - leases.lease
        op = pickup.take_over(self.node, since, gone, TAKE_OVER, mine=mine)
        [rows] = await self.store.write(op)
        for row in rows:
            self._enqueue(row.id, alertrows.from_row(row))
        if rows:
            log.info("took over %d pending alerts of nodes gone", len(rows))
        return len(rows)

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(self.look_every or self.engine.keeper.scan)
            try:
                await self.take_over()
            except Exception as exc:  # the database is away: the keeper says so
                log.debug("alerts: could not look for pending alerts of nodes gone: %s", exc)

    async def idle(self) -> None:
        """Wait until every alert received so far is routed (tests and the bench)."""
        await self._idle.wait()

    def _enqueue(self, row_id: str, alert: Alert) -> None:
        self._busy += 1
        self._idle.clear()
        self._queue.put_nowait((row_id, alert))

    # --- receiving ------------------------------------------------------------------

    async def receive(self, alerts: Sequence[Alert], rejected: Sequence[Rejected] = ()) -> Receipt:
        """Store every alert (and every rejected entry, with its reason) in one write,
        then queue the alerts for routing. Returns as soon as the rows are committed."""
        now = self.engine.clock.now()
        alerts = [alertrows.fitted(a) for a in alerts]
        rows = [alertrows.row_of(a, now, self.node) for a in alerts]
        rows += [alertrows.rejected_row(r, now) for r in rejected]
        if not rows:
            return Receipt([], 0, 0)

        # prepared rows, merged with other webhooks' by the writer into one statement
        await self.store.write(Rows("alert_new", rows))
        ids = [row["id"] for row in rows]
        for row_id, alert in zip(ids, alerts, strict=False):
            log.info(
                "alert %s received from %s: %s (%s, fingerprint %s)",
                row_id,
                alert.source,
                alert.name,
                alert.status,
                alert.fingerprint,
            )
            self._enqueue(row_id, alert)
        for row in rows[len(alerts) :]:
            log.warning("alert %s received and rejected: %s", row["id"], row.get("reason"))
            self._settled(row["source"], "rejected")
        return Receipt(ids, len(alerts), len(rejected))

    # --- routing --------------------------------------------------------------------

    async def _work(self) -> None:
        while True:
            row_id, alert = await self._queue.get()
            try:
                await self.route(row_id, alert)
            except Exception:
                log.exception("could not route alert %s (%s)", row_id, alert.fingerprint)
                with contextlib.suppress(Exception):
                    await self._settle(alert, row_id, "failed", "internal error; see the log", None)
            finally:
                self._busy -= 1
                if self._busy == 0:
                    self._idle.set()
            await asyncio.sleep(0)  # let people's commands in between alerts

    def triggers(self, alert: Alert) -> list[tuple[str, int, AlertTrigger]]:
        labels = dict(alert.labels)
        if alert.severity and "severity" not in labels:
            labels["severity"] = alert.severity
        found = []
        for pb in self.engine.catalog:
            for i, trig in enumerate(pb.triggers):
                spec = trig.alert
                if spec is None or (spec.source is not None and spec.source != alert.source):
                    continue
                if matcherlib.all_match(spec.all_matchers(), labels):
                    found.append((pb.name, i, spec))
        return found

    async def route(self, row_id: str, alert: Alert) -> None:
        if alert.status == "resolved":
            await self._resolve(row_id, alert)
            return
        matched = self.triggers(alert)
        if not matched:
            await self._settle(alert, row_id, "unmatched", "no playbook trigger matches", None)
            return
        results = [await self._fire(alert, pb, i, trig, row_id) for pb, i, trig in matched]
        outcome, reason, run_id = max(results, key=lambda r: RANK.get(r[0], 0))
        if len(results) > 1:
            reason = "; ".join(  # what held or failed says why
                f"{pb}: {o}" + (f" ({why})" if o in ("held", "failed") else "")
                for (pb, _, _), (o, why, _) in zip(matched, results, strict=True)
            )
        await self._settle(alert, row_id, outcome, reason, run_id)

    async def _settle(
        self, alert: Alert, row_id: str, outcome: str, reason: str, run_id: str | None
    ) -> None:
        values = {
            "row_id": row_id,
            "outcome": outcome,
            "reason": reason,
            "run_id": run_id,
            "processed_at": self.engine.clock.now(),
        }
        await self.store.write(lambda conn: conn.execute(alertrows.SETTLE, values))
        extra = {"run_id": run_id} if run_id else {}
        log.info("alert %s routed: %s (%s)", row_id, outcome, reason, extra=extra)
        self._settled(alert.source, outcome, run_id)

    def _settled(self, source: str, outcome: str, run_id: str | None = None) -> None:
        """Tell the bus what became of an alert (``bot.metrics`` counts them)."""
        at = self.engine.clock.now()
        self.engine.bus.tally(
            ev.AlertSettled(run_id=run_id or "", playbook="", at=at, source=source, outcome=outcome)
        )

    async def _fire(
        self, alert: Alert, playbook: str, index: int, trig: AlertTrigger, row_id: str
    ) -> tuple[str, str, str | None]:
        now = self.engine.clock.now()
        link = await self._active_link(alert, playbook, index, trig)
        if link is not None:
            repeats = int(link.repeats) + 1
            values = {"link_id": link.id, "repeats": repeats, "last_at": now}
            await self.store.write(lambda conn: conn.execute(alertrows.REPEAT, values))
            self.engine.bus.publish(
                ev.AlertRepeated(
                    run_id=link.run_id,
                    playbook=playbook,
                    at=now,
                    fingerprint=alert.fingerprint,
                    name=alert.name,
                    repeats=repeats,
                )
            )
            return "attached", f"repeat {repeats} of run {link.run_id}", link.run_id
        key = f"{playbook}#{index}"
        limits = [self._window("*", self.policy.global_rate)]
        if trig.rate is not None:
            limits.append(self._window(key, parse_rate(trig.rate)))
        tick = self.monotonic()
        full = [w for w in limits if w.full(tick)]
        if full:
            return self._hold(alert, playbook, index, trig, full[-1], now)
        try:
            params = templating.render(trig.params, {"alert": alertrows.alert_context(alert)})
            run_id = await self.engine.start_run(
                RunRequest(
                    playbook=playbook,
                    params=params,
                    requested_by=f"alert:{alert.source}",
                    trigger=Trigger.ALERT,
                    source=alertrows.source_of(alert, trig),
                ),
                also=lambda run_id: [  # the link commits with the run: no run without it
                    t.alert_runs.insert().values(
                        run_id=run_id,
                        fingerprint=alert.fingerprint,
                        source=alert.source,
                        playbook=playbook,
                        trigger=index,
                        name=alert.name[:500],
                        summary=alert.summary,
                        links=alertrows.links(alert),
                        first_at=alert.starts_at or now,
                        last_at=now,
                    )
                ],
            )
        except BatonError as exc:
            return "failed", f"{playbook}: {exc}", None
        for window in limits:
            window.starts.append(tick)
            window.held, window.held_since = 0, None
        return "started", f"run {run_id} of {playbook}", run_id

    def _window(self, key: str, rate: tuple[int, float]) -> alertrates.Window:
        window = self._windows.get(key)
        if window is None or (window.limit, window.period) != rate:
            window = self._windows[key] = alertrates.Window(*rate)
        return window

    def _hold(
        self,
        alert: Alert,
        playbook: str,
        index: int,
        trig: AlertTrigger,
        window: alertrates.Window,
        now: datetime,
    ) -> tuple[str, str, str | None]:
        """Hold ``alert`` (``index``: its trigger's place in ``triggers``); the reason
        names the limit that held it."""
        key = f"{playbook}#{index}"
        window.held += 1
        if window.held_since is None:
            window.held_since = now
            window.episodes += 1
        if window is self._windows.get("*"):  # BATON_ALERT_RATE held it
            rate = f"{window.limit}/{alertrates.period_text(window.period)}"
            limit = f"BATON_ALERT_RATE {rate}, shared by all alert triggers"
        else:
            limit = f"the rate {trig.rate} of {playbook}'s alert trigger {index + 1}"
        episode = f"{key}@{window.held_since.isoformat()}#{window.episodes}"
        self.engine.bus.publish(
            ev.AlertsHeld(
                run_id="",
                playbook=playbook,
                at=now,
                key=episode,
                name=alert.labels.get("alertname") or alert.name,
                held=window.held,
                channel=trig.channel,
                limit=limit,
            )
        )
        return "held", f"over the limit of {limit}", None

    async def _active_link(
        self, alert: Alert, playbook: str, index: int, trig: AlertTrigger
    ) -> t.AnyRow | None:
        window = trig.dedup.total_seconds() if trig.dedup is not None else self.policy.dedup_window
        values = {
            "fingerprint": alert.fingerprint,
            "source": alert.source,
            "playbook": playbook,
            "trigger": index,
            "since": self.engine.clock.now() - timedelta(seconds=window),
        }
        return await self.store.read(
            lambda conn: conn.execute(alertrows.ACTIVE_LINK, values).first()
        )

    # --- resolution -----------------------------------------------------------------

    async def _resolve(self, row_id: str, alert: Alert) -> None:
        now = self.engine.clock.now()
        ar = t.alert_runs.c
        links = await self.store.all(
            sa.select(t.alert_runs, t.runs.c.status)
            .join(t.runs, t.runs.c.id == ar.run_id)
            .where(
                ar.fingerprint == alert.fingerprint,
                ar.source == alert.source,
                ar.resolved_at.is_(None),
            )
            .order_by(ar.id)
        )
        if not links:
            await self._settle(alert, row_id, "resolved", "no run was started for it", None)
            return
        await self.store.write(
            t.alert_runs.update()
            .where(ar.id.in_([link.id for link in links]))
            .values(resolved_at=alert.ends_at or now, last_at=now)
        )
        notes = []
        for link in links:
            began = alert.starts_at or link.first_at  # the source's times when it has them
            ended = alert.ends_at or now
            after = max(0.0, (ended - began).total_seconds())
            self.engine.bus.publish(
                ev.AlertResolved(
                    run_id=link.run_id,
                    playbook=link.playbook,
                    at=now,
                    fingerprint=alert.fingerprint,
                    name=link.name,
                    after=after,
                )
            )
            trig = self._trigger_of(link.playbook, link.trigger)
            cancel = self.policy.cancel_on_resolved
            if trig is not None and trig.cancel_on_resolved is not None:
                cancel = trig.cancel_on_resolved
            if cancel and link.status in ("queued", "waiting"):
                try:
                    await self.engine.cancel(link.run_id, "alert resolved")
                    notes.append(f"cancelled run {link.run_id}")
                except BatonError as exc:
                    notes.append(f"could not cancel run {link.run_id}: {exc}")
            if trig is not None and trig.on_resolved is not None:
                notes.append(await self._on_resolved(alert, trig, link.run_id))
        reason = "; ".join([f"resolved run {links[0].run_id}", *notes])
        await self._settle(alert, row_id, "resolved", reason, links[0].run_id)

    def _trigger_of(self, playbook: str, index: int) -> AlertTrigger | None:
        if playbook not in self.engine.catalog:
            return None
        triggers = self.engine.catalog.get(playbook).triggers
        return triggers[index].alert if index < len(triggers) else None

    async def _on_resolved(self, alert: Alert, trig: AlertTrigger, run_id: str) -> str:
        action = trig.on_resolved
        assert action is not None
        try:
            params = templating.render(action.params, {"alert": alertrows.alert_context(alert)})
            started = await self.engine.start_run(
                RunRequest(
                    playbook=action.playbook,
                    params=params,
                    requested_by=f"alert:{alert.source}",
                    trigger=Trigger.ALERT,
                    source={**alertrows.source_of(alert, trig), "resolves": run_id},
                )
            )
        except BatonError as exc:
            return f"on_resolved {action.playbook} failed: {exc}"
        return f"started {action.playbook} as run {started}"
