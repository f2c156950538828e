"""Insert a lesion of known shape and density into a real CT: ground truth for lesion
growing, canal finding next to a lesion and path checks on real anatomy.

A lesion is an ellipsoid (semi-axes in mm along LPS x, y, z), optionally clipped to a
host mask (a vertebral body, a bone), set to a target HU, blurred by the scanner's
point-spread (a Gaussian of ``blur_mm``) and given noise. The returned mask is the
clipped ellipsoid, which is what a correct segmentation should give.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import SimpleITK as sitk

from guideplan.core.volume import Volume


def ellipsoid_mask(
    volume: Volume, centre_lps: Sequence[float], radii_mm: Sequence[float]
) -> np.ndarray:
    """Boolean [k, j, i] mask of the voxels whose centres lie in the LPS ellipsoid
    (semi-axes along x, y, z), for any direction matrix."""
    centre = np.asarray(centre_lps, dtype=float)
    radii = np.asarray(radii_mm, dtype=float)
    reach = float(radii.max())
    lo_idx, hi_idx = _index_box(volume, centre, reach)
    mask = np.zeros(volume.array.shape, dtype=bool)
    if np.any(hi_idx < lo_idx):
        return mask
    ii, jj, kk = np.meshgrid(
        *(np.arange(lo_idx[a], hi_idx[a] + 1) for a in range(3)), indexing="ij"
    )
    ijk = np.stack([ii.ravel(), jj.ravel(), kk.ravel()], axis=-1).astype(float)
    lps = volume.index_to_physical(ijk)
    inside = np.sum(((lps - centre) / radii) ** 2, axis=1) <= 1.0
    hit = ijk[inside].astype(int)
    mask[hit[:, 2], hit[:, 1], hit[:, 0]] = True
    return mask


def insert_lesion(
    volume: Volume,
    centre_lps: Sequence[float],
    radii_mm: Sequence[float],
    hu: float,
    *,
    host: np.ndarray | None = None,
    blur_mm: float = 0.6,
    noise_hu: float = 8.0,
    seed: int = 0,
) -> tuple[Volume, np.ndarray]:
    """The CT with the lesion written in, and the lesion's mask (clipped to ``host``)."""
    lesion = ellipsoid_mask(volume, centre_lps, radii_mm)
    if host is not None:
        lesion &= host.astype(bool)
    if not lesion.any():
        raise ValueError("the lesion does not overlap the volume (or its host)")
    values = volume.array.astype(np.float32)
    values[lesion] = float(hu)
    if blur_mm > 0:
        image = sitk.GetImageFromArray(values)
        image.SetSpacing(tuple(float(s) for s in volume.spacing))
        blurred = sitk.GetArrayFromImage(sitk.SmoothingRecursiveGaussian(image, blur_mm))
        # blur only around the lesion: the rest of the CT keeps its own texture
        near = _dilate(lesion, volume, 3.0 * blur_mm + max(volume.spacing))
        values[near] = blurred[near]
    rng = np.random.default_rng(seed)
    values[lesion] += rng.normal(0.0, noise_hu, int(lesion.sum())).astype(np.float32)
    out = np.clip(np.rint(values), -32768, 32767).astype(volume.array.dtype)
    return volume.with_array(out), lesion


def _index_box(volume: Volume, centre: np.ndarray, reach: float) -> tuple[np.ndarray, ...]:
    corners = np.array(
        [
            [centre[0] + sx * reach, centre[1] + sy * reach, centre[2] + sz * reach]
            for sx in (-1, 1)
            for sy in (-1, 1)
            for sz in (-1, 1)
        ]
    )
    idx = volume.physical_to_index(corners)
    size = np.asarray(volume.size)
    lo = np.maximum(np.floor(idx.min(axis=0)).astype(int), 0)
    hi = np.minimum(np.ceil(idx.max(axis=0)).astype(int), size - 1)
    return lo, hi


def _dilate(mask: np.ndarray, volume: Volume, radius_mm: float) -> np.ndarray:
    image = sitk.GetImageFromArray(mask.astype(np.uint8))
    radius = [max(1, int(np.ceil(radius_mm / s))) for s in volume.spacing]
    return sitk.GetArrayFromImage(sitk.BinaryDilate(image, radius)).astype(bool)
