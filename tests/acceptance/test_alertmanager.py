"""Prometheus Alertmanager to Baton, end to end, with the real Alertmanager from Debian.

Baton serves (SQLite, run cards to the fake Slack), an ``alertmanager`` process has
Baton's webhook as its receiver, and ``amtool`` pushes a DiskFull alert: the playbook
whose trigger matches runs with the alert's instance as its ``host``, its card appears
in the trigger's channel naming the alert and its owners. Alertmanager notifies again
while the alert fires (``repeat_interval``): the repeat attaches to the run and the card
counts it. Then ``amtool`` ends the alert, Alertmanager sends the resolved notification,
the card says so and its thread tells how long it took; the run goes on to succeed, and
no other run or card appears.

Every wait polls Baton's API, the fake Slack's messages or the processes, up to a
deadline; Alertmanager's own grouping timers are one second (tests/acceptance/alertmanager.py).
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.acceptance.alertmanager import Alertmanager, SlackServer, eventually
from tests.fakes.slack import FakeSlack

ALERT_TOKEN = "alertmanager-acceptance-token"
CHANNEL = "C0OPS"
LABELS = {"alertname": "DiskFull", "severity": "critical", "instance": "db-1"}
ANNOTATIONS = {"summary": "/var on db-1 is 97% full"}
GRAPH = "http://prometheus.example:9090/graph?g0.expr=disk_used_ratio"

PLAYBOOKS = {
    "disk-cleanup": """
        name: disk-cleanup
        params:
          host: {type: string, required: true}
        triggers:
          - alert:
              source: alertmanager
              match: {alertname: DiskFull, severity: "critical|warning"}
              params: {host: "{{ alert.labels.instance }}"}
              channel: C0OPS
              mention: ["@oncall"]
        steps:
          - id: clean
            action: log
            with: {message: "cleaning /var on {{ params.host }}"}
          - id: settle
            action: wait
            needs: clean
            with: {for: 6s}
    """,
}


def shown(message: dict[str, Any]) -> str:
    """Everything a Slack message shows as text: its fallback and its blocks' text."""
    parts = [str(message.get("text") or "")]
    for block in message.get("blocks") or []:
        text = block.get("text")
        if isinstance(text, dict):
            parts.append(str(text.get("text", "")))
        for element in block.get("elements") or []:
            if isinstance(element, dict) and isinstance(element.get("text"), str):
                parts.append(element["text"])
    return "\n".join(parts)


def top_level(slack: FakeSlack, channel: str) -> list[dict[str, Any]]:
    return [m for m in slack.messages(channel) if m["thread_ts"] in (None, m["ts"])]


async def test_an_alertmanager_alert_runs_its_playbook_and_resolving_it_updates_the_card(
    tmp_path: Path,
) -> None:
    async with FakeSlack() as slack:
        server = SlackServer(
            tmp_path,
            f"sqlite:///{tmp_path / 'baton.db'}",
            PLAYBOOKS,
            alert_token=ALERT_TOKEN,
            slack_url=slack.url,
        )
        am: Alertmanager | None = None
        try:
            await asyncio.to_thread(server.start)
            am = Alertmanager(
                tmp_path / "alertmanager",
                webhook=f"http://127.0.0.1:{server.port}/alerts/alertmanager",
                token=ALERT_TOKEN,
            )
            await am.start()

            async def get(path: str) -> Any:
                return await asyncio.to_thread(server.get, path)

            async def routed() -> list[dict[str, Any]] | None:
                rows: list[dict[str, Any]] = await get("/api/alerts")
                return rows if rows and all(r["outcome"] != "pending" for r in rows) else None

            # --- the alert fires --------------------------------------------------------
            fired_at = datetime.now(UTC)
            await am.add(LABELS, ANNOTATIONS, start=fired_at, generator_url=GRAPH)

            (fired,) = await eventually(routed, what="the firing alert routed")
            assert fired["source"] == "alertmanager" and fired["status"] == "firing", fired
            assert fired["name"] == "DiskFull" and fired["labels"] == LABELS, fired
            assert fired["severity"] == "critical", fired
            assert fired["outcome"] == "started" and fired["run_id"], fired
            run_id = fired["run_id"]

            run = await get(f"/api/runs/{run_id}")
            assert run["playbook"] == "disk-cleanup" and run["trigger"] == "alert", run
            assert run["params"] == {"host": "db-1"}, run
            assert run["requested_by"] == "alert:alertmanager", run

            (post,) = await slack.wait_for(
                "chat.postMessage",
                lambda c: c.args.get("channel") == CHANNEL and not c.args.get("thread_ts"),
                timeout=20,
            )
            card_ts = post.response["ts"]
            card = shown(slack.message(CHANNEL, card_ts))
            assert f"*disk-cleanup* · run `{run_id}`" in card, card
            assert (
                ":rotating_light: alert *DiskFull* (critical) from alertmanager:"
                " /var on db-1 is 97% full"
            ) in card, card
            assert f"<{GRAPH}|Source>" in card, card
            assert f"<{am.url}/#/silences/new?filter=" in card, card  # its --web.external-url
            assert "owners: <!subteam^S0ONCALL>" in card, card  # @oncall, the user group

            async def card_shows(*texts: str) -> bool:
                card = shown(slack.message(CHANNEL, card_ts))
                return all(text in card for text in texts)

            # --- it fires again (Alertmanager's repeat_interval): the run gets it --------
            async def repeated() -> list[dict[str, Any]] | None:
                rows = await routed()
                return rows if rows and len(rows) > 1 else None

            rows = await eventually(repeated, what="a repeat of the alert routed")
            assert rows[0]["status"] == "firing", rows
            assert rows[0]["fingerprint"] == fired["fingerprint"], rows
            assert rows[0]["outcome"] == "attached" and rows[0]["run_id"] == run_id, rows

            async def counted() -> bool:  # 1 more time (more on a slow machine)
                card = shown(slack.message(CHANNEL, card_ts))
                return re.search(r"\bfired \d+ more times?\b", card) is not None

            await eventually(counted, what="the card counts the repeat")

            # --- the alert ends -------------------------------------------------------
            await am.add(
                LABELS, ANNOTATIONS, start=fired_at, end=datetime.now(UTC), generator_url=GRAPH
            )

            async def resolved() -> list[dict[str, Any]] | None:
                rows = await routed()
                return rows if rows and rows[0]["status"] == "resolved" else None

            ended, *repeats, first = await eventually(resolved, what="the resolution routed")
            assert first == fired and repeats, (first, repeats)
            for repeat in repeats:  # every firing notification after the first
                assert repeat["status"] == "firing" and repeat["outcome"] == "attached", repeat
                assert repeat["run_id"] == run_id, repeat
            assert ended["outcome"] == "resolved" and ended["run_id"] == run_id, ended
            assert ended["fingerprint"] == fired["fingerprint"], (ended, fired)
            assert f"resolved run {run_id}" in ended["reason"], ended

            await eventually(
                lambda: card_shows(":white_check_mark: resolved after "),
                what="the card says resolved",
            )

            async def told_in_thread() -> list[dict[str, Any]]:
                return [
                    m
                    for m in slack.thread(CHANNEL, card_ts)
                    if "alert *DiskFull* resolved after " in shown(m)
                ]

            (note,) = await eventually(told_in_thread, what="resolved after ... in the thread")
            assert note["text"].startswith(":white_check_mark:"), note

            # --- the run goes on to its end; the card keeps the alert's story ------------
            async def succeeded() -> bool:
                return bool((await get(f"/api/runs/{run_id}"))["status"] == "succeeded")

            await eventually(succeeded, what=f"run {run_id} succeeded")
            times = f"fired {len(repeats)} more time{'s' * (len(repeats) > 1)}"
            await eventually(
                lambda: card_shows("*succeeded*", times, ":white_check_mark: resolved after "),
                what="the card says succeeded, repeated and resolved",
            )

            # nothing else: one run, one card, nothing posted anywhere else
            runs = await get("/api/runs?playbook=disk-cleanup")
            assert [r["id"] for r in runs] == [run_id], runs
            assert [m["ts"] for m in top_level(slack, CHANNEL)] == [card_ts]
            posted = {c.args.get("channel") for c in slack.calls_to("chat.postMessage")}
            assert posted == {CHANNEL}, posted
            assert not [c for c in slack.calls if c.response and not c.ok], slack.calls
            assert len(await get("/api/alerts")) == len(repeats) + 2

            # both stop cleanly; neither logged a failure on the way
            stopped = await am.stop()
            am_log = am.log()
            assert stopped == 0, am_log
            assert "Notify for alerts failed" not in am_log, am_log
            assert await asyncio.to_thread(server.terminate) == 0
            problems = [line for line in server.log if "Traceback" in line or "ERROR" in line]
            assert not problems, "\n".join(server.log)
        finally:
            if am is not None:
                await am.stop()
                print(am.log())  # shown by pytest when the test failed
            server.close()
