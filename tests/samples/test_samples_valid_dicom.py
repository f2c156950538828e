"""The bundled sample series are valid DICOM: dciodvfy (dicom3tools) finds no error, and
dcentvfy finds the study/series/frame-of-reference relations consistent."""

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "sample_data"
DCIODVFY = shutil.which("dciodvfy")
DCENTVFY = shutil.which("dcentvfy")
SERIES = sorted(p for p in ROOT.glob("case*/*") if p.is_dir() and p.name != "truth")


def _errors(*command: str) -> list[str]:
    out = subprocess.run(command, capture_output=True, text=True, timeout=120)
    lines = (out.stdout + out.stderr).splitlines()
    return [ln for ln in lines if ln.startswith("Error")]


@pytest.mark.skipif(DCIODVFY is None, reason="dicom3tools not installed (make test installs it)")
@pytest.mark.parametrize("series", SERIES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_sample_series_pass_dciodvfy(series):
    files = sorted(series.glob("*.dcm"))
    assert files
    for path in (files[0], files[len(files) // 2], files[-1]):
        assert _errors(DCIODVFY, str(path)) == [], path


@pytest.mark.skipif(DCENTVFY is None, reason="dicom3tools not installed")
@pytest.mark.parametrize("case", sorted(ROOT.glob("case*")), ids=lambda p: p.name)
def test_sample_case_entities_are_consistent(case):
    files = [str(f) for f in sorted(case.glob("*/*.dcm"))]
    assert _errors(DCENTVFY, *files) == []
