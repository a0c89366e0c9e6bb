from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from pydantic import ValidationError

from engine.actions import ActionContext, http
from engine.errors import ActionError
from tests.fakes.actx import make_ctx

BIG = "".join(f"{i:07d}\n" for i in range(16384))  # 128 KiB


class Gate:
    """Lets a test know that /hang was reached, and releases it at teardown."""

    def __init__(self) -> None:
        self.reached = asyncio.Event()
        self.release = asyncio.Event()


def make_app(gate: Gate) -> web.Application:
    async def get_json(request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "query": dict(request.query)})

    async def echo(request: web.Request) -> web.Response:
        raw = await request.text()
        return web.json_response(
            {
                "method": request.method,
                "content_type": request.content_type,
                "body": raw,
                "x_token": request.headers.get("X-Token"),
            },
            status=201,
        )

    async def status(request: web.Request) -> web.Response:
        return web.Response(status=int(request.match_info["code"]), text="service unhappy")

    async def text(request: web.Request) -> web.Response:
        resp = web.Response(text="hello", content_type="text/plain")
        resp.headers.add("X-Multi", "a")
        resp.headers.add("X-Multi", "b")
        return resp

    async def looks_json(request: web.Request) -> web.Response:
        return web.Response(text='[1, 2, {"three": 3}]', content_type="text/plain")

    async def latin1(request: web.Request) -> web.Response:
        return web.Response(
            body="café".encode("latin-1"), content_type="text/plain", charset="latin-1"
        )

    async def big(request: web.Request) -> web.Response:
        return web.Response(text=BIG, content_type="text/plain")

    async def hang(request: web.Request) -> web.Response:
        gate.reached.set()
        await gate.release.wait()
        return web.Response(text="too late")

    app = web.Application()
    app.router.add_get("/json", get_json)
    app.router.add_route("*", "/echo", echo)
    app.router.add_get("/status/{code}", status)
    app.router.add_get("/text", text)
    app.router.add_get("/looks-json", looks_json)
    app.router.add_get("/latin1", latin1)
    app.router.add_get("/big", big)
    app.router.add_get("/hang", hang)
    return app


@pytest.fixture
def gate() -> Gate:
    return Gate()


@pytest.fixture
async def server(gate: Gate) -> AsyncIterator[TestServer]:
    srv = TestServer(make_app(gate), host="127.0.0.1", port=0)
    await srv.start_server()
    try:
        yield srv
    finally:
        gate.release.set()
        await srv.close()


@pytest.fixture
async def ctx() -> AsyncIterator[ActionContext]:
    async with aiohttp.ClientSession() as session:
        yield make_ctx(http=lambda: session)


async def call(ctx: ActionContext, **inputs: Any) -> dict[str, Any]:
    return await http.HttpAction().run(ctx, http.HttpInputs.model_validate(inputs))


async def test_get_json(server: TestServer, ctx: ActionContext) -> None:
    out = await call(ctx, url=str(server.make_url("/json?env=prod")))
    assert out["status"] == 200
    assert out["json"] == {"ok": True, "query": {"env": "prod"}}
    assert out["text"] == '{"ok": true, "query": {"env": "prod"}}'
    assert out["headers"]["Content-Type"] == "application/json; charset=utf-8"


@pytest.mark.parametrize(
    ("inputs", "content_type", "body"),
    [
        pytest.param(
            {"json": {"service": "api", "replicas": 3}},
            "application/json",
            '{"service": "api", "replicas": 3}',
            id="json",
        ),
        pytest.param({"body": "plain words"}, "application/octet-stream", "plain words", id="body"),
    ],
)
async def test_post_sends_body_and_headers(
    server: TestServer, ctx: ActionContext, inputs: dict[str, Any], content_type: str, body: str
) -> None:
    out = await call(
        ctx,
        method="post",
        url=str(server.make_url("/echo")),
        headers={"X-Token": "t0k"},
        **inputs,
    )
    assert out["status"] == 201
    assert out["json"] == {
        "method": "POST",
        "content_type": content_type,
        "body": body,
        "x_token": "t0k",
    }


async def test_plain_text_and_repeated_headers(server: TestServer, ctx: ActionContext) -> None:
    out = await call(ctx, url=str(server.make_url("/text")))
    assert out["json"] is None
    assert out["text"] == "hello"
    assert out["headers"]["X-Multi"] == "a, b"


async def test_body_that_parses_as_json_is_parsed(server: TestServer, ctx: ActionContext) -> None:
    out = await call(ctx, url=str(server.make_url("/looks-json")))
    assert out["json"] == [1, 2, {"three": 3}]


async def test_declared_charset_is_used(server: TestServer, ctx: ActionContext) -> None:
    out = await call(ctx, url=str(server.make_url("/latin1")))
    assert out["text"] == "café"


async def test_big_body_keeps_marked_tail_and_attaches_it(
    server: TestServer, ctx: ActionContext
) -> None:
    out = await call(ctx, url=str(server.make_url("/big")))
    omitted = len(BIG) - http.TAIL_CAP
    marker = f"[... {omitted} earlier bytes omitted; full text kept with the attempt]\n"
    assert out["text"] == marker + BIG[-http.TAIL_CAP :]
    assert ctx.attachments == {"body": BIG}


@pytest.mark.parametrize(
    ("path", "expect", "message"),
    [
        pytest.param(
            "/status/503", None, "HTTP 503 from GET {url}, expected 2xx", id="default-2xx"
        ),
        pytest.param(
            "/json", [201, 204], "HTTP 200 from GET {url}, expected one of 201, 204", id="listed"
        ),
    ],
)
async def test_unexpected_status_fails_and_keeps_output(
    server: TestServer, ctx: ActionContext, path: str, expect: list[int] | None, message: str
) -> None:
    url = str(server.make_url(path))
    with pytest.raises(ActionError) as info:
        await call(ctx, url=url, expect=expect)
    assert str(info.value) == message.format(url=url)
    assert info.value.output["status"] == int(message.split()[1])
    assert info.value.output["text"]


async def test_expected_non_2xx_status_succeeds(server: TestServer, ctx: ActionContext) -> None:
    out = await call(ctx, url=str(server.make_url("/status/404")), expect=[404])
    assert out["status"] == 404
    assert out["text"] == "service unhappy"


async def test_connection_refused(ctx: ActionContext) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/"
    with pytest.raises(ActionError, match=rf"^cannot connect to {url} for GET: .*refused"):
        await call(ctx, url=url)


@pytest.mark.parametrize("limit", [0.2, "200ms", "0.2s"], ids=["seconds", "ms", "text-seconds"])
async def test_timeout(server: TestServer, ctx: ActionContext, limit: float | str) -> None:
    """``timeout`` takes every duration form, like every other duration (not only numbers)."""
    url = str(server.make_url("/hang"))
    with pytest.raises(ActionError, match=rf"^GET {url} timed out after 0.2s$"):
        await call(ctx, url=url, timeout=limit)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("5s", 5), ("1m30s", 90), ("1h 30m", 5400), ("10 minutes", 600), (10, 10), ("2.5", 2.5)],
)
def test_timeout_takes_every_duration_form(text: str | int, seconds: float) -> None:
    inputs = http.HttpInputs.model_validate({"url": "http://x", "timeout": text})
    assert inputs.timeout is not None and inputs.timeout.total_seconds() == seconds


async def test_invalid_url(ctx: ActionContext) -> None:
    with pytest.raises(ActionError, match=r"^invalid URL for GET: 'not a url'$"):
        await call(ctx, url="not a url")


async def test_cancel_while_waiting_for_the_server(
    server: TestServer, ctx: ActionContext, gate: Gate
) -> None:
    task = asyncio.ensure_future(call(ctx, url=str(server.make_url("/hang"))))
    await asyncio.wait_for(gate.reached.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not ctx.attachments


@pytest.mark.parametrize(
    ("inputs", "fragment"),
    [
        pytest.param({"url": "http://x", "json": {}, "body": "b"}, "not both", id="json-and-body"),
        pytest.param({}, "url", id="no-url"),
        pytest.param({"url": "http://x", "data": "b"}, "Extra inputs", id="unknown-key"),
        pytest.param({"url": "http://x", "method": "GE T"}, "not an HTTP method", id="bad-method"),
        pytest.param({"url": "http://x", "timeout": 0}, "more than 0", id="zero-timeout"),
        pytest.param({"url": "http://x", "timeout": "soon"}, "bad duration", id="bad-timeout"),
    ],
)
def test_inputs_are_validated(inputs: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment):
        http.HttpInputs.model_validate(inputs)


def test_json_is_the_public_input_name() -> None:
    inputs = http.HttpInputs.model_validate({"url": "http://x", "json": [1]})
    assert inputs.json_ == [1]
    assert inputs.method == "GET"
