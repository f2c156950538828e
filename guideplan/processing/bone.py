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
from guideplan.core.status import Finding
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
    """uint8 [k, j, i]: 0 outside bone, :data:`CORTICAL`, :data:`TRABECULAR`.

    1. Bone density: voxels above ``edge_hu`` connected to voxels above ``threshold_hu``
       (hysteresis: a partial-volume rib or lamina at 3 mm keeps its edge, noise in
       muscle does not start a component).
    2. A component is bone when it holds ``min_cortical_mm3`` of cortical density, or it
       is thin (a rib, a lamina: no voxel deeper than ``thin_bone_mm``); a thick
       bone-density blob without cortex is a contrast-filled vessel or organ.
    3. Marrow: what the bone encloses in 3D (any HU), and, per axial slice, what a
       closing of ``envelope_closing_mm`` encloses when it is above ``marrow_hu``: the
       cortical shell need not close (3 mm slices, thin cortex) and osteoporotic marrow
       below 150 HU is still bone, while the canal's CSF and cord, fat and muscle
       (below ``marrow_hu``) stay out.
    4. Surface: the outer band is re-thresholded at the local half-maximum.
    """
    cfg = _settings("bone")
    cancel = as_cancel(cancel)
    sp = _spacing_kji(volume)
    if body is None:
        body = body_mask(volume)
    out = np.zeros(volume.array.shape, dtype=np.uint8)
    margin = [int(np.ceil(3 * float(cfg["smoothing_mm"]) / s)) + 1 for s in sp]
    margin = [
        m + int(np.ceil(float(cfg["envelope_closing_mm"]) / s))
        for m, s in zip(margin, sp, strict=True)
    ]
    box = mask_bounds(body & (volume.array > float(cfg["threshold_hu"])), margin)
    if box is None:
        return out
    _report(progress, 0.05, "Bone: smoothing")
    sigma = smoothing_for_noise(volume.array[box], body[box], sp, cfg)
    smooth = masks.smooth(volume.array[box], sp, sigma)
    check_cancel(cancel, "Bone segmentation")
    inside = body[box]
    bone = _bone_components(smooth, inside, sp, cfg)
    check_cancel(cancel, "Bone segmentation")
    _report(progress, 0.3, "Bone: filling marrow")
    bone = _with_marrow(bone, smooth, inside, sp, cfg)
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
        float(cfg["edge_hu"]),
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


def smoothing_for_noise(
    array: np.ndarray, body: np.ndarray, sp: np.ndarray, cfg: dict[str, Any]
) -> float:
    """The smallest Gaussian sigma (mm) of the ladder that brings the soft tissue's noise
    to ``noise_target_hu``: a low-dose or thin-slice CT (noise 40-80 HU) would otherwise
    scatter bone-density specks through the muscle and holes through the marrow.

    The noise is measured in a central block (cheap on a 512 x 512 x 300 CT) as the
    robust spread of neighbour differences in soft tissue (-50..100 HU)."""
    lo, hi = (float(v) for v in cfg["soft_tissue_hu"])
    half = [max(1, int(round(float(cfg["noise_block_mm"]) / 2 / s))) for s in sp]
    centre = [n // 2 for n in array.shape]
    block = tuple(
        slice(max(0, c - h), min(n, c + h))
        for c, h, n in zip(centre, half, array.shape, strict=True)
    )
    sub = array[block].astype(np.float32)
    soft = (sub > lo) & (sub < hi) & body[block]
    sigma = float(cfg["smoothing_mm"])
    for sigma in (float(v) for v in cfg["smoothing_ladder_mm"]):
        if _noise(masks.smooth(sub, sp, sigma), soft) <= float(cfg["noise_target_hu"]):
            break
    return sigma


def _noise(values: np.ndarray, soft: np.ndarray) -> float:
    pair = soft[:, :, 1:] & soft[:, :, :-1]
    if np.count_nonzero(pair) < 100:
        return 0.0
    diff = (values[:, :, 1:] - values[:, :, :-1])[pair]
    return float(1.4826 * np.median(np.abs(diff - np.median(diff))) / np.sqrt(2.0))


def _bone_components(
    smooth: np.ndarray, inside: np.ndarray, sp: np.ndarray, cfg: dict[str, Any]
) -> np.ndarray:
    """Steps 1-2: bone-density components that are bone (cortex, or thin like a rib)."""
    dense = (smooth > float(cfg["threshold_hu"])) & inside
    if not dense.any():
        return dense
    # the partial-volume edge is a voxel or two, not a path into cartilage or muscle
    reach = max(float(cfg["edge_reach_mm"]), float(np.max(sp)))
    edge = (smooth > float(cfg["edge_hu"])) & inside & masks.dilate(dense, sp, reach)
    comps = masks.components(edge)
    n = int(comps.max()) + 1
    has_core = np.bincount(comps[dense].ravel(), minlength=n) > 0
    voxel_mm3 = float(np.prod(sp))
    cortex = (smooth > float(cfg["cortical_hu"])) & edge
    cortical_mm3 = np.bincount(comps[cortex].ravel(), minlength=n) * voxel_mm3
    depth = masks.distance_to(~edge, sp)
    deepest = np.zeros(n, dtype=np.float32)
    np.maximum.at(deepest, comps[edge].ravel(), depth[edge].ravel())
    size_mm3 = np.bincount(comps[edge].ravel(), minlength=n) * voxel_mm3
    thin = (deepest <= float(cfg["thin_bone_mm"])) & (size_mm3 >= float(cfg["min_thin_mm3"]))
    keep = has_core & ((cortical_mm3 >= float(cfg["min_cortical_mm3"])) | thin)
    keep[0] = False
    return keep[comps]


def _with_marrow(
    bone: np.ndarray, smooth: np.ndarray, inside: np.ndarray, sp: np.ndarray, cfg: dict[str, Any]
) -> np.ndarray:
    """Step 3: the marrow the bone encloses, also where the shell does not close."""
    if not bone.any():
        return bone
    filled = masks.fill_holes(bone)
    in_plane = [masks.IN_PLANE_ONLY, float(sp[1]), float(sp[2])]
    closed = masks.closing(bone, in_plane, float(cfg["envelope_closing_mm"]))
    envelope = masks.fill_holes_by_slice(closed | bone)
    marrow = envelope & (smooth > float(cfg["marrow_hu"])) & inside
    return filled | marrow


def bone_finding(volume: Volume, labels: np.ndarray) -> Finding:
    """How far the bone mask can be trusted, with the reason (for the anatomy report).

    Not found: no bone at all. Uncertain: too little bone for a skeleton in view
    (``min_found_ml``), or a trabecular part mostly below ``marrow_hu`` (more of the
    marrow depends on the envelope than on density). Otherwise found.
    """
    cfg = _settings("bone")
    voxel_ml = float(np.prod(volume.spacing)) / 1000.0
    n = int(np.count_nonzero(labels))
    if n == 0:
        return Finding.not_found("no bone-density structure with a cortex or a rib's shape")
    volume_ml = n * voxel_ml
    trabecular = volume.array[labels == TRABECULAR]
    median = float(np.median(trabecular)) if trabecular.size else float("nan")
    text = f"{volume_ml:.0f} mL of bone, trabecular median {median:.0f} HU"
    if volume_ml < float(cfg["min_found_ml"]):
        return Finding.uncertain(f"only {text}: check the field of view and the bone mask")
    low = float(np.mean(trabecular < float(cfg["threshold_hu"]))) if trabecular.size else 0.0
    if low > 0.5:
        return Finding.uncertain(
            f"{text}; {100 * low:.0f} % of the marrow below {cfg['threshold_hu']} HU "
            "(osteoporosis or partial volume): marrow taken from the cortex's envelope",
            confidence=1.0 - low,
        )
    return Finding.found(text)
