"""Boxes on the CT grid for the treatment-volume predictions.

A predicted zone is a boolean mask on a *box* of the planning CT's grid (``[k, j, i]``
slices), never on the whole volume: a 30 mL ablation zone is ~40 000 voxels of a
12-million-voxel CT. These helpers build boxes from LPS extents, give the LPS
coordinates of a box's voxel centres (as three broadcastable 1-D pieces, so nothing of the
box's size is allocated that the caller does not need), and intersect boxes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from guideplan.core.labelmap import Box
from guideplan.core.volume import Volume


def voxel_ml(volume: Volume) -> float:
    return float(np.prod(volume.spacing)) / 1000.0


def spacing_kji(volume: Volume) -> np.ndarray:
    return np.asarray(volume.spacing[::-1], dtype=float)


def box_shape(box: Box) -> tuple[int, int, int]:
    return tuple(int(s.stop - s.start) for s in box)  # type: ignore[return-value]


def box_from_lps(volume: Volume, lo_lps: np.ndarray, hi_lps: np.ndarray, pad: int = 1) -> Box:
    """The smallest box of voxels whose centres cover the LPS cuboid [lo, hi] (clipped)."""
    corners = np.array(
        [
            [x, y, z]
            for x in (lo_lps[0], hi_lps[0])
            for y in (lo_lps[1], hi_lps[1])
            for z in (lo_lps[2], hi_lps[2])
        ],
        dtype=float,
    )
    ijk = volume.physical_to_index(corners)
    lo = np.floor(ijk.min(axis=0)).astype(int) - pad
    hi = np.ceil(ijk.max(axis=0)).astype(int) + pad + 1
    shape = volume.array.shape
    out = []
    for axis in range(3):  # k, j, i
        a = 2 - axis
        start = int(np.clip(lo[a], 0, shape[axis]))
        stop = int(np.clip(hi[a], 0, shape[axis]))
        out.append(slice(start, max(start, stop)))
    return tuple(out)  # type: ignore[return-value]


def box_around_lps(volume: Volume, points: np.ndarray, radius_mm: float) -> Box:
    pts = np.atleast_2d(np.asarray(points, dtype=float))
    return box_from_lps(volume, pts.min(axis=0) - radius_mm, pts.max(axis=0) + radius_mm)


def is_empty(box: Box) -> bool:
    return any(s.stop <= s.start for s in box)


def intersect(a: Box, b: Box) -> tuple[Box, Box, Box] | None:
    """(intersection on the grid, the same region inside a, inside b) or None."""
    inter, in_a, in_b = [], [], []
    for sa, sb in zip(a, b, strict=True):
        lo, hi = max(sa.start, sb.start), min(sa.stop, sb.stop)
        if hi <= lo:
            return None
        inter.append(slice(lo, hi))
        in_a.append(slice(lo - sa.start, hi - sa.start))
        in_b.append(slice(lo - sb.start, hi - sb.start))
    return tuple(inter), tuple(in_a), tuple(in_b)  # type: ignore[return-value]


def union_box(boxes: Sequence[Box]) -> Box:
    return tuple(  # type: ignore[return-value]
        slice(min(b[a].start for b in boxes), max(b[a].stop for b in boxes)) for a in range(3)
    )


def grow(box: Box, voxels: Sequence[int], shape: tuple[int, ...]) -> Box:
    return tuple(  # type: ignore[return-value]
        slice(max(s.start - int(m), 0), min(s.stop + int(m), n))
        for s, m, n in zip(box, voxels, shape, strict=True)
    )


def paste(mask: np.ndarray, box: Box, target_box: Box) -> np.ndarray:
    """``mask`` (on ``box``) re-expressed on ``target_box`` (zeros where it has no data)."""
    out = np.zeros(box_shape(target_box), dtype=mask.dtype)
    hit = intersect(box, target_box)
    if hit is not None:
        _, in_src, in_dst = hit
        out[in_dst] = mask[in_src]
    return out


def axis_coords(volume: Volume, box: Box, vector: np.ndarray, origin_lps: np.ndarray):
    """``vector . (p - origin)`` for the box's voxel centres p, as a broadcastable sum of
    three 1-D arrays ``(k[:, None, None], j[None, :, None], i[None, None, :])``."""
    m = volume.index_to_lps
    c = np.asarray(vector, dtype=float) @ m[:3, :3]  # coefficient of i, j, k
    base = float(np.asarray(vector, dtype=float) @ (m[:3, 3] - np.asarray(origin_lps, float)))
    kk = np.arange(box[0].start, box[0].stop) * c[2]
    jj = np.arange(box[1].start, box[1].stop) * c[1]
    ii = np.arange(box[2].start, box[2].stop) * c[0] + base
    return kk[:, None, None], jj[None, :, None], ii[None, None, :]


def local_coords(
    volume: Volume, box: Box, center: np.ndarray, axes: np.ndarray
) -> list[np.ndarray]:
    """Coordinates of the box's voxel centres in the frame (center, axes rows), each a
    full box-shaped float array."""
    out = []
    for a in range(3):
        k, j, i = axis_coords(volume, box, axes[a], center)
        out.append(k + j + i)
    return out


def points_of(volume: Volume, box: Box, mask: np.ndarray) -> np.ndarray:
    """LPS centres (N, 3) of the true voxels of ``mask`` (defined on ``box``)."""
    kji = np.argwhere(mask)
    if len(kji) == 0:
        return np.zeros((0, 3))
    ijk = kji[:, ::-1] + np.array([box[2].start, box[1].start, box[0].start])
    return volume.index_to_physical(ijk.astype(float))


def boundary(mask: np.ndarray) -> np.ndarray:
    """Voxels of ``mask`` with a 6-neighbour outside it (the box edge counts as outside)."""
    inner = mask.copy()
    padded = np.pad(mask, 1, constant_values=False)
    for axis in range(3):
        for shift in (-1, 1):
            inner &= np.roll(padded, shift, axis=axis)[1:-1, 1:-1, 1:-1]
    return mask & ~inner


def slice_axis(volume: Volume) -> int:
    """Array axis (0 = k, 1 = j, 2 = i) closest to head-feet."""
    column = int(np.argmax(np.abs(volume.direction[2, :])))
    return 2 - column
