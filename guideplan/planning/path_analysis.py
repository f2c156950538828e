"""Everything a radiologist reads off one needle path, fast enough to update while dragging.

``PathContext`` holds what does not change while a trajectory moves (the CT, structure
distance fields, settings); ``analyze_path`` then only samples a few hundred points
along the path. Outputs: lengths, angles, tissues crossed, HU profile, distances to each
critical structure, and warnings with stable codes.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from guideplan.core import trajectory as tr
from guideplan.core.resources import load_json
from guideplan.core.status import Finding, Status
from guideplan.core.volume import Volume
from guideplan.planning.devices import Device
from guideplan.planning.structures import StructureField, canal_status

SEVERITY_ORDER = {"info": 0, "warning": 1, "danger": 2}


@dataclass
class PlanWarning:
    """A warning with a stable ``code``, a severity and the numbers behind it."""

    code: str
    severity: str  # info | warning | danger
    message: str
    values: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def canal_unknown_warning(finding: Finding | None) -> PlanWarning | None:
    """CANAL_NOT_IDENTIFIED when the canal the distances rest on is not known to be right
    (uncertain, not found, not looked for): unknown is never reported as safe. Silent
    for a canal found or given, and when the user confirmed there is none near the plan."""
    if finding is None or finding.usable or finding.source == "user":
        return None
    what = "uncertain" if finding.status is Status.UNCERTAIN else "not identified"
    return PlanWarning(
        "CANAL_NOT_IDENTIFIED",
        "warning",
        f"Spinal canal {what} ({finding.reason}): the distance to the cord is unknown. "
        "Confirm or draw the canal (Segment tab), or mark that there is none near this plan.",
        {"status": str(finding.status), "reason": finding.reason},
    )


@dataclass
class TissueSegment:
    tissue: str
    start_mm: float
    end_mm: float

    @property
    def length_mm(self) -> float:
        return self.end_mm - self.start_mm

    def to_json(self) -> dict[str, Any]:
        return {
            "tissue": self.tissue,
            "start_mm": round(self.start_mm, 2),
            "end_mm": round(self.end_mm, 2),
            "length_mm": round(self.length_mm, 2),
        }


@dataclass
class StructureDistance:
    name: str
    distance_mm: float  # from the needle's surface; <= 0 means the needle crosses it
    threshold_mm: float
    closest_at_mm: float  # distance from the entry along the path

    def to_json(self) -> dict[str, Any]:
        return {
            "structure": self.name,
            "distance_mm": round(self.distance_mm, 2),
            "threshold_mm": self.threshold_mm,
            "closest_at_mm": round(self.closest_at_mm, 1),
        }


@dataclass
class PathReport:
    entry: np.ndarray
    target: np.ndarray
    device: Device
    length_mm: float
    skin_to_target_mm: float
    bone_depth_mm: float
    angles: tr.PathAngles
    tissues: list[TissueSegment]
    profile_mm: np.ndarray
    profile_hu: np.ndarray
    distances: list[StructureDistance]
    warnings: list[PlanWarning]
    canal: Finding | None = None

    @property
    def worst_severity(self) -> str:
        if not self.warnings:
            return "none"
        return max((w.severity for w in self.warnings), key=SEVERITY_ORDER.__getitem__)

    def to_json(self, profile_step_mm: float = 1.0) -> dict[str, Any]:
        stride = max(1, int(round(profile_step_mm / max(self._step(), 1e-6))))
        return {
            "entry_lps": [round(float(v), 3) for v in self.entry],
            "target_lps": [round(float(v), 3) for v in self.target],
            "device": {
                "id": self.device.id,
                "name": self.device.name,
                "length_mm": self.device.length_mm,
                "outer_diameter_mm": self.device.outer_diameter_mm,
            },
            "length_mm": round(self.length_mm, 2),
            "skin_to_target_mm": round(self.skin_to_target_mm, 2),
            "bone_depth_mm": round(self.bone_depth_mm, 2),
            "direction_lps": [round(v, 5) for v in self.angles.direction],
            "craniocaudal_deg": round(self.angles.craniocaudal_deg, 2),
            "axial_from_vertical_deg": round(self.angles.axial_from_vertical_deg, 2),
            "toward": self.angles.toward,
            "gantry_tilt_deg": round(self.angles.gantry_tilt_deg, 2),
            "tissues": [t.to_json() for t in self.tissues],
            "hu_profile": {
                "distance_mm": [round(float(v), 2) for v in self.profile_mm[::stride]],
                "hu": [round(float(v), 1) for v in self.profile_hu[::stride]],
            },
            "distances": [d.to_json() for d in self.distances],
            "warnings": [w.to_json() for w in self.warnings],
            "structures_status": {} if self.canal is None else {"canal": self.canal.to_json()},
        }

    def _step(self) -> float:
        return float(self.profile_mm[1] - self.profile_mm[0]) if len(self.profile_mm) > 1 else 1.0


class PathContext:
    """What stays fixed while a path moves: the CT, structure fields, settings."""

    def __init__(
        self,
        volume: Volume,
        structures: list[StructureField] | None = None,
        lesion: np.ndarray | None = None,
        settings: dict[str, Any] | None = None,
        canal_finding: Finding | None = None,
    ) -> None:
        self.volume = volume
        self.structures = list(structures or [])
        #: The automatic canal's finding when no canal field stands for it (not found).
        self.canal_finding = canal_finding
        self.lesion = lesion  # boolean [k, j, i] on the volume grid, optional
        self.settings = settings or load_json("planning.json")
        hu = self.settings["tissue_hu"]
        self.classes = [(c["name"], float(c["max_hu"])) for c in hu["classes"]]
        self.bone_min_hu = float(hu["bone_min_hu"])
        self.body_min_hu = float(hu["body_min_hu"])
        self.skin_mm = float(hu["skin_thickness_mm"])
        self.gas_run_mm = float(hu["gas_min_run_mm"])
        self.step_mm = float(self.settings["needle"]["sample_step_mm"])
        self._array = volume.array
        self._to_index = volume.lps_to_index

    def canal_status(self) -> Finding | None:
        return canal_status(self.structures, self.canal_finding)

    def ijk(self, points: np.ndarray) -> np.ndarray:
        return tr_apply(self._to_index, points)

    def hu_at(self, points: np.ndarray) -> np.ndarray:
        return tr.sample_trilinear(self._array, self.ijk(points), outside=-1000.0)

    def bone_fraction_around(self, point: np.ndarray) -> float:
        """Largest share of bone HU on spheres around a point (is a target inside bone?).

        Several radii, because a lytic lesion is soft tissue inside and bone only at its
        rim, whose distance from the target is not known without a lesion mask.
        """
        radii = self.settings["bone_access"]["osseous_target_radii_mm"]
        unit = tr.fibonacci_directions(64)
        return max(
            float(np.mean(self.hu_at(point + unit * float(r)) >= self.bone_min_hu)) for r in radii
        )

    def target_in_bone(self, point: np.ndarray) -> bool:
        limit = float(self.settings["bone_access"]["osseous_target_bone_fraction"])
        return self.bone_fraction_around(point) >= limit

    def incidence_deg(self, point: np.ndarray, direction: np.ndarray) -> float | None:
        """Angle between a direction and the HU gradient (the bone surface normal)."""
        h = 1.0
        offsets = np.vstack([np.eye(3) * h, -np.eye(3) * h])
        values = self.hu_at(point + offsets)
        grad = (values[:3] - values[3:]) / (2 * h)
        norm = float(np.linalg.norm(grad))
        if norm < 1e-6:
            return None
        cosine = abs(float(np.asarray(direction) @ grad)) / norm
        return math.degrees(math.acos(min(1.0, cosine)))

    def lesion_at(self, points: np.ndarray) -> np.ndarray:
        if self.lesion is None:
            return np.zeros(len(points), dtype=bool)
        return tr.sample_nearest(self.lesion, self.ijk(points), outside=0).astype(bool)


def tr_apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ matrix[:3, :3].T + matrix[:3, 3]


def analyze_path(ctx: PathContext, entry, target, device: Device) -> PathReport:
    entry = np.asarray(entry, dtype=float)
    target = np.asarray(target, dtype=float)
    s, points = tr.sample_path(entry, target, ctx.step_mm)
    hu = ctx.hu_at(points)
    angles = tr.path_angles(entry, target)
    length = float(s[-1])

    inside_body = hu > ctx.body_min_hu
    skin_index = int(np.argmax(inside_body)) if inside_body.any() else len(s) - 1
    skin_s = float(s[skin_index])
    tissues = _tissues(ctx, s, hu, points, skin_s)
    bone = hu >= ctx.bone_min_hu
    bone_depth = float(np.sum(bone[skin_index:]) * ctx.step_mm)

    distances = [_structure_distance(f, s, points, device) for f in ctx.structures]
    report = PathReport(
        entry=entry,
        target=target,
        device=device,
        length_mm=length,
        skin_to_target_mm=length - skin_s,
        bone_depth_mm=bone_depth,
        angles=angles,
        tissues=tissues,
        profile_mm=s,
        profile_hu=hu,
        distances=distances,
        warnings=[],
        canal=ctx.canal_status(),
    )
    report.warnings = _warnings(ctx, report, s, hu, points, skin_index)
    return report


def _tissues(ctx: PathContext, s, hu, points, skin_s: float) -> list[TissueSegment]:
    names = np.empty(len(s), dtype=object)
    edges = np.array([m for _, m in ctx.classes])
    # Nearest voxel, not interpolated HU: interpolation across a sharp edge (muscle ->
    # cortex) invents intermediate tissues for one sample.
    nearest = tr.sample_nearest(ctx.volume.array, ctx.ijk(points), outside=-1000)
    cls = np.searchsorted(edges, nearest, side="left").clip(0, len(ctx.classes) - 1)
    for idx, (name, _) in enumerate(ctx.classes):
        names[cls == idx] = name
    skin = (s >= skin_s) & (s < skin_s + ctx.skin_mm) & (hu > ctx.body_min_hu)
    names[skin] = "skin"
    for f in ctx.structures:
        if f.kind in ("critical", "organ"):
            names[f.inside(points)] = f.name
    names[ctx.lesion_at(points)] = "lesion"
    names[s < skin_s] = "outside body"
    segments: list[TissueSegment] = []
    half = ctx.step_mm / 2
    for idx, name in enumerate(names):
        start = max(float(s[idx]) - half, 0.0)
        end = min(float(s[idx]) + half, float(s[-1]))
        if segments and segments[-1].tissue == name:
            segments[-1].end_mm = end
        else:
            segments.append(TissueSegment(str(name), start, end))
    return [seg for seg in segments if seg.tissue != "outside body"]


def _structure_distance(f: StructureField, s, points, device: Device) -> StructureDistance:
    d = f.distance(points) - device.radius_mm
    idx = int(np.argmin(d))
    return StructureDistance(f.name, float(d[idx]), f.threshold_mm, float(s[idx]))


def _warnings(ctx: PathContext, r: PathReport, s, hu, points, skin_index: int):
    settings = ctx.settings
    out: list[PlanWarning] = []
    for d in r.distances:
        f = next(f for f in ctx.structures if f.name == d.name)
        if d.distance_mm <= 0:
            code = "CROSSES_PLEURA_OR_BOWEL" if f.gas_bearing else "CROSSES_STRUCTURE"
            out.append(
                PlanWarning(
                    code,
                    "danger",
                    f"The needle crosses the {d.name} at {d.closest_at_mm:.0f} mm from the entry.",
                    {"structure": d.name, "distance_mm": round(d.distance_mm, 2)},
                )
            )
        elif d.distance_mm < d.threshold_mm:
            out.append(
                PlanWarning(
                    "NEAR_STRUCTURE",
                    "warning",
                    f"The needle passes {d.distance_mm:.1f} mm from the {d.name} "
                    f"(safety distance {d.threshold_mm:g} mm).",
                    {
                        "structure": d.name,
                        "distance_mm": round(d.distance_mm, 2),
                        "threshold_mm": d.threshold_mm,
                    },
                )
            )
    if not any(w.code == "CROSSES_PLEURA_OR_BOWEL" for w in out):
        gas = _gas_run(ctx, s, hu, skin_index)
        if gas is not None:
            out.append(
                PlanWarning(
                    "CROSSES_PLEURA_OR_BOWEL",
                    "danger",
                    f"The path crosses gas inside the body (bowel or lung) over {gas[1]:.0f} mm "
                    f"at {gas[0]:.0f} mm from the entry.",
                    {"at_mm": round(gas[0], 1), "length_mm": round(gas[1], 1)},
                )
            )
    working = float(settings["needle"]["working_length_mm"])
    needed = r.skin_to_target_mm + working
    if r.device.length_mm < needed:
        out.append(
            PlanWarning(
                "NEEDLE_TOO_SHORT",
                "danger",
                f"{r.device.name} ({r.device.length_mm:.0f} mm) is too short: the path needs "
                f"{r.skin_to_target_mm:.0f} mm plus {working:.0f} mm outside the skin.",
                {"device_length_mm": r.device.length_mm, "needed_mm": round(needed, 1)},
            )
        )
    max_tilt = float(settings["gantry"]["max_tilt_deg"])
    if abs(r.angles.craniocaudal_deg) > max_tilt:
        out.append(
            PlanWarning(
                "STEEP_ANGLE",
                "warning",
                f"Craniocaudal angle {r.angles.craniocaudal_deg:+.0f}° is beyond the gantry's "
                f"±{max_tilt:.0f}° tilt: the whole path cannot be seen in one slice.",
                {"craniocaudal_deg": round(r.angles.craniocaudal_deg, 1), "max_tilt_deg": max_tilt},
            )
        )
    out.extend(_bone_access(ctx, r, s, hu, points, skin_index))
    unknown = canal_unknown_warning(ctx.canal_status())
    if unknown is not None:
        out.append(unknown)
    return out


def _gas_run(ctx: PathContext, s, hu, skin_index: int) -> tuple[float, float] | None:
    """(start, length) of the first run of gas inside the body, if any."""
    gas = hu[skin_index:] <= ctx.body_min_hu
    if not gas.any():
        return None
    run_start, run = None, 0
    for idx, is_gas in enumerate(gas):
        if is_gas:
            run_start = idx if run == 0 else run_start
            run += 1
            if run * ctx.step_mm >= ctx.gas_run_mm:
                return float(s[skin_index + run_start]), run * ctx.step_mm
        else:
            run = 0
    return None


def _bone_access(ctx: PathContext, r: PathReport, s, hu, points, skin_index: int):
    """Bone warnings: an osseous target reached without bone or tangentially
    (NO_BONE_ACCESS), or other bone crossed on the way (BONE_IN_PATH)."""
    if not ctx.target_in_bone(r.target):
        return []
    nearest = tr.sample_nearest(ctx.volume.array, ctx.ijk(points), outside=-1000)
    bone = (nearest >= ctx.bone_min_hu)[skin_index:]  # entry -> target, inside the body
    lesion = ctx.lesion_at(points)[skin_index:] if ctx.lesion is not None else None
    end, _ = target_bone_run(bone[::-1], None if lesion is None else lesion[::-1], ctx.step_mm)
    if end == 0:
        return [
            PlanWarning(
                "NO_BONE_ACCESS",
                "warning",
                "The target lies in bone but the path reaches it without crossing its bone "
                "(it misses the lesion's bone).",
                {},
            )
        ]
    out = []
    cortex = skin_index + len(bone) - end  # where the target's own bone begins
    before = bone[: len(bone) - end]
    if before.any():
        at = float(s[skin_index + int(np.argmax(before))])
        out.append(
            PlanWarning(
                "BONE_IN_PATH",
                "warning",
                f"The path crosses other bone at {at:.0f} mm from the entry, before the "
                "target's bone.",
                {"at_mm": round(at, 1)},
            )
        )
    incidence = ctx.incidence_deg(points[cortex], np.asarray(r.angles.direction))
    limit = float(ctx.settings["bone_access"]["max_incidence_deg"])
    if incidence is not None and incidence > limit:
        out.append(
            PlanWarning(
                "NO_BONE_ACCESS",
                "warning",
                f"The needle meets the bone surface at {incidence:.0f}° from its normal "
                f"(more than {limit:.0f}°): it may skid on the cortex.",
                {
                    "incidence_deg": round(incidence, 1),
                    "max_incidence_deg": limit,
                    "at_mm": round(float(s[cortex]), 1),
                },
            )
        )
    return out


def target_bone_run(bone: np.ndarray, lesion: np.ndarray | None, step: float) -> tuple[int, int]:
    """Indices [start, end) of the target's own bone run along a ray leaving the target.

    Near the target the ray may first cross the lesion (soft-tissue HU in a lytic
    lesion): that stretch, or up to 15 mm without labels, is allowed before the bone.
    Gaps of up to 2 mm inside the run (partial volume) do not end it.
    """
    n = len(bone)
    i = 0
    allowance = int(15.0 / step)
    while i < n and not bone[i] and (i < allowance or (lesion is not None and lesion[i])):
        i += 1
    if i >= n or not bone[i]:
        return 0, 0
    start = i
    gap_max = int(2.0 / step)
    gap = 0
    end = i
    while i < n:
        if bone[i]:
            gap = 0
            end = i + 1
        else:
            gap += 1
            if gap > gap_max:
                break
        i += 1
    return end, start
