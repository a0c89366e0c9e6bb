"""The SRE playbooks of the shipped library, end to end as a laptop runs them.

Each runs through a real engine (SQLite and PostgreSQL), loaded from its file in
``playbooks/``. What they would change on a real system goes through their ``command``
param: here a small script of the test's that records how it was called (and fails when
the test says so), or the default ``echo``. The health endpoint is a local aiohttp server,
the certificates are real TLS servers with self-signed certificates, the alert is the
README's Alertmanager body, and the Alertmanager that receives filed alerts is a local
server that keeps what it is sent. Retry delays pass on the harness's manual clock.
"""

from __future__ import annotations

import asyncio
import copy
import datetime as dt
import ipaddress
import socket
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp import web
from aiohttp.test_utils import TestServer

from bot.alerts import parsers
from engine.alerts.router import AlertPolicy, AlertRouter
from engine.errors import NotAllowed
from storage import tables as t
from tests.acceptance.test_playbooks import Factory, library, logged, output, run_status, stdout
from tests.harness import Harness
from tests.unit.test_readme import alertmanager_sample


class Tool:
    """A stand-in for a command line tool (systemctl, a deploy script): an executable
    that appends its arguments to ``calls`` and fails the verbs listed in ``failing``."""

    def __init__(self, folder: Path, name: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / name
        self.log = folder / f"{name}.calls"
        self.failing = folder / f"{name}.failing"
        self.failing.write_text("")
        self.path.write_text(
            "#!/bin/sh\n"
            f'echo "$*" >> "{self.log}"\n'
            f'if grep -qx "$1" "{self.failing}"; then echo "$1 failed" >&2; exit 3; fi\n'
            'echo "$1 ok"\n'
        )
        self.path.chmod(0o755)

    def fail(self, *verbs: str) -> None:
        self.failing.write_text("".join(f"{v}\n" for v in verbs))

    @property
    def calls(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []


async def runs_of(h: Harness, playbook: str) -> list[Any]:
    return await h.store.all(
        sa.select(t.runs).where(t.runs.c.playbook == playbook).order_by(t.runs.c.created_at)
    )


# --- restart-service ---------------------------------------------------------------------


async def test_restart_service_by_default_only_prints(harness: Factory) -> None:
    h = await harness(library())

    run_id = await h.run("restart-service")

    assert await run_status(h, run_id) == "succeeded"
    assert await stdout(h, run_id, "precheck") == "cat demo-api"
    assert await stdout(h, run_id, "restart") == "restart demo-api"
    assert await stdout(h, run_id, "verify") == "is-active demo-api"
    statuses = await h.statuses(run_id)
    assert statuses["approve"] == "skipped", "no approval in staging"
    assert statuses["roll_back"] == statuses["page"] == "skipped"


async def test_restart_service_in_prod_waits_for_another_person(
    harness: Factory, tmp_path: Path
) -> None:
    systemctl = Tool(tmp_path / "bin", "systemctl")
    h = await harness(library())
    params = {"service": "nginx", "env": "prod", "command": str(systemctl.path)}

    run_id = await h.run("restart-service", params, requested_by="U_ONCALL")

    assert await run_status(h, run_id) == "waiting"
    assert systemctl.calls == ["cat nginx"], "nothing restarted before the approval"
    gate = (await h.steps(run_id))["approve"].approval_id
    with pytest.raises(NotAllowed, match="cannot approve"):
        await h.engine.decide(gate, "U_ONCALL", "approve")
    await h.engine.decide(gate, "U_SRE_LEAD", "approve", "go")
    await h.engine.wait_idle()

    assert await run_status(h, run_id) == "succeeded"
    assert systemctl.calls == ["cat nginx", "restart nginx", "is-active nginx"]
    assert (await output(h, run_id, "done"))["message"] == "nginx (prod) restarted and active."


async def test_restart_service_that_stays_down_is_retried_then_rolled_back(
    harness: Factory, tmp_path: Path
) -> None:
    systemctl = Tool(tmp_path / "bin", "systemctl")
    rollback = Tool(tmp_path / "bin", "restore-previous")
    systemctl.fail("is-active")
    h = await harness(library())
    params = {"service": "api", "command": str(systemctl.path), "rollback": str(rollback.path)}

    run_id = await h.run("restart-service", params)
    for _ in range(4):  # 5 tries of is-active, 5 s apart
        assert await run_status(h, run_id) == "waiting"
        await h.advance(5)
    assert rollback.calls == ["api"], "rolled back once verification gave up"
    systemctl.fail()  # the previous version comes back
    await h.advance(5)

    assert await run_status(h, run_id) == "failed"
    steps = await h.steps(run_id)
    assert steps["verify"].status == "failed" and steps["verify"].attempts == 5
    assert systemctl.calls == ["cat api", "restart api", *["is-active api"] * 7]
    assert steps["verify_rollback"].status == "succeeded"
    page = (await output(h, run_id, "page"))["message"]
    assert "restart of api (staging) failed at verify" in page
    assert "Rolled back; the service is active." in page


async def test_restart_service_unknown_unit_changes_nothing(
    harness: Factory, tmp_path: Path
) -> None:
    systemctl = Tool(tmp_path / "bin", "systemctl")
    rollback = Tool(tmp_path / "bin", "restore-previous")
    systemctl.fail("cat")
    h = await harness(library())
    params = {"service": "nope", "command": str(systemctl.path), "rollback": str(rollback.path)}

    run_id = await h.run("restart-service", params)

    assert await run_status(h, run_id) == "failed"
    assert systemctl.calls == ["cat nope"]
    assert rollback.calls == []
    assert "Nothing was changed." in (await output(h, run_id, "page"))["message"]


# --- disk-full ---------------------------------------------------------------------------


def demo_disk(work: Path, threshold: int = 100) -> dict[str, str]:
    """The library, with disk-full's demo area in ``work`` and a threshold this machine's
    disk always meets (100) or never does (1): an alert gives only host and mountpoint,
    the rest are defaults."""
    text = library()
    disk = text["disk-full"]
    for old, new in [
        ("default: /tmp/baton-demo/disk-full", f"default: {work}"),
        ("    default: 90\n", f"    default: {threshold}\n"),
    ]:
        assert disk.count(old) == 1, old
        disk = disk.replace(old, new)
    return {**text, "disk-full": disk}


@pytest.fixture
async def alerts_of() -> AsyncIterator[Callable[[Harness], AlertRouter]]:
    started: list[AlertRouter] = []

    def make(h: Harness) -> AlertRouter:
        alerts = AlertRouter(h.engine, AlertPolicy(global_rate=(100, 60.0)))
        started.append(alerts)
        return alerts

    yield make
    for alerts in started:
        await alerts.stop()


async def deliver(h: Harness, alerts: AlertRouter, body: dict[str, Any]) -> None:
    parsed = parsers.alertmanager(body)
    assert parsed.rejected == []
    await alerts.receive(parsed.alerts, parsed.rejected)
    await alerts.idle()
    await h.engine.wait_idle()


async def test_disk_full_runs_from_the_readmes_alertmanager_body(
    harness: Factory, tmp_path: Path, alerts_of: Callable[[Harness], AlertRouter]
) -> None:
    work = tmp_path / "disk"
    h = await harness(demo_disk(work))
    alerts = alerts_of(h)
    await alerts.start()
    firing = alertmanager_sample()

    await deliver(h, alerts, firing)

    (run,) = await runs_of(h, "disk-full")
    assert run.trigger == "alert" and run.status == "succeeded"
    assert (run.params["host"], run.params["mountpoint"]) == ("node-1:9100", "/")
    logs = work / "logs"
    assert sorted(p.name for p in logs.iterdir()) == ["app.log"], "old logs deleted"
    deleted = (await stdout(h, run.id, "cleanup")).splitlines()
    assert sorted(deleted) == [str(logs / "app.log.1"), str(logs / "app.log.2")]
    report = (await output(h, run.id, "report"))["message"]
    assert report.startswith("/ on node-1:9100: ")
    assert "deleted 2 file(s) older than 7 days" in report

    await deliver(h, alerts, firing)  # Alertmanager repeats while it fires
    resolved = copy.deepcopy(firing)
    resolved["status"] = resolved["alerts"][0]["status"] = "resolved"
    resolved["alerts"][0]["endsAt"] = "2026-11-30T23:04:12.345Z"
    await deliver(h, alerts, resolved)

    assert len(await runs_of(h, "disk-full")) == 1, "repeats attach to the run"
    rows = await h.store.all(sa.select(t.alerts).order_by(t.alerts.c.id))
    assert [r.outcome for r in rows] == ["started", "attached", "resolved"]
    assert {r.run_id for r in rows} == {run.id}


async def test_disk_full_resolved_cancels_a_run_still_waiting(
    harness: Factory, tmp_path: Path, alerts_of: Callable[[Harness], AlertRouter]
) -> None:
    h = await harness(demo_disk(tmp_path / "disk", threshold=1))
    alerts = alerts_of(h)
    await alerts.start()
    firing = alertmanager_sample()
    await deliver(h, alerts, firing)
    (run,) = await runs_of(h, "disk-full")
    assert run.status == "waiting", "verify waits to try again: the disk is still full"

    resolved = copy.deepcopy(firing)
    resolved["status"] = resolved["alerts"][0]["status"] = "resolved"
    await deliver(h, alerts, resolved)

    assert (await h.run_row(run.id)).status == "cancelled"
    assert (await h.statuses(run.id))["escalate"] == "cancelled", "no escalation on cancel"


async def test_disk_full_still_full_is_escalated(harness: Factory, tmp_path: Path) -> None:
    work = tmp_path / "disk"
    (work / "spool").mkdir(parents=True)
    h = await harness(library())
    params = {"paths": [f"{work}/spool", f"{work}/none"], "threshold": 1, "workdir": str(work)}

    run_id = await h.run("disk-full", params)
    for _ in range(2):  # 3 tries, 20 s apart
        assert await run_status(h, run_id) == "waiting"
        await h.advance(20)

    assert await run_status(h, run_id) == "failed"
    assert (await h.statuses(run_id))["verify"] == "failed"
    assert not (work / "logs").exists(), "given paths: the demo folder is left alone"
    cleanup = await output(h, run_id, "cleanup")
    assert cleanup["stderr"].strip() == f"{work}/none: no such folder, skipped"
    escalate = await output(h, run_id, "escalate")
    assert escalate["level"] == "error"
    assert "/tmp on localhost still needs a person" in escalate["message"]
    assert "above 1%" in escalate["message"]


# --- certificate-expiry ------------------------------------------------------------------


def self_signed(folder: Path, name: str, days_left: int) -> ssl.SSLContext:
    """A server context with a fresh self-signed certificate valid ``days_left`` more."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=days_left))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    pem = folder / f"{name}.pem"
    pem.write_bytes(
        cert.public_bytes(serialization.Encoding.PEM)
        + key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pem)
    return context


@asynccontextmanager
async def tls_server(context: ssl.SSLContext) -> AsyncIterator[str]:
    """A TLS server on 127.0.0.1 that completes handshakes; yields its host:port."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with suppress(ConnectionError, ssl.SSLError):  # a client that just hangs up
            await reader.read()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.close()
        await server.wait_closed()


class Alertmanager:
    """Alertmanager's API as far as filing alerts goes: keeps every body posted."""

    def __init__(self, server: TestServer) -> None:
        self.server = server
        self.filed: list[Any] = []

    @property
    def url(self) -> str:
        return str(self.server.make_url("/api/v2/alerts"))


@pytest.fixture
async def alertmanager() -> AsyncIterator[Alertmanager]:
    app = web.Application()
    server = TestServer(app, host="127.0.0.1", port=0)
    box = Alertmanager(server)

    async def file(request: web.Request) -> web.Response:
        box.filed.append(await request.json())
        return web.Response(status=200)

    app.router.add_post("/api/v2/alerts", file)
    await server.start_server()
    yield box
    await server.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_certificate_expiry_files_an_alert_for_what_expires_soon(
    harness: Factory, tmp_path: Path, alertmanager: Alertmanager
) -> None:
    h = await harness(library())
    soon = self_signed(tmp_path, "soon", days_left=5)
    later = self_signed(tmp_path, "later", days_left=200)
    closed = f"127.0.0.1:{free_port()}"  # nothing listens: unreadable
    async with tls_server(soon) as expiring, tls_server(later) as fine:
        params = {
            "hosts": [expiring, fine, closed],
            "days": 30,
            "alert_url": alertmanager.url,
        }
        run_id = await h.run("certificate-expiry", params)

    assert await run_status(h, run_id) == "succeeded"
    checked = [line.split()[:2] for line in (await stdout(h, run_id, "check")).splitlines()]
    assert checked == [[expiring, "expiring"], [fine, "ok"], [closed, "unreadable"]]
    report = (await output(h, run_id, "report"))["message"]
    assert report.startswith("TLS certificates, warning within 30 days: ")
    assert f"{fine} ok until " in report and f"{closed} unreadable" in report
    warn = await output(h, run_id, "warn")
    assert warn["level"] == "warning"
    assert f"{expiring} expiring (until " in warn["message"] and fine not in warn["message"]
    (filed,) = alertmanager.filed
    assert [a["labels"]["instance"] for a in filed] == [expiring, closed]
    assert {a["labels"]["alertname"] for a in filed} == {"CertificateExpiringSoon"}
    assert filed[0]["annotations"]["summary"].startswith(f"certificate of {expiring} is expiring")
    assert filed[1]["annotations"]["baton_run"] == run_id
    assert any("need attention" in m for m in await logged(h, run_id))


async def test_certificate_expiry_all_fine_only_reports(
    harness: Factory, tmp_path: Path, alertmanager: Alertmanager
) -> None:
    h = await harness(library())
    async with tls_server(self_signed(tmp_path, "fine", days_left=90)) as fine:
        params = {"hosts": [fine], "alert_url": alertmanager.url}
        run_id = await h.run("certificate-expiry", params)

    assert await run_status(h, run_id) == "succeeded"
    statuses = await h.statuses(run_id)
    assert statuses["warn"] == statuses["file_alert"] == "skipped"
    assert alertmanager.filed == []
    year = (dt.datetime.now(dt.UTC) + dt.timedelta(days=90)).year
    assert f"{fine} ok until " in (await output(h, run_id, "report"))["message"]
    assert str(year) in (await output(h, run_id, "report"))["message"]


async def test_certificate_expiry_is_checked_weekly(harness: Factory) -> None:
    h = await harness(library())
    (weekly,) = [s for s in await h.schedules.list() if s.playbook == "certificate-expiry"]
    assert weekly.next_fire_at is not None
    assert weekly.next_fire_at.strftime("%A %H:%M") == "Monday 08:00"


# --- deploy-canary -----------------------------------------------------------------------


class Canary:
    """The canary's health endpoint: answers each status of ``answers`` in turn (the last
    one from then on)."""

    def __init__(self, server: TestServer) -> None:
        self.server = server
        self.answers = [200]
        self.asked = 0

    @property
    def url(self) -> str:
        return str(self.server.make_url("/healthz"))


@pytest.fixture
async def canary() -> AsyncIterator[Canary]:
    app = web.Application()
    server = TestServer(app, host="127.0.0.1", port=0)
    box = Canary(server)

    async def health(request: web.Request) -> web.Response:
        status = box.answers[min(box.asked, len(box.answers) - 1)]
        box.asked += 1
        return web.json_response({"status": "ok" if status == 200 else "starting"}, status=status)

    app.router.add_get("/healthz", health)
    await server.start_server()
    yield box
    await server.close()


async def test_deploy_canary_promotes_once_the_canary_is_healthy(
    harness: Factory, tmp_path: Path, canary: Canary
) -> None:
    deploy = Tool(tmp_path / "bin", "deploy")
    canary.answers = [503, 503, 200]
    h = await harness(library())
    params = {"version": "v42", "command": str(deploy.path), "health_url": canary.url}

    run_id = await h.run("deploy-canary", params)
    assert deploy.calls == ["deploy demo-api v42 canary-1"]
    for _ in range(2):  # 503 twice, 10 s apart: not promoted yet
        assert await run_status(h, run_id) == "waiting"
        assert len(deploy.calls) == 1
        await h.advance(10)

    assert await run_status(h, run_id) == "succeeded"
    assert canary.asked == 3
    assert deploy.calls == ["deploy demo-api v42 canary-1", "promote demo-api v42 all"]
    announce = (await output(h, run_id, "announce"))["message"]
    assert announce.startswith("demo-api v42 is live on all: the canary canary-1 answered 200")
    assert (await h.statuses(run_id))["roll_back"] == "skipped"


async def test_deploy_canary_rolls_back_a_canary_that_stays_unhealthy(
    harness: Factory, tmp_path: Path, canary: Canary
) -> None:
    deploy = Tool(tmp_path / "bin", "deploy")
    canary.answers = [500]
    h = await harness(library())
    params = {"version": "v43", "command": str(deploy.path), "health_url": canary.url}

    run_id = await h.run("deploy-canary", params)
    for _ in range(5):
        await h.advance(10)

    assert await run_status(h, run_id) == "failed"
    assert canary.asked == 6
    steps = await h.steps(run_id)
    assert steps["watch"].status == "failed" and steps["promote"].status == "skipped"
    assert steps["watch"].output["status"] == 500
    assert deploy.calls == ["deploy demo-api v43 canary-1", "rollback demo-api v43 canary-1"]
    report = (await output(h, run_id, "report"))["message"]
    assert report.startswith("demo-api v43 was not promoted: ")
    assert report.endswith("Rolled back on canary-1.")


async def test_deploy_canary_by_default_only_prints(harness: Factory, canary: Canary) -> None:
    h = await harness(library())

    run_id = await h.run("deploy-canary", {"health_url": canary.url})

    assert await run_status(h, run_id) == "succeeded"
    assert await stdout(h, run_id, "deploy_canary") == "deploy demo-api v2 canary-1"
    assert await stdout(h, run_id, "promote") == "promote demo-api v2 all"
    assert (await output(h, run_id, "watch"))["json"] == {"status": "ok"}
