"""A sample case's teaching information (case.json), never its truth."""

import json
from pathlib import Path

from guideplan.io.sample_case import read_sample_info, sample_target

CASE01 = Path(__file__).resolve().parents[2] / "sample_data" / "case01_l2_lytic_rfa_cement"


def test_the_lumbar_sample_states_its_level_and_indication():
    info = read_sample_info(CASE01)
    assert info["target"]["vertebral_level"] == "L2"
    assert "indication" in info and "title" in info
    assert sample_target(CASE01) == ("L2", info["target"]["bone"])


def test_other_folders_and_damaged_files_give_nothing(tmp_path):
    assert read_sample_info(tmp_path) == {}
    (tmp_path / "case.json").write_text("{broken")
    assert read_sample_info(tmp_path) == {} and sample_target(tmp_path) == (None, None)
    (tmp_path / "case.json").write_text(json.dumps({"format": "guideplan-case"}))
    assert read_sample_info(tmp_path) == {}  # a saved plan's case.json is not a sample's
