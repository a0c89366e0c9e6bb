"""``baton validate`` checks every action input it can before a run, with the real actions:
durations in every form, literal values against each action's inputs, the values a
``{{ params.X }}`` input can take, an approval's quorum, and the fields templates read."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from engine.actions.registry import Registry
from engine.alerts import rows as alertrows
from engine.alerts.model import Alert
from engine.playbooks import durations, validate
from engine.playbooks import model as playbook
from engine.schedules import service as schedules


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry.from_entry_points()


def check(
    text: str, registry: Registry, groups: dict[str, frozenset[str]] | None = None
) -> list[tuple[int | None, str]]:
    pb, lines = playbook.load_text(textwrap.dedent(text), "pb.yaml")
    if groups is None:
        problems = validate.validate(pb, lines, "pb.yaml", registry)
    else:
        problems = validate.validate(pb, lines, "pb.yaml", registry, groups)
    return [(p.line, p.message) for p in problems]


def steps(body: str, params: str = "{}") -> str:
    """A playbook whose steps are ``body``; its first step's ``- id`` is on line 5."""
    head = f"name: demo\nparams: {params}\ntimeout: 2h\nsteps:\n"
    return head + textwrap.indent(textwrap.dedent(body), "  ")


# --- one duration form everywhere --------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        pytest.param("30s", 30, id="s"),
        pytest.param("5m", 300, id="m"),
        pytest.param("1h30m", 5400, id="h-m"),
        pytest.param("1h 30m", 5400, id="spaced"),
        pytest.param("10 minutes", 600, id="words"),
        pytest.param("1 hour 30 minutes", 5400, id="words-two-parts"),
        pytest.param("2 days", 172800, id="days"),
        pytest.param("1w", 604800, id="week"),
        pytest.param("500ms", 0.5, id="ms"),
        pytest.param("90 sec", 90, id="sec"),
        pytest.param("3 hrs", 10800, id="hrs"),
        pytest.param("1.5h", 5400, id="fraction"),
        pytest.param("45", 45, id="text-number"),
        pytest.param(45, 45, id="int"),
        pytest.param(2.5, 2.5, id="float"),
    ],
)
def test_duration_forms(text: str | float, seconds: float) -> None:
    assert durations.parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize(
    "text",
    ["ten minutes", "10 mins later", "1h30", "-5s", "", "5 fortnights", True, float("nan"), [5]],
    ids=["words", "trailing", "bare-tail", "negative", "empty", "unit", "bool", "nan", "list"],
)
def test_bad_durations_name_the_forms(text: Any) -> None:
    with pytest.raises(ValueError, match=r"bad duration .*(e\.g\. 500ms, 30s|negative)"):
        durations.parse_duration(text)


def test_schedule_in_takes_the_same_forms() -> None:
    now = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    assert schedules.parse_when("in 10 minutes", now) == now + timedelta(minutes=10)
    assert schedules.parse_when("in 1h 30m", now) == now + timedelta(minutes=90)


def test_every_duration_key_takes_every_form(registry: Registry) -> None:
    """Step, retry, playbook, wait, http and approval durations, and an alert trigger's
    dedup and rate, all read ``1 hour 30 minutes`` alike."""
    long = "1 hour 30 minutes"
    text = f"""\
        name: forms
        timeout: {long}
        triggers:
          - alert: {{match: {{alertname: X}}, dedup: {long}, rate: "5/{long}"}}
        steps:
          - id: pause
            action: wait
            timeout: {long}
            retry: {{attempts: 2, delay: {long}, max_delay: {long}}}
            with: {{for: {long}}}
          - id: call
            action: http
            with: {{url: "http://127.0.0.1:1/", timeout: {long}}}
          - id: gate
            action: approval
            with:
              approvers: [bob]
              timeout: {long}
              remind: {long}
              on_timeout: escalate
              escalate: {{approvers: [carol], timeout: {long}}}
        """
    assert check(text, registry) == []
    pb, _ = playbook.load_text(textwrap.dedent(text))
    hour_and_half = timedelta(minutes=90)
    assert pb.timeout == pb.steps[0].timeout == pb.steps[0].retry.delay == hour_and_half
    assert pb.triggers[0].alert is not None and pb.triggers[0].alert.dedup == hour_and_half
    assert playbook.parse_rate(f"5/{long}") == (5, 5400.0)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(
            "- id: pause\n  action: wait\n  with: {for: soon}\n",
            (7, "step 'pause': with.for: bad duration 'soon': expected a number of seconds"),
            id="wait-for",
        ),
        pytest.param(
            "- id: call\n  action: http\n"
            "  with: {url: 'http://x/{{ params.p }}', timeout: 5 secs x}\n",
            (7, "step 'call': with.timeout: bad duration '5 secs x'"),
            id="http-timeout-beside-a-template",
        ),
        pytest.param(
            "- id: call\n  action: http\n  with: {url: 'http://x', timeout: 0}\n",
            (7, "step 'call': with.timeout: a timeout of 0 would end at once"),
            id="http-zero-timeout",
        ),
        pytest.param(
            "- id: gate\n  action: approval\n  with: {approvers: [bob], remind: later}\n",
            (7, "step 'gate': with.remind: bad duration 'later'"),
            id="approval-remind",
        ),
        pytest.param(
            "- id: gate\n  action: approval\n"
            "  with: {approvers: [bob], timeout: 1h, on_timeout: escalate,\n"
            "         escalate: {approvers: [carol], timeout: a while}}\n",
            (8, "step 'gate': with.escalate.timeout: bad duration 'a while'"),
            id="escalation-timeout",
        ),
        pytest.param(
            "- id: pause\n  action: wait\n  timeout: 0\n  with: {for: 1m}\n",
            (7, "steps[0].timeout: a timeout of 0 would end at once"),
            id="step-zero-timeout",
        ),
    ],
)
def test_a_bad_duration_is_refused_before_the_run(
    body: str, expected: tuple[int, str], registry: Registry
) -> None:
    text = steps(body, params="{p: {default: x}}")
    try:
        found = check(text, registry)
    except playbook.PlaybookInvalid as exc:  # a structural key: refused when loading
        found = [(p.line, p.message) for p in exc.problems]
    assert len(found) == 1, found
    (line, message) = found[0]
    assert line == expected[0] and message.startswith(expected[1]), found


def test_the_http_timeout_takes_a_duration(registry: Registry) -> None:
    """``timeout: 5s`` was refused as "not a valid number"."""
    body = "- id: call\n  action: http\n  with: {url: 'http://x', timeout: 5s}\n"
    assert check(steps(body), registry) == []


# --- templated inputs: what can be checked is ----------------------------------------


@pytest.mark.parametrize(
    ("param", "expected"),
    [
        pytest.param("{type: string, default: 10 minutes}", [], id="good-default"),
        pytest.param("{type: int, default: 30}", [], id="seconds"),
        pytest.param("{type: string, required: true}", [], id="no-value-known"),
        pytest.param(
            "{type: string, default: soon}",
            [
                (
                    7,
                    "step 'pause': with.for is param 'delay', whose value 'soon' (its default) "
                    "does not fit: bad duration 'soon'",
                )
            ],
            id="bad-default",
        ),
        pytest.param(
            "{type: choice, choices: [1m, 1 hour, later]}",
            [
                (
                    7,
                    "step 'pause': with.for is param 'delay', whose value 'later' (a choice) "
                    "does not fit: bad duration 'later'",
                )
            ],
            id="bad-choice",
        ),
    ],
)
def test_a_param_input_is_checked_with_the_values_the_playbook_gives(
    param: str, expected: list[tuple[int, str]], registry: Registry
) -> None:
    body = "- id: pause\n  action: wait\n  with: {for: '{{ params.delay }}'}\n"
    found = check(steps(body, params=f"{{delay: {param}}}"), registry)
    assert [line for line, _ in found] == [line for line, _ in expected], found
    for (_, got), (_, want) in zip(found, expected, strict=True):
        assert got.startswith(want), got


# --- quorum -----------------------------------------------------------------------------


def gate(approvers: str, extra: str = "") -> str:
    return steps(f"- id: gate\n  action: approval\n  with: {{approvers: {approvers}{extra}}}\n")


@pytest.mark.parametrize(
    ("approvers", "extra", "groups", "expected"),
    [
        pytest.param(
            "[U1]",
            ", min_approvals: 2",
            None,
            "step 'gate': min_approvals is 2 but the gate lists only 1 approver (U1): list more "
            "approvers or lower min_approvals",
            id="two-of-one",
        ),
        pytest.param(
            "{users: [U1, U1, U2]}",
            ", min_approvals: 3",
            None,
            "step 'gate': min_approvals is 3 but the gate lists only 2 approvers (U1, U2)",
            id="a-repeated-user-counts-once",
        ),
        pytest.param(
            "{users: [U1], groups: [sre]}",
            ", min_approvals: 4",
            {"sre": frozenset({"U1", "U2", "U3"})},
            "step 'gate': min_approvals is 4 but the gate lists only 3 approvers (U1, U2, U3)",
            id="group-members-count",
        ),
        pytest.param(
            "[U1]",
            ", min_approvals: 3, timeout: 1h, on_timeout: escalate, "
            "escalate: {approvers: [U2], timeout: 1h}",
            None,
            "step 'gate': min_approvals is 3 but the gate lists only 2 approvers (U1, U2)",
            id="escalation-counts",
        ),
        pytest.param(
            "{groups: [sr]}",
            "",
            {"sre": frozenset({"U1"})},
            "step 'gate': approvers group 'sr' is not a Baton group (did you mean "
            "'sre'?) (BATON_CONFIG's groups: sre); the gate names nobody else: nobody could "
            "ever approve it",
            id="unknown-group",
        ),
    ],
)
def test_a_quorum_nobody_can_reach_is_refused(
    approvers: str,
    extra: str,
    groups: dict[str, frozenset[str]] | None,
    expected: str,
    registry: Registry,
) -> None:
    found = check(gate(approvers, extra), registry, groups)
    assert [line for line, _ in found] == [7], found
    assert found[0][1].startswith(expected), found


@pytest.mark.parametrize(
    ("approvers", "extra", "groups"),
    [
        pytest.param("[U1, U2]", ", min_approvals: 2", None, id="enough-users"),
        pytest.param("{usergroups: ['@sre']}", ", min_approvals: 5", None, id="slack-usergroup"),
        pytest.param("{groups: [sre]}", ", min_approvals: 5", None, id="groups-unknown"),
        pytest.param(
            "{groups: [sre]}", ", min_approvals: 5", {"sre": frozenset({"@oncall"})}, id="nested"
        ),
        pytest.param("{}", ", min_approvals: 3", None, id="anyone"),
        pytest.param("['{{ params.who }}']", ", min_approvals: 2", None, id="templated"),
    ],
)
def test_a_quorum_that_cannot_be_counted_is_left_to_the_gate(
    approvers: str, extra: str, groups: dict[str, frozenset[str]] | None, registry: Registry
) -> None:
    text = gate(approvers, extra).replace("params: {}", "params: {who: {default: U1}}")
    assert check(text, registry, groups) == []


# --- the names templates read -------------------------------------------------------------


NAMES = """\
name: names
params:
  host: {default: web1}
triggers:
  - alert:
      match: {alertname: DiskFull}
      params: {host: "{{ alert.lables.instance }}"}
steps:
  - id: check
    action: shell
    with: {argv: [echo, "{{ params.host }}"]}
  - id: report
    action: log
    needs: check
    with: {message: "{{ steps.check.stdout }} {{ steps.check['output'].rc }}"}
finally:
  - id: tell
    action: log
    with: {message: "{{ failure.stepp }} {{ failure.error }} {{ steps['check'].state }}"}
"""


def test_templates_read_fields_that_exist(registry: Registry) -> None:
    assert check(NAMES, registry) == [
        (
            7,
            "alert trigger param host: alert has no 'lables' (did you mean 'labels'?) (it has "
            "source, fingerprint, status, name, summary, labels, annotations, severity, "
            "starts_at, links)",
        ),
        (
            15,
            "step 'report': with.message: steps.check has no 'stdout' (a step has output, "
            "status and error): for what the step returned write steps.check.output.stdout, "
            "or did you mean steps.check.status?",
        ),
        (
            19,
            "finally step 'tell': with.message: steps.check has no 'state' (a step has output, "
            "status and error): for what the step returned write steps.check.output.state, "
            "or did you mean steps.check.status?",
        ),
        (
            19,
            "finally step 'tell': with.message: failure has no 'stepp' (did you mean 'step'?) "
            "(it has step, error)",
        ),
    ]


def test_alert_fields_are_what_alert_templates_see() -> None:
    alert = Alert(source="generic", fingerprint="f", status="firing")
    assert tuple(alertrows.alert_context(alert)) == validate.ALERT_FIELDS
