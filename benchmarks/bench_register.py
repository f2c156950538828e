"""Rigid CT-to-CT registration speed and accuracy: guideplan against elastix, same run.

Builds (once, cached in benchmarks/out/) a 512x512x300 planning CT and a contrast
"prior" CT of the sample phantom, the prior in its own frame with a known rigid
transform (rotation about the lesion plus a translation of several cm), then registers
the pair with ``guideplan.processing.registration.register`` (rigid, default settings)
and with elastix (itk-elastix, default "rigid" parameter map), alternating, ``--runs``
times each. A second scenario re-places the same prior (header only) a few mm from
alignment, where elastix's default map converges, to compare accuracy head to head.
Reports median wall times, their ratio, and the target registration error (TRE) of both
against the known transform, at the lesion and over points spread through the body.

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
#: A second, easy case: the same data only this far from alignment.
NEAR_ROTATION_DEG = (1.5, -1.0, 2.0)
NEAR_TRANSLATION_MM = (3.0, -4.0, 2.0)


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
            geometry.apply_affine(truth, (0.0, 10.0, lesion[2])) + np.array([5.0, -8.0, 12.0]),
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


def elastix_rigid(fixed: Volume, moving: Volume, initialise: bool = False):
    """A callable running elastix's default rigid map; returns the fixed->moving 4x4.

    The result image is not written (guideplan does not resample either): that halves
    elastix's time. ``initialise`` adds AutomaticTransformInitialization (image centres),
    which the default map lacks, to show elastix's accuracy from a fair start.
    """
    import itk

    def to_itk(volume: Volume):
        image = itk.image_from_array(volume.array.astype(np.float32))
        image.SetSpacing(volume.spacing)
        image.SetOrigin(volume.origin)
        image.SetDirection(itk.matrix_from_array(np.ascontiguousarray(volume.direction)))
        return image

    fixed_image, moving_image = to_itk(fixed), to_itk(moving)
    params = itk.ParameterObject.New()
    rigid = params.GetDefaultParameterMap("rigid")
    rigid["WriteResultImage"] = ["false"]
    if initialise:
        rigid["AutomaticTransformInitialization"] = ["true"]
    params.AddParameterMap(rigid)

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


def near_pair(moving: Volume, truth: np.ndarray, lesion: np.ndarray) -> tuple[Volume, np.ndarray]:
    """The same prior re-placed (header only, no resampling) so that it is only
    ~2.7 degrees and ~5 mm from the planning CT: a start elastix's default map can use."""
    small = geometry.rigid_matrix(NEAR_ROTATION_DEG, NEAR_TRANSLATION_MM, lesion)
    place = small @ np.linalg.inv(truth)
    m = place @ moving.index_to_lps
    direction = m[:3, :3] @ np.diag(1.0 / np.asarray(moving.spacing))
    return Volume(moving.array, moving.spacing, tuple(m[:3, 3]), direction, moving.meta), small


def run_scenario(
    fixed: Volume, moving: Volume, truth: np.ndarray, lesion: np.ndarray, runs: int, init: bool
) -> dict[str, object]:
    """Time and TRE of each tool on one pair, interleaved ``runs`` times."""
    points = body_points(fixed)
    runners = {
        "guideplan": lambda: register(fixed, moving).matrix,
        "elastix": elastix_rigid(fixed, moving),
    }
    if init:
        runners["elastix+init"] = elastix_rigid(fixed, moving, initialise=True)
    times: dict[str, list[float]] = {name: [] for name in runners}
    tre: dict[str, list[dict]] = {name: [] for name in runners}
    for _ in range(runs):
        for name, run in runners.items():
            start = time.perf_counter()
            matrix = run()
            times[name].append(time.perf_counter() - start)
            body = target_registration_error(matrix, truth, points)
            tre[name].append(
                {
                    "lesion_mm": target_registration_error(matrix, truth, lesion).max_mm,
                    "body_mean_mm": body.mean_mm,
                    "body_max_mm": body.max_mm,
                }
            )
    summary: dict[str, object] = {}
    for name in runners:
        summary[name] = {
            "median_s": statistics.median(times[name]),
            "times_s": [round(t, 2) for t in times[name]],
            "tre_lesion_mm": statistics.median(r["lesion_mm"] for r in tre[name]),
            "tre_body_mean_mm": statistics.median(r["body_mean_mm"] for r in tre[name]),
            "tre_body_max_mm": statistics.median(r["body_max_mm"] for r in tre[name]),
        }
    medians = {name: summary[name]["median_s"] for name in runners}  # type: ignore[index]
    summary["time_ratio_guideplan_over_elastix"] = medians["guideplan"] / medians["elastix"]
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    fixed, moving, truth, lesion = build_pair()
    moving_near, truth_near = near_pair(moving, truth, lesion)
    scenarios = {
        "far (7.8 deg, 43 mm at the lesion)": (moving, truth, True),
        "near (2.7 deg, 5.4 mm at the lesion)": (moving_near, truth_near, False),
    }
    report: dict[str, object] = {"size": list(SIZE), "runs": args.runs}
    for title, (mov, true_matrix, init) in scenarios.items():
        report[title] = run_scenario(fixed, mov, true_matrix, lesion, args.runs, init)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"rigid CT-to-CT, {'x'.join(map(str, SIZE))} pair, {args.runs} runs each (interleaved)")
    for title in scenarios:
        summary: dict = report[title]  # type: ignore[assignment]
        print(f"-- {title}")
        for name, s in summary.items():
            if not isinstance(s, dict):
                continue
            print(
                f"{name:>14}: median {s['median_s']:6.2f} s  runs {s['times_s']}  "
                f"TRE lesion {s['tre_lesion_mm']:.2f} mm, body mean "
                f"{s['tre_body_mean_mm']:.2f} / max {s['tre_body_max_mm']:.2f} mm"
            )
        ratio = summary["time_ratio_guideplan_over_elastix"]
        print(f"   time ratio guideplan/elastix: {ratio:.3f} (target <= 0.50)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
