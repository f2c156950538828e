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
from guideplan.core.volume import Volume
from guideplan.processing import masks
from guideplan.processing.bone import CORTICAL, TRABECULAR, bone_labels, bone_mask

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
__all__ = ["CORTICAL", "TRABECULAR", "bone_labels", "bone_mask", "largest_component"]


# ======================================================================================
# spinal canal
# ======================================================================================


@dataclass
class _Segment:
    """A run of ringed canal holes: one per vertebra, usually."""

    slices: dict[int, np.ndarray]  # slice index -> 2D mask (whole slice)
    centres: dict[int, np.ndarray]  # slice index -> in-plane LPS centre (x, y)

    @property
    def first(self) -> int:
        return min(self.slices)

    @property
    def last(self) -> int:
        return max(self.slices)


def spinal_canal(volume: Volume, bone: np.ndarray | None = None) -> np.ndarray:
    """Boolean [k, j, i] mask of the bony spinal canal's contents (empty if none found)."""
    cfg = _settings("canal")
    if bone is None:
        bone = bone_mask(volume)
    axis = _slice_axis(volume)
    sp = _spacing_kji(volume)
    slice_mm = float(sp[axis])
    plane_sp = [float(sp[a]) for a in range(3) if a != axis]
    pixel_mm2 = plane_sp[0] * plane_sp[1]
    moved = np.moveaxis(bone, axis, 0)
    segments = _ring_holes(volume, moved, axis, plane_sp, cfg, pixel_mm2)
    chain = _best_chain(segments, slice_mm, cfg)
    canal = np.zeros(moved.shape, dtype=bool)
    if not chain or (chain[-1].last - chain[0].first + 1) * slice_mm < float(cfg["min_length_mm"]):
        return np.moveaxis(canal, 0, axis)
    # each ringed slice's cross-section: the rounded canal inside the ring (the hole's
    # corners are closing artefacts and the entries of the foramina)
    sections: dict[int, _Ellipse] = {}
    for seg in chain:
        for k, m in seg.slices.items():
            e = _inscribed_ellipse(m, plane_sp, float(cfg["shape_tolerance"]))
            if e is not None:
                sections[k] = e
                e.paint(canal[k], plane_sp)
    ks = sorted(sections)
    if not ks:
        return np.moveaxis(canal, 0, axis)
    for a, b in itertools.pairwise(ks):
        _interpolate(canal, a, b, plane_sp)
    # past the last closed rings (an open arch, the sacrum, the field of view's edge):
    # follow the cross-section slice by slice along the bone that holds it
    _track(canal, moved, sections[ks[0]], ks[0], -1, plane_sp, slice_mm, cfg)
    _track(canal, moved, sections[ks[-1]], ks[-1], 1, plane_sp, slice_mm, cfg)
    canal &= ~moved
    # air and lung never fill the canal (a ring hole's corner may reach the lung)
    canal &= np.moveaxis(volume.array, axis, 0) >= float(cfg["min_content_hu"])
    return np.moveaxis(canal, 0, axis)


@dataclass
class _Ellipse:
    """A canal cross-section: an ellipse in one slice, in mm of the slice's pixel grid
    (row * row spacing, column * column spacing)."""

    centre: np.ndarray  # (2,) mm
    axes: np.ndarray  # (2,) semi-axes, mm
    basis: np.ndarray  # (2, 2) columns: the unit directions of the axes

    def box(self, plane_sp: Sequence[float], grow_mm: float = 0.0) -> tuple[np.ndarray, ...]:
        """(first pixel, pixel-grid mm coordinates u, v along the axes) of a box
        holding the ellipse grown by ``grow_mm``."""
        reach = float(self.axes.max()) + grow_mm
        half = np.array([int(np.ceil(reach / s)) + 1 for s in plane_sp])
        mid = np.rint(self.centre / np.asarray(plane_sp)).astype(int)
        lo = mid - half
        r = (np.arange(2 * half[0] + 1) + lo[0]) * plane_sp[0] - self.centre[0]
        c = (np.arange(2 * half[1] + 1) + lo[1]) * plane_sp[1] - self.centre[1]
        rr, cc = np.meshgrid(r, c, indexing="ij")
        u = rr * self.basis[0, 0] + cc * self.basis[1, 0]
        v = rr * self.basis[0, 1] + cc * self.basis[1, 1]
        return lo, u, v

    def paint(self, plane: np.ndarray, plane_sp: Sequence[float]) -> None:
        lo, u, v = self.box(plane_sp)
        inside = (u / self.axes[0]) ** 2 + (v / self.axes[1]) ** 2 <= 1.0
        _paste(plane, inside, lo)


def _paste(plane: np.ndarray, patch: np.ndarray, lo: np.ndarray) -> None:
    """OR ``patch`` into ``plane`` at ``lo`` (clipped at the plane's edges)."""
    a0, b0 = max(lo[0], 0), max(lo[1], 0)
    a1 = min(lo[0] + patch.shape[0], plane.shape[0])
    b1 = min(lo[1] + patch.shape[1], plane.shape[1])
    if a1 > a0 and b1 > b0:
        plane[a0:a1, b0:b1] |= patch[a0 - lo[0] : a1 - lo[0], b0 - lo[1] : b1 - lo[1]]


def _crop(plane: np.ndarray, lo: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``plane[lo : lo + shape]``, False beyond the plane's edges."""
    out = np.zeros(shape, dtype=bool)
    a0, b0 = max(lo[0], 0), max(lo[1], 0)
    a1 = min(lo[0] + shape[0], plane.shape[0])
    b1 = min(lo[1] + shape[1], plane.shape[1])
    if a1 > a0 and b1 > b0:
        out[a0 - lo[0] : a1 - lo[0], b0 - lo[1] : b1 - lo[1]] = plane[a0:a1, b0:b1]
    return out


def _inscribed_ellipse(
    hole: np.ndarray, plane_sp: Sequence[float], tolerance: float
) -> _Ellipse | None:
    """The largest ellipse of the hole's own shape (second moments) that stays inside
    it, up to ``tolerance`` of its area: the moment ellipse, shrunk until it fits."""
    idx = np.argwhere(hole)
    if len(idx) < 5:
        return None
    pts = idx * np.asarray(plane_sp)
    centre = pts.mean(axis=0)
    var, basis = np.linalg.eigh(np.cov((pts - centre).T))
    axes = 2.0 * np.sqrt(np.maximum(var, 1e-6))
    e = _Ellipse(centre, axes, basis)
    lo, u, v = e.box(plane_sp, 0.2 * float(axes.max()))
    inside = _crop(hole, lo, u.shape)
    r2 = (u / axes[0]) ** 2 + (v / axes[1]) ** 2
    for scale in np.arange(1.2, 0.49, -0.02):
        ell = r2 <= scale**2
        n = np.count_nonzero(ell)
        if n and np.count_nonzero(ell & ~inside) <= tolerance * n:
            return _Ellipse(centre, axes * scale, basis)
    return None


def _track(
    canal: np.ndarray,
    bone: np.ndarray,
    start: _Ellipse,
    k0: int,
    step: int,
    plane_sp: list[float],
    slice_mm: float,
    cfg: dict[str, Any],
) -> None:
    """Follow the canal's cross-section from slice ``k0`` in direction ``step``.

    In each next slice the last held ellipse may move a little and grow or shrink a
    little (per mm along the canal); of the fits that stay out of the bone, the one with
    the most bone along its rim wins: a ring without a closed arch, the notch of an open
    dorsal arch (spina bifida, laminectomy, a sacral canal open behind) or the groove
    behind the vertebral body still hold it. Where no fit has enough bone along its rim
    (a disc, the canal's end) the search widens slice by slice; once the canal is held
    again, the slices in between are interpolated. After ``extend_mm`` without a hold
    the last held ellipse is carried over those slices and the canal stops.
    """
    per_slice = float(cfg["track_slope"]) * slice_mm
    max_reach = float(cfg["max_step_mm"])
    rate = float(cfg["track_size_rate_per_mm"]) * slice_mm
    fit = _RimFit(
        band=float(cfg["rim_mm"]),
        max_in_bone=float(cfg["shape_tolerance"]),
        min_area=float(cfg["min_area_mm2"]),
        factors=(1.0 - rate, 1.0, 1.0 + rate),
        move_cost=float(cfg["track_move_cost"]),
        size_cost=float(cfg["track_size_cost"]),
    )
    min_rim = float(cfg["min_rim_contact"])
    coast_limit = float(cfg["extend_mm"])
    held, pending = start, []
    k = k0 + step
    while 0 <= k < canal.shape[0]:
        reach_mm = min(per_slice * (len(pending) + 1), max_reach)
        found = fit(held, bone[k], plane_sp, reach_mm, per_slice)
        if found is not None and found[1] >= min_rim:
            new = found[0]
            n = len(pending) + 1
            for m, kp in enumerate(pending, start=1):
                t = m / n
                _Ellipse(
                    (1 - t) * held.centre + t * new.centre,
                    (1 - t) * held.axes + t * new.axes,
                    held.basis,
                ).paint(canal[kp], plane_sp)
            new.paint(canal[k], plane_sp)
            held, pending = new, []
        else:
            pending.append(k)
            if len(pending) * slice_mm > coast_limit:
                break
        k += step
    for kp in pending[: int(coast_limit / slice_mm)]:
        held.paint(canal[kp], plane_sp)


@dataclass
class _RimFit:
    """Best placement of an ellipse (moved by up to ``reach`` mm, each semi-axis scaled by
    one of ``factors``) in a slice's bone: at most ``max_in_bone`` of it in bone, and the
    largest bone fraction in the band of width ``band`` (mm) around it. Both are measured
    on fixed sample points (area-uniform inside, two rings in the band), so the ellipse
    moves by fractions of a pixel."""

    band: float
    max_in_bone: float
    min_area: float
    factors: tuple[float, ...]
    move_cost: float
    size_cost: float

    def __call__(
        self,
        e: _Ellipse,
        bone2d: np.ndarray,
        plane_sp: Sequence[float],
        reach: float,
        per: float,
    ) -> tuple[_Ellipse, float] | None:
        """(the ellipse, the bone fraction of its rim band), or None if none fits.
        ``per`` (mm) is the move allowed per slice, the unit of the move cost."""
        sp = np.asarray(plane_sp, dtype=float)
        step = max(0.5 * float(sp.min()), reach / 6.0)
        n = int(np.floor(reach / step + 1e-9))
        offs = np.arange(-n, n + 1) * step
        shifts = np.stack(np.meshgrid(offs, offs, indexing="ij"), axis=-1).reshape(-1, 2)
        fa, fb = (g.ravel() for g in np.meshgrid(self.factors, self.factors, indexing="ij"))
        axes = e.axes[None, :] * np.stack([fa, fb], axis=1)  # (F, 2)
        keep = np.pi * axes[:, 0] * axes[:, 1] >= self.min_area
        if not keep.any():
            return None
        axes = axes[keep]
        inner, ring = _SAMPLES
        ang = np.stack([np.cos(ring), np.sin(ring)], axis=1)  # (R, 2)
        pts_in = inner[None, :, :] * axes[:, None, :]  # (F, I, 2), ellipse frame
        pts_rim = np.concatenate(
            [ang[None] * (axes[:, None, :] + d * self.band) for d in (0.5, 1.0)], axis=1
        )  # (F, 2R, 2)

        def lookup(pts: np.ndarray) -> np.ndarray:  # (F, P, 2) ellipse frame -> (F, S, P)
            mm = pts @ e.basis.T  # to the slice's (row, column) mm
            at = e.centre + shifts[None, :, None, :] + mm[:, None, :, :]
            idx = np.rint(at / sp).astype(np.intp)
            inside = (
                (idx[..., 0] >= 0)
                & (idx[..., 0] < bone2d.shape[0])
                & (idx[..., 1] >= 0)
                & (idx[..., 1] < bone2d.shape[1])
            )
            out = np.zeros(inside.shape, dtype=bool)
            out[inside] = bone2d[idx[..., 0][inside], idx[..., 1][inside]]
            return out

        in_bone = lookup(pts_in).mean(axis=2)  # (F, S)
        frac = lookup(pts_rim).mean(axis=2)
        ok = in_bone <= self.max_in_bone
        if not ok.any():
            return None
        # the canal changes little from slice to slice: a move of ``per`` mm or a change of
        # one size step must buy that much more bone on the rim (ties: the smallest change)
        size_step = max(float(np.log(max(self.factors))), 1e-6)
        steps = np.abs(np.log(axes / e.axes[None, :])).sum(axis=1) / size_step
        score = (
            np.where(ok, frac, -1.0)
            - self.move_cost * np.sum(shifts**2, axis=1)[None, :] / per**2
            - self.size_cost * steps[:, None]
        )
        f, s_ = np.unravel_index(int(np.argmax(score)), score.shape)
        return _Ellipse(e.centre + shifts[s_], axes[f], e.basis), float(frac[f, s_])


def _sample_points(n_inner: int = 160, n_ring: int = 48) -> tuple[np.ndarray, np.ndarray]:
    """Area-uniform points in the unit disc (a sunflower) and the angles of a ring."""
    i = np.arange(n_inner) + 0.5
    r = np.sqrt(i / n_inner)
    t = i * np.pi * (3.0 - np.sqrt(5.0))
    return np.stack([r * np.cos(t), r * np.sin(t)], axis=1), np.linspace(
        0.0, 2.0 * np.pi, n_ring, endpoint=False
    )


_SAMPLES = _sample_points()


def _ring_holes(
    volume: Volume,
    bone: np.ndarray,
    axis: int,
    plane_sp: list[float],
    cfg: dict[str, Any],
    pixel_mm2: float,
) -> list[_Segment]:
    """Holes enclosed by bone in each slice, grouped into 3D segments."""
    box = mask_bounds(bone)
    if box is None:
        return []
    # closing within each slice only (no reach across slices), then each slice's holes
    closed = masks.closing(bone[box], [masks.IN_PLANE_ONLY, *plane_sp], float(cfg["closing_mm"]))
    holes = np.zeros(bone.shape, dtype=bool)
    holes[box] = masks.fill_holes_by_slice(closed, 0) & ~closed
    comps = masks.components(holes, full=False)
    segments = []
    lo_a, hi_a = float(cfg["min_area_mm2"]), float(cfg["max_area_mm2"])
    # group the hole voxels by component in one pass (not one scan per component)
    flat = np.flatnonzero(comps)
    ids = comps.ravel()[flat]
    order = np.argsort(ids, kind="stable")
    flat, ids = flat[order], ids[order]
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    for start, stop in zip(starts, [*starts[1:], len(ids)], strict=True):
        where = np.unravel_index(flat[start:stop], comps.shape)
        ks = np.unique(where[0])
        areas = np.array([np.count_nonzero(where[0] == k) for k in ks]) * pixel_mm2
        if len(ks) < 2 or not lo_a <= float(np.median(areas)) <= hi_a:
            continue
        slices: dict[int, np.ndarray] = {}
        centres: dict[int, np.ndarray] = {}
        for k, area in zip(ks, areas, strict=True):
            if not lo_a <= area <= hi_a:
                continue  # merged with a lesion cavity or a gap: interpolated instead
            m = np.zeros(bone.shape[1:], dtype=bool)
            pick = where[0] == k
            m[where[1][pick], where[2][pick]] = True
            slices[int(k)] = m
            centres[int(k)] = _plane_centre(volume, axis, int(k), m)
        if len(slices) >= 2:
            segments.append(_Segment(slices, centres))
    return segments


def _best_chain(segments: list[_Segment], slice_mm: float, cfg: dict[str, Any]) -> list[_Segment]:
    """Longest head-to-feet chain of segments with small steps (dynamic programming)."""
    if not segments:
        return []
    segs = sorted(segments, key=lambda s: s.first)
    max_gap = float(cfg["max_gap_mm"]) / slice_mm
    max_step = float(cfg["max_step_mm"])
    score = [float(len(s.slices)) for s in segs]
    prev: list[int | None] = [None] * len(segs)
    for b, sb in enumerate(segs):
        for a in range(b):
            sa = segs[a]
            gap = sb.first - sa.last
            if gap < 1 or gap > max_gap:
                continue
            step = float(np.linalg.norm(sb.centres[sb.first] - sa.centres[sa.last]))
            if step <= max_step and score[a] + len(sb.slices) > score[b]:
                score[b] = score[a] + len(sb.slices)
                prev[b] = a
    end: int | None = int(np.argmax(score))
    chain = []
    while end is not None:
        chain.append(segs[end])
        end = prev[end]
    return chain[::-1]


def _interpolate(stack: np.ndarray, a: int, b: int, plane_sp: list[float]) -> None:
    """Fill slices a+1..b-1 of ``stack`` from slices a and b (signed distances)."""
    if b - a < 2:
        return
    # only around the two cross-sections (whole-slice distance maps cost more)
    both = stack[a] | stack[b]
    if not both.any():
        return
    rows, cols = np.flatnonzero(both.any(axis=1)), np.flatnonzero(both.any(axis=0))
    box = (slice(max(rows[0] - 2, 0), rows[-1] + 3), slice(max(cols[0] - 2, 0), cols[-1] + 3))
    da = masks.signed_distance(stack[a][box], plane_sp)
    db = masks.signed_distance(stack[b][box], plane_sp)
    for k in range(a + 1, b):
        t = (k - a) / (b - a)
        stack[k][box] |= (1.0 - t) * da + t * db <= 0.0


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
        }


@dataclass
class VertebraeResult:
    labels: np.ndarray  # uint8 [k, j, i], 0 = none, n = vertebra n (1 = most cranial)
    vertebrae: list[Vertebra]
    levels_known: bool
    how: str  # which landmark named the levels, or why none could


def find_vertebrae(volume: Volume, bone: np.ndarray, canal: np.ndarray) -> VertebraeResult:
    """Vertebral bodies along the canal, cranial first, named where a landmark allows."""
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
    is_body = area >= float(cfg["min_body_area_fraction"]) * typical
    runs = _runs([k for k in ks if is_body[k]])
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
    return VertebraeResult(np.moveaxis(labels, 0, axis), vertebrae, known, how)


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

    def summary(self, spacing: Sequence[float]) -> dict[str, Any]:
        voxel_ml = float(np.prod(spacing)) / 1000.0
        return {
            "body_ml": round(np.count_nonzero(self.body) * voxel_ml, 1),
            "bone_ml": round(np.count_nonzero(self.bone) * voxel_ml, 1),
            "cortical_ml": round(np.count_nonzero(self.bone == CORTICAL) * voxel_ml, 1),
            "canal_ml": round(np.count_nonzero(self.canal) * voxel_ml, 2),
            "canal_found": bool(self.canal.any()),
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
    canal = spinal_canal(volume, bone > 0)
    check_cancel(cancel, "Anatomy")
    _report(progress, 0.85, "Vertebral bodies")
    vertebrae = find_vertebrae(volume, bone > 0, canal)
    notes = (
        []
        if canal.any()
        else [
            "no spinal canal found (no vertebra in the field of "
            "view, or its arch is not closed on any slice)"
        ]
    )
    _report(progress, 1.0, "Anatomy done")
    return AnatomyResult(body, skin, bone, canal, vertebrae, notes)


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
