"""`guideplan plan` with treatment zones: a custom device from --catalog, a saved case."""

from __future__ import annotations

import json

import numpy as np
import pytest

from guideplan.cli import main
from guideplan.model.case import save_case
from guideplan.model.commands import AddNode
from guideplan.model.nodes import (
    LabelInfo,
    LabelMapNode,
    ProtectionNode,
    TrajectoryNode,
    VolumeNode,
    ZoneNode,
)
from guideplan.model.scene import Scene
from tests.planning.zone_cases import LUMBAR, POSTERIOR_WALL_TIP, lumbar_case, rf_path

pytestmark = pytest.mark.skipif(not LUMBAR.is_dir(), reason="sample data missing")


def _pt(p) -> str:
    return ",".join(f"{v:.3f}" for v in p)


def test_plan_with_a_custom_device_from_a_catalog_and_cement(tmp_path, capsys):
    catalog = tmp_path / "my_devices.json"
    catalog.write_text(
        json.dumps(
            {
                "format": "guideplan-device-catalog",
                "version": 1,
                "devices": [
                    {
                        "id": "my-rf",
                        "kind": "rf_probe",
                        "name": "My RF probe (IFU chart)",
                        "outer_diameter_mm": 1.5,
                        "length_mm": 150,
                        "approximate": False,
                        "source": "my device's instructions for use",
                        "zone": {
                            "model": "ellipsoid",
                            "parameters": ["time_s"],
                            "rows": [
                                {
                                    "time_s": 300,
                                    "length_mm": 36,
                                    "width_mm": 26,
                                    "center_offset_mm": 14,
                                },
                                {
                                    "time_s": 600,
                                    "length_mm": 44,
                                    "width_mm": 32,
                                    "center_offset_mm": 16,
                                },
                            ],
                        },
                    }
                ],
            }
        ),
        encoding="utf-8",
    )
    entry, tip = rf_path(offset_mm=15.0)
    code = main(
        [
            "plan",
            str(LUMBAR),
            "--entry",
            _pt(entry),
            "--target",
            _pt(tip),
            "--labels",
            str(LUMBAR / "truth"),
            "--catalog",
            str(catalog),
            "--zone-device",
            "my-rf",
            "--time-s",
            "450",
            "--cement-ml",
            "3",
            "--margin-mm",
            "4",
            "--json",
        ]
    )
    assert code == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["device"]["id"] == "my-rf"  # the probe is also the needle checked
    t = doc["treatment"]
    assert t["estimate"] is True and "estimate" in t["estimate_statement"]
    rf, cement = t["zones"]
    assert rf["model"] == "rf-ellipsoid" and rf["device"] == "my-rf"
    assert rf["dimensions"]["length_mm"] == pytest.approx(40.0)
    assert rf["dimensions"]["width_mm"] == pytest.approx(29.0)
    assert rf["dimensions"]["center_offset_mm"] == pytest.approx(15.0)
    assert rf["ellipsoids"][0]["radii_mm"] == [20.0, 14.5, 14.5]
    np.testing.assert_allclose(
        rf["center_lps"],
        entry + (tip - entry) * (1 - 15.0 / np.linalg.norm(tip - entry)),
        atol=0.01,
    )
    assert rf["volume_ml"] == pytest.approx(rf["analytic_volume_ml"], rel=0.01)
    assert rf["figures"]["coverage_pct"] == pytest.approx(100.0)
    assert t["settings"]["margin_mm"] == 4.0
    assert t["settings"]["vertebral_level"] == "L2"  # from the case's own description
    assert cement["model"] == "cement-fill"
    assert t["cement"]["fill"]["placed_ml"] == pytest.approx(3.0, rel=0.02)
    codes = {w["code"] for w in t["warnings"]}
    assert "CORD_THERMAL_RISK" not in codes and "NERVE_THERMAL_RISK" in codes
    canal = next(d for d in t["ablation"]["distances"] if d["structure"] == "canal")
    assert canal["code"] == "NERVE_THERMAL_RISK" and canal["threshold_mm"] == 10.0


def test_plan_case_evaluates_every_zone(tmp_path, capsys):
    ct, masks, _ = lumbar_case()
    scene = Scene()
    ct_node = VolumeNode(name="CT", volume=ct, source={"path": str(LUMBAR / "ct")})
    labels = np.zeros(ct.array.shape, np.uint8)
    labels[masks["bone"]] = 3
    labels[masks["lesion"]] = 1
    labels[masks["canal"]] = 4
    seg = LabelMapNode(
        name="labels",
        array=labels,
        reference_id=ct_node.id,
        labels={
            1: LabelInfo("lesion", (1, 0, 0)),
            3: LabelInfo("trabecular bone", (1, 1, 0.8)),
            4: LabelInfo("spinal canal", (0, 0, 1)),
        },
    )
    entry, tip = rf_path()
    rf = TrajectoryNode(
        name="RF", entry=tuple(entry), target=tuple(tip), device_id="rf-cooltip-17g-3cm"
    )
    trocar = TrajectoryNode(
        name="trocar",
        entry=tuple(POSTERIOR_WALL_TIP + [-40, 60, 0]),
        target=tuple(POSTERIOR_WALL_TIP),
        device_id="trocar-11g-125",
    )
    zones = [
        ZoneNode(
            name="ablation", trajectory_id=rf.id, model="rf-ellipsoid", parameters={"time_s": 720}
        ),
        ZoneNode(
            name="cement",
            trajectory_id=trocar.id,
            model="cement-fill",
            parameters={"volume_ml": 3.0},
        ),
        ZoneNode(
            name="broken",
            trajectory_id=rf.id,
            model="rf-ellipsoid",
            parameters={"device_id": "no-such-probe"},
        ),
    ]
    protection = [
        ProtectionNode(name="canal probe", element="thermocouple", tip=(-6.0, 58.0, 1.0)),
        ProtectionNode(
            name="CO2",
            element="dissection",
            structure="spinal canal",
            agent="co2",
            entry=(-40.0, 120.0, 1.0),
            tip=(-6.0, 57.0, 1.0),
            displacement_mm=3.0,
        ),
    ]
    scene.info = {"target": {"vertebral_level": "L2", "bone": "L2 vertebral body"}}
    for node in (ct_node, seg, rf, trocar, *zones, *protection):
        scene.execute(AddNode(node))
    case = tmp_path / "plan.gplan"
    save_case(scene, case)

    assert main(["plan", "--case", str(case), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [t["name"] for t in doc["trajectories"]] == ["RF", "trocar"]
    assert all("path" in t for t in doc["trajectories"])
    by_name = {z["name"]: z for z in doc["zones"]}
    assert by_name["ablation"]["zone"]["model"] == "rf-ellipsoid"
    assert by_name["cement"]["cement"]["placed_ml"] == pytest.approx(3.0, rel=0.02)
    assert "no-such-probe" in by_name["broken"]["error"]
    t = doc["treatment"]
    assert t["ablation"]["coverage_pct"] == pytest.approx(100.0)
    assert t["combined"] is not None
    codes = {(w["code"], w["severity"]) for w in t["warnings"]}
    assert ("CEMENT_LEAK_RISK", "danger") in codes
    assert not any(c == "CORD_THERMAL_RISK" for c, _ in codes)
    # the protection elements were saved with the case and evaluated with the plan
    (probe,) = t["protection"]["thermocouples"]
    assert probe["name"] == "canal probe" and probe["readings"][0]["estimated_c"] >= 45.0
    assert ("THERMOCOUPLE_LIMIT", "warning") in codes
    (co2,) = t["protection"]["dissections"]
    assert co2["agent"] == "co2" and co2["entry_lps"] == [-40.0, 120.0, 1.0]
    # the same as text
    assert main(["plan", "--case", str(case)]) == 0
    text = capsys.readouterr().out
    assert "CEMENT_LEAK_RISK" in text and "estimates" in text


def test_plan_without_points_or_case_is_a_user_error(capsys):
    assert main(["plan", str(LUMBAR)]) == 2
    assert "--entry" in capsys.readouterr().err
