"""The run page's logs as a browser holds them, moved by the live stream's events the way
htmx applies them: ``log`` replaces the body's sections, ``append`` applies its
out-of-band swaps (append to a section, replace it, insert a new one after another),
``footer`` replaces the run's own lines. Only the markup ``bot.dashboard.live`` writes is
understood; anything else fails the test."""

from __future__ import annotations

import html
import re

_SPAN = re.compile(r'<span id="([^"]+)">([^<]*)</span>')
_OP = re.compile(
    r'<span hx-swap-oob="beforeend:#([^"]+)">([^<]*)</span>'  # grew
    r'|<span id="([^"]+)" hx-swap-oob="true">([^<]*)</span>'  # changed
    r'|<span hx-swap-oob="afterend:#([^"]+)"><span id="([^"]+)">([^<]*)</span></span>'  # came
)


class LivePage:
    def __init__(self, body: str = "", footer: str = "") -> None:
        self.sections: list[list[str]] = []  # [id, html text]
        self.footer = str(footer)  # never Markup: adding to it would escape again
        self.log(str(body))

    def log(self, data: str) -> None:
        self.sections = [[i, text] for i, text in _parse(_SPAN, data)]

    def append(self, data: str) -> None:
        at = 0
        for op in _OP.finditer(data):
            assert op.start() == at, f"not an out-of-band swap: {data[at : op.start()]!r}"
            at = op.end()
            grew, more, changed, text, after, new, new_text = op.groups()
            if grew is not None:
                self._section(grew)[1] += more
            elif changed is not None:
                self._section(changed)[1] = text
            else:
                place = self.sections.index(self._section(after)) + 1
                self.sections.insert(place, [new, new_text])
        assert at == len(data), f"not an out-of-band swap: {data[at:]!r}"

    def apply(self, name: str, data: str) -> None:
        if name == "log":
            self.log(data)
        elif name == "append":
            self.append(data)
        elif name == "footer":
            self.footer = str(data)

    @property
    def text(self) -> str:
        """What the page shows, as plain text."""
        return html.unescape("".join(text for _, text in self.sections) + self.footer)

    @property
    def ids(self) -> list[str]:
        return [i for i, _ in self.sections]

    def _section(self, id_: str) -> list[str]:
        found = [s for s in self.sections if s[0] == id_]
        assert len(found) == 1, f"#{id_}: {len(found)} elements on the page (htmx: no target)"
        return found[0]


def _parse(pattern: re.Pattern[str], data: str) -> list[tuple[str, str]]:
    found, at = [], 0
    for m in pattern.finditer(data):
        assert m.start() == at, f"unexpected markup: {data[at : m.start()]!r}"
        found.append((m.group(1), m.group(2)))
        at = m.end()
    assert at == len(data), f"unexpected markup: {data[at:]!r}"
    return found
