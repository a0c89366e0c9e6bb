from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any, ClassVar

import pytest
from pydantic import BaseModel, ConfigDict, Field

from engine.actions import ActionContext, Output, Suspend
from engine.actions.registry import Registry
from engine.playbooks import model as playbook
from engine.playbooks import validate


class ShellInputs(BaseModel):
    model_config = ConfigDict(extra="forbid")
    command: str
    timeout: int = 10


class FakeShell:
    name: ClassVar[str] = "shell"
    Inputs: ClassVar[type[BaseModel]] = ShellInputs

    async def run(self, ctx: ActionContext, inputs: Any) -> Output | Suspend:
        return {}


class LogInputs(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    message: str
    level: str = Field(default="info", alias="severity")


class FakeLog:
    name: ClassVar[str] = "log"
    Inputs: ClassVar[type[BaseModel]] = LogInputs

    async def run(self, ctx: ActionContext, inputs: Any) -> Output | Suspend:
        return {}


@pytest.fixture
def registry() -> Registry:
    return Registry({"shell": FakeShell(), "log": FakeLog()})


def check(text: str, registry: Registry) -> list[tuple[int | None, str]]:
    pb, lines = playbook.load_text(textwrap.dedent(text), "pb.yaml")
    problems = validate.validate(pb, lines, "pb.yaml", registry)
    assert all(p.file == "pb.yaml" for p in problems)
    return [(p.line, p.message) for p in problems]


GOOD = """\
name: good
params:
  host: {required: true}
  env: {type: choice, choices: [prod, staging], default: staging}
steps:
  - id: check
    action: shell
    with:
      command: "curl -fsS {{ params.host | quote }}"
  - id: restart
    action: shell
    needs: check
    when: steps.check.output.rc == 0 and params.env == 'prod'
    with:
      command: "restart {{ params.host }} # {{ run.requested_by }}"
      timeout: "{{ 30 if params.env == 'prod' else 10 }}"
  - id: verify
    action: log
    needs: [restart]
    with:
      message: "{{ steps.check.output.stdout }} then {{ steps.restart.status }}"
      severity: warning
on_failure:
  - id: notify
    action: log
    with: {message: "{{ failure.error }} in {{ steps.restart.error }} {{ secrets.x }}"}
finally:
  - id: cleanup
    action: log
    when: "{{ steps.notify.status == 'succeeded' }}"
    with: {message: "done"}
concurrency:
  key: "restart-{{ params.host }}-{{ run.playbook }}"
"""


def test_valid_playbook_has_no_problems(registry: Registry) -> None:
    assert check(GOOD, registry) == []


def step(body: str) -> str:
    """A playbook whose steps are ``body`` (each line indented under ``steps:``; line 4 on)."""
    return "name: demo\nparams:\n  host: {}\nsteps:\n" + textwrap.indent(
        textwrap.dedent(body), "  "
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            step("""\
                - id: a
                  action: shel
                """),
            [(6, "step 'a': unknown action 'shel' (did you mean 'shell'?) (known actions: log,")],
            id="unknown-action",
        ),
        pytest.param(
            step("""\
                - id: a
                  action: shell
                  with:
                    comand: ls
                """),
            [
                (7, "step 'a': action 'shell' needs input 'command'"),
                (8, "step 'a': unknown input 'comand' for action 'shell' (did you mean 'command'"),
            ],
            id="unknown-and-missing-input",
        ),
        pytest.param(
            step("""\
                - id: a
                  action: shell
                """),
            [(5, "step 'a': action 'shell' needs input 'command'")],
            id="missing-input-without-with",
        ),
        pytest.param(
            step("""\
                - id: a
                  action: shell
                  with:
                    command: ls
                    timeout: soon
                """),
            [(9, "step 'a': with.timeout: Input should be a valid integer")],
            id="static-type-error",
        ),
        pytest.param(
            step("""\
                - id: a
                  action: log
                  with: {message: hi, level: x}
                """),
            [],
            id="field-name-and-alias-accepted",
        ),
        pytest.param(
            step("""\
                - id: a
                  action: log
                  with: {message: hi}
                - id: a
                  action: log
                  with: {message: hi}
                """),
            [(8, "duplicate step id 'a' (first defined on line 5)")],
            id="duplicate-id",
        ),
        pytest.param(
            step("""\
                - id: a
                  action: log
                  needs: [b, c]
                  with: {message: hi}
                - id: bee
                  action: log
                  with: {message: hi}
                """),
            [
                (7, "step 'a' needs unknown step 'b'"),
                (7, "step 'a' needs unknown step 'c'"),
            ],
            id="unknown-needs",
        ),
        pytest.param(
            step("""\
                - id: a
                  action: log
                  needs: [bee]
                  with: {message: hi}
                - id: bee
                  action: log
                  with: {message: hi}
                """),
            [],
            id="known-needs",
        ),
        pytest.param(
            step("""\
                - id: a
                  action: log
                  needs: b
                  with: {message: hi}
                - id: b
                  action: log
                  needs: [c]
                  with: {message: hi}
                - id: c
                  action: log
                  needs: [a]
                  with: {message: hi}
                """),
            [(7, "cycle in needs: a -> b -> c -> a")],
            id="cycle",
        ),
        pytest.param(
            step("""\
                - id: a
                  action: log
                  needs: a
                  with: {message: hi}
                """),
            [(7, "cycle in needs: a -> a")],
            id="self-cycle",
        ),
        pytest.param(
            step("""\
                - id: a
                  action: log
                  with: {message: "{{ params.host }"}
                """),
            [(7, "step 'a': with.message: template '{{ params.host }': syntax error")],
            id="template-syntax",
        ),
        pytest.param(
            step("""\
                - id: a
                  action: log
                  when: "params.host =="
                  with: {message: hi}
                """),
            [(7, "step 'a': when: template 'params.host ==': syntax error")],
            id="when-syntax",
        ),
        pytest.param(
            step("""\
                - id: a
                  action: log
                  with:
                    message: hi
                    extra: {list: ["ok", "{{ params.hots }}"]}
                """),
            [
                (9, "step 'a': unknown input 'extra' for action 'log'"),
                (
                    9,
                    "step 'a': with.extra.list[1]: unknown param 'hots' (did you mean 'host'?) "
                    "(declared params: host)",
                ),
            ],
            id="unknown-param-nested",
        ),
        pytest.param(
            step("""\
                - id: a
                  action: log
                  when: params.nope
                  with: {message: hi}
                """),
            [(7, "step 'a': when: unknown param 'nope'")],
            id="unknown-param-in-when",
        ),
        pytest.param(
            step("""\
                - id: a
                  action: log
                  with: {message: "{{ steps.zzz.output }}"}
                """),
            [(7, "step 'a': with.message: unknown step 'zzz'")],
            id="unknown-step",
        ),
        pytest.param(
            step("""\
                - id: a
                  action: log
                  with: {message: "{{ parms.host }} {{ failure.error }}"}
                """),
            [
                (7, "step 'a': with.message: unknown name 'failure' (templates here can use"),
                (7, "step 'a': with.message: unknown name 'parms' (did you mean 'params'?)"),
            ],
            id="unknown-root",
        ),
        pytest.param(
            step("""\
                - id: a
                  action: log
                  with: {message: "{{ run.idd }}"}
                """),
            [(7, "step 'a': with.message: run has no 'idd' (it has id, trigger,")],
            id="unknown-run-field",
        ),
        pytest.param(
            step("""\
                - id: a
                  action: log
                  with: {message: hi}
                - id: b
                  action: log
                  with: {message: hi}
                - id: c
                  action: log
                  needs: [b]
                  when: steps.a.status == 'succeeded'
                  with: {message: "{{ steps.b.output }}"}
                """),
            [
                (
                    14,
                    "step 'c': when: steps.a is used by step 'c' but 'a' is not in its needs, "
                    "so it may not have run yet",
                )
            ],
            id="step-not-in-needs",
        ),
        pytest.param(
            step("""\
                - id: a
                  action: log
                  with: {message: hi}
                - id: b
                  action: log
                  needs: [a]
                  with: {message: hi}
                - id: c
                  action: log
                  needs: [b]
                  with: {message: "{{ steps.a.output }}"}
                """),
            [],
            id="transitive-needs-ok",
        ),
    ],
)
def test_problems(text: str, expected: list[tuple[int, str]], registry: Registry) -> None:
    found = check(text, registry)
    assert len(found) == len(expected), found
    for (line, message), (want_line, want_message) in zip(found, expected, strict=True):
        assert line == want_line, (line, message)
        assert message.startswith(want_message), message


def test_needs_across_phases(registry: Registry) -> None:
    text = """\
        name: demo
        steps:
          - id: a
            action: log
            with: {message: "{{ steps.notify.status }}"}
        on_failure:
          - id: notify
            action: log
            needs: [a]
            with: {message: "{{ steps.a.error }} {{ failure.step }}"}
        """
    assert check(text, registry) == [
        (
            5,
            "step 'a': with.message: steps.notify is used by step 'a' but 'notify' is not in "
            "its needs, so it may not have run yet",
        ),
        (
            9,
            "on_failure step 'notify' needs 'a', which is not in `on_failure`: "
            "needs may only name steps of the same list",
        ),
    ]


def test_duplicate_ids_across_phases_and_finally_lines(registry: Registry) -> None:
    text = """\
        name: demo
        steps:
          - id: a
            action: log
            with: {message: hi}
        finally:
          - id: a
            action: log
            when: "{{ nope }}"
            with: {message: hi}
        """
    assert check(text, registry) == [
        (7, "duplicate step id 'a' (first defined on line 3)"),
        (
            9,
            "finally step 'a': when: unknown name 'nope' "
            "(templates here can use failure, params, run, secrets, steps)",
        ),
    ]


def test_concurrency_key(registry: Registry) -> None:
    text = """\
        name: demo
        params:
          host: {}
        steps:
          - id: a
            action: log
            with: {message: hi}
        concurrency:
          key: "{{ params.hots }}-{{ steps.a.status }}"
        """
    assert check(text, registry) == [
        (9, "concurrency.key: unknown name 'steps' (templates here can use params, run)"),
        (9, "concurrency.key: unknown param 'hots' (did you mean 'host'?) (declared params: host)"),
    ]


@pytest.mark.parametrize(
    ("param", "expected"),
    [
        pytest.param(
            "{type: int, default: many}",
            "param default does not fit: p: 'many' is not an int",
            id="int",
        ),
        pytest.param(
            "{type: choice, choices: [a, b], default: c}",
            "param default does not fit: p: 'c' is not one of a, b",
            id="choice",
        ),
        pytest.param(
            "{type: int, min: 1, default: 0}",
            "param default does not fit: p: 0 is below the minimum 1",
            id="min",
        ),
        pytest.param(
            "{pattern: '[a-z]+', default: ABC}",
            "param default does not fit: p: 'ABC' does not match the pattern [a-z]+",
            id="pattern",
        ),
        pytest.param(
            "{pattern: '[a-z'}", "param p: pattern '[a-z' is not a valid regex", id="bad-regex"
        ),
        pytest.param("{type: int, min: 5, max: 1}", "param p: min is greater than max", id="range"),
        pytest.param(
            "{type: list, default: [a, '']}",
            "param default does not fit: p: item 2 is empty",
            id="list-empty-item",
        ),
        pytest.param(
            "{type: list, items: int, default: '1,x'}",
            "param default does not fit: p: item 2: 'x' is not an int",
            id="list-item-type",
        ),
        pytest.param(
            "{type: list, min: 2, default: [a]}",
            "param default does not fit: p: 1 item given, fewer than the minimum 2 items",
            id="list-count",
        ),
        pytest.param("{type: list, min: 2, max: 1}", "param p: min is greater than max", id="lr"),
        pytest.param(
            "{type: secret, default: k1x}",
            "param default does not fit: p: the given value is 3 characters long; a secret "
            "needs at least 4",
            id="secret-too-short",
        ),
    ],
)
def test_param_problems(param: str, expected: str, registry: Registry) -> None:
    text = f"""\
        name: demo
        params:
          p: {param}
        steps:
          - id: a
            action: log
            with: {{message: hi}}
        """
    [(line, message)] = check(text, registry)
    assert line == 3
    assert message.startswith(expected), message


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def test_load_and_validate(tmp_path: Path, registry: Registry) -> None:
    good = write(tmp_path / "good.yaml", GOOD)
    pb, problems = validate.load_and_validate(good, registry)
    assert pb is not None
    assert pb.name == "good"
    assert problems == []


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        pytest.param("name: x\nsteps: [\n", 3, "YAML syntax error", id="yaml"),
        pytest.param("name: x\nsteps: []\n", 2, "steps: List should have at least 1", id="empty"),
        pytest.param(
            "name: x\nsteps:\n  - id: a\n    action: log\n    colour: red\n"
            "    with: {message: hi}\n",
            5,
            "steps[0].colour: unknown key",
            id="structure",
        ),
    ],
)
def test_load_and_validate_structural_problems(
    tmp_path: Path, registry: Registry, text: str, line: int, message: str
) -> None:
    path = write(tmp_path / "bad.yaml", text)
    pb, problems = validate.load_and_validate(path, registry)
    assert pb is None
    [problem] = problems
    assert (problem.file, problem.line) == (str(path), line)
    assert problem.message.startswith(message), problem.message


def test_load_and_validate_semantic_problem_keeps_playbook(
    tmp_path: Path, registry: Registry
) -> None:
    path = write(tmp_path / "p.yml", "name: x\nsteps:\n  - id: a\n    action: nope\n")
    pb, problems = validate.load_and_validate(path, registry)
    assert pb is not None
    assert [(p.line, p.message.split(" (")[0]) for p in problems] == [
        (4, "step 'a': unknown action 'nope'")
    ]


MINIMAL = "name: {name}\nsteps:\n  - id: a\n    action: log\n    with: {{message: hi}}\n"


def test_validate_paths(tmp_path: Path, registry: Registry) -> None:
    lib = tmp_path / "lib"
    a = write(lib / "a.yaml", MINIMAL.format(name="alpha"))
    write(lib / "b.yml", "# comment\n" + MINIMAL.format(name="alpha"))
    write(lib / "c.yaml", MINIMAL.format(name="Bad Name"))
    write(lib / "notes.txt", "not a playbook")
    extra = write(tmp_path / "single.yaml", MINIMAL.format(name="single"))
    missing = tmp_path / "missing"

    found, problems = validate.validate_paths([lib, extra, missing], registry)

    assert found == {
        "alpha": (playbook.load_file(a)[0], a),
        "single": (playbook.load_file(extra)[0], extra),
    }
    assert [(Path(p.file).name, p.line) for p in problems] == [
        ("b.yml", 2),
        ("c.yaml", 1),
        ("missing", None),
    ]
    assert problems[0].message == f"playbook name 'alpha' is already used by {a}"
    assert problems[2].message.startswith("no such file or directory")


def test_validate_paths_counts_a_file_once(tmp_path: Path, registry: Registry) -> None:
    a = write(tmp_path / "a.yaml", MINIMAL.format(name="alpha"))
    found, problems = validate.validate_paths([tmp_path, a], registry)
    assert list(found) == ["alpha"]
    assert problems == []


SPLICES = """\
name: splices
params:
  host: {required: true}
steps:
  - id: ping
    action: shell
    with:
      script: |
        echo checking
        ping -c1 {{ params.host }}
  - id: quoted
    action: shell
    with: {script: "ping -c1 {{ params.host | quote }} && echo \\"$PARAM_HOST\\""}
  - id: conditional
    action: shell
    needs: [ping]
    with: {script: "echo {% if params.host == 'db' %}database{% endif %} {{ '{{' }}"}
  - id: output
    action: shell
    needs: [ping]
    with: {script: "echo {{ steps.ping.output.stdout | trim }}"}
"""


def test_validate_refuses_values_spliced_into_a_script(tmp_path: Path) -> None:
    path = write(tmp_path / "splices.yaml", SPLICES)
    valid, problems = validate.validate_paths([path], Registry.from_entry_points())
    assert valid == {}
    found = [(p.file, p.line, p.message) for p in problems]
    assert found == [
        (
            str(path),
            8,
            "step 'ping': with.script, line 2 of the script: {{ params.host }} would be "
            "spliced into shell code as is (a value such as 'x; rm -rf ~' would run as a "
            'command): use "$PARAM_HOST" in the script, or {{ params.host | quote }} when '
            "you mean to splice a value",
        ),
        (
            str(path),
            21,
            "step 'output': with.script, line 1 of the script: "
            "{{ steps.ping.output.stdout | trim }} would be spliced into shell code as is "
            "(a value such as 'x; rm -rf ~' would run as a command): pass it through env: "
            '(env: {VALUE: "{{ steps.ping.output.stdout | trim }}"}, then "$VALUE" in the '
            "script), or end the expression with | quote when you mean to splice it",
        ),
    ]
    assert f"{path}:8: step 'ping'" in str(problems[0])


def test_quote_and_param_variables_in_scripts_validate(tmp_path: Path) -> None:
    fixed = SPLICES.replace("ping -c1 {{ params.host }}", 'ping -c1 "$PARAM_HOST"').replace(
        "{{ steps.ping.output.stdout | trim }}", "{{ steps.ping.output.stdout | trim | quote }}"
    )
    path = write(tmp_path / "fixed.yaml", fixed)
    valid, problems = validate.validate_paths([path], Registry.from_entry_points())
    assert problems == [] and list(valid) == ["splices"]


HYPHENATED = """\
name: patch
steps:
  - id: patch-web1
    action: log
    with: {message: patching}
  - id: get
    action: log
    with: {message: fetched}
  - id: approve-prod
    action: log
    needs: [patch-web1, get]
    when: steps.patch-web1.status == 'succeeded' and steps.get.status == 'succeeded'
    with: {message: "{{ steps.patch-web1.status }} {{ steps.get.output }}"}
"""


def test_hyphenated_and_dict_method_step_ids_can_be_referenced(registry: Registry) -> None:
    assert check(HYPHENATED, registry) == []


def test_a_mistyped_hyphenated_id_gets_the_right_hint(registry: Registry) -> None:
    text = HYPHENATED.replace("when: steps.patch-web1", "when: steps.patch-wbe1")
    assert check(text, registry) == [
        (12, "step 'approve-prod': when: unknown step 'patch-wbe1' (did you mean 'patch-web1'?)")
    ]


ARGV = """\
name: argv
params:
  n: {type: int, default: 3}
steps:
  - id: nap
    action: shell
    with: {argv: [sleep, "{{ params.n }}", 5, "true", 0.5]}
  - id: word
    action: shell
    with: {argv: [echo, yes, "no"]}
  - id: bad
    action: shell
    with:
      argv: [echo, "{{ params.n }}", {a: 1}, null]
"""


def test_validate_checks_each_argv_item(tmp_path: Path) -> None:
    """Numbers and quoted words are arguments; a mapping or null item is refused, even
    when another item of the list is a template, and so is a YAML boolean (an unquoted
    yes would run as true)."""
    path = write(tmp_path / "argv.yaml", ARGV)
    _, problems = validate.validate_paths([path], Registry.from_entry_points())
    found = [(p.line, p.message.split(";")[0]) for p in problems]
    assert found == [
        (
            10,
            "step 'word': with.argv[1] is the YAML boolean true (YAML reads unquoted yes, no, "
            "on, off, true and false so): quote the word you mean, e.g. 'yes'",
        ),
        (14, "step 'bad': with.argv[2]: the item is a dict"),
        (14, "step 'bad': with.argv[3]: the item is empty (null)"),
    ]


def test_list_params_validate_with_defaults_and_schedule_params(registry: Registry) -> None:
    text = """\
        name: demo
        params:
          hosts: {type: list, default: [web-1, web-2], help: where}
          ports: {type: list, items: int, default: "80, 443"}
        triggers:
          - schedule: {cron: "0 3 * * *", params: {hosts: [db-1], ports: "22"}}
          - schedule: {cron: "0 4 * * *", params: {ports: "22,,23"}}
        steps:
          - id: a
            action: log
            with: {message: "{{ params.hosts | join(',') }} {{ params.ports | sum }}"}
        """
    assert check(text, registry) == [
        (7, "schedule params: ports: item 2 is empty (separate items with one comma: ports=1,2,3)")
    ]
