"""Speed that does not age: Baton beside a database holding 200,000 finished runs of 10
steps, against an empty one. ``python -m bench history [--runs N] [--postgres URL]``; not
in the default suite (filling the database takes a minute or two).

The big database is one real 10-step run copied by the database itself (``INSERT ...
SELECT`` over a table of numbers), spread over three months, 20 playbooks, 50 people,
three triggers, one run in ten failed; its bytes per run are those of real runs. Figures:
``baton serve`` start to the first 200 from ``/healthz``; ``GET /api/runs`` (first page,
a filtered page, a page after a cursor) as a client sees it; a 10-step run end to end
in-process; bytes per run by table and the columns they go to; the plans of the hot
statements (with ``--postgres URL``, also on PostgreSQL filled the same way).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import secrets
import signal
import statistics
import subprocess
import tempfile
import time
import urllib.request
from datetime import timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench.common import Timer, chain, figure, heading, new_engine, write_playbooks
from bench.process import BATON, baton_env, free_port, wait_healthy
from engine.runs import inbox, leases
from engine.runs.requests import RunRequest
from engine.views import queries
from storage import plans
from storage import tables as t
from storage.db import create_engine
from storage.store import Store

RUNS = 200_000
CHUNK = 20_000
PLAYBOOKS = {"ten": chain("ten", "log", 10)}
SAMPLE = 200  # real runs measured for their bytes
STARTS = 5
REQUESTS = 30
E2E = 40
FILTER = "playbook=pb-10&status=failed"


# --- filling -------------------------------------------------------------------------


def _sql(dialect: str) -> dict[str, str]:
    """What differs between SQLite and PostgreSQL in the copy."""
    if dialect == "sqlite":
        return {
            "id": "'h' || printf('%011x', n.i)",
            "at": "strftime('%Y-%m-%d %H:%M:%S', :base, '-' || (n.i * 37) || ' seconds')"
            " || '.000000'",
        }
    return {
        "id": "'h' || lpad(to_hex(n.i), 11, '0')",
        "at": "CAST(:base AS timestamptz) - n.i * interval '37 seconds'",
    }


def _copy(table: sa.Table, swap: dict[str, str], where: str) -> str:
    """The INSERT ... SELECT that copies ``table``'s template rows once per number,
    with the columns of ``swap`` computed (ids other than the runs' are the database's)."""
    cols = [c.name for c in table.c if c.name != "id" or table.name == "runs"]
    select = [swap.get(c, f'tpl."{c}"') for c in cols]
    quoted = ", ".join(f'"{c}"' for c in cols)
    return (
        f"INSERT INTO {table.name} ({quoted}) SELECT {', '.join(select)} "
        f"FROM fill_n AS n, {table.name} AS tpl WHERE {where}"
    )


def fill(url: str, template: str, runs: int) -> dict[str, int]:
    """Copy the run ``template`` (and every row that hangs off it) ``runs`` times, as
    finished runs; returns the rows added per table."""
    engine = create_engine(url)
    dialect = engine.dialect.name
    sql = _sql(dialect)
    at = sql["at"]
    run_swap = {
        "id": sql["id"],
        "playbook": "'pb-' || (n.i % 20)",
        "status": "CASE WHEN n.i % 10 = 0 THEN 'failed' ELSE 'succeeded' END",
        "trigger": "CASE n.i % 3 WHEN 0 THEN 'api' WHEN 1 THEN 'schedule' ELSE 'chat' END",
        "requested_by": "'user-' || (n.i % 50)",
        "created_at": at,
        "queued_at": at,
        "started_at": at,
        "finished_at": at,
        "owner": "NULL",
        "lease_expires_at": "NULL",
    }
    children = [tb for tb in t.metadata.sorted_tables if "run_id" in tb.c]
    statements = [_copy(t.runs, run_swap, "tpl.id = :tpl")]
    statements += [
        _copy(tb, {"run_id": sql["id"]}, "tpl.run_id = :tpl")
        for tb in children
        if tb.name not in ("alert_runs", "alerts", "chat_posts")
    ]
    statements.append(_copy(t.audit, {"target": sql["id"]}, "tpl.target = :tpl"))
    base = t.now().strftime("%Y-%m-%d %H:%M:%S") if dialect == "sqlite" else t.now().isoformat()
    before = _counts(engine)
    try:
        with engine.connect() as conn:
            with conn.begin():
                conn.exec_driver_sql("CREATE TEMPORARY TABLE fill_n (i INTEGER PRIMARY KEY)")
            for start in range(1, runs + 1, CHUNK):
                with conn.begin():
                    conn.exec_driver_sql("DELETE FROM fill_n")
                    numbers = [{"i": i} for i in range(start, min(start + CHUNK, runs + 1))]
                    conn.execute(sa.text("INSERT INTO fill_n (i) VALUES (:i)"), numbers)
                    for statement in statements:
                        conn.execute(sa.text(statement), {"tpl": template, "base": base})
            if dialect == "postgresql":
                conn.commit()
                conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("ANALYZE")
        after = _counts(engine)
    finally:
        engine.dispose()
    return {name: after[name] - before[name] for name in after if after[name] != before[name]}


def _counts(engine: sa.Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            tb.name: int(conn.execute(sa.select(sa.func.count()).select_from(tb)).scalar() or 0)
            for tb in t.metadata.sorted_tables
        }


# --- measuring -----------------------------------------------------------------------


async def ten_step_runs(root: Path, url: str, count: int) -> tuple[list[float], str]:
    """``count`` sequential 10-step runs in-process (after 5 to warm up): their times in
    ms, and the id of the last."""
    store = Store(url)
    await store.open()
    engine = new_engine(root, store)
    await engine.start()
    times, run_id = [], ""
    try:
        for i in range(count + 5):
            with Timer() as tm:
                run_id = await engine.start_run(
                    RunRequest(playbook="ten", params={}, requested_by="bench", trigger="cli")
                )
                status = await engine.wait_for(run_id)
            if status.value != "succeeded":
                raise RuntimeError(f"run {run_id} ended {status}")
            if i >= 5:
                times.append(tm.elapsed * 1000)
    finally:
        await engine.stop(drain=5)
        await store.close()
    return times, run_id


def _get(url: str) -> tuple[float, str | None]:
    t0 = time.perf_counter()
    with urllib.request.urlopen(url, timeout=10) as resp:
        resp.read()
        link = resp.headers.get("Link")
    return (time.perf_counter() - t0) * 1000, link


def serve_once(root: Path, db: Path, api: bool) -> dict[str, float]:
    """``baton serve`` on ``db`` once: start to the first 200 from /healthz, and with
    ``api`` the GET /api/runs medians (of REQUESTS)."""
    env = baton_env(root)
    env["BATON_DATABASE_URL"] = f"sqlite:///{db}"
    port = free_port()
    env["BATON_PORT"] = str(port)
    log = (root / "serve.log").open("wb")
    proc = subprocess.Popen([str(BATON), "serve"], env=env, cwd=root, stdout=log, stderr=log)
    try:
        out = {"start": wait_healthy(proc, port)}
        if api:
            out.update(_api_times(f"http://127.0.0.1:{port}"))
        return out
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        log.close()


def _api_times(base: str) -> dict[str, float]:
    def median(path: str) -> tuple[float, str | None]:
        _get(base + path)  # warm
        samples = [_get(base + path) for _ in range(REQUESTS)]
        return statistics.median(s[0] for s in samples), samples[-1][1]

    first, link = median("/api/runs?limit=50")
    filtered, _ = median(f"/api/runs?limit=50&{FILTER}")
    out = {"first": first, "filtered": filtered}
    match = re.match(r"<([^>]+)>", link or "")
    if match:
        out["next"], _ = median(match[1])
    return out


def bytes_per_run(db: Path, runs: int) -> tuple[dict[str, float], dict[str, float]]:
    """Bytes per run in ``db`` (which holds ``runs`` runs and little else): per table with
    its indexes, and per column (the biggest)."""
    engine = create_engine(f"sqlite:///{db}")
    try:
        with engine.connect() as conn:
            owners = dict(conn.exec_driver_sql("SELECT name, tbl_name FROM sqlite_schema").all())
            tables: dict[str, float] = {}
            for name, size in conn.exec_driver_sql(
                "SELECT name, sum(pgsize) FROM dbstat GROUP BY name"
            ):
                table = owners.get(name, name)
                key = table if name == table else f"{table} (indexes)"
                tables[key] = tables.get(key, 0) + size / runs
            columns: dict[str, float] = {}
            for tb in t.metadata.sorted_tables:
                for col in tb.c:
                    total = conn.exec_driver_sql(
                        f'SELECT sum(length(CAST("{col.name}" AS BLOB))) FROM {tb.name}'
                    ).scalar()
                    if total:
                        columns[f"{tb.name}.{col.name}"] = total / runs
    finally:
        engine.dispose()
    return tables, columns


def hot_statements(owner: str) -> dict[str, tuple[Any, dict[str, Any]]]:
    lease = leases.Leases(owner=owner, kind="serve", lease=15.0, renew=5.0)
    now = t.now()
    return {
        "runs, first page": (queries.runs_query(limit=51), {}),
        "runs, playbook + status": (
            queries.runs_query(limit=51, playbook="pb-10", status="failed"),
            {},
        ),
        "runs, requested_by, after a cursor": (
            queries.runs_query(limit=51, before=(now - timedelta(days=30), "x"), requested_by="u"),
            {},
        ),
        "runs to adopt (start, every second)": (lease.claimable(now, []), {}),
        "owners of runs in progress": (lease.owners(), {}),
        "inbox poll": (inbox.pending_for(owner), {}),
        "leases given up (stop)": (lease.release_all(), {}),
        "alerts of one outcome": (queries.alerts_query(limit=51, outcome="held"), {}),
    }


def show_plans(url: str) -> None:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            for label, (stmt, params) in hot_statements("bench:1:aa").items():
                trans = conn.begin()
                try:
                    lines = plans.explain(conn, stmt, params)
                finally:
                    trans.rollback()
                figure(label, " / ".join(lines)[:160])
    finally:
        engine.dispose()


# --- the suite -----------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench history")
    parser.add_argument("--runs", type=int, default=RUNS)
    parser.add_argument("--postgres", metavar="URL", help="also fill and explain there")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="baton-bench-history-") as tmp:
        root = Path(tmp)
        write_playbooks(root / "playbooks", PLAYBOOKS)
        asyncio.run(_suite(root, args.runs, args.postgres))


async def _suite(root: Path, runs: int, postgres: str | None) -> None:
    heading(f"history: an empty database against {runs:,} finished runs of 10 steps (SQLite)")
    sample = root / "sample.db"
    await ten_step_runs(root, f"sqlite:///{sample}", SAMPLE - 5)
    tables, columns = bytes_per_run(sample, SAMPLE)
    figure("bytes per 10-step run (file, all tables)", sum(tables.values()), "B", "was ~6.5 kB")
    for name, size in sorted(tables.items(), key=lambda kv: -kv[1])[:8]:
        figure(f"  {name}", size, "B")
    for name, size in sorted(columns.items(), key=lambda kv: -kv[1])[:8]:
        figure(f"  column {name}", size, "B")

    empty, full = root / "empty.db", root / "full.db"
    _, template = await ten_step_runs(root, f"sqlite:///{empty}", 1)
    _, template = await ten_step_runs(root, f"sqlite:///{full}", 1)
    with Timer() as tm:
        added = fill(f"sqlite:///{full}", template, runs)
    figure(f"filling {runs:,} runs ({sum(added.values()):,} rows)", tm.elapsed, "s")
    figure("database file", full.stat().st_size / 1e6, "MB")

    # empty and full in turns, so that a busy machine weighs on both alike
    dbs = {"empty": empty, "full": full}
    serve_once(root, empty, api=False)  # Python's bytecode cache filled
    starts: dict[str, list[float]] = {"empty": [], "full": []}
    e2e: dict[str, list[float]] = {"empty": [], "full": []}
    results: dict[str, dict[str, float]] = {}
    for n in range(STARTS):
        for label, db in dbs.items():
            once = serve_once(root, db, api=n == STARTS - 1)
            starts[label].append(once.pop("start"))
            results.setdefault(label, {}).update(once)
            e2e[label] += (await ten_step_runs(root, f"sqlite:///{db}", E2E // STARTS))[0]
    for label in dbs:
        results[label]["start"] = statistics.median(starts[label])
        results[label]["e2e"] = statistics.median(e2e[label])
    e, f = results["empty"], results["full"]
    heading("                                                   empty -> full")
    _pair("serve start to first 200 from /healthz", e["start"], f["start"], "s", "within 0.2 s")
    _pair("GET /api/runs?limit=50 (first page)", e["first"], f["first"], "ms", "< 20 ms")
    _pair(f"GET /api/runs?limit=50&{FILTER}", e["filtered"], f["filtered"], "ms", "< 20 ms")
    if "next" in f:
        _pair("GET the next page (Link: rel=next)", e.get("next", 0), f["next"], "ms", "< 20 ms")
    _pair("a 10-step run end to end (median)", e["e2e"], f["e2e"], "ms", "within 10%")

    heading("plans of the hot statements, SQLite, full database")
    show_plans(f"sqlite:///{full}")
    if postgres:
        await _postgres(root, postgres, runs)


def _pair(label: str, empty: float, full: float, unit: str, target: str) -> None:
    figure(label, f"{empty:.3g} -> {full:.3g}", unit, target)


async def _postgres(root: Path, url: str, runs: int) -> None:
    """Fill a schema of its own on ``url`` the same way, explain, drop the schema."""
    schema = f"bench_{secrets.token_hex(4)}"
    admin = create_engine(url)
    with admin.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    scoped = f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}"
    try:
        heading(f"plans of the hot statements, PostgreSQL, {runs:,} runs")
        _, template = await ten_step_runs(root, scoped, 1)
        with Timer() as tm:
            fill(scoped, template, runs)
        figure(f"filling {runs:,} runs", tm.elapsed, "s")
        show_plans(scoped)
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
        admin.dispose()


if __name__ == "__main__":
    main()
