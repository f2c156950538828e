"""Bounded, deterministic fuzzing of the loader: every input ends in a Volume or a
GuideplanError, within a time limit: never a hang, never another exception.

Seeds: small series written by the test fixtures (uncompressed, JPEG-LS, RLE, an
enhanced multi-frame file) and two slices of a bundled sample CT. Mutations: truncation,
bit flips, wrong element lengths and VRs, inconsistent or NaN geometry, zero or missing
sizes, FIFOs, links to devices, zip edge cases. A Volume that comes out must be
geometrically sane (finite positive spacing, finite origin, orthonormal direction).
"""

from __future__ import annotations

import os
import shutil
import struct
import threading
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import pytest
from dicom_fixtures import AXIAL_HFS, spec_for, stack_geometry, write_enhanced_case, write_stack

from guideplan.core.errors import GuideplanError
from guideplan.core.volume import Volume
from guideplan.io import load_series_info, scan, zip_archives

SEED = 20261204
CASE_TIMEOUT_S = 10.0
#: Mutated copies per seed and mutation (about 25 ms each on the 2-core test machine).
REPEATS = 24
SAMPLE_CT = Path(__file__).resolve().parents[2] / "sample_data" / "case01_l2_lytic_rfa_cement"


def _outcomes(folder: Path) -> list[object]:
    """Scan the folder and load every loadable series: Volumes and GuideplanErrors."""
    out: list[object] = []
    try:
        report = scan(folder)
    except GuideplanError as exc:
        return [exc]
    out.extend(report.skipped)
    for info in report.volumes:
        try:
            out.append(load_series_info(info))
        except GuideplanError as exc:
            out.append(exc)
    return out


def _run_bounded(folder: Path) -> list[object]:
    box: dict = {}

    def work() -> None:
        try:
            box["out"] = _outcomes(folder)
        except BaseException as exc:  # reported below: anything but a GuideplanError fails
            box["error"] = exc

    worker = threading.Thread(target=work, daemon=True)
    start = time.perf_counter()
    worker.start()
    worker.join(CASE_TIMEOUT_S)
    assert not worker.is_alive(), f"{folder.name}: no result after {CASE_TIMEOUT_S} s (hang)"
    if "error" in box:
        exc = box["error"]
        raise AssertionError(
            f"{folder.name}: {type(exc).__name__}: {exc} after {time.perf_counter() - start:.1f}s"
        ) from exc
    return box["out"]


def _check_volume(v: Volume, name: str) -> None:
    assert all(np.isfinite(v.spacing)) and min(v.spacing) > 0, name
    assert np.all(np.isfinite(v.origin)), name
    d = v.direction
    assert np.allclose(d.T @ d, np.eye(3), atol=1e-3), name
    assert v.array.ndim == 3 and v.array.size > 0, name
    if v.array.dtype.kind == "f":
        assert np.all(np.isfinite(v.array)), name


# -- seeds -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def seeds(tmp_path_factory) -> dict[str, list[Path]]:
    root = tmp_path_factory.mktemp("fuzz_seeds")
    out: dict[str, list[Path]] = {}
    small = {"n": 4, "rows": 24, "cols": 20}
    out["native"] = write_stack(
        root / "native", "fz_native", stack_geometry(*AXIAL_HFS, **small)
    ).files
    for key, ts in (("jpegls", pydicom.uid.JPEGLSLossless), ("rle", pydicom.uid.RLELossless)):
        spec = spec_for(f"fz_{key}", transfer_syntax=ts)
        out[key] = write_stack(
            root / key, f"fz_{key}", stack_geometry(*AXIAL_HFS, **small), spec=spec
        ).files
    path, _ = write_enhanced_case(root / "enhanced", "fz_enh", "CT")
    out["enhanced"] = [path]
    ct = sorted((SAMPLE_CT / "ct").glob("*.dcm"))[:2]
    if ct:
        out["sample"] = ct
    return out


# -- mutations: each takes (file bytes, rng) and returns new bytes -------------------------
def _truncate(data: bytes, rng) -> bytes:
    return data[: int(rng.integers(0, len(data)))]


def _bit_flips(data: bytes, rng) -> bytes:
    buf = bytearray(data)
    for _ in range(int(rng.integers(1, 12))):
        pos = int(rng.integers(0, len(buf)))
        buf[pos] ^= 1 << int(rng.integers(0, 8))
    return bytes(buf)


def _header_flips(data: bytes, rng) -> bytes:
    """Flips in the first 1.5 KB, where the header is: far more interesting than pixels."""
    buf = bytearray(data)
    for _ in range(int(rng.integers(1, 6))):
        pos = int(rng.integers(0, min(len(buf), 1500)))
        buf[pos] = int(rng.integers(0, 256))
    return bytes(buf)


def _element_positions(data: bytes) -> list[int]:
    """Offsets of explicit-VR element headers (two ASCII capitals after a tag)."""
    out = []
    for pos in range(132, min(len(data), 4000) - 8, 2):
        vr = data[pos + 4 : pos + 6]
        if vr.isalpha() and vr.isupper():
            out.append(pos)
    return out


def _wrong_length(data: bytes, rng) -> bytes:
    positions = _element_positions(data)
    if not positions:
        return _bit_flips(data, rng)
    pos = positions[int(rng.integers(0, len(positions)))]
    buf = bytearray(data)
    choice = int(rng.integers(0, 4))
    value = [0, 0xFFFF, int(rng.integers(1, 0xFFFF)), 1][choice]
    struct.pack_into("<H", buf, pos + 6, value)
    if choice == 3 and pos + 12 <= len(buf):  # long-VR style length: undefined / huge
        struct.pack_into("<I", buf, pos + 8, 0xFFFFFFFF if rng.random() < 0.5 else 0x7FFFFFF0)
    return bytes(buf)


def _wrong_vr(data: bytes, rng) -> bytes:
    positions = _element_positions(data)
    if not positions:
        return _bit_flips(data, rng)
    buf = bytearray(data)
    for _ in range(int(rng.integers(1, 4))):
        pos = positions[int(rng.integers(0, len(positions)))]
        vr = [b"SQ", b"OB", b"UN", b"US", b"FD", b"XX", b"UT", b"AT"][int(rng.integers(0, 8))]
        buf[pos + 4 : pos + 6] = vr
    return bytes(buf)


MUTATIONS: dict[str, Callable[[bytes, np.random.Generator], bytes]] = {
    "truncate": _truncate,
    "bitflip": _bit_flips,
    "header": _header_flips,
    "length": _wrong_length,
    "vr": _wrong_vr,
}

#: Dataset edits making geometry or sizes inconsistent (applied to one or all slices).
GEOMETRY_EDITS: dict[str, Callable[[pydicom.Dataset, int], None]] = {
    "iop_nan": lambda ds, k: setattr(ds, "ImageOrientationPatient", ["nan", 0, 0, 0, 1, 0]),
    "iop_zero": lambda ds, k: setattr(ds, "ImageOrientationPatient", [0, 0, 0, 0, 0, 0]),
    "iop_parallel": lambda ds, k: setattr(ds, "ImageOrientationPatient", [1, 0, 0, 1, 0, 0]),
    "iop_skewed": lambda ds, k: setattr(ds, "ImageOrientationPatient", [1, 0, 0, 0.5, 0.8, 0]),
    "iop_short": lambda ds, k: setattr(ds, "ImageOrientationPatient", [1, 0, 0]),
    "iop_per_slice": lambda ds, k: setattr(
        ds, "ImageOrientationPatient", [1, 0, 0, 0, float(np.cos(k)), float(np.sin(k))]
    ),
    "ipp_nan": lambda ds, k: setattr(ds, "ImagePositionPatient", [0, "nan", k]),
    "ipp_inf": lambda ds, k: setattr(ds, "ImagePositionPatient", [0, 0, "inf"]),
    "ipp_same": lambda ds, k: setattr(ds, "ImagePositionPatient", [1, 2, 3]),
    "ipp_huge": lambda ds, k: setattr(ds, "ImagePositionPatient", [0, 0, 1e300 * (k - 1)]),
    "spacing_zero": lambda ds, k: setattr(ds, "PixelSpacing", [0, 0]),
    "spacing_neg": lambda ds, k: setattr(ds, "PixelSpacing", [-1, 2]),
    "spacing_nan": lambda ds, k: setattr(ds, "PixelSpacing", ["nan", 1]),
    "spacing_tiny": lambda ds, k: setattr(ds, "PixelSpacing", [1e-300, 1e-300]),
    "thickness_nan": lambda ds, k: setattr(ds, "SliceThickness", "nan"),
    "rows_more": lambda ds, k: setattr(ds, "Rows", ds.Rows + 7),
    "rows_zero": lambda ds, k: setattr(ds, "Rows", 0),
    "cols_big": lambda ds, k: setattr(ds, "Columns", 65535),
    "bits_odd": lambda ds, k: setattr(ds, "BitsAllocated", 12),
    "bits_stored_big": lambda ds, k: setattr(ds, "BitsStored", 40),
    "samples_3": lambda ds, k: setattr(ds, "SamplesPerPixel", 3),
    "slope_nan": lambda ds, k: setattr(ds, "RescaleSlope", "nan"),
    "slope_huge": lambda ds, k: setattr(ds, "RescaleSlope", "1e38"),
    "intercept_inf": lambda ds, k: setattr(ds, "RescaleIntercept", "inf"),
    "frames_many": lambda ds, k: setattr(ds, "NumberOfFrames", 1000),
    "no_pixels": lambda ds, k: delattr(ds, "PixelData"),
    "uids_blank": lambda ds, k: [
        setattr(ds, a, "") for a in ("SeriesInstanceUID", "SOPInstanceUID")
    ],
}


def _copy_seed(files: list[Path], folder: Path) -> list[Path]:
    folder.mkdir(parents=True)
    out = []
    for f in files:
        dst = folder / f.name
        shutil.copyfile(f, dst)
        out.append(dst)
    return out


def test_fuzzed_files_end_in_a_volume_or_a_guideplan_error(seeds, tmp_path):
    rng = np.random.default_rng(SEED)
    start = time.perf_counter()
    counts = {"volume": 0, "error": 0, "skipped": 0}
    n = 0
    for seed_name, files in seeds.items():
        for mutation, mutate in MUTATIONS.items():
            for rep in range(REPEATS if seed_name != "sample" else REPEATS // 3):
                folder = tmp_path / f"{seed_name}_{mutation}_{rep}"
                copies = _copy_seed(files, folder)
                victim = copies[int(rng.integers(0, len(copies)))]
                victim.write_bytes(mutate(victim.read_bytes(), rng))
                for item in _run_bounded(folder):
                    if isinstance(item, Volume):
                        _check_volume(item, folder.name)
                        counts["volume"] += 1
                    elif isinstance(item, GuideplanError):
                        counts["error"] += 1
                    else:
                        counts["skipped"] += 1
                n += 1
                shutil.rmtree(folder)
    elapsed = time.perf_counter() - start
    assert n >= 500
    # The mutations reach every outcome: they are not all trivially refused.
    assert counts["volume"] > 0 and counts["skipped"] > 0
    print(f"{n} fuzz cases in {elapsed:.1f} s: {counts}")
    assert elapsed < 45, f"{n} fuzz cases took {elapsed:.1f} s"


@pytest.mark.parametrize("edit", sorted(GEOMETRY_EDITS))
@pytest.mark.parametrize("which", ["one", "all"])
def test_inconsistent_geometry_ends_in_a_volume_or_a_guideplan_error(seeds, tmp_path, edit, which):
    copies = _copy_seed(seeds["native"], tmp_path / "s")
    targets = copies[1:2] if which == "one" else copies
    for k, f in enumerate(targets):
        ds = pydicom.dcmread(f)
        GEOMETRY_EDITS[edit](ds, k)
        ds.save_as(f, enforce_file_format=False)
    for item in _run_bounded(tmp_path / "s"):
        if isinstance(item, Volume):
            _check_volume(item, edit)


def test_uncompressed_pixels_declared_compressed_end_in_a_guideplan_error(seeds, tmp_path):
    copies = _copy_seed(seeds["native"], tmp_path / "s")
    explicit, rle = b"1.2.840.10008.1.2.1\x00", b"1.2.840.10008.1.2.5\x00"  # same length
    for f in copies:
        data = f.read_bytes()
        assert explicit in data
        f.write_bytes(data.replace(explicit, rle, 1))
    outcome = _run_bounded(tmp_path / "s")
    assert not any(isinstance(o, Volume) for o in outcome)
    assert any(isinstance(o, GuideplanError) for o in outcome)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="POSIX special files")
def test_special_files_and_links_in_a_series_folder(seeds, tmp_path):
    folder = tmp_path / "s"
    _copy_seed(seeds["native"], folder)
    os.mkfifo(folder / "fifo.dcm")
    os.symlink("/dev/zero", folder / "zero.dcm")
    os.symlink("/dev/urandom", folder / "random")
    os.symlink(folder / "missing", folder / "dangling")
    os.symlink(folder, folder / "loop")  # a link to its own folder: not walked
    (folder / "sub").mkdir()
    os.mkfifo(folder / "sub" / "series.zip")  # a FIFO named like an archive
    outcome = _run_bounded(folder)
    volumes = [o for o in outcome if isinstance(o, Volume)]
    assert len(volumes) == 1 and volumes[0].array.shape[0] == len(seeds["native"])
    # The FIFO or the device given as the path itself:
    for path in (folder / "fifo.dcm", folder / "zero.dcm", folder / "sub" / "series.zip"):
        assert not any(isinstance(o, Volume) for o in _run_bounded(path))


def _zip(path: Path, members: dict[str, bytes], compression=zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_zip_edge_cases_end_in_a_volume_or_a_guideplan_error(seeds, tmp_path):
    series = {f"s/{f.name}": f.read_bytes() for f in seeds["native"]}
    jpegls = {f"j/{f.name}": f.read_bytes() for f in seeds["jpegls"]}
    cases: dict[str, Path] = {}
    cases["empty"] = _zip(tmp_path / "empty.zip", {})
    cases["dirs_only"] = _zip(tmp_path / "dirs.zip", {"a/": b"", "a/b/": b""})
    cases["stored"] = _zip(tmp_path / "stored.zip", series, zipfile.ZIP_STORED)
    cases["two_series"] = _zip(tmp_path / "two.zip", {**series, **jpegls})
    inner = _zip(tmp_path / "inner.zip", series)
    cases["nested"] = _zip(tmp_path / "nested.zip", {"inner.zip": inner.read_bytes()})
    cases["dup_names"] = tmp_path / "dup.zip"
    with zipfile.ZipFile(cases["dup_names"], "w") as zf, pytest.warns(UserWarning):
        for name, data in series.items():
            zf.writestr(name, data)
            zf.writestr(name, data[:200])  # same name again, truncated
    whole = _zip(tmp_path / "whole.zip", series).read_bytes()
    cases["truncated"] = tmp_path / "trunc.zip"
    cases["truncated"].write_bytes(whole[: len(whole) // 2])
    cases["bad_crc"] = tmp_path / "crc.zip"
    _zip(cases["bad_crc"], series, zipfile.ZIP_STORED)
    data = bytearray(cases["bad_crc"].read_bytes())
    data[len(data) // 3] ^= 0xFF  # inside a stored member: its CRC no longer matches
    cases["bad_crc"].write_bytes(bytes(data))
    cases["encrypted_flag"] = tmp_path / "enc.zip"
    _zip(cases["encrypted_flag"], series, zipfile.ZIP_STORED)
    data = bytearray(cases["encrypted_flag"].read_bytes())
    for sig in (b"PK\x03\x04", b"PK\x01\x02"):  # set the "encrypted" bit everywhere
        at = data.find(sig)
        while at >= 0:
            flag_at = at + (6 if sig == b"PK\x03\x04" else 8)
            data[flag_at] |= 0x01
            at = data.find(sig, at + 4)
    cases["encrypted_flag"].write_bytes(bytes(data))
    cases["not_a_zip"] = tmp_path / "fake.zip"
    cases["not_a_zip"].write_bytes(b"PK\x03\x04" + b"\0" * 100)
    results = {}
    for name, path in cases.items():
        zip_archives.close_all()
        out = _run_bounded(path)
        for item in out:
            if isinstance(item, Volume):
                _check_volume(item, name)
        results[name] = sum(isinstance(o, Volume) for o in out)
    assert results["stored"] == 1 and results["two_series"] == 2
    assert results["empty"] == results["dirs_only"] == results["encrypted_flag"] == 0
