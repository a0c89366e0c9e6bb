"""The ``python`` action: call an async function from an importable module.

Inputs::

    call: mycompany.runbooks.db:failover     # "package.module:function"
    args: {region: "{{ params.region }}"}    # keyword arguments

The function is called as ``await fn(ctx, **args)`` with the step's ``ActionContext``
(params, secrets, ``ctx.http()``, ``ctx.log``). It must be a coroutine function
(``async def``). Its return value is the step output: a dict as is, ``None`` as ``{}``,
anything else as ``{"result": value}``; it should be JSON-able. An exception fails the
step with ``"<ExceptionType>: <message>"``; an ``ActionError`` it raises passes through
unchanged (with its output). The attribute part may be dotted (``module:Class.method``).

The module is imported in the engine's process, once (Python caches imports): only
modules installed alongside Baton or on its ``PYTHONPATH`` can be called.
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Callable
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, field_validator

from engine.actions import ActionContext
from engine.errors import ActionError

_DOTTED = r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*"
_CALL = re.compile(rf"(?P<module>{_DOTTED}):(?P<attr>{_DOTTED})")


class PythonInputs(BaseModel):
    model_config = ConfigDict(extra="forbid")

    call: str
    args: dict[str, Any] = {}

    @field_validator("call")
    @classmethod
    def _call_form(cls, value: str) -> str:
        if not _CALL.fullmatch(value.strip()):
            raise ValueError(
                f"{value!r} is not of the form 'package.module:function' "
                "(dotted module path, a colon, the function's name)"
            )
        return value.strip()


class PythonAction:
    name: ClassVar[str] = "python"
    Inputs: ClassVar[type[BaseModel]] = PythonInputs

    async def run(self, ctx: ActionContext, inputs: PythonInputs) -> dict[str, Any]:
        fn = resolve(inputs.call)
        try:
            inspect.signature(fn).bind(ctx, **inputs.args)
        except TypeError as exc:
            raise ActionError(f"bad args for {inputs.call}: {exc}") from None
        except ValueError:
            pass  # no signature to check (some builtins); let the call itself tell
        try:
            result = await fn(ctx, **inputs.args)
        except ActionError:
            raise
        except Exception as exc:
            raise ActionError(f"{type(exc).__name__}: {exc}") from exc
        if result is None:
            return {}
        if isinstance(result, dict):
            return result
        return {"result": result}


def resolve(call: str) -> Callable[..., Any]:
    """Import ``package.module:function`` and return the async callable it names."""
    match = _CALL.fullmatch(call.strip())
    if match is None:
        raise ActionError(f"{call!r} is not of the form 'package.module:function'")
    module_name, attr_path = match["module"], match["attr"]
    try:
        obj: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and f"{module_name}.".startswith(f"{exc.name}."):
            raise ActionError(f"module not found: {module_name} (in {call})") from None
        raise ActionError(f"importing {module_name} failed: {type(exc).__name__}: {exc}") from exc
    except Exception as exc:
        raise ActionError(f"importing {module_name} failed: {type(exc).__name__}: {exc}") from exc
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ActionError(f"{module_name} has no attribute {attr_path!r} (in {call})") from None
    if not callable(obj):
        raise ActionError(f"{call} is not callable (it is a {type(obj).__name__})")
    if not _is_async(obj):
        raise ActionError(f"{call} must be an async function (async def), not a plain function")
    return obj


def _is_async(obj: Any) -> bool:
    if inspect.iscoroutinefunction(obj):
        return True
    # an instance of a class with an ``async def __call__``
    return inspect.iscoroutinefunction(type(obj).__call__)
