"""``GET /runs/{id}/live``: a run's logs and state as server-sent events, for htmx's SSE
extension on the run page.

Events: ``log`` (the logs' tail but the run's own last lines, as HTML: every section, an
attempt or a log line, in a span of its own; sent when the page must be drawn again: the
tail's cut, a section gone), ``append`` (out-of-band swaps of the sections that grew,
changed or came, wherever they are: parallel steps log in the middle of the body),
``footer`` (the run's own lines: ``run ID STATUS``, its error once it failed), ``state``
(the run's status, whenever a step or the run moves: the page then re-reads its panel)
and ``end`` once the run is over (the page closes the stream). A page shows ``log`` with
every ``append`` after it applied, then ``footer``: the run's tail.

Every client of one run shares one ``Feed``: it wakes on the engine's events for the run
(``engine.bus``), reads the run's logs once and renders the events once, whatever the
number of pages open on the run (100 browsers used to mean 100 reads of the logs per log
line). A run driven by another process publishes nothing here, so the feed also looks
every ``POLL`` seconds. Each client sends the newest events it has not sent yet, so a slow
client skips to the present instead of queueing the past, and writes a comment when
nothing moved for ``POLL`` seconds (which finds clients that went away)."""

from __future__ import annotations

import asyncio
import contextlib
import html
import logging
import re

from aiohttp import web
from markupsafe import Markup

from bot.dashboard.render import baton_of
from engine.bus import EventBus
from engine.errors import RunNotFound
from engine.runs.state import RunStatus
from engine.views import runlogs
from storage.store import Store

log = logging.getLogger(__name__)

POLL = 2.0
TAIL = 400  # lines of the logs a page shows; the whole text is at /api/runs/{id}/logs
FEEDS = web.AppKey("dashboard.feeds", dict)
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


Body = list[tuple[str, list[str]]]
"""A run's logs above their last section: (section key, lines shown) in order."""


def _flat(section: runlogs.Section) -> list[str]:
    """A section's lines as a page shows them: all of an attempt that ended, the header
    of one that runs; a line holding line breaks counts as the lines it shows."""
    shown = section.lines if section.done else section.lines[:1]
    return [part for line in shown for part in _LINE_BREAK.split(line)]


def body(logs: runlogs.Logs) -> Body:
    return [(s.key, _flat(s)) for s in logs.sections if s.key != "end"]


def footer(logs: runlogs.Logs) -> str:
    """The run's own lines at the end (``run ID STATUS``, its error once it failed), as
    HTML: they change with its status, where the body only grows."""
    end = [line for s in logs.sections if s.key == "end" for line in _flat(s)]
    return html.escape("\n".join(end), quote=False)


def _id(key: str) -> str:
    return "l-" + re.sub(r"[^A-Za-z0-9_-]", "-", key)


def _text(lines: list[str]) -> str:
    return "".join(html.escape(line, quote=False) + "\n" for line in lines)


def _span(key: str, lines: list[str], oob: str = "") -> str:
    """A section as the page holds it: a span of its own (``l-<key>``), which later
    events append to or replace."""
    return f'<span id="{_id(key)}"{oob}>{_text(lines)}</span>'


def view(sections: Body, lines: int = TAIL) -> tuple[str, dict[str, int]]:
    """The body a page shows, as HTML: its last ``lines`` lines (the first section kept
    may be cut too), under a line that says how many came before. Also returns how
    many lines of each section it shows."""
    total = sum(len(shown) for _, shown in sections)
    if total <= lines:
        return "".join(_span(k, shown) for k, shown in sections), {
            k: len(shown) for k, shown in sections
        }
    kept: Body = []
    room = lines
    for key, shown in reversed(sections):
        if room <= 0:
            break
        part = shown[len(shown) - room :] if len(shown) > room else shown
        kept.append((key, part))
        room -= len(part)
    kept.reverse()
    notice = f"... {total - lines} earlier lines: see the full logs"
    page = _span("cut", [notice]) + "".join(_span(k, part) for k, part in kept)
    return page, {k: len(part) for k, part in kept}


def page(logs: runlogs.Logs) -> tuple[Markup, Markup]:
    """The run page's logs when it is served: its body and its footer, as HTML."""
    return Markup(view(body(logs))[0]), Markup(footer(logs))


def event(name: str, data: str) -> bytes:
    """One server-sent event; a multi-line ``data`` becomes several ``data:`` lines. A
    carriage return ends a line too (an event stream ends lines at CR, LF or CRLF): left
    in, a progress bar's ``\r`` in a step's output would cut the event short, and text
    after it could pose as events of its own."""
    body = "".join(f"data: {line}\n" for line in _LINE_BREAK.split(data))
    return f"event: {name}\n{body}\n".encode()


class Feed:
    """One run's live events, read and rendered once for all of its clients: ``log`` the
    newest tail (cut at ``TAIL`` lines), ``appends`` the changes to it since (until the
    page would show twice ``TAIL``: then a new cut ``log``), ``state`` the newest status;
    ``end`` is set once the run is over. Clients wait on ``moved``, an event
    replaced at every change. (Sending only the new lines matters: with the whole tail at
    every line, 100 pages on a run of 400 lines meant 40,000 lines to send and parse per
    line.)"""

    def __init__(self, store: Store, bus: EventBus, run_id: str) -> None:
        self.store = store
        self.run_id = run_id
        self.log = b""
        self.appends: list[bytes] = []
        self.footer = b""
        self.state = b""
        self.end = b""
        self.moved = asyncio.Event()
        self.clients = 0
        self._known: dict[str, list[str]] | None = None  # the body's sections, uncut
        self._page: dict[str, int] = {}  # lines a page shows of each section it holds
        self._shown = 0  # lines of the body a page shows: a cut tail and the appends since
        self._footer = self._status = ""
        self._moves = bus.subscribe(lambda e: e.run_id == run_id)  # before the first read
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self.ready: asyncio.Task[None] = asyncio.create_task(self._first(), name=f"live-{run_id}")
        self.ready.add_done_callback(_retrieved)  # a run not found, with no client left

    async def _first(self) -> None:
        try:
            self._update(await runlogs.read(self.store, self.run_id))
        except BaseException:
            self.close()
            raise
        if not self.end and not self._closed:
            self._task = asyncio.create_task(self._follow(), name=f"live-{self.run_id}")

    async def _follow(self) -> None:
        while not self.end:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._moves.queue.get(), POLL)
            self._moves.drain()  # one read for a burst of events
            try:
                logs = await runlogs.read(self.store, self.run_id)
            except RunNotFound:  # pruned meanwhile: the pages stop following it
                self.end = event("end", "deleted")
                self._publish()
                return
            except Exception as exc:  # the database away for a moment: the next look
                log.warning("live logs of run %s: %s", self.run_id, exc)
                continue
            self._update(logs)

    def _update(self, logs: runlogs.Logs) -> None:
        sections, foot = body(logs), footer(logs)
        changed = False
        if self._known is None or list(self._known.items()) != sections:
            if self._known is None or not self._grow(sections):
                shown, self._page = view(sections)
                self.log, self.appends = event("log", shown), []
                self._shown = shown.count("\n")
            self._known, changed = dict(sections), True
        if foot != self._footer:
            self._footer, self.footer, changed = foot, event("footer", foot), True
        if logs.status != self._status:
            self._status, self.state, changed = logs.status, event("state", logs.status), True
        if RunStatus(logs.status).terminal:
            self.end, changed = event("end", logs.status), True
            self._moves.close()
        if changed:
            self._publish()

    def _grow(self, sections: Body) -> bool:
        """Send what changed as an ``append`` of out-of-band swaps, one per section that
        grew (its new lines at its end), changed (the section again) or came (after the
        section before it: parallel steps log in the middle of the body). False when the
        page must have the cut tail again instead: a section left or moved, one to change
        is not on the page (or only its end is), or the page would hold over twice
        ``TAIL`` lines."""
        assert self._known is not None
        old = self._known
        if [key for key, _ in sections if key in old] != list(old):
            return False
        page, ops, added, before = dict(self._page), [], 0, ""
        for key, lines in sections:
            was = old.get(key)
            if was is None:
                if before not in page:
                    return False
                ops.append(
                    f'<span hx-swap-oob="afterend:#{_id(before)}">{_span(key, lines)}</span>'
                )
                page[key], added = len(lines), added + len(lines)
            elif lines != was:
                if page.get(key) != len(was):
                    return False
                if lines[: len(was)] == was:
                    more = _text(lines[len(was) :])
                    ops.append(f'<span hx-swap-oob="beforeend:#{_id(key)}">{more}</span>')
                else:
                    ops.append(_span(key, lines, oob=' hx-swap-oob="true"'))
                page[key], added = len(lines), added + len(lines) - len(was)
            before = key
        if self._shown + added > 2 * TAIL:
            return False
        if ops:
            self.appends.append(event("append", "".join(ops)))
        self._page, self._shown = page, self._shown + added
        return True

    def _publish(self) -> None:
        moved, self.moved = self.moved, asyncio.Event()
        moved.set()

    def close(self) -> None:
        self._closed = True
        self._moves.close()
        if self._task is not None:
            self._task.cancel()


def _retrieved(task: asyncio.Task[None]) -> None:
    if not task.cancelled():
        task.exception()


def _succeeded(task: asyncio.Task[None]) -> bool:
    return not task.cancelled() and task.exception() is None


def _feed(request: web.Request, run_id: str) -> Feed:
    feeds: dict[str, Feed] = request.app[FEEDS]
    feed = feeds.get(run_id)
    failed = feed is not None and feed.ready.done() and not _succeeded(feed.ready)
    if feed is None or failed:
        baton = baton_of(request)
        feed = feeds[run_id] = Feed(baton.store, baton.engine.bus, run_id)
    return feed


async def stream(request: web.Request) -> web.StreamResponse:
    run_id = request.match_info["run_id"]
    feeds: dict[str, Feed] = request.app[FEEDS]
    feed = _feed(request, run_id)
    feed.clients += 1
    try:
        try:
            await asyncio.shield(feed.ready)
        except RunNotFound as exc:
            raise web.HTTPNotFound(text=str(exc)) from None
        response = web.StreamResponse(
            headers={
                "Content-Type": "text/event-stream",
                "Cache-Control": "no-cache",
                "X-Accel-Buffering": "no",  # a proxy in front must not hold the events back
            }
        )
        with contextlib.suppress(ConnectionResetError):  # the page went away: no one to tell
            await response.prepare(request)
            await _send(feed, response)
        return response
    finally:
        feed.clients -= 1
        if feed.clients == 0 and feeds.get(run_id) is feed:
            del feeds[run_id]
            feed.close()


async def _send(feed: Feed, response: web.StreamResponse) -> None:
    """The feed's events to one page, the newest it has not had, until the run ends."""
    log_sent = footer_sent = state_sent = b""
    appended = 0  # of feed.appends, sent
    while True:
        moved = feed.moved
        if feed.log is not log_sent:
            log_sent, appended = feed.log, 0
            await response.write(log_sent)
        if appended < len(feed.appends):
            more, appended = feed.appends[appended:], len(feed.appends)
            await response.write(b"".join(more))
        if feed.footer is not footer_sent:
            footer_sent = feed.footer
            await response.write(footer_sent)
        if feed.state is not state_sent:
            state_sent = feed.state
            await response.write(state_sent)
        if feed.end:
            await response.write(feed.end)
            return
        try:
            await asyncio.wait_for(moved.wait(), POLL)
        except TimeoutError:
            await response.write(b": still here\n\n")
