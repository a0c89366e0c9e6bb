"""EventBus watchers: every event, in the publisher's turn; tallies reach them only."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from engine import events as ev
from engine.bus import EventBus

AT = datetime(2026, 3, 1, tzinfo=UTC)


def test_watchers_see_everything_subscribers_see_no_tallies(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus = EventBus()
    seen: list[ev.Event] = []

    def broken(event: ev.Event) -> None:
        raise RuntimeError("a bug in a watcher")

    stop_broken = bus.watch(broken)
    stop = bus.watch(seen.append)
    started = ev.RunStarted(
        run_id="r1", playbook="p", at=AT, params={}, requested_by="a", trigger="cli"
    )
    settled = ev.AlertSettled(run_id="", playbook="", at=AT, source="grafana", outcome="unmatched")
    with bus.subscribe() as sub:
        bus.publish(started)
        bus.tally(settled)
        assert seen == [started, settled]  # at once: nothing queued, nothing lags
        assert sub.drain() == [started]  # a card never takes a tally for a run
    assert "an event watcher failed on RunStarted" in caplog.text
    stop()
    stop_broken()
    bus.publish(started)
    assert seen == [started, settled]
