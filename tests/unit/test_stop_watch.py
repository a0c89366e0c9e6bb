"""A `baton serve` whose stop takes too long says what it is still waiting on."""

from __future__ import annotations

import asyncio
import faulthandler
import logging

import pytest

from bot import serve


async def test_a_slow_stop_names_the_tasks_it_waits_on(caplog: pytest.LogCaptureFixture) -> None:
    stuck = asyncio.Event()
    task = asyncio.create_task(stuck.wait(), name="release-leases")
    loop = asyncio.get_running_loop()
    try:
        with caplog.at_level(logging.WARNING, logger="baton"):
            serve.watch_the_stop(0.05)
            # timers due at the same time run in the order they were set: this one runs
            # after the watch's own
            after = loop.create_future()
            loop.call_later(0.05, after.set_result, None)
            await after
    finally:
        faulthandler.cancel_dump_traceback_later()
        task.cancel()
    [record] = [r for r in caplog.records if "stopping takes longer" in r.getMessage()]
    assert record.levelno == logging.WARNING
    assert "; release-leases at " in record.getMessage()
    assert "test_stop_watch.py:" in record.getMessage()  # where the awaiting task waits
