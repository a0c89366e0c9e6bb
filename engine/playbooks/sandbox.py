"""The template sandbox: Jinja2's immutable sandbox, with a budget for every render.

Templates render on the event loop (a step's ``with:``, ``when:``, concurrency keys,
alert trigger params), so a template that works for a long time would stall everything
else: ``/healthz``, Slack acks, every other run. Each render therefore gets a budget of
work, counted as it goes, and fails with a message naming it once it is spent:

- one unit per loop iteration, call, attribute or item lookup, operator and output;
  filters cost one unit per item they go through (and a hundredth of a unit per character
  of text), and the items a ``map``/``select`` chain yields are counted as they come.
  The budget is ``BATON_TEMPLATE_BUDGET`` units (default 50,000: some tens of
  milliseconds; a real template uses tens to hundreds). Units are counted, not timed, so
  a template that renders today renders tomorrow on a busier machine; as a backstop for
  work a unit does not capture, a render also stops after ``MAX_SECONDS`` of processor
  time (its own thread's: time spent waiting for a busy processor does not count, nor
  does a garbage collection that happened to run during the render: its cost is the
  whole process's heap, not the template's);
- ``range()`` gives at most ``MAX_RANGE`` items;
- no string a template makes, nor the text a render outputs, may pass ``MAX_TEXT``
  characters, no list ``MAX_ITEMS`` items: ``'x' * n``, ``~`` and ``+`` concatenation,
  ``replace``, ``join``, widths in ``format``/``center``/``indent``... are checked
  before the text is built, so a few doublings cannot eat the memory;
- a render may also have a deadline (a step's ``timeout``): it stops there;
- a step's inputs start on the event loop with ``ON_LOOP_UNITS`` and, past them, are
  rendered again in a worker thread (``engine.playbooks.templating.render_step``).

``Exhausted`` is what a spent budget raises; ``engine.playbooks.templating`` turns it into the
template's error, so the step (or the alert, or the run request) fails with it.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import gc
import re
import threading
import time
import types
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from jinja2 import Undefined, nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.runtime import markup_join, str_join
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import Namespace

DEFAULT_BUDGET = 50_000
"""Units of work one render may spend (``BATON_TEMPLATE_BUDGET``)."""
MAX_SECONDS = 0.5
"""Processor seconds one render may take, whatever its units cost on this machine."""
ON_LOOP_UNITS = 1_000
"""Units a step's inputs may spend on the event loop (about a millisecond) before their
render moves to a worker thread."""
MAX_RANGE = 10_000
"""Items one ``range()`` may give."""
MAX_TEXT = 1_000_000
"""Characters of a string a template makes, and of what one render outputs."""
MAX_ITEMS = 100_000
"""Items of a list a template makes."""

_SETTING = "BATON_TEMPLATE_BUDGET"
_WIDE_NUMBER = re.compile(r"\d{7,}")  # a width or precision of a million or more
_WIDTH_FILTERS = frozenset({"center", "indent", "wordwrap", "truncate", "batch", "slice"})
_WIDTH_METHODS = frozenset({"center", "ljust", "rjust", "zfill", "expandtabs"})


class _Collections(threading.local):
    """Processor time this thread spent in the garbage collector (``gc.callbacks``)."""

    spent = 0.0
    began = 0.0


_collections = _Collections()


def _collecting(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _collections.began = time.thread_time()
    else:
        _collections.spent += time.thread_time() - _collections.began


gc.callbacks.append(_collecting)


def work_time() -> float:
    """This thread's processor time, less what its garbage collections took (the
    collector walks the whole heap, whichever thread it happens to run in)."""
    return time.thread_time() - _collections.spent


class Moved(Exception):
    """A render spent its slice on the event loop (``ON_LOOP_UNITS``): render it again in a
    worker thread, with the whole budget."""


class Exhausted(Exception):
    """A render went past its budget, its deadline or a size cap; ``str()`` says which."""


@dataclass
class _Meter:
    left: int
    budget: int
    cpu_deadline: float  # work_time(): waiting for the processor does not count
    deadline: float | None  # time.monotonic(): a step's timeout is wall-clock time
    until: str
    output: int = 0
    clock_at: int = 0  # look at the clocks again once ``left`` is down to this
    on_loop: bool = False  # a slice of ON_LOOP_UNITS: spent, the render moves

    def charge(self, units: int) -> None:
        self.left -= units
        if self.left < 0:
            if self.on_loop:
                raise Moved()
            raise Exhausted(
                f"template budget exceeded: more than {self.budget:,} units of work in one "
                "render (loop iterations, calls, lookups, filter items; "
                f"{_SETTING}); move heavy work into a step of its own"
            )
        if self.left > self.clock_at:
            return
        self.clock_at = self.left - 128  # clocks cost a system call: every 128 units
        if work_time() > self.cpu_deadline:
            raise Exhausted(
                f"template budget exceeded: still rendering after {MAX_SECONDS:g} s of "
                f"processor time ({_SETTING}); move heavy work into a step of its own"
            )
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise Exhausted(f"template budget exceeded: still rendering {self.until}")


_meter: contextvars.ContextVar[_Meter | None] = contextvars.ContextVar("meter", default=None)
_budget = DEFAULT_BUDGET


def configure(budget: int) -> None:
    """Set the units of work one render may spend (``BATON_TEMPLATE_BUDGET``)."""
    global _budget
    _budget = budget


def budget() -> int:
    return _budget


@contextlib.contextmanager
def metered(
    deadline: float | None = None, until: str = "", *, on_loop: bool = False
) -> Iterator[None]:
    """Count the work of the renders inside against one budget: ``BATON_TEMPLATE_BUDGET``
    units and ``MAX_SECONDS`` of processor time; ``deadline`` (a ``time.monotonic()``
    instant, described by ``until``: "at the step's timeout (5s)") stops them too.
    ``on_loop``: only ``ON_LOOP_UNITS`` of them, then ``Moved`` is raised. Nested uses
    share the outer budget."""
    if _meter.get() is not None:
        yield
        return
    cpu = work_time() + MAX_SECONDS
    units = min(_budget, ON_LOOP_UNITS) if on_loop else _budget
    meter = _Meter(units, _budget, cpu, deadline, until, clock_at=units, on_loop=on_loop)
    meter.on_loop = on_loop and units < _budget
    token = _meter.set(meter)
    try:
        yield
    finally:
        _meter.reset(token)


def charge(units: int = 1) -> None:
    meter = _meter.get()
    if meter is not None:
        meter.charge(units)


def _weight(value: Any) -> int:
    """Units a filter or method going through ``value`` costs."""
    if isinstance(value, str | bytes):
        return len(value) // 100
    if isinstance(value, list | tuple | dict | set | frozenset | range):
        return len(value)
    return 0


def _too_long(chars: int) -> Exhausted:
    return Exhausted(
        f"the template makes text of {chars:,} characters, more than the {MAX_TEXT:,} a "
        "template may (the template budget)"
    )


def _too_many(items: int) -> Exhausted:
    return Exhausted(
        f"the template makes a list of {items:,} items, more than the {MAX_ITEMS:,} a "
        "template may (the template budget)"
    )


def _checked(value: Any) -> Any:
    """``value`` if it is within the size caps; generators are counted as they yield."""
    if isinstance(value, str | bytes):
        if len(value) > MAX_TEXT:
            raise _too_long(len(value))
    elif isinstance(value, list | tuple | dict | set | frozenset):
        if len(value) > MAX_ITEMS:
            raise _too_many(len(value))
    elif isinstance(value, types.GeneratorType):
        return _counted(value)
    return value


def _counted(items: Iterable[Any]) -> Iterator[Any]:
    for item in items:
        charge(1)
        yield item


def _check_format(fmt: Any) -> None:
    if isinstance(fmt, str) and _WIDE_NUMBER.search(fmt):
        raise Exhausted(
            f"a format width or precision of a million or more characters in {fmt[:40]!r} "
            "(the template budget)"
        )


def _check_widths(args: Iterable[Any], kwargs: Mapping[str, Any]) -> None:
    for arg in (*args, *kwargs.values()):
        if isinstance(arg, int) and not isinstance(arg, bool) and arg > MAX_TEXT:
            raise _too_long(arg)


def _check_replace(text: str, new: Any, count: Any = -1) -> None:
    times = len(text) + 1 if not isinstance(count, int) or count < 0 else count
    if isinstance(new, str) and len(text) + times * len(new) > MAX_TEXT:
        raise _too_long(len(text) + times * len(new))


def _check_join(sep: Any, items: Any) -> list[Any]:
    """``items`` as a list (a generator is read, each item counted), if joining them with
    ``sep`` stays within the cap."""
    items = list(_counted(items)) if not isinstance(items, list | tuple) else list(items)
    total = sum(len(x) for x in items if isinstance(x, str))
    total += len(sep if isinstance(sep, str) else "") * max(len(items) - 1, 0)
    if total > MAX_TEXT:
        raise _too_long(total)
    return items


def _check_indent(text: Any, width: Any = 4) -> None:
    pad = len(width) if isinstance(width, str) else width if isinstance(width, int) else 0
    if isinstance(text, str) and len(text) + (text.count("\n") + 1) * pad > MAX_TEXT:
        raise _too_long(len(text) + (text.count("\n") + 1) * pad)


def _check_wordwrap(text: Any, width: Any = 79, *rest: Any, **kwargs: Any) -> None:
    wrap = kwargs.get("wrapstring", rest[1] if len(rest) > 1 else None)
    if isinstance(text, str) and isinstance(wrap, str) and isinstance(width, int):
        size = len(text) + len(text) // max(width, 1) * len(wrap)
        if size > MAX_TEXT:
            raise _too_long(size)


def _check_binop(operator: str, left: Any, right: Any) -> None:
    sized = (str, bytes, list, tuple)
    if operator == "*":
        for seq, n in ((left, right), (right, left)):
            if isinstance(seq, sized) and isinstance(n, int) and n > 0:
                size = len(seq) * n
                if isinstance(seq, str | bytes) and size > MAX_TEXT:
                    raise _too_long(size)
                if isinstance(seq, list | tuple) and size > MAX_ITEMS:
                    raise _too_many(size)
    elif operator == "+" and isinstance(left, sized) and isinstance(right, sized):
        size = len(left) + len(right)
        if isinstance(left, str | bytes) and size > MAX_TEXT:
            raise _too_long(size)
        if isinstance(left, list | tuple) and size > MAX_ITEMS:
            raise _too_many(size)
    elif operator == "**" and isinstance(left, int) and isinstance(right, int):
        if abs(left) > 1 and right * abs(left).bit_length() > 4096:
            raise Exhausted(f"{left} ** {right} is too large a number (the template budget)")
    elif operator == "%":
        _check_format(left)


def _metered_range(*args: int) -> range:
    items = range(*args)
    if len(items) > MAX_RANGE:
        raise Exhausted(
            f"range() of {len(items):,} items: a template may use at most {MAX_RANGE:,} "
            "(the template budget)"
        )
    return items


def _str_method(text: str, name: str, method: Callable[..., Any]) -> Callable[..., Any]:
    def checked(*args: Any, **kwargs: Any) -> Any:
        charge(1 + _weight(text))
        if name in _WIDTH_METHODS:
            _check_widths(args, kwargs)
        elif name == "replace" and len(args) >= 2:
            _check_replace(text, *args[1:3])
        elif name == "join" and args:
            args = (_check_join(text, args[0]), *args[1:])
        elif name in ("format", "format_map"):
            _check_format(text)
        return _checked(method(*args, **kwargs))

    return checked


def _metered_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """``func`` charging for what it goes through and checking what it makes."""
    skip = 1 if getattr(func, "jinja_pass_arg", None) is not None else 0

    @functools.wraps(func)
    def filtered(*args: Any, **kwargs: Any) -> Any:
        value = args[skip] if len(args) > skip else None
        charge(1 + _weight(value))
        if name in _WIDTH_FILTERS:
            _check_widths(args[skip + 1 :], kwargs)
        if name == "replace" and isinstance(value, str) and len(args) > skip + 2:
            _check_replace(value, args[skip + 2], *args[skip + 3 : skip + 4])
        elif name == "join" and len(args) > skip:
            sep = args[skip + 1] if len(args) > skip + 1 else kwargs.get("d", "")
            args = (*args[:skip], _check_join(sep, value), *args[skip + 1 :])
        elif name == "indent":
            _check_indent(
                value,
                *args[skip + 1 : skip + 2],
                **{k: v for k, v in kwargs.items() if k == "width"},
            )
        elif name == "wordwrap":
            _check_wordwrap(value, *args[skip + 1 :], **kwargs)
        elif name == "format":
            _check_format(value)
        return _checked(func(*args, **kwargs))

    return filtered


class _CodeGenerator(CodeGenerator):
    """Jinja's code generator with two hooks: every loop's items are counted, and ``~``
    concatenation checks the length of what it makes."""

    def visit_For(self, node: nodes.For, frame: Frame) -> None:
        original = node.iter
        counter = nodes.EnvironmentAttribute("counted_items")
        counted = nodes.Call(counter, [original], [], None, None)
        node.iter = counted.set_lineno(original.lineno)
        try:
            super().visit_For(node, frame)
        finally:
            node.iter = original

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.joined(context.eval_ctx, (")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


class Sandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox, metered (see the module's docstring)."""

    code_generator_class = _CodeGenerator
    intercepted_binops = frozenset({"+", "-", "*", "/", "//", "%", "**"})

    def __init__(self, **options: Any) -> None:
        super().__init__(finalize=self._output, **options)
        self.globals["range"] = _metered_range
        self.globals.pop("lipsum", None)  # lorem ipsum of any length: of no use in a playbook

    def meter_filters(self) -> None:
        """Wrap every filter registered so far (call after adding Baton's own)."""
        for name, func in list(self.filters.items()):
            self.filters[name] = _metered_filter(name, func)

    @staticmethod
    def _output(value: Any) -> Any:
        text = value if isinstance(value, str) else str(value)
        meter = _meter.get()
        if meter is not None:
            meter.charge(1 + len(text) // 100)
            meter.output += len(text)
            if meter.output > MAX_TEXT:
                raise _too_long(meter.output)
        return text

    @staticmethod
    def counted_items(items: Any) -> Any:
        return _counted(items)

    @staticmethod
    def joined(eval_ctx: Any, parts: tuple[Any, ...]) -> str:
        charge(1)
        texts = [p if isinstance(p, str) else str(p) for p in parts]
        total = sum(map(len, texts))
        if total > MAX_TEXT:
            raise _too_long(total)
        join = markup_join if eval_ctx.autoescape else str_join
        return join(texts)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        charge(1 + (_weight(left) + _weight(right) if operator in "+*" else 0))
        _check_binop(operator, left, right)
        return _checked(super().call_binop(context, operator, left, right))

    def getattr(self, obj: Any, attribute: str) -> Any:
        charge(1)
        value = super().getattr(obj, attribute)
        if isinstance(obj, str) and callable(value) and not isinstance(value, Undefined):
            return _str_method(obj, attribute, value)
        if isinstance(obj, Namespace):  # state a loop carries over: check its size
            return _checked(value)
        return value

    def getitem(self, obj: Any, argument: Any) -> Any:
        charge(1)
        value = super().getitem(obj, argument)
        if isinstance(obj, str) and callable(value) and not isinstance(value, Undefined):
            return _str_method(obj, argument, value)
        return value

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        charge(1)
        for arg in (*args, *kwargs.values()):
            if isinstance(arg, str) and len(arg) > MAX_TEXT:
                raise _too_long(len(arg))
        return _checked(super().call(__context, __obj, *args, **kwargs))
