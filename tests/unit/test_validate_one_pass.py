"""``baton validate`` reports every problem it can find in one pass, each with its line:
a structural problem does not hide the semantic ones of the rest of the playbook."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from engine.actions.registry import Registry
from engine.playbooks import validate


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry.from_entry_points()


def problems(tmp_path: Path, registry: Registry, text: str) -> list[tuple[int | None, str]]:
    path = tmp_path / "pb.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    pb, found = validate.load_and_validate(path, registry)
    assert all(p.file == str(path) for p in found)
    if found:
        assert pb is None or all("unknown key" not in p.message for p in found)
    return [(p.line, p.message.split(" (")[0]) for p in found]


QUORUM = "step 'gate': min_approvals is 2 but the gate lists only 1 approver"


def test_a_quorum_is_reported_beside_an_unknown_key_and_a_bad_input(
    tmp_path: Path, registry: Registry
) -> None:
    found = problems(
        tmp_path,
        registry,
        """\
        name: p
        steps:
          - id: gate
            action: approval
            with:
              approvers: [alice]
              min_approvals: 2
              timeout: forever
          - id: x
            action: shell
            with: {argv: [echo, "{{ params.nope }}"]}
            colour: red
        """,
    )
    assert found == [
        (7, QUORUM),
        (
            8,
            "step 'gate': with.timeout: bad duration 'forever': expected a number of seconds "
            "or e.g. 500ms, 30s, 5m, 1h30m, 10 minutes, 2d",
        ),
        (11, "step 'x': with.argv[1]: unknown param 'nope'"),
        (12, "steps[1].colour: unknown key"),
    ]


def test_a_broken_field_leaves_its_step_out_and_checks_the_others(
    tmp_path: Path, registry: Registry
) -> None:
    found = problems(
        tmp_path,
        registry,
        """\
        name: p
        params:
          level: {type: nosuch}
        timeout: soon
        steps:
          - id: gate
            action: approval
            with: {approvers: [alice], min_approvals: 2}
          - id: x
            action: shell
            retry: {attempts: lots}
            with: {argv: [echo, "{{ params.level }}"]}
          - id: y
            action: nosuch
        triggers:
          - alert: {source: nagios}
        """,
    )
    assert [line for line, _ in found] == [3, 4, 8, 11, 14, 16]
    assert found[2] == (8, QUORUM)
    assert found[4] == (14, "step 'y': unknown action 'nosuch'")


@pytest.mark.parametrize(
    "broken",
    [
        pytest.param("    id: 'not an id'\n", id="step-id"),
        pytest.param("    id: a\n    needs: {a: b}\n", id="needs"),
    ],
)
def test_nothing_is_salvaged_when_others_depend_on_the_broken_part(
    tmp_path: Path, registry: Registry, broken: str
) -> None:
    text = (
        "name: p\nsteps:\n  - action: shell\n    with: {argv: [true]}\n"
        + broken
        + "  - id: gate\n    action: approval\n    with: {approvers: [a], min_approvals: 2}\n"
    )
    found = problems(tmp_path, registry, text)
    assert [line for line, _ in found] == [len(text.splitlines()) - 3]


def test_a_duplicate_key_is_reported_and_the_rest_still_checked(
    tmp_path: Path, registry: Registry
) -> None:
    found = problems(
        tmp_path,
        registry,
        """\
        name: p
        steps:
          - id: x
            action: shell
            with:
              argv: [echo, one]
              argv: [echo, "{{ params.nope }}"]
          - id: gate
            action: approval
            with: {approvers: [alice], min_approvals: 2}
        """,
    )
    assert found == [
        (7, "duplicate key 'argv'"),
        (7, "step 'x': with.argv[1]: unknown param 'nope'"),
        (10, QUORUM),
    ]
    path = tmp_path / "pb.yaml"
    valid, _ = validate.validate_paths([path], registry)
    assert valid == {}  # a playbook with a duplicate key never loads


def test_a_bad_step_timeout_leaves_the_rest_of_its_step_checked(
    tmp_path: Path, registry: Registry
) -> None:
    found = problems(
        tmp_path,
        registry,
        """\
        name: p
        params:
          host: {type: string, default: a}
        steps:
          - id: one
            action: log
            timeout: 1h30
            with: {message: "{{ params.hots }}"}
        """,
    )
    lines = {line for line, _ in found}
    assert len(found) == 2 and lines == {7, 8}, found  # the timeout, and the typo beside it
    assert any("hots" in message for _, message in found), found
