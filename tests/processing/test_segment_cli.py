"""``guideplan segment`` and ``guideplan anatomy``: JSON output and written masks."""

import json

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from guideplan.cli import main

from .seg_cases import CASE_NAMES, SAMPLES, dice, sample_case


def _run(capsys, *argv) -> dict:
    assert main(list(argv)) == 0
    return json.loads(capsys.readouterr().out)


def test_segment_json_and_mask(tmp_path, capsys):
    case = SAMPLES / CASE_NAMES[0]
    doc = _run(
        capsys,
        "segment",
        str(case / "ct"),
        "--seed",
        "-4,44,1",
        "--json",
        "--out",
        str(tmp_path / "lesion.nrrd"),
    )
    for key in (
        "volume_ml",
        "diameters_mm",
        "hu",
        "type",
        "cortical_breach",
        "posterior_wall",
        "grow_range",
        "mode",
    ):
        assert key in doc
    assert set(doc["hu"]) >= {"mean", "min", "max"}
    assert len(doc["diameters_mm"]) == 3
    assert doc["type"] == "lytic" and doc["posterior_wall"] is True
    assert doc["cortical_breach"] is True
    assert doc["volume_ml"] == pytest.approx(5.6, rel=0.1)
    _, _, masks = sample_case(CASE_NAMES[0])
    written = sitk.GetArrayFromImage(sitk.ReadImage(doc["out"])).astype(bool)
    assert dice(written, masks["lesion"]) >= 0.9


def test_segment_writes_a_dicom_seg(tmp_path, capsys):
    case = SAMPLES / CASE_NAMES[2]
    doc = _run(
        capsys,
        "segment",
        str(case),
        "--seed",
        "6,57,122.5",
        "--json",
        "--out",
        str(tmp_path / "lesion.dcm"),
    )
    assert doc["type"] == "blastic" and doc["posterior_wall"] is False
    ds = pydicom.dcmread(doc["out"])
    assert ds.Modality == "SEG" and ds.SegmentSequence[0].SegmentLabel == "lesion"


def test_segment_text_output_and_user_errors(capsys):
    case = SAMPLES / CASE_NAMES[0]
    assert main(["segment", str(case), "--seed", "-4,44,1", "--range", "-20,80"]) == 0
    out = capsys.readouterr().out
    assert "lytic" in out and "posterior wall: involved" in out
    assert main(["segment", str(case), "--seed", "900,0,0"]) == 2
    assert "outside" in capsys.readouterr().err
    assert main(["segment", str(case), "--seed", "1,2"]) == 2


@pytest.mark.slow
def test_anatomy_writes_masks_and_reports_levels(tmp_path, capsys):
    case = SAMPLES / CASE_NAMES[0]
    doc = _run(capsys, "anatomy", str(case), "--out", str(tmp_path), "--json")
    assert [v["name"] for v in doc["vertebrae"]] == ["T12", "L1", "L2", "L3"]
    assert doc["levels_known"] and doc["canal_found"]
    _, _, masks = sample_case(CASE_NAMES[0])
    for name, threshold in (("bone", 0.95), ("canal", 0.85), ("body", 0.99)):
        mask = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / f"{name}.nrrd")))
        assert set(np.unique(mask)) <= {0, 1}
        assert dice(mask.astype(bool), masks[name]) >= threshold
    assert (tmp_path / "anatomy.json").is_file()
