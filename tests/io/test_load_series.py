"""load_series against SimpleITK and against the analytic phantom's known LPS points.

Two independent truths: SimpleITK's ImageSeriesReader (voxel for voxel, where it is right)
and the phantom (markers at known LPS points must land on the right voxels, the patient's
left at +x). Where SimpleITK is known to be wrong (gantry tilt, gaps, duplicates) the
tests say so and check the loader against the phantom only.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from dicom_fixtures import (
    AXIAL_HFS,
    MARKERS,
    N_SLICES,
    PET_DOSE_BQ,
    PET_HALF_LIFE_S,
    PET_INJECTION,
    PET_SERIES_TIME,
    PET_WEIGHT_KG,
    SLICE_SPACING,
    phantom,
    spec_for,
    stack_geometry,
    stored_real_values,
    suv_bw_factor,
    write_enhanced_case,
    write_stack,
)
from pydicom.uid import JPEGBaseline8Bit

from guideplan.core import Volume
from guideplan.core.errors import (
    AmbiguousSeriesError,
    CancelledError,
    NoSeriesError,
    NotDicomError,
    PixelDataError,
    SeriesNotFoundError,
    VolumeFormationError,
)
from guideplan.core.geometry import is_orthonormal
from guideplan.io import load_series, scan
from guideplan.io.dicom_write import write_slices

# ======================================================================================
# helpers
# ======================================================================================


def read_with_sitk(folder: Path) -> sitk.Image:
    """SimpleITK's own reading of the (single) series in ``folder``."""
    names = sitk.ImageSeriesReader_GetGDCMSeriesFileNames(str(folder))
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(names)
    return reader.Execute()


def assert_same_as_sitk(
    vol: Volume, image: sitk.Image, *, scale: float = 1.0, rtol: float = 0.0
) -> None:
    ref = sitk.GetArrayFromImage(image).astype(float) * scale
    assert vol.array.shape == ref.shape
    np.testing.assert_allclose(vol.origin, image.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(vol.spacing, image.GetSpacing(), atol=1e-4)
    np.testing.assert_allclose(vol.direction, np.reshape(image.GetDirection(), (3, 3)), atol=1e-4)
    if rtol:
        np.testing.assert_allclose(vol.array.astype(float), ref, rtol=rtol, atol=1e-4)
    else:
        np.testing.assert_array_equal(vol.array.astype(float), ref)


def marker_centroid(array: np.ndarray, to_lps, expected: float, value_tol: float) -> np.ndarray:
    """LPS centre of the voxels holding a marker's value.

    The median, not the mean: after interpolation a few voxels on the rim of a brighter
    marker pass through this marker's value too, and must not drag the centre.
    """
    kji = np.argwhere(np.abs(array.astype(float) - expected) <= value_tol)
    assert len(kji), f"no voxel holds the marker value {expected}"
    return np.asarray(to_lps(np.median(kji, axis=0)[::-1]))


def assert_markers(
    vol: Volume, modality: str = "CT", *, scale: float = 1.0, resampled: bool = False
) -> None:
    """Every marker is found at its true LPS point.

    Two checks: the voxel nearest the marker's centre holds the marker's value, and the
    voxels holding that value have their centroid at the marker's centre. ``resampled``
    (tilt, gaps) allows interpolation: a looser value match and one voxel of position.
    """
    tol_mm = max(vol.spacing) if resampled else 0.5 * max(vol.spacing)
    found = {}
    for m in MARKERS:
        expected = m.value(modality) * scale
        value_tol = 0.02 * abs(expected) if resampled else max(0.5, 1e-4 * abs(expected))
        i, j, k = vol.physical_to_nearest_index(m.position)
        assert vol.contains_index((i, j, k)), f"marker {m.name} outside the volume"
        assert vol.array[k, j, i] == pytest.approx(expected, abs=value_tol), m.name
        found[m.name] = marker_centroid(vol.array, vol.index_to_physical, expected, value_tol / 2)
        err = np.linalg.norm(found[m.name] - m.position)
        assert err <= tol_mm, f"marker {m.name} found {err:.2f} mm from its true position"
    assert found["left"][0] > 0, "the patient's left marker must be at +x (LPS)"
    assert found["right_anterior_inferior"][0] < 0, "the right marker must be at -x (LPS)"


def sitk_marker_errors(image: sitk.Image, modality: str = "CT") -> list[float]:
    """How far SimpleITK's geometry puts each marker from its true LPS position (mm)."""
    arr = sitk.GetArrayFromImage(image)
    errors = []
    for m in MARKERS:
        c = marker_centroid(
            arr,
            lambda ijk: image.TransformContinuousIndexToPhysicalPoint(tuple(float(v) for v in ijk)),
            m.value(modality),
            0.5,
        )
        errors.append(float(np.linalg.norm(c - m.position)))
    return errors


def assert_helpful(err: Exception) -> None:
    """A user-facing error says what is wrong and what to do: more than a few words."""
    assert len(str(err)) > 20, f"unhelpful message: {err!r}"


# ======================================================================================
# geometry: SimpleITK and the phantom agree with the loader
# ======================================================================================

GEOMETRY_CASES = [
    "axial_hfs",
    "axial_ffs",
    "axial_hfp",
    "oblique",
    "sagittal",
    "coronal",
    "decreasing_z",
    "shuffled",
]


@pytest.mark.parametrize("name", GEOMETRY_CASES)
def test_geometry_matches_simpleitk_voxel_for_voxel(dicom_case, name):
    s = dicom_case(name)
    vol = load_series(s.folder)
    assert_same_as_sitk(vol, read_with_sitk(s.folder))


@pytest.mark.parametrize("name", GEOMETRY_CASES)
def test_markers_land_on_their_lps_points(dicom_case, name):
    s = dicom_case(name)
    vol = load_series(s.folder)
    assert vol.size == (64, 56, N_SLICES)
    assert is_orthonormal(vol.direction)
    assert_markers(vol)


@pytest.mark.parametrize("name", GEOMETRY_CASES)
def test_every_voxel_matches_the_phantom(dicom_case, name):
    """Apart from rounding at sphere borders, voxel (i,j,k) holds phantom(LPS of (i,j,k))."""
    vol = load_series(dicom_case(name).folder)
    k, j, i = np.indices(vol.array.shape)
    pts = vol.index_to_physical(np.stack([i.ravel(), j.ravel(), k.ravel()], axis=1))
    expected = np.rint(phantom(pts, "CT")).reshape(vol.array.shape)
    mismatch = np.abs(vol.array.astype(float) - expected) > 1.0
    assert mismatch.mean() < 1e-3


def test_axial_series_meta(dicom_case):
    s = dicom_case("axial_hfs")
    vol = load_series(s.folder)
    ds = pydicom.dcmread(s.files[0])
    meta = vol.meta
    assert meta["modality"] == "CT"
    assert meta["series_uid"] == ds.SeriesInstanceUID
    assert meta["study_uid"] == ds.StudyInstanceUID
    assert meta["frame_of_reference_uid"] == ds.FrameOfReferenceUID
    assert meta["description"] == "axial_hfs"
    assert str(meta["patient_name"]) == "ANON^GUIDEPLAN"
    assert meta["patient_id"] == "GP0001"
    assert meta["units"] == "HU"
    assert meta["warnings"] == []  # a clean series loads without warnings
    np.testing.assert_allclose(vol.spacing, (2.6, 2.4, 3.0), atol=1e-6)


def test_axis_directions_of_standard_orientations(dicom_case):
    """Plain-language check of the stacking direction chosen (as SimpleITK: along row x col)."""
    hfs = load_series(dicom_case("axial_hfs").folder)
    ffs = load_series(dicom_case("axial_ffs").folder)
    hfp = load_series(dicom_case("axial_hfp").folder)
    np.testing.assert_allclose(hfs.direction, np.eye(3), atol=1e-6)
    np.testing.assert_allclose(ffs.direction, np.diag([-1.0, 1.0, -1.0]), atol=1e-6)
    np.testing.assert_allclose(hfp.direction, np.diag([-1.0, -1.0, 1.0]), atol=1e-6)
    for vol in (hfs, ffs, hfp):  # same patient, same place: the same LPS bounding box
        lo, hi = vol.bounds_lps()
        ref_lo, ref_hi = hfs.bounds_lps()
        np.testing.assert_allclose(lo, ref_lo, atol=1e-4)
        np.testing.assert_allclose(hi, ref_hi, atol=1e-4)


# ======================================================================================
# where SimpleITK is wrong: tilt, gaps, irregular spacing, duplicates
# ======================================================================================


def test_gantry_tilt_is_corrected(dicom_case):
    s = dicom_case("tilt")
    vol = load_series(s.folder)
    assert is_orthonormal(vol.direction)
    assert any("tilt" in w.lower() for w in vol.meta["warnings"]), vol.meta["warnings"]
    assert_markers(vol, resampled=True)


def test_simpleitk_misplaces_a_tilted_series(dicom_case):
    """Pitfall, pinned: ITK stacks tilted slices along row x col, not along their real
    offsets, so a 15 degree tilt moves markers by many millimetres."""
    image = read_with_sitk(dicom_case("tilt").folder)
    assert max(sitk_marker_errors(image)) > 5.0


def _gap_candidates(s) -> list[float]:
    """Numbers a helpful gap warning may quote: slice z (mm) or slice index around the gap."""
    lo, hi = s.notes["gap_between"]
    z = [stack_geometry(*AXIAL_HFS).positions[k][2] for k in range(lo, hi + 1)]
    return [*z, *range(lo - 1, hi + 2)]


def test_missing_slices_are_filled_and_reported(dicom_case):
    s = dicom_case("gap")
    vol = load_series(s.folder)
    assert is_orthonormal(vol.direction)
    gap_warnings = [w for w in vol.meta["warnings"] if re.search(r"gap|missing", w, re.I)]
    assert gap_warnings, vol.meta["warnings"]
    numbers = [float(x) for w in gap_warnings for x in re.findall(r"-?\d+(?:\.\d+)?", w)]
    assert any(abs(n - c) < 0.6 for n in numbers for c in _gap_candidates(s)), (
        f"the gap warning should say where the gap is: {gap_warnings}"
    )
    # uniform grid whose planes include every original slice, values preserved there
    assert vol.spacing[2] <= SLICE_SPACING + 1e-3
    for f, frame in zip(s.files, s.frames, strict=True):
        ipp = [float(v) for v in pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient]
        i, j, k = vol.physical_to_index(ipp)
        assert abs(i) < 1e-3 and abs(j) < 1e-3 and abs(k - round(k)) < 1e-3
        np.testing.assert_allclose(vol.array[round(k)], np.rint(frame), atol=0.5)
    assert_markers(vol, resampled=True)


def test_simpleitk_stretches_a_series_with_missing_slices(dicom_case):
    """Pitfall, pinned: ITK spreads the remaining slices evenly (spacing 87/27 mm, not 3)."""
    image = read_with_sitk(dicom_case("gap").folder)
    assert image.GetSize()[2] == N_SLICES - 2
    assert image.GetSpacing()[2] == pytest.approx(3.0 * (N_SLICES - 1) / (N_SLICES - 3))


def test_irregular_spacing_is_regularised_and_reported(dicom_case):
    vol = load_series(dicom_case("irregular").folder)
    assert any(
        re.search(r"spacing|irregular|uneven|non-?uniform", w, re.I) for w in vol.meta["warnings"]
    ), vol.meta["warnings"]
    assert is_orthonormal(vol.direction)
    assert_markers(vol, resampled=True)


def test_duplicate_positions_are_dropped_with_a_warning(dicom_case):
    s = dicom_case("duplicates")
    vol = load_series(s.folder)
    assert vol.size[2] == s.notes["unique_slices"]
    assert any("duplicate" in w.lower() for w in vol.meta["warnings"]), vol.meta["warnings"]
    np.testing.assert_allclose(vol.spacing, (2.6, 2.4, 3.0), atol=1e-4)
    assert_markers(vol)


# ======================================================================================
# pixel encodings
# ======================================================================================


@pytest.mark.parametrize("name", ["rescale_per_slice", "unsigned_intercept", "signed"])
def test_rescale_variants(dicom_case, name):
    s = dicom_case(name)
    vol = load_series(s.folder)
    truth = stored_real_values(s.files)  # files were written in increasing z order
    np.testing.assert_array_equal(vol.array.astype(float), truth)
    assert_same_as_sitk(vol, read_with_sitk(s.folder))
    assert vol.meta["units"] == "HU"
    assert_markers(vol)


@pytest.mark.parametrize(
    "name",
    [
        "ts_ImplicitVRLittleEndian",
        "ts_RLELossless",
        "ts_JPEGLSLossless",
        "ts_JPEG2000Lossless",
        "ts_JPEGLosslessSV1",
    ],
)
def test_lossless_transfer_syntaxes(dicom_case, name):
    s = dicom_case(name)
    vol = load_series(s.folder)
    reference = load_series(dicom_case("axial_hfs").folder)
    assert vol.same_grid(reference)
    np.testing.assert_array_equal(vol.array, reference.array)
    assert_same_as_sitk(vol, read_with_sitk(s.folder))


def test_jpeg_baseline_8bit(tmp_path):
    """Lossy JPEG baseline (pydicom cannot encode it; Pillow can)."""
    pytest.importorskip("PIL")
    spec = spec_for("jpeg_baseline", "MR", transfer_syntax=JPEGBaseline8Bit)
    geo = stack_geometry(*AXIAL_HFS, n=8)
    frames = np.clip(geo.sample("MR") / 12.0, 0, 255)
    files = write_slices(
        tmp_path,
        frames,
        geo.positions,
        geo.row_cosine,
        geo.col_cosine,
        geo.pixel_spacing,
        spec,
        pixel_representation=0,
        bits_stored=8,
    )
    vol = load_series(tmp_path)
    # lossy: the truth is a decoder's output; decoders may differ by a grey level or two
    np.testing.assert_allclose(vol.array.astype(float), stored_real_values(files), atol=2)
    np.testing.assert_allclose(vol.origin, geo.positions[0], atol=1e-4)


def _series_from_test_file(name: str, folder: Path, n: int = 3) -> list[Path]:
    """Turn one pydicom test file (kept compressed as is) into an n-slice CT series."""
    from pydicom.data import get_testdata_file

    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"{name} is not shipped with this pydicom")
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for k in range(n):
        ds = pydicom.dcmread(path)
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
        uid = f"1.2.826.0.1.3680043.8.498.9{k}"
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = uid
        ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.81"
        ds.SeriesInstanceUID = "1.2.826.0.1.3680043.8.498.82"
        ds.FrameOfReferenceUID = "1.2.826.0.1.3680043.8.498.83"
        ds.Modality = "CT"
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [-100.0, -120.0, 10.0 + 2.5 * k]
        ds.PixelSpacing = [0.8, 0.7]
        ds.SliceThickness = 2.5
        ds.InstanceNumber = k + 1
        ds.RescaleSlope, ds.RescaleIntercept = 1, 0
        for kw in ("NumberOfFrames", "FrameIncrementPointer"):
            if kw in ds:
                delattr(ds, kw)
        out = folder / f"J{k}.dcm"
        ds.save_as(out)
        files.append(out)
    return files


def test_jpeg_extended_12bit_from_pydicom_test_files(tmp_path):
    """A real JPEG (process 2/4, 12-bit, lossy) stream, repackaged as a 3-slice series."""
    files = _series_from_test_file("JPGExtended.dcm", tmp_path)
    vol = load_series(tmp_path)
    np.testing.assert_allclose(vol.array.astype(float), stored_real_values(files), atol=2)
    np.testing.assert_allclose(vol.spacing, (0.7, 0.8, 2.5), atol=1e-6)


# ======================================================================================
# enhanced multi-frame
# ======================================================================================


@pytest.mark.parametrize("modality,units", [("CT", "HU"), ("MR", "")])
def test_enhanced_multiframe(tmp_path, modality, units):
    path, truth = write_enhanced_case(tmp_path, f"enhanced_{modality}", modality)
    for source in (tmp_path, path):
        vol = load_series(source)
        assert vol.same_grid(truth)
        np.testing.assert_array_equal(vol.array.astype(float), truth.array)
        assert vol.meta["modality"] == modality
        assert vol.meta["units"] == units
        assert_markers(vol, modality)


# ======================================================================================
# MR and PET
# ======================================================================================


def test_mr_series(dicom_case):
    s = dicom_case("mr")
    vol = load_series(s.folder)
    assert vol.meta["modality"] == "MR"
    assert vol.meta["units"] == ""
    assert_same_as_sitk(vol, read_with_sitk(s.folder))
    assert_markers(vol, "MR")


def test_pet_series_in_suv_bw(dicom_case):
    s = dicom_case("pet_suv")
    vol = load_series(s.folder)
    assert vol.meta["modality"] == "PT"
    assert vol.meta["units"] == "SUVbw"
    factor = suv_bw_factor(
        PET_WEIGHT_KG, PET_DOSE_BQ, PET_HALF_LIFE_S, PET_INJECTION, PET_SERIES_TIME
    )
    # by hand: 75 kg, 370 MBq injected 08:00, series at 09:30 -> decayed by 2^(-5400/6586.2)
    assert factor == pytest.approx(75000.0 / (370e6 * 2 ** (-5400 / 6586.2)))
    bqml = stored_real_values(s.files)  # files were written in increasing z order
    np.testing.assert_allclose(vol.array, bqml * factor, rtol=1e-5, atol=1e-6)
    assert_same_as_sitk(vol, read_with_sitk(s.folder), scale=factor, rtol=1e-5)
    assert_markers(vol, "PT", scale=factor)


def test_pet_without_weight_stays_in_bqml(dicom_case):
    s = dicom_case("pet_no_weight")
    vol = load_series(s.folder)
    assert vol.meta["units"] == "BQML"
    np.testing.assert_allclose(vol.array, stored_real_values(s.files), rtol=1e-5, atol=1e-6)
    assert_markers(vol, "PT")


# ======================================================================================
# progress and cancel
# ======================================================================================


def test_progress_reports_fractions(dicom_case):
    calls: list[tuple[float, str]] = []
    load_series(dicom_case("axial_hfs").folder, progress=lambda f, m: calls.append((f, m)))
    assert calls
    fractions = [f for f, _ in calls]
    assert all(0.0 <= f <= 1.0 for f in fractions)
    assert fractions == sorted(fractions)
    assert fractions[-1] >= 0.99
    assert all(isinstance(m, str) for _, m in calls)


@pytest.mark.parametrize("after", [0, 5])
def test_cancel_stops_loading(dicom_case, after):
    polls = {"n": 0}

    def cancel() -> bool:
        polls["n"] += 1
        return polls["n"] > after

    with pytest.raises(CancelledError) as err:
        load_series(dicom_case("axial_hfs").folder, cancel=cancel)
    assert_helpful(err.value)


# ======================================================================================
# bad input: every error is a GuideplanError with a helpful message
# ======================================================================================


def _small_series(folder: Path, name: str, n: int = 6, **kw):
    return write_stack(folder, name, stack_geometry(*AXIAL_HFS, n=n), **kw)


def test_folder_of_text_files_is_not_dicom(tmp_path):
    for name in ("README.txt", "notes.md", "data.csv"):
        (tmp_path / name).write_text("not a DICOM file\n" * 20)
    with pytest.raises(NotDicomError) as err:
        load_series(tmp_path)
    assert_helpful(err.value)


def test_empty_folder_is_not_dicom(tmp_path):
    with pytest.raises((NotDicomError, NoSeriesError)) as err:
        load_series(tmp_path)
    assert_helpful(err.value)


def test_dicom_without_images_has_no_series(tmp_path):
    ds = pydicom.Dataset()
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"  # Basic Text SR
    ds.file_meta.MediaStorageSOPInstanceUID = "1.2.826.0.1.3680043.8.498.71"
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "SR"
    ds.PatientID = "GP0001"
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.72"
    ds.SeriesInstanceUID = "1.2.826.0.1.3680043.8.498.73"
    ds.save_as(tmp_path / "report.dcm", enforce_file_format=True)
    with pytest.raises(NoSeriesError) as err:
        load_series(tmp_path)
    assert_helpful(err.value)


def test_truncated_pixel_data(tmp_path):
    s = _small_series(tmp_path, "truncated")
    victim = s.files[3]
    victim.write_bytes(victim.read_bytes()[:-3000])
    with pytest.raises(PixelDataError) as err:
        load_series(tmp_path)
    assert_helpful(err.value)
    report = scan(tmp_path)  # scanning never stops on a bad file
    mentioned = [sk for sk in report.skipped if Path(sk.path).name == victim.name]
    warned = [w for info in report.series for w in info.warnings]
    assert mentioned or warned


def test_missing_pixel_data(tmp_path):
    def drop_pixels(ds: pydicom.Dataset, index: int) -> None:
        if index == 2:
            del ds.PixelData

    _small_series(tmp_path, "no_pixels", extra=drop_pixels)
    with pytest.raises(PixelDataError) as err:
        load_series(tmp_path)
    assert_helpful(err.value)
    scan(tmp_path)  # must not raise


def test_mixed_image_sizes_in_one_series(tmp_path):
    s = _small_series(tmp_path, "mixed", n=6)
    geo = stack_geometry(*AXIAL_HFS, n=2, rows=64, cols=64)
    geo.positions = geo.positions + np.array([0.0, 0.0, 30.0])  # beyond the first six
    write_slices(
        tmp_path,
        geo.sample("CT"),
        geo.positions,
        geo.row_cosine,
        geo.col_cosine,
        geo.pixel_spacing,
        s.spec,
        rescale_intercept=-1024.0,
        pixel_representation=0,
        bits_stored=12,
        file_names=["X1.dcm", "X2.dcm"],
        instance_numbers=[7, 8],
    )
    with pytest.raises(VolumeFormationError) as err:
        load_series(tmp_path)
    assert_helpful(err.value)


def test_several_series_and_no_choice_is_ambiguous(tmp_path):
    a = _small_series(tmp_path / "a", "amb_a")
    b = _small_series(
        tmp_path / "b", "amb_b", spec=dataclasses.replace(spec_for("amb_b"), series_number=2)
    )
    with pytest.raises(AmbiguousSeriesError) as err:
        load_series(tmp_path)
    assert_helpful(err.value)
    assert load_series(tmp_path, series_uid=b.series_uid).meta["series_uid"] == b.series_uid
    assert load_series(tmp_path, series_uid=a.series_uid).meta["series_uid"] == a.series_uid


def test_unknown_series_uid(dicom_case):
    with pytest.raises(SeriesNotFoundError) as err:
        load_series(dicom_case("axial_hfs").folder, series_uid="1.2.3.4.5.6.7.8.9")
    assert_helpful(err.value)


def test_missing_path(tmp_path):
    with pytest.raises(NotDicomError) as err:
        load_series(tmp_path / "does-not-exist")
    assert_helpful(err.value)


def test_loading_a_copy_elsewhere_gives_the_same_volume(dicom_case, tmp_path):
    """Nothing depends on the folder's name or location."""
    src = dicom_case("shuffled")
    dst = tmp_path / "renamed folder with spaces"
    shutil.copytree(src.folder, dst)
    a, b = load_series(src.folder), load_series(dst)
    assert a.same_grid(b)
    np.testing.assert_array_equal(a.array, b.array)
