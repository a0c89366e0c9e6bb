"""The Makefile's install, as `make run` does it the first time: quiet, and Baton
importable from anywhere through one plain path (no import hook, no deprecated mode)."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def recipe(venv: Path) -> list[list[str]]:
    """The commands `make` would run to set up ``venv`` (read with `make -n`)."""
    dry = subprocess.run(
        ["make", "-n", "-B", f"VENV={venv}", f"PYTHON={sys.executable}", f"{venv}/.installed"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return [shlex.split(line) for line in dry.stdout.splitlines() if line.strip()]


@pytest.mark.timeout(300)
def test_the_first_install_is_quiet_and_a_plain_path(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    commands = recipe(venv)
    (install,) = [c for c in commands if "-e" in c]
    assert "editable_mode=compat" not in " ".join(install), "compat mode is deprecated"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    # the dependencies are the test's own venv's business: only Baton itself is built here
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    done = subprocess.run(
        [*install, "--no-deps"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert (done.stdout + done.stderr).strip() == "", "the install says nothing"

    (site,) = (venv / "lib").glob("python3*/site-packages")
    (pth,) = site.glob("__editable__.baton-*.pth")
    assert pth.read_text().strip() == str(ROOT), "one plain path, no import hook"
    assert not list(site.glob("__editable__*finder*"))
    where = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import bot, engine.schedules.cron, storage, importlib.metadata as m;"
            "print(bot.__file__);"
            "print(sorted(e.name for e in m.entry_points(group='baton.actions')))",
        ],
        cwd=tmp_path,  # anywhere, not the project's folder
        capture_output=True,
        text=True,
        check=True,
    )
    shown, actions = where.stdout.splitlines()
    assert shown == str(ROOT / "bot" / "__init__.py")
    assert "shell" in actions and "http" in actions
