"""numpy volumes -> vtkImageData, and the LPS geometry of slice planes.

VTK images here carry no direction: they live in a *local* frame (index x spacing) and
every pipeline that needs LPS applies the volume's 4x4 index-to-LPS affine explicitly.
This keeps one convention (core/geometry.py) and works for oblique volumes too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from vtkmodules.util import numpy_support
from vtkmodules.vtkCommonDataModel import vtkImageData
from vtkmodules.vtkCommonMath import vtkMatrix4x4

from guideplan.core.volume import Volume

#: In-plane screen axes of each 2D view in LPS, radiological convention:
#: (screen right, screen up). Axial: patient's left on the right, anterior up.
VIEW_AXES: dict[str, tuple[np.ndarray, np.ndarray]] = {
    "axial": (np.array([1.0, 0.0, 0.0]), np.array([0.0, -1.0, 0.0])),
    "coronal": (np.array([1.0, 0.0, 0.0]), np.array([0.0, 0.0, 1.0])),
    "sagittal": (np.array([0.0, 1.0, 0.0]), np.array([0.0, 0.0, 1.0])),
}


def to_vtk_image(array: np.ndarray, spacing: tuple[float, float, float]) -> vtkImageData:
    """Wrap a [k, j, i] array (no copy when contiguous) as vtkImageData in the local frame."""
    arr = np.ascontiguousarray(array)
    image = vtkImageData()
    k, j, i = arr.shape
    image.SetDimensions(i, j, k)
    image.SetSpacing(*spacing)
    image.SetOrigin(0.0, 0.0, 0.0)
    scalars = numpy_support.numpy_to_vtk(arr.ravel(), deep=False)
    scalars.SetName("values")
    image.GetPointData().SetScalars(scalars)
    image._numpy_ref = arr  # keep the buffer alive as long as the image
    return image


def local_to_lps(volume: Volume) -> np.ndarray:
    """4x4 affine from the VTK local frame (index x spacing) to LPS."""
    m = np.eye(4)
    m[:3, :3] = volume.direction
    m[:3, 3] = volume.origin
    return m


def to_vtk_matrix(m: np.ndarray) -> vtkMatrix4x4:
    out = vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            out.SetElement(r, c, float(m[r, c]))
    return out


@dataclass
class PlaneFrame:
    """A view plane: LPS point = origin + x * u + y * v (+ z * w), u right, v up."""

    u: np.ndarray
    v: np.ndarray
    w: np.ndarray
    origin: np.ndarray

    @classmethod
    def for_view(cls, view: str, centre: np.ndarray) -> PlaneFrame:
        u, v = VIEW_AXES[view]
        return cls(u=u, v=v, w=np.cross(u, v), origin=np.asarray(centre, dtype=float))

    def plane_to_lps_matrix(self, depth: float) -> np.ndarray:
        """4x4 mapping plane coordinates (x, y, z) to LPS, for the plane at ``depth``."""
        m = np.eye(4)
        m[:3, 0], m[:3, 1], m[:3, 2] = self.u, self.v, self.w
        m[:3, 3] = self.origin + depth * self.w
        return m

    def to_lps(self, x: float, y: float, depth: float) -> np.ndarray:
        return self.origin + x * self.u + y * self.v + depth * self.w

    def to_plane(self, lps: np.ndarray) -> np.ndarray:
        """(x, y, depth) of an LPS point."""
        d = np.asarray(lps, dtype=float) - self.origin
        return np.array([d @ self.u, d @ self.v, d @ self.w])


def volume_extent_in_plane(volume: Volume, frame: PlaneFrame) -> tuple[np.ndarray, np.ndarray]:
    """Min and max plane coordinates (x, y, depth) of the volume's corner voxels."""
    i, j, k = (n - 1 for n in volume.size)
    corners = np.array([[a, b, c] for a in (0, i) for b in (0, j) for c in (0, k)], float)
    pts = volume.index_to_physical(corners) - frame.origin
    basis = np.column_stack([frame.u, frame.v, frame.w])
    coords = pts @ basis
    return coords.min(axis=0), coords.max(axis=0)


def slice_step_mm(volume: Volume, normal: np.ndarray) -> float:
    """Scrolling step along a view normal: the spacing of the volume axis closest to it."""
    cosines = np.abs(volume.direction.T @ normal)
    return float(volume.spacing[int(np.argmax(cosines))])
