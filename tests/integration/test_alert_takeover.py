"""Pending alerts across replicas: a node that dies with alerts in its queue leaves them
to a live node, which routes them once; a live node's alerts are never taken; a node
that stops cleanly lets its pending alerts go at once."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import sqlalchemy as sa

from engine.alerts.router import AlertPolicy, AlertRouter
from storage import tables as t
from tests.conftest import HarnessFactory
from tests.harness import Harness
from tests.integration.test_alerting import PLAYBOOKS, Ticks, disk, rows, runs_of

HOUR = 3600.0  # the sweeper's round: never within a test, which looks by itself


def router(h: Harness) -> AlertRouter:
    return AlertRouter(h.engine, AlertPolicy(), monotonic=Ticks(), look_every=HOUR)


def silence(h: Harness) -> None:
    """The node stops beating, as a dead or frozen process would; nothing is let go."""
    task = h.engine.keeper._task
    assert task is not None
    task.cancel()
    h.engine.keeper._task = None


async def routed(h: Harness, alerts: AlertRouter) -> None:
    await alerts.idle()
    await h.engine.wait_idle()


async def test_a_dead_nodes_pending_alert_is_routed_by_a_live_one(
    harness: HarnessFactory,
) -> None:
    a, b = await harness(PLAYBOOKS), await harness(PLAYBOOKS)
    dying = router(a)  # receives, but its worker never routes: it dies first
    await dying.receive([disk("db-3")])
    [row] = await rows(a)
    assert (row.outcome, row.node) == ("pending", a.engine.owner)

    live = router(b)
    await live.start()
    try:
        assert await live.take_over() == 0  # a beats: its queue holds the alert
        silence(a)
        b.clock.advance(timedelta(seconds=10))  # within a's lease
        assert await live.take_over() == 0
        b.clock.advance(timedelta(seconds=10))  # a's lease is over: a is gone
        assert await live.take_over() == 1
        await routed(b, live)
        [row] = await rows(b)
        assert (row.outcome, row.node) == ("started", b.engine.owner)
        assert len(await runs_of(b, "disk-cleanup")) == 1
        assert await live.take_over() == 0  # routed once
    finally:
        await live.stop()


async def test_a_node_that_stops_lets_its_pending_alerts_go_at_once(
    harness: HarnessFactory,
) -> None:
    a, b = await harness(PLAYBOOKS), await harness(PLAYBOOKS)
    leaving = router(a)
    await leaving.start()
    leaving._worker.cancel()  # type: ignore[union-attr]  # a backlog it will not route
    await leaving.receive([disk("db-1"), disk("db-2")])
    await leaving.stop()
    assert [(r.outcome, r.node) for r in await rows(a)] == [("pending", None)] * 2

    live = router(b)  # no lease to wait out: a let them go
    await live.start()
    try:
        await routed(b, live)
        assert [(r.outcome, r.node) for r in await rows(b)] == [("started", b.engine.owner)] * 2
    finally:
        await live.stop()


async def test_two_nodes_taking_over_at_once_route_each_alert_once(
    harness: HarnessFactory,
) -> None:
    a, b, c = [await harness(PLAYBOOKS) for _ in range(3)]
    dying = router(a)
    await dying.receive([disk(f"db-{i}") for i in range(6)])
    silence(a)
    for h in (b, c):
        h.clock.advance(timedelta(minutes=1))
        await h.engine.keeper.heartbeat()  # both alive, a gone
    first, second = router(b), router(c)
    taken = await asyncio.gather(first.take_over(), second.take_over())
    assert sorted(taken) in ([0, 6], [1, 5], [2, 4], [3, 3]) and sum(taken) == 6
    nodes = {r.node for r in await b.store.all(sa.select(t.alerts.c.node))}
    assert nodes <= {b.engine.owner, c.engine.owner}


async def test_alerts_stored_before_nodes_were_named_are_taken_by_the_first_node(
    harness: HarnessFactory,
) -> None:
    a = await harness(PLAYBOOKS)
    dying = router(a)
    await dying.receive([disk("db-9")])
    await a.store.write(t.alerts.update().values(node=None))  # as revision 0008 leaves them
    b = await harness(PLAYBOOKS)
    live = router(b)
    await live.start()
    try:
        await routed(b, live)
        assert [(r.outcome, r.node) for r in await rows(b)] == [("started", b.engine.owner)]
    finally:
        await live.stop()
