"""The console front end: the chat grammar in a terminal, or driven through stdin.

Lines are read by a daemon thread (so a blocked read never holds up the process's exit,
and stdin may be a terminal, a pipe or a file); one task takes both the lines and the
engine's events, so a reply is printed before the live updates of the run it started.
Live updates are shown for the runs this console started, retried, cancelled or decided
on. At end of input (or ``quit``/``exit``) the console waits until those runs have
finished or wait for a person or a timer, prints what is left, and returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import signal
import sys
import threading
from typing import Any, TextIO

from bot.commands import Actor, Commands
from bot.news import News
from bot.progress import Progress
from bot.typed_line import TypedLine
from engine import events as ev
from engine.bus import Subscription
from engine.runs.engine import Engine
from engine.views import queries

PROMPT = "baton> "
QUIT = frozenset({"quit", "exit"})


class ConsoleProgress(Progress):
    """Progress lines, with approval prompts that say how to answer from here; in a
    terminal, drawn above the line being typed (``typed``)."""

    typed: TypedLine | None = None

    def say(self, text: str) -> None:
        if self.typed is not None:
            self.typed.say(text)
        else:
            super().say(text)

    def render(self, event: ev.Event) -> None:
        match event:
            case ev.ApprovalRequested():
                who = queries.describe_approvers({"approvers": event.approvers}, event.requested_by)
                self.say(
                    f"  ? approval {event.approval_id} needed: {event.message} (approvers: {who})"
                )
                self.say(
                    f"    answer with `approve {event.approval_id} [comment]` "
                    f"or `reject {event.approval_id} [reason]`"
                )
            case ev.ApprovalDecided():
                comment = f": {event.comment}" if event.comment else ""
                verb = "rejected" if event.decision == "reject" else "approved"
                self.say(f"  {event.user} {verb} {event.approval_id}{comment}")
            case ev.ApprovalClosed():
                self.say(f"  approval {event.approval_id} {event.outcome}")
            case ev.ApprovalEscalated():
                who = queries.describe_approvers({"approvers": event.added}, "")
                until = f" until {event.deadline:%H:%M} UTC" if event.deadline else ""
                self.say(f"  ^ approval {event.approval_id} escalated to {who}{until}")
            case ev.ApprovalReminded():
                who = queries.describe_approvers({"approvers": event.approvers}, "")
                self.say(f"  ! approval {event.approval_id} still waits for {who}")
            case _:
                super().render(event)


class Backgrounded:
    """The terminal refused a read: this process is no longer its foreground job."""


Line = str | None | Backgrounded


def _reader(
    source: TextIO | TypedLine, loop: asyncio.AbstractEventLoop, lines: asyncio.Queue[Line]
) -> None:
    end: Line = None
    try:
        if isinstance(source, TypedLine):  # a terminal, read with readline
            while not source.closed and (typed := source.read()) is not None:
                loop.call_soon_threadsafe(lines.put_nowait, typed)
            end = Backgrounded() if source.in_background() else None
            return
        for line in source:
            loop.call_soon_threadsafe(lines.put_nowait, line)
    except OSError as exc:
        # EIO: a read of the terminal from the background, with SIGTTIN ignored
        if exc.errno == errno.EIO and (isinstance(source, TypedLine) or source.isatty()):
            end = Backgrounded()
    except ValueError:  # closed
        pass
    finally:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody listens
            loop.call_soon_threadsafe(lines.put_nowait, end)


def _reads_fail_in_background() -> bool:
    """SIGTTIN ignored (``baton serve``): a read from the background fails rather than
    stopping the process, and the console closes instead."""
    return signal.getsignal(signal.SIGTTIN) == signal.SIG_IGN


def _if_moved(typed: TypedLine, lines: asyncio.Queue[Line]) -> None:
    if typed.in_background():
        lines.put_nowait(Backgrounded())


class Console:
    def __init__(
        self,
        *,
        engine: Engine,
        commands: Commands,
        actor: Actor,
        source: TextIO = sys.stdin,
        out: TextIO = sys.stdout,
        interactive: bool | None = None,
    ) -> None:
        self.engine = engine
        self.commands = commands
        self.actor = actor
        self.source = source
        self.out = out
        self.interactive = source.isatty() if interactive is None else interactive
        self.progress = ConsoleProgress(out)
        # a terminal on both sides: readline reads, and lines are drawn above its prompt
        if self.interactive and source is sys.stdin and out is sys.stdout and out.isatty():
            self.progress.typed = TypedLine(PROMPT, out, source.fileno())
        self.watched: set[str] = set()
        self.where: dict[str, Any] = {"front_end": "console", "user": actor.id}
        self.notes: list[str] = []  # said when the console opens, after the greeting
        self.news = News(engine.store, watched=self.watched.__contains__)

    def _prompt(self) -> None:
        if self.interactive and self.progress.typed is None:  # readline draws its own
            print(PROMPT, end="", file=self.out, flush=True)

    async def run(self) -> bool:
        """Until end of input or `quit` (True), or until the terminal refuses a read
        because this process went to the background (False: nothing is waited for)."""
        loop = asyncio.get_running_loop()
        lines: asyncio.Queue[Line] = asyncio.Queue()
        source = self.progress.typed or self.source
        threading.Thread(
            target=_reader, args=(source, loop, lines), name="console-stdin", daemon=True
        ).start()
        if self.progress.typed is not None and _reads_fail_in_background():
            # readline waits for input without reading, so no failed read says that this
            # process went to the background (Ctrl-Z, then `bg`): being continued does
            typed = self.progress.typed
            moved = functools.partial(_if_moved, typed, lines)
            loop.add_signal_handler(signal.SIGCONT, moved)
        if self.interactive:
            self.progress.say(
                "Baton console: `help` lists commands, `quiet` toggles the news of runs "
                "started elsewhere, `quit` or Ctrl-D ends."
            )
            for note in self.notes:
                self.progress.say(note)
        await self.news.start()
        news = asyncio.create_task(self.news.watch(), name="console-news")
        try:
            with self.engine.bus.subscribe() as events:
                self._prompt()
                while True:
                    line = await self._next(lines, events)
                    if isinstance(line, Backgrounded):
                        return False
                    if line is None:
                        break
                    text = line.strip()
                    if not text:
                        self._prompt()
                        continue
                    if text.lower() in QUIT:
                        break
                    if text.lower() == "quiet":
                        self.progress.say(await self.news.toggle())
                    else:
                        await self._handle(text)
                    self._show(events)
                    self._prompt()
                await self.engine.wait_idle()
                self._show(events)
        finally:
            news.cancel()
            if self.progress.typed is not None:
                loop.remove_signal_handler(signal.SIGCONT)
                self.progress.typed.close()
        if self.interactive:
            self.progress.say("")
        return True

    async def _handle(self, text: str) -> None:
        reply = await self.commands.handle(self.actor, text, self.where)
        if reply.follow and reply.run_id:
            self.watched.add(reply.run_id)
        for out in reply.lines:
            self.progress.say(out)
        if text.lower() == "help":
            self.progress.say(
                "In this console also: `quiet` (toggle the news of runs started by alerts "
                "and schedules, and of failed runs), `quit`."
            )

    async def _next(self, lines: asyncio.Queue[Line], events: Subscription) -> Line:
        """The next line of input, rendering events and news while waiting for it."""
        while True:
            getter = asyncio.ensure_future(lines.get())
            event = asyncio.ensure_future(events.queue.get())
            said = asyncio.ensure_future(self.news.lines.get())
            done, _ = await asyncio.wait({getter, event, said}, return_when=asyncio.FIRST_COMPLETED)
            if event in done:
                self._render(event.result())
            else:
                event.cancel()
            if said in done:
                self.progress.say(said.result())
            else:
                said.cancel()
            if getter in done:
                return getter.result()
            getter.cancel()
            self._show(events)

    def _show(self, events: Subscription) -> None:
        for event in events.drain():
            self._render(event)

    def _render(self, event: ev.Event) -> None:
        if event.run_id in self.watched:
            self.progress.render(event)
