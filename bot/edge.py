"""The HTTP edge: how Baton reads a request's body, on every route that takes one.

The server never inflates a body on its own (``auto_decompress`` is off: aiohttp would
otherwise inflate whatever arrives, even after the answer, while it drains the rest).
``read`` does it, for the routes that take a compressed body, and stops at the limit:

- ``Content-Encoding`` is refused with 415 where no real sender uses one. Alertmanager,
  Grafana, PagerDuty and Slack post plain JSON or forms, and so do scripts calling the
  API; only ``/alerts/generic`` takes ``gzip`` or ``deflate`` (log shippers and
  home-made senders may compress).
- The limit counts the bytes after inflating, while they are inflated: a 1 MB gzip of
  1 GB gets its 413 after about ``limit`` bytes of work, and the rest is never inflated.
- A body must arrive within ``BATON_READ_TIMEOUT`` seconds: a sender that stops half-way
  gets 408 and its connection closed; one that goes away gets one WARNING line in the
  log, never a traceback.

Callers check what the headers alone prove (a bearer token, an encoding) before calling
``read``, so a request without a token costs no body at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import zlib
from collections.abc import Collection
from dataclasses import dataclass

from aiohttp import web

log = logging.getLogger("baton.http")

COMPRESSED = ("gzip", "deflate")  # what the routes that take compression accept
CHUNK = 64 * 1024  # inflated bytes produced per step: the loop never holds more than this


def refusal(status: int, message: str) -> web.Response:
    """An error answer (``{"error": message}``) after which the connection closes: the
    rest of the body, if any, is never read by a handler."""
    response = web.json_response({"error": message}, status=status)
    response.force_close()
    return response


@dataclass(frozen=True)
class Refused:
    """A body ``read`` would not take: the status and message, and the API's answer made
    of them (``{"error": message}``, the connection closed after it). The dashboard makes
    its own page of ``status`` and ``message``."""

    status: int
    message: str
    answer: web.Response


def _refused(status: int, message: str) -> Refused:
    return Refused(status, message, refusal(status, message))


class TooLarge(Exception):
    """The inflated body passed the limit."""


class Inflater:
    """``gzip``/``deflate`` inflated piece by piece, never past ``limit`` bytes: ``feed``
    raises ``TooLarge`` once the output would pass it, having made at most ``CHUNK``
    bytes more. Concatenated gzip members are read as one body (as ``gzip -d`` does)."""

    def __init__(self, encoding: str, limit: int) -> None:
        self.encoding = encoding
        self.limit = limit
        self.size = 0
        self._out: list[bytes] = []
        self._inflate: zlib._Decompress | None = None

    def _new(self, first: bytes) -> zlib._Decompress:
        if self.encoding == "gzip":
            return zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        # deflate is zlib-wrapped by the RFC, raw in many senders: look at the header
        raw = not first or first[0] & 0x0F != 8
        return zlib.decompressobj(wbits=-zlib.MAX_WBITS if raw else zlib.MAX_WBITS)

    def feed(self, data: bytes) -> None:
        """Inflate ``data``; ``zlib.error`` when it is not valid, ``TooLarge`` past the limit."""
        while data:
            if self._inflate is None:
                self._inflate = self._new(data)
            room = min(CHUNK, self.limit + 1 - self.size)
            out = self._inflate.decompress(data, room)
            self.size += len(out)
            self._out.append(out)
            if self.size > self.limit:
                raise TooLarge
            if self._inflate.eof:  # a member ended; what follows starts another
                data = self._inflate.unused_data
                self._inflate = None if data else self._inflate
            else:
                data = self._inflate.unconsumed_tail

    def result(self) -> bytes:
        """The whole inflated body; ``zlib.error`` when the compressed data ended early."""
        if self._inflate is not None and not self._inflate.eof:
            raise zlib.error("the compressed data ends early")
        return b"".join(self._out)


def encoding_of(request: web.Request) -> str | None:
    """The body's ``Content-Encoding``, lower-case; None for none (or ``identity``)."""
    value = request.headers.get("Content-Encoding", "").strip().lower()
    return None if value in ("", "identity") else ("gzip" if value == "x-gzip" else value)


def encoding_refusal(request: web.Request, accepted: Collection[str] = ()) -> web.Response | None:
    """415 when the body is compressed in a way this route does not take."""
    encoding = encoding_of(request)
    if encoding is None or encoding in accepted:
        return None
    return refusal(415, _encoding_message(encoding, accepted))


def _encoding_message(encoding: str, accepted: Collection[str]) -> str:
    takes = f"it takes {' or '.join(accepted)} or none" if accepted else "send it uncompressed"
    return f"Content-Encoding {encoding!r} is not accepted on this route: {takes}"


async def read(
    request: web.Request,
    *,
    limit: int,
    seconds: float,
    limit_name: str,
    accepted: Collection[str] = (),
) -> bytes | Refused:
    """The body (inflated when ``accepted`` names its encoding), or the answer to give
    instead: 415 for an encoding not accepted, 413 past ``limit`` bytes (``limit_name``
    says which setting or rule sets it), 400 for a compressed body that does not
    inflate, 408 when it does not arrive within ``seconds``."""
    encoding = encoding_of(request)
    if encoding is not None and encoding not in accepted:
        return _refused(415, _encoding_message(encoding, accepted))
    too_large = f"body over {limit} bytes ({limit_name})"
    if encoding is None and (request.content_length or 0) > limit:
        return _refused(413, too_large)
    inflater = Inflater(encoding, limit) if encoding is not None else None
    chunks: list[bytes] = []
    raw = 0
    try:
        async with asyncio.timeout(seconds):
            while chunk := await request.content.read(CHUNK):
                raw += len(chunk)
                if inflater is not None:
                    inflater.feed(chunk)
                else:
                    chunks.append(chunk)
                if raw > limit:  # even compressed it is too large
                    return _refused(413, too_large)
        return inflater.result() if inflater is not None else b"".join(chunks)
    except TooLarge:
        return _refused(413, f"{too_large}, once inflated")
    except zlib.error as exc:
        return _refused(400, f"body is not valid {encoding}: {exc}")
    except TimeoutError:
        log.warning(
            "%s %s from %s: the body did not arrive within %gs (BATON_READ_TIMEOUT, %d bytes "
            "read): answered 408 and closed",
            request.method,
            request.rel_url.raw_path,  # as sent (%-encoded): one line whatever it holds
            request.remote,
            seconds,
            raw,
        )
        late = _refused(408, f"the body did not arrive within {seconds:g} s: send it whole")
        answer = late.answer
        # answered now and the connection closed: the server would otherwise linger,
        # waiting for the rest of a body that is not coming
        with contextlib.suppress(ConnectionError):  # gone meanwhile: nobody to tell
            await answer.prepare(request)
            await answer.write_eof()
        request.protocol.force_close()
        return late
    except ConnectionError as exc:  # the sender went away half-way: nobody to answer
        log.warning(
            "%s %s from %s: the sender went away after %d bytes of the body (%s)",
            request.method,
            request.rel_url.raw_path,  # as sent (%-encoded): one line whatever it holds
            request.remote,
            raw,
            exc or type(exc).__name__,
        )
        return _refused(400, "the body was cut off")
