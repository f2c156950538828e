"""Binary-mask helpers shared by the segmentation tools and the anatomy masks.

Masks are numpy bool arrays indexed ``[k, j, i]``; spacings are given in the same
(k, j, i) order. SimpleITK does the heavy lifting (distance maps, connected components,
hole filling); these wrappers keep the conversions in one place and make every distance
Euclidean in millimetres, so results do not depend on anisotropic voxels.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import SimpleITK as sitk

from guideplan.core.volume import Volume


def to_image(mask: np.ndarray, spacing_kji: Sequence[float] | None = None) -> sitk.Image:
    image = sitk.GetImageFromArray(mask.astype(np.uint8, copy=False))
    if spacing_kji is not None:
        image.SetSpacing(tuple(float(s) for s in spacing_kji[::-1]))
    return image


def distance_to(
    mask: np.ndarray, spacing_kji: Sequence[float], outside_is_mask: bool = False
) -> np.ndarray:
    """Euclidean distance (mm) from each voxel centre to the nearest ``mask`` voxel centre
    (0 on the mask, inf if the mask is empty). With ``outside_is_mask`` the region beyond
    the array counts as mask (the outside of a body cut by the field of view is still
    outside)."""
    work = np.pad(mask, 1, constant_values=True) if outside_is_mask else mask
    if not work.any():
        return np.full(mask.shape, np.inf, dtype=np.float32)
    dist = sitk.SignedMaurerDistanceMap(
        to_image(work, spacing_kji),
        insideIsPositive=False,
        squaredDistance=False,
        useImageSpacing=True,
    )
    out = np.maximum(sitk.GetArrayFromImage(dist), 0.0).astype(np.float32)
    return out[1:-1, 1:-1, 1:-1] if outside_is_mask else out


def signed_distance(mask: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    """Symmetric signed distance (2D or 3D): minus the distance to the background inside,
    the distance to the object outside, so the zero level lies half-way between the
    two (shape-based interpolation blends these)."""
    if not mask.any():
        return np.full(mask.shape, np.inf, dtype=np.float32)
    if mask.all():
        return np.full(mask.shape, -np.inf, dtype=np.float32)
    image = sitk.GetImageFromArray(mask.astype(np.uint8))
    image.SetSpacing(tuple(float(s) for s in spacing[::-1]))

    def to(obj: sitk.Image) -> np.ndarray:
        d = sitk.SignedMaurerDistanceMap(
            obj, insideIsPositive=False, squaredDistance=False, useImageSpacing=True
        )
        return np.maximum(sitk.GetArrayFromImage(d), 0.0).astype(np.float32)

    return to(image) - to(sitk.BinaryNot(image))


def opening(mask: np.ndarray, spacing_kji: Sequence[float], radius_mm: float) -> np.ndarray:
    """Euclidean opening with a ball of ``radius_mm`` (exact, via two distance maps)."""
    if radius_mm <= 0 or not mask.any():
        return mask
    return dilate(erode(mask, spacing_kji, radius_mm), spacing_kji, radius_mm)


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill cavities not connected (6-connected) to the array border."""
    if not mask.any():
        return mask
    filled = sitk.BinaryFillhole(to_image(mask), fullyConnected=False, foregroundValue=1)
    return sitk.GetArrayViewFromImage(filled).astype(bool)


def fill_holes_by_slice(mask: np.ndarray, axis: int = 0) -> np.ndarray:
    """Fill the holes of each 2D slice along ``axis``, in one 3D call.

    Slices are interleaved with all-foreground walls (also before the first and after the
    last), so the background of one slice can reach neither another slice nor the
    volume's end faces: a 3D fill then fills each slice's holes only.
    """
    moved = np.moveaxis(mask, axis, 0)
    n = moved.shape[0]
    if n == 0 or not moved.any():
        return mask.copy()
    stack = np.ones((2 * n + 1, *moved.shape[1:]), dtype=bool)
    stack[1::2] = moved
    filled = fill_holes(stack)[1::2]
    return np.moveaxis(filled, 0, axis).copy()


#: A spacing (mm) that keeps distances from crossing slices: use it for the slice axis to
#: make any distance-based operation act on each 2D slice separately.
IN_PLANE_ONLY = 1e6


def dilate(mask: np.ndarray, spacing_kji: Sequence[float], radius_mm: float) -> np.ndarray:
    """Euclidean dilation by ``radius_mm`` (a distance map: exact, any spacing)."""
    if radius_mm <= 0:
        return mask.copy()
    return distance_to(mask, spacing_kji) <= radius_mm


def erode(mask: np.ndarray, spacing_kji: Sequence[float], radius_mm: float) -> np.ndarray:
    """Euclidean erosion by ``radius_mm``. Beyond the array counts as foreground: a
    field-of-view cut is not a surface."""
    if radius_mm <= 0:
        return mask.copy()
    return distance_to(~mask, spacing_kji) > radius_mm


def outer_layers(mask: np.ndarray, layers: int, open_axis: int | None = None) -> np.ndarray:
    """The outermost ``layers`` voxel layers of ``mask`` (face-connected contours, peeled
    one after the other). Along ``open_axis`` the mask is taken to continue past the
    array's ends, so cut faces there are not layers."""
    work = np.moveaxis(mask, open_axis, 0) if open_axis is not None else mask
    pad = layers if open_axis is not None else 0
    if pad:
        work = np.concatenate([work[:1].repeat(pad, 0), work, work[-1:].repeat(pad, 0)])
    shell = np.zeros(work.shape, dtype=bool)
    rest = work.copy()
    for _ in range(layers):
        if not rest.any():
            break
        contour = sitk.GetArrayViewFromImage(
            sitk.BinaryContour(to_image(rest), False, 0, 1)
        ).astype(bool)
        shell |= contour
        rest &= ~contour
    if pad:
        shell = shell[pad:-pad]
    return np.moveaxis(shell, 0, open_axis) if open_axis is not None else shell


def closing(mask: np.ndarray, spacing_kji: Sequence[float], radius_mm: float) -> np.ndarray:
    """Euclidean closing (dilate then erode) by ``radius_mm``."""
    return erode(dilate(mask, spacing_kji, radius_mm), spacing_kji, radius_mm)


def component_at(mask: np.ndarray, index_kji: Sequence[int]) -> np.ndarray:
    """The 6-connected component of ``mask`` holding ``index_kji`` (empty if not in it)."""
    if not mask[tuple(index_kji)]:
        return np.zeros_like(mask)
    seed = [tuple(int(v) for v in index_kji[::-1])]
    grown = sitk.ConnectedThreshold(to_image(mask), seedList=seed, lower=1, upper=1)
    return sitk.GetArrayViewFromImage(grown).astype(bool)


def components(mask: np.ndarray, full: bool = True) -> np.ndarray:
    """Connected-component labels (26-connected when ``full``), 0 = background."""
    return sitk.GetArrayFromImage(sitk.ConnectedComponent(to_image(mask), full))


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 26-connected component of a boolean mask (empty stays empty)."""
    if not mask.any():
        return mask.copy()
    ranked = sitk.RelabelComponent(
        sitk.ConnectedComponent(to_image(mask), True), sortByObjectSize=True
    )
    return sitk.GetArrayViewFromImage(ranked) == 1


def smooth(array: np.ndarray, spacing_kji: Sequence[float], sigma_mm: float) -> np.ndarray:
    """Gaussian smoothing (sigma in mm), float32."""
    image = sitk.GetImageFromArray(np.asarray(array, dtype=np.float32))
    image.SetSpacing(tuple(float(s) for s in spacing_kji[::-1]))
    if sigma_mm <= 0:
        return sitk.GetArrayFromImage(image)
    return sitk.GetArrayFromImage(sitk.SmoothingRecursiveGaussian(image, float(sigma_mm)))


def max_filter(array: np.ndarray, radius: Sequence[int]) -> np.ndarray:
    """Separable box maximum (radius in voxels per axis), numpy only."""
    out = array.copy()
    for axis, r in enumerate(radius):
        if r <= 0:
            continue
        src = out.copy()
        n = src.shape[axis]
        for shift in range(1, min(int(r), n - 1) + 1):
            lo = [slice(None)] * 3
            hi = [slice(None)] * 3
            lo[axis], hi[axis] = slice(0, n - shift), slice(shift, n)
            np.maximum(out[tuple(lo)], src[tuple(hi)], out=out[tuple(lo)])
            np.maximum(out[tuple(hi)], src[tuple(lo)], out=out[tuple(hi)])
    return out


def ray_distance(
    target: np.ndarray,
    passable: np.ndarray,
    direction: Sequence[int],
    spacing_kji: Sequence[float],
    cap_mm: float,
) -> np.ndarray:
    """Distance (mm) from each voxel to the first ``target`` voxel along ``direction``
    (a step of -1/0/1 voxels per axis), travelling only through ``passable`` voxels.

    inf where the ray leaves the array, meets a non-passable voxel first, or goes farther
    than ``cap_mm``. One sweep over the slices of the direction's leading axis.
    """
    u = np.asarray(direction, dtype=int)
    step = np.float32(np.sqrt(np.sum((u * np.asarray(spacing_kji, dtype=float)) ** 2)))
    axis = int(np.flatnonzero(u)[0])
    tgt = np.moveaxis(target, axis, 0)
    ok = np.moveaxis(passable, axis, 0)
    du, d1, d2 = int(u[axis]), *(int(u[a]) for a in range(3) if a != axis)
    n, ny, nx = tgt.shape
    out = np.full(tgt.shape, np.inf, dtype=np.float32)
    src_y = slice(max(d1, 0), ny + min(d1, 0))
    dst_y = slice(max(-d1, 0), ny + min(-d1, 0))
    src_x = slice(max(d2, 0), nx + min(d2, 0))
    dst_x = slice(max(-d2, 0), nx + min(-d2, 0))
    shifted = np.empty((ny, nx), dtype=np.float32)
    cap = np.float32(cap_mm)
    for k in range(n - 1, -1, -1) if du > 0 else range(n):
        cur = out[k]
        prev = k + du
        if 0 <= prev < n:
            shifted.fill(np.inf)
            shifted[dst_y, dst_x] = out[prev][src_y, src_x]
            shifted += step
            shifted[shifted > cap] = np.inf
            np.copyto(cur, shifted, where=ok[k])
        cur[tgt[k]] = 0.0
    return np.moveaxis(out, 0, axis)


def crop(volume: Volume, box: tuple[slice, slice, slice]) -> Volume:
    """The sub-volume ``volume.array[box]`` with its own origin (same LPS positions)."""
    start_ijk = [b.start or 0 for b in box[::-1]]
    origin = volume.index_to_physical(start_ijk)
    return Volume(
        volume.array[box],
        volume.spacing,
        tuple(float(v) for v in origin),
        volume.direction,
        dict(volume.meta),
    )


# --------------------------------------------------------------------------------------
# Small-radius morphology on bit-packed rows: the same sets as dilate/erode/closing (a
# voxel is within radius_mm when its centre is, as in a float32 distance map), without a
# full-volume distance map. Rows along i are packed 8 voxels a byte, so a shift along k
# or j is a slice and one OR handles 8 voxels; the cost grows with the radius in voxels
# (a few voxels: cheap; tens of voxels: use the distance maps).
# --------------------------------------------------------------------------------------


def ball_rows(spacing_kji: Sequence[float], radius_mm: float) -> list[tuple[int, int, int]]:
    """The ball of ``radius_mm`` as rows along i: (dk, dj, w) stands for the offsets
    (dk, dj, -w..w), those whose length is at most ``radius_mm``. An offset exactly at
    the radius (up to rounding) is in; a float32 distance map may round such a tie
    either way, which is the only way these sets can differ from the maps'."""
    sk, sj, si = (float(s) for s in spacing_kji)
    limit = float(radius_mm) * (1.0 + 1e-6)
    rows: list[tuple[int, int, int]] = []
    nk, nj = (int(np.floor(limit / s)) for s in (sk, sj))
    for dk in range(-nk, nk + 1):
        for dj in range(-nj, nj + 1):
            rest = limit**2 - (dk * sk) ** 2 - (dj * sj) ** 2
            if rest >= 0:
                rows.append((dk, dj, int(np.floor(np.sqrt(rest) / si))))
    return rows


def _pack(mask: np.ndarray) -> np.ndarray:
    return np.packbits(mask, axis=-1)


def _unpack(packed: np.ndarray, n: int) -> np.ndarray:
    return np.unpackbits(packed, axis=-1, count=n).view(bool)


def _clear_tail(packed: np.ndarray, n: int) -> None:
    """Zero the padding bits past voxel ``n`` of each packed row (they are outside)."""
    extra = packed.shape[-1] * 8 - n
    if extra:
        packed[..., -1] &= np.uint8((0xFF << extra) & 0xFF)


def _shift_bits(packed: np.ndarray, d: int) -> np.ndarray:
    """Packed rows moved by ``d`` voxels along i (voxel x goes to x + d; zeros enter)."""
    q, b = divmod(abs(d), 8)
    n = packed.shape[-1]
    out = np.zeros_like(packed)
    if q >= n:
        return out
    if d > 0:
        out[..., q:] = packed[..., : n - q]
        if b:
            carry = out[..., :-1] << np.uint8(8 - b)
            out >>= np.uint8(b)
            out[..., 1:] |= carry
    else:
        out[..., : n - q] = packed[..., q:]
        if b:
            carry = out[..., 1:] >> np.uint8(8 - b)
            out <<= np.uint8(b)
            out[..., :-1] |= carry
    return out


def _dilate_packed(packed: np.ndarray, rows: list[tuple[int, int, int]]) -> np.ndarray:
    """OR of the packed mask shifted by every offset of ``rows`` (zeros beyond the array;
    the tail bits must be clear)."""
    widths = sorted({w for _, _, w in rows})
    by_width: dict[int, np.ndarray] = {}
    line = packed.copy()
    done = 0
    for w in widths:
        for d in range(done + 1, w + 1):
            line |= _shift_bits(packed, d)
            line |= _shift_bits(packed, -d)
        done = w
        by_width[w] = line.copy()
    nk, nj = packed.shape[:2]
    out = np.zeros_like(packed)
    for dk, dj, w in rows:
        src = by_width[w]
        dst_k, src_k = slice(max(dk, 0), nk + min(dk, 0)), slice(max(-dk, 0), nk - max(dk, 0))
        dst_j, src_j = slice(max(dj, 0), nj + min(dj, 0)), slice(max(-dj, 0), nj - max(dj, 0))
        out[dst_k, dst_j] |= src[src_k, src_j]
    return out


def _erode_packed(packed: np.ndarray, rows: list[tuple[int, int, int]], n: int) -> np.ndarray:
    """Erosion as the complement of the background's dilation; beyond the array is
    foreground (the background does not grow in from there)."""
    background = np.invert(packed)
    _clear_tail(background, n)
    out = np.invert(_dilate_packed(background, rows))
    _clear_tail(out, n)
    return out


def dilate_ball(mask: np.ndarray, spacing_kji: Sequence[float], radius_mm: float) -> np.ndarray:
    """The same set as :func:`dilate` (3D mask), by shifts of bit-packed rows."""
    if radius_mm <= 0:
        return mask.copy()
    n = mask.shape[-1]
    return _unpack(_dilate_packed(_pack(mask), ball_rows(spacing_kji, radius_mm)), n)


def erode_ball(mask: np.ndarray, spacing_kji: Sequence[float], radius_mm: float) -> np.ndarray:
    """The same set as :func:`erode` (3D mask; beyond the array is foreground)."""
    if radius_mm <= 0:
        return mask.copy()
    n = mask.shape[-1]
    return _unpack(_erode_packed(_pack(mask), ball_rows(spacing_kji, radius_mm), n), n)


def closing_ball(mask: np.ndarray, spacing_kji: Sequence[float], radius_mm: float) -> np.ndarray:
    """The same set as :func:`closing` (3D mask), by shifts of bit-packed rows."""
    if radius_mm <= 0:
        return mask.copy()
    n = mask.shape[-1]
    rows = ball_rows(spacing_kji, radius_mm)
    grown = _dilate_packed(_pack(mask), rows)
    _clear_tail(grown, n)
    return _unpack(_erode_packed(grown, rows, n), n)


def max_filter_at(
    array: np.ndarray, radius: Sequence[int], where: np.ndarray, slab: int = 16
) -> np.ndarray:
    """:func:`max_filter` read at the ``where`` voxels only (1D, in ``np.nonzero``
    order), slab by slab along axis 0 and cropped to ``where``: for a thin band, no
    full-size copy of the array is made."""
    out = np.empty(int(np.count_nonzero(where)), dtype=array.dtype)
    if out.size == 0:
        return out
    r = [max(0, int(v)) for v in radius]
    n = array.shape[0]
    rows = np.flatnonzero(where.any(axis=(1, 2)))
    pos = 0
    for k0 in range(int(rows[0]), int(rows[-1]) + 1, slab):
        k1 = min(k0 + slab, n)
        sel = where[k0:k1]
        count = int(np.count_nonzero(sel))
        if count == 0:
            continue
        box = [slice(max(0, k0 - r[0]), min(n, k1 + r[0]))]
        for axis, keep in ((1, (0, 2)), (2, (0, 1))):
            hit = np.flatnonzero(sel.any(axis=keep))
            lo, hi = int(hit[0]) - r[axis], int(hit[-1]) + 1 + r[axis]
            box.append(slice(max(0, lo), min(array.shape[axis], hi)))
        block = max_filter(array[tuple(box)], r)
        inner = block[k0 - box[0].start : k1 - box[0].start]
        out[pos : pos + count] = inner[sel[:, box[1], box[2]]]
        pos += count
    return out
