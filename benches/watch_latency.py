#!/usr/bin/env python3
"""`kiln watch` latency: from a file write to the event on the live-reload
channel, against esbuild's incremental context on the same files, two ways:
`watch` (esbuild's own watcher; the clock stops when its onEnd fires) and
`rebuild` (the test calls ctx.rebuild() right after the write: esbuild's
incremental rebuild time without any watcher delay).

The site is the repository's demo (its stylesheets, scripts and pages) plus
a script entry that bundles all of three.js (`import * as THREE`) and a
small module of its own. Each round edits, on each side in turn:

- CSS: `assets/css/base/tokens.css`, imported (through `base/index.css`)
  by the demo's `site.css`; kiln answers with a `css` (swap in place) event.
- JS: `_tweak.js`, a module inside the three.js bundle; kiln answers with a
  `reload` event.

Both tools build unminified with source maps (kiln watch's defaults; the
same flags for esbuild). kiln's clock stops when the event arrives on an
open connection to its channel, after the rebuild was written and loaded
into the server.

Usage: benches/watch_latency.py [EDITS]     (default 20)
Goals (issue #8): CSS p50 <= 30 ms; JS p50 <= esbuild's incremental rebuild.
"""
import json
import re
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import REPO, SCRATCH, free_port, fresh_dir, kiln_binary, npm_corpus, npm_peers, npm_version, wait_for_port

TWEAK = "export const tweak = () => {n};\n"
ENTRY = "import * as THREE from 'three';\nimport {{ tweak }} from './_tweak.js';\nconsole.log(THREE.REVISION, tweak(), Object.keys(THREE).length);\n"


ESBUILD_DRIVER = """
import * as esbuild from %s;
import { createInterface } from 'node:readline';
const [mode, entry, outdir] = process.argv.slice(2);
const say = (line) => process.stdout.write(line + '\\n');
const ctx = await esbuild.context({
  entryPoints: [entry], bundle: true, sourcemap: true, format: 'esm', outdir,
  logLevel: 'error', external: ['/images/*', '/icons/*'],
  loader: { '.svg': 'file', '.png': 'file', '.jpg': 'file', '.webp': 'file', '.woff2': 'file' },
  plugins: [{ name: 'report', setup(build) { build.onEnd(() => { onEnd(); return {}; }); } }],
});
// Watch mode: its first build is the untimed one; each later one is an edit's.
let builds = 0;
function onEnd() {
  if (mode === 'watch') say(builds++ === 0 ? 'ready' : 'rebuilt');
}
if (mode === 'watch') {
  await ctx.watch();
} else {
  await ctx.rebuild();
  say('ready');
  for await (const _ of createInterface({ input: process.stdin })) {
    await ctx.rebuild();
    say('rebuilt');
  }
}
"""


class EventStream:
    """A raw connection to kiln's Server-Sent Events endpoint; waits for named events."""

    def __init__(self, port, path):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.settimeout(60)
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n".encode())
        self.buffer = b""
        self.wait_for(rb"\r\n\r\n")

    def wait_for(self, pattern):
        while True:
            match = re.search(pattern, self.buffer)
            if match:
                self.buffer = self.buffer[match.end():]
                return
            chunk = self.sock.recv(65536)
            if not chunk:
                raise RuntimeError("the event stream closed")
            self.buffer += chunk

    def drain(self):
        self.sock.setblocking(False)
        try:
            while self.sock.recv(65536):
                pass
        except BlockingIOError:
            pass
        self.sock.settimeout(60)
        self.buffer = b""


class Esbuild:
    """esbuild's incremental context in node: `watch` (its own watcher) or
    `rebuild` (ctx.rebuild() on request)."""

    def __init__(self, driver, mode, entry, outdir, cwd):
        self.mode = mode
        self.process = subprocess.Popen(["node", str(driver), mode, entry, outdir], cwd=cwd, text=True,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        while self.process.stdout.readline().strip() != "ready":
            pass

    def after_write(self):
        if self.mode == "rebuild":
            self.process.stdin.write("go\n")
            self.process.stdin.flush()
        while self.process.stdout.readline().strip() != "rebuilt":
            pass

    def stop(self):
        self.process.terminate()
        self.process.wait()


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_sites(node_modules):
    base = fresh_dir(SCRATCH / "watch-latency")
    kiln_site = base / "kiln"
    shutil.copytree(REPO / "assets", kiln_site / "assets")
    shutil.copytree(REPO / "templates" / "pages", kiln_site / "templates" / "pages")
    for part in ["layouts", "partials"]:
        shutil.copytree(REPO / "templates" / part, kiln_site / "templates" / part)
    shutil.copytree(REPO / "data", kiln_site / "data", ignore=shutil.ignore_patterns("*.db*"))
    (kiln_site / "build.toml").write_text('[build]\ntargets = "defaults"\n')
    (kiln_site / "assets/js/bench.js").write_text(ENTRY.format())
    (kiln_site / "assets/js/_tweak.js").write_text(TWEAK.format(n=0))
    (kiln_site / "node_modules").symlink_to(node_modules)

    # One copy of the sources per esbuild context, so that an edit for one
    # does not also trigger the other's watcher.
    peers = {}
    for mode in ["watch", "rebuild"]:
        peer = base / f"esbuild-{mode}"
        (peer / "src").mkdir(parents=True)
        (peer / "src/bench.js").write_text(ENTRY.format())
        (peer / "src/_tweak.js").write_text(TWEAK.format(n=0))
        for part in ["css", "icons", "images"]:
            shutil.copytree(REPO / "assets" / part, peer / "src" / part)
        (peer / "node_modules").symlink_to(node_modules)
        peers[mode] = peer
    return kiln_site, peers


def percentile(samples, fraction):
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def main():
    edits = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    kiln = kiln_binary()
    node_modules = npm_corpus()
    npm_peers("esbuild")
    kiln_site, peer_dirs = make_sites(node_modules)
    driver = kiln_site.parent / "driver.mjs"
    main_js = SCRATCH / "peers/node_modules/esbuild/lib/main.js"
    driver.write_text(ESBUILD_DRIVER % json.dumps(str(main_js)))

    port = free_port()
    print(f"esbuild {npm_version('esbuild')}; {edits} edits per case, sides alternating; first build untimed")
    kiln_process = subprocess.Popen([str(kiln), "watch", "--root", str(kiln_site), "--addr", f"127.0.0.1:{port}"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peers = {}
    try:
        wait_for_port(port, kiln_process)
        for case, entry in [("js", "src/bench.js"), ("css", "src/css/site.css")]:
            for mode in ["watch", "rebuild"]:
                peers[(case, mode)] = Esbuild(driver, mode, entry, f"out-{case}", peer_dirs[mode])
        events = EventStream(port, "/__kiln/events")
        time.sleep(1)
        events.drain()

        def timed(path, text, wait):
            started = time.perf_counter()
            path.write_text(text)
            wait()
            elapsed = time.perf_counter() - started
            time.sleep(0.15)  # let every watcher settle before the next edit
            events.drain()
            return elapsed * 1000

        tokens = kiln_site / "assets/css/base/tokens.css"
        peer_tokens = {mode: peer_dirs[mode] / "src/css/base/tokens.css" for mode in peer_dirs}
        peer_tweak = {mode: peer_dirs[mode] / "src/_tweak.js" for mode in peer_dirs}
        original = tokens.read_text()
        names = ["kiln css", "esbuild css watch", "esbuild css rebuild",
                 "kiln js", "esbuild js watch", "esbuild js rebuild"]
        results = {name: [] for name in names}
        for n in range(1, edits + 2):
            css = original + f"\n:root {{ --bench-edit: {n}; }}\n"
            js = TWEAK.format(n=n)
            sides = {
                "kiln css": lambda: timed(tokens, css, lambda: events.wait_for(rb"event: css")),
                "esbuild css watch": lambda: timed(peer_tokens["watch"], css, peers[("css", "watch")].after_write),
                "esbuild css rebuild": lambda: timed(peer_tokens["rebuild"], css, peers[("css", "rebuild")].after_write),
                "kiln js": lambda: timed(kiln_site / "assets/js/_tweak.js", js, lambda: events.wait_for(rb"event: reload")),
                "esbuild js watch": lambda: timed(peer_tweak["watch"], js, peers[("js", "watch")].after_write),
                "esbuild js rebuild": lambda: timed(peer_tweak["rebuild"], js, peers[("js", "rebuild")].after_write),
            }
            order = names if n % 2 else list(reversed(names))
            for name in order:
                took = sides[name]()
                if n > 1:  # the first round warms up
                    results[name].append(took)
    finally:
        kiln_process.terminate()
        kiln_process.wait()
        for peer_process in peers.values():
            peer_process.stop()

    print(f"\n{'case':20} {'p50 ms':>8} {'p95 ms':>8}")
    for name, samples in results.items():
        print(f"{name:20} {statistics.median(samples):8.1f} {percentile(samples, 0.95):8.1f}")
    p50 = {name: statistics.median(samples) for name, samples in results.items()}
    print(f"\nCSS: kiln p50 {p50['kiln css']:.1f} ms (goal <= 30 ms); "
          f"{p50['kiln css'] / p50['esbuild css watch']:.2f}x esbuild watch, "
          f"{p50['kiln css'] / p50['esbuild css rebuild']:.2f}x esbuild rebuild()")
    print(f"JS:  kiln p50 {p50['kiln js']:.1f} ms = {p50['kiln js'] / p50['esbuild js watch']:.2f}x esbuild watch, "
          f"{p50['kiln js'] / p50['esbuild js rebuild']:.2f}x esbuild rebuild() (goal <= 1.0x)")


if __name__ == "__main__":
    main()
