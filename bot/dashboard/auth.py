"""Who is looking at the dashboard, and what they may do there.

Three ways to be somebody, checked in this order on every dashboard request:

- **An SSO proxy.** A request from an address in ``BATON_TRUSTED_PROXIES`` carrying
  ``BATON_PROXY_USER_HEADER`` is the person it names (by name or Slack id under
  ``users:``; anybody else gets a 403 page saying so). From any other address the header
  is ignored: a browser cannot name itself.
- **A session.** ``POST /login`` with a person's own API token (``users:``,
  ``token_sha256``) opens a session: a random id in an HttpOnly, SameSite=Strict cookie
  (Secure over https, or behind a trusted proxy saying ``X-Forwarded-Proto: https``),
  kept in the database (``engine.access.sessions``) until ``BATON_SESSION_TTL`` or logout.
- **The local person.** With nobody under ``users:`` and ``BATON_HOST`` a loopback
  address, the dashboard is open to this machine and acts as the login user who started
  Baton (``getpass.getuser()``) with the role ``operator``: the same person, with the same
  powers, as ``baton console`` started in the same terminal (the access rules apply to
  them as there). Not ``admin``: an open page should not pass every access rule. Not
  with ``BATON_API_READ_TOKEN=required`` either (the pages show what the API's reads
  show). ``baton serve`` refuses a non-loopback ``BATON_HOST`` without ``users:``
  (``bot.serve``).

Anybody else is sent to ``/login?next=PATH`` (a local path only). Every form POST must
carry the session's CSRF token (``<input name="csrf">`` or an ``X-CSRF-Token`` header,
compared in constant time) and must not come from another site (``Origin``). Every
dashboard answer carries a strict Content-Security-Policy and its companions. Logins are
rate-limited per address (``BATON_LOGIN_RATE``) and audited.
"""

from __future__ import annotations

import getpass
import hmac
import ipaddress
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

import jinja2
from aiohttp import web

from bot.dashboard import forms
from bot.settings_dashboard import is_loopback
from engine import audit
from engine.access import sessions
from engine.access.people import People, Person
from engine.playbooks.model import parse_rate

if TYPE_CHECKING:
    from bot.app import Baton
    from bot.settings import Settings

COOKIE = "baton_session"
LOGIN_COOKIE = "baton_login"
"""The login form's own CSRF token (double submit): there is no session yet to bind to."""
OPEN_PREFIXES = ("/api/", "/alerts/", "/slack/", "/static/")
OPEN_PATHS = frozenset({"/api", "/slack", "/static", "/healthz", "/metrics"})
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_PAGES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"), autoescape=True
)


@dataclass(frozen=True)
class Who:
    """The person behind a dashboard request."""

    name: str
    role: str  # "viewer" | "operator" | "admin"
    local: bool = False
    """The local person (no ``users:``): nobody logged in, so there is no logging out
    (a new session would open at once); the page shows no *Log out* button."""

    @property
    def can_act(self) -> bool:
        return self.role != "viewer"


WHO = web.RequestKey("baton.who", Who)
"""Request key: the ``Who`` of a dashboard request (set by the middleware). A
``RequestKey`` named ``baton.who`` rather than the bare string: aiohttp warns about
string keys on a request, and the test suite turns warnings into errors."""
SESSION = web.RequestKey("baton.session", sessions.Session)
"""Request key: the request's ``engine.access.sessions.Session`` (for its CSRF token)."""
_NEXT = web.RequestKey("baton.login_next", str)


def who(request: web.Request) -> Who:
    """The logged-in person of a dashboard request."""
    return request[WHO]


def csrf_token(request: web.Request) -> str:
    """The token every dashboard form carries as ``<input name="csrf">``."""
    session = request.get(SESSION)
    return session.csrf if session is not None else ""


def is_dashboard(path: str) -> bool:
    """Pages and forms of the dashboard: everything but the API, the alert webhooks,
    Slack, health, metrics and static files (those have their own rules)."""
    return path not in OPEN_PATHS and not path.startswith(OPEN_PREFIXES)


def local_path(target: str | None) -> str:
    """``target`` when it is a path of this site (``/runs/x?y=1``), else ``/``: a
    ``next`` never sends a browser elsewhere (``//evil``, ``https://...``, ``/\\evil``)."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return "/"
    if any(ch in target for ch in "\\\r\n\t") or any(ord(ch) < 32 for ch in target):
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or parts.path.startswith(("/login", "/logout")):
        return "/"
    return target


def page(title: str, message: str = "", status: int = 200, **form: Any) -> web.Response:
    """The login page (``form``: its fields) or a notice (no form) as HTML."""
    text = _PAGES.get_template("login.html").render(
        title=title, message=message, form=bool(form), **form
    )
    return web.Response(text=text, status=status, content_type="text/html")


class Gate:
    """The dashboard middleware's state: the settings and the people it checks against."""

    def __init__(self, settings: Settings, baton: Baton) -> None:
        self.settings = settings
        self.baton = baton
        self.proxies = settings.proxies
        # no local person where API reads need a token: the page shows what they show
        self.local = is_loopback(settings.host) and settings.api_read_token == "open"

    @property
    def people(self) -> People:
        return self.baton.rules.people

    def trusted(self, request: web.Request) -> bool:
        """Whether the request comes straight from one of BATON_TRUSTED_PROXIES."""
        try:
            address = ipaddress.ip_address(request.remote or "")
        except ValueError:
            return False
        return any(address in network for network in self.proxies)

    def secure(self, request: web.Request) -> bool:
        forwarded = request.headers.get("X-Forwarded-Proto", "").lower() == "https"
        return request.secure or (forwarded and self.trusted(request))

    def client(self, request: web.Request) -> str:
        """The address a request comes from: behind a trusted proxy, the last address
        of ``X-Forwarded-For`` the proxies did not add."""
        remote = request.remote or ""
        if not self.trusted(request):
            return remote
        hops = [h.strip() for h in request.headers.get("X-Forwarded-For", "").split(",")]
        for hop in reversed([h for h in hops if h]):
            try:
                if not any(ipaddress.ip_address(hop) in n for n in self.proxies):
                    return hop
            except ValueError:
                break
        return remote

    async def audit(self, request: web.Request, actor: str, action: str, outcome: str) -> None:
        where = {"front_end": "dashboard", "remote": self.client(request)}
        await self.baton.engine.audit(actor, f"dashboard:{action}", "", {}, outcome, where)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not is_dashboard(request.path):
            return await handler(request)
        try:
            response = await self.guarded(request, handler)
        except web.HTTPException as exc:
            exc.headers.update(HEADERS)
            raise
        response.headers.update(HEADERS)
        return response

    async def guarded(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not self.settings.dashboard:
            return page("No dashboard", "The dashboard is off here (BATON_DASHBOARD=false).", 404)
        if request.method in UNSAFE and not same_site(request):
            return page("Refused", "A form from another site is refused: use Baton's own.", 403)
        person = await self.proxy_person(request)
        if isinstance(person, web.Response):
            return person
        session = await self.session(request, person)
        if session is None:
            if request.path == "/login":
                return await handler(request)
            if request.method in ("GET", "HEAD"):
                raise web.HTTPSeeOther(f"/login?next={quote(request.path_qs, safe='/')}")
            return page("Log in first", "This needs a login: log in, then try again.", 401)
        request[SESSION] = session
        found = self.people.find(session.person)
        # a session's person is one of ``users:``, or (with nobody there) the local person
        local = Who(session.person, "operator", local=True)
        request[WHO] = Who(found.name, found.role) if found else local
        if request.method in UNSAFE and request.path != "/login":
            sent = request.headers.get("X-CSRF-Token") or (
                await forms.posted(request, self.settings.read_timeout)
            ).get("csrf")
            if not isinstance(sent, str) or not hmac.compare_digest(sent, session.csrf):
                return page(
                    "Refused",
                    "This form's CSRF token is missing or stale (an old tab, or a form "
                    "from elsewhere): reload the page and send it again.",
                    403,
                )
        try:
            response = await handler(request)
        except web.HTTPException as exc:  # a redirect keeps the session it was given
            self.keep(request, exc, session)
            raise
        self.keep(request, response, session)
        return response

    def keep(
        self, request: web.Request, response: web.StreamResponse, session: sessions.Session
    ) -> None:
        """Give the browser the session's cookie when it does not hold it yet."""
        if request.cookies.get(COOKIE) != session.id and not response.prepared:
            self.set_cookie(request, response, session)

    async def proxy_person(self, request: web.Request) -> Person | web.Response | None:
        """The person a trusted SSO proxy names (None: no proxy, or no header)."""
        header = self.settings.proxy_user_header
        if not header or not self.trusted(request):
            return None
        given = request.headers.getall(header, [])
        if len(given) > 1:  # a proxy that appends its header lets the client pick one
            await self.audit(request, ", ".join(given)[:200], "proxy_login", "refused")
            return page(
                "Refused",
                f"The request names {len(given)} people in {header}: a proxy must set it "
                "once, replacing whatever the client sent.",
                400,
            )
        name = given[0].strip() if given else ""
        if not name:
            return None
        person = self.people.find(name)
        if person is None:
            await self.audit(request, name, "proxy_login", "refused")
            return page(
                "Not a Baton user",
                f"The proxy says you are {name!r} ({header}), and nobody of that name is "
                "under `users:` in BATON_CONFIG: ask a Baton admin to add you there, with "
                "your role.",
                403,
            )
        return person

    async def session(
        self, request: web.Request, proxied: Person | None
    ) -> sessions.Session | None:
        """The request's live session: its cookie's (while its person is still one of
        ``users:``, or the local person while there are none), or a new one for a person
        the proxy names or for the local person (a GET only: a form needs the session it
        came from). A client that keeps no cookie gets a new session per page; they end
        with ``BATON_SESSION_TTL`` and are cleared as new ones open."""
        now = self.baton.engine.clock.now()
        found = await sessions.find(self.baton.store, request.cookies.get(COOKIE, ""), now)
        if proxied is not None:
            if found is not None and found.person == proxied.name:
                return found
            return await self.open(request, proxied.name, "proxy_login")
        if found is not None and (self.people.find(found.person) if self.people else self.local):
            return found
        if not self.people and self.local and request.method in ("GET", "HEAD"):
            return await self.open(request, getpass.getuser(), "local_login")
        return None

    async def open(self, request: web.Request, name: str, action: str) -> sessions.Session:
        now = self.baton.engine.clock.now()
        opened = await sessions.open_session(
            self.baton.store, name, now, self.settings.session_seconds
        )
        await self.audit(request, name, action, "ok")
        return opened

    def set_cookie(
        self, request: web.Request, response: web.StreamResponse, session: sessions.Session
    ) -> None:
        response.set_cookie(
            COOKIE,
            session.id,
            max_age=int(self.settings.session_seconds),
            path="/",
            httponly=True,
            samesite="Strict",
            secure=self.secure(request),
        )


def same_site(request: web.Request) -> bool:
    """A form sent from a page of this site: its ``Origin`` (when the browser sends one)
    is this host, and the browser does not say it is cross-site."""
    origin = request.headers.get("Origin")
    if origin is not None and urlsplit(origin).netloc != request.host:
        return False
    return request.headers.get("Sec-Fetch-Site", "same-origin") != "cross-site"


class Limiter:
    """At most ``count`` attempts per address in any ``period`` seconds, counted by this
    process (every attempt, before anything is read or written). ``Login`` then counts
    the address's audited logins on every node, so replicas behind a balancer share
    one budget."""

    def __init__(self, rate: str) -> None:
        self.count, self.period = parse_rate(rate)
        self.seen: dict[str, deque[float]] = {}

    def allow(self, address: str) -> bool:
        now = time.monotonic()
        if len(self.seen) > 10_000:  # forget the quiet addresses
            self.seen = {a: d for a, d in self.seen.items() if d and d[-1] > now - self.period}
        times = self.seen.setdefault(address, deque())
        while times and times[0] <= now - self.period:
            times.popleft()
        if len(times) >= self.count:
            return False
        times.append(now)
        return True


class Login:
    """``/login`` and ``/logout``."""

    def __init__(self, gate: Gate, limiter: Limiter) -> None:
        self.gate = gate
        self.limiter = limiter

    async def form(self, request: web.Request, message: str = "", status: int = 200) -> Any:
        target = local_path(request.query.get("next") or request.get(_NEXT))
        if WHO in request and not message:
            raise web.HTTPSeeOther(target)
        token = request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(24)
        response = page("Log in", message, status, csrf=token, next=target)
        response.set_cookie(
            LOGIN_COOKIE,
            token,
            path="/login",
            httponly=True,
            samesite="Strict",
            secure=self.gate.secure(request),
        )
        return response

    async def submit(self, request: web.Request) -> web.StreamResponse:
        gate = self.gate
        address = gate.client(request)
        if not self.limiter.allow(address) or await self.tried(address) >= self.limiter.count:
            await gate.audit(request, address, "login", "limited")
            limited = page(
                "Too many attempts",
                f"Too many logins from {address}: wait a little "
                f"(BATON_LOGIN_RATE={gate.settings.login_rate}), then try again.",
                429,
            )
            limited.headers["Retry-After"] = str(max(1, round(self.limiter.period)))
            return limited
        data = await forms.posted(request, gate.settings.read_timeout)
        request[_NEXT] = str(data.get("next") or "")
        sent, expected = str(data.get("csrf") or ""), request.cookies.get(LOGIN_COOKIE, "")
        if not expected or not hmac.compare_digest(sent, expected):
            return await self.form(request, "The form was stale: log in again.", 403)
        token = str(data.get("token") or "").strip()
        person = gate.people.by_token(token) if token else None
        if person is None:
            await gate.audit(request, address, "login", "refused")
            return await self.form(
                request,
                "That token is nobody's here: paste your own API token (its SHA-256 is "
                "your `token_sha256` under `users:` in BATON_CONFIG).",
                401,
            )
        opened = await sessions.open_session(
            gate.baton.store,
            person.name,
            gate.baton.engine.clock.now(),
            gate.settings.session_seconds,
        )
        await gate.audit(request, person.name, "login", "ok")
        response = web.HTTPSeeOther(local_path(request[_NEXT]))
        gate.set_cookie(request, response, opened)
        response.del_cookie(LOGIN_COOKIE, path="/login")
        raise response

    async def tried(self, address: str) -> int:
        """Logins from ``address`` within the rate's period, on every node."""
        since = self.gate.baton.engine.clock.now() - timedelta(seconds=self.limiter.period)
        query = audit.tries_from("dashboard:login", address, since)
        return int(await self.gate.baton.store.scalar(query))

    async def logout(self, request: web.Request) -> web.StreamResponse:
        session = request[SESSION]
        await sessions.close(self.gate.baton.store, session.id)
        await self.gate.audit(request, session.person, "logout", "ok")
        response = web.HTTPSeeOther("/login")
        response.del_cookie(COOKIE, path="/")
        raise response


def middlewares(settings: Settings, baton: Baton) -> list[Any]:
    """The dashboard's middlewares: who is looking, CSRF, security headers."""
    return [Gate(settings, baton).middleware]


def add_routes(app: web.Application, settings: Settings, baton: Baton) -> None:
    """``GET /login`` (the form), ``POST /login`` (a token in, a session out) and
    ``POST /logout`` (the session ends)."""
    login = Login(Gate(settings, baton), Limiter(settings.login_rate))
    app.router.add_get("/login", login.form)
    app.router.add_post("/login", login.submit)
    app.router.add_post("/logout", login.logout)
