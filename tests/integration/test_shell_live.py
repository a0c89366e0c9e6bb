"""A running ``shell`` step's output lines reach the run's log while it runs (through a
real engine, on SQLite and PostgreSQL): the step prints, then blocks reading a fifo that
the test opens only once it has read the first lines back from the database, as
``baton logs`` and the API read them. The output stays whole, secrets are masked in the
lines, and a step cancelled while it waits keeps both."""

from __future__ import annotations

import asyncio
import errno
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

import sqlalchemy as sa

from engine.runs.requests import RunRequest
from engine.views import runlogs
from storage import tables as t
from tests.conftest import HarnessFactory
from tests.harness import Harness

WITHIN = 20.0

TALK = {
    "talk": """
        name: talk
        params:
          fifo: {required: true}
          token: {type: secret, required: true}
        steps:
          - id: talk
            action: shell
            with:
              script: |
                echo "first line, token $PARAM_TOKEN"
                echo "a warning" >&2
                cat "$PARAM_FIFO"
                echo "last line"
    """
}


async def until(check: Callable[[], Awaitable[bool]], within: float = WITHIN) -> None:
    """Await ``check()`` every 10 ms until it holds, failing after ``within`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await check():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def logged(h: Harness, run_id: str) -> list[str]:
    rows = await h.store.all(
        sa.select(t.run_logs.c.message)
        .where(t.run_logs.c.run_id == run_id)
        .order_by(t.run_logs.c.id)
    )
    return [r.message for r in rows]


async def release(fifo: Path, text: str) -> None:
    """Write ``text`` to ``fifo`` once the step has it open for reading (until then,
    opening it to write without blocking fails with ENXIO)."""
    fd: list[int] = []

    async def opened() -> bool:
        try:
            fd.append(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError as exc:
            if exc.errno != errno.ENXIO:
                raise
            return False
        return True

    await until(opened)
    try:
        os.write(fd[0], text.encode())
    finally:
        os.close(fd[0])


async def start(h: Harness, fifo: Path) -> str:
    os.mkfifo(fifo)
    params = {"fifo": str(fifo), "token": "hunter2-token"}
    return await h.engine.start_run(RunRequest("talk", params, requested_by="alice"))


async def test_a_shell_steps_lines_are_in_the_runs_log_before_it_ends(
    harness: HarnessFactory, tmp_path: Path
) -> None:
    h = await harness(TALK)
    run_id = await start(h, tmp_path / "fifo")

    async def first_lines() -> bool:
        return len(await logged(h, run_id)) == 2

    await until(first_lines)
    assert sorted(await logged(h, run_id)) == ["(stderr) a warning", "first line, token ***"]
    assert (await h.run_row(run_id)).status == "running"
    assert (await h.steps(run_id))["talk"].status == "running"  # it waits on the fifo
    shown = (await runlogs.read(h.store, run_id)).text  # `baton logs`, GET .../logs
    assert "] first line, token ***\n" in shown and "] (stderr) a warning\n" in shown

    await release(tmp_path / "fifo", "what the test wrote\n")
    await h.engine.wait_for(run_id)
    assert (await h.run_row(run_id)).status == "succeeded"
    step = (await h.steps(run_id))["talk"]
    assert step.output == {  # the output is whole, as before
        "rc": 0,
        "stdout": "first line, token ***\nwhat the test wrote\nlast line\n",
        "stderr": "a warning\n",
    }
    lines = await logged(h, run_id)
    assert lines[2:] == ["what the test wrote", "last line"]  # each line once
    assert all("hunter2" not in line for line in lines)


async def test_a_cancelled_shell_step_keeps_its_lines_and_output(
    harness: HarnessFactory, tmp_path: Path
) -> None:
    h = await harness(TALK)
    run_id = await start(h, tmp_path / "fifo")

    async def first_lines() -> bool:
        return len(await logged(h, run_id)) == 2

    await until(first_lines)
    answer = await h.engine.cancel(run_id, "bob")
    assert answer.applied
    await h.engine.wait_for(run_id)
    assert (await h.run_row(run_id)).status == "cancelled"
    step = (await h.steps(run_id))["talk"]
    assert step.status == "cancelled"
    assert step.output["stdout"] == "first line, token ***\n"
    assert sorted(await logged(h, run_id)) == ["(stderr) a warning", "first line, token ***"]
