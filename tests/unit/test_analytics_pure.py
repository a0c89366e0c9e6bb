"""The parts of the analytics that need no database: the critical path, percentiles,
the `stats` grammar and the SVG charts (parsed back as XML)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

import pytest

from bot.charts import stats_svgs
from bot.grammar import CommandError, Stats, parse
from engine.views import critical_path as cp
from engine.views.analytics import PlaybookStats, Spread, StepStats, percentile
from engine.views.analytics import Stats as Found

T0 = datetime(2026, 3, 1, tzinfo=UTC)
SVG = "{http://www.w3.org/2000/svg}"


def span(start: float, end: float) -> cp.Span:
    return (T0 + timedelta(seconds=start), T0 + timedelta(seconds=end))


DIAMOND = {"a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]}


def test_the_critical_path_walks_back_through_the_latest_need() -> None:
    steps = {"a": span(0, 10), "b": span(10, 30), "c": span(10, 70), "d": span(70, 80)}
    assert cp.chain(steps, DIAMOND) == ["a", "c", "d"]
    slow_b = {**steps, "b": span(10, 75), "d": span(75, 85)}
    assert cp.chain(slow_b, DIAMOND) == ["a", "b", "d"]
    assert cp.chain({"a": span(0, 10)}, DIAMOND) == ["a"]  # b, c, d never ran
    assert cp.chain({}, DIAMOND) == []
    tie = {"a": span(0, 1), "b": span(1, 5), "c": span(1, 5), "d": span(5, 6)}
    assert cp.chain(tie, DIAMOND) == ["a", "b", "d"]  # ties: the first name, every time


def test_the_most_common_chain_and_each_steps_share() -> None:
    fast_c = {"a": span(0, 10), "b": span(10, 30), "c": span(10, 70), "d": span(70, 80)}
    slow_b = {"a": span(0, 10), "b": span(10, 90), "c": span(10, 20), "d": span(90, 100)}
    runs = [
        cp.RunTimes(span(0, 80), fast_c, DIAMOND),
        cp.RunTimes(span(0, 80), fast_c, DIAMOND),
        cp.RunTimes(span(0, 100), slow_b, DIAMOND),
    ]
    found = cp.aggregate(runs)
    assert found is not None
    assert (found.chain, found.chain_runs, found.runs) == (["a", "c", "d"], 2, 3)
    assert found.share == pytest.approx(
        {"a": 30 / 260, "c": 120 / 260, "d": 30 / 260, "b": 80 / 260}
    )
    assert cp.aggregate([]) is None
    assert cp.needs_of({"steps": [{"id": "a"}, {"id": "b", "needs": "a"}]}) == {"a": [], "b": ["a"]}


def test_percentiles_are_values_that_occurred() -> None:
    values = [float(n) for n in range(1, 21)]
    assert (percentile(values, 50), percentile(values, 95)) == (10.0, 19.0)
    assert percentile([], 50) is None and percentile([3.0], 95) == 3.0


def test_the_stats_grammar() -> None:
    assert parse("stats") == Stats()
    assert parse("stats deploy") == Stats("deploy")
    assert parse("stats deploy days=7") == Stats("deploy", 7)
    assert parse("stats days=90") == Stats(None, 90)
    bad_ones = ("stats a b", "stats days=0", "stats days=x", "stats days=1 days=2", "stats a b c")
    for bad in (*bad_ones, "stats days=\u00b2"):  # a digit to isdigit, not to int
        with pytest.raises(CommandError, match="stats"):
            parse(bad)


def found(steps: list[StepStats], path: cp.CriticalPath | None) -> Found:
    per_day = {f"2026-03-0{d}": n for d, n in ((1, 0), (2, 4), (3, 2))}
    pb = PlaybookStats(
        playbook="<deploy & co>",
        runs=6,
        finished=6,
        succeeded=5,
        success_rate=5 / 6,
        duration=Spread(6, 10.0, 20.0),
        per_day=per_day,
        mttr=Spread(0, None, None),
        steps=steps,
        critical_path=path,
    )
    return Found(T0, T0 + timedelta(days=2), 2, [pb], Spread(0, None, None))


def test_the_charts_are_well_formed_svg_drawn_from_the_numbers() -> None:
    steps = [
        StepStats("build", 6, Spread(6, 5.0, 30.0), 0.0, 0.0, 0),
        StepStats("<ship>", 6, Spread(6, 5.0, 60.0), 0.5, 0.5, 1),
    ]
    path = cp.CriticalPath(
        runs=6, chain=["build", "<ship>"], chain_runs=6, share={"build": 0.25, "<ship>": 0.75}
    )
    svgs = stats_svgs(found(steps, path))
    assert set(svgs) == {"runs_per_day", "step_p95", "critical_path"}
    trees = {name: ET.fromstring(text) for name, text in svgs.items()}  # escaped: it parses
    assert all(tree.tag == f"{SVG}svg" for tree in trees.values())
    heights = [float(r.get("height", "")) for r in trees["runs_per_day"].iter(f"{SVG}rect")]
    assert heights == [0.0, 180.0, 90.0]  # one bar a day, to scale
    widths = [float(r.get("width", "")) for r in trees["step_p95"].iter(f"{SVG}rect")]
    assert len(widths) == 2 and widths[1] == pytest.approx(2 * widths[0])
    texts = [t.text for t in trees["critical_path"].iter(f"{SVG}text")]
    assert "<ship>" in texts and "75%" in texts and "25%" in texts


def test_charts_without_details_say_what_shows_them() -> None:
    svgs = stats_svgs(found([], None))
    for name in ("step_p95", "critical_path"):
        texts = [t.text or "" for t in ET.fromstring(svgs[name]).iter(f"{SVG}text")]
        assert any("one playbook" in t for t in texts)


def test_chart_labels_keep_clear_of_the_bars_and_of_each_other() -> None:
    long = "provision-the-database-replica-in-the-second-region"
    steps = [
        StepStats(long, 6, Spread(6, 0.1, 0.25), 0.0, 0.0, 0),
        StepStats("b", 6, Spread(6, 0.1, 0.04), 0.0, 0.0, 0),
    ]
    path = cp.CriticalPath(runs=6, chain=[long, "b"], chain_runs=6, share={long: 0.9, "b": 0.1})
    svgs = stats_svgs(found(steps, path))
    for name in ("step_p95", "critical_path"):
        tree = ET.fromstring(svgs[name])
        bars_start = min(float(r.get("x", "")) for r in tree.iter(f"{SVG}rect"))
        names = [t for t in tree.iter(f"{SVG}text") if t.get("x") == "4" and t.get("y") != "18"]
        for text in names:  # a name's right edge, at 7 px a character, is left of the bars
            assert float(text.get("x", "")) + len(text.text or "") * 7 < bars_start, text.text
        assert names[0].text is not None and names[0].text.endswith("\u2026")
        tooltips = [t.text or "" for t in tree.iter(f"{SVG}title")]
        assert any(t.startswith(long + ": ") for t in tooltips)  # the whole name on hover
    texts = [t.text for t in ET.fromstring(svgs["step_p95"]).iter(f"{SVG}text")]
    assert "250ms" in texts and "40ms" in texts  # not two "0.0s" beside unequal bars
    title = ET.fromstring(svgs["critical_path"]).find(f"{SVG}title")
    assert title is not None and (title.text or "").endswith(f"{long} \u2192 b")
    per_day = ET.fromstring(svgs["runs_per_day"])
    top = [t for t in per_day.iter(f"{SVG}text") if (t.text or "").startswith("max ")]
    assert len(top) == 1 and float(top[0].get("y", "")) <= 18  # on the title's line
    assert float(top[0].get("y", "")) < min(
        float(r.get("y", "")) for r in per_day.iter(f"{SVG}rect")
    )
