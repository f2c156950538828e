"""The case folder on disk: payload formats, atomic saves, refusal of foreign/newer cases."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from guideplan.core.errors import CaseFileError
from guideplan.core.geometry import rigid_matrix
from guideplan.core.volume import Volume
from guideplan.io import case_file
from guideplan.io.case_file import (
    ArrayPayload,
    ImagePayload,
    TransformPayload,
    read_case,
    write_case,
)

DIRECTION = rigid_matrix((0.0, 0.0, 30.0), (0, 0, 0))[:3, :3]
MATRIX = rigid_matrix((3.0, -7.0, 12.0), (10.5, -4.4, 2.2), (5, 6, 7))
GRID = Volume(np.zeros((4, 6, 5), np.int16), (0.7, 0.8, 2.5), (10.0, -20.0, 30.0), DIRECTION)


def _labels(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 3, size=GRID.array.shape).astype(np.uint8)


def _payloads(seed: int = 0) -> dict:
    return {
        "lesion/labels": ImagePayload.on_grid_of(_labels(seed), GRID),
        "mask": ImagePayload.on_grid_of(_labels(seed + 1) > 0, GRID),
        "reg/matrix": TransformPayload(MATRIX),
        "curve": ArrayPayload(np.linspace(0.0, 1.0, 7)),
    }


def _files(case: Path) -> dict[str, bytes]:
    files = sorted(p for p in case.rglob("*") if p.is_file())
    return {p.relative_to(case).as_posix(): p.read_bytes() for p in files}


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    case = tmp_path / "plan.gplan"
    write_case(case, {"info": {"patient": "ANON"}, "nodes": [1, 2]}, _payloads())
    return case


# -- round trip -------------------------------------------------------------------------
def test_round_trip_header_document_and_payloads(saved: Path):
    doc, payloads = read_case(saved)
    assert doc["format"] == "guideplan-case"
    assert doc["schema_version"] == case_file.SCHEMA_VERSION
    assert doc["app_version"] and doc["saved_at"].endswith("+00:00")
    assert doc["info"] == {"patient": "ANON"} and doc["nodes"] == [1, 2]
    assert "payloads" not in doc
    assert sorted(payloads) == sorted(_payloads())

    labels = payloads.load("lesion/labels")
    assert isinstance(labels, Volume) and labels.same_grid(GRID, tol=1e-9)
    assert labels.array.dtype == np.uint8 and np.array_equal(labels.array, _labels(0))
    mask = payloads.load("mask")
    assert mask.array.dtype == bool and np.array_equal(mask.array, _labels(1) > 0)
    np.testing.assert_allclose(
        payloads.load("reg/matrix"), _payloads()["reg/matrix"].matrix, atol=1e-12
    )
    np.testing.assert_array_equal(payloads.load("curve"), np.linspace(0.0, 1.0, 7))
    assert payloads.kind("reg/matrix") == "transform"


def test_case_json_path_opens_the_case_too(saved: Path):
    doc, _ = read_case(saved / "case.json")
    assert doc["nodes"] == [1, 2]
    assert case_file.is_case(saved) and case_file.read_header(saved)["schema_version"] == 1


def test_label_maps_are_compressed_nrrd_with_the_reference_geometry(saved: Path):
    entry = json.loads((saved / "case.json").read_text())["payloads"]["lesion/labels"]
    assert entry["file"].startswith("data/") and entry["file"].endswith(".nrrd")
    header = (saved / entry["file"]).read_bytes().split(b"\n\n")[0].decode()
    assert "encoding: gzip" in header
    image = sitk.ReadImage(str(saved / entry["file"]))  # any ITK tool reads it the same way
    assert image.GetOrigin() == pytest.approx(GRID.origin)
    assert image.GetSpacing() == pytest.approx(GRID.spacing)
    assert image.GetDirection() == pytest.approx(tuple(DIRECTION.ravel()))


def test_tfm_maps_fixed_points_to_moving_points(saved: Path):
    """ITK .tfm is the fixed -> moving transform: exactly TransformNode.matrix, not its inverse."""
    entry = json.loads((saved / "case.json").read_text())["payloads"]["reg/matrix"]
    tx = sitk.ReadTransform(str(saved / entry["file"]))
    assert tx.GetName() == "AffineTransform"
    m = _payloads()["reg/matrix"].matrix
    p = np.array([12.0, -30.0, 45.0])
    np.testing.assert_allclose(tx.TransformPoint(tuple(p)), m[:3, :3] @ p + m[:3, 3], atol=1e-9)


def test_tfm_with_a_center_is_read_as_the_same_affine(tmp_path: Path):
    write_case(tmp_path / "c.gplan", {}, {"t": TransformPayload(np.eye(4))})
    entry = json.loads((tmp_path / "c.gplan" / "case.json").read_text())["payloads"]["t"]
    euler = sitk.Euler3DTransform((5.0, 6.0, 7.0), 0.1, -0.2, 0.3, (1.0, 2.0, 3.0))
    sitk.WriteTransform(euler, str(tmp_path / "c.gplan" / entry["file"]))  # another tool's file
    doc = json.loads((tmp_path / "c.gplan" / "case.json").read_text())
    del doc["payloads"]["t"]["file_digest"]  # (its case.json has no digest of the new bytes)
    _corrupt(tmp_path / "c.gplan", json.dumps(doc))
    m = read_case(tmp_path / "c.gplan")[1].load("t")
    p = (3.0, -4.0, 5.0)
    np.testing.assert_allclose(m[:3, :3] @ p + m[:3, 3], euler.TransformPoint(p), atol=1e-12)


def test_unchanged_payloads_are_not_rewritten_and_stale_ones_are_deleted(saved: Path):
    before = json.loads((saved / "case.json").read_text())["payloads"]
    changed = _payloads()
    changed["lesion/labels"] = ImagePayload.on_grid_of(_labels(7), GRID)
    del changed["curve"]
    write_case(saved, {"nodes": []}, changed)
    after = json.loads((saved / "case.json").read_text())["payloads"]
    assert after["reg/matrix"]["file"] == before["reg/matrix"]["file"]
    assert after["mask"]["file"] == before["mask"]["file"]
    assert after["lesion/labels"]["file"] != before["lesion/labels"]["file"]
    on_disk = {p.name for p in (saved / "data").iterdir()}
    assert on_disk == {Path(e["file"]).name for e in after.values()}
    assert np.array_equal(read_case(saved)[1].load("lesion/labels").array, _labels(7))


def test_files_users_put_in_the_folder_are_never_deleted(saved: Path):
    (saved / "data" / "notes.txt").write_text("mine")
    (saved / "README").write_text("mine too")
    write_case(saved, {}, {})
    assert (saved / "data" / "notes.txt").exists() and (saved / "README").exists()
    assert not [p for p in (saved / "data").iterdir() if p.suffix in (".nrrd", ".tfm", ".npy")]


def test_bad_payloads_are_refused_before_anything_is_written(tmp_path: Path):
    with pytest.raises(ValueError, match="4x4"):
        write_case(tmp_path / "c.gplan", {}, {"t": TransformPayload(np.ones((4, 4)))})
    with pytest.raises(ValueError, match="3D"):
        write_case(tmp_path / "d.gplan", {}, {"i": ImagePayload(np.zeros((3, 3)))})


# -- atomicity --------------------------------------------------------------------------
def _fail_on(monkeypatch, predicate) -> None:
    real = os.replace

    def replace(src, dst, *a, **kw):
        if predicate(Path(src), Path(dst)):
            raise OSError(28, "No space left on device (simulated)")
        return real(src, dst, *a, **kw)

    monkeypatch.setattr(case_file.os, "replace", replace)


def test_failure_at_the_commit_point_keeps_the_old_case(saved: Path, monkeypatch):
    old = _files(saved)
    _fail_on(monkeypatch, lambda src, dst: dst.name == "case.json")
    with pytest.raises(OSError, match="simulated"):
        write_case(saved, {"nodes": ["new"]}, _payloads(seed=5))
    assert _files(saved) == old  # new payloads and the temp case.json were removed
    doc, payloads = read_case(saved)
    assert doc["nodes"] == [1, 2]
    assert np.array_equal(payloads.load("lesion/labels").array, _labels(0))


def test_failure_while_writing_payloads_keeps_the_old_case(saved: Path, monkeypatch):
    old = _files(saved)
    _fail_on(monkeypatch, lambda src, dst: dst.name.startswith("mask."))  # 2nd new file
    with pytest.raises(OSError):
        write_case(saved, {"nodes": ["new"]}, _payloads(seed=5))
    assert _files(saved) == old


def test_hard_crash_leftovers_are_harmless_and_collected(saved: Path, monkeypatch):
    """A real crash runs no cleanup: leftovers must not spoil the old case or the next save."""
    monkeypatch.setattr(case_file, "_unlink_quietly", lambda p: None)
    _fail_on(monkeypatch, lambda src, dst: dst.name == "case.json")
    with pytest.raises(OSError):
        write_case(saved, {"nodes": ["new"]}, _payloads(seed=5))
    monkeypatch.undo()
    assert len(list((saved / "data").iterdir())) > 4  # orphans of the crashed save
    assert read_case(saved)[0]["nodes"] == [1, 2]
    write_case(saved, {"nodes": ["again"]}, _payloads(seed=6))
    table = json.loads((saved / "case.json").read_text())["payloads"]
    referenced = {Path(e["file"]).name for e in table.values()}
    assert {p.name for p in (saved / "data").iterdir()} == referenced
    assert not [p for p in saved.iterdir() if p.name.startswith(".tmp.")]


def test_a_first_save_that_crashed_does_not_block_the_next(tmp_path: Path, monkeypatch):
    case = tmp_path / "new.gplan"
    monkeypatch.setattr(case_file, "_unlink_quietly", lambda p: None)
    _fail_on(monkeypatch, lambda src, dst: dst.name == "case.json")
    with pytest.raises(OSError):
        write_case(case, {}, _payloads())
    monkeypatch.undo()
    with pytest.raises(CaseFileError, match=r"no case\.json"):
        read_case(case)
    write_case(case, {"nodes": []}, _payloads())
    assert read_case(case)[0]["nodes"] == []


# -- refusing what is not ours ----------------------------------------------------------
def _corrupt(case: Path, text: str) -> None:
    (case / "case.json").write_text(text)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ('{"format": "guideplan-case", "schema_version": 1, "nodes": [', "not valid JSON"),
        ('{"format": "slicer-scene", "schema_version": 1}', "not a guideplan case"),
        ("[1, 2, 3]", "not a guideplan case"),
        ('{"format": "guideplan-case", "schema_version": "one"}', "schema_version"),
        ('{"format": "guideplan-case", "schema_version": 99, "app_version": "9.0"}', "newer"),
    ],
    ids=["broken-json", "foreign", "not-an-object", "bad-version", "newer"],
)
def test_broken_foreign_or_newer_cases_are_refused_and_left_untouched(saved, text, match):
    _corrupt(saved, text)
    before = _files(saved)
    with pytest.raises(CaseFileError, match=match) as err:
        read_case(saved)
    assert err.value.hint  # says what to do
    with pytest.raises(CaseFileError, match="Will not overwrite"):
        write_case(saved, {"nodes": []}, _payloads(seed=3))
    assert _files(saved) == before


def test_newer_case_message_names_both_versions(saved: Path):
    _corrupt(saved, '{"format": "guideplan-case", "schema_version": 2, "app_version": "3.1"}')
    with pytest.raises(CaseFileError) as err:
        read_case(saved)
    assert "3.1" in str(err.value) and "Update guideplan" in str(err.value)


def test_overwrite_foreign_replaces_it(saved: Path):
    _corrupt(saved, "garbage")
    write_case(saved, {"nodes": ["mine"]}, _payloads(), overwrite_foreign=True)
    assert read_case(saved)[0]["nodes"] == ["mine"]


def test_missing_payload_is_reported_when_opening(saved: Path):
    entry = json.loads((saved / "case.json").read_text())["payloads"]["lesion/labels"]
    (saved / entry["file"]).unlink()
    with pytest.raises(CaseFileError, match="missing") as err:
        read_case(saved)
    assert entry["file"] in str(err.value)


def test_damaged_payload_of_a_case_without_file_digests_is_reported_when_loaded(saved: Path):
    doc = json.loads((saved / "case.json").read_text())
    for e in doc["payloads"].values():
        del e["file_digest"]  # as saved before file digests existed
    _corrupt(saved, json.dumps(doc))
    entry = doc["payloads"]["lesion/labels"]
    (saved / entry["file"]).write_bytes(b"NRRD0004\nnonsense\n")
    _, payloads = read_case(saved)
    with pytest.raises(CaseFileError, match="damaged"):
        payloads.load("lesion/labels")


def test_payload_paths_outside_the_data_folder_are_refused(saved: Path):
    doc = json.loads((saved / "case.json").read_text())
    doc["payloads"]["curve"]["file"] = "../../etc/passwd"
    _corrupt(saved, json.dumps(doc))
    with pytest.raises(CaseFileError, match="outside"):
        read_case(saved)


def test_saving_into_a_folder_of_other_files_is_refused(tmp_path: Path):
    folder = tmp_path / "Documents"
    folder.mkdir()
    (folder / "thesis.docx").write_text("precious")
    with pytest.raises(CaseFileError, match="other files"):
        write_case(folder, {}, {})
    (tmp_path / "file.gplan").write_text("x")
    with pytest.raises(CaseFileError, match="a file of that name"):
        write_case(tmp_path / "file.gplan", {}, {}, overwrite_foreign=True)
    empty = tmp_path / "empty.gplan"
    empty.mkdir()
    write_case(empty, {}, {})  # an empty folder is fine
    assert case_file.is_case(empty)


def test_missing_case_is_a_clear_error(tmp_path: Path):
    with pytest.raises(CaseFileError, match="does not exist"):
        read_case(tmp_path / "nope.gplan")
    assert not case_file.is_case(tmp_path / "nope.gplan")


# -- DICOM references -------------------------------------------------------------------
def test_dicom_reference_is_relative_with_an_absolute_fallback(tmp_path: Path):
    dicom = tmp_path / "study" / "ct"
    dicom.mkdir(parents=True)
    case = tmp_path / "cases" / "a.gplan"
    ref = case_file.dicom_reference(dicom, case, "1.2.3", "1.2", "1.2.9")
    assert ref["path"] == "../../study/ct"
    assert ref["abs_path"] == str(dicom)
    assert (ref["series_uid"], ref["study_uid"], ref["frame_of_reference_uid"]) == (
        "1.2.3",
        "1.2",
        "1.2.9",
    )
    assert case_file.dicom_candidates(ref, case) == [dicom]
    # The case moved elsewhere: the relative path breaks, the absolute one still works.
    assert case_file.dicom_candidates(ref, tmp_path / "x" / "y" / "z.gplan") == [dicom]
    dicom.rmdir()
    assert case_file.dicom_candidates(ref, case) == []
