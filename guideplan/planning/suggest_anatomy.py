"""The target's vertebra found automatically, for the entry suggestions.

Why on a box around the target: suggestions need only the vertebral body holding the
target and the canal behind it, and a box of a few vertebrae costs a fraction of the
whole CT. The canal finder says how sure it is; a canal that is not ``found`` gives no
vertebral body (the vertebrae are found along the canal) and says why, so the caller
falls back on what the HU and the structures show instead of a wrong body.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

import numpy as np

from guideplan.core.status import Finding
from guideplan.core.volume import Volume
from guideplan.planning import grid


@dataclass
class TargetVertebra:
    """Automatic vertebral bodies and canal near the target, on the CT's full grid."""

    body: np.ndarray | None  # boolean [k, j, i]: the bodies found in the box
    canal: np.ndarray | None  # boolean [k, j, i]: the canal found in the box
    level: str | None  # the target's level when the finder could name it
    finding: Finding  # the canal's status and reason


def find_target_vertebra(volume: Volume, target_lps, radius_mm: float) -> TargetVertebra:
    """Bone, canal and vertebral bodies on the box of ``radius_mm`` around the target."""
    from guideplan.processing import anatomy, masks
    from guideplan.processing.bone import bone_mask

    find_canal = getattr(anatomy, "find_canal", None)
    if find_canal is None and importlib.util.find_spec("guideplan.processing.canal"):
        from guideplan.processing.canal import find_canal  # the finder with a status
    if find_canal is None:
        return TargetVertebra(None, None, None, Finding.not_found("no canal finder"))
    box = grid.box_around_lps(volume, np.asarray(target_lps, dtype=float), radius_mm)
    if grid.is_empty(box):
        return TargetVertebra(None, None, None, Finding.not_found("target outside the CT"))
    crop = masks.crop(volume, box)
    bone = bone_mask(crop)
    canal = find_canal(crop, bone)
    if not canal.finding.usable:
        return TargetVertebra(None, None, None, canal.finding)
    result = anatomy.find_vertebrae(crop, bone, canal.mask)
    body = np.zeros(volume.array.shape, dtype=bool)
    body[box] = result.labels > 0
    canal_full = np.zeros(volume.array.shape, dtype=bool)
    canal_full[box] = canal.mask
    level = None
    if result.levels_known and result.vertebrae:
        ijk = crop.physical_to_index(np.asarray(target_lps, dtype=float))
        axis = grid.slice_axis(crop)
        k = float(np.atleast_1d(ijk)[2 - axis])
        inside = [v for v in result.vertebrae if v.slices[0] <= k <= v.slices[1]]
        level = inside[0].name if inside else None
    return TargetVertebra(body if body.any() else None, canal_full, level, canal.finding)
