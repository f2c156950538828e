"""Every field of a case's nodes checked on open, before any node is built from it.

A case file may have been edited by hand, damaged on disk or written by a buggy tool.
A trajectory entry of ``"abc"``, ``null``, ``[1, 2]`` or NaN used to be accepted and
crash later (in ``plan --case`` or when drawn); duplicate ids raised a bare ValueError.
Here each node is checked field by field with :mod:`guideplan.core.validate`, and the
first problem is reported as a :class:`CaseFileError` naming the node and the field.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from guideplan.core import validate as v
from guideplan.core.errors import CaseFileError
from guideplan.model.nodes import NODE_TYPES

_ROLES = ("planning", "prior")
_MEASURES = {"distance": 2, "angle": 3}
_FUSION = ("blend", "overlay", "checker", "flicker")
_COLORMAPS = ("grey", "hot", "rainbow")


def check_nodes(raw_nodes: Any, case_dir: Path) -> None:
    """Raise CaseFileError for the first invalid field of the node list."""
    if not isinstance(raw_nodes, list):
        raise _broken(case_dir, "its node list is not a list")
    seen: dict[str, int] = {}
    for index, data in enumerate(raw_nodes):
        where = f"node {index + 1}"
        if not isinstance(data, dict):
            raise _broken(case_dir, f"{where} is not an object")
        try:
            kind = v.choice(data.get("kind"), f"{where}: kind", NODE_TYPES)
            node_id = v.text(data.get("id"), f"{where}: id", allow_empty=False)
            name = v.text(data.get("name", ""), f"{where}: name")
            where = f"node {index + 1} ({kind} {name or node_id!r})"
            if node_id in seen:
                raise v.InvalidValueError(
                    f"{where}: id {node_id!r} is used by node {seen[node_id] + 1} too"
                )
            seen[node_id] = index
            _check_display(data.get("display", {}), where)
            _KIND_CHECKS.get(kind, lambda d, w: None)(data, where)
        except v.InvalidValueError as exc:
            raise _broken(case_dir, exc.message.rstrip(".")) from None


def _check_display(display: Any, where: str) -> None:
    if not isinstance(display, dict):
        raise v.InvalidValueError(f"{where}: display is not an object")
    f = f"{where}: display."
    checks: dict[str, Callable[[Any, str], Any]] = {
        "visible": v.flag,
        "outline": v.flag,
        "color": lambda x, n: _unit_numbers(x, n, 3),
        "opacity": lambda x, n: _unit_numbers([x], n, 1),
        "window": lambda x, n: None if x is None else v.positive(x, n),
        "level": lambda x, n: None if x is None else v.number(x, n),
        "fusion": lambda x, n: v.choice(x, n, _FUSION),
        "colormap": lambda x, n: v.choice(x, n, _COLORMAPS),
        "checker_mm": lambda x, n: v.positive(x, n, "mm"),
    }
    for key, check in checks.items():
        if key in display:
            check(display[key], f + key)


def _unit_numbers(value: Any, field: str, count: int) -> None:
    values = v.numbers(value, field, count)
    if any(x < 0 or x > 1 for x in values):
        raise v.InvalidValueError(f"{field}: {value!r} must lie between 0 and 1")


def _optional_text(data: Mapping[str, Any], key: str, where: str) -> None:
    if key in data and data[key] is not None:
        v.text(data[key], f"{where}: {key}")


def _points(value: Any, field: str, most: int | None = None) -> None:
    if not isinstance(value, list) or (most is not None and len(value) > most):
        expected = f"a list of at most {most} points" if most else "a list of points"
        raise v.InvalidValueError(f"{field}: {value!r} is not {expected}"[:200])
    for n, p in enumerate(value):
        v.point(p, f"{field}[{n}]")


def _trajectory(data: Mapping[str, Any], where: str) -> None:
    # Equal points are not damage (two clicks on one spot): the path check refuses them.
    v.point(data.get("entry"), f"{where}: entry")
    v.point(data.get("target"), f"{where}: target")
    _optional_text(data, "device_id", where)
    if "locked" in data:
        v.flag(data["locked"], f"{where}: locked")


def _measurement(data: Mapping[str, Any], where: str) -> None:
    measure = v.choice(data.get("measure", "distance"), f"{where}: measure", _MEASURES)
    _points(data.get("points", []), f"{where}: points", _MEASURES[measure])


def _landmarks(data: Mapping[str, Any], where: str) -> None:
    points = data.get("points", [])
    _points(points, f"{where}: points")
    labels = data.get("labels", [])
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise v.InvalidValueError(f"{where}: labels is not a list of names")
    _optional_text(data, "volume_id", where)


def _labelmap(data: Mapping[str, Any], where: str) -> None:
    _optional_text(data, "reference_id", where)
    labels = data.get("labels", {})
    if not isinstance(labels, dict):
        raise v.InvalidValueError(f"{where}: labels is not an object")
    for key, info in labels.items():
        field = f"{where}: labels[{key!r}]"
        if not key.isdigit():
            raise v.InvalidValueError(f"{field}: a label value must be a whole number >= 0")
        if not isinstance(info, dict):
            raise v.InvalidValueError(f"{field} is not an object")
        v.text(info.get("name"), f"{field}.name")
        _unit_numbers(info.get("color"), f"{field}.color", 3)


def _volume(data: Mapping[str, Any], where: str) -> None:
    if "role" in data:
        v.choice(data["role"], f"{where}: role", _ROLES)
    source = data.get("source", {})
    if not isinstance(source, dict):
        raise v.InvalidValueError(f"{where}: source is not an object")
    for key in ("path", "abs_path", "series_uid", "study_uid", "frame_of_reference_uid"):
        _optional_text(source, key, f"{where}: source")
    _optional_text(data, "transform_id", where)


def _zone(data: Mapping[str, Any], where: str) -> None:
    _optional_text(data, "trajectory_id", where)
    _optional_text(data, "model", where)
    params = data.get("parameters", {})
    if not isinstance(params, dict):
        raise v.InvalidValueError(f"{where}: parameters is not an object")
    for key in ("power_w", "time_s", "freeze_s", "volume_ml"):
        if params.get(key) is not None:
            v.positive(params[key], f"{where}: parameters.{key}")
    probes = params.get("probe_trajectory_ids", [])
    if not isinstance(probes, list) or not all(isinstance(p, str) for p in probes):
        raise v.InvalidValueError(f"{where}: parameters.probe_trajectory_ids is not a list of ids")
    if "clip_cortex" in params:
        v.flag(params["clip_cortex"], f"{where}: parameters.clip_cortex")
    _optional_text(params, "device_id", where)


def _transform(data: Mapping[str, Any], where: str) -> None:
    if not isinstance(data.get("metric", {}), dict):
        raise v.InvalidValueError(f"{where}: metric is not an object")


_KIND_CHECKS: dict[str, Callable[[Mapping[str, Any], str], None]] = {
    "trajectory": _trajectory,
    "measurement": _measurement,
    "landmarks": _landmarks,
    "labelmap": _labelmap,
    "volume": _volume,
    "zone": _zone,
    "transform": _transform,
}


def _broken(case_dir: Path, what: str) -> CaseFileError:
    return CaseFileError(
        f"The case '{case_dir}' is damaged: {what}.",
        hint="Open an earlier copy or the autosaved recovery copy; the file was left as is.",
    )
