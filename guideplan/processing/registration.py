"""Registration of a prior study (CT, MR, PET) to the planning CT, with SimpleITK.

Every transform here maps FIXED (planning CT) LPS points to MOVING LPS points: the ITK
resampling convention, what a .tfm file means and what ``TransformNode.matrix`` holds.
To show the prior on the planning grid, sample the moving image at ``T(p)``.

Why it is built this way:

* Speed comes from the coarse grids, not from fewer iterations: each pyramid level is one
  ``BinShrink`` pass over the original (no full-resolution smoothing, no gradient
  images), the metric draws a few thousand random samples with a fixed seed (so the
  same inputs give the same transform), and the finest level is about 1.5 mm, which
  already gives sub-millimetre rigid accuracy.
* Mattes mutual information works for any modality pair. CT is clamped to a bone and
  soft-tissue range so that air, lung and contrast peaks do not drive the match.
* Regular-step gradient descent with scales from the region's size: a step of one
  unit moves points by about one millimetre whether it rotates or translates.
* The start matters more than the optimiser: a local optimiser started 5 cm away can
  lock onto the neighbouring vertebra. ``init="auto"`` takes the scanner coordinates as
  they are, the image centres and the body centroids, scores a +-6 cm translation grid
  around each with normalised mutual information (numpy, a fraction of a second), and
  refines the best few distinct candidates at the coarsest level.
* The metric samples the image covering the smaller volume (a thick-slice MR beside a
  long CT): samples drawn in the larger one would mostly fall outside the other, and
  the overlap, not the anatomy, would drive the match.
* Series sharing a frame of reference (PET/CT) are aligned by geometry: no optimisation.

Numbers (levels, samples, clamp range, search grid) live in resources/registration.json.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from guideplan.core import geometry
from guideplan.core.errors import CancelledError, RegistrationError
from guideplan.core.progress import ProgressFn, as_cancel, check_cancel
from guideplan.core.resources import load_json
from guideplan.core.volume import Volume

#: A sphere in the fixed image: centre x, y, z (LPS mm) and radius (mm).
Sphere = Sequence[float]
#: (fixed LPS point, moving LPS point) pairs.
LandmarkPairs = Sequence[tuple[geometry.ArrayLike, geometry.ArrayLike]] | np.ndarray

MODES = ("rigid", "affine", "deformable")
INITS = ("auto", "geometry", "moments", "identity", "landmarks")


@dataclass
class RegistrationResult:
    """What a registration found, and how well (for the quality panel and the CLI)."""

    #: 4x4 affine mapping fixed LPS points to moving LPS points (the linear part only
    #: for a deformable result; ``transform`` holds the whole thing).
    matrix: np.ndarray
    #: Mattes mutual information at the finest level (negative: lower is better).
    metric_value: float
    mode: str
    #: "intensity", "landmarks" or "frame-of-reference".
    method: str
    iterations: int = 0
    wall_s: float = 0.0
    #: RMS distance (mm) between T(fixed landmark) and its moving landmark.
    tre_mm: float | None = None
    landmark_errors_mm: list[float] = field(default_factory=list)
    #: The full fixed->moving SimpleITK transform (B-spline/displacement for deformable).
    transform: sitk.Transform | None = None
    init: str = ""
    stop_reason: str = ""

    def transform_points(self, points: geometry.ArrayLike) -> np.ndarray:
        """Map fixed LPS points to moving LPS points with the full transform."""
        if self.transform is None:
            return geometry.apply_affine(self.matrix, points)
        return transform_points(self.transform, points)

    def to_json(self) -> dict[str, Any]:
        return {
            "matrix": np.asarray(self.matrix, dtype=float).tolist(),
            "metric": None if math.isnan(self.metric_value) else float(self.metric_value),
            "mode": self.mode,
            "method": self.method,
            "init": self.init,
            "iterations": self.iterations,
            "wall_s": round(self.wall_s, 3),
            "tre_mm": self.tre_mm,
            "landmark_errors_mm": self.landmark_errors_mm,
            "stop_reason": self.stop_reason,
        }


@dataclass
class TREStats:
    """Target registration error over a set of points (mm)."""

    mean_mm: float
    rms_mm: float
    median_mm: float
    max_mm: float
    per_point_mm: np.ndarray

    def __str__(self) -> str:
        return (
            f"mean {self.mean_mm:.2f} mm, rms {self.rms_mm:.2f}, median {self.median_mm:.2f}, "
            f"max {self.max_mm:.2f} (n={len(self.per_point_mm)})"
        )


# -- public API ---------------------------------------------------------------------------
def register(
    fixed: Volume,
    moving: Volume,
    mode: str = "rigid",
    *,
    landmarks: LandmarkPairs | None = None,
    mask_lps: Sphere | None = None,
    init: str = "auto",
    rigid_region: Sphere | None = None,
    refine: bool = True,
    trust_frame_of_reference: bool = True,
    progress: ProgressFn | None = None,
    cancel: Any = None,
) -> RegistrationResult:
    """Find the transform mapping ``fixed`` (planning CT) LPS points to ``moving`` ones.

    ``mask_lps`` limits the metric to a sphere around the target (posture differs between
    scans). ``init``: "auto" (best of identity, image centres and body centroids),
    "geometry" (image centres), "moments" (body centroids), "identity" or "landmarks"
    (least-squares fit of ``landmarks``, then refined by intensities unless
    ``refine=False``). ``rigid_region`` (deformable mode) is kept rigid: the B-spline
    refinement fades out inside it. Series sharing a frame of reference are aligned by
    geometry alone unless ``trust_frame_of_reference=False``.
    ``cancel`` (callable or Event) raises :class:`CancelledError`.
    """
    if mode not in MODES:
        raise RegistrationError(
            f"Unknown registration mode {mode!r}.", hint=f"Choose one of {', '.join(MODES)}."
        )
    if init not in INITS:
        raise RegistrationError(
            f"Unknown initialisation {init!r}.", hint=f"Choose one of {', '.join(INITS)}."
        )
    if init == "landmarks" and landmarks is None:
        raise RegistrationError(
            "Landmark initialisation needs landmark pairs.",
            hint="Click at least three corresponding points in both images.",
        )
    start = time.perf_counter()
    is_cancelled = as_cancel(cancel)
    report = progress or (lambda _f, _m: None)

    run = _Intensity(fixed, moving, mode, mask_lps, rigid_region, report, is_cancelled)
    shared_frame = trust_frame_of_reference and same_frame_of_reference(fixed, moving)
    if shared_frame and run.identity_is_best():
        result = RegistrationResult(np.eye(4), math.nan, mode, "frame-of-reference")
        result.stop_reason = "same frame of reference: aligned by the scanner's geometry"
    elif init == "landmarks" and not refine:
        linear_mode = "affine" if mode == "affine" else "rigid"
        matrix = landmark_transform(landmarks, linear_mode)  # type: ignore[arg-type]
        result = RegistrationResult(matrix, math.nan, mode, "landmarks", init="landmarks")
        result.stop_reason = "landmark fit (no intensity refinement)"
    else:
        result = run(init, landmarks)
        if shared_frame:
            result.stop_reason = (
                "same frame of reference, but the images disagree (patient moved?): "
                f"registered by intensities. {result.stop_reason}"
            )
    if result.method != "intensity":
        result.metric_value = evaluate_metric(fixed, moving, result.matrix, mask_lps)
    if landmarks is not None:
        errors = landmark_errors(result, landmarks)
        result.landmark_errors_mm = [float(e) for e in errors]
        result.tre_mm = float(np.sqrt(np.mean(errors**2)))
    result.wall_s = time.perf_counter() - start
    report(1.0, "Registration done")
    return result


def same_frame_of_reference(fixed: Volume, moving: Volume) -> bool:
    """True when both series carry the same (non-empty) FrameOfReferenceUID."""
    a = fixed.meta.get("frame_of_reference_uid")
    b = moving.meta.get("frame_of_reference_uid")
    return bool(a) and a == b


def landmark_transform(pairs: LandmarkPairs, mode: str = "rigid") -> np.ndarray:
    """Least-squares fixed->moving transform from landmark pairs (rigid or affine).

    Rigid is the SVD solution (Arun/Umeyama, no scaling) and needs three points not on a
    line; affine needs four points not in one plane.
    """
    if mode not in ("rigid", "affine"):
        raise RegistrationError(f"Landmark fits are rigid or affine, not {mode!r}.")
    fixed_pts, moving_pts = _split_pairs(pairs)
    n = len(fixed_pts)
    # Dimensions the points span (1 mm tolerance): 1 = a line, 2 = a plane.
    spread = np.linalg.matrix_rank(fixed_pts - fixed_pts.mean(axis=0), tol=1.0)
    if mode == "affine":
        if n < 4 or spread < 3:
            raise RegistrationError(
                f"An affine landmark fit needs at least 4 points not in one plane ({n} given).",
                hint="Add landmarks out of the plane of the others, or use a rigid fit.",
            )
        design = np.column_stack([fixed_pts, np.ones(n)])
        solution, *_ = np.linalg.lstsq(design, moving_pts, rcond=None)
        matrix = np.eye(4)
        matrix[:3, :] = solution.T
        return matrix
    if n < 3 or spread < 2:
        raise RegistrationError(
            f"A rigid landmark fit needs at least 3 points not on one line ({n} given).",
            hint="Click at least three well-separated corresponding points.",
        )
    cf, cm = fixed_pts.mean(axis=0), moving_pts.mean(axis=0)
    u, _, vt = np.linalg.svd((fixed_pts - cf).T @ (moving_pts - cm))
    d = np.diag([1.0, 1.0, np.sign(np.linalg.det(vt.T @ u.T))])
    rotation = vt.T @ d @ u.T
    matrix = np.eye(4)
    matrix[:3, :3] = rotation
    matrix[:3, 3] = cm - rotation @ cf
    return matrix


def parse_landmarks(data: Any) -> np.ndarray:
    """Landmark pairs from JSON data: ``{"pairs": [{"fixed": p, "moving": q}, ...]}``, a
    bare list of such pairs or of ``[p, q]``, or ``{"fixed": [p...], "moving": [q...]}``.

    Returns an (N, 2, 3) array; raises :class:`RegistrationError` on anything else.
    """
    try:
        if isinstance(data, dict) and "pairs" in data:
            data = data["pairs"]
        if isinstance(data, dict):
            fixed, moving = data["fixed"], data["moving"]
            if len(fixed) != len(moving):
                raise ValueError("as many fixed as moving points are needed")
            data = list(zip(fixed, moving, strict=True))
        pairs = [
            (item["fixed"], item["moving"]) if isinstance(item, dict) else tuple(item)
            for item in data
        ]
        arr = np.asarray(pairs, dtype=float)
    except (KeyError, TypeError, ValueError) as exc:
        raise RegistrationError(
            f"The landmarks are not pairs of LPS points ({exc}).",
            hint='Write {"pairs": [{"fixed": [x, y, z], "moving": [x, y, z]}, ...]}.',
        ) from None
    _split_pairs(arr)
    return arr


def landmark_errors(
    transform: RegistrationResult | np.ndarray | sitk.Transform, pairs: LandmarkPairs
) -> np.ndarray:
    """Distance (mm) between each moving landmark and where the transform puts its pair."""
    fixed_pts, moving_pts = _split_pairs(pairs)
    if isinstance(transform, RegistrationResult):
        mapped = transform.transform_points(fixed_pts)
    elif isinstance(transform, sitk.Transform):
        mapped = transform_points(transform, fixed_pts)
    else:
        mapped = geometry.apply_affine(np.asarray(transform, dtype=float), fixed_pts)
    return np.linalg.norm(mapped - moving_pts, axis=1)


def target_registration_error(
    matrix_est: np.ndarray, matrix_true: np.ndarray, points: geometry.ArrayLike
) -> TREStats:
    """How far the estimated transform puts each fixed point from where the true one does."""
    pts = np.atleast_2d(np.asarray(points, dtype=float))
    diff = geometry.apply_affine(np.asarray(matrix_est, float), pts) - geometry.apply_affine(
        np.asarray(matrix_true, float), pts
    )
    d = np.linalg.norm(diff, axis=1)
    return TREStats(
        mean_mm=float(d.mean()),
        rms_mm=float(np.sqrt(np.mean(d**2))),
        median_mm=float(np.median(d)),
        max_mm=float(d.max()),
        per_point_mm=d,
    )


def resample_to(
    fixed_grid: Volume,
    moving: Volume,
    transform: np.ndarray | sitk.Transform | RegistrationResult | None = None,
    default_value: float | None = None,
    interpolator: str = "linear",
) -> Volume:
    """The moving volume sampled on the fixed grid: out(p) = moving(T(p)).

    ``default_value`` fills points outside the moving image (default: its minimum, i.e.
    air for CT, background for MR). The output keeps the moving image's dtype and meta.
    """
    tx = _as_sitk_transform(transform)
    if default_value is None:
        default_value = float(moving.array.min()) if moving.array.size else 0.0
    interpolators = {
        "linear": sitk.sitkLinear,
        "nearest": sitk.sitkNearestNeighbor,
        "bspline": sitk.sitkBSpline,
    }
    resampler = sitk.ResampleImageFilter()
    resampler.SetSize([int(n) for n in fixed_grid.size])
    resampler.SetOutputSpacing(fixed_grid.spacing)
    resampler.SetOutputOrigin(fixed_grid.origin)
    resampler.SetOutputDirection(tuple(fixed_grid.direction.ravel()))
    resampler.SetTransform(tx)
    resampler.SetInterpolator(interpolators[interpolator])
    resampler.SetDefaultPixelValue(float(default_value))
    out = resampler.Execute(moving.to_sitk())
    return Volume(
        sitk.GetArrayFromImage(out),
        fixed_grid.spacing,
        fixed_grid.origin,
        fixed_grid.direction.copy(),
        meta={**moving.meta, "resampled_to": fixed_grid.meta.get("series_uid", "")},
    )


def save_tfm(matrix: np.ndarray, path: str | Path) -> Path:
    """Write a fixed->moving 4x4 as an ITK AffineTransform .tfm (readable by Slicer/ITK)."""
    path = Path(path)
    sitk.WriteTransform(to_sitk_transform(matrix), str(path))
    return path


def load_tfm(path: str | Path) -> np.ndarray:
    """Read a linear ITK .tfm (affine, Euler, versor, or a composite of those) as 4x4."""
    try:
        tx = sitk.ReadTransform(str(path))
    except RuntimeError as exc:
        raise RegistrationError(
            f"Cannot read the transform file '{path}' ({str(exc).splitlines()[-1]}).",
            hint="Give an ITK .tfm/.txt/.h5 transform file.",
        ) from None
    if tx.GetDimension() != 3 or not tx.IsLinear():
        raise RegistrationError(
            f"The transform file '{path}' is not a 3D linear transform ({tx.GetName()}).",
            hint="Only rigid and affine transforms can be loaded as a matrix.",
        )
    return matrix_from_sitk(tx)


def to_sitk_transform(matrix: np.ndarray) -> sitk.AffineTransform:
    """A 4x4 fixed->moving matrix as a SimpleITK AffineTransform (centre at the origin)."""
    m = np.asarray(matrix, dtype=float)
    tx = sitk.AffineTransform(3)
    tx.SetMatrix(tuple(m[:3, :3].ravel()))
    tx.SetTranslation(tuple(m[:3, 3]))
    return tx


def matrix_from_sitk(transform: sitk.Transform) -> np.ndarray:
    """The 4x4 of any linear SimpleITK transform, probed through TransformPoint."""
    origin = np.asarray(transform.TransformPoint((0.0, 0.0, 0.0)))
    m = np.eye(4)
    m[:3, :3] = np.column_stack(
        [np.asarray(transform.TransformPoint(tuple(e))) - origin for e in np.eye(3)]
    )
    m[:3, 3] = origin
    return m


def transform_points(transform: sitk.Transform, points: geometry.ArrayLike) -> np.ndarray:
    pts = np.asarray(points, dtype=float)
    out = np.array([transform.TransformPoint(tuple(p)) for p in np.atleast_2d(pts)])
    return out[0] if pts.ndim == 1 else out


def evaluate_metric(
    fixed: Volume, moving: Volume, matrix: np.ndarray, mask_lps: Sphere | None = None
) -> float:
    """Mattes MI of the pair under ``matrix`` at the finest level (for quality display)."""
    settings = _Settings.load()
    last = len(settings.levels_mm) - 1
    (level,) = _build_levels(fixed, moving, settings, mask_lps, None, which=[last])
    reg = _new_method(level, settings)
    reg.SetInitialTransform(to_sitk_transform(matrix))
    return float(reg.MetricEvaluate(level.fixed, level.moving))


# -- settings and pyramid -----------------------------------------------------------------
@dataclass
class _Settings:
    ct_clamp: tuple[float, float]
    other_percentiles: tuple[float, float]
    bins: int
    levels_mm: list[float]
    samples: list[int]
    iterations: list[int]
    seed: int
    bspline_mesh_mm: float
    bspline_iterations: int
    rigid_blend_mm: float
    body_threshold_hu: float
    search: dict[str, float]

    @classmethod
    def load(cls) -> _Settings:
        data = load_json("registration.json")
        return cls(
            ct_clamp=tuple(float(v) for v in data["ct_clamp_hu"]["range"]),  # type: ignore[arg-type]
            other_percentiles=tuple(  # type: ignore[arg-type]
                float(v) for v in data["other_clamp_percentiles"]["range"]
            ),
            bins=int(data["histogram_bins"]["value"]),
            levels_mm=[float(v) for v in data["levels_mm"]["value"]],
            samples=[int(v) for v in data["samples_per_level"]["value"]],
            iterations=[int(v) for v in data["iterations_per_level"]["value"]],
            seed=int(data["random_seed"]["value"]),
            bspline_mesh_mm=float(data["bspline_mesh_mm"]["value"]),
            bspline_iterations=int(data["bspline_iterations"]["value"]),
            rigid_blend_mm=float(data["rigid_region_blend_mm"]["value"]),
            body_threshold_hu=float(load_json("anatomy.json")["body"]["threshold_hu"]),
            search={k: float(v) for k, v in data["start_search"].items() if k != "source"},
        )


@dataclass
class _Level:
    spacing_mm: float
    fixed: sitk.Image
    moving: sitk.Image
    mask: sitk.Image | None
    samples: int
    iterations: int

    def sample_fraction(self, samples: int | None = None) -> float:
        n = (
            int(np.count_nonzero(sitk.GetArrayViewFromImage(self.mask)))
            if self.mask is not None
            else int(np.prod(self.fixed.GetSize()))
        )
        return float(min(1.0, (samples or self.samples) / max(n, 1)))


def _intensity_range(volume: Volume, settings: _Settings) -> tuple[float, float]:
    if volume.modality == "CT" or volume.meta.get("units") == "HU":
        return settings.ct_clamp
    sample = volume.array[::2, ::3, ::3]
    lo, hi = np.percentile(sample, settings.other_percentiles)
    return float(lo), float(max(hi, lo + 1.0))


def _crop_to_sphere(volume: Volume, sphere: Sphere | None, margin_mm: float) -> Volume:
    """The block of ``volume`` holding the sphere (plus a margin); a view, no copy."""
    if sphere is None:
        return volume
    centre, radius = np.asarray(sphere[:3], dtype=float), float(sphere[3]) + margin_mm
    ijk = volume.physical_to_index(centre)
    half = radius / np.asarray(volume.spacing)
    lo = np.clip(np.floor(ijk - half).astype(int), 0, np.asarray(volume.size) - 1)
    hi = np.clip(np.ceil(ijk + half).astype(int) + 1, lo + 1, np.asarray(volume.size))
    if np.any(ijk + half < 0) or np.any(ijk - half > np.asarray(volume.size) - 1):
        raise RegistrationError(
            "The registration mask lies outside the planning CT.",
            hint="Put the mask centre on the target, inside the planning CT.",
        )
    block = volume.array[lo[2] : hi[2], lo[1] : hi[1], lo[0] : hi[0]]
    origin = volume.index_to_physical(lo.astype(float))
    return Volume(block, volume.spacing, tuple(origin), volume.direction, dict(volume.meta))


def _shrink(image: sitk.Image, target_mm: float) -> sitk.Image:
    # Voxels up to ~1.3x the target: 0.78 mm pixels bin by 2 for a 1.5 mm level.
    factors = [max(1, int(math.floor(target_mm / s + 0.25))) for s in image.GetSpacing()]
    factors = [min(f, max(1, n // 4)) for f, n in zip(factors, image.GetSize(), strict=True)]
    return sitk.BinShrink(image, factors) if max(factors) > 1 else image


def _prepare(image: sitk.Image, target_mm: float, value_range: tuple[float, float]) -> sitk.Image:
    """One pyramid level: bin-average to about ``target_mm``, float, clamp."""
    small = sitk.Cast(_shrink(image, target_mm), sitk.sitkFloat32)
    return sitk.Clamp(small, sitk.sitkFloat32, value_range[0], value_range[1])


def _sphere_mask(reference: sitk.Image, sphere: Sphere) -> sitk.Image:
    pts = _grid_points(reference)
    inside = np.linalg.norm(pts - np.asarray(sphere[:3], float), axis=1) <= float(sphere[3])
    mask = sitk.GetImageFromArray(inside.reshape(reference.GetSize()[::-1]).astype(np.uint8))
    mask.CopyInformation(reference)
    return mask


def _build_levels(
    fixed: Volume,
    moving: Volume,
    settings: _Settings,
    mask_lps: Sphere | None,
    cancel: Any,
    which: Sequence[int] | None = None,
) -> list[_Level]:
    """Coarse-to-fine images; the mask widens at coarse levels so they see enough anatomy.

    ``which`` picks level numbers (default: all).
    """
    fixed_range = _intensity_range(fixed, settings)
    moving_range = _intensity_range(moving, settings)
    moving_image = moving.to_sitk()
    fixed_image = fixed.to_sitk() if mask_lps is None else None
    levels = []
    for n, target in enumerate(settings.levels_mm):
        if which is not None and n not in which:
            continue
        check_cancel(cancel, "The registration")
        sphere = None
        if mask_lps is not None:
            sphere = (*mask_lps[:3], max(float(mask_lps[3]), 12.0 * target))
            f_img = _prepare(_crop_to_sphere(fixed, sphere, target).to_sitk(), target, fixed_range)
        else:
            f_img = _prepare(fixed_image, target, fixed_range)
        m_img = _prepare(moving_image, target, moving_range)
        mask = _sphere_mask(f_img, sphere) if sphere is not None else None
        levels.append(
            _Level(target, f_img, m_img, mask, settings.samples[n], settings.iterations[n])
        )
    return levels


def _new_method(
    level: _Level, settings: _Settings, samples: int | None = None
) -> sitk.ImageRegistrationMethod:
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=settings.bins)
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    reg.SetMetricSamplingPercentage(level.sample_fraction(samples), settings.seed)
    # Gradients by central differences at the sampled points only: a gradient image of
    # the whole moving volume would cost more than the sparse metric itself.
    reg.MetricUseFixedImageGradientFilterOff()
    reg.MetricUseMovingImageGradientFilterOff()
    if level.mask is not None:
        reg.SetMetricFixedMask(level.mask)
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetShrinkFactorsPerLevel([1])
    reg.SetSmoothingSigmasPerLevel([0])
    return reg


def _region_radius(level: _Level) -> float:
    """RMS distance of the metric region from the rotation centre (for the scales)."""
    image = level.fixed
    size = np.asarray(image.GetSize(), float)
    half = (size - 1) / 2 * np.asarray(image.GetSpacing())
    r = float(np.sqrt(np.sum(half**2) / 3.0))
    if level.mask is not None:
        r = min(r, float(np.max(half)))
    return max(r, 10.0)


# -- the intensity registration -----------------------------------------------------------
class _Intensity:
    """One intensity-based registration run (an object for the state its stages share).

    The metric samples the *domain* image. That is the fixed image, except when no mask
    is given and the moving image covers a smaller physical volume (a thick-slice MR
    beside a long CT): then samples are drawn in the moving image, so that almost all of
    them land inside the other image and the overlap does not drive the metric. The
    linear result is inverted back to fixed->moving.
    """

    def __init__(
        self,
        fixed: Volume,
        moving: Volume,
        mode: str,
        mask_lps: Sphere | None,
        rigid_region: Sphere | None,
        progress: ProgressFn,
        cancel: Any,
    ) -> None:
        self.fixed, self.moving, self.mode = fixed, moving, mode
        self.settings = _Settings.load()
        self.progress = progress
        self.cancel = cancel
        # A region to keep rigid is also where the linear part must be exact.
        self.mask_lps = mask_lps if mask_lps is not None else rigid_region
        self.rigid_region = rigid_region
        self.swap = self.mask_lps is None and _box_volume(moving) < _box_volume(fixed)
        self.iterations = 0
        self._levels: list[_Level] | None = None
        self._cancelled = False
        self._stop_reason = ""
        self._stage = (0.0, 1.0, "")

    @property
    def levels(self) -> list[_Level]:
        """The pyramid of (domain, other) images, built on first use."""
        if self._levels is None:
            self.progress(0.0, "Preparing images")
            domain, other = (self.moving, self.fixed) if self.swap else (self.fixed, self.moving)
            self._levels = _build_levels(domain, other, self.settings, self.mask_lps, self.cancel)
        return self._levels

    def identity_is_best(self) -> bool:
        """Do the scanner coordinates already align the images (shared frame of reference)?

        True when, on the coarse translation grid around identity, no shift scores better
        than none. A shared FrameOfReferenceUID is usually right (PET/CT), but not when
        the patient moved between series or when software copied the UID.
        """
        search = self.settings.search
        scores, shifts = self._scorer(self.levels[0]).scores(
            np.eye(4), float(search["range_mm"]), float(search["step_mm"])
        )
        if not np.isfinite(scores).any():
            return True  # no overlap to judge by: trust the scanner
        best = shifts[int(np.nanargmax(scores))]
        return bool(np.linalg.norm(best) < 0.5 * float(search["step_mm"]))

    def _scorer(self, level: _Level) -> _GridScorer:
        samples = int(self.settings.search["samples"])
        return _GridScorer(level, self.settings.bins, samples, self.settings.seed)

    def __call__(self, init: str, landmarks: LandmarkPairs | None) -> RegistrationResult:
        levels = self.levels
        domain = self.moving if self.swap else self.fixed
        centre = (
            np.asarray(self.mask_lps[:3], dtype=float)
            if self.mask_lps is not None
            else domain.center_lps()
        )
        n_stages = len(levels) + 1 + (1 if self.mode == "affine" else 0)
        n_stages += 2 if self.mode == "deformable" else 0
        span = 0.9 / n_stages

        starts = [(name, self._oriented(m)) for name, m in self._starts(init, landmarks, levels[0])]
        candidates = self._search(levels[0], starts, centre)
        self._stage = (0.05 + span, 0.05 + 2 * span, "Coarse alignment")
        best: tuple[sitk.Transform, float, str] | None = None
        for name, start in candidates:
            tx, value = self._run_linear(levels[0], start)
            if best is None or value < best[1]:
                best = (tx, value, name)
        assert best is not None
        tx, value, chosen = best
        for n, level in enumerate(levels[1:], start=2):
            self._stage = (0.05 + n * span, 0.05 + (n + 1) * span, f"Level {n}")
            tx, value = self._run_linear(level, tx)
        stage = len(levels) + 1
        if self.mode == "affine":
            self._stage = (0.05 + stage * span, 0.05 + (stage + 1) * span, "Affine")
            tx, value = self._run_linear(levels[-1], _to_affine(tx))
        matrix = self._oriented(matrix_from_sitk(tx))
        full: sitk.Transform | None = None
        if self.mode == "deformable":
            self._stage = (0.05 + stage * span, 0.95, "Deformable")
            full, value = self._run_bspline(matrix)
        return RegistrationResult(
            matrix=matrix,
            metric_value=float(value),
            mode=self.mode,
            method="intensity",
            iterations=self.iterations,
            transform=full,
            init=chosen,
            stop_reason=self._stop_reason,
        )

    def _oriented(self, matrix: np.ndarray) -> np.ndarray:
        """fixed->moving <-> domain->other (the same matrix unless the roles are swapped)."""
        return np.linalg.inv(matrix) if self.swap else matrix

    # -- starting points --------------------------------------------------------------
    def _starts(
        self, init: str, landmarks: LandmarkPairs | None, level: _Level
    ) -> list[tuple[str, np.ndarray]]:
        """Fixed->moving starting matrices worth trying, by name."""
        if init == "landmarks":
            return [("landmarks", landmark_transform(landmarks, "rigid"))]  # type: ignore[arg-type]
        makers = {
            "identity": lambda: np.zeros(3),
            "geometry": lambda: self.moving.center_lps() - self.fixed.center_lps(),
            "moments": lambda: self._centroid_shift(level),
        }
        names = list(makers) if init == "auto" else [init]
        out = []
        for name in names:
            m = np.eye(4)
            m[:3, 3] = makers[name]()
            out.append((name, m))
        return out

    def _centroid_shift(self, level: _Level) -> np.ndarray:
        """Moving minus fixed body centroid (on the coarse level's images)."""
        domain_c = _body_centroid(
            level.fixed, self.moving if self.swap else self.fixed, self.settings
        )
        other_c = _body_centroid(
            level.moving, self.fixed if self.swap else self.moving, self.settings
        )
        return domain_c - other_c if self.swap else other_c - domain_c

    def _search(
        self, level: _Level, starts: list[tuple[str, np.ndarray]], centre: np.ndarray
    ) -> list[tuple[str, sitk.Euler3DTransform]]:
        """Poses around each start scored at the coarse level; the best few distinct ones.

        A local optimiser started 5 cm away can lock onto the neighbouring vertebra, and
        one started 12 degrees off may never turn far enough. So each start is tried
        unrotated and turned +-``rotation_deg`` about each axis (through the region's
        centre), each with a translation grid; the best distinct poses go on.
        """
        search = self.settings.search
        step = float(search["step_mm"])
        angle = float(search["rotation_deg"])
        turns = [np.zeros(3)] + [sign * angle * np.eye(3)[a] for a in range(3) for sign in (1, -1)]
        scored: list[tuple[float, str, np.ndarray]] = []
        scorer = self._scorer(level)
        distinct: list[tuple[str, np.ndarray]] = []
        for name, m in starts:  # starts closer than a grid step share one search
            at_centre = geometry.apply_affine(m, centre)
            if all(
                np.linalg.norm(at_centre - geometry.apply_affine(d, centre)) >= step
                for _, d in distinct
            ):
                distinct.append((name, m))
        poses = [
            (name, m @ geometry.rigid_matrix(t, (0, 0, 0), centre))
            for name, m in distinct
            for t in turns
        ]
        for n_pose, (name, matrix) in enumerate(poses):
            check_cancel(self.cancel, "The registration")
            self.progress(0.05 + 0.05 * n_pose / len(poses), "Searching the start")
            scores, shifts = scorer.scores(matrix, float(search["range_mm"]), step)
            ranked = [n for n in np.argsort(-np.nan_to_num(scores, nan=-np.inf)) if scores[n] > 0]
            scored += [(float(scores[n]), name, _shifted(matrix, shifts[n])) for n in ranked[:20]]
        scored.sort(key=lambda item: -item[0])
        # Distinct: no probe point 6 cm around the centre within 1.5 grid steps of a kept pose.
        probes = centre + 60.0 * np.vstack([np.eye(3), -np.eye(3)])
        chosen: list[tuple[str, sitk.Euler3DTransform]] = []
        kept: list[np.ndarray] = []
        for _score, name, matrix in scored:
            mapped = geometry.apply_affine(matrix, probes)
            if any(np.abs(mapped - k).max() < 1.5 * step for k in kept):
                continue
            kept.append(mapped)
            chosen.append((name, _euler(matrix, centre)))
            if len(chosen) == int(search["candidates"]):
                break
        return chosen or [(name, _euler(m, centre)) for name, m in starts]

    # -- optimisation -----------------------------------------------------------------
    def _run_linear(self, level: _Level, start: sitk.Transform) -> tuple[sitk.Transform, float]:
        tx = _clone(start)
        reg = _new_method(level, self.settings)
        reg.SetInitialTransform(tx, inPlace=True)
        radius = _region_radius(level)
        n_params = len(tx.GetParameters())
        n_linear = 3 if n_params == 6 else 9
        reg.SetOptimizerScales([radius**2] * n_linear + [1.0] * (n_params - n_linear))
        step = level.spacing_mm
        reg.SetOptimizerAsRegularStepGradientDescent(
            learningRate=step,
            minStep=0.01 * step,
            numberOfIterations=level.iterations,
            relaxationFactor=0.5,
            gradientMagnitudeTolerance=1e-8,
        )
        self._observe(reg, level.iterations)
        try:
            reg.Execute(level.fixed, level.moving)
        except RuntimeError as exc:
            if "do not sufficiently overlap" not in str(exc):
                raise
            self._after(reg)
            return tx, math.inf
        self._after(reg)
        return tx, float(reg.GetMetricValue())

    def _run_bspline(self, matrix: np.ndarray) -> tuple[sitk.Transform, float]:
        """B-spline refinement on top of ``matrix``, always sampled in the fixed image."""
        linear = to_sitk_transform(matrix)
        # The B-spline runs on the middle level: posture differences are smooth and
        # centimetric; the finest level would cost most of the time for little.
        middle = len(self.settings.levels_mm) - 2
        (level,) = _build_levels(
            self.fixed, self.moving, self.settings, self.mask_lps, self.cancel, which=[middle]
        )
        extent = np.asarray(level.fixed.GetSize()) * np.asarray(level.fixed.GetSpacing())
        mesh = [max(1, int(round(e / self.settings.bspline_mesh_mm))) for e in extent]
        bspline = sitk.BSplineTransformInitializer(level.fixed, mesh, order=3)
        reg = _new_method(level, self.settings)
        reg.SetMovingInitialTransform(linear)
        reg.SetInitialTransform(bspline, inPlace=True)
        iterations = int(self.settings.bspline_iterations)
        reg.SetOptimizerAsLBFGSB(
            gradientConvergenceTolerance=1e-5,
            numberOfIterations=iterations,
            maximumNumberOfCorrections=5,
            maximumNumberOfFunctionEvaluations=2 * iterations,
            costFunctionConvergenceFactor=1e7,
        )
        self._observe(reg, iterations)
        reg.Execute(level.fixed, level.moving)
        self._after(reg)
        value = float(reg.GetMetricValue())
        deformation: sitk.Transform = bspline
        if self.rigid_region is not None:
            deformation = self._fade_in_region(bspline, level.fixed)
        return sitk.CompositeTransform([linear, deformation]), value

    def _fade_in_region(self, bspline: sitk.Transform, reference: sitk.Image) -> sitk.Transform:
        """Displacement field of ``bspline`` with zero displacement in the rigid region."""
        assert self.rigid_region is not None
        to_field = sitk.TransformToDisplacementFieldFilter()
        to_field.SetReferenceImage(reference)
        to_field.SetOutputPixelType(sitk.sitkVectorFloat64)
        disp = to_field.Execute(bspline)
        arr = sitk.GetArrayFromImage(disp)
        pts = _grid_points(reference)
        dist = np.linalg.norm(pts - np.asarray(self.rigid_region[:3], float), axis=1)
        t = np.clip((dist - float(self.rigid_region[3])) / self.settings.rigid_blend_mm, 0, 1)
        weight = (t * t * (3 - 2 * t)).reshape(arr.shape[:3])
        faded = sitk.GetImageFromArray(arr * weight[..., None], isVector=True)
        faded.CopyInformation(disp)
        return sitk.DisplacementFieldTransform(faded)

    # -- progress and cancel ----------------------------------------------------------
    def _observe(self, reg: sitk.ImageRegistrationMethod, max_iterations: int) -> None:
        lo, hi, message = self._stage

        def on_iteration() -> None:
            self.iterations += 1
            n = reg.GetOptimizerIteration()
            self.progress(lo + (hi - lo) * min(1.0, n / max(max_iterations, 1)), message)
            if self.cancel is not None and self.cancel():
                self._cancelled = True
                reg.StopRegistration()

        reg.AddCommand(sitk.sitkIterationEvent, on_iteration)

    def _after(self, reg: sitk.ImageRegistrationMethod) -> None:
        self._stop_reason = reg.GetOptimizerStopConditionDescription()
        if self._cancelled:
            raise CancelledError("The registration was cancelled; nothing was changed.")
        check_cancel(self.cancel, "The registration")


class _GridScorer:
    """Normalised mutual information of the domain's samples under many poses.

    Pure numpy, vectorised over a whole translation grid: nearest-neighbour look-ups in
    the pre-binned other image and one joint histogram per pose by a single
    ``bincount`` (a grid of 729 poses costs a few tens of milliseconds). Samples that
    fall outside the other image count in an extra "outside" bin: they raise the joint
    entropy, so a pose is not rewarded for sliding the images apart until only an easy
    strip overlaps, which plain (N)MI over the overlap does.
    """

    #: Poses leaving fewer of the samples than this inside the other image are skipped.
    MIN_OVERLAP = 0.3

    def __init__(self, level: _Level, bins: int, n_samples: int, seed: int) -> None:
        domain = sitk.GetArrayViewFromImage(level.fixed)
        valid = (
            sitk.GetArrayViewFromImage(level.mask) > 0
            if level.mask is not None
            else np.ones(domain.shape, bool)
        )
        flat = np.flatnonzero(valid)
        rng = np.random.default_rng(seed)
        pick = rng.choice(flat, size=min(n_samples, flat.size), replace=False)
        k, j, i = np.unravel_index(pick, domain.shape)
        to_lps = _index_to_lps(level.fixed)
        self.points = geometry.apply_affine(to_lps, np.stack([i, j, k], 1).astype(float))
        self.bins = bins
        self.a_bins = _to_bins(domain.ravel()[pick], bins).astype(np.int32)
        other = sitk.GetArrayViewFromImage(level.moving)
        self.other_shape = other.shape  # (nk, nj, ni)
        self.other_bins = _to_bins(other.ravel(), bins).astype(np.int32)
        self.other_to_index = np.linalg.inv(_index_to_lps(level.moving))
        # Every sample is counted (outside ones in their own bin), so N is fixed and
        # entropies are table look-ups: H = log N - sum(c log c) / N over the counts c.
        self._n = max(len(pick), 1)
        counts = np.arange(len(pick) + 1, dtype=float)
        self._c_log_c = counts * np.log(np.maximum(counts, 1.0))
        self._h_a = self._entropy(np.bincount(self.a_bins, minlength=bins)[None, :])[0]

    def scores(
        self, matrix: np.ndarray, range_mm: float, step_mm: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """NMI for every grid translation added to ``matrix`` (NaN: too little overlap)."""
        ticks = np.arange(-range_mm, range_mm + 1e-6, step_mm)
        shifts = np.stack(np.meshgrid(ticks, ticks, ticks, indexing="ij"), -1).reshape(-1, 3)
        base = geometry.apply_affine(self.other_to_index @ matrix, self.points)  # (n, 3)
        offsets = shifts @ self.other_to_index[:3, :3].T  # (m, 3)
        nk, nj, ni = self.other_shape
        na, nb = self.bins, self.bins + 1  # the other image's last bin: "outside"
        out = np.full(len(shifts), np.nan)
        chunk = max(1, 400_000 // len(base))
        for c0 in range(0, len(shifts), chunk):
            off = offsets[c0 : c0 + chunk].astype(np.float32)
            # Per axis (m, n) int32 indices; as unsigned, negatives fail the "< size" test.
            i, j, k = (
                np.rint(base[None, :, a].astype(np.float32) + off[:, a, None]).astype(np.int32)
                for a in range(3)
            )
            inside = (i.view(np.uint32) < ni) & (j.view(np.uint32) < nj) & (k.view(np.uint32) < nk)
            flat = np.where(inside, (k * nj + j) * ni + i, 0)
            b_bins = np.where(inside, self.other_bins[flat], na)
            rows = np.arange(len(off), dtype=np.int32)[:, None]
            code = (rows * na + self.a_bins[None, :]) * nb + b_bins
            joint = np.bincount(code.ravel(), minlength=len(off) * na * nb)
            nmi = self._nmi(joint.reshape(len(off), na, nb))
            enough = inside.mean(axis=1) >= self.MIN_OVERLAP
            out[c0 : c0 + chunk] = np.where(enough, nmi, np.nan)
        return out, shifts

    def _entropy(self, counts: np.ndarray) -> np.ndarray:
        """Entropy of each row (all axes but the first) of integer sample counts."""
        flat = counts.reshape(counts.shape[0], -1)
        return math.log(self._n) - self._c_log_c[flat].sum(axis=1) / self._n

    def _nmi(self, joint: np.ndarray) -> np.ndarray:
        """(H(A) + H(B)) / H(A, B) (Studholme) of a stack of joint count histograms."""
        h_b = self._entropy(joint.sum(axis=1))
        return (self._h_a + h_b) / np.maximum(self._entropy(joint), 1e-12)


def _to_bins(
    values: np.ndarray, bins: int, value_range: tuple[float, float] | None = None
) -> np.ndarray:
    lo, hi = value_range or (float(values.min()), float(max(values.max(), values.min() + 1e-3)))
    return np.clip(((values - lo) / (hi - lo) * bins).astype(np.intp), 0, bins - 1)


def _shifted(matrix: np.ndarray, shift: np.ndarray) -> np.ndarray:
    out = matrix.copy()
    out[:3, 3] += shift
    return out


def _index_to_lps(image: sitk.Image) -> np.ndarray:
    return geometry.index_to_physical_matrix(
        image.GetSpacing(), image.GetOrigin(), np.asarray(image.GetDirection()).reshape(3, 3)
    )


def _euler(matrix: np.ndarray, centre: np.ndarray) -> sitk.Euler3DTransform:
    """The rigid part of a 4x4 as an Euler transform rotating about ``centre``."""
    tx = sitk.Euler3DTransform()
    tx.SetCenter(tuple(float(c) for c in centre))
    tx.SetMatrix(tuple(geometry.orthonormalize(matrix[:3, :3]).ravel()))
    # p' = R (p - c) + c + t  =>  t = m(c) - c
    tx.SetTranslation(tuple(geometry.apply_affine(matrix, centre) - centre))
    return tx


def _box_volume(volume: Volume) -> float:
    return float(np.prod(np.asarray(volume.size) * np.asarray(volume.spacing)))


def _grid_points(image: sitk.Image) -> np.ndarray:
    """LPS points of every voxel of ``image``, in [k, j, i] order (N, 3)."""
    k, j, i = np.indices(image.GetSize()[::-1])
    points = np.stack([i, j, k], -1).reshape(-1, 3).astype(float)
    return geometry.apply_affine(_index_to_lps(image), points)


def _body_centroid(image: sitk.Image, volume: Volume, settings: _Settings) -> np.ndarray:
    """LPS centroid of the body (CT above the body threshold, else above Otsu)."""
    arr = sitk.GetArrayViewFromImage(image)
    if volume.modality == "CT" or volume.meta.get("units") == "HU":
        inside = arr > settings.body_threshold_hu
    else:
        inside = sitk.GetArrayViewFromImage(sitk.OtsuThreshold(image, 0, 1)) > 0
    if not inside.any():
        return np.asarray(
            image.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in image.GetSize()])
        )
    k, j, i = (axis.mean() for axis in np.nonzero(inside))
    return np.asarray(image.TransformContinuousIndexToPhysicalPoint((float(i), float(j), float(k))))


def _clone(tx: sitk.Transform) -> sitk.Transform:
    if isinstance(tx, sitk.Euler3DTransform):
        return sitk.Euler3DTransform(tx)
    if isinstance(tx, sitk.AffineTransform):
        return sitk.AffineTransform(tx)
    return sitk.Transform(tx)


def _to_affine(tx: sitk.Transform) -> sitk.AffineTransform:
    rigid = sitk.Euler3DTransform(tx)
    affine = sitk.AffineTransform(3)
    affine.SetCenter(rigid.GetCenter())
    affine.SetMatrix(rigid.GetMatrix())
    affine.SetTranslation(rigid.GetTranslation())
    return affine


def _split_pairs(pairs: LandmarkPairs) -> tuple[np.ndarray, np.ndarray]:
    arr = np.asarray(pairs, dtype=float)
    if arr.ndim != 3 or arr.shape[1:] != (2, 3) or not np.all(np.isfinite(arr)):
        raise RegistrationError(
            "Landmarks must be pairs of (fixed, moving) LPS points.",
            hint="Example: [[[x, y, z], [x', y', z']], ...].",
        )
    return arr[:, 0, :], arr[:, 1, :]


def _as_sitk_transform(transform: Any) -> sitk.Transform:
    if transform is None:
        return sitk.AffineTransform(3)
    if isinstance(transform, RegistrationResult):
        return transform.transform or to_sitk_transform(transform.matrix)
    if isinstance(transform, sitk.Transform):
        return transform
    return to_sitk_transform(np.asarray(transform, dtype=float))
