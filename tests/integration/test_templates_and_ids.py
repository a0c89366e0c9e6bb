"""Templates in real runs (SQLite and PostgreSQL): step ids with hyphens and ids named
like dict methods read from templates and conditions; argv items that are numbers."""

from __future__ import annotations

from tests.conftest import HarnessFactory

PATCH = {
    "patch": """
        name: patch
        steps:
          - id: patch-web1
            action: shell
            with: {argv: [echo, patched]}
          - id: get
            action: shell
            with: {argv: [echo, fetched]}
          - id: approve-prod
            action: log
            needs: [patch-web1, get]
            when: steps.patch-web1.status == 'succeeded' and steps.get.status == 'succeeded'
            with:
              message: >-
                {{ steps.patch-web1.output.stdout | trim }}+{{ steps.get.output.stdout | trim }}
          - id: items
            action: log
            needs: [approve-prod]
            when: "{{ steps.approve-prod.status == 'skipped' }}"
            with: {message: never}
    """
}


async def test_steps_are_read_by_hyphenated_and_dict_method_ids(harness: HarnessFactory) -> None:
    h = await harness(PATCH)

    run_id = await h.run("patch")

    assert (await h.run_row(run_id)).status == "succeeded"
    steps = await h.steps(run_id)
    assert {k: v.status for k, v in steps.items()} == {
        "patch-web1": "succeeded",
        "get": "succeeded",
        "approve-prod": "succeeded",
        "items": "skipped",
    }
    assert steps["approve-prod"].output["message"] == "patched+fetched"


ARGV = {
    "count": """
        name: count
        params:
          n: {type: int, default: 3}
          ratio: {type: float, default: 0.5}
          loud: {type: bool, default: true}
        steps:
          - id: say
            action: shell
            with: {argv: [echo, "{{ params.n }}", "{{ params.ratio }}", "{{ params.loud }}", 7]}
    """
}


async def test_argv_items_rendered_to_numbers_and_booleans_run(harness: HarnessFactory) -> None:
    h = await harness(ARGV)

    run_id = await h.run("count", {"n": "12"})

    step = (await h.steps(run_id))["say"]
    assert (step.status, step.error) == ("succeeded", None)
    assert step.output["stdout"] == "12 0.5 true 7\n"
