"""The analytics read a window of runs along an index, never the runs or steps tables
end to end (SQLite's EXPLAIN QUERY PLAN of every statement they send, on a database
holding history; the same check as ``test_query_plans``)."""

from __future__ import annotations

from datetime import timedelta

from engine.views import analytics
from storage import tables as t
from storage.store import Store
from tests.integration.test_query_plans import (  # noqa: F401 (fixtures)
    HISTORY,
    Sent,
    sent,
    whole_table_reads,
    with_history,
)


async def test_every_statement_of_the_stats_searches_an_index(
    sent: list[Sent],  # noqa: F811
    with_history: str,  # noqa: F811
) -> None:
    store = Store(with_history)
    await store.open()
    try:
        now = t.now()
        everything = await analytics.compute(store, now, days=30)
        one = await analytics.compute(store, now, days=30, playbook="hello")
        recent = await analytics.compute(store, now, days=1, playbook="hello")
    finally:
        await store.close()
    assert sum(pb.runs for pb in everything.playbooks) == HISTORY
    (hello,) = one.playbooks
    assert hello.runs == HISTORY // 2 and hello.success_rate == 1.0
    assert hello.duration.p95 == 3.0  # every run of the history took 3 s
    assert hello.critical_path is not None and hello.critical_path.runs > 0
    assert 0 < recent.playbooks[0].runs < hello.runs  # the history spans 50 hours
    assert len(sent) >= 10
    with store.engine.connect() as conn:
        assert whole_table_reads(conn, sent) == {}
    assert now - timedelta(days=30) == everything.since
