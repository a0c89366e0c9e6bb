"""``python -m bench [all|engine|process|profile]``: print figures beside their targets."""

from __future__ import annotations

import argparse
import platform
import sys
import time

SUITES = ("engine", "process", "profile")


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Baton benchmarks: figures with their targets, not pass/fail.",
    )
    parser.add_argument(
        "suites",
        nargs="*",
        metavar="{all,engine,process,profile}",
        help="engine: in-process engine throughput and memory; process: the baton command "
        "(start-up, one-step run, serve idle RSS); profile: cProfile of the sequential "
        "chain. Default: engine and process.",
    )
    args = parser.parse_args()
    unknown = [s for s in args.suites if s not in ("all", *SUITES)]
    if unknown:
        parser.error(f"unknown suite(s) {', '.join(unknown)}; choose from all, {', '.join(SUITES)}")
    chosen = args.suites or ["engine", "process"]
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
        elif suite == "profile":
            from bench import profile

            profile.main()
    print(f"\nbench done in {time.perf_counter() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
