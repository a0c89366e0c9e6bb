"""Prometheus metrics (README, "Metrics"): what ``GET /metrics`` serves.

Each Baton owns one ``CollectorRegistry`` (never the process-wide default: tests build many
Batons in one process, and two Batons must not add to each other's counters).

- Counters and histograms count what *this process* did. They are fed by watching the
  engine's event bus (``EventBus.watch``): the engine publishes what happened, this module
  turns it into numbers, and no call is sprinkled into the engine.
- Gauges about runs (``baton_runs_active``, ``baton_runs``) are read from the database at
  scrape time, so that every replica answers the same.
- Labels come from fixed sets: a playbook label names a playbook of the catalog (anything
  else is ``other``), triggers, statuses, actions, sources and outcomes are known words.
  No run id and no user ever becomes a label: their number has no bound.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from datetime import datetime
from importlib import metadata

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, Info
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

from engine import events as ev
from engine.alerts.model import OUTCOMES
from engine.runs.engine import Engine
from engine.runs.requests import TRIGGERS as TRIGGER_KINDS
from engine.runs.state import RUNS_IN_PROGRESS, RunStatus
from engine.views import queries

OTHER = "other"
TRIGGERS = frozenset(TRIGGER_KINDS)
ALERT_SOURCES = frozenset({"alertmanager", "grafana", "pagerduty", "generic", "chat"})
SCHEDULE_OUTCOMES = frozenset({"started", "failed", "missed"})
SLACK_METHODS = frozenset(
    {
        "apps.connections.open",
        "auth.test",
        "chat.postEphemeral",
        "chat.postMessage",
        "chat.update",
        "conversations.info",
        "files.completeUploadExternal",
        "files.getUploadURLExternal",
        "files.upload",
        "usergroups.list",
        "usergroups.users.list",
        "users.info",
        "views.open",
        "views.update",
    }
)
OPEN_GATES = 10_000  # gates remembered until they close, the oldest forgotten first
ACTIVE_STATUSES = tuple(RunStatus(s) for s in RUNS_IN_PROGRESS)
ACTIVE_VALUES = frozenset(RUNS_IN_PROGRESS)
TOTALS_EVERY = 60.0
"""Seconds between two counts of every run by status (``baton_runs`` of finished ones)."""
RUN_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400)
STEP_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 15, 30, 60, 300, 900, 3600)
APPROVAL_BUCKETS = (10, 30, 60, 300, 600, 1800, 3600, 7200, 14400, 43200, 86400)
STEP_ENDS: dict[type, str] = {
    ev.StepSucceeded: "succeeded",
    ev.StepFailed: "failed",
    ev.StepSkipped: "skipped",
    ev.StepCancelled: "cancelled",
    ev.StepInterrupted: "interrupted",
}


def known(value: str, allowed: Iterable[str]) -> str:
    """``value`` when it is one of ``allowed``, else ``other``: a label's values stay few."""
    return value if value in allowed else OTHER


def version() -> str:
    try:
        return metadata.version("baton")
    except metadata.PackageNotFoundError:  # run from a source tree that is not installed
        return "unknown"


class DatabaseGauges(Collector):
    """Gauges read from the database at scrape time (set by ``Metrics.exposition`` just
    before the registry is rendered: a collector's ``collect`` cannot await)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.counts: dict[str, int] = {}

    def collect(self) -> Iterator[Metric]:
        active = GaugeMetricFamily(
            "baton_runs_active", "Runs in progress in the database, by status.", labels=["status"]
        )
        for status in ACTIVE_STATUSES:
            active.add_metric([status.value], self.counts.get(status.value, 0))
        yield active
        runs = GaugeMetricFamily("baton_runs", "Runs in the database by status.", labels=["status"])
        for status in RunStatus:
            runs.add_metric([status.value], self.counts.get(status.value, 0))
        yield runs
        yield GaugeMetricFamily(
            "baton_active_runs", "Runs driven by this process.", len(self.engine.active_runs)
        )
        yield GaugeMetricFamily("baton_playbooks", "Playbooks loaded.", len(self.engine.catalog))
        yield CounterMetricFamily(
            "baton_store_commits", "Commits made by the store's writer.", self.engine.store.commits
        )


class Metrics:
    """The metric families of one Baton, fed by its engine's events."""

    content_type = CONTENT_TYPE_LATEST  # the text format's version 0.0.4

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.registry = CollectorRegistry(auto_describe=True)
        self.gauges = DatabaseGauges(engine)
        self.registry.register(self.gauges)
        self._define()
        self._asked: dict[str, datetime] = {}  # approval id -> when its gate opened
        self.monotonic = time.monotonic
        self._totals: dict[str, int] = {}  # runs by status, as last counted
        self._totals_at: float | None = None
        self._unwatch = engine.bus.watch(self.observe)

    def _define(self) -> None:
        reg = self.registry
        self.runs_started = Counter(
            "baton_runs_started", "Runs started here.", ["playbook", "trigger"], registry=reg
        )
        self.runs_finished = Counter(
            "baton_runs_finished", "Runs that ended here.", ["playbook", "status"], registry=reg
        )
        self.run_duration = Histogram(
            "baton_run_duration_seconds", "Runs' durations.", buckets=RUN_BUCKETS, registry=reg
        )
        self.steps_finished = Counter(
            "baton_steps_finished", "Steps that ended here.", ["action", "status"], registry=reg
        )
        self.step_duration = Histogram(
            "baton_step_duration_seconds",
            "Steps' durations (their last attempt).",
            ["action"],
            buckets=STEP_BUCKETS,
            registry=reg,
        )
        self.step_retries = Counter(
            "baton_step_retries", "Failed attempts that will be tried again.", registry=reg
        )
        self.approval_wait = Histogram(
            "baton_approval_wait_seconds",
            "From an approval gate's opening to its closing.",
            buckets=APPROVAL_BUCKETS,
            registry=reg,
        )
        self.alerts = Counter(
            "baton_alerts_received", "Alerts received.", ["source", "outcome"], registry=reg
        )
        self.schedule_fires = Counter(
            "baton_schedule_fires", "Schedule fires.", ["outcome"], registry=reg
        )
        self.slack_errors = Counter(
            "baton_slack_api_errors", "Failed Slack Web API calls.", ["method"], registry=reg
        )
        Info("baton_build", "This Baton's version.", registry=reg).info({"version": version()})

    def close(self) -> None:
        self._unwatch()

    def slack_error(self, method: str) -> None:
        """A Slack Web API call failed (``bot.slack.client`` tells it)."""
        self.slack_errors.labels(known(method, SLACK_METHODS)).inc()

    async def exposition(self) -> bytes:
        """The Prometheus text of every family, the database's gauges read now: the runs
        in progress at every scrape (a search of the status index), the finished ones at
        most every ``TOTALS_EVERY`` seconds (counting them walks the whole history: 50-80
        ms at 300,000 runs on SQLite, and a scrape every 15 s per replica)."""
        store = self.engine.store
        active = await queries.run_counts(store, [s.value for s in ACTIVE_STATUSES])
        now = self.monotonic()
        if self._totals_at is None or now - self._totals_at >= TOTALS_EVERY:
            self._totals, self._totals_at = await queries.run_counts(store), now
        totals = {k: v for k, v in self._totals.items() if k not in ACTIVE_VALUES}
        self.gauges.counts = {**totals, **active}
        return generate_latest(self.registry)

    # --- events -> numbers -------------------------------------------------------------

    def _playbook(self, name: str) -> str:
        return name if name in self.engine.catalog else OTHER

    def _action(self, event: ev.StepEvent) -> str:
        """The step's action, from the catalog's playbook (``other`` when unknown)."""
        if event.playbook not in self.engine.catalog:
            return OTHER
        playbook = self.engine.catalog.get(event.playbook)
        for _, step in playbook.all_steps():
            if step.id == event.step_id:
                return known(step.action, self.engine.registry.names())
        return OTHER

    def observe(self, event: ev.Event) -> None:
        match event:
            case ev.RunStarted(resumed=False):
                trigger = known(event.trigger, TRIGGERS)
                self.runs_started.labels(self._playbook(event.playbook), trigger).inc()
            case ev.RunFinished():
                status = known(event.status, {s.value for s in RunStatus})
                self.runs_finished.labels(self._playbook(event.playbook), status).inc()
                self.run_duration.observe(max(event.duration, 0.0))
            case ev.StepEvent():
                self._step(event)
            case ev.AlertSettled():
                outcome = known(event.outcome, OUTCOMES)
                self.alerts.labels(known(event.source, ALERT_SOURCES), outcome).inc()
            case ev.ScheduleFired():
                outcome = known(event.outcome, SCHEDULE_OUTCOMES)
                self.schedule_fires.labels(outcome).inc(event.count)

    def _step(self, event: ev.StepEvent) -> None:
        match event:
            case ev.ApprovalRequested():
                self._asked.setdefault(event.approval_id, event.at)
                if len(self._asked) > OPEN_GATES:  # closed elsewhere (another replica)
                    del self._asked[next(iter(self._asked))]
            case ev.ApprovalClosed():
                opened = self._asked.pop(event.approval_id, None)
                if opened is not None:
                    self.approval_wait.observe(max((event.at - opened).total_seconds(), 0.0))
            case ev.StepFailed(will_retry=True):
                self.step_retries.inc()
            case ev.StepInterrupted(rerun=True):
                pass  # it runs again: not an end
            case _ if type(event) in STEP_ENDS:
                action = self._action(event)
                self.steps_finished.labels(action, STEP_ENDS[type(event)]).inc()
                duration = getattr(event, "duration", None)
                if duration is not None:
                    self.step_duration.labels(action).observe(max(duration, 0.0))
