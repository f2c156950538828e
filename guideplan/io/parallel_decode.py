"""Decode compressed frames in worker processes, straight into shared output memory.

The JPEG-LS, JPEG 2000, JPEG lossless and RLE decoders (pyjpegls, pylibjpeg-openjpeg,
pylibjpeg-libjpeg, pylibjpeg-rle) hold the GIL while they decode (measured on one
512x512 CT frame, 40 decodes: 1 thread vs 2 threads, JPEG-LS 1.17x, JPEG 2000 0.89x,
JPEG lossless 0.96x), so threads cannot use a second core. Worker processes can.

The output stack is allocated in anonymous shared memory (``mmap(-1, n)`` is
``MAP_SHARED``): workers forked after it exists write each decoded frame into their
slice of it, and the parent's array *is* the volume: no copy back, no pickled pixels,
so the peak memory stays about the volume itself. Forking needs the decoders imported
before the fork (the first file is decoded in the parent for that) and POSIX ``fork``;
elsewhere (Windows, macOS) and for small series the caller decodes with threads.
``GUIDEPLAN_DECODE_WORKERS`` sets the number of processes (1: none).
"""

from __future__ import annotations

import mmap
import multiprocessing
import os
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

import numpy as np

from guideplan.core.errors import CancelledError, PixelDataError

#: Fewer compressed frames than this are decoded in-process (forking costs ~10 ms).
MIN_FRAMES = 16
#: Files per task: enough to make the per-task messages negligible.
FILES_PER_TASK = 4
MAX_WORKERS = 16

#: What the forked workers decode: (decode function, frames, output), set before the fork.
_JOB: tuple[Callable, Sequence, np.ndarray] | None = None


def worker_count(n_frames: int) -> int:
    """Processes to decode ``n_frames`` compressed frames with (0: decode in-process)."""
    env = os.environ.get("GUIDEPLAN_DECODE_WORKERS", "").strip()
    if env.isdigit():
        wanted = int(env)
    else:
        try:
            wanted = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            wanted = os.cpu_count() or 1
    if wanted < 2 or n_frames < MIN_FRAMES or not _can_fork():
        return 0
    return min(wanted, MAX_WORKERS, max(1, n_frames // FILES_PER_TASK))


def _can_fork() -> bool:
    return sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods()


def shared_zeros(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """A zeroed array in anonymous shared memory (what forked workers can write into)."""
    dtype = np.dtype(dtype)
    count = int(np.prod(shape))
    buffer = mmap.mmap(-1, max(count * dtype.itemsize, 1))
    return np.frombuffer(buffer, dtype=dtype, count=count).reshape(shape)


def is_shared(array: np.ndarray) -> bool:
    base: object = array
    while isinstance(base, np.ndarray | memoryview):
        base = base.base if isinstance(base, np.ndarray) else base.obj
    return isinstance(base, mmap.mmap)


def _task(indices: list[list[int]]) -> tuple[str, int, str, str | None]:
    """In a worker: decode the files of one task into the shared output."""
    assert _JOB is not None
    decode, frames, out = _JOB
    done = 0
    try:
        for file_indices in indices:
            decode([frames[k] for k in file_indices], [out[k] for k in file_indices])
            done += len(file_indices)
    except PixelDataError as exc:
        return ("error", done, exc.message, exc.hint)
    except Exception as exc:  # reported to the parent as a PixelDataError
        return ("error", done, f"{type(exc).__name__}: {exc}", None)
    return ("ok", done, "", None)


def decode_in_processes(
    decode: Callable,
    frames: Sequence,
    out: np.ndarray,
    jobs: list[list[int]],
    workers: int,
    progress: Callable[[int], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> None:
    """Run ``decode(frames_of_file, targets)`` for every job, in ``workers`` processes.

    ``out`` must be :func:`shared_zeros` memory. The first job runs here, before the
    fork, so that the decoder plugins are imported once and inherited.
    """
    global _JOB
    if not is_shared(out):
        raise ValueError("decode_in_processes needs an output made by shared_zeros")
    first, rest = jobs[0], jobs[1:]
    decode([frames[k] for k in first], [out[k] for k in first])
    done = len(first)
    if progress is not None:
        progress(done)
    tasks = [rest[i : i + FILES_PER_TASK] for i in range(0, len(rest), FILES_PER_TASK)]
    _JOB = (decode, frames, out)
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("fork"))
    try:
        pending: set[Future] = {pool.submit(_task, t) for t in tasks}
        while pending:
            finished, pending = wait(pending, timeout=0.25, return_when=FIRST_COMPLETED)
            if cancel is not None and cancel():
                raise CancelledError("Loading cancelled; nothing was changed.")
            for fut in finished:
                try:
                    status, count, message, hint = fut.result()
                except BrokenProcessPool:
                    raise PixelDataError(
                        "A decoder process stopped abruptly while decoding this series "
                        "(a damaged compressed file can crash a codec).",
                        hint="Re-export the series, or load it uncompressed.",
                    ) from None
                if status == "error":
                    raise PixelDataError(
                        message,
                        hint=hint
                        or "The file may be damaged or use a codec that is not installed; "
                        "re-export the series.",
                    )
                done += count
                if progress is not None:
                    progress(done)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        _JOB = None
