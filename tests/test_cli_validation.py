"""Every sub-command with bad arguments: a one-line message that says what to do, exit 2,
never a traceback; unexpected errors exit 3 in one line; JSON output is always JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from guideplan import cli
from guideplan.cli import main
from guideplan.cli_json import dumps

ROOT = Path(__file__).resolve().parents[1]
CT = ROOT / "sample_data" / "case01_l2_lytic_rfa_cement"
needs_sample = pytest.mark.skipif(not (CT / "ct").is_dir(), reason="sample data missing")


@pytest.fixture(scope="module")
def bounds() -> tuple[np.ndarray, np.ndarray]:
    from guideplan.io import load_series

    return load_series(CT / "ct").bounds_lps()


def _pt(p) -> str:
    return ",".join(f"{float(v):g}" for v in p)


def _run(argv, capsys) -> tuple[int, str]:
    code = main(argv)  # argparse's refusals return its exit status 2 too
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


S = str(CT)
BAD_ARGUMENTS = [
    (["plan", S, "--entry", "0,0,0", "--target", "nan,nan,nan"], "--target", "finite"),
    (["plan", S, "--entry", "0,0,0", "--target", "inf,0,0"], "--target", "finite"),
    (["plan", S, "--entry", "0,0", "--target", "1,2,3"], "--entry", "3 numbers"),
    (["plan", S, "--entry", "1,2,3", "--target", "1,2,3", "--cement-ml", "nan"], "--cement-ml", ""),
    (["plan", S, "--entry", "1,2,3", "--target", "4,5,6", "--cement-ml", "-2"], "--cement-ml", ""),
    (["plan", S, "--entry", "1,2,3", "--target", "4,5,6", "--power-w", "nan"], "--power-w", ""),
    (["plan", S, "--entry", "1,2,3", "--target", "4,5,6", "--time-s", "0"], "--time-s", "zero"),
    (["plan", S, "--entry", "1,2,3", "--target", "4,5,6", "--freeze-s", "x"], "--freeze-s", ""),
    (["plan", S, "--entry", "1,2,3", "--target", "4,5,6", "--ethanol-ml", "inf"], "--ethanol", ""),
    (["plan", S, "--entry", "1,2,3", "--target", "4,5,6", "--margin-mm", "-5"], "--margin", ""),
    (["plan", S, "--entry", "1,2,3", "--target", "4,5,6", "--margin-mm", "nan"], "--margin", ""),
    (["plan", S, "--entry", "1,2,3", "--target", "4,5,6", "--level", "L99"], "--level", "Known"),
    (["suggest", S, "--target", "nan,0,0"], "--target", "finite"),
    (["suggest", S, "--target", "1,2,3", "--top", "0"], "--top", "at least 1"),
    (["suggest", S, "--target", "1,2,3", "--top", "-3"], "--top", "at least 1"),
    (["segment", S, "--seed", "1,2,3", "--out", "m.xyz"], "--out", "suffix"),
    (["segment", S, "--seed", "1,2,3", "--range", "80,-20"], "--range", "lo >= hi"),
    (["register", S, S, "--mask-lps", "nan,44,1,30"], "--mask-lps", "finite"),
    (["register", S, S, "--mask-lps", "1,44,1,0"], "--mask-lps", "more than zero"),
    (["register", S, S, "--mask-lps", "1,44,1,-4"], "--mask-lps", "more than zero"),
    (["render", S, "--out", "x.png", "--size", "0x100"], "--size", "WIDTHxHEIGHT"),
    (["render", S, "--out", "x.png", "--slice-lps", "1,nan,2"], "--slice-lps", "finite"),
]


@pytest.mark.parametrize(("argv", "option", "words"), BAD_ARGUMENTS)
def test_a_bad_argument_is_refused_before_anything_is_loaded(argv, option, words, capsys):
    code, err = _run(argv, capsys)
    assert code == 2
    reason = err.strip().splitlines()[-1]  # after argparse's usage lines: one line
    assert reason.startswith("guideplan ") and "error: argument" in reason
    assert option in reason and words in reason


@needs_sample
def test_entry_equal_to_target_is_refused_with_what_to_do(bounds, capsys):
    mid = (bounds[0] + bounds[1]) / 2
    code, err = _run(["plan", S, "--entry", _pt(mid), "--target", _pt(mid)], capsys)
    assert code == 2 and "apart" in err and "skin" in err


@needs_sample
@pytest.mark.parametrize("command", ["plan", "suggest", "segment"])
def test_a_point_outside_the_images_is_refused_naming_the_option(bounds, command, capsys):
    outside = bounds[1] + 50.0
    mid = (bounds[0] + bounds[1]) / 2
    argv = {
        "plan": ["plan", S, "--entry", _pt(mid), "--target", _pt(outside)],
        "suggest": ["suggest", S, "--target", _pt(outside)],
        "segment": ["segment", S, "--seed", _pt(outside)],
    }[command]
    code, err = _run(argv, capsys)
    assert code == 2 and "outside the images" in err
    assert ("--seed" if command == "segment" else "--target") in err


@needs_sample
def test_a_catalog_holding_an_empty_list_is_a_user_error(tmp_path, bounds, capsys):
    catalog = tmp_path / "c.json"
    catalog.write_text("[]")
    mid = (bounds[0] + bounds[1]) / 2
    argv = ["plan", S, "--entry", _pt(mid), "--target", _pt(mid + 20), "--catalog", str(catalog)]
    code, err = _run(argv, capsys)
    assert code == 2 and "not a guideplan device catalog" in err


@pytest.mark.parametrize(
    ("option", "device", "words"),
    [("--device", "no-such-needle", "Known devices"), ("--zone-device", "", "not a")],
)
def test_unknown_or_wrong_kind_devices_are_refused(option, device, words, capsys):
    from guideplan.planning.devices import load_catalog

    device = device or load_catalog().default_needle().id  # a needle is no ablation device
    argv = ["plan", S, "--entry", "1,2,3", "--target", "4,5,6", option, device]
    code, err = _run(argv, capsys)
    assert code == 2 and words in err


def test_an_unexpected_error_is_one_line_with_exit_3_and_debug_shows_it(monkeypatch, capsys):
    def broken(args):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(cli, "_cmd_scan", broken)
    monkeypatch.delenv("GUIDEPLAN_DEBUG", raising=False)
    code, err = _run(["scan", "."], capsys)
    assert code == 3
    assert len(err.strip().splitlines()) == 1 and "RuntimeError: boom" in err
    assert "GUIDEPLAN_DEBUG=1" in err
    monkeypatch.setenv("GUIDEPLAN_DEBUG", "1")
    with pytest.raises(RuntimeError):
        main(["scan", "."])


def test_native_library_stderr_is_captured_and_summarised(monkeypatch, capfd):
    from guideplan.core.errors import GuideplanError

    def noisy(args):
        for n in range(30):
            os.write(2, f"HDF5-DIAG: Error detected in HDF5 (1.14) thread {n}\n".encode())
        os.write(2, b"ITK ERROR: NrrdImageIO(0x55): cannot read header\n")
        raise GuideplanError("The file cannot be read.", hint="Check it.")

    monkeypatch.setattr(cli, "_cmd_scan", noisy)
    monkeypatch.delenv("GUIDEPLAN_DEBUG", raising=False)
    assert main(["scan", "."]) == 2
    err = capfd.readouterr().err
    assert "HDF5-DIAG" not in err and len(err.strip().splitlines()) == 1
    assert "cannot read header" in err and "(+30 lines)" in err


def test_json_output_never_holds_nan_or_infinity():
    text = dumps({"a": float("nan"), "b": [1.0, float("inf")], "c": np.float32("nan")})
    assert json.loads(text) == {"a": None, "b": [1.0, None], "c": None}
    assert "NaN" not in text


def test_a_bad_target_in_a_real_process_prints_no_traceback():
    proc = subprocess.run(
        [sys.executable, "-m", "guideplan.cli", "plan", S, "--entry", "0,0,0", "--target", "nan,1"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "--target" in proc.stderr
