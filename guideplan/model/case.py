"""Scene <-> case folder: what a plan looks like on disk, in terms of nodes.

``case.json`` (see :mod:`guideplan.io.case_file` for the header and the atomic save)
holds ``info`` (the scene's free-form case information) and ``nodes``, the scene's nodes
in order, each as ``Node.to_dict()`` plus:

* ``payloads``: ``{name: {"key": payload key, "as": "array" | "volume"}}`` for what
  ``Node.payloads()`` handed out (label maps as .nrrd on the grid of their reference
  volume, transform matrices as .tfm);
* for a :class:`VolumeNode`, ``source`` is the DICOM reference (path relative to the
  case, absolute path, series/study/frame-of-reference UIDs). The images are reloaded
  from DICOM when the case opens and must carry the same UIDs. A volume that has no
  DICOM source (synthetic, derived) is stored whole instead (``embedded_volume``), so
  that nothing the user sees is lost by a save.

In memory ``VolumeNode.source["path"]`` is the absolute folder the series was loaded from;
only the file holds it relative.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from guideplan.core.errors import CancelledError, CaseFileError, GuideplanError
from guideplan.core.jsonable import to_jsonable
from guideplan.core.progress import as_cancel
from guideplan.core.volume import Volume
from guideplan.io import case_file
from guideplan.io.case_file import ArrayPayload, ImagePayload, PayloadSpec, TransformPayload
from guideplan.io.dicom_scan import ScanReport, scan
from guideplan.io.dicom_series import load_series
from guideplan.model.case_schema import check_nodes
from guideplan.model.nodes import LabelMapNode, Node, VolumeNode, node_from_dict
from guideplan.model.scene import Scene

ProgressFn = Callable[[float, str], None]
CancelFn = Callable[[], bool]
#: Asked where a series went when it is not where the case says: gets the volume's
#: source reference (name, UIDs, expected path), returns a folder to try or None.
LocateFn = Callable[[dict[str, Any]], str | os.PathLike | None]

_UID_KEYS = ("series_uid", "study_uid", "frame_of_reference_uid")


# -- saving -----------------------------------------------------------------------------
def save_case(scene: Scene, path: str | os.PathLike, *, overwrite_foreign: bool = False) -> None:
    """Save the scene as the case folder ``path`` (atomically) and mark it clean."""
    write_scene(scene, path, overwrite_foreign=overwrite_foreign)
    scene.history.mark_clean()


def write_scene(scene: Scene, path: str | os.PathLike, *, overwrite_foreign: bool = False) -> None:
    """Save without touching the undo history's clean state (autosave, export)."""
    document, payloads = scene_document(scene, Path(path))
    case_file.write_case(path, document, payloads, overwrite_foreign=overwrite_foreign)


def scene_document(scene: Scene, case_dir: Path) -> tuple[dict[str, Any], dict[str, PayloadSpec]]:
    """The JSON document and the payloads of a scene saved into ``case_dir``."""
    payloads: dict[str, PayloadSpec] = {}
    nodes: list[dict[str, Any]] = []
    for node in scene:
        data = node.to_dict()
        if isinstance(node, VolumeNode):
            data["source"] = _source_reference(node, case_dir)
            if not data["source"].get("path") and node.volume is not None:
                key = f"{node.id}/volume"
                payloads[key] = ImagePayload.of_volume(node.volume)
                data["embedded_volume"] = key
                data["volume_meta"] = to_jsonable(node.volume.meta)
        entries: dict[str, dict[str, str]] = {}
        for name, value in node.payloads().items():
            key = f"{node.id}/{name}"
            payloads[key] = _payload_spec(scene, node, value)
            entries[name] = {"key": key, "as": "volume" if isinstance(value, Volume) else "array"}
        if entries:
            data["payloads"] = entries
        nodes.append(data)
    return {"info": to_jsonable(scene.info), "nodes": nodes}, payloads


def _source_reference(node: VolumeNode, case_dir: Path) -> dict[str, Any]:
    source = to_jsonable(dict(node.source))
    meta = node.volume.meta if node.volume is not None else {}
    for key in _UID_KEYS:
        if meta.get(key):  # what was actually loaded wins over what was asked for
            source[key] = str(meta[key])
    if source.get("path"):
        ref = case_file.dicom_reference(
            source["path"],
            case_dir,
            series_uid=source.get("series_uid", ""),
            study_uid=source.get("study_uid", ""),
            frame_of_reference_uid=source.get("frame_of_reference_uid", ""),
        )
        source.update(ref)
    else:
        source.pop("path", None)
        source.pop("abs_path", None)
    if meta.get("description") and "description" not in source:
        source["description"] = str(meta["description"])
    return source


def _payload_spec(scene: Scene, node: Node, value: Any) -> PayloadSpec:
    if isinstance(value, Volume):
        return ImagePayload.of_volume(value)
    arr = np.asarray(value)
    if arr.shape == (4, 4) and np.allclose(arr[3], (0, 0, 0, 1)):
        return TransformPayload(arr.astype(float))
    if arr.ndim == 3:
        reference = _reference_volume(scene, node)
        if reference is not None and reference.array.shape == arr.shape:
            return ImagePayload.on_grid_of(arr, reference)
        return ImagePayload(arr)
    return ArrayPayload(arr)


def _reference_volume(scene: Scene, node: Node) -> Volume | None:
    ref_id = getattr(node, "reference_id", None) or getattr(node, "volume_id", None)
    ref = scene.find(ref_id)
    return ref.volume if isinstance(ref, VolumeNode) else None


# -- opening ----------------------------------------------------------------------------
def open_case(
    path: str | os.PathLike,
    progress: ProgressFn | None = None,
    cancel: CancelFn | Any | None = None,
    *,
    locate: LocateFn | None = None,
    skip_damaged: bool = False,
    problems: list[str] | None = None,
) -> Scene:
    """Read a case folder into a new Scene (clean history), reloading images from DICOM.

    Raises :class:`CaseFileError` for a broken/foreign/newer case, for images that cannot
    be found where the case says (naming the series and the place), and for label maps
    whose grid no longer matches their reloaded reference volume.
    ``cancel`` (callable or threading.Event) raises :class:`CancelledError`.
    A data file changed since the save raises :class:`~guideplan.io.case_file.
    PayloadDamagedError`; with ``skip_damaged`` the nodes that need such a file are left
    out instead, each named in ``problems`` (the GUI's "open the rest of the case").
    """
    is_cancelled = as_cancel(cancel)
    document, payloads = case_file.read_case(path, skip_damaged=skip_damaged)
    case_dir = payloads.case_dir
    raw_nodes = document.get("nodes", [])
    check_nodes(raw_nodes, case_dir)
    if payloads.damaged:
        raw_nodes = _without_damaged(raw_nodes, payloads.damaged, problems)

    pairs: list[tuple[Node, dict[str, Any]]] = []
    for data in raw_nodes:
        try:
            pairs.append((node_from_dict(data), data))
        except (ValueError, TypeError, KeyError) as exc:
            raise _broken(case_dir, f"node {data.get('name') or data.get('id')!r}: {exc}") from exc

    volumes = [(n, d) for n, d in pairs if isinstance(n, VolumeNode)]
    reports: dict[Path, ScanReport] = {}
    for index, (node, data) in enumerate(volumes):
        _check_cancel(is_cancelled)
        lo, hi = 0.9 * index / len(volumes), 0.9 * (index + 1) / len(volumes)
        sub = _sub(progress, lo, hi, f"Loading '{node.name or 'volume'}'")
        _restore_volume(node, data, payloads, reports, sub, is_cancelled, locate)

    by_id = {n.id: n for n, _ in pairs}
    for node, data in pairs:
        _check_cancel(is_cancelled)
        _restore_node_payloads(node, data, payloads, by_id, case_dir)
    if progress is not None:
        progress(1.0, "Case opened")

    scene = Scene()
    with scene.batch():
        for node, _ in pairs:
            scene._insert(node)
    info = document.get("info", {})
    scene.info = dict(info) if isinstance(info, dict) else {}
    scene.history.clear()
    scene.history.mark_clean()
    return scene


def _without_damaged(
    raw_nodes: list[dict[str, Any]], damaged: Mapping[str, str], problems: list[str] | None
) -> list[dict[str, Any]]:
    """The nodes that need none of the damaged payload files."""
    kept = []
    for data in raw_nodes:
        keys = [e.get("key") for e in (data.get("payloads") or {}).values() if isinstance(e, dict)]
        keys.append(data.get("embedded_volume"))
        bad = [damaged[k] for k in keys if k in damaged]
        if bad:
            if problems is not None:
                problems.append(
                    f"'{data.get('name') or data.get('id')}' left out: its file {bad[0]} "
                    "changed since the case was saved"
                )
            continue
        kept.append(data)
    return kept


def _restore_volume(
    node: VolumeNode,
    data: Mapping[str, Any],
    payloads: case_file.CasePayloads,
    reports: dict[Path, ScanReport],
    progress: ProgressFn | None,
    cancel: CancelFn | None,
    locate: LocateFn | None,
) -> None:
    embedded = data.get("embedded_volume")
    if embedded:
        if embedded not in payloads:
            raise _broken(payloads.case_dir, f"the images of '{node.name}' are not listed")
        volume = payloads.load(embedded)
        assert isinstance(volume, Volume)
        meta = data.get("volume_meta")
        volume.meta = dict(meta) if isinstance(meta, dict) else {}
        node.volume = volume
        return
    ref = dict(node.source)
    if not (ref.get("path") or ref.get("abs_path")):
        node.volume = None  # a volume node that never had images: nothing to reload
        return
    series_uid = str(ref.get("series_uid") or "")
    problems: list[str] = []
    folders: list[Path] = case_file.dicom_candidates(ref, payloads.case_dir)
    asked = False
    while True:
        for folder in folders:
            volume = _try_load(folder, ref, reports, progress, cancel, problems)
            if volume is not None:
                node.volume = volume
                source = {k: v for k, v in ref.items() if k != "abs_path"}
                source["path"] = str(folder)
                node.source = source
                return
        if locate is None or asked:
            break
        asked = True  # ask once: a second wrong answer is reported, not looped on
        answer = locate({"name": node.name, **ref, "expected": _expected(ref, payloads)})
        if not answer:
            break
        folders = [Path(answer)]
    desc = ref.get("description")
    series = f"series '{desc}' {series_uid}" if desc else f"series {series_uid}"
    raise CaseFileError(
        f"The images of '{node.name or 'volume'}' ({series}) were not found: expected at "
        f"{_expected(ref, payloads)}" + (f" ({'; '.join(problems)})" if problems else "") + ".",
        hint="Put the DICOM folder back where it was (or next to the case as before), "
        "then open the case again.",
    )


def _try_load(
    folder: Path,
    ref: Mapping[str, Any],
    reports: dict[Path, ScanReport],
    progress: ProgressFn | None,
    cancel: CancelFn | None,
    problems: list[str],
) -> Volume | None:
    """The series from ``folder`` if it is there with the same UIDs; else note why not."""
    series_uid = str(ref.get("series_uid") or "") or None
    try:
        if folder not in reports:
            reports[folder] = scan(folder, cancel=cancel)
        volume = load_series(reports[folder], series_uid, progress=progress, cancel=cancel)
    except CancelledError:
        raise
    except GuideplanError as exc:
        problems.append(f"'{folder}': {exc.message.rstrip('.')}")
        return None
    for key in _UID_KEYS[1:]:
        want, got = ref.get(key), volume.meta.get(key)
        if want and got and want != got:
            problems.append(f"'{folder}' holds the series but with another {key} ({got})")
            return None
    return volume


def _expected(ref: Mapping[str, Any], payloads: case_file.CasePayloads) -> str:
    places = []
    if ref.get("path"):
        rel = Path(ref["path"])
        full = rel if rel.is_absolute() else Path(os.path.abspath(payloads.case_dir / rel))
        places.append(f"'{full}'")
    if ref.get("abs_path") and f"'{ref['abs_path']}'" not in places:
        places.append(f"'{ref['abs_path']}'")
    return " or ".join(places) or "(no path stored)"


def _restore_node_payloads(
    node: Node,
    data: Mapping[str, Any],
    payloads: case_file.CasePayloads,
    by_id: Mapping[str, Node],
    case_dir: Path,
) -> None:
    entries = data.get("payloads") or {}
    if not isinstance(entries, dict):
        raise _broken(case_dir, f"node '{node.name}' has an invalid payload list")
    restored: dict[str, Any] = {}
    for name, entry in entries.items():
        key = entry.get("key") if isinstance(entry, dict) else None
        if key not in payloads:
            raise _broken(case_dir, f"payload {name!r} of node '{node.name}' is not listed")
        value = payloads.load(key)
        if isinstance(value, Volume):
            _check_grid(node, value, by_id, case_dir)
            if entry.get("as") != "volume":
                value = value.array
        restored[name] = value
    if restored:
        node.restore_payloads(restored)


def _check_grid(node: Node, image: Volume, by_id: Mapping[str, Node], case_dir: Path) -> None:
    """A label map must still lie on its reference's grid, or it would be misplaced."""
    ref_id = getattr(node, "reference_id", None) if isinstance(node, LabelMapNode) else None
    ref = by_id.get(ref_id) if ref_id else None
    if not isinstance(ref, VolumeNode) or ref.volume is None:
        return
    if not image.same_grid(ref.volume):
        raise CaseFileError(
            f"In '{case_dir}', '{node.name or node.kind}' was drawn on a grid that differs "
            f"from the images now loaded for '{ref.name or 'its volume'}' "
            f"(shape {image.array.shape} vs {ref.volume.array.shape}, spacing "
            f"{_mm(image.spacing)} vs {_mm(ref.volume.spacing)}, origin "
            f"{_mm(image.origin)} vs {_mm(ref.volume.origin)}).",
            hint="The DICOM series may have been re-exported or changed; open the case with "
            "the original images.",
        )


# -- helpers ----------------------------------------------------------------------------
def _mm(values: Any) -> str:
    return "(" + ", ".join(f"{float(v):.4g}" for v in values) + ") mm"


def _broken(case_dir: Path, what: str) -> CaseFileError:
    return CaseFileError(
        f"The case '{case_dir}' is damaged: {what}.",
        hint="Open an earlier copy or the autosaved recovery copy.",
    )


def _check_cancel(cancel: CancelFn | None) -> None:
    if cancel is not None and cancel():
        raise CancelledError("Opening the case was cancelled; nothing was changed.")


def _sub(progress: ProgressFn | None, lo: float, hi: float, label: str) -> ProgressFn | None:
    if progress is None:
        return None
    return lambda f, msg: progress(lo + (hi - lo) * f, f"{label}: {msg}")
