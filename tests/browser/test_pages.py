"""The dashboard's pages in a real browser against a real ``baton serve``: the runs list
and a run's graph, approving (as somebody else; one's own run is refused), what a viewer
cannot do, cancel, retry from the failed step, the start form's bad param, and a running
step's log lines arriving without a reload. Every page is also saved as a screenshot
(``tests/artifacts/page-*.png``) for people to look at."""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path

from playwright.async_api import Page, expect

from tests.acceptance.serve import Server, wait_until
from tests.browser.conftest import (
    ALERT_TOKEN,
    ALICE,
    ARTIFACTS,
    BOB,
    LOOP,
    VIC,
    log_in,
    log_out,
    url,
)

pytestmark = LOOP
RED, GREEN = "#fca5a5", "#86efac"  # bot.dashboard.dag.COLOURS of failed and succeeded


async def shot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"page-{name}.png"), full_page=True)


async def test_the_runs_list_and_a_runs_graph_coloured_by_status(page: Page, baton: Server) -> None:
    run_id = baton.start_run("chain")
    baton.wait_run(run_id)
    await log_in(page, baton, ALICE)
    row = page.locator(f'tr[data-run="{run_id}"]')
    await expect(row.locator(".badge")).to_have_text("failed")
    await shot(page, "runs")

    await row.locator("a").click()
    await expect(page).to_have_url(url(baton, f"/runs/{run_id}"))
    nodes = page.locator("#run-dag svg g.node")
    await expect(nodes).to_have_count(3)
    for step, status, colour in (("first", "succeeded", GREEN), ("second", "failed", RED)):
        node = page.locator(f"#run-dag g#step-{step}")
        await expect(node).to_have_class(f"node step status-{status}")
        await expect(node.locator("path, polygon").first).to_have_attribute("fill", colour)
    await expect(page.locator("#step-third")).to_have_class("node step status-skipped")
    await expect(page.locator('#run-timeline rect[data-step="second"]')).to_have_count(1)
    await shot(page, "run")


async def test_approve_as_another_person_and_self_approval_is_refused(
    page: Page, baton: Server
) -> None:
    await log_in(page, baton, ALICE, "/playbooks")
    await page.locator("#playbook-gated button.start-run").click()
    await expect(page.locator("#run-status")).to_have_attribute("data-status", "waiting")
    run_id = page.url.rsplit("/", 1)[1]
    (gate,) = baton.approvals(run_id)

    why = f"alice started run {run_id} and cannot approve it"
    await expect(page.locator(f'tr[data-approval="{gate.id}"] .hint')).to_contain_text(why)
    await expect(page.locator(f'button.approve[data-approval="{gate.id}"]')).to_have_count(0)
    token = await page.locator("input[name=csrf]").first.get_attribute("value")
    forged = await page.request.post(  # the form she is not shown, sent by hand: refused
        url(baton, f"/approvals/{gate.id}/approve"), form={"csrf": token or ""}
    )
    assert forged.status == 403 and why in await forged.text()
    assert baton.approvals(run_id)[0].status == "pending"
    await shot(page, "refused")
    await log_out(page)

    await log_in(page, baton, BOB, "/approvals")
    await shot(page, "approvals")
    form = page.locator(f'#approvals-mine form:has(button.approve[data-approval="{gate.id}"])')
    await form.locator("input[name=comment]").fill("canary is green")
    await form.locator("button.approve").click()
    await expect(page).to_have_url(url(baton, "/approvals"))
    assert baton.wait_run(run_id).status == "succeeded"
    assert baton.approvals(run_id)[0].status == "approved"
    await page.goto(url(baton, f"/runs/{run_id}"))
    await expect(page.locator("#run-status")).to_have_attribute("data-status", "succeeded")
    decision = page.locator(f'tr[data-decisions="{gate.id}"] li[data-decision="bob"]')
    await expect(decision).to_contain_text("bob approved at")
    await expect(decision).to_contain_text("UTC: canary is green")

    await page.goto(url(baton, f"/audit?target={run_id}"))  # the run's trail: start, gate
    actions = page.locator("#audit tr[data-audit] td:nth-child(3)")
    await expect(actions).to_contain_text(["approve", "approval-request", "run"])


async def test_a_trigger_filter_is_picked_from_the_triggers_and_a_bad_one_is_a_400(
    page: Page, baton: Server
) -> None:
    await log_in(page, baton, ALICE)
    await page.locator("#run-filters select[name=trigger]").select_option("api")
    await page.locator("#run-filters button[type=submit]").click()
    await expect(page).to_have_url(re.compile(r"[?&]trigger=api(&|$)"))
    answer = await page.goto(url(baton, "/?trigger=sms"))
    assert answer is not None and answer.status == 400
    await expect(page.locator("main")).to_contain_text(
        "trigger must be one of api, cli, console, slack, web, schedule, alert, playbook, not 'sms'"
    )


async def test_a_viewer_sees_no_button_and_a_forged_post_is_refused(
    page: Page, baton: Server, failed_run: str
) -> None:
    await log_in(page, baton, VIC, f"/runs/{failed_run}")
    await expect(page.locator("#run-status")).to_have_attribute("data-status", "failed")
    await expect(page.locator("main button")).to_have_count(0)
    for path in ("/playbooks", "/approvals", "/schedules"):
        await page.goto(url(baton, path))
        await expect(page.locator("main h1")).to_be_visible()
        await expect(page.locator("main button")).to_have_count(0)
    await expect(page.locator("form.start")).to_have_count(0)
    csrf = await page.locator("input[name=csrf]").first.get_attribute("value")
    forged = await page.request.post(
        url(baton, f"/runs/{failed_run}/retry-failed"), form={"csrf": csrf or ""}
    )
    assert forged.status == 403 and "vic is a viewer" in await forged.text()
    assert baton.run(failed_run).attempt == 1


async def test_cancel_a_waiting_run(page: Page, baton: Server) -> None:
    run_id = baton.start_run("nap")
    baton.wait_step(run_id, "sleep", "waiting")
    await log_in(page, baton, ALICE, f"/runs/{run_id}")
    await page.locator("#action-cancel").click()
    await expect(page.locator("#run-status")).to_have_attribute("data-status", "cancelled")
    await expect(page.locator("#action-cancel")).to_have_count(0)
    assert baton.run(run_id).status == "cancelled"


async def test_retry_from_the_failed_step(page: Page, baton: Server) -> None:
    run_id = baton.start_run("chain")
    baton.wait_run(run_id)
    await log_in(page, baton, ALICE, f"/runs/{run_id}")
    await page.locator("#action-retry-failed").click()
    await expect(page).to_have_url(url(baton, f"/runs/{run_id}"))
    row = wait_until(
        lambda: (r := baton.run(run_id)).attempt == 2 and r.status == "failed" and r,
        what="the retried run failed again",
    )
    assert row.error.startswith("step second failed")
    await page.reload()
    await expect(page.locator("#run-head .meta")).to_contain_text("attempt 2")
    first = [a.run_attempt for a in baton.attempts(run_id, "first")]
    assert first == [1]  # the step that succeeded did not run again


async def test_a_bad_param_in_the_start_form_is_shown_and_starts_nothing(
    page: Page, baton: Server
) -> None:
    await log_in(page, baton, ALICE, "/playbooks")
    form = page.locator("#playbook-hello form.start")
    await form.locator("input[name=param-who]").fill("ops")
    await form.locator("input[name=param-times]").fill("9")
    await form.locator("button.start-run").click()
    error = page.locator("#playbook-hello #form-error")
    await expect(error).to_contain_text("above the maximum 3")
    await expect(error).to_be_in_viewport()  # the answer shows hello's form alone
    await expect(page.locator("#playbook-hello input[name=param-who]")).to_have_value("ops")
    await shot(page, "playbooks")
    assert baton.runs_of("hello") == []


async def test_a_running_steps_log_lines_appear_without_a_reload(page: Page, baton: Server) -> None:
    (baton.work / "go").unlink(missing_ok=True)
    run_id = baton.start_run("follow")
    baton.wait_step(run_id, "hold", "running")
    await log_in(page, baton, ALICE, f"/runs/{run_id}")
    logs = page.locator("#run-logs")
    await expect(logs).to_contain_text("waiting for go")
    await expect(logs).not_to_contain_text("go appeared")
    await expect(page.locator("#run-logs-section .live")).to_have_text("live")
    await page.evaluate("() => { window.kept = 'the same page' }")

    (baton.work / "go").touch()

    await expect(logs).to_contain_text("go appeared")
    await expect(logs).to_contain_text("all done")
    await expect(page.locator("#run-status")).to_have_attribute("data-status", "succeeded")
    await expect(page.locator("#run-logs-section .live")).to_have_count(0)  # it ended
    assert await page.evaluate("() => window.kept") == "the same page"  # no reload


def write_fifo(fifo: Path, text: str) -> None:
    """Write to ``fifo`` once a step has it open for reading (ENXIO until then)."""

    def opened() -> int | None:
        try:
            return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno != errno.ENXIO:
                raise
            return None

    fd = wait_until(opened, what=f"a reader of {fifo}")
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


async def test_a_running_shell_steps_output_appears_while_it_runs(
    page: Page, baton: Server
) -> None:
    fifo = baton.work / "shell-fifo"
    fifo.unlink(missing_ok=True)
    os.mkfifo(fifo)
    run_id = baton.start_run("shell-follow")
    baton.wait_step(run_id, "talk", "running")
    await log_in(page, baton, ALICE, f"/runs/{run_id}")
    logs = page.locator("#run-logs")
    await expect(logs).to_contain_text("] shell waits")  # a log line, before the step ends
    await expect(page.locator("#run-status")).to_have_attribute("data-status", "running")
    await expect(logs).not_to_contain_text("shell goes on")

    write_fifo(fifo, "the test's line\n")

    await expect(logs).to_contain_text("] shell goes on")
    await expect(page.locator("#run-status")).to_have_attribute("data-status", "succeeded")
    await expect(logs).to_contain_text("[stdout]\nshell waits\nthe test's line\nshell goes on")


async def test_parallel_steps_log_each_in_its_place_without_redrawing_the_logs(
    page: Page, baton: Server
) -> None:
    for name in ("left-go", "right-go"):
        (baton.work / name).unlink(missing_ok=True)
    run_id = baton.start_run("pair")
    baton.wait_step(run_id, "right", "running")
    await page.add_init_script(  # the events the page's stream delivered, by name
        "window.sse = []; document.addEventListener("
        "'htmx:sseMessage', (e) => window.sse.push(e.detail.type))"
    )
    await log_in(page, baton, ALICE, f"/runs/{run_id}")
    logs = page.locator("#run-logs")
    await expect(logs).to_contain_text("waiting for right-go")
    await expect(logs).to_contain_text("waiting for left-go")
    await page.wait_for_function("() => window.sse.includes('log')")  # the stream's first
    # a mark on the first line's element: a redrawn body would lose it
    await page.evaluate("() => { document.getElementById('l-run').dataset.kept = 'yes' }")

    (baton.work / "left-go").touch()  # left logs again and ends, while right still runs
    await expect(logs).to_contain_text("left-go appeared")
    await expect(logs).to_contain_text("waited_for")
    text = await logs.inner_text()
    assert text.index("left-go appeared") < text.index("== right . attempt 1")  # in its place
    assert await page.get_attribute("#l-run", "data-kept") == "yes"

    (baton.work / "right-go").touch()
    await expect(page.locator("#run-status")).to_have_attribute("data-status", "succeeded")
    text = await logs.inner_text()
    assert text.index("right-go appeared") > text.index("== right . attempt 1 . succeeded")
    assert text.count("left-go appeared") == 1 and text.count("right-go appeared") == 1


def an_alert(baton: Server) -> None:
    """An Alertmanager webhook with an alert no playbook's trigger matches."""
    alert = {
        "status": "firing",
        "labels": {"alertname": "DiskFull", "severity": "warning", "host": "db-1"},
        "annotations": {"summary": "disk 97% full"},
        "startsAt": "2026-12-01T10:00:00Z",
        "fingerprint": "f00d",
    }
    body = {"version": "4", "status": "firing", "receiver": "baton", "alerts": [alert]}
    status, answer = baton.request("POST", "/alerts/alertmanager", body, token=ALERT_TOKEN)
    assert status == 202, answer


async def test_screenshots_of_the_other_pages(page: Page, baton: Server) -> None:
    await log_in(page, baton, ALICE, "/schedules")
    await expect(page.locator('tr[data-schedule] a[href="/?playbook=nap"]')).to_be_visible()
    await shot(page, "schedules")
    an_alert(baton)
    for name in ("alerts", "audit", "stats"):
        await page.goto(url(baton, f"/{name}"))
        await expect(page.locator("main h1")).to_be_visible()
        await expect(page.locator("#error")).to_have_count(0)
        await shot(page, name)
    await expect(page.locator("#nav a.current")).to_have_text("Stats")
    await expect(page.locator("#stats-charts svg")).to_have_count(3)


async def test_one_playbooks_stats_with_the_picker(page: Page, baton: Server) -> None:
    baton.wait_run(baton.start_run("chain"))
    await log_in(page, baton, VIC, "/stats")
    await page.locator("#stats-filters select[name=playbook]").select_option("chain")
    await page.locator("#stats-filters button").click()
    await expect(page).to_have_url(url(baton, "/stats?playbook=chain&days=30"))
    await expect(page.locator('#stats-steps tr[data-step="second"]')).to_be_visible()
    await expect(page.locator("#chart-step_p95 svg")).to_contain_text("Step duration, p95")
    await shot(page, "stats-chain")
