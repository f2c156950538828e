"""Automatic anatomy masks: body and skin, bone (cortical / trabecular), spinal canal,
vertebral bodies with their levels. One call each, then editable like any label map.

All thresholds and sizes are in ``resources/anatomy.json`` with their sources. The
functions expect a CT in HU whose slices are roughly axial (the planning CT); the slice
axis is the array axis closest to head-feet.

* **Body**: the largest component above -400 HU (the table is a separate thin object),
  with the holes of each axial slice filled (lungs and bowel gas are inside the body).
  **Skin**: the outermost ``skin.thickness_mm`` of the body.
* **Bone**: smoothed HU above the trabecular threshold, in components that hold
  cortical-density voxels (drops enhanced vessels, the table), 3D holes filled (marrow
  of low density, enclosed lytic lesions), then the outer 1.5 mm re-thresholded at the
  local half-maximum between the cortex's peak and muscle, so the surface sits on the
  edge rather than on the partial-volume halo. Cortical = dense voxels near the surface.
* **Spinal canal**: in axial slices where the vertebral arch closes a ring (after a small
  closing), the canal is a hole of 60-700 mm^2. Those holes form one segment per
  vertebra; the canal is the longest chain of segments stacked head to feet with small
  steps. Each ringed slice's cross-section is the largest ellipse of the hole's shape
  inside it (the hole's corners are closing artefacts and foramen entries), interpolated
  across the disc levels (signed-distance interpolation). Past the last closed ring at
  either end the ellipse is tracked slice by slice: it may move and resize a little per
  slice, must stay out of the bone and sits where the most bone hugs its rim, so it
  follows the canal where the arch is open (the notch of an open dorsal arch: spina
  bifida, laminectomy, a sacral canal open behind) and as it curves in the sacrum. Where
  no bone holds it (a disc, the canal's end) it is carried over at most ``extend_mm``.
* **Vertebral bodies and levels**: along the canal, a slice belongs to a body when the
  bone area in front of the canal is large; runs of such slices are the bodies, and the
  discs the gaps. Levels are named only from a landmark the field of view shows:
  the **sacrum** (a long fused segment with iliac bone beside it) makes the body above it
  L5; otherwise the **thoracolumbar transition** (the lowest body with ribs beside it,
  directly above a body without) makes that body T12. Without a landmark, bodies are
  V1..Vn from the head down and the level is reported unknown: counting from an
  unseen end would name levels wrongly, which is worse than not naming them.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from guideplan.core.labelmap import mask_bounds
from guideplan.core.progress import (
    CancelFn,
    ProgressFn,
    as_cancel,
    check_cancel,
    sub_progress,
)
from guideplan.core.resources import load_json
from guideplan.core.status import Finding
from guideplan.core.volume import Volume
from guideplan.processing import masks
from guideplan.processing.bone import CORTICAL, TRABECULAR, bone_labels, bone_mask
from guideplan.processing.canal import CanalResult, find_canal

_LUMBAR = ("L1", "L2", "L3", "L4", "L5")
_THORACIC = tuple(f"T{n}" for n in range(1, 13))


def _settings(section: str) -> dict[str, Any]:
    data = load_json("anatomy.json")[section]
    return {k: v["value"] if isinstance(v, dict) and "value" in v else v for k, v in data.items()}


# ======================================================================================
# body and skin
# ======================================================================================


def body_mask(volume: Volume, threshold_hu: float | None = None) -> np.ndarray:
    """Boolean [k, j, i] mask of the patient's body (largest tissue component, holes of
    each slice filled so lungs and bowel gas belong to the body)."""
    if threshold_hu is None:
        threshold_hu = float(load_json("anatomy.json")["body"]["threshold_hu"])
    tissue = largest_component(volume.array > threshold_hu)
    return masks.fill_holes_by_slice(tissue, _slice_axis(volume))


def skin_mask(
    volume: Volume, body: np.ndarray | None = None, thickness_mm: float | None = None
) -> np.ndarray:
    """The skin as a thin shell: the outer ``thickness_mm`` of the body.

    Peeled voxel layer by voxel layer (n = thickness / in-plane spacing layers; a layer
    is the body's face-connected contour), which costs a few contour passes where a
    distance map of a whole 512x512x300 body takes seconds. The field of view's first and
    last slices are not skin: the body continues beyond them.
    """
    if body is None:
        body = body_mask(volume)
    if thickness_mm is None:
        thickness_mm = float(_settings("skin")["thickness_mm"])
    axis = _slice_axis(volume)
    sp = _spacing_kji(volume)
    plane = min(float(sp[a]) for a in range(3) if a != axis)
    layers = max(1, int(round(thickness_mm / plane)))
    return masks.outer_layers(body, layers, axis)


#: Re-exported: the 3D view and older callers import it from here (and bone from
#: :mod:`guideplan.processing.bone`).
largest_component = masks.largest_component
__all__ = [
    "CORTICAL",
    "TRABECULAR",
    "CanalResult",
    "bone_labels",
    "bone_mask",
    "find_canal",
    "largest_component",
]


# ======================================================================================
# spinal canal (guideplan.processing.canal)
# ======================================================================================


def spinal_canal(volume: Volume, bone: np.ndarray | None = None) -> np.ndarray:
    """Boolean [k, j, i] mask of the spinal canal (empty if none found). The mask alone
    says nothing about how sure it is: callers that rest a safety check on it use
    :func:`find_canal` and its ``finding``."""
    return find_canal(volume, bone).mask


# ======================================================================================
# vertebral bodies and levels
# ======================================================================================


@dataclass
class Vertebra:
    """One vertebral body found along the canal."""

    name: str
    label: int
    slices: tuple[int, int]  # first, last slice index (inclusive, along the slice axis)
    center_lps: tuple[float, float, float]
    height_mm: float
    partial: bool = False  # cut by the field of view
    ribs: bool = False
    sacrum: bool = False
    finding: Finding | None = None  # how sure the body and its level name are

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "label": self.label,
            "slices": list(self.slices),
            "center_lps": [round(v, 2) for v in self.center_lps],
            "height_mm": round(self.height_mm, 1),
            "partial": self.partial,
            "ribs": self.ribs,
            "sacrum": self.sacrum,
            "status": None if self.finding is None else self.finding.to_json(),
        }


@dataclass
class VertebraeResult:
    labels: np.ndarray  # uint8 [k, j, i], 0 = none, n = vertebra n (1 = most cranial)
    vertebrae: list[Vertebra]
    levels_known: bool
    how: str  # which landmark named the levels, or why none could
    finding: Finding = field(
        default_factory=lambda: Finding.not_found("no vertebral body looked for")
    )


def find_vertebrae(
    volume: Volume, bone: np.ndarray, canal: np.ndarray, canal_found: bool = True
) -> VertebraeResult:
    """Vertebral bodies along the canal, cranial first, named where a landmark allows.
    ``canal_found``: whether the canal is sure (else the result is uncertain too).

    Works on a box around the canal (the bodies, ribs and iliac bone the landmarks look
    at lie within ``search_box_mm`` of it), so a full-size CT costs little."""
    cfg = _settings("vertebrae")
    axis = _slice_axis(volume)
    sp = _spacing_kji(volume)
    reach = [float(cfg["search_box_mm"])] * 3
    reach[axis] = float(cfg["beyond_canal_mm"])
    box = mask_bounds(canal, [int(np.ceil(r / s)) for r, s in zip(reach, sp, strict=True)])
    if box is None:
        return _find_vertebrae(volume, bone, canal, canal_found)
    found = _find_vertebrae(masks.crop(volume, box), bone[box], canal[box], canal_found)
    labels = np.zeros(bone.shape, dtype=np.uint8)
    labels[box] = found.labels
    start = box[axis].start or 0
    for v in found.vertebrae:
        v.slices = (v.slices[0] + start, v.slices[1] + start)
    found.labels = labels
    return found


def _find_vertebrae(
    volume: Volume, bone: np.ndarray, canal: np.ndarray, canal_found: bool
) -> VertebraeResult:
    cfg = _settings("vertebrae")
    axis = _slice_axis(volume)
    sp = _spacing_kji(volume)
    slice_mm = float(sp[axis])
    pixel_mm2 = float(np.prod([sp[a] for a in range(3) if a != axis]))
    bone_s = np.moveaxis(bone, axis, 0)
    canal_s = np.moveaxis(canal, axis, 0)
    labels = np.zeros(bone_s.shape, dtype=np.uint8)
    ks = [k for k in range(canal_s.shape[0]) if canal_s[k].any()]
    if not ks:
        return VertebraeResult(
            np.moveaxis(labels, 0, axis), [], False, "no spinal canal in the field of view"
        )
    half_w, depth = (float(v) for v in cfg["body_window_mm"])
    area = np.zeros(canal_s.shape[0])
    windows: dict[int, np.ndarray] = {}
    lateral: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    where: dict[int, tuple[float, float, float]] = {}
    for k in ks:
        x, y = _plane_lps(volume, axis, k)
        # anterior is -y in LPS: the body lies in front of the canal's front edge
        where[k] = (
            float(x[canal_s[k]].mean()),
            float(y[canal_s[k]].mean()),
            float(y[canal_s[k]].min()),
        )
    # beyond the canal's ends the spine goes on out of the ring's reach (sacrum, partial
    # vertebrae): search there from the nearest canal position
    reach = int(round(float(cfg["beyond_canal_mm"]) / slice_mm))
    span = range(max(ks[0] - reach, 0), min(ks[-1] + reach + 1, canal_s.shape[0]))
    for k in span:
        cx, cy, front = where[min(ks, key=lambda c: abs(c - k))]
        x, y = _plane_lps(volume, axis, k)
        win = (np.abs(x - cx) <= half_w) & (y < front) & (y >= front - depth)
        windows[k] = bone_s[k] & win
        area[k] = np.count_nonzero(windows[k]) * pixel_mm2
        lateral[k] = (x - cx, y - cy, bone_s[k])
    ks = list(span)
    typical = float(np.percentile(area[ks], 90))
    # discs: slices of little bone and low density between endplates, spaced like
    # vertebrae (a dip in the middle of a body is too close to its neighbours)
    hu_s = np.moveaxis(volume.array, axis, 0)
    density = np.array(
        [float(np.mean(hu_s[k][windows[k]])) if windows[k].any() else 0.0 for k in ks]
    )
    discs, margin = _discs(np.asarray(ks), area[ks], density, slice_mm, cfg)
    is_body = area >= float(cfg["min_body_area_fraction"]) * typical
    # runs of body slices; a run taller than a body holds a disc the bone area alone
    # missed (an oblique disc, endplates in partial volume): split it at the discs
    tall = float(cfg["named_height_mm"][1])
    runs = []
    for r0, r1 in _runs([k for k in ks if is_body[k]]):
        if (r1 - r0 + 1) * slice_mm <= tall:
            runs.append((r0, r1))
            continue
        cuts = [d for d in discs if r0 < d < r1]
        for a, b in itertools.pairwise([r0 - 1, *cuts, r1 + 1]):
            if b - a > 1:
                runs.append((a + 1, b - 1))
    runs = [r for r in runs if (r[1] - r[0] + 1) * slice_mm >= float(cfg["min_height_mm"])]
    vertebrae = []
    for n, (k0, k1) in enumerate(runs, start=1):
        slab = np.stack([windows[k] for k in range(k0, k1 + 1)])
        body = np.zeros(bone_s.shape, dtype=bool)
        body[k0 : k1 + 1] = masks.largest_component(slab)
        labels[body] = n
        kji = np.argwhere(np.moveaxis(body, 0, axis)).mean(axis=0)
        center = volume.index_to_physical(kji[::-1])
        edge = k0 == ks[0] or k1 == ks[-1] or k0 == 0 or k1 == canal_s.shape[0] - 1
        vertebrae.append(
            Vertebra(
                f"V{n}",
                n,
                (k0, k1),
                tuple(float(v) for v in center),
                (k1 - k0 + 1) * slice_mm,
                partial=edge,
            )
        )
    for v in vertebrae:
        v.ribs = _has_ribs(v, lateral, pixel_mm2, cfg)
        # ribs beside a body make it thoracic, whatever else lies lateral of it
        v.sacrum = not v.ribs and _is_sacrum(v, lateral, pixel_mm2, cfg)
    known, how = _name_levels(volume, axis, vertebrae)
    known, how = _check_levels(vertebrae, known, how, margin, cfg)
    finding = _vertebrae_finding(vertebrae, known, how, margin, bool(canal_found))
    for v in vertebrae:
        conf = round(margin, 2)
        if v.partial:
            v.finding = Finding.uncertain("body cut by the field of view", conf)
        elif known or v.name.startswith("V"):
            v.finding = Finding.found(
                f"body between two discs, {v.height_mm:.0f} mm tall"
                + ("" if known else "; level unknown"),
                conf,
            )
        else:
            v.finding = Finding.uncertain("level name not confirmed", conf)
    return VertebraeResult(np.moveaxis(labels, 0, axis), vertebrae, known, how, finding)


def _check_levels(
    vertebrae: list[Vertebra], known: bool, how: str, margin: float, cfg: dict[str, Any]
) -> tuple[bool, str]:
    """Keep level names only when every whole body between the landmark and the top is
    as tall as a vertebral body and the discs stand out: a missed or extra disc would
    shift every name, and a wrong level is worse than an unknown one."""
    if not known:
        return known, how
    lo, hi = (float(v) for v in cfg["named_height_mm"])
    odd = [v for v in vertebrae if not v.partial and not v.sacrum and not lo <= v.height_mm <= hi]
    weak = margin < float(cfg["named_min_margin"])
    if not odd and not weak:
        return known, how
    for n, v in enumerate(vertebrae, start=1):
        v.name = "sacrum?" if v.sacrum else f"V{n}"
    why = (
        f"a body {odd[0].height_mm:.0f} mm tall (a disc missed or one too many)"
        if odd
        else "the discs do not stand out clearly"
    )
    return False, f"level unknown: {why}; bodies are named V1..Vn from the head down"


def _vertebrae_finding(
    vertebrae: list[Vertebra], known: bool, how: str, margin: float, canal_found: bool
) -> Finding:
    if not vertebrae:
        return Finding.not_found("no vertebral body along the canal")
    if not canal_found:
        return Finding.uncertain("bodies found along an uncertain canal", round(margin, 2))
    if not known:
        return Finding.uncertain(f"{len(vertebrae)} bodies; {how}", round(margin, 2))
    return Finding.found(f"{len(vertebrae)} bodies; {how}", round(margin, 2))


def _discs(
    ks: np.ndarray, area: np.ndarray, density: np.ndarray, slice_mm: float, cfg: dict[str, Any]
) -> tuple[list[int], float]:
    """Disc slices along the column: the set of low-bone, low-density slices spaced by
    one vertebra's pitch (``disc_pitch_mm``) with the lowest total cost (dynamic
    programming). Returns (disc slices, the mean cost margin of the chosen discs: how
    clearly they stand out, 0..1)."""
    n = len(ks)
    if n == 0:
        return [], 0.0
    half = max(1, int(round(float(cfg["disc_reference_mm"]) / slice_mm)))
    ref_a = np.array([np.percentile(area[max(0, i - half) : i + half + 1], 80) for i in range(n)])
    ref_d = np.array(
        [np.percentile(density[max(0, i - half) : i + half + 1], 80) for i in range(n)]
    )
    soft = float(cfg["disc_hu"])
    a_term = np.clip(area / np.maximum(ref_a, 1e-6), 0, 1)
    d_term = np.clip((density - soft) / np.maximum(ref_d - soft, 1.0), 0, 1)
    cost = a_term * d_term
    tau = float(cfg["disc_max_cost"])
    lo, hi = (int(round(float(v) / slice_mm)) for v in cfg["disc_pitch_mm"])
    best = np.full(n, np.inf)
    prev = np.full(n, -1)
    for i in range(n):
        if cost[i] >= tau:
            continue
        gain = cost[i] - tau
        if i <= hi:  # the first disc: the vertebra below may be cut by the field of view
            best[i] = gain
        j0, j1 = max(0, i - hi), i - lo
        if j1 >= j0:
            seg = best[j0 : j1 + 1]
            j = int(np.argmin(seg))
            if np.isfinite(seg[j]) and seg[j] + gain < best[i]:
                best[i], prev[i] = seg[j] + gain, j0 + j
    ends = [i for i in range(n) if np.isfinite(best[i]) and i >= n - 1 - hi]
    if not ends:
        return [], 0.0
    i = min(ends, key=lambda e: best[e])
    chosen = []
    while i >= 0:
        chosen.append(i)
        i = int(prev[i])
    chosen = chosen[::-1]
    margin = float(np.mean([tau - cost[c] for c in chosen])) / tau
    return [int(ks[c]) for c in chosen], margin


def _has_ribs(v: Vertebra, lateral: dict, pixel_mm2: float, cfg: dict[str, Any]) -> bool:
    """Rib-like bone on both sides in the band lateral of the canal, at this body.

    Rib cross-sections are small; a larger one in the band (an iliac wing) means pelvis.
    """
    lo, hi = (float(b) for b in cfg["rib_band_mm"])
    max_area = float(cfg["rib_max_area_mm2"])
    hits = 0
    for k in range(v.slices[0], v.slices[1] + 1):
        dx, dy, bone = lateral[k]
        band = bone & (np.abs(dx) >= lo) & (np.abs(dx) <= hi) & (dy > -30) & (dy < 40)
        left = np.count_nonzero(band & (dx > 0)) * pixel_mm2
        right = np.count_nonzero(band & (dx < 0)) * pixel_mm2
        if max(left, right) > max_area:
            return False
        hits += min(left, right) >= 10
    return bool(hits >= 2)


def _is_sacrum(v: Vertebra, lateral: dict, pixel_mm2: float, cfg: dict[str, Any]) -> bool:
    """A long fused segment (or one cut by the field of view) with large iliac
    cross-sections beside it (the sacroiliac joints)."""
    if v.height_mm < float(cfg["sacrum_min_height_mm"]) and not v.partial:
        return False
    need = float(cfg["ilium_min_area_mm2"])
    hits = 0
    n = v.slices[1] - v.slices[0] + 1
    for k in range(v.slices[0], v.slices[1] + 1):
        dx, _, bone = lateral[k]
        band = bone & (np.abs(dx) >= 45) & (np.abs(dx) <= 110)
        left = np.count_nonzero(band & (dx > 0)) * pixel_mm2
        right = np.count_nonzero(band & (dx < 0)) * pixel_mm2
        hits += left >= need and right >= need
    return bool(hits >= n / 2)


def _name_levels(volume: Volume, axis: int, vertebrae: list[Vertebra]) -> tuple[bool, str]:
    """Name the bodies from a visible landmark (see the module docstring)."""
    if not vertebrae:
        return False, "no vertebral body along the canal"
    # order cranial -> caudal by the LPS z of the centres (S is +z)
    vertebrae.sort(key=lambda v: -v.center_lps[2])
    for n, v in enumerate(vertebrae, start=1):
        v.label, v.name = n, f"V{n}"
    if vertebrae[-1].sacrum:
        sac = len(vertebrae) - 1
        vertebrae[sac].name = "sacrum"
        names = _count_up("L5", sac)
        for v, name in zip(vertebrae[:sac], names, strict=True):
            v.name = name
        return True, "counted up from the sacrum (the body above it is L5)"
    for n in range(len(vertebrae) - 1):
        if (
            vertebrae[n].ribs
            and not vertebrae[n + 1].ribs
            and not any(v.ribs for v in vertebrae[n + 1 :])
        ):
            names_up = _count_up("T12", n + 1)
            for v, name in zip(vertebrae[: n + 1], names_up, strict=True):
                v.name = name
            for m, v in enumerate(vertebrae[n + 1 :], start=1):
                v.name = f"L{m}" if m <= 5 else f"L{m}?"
            return True, (
                "counted from the thoracolumbar transition (the lowest body with "
                "ribs, directly above one without, is T12)"
            )
    return False, (
        "level unknown: neither the sacrum nor the thoracolumbar transition is "
        "in the field of view; bodies are named V1..Vn from the head down"
    )


def _count_up(lowest: str, n: int) -> list[str]:
    """``n`` level names ending with ``lowest`` (e.g. L5 -> [..., L3, L4, L5])."""
    order = [*(_THORACIC), *(_LUMBAR)]
    end = order.index(lowest)
    names = [order[end - m] if end - m >= 0 else f"?{m}" for m in range(n)]
    return names[::-1]


def _runs(ks: list[int]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for k in ks:
        if out and k == out[-1][1] + 1:
            out[-1] = (out[-1][0], k)
        else:
            out.append((k, k))
    return out


# ======================================================================================
# all at once
# ======================================================================================


@dataclass
class AnatomyResult:
    body: np.ndarray
    skin: np.ndarray
    bone: np.ndarray  # uint8: CORTICAL / TRABECULAR
    canal: np.ndarray
    vertebrae: VertebraeResult
    notes: list[str] = field(default_factory=list)
    canal_finding: Finding = field(
        default_factory=lambda: Finding.not_found("no spinal canal looked for")
    )
    bone_finding: Finding | None = None
    canal_result: CanalResult | None = None

    def status(self) -> dict[str, Any]:
        """Finding of each automatic structure, as JSON."""
        bone = self.bone_finding or (
            Finding.found("bone above the trabecular threshold (no status from the bone step)")
            if self.bone.any()
            else Finding.not_found("no bone in the field of view")
        )
        return {
            "canal": self.canal_finding.to_json(),
            "vertebrae": self.vertebrae.finding.to_json(),
            "bone": bone.to_json(),
        }

    def summary(self, spacing: Sequence[float]) -> dict[str, Any]:
        voxel_ml = float(np.prod(spacing)) / 1000.0
        return {
            "body_ml": round(np.count_nonzero(self.body) * voxel_ml, 1),
            "bone_ml": round(np.count_nonzero(self.bone) * voxel_ml, 1),
            "cortical_ml": round(np.count_nonzero(self.bone == CORTICAL) * voxel_ml, 1),
            "canal_ml": round(np.count_nonzero(self.canal) * voxel_ml, 2),
            # only a found canal may back distances and the absence of warnings
            "canal_found": self.canal_finding.usable,
            "status": self.status(),
            "levels_known": self.vertebrae.levels_known,
            "levels_how": self.vertebrae.how,
            "vertebrae": [v.to_json() for v in self.vertebrae.vertebrae],
            "notes": self.notes,
        }


def segment_anatomy(
    volume: Volume, progress: ProgressFn | None = None, cancel: CancelFn | Any = None
) -> AnatomyResult:
    """Body, skin, bone, canal and vertebral bodies of a planning CT in one call."""
    cancel = as_cancel(cancel)
    _report(progress, 0.0, "Body outline")
    body = body_mask(volume)
    skin = skin_mask(volume, body)
    check_cancel(cancel, "Anatomy")
    bone = bone_labels(volume, body, progress=sub_progress(progress, 0.1, 0.6), cancel=cancel)
    _report(progress, 0.6, "Spinal canal")
    found = find_canal(volume, bone > 0, progress=sub_progress(progress, 0.6, 0.85), cancel=cancel)
    check_cancel(cancel, "Anatomy")
    _report(progress, 0.85, "Vertebral bodies")
    vertebrae = find_vertebrae(volume, bone > 0, found.mask, found.finding.usable)
    notes = [] if found.finding.usable else [f"spinal canal: {found.finding.reason}"]
    _report(progress, 1.0, "Anatomy done")
    return AnatomyResult(body, skin, bone, found.mask, vertebrae, notes, found.finding, None, found)


# ======================================================================================
# helpers
# ======================================================================================


def _slice_axis(volume: Volume) -> int:
    """Array axis (0 = k, 1 = j, 2 = i) closest to head-feet: the 'axial' slice axis."""
    column = int(np.argmax(np.abs(volume.direction[2, :])))  # i, j or k column
    return 2 - column


def _spacing_kji(volume: Volume) -> np.ndarray:
    return np.asarray(volume.spacing[::-1], dtype=float)


def _plane_lps(volume: Volume, axis: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """LPS x and y of the voxel centres of slice ``k`` along ``axis`` (2D arrays)."""
    x0, y0, step = _plane_base(volume, axis)
    return x0 + k * step[0], y0 + k * step[1]


_PLANE_CACHE: dict[tuple, tuple[np.ndarray, np.ndarray, tuple[float, float]]] = {}


def _plane_base(volume: Volume, axis: int) -> tuple[np.ndarray, np.ndarray, tuple[float, float]]:
    """x, y of slice 0 and their change per slice (LPS is affine in the index)."""
    m = volume.index_to_lps
    key = (volume.array.shape, axis, m.tobytes())
    if key not in _PLANE_CACHE:
        if len(_PLANE_CACHE) > 8:
            _PLANE_CACHE.clear()
        others = [ax for ax in range(3) if ax != axis]
        shape = [volume.array.shape[a] for a in others]
        a, b = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
        kji = [np.zeros_like(a), np.zeros_like(a), np.zeros_like(a)]
        kji[others[0]], kji[others[1]] = a, b
        ijk = np.stack([kji[2], kji[1], kji[0]], axis=-1).astype(float)
        step_ijk = np.zeros(3)
        step_ijk[2 - axis] = 1.0
        _PLANE_CACHE[key] = (
            ijk @ m[0, :3] + m[0, 3],
            ijk @ m[1, :3] + m[1, 3],
            (float(m[0, :3] @ step_ijk), float(m[1, :3] @ step_ijk)),
        )
    return _PLANE_CACHE[key]


def _plane_centre(volume: Volume, axis: int, k: int, mask2d: np.ndarray) -> np.ndarray:
    x, y = _plane_lps(volume, axis, k)
    return np.array([x[mask2d].mean(), y[mask2d].mean()])


def _report(progress: ProgressFn | None, fraction: float, message: str) -> None:
    if progress is not None:
        progress(fraction, message)
