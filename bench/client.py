"""What the client processes (bench/slack_client.py, bench/alerts_client.py) share: one
aiohttp session with no connection limit, ``{"ready": true}`` once it is open, then one
JSON request a line on stdin, each answered with one JSON line, until the end of stdin;
and the timed POST. The parent's side is ``bench.served.ClientProcess``.

Times are ``time.monotonic()``: CLOCK_MONOTONIC is one clock for the whole system on
Linux (mach_absolute_time on macOS), so the parent can set them beside its own.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

Batch = Callable[[aiohttp.ClientSession, dict[str, Any]], Awaitable[dict[str, Any]]]


async def timed_post(
    session: aiohttp.ClientSession, url: str, n: int, body: bytes, headers: dict[str, str]
) -> dict[str, Any]:
    """POST request ``n``: ``{"n", "status", "text", "error", "sent", "acked"}``, ``sent``
    taken just before the POST, ``acked`` once the answer's body is read (or it failed)."""
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


async def serve_lines(per_request: float, batch: Batch) -> None:
    """Answer each JSON line on stdin with ``batch(session, request)`` as one JSON line."""
    loop = asyncio.get_running_loop()
    connector = aiohttp.TCPConnector(limit=0)
    client_timeout = aiohttp.ClientTimeout(total=per_request)
    async with aiohttp.ClientSession(connector=connector, timeout=client_timeout) as session:
        print(json.dumps({"ready": True}), flush=True)
        while line := await loop.run_in_executor(None, sys.stdin.readline):
            if not line.strip():
                continue
            answer = await batch(session, json.loads(line))
            print(json.dumps(answer), flush=True)


def parser(prog: str, description: str | None, url_help: str) -> argparse.ArgumentParser:
    """The arguments every client takes: the URL and ``--timeout``."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("url", help=url_help)
    parser.add_argument("--timeout", type=float, default=30.0, help="per request, in seconds")
    return parser


def secret_from(parser: argparse.ArgumentParser, env: str, what: str) -> str:
    """The secret in ``env``; without it, a usage error."""
    secret = os.environ.get(env)
    if not secret:
        parser.error(f"set {env} to the {what}")
    return secret
