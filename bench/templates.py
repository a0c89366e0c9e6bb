"""``python -m bench templates``: ``/healthz`` latency while heavy templates render.

Baton is composed as ``baton serve`` composes it (bench/served.py). A client process
asks ``GET /healthz`` back to back while the engine starts 20 runs of a playbook whose
step renders 100 million loop iterations (each render stops at the template budget); the
figures are the client's latencies while those runs are in flight, and how long a heavy
render takes before it is stopped.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import sqlalchemy as sa

from bench.served import composed, run_as_served, settings_in
from engine.runs.requests import RunRequest
from storage import tables as t

RUNS = 20
LOOPS = "{% for i in range(10000) %}{% for j in range(10000) %}.{% endfor %}{% endfor %}"
HEAVY = f"""
name: heavy
steps:
  - id: loops
    action: log
    with: {{message: "{LOOPS}"}}
"""
CLIENT = textwrap.dedent(
    """
    import json, sys, time, urllib.request
    url, stop = sys.argv[1], sys.argv[2]
    print(json.dumps({"ready": True}), flush=True)
    out = []
    while True:
        t0 = time.perf_counter()
        with urllib.request.urlopen(url + "/healthz", timeout=30) as resp:
            resp.read()
        out.append(time.perf_counter() - t0)
        try:
            open(stop).close()
            break
        except FileNotFoundError:
            pass
    print(json.dumps(out), flush=True)
    """
)


async def bench() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "playbooks").mkdir()
        (root / "playbooks" / "heavy.yaml").write_text(HEAVY)
        stop = root / "stop"
        async with composed(settings_in(root), slack=False) as served:
            engine = served.baton.engine
            client = await asyncio.create_subprocess_exec(
                sys.executable, "-c", CLIENT, served.url, str(stop), stdout=subprocess.PIPE
            )
            assert client.stdout is not None
            await client.stdout.readline()  # ready
            t0 = time.perf_counter()
            ids = [
                await engine.start_run(RunRequest(playbook="heavy", requested_by="bench"))
                for _ in range(RUNS)
            ]
            for run_id in ids:
                await engine.wait_for(run_id)
            elapsed = time.perf_counter() - t0
            stop.touch()
            latencies = json.loads(await client.stdout.readline())
            await client.wait()
            rows = await served.baton.store.all(
                sa.select(t.steps.c.error).where(t.steps.c.run_id.in_(ids))
            )
            stopped = sum("template budget exceeded" in (r.error or "") for r in rows)
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99) - 1] if len(latencies) >= 100 else latencies[-1]
    print(f"templates: {RUNS} runs of a step rendering 100 million loop iterations")
    print(
        f"  {stopped} of {RUNS} steps failed with the template budget's reason; all runs "
        f"ended in {elapsed * 1000:.0f} ms ({elapsed / RUNS * 1000:.0f} ms per run)"
    )
    print(
        f"  /healthz meanwhile ({len(latencies)} asked back to back): median "
        f"{statistics.median(latencies) * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, worst "
        f"{latencies[-1] * 1000:.1f} ms (target: worst < 100 ms)"
    )


def main() -> None:
    run_as_served(bench)


if __name__ == "__main__":
    main()
