"""Thermal protection: dissections and thermocouples on a phantom with known distances."""

from __future__ import annotations

import pytest

from guideplan.planning.context import TreatmentContext
from guideplan.planning.devices import load_catalog
from guideplan.planning.evaluate import evaluate_plan
from guideplan.planning.protection import Dissection, Thermocouple, estimated_temperature_c
from guideplan.planning.zones import cryo_zone, thermal_zone
from tests.planning.test_evaluate import _phantom_with_structures
from tests.planning.zone_cases import chart_device, grid_volume


def _plan():
    """Zone: sphere r 10 at the origin; the cord's surface at y = 16: 6 mm from the edge
    (safety distance 10 mm)."""
    vol, lesion, fields = _phantom_with_structures()
    ctx = TreatmentContext(vol, lesion=lesion, structures=fields)
    zone = thermal_zone(vol, chart_device(20, 20, 10), (0, 0, -70), (0, 0, 10))
    return ctx, zone


def test_a_dissection_that_displaces_the_cord_enough_answers_its_warning():
    ctx, zone = _plan()
    assert "CORD_THERMAL_RISK" in evaluate_plan(ctx, [zone]).codes()
    enough = Dissection("spinal cord", (0.0, 14.0, 0.0), "co2", displacement_mm=5.0)
    ev = evaluate_plan(ctx, [zone], dissections=[enough])
    assert "CORD_THERMAL_RISK" not in ev.codes() and "PROTECTED_BY_DISSECTION" in ev.codes()
    (d,) = ev.protection["dissections"][0]["distances"]
    assert d["measured_mm"] == pytest.approx(6.0, abs=0.8)
    assert d["with_dissection_mm"] == pytest.approx(11.0, abs=0.8)
    # 2 mm are not enough (8 < 10 mm): the warning stays, and says so
    short = Dissection("spinal cord", (0.0, 14.0, 0.0), "hydro", thickness_mm=2.0)
    codes = evaluate_plan(ctx, [zone], dissections=[short]).codes()
    assert {"CORD_THERMAL_RISK", "DISSECTION_INSUFFICIENT"} <= codes
    # a dissection placed far from the cord protects nothing
    far = Dissection("spinal cord", (0.0, -30.0, 0.0), "hydro", displacement_mm=8.0)
    codes = evaluate_plan(ctx, [zone], dissections=[far]).codes()
    assert {"CORD_THERMAL_RISK", "DISSECTION_INSUFFICIENT"} <= codes


def test_a_thermocouple_near_the_zone_edge_warns_and_one_far_away_does_not():
    ctx, zone = _plan()
    near = Thermocouple((0.0, 13.0, 0.0), "canal probe")  # 3 mm outside the edge
    far = Thermocouple((0.0, -32.0, 0.0), "far probe")  # 22 mm outside
    ev = evaluate_plan(ctx, [zone], thermocouples=[near, far])
    readings = {t["name"]: t["readings"][0] for t in ev.protection["thermocouples"]}
    # 60 °C at the edge, falling linearly to 37 °C over 10 mm: 60 - 3 * 2.3 = 53.1 °C
    assert readings["canal probe"]["edge_distance_mm"] == pytest.approx(3.0, abs=1e-3)
    assert readings["canal probe"]["estimated_c"] == pytest.approx(53.1, abs=0.1)
    assert readings["canal probe"]["reached"] and not readings["far probe"]["reached"]
    assert readings["far probe"]["estimated_c"] == pytest.approx(37.0)
    limits = [w for w in ev.warnings if w.code == "THERMOCOUPLE_LIMIT"]
    assert [w.values["thermocouple"] for w in limits] == ["canal probe"]


def test_a_thermocouple_in_the_iceball_reads_its_isotherms():
    vol = grid_volume(40, 1.0)
    ctx = TreatmentContext(vol)
    zone = cryo_zone(vol, load_catalog().get("cryo-17g-rod"), [((0, -80, 0), (0, 0, 0))])
    e0, e20 = zone.probe_isotherms[0]["0"], zone.probe_isotherms[0]["-20"]
    centre = e0.center
    # across the needle: 0 °C at r0, -20 °C at r20; midway about -10 °C
    r0, r20 = e0.radii[1], e20.radii[1]
    mid = centre + e0.axes[1] * (r0 + r20) / 2
    temp, _ = estimated_temperature_c(ctx, zone, mid)
    assert temp == pytest.approx(-10.0, abs=1.5)
    outside = centre + e0.axes[1] * (r0 + 9.25 / 2)  # half the tail past the edge
    temp, edge = estimated_temperature_c(ctx, zone, outside)
    assert edge == pytest.approx(9.25 / 2, abs=1.0) and temp == pytest.approx(18.5, abs=4.0)
    ev = evaluate_plan(ctx, [zone], thermocouples=[Thermocouple(tuple(mid), "nerve")])
    assert "THERMOCOUPLE_LIMIT" in ev.codes()  # below the 10 °C nerve limit


def test_protection_options_are_read_and_a_malformed_one_is_a_user_error():
    import argparse

    from guideplan.cli import _protection_args
    from guideplan.core.errors import GuideplanError

    args = argparse.Namespace(dissection=["skin:-40,80,0:8:co2"], thermocouple=["1,2,3:42"])
    (dis,), (tc,) = _protection_args(args)
    assert (dis.structure, dis.agent, dis.displacement_mm) == ("skin", "co2", 8.0)
    assert dis.tip_lps == (-40.0, 80.0, 0.0) and tc.point_lps == (1.0, 2.0, 3.0)
    assert tc.warn_c == 42.0
    with pytest.raises(GuideplanError, match="not a dissection"):
        _protection_args(argparse.Namespace(dissection=["skin:1,2"], thermocouple=[]))
