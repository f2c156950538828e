"""Where a line of sight first meets the patient's skin: picking an entry point in 3D.

Why a body mask and not a threshold alone: from most camera positions the line of sight
crosses the CT table (or a blanket, a positioning pad) before the patient. The body mask
(the largest tissue component; a coarse one is enough) says which tissue is the patient;
the exact skin point is then found on the full-resolution CT, where the HU first rises
above the body threshold near the mask's edge.
"""

from __future__ import annotations

import numpy as np

from guideplan.core import trajectory as tr
from guideplan.core.volume import Volume


def ray_through_box(
    volume: Volume, origin: np.ndarray, direction: np.ndarray
) -> tuple[float, float] | None:
    """Parameters (t_in, t_out) of ``origin + t * direction`` inside the volume's voxel
    box (LPS), or None when the line misses it (slab method in index space)."""
    to_index = volume.lps_to_index
    o = to_index[:3, :3] @ origin + to_index[:3, 3]
    d = to_index[:3, :3] @ direction
    lo = np.full(3, -0.5)
    hi = np.asarray(volume.size, dtype=float) - 0.5
    t_in, t_out = -np.inf, np.inf
    for axis in range(3):
        if abs(d[axis]) < 1e-12:
            if not lo[axis] <= o[axis] <= hi[axis]:
                return None
            continue
        a, b = (lo[axis] - o[axis]) / d[axis], (hi[axis] - o[axis]) / d[axis]
        t_in, t_out = max(t_in, min(a, b)), min(t_out, max(a, b))
    if t_out < max(t_in, 0.0):
        return None
    return max(t_in, 0.0), t_out


def first_skin_point(
    ct: Volume,
    body: Volume,
    origin,
    direction,
    body_min_hu: float,
    step_mm: float = 0.5,
) -> np.ndarray | None:
    """The first point along the ray (from ``origin`` toward ``direction``, LPS mm)
    where it enters the patient, or None if it misses.

    ``body`` is a mask (non-zero = patient) on any grid covering the CT, e.g. a coarse
    one. The returned point is where the CT first exceeds ``body_min_hu`` within a
    coarse voxel before the mask starts, so it sits on the skin at full resolution.
    """
    origin = np.asarray(origin, dtype=float)
    direction = np.asarray(direction, dtype=float)
    direction = direction / np.linalg.norm(direction)
    span = ray_through_box(ct, origin, direction)
    if span is None:
        return None
    t = np.arange(span[0], span[1], step_mm)
    if t.size == 0:
        return None
    points = origin + t[:, None] * direction
    inside = tr.sample_nearest(body.array, body.physical_to_index(points), outside=0) > 0
    hits = np.flatnonzero(inside)
    if hits.size == 0:
        return None
    first = int(hits[0])
    # Back off by one coarse voxel and look for the HU edge at full resolution.
    back = float(max(body.spacing)) * 1.5
    t0 = max(span[0], t[first] - back)
    fine_t = np.arange(t0, t[first] + back, step_mm / 2.0)
    fine = origin + fine_t[:, None] * direction
    hu = tr.sample_trilinear(ct.array, ct.physical_to_index(fine), outside=-1000.0)
    above = np.flatnonzero(hu > body_min_hu)
    return fine[int(above[0])] if above.size else points[first]
