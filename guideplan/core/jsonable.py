"""Plain JSON values from what the plan holds (numpy arrays and scalars, tuples, paths)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np


def to_jsonable(value: Any) -> Any:
    """Recursively: dict keys to str, tuples/lists to lists, numpy to Python, paths to str."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value
