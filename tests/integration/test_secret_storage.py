"""Secrets kept out of a run's rows (SQLite and PostgreSQL): a secret in the concurrency
key, a secret param's default in the stored definition. The run still works, groups
with the runs it should, and resumes after a restart with the real values."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa

from engine.runs.requests import RunRequest
from storage import definitions
from storage import tables as t
from tests.conftest import HarnessFactory

DEFAULT = "default-Token-77"
OTHER = "other-Token-99"

DEPLOY = {
    "deploy": f"""
        name: deploy
        params:
          dir: {{type: string, required: true}}
          token: {{type: secret, default: {DEFAULT}}}
        concurrency: {{key: "deploy-{{{{ params.token }}}}", limit: 1}}
        steps:
          - id: pause
            action: wait
            with: {{for: 10s}}
          - id: use
            action: shell
            needs: pause
            with: {{script: 'printf "%s" "$PARAM_TOKEN" > "$PARAM_DIR/token"'}}
    """
}


def _dump(rows: list[Any]) -> str:
    return "\n".join(repr(tuple(r)) for r in rows)


async def test_secrets_stay_out_of_the_concurrency_key_and_the_definition(
    harness: HarnessFactory, tmp_path: Path
) -> None:
    h = await harness(DEPLOY)
    dirs = {name: tmp_path / name for name in ("a", "b", "c", "d")}
    for folder in dirs.values():
        folder.mkdir()

    a = await h.run("deploy", {"dir": str(dirs["a"])})  # the default token
    b = await h.run("deploy", {"dir": str(dirs["b"]), "token": OTHER})
    c = await h.run("deploy", {"dir": str(dirs["c"])})  # the default again: waits for a

    rows = {r: await h.run_row(r) for r in (a, b, c)}
    assert [rows[r].status for r in (a, b, c)] == ["waiting", "waiting", "queued"]
    keys = {r: rows[r].concurrency_key for r in (a, b, c)}
    assert keys[a] == keys[c] != keys[b]
    assert all(key.startswith("deploy-***#") for key in keys.values()), keys
    stored = await definitions.read(h.store, rows[a].definition_digest)
    assert stored["params"]["token"] == {"type": "secret", "default": "***"}
    for table in (t.runs, t.steps, t.audit, t.definitions):
        dump = _dump(await h.store.all(sa.select(table)))
        assert DEFAULT not in dump and OTHER not in dump, table.name

    await h.restart()  # a new engine: the same key still groups the same runs
    await h.advance(1)  # d queues after c
    d = await h.run("deploy", {"dir": str(dirs["d"])})
    assert (await h.run_row(d)).concurrency_key == keys[a]
    assert (await h.run_row(d)).status == "queued"

    await h.advance(9)
    assert [(await h.run_row(r)).status for r in (a, b, c, d)] == [
        "succeeded",
        "succeeded",
        "waiting",
        "queued",
    ]
    await h.advance(10)
    await h.advance(10)
    assert [(await h.run_row(r)).status for r in (c, d)] == ["succeeded", "succeeded"]
    # the steps got the real values, the default one after the restart too
    assert (dirs["a"] / "token").read_text() == DEFAULT
    assert (dirs["b"] / "token").read_text() == OTHER
    assert (dirs["d"] / "token").read_text() == DEFAULT


async def test_a_dry_run_shows_a_secret_concurrency_key_masked(harness: HarnessFactory) -> None:
    h = await harness(DEPLOY)

    plan = h.engine.plan(RunRequest(playbook="deploy", params={"dir": "/x"}, requested_by="al"))

    assert plan.concurrency_key == "deploy-***"
    assert plan.params == {"dir": "/x", "token": "***"}
