"""The synthetic DICOM writer: valid (dciodvfy), deterministic, geometrically exact."""

from __future__ import annotations

import filecmp
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from dicom_fixtures import (
    AXIAL_HFS,
    OBLIQUE,
    analytic_volume,
    spec_for,
    stack_geometry,
    tilted_geometry,
    write_stack,
)
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
)

from guideplan.core import Volume
from guideplan.io.dicom_write import (
    CT_IMAGE_STORAGE,
    ENHANCED_CT_IMAGE_STORAGE,
    ENHANCED_MR_IMAGE_STORAGE,
    MR_IMAGE_STORAGE,
    PET_IMAGE_STORAGE,
    SeriesSpec,
    to_stored,
    write_enhanced,
    write_slices,
    write_volume,
)

DCIODVFY = shutil.which("dciodvfy")
DCENTVFY = shutil.which("dcentvfy")
needs_dciodvfy = pytest.mark.skipif(DCIODVFY is None, reason="dciodvfy (dicom3tools) not installed")

LOSSLESS = (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    RLELossless,
    JPEGLSLossless,
    JPEG2000Lossless,
    JPEGLosslessSV1,
)


def _verify(tool: str, *paths: Path) -> tuple[list[str], list[str]]:
    """(errors, warnings) reported by a dicom3tools verifier."""
    res = subprocess.run([tool, *map(str, paths)], capture_output=True, text=True, timeout=120)
    lines = (res.stdout + res.stderr).splitlines()
    errors = [ln for ln in lines if ln.startswith("Error")]
    warnings = [
        ln for ln in lines if ln.startswith("Warning") and "needed to build DICOMDIR" not in ln
    ]
    return errors, warnings


def _small_volume(modality: str = "CT") -> Volume:
    """A small analytic volume (oblique, non-square) for quick writer checks."""
    direction = np.column_stack([*OBLIQUE, np.cross(*OBLIQUE)])
    return analytic_volume(modality, direction=direction, size=(40, 36, 6), spacing=(4.0, 3.5, 5.0))


# -- validity -----------------------------------------------------------------------------


@needs_dciodvfy
@pytest.mark.parametrize(
    "modality,sop_class",
    [("CT", CT_IMAGE_STORAGE), ("MR", MR_IMAGE_STORAGE), ("PT", PET_IMAGE_STORAGE)],
)
@pytest.mark.parametrize("transfer_syntax", LOSSLESS, ids=lambda ts: UID(ts).keyword)
def test_single_frame_series_pass_dciodvfy(tmp_path, modality, sop_class, transfer_syntax):
    spec = spec_for(
        "valid",
        modality,
        transfer_syntax=transfer_syntax,
        patient_weight_kg=70.0 if modality == "PT" else None,
    )
    kw = (
        {"pixel_representation": 0, "bits_stored": 12, "rescale_intercept": -1024.0}
        if modality == "CT"
        else {}
    )
    files = write_volume(_small_volume(modality), tmp_path, spec, **kw)
    assert pydicom.dcmread(files[0]).SOPClassUID == sop_class
    errors, warnings = _verify(DCIODVFY, files[0])
    assert errors == []
    assert warnings == []
    if DCENTVFY:  # consistency of patient/study/series attributes across the instances
        errors, _ = _verify(DCENTVFY, *files)
        assert errors == []


@needs_dciodvfy
@pytest.mark.parametrize(
    "modality,sop_class", [("CT", ENHANCED_CT_IMAGE_STORAGE), ("MR", ENHANCED_MR_IMAGE_STORAGE)]
)
@pytest.mark.parametrize("transfer_syntax", LOSSLESS, ids=lambda ts: UID(ts).keyword)
def test_enhanced_files_pass_dciodvfy(tmp_path, modality, sop_class, transfer_syntax):
    spec = spec_for("valid-enhanced", modality, transfer_syntax=transfer_syntax)
    path = write_enhanced(
        _small_volume(modality),
        tmp_path / "E.dcm",
        spec,
        rescale_intercept=-1024.0 if modality == "CT" else 0.0,
        pixel_representation=0,
    )
    assert pydicom.dcmread(path, stop_before_pixels=True).SOPClassUID == sop_class
    errors, warnings = _verify(DCIODVFY, path)
    assert errors == []
    assert warnings == []


@needs_dciodvfy
def test_gantry_tilt_and_localizer_pass_dciodvfy(tmp_path):
    s = write_stack(tmp_path / "tilt", "tilt", tilted_geometry(15.0, n=3), gantry_tilt_deg=15.0)
    loc = spec_for("loc", image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"))
    geo = stack_geometry((1, 0, 0), (0, 0, -1), n=1)
    files = write_slices(
        tmp_path / "loc",
        geo.sample("CT"),
        geo.positions,
        geo.row_cosine,
        geo.col_cosine,
        geo.pixel_spacing,
        loc,
    )
    for f in (s.files[0], files[0]):
        errors, warnings = _verify(DCIODVFY, f)
        assert errors == [] and warnings == []


# -- determinism and identity -------------------------------------------------------------


@pytest.mark.parametrize(
    "transfer_syntax",
    [ExplicitVRLittleEndian, RLELossless, JPEGLSLossless, JPEG2000Lossless, JPEGLosslessSV1],
    ids=lambda ts: UID(ts).keyword,
)
def test_same_inputs_give_byte_identical_files(tmp_path, transfer_syntax):
    vol = _small_volume()
    spec = SeriesSpec(transfer_syntax=transfer_syntax)
    a = write_volume(vol, tmp_path / "a", spec)
    b = write_volume(vol, tmp_path / "b", SeriesSpec(transfer_syntax=transfer_syntax))
    assert [p.name for p in a] == [p.name for p in b]
    assert all(filecmp.cmp(x, y, shallow=False) for x, y in zip(a, b, strict=True))
    ea = write_enhanced(vol, tmp_path / "ea.dcm", spec)
    eb = write_enhanced(vol, tmp_path / "eb.dcm", spec)
    assert filecmp.cmp(ea, eb, shallow=False)


def test_uids_derive_from_seed_and_series_number(tmp_path):
    vol = _small_volume()
    one = write_volume(vol, tmp_path / "1", SeriesSpec(seed="s", series_number=1))
    two = write_volume(vol, tmp_path / "2", SeriesSpec(seed="s", series_number=2))
    other = write_volume(vol, tmp_path / "3", SeriesSpec(seed="t", series_number=1))
    d1, d2, d3 = (pydicom.dcmread(f[0]) for f in (one, two, other))
    assert d1.StudyInstanceUID == d2.StudyInstanceUID != d3.StudyInstanceUID
    assert d1.FrameOfReferenceUID == d2.FrameOfReferenceUID
    assert d1.SeriesInstanceUID != d2.SeriesInstanceUID
    sops = {pydicom.dcmread(f).SOPInstanceUID for f in one + two + other}
    assert len(sops) == len(one) * 3
    for uid in (
        d1.StudyInstanceUID,
        d1.SeriesInstanceUID,
        d1.SOPInstanceUID,
        d1.FrameOfReferenceUID,
    ):
        assert UID(uid).is_valid
    given = SeriesSpec(
        study_uid="1.2.3.4", series_uid="1.2.3.4.5", frame_of_reference_uid="1.2.3.4.6"
    )
    ds = pydicom.dcmread(write_volume(vol, tmp_path / "g", given)[0])
    assert (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID) == (
        "1.2.3.4",
        "1.2.3.4.5",
        "1.2.3.4.6",
    )


# -- pixel values -----------------------------------------------------------------------


def test_to_stored_rounds_and_clips():
    v = np.array([-2000.0, -1024.0, -0.6, 0.4, 3071.0, 5000.0])
    got = to_stored(v, 1.0, -1024.0, pixel_representation=0, bits_stored=12)
    assert got.dtype == np.uint16
    assert got.tolist() == [0, 0, 1023, 1024, 4095, 4095]
    signed = to_stored(v, 2.0, 0.0, pixel_representation=1, bits_stored=16)
    assert signed.dtype == np.int16
    assert signed.tolist() == [-1000, -512, 0, 0, 1536, 2500]


@pytest.mark.parametrize("transfer_syntax", LOSSLESS, ids=lambda ts: UID(ts).keyword)
def test_values_round_trip_through_pydicom_and_simpleitk(tmp_path, transfer_syntax):
    vol = _small_volume()
    slopes = [1.0, 2.0, 1.0, 1.0, 0.5, 1.0]
    intercepts = [-1024.0, -1024.0, -1000.0, -2048.0, -1024.0, -1024.0]
    files = write_volume(
        vol,
        tmp_path,
        SeriesSpec(transfer_syntax=transfer_syntax),
        rescale_slope=slopes,
        rescale_intercept=intercepts,
        pixel_representation=1,
        bits_stored=16,
    )
    for k, f in enumerate(files):
        ds = pydicom.dcmread(f)
        assert ds.file_meta.TransferSyntaxUID == transfer_syntax
        real = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        expected = np.rint((vol.array[k] - intercepts[k]) / slopes[k]) * slopes[k] + intercepts[k]
        np.testing.assert_array_equal(real, expected)
        via_gdcm = sitk.GetArrayFromImage(sitk.ReadImage(str(f)))[0]
        np.testing.assert_array_equal(via_gdcm, expected)


def test_jpeg_baseline_is_8_bit_and_lossy(tmp_path):
    pytest.importorskip("PIL")
    vol = _small_volume("MR")
    vol.array = np.clip(vol.array / 12.0, 0, 255)
    with pytest.raises(ValueError, match="8-bit"):
        write_volume(
            vol, tmp_path / "bad", SeriesSpec(modality="MR", transfer_syntax=JPEGBaseline8Bit)
        )
    files = write_volume(
        vol,
        tmp_path / "ok",
        SeriesSpec(modality="MR", transfer_syntax=JPEGBaseline8Bit),
        pixel_representation=0,
        bits_stored=8,
    )
    ds = pydicom.dcmread(files[2])
    assert ds.file_meta.TransferSyntaxUID == JPEGBaseline8Bit
    assert ds.LossyImageCompression == "01"
    assert np.abs(ds.pixel_array.astype(float) - np.rint(vol.array[2])).mean() < 2.0


def test_pet_needs_zero_intercept(tmp_path):
    with pytest.raises(ValueError, match="Intercept"):
        write_volume(
            _small_volume("PT"), tmp_path, SeriesSpec(modality="PT"), rescale_intercept=-10.0
        )


def test_jpeg2000_refuses_tiny_frames_clearly(tmp_path):
    vol = Volume(np.zeros((2, 16, 16)), (1, 1, 1), (0, 0, 0))
    with pytest.raises(ValueError, match="32x32"):
        write_volume(vol, tmp_path, SeriesSpec(transfer_syntax=JPEG2000Lossless))


# -- geometry -----------------------------------------------------------------------------


def test_write_volume_geometry_matches_simpleitk(tmp_path):
    """SimpleITK reading our files back gives the Volume's exact grid (independent check)."""
    vol = _small_volume()
    write_volume(
        vol,
        tmp_path,
        SeriesSpec(),
        rescale_intercept=-1024.0,
        pixel_representation=0,
        bits_stored=12,
    )
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(sitk.ImageSeriesReader_GetGDCMSeriesFileNames(str(tmp_path)))
    image = reader.Execute()
    np.testing.assert_allclose(image.GetOrigin(), vol.origin, atol=1e-4)
    np.testing.assert_allclose(image.GetSpacing(), vol.spacing, atol=1e-4)
    np.testing.assert_allclose(np.reshape(image.GetDirection(), (3, 3)), vol.direction, atol=1e-6)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), vol.array)


def test_slice_attributes_follow_dicom_conventions(tmp_path):
    geo = stack_geometry(*AXIAL_HFS, n=4, rows=20, cols=30, pixel_spacing=(0.7, 0.9))
    frames = geo.sample("CT")
    files = write_slices(
        tmp_path,
        frames,
        geo.positions[::-1],
        geo.row_cosine,
        geo.col_cosine,
        geo.pixel_spacing,
        SeriesSpec(),
        gantry_tilt_deg=0.0,
        file_names=["d.dcm", "c.dcm", "b.dcm", "a.dcm"],
        instance_numbers=[7, 5, 9, 1],
        extra=lambda ds, i: setattr(ds, "ImageComments", f"slice {i}"),
    )
    assert [f.name for f in files] == ["d.dcm", "c.dcm", "b.dcm", "a.dcm"]
    ds = pydicom.dcmread(files[0])
    assert (ds.Rows, ds.Columns) == (20, 30)
    assert [float(v) for v in ds.PixelSpacing] == [0.7, 0.9]
    assert [float(v) for v in ds.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]
    np.testing.assert_allclose(
        [float(v) for v in ds.ImagePositionPatient], geo.positions[-1], atol=1e-6
    )
    assert float(ds.SliceLocation) == pytest.approx(geo.positions[-1][2])
    assert float(ds.SliceThickness) == pytest.approx(3.0)
    assert ds.InstanceNumber == 7 and ds.ImageComments == "slice 0"
    assert ds.RescaleType == "HU" and ds.Modality == "CT" and float(ds.KVP) > 0
    assert float(ds.GantryDetectorTilt) == 0.0


def test_enhanced_ct_functional_groups(tmp_path):
    vol = _small_volume()
    path = write_enhanced(
        vol, tmp_path / "E.dcm", SeriesSpec(), rescale_intercept=-1024.0, pixel_representation=0
    )
    ds = pydicom.dcmread(path)
    assert ds.NumberOfFrames == vol.array.shape[0]
    shared = ds.SharedFunctionalGroupsSequence[0]
    iop = [float(v) for v in shared.PlaneOrientationSequence[0].ImageOrientationPatient]
    np.testing.assert_allclose(
        iop, np.concatenate([vol.direction[:, 0], vol.direction[:, 1]]), atol=1e-8
    )
    measures = shared.PixelMeasuresSequence[0]
    assert [float(v) for v in measures.PixelSpacing] == [vol.spacing[1], vol.spacing[0]]
    pvt = shared.PixelValueTransformationSequence[0]
    assert (float(pvt.RescaleIntercept), float(pvt.RescaleSlope), pvt.RescaleType) == (
        -1024.0,
        1.0,
        "HU",
    )
    for k, frame in enumerate(ds.PerFrameFunctionalGroupsSequence):
        ipp = [float(v) for v in frame.PlanePositionSequence[0].ImagePositionPatient]
        np.testing.assert_allclose(ipp, vol.index_to_physical((0, 0, k)), atol=1e-6)
    np.testing.assert_array_equal(ds.pixel_array.astype(float) - 1024.0, vol.array)


def test_enhanced_per_frame_rescale(tmp_path):
    vol = _small_volume()
    slopes = [1.0, 2.0, 1.0, 2.0, 1.0, 2.0]
    path = write_enhanced(
        vol,
        tmp_path / "E.dcm",
        SeriesSpec(),
        rescale_slope=slopes,
        rescale_intercept=-1024.0,
        pixel_representation=0,
    )
    ds = pydicom.dcmread(path)
    assert "PixelValueTransformationSequence" not in ds.SharedFunctionalGroupsSequence[0]
    for k, frame in enumerate(ds.PerFrameFunctionalGroupsSequence):
        pvt = frame.PixelValueTransformationSequence[0]
        real = ds.pixel_array[k] * float(pvt.RescaleSlope) + float(pvt.RescaleIntercept)
        expected = np.rint((vol.array[k] + 1024.0) / slopes[k]) * slopes[k] - 1024.0
        np.testing.assert_array_equal(real, expected)


def test_pet_carries_what_suv_needs(tmp_path):
    spec = SeriesSpec(
        modality="PT",
        patient_weight_kg=81.5,
        radionuclide_total_dose_bq=250e6,
        radiopharmaceutical_start_time="081500",
        series_time="093000",
    )
    vol = _small_volume("PT")
    files = write_volume(vol, tmp_path, spec, rescale_slope=[0.5, 1, 2, 3, 4, 5])
    ds = pydicom.dcmread(files[3])
    assert (ds.Units, ds.DecayCorrection, ds.SeriesTime) == ("BQML", "START", "093000")
    assert float(ds.PatientWeight) == 81.5
    assert float(ds.RescaleSlope) == 3.0 and float(ds.RescaleIntercept) == 0.0
    rp = ds.RadiopharmaceuticalInformationSequence[0]
    assert float(rp.RadionuclideTotalDose) == 250e6
    assert float(rp.RadionuclideHalfLife) == pytest.approx(6586.2)
    assert rp.RadiopharmaceuticalStartTime == "081500"
    assert "DECY" in ds.CorrectedImage and "ATTN" in ds.CorrectedImage
    np.testing.assert_allclose(ds.pixel_array * 3.0, vol.array[3], atol=1.5)


def test_auto_slope_uses_the_stored_range(tmp_path):
    vol = _small_volume("PT")
    vol.array = vol.array * 25.0  # up to ~1.2e6 Bq/ml: far beyond int16
    files = write_volume(vol, tmp_path, SeriesSpec(modality="PT"), rescale_slope="auto")
    for k, f in enumerate(files):
        ds = pydicom.dcmread(f)
        assert int(np.abs(ds.pixel_array).max()) == 32767
        np.testing.assert_allclose(
            ds.pixel_array * float(ds.RescaleSlope), vol.array[k], atol=float(ds.RescaleSlope)
        )


def test_mr_image_module(tmp_path):
    files = write_volume(
        _small_volume("MR"), tmp_path, SeriesSpec(modality="MR"), pixel_representation=0
    )
    ds = pydicom.dcmread(files[0])
    assert ds.SOPClassUID == MR_IMAGE_STORAGE
    for kw in (
        "ScanningSequence",
        "SequenceVariant",
        "MRAcquisitionType",
        "RepetitionTime",
        "EchoTime",
        "EchoTrainLength",
        "MagneticFieldStrength",
        "SpacingBetweenSlices",
    ):
        assert kw in ds, kw
    assert "RescaleSlope" not in ds  # identity rescale: MR IOD has no Modality LUT


@pytest.mark.parametrize(
    "bad",
    [
        {"row_cosine": (1, 0, 0), "col_cosine": (1, 0, 0)},
        {"row_cosine": (2, 0, 0), "col_cosine": (0, 1, 0)},
        {"pixel_spacing": (0.0, 1.0)},
        {"positions": np.zeros((2, 3))},
        {"rescale_slope": [1.0, 2.0]},
    ],
)
def test_invalid_inputs_are_refused(tmp_path, bad):
    args = {
        "frames": np.zeros((3, 8, 8)),
        "positions": np.arange(9.0).reshape(3, 3),
        "row_cosine": (1, 0, 0),
        "col_cosine": (0, 1, 0),
        "pixel_spacing": (1.0, 1.0),
    }
    kw = {}
    if "rescale_slope" in bad:
        kw = bad
    else:
        args.update(bad)
    with pytest.raises(ValueError):
        write_slices(tmp_path, spec=SeriesSpec(), **args, **kw)
