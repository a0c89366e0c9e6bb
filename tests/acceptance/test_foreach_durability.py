"""``kill -9`` of a real ``baton serve`` in the middle of a ``for_each`` fan-out, on SQLite
and PostgreSQL: the items not done yet run after the restart, finished items never run
again, and the items in flight follow the rule of steps in flight (re-run when the step
is idempotent or has attempts left, else ``interrupted``, which counts as a failure).
Each item appends a line to ``<item>.log`` in the work folder, so a second run shows."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from storage import tables as t
from tests.acceptance.serve import Server, lines, pid_written, wait_until

SCRIPT = """
                echo run >> "$PARAM_DIR/$ITEM.log"
                case "$ITEM" in c|d)
                  [ "$(wc -l < "$PARAM_DIR/$ITEM.log")" -ge 2 ] && exit 0
                  echo $$ > "$PARAM_DIR/$ITEM.pid"; exec sleep 30;;
                esac"""


def fleet(name: str, idempotent: bool) -> str:
    return f"""
        name: {name}
        params: {{dir: {{type: string, required: true}}}}
        steps:
          - id: roll
            action: shell
            idempotent: {str(idempotent).lower()}
            for_each: {{items: [a, b, c, d, e, f], parallel: 2, max_failures: 2}}
            with:
              env: {{ITEM: "{{{{ item }}}}"}}
              script: |{SCRIPT}
    """


PLAYBOOKS = {"once": fleet("once", False), "idem": fleet("idem", True)}


@pytest.fixture
def server(tmp_path: Path, db_url: str) -> Iterator[Server]:
    made = Server(tmp_path, db_url, PLAYBOOKS)
    yield made
    made.close()


def item_rows(server: Server, run_id: str) -> list[sa.Row[Any]]:
    query: Any = (
        sa.select(t.step_items).where(t.step_items.c.run_id == run_id).order_by(t.step_items.c.idx)
    )
    return server._all(query)


def kill_mid_fan_out(server: Server, playbook: str) -> str:
    """Start the fan-out and kill Baton once a and b are done and c and d run."""
    server.start()
    run_id = server.start_run(playbook)

    def in_flight() -> bool:
        return [r.status for r in item_rows(server, run_id)][:4] == [
            "succeeded",
            "succeeded",
            "running",
            "running",
        ]

    wait_until(in_flight, what="a and b done, c and d running")
    for item in "cd":
        wait_until(lambda i=item: pid_written(server.work / f"{i}.pid"), what=f"{item} started")
    server.kill()
    return run_id


def test_kill_mid_fan_out_resumes_the_rest_and_interrupts_items_in_flight(
    server: Server,
) -> None:
    run_id = kill_mid_fan_out(server, "once")
    server.start()
    run = server.wait_run(run_id)

    rows = item_rows(server, run_id)
    assert [(r.item, r.status) for r in rows] == [
        ("a", "succeeded"),
        ("b", "succeeded"),
        ("c", "interrupted"),
        ("d", "interrupted"),
        ("e", "succeeded"),
        ("f", "succeeded"),
    ]
    assert run.status == "succeeded", run.error  # 2 failed items: within max_failures
    for item in "abcdef":
        assert lines(server.work / f"{item}.log") == ["run"], item  # nothing ran twice
    step = server.step(run_id, "roll")
    assert [i["status"] for i in step.output["items"]] == [r.status for r in rows]
    assert not server.open_rows()


def test_kill_mid_fan_out_reruns_items_in_flight_of_an_idempotent_step(
    server: Server,
) -> None:
    run_id = kill_mid_fan_out(server, "idem")
    server.start()
    run = server.wait_run(run_id)

    assert run.status == "succeeded", run.error
    rows = item_rows(server, run_id)
    assert [(r.item, r.status, r.attempts) for r in rows] == [
        ("a", "succeeded", 1),
        ("b", "succeeded", 1),
        ("c", "succeeded", 2),
        ("d", "succeeded", 2),
        ("e", "succeeded", 1),
        ("f", "succeeded", 1),
    ]
    assert lines(server.work / "a.log") == ["run"]  # finished items never run again
    assert lines(server.work / "c.log") == ["run", "run"]
    assert server.api_run(run_id)["steps"][0]["items"] == {
        "failed_items": [],
        "total": 6,
        "done": 6,
        "failed": 0,
        "running": 0,
    }
