"""``python -m bench.live_client URL --clients N``: N server-sent-event clients of one
run's live stream (``GET /runs/{id}/live``) in a process of their own, so their reading
does not share the server's CPU time with it.

Prints ``{"ready": true}`` once every client has its first event, then, when every
stream has sent ``end``, one JSON line: ``delays_ms`` (per client, per log line, from
the line's ``sent`` time to the event that first showed it to that client), ``lines``
(how many distinct lines each client saw) and ``errors``. The parent is bench/live.py."""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

SENT = re.compile(r"line (\d+) sent (\d+\.\d+)")


@dataclass
class Listener:
    """One client's view: the lines it saw and how late each arrived."""

    seen: set[int] = field(default_factory=set)
    delays_ms: list[float] = field(default_factory=list)

    def take(self, name: str, data: list[str], at: float) -> None:
        if name not in ("log", "append"):  # the whole tail, or the lines added to it
            return
        for line in data:
            match = SENT.search(line)
            if match and int(match.group(1)) not in self.seen:
                self.seen.add(int(match.group(1)))
                self.delays_ms.append((at - float(match.group(2))) * 1000)


async def listen(
    session: aiohttp.ClientSession, url: str, listener: Listener, connected: asyncio.Queue[None]
) -> None:
    """Read the stream event by event until ``end``; the first event counts as connected."""
    async with session.get(url) as response:
        if response.status != 200:
            raise RuntimeError(f"GET {url}: {response.status} {await response.text()}")
        name, data, first = "", [], True
        async for raw in response.content:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data.append(line[6:])
            elif not line and name:  # a blank line ends an event
                listener.take(name, data, time.monotonic())
                if first:
                    first = False
                    connected.put_nowait(None)
                if name == "end":
                    return
                name, data = "", []
    raise RuntimeError(f"GET {url}: the stream closed before its end event")


async def run(url: str, clients: int, per_stream: float) -> None:
    listeners = [Listener() for _ in range(clients)]
    connected: asyncio.Queue[None] = asyncio.Queue()
    session_timeout = aiohttp.ClientTimeout(total=per_stream)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=session_timeout) as session:
        tasks = [asyncio.create_task(listen(session, url, one, connected)) for one in listeners]
        waiting = asyncio.gather(*(connected.get() for _ in listeners))
        either: set[asyncio.Future[Any]] = {waiting, *tasks}
        done, _ = await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        if waiting in done:
            print(json.dumps({"ready": True}), flush=True)
        results = await asyncio.gather(*tasks, return_exceptions=True)
        waiting.cancel()
    errors = [f"{type(r).__name__}: {r}" for r in results if isinstance(r, BaseException)]
    print(
        json.dumps(
            {
                "delays_ms": [d for one in listeners for d in one.delays_ms],
                "lines": [len(one.seen) for one in listeners],
                "errors": errors,
            }
        ),
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.live_client", description=__doc__)
    parser.add_argument("url", help="a run's live stream: http://HOST:PORT/runs/ID/live")
    parser.add_argument("--clients", type=int, default=100, help="streams at once")
    parser.add_argument("--timeout", type=float, default=60.0, help="per stream, in seconds")
    args = parser.parse_args()
    asyncio.run(run(args.url, args.clients, args.timeout))


if __name__ == "__main__":
    main()
