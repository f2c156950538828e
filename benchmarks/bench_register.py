"""Rigid CT-to-CT registration speed and accuracy: guideplan against elastix, same run.

Builds (once, cached in benchmarks/out/) a 512x512x300 planning CT and a contrast
"prior" CT of the sample phantom, the prior in its own frame with a known rigid
transform (rotation about a point near the spine plus a translation of several cm), then
registers the pair with ``guideplan.processing.registration.register`` (rigid, default
settings) and with elastix (itk-elastix, default "rigid" parameter map), alternating,
``--runs`` times each. Reports median wall times, their ratio, and the target
registration error (TRE) of both against the known transform, at the lesion and over
points spread through the body.

guideplan is timed from its int16 volumes (its own preprocessing included); elastix is
timed from ready float32 ITK images (its conversion excluded), which favours elastix.

Usage: python benchmarks/bench_register.py [--runs 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from guideplan.core import geometry
from guideplan.core.volume import Volume
from guideplan.processing.registration import register, target_registration_error

HERE = Path(__file__).resolve().parent
OUT = HERE / "out" / "register512"
SIZE = (512, 512, 300)
CASE = "case01_l2_lytic_rfa_cement"
#: The known fixed->moving motion: Euler angles (deg) about the lesion, translation (mm).
ROTATION_DEG = (4.0, -3.0, 6.0)
TRANSLATION_MM = (15.0, -20.0, 35.0)


def build_pair() -> tuple[Volume, Volume, np.ndarray, np.ndarray]:
    """(fixed, moving, true fixed->moving matrix, lesion centre), cached as .npy."""
    from guideplan.samples import imaging
    from guideplan.samples.cases import build_cases
    from guideplan.samples.generate import CT_NOISE_HU

    spec = build_cases()[CASE]
    lesion = np.asarray(spec.lesion.center, dtype=float)
    truth = geometry.rigid_matrix(ROTATION_DEG, TRANSLATION_MM, lesion)
    grids = {
        "fixed": imaging.centred_grid(
            (0.0, 10.0, lesion[2]), np.eye(3), (0.78, 0.78, 1.0), SIZE, np.eye(4)
        ),
        "moving": imaging.centred_grid(
            geometry.apply_affine(truth, (0.0, 10.0, lesion[2])) + (5.0, -8.0, 12.0),
            np.eye(3),
            (0.8, 0.8, 1.0),
            SIZE,
            truth,
        ),
    }
    volumes = {}
    OUT.mkdir(parents=True, exist_ok=True)
    for name, grid in grids.items():
        path = OUT / f"{name}.npy"
        if path.exists():
            array = np.load(path)
        else:
            print(f"rendering the {name} CT ({'x'.join(map(str, SIZE))}) once ...", flush=True)
            phantom = spec.phantom(1.0 if name == "fixed" else 0.7)
            hu, _, _ = imaging.ct_image(
                phantom, grid, contrast=name == "moving", noise_hu=CT_NOISE_HU, seed=7
            )
            array = np.clip(np.rint(hu), -1024, 3071).astype(np.int16)
            np.save(path, array)
        volumes[name] = Volume(
            array, grid.spacing, tuple(grid.origin), grid.direction, {"modality": "CT"}
        )
    return volumes["fixed"], volumes["moving"], truth, lesion


def body_points(fixed: Volume, n: int = 500) -> np.ndarray:
    """Points spread through the body (> -400 HU), for a volume-wide TRE."""
    sub = fixed.array[::8, ::8, ::8]
    k, j, i = np.nonzero(sub > -400)
    pts = fixed.index_to_physical(np.stack([i, j, k], 1) * 8.0)
    rng = np.random.default_rng(0)
    return pts[rng.choice(len(pts), size=min(n, len(pts)), replace=False)]


def elastix_rigid(fixed: Volume, moving: Volume):
    """A callable running elastix's default rigid map; returns the fixed->moving 4x4."""
    import itk

    def to_itk(volume: Volume):
        image = itk.image_from_array(volume.array.astype(np.float32))
        image.SetSpacing(volume.spacing)
        image.SetOrigin(volume.origin)
        image.SetDirection(itk.matrix_from_array(np.ascontiguousarray(volume.direction)))
        return image

    fixed_image, moving_image = to_itk(fixed), to_itk(moving)
    params = itk.ParameterObject.New()
    params.AddParameterMap(params.GetDefaultParameterMap("rigid"))

    def run() -> np.ndarray:
        _, result = itk.elastix_registration_method(
            fixed_image, moving_image, parameter_object=params, log_to_console=False
        )
        tmap = result.GetParameterMap(0)
        angles_t = np.array([float(v) for v in tmap["TransformParameters"]])
        centre = np.array([float(v) for v in tmap["CenterOfRotationPoint"]])
        if tmap.get("ComputeZYX", ("false",))[0] == "true":
            raise RuntimeError("unexpected ComputeZYX=true in the elastix result")
        # elastix EulerTransform = ITK Euler3DTransform: p' = R (p - c) + c + t, R = Rz Rx Ry
        return geometry.rigid_matrix(np.rad2deg(angles_t[:3]), angles_t[3:], centre)

    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    fixed, moving, truth, lesion = build_pair()
    points = body_points(fixed)
    run_elastix = elastix_rigid(fixed, moving)
    times: dict[str, list[float]] = {"guideplan": [], "elastix": []}
    tre: dict[str, list[dict]] = {"guideplan": [], "elastix": []}
    for _ in range(args.runs):
        for name in times:
            start = time.perf_counter()
            matrix = register(fixed, moving).matrix if name == "guideplan" else run_elastix()
            times[name].append(time.perf_counter() - start)
            at_lesion = target_registration_error(matrix, truth, lesion)
            body = target_registration_error(matrix, truth, points)
            tre[name].append(
                {
                    "lesion_mm": at_lesion.max_mm,
                    "body_mean_mm": body.mean_mm,
                    "body_max_mm": body.max_mm,
                }
            )
    summary: dict[str, object] = {"size": list(SIZE), "runs": args.runs}
    for name in times:
        summary[name] = {
            "median_s": statistics.median(times[name]),
            "times_s": [round(t, 2) for t in times[name]],
            "tre_lesion_mm": statistics.median(r["lesion_mm"] for r in tre[name]),
            "tre_body_mean_mm": statistics.median(r["body_mean_mm"] for r in tre[name]),
            "tre_body_max_mm": statistics.median(r["body_max_mm"] for r in tre[name]),
        }
    g, e = summary["guideplan"], summary["elastix"]
    ratio = g["median_s"] / e["median_s"]  # type: ignore[index]
    summary["time_ratio_guideplan_over_elastix"] = ratio
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"rigid CT-to-CT, {'x'.join(map(str, SIZE))} pair, {args.runs} runs each (interleaved)")
    for name in ("guideplan", "elastix"):
        s = summary[name]
        print(
            f"{name:>10}: median {s['median_s']:.2f} s  runs {s['times_s']}  "  # type: ignore[index]
            f"TRE lesion {s['tre_lesion_mm']:.2f} mm, body mean {s['tre_body_mean_mm']:.2f} / "  # type: ignore[index]
            f"max {s['tre_body_max_mm']:.2f} mm"  # type: ignore[index]
        )
    print(f"time ratio guideplan/elastix: {ratio:.2f} (target <= 0.50)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
