"""The kit every Baton message is built with: Slack's limits, escaping, sections,
buttons, code, cutting what does not fit (every cut is marked), and the blocks of a
command's reply."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from engine.access import rules as access

MAX_BLOCKS = 50
MAX_MODAL_BLOCKS = 100
MAX_SECTION = 3000
MAX_TEXT = 40_000
MAX_BUTTON = 75
MAX_OPTIONS = 100
MAX_METADATA = 3000
CODE_ROOM = MAX_SECTION - 200  # a code block's share of a section, with room for its title

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
