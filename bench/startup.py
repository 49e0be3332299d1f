"""Whole-process start-up of the CLI: `bannermatch --help` and `similar C IMAGE`, each
run N times in a row (median and range), as a user would start them.
Usage: python bench/startup.py COLLECTION IMAGE [-n 5]"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time


def wall(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "bannermatch.cli", *args], capture_output=True, check=True
    )
    return time.perf_counter() - start


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("collection")
    ap.add_argument("image")
    ap.add_argument("-n", type=int, default=5)
    args = ap.parse_args(argv)
    wall(["similar", args.collection, args.image, "-q"])  # the ONNX export cached, if not yet
    for label, cli in [
        ("--help", ["--help"]),
        ("similar C IMAGE", ["similar", args.collection, args.image, "-k", "10", "-q"]),
    ]:
        times = [wall(cli) for _ in range(args.n)]
        print(
            f"{label:16s} median {statistics.median(times):.2f} s "
            f"(min {min(times):.2f}, max {max(times):.2f}, n={args.n})"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
