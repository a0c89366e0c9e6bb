"""Retention (``storage.prune``) on real runs, on SQLite and PostgreSQL: a prune deletes
finished families of runs with everything that hangs off them, never an active run or a
run of an active family, clears links to what it deleted, keeps the audit for its own
age, and a dry run counts the same rows without deleting one."""

from __future__ import annotations

import asyncio
import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from engine import retention
from storage import definitions, prune, prune_log, schema
from storage import tables as t
from storage.db import create_engine
from tests.conftest import HarnessFactory
from tests.harness import Harness
from tests.integration.support import approval_id, children

PLAYBOOKS = {
    "quick": """
        name: quick
        steps:
          - {id: hello, action: log, with: {message: hello}}
          - {id: bye, action: log, needs: hello, with: {message: bye}}
    """,
    "gate": """
        name: gate
        steps:
          - id: ask
            action: approval
            with: {message: "Go?", approvers: {users: [bob]}}
          - {id: after, action: log, needs: ask, with: {message: done}}
    """,
    "family": """
        name: family
        steps:
          - {id: call, action: playbook, with: {name: quick}}
    """,
    "family-gate": """
        name: family-gate
        steps:
          - {id: call, action: playbook, with: {name: gate}}
    """,
    "then-ask": """
        name: then-ask
        steps:
          - {id: call, action: playbook, with: {name: quick}}
          - id: ask
            action: approval
            needs: call
            with: {message: "Go on?", approvers: {users: [bob]}}
    """,
}

# The tables that hang off a run by ``run_id`` (decisions hang off its approvals).
BY_RUN = ("steps", "attempts", "run_logs", "approvals", "run_commands", "chat_posts", "alert_runs")
AGE = timedelta(days=90)
LATER = timedelta(days=100)


async def table_counts(h: Harness) -> dict[str, int]:
    out = {}
    for name in prune.TABLES:
        table = t.metadata.tables[name]
        out[name] = int(await h.store.scalar(sa.select(sa.func.count()).select_from(table)))
    return out


async def rows_of(h: Harness, run_ids: set[str]) -> dict[str, int]:
    """How many rows of each table belong to ``run_ids`` (what pruning them deletes)."""
    out = {"runs": len(run_ids)}
    for name in BY_RUN:
        table = t.metadata.tables[name]
        query = sa.select(sa.func.count()).where(table.c.run_id.in_(run_ids))
        out[name] = int(await h.store.scalar(query))
    approvals = sa.select(t.approvals.c.id).where(t.approvals.c.run_id.in_(run_ids))
    out["decisions"] = int(
        await h.store.scalar(
            sa.select(sa.func.count()).where(t.decisions.c.approval_id.in_(approvals))
        )
    )
    return out


async def digests_of(h: Harness, run_ids: set[str]) -> set[str]:
    """The definitions the runs ``run_ids`` began with."""
    query = sa.select(t.runs.c.definition_digest).where(t.runs.c.id.in_(run_ids))
    return set(await h.store.read(lambda c: list(c.execute(query).scalars())))


async def stored_digests(h: Harness) -> set[str]:
    query = sa.select(t.definitions.c.digest)
    return set(await h.store.read(lambda c: list(c.execute(query).scalars())))


async def run_ids(h: Harness) -> set[str]:
    return set(await h.store.read(lambda c: list(c.execute(sa.select(t.runs.c.id)).scalars())))


def alert(id_: str, at: datetime, outcome: str, run_id: str | None = None) -> dict[str, Any]:
    return {
        "id": id_,
        "source": "generic",
        "fingerprint": f"fp-{id_}",
        "status": "firing",
        "name": "",
        "labels": {},
        "annotations": {},
        "links": [],
        "received_at": at,
        "outcome": outcome,
        "run_id": run_id,
    }


def chat_post(run_id: str, at: datetime, kind: str = "card") -> dict[str, Any]:
    return {
        "run_id": run_id,
        "step_id": "",
        "kind": kind,
        "channel": "C1",
        "state": "posted",
        "created_at": at,
    }


def audit_row(at: datetime, actor: str) -> dict[str, Any]:
    return {
        "at": at,
        "actor": actor,
        "action": "run",
        "target": "quick",
        "source": {},
        "detail": {},
        "outcome": "ok",
    }


async def test_prune_deletes_old_finished_families_and_spares_active_ones_and_the_audit(
    harness: HarnessFactory,
) -> None:
    h = await harness(PLAYBOOKS)
    t0 = h.clock.now()

    done = await h.run("quick")
    gated = await h.run("gate")
    await h.engine.decide(await approval_id(h, gated, "ask"), "bob", "approve", "ok")
    await h.engine.wait_idle()
    waiting = await h.run("gate")  # active: waits on its approval
    family = await h.run("family")  # parent and child both finished
    (family_child,) = [r.id for r in await children(h, family)]
    # a finished child whose parent still waits: spared with its parent
    asking = await h.run("then-ask")
    (asking_child,) = [r.id for r in await children(h, asking)]
    # a parent that ended while its child still waits (as a parent that timed out
    # leaves it): spared, child and all
    ended = await h.run("family-gate")
    (ended_child,) = [r.id for r in await children(h, ended)]
    await h.store.write(
        t.runs.update().where(t.runs.c.id == ended).values(status="failed", finished_at=t0)
    )
    statuses = {r: (await h.run_row(r)).status for r in (done, gated, family, family_child)}
    assert set(statuses.values()) == {"succeeded"}
    assert (await h.run_row(asking_child)).status == "succeeded"
    assert (await h.run_row(ended_child)).status == "waiting"

    await h.advance(LATER.total_seconds())
    now = h.clock.now()
    recent = await h.run("quick")  # finished, but younger than the age

    await h.store.write(
        t.alerts.insert().values(
            [
                alert("a-settled", t0, "unmatched"),
                alert("a-pending", t0, "pending"),
                alert("a-done", t0, "started", done),
                alert("a-late", now, "resolved", done),  # younger: kept, unlinked
                alert("a-waiting", t0, "started", waiting),
            ]
        ),
        t.chat_posts.insert().values(
            [
                chat_post(done, t0),
                chat_post(done, t0, "failure"),
                chat_post("", t0, "held"),  # an alert summary: no run
                chat_post("", now, "held-late"),
                chat_post(waiting, t0),
            ]
        ),
        t.schedules.insert().values(
            id="sch1",
            playbook="quick",
            kind="cron",
            cron="0 2 * * *",
            timezone="UTC",
            params={},
            origin="chat",
            created_by="amy",
            created_at=t0,
            last_run_id=done,
            missed=0,
        ),
        t.slack_events.insert().values(
            [{"event_id": "Ev-old", "received_at": t0}, {"event_id": "Ev-new", "received_at": now}]
        ),
        t.audit.insert().values(
            [
                audit_row(t0 - timedelta(days=500), "zed"),
                audit_row(t0 - timedelta(days=1), "amy"),
            ]
        ),
    )
    doomed = {done, gated, family, family_child}
    kept = await run_ids(h) - doomed
    assert kept == {waiting, asking, asking_child, ended, ended_child, recent}
    expected = dict.fromkeys(prune.TABLES, 0)
    if h.store.dialect == "postgresql":
        expected["jobs"] = 0  # the job queue's (no step ran on a worker here)
    expected.update(await rows_of(h, doomed))
    expected["alerts"] = 2  # a-settled, and a-done with its run
    expected["chat_posts"] += 1  # the old post without a run
    expected["slack_events"] = 1
    expected["audit"] = 1  # older than 400 days
    # the definitions only pruned runs refer to (family's: quick's and gate's have runs kept)
    unused = await digests_of(h, doomed) - await digests_of(h, kept)
    expected["definitions"] = len(unused)
    assert unused == await digests_of(h, {family})
    assert expected["steps"] == 7 and expected["attempts"] == 7  # 2+2+1+2 steps
    assert expected["approvals"] == 1 and expected["decisions"] == 1
    assert expected["run_logs"] > 0

    kept_rows = await rows_of(h, kept)
    audit_of_runs = int(await h.store.scalar(sa.select(sa.func.count()).where(t.audit.c.at >= t0)))
    assert audit_of_runs > 0  # who ran and approved what
    policy = retention.policy(now, AGE, timedelta(days=400), batch=2)

    before = await table_counts(h)
    dry = await asyncio.to_thread(prune.prune, h.store.engine, policy, dry_run=True)
    assert dry.counts == expected
    assert await table_counts(h) == before  # a dry run deletes nothing

    report = await asyncio.to_thread(prune.prune, h.store.engine, policy)
    assert report.counts == expected
    assert report.spared == 1  # the parent that ended with a waiting child
    after = await table_counts(h)
    assert after == {name: before[name] - expected[name] for name in before}
    assert await run_ids(h) == kept
    assert await rows_of(h, kept) == kept_rows
    assert await stored_digests(h) == await digests_of(h, kept)
    assert (
        int(await h.store.scalar(sa.select(sa.func.count()).where(t.audit.c.at >= t0)))
        == audit_of_runs
    )
    left = {r.id: r.run_id for r in await h.store.all(sa.select(t.alerts.c.id, t.alerts.c.run_id))}
    assert left == {"a-pending": None, "a-late": None, "a-waiting": waiting}
    assert await h.store.scalar(sa.select(t.schedules.c.last_run_id)) is None
    assert report.unlinked == 2  # a-late's run link, the schedule's last run
    kinds = await h.store.all(sa.select(t.chat_posts.c.run_id, t.chat_posts.c.kind))
    assert sorted((r.run_id, r.kind) for r in kinds) == [("", "held-late"), (waiting, "card")]
    assert sorted(
        await h.store.read(
            lambda c: list(c.execute(sa.select(t.slack_events.c.event_id)).scalars())
        )
    ) == ["Ev-new"]

    again = await asyncio.to_thread(prune.prune, h.store.engine, policy)
    assert again.total == 0  # nothing left to prune

    # the spared runs go on: the waiting gate is approved and its run finishes
    await h.engine.decide(await approval_id(h, waiting, "ask"), "bob", "approve")
    await h.engine.wait_idle()
    assert (await h.run_row(waiting)).status == "succeeded"


def finished_runs(engine: sa.Engine, n: int, at: datetime) -> list[str]:
    """``n`` succeeded runs of one step, finished at ``at``, written straight to the rows."""
    ids = [f"run{i:04d}" for i in range(n)]
    done = {"status": "succeeded", "started_at": at, "finished_at": at}
    with engine.begin() as conn:
        conn.execute(
            t.definitions.insert().values(digest=definitions.digest({}), body={}, used_at=at)
        )
        conn.execute(
            t.runs.insert(),
            [
                {
                    **done,
                    "id": run,
                    "playbook": "quick",
                    "params": {},
                    "trigger": "cli",
                    "source": {},
                    "requested_by": "amy",
                    "definition_digest": definitions.digest({}),
                    "created_at": at,
                }
                for run in ids
            ],
        )
        conn.execute(
            t.steps.insert(),
            [{**done, "run_id": r, "step_id": "s", "phase": "main", "attempts": 1} for r in ids],
        )
        conn.execute(t.chat_posts.insert(), [chat_post(r, at) for r in ids])
    return ids


def test_a_prune_the_database_fails_under_reports_what_it_did_and_why(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'baton.db'}")
    schema.prepare(engine, upgrade=True)
    at = datetime(2026, 1, 1, tzinfo=UTC)
    ids = finished_runs(engine, 6, at)
    policy = retention.policy(at + LATER, AGE, None, batch=2)

    def pause(_: float) -> None:  # after the first batch, the database fails
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP TABLE alert_runs")

    report = prune.prune(engine, policy, pause=pause)
    assert report.error == "no such table: alert_runs"
    assert (report.counts["runs"], report.counts["steps"], report.counts["chat_posts"]) == (2, 2, 2)
    with engine.connect() as conn:
        left = list(conn.execute(sa.select(t.runs.c.id).order_by(t.runs.c.id)).scalars())
    assert left == ids[2:]  # the first batch is gone, whole; the rest is whole too
    engine.dispose()


def test_a_run_whose_parent_is_gone_is_its_own_family(db_url: str) -> None:
    engine = create_engine(db_url)
    schema.prepare(engine, upgrade=True)
    at = datetime(2026, 1, 1, tzinfo=UTC)
    orphan, child, parent = finished_runs(engine, 3, at)
    with engine.begin() as conn:
        runs = t.runs.update()
        conn.execute(runs.where(t.runs.c.id == orphan).values(parent_run_id="gone"))
        conn.execute(runs.where(t.runs.c.id == child).values(parent_run_id=parent))
        conn.execute(runs.where(t.runs.c.id == parent).values(status="running", finished_at=None))
    report = prune.prune(engine, retention.policy(at + LATER, AGE, None), pause=lambda _: None)
    assert (report.counts["runs"], report.spared, report.error) == (1, 0, None)
    with engine.connect() as conn:
        left = set(conn.execute(sa.select(t.runs.c.id)).scalars())
    assert left == {child, parent}  # the child of a running parent stays with it
    engine.dispose()


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_pruned_runs_worker_jobs_go_with_it_and_a_kept_runs_stay(db_url: str) -> None:
    engine = create_engine(db_url)
    schema.prepare(engine, upgrade=True)  # with the job queue's tables (0007_job_queue)
    at = datetime(2026, 1, 1, tzinfo=UTC)
    old, young = finished_runs(engine, 2, at)
    with engine.begin() as conn:
        conn.execute(t.runs.update().where(t.runs.c.id == young).values(finished_at=at + LATER))
        for run, status in ((old, "failed"), (old, "aborted"), (young, "failed")):
            conn.exec_driver_sql(
                "INSERT INTO procrastinate_jobs (queue_name, task_name, args, status) "
                "VALUES ('dc1', 'baton.step', %(args)s::jsonb, %(status)s)",
                {"args": json.dumps({"spec": {"run_id": run}}), "status": status},
            )
    policy = retention.policy(at + LATER, AGE, None)
    dry = prune.prune(engine, policy, dry_run=True)
    report = prune.prune(engine, policy, pause=lambda _: None)
    assert (dry.counts["jobs"], report.counts["jobs"], report.counts["runs"]) == (2, 2, 1)
    with engine.connect() as conn:
        left = conn.exec_driver_sql("SELECT args->'spec'->>'run_id' FROM procrastinate_jobs")
        assert list(left.scalars()) == [young]
    engine.dispose()


def test_a_run_retried_between_the_look_and_the_delete_is_kept(db_url: str) -> None:
    """The batch re-reads its runs under the write lock (SQLite) or row locks
    (PostgreSQL): a run retried after the look is no longer finished, and stays."""
    engine = create_engine(db_url)
    schema.prepare(engine, upgrade=True)
    at = datetime(2026, 1, 1, tzinfo=UTC)
    kept, gone = finished_runs(engine, 2, at)
    retried: list[str] = []

    def retry_first(conn: sa.Connection, cursor: Any, statement: str, *rest: Any) -> None:
        if retried or not statement.startswith("SELECT runs.id"):
            return
        retried.append(kept)  # the look has its runs; the batch has taken no lock yet
        with engine.begin() as other:
            again = t.runs.update().where(t.runs.c.id == kept)
            other.execute(again.values(status="running", finished_at=None))

    sa.event.listen(engine, "after_cursor_execute", retry_first)
    report = prune.prune(engine, retention.policy(at + LATER, AGE, None), pause=lambda _: None)
    assert retried == [kept]
    assert (report.counts["runs"], report.spared, report.error) == (1, 1, None)
    with engine.connect() as conn:
        left = {r.id: r.status for r in conn.execute(sa.select(t.runs.c.id, t.runs.c.status))}
    assert left == {kept: "running"} and gone not in left
    engine.dispose()


def test_a_prune_asked_to_stop_ends_after_its_current_batch(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'baton.db'}")
    schema.prepare(engine, upgrade=True)
    at = datetime(2026, 1, 1, tzinfo=UTC)
    ids = finished_runs(engine, 6, at)
    stop = threading.Event()
    policy = retention.policy(at + LATER, AGE, None, batch=2)
    report = prune.prune(engine, policy, stop=stop, pause=lambda _: stop.set())  # shutdown
    assert report.stopped and report.error is None
    assert (report.counts["runs"], report.counts["steps"], report.batches) == (2, 2, 1)
    with engine.connect() as conn:
        left = list(conn.execute(sa.select(t.runs.c.id).order_by(t.runs.c.id)).scalars())
    assert left == ids[2:]  # the first batch went whole; the rest waits for the next prune
    engine.dispose()


def test_a_days_claim_left_by_a_node_that_died_mid_prune_is_taken_over(db_url: str) -> None:
    engine = create_engine(db_url)
    schema.prepare(engine, upgrade=True)
    day = datetime(2026, 3, 1, tzinfo=UTC)
    at = day + timedelta(hours=1)
    since = at - timedelta(seconds=15)  # a lease ago
    with engine.begin() as conn:
        beat = {"kind": "serve", "host": "h", "pid": 1, "started_at": day}
        conn.execute(t.nodes.insert().values(id="a", heartbeat_at=at, **beat))
        conn.execute(t.nodes.insert().values(id="b", heartbeat_at=at, **beat))
    first = prune_log.claim_day(engine, day, node="a", at=at)
    assert first is not None
    assert prune_log.claim_day(engine, day, node="b", at=at, alive_since=since) is None  # a beats
    with engine.begin() as conn:  # a dies mid-prune: it beats no more, its claim started
        conn.execute(t.nodes.update().where(t.nodes.c.id == "a").values(heartbeat_at=day))
    assert prune_log.claim_day(engine, day, node="b", at=at) is None  # without a bound: never
    taken = prune_log.claim_day(engine, day, node="b", at=at, alive_since=since)
    assert taken is not None and taken != first
    assert prune_log.claim_day(engine, day, node="c", at=at, alive_since=since) is None  # b beats
    prune_log.record(engine, prune.Report(), actor="baton", target="", at=at, row=taken)
    assert prune_log.claim_day(engine, day, node="c", at=at, alive_since=since) is None  # done
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(t.audit.c.outcome, t.audit.c.source, t.audit.c.detail)
            .where(t.audit.c.action == prune_log.DAILY)
            .order_by(t.audit.c.id)
        ).all()
    assert [(r.outcome, r.source["node"]) for r in rows] == [("abandoned", "a"), ("ok", "b")]
    assert rows[0].detail == {"taken_over_by": "b"}
    engine.dispose()
