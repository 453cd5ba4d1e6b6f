#!/usr/bin/env python3
"""A/B of two kiln binaries' serving path, with an A/A control.

Is a change to the serving path a regression, or noise? On these machines
two runs of one binary differ by several percent, so a ratio means little
without the spread of identical sides beside it. This script serves the
same built site from three servers, pinned together to CPU 1 (wrk on
CPU 0): the baseline twice (A and A', the control) and the candidate (B).
Each round runs every case on every server in an order that rotates from
round to round, so neither position nor drift favours a side. It reports,
per case, the median and range of the per-round ratios A'/A (the noise)
and B/A (the change).

A change shows no regression beyond noise when B/A's median lies within
A'/A's range.

Usage: KILN_BASELINE=/path/to/old/kiln [KILN_BINARY=/path/to/new/kiln] \\
       benches/serve_ab.py [ROUNDS] [SECONDS]          (default 12 rounds of 4 s)
Cases: the 304 revalidation and the 2 KB asset of benches/serve_static.py.
"""
import os
import shutil
import statistics
import sys
import urllib.error
import urllib.request
from pathlib import Path

import serve_static
from common import SCRATCH, fresh_dir, kiln_binary, wait_for_port

CASES = ["304", "2KB"]
SIDES = {"A": 18085, "A'": 18086, "B": 18087}


def start(root, binary, port):
    serve_static.PORTS[f"ab-{port}"] = port
    return serve_static.start_kiln(root, binary, f"ab-{port}")


def assert_revalidates(port, path, etag):
    """The 304 case must measure 304s: a tag that does not match would
    measure full responses instead."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        headers={"Accept-Encoding": "gzip", "If-None-Match": etag})
    try:
        with urllib.request.urlopen(request) as response:
            status = response.status
    except urllib.error.HTTPError as error:
        status = error.code
    if status != 304:
        sys.exit(f"serve_ab.py: port {port} answered the revalidation with {status}")


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 12
    seconds = int(sys.argv[2]) if len(sys.argv) > 2 else 4
    if not os.environ.get("KILN_BASELINE"):
        sys.exit("serve_ab.py: set KILN_BASELINE to the binary to compare with")
    baseline = Path(os.environ["KILN_BASELINE"])
    candidate = kiln_binary()
    serve_static.KILN = candidate
    work = SCRATCH / "serve-ab"
    fresh_dir(work)
    root = work / "site"
    root.mkdir()
    paths = serve_static.make_site(root)
    # A copy of the baseline, so A and A' are two processes of one binary
    # at two paths, as A and B are.
    control = work / "kiln-baseline-copy"
    shutil.copy2(baseline, control)
    binaries = {"A": baseline, "A'": control, "B": candidate}
    processes = [start(root, binaries[side], port) for side, port in SIDES.items()]
    try:
        for (side, port), process in zip(SIDES.items(), processes):
            wait_for_port(port, process)
        etags = {side: serve_static.etag_of(port, paths["304"]) for side, port in SIDES.items()}
        for side, port in SIDES.items():
            assert_revalidates(port, paths["304"], etags[side])
        rps = {(case, side): [] for case in CASES for side in SIDES}
        order = list(SIDES)
        for round_index in range(rounds):
            rotated = order[round_index % len(order):] + order[:round_index % len(order)]
            for case in CASES:
                for side in rotated:
                    headers = []
                    if case == "304":
                        # The gzip representation's tag, as serve_static.py sends.
                        headers = ["Accept-Encoding: gzip", f"If-None-Match: {etags[side]}"]
                    result = serve_static.wrk(SIDES[side], paths[case], seconds, headers)
                    rps[(case, side)].append(result["rps"])
    finally:
        for process in processes:
            process.terminate()
            process.wait()
    print(f"wrk -t1 -c32 on CPU 0, servers on CPU 1, {rounds} rotated rounds of {seconds} s")
    print(f"A = A' = {baseline}, B = {candidate}")
    print(f"{'case':6} {'A req/s':>9} {'B req/s':>9}   {'A/A median [range]':>24}   {'B/A median [range]':>24}")
    for case in CASES:
        a, control_rps, b = (rps[(case, side)] for side in SIDES)
        noise = [x / y for x, y in zip(control_rps, a)]
        change = [x / y for x, y in zip(b, a)]
        verdict = "within noise" if min(noise) <= statistics.median(change) <= max(noise) else "BEYOND noise"
        print(f"{case:6} {statistics.median(a):9.0f} {statistics.median(b):9.0f}   "
              f"{statistics.median(noise):6.3f} [{min(noise):.3f}, {max(noise):.3f}]   "
              f"{statistics.median(change):6.3f} [{min(change):.3f}, {max(change):.3f}]   {verdict}")


if __name__ == "__main__":
    main()
