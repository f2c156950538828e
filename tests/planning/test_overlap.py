"""Bipolar bone RF (zone ending at the tip, a user-entered chart) and overlapping zones
covering a lesion larger than one zone; case01 planned with full coverage and cement."""

from __future__ import annotations

import json

import numpy as np
import pytest

from guideplan.cli import main
from guideplan.planning.context import TreatmentContext
from guideplan.planning.devices import Device, save_user_device, validate_device
from guideplan.planning.evaluate import evaluate_plan
from guideplan.planning.overlap import plan_overlapping_zones
from guideplan.planning.zones import ZoneError, thermal_zone
from tests.planning.zone_cases import (
    LESION_CENTROID,
    LUMBAR,
    TRANSPEDICULAR,
    chart_device,
    grid_volume,
    sphere,
)

#: A bipolar chart as a user enters it from an IFU (test data, not a product's chart).
BIPOLAR = {
    "id": "rf-bipolar-test",
    "kind": "rf_bipolar",
    "name": "Bipolar bone RF (entered chart)",
    "outer_diameter_mm": 1.65,
    "length_mm": 150,
    "approximate": False,
    "source": "instructions for use, table of zone sizes",
    "zone": {
        "model": "ellipsoid",
        "parameters": ["time_s"],
        "default_time_s": 450,
        "rows": [
            {"time_s": 0, "length_mm": 10.0, "width_mm": 1.65},
            {"time_s": 450, "length_mm": 30.0, "width_mm": 20.0},
        ],
    },
}


def test_a_bipolar_zone_grows_with_time_and_ends_at_the_tip(tmp_path):
    dev = validate_device(dict(BIPOLAR))
    vol = grid_volume(30, 0.5)
    entry, tip = np.array([0.0, -80.0, 0.0]), np.array([0.0, 10.0, 0.0])
    sizes = []
    for time_s in (100, 450):
        zone = thermal_zone(vol, dev, entry, tip, time_s=time_s)
        (e,) = zone.ellipsoids
        far = e.center + e.axes[0] * e.radii[0]
        np.testing.assert_allclose(far, tip, atol=1e-6)  # the zone ends at the tip
        assert zone.model == "rf-bipolar"
        sizes.append(e.radii.copy())
    assert np.all(sizes[1] > sizes[0])
    # the user's catalog takes it (the dialog's save path)
    saved = save_user_device(dict(BIPOLAR), tmp_path / "devices.json")
    assert saved.kind == "rf_bipolar"


def test_overlapping_zones_cover_a_sphere_larger_than_one_zone_with_its_margin():
    vol = grid_volume(30, 0.8)
    lesion = sphere(vol, (0, 0, 0), 9.0)
    ctx = TreatmentContext(vol, lesion=lesion, margin_mm=3.0)
    dev = chart_device(14.0, 12.0, 7.0)  # one zone: 14 x 12 mm, far smaller than 24 mm
    one = thermal_zone(vol, dev, (0, -80, 0), (0, 7, 0))
    assert evaluate_plan(ctx, [one]).ablation.coverage_pct < 40.0
    short = plan_overlapping_zones(ctx, dev, (0, -80, 0), (0, 0, 0), max_zones=3)
    assert len(short.zones) == 3 and "budget of 3 zones" in short.notes[-1]
    plan = plan_overlapping_zones(ctx, dev, (0, -80, 0), (0, 0, 0), max_zones=40)
    assert len(plan.zones) > 3 and plan.region_coverage_pct == pytest.approx(100.0)
    for entry, tip in plan.needles:  # parallel to the approach, tracks of equal length
        d = (tip - entry) / np.linalg.norm(tip - entry)
        np.testing.assert_allclose(d, [0, 1, 0], atol=1e-9)
        assert np.linalg.norm(tip - entry) == pytest.approx(80.0)
    ev = evaluate_plan(ctx, plan.zones)
    # the evaluation's union of the zone masks agrees with the planner's own count
    assert ev.ablation.coverage_pct == pytest.approx(100.0)
    assert ev.ablation.margin_coverage_pct == pytest.approx(plan.region_coverage_pct, abs=1.0)
    assert ev.ablation.min_margin_mm >= 3.0 - 0.8  # within a voxel of the margin setting
    assert "INCOMPLETE_COVERAGE" not in ev.codes()


def test_overlap_needs_a_lesion_and_a_heating_device():
    vol = grid_volume(10, 1.0)
    with pytest.raises(ZoneError):
        plan_overlapping_zones(TreatmentContext(vol), chart_device(5, 5, 2), (0, -50, 0), (0, 0, 0))
    cryo = Device.from_dict(
        {"id": "c", "kind": "cryoprobe", "outer_diameter_mm": 1.5, "length_mm": 150}, "t"
    )
    ctx = TreatmentContext(vol, lesion=sphere(vol, (0, 0, 0), 3.0))
    with pytest.raises(ZoneError):
        plan_overlapping_zones(ctx, cryo, (0, -50, 0), (0, 0, 0))


@pytest.mark.skipif(not LUMBAR.is_dir(), reason="sample data missing")
def test_case01_is_planned_with_full_coverage_margin_and_cement(tmp_path, capsys):
    catalog = tmp_path / "mine.json"
    catalog.write_text(
        json.dumps({"format": "guideplan-device-catalog", "version": 1, "devices": [BIPOLAR]}),
        encoding="utf-8",
    )
    entry = LESION_CENTROID - TRANSPEDICULAR * 80.0
    target = LESION_CENTROID + TRANSPEDICULAR * 12.0

    def pt(p):
        return ",".join(f"{v:.3f}" for v in p)

    args = ["plan", str(LUMBAR), "--entry", pt(entry), "--target", pt(target)]
    args += ["--labels", str(LUMBAR / "truth"), "--catalog", str(catalog), "--json"]
    args += ["--zone-device", "rf-bipolar-test", "--cover-lesion", "--cement-ml", "7"]
    args += ["--thermocouple", "-6,58,1"]  # in the canal, behind the destroyed wall
    assert main([*args, "--pain", "mechanical", "--alignment", "normal"]) == 0
    t = json.loads(capsys.readouterr().out)["treatment"]
    assert t["overlap"]["zones"] == len(t["zones"]) - 1 > 1  # the zones, then the cement
    ablation = t["ablation"]
    assert ablation["coverage_pct"] == pytest.approx(100.0)
    assert ablation["margin_coverage_pct"] >= 99.0
    assert ablation["min_margin_mm"] >= 5.0 - 0.8
    fill = t["cement"]["fill"]
    assert fill["vertebral_body_fill_pct"] >= 16.2  # the strength target (Molloy 2003)
    codes = {w["code"] for w in t["warnings"]}
    # expected: the lesion touches the canal (cauda equina at L2) and the posterior wall
    # is destroyed (cement leak toward the canal); consolidated, covered, margin kept
    assert {"NERVE_THERMAL_RISK", "CEMENT_LEAK_RISK", "THERMOCOUPLE_LIMIT"} <= codes
    (probe,) = t["protection"]["thermocouples"]
    assert max(r["estimated_c"] for r in probe["readings"]) >= 45.0
    assert not codes & {"INCOMPLETE_COVERAGE", "MARGIN_BELOW_SETTING", "CORD_THERMAL_RISK"}
    assert "FRACTURE_RISK_CONSOLIDATE" not in codes
    score = t["fracture_risk"]["score"]
    # L2 mobile 2, mechanical 3, lytic 2, normal 0, no collapse (17 % of the body) 0,
    # no pedicle/facet lesion 0 -> SINS 7, potentially unstable: consolidated by 21 %
    assert score["total"] == 7 and "indeterminate" in score["category"]


def test_overlapping_zones_near_one_structure_give_one_warning_from_the_closest():
    from tests.planning.test_evaluate import _phantom_with_structures

    vol, lesion, fields = _phantom_with_structures()
    ctx = TreatmentContext(vol, lesion=lesion, structures=fields)
    dev = chart_device(20, 20, 10)
    # cord surface at y = 16: zone edges at y = 10 (6 mm) and y = 12 (4 mm)
    a = thermal_zone(vol, dev, (0, 0, -70), (0, 0, 10))
    b = thermal_zone(vol, dev, (0, 2, -70), (0, 2, 10))
    cord = [w for w in evaluate_plan(ctx, [a, b]).warnings if w.code == "CORD_THERMAL_RISK"]
    assert len(cord) == 1 and cord[0].values["zones"] == 2
    assert cord[0].values["distance_mm"] == pytest.approx(4.0, abs=0.8)
