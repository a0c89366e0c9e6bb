"""The chat answer of ``stats [PLAYBOOK] [days=N]``: ``engine.views.analytics`` as lines, the
last of them an aligned table (``bot.tables``), as the other listings."""

from __future__ import annotations

from bot.tables import table
from engine.playbooks.durations import format_measure
from engine.views.analytics import PlaybookStats, Spread, Stats

PLAYBOOKS_HEADER = ("playbook", "runs", "succeeded", "p50", "p95", "alert->end p95")
STEPS_HEADER = ("step", "runs", "p50", "p95", "failed", "retried", "flaky")


def seconds(value: float | None) -> str:
    return "-" if value is None else format_measure(value)


def percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def window(stats: Stats) -> str:
    return f"the last {stats.days} days" if stats.days != 1 else "the last day"


def overview(stats: Stats) -> tuple[list[str], int | None]:
    """Every playbook with runs in the window, one row each; (lines, table's first line)."""
    if not stats.playbooks:
        return [f"no runs in {window(stats)}"], None
    rows = [
        (
            pb.playbook,
            str(pb.runs),
            percent(pb.success_rate),
            seconds(pb.duration.p50),
            seconds(pb.duration.p95),
            seconds(pb.mttr.p95),
        )
        for pb in stats.playbooks
    ]
    head = [f"runs of {window(stats)} (`stats PLAYBOOK` for its steps):"]
    return [*head, *table(PLAYBOOKS_HEADER, rows)], len(head)


def detail(stats: Stats) -> tuple[list[str], int | None]:
    """One playbook: its numbers, its flaky steps and critical path, then its steps."""
    (pb,) = stats.playbooks
    if not pb.runs:
        return [f"no runs of {pb.playbook} in {window(stats)}"], None
    lines = [_headline(pb, stats)]
    if pb.mttr.count:
        lines.append(f"from alert to the run's end ({_spread(pb.mttr)})")
    if pb.flaky:
        lines.append("flaky (succeeded only after retries): " + ", ".join(pb.flaky))
    path = pb.critical_path
    if path is not None:
        shares = sorted(path.share.items(), key=lambda kv: (-kv[1], kv[0]))
        lines.append(
            f"critical path ({path.chain_runs} of {path.runs} recent runs): "
            + " -> ".join(path.chain)
        )
        lines.append("share of the time: " + ", ".join(f"{s} {v:.0%}" for s, v in shares))
    if not pb.steps:
        return lines, None
    rows = [
        (
            s.step,
            str(s.started),
            seconds(s.duration.p50),
            seconds(s.duration.p95),
            percent(s.failure_rate),
            percent(s.retry_rate),
            str(s.flaky),
        )
        for s in pb.steps
    ]
    return [*lines, *table(STEPS_HEADER, rows)], len(lines)


def _headline(pb: PlaybookStats, stats: Stats) -> str:
    return (
        f"{pb.playbook}, {window(stats)}: {pb.runs} runs, {percent(pb.success_rate)} of "
        f"{pb.finished} finished succeeded, {_spread(pb.duration)}"
    )


def _spread(spread: Spread) -> str:
    return f"p50 {seconds(spread.p50)}, p95 {seconds(spread.p95)} over {spread.count}"
