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
