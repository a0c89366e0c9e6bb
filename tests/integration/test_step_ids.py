"""Step ids with hyphens, and ids named like dict methods, read from templates and
conditions of a real run (SQLite and PostgreSQL)."""

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
