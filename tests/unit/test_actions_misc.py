"""The small actions: ``log`` and ``python``."""

from __future__ import annotations

import re
from typing import Any

import pytest
from pydantic import ValidationError

from engine.actions import log, python
from engine.errors import ActionError
from tests.fakes.actx import RecordingLog, make_ctx

FAKES = "tests.fakes.pyfuncs"


@pytest.mark.parametrize("level", ["info", "warning", "error"])
async def test_log_writes_the_message(level: str) -> None:
    sink = RecordingLog()
    ctx = make_ctx(log=sink)
    inputs = log.LogInputs.model_validate({"message": "deploying api", "level": level})
    out = await log.LogAction().run(ctx, inputs)
    assert out == {"message": "deploying api", "level": level}
    assert sink.lines == ["deploying api"]


def test_log_level_defaults_to_info_and_is_checked() -> None:
    assert log.LogInputs(message="m").level == "info"
    with pytest.raises(ValidationError, match="'info', 'warning' or 'error'"):
        log.LogInputs.model_validate({"message": "m", "level": "debug"})


async def run_python(call: str, **args: Any) -> dict[str, Any]:
    inputs = python.PythonInputs.model_validate({"call": call, "args": args})
    return await python.PythonAction().run(make_ctx(log=RecordingLog()), inputs)


@pytest.mark.parametrize(
    ("call", "args", "output"),
    [
        pytest.param(
            f"{FAKES}:greet",
            {"name": "ops"},
            {"greeting": "hello ops!", "run": "run-1"},
            id="dict-as-is",
        ),
        pytest.param(
            f"{FAKES}:greet",
            {"name": "ops", "punctuation": "?"},
            {"greeting": "hello ops?", "run": "run-1"},
            id="keyword-args",
        ),
        pytest.param(f"{FAKES}:nothing", {}, {}, id="none-is-empty"),
        pytest.param(f"{FAKES}:answer", {}, {"result": 42}, id="other-is-result"),
        pytest.param(f"{FAKES}:Tools.ping", {}, {"pong": True}, id="dotted-attribute"),
        pytest.param(f"{FAKES}:instance", {"n": 21}, {"double": 42}, id="async-callable-object"),
    ],
)
async def test_python_calls_the_function(
    call: str, args: dict[str, Any], output: dict[str, Any]
) -> None:
    assert await run_python(call, **args) == output


async def test_python_function_gets_the_context() -> None:
    sink = RecordingLog()
    ctx = make_ctx(log=sink, run_id="run-42")
    inputs = python.PythonInputs(call=f"{FAKES}:greet", args={"name": "db"})
    out = await python.PythonAction().run(ctx, inputs)
    assert out["run"] == "run-42"
    assert sink.lines == ["greeting db"]


async def test_python_exception_fails_the_step() -> None:
    with pytest.raises(ActionError, match=r"^RuntimeError: replica lag too high$"):
        await run_python(f"{FAKES}:explode", what="replica lag too high")


async def test_python_action_error_passes_through_with_its_output() -> None:
    with pytest.raises(ActionError, match=r"^refused on purpose$") as info:
        await run_python(f"{FAKES}:refuse")
    assert info.value.output == {"reason": "test"}


@pytest.mark.parametrize(
    ("call", "args", "message"),
    [
        pytest.param(
            "tests.fakes.no_such_module:f",
            {},
            "module not found: tests.fakes.no_such_module (in tests.fakes.no_such_module:f)",
            id="no-module",
        ),
        pytest.param(
            f"{FAKES}:missing",
            {},
            f"{FAKES} has no attribute 'missing' (in {FAKES}:missing)",
            id="no-attribute",
        ),
        pytest.param(
            f"{FAKES}:plain",
            {},
            f"{FAKES}:plain must be an async function (async def), not a plain function",
            id="not-async",
        ),
        pytest.param(
            f"{FAKES}:NOT_CALLABLE",
            {},
            f"{FAKES}:NOT_CALLABLE is not callable (it is a int)",
            id="not-callable",
        ),
        pytest.param(
            f"{FAKES}:greet",
            {"nom": "x"},
            f"bad args for {FAKES}:greet: missing a required argument: 'name'",
            id="bad-args",
        ),
    ],
)
async def test_python_bad_target(call: str, args: dict[str, Any], message: str) -> None:
    with pytest.raises(ActionError) as info:
        await run_python(call, **args)
    assert str(info.value) == message


@pytest.mark.parametrize(
    "call",
    [
        pytest.param("tests.fakes.pyfuncs", id="no-colon"),
        pytest.param("tests.fakes.pyfuncs:", id="no-function"),
        pytest.param(":greet", id="no-module"),
        pytest.param("tests/fakes/pyfuncs.py:greet", id="a-path"),
        pytest.param("a:b:c", id="two-colons"),
    ],
)
def test_python_call_must_be_module_colon_function(call: str) -> None:
    with pytest.raises(
        ValidationError, match=re.escape("not of the form 'package.module:function'")
    ):
        python.PythonInputs.model_validate({"call": call})
