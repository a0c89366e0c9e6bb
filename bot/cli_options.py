"""Options that several ``baton`` commands share, defined once: ``--as USER`` and whole
numbers within bounds. Standard library only, like every parser of ``baton --help``."""

from __future__ import annotations

import argparse
from collections.abc import Callable


def add_as_option(command: argparse.ArgumentParser, who: str = "who asks") -> None:
    """``--as USER`` on a command that acts for someone (``bot.cli_identity.acting_as``
    checks it); ``who`` starts its help line."""
    command.add_argument(
        "--as",
        dest="user",
        default=None,
        help=f"{who} (default: $USER; only where `console_as:` in BATON_CONFIG allows it)",
    )


def whole_number(low: int, high: int) -> Callable[[str], int]:
    """An argparse ``type``: a whole number from ``low`` to ``high``, or argparse's own
    clear error."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"give a number from {low} to {high}")
        return value

    return parse
