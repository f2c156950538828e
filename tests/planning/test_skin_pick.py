"""Picking the skin along a line of sight (3D entry-point placement)."""

from __future__ import annotations

import numpy as np
import pytest

from guideplan.core.volume import Volume
from guideplan.planning.skin_pick import first_skin_point, ray_through_box

RADIUS = 60.0  # mm, the body: a cylinder along S/I
TABLE_Y = 75.0  # mm, the table's top surface, posterior of the body (supine patient)


def phantom(direction=(1, 0, 0, 0, 1, 0, 0, 0, 1)) -> tuple[Volume, Volume]:
    """A body cylinder (40 HU) on a table slab (300 HU) with air between them."""
    spacing = (1.0, 1.0, 2.0)
    size = (200, 200, 30)  # i, j, k
    probe = Volume(np.zeros(size[::-1], np.int16), spacing, (0.0, 0.0, 0.0), direction, {})
    centre_index = (np.asarray(size) - 1) / 2.0
    origin = -(probe.index_to_physical(centre_index) - np.asarray(probe.origin))
    base = Volume(np.zeros(size[::-1], np.int16), spacing, tuple(origin), direction, {})
    k, j, i = np.indices(base.array.shape)
    lps = base.index_to_physical(np.stack([i.ravel(), j.ravel(), k.ravel()], axis=1))
    x, y = lps[:, 0].reshape(base.array.shape), lps[:, 1].reshape(base.array.shape)
    hu = np.full(base.array.shape, -1000, np.int16)
    body = x**2 + y**2 <= RADIUS**2
    hu[body] = 40
    hu[(y >= TABLE_Y) & (y <= TABLE_Y + 12.0)] = 300
    ct = base.with_array(hu)
    coarse = Volume(
        body[::2, ::2, ::2].astype(np.uint8),
        tuple(s * 2 for s in spacing),
        base.origin,
        direction,
        {},
    )
    return ct, coarse


@pytest.mark.parametrize(
    "direction",
    [
        (1, 0, 0, 0, 1, 0, 0, 0, 1),  # head first supine
        (-1, 0, 0, 0, 1, 0, 0, 0, -1),  # feet first: rows run to the patient's right
        (0.96592583, 0.25881905, 0, -0.25881905, 0.96592583, 0, 0, 0, 1),  # oblique 15°
    ],
)
def test_line_of_sight_from_behind_hits_the_back_not_the_table(direction):
    ct, body = phantom(direction)
    point = first_skin_point(ct, body, (0.0, 500.0, 0.0), (0.0, -1.0, 0.0), body_min_hu=-400)
    assert point is not None
    # The table lies at y 75..87 mm, the back's skin at y = +60 mm.
    assert point[1] == pytest.approx(RADIUS, abs=1.0)
    assert abs(point[0]) < 1e-6


def test_line_of_sight_from_the_left_hits_the_left_flank():
    ct, body = phantom()
    direction = np.array([-1.0, 0.0, -0.05])  # from the patient's left, slightly caudal
    start = np.array([400.0, 20.0, 20.0])
    point = first_skin_point(ct, body, start, direction, body_min_hu=-400)
    assert point is not None
    assert point[0] > 0  # left is +x in LPS
    assert np.hypot(point[0], point[1]) == pytest.approx(RADIUS, abs=1.0)
    # On the line of sight.
    d = direction / np.linalg.norm(direction)
    off = (point - start) - ((point - start) @ d) * d
    assert np.linalg.norm(off) < 1e-6


def test_a_line_that_misses_the_patient_or_the_volume_gives_nothing():
    ct, body = phantom()
    assert first_skin_point(ct, body, (95.0, 500.0, 0.0), (0.0, -1.0, 0.0), -400) is None
    assert first_skin_point(ct, body, (0.0, 500.0, 500.0), (0.0, -1.0, 0.0), -400) is None
    assert ray_through_box(ct, np.array([0.0, 500.0, 500.0]), np.array([0.0, -1.0, 0.0])) is None
