"""Lists as aligned columns, for chat answers and the command line.

A chat answer that is a table sets ``Reply.mono``: the console prints its lines as they
are, Slack puts them in a code block (proportional fonts would undo the alignment).
"""

from __future__ import annotations

from collections.abc import Sequence


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """``header`` and ``rows`` as lines, each column as wide as its widest cell, two
    spaces between columns, no trailing blanks."""
    widths = [len(h) for h in header]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in (header, *rows)
    ]
