#!/usr/bin/env python3
"""Dynamic routes under wrk: the demo site's routes at pool sizes 1, 4 and
16, beside a static page of similar size on the same server.

kiln runs with one worker pinned to CPU 1 (SQLite calls run on its blocking
pool, on the same CPU); wrk runs `-t1 -c32` pinned to CPU 0. Rounds are
interleaved (every case at every pool size, then the next round) and the
report gives medians of req/s and of p99 latency.

Cases: `/catalogue/42` (a product page from the route cache: two indexed
queries and a template render on a miss, brotli made once per entry), the
uncached read `/api/products/42` (one SQLite query per request, JSON), and
the static `/about/` page (precompressed, from memory) as the yardstick.

Usage: benches/dynamic_routes.py [ROUNDS] [SECONDS]   (default 3 rounds of 5 s)
Needs: wrk (Debian package).
Goal (issue #6): the cached dynamic page >= 0.8x the static page's req/s.
"""
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import REPO, SCRATCH, fresh_dir, kiln_binary
from serve_static import CLIENT_CPU, SERVER_CPU, wrk
from common import wait_for_port

PORT = 18090
POOL_SIZES = [1, 4, 16]
CASES = {
    "cached page": "/catalogue/42",
    "uncached JSON": "/api/products/42",
    "static page": "/about/",
}
HEADERS = ["Accept-Encoding: br, gzip"]


def make_site(root):
    """The demo site, copied without any local database, built once."""
    fresh_dir(root)
    for name in ["assets", "templates", "migrations"]:
        shutil.copytree(REPO / name, root / name)
    (root / "data").mkdir()
    for data in (REPO / "data").iterdir():
        if data.suffix in (".toml", ".json"):
            shutil.copy(data, root / "data" / data.name)
    shutil.copy(REPO / "build.toml", root / "build.toml")
    subprocess.run([str(KILN), "build", "--root", str(root)], check=True, stdout=subprocess.DEVNULL)


def start(root, pool):
    return subprocess.Popen(
        SERVER_CPU + [str(KILN), "serve", "--root", str(root), "--no-build", "--workers", "1",
                      "--addr", f"127.0.0.1:{PORT}", "--set", f"database.max_size={pool}",
                      "--set", f"database.min_idle={pool}", "--set", "database.slow_query_ms=0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main():
    global KILN
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    seconds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    KILN = kiln_binary()
    root = SCRATCH / "dynamic-site"
    make_site(root)
    results = {}
    for _ in range(rounds):
        for pool in POOL_SIZES:
            server = start(root, pool)
            try:
                wait_for_port(PORT)
                time.sleep(0.5)
                for case, path in CASES.items():
                    result = wrk(PORT, path, seconds, HEADERS)
                    if result["errors"]:
                        sys.exit(f"{case} at pool {pool}: {result['errors']} error responses")
                    results.setdefault((case, pool), []).append(result)
            finally:
                server.terminate()
                server.wait()
    print(f"kiln dynamic routes, {rounds} rounds of {seconds} s, wrk -t1 -c32, medians")
    print(f"{'case':<14} {'pool':>4} {'req/s':>9} {'p99 ms':>7} {'vs static':>9}")
    for pool in POOL_SIZES:
        static = statistics.median(r["rps"] for r in results[("static page", pool)])
        for case in CASES:
            runs = results[(case, pool)]
            rps = statistics.median(r["rps"] for r in runs)
            p99 = statistics.median(r["p99_ms"] for r in runs)
            print(f"{case:<14} {pool:>4} {rps:>9.0f} {p99:>7.2f} {rps / static:>8.2f}x")


if __name__ == "__main__":
    main()
