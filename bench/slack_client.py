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

import asyncio
import time
from typing import Any

import aiohttp

from bench import client
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


async def batch(
    session: aiohttp.ClientSession, url: str, secret: str, template: str, ask: dict[str, Any]
) -> dict[str, Any]:
    first, count = int(ask["first"]), int(ask["count"])
    commands = [(n, *signed(n, secret, template)) for n in range(first, first + count)]
    start = time.monotonic()
    requests = await asyncio.gather(*(client.timed_post(session, url, *c) for c in commands))
    return {"start": start, "end": time.monotonic(), "requests": requests}


def main() -> None:
    parser = client.parser(
        "python -m bench.slack_client", __doc__, "Baton's POST /slack/events URL"
    )
    parser.add_argument(
        "--response-url", required=True, help="each command's response_url; {n} is its number"
    )
    args = parser.parse_args()
    secret = client.secret_from(parser, SECRET_ENV, "signing secret")
    url, template = args.url, args.response_url
    asyncio.run(
        client.serve_lines(
            args.timeout, lambda session, ask: batch(session, url, secret, template, ask)
        )
    )


if __name__ == "__main__":
    main()
