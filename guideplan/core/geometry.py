"""LPS geometry: the one place where index <-> patient-coordinate conversions live.

Convention (see ARCHITECTURE.md): physical points are DICOM patient coordinates, LPS,
millimetres. A volume's voxel (i, j, k) = (column, row, slice) sits at

    p = origin + direction @ (spacing * (i, j, k))

where ``direction`` is a 3x3 matrix whose *columns* are the i, j, k axes expressed in
LPS, exactly SimpleITK's ``GetDirection()`` read row-major into a 3x3. Arrays are indexed
``[k, j, i]``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

ArrayLike = Sequence[float] | np.ndarray

#: Unit vectors of the patient axes in LPS.
LPS_AXES = {
    "L": np.array([1.0, 0.0, 0.0]),
    "R": np.array([-1.0, 0.0, 0.0]),
    "P": np.array([0.0, 1.0, 0.0]),
    "A": np.array([0.0, -1.0, 0.0]),
    "S": np.array([0.0, 0.0, 1.0]),
    "I": np.array([0.0, 0.0, -1.0]),
}


def index_to_physical_matrix(
    spacing: ArrayLike, origin: ArrayLike, direction: np.ndarray
) -> np.ndarray:
    """4x4 affine mapping homogeneous (i, j, k, 1) to LPS (x, y, z, 1)."""
    m = np.eye(4)
    m[:3, :3] = np.asarray(direction, dtype=float) @ np.diag(np.asarray(spacing, dtype=float))
    m[:3, 3] = np.asarray(origin, dtype=float)
    return m


def physical_to_index_matrix(
    spacing: ArrayLike, origin: ArrayLike, direction: np.ndarray
) -> np.ndarray:
    """4x4 affine mapping LPS (x, y, z, 1) to continuous (i, j, k, 1)."""
    return np.linalg.inv(index_to_physical_matrix(spacing, origin, direction))


def apply_affine(matrix: np.ndarray, points: ArrayLike) -> np.ndarray:
    """Apply a 4x4 affine to one point (3,) or many points (N, 3)."""
    pts = np.asarray(points, dtype=float)
    single = pts.ndim == 1
    pts2 = np.atleast_2d(pts)
    out = pts2 @ matrix[:3, :3].T + matrix[:3, 3]
    return out[0] if single else out


def orientation_from_cosines(row_cosine: ArrayLike, col_cosine: ArrayLike) -> np.ndarray:
    """Direction matrix from DICOM ImageOrientationPatient's two cosines.

    The row cosine is the direction of increasing column index i, the column cosine that
    of increasing row index j; the slice axis is their cross product (right-handed).
    """
    r = _unit(row_cosine)
    c = _unit(col_cosine)
    n = np.cross(r, c)
    n = n / np.linalg.norm(n)
    return np.column_stack([r, c, n])


def orthonormalize(direction: np.ndarray) -> np.ndarray:
    """Nearest orthonormal matrix (polar decomposition), keeping handedness."""
    u, _, vt = np.linalg.svd(np.asarray(direction, dtype=float))
    return u @ vt


def is_orthonormal(direction: np.ndarray, tol: float = 1e-4) -> bool:
    d = np.asarray(direction, dtype=float)
    return bool(np.allclose(d.T @ d, np.eye(3), atol=tol))


def closest_axis_letters(vector: ArrayLike) -> str:
    """Orientation letters of a direction, dominant first (e.g. 'LP' for left-posterior).

    Used for the letters on view edges: the letter names the patient side the vector
    points to. Components under 10 % of the vector are left out.
    """
    v = _unit(vector)
    letters = []
    order = np.argsort(-np.abs(v))
    for axis in order:
        if abs(v[axis]) < 0.1:
            continue
        pos, neg = ("L", "R") if axis == 0 else ("P", "A") if axis == 1 else ("S", "I")
        letters.append(pos if v[axis] > 0 else neg)
    return "".join(letters)


def opposite_letters(letters: str) -> str:
    swap = {"L": "R", "R": "L", "A": "P", "P": "A", "S": "I", "I": "S"}
    return "".join(swap[ch] for ch in letters)


def orientation_code(direction: np.ndarray) -> str:
    """Three-letter code of the axes i, j, k (DICOM/ITK 'LPS'-style, e.g. 'LPS', 'LPI')."""
    d = np.asarray(direction, dtype=float)
    return "".join(closest_axis_letters(d[:, col])[0] for col in range(3))


def rigid_matrix(
    rotation_deg: ArrayLike, translation_mm: ArrayLike, center: ArrayLike = (0, 0, 0)
) -> np.ndarray:
    """4x4 rigid transform from Euler angles (degrees) about ``center``, then a translation.

    The rotation is :func:`euler_matrix`, SimpleITK's Euler3DTransform order, so the same
    six numbers mean the same motion here and in the processing layer.
    Points map as p' = R (p - c) + c + t.
    """
    rx, ry, rz = np.deg2rad(np.asarray(rotation_deg, dtype=float))
    r = euler_matrix(rx, ry, rz)
    c = np.asarray(center, dtype=float)
    m = np.eye(4)
    m[:3, :3] = r
    m[:3, 3] = c - r @ c + np.asarray(translation_mm, dtype=float)
    return m


def euler_matrix(rx: float, ry: float, rz: float) -> np.ndarray:
    """Rotation matrix R = Rz @ Rx @ Ry (radians), SimpleITK Euler3DTransform's default order."""
    cx, sx = np.cos(rx), np.sin(rx)
    cy, sy = np.cos(ry), np.sin(ry)
    cz, sz = np.cos(rz), np.sin(rz)
    rot_x = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    rot_y = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rot_z = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rot_z @ rot_x @ rot_y


def _unit(v: ArrayLike) -> np.ndarray:
    a = np.asarray(v, dtype=float)
    n = np.linalg.norm(a)
    if n == 0:
        raise ValueError("zero-length direction vector")
    return a / n
