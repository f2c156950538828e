"""Automatic entry-point suggestions: every straight path from the target to the skin,
scored.

Rays leave the target in a few thousand directions (those the patient's position leaves
reachable). Along each ray, sampled once for all rays at once: where it leaves the body
(the skin entry), whether it crosses gas, a structure to spare, or bone other than the
target's own bone, how far it stays from the structures, how long it is and whether the
CT gantry can show it. Valid rays are ranked by a weighted score (weights in
resources/planning.json); each also gets a route label for vertebral targets
(transpedicular / parapedicular, left / right).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import SimpleITK as sitk

from guideplan.core import trajectory as tr
from guideplan.core.errors import GuideplanError
from guideplan.planning.devices import Device
from guideplan.planning.path_analysis import PathContext, target_bone_run

#: Reachable skin for each patient position: the entry must lie on this side of the
#: target (direction from target to entry, minimum cosine).
POSITIONS = {
    "prone": (np.array([0.0, 1.0, 0.0]), 0.17),  # back up: posterior skin
    "supine": (np.array([0.0, -1.0, 0.0]), 0.17),  # anterior skin
    "left-up": (np.array([1.0, 0.0, 0.0]), 0.17),  # lying on the right side
    "right-up": (np.array([-1.0, 0.0, 0.0]), 0.17),
}


def position_from_dicom(patient_position: str) -> str | None:
    """DICOM PatientPosition (HFS, FFP, HFDL ...) -> the reachable skin (a POSITIONS
    key), or None when the code says nothing usable."""
    code = (patient_position or "").strip().upper()
    if code.endswith("DL"):
        return "right-up"  # lying on the left side: the right side is up
    if code.endswith("DR"):
        return "left-up"
    if code.endswith("P"):
        return "prone"
    if code.endswith("S"):
        return "supine"
    return None


@dataclass(eq=False)  # identity: it holds arrays
class Candidate:
    entry: np.ndarray
    direction: np.ndarray  # from the target toward the entry
    length_mm: float
    clearance_mm: float
    craniocaudal_deg: float
    score: float
    valid: bool
    reason: str = ""
    route: str = ""  # transpedicular-left, parapedicular-right, direct ...
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "entry_lps": [round(float(v), 2) for v in self.entry],
            "length_mm": round(self.length_mm, 1),
            "clearance_mm": round(self.clearance_mm, 1),
            "craniocaudal_deg": round(self.craniocaudal_deg, 1),
            "score": round(self.score, 4),
            "route": self.route,
        }


@dataclass
class Suggestions:
    target: np.ndarray
    candidates: list[Candidate]  # all rays (valid and not), for the skin colour map

    @property
    def ranked(self) -> list[Candidate]:
        return sorted((c for c in self.candidates if c.valid), key=lambda c: -c.score)

    def best_per_route(self) -> dict[str, Candidate]:
        best: dict[str, Candidate] = {}
        for cand in self.ranked:
            best.setdefault(cand.route, cand)
        return best


class OutsideAir:
    """Air connected to the volume's border (outside the patient; bowel gas is not).

    Computed on a 2x coarser grid (a coarse voxel is air only if all its voxels are), so
    a 512x512x300 CT takes a fraction of a second; rays then find the exact skin from
    the full-resolution HU where the coarse mask says "outside".
    """

    FACTOR = 2

    def __init__(self, ctx: PathContext) -> None:
        f = self.FACTOR
        array = ctx.volume.array
        k, j, i = (n // f * f for n in array.shape)
        # Block maximum as an element-wise max of the f^3 strided sub-grids: several
        # times faster than reducing a 6-D reshaped view.
        block_max = None
        for dk in range(f):
            for dj in range(f):
                for di in range(f):
                    part = array[dk:k:f, dj:j:f, di:i:f]
                    block_max = (
                        part.copy()
                        if block_max is None
                        else np.maximum(block_max, part, out=block_max)
                    )
        air = (block_max <= ctx.body_min_hu).astype(np.uint8)
        components = sitk.ConnectedComponent(sitk.GetImageFromArray(air), False)
        labels = sitk.GetArrayViewFromImage(components)  # valid while `components` lives
        # Seeds: the faces around the patient, not the first and last slices across
        # the body's long axis. Lungs and bowel cut by the field of view touch those;
        # they are inside the patient (a ray through them crosses gas, it does not
        # leave the body).
        long_axis = _long_axis(ctx.volume)
        faces = np.concatenate(
            [
                np.moveaxis(labels, axis, 0)[end].ravel()
                for axis in range(3)
                if axis != long_axis
                for end in (0, -1)
            ]
        )
        lookup = np.zeros(int(labels.max()) + 1, dtype=bool)
        lookup[faces[faces > 0]] = True
        self.mask = lookup[labels]

    def at(self, ijk: np.ndarray) -> np.ndarray:
        """Outside? at continuous full-resolution (i, j, k) indices; beyond the grid: yes."""
        return tr.sample_nearest(
            self.mask.view(np.uint8), (ijk - 0.5) / self.FACTOR, outside=1
        ).astype(bool)


def _long_axis(volume) -> int:
    """The array axis ([k, j, i] order) closest to the patient's head-feet axis."""
    direction = np.asarray(volume.direction, dtype=float).reshape(3, 3)
    index_axis = int(np.argmax(np.abs(direction[2])))  # columns are the i, j, k axes
    return 2 - index_axis


def _is_vertebral_target(ctx: PathContext, target: np.ndarray) -> bool:
    """A target in bone close in front of the spinal canal: a vertebral body."""
    rule = ctx.settings["vertebral_access"]
    canals = [f for f in ctx.structures if "canal" in f.name.lower()]
    if not canals or not ctx.target_in_bone(target):
        return False
    near = float(rule["canal_within_mm"])
    return any(float(f.distance(target[None, :])[0]) <= near for f in canals)


def outside_air(ctx: PathContext) -> OutsideAir:
    """The context's outside-air mask, computed once."""
    cached = getattr(ctx, "_outside_air", None)
    if cached is None:
        cached = OutsideAir(ctx)
        ctx._outside_air = cached  # type: ignore[attr-defined]
    return cached


def suggest_entries(
    ctx: PathContext,
    target,
    device: Device,
    position: str | None = None,
    progress=None,
) -> Suggestions:
    target = np.asarray(target, dtype=float)
    cfg = ctx.settings["suggest"]
    step = float(cfg["step_mm"])
    max_len = float(cfg["max_length_mm"])
    directions = tr.fibonacci_directions(int(cfg["directions"]))
    if position:
        if position not in POSITIONS:
            raise GuideplanError(
                f"Unknown patient position {position!r}.",
                hint=f"Use one of: {', '.join(POSITIONS)}.",
            )
        axis, min_cos = POSITIONS[position]
        directions = directions[directions @ axis >= min_cos]
    if _is_vertebral_target(ctx, target):
        # Needles reach a vertebral body from behind (transpedicular, parapedicular,
        # costovertebral); an anterior path crosses organs this search cannot see.
        rule = ctx.settings["vertebral_access"]
        directions = directions[directions[:, 1] >= float(rule["min_posterior_cos"])]
    if len(directions) == 0:  # e.g. a vertebral body of a supine patient: no skin to use
        return Suggestions(target=target, candidates=[])
    if progress:
        progress(0.1, "Finding the skin")
    outside = outside_air(ctx)
    s = np.arange(0.0, max_len + step, step)
    pts = target[None, None, :] + directions[:, None, :] * s[None, :, None]  # (D, S, 3)
    flat = pts.reshape(-1, 3)
    ijk = ctx.ijk(flat)
    hu = tr.sample_nearest(ctx.volume.array, ijk, outside=-1000).reshape(len(directions), -1)
    # Outside the body: air by HU at full resolution, connected to the border (coarse).
    out = (
        outside.at(ijk)
        & (tr.sample_nearest(ctx.volume.array, ijk, outside=-1000) <= ctx.body_min_hu)
    ).reshape(hu.shape)
    if progress:
        progress(0.4, "Checking structures")
    # Clearance from the needle's surface to the nearest structure along each ray.
    surface = np.full(hu.shape, np.inf)
    for f in ctx.structures:
        surface = np.minimum(surface, f.distance(flat).reshape(hu.shape))
    surface -= device.radius_mm
    lesion = ctx.lesion_at(flat).reshape(hu.shape) if ctx.lesion is not None else None
    if progress:
        progress(0.7, "Scoring paths")

    weights = cfg["weights"]
    cap = float(cfg["clearance_cap_mm"])
    max_tilt = float(ctx.settings["gantry"]["max_tilt_deg"])
    working = float(ctx.settings["needle"]["working_length_mm"])
    target_in_bone = ctx.target_in_bone(target)
    candidates = []
    for d_index, u in enumerate(directions):
        cand = _score_ray(
            ctx,
            target,
            u,
            s,
            hu[d_index],
            out[d_index],
            surface[d_index],
            None if lesion is None else lesion[d_index],
            device,
            target_in_bone,
            weights,
            cap,
            max_tilt,
            working,
        )
        candidates.append(cand)
    if progress:
        progress(1.0, "Done")
    return Suggestions(target=target, candidates=candidates)


def _score_ray(
    ctx,
    target,
    u,
    s,
    hu,
    out,
    surface,
    lesion,
    device,
    target_in_bone,
    weights,
    cap,
    max_tilt,
    working,
) -> Candidate:
    exits = np.nonzero(out)[0]
    cc = math.degrees(math.asin(float(np.clip(-u[2], -1.0, 1.0))))  # needle runs entry->target
    if len(exits) == 0:
        return Candidate(target, u, float(s[-1]), 0.0, cc, -1.0, False, "no skin within reach")
    exit_index = int(exits[0])
    length = float(s[exit_index])
    entry = target + u * length
    body = slice(0, exit_index)
    clearance = float(np.min(surface[body])) if exit_index > 0 else 0.0
    base = dict(
        entry=entry, direction=u, length_mm=length, clearance_mm=clearance, craniocaudal_deg=cc
    )
    if clearance <= 0.0:
        return Candidate(**base, score=-1.0, valid=False, reason="crosses a structure")
    gas = hu[body] <= ctx.body_min_hu
    if gas.any():
        return Candidate(**base, score=-1.0, valid=False, reason="crosses gas (bowel/lung)")
    if length + working > device.length_mm:
        return Candidate(**base, score=-1.0, valid=False, reason="needle too short")
    if abs(cc) > max_tilt:
        return Candidate(**base, score=-1.0, valid=False, reason="steeper than the gantry tilt")
    bone = hu[body] >= ctx.bone_min_hu
    run_end, run_start = target_bone_run(
        bone, lesion[body] if lesion is not None else None, float(s[1] - s[0])
    )
    if run_end < len(bone) and bone[run_end:].any():
        return Candidate(**base, score=-1.0, valid=False, reason="bone in the way")
    if target_in_bone and run_end == 0:
        return Candidate(**base, score=-1.0, valid=False, reason="misses the bone")
    details: dict[str, Any] = {}
    if target_in_bone:
        cortex_point = target + u * float(s[max(run_end - 1, 0)])  # outer edge of its bone
        incidence = ctx.incidence_deg(cortex_point, u)
        details["incidence_deg"] = incidence
        if incidence is not None and incidence > float(
            ctx.settings["bone_access"]["max_incidence_deg"]
        ):
            return Candidate(**base, score=-1.0, valid=False, reason="tangential to the bone")
        details["bone_run_mm"] = float(s[run_end] - s[run_start])
    margin = min(max(clearance, 0.0), cap) / cap
    length_score = max(0.0, 1.0 - length / float(s[-1]))
    angle_score = max(0.0, 1.0 - abs(cc) / max_tilt)
    score = (
        weights["clearance"] * margin
        + weights["length"] * length_score
        + weights["angle"] * angle_score
    )
    route = _route(u, target_in_bone, details.get("bone_run_mm", 0.0))
    return Candidate(**base, score=score, valid=True, route=route, details=details)


def _route(u: np.ndarray, target_in_bone: bool, bone_run_mm: float) -> str:
    """Route name for the usual vertebral approaches (the entry side is the patient's)."""
    side = "left" if u[0] > 0 else "right"
    if not target_in_bone or u[1] < 0.3:
        return f"direct-{side}" if abs(u[0]) > 0.1 else "direct"
    return f"{'transpedicular' if bone_run_mm >= 20.0 else 'parapedicular'}-{side}"
