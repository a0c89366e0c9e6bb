"""Retry from the failed step (``engine.runs.fromfailed``): the steps that succeeded are
not run again, their outputs reach the restarted steps' templates, and the run can end
well; through the engine, chat, the HTTP API and the command line. On SQLite and
PostgreSQL (the CLI on SQLite: it is a process of its own)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from aiohttp.test_utils import TestClient, TestServer

from bot import api
from bot.app import Baton, open_baton
from bot.commands import Actor, Commands
from bot.settings import Settings
from engine.errors import InvalidTransition
from engine.playbooks.model import Playbook
from engine.runs.fromfailed import steps_to_rerun
from engine.timing import ManualClock, ManualTimers
from storage import tables as t
from tests.conftest import HarnessFactory
from tests.harness import Harness
from tests.integration import support as s

# one and two append to their logs and print what three reads through its template;
# three fails until the file `fixed` exists; aside is skipped by its condition
CHAIN = """
name: chain
params:
  dir: {type: string, required: true}
steps:
  - id: one
    action: shell
    with: {script: 'echo one >> "$PARAM_DIR/one.log"; echo out-of-one'}
  - id: aside
    action: shell
    when: "false"
    with: {script: 'echo aside >> "$PARAM_DIR/aside.log"'}
  - id: two
    action: shell
    needs: one
    with: {script: 'echo two >> "$PARAM_DIR/two.log"; echo out-of-two'}
  - id: three
    action: shell
    needs: two
    with:
      env:
        FROM_ONE: "{{ steps.one.output.stdout | trim }}"
        FROM_TWO: "{{ steps.two.output.stdout | trim }}"
      script: |
        test -f "$PARAM_DIR/fixed" || { echo "not fixed" >&2; exit 1; }
        echo "$FROM_ONE $FROM_TWO" >> "$PARAM_DIR/three.log"
  - id: four
    action: log
    needs: three
    with: {message: done}
"""
PAUSE = """
name: pause
steps:
  - id: nap
    action: wait
    with: {for: 1h}
"""
PLAYBOOKS = {"chain": CHAIN, "pause": PAUSE}
TOKEN = "s3cret-token"


async def failed_at_three(h: Harness, folder: Path) -> str:
    run_id = await h.run("chain", {"dir": str(folder)})
    row = await h.run_row(run_id)
    assert (row.status, row.failed_step) == ("failed", "three")
    return run_id


async def assert_retried_from_three(h: Harness, run_id: str, folder: Path) -> None:
    """Steps one and two ran once (their files have one line each), three read their
    outputs, and the run succeeded at its second attempt."""
    await h.engine.wait_idle()
    row = await h.run_row(run_id)
    assert (row.status, row.attempt, row.failed_step) == ("succeeded", 2, None)
    assert s.lines(folder / "one.log") == ["one"]
    assert s.lines(folder / "two.log") == ["two"]
    assert s.lines(folder / "three.log") == ["out-of-one out-of-two"]
    assert not (folder / "aside.log").exists()
    assert await h.statuses(run_id) == {
        "one": "succeeded",
        "aside": "skipped",
        "two": "succeeded",
        "three": "succeeded",
        "four": "succeeded",
    }
    attempts = [(a.step_id, a.run_attempt, a.status) for a in await h.attempts(run_id)]
    assert [a for a in attempts if a[1] == 2] == [
        ("three", 2, "succeeded"),
        ("four", 2, "succeeded"),
    ]
    audit = await h.store.all(sa.select(t.audit).where(t.audit.c.action == "retry"))
    assert [(r.target, r.detail) for r in audit] == [(run_id, {"from_failed": True})]


def test_what_a_from_failed_retry_restarts() -> None:
    playbook = Playbook.model_validate(yaml.safe_load(CHAIN))
    done = {"one": "succeeded", "aside": "skipped", "two": "succeeded"}
    assert steps_to_rerun(playbook, {**done, "three": "failed", "four": "pending"}) == {
        "three",
        "four",
    }
    assert steps_to_rerun(playbook, {**done, "two": "cancelled", "three": "succeeded"}) == {
        "two",
        "three",
        "four",
    }
    assert steps_to_rerun(playbook, {**done, "three": "succeeded", "four": "succeeded"}) == set()


async def test_the_engine_restarts_at_the_failed_step(
    harness: HarnessFactory, tmp_path: Path
) -> None:
    h = await harness(PLAYBOOKS)
    run_id = await failed_at_three(h, tmp_path)
    (tmp_path / "fixed").touch()

    first = (await h.run_row(run_id)).started_at
    h.clock.advance(timedelta(minutes=10))  # fixed, then retried ten minutes later
    await h.engine.retry(run_id, by="bob", from_failed=True)

    await assert_retried_from_three(h, run_id, tmp_path)
    row = await h.run_row(run_id)  # the attempt's own start: not ten idle minutes long
    assert row.started_at == first + timedelta(minutes=10)
    assert row.finished_at - row.started_at < timedelta(minutes=1)


async def test_a_running_or_succeeded_run_is_refused(
    harness: HarnessFactory, tmp_path: Path
) -> None:
    h = await harness(PLAYBOOKS)
    waiting = await h.run("pause")
    with pytest.raises(InvalidTransition, match="still active; cancel it or let it end"):
        await h.engine.retry(waiting, by="bob", from_failed=True)
    (tmp_path / "fixed").touch()
    succeeded = await h.run("chain", {"dir": str(tmp_path)})
    with pytest.raises(InvalidTransition, match="is succeeded; only failed, cancelled"):
        await h.engine.retry(succeeded, by="bob", from_failed=True)
    assert (await h.run_row(succeeded)).attempt == 1
    assert s.lines(tmp_path / "one.log") == ["one"]


async def test_from_chat(harness: HarnessFactory, tmp_path: Path) -> None:
    h = await harness(PLAYBOOKS)
    cmds = Commands(engine=h.engine, schedules=h.schedules, timezone="UTC")
    alice = Actor(id="alice", name="Alice", via="console")
    run_id = await failed_at_three(h, tmp_path)
    (tmp_path / "fixed").touch()

    reply = await cmds.handle(alice, f"retry {run_id} --from-failed", {"front_end": "console"})

    assert reply.ok and reply.text == f"retrying run {run_id} from its failed steps"
    await assert_retried_from_three(h, run_id, tmp_path)
    again = await cmds.handle(alice, f"retry {run_id} --from-failed", {"front_end": "console"})
    assert not again.ok and f"run {run_id} is succeeded" in again.text
    typo = await cmds.handle(alice, f"retry {run_id} --from-fail", {})
    assert not typo.ok and "retry knows one option, --from-failed" in typo.text
    assert "retry RUN [--from-failed]" in (await cmds.handle(alice, "help retry", {})).text


@pytest.fixture
async def served(
    tmp_path: Path, db_url: str
) -> AsyncIterator[tuple[TestClient[Any, Any], Baton, Path]]:
    folder = tmp_path / "playbooks"
    folder.mkdir()
    for name, text in PLAYBOOKS.items():
        (folder / f"{name}.yaml").write_text(textwrap.dedent(text))
    settings = Settings(
        database_url=db_url, playbooks=folder, api_token=TOKEN, key_file=tmp_path / "key"
    )
    clock = ManualClock()
    async with open_baton(settings, clock=clock, timers=ManualTimers(clock)) as baton:
        client = TestClient(TestServer(api.create_app(settings, baton)))
        await client.start_server()
        try:
            yield client, baton, tmp_path
        finally:
            await client.close()


async def test_over_http(served: tuple[TestClient[Any, Any], Baton, Path]) -> None:
    client, baton, folder = served
    auth = {"Authorization": f"Bearer {TOKEN}"}
    started = await client.post(
        "/api/runs", json={"playbook": "chain", "params": {"dir": str(folder)}}, headers=auth
    )
    run_id = (await started.json())["id"]
    await baton.engine.wait_idle()
    (folder / "fixed").touch()
    url = f"/api/runs/{run_id}/retry?by=carol"

    bad = await client.post(url, json={"from_failed": "yes"}, headers=auth)
    assert bad.status == 400 and "from_failed" in (await bad.json())["error"]
    answer = await client.post(url, json={"from_failed": True}, headers=auth)

    assert answer.status == 202
    assert (await answer.json())["message"] == f"retrying run {run_id} from its failed steps"
    await baton.engine.wait_idle()
    assert s.lines(folder / "one.log") == ["one"] and s.lines(folder / "two.log") == ["two"]
    assert s.lines(folder / "three.log") == ["out-of-one out-of-two"]
    row = (await client.get(f"/api/runs/{run_id}")).status
    assert row == 200
    again = await client.post(url, json={"from_failed": True}, headers=auth)
    assert again.status == 409 and "is succeeded" in (await again.json())["error"]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_from_the_command_line(tmp_path: Path, db_url: str) -> None:
    folder = tmp_path / "playbooks"
    folder.mkdir()
    (folder / "chain.yaml").write_text(textwrap.dedent(CHAIN))
    env = {
        **os.environ,
        "BATON_DATABASE_URL": db_url,
        "BATON_PLAYBOOKS": str(folder),
        "BATON_KEY_FILE": str(tmp_path / "key"),
        "USER": "carol",
    }
    baton = Path(sys.executable).parent / "baton"

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(baton), *args], env=env, capture_output=True, text=True, timeout=60, check=False
        )

    first = cli("run", "chain", f"dir={tmp_path}")
    assert first.returncode == 1, first.stderr
    with sa.create_engine(db_url).connect() as conn:
        run_id = conn.execute(sa.select(t.runs.c.id)).scalar_one()
    (tmp_path / "fixed").touch()

    retried = cli("retry", run_id, "--from-failed")

    assert retried.returncode == 0, retried.stderr
    assert "✓ three" in retried.stdout and "✓ one" not in retried.stdout
    assert s.lines(tmp_path / "one.log") == ["one"] and s.lines(tmp_path / "two.log") == ["two"]
    assert s.lines(tmp_path / "three.log") == ["out-of-one out-of-two"]
    refused = cli("retry", run_id, "--from-failed")
    assert refused.returncode == 2 and f"run {run_id} is succeeded" in refused.stderr
