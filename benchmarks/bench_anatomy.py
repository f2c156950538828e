"""Automatic anatomy on a real-size real CT: time and peak memory of `segment_anatomy`
(body, skin, bone, canal, vertebral bodies and levels), this tree against another
revision of guideplan, in the same run.

The CT is the real abdomen of tests/data/real (TotalSegmentator's example, 3 mm)
resampled to 0.8 x 0.8 x 1.0 mm (458 x 379 x 336 voxels, 58 M: the field's usual planning
CT, the issue's stand-in for 512 x 512 x 300). It is written once to benchmarks/out/.
Each run is a fresh subprocess (so peak memory is that run's own: ru_maxrss minus the
RSS after the CT is loaded and the modules imported), repeated ``--runs`` times per
revision, alternating revisions so that machine noise hits both; medians are reported.

The field's automatic peer, TotalSegmentator --fast, needs network weights and minutes
on a CPU: it cannot run here (no network), so the peer is guideplan's previous anatomy.

Usage: python benchmarks/bench_anatomy.py [--runs 5] [--baseline fea6e51] [--json]
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

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = HERE / "out" / "anatomy_real"

CHILD = r"""
import json, resource, sys, time
import numpy as np
from guideplan.core.volume import Volume
from guideplan.processing import anatomy
meta = json.loads(open(sys.argv[1] + "/meta.json").read())
volume = Volume(np.load(sys.argv[1] + "/ct.npy"), meta["spacing"], meta["origin"],
                meta={"modality": "CT", "patient_position": "HFS"})
def rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
base = rss_mb()
t = time.perf_counter()
result = anatomy.segment_anatomy(volume)
elapsed = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
summary = result.summary(volume.spacing)
print(json.dumps({"seconds": elapsed, "peak_mb": peak, "base_mb": base,
                  "canal_found": summary.get("canal_found"),
                  "levels": [v.get("name") for v in summary.get("vertebrae", [])]}))
"""


def make_volume() -> Path:
    """The stand-in CT (cached): the real abdomen at 0.8 x 0.8 x 1.0 mm."""
    if (OUT / "meta.json").exists():
        return OUT
    import numpy as np

    sys.path.insert(0, str(ROOT))
    from tests.real.real_ct import abdomen, resampled

    case = resampled(abdomen(), (0.8, 0.8, 1.0), keep=[])
    OUT.mkdir(parents=True, exist_ok=True)
    np.save(OUT / "ct.npy", case.volume.array)
    (OUT / "meta.json").write_text(
        json.dumps({"spacing": case.volume.spacing, "origin": case.volume.origin})
    )
    return OUT


def checkout(revision: str) -> Path:
    """A clean copy of ``revision``'s guideplan package (git archive, no work tree)."""
    target = Path(tempfile.mkdtemp(prefix=f"guideplan-{revision}-"))
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", revision, "guideplan", "resources"],
        check=True,
        capture_output=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target


def run_once(tree: Path, data: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(data)],
        cwd=str(tree),
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"anatomy run in {tree} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--baseline", default="fea6e51", help="git revision to compare with")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    data = make_volume()
    trees = {"this tree": ROOT, args.baseline: checkout(args.baseline)}
    results: dict[str, list[dict]] = {name: [] for name in trees}
    for _ in range(args.runs):
        for name, tree in trees.items():
            results[name].append(run_once(tree, data))
    summary = {}
    for name, runs in results.items():
        summary[name] = {
            "median_s": round(statistics.median(r["seconds"] for r in runs), 3),
            "median_peak_mb": round(statistics.median(r["peak_mb"] for r in runs), 1),
            "median_peak_over_load_mb": round(
                statistics.median(r["peak_mb"] - r["base_mb"] for r in runs), 1
            ),
            "canal_found": runs[-1]["canal_found"],
            "levels": runs[-1]["levels"],
        }
    mine, base = summary["this tree"], summary[args.baseline]
    summary["ratio_time_baseline_over_this"] = round(base["median_s"] / mine["median_s"], 2)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        shape = "458 x 379 x 336 (0.8 x 0.8 x 1.0 mm, the real abdomen resampled)"
        print(f"segment_anatomy on {shape}, {args.runs} runs each:")
        for name in trees:
            s = summary[name]
            print(
                f"  {name:>10}: median {s['median_s']:.2f} s, peak {s['median_peak_mb']:.0f} MB "
                f"({s['median_peak_over_load_mb']:.0f} MB over the loaded CT); canal found "
                f"{s['canal_found']}; levels {s['levels']}"
            )
        ratio = summary["ratio_time_baseline_over_this"]
        print(f"  time ratio {args.baseline} / this tree: {ratio}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
