"""Load one DICOM series as a :class:`~guideplan.core.Volume` in LPS geometry.

The fast path (a regular stack of uncompressed slices, integer rescale) reads every
frame's bytes straight into one preallocated int16 array and rescales it in place, so the
peak memory is about the volume itself. Irregular stacks (gaps, gantry tilt) are
resampled onto the orthogonal grid that :mod:`guideplan.io.slice_stack` designed, and
the warnings say so.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from guideplan.core.errors import (
    AmbiguousSeriesError,
    CancelledError,
    NoSeriesError,
    NotDicomError,
    PixelDataError,
    SeriesNotFoundError,
    VolumeFormationError,
)
from guideplan.core.progress import as_cancel, sub_progress
from guideplan.core.volume import Volume
from guideplan.io.dicom_headers import FrameHeader
from guideplan.io.dicom_pixels import allocate_stack, read_frames, stored_dtype
from guideplan.io.dicom_scan import ScanReport, SeriesInfo, scan
from guideplan.io.pet import suv_factor
from guideplan.io.slice_stack import StackPlan

ProgressFn = Callable[[float, str], None]
CancelFn = Callable[[], bool]


def load_series(
    path: str | os.PathLike | ScanReport | SeriesInfo,
    series_uid: str | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
) -> Volume:
    """Load a series from a folder/zip/file (or from an earlier scan) as a Volume.

    With several loadable series in ``path`` and no ``series_uid``, raises
    :class:`AmbiguousSeriesError` listing them.
    """
    cancel = as_cancel(cancel)
    if isinstance(path, SeriesInfo):
        info = path
    else:
        if isinstance(path, ScanReport):
            report = path
        else:
            report = scan(path, progress=sub_progress(progress, 0.0, 0.2), cancel=cancel)
        info = choose_series(report, series_uid)
    return load_series_info(info, progress=sub_progress(progress, 0.2, 1.0), cancel=cancel)


def choose_series(report: ScanReport, series_uid: str | None) -> SeriesInfo:
    """The series to load: the one asked for, or the only loadable one."""
    if series_uid is not None:
        matches = [s for s in report.series if s.series_uid == series_uid]
        if not matches:
            raise SeriesNotFoundError(
                f"Series {series_uid} is not in '{report.root}'.",
                hint="Run 'guideplan scan' on the folder to list the series it holds.",
            )
        loadable = [s for s in matches if s.can_load]
        if not loadable:
            raise VolumeFormationError(
                f"Series {series_uid} cannot be loaded as a volume: {matches[0].error}.",
                hint="Choose another series of the study.",
            )
        return loadable[0]
    volumes = report.volumes
    if len(volumes) == 1:
        return volumes[0]
    if not volumes:
        if report.series:
            reasons = "; ".join(
                f"series {s.series_number or '?'} '{s.description}': {s.error}"
                for s in report.series[:5]
            )
            raise VolumeFormationError(
                f"No series in '{report.root}' forms a volume ({reasons}).",
                hint="Choose a folder with an axial CT, MR or PET series of at least two slices.",
            )
        reasons = "; ".join(sorted({s.reason for s in report.skipped}))[:400]
        if report.skipped and all(s.reason == "not a DICOM file" for s in report.skipped):
            raise NotDicomError(
                f"'{report.root}' holds no DICOM files ({len(report.skipped)} other file(s)).",
                hint="Choose the folder with the images exported from the scanner or PACS.",
            )
        raise NoSeriesError(
            f"No DICOM image series found in '{report.root}'"
            + (f" ({len(report.skipped)} file(s) skipped: {reasons})." if report.skipped else "."),
            hint="Choose the folder that holds the CT images (not a report or a viewer folder).",
        )
    listing = "; ".join(
        f"{s.modality} #{s.series_number or '?'} '{s.description}' "
        f"({s.n_slices} slices) uid={s.series_uid}"
        for s in volumes
    )
    raise AmbiguousSeriesError(
        f"'{report.root}' holds {len(volumes)} series: {listing}.",
        hint="Choose one of them (series picker, or --series UID on the command line).",
    )


def choose_planning_series(report: ScanReport) -> SeriesInfo:
    """The series a planning session starts from: a CT if there is one, the largest first.

    Used where a whole study folder is opened at once (the GUI, ``guideplan render``);
    :func:`choose_series` stays strict for scripted use.
    """
    volumes = sorted(report.volumes, key=lambda s: (s.modality != "CT", -s.n_slices))
    if not volumes:
        return choose_series(report, None)  # raises the explanatory error
    return volumes[0]


def load_series_info(
    info: SeriesInfo,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
) -> Volume:
    """Read the pixels of a scanned series and build its Volume."""
    cancel = as_cancel(cancel)
    if not info.can_load or info.plan is None:
        raise VolumeFormationError(
            f"Series '{info.description or info.series_uid}' cannot be loaded as a volume: "
            f"{info.error or 'no geometry'}.",
            hint="Choose another series; run 'guideplan scan' to see what the folder holds.",
        )
    if info.damaged:
        names = ", ".join(Path(d.path).name for d in info.damaged[:5])
        raise PixelDataError(
            f"{len(info.damaged)} file(s) of series '{info.description or info.series_uid}' "
            f"are damaged ({names}): {info.damaged[0].reason}.",
            hint="Copy the series again from the scanner or PACS; guideplan does not fill "
            "damaged slices by guesswork.",
        )
    plan = info.plan
    frames = [info.frames[int(i)] for i in plan.order]
    rescale = _rescale_plan(frames)

    src_dtype = stored_dtype(frames[0]).newbyteorder("=")
    rows, cols = frames[0].rows, frames[0].columns
    # Fast path: read stored values directly into the output buffer, rescale in place.
    stack = allocate_stack(frames, (len(frames), rows, cols), src_dtype)

    n = len(frames)

    def on_frame(done: int) -> None:
        if progress is not None and (done % 8 == 0 or done == n):
            progress(0.9 * done / n, f"Reading slices {done}/{n}")

    read_frames(frames, stack, progress=on_frame, cancel=cancel)
    if cancel is not None and cancel():
        raise CancelledError("Loading cancelled; nothing was changed.")

    warnings = list(info.warnings)
    values = rescale.apply(stack, in_place=True)
    del stack
    if not plan.regular:
        if progress is not None:
            progress(0.92, "Resampling onto a regular grid")
        values = _regularize(values, plan, fill=float(values.min()))
    factor, units, suv_warning = _units(info, frames)
    if suv_warning:
        warnings.append(suv_warning)
    if factor != 1.0:
        values = values.astype(np.float32, copy=False)
        values *= np.float32(factor)
    if progress is not None:
        progress(1.0, "Loaded")

    first = frames[0]
    meta = {
        "modality": info.modality,
        "series_uid": info.series_uid,
        "study_uid": info.study_uid,
        "frame_of_reference_uid": info.frame_of_reference_uid,
        "description": info.description,
        "series_number": info.series_number,
        "patient_name": info.patient_name,
        "patient_id": info.patient_id,
        "patient_position": first.patient_position,
        "study_date": first.study_date,
        "units": units,
        "warnings": warnings,
        "resampled": not plan.regular,
        "gantry_tilt_deg": plan.tilt_deg,
        "slice_thickness_mm": first.slice_thickness,
        "n_source_slices": len(frames),
        "source_path": _source_folder(info),
    }
    return Volume(
        array=values,
        spacing=plan.spacing,
        origin=tuple(plan.origin),
        direction=plan.direction,
        meta=meta,
    )


# -- rescale ---------------------------------------------------------------------------
class _Rescale:
    """Stored values -> real values (HU for CT), per frame, in the smallest exact dtype.

    The output type is chosen from the values actually present, not from the stored
    type's theoretical range: signed 16-bit CT with intercept -1024 fits int16 in practice,
    and keeping it int16 halves the memory of a load.
    """

    def __init__(self, slopes: np.ndarray, intercepts: np.ndarray) -> None:
        self.slopes = slopes
        self.intercepts = intercepts
        self.identity = bool(np.all(slopes == 1) and np.all(intercepts == 0))
        self.integer = bool(
            np.all(slopes == np.round(slopes)) and np.all(intercepts == np.round(intercepts))
        )

    def output_dtype(self, stack: np.ndarray) -> np.dtype:
        lo, hi = float(stack.min()), float(stack.max())
        ends = np.concatenate(
            [self.slopes * lo + self.intercepts, self.slopes * hi + self.intercepts]
        )
        if not np.all(np.abs(ends) < np.finfo(np.float32).max):
            raise PixelDataError(
                "RescaleSlope/RescaleIntercept turn the stored values into numbers beyond "
                f"any image's range ({ends.min():.3g} .. {ends.max():.3g}).",
                hint="The files' rescale attributes are damaged; re-export the series.",
            )
        if stack.dtype.kind not in "iu" or not self.integer:
            return np.dtype(np.float32)
        for candidate in (np.int16, np.int32):
            info = np.iinfo(candidate)
            if ends.min() >= info.min and ends.max() <= info.max:
                if self.identity and stack.dtype.kind == "u" and stack.dtype.itemsize < 2:
                    return np.dtype(np.int16)
                return np.dtype(candidate)
        return np.dtype(np.float32)

    def apply(self, stack: np.ndarray, in_place: bool) -> np.ndarray:
        dtype = self.output_dtype(stack)
        if self.identity and stack.dtype == dtype:
            return stack
        if in_place and stack.dtype.itemsize == dtype.itemsize and dtype.kind in "iu":
            # Values were checked to fit: reinterpreting the bits (uint16 -> int16) keeps
            # them exact, and the affine below cannot overflow.
            out = stack.view(dtype)
        else:
            out = stack.astype(dtype)
        if self.identity:
            return out
        same = bool(
            np.all(self.slopes == self.slopes[0]) and np.all(self.intercepts == self.intercepts[0])
        )
        if same:
            _affine_inplace(out, self.slopes[0], self.intercepts[0])
        else:
            for k in range(len(out)):
                _affine_inplace(out[k], self.slopes[k], self.intercepts[k])
        return out


def _affine_inplace(a: np.ndarray, slope: float, intercept: float) -> None:
    if a.dtype.kind == "f":
        if slope != 1:
            a *= a.dtype.type(slope)
        if intercept != 0:
            a += a.dtype.type(intercept)
    else:
        if slope != 1:
            np.multiply(a, int(slope), out=a, casting="unsafe")
        if intercept != 0:
            np.add(a, int(intercept), out=a, casting="unsafe")


def _rescale_plan(frames: list[FrameHeader]) -> _Rescale:
    slopes = np.array([f.rescale_slope for f in frames], dtype=float)
    intercepts = np.array([f.rescale_intercept for f in frames], dtype=float)
    return _Rescale(slopes, intercepts)


# -- irregular stacks ------------------------------------------------------------------
def _regularize(values: np.ndarray, plan: StackPlan, fill: float) -> np.ndarray:
    """Resample ordered source slices onto the plan's orthogonal, uniform grid."""
    cols, rows, n_out = plan.size
    out = np.empty((n_out, rows, cols), dtype=values.dtype)
    work = np.float32 if values.dtype.kind != "f" else values.dtype
    cache: dict[int, np.ndarray] = {}

    def shifted(k: int) -> np.ndarray:
        if k not in cache:
            if len(cache) > 4:
                cache.pop(next(iter(cache)))
            cache[k] = _place_shifted(
                values[k].astype(work), plan.inplane_shift_px[k], rows, cols, fill
            )
        return cache[k]

    for m, (a, b, w) in enumerate(plan.blend):
        sa = shifted(a)
        sl = sa if w == 0.0 else (1.0 - w) * sa + w * shifted(b)
        out[m] = np.rint(sl) if out.dtype.kind in "iu" else sl
    return out


def _place_shifted(
    image: np.ndarray, shift_px: np.ndarray, rows: int, cols: int, fill: float
) -> np.ndarray:
    """Put ``image`` into a (rows, cols) canvas with its pixel (0, 0) at ``shift_px`` >= 0.

    Sub-pixel shifts are bilinear; the canvas outside the image is ``fill``.
    """
    si, sj = float(shift_px[0]), float(shift_px[1])
    i0, j0 = int(np.floor(si)), int(np.floor(sj))
    fi, fj = si - i0, sj - j0
    if (rows, cols) == image.shape and i0 == j0 == 0 and fi < 1e-6 and fj < 1e-6:
        return image
    h, w = image.shape
    if fi > 1e-6 or fj > 1e-6:
        # canvas(x) = image(x - s): pad with fill, blend the four neighbours.
        padded = np.full((h + 2, w + 2), fill, dtype=image.dtype)
        padded[1 : h + 1, 1 : w + 1] = image
        image = (
            (1 - fi) * (1 - fj) * padded[1:, 1:]
            + fi * (1 - fj) * padded[1:, :-1]
            + (1 - fi) * fj * padded[:-1, 1:]
            + fi * fj * padded[:-1, :-1]
        ).astype(image.dtype)
    canvas = np.full((rows, cols), fill, dtype=image.dtype)
    ih = min(image.shape[0], rows - j0)
    iw = min(image.shape[1], cols - i0)
    canvas[j0 : j0 + ih, i0 : i0 + iw] = image[:ih, :iw]
    return canvas


# -- units -----------------------------------------------------------------------------
def _units(info: SeriesInfo, frames: list[FrameHeader]) -> tuple[float, str, str | None]:
    if info.modality == "CT":
        return 1.0, "HU", None
    if info.modality == "PT":
        return suv_factor(frames[0].pet)
    return 1.0, "", None


# -- helpers ---------------------------------------------------------------------------
def _source_folder(info: SeriesInfo) -> str:
    """The folder (or zip archive) the series' files live in."""
    paths = {f.ref.path for f in info.frames}
    common = os.path.commonpath(list(paths)) if paths else ""
    return common if os.path.isdir(common) or common.endswith(".zip") else os.path.dirname(common)
