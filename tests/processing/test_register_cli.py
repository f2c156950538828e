"""``guideplan register``: the JSON contract, the .tfm it writes, landmarks, user errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from guideplan import cli
from guideplan.core import geometry
from guideplan.processing.registration import load_tfm, target_registration_error

CASE = Path(__file__).resolve().parents[2] / "sample_data" / "case01_l2_lytic_rfa_cement"
pytestmark = pytest.mark.skipif(not CASE.exists(), reason="sample_data not present")


def _truth(series: str) -> tuple[np.ndarray, np.ndarray]:
    truth = json.loads((CASE / "truth" / "truth.json").read_text())
    matrix = np.asarray(truth["transforms"][series]["fixed_to_moving"], float)
    return matrix, np.asarray(truth["lesion"]["center_lps"], float)


def test_register_json_and_tfm(tmp_path, capsys):
    true_matrix, lesion = _truth("mr")
    out = tmp_path / "mr.tfm"
    mask = ",".join(f"{v:g}" for v in (*lesion, 45.0))  # starts with '-': a point option
    code = cli.main(
        ["register", str(CASE), str(CASE / "mr"), "--mask-lps", mask, "--out", str(out), "--json"]
    )
    assert code == 0
    doc = json.loads(capsys.readouterr().out)
    assert {"matrix", "tfm", "metric", "wall_s", "mode"} <= set(doc)
    assert doc["mode"] == "rigid" and doc["tfm"] == str(out)
    matrix = np.asarray(doc["matrix"])
    assert matrix.shape == (4, 4)
    assert target_registration_error(matrix, true_matrix, lesion).max_mm <= 2.0
    assert np.allclose(load_tfm(out), matrix, atol=1e-9)
    assert doc["metric"] < 0 and doc["wall_s"] > 0


def test_register_landmarks_only(tmp_path, capsys):
    true_matrix, lesion = _truth("prior_ct")
    fixed_pts = lesion + np.array([[0, 0, 0], [60, 0, 0], [0, 50, 0], [0, 0, 40.0]])
    moving_pts = geometry.apply_affine(true_matrix, fixed_pts)
    path = tmp_path / "landmarks.json"
    pairs = [
        {"fixed": f.tolist(), "moving": m.tolist()}
        for f, m in zip(fixed_pts, moving_pts, strict=True)
    ]
    path.write_text(json.dumps({"pairs": pairs}))
    args = ["register", str(CASE / "ct"), str(CASE / "prior_ct"), "--landmarks", str(path)]
    assert cli.main([*args, "--landmarks-only", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["method"] == "landmarks" and doc["tfm"] is None
    assert np.allclose(doc["matrix"], true_matrix, atol=1e-6)
    assert doc["tre_mm"] < 1e-6


def test_register_user_errors_exit_2(tmp_path, capsys):
    assert cli.main(["register", str(CASE), str(CASE / "mr"), "--mask-lps", "1,2,3"]) == 2
    assert "4 numbers" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text('{"pairs": [{"fixed": [0, 0, 0]}]}')
    args = ["register", str(CASE), str(CASE / "mr"), "--landmarks", str(bad)]
    assert cli.main(args) == 2
    assert "Cannot register" in capsys.readouterr().err


def test_register_help_documents_the_landmark_format(capsys):
    with pytest.raises(SystemExit):
        cli.main(["register", "--help"])
    text = capsys.readouterr().out
    assert '"pairs"' in text and "fixed" in text and "LPS" in text
