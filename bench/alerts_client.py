"""The Alertmanager side of ``bench/alerts.py``: POSTs Alertmanager v4 webhooks to
Baton's ``POST /alerts/alertmanager``, in a process of its own, as Alertmanager would.

``python -m bench.alerts_client URL [--timeout S]``, with the bearer token in
``BATON_BENCH_ALERT_TOKEN``. It opens one aiohttp session (no connection limit), prints
``{"ready": true}`` and then reads one JSON request a line on stdin::

    {"first": n, "count": k, "distinct": d, "concurrency": c, "alertname": "DiskFull"}

sends notifications ``n .. n+k-1`` (notification ``i`` carries one firing alert of
fingerprint ``i % d``: Alertmanager with ``group_by: ['...']`` sends one notification per
alert) with at most ``c`` in flight (0: all at once, ``asyncio.gather``), and answers with
one JSON line::

    {"start": t0, "end": t1, "requests": [{"n", "sent", "acked", "status", "accepted",
                                           "rejected", "ids", "error"}]}

Times are ``time.monotonic()`` (CLOCK_MONOTONIC, one clock for the whole system), so
the parent can set them beside its own. Every body is built before ``t0``; ``sent`` is
taken just before its POST (after the wait for a free slot, when bounded), ``acked``
once its response body is read. The client stops at the end of stdin.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import time
from typing import Any

import aiohttp

from bench import client

TOKEN_ENV = "BATON_BENCH_ALERT_TOKEN"
EXTERNAL_URL = "http://alertmanager.example.org:9093"


def labels_of(alertname: str, index: int) -> dict[str, str]:
    """The labels of distinct alert ``index``: one disk of one host."""
    return {
        "alertname": alertname,
        "cluster": "eu-1",
        "device": "/dev/sda1",
        "instance": f"db-{index:03d}",
        "job": "node",
        "severity": "warning",
        "team": "storage",
    }


def fingerprint_of(alertname: str, index: int) -> str:
    """16 hex digits, as Alertmanager's fingerprints look; stable for the same labels."""
    labels = labels_of(alertname, index)
    text = "\xff".join(f"{k}\xff{v}" for k, v in sorted(labels.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def notification(alertname: str, index: int) -> dict[str, Any]:
    """An Alertmanager v4 webhook body (the shape of tests/fakes/alerts/*.json) holding
    one firing alert: its group is the alert itself (``group_by: ['...']``)."""
    labels = labels_of(alertname, index)
    matchers = ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    summary = f"{labels['instance']} {labels['device']} is {90 + index % 10}% full"
    return {
        "version": "4",
        "groupKey": f"{{}}:{{{matchers}}}",
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "baton",
        "groupLabels": labels,
        "commonLabels": labels,
        "commonAnnotations": {"summary": summary},
        "externalURL": EXTERNAL_URL,
        "alerts": [
            {
                "status": "firing",
                "labels": labels,
                "annotations": {
                    "summary": summary,
                    "description": f"{labels['device']} on {labels['instance']} fills up",
                    "runbook_url": "https://runbooks.example.org/storage/disk-full",
                },
                "startsAt": "2026-11-26T09:00:00.000000001Z",
                "endsAt": "0001-01-01T00:00:00Z",
                "generatorURL": "http://prometheus.example.org:9090/graph?g0.expr="
                "disk_used_ratio%3E0.9&g0.tab=1",
                "fingerprint": fingerprint_of(alertname, index),
            }
        ],
    }


async def post(
    session: aiohttp.ClientSession,
    url: str,
    n: int,
    body: bytes,
    headers: dict[str, str],
    slots: asyncio.Semaphore | None,
) -> dict[str, Any]:
    """POST one notification once a slot is free; note when it left and when its answer
    was read, and what the answer says."""
    async with slots or contextlib.nullcontext():
        result = await client.timed_post(session, url, n, body, headers)
    text = result.pop("text")
    result.update(accepted=0, rejected=0, ids=[])
    if not result["error"]:
        try:
            answer = json.loads(text)
            result.update(
                accepted=answer.get("accepted", 0),
                rejected=answer.get("rejected", 0),
                ids=answer.get("ids", []),
            )
        except (json.JSONDecodeError, AttributeError):
            result["error"] = f"not JSON: {text[:300]!r}"
    return result


async def batch(
    session: aiohttp.ClientSession, url: str, token: str, ask: dict[str, Any]
) -> dict[str, Any]:
    first, count, distinct = int(ask["first"]), int(ask["count"]), int(ask["distinct"])
    alertname = str(ask.get("alertname", "DiskFull"))
    concurrency = int(ask.get("concurrency", 0))
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    bodies = [
        (n, json.dumps(notification(alertname, n % distinct)).encode())
        for n in range(first, first + count)
    ]
    slots = asyncio.Semaphore(concurrency) if concurrency > 0 else None
    start = time.monotonic()
    requests = await asyncio.gather(
        *(post(session, url, n, body, headers, slots) for n, body in bodies)
    )
    return {"start": start, "end": time.monotonic(), "requests": requests}


def main() -> None:
    parser = client.parser(
        "python -m bench.alerts_client", __doc__, "Baton's POST /alerts/alertmanager URL"
    )
    args = parser.parse_args()
    token = client.secret_from(parser, TOKEN_ENV, "alert token")
    url = args.url
    asyncio.run(
        client.serve_lines(args.timeout, lambda session, ask: batch(session, url, token, ask))
    )


if __name__ == "__main__":
    main()
