"""``help``, ``playbooks`` and ``describe``: what there is, and what this asker may use."""

from __future__ import annotations

from collections.abc import Callable

from bot.chat.replies import Reply, fail, first_line
from bot.grammar import USAGE, VERBS
from engine.errors import closest
from engine.playbooks import params as paramlib
from engine.playbooks.catalog import Catalog

CHANGING = ("run", "schedule", "unschedule", "retry", "cancel", "pause", "resume", "trigger")
"""The commands that change something: help shows them only to who may run a playbook."""


def help_on(catalog: Catalog, topic: str | None, may_run: Callable[[str], bool]) -> Reply:
    """The commands and playbooks this asker may use (the others are not shown);
    ``may_run`` says whether the asker may run a playbook, by name."""
    if topic is None:
        mine = [pb.name for pb in catalog if may_run(pb.name)]
        verbs = [v for v in USAGE if v not in CHANGING or mine]
        width = max(len(USAGE[v][0]) for v in verbs)
        lines = ["commands:"]
        lines += [f"  {USAGE[v][0]:<{width}}  {USAGE[v][1]}" for v in verbs]
        if mine:
            lines.append("playbooks you may run:")
            lines += [f"  {line}" for line in playbooks(catalog, set(mine)).lines]
        elif len(catalog):
            lines.append("you may run no playbook here; `playbooks` lists them all")
        lines.append("`help COMMAND` for one command, `describe PLAYBOOK` for its params")
        return Reply(lines)
    if topic in catalog and topic not in USAGE:
        return describe(catalog, topic)
    if topic not in USAGE:
        hint = closest(topic, VERBS, n=1)
        extra = f" Did you mean `{hint[0]}`?" if hint else ""
        return fail(f"No command {topic!r}.{extra} `help` lists the commands.")
    usage, what = USAGE[topic]
    lines = [usage, f"  {what}"]
    if topic in ("run", "schedule"):
        for pb in catalog:
            described = paramlib.describe(pb)
            lines.append(f"{pb.name}:" if described else f"{pb.name}: (no params)")
            lines += [f"  {d}" for d in described]
    return Reply(lines)


def playbooks(catalog: Catalog, only: set[str] | None = None) -> Reply:
    shown = [pb for pb in catalog if only is None or pb.name in only]
    if not shown:
        return Reply(["no playbooks loaded"])
    width = max(len(pb.name) for pb in shown)
    return Reply([f"{pb.name:<{width}}  {first_line(pb.description)}".rstrip() for pb in shown])


def describe(catalog: Catalog, name: str) -> Reply:
    pb = catalog.get(name)
    lines = [f"{pb.name}: {first_line(pb.description)}".rstrip()]
    described = paramlib.describe(pb)
    lines.append("params:" if described else "params: (none)")
    lines += [f"  {d}" for d in described]
    lines.append("steps: " + ", ".join(step.id for step in pb.steps))
    example = " ".join(f"{n}=..." for n, spec in pb.params.items() if spec.required)
    lines.append(f"run it: run {pb.name} {example}".rstrip())
    return Reply(lines, data={"playbook": pb.name})
