"""Entry-suggestion speed on a real-size CT: today's guideplan against a reference commit.

The real abdomen of the tests (TotalSegmentator, 3 mm) resampled onto a 512x512x300 grid
(0.71 x 0.59 x 1.12 mm, linear; its reference masks nearest-neighbour), cached in
benchmarks/out/. Target: the centre of the L2 vertebral body, planned prone with the
18 G 15 cm needle; structures from the reference masks (cord, aorta, IVC, kidneys,
bowel, stomach, lungs) as ``guideplan suggest --labels`` builds them.

Each version runs in its own subprocess (the reference commit from ``git archive`` into
a temporary folder): one untimed warm-up, then ``--runs`` timed calls of
``suggest_entries`` on a fresh ``PathContext`` (nothing cached between calls), wall and
CPU seconds; the structure fields are built once and timed apart (today on the masks
cropped to the box the needle can reach, as the CLI does). Medians and ratios.

Usage: python benchmarks/bench_suggest.py [--runs 5] [--reference 8c3a00e] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = HERE / "out"
CACHE = OUT / "abdomen_512x512x300.npz"
ORGANS = (
    "spinal_cord",
    "aorta",
    "inferior_vena_cava",
    "kidney_left",
    "kidney_right",
    "colon",
    "small_bowel",
    "duodenum",
    "stomach",
    "lungs",
)
SIZE = (512, 512, 300)  # i, j, k

_CHILD = r"""
import inspect, json, sys, time
import numpy as np
from guideplan.core.volume import Volume
from guideplan.planning.devices import load_catalog
from guideplan.planning.path_analysis import PathContext
from guideplan.planning.structures import structures_from_masks
from guideplan.planning.suggest import suggest_entries

data = np.load(sys.argv[1])
runs = int(sys.argv[2])
organs = sys.argv[3].split(",")
vol = Volume(data["ct"], tuple(data["spacing"]), tuple(data["origin"]), data["direction"],
             {"modality": "CT", "patient_position": "HFS"})
shape = vol.array.shape
masks = {n: np.unpackbits(data[n])[: np.prod(shape)].reshape(shape).astype(bool) for n in organs}
body = np.unpackbits(data["vertebral_body_L2"])[: np.prod(shape)].reshape(shape).astype(bool)
target = vol.index_to_physical(np.argwhere(body).mean(axis=0)[::-1])
needle = load_catalog().get("needle-18g-150")
t0, c0 = time.perf_counter(), time.process_time()
import guideplan.planning.suggest as suggest_module
if hasattr(suggest_module, "reach_box"):  # what `guideplan suggest --labels` does today
    from guideplan.core.resources import load_json
    box = suggest_module.reach_box(vol, target, needle, load_json("planning.json"), "prone")
    for name, mask in masks.items():
        cropped = np.zeros(shape, dtype=bool)
        cropped[box] = mask[box]
        masks[name] = cropped
fields = structures_from_masks(masks, vol)
fields_s = time.perf_counter() - t0
fields_cpu_s = time.process_time() - c0
extra = {}
if "vertebral_body" in inspect.signature(suggest_entries).parameters:
    extra["vertebral_body"] = body

def once():
    ctx = PathContext(vol, fields)
    w, c = time.perf_counter(), time.process_time()
    result = suggest_entries(ctx, target, needle, position="prone", **extra)
    return time.perf_counter() - w, time.process_time() - c, result

once()
wall, cpu = [], []
for _ in range(runs):
    w, c, result = once()
    wall.append(w)
    cpu.append(c)
top = result.ranked[0] if result.ranked else None
print(json.dumps({"wall_s": wall, "cpu_s": cpu, "fields_s": fields_s, "fields_cpu_s": fields_cpu_s,
                  "evaluated": len(result.candidates), "valid": len(result.ranked),
                  "top": None if top is None else {"route": top.route,
                                                   "length_mm": round(top.length_mm, 1),
                                                   "clearance_mm": round(top.clearance_mm, 1)}}))
"""


def make_case() -> Path:
    """The abdomen on a 512x512x300 grid, cached."""
    if CACHE.exists():
        return CACHE
    sys.path.insert(0, str(ROOT))
    from tests.real.real_ct import abdomen, resampled

    case = abdomen()
    extent = np.asarray(case.volume.size, dtype=float) * np.asarray(case.volume.spacing)
    spacing = tuple(float(e / n) for e, n in zip(extent, SIZE, strict=True))
    big = resampled(case, spacing, keep=[*ORGANS, "vertebral_body_L2"])
    assert big.volume.array.shape == SIZE[::-1], big.volume.array.shape
    OUT.mkdir(parents=True, exist_ok=True)
    packed = {n: np.packbits(big.masks[n]) for n in (*ORGANS, "vertebral_body_L2")}
    np.savez(
        CACHE,
        ct=big.volume.array,
        spacing=np.asarray(big.volume.spacing),
        origin=np.asarray(big.volume.origin),
        direction=np.asarray(big.volume.direction),
        **packed,
    )
    return CACHE


def export_reference(commit: str, folder: Path) -> Path:
    """guideplan and resources of ``commit`` in ``folder`` (git archive)."""
    tar = folder / "ref.tar"
    with tar.open("wb") as f:
        subprocess.run(
            ["git", "archive", commit, "guideplan", "resources"], cwd=ROOT, stdout=f, check=True
        )
    with tarfile.open(tar) as t:
        t.extractall(folder / "src", filter="data")
    return folder / "src"


def run_child(src: Path, case: Path, runs: int) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(case), str(runs), ",".join(ORGANS)],
        capture_output=True,
        text=True,
        check=True,
        cwd=src,
        env={"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "2"},
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--reference", default="8c3a00e", help="commit to compare with")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    case = make_case()
    with tempfile.TemporaryDirectory() as tmp:
        reference = export_reference(args.reference, Path(tmp))
        results = {
            "today": run_child(ROOT, case, args.runs),
            args.reference: run_child(reference, case, args.runs),
        }
    summary = {
        name: {
            "median_wall_s": round(statistics.median(r["wall_s"]), 3),
            "median_cpu_s": round(statistics.median(r["cpu_s"]), 3),
            "fields_s": round(r["fields_s"], 3),
            "fields_cpu_s": round(r["fields_cpu_s"], 3),
            "fields_plus_median_wall_s": round(r["fields_s"] + statistics.median(r["wall_s"]), 3),
            "evaluated": r["evaluated"],
            "valid": r["valid"],
            "top": r["top"],
        }
        for name, r in results.items()
    }
    today, ref = summary["today"], summary[args.reference]
    summary["ratio_wall_today_over_reference"] = round(
        today["median_wall_s"] / ref["median_wall_s"], 2
    )
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(
        f"suggest_entries on a {'x'.join(map(str, SIZE))} CT (abdomen resampled), {args.runs} runs"
    )
    for name in ("today", args.reference):
        s = summary[name]
        print(
            f"  {name:>8}: median {s['median_wall_s']:.3f} s wall, {s['median_cpu_s']:.3f} s CPU; "
            f"fields {s['fields_s']:.2f} s wall, {s['fields_cpu_s']:.2f} s CPU "
            f"(fields + suggest {s['fields_plus_median_wall_s']:.2f} s); "
            f"{s['valid']} of {s['evaluated']} paths valid; "
            f"top {s['top']}"
        )
    print(f"  ratio today / {args.reference}: {summary['ratio_wall_today_over_reference']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
