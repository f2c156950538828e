"""The device catalog: needles, cement trocars and ablation devices as data.

Built-in entries live in ``resources/devices/catalog.json``; a user's catalog (same
format) adds devices or overrides built-in ones by id. Nothing about a device is a
literal in code. Ablation devices (RF probes, microwave antennas, cryoprobes, ethanol
needles) carry their zone chart in ``Device.data["zone"]`` (format: the catalog's
``zone_schema``; read by :mod:`guideplan.planning.zones`).
"""

from __future__ import annotations

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
    kind: str  # needle, cement_trocar, rf_probe, mw_antenna, cryoprobe, ethanol_needle ...
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
    if doc.get("format") != CATALOG_FORMAT:
        raise CatalogError(
            f"{path} is not a guideplan device catalog (format {doc.get('format')!r}).",
            hint=f'The file needs "format": "{CATALOG_FORMAT}" and "version": {CATALOG_VERSION}.',
        )
    if int(doc.get("version", 0)) > CATALOG_VERSION:
        raise CatalogError(
            f"{path} is a catalog of version {doc.get('version')}, newer than this guideplan "
            f"reads ({CATALOG_VERSION}).",
            hint="Update guideplan, or save the catalog in the older format.",
        )
    return [Device.from_dict(raw, str(path)) for raw in doc.get("devices", [])]
