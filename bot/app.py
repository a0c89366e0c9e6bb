"""The composition root: settings in, a running Baton out. Every resource has one owner,
an ``AsyncExitStack``: the store, the engine (and its timers and HTTP session), the
schedules, alerts and retention of a server. Nothing is built at import time.
``bot.serve`` puts the HTTP server, Slack and the signals around it for ``baton serve``."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bot import logs
from bot.approvers import ApproverCheck
from bot.settings import Settings
from engine.access import config as accessconfig
from engine.access.rules import AccessRules
from engine.actions import stepenv
from engine.actions.lifecycle import ActionLifecycle
from engine.actions.registry import Registry
from engine.errors import BatonError, Problem
from engine.fleet import inventory
from engine.fleet.draft import InventoryError
from engine.playbooks import sandbox
from engine.playbooks.catalog import Catalog
from engine.runs.engine import Engine
from engine.schedules.service import Schedules
from engine.secrets import Masker, SecretBox, load_secrets
from engine.timing import Clock, SchedulerTimers, Timers
from storage.db import is_postgres
from storage.store import Store

if TYPE_CHECKING:
    from bot.commands import Commands
    from bot.metrics import Metrics
    from engine.alerts.router import AlertRouter
    from engine.retention import Retention

log = logging.getLogger("baton")


@dataclass
class Baton:
    settings: Settings
    store: Store
    engine: Engine
    schedules: Schedules
    rules: AccessRules = field(default_factory=AccessRules)
    alerts: AlertRouter | None = None  # routes alerts to runs; not in `baton run`
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
        log_problems(problems)
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


def build_catalog(settings: Settings, registry: Registry, rules: AccessRules) -> Catalog:
    """The playbooks; an approval naming a group the rules do not define is a problem."""
    workers = is_postgres(settings.database_url)  # SQLite has no job queue: no runs_on
    groups = rules.approver_groups()
    catalog = Catalog.load(settings.playbooks, registry, workers=workers, groups=groups)
    log_problems(catalog.problems)
    return catalog


def log_problems(problems: Sequence[Problem]) -> None:
    """One warning per playbook file that does not load (every command loads the folder:
    a broken file's whole list before each one drowned what the command said)."""
    by_file: dict[str, list[Problem]] = {}
    for problem in problems:
        by_file.setdefault(problem.file, []).append(problem)
    for file, found in by_file.items():
        more = f" (and {len(found) - 1} more: `baton validate {file}` lists them)"
        log.warning("playbook file not loaded: %s%s", found[0], more if len(found) > 1 else "")


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
        rules = rules or accessconfig.load(settings.config)
        fleet = inventory.from_config(settings.config)  # a bad one stops Baton, with lines
        inventory.activate(fleet)
        log.info("%s", fleet.summary())
        registry = Registry.from_entry_points()
        registry.configure("ssh", known_hosts=settings.ssh_known_hosts, key_file=settings.ssh_key)
        catalog = build_catalog(settings, registry, rules)
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
    """What shell steps start from (``engine.actions.stepenv``), computed once; says which
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


def alert_routing(settings: Settings, engine: Engine) -> tuple[AlertRouter, Any]:
    """The alert router under the settings' policy, and the generic webhook's mapping;
    a setting that does not read stops Baton with what to write."""
    from bot.alerts import parsers
    from engine.alerts.router import AlertPolicy, AlertRouter
    from engine.playbooks.model import parse_rate

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
    return AlertRouter(engine, policy), mapping


async def run_console(baton: Baton, user: str) -> bool:
    """The console front end on ``baton``'s engine, as ``user``, until end of input
    (True), or until the process moved to the terminal's background (False). In a
    terminal, log lines go to ``BATON_CONSOLE_LOG`` meanwhile (the console says so)."""
    from bot.console import Console
    from engine.access.rules import Actor
    from engine.runs.requests import Trigger

    actor = Actor(id=user, name=user, via=Trigger.CONSOLE)
    console = Console(engine=baton.engine, commands=baton.commands(), actor=actor)
    if not console.interactive:
        return await console.run()
    path = baton.settings.console_log
    with logs.diverted(path):
        console.notes.append(f"Log lines go to {path} while the console is open.")
        return await console.run()
