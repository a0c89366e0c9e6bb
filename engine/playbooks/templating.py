"""Templates and conditions: Jinja2 in its immutable sandbox, with undefined names as errors.

Every string in a step's ``with:`` block is a template rendered against the run context::

    {"params": {...},
     "steps": {step_id: {"output": {...}, "status": "succeeded", "error": str | None}},
     "run": {"id", "trigger", "requested_by", "playbook"},
     "secrets": {...}}

A string that is exactly one expression (``"{{ steps.check.output }}"``) renders to the
expression's native value (a dict, an int, ...), so structured data passes between steps
without a round trip through text. Any other template renders to a string, and a string
without template syntax is returned untouched without being compiled.

Step ids are read as written: ``steps.patch-web1`` is rewritten to ``steps['patch-web1']``
before parsing (``engine.playbooks.stepids``), and a mapping's key wins over a method of the same
name (``steps.get``, ``params.items``, ``output.json.items``).

Globals ``hosts('PATTERN')`` and ``hostvars[NAME]`` read the inventory
(``engine.fleet.inventory``). Extra filters: ``quote`` (``shlex.quote`` of the value as a
shell step's ``PARAM_*`` variable would hold it: booleans ``true``/``false``, None empty,
lists and dicts as JSON) and ``duration`` (seconds as ``3m05s``).

Shell code is not a place for values: ``engine.playbooks.splices`` finds the ``{{ }}`` outputs of a
template that would put a value into shell code as is.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import json
import re
import shlex
import time
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any

import jinja2
from jinja2 import meta, nodes

from engine.errors import BatonError, TemplateError
from engine.fleet import inventory
from engine.playbooks import durations, sandbox, stepids

ROOTS = frozenset({"params", "steps", "secrets", "run"})
"""Names the engine puts in every template context."""

_SINGLE_EXPRESSION = re.compile(r"\s*\{\{-?(.*?)-?\}\}\s*", re.DOTALL)
_SHOWN_CHARS = 80


def _has_syntax(text: str) -> bool:
    return "{{" in text or "{%" in text or "{#" in text


def shell_text(value: Any) -> str:
    """A value as shell text: what a ``PARAM_*`` variable holds and ``| quote`` quotes.

    Booleans are ``true``/``false``, None is empty, lists and dicts are JSON (ready for
    ``jq``), anything else ``str()``.
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    if isinstance(value, dict | list | tuple):
        return json.dumps(value, default=str)
    return str(value)


class _Method(jinja2.StrictUndefined):
    """A mapping's method read where its key is missing (``output.keys``): a missing
    field like any other when it is used as a value, the method when it is called
    (``output.keys()``, ``alert.labels.get('instance', 'localhost')``)."""

    __slots__ = ("_method",)
    unsafe_callable = False  # read by the sandbox's is_safe_callable
    alters_data = False
    jinja_pass_arg = None  # read by Jinja's Context.call

    def __init__(self, method: Any, obj: Any, name: str) -> None:
        super().__init__(obj=obj, name=name)
        self._method = method

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._method(*args, **kwargs)


class _Environment(sandbox.Sandbox):
    """The metered sandbox, where a mapping's key wins over a method of the same name:
    ``steps.get.status`` reads the step ``get``, ``output.json.items`` the key ``items``
    (Jinja's own order would give ``dict.get`` and ``dict.items``); a missing key is a
    missing field, never a method rendered as text (see ``_Method``)."""

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, Mapping) and isinstance(attribute, str):
            try:
                value = obj[attribute]
            except (KeyError, TypeError):
                pass
            else:
                sandbox.charge(1)
                return value
        return _not_a_method(obj, attribute, super().getattr(obj, attribute))

    def getitem(self, obj: Any, argument: Any) -> Any:
        return _not_a_method(obj, argument, super().getitem(obj, argument))


def _not_a_method(obj: Any, name: Any, value: Any) -> Any:
    """``value``, unless it is a method of the mapping ``obj`` (its key ``name`` missing)."""
    if isinstance(obj, Mapping) and callable(value) and not isinstance(value, jinja2.Undefined):
        return _Method(value, obj, str(name))
    return value


@functools.cache
def environment() -> _Environment:
    """The one sandboxed environment every template and condition is compiled in."""
    env = _Environment(
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
    )
    env.filters["quote"] = lambda value: shlex.quote(shell_text(value))
    env.filters["duration"] = lambda value: durations.format_duration(float(value))
    env.globals.update(inventory.template_globals())  # hosts('web'), hostvars['web1']
    env.meter_filters()
    return env


@functools.lru_cache(maxsize=2048)
def _template(source: str) -> jinja2.Template:
    return environment().from_string(stepids.rewrite_template(source))


@functools.lru_cache(maxsize=2048)
def _expression(source: str) -> Any:
    return environment().compile_expression(
        stepids.rewrite_expression(source), undefined_to_none=False
    )


def _shown(text: str) -> str:
    """The template text as quoted in error messages, shortened when long."""
    one_line = " ".join(text.split())
    if len(one_line) > _SHOWN_CHARS:
        one_line = one_line[: _SHOWN_CHARS - 3] + "..."
    return repr(one_line)


def _error(text: str, exc: BaseException) -> TemplateError:
    if isinstance(exc, jinja2.TemplateSyntaxError):
        where = f"line {exc.lineno}: " if "\n" in text.strip() and exc.lineno else ""
        reason = f"syntax error: {where}{exc.message}"
    elif isinstance(exc, jinja2.UndefinedError):
        reason = exc.message or "undefined value"
    elif isinstance(exc, jinja2.exceptions.SecurityError):
        reason = f"not allowed in the sandbox: {exc}"
    elif isinstance(exc, sandbox.Exhausted | BatonError):  # a spent budget, hosts('nosuch')
        reason = str(exc)
    elif isinstance(exc, RecursionError):
        reason = "macros call each other too deeply"
    else:
        reason = f"{type(exc).__name__}: {exc}"
    return TemplateError(f"template {_shown(text)}: {reason}")


def _single_expression(text: str) -> str | None:
    """The inner expression if ``text`` is exactly ``{{ expr }}``, else None."""
    m = _SINGLE_EXPRESSION.fullmatch(text)
    if m is None or "}}" in m.group(1) or "{{" in m.group(1):
        return None
    return m.group(1)


def _check_defined(value: Any) -> Any:
    """Raise the undefined error hidden in a native result (StrictUndefined raises on use)."""
    if isinstance(value, jinja2.Undefined):
        str(value)  # raises UndefinedError (or SecurityError) for StrictUndefined
    elif isinstance(value, dict):
        for item in value.values():
            _check_defined(item)
    elif isinstance(value, list | tuple):
        for item in value:
            _check_defined(item)
    return value


def _native(expr: str, text: str, context: Mapping[str, Any]) -> Any:
    try:
        value = _check_defined(_expression(expr)(**context))
    except sandbox.Moved:
        raise
    except Exception as exc:
        raise _error(text, exc) from exc
    return str(value) if isinstance(value, str) else value  # Markup (from tojson) -> str


def _render_string(text: str, context: Mapping[str, Any]) -> Any:
    if not _has_syntax(text):
        return text
    expr = _single_expression(text)
    if expr is not None:
        return _native(expr, text, context)
    try:
        return _template(text).render(context)
    except sandbox.Moved:
        raise
    except Exception as exc:
        raise _error(text, exc) from exc


def render(
    value: Any,
    context: Mapping[str, Any],
    *,
    step_timeout: timedelta | None = None,
    deadline: float | None = None,
    on_loop: bool = False,
) -> Any:
    """Render every string in ``value`` (recursing into dicts and lists; keys are left as is).

    All of it shares one template budget (``engine.playbooks.sandbox``); a step's ``timeout``, when
    it comes first, stops it too (it runs out at ``deadline``, a ``time.monotonic()``
    instant; by default ``step_timeout`` from now). ``on_loop``: raise ``sandbox.Moved``
    once the render spent its slice of the event loop. Raises TemplateError naming the
    template and the reason.
    """
    until = ""
    if step_timeout is not None:
        seconds = step_timeout.total_seconds()
        deadline = (time.monotonic() + seconds) if deadline is None else deadline
        shown = f"{seconds * 1000:g}ms" if seconds < 1 else durations.format_duration(seconds)
        until = f"at the step's timeout ({shown})"
    with sandbox.metered(deadline, until, on_loop=on_loop):
        return _render(value, context)


async def render_step(
    value: Any, context: Mapping[str, Any], step_timeout: timedelta | None = None
) -> Any:
    """A step's inputs, rendered: on the event loop while they are cheap (nearly always),
    then, past ``sandbox.ON_LOOP_UNITS``, again from the start in a worker thread with the
    whole budget, so that heavy renders never queue up on the loop. Rendering has no side
    effects, so starting over is safe; the step's timeout counts from the first try."""
    timeout = step_timeout.total_seconds() if step_timeout is not None else None
    deadline = time.monotonic() + timeout if timeout is not None else None
    try:
        return render(value, context, step_timeout=step_timeout, deadline=deadline, on_loop=True)
    except sandbox.Moved:
        pass
    work = functools.partial(render, value, context, step_timeout=step_timeout, deadline=deadline)
    return await asyncio.get_running_loop().run_in_executor(_heavy_renders(), work)


@functools.cache
def _heavy_renders() -> concurrent.futures.ThreadPoolExecutor:
    """The one thread heavy renders take turns in: one thread, so that the event loop
    shares the interpreter with at most one of them (each ends within its budget)."""
    return concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="baton-render")


def _render(value: Any, context: Mapping[str, Any]) -> Any:
    if isinstance(value, str):
        return _render_string(value, context)
    if isinstance(value, dict):
        return {k: _render(v, context) for k, v in value.items()}
    if isinstance(value, list):
        return [_render(v, context) for v in value]
    return value


def _condition_expression(condition: str) -> str:
    expr = _single_expression(condition)
    return condition.strip() if expr is None else expr


def evaluate(condition: str, context: Mapping[str, Any]) -> bool:
    """Truth of a step's ``when:``: a bare expression, or one wrapped in ``{{ }}``.

    ``"true"``/``"false"`` (what YAML booleans become) are expressions too. Text mixing
    several ``{{ }}`` blocks is rendered, and is false when it reads empty/false/0/no/none.
    """
    text = condition.strip()
    if not text:
        raise TemplateError("condition is empty: write an expression such as params.env == 'prod'")
    with sandbox.metered():
        if _has_syntax(text) and _single_expression(text) is None:
            rendered = str(_render_string(text, context)).strip().lower()
            return rendered not in {"", "false", "0", "no", "none", "off"}
        try:
            return bool(_native(_condition_expression(text), condition, context))
        except sandbox.Exhausted as exc:  # bool() of what the expression made
            raise _error(condition, exc) from exc


def check_syntax(text: str, *, expression: bool = False) -> str | None:
    """The syntax error in ``text`` as a message, or None when it compiles."""
    try:
        if expression:
            if not text.strip():
                return "condition is empty"
            if not _has_syntax(text) or _single_expression(text) is not None:
                _expression(_condition_expression(text))
                return None
        if _has_syntax(text):
            _template(text)
    except jinja2.TemplateSyntaxError as exc:
        return str(_error(text, exc))
    return None


def _parse(text: str, expression: bool) -> nodes.Template | None:
    source = text
    if expression and (not _has_syntax(text) or _single_expression(text) is not None):
        source = "{{ " + _condition_expression(text) + " }}"
    elif not _has_syntax(text):
        return None
    try:
        return environment().parse(stepids.rewrite_template(source))
    except jinja2.TemplateSyntaxError:
        return None


def references(text: str, *, expression: bool = False) -> set[tuple[str, str]]:
    """The ``(root, name)`` pairs ``text`` uses, for roots params, steps, secrets and run.

    ``{{ params.host }}`` gives ``("params", "host")``; ``steps.check.output.rc`` gives
    ``("steps", "check")``; ``params['x']`` gives ``("params", "x")``. Text that does not
    parse gives nothing (``check_syntax`` reports it).
    """
    ast = _parse(text, expression)
    if ast is None:
        return set()
    found: set[tuple[str, str]] = set()
    for node in ast.find_all((nodes.Getattr, nodes.Getitem)):
        assert isinstance(node, nodes.Getattr | nodes.Getitem)
        target, key = node.node, _key(node)
        if key is not None and isinstance(target, nodes.Name) and target.name in ROOTS:
            found.add((target.name, key))
    return found


def fields(text: str, root: str, *, expression: bool = False) -> set[tuple[str, str]]:
    """What ``text`` reads under ``root``, one and two levels down: for root ``steps``,
    ``steps.check.output.rc`` gives ``("check", "")`` and ``("check", "output")``, and
    ``steps['check'].status`` gives ``("check", "")`` and ``("check", "status")``."""
    ast = _parse(text, expression)
    if ast is None:
        return set()
    found: set[tuple[str, str]] = set()
    for node in ast.find_all((nodes.Getattr, nodes.Getitem)):
        assert isinstance(node, nodes.Getattr | nodes.Getitem)
        key, inner = _key(node), node.node
        if key is None:
            continue
        if isinstance(inner, nodes.Name) and inner.name == root:
            found.add((key, ""))
        elif isinstance(inner, nodes.Getattr | nodes.Getitem):
            name, base = _key(inner), inner.node
            if name is not None and isinstance(base, nodes.Name) and base.name == root:
                found.add((name, key))
    return found


def _key(node: nodes.Getattr | nodes.Getitem) -> str | None:
    if isinstance(node, nodes.Getattr):
        return node.attr
    if isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
        return node.arg.value
    return None


def unknown_names(text: str, known: Iterable[str] = ROOTS, *, expression: bool = False) -> set[str]:
    """Top-level names ``text`` reads that are neither in ``known`` nor Jinja globals.

    Loop variables, ``{% set %}`` names, filters and tests are not names in this sense.
    """
    ast = _parse(text, expression)
    if ast is None:
        return set()
    return meta.find_undeclared_variables(ast) - set(known) - set(environment().globals)
