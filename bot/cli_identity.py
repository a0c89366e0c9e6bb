"""Who a ``baton`` command acts as, and whether it may: ``--as USER`` and the access
rules, the same as chat's, with refusals audited."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.app import Baton
    from bot.commands import Command


async def acting_as(baton: Baton, asked: str | None) -> str:
    """Who the command line acts as: the login user, or ``--as USER`` where BATON_CONFIG
    allows it (``console_as``; anyone when the file has neither rules nor people). A
    refusal names the setting and is audited."""
    import getpass

    from engine.access import people
    from engine.errors import NotAllowed

    me = getpass.getuser()
    if asked is None:
        return me
    if not asked.strip():
        raise NotAllowed("--as needs a name: leave it out to act as yourself")
    why = people.may_act_as(baton.rules, me, asked)
    if why is not None:
        where = {"front_end": "cli", "user": me}
        await baton.engine.audit(me, "cli:as", asked, {}, "refused", where)
        raise NotAllowed(why)
    return asked


async def check(baton: Baton, user: str, command: Command) -> None:
    """The command line's identity goes through the same access rules as chat; a refusal
    is audited like one in chat."""
    from engine.access.rules import Actor
    from engine.errors import NotAllowed

    where = {"front_end": "cli", "user": user}
    try:
        await baton.commands().authorize(Actor(id=user, via="cli"), command, where)
    except NotAllowed:
        verb = type(command).__name__.lower()
        target = getattr(command, "playbook", "") or getattr(command, "schedule_id", "")
        await baton.engine.audit(user, f"cli:{verb}", target, {}, "refused", where)
        raise
