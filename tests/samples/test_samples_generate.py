"""End-to-end checks of the generated sample cases (coarse variant).

The DICOM series are read back with SimpleITK/GDCM, an implementation independent of
guideplan's own writer and loader, so geometry errors cannot cancel out.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from guideplan.core import geometry
from guideplan.core.errors import GuideplanError
from guideplan.samples import CASE_NAMES, generate_samples
from guideplan.samples.cases import build_cases


def _read_series(folder: Path) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    return reader.Execute()


def _mean_near(img: sitk.Image, point: np.ndarray, radius_vox: int = 1) -> float:
    """Mean of the voxels around the one nearest to an LPS point (robust to noise)."""
    idx = np.rint(img.TransformPhysicalPointToContinuousIndex(tuple(float(v) for v in point)))
    arr = sitk.GetArrayViewFromImage(img)
    i, j, k = (int(v) for v in idx)
    assert 0 <= i < arr.shape[2] and 0 <= j < arr.shape[1] and 0 <= k < arr.shape[0]
    r = radius_vox
    block = arr[max(k - r, 0) : k + r + 1, max(j - r, 0) : j + r + 1, max(i - r, 0) : i + r + 1]
    return float(np.mean(block))


def _truth(case: Path) -> dict:
    return json.loads((case / "truth" / "truth.json").read_text(encoding="utf-8"))


def _mask(case: Path, name: str) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(case / "truth" / f"{name}.nrrd"))) > 0


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_layout_and_compressed_dicom(coarse_cases: dict[str, Path]) -> None:
    assert sorted(coarse_cases) == sorted(CASE_NAMES)
    for case in coarse_cases.values():
        for sub in ("ct", "prior_ct", "mr"):
            files = sorted((case / sub).glob("*.dcm"))
            assert files, f"{case.name}/{sub} is empty"
            ds = pydicom.dcmread(files[0], stop_before_pixels=True)
            assert ds.file_meta.TransferSyntaxUID == pydicom.uid.JPEGLSLossless
        for name in ("lesion", "bone", "canal", "body", "truth"):
            assert (
                case / "truth" / (f"{name}.json" if name == "truth" else f"{name}.nrrd")
            ).is_file()
        meta = json.loads((case / "case.json").read_text(encoding="utf-8"))
        assert meta["synthetic"] is True and meta["suggested_treatment"]
        assert (case / "README.md").is_file()


def test_series_are_distinct_frames_of_reference(coarse_cases: dict[str, Path]) -> None:
    specs = build_cases()
    for case in coarse_cases.values():
        uids = set()
        for sub in ("ct", "prior_ct", "mr"):
            ds = pydicom.dcmread(next((case / sub).glob("*.dcm")), stop_before_pixels=True)
            uids.add(ds.FrameOfReferenceUID)
            expected = getattr(specs[case.name], sub).patient_position
            assert ds.PatientPosition == expected, (case.name, sub)
            # the spine cases are planned prone; every diagnostic prior is supine
            spine = ("case01_l2_lytic_rfa_cement", "case03_t10_blastic")
            prone = case.name in spine and sub == "ct"
            assert expected == ("HFP" if prone else "HFS")
        assert len(uids) == 3


def test_prone_series_geometry_and_couch(coarse_cases: dict[str, Path]) -> None:
    """A prone planning CT: prone image axes, truth on its grid, couch under the belly."""
    case = coarse_cases["case01_l2_lytic_rfa_cement"]
    ct = _read_series(case / "ct")
    np.testing.assert_allclose(
        np.reshape(ct.GetDirection(), (3, 3)), np.diag([-1.0, -1.0, 1.0]), atol=1e-6
    )
    centre = np.asarray(_truth(case)["lesion"]["center_lps"])
    lesion = sitk.ReadImage(str(case / "truth" / "lesion.nrrd"))
    assert lesion[lesion.TransformPhysicalPointToIndex(tuple(float(v) for v in centre))] == 1
    hu = sitk.GetArrayFromImage(ct)
    body = _mask(case, "body")
    rows = np.nonzero(body.any(axis=(0, 2)))[0]
    y = [ct.TransformIndexToPhysicalPoint((0, int(j), 0))[1] for j in range(hu.shape[1])]
    y = np.asarray(y)
    front, back = y[rows].min(), y[rows].max()
    couch_rows = np.nonzero(((hu > -300) & ~body).any(axis=(0, 2)))[0]
    assert np.any(y[couch_rows] < front - 5.0)
    assert not np.any(y[couch_rows] > back + 5.0)


def test_truth_masks_on_planning_grid(coarse_cases: dict[str, Path]) -> None:
    for case in coarse_cases.values():
        ct = _read_series(case / "ct")
        for name in ("lesion", "bone", "canal", "body"):
            m = sitk.ReadImage(str(case / "truth" / f"{name}.nrrd"))
            assert m.GetSize() == ct.GetSize()
            np.testing.assert_allclose(m.GetOrigin(), ct.GetOrigin(), atol=1e-3)
            np.testing.assert_allclose(m.GetSpacing(), ct.GetSpacing(), atol=1e-4)
            np.testing.assert_allclose(m.GetDirection(), ct.GetDirection(), atol=1e-6)


@pytest.mark.parametrize("name", CASE_NAMES)
def test_tissue_hu_in_truth_masks(coarse_cases: dict[str, Path], name: str) -> None:
    case = coarse_cases[name]
    hu = sitk.GetArrayFromImage(_read_series(case / "ct")).astype(float)
    lesion, bone, canal, body = (_mask(case, n) for n in ("lesion", "bone", "canal", "body"))
    kind = _truth(case)["lesion"]["kind"]
    lesion_med = np.median(hu[lesion])
    if kind == "lytic":
        assert 0 <= lesion_med <= 80, lesion_med
    else:
        assert 450 <= lesion_med <= 850, lesion_med
    healthy = bone & ~lesion
    assert 150 <= np.median(hu[healthy]) <= 700
    assert np.percentile(hu[healthy], 99) > 700  # cortex present
    assert -100 <= np.median(hu[canal]) <= 40
    outside = hu[~body]
    assert np.median(outside) == -1000
    assert np.mean(outside > -300) < 0.03  # only the thin couch shell and the skin edge
    inside = hu[body]
    assert np.percentile(inside, 50) > -150  # soft tissue dominates the body


def test_case02_lesion_on_patient_left_and_near_skin(coarse_cases: dict[str, Path]) -> None:
    case = coarse_cases["case02_iliac_cryo_skin"]
    truth = _truth(case)
    centre = np.asarray(truth["lesion"]["center_lps"])
    assert centre[0] > 0  # LPS: +x is the patient's left
    assert truth["side"] == "left"
    assert truth["lesion"]["lesion_to_skin_mm"] < 25
    ct = _read_series(case / "ct")
    mirrored = centre * np.array([-1.0, 1.0, 1.0])
    assert _mean_near(ct, centre) < 90  # lytic lesion
    assert _mean_near(ct, mirrored) > 90  # the right iliac crest is intact bone
    # the mask agrees, read through the DICOM geometry
    lesion = _mask(case, "lesion")
    kji = np.argwhere(lesion)
    pts = [ct.TransformIndexToPhysicalPoint(tuple(int(v) for v in p[::-1])) for p in kji]
    assert np.all(np.asarray(pts)[:, 0] > 60)


@pytest.mark.parametrize("name", CASE_NAMES)
def test_prior_transforms_map_lesion_onto_lesion(coarse_cases: dict[str, Path], name: str) -> None:
    case = coarse_cases[name]
    truth = _truth(case)
    kind = truth["lesion"]["kind"]
    centre = np.asarray(truth["lesion"]["center_lps"])
    ct = _read_series(case / "ct")
    for folder, tr in truth["transforms"].items():
        m = np.asarray(tr["fixed_to_moving"])
        np.testing.assert_allclose(m @ np.asarray(tr["moving_to_fixed"]), np.eye(4), atol=1e-6)
        np.testing.assert_allclose(m[:3, :3].T @ m[:3, :3], np.eye(3), atol=1e-6)
        expected = geometry.rigid_matrix(tr["rotation_deg"], tr["translation_mm"], tr["center_lps"])
        np.testing.assert_allclose(m, expected, atol=1e-6)
        moving = _read_series(case / folder)
        p = geometry.apply_affine(m, centre)
        value = _mean_near(moving, p, radius_vox=0)
        if folder == "mr":
            # T1: lesions are dark against the fatty marrow (> 600)
            assert value < 450, (folder, value)
        elif kind == "lytic":
            assert value < 120, (folder, value)
        else:
            assert value > 350, (folder, value)
        # a point 10 cm away is not the lesion: the transform is not trivially wrong
        if folder != "mr":
            assert not np.allclose(m, np.eye(4))
    # in the planning CT itself the centre is the lesion
    v = _mean_near(ct, centre)
    assert (v < 80) if kind == "lytic" else (v > 400)


def test_generation_is_deterministic(tmp_path: Path) -> None:
    a = generate_samples(tmp_path / "a", cases=["case02_iliac_cryo_skin"], scale=0.25)[0]
    b = generate_samples(tmp_path / "b", cases=["case02_iliac_cryo_skin"], scale=0.25)[0]
    assert _digest(a) == _digest(b)
    # rewriting in place gives the same bytes and leaves no stale files
    again = generate_samples(tmp_path / "a", cases=["case02_iliac_cryo_skin"], scale=0.25)[0]
    assert _digest(again) == _digest(b)
    assert not list((tmp_path / "a").glob(".*partial"))


def test_progress_and_errors(tmp_path: Path) -> None:
    seen: list[tuple[float, str]] = []
    generate_samples(
        tmp_path, cases=["case03_t10_blastic"], scale=0.2, progress=lambda f, m: seen.append((f, m))
    )
    fractions = [f for f, _ in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    with pytest.raises(GuideplanError):
        generate_samples(tmp_path, cases=["no_such_case"])
    foreign = tmp_path / "case01_l2_lytic_rfa_cement"
    foreign.mkdir()
    (foreign / "precious.txt").write_text("user data")
    with pytest.raises(GuideplanError):
        generate_samples(tmp_path, cases=["case01_l2_lytic_rfa_cement"], scale=0.2)
    assert (foreign / "precious.txt").exists()
