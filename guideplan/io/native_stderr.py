"""Capture what native libraries (ITK, HDF5, GDCM) print on file descriptor 2.

They write diagnostics straight to the process's stderr, bypassing Python: a user saw
pages of ITK or HDF5 text before guideplan's own one-line message. Inside
:func:`captured_native_stderr` descriptor 2 points at a temporary file; afterwards the
text is available (``.text``) and summarised in one line (``.summary()``) for the
message that explains the failure. With ``GUIDEPLAN_DEBUG=1`` it is also passed on to
the real stderr.

Descriptor 2 belongs to the whole process, so captures are serialised by a lock and
nest (an inner capture leaves the outer one in charge).
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterator

_lock = threading.RLock()
_depth = 0
_MAX_KEEP = 64 << 10


class Captured:
    def __init__(self) -> None:
        self.text = ""

    def summary(self, prefix: str = "", limit: int = 160) -> str:
        """The most telling line of the captured text ("" if there was none)."""
        lines = [ln.strip() for ln in self.text.splitlines() if ln.strip()]
        if not lines:
            return ""
        telling = [ln for ln in lines if re.search(r"error|exception|fail|cannot", ln, re.I)]
        line = (telling or lines)[-1]
        line = re.sub(r"^(ITK|HDF5)[^:]*:\s*", "", line)
        if len(line) > limit:
            line = line[: limit - 3] + "..."
        more = f" (+{len(lines) - 1} lines)" if len(lines) > 1 else ""
        return f"{prefix}native library said: {line}{more}"


def debug() -> bool:
    return os.environ.get("GUIDEPLAN_DEBUG", "") not in ("", "0")


@contextlib.contextmanager
def captured_native_stderr() -> Iterator[Captured]:
    """Redirect fd 2 to a temporary file for the duration; yield what was written."""
    global _depth
    result = Captured()
    with _lock:
        if _depth:  # an outer capture already redirects fd 2
            _depth += 1
            try:
                yield result
            finally:
                _depth -= 1
            return
        try:
            saved = os.dup(2)
        except OSError:  # no stderr at all (some GUI launches): nothing to capture
            yield result
            return
        with tempfile.TemporaryFile() as sink:
            with contextlib.suppress(Exception):
                sys.stderr.flush()
            os.dup2(sink.fileno(), 2)
            _depth = 1
            try:
                yield result
            finally:
                _depth = 0
                with contextlib.suppress(Exception):
                    sys.stderr.flush()
                os.dup2(saved, 2)
                os.close(saved)
                sink.seek(0)
                result.text = sink.read(_MAX_KEEP).decode("utf-8", "replace")
        if result.text and debug():
            sys.stderr.write(result.text)
