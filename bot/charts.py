"""SVG charts of ``engine.views.analytics.Stats``, drawn on the server as plain strings (no
JavaScript, no library): a page embeds them as they are (``<img src="data:...">`` or
inline ``<svg>``).

``stats_svgs(stats)`` is the entry point: ``{"runs_per_day": ..., "step_p95": ...,
"critical_path": ...}``, each a complete ``<svg>`` document. The step charts need the
details of one playbook (``analytics.of_engine(..., playbook=P)``); without them they say
so in the picture. Every text is escaped; sizes follow the data (one row per step).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from html import escape

from engine.playbooks.durations import format_measure
from engine.views.analytics import PlaybookStats, Stats

WIDTH = 640
BAR_AREA = 180  # height of the vertical bars' area
ROW = 22  # height of one horizontal bar's row
LABEL = (60, 240)  # least and most room for the names left of horizontal bars
CHAR = 7  # width of a character at 12 px, rounded up (sans-serif: 6-7 px)
TITLE = 28  # room for the title above a chart
COLOR = "#3b6fb6"
FONT = "font-family='sans-serif' font-size='12'"


def stats_svgs(stats: Stats) -> dict[str, str]:
    """The three charts of ``stats``: runs per day (every playbook in it, summed), the
    p95 duration of each step and the share of each step on the critical path (both of
    the one playbook asked for)."""
    one = stats.playbooks[0] if len(stats.playbooks) == 1 else None
    return {
        "runs_per_day": runs_per_day(stats),
        "step_p95": step_p95(one),
        "critical_path": critical_path(one),
    }


def runs_per_day(stats: Stats) -> str:
    days: dict[str, int] = {}
    for pb in stats.playbooks:
        for day, n in pb.per_day.items():
            days[day] = days.get(day, 0) + n
    title = f"Runs per day, the last {stats.days} days"
    return columns(title, sorted(days.items()))


def step_p95(playbook: PlaybookStats | None) -> str:
    title = "Step duration, p95"
    if playbook is None or not playbook.steps:
        return empty(title, "one playbook's stats show its steps")
    rows = [(s.step, s.duration.p95 or 0.0) for s in playbook.steps]
    return bars(f"{title}: {playbook.playbook}", rows, format_measure)


def critical_path(playbook: PlaybookStats | None) -> str:
    title = "Share of the time on the critical path"
    path = playbook.critical_path if playbook is not None else None
    if playbook is None or path is None:
        return empty(title, "one playbook's finished runs show it")
    rows = sorted(path.share.items(), key=lambda kv: (-kv[1], kv[0]))
    chain = " \u2192 ".join(path.chain)
    return bars(f"{title}: {chain}", rows, lambda v: f"{v:.0%}", top=1.0)


def _fit(text: str, room: float) -> str:
    """``text`` cut to what ``room`` pixels hold, with an ellipsis when cut (the whole
    of it is in the bar's tooltip)."""
    most = max(int(room // CHAR), 2)
    return text if len(text) <= most else text[: most - 1] + "\u2026"


def _svg(height: int, body: str) -> str:
    return (
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{WIDTH}' height='{height}' "
        f"viewBox='0 0 {WIDTH} {height}' role='img' {FONT}>{body}</svg>"
    )


def _title(text: str) -> str:
    return f"<title>{escape(text)}</title><text x='4' y='18' font-size='14'>{escape(text)}</text>"


def empty(title: str, why: str) -> str:
    body = _title(title) + f"<text x='4' y='{TITLE + 20}' fill='#777'>{escape(why)}</text>"
    return _svg(TITLE + 32, body)


def columns(title: str, values: Sequence[tuple[str, float]]) -> str:
    """Vertical bars, one per value, the first and last labels under the axis."""
    height = TITLE + BAR_AREA + 24
    if not values:
        return empty(title, "no runs")
    top = max(v for _, v in values) or 1.0
    step = (WIDTH - 8) / len(values)
    base = TITLE + BAR_AREA
    parts = [_title(title)]
    for i, (label, value) in enumerate(values):
        h = BAR_AREA * value / top
        x = 4 + i * step
        parts.append(
            f"<rect x='{x:.1f}' y='{base - h:.1f}' width='{max(step - 2, 1):.1f}' "
            f"height='{h:.1f}' fill='{COLOR}'><title>{escape(label)}: {value:g}</title></rect>"
        )
    parts.append(f"<line x1='4' y1='{base}' x2='{WIDTH - 4}' y2='{base}' stroke='#999'/>")
    parts.append(f"<text x='4' y='{base + 16}'>{escape(values[0][0])}</text>")
    parts.append(
        f"<text x='{WIDTH - 4}' y='{base + 16}' text-anchor='end'>{escape(values[-1][0])}</text>"
    )
    parts.append(f"<text x='{WIDTH - 4}' y='18' text-anchor='end'>max {top:g}</text>")
    return _svg(height, "".join(parts))


def bars(
    title: str,
    values: Sequence[tuple[str, float]],
    shown: Callable[[float], str],
    top: float | None = None,
) -> str:
    """Horizontal bars, one row per value: its name, its bar, its value as ``shown``."""
    top = top or max((v for _, v in values), default=0.0) or 1.0
    least, most = LABEL
    label_room = min(max(max((len(k) for k, _ in values), default=0) * CHAR + 12, least), most)
    room = WIDTH - label_room - 70
    parts = [_title(title)]
    for i, (label, value) in enumerate(values):
        y = TITLE + i * ROW
        w = room * min(value / top, 1.0)
        name = escape(_fit(label, label_room - 12))
        parts.append(f"<text x='4' y='{y + 15}'>{name}</text>")
        parts.append(
            f"<rect x='{label_room}' y='{y + 3}' width='{w:.1f}' height='{ROW - 6}' "
            f"fill='{COLOR}'><title>{escape(label)}: {escape(shown(value))}</title></rect>"
        )
        parts.append(
            f"<text x='{label_room + w + 6:.1f}' y='{y + 15}'>{escape(shown(value))}</text>"
        )
    return _svg(TITLE + len(values) * ROW + 8, "".join(parts))
