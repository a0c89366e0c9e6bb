"""The Slack side of ``bench/slack.py``: signs ``/baton run`` slash commands and POSTs
them to Baton's ``POST /slack/events``, in a process of its own, as Slack would.

``python -m bench.slack_client URL --response-url TEMPLATE [--timeout S]``, with the
signing secret in ``BATON_BENCH_SLACK_SECRET``. It opens one aiohttp session (no
connection limit), prints ``{"ready": true}`` and then reads one JSON request a line on
stdin: ``{"first": n, "count": k}`` sends commands ``n .. n+k-1`` all at once
(``asyncio.gather``; ``count`` 1 is one command) and answers with one JSON line::

    {"start": t0, "end": t1, "requests": [{"n", "sent", "acked", "status", "text", "error"}]}

Times are ``time.monotonic()``: CLOCK_MONOTONIC is one clock for the whole system on
Linux (mach_absolute_time on macOS), so the parent can set them beside the times its
fake Slack notes cards at. Each command is built and signed before ``t0``; ``sent`` is
taken just before its POST, ``acked`` once its response body is read. The client stops
at the end of stdin.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from typing import Any

import aiohttp

from tests.fakes import slack as fake

PLAYBOOK = "one"
SECRET_ENV = "BATON_BENCH_SLACK_SECRET"


def user_of(n: int) -> str:
    return f"U0BENCH{n:05d}"


def channel_of(n: int) -> str:
    return f"C0BENCH{n:05d}"


def channel_name_of(n: int) -> str:
    return f"bench-{n}"


def signed(n: int, secret: str, response_url: str) -> tuple[bytes, dict[str, str]]:
    """Command ``n``: a signed ``/baton run`` from a user and channel of its own."""
    fields = fake.slash_command(
        f"run {PLAYBOOK} who=user{n}",
        user=user_of(n),
        channel=channel_of(n),
        channel_name=channel_name_of(n),
        response_url=response_url.format(n=n),
    )
    body, content_type = fake.encode_command(fields)
    return body.encode(), fake.sign(body, secret, content_type=content_type)


async def post(
    session: aiohttp.ClientSession, url: str, n: int, body: bytes, headers: dict[str, str]
) -> dict[str, Any]:
    """POST one command; note when it left and when its answer was read."""
    result: dict[str, Any] = {"n": n, "status": 0, "text": "", "error": ""}
    result["sent"] = time.monotonic()
    try:
        async with session.post(url, data=body, headers=headers) as response:
            result["text"] = await response.text()
            result["acked"] = time.monotonic()
            result["status"] = response.status
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        result["acked"] = time.monotonic()
        result["error"] = f"{type(exc).__name__}: {exc}"
    return result


async def batch(
    session: aiohttp.ClientSession, url: str, secret: str, template: str, first: int, count: int
) -> dict[str, Any]:
    commands = [(n, *signed(n, secret, template)) for n in range(first, first + count)]
    start = time.monotonic()
    requests = await asyncio.gather(*(post(session, url, *c) for c in commands))
    return {"start": start, "end": time.monotonic(), "requests": requests}


async def serve_lines(url: str, secret: str, template: str, per_request: float) -> None:
    loop = asyncio.get_running_loop()
    connector = aiohttp.TCPConnector(limit=0)
    client_timeout = aiohttp.ClientTimeout(total=per_request)
    async with aiohttp.ClientSession(connector=connector, timeout=client_timeout) as session:
        print(json.dumps({"ready": True}), flush=True)
        while line := await loop.run_in_executor(None, sys.stdin.readline):
            if not line.strip():
                continue
            ask = json.loads(line)
            answer = await batch(session, url, secret, template, ask["first"], ask["count"])
            print(json.dumps(answer), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.slack_client", description=__doc__)
    parser.add_argument("url", help="Baton's POST /slack/events URL")
    parser.add_argument(
        "--response-url", required=True, help="each command's response_url; {n} is its number"
    )
    parser.add_argument("--timeout", type=float, default=30.0, help="per request, in seconds")
    args = parser.parse_args()
    secret = os.environ.get(SECRET_ENV)
    if not secret:
        parser.error(f"set {SECRET_ENV} to the signing secret")
    asyncio.run(serve_lines(args.url, secret, args.response_url, args.timeout))


if __name__ == "__main__":
    main()
