"""Thermal protection as plan elements: hydro- or CO2 dissection and thermocouples.

``Dissection``
    Fluid (hydrodissection) or gas (CO2 dissection) injected through its own needle
    between the zone and a structure: either it displaces the structure by
    ``displacement_mm``, or it lays an insulating layer ``thickness_mm`` thick. It counts
    for the structure when its tip lies within ``reach_mm`` (setting) of the structure's
    point closest to the zone; the structure's distance from the zone's edge is then
    taken as the measured one plus the displacement (or layer). An estimate: confirm the
    displacement on the images during the procedure.
``Thermocouple``
    A temperature probe at a point: its signed distance to the zone's edge (heat: the
    ablation zone; cold: the 0 °C iceball), the temperature it would read (an estimate:
    heat falls linearly from the zone's edge temperature to body temperature over a
    set distance; cold follows the isotherm shells, then rises to body temperature over
    the iceball's tail), and a warning threshold (nerves tolerate 10-45 °C).

:func:`evaluate_protection` gives their figures and warnings
(``THERMOCOUPLE_LIMIT``, ``DISSECTION_INSUFFICIENT``, ``PROTECTED_BY_DISSECTION``) and
the structure warnings a dissection answers.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from guideplan.planning.context import settings_values
from guideplan.planning.path_analysis import PlanWarning

if TYPE_CHECKING:
    from guideplan.planning.context import TreatmentContext
    from guideplan.planning.zones import Zone

#: Structure warnings a dissection can answer.
STRUCTURE_CODES = ("SKIN_BURN_RISK", "CORD_THERMAL_RISK", "NERVE_THERMAL_RISK", "ORGAN_BURN_RISK")


@dataclass(frozen=True)
class Dissection:
    structure: str
    tip_lps: tuple[float, float, float]
    agent: str = "hydro"  # hydro | co2
    displacement_mm: float = 0.0
    thickness_mm: float = 0.0  # an insulating layer instead of a displacement
    entry_lps: tuple[float, float, float] | None = None

    @property
    def gain_mm(self) -> float:
        return max(float(self.displacement_mm), float(self.thickness_mm))

    def to_json(self) -> dict[str, Any]:
        return {
            "structure": self.structure,
            "agent": self.agent,
            "tip_lps": [round(float(v), 2) for v in self.tip_lps],
            "entry_lps": None
            if self.entry_lps is None
            else [round(float(v), 2) for v in self.entry_lps],
            "displacement_mm": self.displacement_mm,
            "thickness_mm": self.thickness_mm,
        }


@dataclass(frozen=True)
class Thermocouple:
    point_lps: tuple[float, float, float]
    name: str = ""
    warn_c: float | None = None  # default: the setting for heat (high) or cold (low)


def _cfg(ctx: TreatmentContext) -> dict[str, Any]:
    return settings_values("protection", ctx.settings)


def _edge_distance(zone: Zone, point: np.ndarray) -> float:
    return float(zone.signed_distance(point[None])[0])


def estimated_temperature_c(ctx: TreatmentContext, zone: Zone, point) -> tuple[float, float]:
    """(estimated °C, signed distance to the edge in mm) at ``point`` for ``zone``."""
    cfg = _cfg(ctx)
    body = float(settings_values("cryo", ctx.settings)["body_temperature_c"])
    p = np.asarray(point, dtype=float)
    if zone.kind == "cryo" and zone.isotherms:
        names = sorted(zone.isotherms, key=float, reverse=True)  # 0, -20, -40
        d = {n: _edge_distance(zone.isotherms[n], p) for n in names}
        edge = d[names[0]]
        if edge >= 0:  # outside the iceball: up to body temperature over the tail
            tail = float(cfg["cold_tail_mm"])
            return min(body, float(names[0]) + edge * (body - float(names[0])) / tail), edge
        for warm, cold in itertools.pairwise(names):
            if d[cold] >= 0:  # between two shells: linear in the distances
                f = -d[warm] / max(-d[warm] + d[cold], 1e-6)
                return float(warm) + f * (float(cold) - float(warm)), edge
        return float(names[-1]), edge
    edge = _edge_distance(zone, p)
    hot = float(cfg["heat_edge_c"])
    if edge <= 0:
        return hot, edge
    fall = float(cfg["heat_falloff_mm"])
    return max(body, hot - edge * (hot - body) / fall), edge


def evaluate_protection(
    ctx: TreatmentContext,
    zones: list[tuple[Zone, Any]],  # (zone, its evaluate.ZoneFigures)
    warnings: list[PlanWarning],
    dissections: list[Dissection] = (),
    thermocouples: list[Thermocouple] = (),
) -> tuple[dict[str, Any], list[PlanWarning]]:
    """Figures of the protection elements and the plan's warnings with them applied."""
    cfg = _cfg(ctx)
    ablation = [(z, f) for z, f in zones if z.kind in ("thermal", "cryo")]
    out_warnings = list(warnings)
    doc: dict[str, Any] = {"estimate": True, "dissections": [], "thermocouples": []}
    reach = float(cfg["dissection_reach_mm"])
    for dis in dissections:
        entry = {**dis.to_json(), "applies": False, "distances": []}
        # the zone that comes closest to the structure decides (overlapping zones)
        closest = []
        for zone, figures in ablation:
            risk = next(
                (r for r in figures.distances if r.structure.lower() == dis.structure.lower()),
                None,
            )
            if risk is not None and risk.closest_lps is not None:
                closest.append((risk.distance_mm, zone, risk))
        for _, zone, risk in sorted(closest, key=lambda item: item[0])[:1]:
            near = float(np.linalg.norm(np.asarray(dis.tip_lps) - np.asarray(risk.closest_lps)))
            applies = near <= reach
            protected = risk.distance_mm + (dis.gain_mm if applies else 0.0)
            entry["distances"].append(
                {
                    "zone": zone.model,
                    "measured_mm": round(risk.distance_mm, 2),
                    "with_dissection_mm": round(protected, 2),
                    "threshold_mm": risk.threshold_mm,
                    "tip_to_structure_mm": round(near, 1),
                }
            )
            entry["applies"] = entry["applies"] or applies
            if not applies:
                out_warnings.append(
                    PlanWarning(
                        "DISSECTION_INSUFFICIENT",
                        "warning",
                        f"The {dis.agent} dissection's tip is {near:.1f} mm from the "
                        f"{dis.structure} point closest to the zone (> {reach:g} mm): it is "
                        "not taken to protect it.",
                        {"structure": dis.structure, "tip_to_structure_mm": round(near, 1)},
                    )
                )
                continue
            answered = [
                w
                for w in out_warnings
                if w.code in STRUCTURE_CODES
                and str(w.values.get("structure", "")).lower() == dis.structure.lower()
            ]
            if protected >= risk.threshold_mm:
                for w in answered:
                    out_warnings.remove(w)
                out_warnings.append(
                    PlanWarning(
                        "PROTECTED_BY_DISSECTION",
                        "info",
                        f"The {dis.structure} is {risk.distance_mm:.1f} mm from the zone's "
                        f"edge; with {dis.gain_mm:g} mm of {dis.agent} dissection "
                        f"{protected:.1f} mm (safety distance {risk.threshold_mm:g} mm): an "
                        "estimate, confirm the displacement on the images.",
                        {
                            "structure": dis.structure,
                            "measured_mm": round(risk.distance_mm, 2),
                            "with_dissection_mm": round(protected, 2),
                            "threshold_mm": risk.threshold_mm,
                        },
                    )
                )
            else:
                out_warnings.append(
                    PlanWarning(
                        "DISSECTION_INSUFFICIENT",
                        "warning",
                        f"With {dis.gain_mm:g} mm of {dis.agent} dissection the {dis.structure} "
                        f"is still {protected:.1f} mm from the zone's edge (safety distance "
                        f"{risk.threshold_mm:g} mm).",
                        {
                            "structure": dis.structure,
                            "with_dissection_mm": round(protected, 2),
                            "threshold_mm": risk.threshold_mm,
                        },
                    )
                )
        doc["dissections"].append(entry)
    for i, tc in enumerate(thermocouples, start=1):
        name = tc.name or f"thermocouple {i}"
        readings = []
        # one reading per kind: overlapping heat zones heat together (the hottest counts),
        # cryo zones cool together (the coldest counts)
        by_kind: dict[str, tuple[float, float, Zone]] = {}
        for zone, _ in ablation:
            temp, edge = estimated_temperature_c(ctx, zone, tc.point_lps)
            best = by_kind.get(zone.kind)
            worse = best is None or (temp < best[0] if zone.kind == "cryo" else temp > best[0])
            if worse:
                by_kind[zone.kind] = (temp, edge, zone)
        for temp, edge, zone in by_kind.values():
            cold = zone.kind == "cryo"
            limit = float(
                tc.warn_c
                if tc.warn_c is not None
                else cfg["cold_warn_c"]
                if cold
                else cfg["heat_warn_c"]
            )
            reached = temp <= limit if cold else temp >= limit
            readings.append(
                {
                    "zone": zone.model,
                    "edge_distance_mm": round(edge, 2),
                    "estimated_c": round(temp, 1),
                    "stands_for": "0 °C iceball edge and isotherm shells"
                    if cold
                    else f"{float(cfg['heat_edge_c']):g} °C at the ablation zone's edge",
                    "warn_c": limit,
                    "reached": bool(reached),
                }
            )
            if reached:
                out_warnings.append(
                    PlanWarning(
                        "THERMOCOUPLE_LIMIT",
                        "warning",
                        f"{name} is {edge:.1f} mm from the edge of the {zone.model} zone"
                        + (f" (the closest of {len(ablation)})" if len(ablation) > 1 else "")
                        + f": about {temp:.0f} °C expected there, past its {limit:g} °C limit "
                        "(an estimate: watch the reading during the treatment).",
                        {
                            "thermocouple": name,
                            "edge_distance_mm": round(edge, 2),
                            "estimated_c": round(temp, 1),
                            "warn_c": limit,
                        },
                    )
                )
        doc["thermocouples"].append(
            {
                "name": name,
                "point_lps": [round(float(v), 2) for v in tc.point_lps],
                "readings": readings,
            }
        )
    return doc, out_warnings
