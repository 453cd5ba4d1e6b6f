"""Slow-client attacks on kiln serve and on nginx, side by side (issue #15).

slowhttptest (Debian package) runs each attack with 2,000 connections
opened at 200 a second for 40 s against the demo site:

- slowloris (`-H`): request heads that never end, a header line every 5 s;
- slow body (`-B`): a form POST whose body comes 5 s at a time;
- slow read (`-X`): responses read 32 bytes every 5 s through a 512-1024
  byte window, three requests pipelined per connection.

Meanwhile a normal client, connecting from another loopback address
(127.0.0.2, as a visitor elsewhere would), fetches the home page 20 times
a second, each on a new connection, and its latencies are recorded; a
request not answered within 2 s counts as failed. At the end the script
records the normal client's p50/p99 and failures during the attack, the
most connections the server held open at once and how many it still held
in the attack's last second (established sockets on the server's port,
counted by `ss`, the same way for both servers), and whether the server
still answers afterwards.

nginx runs with Debian's defaults (`worker_connections 768`, 60 s header,
body and send timeouts) on the same dist/ and is attacked the same way,
the two sides one after the other for each attack. nginx answers the POST
with 405 once it has read the body, which is what the slow body attack
needs.

Needs: slowhttptest, nginx-light (Debian packages). Takes about 5 minutes.
Run: python3 benches/reliability.py
"""
import shutil
import socket
import statistics
import subprocess
import threading
import time

from common import REPO, SCRATCH, fresh_dir, kiln_binary, wait_for_port

PORTS = {"kiln": 18180, "nginx": 18181}
CONNECTIONS = 2000
RATE = 200
LENGTH = 40


def build_demo(kiln, work):
    site = work / "site"
    shutil.copytree(REPO, site, ignore=shutil.ignore_patterns(
        ".git", "dist", "target", ".kiln", "benches", "tests", "docs", "*.db", "*.db-*"))
    subprocess.run([str(kiln), "build"], cwd=site, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return site


def largest_asset(site):
    files = [p for p in (site / "dist").rglob("*") if p.is_file() and p.suffix in (".jpg", ".webp", ".png", ".avif", ".js")]
    largest = max(files, key=lambda p: p.stat().st_size)
    return "/" + largest.relative_to(site / "dist").as_posix()


def start_kiln(kiln, site):
    process = subprocess.Popen(
        [str(kiln), "serve", "--no-build", "--addr", f"127.0.0.1:{PORTS['kiln']}"],
        cwd=site, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port(PORTS["kiln"], process)
    return process


def start_nginx(site, work):
    conf = work / "nginx.conf"
    conf.write_text(f"""
worker_processes auto;
daemon off;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log crit;
events {{ worker_connections 768; }}
http {{
    include /etc/nginx/mime.types;
    access_log off;
    server {{
        listen 127.0.0.1:{PORTS['nginx']};
        root {site}/dist;
        index index.html;
    }}
}}
""")
    process = subprocess.Popen(["nginx", "-c", str(conf)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port(PORTS["nginx"], process)
    return process


def normal_request(port, path="/"):
    """One GET on a new connection from 127.0.0.2; seconds, or None."""
    started = time.perf_counter()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2,
                                      source_address=("127.0.0.2", 0)) as sock:
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        if not data.startswith(b"HTTP/1.1 200"):
            return None
        return time.perf_counter() - started
    except OSError:
        return None


def normal_client(port, until, latencies, failures):
    while time.perf_counter() < until:
        began = time.perf_counter()
        latency = normal_request(port)
        if latency is None:
            failures.append(1)
        else:
            latencies.append(latency)
        time.sleep(max(0.0, 0.05 - (time.perf_counter() - began)))


def established(port):
    """Established TCP connections on the server's side of `port`."""
    out = subprocess.run(["ss", "-Htn", "state", "established", f"( sport = :{port} )"],
                         capture_output=True, text=True).stdout
    return sum(1 for line in out.splitlines() if line.strip())


def count_connections(port, until, samples):
    while time.perf_counter() < until:
        samples.append((time.perf_counter(), established(port)))
        time.sleep(0.5)


def attack(mode, port, slow_path, post_path, work, name):
    prefix = work / f"{name}-{mode}"
    url = f"http://127.0.0.1:{port}"
    common = ["-c", str(CONNECTIONS), "-r", str(RATE), "-l", str(LENGTH), "-g", "-o", str(prefix), "-p", "3"]
    modes = {
        "slowloris": ["-H", "-i", "5", "-u", f"{url}/"],
        "slow-body": ["-B", "-i", "5", "-s", "65536", "-u", f"{url}{post_path}"],
        "slow-read": ["-X", "-w", "512", "-y", "1024", "-n", "5", "-z", "32", "-k", "3", "-u", f"{url}{slow_path}"],
    }
    started = time.perf_counter()
    until = started + LENGTH
    latencies, failures, samples = [], [], []
    threads = [
        threading.Thread(target=normal_client, args=(port, until, latencies, failures)),
        threading.Thread(target=count_connections, args=(port, until, samples)),
    ]
    attacker = subprocess.Popen(["slowhttptest", *common, *modes[mode]],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    attacker.terminate()
    attacker.wait()
    time.sleep(1)
    alive = normal_request(port) is not None
    last_second = [count for at, count in samples if at >= until - 1.5]
    return {
        "p50": statistics.median(latencies) * 1000 if latencies else None,
        "p99": statistics.quantiles(latencies, n=100)[98] * 1000 if len(latencies) >= 100 else None,
        "answered": len(latencies),
        "failed": len(failures),
        "peak": max((count for _, count in samples), default=None),
        "held": max(last_second, default=None),
        "alive": alive,
    }


def main():
    if not shutil.which("slowhttptest"):
        raise SystemExit("benches/reliability.py needs slowhttptest (apt install slowhttptest)")
    work = fresh_dir(SCRATCH / "reliability")
    kiln = kiln_binary()
    site = build_demo(kiln, work)
    slow_path = largest_asset(site)
    results = {}
    for mode in ("slowloris", "slow-body", "slow-read"):
        for name in ("kiln", "nginx"):
            server = start_kiln(kiln, site) if name == "kiln" else start_nginx(site, work)
            try:
                results[(mode, name)] = attack(mode, PORTS[name], slow_path, "/guestbook/", work, name)
            finally:
                server.terminate()
                server.wait()
            time.sleep(2)
    print(f"{CONNECTIONS} attacking connections at {RATE}/s for {LENGTH} s; "
          f"normal client: GET / from 127.0.0.2, 20/s; slow read of {slow_path}")
    print(f"{'attack':10} {'server':6} {'p50 ms':>7} {'p99 ms':>7} {'ok':>5} {'failed':>6} "
          f"{'peak conns':>10} {'held at end':>11} {'alive':>5}")
    for (mode, name), r in results.items():
        def number(value):
            return "-" if value is None else f"{value:.1f}" if isinstance(value, float) else str(value)
        print(f"{mode:10} {name:6} {number(r['p50']):>7} {number(r['p99']):>7} {r['answered']:>5} "
              f"{r['failed']:>6} {number(r['peak']):>10} {number(r['held']):>11} {str(r['alive']):>5}")


if __name__ == "__main__":
    main()
