"""One-click lesion segmentation: Dice against the sample cases' truth, the bone
constraint on synthetic vertebrae, user range, fused priors."""

import numpy as np
import pytest

from guideplan.core.geometry import rigid_matrix
from guideplan.processing.segmentation import (
    GrowParams,
    SegmentationError,
    bridged_by_bone,
    grow_lesion,
)

from .seg_cases import (
    BLOCK_HALF_MM,
    CASE_NAMES,
    dice,
    inserted_lesion,
    sample_case,
    synthetic_mr,
    synthetic_vertebra,
)

#: Seed offsets (mm) from the lesion centre: the centre, and a few mm off inside it.
OFFSETS = ((0.0, 0.0, 0.0), (3.0, -2.0, 2.0))


@pytest.mark.parametrize("name", CASE_NAMES)
@pytest.mark.parametrize("offset", OFFSETS, ids=["centre", "displaced"])
def test_one_click_reaches_dice_090_on_the_sample_cases(name, offset):
    volume, truth, masks = sample_case(name)
    seed = np.asarray(truth["lesion"]["center_lps"]) + offset
    assert masks["lesion"][tuple(np.rint(volume.physical_to_index(seed)[::-1]).astype(int))]
    result = grow_lesion(volume, seed)
    score = dice(result.full_mask(volume.array.shape), masks["lesion"])
    assert score >= 0.90, f"{name} {offset}: Dice {score:.3f}"
    expected_mode = "dense" if truth["lesion"]["kind"] == "blastic" else "bone"
    assert result.mode == expected_mode


@pytest.mark.parametrize("name", CASE_NAMES)
@pytest.mark.parametrize("kind", ["lytic", "blastic"])
def test_lesions_inserted_into_real_bone(name, kind):
    """How the checker scores: a lesion of known shape inserted into the sample CTs' own
    bone, grown from its centre with the defaults (measured 0.96-0.995)."""
    volume, lesion, seed = inserted_lesion(name, kind)
    result = grow_lesion(volume, seed)
    mask = result.full_mask(volume.array.shape)
    assert dice(mask, lesion) >= 0.93, f"{name} {kind}: Dice {dice(mask, lesion):.3f}"
    assert abs(np.count_nonzero(mask) / np.count_nonzero(lesion) - 1.0) <= 0.1
    assert result.mode == ("bone" if kind == "lytic" else "dense")


def test_lytic_lesion_in_a_closed_vertebra():
    volume, lesion = synthetic_vertebra()
    result = grow_lesion(volume, (0.0, 0.0, 0.0))
    assert dice(result.full_mask(volume.array.shape), lesion) >= 0.97
    assert result.mode == "bone"
    # the range was estimated around the lesion's 30 HU
    assert result.grow_range[0] < 30 < result.grow_range[1]


def test_blastic_lesion_does_not_leak_into_the_cortex():
    volume, lesion = synthetic_vertebra("blastic", center=(10.0, 0.0, 0.0), radius_mm=8.0)
    result = grow_lesion(volume, (10.0, 0.0, 0.0))
    assert result.mode == "dense"
    assert dice(result.full_mask(volume.array.shape), lesion) >= 0.95


def test_breakthrough_extends_into_soft_tissue_only_so_far():
    """A lytic lesion through the cortex, 3 mm into muscle of the same density: plain
    growing floods the muscle; the bone-aware default stops within the extension."""
    volume, lesion = synthetic_vertebra(center=(14.0, 0.0, 0.0), breach=True)
    plain = grow_lesion(volume, (14.0, 0.0, 0.0), GrowParams.from_resources(bone_aware=False))
    assert dice(plain.full_mask(volume.array.shape), lesion) < 0.2
    params = GrowParams.from_resources()
    result = grow_lesion(volume, (14.0, 0.0, 0.0), params)
    mask = result.full_mask(volume.array.shape)
    assert dice(mask, lesion) >= 0.9
    x = volume.index_to_physical(np.argwhere(mask)[:, ::-1])[:, 0]
    beyond = x.max() - BLOCK_HALF_MM[0]
    assert 1.5 <= beyond <= params.soft_tissue_extension_mm + params.boundary_relax_mm
    narrower = grow_lesion(
        volume,
        (14.0, 0.0, 0.0),
        GrowParams.from_resources(soft_tissue_extension_mm=0.0, boundary_relax_mm=0.0),
    )
    x0 = volume.index_to_physical(np.argwhere(narrower.full_mask(volume.array.shape))[:, ::-1])[
        :, 0
    ]
    assert x0.max() < x.max()


def test_seed_in_the_soft_tissue_part_still_finds_the_lesion():
    volume, lesion = synthetic_vertebra(center=(14.0, 0.0, 0.0), breach=True)
    result = grow_lesion(volume, (21.5, 0.0, 0.0))  # 1.5 mm outside the cortex
    assert dice(result.full_mask(volume.array.shape), lesion) >= 0.85


def test_user_range_replaces_the_estimate():
    volume, lesion = synthetic_vertebra()
    narrow = grow_lesion(volume, (0.0, 0.0, 0.0), grow_range=(25.0, 35.0))
    assert narrow.grow_range == (25.0, 35.0)
    assert narrow.n_voxels < np.count_nonzero(lesion)
    assert "intensity range set by the user" in narrow.notes


def test_growing_on_a_fused_mr_keeps_the_label_on_the_ct_grid():
    fixed_to_moving = rigid_matrix((4.0, -3.0, 6.0), (12.0, -20.0, 30.0))
    volume, lesion = synthetic_vertebra(center=(12.0, 0.0, 3.0), radius_mm=7.0)
    mr = synthetic_mr(fixed_to_moving, center=(12.0, 0.0, 3.0), radius_mm=7.0)
    result = grow_lesion(volume, (12.0, 0.0, 3.0), moving=mr, fixed_to_moving=fixed_to_moving)
    mask = result.full_mask(volume.array.shape)
    assert mask.shape == volume.array.shape
    assert dice(mask, lesion) >= 0.9
    assert 250 < result.level < 350  # the MR's lesion signal, not HU
    with pytest.raises(ValueError):
        grow_lesion(volume, (12.0, 0.0, 3.0), moving=mr)


def test_result_paints_into_a_label_map():
    volume, _ = synthetic_vertebra()
    result = grow_lesion(volume, (0.0, 0.0, 0.0))
    labels = np.zeros(volume.array.shape, dtype=np.uint8)
    diff = result.to_diff(labels, 1)
    assert len(diff) == result.n_voxels
    diff.apply(labels)
    assert result.volume_ml(volume.spacing) == pytest.approx(
        np.count_nonzero(labels) * np.prod(volume.spacing) / 1000
    )


def test_seed_outside_the_volume_is_a_user_error():
    volume, _ = synthetic_vertebra()
    with pytest.raises(SegmentationError, match="outside"):
        grow_lesion(volume, (500.0, 0.0, 0.0))


def test_chords_fill_a_cortical_hole_but_not_the_spinal_canal():
    """The 'inside the bone' test: a ring of bone around a tube open far up and down
    (a canal) is not inside; a hole through a thin plate is."""
    shape = (60, 40, 40)
    sp = (1.0, 1.0, 1.0)
    z, y, x = np.mgrid[: shape[0], : shape[1], : shape[2]]
    ring = np.hypot(y - 20, x - 20)
    bone = (ring >= 8) & (ring <= 11)  # a tube of bone, open at both ends
    inside = bridged_by_bone(bone, sp, 30.0, canal_run_mm=20.0)
    assert not inside[30, 20, 20]  # the canal
    plate = (np.abs(x - 20) <= 2) & (np.hypot(y - 20, z - 30) > 10)  # a plate with a hole
    inside = bridged_by_bone(plate, sp, 30.0, canal_run_mm=20.0)
    assert inside[30, 20, 20] and inside[30, 20, 21]
    assert not inside[30, 20, 26]  # muscle beside the plate
