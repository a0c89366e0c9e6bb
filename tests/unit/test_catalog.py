from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import pytest
from pydantic import BaseModel, ConfigDict

from engine.actions import ActionContext, Output, Suspend
from engine.actions.registry import Registry
from engine.errors import PlaybookNotFound, PlaybookUnusable
from engine.playbooks.catalog import Catalog


class LogInputs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    message: str


class FakeLog:
    name: ClassVar[str] = "log"
    Inputs: ClassVar[type[BaseModel]] = LogInputs

    async def run(self, ctx: ActionContext, inputs: Any) -> Output | Suspend:
        return {}


def playbook_text(name: str, message: str = "hi", action: str = "log") -> str:
    return (
        f"name: {name}\n"
        f"description: says {message}\n"
        "steps:\n"
        "  - id: say\n"
        f"    action: {action}\n"
        f"    with: {{message: {message}}}\n"
    )


@pytest.fixture
def registry() -> Registry:
    return Registry({"log": FakeLog()})


@pytest.fixture
def library(tmp_path: Path) -> Path:
    root = tmp_path / "playbooks"
    root.mkdir()
    (root / "restart-api.yaml").write_text(playbook_text("restart-api"))
    (root / "backup.yml").write_text(playbook_text("backup"))
    (root / "broken.yaml").write_text(playbook_text("broken", action="nope"))
    (root / "garbage.yaml").write_text("name: [unclosed\n")
    return root


def test_load_keeps_valid_playbooks_and_reports_invalid_files(
    library: Path, registry: Registry
) -> None:
    catalog = Catalog.load(library, registry)
    assert catalog.names() == ["backup", "restart-api"]
    assert [pb.name for pb in catalog] == ["backup", "restart-api"]
    assert [pb.name for pb in catalog.all()] == ["backup", "restart-api"]
    assert len(catalog) == 2
    assert "backup" in catalog
    assert "broken" not in catalog
    assert sorted(Path(p.file).name for p in catalog.problems) == ["broken.yaml", "garbage.yaml"]
    assert catalog.get("backup").description == "says hi"
    assert catalog.path_of("restart-api") == library / "restart-api.yaml"


def test_get_unknown_suggests_close_names(library: Path, registry: Registry) -> None:
    catalog = Catalog.load(library, registry)
    with pytest.raises(PlaybookNotFound, match="Did you mean 'restart-api'") as excinfo:
        catalog.get("restart-apj")
    assert excinfo.value.suggestions == ["restart-api"]
    with pytest.raises(PlaybookNotFound):
        catalog.path_of("nope")


def test_get_an_invalid_playbook_says_it_is_invalid_with_its_problems_and_file(
    library: Path, registry: Registry
) -> None:
    catalog = Catalog.load(library, registry)
    broken, garbage = library / "broken.yaml", library / "garbage.yaml"
    with pytest.raises(PlaybookUnusable) as excinfo:
        catalog.get("broken")
    lines = str(excinfo.value).splitlines()
    assert lines[0] == f"Playbook 'broken' is invalid, so it cannot run ({broken}):"
    assert lines[1].startswith(f"  {broken}:5: step 'say': unknown action 'nope'")
    assert lines[-1] == f"Fix it, then check it with `baton validate {broken}`."
    assert "Unknown" not in str(excinfo.value)
    with pytest.raises(PlaybookUnusable, match="YAML syntax error"):
        catalog.path_of("garbage")  # no name can be read: its file's name
    assert isinstance(excinfo.value, PlaybookNotFound)  # handlers of an unknown one apply
    assert catalog.invalid == {"broken": broken, "garbage": garbage}
    (library / "broken.yaml").write_text(playbook_text("broken"))
    assert catalog.reload().get("broken").name == "broken"
    assert catalog.reload().invalid == {"garbage": garbage}


def test_missing_folder_is_a_problem_not_a_crash(tmp_path: Path, registry: Registry) -> None:
    catalog = Catalog.load(tmp_path / "absent", registry)
    assert catalog.names() == []
    assert [p.message for p in catalog.problems] == [
        "no such file or directory (BATON_PLAYBOOKS names the playbook folder)"
    ]


def test_reload_picks_up_valid_edits_new_and_deleted_files(
    library: Path, registry: Registry
) -> None:
    catalog = Catalog.load(library, registry)
    (library / "backup.yml").write_text(playbook_text("backup", message="edited"))
    (library / "restart-api.yaml").unlink()
    (library / "deploy.yaml").write_text(playbook_text("deploy"))
    (library / "broken.yaml").write_text(playbook_text("broken"))

    fresh = catalog.reload()

    assert fresh.names() == ["backup", "broken", "deploy"]
    assert fresh.get("backup").description == "says edited"
    assert fresh.kept == []
    assert [Path(p.file).name for p in fresh.problems] == ["garbage.yaml"]
    assert catalog.names() == ["backup", "restart-api"]  # the old catalog is unchanged


def test_reload_rejects_an_invalid_edit_and_keeps_the_previous_version(
    library: Path, registry: Registry
) -> None:
    catalog = Catalog.load(library, registry)
    old = catalog.get("backup")
    (library / "backup.yml").write_text(playbook_text("backup", message="new", action="lgo"))

    fresh = catalog.reload()

    assert fresh.get("backup") is old
    assert fresh.path_of("backup") == library / "backup.yml"
    assert fresh.kept == ["backup"]
    messages = [p.message for p in fresh.problems if Path(p.file).name == "backup.yml"]
    assert messages[0].startswith("step 'say': unknown action 'lgo' (did you mean 'log'?)")
    assert messages[1] == "edit rejected: keeping the previous version of 'backup'"


def test_reload_keeps_previous_version_on_yaml_error(library: Path, registry: Registry) -> None:
    catalog = Catalog.load(library, registry)
    (library / "restart-api.yaml").write_text("name: restart-api\nsteps: [\n")

    fresh = catalog.reload()

    assert fresh.names() == ["backup", "restart-api"]
    assert fresh.kept == ["restart-api"]
    assert any("YAML syntax error" in p.message for p in fresh.problems)


def test_reload_keeps_previous_version_when_a_name_clash_appears(
    library: Path, registry: Registry
) -> None:
    catalog = Catalog.load(library, registry)
    (library / "aaa.yaml").write_text(playbook_text("copy"))
    (library / "backup.yml").write_text(playbook_text("copy"))

    fresh = catalog.reload()

    assert fresh.names() == ["backup", "copy", "restart-api"]
    assert fresh.path_of("copy") == library / "aaa.yaml"
    assert fresh.kept == ["backup"]
