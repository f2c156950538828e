"""Progress and cancel conventions shared by every long operation.

A long function takes ``progress(fraction, message)`` and ``cancel`` (a callable that
returns True to stop, or anything with ``is_set()`` such as ``threading.Event``) and
raises :class:`~guideplan.core.errors.CancelledError` when cancelled.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from guideplan.core.errors import CancelledError

ProgressFn = Callable[[float, str], None]
CancelFn = Callable[[], bool]


def as_cancel(cancel: Any) -> CancelFn | None:
    """A plain callable from a callable, an Event-like object, or None."""
    if cancel is None:
        return None
    return cancel.is_set if hasattr(cancel, "is_set") else cancel


def check_cancel(cancel: CancelFn | None, what: str = "The operation") -> None:
    if cancel is not None and cancel():
        raise CancelledError(f"{what} was cancelled; nothing was changed.")


def sub_progress(progress: ProgressFn | None, lo: float, hi: float) -> ProgressFn | None:
    """Map a sub-task's 0..1 onto ``lo..hi`` of the caller's progress."""
    if progress is None:
        return None
    return lambda f, msg: progress(lo + (hi - lo) * min(max(f, 0.0), 1.0), msg)
