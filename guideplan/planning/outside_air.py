"""Air outside the patient, decided at full resolution where the needle leaves the body.

Why two levels: which air is outside (connected to the room) and which is inside (lungs,
bowel gas) is a connectivity question over the whole CT, too slow at full resolution on
a 512x512x300 scan; but on a coarse grid the thin air just outside the skin and the gap
between the back and the mattress vanish into mixed voxels, so a ray leaving the body
seems to cross gas. So: a coarse pass over the whole CT finds the blocks that are
surely outside (all air, connected to the faces around the patient); then, inside the
box the rays can reach, the full-resolution air is split into connected pieces and a
piece is outside when it holds one of those blocks. Lungs and bowel gas touch no such
block unless a real air path leads out; the gap under the back opens to the sides.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from guideplan.core.volume import Volume


class OutsideAir:
    """Outside-air lookup at full-resolution (i, j, k) indices inside a box."""

    def __init__(
        self,
        volume: Volume,
        air_max_hu: float,
        coarse_mm: float,
        box_kji: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        array = volume.array
        shape = np.asarray(array.shape)
        spacing_kji = np.asarray(volume.spacing, dtype=float)[::-1]
        self.factors = np.maximum(1, np.floor(coarse_mm / spacing_kji)).astype(int)
        long_axis = _long_axis(volume)
        coarse_outside = _coarse_outside(array, air_max_hu, self.factors, long_axis)
        if box_kji is None:
            lo, hi = np.zeros(3, int), shape.copy()
        else:
            lo = np.clip(np.asarray(box_kji[0], int), 0, shape)
            hi = np.clip(np.asarray(box_kji[1], int), lo, shape)
        self.lo = lo
        self.hi = hi
        crop = array[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
        air = np.less_equal(crop, air_max_hu).view(np.uint8)
        if air.size == 0:
            self._labels = np.zeros((1, 1, 1), np.uint32)
            self._lookup = np.zeros(1, bool)
            return
        image = sitk.ConnectedComponent(sitk.GetImageFromArray(air), False)
        self._image = image  # keeps the array view below alive
        self._labels = sitk.GetArrayViewFromImage(image)
        lookup = np.zeros(int(self._labels.max()) + 1, dtype=bool)
        # one voxel of every coarse block in the box: the block's first voxel there
        reps = []
        for axis in range(3):
            f = self.factors[axis]
            blocks = np.arange(lo[axis] // f, (hi[axis] - 1) // f + 1)
            reps.append((blocks, np.clip(blocks * f, lo[axis], hi[axis] - 1) - lo[axis]))
        sub = coarse_outside[np.ix_(reps[0][0], reps[1][0], reps[2][0])]
        at_reps = self._labels[np.ix_(reps[0][1], reps[1][1], reps[2][1])]
        seeds = at_reps[sub]
        lookup[seeds[seeds > 0]] = True
        # the volume's own faces around the patient (not the slice ends: lungs and bowel
        # cut by the field of view are inside the patient)
        for axis in range(3):
            if axis == long_axis:
                continue
            for end, at_face in ((0, lo[axis] == 0), (-1, hi[axis] == shape[axis])):
                if at_face:
                    face = np.take(self._labels, end, axis=axis)
                    lookup[face[face > 0]] = True
        lookup[0] = False
        self._lookup = lookup

    def at(self, ijk: np.ndarray) -> np.ndarray:
        """Outside air? at continuous (i, j, k) indices; False beyond the box (the
        caller asks only inside it)."""
        idx = np.rint(np.atleast_2d(ijk)).astype(int)[:, ::-1] - self.lo  # k, j, i
        size = self.hi - self.lo
        inside = np.all((idx >= 0) & (idx < size), axis=1)
        out = np.zeros(len(idx), dtype=bool)
        p = idx[inside]
        out[inside] = self._lookup[self._labels[p[:, 0], p[:, 1], p[:, 2]]]
        return out


def in_volume(volume: Volume, ijk: np.ndarray) -> np.ndarray:
    """Inside the CT's grid? at continuous (i, j, k) indices (nearest voxel)."""
    idx = np.rint(np.atleast_2d(ijk))
    return np.all((idx >= 0) & (idx < np.asarray(volume.array.shape[::-1])), axis=1)


def _coarse_outside(
    array: np.ndarray, air_max_hu: float, factors: np.ndarray, long_axis: int
) -> np.ndarray:
    """Blocks (``factors`` voxels a side) that are all air and connected to the faces
    around the patient: surely outside."""
    fk, fj, fi = (int(f) for f in factors)
    cshape = tuple(-(-n // f) for n, f in zip(array.shape, factors, strict=True))
    block_max = np.full(cshape, np.iinfo(np.int16).min, dtype=np.int32)
    for dk in range(fk):
        for dj in range(fj):
            for di in range(fi):
                part = array[dk::fk, dj::fj, di::fi]
                view = block_max[: part.shape[0], : part.shape[1], : part.shape[2]]
                np.maximum(view, part, out=view)
    air = (block_max <= air_max_hu).astype(np.uint8)
    image = sitk.ConnectedComponent(sitk.GetImageFromArray(air), False)
    labels = sitk.GetArrayViewFromImage(image)
    faces = np.concatenate(
        [
            np.take(labels, end, axis=axis).ravel()
            for axis in range(3)
            if axis != long_axis
            for end in (0, -1)
        ]
    )
    lookup = np.zeros(int(labels.max()) + 1, dtype=bool)
    lookup[faces[faces > 0]] = True
    lookup[0] = False
    return lookup[labels]


def _long_axis(volume: Volume) -> int:
    """The array axis ([k, j, i] order) closest to the patient's head-feet axis."""
    direction = np.asarray(volume.direction, dtype=float).reshape(3, 3)
    index_axis = int(np.argmax(np.abs(direction[2])))  # columns are the i, j, k axes
    return 2 - index_axis
