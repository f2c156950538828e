"""Volume: a 3D image with its LPS geometry.

The array is indexed ``[k, j, i]`` (slice, row, column). ``spacing`` is (i, j, k) in mm,
``origin`` is the LPS position of voxel (0, 0, 0), ``direction`` is 3x3 with columns the
i, j, k axes in LPS (SimpleITK's layout). CT arrays hold Hounsfield units.

``to_sitk``/``from_sitk`` are the bridge to the processing layer; they import SimpleITK
lazily so that the core itself never depends on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from guideplan.core import geometry


@dataclass(eq=False)
class Volume:
    array: np.ndarray
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: np.ndarray = field(default_factory=lambda: np.eye(3))
    #: Free-form metadata: modality, series_uid, description, patient, units, warnings...
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.array.ndim != 3:
            raise ValueError(f"Volume array must be 3D [k, j, i], got shape {self.array.shape}")
        self.spacing = tuple(float(s) for s in self.spacing)  # type: ignore[assignment]
        self.origin = tuple(float(o) for o in self.origin)  # type: ignore[assignment]
        self.direction = np.asarray(self.direction, dtype=float).reshape(3, 3)
        if any(s <= 0 for s in self.spacing):
            raise ValueError(f"spacing must be positive, got {self.spacing}")

    # -- shape -----------------------------------------------------------------------
    @property
    def size(self) -> tuple[int, int, int]:
        """Number of voxels along (i, j, k)."""
        k, j, i = self.array.shape
        return (i, j, k)

    @property
    def modality(self) -> str:
        return str(self.meta.get("modality", ""))

    # -- geometry --------------------------------------------------------------------
    @property
    def index_to_lps(self) -> np.ndarray:
        """4x4 affine from (i, j, k, 1) to LPS mm."""
        return geometry.index_to_physical_matrix(self.spacing, self.origin, self.direction)

    @property
    def lps_to_index(self) -> np.ndarray:
        """4x4 affine from LPS mm to continuous (i, j, k, 1)."""
        return geometry.physical_to_index_matrix(self.spacing, self.origin, self.direction)

    def index_to_physical(self, ijk: geometry.ArrayLike) -> np.ndarray:
        """LPS position of continuous index (i, j, k) or of an (N, 3) array of them."""
        return geometry.apply_affine(self.index_to_lps, ijk)

    def physical_to_index(self, xyz: geometry.ArrayLike) -> np.ndarray:
        """Continuous (i, j, k) index of an LPS point or of an (N, 3) array of them."""
        return geometry.apply_affine(self.lps_to_index, xyz)

    def physical_to_nearest_index(self, xyz: geometry.ArrayLike) -> np.ndarray:
        return np.rint(self.physical_to_index(xyz)).astype(int)

    def contains_index(self, ijk: geometry.ArrayLike) -> bool:
        idx = np.asarray(ijk)
        return bool(np.all(idx >= -0.5) and np.all(idx <= np.asarray(self.size) - 0.5))

    def value_at(self, xyz: geometry.ArrayLike) -> float | None:
        """Voxel value nearest to an LPS point, or None outside the volume."""
        i, j, k = self.physical_to_nearest_index(xyz)
        if not self.contains_index((i, j, k)):
            return None
        return float(self.array[k, j, i])

    def bounds_lps(self) -> tuple[np.ndarray, np.ndarray]:
        """Axis-aligned LPS bounding box (min corner, max corner) of the voxel centres."""
        i, j, k = (n - 1 for n in self.size)
        corners = np.array([[a, b, c] for a in (0, i) for b in (0, j) for c in (0, k)], dtype=float)
        pts = self.index_to_physical(corners)
        return pts.min(axis=0), pts.max(axis=0)

    def center_lps(self) -> np.ndarray:
        return self.index_to_physical((np.asarray(self.size, dtype=float) - 1) / 2)

    def with_array(self, array: np.ndarray, **meta: Any) -> Volume:
        """Same geometry, another array (a label map, a filtered image)."""
        if array.shape != self.array.shape:
            raise ValueError(f"shape {array.shape} differs from {self.array.shape}")
        return replace(self, array=array, meta={**self.meta, **meta})

    def same_grid(self, other: Volume, tol: float = 1e-4) -> bool:
        return (
            self.array.shape == other.array.shape
            and np.allclose(self.spacing, other.spacing, atol=tol)
            and np.allclose(self.origin, other.origin, atol=tol)
            and np.allclose(self.direction, other.direction, atol=tol)
        )

    # -- SimpleITK bridge ------------------------------------------------------------
    def to_sitk(self):  # -> SimpleITK.Image (lazy import keeps core free of SimpleITK)
        import importlib

        sitk = importlib.import_module("SimpleITK")
        image = sitk.GetImageFromArray(self.array)
        image.SetSpacing(self.spacing)
        image.SetOrigin(self.origin)
        image.SetDirection(tuple(self.direction.ravel()))
        return image

    @classmethod
    def from_sitk(cls, image, meta: dict[str, Any] | None = None) -> Volume:
        import importlib

        sitk = importlib.import_module("SimpleITK")
        if image.GetDimension() != 3:
            raise ValueError(f"expected a 3D image, got {image.GetDimension()}D")
        array = sitk.GetArrayFromImage(image)
        return cls(
            array=array,
            spacing=tuple(image.GetSpacing()),
            origin=tuple(image.GetOrigin()),
            direction=np.array(image.GetDirection()).reshape(3, 3),
            meta=dict(meta or {}),
        )
