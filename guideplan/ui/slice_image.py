"""Orthogonal slices of a volume as display-ready 8-bit images, in radiological convention.

Pure numpy (no Qt): the Qt widgets only wrap the result. Radiological convention: the
axial and coronal views put the patient's right on the screen's left (so the patient's
left shows on the screen's right), anterior up in axial, superior up in coronal and
sagittal; sagittal shows anterior on the left.

The volume is first brought to LPS-aligned axes (nearest axis permutation and flips
of its direction matrix); oblique volumes are shown on their nearest axes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from guideplan.core.volume import Volume

VIEWS = ("axial", "coronal", "sagittal")

#: Letters at (left, right, top, bottom) of each view, for the LPS-aligned display.
EDGE_LETTERS = {
    "axial": ("R", "L", "A", "P"),
    "coronal": ("R", "L", "S", "I"),
    "sagittal": ("A", "P", "S", "I"),
}


@dataclass
class LpsAligned:
    """A volume's array permuted/flipped so that axes are (z: I->S, y: A->P, x: R->L)."""

    array: np.ndarray  # indexed [z, y, x] with x increasing toward L, y toward P, z toward S
    spacing_xyz: tuple[float, float, float]
    origin: np.ndarray  # LPS of array[0, 0, 0]


def align_to_lps(volume: Volume) -> LpsAligned:
    """Permute and flip the volume's axes onto L, P, S (nearest axes; no resampling)."""
    direction = volume.direction
    # For each array axis (i, j, k), which LPS axis it runs along, and in which sense.
    lps_axis_of = [int(np.argmax(np.abs(direction[:, c]))) for c in range(3)]
    if sorted(lps_axis_of) != [0, 1, 2]:
        lps_axis_of = [0, 1, 2]
    arr = volume.array  # [k, j, i]
    # numpy axis of index c (c=0 -> i) is 2 - c.
    order = [0, 0, 0]  # order[target_numpy_axis] = source numpy axis; target [z, y, x]
    for c, lps in enumerate(lps_axis_of):
        order[2 - lps] = 2 - c
    out = np.transpose(arr, order)
    spacing = [0.0, 0.0, 0.0]
    origin_index = [0.0, 0.0, 0.0]
    for c, lps in enumerate(lps_axis_of):
        spacing[lps] = volume.spacing[c]
        if direction[lps, c] < 0:
            out = np.flip(out, axis=2 - lps)
            origin_index[c] = volume.size[c] - 1
    origin = volume.index_to_physical(origin_index)
    return LpsAligned(out, (spacing[0], spacing[1], spacing[2]), origin)


def slice_rgb(
    aligned: LpsAligned, view: str, index: int, window: float, level: float
) -> tuple[np.ndarray, float]:
    """8-bit grey image (rows, cols) for a view at a slice index, and its pixel aspect.

    Returns (image, aspect) where aspect = physical height / width of one pixel.
    """
    a = aligned.array
    sx, sy, sz = aligned.spacing_xyz
    if view == "axial":
        img = a[index, :, :]  # rows = y (A->P: anterior on top), cols = x (R->L)
        aspect = sy / sx
    elif view == "coronal":
        img = a[:, index, :][::-1, :]  # rows = z flipped (S on top), cols = x (R->L)
        aspect = sz / sx
    elif view == "sagittal":
        img = a[:, :, index][::-1, :]  # rows = z flipped, cols = y (A->P: A on left)
        aspect = sz / sy
    else:
        raise ValueError(f"unknown view {view!r}")
    lo = level - window / 2.0
    scaled = (img.astype(np.float32) - lo) * (255.0 / max(window, 1e-6))
    return np.clip(scaled, 0, 255).astype(np.uint8), aspect


def slice_count(aligned: LpsAligned, view: str) -> int:
    z, y, x = aligned.array.shape
    return {"axial": z, "coronal": y, "sagittal": x}[view]
