"""``baton db prune``, ``baton db stats`` and ``baton db backup`` as whole processes, on a
database holding runs in every status (tests/schema3's rows, upgraded), on SQLite and
PostgreSQL."""

from __future__ import annotations

import os
import sqlite3
import stat
import textwrap
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from storage import prune
from storage import tables as t
from storage.db import create_engine
from tests import schema3
from tests.integration.test_cli_db import baton
from tests.schema3.playbooks import PLAYBOOKS

FINISHED = ("succeeded", "failed", "cancelled", "timed_out")
BY_RUN = ("steps", "attempts", "run_logs", "approvals", "run_commands", "chat_posts", "alert_runs")


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """As in test_cli_db: schema 3's playbooks, a SQLite file, $USER carol."""
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
        "USER": "carol",
    }


@pytest.fixture
def filled(env: dict[str, str], db_url: str) -> Iterator[sa.Engine]:
    """A database at head holding schema 3's rows: runs in every status, dated
    2026-01-01 (months before the time these tests run)."""
    env["BATON_DATABASE_URL"] = db_url
    engine = create_engine(db_url)
    schema3.create(engine)
    schema3.fill(engine)
    out = baton(env, "db", "upgrade")
    assert out.returncode == 0, out.stderr
    yield engine
    engine.dispose()


def owned_rows(engine: sa.Engine, run_ids: list[str]) -> dict[str, int]:
    """Rows of each table that belong to ``run_ids``."""
    with engine.connect() as conn:
        out = {}
        for name in ("runs", *BY_RUN):
            table = t.metadata.tables[name]
            key = table.c.id if name == "runs" else table.c.run_id
            query = sa.select(sa.func.count()).where(key.in_(run_ids))
            out[name] = int(conn.execute(query).scalar() or 0)
        gates = sa.select(t.approvals.c.id).where(t.approvals.c.run_id.in_(run_ids))
        query = sa.select(sa.func.count()).where(t.decisions.c.approval_id.in_(gates))
        out["decisions"] = int(conn.execute(query).scalar() or 0)
        return out


def digests(engine: sa.Engine, run_ids: Iterable[str]) -> set[str]:
    """The definitions the runs ``run_ids`` began with."""
    query = sa.select(t.runs.c.definition_digest).where(t.runs.c.id.in_(list(run_ids)))
    with engine.connect() as conn:
        return set(conn.execute(query).scalars())


def statuses(engine: sa.Engine) -> dict[str, str]:
    with engine.connect() as conn:
        return {r.id: r.status for r in conn.execute(sa.select(t.runs.c.id, t.runs.c.status))}


def table(stdout: str) -> dict[str, int]:
    """The per-table lines of prune's output."""
    lines = stdout.splitlines()
    end = next(i for i, line in enumerate(lines) if line.startswith("total "))
    return {
        name: int(n.replace(",", "")) for name, n in (line.split() for line in lines[1 : end + 1])
    }


def test_prune_deletes_finished_runs_with_their_rows_spares_active_ones_and_keeps_audit(
    env: dict[str, str], filled: sa.Engine
) -> None:
    before = statuses(filled)
    finished = sorted(r for r, s in before.items() if s in FINISHED)
    assert len(finished) == 4 and len(before) == 9
    expected = dict.fromkeys(prune.TABLES, 0)
    if filled.dialect.name == "postgresql":
        expected["jobs"] = 0  # the job queue's
    expected.update(owned_rows(filled, finished))
    expected.update(alerts=1, slack_events=1)  # the alert of a finished run, the event id
    expected["definitions"] = len(
        digests(filled, finished) - digests(filled, set(before) - set(finished))
    )
    expected["total"] = sum(expected.values())
    assert expected["steps"] > 0 and expected["attempts"] > 0 and expected["chat_posts"] == 1

    dry = baton(env, "db", "prune", "--older-than", "30d", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.splitlines()[0].split() == ["table", "would", "delete"]
    assert table(dry.stdout) == expected
    assert dry.stdout.rstrip().endswith("dry run: nothing was deleted")
    assert statuses(filled) == before

    out = baton(env, "db", "prune", "--older-than", "30d")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0].split() == ["table", "deleted"]
    assert table(out.stdout) == expected
    assert "(BATON_AUDIT_RETENTION=400d)" in out.stdout
    assert statuses(filled) == {r: s for r, s in before.items() if s not in FINISHED}
    assert owned_rows(filled, finished) == dict.fromkeys(["runs", *BY_RUN, "decisions"], 0)
    with filled.connect() as conn:
        audit = list(conn.execute(sa.select(t.audit).order_by(t.audit.c.id)))
    assert len(audit) == len(schema3.ROWS["audit"]) + 1  # kept, and the prune noted
    note = audit[-1]
    assert (note.actor, note.action, note.target) == ("carol", "db.prune", "older than 30d")
    assert note.detail["deleted"]["runs"] == 4

    again = baton(env, "db", "prune", "--older-than", "30d")
    assert table(again.stdout)["total"] == 0
    # the spared runs still work: the server takes them on
    out = baton(env, "runs")
    assert out.returncode == 0 and len(out.stdout.splitlines()) == 1 + 5


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--older-than", "90"], "age '90' needs a unit: e.g. 90d for days"),
        (["--older-than", "soon"], "bad age 'soon': expected e.g. 90d, 12w or 36h"),
        (["--older-than", "0d"], "age '0d' must be more than nothing"),
        ([], "the following arguments are required: --older-than"),
    ],
    ids=["no-unit", "not-an-age", "zero", "missing"],
)
def test_prune_refuses_an_age_it_cannot_read(
    env: dict[str, str], args: list[str], message: str
) -> None:
    out = baton(env, "db", "prune", *args)
    assert out.returncode == 2
    assert message in out.stderr and "Traceback" not in out.stderr
    assert not Path(env["BATON_DATABASE_URL"].removeprefix("sqlite:///")).exists()


def test_a_bad_audit_retention_is_named(env: dict[str, str]) -> None:
    out = baton(env, "db", "prune", "--older-than", "90d", BATON_AUDIT_RETENTION="2h")
    assert out.returncode == 2
    assert out.stderr.startswith("baton: bad setting BATON_AUDIT_RETENTION='2h': keep the audit")


def test_stats_shows_rows_and_bytes_per_table_and_the_oldest_run(
    env: dict[str, str], filled: sa.Engine
) -> None:
    out = baton(env, "db", "stats")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["table", "rows", "bytes"]
    rows = {
        line.split()[0]: line.split()[1:]
        for line in lines[1:]
        if line.split()[0] in t.metadata.tables
    }
    assert rows["runs"][0] == "9" and rows["steps"][0] == str(len(schema3.ROWS["steps"]))
    assert rows["runs"][2] in ("kB", "MB") and float(rows["runs"][1]) > 0
    assert set(rows) >= set(prune.TABLES)
    assert lines[-1].startswith("oldest run: 2026-01-01 00:00 UTC (") and lines[-1].endswith(
        "d old)"
    )


def test_backup_copies_sqlite_and_names_pg_dump_for_postgresql(
    env: dict[str, str], filled: sa.Engine, tmp_path: Path
) -> None:
    copy = tmp_path / "copy.db"
    out = baton(env, "db", "backup", str(copy))
    if filled.dialect.name == "postgresql":
        assert out.returncode == 2 and not copy.exists()
        assert "for PostgreSQL use pg_dump" in out.stderr
        command = (
            f"pg_dump --format=custom --file={copy} 'postgresql://postgres@127.0.0.1:5432/test"
        )
        assert command in out.stderr
        return
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("backed up ") and f"(9 runs) to {copy} in " in out.stdout
    with sqlite3.connect(copy) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("delete",)  # one file
        assert conn.execute("SELECT count(*) FROM runs").fetchone() == (9,)


def test_backup_refuses_to_overwrite_the_database_itself(env: dict[str, str]) -> None:
    path = env["BATON_DATABASE_URL"].removeprefix("sqlite:///")
    assert baton(env, "db", "upgrade").returncode == 0
    out = baton(env, "db", "backup", path)
    assert out.returncode == 1
    assert out.stderr == f"baton: {path} is the database itself: give another file\n"
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


@pytest.mark.parametrize("end", ["-wal", "-shm", "-journal"])
def test_backup_refuses_the_live_databases_own_files(env: dict[str, str], end: str) -> None:
    path = env["BATON_DATABASE_URL"].removeprefix("sqlite:///")
    assert baton(env, "db", "upgrade").returncode == 0
    out = baton(env, "db", "backup", path + end)
    assert out.returncode == 1 and "a file of the live database" in out.stderr, out.stderr
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_backup_refuses_a_file_that_is_not_a_regular_one(
    env: dict[str, str], tmp_path: Path
) -> None:
    assert baton(env, "db", "upgrade").returncode == 0
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    out = baton(env, "db", "backup", str(fifo))
    assert out.returncode == 1 and "is not a regular file" in out.stderr, out.stderr
    assert stat.S_ISFIFO(fifo.stat().st_mode)  # left as it was


def test_the_pg_dump_hint_never_shows_the_password() -> None:
    from storage import backup as backuplib

    engine = sa.create_engine("postgresql+psycopg://baton:hunter2secret@db.example:5432/baton")
    hint = backuplib.pg_dump_hint(engine, Path("/tmp/b.dump"))
    assert "hunter2secret" not in hint and "'postgresql://baton@db.example:5432/baton'" in hint


@pytest.mark.parametrize(
    "args",
    [["prune", "--older-than", "90d"], ["backup", "copy.db"], ["stats"]],
    ids=["prune", "backup", "stats"],
)
def test_a_missing_sqlite_file_is_named_not_made(env: dict[str, str], args: list[str]) -> None:
    path = env["BATON_DATABASE_URL"].removeprefix("sqlite:///")
    out = baton(env, "db", *args)
    assert (out.returncode, out.stdout) == (1, "")
    assert out.stderr == f"baton: there is no database at {path}: check BATON_DATABASE_URL\n"
    assert not Path(path).exists()


def test_backup_replaces_an_earlier_copy_but_never_another_file(tmp_path: Path) -> None:
    from storage import backup as backuplib

    engine = sa.create_engine(f"sqlite:///{tmp_path / 'baton.db'}")
    t.metadata.create_all(engine)
    try:
        notes = tmp_path / "notes.txt"
        notes.write_text("the on-call handover\n")
        with pytest.raises(backuplib.BackupRefused, match="exists and is not a SQLite database"):
            backuplib.backup(engine, notes)
        assert notes.read_text() == "the on-call handover\n"
        assert not list(tmp_path.glob(".*.partial"))

        earlier = tmp_path / "earlier.db"
        assert backuplib.backup(engine, earlier).runs == 0
        with sqlite3.connect(earlier) as conn:
            conn.execute("CREATE TABLE stale (x)")
        conn.close()
        backuplib.backup(engine, earlier)  # an earlier copy is replaced
        with sqlite3.connect(earlier) as conn:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        conn.close()
        assert "runs" in tables and "stale" not in tables
        empty = tmp_path / "empty.db"
        empty.touch()
        assert backuplib.backup(engine, empty).bytes > 0
    finally:
        engine.dispose()
