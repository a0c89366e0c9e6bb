"""Block Kit: what Baton's Slack messages and modals look like.

Pure functions from plain data (the run JSON of ``engine.views.queries``, a ``Reply``, a
playbook) to Slack's JSON. Slack's limits are respected in one place (``kit``), and every
cut is marked: at most 50 blocks a message and 100 a modal, 3,000 characters a section,
150 a header, 75 a button or option, 24 a modal title, 100 options a select.

- ``kit``: the limits, escaping, sections, buttons, code, cutting; a command's reply;
- ``runs``: a run's card and its thread's messages;
- ``forms``: the run form, a modal built from a playbook's params;
- ``approvals``: approval prompts and the reject form.

The names below are the surface the front end uses (``blocks.run_card``, ...).
"""

from __future__ import annotations

from bot.slack.blocks.approvals import (
    APPROVE,
    GATE_EMOJI,
    REJECT,
    REJECT_FORM,
    approval_prompt,
    reject_form,
    when,
)
from bot.slack.blocks.forms import (
    form_values,
    param_block_id,
    run_form,
)
from bot.slack.blocks.kit import (
    CANCEL,
    CODE_ROOM,
    MAX_BLOCKS,
    MAX_BUTTON,
    MAX_METADATA,
    MAX_MODAL_BLOCKS,
    MAX_OPTIONS,
    MAX_SECTION,
    MAX_TEXT,
    OPEN_FORM,
    RETRY,
    RUN_FORM,
    Mention,
    button,
    chunk_lines,
    clip,
    clip_tail,
    code,
    context,
    escape,
    escape_keep_code,
    fit,
    markup,
    refusal,
    reply_blocks,
    section,
)
from bot.slack.blocks.runs import (
    ACTIVE,
    RETRYABLE,
    RUN_EMOJI,
    STEP_EMOJI,
    has_text,
    log_lines,
    output_text,
    params_text,
    run_card,
    run_failure,
    step_failure,
    step_line,
    step_outputs,
    who,
)

__all__ = [
    "ACTIVE",
    "APPROVE",
    "CANCEL",
    "CODE_ROOM",
    "GATE_EMOJI",
    "MAX_BLOCKS",
    "MAX_BUTTON",
    "MAX_METADATA",
    "MAX_MODAL_BLOCKS",
    "MAX_OPTIONS",
    "MAX_SECTION",
    "MAX_TEXT",
    "OPEN_FORM",
    "REJECT",
    "REJECT_FORM",
    "RETRY",
    "RETRYABLE",
    "RUN_EMOJI",
    "RUN_FORM",
    "STEP_EMOJI",
    "Mention",
    "approval_prompt",
    "button",
    "chunk_lines",
    "clip",
    "clip_tail",
    "code",
    "context",
    "escape",
    "escape_keep_code",
    "fit",
    "form_values",
    "has_text",
    "log_lines",
    "markup",
    "output_text",
    "param_block_id",
    "params_text",
    "refusal",
    "reject_form",
    "reply_blocks",
    "run_card",
    "run_failure",
    "run_form",
    "section",
    "step_failure",
    "step_line",
    "step_outputs",
    "when",
    "who",
]
