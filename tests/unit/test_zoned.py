"""A schedule's times in its own zone, named, on the command line as in chat."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from bot import cli_schedules
from bot.zoned import zoned

NINE_PARIS = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)  # 09:00 in Paris (CET)


@pytest.mark.parametrize(
    ("at", "zone", "shown"),
    [
        pytest.param(NINE_PARIS, "Europe/Paris", "2026-12-07 09:00:00 Europe/Paris", id="cet"),
        pytest.param(
            datetime(2026, 7, 6, 7, 0, tzinfo=UTC),
            "Europe/Paris",
            "2026-07-06 09:00:00 Europe/Paris",
            id="summer-time",
        ),
        pytest.param(NINE_PARIS.replace(tzinfo=None), "UTC", "2026-12-07 08:00:00 UTC", id="naive"),
        pytest.param(NINE_PARIS, "Nowhere/Else", "2026-12-07 08:00:00 UTC", id="unknown-zone"),
        pytest.param(None, "Europe/Paris", "", id="none"),
    ],
)
def test_zoned(at: datetime | None, zone: str, shown: str) -> None:
    assert zoned(at, zone) == shown


def test_baton_schedules_lists_times_in_each_schedules_zone(
    capsys: pytest.CaptureFixture[str],
) -> None:
    view = SimpleNamespace(
        id="s1",
        playbook="backup",
        when="0 9 * * *",
        timezone="Europe/Paris",
        next_fire_at=NINE_PARIS,
        last_fire_at=datetime(2026, 12, 6, 8, 0, tzinfo=UTC),
        last_run_id="r1",
        created_by="alice",
        missed=0,
    )
    cli_schedules._print_schedules([view])
    _, row = capsys.readouterr().out.splitlines()
    assert "2026-12-07 09:00:00 Europe/Paris  2026-12-06 09:00:00 Europe/Paris  r1" in row
