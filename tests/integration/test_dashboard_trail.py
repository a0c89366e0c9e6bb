"""What the dashboard tells about a run's people: who approved or rejected its gates
(when, with their comment) on the run page, the comment typed in the dashboard's own
Approve form reaching the decision as chat's does, a run's audit trail holding its start
and its gates' decisions, and a runs list filtered by a trigger there is no such thing as
answered with a 400 naming the triggers (the real app on SQLite, people logged in)."""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from engine.runs.requests import TRIGGERS
from storage import tables as t
from tests.integration.dashboard_support import Site, dashboard, ids_in, start

WAIT_TWO = {
    "two-keys": """
        name: two-keys
        description: Two approvals needed, then a log line.
        steps:
          - id: gate
            action: approval
            with: {approvers: [bob, carol, dave], min_approvals: 2, message: "go?"}
          - id: after
            action: log
            needs: gate
            with: {message: "after the gate"}
    """,
}


async def gate_id(site: Site, run_id: str) -> str:
    row = await site.baton.store.one(
        sa.select(t.approvals.c.id).where(t.approvals.c.run_id == run_id)
    )
    assert row is not None
    return str(row.id)


async def decisions(site: Site, approval: str) -> list[tuple[str, str, str]]:
    rows = await site.baton.store.all(
        sa.select(t.decisions.c.user, t.decisions.c.decision, t.decisions.c.comment)
        .where(t.decisions.c.approval_id == approval)
        .order_by(t.decisions.c.id)
    )
    return [tuple(r) for r in rows]


def decided(page: str) -> dict[str, str]:
    """The decisions a run page shows: person -> the line's text, tags stripped."""
    found = re.findall(r'<li data-decision="([^"]+)">(.*?)</li>', page, re.S)
    return {who: html.unescape(re.sub(r"<[^>]+>", "", text)) for who, text in found}


async def test_the_approve_form_takes_a_comment_and_the_run_page_says_who_decided(
    tmp_path: Path,
) -> None:
    async with dashboard(tmp_path) as site:
        baton, bob = site.baton, await site.visitor("bob")
        run_id = await start(baton, "gated", by="alice")
        gate = await gate_id(site, run_id)
        page = await bob.text(f"/runs/{run_id}")
        assert f'action="/approvals/{gate}/approve"' in page and 'name="comment"' in page
        assert decided(page) == {}  # nobody decided yet

        said = "checked the dashboards, it's fine"
        resp = await bob.submit(f"/runs/{run_id}", f"/approvals/{gate}/approve", comment=said)
        assert resp.status == 303
        await baton.engine.wait_for(run_id)
        assert await decisions(site, gate) == [("bob", "approve", said)]  # as chat's comment

        page = await bob.text(f"/runs/{run_id}")
        shown = decided(page)
        assert list(shown) == ["bob"]
        assert re.fullmatch(
            rf"bob approved at \d{{4}}-\d\d-\d\d [\d:]{{8}} UTC: {said}", shown["bob"]
        )


async def test_the_run_page_lists_each_decision_of_a_quorum_and_a_rejection(
    tmp_path: Path,
) -> None:
    async with dashboard(tmp_path, {**WAIT_TWO}) as site:
        baton = site.baton
        run_id = await start(baton, "two-keys", by="alice")
        gate = await gate_id(site, run_id)
        bob = await site.visitor("bob")
        resp = await bob.submit(f"/runs/{run_id}", f"/approvals/{gate}/approve")  # no comment
        assert resp.status == 303
        await baton.engine.wait_idle()
        page = await bob.text(f"/runs/{run_id}")
        assert list(decided(page)) == ["bob"] and decided(page)["bob"].endswith(" UTC")
        assert "1 of 2" in page

        await baton.engine.decide(gate, "carol", "reject", "not during the freeze")
        await baton.engine.wait_for(run_id)
        shown = decided(await bob.text(f"/runs/{run_id}"))
        assert list(shown) == ["bob", "carol"]
        assert "carol rejected at " in shown["carol"]
        assert shown["carol"].endswith("UTC: not during the freeze")


def audited(page: str) -> list[tuple[str, str, str]]:
    """The rows of an audit page: (who, action, target), newest first."""
    rows = re.findall(r'<tr data-audit="\d+">(.*?)</tr>', page, re.S)
    out = []
    for row in rows:
        cells = [
            re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
        ]
        out.append((cells[1], cells[2], cells[3]))
    return out


async def test_a_runs_audit_trail_holds_its_start_and_its_gates_decisions(
    tmp_path: Path,
) -> None:
    async with dashboard(tmp_path) as site:
        baton, alice = site.baton, await site.visitor("alice")
        resp = await alice.submit("/playbooks", "/playbooks/gated/run")
        run_id = resp.headers["Location"].rsplit("/", 1)[1]
        await baton.engine.wait_idle()
        other = await start(baton, "gated", by="alice")  # another run: none of its rows
        gate = await gate_id(site, run_id)
        bob = await site.visitor("bob")
        resp = await bob.submit(f"/runs/{run_id}", f"/approvals/{gate}/approve", comment="ok")
        assert resp.status == 303
        await baton.engine.wait_for(run_id)

        page = await bob.text("/audit", params={"target": run_id})
        rows = audited(page)
        assert ("alice", "run", "gated") in rows  # its start: the target is the playbook
        assert ("alice", "approval-request", gate) in rows
        assert ("bob", "approve", gate) in rows and ("bob", "command:approve", gate) in rows
        assert f'<a href="/runs/{run_id}">gated</a>' in page
        assert len(rows) == 4, rows
        other_gate = await gate_id(site, other)
        assert not any(other_gate in row for row in rows)
        # the rows of the other run, its start among them, under its own id
        assert ("alice", "run", "gated") in audited(
            await bob.text("/audit", params={"target": other})
        )
        # a playbook's trail is as before: the rows naming it
        by_playbook = audited(await bob.text("/audit", params={"target": "gated"}))
        assert [r[1] for r in by_playbook] == ["run", "command:run", "run"]


async def test_a_trigger_that_is_none_is_a_400_naming_the_triggers(tmp_path: Path) -> None:
    async with dashboard(tmp_path) as site:
        baton, me = site.baton, await site.visitor("vera")
        run_id = await start(baton, "hello", who="ops")  # trigger api
        page = await me.text("/?trigger=sms", status=400)
        assert (
            html.unescape(page).count(
                "trigger must be one of api, cli, console, slack, web, schedule, alert, playbook, "
                "not 'sms'"
            )
            == 1
        )
        assert ids_in(page, "data-run") == []
        options = re.findall(r'<select name="trigger">(.*?)</select>', page, re.S)
        assert options and re.findall(r'<option value="([^"]*)"', options[0]) == ["", *TRIGGERS]
        assert ids_in(await me.text("/?trigger=api"), "data-run") == [run_id]
        assert 'id="no-runs"' in await me.text("/?trigger=schedule")

        api: Any = await site.browser()
        resp = await api.get("/api/runs", params={"trigger": "sms"})
        body = await resp.json()
        assert resp.status == 400 and "trigger must be one of api, cli" in body["error"]
        resp = await api.get("/api/runs", params={"trigger": "api"})
        assert resp.status == 200
        assert [r["id"] for r in await resp.json()] == [run_id]
