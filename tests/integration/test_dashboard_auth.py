"""Who is logged in to the dashboard (``bot.dashboard.auth``) against a real Baton and
database: logins with a person's token, sessions in the database, logout, CSRF and
Origin checks, the SSO proxy's header, the local person, security headers, the login
rate and the audit; the viewer sees no action, the operator's retry works."""

from __future__ import annotations

import getpass
import hashlib
import html
import os
import re
import subprocess
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer
from yarl import URL

from bot import api
from bot.app import Baton, open_baton
from bot.dashboard import auth
from bot.serve import refuse_an_open_dashboard
from bot.settings import Settings
from engine.access import config as accessconfig
from engine.access.rules import AccessRules
from engine.errors import BatonError
from engine.timing import ManualClock, ManualTimers
from storage import tables as t
from tests.acceptance.serve import BATON

ALICE, VIC = "alice-token-0123456789", "vic-token-0123456789"
FAIL = """
name: fail
steps:
  - id: boom
    action: shell
    with: {script: "exit 3"}
"""


def sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


CONFIG = f"""
users:
  alice: {{token_sha256: {sha(ALICE)}, role: operator}}
  vic: {{token_sha256: {sha(VIC)}, role: viewer}}
"""
Client = TestClient[Any, Any]
Serve = Callable[..., Awaitable[tuple[Client, Baton]]]


@pytest.fixture
async def serve(tmp_path: Path, db_url: str) -> AsyncIterator[Serve]:
    """A Baton with its HTTP app on a test server; ``people``: BATON_CONFIG has users."""
    opened: list[Any] = []

    async def start(people: bool = True, **given: Any) -> tuple[Client, Baton]:
        folder = tmp_path / "playbooks"
        folder.mkdir(exist_ok=True)
        (folder / "fail.yaml").write_text(textwrap.dedent(FAIL))
        config = tmp_path / "baton.yaml"
        config.write_text(CONFIG if people else "groups: {}\n")
        settings = Settings(
            database_url=db_url,
            playbooks=folder,
            key_file=tmp_path / "key",
            config=config,
            **given,
        )
        clock = ManualClock()
        context = open_baton(settings, clock=clock, timers=ManualTimers(clock))
        baton = await context.__aenter__()
        client = TestClient(TestServer(api.create_app(settings, baton)))
        await client.start_server()
        opened.append((client, context))
        return client, baton

    yield start
    for client, context in reversed(opened):
        await client.close()
        await context.__aexit__(None, None, None)


def csrf_of(text: str) -> str:
    found = re.search(r"name=.csrf. value=.([^'\"]*)", text)
    assert found is not None, text
    return found.group(1)


async def login(client: Client, token: str, next_: str = "/") -> ClientResponse:
    form = await client.get("/login")
    csrf = csrf_of(await form.text())
    data = {"token": token, "csrf": csrf, "next": next_}
    return await client.post("/login", data=data, allow_redirects=False)


async def audit_rows(baton: Baton) -> list[tuple[str, str, str]]:
    rows = await baton.store.all(
        sa.select(t.audit).where(t.audit.c.action.like("dashboard:%")).order_by(t.audit.c.id)
    )
    return [(r.actor, r.action, r.outcome) for r in rows]


async def test_pages_need_a_login_and_the_login_page_is_strict(serve: Serve) -> None:
    client, _ = await serve()
    page = await client.get("/runs/abc?x=1", allow_redirects=False)
    assert page.status == 303
    location = URL(page.headers["Location"])
    assert (location.path, location.query["next"]) == ("/login", "/runs/abc?x=1")
    form = await client.get("/login?next=/runs/abc%3Fx%3D1")
    text = await form.text()
    assert form.status == 200 and 'value="/runs/abc?x=1"' in text
    for name, value in auth.HEADERS.items():
        assert form.headers[name] == value
    assert "<script" not in text and "style=" not in text
    # the API, webhooks and health are not dashboard pages: no login, no redirect
    assert (await client.get("/healthz")).status == 200
    assert (await client.get("/api/runs", allow_redirects=False)).status == 200
    assert "Content-Security-Policy" not in (await client.get("/healthz")).headers


async def test_a_good_token_logs_in_a_bad_one_does_not(serve: Serve) -> None:
    client, baton = await serve()
    bad = await login(client, "nobody's-token")
    assert bad.status == 401 and "That token is nobody's here" in html.unescape(await bad.text())

    good = await login(client, ALICE, next_="//evil.example/x")

    assert good.status == 303 and good.headers["Location"] == "/"  # no open redirect
    cookie = good.cookies[auth.COOKIE]
    assert cookie["httponly"] and cookie["samesite"] == "Strict" and not cookie["secure"]
    rows = await baton.store.all(sa.select(t.dashboard_sessions))
    assert [(r.person, r.id_sha256) for r in rows] == [("alice", sha(cookie.value))]
    home = await client.get("/")
    assert home.status == 200 and "alice (operator)" in await home.text()
    assert await audit_rows(baton) == [
        ("127.0.0.1", "dashboard:login", "refused"),
        ("alice", "dashboard:login", "ok"),
    ]


async def test_logout_needs_the_csrf_token_and_ends_the_session(serve: Serve) -> None:
    client, baton = await serve()
    await login(client, ALICE)
    csrf = csrf_of(await (await client.get("/")).text())

    forged = await client.post("/logout", data={"csrf": "guess"}, allow_redirects=False)
    assert forged.status == 403 and "CSRF token is missing or stale" in await forged.text()
    other_site = await client.post(
        "/logout",
        data={"csrf": csrf},
        headers={"Origin": "https://evil.example"},
        allow_redirects=False,
    )
    assert other_site.status == 403
    out = await client.post("/logout", data={"csrf": csrf}, allow_redirects=False)

    assert out.status == 303 and out.headers["Location"] == "/login"
    assert await baton.store.all(sa.select(t.dashboard_sessions)) == []
    assert (await client.get("/", allow_redirects=False)).status == 303
    assert (await audit_rows(baton))[-1] == ("alice", "dashboard:logout", "ok")


async def test_a_session_ends_after_its_time(serve: Serve) -> None:
    client, baton = await serve(session_ttl="1h")
    await login(client, ALICE)
    clock = baton.engine.clock
    assert isinstance(clock, ManualClock)
    clock.advance(timedelta(minutes=59))
    assert (await client.get("/", allow_redirects=False)).status == 200
    clock.advance(timedelta(minutes=1))
    assert (await client.get("/", allow_redirects=False)).status == 303
    await login(client, ALICE)  # a new session clears the ended one from the table
    assert len(await baton.store.all(sa.select(t.dashboard_sessions))) == 1


async def test_a_viewer_sees_no_action_an_operator_retries(serve: Serve) -> None:
    client, baton = await serve()
    run_id = await baton.engine.start_run(_request("fail"))
    await baton.engine.wait_idle()

    await login(client, VIC)
    seen = await (await client.get(f"/runs/{run_id}")).text()
    assert "vic (viewer)" in seen and 'data-status="failed"' in seen
    assert 'id="action-retry-failed"' not in seen and 'id="run-actions"' not in seen
    forged = await client.post(
        f"/runs/{run_id}/retry-failed", data={"csrf": csrf_of(seen)}, allow_redirects=False
    )
    assert forged.status == 403 and (await baton.engine.records.row(run_id)).attempt == 1

    client.session.cookie_jar.clear()
    await login(client, ALICE)
    page = await (await client.get(f"/runs/{run_id}")).text()
    assert 'id="action-retry-failed"' in page
    assert f'action="/runs/{run_id}/retry-failed"' in page
    done = await client.post(
        f"/runs/{run_id}/retry-failed", data={"csrf": csrf_of(page)}, allow_redirects=False
    )
    assert done.status == 303
    await baton.engine.wait_idle()
    row = await baton.engine.records.row(run_id)
    assert (row.attempt, row.status) == (2, "failed")


def _request(playbook: str) -> Any:
    from engine.runs.requests import RunRequest

    return RunRequest(playbook=playbook, params={}, requested_by="alice", trigger="api")


async def test_logins_are_rate_limited_per_address(serve: Serve) -> None:
    client, baton = await serve(login_rate="2/1h")
    assert (await login(client, "wrong")).status == 401
    assert (await login(client, "wrong")).status == 401
    limited = await login(client, ALICE)
    assert limited.status == 429 and "BATON_LOGIN_RATE=2/1h" in await limited.text()
    assert limited.headers["Retry-After"] == "3600"  # the rate's period, in seconds
    assert [o for _, _, o in await audit_rows(baton)] == ["refused", "refused", "limited"]


async def test_replicas_share_one_login_budget_per_address(serve: Serve) -> None:
    """Behind a balancer, each replica counting alone would multiply the tries."""
    one, baton = await serve(login_rate="2/1h")
    other, _ = await serve(login_rate="2/1h")  # another replica on the same database
    assert (await login(one, "wrong")).status == 401
    assert (await login(other, "wrong")).status == 401
    for client in (one, other):
        limited = await login(client, ALICE)
        assert limited.status == 429 and "Too many logins from 127.0.0.1" in await limited.text()
    outcomes = [o for _, _, o in await audit_rows(baton)]
    assert outcomes == ["refused", "refused", "limited", "limited"]


async def test_behind_a_trusted_proxy_the_rate_counts_the_client_address(serve: Serve) -> None:
    client, baton = await serve(trusted_proxies="127.0.0.0/8", login_rate="1/1h")
    one, two = {"X-Forwarded-For": "203.0.113.7"}, {"X-Forwarded-For": "198.51.100.9"}
    for sender in (one, two):
        sent = await client.post("/login", data={"token": "x"}, headers=sender)
        assert sent.status == 403  # no login form cookie: counted all the same
    again = await client.post("/login", data={"token": "x"}, headers=one)
    assert again.status == 429 and "Too many logins from 203.0.113.7" in await again.text()
    remotes = await baton.store.all(
        sa.select(t.audit.c.source).where(t.audit.c.outcome == "limited")
    )
    assert [r.source["remote"] for r in remotes] == ["203.0.113.7"]


async def test_a_trusted_proxy_names_the_person(serve: Serve) -> None:
    header = {"X-Forwarded-User": "vic", "X-Forwarded-Proto": "https"}
    client, baton = await serve(trusted_proxies="127.0.0.0/8", proxy_user_header="X-Forwarded-User")
    page = await client.get("/", headers=header)
    assert page.status == 200 and "vic (viewer)" in await page.text()
    assert page.cookies[auth.COOKIE]["secure"]  # the proxy said https
    stranger = await client.get("/", headers={"X-Forwarded-User": "mallory"})
    text = await stranger.text()
    assert stranger.status == 403 and "nobody of that name is under `users:`" in text
    assert ("mallory", "dashboard:proxy_login", "refused") in await audit_rows(baton)
    twice = await client.get(  # appended by a proxy to what the client sent: refused
        "/", headers=[("X-Forwarded-User", "vic"), ("X-Forwarded-User", "alice")]
    )
    assert twice.status == 400 and "names 2 people in X-Forwarded-User" in await twice.text()


async def test_the_header_is_ignored_from_an_untrusted_address(serve: Serve) -> None:
    client, _ = await serve(trusted_proxies="10.0.0.0/8", proxy_user_header="X-Forwarded-User")
    page = await client.get("/", headers={"X-Forwarded-User": "alice"}, allow_redirects=False)
    assert page.status == 303 and page.headers["Location"].startswith("/login")


async def test_without_users_on_loopback_the_local_person_operates(serve: Serve) -> None:
    client, _ = await serve(people=False)
    page = await client.get("/")
    assert page.status == 200 and f"{getpass.getuser()} (operator)" in await page.text()
    assert (await client.get("/login", allow_redirects=False)).headers["Location"] == "/"


async def test_dashboard_off(serve: Serve) -> None:
    client, _ = await serve(dashboard=False)
    assert (await client.get("/")).status == 404
    assert (await client.get("/api/runs")).status == 200


def test_serve_refuses_an_open_dashboard_beyond_loopback(tmp_path: Path) -> None:
    nobody = AccessRules()
    with pytest.raises(BatonError, match=r"BATON_HOST=0\.0\.0\.0 .* `users:`"):
        refuse_an_open_dashboard(Settings(host="0.0.0.0"), nobody)
    refuse_an_open_dashboard(Settings(host="0.0.0.0", dashboard=False), nobody)
    refuse_an_open_dashboard(Settings(host="127.0.0.1"), nobody)
    people = accessconfig.parse(CONFIG, "baton.yaml")
    refuse_an_open_dashboard(Settings(host="0.0.0.0"), people)


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("/runs/x?y=1", "/runs/x?y=1"),
        ("//evil.example", "/"),
        ("/\\evil.example", "/"),
        ("https://evil.example/", "/"),
        ("javascript:alert(1)", "/"),
        ("/login?next=//evil", "/"),
        ("/ok\r\nSet-Cookie: x", "/"),
        (None, "/"),
    ],
)
def test_next_is_a_local_path(given: str | None, kept: str) -> None:
    assert auth.local_path(given) == kept


def test_baton_serve_refuses_to_start_open_beyond_loopback(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BATON_", "SLACK_"))}
    env.update(
        BATON_HOST="0.0.0.0",
        BATON_PORT="0",
        BATON_DATABASE_URL=f"sqlite:///{tmp_path / 'baton.db'}",
        BATON_PLAYBOOKS=str(tmp_path),
        BATON_KEY_FILE=str(tmp_path / "key"),
    )
    done = subprocess.run(
        [BATON, "serve"],
        env=env,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "BATON_HOST=0.0.0.0 is not a loopback address and nobody is under `users:`" in (
        done.stderr
    )
    assert "set BATON_DASHBOARD=false" in done.stderr and "Traceback" not in done.stderr
