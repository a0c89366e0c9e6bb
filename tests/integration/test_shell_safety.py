"""Hostile input against shell steps, through the engine: a param never runs as shell
code."""

from __future__ import annotations

import textwrap
from pathlib import Path

from engine import playbook
from engine.catalog import Catalog
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
