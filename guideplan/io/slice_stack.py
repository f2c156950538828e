"""Turn a set of 2D slice positions into one regular 3D grid, honestly.

Slices are ordered by their position along the slice normal (never by file name or
InstanceNumber). The stack is then checked for what real scanners produce:

* duplicate positions (the same slice stored twice),
* irregular spacing and missing slices,
* gantry tilt: the slices' origins drift in-plane as the table moves, so the stack is
  sheared and the axis from one slice to the next is not the plane normal.

The result, :class:`StackPlan`, is an orthogonal output grid (direction columns = row
cosine, column cosine, normal) on which every voxel sits at its true LPS position, plus
for each output slice the source slices to blend and the in-plane shift to apply. When a
stack is regular the plan is the identity: output slice k is source slice k, untouched.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from guideplan.core import geometry


@dataclass
class StackPlan:
    #: Source frame indices in output order after dropping duplicates (ascending normal).
    order: np.ndarray
    #: Source position of each ordered frame along the normal, mm.
    normal_positions: np.ndarray
    #: In-plane offset of each ordered frame relative to the output grid, in pixels (i, j).
    inplane_shift_px: np.ndarray
    #: Output grid.
    spacing: tuple[float, float, float]
    origin: np.ndarray
    direction: np.ndarray
    size: tuple[int, int, int]
    #: For each output slice: (source index a, source index b, weight of b).
    blend: list[tuple[int, int, float]]
    #: Source frame indices that duplicated another frame's position.
    duplicates: list[int] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    tilt_deg: float = 0.0
    regular: bool = True  # True: output slice k is ordered source frame k, unshifted

    @property
    def needs_resampling(self) -> bool:
        return not self.regular


# Tolerances. Scanners round positions to ~1e-3 mm; anything above these is geometry.
_DUPLICATE_TOL_MM = 1e-2
_SHEAR_TOL_PX = 0.05  # total in-plane drift over the stack below this is rounding noise
_SPACING_REL_TOL = 0.05  # slice steps within 5 % of the median step count as regular
_SPACING_ABS_TOL_MM = 0.01


def plan_stack(
    positions: np.ndarray,
    orientation: np.ndarray,
    pixel_spacing: tuple[float, float],
    rows: int,
    columns: int,
    tie_break: np.ndarray | None = None,
) -> StackPlan:
    """Analyse slice positions and design the output grid.

    ``positions``: (n, 3) ImagePositionPatient; ``orientation``: the 6 direction cosines
    shared by the slices; ``pixel_spacing``: DICOM (row spacing, column spacing);
    ``tie_break``: optional per-frame key (e.g. InstanceNumber) deciding which duplicate
    is kept.
    """
    positions = np.asarray(positions, dtype=float)
    n_frames = len(positions)
    if n_frames < 2:
        raise ValueError("a volume needs at least two slices")
    direction = geometry.orientation_from_cosines(orientation[:3], orientation[3:])
    row_dir, col_dir, normal = direction[:, 0], direction[:, 1], direction[:, 2]
    dj, di = pixel_spacing  # DICOM order: row spacing (along j), column spacing (along i)

    s = positions @ normal
    keys = np.arange(n_frames) if tie_break is None else np.asarray(tie_break)
    order = np.lexsort((keys, s))
    s_sorted = s[order]

    # Duplicates: same position along the normal and in-plane.
    keep = [0]
    duplicates: list[int] = []
    for idx in range(1, n_frames):
        if abs(s_sorted[idx] - s_sorted[keep[-1]]) < _DUPLICATE_TOL_MM:
            duplicates.append(int(order[idx]))
        else:
            keep.append(idx)
    order = order[keep]
    s_sorted = s_sorted[keep]
    warnings: list[str] = []
    if duplicates:
        warnings.append(
            f"{len(duplicates)} slice(s) share a position with another slice "
            "(duplicates or a repeated acquisition); one slice per position was kept"
        )
    if len(order) < 2:
        raise ValueError("all slices share one position: they do not form a volume")

    # In-plane drift of each slice relative to the first one (gantry tilt / shear).
    rel = positions[order] - positions[order[0]]
    shift = np.column_stack([rel @ row_dir / di, rel @ col_dir / dj])
    tilt_deg = 0.0
    sheared = float(np.max(np.abs(shift))) > _SHEAR_TOL_PX
    if sheared:
        span = s_sorted[-1] - s_sorted[0]
        drift_mm = np.hypot(shift[-1, 0] * di, shift[-1, 1] * dj)
        tilt_deg = float(np.degrees(np.arctan2(drift_mm, span)))
        warnings.append(
            f"gantry tilt of {tilt_deg:.1f}° (slices are sheared): resampled onto an "
            "orthogonal grid so that every voxel sits at its true position"
        )
    else:
        shift[:] = 0.0

    steps = np.diff(s_sorted)
    median_step = float(np.median(steps))
    tol = max(_SPACING_ABS_TOL_MM, _SPACING_REL_TOL * median_step)
    uniform = bool(np.all(np.abs(steps - median_step) <= tol))
    if uniform:
        step = float((s_sorted[-1] - s_sorted[0]) / (len(s_sorted) - 1))
        n_out = len(s_sorted)
    else:
        min_step = float(steps.min())
        step = median_step if min_step >= 0.8 * median_step else min_step
        span = s_sorted[-1] - s_sorted[0]
        n_out = round(span / step) + 1
        step = span / (n_out - 1)
        warnings.append(_describe_irregular(steps, s_sorted, median_step, tol, step))

    # In-plane extent: grow the grid so every sheared slice fits inside it.
    if sheared:
        lo = np.floor(shift.min(axis=0)).astype(int)
        hi = np.ceil(shift.max(axis=0)).astype(int)
    else:
        lo = hi = np.zeros(2, dtype=int)
    out_cols = columns + int(hi[0] - lo[0])
    out_rows = rows + int(hi[1] - lo[1])
    origin = positions[order[0]] + lo[0] * di * row_dir + lo[1] * dj * col_dir
    inplane = shift - lo  # where each source slice's pixel (0,0) lands in output pixels

    blend: list[tuple[int, int, float]] = []
    if uniform:
        blend = [(k, k, 0.0) for k in range(n_out)]
    else:
        targets = s_sorted[0] + step * np.arange(n_out)
        b = np.clip(np.searchsorted(s_sorted, targets, side="left"), 1, len(s_sorted) - 1)
        a = b - 1
        w = (targets - s_sorted[a]) / (s_sorted[b] - s_sorted[a])
        for ka, kb, wk in zip(a, b, w, strict=True):
            wk = float(np.clip(wk, 0.0, 1.0))
            if wk < 1e-4:
                blend.append((int(ka), int(ka), 0.0))
            elif wk > 1 - 1e-4:
                blend.append((int(kb), int(kb), 0.0))
            else:
                blend.append((int(ka), int(kb), wk))

    regular = uniform and not sheared
    return StackPlan(
        order=order,
        normal_positions=s_sorted,
        inplane_shift_px=inplane,
        spacing=(float(di), float(dj), float(step)),
        origin=origin,
        direction=direction,
        size=(out_cols, out_rows, n_out),
        blend=blend,
        duplicates=duplicates,
        warnings=warnings,
        tilt_deg=tilt_deg,
        regular=regular,
    )


#: What a one-image "volume" cannot do, said wherever one is opened.
SINGLE_SLICE_NOTE = (
    "a single image, opened as a one-slice volume: measurements and paths in its plane "
    "work; features that need a volume (the 3D view, automatic anatomy, 3D lesion "
    "segmentation, registration, entry suggestions and paths that leave the plane) "
    "need a series of at least two parallel slices"
)


def plan_single(
    position: np.ndarray,
    orientation: np.ndarray,
    pixel_spacing: tuple[float, float],
    rows: int,
    columns: int,
    thickness_mm: float | None,
) -> StackPlan:
    """The plan of a one-image series: one slice, as thick as SliceThickness says.

    Without a usable SliceThickness the slice is given 1 mm and a warning says so: the
    thickness only matters for volumes and the 3D display, never for in-plane geometry.
    """
    direction = geometry.orientation_from_cosines(orientation[:3], orientation[3:])
    dj, di = pixel_spacing
    warnings = [SINGLE_SLICE_NOTE]
    if thickness_mm is not None and np.isfinite(thickness_mm) and thickness_mm > 0:
        step = float(thickness_mm)
    else:
        step = 1.0
        warnings.append(
            "no SliceThickness: the slice is taken as 1 mm thick (volumes are not reliable)"
        )
    return StackPlan(
        order=np.array([0]),
        normal_positions=np.array([float(np.asarray(position) @ direction[:, 2])]),
        inplane_shift_px=np.zeros((1, 2)),
        spacing=(float(di), float(dj), step),
        origin=np.asarray(position, dtype=float),
        direction=direction,
        size=(columns, rows, 1),
        blend=[(0, 0, 0.0)],
        warnings=warnings,
    )


def _describe_irregular(
    steps: np.ndarray, s_sorted: np.ndarray, median_step: float, tol: float, step: float
) -> str:
    """Say where the spacing breaks, in slice positions a radiologist can find."""
    odd = np.nonzero(np.abs(steps - median_step) > tol)[0]
    parts = []
    for idx in odd[:5]:
        gap = steps[idx]
        kind = "gap" if gap > median_step else "narrow step"
        missing = round(gap / median_step) - 1
        what = f" (~{missing} missing slice{'s' if missing != 1 else ''})" if missing >= 1 else ""
        parts.append(
            f"{kind} of {gap:.2f} mm between slices {idx + 1} and {idx + 2} "
            f"at {s_sorted[idx]:.2f} and {s_sorted[idx + 1]:.2f} mm along the slice normal{what}"
        )
    more = f"; and {len(odd) - 5} more" if len(odd) > 5 else ""
    return (
        f"irregular slice spacing (usual step {median_step:.2f} mm): "
        + "; ".join(parts)
        + more
        + f". Resampled onto a uniform {step:.2f} mm grid at the true positions"
        " (values in the gaps are interpolated)"
    )
