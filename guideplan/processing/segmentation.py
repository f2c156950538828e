"""Lesion tools: one-click region growing, threshold, brush, interpolation, islands, margins.

Every editing tool is a pure function that returns a
:class:`~guideplan.core.labelmap.LabelDiff` against the label array it was given, without
changing it; :class:`guideplan.model.label_commands.LabelEdit` applies it, so every tool
is undoable and costs memory in proportion to what it changed. Geometry comes from the
reference volume (the planning CT): label arrays live on its ``[k, j, i]`` grid, sizes are
in mm and every tool is spacing-aware. Tools that read intensities can read a fused prior
instead (``moving`` + ``fixed_to_moving``, the 4x4 planning-CT LPS -> prior LPS matrix): the
prior is sampled at the CT grid's voxel centres, so the label stays on the CT grid.

Region growing (:func:`grow_lesion`) in short, all inside a box around the click:

1. **Intensity range.** The lesion's level and spread are the median and robust SD (MAD)
   of the smoothed image within a few mm of the seed; the *strict* growing range is
   median +/- 3 SD (a user-given range replaces it).
2. **Grow** the strict range from the seed; an opening cuts 1-2 voxel bridges.
3. **Stay inside the bone.** A lytic lesion has soft-tissue density, like the muscle, canal
   and disc around the bone, so intensity alone leaks. A voxel is *inside the bone's outer
   contour* when, along some line through it, bone lies on both sides within
   ``bridge_span_mm`` (a chord test in 13 directions): it fills the lesion's cavity even
   where the lesion destroyed the cortex. The spinal canal passes that test too (the arch
   rings it), so a ringed non-bone tube open far up and down is excluded explicitly.
4. **Breakthrough.** Where the lesion breaks the cortex, it may extend into contiguous
   lesion-density soft tissue up to ``soft_tissue_extension_mm`` from its intra-osseous
   part, and only on the side facing away from intact bone (closer to the lesion than
   to bone). Density cannot tell a lytic soft-tissue component from muscle, so this
   distance is a setting the user adjusts, not a guess.
5. **Boundary.** A blurred edge lies half-way between the two tissues' levels. The tissue
   around the grown lesion is measured in a shell past the partial-volume edge (bone
   above a lytic lesion, fat below); the edge then moves up to ``boundary_relax_mm``
   outward into voxels nearer the lesion's level than the neighbour's: next to cortex
   the neighbour's level is the local peak, elsewhere the shell's median. Holes are
   filled.

A lesion denser than bone (blastic) is inside the bone by density: steps 3-4 are skipped.
A seed with no bone around it (a soft-tissue lesion) falls back to plain growing.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import SimpleITK as sitk

from guideplan.core import geometry
from guideplan.core.errors import GuideplanError
from guideplan.core.labelmap import (
    Box,
    LabelDiff,
    box_around,
    full_box,
    mask_bounds,
    paint_diff,
    replace_diff,
)
from guideplan.core.progress import CancelFn, ProgressFn, as_cancel, check_cancel
from guideplan.core.resources import load_json
from guideplan.core.volume import Volume
from guideplan.processing import masks


class SegmentationError(GuideplanError):
    """A segmentation tool cannot do what was asked (seed outside, empty label ...)."""

    title = "Cannot segment"


# ======================================================================================
# parameters
# ======================================================================================


@dataclass(frozen=True)
class GrowParams:
    """Region-growing settings; defaults come from ``resources/segmentation.json``."""

    roi_radius_mm: float = 35.0
    max_roi_radius_mm: float = 140.0
    smoothing_mm: float = 0.6
    seed_radius_mm: float = 3.0
    #: Shell (mm from the grown region) where the surrounding tissue is measured.
    shell_mm: tuple[float, float] = (1.5, 4.0)
    range_sigma: float = 3.0
    min_sigma_hu: float = 5.0
    max_sigma_hu: float = 15.0
    seed_min_voxels: int = 27
    class_separation_sigma: float = 4.0
    leak_opening_mm: float = 1.5
    bone_hu: float = 150.0
    cortex_hu: float = 600.0
    bridge_span_mm: float = 30.0
    canal_run_mm: float = 20.0
    canal_ring_directions: int = 3
    core_opening_mm: float = 1.0
    soft_tissue_extension_mm: float = 3.0
    boundary_relax_mm: float = 2.0
    #: The spinal canal near the seed when none is given (see :func:`local_canal`).
    canal_window_mm: float = 20.0
    canal_persistence: float = 0.6
    canal_enclosure_directions: int = 2
    canal_margin_mm: float = 3.0
    canal_grid_mm: float = 1.5
    #: Epidural / soft-tissue extension is reported from this volume (mL) on.
    extension_report_ml: float = 0.05
    #: Keep the lesion inside the bone's outer contour (steps 3-4); off = plain growing.
    bone_aware: bool = True

    @classmethod
    def from_resources(cls, **overrides: Any) -> GrowParams:
        data = load_json("segmentation.json").get("region_growing", {})
        names = {f.name for f in fields(cls)}
        values = {k: v["value"] if isinstance(v, dict) else v for k, v in data.items()}
        values = {
            k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if k in names
        }
        values.update(overrides)
        return cls(**values)


@dataclass
class GrowResult:
    """The grown lesion as a mask on a box of the reference grid, and how it was found."""

    box: Box
    mask: np.ndarray
    seed_index: tuple[int, int, int]
    #: Strict growing range and the partial-volume boundary range (image units, HU on CT).
    grow_range: tuple[float, float]
    boundary_range: tuple[float, float]
    #: "bone" (kept inside the bone's contour), "dense" (lesion denser than bone) or
    #: "plain" (no bone around the seed, or bone-awareness off).
    mode: str
    #: The lesion's intensity at the seed (median) and its robust spread.
    level: float = 0.0
    spread: float = 0.0
    notes: list[str] = field(default_factory=list)
    #: Lesion in the spinal canal (epidural extension) and outside the bone's contour
    #: elsewhere (paravertebral / soft-tissue extension), in mL.
    epidural_ml: float = 0.0
    paravertebral_ml: float = 0.0

    @property
    def n_voxels(self) -> int:
        return int(np.count_nonzero(self.mask))

    def volume_ml(self, spacing: Sequence[float]) -> float:
        return self.n_voxels * float(np.prod(spacing)) / 1000.0

    def full_mask(self, shape: tuple[int, int, int]) -> np.ndarray:
        out = np.zeros(shape, dtype=bool)
        out[self.box] = self.mask
        return out

    def to_diff(
        self, labels: np.ndarray, value: int, editable: Iterable[int] | None = None
    ) -> LabelDiff:
        """Paint the grown region into a label array (as a diff)."""
        return paint_diff(labels, self.mask, value, self.box, editable)


# ======================================================================================
# region growing
# ======================================================================================


def grow_lesion(
    volume: Volume,
    seed_lps: geometry.ArrayLike,
    params: GrowParams | None = None,
    *,
    grow_range: tuple[float, float] | None = None,
    moving: Volume | None = None,
    fixed_to_moving: np.ndarray | None = None,
    canal: np.ndarray | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelFn | Any = None,
) -> GrowResult:
    """Segment the lesion under a click (see the module docstring for how).

    ``volume`` is the planning CT whose grid the result lives on. ``grow_range`` replaces
    the estimated intensity range (the user's adjustment). With ``moving`` and
    ``fixed_to_moving``, intensities come from the fused prior (e.g. an MR) sampled on the
    CT grid, while the bone around the lesion is still read from the CT. ``canal`` (bool
    [k, j, i] on the volume's grid: the spinal canal from the anatomy, or drawn) is kept
    out of the intra-osseous lesion; without it the canal is found near the seed
    (:func:`local_canal`). Lesion in the canal is then only the epidural extension.
    """
    p = params or GrowParams.from_resources()
    cancel = as_cancel(cancel)
    if (moving is None) != (fixed_to_moving is None):
        raise ValueError("moving and fixed_to_moving go together")
    seed = np.asarray(volume.physical_to_index(seed_lps), dtype=float)  # (i, j, k)
    if not volume.contains_index(seed):
        raise SegmentationError(
            "The seed point is outside the planning CT.",
            hint="Click inside the lesion on a slice of the planning CT.",
        )
    seed_kji = np.rint(seed[::-1]).astype(int)
    radius = p.roi_radius_mm
    shape = volume.array.shape
    while True:
        box = box_around(seed_kji, [radius / s for s in volume.spacing[::-1]], shape)
        if progress is not None:
            progress(0.1, f"Growing within {2 * radius:.0f} mm of the seed")
        canal_box = None if canal is None else np.asarray(canal[box], dtype=bool)
        result = _grow_in_box(
            volume, box, seed_kji, p, grow_range, moving, fixed_to_moving, canal_box, cancel
        )
        margin_mm = min(p.bridge_span_mm / 2.0, radius / 2.0)
        if radius >= p.max_roi_radius_mm or not _near_inner_face(
            result.mask, box, shape, [margin_mm / s for s in volume.spacing[::-1]]
        ):
            break
        radius = min(2.0 * radius, p.max_roi_radius_mm)
    if progress is not None:
        progress(1.0, f"Lesion: {result.volume_ml(volume.spacing):.2f} mL")
    return result


def _grow_in_box(
    volume: Volume,
    box: Box,
    seed_kji: np.ndarray,
    p: GrowParams,
    grow_range: tuple[float, float] | None,
    moving: Volume | None,
    fixed_to_moving: np.ndarray | None,
    canal: np.ndarray | None,
    cancel: CancelFn | None,
) -> GrowResult:
    spacing_kji = np.asarray(volume.spacing[::-1], dtype=float)
    ct = volume.array[box].astype(np.float32)
    s = tuple(int(v) for v in seed_kji - [b.start for b in box])
    notes: list[str] = []
    if moving is not None and fixed_to_moving is not None:
        intensity = sample_on_grid(volume, box, moving, fixed_to_moving)
        min_sigma = max(p.min_sigma_hu, 0.01 * float(np.nanpercentile(intensity, 99)))
        notes.append(f"intensities from the fused {moving.modality or 'prior'} image")
    else:
        intensity = ct
        min_sigma = p.min_sigma_hu
    smooth = masks.smooth(intensity, spacing_kji, p.smoothing_mm)
    dist2 = _squared_distance_from(s, smooth.shape, spacing_kji)
    max_sigma = p.max_sigma_hu if moving is None else None
    level, spread, strict = _seed_range(smooth, dist2, p, min_sigma, max_sigma)
    user_range = grow_range is not None
    if grow_range is not None:
        strict = (float(min(grow_range)), float(max(grow_range)))
        notes.append("intensity range set by the user")
    boundary = strict
    seed_index = tuple(int(v) for v in seed_kji)
    empty = GrowResult(
        box,
        np.zeros(smooth.shape, bool),
        seed_index,
        strict,
        boundary,
        "plain",
        level,
        spread,
        notes,
    )
    in_range = (smooth >= strict[0]) & (smooth <= strict[1])
    start = _nearest_true(in_range, s, dist2, p.seed_radius_mm)
    if start is None:
        notes.append("no voxel near the seed is in the intensity range")
        return empty
    check_cancel(cancel, "Region growing")
    grown = masks.component_at(in_range, start)
    opened = masks.opening(grown, spacing_kji, p.leak_opening_mm)
    if opened[start]:
        grown = masks.component_at(opened, start)

    ct_smooth = smooth if moving is None else masks.smooth(ct, spacing_kji, p.smoothing_mm)
    ct_level = float(np.median(ct_smooth[dist2 <= p.seed_radius_mm**2]))
    mode = "plain"
    lesion = grown
    keep_out = np.zeros_like(grown)
    inside = None
    if p.bone_aware and ct_level >= p.bone_hu:
        mode = "dense"
    elif p.bone_aware:
        check_cancel(cancel, "Region growing")
        bone = ct_smooth > p.bone_hu
        if canal is None:
            canal = local_canal(volume, box, p, grown)
        keep_out = _canal_margin(canal, spacing_kji, p.canal_margin_mm) & ~bone
        core, inside = _inside_bone(grown, bone, start, dist2, spacing_kji, p, keep_out)
        if core is None:
            notes.append("no bone encloses the seed: plain region growing")
        else:
            mode = "bone"
            lesion = core | _extension(core, grown, bone, spacing_kji, p.soft_tissue_extension_mm)
    if not user_range:
        boundary = _boundary_range(smooth, lesion, spacing_kji, level, spread, strict, p)
    if p.boundary_relax_mm > 0 and lesion.any():
        lesion = lesion | _partial_volume_edge(
            smooth, lesion, spacing_kji, level, strict, boundary, p, local=not user_range
        )
    if lesion[start]:
        lesion = masks.component_at(lesion, start)
    lesion = masks.fill_holes(lesion)
    if mode == "dense":
        notes.append("lesion denser than bone (blastic): bone constraint not needed")
    voxel_ml = float(np.prod(spacing_kji)) / 1000.0
    epidural = paravertebral = 0.0
    if mode == "bone" and inside is not None and canal is not None:
        epidural = np.count_nonzero(lesion & canal) * voxel_ml
        outside = lesion & ~keep_out & ~inside & ~(ct_smooth > p.bone_hu)
        paravertebral = np.count_nonzero(outside) * voxel_ml
        if epidural >= p.extension_report_ml:
            notes.append(f"epidural extension: {epidural:.2f} mL of the lesion in the spinal canal")
        if paravertebral >= p.extension_report_ml:
            notes.append(
                f"soft-tissue extension: {paravertebral:.2f} mL outside the bone's contour"
            )
    return GrowResult(
        box,
        lesion,
        seed_index,
        strict,
        boundary,
        mode,
        level,
        spread,
        notes,
        epidural,
        paravertebral,
    )


def _seed_range(
    smooth: np.ndarray,
    dist2: np.ndarray,
    p: GrowParams,
    min_sigma: float,
    max_sigma: float | None = None,
) -> tuple[float, float, tuple[float, float]]:
    """Lesion level (median) and robust spread near the seed, and the strict range.

    The neighbourhood holds at least ``seed_min_voxels`` voxels (at 3 mm a 3 mm ball is 7
    voxels, whose MAD is noise: it gave a range from CSF to disc), and the spread is
    capped at ``max_sigma`` on CT (``max_sigma_hu``: what CT noise and a lesion's
    texture give; a fused MR has no such scale)."""
    radius2 = p.seed_radius_mm**2
    if dist2.size >= p.seed_min_voxels:
        kth = np.partition(dist2, p.seed_min_voxels - 1, axis=None)[p.seed_min_voxels - 1]
        radius2 = max(radius2, float(kth))
    near = smooth[dist2 <= radius2]
    level = float(np.median(near))
    spread = max(1.4826 * float(np.median(np.abs(near - level))), min_sigma)
    if max_sigma is not None:
        spread = min(spread, max(max_sigma, min_sigma))
    return level, spread, (level - p.range_sigma * spread, level + p.range_sigma * spread)


def _boundary_range(
    smooth: np.ndarray,
    lesion: np.ndarray,
    spacing_kji: np.ndarray,
    level: float,
    spread: float,
    strict: tuple[float, float],
    p: GrowParams,
) -> tuple[float, float]:
    """Half-way from the lesion to the tissue that actually surrounds it.

    Measured in a shell just past the partial-volume edge: the denser tissue there (bone
    for a lytic lesion) and the lighter one (fat), each by its median. The edge of a
    blurred boundary lies half-way between the two levels.
    """
    lo, hi = strict
    if not lesion.any():
        return lo, hi
    dist = masks.distance_to(lesion, spacing_kji)
    shell = smooth[(dist > p.shell_mm[0]) & (dist <= p.shell_mm[1])]
    if shell.size == 0:
        return lo, hi
    gap = p.class_separation_sigma * spread
    above = shell[shell > level + gap]
    below = shell[shell < level - gap]
    if above.size > 0.05 * shell.size:
        hi = max(hi, (level + float(np.median(above))) / 2)
    if below.size > 0.05 * shell.size:
        lo = min(lo, (level + float(np.median(below))) / 2)
    return lo, hi


def _partial_volume_edge(
    smooth: np.ndarray,
    lesion: np.ndarray,
    spacing_kji: np.ndarray,
    level: float,
    strict: tuple[float, float],
    boundary: tuple[float, float],
    p: GrowParams,
    local: bool,
) -> np.ndarray:
    """Voxels just outside the lesion that are nearer the lesion's level than the
    neighbouring tissue's: the lesion side of a blurred edge.

    The neighbour's level is local (the brightest / darkest value within
    ``boundary_relax_mm``), since a lesion may touch trabecular bone (~250 HU) on one side
    and cortex (~1000 HU) on the other: one global half-way level would cut the first
    edge too far out and the second too far in.
    """
    near = masks.distance_to(lesion, spacing_kji) <= p.boundary_relax_mm
    near &= (smooth < strict[0]) | (smooth > strict[1])
    if not near.any():
        return near
    if not local:
        return near & (smooth >= boundary[0]) & (smooth <= boundary[1])
    radius = [max(1, int(round(p.boundary_relax_mm / s))) for s in spacing_kji]
    box = mask_bounds(near, radius)
    assert box is not None
    sub = smooth[box]
    brightest = masks.max_filter(sub, radius)
    darkest = -masks.max_filter(-sub, radius)
    # next to cortex the half-way level is the local one (a lesion-cortex edge sits near
    # 500 HU); elsewhere (trabecular texture) it is capped by the surrounding tissue's
    above = (
        (sub > strict[1])
        & (sub <= (level + brightest) / 2)
        & ((sub <= boundary[1]) | (brightest >= p.cortex_hu))
    )
    below = (sub < strict[0]) & (sub >= (level + darkest) / 2) & (sub >= boundary[0])
    out = np.zeros_like(near)
    out[box] = near[box] & (above | below)
    return out


def _inside_bone(
    grown: np.ndarray,
    bone: np.ndarray,
    start: tuple[int, int, int],
    dist2: np.ndarray,
    spacing_kji: np.ndarray,
    p: GrowParams,
    keep_out: np.ndarray,
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The part of ``grown`` inside the bone's outer contour and out of ``keep_out``
    (the spinal canal), connected to the seed; and the contour's inside."""
    margin = [int(math.ceil(p.bridge_span_mm / 2 / s)) + 1 for s in spacing_kji]
    sub = mask_bounds(grown, margin)
    if sub is None:
        return None, None
    inside = np.zeros_like(grown)
    inside[sub] = bridged_by_bone(
        bone[sub], spacing_kji, p.bridge_span_mm, p.canal_run_mm, p.canal_ring_directions
    )
    inside &= ~keep_out
    core = masks.opening(grown & (inside | bone) & ~keep_out, spacing_kji, p.core_opening_mm)
    if core[start]:
        return masks.component_at(core, start), inside
    if not core.any():
        return None, inside
    # The seed sits in the soft-tissue part of a breaking-through lesion: take the
    # intra-osseous component nearest to it, if it is within the extension distance.
    reach = p.soft_tissue_extension_mm + p.seed_radius_mm
    labels = masks.components(core, full=False)
    close = core & (dist2 <= reach**2)
    if not close.any():
        return None, inside
    ids, counts = np.unique(labels[close], return_counts=True)
    return labels == ids[np.argmax(counts)], inside


def _extension(
    core: np.ndarray,
    grown: np.ndarray,
    bone: np.ndarray,
    spacing_kji: np.ndarray,
    extension_mm: float,
) -> np.ndarray:
    """Soft tissue of lesion density beyond a cortical breach, up to ``extension_mm``,
    on the side facing away from intact bone (closer to the lesion than to bone)."""
    if extension_mm <= 0:
        return np.zeros_like(core)
    to_core = masks.distance_to(core, spacing_kji)
    zone = grown & (to_core <= extension_mm) & ~core
    if not zone.any():
        return zone
    return zone & (to_core < masks.distance_to(bone, spacing_kji))


# ======================================================================================
# the spinal canal near the seed, from the geometry of the vertebra
# ======================================================================================

#: The 4 in-plane line directions (dk = 0) of :data:`LINE_DIRECTIONS`.
AXIAL_DIRECTIONS: tuple[tuple[int, int, int], ...] = ((0, 0, 1), (0, 1, 0), (0, 1, 1), (0, 1, -1))


def local_canal(
    volume: Volume, box: Box, p: GrowParams, near: np.ndarray | None = None
) -> np.ndarray:
    """The spinal canal in ``volume[box]`` found from geometry, not from HU (CSF, cord
    and a lytic lesion all read 0-60 HU): non-bone enclosed by bone in the axial plane
    (``canal_enclosure_directions`` of the 4 in-plane lines end in bone on both sides
    within ``bridge_span_mm``) on at least ``canal_persistence`` of the slices within
    ``canal_window_mm`` above and below. A lesion's cavity is enclosed on the lesion's
    few slices only; the canal is enclosed level after level, so a destroyed posterior
    wall does not merge the two. The bone here includes osteoporotic marrow
    (:func:`guideplan.processing.bone.bone_labels`), or the marrow itself would look like
    an enclosed cavity. Only the part around ``near`` (a mask on the box) is computed.

    The axial plane is the array's (j, i) plane: CT series are stacked along k.
    """
    sp = np.asarray(volume.spacing[::-1], dtype=float)
    shape = tuple(b.stop - b.start for b in box)
    out = np.zeros(shape, dtype=bool)
    reach = [p.canal_window_mm, p.bridge_span_mm, p.bridge_span_mm]
    margin = [int(math.ceil(r / s)) + 1 for r, s in zip(reach, sp, strict=True)]
    sub = full_box(shape) if near is None else mask_bounds(near, margin)
    if sub is None:
        return out
    inner = tuple(slice(b.start + s.start, b.start + s.stop) for b, s in zip(box, sub, strict=True))
    # the canal is 15-25 mm wide: a grid of ~canal_grid_mm is fine enough and 5-20x cheaper
    factor = [max(1, int(round(p.canal_grid_mm / s))) for s in sp]
    coarse = _block_mean(masks.crop(volume, inner), factor)  # type: ignore[arg-type]
    canal = _canal_on(coarse, p)
    for axis, f in enumerate(factor):
        canal = np.repeat(canal, f, axis=axis)
    region = out[sub]
    n = [min(a, b) for a, b in zip(region.shape, canal.shape, strict=True)]
    region[: n[0], : n[1], : n[2]] = canal[: n[0], : n[1], : n[2]]
    if region.shape != canal.shape:
        # the array's last partial blocks take the nearest block's answer
        for axis in range(3):
            if region.shape[axis] > n[axis]:
                last = [slice(None)] * 3
                last[axis] = slice(n[axis] - 1, n[axis])
                fill = [slice(None)] * 3
                fill[axis] = slice(n[axis], None)
                region[tuple(fill)] = region[tuple(last)]
    out[sub] = region
    return out


def _canal_on(volume: Volume, p: GrowParams) -> np.ndarray:
    """:func:`local_canal` on a whole (coarse) volume."""
    from guideplan.processing.bone import bone_labels

    sp = np.asarray(volume.spacing[::-1], dtype=float)
    bone = bone_labels(volume, np.ones(volume.array.shape, dtype=bool)) > 0
    passable = ~bone
    ring = np.zeros(bone.shape, dtype=np.uint8)
    for d in AXIAL_DIRECTIONS:
        ahead = masks.ray_distance(bone, passable, d, sp, p.bridge_span_mm)
        ahead += masks.ray_distance(bone, passable, tuple(-v for v in d), sp, p.bridge_span_mm)
        ring += ahead <= p.bridge_span_mm
    enclosed = (ring >= p.canal_enclosure_directions) & passable
    canal = _slice_fraction(enclosed, p.canal_window_mm / sp[0]) >= p.canal_persistence
    return canal & passable


def _block_mean(volume: Volume, factor: Sequence[int]) -> Volume:
    """``volume`` averaged over blocks of ``factor`` voxels (k, j, i); the last partial
    block of each axis is averaged over what it holds."""
    if all(f == 1 for f in factor):
        return volume
    arr = volume.array.astype(np.float32)
    for axis, f in enumerate(factor):
        if f == 1:
            continue
        n = arr.shape[axis]
        edges = np.arange(0, n, f)
        sums = np.add.reduceat(arr, edges, axis=axis)
        counts = np.diff(np.append(edges, n)).astype(np.float32)
        shape = [1, 1, 1]
        shape[axis] = len(counts)
        arr = sums / counts.reshape(shape)
    f_ijk = np.asarray(factor[::-1], dtype=float)
    origin = volume.index_to_physical((f_ijk - 1.0) / 2.0)
    spacing = tuple(float(s * f) for s, f in zip(volume.spacing, f_ijk, strict=True))
    return Volume(
        arr, spacing, tuple(float(v) for v in origin), volume.direction, dict(volume.meta)
    )


def _canal_margin(canal: np.ndarray, spacing_kji: np.ndarray, margin_mm: float) -> np.ndarray:
    """The canal widened in the axial plane: the lateral recesses and foramina open off
    its sides, and its edge at the posterior wall is a partial-volume voxel; a lytic
    lesion would leak through both. (The lesion it covers at the wall comes back as
    extension, up to ``soft_tissue_extension_mm``.)"""
    if margin_mm <= 0 or not canal.any():
        return canal
    in_plane = [masks.IN_PLANE_ONLY, float(spacing_kji[1]), float(spacing_kji[2])]
    return masks.dilate(canal, in_plane, margin_mm)


def _slice_fraction(mask: np.ndarray, half_window: float) -> np.ndarray:
    """Per voxel, the fraction of slices within +-``half_window`` (along k) where the
    same (j, i) is in ``mask`` (the window is cut at the array's ends)."""
    w = max(1, int(round(half_window)))
    n = mask.shape[0]
    counts = np.cumsum(np.pad(mask.astype(np.int32), ((w + 1, w), (0, 0), (0, 0))), axis=0)
    hits = counts[2 * w + 1 :] - counts[: -2 * w - 1]
    ones = np.cumsum(np.pad(np.ones(n, dtype=np.int32), (w + 1, w)))
    total = (ones[2 * w + 1 :] - ones[: -2 * w - 1])[:, None, None]
    return hits / np.maximum(total, 1)


# ======================================================================================
# "inside the bone": chords between bone in 13 directions
# ======================================================================================

#: The 13 line directions of a 3x3x3 neighbourhood, as (dk, dj, di).
LINE_DIRECTIONS: tuple[tuple[int, int, int], ...] = tuple(
    (dk, dj, di)
    for dk in (-1, 0, 1)
    for dj in (-1, 0, 1)
    for di in (-1, 0, 1)
    if (dk, dj, di) > (0, 0, 0)
)


def bridged_by_bone(
    bone: np.ndarray,
    spacing_kji: Sequence[float],
    span_mm: float,
    canal_run_mm: float = 0.0,
    ring_directions: int = 3,
) -> np.ndarray:
    """Non-bone voxels with bone on both sides, within ``span_mm`` along some line.

    This is the "filled outer contour" of bone that keeps working where a lesion has
    destroyed the cortex: the chords across the hole still end in bone. With
    ``canal_run_mm``, tubes that are ringed by bone in the axial plane (at least
    ``ring_directions`` of the 4 axial lines bridged) and free of bone for that far up
    *and* down are taken out: that is the spinal canal, not the inside of a bone.
    """
    sp = np.asarray(spacing_kji, dtype=float)
    passable = ~bone
    inside = np.zeros(bone.shape, dtype=bool)
    ring = np.zeros(bone.shape, dtype=np.uint8)
    for direction in LINE_DIRECTIONS:
        ahead = masks.ray_distance(bone, passable, direction, sp, span_mm)
        back = masks.ray_distance(bone, passable, tuple(-d for d in direction), sp, span_mm)
        ahead += back
        chord = ahead <= span_mm
        inside |= chord
        if direction[0] == 0:
            ring += chord
    inside &= passable
    if canal_run_mm > 0:
        up = masks.ray_distance(bone, passable, (1, 0, 0), sp, canal_run_mm)
        down = masks.ray_distance(bone, passable, (-1, 0, 0), sp, canal_run_mm)
        canal = (ring >= ring_directions) & np.isinf(up) & np.isinf(down)
        inside &= ~canal
    return inside


# ======================================================================================
# threshold, brush
# ======================================================================================


def threshold_region(
    grid: Volume,
    labels: np.ndarray,
    value: int,
    lo: float,
    hi: float,
    *,
    box_lps: tuple[geometry.ArrayLike, geometry.ArrayLike] | None = None,
    sphere_lps: tuple[geometry.ArrayLike, float] | None = None,
    editable: Iterable[int] | None = None,
    moving: Volume | None = None,
    fixed_to_moving: np.ndarray | None = None,
) -> LabelDiff:
    """Label the voxels with ``lo <= value <= hi`` inside an LPS box or a sphere.

    ``box_lps`` is two opposite corners (an LPS-axis-aligned box); ``sphere_lps`` is a
    centre and a radius in mm. Intensities come from ``grid`` or from a fused prior.
    """
    if (box_lps is None) == (sphere_lps is None):
        raise ValueError("give exactly one of box_lps and sphere_lps")
    if sphere_lps is not None:
        center, radius = np.asarray(sphere_lps[0], float), float(sphere_lps[1])
        lo_c, hi_c = center - radius, center + radius
    else:
        a, b = (np.asarray(c, dtype=float) for c in box_lps)  # type: ignore[union-attr]
        lo_c, hi_c = np.minimum(a, b), np.maximum(a, b)
    corners = np.array(
        [
            [x, y, z]
            for x in (lo_c[0], hi_c[0])
            for y in (lo_c[1], hi_c[1])
            for z in (lo_c[2], hi_c[2])
        ]
    )
    ijk = grid.physical_to_index(corners)
    box = _index_box(ijk.min(axis=0), ijk.max(axis=0), labels.shape)
    points = _box_points_lps(grid, box)
    if sphere_lps is not None:
        region = np.sum((points - center) ** 2, axis=-1) <= radius**2
    else:
        region = np.all((points >= lo_c - 1e-6) & (points <= hi_c + 1e-6), axis=-1)
    if moving is not None and fixed_to_moving is not None:
        values = sample_on_grid(grid, box, moving, fixed_to_moving)
    else:
        values = grid.array[box]
    region &= (values >= min(lo, hi)) & (values <= max(lo, hi))
    return paint_diff(labels, region, value, box, editable)


def brush_footprint(
    grid: Volume,
    center_lps: geometry.ArrayLike,
    radius_mm: float,
    normal: geometry.ArrayLike | None = None,
    end_lps: geometry.ArrayLike | None = None,
) -> tuple[Box, np.ndarray]:
    """Voxels under a brush: a 3D ball, or a 2D disc in the plane with ``normal``.

    The disc is one voxel thick in any orientation: voxels whose centre lies within half
    a voxel's extent along the normal from the plane. With ``end_lps`` the brush sweeps
    from ``center_lps`` to ``end_lps`` (a capsule), so a fast stroke leaves no gaps.
    """
    a = np.asarray(center_lps, dtype=float)
    b = a if end_lps is None else np.asarray(end_lps, dtype=float)
    radius = max(float(radius_mm), 0.0)
    # a ball of radius r spans r / spacing voxels along each index axis, any orientation
    ends = grid.physical_to_index(np.array([a, b]))
    ext = radius / np.asarray(grid.spacing) + 1
    box = _index_box(ends.min(axis=0) - ext, ends.max(axis=0) + ext, grid.array.shape)
    pts = _box_points_lps(grid, box) - a
    seg = b - a
    seg_len2 = float(seg @ seg)
    if normal is not None:
        n = np.asarray(normal, dtype=float)
        n = n / np.linalg.norm(n)
        # half of one voxel's extent along the normal: a one-voxel-thick digital plane
        half = 0.5 * float(np.abs(grid.direction.T @ n) @ np.asarray(grid.spacing))
        along = pts @ n
        slab = (along >= -half) & (along < half)
        pts = pts - along[..., None] * n
        seg = seg - (seg @ n) * n
        seg_len2 = float(seg @ seg)
    else:
        slab = None
    if seg_len2 > 0:
        t = np.clip((pts @ seg) / seg_len2, 0.0, 1.0)
        pts = pts - t[..., None] * seg
    inside = np.sum(pts * pts, axis=-1) <= radius * radius + 1e-9
    if slab is not None:
        inside &= slab
    if not inside.any():
        # a brush smaller than a voxel still marks the voxel under the cursor
        k, j, i = np.rint(grid.physical_to_index(a)[::-1]).astype(int) - [x.start for x in box]
        if all(0 <= v < n for v, n in zip((k, j, i), inside.shape, strict=True)):
            inside[k, j, i] = True
    return box, inside


def paint(
    grid: Volume,
    labels: np.ndarray,
    center_lps: geometry.ArrayLike,
    radius_mm: float,
    value: int,
    *,
    normal: geometry.ArrayLike | None = None,
    end_lps: geometry.ArrayLike | None = None,
    erase: bool = False,
    editable: Iterable[int] | None = None,
) -> LabelDiff:
    """One brush dab (or sweep): paint ``value``, or erase it (``erase=True``)."""
    box, mask = brush_footprint(grid, center_lps, radius_mm, normal, end_lps)
    if erase:
        return replace_diff(labels, value, (labels[box] == value) & ~mask, box)
    return paint_diff(labels, mask, value, box, editable)


# ======================================================================================
# interpolation, islands, margins, smoothing
# ======================================================================================


def fill_between_slices(
    labels: np.ndarray,
    value: int,
    spacing: Sequence[float],
    axis: int = 0,
    editable: Iterable[int] | None = None,
) -> LabelDiff:
    """Fill the slices between drawn ones by signed-distance interpolation.

    ``axis`` is the array axis the drawn slices are stacked along (0 = k: axial slices of
    an axial CT). Between two drawn slices, each in-between slice gets the zero level of
    the linear blend of the two slices' signed distances (shape-based interpolation:
    a disc of 10 mm and one of 20 mm give 15 mm half-way).
    """
    mask = labels == value
    drawn = np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != axis)))
    if drawn.size < 2:
        raise SegmentationError(
            f"Fill between slices needs label {value} on at least two slices.",
            hint="Draw the lesion on a few slices (e.g. every 3rd to 5th), then fill.",
        )
    sp_kji = np.asarray(spacing, dtype=float)[::-1]
    plane_sp = [sp_kji[a] for a in range(3) if a != axis]
    moved = np.moveaxis(mask, axis, 0)
    new = moved.copy()
    cache: dict[int, np.ndarray] = {}

    def sdf(k: int) -> np.ndarray:
        if k not in cache:
            cache[k] = masks.signed_distance(moved[k], plane_sp)
        return cache[k]

    for a, b in itertools.pairwise(drawn):
        if b - a < 2:
            continue
        da, db = sdf(int(a)), sdf(int(b))
        for k in range(int(a) + 1, int(b)):
            t = (k - a) / (b - a)
            new[k] |= (1.0 - t) * da + t * db <= 0.0
    sub = mask_bounds(np.moveaxis(new, 0, axis))
    if sub is None:
        return LabelDiff.empty(labels.shape, labels.dtype)
    filled = np.moveaxis(new, 0, axis)[sub]
    return paint_diff(labels, filled, value, sub, editable)


def keep_largest_island(labels: np.ndarray, value: int) -> LabelDiff:
    """Remove every island of ``value`` but the largest (26-connected)."""
    return _islands(labels, value, lambda sizes: sizes == sizes.max())


def remove_small_islands(
    labels: np.ndarray, value: int, min_volume_mm3: float, spacing: Sequence[float]
) -> LabelDiff:
    """Remove the islands of ``value`` smaller than ``min_volume_mm3``."""
    voxel = float(np.prod(spacing))
    return _islands(labels, value, lambda sizes: sizes * voxel >= min_volume_mm3)


def _islands(labels: np.ndarray, value: int, keep_rule) -> LabelDiff:
    box = mask_bounds(labels == value)
    if box is None:
        return LabelDiff.empty(labels.shape, labels.dtype)
    mask = labels[box] == value
    comps = masks.components(mask)
    sizes = np.bincount(comps.ravel())
    keep = keep_rule(sizes[1:])
    keep_ids = np.concatenate([[False], keep])
    return replace_diff(labels, value, keep_ids[comps], box)


def grow_shrink(
    labels: np.ndarray,
    value: int,
    distance_mm: float,
    spacing: Sequence[float],
    editable: Iterable[int] | None = None,
) -> LabelDiff:
    """Grow (distance > 0) or shrink (< 0) the label by a distance in mm, Euclidean.

    Spacing-aware: growing a cube by 3 mm on 0.8 x 0.8 x 2.5 mm voxels adds 3.75 columns
    in-plane (3 whole ones) and 1.2 slices (1 whole one) on each side. A voxel joins when
    its centre is within the distance of a labelled voxel's centre; it leaves when a
    background voxel's centre is within the distance.
    """
    sp_kji = np.asarray(spacing, dtype=float)[::-1]
    margin = [int(math.ceil(abs(distance_mm) / s)) + 1 for s in sp_kji]
    box = mask_bounds(labels == value, margin if distance_mm > 0 else (1, 1, 1))
    if box is None or distance_mm == 0:
        return LabelDiff.empty(labels.shape, labels.dtype)
    mask = labels[box] == value
    if distance_mm > 0:
        new = masks.distance_to(mask, sp_kji) <= distance_mm
    else:
        # the box keeps one background voxel around the label, so the border is outside
        new = mask & (masks.distance_to(~mask, sp_kji) > -distance_mm)
    return replace_diff(labels, value, new, box, editable)


def smooth_label(
    labels: np.ndarray,
    value: int,
    sigma_mm: float,
    spacing: Sequence[float],
    editable: Iterable[int] | None = None,
) -> LabelDiff:
    """Smooth the label's surface: Gaussian-blur its mask (sigma in mm), keep >= 0.5."""
    sp_kji = np.asarray(spacing, dtype=float)[::-1]
    margin = [int(math.ceil(3 * sigma_mm / s)) + 1 for s in sp_kji]
    box = mask_bounds(labels == value, margin)
    if box is None or sigma_mm <= 0:
        return LabelDiff.empty(labels.shape, labels.dtype)
    blurred = masks.smooth((labels[box] == value).astype(np.float32), sp_kji, sigma_mm)
    return replace_diff(labels, value, blurred >= 0.5, box, editable)


# ======================================================================================
# fused priors
# ======================================================================================


def sample_on_grid(
    grid: Volume, box: Box, moving: Volume, fixed_to_moving: np.ndarray
) -> np.ndarray:
    """The moving image sampled (linearly) at the voxel centres of ``grid[box]``.

    ``fixed_to_moving`` maps planning-CT LPS points to the moving image's LPS points (the
    registration's result), which is exactly the map a resampler needs. Outside the
    moving image the value is its minimum.
    """
    matrix = np.asarray(fixed_to_moving, dtype=float)
    ref = sitk.Image([b.stop - b.start for b in box[::-1]], sitk.sitkFloat32)
    start_ijk = [b.start for b in box[::-1]]
    ref.SetOrigin(tuple(float(v) for v in grid.index_to_physical(start_ijk)))
    ref.SetSpacing(grid.spacing)
    ref.SetDirection(tuple(grid.direction.ravel()))
    transform = sitk.AffineTransform(3)
    transform.SetMatrix(tuple(matrix[:3, :3].ravel()))
    transform.SetTranslation(tuple(matrix[:3, 3]))
    image = moving.to_sitk()
    if image.GetPixelID() != sitk.sitkFloat32:
        image = sitk.Cast(image, sitk.sitkFloat32)
    out = sitk.Resample(
        image, ref, transform, sitk.sitkLinear, float(np.min(moving.array)), sitk.sitkFloat32
    )
    return sitk.GetArrayFromImage(out)


# ======================================================================================
# helpers
# ======================================================================================


def _squared_distance_from(
    index_kji: Sequence[int], shape: tuple[int, ...], spacing_kji: Sequence[float]
) -> np.ndarray:
    k, j, i = np.ogrid[: shape[0], : shape[1], : shape[2]]
    sk, sj, si = (float(s) for s in spacing_kji)
    return (
        ((k - index_kji[0]) * sk) ** 2
        + ((j - index_kji[1]) * sj) ** 2
        + ((i - index_kji[2]) * si) ** 2
    )


def _nearest_true(
    mask: np.ndarray, index_kji: tuple[int, int, int], dist2: np.ndarray, radius_mm: float
) -> tuple[int, int, int] | None:
    """``index_kji`` if it is in ``mask``, else the nearest voxel of ``mask`` within
    ``radius_mm`` (a seed on a noisy voxel still grows)."""
    if mask[index_kji]:
        return index_kji
    cand = mask & (dist2 <= radius_mm**2)
    if not cand.any():
        return None
    flat = np.flatnonzero(cand)
    best = flat[np.argmin(dist2.ravel()[flat])]
    return tuple(int(v) for v in np.unravel_index(best, mask.shape))  # type: ignore[return-value]


def _index_box(lo_ijk: np.ndarray, hi_ijk: np.ndarray, shape: tuple[int, ...]) -> Box:
    lo = np.floor(np.asarray(lo_ijk, dtype=float)[::-1]).astype(int)
    hi = np.ceil(np.asarray(hi_ijk, dtype=float)[::-1]).astype(int) + 1
    return tuple(
        slice(int(min(max(a, 0), n)), int(min(max(b, 0), n)))
        for a, b, n in zip(lo, hi, shape, strict=True)
    )  # type: ignore[return-value]


def _box_points_lps(grid: Volume, box: Box) -> np.ndarray:
    """LPS positions of the voxel centres of ``grid[box]``, shaped (nk, nj, ni, 3)."""
    k, j, i = np.meshgrid(*(np.arange(b.start, b.stop) for b in box), indexing="ij")
    m = grid.index_to_lps
    ijk = np.stack([i, j, k], axis=-1).astype(float)
    return ijk @ m[:3, :3].T + m[:3, 3]


def _near_inner_face(
    mask: np.ndarray, box: Box, shape: tuple[int, ...], margin_vox: Sequence[float]
) -> bool:
    """True when ``mask`` comes within ``margin_vox`` of a box face inside the volume."""
    if not mask.any():
        return False
    full = full_box(shape)
    for axis in range(3):
        m = int(math.ceil(margin_vox[axis]))
        other = tuple(a for a in range(3) if a != axis)
        hit = np.flatnonzero(mask.any(axis=other))
        if box[axis].start > full[axis].start and hit[0] < m:
            return True
        if box[axis].stop < full[axis].stop and hit[-1] >= mask.shape[axis] - m:
            return True
    return False
