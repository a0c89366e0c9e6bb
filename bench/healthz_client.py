"""``python -m bench.healthz_client URL``: GET URL/healthz one request after another on one
keep-alive connection, from ``{"ready": true}`` until a line arrives on stdin; then print
the latencies (ms) as one JSON list. The parent is bench/prune.py."""

from __future__ import annotations

import http.client
import json
import sys
import threading
import time
import urllib.parse


def main() -> None:
    url = urllib.parse.urlsplit(sys.argv[1])
    conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=30)
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.readline(), stop.set()), daemon=True).start()
    print(json.dumps({"ready": True}), flush=True)
    ms: list[float] = []
    failed = 0
    while not stop.is_set():
        started = time.perf_counter()
        conn.request("GET", "/healthz")
        response = conn.getresponse()
        response.read()
        ms.append((time.perf_counter() - started) * 1000)
        failed += response.status != 200
        time.sleep(0.005)  # a monitor's pace, not a load test
    print(json.dumps({"ms": ms, "failed": failed}), flush=True)


if __name__ == "__main__":
    main()
