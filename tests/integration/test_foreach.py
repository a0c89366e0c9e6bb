"""``for_each`` through the real engine on SQLite and PostgreSQL: items as sub-steps with
their own rows, the parallel bound, max_failures, per-item retries and timeouts, the
output later steps read, cancel mid fan-out, and the run JSON."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bot.commands import Actor, Commands
from bot.dashboard import dag
from bot.slack import blocks
from engine import events as ev
from engine.views import queries, runview
from storage import tables as t
from tests.conftest import HarnessFactory
from tests.fakes.processes import wait_until
from tests.harness import Harness
from tests.integration import support as s
from tests.integration.foreach_probe import PROBE

ALICE = Actor(id="alice", name="Alice", via="console")

PROBED = {
    "fleet": """
        name: fleet
        params:
          hosts: {type: list, default: [web1, web2, web3, web4, web5, web6, web7]}
          bad: {type: list, default: []}
          parallel: {type: int, default: 2}
        steps:
          - id: restart
            action: python
            for_each:
              items: "{{ params.hosts }}"
              as: host
              parallel: 3
              max_failures: 1
            with:
              call: tests.integration.foreach_probe:visit
              args: {item: "{{ host }}", index: "{{ index }}", fail: "{{ host in params.bad }}"}
          - id: report
            action: log
            needs: restart
            with: {message: "{{ steps.restart.items | map(attribute='item') | join(',') }}"}
    """,
}


async def items(h: Harness, run_id: str, step_id: str) -> list[sa.Row[Any]]:
    return await h.store.all(
        sa.select(t.step_items)
        .where(t.step_items.c.run_id == run_id, t.step_items.c.step_id == step_id)
        .order_by(t.step_items.c.idx)
    )


async def wait_for_items(h: Harness, run_id: str, step_id: str, statuses: list[str]) -> None:
    """Until the items' rows have ``statuses`` (real processes move them), or fail."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while (now := [r.status for r in await items(h, run_id, step_id)]) != statuses:
        assert loop.time() < deadline, f"items never reached {statuses}: {now}"
        await asyncio.sleep(0.02)


async def test_items_run_as_sub_steps_within_the_parallel_bound(harness: HarnessFactory) -> None:
    h = await harness(PROBED)
    PROBE.reset(held=True)
    run_id = await s.start(h, "fleet")
    await wait_until(lambda: PROBE.in_flight == 3)
    assert PROBE.most == 3  # never more than parallel, even while held
    _, nodes, _ = await runview.run_detail(h.store, run_id)  # the run page's graph node
    (node,) = [n for n in nodes if n.id == "restart"]
    assert node.counts == {"running": 3, "total": 7}
    assert dag.label_of(node, {"status": "running"}).endswith("\n0/7 done, 3 running")
    assert PROBE.gate is not None
    PROBE.gate.set()
    await h.engine.wait_for(run_id)
    await h.engine.wait_idle()

    assert PROBE.most == 3
    assert (await h.run_row(run_id)).status == "succeeded"
    rows = await items(h, run_id, "restart")
    assert [(r.item, r.status, r.attempts) for r in rows] == [
        (f"web{i}", "succeeded", 1) for i in range(1, 8)
    ]
    assert rows[4].output == {"seen": "web5", "index": 4, "attempt": 1}
    step = (await h.steps(run_id))["restart"]
    assert [i["item"] for i in step.output["items"]] == [f"web{i}" for i in range(1, 8)]
    assert step.output["items"][0] == {
        "item": "web1",
        "status": "succeeded",
        "output": {"seen": "web1", "index": 0, "attempt": 1},
        "error": None,
        "attempts": 1,
    }
    report = (await h.steps(run_id))["report"]
    assert report.output["message"] == "web1,web2,web3,web4,web5,web6,web7"
    progress = s.of_type(h.seen(), ev.ItemsProgressed)
    assert progress[-1].text == "7/7 done"


async def test_too_many_failures_stop_new_items_and_fail_the_step(
    harness: HarnessFactory,
) -> None:
    h = await harness(PROBED)
    PROBE.reset()
    run_id = await h.run("fleet", {"bad": ["web1", "web2", "web3"]})

    run = await h.run_row(run_id)
    assert run.status == "failed"
    assert run.failed_step == "restart"
    assert "3 of 7 items failed: web1, web2, web3" in run.error
    rows = await items(h, run_id, "restart")
    statuses = [r.status for r in rows]
    assert statuses[:3] == ["failed"] * 3
    assert statuses[3:] == ["skipped"] * 4  # no new item once 2 > max_failures 1
    assert "more than max_failures (1)" in rows[3].error
    assert sorted(PROBE.calls) == ["web1", "web2", "web3"]
    assert (await h.statuses(run_id))["report"] == "skipped"


async def test_failures_within_max_failures_let_the_step_succeed(
    harness: HarnessFactory,
) -> None:
    h = await harness(PROBED)
    PROBE.reset()
    run_id = await h.run("fleet", {"bad": ["web4"]})

    assert (await h.run_row(run_id)).status == "succeeded"
    rows = await items(h, run_id, "restart")
    assert [r.status for r in rows].count("failed") == 1
    assert rows[3].error == "web4 is broken"


RETRIED = {
    "flaky": """
        name: flaky
        steps:
          - id: each
            action: shell
            for_each: {items: [a, b], parallel: 2}
            retry: {attempts: 3, delay: 10s}
            with:
              script: |
                f="$PARAM_DIR/$ITEM"; n=$(cat "$f" 2>/dev/null || echo 0); echo $((n+1)) > "$f"
                [ "$ITEM" = b ] || [ "$n" -ge 1 ]
              env: {ITEM: "{{ item }}"}
        params:
          dir: {required: true}
    """,
    "slow": """
        name: slow
        steps:
          - id: each
            action: shell
            for_each: {items: [x, y], parallel: 2, max_failures: "50%"}
            timeout: 200ms
            with:
              script: '[ "$ITEM" = y ] || exec sleep 30'
              env: {ITEM: "{{ item }}"}
    """,
}


async def test_retries_and_timeouts_apply_per_item(harness: HarnessFactory, tmp_path: Path) -> None:
    h = await harness(RETRIED)
    run_id = await s.start(h, "flaky", {"dir": str(tmp_path)})
    await wait_until(lambda: (tmp_path / "a").exists() and (tmp_path / "b").exists())
    await h.engine.wait_idle()
    rows = await items(h, run_id, "each")
    assert [(r.status, r.attempts) for r in rows] == [("waiting", 1), ("succeeded", 1)]
    await h.advance(10)  # the retry delay, on the engine's clock
    assert [(r.status, r.attempts) for r in await items(h, run_id, "each")] == [
        ("succeeded", 2),
        ("succeeded", 1),
    ]
    assert (await h.run_row(run_id)).status == "succeeded"

    slow = await s.start(h, "slow")
    await wait_for_items(h, slow, "each", ["running", "succeeded"])
    await h.advance(0.2)  # the step's timeout, per item
    await h.engine.wait_for(slow)
    rows = await items(h, slow, "each")
    assert [r.status for r in rows] == ["timed_out", "succeeded"], [r.error for r in rows]
    assert rows[0].error == "timed out after 0:00:00.200000"
    assert (await h.run_row(slow)).status == "succeeded"  # 1 of 2 is within 50%


BLOCKING = {
    "hold": """
        name: hold
        params: {dir: {required: true}}
        steps:
          - id: each
            action: shell
            for_each: {items: [a, b, c, d, e], parallel: 2}
            with:
              env: {ITEM: "{{ item }}"}
              script: 'mkdir "$PARAM_DIR/$ITEM"; echo $$ > "$PARAM_DIR/$ITEM/pid"; exec sleep 30'
        finally:
          - id: tidy
            action: log
            with: {message: "{{ steps.each.items | length }} items"}
    """
}


async def test_cancel_mid_fan_out_kills_running_items_and_starts_no_more(
    harness: HarnessFactory, tmp_path: Path
) -> None:
    h = await harness(BLOCKING)
    run_id = await s.start(h, "hold", {"dir": str(tmp_path)})
    pids = [await s.started_pid(tmp_path / item) for item in "ab"]
    assert (await queries.get_run(h.store, run_id))["steps"][0]["items"] == {
        "total": 5,
        "done": 0,
        "failed": 0,
        "running": 2,
        "failed_items": [],
    }

    await h.engine.cancel(run_id, "bob")
    await h.engine.wait_for(run_id)
    for pid in pids:
        await s.gone(pid)

    assert (await h.run_row(run_id)).status == "cancelled"
    rows = await items(h, run_id, "each")
    assert [r.status for r in rows] == ["cancelled", "cancelled", "skipped", "skipped", "skipped"]
    assert rows[0].error == "cancelled by bob"
    assert rows[2].error == "not started: the run was cancelled"
    assert not (tmp_path / "c").exists()  # no new item started
    steps = await h.steps(run_id)
    assert steps["each"].status == "cancelled"
    assert steps["tidy"].output["message"] == "5 items"


RESTARTED = {
    "again": """
        name: again
        params: {dir: {required: true}}
        steps:
          - id: each
            action: shell
            idempotent: true
            for_each: {items: [a, b, c, d], parallel: 2}
            with:
              env: {ITEM: "{{ item }}"}
              script: |
                echo run >> "$PARAM_DIR/$ITEM.log"
                case "$ITEM" in c|d) exit 0;; esac
                [ -d "$PARAM_DIR/$ITEM" ] && exit 0
                mkdir "$PARAM_DIR/$ITEM"; echo $$ > "$PARAM_DIR/$ITEM/pid"; exec sleep 30
    """
}


async def test_a_stop_mid_fan_out_leaves_the_rest_to_the_next_start(
    harness: HarnessFactory, tmp_path: Path
) -> None:
    h = await harness(RESTARTED)
    run_id = await s.start(h, "again", {"dir": str(tmp_path)})
    for item in "ab":
        await s.started_pid(tmp_path / item)

    await h.restart()  # a graceful stop: running items interrupted, none started
    await h.engine.wait_for(run_id)
    await h.engine.wait_idle()

    assert (await h.run_row(run_id)).status == "succeeded"
    rows = await items(h, run_id, "each")
    assert [(r.item, r.status, r.attempts) for r in rows] == [
        ("a", "succeeded", 2),
        ("b", "succeeded", 2),
        ("c", "succeeded", 1),
        ("d", "succeeded", 1),
    ]
    assert s.lines(tmp_path / "c.log") == ["run"]
    assert s.lines(tmp_path / "a.log") == ["run", "run"]


SEALED = {
    "keys": """
        name: keys
        params:
          dir: {required: true}
          key: {type: secret}
        steps:
          - id: each
            action: shell
            idempotent: true
            for_each: {items: "{{ ['plain', params.key] }}", parallel: 2}
            with:
              env: {ITEM: "{{ item }}", INDEX: "i{{ index }}"}
              script: |
                echo "$ITEM" >> "$PARAM_DIR/$INDEX.log"
                [ -d "$PARAM_DIR/$INDEX" ] && exit 0
                mkdir "$PARAM_DIR/$INDEX"; echo $$ > "$PARAM_DIR/$INDEX/pid"; exec sleep 30
    """
}


async def test_an_item_holding_a_secret_is_stored_sealed_and_resumes_with_its_value(
    harness: HarnessFactory, tmp_path: Path
) -> None:
    h = await harness(SEALED)
    key = "hunter2-correct-horse"
    run_id = await s.start(h, "keys", {"dir": str(tmp_path), "key": key})
    for index in ("i0", "i1"):
        await s.started_pid(tmp_path / index)
    rows = await items(h, run_id, "each")
    assert rows[0].item == "plain" and key not in json.dumps([r.item for r in rows])
    assert rows[1].item["shown"] == "***"  # what status and the API show

    await h.restart()  # the resumed fan-out runs the item again, with the real value
    await h.engine.wait_for(run_id)
    await h.engine.wait_idle()
    assert (await h.run_row(run_id)).status == "succeeded"
    assert s.lines(tmp_path / "i1.log") == [key, key]
    tallies = await queries.get_run(h.store, run_id)
    assert key not in json.dumps(tallies)


async def test_status_in_chat_shows_the_fan_outs_progress_and_failed_items(
    harness: HarnessFactory,
) -> None:
    h = await harness(PROBED)
    PROBE.reset()
    cmds = Commands(engine=h.engine, schedules=h.schedules, timezone="UTC")
    run_id = await h.run("fleet", {"bad": ["web2", "web3", "web6"]})

    reply = await cmds.handle(ALICE, f"status {run_id}", {"front_end": "console"})

    assert "  restart: failed" in reply.text
    # web2 and web3 fail among the first 3: over max_failures 1, nothing more starts
    assert "    items: 7/7 done, 2 failed; failed: web2, web3" in reply.text
    assert "    2 of 7 items failed: web2, web3" in reply.text


THOUSAND = {
    "wide": """
        name: wide
        steps:
          - id: each
            action: python
            for_each: {items: "{{ range(1000) | list }}", parallel: 50, max_failures: "50%"}
            with:
              call: tests.integration.foreach_probe:visit
              args:
                item: "{{ 'web-host-with-a-rather-long-name-' ~ item }}"
                index: "{{ index }}"
                fail: "{{ item % 3 == 0 }}"
    """
}


async def test_the_card_of_a_1000_item_fan_out_stays_within_slacks_limits(
    harness: HarnessFactory,
) -> None:
    h = await harness(THOUSAND)
    PROBE.reset()
    run_id = await h.run("wide")
    assert (await h.run_row(run_id)).status == "succeeded"  # 334 failed: within 50%
    run = await queries.get_run(h.store, run_id)
    assert run["steps"][0]["items"]["total"] == 1000
    assert len(run["steps"][0]["output"]["items"]) == 1000
    unexpected = [
        (i, item["status"], item["error"])
        for i, item in enumerate(run["steps"][0]["output"]["items"])
        if (item["status"] == "failed") != (i % 3 == 0)
    ]
    assert unexpected == []

    _, card = blocks.run_card(run, h.clock.now())
    assert len(card) <= blocks.MAX_BLOCKS
    assert all(len(b["text"]["text"]) <= blocks.MAX_SECTION for b in card if "text" in b)
    assert "1000/1000 done, 334 failed; failed: 0, 3, 6 and 331 more" in str(card)
    # the step's output in a thread: its end in a code block, the whole as a file
    _, thread, cut = blocks.step_failure(run_id, "each", "x", run["steps"][0]["output"], 1)
    assert cut and len(thread) <= blocks.MAX_BLOCKS
    assert all(len(b["text"]["text"]) <= blocks.MAX_SECTION for b in thread)
