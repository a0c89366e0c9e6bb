"""``python -m bench [SUITE ...]`` (all, engine, process, durability, slack, alerts, edge,
nodes, templates, profile, history, prune, metrics, dashboard, fleet, live):
figures beside targets."""

from __future__ import annotations

import argparse
import platform
import sys
import time

SUITES = (
    "engine",
    "process",
    "durability",
    "slack",
    "alerts",
    "edge",
    "nodes",
    "templates",
    "profile",
    "history",
    "prune",
    "metrics",
    "dashboard",
    "fleet",
    "live",
)
ON_REQUEST = ("profile", "history", "prune", "metrics", "dashboard", "fleet", "live")


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Baton benchmarks: figures with their targets, not pass/fail.",
    )
    parser.add_argument(
        "suites",
        nargs="*",
        metavar="{all,engine,process,durability,slack,alerts,edge,nodes,templates,profile,history,"
        "prune,metrics,dashboard,fleet,live}",
        help="engine: in-process engine throughput and memory; process: the baton command "
        "(start-up, one-step run, serve idle RSS); durability: timer lateness, memory and "
        "idle CPU of 10,000 parked runs, resuming them after a restart; slack: signed "
        "/baton run slash commands at POST /slack/events (ack latency, time to the run "
        "card), one at a time and 200 at once; alerts: 1,000 Alertmanager webhooks at "
        "POST /alerts/alertmanager in a burst (10%% distinct fingerprints: latency, routing "
        "time, runs started, repeats attached, alerts held); edge: the worst /healthz "
        "latency while gzip bombs and heavy bodies are in flight; nodes: decision latency from "
        "another node, takeover after kill -9, two replicas on PostgreSQL; templates: /healthz "
        "latency while 20 runs render templates that stop at the template budget; prune: "
        "BATON_RETENTION's prune of 100,000 finished runs in a serving Baton (time, /healthz "
        "p99, runs meanwhile); metrics: GET /metrics with 50 playbooks, and the analytics "
        "beside 100,000 finished runs; profile: cProfile of "
        "the "
        "sequential chain and of parking and resuming runs; history: serve start, GET "
        "/api/runs, a 10-step run and bytes per run, with 200,000 finished runs in the "
        "database against none (python -m bench.history --help for its options); dashboard: "
        "GET / over 100,000 runs and a 200-step run's page with its Graphviz SVG; fleet: a "
        "command on 50 inventory hosts over SSH, 20 at a time, Baton against xargs -P 20 ssh; "
        "live: 100 SSE clients of a run's live logs (delivery delay p50/p95/p99). Default: "
        "engine, process, durability, slack, alerts, edge, nodes and templates (history, "
        "prune, metrics and dashboard fill big databases, fleet and live start an sshd and "
        "100 clients: ask for them).",
    )
    args = parser.parse_args()
    unknown = [s for s in args.suites if s not in ("all", *SUITES)]
    if unknown:
        parser.error(f"unknown suite(s) {', '.join(unknown)}; choose from all, {', '.join(SUITES)}")
    chosen = args.suites or [s for s in SUITES if s not in ON_REQUEST]
    if "all" in chosen:
        chosen = list(SUITES)
    print(
        f"Baton bench: Python {platform.python_version()} on {platform.machine()}, "
        f"{platform.system()} ({sys.executable})",
        flush=True,
    )
    t0 = time.perf_counter()
    for suite in SUITES:
        if suite not in chosen:
            continue
        print(flush=True)
        if suite == "engine":
            from bench import engine

            engine.main()
        elif suite == "process":
            from bench import process

            process.main()
        elif suite == "durability":
            from bench import durability

            durability.main()
        elif suite == "slack":
            from bench import slack

            slack.main()
        elif suite == "alerts":
            from bench import alerts

            alerts.main()
        elif suite == "edge":
            from bench import edge

            edge.main()
        elif suite == "nodes":
            from bench import nodes

            nodes.main()
        elif suite == "prune":
            from bench import prune

            prune.main()
        elif suite == "templates":
            from bench import templates

            templates.main()
        elif suite == "profile":
            from bench import profile

            profile.main()
        elif suite == "metrics":
            from bench import metrics

            metrics.main()
        elif suite == "history":
            from bench import history

            history.main([])
        elif suite == "dashboard":
            from bench import dashboard

            dashboard.main()
        elif suite == "fleet":
            from bench import fleet

            fleet.main()
        elif suite == "live":
            from bench import live

            live.main()
    print(f"\nbench done in {time.perf_counter() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
