"""A needle or a zone within the cord/nerve safety distance of the *reference* canal
always warns, with the structures planning finds by itself, on real CT and on its
variants, and on the phantoms: either the canal was found (and the warning names it)
or it was not (and CANAL_NOT_IDENTIFIED says the distance is unknown). A silent plan
next to the true cord is the failure this guards against.
"""

from __future__ import annotations

import numpy as np
import pytest

from guideplan.planning.context import TreatmentContext
from guideplan.planning.devices import load_catalog
from guideplan.planning.evaluate import evaluate_plan
from guideplan.planning.path_analysis import PathContext, analyze_path
from guideplan.planning.structures import StructureField, auto_structures_with_status
from guideplan.planning.zones import ablation_zone
from tests.real import real_ct

CANAL_WARNINGS = {"NEAR_STRUCTURE", "CROSSES_STRUCTURE"}
CORD_WARNINGS = {"CORD_THERMAL_RISK", "NERVE_THERMAL_RISK"}


def _cord_and_body(case: real_ct.RealCase) -> tuple[np.ndarray, np.ndarray]:
    """The reference canal contents (the cord where given, else the arch's hole) and a
    vertebral body beside it, on the case's grid."""
    if "spinal_cord" in case.masks and case.masks["spinal_cord"].any():
        cord = case.masks["spinal_cord"]
        body = case.masks["vertebral_body_L1"] | case.masks["vertebral_body_T12"]
    else:
        cord = case.masks["canal"]
        body = case.masks["vertebral_body_L3"]
    return cord, body


def _needle_beside(case, cord, body, clearance_mm: float):
    """A posterolateral (left) path to the body's centre that passes ``clearance_mm`` from
    the reference cord (found by moving it sideways), and the reference field."""
    volume = case.volume
    field = StructureField.from_mask("reference cord", cord, volume, 10.0)
    body_c = real_ct.centroid_lps(volume, body)
    cord_c = real_ct.centroid_lps(volume, cord & (np.abs(_lps_z(volume, cord) - body_c[2]) < 4))
    best = None
    for dx in np.arange(0.0, 40.0, 0.5):
        target = np.array([cord_c[0] + dx * 0.3, body_c[1], body_c[2]])
        entry = np.array([cord_c[0] + 30.0 + dx, cord_c[1] + 60.0, body_c[2]])
        s = np.linspace(0.0, 1.0, 400)[:, None]
        d = float(field.distance(entry + s * (target - entry)).min()) - 0.6
        if best is None or abs(d - clearance_mm) < abs(best[2] - clearance_mm):
            best = (entry, target, d)
    return best


def _lps_z(volume, mask):
    """LPS z of every voxel centre (broadcast array)."""
    k, j, i = np.indices(mask.shape)
    ijk = np.stack([i, j, k], axis=-1).reshape(-1, 3).astype(float)
    return volume.index_to_physical(ijk)[:, 2].reshape(mask.shape)


def _cases():
    yield "abdomen", real_ct.abdomen()
    yield "abdomen prone", real_ct.turned_prone(real_ct.abdomen())
    yield "lumbar", real_ct.lumbar()


@pytest.fixture(scope="module", params=["abdomen", "abdomen prone", "lumbar"])
def case(request):
    return dict(_cases())[request.param]


def test_a_needle_2_mm_from_the_true_cord_always_warns(case):
    cord, body = _cord_and_body(case)
    entry, target, clearance = _needle_beside(case, cord, body, 2.0)
    assert 0.5 <= clearance <= 4.0, clearance
    structures, canal = auto_structures_with_status(case.volume)
    ctx = PathContext(case.volume, structures, canal_finding=canal)
    report = analyze_path(ctx, entry, target, load_catalog().default_needle())
    codes = {w.code for w in report.warnings}
    if ctx.canal_status() is not None and ctx.canal_status().usable:
        assert codes & CANAL_WARNINGS, (case.name, codes, report.to_json()["distances"])
    else:
        assert "CANAL_NOT_IDENTIFIED" in codes


def test_a_zone_reaching_the_true_cord_always_warns(case):
    cord, body = _cord_and_body(case)
    entry, target, _ = _needle_beside(case, cord, body, 2.0)
    structures, canal = auto_structures_with_status(case.volume)
    lesion = body & (np.linalg.norm(_lps_points(case.volume) - target, axis=-1) < 8.0)
    ctx = TreatmentContext(case.volume, lesion=lesion, structures=structures, canal_finding=canal)
    device = load_catalog().of_kind("mw_antenna")[0]
    zone = ablation_zone(ctx, device, [(entry, target)])
    reference = StructureField.from_mask("reference cord", cord, case.volume, 10.0)
    reach = float(reference.distance(zone.surface_points()).min())
    assert reach < 10.0  # the zone is within the cord's safety distance
    codes = evaluate_plan(ctx, [zone]).codes()
    status = ctx.canal_status()
    if status is not None and status.usable:
        assert codes & CORD_WARNINGS, (case.name, codes)
    else:
        assert "CANAL_NOT_IDENTIFIED" in codes


def _lps_points(volume):
    k, j, i = np.indices(volume.array.shape)
    ijk = np.stack([i, j, k], axis=-1).reshape(-1, 3).astype(float)
    return volume.index_to_physical(ijk).reshape(*volume.array.shape, 3)
