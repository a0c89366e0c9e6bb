"""The shipped playbook library: every file validates, and every scenario runs end to end.

Each playbook runs through a real engine on SQLite and PostgreSQL (the ``harness``
fixture), loaded from the very files in ``playbooks/``. Their ``workdir`` params point at
pytest's ``tmp_path``, so the tests never touch the demo area under /tmp/baton-demo; the
assertions look at what the shell steps really did to the files there.
"""

from __future__ import annotations

import re
import tarfile
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp import web
from aiohttp.test_utils import TestServer

from engine import events as ev
from engine.actions.registry import Registry
from engine.alerts.model import Alert
from engine.alerts.rows import alert_context
from engine.errors import ConcurrencyLimit, NotAllowed
from engine.playbooks import model as playbook
from engine.playbooks import params, templating, validate
from storage import tables as t
from tests.harness import Harness

LIBRARY = Path(__file__).resolve().parents[2] / "playbooks"
FILES = sorted([*LIBRARY.glob("*.yaml"), *LIBRARY.glob("*.yml")])
EXPECTED = {
    "certificate-expiry",
    "deploy-canary",
    "disk-full",
    "restart-service",
    "restart-service-fleet",
    "disaster-recovery",
    "employee-onboarding",
    "nightly-backup",
    "order-fulfillment",
    "traffic-surge",
}

Factory = Callable[..., Awaitable[Harness]]


def library() -> dict[str, str]:
    return {path.stem: path.read_text(encoding="utf-8") for path in FILES}


async def open_library(harness: Factory) -> Harness:
    return await harness(library())


async def run_status(h: Harness, run_id: str) -> str:
    return str((await h.run_row(run_id)).status)


async def output(h: Harness, run_id: str, step: str) -> dict[str, Any]:
    return dict((await h.steps(run_id))[step].output or {})


async def stdout(h: Harness, run_id: str, step: str) -> str:
    return str((await output(h, run_id, step))["stdout"]).strip()


async def logged(h: Harness, run_id: str) -> list[str]:
    rows = await h.store.all(sa.select(t.run_logs.c.message).where(t.run_logs.c.run_id == run_id))
    return [r.message for r in rows]


class Receiver:
    """A webhook endpoint on 127.0.0.1 that keeps every JSON body posted to it."""

    def __init__(self, server: TestServer) -> None:
        self.server = server
        self.posted: list[tuple[str, Any]] = []

    def url(self, path: str) -> str:
        return str(self.server.make_url(path))


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    app = web.Application()
    server = TestServer(app, host="127.0.0.1", port=0)
    box = Receiver(server)

    async def record(request: web.Request) -> web.Response:
        box.posted.append((request.path, await request.json()))
        return web.json_response({"status": "success"}, status=202)

    app.router.add_post("/{tail:.*}", record)
    await server.start_server()
    try:
        yield box
    finally:
        await server.close()


# --- the library as files ------------------------------------------------------------


def test_library_is_complete() -> None:
    valid, problems = validate.validate_paths([LIBRARY], Registry.from_entry_points())
    assert problems == []
    assert set(valid) >= EXPECTED


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_playbook_validates(path: Path) -> None:
    valid, problems = validate.validate_paths([path], Registry.from_entry_points())
    assert problems == []
    assert list(valid) == [path.stem], "the file is named after the playbook"


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_playbook_is_documented_and_harmless_by_default(path: Path) -> None:
    pb, _ = playbook.load_file(path)
    assert pb.description.strip()
    for name, spec in pb.params.items():
        assert spec.help.strip(), f"param {name} has no help"
    if "workdir" in pb.params:  # files go to the demo area
        assert pb.params["workdir"].default.startswith("/tmp/baton-demo")
    for name in ("command", "rollback"):  # what would change a system only prints
        if name in pb.params:
            assert pb.params[name].default in (None, "echo", "echo rollback"), name
    for _, step in pb.all_steps():
        if step.action != "http":
            continue
        url = str(step.with_.get("url"))
        given = re.fullmatch(r"\{\{ params\.(\w+) \}\}", url)
        if given and pb.params[given[1]].default:  # a default URL is this machine's
            assert re.match(r"http://(127\.0\.0\.1|localhost)[:/]", pb.params[given[1]].default)
        else:  # only ever called when someone gave a URL
            assert step.when is not None and step.when.startswith("params."), step.id
    sample = Alert(source="alertmanager", fingerprint="f", status="firing", labels={})
    for trig in pb.triggers:  # an alert's params fit, even when its labels are few
        if trig.alert is not None:
            rendered = templating.render(trig.alert.params, {"alert": alert_context(sample)})
            params.coerce(pb, rendered)


# --- nightly-backup ------------------------------------------------------------------


def _old_archive(folder: Path, stamp: str) -> Path:
    path = folder / f"backup-{stamp}-old.tar.gz"
    with tarfile.open(path, "w:gz"):
        pass
    return path


async def test_nightly_backup_archives_verifies_and_prunes(
    harness: Factory, tmp_path: Path
) -> None:
    work = tmp_path / "demo"
    backups = work / "backups"
    backups.mkdir(parents=True)
    old = [_old_archive(backups, s) for s in ("20240101T000000Z", "20240102T000000Z")]
    newest_old = _old_archive(backups, "20240103T000000Z")
    (backups / "notes.txt").write_text("not an archive: never pruned\n")
    h = await open_library(harness)

    run_id = await h.run("nightly-backup", {"workdir": str(work), "keep": 2})

    assert await run_status(h, run_id) == "succeeded"
    assert await h.statuses(run_id) == {
        "prepare": "succeeded",
        "archive": "succeeded",
        "verify": "succeeded",
        "prune": "succeeded",
        "ping": "skipped",
        "report": "succeeded",
    }
    archive = Path(await stdout(h, run_id, "archive"))
    assert archive.parent == backups
    assert re.fullmatch(rf"backup-\d{{8}}T\d{{6}}Z-{run_id}\.tar\.gz", archive.name)
    with tarfile.open(archive, "r:gz") as tar:
        members = {m.name for m in tar.getmembers() if m.isfile()}
    assert members == {"./README", "./etc/app.conf", "./db/orders.csv"}
    listing = (await stdout(h, run_id, "verify")).splitlines()
    assert members <= set(listing)

    kept = sorted(p.name for p in backups.glob("backup-*.tar.gz"))
    assert kept == sorted([newest_old.name, archive.name])
    assert sorted((await stdout(h, run_id, "prune")).splitlines()) == [p.name for p in old]
    assert (backups / "notes.txt").exists()
    assert not list(backups.glob(".*partial"))

    report = await output(h, run_id, "report")
    assert report["level"] == "info"
    assert report["message"].startswith(f"Backup done: {archive}")
    assert "pruned 2 old archive(s), keeping 2" in report["message"]


async def test_nightly_backup_failure_is_reported_and_prunes_nothing(
    harness: Factory, tmp_path: Path
) -> None:
    work = tmp_path / "demo"
    backups = work / "backups"
    backups.mkdir(parents=True)
    olds = [_old_archive(backups, f"2024010{i}T000000Z") for i in range(1, 4)]
    h = await open_library(harness)

    run_id = await h.run(
        "nightly-backup",
        {"workdir": str(work), "source": str(tmp_path / "missing"), "keep": 1},
    )

    assert await run_status(h, run_id) == "failed"
    statuses = await h.statuses(run_id)
    assert statuses["prepare"] == "failed"
    assert {statuses[s] for s in ("archive", "verify", "prune", "ping")} == {"skipped"}
    assert statuses["report"] == "succeeded"
    report = await output(h, run_id, "report")
    assert report["level"] == "error"
    assert "FAILED: step prepare failed" in report["message"]
    assert "does not exist" in report["message"]
    assert all(p.exists() for p in olds)


# --- disaster-recovery ---------------------------------------------------------------


async def test_disaster_recovery_waits_for_another_approver_then_fails_over(
    harness: Factory, tmp_path: Path
) -> None:
    work = tmp_path / "demo"
    h = await open_library(harness)
    # a real backup first: disaster-recovery restores what nightly-backup wrote
    backup_id = await h.run("nightly-backup", {"workdir": str(work)})
    archive = Path(await stdout(h, backup_id, "archive"))
    params = {"workdir": str(work)}

    run_id = await h.run("disaster-recovery", params, requested_by="U_ONCALL")

    assert await run_status(h, run_id) == "waiting"
    assert await h.statuses(run_id) == {
        "check_primary": "succeeded",
        "all_clear": "skipped",
        "restore": "succeeded",
        "approve_failover": "waiting",
        "reroute": "pending",
        "notify": "pending",
        "page_oncall": "pending",
        "page_http": "pending",
    }
    standby = work / "standby"
    assert (standby / "RESTORED_FROM").read_text().strip() == archive.name
    assert (standby / "db" / "orders.csv").exists()
    assert not (work / "routing.conf").exists(), "no traffic moves before the approval"

    with pytest.raises(ConcurrencyLimit):  # one failover of a primary at a time
        await h.run("disaster-recovery", params, requested_by="U_INCIDENT_LEAD")

    approval_id = (await h.steps(run_id))["approve_failover"].approval_id
    with pytest.raises(NotAllowed, match="cannot approve"):
        await h.engine.decide(approval_id, "U_ONCALL", "approve", "self-approval")
    with pytest.raises(NotAllowed, match="may not decide"):
        await h.engine.decide(approval_id, "mallory", "approve")
    await h.engine.wait_idle()
    assert await run_status(h, run_id) == "waiting"
    assert not (work / "routing.conf").exists()

    await h.engine.decide(approval_id, "U_INCIDENT_LEAD", "approve", "go")
    await h.engine.wait_idle()

    assert await run_status(h, run_id) == "succeeded"
    statuses = await h.statuses(run_id)
    assert [statuses[s] for s in ("approve_failover", "reroute", "notify")] == ["succeeded"] * 3
    routing = (work / "routing.conf").read_text()
    assert "active=db-standby.example.internal" in routing
    assert "failed=db-primary.example.internal" in routing
    assert f"disaster-recovery run {run_id}" in routing
    notify = (await output(h, run_id, "notify"))["message"]
    assert "approved by U_INCIDENT_LEAD" in notify
    assert archive.name in notify


async def test_disaster_recovery_on_a_healthy_primary_does_nothing(
    harness: Factory, tmp_path: Path
) -> None:
    work = tmp_path / "demo"
    h = await open_library(harness)

    run_id = await h.run("disaster-recovery", {"workdir": str(work), "primary_healthy": "true"})

    assert await run_status(h, run_id) == "succeeded"
    statuses = await h.statuses(run_id)
    assert statuses["all_clear"] == "succeeded"
    for step in ("restore", "approve_failover", "reroute", "notify"):
        assert statuses[step] == "skipped", step
    assert not (work / "standby").exists()
    assert not (work / "routing.conf").exists()


async def test_disaster_recovery_rejected_pages_the_oncall(
    harness: Factory, tmp_path: Path
) -> None:
    work = tmp_path / "demo"
    h = await open_library(harness)

    run_id = await h.run("disaster-recovery", {"workdir": str(work)}, requested_by="alice")
    assert (work / "backups" / "backup-19700101T000000Z-sample.tar.gz").exists()
    approval_id = (await h.steps(run_id))["approve_failover"].approval_id
    await h.engine.decide(approval_id, "U_ONCALL", "reject", "primary is coming back")
    await h.engine.wait_idle()

    assert await run_status(h, run_id) == "failed"
    statuses = await h.statuses(run_id)
    assert statuses["approve_failover"] == "failed"
    assert statuses["reroute"] == statuses["notify"] == "skipped"
    assert statuses["page_oncall"] == "succeeded"
    assert statuses["page_http"] == "skipped", "no pager_url given"
    page = await output(h, run_id, "page_oncall")
    assert page["level"] == "error"
    assert "did not complete: step approve_failover failed" in page["message"]
    assert "primary is coming back" in page["message"]
    assert "backup-19700101T000000Z-sample.tar.gz" in page["message"]
    assert any(m.startswith("PAGE on-call") for m in await logged(h, run_id))
    assert not (work / "routing.conf").exists()


async def test_disaster_recovery_pages_through_the_pager_url(
    harness: Factory, tmp_path: Path, receiver: Receiver
) -> None:
    h = await open_library(harness)
    params = {
        "workdir": str(tmp_path / "demo"),
        "backup_dir": str(tmp_path / "empty"),  # given and empty: nothing to restore
        "pager_url": receiver.url("/v2/enqueue"),
        "pager_routing_key": "R0UT1NGKEY",
    }

    run_id = await h.run("disaster-recovery", params)

    assert await run_status(h, run_id) == "failed"
    statuses = await h.statuses(run_id)
    assert statuses["restore"] == "failed"
    assert statuses["approve_failover"] == "skipped"
    assert statuses["page_oncall"] == statuses["page_http"] == "succeeded"
    assert not (tmp_path / "empty").exists(), "a given backup_dir is never seeded"
    [(path, page)] = receiver.posted
    assert path == "/v2/enqueue"
    assert page["routing_key"] == "R0UT1NGKEY"
    assert page["event_action"] == "trigger"
    assert page["dedup_key"] == f"baton-dr-{run_id}"
    assert page["payload"]["severity"] == "critical"
    assert page["payload"]["custom_details"]["step"] == "restore"
    assert "run nightly-backup first" in page["payload"]["custom_details"]["error"]
    assert (await h.run_row(run_id)).params["pager_routing_key"] == "***"


# --- employee-onboarding -------------------------------------------------------------


def _index(events: list[ev.Event], kind: type[ev.StepEvent], step: str) -> int:
    return next(i for i, e in enumerate(events) if isinstance(e, kind) and e.step_id == step)


@pytest.mark.parametrize(
    ("role", "group", "course"),
    [("engineer", "github", "secure-coding"), ("sales", "crm", "crm-basics")],
    ids=["engineer", "sales"],
)
async def test_employee_onboarding_runs_access_and_hardware_in_parallel(
    harness: Factory, tmp_path: Path, role: str, group: str, course: str
) -> None:
    work = tmp_path / "demo"
    h = await open_library(harness)
    h.seen()

    run_id = await h.run("employee-onboarding", {"workdir": str(work), "role": role})

    assert await run_status(h, run_id) == "succeeded"
    assert await h.statuses(run_id) == {
        "account": "succeeded",
        "access": "succeeded",
        "hardware": "succeeded",
        "training": "succeeded",
        "welcome": "succeeded",
        "notify_webhook": "skipped",
        "report_failure": "skipped",
    }
    events = [e for e in h.seen() if e.run_id == run_id]
    started = [_index(events, ev.StepStarted, s) for s in ("access", "hardware")]
    ended = [_index(events, ev.StepSucceeded, s) for s in ("access", "hardware")]
    assert max(started) < min(ended), "both started before either finished"
    assert max(ended) < _index(events, ev.StepStarted, "training")
    assert _index(events, ev.StepSucceeded, "account") < min(started)

    account = (work / "accounts" / "jane.doe").read_text()
    assert "email=jane.doe@example.com" in account
    assert f"role={role}" in account
    assert group in (work / "access" / "jane.doe").read_text().split()
    assert f"order=HW-{run_id}" in (work / "orders" / "jane.doe").read_text()
    assert course in (work / "training" / "jane.doe").read_text().split()
    welcome = (await output(h, run_id, "welcome"))["message"]
    assert welcome.startswith(f"Welcome Jane Doe ({role})!")
    assert f"HW-{run_id}" in welcome


async def test_employee_onboarding_twice_keeps_the_first_records(
    harness: Factory, tmp_path: Path
) -> None:
    work = tmp_path / "demo"
    h = await open_library(harness)
    first = await h.run("employee-onboarding", {"workdir": str(work)})

    again = await h.run("employee-onboarding", {"workdir": str(work), "full_name": "J. Doe"})

    assert await run_status(h, again) == "succeeded"
    assert await stdout(h, again, "hardware") == f"HW-{first}", "no second laptop"
    assert "name=Jane Doe" in (work / "accounts" / "jane.doe").read_text()
    assert "already exists" in (await output(h, again, "account"))["stderr"]


# --- order-fulfillment ---------------------------------------------------------------


def _stock(work: Path) -> int:
    return int((work / "stock" / "WIDGET-1").read_text())


async def test_order_fulfillment_ships(harness: Factory, tmp_path: Path) -> None:
    work = tmp_path / "demo"
    h = await open_library(harness)

    run_id = await h.run("order-fulfillment", {"workdir": str(work), "quantity": 3})

    assert await run_status(h, run_id) == "succeeded"
    statuses = await h.statuses(run_id)
    for step in ("inventory", "customer", "payment", "shipping", "confirm"):
        assert statuses[step] == "succeeded", step
    for step in ("refund", "release_stock", "alert"):
        assert statuses[step] == "skipped", "no compensation when nothing failed"
    assert _stock(work) == 7
    assert (work / "reservations" / "ORD-1001").read_text().split() == ["WIDGET-1", "3"]
    assert (work / "payments" / "ORD-1001").read_text().split() == ["C-42", "19.99"]
    assert not (work / "refunds").exists()
    assert (await stdout(h, run_id, "shipping")) == f"TRK-{run_id}"
    assert f"tracking TRK-{run_id}" in (await output(h, run_id, "confirm"))["message"]


async def test_order_fulfillment_failed_shipping_refunds_and_releases(
    harness: Factory, tmp_path: Path
) -> None:
    work = tmp_path / "demo"
    h = await open_library(harness)

    run_id = await h.run("order-fulfillment", {"workdir": str(work), "fail_at": "shipping"})
    # shipping is retried with exponential backoff: 30s, then 60s
    assert await run_status(h, run_id) == "waiting"
    assert (await h.steps(run_id))["shipping"].attempts == 1
    await h.advance(30)
    assert (await h.steps(run_id))["shipping"].attempts == 2
    assert await run_status(h, run_id) == "waiting"
    await h.advance(60)

    assert await run_status(h, run_id) == "failed"
    assert (await h.run_row(run_id)).failed_step == "shipping"
    steps = await h.steps(run_id)
    assert steps["shipping"].attempts == 3
    assert {k: v.status for k, v in steps.items()} == {
        "inventory": "succeeded",
        "customer": "succeeded",
        "payment": "succeeded",
        "shipping": "failed",
        "confirm": "skipped",
        "refund": "succeeded",
        "release_stock": "succeeded",
        "alert": "succeeded",
    }
    assert (work / "refunds" / "ORD-1001").read_text().split() == ["C-42", "19.99"]
    assert _stock(work) == 10
    assert not (work / "reservations" / "ORD-1001").exists()
    assert not (work / "shipments").exists()
    alert = (await output(h, run_id, "alert"))["message"]
    assert "was not fulfilled: step shipping failed" in alert
    assert "carrier API unavailable" in alert
    assert "Refund: succeeded; stock release: succeeded." in alert


async def test_order_fulfillment_failed_payment_only_releases_stock(
    harness: Factory, tmp_path: Path
) -> None:
    work = tmp_path / "demo"
    h = await open_library(harness)

    run_id = await h.run("order-fulfillment", {"workdir": str(work), "fail_at": "payment"})

    assert await run_status(h, run_id) == "failed"
    assert await h.statuses(run_id) == {
        "inventory": "succeeded",
        "customer": "succeeded",
        "payment": "failed",
        "shipping": "skipped",
        "confirm": "skipped",
        "refund": "skipped",
        "release_stock": "succeeded",
        "alert": "succeeded",
    }
    assert not (work / "payments").exists()
    assert not (work / "refunds").exists()
    assert _stock(work) == 10
    alert = (await output(h, run_id, "alert"))["message"]
    assert "was not fulfilled: step payment failed" in alert
    assert "card declined" in alert
    assert "Refund: skipped; stock release: succeeded." in alert


# --- traffic-surge -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("healthy", "reroute"),
    [(True, "skipped"), (False, "succeeded")],
    ids=["healthy-stays", "unhealthy-reroutes"],
)
async def test_traffic_surge_reroutes_only_when_unhealthy(
    harness: Factory, tmp_path: Path, healthy: bool, reroute: str
) -> None:
    work = tmp_path / "demo"
    h = await open_library(harness)

    run_id = await h.run("traffic-surge", {"workdir": str(work), "region_healthy": healthy})

    assert await run_status(h, run_id) == "succeeded"
    assert await h.statuses(run_id) == {
        "scale_out": "succeeded",
        "rebalance": "succeeded",
        "health_check": "succeeded",
        "reroute": reroute,
        "notify": "succeeded",
        "notify_status": "skipped",
        "escalate": "skipped",
    }
    state = work / "web"
    assert (state / "replicas").read_text().strip() == "6"
    lb = (state / "lb.conf").read_text()
    assert lb.count("server web-") == 6
    assert "server web-6.eu-west-1 weight=1;" in lb
    assert await stdout(h, run_id, "health_check") == ("healthy" if healthy else "unhealthy")
    notify = await output(h, run_id, "notify")
    if healthy:
        assert not (state / "active-region").exists()
        assert notify["level"] == "info"
        assert notify["message"].endswith("eu-west-1 is healthy, traffic stays there.")
    else:
        assert (state / "active-region").read_text().strip() == "eu-central-1"
        assert notify["level"] == "warning"
        assert notify["message"].endswith("moved from eu-west-1 to eu-central-1.")


async def test_traffic_surge_posts_the_summary_when_given_a_url(
    harness: Factory, tmp_path: Path, receiver: Receiver
) -> None:
    h = await open_library(harness)
    params = {
        "workdir": str(tmp_path / "demo"),
        "region_healthy": "false",
        "status_url": receiver.url("/hooks/status"),
    }

    run_id = await h.run("traffic-surge", params)

    assert await run_status(h, run_id) == "succeeded"
    assert (await h.statuses(run_id))["notify_status"] == "succeeded"
    notify = (await output(h, run_id, "notify"))["message"]
    assert receiver.posted == [("/hooks/status", {"text": notify})]
