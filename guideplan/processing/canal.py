"""The spinal canal on real CT: found from the spine's geometry, with a status.

Steps (numbers in ``resources/anatomy.json`` "canal", each with its source):

1. **Column.** On a coarse grid (``column_grid_mm``) the bone is filled slice by slice
   (cavities larger than a vertebral body, such as the pelvic ring, are not filled) and
   its in-plane distance map taken: the vertebral body is the thickest dense blob near
   the body's midline. Its centre per slice is smoothed along the slice axis with a
   robust local-linear fit (outliers such as an iliac wing or a rib head get no weight).
2. **Candidates.** On a working grid (``work_grid_mm``) in a window around the column,
   a pixel may be canal when it is not bone, holds soft tissue, fat or fluid, and is
   enclosed by bone: at least ``min_enclosure`` of ``rays`` rays hit bone within
   ``ray_mm`` (an open lamina, a sacral arch open behind or a voxel-thin cortex still
   enclose most rays). Per slice the canal candidate is the largest enclosed region
   lying behind the column's centre and near its midline.
3. **Centreline.** The candidates' centres are smoothed along the slice axis with the
   same robust fit, twice (the second time each slice's candidate is the region nearest
   the first curve): a lytic lesion behind a body's posterior wall, an epidural mass or
   a foramen seen on a few slices is an outlier of a curve that the neighbouring
   levels hold, and does not move it.
4. **Cross-section.** Each slice's canal is its candidate region clipped to an ellipse
   around the centreline (the canal's robust size nearby, tighter in front, where the
   posterior wall is), united with a core ellipse so that disc levels, where no bone
   encloses the canal, are not left empty; bone and air are removed.
5. **Status.** ``found`` only when the canal is long, followed on most slices, close to
   the column's midline and smooth; ``uncertain`` when the evidence is weak;
   ``not_found`` without a column or candidates. Callers that rest a safety check on the
   canal must look at the finding, not only at the mask.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import SimpleITK as sitk

from guideplan.core.progress import CancelFn, ProgressFn, as_cancel, check_cancel
from guideplan.core.resources import load_json
from guideplan.core.status import Finding
from guideplan.core.volume import Volume
from guideplan.processing import masks


@dataclass
class CanalResult:
    """The spinal canal found automatically, and how sure that is.

    ``mask`` is boolean [k, j, i] on the volume's grid; ``centreline_lps`` (N, 3) the
    smoothed canal centre of each slice the canal spans (LPS mm), ``slices`` their index
    along the slice axis (``axis``: 0 = k, 1 = j, 2 = i)."""

    mask: np.ndarray
    finding: Finding
    centreline_lps: np.ndarray
    slices: np.ndarray
    axis: int = 0
    column_lps: np.ndarray | None = None  # vertebral column centre per slice (N, 3)

    @property
    def found(self) -> bool:
        return self.finding.usable


def _settings() -> dict[str, Any]:
    data = load_json("anatomy.json")["canal"]
    return {k: v["value"] if isinstance(v, dict) and "value" in v else v for k, v in data.items()}


def slice_axis(volume: Volume) -> int:
    """Array axis (0 = k, 1 = j, 2 = i) closest to head-feet: the 'axial' slice axis."""
    column = int(np.argmax(np.abs(volume.direction[2, :])))
    return 2 - column


# ======================================================================================
# public entry
# ======================================================================================


def find_canal(
    volume: Volume,
    bone: np.ndarray | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelFn | Any = None,
) -> CanalResult:
    """The spinal canal of a CT in HU (see the module docstring) with its finding."""
    cancel = as_cancel(cancel)
    cfg = _settings()
    axis = slice_axis(volume)
    if bone is None:
        from guideplan.processing.bone import bone_mask

        bone = bone_mask(volume)
    grid = _Grid(volume, axis)
    hu = np.moveaxis(volume.array, axis, 0)
    bone_s = np.moveaxis(bone, axis, 0)
    empty = np.zeros(volume.array.shape, dtype=bool)

    def nothing(reason: str) -> CanalResult:
        return CanalResult(
            empty, Finding.not_found(reason), np.zeros((0, 3)), np.zeros(0, int), axis
        )

    dense = bone_s
    if not dense.any():
        return nothing("no bone in the field of view")
    _report(progress, 0.05, "Spinal canal: vertebral column")
    column = _column(hu, dense, grid, cfg)
    check_cancel(cancel, "Spinal canal")
    if column is None:
        return nothing("no vertebral column (no thick dense bone near the midline)")
    col_rc, col_ok = column
    _report(progress, 0.35, "Spinal canal: enclosed regions")
    work = _Window(hu, dense, grid, col_rc, col_ok, cfg)
    check_cancel(cancel, "Spinal canal")
    cands = work.candidates(cfg)
    _report(progress, 0.6, "Spinal canal: centreline")
    line = _centreline(work, cands, grid, cfg)
    if line is None:
        return nothing("no region enclosed by bone behind the vertebral bodies")
    check_cancel(cancel, "Spinal canal")
    _report(progress, 0.8, "Spinal canal: cross-sections")
    mask_s = work.paint(line, cands, bone_s, hu, cfg)
    mask = np.moveaxis(mask_s, 0, axis)
    ks = line.slices
    centre_lps = grid.to_lps(ks, line.centre[ks])
    column_lps = grid.to_lps(ks, col_rc[ks])
    finding = _judge(line, col_rc, col_ok, grid, cfg, bool(mask.any()))
    _report(progress, 1.0, "Spinal canal done")
    return CanalResult(mask, finding, centre_lps, ks, axis, column_lps)


# ======================================================================================
# geometry of the slice-major grid
# ======================================================================================


class _Grid:
    """In-plane pixel grid of the slice-major arrays (axis 0 = the slice axis).

    Positions are (row mm, column mm) from the edge of the first pixel; ``post`` and
    ``left`` are the unit vectors of LPS +y (posterior) and +x (left) in them."""

    def __init__(self, volume: Volume, axis: int):
        self.volume, self.axis = volume, axis
        self.others = [a for a in range(3) if a != axis]
        sp = np.asarray(volume.spacing[::-1], dtype=float)  # k, j, i
        self.slice_mm = float(sp[axis])
        self.sp = np.array([sp[a] for a in self.others])
        m = volume.index_to_lps[:3, :3]
        cols = [2 - a for a in self.others]  # ijk component of each in-plane axis
        per_mm = np.stack([m[:, c] / s for c, s in zip(cols, self.sp, strict=True)], axis=1)
        self.post = _unit(per_mm[1])
        self.left = _unit(per_mm[0])
        self.shape = tuple(volume.array.shape[a] for a in self.others)

    def to_lps(self, ks: np.ndarray, rc_mm: np.ndarray) -> np.ndarray:
        """LPS of slice ``ks`` and in-plane grid positions ``rc_mm`` (N, 2)."""
        n = len(ks)
        kji = np.zeros((n, 3))
        kji[:, self.axis] = ks
        # grid mm are measured from the first pixel's edge: its centre is at half a pixel
        kji[:, self.others[0]] = rc_mm[:, 0] / self.sp[0] - 0.5
        kji[:, self.others[1]] = rc_mm[:, 1] / self.sp[1] - 0.5
        return self.volume.index_to_physical(kji[:, ::-1])


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else v


def _block(arr: np.ndarray, f: tuple[int, int], how: str) -> np.ndarray:
    """Block-reduce the two in-plane axes by factors ``f`` (any / mean), slab by slab."""
    n, h, w = arr.shape
    h2, w2 = max(h // f[0], 1), max(w // f[1], 1)
    if f == (1, 1):
        return arr.astype(np.float32) if how == "mean" else arr.copy()
    out = np.empty((n, h2, w2), dtype=bool if how == "any" else np.float32)
    for s in range(0, n, 32):
        part = arr[s : s + 32, : h2 * f[0], : w2 * f[1]]
        part = part.reshape(part.shape[0], h2, f[0], w2, f[1])
        out[s : s + 32] = part.any(axis=(2, 4)) if how == "any" else part.mean(axis=(2, 4))
    return out


# ======================================================================================
# robust smoothing along the slice axis
# ======================================================================================


def _robust_fit(
    z: np.ndarray,
    values: np.ndarray,
    zq: np.ndarray,
    half_window: float,
    scale_floor: float,
    weights: np.ndarray | None = None,
    iterations: int = 3,
) -> tuple[np.ndarray, np.ndarray]:
    """Local-linear fit (tricube kernel of ``half_window``) of ``values`` (N, 2) at
    ``z`` (N,), evaluated at ``zq``, with bisquare robustness weights (residual scale
    at least ``scale_floor``). Returns (fit at zq (M, 2), robustness weights (N,))."""
    w_rob = np.ones(len(z)) if weights is None else weights.astype(float).copy()
    base = w_rob.copy()
    fit_q = np.zeros((len(zq), values.shape[1]))
    for it in range(iterations + 1):
        fit_q = _local_linear(z, values, zq, half_window, w_rob)
        if it == iterations:
            break
        fit_z = _local_linear(z, values, z, half_window, w_rob)
        r = np.linalg.norm(values - fit_z, axis=1)
        s = max(6.0 * float(np.median(r[base > 0])) if (base > 0).any() else 0.0, scale_floor)
        u = np.clip(r / s, 0.0, 1.0)
        w_rob = base * (1.0 - u**2) ** 2
    return fit_q, w_rob


def _local_linear(
    z: np.ndarray, values: np.ndarray, zq: np.ndarray, h: float, w: np.ndarray
) -> np.ndarray:
    d = (z[None, :] - zq[:, None]) / h  # (M, N)
    k = np.clip(1.0 - np.abs(d) ** 3, 0.0, None) ** 3 * w[None, :]
    s0 = k.sum(axis=1)
    s1 = (k * d).sum(axis=1)
    s2 = (k * d * d).sum(axis=1)
    t0 = k @ values
    t1 = (k * d) @ values
    det = s0 * s2 - s1 * s1
    ok = det > 1e-9 * np.maximum(s0, 1e-12) ** 2
    out = np.full((len(zq), values.shape[1]), np.nan)
    out[ok] = (s2[ok, None] * t0[ok] - s1[ok, None] * t1[ok]) / det[ok, None]
    flat = ~ok & (s0 > 0)
    out[flat] = t0[flat] / s0[flat, None]
    return out


# ======================================================================================
# 1. the vertebral column
# ======================================================================================


def _column(
    hu: np.ndarray, dense: np.ndarray, grid: _Grid, cfg: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray] | None:
    """(column centre per slice (n, 2) grid mm, slices where a body was seen)."""
    f = tuple(max(1, int(round(float(cfg["column_grid_mm"]) / s))) for s in grid.sp)
    csp = grid.sp * np.asarray(f)
    solid = _block(dense, f, "any")
    n, h, w = solid.shape
    # close gaps of a thin or fatty body's cortical shell (in-plane only)
    rad = [int(round(float(cfg["column_closing_mm"]) / s)) for s in csp]
    if max(rad) > 0:
        image = sitk.BinaryMorphologicalClosing(
            masks.to_image(solid), [rad[1], rad[0], 0], sitk.sitkBall
        )
        solid = sitk.GetArrayFromImage(image).astype(bool)
    filled = masks.fill_holes_by_slice(solid, 0)
    holes = filled & ~solid
    if holes.any():
        # cavities larger than a vertebral body (the pelvic ring, a rib cage) stay open
        lab = masks.components(holes, full=False)
        counts = np.bincount(lab.ravel())
        big = counts * float(np.prod(csp)) > float(cfg["max_body_area_mm2"])
        big[0] = False
        filled &= ~big[lab]
    dist = masks.distance_to(~filled, [masks.IN_PLANE_ONLY, *csp])
    rr, cc = np.meshgrid(
        (np.arange(h) + 0.5) * f[0] * grid.sp[0],
        (np.arange(w) + 0.5) * f[1] * grid.sp[1],
        indexing="ij",
    )
    # the body's midline per slice (a crop inside the body: its middle)
    tissue = _block(hu > -400, f, "any")
    cnt = tissue.sum(axis=(1, 2)).astype(float)
    mid = np.stack(
        [
            (tissue * rr).sum(axis=(1, 2)) / np.maximum(cnt, 1),
            (tissue * cc).sum(axis=(1, 2)) / np.maximum(cnt, 1),
        ],
        axis=1,
    )
    lateral = np.abs(
        (rr[None] - mid[:, 0, None, None]) * grid.left[0]
        + (cc[None] - mid[:, 1, None, None]) * grid.left[1]
    )
    score = np.where(lateral <= float(cfg["column_max_off_midline_mm"]), dist, 0.0)
    score = score - float(cfg["column_midline_weight"]) * lateral
    flat = score.reshape(n, -1)
    best = np.argmax(flat, axis=1)
    radius = dist.reshape(n, -1)[np.arange(n), best]
    pos = np.stack([rr.ravel()[best], cc.ravel()[best]], axis=1)
    min_r = float(cfg["column_min_radius_mm"])
    seen = radius >= min_r
    if np.count_nonzero(seen) * grid.slice_mm < float(cfg["found_min_length_mm"]) / 2:
        return None
    z = np.arange(n) * grid.slice_mm
    hw, floor = float(cfg["smooth_half_window_mm"]), float(cfg["robust_scale_mm"])
    fit, wr = _robust_fit(z[seen], pos[seen], z, hw, floor)
    agree = np.zeros(n, dtype=bool)
    agree[np.flatnonzero(seen)[wr > 0.5]] = True
    core = _longest_run(agree, int(round(float(cfg["column_max_gap_mm"]) / grid.slice_mm)))
    if core is None:
        return None
    # from the longest consistent stretch, follow the column slice by slice: each slice's
    # thickest blob near where the stretch's trend predicts it (an iliac wing or a rib
    # head beside the column is never taken for it)
    # start from the middle of the stretch, where the fit is best held
    mid_k = (
        int(
            np.flatnonzero(agree[core[0] : core[1] + 1])[
                len(np.flatnonzero(agree[core[0] : core[1] + 1])) // 2
            ]
        )
        + core[0]
    )
    good = np.zeros(n, dtype=bool)
    good[mid_k] = True
    core = (mid_k, mid_k)
    found = pos.copy()
    flat_d = dist.reshape(n, -1)
    rr_f, cc_f = rr.ravel(), cc.ravel()
    reach = float(cfg["column_track_mm"])
    max_gap = float(cfg["column_max_gap_mm"])
    for step in (-1, 1):
        k = core[0] - 1 if step < 0 else core[1] + 1
        missing = 0
        while 0 <= k < n and missing * grid.slice_mm <= max_gap:
            near = np.flatnonzero(good)
            near = near[np.abs(near - k) * grid.slice_mm <= 2 * hw]
            pred = _predict(z[near], found[near], z[k])
            if len(near) < 5:  # too short a trend: the seed's smoothed position
                pred = fit[k] if np.isfinite(fit[k]).all() else found[near].mean(axis=0)
            # sideways the column moves slowly (scoliosis); front-back the thickest point
            # may jump within a body
            dx = (rr_f - pred[0]) * grid.left[0] + (cc_f - pred[1]) * grid.left[1]
            dy = (rr_f - pred[0]) * grid.post[0] + (cc_f - pred[1]) * grid.post[1]
            grow = missing * grid.slice_mm * 0.5
            near_ok = (np.abs(dx) <= 0.5 * reach + grow) & (np.abs(dy) <= reach + grow)
            allowed = np.where(near_ok, flat[k], -np.inf)
            b = int(np.argmax(allowed))
            if np.isfinite(allowed[b]) and flat_d[k, b] >= min_r:
                found[k] = (rr_f[b], cc_f[b])
                good[k] = True
                missing = 0
            else:
                missing += 1
            k += step
    fit, _ = _robust_fit(z[good], found[good], z, hw, floor)
    fit = _fill_ends(fit)
    return fit, good


def _longest_run(flags: np.ndarray, max_gap: int) -> tuple[int, int] | None:
    """(first, last) index of the longest run of True allowing gaps of ``max_gap``."""
    idx = np.flatnonzero(flags)
    if len(idx) == 0:
        return None
    breaks = np.flatnonzero(np.diff(idx) > max_gap + 1)
    starts = np.r_[0, breaks + 1]
    ends = np.r_[breaks, len(idx) - 1]
    sizes = ends - starts
    b = int(np.argmax(sizes))
    return int(idx[starts[b]]), int(idx[ends[b]])


def _predict(z: np.ndarray, values: np.ndarray, zq: float) -> np.ndarray:
    """Linear trend of ``values`` over ``z`` evaluated at ``zq`` (the mean if flat)."""
    if len(z) < 3 or np.ptp(z) == 0:
        return values.mean(axis=0)
    a = np.polyfit(z - zq, values, 1)
    return a[1]


def _fill_ends(fit: np.ndarray) -> np.ndarray:
    """Carry the first/last defined row over undefined (nan) rows."""
    ok = np.isfinite(fit).all(axis=1)
    if not ok.any():
        return fit
    idx = np.flatnonzero(ok)
    out = fit.copy()
    for c in range(fit.shape[1]):
        out[:, c] = np.interp(np.arange(len(fit)), idx, fit[idx, c])
    return out


# ======================================================================================
# 2. enclosed candidates in a window that follows the column
# ======================================================================================


class _Window:
    """Per-slice windows of the working grid centred on the column (slice-major)."""

    def __init__(self, hu, dense, grid: _Grid, col_rc, col_ok, cfg):
        self.grid = grid
        f = tuple(max(1, int(round(float(cfg["work_grid_mm"]) / s))) for s in grid.sp)
        self.f = f
        self.wsp = grid.sp * np.asarray(f)
        half = float(cfg["window_mm"])
        self.half = np.array([int(np.ceil(half / s)) for s in self.wsp])
        n = hu.shape[0]
        span = np.flatnonzero(col_ok)
        # the column goes on past its last thick body for up to a gap (a disc, a body
        # cut by the field of view)
        more = int(round(float(cfg["column_max_gap_mm"]) / grid.slice_mm))
        self.ks = np.arange(max(span[0] - more, 0), min(span[-1] + more + 1, n))
        self.col = col_rc
        # each slice's window: centred on the column, in working pixels
        shape = tuple(2 * self.half + 1)
        m = len(self.ks)
        self.lo = np.zeros((m, 2), dtype=int)
        self.dense = np.zeros((m, *shape), dtype=bool)
        self.hu = np.zeros((m, *shape), dtype=np.float32)
        self.valid = np.zeros((m, *shape), dtype=bool)
        for t, k in enumerate(self.ks):
            centre_px = np.floor(col_rc[k] / self.wsp).astype(int)
            lo = centre_px - self.half
            self.lo[t] = lo
            full_lo = lo * np.asarray(f)
            full_hi = (lo + np.asarray(shape)) * np.asarray(f)
            a0, b0 = max(full_lo[0], 0), max(full_lo[1], 0)
            a1, b1 = min(full_hi[0], hu.shape[1]), min(full_hi[1], hu.shape[2])
            if a1 <= a0 or b1 <= b0:
                continue
            # whole blocks only
            a1 = a0 + (a1 - a0) // f[0] * f[0]
            b1 = b0 + (b1 - b0) // f[1] * f[1]
            if a1 <= a0 or b1 <= b0:
                continue
            d = _block(dense[k : k + 1, a0:a1, b0:b1], f, "any")[0]
            v = _block(hu[k : k + 1, a0:a1, b0:b1], f, "mean")[0]
            r0, c0 = (a0 - full_lo[0]) // f[0], (b0 - full_lo[1]) // f[1]
            self.dense[t, r0 : r0 + d.shape[0], c0 : c0 + d.shape[1]] = d
            self.hu[t, r0 : r0 + d.shape[0], c0 : c0 + d.shape[1]] = v
            self.valid[t, r0 : r0 + d.shape[0], c0 : c0 + d.shape[1]] = True
        # noise: content and thin bone are judged on smoothed HU (in-plane)
        self.hu = masks.smooth(self.hu, [masks.IN_PLANE_ONLY, *self.wsp], float(cfg["smooth_mm"]))
        self.dense |= (self.hu >= float(cfg["dense_hu"])) & self.valid
        r = np.arange(shape[0]) - self.half[0]
        c = np.arange(shape[1]) - self.half[1]
        rr, cc = np.meshgrid(r * self.wsp[0], c * self.wsp[1], indexing="ij")
        self.rel = (rr, cc)  # mm from the window's centre pixel

    def pixel_mm(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        """Grid mm (row, column) of the pixel centres of window ``t``."""
        base = (self.lo[t] + self.half + 0.5) * self.wsp
        return self.rel[0] + base[0], self.rel[1] + base[1]

    def candidates(self, cfg) -> np.ndarray:
        """Boolean (m, h, w): not bone, soft content, enclosed by bone."""
        n_rays = int(cfg["rays"])
        reach = float(cfg["ray_mm"])
        step = float(min(self.wsp))
        hits = np.zeros(self.dense.shape, dtype=np.uint8)
        # hits per sector (front, left, behind, right of the patient): the canal is held
        # in front and on both sides; muscle beside the arch is open to one side
        sector_hits = np.zeros((4, *self.dense.shape), dtype=np.uint8)
        sector_rays = np.zeros(4)
        pad = int(np.ceil(reach / step)) + 1
        padded = np.pad(self.dense, ((0, 0), (pad, pad), (pad, pad)))
        h, w = self.dense.shape[1:]
        for ang in np.linspace(0.0, 2 * np.pi, n_rays, endpoint=False):
            hit = np.zeros(self.dense.shape, dtype=bool)
            seen = set()
            u = np.array([np.cos(ang), np.sin(ang)])  # grid (row, column) direction
            for s in np.arange(step, reach + 1e-6, step):
                dr = int(round(s * u[0] / self.wsp[0]))
                dc = int(round(s * u[1] / self.wsp[1]))
                if (dr, dc) in seen or (dr, dc) == (0, 0):
                    continue
                seen.add((dr, dc))
                hit |= padded[:, pad + dr : pad + dr + h, pad + dc : pad + dc + w]
            hits += hit
            heading = np.degrees(np.arctan2(u @ self.grid.left, -(u @ self.grid.post))) % 360
            sector = int(((heading + 45.0) % 360) // 90)  # 0 front, 1 left, 2 back, 3 right
            sector_hits[sector] += hit
            sector_rays[sector] += 1
        need = float(cfg["min_side_enclosure"])
        held = np.ones(self.dense.shape, dtype=bool)
        for sector in (0, 1, 3):
            if sector_rays[sector]:
                held &= sector_hits[sector] >= need * sector_rays[sector]
        enclosed = hits >= float(cfg["min_enclosure"]) * n_rays
        soft = (self.hu >= float(cfg["min_content_hu"])) & (self.hu <= float(cfg["max_content_hu"]))
        return enclosed & held & soft & ~self.dense & self.valid


# ======================================================================================
# 3. centreline
# ======================================================================================


@dataclass
class _Line:
    slices: np.ndarray  # slice indices the canal spans
    centre: np.ndarray  # (n, 2) grid mm for every slice (nan outside the span)
    axes: np.ndarray  # (n, 2) robust semi-axes (mm along the window's row, column)
    observed: np.ndarray  # (n,) bool: a candidate agreed with the curve
    residual: np.ndarray  # (n,) mm, nan where no candidate
    span_ks: np.ndarray  # slices of the window stack


def _regions(work: _Window, cands: np.ndarray):
    """Per slice the candidate regions: labels (m, h, w) and per label its slice, area
    (mm^2), centre (grid mm) and second moments."""
    # 2D components: the slices interleaved with empty ones, so none connects to the next
    gap = np.zeros((2 * cands.shape[0], *cands.shape[1:]), dtype=bool)
    gap[::2] = cands
    lab = masks.components(gap, full=False)[::2]
    n = int(lab.max())
    if n == 0:
        return lab, None
    t_idx = np.broadcast_to(np.arange(cands.shape[0])[:, None, None], cands.shape)
    flat = lab.ravel()
    cnt = np.bincount(flat, minlength=n + 1).astype(float)
    tt = np.bincount(flat, weights=t_idx.ravel(), minlength=n + 1) / np.maximum(cnt, 1)
    rr = np.broadcast_to(work.rel[0][None], cands.shape).ravel()
    cc = np.broadcast_to(work.rel[1][None], cands.shape).ravel()
    mr = np.bincount(flat, weights=rr, minlength=n + 1) / np.maximum(cnt, 1)
    mc = np.bincount(flat, weights=cc, minlength=n + 1) / np.maximum(cnt, 1)
    t_of = np.rint(tt).astype(int)
    base = (work.lo[t_of] + work.half + 0.5) * work.wsp
    info = {
        "t": t_of,
        "area": cnt * float(np.prod(work.wsp)),
        "centre": np.stack([mr, mc], axis=1) + base,
    }
    return lab, info


def _centreline(work: _Window, cands: np.ndarray, grid: _Grid, cfg) -> _Line | None:
    lab, info = _regions(work, cands)
    if info is None:
        return None
    m = cands.shape[0]
    z = work.ks * grid.slice_mm
    col = work.col[work.ks]
    rel = info["centre"] - col[info["t"]]
    ahead = rel @ grid.post  # mm behind the column's centre (posterior +)
    side = np.abs(rel @ grid.left)
    area = info["area"]
    ok = (
        (area >= float(cfg["min_area_mm2"]))
        & (area <= float(cfg["max_area_mm2"]))
        & (ahead >= float(cfg["behind_column_mm"][0]))
        & (ahead <= float(cfg["behind_column_mm"][1]))
        & (side <= float(cfg["max_off_column_mm"]))
    )
    ok[0] = False
    if not ok.any():
        return None
    # first pass: each slice's admissible region met first behind the column's centre
    # (the canal lies directly behind the body; muscle between the arches or the iliac
    # crests lies farther back)
    pick = np.full(m, -1)
    order = np.argsort(-ahead)
    for lbl in order:
        if ok[lbl]:
            pick[info["t"][lbl]] = lbl
    has = pick >= 0
    if np.count_nonzero(has) < 2:
        return None
    hw = float(cfg["smooth_half_window_mm"])
    floor = float(cfg["robust_scale_mm"])
    obs = info["centre"][pick[has]]
    fit, _wr = _robust_fit(z[has], obs, z, hw, floor)
    fit = _fill_ends(fit)
    # second pass: the admissible region nearest the first curve
    near_mm = float(cfg["max_residual_mm"])
    dist = np.linalg.norm(info["centre"] - fit[info["t"]], axis=1)
    pick2 = np.full(m, -1)
    best = np.full(m, np.inf)
    for lbl in np.flatnonzero(ok):
        t = info["t"][lbl]
        if dist[lbl] < best[t]:
            best[t], pick2[t] = dist[lbl], lbl
    has2 = (pick2 >= 0) & (best <= 2.0 * near_mm)
    if np.count_nonzero(has2) < 2:
        return None
    obs2 = info["centre"][pick2[has2]]
    fit2, wr2 = _robust_fit(z[has2], obs2, z, hw, floor)
    fit2 = _fill_ends(fit2)
    resid = np.full(m, np.nan)
    resid[has2] = np.linalg.norm(obs2 - fit2[has2], axis=1)
    observed = np.zeros(m, dtype=bool)
    observed[np.flatnonzero(has2)[(wr2 > 0.1) & (resid[has2] <= near_mm)]] = True
    # the canal spans the observed slices, carried a little past their ends
    obs_t = np.flatnonzero(observed)
    if len(obs_t) == 0:
        return None
    ext = int(round(float(cfg["extend_mm"]) / grid.slice_mm))
    t0, t1 = max(obs_t[0] - ext, 0), min(obs_t[-1] + ext, m - 1)
    # robust size: second moments of the observed regions, smoothed along the canal
    sizes = _region_axes(lab, pick2, observed, work, grid)
    n_all = work.col.shape[0]
    centre = np.full((n_all, 2), np.nan)
    centre[work.ks] = fit2
    axes_all = np.full((n_all, 2), np.nan)
    if observed.any():
        sz, _ = _robust_fit(z[observed], sizes[observed], z, 2 * hw, float(cfg["robust_scale_mm"]))
        sz = _fill_ends(sz)
        axes_all[work.ks] = np.minimum(sz, np.asarray(cfg["max_semi_axes_mm"], dtype=float))
    line = _Line(
        slices=work.ks[t0 : t1 + 1],
        centre=centre,
        axes=axes_all,
        observed=observed,
        residual=resid,
        span_ks=work.ks,
    )
    line.pick = pick2  # type: ignore[attr-defined]
    line.labels = lab  # type: ignore[attr-defined]
    line.t_range = (t0, t1)  # type: ignore[attr-defined]
    return line


def _region_axes(lab, pick, observed, work: _Window, grid: _Grid) -> np.ndarray:
    """Semi-axes (left-right, front-back; mm) of each slice's picked region: twice the
    standard deviation along the patient's x and y."""
    out = np.full((len(pick), 2), np.nan)
    for t in np.flatnonzero(observed):
        sel = lab[t] == pick[t]
        rr, cc = work.rel[0][sel], work.rel[1][sel]
        x = rr * grid.left[0] + cc * grid.left[1]
        y = rr * grid.post[0] + cc * grid.post[1]
        half_px = 0.5 * float(min(work.wsp))
        out[t] = [2.0 * x.std() + half_px, 2.0 * y.std() + half_px]
    return out


# ======================================================================================
# 4. cross-sections
# ======================================================================================


def _window_paint(
    self: _Window, line: _Line, cands: np.ndarray, bone_s: np.ndarray, hu: np.ndarray, cfg
) -> np.ndarray:
    """The canal mask (slice-major, full grid)."""
    grid = self.grid
    out = np.zeros(bone_s.shape, dtype=bool)
    lab = line.labels  # type: ignore[attr-defined]
    t0, t1 = line.t_range  # type: ignore[attr-defined]
    grow = float(cfg["clip_scale"])
    front = float(cfg["clip_front_scale"])
    core = float(cfg["core_scale"])
    lo_hu, hi_hu = float(cfg["min_content_hu"]), float(cfg["max_content_hu"])
    f = np.asarray(self.f)
    for t in range(t0, t1 + 1):
        k = int(self.ks[t])
        c = line.centre[k]
        ax = line.axes[k]
        if not (np.isfinite(c).all() and np.isfinite(ax).all()):
            continue
        # the candidate region (working grid) to the full grid, each pixel an f0 x f1 block
        keep_region = cands[t] & (lab[t] == line.pick[t]) if line.pick[t] >= 0 else None  # type: ignore[attr-defined]
        lo = self.lo[t] * f
        hgt, wid = self.dense[t].shape[0] * f[0], self.dense[t].shape[1] * f[1]
        a0, b0 = max(lo[0], 0), max(lo[1], 0)
        a1, b1 = min(lo[0] + hgt, out.shape[1]), min(lo[1] + wid, out.shape[2])
        if a1 <= a0 or b1 <= b0:
            continue
        rows = (np.arange(a0, a1) + 0.5) * grid.sp[0] - c[0]
        cols = (np.arange(b0, b1) + 0.5) * grid.sp[1] - c[1]
        dr, dc = np.meshgrid(rows, cols, indexing="ij")
        x = dr * grid.left[0] + dc * grid.left[1]
        y = dr * grid.post[0] + dc * grid.post[1]
        # tighter in front: the posterior wall (and a lesion behind it) is there
        ay = np.where(y < 0, front * ax[1], grow * ax[1])
        clip = (x / (grow * ax[0])) ** 2 + (y / ay) ** 2 <= 1.0
        region = (x / (core * ax[0])) ** 2 + (y / (core * ax[1])) ** 2 <= 1.0
        if keep_region is not None:
            up = np.repeat(np.repeat(keep_region, f[0], axis=0), f[1], axis=1)
            region |= up[a0 - lo[0] : a1 - lo[0], b0 - lo[1] : b1 - lo[1]] & clip
        sub_hu = hu[k, a0:a1, b0:b1]
        region &= ~bone_s[k, a0:a1, b0:b1] & (sub_hu >= lo_hu) & (sub_hu <= hi_hu + 200)
        out[k, a0:a1, b0:b1] = region
    return out


_Window.paint = _window_paint  # type: ignore[attr-defined]


# ======================================================================================
# 5. status
# ======================================================================================


def _judge(line: _Line, col_rc, col_ok, grid: _Grid, cfg, painted: bool) -> Finding:
    t0, t1 = line.t_range  # type: ignore[attr-defined]
    ks = line.slices
    length = len(ks) * grid.slice_mm
    if not painted or len(ks) == 0:
        return Finding.not_found("no canal cross-section could be drawn")
    frac = float(np.count_nonzero(line.observed[t0 : t1 + 1])) / max(t1 - t0 + 1, 1)
    c = line.centre[ks]
    steps = np.linalg.norm(np.diff(c, axis=0), axis=1) / grid.slice_mm if len(ks) > 1 else [0]
    off = np.abs((c - col_rc[ks]) @ grid.left)
    res = line.residual[t0 : t1 + 1]
    med_res = float(np.nanmedian(res)) if np.isfinite(res).any() else np.inf
    problems = []
    if length < float(cfg["found_min_length_mm"]):
        problems.append(f"followed over {length:.0f} mm only")
    if frac < float(cfg["found_min_observed"]):
        problems.append(f"enclosed by bone on {100 * frac:.0f} % of its slices only")
    if float(np.median(off)) > float(cfg["found_max_off_column_mm"]):
        problems.append(f"{np.median(off):.0f} mm off the vertebral bodies' midline")
    slope = float(np.max(steps))
    if slope > float(cfg["found_max_slope"]):
        problems.append(f"its centre jumps by {slope:.1f} mm per mm between slices")
    if med_res > float(cfg["found_max_residual_mm"]):
        problems.append(f"its centres scatter by {med_res:.1f} mm around the curve")
    confidence = float(np.clip(frac, 0, 1)) * float(
        np.clip(1.0 - med_res / (2 * float(cfg["found_max_residual_mm"])), 0, 1)
    )
    if problems:
        return Finding.uncertain("spinal canal uncertain: " + "; ".join(problems), confidence)
    return Finding.found(
        f"spinal canal followed over {length:.0f} mm behind the vertebral bodies, enclosed "
        f"by bone on {100 * frac:.0f} % of its slices",
        confidence,
    )


def _report(progress: ProgressFn | None, fraction: float, message: str) -> None:
    if progress is not None:
        progress(fraction, message)


__all__ = ["CanalResult", "find_canal", "slice_axis"]
