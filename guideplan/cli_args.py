"""Argument types and checks of the command line, on top of :mod:`guideplan.core.validate`.

``argparse`` ``type=`` functions refuse a bad value before anything is loaded (argparse
then prints the usage line and the reason, exit status 2); the checks that need the
images (a point inside the CT) run once the volume is loaded. Each message names the
option and says what to give instead.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from guideplan.core import validate as v

#: Mask files the writers know (by suffix); a DICOM SEG is written for .dcm.
MASK_SUFFIXES = (".nrrd", ".nhdr", ".nii", ".nii.gz", ".mha", ".mhd", ".dcm")


def _argtype(check: Callable[[str], Any], name: str) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            return check(text)
        except v.InvalidValueError as exc:
            message = exc.message.split(": ", 1)[-1] if ": " in exc.message else exc.message
            raise argparse.ArgumentTypeError(
                message.rstrip(".") + (f". {exc.hint}" if exc.hint else "")
            ) from None

    parse.__name__ = name  # argparse shows it in "invalid <name> value"
    return parse


def lps_point(text: str) -> str:
    """x,y,z in LPS mm, three finite numbers (kept as text: the commands parse it)."""
    v.point(text, "point", "10,-20,35")
    return text


def positive_float(unit: str, *, allow_zero: bool = False) -> Callable[[str], float]:
    return _argtype(
        lambda t: v.positive(t, "value", unit, allow_zero=allow_zero), f"positive {unit}"
    )


def at_least(minimum: int) -> Callable[[str], int]:
    return _argtype(lambda t: v.integer_at_least(t, "value", minimum), f"integer >= {minimum}")


def sphere(text: str) -> str:
    """x,y,z,radius: a finite centre and a radius > 0 (mm)."""
    values = v.numbers(text, "sphere", 4, "10,-20,35,40")
    v.positive(values[3], "radius", "mm")
    return text


def hu_range(text: str) -> str:
    lo, hi = v.numbers(text, "range", 2, "-20,80")
    if lo >= hi:
        raise v.InvalidValueError(f"range: {text} has lo >= hi.", hint="Example: --range -20,80.")
    return text


def size(text: str) -> str:
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.isdigit() and 16 <= int(p) <= 16384 for p in parts):
        raise v.InvalidValueError(
            f"size: {text} is not WIDTHxHEIGHT (16..16384 pixels each).",
            hint="Example: --size 1200x900.",
        )
    return text


def level(text: str) -> str:
    from guideplan.planning.context import LEVELS

    return v.choice(text, "level", LEVELS)


def mask_output(text: str) -> str:
    name = Path(text).name.lower()
    if not any(name.endswith(s) for s in MASK_SUFFIXES) or name in MASK_SUFFIXES:
        raise v.InvalidValueError(
            f"output: {text} has no mask file suffix.",
            hint=f"Give a file ending in {', '.join(MASK_SUFFIXES)}.",
        )
    parent = Path(text).parent
    if str(parent) not in ("", ".") and not parent.is_dir():
        raise v.InvalidValueError(
            f"output: the folder {parent} does not exist.", hint="Create it first."
        )
    return text


def existing_path(text: str) -> str:
    if not os.path.exists(text):
        raise v.InvalidValueError(
            f"path: {text} does not exist.", hint="Check the path (and its spelling)."
        )
    return text


LPS_POINT = _argtype(lps_point, "LPS point x,y,z")
SPHERE = _argtype(sphere, "sphere x,y,z,radius")
HU_RANGE = _argtype(hu_range, "range lo,hi")
SIZE = _argtype(size, "size WIDTHxHEIGHT")
LEVEL = _argtype(level, "vertebral level")
MASK_OUTPUT = _argtype(mask_output, "mask file")
EXISTING = _argtype(existing_path, "path")


# -- checks that need the images --------------------------------------------------------
def inside(volume: Any, point: np.ndarray, option: str) -> np.ndarray:
    """The point, if it lies inside the CT; else an error naming the option."""
    return v.point_in_volume(np.asarray(point, dtype=float), volume, option)


def needle_path(volume: Any, entry: np.ndarray, target: np.ndarray) -> None:
    """--entry and --target: both inside the CT, and apart."""
    inside(volume, target, "--target")
    inside(volume, entry, "--entry")
    v.distinct_points(entry, target, "--entry and --target")


def known_devices(args: argparse.Namespace) -> None:
    """--device, --zone-device and --cement-device name devices of the right kind."""
    from guideplan.planning.devices import ZONE_CHART_KINDS, CatalogError, load_catalog

    catalog = load_catalog(*getattr(args, "catalog", []))
    wanted = {
        "device": None,
        "zone_device": ZONE_CHART_KINDS,
        "cement_device": ("cement_trocar",),
    }
    for option, kinds in wanted.items():
        value = getattr(args, option, None)
        if not value:
            continue
        device = catalog.get(value)
        if kinds is not None and device.kind not in kinds:
            fitting = ", ".join(d.id for d in catalog.of_kind(*kinds)) or "none"
            raise CatalogError(
                f"--{option.replace('_', '-')} {value} is a {device.kind.replace('_', ' ')}, "
                f"not a {' or '.join(k.replace('_', ' ') for k in kinds)}.",
                hint=f"Devices of that kind: {fitting}.",
            )
