"""CLI start-up benchmark: wall time of `narrative --help`, of one command's `--help`, and of a
read-only command in an empty workspace, each the median of N fresh processes. Target: the
root `--help` under 0.5 s (issue 16); the ratio printed is median / target.

    .venv/bin/python bench/cli_startup.py [--runs 15] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NARRATIVE = Path(sys.executable).with_name("narrative")
TARGET_S = 0.5


def _median_wall(args: list[str], runs: int, env: dict) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run([str(NARRATIVE), *args], env=env, capture_output=True, check=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "NARRATIVES_HOME": str(Path(tmp) / "ws")}
        subprocess.run([str(NARRATIVE), "init", env["NARRATIVES_HOME"]], env=env,
                       capture_output=True, check=True)  # fmt: skip
        cases = {
            "narrative --help": ["--help"],
            "narrative process --help": ["process", "--help"],
            "narrative status (empty workspace)": ["status"],
        }
        figures = {name: _median_wall(argv, args.runs, env) for name, argv in cases.items()}
    load = os.getloadavg()[0]
    if args.json:
        print(json.dumps({"median_s": figures, "target_s": TARGET_S, "load_avg_1m": load}))
        return
    print(f"{'case':40} {'median':>8} {'/target':>8}   (load average {load:.1f})")
    for name, seconds in figures.items():
        print(f"{name:40} {seconds:7.3f}s {seconds / TARGET_S:7.2f}x")


if __name__ == "__main__":
    main()
