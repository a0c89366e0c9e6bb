"""Errors the engine raises. Every message is written for the person who has to act on it."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass


class BatonError(Exception):
    """Root of every error Baton reports to a user; ``str(err)`` is the whole message."""


@dataclass(frozen=True)
class Problem:
    """One problem found in a playbook file, pointing at a file and line."""

    file: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.message}"


class PlaybookInvalid(BatonError):
    """A playbook failed validation; carries every problem found, not just the first."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


def closest(name: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    return difflib.get_close_matches(name, list(candidates), n=n, cutoff=0.5)


class PlaybookNotFound(BatonError):
    def __init__(self, name: str, known: Iterable[str]) -> None:
        self.name = name
        self.suggestions = closest(name, known)
        hint = (
            f" Did you mean {', '.join(repr(s) for s in self.suggestions)}?"
            if self.suggestions
            else " Run `baton playbooks` to list them."
        )
        super().__init__(f"Unknown playbook {name!r}.{hint}")


class PlaybookUnusable(PlaybookNotFound):
    """A playbook file exists but fails validation, so it cannot run: the message says
    so, with its problems and file, instead of calling the playbook unknown."""

    def __init__(self, name: str, path: str, problems: Iterable[Problem]) -> None:
        BatonError.__init__(
            self,
            "\n".join(
                [
                    f"Playbook {name!r} is invalid, so it cannot run ({path}):",
                    *(f"  {p}" for p in problems),
                    f"Fix it, then check it with `baton validate {path}`.",
                ]
            ),
        )
        self.name = name
        self.path = path
        self.suggestions = []


class ParamError(BatonError):
    """A run was asked for with parameters that do not fit the playbook's schema."""

    def __init__(self, playbook: str, errors: list[str]) -> None:
        self.playbook = playbook
        self.errors = errors
        super().__init__(f"Bad parameters for {playbook!r}: " + "; ".join(errors))


class RunNotFound(BatonError):
    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        super().__init__(f"No run with id {run_id!r}. `baton runs` lists recent runs.")


class BadCursor(BatonError):
    """A page was asked for with a cursor no list of Baton's gave out (or of another list)."""

    def __init__(self, reason: str) -> None:
        super().__init__(
            f"cursor is not one this list gave out ({reason}): "
            "leave it out to start again from the newest"
        )


class InvalidTransition(BatonError):
    """An operation does not apply to a run or approval in its current state."""


class ConcurrencyLimit(BatonError):
    """A run was refused because its concurrency key is full and the playbook says reject."""


class ApprovalNotFound(BatonError):
    def __init__(self, approval_id: str) -> None:
        self.approval_id = approval_id
        super().__init__(f"No approval with id {approval_id!r}.")


class NotAllowed(BatonError):
    """Someone asked for something they may not do; the message says who may."""


class ShuttingDown(BatonError):
    """Baton is stopping and takes no new runs."""


class RunMoved(BatonError):
    """The run is now driven by another node (this one lost its lease or gave it up)."""


class RunQueued(RunMoved):
    """The run waits for a place under its concurrency key: a ``baton serve`` node starts
    it when one frees, not the process that asked for it."""


class TemplateError(BatonError):
    """A template failed to render or a condition failed to evaluate."""


class ActionError(BatonError):
    """An action failed; the step fails with this message. ``output`` is kept on the attempt."""

    def __init__(self, message: str, output: dict[str, object] | None = None) -> None:
        self.output = output or {}
        super().__init__(message)
