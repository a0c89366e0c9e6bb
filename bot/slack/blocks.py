"""Block Kit: what Baton's Slack messages and modals look like.

Pure functions from plain data (the run JSON of ``engine.queries``, a ``Reply``, a
playbook) to Slack's JSON. Slack's limits are respected here, in one place, and every
cut is marked: at most 50 blocks a message and 100 a modal, 3,000 characters a section,
150 a header, 75 a button or option, 24 a modal title, 100 options a select.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

from engine import access, queries
from engine import params as paramlib
from engine.durations import format_duration
from engine.foreach import Tally
from engine.playbook import ParamType, Playbook

MAX_BLOCKS = 50
MAX_MODAL_BLOCKS = 100
MAX_SECTION = 3000
MAX_TEXT = 40_000
MAX_BUTTON = 75
MAX_OPTIONS = 100
MAX_METADATA = 3000
CODE_ROOM = MAX_SECTION - 200  # a code block's share of a section, with room for its title

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
ACTIVE = ("queued", "running", "waiting")
RETRYABLE = ("failed", "cancelled", "timed_out")

CANCEL = "baton_cancel"
RETRY = "baton_retry"
OPEN_FORM = "baton_open_form"
RUN_FORM = "baton_run_form"

Mention = Callable[[str], str]


def escape(text: str) -> str:
    """Text as Slack shows it literally (``&``, ``<``, ``>`` are markup otherwise)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def markup(token: str) -> str:
    """Slack markup for a user, user group or channel id; anything else as written."""
    if token.isalnum() and token.isupper():
        if token[:1] in ("U", "W"):
            return f"<@{token}>"
        if token[:1] == "S":
            return f"<!subteam^{token}>"
        if token[:1] in ("C", "G"):
            return f"<#{token}>"
    return token


def refusal(decision: access.Decision) -> str:
    """An access refusal as mrkdwn: everything escaped (the playbook name is typed by the
    asker) except the mentions of who may and the channels."""
    marks: dict[str, str] = {}

    def mention(token: str) -> str:
        key = f"\x00{len(marks)}\x00"
        marks[key] = markup(token)
        return key

    text = escape(decision.refusal(mention))
    for key, shown in marks.items():
        text = text.replace(key, shown)
    return text


def clip(text: str, limit: int, marker: str = "…") -> str:
    return text if len(text) <= limit else text[: max(0, limit - len(marker))] + marker


def clip_tail(text: str, limit: int) -> tuple[str, bool]:
    """The end of ``text`` within ``limit`` characters (output tails matter most), and
    whether anything was cut."""
    if len(text) <= limit:
        return text, False
    cut = text[-limit:]
    nl = cut.find("\n")
    if 0 <= nl < 200:
        cut = cut[nl + 1 :]
    return cut, True


def section(text: str) -> dict[str, Any]:
    """A section of mrkdwn (Slack refuses an empty one: a zero-width space stands in)."""
    shown = clip(text, MAX_SECTION) or "\u200b"
    return {"type": "section", "text": {"type": "mrkdwn", "text": shown}}


def context(*texts: str) -> dict[str, Any]:
    elements = [{"type": "mrkdwn", "text": clip(t, MAX_SECTION)} for t in texts if t][:10]
    return {"type": "context", "elements": elements}


def button(
    text: str, action_id: str, value: str, style: str | None = None, confirm: Any = None
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "type": "button",
        "text": {"type": "plain_text", "text": clip(text, MAX_BUTTON)},
        "action_id": action_id,
        "value": value[:2000],
    }
    if style:
        out["style"] = style
    if confirm:
        out["confirm"] = confirm
    return out


def code(text: str, limit: int = CODE_ROOM) -> tuple[str, bool]:
    """``text`` as a code block of at most ``limit`` characters, keeping its end; escaped,
    so output that holds ``<!channel>`` or ``<url|label>`` shows as text."""
    body, cut = clip_tail(escape(text.replace("```", "`\u200b``")), limit - 8)
    return f"```{body}```", cut


def chunk_lines(lines: Iterable[str], limit: int = MAX_SECTION) -> list[str]:
    """Join lines into texts of at most ``limit`` characters each (a longer line is cut,
    marked)."""
    chunks: list[str] = []
    current = ""
    for line in lines:
        line = clip(line, limit)
        if current and len(current) + 1 + len(line) > limit:
            chunks.append(current)
            current = line
        else:
            current = f"{current}\n{line}" if current else line
    if current:
        chunks.append(current)
    return chunks


def fit(blocks: list[dict[str, Any]], limit: int, more: Callable[[int], str]) -> list[dict]:
    """At most ``limit`` blocks; the last kept one says what was left out."""
    if len(blocks) <= limit:
        return blocks
    kept = blocks[: limit - 1]
    return [*kept, context(more(len(blocks) - len(kept)))]


# --- replies to commands ---------------------------------------------------------------


def reply_blocks(
    lines: Sequence[str], ok: bool = True, escaped: bool = False, table_at: int | None = None
) -> list[dict[str, Any]]:
    """A command's answer: lines of mrkdwn in as many sections as it takes (``escaped``:
    the lines are mrkdwn already, with their mentions; ``table_at``: the lines from there
    on are a table, put in code blocks so that its columns stay aligned)."""
    if table_at is not None:
        return _table_blocks(lines[:table_at], lines[table_at:])
    text = list(lines) if escaped else [escape_keep_code(line) for line in lines]
    if not ok and text:
        text[0] = f":warning: {text[0]}"
    blocks = [section(chunk) for chunk in chunk_lines(text)]
    return fit(blocks, MAX_BLOCKS, lambda n: f"… {n} more parts cut (Slack shows 50 blocks)")


def _table_blocks(title: Sequence[str], table: Sequence[str]) -> list[dict[str, Any]]:
    head = [section(chunk) for chunk in chunk_lines(map(escape, title))]
    rows = [escape(line.replace("```", "`\u200b``")) for line in table]
    body = [section(f"```{chunk}```") for chunk in chunk_lines(rows, MAX_SECTION - 6)]
    return fit(
        [*head, *body], MAX_BLOCKS, lambda n: f"… {n} more parts cut (Slack shows 50 blocks)"
    )


def escape_keep_code(line: str) -> str:
    """A reply line for mrkdwn: escaped, leading spaces kept (Slack trims them)."""
    stripped = line.lstrip(" ")
    pad = len(line) - len(stripped)
    return "\u2007" * pad + escape(stripped)


# --- run cards -------------------------------------------------------------------------


def _duration(started: str | None, finished: str | None, now: datetime) -> str:
    if not started:
        return ""
    end = datetime.fromisoformat(finished) if finished else now
    seconds = max(0.0, (end - datetime.fromisoformat(started)).total_seconds())
    return format_duration(seconds)


def _params_text(params: dict[str, Any]) -> str:
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
    params = _params_text(run.get("params") or {})
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


# --- the run form (a modal built from the playbook's params) -------------------------


def _option(value: Any) -> dict[str, Any]:
    text = str(value).lower() if isinstance(value, bool) else str(value)
    return {"text": {"type": "plain_text", "text": clip(text, MAX_BUTTON)}, "value": text[:150]}


def _initial_items(spec: paramlib.Param, initial: Any) -> list[Any]:
    try:
        return list(paramlib.coerce_value("value", spec, initial)) if initial is not None else []
    except ValueError:
        return []


def _element(spec: paramlib.Param, given: Any) -> dict[str, Any]:
    initial = given if given not in (None, "") else spec.default
    if spec.type is ParamType.LIST and spec.choices:
        options = [_option(c) for c in spec.choices][:MAX_OPTIONS]
        element: dict[str, Any] = {"type": "multi_static_select", "options": options}
        picked = {_option(c)["value"] for c in _initial_items(spec, initial)}
        chosen = [o for o in options if o["value"] in picked]
        if chosen:
            element["initial_options"] = chosen
        return element
    if spec.type is ParamType.CHOICE:
        options = [_option(c) for c in (spec.choices or [])][:MAX_OPTIONS]
        element = {"type": "static_select", "options": options}
        chosen = [o for o in options if initial is not None and o["value"] == str(initial)]
        if chosen:
            element["initial_option"] = chosen[0]
        return element
    if spec.type is ParamType.BOOL:
        yes = {"text": {"type": "plain_text", "text": "yes"}, "value": "true"}
        element = {"type": "checkboxes", "options": [yes]}
        if str(initial).lower() in ("true", "yes", "1", "on"):
            element["initial_options"] = [yes]
        return element
    if spec.type in (ParamType.INT, ParamType.FLOAT):
        element = {"type": "number_input", "is_decimal_allowed": spec.type is ParamType.FLOAT}
        if spec.min is not None:
            element["min_value"] = str(spec.min if spec.type is ParamType.FLOAT else int(spec.min))
        if spec.max is not None:
            element["max_value"] = str(spec.max if spec.type is ParamType.FLOAT else int(spec.max))
        if initial is not None:
            element["initial_value"] = str(initial)
        return element
    element = {"type": "plain_text_input"}
    if initial not in (None, []) and spec.type is not ParamType.SECRET:
        element["initial_value"] = paramlib.text(initial)[:3000]
    return element


def param_block_id(name: str) -> str:
    return f"param:{name}"


def run_form(playbook: Playbook, given: dict[str, str], metadata: dict[str, Any]) -> dict:
    """The modal that asks for a playbook's params: choices as selects, booleans as
    checkboxes, numbers as number inputs, secrets as text never shown back (Slack has no
    masked input; the value is stored encrypted and shown as ***), lists as text with
    commas between items (a list with choices as a multi-select)."""
    blocks: list[dict[str, Any]] = []
    if playbook.description:
        blocks.append(section(escape(playbook.description.strip())))
    for name, spec in playbook.params.items():
        block: dict[str, Any] = {
            "type": "input",
            "block_id": param_block_id(name),
            "label": {"type": "plain_text", "text": clip(name, 2000)},
            "optional": not spec.required or spec.type is ParamType.BOOL,
            "element": {**_element(spec, given.get(name)), "action_id": "value"},
        }
        hint = spec.help
        if spec.type is ParamType.SECRET:
            hint = (hint + " " if hint else "") + "(secret: stored encrypted, shown as ***)"
        if spec.type is ParamType.LIST and not spec.choices:
            hint = (hint + " " if hint else "") + "(separate items with commas: a,b,c)"
        if spec.pattern:
            hint = (hint + " " if hint else "") + f"(pattern {spec.pattern})"
        if hint:
            block["hint"] = {"type": "plain_text", "text": clip(hint, 2000)}
        blocks.append(block)
    blocks = fit(blocks, MAX_MODAL_BLOCKS, lambda n: f"… {n} more params: use `run` with k=v")
    raw = json.dumps(metadata, separators=(",", ":"))
    if len(raw) > MAX_METADATA:  # given values are a convenience; drop them before failing
        raw = json.dumps({**metadata, "given": {}}, separators=(",", ":"))
    return {
        "type": "modal",
        "callback_id": RUN_FORM,
        "title": {"type": "plain_text", "text": clip(f"Run {playbook.name}", 24)},
        "submit": {"type": "plain_text", "text": "Run"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "private_metadata": raw,
        "blocks": blocks,
    }


def form_values(playbook: Playbook, state: dict[str, Any]) -> dict[str, str]:
    """The submitted modal's values as ``key=value`` strings, as typed in chat."""
    out: dict[str, str] = {}
    for name, spec in playbook.params.items():
        field = (state.get(param_block_id(name)) or {}).get("value") or {}
        kind = field.get("type")
        if kind == "checkboxes":
            out[name] = "true" if field.get("selected_options") else "false"
        elif kind == "static_select":
            option = field.get("selected_option")
            if option:
                out[name] = str(option["value"])
        elif kind == "multi_static_select":
            picked = [str(o["value"]) for o in field.get("selected_options") or []]
            if picked:
                out[name] = paramlib.text(picked)
        else:
            value = field.get("value")
            if value not in (None, ""):
                out[name] = str(value)
        if spec.type is ParamType.BOOL and name not in out:
            out[name] = "false"
    return out


# --- approval prompts --------------------------------------------------------------------

APPROVE = "baton_approve"
REJECT = "baton_reject"
REJECT_FORM = "baton_reject_form"

GATE_EMOJI = {
    "approved": ":white_check_mark:",
    "rejected": ":x:",
    "timed_out": ":alarm_clock:",
    "cancelled": ":no_entry_sign:",
}


def when(iso: str | None) -> str:
    """A time as Slack shows it in each reader's own time zone."""
    if not iso:
        return ""
    moment = datetime.fromisoformat(iso)
    return f"<!date^{int(moment.timestamp())}^{{date_short_pretty}} {{time}}|{iso[:16]} UTC>"


def _shown_context(show: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for key, value in show.items():
        text = value if isinstance(value, str) else json.dumps(value, indent=2, default=str)
        body, cut = code(text, 1500)
        note = " (the end)" if cut else ""
        out.append(section(f"*{escape(str(key))}*{note}\n{body}"))
    return out


def approval_prompt(
    gate: dict[str, Any], approvers: str, now: datetime
) -> tuple[str, list[dict[str, Any]]]:
    """The prompt of an approval gate: who asked, for what, with which context, who may
    decide and until when; the decisions so far; Approve / Reject while it is open."""
    spec = gate["spec"]
    status = gate["status"]
    head = (
        f":raised_hand: *Approval needed* · `{escape(gate['playbook'])}` run `{gate['run_id']}`"
        f" · step `{escape(gate['step_id'])}` · approval `{gate['id']}`"
    )
    asked = spec.get("message") or "Approval needed to continue."
    body: list[dict[str, Any]] = [section(head), section(escape(asked))]
    facts = [f"asked by {who(gate['requested_by'], 'slack')}"]
    params = _params_text(gate.get("params") or {})
    if params:
        facts.append(f"params: {params}")
    quorum = int(spec.get("min_approvals") or 1)
    facts.append(f"needs {quorum} approval{'s' if quorum > 1 else ''}")
    if gate.get("deadline_at") and status == "pending":
        then = spec.get("on_timeout", "reject")
        facts.append(f"decide by {when(gate['deadline_at'])} (then: {then})")
    body.append(context(*facts))
    body.append(context(f"approvers: {approvers}"))
    if spec.get("stage"):
        body.append(context(":arrow_up: escalated: more approvers were asked"))
    body += _shown_context(spec.get("show") or {})[:10]
    for d in gate["decisions"]:
        mark = ":white_check_mark:" if d["decision"] == "approve" else ":x:"
        said = f": {escape(d['comment'])}" if d["comment"] else ""
        body.append(context(f"{mark} <@{d['user']}> {d['decision']}d {when(d['at'])}{said}"))
    if status == "pending":
        body.append(
            {
                "type": "actions",
                "block_id": f"gate:{gate['id']}",
                "elements": [
                    button("Approve", APPROVE, gate["id"], "primary"),
                    button("Reject", REJECT, gate["id"], "danger"),
                ],
            }
        )
    else:
        reason = gate.get("reason") or ""
        shown = status.replace("_", " ")
        closed = f"{GATE_EMOJI.get(status, '')} *{shown}*"
        if reason and reason != shown:
            closed += f" · {escape(reason)}"
        body.append(section(closed))
    body = fit(body, MAX_BLOCKS, lambda n: f"… {n} more parts: `status {gate['run_id']}`")
    text = f"approval {gate['id']} for {gate['playbook']} ({gate['step_id']}): {status}"
    return text, body


def reject_form(approval_id: str, metadata: dict[str, Any]) -> dict[str, Any]:
    """The modal that asks a rejecter for the reason (the run's failure says it)."""
    return {
        "type": "modal",
        "callback_id": REJECT_FORM,
        "title": {"type": "plain_text", "text": "Reject"},
        "submit": {"type": "plain_text", "text": "Reject"},
        "close": {"type": "plain_text", "text": "Back"},
        "private_metadata": json.dumps({**metadata, "approval_id": approval_id})[:MAX_METADATA],
        "blocks": [
            section(f"Reject approval `{approval_id}`: the step fails with your reason."),
            {
                "type": "input",
                "block_id": "reason",
                "label": {"type": "plain_text", "text": "Reason"},
                "element": {
                    "type": "plain_text_input",
                    "action_id": "value",
                    "multiline": True,
                    "max_length": 2000,
                },
            },
        ],
    }
