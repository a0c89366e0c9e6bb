"""Semantic checks of playbooks, after ``engine.playbooks.model`` has checked their structure.

Used by ``baton validate`` and when the catalog loads. Every problem points at a file and
line. What is checked: actions exist and their ``with:`` blocks fit the action's inputs
(every literal value, durations included; a value holding a template is checked when the
step runs, and one that is exactly ``{{ params.X }}`` is also checked now with each value
the playbook gives X: its default and choices), an approval's quorum can be reached by
the approvers it lists (``engine.actions.approval.quorum_problem``; Baton groups count
when their members are known), step ids are unique across ``steps``, ``on_failure`` and
``finally``, ``needs`` name steps of the same list and make no cycle, templates compile
and only use declared params, existing steps, known names and the fields those have
(``steps.X.output``, ``failure.error``, ``alert.labels``...), a main step only reads
``steps.X`` of steps it (transitively) needs, no ``{{ }}`` splices a value into shell
code (``script``: see ``splices.shell_splices``), and param defaults fit their own
type.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.actions.registry import Registry
from engine.errors import ParamError, PlaybookInvalid, Problem, closest
from engine.playbooks import foreach, graphs, inputchecks, params, salvage, templating, yamldoc
from engine.playbooks import model as playbook
from engine.playbooks.inputchecks import Groups
from engine.playbooks.model import AlertTrigger, Lines, Phase, Playbook, Step

RUN_FIELDS = ("id", "trigger", "requested_by", "playbook", "attempt", "source")
FAILURE_ROOT = "failure"
"""Extra template name for on_failure and finally steps: what failed."""
CONCURRENCY_ROOTS = frozenset({"params", "run"})
ALERT_ROOTS = frozenset({"alert"})
STEP_FIELDS = ("output", "status", "error")
FAILURE_FIELDS = ("step", "error")
ALERT_FIELDS = (
    "source",
    "fingerprint",
    "status",
    "name",
    "summary",
    "labels",
    "annotations",
    "severity",
    "starts_at",
    "links",
)
"""What templates see of ``alert`` (``engine.alerts.rows.alert_context``)."""

_hint, _strings, _dotted = inputchecks.hint, inputchecks.strings, inputchecks.dotted

_KEYS = {Phase.MAIN: "steps", Phase.ON_FAILURE: "on_failure", Phase.FINALLY: "finally"}


def _label(phase: Phase, step: Step) -> str:
    return f"step {step.id!r}" if phase is Phase.MAIN else f"{_KEYS[phase]} step {step.id!r}"


class _Checker:
    def __init__(
        self,
        pb: Playbook,
        lines: Lines,
        file: str,
        registry: Registry,
        groups: Groups | None = None,
        workers: bool = True,
        skip: Sequence[tuple[Any, ...]] = (),
    ) -> None:
        self.pb = pb
        self.skip = list(skip)
        self.groups = groups
        self.workers = workers
        self.lines = lines
        self.file = file
        self.registry = registry
        self.problems: list[Problem] = []
        self.step_ids = {s.id for _, s in pb.all_steps()}
        self.needs = {s.id: s.needs for s in pb.steps}
        self.fanouts = {s.id for _, s in pb.all_steps() if s.for_each is not None}

    def add(self, path: tuple[Any, ...], message: str) -> None:
        if salvage.skipped(path, self.skip):
            return  # a part whose structure is broken (see engine.playbooks.salvage)
        self.problems.append(Problem(self.file, playbook.line_of(self.lines, path), message))

    def run(self) -> list[Problem]:
        self.check_params()
        self.check_ids()
        for phase in Phase:
            self.check_needs(phase)
            for i, step in enumerate(self.pb.phase(phase)):
                self.check_step(phase, i, step)
        if self.pb.concurrency is not None and self.pb.concurrency.key is not None:
            self.check_template(
                ("concurrency", "key"),
                "concurrency.key",
                self.pb.concurrency.key,
                roots=CONCURRENCY_ROOTS,
            )
        self.check_triggers()
        return sorted(self.problems, key=lambda p: p.line or 0)

    def check_triggers(self) -> None:
        """A schedule's params must fit the playbook now, not fail at 2 a.m.; an alert
        trigger's params must be declared, its templates readable."""
        for i, trig in enumerate(self.pb.triggers):
            if trig.alert is not None:
                self.check_alert_trigger(i, trig.alert)
            if trig.schedule is None:
                continue
            try:
                params.coerce(self.pb, trig.schedule.params)
            except ParamError as exc:
                for error in exc.errors:
                    self.add(("triggers", i, "schedule", "params"), f"schedule params: {error}")

    def check_alert_trigger(self, i: int, alert: AlertTrigger) -> None:
        for name, value in alert.params.items():
            path = ("triggers", i, "alert", "params", name)
            if name not in self.pb.params:
                declared = ", ".join(self.pb.params) or "none"
                self.add(
                    path,
                    f"alert trigger param {name!r} is not a param of this playbook"
                    f"{_hint(name, self.pb.params)} (declared params: {declared})",
                )
            if isinstance(value, str):
                self.check_template(path, f"alert trigger param {name}", value, ALERT_ROOTS)

    # --- params ---------------------------------------------------------------------

    def check_params(self) -> None:
        for name, spec in self.pb.params.items():
            if spec.pattern is not None:
                try:
                    re.compile(spec.pattern)
                except re.error as exc:
                    self.add(
                        ("params", name, "pattern"),
                        f"param {name}: pattern {spec.pattern!r} is not a valid regex: {exc}",
                    )
                    continue
            if spec.min is not None and spec.max is not None and spec.min > spec.max:
                self.add(("params", name, "min"), f"param {name}: min is greater than max")
            if spec.default is not None:
                try:
                    params.coerce_value(name, spec, spec.default)
                except ValueError as exc:
                    self.add(("params", name, "default"), f"param default does not fit: {exc}")

    # --- steps ----------------------------------------------------------------------

    def check_ids(self) -> None:
        first: dict[str, tuple[Any, ...]] = {}
        for phase in Phase:
            for i, step in enumerate(self.pb.phase(phase)):
                path = (_KEYS[phase], i, "id")
                if step.id in first:
                    line = playbook.line_of(self.lines, first[step.id])
                    at = f" (first defined on line {line})" if line else ""
                    self.add(path, f"duplicate step id {step.id!r}{at}")
                else:
                    first[step.id] = path

    def check_needs(self, phase: Phase) -> None:
        key = _KEYS[phase]
        steps = self.pb.phase(phase)
        ids = {s.id for s in steps}
        for i, step in enumerate(steps):
            for j, need in enumerate(step.needs):
                if need in ids:
                    continue
                path = (key, i, "needs", j)
                if need in self.step_ids:
                    self.add(
                        path,
                        f"{_label(phase, step)} needs {need!r}, which is not in `{key}`: "
                        f"needs may only name steps of the same list",
                    )
                else:
                    self.add(
                        path, f"{_label(phase, step)} needs unknown step {need!r}{_hint(need, ids)}"
                    )
        graph = {s.id: [n for n in s.needs if n in ids] for s in steps}
        index = {s.id: i for i, s in enumerate(steps)}
        for cycle in graphs.cycles(graph):
            self.add((key, index[cycle[0]], "needs"), "cycle in needs: " + " -> ".join(cycle))

    def ancestors(self, step_id: str) -> set[str]:
        seen: set[str] = set()
        todo = list(self.needs.get(step_id, []))
        while todo:
            current = todo.pop()
            if current not in seen:
                seen.add(current)
                todo.extend(self.needs.get(current, []))
        return seen

    def check_step(self, phase: Phase, i: int, step: Step) -> None:
        key = _KEYS[phase]
        label = _label(phase, step)
        roots = templating.ROOTS if phase is Phase.MAIN else templating.ROOTS | {FAILURE_ROOT}
        for path, message in inputchecks.problems(step, self.registry, self.pb.params, self.groups):
            self.add((key, i, *path), f"{label}: {message}")
        if step.for_each is not None:
            self.check_for_each(key, i, step, phase, roots)
        item_roots = roots | foreach.names_of(step.for_each)
        for message in inputchecks.runs_on_problems(step, self.workers):
            self.add((key, i, "runs_on"), f"{label}: {message}")
        for path, text in _strings(step.with_, ()):
            self.check_template(
                (key, i, "with", *path),
                f"{label}: with.{_dotted(path)}",
                text,
                item_roots,
                step,
                phase,
            )
        if step.when is not None:
            self.check_template(
                (key, i, "when"), f"{label}: when", step.when, roots, step, phase, expression=True
            )

    def check_for_each(
        self, key: str, i: int, step: Step, phase: Phase, roots: frozenset[str]
    ) -> None:
        """A fan-out's action can run per item, and its list's templates are sound."""
        assert step.for_each is not None
        label = _label(phase, step)
        problem = foreach.action_problem(step.action)
        if problem is not None:
            self.add((key, i, "for_each"), f"{label}: {problem}")
        for path, text in _strings(step.for_each.items, ()):
            where = f"{label}: for_each.items" + (f".{_dotted(path)}" if path else "")
            self.check_template((key, i, "for_each"), where, text, roots, step, phase)

    # --- templates --------------------------------------------------------------------

    def check_template(
        self,
        path: tuple[Any, ...],
        label: str,
        text: str,
        roots: frozenset[str],
        step: Step | None = None,
        phase: Phase = Phase.MAIN,
        *,
        expression: bool = False,
    ) -> None:
        error = templating.check_syntax(text, expression=expression)
        if error is not None:
            self.add(path, f"{label}: {error}")
            return
        for name in sorted(templating.unknown_names(text, roots, expression=expression)):
            self.add(
                path,
                f"{label}: unknown name {name!r}{_hint(name, roots)}"
                f" (templates here can use {', '.join(sorted(roots))})",
            )
        self.check_fields(path, label, text, roots, expression)
        for root, attr in sorted(templating.references(text, expression=expression)):
            if root not in roots:
                continue  # reported above as an unknown name
            if root == "params" and attr not in self.pb.params:
                declared = ", ".join(self.pb.params) or "none"
                self.add(
                    path,
                    f"{label}: unknown param {attr!r}{_hint(attr, self.pb.params)}"
                    f" (declared params: {declared})",
                )
            elif root == "run" and attr not in RUN_FIELDS:
                self.add(path, f"{label}: run has no {attr!r} (it has {', '.join(RUN_FIELDS)})")
            elif root == "steps" and attr not in self.step_ids:
                self.add(path, f"{label}: unknown step {attr!r}{_hint(attr, self.step_ids)}")
            elif (
                root == "steps"
                and step is not None
                and phase is Phase.MAIN
                and attr not in self.ancestors(step.id)
            ):
                self.add(
                    path,
                    f"{label}: steps.{attr} is used by step {step.id!r} but {attr!r} is not in "
                    f"its needs, so it may not have run yet",
                )

    def check_fields(
        self, path: tuple[Any, ...], label: str, text: str, roots: frozenset[str], expression: bool
    ) -> None:
        """``steps.ID.X``, ``failure.X`` and ``alert.X`` name fields that exist."""
        for step_id, name in sorted(templating.fields(text, "steps", expression=expression)):
            if name == "items" and step_id in self.fanouts:
                continue
            if name and step_id in self.step_ids and name not in STEP_FIELDS:
                near = closest(name, STEP_FIELDS, n=1)
                self.add(
                    path,
                    f"{label}: steps.{step_id} has no {name!r} (a step has output, status and "
                    f"error): for what the step returned write steps.{step_id}.output.{name}"
                    + (f", or did you mean steps.{step_id}.{near[0]}?" if near else ""),
                )
        for root, known in ((FAILURE_ROOT, FAILURE_FIELDS), ("alert", ALERT_FIELDS)):
            if root not in roots:
                continue
            names = {name for name, _ in templating.fields(text, root, expression=expression)}
            for name in sorted(names):
                if name not in known:
                    self.add(
                        path,
                        f"{label}: {root} has no {name!r}{_hint(name, known)}"
                        f" (it has {', '.join(known)})",
                    )


def validate(
    pb: Playbook,
    lines: Lines,
    file: str,
    registry: Registry,
    groups: Groups | None = None,
    *,
    workers: bool = True,
    skip: Sequence[tuple[Any, ...]] = (),
) -> list[Problem]:
    """Every semantic problem of ``pb`` (loaded from ``file`` with ``lines``), sorted by line.
    With ``groups``, an approval's ``groups`` must exist and their members count for its
    quorum. ``workers``: whether the database can hand steps to workers (PostgreSQL);
    without, a step's ``runs_on`` is a problem. ``skip``: paths whose problems are left
    out (the broken parts of a salvaged playbook, see ``engine.playbooks.salvage``)."""
    return _Checker(pb, lines, file, registry, groups, workers, skip).run()


def load_and_validate(path: Path, registry: Registry) -> tuple[Playbook | None, list[Problem]]:
    """Load and check one file. The playbook is None when the file is not even structurally
    a playbook; it is usable only when the problem list is empty."""
    pb, _, problems, _ = _load(path, registry)
    return pb, problems


def _load(
    path: Path, registry: Registry, groups: Groups | None = None, workers: bool = True
) -> tuple[Playbook | None, Lines, list[Problem], str]:
    """The playbook (None unless its structure is sound), its lines, every problem and the
    name the file declares (its file name when that cannot be read): a structurally
    broken one (duplicate keys included: each key's last value is checked) is checked as
    far as it can be."""
    file = str(path)
    try:
        data, lines, broken = yamldoc.parse_past_duplicates(yamldoc.read_text(path), file)
    except PlaybookInvalid as exc:
        return None, {}, exc.problems, path.stem
    declared = data.get("name") if isinstance(data, dict) else None
    name = declared if isinstance(declared, str) else path.stem
    skip: list[tuple[Any, ...]] = []
    try:
        pb = playbook.build(data, lines, file)
    except PlaybookInvalid as exc:
        broken += exc.problems
        salvaged = salvage.partial(data)
        if salvaged is None:
            return None, lines, broken, name
        pb, skip = salvaged
    found = validate(pb, lines, file, registry, groups, workers=workers, skip=skip)
    sound = not broken
    return (pb if sound else None), lines, sorted(broken + found, key=lambda p: p.line or 0), name


@dataclass(frozen=True)
class Checked:
    """What ``check_paths`` found."""

    valid: dict[str, tuple[Playbook, Path]]
    """The valid playbooks by name, with their file."""
    problems: list[Problem]
    invalid: dict[str, Path]
    """The files that fail the checks, by the name they declare (their file name when
    that cannot be read), leaving out names a valid file has: asking for one of them
    can say it is invalid rather than unknown."""


def validate_paths(
    paths: Sequence[Path],
    registry: Registry,
    groups: Groups | None = None,
    *,
    workers: bool = True,
) -> tuple[dict[str, tuple[Playbook, Path]], list[Problem]]:
    """``check_paths``' valid playbooks and problems."""
    checked = check_paths(paths, registry, groups, workers=workers)
    return checked.valid, checked.problems


def check_paths(
    paths: Sequence[Path],
    registry: Registry,
    groups: Groups | None = None,
    *,
    workers: bool = True,
) -> Checked:
    """Check files and every ``*.yaml``/``*.yml`` in directories (``workers``: see
    ``validate``). Two files declaring the same name is a problem of the later file (in
    path order), which is left out."""
    valid: dict[str, tuple[Playbook, Path]] = {}
    owner: dict[str, Path] = {}
    problems: list[Problem] = []
    invalid: dict[str, Path] = {}
    seen: set[Path] = set()
    for path in _files(paths, seen, problems):
        pb, lines, found, name = _load(path, registry, groups, workers)
        if pb is not None and pb.name in owner:
            found.append(
                Problem(
                    str(path),
                    playbook.line_of(lines, ("name",)),
                    f"playbook name {pb.name!r} is already used by {owner[pb.name]}",
                )
            )
            problems.extend(found)
            continue
        problems.extend(found)
        if pb is not None:
            owner[pb.name] = path
        if pb is not None and not found:
            valid[pb.name] = (pb, path)
        elif found:
            invalid.setdefault(name, path)
    invalid = {name: path for name, path in invalid.items() if name not in valid}
    return Checked(valid, problems, invalid)


def _files(paths: Sequence[Path], seen: set[Path], problems: list[Problem]) -> Iterator[Path]:
    for root in paths:
        if not root.exists():
            problems.append(
                Problem(
                    str(root),
                    None,
                    "no such file or directory (BATON_PLAYBOOKS names the playbook folder)",
                )
            )
            continue
        for path in playbook.playbook_files(root):
            if path.resolve() not in seen:
                seen.add(path.resolve())
                yield path
