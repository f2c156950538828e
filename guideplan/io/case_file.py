"""The guideplan case folder on disk: versioned, atomic, and knowing nothing of nodes.

A case is a folder ``NAME.gplan/``::

    case.json        {"format": "guideplan-case", "schema_version": 1, "app_version": ...,
                      "saved_at": ..., "payloads": {key: {"file": "data/...", ...}}, ...}
    data/            one file per payload, never rewritten in place:
                     3D arrays as compressed .nrrd (with the geometry of their reference
                     volume), 4x4 transforms as ITK .tfm, any other array as .npy

Why the folder and the names: a plan is precious and autosaved often. Every save writes
payloads under new unique names, then replaces ``case.json`` in one ``os.replace`` (the
commit point), then deletes what the new ``case.json`` no longer references. A crash at
any moment leaves the old or the new case readable, never a mix. Payloads whose content
did not change are not rewritten (a digest in ``case.json`` finds them), so autosaving a
plan with large label maps stays cheap.

What this module refuses: reading a broken, foreign or newer case, and saving over one
(unless ``overwrite_foreign=True``), raise :class:`CaseFileError` saying what is wrong and
what to do. A newer guideplan's case is never overwritten by an older one by accident.

DICOM images are referenced, never copied: :func:`dicom_reference` stores the series'
folder relative to the case (absolute as a fallback) with its UIDs;
:func:`dicom_candidates` lists where to look for it again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from guideplan import __version__
from guideplan.core.errors import CaseFileError
from guideplan.core.validate import finite_json
from guideplan.core.volume import Volume
from guideplan.io.native_stderr import captured_native_stderr


def _sitk():
    """SimpleITK, imported on first use: it costs ~0.25 s at start-up otherwise."""
    import SimpleITK

    return SimpleITK


FORMAT = "guideplan-case"
SCHEMA_VERSION = 1
CASE_JSON = "case.json"
DATA_DIR = "data"
#: Suggested folder suffix (not enforced: any folder holding our case.json is a case).
CASE_SUFFIX = ".gplan"
#: Keys of case.json that belong to this module, not to the caller's document.
HEADER_KEYS = ("format", "schema_version", "app_version", "saved_at")

_PAYLOAD_NAME = re.compile(r"^[A-Za-z0-9_-]+\.[0-9a-f]{12}\.(nrrd|tfm|npy)$")
_TEMP_NAME = re.compile(r"^\.tmp\.[0-9a-f]{12}\..+$")

#: schema_version -> function upgrading a document of that version to the next one.
_MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}


# -- payloads to write ------------------------------------------------------------------
@dataclass(eq=False)
class ImagePayload:
    """A 3D array ``[k, j, i]`` saved as compressed .nrrd with its LPS geometry.

    Label maps take the geometry of their reference volume (:meth:`on_grid_of`) so that
    any other tool (3D Slicer, ITK-SNAP) overlays them correctly.
    """

    array: np.ndarray
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: np.ndarray = field(default_factory=lambda: np.eye(3))

    @classmethod
    def on_grid_of(cls, array: np.ndarray, volume: Volume) -> ImagePayload:
        return cls(array, volume.spacing, volume.origin, volume.direction)

    @classmethod
    def of_volume(cls, volume: Volume) -> ImagePayload:
        return cls.on_grid_of(volume.array, volume)


@dataclass(eq=False)
class TransformPayload:
    """A 4x4 affine mapping FIXED LPS points to MOVING LPS points, saved as ITK .tfm.

    That is exactly what an ITK transform file means (the resampling transform), and
    exactly ``TransformNode.matrix``: no inversion anywhere.
    """

    matrix: np.ndarray


@dataclass(eq=False)
class ArrayPayload:
    """Any other array (curves, tables), saved as .npy without pickling."""

    array: np.ndarray


PayloadSpec = ImagePayload | TransformPayload | ArrayPayload


# -- reading ----------------------------------------------------------------------------
class CasePayloads:
    """Lazy access to a case's payload files (what :func:`read_case` hands back).

    ``load`` returns a :class:`Volume` for image payloads, a 4x4 array for transforms and
    the array for array payloads; a damaged file raises :class:`CaseFileError`.
    """

    def __init__(
        self,
        case_dir: Path,
        table: Mapping[str, Mapping[str, Any]],
        damaged: Mapping[str, str] | None = None,
    ) -> None:
        self.case_dir = case_dir
        self._table = {k: dict(v) for k, v in table.items()}
        #: Payloads left out because their file did not match its digest: {key: file}.
        self.damaged: dict[str, str] = dict(damaged or {})

    def __contains__(self, key: object) -> bool:
        return key in self._table

    def __iter__(self) -> Iterator[str]:
        return iter(self._table)

    def __len__(self) -> int:
        return len(self._table)

    def kind(self, key: str) -> str:
        """The payload's type: "image", "transform" or "array"."""
        return str(self._entry(key)["type"])

    def load(self, key: str) -> Volume | np.ndarray:
        entry = self._entry(key)
        path = self.case_dir / entry["file"]
        try:
            with captured_native_stderr() as native:
                value = self._read(entry, path)
        except CaseFileError:
            raise
        except Exception as exc:  # SimpleITK raises RuntimeError, numpy ValueError/OSError
            raise CaseFileError(
                f"The case '{self.case_dir}' is damaged: its file '{entry['file']}' "
                f"({key}) cannot be read ({_short(exc)}{native.summary(prefix='; ')}).",
                hint="Open an earlier copy of the case, or the autosaved recovery copy.",
            ) from exc
        if "file_digest" not in entry and entry["type"] != "transform":
            # A case saved before file digests: check what was read against its content
            # digest (transforms are text and may not round-trip to the same bits).
            spec = ImagePayload.of_volume(value) if isinstance(value, Volume) else None
            try:
                found = _describe(spec or ArrayPayload(value))["digest"]
            except (ValueError, TypeError):
                found = ""
            if found != entry.get("digest"):
                raise _damaged_error(self.case_dir, {key: entry["file"]})
        return value

    @staticmethod
    def _read(entry: Mapping[str, Any], path: Path) -> Volume | np.ndarray:
        try:
            if entry["type"] == "image":
                volume = Volume.from_sitk(_sitk().ReadImage(str(path)))
                dtype = np.dtype(entry.get("dtype", volume.array.dtype))
                if volume.array.dtype != dtype:
                    volume.array = volume.array.astype(dtype)
                return volume
            if entry["type"] == "transform":
                return _read_tfm(path)
            return np.load(path, allow_pickle=False)
        except CaseFileError:
            raise

    def _entry(self, key: str) -> dict[str, Any]:
        try:
            return self._table[key]
        except KeyError:
            raise KeyError(f"no payload {key!r} in the case") from None


def read_case(
    path: str | os.PathLike, *, skip_damaged: bool = False
) -> tuple[dict[str, Any], CasePayloads]:
    """Read ``case.json`` of a case folder (or the file itself) and check its payloads.

    Returns the document (the caller's keys plus the header keys, without the payload
    table) and the lazy payload loader. Every payload file must exist and match the
    digest of its bytes stored at save time: a missing or changed file is reported now
    (:class:`PayloadDamagedError`, naming the files), not half-way through opening the
    case. With ``skip_damaged`` the changed files are left out instead and listed in
    ``CasePayloads.damaged``, so that the rest of the case can be opened.
    """
    case_dir = _case_dir(Path(path))
    doc = _read_document(case_dir)
    table = doc.pop("payloads", {})
    if not isinstance(table, dict):
        raise _broken(case_dir, "its payload table is not an object")
    damaged: dict[str, str] = {}
    for key, entry in table.items():
        if not isinstance(entry, dict) or entry.get("type") not in ("image", "transform", "array"):
            raise _broken(case_dir, f"payload {key!r} has no valid type")
        rel = _safe_payload_path(entry.get("file"))
        if rel is None:
            raise _broken(case_dir, f"payload {key!r} points outside its data folder")
        if not (case_dir / rel).is_file():
            raise CaseFileError(
                f"The case '{case_dir}' is incomplete: its file '{rel}' ({key}) is missing.",
                hint="Copy the whole .gplan folder, including its 'data' folder, "
                "or open the autosaved recovery copy.",
            )
        want = entry.get("file_digest")
        if want is not None and _file_digest(case_dir / rel) != want:
            damaged[key] = rel
    if damaged and not skip_damaged:
        raise _damaged_error(case_dir, damaged)
    kept = {k: e for k, e in table.items() if k not in damaged}
    return doc, CasePayloads(case_dir, kept, damaged)


class PayloadDamagedError(CaseFileError):
    """Payload files whose bytes changed since the case was saved (``files``: key -> file)."""

    def __init__(self, message: str, *, hint: str | None, files: Mapping[str, str]) -> None:
        super().__init__(message, hint=hint)
        self.files = dict(files)


def _damaged_error(case_dir: Path, files: Mapping[str, str]) -> PayloadDamagedError:
    listing = ", ".join(f"'{f}' ({k})" for k, f in list(files.items())[:5])
    more = f" and {len(files) - 5} more" if len(files) > 5 else ""
    return PayloadDamagedError(
        f"The case '{case_dir}' is damaged: {len(files)} data file(s) changed since it was "
        f"saved ({listing}{more}); their contents cannot be trusted.",
        hint="Open an earlier copy or the autosaved recovery copy, or open the rest of the "
        "case without them.",
        files=files,
    )


def read_header(path: str | os.PathLike) -> dict[str, Any]:
    """The header of a case (format, versions, saved_at) without checking its payloads."""
    doc = _read_document(_case_dir(Path(path)))
    return {k: doc.get(k) for k in HEADER_KEYS}


def is_case(path: str | os.PathLike) -> bool:
    """True if ``path`` is a folder (or a case.json) that this version can read."""
    try:
        _read_document(_case_dir(Path(path)))
    except CaseFileError:
        return False
    return True


# -- writing ----------------------------------------------------------------------------
def write_case(
    path: str | os.PathLike,
    document: Mapping[str, Any],
    payloads: Mapping[str, PayloadSpec],
    *,
    overwrite_foreign: bool = False,
) -> None:
    """Save ``document`` (JSON-able) and ``payloads`` as the case folder ``path``, atomically.

    The header keys (format, schema_version, app_version, saved_at) and "payloads" in
    ``document`` are replaced by this module's. Saving onto a folder that holds a broken,
    foreign or newer case, or any files that are not a case, raises
    :class:`CaseFileError` unless ``overwrite_foreign`` is true.
    """
    case_dir = Path(path)
    old_table = _check_target(case_dir, overwrite_foreign)
    created = not case_dir.exists()
    data_dir = case_dir / DATA_DIR
    data_dir.mkdir(parents=True, exist_ok=True)

    reusable = _reusable_files(case_dir, old_table)
    table: dict[str, dict[str, Any]] = {}
    written: list[Path] = []
    try:
        for key, spec in payloads.items():
            entry = _describe(spec)
            old = reusable.get(entry["digest"])
            if old is not None:
                entry["file"], entry["file_digest"] = old
                entry["size"] = (case_dir / old[0]).stat().st_size
            else:
                final = _write_payload(data_dir, key, spec)
                written.append(final)
                entry["file"] = f"{DATA_DIR}/{final.name}"
                entry["file_digest"] = _file_digest(final)
                entry["size"] = final.stat().st_size
                reusable[entry["digest"]] = (entry["file"], entry["file_digest"])
            table[key] = entry
        if written:
            _fsync_dir(data_dir)

        doc = {k: v for k, v in document.items() if k not in (*HEADER_KEYS, "payloads")}
        full = {
            "format": FORMAT,
            "schema_version": SCHEMA_VERSION,
            "app_version": __version__,
            "saved_at": datetime.now(UTC).isoformat(timespec="seconds"),
            **doc,
            "payloads": table,
        }
        # NaN/inf are not JSON: stored as null, so that every reader can parse the file.
        text = json.dumps(
            finite_json(json.loads(json.dumps(full, default=_json_default))),
            indent=1,
            ensure_ascii=False,
            allow_nan=False,
        )
        tmp = case_dir / f".tmp.{secrets.token_hex(6)}.{CASE_JSON}"
        try:
            _write_bytes_durably(tmp, text.encode("utf-8"))
            os.replace(tmp, case_dir / CASE_JSON)  # the commit point
        except BaseException:
            _unlink_quietly(tmp)
            raise
    except BaseException:
        # Not committed: the old case.json still references only the old files.
        for p in written:
            _unlink_quietly(p)
        raise
    _fsync_dir(case_dir)
    if created:
        _fsync_dir(case_dir.parent)  # a new case's own folder entry must survive too
    _collect_garbage(case_dir, {e["file"] for e in table.values()})


# -- DICOM references -------------------------------------------------------------------
def dicom_reference(
    dicom_path: str | os.PathLike,
    case_dir: str | os.PathLike,
    series_uid: str,
    study_uid: str = "",
    frame_of_reference_uid: str = "",
) -> dict[str, str]:
    """How a case file points at a DICOM series: path relative to the case + UIDs.

    The relative path keeps working when the case and its images move together (a USB
    stick, a study folder); the absolute one when only the case moves. On another drive
    (Windows) there is no relative path and both are absolute.
    """
    absolute = os.path.abspath(dicom_path)
    try:
        relative = os.path.relpath(absolute, os.path.abspath(case_dir))
    except ValueError:  # another drive
        relative = absolute
    return {
        "path": Path(relative).as_posix(),
        "abs_path": absolute,
        "series_uid": series_uid,
        "study_uid": study_uid,
        "frame_of_reference_uid": frame_of_reference_uid,
    }


def dicom_candidates(reference: Mapping[str, Any], case_dir: str | os.PathLike) -> list[Path]:
    """Existing places where a referenced series may be, best first (may be empty)."""
    out: list[Path] = []
    rel = reference.get("path")
    if rel:
        p = Path(rel)
        out.append(p if p.is_absolute() else Path(os.path.abspath(Path(case_dir) / p)))
    if reference.get("abs_path"):
        out.append(Path(reference["abs_path"]))
    seen: set[Path] = set()
    unique = []
    for p in out:
        if p not in seen and p.exists():
            seen.add(p)
            unique.append(p)
    return unique


# -- internals: reading -----------------------------------------------------------------
def _case_dir(path: Path) -> Path:
    if path.name == CASE_JSON and path.is_file():
        return path.parent
    return path


def _read_document(case_dir: Path) -> dict[str, Any]:
    if not case_dir.exists():
        raise CaseFileError(
            f"The case '{case_dir}' does not exist.",
            hint="Check the path; a guideplan case is a folder ending in .gplan.",
        )
    if not case_dir.is_dir():
        raise CaseFileError(
            f"'{case_dir}' is a file, not a guideplan case folder.",
            hint="Choose the .gplan folder (or the case.json inside it).",
        )
    json_path = case_dir / CASE_JSON
    if not json_path.is_file():
        raise CaseFileError(
            f"'{case_dir}' is not a guideplan case: it has no {CASE_JSON}.",
            hint="Choose a .gplan folder saved by guideplan; to load images, open the DICOM "
            "folder instead.",
        )
    try:
        text = json_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise _broken(case_dir, f"its {CASE_JSON} cannot be read ({_short(exc)})") from exc
    try:
        doc = json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise _broken(
            case_dir, f"its {CASE_JSON} is not valid JSON (line {exc.lineno}: {exc.msg})"
        ) from exc
    except ValueError as exc:  # NaN / Infinity literals
        raise _broken(case_dir, f"its {CASE_JSON} holds {exc}") from None
    except RecursionError:
        raise _broken(case_dir, f"its {CASE_JSON} is nested too deeply") from None
    if _depth(doc) > MAX_JSON_DEPTH:
        raise _broken(case_dir, f"its {CASE_JSON} is nested deeper than {MAX_JSON_DEPTH} levels")
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        found = doc.get("format") if isinstance(doc, dict) else None
        raise CaseFileError(
            f"'{case_dir}' is not a guideplan case ({CASE_JSON} has format {found!r}, "
            f"expected {FORMAT!r}).",
            hint="It was written by another program; open it there, or choose another folder.",
        )
    version = doc.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise _broken(case_dir, f"its schema_version {version!r} is not a positive integer")
    if version > SCHEMA_VERSION:
        raise CaseFileError(
            f"The case '{case_dir}' was saved by a newer guideplan "
            f"({doc.get('app_version', '?')}, case format {version}); this version "
            f"({__version__}) reads case format {SCHEMA_VERSION} and older.",
            hint="Update guideplan to open it. It was left unchanged.",
        )
    while version < SCHEMA_VERSION:
        doc = _MIGRATIONS[version](doc)
        version = doc["schema_version"] = version + 1
    return doc


#: Deepest nesting a case.json may have (ours is about 6 deep); deeper is damage or abuse.
MAX_JSON_DEPTH = 64


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"a {name} literal, which is not a number")


def _depth(value: Any) -> int:
    """Nesting depth of parsed JSON, without recursion."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, level)
            if level > MAX_JSON_DEPTH:
                return level
            children = item.values() if isinstance(item, dict) else item
            stack.extend((c, level + 1) for c in children)
    return deepest


def _broken(case_dir: Path, what: str) -> CaseFileError:
    return CaseFileError(
        f"The case '{case_dir}' is damaged: {what}.",
        hint="Open an earlier copy or the autosaved recovery copy; the file was left as is.",
    )


def _safe_payload_path(rel: Any) -> str | None:
    """The payload's relative path if it is a plain file name inside data/, else None."""
    if not isinstance(rel, str):
        return None
    parts = rel.split("/")
    if len(parts) != 2 or parts[0] != DATA_DIR or parts[1] in ("", ".", "..") or "\\" in rel:
        return None
    return rel


def _read_tfm(path: Path) -> np.ndarray:
    tx = _sitk().ReadTransform(str(path))
    if tx.GetDimension() != 3 or not tx.IsLinear():
        raise CaseFileError(
            f"The transform file '{path}' is not a 3D linear transform ({tx.GetName()}).",
            hint="Redo the registration; this version stores affine transforms only.",
        )
    m = np.eye(4)
    if hasattr(tx, "GetMatrix"):
        a = np.asarray(tx.GetMatrix(), dtype=float).reshape(3, 3)
        c = np.asarray(tx.GetCenter(), dtype=float)
        t = np.asarray(tx.GetTranslation(), dtype=float)
        m[:3, :3] = a
        m[:3, 3] = t + c - a @ c  # ITK: p' = A (p - c) + c + t
    else:
        origin = np.asarray(tx.TransformPoint((0.0, 0.0, 0.0)))
        m[:3, :3] = np.column_stack(
            [np.asarray(tx.TransformPoint(tuple(e))) - origin for e in np.eye(3)]
        )
        m[:3, 3] = origin
    return m


# -- internals: writing -----------------------------------------------------------------
def _check_target(case_dir: Path, overwrite_foreign: bool) -> dict[str, dict[str, Any]]:
    """The payload table of the case being replaced ({} if none); refuse foreign folders."""
    if not case_dir.exists():
        return {}
    if not case_dir.is_dir():
        raise CaseFileError(
            f"Cannot save the case as '{case_dir}': a file of that name exists.",
            hint="Choose another name for the case.",
        )
    if not (case_dir / CASE_JSON).exists():
        if _only_our_leftovers(case_dir) or overwrite_foreign:
            return {}
        raise CaseFileError(
            f"Cannot save the case into '{case_dir}': the folder holds other files and "
            "no guideplan case.",
            hint="Choose a new name (a .gplan folder is created), or confirm replacing it.",
        )
    try:
        doc = _read_document(case_dir)
    except CaseFileError as exc:
        if overwrite_foreign:
            return {}
        raise CaseFileError(
            f"Will not overwrite '{case_dir}': {exc.message}",
            hint="Save under another name, or confirm that it may be replaced.",
        ) from exc
    table = doc.get("payloads")
    return table if isinstance(table, dict) else {}


def _only_our_leftovers(case_dir: Path) -> bool:
    """An empty folder, or one left by an interrupted first save, may be written into."""
    for entry in case_dir.iterdir():
        if entry.name == DATA_DIR and entry.is_dir():
            if any(
                not (_PAYLOAD_NAME.match(p.name) or _TEMP_NAME.match(p.name))
                for p in entry.iterdir()
            ):
                return False
        elif not _TEMP_NAME.match(entry.name):
            return False
    return True


def _reusable_files(case_dir: Path, old_table: Mapping[str, Any]) -> dict[str, tuple[str, str]]:
    """content digest -> (file, file digest) of payloads on disk that are still intact.

    A file is reused only if its bytes still match the digest recorded when it was
    written: a file damaged on disk (even with its size unchanged) is written anew, never
    carried into the next version of the case. Files of cases saved before file digests
    existed are rewritten once.
    """
    out: dict[str, tuple[str, str]] = {}
    for entry in old_table.values():
        if not isinstance(entry, dict):
            continue
        rel = _safe_payload_path(entry.get("file"))
        digest, file_digest = entry.get("digest"), entry.get("file_digest")
        if rel is None or not digest or not file_digest or digest in out:
            continue
        if not _PAYLOAD_NAME.match(rel.split("/")[1]):
            continue
        try:
            if _file_digest(case_dir / rel) == file_digest:
                out[digest] = (rel, file_digest)
        except OSError:
            continue
    return out


def _file_digest(path: Path) -> str:
    """BLAKE2b of a file's bytes, read in chunks (payloads can be hundreds of MB)."""
    h = hashlib.blake2b(digest_size=20)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _describe(spec: PayloadSpec) -> dict[str, Any]:
    """The payload table entry (without file) and the content digest that identifies it."""
    h = hashlib.blake2b(digest_size=20)
    if isinstance(spec, ImagePayload):
        arr = np.asarray(spec.array)
        if arr.ndim != 3:
            raise ValueError(f"an image payload must be 3D [k, j, i], got shape {arr.shape}")
        geometry = np.concatenate(
            [np.ravel(spec.spacing), np.ravel(spec.origin), np.ravel(spec.direction)]
        ).astype(float)
        h.update(b"image")
        h.update(geometry.tobytes())
        entry: dict[str, Any] = {"type": "image"}
    elif isinstance(spec, TransformPayload):
        arr = np.asarray(spec.matrix, dtype=float)
        if arr.shape != (4, 4) or not np.allclose(arr[3], (0, 0, 0, 1)):
            raise ValueError(f"a transform payload must be a 4x4 affine, got {arr}")
        h.update(b"transform")
        entry = {"type": "transform"}
    elif isinstance(spec, ArrayPayload):
        arr = np.asarray(spec.array)
        if arr.dtype.hasobject:
            raise ValueError("array payloads cannot hold Python objects")
        h.update(b"array")
        entry = {"type": "array"}
    else:
        raise TypeError(f"unsupported payload {type(spec).__name__}")
    h.update(str(arr.dtype.str).encode())
    h.update(repr(arr.shape).encode())
    h.update(np.ascontiguousarray(arr).data)
    entry.update(dtype=str(arr.dtype), shape=list(arr.shape), digest=h.hexdigest())
    return entry


def _write_payload(data_dir: Path, key: str, spec: PayloadSpec) -> Path:
    """Write one payload durably under a new unique name; return its final path."""
    slug = re.sub(r"[^A-Za-z0-9_-]+", "_", key).strip("_")[:60] or "payload"
    ext = (
        "nrrd"
        if isinstance(spec, ImagePayload)
        else ("tfm" if isinstance(spec, TransformPayload) else "npy")
    )
    token = secrets.token_hex(6)
    tmp = data_dir / f".tmp.{token}.{slug}.{ext}"  # the writer picks its format by extension
    final = data_dir / f"{slug}.{token}.{ext}"
    try:
        if isinstance(spec, ImagePayload):
            arr = np.asarray(spec.array)
            if arr.dtype == bool:
                arr = arr.astype(np.uint8)  # restored to bool from the table's dtype
            image = _sitk().GetImageFromArray(np.ascontiguousarray(arr))
            image.SetSpacing(tuple(float(s) for s in spec.spacing))
            image.SetOrigin(tuple(float(o) for o in spec.origin))
            image.SetDirection(tuple(float(d) for d in np.ravel(spec.direction)))
            _sitk().WriteImage(image, str(tmp), useCompression=True)
        elif isinstance(spec, TransformPayload):
            m = np.asarray(spec.matrix, dtype=float)
            tx = _sitk().AffineTransform(3)
            tx.SetMatrix(tuple(m[:3, :3].ravel()))
            tx.SetTranslation(tuple(m[:3, 3]))
            _sitk().WriteTransform(tx, str(tmp))
        else:
            with open(tmp, "wb") as f:
                np.save(f, np.asarray(spec.array), allow_pickle=False)
        _fsync_file(tmp)
        os.replace(tmp, final)
    except BaseException:
        _unlink_quietly(tmp)
        raise
    return final


def _write_bytes_durably(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    """Make renames in ``path`` durable (POSIX; Windows has no directory handles)."""
    if os.name == "nt":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _collect_garbage(case_dir: Path, referenced: set[str]) -> None:
    """Delete our payload and temp files that the committed case.json does not reference.

    Only names this module creates are touched: a user's own file in the folder stays.
    """
    for folder in (case_dir, case_dir / DATA_DIR):
        try:
            entries = list(folder.iterdir())
        except OSError:
            continue
        for p in entries:
            rel = p.relative_to(case_dir).as_posix()
            ours = _TEMP_NAME.match(p.name) or (
                folder.name == DATA_DIR and _PAYLOAD_NAME.match(p.name)
            )
            if ours and rel not in referenced and p.is_file():
                _unlink_quietly(p)


def _unlink_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


def _json_default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"{type(value).__name__} cannot be stored in case.json")


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[-1] if text else type(exc).__name__)[:200]
