"""The hostile side of ``bench/edge.py``: gzip bombs and heavy bodies at Baton's HTTP
edge, and ``GET /healthz`` probed one at a time while they are in flight, from a process
of its own.

``python -m bench.edge_client URL [--timeout S]`` (Baton's base URL), with the alert
token in ``BATON_BENCH_ALERT_TOKEN``. It prints ``{"ready": true}``, then answers each
JSON line on stdin::

    {"bombs": b, "heavy": h, "megabytes": m, "probes": p}

by sending, all at once, ``b`` gzip bombs (``m`` MiB of spaces, about ``m`` KB sent) to
each of ``/alerts/alertmanager`` and ``/slack/events`` without credentials and to
``/alerts/generic`` with the token, and ``h`` heavy bodies (Alertmanager notifications of
1,000 alerts each, about 0.5 MB, with the token: stored, then routed); meanwhile it
GETs ``/healthz`` one request after the other until every one of those is answered, and
at least ``p`` times. It answers with one JSON line::

    {"probes": [ms, ...], "requests": [{"n", "path", "status", "sent", "acked", "error"}]}

Times are ``time.monotonic()``; every body is built before anything is sent.
"""

from __future__ import annotations

import asyncio
import json
import time
import zlib
from typing import Any

import aiohttp

from bench import alerts_client, client

TOKEN_ENV = "BATON_BENCH_ALERT_TOKEN"


def bomb(megabytes: int) -> bytes:
    """A gzip of ``megabytes`` MiB of spaces (about a thousandth of it in size)."""
    pack = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = b" " * (1 << 20)
    return b"".join([*(pack.compress(block) for _ in range(megabytes)), pack.flush()])


def heavy(n: int) -> bytes:
    """An Alertmanager notification of 1,000 distinct alerts (the default cap)."""
    body = alerts_client.notification("BenchHeavy", 0)
    entry = body["alerts"][0]
    body["alerts"] = [
        {**entry, "fingerprint": f"heavy-{n}-{i}", "labels": {**entry["labels"], "n": str(i)}}
        for i in range(1000)
    ]
    return json.dumps(body).encode()


async def probe(session: aiohttp.ClientSession, url: str) -> float:
    start = time.monotonic()
    async with session.get(f"{url}/healthz") as response:
        await response.read()
        if response.status != 200:
            raise RuntimeError(f"/healthz answered {response.status}")
    return (time.monotonic() - start) * 1000


async def batch(
    session: aiohttp.ClientSession, url: str, token: str, ask: dict[str, Any]
) -> dict[str, Any]:
    bombs, heavies = int(ask["bombs"]), int(ask["heavy"])
    zipped = bomb(int(ask["megabytes"]))
    gzip = {"Content-Encoding": "gzip", "Content-Type": "application/json"}
    auth = {"Authorization": f"Bearer {token}"}
    sends: list[tuple[str, bytes, dict[str, str]]] = []
    for _ in range(bombs):
        sends += [
            ("/alerts/alertmanager", zipped, gzip),
            ("/alerts/generic", zipped, {**gzip, **auth}),
            ("/slack/events", zipped, gzip),
        ]
    plain = {"Content-Type": "application/json", **auth}
    sends += [("/alerts/alertmanager", heavy(n), plain) for n in range(heavies)]
    tasks = [
        asyncio.create_task(client.timed_post(session, f"{url}{path}", n, body, headers))
        for n, (path, body, headers) in enumerate(sends)
    ]
    probes: list[float] = []
    while not all(t.done() for t in tasks) or len(probes) < int(ask["probes"]):
        probes.append(await probe(session, url))
    requests = []
    for (path, _, _), result in zip(sends, await asyncio.gather(*tasks), strict=True):
        result.pop("text")
        requests.append({**result, "path": path})
    return {"probes": probes, "requests": requests}


def main() -> None:
    parser = client.parser("python -m bench.edge_client", __doc__, "Baton's base URL")
    args = parser.parse_args()
    token = client.secret_from(parser, TOKEN_ENV, "alert token")
    url = args.url
    asyncio.run(
        client.serve_lines(args.timeout, lambda session, ask: batch(session, url, token, ask))
    )


if __name__ == "__main__":
    main()
