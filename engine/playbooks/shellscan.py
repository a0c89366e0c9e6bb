"""Where a place in a shell script falls: plain code, or inside quotes, a comment or a
here-document.

``| quote`` (``shlex.quote``) makes a value one shell word only where the shell reads
its quotes: in plain code. Inside ``'...'`` or ``"..."`` its quotes are literal text and
the value's ``$(...)`` may run (``"{{ x | quote }}"``); after a backslash its first
quote is escaped; in a comment a newline in the value ends the comment; in a
here-document the body is expanded (or read up to a line the value may hold). The
scanner reads the literal text of a script in order and says, at each point, whether
the shell is in plain code. It follows POSIX ``sh`` well enough for scripts people
write; where it cannot tell, it says "not plain", which refuses rather than splices.
"""

from __future__ import annotations

import re

_HEREDOC = re.compile(r"(?<!<)<<(?!<)-?\s*(['\"]?)\\?([A-Za-z_][A-Za-z0-9_]*)\1")


class ShellScanner:
    """Feed the literal text of a script, piece by piece; ask ``where()`` in between."""

    def __init__(self) -> None:
        self.state = ""  # "", "'", '"', "#" (comment) or "<<" (here-document body)
        self.escaped = False
        self._line = ""  # the current line so far (here-document starts and ends)
        self._delimiters: list[tuple[str, bool]] = []  # waiting for the end of the line
        self._heredoc: tuple[str, bool] | None = None

    def where(self) -> str:
        """ "" in plain code; else what the place is inside, in words."""
        if self.state == "" and not self.escaped:
            return ""
        return {
            "'": "inside '...' quotes",
            '"': 'inside "..." quotes',
            "#": "inside a comment",
            "<<": "inside a here-document",
        }.get(self.state, "right after a backslash")

    def feed(self, text: str) -> None:
        for ch in text:
            self._char(ch)

    def _char(self, ch: str) -> None:
        if ch == "\n":
            self._newline()
            return
        self._line += ch
        if self.state == "<<":
            return
        if self.escaped:
            self.escaped = False
        elif self.state == "'":
            if ch == "'":
                self.state = ""
        elif self.state == '"':
            if ch == "\\":
                self.escaped = True
            elif ch == '"':
                self.state = ""
        elif self.state == "#":
            pass
        elif ch == "\\":
            self.escaped = True
        elif ch in "'\"":
            self.state = ch
        elif ch == "#" and (len(self._line) == 1 or self._line[-2] in " \t;&|()"):
            self.state = "#"

    def _newline(self) -> None:
        line, self._line = self._line, ""
        if self.state == "<<":
            assert self._heredoc is not None
            word, strip_tabs = self._heredoc
            if (line.lstrip("\t") if strip_tabs else line) == word:
                self._heredoc = None
                self.state = ""
                self._next_heredoc()
            return
        if self.escaped:  # a line continuation
            self.escaped = False
            return
        if self.state == "#":
            self.state = ""
        if self.state == "":
            for match in _HEREDOC.finditer(line):
                self._delimiters.append((match.group(2), match.group(0)[2:3] == "-"))
            self._next_heredoc()

    def _next_heredoc(self) -> None:
        if self._delimiters:
            self._heredoc = self._delimiters.pop(0)
            self.state = "<<"
