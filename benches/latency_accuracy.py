#!/usr/bin/env python3
"""Latency accuracy under a stall: kiln loadtest against wrk2 and wrk
(issue #17).

One kiln server (1 worker, pinned to CPU 1) serves the demo's /about/
page. Each generator (pinned to CPU 0) runs for SECONDS at RATE req/s
over 32 connections, and at 40% of the run the server is stopped with
SIGSTOP for one second, then continued: every request due in that second
waits for it.

- wrk2 `-R RATE` (open model, corrected for coordinated omission),
- `kiln loadtest --target` (open model, latency from the intended send
  time when a connection is held up),
- wrk (closed model: each connection waits for its answer before sending
  the next request, so the stall delays only the 32 requests in flight
  and the percentiles hide it).

A second of stall in a run of SECONDS at a constant rate puts about
1/SECONDS of the requests behind it, so the open-model p99 must show
hundreds of milliseconds. The ratio kiln ÷ wrk2 of p90, p99 and p99.9
(medians of ROUNDS rounds, tools interleaved) is the accuracy; the goal
is p99 within 10%.

Needs: wrk (Debian), wrk2 built from source (WRK2 names the binary,
default /var/tmp/wrk2/wrk; `make` in a checkout of giltene/wrk2).
Run: python3 benches/latency_accuracy.py [ROUNDS] [SECONDS] [RATE]   (default 3 rounds, 10 s, 2000 req/s)
"""
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from common import SCRATCH, demo_site, kiln_binary, wait_for_port

PORT = 18099
PATH = "/about/"
SERVER_CPU = ["taskset", "-c", "1"]
CLIENT_CPU = ["taskset", "-c", "0"]
WRK2 = os.environ.get("WRK2", "/var/tmp/wrk2/wrk")


def stall(server, at, length):
    """Stops the server for `length` seconds, `at` seconds from now."""
    def run():
        time.sleep(at)
        os.kill(server.pid, signal.SIGSTOP)
        time.sleep(length)
        os.kill(server.pid, signal.SIGCONT)
    thread = threading.Thread(target=run)
    thread.start()
    return thread


def wrk_percentiles(out):
    """p90/p99/p99.9/max in ms from wrk's or wrk2's --latency output."""
    found = {}
    for line in out.splitlines():
        match = re.match(r"\s*(\d+(?:\.\d+)?)%\s+([\d.]+)(us|ms|s|m)\b", line)
        if match:
            value = float(match.group(2)) * {"us": 0.001, "ms": 1, "s": 1000, "m": 60000}[match.group(3)]
            found[float(match.group(1))] = value
    return {"p90": found.get(90.0), "p99": found.get(99.0), "p99.9": found.get(99.9),
            "max": found.get(100.0)}


def run_wrk(binary, seconds, rate):
    args = [binary, "-t1", "-c32", f"-d{seconds}s", "--latency"]
    if rate:
        args += ["-R", str(rate)]
    args.append(f"http://127.0.0.1:{PORT}{PATH}")
    out = subprocess.run(CLIENT_CPU + args, check=True, capture_output=True, text=True).stdout
    return wrk_percentiles(out)


def run_kiln(kiln, root, seconds, rate):
    with tempfile.TemporaryDirectory() as report:
        settings = [
            f"loadtest.rate={rate}", "loadtest.connections=32", f"loadtest.duration_secs={seconds}",
            "loadtest.revalidate=0", "loadtest.p99_ms=100000", "loadtest.error_rate=1",
            "loadtest.weights={ pages = 0, assets = 0, routes = 0, urls = 1 }",
            f'loadtest.url=[{{ path = "{PATH}" }}]',
        ]
        args = [str(kiln), "loadtest", "--root", str(root), "--no-build",
                "--target", f"http://127.0.0.1:{PORT}", "--report", report]
        for setting in settings:
            args += ["--set", setting]
        subprocess.run(CLIENT_CPU + args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        run = json.loads((Path(report) / "loadtest.json").read_text())["runs"][0]
        latency = run["latency_ms"]
        return {"p90": latency["p90"], "p99": latency["p99"], "p99.9": latency["p99_9"],
                "max": latency["max"]}


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    seconds = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    rate = int(sys.argv[3]) if len(sys.argv) > 3 else 2000
    if not Path(WRK2).is_file():
        sys.exit(f"latency_accuracy.py: no wrk2 at {WRK2} (build giltene/wrk2, or set WRK2)")
    kiln = kiln_binary()
    root = SCRATCH / "latency-accuracy"
    demo_site(kiln, root)
    tools = {
        "kiln loadtest": lambda: run_kiln(kiln, root, seconds, rate),
        "wrk2 -R": lambda: run_wrk(WRK2, seconds, rate),
        "wrk (closed)": lambda: run_wrk("wrk", seconds, None),
    }
    results = {name: [] for name in tools}
    server = subprocess.Popen(
        SERVER_CPU + [str(kiln), "serve", "--root", str(root), "--no-build", "--workers", "1",
                      "--addr", f"127.0.0.1:{PORT}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(PORT, server)
        for _ in range(rounds):
            for name, tool in tools.items():
                time.sleep(1)
                stalled = stall(server, seconds * 0.4, 1.0)
                results[name].append(tool())
                stalled.join()
    finally:
        os.kill(server.pid, signal.SIGCONT)
        server.terminate()
        server.wait()
    print(f"latency under a 1 s stall, {rounds} rounds of {seconds} s at {rate} req/s "
          f"(wrk closed: as fast as it goes), 32 connections, medians, ms")
    print(f"{'tool':<15} {'p90':>9} {'p99':>9} {'p99.9':>9} {'max':>9}")
    medians = {}
    keys = ("p90", "p99", "p99.9", "max")
    for name, runs in results.items():
        medians[name] = {}
        for key in keys:
            values = [run[key] for run in runs if run[key] is not None]
            medians[name][key] = statistics.median(values) if values else None
        cells = " ".join("        –" if medians[name][key] is None else f"{medians[name][key]:>9.1f}"
                         for key in keys)
        print(f"{name:<15} {cells}")
    kiln_row, wrk2_row = medians["kiln loadtest"], medians["wrk2 -R"]
    print("kiln ÷ wrk2: " + ", ".join(
        f"{key} {kiln_row[key] / wrk2_row[key]:.3f}" for key in keys
        if kiln_row[key] and wrk2_row[key]))


if __name__ == "__main__":
    main()
