#!/usr/bin/env python3
"""Every `kiln loadtest` scenario against the demo site, on SQLite and on
PostgreSQL, with the stress knees of the catalogue and of static pages at
1 and 2 workers (issue #17).

The demo is built once. For each database, `kiln serve --no-build` runs
with an admin listener, and `kiln loadtest --target ... --metrics ...`
drives it with the demo's own traffic (pages, assets, routes, the
catalogue's product pages as [[loadtest.url]]), reading the server's
metrics every second. With 1 worker the server is pinned to CPU 1 and the
generator to CPU 0; with 2 workers the server may use both CPUs and the
generator shares them (the analysis counts both).

Scenarios (rates chosen for this 2-core machine):
- normal 1,000 req/s, peak 1,000 → 3,000, spike 1,000 with 5,000 for a sixth,
  errors 1,000 with a fifth probes, recovery 1,000 with 10× for a quarter,
  each 20 s; soak 1,000 req/s for SOAK seconds;
- stress of static pages (`/`, `/about/`, their assets) from 2,000 req/s
  in steps of 2,000, and of the catalogue (list and product pages, routes
  with the route cache) from 500 in steps of 500, 5 s a step, p99 ≤ 50 ms,
  at 1 and 2 workers.

Each report's JSON and HTML go under SCRATCH/loadtest-scenarios/; the
table printed gives throughput, p50, p99, errors, the analysis headline
and, for stress, the knee.

Needs: taskset; PostgreSQL at KILN_TEST_POSTGRES_URL (default
postgres://postgres@127.0.0.1:5432/test) for the PostgreSQL half.
Run: python3 benches/loadtest_scenarios.py [SOAK_SECS] [DATABASE...]
     (default 120 s, sqlite postgres); ONLY="stress static" runs the plans
     whose label contains it.
"""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from common import SCRATCH, demo_site, fresh_dir, kiln_binary, wait_for_port

PORT = 18097
ADMIN = 18098
SERVER_CPU = {1: ["taskset", "-c", "1"], 2: []}
CLIENT_CPU = {1: ["taskset", "-c", "0"], 2: []}
PRODUCTS = [f'{{ path = "/catalogue/{n}" }}' for n in range(1, 13)]
CATALOGUE = [
    "loadtest.weights={ pages = 0, assets = 0, routes = 0, urls = 1 }",
    "loadtest.url=[{ path = \"/catalogue/\", weight = 3 }, " + ", ".join(PRODUCTS) + "]",
]
STATIC = ["loadtest.weights={ pages = 1, assets = 2, routes = 0, urls = 0 }"]
DEMO = ["loadtest.url=[" + ", ".join(PRODUCTS) + "]"]


def database_override(database, root):
    if database == "sqlite":
        for stale in (root / "data").glob("*.db*"):
            stale.unlink()
        return []
    admin_url = os.environ.get("KILN_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test")
    schema = f"kiln_bench_scenarios_{os.getpid()}"
    subprocess.run(["psql", "-q", "-X", admin_url, "-c",
                    "SET client_min_messages = warning; "
                    f"DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"],
                   check=True, stdout=subprocess.DEVNULL)
    separator = "&" if "?" in admin_url else "?"
    return [f'database.url="{admin_url}{separator}options=-c%20search_path%3D{schema}"']


def start(kiln, root, workers, overrides):
    args = SERVER_CPU[workers] + [
        str(kiln), "serve", "--root", str(root), "--no-build", "--workers", str(workers),
        "--addr", f"127.0.0.1:{PORT}", "--set", f'server.admin_addr="127.0.0.1:{ADMIN}"',
        "--set", "server.access_log=\"off\"", "--set", "database.slow_query_ms=0"]
    for override in overrides:
        args += ["--set", override]
    server = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port(PORT, server)
    time.sleep(0.5)
    return server


def loadtest(kiln, root, workers, scenario, settings, report):
    args = CLIENT_CPU[workers] + [
        str(kiln), "loadtest", "--root", str(root), "--no-build",
        "--target", f"http://127.0.0.1:{PORT}", "--metrics", f"127.0.0.1:{ADMIN}",
        "--scenario", scenario, "--report", str(report)]
    for setting in settings:
        args += ["--set", setting]
    subprocess.run(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return json.loads((report / "loadtest.json").read_text())


def rows(database, workers, label, report):
    runs = report["runs"]
    # A stress run: the last step that met the objectives, and the one after.
    shown = runs[-2:] if len(runs) > 1 else runs
    for run in shown:
        yield (f"{database:<8} {workers}w {label:<16} {run['name'][:28]:<28} "
               f"{run['throughput']:>8.0f} {run['latency_ms']['p50']:>7.2f} "
               f"{run['latency_ms']['p99']:>8.2f} {run['error_rate'] * 100:>6.2f}%  "
               f"{run['analysis']['headline'][:110]}")
    if "knee" in report:
        yield f"{'':<8}    {label:<16} {report['knee']}"
    if "recovered_after_secs" in runs[-1]:
        yield f"{'':<8}    {label:<16} recovered after {runs[-1]['recovered_after_secs']} s"
    if "drift" in runs[-1]:
        drift = runs[-1]["drift"]
        yield (f"{'':<8}    {label:<16} drift: RSS {drift['rss_mb_per_min']:+.2f} MB/min, "
               f"open files {drift['open_fds_per_min']:+.2f}/min, p99 {drift['p99_ms_per_min']:+.3f} ms/min")


def main():
    soak = int(sys.argv[1]) if len(sys.argv) > 1 else 120
    databases = sys.argv[2:] or ["sqlite", "postgres"]
    kiln = kiln_binary()
    work = SCRATCH / "loadtest-scenarios"
    root = work / "site"
    demo_site(kiln, root)
    common = ["loadtest.connections=64", "loadtest.p99_ms=50", "loadtest.duration_secs=20"]
    plans = [
        (1, "normal", "normal", ["loadtest.rate=1000"] + DEMO),
        (1, "peak", "peak", ["loadtest.rate=1000"] + DEMO),
        (1, "spike", "spike", ["loadtest.rate=1000"] + DEMO),
        (1, "errors", "errors", ["loadtest.rate=1000"] + DEMO),
        (1, "recovery", "recovery", ["loadtest.rate=1000"] + DEMO),
        (1, "soak", "soak", ["loadtest.rate=1000", f"loadtest.soak_secs={soak}"] + DEMO),
    ]
    for workers in (1, 2):
        plans.append((workers, "stress static", "stress",
                      ["loadtest.rate=2000", "loadtest.step_secs=5"] + STATIC))
        plans.append((workers, "stress catalogue", "stress",
                      ["loadtest.rate=500", "loadtest.step_secs=5"] + CATALOGUE))
    only = os.environ.get("ONLY")
    if only:
        plans = [plan for plan in plans if only in plan[1]]
    lines = []
    for database in databases:
        overrides = database_override(database, root)
        for workers, label, scenario, settings in plans:
            server = start(kiln, root, workers, overrides)
            try:
                report_dir = fresh_dir(work / f"{database}-{workers}w-{label.replace(' ', '-')}")
                report = loadtest(kiln, root, workers, scenario, common + settings, report_dir)
            finally:
                server.terminate()
                server.wait()
            for line in rows(database, workers, label, report):
                print(line, flush=True)
                lines.append(line)
    print()
    print(f"{'database':<8} w  {'scenario':<16} {'run':<28} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>8} "
          f"{'errors':>7}  analysis")
    for line in lines:
        print(line)


if __name__ == "__main__":
    main()
