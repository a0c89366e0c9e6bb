"""`baton db` and the schema checks of every command, as whole processes on real files:
an old schema stops every command but `baton serve` (which upgrades, unless
BATON_AUTO_UPGRADE is false) with what to run; a newer one stops them all."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import sqlalchemy as sa

from storage import schema
from storage.db import create_engine
from tests import schema3
from tests.acceptance.serve import Server
from tests.schema3.playbooks import PLAYBOOKS

BATON = str(Path(sys.executable).parent / "baton")
OLDER = "the database schema is older than this Baton (schema 3, from before migrations)"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    folder = tmp_path / "playbooks"
    folder.mkdir()
    for name, text in PLAYBOOKS.items():
        (folder / f"{name}.yaml").write_text(textwrap.dedent(text))
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("BATON_", "SLACK_"))}
    return {
        **inherited,
        "BATON_DATABASE_URL": f"sqlite:///{tmp_path / 'baton.db'}",
        "BATON_PLAYBOOKS": str(folder),
        "BATON_KEY_FILE": str(tmp_path / "key"),
        "BATON_PORT": "0",
        "USER": "carol",
    }


def baton(env: dict[str, str], *args: str, **more: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BATON, *args],
        env={**env, **more},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def old_database(env: dict[str, str]) -> sa.Engine:
    engine = create_engine(env["BATON_DATABASE_URL"])
    schema3.create(engine)
    schema3.fill(engine)
    return engine


def test_db_upgrade_creates_then_changes_nothing_and_current_says_where(
    env: dict[str, str],
) -> None:
    out = baton(env, "db", "current")
    assert (out.returncode, out.stdout) == (
        1,
        f"not created yet: `baton db upgrade` (or any command) creates it at {schema.HEAD}\n",
    )
    out = baton(env, "db", "upgrade")
    assert (out.returncode, out.stdout) == (0, f"created the database at {schema.HEAD} (head)\n")
    out = baton(env, "db", "upgrade")
    assert (out.returncode, out.stdout) == (
        0,
        f"already at head ({schema.HEAD}): nothing to do\n",
    )
    out = baton(env, "db", "current")
    assert (out.returncode, out.stdout) == (0, f"{schema.HEAD} (head)\n")
    out = baton(env, "db")
    assert out.returncode == 2 and "SUBCOMMAND" in out.stderr


def test_an_old_schema_stops_every_command_but_serve_with_what_to_run(
    env: dict[str, str],
) -> None:
    engine = old_database(env)
    out = baton(env, "db", "current")
    assert (out.returncode, out.stdout) == (
        1,
        "made by an older Baton (schema 3, not stamped): run `baton db upgrade`\n",
    )
    for args in (["run", "quick"], ["console"], ["runs"], ["schedules"]):
        out = baton(env, *args)
        assert out.returncode == 1, (args, out.stderr)
        assert out.stderr.strip().endswith(
            f"baton: {OLDER}: run `baton db upgrade` (or start `baton serve`, which upgrades)"
        ), (args, out.stderr)
        assert "Traceback" not in out.stderr
    out = baton(env, "serve", BATON_AUTO_UPGRADE="false")
    assert out.returncode == 1
    assert out.stderr.strip().endswith(
        f"baton: {OLDER}: run `baton db upgrade` (BATON_AUTO_UPGRADE is false, so "
        "`baton serve` does not)"
    ), out.stderr
    assert schema.current(engine).kind == "legacy"  # nobody changed it

    out = baton(env, "db", "upgrade")
    assert (out.returncode, out.stdout) == (
        0,
        f"upgraded the database from schema 3 (made by an older Baton, stamped "
        f"{schema.FIRST}) to {schema.HEAD} (head)\n",
    )
    assert schema3.missing_rows(engine) == []
    out = baton(env, "runs")
    assert out.returncode == 0 and len(out.stdout.splitlines()) == 1 + len(schema3.ROWS["runs"])
    out = baton(env, "run", "quick")
    assert out.returncode == 0, out.stderr
    engine.dispose()


def test_serve_upgrades_an_old_schema_at_start(tmp_path: Path, env: dict[str, str]) -> None:
    engine = old_database(env)
    (tmp_path / "serve").mkdir()
    server = Server(tmp_path / "serve", env["BATON_DATABASE_URL"], PLAYBOOKS)
    try:
        server.start()
        assert schema.current(engine) == schema.State("head", schema.HEAD)
        assert any("upgraded the database from schema 3" in line for line in server.log)
        assert server.api_run(schema3.run_ids()["quick/succeeded"])["status"] == "succeeded"
        assert server.terminate() == 0
    finally:
        server.close()
        engine.dispose()


def test_a_database_newer_than_this_baton_stops_every_command(env: dict[str, str]) -> None:
    assert baton(env, "db", "upgrade").returncode == 0
    engine = create_engine(env["BATON_DATABASE_URL"])
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '0099_from_the_future'")
    engine.dispose()
    newer = (
        "baton: the database is newer than this Baton (at revision 0099_from_the_future, "
        "which this Baton does not know): it was upgraded by a newer Baton; upgrade Baton"
    )
    for args in (["run", "quick"], ["console"], ["runs"], ["schedules"], ["serve"]):
        out = baton(env, *args)
        assert out.returncode == 1, (args, out.stderr)
        assert out.stderr.strip().endswith(newer), (args, out.stderr)
    out = baton(env, "db", "upgrade")
    assert (out.returncode, out.stderr.strip()) == (1, newer)
    out = baton(env, "db", "current")
    assert (out.returncode, out.stderr.strip()) == (2, newer)
