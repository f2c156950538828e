"""The device catalog: needles, cement trocars and ablation devices as data.

Built-in entries live in ``resources/devices/catalog.json``; a user's catalog (same
format) adds devices or overrides built-in ones by id. Nothing about a device is a
literal in code. Ablation devices (RF probes, microwave antennas, cryoprobes, ethanol
needles) carry their zone chart in ``Device.data["zone"]`` (format: the catalog's
``zone_schema``; read by :mod:`guideplan.planning.zones`).
"""

from __future__ import annotations

import itertools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from guideplan.core.errors import GuideplanError
from guideplan.core.resources import resource_path, user_resources_dir

CATALOG_FORMAT = "guideplan-device-catalog"
CATALOG_VERSION = 1


class CatalogError(GuideplanError):
    title = "Device catalog problem"


@dataclass(frozen=True)
class Device:
    id: str
    kind: str  # needle, cement_trocar, rf_probe, rf_bipolar, mw_antenna, cryoprobe, ethanol_needle
    name: str
    outer_diameter_mm: float
    length_mm: float
    gauge: int | None = None
    approximate: bool = True
    source: str = ""
    #: Kind-specific data (zone tables, tip lengths ...), kept as given.
    data: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    @property
    def radius_mm(self) -> float:
        return self.outer_diameter_mm / 2.0

    @classmethod
    def from_dict(cls, raw: dict[str, Any], origin: str) -> Device:
        try:
            known = {
                "id",
                "kind",
                "name",
                "outer_diameter_mm",
                "length_mm",
                "gauge",
                "approximate",
                "source",
            }
            return cls(
                id=str(raw["id"]),
                kind=str(raw["kind"]),
                name=str(raw.get("name", raw["id"])),
                outer_diameter_mm=float(raw["outer_diameter_mm"]),
                length_mm=float(raw["length_mm"]),
                gauge=int(raw["gauge"]) if raw.get("gauge") is not None else None,
                approximate=bool(raw.get("approximate", True)),
                source=str(raw.get("source", "")),
                data={k: v for k, v in raw.items() if k not in known},
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CatalogError(
                f"Device entry {raw.get('id', '?')!r} in {origin} is incomplete or invalid "
                f"({type(exc).__name__}: {exc}).",
                hint="Each device needs id, kind, outer_diameter_mm and length_mm.",
            ) from None


class Catalog:
    def __init__(self, devices: dict[str, Device]) -> None:
        self._devices = devices

    def __contains__(self, device_id: str) -> bool:
        return device_id in self._devices

    def __iter__(self):
        return iter(self._devices.values())

    def get(self, device_id: str) -> Device:
        try:
            return self._devices[device_id]
        except KeyError:
            known = ", ".join(sorted(self._devices))
            raise CatalogError(
                f"Unknown device {device_id!r}.", hint=f"Known devices: {known}."
            ) from None

    def of_kind(self, *kinds: str) -> list[Device]:
        return [d for d in self._devices.values() if d.kind in kinds]

    def default_needle(self) -> Device:
        needles = self.of_kind("needle")
        if not needles:
            raise CatalogError("The catalog has no needle.", hint="Add one to your catalog.")
        return next((d for d in needles if d.gauge == 18), needles[0])


def device_references(device: Device) -> dict[str, Any]:
    """What a report prints about where a device's figures come from: the summary, each
    reference (citation, PMID/DOI/URL, where in it, what it gives, its limits) and
    whether the chart is approximate."""
    return {
        "device": device.id,
        "name": device.name,
        "approximate": device.approximate,
        "source": device.source,
        "references": list(device.data.get("sources") or []),
    }


def user_catalog_path() -> Path:
    return user_resources_dir().parent / "devices.json"


def load_catalog(*extra: str | os.PathLike) -> Catalog:
    """Built-in catalog, then the user's catalog, then ``extra`` files (later wins)."""
    devices: dict[str, Device] = {}
    sources = [resource_path("devices/catalog.json"), user_catalog_path(), *map(Path, extra)]
    for index, path in enumerate(sources):
        if index == 1 and not path.exists():
            continue
        for device in read_catalog_file(path):
            devices[device.id] = device
    return Catalog(devices)


def read_catalog_file(path: str | os.PathLike) -> list[Device]:
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CatalogError(f"Device catalog {path} not found.", hint="Check the path.") from None
    except json.JSONDecodeError as exc:
        raise CatalogError(
            f"Device catalog {path} is not valid JSON ({exc}).", hint="Fix the file."
        ) from None
    except (OSError, UnicodeDecodeError, RecursionError) as exc:
        raise CatalogError(
            f"Device catalog {path} cannot be read ({type(exc).__name__}).",
            hint="Give a JSON device catalog file.",
        ) from None
    if not isinstance(doc, dict) or doc.get("format") != CATALOG_FORMAT:
        found = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise CatalogError(
            f"{path} is not a guideplan device catalog (format {found!r}).",
            hint=f'The file needs "format": "{CATALOG_FORMAT}" and "version": {CATALOG_VERSION}.',
        )
    version = doc.get("version", 0)
    if isinstance(version, bool) or not isinstance(version, int):
        raise CatalogError(
            f"{path}: version {version!r} is not a whole number.",
            hint=f'The file needs "version": {CATALOG_VERSION}.',
        )
    devices = doc.get("devices", [])
    if not isinstance(devices, list) or not all(isinstance(d, dict) for d in devices):
        raise CatalogError(
            f"{path}: 'devices' is not a list of device objects.",
            hint="See the 'zone_schema' of resources/devices/catalog.json for the format.",
        )
    if version > CATALOG_VERSION:
        raise CatalogError(
            f"{path} is a catalog of version {doc.get('version')}, newer than this guideplan "
            f"reads ({CATALOG_VERSION}).",
            hint="Update guideplan, or save the catalog in the older format.",
        )
    return [Device.from_dict(raw, str(path)) for raw in devices]


# ======================================================================================
# the user's catalog: validate and save (the GUI's catalog dialog, scripts)
# ======================================================================================

#: Device kinds the planner knows; ablation kinds carry a zone chart.
DEVICE_KINDS = (
    "needle",
    "cement_trocar",
    "rf_probe",
    "rf_bipolar",
    "mw_antenna",
    "cryoprobe",
    "ethanol_needle",
)
ZONE_CHART_KINDS = ("rf_probe", "rf_bipolar", "mw_antenna", "cryoprobe", "ethanol_needle")
_ID_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


def device_to_dict(device: Device) -> dict[str, Any]:
    """The catalog entry of ``device`` (the inverse of :meth:`Device.from_dict`)."""
    out: dict[str, Any] = {
        "id": device.id,
        "kind": device.kind,
        "name": device.name,
        "gauge": device.gauge,
        "outer_diameter_mm": device.outer_diameter_mm,
        "length_mm": device.length_mm,
        "approximate": device.approximate,
        "source": device.source,
    }
    if device.gauge is None:
        del out["gauge"]
    out.update(json.loads(json.dumps(device.data)))  # a deep copy of the kind's data
    return out


def _number(value: Any, what: str, where: str, *, positive: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise CatalogError(f"{where}: {what} is missing or not a number.", hint="Enter a number.")
    try:
        number = float(value)
    except ValueError:
        raise CatalogError(
            f"{where}: {what} {value!r} is not a number.", hint="Enter a number."
        ) from None
    if number != number or number in (float("inf"), float("-inf")):
        raise CatalogError(f"{where}: {what} is not a finite number.", hint="Enter a number.")
    if positive and number <= 0:
        raise CatalogError(
            f"{where}: {what} must be greater than 0 (got {number:g}).",
            hint="Enter a positive value.",
        )
    return number


def _check_chart(chart: Any, kind: str, where: str) -> None:
    if not isinstance(chart, dict):
        raise CatalogError(
            f"{where}: a {kind} needs a zone chart.",
            hint="Enter the chart from the device's instructions for use.",
        )
    if kind == "ethanol_needle":
        default = _number(chart.get("default_volume_ml"), "default volume (mL)", where)
        top = _number(chart.get("max_volume_ml", default), "maximum volume (mL)", where)
        if top < default:
            raise CatalogError(
                f"{where}: the maximum volume is below the default volume.",
                hint="Make the maximum at least the default.",
            )
        return
    params = chart.get("parameters", ["time_s"])
    if not isinstance(params, list) or not params or not set(params) <= {"power_w", "time_s"}:
        raise CatalogError(
            f"{where}: the chart's parameters must be time_s and/or power_w.",
            hint='e.g. "parameters": ["power_w", "time_s"].',
        )
    if "time_s" not in params:
        raise CatalogError(
            f"{where}: the chart needs a time_s column.",
            hint="Each chart row gives the zone after a time.",
        )
    rows = chart.get("rows")
    if not isinstance(rows, list) or not rows:
        raise CatalogError(
            f"{where}: the zone chart has no rows.",
            hint="Add at least one row (time -> zone size).",
        )
    seen: set[tuple[float, ...]] = set()
    for number, row in enumerate(rows, start=1):
        at = f"{where}, chart row {number}"
        if not isinstance(row, dict):
            raise CatalogError(f"{at} is not a table row.", hint="Each row is an object.")
        key = tuple(
            _number(row.get(p), p.replace("_", " "), at, positive=p == "power_w") for p in params
        )
        if key[params.index("time_s")] < 0:
            raise CatalogError(f"{at}: the time must not be negative.", hint="Enter a time >= 0.")
        if key in seen:
            raise CatalogError(
                f"{at} repeats the settings of an earlier row.",
                hint="Give each row different settings, or delete it.",
            )
        seen.add(key)
        _number(row.get("center_offset_mm", 0.0), "centre offset (mm)", at, positive=False)
        if kind == "cryoprobe":
            shells = row.get("isotherms")
            if not isinstance(shells, dict) or not shells:
                raise CatalogError(
                    f"{at} has no isotherms.",
                    hint="Give length and width of the 0, -20 and -40 °C shells.",
                )
            widths = []
            for name, dims in sorted(
                shells.items(),
                key=lambda kv: -_number(kv[0], "isotherm temperature", at, positive=False),
            ):
                if not isinstance(dims, dict):
                    raise CatalogError(
                        f"{at}: isotherm {name} °C has no dimensions.",
                        hint="Give its length_mm and width_mm.",
                    )
                _number(dims.get("length_mm"), f"{name} °C length (mm)", at)
                widths.append(_number(dims.get("width_mm"), f"{name} °C width (mm)", at))
            if any(b > a + 1e-9 for a, b in itertools.pairwise(widths)):
                raise CatalogError(
                    f"{at}: a colder isotherm is wider than a warmer one.",
                    hint="The -40 °C shell lies inside the -20 °C, inside 0 °C.",
                )
        else:
            _number(row.get("length_mm"), "zone length (mm)", at)
            _number(row.get("width_mm"), "zone width (mm)", at)
    if kind == "cryoprobe" and chart.get("max_probe_spacing_mm") is not None:
        _number(chart["max_probe_spacing_mm"], "maximum probe spacing (mm)", where)


def validate_device(raw: dict[str, Any], origin: str = "the catalog") -> Device:
    """A device entry checked for what the planner needs; :class:`CatalogError` with a
    message naming the field otherwise."""
    if not isinstance(raw, dict):
        raise CatalogError(
            f"A device entry in {origin} is not an object.", hint="Each device is a JSON object."
        )
    device_id = str(raw.get("id") or "").strip()
    where = f"Device {device_id!r}" if device_id else f"A device in {origin}"
    if not device_id:
        raise CatalogError(f"{where} has no id.", hint="Give the device a short unique id.")
    if not set(device_id) <= _ID_CHARS:
        raise CatalogError(
            f"{where}: the id may hold only letters, digits, '-', '_' and '.'.",
            hint="e.g. rf-mybrand-17g-3cm.",
        )
    if not str(raw.get("name") or "").strip():
        raise CatalogError(f"{where} has no name.", hint="Give the device a name.")
    if raw.get("kind") not in DEVICE_KINDS:
        raise CatalogError(
            f"{where}: unknown kind {raw.get('kind')!r}.",
            hint=f"One of: {', '.join(DEVICE_KINDS)}.",
        )
    _number(raw.get("outer_diameter_mm"), "outer diameter (mm)", where)
    _number(raw.get("length_mm"), "length (mm)", where)
    gauge = raw.get("gauge")
    if gauge is not None and (
        isinstance(gauge, bool)
        or not isinstance(gauge, int | float)
        or int(gauge) != gauge
        or not 1 <= gauge <= 40
    ):
        raise CatalogError(
            f"{where}: gauge {gauge!r} is not a whole number from 1 to 40.",
            hint="Leave it empty if the device has no gauge.",
        )
    if raw["kind"] in ZONE_CHART_KINDS:
        _check_chart(raw.get("zone"), raw["kind"], where)
    device = Device.from_dict(raw, origin)
    if device.kind in ("rf_probe", "rf_bipolar", "mw_antenna", "cryoprobe"):
        from guideplan.planning.zones import ZoneError, zone_dimensions  # zones imports us

        try:
            zone_dimensions(device)
        except (ZoneError, KeyError, ValueError, TypeError) as exc:
            raise CatalogError(
                f"{where}: the zone chart cannot be read ({exc}).", hint="Check the chart's rows."
            ) from None
    return device


def user_catalog_entries(path: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """The entries of the user's catalog as stored (empty when there is none)."""
    path = Path(path) if path is not None else user_catalog_path()
    if not path.exists():
        return []
    read_catalog_file(path)  # the format checks
    doc = json.loads(path.read_text(encoding="utf-8"))
    return [dict(raw) for raw in doc.get("devices", [])]


def save_user_catalog(entries: list[dict[str, Any]], path: str | os.PathLike | None = None) -> Path:
    """Validate ``entries`` and write them as the user's catalog, atomically (a file beside
    it, then a rename: a crash leaves the old catalog or the new one, never half)."""
    path = Path(path) if path is not None else user_catalog_path()
    ids: set[str] = set()
    for raw in entries:
        device = validate_device(raw, str(path))
        if device.id in ids:
            raise CatalogError(
                f"Two devices have the id {device.id!r}.", hint="Give each device its own id."
            )
        ids.add(device.id)
    doc = {
        "format": CATALOG_FORMAT,
        "version": CATALOG_VERSION,
        "_about": "Your devices: entries here add to the built-in catalog or replace a "
        "built-in entry of the same id (guideplan catalog dialog or a text editor).",
        "devices": entries,
    }
    text = json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise CatalogError(
            f"Cannot save the device catalog {path} ({exc}).",
            hint="Check the folder's permissions and free space.",
        ) from None
    return path


def save_user_device(
    raw: dict[str, Any], path: str | os.PathLike | None = None, *, replace_id: str | None = None
) -> Device:
    """Add ``raw`` to the user's catalog, or replace the entry of the same id (or of
    ``replace_id``, when the id was edited); returns the validated device."""
    device = validate_device(raw, "your catalog")
    entries = [e for e in user_catalog_entries(path) if e.get("id") not in {device.id, replace_id}]
    save_user_catalog([*entries, raw], path)
    return device


def delete_user_device(device_id: str, path: str | os.PathLike | None = None) -> bool:
    """Remove ``device_id`` from the user's catalog (a built-in entry it overrode returns)."""
    entries = user_catalog_entries(path)
    kept = [e for e in entries if e.get("id") != device_id]
    if len(kept) == len(entries):
        return False
    save_user_catalog(kept, path)
    return True
