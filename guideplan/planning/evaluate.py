"""Coverage, margins, distances to critical structures and warnings of a treatment plan.

For the ablation zones, the cement and both together (:func:`evaluate_plan`):

* lesion coverage (% of the lesion's voxels inside the zone), covered and uncovered mL;
* coverage of the lesion grown by the margin setting (default 5 mm, ``treatment.json``);
* the minimal margin: the smallest signed distance from the lesion to the zone's edge
  (mm; negative = the lesion sticks out of the zone by that much), exact for an
  ellipsoid zone and within a voxel otherwise;
* healthy bone ablated (bone outside the lesion inside the zone, mL);
* for each structure to spare: the distance from the zone's edge (cryo: the 0 °C
  iceball's) to the structure, against its safety distance (``planning.json``).

Warnings (:class:`PlanWarning`, stable codes), each with the numbers behind it:
``SKIN_BURN_RISK``, ``CORD_THERMAL_RISK``, ``NERVE_THERMAL_RISK``, ``ORGAN_BURN_RISK``
(which one a structure raises: ``treatment.json`` "structure_risks"; a canal below the
conus holds the cauda equina and raises the nerve warning), ``INCOMPLETE_COVERAGE``,
``MARGIN_BELOW_SETTING``, ``CEMENT_LEAK_RISK``, ``FRACTURE_RISK_CONSOLIDATE``,
``SPINE_UNSTABLE``, ``IMPENDING_FRACTURE_FIXATION`` (SINS / Mirels and the cement against
its fill target: :mod:`guideplan.planning.fracture_risk`), and the zones' own
(``CRYO_SPACING_TOO_WIDE``, ``ZONE_CHART_EXTRAPOLATED``, ``ZONE_CLIPPED_AT_CORTEX``,
``ETHANOL_OVERFLOW``). Every output carries the statement that predicted zones are
estimates.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from guideplan.planning import fracture_risk, grid
from guideplan.planning.cement import CementResult
from guideplan.planning.context import TreatmentContext, settings_values
from guideplan.planning.fracture_risk import FractureInputs
from guideplan.planning.path_analysis import SEVERITY_ORDER, PlanWarning, canal_unknown_warning
from guideplan.planning.protection import Dissection, Thermocouple, evaluate_protection
from guideplan.planning.structures import StructureField, is_canal_name
from guideplan.planning.zones import Zone, estimate_statement

ABLATION_KINDS = ("thermal", "cryo", "ethanol")


@dataclass
class StructureRisk:
    structure: str
    code: str
    distance_mm: float  # from the zone's edge; <= 0: the zone reaches into it
    threshold_mm: float
    closest_lps: tuple[float, float, float] | None
    #: True when the structure is farther than its distance field reaches: the distance
    #: is then at least ``distance_mm``.
    lower_bound: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "structure": self.structure,
            "code": self.code,
            "distance_mm": round(self.distance_mm, 2),
            "threshold_mm": self.threshold_mm,
            "closest_lps": None
            if self.closest_lps is None or self.lower_bound
            else [round(v, 2) for v in self.closest_lps],
            "lower_bound": self.lower_bound,
        }


@dataclass
class ZoneFigures:
    """Coverage and distance figures of one zone (or a union of zones)."""

    label: str
    zone_volume_ml: float
    lesion_ml: float | None = None
    coverage_pct: float | None = None
    covered_ml: float | None = None
    uncovered_ml: float | None = None
    margin_mm: float | None = None
    margin_coverage_pct: float | None = None
    min_margin_mm: float | None = None
    healthy_bone_ml: float | None = None
    distances: list[StructureRisk] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        def r(v, n=2):
            return None if v is None else round(float(v), n)

        return {
            "label": self.label,
            "zone_volume_ml": r(self.zone_volume_ml, 3),
            "lesion_ml": r(self.lesion_ml, 3),
            "coverage_pct": r(self.coverage_pct, 2),
            "covered_ml": r(self.covered_ml, 3),
            "uncovered_ml": r(self.uncovered_ml, 3),
            "margin_mm": self.margin_mm,
            "margin_coverage_pct": r(self.margin_coverage_pct, 2),
            "min_margin_mm": r(self.min_margin_mm, 2),
            "healthy_bone_ml": r(self.healthy_bone_ml, 3),
            "distances": [d.to_json() for d in self.distances],
        }


@dataclass
class Evaluation:
    zones: list[tuple[Zone, ZoneFigures]]
    ablation: ZoneFigures | None
    cement: ZoneFigures | None
    combined: ZoneFigures | None
    cement_result: CementResult | None
    warnings: list[PlanWarning]
    settings: dict[str, Any]
    lesion: dict[str, Any] | None
    structures_status: dict[str, Any] = field(default_factory=dict)
    #: The fracture score (SINS / Mirels, each component with its origin) and the
    #: cement's consolidation against its target (guideplan.planning.fracture_risk).
    fracture: dict[str, Any] | None = None
    #: Dissections and thermocouples with their figures (guideplan.planning.protection).
    protection: dict[str, Any] | None = None

    @property
    def worst_severity(self) -> str:
        if not self.warnings:
            return "none"
        return max((w.severity for w in self.warnings), key=SEVERITY_ORDER.__getitem__)

    def codes(self) -> set[str]:
        return {w.code for w in self.warnings}

    def to_json(self) -> dict[str, Any]:
        return {
            "estimate": True,
            "estimate_statement": estimate_statement(),
            "settings": self.settings,
            "lesion": self.lesion,
            "zones": [
                {**zone.to_json(), "figures": figures.to_json()} for zone, figures in self.zones
            ],
            "ablation": None if self.ablation is None else self.ablation.to_json(),
            "cement": None
            if self.cement is None
            else {
                **self.cement.to_json(),
                **({} if self.cement_result is None else {"fill": self.cement_result.to_json()}),
            },
            "combined": None if self.combined is None else self.combined.to_json(),
            "fracture_risk": self.fracture,
            "protection": self.protection,
            "warnings": [w.to_json() for w in self.warnings],
            "worst_severity": self.worst_severity,
            "structures_status": self.structures_status,
        }


# ======================================================================================
# figures
# ======================================================================================


def zone_figures(
    ctx: TreatmentContext, zone: Zone, label: str | None = None, distances: bool = True
) -> ZoneFigures:
    """Coverage, margins, healthy bone and structure distances of one zone."""
    figures = ZoneFigures(label=label or zone.model, zone_volume_ml=zone.volume_ml)
    facts = ctx.lesion_facts()
    if facts is not None:
        _coverage(ctx, zone, figures)
    figures.healthy_bone_ml = _healthy_bone(ctx, zone)
    if distances:
        figures.distances = structure_distances(ctx, zone.safety_zone)
    return figures


def _coverage(ctx: TreatmentContext, zone: Zone, figures: ZoneFigures) -> None:
    facts = ctx.lesion_facts()
    assert facts is not None and ctx.lesion is not None
    covered = 0
    hit = grid.intersect(zone.box, _lesion_box(ctx))
    if hit is not None:
        inter, in_zone, _ = hit
        covered = int(np.count_nonzero(zone.mask[in_zone] & ctx.lesion[inter]))
    n = facts.n_voxels
    figures.lesion_ml = facts.volume_ml
    figures.coverage_pct = 100.0 * covered / n
    figures.covered_ml = covered * ctx.voxel_ml
    figures.uncovered_ml = (n - covered) * ctx.voxel_ml
    figures.margin_mm = ctx.margin_mm
    region = ctx.margin_region()
    if region is not None:
        rbox, rmask = region
        total = int(np.count_nonzero(rmask))
        inside = 0
        hit = grid.intersect(zone.box, rbox)
        if hit is not None:
            _, in_zone, in_region = hit
            inside = int(np.count_nonzero(zone.mask[in_zone] & rmask[in_region]))
        figures.margin_coverage_pct = 100.0 * inside / max(total, 1)
    figures.min_margin_mm = minimal_margin(ctx, zone)


def _lesion_box(ctx: TreatmentContext):
    region = ctx.margin_region()
    assert region is not None
    return region[0]


def minimal_margin(ctx: TreatmentContext, zone: Zone) -> float | None:
    """min over the lesion's boundary of the distance to the zone's edge, positive inside
    the zone (the margin), negative outside (how far the lesion sticks out)."""
    facts = ctx.lesion_facts()
    if facts is None or len(facts.boundary_lps) == 0:
        return None
    if not zone.mask.any():
        return None
    pts = facts.boundary_lps
    if zone.exact and zone.ellipsoids:
        sd = zone.signed_distance(pts)
    else:
        region = ctx.margin_region()
        cover = grid.union_box([zone.box, region[0]]) if region is not None else None
        sd = zone.signed_distance(pts, cover=cover)
    return float(-np.max(sd))


def _healthy_bone(ctx: TreatmentContext, zone: Zone) -> float | None:
    if not zone.mask.any():
        return 0.0
    bone = ctx.bone_in(zone.box)
    healthy = zone.mask & bone & ~ctx.lesion_in(zone.box)
    return float(np.count_nonzero(healthy)) * ctx.voxel_ml


def structure_distances(ctx: TreatmentContext, zone: Zone) -> list[StructureRisk]:
    """Distance from the zone's edge to each structure (<= 0: the zone reaches into it)."""
    out = []
    surface = zone.surface_points() if zone.mask.any() else np.zeros((0, 3))
    for f in ctx.structures:
        d, at = _field_min(ctx, f, zone, surface)
        out.append(
            StructureRisk(
                structure=f.name,
                code=risk_code(ctx, f.name),
                distance_mm=d,
                threshold_mm=f.threshold_mm,
                closest_lps=at,
                lower_bound=d >= f.cap_mm - 1e-3,
            )
        )
    return out


def _field_min(ctx: TreatmentContext, f: StructureField, zone: Zone, surface: np.ndarray):
    best, at = float(f.cap_mm), None
    if len(surface):
        d = f.distance(surface)
        i = int(np.argmin(d))
        best, at = float(d[i]), surface[i]
    # inside the zone: a structure the zone swallows has no surface point near it
    lo = f.lo_ijk.astype(int)[::-1]
    fbox = tuple(slice(int(a), int(a) + n) for a, n in zip(lo, f.distance_map.shape, strict=True))
    hit = grid.intersect(zone.box, fbox)  # type: ignore[arg-type]
    if hit is not None:
        _, in_zone, in_field = hit
        m = zone.mask[in_zone]
        if m.any():
            values = f.distance_map[in_field][m]
            j = int(np.argmin(values))
            if values[j] < best:
                best = float(values[j])
                kji = np.argwhere(m)[j] + np.array([s.start for s in hit[0]])
                at = ctx.volume.index_to_physical(kji[::-1].astype(float))
    return best, None if at is None else tuple(float(v) for v in at)


def risk_code(ctx: TreatmentContext, name: str) -> str:
    """The warning a structure raises when a zone comes too close (treatment.json)."""
    table = ctx.settings["structure_risks"]
    # the cord, the thecal sac, "spinal_cord" ...: the canal's rule, whatever the name
    key = "spinal canal" if is_canal_name(name) else name.lower()
    for rule in table["rules"]:
        if any(word in key for word in rule["words"]):
            if "below_conus_code" in rule and ctx.below_conus():
                return str(rule["below_conus_code"])
            return str(rule["code"])
    return str(table["default_code"])


def union_zone(zones: list[Zone], label: str) -> Zone | None:
    zones = [z for z in zones if z.mask.size and z.mask.any()]
    if not zones:
        return None
    if len(zones) == 1:
        return zones[0]
    box = grid.union_box([z.box for z in zones])
    mask = np.zeros(grid.box_shape(box), dtype=bool)
    for z in zones:
        mask |= grid.paste(z.mask, z.box, box)
    return Zone(
        model=label,
        kind="combined",
        device_id="+".join(sorted({z.device_id for z in zones if z.device_id})),
        parameters={"zones": [z.model for z in zones]},
        volume=zones[0].volume,
        box=box,
        mask=mask,
    )


# ======================================================================================
# the plan
# ======================================================================================


def evaluate_plan(
    ctx: TreatmentContext,
    ablation: list[Zone] | tuple[Zone, ...] = (),
    cement: CementResult | None = None,
    fracture_inputs: FractureInputs | None = None,
    dissections: list[Dissection] | tuple = (),
    thermocouples: list[Thermocouple] | tuple = (),
) -> Evaluation:
    """Figures and warnings of the ablation zones, the cement, and both together;
    ``fracture_inputs``: what the user enters for the fracture score (pain, alignment)."""
    ablation = [z for z in ablation]
    per_zone = [(z, zone_figures(ctx, z, label=z.model)) for z in ablation]
    abl_union = union_zone(ablation, "ablation")
    abl_fig = None
    if len(ablation) == 1 or (ablation and abl_union is None):
        abl_fig = per_zone[0][1]  # (an empty zone still covers 0 % of the lesion)
    elif ablation:
        assert abl_union is not None
        abl_fig = zone_figures(ctx, abl_union, "ablation", distances=False)
        abl_fig.distances = _merge_distances([f for _, f in per_zone])
    cem_fig = None
    if cement is not None:
        cem_fig = zone_figures(ctx, cement.zone, "cement", distances=True)
        per_zone.append((cement.zone, cem_fig))
    combined = None
    if abl_union is not None and cement is not None:
        both = union_zone([abl_union, cement.zone], "ablation+cement")
        if both is not None:
            combined = zone_figures(ctx, both, "ablation+cement", distances=False)
    warnings = _merge_structure_warnings(_warnings(ctx, per_zone, abl_fig, cement))
    score = fracture_risk.assess(ctx, fracture_inputs)
    fracture, consolidation = fracture_risk.fracture_warnings(ctx, ablation, cement, score)
    protection = None
    if dissections or thermocouples:
        protection, warnings = evaluate_protection(
            ctx, per_zone, warnings, list(dissections), list(thermocouples)
        )
    warnings = sorted(warnings + fracture, key=lambda w: -SEVERITY_ORDER[w.severity])
    facts = ctx.lesion_facts()
    return Evaluation(
        protection=protection,
        fracture={
            "score": None if score is None else score.to_json(),
            "consolidation": None if consolidation is None else consolidation.to_json(),
        },
        zones=per_zone,
        ablation=abl_fig,
        cement=cem_fig,
        combined=combined,
        cement_result=cement,
        warnings=warnings,
        settings=_settings_json(ctx),
        structures_status=_structures_status(ctx),
        lesion=None
        if facts is None
        else {
            "volume_ml": round(facts.volume_ml, 3),
            "centroid_lps": [round(float(v), 2) for v in facts.centroid_lps],
            "median_hu": round(facts.median_hu, 1),
            "bone_reference_hu": None
            if facts.bone_reference_hu is None
            else round(facts.bone_reference_hu, 1),
            "type": facts.kind,
            "distance_to_canal_mm": None
            if facts.canal_distance_mm is None
            else round(facts.canal_distance_mm, 1),
            "vertebral": facts.vertebral,
            "level": ctx.vertebral_level() if facts.vertebral else None,
        },
    )


def _merge_distances(figures: list[ZoneFigures]) -> list[StructureRisk]:
    best: dict[str, StructureRisk] = {}
    for fig in figures:
        for d in fig.distances:
            if d.structure not in best or d.distance_mm < best[d.structure].distance_mm:
                best[d.structure] = d
    return list(best.values())


def _structures_status(ctx: TreatmentContext) -> dict[str, Any]:
    finding = ctx.canal_status()
    return {} if finding is None else {"canal": finding.to_json()}


def _canal_usable(ctx: TreatmentContext) -> bool:
    finding = ctx.canal_status()
    return finding is None or finding.usable


def _settings_json(ctx: TreatmentContext) -> dict[str, Any]:
    return {
        "margin_mm": ctx.margin_mm,
        "safety_distance_mm": {f.name: f.threshold_mm for f in ctx.structures},
        "full_coverage_pct": float(
            settings_values("evaluation", ctx.settings)["full_coverage_pct"]
        ),
        "vertebral_level": ctx.vertebral_level(),
        "canal_holds": {True: "cauda equina", False: "spinal cord", None: "unknown (cord assumed)"}[
            ctx.below_conus()
        ]
        if ctx.canal_field() and _canal_usable(ctx)
        else None,
    }


def _warnings(
    ctx: TreatmentContext,
    per_zone: list[tuple[Zone, ZoneFigures]],
    ablation: ZoneFigures | None,
    cement: CementResult | None,
) -> list[PlanWarning]:
    cfg = settings_values("evaluation", ctx.settings)
    out: list[PlanWarning] = []
    for zone, figures in per_zone:
        out.extend(zone.warnings if zone.kind != "cement" else [])
        if zone.kind not in ABLATION_KINDS:
            continue
        what = {"thermal": "ablation zone", "cryo": "iceball (0 °C)", "ethanol": "ethanol spread"}[
            zone.kind
        ]
        for d in figures.distances:
            if d.distance_mm >= d.threshold_mm:
                continue
            inside = d.distance_mm <= 0
            out.append(
                PlanWarning(
                    d.code,
                    "danger" if inside else "warning",
                    (
                        f"The {what} reaches {-d.distance_mm:.1f} mm into the {d.structure}"
                        if inside
                        else f"The edge of the {what} is {d.distance_mm:.1f} mm from the "
                        f"{d.structure}"
                    )
                    + f" (safety distance {d.threshold_mm:g} mm)"
                    + _canal_note(ctx, d),
                    {
                        "structure": d.structure,
                        "distance_mm": round(d.distance_mm, 2),
                        "threshold_mm": d.threshold_mm,
                        "zone": zone.model,
                        "closest_lps": None
                        if d.closest_lps is None
                        else [round(v, 1) for v in d.closest_lps],
                    },
                )
            )
    out.extend(_skin_protection(ctx, [z for z, _ in per_zone if z.kind == "cryo"]))
    if ablation is not None and ablation.coverage_pct is not None:
        full = float(cfg["full_coverage_pct"])
        if ablation.coverage_pct < full:
            out.append(
                PlanWarning(
                    "INCOMPLETE_COVERAGE",
                    "warning",
                    f"The ablation covers {ablation.coverage_pct:.1f} % of the lesion: "
                    f"{ablation.uncovered_ml:.2f} mL untreated"
                    + (
                        "."
                        if ablation.min_margin_mm is None
                        else f" (the lesion sticks out by up to {-ablation.min_margin_mm:.1f} mm)."
                    ),
                    {
                        "coverage_pct": round(ablation.coverage_pct, 2),
                        "uncovered_ml": round(ablation.uncovered_ml or 0.0, 3),
                        "min_margin_mm": None
                        if ablation.min_margin_mm is None
                        else round(ablation.min_margin_mm, 2),
                        "full_coverage_pct": full,
                    },
                )
            )
        elif ablation.min_margin_mm is not None and ablation.min_margin_mm < ctx.margin_mm:
            out.append(
                PlanWarning(
                    "MARGIN_BELOW_SETTING",
                    "info",
                    f"The lesion is covered, but the minimal margin is "
                    f"{ablation.min_margin_mm:.1f} mm (setting {ctx.margin_mm:g} mm); "
                    f"{ablation.margin_coverage_pct:.1f} % of lesion + margin is covered.",
                    {
                        "min_margin_mm": round(ablation.min_margin_mm, 2),
                        "margin_mm": ctx.margin_mm,
                        "margin_coverage_pct": round(ablation.margin_coverage_pct or 0.0, 2),
                    },
                )
            )
    if cement is not None:
        out.extend(cement.warnings)
    if per_zone:
        unknown = canal_unknown_warning(ctx.canal_status())
        if unknown is not None:
            out.append(unknown)
    return sorted(out, key=lambda w: -SEVERITY_ORDER[w.severity])


def _canal_note(ctx: TreatmentContext, d: StructureRisk) -> str:
    if "canal" not in d.structure.lower():
        return ""
    below = ctx.below_conus()
    level = ctx.vertebral_level()
    if below:
        return f"; at {level} the canal holds the cauda equina (nerve roots)"
    if below is None:
        return "; level unknown: the canal is taken to hold the spinal cord"
    return f"; at {level} the canal holds the spinal cord"


def _skin_protection(ctx: TreatmentContext, cryo: list[Zone]) -> list[PlanWarning]:
    facts = ctx.lesion_facts()
    if not cryo or facts is None:
        return []
    skin = next((f for f in ctx.structures if "skin" in f.name.lower()), None)
    if skin is None:
        return []
    limit = float(settings_values("cryo", ctx.settings)["skin_protection_lesion_mm"])
    d = float(skin.distance(facts.boundary_lps).min())
    if d >= limit:
        return []
    return [
        PlanWarning(
            "SKIN_BURN_RISK",
            "warning",
            f"The lesion is {d:.1f} mm from the skin (< {limit:g} mm): protect the skin "
            "during cryoablation (warm saline, pneumodissection).",
            {
                "structure": skin.name,
                "lesion_to_skin_mm": round(d, 1),
                "protection_below_mm": limit,
            },
        )
    ]


def _merge_structure_warnings(warnings: list[PlanWarning]) -> list[PlanWarning]:
    """One warning per structure and code when several zones (overlapping zones of one
    lesion) come too close: the closest zone's, saying how many zones do."""
    groups: dict[tuple[str, str], list[PlanWarning]] = {}
    out: list[PlanWarning] = []
    for w in warnings:
        v = w.values
        if "structure" in v and "zone" in v and "distance_mm" in v:
            groups.setdefault((w.code, str(v["structure"])), []).append(w)
        else:
            out.append(w)
    for items in groups.values():
        worst = min(items, key=lambda w: float(w.values["distance_mm"]))
        if len(items) > 1:
            worst = PlanWarning(
                worst.code,
                max((w.severity for w in items), key=SEVERITY_ORDER.__getitem__),
                f"{worst.message} (the closest of {len(items)} zones that come too close)",
                {**worst.values, "zones": len(items)},
            )
        out.append(worst)
    return out
