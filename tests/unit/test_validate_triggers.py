"""An alert trigger's literal lists and values are checked by ``baton validate``, each
problem at its line: a list where one regex belongs, a YAML boolean, a bad regex, a
matcher that does not read."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.actions.registry import Registry
from engine.alerts import matchers
from engine.playbooks import model as playbook
from engine.playbooks import validate

HEAD = "name: p\nsteps:\n  - id: a\n    action: log\n    with: {message: hi}\ntriggers:\n"


def problems(tmp_path: Path, trigger: str) -> list[tuple[int | None, str]]:
    path = tmp_path / "p.yaml"
    path.write_text(HEAD + trigger, encoding="utf-8")
    pb, found = validate.load_and_validate(path, Registry.from_entry_points())
    assert pb is None or not found
    return [(p.line, p.message) for p in found]


@pytest.mark.parametrize(
    ("trigger", "line", "message"),
    [
        pytest.param(
            "  - alert:\n      match:\n        alertname: DiskFull\n"
            "        severity: [critical, warning]\n",
            10,
            "triggers[0].alert.match.severity: a match value is one regular expression, not "
            "a list: write 'critical|warning' to match any of them",
            id="list",
        ),
        pytest.param(
            "  - alert:\n      match: {alertname: X, paged: yes}\n",
            8,
            "triggers[0].alert.match.paged: a match value is one regular expression, not the "
            "YAML boolean true: quote the text you mean",
            id="boolean",
        ),
        pytest.param(
            "  - alert:\n      match:\n        sev: '[bad'\n",
            9,
            "triggers[0].alert.match.sev: '[bad' is not a regular expression "
            "(unterminated character set at position 0)",
            id="regex",
        ),
        pytest.param(
            '  - alert:\n      matchers:\n        - env="prod"\n        - {severity: critical}\n',
            10,
            "triggers[0].alert.matchers[1]: a matcher is one string in Alertmanager's syntax, "
            "such as 'env=\"prod\"', not a dict",
            id="matcher-not-a-string",
        ),
        pytest.param(
            '  - alert:\n      matchers: [env="prod", severity critical]\n',
            8,
            "triggers[0].alert.matchers[1]: cannot read matcher 'severity critical': write it "
            'as name="value", name!="value", name=~"regex" or name!~"regex"',
            id="matcher-unreadable",
        ),
    ],
)
def test_a_trigger_value_that_does_not_fit_is_a_problem_at_its_line(
    tmp_path: Path, trigger: str, line: int, message: str
) -> None:
    assert problems(tmp_path, trigger) == [(line, message)]


def test_the_other_problems_are_still_reported_beside_a_bad_trigger(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        "  - alert: {match: {status: [firing, resolved]}}\n  - alert: {params: {nope: x}}\n",
    )
    assert [line for line, _ in found] == [7, 8]
    assert found[1][1].startswith("alert trigger param 'nope' is not a param of this playbook")


def test_numbers_are_their_text_and_regexes_still_match(tmp_path: Path) -> None:
    assert problems(tmp_path, "  - alert: {match: {code: 500, env: '!dev'}}\n") == []
    pb, _ = playbook.load_text(HEAD + "  - alert: {match: {code: 500, sev: 'a|b'}}\n")
    alert = pb.triggers[0].alert
    assert alert is not None
    assert matchers.all_match(alert.all_matchers(), {"code": "500", "sev": "b"})


def test_a_bad_zone_does_not_hide_a_bad_cron_in_the_same_schedule_trigger(
    tmp_path: Path,
) -> None:
    found = problems(
        tmp_path, "  - schedule:\n      cron: '0 99 * * *'\n      timezone: Mars/Olympus\n"
    )
    assert [(line, message.split(":")[0]) for line, message in found] == [
        (8, "triggers[0].schedule.cron"),
        (9, "triggers[0].schedule.timezone"),
    ]
    assert "higher than the maximum value (23)" in found[0][1]
    assert "unknown time zone 'Mars/Olympus'" in found[1][1]
    # each alone is still found, and a good pair is no problem
    assert [line for line, _ in problems(tmp_path, "  - schedule: {cron: '0 9 * * *'}\n")] == []
    alone = problems(tmp_path, "  - schedule:\n      cron: '0 9 * * *'\n      timezone: Nowhere\n")
    assert [line for line, _ in alone] == [9]
