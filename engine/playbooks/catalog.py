"""The playbook library: every valid playbook in one folder (``BATON_PLAYBOOKS``).

An invalid file never stops the others from loading; its problems are kept in
``Catalog.problems`` for ``baton validate``, the logs and the dashboard, and asking for
it by name says it is invalid and why (``PlaybookUnusable``), not that it is unknown.
``reload()`` (on SIGHUP) builds a new catalog in which an invalid edit is rejected: the
playbook keeps its previous valid version, and the problems say why the edit was refused.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

from engine.actions.registry import Registry
from engine.errors import PlaybookNotFound, PlaybookUnusable, Problem
from engine.playbooks import validate
from engine.playbooks.inputchecks import Groups
from engine.playbooks.model import Playbook


class Catalog:
    """An immutable view of the playbooks loaded from ``root``; reload to see edits."""

    def __init__(
        self,
        root: Path,
        registry: Registry,
        playbooks: Mapping[str, tuple[Playbook, Path]],
        problems: list[Problem],
        kept: list[str] | None = None,
        *,
        workers: bool = True,
        invalid: Mapping[str, Path] | None = None,
        groups: Groups | None = None,
    ) -> None:
        self.root = root
        self.workers = workers
        """Whether steps may run on workers (``runs_on``): the database is PostgreSQL."""
        self.groups = groups
        """Baton's groups (``BATON_CONFIG``'s, empty without one) that approvals may name;
        None: not checked."""
        self.registry = registry
        self._playbooks = dict(sorted(playbooks.items()))
        self.problems = problems
        self.kept = kept or []
        """Names whose new file was invalid on reload, so the previous version was kept."""
        self.invalid = {n: p for n, p in (invalid or {}).items() if n not in self._playbooks}
        """Files that fail validation, by the playbook name they declare."""

    @classmethod
    def load(
        cls, root: Path, registry: Registry, *, workers: bool = True, groups: Groups | None = None
    ) -> Catalog:
        """``workers``: False on SQLite, where a step's ``runs_on`` is refused. ``groups``:
        the Baton groups an approval may name (an unknown one is a problem)."""
        found = validate.check_paths([root], registry, groups, workers=workers)
        return cls(
            root,
            registry,
            found.valid,
            found.problems,
            workers=workers,
            invalid=found.invalid,
            groups=groups,
        )

    def reload(self) -> Catalog:
        """A new catalog from the files as they are now.

        A playbook whose file still exists but is now invalid (or now clashes with another
        file's name) keeps its previous version; a playbook whose file is gone is dropped.
        """
        found = validate.check_paths([self.root], self.registry, self.groups, workers=self.workers)
        playbooks, problems = found.valid, found.problems
        broken = {p.file for p in problems}
        kept = []
        for name, (pb, path) in self._playbooks.items():
            if name in playbooks or str(path) not in broken or not path.exists():
                continue
            playbooks[name] = (pb, path)
            kept.append(name)
            problems.append(
                Problem(str(path), None, f"edit rejected: keeping the previous version of {name!r}")
            )
        return Catalog(
            self.root,
            self.registry,
            playbooks,
            problems,
            kept,
            workers=self.workers,
            invalid=found.invalid,
            groups=self.groups,
        )

    def get(self, name: str) -> Playbook:
        """The playbook; PlaybookNotFound when there is none, PlaybookUnusable (a kind of
        it) when its file fails validation."""
        try:
            return self._playbooks[name][0]
        except KeyError:
            raise self._missing(name) from None

    def path_of(self, name: str) -> Path:
        try:
            return self._playbooks[name][1]
        except KeyError:
            raise self._missing(name) from None

    def _missing(self, name: str) -> PlaybookNotFound:
        path = self.invalid.get(name)
        if path is None:
            return PlaybookNotFound(name, self._playbooks)
        return PlaybookUnusable(name, str(path), [p for p in self.problems if p.file == str(path)])

    def names(self) -> list[str]:
        return list(self._playbooks)

    def all(self) -> list[Playbook]:
        return [pb for pb, _ in self._playbooks.values()]

    def __iter__(self) -> Iterator[Playbook]:
        return iter(self.all())

    def __len__(self) -> int:
        return len(self._playbooks)

    def __contains__(self, name: object) -> bool:
        return name in self._playbooks
