"""Overlapping zones: a lesion larger than one zone covered by several (a probe
repositioned along its track, or parallel probes), with their combined coverage.

:func:`plan_overlapping_zones` places zones of one device, all along the approach
direction (the user's entry -> target), by a greedy cover of the lesion grown by the
margin: candidate zone centres on a grid inside that region, each step taking the zone
that covers the most still-uncovered voxels, until the region is covered (the coverage
setting) or the zone budget is spent. The zones are ordinary zones of the device's chart;
:func:`guideplan.planning.evaluate.evaluate_plan` gives their combined coverage, margin
and warnings. An estimate like every zone: each track is then checked as a needle path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from guideplan.core import trajectory as tr
from guideplan.planning import grid
from guideplan.planning.context import settings_values
from guideplan.planning.devices import Device
from guideplan.planning.zones import (
    Zone,
    ZoneError,
    _perpendicular_axes,
    thermal_zone,
    zone_dimensions,
)

if TYPE_CHECKING:
    from guideplan.planning.context import TreatmentContext


@dataclass
class OverlapPlan:
    """Needles ((entry, tip) LPS each, deepest first), their zones, and the share of the
    lesion and of lesion + margin they cover together."""

    needles: list[tuple[np.ndarray, np.ndarray]]
    zones: list[Zone]
    lesion_coverage_pct: float
    region_coverage_pct: float
    tracks: int
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "zones": len(self.zones),
            "tracks": self.tracks,
            "lesion_coverage_pct": round(self.lesion_coverage_pct, 2),
            "region_coverage_pct": round(self.region_coverage_pct, 2),
            "needles": [
                {
                    "entry_lps": [round(float(v), 2) for v in e],
                    "tip_lps": [round(float(v), 2) for v in t],
                }
                for e, t in self.needles
            ],
            "notes": list(self.notes),
        }


def plan_overlapping_zones(
    ctx: TreatmentContext,
    device: Device,
    entry,
    target,
    *,
    power_w: float | None = None,
    time_s: float | None = None,
    margin_mm: float | None = None,
    max_zones: int | None = None,
    clip_cortex: bool = False,
) -> OverlapPlan:
    """Zones of ``device`` along the direction entry -> target that together cover the
    lesion grown by ``margin_mm`` (default: the margin setting)."""
    if device.kind not in ("rf_probe", "rf_bipolar", "mw_antenna"):
        raise ZoneError(
            f"Overlapping zones are planned for RF probes and microwave antennas, not "
            f"{device.name}.",
            hint="Cryoprobes combine several probes in one zone: add probes instead.",
        )
    margin = ctx.margin_mm if margin_mm is None else float(margin_mm)
    region = ctx.margin_region(margin)
    if region is None:
        raise ZoneError(
            "Overlapping zones need the lesion.", hint="Segment the lesion or give --lesion."
        )
    cfg = settings_values("overlap", ctx.settings)
    budget = int(cfg["max_zones"] if max_zones is None else max_zones)
    entry, target = np.asarray(entry, float), np.asarray(target, float)
    try:
        u = tr.unit_direction(entry, target)
    except ValueError:
        raise ZoneError("The entry and the target are the same point.", hint="Move one.") from None
    depth = float(np.linalg.norm(target - entry))
    dims = zone_dimensions(device, power_w, time_s)
    radii = np.array([dims.length_mm, dims.width_mm, dims.width_mm]) / 2.0
    v, w = _perpendicular_axes(u)
    frame = np.vstack([u, v, w])
    box, mask = region
    pts = grid.points_of(ctx.volume, box, mask)
    lesion = ctx.lesion_in(box)[mask]
    origin = pts.mean(axis=0)
    local = (pts - origin) @ frame.T  # (N, 3) in the zone's frame
    step = max(float(radii.min()) * 2.0 * float(cfg["grid_step_fraction"]), 0.5)
    centres = np.unique(np.round(local / step), axis=0) * step
    # a candidate's voxels: inside its ellipsoid (chunks keep the memory bounded)
    covers = np.zeros((len(centres), len(local)), dtype=bool)
    for start in range(0, len(centres), 256):
        c = centres[start : start + 256]
        d = ((local[None, :, :] - c[:, None, :]) / radii) ** 2
        covers[start : start + 256] = d.sum(axis=2) <= 1.0
    covered = np.zeros(len(local), dtype=bool)
    chosen: list[int] = []
    goal = float(cfg["region_goal_pct"]) / 100.0 * len(local)
    track_of = np.unique(np.round(centres[:, 1:] / step).astype(int), axis=0, return_inverse=True)[
        1
    ]
    used = np.zeros(int(track_of.max()) + 1, dtype=bool)
    new_track = float(cfg["new_track_weight"])
    while len(chosen) < budget and covered.sum() < goal:
        gain = (covers & ~covered).sum(axis=1)
        if gain.max() == 0:
            break
        # a probe moved along a track already used costs less than a new track
        best = int(np.argmax(np.where(used[track_of], gain, gain * new_track)))
        chosen.append(best)
        used[track_of[best]] = True
        covered |= covers[best]
    notes = [
        f"{len(chosen)} zone(s) of {device.name} ({dims.length_mm:.1f} x {dims.width_mm:.1f} "
        f"mm) along the approach, greedy cover of the lesion + {margin:g} mm"
    ]
    if covered.sum() < goal:
        notes.append(
            f"the budget of {budget} zones covers {100.0 * covered.mean():.1f} % of the lesion "
            "+ margin: a larger zone or more zones are needed"
        )
    centres_lps = origin + centres[chosen] @ frame
    order = np.argsort(-(centres_lps @ u))  # deepest first (ablate, then pull back)
    needles = []
    for i in order:
        tip = centres_lps[i] + u * dims.center_offset_mm
        needles.append((tip - u * depth, tip))
    lateral = np.round(centres[chosen][:, 1:] / step).astype(int)
    tracks = len({tuple(t) for t in lateral})
    zones = [
        thermal_zone(
            ctx.volume, device, e, t, power_w=power_w, time_s=time_s, clip_cortex=clip_cortex
        )
        for e, t in needles
    ]
    for zone in zones:
        zone.notes.append("one of several overlapping zones (planned cover)")
    return OverlapPlan(
        needles=needles,
        zones=zones,
        lesion_coverage_pct=100.0 * float(covered[lesion].mean()) if lesion.any() else 0.0,
        region_coverage_pct=100.0 * float(covered.mean()),
        tracks=tracks,
        notes=notes,
    )
