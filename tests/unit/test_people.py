"""People in BATON_CONFIG: their tokens, Slack ids, groups and roles, and who may use --as."""

from __future__ import annotations

import hashlib
import textwrap

import pytest

from engine.access import config as accessconfig
from engine.access import people
from engine.access import rules as access
from engine.access.rules import CONSOLE, AccessRules, Actor, ConfigError, Place

OPS_ROOM = Place("C0OPS", "ops")


def sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def parse(text: str) -> AccessRules:
    return accessconfig.parse(textwrap.dedent(text), "baton.yaml")


TEAM = f"""
groups:
  dba: [dave]
users:
  alice:
    token_sha256: {sha("alice-token")}
    slack: U01AAA
    groups: [sre]
  vera:
    token_sha256: {sha("vera-token").upper()}
    role: viewer
  ada:
    role: admin
access:
  rules:
    - playbooks: "restart-*"
      groups: [sre]
    - playbooks: "db-*"
      users: [alice]
      channels: ["#ops"]
"""


@pytest.fixture(scope="module")
def team() -> AccessRules:
    return parse(TEAM)


def test_a_person_is_found_by_name_slack_id_and_token(team: AccessRules) -> None:
    people = team.people
    alice = people.find("alice")
    assert alice is not None and people.find("U01AAA") == alice
    assert alice.role == "operator" and alice.groups == {"sre"}
    assert alice.origin == "baton.yaml:5"
    assert people.by_token("alice-token") == alice
    assert people.by_token("vera-token") == people.find("vera")  # the hash's case is free
    assert people.by_token("alice-token ") is None and people.by_token("") is None
    assert people.find("ada") is not None and people.by_token("ada") is None  # no token
    assert people.same("alice", "U01AAA") and people.same("U01AAA", "alice")
    assert not people.same("alice", "vera")
    assert team.people.tokens


@pytest.mark.parametrize(
    ("actor", "action", "playbook", "place", "allowed"),
    [
        pytest.param(Actor("alice"), "run", "restart-api", CONSOLE, True, id="groups-by-name"),
        pytest.param(
            Actor("U01AAA", via="slack"), "run", "restart-api", OPS_ROOM, True, id="groups-by-slack"
        ),
        pytest.param(
            Actor("U01AAA", via="slack"), "run", "db-vacuum", OPS_ROOM, True, id="user-by-slack"
        ),
        pytest.param(Actor("dave"), "run", "restart-api", CONSOLE, False, id="not-in-group"),
        pytest.param(Actor("vera"), "run", "other", CONSOLE, False, id="viewer-runs-nothing"),
        pytest.param(Actor("vera"), "approve", "", CONSOLE, False, id="viewer-decides-nothing"),
        pytest.param(Actor("vera"), "status", "", CONSOLE, True, id="viewer-reads"),
        pytest.param(Actor("ada"), "run", "db-vacuum", CONSOLE, True, id="admin-passes-rules"),
        pytest.param(Actor("ada"), "cancel", "restart-api", CONSOLE, True, id="admin-cancels"),
    ],
)
def test_roles_groups_and_slack_ids_decide(
    team: AccessRules, actor: Actor, action: str, playbook: str, place: Place, allowed: bool
) -> None:
    assert access.authorize(team, actor, action, playbook, place).allowed is allowed


def test_a_viewer_is_told_why(team: AccessRules) -> None:
    decision = access.authorize(team, Actor("vera"), "run", "restart-api", CONSOLE)
    assert decision.refusal() == (
        "vera is a viewer (users.vera.role at baton.yaml:9) and may only read, not run: "
        "an operator or admin role lets them act"
    )


def test_a_persons_groups_and_ids_count_for_approvers(team: AccessRules) -> None:
    slack_alice = Actor("U01AAA", via="slack")
    assert access.may_approve(team, slack_alice, {"groups": ["sre"]})
    assert access.may_approve(team, slack_alice, {"users": ["alice"]})
    assert access.may_approve(team, Actor("alice"), {"users": ["U01AAA"]})
    assert not access.may_approve(team, Actor("dave"), {"groups": ["sre"]})
    assert access.may_approve(team, Actor("dave"), {"groups": ["dba"]})
    assert not access.may_approve(team, Actor("vera"), {})  # a viewer, even at an open gate


@pytest.mark.parametrize(
    ("config", "me", "other", "allowed"),
    [
        pytest.param("", "carol", "alice", True, id="no-config"),
        pytest.param("groups: {sre: [carol]}\n", "carol", "alice", True, id="no-rules-no-people"),
        pytest.param("access: {rules: [{playbooks: '*'}]}\n", "carol", "alice", False, id="rules"),
        pytest.param("users: {alice: {}}\n", "carol", "alice", False, id="people"),
        pytest.param(
            "access: {rules: [{playbooks: '*'}]}\n", "carol", "carol", True, id="as-oneself"
        ),
        pytest.param(
            "console_as: [carol]\naccess: {rules: [{playbooks: '*'}]}\n",
            "carol",
            "alice",
            True,
            id="named",
        ),
        pytest.param(
            "console_as: [admins]\ngroups: {admins: [carol]}\n"
            "access: {rules: [{playbooks: '*'}]}\n",
            "carol",
            "alice",
            True,
            id="by-group",
        ),
        pytest.param(
            "console_as: [admins]\nusers: {carol: {groups: [admins]}}\n",
            "carol",
            "alice",
            True,
            id="by-a-persons-group",
        ),
        pytest.param("users: {carol: {role: admin}}\n", "carol", "alice", True, id="admin"),
        pytest.param(
            "console_as: [admins]\ngroups: {admins: [dave]}\naccess: {rules: [{playbooks: '*'}]}\n",
            "carol",
            "alice",
            False,
            id="not-in-the-group",
        ),
    ],
)
def test_who_may_use_as(config: str, me: str, other: str, allowed: bool) -> None:
    rules = accessconfig.parse(config, "baton.yaml")
    why = people.may_act_as(rules, me, other)
    assert (why is None) is allowed, why
    if not allowed:
        assert why is not None
        assert f"--as {other} is refused: {me} may not act as someone else" in why
        assert "`console_as:`" in why and "BATON_CONFIG (baton.yaml)" in why


def test_a_group_given_only_to_people_may_be_named_by_rules() -> None:
    rules = parse(
        """
        users: {alice: {groups: [oncall]}}
        access: {rules: [{playbooks: "*", groups: [oncall]}]}
        """
    )
    assert access.authorize(rules, Actor("alice"), "run", "x", CONSOLE).allowed
    assert not access.authorize(rules, Actor("bob"), "run", "x", CONSOLE).allowed


HASH = sha("t")


@pytest.mark.parametrize(
    ("text", "problems"),
    [
        pytest.param(
            "users:\n  alice:\n    token_sha256: hunter2\n",
            [(3, "users.alice.token_sha256: not a SHA-256 hash (64 hex digits)")],
            id="not-a-hash",
        ),
        pytest.param(
            f"users:\n  alice:\n    token_sha256: {HASH}0\n",
            [(3, "users.alice.token_sha256: not a SHA-256 hash")],
            id="too-long",
        ),
        pytest.param(
            "users:\n  alice:\n    role: boss\n",
            [(3, "users.alice.role: unknown role 'boss'; roles are viewer, operator, admin")],
            id="unknown-role",
        ),
        pytest.param(
            "users:\n  alice:\n    role: admn\n",
            [(3, "users.alice.role: unknown role 'admn'; did you mean admin?")],
            id="role-typo",
        ),
        pytest.param(
            f"users:\n  alice: {{token_sha256: {HASH}}}\n  bob: {{token_sha256: {HASH.upper()}}}\n",
            [(3, "users.bob.token_sha256: the same token as alice: give each person their own")],
            id="duplicate-token",
        ),
        pytest.param(
            "users:\n  alice: {slack: U01}\n  bob: {slack: U01}\n",
            [(3, "users.bob.slack: U01 is alice's Slack id already")],
            id="duplicate-slack-id",
        ),
        pytest.param(
            "users:\n  alice: {}\n  carl: {slack: alice}\n",
            [(3, "users.carl.slack: 'alice' is not a Slack user id (such as U01AAA)")],
            id="slack-not-an-id",
        ),
        pytest.param(
            "users:\n  '': {role: admin}\n",
            [(2, "users.: a person needs a name")],
            id="no-name",
        ),
        pytest.param(
            "users:\n  alice:\n    tokn_sha256: x\n",
            [(3, "users.alice.tokn_sha256: unknown key; did you mean `token_sha256`?")],
            id="key-typo",
        ),
        pytest.param(
            "users:\n  alice: operator\n",
            [(2, "users.alice: a person is a mapping of token_sha256, slack, groups, role")],
            id="not-a-mapping",
        ),
        pytest.param(
            "users: [alice]\n",
            [(1, "users: `users` maps each person's name to {token_sha256, slack, groups, role}")],
            id="a-list",
        ),
        pytest.param(
            "console_as: {admins: yes}\n",
            [(1, "console_as: a list of group or user names who may use --as")],
            id="console-as-not-a-list",
        ),
        pytest.param(
            "users:\n  alice: {role: boss}\naccess:\n  rules:\n    - playbooks: x\n"
            "      groups: [nope]\n",
            [
                (2, "users.alice.role: unknown role 'boss'"),
                (6, "access.rules[0].groups[0]: group 'nope' is not defined"),
            ],
            id="with-rule-problems",
        ),
    ],
)
def test_bad_people_stop_baton_at_start_with_the_line_and_the_fix(
    text: str, problems: list[tuple[int, str]]
) -> None:
    with pytest.raises(ConfigError) as exc:
        accessconfig.parse(text, "baton.yaml")
    found = [(p.line, p.message) for p in exc.value.problems]
    assert [line for line, _ in found] == [line for line, _ in problems], found
    for (_, message), (_, want) in zip(found, problems, strict=True):
        assert message.startswith(want), message
    assert all(p.file == "baton.yaml" for p in exc.value.problems)


def test_a_bad_hash_says_how_to_make_one() -> None:
    with pytest.raises(ConfigError) as exc:
        accessconfig.parse("users:\n  alice: {token_sha256: my-token}\n", "baton.yaml")
    assert str(exc.value) == (
        "baton.yaml:2: users.alice.token_sha256: not a SHA-256 hash (64 hex digits): put the "
        "hash of the person's token here, never the token itself; make it with "
        '`printf %s "$TOKEN" | sha256sum`'
    )
