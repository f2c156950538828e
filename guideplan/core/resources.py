"""Where the editable data files live (resources/), and reading them.

Clinical and display numbers are data with their source beside them, never literals in
code. A user can override any file by putting a copy in ``$GUIDEPLAN_HOME/resources``
(or ``~/.config/guideplan/resources``): the user's values win, key by key.
"""

from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path
from typing import Any

from guideplan.core.errors import GuideplanError

PACKAGE_RESOURCES = Path(__file__).resolve().parents[2] / "resources"


def user_resources_dir() -> Path:
    home = os.environ.get("GUIDEPLAN_HOME")
    if home:
        return Path(home) / "resources"
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "guideplan" / "resources"


def resource_path(name: str) -> Path:
    user = user_resources_dir() / name
    return user if user.exists() else PACKAGE_RESOURCES / name


@cache
def load_json(name: str) -> dict[str, Any]:
    """A resource file; a user's copy is laid over the default key by key (nested
    objects merge, other values replace), so a copy edited for an older version keeps
    working when a newer one adds settings."""
    default = PACKAGE_RESOURCES / name
    user = user_resources_dir() / name
    if not user.exists():
        return _read_json(default)  # says so when it is missing
    mine = _read_json(user)
    return _overlay(_read_json(default), mine) if default.exists() else mine


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise GuideplanError(
            f"Resource file {path} is missing.",
            hint="Reinstall guideplan, or remove your edited copy to use the default.",
        ) from None
    except json.JSONDecodeError as exc:
        raise GuideplanError(
            f"Resource file {path} is not valid JSON ({exc}).",
            hint="Fix the file or delete your edited copy to return to the default.",
        ) from None


def _overlay(base: Any, top: Any) -> Any:
    """``top`` over ``base``: objects merge recursively, anything else is replaced."""
    if not isinstance(base, dict) or not isinstance(top, dict):
        return top
    merged = dict(base)
    for key, value in top.items():
        merged[key] = _overlay(base.get(key), value) if key in base else value
    return merged


def window_level_presets() -> dict[str, tuple[float, float]]:
    data = load_json("display_presets.json")["window_level"]
    return {name: (float(v["window"]), float(v["level"])) for name, v in data.items()}
