"""Shared helpers for kiln's benchmark scripts.

Peers and kiln run in the same script on the same machine, interleaved
round by round (A, B, A, B, ...), and results are medians: these machines
are noisy, and interleaving spreads the noise evenly over both sides.
"""
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SCRATCH = Path(os.environ.get("KILN_BENCH_DIR", "/var/tmp/kiln-bench"))
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", "/var/tmp/kiln-target"))


def shared_dir():
    for candidate in [os.environ.get("KILN_SHARED_DIR"), REPO.parent / "shared", "/work/shared"]:
        if candidate and (Path(candidate) / "corpus/fetch-npm.sh").is_file():
            return Path(candidate)
    sys.exit("benches: the shared corpus (../shared) is not present")


def kiln_binary():
    """Builds kiln in release mode (the profile the README uses) and returns its path.
    KILN_BINARY names a binary to measure instead (one built earlier, say)."""
    if os.environ.get("KILN_BINARY"):
        return Path(os.environ["KILN_BINARY"])
    env = dict(os.environ, CARGO_TARGET_DIR=str(TARGET))
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=REPO, env=env, check=True)
    return TARGET / "release/kiln"


def npm_corpus():
    """node_modules of the pinned npm corpus (three.js, Bootstrap, ...)."""
    corpus = SCRATCH / "npm-corpus"
    subprocess.run(["bash", str(shared_dir() / "corpus/fetch-npm.sh"), str(corpus)], check=True)
    return corpus / "node_modules"


def npm_peers(*packages):
    """Installs peer tools from npm into a scratch dir; returns its .bin directory."""
    peers = SCRATCH / "peers"
    peers.mkdir(parents=True, exist_ok=True)
    missing = [p for p in packages if not (peers / "node_modules" / p.split("@")[0] / "package.json").exists()]
    if missing:
        if not (peers / "package.json").exists():
            (peers / "package.json").write_text('{"name": "kiln-bench-peers", "private": true}\n')
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--loglevel=error", *missing],
                       cwd=peers, check=True)
    return peers / "node_modules/.bin"


def npm_version(package):
    import json
    manifest = SCRATCH / "peers/node_modules" / package / "package.json"
    return json.loads(manifest.read_text())["version"]


def run_quiet(command, cwd=None):
    subprocess.run(command, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def interleaved(sides, rounds, prepare=None):
    """Times each side's command `rounds` times, alternating sides every round.

    `sides` maps a name to an argv list (or a callable). `prepare(name)`, if
    given, runs untimed before each run. Returns {name: [seconds, ...]}.
    """
    times = {name: [] for name in sides}
    names = list(sides)
    for round_index in range(rounds):
        order = names if round_index % 2 == 0 else list(reversed(names))
        for name in order:
            if prepare:
                prepare(name)
            command = sides[name]
            started = time.perf_counter()
            if callable(command):
                command()
            else:
                run_quiet(command)
            times[name].append(time.perf_counter() - started)
    return times


def median_ms(samples):
    return statistics.median(samples) * 1000


def free_port():
    """A TCP port on loopback nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def fresh_dir(path):
    path = Path(path)
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def wait_for_port(port, process=None, seconds=30):
    """Returns once something listens on 127.0.0.1:port; exits if `process`
    ends first or nothing listens in time."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        if process is not None and process.poll() is not None:
            sys.exit(f"exited early: {process.args}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"nothing listens on {port}")


def demo_site(kiln, root):
    """The demo site copied to `root` without any local database, built once."""
    fresh_dir(root)
    for name in ["assets", "templates", "migrations"]:
        shutil.copytree(REPO / name, root / name)
    (root / "data").mkdir()
    for data in (REPO / "data").iterdir():
        if data.suffix in (".toml", ".json"):
            shutil.copy(data, root / "data" / data.name)
    shutil.copy(REPO / "build.toml", root / "build.toml")
    subprocess.run([str(kiln), "build", "--root", str(root)], check=True, stdout=subprocess.DEVNULL)
