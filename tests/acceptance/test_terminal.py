"""`baton serve` as a job of an interactive shell in a real terminal (a pseudo-terminal):
started in the background with the README's `make run &`, or moved there with Ctrl-Z
and `bg`, it goes on serving and is never stopped waiting for the terminal.

The shell is an interactive bash in a session of its own whose controlling terminal is
the pty, so job control is the real one: background jobs are in their own process group,
Ctrl-Z is the terminal's SIGTSTP, `bg` is bash's. Nothing sleeps: every wait polls a
condition (the terminal's output, `/healthz`, `/proc`) up to a deadline.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.acceptance.serve import free_port, wait_until

ROOT = Path(__file__).resolve().parent.parent.parent
VENV = Path(sys.prefix)
BATON = str(Path(sys.executable).parent / "baton")
# a session leader whose controlling terminal is its stdin, then the program given
SESSION = (
    "import fcntl, os, sys, termios; os.setsid(); fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
    "os.execvp(sys.argv[1], sys.argv[1:])"
)

HELLO = """
name: hello
steps:
  - id: say
    action: log
    with: {message: hello}
"""


class Terminal:
    """An interactive bash on a pty: type into it, read what it shows."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.env = env
        self.master, slave = os.openpty()
        self.shell = subprocess.Popen(
            [sys.executable, "-c", SESSION, "bash", "--norc", "--noprofile", "-i"],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            cwd=cwd,
        )
        os.close(slave)
        self.output = ""
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self.master, 4096)
            except OSError:  # EIO: every process of the session closed the terminal
                return
            if not data:
                return
            with self._lock:
                self.output += data.decode(errors="replace")

    def type(self, text: str) -> None:
        os.write(self.master, text.encode())

    def shows(self, needle: str) -> bool:
        with self._lock:
            return needle in self.output

    def processes(self) -> dict[int, tuple[str, str]]:
        """pid -> (state, command line) of every process of the shell's session."""
        found = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                argv = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            state, _ppid, _pgrp, session = stat.rsplit(")", 1)[1].split()[:4]
            if int(session) == self.shell.pid:
                found[int(entry.name)] = (state, argv)
        return found

    def server(self) -> int | None:
        """The pid of `baton serve` in this session, once it runs."""
        pids = [p for p, (_, argv) in self.processes().items() if "baton serve" in argv]
        return pids[0] if pids else None

    def close(self) -> None:
        for pid in self.processes():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.shell.wait(timeout=20)
        os.close(self.master)
        self._reader.join(timeout=20)
        print(self.output)  # shown by pytest when the test failed


GATED = """
name: gated
steps:
  - id: gate
    action: approval
    with: {approvers: [bob], message: "go?"}
  - id: after
    action: log
    needs: gate
    with: {message: done}
"""


@pytest.fixture
def terminal(tmp_path: Path) -> Iterator[tuple[Terminal, int]]:
    folder = tmp_path / "playbooks"
    folder.mkdir()
    (folder / "hello.yaml").write_text(textwrap.dedent(HELLO))
    (folder / "gated.yaml").write_text(GATED)
    port = free_port()
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("BATON_", "SLACK_"))}
    env = {
        **inherited,
        "PS1": "$ ",
        "TERM": "dumb",
        "HISTFILE": "/dev/null",
        "VENV": str(VENV),  # the Makefile's venv: the one running these tests
        "BATON": BATON,
        "BATON_PORT": str(port),
        "BATON_DATABASE_URL": f"sqlite:///{tmp_path / 'baton.db'}",
        "BATON_PLAYBOOKS": str(folder),
        "BATON_KEY_FILE": str(tmp_path / "key"),
        "BATON_CONSOLE_LOG": str(tmp_path / "baton.log"),
    }
    term = Terminal(env, ROOT)
    try:
        yield term, port
    finally:
        term.close()


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def running(term: Terminal, pid: int) -> bool:
    state = term.processes().get(pid, ("gone", ""))[0]
    assert state != "gone", "baton serve exited"
    return state != "T"  # T: stopped (by SIGTTIN, say)


@pytest.mark.skipif(
    not (VENV / ".installed").exists()
    or (VENV / ".installed").stat().st_mtime < (ROOT / "pyproject.toml").stat().st_mtime,
    reason="`make run` would install Baton first: run the tests from the Makefile's venv",
)
def test_make_run_in_the_background_serves(terminal: tuple[Terminal, int]) -> None:
    term, port = terminal
    wait_until(lambda: term.shows("$ "), what="the shell's prompt")
    term.type("make run &\n")  # the README's line, as written
    wait_until(lambda: healthy(port), what="/healthz answering")
    wait_until(
        lambda: term.shows("in the terminal's background: no console, serving only"),
        what="the log line saying it serves in the background",
    )
    pid = term.server()
    assert pid is not None
    assert running(term, pid) and healthy(port)
    assert not term.shows("Stopped") and not term.shows("baton> ")


def test_ctrl_z_then_bg_closes_the_console_and_goes_on_serving(
    terminal: tuple[Terminal, int],
) -> None:
    term, port = terminal
    wait_until(lambda: term.shows("$ "), what="the shell's prompt")
    term.type('"$BATON" serve\n')  # in the foreground: the console opens
    wait_until(lambda: term.shows("baton> "), what="the console's prompt")
    assert term.shows("Log lines go to ")  # not into the line being typed
    assert healthy(port)
    term.type("\x1a")  # Ctrl-Z
    wait_until(lambda: term.shows("Stopped"), what="the shell reporting the stopped job")
    term.type("bg\n")
    wait_until(
        lambda: term.shows("moved to the terminal's background: console closed, still serving"),
        what="the log line saying the console closed",
    )
    pid = term.server()
    assert pid is not None
    wait_until(lambda: healthy(port), what="/healthz answering in the background")
    assert running(term, pid)
    assert term.output.count("Stopped") == 1  # not stopped again by a read of the terminal


def test_a_progress_line_is_drawn_above_the_line_being_typed(
    terminal: tuple[Terminal, int],
) -> None:
    """While `sta` is half typed, a line of the run's progress (an approval given from
    another process) goes above the prompt, and the prompt with `sta` is drawn again
    below it: the rest typed (`tus`) makes the command `status`, not a broken line. When
    the console ends, the terminal has its settings back (canonical mode, echo)."""
    term, _ = terminal
    wait_until(lambda: term.shows("$ "), what="the shell's prompt")
    term.type('"$BATON" console\n')
    wait_until(lambda: term.shows("baton> "), what="the console's prompt")
    term.type("run gated\n")
    wait_until(lambda: term.shows("answer with `approve "), what="the approval prompt")
    approval = re.findall(r"approval (\w+) needed", term.output)[0]
    term.type("sta")
    wait_until(lambda: term.output.endswith("sta"), what="the half-typed line echoed")
    other = subprocess.run(
        [BATON, "console", "--as", "bob"],
        input=f"approve {approval}\n",
        env=term.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert other.returncode == 0, other.stderr
    redrawn = f"\r\x1b[2K  approval {approval} approved\r\nbaton> sta"
    wait_until(lambda: term.shows(redrawn), what="the progress line above the typed line")
    term.type("tus\n")
    wait_until(lambda: term.shows("no active runs of "), what="the answer to `status`")
    term.type("quit\n")
    wait_until(lambda: term.output.endswith("$ "), what="the shell's prompt again")
    term.type("stty -a | grep -q -e ' -icanon' -e ' -echo ' && echo RAW-MODE || echo COOKED\n")
    wait_until(lambda: term.shows("\r\nCOOKED"), what="the terminal's settings back")
    assert "RAW-MODE\r\n" not in term.output
