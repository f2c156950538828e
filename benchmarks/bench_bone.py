"""Bone mask on a real-size real CT: time and peak memory of `bone_labels`, this tree
against another revision of guideplan (default: main), and the agreement (Dice) of their
labels.

The CT is the stand-in of bench_anatomy.py: the real abdomen of tests/data/real resampled
to 0.8 x 0.8 x 1.0 mm (458 x 379 x 336 voxels, 58 M), cached in benchmarks/out/. Each run
is a fresh subprocess; the body mask is computed there first and not timed (bone_labels
gets it, as segment_anatomy passes it). Peak memory is ru_maxrss, and the same minus the
RSS before bone_labels (CT, body and modules loaded). Revisions alternate run by run so
that machine noise hits both; medians are reported.

Usage: python benchmarks/bench_bone.py [--runs 3] [--baseline main] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from bench_anatomy import checkout, make_volume  # noqa: E402

CHILD = r"""
import json, resource, sys, time
import numpy as np
from guideplan.core.volume import Volume
from guideplan.processing import anatomy, bone
meta = json.loads(open(sys.argv[1] + "/meta.json").read())
volume = Volume(np.load(sys.argv[1] + "/ct.npy"), meta["spacing"], meta["origin"],
                meta={"modality": "CT", "patient_position": "HFS"})
body = anatomy.body_mask(volume)
def rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
base = rss_mb()
t = time.perf_counter()
labels = bone.bone_labels(volume, body)
elapsed = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
np.save(sys.argv[2], labels)
print(json.dumps({"seconds": elapsed, "peak_mb": peak, "base_mb": base}))
"""


def run_once(tree: Path, data: Path, labels: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(data), str(labels)],
        cwd=str(tree),
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"bone run in {tree} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.count_nonzero(a & b) / max(np.count_nonzero(a) + np.count_nonzero(b), 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--baseline", default="main", help="git revision to compare with")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    data = make_volume()
    trees = {"this tree": ROOT, args.baseline: checkout(args.baseline)}
    scratch = Path(tempfile.mkdtemp(prefix="bench-bone-"))
    results: dict[str, list[dict]] = {name: [] for name in trees}
    for _ in range(args.runs):
        for n, (name, tree) in enumerate(trees.items()):
            results[name].append(run_once(tree, data, scratch / f"labels{n}.npy"))
    summary: dict = {}
    for name, runs in results.items():
        summary[name] = {
            "median_s": round(statistics.median(r["seconds"] for r in runs), 3),
            "runs_s": [round(r["seconds"], 2) for r in runs],
            "median_peak_mb": round(statistics.median(r["peak_mb"] for r in runs), 1),
            "median_peak_over_start_mb": round(
                statistics.median(r["peak_mb"] - r["base_mb"] for r in runs), 1
            ),
        }
    mine, base = (np.load(scratch / f"labels{n}.npy") for n in range(2))
    summary["dice_bone"] = round(dice(mine > 0, base > 0), 5)
    summary["dice_cortical"] = round(dice(mine == 1, base == 1), 5)
    summary["voxels_differing"] = int(np.count_nonzero(mine != base))
    first, second = summary["this tree"], summary[args.baseline]
    summary["ratio_time_baseline_over_this"] = round(second["median_s"] / first["median_s"], 2)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"bone_labels on 458 x 379 x 336 (0.8 x 0.8 x 1.0 mm), {args.runs} runs each:")
        for name in trees:
            s = summary[name]
            print(
                f"  {name:>10}: median {s['median_s']:.2f} s {s['runs_s']}, peak "
                f"{s['median_peak_mb']:.0f} MB ({s['median_peak_over_start_mb']:.0f} MB over "
                "the CT and body)"
            )
        print(
            f"  Dice bone {summary['dice_bone']}, cortical {summary['dice_cortical']}, "
            f"{summary['voxels_differing']} voxels differ; time ratio "
            f"{args.baseline} / this tree: {summary['ratio_time_baseline_over_this']}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
