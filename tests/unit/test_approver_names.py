"""Who a gate names to decide: a list in the API's answers (``approvers``), joined for
people to read in chat, the console and the dashboard."""

from __future__ import annotations

from engine.views.queries import approver_names, describe_approvers

SPEC = {
    "approvers": {
        "users": ["U1", "alice"],
        "usergroups": ["@sre-oncall", "S0DBA", "platform"],
        "groups": ["leads"],
    }
}


def test_the_names_are_a_list_each_kind_written_as_people_write_it() -> None:
    assert approver_names(SPEC, "alice") == [
        "U1",
        "@sre-oncall",  # a handle keeps its one @
        "S0DBA",  # a user group id is not a handle
        "@platform",  # a handle written without its @
        "group leads",  # a Baton group, not a user named leads
    ]
    assert describe_approvers(SPEC, "alice") == "U1, @sre-oncall, S0DBA, @platform, group leads"


def test_the_requester_is_left_out_unless_the_gate_allows_self_approval() -> None:
    assert "alice" in approver_names({**SPEC, "allow_self_approval": True}, "alice")
    only_her = {"approvers": {"users": ["alice"]}}
    assert approver_names(only_her, "alice") == []
    assert describe_approvers(only_her, "alice") == "anyone but alice"
    assert describe_approvers({**only_her, "allow_self_approval": True}, "bob") == "alice"
    assert describe_approvers({"allow_self_approval": True}, "bob") == "anyone"
