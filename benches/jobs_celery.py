#!/usr/bin/env python3
"""kiln's background jobs vs Celery and RQ: draining a queue of N jobs.

Every side runs the same job: one `UPDATE counters SET value = value + 1`
on a SQLite file (WAL, synchronous=NORMAL, as kiln opens its pool). The
peers commit each job on its own. kiln keeps its queue in that same
database (`kiln jobs work`, 4 workers) and is measured twice: as it runs
by default, where jobs claimed together share a commit, each in its own
savepoint (`jobs.commit_group = 32`: group commit; a job's writes and its
success still commit or roll back as one), and as `kiln-commit-1`
(`jobs.commit_group = 1`), a transaction per job like the peers; Celery 5 (prefork pool,
concurrency 4) and RQ (`rq worker-pool -n 4`) take theirs from Redis
(127.0.0.1:6379, db 9, flushed before every run), and each of their worker
processes opens its own SQLite connection. RQ is measured twice: with its
default worker, which forks a work horse per job (so a connection per job),
and with SimpleWorker, which runs jobs in the worker process.

Each run queues N jobs first (untimed: rows inserted into `kiln_jobs`
directly for kiln, `apply_async` / `enqueue_many` for the peers), then
starts the workers and times until the counter reads N, polling it every
50 ms. Workers are pinned to CPU 1 (`taskset -c 1`), this script and the
enqueuers to CPU 0; Redis runs wherever it already runs. Rounds are
interleaved (kiln, celery, rq, rq-simple, then the reverse order) and the
report gives medians. "jobs/s" counts from the workers' start, so it
includes their startup; "steady jobs/s" counts from the first finished job.

Usage: benches/jobs_celery.py [N] [ROUNDS]   (default 2000 jobs, 3 rounds)
Needs: taskset, Redis at 127.0.0.1:6379; Celery, redis-py and RQ are
installed into a venv at /var/tmp/kiln-celery-venv on first use.
"""
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import SCRATCH, fresh_dir, kiln_binary

VENV = Path(os.environ.get("KILN_CELERY_VENV", "/var/tmp/kiln-celery-venv"))
REDIS_URL = os.environ.get("KILN_BENCH_REDIS", "redis://127.0.0.1:6379/9")
WORKER_CPU = ["taskset", "-c", "1"]
WORKERS = 4
POLL_S = 0.05
SIDE_TIMEOUT_S = 120
# ONLY=kiln,celery runs a subset (RQ's forking worker takes ~45 s a round).
SIDES = [side for side in ["kiln", "kiln-commit-1", "celery", "rq", "rq-simple"]
         if side in os.environ.get("ONLY", "kiln,kiln-commit-1,celery,rq,rq-simple").split(",")]

BUILD_TOML = f"""[database]
url = "sqlite://data/bench.db"

[jobs]
workers = {WORKERS}
poll_ms = 20

[[job]]
name = "noop"
kind = "sql"
exec = ["UPDATE counters SET value = value + 1 WHERE name = :counter"]
"""

MIGRATION = """CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT INTO counters (name, value) VALUES ('jobs', 0);
"""

# One connection per process (re-opened after a fork), set up as kiln's pool
# sets up its connections; one transaction and commit per job.
SQLITE_JOB = '''
import os
import sqlite3

_conn = None
_pid = None


def bump(counter):
    global _conn, _pid
    if _conn is None or _pid != os.getpid():
        _conn = sqlite3.connect(os.environ["BENCH_DB"], timeout=30)
        _conn.execute("PRAGMA synchronous = NORMAL")
        _pid = os.getpid()
    _conn.execute("UPDATE counters SET value = value + 1 WHERE name = ?", (counter,))
    _conn.commit()
'''

CELERY_TASKS = '''
import os

from celery import Celery

import sqlite_job

app = Celery("celery_tasks", broker=os.environ["BENCH_REDIS"])
app.conf.update(task_ignore_result=True, broker_connection_retry_on_startup=True)


@app.task(name="bump")
def bump(counter):
    sqlite_job.bump(counter)
'''

# Runs under the venv's Python, on CPU 0: `flush`, or `celery N` / `rq N`.
ENQUEUE = '''
import os
import sys

import redis

connection = redis.Redis.from_url(os.environ["BENCH_REDIS"])
connection.flushdb()
if sys.argv[1] == "celery":
    from celery_tasks import bump
    for _ in range(int(sys.argv[2])):
        bump.apply_async(args=("jobs",))
elif sys.argv[1] == "rq":
    from rq import Queue
    queue = Queue(connection=connection)
    count = int(sys.argv[2])
    for start in range(0, count, 500):
        batch = [Queue.prepare_data("sqlite_job.bump", ("jobs",)) for _ in range(min(500, count - start))]
        queue.enqueue_many(batch)
    assert len(queue) == count, len(queue)
'''


def ensure_venv():
    python = VENV / "bin/python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    # kombu's Redis transport imports `packaging` without depending on it.
    probe = "import celery, redis, rq, packaging"
    if subprocess.run([str(python), "-c", probe], capture_output=True).returncode:
        subprocess.run([str(python), "-m", "pip", "install", "-q", "celery", "redis", "rq", "packaging"],
                       check=True)
    return VENV / "bin"


def venv_version(bin_dir, module):
    return subprocess.run([str(bin_dir / "python"), "-c", f"import {module}; print({module}.__version__)"],
                          capture_output=True, text=True).stdout.strip()


def create_peer_db(path):
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.executescript(MIGRATION)
    conn.close()


def reset_counter(db):
    conn = sqlite3.connect(db, timeout=30)
    with conn:
        conn.execute("UPDATE counters SET value = 0 WHERE name = 'jobs'")
    conn.close()


def read_counter(conn):
    return conn.execute("SELECT value FROM counters WHERE name = 'jobs'").fetchone()[0]


def start_group(command, cwd, env, log):
    """Starts `command` pinned to CPU 1 in a process group of its own."""
    return subprocess.Popen(WORKER_CPU + command, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def stop_group(process):
    """SIGTERM to the whole group, SIGKILL after 10 s."""
    for sig, grace in [(signal.SIGTERM, 10), (signal.SIGKILL, 5)]:
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            continue
        # The leader is gone; make sure its children are too.
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        return


def kiln_setup(kiln, site):
    """The site, migrated by one `kiln jobs work` run; returns its database."""
    fresh_dir(site)
    (site / "migrations").mkdir()
    (site / "data").mkdir()
    (site / "build.toml").write_text(BUILD_TOML)
    (site / "migrations/0001_init.sql").write_text(MIGRATION)
    db = site / "data/bench.db"
    subprocess.run([str(kiln), "jobs", "list", "--root", str(site)], check=True, stdout=subprocess.DEVNULL)
    with open(site.parent / "kiln-setup.log", "w") as log:
        process = start_group([str(kiln), "jobs", "work", "--root", str(site)], site, os.environ, log)
        try:
            deadline = time.time() + 30
            while True:
                if process.poll() is not None:
                    sys.exit(f"kiln jobs work exited early, see {log.name}")
                if time.time() > deadline:
                    sys.exit("kiln jobs work did not migrate the site in 30 s")
                conn = sqlite3.connect(db, timeout=30)
                try:
                    if read_counter(conn) == 0:
                        break
                except sqlite3.Error:
                    pass
                finally:
                    conn.close()
                time.sleep(0.1)
        finally:
            stop_group(process)
    return db


def enqueue_kiln(db, count):
    conn = sqlite3.connect(db, timeout=30)
    now_ms = int(time.time() * 1000)
    with conn:
        conn.execute("DELETE FROM kiln_jobs")
        conn.executemany(
            "INSERT INTO kiln_jobs (job, queue, priority, payload, state, max_attempts, run_at, created_ms) "
            "VALUES ('noop', 'default', 0, '{\"counter\":\"jobs\"}', 'ready', 5, 0, ?)",
            [(now_ms,)] * count)
        conn.execute("UPDATE counters SET value = 0 WHERE name = 'jobs'")
    conn.close()


def run_side(name, count, ctx, log_path):
    """Queues `count` jobs, starts the workers and times the drain.
    Returns (seconds to all done, seconds to the first done, final count)."""
    is_kiln = name.startswith("kiln")
    db = ctx["kiln_db"] if is_kiln else ctx["peer_db"]
    env = dict(os.environ, BENCH_DB=str(ctx["peer_db"]), BENCH_REDIS=REDIS_URL, PYTHONPATH=str(ctx["peers"]))
    if is_kiln:
        enqueue_kiln(db, count)
        command = [str(ctx["kiln"]), "jobs", "work", "--root", str(ctx["site"])]
        if name == "kiln-commit-1":
            command += ["--set", "jobs.commit_group=1"]
    else:
        reset_counter(db)
        kind = "celery" if name == "celery" else "rq"
        subprocess.run([str(ctx["bin"] / "python"), "enqueue.py", kind, str(count)],
                       cwd=ctx["peers"], env=env, check=True, timeout=SIDE_TIMEOUT_S)
        if name == "celery":
            command = [str(ctx["bin"] / "celery"), "-A", "celery_tasks", "worker", "--pool=prefork",
                       f"--concurrency={WORKERS}", "--loglevel=WARNING",
                       "--without-gossip", "--without-mingle", "--without-heartbeat"]
        else:
            command = [str(ctx["bin"] / "rq"), "worker-pool", "-n", str(WORKERS), "-u", REDIS_URL,
                       "-l", "WARNING"]
            if name == "rq-simple":
                command += ["-w", "rq.worker.SimpleWorker"]
    conn = sqlite3.connect(db, timeout=30)
    with open(log_path, "w") as log:
        started = time.perf_counter()
        process = start_group(command, ctx["site"] if is_kiln else ctx["peers"], env, log)
        first = None
        try:
            while True:
                value = read_counter(conn)
                now = time.perf_counter()
                if value > 0 and first is None:
                    first = now - started
                if value >= count:
                    return now - started, first, value
                if process.poll() is not None:
                    sys.exit(f"{name}: the workers exited early (code {process.returncode}), see {log_path}")
                if now - started > SIDE_TIMEOUT_S:
                    print(f"{name}: timed out after {SIDE_TIMEOUT_S} s at {value}/{count} jobs, see {log_path}",
                          file=sys.stderr)
                    return None, first, value
                time.sleep(POLL_S)
        finally:
            stop_group(process)
            conn.close()


def main():
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    os.sched_setaffinity(0, {0})
    kiln = kiln_binary()
    if not Path(kiln).is_file():
        sys.exit(f"jobs_celery.py: no kiln binary at {kiln}")
    bin_dir = ensure_venv()
    work = fresh_dir(SCRATCH / "jobs-celery")
    peers = work / "peers"
    peers.mkdir()
    (peers / "sqlite_job.py").write_text(SQLITE_JOB)
    (peers / "celery_tasks.py").write_text(CELERY_TASKS)
    (peers / "enqueue.py").write_text(ENQUEUE)
    peer_db = peers / "bench.db"
    create_peer_db(peer_db)
    site = work / "site"
    ctx = {"kiln": kiln, "bin": bin_dir, "peers": peers, "peer_db": peer_db, "site": site,
           "kiln_db": kiln_setup(kiln, site)}

    totals = {side: [] for side in SIDES}
    steady = {side: [] for side in SIDES}
    firsts = {side: [] for side in SIDES}
    for round_index in range(rounds):
        order = SIDES if round_index % 2 == 0 else list(reversed(SIDES))
        for side in order:
            log_path = work / f"{side}-round{round_index + 1}.log"
            seconds, first, value = run_side(side, count, ctx, log_path)
            if value != count and seconds is not None:
                print(f"{side}: the counter reads {value}, not {count} (a job ran twice?)", file=sys.stderr)
            if seconds is None:
                totals[side].append(0.0)
                steady[side].append(0.0)
            else:
                totals[side].append(count / seconds)
                steady[side].append((count - 1) / max(seconds - first, 1e-3))
            firsts[side].append(first if first is not None else float("nan"))
            print(f"round {round_index + 1}: {side} {totals[side][-1]:,.0f} jobs/s "
                  f"({seconds if seconds is not None else float('nan'):.2f} s, first job after "
                  f"{firsts[side][-1] * 1000:.0f} ms)", file=sys.stderr)

    versions = (f"Celery {venv_version(bin_dir, 'celery')}, RQ {venv_version(bin_dir, 'rq')}, "
                f"redis-py {venv_version(bin_dir, 'redis')}")
    print(f"\nDraining {count:,} queued jobs (one SQLite UPDATE + commit each), {WORKERS} workers "
          f"on CPU 1, medians of {rounds} interleaved rounds ({versions})\n")
    print("| side | median jobs/s | range | median steady jobs/s | median first job, ms |")
    print("|---|---|---|---|---|")
    for side in SIDES:
        print(f"| {side} | {statistics.median(totals[side]):,.0f} | "
              f"{min(totals[side]):,.0f}–{max(totals[side]):,.0f} | "
              f"{statistics.median(steady[side]):,.0f} | {statistics.median(firsts[side]) * 1000:,.0f} |")
    print()
    for peer in [side for side in SIDES if side != "kiln"]:
        ratios = [k / p if p else float("inf") for k, p in zip(totals["kiln"], totals[peer])]
        steady_ratios = [k / p if p else float("inf") for k, p in zip(steady["kiln"], steady[peer])]
        print(f"kiln ÷ {peer}: jobs/s median {statistics.median(ratios):.2f}x "
              f"[{min(ratios):.2f}, {max(ratios):.2f}], steady median {statistics.median(steady_ratios):.2f}x")


if __name__ == "__main__":
    main()
