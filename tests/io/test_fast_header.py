"""The fast header reader gives exactly what the pydicom path gives, or steps aside."""

from pathlib import Path

import numpy as np
import pytest

from guideplan.io import dicom_headers
from guideplan.io.dicom_headers import FileRef, read_headers

ROOT = Path(__file__).resolve().parents[2]


def _pydicom_only(ref: FileRef):
    """read_headers with the fast path switched off."""
    real = dicom_headers.read_fast_header
    dicom_headers.read_fast_header = lambda fp, size: None
    try:
        return read_headers(ref)
    finally:
        dicom_headers.read_fast_header = real


def _same(a, b) -> None:
    if isinstance(a, dicom_headers.SkippedFile):
        assert a == b
        return
    assert len(a) == len(b)
    for fa, fb in zip(a, b, strict=True):
        for name in fa.__dataclass_fields__:
            va, vb = getattr(fa, name), getattr(fb, name)
            if isinstance(va, np.ndarray) or isinstance(vb, np.ndarray):
                np.testing.assert_array_equal(va, vb, err_msg=name)
            else:
                assert va == vb, name


def test_fast_and_pydicom_paths_agree_on_every_fixture(dicom_case, tmp_path):
    from dicom_fixtures import CASES

    folders = [dicom_case(name).folder for name in CASES]
    files = [p for f in folders for p in Path(f).rglob("*") if p.is_file()]
    files += sorted((ROOT / "sample_data").rglob("*.dcm"))[::40]
    assert len(files) > 50
    fast_used = 0
    for path in files:
        ref = FileRef(str(path))
        with open(path, "rb") as fp:
            if dicom_headers.read_fast_header(fp, path.stat().st_size) is not None:
                fast_used += 1
        _same(read_headers(ref), _pydicom_only(ref))
    assert fast_used > len(files) // 2


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_damaged_files_agree_too(tmp_path, damage):
    src = sorted((ROOT / "sample_data").rglob("ct/*.dcm"))[0]
    data = src.read_bytes()
    path = tmp_path / "x.dcm"
    path.write_bytes(data[: len(data) // 2] if damage == "truncate" else data[:300] + b"\xff" * 50)
    ref = FileRef(str(path))
    fast, slow = read_headers(ref), _pydicom_only(ref)
    if damage == "truncate":  # the fast path names the damage; pydicom just gives up
        assert isinstance(fast, dicom_headers.SkippedFile) and "truncated" in fast.reason
        assert fast.series_uid  # so that loading the series fails loudly
        assert isinstance(slow, dicom_headers.SkippedFile)
    else:
        _same(fast, slow)
