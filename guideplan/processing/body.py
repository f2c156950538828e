"""The patient's body and skin, fast enough for a whole planning CT in a fraction of a
second.

Why not the plain way: the largest 3D component and a per-slice hole fill of a 512 x 512
x 300 CT cost seconds in SimpleITK, and the skin's contour peeling as much again, while
the anatomy finder has 3 s for everything. The body's *topology* (which component is
the patient, which air is inside it) does not need full resolution, only its *edge*
does:

1. the tissue threshold on a grid of about ``coarse_mm`` in-plane (a stride, no
   interpolation), its largest 3D component, each slice's holes filled there (lungs,
   bowel gas are inside the body);
2. back on the full grid: voxels deep inside the coarse body are body; in the coarse
   body's edge band the full-resolution threshold decides, so the surface sits exactly
   where the CT says.

The skin is the body's outer ``thickness`` peeled with face-neighbour shifts (numpy
slicing, no distance map). The first and last slices along the slice axis are open:
the body goes on beyond the field of view.
"""

from __future__ import annotations

import numpy as np

from guideplan.processing import masks


def body_mask(
    array: np.ndarray, threshold_hu: float, axis: int, pixel_mm: float, coarse_mm: float
) -> np.ndarray:
    """Boolean body mask of a CT ``array`` ([k, j, i]; ``axis`` is the slice axis,
    ``pixel_mm`` the in-plane spacing); topology on a grid of about ``coarse_mm``."""
    moved = np.moveaxis(array, axis, 0)
    tissue = moved > threshold_hu
    if not tissue.any():
        return np.moveaxis(tissue, 0, axis)
    step = max(1, int(round(coarse_mm / pixel_mm)))
    coarse = tissue[:, ::step, ::step]
    coarse = masks.fill_holes_by_slice(masks.largest_component(coarse), 0)
    if step == 1:
        return np.moveaxis(coarse, 0, axis).copy()
    # 2: deep inside the coarse body, 1: its edge band (the CT decides), 0: outside
    code = _erode_in_plane(coarse, 1).astype(np.uint8) + _dilate_in_plane(coarse, 1)
    full = _upsample(code, step, moved.shape)
    body = (full == 2) | ((full == 1) & tissue)
    return np.moveaxis(body, 0, axis)


def skin_shell(body: np.ndarray, layers: int, axis: int) -> np.ndarray:
    """The outermost ``layers`` face-connected voxel layers of ``body``; the array's ends
    along ``axis`` are open (not skin)."""
    moved = np.moveaxis(body, axis, 0)
    rest = moved.copy()
    shell = np.zeros_like(moved)
    for _ in range(max(1, int(layers))):
        inside = rest.copy()
        # a voxel stays inside when all its face neighbours are body; beyond the
        # in-plane border is outside, beyond the first and last slices is body
        inside[:, 1:, :] &= rest[:, :-1, :]
        inside[:, :-1, :] &= rest[:, 1:, :]
        inside[:, :, 1:] &= rest[:, :, :-1]
        inside[:, :, :-1] &= rest[:, :, 1:]
        inside[:, 0, :] = False
        inside[:, -1, :] = False
        inside[:, :, 0] = False
        inside[:, :, -1] = False
        inside[1:] &= rest[:-1]
        inside[:-1] &= rest[1:]
        shell |= rest & ~inside
        rest = inside
    return np.moveaxis(shell, 0, axis)


def _erode_in_plane(mask: np.ndarray, n: int) -> np.ndarray:
    out = mask.copy()
    for _ in range(n):
        src = out.copy()
        out[:, 1:, :] &= src[:, :-1, :]
        out[:, :-1, :] &= src[:, 1:, :]
        out[:, :, 1:] &= src[:, :, :-1]
        out[:, :, :-1] &= src[:, :, 1:]
    return out


def _dilate_in_plane(mask: np.ndarray, n: int) -> np.ndarray:
    out = mask.copy()
    for _ in range(n):
        src = out.copy()
        out[:, 1:, :] |= src[:, :-1, :]
        out[:, :-1, :] |= src[:, 1:, :]
        out[:, :, 1:] |= src[:, :, :-1]
        out[:, :, :-1] |= src[:, :, 1:]
    return out


def _upsample(coarse: np.ndarray, step: int, shape: tuple[int, ...]) -> np.ndarray:
    """Nearest-neighbour back to the full in-plane grid (each coarse voxel covers the
    ``step`` x ``step`` block it was sampled from)."""
    up = np.repeat(np.repeat(coarse, step, axis=1), step, axis=2)
    return up[:, : shape[1], : shape[2]]
