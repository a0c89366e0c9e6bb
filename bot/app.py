"""The composition root: settings in, a running Baton out. Every resource has one owner,
an ``AsyncExitStack``: the store, the engine (and its timers and HTTP session), the HTTP
server. Nothing is built at import time."""

from __future__ import annotations

import asyncio
import faulthandler
import gc
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bot import logs
from bot.approvers import ApproverCheck
from bot.settings import Settings
from bot.settings_dashboard import is_loopback
from engine import sandbox, stepenv
from engine.access import AccessRules
from engine.actions.lifecycle import ActionLifecycle
from engine.actions.registry import Registry
from engine.catalog import Catalog
from engine.errors import BatonError
from engine.fleet import inventory
from engine.fleet.draft import InventoryError
from engine.runs.engine import Engine
from engine.schedules import Schedules
from engine.secrets import Masker, SecretBox, load_secrets
from engine.timing import Clock, SchedulerTimers, Timers
from storage.db import is_postgres
from storage.schema import SchemaOutdated
from storage.store import Store

if TYPE_CHECKING:
    from bot.commands import Commands
    from bot.metrics import Metrics
    from engine.alerting import Alerts
    from engine.retention import Retention

log = logging.getLogger("baton")


@dataclass
class Baton:
    settings: Settings
    store: Store
    engine: Engine
    schedules: Schedules
    rules: AccessRules = field(default_factory=AccessRules)
    alerts: Alerts | None = None  # routes alerts to runs; not in `baton run`
    alert_mapping: Any = None  # where POST /alerts/generic finds fields
    retention: Retention | None = None  # the daily prune (BATON_RETENTION), serve only
    metrics: Metrics | None = None  # what GET /metrics serves; serve only

    def commands(self) -> Commands:
        """The command language on this engine, under these access rules."""
        from bot.commands import Commands

        return Commands(
            engine=self.engine,
            schedules=self.schedules,
            timezone=self.settings.timezone,
            rules=self.rules,
        )

    async def reload(self) -> list[str]:
        """Reload the playbook folder and the inventory; an invalid edit keeps the
        previous version. Declared schedules follow the playbooks' triggers."""
        # files are read off the event loop: a slow disk or a big folder stalls nothing
        problems = await asyncio.to_thread(self.engine.reload)
        for problem in problems:
            log.warning("playbook problem: %s", problem)
        await self.schedules.sync_declared()
        await self.schedules.refresh()
        log.info("playbooks reloaded: %d loaded", len(self.engine.catalog))
        fleet = await asyncio.to_thread(reload_inventory, self.settings)
        return [str(p) for p in problems] + fleet


def reload_inventory(settings: Settings) -> list[str]:
    """Read the inventory again and make it the active one; one that does not read
    leaves the previous one active, and its problems are logged and returned."""
    try:
        fresh = inventory.from_config(settings.config)
    except InventoryError as exc:
        for problem in exc.problems:
            log.warning("inventory problem (the previous inventory stays): %s", problem)
        return [str(p) for p in exc.problems]
    inventory.activate(fresh)
    log.info("%s", fresh.summary())
    return []


def build_catalog(settings: Settings, registry: Registry) -> Catalog:
    workers = is_postgres(settings.database_url)  # SQLite has no job queue: no runs_on
    catalog = Catalog.load(settings.playbooks, registry, workers=workers)
    for problem in catalog.problems:
        log.warning("playbook problem: %s", problem)
    return catalog


@asynccontextmanager
async def open_baton(
    settings: Settings,
    *,
    kind: str = "serve",
    upgrade: bool = False,
    clock: Clock | None = None,
    timers: Timers | None = None,
    rules: AccessRules | None = None,
) -> AsyncIterator[Baton]:
    """Open the store and start the engine as a node of ``kind``: ``serve`` adopts runs
    nobody drives, fires schedules and routes alerts; ``run`` and ``console`` drive only
    the runs they start. On exit stop the engine (draining running steps, giving up the
    leases of runs still in progress) and close the store. ``upgrade``: bring an older
    database schema to head (``baton serve``); without it, an older schema stops Baton
    with what to run. ``rules``: the access rules when the caller read them already
    (else they are read from ``BATON_CONFIG``)."""
    async with AsyncExitStack() as stack:
        sandbox.configure(settings.template_budget)
        rules = rules or AccessRules.load(settings.config)
        fleet = inventory.from_config(settings.config)  # a bad one stops Baton, with lines
        inventory.activate(fleet)
        log.info("%s", fleet.summary())
        registry = Registry.from_entry_points()
        registry.configure("ssh", known_hosts=settings.ssh_known_hosts, key_file=settings.ssh_key)
        catalog = build_catalog(settings, registry)
        secret_key = settings.secret_key.get_secret_value() if settings.secret_key else None
        box = SecretBox.from_settings(secret_key, settings.key_file)
        credentials = [*settings.credentials(), box.key]
        stack.enter_context(masked_logs(Masker(credentials)))
        store = Store(settings.database_url, upgrade=upgrade, idle_limit=settings.idle_limit)
        await store.open()
        stack.push_async_callback(store.close)
        engine = Engine(
            store=store,
            catalog=catalog,
            registry=registry,
            secret_box=box,
            secrets=load_secrets(os.environ, settings.secrets_dir),
            clock=clock,
            timers=timers or SchedulerTimers(),
            kind=kind,
            lease=settings.lease,
            renew=settings.renew_every,
            approver_check=ApproverCheck(rules),
            same_person=rules.people.same,
            step_env=step_environment(settings),
            credentials=credentials,
            worker_heartbeat=settings.worker_heartbeat,
        )
        schedules = Schedules(engine, grace=settings.misfire_grace, poll=settings.schedule_poll)
        if logs.log.isEnabledFor(logging.INFO):  # one line per run started, ended, decided
            event_log = logs.EventLog(engine.bus)
            event_log.start()
            stack.push_async_callback(event_log.close)  # after the engine's drain
        lifecycle = ActionLifecycle(engine.bus, registry)  # e.g. ssh connections per run
        lifecycle.start()
        stack.push_async_callback(lifecycle.close)  # after the engine's drain
        metrics = start_metrics(engine) if kind == "serve" else None
        if metrics is not None:
            stack.callback(metrics.close)
        await engine.start()
        stack.push_async_callback(engine.stop, settings.drain_timeout)
        baton = Baton(settings, store, engine, schedules, rules, metrics=metrics)
        if kind == "serve":  # other nodes neither adopt runs, fire schedules nor route alerts
            await schedules.start()
            stack.callback(schedules.stop)
            baton.alerts, baton.alert_mapping = alert_routing(settings, engine)
            await baton.alerts.start()
            stack.push_async_callback(baton.alerts.stop)
            baton.retention = start_retention(settings, engine)
            if baton.retention is not None:
                stack.push_async_callback(baton.retention.stop)
        yield baton


def start_metrics(engine: Engine) -> Metrics:
    """The metrics of a ``baton serve`` node, counting from its engine's first event.
    Imported here: prometheus-client costs ~100 ms of import that `baton run` and
    `baton console` (which serve no /metrics) should not pay."""
    from bot.metrics import Metrics

    return Metrics(engine)


def start_retention(settings: Settings, engine: Engine) -> Retention | None:
    """The daily prune when BATON_RETENTION is set (``engine.retention``)."""
    age = settings.retention_age
    if age is None:
        return None
    from engine.retention import Retention

    retention = Retention(engine, age, settings.audit_age)
    retention.start()
    log.info(
        "retention: finished runs older than %s are pruned daily, audit rows older than %s",
        settings.retention,
        settings.audit_retention,
    )
    return retention


def step_environment(settings: Settings) -> dict[str, str]:
    """What shell steps start from (``engine.stepenv``), computed once; says which
    variables pass, and which allowlisted ones never will."""
    allowlist = settings.step_env_allowlist()
    withheld = Settings.credential_names()
    for name in sorted(withheld.intersection(allowlist)):
        log.warning(
            "BATON_STEP_ENV names %s, one of Baton's own credentials: it never reaches steps "
            "(hand a step a secret as SECRET_<NAME> and env: {VAR: '{{ secrets.name }}'})",
            name,
        )
    env = stepenv.build(os.environ, allowlist, withheld)
    log.info("shell steps get these variables of Baton's environment: %s", ", ".join(sorted(env)))
    return env


class _MaskFilter(logging.Filter):
    """Masks credential values in every log record a handler emits."""

    def __init__(self, masker: Masker) -> None:
        super().__init__()
        self.masker = masker

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = self.masker.mask_text(message)
        if masked != message:
            record.msg, record.args = masked, ()
        return True


@contextmanager
def masked_logs(masker: Masker) -> Iterator[None]:
    """Baton's own credentials masked in its log lines (the root logger's handlers)."""
    handlers = list(logging.getLogger().handlers)
    mask = _MaskFilter(masker)
    for handler in handlers:
        handler.addFilter(mask)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(mask)


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


def alert_routing(settings: Settings, engine: Engine) -> tuple[Alerts, Any]:
    """The alert router under the settings' policy, and the generic webhook's mapping;
    a setting that does not read stops Baton with what to write."""
    from bot.alerts import parsers
    from engine.alerting import AlertPolicy, Alerts
    from engine.playbook import parse_rate

    try:
        rate = parse_rate(settings.alert_rate)
    except ValueError as exc:
        raise BatonError(f"BATON_ALERT_RATE: {exc}") from None
    policy = AlertPolicy(
        dedup_window=settings.alert_dedup_window,
        global_rate=rate,
        cancel_on_resolved=settings.alert_cancel_on_resolved,
    )
    mapping = parsers.mapping_from_setting(settings.alert_generic_map)
    return Alerts(engine, policy), mapping


async def run_console(baton: Baton, user: str) -> bool:
    """The console front end on ``baton``'s engine, as ``user``, until end of input
    (True), or until the process moved to the terminal's background (False). In a
    terminal, log lines go to ``BATON_CONSOLE_LOG`` meanwhile (the console says so)."""
    from bot.console import Console
    from engine.access import Actor

    actor = Actor(id=user, name=user, via="console")
    console = Console(engine=baton.engine, commands=baton.commands(), actor=actor)
    if not console.interactive:
        return await console.run()
    path = baton.settings.console_log
    with logs.diverted(path):
        console.notes.append(f"Log lines go to {path} while the console is open.")
        return await console.run()


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
    from aiohttp import web

    # Thousands of parked runs are long-lived objects: with the default thresholds the
    # collector walks all of them over and over (measured: 44% of the time spent parking
    # 10,000 runs). Collect the young generation less often and the old one rarely.
    gc.set_threshold(50_000, 20, 100)

    from bot import api

    for name in settings.blank_secrets:
        log.warning("%s is set but empty, so it counts as unset: give it a value", name)
    rules = AccessRules.load(settings.config)
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
        from bot.alerts import chat

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
            import getpass

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
