"""The ``baton`` command as whole processes: start-up, a one-step run, serve's idle RSS."""

from __future__ import annotations

import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from bench.common import ONE_STEP_LOG, figure, heading, write_playbooks

REPEAT = 5
SERVE_START_TIMEOUT = 30.0
SERVE_SETTLE = 2.0
SERVE_STOP_TIMEOUT = 15.0

VENV_BIN = Path(sys.executable).parent
BATON = VENV_BIN / "baton"


def baton_env(root: Path, port: int | None = None, bytecode: bool = True) -> dict[str, str]:
    """The process environment minus any BATON_/SLACK_ settings, pointed at ``root``.

    ``bytecode``: let Python cache compiled modules (in a folder under ``root``, not in
    the source tree), as an installed package has them; otherwise inherit this
    environment's PYTHONDONTWRITEBYTECODE, under which the project's own modules are
    compiled from source at every start.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BATON_", "SLACK_"))}
    if bytecode:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(root / "pycache")
    env.update(
        BATON_DATABASE_URL=f"sqlite:///{root / 'baton.db'}",
        BATON_PLAYBOOKS=str(root / "playbooks"),
        BATON_KEY_FILE=str(root / "secret.key"),
        BATON_HOST="127.0.0.1",
        BATON_LOG_LEVEL="WARNING",
    )
    if port is not None:
        env["BATON_PORT"] = str(port)
    return env


def timed(cmd: list[str], env: dict[str, str], cwd: Path) -> float:
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=120)
    elapsed = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd)} exited {done.returncode}:\n{done.stdout[-2000:]}"
            f"\n{done.stderr[-2000:]}"
        )
    return elapsed


def median_of(cmd: list[str], env: dict[str, str], cwd: Path, n: int = REPEAT) -> float:
    return statistics.median(timed(cmd, env, cwd) for _ in range(n))


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of ``pid`` in kB, from /proc."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


def wait_healthy(proc: subprocess.Popen[bytes], port: int) -> float:
    """Poll GET /healthz until it answers 200; returns seconds from spawn. Bounded."""
    t0 = time.perf_counter()
    url = f"http://127.0.0.1:{port}/healthz"
    while time.perf_counter() - t0 < SERVE_START_TIMEOUT:
        if proc.poll() is not None:
            raise RuntimeError(f"baton serve exited {proc.returncode} before answering")
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return time.perf_counter() - t0
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.05)
    raise RuntimeError(f"baton serve did not answer {url} within {SERVE_START_TIMEOUT:.0f}s")


def bench_serve(root: Path) -> None:
    port = free_port()
    log = (root / "serve.log").open("wb")
    proc = subprocess.Popen(
        [str(BATON), "serve"], env=baton_env(root, port), cwd=root, stdout=log, stderr=log
    )
    try:
        ready = wait_healthy(proc, port)
        time.sleep(SERVE_SETTLE)
        mem = proc_status(proc.pid)
        proc.send_signal(signal.SIGTERM)
        t1 = time.perf_counter()
        code = proc.wait(timeout=SERVE_STOP_TIMEOUT)
        stopped = time.perf_counter() - t1
    except Exception:
        proc.kill()
        proc.wait()
        log.close()
        tail = (root / "serve.log").read_text(errors="replace")[-2000:]
        print(f"  baton serve failed; its log ends:\n{tail}", file=sys.stderr)
        raise
    finally:
        log.close()
    heading("baton serve (idle, no playbooks running)")
    figure("time to first 200 from GET /healthz", ready, "s")
    rss = mem["VmRSS"] / 1024
    figure(f"idle RSS ({SERVE_SETTLE:.0f}s after ready, VmRSS)", rss, "MB", "< 100 MB")
    figure("RSS high-water (VmHWM)", mem["VmHWM"] / 1024, "MB")
    figure(f"SIGTERM -> exit (exit code {code})", stopped, "s")


def start_up(root: Path, env: dict[str, str], label: str) -> None:
    heading(f"start-up, {label}")
    timed([sys.executable, "-c", "import bot.app, bot.api"], env, root)  # fill the cache
    py = median_of([sys.executable, "-c", "pass"], env, root)
    figure("python -c pass (interpreter alone)", py * 1000, "ms")
    imports = median_of([sys.executable, "-c", "import bot.app, bot.api"], env, root)
    figure("python -c 'import bot.app, bot.api' (import cost)", imports * 1000, "ms")
    figure("baton --help", median_of([str(BATON), "--help"], env, root) * 1000, "ms")
    timed([str(BATON), "run", "one", "who=bench"], env, root)  # creates the DB and key
    run = median_of([str(BATON), "run", "one", "who=bench"], env, root)
    figure("baton run <one-step playbook>", run * 1000, "ms", "< 1,000 ms")
    dry = median_of([str(BATON), "run", "one", "--dry-run"], env, root)
    figure("baton run <one-step playbook> --dry-run", dry * 1000, "ms")


def run_all() -> None:
    print(f"process benchmarks ({BATON}, median of {REPEAT})")
    if not BATON.exists():
        print(f"  {BATON} is missing: pip install -e . first")
        return
    with tempfile.TemporaryDirectory(prefix="baton-bench-proc-") as tmp:
        root = Path(tmp)
        write_playbooks(root / "playbooks", {"one": ONE_STEP_LOG})
        start_up(root, baton_env(root), "with bytecode cache, as installed")
        if os.environ.get("PYTHONDONTWRITEBYTECODE"):
            start_up(
                root,
                baton_env(root, bytecode=False),
                "as this environment runs (PYTHONDONTWRITEBYTECODE=1)",
            )
        try:
            bench_serve(root)
        except Exception as exc:
            print(f"  baton serve: not measured: {exc}")


def main() -> None:
    run_all()
