"""Lesion metrics on shapes of known size and on the sample cases' truth."""

import math

import numpy as np
import pytest

from guideplan.core.geometry import euler_matrix
from guideplan.core.volume import Volume
from guideplan.processing.lesion_metrics import lesion_metrics
from guideplan.processing.segmentation import SegmentationError

from .seg_cases import CASE_NAMES, sample_case, synthetic_vertebra


def _ellipsoid(shape, spacing, radii, rotation=None, hu=40.0):
    rotation = np.eye(3) if rotation is None else rotation
    origin = -(np.asarray(shape[::-1]) - 1) / 2 * np.asarray(spacing)
    k, j, i = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    p = np.stack([i, j, k], axis=-1) * spacing + origin
    local = p @ rotation  # coordinates along the rotated axes
    inside = np.sum((local / np.asarray(radii)) ** 2, axis=-1) <= 1.0
    array = np.where(inside, hu, 250.0).astype(np.int16)
    return Volume(array, spacing, tuple(origin)), inside


def test_sphere_volume_and_diameters():
    volume, mask = _ellipsoid((60, 60, 60), (0.5, 0.5, 0.5), (10.0, 10.0, 10.0))
    m = lesion_metrics(volume, mask)
    assert m.volume_ml == pytest.approx(4 / 3 * math.pi * 1000 / 1000, rel=0.02)
    for d in m.diameters_mm:
        assert d == pytest.approx(20.0, abs=0.6)
    assert np.allclose(m.centroid_lps, 0.0, atol=0.3)


def test_rotated_ellipsoid_diameters_follow_its_axes():
    rot = euler_matrix(0.4, -0.3, 0.7)
    volume, mask = _ellipsoid((70, 70, 70), (0.5, 0.5, 0.5), (15.0, 9.0, 6.0), rot)
    m = lesion_metrics(volume, mask)
    assert m.diameters_mm == pytest.approx((30.0, 18.0, 12.0), abs=0.8)
    assert abs(m.axes_lps[0] @ rot[:, 0]) > 0.99  # longest along the first rotated axis
    assert m.hu_mean == pytest.approx(40.0) and m.hu_min == m.hu_max == 40.0


def test_type_against_the_surrounding_bone():
    lytic, mask = synthetic_vertebra("lytic")
    assert lesion_metrics(lytic, mask).type == "lytic"
    blastic, mask = synthetic_vertebra("blastic")
    m = lesion_metrics(blastic, mask)
    assert m.type == "blastic" and m.bone_reference_hu == pytest.approx(250, abs=20)
    mixed = blastic.array.copy()
    half = mask & (np.arange(mask.shape[2])[None, None, :] < mask.shape[2] // 2)
    mixed[half] = 30
    m = lesion_metrics(blastic.with_array(mixed), mask)
    assert m.type == "mixed"


def test_cortical_breach_is_the_part_outside_the_bone():
    closed, mask = synthetic_vertebra(center=(10.0, 0.0, 0.0), radius_mm=7.0)
    m = lesion_metrics(closed, mask)
    assert not m.cortical_breach and m.breach_volume_ml == 0.0
    open_, mask = synthetic_vertebra(center=(14.0, 0.0, 0.0), breach=True)
    m = lesion_metrics(open_, mask)
    assert m.cortical_breach
    assert 2.0 <= m.breach_depth_mm <= 4.0  # the phantom's lesion goes 3 mm out
    assert m.posterior_wall is None  # no spinal canal: not a vertebral body


@pytest.mark.parametrize(
    "name, kind, breach, wall",
    [
        (CASE_NAMES[0], "lytic", True, True),
        (CASE_NAMES[1], "lytic", True, None),
        (CASE_NAMES[2], "blastic", False, False),
    ],
)
def test_sample_cases_truth(name, kind, breach, wall):
    volume, truth, masks = sample_case(name)
    m = lesion_metrics(volume, masks["lesion"], bone=masks["bone"], canal=masks["canal"])
    assert m.volume_ml == pytest.approx(truth["lesion"]["lesion_volume_ml"], rel=0.01)
    assert m.type == kind
    assert m.cortical_breach is breach
    assert m.posterior_wall is wall
    extent = sorted(truth["lesion"]["lesion_extent_mm"], reverse=True)
    assert m.diameters_mm[0] >= extent[0] - 1.0  # principal axes: at least the box extent


def test_empty_lesion_is_a_user_error():
    volume, mask = synthetic_vertebra()
    with pytest.raises(SegmentationError):
        lesion_metrics(volume, np.zeros_like(mask))
