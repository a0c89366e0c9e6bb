"""Checks of one step's action and ``with:`` block before any run (part of ``baton validate``).

The action must exist and its inputs fit the action's pydantic ``Inputs`` model: unknown
and missing inputs, and every literal value (durations included: the models type them
with ``engine.playbooks.durations``). A value holding a template is checked when the step runs,
except what can be known now: an input that is exactly ``{{ params.X }}`` is checked with
each value the playbook gives X (its default and choices). Beyond the model: no ``{{ }}``
splices a value into shell code, no ``argv`` item is an unquoted YAML boolean, and an
approval's quorum can be reached by the approvers it lists.

Each problem comes as ``(path, message)``: the path under the step (``("with",
"timeout")``) and a message without the step's label, which ``engine.playbooks.validate`` adds.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from engine.actions import shell_code_inputs
from engine.actions.registry import Registry
from engine.errors import closest
from engine.playbooks import params, splices
from engine.playbooks.model import Param, Step

Found = Iterator[tuple[tuple[Any, ...], str]]
Groups = Mapping[str, frozenset[str]]
"""Baton's groups (``BATON_CONFIG``) by name, with their members, when they are known."""

_PARAM_ONLY = re.compile(r"\s*\{\{-?\s*params\.([A-Za-z_][A-Za-z0-9_]*)\s*-?\}\}\s*")


def problems(
    step: Step, registry: Registry, declared: Mapping[str, Param], groups: Groups | None
) -> Found:
    """Every problem of ``step``'s action and inputs, given the playbook's params."""
    if step.action not in registry:
        names = registry.names()
        yield (
            ("action",),
            f"unknown action {step.action!r}{hint(step.action, names)}"
            f" (known actions: {', '.join(names)})",
        )
        return
    action = registry.get(step.action)
    yield from _model(step, action, declared, groups)
    yield from _shell_code(step, action)
    yield from _argv_words(step)


def _model(step: Step, action: Any, declared: Mapping[str, Param], groups: Groups | None) -> Found:
    model: type[BaseModel] = action.Inputs
    try:
        inputs = model.model_validate(step.with_)
    except ValidationError as exc:
        yield from _model_errors(step, model, exc)
        inputs = _fitting(model, step.with_, exc)
    if inputs is not None:
        yield from _approval(step, inputs, groups)
    yield from _param_values(step, model, declared)


def _fitting(model: type[BaseModel], given: dict[str, Any], exc: ValidationError) -> Any:
    """The inputs without those that do not fit, when the rest fits on its own (None
    otherwise): one bad input does not hide a problem of the others, such as a quorum."""
    if any(not err["loc"] for err in exc.errors()):
        return None  # a problem of the inputs as a whole
    bad = {err["loc"][0] for err in exc.errors()}
    try:
        return model.model_validate({k: v for k, v in given.items() if k not in bad})
    except ValidationError:
        return None


def _model_errors(step: Step, model: type[BaseModel], exc: ValidationError) -> Found:
    accepted = set()
    for name, field in model.model_fields.items():
        accepted.add(name)
        if field.alias:
            accepted.add(field.alias)
    for err in exc.errors():
        loc = tuple(err["loc"])
        top = loc[0] if loc else None
        if err["type"] == "extra_forbidden" and isinstance(top, str):
            yield (
                ("with", top),
                f"unknown input {top!r} for action {step.action!r}{hint(top, accepted)}",
            )
        elif err["type"] == "missing":
            yield ("with",), f"action {step.action!r} needs input {dotted(loc)!r}"
        elif _has_template(_value_at(step.with_, loc)):
            continue  # templated values are checked when the step runs
        else:
            where = f"with.{dotted(loc)}: " if loc else "with: "
            yield ("with", *loc), where + err["msg"].removeprefix("Value error, ")


def _approval(step: Step, inputs: Any, groups: Groups | None) -> Found:
    """An approval's groups exist (when known) and its quorum can be reached."""
    from engine.actions import approval

    if not isinstance(inputs, approval.ApprovalInputs) or _has_template(
        step.with_.get("approvers")
    ):
        return  # not the built-in approval, or approvers known only at run time
    if groups is not None:
        known = (
            f"BATON_CONFIG's groups: {', '.join(groups)}"
            if groups
            else "there are none; define it in the file BATON_CONFIG names, under `groups:` "
            "or in a person's `groups`"
        )
        escalate = inputs.escalate.approvers if inputs.escalate else None
        for key, stage in (("approvers", inputs.approvers), ("escalate", escalate)):
            unknown = [g for g in stage.groups if g not in groups] if stage else []
            alone = stage is not None and not (
                stage.users or stage.usergroups or len(unknown) < len(stage.groups)
            )
            where = "the gate" if key == "approvers" else "its escalation"
            for group in unknown:
                yield (
                    ("with", key),
                    f"approvers group {group!r} is not a Baton group{hint(group, groups)} "
                    f"({known})"
                    + (
                        f"; {where} names nobody else: nobody could ever approve it"
                        if alone
                        else ""
                    ),
                )
    problem = approval.quorum_problem(inputs, groups)
    if problem is not None:
        yield ("with", "min_approvals"), problem


def _param_values(step: Step, model: type[BaseModel], declared: Mapping[str, Param]) -> Found:
    """An input written as exactly ``{{ params.X }}`` gets X's value: each value the
    playbook itself gives X (its default and choices) must fit the input, or the step
    would fail at run time for the run that uses it."""
    for path, text in strings(step.with_, ()):
        match = _PARAM_ONLY.fullmatch(text)
        spec = declared.get(match.group(1)) if match else None
        if match is None or spec is None or spec.type.value == "secret" or not path:
            continue
        name = match.group(1)
        candidates = [("its default", spec.default)] if spec.default is not None else []
        candidates += [("a choice", c) for c in spec.choices or []]
        for what, value in candidates:
            try:
                typed = params.coerce_value(name, spec, value)
            except ValueError:
                continue  # validate's param checks report a default that does not fit
            try:
                model.model_validate(_replaced(step.with_, path, typed))
            except ValidationError as exc:
                msg = next(
                    (e["msg"] for e in exc.errors() if tuple(e["loc"])[: len(path)] == path),
                    None,
                )
                if msg is not None:
                    yield (
                        ("with", *path),
                        f"with.{dotted(path)} is param {name!r}, whose value {value!r} "
                        f"({what}) does not fit: {msg.removeprefix('Value error, ')}",
                    )


def _argv_words(step: Step) -> Found:
    """An unquoted ``yes``, ``no``, ``on`` or ``off`` in ``argv`` is a YAML boolean, and
    would run as ``true``/``false``: a literal boolean item must be quoted."""
    argv = step.with_.get("argv")
    for j, item in enumerate(argv if isinstance(argv, list) else []):
        if isinstance(item, bool):
            yield (
                ("with", "argv", j),
                f"with.argv[{j}] is the YAML boolean {str(item).lower()} (YAML reads unquoted "
                "yes, no, on, off, true and false so): quote the word you mean, e.g. 'yes'",
            )


def _shell_code(step: Step, action: Any) -> Found:
    """No ``{{ }}`` may splice a value into a shell code input (``script``)."""
    for name in shell_code_inputs(action):
        text = step.with_.get(name)
        if isinstance(text, str):
            for splice in splices.shell_splices(text):
                yield ("with", name), f"with.{name}, {splice.problem()}"


# --- helpers, also used by engine.playbooks.validate ------------------------------------------


def hint(name: str, candidates: Iterable[str]) -> str:
    found = closest(name, candidates, n=1)
    return f" (did you mean {found[0]!r}?)" if found else ""


def strings(value: Any, path: tuple[Any, ...]) -> Iterator[tuple[tuple[Any, ...], str]]:
    """Every string in ``value`` (nested dicts and lists) with its path."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from strings(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from strings(item, (*path, i))


def dotted(path: tuple[Any, ...]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")


def _has_template(value: Any) -> bool:
    return any("{{" in text or "{%" in text for _, text in strings(value, ()))


def _value_at(value: Any, loc: tuple[Any, ...]) -> Any:
    """The value an error's location points at (its deepest part present in ``value``):
    ``argv.1`` is the second argv item, so a template in another item does not hide it."""
    for part in loc:
        in_dict = isinstance(value, dict) and part in value
        in_list = isinstance(value, list) and isinstance(part, int) and 0 <= part < len(value)
        if not (in_dict or in_list):
            break
        value = value[part]
    return value


def _replaced(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    """A copy of ``value`` with the item at ``path`` replaced by ``new``."""
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {k: _replaced(v, rest, new) if k == head else v for k, v in value.items()}
    return [_replaced(v, rest, new) if j == head else v for j, v in enumerate(value)]


IN_THE_ENGINE = ("approval", "log", "playbook", "wait")
"""Actions that work on the run itself (timers, gates, child runs, its log): they run
where the run is driven, never on a worker."""
NEEDS_POSTGRES = "runs_on needs PostgreSQL: workers take steps from its job queue"


def runs_on_problems(step: Step, workers: bool) -> Iterator[str]:
    """Why ``step``'s ``runs_on`` cannot be honoured: the database has no job queue
    (``workers`` False: SQLite), or its action works on the run itself."""
    if step.runs_on is None:
        return
    if not workers:
        yield f"{NEEDS_POSTGRES} (BATON_DATABASE_URL is SQLite; remove runs_on or use PostgreSQL)"
    if step.action in IN_THE_ENGINE:
        yield (
            f"runs_on: a {step.action} step works on the run itself and runs where the run "
            "is driven; runs_on is for shell, ssh, http, python and plug-in actions"
        )
