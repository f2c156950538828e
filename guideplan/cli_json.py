"""The JSON the command line prints and writes: always valid JSON.

Python's ``json.dumps`` writes ``NaN`` and ``Infinity``, which no JSON parser accepts
(``suggest --target nan,0,0`` printed such a document). The CLI imports this module
in place of :mod:`json`: ``dumps`` turns non-finite numbers into ``null`` first.
"""

from __future__ import annotations

import json
from typing import Any

from guideplan.core.validate import finite_json

JSONDecodeError = json.JSONDecodeError
loads = json.loads


def dumps(value: Any, **kwargs: Any) -> str:
    kwargs.setdefault("allow_nan", False)
    return json.dumps(finite_json(value), **kwargs)
