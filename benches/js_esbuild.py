#!/usr/bin/env python3
"""kiln's JavaScript bundler vs esbuild, on real packages from the corpus.

Cases (each a site whose node_modules is the pinned npm corpus):
  three     three.js src/Three.js, everything exported: bundle + minify
  lodash    import { debounce, chunk, merge } from 'lodash-es'
  vector3   import { Vector3 } from 'three'
  split     two entries sharing preact, one with a dynamic import

esbuild runs `--bundle --minify --format=esm` (with `--splitting` for the
split case); kiln runs `kiln build` with precompression off and its cache
deleted before each run. Rounds are interleaved; medians. Sizes are raw
minified bytes and gzip -9 bytes of the JavaScript outputs.

A last measurement times kiln's no-change rebuild of the three case (cache
warm) against esbuild's cold build.

Usage: benches/js_esbuild.py [ROUNDS]     (default 9)
Goals (issue #5): three gzip <= 0.97x esbuild's and time <= 2.5x; lodash
bytes <= 1.05x; vector3 bytes <= 1.1x; split: no module duplicated;
no-change rebuild <= 0.1x esbuild's cold time.
"""
import gzip
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from common import SCRATCH, fresh_dir, interleaved, kiln_binary, median_ms, npm_corpus, npm_peers, npm_version, run_quiet

CASES = {
    "three": {"js/three.js": "export * from 'three/src/Three.js';\n"},
    "lodash": {"js/app.js": "import { debounce, chunk, merge } from 'lodash-es';\nexport { debounce, chunk, merge };\n"},
    "vector3": {"js/app.js": "import { Vector3 } from 'three';\nexport { Vector3 };\n"},
    "split": {
        "js/app.js": "import { h, render } from 'preact';\nexport const view = () => h('p', null, 'app');\n"
                     "export const lazy = () => import('./_widget.js');\nexport { render };\n",
        "js/admin.js": "import { h, render } from 'preact';\nexport const view = () => h('p', null, 'admin');\nexport { render };\n",
        "js/_widget.js": "import { h } from 'preact';\nexport const widget = () => h('section', null, 'widget');\n",
    },
}


def make_site(name, files, node_modules):
    site = fresh_dir(SCRATCH / "js-esbuild" / name)
    os.symlink(node_modules, site / "node_modules")
    entries = []
    for path, text in files.items():
        (site / "assets" / path).parent.mkdir(parents=True, exist_ok=True)
        (site / "assets" / path).write_text(text)
        if not Path(path).name.startswith("_"):
            entries.append(site / "assets" / path)
    return site, entries


def sizes(files):
    raw = sum(len(data) for data in files)
    packed = sum(len(gzip.compress(data, 9, mtime=0)) for data in files)
    return raw, packed


def kiln_outputs(site):
    manifest = json.loads((site / "dist/manifest.json").read_text())
    return [(site / "dist" / chunk["file"]).read_bytes() for chunk in manifest.values() if chunk["file"].endswith(".js")]


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 9
    kiln = kiln_binary()
    node_modules = npm_corpus()
    esbuild = npm_peers("esbuild") / "esbuild"
    print(f"esbuild {npm_version('esbuild')}; {rounds} interleaved rounds, medians\n")
    print(f"{'case':8} {'tool':8} {'time ms':>9} {'bytes':>10} {'gzip':>9} | time ratio | bytes ratio | gzip ratio")
    results = {}
    for name, files in CASES.items():
        site, entries = make_site(name, files, node_modules)
        out = site / "esbuild-out"
        esbuild_cmd = [str(esbuild), *map(str, entries), "--bundle", "--minify", "--format=esm",
                       f"--outdir={out}", "--log-level=error"]
        if name == "split":
            esbuild_cmd.append("--splitting")
        sides = {
            "kiln": [str(kiln), "build", "--root", str(site), "--set", "build.precompress=[]"],
            "esbuild": esbuild_cmd,
        }

        def prepare(side, site=site, out=out):
            if side == "kiln":
                shutil.rmtree(site / ".kiln-cache", ignore_errors=True)
            else:
                shutil.rmtree(out, ignore_errors=True)

        times = interleaved(sides, rounds, prepare)
        kiln_raw, kiln_gz = sizes(kiln_outputs(site))
        peer_files = [p.read_bytes() for p in out.rglob("*.js")]
        peer_raw, peer_gz = sizes(peer_files)
        k_ms, e_ms = median_ms(times["kiln"]), median_ms(times["esbuild"])
        results[name] = (k_ms, e_ms)
        print(f"{name:8} {'esbuild':8} {e_ms:9.1f} {peer_raw:10,} {peer_gz:9,} |")
        print(f"{name:8} {'kiln':8} {k_ms:9.1f} {kiln_raw:10,} {kiln_gz:9,} | "
              f"{k_ms / e_ms:9.2f}x | {kiln_raw / peer_raw:10.3f}x | {kiln_gz / peer_gz:9.3f}x")
        if name == "split":
            report_split(site, out)
        if name == "three":
            three_site, three_sides = site, sides
    rebuild(kiln, three_site, three_sides, rounds, results["three"][1])


def report_split(site, out):
    manifest = json.loads((site / "dist/manifest.json").read_text())
    files = {key: (site / "dist" / chunk["file"]).read_text() for key, chunk in manifest.items()}
    marker = "__k"  # preact's own children property: only preact's code has it
    holders = [key for key, code in files.items() if marker in code]
    print(f"         split: kiln chunks {sorted(manifest)}; preact code in {len(holders)} chunk(s): {holders}")
    peer = [p.name for p in out.rglob("*.js") if marker in p.read_text()]
    print(f"         split: esbuild puts preact in {len(peer)} chunk(s): {peer}")


def rebuild(kiln, site, sides, rounds, esbuild_cold_ms):
    run_quiet(sides["kiln"])
    warm = interleaved({"kiln": sides["kiln"]}, rounds)
    warm_ms = median_ms(warm["kiln"])
    print(f"\nno-change rebuild of the three case: {warm_ms:.1f} ms = {warm_ms / esbuild_cold_ms:.3f}x "
          f"esbuild's cold {esbuild_cold_ms:.1f} ms (goal <= 0.1x)")


if __name__ == "__main__":
    main()
