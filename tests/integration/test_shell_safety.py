"""Hostile input against shell steps, through the engine: a param never runs as shell
code, and a step's environment holds none of Baton's credentials."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import sqlalchemy as sa

from engine.actions import stepenv
from engine.errors import ParamError
from engine.playbooks import model as playbook
from engine.playbooks.catalog import Catalog
from engine.runs.engine import Engine
from storage import tables as t
from tests.conftest import HarnessFactory

EVIL = "x; touch {file}"

SAFE = {
    "safe": """
        name: safe
        params:
          host: {required: true}
        steps:
          - id: env-var
            action: shell
            with: {script: 'echo "host=$PARAM_HOST"'}
          - id: quoted
            action: shell
            with: {script: "echo host={{ params.host | quote }}"}
    """
}

OLD_DEFINITION = """
    name: old
    params:
      host: {required: true}
    steps:
      - id: splice
        action: shell
        with: {script: "echo host={{ params.host }}"}
"""


async def test_a_hostile_param_reaches_a_script_as_text(
    harness: HarnessFactory, tmp_path: Path
) -> None:
    pwned = tmp_path / "PWNED"
    h = await harness(SAFE)
    host = EVIL.format(file=pwned)
    run_id = await h.run("safe", {"host": host})
    steps = await h.steps(run_id)
    assert not pwned.exists()
    assert steps["env-var"].output["stdout"] == f"host={host}\n"
    assert steps["quoted"].output["stdout"] == f"host={host}\n"


async def test_a_splicing_definition_that_skipped_validation_is_refused_at_run_time(
    harness: HarnessFactory, tmp_path: Path
) -> None:
    """A playbook that reached the engine without `baton validate` (a run begun under an
    older definition, a catalog built another way) still never splices."""
    pwned = tmp_path / "PWNED"
    h = await harness(SAFE)
    pb, _ = playbook.load_text(textwrap.dedent(OLD_DEFINITION), "old.yaml")
    catalog = h.engine.catalog
    h.engine.catalog = Catalog(
        catalog.root, catalog.registry, {"old": (pb, tmp_path / "old.yaml")}, []
    )
    run_id = await h.run("old", {"host": EVIL.format(file=pwned)})
    step = (await h.steps(run_id))["splice"]
    assert not pwned.exists()
    assert (await h.run_row(run_id)).status == "failed"
    assert step.status == "failed" and not step.output  # nothing ran
    assert step.error.startswith(
        "refused to run with.script: line 1 of the script: {{ params.host }} would be spliced"
    )
    assert 'use "$PARAM_HOST" in the script' in step.error


ENV = {
    "env": """
        name: env
        params:
          host: {required: true}
        steps:
          - id: env
            action: shell
            with: {script: env, env: {EXTRA: "{{ params.host }}"}}
    """
}


async def test_a_step_gets_the_step_environment_and_credentials_are_masked(
    harness: HarnessFactory,
) -> None:
    h = await harness(ENV)
    baton = {
        "PATH": "/usr/bin:/bin",
        "HOME": "/home/baton",
        "LC_TIME": "C",
        "KUBECONFIG": "/etc/kube",
        "AWS_REGION": "eu-west-1",
        "BATON_API_TOKEN": "api-token-123",
        "BATON_API_ALIAS": "not-for-steps",
        "SLACK_BOT_TOKEN": "xoxb-1234",
    }
    old = h.engine
    h.engine = Engine(
        store=old.store,
        catalog=old.catalog,
        registry=old.registry,
        secret_box=old.secret_box,
        clock=old.clock,
        timers=old.timers,
        step_env=stepenv.build(baton, ["KUBECONFIG", "AWS_*", "BATON_*"], {"BATON_API_TOKEN"}),
        credentials=["api-token-123", "xoxb-1234"],
    )
    await old.stop(drain=0)
    await h.engine.start()
    run_id = await h.run("env", {"host": "api-token-123 on db1"})
    out = (await h.steps(run_id))["env"].output["stdout"]
    seen = dict(line.split("=", 1) for line in out.splitlines())
    seen.pop("PWD", None)  # /bin/sh sets these itself
    seen.pop("OLDPWD", None)
    seen.pop("SHLVL", None)
    seen.pop("_", None)
    assert seen == {
        "PATH": "/usr/bin:/bin",
        "HOME": "/home/baton",
        "LC_TIME": "C",
        "KUBECONFIG": "/etc/kube",
        "AWS_REGION": "eu-west-1",
        "PARAM_HOST": "*** on db1",
        "EXTRA": "*** on db1",
    }
    rows = await h.store.all(sa.select(t.runs.c.params).where(t.runs.c.id == run_id))
    assert rows[0].params == {"host": "*** on db1"}
    await h.engine.stop(drain=0)


BLOB = {
    "blob": """
        name: blob
        params:
          blob: {required: true}
        steps:
          - id: size
            action: shell
            with: {script: 'printf %s "$PARAM_BLOB" | wc -c'}
    """,
    "no-shell": """
        name: no-shell
        params:
          blob: {required: true}
        steps:
          - id: note
            action: log
            with: {message: "{{ params.blob | length }} characters"}
    """,
}


async def test_a_param_too_long_for_its_variable_is_refused_at_start(
    harness: HarnessFactory,
) -> None:
    """`PARAM_BLOB=value` and its NUL may take 131,072 bytes (the kernel's MAX_ARG_STRLEN):
    the longest value that fits reaches the script whole; one byte more would fail every
    shell step at its start, so the run is refused at once, naming the param and the limit."""
    h = await harness(BLOB)
    fits = "x" * (131_072 - len("PARAM_BLOB=") - 1)
    run_id = await h.run("blob", {"blob": fits})
    assert (await h.steps(run_id))["size"].output["stdout"].strip() == str(len(fits))
    with pytest.raises(ParamError) as refused:
        await h.run("blob", {"blob": fits + "y"})
    assert refused.value.errors == [
        "blob: 131,073 bytes as $PARAM_BLOB, over the 131,072 bytes (128 KiB) the kernel "
        "lets one variable or argument take (MAX_ARG_STRLEN), so shell step 'size' and every "
        "other could not start: pass a smaller value, such as a path or a URL to the data"
    ]
    run_id = await h.run("no-shell", {"blob": fits * 2})  # no shell step: no variable
    assert (await h.run_row(run_id)).status == "succeeded"
