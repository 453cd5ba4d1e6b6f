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

On two cores the one-worker server is the limit for both, so throughput
alone shows parity, not the generator's own ceiling. Each generator's CPU
time (user + system, from the child's rusage) is measured too: answers
per CPU-second is what one generator core would reach against a server
that kept up, and its ratio is the ceiling's.

A second part does the same over HTTP/2 with TLS: the server with a
self-signed certificate (openssl), h2load (nghttp2-client) `-c4 -m8`
against `kiln loadtest` with `protocol = "http2"`, 4 connections of 8
streams: the same 32 requests in flight on 4 connections.

Needs: wrk, h2load (Debian packages wrk, nghttp2-client), openssl.
Run: python3 benches/loadtest_ceiling.py [ROUNDS] [SECONDS]   (default 5 rounds of 5 s)
"""
import json
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import serve_static
from common import SCRATCH, fresh_dir, kiln_binary, wait_for_port
from serve_static import CLIENT_CPU

PORT = 18095
H2_PORT = 18096


def children_cpu():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def wrk_rate(path, seconds):
    out = subprocess.run(
        CLIENT_CPU + ["wrk", "-t1", "-c32", f"-d{seconds}s", "-H", "Accept-Encoding: br, gzip",
                      f"http://127.0.0.1:{PORT}{path}"],
        check=True, capture_output=True, text=True).stdout
    return float(out.split("Requests/sec:")[1].split()[0])


def h2load_rate(path, seconds):
    out = subprocess.run(
        CLIENT_CPU + ["h2load", "-c4", "-m8", "-t1", f"-D{seconds}", "-H", "Accept-Encoding: br, gzip",
                      f"https://127.0.0.1:{H2_PORT}{path}"],
        check=True, capture_output=True, text=True).stdout
    if " 0 failed" not in out:
        sys.exit(f"loadtest_ceiling.py: h2load saw failures:\n{out}")
    # "finished in 5.00s, 43123.40 req/s, ..."
    return float(out.split("finished in")[1].split(",")[1].split()[0])


def kiln_rate(kiln, root, path, seconds, port=PORT, http2=False):
    with tempfile.TemporaryDirectory() as report:
        connections = ["loadtest.connections=4", "loadtest.streams=8", 'loadtest.protocol="http2"',
                       "loadtest.insecure=true"] if http2 else ["loadtest.connections=32"]
        settings = connections + [
            "loadtest.rate=400000", f"loadtest.duration_secs={seconds}",
            "loadtest.revalidate=0", "loadtest.p99_ms=1000000", "loadtest.error_rate=1",
            "loadtest.weights={ pages = 0, assets = 0, routes = 0, urls = 1 }",
            f'loadtest.url=[{{ path = "{path}" }}]',
        ]
        args = [str(kiln), "loadtest", "--root", str(root), "--no-build",
                "--target", f"{'https' if http2 else 'http'}://127.0.0.1:{port}", "--report", report]
        for setting in settings:
            args += ["--set", setting]
        subprocess.run(CLIENT_CPU + args, check=True, stdout=subprocess.DEVNULL)
        run = json.loads((Path(report) / "loadtest.json").read_text())["runs"][0]
        if run["error_rate"] > 0:
            sys.exit(f"loadtest_ceiling.py: kiln loadtest saw errors: {run['outcomes']}")
        return run["throughput"]


def compare(rounds, seconds, sides, peer, title):
    """Runs each side ROUNDS times, interleaved; prints throughput and
    requests per generator CPU-second, and kiln's ratio to `peer`."""
    rates = {side: [] for side in sides}
    per_cpu = {side: [] for side in sides}
    for round_index in range(rounds):
        order = list(sides) if round_index % 2 == 0 else list(reversed(list(sides)))
        for side in order:
            cpu_before = children_cpu()
            rate = sides[side]()
            cpu = children_cpu() - cpu_before
            rates[side].append(rate)
            # Answers over the generator's CPU seconds: its rate on one
            # core that never waits for the server.
            per_cpu[side].append(rate * seconds / max(cpu, 1e-3))
            print(f"{title}, round {round_index + 1}: {side} {rate:,.0f} req/s, "
                  f"{cpu:.2f} CPU s, {per_cpu[side][-1]:,.0f} req per CPU-s", file=sys.stderr)
    ratios = [k / w for k, w in zip(rates["kiln"], rates[peer])]
    cpu_ratios = [k / w for k, w in zip(per_cpu["kiln"], per_cpu[peer])]
    print(f"\n{title}\n")
    print("| generator | median req/s | range | median req per CPU-second | range |")
    print("|---|---|---|---|---|")
    for side in sides:
        print(f"| {side} | {statistics.median(rates[side]):,.0f} | "
              f"{min(rates[side]):,.0f}–{max(rates[side]):,.0f} | "
              f"{statistics.median(per_cpu[side]):,.0f} | "
              f"{min(per_cpu[side]):,.0f}–{max(per_cpu[side]):,.0f} |")
    print(f"\nkiln loadtest ÷ {peer}, throughput: median {statistics.median(ratios):.3f} "
          f"[{min(ratios):.3f}, {max(ratios):.3f}] over {rounds} rounds of {seconds} s")
    print(f"kiln loadtest ÷ {peer}, requests per CPU-second (the ceiling): median "
          f"{statistics.median(cpu_ratios):.3f} [{min(cpu_ratios):.3f}, {max(cpu_ratios):.3f}]")


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
        compare(rounds, seconds, {
            "kiln": lambda: kiln_rate(kiln, root, path, seconds),
            "wrk": lambda: wrk_rate(path, seconds),
        }, "wrk", "HTTP/1.1, 32 connections")
        tls = work / "tls"
        tls.mkdir()
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                        "-nodes", "-days", "2", "-subj", "/CN=localhost",
                        "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                        "-keyout", str(tls / "key.pem"), "-out", str(tls / "cert.pem")],
                       check=True, capture_output=True)
        h2_server = subprocess.Popen(
            serve_static.SERVER_CPU + [str(kiln), "serve", "--root", str(root), "--no-build", "--workers", "1",
                                       "--addr", f"127.0.0.1:{H2_PORT}",
                                       "--set", f'server.tls_cert="{tls / "cert.pem"}"',
                                       "--set", f'server.tls_key="{tls / "key.pem"}"'],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for_port(H2_PORT, h2_server)
            compare(rounds, seconds, {
                "kiln": lambda: kiln_rate(kiln, root, path, seconds, H2_PORT, http2=True),
                "h2load": lambda: h2load_rate(path, seconds),
            }, "h2load", "HTTP/2 over TLS, 4 connections × 8 streams")
        finally:
            h2_server.terminate()
            h2_server.wait()
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
