"""Who an HTTP API request speaks for, and what it may then do.

Two kinds of bearer token:

- ``BATON_API_TOKEN``, the service token: a trusted integration (CI, a web form, a
  script). It names whom it acts for itself (``requested_by``, ``user``, ``by``), as
  before people had tokens; runs it starts are not checked against the access rules.
- A person's own token (``users:`` in ``BATON_CONFIG``, kept there as its SHA-256): the
  request acts as that person. A ``requested_by``, ``user`` or ``by`` it gives must name
  them (their name or Slack id), or it is refused with 403; their role and the access
  rules decide what they may do, as in chat.

The functions here are pure or take the ``Baton`` they need: ``bot.api`` turns a
``Denied`` into its JSON error answer.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from engine.access import people as peoplelib
from engine.access.rules import Actor
from engine.errors import NotAllowed

if TYPE_CHECKING:
    from pydantic import SecretStr

    from bot.app import Baton
    from bot.commands import Command


@dataclass(frozen=True)
class Denied:
    """A request refused before anything happens: the status and what to do."""

    status: int
    message: str


@dataclass(frozen=True)
class Caller:
    """The service (``person`` None) or one person."""

    person: peoplelib.Person | None = None

    @property
    def name(self) -> str:
        return self.person.name if self.person is not None else "api"


def token_matches(sent: str, expected: SecretStr) -> bool:
    return hmac.compare_digest(sent.encode(), expected.get_secret_value().encode())


def identify(
    token: str | None, service: SecretStr | None, people: peoplelib.People
) -> Caller | Denied:
    """Whose ``token`` (the bearer token sent, if any) this is."""
    if service is None and not people.tokens:
        return Denied(
            403,
            "the HTTP API's writes are disabled: set BATON_API_TOKEN to enable them "
            "(or give people their own tokens under `users:` in BATON_CONFIG)",
        )
    if token is None:
        own = " or your own token" if people.tokens else ""
        send = f"send Authorization: Bearer $BATON_API_TOKEN{own}"
        return Denied(401, f"missing bearer token: {send}")
    is_service = service is not None and token_matches(token, service)
    person = people.by_token(token)  # compared either way: the timing tells nothing
    if is_service:
        return Caller()
    if person is not None:
        return Caller(person)
    return Denied(401, "wrong bearer token")


def on_behalf(caller: Caller, given: Any, field: str, default: str) -> str | Denied:
    """Whom a write acts for. The service token names them in ``field`` (``default``
    when left out); a person's token acts for that person, and a ``field`` that names
    somebody else is refused."""
    person = caller.person
    if person is None:
        return str(given) if given else default
    if given and given not in person.ids:
        return Denied(
            403,
            f"this token is {person.name}'s: {field} must be {person.name} or left out, "
            f"not {given!r} (the service token BATON_API_TOKEN may act for others)",
        )
    return person.name


async def permitted(baton: Baton, remote: str, user: str, command: Command) -> Denied | None:
    """``user`` may do ``command`` under their role and the access rules (as in chat);
    a refusal is audited, with ``remote`` (the sender's address)."""
    from bot import grammar

    where = {"front_end": "api", "user": user, "remote": remote}
    try:
        await baton.commands().authorize(Actor(id=user, via="api"), command, where)
    except NotAllowed as exc:
        verb, target = grammar.verb_of(command), grammar.target_of(command)
        await baton.engine.audit(user, f"api:{verb}", target, {}, "refused")
        return Denied(403, str(exc))
    return None
