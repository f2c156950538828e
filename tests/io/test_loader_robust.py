"""What scanners and anonymisers really write: blank UIDs, single images, FIFOs, devices,
zero-filled files, big zip archives; scans that report progress and can be cancelled."""

from __future__ import annotations

import os
import shutil
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
from dicom_fixtures import (
    AXIAL_HFS,
    phantom,
    spec_for,
    stack_geometry,
    stored_real_values,
    write_stack,
)

from guideplan.core.errors import CancelledError
from guideplan.io import load_series, scan
from guideplan.io.dicom_headers import FileRef, read_headers
from guideplan.io.file_kinds import plausible_dicom_start


def _blank_uids(files, keep_study: bool = False) -> None:
    for f in files:
        ds = pydicom.dcmread(f)
        ds.SeriesInstanceUID = ""
        ds.SOPInstanceUID = ""
        if not keep_study:
            ds.StudyInstanceUID = ""
        ds.file_meta.MediaStorageSOPInstanceUID = ""
        ds.save_as(f, enforce_file_format=False)


def _truth(series) -> np.ndarray:
    """The real values pydicom decodes from the files, sorted by slice position."""
    values = stored_real_values(series.files)
    normal = np.cross(series.geometry.row_cosine, series.geometry.col_cosine)
    return values[np.argsort(series.geometry.positions @ normal)]


def test_a_series_with_blank_uids_loads_with_a_warning_that_new_uids_were_made(tmp_path):
    ct = write_stack(tmp_path / "anon", "anon_ct", stack_geometry(*AXIAL_HFS, n=8))
    _blank_uids(ct.files)
    report = scan(tmp_path / "anon")
    assert len(report.volumes) == 1, report.to_json()
    info = report.volumes[0]
    assert info.series_uid and info.series_uid != ct.series_uid
    assert info.study_uid
    assert any("blank" in w and "new UIDs" in w for w in info.warnings)
    volume = load_series(tmp_path / "anon")
    assert volume.array.shape[0] == 8
    # Ordered by position, values those of the phantom: the grouping did not shuffle.
    np.testing.assert_array_equal(volume.array, _truth(ct))


def test_blank_uids_are_the_same_when_the_files_are_scanned_again_elsewhere(tmp_path):
    ct = write_stack(tmp_path / "a", "anon_again", stack_geometry(*AXIAL_HFS, n=5))
    _blank_uids(ct.files)
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    assert scan(tmp_path / "a").volumes[0].series_uid == scan(tmp_path / "b").volumes[0].series_uid


def test_two_anonymised_series_of_one_study_are_told_apart_by_what_they_share(tmp_path):
    thick = write_stack(tmp_path / "s" / "thick", "anon_thick", stack_geometry(*AXIAL_HFS, n=6))
    spec = spec_for("anon_thin", series_number=7)
    thin = write_stack(
        tmp_path / "s" / "thin",
        "anon_thin",
        stack_geometry(*AXIAL_HFS, n=10, slice_spacing=1.5, rows=40, cols=50),
        spec=spec,
    )
    _blank_uids(thick.files + thin.files)
    report = scan(tmp_path / "s")
    sizes = sorted(s.n_slices for s in report.volumes)
    assert sizes == [6, 10]
    assert len({s.series_uid for s in report.volumes}) == 2


def test_a_single_ct_image_opens_as_a_one_slice_volume_as_thick_as_its_slice(tmp_path):
    geometry = stack_geometry(*AXIAL_HFS, n=1)
    one = write_stack(tmp_path, "single", geometry, slice_thickness=2.5)
    volume = load_series(tmp_path)
    assert volume.array.shape == (1, geometry.rows, geometry.cols)
    assert volume.spacing[2] == pytest.approx(2.5)
    np.testing.assert_allclose(volume.origin, geometry.positions[0], atol=1e-4)
    np.testing.assert_array_equal(volume.array, _truth(one))
    note = " ".join(volume.meta["warnings"])
    assert "one-slice volume" in note and "registration" in note
    # Voxel (i, j) is the phantom at its LPS point: the in-plane geometry is exact.
    i, j = 20, 30
    lps = volume.index_to_physical((i, j, 0))
    assert abs(volume.array[0, j, i] - phantom(lps[None], "CT")[0]) <= 1


def test_a_single_image_without_slice_thickness_is_1_mm_with_a_warning(tmp_path):
    one = write_stack(tmp_path, "single_nothick", stack_geometry(*AXIAL_HFS, n=1))
    ds = pydicom.dcmread(one.files[0])
    del ds.SliceThickness
    ds.save_as(one.files[0])
    volume = load_series(tmp_path)
    assert volume.spacing[2] == 1.0
    assert any("SliceThickness" in w for w in volume.meta["warnings"])


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="POSIX FIFOs")
def test_a_fifo_and_a_link_to_dev_zero_are_skipped_without_hanging(tmp_path):
    ct = write_stack(tmp_path / "d", "with_fifo", stack_geometry(*AXIAL_HFS, n=4))
    os.mkfifo(tmp_path / "d" / "pipe")
    os.symlink("/dev/zero", tmp_path / "d" / "zero.dcm")
    os.symlink(tmp_path / "nowhere", tmp_path / "d" / "dangling.dcm")
    result: dict = {}
    worker = threading.Thread(target=lambda: result.update(r=scan(tmp_path / "d")), daemon=True)
    worker.start()
    worker.join(20)
    assert not worker.is_alive(), "scan hung on a FIFO or a device"
    report = result["r"]
    reasons = {Path(s.path).name: s.reason for s in report.skipped}
    assert "FIFO" in reasons["pipe"]
    assert "character device" in reasons["zero.dcm"] and "symbolic link" in reasons["zero.dcm"]
    assert "dangling" in reasons["dangling.dcm"]
    assert report.volumes[0].n_slices == 4 == len(ct.files)
    # Given directly, a FIFO is refused too (no open, so no hang).
    assert "FIFO" in read_headers(FileRef(str(tmp_path / "d" / "pipe"))).reason


def test_a_big_zero_filled_file_is_rejected_by_its_first_bytes_quickly(tmp_path):
    big = tmp_path / "zeros.dcm"
    with open(big, "wb") as f:
        f.truncate(64 << 20)
    start = time.perf_counter()
    result = read_headers(FileRef(str(big)))
    assert time.perf_counter() - start < 1.0
    assert result.reason == "not a DICOM file"


def test_the_first_bytes_decide_what_could_be_dicom():
    preamble = b"\0" * 128 + b"DICM" + b"\x02\x00\x00\x00UL\x04\x00"
    assert plausible_dicom_start(preamble)
    # No preamble: (0008,0005) CS explicit, or (0008,0016) implicit with a short length.
    assert plausible_dicom_start(b"\x08\x00\x05\x00CS\x0a\x00ISO_IR 100")
    assert plausible_dicom_start(b"\x08\x00\x16\x00\x1a\x00\x00\x001.2.840.10008.5.1.4.1.1.2")
    assert not plausible_dicom_start(b"\0" * 200)
    assert not plausible_dicom_start(b"%PDF-1.7\n" + b"x" * 200)
    assert not plausible_dicom_start(b"\x89PNG\r\n\x1a\n" + b"\0" * 200)


def test_a_forced_parse_reads_a_bounded_number_of_bytes(tmp_path):
    # A plausible first element, then megabytes of tiny elements: pydicom would walk them
    # all (about 0.5 s/MB); the bound stops it.
    junk = tmp_path / "junk"
    element = b"\x08\x00\x16\x00\x00\x00\x00\x00"  # (0008,0016), implicit, length 0
    junk.write_bytes(element * ((32 << 20) // len(element)))
    start = time.perf_counter()
    result = read_headers(FileRef(str(junk)))
    elapsed = time.perf_counter() - start
    assert elapsed < 8.0
    assert "MiB" in result.reason or result.reason == "not a DICOM file"


def test_a_zip_with_thousands_of_members_is_opened_once(tmp_path, monkeypatch):
    ct = write_stack(tmp_path / "z", "zip_many", stack_geometry(*AXIAL_HFS, n=3))
    archive = tmp_path / "many.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for f in ct.files:
            zf.write(f, f"ct/{f.name}")
        for n in range(3000):
            zf.writestr(f"junk/{n:05d}.txt", b"not dicom")
    opened = []
    real = zipfile.ZipFile.__init__

    def counting(self, *a, **kw):
        opened.append(a[0] if a else kw.get("file"))
        real(self, *a, **kw)

    monkeypatch.setattr(zipfile.ZipFile, "__init__", counting)
    start = time.perf_counter()
    report = scan(archive)
    elapsed = time.perf_counter() - start
    assert report.volumes[0].n_slices == 3
    assert len(report.skipped) == 3000
    assert len(opened) <= 2, opened  # is_zipfile does not construct one; scan once
    assert elapsed < 10
    volume = load_series(report)
    np.testing.assert_array_equal(volume.array, _truth(ct))


def test_zip_members_are_streamed_not_read_whole(tmp_path, monkeypatch):
    ct = write_stack(tmp_path / "z", "zip_stream", stack_geometry(*AXIAL_HFS, n=3))
    archive = tmp_path / "s.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for f in ct.files:
            zf.write(f, f.name)

    def refuse(*a, **kw):
        raise AssertionError("a zip member was read whole")

    monkeypatch.setattr(zipfile.ZipFile, "read", refuse)
    volume = load_series(archive)
    np.testing.assert_array_equal(volume.array, _truth(ct))


def test_a_scan_reports_progress_and_stops_when_cancelled(tmp_path):
    write_stack(tmp_path, "progress", stack_geometry(*AXIAL_HFS, n=40))
    seen: list[float] = []
    scan(tmp_path, progress=lambda f, msg: seen.append(f))
    assert seen and seen[-1] == 1.0 and seen == sorted(seen)
    stop = threading.Event()
    stop.set()
    with pytest.raises(CancelledError):
        scan(tmp_path, cancel=stop)


def test_parallel_cosines_are_reported_not_loaded(tmp_path):
    ct = write_stack(tmp_path, "bad_iop", stack_geometry(*AXIAL_HFS, n=4))
    for f in ct.files:
        ds = pydicom.dcmread(f)
        ds.ImageOrientationPatient = [1, 0, 0, 1, 0, 0]
        ds.save_as(f)
    info = scan(tmp_path).series[0]
    assert not info.can_load and "ImageOrientationPatient" in info.error
