"""The chat grammar: one line -> one typed command, or a message saying what was expected."""

from __future__ import annotations

import pytest

from bot import commands as c
from bot.grammar import shown_as_text
from engine.errors import BatonError, ParamError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("help", c.Help()),
        ("help run", c.Help("run")),
        ("HELP Run", c.Help("run")),
        ("playbooks", c.ListPlaybooks()),
        ("describe deploy", c.Describe("deploy")),
        ("run deploy", c.Run("deploy")),
        ("run deploy env=prod n=3", c.Run("deploy", {"env": "prod", "n": "3"})),
        ('run deploy msg="hello world"', c.Run("deploy", {"msg": "hello world"})),
        ("run deploy 'msg=it is'", c.Run("deploy", {"msg": "it is"})),
        ("run deploy --dry-run env=prod", c.Run("deploy", {"env": "prod"}, dry_run=True)),
        ("run deploy channel=#ops", c.Run("deploy", {"channel": "#ops"})),
        ("run deploy msg=\u201chi there\u201d", c.Run("deploy", {"msg": "hi there"})),
        ("status", c.Status()),
        ("status abc123", c.Status("abc123")),
        ("cancel abc123", c.Cancel("abc123")),
        ("retry abc123", c.Retry("abc123")),
        ("approve g1", c.Decide("g1", "approve")),
        ("approve g1 looks good", c.Decide("g1", "approve", "looks good")),
        ('reject g1 "not now"', c.Decide("g1", "reject", "not now")),
        ("reject g1 don't, it's Friday", c.Decide("g1", "reject", "don't, it's Friday")),
        ('schedule backup "0 2 * * *"', c.Schedule("backup", cron="0 2 * * *")),
        (
            'schedule backup "0 2 * * *" keep=7',
            c.Schedule("backup", cron="0 2 * * *", params={"keep": "7"}),
        ),
        ("schedule backup in 30m", c.Schedule("backup", when="in 30m")),
        (
            "schedule backup in 1 hour 30 minutes keep=7",
            c.Schedule("backup", when="in 1 hour 30 minutes", params={"keep": "7"}),
        ),
        (
            "schedule backup at 18:00 keep=1",
            c.Schedule("backup", when="at 18:00", params={"keep": "1"}),
        ),
        ("schedules", c.ListSchedules()),
        ("unschedule s1", c.Unschedule("s1")),
        ("history", c.History()),
        ("history deploy", c.History("deploy")),
        ("  run   deploy  ", c.Run("deploy")),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_parses(text: str, expected: c.Command) -> None:
    assert c.parse(text) == expected


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("", "help"),
        ("runn deploy", "Did you mean `run`"),
        ("frobnicate", "`help` lists the commands"),
        ("run", "usage: run PLAYBOOK"),
        ("run deploy --force", "unknown option '--force'"),
        ('run deploy msg="unclosed', "close the quote"),
        ("describe", "usage: describe PLAYBOOK"),
        ("cancel", "usage: cancel RUN"),
        ("cancel a b", "usage: cancel RUN"),
        ("status a b", "usage: status [RUN]"),
        ("approve", "usage: approve ID"),
        ("reject", "usage: reject ID"),
        ("schedule backup", "say which playbook and when"),
        ("schedule backup in", "say when after 'in'"),
        ("schedule backup keep=1", "say when before the params"),
        ("playbooks extra", "usage: playbooks"),
    ],
    ids=lambda v: v or "empty",
)
def test_bad_input_says_what_was_expected(text: str, needle: str) -> None:
    with pytest.raises(c.CommandError) as err:
        c.parse(text)
    assert needle in str(err.value)


def test_a_word_that_is_not_a_param_names_the_expected_form() -> None:
    with pytest.raises(ParamError) as err:
        c.parse("run deploy prod")
    assert "'prod' is not a parameter (expected key=value" in str(err.value)
    assert isinstance(err.value, BatonError)


def test_later_assignment_wins_and_value_keeps_equals() -> None:
    assert c.parse("run deploy a=1 a=x=y").params == {"a": "x=y"}  # type: ignore[union-attr]


def test_reply_text_joins_lines() -> None:
    assert c.Reply(["a", "b"]).text == "a\nb"


def test_retry_from_the_failed_step() -> None:
    assert c.parse("retry abc") == c.Retry("abc")
    assert c.parse("retry abc --from-failed") == c.Retry("abc", from_failed=True)
    assert c.parse("retry --from-failed abc") == c.Retry("abc", from_failed=True)
    with pytest.raises(c.CommandError, match="retry knows one option, --from-failed"):
        c.parse("retry abc --from")
    with pytest.raises(c.CommandError, match=r"usage: retry RUN \[--from-failed\]"):
        c.parse("retry --from-failed")
    # the audit trail's text of each (which retry it was)
    assert shown_as_text(c.parse("retry abc")) == "retry abc"
    assert shown_as_text(c.parse("retry --from-failed abc")) == "retry abc --from-failed"
