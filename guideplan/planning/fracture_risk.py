"""Fracture risk of the treated bone: SINS for the spine (Fisher 2010), Mirels for long
bones (1989), and whether the planned cement consolidates the bone.

Each score component says where it came from (:class:`Component.origin`):

``image``   measured on the planning CT (lesion type from its HU against the bone around
            it; collapse from the body's height against its neighbours; posterolateral
            involvement from the lesion beside the canal; Mirels' size as the fraction of
            the bone's diameter) — estimates, said so;
``level`` / ``bone``  from the vertebral level or the host bone's name (given or found);
``user``    entered by the user where the images cannot tell (pain, alignment);
``unknown`` not known: the score is then a range, and unknown is never read as safe.

The points and categories are data (``treatment.json`` "fracture_risk", each with its
source). :func:`fracture_warnings` turns the scores, the ablation and the cement planned
in the same bone (against the body-fill target) into ``FRACTURE_RISK_CONSOLIDATE``,
``SPINE_UNSTABLE`` and ``IMPENDING_FRACTURE_FIXATION``.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from guideplan.core.errors import GuideplanError
from guideplan.core.labelmap import Box, mask_bounds
from guideplan.core.resources import load_json
from guideplan.core.volume import Volume
from guideplan.planning import grid
from guideplan.planning.path_analysis import PlanWarning

if TYPE_CHECKING:
    from guideplan.planning.cement import CementResult
    from guideplan.planning.context import TreatmentContext
    from guideplan.planning.zones import Zone

SINS_PAIN = ("mechanical", "occasional", "none")
MIRELS_PAIN = ("mild", "moderate", "functional")
ALIGNMENT = ("subluxation", "deformity", "normal")


class FractureRiskError(GuideplanError):
    title = "Fracture risk"


def settings(data: dict[str, Any] | None = None) -> dict[str, Any]:
    raw = (data or load_json("treatment.json"))["fracture_risk"]
    return {k: v["value"] if isinstance(v, dict) and "value" in v else v for k, v in raw.items()}


def source_of(key: str, data: dict[str, Any] | None = None) -> str:
    entry = (data or load_json("treatment.json"))["fracture_risk"][key]
    return str(entry.get("source", "")) if isinstance(entry, dict) else ""


@dataclass(frozen=True)
class Component:
    """One score component: its points (None when unknown), what was found, where it
    came from and how."""

    name: str
    points: int | None
    value: str | None
    origin: str  # image | level | bone | user | unknown
    detail: str = ""
    max_points: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "points": self.points,
            "value": self.value,
            "origin": self.origin,
            "detail": self.detail,
            "max_points": self.max_points,
        }


@dataclass
class Score:
    system: str  # SINS | Mirels
    components: list[Component]
    categories: list[tuple[int, int, str]] = field(default_factory=list)
    source: str = ""

    @property
    def minimum(self) -> int:
        return sum(c.points for c in self.components if c.points is not None)

    @property
    def maximum(self) -> int:
        return sum(c.points if c.points is not None else c.max_points for c in self.components)

    @property
    def complete(self) -> bool:
        return all(c.points is not None for c in self.components)

    @property
    def total(self) -> int | None:
        return self.minimum if self.complete else None

    def category_of(self, points: int) -> str:
        return next((name for lo, hi, name in self.categories if lo <= points <= hi), "")

    @property
    def category(self) -> str:
        lo, hi = self.category_of(self.minimum), self.category_of(self.maximum)
        return lo if lo == hi else f"{lo} to {hi} (components not known)"

    def text(self) -> str:
        if self.complete:
            return f"{self.system} {self.minimum}"
        missing = ", ".join(c.name for c in self.components if c.points is None)
        return f"{self.system} {self.minimum}-{self.maximum} ({missing} not known)"

    def component(self, name: str) -> Component:
        return next(c for c in self.components if c.name == name)

    def to_json(self) -> dict[str, Any]:
        return {
            "system": self.system,
            "total": self.total,
            "min": self.minimum,
            "max": self.maximum,
            "complete": self.complete,
            "category": self.category,
            "components": [c.to_json() for c in self.components],
            "source": self.source,
        }


# ======================================================================================
# SINS components
# ======================================================================================


def _points(cfg: dict[str, Any], system: str, name: str) -> dict[str, int]:
    return {k: int(v) for k, v in cfg[f"{system}_points"][name].items()}


def sins_location(level: str | None, origin: str = "level", cfg=None) -> Component:
    cfg = cfg or settings()
    pts = _points(cfg, "sins", "location")
    top = max(pts.values())
    if not level:
        return Component("location", None, None, "unknown", "vertebral level not known", top)
    key = level.strip().upper()
    for region, levels in cfg["sins_location"].items():
        if key in levels:
            return Component("location", pts[region], region, origin, f"level {key}", top)
    return Component("location", None, None, "unknown", f"level {level!r} not recognised", top)


def sins_pain(pain: str | None, cfg=None) -> Component:
    cfg = cfg or settings()
    pts = _points(cfg, "sins", "pain")
    if pain is None:
        return Component("pain", None, None, "unknown", "not entered (--pain)", max(pts.values()))
    if pain not in pts:
        raise FractureRiskError(
            f"{pain!r} is not a SINS pain grade.", hint=f"One of: {', '.join(pts)}."
        )
    return Component("pain", pts[pain], pain, "user", "entered by the user", max(pts.values()))


def sins_alignment(alignment: str | None, cfg=None) -> Component:
    cfg = cfg or settings()
    pts = _points(cfg, "sins", "alignment")
    top = max(pts.values())
    if alignment is None:
        return Component("alignment", None, None, "unknown", "not entered (--alignment)", top)
    if alignment not in pts:
        raise FractureRiskError(
            f"{alignment!r} is not a SINS alignment grade.", hint=f"One of: {', '.join(pts)}."
        )
    return Component("alignment", pts[alignment], alignment, "user", "entered by the user", top)


def sins_lesion(kind: str | None, detail: str = "", cfg=None) -> Component:
    cfg = cfg or settings()
    pts = _points(cfg, "sins", "lesion")
    if kind not in pts:
        return Component(
            "lesion", None, None, "unknown", detail or "lesion type not known", max(pts.values())
        )
    return Component("lesion", pts[kind], kind, "image", detail, max(pts.values()))


def sins_collapse(
    collapse_pct: float | None, involved_pct: float | None, detail: str = "", cfg=None
) -> Component:
    """Collapse > 50 % 3, < 50 % 2, none with > 50 % of the body involved 1, none 0;
    a height loss below ``collapse_min_pct`` is no collapse."""
    cfg = cfg or settings()
    pts = _points(cfg, "sins", "collapse")
    top = max(pts.values())
    if collapse_pct is None:
        return Component("collapse", None, None, "unknown", detail or "heights not known", top)
    if collapse_pct > float(cfg["collapse_over_pct"]):
        key = "over_50"
    elif collapse_pct >= float(cfg["collapse_min_pct"]):
        key = "under_50"
    elif involved_pct is None:
        # no collapse; whether > 50 % of the body is involved is not known
        return Component(
            "collapse", None, "no collapse, involvement not known", "unknown", detail, 1
        )
    elif involved_pct > float(cfg["body_involved_over_pct"]):
        key = "involved_over_50"
    else:
        key = "none"
    return Component("collapse", pts[key], key, "image", detail, top)


def sins_posterolateral(left: bool | None, right: bool | None, detail: str = "", cfg=None):
    cfg = cfg or settings()
    pts = _points(cfg, "sins", "posterolateral")
    top = max(pts.values())
    if left is None or right is None:
        if left or right:  # one side involved, the other not known
            return Component("posterolateral", None, "at least unilateral", "unknown", detail, top)
        return Component("posterolateral", None, None, "unknown", detail or "not known", top)
    key = "bilateral" if left and right else ("unilateral" if left or right else "none")
    return Component("posterolateral", pts[key], key, "image", detail, top)


def sins_score(components: list[Component], cfg=None) -> Score:
    cfg = cfg or settings()
    cats = [(int(a), int(b), str(c)) for a, b, c in cfg["sins_categories"]]
    return Score("SINS", components, cats, source_of("sins_points"))


# ======================================================================================
# Mirels components
# ======================================================================================


def mirels_site(bone: str | None, cfg=None) -> Component:
    cfg = cfg or settings()
    pts = _points(cfg, "mirels", "site")
    top = max(pts.values())
    if not bone:
        return Component("site", None, None, "unknown", "host bone not known (--bone)", top)
    key = bone.lower()
    sites = cfg["mirels_sites"]
    for region in ("peritrochanteric", "upper", "lower"):
        if any(word in key for word in sites[region]):
            return Component("site", pts[region], region, "bone", f"bone {bone!r}", top)
    return Component("site", None, None, "unknown", f"{bone!r} is not a long bone", top)


def mirels_pain(pain: str | None, cfg=None) -> Component:
    cfg = cfg or settings()
    pts = _points(cfg, "mirels", "pain")
    if pain is None:
        return Component("pain", None, None, "unknown", "not entered (--pain)", max(pts.values()))
    if pain not in pts:
        raise FractureRiskError(
            f"{pain!r} is not a Mirels pain grade.", hint=f"One of: {', '.join(pts)}."
        )
    return Component("pain", pts[pain], pain, "user", "entered by the user", max(pts.values()))


def mirels_lesion(kind: str | None, detail: str = "", cfg=None) -> Component:
    cfg = cfg or settings()
    pts = _points(cfg, "mirels", "lesion")
    if kind not in pts:
        return Component(
            "lesion", None, None, "unknown", detail or "lesion type not known", max(pts.values())
        )
    return Component("lesion", pts[kind], kind, "image", detail, max(pts.values()))


def mirels_size(fraction: float | None, detail: str = "", cfg=None) -> Component:
    """< 1/3 of the bone's diameter 1, 1/3-2/3 2, > 2/3 3."""
    cfg = cfg or settings()
    pts = _points(cfg, "mirels", "size")
    top = max(pts.values())
    if fraction is None:
        return Component("size", None, None, "unknown", detail or "not measured", top)
    key = (
        "under_third"
        if fraction < 1.0 / 3.0
        else ("third_to_two_thirds" if fraction <= 2.0 / 3.0 else "over_two_thirds")
    )
    return Component("size", pts[key], f"{fraction:.2f} of the diameter", "image", detail, top)


def mirels_score(components: list[Component], cfg=None) -> Score:
    cfg = cfg or settings()
    fix = int(cfg["mirels_fixation_from"])
    border = int(cfg["mirels_borderline"])
    cats = [
        (0, border - 1, "low risk (radiotherapy)"),
        (border, border, "borderline (clinical judgement)"),
        (fix, 12, "impending fracture (prophylactic fixation)"),
    ]
    return Score("Mirels", components, cats, source_of("mirels_points"))


# ======================================================================================
# measurements on the images
# ======================================================================================


def collapse_pct(height_mm: float, neighbour_heights_mm: list[float]) -> float | None:
    """Height loss (%) of a body against the mean of its neighbours' heights."""
    heights = [h for h in neighbour_heights_mm if h and h > 0]
    if not heights or height_mm <= 0:
        return None
    return max(0.0, 100.0 * (1.0 - height_mm / float(np.mean(heights))))


def involved_pct(lesion: np.ndarray, body: np.ndarray) -> float | None:
    """Share (%) of the vertebral body taken by the lesion (the lesion's voxels inside the
    body's slice span and bone, over the body with them)."""
    if not body.any():
        return None
    inside = lesion & body
    whole = np.count_nonzero(body | inside)
    return 100.0 * np.count_nonzero(inside) / whole


def posterolateral_involvement(
    volume: Volume, lesion: np.ndarray, canal: np.ndarray, cfg=None
) -> tuple[bool | None, bool | None, str]:
    """(left, right, how) — lesion in the pedicle/facet region beside the canal: at the
    lesion's slices, from the canal's anterior edge to behind its posterior edge, lateral
    to its side wall. Patient left is +x in LPS."""
    cfg = cfg or settings()
    les_box = mask_bounds(lesion)
    if les_box is None:
        return None, None, "no lesion"
    pts = grid.points_of(volume, les_box, lesion[les_box])
    z_lo, z_hi = pts[:, 2].min() - 1.0, pts[:, 2].max() + 1.0
    canal_box = mask_bounds(canal)
    if canal_box is None:
        return None, None, "spinal canal not known"
    cpts = grid.points_of(volume, canal_box, canal[canal_box])
    cpts = cpts[(cpts[:, 2] >= z_lo) & (cpts[:, 2] <= z_hi)]
    if len(cpts) < 10:
        return None, None, "no spinal canal at the lesion's slices"
    depth = [float(v) for v in cfg["posterolateral_depth_mm"]]
    lateral = float(cfg["posterolateral_lateral_mm"])
    y_front, y_back = cpts[:, 1].min() + depth[0], cpts[:, 1].max() + depth[1]  # +y posterior
    x_right, x_left = cpts[:, 0].min(), cpts[:, 0].max()  # -x right, +x left
    band = (pts[:, 1] >= y_front) & (pts[:, 1] <= y_back)
    voxel_ml = grid.voxel_ml(volume)
    left_n = np.count_nonzero(band & (pts[:, 0] > x_left) & (pts[:, 0] <= x_left + lateral))
    right_n = np.count_nonzero(band & (pts[:, 0] < x_right) & (pts[:, 0] >= x_right - lateral))
    least = float(cfg["posterolateral_min_ml"])
    left, right = left_n * voxel_ml >= least, right_n * voxel_ml >= least
    how = (
        f"lesion beside the canal (pedicle/facet region): left {left_n * voxel_ml:.2f} mL, "
        f"right {right_n * voxel_ml:.2f} mL (>= {least:g} mL counts; image estimate)"
    )
    return bool(left), bool(right), how


def diameter_fraction(
    volume: Volume, lesion: np.ndarray, bone: np.ndarray, reach_mm: float = 40.0
) -> tuple[float | None, str]:
    """Mirels' size: the lesion's width across the bone over the bone's diameter, in the
    cross-section through the lesion's centre (the bone's long axis from its voxels within
    ``reach_mm``), the largest ratio over directions in that plane."""
    les_box = mask_bounds(lesion)
    if les_box is None:
        return None, "no lesion"
    les = grid.points_of(volume, les_box, lesion[les_box])
    centre = les.mean(axis=0)
    box = grid.box_around_lps(volume, centre[None], reach_mm)
    bone_pts = grid.points_of(volume, box, (bone | lesion)[box])
    bone_pts = bone_pts[np.linalg.norm(bone_pts - centre, axis=1) <= reach_mm]
    if len(bone_pts) < 50:
        return None, "bone not known around the lesion"
    cov = np.cov((bone_pts - bone_pts.mean(axis=0)).T)
    axis = np.linalg.eigh(cov)[1][:, -1]  # the long axis
    step = max(float(min(volume.spacing)), 0.5)
    in_plane = lambda p: np.abs((p - centre) @ axis) <= step  # noqa: E731
    b, q = bone_pts[in_plane(bone_pts)], les[in_plane(les)]
    if len(b) < 10 or len(q) < 1:
        return None, "the lesion's cross-section is not in the bone"
    helper = np.eye(3)[int(np.argmin(np.abs(axis)))]
    u = np.cross(axis, helper)
    u /= np.linalg.norm(u)
    v = np.cross(axis, u)
    best, best_angle = 0.0, 0.0
    for angle in np.linspace(0.0, np.pi, 36, endpoint=False):
        d = np.cos(angle) * u + np.sin(angle) * v
        bw = np.ptp(b @ d) + step
        lw = np.ptp(q @ d) + step
        if bw > 0 and lw / bw > best:
            best, best_angle = lw / bw, angle
    best = min(best, 1.0)
    return best, (
        f"lesion width / bone diameter across the bone's long axis, largest over directions "
        f"({np.degrees(best_angle):.0f} deg): {best:.2f} (image estimate)"
    )


# ======================================================================================
# from a treatment context
# ======================================================================================


@dataclass
class FractureInputs:
    """What the user enters: pain (SINS: mechanical/occasional/none; Mirels:
    mild/moderate/functional), alignment (SINS: subluxation/deformity/normal)."""

    pain: str | None = None
    alignment: str | None = None

    def check(self) -> None:
        if self.pain is not None and self.pain not in SINS_PAIN + MIRELS_PAIN:
            raise FractureRiskError(
                f"{self.pain!r} is not a pain grade.",
                hint=f"Spine (SINS): {', '.join(SINS_PAIN)}; long bones (Mirels): "
                f"{', '.join(MIRELS_PAIN)}.",
            )
        if self.alignment is not None and self.alignment not in ALIGNMENT:
            raise FractureRiskError(
                f"{self.alignment!r} is not an alignment grade.",
                hint=f"One of: {', '.join(ALIGNMENT)}.",
            )


def is_spine(ctx: TreatmentContext) -> bool:
    from guideplan.planning.context import LEVELS

    facts = ctx.lesion_facts()
    level = ctx.level or ""
    host = (ctx.host or "").lower()
    return bool(
        (facts is not None and facts.vertebral)
        or level.upper() in LEVELS
        or any(w in host for w in ("vertebra", "spine", "spinal", "sacrum", "sacral"))
    )


def _lesion_detail(ctx: TreatmentContext) -> tuple[str | None, str]:
    facts = ctx.lesion_facts()
    if facts is None:
        return None, "no lesion mask"
    if facts.kind not in ("lytic", "mixed", "blastic"):
        return None, f"lesion median {facts.median_hu:.0f} HU, no bone around it to compare"
    ref = "" if facts.bone_reference_hu is None else f" vs bone {facts.bone_reference_hu:.0f} HU"
    return facts.kind, f"lesion median {facts.median_hu:.0f} HU{ref}"


def _lesion_vertebra(ctx: TreatmentContext, vertebrae=None):
    """(vertebra, index, all vertebrae) of the lesion from the anatomy finder, or None:
    the body whose slice span holds the lesion's most voxels (the spans go with the
    names and heights)."""
    result = ctx.vertebrae() if vertebrae is None else vertebrae
    if result is None or not result.vertebrae or ctx.lesion is None:
        return None
    axis = grid.slice_axis(ctx.volume)
    per_slice = np.count_nonzero(ctx.lesion, axis=tuple(a for a in range(3) if a != axis))
    best, best_n = None, 0
    for i, v in enumerate(result.vertebrae):
        n = int(per_slice[v.slices[0] : v.slices[1] + 1].sum())
        if n > best_n:
            best, best_n = i, n
    if best is None:
        return None
    return result.vertebrae[best], best, result


def _body_mask(ctx: TreatmentContext, vertebra, result) -> np.ndarray | None:
    if ctx.vertebral_body is not None:
        body = np.asarray(ctx.vertebral_body)
        if ctx.lesion is not None and body.dtype != bool and body.max() > 1:
            hit = body[ctx.lesion]
            hit = hit[hit > 0]
            return body == int(np.bincount(hit).argmax()) if len(hit) else None
        return body.astype(bool)
    if vertebra is None:
        return None
    axis = grid.slice_axis(ctx.volume)
    span = np.zeros(ctx.volume.array.shape[axis], dtype=bool)
    span[vertebra.slices[0] : vertebra.slices[1] + 1] = True
    shape = [1, 1, 1]
    shape[axis] = -1
    return (result.labels > 0) & span.reshape(shape)


def assess_sins(
    ctx: TreatmentContext, inputs: FractureInputs | None = None, vertebrae=None
) -> Score:
    """SINS of the lesion; ``vertebrae`` (an anatomy.VertebraeResult) defaults to the
    context's anatomy finder."""
    inputs = inputs or FractureInputs()
    inputs.check()
    cfg = settings(ctx.settings)
    level = ctx.vertebral_level()
    origin = "level" if ctx.level else "image"
    kind, kind_how = _lesion_detail(ctx)
    found = _lesion_vertebra(ctx, vertebrae)
    vertebra, index, result = found if found is not None else (None, None, None)
    collapse, how = None, "vertebral bodies not found (bone and canal masks needed)"
    if vertebra is not None and not vertebra.partial:
        neighbours = [
            result.vertebrae[j].height_mm
            for j in (index - 1, index + 1)
            if 0 <= j < len(result.vertebrae) and not result.vertebrae[j].partial
        ]
        collapse = collapse_pct(vertebra.height_mm, neighbours)
        how = (
            f"{vertebra.name} {vertebra.height_mm:.1f} mm high against its neighbours' "
            f"{', '.join(f'{h:.1f}' for h in neighbours)} mm"
            if collapse is not None
            else "no whole neighbouring body to compare heights with"
        )
    body = _body_mask(ctx, vertebra, result)
    involved = None if body is None or ctx.lesion is None else involved_pct(ctx.lesion, body)
    if collapse is not None:
        how += f": height loss {collapse:.0f} %"
        if involved is not None:
            how += f"; lesion {involved:.0f} % of the body"
    pain = inputs.pain if inputs.pain in SINS_PAIN else None
    canal = _canal_near_lesion(ctx)
    if canal is not None:
        left, right, pl_how = posterolateral_involvement(ctx.volume, ctx.lesion, canal, cfg)
    else:
        left, right, pl_how = None, None, "spinal canal not known near the lesion"
    return sins_score(
        [
            sins_location(level, origin, cfg),
            sins_pain(pain, cfg),
            sins_lesion(kind, kind_how, cfg),
            sins_alignment(inputs.alignment, cfg),
            sins_collapse(collapse, involved, how, cfg),
            sins_posterolateral(left, right, pl_how, cfg),
        ],
        cfg,
    )


def _canal_near_lesion(ctx: TreatmentContext) -> np.ndarray | None:
    """The canal (given, a structure named canal, or found) within 40 mm of the lesion."""
    if ctx.lesion is None:
        return None
    if ctx.canal is not None:
        return ctx.canal if ctx.canal.any() else None
    box = mask_bounds(ctx.lesion, np.ceil(40.0 / ctx.spacing_kji).astype(int))
    canal = np.zeros(ctx.volume.array.shape, dtype=bool)
    canal[box] = ctx.canal_in(box)
    return canal if canal.any() else None


def assess_mirels(ctx: TreatmentContext, inputs: FractureInputs | None = None) -> Score:
    inputs = inputs or FractureInputs()
    inputs.check()
    cfg = settings(ctx.settings)
    kind, kind_how = _lesion_detail(ctx)
    fraction, how = None, "no lesion mask"
    if ctx.lesion is not None:
        box = mask_bounds(ctx.lesion, np.ceil(45.0 / ctx.spacing_kji).astype(int))
        bone = ctx.bone_in(box)
        full = np.zeros(ctx.volume.array.shape, dtype=bool)
        full[box] = bone
        fraction, how = diameter_fraction(ctx.volume, ctx.lesion, full)
    pain = inputs.pain if inputs.pain in MIRELS_PAIN else None
    return mirels_score(
        [
            mirels_site(ctx.host, cfg),
            mirels_pain(pain, cfg),
            mirels_lesion(kind, kind_how, cfg),
            mirels_size(fraction, how, cfg),
        ],
        cfg,
    )


#: Scores per treatment context (fixed while a plan is edited) and user inputs: the
#: evaluation runs on every needle drag, the score only when its inputs change.
_SCORES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def assess(ctx: TreatmentContext, inputs: FractureInputs | None = None) -> Score | None:
    """SINS for a spinal lesion, Mirels for a long bone, None otherwise."""
    if inputs is not None:
        inputs.check()
    key = (None, None) if inputs is None else (inputs.pain, inputs.alignment)
    cached = _SCORES.setdefault(ctx, {})
    if key not in cached:
        if is_spine(ctx):
            cached[key] = assess_sins(ctx, inputs)
        elif mirels_site(ctx.host).points is not None:
            cached[key] = assess_mirels(ctx, inputs)
        else:
            cached[key] = None
    return cached[key]


# ======================================================================================
# warnings
# ======================================================================================


@dataclass
class Consolidation:
    """The cement planned in the lesion's bone against the target."""

    fill_pct: float | None  # body fill (spine) or lesion fill (elsewhere)
    target_pct: float
    measure: str  # "vertebral body" | "lesion"
    in_same_bone: bool

    @property
    def enough(self) -> bool:
        return bool(
            self.in_same_bone and self.fill_pct is not None and self.fill_pct >= self.target_pct
        )

    def text(self) -> str:
        if not self.in_same_bone:
            return "no cement is planned in the lesion's bone"
        if self.fill_pct is None:
            return f"the cement's share of the {self.measure} is not known"
        return (
            f"the cement fills {self.fill_pct:.1f} % of the {self.measure} "
            f"(target {self.target_pct:g} %)"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "fill_pct": None if self.fill_pct is None else round(float(self.fill_pct), 1),
            "target_pct": self.target_pct,
            "measure": self.measure,
            "in_same_bone": bool(self.in_same_bone),
            "enough": self.enough,
        }


def consolidation(ctx: TreatmentContext, cement: CementResult | None, spine: bool) -> Consolidation:
    cfg = settings(ctx.settings)
    if spine:
        target, measure = float(cfg["body_fill_target_pct"][0]), "vertebral body"
    else:
        target, measure = float(cfg["lesion_fill_target_pct"]), "lesion"
    if cement is None or not cement.zone.mask.any():
        return Consolidation(None, target, measure, False)
    same = _near_lesion(ctx, cement.zone.box, cement.zone.mask, float(cfg["same_bone_mm"]))
    fill = cement.body_fill_pct if spine else cement.lesion_fill_pct
    return Consolidation(fill, target, measure, same)


def _near_lesion(ctx: TreatmentContext, box: Box, mask: np.ndarray, reach_mm: float) -> bool:
    if ctx.lesion is None:
        return True  # no lesion to compare with: the cement is where the user put it
    region = ctx.margin_region(reach_mm)
    if region is None:
        return True
    hit = grid.intersect(box, region[0])
    if hit is None:
        return False
    _, in_cement, in_region = hit
    return bool(np.any(mask[in_cement] & region[1][in_region]))


def fracture_warnings(
    ctx: TreatmentContext,
    ablation: list[Zone],
    cement: CementResult | None,
    score: Score | None,
) -> tuple[list[PlanWarning], Consolidation | None]:
    cfg = settings(ctx.settings)
    kinds = set(cfg["ablation_kinds"])
    ablated = [z for z in ablation if z.kind in kinds and z.mask.any()]
    spine = score is not None and score.system == "SINS"
    facts = ctx.lesion_facts()
    host = (ctx.host or "").lower()
    eval_cfg = ctx.settings["evaluation"]["weight_bearing_words"]["value"]
    weight_bearing = any(word in host for word in eval_cfg)
    weakened_spine = spine and facts is not None and facts.kind in ("lytic", "mixed")
    why = []
    if ablated and weakened_spine:
        why.append(f"ablation of a {facts.kind} vertebral body")
    if ablated and not spine and weight_bearing:
        why.append(f"ablation of a weight-bearing bone ({ctx.host})")
    if spine and score.minimum >= int(cfg["sins_consolidate_from"]):
        why.append(f"{score.text()}: {score.category}")
    mirels = score is not None and score.system == "Mirels"
    if mirels and score.minimum >= int(cfg["mirels_borderline"]):
        why.append(f"{score.text()}: {score.category}")
    out: list[PlanWarning] = []
    cons = consolidation(ctx, cement, spine) if (why or cement is not None) else None
    values = {
        "score": None if score is None else score.to_json(),
        "lesion_type": None if facts is None else facts.kind,
        "host": ctx.host,
        "weight_bearing": weight_bearing,
        "ablated": bool(ablated),
        "consolidation": None if cons is None else cons.to_json(),
    }
    if why and cons is not None and not cons.enough:
        out.append(
            PlanWarning(
                "FRACTURE_RISK_CONSOLIDATE",
                "warning",
                f"Fracture risk ({'; '.join(why)}) and {cons.text()}: consider "
                "cementoplasty (consolidation) in the same session"
                + ("." if spine else ", or fixation."),
                values,
            )
        )
    if spine and score.minimum >= int(cfg["sins_unstable_from"]):
        out.append(
            PlanWarning(
                "SPINE_UNSTABLE",
                "warning",
                f"{score.text()}: unstable spine (SINS 13-18): ask for a surgical opinion; "
                "cement alone may not stabilise it.",
                values,
            )
        )
    if mirels and score.minimum >= int(cfg["mirels_fixation_from"]):
        out.append(
            PlanWarning(
                "IMPENDING_FRACTURE_FIXATION",
                "warning",
                f"{score.text()}: impending pathological fracture (Mirels >= "
                f"{int(cfg['mirels_fixation_from'])}): prophylactic fixation is advised, "
                "cement alone is not.",
                values,
            )
        )
    return out, cons
