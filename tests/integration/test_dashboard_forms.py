"""Hostile input on the dashboard's query strings and forms (found by an outside probe):
each gets a 4xx naming what is wrong, never a 500, a page from elsewhere or a value
changed behind the person's back."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

import sqlalchemy as sa
from aiohttp import FormData

from storage import tables as t
from tests.integration.dashboard_support import dashboard, start


def cursor(*parts: str) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(parts)).encode()).decode().rstrip("=")


async def test_query_strings_out_of_range_or_forged_are_400_pages(tmp_path: Path) -> None:
    async with dashboard(tmp_path) as site:
        me = await site.visitor("alice")
        assert "limit must be a whole number" in await me.text("/?limit=%C2%B2", status=400)
        assert "limit must be a whole number" in await me.text("/audit?limit=%C2%B2", status=400)
        late = "/?since=9999-12-31T23:59-23:59"
        assert "since: &#39;9999-12-31T23:59-23:59&#39; is out of range" in await me.text(
            late, status=400
        )
        assert "at most" in await me.text("/audit?since=5000d", status=400)  # the real reason
        for path in (
            "/?cursor=" + cursor("runs", "2026-12-02T07:59:35+00:00", "\ud800"),
            "/?cursor=" + cursor("runs", "9999-12-31T23:59:59.999999-23:59", "x"),
            "/audit?cursor=" + cursor("audit", "9" * 30),
            "/audit?cursor=" + cursor("audit", "\u00b2"),
            "/alerts?cursor=" + cursor("alerts", "\ud800"),
        ):
            assert "cursor" in await me.text(path, status=400), path
        twice = "/?status=failed&status=succeeded"  # a filter takes one value, not the first
        assert "status: given 2 times; give it once" in await me.text(twice, status=400)
        assert "since: given 2 times" in await me.text("/audit?since=1h&since=2h", status=400)
        nul = await me.client.get("/runs/%00")  # refused before any handler: still a page
        assert nul.status == 400 and nul.content_type == "text/html"
        assert "frame-ancestors 'none'" in nul.headers["Content-Security-Policy"]


async def test_forms_refuse_what_they_cannot_read_whole(tmp_path: Path) -> None:
    async with dashboard(tmp_path) as site:
        me = await site.visitor("alice")
        await me.text("/playbooks")
        start = "/playbooks/hello/run"
        bogus = await me.client.post(
            start,
            data=f"csrf={me.csrf}&start=1".encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded; charset=bogus-xyz"},
        )
        assert bogus.status == 400 and "unknown charset 'bogus-xyz'" in await bogus.text()
        broken = await me.client.post(
            start,
            data=f"csrf={me.csrf}&start=1&param-who=%ED%A0%80".encode(),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert broken.status == 400 and "not valid utf-8" in await broken.text()
        upload = FormData({"csrf": me.csrf, "start": "1"})
        upload.add_field("param-who", b"x", filename="hostname")
        sent = await me.client.post(start, data=upload)
        assert sent.status == 415 and "a file cannot be a value" in await sent.text()
        nul = await me.post(start, {"start": "1", "param-who": "a\x00b"})
        assert nul.status == 400 and "'param-who' holds a NUL character" in await nul.text()
        huge = await me.post(start, {"start": "1", "param-who": "a" * 40_000})
        assert huge.status == 413 and "'param-who' is 40,000 characters" in await huge.text()
        runs = await site.baton.store.all(sa.select(t.runs.c.id))
        assert runs == []  # nothing started, nothing changed behind anyone's back

        back = await me.post("/approvals/nope/approve", {"back": "/\\evil.example"})
        assert 'href="/\\evil.example"' not in await back.text()


async def test_a_form_body_that_stalls_gets_408(tmp_path: Path) -> None:
    async with dashboard(tmp_path, read_timeout=0.5) as site:
        me = await site.visitor("alice")
        await me.text("/playbooks")
        reader, writer = await asyncio.open_connection(site.server.host, site.server.port)
        cookies = "; ".join(f"{c.key}={c.value}" for c in me.client.session.cookie_jar)
        writer.write(
            b"POST /playbooks/hello/run HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n"
            + f"Cookie: {cookies}\r\nX-CSRF-Token: {me.csrf}\r\n\r\n".encode()
            + b"start=1"
        )
        await writer.drain()
        status = await asyncio.wait_for(reader.readline(), 10)
        assert b" 408 " in status, status
        writer.close()


async def test_the_requester_sees_why_not_where_an_approver_sees_the_buttons(
    tmp_path: Path,
) -> None:
    async with dashboard(tmp_path) as site:
        run_id = await start(site.baton, "gated", by="alice")
        alice, bob = await site.visitor("alice"), await site.visitor("bob")
        own = await alice.text(f"/runs/{run_id}")
        assert 'class="approve"' not in own and f"alice started run {run_id}" in own
        theirs = await bob.text(f"/runs/{run_id}")
        assert 'class="approve"' in theirs
