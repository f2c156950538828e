"""Shared data of the treatment-zone tests: analytic phantoms, custom devices, the
lumbar sample case with its truth masks (loaded once). Not a conftest: explicit imports
say where a fixture comes from."""

from __future__ import annotations

import json
import math
from functools import cache
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from guideplan.core.volume import Volume
from guideplan.io import load_series
from guideplan.planning.devices import Device

ROOT = Path(__file__).resolve().parents[2]
LUMBAR = ROOT / "sample_data" / "case01_l2_lytic_rfa_cement"

#: The lumbar case: lesion centroid (truth.json) and a right transpedicular direction.
LESION_CENTROID = np.array([-3.811, 44.057, 1.083])
TRANSPEDICULAR = np.array([0.52, -0.853, 0.0]) / np.linalg.norm([0.52, -0.853, 0.0])
#: Inside the lytic lesion, at the destroyed posterior wall (the canal starts at y ~ 55).
POSTERIOR_WALL_TIP = np.array([-6.0, 54.5, 1.0])
#: Anterior body, healthy trabecular bone.
ANTERIOR_TIP = np.array([10.0, 25.0, 1.0])


def grid_volume(half_mm: float, spacing: float, fill: float = 40.0) -> Volume:
    """A cube of +-``half_mm`` around the LPS origin, isotropic ``spacing``, one HU."""
    n = int(round(2 * half_mm / spacing)) + 1
    return Volume(np.full((n, n, n), fill, np.int16), (spacing,) * 3, (-half_mm,) * 3)


def lps_grid(volume: Volume) -> np.ndarray:
    """(k, j, i, 3) LPS positions of the voxel centres (identity direction)."""
    k, j, i = np.indices(volume.array.shape)
    ijk = np.stack([i, j, k], axis=-1).astype(float)
    return np.asarray(volume.origin) + ijk * np.asarray(volume.spacing)


def sphere(volume: Volume, center, radius: float) -> np.ndarray:
    p = lps_grid(volume)
    return np.sum((p - np.asarray(center, float)) ** 2, axis=-1) <= radius**2


def chart_device(
    length: float, width: float, offset: float, kind: str = "rf_probe", dev_id: str = "test-probe"
) -> Device:
    """A probe whose (one-row) chart gives exactly this zone."""
    return Device.from_dict(
        {
            "id": dev_id,
            "kind": kind,
            "outer_diameter_mm": 1.5,
            "length_mm": 150,
            "zone": {
                "model": "ellipsoid",
                "parameters": ["time_s"],
                "default_time_s": 600,
                "rows": [
                    {
                        "time_s": 600,
                        "length_mm": length,
                        "width_mm": width,
                        "center_offset_mm": offset,
                    }
                ],
            },
        },
        "test",
    )


def spheroid_sphere_intersection(a: float, b: float, r: float) -> float:
    """Volume of a sphere (radius r) and a concentric prolate spheroid (semi-axis a along
    its axis, b across) with b < r < a: integrate the circular cross-sections."""
    zc = math.sqrt((r * r - b * b) / (1.0 - b * b / (a * a)))
    inner = b * b * (zc - zc**3 / (3 * a * a))
    outer = r * r * (r - zc) - (r**3 - zc**3) / 3.0
    return 2.0 * math.pi * (inner + outer)


def lens_volume(r1: float, r2: float, d: float) -> float:
    """Volume of the intersection of two spheres whose centres are d apart."""
    return (
        math.pi
        * (r1 + r2 - d) ** 2
        * (d * d + 2 * d * r2 - 3 * r2 * r2 + 2 * d * r1 + 6 * r2 * r1 - 3 * r1 * r1)
        / (12 * d)
    )


def block_phantom(spacing: float = 0.8, lytic_radius: float = 0.0, cortex_mm: float = 1.6):
    """A 'vertebral body': trabecular block (250 HU) in a cortical shell (1200 HU) in
    muscle; optionally a lytic sphere (30 HU) at the centre. Returns (volume, bone,
    lesion)."""
    vol = grid_volume(30.0, spacing)
    p = lps_grid(vol)
    half = np.array([20.0, 16.0, 13.0])
    outer = np.all(np.abs(p) <= half, axis=-1)
    inner = np.all(np.abs(p) <= half - cortex_mm, axis=-1)
    arr = vol.array
    arr[outer] = 1200
    arr[inner] = 250
    lesion = np.zeros(arr.shape, dtype=bool)
    if lytic_radius > 0:
        lesion = np.sum(p**2, axis=-1) <= lytic_radius**2
        arr[lesion] = 30
    vol.meta["modality"] = "CT"
    return vol, outer, lesion


@cache
def lumbar_case() -> tuple[Volume, dict[str, np.ndarray], dict]:
    volume = load_series(LUMBAR / "ct")
    masks = {
        n: sitk.GetArrayFromImage(sitk.ReadImage(str(LUMBAR / "truth" / f"{n}.nrrd"))).astype(bool)
        for n in ("lesion", "bone", "canal", "body")
    }
    truth = json.loads((LUMBAR / "truth" / "truth.json").read_text(encoding="utf-8"))
    return volume, masks, truth


@cache
def lumbar_context():
    """Treatment context of the lumbar case from its truth masks (level from case.json)."""
    from guideplan.planning.context import TreatmentContext

    volume, masks, _ = lumbar_case()
    info = json.loads((LUMBAR / "case.json").read_text(encoding="utf-8"))["target"]
    return TreatmentContext.from_masks(
        volume, masks, level=info["vertebral_level"], host=info["bone"]
    )


def rf_path(offset_mm: float = 15.0) -> tuple[np.ndarray, np.ndarray]:
    """(entry, tip) of a right transpedicular RF probe whose zone (centred ``offset_mm``
    back from the tip) is centred on the lesion."""
    tip = LESION_CENTROID + TRANSPEDICULAR * offset_mm
    return LESION_CENTROID - TRANSPEDICULAR * 80.0, tip
