"""The ``http`` action: one HTTP request through the engine's shared aiohttp session.

Inputs (``with:``)::

    method: POST                     # default GET
    url: https://api.example.com/deploys
    headers: {Authorization: "Bearer {{ secrets.deploy_token }}"}
    json: {service: "{{ params.service }}"}   # or body: "raw text" (not both)
    expect: [200, 201]               # default: any 2xx
    timeout: 10s                     # the whole request (any duration); default: none

Output: ``{"status": int, "headers": {name: value}, "json": parsed body or None,
"text": str}``. The body is parsed as JSON when the response says it is JSON, or when it
looks like a JSON object or array. ``text`` holds the last ``TAIL_CAP`` bytes of the body
with a marker line when cut (the full body, up to ``FULL_CAP``, is attached to the
attempt as ``body``). Repeated response headers are joined with ``", "``.

A status outside ``expect`` fails the step (the output is kept, so the body can be read
in the step's details); so do connection errors and timeouts, with a message saying which.
"""

from __future__ import annotations

import codecs
import json
import os
import socket
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from engine.actions import ActionContext, shell
from engine.errors import ActionError
from engine.playbooks import durations

if TYPE_CHECKING:
    import aiohttp

FULL_CAP = shell.FULL_CAP
TAIL_CAP = shell.TAIL_CAP
_CHUNK = 64 * 1024


class HttpInputs(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    method: str = "GET"
    url: str
    headers: dict[str, str] = {}
    json_: Any = Field(default=None, alias="json")
    body: str | None = None
    expect: list[int] | None = None
    timeout: durations.Timeout | None = None

    @field_validator("method")
    @classmethod
    def _upper(cls, value: str) -> str:
        method = value.strip().upper()
        if not method.isalpha():
            raise ValueError(f"not an HTTP method: {value!r}")
        return method

    @model_validator(mode="after")
    def _one_body(self) -> HttpInputs:
        if self.json_ is not None and self.body is not None:
            raise ValueError("give either 'json' or 'body', not both")
        return self


class HttpAction:
    name: ClassVar[str] = "http"
    Inputs: ClassVar[type[BaseModel]] = HttpInputs

    async def run(self, ctx: ActionContext, inputs: HttpInputs) -> dict[str, Any]:
        import aiohttp  # imported on first use: the CLI starts faster without it

        method, url = inputs.method, inputs.url
        seconds = inputs.timeout.total_seconds() if inputs.timeout else None
        timeout = aiohttp.ClientTimeout(total=seconds) if seconds else None
        kwargs: dict[str, Any] = {"headers": inputs.headers}
        if timeout is not None:
            kwargs["timeout"] = timeout
        if inputs.json_ is not None:
            kwargs["json"] = inputs.json_
        elif inputs.body is not None:
            kwargs["data"] = inputs.body.encode("utf-8")
        try:
            async with ctx.http().request(method, url, **kwargs) as resp:
                buf = shell.OutputBuffer(encoding=_encoding(resp.charset))
                complete = await _read_body(resp, buf)
                status = resp.status
                headers = {k: ", ".join(resp.headers.getall(k)) for k in resp.headers}
                is_json = resp.content_type == "application/json" or resp.content_type.endswith(
                    "+json"
                )
        except TimeoutError:
            after = f" after {durations.format_duration(seconds)}" if seconds else ""
            raise ActionError(f"{method} {url} timed out{after}") from None
        except aiohttp.InvalidURL:
            raise ActionError(f"invalid URL for {method}: {url!r}") from None
        except aiohttp.ClientSSLError as exc:
            raise ActionError(f"TLS error talking to {url} for {method}: {exc}") from None
        except aiohttp.ClientConnectorError as exc:
            reason = _reason(exc.os_error)
            raise ActionError(f"cannot connect to {url} for {method}: {reason}") from None
        except aiohttp.ClientError as exc:
            raise ActionError(f"{method} {url} failed: {type(exc).__name__}: {exc}") from None

        if buf.cut:
            ctx.attach("body", buf.full_text())
        output: dict[str, Any] = {
            "status": status,
            "headers": headers,
            "json": _parse_json(buf.full_text(), is_json) if complete else None,
            "text": buf.tail_text(),
        }
        if not _expected(status, inputs.expect):
            wanted = (
                "2xx" if inputs.expect is None else "one of " + ", ".join(map(str, inputs.expect))
            )
            raise ActionError(
                f"HTTP {status} from {method} {url}, expected {wanted}", output=output
            )
        return output


async def _read_body(resp: aiohttp.ClientResponse, buf: shell.OutputBuffer) -> bool:
    """Read the body into ``buf`` up to FULL_CAP; False when the rest was left unread."""
    while chunk := await resp.content.read(_CHUNK):
        buf.feed(chunk)
        if buf.total > FULL_CAP:
            return False  # do not read an endless stream; the buffer notes what it dropped
    return True


def _reason(err: OSError) -> str:
    if isinstance(err, socket.gaierror) or not err.errno:  # DNS: strerror says it best
        return err.strerror or str(err)
    return os.strerror(err.errno)  # asyncio's strerror is "Connect call failed (...)"


def _encoding(charset: str | None) -> str:
    """The response's declared charset when Python knows it, else UTF-8."""
    if charset:
        try:
            name = codecs.lookup(charset).name
        except LookupError:
            return "utf-8"
        return "utf-8" if name == "ascii" else name
    return "utf-8"


def _parse_json(text: str, declared: bool) -> Any:
    if not declared and not text.lstrip().startswith(("{", "[")):
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def _expected(status: int, expect: list[int] | None) -> bool:
    return 200 <= status < 300 if expect is None else status in expect
