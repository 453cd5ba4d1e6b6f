#!/usr/bin/env python3
"""kiln's PNG stage vs the oxipng CLI on the shared image corpus.

Both run oxipng's preset level 2 with metadata stripped (`--strip safe`),
on every PNG of ../shared/corpus/images. kiln runs a whole `kiln build`
with WebP, AVIF and resized variants off, precompression off and its cache
deleted before each run; oxipng runs on fresh copies (`--out` into a
scratch dir). Rounds are interleaved; medians.

It also reports how much smaller kiln's WebP and AVIF variants are than the
optimised originals, over every raster image of the corpus (JPEGs too).

Usage: benches/png_oxipng.py [ROUNDS]     (default 7)
Needs: oxipng 10.2.1, installed by this script with `cargo install` into
the scratch dir on first use.
Goal (issue #4): bytes <= oxipng's; time <= 1.1x.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from common import SCRATCH, fresh_dir, interleaved, kiln_binary, median_ms, shared_dir

OXIPNG_ROOT = SCRATCH / "oxipng"


def oxipng_binary():
    binary = OXIPNG_ROOT / "bin/oxipng"
    if not binary.exists():
        subprocess.run(["cargo", "install", "oxipng", "--version", "10.2.1", "--locked",
                        "--root", str(OXIPNG_ROOT)], check=True)
    return binary


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 7
    kiln = kiln_binary()
    oxipng = oxipng_binary()
    corpus = shared_dir() / "corpus/images"
    pngs = sorted(corpus.glob("*.png"))
    work = fresh_dir(SCRATCH / "png-oxipng")
    site = work / "site"
    (site / "assets/images").mkdir(parents=True)
    for png in pngs:
        shutil.copy(png, site / "assets/images" / png.name)
    (site / "build.toml").write_text(
        "[build]\nprecompress = []\n[images]\npng_level = 2\nstrip_metadata = true\n"
        "webp = false\navif = false\nwidths = []\n")
    peer_out = work / "oxipng-out"

    def prepare(name):
        if name == "kiln":
            shutil.rmtree(site / ".kiln-cache", ignore_errors=True)
        else:
            shutil.rmtree(peer_out, ignore_errors=True)
            peer_out.mkdir()

    sides = {
        "kiln": [str(kiln), "build", "--root", str(site)],
        "oxipng": [str(oxipng), "-o", "2", "--strip", "safe", "--quiet", "--dir", str(peer_out),
                   *[str(png) for png in pngs]],
    }
    times = interleaved(sides, rounds, prepare)
    manifest = json.loads((site / "dist/manifest.json").read_text())
    kiln_bytes = sum((site / "dist" / chunk["file"]).stat().st_size for chunk in manifest.values())
    peer_bytes = sum(path.stat().st_size for path in peer_out.iterdir())
    source_bytes = sum(png.stat().st_size for png in pngs)
    kiln_ms, peer_ms = median_ms(times["kiln"]), median_ms(times["oxipng"])
    version = subprocess.run([str(oxipng), "--version"], capture_output=True, text=True).stdout.strip()
    print(f"{len(pngs)} PNGs, {source_bytes:,} B; level 2, strip safe; {rounds} interleaved rounds")
    print(f"{version}: {peer_ms:8.1f} ms  {peer_bytes:,} B")
    print(f"kiln build:    {kiln_ms:8.1f} ms  {kiln_bytes:,} B")
    print(f"ratio kiln/oxipng: time {kiln_ms / peer_ms:.2f}x (goal <= 1.1x), "
          f"bytes {kiln_bytes / peer_bytes:.4f}x (goal <= 1.0x)")
    modern_formats(kiln, corpus, work)


def modern_formats(kiln, corpus, work):
    """Sizes of full-width WebP and AVIF variants against the optimised originals."""
    site = work / "formats"
    (site / "assets/images").mkdir(parents=True)
    for image in sorted(corpus.iterdir()):
        if image.suffix in (".png", ".jpg"):
            shutil.copy(image, site / "assets/images" / image.name)
    (site / "build.toml").write_text("[build]\nprecompress = []\n[images]\nwidths = []\n")
    subprocess.run([str(kiln), "build", "--root", str(site)], check=True, stdout=subprocess.DEVNULL)
    manifest = json.loads((site / "dist/manifest.json").read_text())
    totals = {"original": 0, "webp": 0, "avif": 0}
    print("\nfull-width variants vs the optimised original (defaults: WebP q80, AVIF q60 speed 8):")
    print(f"{'image':24} {'original':>10} {'webp':>10} {'avif':>10}")
    for key, chunk in sorted(manifest.items()):
        original = (site / "dist" / chunk["file"]).stat().st_size
        sizes = {"original": original}
        for variant in chunk.get("variants", []):
            sizes[variant["format"]] = (site / "dist" / variant["file"]).stat().st_size
        for fmt in totals:
            totals[fmt] += sizes.get(fmt, original)
        print(f"{key:24} {original:10,} {sizes.get('webp', original):10,} {sizes.get('avif', original):10,}")
    print(f"{'total':24} {totals['original']:10,} {totals['webp']:10,} {totals['avif']:10,}")
    print(f"WebP is {totals['webp'] / totals['original']:.2f}x and AVIF {totals['avif'] / totals['original']:.2f}x "
          "the bytes of the optimised originals (a variant that is not smaller is not kept; the original counts)")


if __name__ == "__main__":
    main()
