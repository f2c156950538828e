"""Bone mask with its cortical and trabecular parts, from a CT in HU.

Used by the anatomy finder (:mod:`guideplan.processing.anatomy`), by the treatment
context on crops around a zone and by the segmentation tools. Thresholds and sizes are
in ``resources/anatomy.json`` ("bone") with their sources.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from guideplan.core.labelmap import mask_bounds
from guideplan.core.progress import CancelFn, ProgressFn, as_cancel, check_cancel
from guideplan.core.resources import load_json
from guideplan.core.volume import Volume
from guideplan.processing import masks

#: Values of :func:`bone_labels`.
CORTICAL = 1
TRABECULAR = 2


def _settings(section: str) -> dict[str, Any]:
    data = load_json("anatomy.json")[section]
    return {k: v["value"] if isinstance(v, dict) and "value" in v else v for k, v in data.items()}


def _spacing_kji(volume: Volume) -> np.ndarray:
    return np.asarray(volume.spacing[::-1], dtype=float)


def _report(progress: ProgressFn | None, fraction: float, message: str) -> None:
    if progress is not None:
        progress(fraction, message)


def body_mask(volume: Volume) -> np.ndarray:
    """The patient's body (imported lazily from anatomy to keep one definition)."""
    from guideplan.processing.anatomy import body_mask as _body

    return _body(volume)


def bone_labels(
    volume: Volume,
    body: np.ndarray | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelFn | Any = None,
) -> np.ndarray:
    """uint8 [k, j, i]: 0 outside bone, :data:`CORTICAL`, :data:`TRABECULAR`."""
    cfg = _settings("bone")
    cancel = as_cancel(cancel)
    sp = _spacing_kji(volume)
    if body is None:
        body = body_mask(volume)
    out = np.zeros(volume.array.shape, dtype=np.uint8)
    margin = [int(np.ceil(3 * float(cfg["smoothing_mm"]) / s)) + 1 for s in sp]
    box = mask_bounds(body & (volume.array > float(cfg["threshold_hu"])), margin)
    if box is None:
        return out
    _report(progress, 0.05, "Bone: smoothing")
    smooth = masks.smooth(volume.array[box], sp, float(cfg["smoothing_mm"]))
    check_cancel(cancel, "Bone segmentation")
    bone = (smooth > float(cfg["threshold_hu"])) & body[box]
    bone = _components_with(
        bone, smooth > float(cfg["cortical_hu"]), int(cfg["min_cortical_voxels"])
    )
    _report(progress, 0.3, "Bone: filling marrow")
    bone = masks.fill_holes(bone)
    check_cancel(cancel, "Bone segmentation")
    # Outer band: keep only voxels above the local half-maximum (cortex peak vs muscle).
    _report(progress, 0.5, "Bone: surface")
    # one distance map for both the surface band and the cortex depth
    depth = masks.distance_to(~bone, sp)
    band = bone & (depth <= float(cfg["surface_band_mm"]))
    radius = [max(1, int(round(float(cfg["local_max_mm"]) / s))) for s in sp]
    peak = masks.max_filter(smooth, radius)
    half = np.clip(
        0.5 * (peak + float(cfg["surface_reference_hu"])),
        float(cfg["threshold_hu"]),
        float(cfg["surface_max_hu"]),
    )
    bone &= ~(band & (smooth < half))
    check_cancel(cancel, "Bone segmentation")
    _report(progress, 0.8, "Bone: cortex")
    cortical = (
        bone & (smooth >= float(cfg["cortical_hu"])) & (depth <= float(cfg["cortex_depth_mm"]))
    )
    block = np.where(cortical, CORTICAL, np.where(bone, TRABECULAR, 0)).astype(np.uint8)
    out[box] = block
    _report(progress, 1.0, "Bone done")
    return out


def bone_mask(volume: Volume, body: np.ndarray | None = None) -> np.ndarray:
    """Boolean bone mask (cortical and trabecular together)."""
    return bone_labels(volume, body) > 0


def _components_with(mask: np.ndarray, marker: np.ndarray, min_count: int) -> np.ndarray:
    """The 26-connected components of ``mask`` holding >= ``min_count`` marker voxels."""
    if not mask.any():
        return mask
    comps = masks.components(mask)
    counts = np.bincount(comps[marker & mask].ravel(), minlength=int(comps.max()) + 1)
    keep = counts >= min_count
    keep[0] = False
    return keep[comps]
