"""Compressed series decoded by worker processes into shared memory: same values as one
process, damage reported, cancellable; the codec shortcut is used only where it agrees
with pydicom."""

from __future__ import annotations

import threading

import numpy as np
import pydicom
import pytest
from dicom_fixtures import stored_real_values

from guideplan.core.errors import CancelledError, PixelDataError
from guideplan.io import frame_codec, load_series, parallel_decode, scan

SYNTAXES = ["RLELossless", "JPEGLSLossless", "JPEG2000Lossless", "JPEGLosslessSV1"]
needs_fork = pytest.mark.skipif(not parallel_decode._can_fork(), reason="POSIX fork")


def _truth(series) -> np.ndarray:
    values = stored_real_values(series.files)
    normal = np.cross(series.geometry.row_cosine, series.geometry.col_cosine)
    return values[np.argsort(series.geometry.positions @ normal)]


@needs_fork
@pytest.mark.parametrize("syntax", SYNTAXES)
def test_worker_processes_decode_exactly_what_pydicom_decodes(dicom_case, syntax, monkeypatch):
    series = dicom_case(f"ts_{syntax}")
    monkeypatch.setenv("GUIDEPLAN_DECODE_WORKERS", "2")
    volume = load_series(series.folder)
    assert parallel_decode.is_shared(volume.array)  # decoded by the worker processes
    np.testing.assert_array_equal(volume.array, _truth(series))
    monkeypatch.setenv("GUIDEPLAN_DECODE_WORKERS", "1")
    single = load_series(series.folder)
    assert not parallel_decode.is_shared(single.array)
    np.testing.assert_array_equal(single.array, volume.array)


@needs_fork
def test_a_damaged_frame_decoded_by_a_worker_is_a_pixel_data_error(
    dicom_case, tmp_path, monkeypatch
):
    import shutil

    series = dicom_case("ts_JPEGLSLossless")
    folder = tmp_path / "s"
    shutil.copytree(series.folder, folder)
    victim = sorted(folder.glob("*.dcm"))[17]
    ds = pydicom.dcmread(victim)
    frame = next(pydicom.encaps.generate_frames(ds.PixelData, number_of_frames=1))
    data = bytearray(victim.read_bytes())
    start = data.find(frame[:64])
    assert start > 0
    data[start + 2 : start + 40] = b"\xff" * 38  # the JPEG-LS markers: undecodable
    victim.write_bytes(bytes(data))
    monkeypatch.setenv("GUIDEPLAN_DECODE_WORKERS", "2")
    result: dict = {}

    def load() -> None:
        try:
            load_series(folder)
        except Exception as exc:
            result["exc"] = exc

    worker = threading.Thread(target=load, daemon=True)
    worker.start()
    worker.join(60)
    assert not worker.is_alive()
    assert isinstance(result.get("exc"), PixelDataError), result


@needs_fork
def test_decoding_in_processes_can_be_cancelled(dicom_case, monkeypatch):
    series = dicom_case("ts_JPEG2000Lossless")
    monkeypatch.setenv("GUIDEPLAN_DECODE_WORKERS", "2")
    report = scan(series.folder)
    calls = {"n": 0}

    def cancel() -> bool:
        calls["n"] += 1
        return calls["n"] > 1  # let the scan finish, then stop the decoding

    with pytest.raises(CancelledError):
        load_series(report, cancel=cancel)


def test_the_codec_shortcut_is_dropped_where_it_disagrees_with_pydicom(dicom_case, monkeypatch):
    series = dicom_case("ts_RLELossless")
    monkeypatch.setattr(frame_codec, "_verdicts", {})
    codecs = dict(frame_codec._CODECS)
    codecs["1.2.840.10008.1.2.5"] = lambda src, f: bytes(f.rows * f.columns * 2)  # wrong
    monkeypatch.setattr(frame_codec, "_CODECS", codecs)
    monkeypatch.setenv("GUIDEPLAN_DECODE_WORKERS", "1")
    volume = load_series(series.folder)
    np.testing.assert_array_equal(volume.array, _truth(series))
    assert set(frame_codec._verdicts.values()) == {False}


def test_the_codec_shortcut_is_used_where_it_agrees(dicom_case, monkeypatch):
    series = dicom_case("ts_JPEGLSLossless")
    monkeypatch.setattr(frame_codec, "_verdicts", {})
    used = {"n": 0}
    real = frame_codec.decode_into

    def counting(*a, **kw):
        used["n"] += 1
        return real(*a, **kw)

    monkeypatch.setattr(frame_codec, "decode_into", counting)
    monkeypatch.setenv("GUIDEPLAN_DECODE_WORKERS", "1")
    volume = load_series(series.folder)
    np.testing.assert_array_equal(volume.array, _truth(series))
    assert set(frame_codec._verdicts.values()) == {True}
    assert used["n"] == len(series.files)  # the check, then every other frame


def test_small_series_and_one_core_decode_in_process(monkeypatch):
    monkeypatch.setenv("GUIDEPLAN_DECODE_WORKERS", "8")
    assert parallel_decode.worker_count(parallel_decode.MIN_FRAMES - 1) == 0
    assert parallel_decode.worker_count(300) == (8 if parallel_decode._can_fork() else 0)
    monkeypatch.setenv("GUIDEPLAN_DECODE_WORKERS", "1")
    assert parallel_decode.worker_count(300) == 0
