#!/usr/bin/env python3
"""kiln's `http` jobs vs Celery: draining a queue of N webhook jobs.

Every job POSTs a small JSON body to a local sink (nginx on loopback,
`return 204`, pinned to CPU 0). kiln runs `kind = "http"` jobs
(`kiln jobs work`, 4 workers), once one request per job and once with
`batch = { size = 100 }` (one request per 100 payloads, counted in jobs);
Celery 5 (prefork pool, concurrency 4, Redis broker at 127.0.0.1:6379
db 9) runs a task that POSTs the same body on a keep-alive
`http.client.HTTPConnection` per worker process (as kiln keeps its
connections alive). Workers are pinned to CPU 1, this script and the
enqueuers to CPU 0.

Each run queues N jobs first (untimed: rows inserted into `kiln_jobs`
for kiln, `apply_async` for Celery), then starts the workers and times
until N jobs are done: kiln's counted as `succeeded` rows in its queue
(recorded after the sink's answer), Celery's as requests nginx counted
(`stub_status`). Rounds are interleaved and the report gives medians.

Usage: benches/jobs_http.py [N] [ROUNDS]   (default 5000 jobs, 3 rounds)
Needs: nginx, taskset, Redis; Celery is installed as jobs_celery.py does.
"""
import os
import sqlite3
import statistics
import subprocess
import sys
import time
import urllib.request

from common import SCRATCH, free_port, fresh_dir, kiln_binary
from jobs_celery import REDIS_URL, WORKERS, ensure_venv, start_group, stop_group, venv_version

POLL_S = 0.05
SIDE_TIMEOUT_S = 180
SIDES = ["kiln", "kiln-batch-100", "celery"]

NGINX_CONF = """worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {dir}/body;
  keepalive_requests 1000000;
  server {{
    listen 127.0.0.1:{port};
    location = /hook {{ return 204; }}
    location = /status {{ stub_status; }}
  }}
}}
"""

BUILD_TOML = """[database]
url = "sqlite://data/bench.db"

[jobs]
workers = {workers}
poll_ms = 20

[[job]]
name = "hook"
kind = "http"
url = "http://127.0.0.1:{port}/hook"

[[job]]
name = "hook-batch"
kind = "http"
url = "http://127.0.0.1:{port}/hook"
batch = {{ size = 100, max_wait_ms = 50 }}
"""

CELERY_TASKS = '''
import http.client
import json
import os

from celery import Celery

app = Celery("celery_tasks", broker=os.environ["BENCH_REDIS"])
app.conf.update(task_ignore_result=True, broker_connection_retry_on_startup=True)

_conn = None
_pid = None


@app.task(name="hook")
def hook(payload):
    global _conn, _pid
    if _conn is None or _pid != os.getpid():
        _conn = http.client.HTTPConnection("127.0.0.1", int(os.environ["BENCH_SINK_PORT"]))
        _pid = os.getpid()
    _conn.request("POST", "/hook", body=json.dumps(payload),
                  headers={"Content-Type": "application/json"})
    response = _conn.getresponse()
    response.read()
    if response.status // 100 != 2:
        raise RuntimeError(f"status {response.status}")
'''

ENQUEUE = '''
import os
import sys

import redis

redis.Redis.from_url(os.environ["BENCH_REDIS"]).flushdb()
from celery_tasks import hook
for n in range(int(sys.argv[1])):
    hook.apply_async(args=({"order": n},))
'''


def sink_requests(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/status") as response:
        lines = response.read().decode().splitlines()
    # "Active connections", "server accepts handled requests", the counts.
    return int(lines[2].split()[2])


def kiln_done(db):
    conn = sqlite3.connect(db, timeout=30)
    try:
        return conn.execute("SELECT count(*) FROM kiln_jobs WHERE state = 'succeeded'").fetchone()[0]
    finally:
        conn.close()


def queue_kiln(db, job, count):
    conn = sqlite3.connect(db, timeout=30)
    with conn:
        conn.execute("DELETE FROM kiln_jobs")
        conn.executemany(
            "INSERT INTO kiln_jobs (job, queue, priority, payload, state, max_attempts, run_at, created_ms) "
            "VALUES (?, 'default', 0, ?, 'ready', 5, 0, 0)",
            [(job, f'{{"order":{n}}}') for n in range(count)])
    conn.close()


def run_side(name, count, ctx, log_path):
    """Queues `count` jobs, starts the workers and times the drain; returns seconds."""
    env = dict(os.environ, BENCH_REDIS=REDIS_URL, BENCH_SINK_PORT=str(ctx["port"]),
               PYTHONPATH=str(ctx["peers"]))
    if name.startswith("kiln"):
        queue_kiln(ctx["db"], "hook-batch" if name == "kiln-batch-100" else "hook", count)
        command = [str(ctx["kiln"]), "jobs", "work", "--root", str(ctx["site"])]
        done = lambda: kiln_done(ctx["db"])  # noqa: E731
        cwd = ctx["site"]
    else:
        subprocess.run([str(ctx["bin"] / "python"), "enqueue.py", str(count)], cwd=ctx["peers"],
                       env=env, check=True, timeout=SIDE_TIMEOUT_S)
        command = [str(ctx["bin"] / "celery"), "-A", "celery_tasks", "worker", "--pool=prefork",
                   f"--concurrency={WORKERS}", "--loglevel=WARNING",
                   "--without-gossip", "--without-mingle", "--without-heartbeat"]
        base = sink_requests(ctx["port"])
        polls = [0]

        def done():
            polls[0] += 1
            return sink_requests(ctx["port"]) - base - polls[0]
        cwd = ctx["peers"]
    with open(log_path, "w") as log:
        started = time.perf_counter()
        process = start_group(command, cwd, env, log)
        try:
            while True:
                value = done()
                now = time.perf_counter()
                if value >= count:
                    return now - started
                if process.poll() is not None:
                    sys.exit(f"{name}: the workers exited early, see {log_path}")
                if now - started > SIDE_TIMEOUT_S:
                    sys.exit(f"{name}: timed out at {value}/{count}, see {log_path}")
                time.sleep(POLL_S)
        finally:
            stop_group(process)


def main():
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    os.sched_setaffinity(0, {0})
    kiln = kiln_binary()
    bin_dir = ensure_venv()
    work = fresh_dir(SCRATCH / "jobs-http")
    port = free_port()
    (work / "nginx.conf").write_text(NGINX_CONF.format(dir=work, port=port))
    nginx = subprocess.Popen(["taskset", "-c", "0", "nginx", "-c", str(work / "nginx.conf")],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peers = work / "peers"
    peers.mkdir()
    (peers / "celery_tasks.py").write_text(CELERY_TASKS)
    (peers / "enqueue.py").write_text(ENQUEUE)
    site = work / "site"
    site.mkdir()
    (site / "data").mkdir()
    (site / "build.toml").write_text(BUILD_TOML.format(workers=WORKERS, port=port))
    subprocess.run([str(kiln), "jobs", "list", "--root", str(site)], check=True, stdout=subprocess.DEVNULL)
    ctx = {"kiln": kiln, "bin": bin_dir, "peers": peers, "site": site, "db": site / "data/bench.db",
           "port": port}
    try:
        for _ in range(50):
            try:
                sink_requests(port)
                break
            except OSError:
                time.sleep(0.1)
        rates = {side: [] for side in SIDES}
        for round_index in range(rounds):
            order = SIDES if round_index % 2 == 0 else list(reversed(SIDES))
            for side in order:
                seconds = run_side(side, count, ctx, work / f"{side}-round{round_index + 1}.log")
                rates[side].append(count / seconds)
                print(f"round {round_index + 1}: {side} {rates[side][-1]:,.0f} jobs/s ({seconds:.2f} s)",
                      file=sys.stderr)
    finally:
        nginx.terminate()
        nginx.wait()
    print(f"\nDraining {count:,} queued webhook jobs (one POST each to nginx on loopback), "
          f"{WORKERS} workers on CPU 1, medians of {rounds} interleaved rounds "
          f"(Celery {venv_version(bin_dir, 'celery')})\n")
    print("| side | median jobs/s | range |")
    print("|---|---|---|")
    for side in SIDES:
        print(f"| {side} | {statistics.median(rates[side]):,.0f} | "
              f"{min(rates[side]):,.0f}–{max(rates[side]):,.0f} |")
    print()
    for side in ["kiln", "kiln-batch-100"]:
        ratios = [k / c for k, c in zip(rates[side], rates["celery"])]
        print(f"{side} ÷ celery: median {statistics.median(ratios):.2f}x "
              f"[{min(ratios):.2f}, {max(ratios):.2f}]")


if __name__ == "__main__":
    main()
