"""The committed sample data is exactly what the generator writes (byte for byte)."""

import filecmp
from pathlib import Path

import pytest

from guideplan.samples import generate_samples

ROOT = Path(__file__).resolve().parents[2] / "sample_data"


@pytest.mark.slow
def test_generator_rewrites_the_committed_case_byte_for_byte(tmp_path):
    case = "case02_iliac_cryo_skin"  # the smallest case keeps this test ~10 s
    if not (ROOT / case).is_dir():
        pytest.skip("sample data not present")
    (out,) = generate_samples(tmp_path, cases=[case])
    committed = sorted(p.relative_to(ROOT / case) for p in (ROOT / case).rglob("*") if p.is_file())
    written = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    assert committed == written
    mismatched = [
        str(rel)
        for rel in committed
        if not filecmp.cmp(ROOT / case / rel, out / rel, shallow=False)
    ]
    assert not mismatched, f"files differ from the generator's output: {mismatched[:5]}"
