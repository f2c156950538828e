"""Shared test data for the segmentation tests: sample cases and synthetic phantoms.

Not a conftest: another suite shares this folder, and explicit imports say where a
fixture comes from.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from guideplan.core.volume import Volume
from guideplan.io import load_series

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "sample_data"
CASE_NAMES = ("case01_l2_lytic_rfa_cement", "case02_iliac_cryo_skin", "case03_t10_blastic")


@cache
def sample_case(name: str) -> tuple[Volume, dict, dict[str, np.ndarray]]:
    """(planning CT, truth.json, truth masks) of a bundled sample case, loaded once."""
    folder = SAMPLES / name
    volume = load_series(folder / "ct")
    truth = json.loads((folder / "truth" / "truth.json").read_text(encoding="utf-8"))
    masks = {
        n: sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "truth" / f"{n}.nrrd"))).astype(bool)
        for n in ("lesion", "bone", "canal", "body")
    }
    return volume, truth, masks


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.count_nonzero(a & b) / max(np.count_nonzero(a) + np.count_nonzero(b), 1)


#: Synthetic "vertebral body": a trabecular block in a cortical shell, in muscle.
BLOCK_HALF_MM = np.array([20.0, 16.0, 13.0])  # x, y, z
CORTEX_MM = 1.5
HU = {"muscle": 40.0, "trabecular": 250.0, "cortex": 1100.0, "lytic": 30.0, "blastic": 650.0}
#: The same tissues on a T1-like MR (arbitrary units): marrow bright, lesion dark.
T1 = {"muscle": 380.0, "trabecular": 700.0, "cortex": 40.0, "lytic": 300.0, "blastic": 90.0}


def _phantom(
    p: np.ndarray, values: dict[str, float], lesion: str, center, radius_mm: float, breach: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Values and lesion mask at LPS points ``p`` (..., 3)."""
    inner = np.all(np.abs(p) <= BLOCK_HALF_MM - CORTEX_MM, axis=-1)
    outer = np.all(np.abs(p) <= BLOCK_HALF_MM, axis=-1)
    out = np.full(p.shape[:-1], values["muscle"], dtype=np.float32)
    out[outer] = values["cortex"]
    out[inner] = values["trabecular"]
    ball = np.sum((p - np.asarray(center, dtype=float)) ** 2, axis=-1) <= radius_mm**2
    host = np.all(np.abs(p) <= BLOCK_HALF_MM + [3, 0, 0], axis=-1) if breach else outer
    les = ball & host
    out[les] = values[lesion]
    return out, les


def _grid_points(size, spacing, origin, direction=None) -> np.ndarray:
    direction = np.eye(3) if direction is None else direction
    k, j, i = np.meshgrid(*(np.arange(n) for n in size[::-1]), indexing="ij")
    ijk = np.stack([i, j, k], axis=-1) * np.asarray(spacing, dtype=float)
    return ijk @ np.asarray(direction, dtype=float).T + np.asarray(origin, dtype=float)


def _blur_noise(values: np.ndarray, spacing, noise: float, seed: int) -> np.ndarray:
    image = sitk.GetImageFromArray(values)
    image.SetSpacing(tuple(float(s) for s in spacing))
    out = sitk.GetArrayFromImage(sitk.SmoothingRecursiveGaussian(image, 0.5))
    return out + np.random.default_rng(seed).normal(0.0, noise, out.shape).astype(np.float32)


def synthetic_vertebra(
    lesion: str = "lytic",
    center: tuple[float, float, float] = (0.0, 0.0, 0.0),
    radius_mm: float = 9.0,
    breach: bool = False,
    spacing: tuple[float, float, float] = (0.8, 0.8, 1.25),
    noise_hu: float = 7.0,
    seed: int = 3,
) -> tuple[Volume, np.ndarray]:
    """A CT-like volume (HU, LPS-aligned grid centred on the block) and its lesion mask.
    With ``breach`` the lesion goes through the cortex of the +x face and stops 3 mm
    outside it, in the muscle."""
    size = (80, 70, 56)
    origin = -(np.asarray(size) - 1) / 2 * np.asarray(spacing)
    p = _grid_points(size, spacing, origin)
    hu, les = _phantom(p, HU, lesion, center, radius_mm, breach)
    hu = _blur_noise(hu, spacing, noise_hu, seed)
    return Volume(np.rint(hu).astype(np.int16), spacing, tuple(origin)), les


def synthetic_mr(
    fixed_to_moving: np.ndarray,
    lesion: str = "lytic",
    center=(0.0, 0.0, 0.0),
    radius_mm: float = 9.0,
) -> Volume:
    """The same phantom as a T1-like MR in its own frame: a point p of the CT frame is
    at ``fixed_to_moving @ p`` in the MR frame. Oblique 1 mm grid."""
    spacing = (1.0, 1.0, 1.0)
    size = (70, 64, 56)
    direction = np.array([[0.98, -0.2, 0.0], [0.2, 0.98, 0.0], [0.0, 0.0, 1.0]])
    direction /= np.linalg.norm(direction, axis=0)
    centre_moving = fixed_to_moving[:3, :3] @ np.zeros(3) + fixed_to_moving[:3, 3]
    origin = centre_moving - direction @ ((np.asarray(size) - 1) / 2 * np.asarray(spacing))
    p_moving = _grid_points(size, spacing, origin, direction)
    back = np.linalg.inv(fixed_to_moving)
    p_fixed = p_moving @ back[:3, :3].T + back[:3, 3]
    values, _ = _phantom(p_fixed, T1, lesion, center, radius_mm, False)
    values = np.clip(_blur_noise(values, spacing, 8.0, 11), 0, None)
    return Volume(values.astype(np.float32), spacing, tuple(origin), direction, {"modality": "MR"})


def inserted_lesion(
    name: str, kind: str, radii_mm=(6.0, 7.0, 8.0), pick: int = 0, noise_hu: float = 5.0
) -> tuple[Volume, np.ndarray, np.ndarray]:
    """A sample case's CT with a lesion of known shape inserted into its real bone (how
    the checker scores): an ellipsoid (radii z, y, x in mm) clipped to the true bone,
    centred >= 8 mm deep in bone and > 30 mm from the case's own lesion, set to lytic
    (30 HU) or blastic (700 HU), blurred and noisy. Returns (volume, mask, seed LPS)."""
    volume, _, masks_ = sample_case(name)
    sp = np.asarray(volume.spacing[::-1], dtype=float)

    def distance(mask: np.ndarray) -> np.ndarray:
        image = sitk.GetImageFromArray(mask.astype(np.uint8))
        image.SetSpacing(tuple(float(s) for s in volume.spacing))
        return sitk.GetArrayFromImage(
            sitk.SignedMaurerDistanceMap(
                image, insideIsPositive=False, squaredDistance=False, useImageSpacing=True
            )
        )

    half = np.ceil(np.asarray(radii_mm) / sp).astype(int) + 1
    deep = (distance(~masks_["bone"]) >= 8.0) & (distance(masks_["lesion"]) > 30.0)
    inner = np.zeros_like(deep)  # the whole ellipsoid's box inside the volume
    inner[tuple(slice(h, n - h) for h, n in zip(half, deep.shape, strict=True))] = True
    candidates = np.argwhere(deep & inner)
    centre = candidates[np.random.default_rng(1 + pick).integers(len(candidates))]
    box = tuple(slice(c - h, c + h + 1) for c, h in zip(centre, half, strict=True))
    kji = np.stack(np.meshgrid(*(np.arange(s.start, s.stop) for s in box), indexing="ij"), -1)
    ball = np.sum(((kji - centre) * sp / np.asarray(radii_mm)) ** 2, axis=-1) <= 1.0
    lesion = np.zeros(volume.array.shape, dtype=bool)
    lesion[box] = ball & masks_["bone"][box]
    values = volume.array.astype(np.float32)
    values[lesion] = HU["lytic" if kind == "lytic" else "blastic"]
    image = sitk.GetImageFromArray(values)
    image.SetSpacing(tuple(float(s) for s in volume.spacing))
    values = sitk.GetArrayFromImage(sitk.SmoothingRecursiveGaussian(image, 0.5))
    values[lesion] += np.random.default_rng(2).normal(0.0, noise_hu, int(lesion.sum()))
    seed = volume.index_to_physical(centre[::-1].astype(float))
    return volume.with_array(np.rint(values).astype(np.int16)), lesion, seed
