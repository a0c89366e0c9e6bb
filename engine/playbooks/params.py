"""Run parameters: parsing ``key=value`` words and checking values against a playbook's schema.

Values arrive as strings from chat and the CLI (``env=prod``) or typed from the HTTP API
(``{"replicas": 3}``); both go through ``coerce``. Every problem is collected before one
``ParamError`` is raised, so a user fixes them all at once. A secret's value is never
repeated in a message.

Decisions: a declared param that is neither given nor defaulted (and not required) is
set to None, so templates can test it (``{% if params.tag %}``). ``None`` counts as not
given; an empty string (or an empty list) counts as not given only for a required param.

A ``list`` param is typed as ``hosts=a,b,c``: items separated by commas, blanks around
them trimmed, an empty item refused (``a,,b`` is a typo, not three hosts). An item that
holds a comma is written in a JSON list instead: ``hosts='["a,b", "c"]'`` (any value
starting with ``[`` is read as JSON). The HTTP API and playbook YAML give a real list. A
list's ``choices`` and ``pattern`` apply to each item, its ``min``/``max`` count items.
``text`` writes a value back the way it is typed, so what Baton shows can be pasted.
"""

from __future__ import annotations

import json
import math
import re
import shlex
from collections.abc import Mapping, Sequence
from typing import Any

from engine import secrets as secretlib
from engine import storable
from engine.actions.shell import param_env
from engine.errors import ParamError, closest
from engine.playbooks.model import Param, ParamType, Playbook

TRUE_WORDS = frozenset({"true", "yes", "y", "1", "on"})
FALSE_WORDS = frozenset({"false", "no", "n", "0", "off"})
MASK = "***"


class _Bad(Exception):
    """One value that does not fit its param; the message follows ``name: ``."""


def parse_assignments(args: Sequence[str], playbook: str = "") -> dict[str, str]:
    """``["env=prod", "msg=hello world"]`` -> ``{"env": "prod", "msg": "hello world"}``.

    The value is everything after the first ``=``; a later assignment of the same key wins.
    """
    out: dict[str, str] = {}
    errors: list[str] = []
    for arg in args:
        key, eq, value = arg.partition("=")
        key = key.strip()
        if not eq:
            errors.append(f"{arg!r} is not a parameter (expected key=value, e.g. env=prod)")
        elif not key:
            errors.append(f"{arg!r} has no name before '=' (expected key=value, e.g. env=prod)")
        else:
            out[key] = value
    if errors:
        raise ParamError(playbook, errors)
    return out


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _shown(spec: Param, value: Any) -> str:
    return "the given value" if spec.type is ParamType.SECRET else _quoted(value)


def _quoted(value: Any) -> str:
    """A value as the person gave it, for a message: text quoted, anything else in JSON
    (true, {"a": 1}: what the API was sent, not Python's True), at most 80 characters."""
    try:
        shown = repr(value) if isinstance(value, str) else json.dumps(value, default=str)
    except ValueError:  # a structure that refers to itself, or a 5,000-digit number
        shown = f"a {type(value).__name__}"
    return shown if len(shown) <= 80 else shown[:77] + "..."


def _as_text(name: str, spec: Param, value: Any) -> str:
    if isinstance(value, str):
        text = value
    elif isinstance(value, int | float) and not isinstance(value, bool):
        text = str(value)
    else:
        raise _Bad(f"{_shown(spec, value)} is not a string (expected text, e.g. {name}=value)")
    if spec.type is ParamType.SECRET and (short := secretlib.too_short(text)) is not None:
        raise _Bad(f"the given value {short}")
    if spec.pattern is not None:
        try:
            matched = re.fullmatch(spec.pattern, text) is not None
        except re.error as exc:
            raise _Bad(
                f"the playbook's pattern {spec.pattern!r} is not a valid regex: {exc}"
            ) from None
        if not matched:
            raise _Bad(f"{_shown(spec, text)} does not match the pattern {spec.pattern}")
    return text


def _as_int(name: str, spec: Param, value: Any) -> int:
    bad = _Bad(f"{_quoted(value)} is not an int (expected a whole number, e.g. {name}=3)")
    if isinstance(value, bool):
        raise bad
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if value.is_integer():
            return int(value)
        raise bad
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            raise bad from None
    raise bad


def _as_float(name: str, spec: Param, value: Any) -> float:
    bad = _Bad(f"{_quoted(value)} is not a number (expected a number, e.g. {name}=0.5)")
    if isinstance(value, bool):
        raise bad
    if isinstance(value, int | float):
        result = float(value)
    elif isinstance(value, str):
        try:
            result = float(value.strip())
        except ValueError:
            raise bad from None
    else:
        raise bad
    if not math.isfinite(result):
        raise bad
    return result


def _as_bool(name: str, spec: Param, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
    raise _Bad(f"{_quoted(value)} is not a bool (expected true or false, e.g. {name}=true)")


def _as_choice(name: str, spec: Param, value: Any) -> Any:
    choices = spec.choices or []
    for choice in choices:
        if type(choice) is type(value) and choice == value:
            return choice
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        text = str(value).strip()
        for choice in choices:
            if str(choice) == text or (isinstance(choice, bool) and str(choice).lower() == text):
                return choice
        folded = [c for c in choices if isinstance(c, str) and c.lower() == text.lower()]
        if len(folded) == 1:
            return folded[0]
    listed = ", ".join(str(c) for c in choices)
    words = [c for c in choices if isinstance(c, str)]
    hint = closest(str(value), words, n=1) if isinstance(value, str) else []
    extra = f" (did you mean {hint[0]}?)" if hint else ""
    raise _Bad(f"{_quoted(value)} is not one of {listed}{extra}")


def _as_item(name: str, spec: Param, value: Any) -> Any:
    if spec.choices:
        return _as_choice(name, spec, value)
    kind = spec.item_type
    if kind is ParamType.INT:
        return _as_int(name, spec, value)
    if kind is ParamType.FLOAT:
        return _as_float(name, spec, value)
    if kind is ParamType.BOOL:
        return _as_bool(name, spec, value)
    return _as_text(name, spec, value)


def _split(name: str, spec: Param, typed: str) -> list[Any]:
    """``a, b,c`` -> ``["a", "b", "c"]``; a text starting with ``[`` is a JSON list."""
    stripped = typed.strip()
    if stripped.startswith("["):
        try:
            parsed = json.loads(stripped)
        except RecursionError:
            raise _Bad("the JSON list is nested too deep (a list holds plain values)") from None
        except json.JSONDecodeError as exc:
            raise _Bad(
                f"{typed!r} is not a JSON list ({exc.msg} at character {exc.pos + 1}); "
                f'write {name}={example(spec)}, or {name}=\'["a,b", "c"]\' for items '
                "holding commas"
            ) from None
        except ValueError:  # a number of thousands of digits, say
            raise _Bad("the JSON list holds a value too long to read") from None
        if not isinstance(parsed, list):
            raise _Bad(f"{typed!r} is not a JSON list")
        return parsed
    return [] if not stripped else stripped.split(",", MAX_LIST_ITEMS)


MAX_LIST_ITEMS = 1000
"""Items a list param holds at most (its ``max`` may be lower): a fan-out over more
belongs in an inventory, and a bigger list costs the server to read."""


def _as_list(name: str, spec: Param, value: Any) -> list[Any]:
    if isinstance(value, list | tuple) and len(value) > MAX_LIST_ITEMS:
        raise _Bad(f"more than {MAX_LIST_ITEMS:,} items: a list param holds at most that many")
    if isinstance(value, str):
        raw = _split(name, spec, value)
    elif isinstance(value, list | tuple):
        raw = list(value)
    else:
        raise _Bad(
            f"{_quoted(value)} is not a list (expected items separated by commas, "
            f"e.g. {name}={example(spec)}, or a JSON list)"
        )
    items: list[Any] = []
    problems: list[str] = []
    for i, item in enumerate(raw, 1):
        if isinstance(item, str):
            item = item.strip()
        if item is None or item == "":
            hint = f"separate items with one comma: {name}={example(spec)}"
            problems.append(f"item {i} is empty ({hint})")
        elif isinstance(item, list | tuple | dict):
            problems.append(f"item {i} is not a single value (a list holds plain values)")
        elif isinstance(item, str) and storable.problem(item) is not None:
            problems.append(f"item {i}: {storable.problem(item)}; send valid text")
        else:
            try:
                items.append(_as_item(name, spec, item))
            except _Bad as exc:
                problems.append(f"item {i}: {exc}")
        if len(problems) >= 10:
            problems.append("...")
            break
    if problems:
        raise _Bad("; ".join(problems))
    count = len(items)
    if count > MAX_LIST_ITEMS:
        raise _Bad(f"more than {MAX_LIST_ITEMS:,} items: a list param holds at most that many")
    if spec.min is not None and count < spec.min:
        raise _Bad(f"{_items(count)} given, fewer than the minimum {_items(int(spec.min))}")
    if spec.max is not None and count > spec.max:
        raise _Bad(f"{_items(count)} given, more than the maximum {_items(int(spec.max))}")
    return items


_ITEM_EXAMPLES = {ParamType.INT: "1,2,3", ParamType.FLOAT: "0.5,1.5", ParamType.BOOL: "true,false"}


def example(spec: Param) -> str:
    """A list param's value as typed, for messages: ``a,b,c``, ``1,2,3``, or two of its choices."""
    if spec.choices:
        return text(spec.choices[:2])
    return _ITEM_EXAMPLES.get(spec.item_type, "a,b,c")


def _items(n: int) -> str:
    return f"{n} item" if n == 1 else f"{n} items"


def _check_range(spec: Param, value: float) -> None:
    if spec.min is not None and value < spec.min:
        raise _Bad(f"{_num(value)} is below the minimum {_num(spec.min)}")
    if spec.max is not None and value > spec.max:
        raise _Bad(f"{_num(value)} is above the maximum {_num(spec.max)}")


def coerce_value(name: str, spec: Param, value: Any) -> Any:
    """``value`` converted to ``spec``'s type; ValueError ``name: why`` if it does not fit."""
    try:
        result: Any
        if spec.type in (ParamType.STRING, ParamType.SECRET):
            result = _as_text(name, spec, value)
        elif spec.type is ParamType.INT:
            result = _as_int(name, spec, value)
            _check_range(spec, result)
        elif spec.type is ParamType.FLOAT:
            result = _as_float(name, spec, value)
            _check_range(spec, result)
        elif spec.type is ParamType.BOOL:
            result = _as_bool(name, spec, value)
        elif spec.type is ParamType.LIST:
            result = _as_list(name, spec, value)
        else:
            result = _as_choice(name, spec, value)
    except _Bad as exc:
        raise ValueError(f"{name}: {exc}") from None
    return result


def _missing(name: str, spec: Param) -> str:
    what = f"{spec.kind}: {spec.help}" if spec.help else spec.kind
    if spec.choices and spec.type in (ParamType.CHOICE, ParamType.LIST):
        what += f"; one of {', '.join(str(c) for c in spec.choices)}"
    shown = example(spec) if spec.type is ParamType.LIST else "..."
    return f"missing required param {name} ({what}), e.g. {name}={shown}"


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str | list | tuple) and len(value) == 0)


def coerce(playbook: Playbook, raw: Mapping[str, Any]) -> dict[str, Any]:
    """Check and convert ``raw`` into the run's params: every declared param gets a value.

    Raises ParamError listing every problem: unknown names (with a did-you-mean), missing
    required params, values of the wrong type, outside ``choices``, ``pattern``, ``min``/``max``.
    """
    errors: list[str] = []
    declared = playbook.params
    for key in raw:
        if key in declared:
            continue
        hint = closest(key, declared, n=1)
        if hint:
            errors.append(f"unknown param {key!r} (did you mean {hint[0]}?)")
        elif declared:
            errors.append(f"unknown param {key!r} (this playbook takes {', '.join(declared)})")
        else:
            errors.append(f"unknown param {key!r} (this playbook takes no params)")
    values: dict[str, Any] = {}
    for name, spec in declared.items():
        value = raw.get(name)
        given = value is not None and not (spec.required and _blank(value))
        if not given:
            value = spec.default
        if value is None:
            if spec.required:
                errors.append(_missing(name, spec))
            values[name] = None
            continue
        bad = storable.problem(value)
        if bad is not None:
            errors.append(f"{name}: {bad}; send valid text")
            values[name] = None
            continue
        try:
            values[name] = coerce_value(name, spec, value)
        except ValueError as exc:
            errors.append(str(exc) if given else f"{exc} (the playbook's default)")
            continue
        if spec.required and values[name] == [] and spec.type is ParamType.LIST:
            errors.append(_missing(name, spec))  # `hosts=[]` is no more given than `hosts=`
    if not errors:
        errors = _over_env_limit(playbook, values)
    if errors:
        raise ParamError(playbook.name, errors)
    return values


MAX_ARG_STRLEN = 131_072
"""Linux's limit on one argument or environment string of a process (``PARAM_X=value``
and its NUL byte): with a longer one the process cannot start (E2BIG)."""


def _over_env_limit(playbook: Playbook, values: Mapping[str, Any]) -> list[str]:
    """A shell or ssh step gets every param as a ``PARAM_*`` variable, and an ssh step
    all of them in one command line (``engine.fleet.remote``), which the remote shell
    gets as one argument: a param (or all of them, for ssh) over the kernel's limit is
    refused at start, not left to fail every such step as it starts."""
    steps = {s.action: s.id for _, s in reversed(playbook.all_steps())}
    shell, ssh = steps.get("shell"), steps.get("ssh")
    if shell is None and ssh is None:
        return []
    limit = f"{MAX_ARG_STRLEN:,} bytes (128 KiB) the kernel lets one variable or argument take"
    fix = "pass a smaller value, such as a path or a URL to the data"
    errors, line = [], 0
    for name, value in values.items():
        [(key, text)] = param_env({name: value}).items()
        size = len(f"{key}={text}".encode(errors="surrogatepass")) + 1
        line += len(f"{key}={shlex.quote(text)} ".encode(errors="surrogatepass"))
        if size > MAX_ARG_STRLEN:
            errors.append(
                f"{name}: {size:,} bytes as ${key}, over the {limit} (MAX_ARG_STRLEN), so "
                f"{'shell' if shell else 'ssh'} step {shell or ssh!r} and every other could "
                f"not start: {fix}"
            )
    if ssh is not None and not errors and line >= MAX_ARG_STRLEN:
        errors.append(
            f"the params take {line:,} bytes of ssh step {ssh!r}'s command line, over the "
            f"{limit} (MAX_ARG_STRLEN), so it could not start: {fix}"
        )
    return errors


def missing(playbook: Playbook, raw: Mapping[str, Any]) -> list[str]:
    """The required params ``raw`` leaves without a value (and without a default)."""
    return [
        name
        for name, spec in playbook.params.items()
        if spec.required and spec.default is None and _blank(raw.get(name))
    ]


def text(value: Any) -> str:
    """A value as it is typed after ``name=``: a list as ``a,b,c`` (as a JSON list when
    that would not read back the same, e.g. an item holds a comma), a bool as ``true``."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list | tuple):
        words = [text(v) for v in value]
        plain = all(w and w == w.strip() and "," not in w for w in words)
        if words and plain and not words[0].startswith("["):
            return ",".join(words)
        return json.dumps(list(value), ensure_ascii=False)
    return str(value)


def describe(playbook: Playbook) -> list[str]:
    """One line per param, e.g. ``env (choice: prod, staging; default staging) - where to run``."""
    lines = []
    for name, spec in playbook.params.items():
        parts = [spec.kind]
        listed = ", ".join(text(c) for c in spec.choices or [])
        if spec.type is ParamType.CHOICE:
            parts[0] += f": {listed}"
        elif spec.type is ParamType.LIST and spec.choices:
            parts[0] += f", each one of {listed}"
        if spec.required:
            parts.append("required")
        elif spec.default is not None:
            shown = MASK if spec.type is ParamType.SECRET else text(spec.default)
            parts.append(f"default {shown}")
        else:
            parts.append("optional")
        if spec.min is not None or spec.max is not None:
            low = _num(spec.min) if spec.min is not None else ""
            high = _num(spec.max) if spec.max is not None else ""
            count = " items" if spec.type is ParamType.LIST else ""
            parts.append(f"{low}..{high}{count}")
        if spec.pattern is not None:
            parts.append(f"pattern {spec.pattern}")
        line = f"{name} ({'; '.join(parts)})"
        lines.append(f"{line} - {spec.help}" if spec.help else line)
    return lines
