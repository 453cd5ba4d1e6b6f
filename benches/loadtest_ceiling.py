#!/usr/bin/env python3
"""The load generator's own ceiling: kiln loadtest against wrk (issue #17).

One kiln server (1 worker) serves the 2 KB hashed asset of
benches/serve_static.py's site, pinned to CPU 1. The two generators take
turns on CPU 0, each with 32 keep-alive connections, for SECONDS a round:

- wrk `-t1 -c32` (closed model: each connection sends its next request
  when the last answer arrives);
- `kiln loadtest --target` asked for 400,000 req/s, far more than the
  server can answer, with only that URL in the mix and no revalidation.
  Every connection is then always behind schedule and sends back to back,
  so its throughput is the most the generator can drive.

The server is the same for both, so the side that gets more requests per
second through it has the faster client. The ratio is kiln ÷ wrk, median
of the rounds, sides interleaved. The goal is ≥ 1.0.

Needs: wrk (Debian package).
Run: python3 benches/loadtest_ceiling.py [ROUNDS] [SECONDS]   (default 5 rounds of 5 s)
"""
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import serve_static
from common import SCRATCH, fresh_dir, kiln_binary, wait_for_port
from serve_static import CLIENT_CPU

PORT = 18095


def wrk_rate(path, seconds):
    out = subprocess.run(
        CLIENT_CPU + ["wrk", "-t1", "-c32", f"-d{seconds}s", "-H", "Accept-Encoding: br, gzip",
                      f"http://127.0.0.1:{PORT}{path}"],
        check=True, capture_output=True, text=True).stdout
    return float(out.split("Requests/sec:")[1].split()[0])


def kiln_rate(kiln, root, path, seconds):
    with tempfile.TemporaryDirectory() as report:
        settings = [
            "loadtest.rate=400000", "loadtest.connections=32", f"loadtest.duration_secs={seconds}",
            "loadtest.revalidate=0", "loadtest.p99_ms=1000000", "loadtest.error_rate=1",
            "loadtest.weights={ pages = 0, assets = 0, routes = 0, urls = 1 }",
            f'loadtest.url=[{{ path = "{path}" }}]',
        ]
        args = [str(kiln), "loadtest", "--root", str(root), "--no-build",
                "--target", f"http://127.0.0.1:{PORT}", "--report", report]
        for setting in settings:
            args += ["--set", setting]
        subprocess.run(CLIENT_CPU + args, check=True, stdout=subprocess.DEVNULL)
        run = json.loads((Path(report) / "loadtest.json").read_text())["runs"][0]
        if run["error_rate"] > 0:
            sys.exit(f"loadtest_ceiling.py: kiln loadtest saw errors: {run['outcomes']}")
        return run["throughput"]


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    seconds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    kiln = kiln_binary()
    serve_static.KILN = kiln
    work = fresh_dir(SCRATCH / "loadtest-ceiling")
    root = work / "site"
    root.mkdir()
    path = serve_static.make_site(root)["2KB"]
    serve_static.PORTS["ceiling"] = PORT
    server = serve_static.start_kiln(root, kiln, "ceiling")
    try:
        wait_for_port(PORT, server)
        rates = {"kiln": [], "wrk": []}
        for round_index in range(rounds):
            order = ["kiln", "wrk"] if round_index % 2 == 0 else ["wrk", "kiln"]
            for side in order:
                rate = kiln_rate(kiln, root, path, seconds) if side == "kiln" else wrk_rate(path, seconds)
                rates[side].append(rate)
                print(f"round {round_index + 1}: {side} {rate:,.0f} req/s", file=sys.stderr)
        ratios = [k / w for k, w in zip(rates["kiln"], rates["wrk"])]
        print("| generator | median req/s | range |")
        print("|---|---|---|")
        for side in ("kiln", "wrk"):
            print(f"| {side} | {statistics.median(rates[side]):,.0f} | "
                  f"{min(rates[side]):,.0f}–{max(rates[side]):,.0f} |")
        print(f"\nkiln loadtest ÷ wrk: median {statistics.median(ratios):.3f} "
              f"[{min(ratios):.3f}, {max(ratios):.3f}] over {rounds} rounds of {seconds} s")
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
