"""Ordered fill of an injected liquid (cement, ethanol) through bone, driven by HU.

The liquid spreads from the needle tips by a front whose local speed is the bone's
relative permeability, estimated from HU (settings in ``resources/treatment.json``):

* porosity ``phi = 1 - (HU - marrow) / (solid - marrow)`` (pore space of water density,
  pore-free bone at the top of the cortical range);
* permeability relative to healthy trabecular bone by the Kozeny-Carman factor
  ``phi^3 / (1 - phi)^2`` (reference: ~230 HU, 3.4-4.5 x 10^-8 m^2, Baroud 2004), clipped:
  a lytic cavity fills at most ``max_relative_speed`` times faster, dense bone slowest;
* intact cortex (HU >= ``barrier_hu``) and everything outside the fillable region (the
  bone and intra-osseous lesion) have speed 0: the front never crosses them.

The front is computed once by fast marching (SimpleITK, C++) on a box around the tips:
every reachable voxel gets its arrival time. Sorting by arrival time gives the fill
*order*; each voxel holds ``porosity x voxel volume`` of liquid, so the filled region for
any volume is a prefix of that order (a volume slider answers in microseconds) and the
volume is conserved to one voxel's capacity.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from guideplan.core.errors import GuideplanError
from guideplan.core.labelmap import Box
from guideplan.core.resources import load_json
from guideplan.planning import grid

if TYPE_CHECKING:
    from guideplan.planning.context import TreatmentContext


def _values(section: str) -> dict[str, Any]:
    data = load_json("treatment.json")[section]
    return {k: v["value"] if isinstance(v, dict) and "value" in v else v for k, v in data.items()}


@dataclass(frozen=True)
class FillSettings:
    barrier_hu: float = 700.0
    smoothing_mm: float = 0.6
    marrow_hu: float = 0.0
    solid_bone_hu: float = 1900.0
    reference_hu: float = 230.0
    interior_bone_min_hu: float = 100.0
    cavity_min_hu: float = -200.0
    max_relative_speed: float = 10.0
    min_relative_speed: float = 0.01
    min_porosity: float = 0.05
    #: Liquid held per voxel: "porosity" (cement in trabecular pores) or "full".
    capacity: str = "porosity"
    distribution_factor: float = 1.0

    @classmethod
    def cement(cls) -> FillSettings:
        v = _values("cement")
        return cls(
            barrier_hu=float(v["barrier_hu"]),
            smoothing_mm=float(v["smoothing_mm"]),
            marrow_hu=float(v["marrow_hu"]),
            solid_bone_hu=float(v["solid_bone_hu"]),
            reference_hu=float(v["reference_hu"]),
            interior_bone_min_hu=float(v["interior_bone_min_hu"]),
            cavity_min_hu=float(v["cavity_min_hu"]),
            max_relative_speed=float(v["max_relative_speed"]),
            min_relative_speed=float(v["min_relative_speed"]),
            min_porosity=float(v["min_porosity"]),
        )

    @classmethod
    def ethanol(cls) -> FillSettings:
        """The cement's bone model, with ethanol's barrier, speed and spread."""
        v = _values("ethanol")
        return dataclasses.replace(
            cls.cement(),
            barrier_hu=float(v["barrier_hu"]),
            max_relative_speed=float(v["max_relative_speed"]),
            capacity="full",
            distribution_factor=float(v["distribution_factor"]),
        )


def porosity(hu: np.ndarray, s: FillSettings) -> np.ndarray:
    phi = 1.0 - (np.asarray(hu, dtype=np.float32) - s.marrow_hu) / (s.solid_bone_hu - s.marrow_hu)
    return np.clip(phi, s.min_porosity, 1.0).astype(np.float32)


def relative_speed(hu: np.ndarray, s: FillSettings) -> np.ndarray:
    """Permeability relative to the reference bone (Kozeny-Carman), clipped; 0 at cortex."""
    phi = np.clip(porosity(hu, s), s.min_porosity, 0.999).astype(np.float64)
    ref = float(np.clip(porosity(np.array([s.reference_hu]), s)[0], s.min_porosity, 0.999))
    kc = phi**3 / (1.0 - phi) ** 2
    kc_ref = ref**3 / (1.0 - ref) ** 2
    speed = np.clip(kc / kc_ref, s.min_relative_speed, s.max_relative_speed)
    speed[np.asarray(hu) >= s.barrier_hu] = 0.0
    return speed.astype(np.float32)


@dataclass
class FillOrder:
    """Every voxel the front reaches in ``box``, in arrival order, with the cumulative
    liquid volume (mL) once it is filled."""

    box: Box
    shape: tuple[int, int, int]
    order: np.ndarray  # flat indices into the box (C order)
    times: np.ndarray  # arrival times, sorted (relative units: mm at reference speed)
    cumulative_ml: np.ndarray
    seeds: np.ndarray  # (n, 3) k, j, i inside the box
    touches_edge: bool  # the front reached the box's faces

    @property
    def capacity_ml(self) -> float:
        return float(self.cumulative_ml[-1]) if len(self.cumulative_ml) else 0.0

    def count_for(self, volume_ml: float) -> int:
        """How many voxels (a prefix of the order) hold ``volume_ml``."""
        if volume_ml <= 0 or len(self.order) == 0:
            return 0
        n = int(np.searchsorted(self.cumulative_ml, volume_ml, side="left")) + 1
        return min(n, len(self.order))

    def placed_ml(self, n: int) -> float:
        return float(self.cumulative_ml[n - 1]) if n > 0 else 0.0

    def mask(self, n: int) -> np.ndarray:
        out = np.zeros(int(np.prod(self.shape)), dtype=bool)
        out[self.order[:n]] = True
        return out.reshape(self.shape)


def march(
    speed: np.ndarray,
    spacing_kji: np.ndarray,
    seeds_kji: np.ndarray,
    capacity_ml: np.ndarray,
    box: Box,
    max_volume_ml: float | None = None,
) -> FillOrder:
    """Fast marching from ``seeds`` on ``speed`` (0 = wall), then the arrival order."""
    import SimpleITK as sitk  # the front in C++; imported when a fill is computed

    image = sitk.GetImageFromArray(np.ascontiguousarray(speed, dtype=np.float32))
    image.SetSpacing(tuple(float(v) for v in spacing_kji[::-1]))
    fm = sitk.FastMarchingImageFilter()
    fm.SetTrialPoints([tuple(int(v) for v in s[::-1]) for s in seeds_kji])
    fm.SetNormalizationFactor(1.0)
    fm.SetStoppingValue(1e30)
    times = sitk.GetArrayFromImage(fm.Execute(image)).ravel()
    reached = np.flatnonzero(times < 1e29)
    order = reached[np.argsort(times[reached], kind="stable")]
    cumulative = np.cumsum(capacity_ml.ravel()[order], dtype=np.float64)
    if max_volume_ml is not None and len(cumulative):
        keep = int(np.searchsorted(cumulative, max_volume_ml, side="left")) + 1
        order, cumulative = order[:keep], cumulative[:keep]
    kji = np.unravel_index(order, speed.shape)
    edge = bool(any(np.any(kji[a] == 0) or np.any(kji[a] == speed.shape[a] - 1) for a in range(3)))
    return FillOrder(
        box=box,
        shape=tuple(int(v) for v in speed.shape),  # type: ignore[arg-type]
        order=order,
        times=times[order],
        cumulative_ml=cumulative,
        seeds=np.asarray(seeds_kji, dtype=int).reshape(-1, 3),
        touches_edge=edge,
    )


def nearest_fillable(
    fillable: np.ndarray, point_kji: np.ndarray, spacing_kji: np.ndarray, radius_mm: float
) -> np.ndarray | None:
    """The fillable voxel nearest to a continuous (k, j, i) position within ``radius_mm``."""
    r = np.ceil(radius_mm / spacing_kji).astype(int)
    c = np.rint(point_kji).astype(int)
    lo = np.maximum(c - r, 0)
    hi = np.minimum(c + r + 1, fillable.shape)
    if np.any(hi <= lo):
        return None
    sub = fillable[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
    cand = np.argwhere(sub)
    if len(cand) == 0:
        return None
    d = np.sqrt(np.sum(((cand + lo - point_kji) * spacing_kji) ** 2, axis=1))
    best = int(np.argmin(d))
    if d[best] > radius_mm:
        return None
    return cand[best] + lo


# ======================================================================================
# setting up a fill in a box around the tips
# ======================================================================================


class FillError(GuideplanError):
    title = "Cannot predict the injection"


@dataclass
class FillSetup:
    """Everything a fill needs on its box, kept for the leak checks."""

    box: Box
    hu: np.ndarray  # smoothed HU, float32
    container: np.ndarray  # bone + intra-osseous lesion, minus the canal
    barrier: np.ndarray  # intact cortex (HU >= barrier)
    fillable: np.ndarray
    canal: np.ndarray
    order: FillOrder
    tips_lps: np.ndarray
    notes: list[str]


def prepare_fill(
    ctx: TreatmentContext,
    tips_lps: np.ndarray,
    settings: FillSettings,
    radius_mm: float,
    max_volume_ml: float,
    tip_search_mm: float,
    what: str = "cement",
) -> FillSetup:
    """The fill order from ``tips`` in a box of ``radius_mm`` around them, grown (up to
    three times) while the front reaches the box's faces before ``max_volume_ml``."""
    tips = np.atleast_2d(np.asarray(tips_lps, dtype=float))
    radius = float(radius_mm)
    for attempt in range(4):
        box = grid.box_around_lps(ctx.volume, tips, radius)
        setup = _setup_in(ctx, box, tips, settings, max_volume_ml, tip_search_mm, what)
        order = setup.order
        if not order.touches_edge or order.capacity_ml >= max_volume_ml or attempt == 3:
            return setup
        radius *= 1.6
    raise AssertionError("unreachable")


def _setup_in(
    ctx: TreatmentContext,
    box: Box,
    tips: np.ndarray,
    s: FillSettings,
    max_volume_ml: float,
    tip_search_mm: float,
    what: str,
) -> FillSetup:
    from guideplan.processing import masks
    from guideplan.processing.segmentation import GrowParams, bridged_by_bone

    sp = ctx.spacing_kji
    hu = masks.smooth(ctx.volume.array[box], sp, s.smoothing_mm)
    bone = ctx.bone_in(box)
    canal = ctx.canal_in(box)
    lesion = ctx.lesion_in(box)
    notes: list[str] = []
    # the lesion inside the bone's outer contour belongs to the bone's inside even where
    # the bone mask leaves it out (a label map paints it as lesion; an automatic bone
    # mask does not fill a cavity open through a breach)
    grow_params = GrowParams.from_resources()
    candidates = lesion if lesion.any() else (hu < grow_params.bone_hu) & (hu > s.cavity_min_hu)
    inside = bridged_by_bone(
        bone,
        sp,
        grow_params.bridge_span_mm,
        grow_params.canal_run_mm,
        grow_params.canal_ring_directions,
    )
    # and so is bone-density tissue inside that contour (noise pockets below the bone
    # threshold), but not soft tissue: a gap filled with soft tissue is an opening
    container = (bone | (inside & (candidates | (hu >= s.interior_bone_min_hu)))) & ~canal
    barrier = hu >= s.barrier_hu
    fillable = container & ~barrier
    speed = relative_speed(hu, s)
    speed[~fillable] = 0.0
    vox = grid.voxel_ml(ctx.volume)
    if s.capacity == "porosity":
        capacity = porosity(hu, s) * np.float32(vox)
    else:
        capacity = np.full(hu.shape, vox / max(s.distribution_factor, 1e-6), np.float32)
    capacity[~fillable] = 0.0
    lo = np.array([b.start for b in box], dtype=float)
    seeds = []
    for tip in tips:
        kji = ctx.volume.physical_to_index(tip)[::-1] - lo
        seed = nearest_fillable(fillable, kji, sp, tip_search_mm)
        if seed is None:
            raise FillError(
                f"The {what} needle tip at {np.round(tip, 1).tolist()} (LPS mm) is not in "
                f"fillable bone or lesion (none within {tip_search_mm:g} mm).",
                hint="Place the tip inside the vertebral body or the lytic lesion, not in "
                "cortex or soft tissue.",
            )
        if np.any(np.abs(seed - kji) > 0.5 + 1e-6):
            notes.append(
                f"tip {np.round(tip, 1).tolist()} is not in fillable bone: the {what} starts "
                "from the nearest fillable voxel"
            )
        seeds.append(seed)
    order = march(speed, sp, np.array(seeds), capacity, box, max_volume_ml=max_volume_ml)
    return FillSetup(box, hu, container, barrier, fillable, canal, order, tips, notes)
