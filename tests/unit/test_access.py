from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from engine.access import config as accessconfig
from engine.access import rules as access
from engine.access.rules import CLI, CONSOLE, AccessRules, Actor, Decision, Place, Rule
from engine.errors import BatonError

CONFIGS = Path(__file__).parents[1] / "fakes" / "config"
OPS = CONFIGS / "ops.yaml"

OPS_ROOM = Place("C0OPS", "ops")
RANDOM = Place("C0RND", "random")


@pytest.fixture(scope="module")
def ops() -> AccessRules:
    return accessconfig.load(OPS)


def parse(text: str) -> AccessRules:
    return accessconfig.parse(textwrap.dedent(text), "c.yaml")


def slack(token: str) -> str:
    """What the Slack renderer does with a token: ids become mentions, the rest stays."""
    forms = {"U": "<@{}>", "W": "<@{}>", "S": "<!subteam^{}>", "C": "<#{}>"}
    if token[:1] in forms and token.isupper():
        return forms[token[0]].format(token)
    return token


# --- open rules ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "rules",
    [
        pytest.param(accessconfig.load(None), id="unset"),
        pytest.param(accessconfig.load(CONFIGS / "open.yaml"), id="file-without-rules"),
        pytest.param(accessconfig.parse(""), id="empty-file"),
    ],
)
def test_open_rules_allow_everything(rules: AccessRules) -> None:
    assert rules.open
    assert rules.summary() == "no access rules: every member may run every playbook"
    for action in access.ACTIONS:
        decision = access.authorize(rules, Actor("U0EVE"), action, "drop-db", RANDOM)
        assert decision == Decision(True, action, "drop-db", None)
        assert decision.refusal() == f"anyone may {action} `drop-db`"


def test_summary_names_the_file_the_rules_and_the_groups(ops: AccessRules) -> None:
    assert not ops.open
    assert ops.summary() == f"access rules from {OPS}: 5 rules, default deny, groups: sre, dba"


def test_summary_without_groups() -> None:
    rules = parse("access: {default: deny}")
    assert not rules.open
    assert rules.summary() == "access rules from c.yaml: 0 rules, default deny"


# --- who, where, what ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("actor", "action", "playbook", "place", "allowed", "rule"),
    [
        pytest.param(
            Actor("U7", usergroups=frozenset({"@DBA-Team"})),
            "run", "restart-db", OPS_ROOM, True, 0,
            id="group-through-usergroup-handle",
        ),
        pytest.param(
            Actor("U7", usergroups=frozenset({"S0DBA"})),
            "run", "restart-db", CONSOLE, True, 0,
            id="group-through-usergroup-id-from-console",
        ),
        pytest.param(
            Actor("U01AAA"), "run", "restart-db", OPS_ROOM, False, 0,
            id="first-match-wins-narrow-rule-refuses",
        ),
        pytest.param(
            Actor("U7", usergroups=frozenset({"S0DBA"})),
            "run", "restart-db", RANDOM, False, 0,
            id="admitted-actor-from-wrong-channel",
        ),
        pytest.param(
            Actor("U7", usergroups=frozenset({"S0DBA"})),
            "run", "restart-db", Place("C0CON", "console"), False, 0,
            id="slack-channel-named-console-is-not-the-console",
        ),
        pytest.param(
            Actor("U7", usergroups=frozenset({"S0DBA"})),
            "run", "restart-db", CLI, False, 0,
            id="cli-is-not-the-console",
        ),
        pytest.param(Actor("U0BOB"), "run", "restart-web", RANDOM, True, 1, id="user-id"),
        pytest.param(Actor("u0bob"), "run", "restart-web", RANDOM, False, 1, id="user-id-exact"),
        pytest.param(
            Actor("U5", usergroups=frozenset({"@sre-ONCALL"})),
            "run", "restart-web", RANDOM, True, 1,
            id="usergroup-handle-any-case",
        ),
        pytest.param(
            Actor("U5", usergroups=frozenset({"@night-shift"})),
            "run", "restart-web", RANDOM, True, 1,
            id="usergroup-handle-written-without-at",
        ),
        pytest.param(
            Actor("U5", usergroups=frozenset({"S0123"})),
            "run", "restart-web", RANDOM, True, 1,
            id="usergroup-id",
        ),
        pytest.param(
            Actor("U5", usergroups=frozenset({"s0123"})),
            "run", "restart-web", RANDOM, False, 1,
            id="usergroup-id-exact",
        ),
        pytest.param(
            Actor("alice", via="cli"), "retry", "restart-web", CLI, True, 1,
            id="baton-group-by-login-name",
        ),
        pytest.param(Actor("U0EVE"), "cancel", "restart-web", RANDOM, False, 1, id="stranger"),
        pytest.param(
            Actor("U01AAA"), "schedule", "deploy-api", RANDOM, True, 2,
            id="actions-filter-admits",
        ),
        pytest.param(
            Actor("U0EVE"), "unschedule", "deploy-api", RANDOM, False, 2,
            id="actions-filter-refuses",
        ),
        pytest.param(
            Actor("U01AAA"), "run", "deploy-api", RANDOM, False, None,
            id="action-not-in-rule-falls-to-default",
        ),
        pytest.param(Actor("U0EVE"), "run", "hello", OPS_ROOM, True, 3, id="anyone-from-channel"),
        pytest.param(
            Actor("U0EVE"), "run", "hello", Place(channel_name="#OPS"), True, 3,
            id="channel-by-name-any-case",
        ),
        pytest.param(
            Actor("U0EVE"), "run", "report-daily", Place("C0OPS"), True, 3,
            id="channel-by-id-second-glob",
        ),
        pytest.param(Actor("U0EVE"), "run", "hello", CLI, True, 3, id="cli-front-end"),
        pytest.param(Actor("U0EVE"), "run", "hello", CONSOLE, False, 3, id="console-not-listed"),
        pytest.param(Actor("U0EVE"), "run", "Hello", OPS_ROOM, False, None, id="globs-case"),
        pytest.param(Actor("U01AAA"), "run", "drop-db", CONSOLE, False, 4, id="nobody"),
        pytest.param(Actor("U01AAA"), "run", "misc", CONSOLE, False, None, id="default-deny"),
        pytest.param(Actor("U0EVE"), "status", "drop-db", RANDOM, True, None, id="read-only"),
        pytest.param(Actor("U0EVE"), "describe", "misc", RANDOM, True, None, id="read-only-2"),
    ],
)  # fmt: skip
def test_authorize(
    ops: AccessRules,
    actor: Actor,
    action: str,
    playbook: str,
    place: Place,
    allowed: bool,
    rule: int | None,
) -> None:
    decision = access.authorize(ops, actor, action, playbook, place)
    assert (decision.allowed, decision.action, decision.playbook) == (allowed, action, playbook)
    assert decision.rule == (None if rule is None else ops.rules[rule])


@pytest.mark.parametrize(
    ("actor", "groups"),
    [
        pytest.param(Actor("alice"), {"sre"}, id="login-name"),
        pytest.param(Actor("U7", usergroups=frozenset({"@dba-TEAM"})), {"dba"}, id="handle"),
        pytest.param(Actor("U01AAA", usergroups=frozenset({"S0DBA"})), {"sre", "dba"}, id="both"),
        pytest.param(Actor("dba-team"), set(), id="handle-is-not-a-login"),
    ],
)
def test_groups_of(ops: AccessRules, actor: Actor, groups: set[str]) -> None:
    assert ops.groups_of(actor) == groups


@pytest.mark.parametrize(
    ("text", "allowed", "default"),
    [
        pytest.param("default: allow\n  rules: [{playbooks: x, users: []}]", True, "allow",
                     id="default-allow"),
        pytest.param("default: deny\n  rules: [{playbooks: x}]", False, "deny",
                     id="default-deny"),
        pytest.param("rules: [{playbooks: x}]", False, "deny", id="implicit-deny-with-rules"),
        pytest.param("default: deny", False, "deny", id="deny-without-rules"),
        pytest.param("rules:", True, "allow", id="implicit-allow-without-rules"),
    ],
)  # fmt: skip
def test_default(text: str, allowed: bool, default: str) -> None:
    rules = parse(f"access:\n  {text}\n")
    assert rules.default == default
    decision = access.authorize(rules, Actor("U1"), "run", "other", CONSOLE)
    assert (decision.allowed, decision.rule) == (allowed, None)


def test_empty_channel_list_refuses_everywhere() -> None:
    rules = parse("access:\n  rules: [{playbooks: x, channels: []}]\n")
    decision = access.authorize(rules, Actor("U1"), "run", "x", CONSOLE)
    assert not decision.allowed
    assert decision.refusal() == "nobody may run `x` (access rule at c.yaml:2)"


# --- refusals --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("actor", "action", "playbook", "place", "text", "slack_text"),
    [
        pytest.param(
            Actor("U01AAA"), "run", "restart-db", RANDOM,
            "`restart-db` can be run by group dba, from #ops or the console",
            "`restart-db` can be run by group dba, from #ops or the console",
            id="group-and-channels",
        ),
        pytest.param(
            Actor("U0EVE"), "run", "restart-web", RANDOM,
            "`restart-web` can be run by @SRE-Oncall, S0123, @Night-Shift, U0BOB or group sre",
            "`restart-web` can be run by @SRE-Oncall, <!subteam^S0123>, @Night-Shift, <@U0BOB>"
            " or group sre",
            id="principals",
        ),
        pytest.param(
            Actor("U0EVE"), "schedule", "deploy-api", RANDOM,
            "`deploy-api` can be scheduled by group sre",
            "`deploy-api` can be scheduled by group sre",
            id="schedule",
        ),
        pytest.param(
            Actor("U0EVE"), "run", "hello", CONSOLE,
            "`hello` can be run by anyone, but only from #ops, C0OPS or the CLI",
            "`hello` can be run by anyone, but only from #ops, <#C0OPS> or the CLI",
            id="anyone-but-only-from",
        ),
        pytest.param(
            Actor("U0EVE"), "cancel", "drop-db", CONSOLE,
            f"nobody may cancel `drop-db` (access rule at {OPS}:20)",
            f"nobody may cancel `drop-db` (access rule at {OPS}:20)",
            id="nobody-by-rule",
        ),
        pytest.param(
            Actor("U0EVE"), "run", "misc", CONSOLE,
            "nobody may run `misc` (no access rule allows it; default deny)",
            "nobody may run `misc` (no access rule allows it; default deny)",
            id="nobody-by-default",
        ),
    ],
)  # fmt: skip
def test_refusal(
    ops: AccessRules,
    actor: Actor,
    action: str,
    playbook: str,
    place: Place,
    text: str,
    slack_text: str,
) -> None:
    decision = access.authorize(ops, actor, action, playbook, place)
    assert not decision.allowed
    assert decision.refusal() == text
    assert decision.refusal(slack) == slack_text


@pytest.mark.parametrize(
    ("action", "verb"),
    [
        ("run", "run"),
        ("schedule", "scheduled"),
        ("unschedule", "unscheduled"),
        ("retry", "retried"),
        ("cancel", "cancelled"),
    ],
)
def test_refusal_verb_follows_the_action(action: str, verb: str) -> None:
    decision = Decision(False, action, "x", Rule(("x",), users=("W0ANN",)))
    assert decision.refusal(slack) == f"`x` can be {verb} by <@W0ANN>"


def test_refusal_shows_bare_names_as_handles_and_channels() -> None:
    rule = Rule(("x",), usergroups=("oncall",), channels=("ops", "Console", "C0OPS"))
    decision = Decision(False, "run", "x", rule)
    assert decision.refusal() == "`x` can be run by @oncall, from #ops, the console or C0OPS"


# --- the file --------------------------------------------------------------------------


def test_rules_keep_where_they_are_written(ops: AccessRules) -> None:
    assert [r.origin for r in ops.rules] == [f"{OPS}:{n}" for n in (8, 11, 15, 18, 20)]
    assert ops.rules[3].playbooks == ("report-*", "hello")
    assert ops.rules[2].actions == ("schedule", "unschedule")
    assert ops.rules[0].actions == access.ACTIONS


def test_reserved_sections_are_accepted() -> None:
    rules = parse("approvals: {quorum: 2}\nalerts: []\nslack: {}\n")
    assert rules.open


def test_docstring_example_is_valid_and_means_what_it_says() -> None:
    assert access.__doc__ is not None
    block = access.__doc__.split("::\n\n", 1)[1].split("\n\n", 1)[0]
    rules = accessconfig.parse(textwrap.dedent(block), "README")
    assert rules.summary() == "access rules from README: 2 rules, default deny, groups: sre, dba"
    oncall, eve = Actor("U9", usergroups=frozenset({"@sre-oncall"})), Actor("U0EVE")
    asks = [
        (oncall, "schedule", "restart-db", CLI),
        (eve, "run", "restart-db", CLI),
        (eve, "retry", "restart-db", CLI),
        (eve, "run", "hello", RANDOM),
    ]
    decisions = [access.authorize(rules, *ask) for ask in asks]
    restart, anything = rules.rules
    assert [(d.allowed, d.rule) for d in decisions] == [
        (True, restart),
        (False, restart),
        (True, anything),
        (True, anything),
    ]


def test_missing_file() -> None:
    with pytest.raises(access.ConfigError) as exc:
        accessconfig.load(CONFIGS / "nope.yaml")
    assert str(exc.value) == f"BATON_CONFIG points at {CONFIGS / 'nope.yaml'}, which does not exist"


def test_errors_in_a_file_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "baton.yaml"
    path.write_text("access:\n  rules:\n    - playbooks: x\n      actions: [rum]\n")
    with pytest.raises(access.ConfigError) as exc:
        accessconfig.load(path)
    assert str(exc.value).startswith(f"{path}:4: access.rules[0].actions[0]: unknown action")
    assert isinstance(exc.value, BatonError)


@pytest.mark.parametrize(
    ("text", "problems"),
    [
        pytest.param(
            "acess:\n  default: deny\n",
            [(1, "acess: unknown section; did you mean `access`?")],
            id="section-typo",
        ),
        pytest.param(
            "groups: {}\nplugins: [x]\n",
            [(2, "plugins: unknown section. Known sections: groups, access, users, console_as, "
                 "inventory "
                 "(and approvals, alerts, slack, read elsewhere: `alerts.chat` holds the chat "
                 "alert rules)")],
            id="unknown-section",
        ),
        pytest.param(
            "access:\n  defaults: deny\n",
            [(2, "access.defaults: unknown key; did you mean `default`?")],
            id="access-key-typo",
        ),
        pytest.param(
            "access:\n  rules:\n    - playbooks: x\n      user: [U1]\n",
            [(4, "access.rules[0].user: unknown key; did you mean `users`?")],
            id="rule-key-typo",
        ),
        pytest.param(
            "access:\n  rules:\n    - playbooks: x\n    - users: [U1]\n",
            [(4, "access.rules[1]: missing `playbooks`: every rule needs a glob")],
            id="rule-without-playbooks",
        ),
        pytest.param(
            "access:\n  rules:\n    - playbooks: []\n",
            [(3, "access.rules[0].playbooks: `playbooks` is empty: give a glob")],
            id="empty-playbooks",
        ),
        pytest.param(
            "access:\n  rules:\n    - playbooks: x\n      actions:\n        - run\n        - rn\n",
            [(6, "access.rules[0].actions[1]: unknown action 'rn'; did you mean run? actions are "
                 "run, schedule, unschedule, retry, cancel")],
            id="unknown-action",
        ),
        pytest.param(
            "groups:\n  sre: [U1]\naccess:\n  rules:\n    - playbooks: x\n      groups: [sr]\n",
            [(6, "access.rules[0].groups[0]: group 'sr' is not defined; did you mean 'sre'?")],
            id="undefined-group",
        ),
        pytest.param(
            "access:\n  rules:\n    - playbooks: x\n      groups: [dba]\n",
            [(4, "access.rules[0].groups[0]: group 'dba' is not defined; define it under "
                 "`groups:`")],
            id="undefined-group-no-groups",
        ),
        pytest.param(
            "access:\n  default: maybe\n",
            [(2, "access.default: Input should be 'allow' or 'deny', not 'maybe'")],
            id="default-not-allow-or-deny",
        ),
        pytest.param(
            "access:\n  rules:\n    - playbooks: x\n      users:\n",
            [(4, "access.rules[0].users: `users` is empty: list members, write [] to admit "
                 "nobody, or leave the key out")],
            id="null-users",
        ),
        pytest.param(
            "access:\n  rules:\n    - playbooks: x\n      users: [U1, '@sre']\n",
            [(4, "access.rules[0].users[1]: '@sre' is a Slack user group; list it under "
                 "`usergroups`")],
            id="usergroup-under-users",
        ),
        pytest.param(
            "access:\n  rules:\n    - playbooks: [x, 3]\n",
            [(3, "access.rules[0].playbooks[1]: Input should be a valid string")],
            id="not-a-string",
        ),
        pytest.param(
            "access:\n  rules:\n    - x\n",
            [(3, "access.rules[0]: a rule is a mapping: `playbooks` and optional users")],
            id="rule-not-a-mapping",
        ),
        pytest.param(
            "access:\n  rules: {playbooks: x}\n",
            [(2, "access.rules: `rules` is a list of rules, each starting `- playbooks: GLOB`")],
            id="rules-not-a-list",
        ),
        pytest.param(
            "groups: [sre]\n",
            [(1, "groups: `groups` maps each group name to a list of members")],
            id="groups-not-a-mapping",
        ),
        pytest.param(
            "- access\n",
            [(1, "the config file must be a mapping with `groups` and `access`")],
            id="not-a-mapping",
        ),
        pytest.param(
            "groups:\n  sre: [U1\naccess: {}\n",
            [(3, "YAML syntax error")],
            id="yaml-syntax",
        ),
        pytest.param(
            "groups: {sre: [U1]}\naccess:\n  rules:\n    - playbooks: x\n      groups: [dba]\n"
            "      users: ['@x']\n    - playbooks: y\n      actions: [nuke]\n",
            [
                (8, "access.rules[1].actions[0]: unknown action 'nuke'"),
            ],
            id="name-checks-wait-for-the-schema",
        ),
        pytest.param(
            "groups: {sre: [U1]}\naccess:\n  rules:\n    - playbooks: x\n      users: ['@x']\n"
            "      groups: [dba]\n    - playbooks: y\n      groups: [ops]\n",
            [
                (5, "access.rules[0].users[0]: '@x' is a Slack user group"),
                (6, "access.rules[0].groups[0]: group 'dba' is not defined"),
                (8, "access.rules[1].groups[0]: group 'ops' is not defined"),
            ],
            id="every-problem-in-line-order",
        ),
    ],
)  # fmt: skip
def test_config_errors(text: str, problems: list[tuple[int, str]]) -> None:
    with pytest.raises(access.ConfigError) as exc:
        accessconfig.parse(text, "c.yaml")
    found = [(p.line, p.message) for p in exc.value.problems]
    assert len(found) == len(problems), found
    for (line, message), (want_line, want) in zip(found, problems, strict=True):
        assert line == want_line, message
        assert message.startswith(want), message
    assert str(exc.value).splitlines() == [f"c.yaml:{line}: {msg}" for line, msg in found]


def test_config_error_lines_point_into_flow_lists() -> None:
    text = "access:\n  rules:\n    - {playbooks: x,\n       actions: [run,\n                 rn]}\n"
    with pytest.raises(access.ConfigError) as exc:
        accessconfig.parse(text, "c.yaml")
    assert re.match(r"c\.yaml:5: access\.rules\[0\]\.actions\[1\]: unknown action", str(exc.value))
