"""Plan evaluation: distances to structures by hand, warning codes, the lumbar plan."""

from __future__ import annotations

import numpy as np
import pytest

from guideplan.planning.cement import predict_cement
from guideplan.planning.context import TreatmentContext
from guideplan.planning.devices import load_catalog
from guideplan.planning.evaluate import evaluate_plan, risk_code
from guideplan.planning.structures import StructureField
from guideplan.planning.zones import cryo_zone, estimate_statement, thermal_zone
from tests.planning.zone_cases import (
    LUMBAR,
    POSTERIOR_WALL_TIP,
    chart_device,
    grid_volume,
    lps_grid,
    lumbar_context,
    rf_path,
    sphere,
)


def _phantom_with_structures():
    """Lesion sphere r 8 at the origin; a cord rod along z 20 mm posterior (+y) of the
    centre (radius 4); the skin a plane at x = -30 (body at x > -30); bowel r 5 at
    (0, -25, 0)."""
    vol = grid_volume(40, 0.8)
    p = lps_grid(vol)
    lesion = sphere(vol, (0, 0, 0), 8.0)
    cord = (p[..., 0] ** 2 + (p[..., 1] - 20.0) ** 2) <= 16.0
    body = p[..., 0] > -30.0
    skin = body & (p[..., 0] <= -28.0)
    bowel = sphere(vol, (0, -25, 0), 5.0)
    fields = [
        StructureField.from_mask("spinal cord", cord, vol, 10.0),
        StructureField.from_mask("skin", skin, vol, 10.0),
        StructureField.from_mask("bowel", bowel, vol, 10.0),
    ]
    return vol, lesion, fields


def test_distances_from_the_zone_edge_to_structures_by_hand():
    vol, lesion, fields = _phantom_with_structures()
    ctx = TreatmentContext(vol, lesion=lesion, structures=fields)
    # a sphere zone of radius 10 at the origin: cord surface at y = 16 -> 6 mm;
    # skin inner face at x = -28 -> 18 mm; bowel surface at y = -20 -> 10 mm
    z = thermal_zone(vol, chart_device(20, 20, 10), (0, 0, -70), (0, 0, 10))
    ev = evaluate_plan(ctx, [z])
    d = {r.structure: r for r in ev.ablation.distances}
    voxel = 0.8
    assert d["spinal cord"].distance_mm == pytest.approx(6.0, abs=voxel)
    assert d["skin"].distance_mm == pytest.approx(18.0, abs=voxel)
    assert d["bowel"].distance_mm == pytest.approx(10.0, abs=voxel)
    codes = {w.code: w for w in ev.warnings}
    assert codes["CORD_THERMAL_RISK"].severity == "warning"
    assert codes["CORD_THERMAL_RISK"].values["distance_mm"] == pytest.approx(6.0, abs=voxel)
    assert "SKIN_BURN_RISK" not in codes
    assert ev.ablation.coverage_pct == pytest.approx(100.0)
    assert ev.ablation.min_margin_mm == pytest.approx(2.0, abs=voxel)
    doc = ev.to_json()
    assert doc["estimate"] is True and doc["estimate_statement"] == estimate_statement()
    # a zone reaching into the cord is a danger, one reaching the skin a skin burn
    big = thermal_zone(vol, chart_device(44, 44, 22), (0, 0, -70), (0, 0, 22))
    codes = {w.code: w for w in evaluate_plan(ctx, [big]).warnings}
    assert codes["CORD_THERMAL_RISK"].severity == "danger"
    assert codes["SKIN_BURN_RISK"].values["distance_mm"] == pytest.approx(6.0, abs=voxel)
    assert codes["ORGAN_BURN_RISK"].severity == "danger"


def test_incomplete_coverage_names_the_untreated_volume():
    vol, lesion, fields = _phantom_with_structures()
    ctx = TreatmentContext(vol, lesion=lesion, structures=fields)
    z = thermal_zone(vol, chart_device(12, 12, 6), (0, 0, -70), (0, 0, 6))
    w = {x.code: x for x in evaluate_plan(ctx, [z]).warnings}["INCOMPLETE_COVERAGE"]
    assert w.values["coverage_pct"] == pytest.approx(100 * (6 / 8) ** 3, rel=0.03)
    assert w.values["min_margin_mm"] == pytest.approx(-2.0, abs=0.8)


def test_which_warning_a_structure_raises():
    vol = grid_volume(5, 1.0)
    assert risk_code(TreatmentContext(vol), "nerve root L2") == "NERVE_THERMAL_RISK"
    assert risk_code(TreatmentContext(vol), "kidney") == "ORGAN_BURN_RISK"
    assert risk_code(TreatmentContext(vol), "skin") == "SKIN_BURN_RISK"
    # the canal holds the cord down to the conus (L1 by default), the cauda equina below
    assert risk_code(TreatmentContext(vol, level="T10"), "spinal canal") == "CORD_THERMAL_RISK"
    assert risk_code(TreatmentContext(vol, level="L3"), "spinal canal") == "NERVE_THERMAL_RISK"
    assert risk_code(TreatmentContext(vol), "spinal canal") == "CORD_THERMAL_RISK"  # unknown


def test_cryo_skin_protection_and_iceball_distances():
    vol, lesion, fields = _phantom_with_structures()
    ctx = TreatmentContext(vol, lesion=lesion, structures=fields)
    dev = load_catalog().get("cryo-17g-rod")
    z = cryo_zone(vol, dev, [((-60, 0, 0), (8, 0, 0))])
    ev = evaluate_plan(ctx, [z])
    # distances are from the 0 °C iceball: its edge is closer than the lethal zone's
    iceball = {r.structure: r.distance_mm for r in ev.ablation.distances}
    lethal_edge = z.ellipsoids[0]
    assert iceball["spinal cord"] < 20.0 - 4.0 - lethal_edge.radii[1]
    # lesion 20 mm from the skin (< 25 mm): protect the skin
    w = [x for x in ev.warnings if x.code == "SKIN_BURN_RISK"]
    assert any("lesion_to_skin_mm" in x.values for x in w)


@pytest.mark.skipif(not LUMBAR.is_dir(), reason="sample data missing")
def test_lumbar_rf_ablation_and_cement_plan():
    ctx = lumbar_context()
    rf = load_catalog().get("rf-cooltip-17g-3cm")
    entry, tip = rf_path()
    zone = thermal_zone(ctx.volume, rf, entry, tip)
    # cement through the same trocar, 8 mm back from the RF tip (in the lesion)
    direction = (tip - entry) / np.linalg.norm(tip - entry)
    cement = predict_cement(ctx, tip - 8.0 * direction, 4.0)
    ev = evaluate_plan(ctx, [zone], cement)
    assert ev.ablation.coverage_pct >= 99.9
    assert ev.combined.coverage_pct >= 99.9
    assert ev.ablation.healthy_bone_ml > 0
    codes = ev.codes()
    # L2 lies below the conus: the canal holds the cauda equina, not the cord
    assert "CORD_THERMAL_RISK" not in codes
    assert "INCOMPLETE_COVERAGE" not in codes
    # 4 mL fill 12 % of the 33 mL body: below the 16.2 % strength target (Molloy 2003)
    assert "FRACTURE_RISK_CONSOLIDATE" in codes
    assert ev.fracture["consolidation"]["fill_pct"] == pytest.approx(12.2, abs=1.0)
    enough = predict_cement(ctx, tip - 8.0 * direction, 7.0)  # 21 % of the body
    assert "FRACTURE_RISK_CONSOLIDATE" not in evaluate_plan(ctx, [zone], enough).codes()
    # the lesion touches the canal: a full-coverage zone reaches the canal (honest)
    nerve = [w for w in ev.warnings if w.code == "NERVE_THERMAL_RISK"]
    assert nerve and "cauda equina" in nerve[0].message
    assert ev.to_json()["settings"]["canal_holds"] == "cauda equina"
    # without cement: consolidate
    assert "FRACTURE_RISK_CONSOLIDATE" in evaluate_plan(ctx, [zone]).codes()
    # the trocar at the posterior wall breach: cement leak warning
    breach = predict_cement(ctx, POSTERIOR_WALL_TIP, 4.0)
    leaks = [w for w in evaluate_plan(ctx, [zone], breach).warnings if w.code == "CEMENT_LEAK_RISK"]
    assert any(w.values["site"] == "canal" and w.severity == "danger" for w in leaks)
