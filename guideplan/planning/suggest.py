"""Automatic entry-point suggestions: every straight path from the target to the skin,
scored and named as an interventional radiologist would name it.

Rays leave the target in a few thousand directions (those the patient's position leaves
reachable). Along each ray, sampled once for all rays at once: where it leaves the body
(the first air connected to the room, decided at full resolution near the skin:
:mod:`guideplan.planning.outside_air`), whether it crosses gas, a structure or its
safety margin, or bone other than the target's own bone, how long it is and whether the
CT gantry can show it.

A vertebral-body target (inside a vertebral body mask, or in bone just in front of the
spinal canal or cord) is reached from behind, and its paths are named by route:
transpedicular (through the pedicle: 10-35 degrees from the sagittal plane, in bone
from the body through the pedicle beside the canal), parapedicular (beside it), in the
thorax costotransverse, else posterolateral. Routes are ranked in that order, then by
clearance, length and tilt (weights and angle ranges in resources/planning.json).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from guideplan.core import trajectory as tr
from guideplan.core.errors import GuideplanError
from guideplan.planning.devices import Device
from guideplan.planning.outside_air import OutsideAir, in_volume
from guideplan.planning.path_analysis import PathContext, target_bone_run
from guideplan.planning.structures import StructureField

#: Reachable skin for each patient position: the entry must lie on this side of the
#: target (direction from target to entry, minimum cosine).
POSITIONS = {
    "prone": (np.array([0.0, 1.0, 0.0]), 0.17),  # back up: posterior skin
    "supine": (np.array([0.0, -1.0, 0.0]), 0.17),  # anterior skin
    "left-up": (np.array([1.0, 0.0, 0.0]), 0.17),  # lying on the right side
    "right-up": (np.array([-1.0, 0.0, 0.0]), 0.17),
}

#: Names (lower case, words) of a structure that is the spinal canal or the cord in it,
#: whatever the source calls it (a label map, a --labels folder, the anatomy finder).
CANAL_WORDS = ("canal", "cord", "thecal", "dural sac", "cauda")
LUNG_WORDS = ("lung", "pleura")


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


def is_canal(name: str) -> bool:
    """Is a structure of this name the spinal canal or cord (spinal_cord, canal,
    Spinal canal, thecal sac ...)?"""
    key = name.lower().replace("_", " ")
    return any(word in key for word in CANAL_WORDS)


def canal_fields(structures: list[StructureField]) -> list[StructureField]:
    return [f for f in structures if is_canal(f.name)]


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

    @property
    def approach(self) -> str:
        """The route without its side: transpedicular, parapedicular, costotransverse,
        posterolateral or direct."""
        return (
            self.route.rsplit("-", 1)[0]
            if self.route.endswith(("-left", "-right"))
            else (self.route)
        )

    @property
    def side(self) -> str:
        return self.route.rsplit("-", 1)[1] if self.route.endswith(("-left", "-right")) else ""

    def to_json(self) -> dict[str, Any]:
        out = {
            "entry_lps": [round(float(v), 2) for v in self.entry],
            "length_mm": round(self.length_mm, 1),
            "clearance_mm": round(self.clearance_mm, 1),
            "craniocaudal_deg": round(self.craniocaudal_deg, 1),
            "score": round(self.score, 4),
            "route": self.route,
            "approach": self.approach,
            "side": self.side,
        }
        for key in ("axial_from_sagittal_deg", "canal_clearance_mm", "bone_run_mm"):
            if self.details.get(key) is not None:
                out[key] = round(float(self.details[key]), 1)
        if self.details.get("closest_structure"):
            out["closest_structure"] = self.details["closest_structure"]
        return out


@dataclass
class TargetAnatomy:
    """What the target is, for the route rules: a vertebral body or not (and how that
    was decided), in the thorax or not."""

    vertebral: bool
    how: str
    thoracic: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"vertebral_body": self.vertebral, "how": self.how, "thoracic": self.thoracic}


@dataclass
class Suggestions:
    target: np.ndarray
    candidates: list[Candidate]  # all rays (valid and not), for the skin colour map
    anatomy: TargetAnatomy | None = None

    @property
    def ranked(self) -> list[Candidate]:
        return sorted((c for c in self.candidates if c.valid), key=lambda c: -c.score)

    def best_per_route(self) -> dict[str, Candidate]:
        best: dict[str, Candidate] = {}
        for cand in self.ranked:
            best.setdefault(cand.route, cand)
        return best


def reach_box(volume, target, device: Device, settings, position: str | None = None):
    """The CT box (k, j, i slices) that can matter to the suggestions: every ray the
    position and the gantry leave, out to the needle's reach, plus the structure fields'
    margin. Structure masks cropped to it give the same distances (up to that margin)
    and their fields cost a fraction of the whole CT's."""
    from guideplan.planning import grid

    cfg = settings["suggest"]
    directions = tr.fibonacci_directions(int(cfg["directions"]))
    if position in POSITIONS:
        axis, min_cos = POSITIONS[position]
        directions = directions[directions @ axis >= min_cos]
    tilt = np.radians(float(settings["gantry"]["max_tilt_deg"]))
    directions = directions[np.abs(directions[:, 2]) <= np.sin(tilt) + 1e-9]
    reach = min(
        float(cfg["max_length_mm"]),
        device.length_mm - float(settings["needle"]["working_length_mm"]),
    )
    target = np.asarray(target, dtype=float)
    pts = np.vstack([target, target + directions * max(reach, 0.0)])
    margin = float(cfg["reach_box_margin_mm"])
    return grid.box_from_lps(volume, pts.min(axis=0) - margin, pts.max(axis=0) + margin)


def target_anatomy(
    ctx: PathContext,
    target: np.ndarray,
    vertebral_body: np.ndarray | None = None,
    level: str | None = None,
) -> TargetAnatomy:
    """Is the target in a vertebral body? From the body mask (given, or labels from the
    anatomy finder) when there is one, else from bone just in front of the canal."""
    rule = ctx.settings["vertebral_access"]
    vertebral, how = False, "no vertebral body mask and no spinal canal or cord structure"
    if vertebral_body is not None and np.any(vertebral_body):
        near = float(rule["body_mask_within_mm"])
        probe = target + np.vstack([np.zeros(3), tr.fibonacci_directions(26) * near])
        hits = tr.sample_nearest(vertebral_body, ctx.ijk(probe), outside=0)
        if np.any(hits):
            vertebral, how = True, "the target is in the vertebral body mask"
        else:
            how = "the target is outside the vertebral body mask"
    if not vertebral:
        canals = canal_fields(ctx.structures)
        if canals and ctx.target_in_bone(target):
            within = float(rule["canal_within_mm"])
            d = min(float(f.distance(target[None, :])[0]) for f in canals)
            if d <= within:
                vertebral = True
                how = f"the target is in bone {d:.0f} mm from the spinal canal or cord"
            elif vertebral_body is None:
                how = f"the target is in bone but {d:.0f} mm from the spinal canal or cord"
    thoracic = False
    if vertebral:
        if level:
            thoracic = level.strip().upper().startswith("T")
        else:
            thoracic = _lung_near(ctx, target, float(rule["thoracic_lung_within_mm"]))
    return TargetAnatomy(vertebral, how, thoracic)


def _lung_near(ctx: PathContext, target: np.ndarray, radius: float) -> bool:
    """Lung on both sides of the spine in the target's axial plane, within ``radius``
    (gas HU, or a lung structure): the thoracic spine lies between the lungs, while
    the lowest lung recess behind the upper lumbar spine is only on one level's side
    and bowel gas is in front."""
    lungs = [f for f in ctx.structures if any(w in f.name.lower() for w in LUNG_WORDS)]
    r = np.linspace(5.0, radius, 36)
    sides = []
    for sign in (1.0, -1.0):
        pts = target + np.column_stack([sign * r, np.zeros_like(r), np.zeros_like(r)])
        gas = ctx.hu_at(pts) <= ctx.body_min_hu
        if lungs:
            gas |= np.min([f.distance(pts) for f in lungs], axis=0) <= 0.0
        sides.append(bool(np.any(gas)))
    return all(sides)


def suggest_entries(
    ctx: PathContext,
    target,
    device: Device,
    position: str | None = None,
    progress=None,
    *,
    vertebral_body: np.ndarray | None = None,
    level: str | None = None,
) -> Suggestions:
    """Score every straight path from ``target`` (LPS) to the skin the ``position``
    leaves reachable; ``vertebral_body`` (mask or labels on the CT grid) and ``level``
    say what the target is when known."""
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
    anatomy = target_anatomy(ctx, target, vertebral_body, level)
    if anatomy.vertebral:
        # Needles reach a vertebral body from behind (transpedicular, parapedicular,
        # costotransverse); an anterior path crosses organs this search cannot see.
        rule = ctx.settings["vertebral_access"]
        directions = directions[directions[:, 1] >= float(rule["min_posterior_cos"])]
    max_tilt = float(ctx.settings["gantry"]["max_tilt_deg"])
    if len(directions) == 0:  # e.g. a vertebral body of a supine patient: no skin to use
        return Suggestions(target=target, candidates=[], anatomy=anatomy)
    if progress:
        progress(0.1, "Finding the skin")
    # Rays steeper than the gantry can tilt are not sampled, nor beyond the needle's reach.
    cc = np.degrees(np.arcsin(np.clip(-directions[:, 2], -1.0, 1.0)))
    steep = np.abs(cc) > max_tilt
    candidates: list[Candidate] = [
        Candidate(target, u, max_len, 0.0, float(a), -1.0, False, "steeper than the gantry tilt")
        for u, a in zip(directions, cc, strict=True)
    ]
    working = float(ctx.settings["needle"]["working_length_mm"])
    reach = min(max_len, device.length_mm - working)
    ok = np.flatnonzero(~steep)
    if reach <= 0.0 or len(ok) == 0:
        for n in ok:
            candidates[n].reason = "needle too short"
        return Suggestions(target=target, candidates=candidates, anatomy=anatomy)
    rays = _sample_rays(
        ctx, target, directions[ok], step, reach, float(cfg["outside_air_coarse_mm"])
    )
    if progress:
        progress(0.4, "Checking structures")
    _measure_structures(ctx, rays, device, vertebral_body)
    if progress:
        progress(0.7, "Scoring paths")
    scorer = _Scorer(ctx, target, device, anatomy, max_tilt, max_len, reach < max_len)
    for m, n in enumerate(ok):
        candidates[n] = scorer.score(rays, m)
    if progress:
        progress(1.0, "Done")
    return Suggestions(target=target, candidates=candidates, anatomy=anatomy)


@dataclass
class _Rays:
    """Samples along all rays at once: (D, S) arrays."""

    directions: np.ndarray
    s: np.ndarray
    flat: np.ndarray  # (D * S, 3) LPS
    ijk: np.ndarray  # (D * S, 3) continuous indices on the CT grid
    hu: np.ndarray
    exit_index: np.ndarray  # first outside-air sample, or -1
    leaves_fov: np.ndarray  # leaves the grid before reaching outside air
    clearance: np.ndarray = None  # type: ignore[assignment]
    closest: list[str] = None  # type: ignore[assignment]
    too_close: list[str] = None  # type: ignore[assignment]  # '' or the structure's name
    canal_d: np.ndarray | None = None  # (D, S) distance from the needle surface
    bone: np.ndarray = None  # type: ignore[assignment]
    lesion: np.ndarray | None = None


def _sample_rays(ctx, target, directions, step, max_len, coarse_mm) -> _Rays:
    s = np.arange(0.0, max_len + step, step)
    pts = target[None, None, :] + directions[:, None, :] * s[None, :, None]  # (D, S, 3)
    flat = pts.reshape(-1, 3)
    ijk = _to_index(ctx.volume.lps_to_index, flat)
    shape = (len(directions), len(s))
    hu = tr.sample_nearest(ctx.volume.array, ijk, outside=-1000).reshape(shape)
    grid = in_volume(ctx.volume, ijk)
    kji = np.rint(ijk[grid][:, ::-1]).astype(int)
    box = (kji.min(axis=0) - 1, kji.max(axis=0) + 2) if len(kji) else None
    outside = OutsideAir(ctx.volume, ctx.body_min_hu, coarse_mm, box)
    out = (outside.at(ijk) & grid).reshape(shape) & (hu <= ctx.body_min_hu)
    has_exit = out.any(axis=1)
    exit_index = np.where(has_exit, np.argmax(out, axis=1), -1)
    off = ~grid.reshape(shape)
    leave = np.where(off.any(axis=1), np.argmax(off, axis=1), len(s))
    leaves_fov = leave < np.where(has_exit, exit_index, len(s))
    return _Rays(directions, s, flat, ijk, hu, exit_index, leaves_fov & (leave < len(s)))


def _to_index(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(N, 3) LPS -> continuous (i, j, k) indices. Column by column: a (N, 3) @ (3, 3)
    product goes through BLAS threads, ten times slower on a busy 2-core machine."""
    out = np.empty_like(points)
    for row in range(3):
        m = matrix[row]
        out[:, row] = points[:, 0] * m[0] + points[:, 1] * m[1] + points[:, 2] * m[2] + m[3]
    return out


def _field_distance(f: StructureField, points: np.ndarray, ijk=None) -> np.ndarray:
    """``f.distance`` sampled only where the field's box holds the points (the rest is
    the box margin): the same values, a fraction of the time for small structures.
    ``ijk``: the points' indices on the field's volume grid, when already known."""
    if ijk is None:
        ijk = _to_index(f.lps_to_index, points)
    ijk = ijk - f.lo_ijk
    top = np.asarray(f.distance_map.shape[::-1], dtype=float) - 1.0
    inside = np.all((ijk >= 0.0) & (ijk <= top), axis=1)
    out = np.full(len(points), f.cap_mm, dtype=np.float32)
    out[inside] = tr.sample_trilinear(f.distance_map, ijk[inside], outside=f.cap_mm)
    return out


def _measure_structures(ctx, rays: _Rays, device: Device, vertebral_body) -> None:
    """Per ray, inside the body: the clearance from the needle's surface to every
    structure, the nearest one, the first whose margin it breaks; the canal profile."""
    n_dir, n_s = rays.hu.shape
    exit_index = np.where(rays.exit_index >= 0, rays.exit_index, n_s)
    body = np.arange(n_s)[None, :] < exit_index[:, None]
    flat_body = body.ravel()
    canal_margin = float(ctx.settings["vertebral_access"]["canal_margin_mm"])
    clearance = np.full(n_dir, np.inf)
    closest = np.full(n_dir, "", dtype=object)
    too_close = np.full(n_dir, "", dtype=object)
    canal_d = None
    for f in ctx.structures:
        if f.name.lower() == "skin":
            continue  # every path crosses the skin
        same_grid = np.allclose(f.lps_to_index, ctx.volume.lps_to_index)
        d = np.full(body.shape, np.inf, dtype=np.float32)  # beyond the skin: not asked
        d[body] = _field_distance(
            f, rays.flat[flat_body], rays.ijk[flat_body] if same_grid else None
        )
        d -= device.radius_mm
        dmin = d.min(axis=1)
        nearer = dmin < clearance
        clearance[nearer] = dmin[nearer]
        closest[nearer] = f.name
        canal = is_canal(f.name)
        margin = canal_margin if canal else float(f.threshold_mm)
        breach = (dmin < margin) & (too_close == "")
        too_close[breach] = f.name
        if canal:
            canal_d = d if canal_d is None else np.minimum(canal_d, d)
    rays.clearance = clearance
    rays.closest = list(closest)
    rays.too_close = list(too_close)
    rays.canal_d = canal_d
    bone = rays.hu >= ctx.bone_min_hu
    if vertebral_body is not None:
        # marrow below the bone threshold (osteoporosis, partial volume) is still bone
        bone |= (tr.sample_nearest(vertebral_body, rays.ijk, outside=0) > 0).reshape(bone.shape)
    rays.bone = bone
    if ctx.lesion is not None:
        rays.lesion = (tr.sample_nearest(ctx.lesion, rays.ijk, outside=0) > 0).reshape(bone.shape)


class _Scorer:
    """Validity, route and score of one ray (the per-ray part after the array work)."""

    def __init__(
        self, ctx, target, device, anatomy: TargetAnatomy, max_tilt, max_len, short
    ) -> None:
        self.ctx = ctx
        self.max_len = float(max_len)
        self.short = bool(short)  # rays stop at the needle's reach: no exit = too short
        self.target = target
        self.device = device
        self.anatomy = anatomy
        self.max_tilt = max_tilt
        cfg = ctx.settings["suggest"]
        self.weights = cfg["weights"]
        self.cap = float(cfg["clearance_cap_mm"])
        self.working = float(ctx.settings["needle"]["working_length_mm"])
        self.max_incidence = float(ctx.settings["bone_access"]["max_incidence_deg"])
        self.routes = ctx.settings["routes"]
        self.min_posterior = float(ctx.settings["vertebral_access"]["min_posterior_cos"])
        self.target_in_bone = anatomy.vertebral or ctx.target_in_bone(target)

    def score(self, rays: _Rays, n: int) -> Candidate:
        ctx, target = self.ctx, self.target
        u = rays.directions[n]
        s = rays.s
        cc = math.degrees(math.asin(float(np.clip(-u[2], -1.0, 1.0))))  # entry -> target
        exit_index = int(rays.exit_index[n])
        if abs(cc) > self.max_tilt:
            return Candidate(
                target, u, float(s[-1]), 0.0, cc, -1.0, False, "steeper than the gantry tilt"
            )
        if rays.leaves_fov[n]:
            return Candidate(
                target, u, float(s[-1]), 0.0, cc, -1.0, False, "leaves the field of view"
            )
        if exit_index < 0:
            reason = "needle too short" if self.short else "no skin within reach"
            return Candidate(target, u, float(s[-1]), 0.0, cc, -1.0, False, reason)
        length = float(s[exit_index])
        clearance = float(rays.clearance[n]) if exit_index > 0 else 0.0
        clearance = min(clearance, 1e3)
        details: dict[str, Any] = {"closest_structure": rays.closest[n]}
        base = dict(
            entry=target + u * length,
            direction=u,
            length_mm=length,
            clearance_mm=clearance,
            craniocaudal_deg=cc,
            details=details,
        )

        def invalid(reason: str) -> Candidate:
            return Candidate(**base, score=-1.0, valid=False, reason=reason)

        if clearance <= 0.0:
            return invalid("crosses a structure")
        if rays.too_close[n]:
            return invalid(f"within the safety margin of the {rays.too_close[n]}")
        body = slice(0, exit_index)
        if np.any(rays.hu[n, body] <= ctx.body_min_hu):
            return invalid("crosses gas (bowel/lung)")
        if length + self.working > self.device.length_mm:
            return invalid("needle too short")
        bone = rays.bone[n, body]
        lesion = rays.lesion[n, body] if rays.lesion is not None else None
        run_end, run_start = target_bone_run(bone, lesion, float(s[1] - s[0]))
        if run_end < len(bone) and bone[run_end:].any():
            return invalid("bone in the way")
        if self.target_in_bone and run_end == 0:
            return invalid("misses the bone")
        if self.target_in_bone:
            cortex_point = target + u * float(s[max(run_end - 1, 0)])  # outer edge of its bone
            incidence = ctx.incidence_deg(cortex_point, u)
            details["incidence_deg"] = incidence
            if incidence is not None and incidence > self.max_incidence:
                return invalid("tangential to the bone")
            details["bone_run_mm"] = float(s[run_end] - s[run_start])
        axial = math.degrees(math.atan2(abs(float(u[0])), float(u[1])))
        details["axial_from_sagittal_deg"] = axial
        canal_index = None
        if rays.canal_d is not None:
            profile = rays.canal_d[n, body]
            canal_index = int(np.argmin(profile))
            details["canal_clearance_mm"] = float(profile[canal_index])
        route = self._route(u, axial, run_end, canal_index, details)
        margin = min(max(clearance, 0.0), self.cap) / self.cap
        length_score = max(0.0, 1.0 - length / self.max_len)
        angle_score = max(0.0, 1.0 - abs(cc) / self.max_tilt)
        approach = route.rsplit("-", 1)[0] if route.endswith(("-left", "-right")) else route
        score = (
            float(self.routes["weights"].get(approach, 0.0))
            + self.weights["clearance"] * margin
            + self.weights["length"] * length_score
            + self.weights["angle"] * angle_score
        )
        return Candidate(**base, score=score, valid=True, route=route)

    def _route(self, u, axial: float, run_end: int, canal_index, details) -> str:
        """transpedicular / parapedicular / costotransverse / posterolateral / direct,
        with the patient's side of the entry (+x in LPS is the patient's left)."""
        side = "left" if u[0] > 0 else "right"
        if not self.anatomy.vertebral:
            return f"direct-{side}" if abs(u[0]) > 0.1 else "direct"
        r = self.routes
        lo, hi = (float(v) for v in r["transpedicular_axial_deg"])
        bone_run = float(details.get("bone_run_mm", 0.0))
        if canal_index is not None:
            # still in the target's bone where it passes closest beside the canal: the
            # pedicle (the bone run's length depends on where the target sits)
            through_pedicle = 0 < canal_index < run_end and details["canal_clearance_mm"] <= float(
                r["pedicle_canal_within_mm"]
            )
        else:
            through_pedicle = bone_run >= float(r["transpedicular_min_bone_mm"])
        if lo <= axial <= hi and through_pedicle:
            return f"transpedicular-{side}"
        lo, hi = (float(v) for v in r["parapedicular_axial_deg"])
        if lo <= axial <= hi and bone_run > 0.0:
            return f"{'costotransverse' if self.anatomy.thoracic else 'parapedicular'}-{side}"
        if u[1] >= self.min_posterior:
            return f"posterolateral-{side}"
        return f"direct-{side}" if abs(u[0]) > 0.1 else "direct"


def suggestion_notes(
    result: Suggestions, position: str | None, scan_position: str | None
) -> list[str]:
    """What the user must know about the position the paths are planned for."""
    notes = []
    vertebral = bool(result.anatomy and result.anatomy.vertebral)
    if vertebral and not result.candidates:
        notes.append(
            f"A {position or 'this'} position gives no posterior access: a vertebral body is "
            "reached from behind. Plan with --position prone (the patient will then be "
            "turned onto the front for the procedure)."
        )
    if position and scan_position and position != scan_position:
        side = {"prone": "back", "supine": "front", "left-up": "left side"}.get(
            position, "right side"
        )
        notes.append(
            f"The scan is {scan_position} but the plan is for a {position} patient: the "
            f"patient will be turned {position} for the procedure and the entry will be on "
            f"the {side}. Organs and skin move when the patient turns: check the path on a "
            "CT in the procedure position before placing the needle."
        )
    return notes
