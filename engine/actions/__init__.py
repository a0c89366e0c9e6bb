"""Actions: the automations that playbook steps run.

An action is a class with a ``name``, a pydantic ``Inputs`` model for its ``with:`` block
and an async ``run(ctx, inputs)``. It returns the step's output (a JSON-able dict), raises
``ActionError`` to fail the step, or returns ``Suspend`` when the step must wait on the
engine (a timer, human decisions, a child run) rather than on a coroutine, so that the
wait survives a restart. Built-ins and plug-ins register alike, through the entry-point
group ``baton.actions`` (see ``engine.actions.registry``).

An action whose inputs hold shell code names them in ``shell_code_inputs`` (the shell
action: ``("script",)``): a ``{{ }}`` in them that would splice a value into the code is
refused by ``baton validate`` and again by the engine before the step runs
(``engine.playbooks.splices.shell_splices``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from pydantic import BaseModel

from engine.fleet.hosts import HostLookup, no_hosts

if TYPE_CHECKING:
    import aiohttp


@dataclass(frozen=True)
class ApprovalSpec:
    """What an approval step asks for; the engine stores it and waits for decisions."""

    approvers: dict[str, list[str]]
    min_approvals: int
    message: str
    allow_self_approval: bool = False
    timeout_s: float | None = None
    on_timeout: str = "reject"
    show: dict[str, Any] = field(default_factory=dict)
    escalate: dict[str, Any] | None = None  # approvers, timeout_s, on_timeout
    remind_s: float | None = None


@dataclass(frozen=True)
class ChildRunSpec:
    playbook: str
    params: dict[str, Any]


@dataclass(frozen=True)
class Suspend:
    """Park the step: wake at ``until``, on an approval's outcome, or when a child run ends."""

    until: datetime | None = None
    approval: ApprovalSpec | None = None
    child: ChildRunSpec | None = None


class Logger(Protocol):
    """``await ctx.log("text", level="warning")``: a line in the run's log and thread."""

    def __call__(self, message: str, level: str = "info") -> Awaitable[None]: ...


@dataclass
class ActionContext:
    """What an action may know and do. Secrets are revealed here and nowhere else."""

    run_id: str
    step_id: str
    attempt: int
    params: Mapping[str, Any]
    secrets: Mapping[str, str]
    requested_by: str
    now: Callable[[], datetime]
    http: Callable[[], aiohttp.ClientSession]
    log: Logger
    attachments: dict[str, str] = field(default_factory=dict)
    args: dict[str, Any] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)
    """The environment a process the action starts begins with (``engine.actions.stepenv``):
    computed once by whoever builds the engine, never Baton's whole environment."""
    hosts: HostLookup = no_hosts
    """The inventory's hosts by name (``engine.fleet``): an ``ssh`` step's ``host`` may name one."""
    mask: Callable[[str], str] = str
    """The run's secrets masked in a text (``***``): for an action that must cut a text
    before ``ctx.log`` (which masks what it is given) would see all of a secret."""
    partial: dict[str, Any] | None = None
    """What the action had produced when it was cancelled or timed out (a shell step's
    output so far), set by the action before the cancellation propagates: the attempt
    keeps it."""

    def attach(self, name: str, text: str) -> None:
        """Keep a long text (a full stdout, say) with the attempt; the output keeps a tail."""
        self.attachments[name] = text


Output = dict[str, Any]


def shell_code_inputs(action: object) -> tuple[str, ...]:
    """The inputs of ``action`` that hold shell code (none unless it declares them)."""
    return tuple(getattr(action, "shell_code_inputs", ()))


def refuse_splices(action: object, with_: Mapping[str, Any]) -> None:
    """Raise ``ActionError`` when a shell code input of ``action`` splices a value."""
    from engine.errors import ActionError
    from engine.playbooks import splices

    for name in shell_code_inputs(action):
        text = with_.get(name)
        if not isinstance(text, str):
            continue
        found = splices.shell_splices(text)
        if found:
            raise ActionError(
                f"refused to run with.{name}: {found[0].problem()} "
                "(`baton validate` reports every such place)"
            )


class Action(Protocol):
    name: ClassVar[str]
    Inputs: ClassVar[type[BaseModel]]

    async def run(self, ctx: ActionContext, inputs: Any) -> Output | Suspend: ...
