"""A real ``baton serve`` process for the durability suite: start it, talk to it over
HTTP, kill it (SIGKILL or SIGTERM) and start it again on the same database.

Nothing here sleeps for a fixed time. Start-up waits for the "serving on" log line (read
line by line by a thread, which also keeps the pipe drained); everything else polls a
condition on the rows every ``POLL`` seconds, up to a deadline.

Shell steps run in their own session (see ``engine.actions.shell``), so a SIGKILL of Baton
leaves them running. The playbooks of the suite make each blocking step write its pid to
``<work>/<name>.pid``; ``kill()`` and ``close()`` end those process groups, after checking
(through ``/proc/<pid>/environ``) that the process really belongs to this test.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa

from bot.serve import STOP_GRACE
from storage import tables as t
from storage.db import normalize_url

BATON = str(Path(sys.executable).parent / "baton")
TOKEN = "durability-token"
POLL = 0.02
WITHIN = 20.0
TERMINAL = frozenset({"succeeded", "failed", "cancelled", "timed_out"})

T = TypeVar("T")


def wait_until(condition: Callable[[], T], within: float = WITHIN, what: str = "condition") -> T:
    """Poll ``condition`` every ``POLL`` s until it returns something truthy (returned)."""
    deadline = time.monotonic() + within
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not met within {within:.0f}s")
        time.sleep(POLL)


def now() -> datetime:
    return datetime.now(UTC)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def pid_written(path: Path) -> int | None:
    """The pid a step wrote to ``path``, once it is fully written."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    return int(text) if text.endswith("\n") and text.strip().isdigit() else None


class Server:
    """One Baton installation (database, playbook folder, work folder) and the
    ``baton serve`` process currently running on it, if any."""

    def __init__(
        self,
        root: Path,
        db_url: str,
        playbooks: dict[str, str],
        drain_timeout: float = 10.0,
        env: dict[str, str] | None = None,
    ) -> None:
        self.root = root
        self.extra_env = dict(env or {})
        self.db_url = db_url
        self.drain_timeout = drain_timeout
        self.work = root / "work"
        self.work.mkdir(exist_ok=True)
        folder = root / "playbooks"
        folder.mkdir(exist_ok=True)
        for name, text in playbooks.items():
            (folder / f"{name}.yaml").write_text(textwrap.dedent(text))
        self.playbooks = folder
        self.proc: subprocess.Popen[str] | None = None
        self.port = 0
        self.log: list[str] = []
        self._reader: threading.Thread | None = None
        self._ready = threading.Event()
        self._serving = False
        self.db = sa.create_engine(normalize_url(db_url))

    # --- the process ----------------------------------------------------------------

    def env(self) -> dict[str, str]:
        inherited = {k: v for k, v in os.environ.items() if not k.startswith(("BATON_", "SLACK_"))}
        return {
            **inherited,
            "BATON_DATABASE_URL": self.db_url,
            "BATON_PLAYBOOKS": str(self.playbooks),
            "BATON_HOST": "127.0.0.1",
            "BATON_PORT": str(self.port),
            "BATON_API_TOKEN": TOKEN,
            "BATON_KEY_FILE": str(self.root / "secret.key"),
            "BATON_DRAIN_TIMEOUT": str(self.drain_timeout),
            "BATON_LOG_LEVEL": "INFO",
            "WORK_DIR": str(self.work),  # for steps that get no `dir` param (schedules)
            "BATON_STEP_ENV": "WORK_DIR",  # ... passed on to them
            **self.extra_env,
        }

    def start(self, drain_timeout: float | None = None) -> datetime:
        """Start ``baton serve`` and return once it logged "serving on" (the time then)."""
        assert self.proc is None, "already running"
        if drain_timeout is not None:
            self.drain_timeout = drain_timeout
        self.port = free_port()
        self.log.append(f"--- baton serve on port {self.port} ---")
        self._ready.clear()
        self._serving = False
        self.proc = subprocess.Popen(
            [BATON, "serve"],
            env=self.env(),
            cwd=self.root,  # no stray .env file is read
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, args=(self.proc,), daemon=True)
        self._reader.start()
        if not self._ready.wait(WITHIN) or not self._serving:
            self._reap(signal.SIGKILL)
            raise AssertionError("baton serve did not start:\n" + "\n".join(self.log[-30:]))
        return now()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.log.append(line.rstrip("\n"))
            if not self._serving and "serving on" in line:
                self._serving = True
                self._ready.set()
        self._ready.set()  # EOF: the process is gone (a start-up failure if not serving)

    def _reap(self, sig: signal.Signals | None, within: float = WITHIN) -> int:
        proc, self.proc = self.proc, None
        assert proc is not None
        try:
            if sig is not None and proc.poll() is None:
                proc.send_signal(sig)
            rc = proc.wait(timeout=within)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise AssertionError(
                "baton serve did not exit in time:\n" + "\n".join(self.log[-80:])
            ) from None
        finally:
            if self._reader is not None:
                self._reader.join(timeout=WITHIN)
                self._reader = None
            if proc.stdout is not None:
                proc.stdout.close()
        return rc

    def kill(self) -> None:
        """SIGKILL: Baton gets no chance to record anything. The steps it started are
        killed too, as when the whole host goes down."""
        rc = self._reap(signal.SIGKILL)
        assert rc == -signal.SIGKILL, rc
        self.kill_steps()

    def terminate(self, within: float | None = None) -> int:
        """SIGTERM (graceful stop); returns the exit status. By default it may take the
        drain timeout plus the grace after which a slow stop logs what it waits on, and a
        little more: a stop that hangs shows why in the failure."""
        return self._reap(signal.SIGTERM, within or self.drain_timeout + STOP_GRACE + 5)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill_steps(self) -> None:
        """End the process group of every step that recorded its pid in the work folder,
        if that process still runs and belongs to this test."""
        marker = f"PARAM_DIR={self.work}".encode()
        for path in self.work.glob("*.pid"):
            pid = pid_written(path)
            if pid is None:
                continue
            try:
                environ = Path(f"/proc/{pid}/environ").read_bytes()
            except OSError:
                continue  # gone
            if marker in environ.split(b"\0"):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)

    def close(self) -> None:
        if self.proc is not None:
            self._reap(signal.SIGKILL)
        self.kill_steps()
        self.db.dispose()
        print("\n".join(self.log))  # shown by pytest when the test failed

    # --- HTTP -----------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        token: str | None = TOKEN,
    ) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        req = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}", data=data, method=method, headers=headers
        )
        try:
            with urllib.request.urlopen(req, timeout=WITHIN) as resp:
                return resp.status, json.load(resp)
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, json.load(exc)

    def start_run(self, playbook: str, **params: Any) -> str:
        status, body = self.request(
            "POST",
            "/api/runs",
            {"playbook": playbook, "params": {"dir": str(self.work), **params}},
        )
        assert status == 201, (status, body)
        return str(body["id"])

    def decide(self, approval_id: str, user: str, decision: str = "approve") -> dict[str, Any]:
        status, body = self.request(
            "POST", f"/api/approvals/{approval_id}", {"user": user, "decision": decision}
        )
        assert status == 200, (status, body)
        return dict(body)

    def api_run(self, run_id: str) -> dict[str, Any]:
        status, body = self.request("GET", f"/api/runs/{run_id}")
        assert status == 200, (status, body)
        return dict(body)

    # --- rows -----------------------------------------------------------------------

    def _all(self, query: Any) -> list[sa.Row[Any]]:
        with self.db.connect() as conn:
            return list(conn.execute(query).all())

    def run(self, run_id: str) -> sa.Row[Any]:
        rows = self._all(sa.select(t.runs).where(t.runs.c.id == run_id))
        assert rows, f"no run {run_id}"
        return rows[0]

    def steps(self, run_id: str) -> dict[str, sa.Row[Any]]:
        rows = self._all(sa.select(t.steps).where(t.steps.c.run_id == run_id))
        return {r.step_id: r for r in rows}

    def step(self, run_id: str, step_id: str) -> sa.Row[Any]:
        return self.steps(run_id)[step_id]

    def attempts(self, run_id: str, step_id: str) -> list[sa.Row[Any]]:
        return self._all(
            sa.select(t.attempts)
            .where(t.attempts.c.run_id == run_id, t.attempts.c.step_id == step_id)
            .order_by(t.attempts.c.run_attempt, t.attempts.c.number)
        )

    def runs_of(self, playbook: str) -> list[sa.Row[Any]]:
        return self._all(
            sa.select(t.runs).where(t.runs.c.playbook == playbook).order_by(t.runs.c.created_at)
        )

    def approvals(self, run_id: str) -> list[sa.Row[Any]]:
        return self._all(sa.select(t.approvals).where(t.approvals.c.run_id == run_id))

    def decisions(self, approval_id: str) -> list[sa.Row[Any]]:
        return self._all(sa.select(t.decisions).where(t.decisions.c.approval_id == approval_id))

    def open_rows(self) -> list[tuple[str, ...]]:
        """Step and attempt rows still ``running`` (there must be none once Baton stopped)."""
        steps = self._all(
            sa.select(t.steps.c.run_id, t.steps.c.step_id).where(t.steps.c.status == "running")
        )
        attempts = self._all(
            sa.select(t.attempts.c.run_id, t.attempts.c.step_id, t.attempts.c.number).where(
                t.attempts.c.status == "running"
            )
        )
        return [("step", *map(str, r)) for r in steps] + [
            ("attempt", *map(str, r)) for r in attempts
        ]

    # --- waiting on rows ------------------------------------------------------------

    def wait_step(
        self, run_id: str, step_id: str, status: str, wake_reason: str | None = None
    ) -> sa.Row[Any]:
        def reached() -> sa.Row[Any] | None:
            row = self.steps(run_id).get(step_id)
            if row is None or row.status != status:
                return None
            if wake_reason is not None and row.wake_reason != wake_reason:
                return None
            return row

        return wait_until(reached, what=f"step {step_id} of run {run_id} {status}")

    def wait_running(self, run_id: str, step_id: str, pid_file: str) -> int:
        """Until the step's row says running *and* its process wrote ``pid_file``: the
        step is really mid-flight. Returns the pid."""
        self.wait_step(run_id, step_id, "running")
        return wait_until(
            lambda: pid_written(self.work / pid_file), what=f"{pid_file} written by {step_id}"
        )

    def wait_run(self, run_id: str, statuses: frozenset[str] = TERMINAL) -> sa.Row[Any]:
        def reached() -> sa.Row[Any] | None:
            row = self.run(run_id)
            return row if row.status in statuses else None

        return wait_until(reached, what=f"run {run_id} in {sorted(statuses)}")
