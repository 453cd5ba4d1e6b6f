#!/usr/bin/env python3
"""kiln's CSS stage vs the lightningcss CLI on Bootstrap 5's bootstrap.css.

Both bundle, minify and lower for the same targets (`>= 0.25%`). kiln runs a
whole `kiln build` with precompression off and its cache removed before
every run, so it also hashes, writes the manifest and swaps the output in:
the comparison is conservative for kiln.

Usage: benches/css_bootstrap.py [ROUNDS]     (default 15)
Goals (issue #2): output bytes <= lightningcss CLI's; time <= 1.2x.
"""
import shutil
import sys
from pathlib import Path

from common import SCRATCH, fresh_dir, interleaved, kiln_binary, median_ms, npm_corpus, npm_peers, npm_version

TARGETS = ">= 0.25%"


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 15
    kiln = kiln_binary()
    node_modules = npm_corpus()
    bin_dir = npm_peers("lightningcss-cli")
    source = node_modules / "bootstrap/dist/css/bootstrap.css"

    site = fresh_dir(SCRATCH / "css-bootstrap/site")
    (site / "assets/css").mkdir(parents=True)
    shutil.copy(source, site / "assets/css/bootstrap.css")
    peer_out = SCRATCH / "css-bootstrap/lightningcss.min.css"

    sides = {
        "kiln": [str(kiln), "build", "--root", str(site),
                 "--set", "build.precompress=[]", "--set", f'build.targets="{TARGETS}"'],
        "lightningcss": [str(bin_dir / "lightningcss"), "--minify", "--bundle",
                         "--targets", TARGETS, str(site / "assets/css/bootstrap.css"), "-o", str(peer_out)],
    }

    def prepare(name):
        if name == "kiln":
            shutil.rmtree(site / ".kiln-cache", ignore_errors=True)

    times = interleaved(sides, rounds, prepare)
    kiln_css = next((site / "dist/css").glob("bootstrap.*.css"))
    kiln_bytes = kiln_css.stat().st_size
    peer_bytes = peer_out.stat().st_size
    kiln_ms, peer_ms = median_ms(times["kiln"]), median_ms(times["lightningcss"])
    print(f"input: bootstrap.css {source.stat().st_size:,} B; targets {TARGETS!r}; {rounds} interleaved rounds")
    print(f"lightningcss-cli {npm_version('lightningcss-cli')}: {peer_ms:7.1f} ms  {peer_bytes:,} B")
    print(f"kiln build:            {kiln_ms:7.1f} ms  {kiln_bytes:,} B")
    print(f"ratio kiln/lightningcss: time {kiln_ms / peer_ms:.2f}x (goal <= 1.2x), "
          f"bytes {kiln_bytes / peer_bytes:.4f}x (goal <= 1.0x)")


if __name__ == "__main__":
    main()
