"""Small-ball morphology on bit-packed rows (masks.dilate_ball, erode_ball, closing_ball)
and the band-only local maximum (masks.max_filter_at): the same sets and values as the
distance-map and full-array versions, on shapes counted by hand and random masks."""

import numpy as np
import pytest

from guideplan.processing import masks


def test_a_voxel_dilated_by_one_voxel_is_its_six_face_neighbours_and_itself():
    seed = np.zeros((5, 5, 5), dtype=bool)
    seed[2, 2, 2] = True
    grown = masks.dilate_ball(seed, (1.0, 1.0, 1.0), 1.0)
    assert np.count_nonzero(grown) == 7
    # sqrt(2) takes in the 12 edge neighbours, not the 8 corners (sqrt(3))
    assert np.count_nonzero(masks.dilate_ball(seed, (1.0, 1.0, 1.0), 1.5)) == 19


def test_an_in_plane_ball_does_not_cross_slices():
    seed = np.zeros((3, 9, 9), dtype=bool)
    seed[1, 4, 4] = True
    grown = masks.dilate_ball(seed, (masks.IN_PLANE_ONLY, 1.0, 1.0), 2.0)
    assert not grown[0].any() and not grown[2].any()
    assert np.count_nonzero(grown[1]) == 13  # |dj|+|di| rows: 1 + 3 + 5 + 3 + 1


def test_erosion_treats_beyond_the_array_as_foreground():
    full = np.ones((4, 6, 20), dtype=bool)
    assert masks.erode_ball(full, (1.0, 1.0, 1.0), 2.0).all()
    full[:, :, 10] = False  # a cut: erosion eats 2 voxels either side of it only
    eroded = masks.erode_ball(full, (1.0, 1.0, 1.0), 2.0)
    assert np.array_equal(np.flatnonzero(~eroded[0, 0]), np.arange(8, 13))


@pytest.mark.parametrize(
    "spacing", [(1.0, 0.8, 0.8), (3.0, 0.78125, 0.78125), (2.5, 0.7, 0.9), (1e6, 0.8, 0.8)]
)
@pytest.mark.parametrize("shape", [(20, 37, 64), (17, 40, 77)])
def test_the_packed_morphology_equals_the_distance_maps(spacing, shape):
    rng = np.random.default_rng(sum(shape))
    blob = masks.dilate(rng.random(shape) < 0.03, (1.0, 1.0, 1.0), 2.0)
    blob &= rng.random(shape) < 0.97
    for radius in (0.5, 2.0, 3.0, 4.5):
        assert np.array_equal(
            masks.dilate_ball(blob, spacing, radius), masks.dilate(blob, spacing, radius)
        )
        assert np.array_equal(
            masks.erode_ball(blob, spacing, radius), masks.erode(blob, spacing, radius)
        )
        assert np.array_equal(
            masks.closing_ball(blob, spacing, radius), masks.closing(blob, spacing, radius)
        )


def test_rows_wider_than_a_byte_shift_across_bytes():
    seed = np.zeros((1, 1, 40), dtype=bool)
    seed[0, 0, 20] = True
    grown = masks.dilate_ball(seed, (1.0, 1.0, 0.25), 3.0)  # 12 voxels either side
    assert np.array_equal(np.flatnonzero(grown[0, 0]), np.arange(8, 33))


def test_the_band_maximum_equals_the_full_maximum_read_in_the_band():
    rng = np.random.default_rng(7)
    values = rng.normal(size=(40, 30, 50)).astype(np.float32)
    band = rng.random(values.shape) < 0.05
    for radius in ((2, 2, 2), (1, 3, 0)):
        expected = masks.max_filter(values, radius)[band]
        assert np.array_equal(masks.max_filter_at(values, radius, band, slab=7), expected)
    assert masks.max_filter_at(values, (2, 2, 2), np.zeros_like(band)).size == 0
