"""Real CTs with reference segmentations (tests/data/real, Apache-2.0, see NOTICE) and
their variants: resampled, rotated, turned prone, cropped, noisier. Every automatic step
the plan relies on is tested on these as well as on the phantoms, so that nothing is
tuned to the synthetic cases or to two scans.

- :func:`abdomen`: TotalSegmentator's example CT, supine, S1-T11, 3 mm, as DICOM; its
  reference masks on the same grid (the organs only in the slab of slices 82-111).
- :func:`lumbar`: TPTBox's lumbar crop, 1.5 mm, stored PIR; L2-L4 with subregions.

All volumes are :class:`Volume` objects in LPS; masks are boolean [k, j, i] on the
volume's grid. Loads are cached: treat the returned arrays as read-only (copy first).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from guideplan.core.volume import Volume
from guideplan.samples.lesion_insert import insert_lesion

DATA = Path(__file__).resolve().parents[1] / "data" / "real"
ABDOMEN = DATA / "totalsegmentator-abdomen"
LUMBAR = DATA / "tptbox-lumbar-crop"

#: Lumbar crop labels (VerSe numbering).
LUMBAR_LEVELS = {21: "L2", 22: "L3", 23: "L4"}
#: Subregions: 41 arcus, 42 spinosus, 43/44 transverse, 45/46 superior articular,
#: 47/48 inferior articular, 49 corpus border, 50 corpus.
LUMBAR_BODY_LABELS = (49, 50)

#: Structures of the abdomen's reference that a needle or zone must spare.
ABDOMEN_ORGANS = (
    "aorta",
    "inferior_vena_cava",
    "kidney_left",
    "kidney_right",
    "colon",
    "small_bowel",
    "duodenum",
    "stomach",
    "lungs",
    "liver",
    "spleen",
    "pancreas",
)


@dataclass
class RealCase:
    """A real CT and its reference masks (name -> boolean [k, j, i])."""

    name: str
    volume: Volume
    masks: dict[str, np.ndarray] = field(default_factory=dict)
    #: Reference vertebral levels present (cranial first) and their masks' names.
    levels: dict[str, str] = field(default_factory=dict)

    def copy(self) -> RealCase:
        return RealCase(
            self.name,
            self.volume.with_array(self.volume.array.copy()),
            {k: m.copy() for k, m in self.masks.items()},
            dict(self.levels),
        )


# ======================================================================================
# loading
# ======================================================================================


@functools.lru_cache(maxsize=1)
def _abdomen() -> RealCase:
    from guideplan.io.dicom_series import load_series

    volume = load_series(ABDOMEN / "dicom")
    masks: dict[str, np.ndarray] = {}
    for path in sorted((ABDOMEN / "reference").glob("*.nii.gz")):
        image = sitk.ReadImage(str(path))
        _check_same_grid(image, volume, path.name)
        masks[path.name[: -len(".nii.gz")]] = sitk.GetArrayFromImage(image) > 0
    levels = {lv: f"vertebrae_{lv}" for lv in ("T11", "T12", "L1", "L2", "L3", "L4", "L5", "S1")}
    return RealCase("abdomen", volume, masks, levels)


def abdomen() -> RealCase:
    """The abdominal CT (3 mm, supine HFS) with its reference masks; a fresh copy."""
    return _abdomen().copy()


@functools.lru_cache(maxsize=2)
def _lumbar(orient: str | None) -> RealCase:
    ct = sitk.ReadImage(str(LUMBAR / "sub-ct_label-22_ct.nii.gz"))
    vert = sitk.ReadImage(str(LUMBAR / "sub-ct_seg-vert_label-22_msk.nii.gz"))
    sub = sitk.ReadImage(str(LUMBAR / "sub-ct_seg-subreg_label-22_msk.nii.gz"))
    if orient:
        ct, vert, sub = (sitk.DICOMOrient(im, orient) for im in (ct, vert, sub))
    ct = sitk.Cast(ct, sitk.sitkInt16)
    volume = Volume.from_sitk(ct, meta={"modality": "CT", "description": "TPTBox lumbar crop"})
    v = sitk.GetArrayFromImage(vert)
    s = sitk.GetArrayFromImage(sub)
    masks = {f"vertebrae_{name}": v == lab for lab, name in LUMBAR_LEVELS.items()}
    masks["vertebrae"] = v > 0
    masks["vertebral_body"] = np.isin(s, LUMBAR_BODY_LABELS)
    for lab, name in LUMBAR_LEVELS.items():
        masks[f"vertebral_body_{name}"] = masks["vertebral_body"] & (v == lab)
    masks["arch"] = (s > 0) & ~masks["vertebral_body"]
    masks["canal"] = arch_enclosed_canal(volume, masks["vertebrae"])
    levels = {name: f"vertebrae_{name}" for name in LUMBAR_LEVELS.values()}
    return RealCase("lumbar", volume, masks, levels)


def lumbar(orient: str | None = "LPS") -> RealCase:
    """The lumbar crop (1.5 mm); ``orient=None`` keeps its stored PIR axes, "LPS" turns
    the array into axial slices (no interpolation). A fresh copy."""
    return _lumbar(orient).copy()


def arch_enclosed_canal(volume: Volume, vertebrae: np.ndarray) -> np.ndarray:
    """The canal as the hole the vertebrae enclose in each axial slice (reference)."""
    axis = _axial_axis(volume)
    moved = np.moveaxis(vertebrae, axis, 0)
    out = np.zeros_like(moved)
    for k in range(moved.shape[0]):
        if moved[k].any():
            image = sitk.GetImageFromArray(moved[k].astype(np.uint8))
            filled = sitk.GetArrayFromImage(sitk.BinaryFillhole(image)).astype(bool)
            out[k] = filled & ~moved[k]
    return np.moveaxis(out, 0, axis)


# ======================================================================================
# variants
# ======================================================================================


def resampled(
    case: RealCase, spacing_mm: float | tuple[float, float, float], keep=None
) -> RealCase:
    """The case on a grid of ``spacing_mm`` (i, j, k), same extent and direction: CT by
    linear interpolation, masks by nearest neighbour (only those named in ``keep``)."""
    spacing = (spacing_mm,) * 3 if np.isscalar(spacing_mm) else tuple(spacing_mm)
    src = case.volume.to_sitk()
    size = [
        max(1, int(round(n * s / t)))
        for n, s, t in zip(src.GetSize(), src.GetSpacing(), spacing, strict=True)
    ]
    # keep the field of view's first voxel corner where it was
    d = np.asarray(src.GetDirection()).reshape(3, 3)
    corner = np.asarray(src.GetOrigin()) - d @ (0.5 * np.asarray(src.GetSpacing()))
    origin = corner + d @ (0.5 * np.asarray(spacing))
    ref = sitk.Image(size, sitk.sitkUInt8)
    ref.SetSpacing(spacing)
    ref.SetOrigin(tuple(origin))
    ref.SetDirection(src.GetDirection())
    return _resample(case, ref, sitk.Transform(), f"{case.name}@{spacing[0]:g}mm", keep)


def rotated(
    case: RealCase, degrees: tuple[float, float, float], centre_lps=None, keep=None
) -> RealCase:
    """The patient turned by Euler angles (about LPS x, y, z, degrees) around
    ``centre_lps`` (the volume's centre), on the same grid: a patient lying askew, a
    scoliotic or kyphotic spine's local tilt."""
    centre = case.volume.center_lps() if centre_lps is None else np.asarray(centre_lps)
    t = sitk.Euler3DTransform()
    t.SetCenter(tuple(float(c) for c in centre))
    t.SetRotation(*(float(np.deg2rad(a)) for a in degrees))
    ref = case.volume.to_sitk()
    # Resample maps output points through the transform into the input: use the inverse
    # so that the anatomy itself turns by +degrees.
    return _resample(case, ref, t.GetInverse(), f"{case.name} rotated {degrees}", keep)


def turned_prone(case: RealCase) -> RealCase:
    """A supine scan stored as a prone (HFP) scan would be: the array's rows and columns
    reversed and the direction diag(-1, -1, 1), so every voxel keeps its LPS position
    while its index changes; the patient position says HFP. (The couch stays where it
    was in the patient's frame: only storage and the declared position change.)"""
    vol = case.volume
    k_axis = _axial_axis(vol)
    flip_axes = tuple(a for a in range(3) if a != k_axis)
    arr = np.flip(vol.array, axis=flip_axes).copy()
    m = vol.index_to_lps
    n = np.asarray(vol.size) - 1
    d = vol.direction.copy()
    new_origin_idx = np.zeros(3)
    for a in flip_axes:
        col = 2 - a  # array axis a is index component (i, j, k)[2 - a]
        d[:, col] = -d[:, col]
        new_origin_idx[col] = n[col]
    origin = (m @ np.append(new_origin_idx, 1.0))[:3]
    volume = Volume(arr, vol.spacing, tuple(origin), d, {**vol.meta, "patient_position": "HFP"})
    masks = {k: np.flip(v, axis=flip_axes).copy() for k, v in case.masks.items()}
    return RealCase(f"{case.name} prone", volume, masks, dict(case.levels))


def cropped(case: RealCase, lo_lps, hi_lps) -> RealCase:
    """The part of the case between two LPS corners (a smaller field of view)."""
    vol = case.volume
    idx = vol.physical_to_index(np.array([lo_lps, hi_lps], dtype=float))
    lo = np.maximum(np.floor(idx.min(axis=0)).astype(int), 0)
    hi = np.minimum(np.ceil(idx.max(axis=0)).astype(int) + 1, np.asarray(vol.size))
    box = (slice(lo[2], hi[2]), slice(lo[1], hi[1]), slice(lo[0], hi[0]))
    origin = vol.index_to_physical(lo.astype(float))
    volume = Volume(
        vol.array[box].copy(), vol.spacing, tuple(origin), vol.direction, dict(vol.meta)
    )
    masks = {k: v[box].copy() for k, v in case.masks.items()}
    return RealCase(f"{case.name} cropped", volume, masks, dict(case.levels))


def noisier(case: RealCase, sigma_hu: float = 25.0, seed: int = 0) -> RealCase:
    """The case with Gaussian noise of ``sigma_hu`` added (a low-dose scan)."""
    rng = np.random.default_rng(seed)
    values = case.volume.array.astype(np.float32) + rng.normal(
        0.0, sigma_hu, case.volume.array.shape
    ).astype(np.float32)
    arr = np.clip(np.rint(values), -1024, 3071).astype(np.int16)
    out = case.copy()
    out.volume = case.volume.with_array(arr)
    out.name = f"{case.name} noise {sigma_hu:g}"
    return out


# ======================================================================================
# lesions on real anatomy
# ======================================================================================


def posterior_wall_lesion(
    case: RealCase,
    body_mask: str,
    radii_mm=(7.0, 6.0, 7.0),
    hu: float = 35.0,
    breach_mm: float = 0.0,
    seed: int = 0,
) -> tuple[RealCase, np.ndarray, np.ndarray]:
    """A lytic lesion (ellipsoid, semi-axes x, y, z in mm) in the vertebral body
    ``body_mask`` touching its posterior wall: centred at the body's mid-height, on the
    midline, one y-radius in front of the wall's back (minus ``breach_mm``, which lets
    it replace the wall). Returns the case with the lesion, its mask and a seed (LPS)."""
    vol = case.volume
    body = case.masks[body_mask]
    kji = np.argwhere(body)
    lps = vol.index_to_physical(kji[:, ::-1].astype(float))
    z_mid = float(np.median(lps[:, 2]))
    x_mid = float(np.median(lps[:, 0]))
    near = (np.abs(lps[:, 2] - z_mid) <= 3.0) & (np.abs(lps[:, 0] - x_mid) <= 4.0)
    back = float(lps[near, 1].max())  # posterior is +y in LPS
    centre = np.array([x_mid, back - radii_mm[1] + breach_mm, z_mid])
    out = case.copy()
    host = body if breach_mm <= 0 else None
    out.volume, lesion = insert_lesion(vol, centre, radii_mm, hu, host=host, seed=seed)
    out.name = f"{case.name} + posterior-wall lesion in {body_mask}"
    out.masks["lesion"] = lesion
    return out, lesion, centre


# ======================================================================================
# scores
# ======================================================================================


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(bool), b.astype(bool)
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int((a & b).sum()) / total


def recall(found: np.ndarray, reference: np.ndarray) -> float:
    """Fraction of the reference inside ``found``."""
    n = int(reference.sum())
    return 1.0 if n == 0 else int((found & reference).sum()) / n


def centroid_lps(volume: Volume, mask: np.ndarray) -> np.ndarray:
    return volume.index_to_physical(np.argwhere(mask).mean(axis=0)[::-1])


# ======================================================================================
# helpers
# ======================================================================================


def _axial_axis(volume: Volume) -> int:
    column = int(np.argmax(np.abs(volume.direction[2, :])))
    return 2 - column


def _check_same_grid(image: sitk.Image, volume: Volume, name: str) -> None:
    ok = (
        tuple(image.GetSize()) == tuple(volume.size)
        and np.allclose(image.GetSpacing(), volume.spacing, atol=1e-3)
        and np.allclose(image.GetOrigin(), volume.origin, atol=1e-2)
        and np.allclose(np.reshape(image.GetDirection(), (3, 3)), volume.direction, atol=1e-4)
    )
    if not ok:
        raise AssertionError(f"reference {name} is not on the CT's grid")


def _resample(
    case: RealCase, ref: sitk.Image, transform: sitk.Transform, name: str, keep=None
) -> RealCase:
    ct = sitk.Resample(
        case.volume.to_sitk(), ref, transform, sitk.sitkLinear, -1024.0, sitk.sitkInt16
    )
    volume = Volume.from_sitk(ct, meta=dict(case.volume.meta))
    masks = {}
    for key, m in case.masks.items():
        if keep is not None and key not in keep:
            continue
        image = sitk.GetImageFromArray(m.astype(np.uint8))
        image.SetSpacing(case.volume.spacing)
        image.SetOrigin(case.volume.origin)
        image.SetDirection(tuple(case.volume.direction.ravel()))
        out = sitk.Resample(image, ref, transform, sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
        masks[key] = sitk.GetArrayFromImage(out).astype(bool)
    return RealCase(name, volume, masks, dict(case.levels))
