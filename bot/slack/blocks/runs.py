"""A run's card (its header, steps and buttons) and the messages of its thread: step
outputs, failures, log lines."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from bot.slack.blocks.kit import (
    CANCEL,
    CODE_ROOM,
    MAX_BLOCKS,
    RETRY,
    button,
    chunk_lines,
    clip,
    code,
    context,
    escape,
    fit,
    section,
)
from engine.playbooks import params as paramlib
from engine.playbooks.durations import format_duration
from engine.playbooks.foreach import Tally
from engine.runs.state import RUNS_IN_PROGRESS
from engine.views import queries

RUN_EMOJI = {
    "queued": ":hourglass_flowing_sand:",
    "running": ":arrows_counterclockwise:",
    "waiting": ":double_vertical_bar:",
    "succeeded": ":white_check_mark:",
    "failed": ":x:",
    "cancelled": ":no_entry_sign:",
    "timed_out": ":alarm_clock:",
}
STEP_EMOJI = {
    "pending": ":white_circle:",
    "running": ":arrows_counterclockwise:",
    "waiting": ":hourglass:",
    "succeeded": ":white_check_mark:",
    "failed": ":x:",
    "skipped": ":fast_forward:",
    "cancelled": ":no_entry_sign:",
    "interrupted": ":warning:",
}
ACTIVE = RUNS_IN_PROGRESS
RETRYABLE = ("failed", "cancelled", "timed_out")


def _duration(started: str | None, finished: str | None, now: datetime) -> str:
    if not started:
        return ""
    end = datetime.fromisoformat(finished) if finished else now
    seconds = max(0.0, (end - datetime.fromisoformat(started)).total_seconds())
    return format_duration(seconds)


def params_text(params: dict[str, Any]) -> str:
    shown = [
        f"`{escape(k)}={escape(paramlib.text(v))}`" for k, v in params.items() if v is not None
    ]
    return " ".join(shown)


def who(requested_by: str, trigger: str) -> str:
    """``<@U…>`` for a Slack user id, the name otherwise."""
    if trigger == "slack" or (requested_by[:1] in ("U", "W") and requested_by.isalnum()):
        return f"<@{requested_by}>"
    return escape(requested_by)


def step_line(step: dict[str, Any], now: datetime) -> str:
    emoji = STEP_EMOJI.get(step["status"], ":grey_question:")
    took = _duration(step.get("started_at"), step.get("finished_at"), now)
    parts = [f"{emoji} `{escape(step['id'])}` {step['status']}"]
    if took:
        parts.append(took)
    if step.get("attempts", 0) > 1:
        parts.append(f"attempt {step['attempts']}")
    phase = step.get("phase", "main")
    if phase != "main":
        parts.append(f"_{phase.replace('_', ' ')}_")
    if step.get("items"):
        parts.append(escape(Tally.from_json(step["items"]).summary()))
    waiting_for = queries.waiting_for(step)
    if waiting_for:
        parts.append(f"waiting for {escape(waiting_for)}")
    return " · ".join(parts)


def run_card(
    run: dict[str, Any],
    now: datetime,
    *,
    channel_name: str | None = None,
    extra: Sequence[str] = (),
) -> tuple[str, list[dict[str, Any]]]:
    """The run card: (fallback text, blocks). ``extra`` lines (mrkdwn, escaped by the
    caller) go under the header: an alert, its links and repeats, say."""
    status = run["status"]
    emoji = RUN_EMOJI.get(status, ":grey_question:")
    title = (
        f"{emoji} *{escape(run['playbook'])}* · run `{run['id']}` · *{status.replace('_', ' ')}*"
    )
    if run.get("attempt", 1) > 1:
        title += f" · attempt {run['attempt']}"
    took = _duration(run.get("started_at"), run.get("finished_at"), now)
    by = f"started by {who(run['requested_by'], run['trigger'])} via {run['trigger']}"
    if channel_name:
        by += f" in #{escape(channel_name)}"
    facts = [by + (f" · {took}" if took else "")]
    params = params_text(run.get("params") or {})
    if params:
        facts.append(f"params: {params}")
    head: list[dict[str, Any]] = [section(title), context(*facts)]
    head += [context(line) for line in extra]
    tail: list[dict[str, Any]] = []
    if run.get("error"):
        body, _ = code(run["error"], 1500)
        tail.append(section(f"*error*{_at_step(run)}: {body}"))
    buttons = []
    if status in ACTIVE:
        buttons.append(
            button(
                "Cancel",
                CANCEL,
                run["id"],
                "danger",
                confirm={
                    "title": {"type": "plain_text", "text": "Cancel this run?"},
                    "text": {"type": "mrkdwn", "text": f"Cancel run `{run['id']}`?"},
                    "confirm": {"type": "plain_text", "text": "Cancel the run"},
                    "deny": {"type": "plain_text", "text": "Keep it running"},
                },
            )
        )
    if status in RETRYABLE:
        buttons.append(button("Retry", RETRY, run["id"], "primary"))
    if buttons:
        tail.append({"type": "actions", "block_id": f"run:{run['id']}", "elements": buttons})
    lines = [step_line(s, now) for s in run.get("steps") or []]
    room = MAX_BLOCKS - len(head) - len(tail)
    steps = [section(chunk) for chunk in chunk_lines(lines)]
    if len(steps) > room:
        steps = fit(
            steps,
            room,
            lambda n: f"… {n} more step groups: `status {run['id']}` shows every step",
        )
    text = f"{run['playbook']} run {run['id']}: {status.replace('_', ' ')}"
    return text, head + steps + tail


def _at_step(run: dict[str, Any]) -> str:
    return f" (step `{escape(run['failed_step'])}`)" if run.get("failed_step") else ""


# --- thread messages -------------------------------------------------------------------


def output_text(output: dict[str, Any] | None) -> str:
    """The readable part of a step's output: stdout and stderr, or the HTTP text, or the
    output as JSON."""
    if not output:
        return ""
    parts: list[str] = []
    for key in ("stdout", "stderr"):
        value = output.get(key)
        if isinstance(value, str) and value.strip():
            parts.append(value if len(parts) == 0 else f"--- {key} ---\n{value}")
    if parts:
        return "\n".join(parts).rstrip("\n")
    if isinstance(output.get("text"), str):
        return str(output["text"])
    return json.dumps(output, indent=2, default=str)


def has_text(output: dict[str, Any] | None) -> bool:
    """Whether a step's output has text worth showing (what a command or a server said)."""
    return any(
        isinstance((output or {}).get(key), str) and output[key].strip()  # type: ignore[index]
        for key in ("stdout", "stderr", "text")
    )


def step_outputs(
    details: Sequence[tuple[str, dict[str, Any]]], room: int = 700
) -> tuple[str, list[dict[str, Any]], list[str]]:
    """Finished steps' output in the card's thread, the end of each (``room`` characters):
    (text, blocks, the steps whose output was cut — the caller uploads them whole)."""
    body: list[dict[str, Any]] = []
    cut: list[str] = []
    for step_id, output in details:
        shown, was_cut = code(output_text(output), room)
        note = " (the end; the whole output is attached below)" if was_cut else ""
        body.append(section(f":white_check_mark: `{escape(step_id)}` output{note}\n{shown}"))
        if was_cut:
            cut.append(step_id)
    body = fit(body, MAX_BLOCKS, lambda n: f"… {n} more steps' output: `status` has them")
    names = ", ".join(step_id for step_id, _ in details)
    return clip(f"output of {names}", 500), body, cut


def step_failure(
    run_id: str, step_id: str, error: str, output: dict[str, Any] | None, attempt: int
) -> tuple[str, list[dict[str, Any]], bool]:
    """A failed step in the card's thread: (text, blocks, whether the output was cut —
    the caller then uploads the whole output as a file)."""
    title = f":x: step `{escape(step_id)}` failed"
    if attempt > 1:
        title += f" (attempt {attempt})"
    err, err_cut = code(error, 1200)
    blocks = [section(f"{title}\n{err}")]
    text = output_text(output)
    cut = err_cut
    if text:
        body, out_cut = code(text, CODE_ROOM - 100)
        cut = cut or out_cut
        note = " (the end; the whole output is attached below)" if out_cut else ""
        blocks.append(section(f"*output*{note}\n{body}"))
    return escape(f"step {step_id} of run {run_id} failed: {clip(error, 200)}"), blocks, cut


def run_failure(
    run: dict[str, Any],
    tail: str,
    *,
    mentions: Sequence[str] = (),
    link: str | None = None,
) -> tuple[str, list[dict[str, Any]]]:
    """The failure notice: which step, its error, its output's end, and a Retry button."""
    status = run["status"].replace("_", " ")
    who_ = " ".join(mentions)
    title = f":rotating_light: *{escape(run['playbook'])}* run `{run['id']}` {status}"
    title += _at_step(run)
    if who_:
        title = f"{who_} {title}"
    blocks = [section(title)]
    if run.get("error"):
        body, _ = code(run["error"], 1200)
        blocks.append(section(f"*error*\n{body}"))
    if tail:
        body, _ = code(tail, 1500)
        blocks.append(section(f"*output (end)*\n{body}"))
    facts = [f"started by {who(run['requested_by'], run['trigger'])}"]
    if link:
        facts.append(f"<{link}|the run's card>")
    blocks.append(context(*facts))
    blocks.append(
        {
            "type": "actions",
            "block_id": f"failure:{run['id']}",
            "elements": [button("Retry", RETRY, run["id"], "primary")],
        }
    )
    text = escape(
        f"{run['playbook']} run {run['id']} {status}: {clip(run.get('error') or '', 200)}"
    )
    if mentions:  # the mentions notify from the message's text
        text = f"{' '.join(mentions)} {text}"
    return text, blocks


def log_lines(lines: Sequence[tuple[str | None, str, str]]) -> tuple[str, list[dict]]:
    """Log lines of a run (step, level, message) as one thread message."""
    shown = []
    for step_id, level, message in lines:
        mark = ":warning: " if level in ("warning", "error") else ""
        where = f"`{escape(step_id)}` " if step_id else ""
        shown.append(f"{mark}{where}{escape(message)}")
    blocks = [section(chunk) for chunk in chunk_lines(shown)]
    blocks = fit(blocks, MAX_BLOCKS, lambda n: f"… {n} more log parts cut")
    return escape(clip("\n".join(m for _, _, m in lines), 500)), blocks
