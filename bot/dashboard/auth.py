"""Who is logged in to the dashboard. stand-in: replaced at merge by the real module
(login page, session cookie, CSRF, SSO proxy header, roles, security headers).

The rest of ``bot.dashboard`` codes against this interface only: ``WHO`` (the request
key the real middleware sets), ``Who``, ``who``, ``csrf_token``, ``middlewares`` and
``add_routes``. Until then everyone is ``Who("local", "admin")`` unless something earlier
in the request (a test's middleware) put a ``Who`` under ``WHO``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web

WHO = "baton.who"
ROLES = ("viewer", "operator", "admin")


@dataclass(frozen=True)
class Who:
    """The person behind a request and their dashboard role."""

    name: str
    role: str  # "viewer" | "operator" | "admin"

    @property
    def can_act(self) -> bool:
        return self.role != "viewer"


LOCAL = Who("local", "admin")


def who(request: web.Request) -> Who:
    """The logged-in person (stand-in: ``Who("local", "admin")``)."""
    found = request.get(WHO)
    return found if isinstance(found, Who) else LOCAL


def csrf_token(request: web.Request) -> str:
    """The token every form carries as ``<input name="csrf">`` (stand-in: not checked)."""
    return "stand-in"


def middlewares(settings: Any, baton: Any) -> list[Any]:
    """The login, CSRF and security-header middlewares (stand-in: none)."""
    return []


def add_routes(app: web.Application, settings: Any, baton: Any) -> None:
    """``/login`` and ``/logout`` (stand-in: nothing)."""
