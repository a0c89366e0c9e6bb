"""The HTTP edge under hostile bodies: the worst ``GET /healthz`` latency while gzip
bombs and heavy bodies are in flight.

Baton is composed as ``baton serve`` composes it (``bench.served``): the engine on a
SQLite file in a fresh temp folder, the alert router, the Slack front end in HTTP mode
(on the tests' fake Slack Web API), and Baton's aiohttp server on 127.0.0.1 with
``BATON_ALERT_TOKEN`` and ``SLACK_SIGNING_SECRET`` set. A client process
(bench/edge_client.py) sends, all at once, 4 gzip bombs of 1 GiB of spaces (about 1 MB
each on the wire) to each of ``/alerts/alertmanager`` and ``/slack/events`` without
credentials and to ``/alerts/generic`` with the token, plus 4 heavy bodies (1,000 alerts
each, stored and routed), and probes ``/healthz`` one request after the other until
every one of them is answered (at least 100 probes). Before this change, 4 such bombs
pushed ``/healthz`` to 7 s; the target is a worst probe under 100 ms.

The figures: the probes' latencies (median, p95, p99, max), how each kind of request was
answered, and the slowest answer to a bomb. A bomb answered 202, or a probe that fails,
raises.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from bench import edge_client, served
from bench.common import figure, heading, latencies
from tests.fakes import slack as fake

TOKEN = "bench-alert-token-0123456789abcdef"
SECRET = "bench-signing-secret-0123456789ab"
BOMBS = 4  # per route
HEAVY = 4
MEGABYTES = 1024
PROBES = 100
CLIENT_TIMEOUT = 300.0


async def bench() -> None:
    with tempfile.TemporaryDirectory(prefix="baton-bench-edge-") as tmp:
        root = Path(tmp)
        (root / "playbooks").mkdir()
        async with fake.FakeSlack() as slack:
            settings = served.settings_in(
                root,
                alert_token=SecretStr(TOKEN),
                slack_bot_token=SecretStr(slack.bot_token),
                slack_signing_secret=SecretStr(SECRET),
                slack_api_url=slack.url,
            )
            async with served.composed(settings, slack=True) as c:
                client = await served.ClientProcess.start(
                    "bench.edge_client",
                    [c.url, "--timeout", str(CLIENT_TIMEOUT)],
                    {edge_client.TOKEN_ENV: TOKEN},
                    "the edge client process",
                    CLIENT_TIMEOUT,
                )
                try:
                    await client.ask({"bombs": 0, "heavy": 0, "megabytes": 1, "probes": 20})
                    for bombs, heavy in ((BOMBS, 0), (0, HEAVY), (BOMBS, HEAVY)):
                        ask = {"bombs": bombs, "heavy": heavy, "megabytes": MEGABYTES}
                        answer = await client.ask({**ask, "probes": PROBES})
                        assert c.baton.alerts is not None
                        await c.baton.alerts.idle()
                        report(bombs, heavy, answer)
                finally:
                    await client.close()


def report(bombs: int, heavy: int, answer: dict[str, Any]) -> None:
    requests = answer["requests"]
    sent_bombs, bodies = requests[: 3 * bombs], requests[3 * bombs :]
    wrong = [r for r in sent_bombs if r["status"] not in (401, 413, 415)]
    wrong += [r for r in bodies if r["status"] != 202]
    if wrong:
        raise RuntimeError(f"answers other than expected: {wrong}")
    what = []
    if bombs:
        what.append(f"{bombs} gzip bombs ({MEGABYTES} MiB inflated) per route")
    if heavy:
        what.append(f"{heavy} bodies of 1,000 alerts")
    heading(f"/healthz while {' and '.join(what)} are in flight")
    latencies("/healthz", f"{len(answer['probes'])} probes", answer["probes"], "", "< 100 ms")
    statuses = Counter(f"{r['path']} {r['status']}" for r in requests)
    figure("answers", ", ".join(f"{k} x{n}" for k, n in sorted(statuses.items())))
    if sent_bombs:
        slowest = max((r["acked"] - r["sent"]) * 1000 for r in sent_bombs)
        figure("slowest answer to a bomb", slowest, "ms")


def main() -> None:
    served.run_as_served(bench)


if __name__ == "__main__":
    asyncio.run(bench())
