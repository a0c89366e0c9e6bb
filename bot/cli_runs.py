"""``baton run`` and ``baton console`` as nodes of one Baton: a run driven here with live
progress and Ctrl-C, a run followed once another process drives it, and what a process
says about the runs it leaves in progress."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import TYPE_CHECKING

from engine import events as ev
from engine.errors import RunMoved, RunQueued
from engine.runs.state import RunStatus
from engine.views import queries

if TYPE_CHECKING:
    from bot.app import Baton
    from bot.progress import Progress
    from bot.settings import Settings
    from engine.runs.requests import RunRequest


async def drive_here(baton: Baton, request: RunRequest, progress: Progress) -> int:
    """Drive one run in this process with live progress. The first Ctrl-C cancels it
    (its running steps are killed, ``finally`` runs); a second one leaves it to a
    server, and so do SIGTERM and SIGHUP (the running steps are stopped and recorded as
    interrupted first, never left running behind). A run that ends elsewhere (taken
    over) is followed from the database."""
    engine = baton.engine
    loop = asyncio.get_running_loop()
    interrupts = 0
    ended_by: list[int] = []  # SIGTERM or SIGHUP (a closed terminal, a CI job cancelled)
    left = asyncio.Event()
    run_id = ""

    def on_stop(signum: int) -> None:
        ended_by.append(signum)
        left.set()

    def on_sigint() -> None:
        nonlocal interrupts
        interrupts += 1
        if interrupts == 1 and run_id:
            print(
                f"\ncancelling run {run_id} (Ctrl-C again to leave it running for a server)",
                file=sys.stderr,
                flush=True,
            )
            engine.spawn(engine.cancel(run_id, request.requested_by), "cli-cancel")
        else:
            left.set()

    loop.add_signal_handler(signal.SIGINT, on_sigint)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, on_stop, sig)
    try:
        with engine.bus.subscribe() as events:
            run_id = await engine.start_run(request)
            waiter = asyncio.ensure_future(engine.wait_for(run_id))
            leaving = asyncio.ensure_future(left.wait())
            family = {run_id}  # the run and its child runs (`playbook` steps)
            while not waiter.done() and not left.is_set():
                getter = asyncio.ensure_future(events.queue.get())
                await asyncio.wait({waiter, getter, leaving}, return_when=asyncio.FIRST_COMPLETED)
                if not getter.done():
                    getter.cancel()
                    continue
                event = getter.result()
                if isinstance(event, ev.RunStarted) and event.parent_run_id in family:
                    family.add(event.run_id)
                if event.run_id in family:
                    progress.render(event)
            leaving.cancel()
            for event in events.drain():
                if event.run_id in family:
                    progress.render(event)
            if left.is_set() and not waiter.done():
                waiter.cancel()
                await engine.stop(drain=0)
                why = f"{signal.Signals(ended_by[0]).name}: " if ended_by else ""
                print(
                    f"{why}left run {run_id} to a server: `baton runs` shows it, "
                    "`baton serve` carries it on",
                    file=sys.stderr,
                )
                return 128 + ended_by[0] if ended_by else 130
            try:
                status = waiter.result()
            except RunQueued:
                servers = await engine.servers_alive()
                then = "a `baton serve`" if servers else "`baton serve` (none runs now)"
                print(
                    f"run {run_id} is queued behind its concurrency key: {then} starts it "
                    "when a place frees; following it (Ctrl-C cancels it)",
                    file=sys.stderr,
                )
                status = await follow(baton, run_id)
                print(f"run {run_id} ended {status} elsewhere", file=sys.stderr)
            except RunMoved:
                print(
                    f"run {run_id} is now driven by another Baton process; following it",
                    file=sys.stderr,
                )
                status = await follow(baton, run_id)
                print(f"run {run_id} ended {status} elsewhere", file=sys.stderr)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.remove_signal_handler(sig)
    if interrupts:
        return 130
    if status.value != "succeeded":
        progress.failures(await queries.step_tails(baton.store, run_id))
        return 1
    return 0


async def follow(baton: Baton, run_id: str) -> RunStatus:
    """Wait until a run driven by another process ends, reading its row."""
    while True:
        row = await baton.engine.records.row(run_id)
        status = RunStatus(row.status)
        if status.terminal:
            return status
        await asyncio.sleep(0.5)


async def left_behind(baton: Baton) -> None:
    """Say what happens to the runs this process started and leaves in progress."""
    count = baton.engine.released
    if not count:
        return
    servers = await baton.engine.servers_alive()
    runs = "1 run is" if count == 1 else f"{count} runs are"
    if servers:
        print(f"{runs} still active; a server ({servers[0]}) carries them on", file=sys.stderr)
    else:
        print(f"{runs} still active; `baton serve` will carry them on", file=sys.stderr)


async def retry(settings: Settings, args: argparse.Namespace) -> int:
    """``baton retry RUN [--from-failed]``: the retry goes through the access rules like
    chat's, then this process drives the new attempt until it ends."""
    from bot import grammar
    from bot.app import open_baton
    from bot.cli_identity import acting_as, check
    from bot.progress import Progress

    progress = Progress()
    async with open_baton(settings, kind="run") as baton:
        user = await acting_as(baton, args.user)
        await check(baton, user, grammar.Retry(args.run_id, from_failed=args.from_failed))
        with baton.engine.bus.subscribe() as events:
            await baton.engine.retry(args.run_id, user, from_failed=args.from_failed)
            waiter = asyncio.ensure_future(baton.engine.wait_for(args.run_id))
            while not waiter.done():
                getter = asyncio.ensure_future(events.queue.get())
                await asyncio.wait({waiter, getter}, return_when=asyncio.FIRST_COMPLETED)
                if getter.done() and getter.result().run_id == args.run_id:
                    progress.render(getter.result())
                getter.cancel()
            for event in events.drain():
                if event.run_id == args.run_id:
                    progress.render(event)
        if waiter.result() != RunStatus.SUCCEEDED:
            progress.failures(await queries.step_tails(baton.store, args.run_id))
            return 1
    return 0
