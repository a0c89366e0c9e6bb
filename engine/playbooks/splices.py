"""Shell code is not a place for values: ``shell_splices`` finds the ``{{ }}`` outputs of
a template that would put a value into shell code as is (every one but a constant and one
whose last filter is ``quote`` where the shell reads quotes); ``baton validate`` refuses
them and the engine refuses to run them."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import jinja2
from jinja2 import nodes

from engine.playbooks import shellscan, stepids, templating


@dataclass(frozen=True)
class Splice:
    """An output expression that would put a value into shell code as is."""

    line: int  # line of the template text (1 for the first)
    shown: str  # the expression, as ``params.host``, or "" when it is not a plain name
    param: str | None  # the param, when the expression is exactly ``params.NAME``
    inside: str = ""  # for a ``| quote`` where its quotes do not count: where it is

    def problem(self) -> str:
        """What is wrong, and the fix, in words a playbook author can act on."""
        what = f"{{{{ {self.shown} }}}}" if self.shown else "an {{ expression }}"
        where = f"line {self.line} of the script: "
        if self.inside:
            var = (
                "PARAM_" + re.sub(r"[^A-Za-z0-9_]", "_", self.param).upper()
                if self.param is not None
                else "VALUE (set in env:)"
            )
            return (
                f"{where}{what} is {self.inside}, where the quotes | quote adds do not "
                "protect the value: write it in plain code (not inside quotes, a comment or "
                f'a here-document: it makes its own quotes), or use "${var}"'
            )
        if self.param is not None:
            var = "PARAM_" + re.sub(r"[^A-Za-z0-9_]", "_", self.param).upper()
            fix = (
                f'use "${var}" in the script, or {{{{ {self.shown} | quote }}}} '
                "when you mean to splice a value"
            )
        else:
            shown = self.shown or "..."
            fix = (
                f'pass it through env: (env: {{VALUE: "{{{{ {shown} }}}}"}}, then "$VALUE" '
                "in the script), or end the expression with | quote when you mean to splice it"
            )
        return (
            f"{where}{what} would be spliced into shell code as is (a value such as "
            f"'x; rm -rf ~' would run as a command): {fix}"
        )


def _dotted_name(node: nodes.Node) -> str:
    """``params.host`` for a chain of names, attributes, constant subscripts and filters
    without arguments; else ""."""
    if isinstance(node, nodes.Name):
        return node.name
    if isinstance(node, nodes.Getattr):
        inner = _dotted_name(node.node)
        return f"{inner}.{node.attr}" if inner else ""
    if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
        inner = _dotted_name(node.node)
        return f"{inner}[{node.arg.value!r}]" if inner else ""
    if isinstance(node, nodes.Filter) and node.node is not None and not node.args:
        inner = _dotted_name(node.node)
        return f"{inner} | {node.name}" if inner else ""
    return ""


def _param_of(node: nodes.Node) -> str | None:
    """``host`` for ``params.host`` or ``params['host']``; else None."""
    if not isinstance(node, nodes.Getattr | nodes.Getitem):
        return None
    if not (isinstance(node.node, nodes.Name) and node.node.name == "params"):
        return None
    if isinstance(node, nodes.Getattr):
        return node.attr
    value = node.arg.value if isinstance(node.arg, nodes.Const) else None
    return value if isinstance(value, str) else None


def _spliced(node: nodes.Node) -> bool:
    """True when an output expression would reach the text unquoted."""
    if isinstance(node, nodes.TemplateData | nodes.Const):
        return False
    return not (isinstance(node, nodes.Filter) and node.name == "quote")


@functools.lru_cache(maxsize=2048)
def shell_splices(text: str) -> tuple[Splice, ...]:
    """The ``{{ }}`` outputs of ``text`` that would splice a value into shell code.

    Allowed: literal text, constants (``{{ '{{' }}``), expressions whose last filter is
    ``quote`` where the shell reads quotes (plain code: not inside quotes, a comment or a
    here-document, see ``engine.playbooks.shellscan``), and control blocks
    (``{% if params.x %}``...) around allowed output. Text that does not parse gives
    nothing (``check_syntax`` reports it).
    """
    if not any(mark in text for mark in ("{{", "{%", "{#")):
        return ()
    try:
        ast = templating.environment().parse(stepids.rewrite_template(text))
    except jinja2.TemplateSyntaxError:
        return ()
    found: list[Splice] = []
    scanner = shellscan.ShellScanner()
    for output in ast.find_all(nodes.Output):  # in the order of the text
        assert isinstance(output, nodes.Output)
        for node in output.nodes:
            if isinstance(node, nodes.TemplateData | nodes.Const):
                scanner.feed(str(node.data if isinstance(node, nodes.TemplateData) else node.value))
            elif _spliced(node):
                found.append(Splice(node.lineno, _dotted_name(node), _param_of(node)))
            elif scanner.where():
                assert isinstance(node, nodes.Filter) and node.node is not None
                param = _param_of(node.node)
                found.append(Splice(node.lineno, _dotted_name(node), param, scanner.where()))
    return tuple(found)
