"""Cement-fill prediction: volume conservation, order of filling, barriers, leak sites."""

from __future__ import annotations

import time

import numpy as np
import pytest

from guideplan.planning.cement import CementSimulation, predict_cement
from guideplan.planning.context import TreatmentContext
from guideplan.planning.fill import FillError, FillSettings, porosity, relative_speed
from tests.planning.zone_cases import (
    ANTERIOR_TIP,
    LUMBAR,
    POSTERIOR_WALL_TIP,
    block_phantom,
    lps_grid,
    lumbar_context,
)


def test_permeability_orders_lytic_before_trabecular_before_dense_and_stops_at_cortex():
    s = FillSettings.cement()
    hu = np.array([30.0, 230.0, 400.0, 650.0, 1200.0])
    speed = relative_speed(hu, s)
    assert speed[0] == s.max_relative_speed
    assert speed[1] == pytest.approx(1.0, rel=0.01)  # the reference bone
    assert speed[0] > speed[1] > speed[2] > speed[3] > 0.0
    assert speed[4] == 0.0  # intact cortex is a barrier
    phi = porosity(hu, s)
    assert phi[0] > phi[1] > phi[2] > phi[3]


@pytest.mark.parametrize("volume_ml", [0.5, 3.0, 6.0])
def test_volume_is_conserved_and_stays_inside_the_cortex(volume_ml):
    vol, bone, _ = block_phantom()
    ctx = TreatmentContext(vol, bone=bone)
    r = predict_cement(ctx, np.array([[5.0, 0.0, 0.0]]), volume_ml)
    assert r.placed_ml == pytest.approx(volume_ml, rel=0.02)
    assert r.not_placed_ml == pytest.approx(0.0, abs=0.02 * volume_ml)
    inside = bone & (vol.array < 700)
    assert not np.any(r.zone.mask & ~inside[r.zone.box])
    # cement fills the pore space of trabecular bone: the region is a little larger
    assert r.region_ml > r.placed_ml
    assert not [leak for leak in r.leaks if leak.site != "endplate"]
    assert r.to_json()["estimate"] is True


def test_the_lytic_cavity_fills_first():
    vol, bone, lesion = block_phantom(lytic_radius=7.0)
    ctx = TreatmentContext(vol, bone=bone, lesion=lesion)
    cavity_ml = np.count_nonzero(lesion) * ctx.voxel_ml
    r = predict_cement(ctx, np.array([[4.0, 0.0, 0.0]]), 0.8 * cavity_ml)
    in_cavity = np.count_nonzero(r.zone.mask & lesion[r.zone.box])
    assert in_cavity / np.count_nonzero(r.zone.mask) > 0.95
    assert r.lesion_fill_pct == pytest.approx(80.0, abs=5.0)


def test_a_breach_to_the_canal_is_a_leak_risk_with_its_volume():
    vol, bone, _ = block_phantom()
    p = lps_grid(vol)
    # a 'canal' behind the posterior wall (+y) and a 6 mm hole through the wall
    canal = (
        (np.abs(p[..., 0]) < 6) & (p[..., 1] > 17.5) & (p[..., 1] < 26) & (np.abs(p[..., 2]) < 13)
    )
    hole = (np.abs(p[..., 0]) < 3) & (np.abs(p[..., 2]) < 3) & (p[..., 1] > 13)
    vol.array[hole & bone] = 40  # soft tissue where the wall was
    vol.array[canal] = 0
    bone &= ~hole
    ctx = TreatmentContext(vol, bone=bone, canal=canal)
    near = predict_cement(ctx, np.array([[0.0, 10.0, 0.0]]), 2.0)
    leak = {x.site: x for x in near.leaks}
    assert "canal" in leak and leak["canal"].severity == "danger"
    assert leak["canal"].reached_at_ml < 0.3
    codes = [(w.code, w.severity) for w in near.warnings]
    assert ("CEMENT_LEAK_RISK", "danger") in codes
    # far from the hole, a small volume does not reach it; a large one does, later
    sim = CementSimulation(ctx, np.array([[0.0, -4.0, 0.0]]), max_volume_ml=14.0)
    assert "canal" not in {x.site for x in sim.at(1.0).leaks}
    late = {x.site: x for x in sim.at(14.0).leaks}
    assert "canal" in late and 5.0 < late["canal"].reached_at_ml < 14.0
    # the basivertebral region (posterior-central body) is reached before the hole
    assert late["basivertebral"].reached_at_ml < late["canal"].reached_at_ml


def test_overflow_when_the_bone_holds_less_than_asked():
    vol, bone, _ = block_phantom()
    p = lps_grid(vol)
    small = bone & np.all(np.abs(p) <= [8.0, 8.0, 8.0], axis=-1)
    vol.array[bone & ~small] = 40
    vol.array[small & ~np.all(np.abs(p) <= [6.5, 6.5, 6.5], axis=-1)] = 1200
    ctx = TreatmentContext(vol, bone=small)
    r = predict_cement(ctx, np.array([[0.0, 0.0, 0.0]]), 5.0)
    assert r.not_placed_ml > 2.0
    assert [x.site for x in r.leaks] == ["overflow"]
    assert r.warnings[0].severity == "danger"


def test_tip_outside_bone_is_a_user_error():
    vol, bone, _ = block_phantom()
    ctx = TreatmentContext(vol, bone=bone)
    with pytest.raises(FillError):
        predict_cement(ctx, np.array([[0.0, -27.0, 0.0]]), 1.0)


@pytest.mark.skipif(not LUMBAR.is_dir(), reason="sample data missing")
def test_lumbar_case_leak_at_the_posterior_wall_breach_and_not_from_the_front():
    ctx = lumbar_context()
    start = time.perf_counter()
    breach = predict_cement(ctx, POSTERIOR_WALL_TIP, 5.0)
    elapsed = time.perf_counter() - start
    assert elapsed < 2.0
    assert breach.placed_ml == pytest.approx(5.0, rel=0.02)
    sites = {x.site: x for x in breach.leaks}
    assert sites["canal"].severity == "danger" and sites["canal"].reached_at_ml < 0.5
    assert any(w.code == "CEMENT_LEAK_RISK" and w.severity == "danger" for w in breach.warnings)
    # L2 found along the canal: the fill fraction of its body is reported
    assert 25.0 < breach.body_ml < 45.0
    assert breach.body_fill_pct == pytest.approx(100 * 5.0 / breach.body_ml, rel=0.1)

    front = predict_cement(ctx, ANTERIOR_TIP, 3.0)
    assert "canal" not in {x.site for x in front.leaks}
    assert front.placed_ml == pytest.approx(3.0, rel=0.02)
    # next to the lower endplate: the endplate (disc beyond) is reached first, as info
    low = {x.site: x for x in predict_cement(ctx, np.array([8.0, 30.0, -9.0]), 2.0).leaks}
    assert low["endplate"].severity == "info" and low["endplate"].reached_at_ml < 1.0
    assert "canal" not in low
