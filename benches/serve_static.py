#!/usr/bin/env python3
"""kiln serve vs nginx and Caddy on the same built dist/, under wrk.

Each server gets one worker (nginx `worker_processes 1`, Caddy with
GOMAXPROCS=1, kiln `--workers 1`), pinned to CPU 1; wrk runs `-t1 -c32`
on loopback, pinned to CPU 0, so client and server never share a core. Rounds
are interleaved (every case on every server, then the next round) and the
report gives medians of req/s and of p99 latency.

For context, the 2 KB case also runs `examples/plaintext_ceiling.rs`: a bare
actix-web handler returning 2 KB from memory, the most kiln's HTTP stack can
do on this machine.

Cases: a 2 KB hashed asset, a 30 KB precompressed asset (Accept-Encoding:
gzip, which all three serve from the .gz file), a 304 revalidation (each
server's own ETag in If-None-Match), a 5 MB file, and an HTML page.

With KILN_BASELINE=/path/to/an/older/kiln, that binary is served too (as
"before", same settings), interleaved with the others: an A/B of a change to
kiln's serving path. SERVE_CASES=30KB-gzip,304 runs only those cases.

Usage: benches/serve_static.py [ROUNDS] [SECONDS]     (default 3 rounds of 5 s)
Needs: wrk, nginx-light, caddy (Debian packages).
Goals (issue #3): 2 KB >= 1.5x nginx req/s with p99 <= nginx's; 30 KB >= 1.1x;
304 >= 1.0x; 5 MB throughput >= 0.9x.
"""
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from common import REPO, SCRATCH, TARGET, fresh_dir, kiln_binary, wait_for_port

PORTS = {"kiln": 18080, "nginx": 18081, "caddy": 18082, "before": 18084}
CEILING_PORT = 18083
SERVER_CPU = ["taskset", "-c", "1"]
CLIENT_CPU = ["taskset", "-c", "0"]


def make_site(root):
    """A site with files of the sizes the cases need, built by kiln."""
    (root / "assets/data").mkdir(parents=True)
    (root / "assets/css").mkdir(parents=True)
    (root / "assets/media").mkdir(parents=True)
    record = '{"id": %d, "name": "item %d", "tags": ["a", "b"]},\n'
    two_kb = ("[\n" + "".join(record % (i, i) for i in range(60)))[:2040] + "\n]\n"
    (root / "assets/data/two-kb.json").write_text(two_kb[:2048])
    rules = "".join(
        f".c{i} {{ color: #{i * 2654435761 % 0xffffff:06x}; margin: {i % 17}px {i % 5}rem; "
        f"background-image: linear-gradient(90deg, #{i * 40503 % 0xffffff:06x}, transparent); }}\n"
        for i in range(300)
    )
    (root / "assets/css/app.css").write_text(rules)
    (root / "assets/media/video.bin").write_bytes(os.urandom(5 * 1000 * 1000))
    subprocess.run([str(KILN), "build", "--root", str(root)], check=True, stdout=subprocess.DEVNULL)
    manifest = json.loads((root / "dist/manifest.json").read_text())
    page = "<!doctype html><html lang=en><title>Bench</title>" + "<p>" + "lorem ipsum " * 800 + "</p>"
    (root / "dist/index.html").write_text(page)
    return {
        "2KB": "/" + manifest["data/two-kb.json"]["file"],
        "30KB-gzip": "/" + manifest["css/app.css"]["file"],
        "304": "/" + manifest["css/app.css"]["file"],
        "5MB": "/" + manifest["media/video.bin"]["file"],
        "html": "/",
    }


def start_kiln(root, binary=None, name="kiln"):
    return subprocess.Popen(
        SERVER_CPU + [str(binary or KILN), "serve", "--root", str(root), "--no-build", "--workers", "1",
         "--addr", f"127.0.0.1:{PORTS[name]}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def start_ceiling():
    binary = TARGET / "release/examples/plaintext_ceiling"
    if not os.environ.get("KILN_BINARY"):
        env = dict(os.environ, CARGO_TARGET_DIR=str(TARGET))
        subprocess.run(["cargo", "build", "--release", "--quiet", "--example", "plaintext_ceiling"],
                       cwd=REPO, env=env, check=True)
    return subprocess.Popen(SERVER_CPU + [str(binary), f"127.0.0.1:{CEILING_PORT}", "2043"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def start_nginx(root, work):
    conf = work / "nginx.conf"
    conf.write_text(f"""
worker_processes 1;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log;
daemon off;
events {{ worker_connections 4096; }}
http {{
    include /etc/nginx/mime.types;
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    open_file_cache max=10000 inactive=60s;
    open_file_cache_valid 60s;
    gzip_static on;
    client_body_temp_path {work}/tmp;
    server {{
        listen 127.0.0.1:{PORTS['nginx']};
        root {root}/dist;
    }}
}}
""")
    (work / "tmp").mkdir(exist_ok=True)
    return subprocess.Popen(SERVER_CPU + ["nginx", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def start_caddy(root, work):
    conf = work / "Caddyfile"
    conf.write_text(f"""{{
    admin off
    auto_https off
}}
http://127.0.0.1:{PORTS['caddy']} {{
    root * {root}/dist
    file_server {{
        precompressed br zstd gzip
    }}
}}
""")
    env = dict(os.environ, GOMAXPROCS="1", HOME=str(work))
    return subprocess.Popen(SERVER_CPU + ["caddy", "run", "--config", str(conf), "--adapter", "caddyfile"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def etag_of(port, path):
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Accept-Encoding": "gzip"})
    with urllib.request.urlopen(request) as response:
        return response.headers["ETag"]


def wrk(port, path, seconds, headers):
    command = CLIENT_CPU + ["wrk", "-t1", "-c32", f"-d{seconds}s", "--latency"]
    for header in headers:
        command += ["-H", header]
    command.append(f"http://127.0.0.1:{port}{path}")
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 1e-3, "ms": 1.0, "s": 1e3}[p99.group(2)]
    transfer = re.search(r"Transfer/sec:\s+([\d.]+)(\w+)", out)
    unit = {"B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9}[transfer.group(2)]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": rps, "p99_ms": float(p99.group(1)) * scale,
            "bytes_per_s": float(transfer.group(1)) * unit, "errors": int(non2xx.group(1)) if non2xx else 0}


def main():
    global KILN
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    seconds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    KILN = kiln_binary()
    work = fresh_dir(SCRATCH / "serve-static")
    root = work / "site"
    root.mkdir()
    paths = all_paths = make_site(root)
    # SERVE_CASES=30KB-gzip,304 reruns only those cases.
    chosen = os.environ.get("SERVE_CASES")
    if chosen:
        paths = {case: path for case, path in paths.items() if case in chosen.split(",")}
    servers = {"kiln": start_kiln(root), "nginx": start_nginx(root, work), "caddy": start_caddy(root, work)}
    baseline = os.environ.get("KILN_BASELINE")
    if baseline:
        servers["before"] = start_kiln(root, baseline, "before")
    ceiling = start_ceiling()
    try:
        for port in [*(PORTS[name] for name in servers), CEILING_PORT]:
            wait_for_port(port, seconds=15)
        etags = {name: etag_of(PORTS[name], all_paths["304"]) for name in servers}
        results = {}
        for _ in range(rounds):
            for case, path in paths.items():
                for name in servers:
                    headers = []
                    if case in ("30KB-gzip", "304"):
                        headers.append("Accept-Encoding: gzip")
                    if case == "304":
                        headers.append(f"If-None-Match: {etags[name]}")
                    results.setdefault((case, name), []).append(wrk(PORTS[name], path, seconds, headers))
                if case == "2KB":
                    results.setdefault((case, "actix"), []).append(wrk(CEILING_PORT, path, seconds, []))
        report(results, paths, rounds, seconds)
    finally:
        for process in [*servers.values(), ceiling]:
            process.send_signal(signal.SIGTERM)
        for process in [*servers.values(), ceiling]:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


def report(results, paths, rounds, seconds):
    print(f"wrk -t1 -c32 on CPU 0, {rounds} interleaved rounds of {seconds} s, medians; "
          "one server worker each, on CPU 1")
    print(f"{'case':10} {'server':7} {'req/s':>10} {'p99 ms':>8} {'MB/s':>8} {'vs nginx':>9}")
    for case in paths:
        base = statistics.median(r["rps"] for r in results[(case, "nginx")])
        for name in ("kiln", "before", "nginx", "caddy", "actix"):
            runs = results.get((case, name))
            if not runs:
                continue
            rps = statistics.median(r["rps"] for r in runs)
            p99 = statistics.median(r["p99_ms"] for r in runs)
            mbps = statistics.median(r["bytes_per_s"] for r in runs) / 1e6
            errors = sum(r["errors"] for r in runs)
            note = f" ({errors} non-2xx/3xx)" if errors and case != "304" else ""
            label = "ceiling" if name == "actix" else name
            print(f"{case:10} {label:7} {rps:10.0f} {p99:8.2f} {mbps:8.1f} {rps / base:8.2f}x{note}")


if __name__ == "__main__":
    main()
