"""Straight needle paths: direction, the angles CT operators read, and path sampling.

Conventions (LPS, see CLINICAL.md): the needle travels from the skin ``entry`` to the
``target``.

* ``craniocaudal_deg``: signed angle between the needle and the axial plane,
  ``asin(d_z)``; positive when the needle heads toward the patient's head (S).
* ``axial_from_vertical_deg``: unsigned angle, in the axial plane, between the needle's
  projection and the anterior-posterior line; ``toward`` names the patient's side the
  tip moves to (``left`` = +x, ``right`` = -x), or ``none`` for a purely AP path.
* ``gantry_tilt_deg``: the tilt of the scan plane about the left-right axis that puts
  the whole path in one (tilted) axial slice, ``atan(d_z / |d_y|)``; same sign as
  ``craniocaudal_deg``. It equals the craniocaudal angle for a path in the sagittal
  plane and grows beyond it for oblique lateral paths; 90 when the path has no
  anterior-posterior component at all (no tilt can hold it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from guideplan.core.geometry import ArrayLike

#: Below this, a component of a unit vector counts as zero (0.06 degrees).
_EPS = 1e-3


@dataclass(frozen=True)
class PathAngles:
    direction: tuple[float, float, float]
    craniocaudal_deg: float
    axial_from_vertical_deg: float
    toward: str
    gantry_tilt_deg: float


def unit_direction(entry: ArrayLike, target: ArrayLike) -> np.ndarray:
    d = np.asarray(target, dtype=float) - np.asarray(entry, dtype=float)
    n = float(np.linalg.norm(d))
    if n == 0.0:
        raise ValueError("entry and target are the same point")
    return d / n


def path_angles(entry: ArrayLike, target: ArrayLike) -> PathAngles:
    d = unit_direction(entry, target)
    dx, dy, dz = (float(v) for v in d)
    craniocaudal = math.degrees(math.asin(max(-1.0, min(1.0, dz))))
    in_plane = math.hypot(dx, dy)
    if in_plane < _EPS:
        axial, toward = 0.0, "none"
    else:
        axial = math.degrees(math.atan2(abs(dx), abs(dy)))
        toward = "none" if abs(dx) < _EPS else ("left" if dx > 0 else "right")
    if abs(dy) < _EPS:
        tilt = 0.0 if abs(dz) < _EPS else math.copysign(90.0, dz)
    else:
        tilt = math.degrees(math.atan(dz / abs(dy)))
    return PathAngles(
        direction=(dx, dy, dz),
        craniocaudal_deg=craniocaudal,
        axial_from_vertical_deg=axial,
        toward=toward,
        gantry_tilt_deg=tilt,
    )


def sample_path(
    entry: ArrayLike, target: ArrayLike, step_mm: float = 0.5, beyond_mm: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Points every ``step_mm`` from entry to target (both included), optionally beyond.

    Returns (distances from the entry in mm, (N, 3) LPS points).
    """
    e = np.asarray(entry, dtype=float)
    d = np.asarray(target, dtype=float) - e
    length = float(np.linalg.norm(d))
    if length == 0.0:
        return np.zeros(1), e[None, :]
    total = length + max(beyond_mm, 0.0)
    n = max(2, int(math.ceil(total / step_mm)) + 1)
    s = np.linspace(0.0, total, n)
    return s, e + np.outer(s / length, d)


def point_segment_distance(points: np.ndarray, a: ArrayLike, b: ArrayLike) -> np.ndarray:
    """Distance (mm) from each of (N, 3) points to the segment a-b."""
    a = np.asarray(a, dtype=float)
    ab = np.asarray(b, dtype=float) - a
    denom = float(ab @ ab)
    rel = np.atleast_2d(points) - a
    t = np.zeros(len(rel)) if denom == 0 else np.clip(rel @ ab / denom, 0.0, 1.0)
    closest = a + np.outer(t, ab)
    return np.linalg.norm(np.atleast_2d(points) - closest, axis=1)


def sample_trilinear(array: np.ndarray, ijk: np.ndarray, outside: float) -> np.ndarray:
    """Trilinear interpolation of a [k, j, i] array at continuous (N, 3) (i, j, k) indices."""
    ijk = np.atleast_2d(np.asarray(ijk, dtype=float))
    shape = np.array(array.shape[::-1])  # (ni, nj, nk)
    inside = np.all((ijk >= 0) & (ijk <= shape - 1), axis=1)
    out = np.full(len(ijk), outside, dtype=float)
    if not inside.any():
        return out
    p = ijk[inside]
    base = np.minimum(np.floor(p).astype(int), shape - 2).clip(0)
    f = p - base
    i0, j0, k0 = base[:, 0], base[:, 1], base[:, 2]
    i1 = np.minimum(i0 + 1, shape[0] - 1)
    j1 = np.minimum(j0 + 1, shape[1] - 1)
    k1 = np.minimum(k0 + 1, shape[2] - 1)
    fi, fj, fk = f[:, 0], f[:, 1], f[:, 2]
    a = array
    c00 = a[k0, j0, i0] * (1 - fi) + a[k0, j0, i1] * fi
    c10 = a[k0, j1, i0] * (1 - fi) + a[k0, j1, i1] * fi
    c01 = a[k1, j0, i0] * (1 - fi) + a[k1, j0, i1] * fi
    c11 = a[k1, j1, i0] * (1 - fi) + a[k1, j1, i1] * fi
    c0 = c00 * (1 - fj) + c10 * fj
    c1 = c01 * (1 - fj) + c11 * fj
    out[inside] = c0 * (1 - fk) + c1 * fk
    return out


def sample_nearest(array: np.ndarray, ijk: np.ndarray, outside: int = 0) -> np.ndarray:
    """Nearest-voxel lookup (labels) at continuous (N, 3) (i, j, k) indices."""
    idx = np.rint(np.atleast_2d(ijk)).astype(int)
    shape = np.array(array.shape[::-1])
    inside = np.all((idx >= 0) & (idx < shape), axis=1)
    out = np.full(len(idx), outside, dtype=array.dtype)
    p = idx[inside]
    out[inside] = array[p[:, 2], p[:, 1], p[:, 0]]
    return out


def fibonacci_directions(n: int) -> np.ndarray:
    """n nearly uniform unit vectors on the sphere (for searching entry directions)."""
    k = np.arange(n) + 0.5
    phi = np.arccos(1 - 2 * k / n)
    theta = math.pi * (1 + 5**0.5) * k
    return np.column_stack([np.cos(theta) * np.sin(phi), np.sin(theta) * np.sin(phi), np.cos(phi)])
