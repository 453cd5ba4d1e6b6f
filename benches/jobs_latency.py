#!/usr/bin/env python3
"""Page latency while kiln's workers run 1,000 jobs a second.

The demo site is served by `kiln serve --no-build` (pinned to CPU 1) with
one extra job, `bench-note`, a `sql` job that inserts a row. wrk2 (open
model, corrected for coordinated omission; pinned to CPU 0) asks for a
static page, a cached dynamic page and a JSON route at a fixed rate; its
p50/p99 are compared between two conditions, interleaved round by round:

- idle: no jobs;
- jobs: a feeder (CPU 0) inserts 50 jobs into `kiln_jobs` every 50 ms
  (1,000 jobs/s), which the server's workers claim and run while they
  serve; the feeder checks they keep up.

The goal (issue #18): p99 with jobs within 1.2x of idle.

Usage: benches/jobs_latency.py [SECONDS] [ROUNDS] [RATE]   (15 s, 3 rounds, 2000 req/s)
Needs: wrk2 (WRK2, default /var/tmp/wrk2/wrk).
"""
import os
import sqlite3
import statistics
import subprocess
import sys
import threading
import time

from common import SCRATCH, demo_site, free_port, kiln_binary, wait_for_port
from latency_accuracy import CLIENT_CPU, SERVER_CPU, WRK2, wrk_percentiles

PATHS = ["/about/", "/catalogue/42", "/api/products/42"]
JOBS_PER_S = 1000
FEED_EVERY_S = 0.05
BENCH_JOB = """
[[job]]
name = "bench-note"
kind = "sql"
exec = ["INSERT INTO bench_notes (n) VALUES (:n)"]
"""
MIGRATION = "CREATE TABLE bench_notes (id INTEGER PRIMARY KEY, n INTEGER NOT NULL);\n"


def feed(db, stop, fed):
    """Inserts JOBS_PER_S jobs a second until `stop` is set."""
    conn = sqlite3.connect(db, timeout=30)
    per_tick = int(JOBS_PER_S * FEED_EVERY_S)
    next_at = time.perf_counter()
    n = 0
    while not stop.is_set():
        with conn:
            conn.executemany(
                "INSERT INTO kiln_jobs (job, queue, priority, payload, state, max_attempts, run_at, created_ms) "
                "VALUES ('bench-note', 'default', 0, ?, 'ready', 5, 0, 0)",
                [(f'{{"n":{n + i}}}',) for i in range(per_tick)])
        n += per_tick
        fed[0] = n
        next_at += FEED_EVERY_S
        time.sleep(max(0.0, next_at - time.perf_counter()))
    conn.close()


def wrk2(port, path, seconds, rate):
    args = [WRK2, "-t1", "-c32", f"-d{seconds}s", "--latency", "-R", str(rate),
            f"http://127.0.0.1:{port}{path}"]
    out = subprocess.run(CLIENT_CPU + args, check=True, capture_output=True, text=True).stdout
    return wrk_percentiles(out)


def main():
    seconds = int(sys.argv[1]) if len(sys.argv) > 1 else 15
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    rate = int(sys.argv[3]) if len(sys.argv) > 3 else 2000
    if not os.path.exists(WRK2):
        sys.exit(f"jobs_latency.py: no wrk2 at {WRK2} (build giltene/wrk2, or set WRK2)")
    os.sched_setaffinity(0, {0})
    kiln = kiln_binary()
    root = SCRATCH / "jobs-latency"
    demo_site(kiln, root)
    with open(root / "build.toml", "a") as config:
        config.write(BENCH_JOB)
    (root / "migrations/0099_bench_notes.sql").write_text(MIGRATION)
    port = free_port()
    log = open(root / "server.log", "w")
    server = subprocess.Popen(SERVER_CPU + [str(kiln), "serve", "--root", str(root),
                                            "--addr", f"127.0.0.1:{port}"],
                              stdout=log, stderr=subprocess.STDOUT)
    db = root / "data/site.db"
    results = {(path, condition): [] for path in PATHS for condition in ["idle", "jobs"]}
    try:
        wait_for_port(port, server, 120)
        for path in PATHS:
            wrk2(port, path, 3, rate)  # warm: caches filled, connections opened
        for round_index in range(rounds):
            conditions = ["idle", "jobs"] if round_index % 2 == 0 else ["jobs", "idle"]
            for condition in conditions:
                for path in PATHS:
                    stop = threading.Event()
                    fed = [0]
                    feeder = None
                    if condition == "jobs":
                        feeder = threading.Thread(target=feed, args=(db, stop, fed))
                        feeder.start()
                    result = wrk2(port, path, seconds, rate)
                    if feeder:
                        stop.set()
                        feeder.join()
                        conn = sqlite3.connect(db, timeout=30)
                        behind = conn.execute(
                            "SELECT count(*) FROM kiln_jobs WHERE state IN ('ready', 'running')").fetchone()[0]
                        conn.close()
                        print(f"  fed {fed[0]:,} jobs, {behind:,} not yet run at the end", file=sys.stderr)
                    results[(path, condition)].append(result)
                    print(f"round {round_index + 1} {condition} {path}: p99 {result['p99']:.2f} ms",
                          file=sys.stderr)
    finally:
        server.terminate()
        server.wait()
        log.close()
    print(f"\nPage latency at {rate} req/s (wrk2 -t1 -c32, {seconds} s), idle vs {JOBS_PER_S:,} jobs/s "
          f"run by the same server; medians of {rounds} interleaved rounds\n")
    print("| path | p99 idle, ms | p99 with jobs, ms | ratio |")
    print("|---|---|---|---|")
    for path in PATHS:
        idle = statistics.median(r["p99"] for r in results[(path, "idle")])
        busy = statistics.median(r["p99"] for r in results[(path, "jobs")])
        print(f"| {path} | {idle:.2f} | {busy:.2f} | {busy / idle:.2f}x |")


if __name__ == "__main__":
    main()
