"""The HTTP edge through Baton's real server (the Slack front end on the fake Slack), on
SQLite and PostgreSQL: compressed bodies and bombs, auth before the body, values no
database stores inside a batch of alerts, the cap on alerts per request, requests that
must never be a 500, and bodies that stall or are cut off."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import logging
import zlib
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import sqlalchemy as sa

from storage import tables as t
from tests.fakes import slack as fake
from tests.integration.slack_support import SECRET, SlackBaton, served, settings_for
from tests.integration.test_alerts_http import AUTH, ERRORS, TOKEN, one_alert, write_playbooks

LIMIT = 4096  # BATON_ALERT_MAX_BODY in these tests


@pytest.fixture
async def sb(tmp_path: Path, db_url: str) -> AsyncIterator[SlackBaton]:
    write_playbooks(tmp_path / "playbooks", {"api-errors": ERRORS})
    async with fake.FakeSlack() as slack:
        settings = settings_for(
            tmp_path,
            db_url,
            slack,
            alert_token=TOKEN,
            pagerduty_secret="pd-secret",
            alert_max_body=LIMIT,
            read_timeout=0.5,
        )
        async with served(settings, slack) as s:
            yield s


def gzipped(data: bytes) -> bytes:
    return zlib.compress(data, wbits=16 + zlib.MAX_WBITS)


def bomb_pieces(megabytes: int) -> list[bytes]:
    """A gzip of ``megabytes`` MiB of spaces, in the pieces a compressor makes."""
    pack = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = b" " * (1 << 20)
    pieces = [pack.compress(block) for _ in range(megabytes)]
    return [p for p in [*pieces, pack.flush()] if p]


async def post(
    sb: SlackBaton, path: str, data: Any, headers: dict[str, str]
) -> tuple[int, dict[str, Any]]:
    async with sb.session.post(f"{sb.url}{path}", data=data, headers=headers) as resp:
        text = await resp.text()
        return resp.status, json.loads(text) if text.startswith("{") else {"text": text}


async def held_back(
    sb: SlackBaton, path: str, pieces: list[bytes], sent_first: int, headers: dict[str, str]
) -> tuple[int, dict[str, Any], asyncio.Event, asyncio.Task[None]]:
    """POST ``pieces`` but hold all after the first ``sent_first`` until the answer is in:
    the answer, the event that lets the rest go, and the sending task to await after."""
    rest = asyncio.Event()
    answer: asyncio.Future[tuple[int, dict[str, Any]]] = asyncio.Future()

    async def body() -> AsyncIterator[bytes]:
        for piece in pieces[:sent_first]:
            yield piece
        await rest.wait()
        for piece in pieces[sent_first:]:
            yield piece

    async def send() -> None:
        async with sb.session.post(f"{sb.url}{path}", data=body(), headers=headers) as resp:
            answer.set_result((resp.status, await resp.json()))

    task = asyncio.create_task(send())
    async with asyncio.timeout(10):
        status, answered = await answer
    return status, answered, rest, task


async def stored(sb: SlackBaton) -> list[Any]:
    return await sb.baton.store.all(sa.select(t.alerts).order_by(t.alerts.c.id))


GZIP = {"Content-Encoding": "gzip", "Content-Type": "application/json"}

# -- item 3: compressed bodies --------------------------------------------------------


@pytest.mark.parametrize("path", ["/alerts/alertmanager", "/alerts/generic", "/alerts/pagerduty"])
async def test_a_bomb_without_a_token_is_refused_before_its_body_is_read(
    sb: SlackBaton, path: str
) -> None:
    status, answer, rest, sending = await held_back(sb, path, bomb_pieces(64), 1, GZIP)
    rest.set()
    with contextlib.suppress(aiohttp.ClientError):
        await sending
    assert status == 401, answer
    assert "bearer token" in answer["error"] or "X-PagerDuty-Signature" in answer["error"]
    assert await stored(sb) == []


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/alerts/alertmanager", AUTH),
        ("/alerts/grafana", AUTH),
        ("/alerts/pagerduty", AUTH),
        ("/api/runs", {"Authorization": "Bearer api-token"}),
        ("/slack/events", {}),
    ],
    ids=["alertmanager", "grafana", "pagerduty", "api", "slack-unsigned"],
)
async def test_compressed_bodies_are_refused_where_no_sender_compresses(
    sb: SlackBaton, path: str, headers: dict[str, str]
) -> None:
    body = gzipped(json.dumps(one_alert()).encode())
    status, answer = await post(sb, path, body, {**GZIP, **headers})
    assert status == 415, answer
    assert "Content-Encoding 'gzip' is not accepted" in answer["error"]
    assert "uncompressed" in answer["error"]
    assert await stored(sb) == []


async def test_a_signed_compressed_slack_request_is_refused(sb: SlackBaton) -> None:
    body, content_type = fake.encode_command(fake.slash_command("help"))
    raw = gzipped(body.encode())
    headers = {**fake.sign(raw, SECRET, content_type=content_type), "Content-Encoding": "gzip"}
    status, answer = await post(sb, "/slack/events", raw, headers)
    assert status == 415 and "uncompressed" in answer["error"]


async def test_generic_takes_gzip_and_deflate_and_stops_inflating_at_the_limit(
    sb: SlackBaton,
) -> None:
    one = json.dumps({"status": "firing", "labels": {"alertname": "Zipped"}}).encode()
    status, answer = await post(sb, "/alerts/generic", gzipped(one), {**GZIP, **AUTH})
    assert status == 202 and answer["accepted"] == 1, answer
    deflate = {**AUTH, "Content-Encoding": "deflate", "Content-Type": "application/json"}
    status, answer = await post(sb, "/alerts/generic", zlib.compress(one), deflate)
    assert status == 202 and answer["accepted"] == 1, answer

    # 64 MiB of spaces (about 64 KB sent); the first 4 pieces are far past the limit
    # once inflated, and the sender holds the rest back until the answer is in
    status, answer, rest, sending = await held_back(
        sb, "/alerts/generic", bomb_pieces(64), 4, {**GZIP, **AUTH}
    )
    async with sb.session.get(f"{sb.url}/healthz") as resp:  # while the bomb is held open
        assert resp.status == 200
    rest.set()
    with contextlib.suppress(aiohttp.ClientError):
        await sending
    assert status == 413, answer
    assert f"body over {LIMIT} bytes (BATON_ALERT_MAX_BODY), once inflated" == answer["error"]

    status, answer = await post(sb, "/alerts/generic", gzipped(one)[:-12], {**GZIP, **AUTH})
    assert status == 400 and "not valid gzip" in answer["error"]
    assert len(await stored(sb)) == 2


# -- item 4: one bad alert does not lose its batch -----------------------------------------


async def test_values_no_database_stores_reject_their_alert_and_the_batch_goes_on(
    sb: SlackBaton,
) -> None:
    body = one_alert(instance="good-1")
    entry = body["alerts"][0]
    nul = copy.deepcopy(entry)
    nul["labels"]["instance"] = "bad\x00host"
    surrogate = copy.deepcopy(entry)
    surrogate["annotations"]["summary"] = "half \ud800 a pair"
    nan = copy.deepcopy(entry)
    nan["labels"]["instance"] = "nan-host"
    nan["annotations"]["value"] = "__NAN__"
    body["alerts"] = [entry, nul, surrogate, nan]
    # JSON's NaN as Python's json writes it; json.dumps escapes the NUL and the surrogate
    raw = json.dumps(body).replace('"__NAN__"', "NaN").encode()

    status, answer = await post(sb, "/alerts/alertmanager", raw, AUTH)

    assert status == 202, answer
    assert (answer["accepted"], answer["rejected"]) == (1, 3)
    reasons = answer["reasons"]
    assert "alerts[1]: labels.instance: it holds a NUL character" in reasons[0]
    assert "alerts[2]: annotations.summary: it holds a lone surrogate" in reasons[1]
    assert "alerts[3]: annotations.value: nan is not a finite number" in reasons[2]
    rows = await stored(sb)
    assert [r.outcome for r in rows].count("rejected") == 3 and len(rows) == 4
    kept = {r.reason: r.raw for r in rows if r.outcome == "rejected"}
    assert kept[reasons[0]]["labels"]["instance"] == "bad\ufffdhost"  # repaired, not lost
    assert kept[reasons[2]]["annotations"]["value"] == "NaN"
    (good,) = [r for r in rows if r.outcome != "rejected"]
    assert good.labels["instance"] == "good-1"


async def test_a_pagerduty_event_with_a_nul_is_rejected_not_a_500(sb: SlackBaton) -> None:
    from tests.integration.test_alerts_http import payload

    event = payload("pagerduty_incident_triggered")
    event["event"]["data"]["title"] = "disk \x00 full"
    status, answer = await post(sb, "/alerts/pagerduty", json.dumps(event).encode(), AUTH)
    assert status == 202 and answer["rejected"] == 1, answer
    assert "NUL" in answer["reasons"][0]
    (row,) = await stored(sb)
    assert row.outcome == "rejected" and "\x00" not in json.dumps(row.raw)


# -- item 8: a cap on alerts per request -------------------------------------------------


async def test_more_alerts_than_the_cap_get_413_naming_it(sb: SlackBaton) -> None:
    assert sb.baton.settings.alerts_max_per_request == 1000  # the default
    many = {"version": "4", "status": "firing", "alerts": [{}] * 1001}
    status, answer = await post(sb, "/alerts/alertmanager", json.dumps(many).encode(), AUTH)
    assert status == 413, answer
    assert "1001 alerts" in answer["error"] and "cap of 1000" in answer["error"]
    assert "BATON_ALERTS_MAX_PER_REQUEST" in answer["error"]
    status, answer = await post(sb, "/alerts/generic", json.dumps([{}] * 1001).encode(), AUTH)
    assert status == 413 and "cap of 1000" in answer["error"]
    assert await stored(sb) == []
    many["alerts"] = [{}] * 1000
    status, answer = await post(sb, "/alerts/alertmanager", json.dumps(many).encode(), AUTH)
    assert status == 202 and answer["rejected"] == 1000


# -- item 9: no 500 and no traceback without a token -------------------------------------


@contextmanager
def no_errors_logged(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    with caplog.at_level(logging.WARNING):
        yield
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]


def signed(body: bytes, content_type: str, **extra: str) -> dict[str, str]:
    return {**fake.sign(body, SECRET, content_type=content_type), **extra}


FORM = "application/x-www-form-urlencoded"


@pytest.mark.parametrize(
    ("body", "headers", "expected"),
    [
        (b"{not json", {"Content-Type": "application/json"}, 401),
        (b"payload=%7Bx", {"Content-Type": FORM}, 401),
        (
            b"payload=%7Bx",
            {
                "Content-Type": FORM,
                "X-Slack-Request-Timestamp": "abc",
                "X-Slack-Signature": "v0=00",
            },
            400,
        ),
        (b"payload=%7Bx", (FORM,), 400),
        (b"{not json", ("application/json",), 400),
        (b"\xff\xfe", (FORM,), 400),
        (b"[1, 2]", ("application/json",), 400),
        (b"[" * 100_000 + b"]" * 100_000, ("application/json",), 400),
        (b'{"authorizations": {"a": 1}}', ("application/json",), 400),
    ],
    ids=[
        "unsigned-json",
        "unsigned-payload",
        "timestamp-abc",
        "signed-payload",
        "signed-json",
        "signed-not-utf8",
        "signed-array",
        "signed-too-deep",
        "signed-odd-shape",
    ],
)
async def test_slack_requests_are_verified_before_they_are_parsed(
    sb: SlackBaton,
    caplog: pytest.LogCaptureFixture,
    body: bytes,
    headers: dict[str, str] | tuple[str],
    expected: int,
) -> None:
    if isinstance(headers, tuple):  # signed now: a signature made at collection goes stale
        headers = signed(body, headers[0])
    with no_errors_logged(caplog):
        status, answer = await post(sb, "/slack/events", body, headers)
    assert status == expected, answer
    assert answer["error"]


@pytest.mark.parametrize(
    "path", ["/api/runs?playbook=%00", "/api/runs/%00", "/api/runs?status=%ED%A0%80"]
)
async def test_reads_with_unstorable_words_are_400(sb: SlackBaton, path: str) -> None:
    async with sb.session.get(f"{sb.url}{path}") as resp:
        assert resp.status == 400, await resp.text()
        assert "error" in await resp.json()


async def test_a_query_field_given_twice_is_400_naming_it(sb: SlackBaton) -> None:
    async with sb.session.get(f"{sb.url}/api/runs?status=failed&status=succeeded") as resp:
        assert resp.status == 400, await resp.text()
        assert (await resp.json())["error"].startswith("status: given 2 times; give it once")


API = {"Authorization": "Bearer api-token", "Content-Type": "application/json"}


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        (b'{"playbook": "api-errors", "requested_by": "x\\ud800"}', "requested_by: it holds"),
        (b'{"playbook": "api-errors", "params": {"instance": "\\ud800"}}', "params.instance"),
        (b'{"playbook": "api-errors", "params": {"instance": NaN}}', "not a finite number"),
        (b'{"playbook": "api-errors", "requested_by": {"a": 1}}', '"requested_by" must be'),
        (b'{"playbook": "api-errors", "dry_run": "false"}', '"dry_run" must be true or false'),
        (b'{"playbook": "api\\u0000errors"}', "playbook: it holds a NUL"),
    ],
    ids=["surrogate-by", "surrogate-param", "nan-param", "by-object", "dry-run-text", "nul"],
)
async def test_run_requests_with_unstorable_or_mistyped_fields_are_400(
    sb: SlackBaton, caplog: pytest.LogCaptureFixture, raw: bytes, needle: str
) -> None:
    with no_errors_logged(caplog):
        status, answer = await post(sb, "/api/runs", raw, API)
    assert status == 400, answer
    assert needle in answer["error"]
    assert await sb.baton.store.all(sa.select(t.runs)) == []


class _Seen(logging.Handler):
    """Sets ``event`` once a record of ``level`` or above is emitted."""

    def __init__(self, level: int) -> None:
        super().__init__(level)
        self.event = asyncio.Event()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.event.set()


@contextmanager
def watching(level: int) -> Iterator[_Seen]:
    seen = _Seen(level)
    root = logging.getLogger()
    root.addHandler(seen)
    try:
        yield seen
    finally:
        root.removeHandler(seen)


async def half_sent(sb: SlackBaton, path: str, headers: dict[str, str]) -> Any:
    """A raw connection that sent the headers and 10 of 1,000 promised bytes."""
    host, port = sb.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}", "Content-Length: 1000"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + b'{"alerts":')
    await writer.drain()
    return reader, writer


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/alerts/alertmanager", AUTH),
        ("/api/runs", API),
        ("/slack/events", signed(b"", FORM)),
    ],
    ids=["alerts", "api", "slack"],
)
async def test_a_body_that_stalls_is_cut_by_the_read_timeout(
    sb: SlackBaton, caplog: pytest.LogCaptureFixture, path: str, headers: dict[str, str]
) -> None:
    with no_errors_logged(caplog), watching(logging.WARNING) as seen:
        reader, writer = await half_sent(sb, path, headers)
        async with asyncio.timeout(10):  # BATON_READ_TIMEOUT is 0.5 s here
            answer = await reader.read()  # the answer, then the server closes at once
        writer.close()
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"did not arrive within 0.5 s" in answer
    (line,) = [r for r in seen.records if r.name == "baton.http"]
    assert line.levelno == logging.WARNING and "BATON_READ_TIMEOUT" in line.getMessage()


async def test_a_sender_gone_half_way_logs_one_warning_and_no_traceback(
    sb: SlackBaton, caplog: pytest.LogCaptureFixture
) -> None:
    with no_errors_logged(caplog), watching(logging.WARNING) as seen:
        _, writer = await half_sent(sb, "/alerts/alertmanager", AUTH)
        writer.close()
        await writer.wait_closed()
        async with asyncio.timeout(10):
            await seen.event.wait()
        await sb.settle()
    (line,) = [r for r in seen.records if r.name == "baton.http"]
    assert line.levelno == logging.WARNING and "went away" in line.getMessage()
    assert line.exc_info is None
    assert await stored(sb) == []
