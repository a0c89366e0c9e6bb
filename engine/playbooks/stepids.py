"""Step ids in templates: ``steps.patch-web1.status`` reads the step ``patch-web1``.

A step id may hold hyphens (``approve-prod``), which Jinja reads as a minus sign:
``steps.patch-web1`` would be ``steps.patch - web1``. Before a template or a condition
is parsed, every ``steps.`` followed by an id with a hyphen is rewritten to the
subscript Jinja reads as meant, ``steps['patch-web1']``: inside ``{{ }}`` and ``{% %}``
(or in a whole condition), never in literal text, comments, ``{% raw %}`` blocks or
string literals. An id is whatever ``engine.playbooks.model.STEP_ID`` allows, so an unknown
one (a typo) is named whole in the error and validate's did-you-mean, not cut at its
first hyphen. ``steps.a - b`` (spaces around the minus) is left alone.

Step ids named like dict methods (``get``, ``items``, ``keys``...) need no rewrite: in
templates a mapping's key wins over a method of the same name (``engine.playbooks.templating``).
"""

from __future__ import annotations

import functools
import re

_REFERENCE = re.compile(r"(?<![\w.])steps\.([A-Za-z_][A-Za-z0-9_]*(?:-[A-Za-z0-9_-]*)+)")
"""``steps.`` then an id holding at least one hyphen (not ``x.steps.``, not ``mysteps.``)."""
_LITERAL = re.compile(r"""'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*\"""", re.DOTALL)
_SPANS = re.compile(
    r"(?P<keep>\{%-?\s*raw\s*-?%\}.*?\{%-?\s*endraw\s*-?%\}|\{#.*?#\})"
    r"|(?P<code>\{\{.*?\}\}|\{%.*?%\})",
    re.DOTALL,
)


def _subscript(match: re.Match[str]) -> str:
    return f"steps[{match.group(1)!r}]"


def _rewrite_code(code: str) -> str:
    """Rewrite references in expression code, leaving string literals as they are."""
    out: list[str] = []
    last = 0
    for literal in _LITERAL.finditer(code):
        out.append(_REFERENCE.sub(_subscript, code[last : literal.start()]))
        out.append(literal.group(0))
        last = literal.end()
    out.append(_REFERENCE.sub(_subscript, code[last:]))
    return "".join(out)


@functools.lru_cache(maxsize=4096)
def rewrite_expression(expression: str) -> str:
    """A bare expression (a ``when:``) with hyphenated step ids as subscripts."""
    if "steps." not in expression:
        return expression
    return _rewrite_code(expression)


@functools.lru_cache(maxsize=4096)
def rewrite_template(text: str) -> str:
    """Template text with hyphenated step ids as subscripts inside its Jinja blocks."""
    if "steps." not in text:
        return text

    def span(match: re.Match[str]) -> str:
        code = match.group("code")
        return match.group(0) if code is None else _rewrite_code(code)

    return _SPANS.sub(span, text)
