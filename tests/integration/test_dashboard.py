"""The dashboard's pages through the real app (``bot.api.create_app``) on SQLite, behind
its real logins: runs made through the engine, buttons pressed by people logged in with
their own tokens (their forms' CSRF tokens carried along) and carried out by ``Commands``
as them; the local person (no ``users:``) is the OS user, an operator."""

from __future__ import annotations

import asyncio
import html
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp import ClientResponse

from bot.app import Baton
from bot.dashboard import live
from bot.dashboard.run import DRAWINGS
from engine.runs.requests import RunRequest
from engine.views import runlogs
from storage import tables as t
from tests.fakes.livepage import LivePage
from tests.integration.dashboard_support import (
    LOCAL,
    PLAYBOOKS,
    dashboard,
    ids_in,
    start,
    token_of,
)


async def runs_count(baton: Baton) -> int:
    return int(await baton.store.scalar(sa.select(sa.func.count()).select_from(t.runs)))


async def run_row(baton: Baton, run_id: str) -> sa.Row[Any]:
    row = await baton.store.one(sa.select(t.runs).where(t.runs.c.id == run_id))
    assert row is not None
    return row


async def gate_of(baton: Baton, run_id: str) -> sa.Row[Any]:
    row = await baton.store.one(sa.select(t.approvals).where(t.approvals.c.run_id == run_id))
    assert row is not None
    return row


async def test_runs_are_filtered_and_paged_on_the_server(tmp_path: Path) -> None:
    async with dashboard(tmp_path, people=False) as site:  # the local person reads
        baton, me = site.baton, await site.visitor(LOCAL)
        failed = await start(baton, "chain", by="bob")
        hellos = [await start(baton, "hello", who=f"n{i}") for i in range(3)]
        page = await me.text("/")
        assert ids_in(page, "data-run") == [*reversed(hellos), failed]
        assert 'class="badge status-failed"' in page

        page = await me.text("/?status=failed")
        assert ids_in(page, "data-run") == [failed]
        page = await me.text("/?who=bob&playbook=chain")
        assert ids_in(page, "data-run") == [failed]
        page = await me.text("/?trigger=slack")
        assert ids_in(page, "data-run") == [] and 'id="no-runs"' in page

        first = await me.text("/?playbook=hello&limit=2")
        assert ids_in(first, "data-run") == [hellos[2], hellos[1]]
        (older,) = re.findall(r'id="page-next" href="([^"]+)"', first)
        second = await me.text(older.replace("&amp;", "&"))
        assert ids_in(second, "data-run") == [hellos[0]]
        assert 'id="page-next"' not in second and 'id="page-first"' in second

        t0 = baton.engine.clock.now() - timedelta(seconds=4)  # before the first run
        until = {"until": t0.isoformat()}
        assert ids_in(await me.text("/", params=until), "data-run") == []
        since = {"since": (t0 + timedelta(seconds=2.5)).isoformat()}
        assert ids_in(await me.text("/", params=since), "data-run") == hellos[:0:-1]
        assert len(ids_in(await me.text("/?since=1h"), "data-run")) == 4


async def test_a_bad_filter_is_a_message_not_a_500(tmp_path: Path) -> None:
    async with dashboard(tmp_path) as site:
        me = await site.visitor("vera")
        page = await me.text("/?status=broken", status=400)
        assert "status must be one of queued, running" in page
        page = await me.text("/?since=yesterday", status=400)
        assert "since: &#39;yesterday&#39; is neither a time" in page
        page = await me.text("/?cursor=nonsense", status=400)
        assert "cursor is not one this list gave out (not readable)" in page
        assert "limit must be a whole number" in await me.text("/?limit=0", status=400)


async def test_the_run_page_draws_a_node_per_step_in_its_status_colour(tmp_path: Path) -> None:
    async with dashboard(tmp_path) as site:
        baton, me = site.baton, await site.visitor("alice")
        run_id = await start(baton, "chain")
        page = await me.text(f"/runs/{run_id}")
        nodes = dict(re.findall(r'<g id="step-([\w-]+)" class="node step status-(\w+)">', page))
        assert nodes == {"first": "succeeded", "second": "failed", "third": "skipped"}
        for step, colour in (("first", "#86efac"), ("second", "#fca5a5")):
            group = page.split(f'<g id="step-{step}"', 1)[1].split("</g>", 1)[0]
            assert f'fill="{colour}"' in group, group
        assert 'id="run-status" class="badge status-failed"' in page
        assert ids_in(page, "data-step").count("first") == 2  # a timeline bar and its row
        assert 'id="action-retry-failed"' in page and 'id="action-cancel"' not in page
        assert "first done" in page  # the logs and the outputs
        drawn = site.server.app[DRAWINGS].drawn
        await me.text(f"/runs/{run_id}")
        assert site.server.app[DRAWINGS].drawn == drawn  # nothing moved: the cached drawing


async def test_params_show_secrets_masked(tmp_path: Path) -> None:
    async with dashboard(tmp_path) as site:
        baton, me = site.baton, await site.visitor("alice")
        run_id = await start(baton, "hello", who="ops", token="s3cr3t-value")
        page = await me.text(f"/runs/{run_id}")
        assert '<tr data-param="who"><th>who</th><td>ops</td>' in page
        assert "s3cr3t-value" not in page and "***" in page
        assert "hello ops x1" in page
        await me.text("/runs/nope", status=404)


class Events:
    """The server-sent events of one ``/runs/{id}/live`` response, read as they come, and
    the logs a page shows from them (``log`` replaces them, ``append`` adds to them)."""

    def __init__(self, resp: ClientResponse) -> None:
        self.resp = resp
        self.seen: list[tuple[str, str]] = []
        self.page = LivePage()

    @property
    def logs(self) -> str:
        return self.page.text

    async def until(self, wanted: str, event: str = "log") -> None:
        """Read events until the page's logs hold ``wanted`` (``event`` log), or until an
        ``event`` whose data holds ``wanted``."""
        name, data = "", []
        async with asyncio.timeout(10):
            while True:
                raw = await self.resp.content.readline()
                if not raw:
                    raise AssertionError(f"the stream ended; events: {self.seen}")
                line = raw.decode().rstrip("\n")
                if line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("data: "):
                    data.append(line[6:])
                elif line == "" and name:
                    text = "\n".join(data)
                    self.seen.append((name, text))
                    self.page.apply(name, text)
                    if event == "log" and wanted in self.logs:
                        return
                    if name == event and wanted in text:
                        return
                    name, data = "", []


async def test_the_live_stream_delivers_a_log_line_written_after_connecting(
    tmp_path: Path,
) -> None:
    async with dashboard(tmp_path) as site:
        baton, me = site.baton, await site.visitor("alice")
        run_id = await start(baton, "gated")
        resp = await me.client.get(f"/runs/{run_id}/live")
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        events = Events(resp)
        await events.until("prepared")
        assert "after the gate" not in "".join(d for _, d in events.seen)
        gate = await gate_of(baton, run_id)
        await baton.engine.decide(gate.id, "bob", "approve")
        await events.until("after the gate")
        await events.until("succeeded", event="end")
        assert ("state", "succeeded") in events.seen
        resp.close()


LINES = """
name: lines
steps:
  - id: talk
    action: python
    with:
      call: "tests.fakes.pyfuncs:lines_between_files"
      args: {dir: "{{ params.dir }}", lines: 3}
params:
  dir: {type: string}
"""


async def test_the_pages_open_on_one_run_share_one_reader_of_its_logs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """100 browsers on one run must not mean 100 reads of its logs at every line: every
    read is the run's feed's, each page still gets every event, and a line logged while
    a step runs goes out alone (``append``), not with the whole tail again."""
    readers: set[asyncio.Task[Any] | None] = set()
    read = runlogs.read

    async def noted(store: Any, run_id: str) -> runlogs.Logs:
        readers.add(asyncio.current_task())
        return await read(store, run_id)

    monkeypatch.setattr(runlogs, "read", noted)
    async with dashboard(tmp_path, {**PLAYBOOKS, "lines": LINES}) as site:
        baton, me = site.baton, await site.visitor("alice")
        run_id = await baton.engine.start_run(  # not `start`: it waits for the step to end
            RunRequest(playbook="lines", params={"dir": str(tmp_path)}, requested_by="alice")
        )
        pages = [Events(await me.client.get(f"/runs/{run_id}/live")) for _ in range(5)]
        for page in pages:
            await page.until("== talk . attempt 1")
        (tmp_path / "go").touch()
        for page in pages:
            await page.until("line 3 of 3")
        for page in pages:  # the lines logged meanwhile came alone
            assert [name for name, _ in page.seen[3:]] == ["append"] * (len(page.seen) - 3), (
                page.seen
            )
        (tmp_path / "stop").touch()
        for page in pages:
            await page.until("succeeded", event="end")
            page.resp.close()
        names = sorted({task.get_name() if task else "" for task in readers})
        assert names == [f"live-{run_id}"], names  # its first read, then its follower
        assert len(readers) == 2
        final = LivePage(*live.page(await runlogs.read(baton.store, run_id))).text
        for page in pages:
            assert page.logs == final
            appended = "".join(text for name, text in page.seen if name == "append")
            appended = html.unescape(re.sub("<[^>]*>", "", appended))
            assert [line for line in appended.splitlines() if line.startswith("[log")] == [
                f"[log 00:00:00 info] line {n} of 3" for n in (1, 2, 3)
            ], appended
        late = Events(await me.client.get(f"/runs/{run_id}/live"))  # a page opened after
        await late.until("succeeded", event="end")
        assert late.logs == final and late.seen[0][0] == "log"
        await me.text("/runs/nope/live", status=404)


async def test_a_run_deleted_while_followed_ends_its_stream(tmp_path: Path) -> None:
    async with dashboard(tmp_path) as site:
        baton, me = site.baton, await site.visitor("alice")
        run_id = await start(baton, "gated")  # waits for its gate: nothing else moves
        page = Events(await me.client.get(f"/runs/{run_id}/live"))
        await page.until("prepared")
        gone = [
            t.decisions.delete().where(
                t.decisions.c.approval_id.in_(
                    sa.select(t.approvals.c.id).where(t.approvals.c.run_id == run_id)
                )
            )
        ]
        gone += [
            table.delete().where(table.c.run_id == run_id)
            for table in (
                t.approvals,
                t.attempts,
                t.steps,
                t.run_logs,
                t.run_commands,
                t.chat_posts,
            )
        ]
        await baton.store.write(*gone, t.runs.delete().where(t.runs.c.id == run_id))
        await page.until("deleted", event="end")  # at the feed's next look (POLL)


async def test_a_bad_param_in_the_start_form_shows_the_message_and_starts_nothing(
    tmp_path: Path,
) -> None:
    async with dashboard(tmp_path) as site:
        baton, alice = site.baton, await site.visitor("alice")
        typed = {"param-who": "ops", "param-times": "9", "param-token": "pass-word"}
        resp = await alice.submit("/playbooks", "/playbooks/hello/run", **typed)
        page = await resp.text()
        assert resp.status == 400
        assert "times" in page and "above the maximum 3" in page
        assert 'name="param-who" value="ops"' in page  # kept; the secret is asked again
        assert 'value="pass-word"' not in page
        assert await runs_count(baton) == 0

        assert ids_in(page, "data-playbook") == ["hello"]  # its form alone, the message in sight
        resp = await alice.submit("/playbooks", "/playbooks/hello/run", **{"param-times": "2"})
        assert resp.status == 400 and "`hello` needs who" in await resp.text()
        gone = await alice.post("/playbooks/hallo/run", {"param-who": "x"})  # a stale form
        said = await gone.text()
        assert gone.status == 404 and 'id="error"' in said and "Did you mean `hello`?" in said

        asked = {**typed, "param-times": "2", "dry_run": "1"}
        dry = await alice.submit("/playbooks", "/playbooks/hello/run", **asked)
        plan = await dry.text()
        assert dry.status == 200 and 'id="dry-run"' in plan and "greet" in plan
        assert await runs_count(baton) == 0

        resp = await alice.submit(
            "/playbooks", "/playbooks/hello/run", **{**typed, "param-times": "2"}
        )
        assert resp.status == 303
        run_id = resp.headers["Location"].rsplit("/", 1)[1]
        await baton.engine.wait_for(run_id)
        row = await run_row(baton, run_id)
        assert (row.requested_by, row.trigger) == ("alice", "web")
        assert row.params == {"who": "ops", "times": 2, "token": "***"}


async def test_the_local_person_is_the_os_user_and_an_operator(tmp_path: Path) -> None:
    """No ``users:``, a loopback address: the dashboard acts as the login user who
    started Baton, with the role operator, and the gate's rules bind them as anyone."""
    async with dashboard(tmp_path, people=False) as site:
        baton, me = site.baton, await site.visitor(LOCAL)
        home = await me.text("/")
        assert f"{LOCAL} (operator)" in home
        assert 'action="/logout"' not in home  # nobody logged in: nothing to log out of
        resp = await me.submit("/playbooks", "/playbooks/hello/run", **{"param-who": "ops"})
        assert resp.status == 303
        run_id = resp.headers["Location"].rsplit("/", 1)[1]
        await baton.engine.wait_for(run_id)
        row = await run_row(baton, run_id)
        assert (row.requested_by, row.trigger, row.status) == (LOCAL, "web", "succeeded")

        gated = await start(baton, "gated", by=LOCAL)
        gate = await gate_of(baton, gated)
        page = await me.text(f"/runs/{gated}")  # no buttons for the requester: why not
        assert 'class="approve"' not in page
        assert f"{LOCAL} started run {gated} and cannot approve it" in page
        resp = await me.post(f"/approvals/{gate.id}/approve")  # a hand-made form: refused
        assert resp.status == 403
        assert f"{LOCAL} started run {gated} and cannot approve it" in await resp.text()
        assert (await gate_of(baton, gated)).status == "pending"
        # a POST with no CSRF token is refused, and changes nothing
        resp = await me.client.post(f"/runs/{gated}/cancel", allow_redirects=False)
        assert resp.status == 403 and "CSRF token is missing" in await resp.text()
        resp = await me.submit(f"/runs/{gated}", f"/runs/{gated}/cancel")
        assert resp.status == 303
        await baton.engine.wait_for(gated)
        assert (await run_row(baton, gated)).status == "cancelled"


async def test_decisions_go_through_commands_and_self_approval_is_refused(
    tmp_path: Path,
) -> None:
    async with dashboard(tmp_path) as site:
        baton, alice = site.baton, await site.visitor("alice")
        resp = await alice.submit("/playbooks", "/playbooks/gated/run")
        run_id = resp.headers["Location"].rsplit("/", 1)[1]
        await baton.engine.wait_idle()
        gate = await gate_of(baton, run_id)

        page = await alice.text("/approvals")  # alice started it: not hers to decide
        assert 'id="no-approvals"' in page and "cannot approve it" in page
        page = await alice.text(f"/runs/{run_id}")  # nor on the run's page
        assert 'class="approve"' not in page and "cannot approve it" in page
        assert "<td>bob</td><td>0 of 1</td>" in page  # the approvers, alice left out
        resp = await alice.post(f"/approvals/{gate.id}/approve")  # a hand-made form: refused
        assert resp.status == 403
        assert f"alice started run {run_id} and cannot approve it" in await resp.text()
        assert (await gate_of(baton, run_id)).status == "pending"

        bob = await site.visitor("bob")
        resp = await bob.submit(f"/runs/{run_id}", f"/approvals/{gate.id}/reject")
        assert resp.status == 400 and "the reason is required" in await resp.text()
        page = await bob.text("/approvals")
        assert ids_in(page, "data-approval")[0] == gate.id and 'id="approvals-mine"' in page

        resp = await bob.submit(f"/runs/{run_id}", f"/approvals/{gate.id}/approve")
        assert resp.status == 303 and resp.headers["Location"] == f"/runs/{run_id}"
        await baton.engine.wait_for(run_id)
        assert (await gate_of(baton, run_id)).status == "approved"
        audit = await baton.store.all(
            sa.select(t.audit.c.actor, t.audit.c.action, t.audit.c.outcome).where(
                t.audit.c.target == gate.id
            )
        )
        rows = [tuple(a) for a in audit]
        assert ("alice", "command:approve", "refused") in rows
        assert ("bob", "command:approve", "ok") in rows
        trail = await bob.text("/audit", params={"target": gate.id})  # an approval, no run
        assert f'<a href="/audit?target={gate.id}">' in trail and f"/runs/{gate.id}" not in trail


async def attempts_of(baton: Baton, run_id: str) -> dict[str, int]:
    """How many attempts each step of a run had, over all the run's attempts."""
    rows = await baton.store.all(
        sa.select(t.attempts.c.step_id, sa.func.count())
        .where(t.attempts.c.run_id == run_id)
        .group_by(t.attempts.c.step_id)
    )
    return {r[0]: int(r[1]) for r in rows}


async def test_cancel_and_retry_go_through_commands(tmp_path: Path) -> None:
    async with dashboard(tmp_path) as site:
        baton, alice = site.baton, await site.visitor("alice")
        napping = await start(baton, "nap")
        page = await alice.text(f"/runs/{napping}")
        assert 'id="action-cancel"' in page and f'sse-connect="/runs/{napping}/live"' in page
        resp = await alice.submit(f"/runs/{napping}", f"/runs/{napping}/cancel")
        assert resp.status == 303
        await baton.engine.wait_for(napping)
        assert 'data-status="cancelled"' in await alice.text(f"/runs/{napping}")

        failed = await start(baton, "chain")
        resp = await alice.submit(f"/runs/{failed}", f"/runs/{failed}/retry")
        assert resp.status == 303
        await baton.engine.wait_for(failed)
        row = await run_row(baton, failed)
        assert (row.attempt, row.status) == (2, "failed")
        assert await attempts_of(baton, failed) == {"first": 1, "second": 2}

        # `retry RUN --from-failed`: the failed step and what depends on it run again
        resp = await alice.submit(f"/runs/{failed}", f"/runs/{failed}/retry-failed")
        assert resp.status == 303
        await baton.engine.wait_for(failed)
        assert (await run_row(baton, failed)).attempt == 3
        assert await attempts_of(baton, failed) == {"first": 1, "second": 3}
        said = await baton.store.all(
            sa.select(t.audit.c.outcome, t.audit.c.detail).where(
                t.audit.c.action == "command:retry", t.audit.c.actor == "alice"
            )
        )
        assert [r.outcome for r in said] == ["ok", "ok"]
        assert said[1].detail["text"] == f"retry {failed} --from-failed"


async def test_a_viewer_sees_no_buttons_and_cannot_act(tmp_path: Path) -> None:
    async with dashboard(tmp_path) as site:
        baton, vera = site.baton, await site.visitor("vera")
        napping = await start(baton, "nap")
        page = await vera.text(f"/runs/{napping}")
        assert re.findall(r'<form method="post" action="([^"]+)"', page) == ["/logout"]
        assert 'id="run-actions"' not in page and "vera (viewer)" in page
        playbooks = await vera.text("/playbooks")
        assert 'class="start"' not in playbooks
        gate = "/approvals/x/approve"
        for path in (f"/runs/{napping}/cancel", "/playbooks/hello/run", gate):
            resp = await vera.post(path, {"param-who": "x"})
            assert resp.status == 403, path
            assert "vera is a viewer" in await resp.text()
        assert (await run_row(baton, napping)).status == "waiting"
        assert await runs_count(baton) == 1


async def test_every_page_renders_and_links_nowhere_outside(tmp_path: Path) -> None:
    async with dashboard(tmp_path) as site:
        baton, me = site.baton, await site.visitor("alice")
        run_id = await start(baton, "chain")
        waiting = await start(baton, "gated")
        await baton.schedules.add_cron("hello", "0 9 * * 1-5", {"who": "ops"}, "alice")
        pages = [
            "/", f"/runs/{run_id}", f"/runs/{waiting}", f"/runs/{run_id}/panel", "/playbooks",
            "/approvals", "/schedules", "/alerts", "/audit", "/audit?who=alice&action=run",
        ]  # fmt: skip
        host = f"{site.server.host}:{site.server.port}"
        for path in pages:
            page = await me.text(path)
            outside = [u for u in re.findall(r"https?://[^\s\"'<>]+", page) if host not in u]
            assert outside == [], (path, outside)
            for asset in re.findall(r'(?:src|href)="(/static/[^"]+)"', page):
                assert (await me.client.get(asset)).status == 200, asset
        schedules = await me.text("/schedules")
        assert schedules.count("data-schedule=") == 2  # nap's declared one and alice's
        alerts = await me.text("/alerts?outcome=held")
        assert 'id="no-alerts"' in alerts
        assert "outcome must be one of" in await me.text("/alerts?outcome=x", status=400)


async def test_schedule_buttons_pause_resume_and_trigger(tmp_path: Path) -> None:
    async with dashboard(tmp_path) as site:
        baton, alice = site.baton, await site.visitor("alice")
        made = await baton.schedules.add_cron("hello", "0 9 * * *", {"who": "ops"}, "bob")
        resp = await alice.submit("/schedules", f"/schedules/{made.id}/pause")
        assert resp.status == 303 and resp.headers["Location"] == "/schedules"
        page = await alice.text("/schedules")
        row = page.split(f'data-schedule="{made.id}"', 1)[1].split("</tr>", 1)[0]
        assert "status-paused" in row and f"/schedules/{made.id}/resume" in row

        resp = await alice.post(f"/schedules/{made.id}/pause")  # an old tab's button
        assert resp.status == 400 and "is already paused" in await resp.text()
        resp = await alice.submit("/schedules", f"/schedules/{made.id}/resume")
        assert resp.status == 303
        assert not (await baton.schedules.list("hello"))[0].paused

        resp = await alice.submit("/schedules", f"/schedules/{made.id}/trigger")
        assert resp.status == 303
        run_id = resp.headers["Location"].rsplit("/", 1)[1]
        await baton.engine.wait_for(run_id)
        run = await run_row(baton, run_id)
        assert (run.requested_by, run.params["who"]) == ("alice", "ops")
        vera = await site.visitor("vera")
        assert f"/schedules/{made.id}/trigger" not in await vera.text("/schedules")
        viewer = await vera.post(f"/schedules/{made.id}/trigger")
        assert viewer.status == 403 and await runs_count(baton) == 1


async def test_the_audit_trail_is_filtered_by_who_action_target_and_time(tmp_path: Path) -> None:
    async with dashboard(tmp_path) as site:
        baton = site.baton
        bob, vera = await site.visitor("bob"), await site.visitor("vera")
        napping = await start(baton, "nap")
        assert (await bob.submit(f"/runs/{napping}", f"/runs/{napping}/cancel")).status == 303
        await vera.text(f"/runs/{napping}")
        assert (await vera.post(f"/runs/{napping}/cancel")).status == 403
        page = await bob.text("/audit", params={"who": "bob", "action": "command:"})
        rows = re.findall(r"<tr data-audit=\"\d+\">(.*?)</tr>", page, re.S)
        assert len(rows) == 1 and "command:cancel" in rows[0] and f"cancel {napping}" in rows[0]
        page = await bob.text("/audit", params={"target": napping})
        assert f'<a href="/runs/{napping}">' in page
        started = await bob.text("/audit", params={"action": "run"})  # its target: nap
        assert f'<a href="/runs/{napping}">nap</a>' in started
        refused = await bob.text("/audit", params={"who": "vera"})
        assert "web:POST" in refused and f"/runs/{napping}/cancel" in refused
        assert 'id="no-audit"' in await bob.text("/audit", params={"until": "2020-01-01"})
        first = await bob.text("/audit", params={"limit": "1"})
        assert first.count("<tr data-audit=") == 1 and 'id="page-next"' in first


async def test_a_refusal_has_the_status_the_api_gives_it(tmp_path: Path) -> None:
    """What does not exist is a 404 and what the run's state does not allow now a 409,
    on the dashboard's pages as on the API (not a 400 for both)."""
    async with dashboard(tmp_path) as site:
        baton, alice = site.baton, await site.visitor("alice")
        bearer = {"Authorization": f"Bearer {token_of('alice')}"}
        made = await baton.schedules.add_cron("hello", "0 9 * * *", {"who": "ops"}, "alice")
        await baton.schedules.remove(made.id, "alice")
        failed, napping = await start(baton, "chain"), await start(baton, "nap")
        cases = [  # the page's button, the API's call for the same thing, the status
            ("/runs/nope/cancel", ("POST", "/api/runs/nope/cancel?by=alice"), 404),
            ("/runs/nope/retry", ("POST", "/api/runs/nope/retry?by=alice"), 404),
            (f"/runs/{failed}/cancel", ("POST", f"/api/runs/{failed}/cancel?by=alice"), 409),
            (f"/runs/{napping}/retry", ("POST", f"/api/runs/{napping}/retry?by=alice"), 409),
            ("/approvals/nope/approve", ("POST", "/api/approvals/nope"), 404),
            ("/playbooks/hallo/run", ("GET", "/api/playbooks/hallo"), 404),
            (f"/schedules/{made.id}/pause", ("DELETE", f"/api/schedules/{made.id}"), 404),
        ]
        for page_path, (method, api_path), status in cases:
            shown = await alice.post(page_path, {"param-who": "x"})
            assert shown.status == status, (page_path, await shown.text())
            body = {"decision": "approve"} if "approvals" in api_path else None
            answer = await alice.client.request(method, api_path, headers=bearer, json=body)
            assert answer.status == status, (api_path, await answer.text())
        assert (await run_row(baton, napping)).status == "waiting"  # nothing changed
