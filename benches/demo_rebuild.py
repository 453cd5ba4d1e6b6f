#!/usr/bin/env python3
"""Cold build vs no-change rebuild of the demo site (the repository root).

Cold: the build cache and dist/ removed before each run. No-change: the same
command again with the cache warm. Runs are interleaved.

Usage: benches/demo_rebuild.py [ROUNDS]     (default 15)
Goal (issue #2): no-change rebuild <= 5% of the cold build.
"""
import shutil
import sys

from common import REPO, SCRATCH, fresh_dir, interleaved, kiln_binary, median_ms
from common import run_quiet


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 15
    kiln = kiln_binary()
    # A copy, so the benchmark never touches the working tree's cache or dist/.
    site = fresh_dir(SCRATCH / "demo-rebuild") / "site"
    shutil.copytree(REPO / "assets", site / "assets")
    shutil.copy(REPO / "build.toml", site / "build.toml")
    for folder in ("templates", "data"):
        if (REPO / folder).is_dir():
            shutil.copytree(REPO / folder, site / folder)
    build = [str(kiln), "build", "--root", str(site)]

    def prepare(name):
        if name == "cold":
            shutil.rmtree(site / ".kiln-cache", ignore_errors=True)
            shutil.rmtree(site / "dist", ignore_errors=True)
        else:
            run_quiet(build)  # make sure the cache is warm and current

    times = interleaved({"cold": build, "no-change": build}, rounds, prepare)
    cold, warm = median_ms(times["cold"]), median_ms(times["no-change"])
    print(f"demo site, {rounds} interleaved rounds (medians)")
    print(f"cold build:        {cold:7.1f} ms")
    print(f"no-change rebuild: {warm:7.1f} ms")
    print(f"ratio: {warm / cold * 100:.1f}% of cold (goal <= 5%)")


if __name__ == "__main__":
    main()
