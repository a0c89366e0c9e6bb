"""How a fan-out's progress reads on the Slack card, in ``baton run`` and in ``status``:
"12/40 done, 1 failed, 5 running" and the first failed items, within Slack's limits even
with 1,000 items of long names."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from typing import Any

from bot.progress import Progress
from bot.slack import blocks
from engine import events as ev
from engine.playbooks.foreach import Tally

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def fan_out_step(step_id: str, total: int, failed: int, running: int, name: int = 12) -> dict:
    names = [f"{'w' * name}{i}" for i in range(failed)]
    return {
        "id": step_id,
        "phase": "main",
        "status": "running",
        "attempts": 1,
        "output": None,
        "error": None,
        "started_at": "2026-12-01T11:59:00+00:00",
        "finished_at": None,
        "items": {
            "total": total,
            "done": total - running - 10,
            "failed": failed,
            "running": running,
            "failed_items": names[:10],
        },
    }


def a_run(steps: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": "3f9c0a1b2c4d",
        "playbook": "rolling-restart",
        "status": "running",
        "params": {"hosts": ["web"] * 1000},
        "trigger": "slack",
        "requested_by": "U0123",
        "created_at": "2026-12-01T11:58:00+00:00",
        "started_at": "2026-12-01T11:58:00+00:00",
        "finished_at": None,
        "attempt": 1,
        "error": None,
        "failed_step": None,
        "parent_run_id": None,
        "steps": steps,
    }


def test_the_card_shows_a_fan_outs_progress_and_its_first_failed_items() -> None:
    step = fan_out_step("restart", total=40, failed=5, running=5)
    step["items"]["done"] = 12
    _, card = blocks.run_card(a_run([step]), NOW)
    text = "\n".join(b["text"]["text"] for b in card if b["type"] == "section")
    assert (
        "12/40 done, 5 failed, 5 running; failed: wwwwwwwwwwww0, wwwwwwwwwwww1, "
        "wwwwwwwwwwww2 and 2 more" in text
    )


def test_a_card_of_many_fan_outs_of_1000_items_stays_within_slacks_limits() -> None:
    steps = [
        fan_out_step(f"roll-{i}-{'x' * 150}", total=1000, failed=900, running=50, name=600)
        for i in range(60)
    ]
    _, card = blocks.run_card(a_run(steps), NOW)
    assert len(card) <= blocks.MAX_BLOCKS
    for block in card:
        for part in [block.get("text"), *(block.get("elements") or [])]:
            if isinstance(part, dict) and "text" in part and isinstance(part["text"], str):
                assert len(part["text"]) <= blocks.MAX_SECTION
    assert "more step groups" in str(card[-2:])  # the cut is marked


def test_run_progress_prints_a_fan_out_about_every_tenth_and_every_failure() -> None:
    out = io.StringIO()
    progress = Progress(out)
    for done in range(0, 41):
        failed = 1 if done >= 7 else 0
        tally = Tally(total=40, done=done, failed=failed, running=min(5, 40 - done),
                      failed_names=("web7",) if failed else ())  # fmt: skip
        progress.render(
            ev.ItemsProgressed(
                run_id="r", playbook="p", at=NOW, step_id="restart", total=40, done=done,
                failed=failed, running=tally.running, failed_names=tally.failed_names,
                text=tally.text(), failures=tally.failures(),
            )
        )  # fmt: skip
    lines = out.getvalue().splitlines()
    assert lines[0] == "  … restart: 0/40 done, 5 running"
    assert "  … restart: 7/40 done, 1 failed, 5 running; failed: web7" in lines
    assert lines[-1] == "  … restart: 40/40 done, 1 failed; failed: web7"
    assert len(lines) <= 12
