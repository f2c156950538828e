"""Bone mask with its marrow on real CT (issue 11, item 4), against the reference masks:
the abdomen at 3 mm has osteoporotic marrow (median ~140 HU in the bodies) and cortical
shells that do not close; the lumbar crop is a noisy 1.5 mm CT."""

from __future__ import annotations

import numpy as np
import pytest

from guideplan.core.status import Status
from guideplan.core.volume import Volume
from guideplan.processing import bone
from tests.real import real_ct


@pytest.fixture(scope="module")
def abdomen():
    case = real_ct.abdomen()
    return case, bone.bone_labels(case.volume)


def _vertebral_bodies(case: real_ct.RealCase) -> np.ndarray:
    out = np.zeros(case.volume.array.shape, dtype=bool)
    for name, mask in case.masks.items():
        if name.startswith("vertebral_body_"):
            out |= mask
    return out


def test_bone_matches_the_reference_bones_in_the_reference_slab(abdomen):
    case, labels = abdomen
    fov = case.masks["ref_fov_slab"]
    found, ref = (labels > 0) & fov, case.masks["bones_slab"] & fov
    # measured 0.886 (was 0.574); the rest is costal cartilage (100-130 HU, labelled apart
    # in the reference) and one-voxel edges at 3 mm
    assert real_ct.dice(found, ref) >= 0.87
    assert real_ct.recall(found, ref) >= 0.88


def test_vertebral_marrow_below_150_hu_is_bone(abdomen):
    case, labels = abdomen
    bodies = _vertebral_bodies(case)
    low = bodies & (case.volume.array < 150)
    assert np.count_nonzero(low) > 0.3 * np.count_nonzero(bodies)  # the case is osteoporotic
    assert real_ct.recall(labels > 0, low) >= 0.8
    assert real_ct.recall(labels > 0, bodies) >= 0.9


def test_the_canal_and_the_soft_tissue_around_the_spine_stay_out_of_the_bone(abdomen):
    case, labels = abdomen
    found = labels > 0
    assert real_ct.recall(found, case.masks["spinal_cord"]) <= 0.05
    for organ in ("aorta", "inferior_vena_cava", "iliopsoas_left", "autochthon_right"):
        assert real_ct.recall(found, case.masks[organ]) <= 0.01, organ


def test_the_bone_is_reported_found_with_its_volume(abdomen):
    case, labels = abdomen
    finding = bone.bone_finding(case.volume, labels)
    assert finding.status is Status.FOUND
    assert "mL of bone" in finding.reason


def test_no_bone_is_reported_not_found():
    rng = np.random.default_rng(0)
    muscle = (40 + rng.normal(0, 10, (20, 40, 40))).astype(np.int16)
    volume = Volume(muscle, (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    labels = bone.bone_labels(volume, np.ones(muscle.shape, dtype=bool))
    assert not labels.any()
    assert bone.bone_finding(volume, labels).status is Status.NOT_FOUND


def test_a_noisy_ct_gets_more_smoothing_than_a_standard_one():
    rng = np.random.default_rng(1)
    cfg = bone._settings("bone")
    sp = np.array([1.5, 1.5, 1.5])
    inside = np.ones((40, 40, 40), dtype=bool)
    quiet = 40 + rng.normal(0, 8, inside.shape)
    noisy = 40 + rng.normal(0, 60, inside.shape)
    assert bone.smoothing_for_noise(quiet, inside, sp, cfg) == cfg["smoothing_ladder_mm"][0]
    assert bone.smoothing_for_noise(noisy, inside, sp, cfg) > cfg["smoothing_ladder_mm"][0]


def test_the_noisy_lumbar_crop_has_no_bone_specks_in_the_muscle():
    case = real_ct.lumbar()
    found = bone.bone_mask(case.volume)
    ref = case.masks["vertebrae"]
    # precision was 0.55 without noise-adapted smoothing and the rib-size floor
    assert real_ct.recall(ref, found) >= 0.75
