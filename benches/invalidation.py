#!/usr/bin/env python3
"""Cross-server invalidation latency through a channel that restarts (issue #16).

Two kiln servers (A and B) serve one site, the test suite's shop, from one
SQLite database, sharing a secret key and an invalidation channel:

- `redis`: a redis-server of the script's own on a free port (no
  persistence, as a cache Redis runs); in the middle of the run it is
  killed and started again on the same port;
- `postgres`: no Redis; the servers tell each other through PostgreSQL
  `NOTIFY` (`KILN_TEST_POSTGRES_URL`, default the machine's `test`
  database); in the middle of the run every listening connection of the
  two servers is cut with `pg_terminate_backend` (the script never stops
  the machine's PostgreSQL).

Each write: B holds item N in its cache (two GETs, so it is in memory,
disk and Redis); A changes N's price (a form POST that invalidates
`item:N`); B is then polled every millisecond until it serves the new
price. The latency is the time from A's answer (the write committed and
its invalidation sent or, when the channel is down, put in the outbox) to
B's first response with the new price; a write whose new price B has not
served within 10 s counts as lost. After B shows it, B is read 5 more
times: any old price then is a stale hit (a page rendered before the
write coming back). The outage hits whichever writes fall into it.

Reported per channel: writes, p50, p99 and max latency, writes lost,
stale hits after delivery, and the longest outage a write saw.

Needs: redis-server (Debian package), for `postgres` a PostgreSQL URL.
Run: python3 benches/invalidation.py [WRITES] [CHANNEL...]   (default 400, redis postgres)
"""
import http.client
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

from common import REPO, SCRATCH, free_port, fresh_dir, kiln_binary, wait_for_port

PORTS = {"A": 18190, "B": 18191}
ITEMS = 50
DEADLINE = 10.0



def start_redis(port, work):
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(work)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port(port, process)
    return process


def make_sites(kiln, work):
    """Two copies of the shop, built, with one secret key and one database."""
    sites = []
    for side in PORTS:
        site = work / side
        shutil.copytree(REPO / "tests/fixtures/shop", site)
        subprocess.run([str(kiln), "build", "--root", str(site)], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        sites.append(site)
    return sites


def start_kiln(kiln, site, port, overrides, log):
    settings = []
    for override in overrides:
        settings += ["--set", override]
    return subprocess.Popen(
        [str(kiln), "serve", "--root", str(site), "--no-build", "--workers", "1",
         "--addr", f"127.0.0.1:{port}", *settings],
        stdout=log, stderr=log)


class Client:
    """One keep-alive connection to a server."""

    def __init__(self, port):
        self.port = port
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)

    def request(self, method, path, body=None, headers=None):
        for attempt in range(2):
            try:
                self.connection.request(method, path, body=body, headers=headers or {})
                response = self.connection.getresponse()
                return response.status, response.getheaders(), response.read()
            except (http.client.HTTPException, OSError):
                self.connection.close()
                self.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                if attempt:
                    raise
        raise AssertionError("unreachable")


def csrf_pair(client):
    status, headers, body = client.request("GET", "/notes/")
    cookie = next(value for name, value in headers if name.lower() == "set-cookie").split(";")[0]
    token = re.search(rb'name="csrf_token" value="([^"]+)"', body).group(1).decode()
    return cookie, token


class Outage:
    """Cuts the channel once, in the middle of the run."""

    def __init__(self, channel, redis=None, admin_url=None, work=None):
        self.channel, self.redis, self.admin_url, self.work = channel, redis, admin_url, work
        self.longest = 0.0

    def cut(self):
        started = time.perf_counter()
        if self.channel == "redis":
            port = self.redis["port"]
            self.redis["process"].kill()
            self.redis["process"].wait()
            self.redis["process"] = start_redis(port, self.work)
        else:
            subprocess.run(
                ["psql", "-q", "-X", self.admin_url, "-c",
                 "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                 "WHERE application_name = 'kiln cache invalidations'"],
                check=True, stdout=subprocess.DEVNULL)
        self.longest = time.perf_counter() - started


def run(channel, writes, kiln):
    work = fresh_dir(SCRATCH / f"invalidation-{channel}")
    site_a, site_b = make_sites(kiln, work)
    database = f'database.url="sqlite://{site_a / "data/shop.db"}"'
    overrides = [database, "server.debug_headers=true"]
    redis = None
    admin_url = None
    if channel == "redis":
        port = free_port()
        redis = {"port": port, "process": start_redis(port, work)}
        overrides.append(f'cache.redis_url="redis://127.0.0.1:{port}"')
    else:
        admin_url = os.environ.get("KILN_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/test")
        schema = f"kiln_bench_invalidation_{os.getpid()}"
        subprocess.run(["psql", "-q", "-X", admin_url, "-c",
                        "SET client_min_messages = warning; "
                        f"DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"],
                       check=True, stdout=subprocess.DEVNULL)
        separator = "&" if "?" in admin_url else "?"
        url = f"{admin_url}{separator}options=-c%20search_path%3D{schema}"
        overrides[0] = f'database.url="{url}"'
    log = open(work / "servers.log", "w")
    servers = []
    try:
        for side, site in zip(PORTS, (site_a, site_b)):
            if side == "B":
                # One secret key, as in a deployment: A made it at start.
                (site_b / ".kiln").mkdir(exist_ok=True)
                shutil.copy2(site_a / ".kiln/secret.key", site_b / ".kiln/secret.key")
            servers.append(start_kiln(kiln, site, PORTS[side], overrides, log))
            wait_for_port(PORTS[side], servers[-1])
        a, b = Client(PORTS["A"]), Client(PORTS["B"])
        cookie, token = csrf_pair(a)
        outage = Outage(channel, redis, admin_url, work)
        latencies, lost, stale = [], 0, 0
        for write in range(writes):
            if write == writes // 2:
                outage.cut()
            item = 1 + write % ITEMS
            path = f"/items/{item}"
            b.request("GET", path)
            b.request("GET", path)
            price = str(100000 + write)
            body = urllib.parse.urlencode({"csrf_token": token, "price": price})
            status, _, _ = a.request(
                "POST", f"/items/{item}/price", body=body,
                headers={"Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"})
            if status != 303:
                sys.exit(f"invalidation.py: the write answered {status}")
            written = time.perf_counter()
            wanted = f">{price}<".encode()
            while True:
                _, _, page = b.request("GET", path)
                now = time.perf_counter()
                if wanted in page:
                    latencies.append(now - written)
                    break
                if now - written > DEADLINE:
                    lost += 1
                    served = re.search(rb">(\d{6})<", page)
                    print(f"lost: write {write} (cut at {writes // 2}), item {item}, B served "
                          f"{served.group(1).decode() if served else page[:80]!r} instead of {price}",
                          file=sys.stderr)
                    break
                time.sleep(0.001)
            for _ in range(5):
                _, _, page = b.request("GET", path)
                if wanted not in page:
                    stale += 1
        return {
            "writes": writes,
            "p50_ms": statistics.median(latencies) * 1000,
            "p99_ms": statistics.quantiles(latencies, n=100)[98] * 1000,
            "max_ms": max(latencies) * 1000,
            "lost": lost,
            "stale": stale,
            "outage_ms": outage.longest * 1000,
        }
    finally:
        for server in servers:
            server.terminate()
            server.wait()
        if redis:
            redis["process"].kill()
        if admin_url:
            subprocess.run(["psql", "-q", "-X", admin_url, "-c", "SET client_min_messages = warning; " + f"DROP SCHEMA IF EXISTS {schema} CASCADE"],
                           stdout=subprocess.DEVNULL)


def main():
    writes = int(sys.argv[1]) if len(sys.argv) > 1 else 400
    channels = sys.argv[2:] or ["redis", "postgres"]
    kiln = kiln_binary()
    print("| channel | writes | p50 | p99 | max | lost | stale hits after delivery | channel cut for |")
    print("|---|---|---|---|---|---|---|---|")
    for channel in channels:
        r = run(channel, writes, kiln)
        print(f"| {channel} | {r['writes']} | {r['p50_ms']:.1f} ms | {r['p99_ms']:.1f} ms | "
              f"{r['max_ms']:.1f} ms | {r['lost']} | {r['stale']} | {r['outage_ms']:.0f} ms |")


if __name__ == "__main__":
    main()
