"""scan(): finding series in nested folders, zips and DICOMDIR file-sets; the CLI's JSON."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest
from dicom_fixtures import (
    AXIAL_HFS,
    CENTER,
    N_SLICES,
    SAGITTAL,
    copy_files,
    spec_for,
    stack_geometry,
    write_dicomdir,
    write_enhanced_case,
    write_localizer,
    write_stack,
    zip_folder,
)

from guideplan.io import load_series, scan

REPO = Path(__file__).resolve().parents[2]
SERIES_JSON_KEYS = {
    "series_uid",
    "modality",
    "description",
    "n_slices",
    "size",
    "spacing",
    "origin",
    "direction",
    "warnings",
}


@pytest.fixture(scope="module")
def nested_tree(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Two studies, three series, nested folders, plus files that are not DICOM."""
    root = tmp_path_factory.mktemp("nested")
    ct = write_stack(root / "PAT1" / "STUDY1" / "SER1", "nested_ct", stack_geometry(*AXIAL_HFS))
    thin = write_stack(
        root / "PAT1" / "STUDY1" / "deeper" / "SER2",
        "nested_ct_thin",
        stack_geometry(*AXIAL_HFS, n=20, slice_spacing=1.5),
        spec=dataclasses.replace(ct.spec, series_number=2, series_description="thin"),
    )
    mr = write_stack(
        root / "PAT1" / "STUDY2" / "SER1",
        "nested_mr",
        stack_geometry(*SAGITTAL, n=24),
        modality="MR",
        spec=spec_for("nested_mr", "MR", study_description="second study"),
    )
    (root / "README.txt").write_text("Exported by a PACS.\n")
    (root / "PAT1" / "photo.jpg").write_bytes(np.random.default_rng(3).bytes(4096))
    return {"root": root, "ct": ct, "thin": thin, "mr": mr, "junk": {"README.txt", "photo.jpg"}}


def _by_uid(report) -> dict:
    return {s.series_uid: s for s in report.series}


def test_nested_folders_two_studies_three_series(nested_tree):
    report = scan(nested_tree["root"])
    series = _by_uid(report)
    expected = {nested_tree[k].series_uid: nested_tree[k] for k in ("ct", "thin", "mr")}
    assert set(series) == set(expected)
    assert len({s.study_uid for s in report.series}) == 2
    for uid, written in expected.items():
        info = series[uid]
        assert info.n_slices == len(written.files)
        assert len(info.files) == len(written.files)
        assert info.modality == written.modality
        assert not info.is_localizer
    skipped = {Path(s.path).name: s.reason for s in report.skipped}
    assert nested_tree["junk"] <= set(skipped)
    assert all(len(skipped[name]) > 5 for name in nested_tree["junk"])


def test_series_info_geometry(nested_tree):
    info = _by_uid(scan(nested_tree["root"]))[nested_tree["ct"].series_uid]
    geo = stack_geometry(*AXIAL_HFS)
    assert tuple(info.size) == (64, 56, N_SLICES)
    np.testing.assert_allclose(info.spacing, (2.6, 2.4, 3.0), atol=1e-4)
    np.testing.assert_allclose(info.origin, geo.positions[0], atol=1e-4)
    np.testing.assert_allclose(np.asarray(info.direction), np.eye(3), atol=1e-6)
    assert info.series_number == 1
    assert info.description == "nested_ct"
    assert (
        info.frame_of_reference_uid
        == pydicom.dcmread(nested_tree["ct"].files[0], stop_before_pixels=True).FrameOfReferenceUID
    )


def test_report_to_json(nested_tree):
    data = scan(nested_tree["root"]).to_json()
    json.dumps(data)  # plain JSON types only
    assert set(data) >= {"series", "skipped"}
    for entry in data["series"]:
        assert set(entry) >= SERIES_JSON_KEYS
        assert len(entry["direction"]) == 9
        assert len(entry["size"]) == 3 and len(entry["spacing"]) == 3
        assert len(entry["origin"]) == 3
    for entry in data["skipped"]:
        assert set(entry) >= {"path", "reason"}


def test_load_one_series_of_many_by_uid(nested_tree):
    mr = nested_tree["mr"]
    vol = load_series(nested_tree["root"], series_uid=mr.series_uid)
    assert vol.meta["modality"] == "MR"
    assert vol.size == (64, 56, 24)


# -- localizers ---------------------------------------------------------------------------


def test_localizer_series_is_not_a_volume(tmp_path):
    ct = write_stack(tmp_path, "with_scout", stack_geometry(*AXIAL_HFS))
    scout = write_localizer(tmp_path, ct.spec)
    report = scan(tmp_path)
    volumes = [s for s in report.series if not s.is_localizer]
    assert [s.series_uid for s in volumes] == [ct.series_uid]
    for s in report.series:
        if s.series_uid == scout.series_uid:
            assert s.is_localizer
    vol = load_series(tmp_path)  # the scout is no candidate: the CT is the only volume
    assert vol.meta["series_uid"] == ct.series_uid
    assert vol.size == (64, 56, N_SLICES)
    assert load_series(tmp_path, series_uid=ct.series_uid).size == (64, 56, N_SLICES)


def test_localizer_images_inside_the_ct_series_are_left_out(tmp_path):
    """Some scanners put the scouts in the CT's own series: they must not break the stack."""
    clean = write_stack(tmp_path / "clean", "scout_inside", stack_geometry(*AXIAL_HFS))
    mixed = tmp_path / "mixed"
    copy_files(clean.files, mixed)
    write_localizer(mixed, clean.spec, series_uid=clean.series_uid, n=3)
    reference = load_series(clean.folder)
    vol = load_series(mixed)
    assert vol.same_grid(reference)
    np.testing.assert_array_equal(vol.array, reference.array)
    # the scouts may be listed apart (flagged is_localizer) but never inside the volume
    volumes = [
        s for s in scan(mixed).series if s.series_uid == clean.series_uid and not s.is_localizer
    ]
    assert [s.n_slices for s in volumes] == [N_SLICES]


# -- containers ----------------------------------------------------------------------------


def test_zip_archive(dicom_case, tmp_path):
    s = dicom_case("axial_hfs")
    archive = zip_folder(s.folder, tmp_path / "export.zip")
    report = scan(archive)
    assert [info.series_uid for info in report.series] == [s.series_uid]
    assert report.series[0].n_slices == N_SLICES
    vol, reference = load_series(archive), load_series(s.folder)
    assert vol.same_grid(reference)
    np.testing.assert_array_equal(vol.array, reference.array)


def test_folder_with_dicomdir(dicom_case, tmp_path):
    s = dicom_case("shuffled")
    root = tmp_path / "cd"
    dicomdir = write_dicomdir(s.files, root)
    assert dicomdir.exists()
    report = scan(root)
    assert [info.series_uid for info in report.series] == [s.series_uid]
    assert report.series[0].n_slices == N_SLICES
    vol, reference = load_series(root), load_series(s.folder)
    assert vol.same_grid(reference)
    np.testing.assert_array_equal(vol.array, reference.array)


def test_single_enhanced_file(tmp_path):
    path, truth = write_enhanced_case(tmp_path, "scan_enhanced", "CT")
    report = scan(path)
    assert len(report.series) == 1
    info = report.series[0]
    assert info.n_slices == truth.array.shape[0]
    assert tuple(info.size) == truth.size
    np.testing.assert_allclose(info.origin, truth.origin, atol=1e-4)
    np.testing.assert_allclose(np.asarray(info.direction), truth.direction, atol=1e-6)


def test_scan_never_stops_on_bad_files(tmp_path):
    s = write_stack(tmp_path, "scan_bad", stack_geometry(*AXIAL_HFS, n=8))
    s.files[1].write_bytes(s.files[1].read_bytes()[:-2000])  # truncated pixel data
    s.files[2].write_bytes(s.files[2].read_bytes()[:300])  # cut inside the header
    (tmp_path / "empty.dcm").write_bytes(b"")
    report = scan(tmp_path)
    assert [info.series_uid for info in report.series] == [s.series_uid]
    reported = {Path(sk.path).name for sk in report.skipped}
    warned = " ".join(w for info in report.series for w in info.warnings)
    for name in ("IM00002.dcm", "IM00003.dcm", "empty.dcm"):
        assert name in reported or name in warned


def test_scan_of_text_only_folder(tmp_path):
    """Either a NotDicomError, or an empty report that lists every file as skipped."""
    from guideplan.core.errors import NotDicomError

    for name in ("a.txt", "b.txt"):
        (tmp_path / name).write_text("hello\n")
    try:
        report = scan(tmp_path)
    except NotDicomError as err:
        assert len(str(err)) > 20
        return
    assert report.series == []
    assert {Path(sk.path).name for sk in report.skipped} == {"a.txt", "b.txt"}


# -- CLI -----------------------------------------------------------------------------------


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run(
        [sys.executable, "-m", "guideplan.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
        env=env,
    )


def test_cli_scan_json(nested_tree):
    res = _cli("scan", str(nested_tree["root"]), "--json")
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert {e["series_uid"] for e in data["series"]} == {
        nested_tree[k].series_uid for k in ("ct", "thin", "mr")
    }
    for entry in data["series"]:
        assert set(entry) >= SERIES_JSON_KEYS
        assert len(entry["direction"]) == 9
    assert nested_tree["junk"] <= {Path(e["path"]).name for e in data["skipped"]}
    ct = next(e for e in data["series"] if e["series_uid"] == nested_tree["ct"].series_uid)
    assert ct["n_slices"] == N_SLICES and ct["modality"] == "CT"
    np.testing.assert_allclose(ct["origin"], stack_geometry(*AXIAL_HFS).positions[0], atol=1e-3)
    assert np.linalg.norm(np.asarray(ct["origin"]) - CENTER) > 1  # a corner, not the centre


def test_cli_reports_errors_without_traceback(tmp_path):
    res = _cli("scan", str(tmp_path / "does-not-exist"), "--json")
    assert res.returncode != 0
    assert "Traceback" not in res.stderr
    assert len((res.stderr + res.stdout).strip()) > 20
