"""Lesion metrics: size, density, type, and the findings that change the plan.

* **Volume** (mL) and the **three largest orthogonal diameters** along the lesion's
  principal axes (mm; each the extent of the voxels along the axis, voxel width
  included), as radiologists measure a non-spherical lesion.
* **HU** mean / median / min / max inside the lesion.
* **Type** against the *surrounding* bone (a shell around the lesion, inside bone,
  cortex excluded): lytic well below it, blastic well above, mixed when both kinds of
  voxel are present or the median is in between (thresholds in
  ``resources/segmentation.json`` ``lesion_type``). Absolute HU would misclassify in
  osteoporotic or sclerotic bone; the contrast with the host bone is what defines the type.
* **Cortical breach**: lesion voxels outside the bone's outer contour (bone plus what
  bone bridges, as in region growing) deeper than ``breach_min_depth_mm``: the
  soft-tissue or epidural extension that raises cement-leak and burn risk.
* **Posterior-wall involvement** (vertebrae): the lesion comes within
  ``posterior_wall_mm`` of the spinal canal. An independent risk factor for cement
  leakage (CLINICAL.md). None when no canal is near, i.e. not a vertebral body lesion.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from guideplan.core.labelmap import mask_bounds
from guideplan.core.resources import load_json
from guideplan.core.volume import Volume
from guideplan.processing import masks
from guideplan.processing.segmentation import (
    GrowParams,
    SegmentationError,
    _canal_margin,
    bridged_by_bone,
    local_canal,
)


@dataclass
class LesionMetrics:
    volume_ml: float
    n_voxels: int
    centroid_lps: tuple[float, float, float]
    #: Largest first; each along the matching row of ``axes_lps``.
    diameters_mm: tuple[float, float, float]
    axes_lps: np.ndarray
    hu_mean: float
    hu_median: float
    hu_min: float
    hu_max: float
    #: "lytic" | "blastic" | "mixed" | "unknown" (no bone around to compare with)
    type: str
    bone_reference_hu: float | None
    cortical_breach: bool
    breach_volume_ml: float
    breach_depth_mm: float
    #: True / False for a vertebral-body lesion, None when no spinal canal is near.
    posterior_wall: bool | None
    distance_to_canal_mm: float | None
    notes: list[str] = field(default_factory=list)
    #: Lesion inside the spinal canal (epidural extension) and outside the bone's
    #: contour elsewhere (paravertebral / soft-tissue extension), mL.
    epidural_ml: float = 0.0
    paravertebral_ml: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "volume_ml": round(self.volume_ml, 3),
            "n_voxels": self.n_voxels,
            "centroid_lps": [round(v, 2) for v in self.centroid_lps],
            "diameters_mm": [round(v, 1) for v in self.diameters_mm],
            "axes_lps": np.round(self.axes_lps, 4).tolist(),
            "hu": {
                "mean": round(self.hu_mean, 1),
                "median": round(self.hu_median, 1),
                "min": round(self.hu_min, 1),
                "max": round(self.hu_max, 1),
            },
            "type": self.type,
            "bone_reference_hu": None
            if self.bone_reference_hu is None
            else round(self.bone_reference_hu, 1),
            "cortical_breach": self.cortical_breach,
            "breach_volume_ml": round(self.breach_volume_ml, 3),
            "breach_depth_mm": round(self.breach_depth_mm, 1),
            "posterior_wall": self.posterior_wall,
            "distance_to_canal_mm": None
            if self.distance_to_canal_mm is None
            else round(self.distance_to_canal_mm, 1),
            "epidural_ml": round(self.epidural_ml, 3),
            "paravertebral_ml": round(self.paravertebral_ml, 3),
            "notes": self.notes,
        }


def _settings() -> dict[str, Any]:
    data = load_json("segmentation.json")["lesion_type"]
    return {k: v["value"] if isinstance(v, dict) else v for k, v in data.items()}


def lesion_metrics(
    volume: Volume,
    lesion: np.ndarray,
    bone: np.ndarray | None = None,
    canal: np.ndarray | None = None,
) -> LesionMetrics:
    """Measure a lesion mask (bool [k, j, i] on ``volume``'s grid).

    ``bone`` and ``canal`` (whole-grid masks from :mod:`guideplan.processing.anatomy`)
    are used when given; otherwise bone is thresholded and the canal found from the
    vertebra's geometry in a box around the lesion
    (:func:`guideplan.processing.segmentation.local_canal`), which is what a one-click
    measurement needs.
    """
    if lesion.shape != volume.array.shape:
        raise ValueError(f"lesion shape {lesion.shape} differs from {volume.array.shape}")
    if not lesion.any():
        raise SegmentationError(
            "The lesion label is empty.", hint="Segment the lesion first (click in it)."
        )
    cfg = _settings()
    grow = GrowParams.from_resources()
    sp = np.asarray(volume.spacing[::-1], dtype=float)
    # work in a box around the lesion: context for the shell, the breach and the canal
    margin = [int(math.ceil(max(grow.bridge_span_mm, 40.0) / s)) for s in sp]
    box = mask_bounds(lesion, margin)
    assert box is not None
    les = lesion[box]
    hu = volume.array[box].astype(np.float32)
    values = hu[les]
    n = int(values.size)
    voxel_ml = float(np.prod(sp)) / 1000.0

    kji = np.argwhere(lesion)
    pts = volume.index_to_physical(kji[:, ::-1].astype(float))
    centroid = pts.mean(axis=0)
    diameters, axes = _principal_diameters(pts, volume)

    smooth = masks.smooth(hu, sp, grow.smoothing_mm)
    bone_box = (smooth > grow.bone_hu) if bone is None else bone[box].astype(bool)
    reference = _bone_reference(hu, les, bone_box, sp, cfg, grow)
    kind = _classify(values, reference, cfg)

    notes: list[str] = []
    if canal is None:
        # the canal found from geometry stops a partial-volume voxel short of the wall
        found = local_canal(volume, box, grow, les)
        canal_box = _canal_margin(found, sp, grow.canal_margin_mm) & ~bone_box & ~les
    else:
        canal_box = canal[box].astype(bool)
    posterior, to_canal = _posterior_wall(les, canal_box, sp)
    breach_ml, depth = _breach(les, bone_box & ~les, canal_box, sp, grow)
    limits = load_json("segmentation.json")["lesion_metrics"]
    # lesion in the canal: epidural extension
    epidural_ml = np.count_nonzero(les & canal_box & ~bone_box) * voxel_ml
    paravertebral_ml = max(breach_ml * voxel_ml - epidural_ml, 0.0)
    report_ml = float(limits["epidural_min_ml"]["value"])
    # non-bone lesion voxels touching the canal: the wall between them is gone
    touching = (
        masks.distance_to(canal_box, sp) <= float(np.max(sp))
        if canal_box.any()
        else np.zeros_like(les)
    )
    wall_gone_ml = np.count_nonzero(les & ~bone_box & touching) * voxel_ml
    breach = depth >= float(limits["breach_min_depth_mm"]["value"]) or wall_gone_ml >= report_ml
    if wall_gone_ml >= report_ml and epidural_ml < report_ml:
        notes.append("the lesion replaces the posterior wall next to the spinal canal")
    if epidural_ml >= report_ml:
        notes.append(f"epidural extension: {epidural_ml:.3f} mL of lesion in the spinal canal")
    if paravertebral_ml >= report_ml and depth >= float(limits["breach_min_depth_mm"]["value"]):
        notes.append(
            f"paravertebral / soft-tissue extension: {paravertebral_ml:.3f} mL outside the bone"
        )
    if reference is None:
        notes.append("no bone around the lesion: type unknown")
    return LesionMetrics(
        volume_ml=n * voxel_ml,
        n_voxels=n,
        centroid_lps=tuple(float(v) for v in centroid),  # type: ignore[arg-type]
        diameters_mm=diameters,
        axes_lps=axes,
        hu_mean=float(values.mean()),
        hu_median=float(np.median(values)),
        hu_min=float(values.min()),
        hu_max=float(values.max()),
        type=kind,
        bone_reference_hu=reference,
        cortical_breach=bool(breach),
        breach_volume_ml=breach_ml * voxel_ml,
        breach_depth_mm=depth,
        posterior_wall=posterior,
        distance_to_canal_mm=to_canal,
        notes=notes,
        epidural_ml=float(epidural_ml),
        paravertebral_ml=float(paravertebral_ml),
    )


def _principal_diameters(
    pts: np.ndarray, volume: Volume
) -> tuple[tuple[float, float, float], np.ndarray]:
    """Extents along the principal axes (largest first): the voxel centres' extent plus
    one sampling step along the axis, so a voxelised sphere of radius r measures 2r."""
    centred = pts - pts.mean(axis=0)
    if len(pts) < 3:
        axes = np.eye(3)
    else:
        _, vecs = np.linalg.eigh(centred.T @ centred)
        axes = vecs[:, ::-1].T  # rows, largest variance first
    proj = centred @ axes.T
    # sampling step along each axis: 1 / |a / spacing| in the grid's own frame
    local = axes @ volume.direction
    step = 1.0 / np.sqrt(np.sum((local / np.asarray(volume.spacing)) ** 2, axis=1))
    ext = proj.max(axis=0) - proj.min(axis=0) + step
    order = np.argsort(-ext)
    return tuple(float(v) for v in ext[order]), axes[order]  # type: ignore[return-value]


def _bone_reference(
    hu: np.ndarray,
    les: np.ndarray,
    bone: np.ndarray,
    sp: np.ndarray,
    cfg: dict[str, Any],
    grow: GrowParams,
) -> float | None:
    """Median HU of the trabecular bone in a shell around the lesion."""
    lo, hi = (float(v) for v in cfg["surrounding_shell_mm"])
    dist = masks.distance_to(les, sp)
    cortical = float(load_json("anatomy.json")["bone"]["cortical_hu"]["value"])
    shell = (dist >= lo) & (dist <= hi) & bone & (hu < cortical)
    if np.count_nonzero(shell) < 20:
        return None
    return max(float(np.median(hu[shell])), float(cfg["min_bone_reference_hu"]))


def _classify(values: np.ndarray, reference: float | None, cfg: dict[str, Any]) -> str:
    if reference is None:
        return "unknown"
    lytic_cut = float(cfg["lytic_below_bone_fraction"]) * reference
    blastic_cut = float(cfg["blastic_above_bone_fraction"]) * reference
    part = float(cfg["mixed_component_fraction"])
    low = float(np.mean(values < lytic_cut))
    high = float(np.mean(values > blastic_cut))
    if low >= part and high >= part:
        return "mixed"
    median = float(np.median(values))
    if median < lytic_cut:
        return "lytic"
    if median > blastic_cut:
        return "blastic"
    return "mixed"


def _breach(
    les: np.ndarray, bone: np.ndarray, canal: np.ndarray, sp: np.ndarray, grow: GrowParams
) -> tuple[int, float]:
    """Lesion voxels outside the bone's outer contour: (count, max depth in mm).

    The spinal canal is outside bone even where the lesion has opened it to the body
    (then the chord test alone would count the canal as the body's inside).
    """
    inside = bone | bridged_by_bone(
        bone, sp, grow.bridge_span_mm, grow.canal_run_mm, grow.canal_ring_directions
    )
    inside &= ~canal
    outside = les & ~inside
    if not outside.any():
        return 0, 0.0
    depth = masks.distance_to(inside, sp)
    return int(np.count_nonzero(outside)), float(depth[outside].max())


def _posterior_wall(
    les: np.ndarray, canal: np.ndarray, sp: np.ndarray
) -> tuple[bool | None, float | None]:
    settings = load_json("segmentation.json")["lesion_metrics"]
    if not canal.any():
        return None, None
    dist = masks.distance_to(canal, sp)
    nearest = float(dist[les].min())
    if nearest > float(settings["vertebral_context_mm"]["value"]):
        return None, nearest
    # voxel centres one voxel apart touch: at 3 mm voxels "within 2 mm" means adjacent
    reach = max(float(settings["posterior_wall_mm"]["value"]), float(np.max(sp)))
    return nearest <= reach, nearest
