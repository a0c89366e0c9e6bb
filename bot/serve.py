"""``baton serve``: a Baton (``bot.app.open_baton``) behind its HTTP server, with Slack
or the console in front when set up, until SIGINT/SIGTERM; SIGHUP reloads the playbooks.
A stop that takes too long says what it waits on (``watch_the_stop``)."""

from __future__ import annotations

import asyncio
import faulthandler
import gc
import getpass
import logging
import os
import signal
import sys
from contextlib import AsyncExitStack

from aiohttp import web

from bot import api
from bot.alerts import chat
from bot.app import open_baton, run_console
from bot.settings import Settings
from bot.settings_dashboard import is_loopback
from engine.access import config as accessconfig
from engine.access.rules import AccessRules
from engine.errors import BatonError
from storage.schema import SchemaOutdated

log = logging.getLogger("baton")


def refuse_an_open_dashboard(settings: Settings, rules: AccessRules) -> None:
    """With nobody under ``users:`` the dashboard acts as the local person, for whoever
    reaches it: that is only safe on a loopback address (``bot.dashboard.auth``)."""
    if settings.dashboard and not rules.people and not is_loopback(settings.host):
        raise BatonError(
            f"BATON_HOST={settings.host} is not a loopback address and nobody is under "
            "`users:` in BATON_CONFIG: the dashboard would be open to whoever reaches port "
            f"{settings.port}. Add people (with token_sha256 and role) under `users:`, "
            "bind BATON_HOST=127.0.0.1, or set BATON_DASHBOARD=false"
        )


def in_foreground() -> bool:
    """True when standard input is a terminal and this process is in its foreground
    process group: only then may it read the terminal (a background read would stop the
    process: `make run &` gave "[1]+ Stopped")."""
    try:
        fd = sys.stdin.fileno()
        return os.isatty(fd) and os.tcgetpgrp(fd) == os.getpgrp()
    except (OSError, ValueError, AttributeError):  # no stdin, closed, or not a terminal
        return False


def slack_wanted(settings: Settings) -> bool:
    """Slack is set up when a Socket Mode token or a signing secret is given; either
    needs the bot token to post."""
    wanted = settings.slack_app_token is not None or settings.slack_signing_secret is not None
    if not wanted and settings.slack_bot_token is not None:
        log.warning(
            "SLACK_BOT_TOKEN is set but Slack stays off: set SLACK_APP_TOKEN (Socket Mode) "
            "or SLACK_SIGNING_SECRET (HTTP mode at /slack/events)"
        )
    if wanted and settings.slack_bot_token is None:
        raise BatonError(
            "SLACK_APP_TOKEN or SLACK_SIGNING_SECRET is set but SLACK_BOT_TOKEN is not: "
            "set the bot token (xoxb-...) from the Slack app's OAuth page"
        )
    return wanted


def wants_console(settings: Settings) -> bool:
    """``baton serve`` chats in its terminal when Slack is not set up and it has one it
    may read: it is the terminal's foreground job (in the background it only serves)."""
    slack = (settings.slack_bot_token, settings.slack_app_token, settings.slack_signing_secret)
    if any(v is not None for v in slack):
        return False
    if in_foreground():
        return True
    if sys.stdin is not None and sys.stdin.isatty():
        log.info(
            "in the terminal's background: no console, serving only (stop it with "
            "SIGTERM, or `fg` then Ctrl-C)"
        )
    return False


def keep_running_in_background() -> None:
    """A later move to the background (Ctrl-Z then `bg`) must not stop ``baton serve``:
    with SIGTTIN and SIGTTOU ignored, a read of the terminal from the background fails
    (the console then closes, the server goes on) and writes go through."""
    for sig in (signal.SIGTTIN, signal.SIGTTOU):
        signal.signal(sig, signal.SIG_IGN)


async def serve(settings: Settings) -> None:
    """``baton serve``: the engine plus its HTTP server, until SIGINT/SIGTERM."""
    # Thousands of parked runs are long-lived objects: with the default thresholds the
    # collector walks all of them over and over (measured: 44% of the time spent parking
    # 10,000 runs). Collect the young generation less often and the old one rarely.
    gc.set_threshold(50_000, 20, 100)
    for name in settings.blank_secrets:
        log.warning("%s is set but empty, so it counts as unset: give it a value", name)
    rules = accessconfig.load(settings.config)
    tokens = settings.api_token is not None or rules.people.tokens
    if settings.api_read_token == "required" and not tokens:
        raise BatonError(
            "BATON_API_READ_TOKEN=required but BATON_API_TOKEN is not set (and nobody under "
            "`users:` in BATON_CONFIG has a token): set the token (reads and writes of the "
            "API then need it, or a person's own token, as a bearer token)"
        )
    refuse_an_open_dashboard(settings, rules)
    async with AsyncExitStack() as stack:
        stack.callback(faulthandler.cancel_dump_traceback_later)  # the last to run: stopped
        slack_on = slack_wanted(settings)
        try:
            baton = await stack.enter_async_context(
                open_baton(settings, upgrade=settings.auto_upgrade, rules=rules)
            )
        except SchemaOutdated as exc:  # only when BATON_AUTO_UPGRADE is false
            raise SchemaOutdated(
                exc.state,
                "run `baton db upgrade` (BATON_AUTO_UPGRADE is false, so `baton serve` does not)",
            ) from None
        log.info("%s", baton.rules.summary())
        front = None
        chat_rules = chat.load(settings.config)  # checked at start, with or without Slack
        if slack_on:
            from bot.slack.front import SlackFront

            front = await stack.enter_async_context(
                SlackFront(
                    settings,
                    baton.commands(),
                    baton.alerts,
                    chat_rules,
                    on_api_error=baton.metrics.slack_error if baton.metrics else None,
                )
            )
            # on the way out, drain the engine while the cards still listen: the runs that
            # end during the drain get their last edit and their failure notice
            stack.push_async_callback(baton.engine.stop, settings.drain_timeout)
        runner = web.AppRunner(api.create_app(settings, baton, front), access_log=None)
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        # a burst of Slack requests (an alert storm, 200 slash commands) must not find the
        # listen queue full: the default 128 dropped connections in the bench
        site = web.TCPSite(runner, settings.host, settings.port, backlog=1024)
        try:
            await site.start()
        except OSError as exc:
            raise BatonError(
                f"cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc}; "
                "set BATON_HOST / BATON_PORT"
            ) from None
        # signals are handled before "serving on" is logged: whoever waits for that line
        # may send SIGHUP at once (its default action would stop the process)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
            stack.callback(loop.remove_signal_handler, sig)
        loop.add_signal_handler(signal.SIGHUP, lambda: baton.engine.spawn(baton.reload(), "reload"))
        stack.callback(loop.remove_signal_handler, signal.SIGHUP)
        log.info(
            "Baton serving on http://%s:%d (%d playbooks, database %s)",
            settings.host,
            settings.port,
            len(baton.engine.catalog),
            baton.store.engine.url.render_as_string(hide_password=True),
        )
        if not tokens:
            log.warning("BATON_API_TOKEN is not set: POST /api/runs is refused (403)")
        if settings.api_read_token == "open" and not is_loopback(settings.host):
            log.warning(
                "BATON_HOST=%s is not a loopback address and API reads are open: anyone who "
                "reaches port %d reads runs, their params and step outputs, and alerts. "
                "Set BATON_API_READ_TOKEN=required (reads then need BATON_API_TOKEN)",
                settings.host,
                settings.port,
            )
        if settings.proxy_user_header and not settings.proxies:
            log.warning(
                "BATON_PROXY_USER_HEADER=%s is ignored: BATON_TRUSTED_PROXIES names no proxy "
                "address to take it from",
                settings.proxy_user_header,
            )
        if settings.alert_token is None and settings.pagerduty_secret is None:
            log.warning("BATON_ALERT_TOKEN is not set: alert webhooks are refused (401)")
        keep_running_in_background()
        if wants_console(settings):
            log.info("no Slack tokens set: chat here (`help`; Ctrl-D or `quit` stops Baton)")
            console = asyncio.create_task(run_console(baton, getpass.getuser()))
            console.add_done_callback(lambda task: _console_ended(task, stop))
            stack.callback(console.cancel)
        await stop.wait()
        log.info("stopping: letting running steps finish (up to %.0fs)", settings.drain_timeout)
        watch_the_stop(settings.drain_timeout + STOP_GRACE)


STOP_GRACE = 10.0
"""Seconds a stop may take beyond the drain timeout (closing connections, giving up the
leases, the store's last writes) before Baton says what it is still waiting on."""


def watch_the_stop(after: float) -> None:
    """A stop that takes longer than ``after`` seconds says why, instead of hanging
    silently until someone sends SIGKILL: a warning naming the tasks still pending (if the
    loop runs), and every thread's stack on stderr (even if the loop is blocked)."""
    faulthandler.dump_traceback_later(after, exit=False)
    asyncio.get_running_loop().call_later(after, _log_pending)


def _log_pending() -> None:
    pending = []
    for task in asyncio.all_tasks():  # serve's own task among them: where its stop waits
        if task.done():
            continue
        frames = task.get_stack(limit=1)
        where = f"{frames[0].f_code.co_filename}:{frames[0].f_lineno}" if frames else "?"
        pending.append(f"{task.get_name()} at {where}")
    log.warning(
        "stopping takes longer than expected; still waiting on: %s (thread stacks follow "
        "on stderr)",
        "; ".join(sorted(pending)) or "no task (a blocking call?)",
    )


def _console_ended(task: asyncio.Task[bool], stop: asyncio.Event) -> None:
    """Ctrl-D or `quit` stop ``baton serve``; a move to the background closes only the
    console."""
    if not task.cancelled() and task.exception() is None and not task.result():
        log.info("moved to the terminal's background: console closed, still serving")
        return
    stop.set()
