"""A run's logs: what cancelled and timed-out steps printed is kept, and the whole of it
is read back by ``logs RUN [STEP]`` in chat, ``GET /api/runs/{id}/logs`` and
``baton logs``."""

from __future__ import annotations

import json
import subprocess
import textwrap
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from bot import api, grammar
from bot.app import open_baton
from bot.commands import Actor
from bot.settings import Settings
from engine.timing import ManualClock, ManualTimers
from engine.views import runlogs
from tests.conftest import HarnessFactory
from tests.fakes import slack as fake
from tests.integration import support as s
from tests.integration.slack_support import PLAYBOOKS, served, settings_for, write_playbooks
from tests.integration.test_cli import BATON, env  # noqa: F401  (the fixture)

TICKS = """
name: ticks
params:
  dir: {type: string, required: true}
steps:
  - id: crunch
    action: shell
    timeout: 1h
    with:
      script: |
        for i in 1 2 3 4 5 6 7 8; do echo "tick $i"; done
        echo "half way" >&2
        echo $$ > "$PARAM_DIR/pid"
        exec sleep 600
  - id: note
    action: log
    with: {message: "noted {{ params.dir | length }}"}
"""


async def test_a_cancelled_step_keeps_what_it_printed(
    harness: HarnessFactory, tmp_path: Path
) -> None:
    h = await harness({"ticks": TICKS})
    run_id = await s.start(h, "ticks", {"dir": str(tmp_path)})
    await s.started_pid(tmp_path)
    await h.engine.cancel(run_id, by="bob")
    await h.engine.wait_idle()

    step = (await h.steps(run_id))["crunch"]
    assert step.status == "cancelled"
    assert step.output["stdout"].splitlines() == [f"tick {i}" for i in range(1, 9)]
    assert step.output["stderr"] == "half way\n"
    [attempt] = [a for a in await h.attempts(run_id) if a.step_id == "crunch"]
    assert attempt.output == step.output

    text = await runlogs.text(h.store, run_id)
    assert "== crunch . attempt 1 . cancelled" in text
    assert "tick 8" in text and "[stderr]\nhalf way" in text
    assert "error: cancelled by bob" in text
    assert text.rstrip().endswith("run " + run_id + " cancelled\nerror: cancelled by bob")


async def test_a_timed_out_step_keeps_what_it_printed(
    harness: HarnessFactory, tmp_path: Path
) -> None:
    h = await harness({"ticks": TICKS})
    run_id = await s.start(h, "ticks", {"dir": str(tmp_path)})
    await s.started_pid(tmp_path)
    await h.advance(3600)  # the step's 1 h timeout fires on the test's clock

    step = (await h.steps(run_id))["crunch"]
    assert step.status == "failed"
    assert "timed out" in (step.error or "")
    assert "tick 8" in step.output["stdout"]
    logs = await runlogs.text(h.store, run_id, "crunch")
    assert "attempt 1 . failed" in logs and "error: timed out after" in logs
    assert "tick 1" in logs


async def test_logs_of_one_step_and_of_a_missing_one(
    harness: HarnessFactory, tmp_path: Path
) -> None:
    h = await harness(
        {
            "two": """
                name: two
                steps:
                  - id: first
                    action: shell
                    with: {script: "echo one"}
                  - id: second
                    action: log
                    needs: [first]
                    with: {message: "two"}
            """
        }
    )
    run_id = await h.run("two")
    whole = await runlogs.text(h.store, run_id)
    assert whole.index("one") < whole.index("[log ") < whole.index("run " + run_id + " succeeded")
    only = await runlogs.text(h.store, run_id, "second")
    assert "two" in only and "one" not in only.replace("run " + run_id, "")
    try:
        await runlogs.text(h.store, run_id, "secnd")
    except runlogs.StepNotFound as exc:
        assert "Did you mean second?" in str(exc) and "first, second" in str(exc)
    else:
        raise AssertionError("an unknown step must be refused")


def test_the_chat_grammar_reads_logs() -> None:
    assert grammar.parse("logs r-1") == grammar.Logs("r-1")
    assert grammar.parse("logs r-1 crunch") == grammar.Logs("r-1", "crunch")
    try:
        grammar.parse("logs")
    except grammar.CommandError as exc:
        assert "usage: logs RUN [STEP]" in str(exc)
    else:
        raise AssertionError("logs without a run must be refused")


async def test_logs_over_the_api_and_in_chat(tmp_path: Path, db_url: str) -> None:
    folder = tmp_path / "playbooks"
    folder.mkdir()
    (folder / "ticks.yaml").write_text(textwrap.dedent(TICKS))
    settings = Settings(
        database_url=db_url, playbooks=folder, api_token="t0ken", key_file=tmp_path / "key"
    )
    clock = ManualClock()
    async with open_baton(settings, clock=clock, timers=ManualTimers(clock)) as baton:
        run_id = await baton.engine.start_run(
            s.RunRequest(playbook="ticks", params={"dir": str(tmp_path)}, requested_by="al")
        )
        await s.started_pid(tmp_path)
        await baton.engine.cancel(run_id, by="bob")
        await baton.engine.wait_idle()
        client: TestClient[Any, Any] = TestClient(TestServer(api.create_app(settings, baton)))
        await client.start_server()
        try:
            resp = await client.get(f"/api/runs/{run_id}/logs")
            assert resp.status == 200 and resp.content_type == "text/plain"
            body = await resp.text()
            assert "tick 8" in body and "cancelled by bob" in body
            one = await client.get(f"/api/runs/{run_id}/logs", params={"step": "note"})
            assert "tick 1" not in await one.text()
            missing = await client.get(f"/api/runs/{run_id}/logs", params={"step": "nope"})
            assert missing.status == 404 and "has no step 'nope'" in (await missing.json())["error"]
            gone = await client.get("/api/runs/r-none/logs")
            assert gone.status == 404
        finally:
            await client.close()

        reply = await baton.commands().handle(
            Actor("U0AL", "al"), f"logs {run_id} crunch", {"front_end": "console"}
        )
        assert reply.ok and any("tick 8" in line for line in reply.lines)
        assert reply.data["logs"] == await runlogs.text(baton.store, run_id, "crunch")


def test_baton_logs_prints_and_follows_a_finished_run(env: dict[str, str]) -> None:  # noqa: F811
    ran = subprocess.run(
        [BATON, "run", "greet", "who=logs"], env=env, capture_output=True, text=True, timeout=60
    )
    assert ran.returncode == 0, ran.stderr
    run_id = ran.stdout.split()[1].rstrip(":")  # "run ID: greet by carol ..."
    out = subprocess.run(
        [BATON, "logs", run_id, "hello"], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert "hello logs" in out.stdout and "[log" not in out.stdout
    follow = subprocess.run(
        [BATON, "logs", run_id, "--follow"], env=env, capture_output=True, text=True, timeout=60
    )
    assert follow.returncode == 0 and follow.stdout.rstrip().endswith(f"run {run_id} succeeded")
    bad = subprocess.run(
        [BATON, "logs", run_id, "helo"], env=env, capture_output=True, text=True, timeout=60
    )
    assert bad.returncode == 2 and "Did you mean hello?" in bad.stderr


async def test_long_logs_in_slack_come_as_a_file(tmp_path: Path, db_url: str) -> None:
    write_playbooks(tmp_path / "playbooks", PLAYBOOKS)
    async with (
        fake.FakeSlack() as slack,
        served(settings_for(tmp_path, db_url, slack), slack) as sb,
    ):
        run = await sb.started(sb.command("run boom"))
        await sb.settle(run["id"])
        uploads_before = len(sb.slack.files)

        await sb.command(f"logs {run['id']}", response_url=slack.response_url())
        await sb.settle()

        (upload,) = sb.slack.files[uploads_before:]
        assert upload.title == f"logs of run {run['id']}" and upload.channel == "C0OPS"
        assert "line 1 of the noisy step\n" in upload.text
        assert "line 3000 of the noisy step" in upload.text and "disk full" in upload.text
        answer = json.dumps([c.args for c in slack.calls_to("response_url")])
        assert "the last 30 of" in answer and "attached as a file" in answer
