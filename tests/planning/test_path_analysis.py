"""Needle path readouts against geometry computed by hand."""

import math

import numpy as np
import pytest

from guideplan.core import trajectory as tr
from guideplan.core.volume import Volume
from guideplan.planning.devices import load_catalog
from guideplan.planning.path_analysis import PathContext, analyze_path
from guideplan.planning.structures import StructureField


@pytest.mark.parametrize(
    ("entry", "target", "cc", "axial", "toward", "tilt"),
    [
        # Posterior approach, straight anterior: all zero.
        ((0, 100, 0), (0, 0, 0), 0.0, 0.0, "none", 0.0),
        # Heading to the head by 30 deg in the sagittal plane: tilt = craniocaudal.
        ((0, 100, 0), (0, 100 - 100 * math.cos(math.radians(30)), 50), 30.0, 0.0, "none", 30.0),
        # 45 deg in the axial plane, tip moving to the patient's left (+x).
        ((-50, 50, 0), (0, 0, 0), 0.0, 45.0, "left", 0.0),
        # Tip moving to the patient's right, caudally.
        (
            (30, 40, 10),
            (0, 0, 0),
            -math.degrees(math.asin(10 / math.sqrt(2600))),
            math.degrees(math.atan2(30, 40)),
            "right",
            -math.degrees(math.atan(10 / 40)),
        ),
        # Purely lateral and craniocaudal: no tilt can hold it.
        ((-10, 0, -10), (0, 0, 0), 45.0, 90.0, "left", 90.0),
    ],
)
def test_angles_by_hand(entry, target, cc, axial, toward, tilt):
    a = tr.path_angles(entry, target)
    assert a.craniocaudal_deg == pytest.approx(cc, abs=1e-9)
    assert a.axial_from_vertical_deg == pytest.approx(axial, abs=1e-9)
    assert a.toward == toward
    assert a.gantry_tilt_deg == pytest.approx(tilt, abs=1e-9)
    d = np.subtract(target, entry)
    np.testing.assert_allclose(a.direction, d / np.linalg.norm(d))


def _phantom() -> Volume:
    """Air above y=-60; body (muscle 40 HU, 10 mm of fat under the skin) below; a bone
    block (1 mm cortex 1200 HU, trabecular 250 HU) spanning y in [0, 30]."""
    n = 121
    vol = Volume(np.full((n, n, n), -1000, np.int16), (1.0, 1.0, 1.0), (-60.0, -60.0, -60.0))
    k, j, i = np.indices(vol.array.shape)
    y = j - 60.0
    x = i - 60.0
    z = k - 60.0
    arr = vol.array
    arr[y >= -50] = -100  # fat from the skin at y=-50
    arr[y >= -40] = 40  # muscle
    block = (y >= 0) & (y <= 30) & (np.abs(x) <= 20) & (np.abs(z) <= 20)
    arr[block] = 1200
    inner = (y >= 1) & (y <= 29) & (np.abs(x) <= 19) & (np.abs(z) <= 19)
    arr[inner] = 250
    vol.meta["modality"] = "CT"
    return vol


def test_lengths_and_tissues_in_order():
    vol = _phantom()
    ctx = PathContext(vol)
    needle = load_catalog().get("needle-18g-150")
    # From air (y=-58) straight along +y to the middle of the bone block (y=15).
    r = analyze_path(ctx, (0.0, -58.0, 0.0), (0.0, 15.0, 0.0), needle)
    assert r.length_mm == pytest.approx(73.0)
    assert r.skin_to_target_mm == pytest.approx(65.0, abs=0.6)  # skin at y=-50
    names = [t.tissue for t in r.tissues]
    assert names == ["skin", "fat", "soft tissue", "cortical bone", "trabecular bone"]
    lengths = {t.tissue: t.length_mm for t in r.tissues}
    assert lengths["fat"] == pytest.approx(8.0, abs=0.75)  # 10 mm of fat minus 2 mm skin
    assert lengths["soft tissue"] == pytest.approx(40.0, abs=0.75)
    assert r.bone_depth_mm == pytest.approx(15.5, abs=1.0)
    assert r.profile_hu[-1] == pytest.approx(250.0)


def test_structure_distance_and_warnings():
    vol = _phantom()
    _, j, i = np.indices(vol.array.shape)
    # A 'cord': cylinder along z of radius 5 mm, axis at x=25, y=-20.
    cord = (i - 60.0 - 25.0) ** 2 + (j - 60.0 + 20.0) ** 2 <= 25
    field = StructureField.from_mask("cord", cord, vol, threshold_mm=10.0)
    needle = load_catalog().get("needle-18g-150")
    ctx = PathContext(vol, structures=[field])
    r = analyze_path(ctx, (0.0, -58.0, 0.0), (0.0, 15.0, 0.0), needle)
    (d,) = r.distances
    # Axis 25 mm away, cord radius 5, needle radius 0.635: ~19.4 mm (voxelised cylinder).
    assert d.distance_mm == pytest.approx(25 - 5 - needle.radius_mm, abs=0.8)
    assert not [w for w in r.warnings if w.code in ("NEAR_STRUCTURE", "CROSSES_STRUCTURE")]
    near = analyze_path(ctx, (14.0, -58.0, 0.0), (14.0, 15.0, 0.0), needle)
    assert [w.code for w in near.warnings if w.code == "NEAR_STRUCTURE"] == ["NEAR_STRUCTURE"]
    through = analyze_path(ctx, (25.0, -58.0, 0.0), (18.0, 15.0, 0.0), needle)
    codes = [w.code for w in through.warnings]
    assert "CROSSES_STRUCTURE" in codes
    assert "cord" in [t.tissue for t in through.tissues]


def test_needle_too_short_and_steep_angle():
    vol = _phantom()
    ctx = PathContext(vol)
    short = load_catalog().get("needle-16g-100")  # 100 mm
    r = analyze_path(ctx, (0.0, -58.0, -40.0), (0.0, 15.0, 15.0), short)
    codes = {w.code for w in r.warnings}
    assert "NEEDLE_TOO_SHORT" in codes  # ~85 mm in the body + 20 mm outside
    assert "STEEP_ANGLE" in codes  # atan(55 / 73) = 37 deg > 30 deg gantry tilt
    assert r.angles.craniocaudal_deg == pytest.approx(math.degrees(math.atan2(55, 73)), abs=1e-9)
    gentle = analyze_path(ctx, (0.0, -58.0, 0.0), (0.0, 15.0, 15.0), short)
    assert "STEEP_ANGLE" not in {w.code for w in gentle.warnings}  # 11.6 deg


def test_gas_inside_body_is_flagged():
    vol = _phantom()
    vol.array[:, 60 + -30 : 60 + -25, :] = -1000  # a gas layer 5 mm thick inside the body
    r = analyze_path(
        PathContext(vol), (0.0, -58.0, 0.0), (0.0, 15.0, 0.0), load_catalog().get("needle-18g-150")
    )
    assert "CROSSES_PLEURA_OR_BOWEL" in {w.code for w in r.warnings}


def test_tangential_bone_access_is_flagged():
    vol = _phantom()
    ctx = PathContext(vol)
    needle = load_catalog().get("needle-18g-150")
    # Target inside the block near its top face; entering the face at ~80 deg incidence.
    target = np.array([0.0, 2.0, 0.0])
    tilt = math.radians(78)
    entry = target + 80 * np.array([-math.sin(tilt), -math.cos(tilt), 0.0])
    r = analyze_path(ctx, entry, target, needle)
    assert "NO_BONE_ACCESS" in {w.code for w in r.warnings}
    straight = analyze_path(ctx, (0.0, -58.0, 0.0), target, needle)
    assert "NO_BONE_ACCESS" not in {w.code for w in straight.warnings}


def test_json_has_the_documented_keys():
    vol = _phantom()
    r = analyze_path(
        PathContext(vol), (0.0, -58.0, 0.0), (0.0, 15.0, 0.0), load_catalog().get("needle-18g-150")
    )
    doc = r.to_json()
    for key in (
        "length_mm",
        "skin_to_target_mm",
        "bone_depth_mm",
        "direction_lps",
        "craniocaudal_deg",
        "axial_from_vertical_deg",
        "toward",
        "gantry_tilt_deg",
        "tissues",
        "hu_profile",
        "distances",
        "warnings",
        "device",
    ):
        assert key in doc
