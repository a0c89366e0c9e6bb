"""``baton``'s parser (``bot.cli_parsers``): light to import, and the options its
commands share defined once (``bot.cli_options``)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bot import cli_parsers

HEAVY = ("sqlalchemy", "aiohttp", "slack_bolt", "slack_sdk", "pydantic", "storage", "yaml")


def test_the_parser_imports_nothing_heavy() -> None:
    """``baton --help`` answers at once: building the parser loads no database, web or
    Slack library, nor the engine beyond its errors."""
    probe = (
        "import sys, bot.cli; bot.cli_parsers.build_parser(); "
        "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=30
    )
    loaded = set(out.stdout.split())
    assert "bot" in loaded
    assert loaded.isdisjoint(HEAVY), loaded.intersection(HEAVY)


@pytest.mark.parametrize(
    "argv",
    [
        ["console", "--as", "alice"],
        ["run", "greet", "--as", "alice"],
        ["schedule", "--as", "alice", "greet", "in", "5m"],
        ["unschedule", "s1", "--as", "alice"],
        ["retry", "r1", "--as", "alice"],
    ],
    ids=["console", "run", "schedule", "unschedule", "retry"],
)
def test_every_command_that_acts_for_someone_takes_as(argv: list[str]) -> None:
    assert cli_parsers.build_parser().parse_args(argv).user == "alice"


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["runs", "--limit", "0"], "give a number from 1 to 1000"),
        (["runs", "--limit", "x"], "'x' is not a whole number"),
        (["worker", "--labels", "dc1", "--concurrency", "101"], "give a number from 1 to 100"),
    ],
    ids=["limit-too-small", "limit-not-a-number", "concurrency-too-big"],
)
def test_numbers_out_of_bounds_are_refused_saying_why(
    argv: list[str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        cli_parsers.build_parser().parse_args(argv)
    assert said in capsys.readouterr().err


def test_the_runs_status_choices_are_every_run_status() -> None:
    """Written out in the parser (importing engine.runs.state would weigh on `baton --help`),
    and kept equal to it here."""
    from bot.cli_parsers import build_parser
    from engine.runs.state import RunStatus

    runs = build_parser()._subparsers._group_actions[0].choices["runs"]  # type: ignore[union-attr]
    (status,) = [a for a in runs._actions if a.dest == "status"]
    assert tuple(status.choices) == tuple(s.value for s in RunStatus)
