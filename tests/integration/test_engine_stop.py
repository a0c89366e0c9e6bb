"""A stop always ends: work that never settles, or a driver that ignores its cancel, is
named in a warning and left behind instead of holding `baton serve` until SIGKILL."""

from __future__ import annotations

import asyncio
import logging

import pytest

from engine import timing
from tests.conftest import HarnessFactory

NAP = {"nap": "name: nap\nsteps:\n  - id: a\n    action: wait\n    with: {for: 1h}\n"}


async def test_work_that_never_settles_does_not_hold_the_stop(
    harness: HarnessFactory, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = await harness(NAP)
    run_id = await h.run("nap")
    monkeypatch.setattr(timing, "SETTLE", 0.05)
    h.engine.node.busy_inc()  # work counted busy that nothing will ever count done
    with caplog.at_level(logging.WARNING, logger="engine.runs.engine"):
        await asyncio.wait_for(h.engine.stop(drain=0), 5)
    [warning] = [r.getMessage() for r in caplog.records if "still counted busy" in r.getMessage()]
    assert f"1 piece(s) of work still counted busy after 0.05s (runs here: {run_id})" in warning
    assert (await h.run_row(run_id)).owner is None  # its lease was given up all the same
