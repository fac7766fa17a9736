"""Start-up time of `wsod --help` and the plain subcommands, this checkout vs another one, side by side.

    python tests/benchmarks/bench_cli_startup.py --baseline /path/to/other/checkout --iters 3

Each command runs as `python -m wsod_mammo ARGS` in a fresh interpreter with PYTHONPATH set to the checkout, so
both sides pay the same interpreter start-up and import from the same environment. Prints the median wall time
per command and checkout and the ratio baseline / this.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

COMMANDS = (["--help"], ["--version"], ["synth", "--help"], ["report", "--help"], ["prepare", "--help"],
            ["study", "--help"])  # fmt: skip
HERE = Path(__file__).resolve().parents[2]


def startup_seconds(checkout: Path, args: list[str], iters: int) -> float:
    """Median wall seconds of ``python -m wsod_mammo ARGS`` importing from ``checkout``."""
    env = {**os.environ, "PYTHONPATH": str(checkout)}
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        # cwd too: `python -m` puts the working directory first on sys.path
        subprocess.run([sys.executable, "-m", "wsod_mammo", *args], env=env, cwd=checkout, capture_output=True)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", type=Path, default=None, help="another checkout to compare with")
    parser.add_argument("--iters", type=int, default=3)
    args = parser.parse_args()
    for command in COMMANDS:
        ours = startup_seconds(HERE, command, args.iters)
        line = f"wsod {' '.join(command):<16} this checkout {ours:6.2f} s"
        if args.baseline is not None:  # interleaved per command: both sides see the same machine load
            theirs = startup_seconds(args.baseline, command, args.iters)
            line += f"   baseline {theirs:6.2f} s   ratio {theirs / ours:5.1f}x"
        print(line, flush=True)


if __name__ == "__main__":
    main()
