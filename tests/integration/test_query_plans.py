"""Speed that does not age: what Baton asks the database while it starts, drives runs,
answers lists and dedups alerts and Slack events searches an index, never reads the runs
or steps tables as a whole (SQLite's EXPLAIN QUERY PLAN, on a database with history).

Every statement the engine runs during the scenario is captured and explained, so a new
query that scans history fails here without anyone listing it."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from engine.alerts import rows as alertrows
from engine.runs import inbox
from engine.runs.outbox import Outbox
from engine.views import queries
from storage import definitions, plans, schema
from storage import tables as t
from storage.db import create_engine
from tests.harness import Harness, open_harness
from tests.integration import support as s

GATE = """
name: gate
steps:
  - id: gate
    action: approval
    with: {approvers: [bob]}
  - id: after
    action: log
    needs: gate
    with: {message: done}
"""
HELLO = """
name: hello
steps:
  - id: one
    action: log
    with: {message: one}
  - id: two
    action: log
    needs: one
    with: {message: two}
"""
HISTORY = 300
FILTERS: list[dict[str, str]] = [
    {}, {"playbook": "hello"}, {"status": "failed"}, {"trigger": "api"}, {"requested_by": "ann"},
    {"playbook": "hello", "status": "succeeded"},
]  # fmt: skip
WHOLE_TABLE = re.compile(r"^SCAN (runs|steps)$")
WHOLE_INDEX = re.compile(r"^SCAN (runs|steps) USING (COVERING )?INDEX")
SORTED = "USE TEMP B-TREE FOR ORDER BY"


@dataclass
class Sent:
    sql: str
    params: Any


def fill_history(conn: sa.Connection, n: int) -> None:
    """``n`` finished runs of two steps, as if Baton had run them over the last days."""
    now = t.now()
    runs, steps = [], []
    for i in range(n):
        run_id = f"h{i:011x}"
        at = now - timedelta(minutes=10 * (n - i))
        runs.append(
            dict(
                id=run_id, playbook=("hello", "other")[i % 2], params={}, source={},
                status=("succeeded", "failed")[i % 2], trigger=("cli", "api", "schedule")[i % 3],
                requested_by=("ann", "bob")[i % 2], definition_digest=definitions.digest({}),
                created_at=at, started_at=at,
                finished_at=at + timedelta(seconds=3), owner="gone:1:aa", epoch=1,
            )
        )  # fmt: skip
        steps += [
            dict(
                run_id=run_id, step_id=step, phase="main", position=p, status="succeeded",
                attempts=1, output={}, started_at=at, finished_at=at,
            )
            for p, step in enumerate(("one", "two"))
        ]  # fmt: skip
    conn.execute(t.definitions.insert().values(digest=definitions.digest({}), body={}, used_at=now))
    conn.execute(t.runs.insert(), runs)
    conn.execute(t.steps.insert(), steps)


@pytest.fixture
def sent(with_history: str) -> Iterator[list[Sent]]:
    """Every single SELECT, UPDATE and DELETE sent to a database while the test runs, once
    its database is made (the revisions' own statements, such as 0009's one pass over the
    runs to move their definitions, are no statement of a running Baton)."""
    captured: list[Sent] = []

    def record(conn: Any, cursor: Any, sql: str, params: Any, context: Any, many: bool) -> None:
        words = sql.lstrip().split(None, 1)
        if not many and words and words[0].upper() in ("SELECT", "UPDATE", "DELETE"):
            captured.append(Sent(sql, params))

    sa.event.listen(sa.Engine, "before_cursor_execute", record)
    yield captured
    sa.event.remove(sa.Engine, "before_cursor_execute", record)


@pytest.fixture
def with_history(tmp_path: Path) -> Iterator[str]:
    """A SQLite database at head holding HISTORY finished runs."""
    url = f"sqlite:///{tmp_path / 'plans.db'}"
    engine = create_engine(url)
    try:
        schema.prepare(engine, upgrade=True)
        with engine.begin() as conn:
            fill_history(conn, HISTORY)
    finally:
        engine.dispose()
    return url


@pytest.fixture
async def node(tmp_path: Path, with_history: str) -> AsyncIterator[Harness]:
    """An engine started on that database, as a ``serve`` node starts."""
    h = await open_harness(tmp_path, with_history, {"gate": GATE, "hello": HELLO})
    yield h
    h.schedules.stop()
    await h.engine.stop(drain=0)
    h.events.close()
    await h.store.close()


def reads_history(sql: str, plan: list[str]) -> bool:
    """Does this plan read runs or steps from end to end? A table scan does; so does a
    walk along a whole index, unless it is the ordered walk of a LIMIT that stops early."""
    if any(WHOLE_TABLE.match(line) for line in plan):
        return True
    walks = [line for line in plan if WHOLE_INDEX.match(line)]
    return bool(walks) and ("LIMIT" not in sql or any(SORTED in line for line in plan))


def whole_table_reads(conn: sa.Connection, sent: list[Sent]) -> dict[str, list[str]]:
    """Each statement whose plan reads runs or steps from end to end, with its plan."""
    found = {}
    for s_ in sent:
        if s_.sql in found or not re.search(r"\b(runs|steps)\b", s_.sql):
            continue
        plan = [r[-1] for r in conn.exec_driver_sql("EXPLAIN QUERY PLAN " + s_.sql, s_.params)]
        if reads_history(s_.sql, plan):
            found[s_.sql] = plan
    return found


async def test_start_runs_lists_and_dedup_search_indexes_on_a_database_with_history(
    sent: list[Sent], node: Harness
) -> None:
    h = node
    gated = await h.run("gate")
    await h.run("hello", requested_by="carol", trigger="api")
    await h.engine.keeper.tick()
    gate_id = await s.approval_id(h, gated, "gate")
    await h.engine.decide(gate_id, "bob", "approve", "")
    await h.engine.wait_idle()
    await h.engine.keeper.tick()
    store = h.store
    await queries.get_run(store, gated)
    await queries.step_tails(store, gated)
    await queries.pending_approvals(store, gated)
    await queries.open_gates(store)
    await queries.finished_with_card(store, t.now() - timedelta(hours=1))
    for filters in FILTERS:
        first = await queries.runs_page(store, limit=20, filters=filters)
        assert first.next is not None
        await queries.runs_page(store, limit=20, cursor=first.next, filters=filters)
    await queries.list_runs(store, limit=20, requested_by="ann", status="running")
    await Outbox(store).seen_event("Ev1", t.now())
    await store.read(lambda c: c.execute(inbox.pending_for(h.engine.owner)).all())
    await store.read(
        lambda c: c.execute(
            alertrows.ACTIVE_LINK,
            {"fingerprint": "f", "source": "s", "playbook": "p", "trigger": 0, "since": t.now()},
        ).all()
    )
    await h.engine.stop(drain=0)
    assert len(sent) > 30  # the start, the runs and the lists above

    with h.store.engine.connect() as conn:
        assert whole_table_reads(conn, sent) == {}


@pytest.mark.parametrize(
    "filters",
    [{}, {"playbook": "hello"}, {"status": "failed"}, {"trigger": "api"}, {"requested_by": "ann"}],
    ids=["all", "playbook", "status", "trigger", "requested_by"],
)
@pytest.mark.parametrize("paged", [False, True], ids=["first-page", "after-cursor"])
def test_a_page_of_runs_is_one_range_of_one_index_read_in_order(
    with_history: str, filters: dict[str, str], paged: bool
) -> None:
    """No sort of every matching run: a page's rows come in the order of one index."""
    engine = create_engine(with_history)
    try:
        before = (t.now(), "abc") if paged else None
        with engine.connect() as conn:
            plan = plans.explain(conn, queries.runs_query(limit=51, before=before, **filters))
    finally:
        engine.dispose()
    assert not reads_history("LIMIT", plan), plan
    assert SORTED not in plan, plan
    assert filters == {} or plan[0].startswith("SEARCH runs USING INDEX"), plan


def test_alerts_of_one_outcome_are_read_in_order(with_history: str) -> None:
    engine = create_engine(with_history)
    try:
        with engine.connect() as conn:
            plan = plans.explain(conn, queries.alerts_query(limit=51, outcome="held", before="x"))
    finally:
        engine.dispose()
    assert plan == ["SEARCH alerts USING INDEX ix_alerts_outcome_id (outcome=? AND id<?)"]
