"""``runs_on``: what `baton validate` and the start of every command refuse (SQLite has no
job queue; approval, log, playbook and wait steps work on the run itself), and what
`baton worker` refuses, from the command line as people meet it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from engine.actions.registry import Registry
from engine.playbooks import validate
from engine.playbooks.catalog import Catalog
from engine.playbooks.model import LABEL_RULE
from storage.db import is_postgres

BATON = str(Path(sys.executable).with_name("baton"))
REGISTRY = Registry.from_entry_points()

PLAYBOOK = """\
name: far
steps:
  - id: local
    action: shell
    with: {argv: [echo, here]}
  - id: there
    action: shell
    runs_on: dc1
    with: {argv: [echo, there]}
"""


def _write(folder: Path, text: str, name: str = "far.yaml") -> Path:
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


def test_runs_on_is_refused_without_a_job_queue_and_taken_with_one(tmp_path: Path) -> None:
    path = _write(tmp_path / "pb", PLAYBOOK)
    valid, problems = validate.validate_paths([path], REGISTRY, workers=False)
    assert valid == {}
    assert [(p.line, p.message) for p in problems] == [
        (
            8,
            "step 'there': runs_on needs PostgreSQL: workers take steps from its job queue "
            "(BATON_DATABASE_URL is SQLite; remove runs_on or use PostgreSQL)",
        )
    ]
    valid, problems = validate.validate_paths([path], REGISTRY, workers=True)
    assert (list(valid), problems) == (["far"], [])
    assert valid["far"][0].steps[1].runs_on == "dc1"
    # the catalog of a start keeps the refusal, and so does its reload
    catalog = Catalog.load(tmp_path / "pb", REGISTRY, workers=False)
    assert "far" not in catalog and "runs_on needs PostgreSQL" in str(catalog.problems[0])
    assert "far" not in catalog.reload()


def test_steps_that_work_on_the_run_itself_cannot_go_to_a_worker(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "pb",
        """\
        name: gated
        steps:
          - id: ok
            action: approval
            runs_on: dc1
            with: {approvers: [U1]}
        """,
    )
    _, problems = validate.validate_paths([path], REGISTRY, workers=True)
    assert [p.message for p in problems] == [
        "step 'ok': runs_on: a approval step works on the run itself and runs where the run "
        "is driven; runs_on is for shell, ssh, http, python and plug-in actions"
    ]


def test_a_label_is_a_queue_name(tmp_path: Path) -> None:
    path = _write(tmp_path / "pb", PLAYBOOK.replace("runs_on: dc1", 'runs_on: "dc 1"'))
    _, problems = validate.validate_paths([path], REGISTRY, workers=True)
    assert [(p.line, p.message) for p in problems] == [(8, f"steps[1].runs_on: {LABEL_RULE}")]


def test_which_urls_have_a_job_queue() -> None:
    assert is_postgres("postgresql://baton@db/baton")
    assert is_postgres("postgres://baton@db/baton")
    assert is_postgres("postgresql+psycopg://baton@db/baton")
    assert not is_postgres("sqlite:///./baton.db")
    assert not is_postgres("not a url")


def _baton(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "BATON_DATABASE_URL": f"sqlite:///{tmp_path / 'baton.db'}",
        "BATON_PLAYBOOKS": str(tmp_path / "pb"),
    }
    return subprocess.run(
        [BATON, *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )


def test_baton_validate_on_sqlite_names_the_line_and_the_reason(tmp_path: Path) -> None:
    path = _write(tmp_path / "pb", PLAYBOOK)
    done = _baton(tmp_path, "validate")
    assert done.returncode == 1
    assert f"{path}:8: step 'there': runs_on needs PostgreSQL" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr


def test_baton_worker_needs_postgresql_and_labels(tmp_path: Path) -> None:
    done = _baton(tmp_path, "worker", "--labels", "dc1")
    assert done.returncode == 2
    assert done.stderr.startswith(
        "baton: runs_on needs PostgreSQL: workers take steps from its job queue; "
        f"BATON_DATABASE_URL is sqlite:///{tmp_path / 'baton.db'}"
    )
    assert not (tmp_path / "baton.db").exists()  # refused before anything was made
    bad = _baton(tmp_path, "worker", "--labels", "dc 1,ok")
    assert bad.returncode == 2
    assert f"'dc 1': {LABEL_RULE}" in bad.stderr
    assert "Traceback" not in done.stderr + bad.stderr


def test_the_readme_workers_example_validates_on_postgresql_only(tmp_path: Path) -> None:
    readme = (Path(__file__).parent.parent.parent / "README.md").read_text()
    section = readme.split("## Workers", 1)[1].split("\n## ", 1)[0]
    example = section.split("```yaml\n", 1)[1].split("```", 1)[0]
    path = _write(tmp_path / "pb", example, "patch-dc1.yaml")
    valid, problems = validate.validate_paths([path], REGISTRY, workers=True)
    assert (list(valid), problems) == (["patch-dc1"], [])
    _, problems = validate.validate_paths([path], REGISTRY, workers=False)
    assert [p.message.split(":")[1].strip() for p in problems] == ["runs_on needs PostgreSQL"]


def test_a_jobs_secrets_are_found_sealed_and_opened_only_with_the_key() -> None:
    from cryptography.fernet import Fernet

    from engine.errors import BatonError
    from engine.secrets import Masker, SecretBox

    masker = Masker(["hunter22", "s3cret-token"])
    body = {"with": {"argv": ["login", "--password=hunter22"]}, "params": {"n": 1}}
    assert masker.present_in(body) == ["hunter22"]
    assert masker.present_in({"with": {"argv": ["echo", "hi"]}}) == []
    box = SecretBox(Fernet(Fernet.generate_key()))
    sealed = box.seal(body)
    assert "hunter22" not in sealed and box.unseal(sealed) == body
    other = SecretBox(Fernet(Fernet.generate_key()))
    with pytest.raises(BatonError, match="sealed with another key"):
        other.unseal(sealed)
