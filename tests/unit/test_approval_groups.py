"""An approval's ``groups`` are checked whether or not ``BATON_CONFIG`` is set: without
it there are no Baton groups, so a gate naming only a group can never be approved, and
validation (``baton validate``, every load of the playbooks) says so at its line."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.access import config as accessconfig
from engine.actions.registry import Registry
from engine.playbooks import model as playbook
from engine.playbooks import validate
from engine.playbooks.catalog import Catalog

NOBODY = "nobody could ever approve it"


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry.from_entry_points()


def gate(with_: str) -> str:
    """A playbook of one approval step; ``with_`` is its ``with:`` block (line 6 on)."""
    return "name: p\nsteps:\n  - id: gate\n    action: approval\n    with:\n      " + with_


def check(text: str, registry: Registry, groups: dict[str, frozenset[str]]) -> list[str]:
    pb, lines = playbook.load_text(text, "p.yaml")
    return [
        f"{p.line}: {p.message}" for p in validate.validate(pb, lines, "p.yaml", registry, groups)
    ]


def test_without_config_a_gate_naming_only_a_group_is_refused(registry: Registry) -> None:
    found = check(gate("approvers: {groups: [leads]}"), registry, {})
    assert found == [
        "6: step 'gate': approvers group 'leads' is not a Baton group (there are none; "
        "define it in the file BATON_CONFIG names, under `groups:` or in a person's "
        f"`groups`); the gate names nobody else: {NOBODY}"
    ]


def test_a_gate_with_someone_else_to_approve_only_names_the_unknown_group(
    registry: Registry,
) -> None:
    found = check(gate("approvers: {groups: [leads], users: [U1]}"), registry, {})
    assert len(found) == 1 and "'leads' is not a Baton group" in found[0]
    assert NOBODY not in found[0]


def test_an_escalation_naming_only_an_unknown_group_is_refused_at_its_line(
    registry: Registry,
) -> None:
    text = gate(
        "approvers: [U1]\n      timeout: 1h\n      on_timeout: escalate\n"
        "      escalate: {approvers: {groups: [directors]}, timeout: 30m}"
    )
    found = check(text, registry, {"sre": frozenset({"U1"})})
    assert found == [
        "9: step 'gate': approvers group 'directors' is not a Baton group (BATON_CONFIG's "
        f"groups: sre); its escalation names nobody else: {NOBODY}"
    ]


def test_groups_people_name_for_themselves_are_groups_an_approval_may_name(
    registry: Registry,
) -> None:
    rules = accessconfig.parse(
        "groups:\n  sre: [alice]\nusers:\n  bob: {groups: [leads]}\n  carol: {groups: [leads]}\n"
    )
    groups = dict(rules.approver_groups())
    assert groups == {"sre": frozenset({"alice"}), "leads": frozenset({"bob", "carol"})}
    assert (
        check(gate("approvers: {groups: [leads]}\n      min_approvals: 2"), registry, groups) == []
    )
    three = check(gate("approvers: {groups: [leads]}\n      min_approvals: 3"), registry, groups)
    assert len(three) == 1 and "lists only 2 approvers (bob, carol)" in three[0]


def test_a_catalog_loaded_with_the_groups_holds_no_gate_nobody_may_approve(
    registry: Registry, tmp_path: Path
) -> None:
    (tmp_path / "p.yaml").write_text(gate("approvers: {groups: [leads]}"))
    catalog = Catalog.load(tmp_path, registry, groups={})
    assert "p" not in catalog and "p" in catalog.invalid
    assert NOBODY in catalog.problems[0].message
    (tmp_path / "p.yaml").write_text(gate("approvers: {groups: [leads], users: [U1]}"))
    again = catalog.reload()  # a reload checks with the same groups
    assert "p" not in again and "'leads' is not a Baton group" in again.problems[0].message
    fixed = Catalog.load(tmp_path, registry, groups={"leads": frozenset({"U2"})})
    assert "p" in fixed
