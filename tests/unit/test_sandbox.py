"""Templates that would work for a long time, or build huge text, fail with the template
budget's reason instead of stalling the event loop."""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from engine.errors import TemplateError
from engine.playbooks import sandbox, templating

NESTED = "{% for i in range(10000) %}{% for j in range(10000) %}.{% endfor %}{% endfor %}"


@pytest.fixture
def context() -> dict[str, Any]:
    return {"params": {"n": 100_000, "s": "ab"}, "steps": {}, "run": {}, "secrets": {}}


@pytest.fixture
def budget() -> Iterator[None]:
    yield
    sandbox.configure(sandbox.DEFAULT_BUDGET)


def failure(text: str, context: dict[str, Any]) -> str:
    with pytest.raises(TemplateError) as exc:
        templating.render({"a": [text]}, context)
    return str(exc.value)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        pytest.param(NESTED, "template budget exceeded: ", id="nested-loops"),
        pytest.param(
            "{% for i in range(10000) %}{{ range(10000)|map('string')|join|length }}{% endfor %}",
            "template budget exceeded: ",
            id="filter-chains-in-a-loop",
        ),
        pytest.param(
            "{{ range(params.n)|list|length }}",
            "range() of 100,000 items: a template may use at most 10,000",
            id="range",
        ),
        pytest.param(
            "{{ params.s * params.n * 100 }}",
            "the template makes text of 20,000,000 characters, more than the 1,000,000",
            id="repeat",
        ),
        pytest.param(
            "{% set ns = namespace(s='x') %}{% for i in range(60) %}"
            "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}",
            "the template makes text of 1,048,576 characters",
            id="doubling",
        ),
        pytest.param(
            "{% set a = 'x' * 1000 %}" + "{% set a = a ~ a %}" * 30 + "{{ a|length }}",
            "the template makes text of 1,024,000 characters",
            id="unrolled-doubling",
        ),
        pytest.param(
            "{% macro f(s, n) %}{{ f(s ~ s, n - 1) if n else s|length }}{% endmacro %}"
            "{{ f('x', 40) }}",
            "the template makes text of 1,048,576 characters",
            id="macro-doubling",
        ),
        pytest.param("{{ '%0999999999d' % 1 }}", "a format width or precision", id="percent"),
        pytest.param("{{ '{:0999999999}'.format(1) }}", "a format width", id="format"),
        pytest.param("{{ 'x'|center(999999999) }}", "text of 999,999,999 characters", id="center"),
        pytest.param(
            "{% set s = 'x' * 100000 %}{{ s.replace('', s)|length }}",
            "text of 10,000,200,000 characters",
            id="replace",
        ),
        pytest.param(
            "{% set s = 'x' * 100000 %}{{ ([s] * 1000)|join|length }}",
            "text of 100,000,000 characters",
            id="join",
        ),
        pytest.param(
            "{% set s = 'x' * 2000 %}{{ ([s] * 1000)|map('string')|join|length }}",
            "text of 2,000,000 characters",
            id="join-a-generator",
        ),
        pytest.param(
            "{% set s = 'x\n' * 100000 %}{{ s|indent(100)|length }}",
            "text of 10,200,100 characters",
            id="indent",
        ),
        pytest.param(
            "{% set s = 'x' * 100000 %}{{ s|wordwrap(1, wrapstring=s)|length }}",
            "text of 10,000,100,000 characters",
            id="wordwrap",
        ),
        pytest.param("{{ 2 ** 100000000 }}", "is too large a number", id="power"),
        pytest.param(
            "{% for i in range(2000) %}{{ 'x' * 1000 }}{% endfor %}",
            "the template makes text of 1,001,000 characters",
            id="output",
        ),
    ],
)
def test_heavy_templates_fail_with_the_budgets_reason(
    text: str, reason: str, context: dict[str, Any]
) -> None:
    message = failure(text, context)
    assert message.startswith("template "), message
    assert reason in message, message
    assert "template budget" in message


def test_the_budget_is_the_setting(context: dict[str, Any], budget: None) -> None:
    sandbox.configure(1_000)
    loop = "{{% for i in range({}) %}}{{{{ i }}}}{{% endfor %}}"
    assert len(templating.render(loop.format(300), context)) == 790
    message = failure(loop.format(600), context)
    assert message.endswith(
        "template budget exceeded: more than 1,000 units of work in one render (loop "
        "iterations, calls, lookups, filter items; BATON_TEMPLATE_BUDGET); move heavy work "
        "into a step of its own"
    ), message


def test_processor_time_is_a_backstop(
    context: dict[str, Any], budget: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox.configure(10**9)
    monkeypatch.setattr(sandbox, "MAX_SECONDS", 0.0)  # spent before the first look
    message = failure(NESTED, context)
    assert message.endswith(
        "template budget exceeded: still rendering after 0 s of processor time "
        "(BATON_TEMPLATE_BUDGET); move heavy work into a step of its own"
    ), message


@pytest.mark.parametrize("pause", ["collect", "burn"])
def test_a_garbage_collection_during_a_render_is_not_the_templates_time(
    pause: str, context: dict[str, Any], budget: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The collector walks the whole process's heap, whichever thread it runs in: in a
    process holding much, a collection inside a render would spend its processor time
    (a fan-out of 1,000 items failed an item so). The same time spent by the render
    itself still stops it."""
    sandbox.configure(10**9)
    heap = [[[]] for _ in range(100_000)]  # objects for the collector to walk
    for cell in heap:
        cell[0].append(cell)  # cycles: kept for the full collections
    spent = 0.0

    def collect() -> str:
        nonlocal spent
        began = time.thread_time()
        gc.collect()
        spent = time.thread_time() - began
        return ""

    def burn() -> str:
        until = time.thread_time() + spent
        while time.thread_time() < until:
            pass
        return ""

    collect()  # how long a full collection takes here: the budget is a quarter of it
    monkeypatch.setattr(sandbox, "MAX_SECONDS", spent / 4)
    text = "{% for i in range(400) %}{% if i == 1 %}{{ pause() }}{% endif %}{% endfor %}"
    pauses = {"collect": collect, "burn": burn}
    if pause == "collect":
        assert templating.render(text, {**context, "pause": pauses[pause]}) == ""
    else:
        assert "still rendering after" in failure(text, {**context, "pause": pauses[pause]})
    del heap


def test_a_step_timeout_stops_a_render(
    context: dict[str, Any], budget: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox.configure(10**9)  # only the step's timeout can stop it first
    monkeypatch.setattr(sandbox, "MAX_SECONDS", 3600.0)
    with pytest.raises(TemplateError) as exc:
        templating.render(NESTED, context, step_timeout=timedelta(milliseconds=20))
    assert str(exc.value).endswith(
        "template budget exceeded: still rendering at the step's timeout (20ms)"
    ), str(exc.value)


def test_a_condition_has_the_same_budget(context: dict[str, Any]) -> None:
    with pytest.raises(TemplateError, match="template budget exceeded"):
        templating.evaluate("range(10000)|map('string')|map('trim')|join|length > 0", context)
    with pytest.raises(TemplateError, match="template budget exceeded"):
        templating.evaluate(NESTED, context)


def test_real_templates_are_well_within_it(context: dict[str, Any]) -> None:
    text = "{% for h in range(100) %}{{ h }}{{ ',' if not loop.last }}{% endfor %}"
    assert templating.render(text, context) == ",".join(map(str, range(100)))
    assert templating.render("{{ range(3)|list }}", context) == [0, 1, 2]
    assert templating.render("{{ params.s ~ '-' ~ params.s * 2 }}", context) == "ab-abab"
    assert templating.render("{{ '%05d' % 42 }} {{ 'x'|center(5) }}", context) == "00042   x  "
    assert templating.evaluate("params.n > 10 and 'a' in params.s", context)
    joined = "{{ range(3)|map('string')|join('-') }} {{ '+'.join(range(3)|map('string')) }}"
    assert templating.render(joined, context) == "0-1-2 0+1+2"
    assert templating.render("{{ 'a\nb'|indent(2, first=true) }}", context) == "  a\n  b"


async def test_heavy_step_inputs_render_off_the_event_loop(context: dict[str, Any]) -> None:
    ticks = 0
    rendering = True

    async def tick() -> None:  # another coroutine: it runs only while the loop is free
        nonlocal ticks
        while rendering:
            ticks += 1
            await asyncio.sleep(0)

    ticker = asyncio.create_task(tick())
    assert await templating.render_step({"m": "{{ params.s }}"}, context) == {"m": "ab"}
    cheap = ticks
    with pytest.raises(TemplateError, match="template budget exceeded: more than 50,000 units"):
        await templating.render_step({"m": NESTED}, context)
    rendering = False
    await ticker
    assert cheap <= 1  # a cheap render is done on the loop, at once
    assert ticks > cheap + 1  # the loop went on while the heavy one rendered
