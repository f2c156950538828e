"""Editing tools on synthetic shapes with exact expectations: brush, threshold,
interpolation, islands, margins, smoothing. Every tool returns a diff; nothing changes
the array until the diff is applied."""

import math

import numpy as np
import pytest

from guideplan.core.geometry import euler_matrix
from guideplan.core.volume import Volume
from guideplan.processing.segmentation import (
    SegmentationError,
    brush_footprint,
    fill_between_slices,
    grow_shrink,
    keep_largest_island,
    paint,
    remove_small_islands,
    smooth_label,
    threshold_region,
)


def grid(shape=(40, 40, 40), spacing=(0.5, 0.5, 0.5), direction=None) -> Volume:
    """A grid whose voxel (n/2, n/2, n/2) sits at the LPS origin."""
    origin = tuple(-(n // 2) * s for n, s in zip(shape[::-1], spacing, strict=True))
    return Volume(
        np.zeros(shape, dtype=np.int16),
        spacing,
        origin,
        np.eye(3) if direction is None else direction,
    )


def lattice_count(radius_vox: float, scales=(1.0, 1.0, 1.0)) -> int:
    r = int(math.ceil(radius_vox / min(scales))) + 1
    a = np.arange(-r, r + 1)
    k, j, i = np.meshgrid(a, a, a, indexing="ij")
    d2 = (i * scales[0]) ** 2 + (j * scales[1]) ** 2 + (k * scales[2]) ** 2
    return int(np.count_nonzero(d2 <= radius_vox**2 + 1e-9))


def test_ball_brush_is_the_exact_set_of_voxel_centres_within_the_radius():
    g = grid()
    _, mask = brush_footprint(g, (0.0, 0.0, 0.0), 5.0)  # the origin is a voxel centre
    assert np.count_nonzero(mask) == lattice_count(10.0)
    volume_mm3 = np.count_nonzero(mask) * 0.125
    assert volume_mm3 == pytest.approx(4 / 3 * math.pi * 125, rel=0.02)


def test_disc_brush_in_an_axial_view_stays_on_one_slice_of_anisotropic_voxels():
    g = grid(shape=(12, 40, 40), spacing=(0.7, 0.7, 2.5))
    _, mask = brush_footprint(g, (0.0, 0.0, 0.0), 4.0, normal=(0, 0, 1))
    slices = np.flatnonzero(mask.any(axis=(1, 2)))
    assert len(slices) == 1
    assert np.count_nonzero(mask) == _disc_count(4.0, 0.7)


def _disc_count(r: float, s: float) -> int:
    n = int(r / s) + 1
    a = np.arange(-n, n + 1) * s
    x, y = np.meshgrid(a, a)
    return int(np.count_nonzero(x * x + y * y <= r * r + 1e-9))


def test_disc_brush_in_an_oblique_plane_is_one_voxel_thick():
    g = grid()
    n = np.array([0.0, 1.0, 1.0]) / math.sqrt(2)
    box, mask = brush_footprint(g, (0.0, 0.0, 0.0), 5.0, normal=n)
    kk, jj, ii = np.nonzero(mask)
    pts = g.index_to_physical(
        np.stack([ii + box[2].start, jj + box[1].start, kk + box[0].start], axis=1)
    )
    half = 0.5 * 0.5 * (abs(n[1]) + abs(n[2]))
    assert np.all(np.abs(pts @ n) <= half + 1e-9)
    # a digital plane of thickness sum|n_i| voxels: area * thickness / voxel volume
    expected = math.pi * 25 * (0.5 * (abs(n[1]) + abs(n[2]))) / 0.125
    assert np.count_nonzero(mask) == pytest.approx(expected, rel=0.05)


def test_disc_brush_on_a_rotated_grid_is_a_disc_in_lps():
    rot = euler_matrix(0.3, -0.2, 0.5)
    g = grid(direction=rot)
    box, mask = brush_footprint(g, (1.0, 2.0, -1.0), 4.0, normal=(0, 0, 1))
    kk, jj, ii = np.nonzero(mask)
    pts = g.index_to_physical(
        np.stack([ii + box[2].start, jj + box[1].start, kk + box[0].start], axis=1)
    )
    d = pts - np.array([1.0, 2.0, -1.0])
    assert np.all(np.hypot(d[:, 0], d[:, 1]) <= 4.0 + 1e-9)
    assert np.ptp(pts[:, 2]) < 1.0  # a thin layer around z = -1


def test_sweep_leaves_no_gap_between_dabs():
    g = grid()
    box, mask = brush_footprint(g, (-4.0, 0.0, 0.0), 1.5, end_lps=(4.0, 0.0, 0.0))
    kk, jj, ii = np.nonzero(mask)
    xs = g.index_to_physical(
        np.stack([ii + box[2].start, jj + box[1].start, kk + box[0].start], axis=1)
    )[:, 0]
    covered = np.unique(np.round(xs / 0.5).astype(int))
    assert covered.min() <= -11 and covered.max() >= 11
    assert np.all(np.diff(covered) == 1)
    expected = math.pi * 1.5**2 * 8 + 4 / 3 * math.pi * 1.5**3
    assert np.count_nonzero(mask) * 0.125 == pytest.approx(expected, rel=0.08)


def test_paint_and_erase_return_diffs_without_touching_the_array():
    g = grid()
    labels = np.zeros(g.array.shape, dtype=np.uint8)
    labels[20, 20, :] = 2
    diff = paint(g, labels, (0.0, 0.0, 0.0), 2.0, 1, editable={0})
    assert not labels.any(axis=None) or np.count_nonzero(labels == 1) == 0
    diff.apply(labels)
    assert np.count_nonzero(labels == 2) == 40  # protected label untouched
    erase = paint(g, labels, (0.0, 0.0, 0.0), 1.0, 1, erase=True)
    assert erase.count(1) < 0 and erase.count(2) == 0
    assert paint(g, labels, (0.0, 0.0, 0.0), 0.1, 3).count(3) == 1  # tiny brush: one voxel


def test_threshold_in_a_sphere_and_in_a_box():
    g = grid()
    i = np.arange(40)[None, None, :]
    g.array[:] = (i * 10).astype(np.int16)  # HU ramp along x
    labels = np.zeros(g.array.shape, dtype=np.uint8)
    diff = threshold_region(g, labels, 1, 100, 190, sphere_lps=((0.0, 0.0, 0.0), 4.0))
    diff.apply(labels)
    kk, jj, ii = np.nonzero(labels)
    assert ii.min() == 12 and ii.max() == 19  # 100-190 HU within the sphere's x range
    assert np.all((kk - 20) ** 2 + (jj - 20) ** 2 + (ii - 20) ** 2 <= 64)
    labels[:] = 0
    threshold_region(
        g, labels, 1, -1000, 1000, box_lps=((-1.0, -2.0, -3.0), (1.0, 2.0, 3.0))
    ).apply(labels)
    assert np.count_nonzero(labels) == 5 * 9 * 13


def test_fill_between_slices_interpolates_the_shape():
    spacing = (0.5, 0.5, 1.0)
    labels = np.zeros((11, 100, 100), dtype=np.uint8)
    yy, xx = np.mgrid[:100, :100]
    r = np.hypot((xx - 50) * 0.5, (yy - 50) * 0.5)
    labels[0][r <= 10] = 1
    labels[10][r <= 20] = 1
    fill_between_slices(labels, 1, spacing).apply(labels)
    for k, expected in ((5, 15.0), (2, 12.0), (8, 18.0)):
        radius = math.sqrt(np.count_nonzero(labels[k]) * 0.25 / math.pi)
        assert radius == pytest.approx(expected, abs=0.3)
    with pytest.raises(SegmentationError):
        fill_between_slices(np.zeros((3, 4, 4), np.uint8), 1, spacing)


def test_fill_between_slices_along_another_axis():
    labels = np.zeros((20, 20, 9), dtype=np.uint8)
    labels[5:15, 5:15, 0] = 1
    labels[5:15, 5:15, 8] = 1
    fill_between_slices(labels, 1, (1.0, 1.0, 1.0), axis=2).apply(labels)
    assert np.count_nonzero(labels) == 100 * 9


def test_islands_keep_largest_and_remove_small():
    labels = np.zeros((20, 20, 20), dtype=np.uint8)
    labels[1:11, 1:11, 1:11] = 1  # 1000 voxels
    labels[15:18, 15:18, 15:18] = 1  # 27
    labels[0:2, 18:20, 18:20] = 1  # 8
    small = remove_small_islands(labels, 1, 10.0, (0.5, 0.5, 2.0))  # 8 and 27 x 0.5 mm^3
    assert small.count(1) == -8
    largest = keep_largest_island(labels, 1)
    assert largest.count(1) == -35
    largest.apply(labels)
    assert np.count_nonzero(labels) == 1000


def test_grow_and_shrink_by_millimetres_on_anisotropic_voxels():
    spacing = (0.8, 0.8, 2.5)  # i, j, k
    labels = np.zeros((20, 40, 40), dtype=np.uint8)
    labels[5:15, 10:20, 10:20] = 1
    cube = labels.copy()
    grow_shrink(labels, 1, 3.0, spacing).apply(labels)
    kk, _, ii = np.nonzero(labels)
    assert (ii.min(), ii.max()) == (10 - 3, 19 + 3)  # 3 mm = 3.75 columns
    assert (kk.min(), kk.max()) == (5 - 1, 14 + 1)  # 3 mm = 1.2 slices
    grow_shrink(labels, 1, -3.0, spacing).apply(labels)
    np.testing.assert_array_equal(labels, cube)  # closing a convex shape gives it back
    grow_shrink(labels, 1, -2.0, spacing).apply(labels)
    kk, _, ii = np.nonzero(labels)
    assert (ii.min(), ii.max()) == (12, 17) and (kk.min(), kk.max()) == (5, 14)


def test_grow_respects_protected_labels():
    labels = np.zeros((10, 10, 10), dtype=np.uint8)
    labels[4:6, 4:6, 4:6] = 1
    labels[:, :, 7:] = 4
    grow_shrink(labels, 1, 5.0, (1, 1, 1), editable={0}).apply(labels)
    assert np.count_nonzero(labels == 4) == 300


def test_smoothing_removes_a_spike_and_keeps_the_body():
    labels = np.zeros((30, 30, 30), dtype=np.uint8)
    z, y, x = np.mgrid[:30, :30, :30]
    ball = (x - 15) ** 2 + (y - 15) ** 2 + (z - 15) ** 2 <= 64
    labels[ball] = 1
    labels[15, 15, 24:27] = 1  # a one-voxel spike
    smooth_label(labels, 1, 1.0, (1.0, 1.0, 1.0)).apply(labels)
    assert labels[15, 15, 25] == 0
    assert np.count_nonzero(labels) == pytest.approx(np.count_nonzero(ball), rel=0.1)
