"""The teaching information of a bundled sample case (its ``case.json``, not ``truth/``).

A sample case folder holds ``ct/``, priors, and a ``case.json`` with the indication, the
findings and the target (bone, vertebral level). The planner uses the level (the spinal
cord or only nerve roots at the treated level) as a radiologist knows it from the
request; the application never reads ``truth/``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

#: What is carried into a plan's case information.
CARRIED = ("title", "indication", "findings", "target", "planning_notes")


def read_sample_info(folder: str | Path) -> dict[str, Any]:
    """The carried fields of ``folder/case.json``; empty when there is none or it is not
    a sample case description (a damaged file is ignored: it is teaching material only)."""
    path = Path(folder) / "case.json"
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(doc, dict) or "series" not in doc or "target" not in doc:
        return {}
    return {key: doc[key] for key in CARRIED if key in doc}


def sample_target(folder: str | Path | None) -> tuple[str | None, str | None]:
    """(vertebral level, host bone) a sample case states, or (None, None)."""
    if not folder:
        return None, None
    target = read_sample_info(folder).get("target")
    if not isinstance(target, dict):
        return None, None
    return target.get("vertebral_level"), target.get("bone")
