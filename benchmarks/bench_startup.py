"""Start-up time: process start -> first slice on screen, and peak memory.

Runs ``python main.py [CASE]`` N times (each a fresh process, under the current display
or a virtual one started by scripts/with-display.sh), with GUIDEPLAN_STARTUP_PROBE=1 so
the window prints the wall-clock time at which the first volume's slices were drawn and
quits. Reports the median, the runs, and the peak RSS. Target: under 3 s on 2 cores.

Usage: bash scripts/with-display.sh python benchmarks/bench_startup.py [--runs 5] [CASE]
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

ROOT = Path(__file__).resolve().parents[1]


def one_run(target: str | None) -> dict:
    with tempfile.TemporaryDirectory(prefix="gp-bench-") as home:
        env = dict(os.environ, GUIDEPLAN_STARTUP_PROBE="1", GUIDEPLAN_HOME=home)
        cmd = [sys.executable, str(ROOT / "main.py")] + ([target] if target else [])
        start = time.time()
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        raise RuntimeError(f"no start-up report; stderr:\n{out.stderr[-2000:]}")
    report = json.loads(lines[-1])
    report["first_slice_s"] = report["first_slice_wall"] - start
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("target", nargs="?", help="case or DICOM folder (default: first sample)")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    one_run(args.target)  # warm the page cache and Python's bytecode cache
    runs = [one_run(args.target) for _ in range(args.runs)]
    times = [r["first_slice_s"] for r in runs]
    peaks = [r["peak_rss_mb"] for r in runs]
    print(
        f"start-up to first slice: median {statistics.median(times):.2f} s "
        f"(runs {', '.join(f'{t:.2f}' for t in times)}); target < 3 s"
    )
    print(f"peak memory (RSS): median {statistics.median(peaks):.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
