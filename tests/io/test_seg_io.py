"""Label maps in and out: DICOM SEG round trip (and read back independently by highdicom
and pydicom), RTSTRUCT rasterisation, .nrrd / .nii.gz geometry."""

from __future__ import annotations

import shutil
import subprocess

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from guideplan.core.geometry import euler_matrix
from guideplan.core.volume import Volume
from guideplan.io import load_series
from guideplan.io.dicom_write import SeriesSpec, write_volume
from guideplan.io.seg_io import (
    SegmentationFileError,
    labels_from_masks,
    polygon_mask,
    read_labelmap,
    read_rtstruct,
    read_seg,
    write_labelmap,
    write_seg,
)


def _ct(folder, direction=None, name="seg") -> Volume:
    """A small CT series on disk, loaded back (so it has its DICOM metadata)."""
    direction = np.eye(3) if direction is None else direction
    k, j, i = np.mgrid[:12, :20, :24]
    array = (40 + 3 * i - 2 * j + 5 * k).astype(np.int16)
    vol = Volume(array, (0.9, 0.8, 2.0), (-10.0, 5.0, 30.0), direction)
    write_volume(
        vol,
        folder,
        SeriesSpec(modality="CT", seed=f"guideplan-seg-{name}"),
        rescale_intercept=-1024.0,
        pixel_representation=0,
        bits_stored=12,
    )
    return load_series(folder)


def _labels(shape) -> np.ndarray:
    labels = np.zeros(shape, dtype=np.uint8)
    labels[3:7, 5:12, 6:15] = 3  # trabecular bone
    labels[4:6, 7:10, 8:12] = 1  # lesion inside it
    labels[9, 2:4, 20:23] = 4  # canal, a small piece on one slice
    return labels


@pytest.mark.parametrize("oblique", [False, True], ids=["axial", "oblique"])
def test_seg_round_trip_keeps_values_and_geometry(tmp_path, oblique):
    direction = euler_matrix(0.2, -0.1, 0.3) if oblique else np.eye(3)
    ct = _ct(tmp_path / "ct", direction, name=str(oblique))
    labels = _labels(ct.array.shape)
    path = write_seg(tmp_path / "seg.dcm", labels, ct)
    back = read_seg(path, ct)
    np.testing.assert_array_equal(back.labels, labels)
    assert back.names == {1: "lesion", 3: "trabecular bone", 4: "spinal canal"}
    assert back.notes == []


def test_seg_read_back_independently(tmp_path):
    ct = _ct(tmp_path / "ct")
    labels = _labels(ct.array.shape)
    path = write_seg(tmp_path / "seg.dcm", labels, ct)
    # pydicom: a valid SEG of the CT's patient/study/frame of reference
    ds = pydicom.dcmread(path)
    src = pydicom.dcmread(next((tmp_path / "ct").iterdir()))
    assert ds.Modality == "SEG" and ds.SegmentationType == "BINARY"
    assert ds.FrameOfReferenceUID == src.FrameOfReferenceUID
    assert ds.StudyInstanceUID == src.StudyInstanceUID and ds.PatientID == src.PatientID
    assert [s.SegmentLabel for s in ds.SegmentSequence] == [
        "lesion",
        "trabecular bone",
        "spinal canal",
    ]
    lesion = ds.SegmentSequence[0]
    assert lesion.SegmentedPropertyTypeCodeSequence[0].CodeValue == "14799000"
    # highdicom: the segment masks, placed by its own geometry, equal ours
    seg = hd.seg.segread(path)
    volume = seg.get_volume(combine_segments=False)
    affine = volume.affine  # voxel (a, b, c) of its array -> LPS
    for number, value in ((1, 1), (2, 3), (3, 4)):
        theirs = volume.array[..., number - 1] > 0
        idx = np.argwhere(theirs)
        lps = idx @ affine[:3, :3].T + affine[:3, 3]
        ours = np.rint(ct.physical_to_index(lps)).astype(int)[:, ::-1]
        expected = np.argwhere(labels == value)
        assert sorted(map(tuple, ours)) == sorted(map(tuple, expected))


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy (dicom3tools) missing")
def test_seg_passes_dciodvfy(tmp_path):
    """David Clunie's validator, an independent reading of the standard: no errors and
    no warnings for our SEG."""
    ct = _ct(tmp_path / "ct")
    path = write_seg(tmp_path / "seg.dcm", _labels(ct.array.shape), ct)
    result = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
    report = result.stdout + result.stderr
    assert "Error" not in report and "Warning" not in report, report


def test_seg_of_another_scan_is_refused(tmp_path):
    ct = _ct(tmp_path / "ct")
    other = _ct(tmp_path / "other", name="other")
    path = write_seg(tmp_path / "seg.dcm", _labels(ct.array.shape), ct)
    with pytest.raises(SegmentationFileError, match="another scan"):
        read_seg(path, other)


def test_empty_label_map_is_not_exported(tmp_path):
    ct = _ct(tmp_path / "ct")
    with pytest.raises(SegmentationFileError, match="empty"):
        write_seg(tmp_path / "seg.dcm", np.zeros(ct.array.shape, np.uint8), ct)


def test_polygon_rasterisation_even_odd():
    square = np.array([[2.0, 2.0], [12.0, 2.0], [12.0, 9.0], [2.0, 9.0]])
    mask = polygon_mask(square, (15, 20))
    assert np.count_nonzero(mask) == 10 * 7  # i 2..11, j 2..8: centres inside
    triangle = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    assert np.count_nonzero(polygon_mask(triangle, (20, 20))) == pytest.approx(50, abs=8)


def _rtstruct(ct: Volume, folder, contours: dict[str, list[np.ndarray]]) -> str:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.481.3"
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "RTSTRUCT"
    frame = Dataset()
    frame.FrameOfReferenceUID = ct.meta["frame_of_reference_uid"]
    ds.ReferencedFrameOfReferenceSequence = DicomSequence([frame])
    rois, roi_contours = [], []
    for number, (name, polys) in enumerate(contours.items(), start=1):
        roi = Dataset()
        roi.ROINumber, roi.ROIName = number, name
        rois.append(roi)
        rc = Dataset()
        rc.ReferencedROINumber = number
        items = []
        for poly in polys:
            c = Dataset()
            c.ContourGeometricType = "CLOSED_PLANAR"
            c.NumberOfContourPoints = len(poly)
            c.ContourData = [f"{v:.4f}" for v in poly.ravel()]
            items.append(c)
        rc.ContourSequence = DicomSequence(items)
        roi_contours.append(rc)
    ds.StructureSetROISequence = DicomSequence(rois)
    ds.ROIContourSequence = DicomSequence(roi_contours)
    path = str(folder / "rtstruct.dcm")
    ds.save_as(path, enforce_file_format=True)
    return path


def test_rtstruct_contours_fill_their_slices(tmp_path):
    ct = _ct(tmp_path / "ct")

    def ring(k, i0, i1, j0, j1):
        ijk = np.array([[i0, j0, k], [i1, j0, k], [i1, j1, k], [i0, j1, k]], dtype=float)
        return ct.index_to_physical(ijk)

    path = _rtstruct(
        ct,
        tmp_path,
        {
            "Lesion": [ring(4, 4.5, 14.5, 3.5, 11.5), ring(4, 7.5, 10.5, 6.5, 8.5)],  # with hole
            "Aorta": [ring(6, 1.5, 3.5, 1.5, 3.5)],
        },
    )
    masks = read_rtstruct(path, ct)
    lesion = masks["Lesion"]
    assert np.flatnonzero(lesion.any(axis=(1, 2))).tolist() == [4]
    assert np.count_nonzero(lesion) == 10 * 8 - 3 * 2
    assert not lesion[4, 7, 9]  # the hole
    labels, names = labels_from_masks(masks)
    assert names == {1: "Lesion", 9: "Aorta"}  # names matched to the label table
    assert np.count_nonzero(labels == 9) == 4
    only = read_rtstruct(path, ct, names=["aorta"])
    assert list(only) == ["Aorta"]


@pytest.mark.parametrize("suffix", [".nrrd", ".nii.gz"])
def test_nrrd_and_nifti_keep_the_lps_geometry(tmp_path, suffix):
    direction = euler_matrix(0.1, 0.2, -0.3)
    ref = Volume(np.zeros((6, 7, 8), np.int16), (0.7, 0.8, 1.5), (3.0, -4.0, 5.0), direction)
    labels = np.zeros(ref.array.shape, dtype=np.uint8)
    labels[1, 2, 3] = 5
    path = write_labelmap(tmp_path / f"mask{suffix}", labels, ref)
    back = read_labelmap(path, ref)
    assert back.same_grid(ref)
    np.testing.assert_array_equal(back.array, labels)
    assert np.allclose(back.index_to_physical((3, 2, 1)), ref.index_to_physical((3, 2, 1)))


def test_label_image_on_another_grid_is_resampled(tmp_path):
    fine = Volume(np.zeros((10, 10, 10), np.int16), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    labels = np.zeros(fine.array.shape, np.uint8)
    labels[2:8, 2:8, 2:8] = 1
    path = write_labelmap(tmp_path / "fine.nrrd", labels, fine)
    coarse = Volume(np.zeros((5, 5, 5), np.int16), (2.0, 2.0, 2.0), (0.5, 0.5, 0.5))
    back = read_labelmap(path, coarse)
    assert back.same_grid(coarse) and back.meta.get("resampled")
    assert set(np.unique(back.array)) == {0, 1}
    assert np.count_nonzero(back.array) == 27
