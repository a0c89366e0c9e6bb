"""Alert storms over HTTP: 1,000 Alertmanager webhooks in a burst (100 distinct
fingerprints, each sent 10 times), how fast each is answered, and what became of them.

Each scenario gets a Baton of its own, composed as ``baton serve`` composes it: the
engine on a SQLite file (WAL) in a fresh temp folder, the alert router
(``engine.alerts.router``) started, and Baton's aiohttp server on 127.0.0.1 serving
``POST /alerts/{source}`` with a listen backlog of 1024 and ``BATON_ALERT_TOKEN`` set.
Slack is off (no tokens), so no cards are posted or edited: the figures are the webhook's
and the router's own cost. One playbook, ``disk-full``, has an alert trigger on
``alertname: DiskFull`` whose run waits 10 minutes, so it is still active for the whole
scenario and every repeat of its fingerprint attaches to it.

The webhooks come from another process (bench/alerts_client.py), as they would from
Alertmanager with ``group_by: ['...']`` (one alert per notification), each with the
bearer token: all 1,000 at once, and 50 in flight at a time. Both sides take times from
``time.monotonic()`` (CLOCK_MONOTONIC, one clock for the whole system); on a machine with
two cores the client, Baton's event loop and the store's writer thread share them.
Before each burst, 20 warm-up notifications (another alertname, another playbook) go
through every path once.

Counts come from the database after ``alerts.idle()`` (every alert routed) and
``engine.wait_idle()`` (every run parked): rows stored, outcomes, runs started, links and
their repeats. A wrong count raises; figures beside their targets do not.

``BATON_BENCH_ALERTS_PROFILE=N`` prints the N costliest functions of Baton's event loop
during each burst, by cumulative then by own time (cProfile; the writer thread and the
read threads are not in it).
"""

from __future__ import annotations

import cProfile
import io
import os
import pstats
import tempfile
import textwrap
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import sqlalchemy as sa
from pydantic import SecretStr

from bench import alerts_client, served
from bench.common import figure, heading, latencies, write_playbooks
from bot.app import Baton
from bot.settings import Settings
from storage import tables as t

ALERTS = int(os.environ.get("BATON_BENCH_ALERTS", "1000"))
DISTINCT = ALERTS // 10  # 10% distinct fingerprints
WARM_UP = 20
WARM_UP_DISTINCT = 10
BOUNDED = 50  # in flight at a time, in the bounded scenarios
TOKEN = "bench-alert-token-0123456789abcdef"
PLAYBOOK = "disk-full"
ALERTNAME = "DiskFull"
WARM_UP_NAME = "BenchWarmUp"
LOOSE_RATE = f"{max(1000, 2 * DISTINCT)}/1m"  # trigger and global: 100 starts are within
TIGHT_RATE = "20/10m"  # the trigger's, in the held scenario
TIGHT_STARTS = int(TIGHT_RATE.split("/")[0])
REQUEST_TIMEOUT = 60.0
CLIENT_TIMEOUT = 120.0
PROFILE_TOP = int(os.environ.get("BATON_BENCH_ALERTS_PROFILE", "0") or 0)


def disk_playbook(rate: str) -> str:
    return textwrap.dedent(
        f"""\
        name: {PLAYBOOK}
        params:
          host: {{type: string, required: true}}
        triggers:
          - alert:
              source: alertmanager
              match: {{alertname: {ALERTNAME}}}
              params: {{host: "{{{{ alert.labels.instance }}}}"}}
              rate: {rate}
        steps:
          - id: look
            action: wait
            with: {{for: 10m}}
        """
    )


WARM_UP_PLAYBOOK = textwrap.dedent(
    f"""\
    name: warm-up
    triggers:
      - alert: {{source: alertmanager, match: {{alertname: {WARM_UP_NAME}}}}}
    steps:
      - id: look
        action: wait
        with: {{for: 10m}}
    """
)


@dataclass(frozen=True)
class Scenario:
    title: str
    concurrency: int  # 0: all at once
    trigger_rate: str
    global_rate: str
    started: int  # what the counts must be
    attached: int
    held: int

    @property
    def sending(self) -> str:
        if self.concurrency <= 0:
            return f"all {ALERTS:,} at once (asyncio.gather, one aiohttp session)"
        return f"{self.concurrency} in flight at a time (asyncio.Semaphore, one session)"


def scenarios() -> list[Scenario]:
    within = Scenario(
        f"within the limits (trigger and global rate {LOOSE_RATE})",
        0,
        trigger_rate=LOOSE_RATE,
        global_rate=LOOSE_RATE,
        started=DISTINCT,
        attached=ALERTS - DISTINCT,
        held=0,
    )
    # the first TIGHT_STARTS fingerprints routed start runs, their repeats attach; the
    # other fingerprints are held every time they come (no run to attach to)
    tight_attached = TIGHT_STARTS * (ALERTS // DISTINCT - 1)
    tight = Scenario(
        f"over the trigger's limit (rate {TIGHT_RATE}; global {LOOSE_RATE})",
        0,
        trigger_rate=TIGHT_RATE,
        global_rate=LOOSE_RATE,
        started=TIGHT_STARTS,
        attached=tight_attached,
        held=ALERTS - TIGHT_STARTS - tight_attached,
    )
    return [within, replace(within, concurrency=BOUNDED), tight]


@dataclass
class Sent:
    n: int
    sent: float
    acked: float
    status: int
    accepted: int
    ids: list[int] = field(default_factory=list)
    error: str = ""

    @property
    def ms(self) -> float:
        return (self.acked - self.sent) * 1000


class Client(served.ClientProcess):
    """The client process (bench/alerts_client.py): asked for a batch of notifications,
    it sends them and answers with each one's times and answer."""

    async def send(
        self, first: int, count: int, distinct: int, concurrency: int, alertname: str
    ) -> tuple[float, float, list[Sent]]:
        """(first POST, last answer read, each notification's times); every answer must
        be 202 with one alert accepted."""
        ask = {
            "first": first,
            "count": count,
            "distinct": distinct,
            "concurrency": concurrency,
            "alertname": alertname,
        }
        answer = await self.ask(ask)
        sent = [
            Sent(r["n"], r["sent"], r["acked"], r["status"], r["accepted"], r["ids"], r["error"])
            for r in answer["requests"]
        ]
        bad = [s for s in sent if s.error or s.status != 202 or s.accepted != 1 or len(s.ids) != 1]
        if bad:
            raise RuntimeError(
                f"{len(bad)} of {count} webhooks were not answered 202 with one alert "
                f"accepted, e.g. #{bad[0].n}: {bad[0].status} {bad[0].error}"
            )
        return answer["start"], answer["end"], sent


def settings_for(root: Path, scenario: Scenario) -> Settings:
    return served.settings_in(
        root,
        alert_token=SecretStr(TOKEN),
        pagerduty_secret=None,
        alert_rate=scenario.global_rate,
        alert_dedup_window=900.0,
        alert_cancel_on_resolved=False,
        alert_generic_map=None,
        slack_bot_token=None,
        slack_app_token=None,
        slack_signing_secret=None,
        slack_api_url=None,
    )


@asynccontextmanager
async def serving(scenario: Scenario) -> AsyncIterator[tuple[Baton, Client]]:
    """Baton as ``baton serve`` composes it (no Slack) on a free port in a fresh temp
    folder, and the client process pointed at it."""
    with tempfile.TemporaryDirectory(prefix="baton-bench-alerts-") as tmp:
        root = Path(tmp)
        write_playbooks(
            root / "playbooks",
            {PLAYBOOK: disk_playbook(scenario.trigger_rate), "warm-up": WARM_UP_PLAYBOOK},
        )
        async with AsyncExitStack() as stack:
            c = await stack.enter_async_context(
                served.composed(settings_for(root, scenario), slack=False)
            )
            client = await Client.start(
                "bench.alerts_client",
                [f"{c.url}/alerts/alertmanager", "--timeout", str(REQUEST_TIMEOUT)],
                {alerts_client.TOKEN_ENV: TOKEN},
                "the alert client process",
                CLIENT_TIMEOUT,
            )
            stack.push_async_callback(client.close)
            yield c.baton, client


@dataclass
class Counts:
    stored: int
    outcomes: dict[str, int]
    runs: int
    run_statuses: dict[str, int]
    links: int
    linked_fingerprints: int
    repeats: int


async def counts(baton: Baton, ids: list[int]) -> Counts:
    """What the database holds for the burst's alert rows (``ids``) and the playbook."""

    def read(conn: sa.Connection) -> Counts:
        a, r, ar = t.alerts.c, t.runs.c, t.alert_runs.c
        burst = a.id.in_(ids)
        stored = conn.execute(sa.select(sa.func.count()).where(burst)).scalar_one()
        outcomes = conn.execute(
            sa.select(a.outcome, sa.func.count()).where(burst).group_by(a.outcome)
        ).all()
        statuses = conn.execute(
            sa.select(r.status, sa.func.count()).where(r.playbook == PLAYBOOK).group_by(r.status)
        ).all()
        links, fingerprints, repeats = conn.execute(
            sa.select(
                sa.func.count(),
                sa.func.count(sa.distinct(ar.fingerprint)),
                sa.func.coalesce(sa.func.sum(ar.repeats), 0),
            ).where(ar.playbook == PLAYBOOK)
        ).one()
        return Counts(
            stored=int(stored),
            outcomes={str(o): int(n) for o, n in outcomes},
            runs=sum(int(n) for _, n in statuses),
            run_statuses={str(s): int(n) for s, n in statuses},
            links=int(links),
            linked_fingerprints=int(fingerprints),
            repeats=int(repeats),
        )

    return await baton.store.read(read)


def problems_with(scenario: Scenario, c: Counts, unique_ids: int) -> list[str]:
    wrong = []
    if c.stored != ALERTS or unique_ids != ALERTS:
        wrong.append(f"{c.stored} alert rows stored ({unique_ids} distinct ids) for {ALERTS}")
    expected = {"started": scenario.started, "attached": scenario.attached, "held": scenario.held}
    got = {k: v for k, v in c.outcomes.items() if v}
    if got != {k: v for k, v in expected.items() if v}:
        wrong.append(f"outcomes {got}, expected {expected}")
    if c.runs != scenario.started:
        wrong.append(f"{c.runs} {PLAYBOOK} runs, expected {scenario.started}")
    if c.run_statuses.get("waiting", 0) != c.runs:
        wrong.append(f"runs not all waiting (active) to the end: {c.run_statuses}")
    if c.links != scenario.started or c.linked_fingerprints != scenario.started:
        wrong.append(
            f"{c.links} alert_runs links for {c.linked_fingerprints} fingerprints, "
            f"expected {scenario.started} (one run per distinct fingerprint)"
        )
    if c.repeats != scenario.attached:
        wrong.append(f"alert_runs repeats total {c.repeats}, expected {scenario.attached}")
    return wrong


async def run_scenario(scenario: Scenario) -> list[str]:
    async with serving(scenario) as (baton, client):
        alerts = baton.alerts
        assert alerts is not None
        # warm-up: another alertname and playbook, through start, attach and both sends
        await client.send(0, WARM_UP // 2, WARM_UP_DISTINCT, 1, WARM_UP_NAME)
        await client.send(WARM_UP // 2, WARM_UP - WARM_UP // 2, WARM_UP_DISTINCT, 0, WARM_UP_NAME)
        await alerts.idle()
        await baton.engine.wait_idle()
        mode = await served.journal_mode(baton)
        if mode.lower() != "wal":
            raise RuntimeError(f"SQLite journal mode is {mode}, not WAL")

        commits_before = baton.store.commits
        overflows_before = served.listen_overflows()
        profiler = cProfile.Profile() if PROFILE_TOP else None
        if profiler is not None:
            profiler.enable()
        t0, t1, sent = await client.send(0, ALERTS, DISTINCT, scenario.concurrency, ALERTNAME)
        await alerts.idle()  # every 202 is in, so every alert is queued: now all are routed
        routed = time.monotonic()
        await baton.engine.wait_idle()  # every run started has parked on its wait
        if profiler is not None:
            profiler.disable()
        overflows = served.listen_overflows() - overflows_before
        commits = baton.store.commits - commits_before
        ids = [i for s in sent for i in s.ids]
        c = await counts(baton, ids)

        heading(f"{ALERTS:,} webhooks, {scenario.title}: {scenario.sending}")
        latencies("webhook latency", "POST -> 202 read", [s.ms for s in sent], "< 50 ms")
        figure("throughput (first POST -> last 202)", ALERTS / (t1 - t0), "alerts/s")
        figure("wall time: first POST -> last 202", (t1 - t0) * 1000, "ms")
        figure("wall time: first POST -> all routed (alerts.idle())", (routed - t0) * 1000, "ms")
        figure("routing throughput (first POST -> all routed)", ALERTS / (routed - t0), "alerts/s")
        figure("store commits (group commits), burst and routing", commits)
        if overflows >= 0:
            figure("listen queue overflows (SYN retried after 1 s)", str(overflows), target="0")
        figure("alerts stored (rows)", f"{c.stored:,} of {ALERTS:,}", target=f"{ALERTS:,}")
        for outcome, want in (
            ("started", scenario.started),
            ("attached", scenario.attached),
            ("held", scenario.held),
        ):
            figure(f"outcome {outcome}", f"{c.outcomes.get(outcome, 0):,}", target=f"{want:,}")
        others = {k: v for k, v in c.outcomes.items() if k not in ("started", "attached", "held")}
        if others:
            figure("other outcomes", str(others), target="none")
        figure(
            f"runs started ({PLAYBOOK} rows in runs)",
            f"{c.runs} ({', '.join(f'{n} {s}' for s, n in sorted(c.run_statuses.items()))})",
            target=str(scenario.started),
        )
        figure(
            "alert_runs links (distinct fingerprints)",
            f"{c.links} ({c.linked_fingerprints})",
            target=str(scenario.started),
        )
        figure("alert_runs repeats total", f"{c.repeats:,}", target=f"{scenario.attached:,}")
        if profiler is not None:
            out = io.StringIO()
            stats = pstats.Stats(profiler, stream=out)
            stats.sort_stats("cumulative").print_stats(PROFILE_TOP)
            stats.sort_stats("tottime").print_stats(PROFILE_TOP)
            print(textwrap.indent(out.getvalue().strip(), "    "), flush=True)
        wrong = problems_with(scenario, c, len(set(ids)))
        for problem in wrong:
            print(f"  WRONG: {problem}", flush=True)
        return wrong


async def bench() -> None:
    print(
        f"alert benchmarks (POST /alerts/alertmanager on 127.0.0.1, listen backlog "
        f"{served.BACKLOG}, bearer token, SQLite WAL in a temp folder, no Slack (no cards); "
        f"{ALERTS:,} Alertmanager v4 webhooks of one alert each, fingerprints cycling over "
        f"{DISTINCT} distinct ones; playbook {PLAYBOOK} waits 10 min, so repeats attach; "
        f"a fresh Baton per scenario; webhooks sent by a client process of their own, "
        f"{os.cpu_count()} CPUs)",
        flush=True,
    )
    wrong: list[str] = []
    for scenario in scenarios():
        wrong += await run_scenario(scenario)
    if wrong:
        raise RuntimeError("alert counts are wrong:\n  " + "\n  ".join(wrong))


def main() -> None:
    served.run_as_served(bench)


if __name__ == "__main__":
    main()
