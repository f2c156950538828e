"""One set of checks for every value a user (or a file) hands in: CLI, GUI and case files.

Each check returns the value in the type the program uses, or raises
:class:`InvalidValueError` whose message names the field, says what was found and what
is expected, so that the user can fix it ("--target: nan,0,0 is not three finite numbers
(LPS mm) ..."). Pure functions of their arguments: no Qt, no files.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from typing import Any

import numpy as np

from guideplan.core.errors import GuideplanError


class InvalidValueError(GuideplanError, ValueError):
    """A value given by the user (or read from a file) is not acceptable."""

    title = "Invalid value"


def _shown(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _fail(field: str, value: Any, expected: str, hint: str | None = None) -> InvalidValueError:
    return InvalidValueError(f"{field}: {_shown(value)} is not {expected}.", hint=hint)


def number(value: Any, field: str) -> float:
    """A finite real number (bools, NaN, inf, text that is not a number refused)."""
    if isinstance(value, bool) or value is None:
        raise _fail(field, value, "a number")
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise _fail(field, value, "a number") from None
    if not math.isfinite(out):
        raise _fail(field, value, "a finite number", "Give an ordinary number, not NaN or inf.")
    return out


def positive(value: Any, field: str, unit: str = "", *, allow_zero: bool = False) -> float:
    """A finite number > 0 (>= 0 with ``allow_zero``): volumes, powers, times, radii."""
    out = number(value, field)
    if out < 0 or (out == 0 and not allow_zero):
        what = "zero or more" if allow_zero else "more than zero"
        raise InvalidValueError(
            f"{field}: {_shown(value)} must be {what}{f' ({unit})' if unit else ''}.",
            hint=f"Give a positive value{f' in {unit}' if unit else ''}.",
        )
    return out


def integer_at_least(value: Any, field: str, minimum: int) -> int:
    if isinstance(value, bool):
        raise _fail(field, value, "a whole number")
    try:
        out = int(value)
    except (TypeError, ValueError):
        raise _fail(field, value, "a whole number") from None
    if isinstance(value, float) and value != out:
        raise _fail(field, value, "a whole number")
    if out < minimum:
        raise InvalidValueError(
            f"{field}: {out} must be at least {minimum}.", hint=f"Give {minimum} or more."
        )
    return out


def numbers(value: Any, field: str, count: int, example: str = "") -> np.ndarray:
    """``count`` finite numbers, from "a,b,c" text or a sequence."""
    items: Sequence[Any]
    if isinstance(value, str):
        items = [v.strip() for v in value.split(",")]
    elif isinstance(value, list | tuple | np.ndarray):
        items = list(value)
    else:
        raise _fail(field, value, f"{count} numbers", f"Example: {example}." if example else None)
    if len(items) != count:
        raise _fail(field, value, f"{count} numbers", f"Example: {example}." if example else None)
    hint = f"Example: {example}." if example else None
    out = []
    for item in items:
        try:
            out.append(number(item, field))
        except InvalidValueError:
            raise _fail(field, value, f"{count} finite numbers", hint) from None
    return np.array(out, dtype=float)


def point(value: Any, field: str, example: str = "10,-20,35") -> np.ndarray:
    """An LPS point: three finite numbers in millimetres."""
    return numbers(value, field, 3, example)


def point_in_volume(p: np.ndarray, volume: Any, field: str) -> np.ndarray:
    """``p`` lies inside the volume's voxel grid (half a voxel of slack at the faces)."""
    ijk = volume.physical_to_index(p)
    if not volume.contains_index(ijk):
        lo, hi = volume.bounds_lps()
        box = ", ".join(f"{a:.1f}..{b:.1f}" for a, b in zip(lo, hi, strict=True))
        raise InvalidValueError(
            f"{field}: {_fmt(p)} is outside the images (LPS x, y, z within {box} mm).",
            hint="Give a point inside the CT; read it off the slice views or 'guideplan load'.",
        )
    return p


def distinct_points(a: np.ndarray, b: np.ndarray, fields: str, min_mm: float = 1.0) -> None:
    """Two points at least ``min_mm`` apart (an entry on its target has no direction)."""
    gap = float(np.linalg.norm(np.asarray(a) - np.asarray(b)))
    if gap < min_mm:
        raise InvalidValueError(
            f"{fields}: the points are {gap:.2f} mm apart; a needle path needs them at least "
            f"{min_mm:g} mm apart.",
            hint="Give an entry point on the skin and a target inside the lesion.",
        )


def choice(value: Any, field: str, choices: Collection[str]) -> str:
    """One of ``choices`` (case-insensitively), returned as spelled in ``choices``."""
    if isinstance(value, str):
        for c in choices:
            if value.strip().upper() == c.upper():
                return c
    listing = ", ".join(list(choices)[:30])
    raise InvalidValueError(
        f"{field}: {_shown(value)} is not one of the known values.",
        hint=f"Known values: {listing}.",
    )


def text(value: Any, field: str, *, allow_empty: bool = True) -> str:
    if not isinstance(value, str) or (not allow_empty and not value):
        raise _fail(field, value, "a text" if allow_empty else "a non-empty text")
    return value


def flag(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise _fail(field, value, "true or false")
    return value


def _fmt(p: np.ndarray) -> str:
    return ",".join(f"{float(v):g}" for v in p)


def finite_json(value: Any) -> Any:
    """A copy of JSON-able data in which NaN/inf became None: output is always valid JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite_json(v) for v in value]
    if isinstance(value, np.generic):
        return finite_json(value.item())
    if isinstance(value, np.ndarray):
        return finite_json(value.tolist())
    return value
