"""Property-based tests (hypothesis): geometry round trips and evaluation invariants.

Each property holds for every input the strategy can draw, not only for the handful of
hand-made cases of the other tests: index <-> LPS conversions invert each other, a
Volume and a case payload keep their geometry through SimpleITK and the disk, slice
order never depends on file order, and a point is a point exactly when it is finite.
"""

from __future__ import annotations

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from guideplan.core import geometry  # noqa: E402
from guideplan.core import validate as v  # noqa: E402
from guideplan.core.volume import Volume  # noqa: E402
from guideplan.io.slice_stack import plan_stack  # noqa: E402

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])

angles = st.floats(-180.0, 180.0, allow_nan=False)
spacings = st.tuples(*[st.floats(0.2, 5.0, allow_nan=False)] * 3)
origins = st.tuples(*[st.floats(-500.0, 500.0, allow_nan=False)] * 3)
sizes = st.tuples(*[st.integers(1, 9)] * 3)


def _direction(rx: float, ry: float, rz: float, flip: bool) -> np.ndarray:
    d = geometry.euler_matrix(np.radians(rx), np.radians(ry), np.radians(rz))
    if flip:  # left-handed grids exist (a series stored feet-first, say)
        d = d @ np.diag([1.0, 1.0, -1.0])
    return d


directions = st.builds(_direction, angles, angles, angles, st.booleans())


@FAST
@given(spacings, origins, directions, st.lists(origins, min_size=1, max_size=5))
def test_lps_to_index_and_back_is_the_identity(spacing, origin, direction, points):
    vol = Volume(np.zeros((2, 2, 2)), spacing, origin, direction)
    pts = np.array(points, dtype=float)
    back = vol.index_to_physical(vol.physical_to_index(pts))
    np.testing.assert_allclose(back, pts, atol=1e-7)


@FAST
@given(spacings, origins, directions, sizes)
def test_every_voxel_centre_maps_to_its_own_index(spacing, origin, direction, size):
    vol = Volume(np.zeros(size[::-1]), spacing, origin, direction)
    ijk = np.indices(size).reshape(3, -1).T
    np.testing.assert_array_equal(vol.physical_to_nearest_index(vol.index_to_physical(ijk)), ijk)
    assert all(vol.contains_index(p) for p in ijk)


@FAST
@given(angles, angles, angles)
def test_cosines_give_a_right_handed_orthonormal_direction(rx, ry, rz):
    d = _direction(rx, ry, rz, False)
    out = geometry.orientation_from_cosines(d[:, 0], d[:, 1])
    assert geometry.is_orthonormal(out)
    assert np.linalg.det(out) == pytest.approx(1.0)
    np.testing.assert_allclose(out, d, atol=1e-9)


@SLOW
@given(spacings, origins, directions, sizes)
def test_a_volume_keeps_its_geometry_and_voxels_through_simpleitk(spacing, origin, direction, size):
    rng = np.random.default_rng(abs(hash((spacing, size))) % 2**32)
    vol = Volume(rng.integers(-1000, 2000, size[::-1]).astype(np.int16), spacing, origin, direction)
    back = Volume.from_sitk(vol.to_sitk())
    assert back.same_grid(vol, tol=1e-9)
    np.testing.assert_array_equal(back.array, vol.array)
    # The left marker stays on the left: the LPS point of a voxel is the same after.
    np.testing.assert_allclose(back.index_to_physical((0, 0, 0)), vol.index_to_physical((0, 0, 0)))


@SLOW
@given(spacings, origins, directions, sizes)
def test_a_label_map_payload_round_trips_exactly_through_the_case_folder(
    tmp_path_factory, spacing, origin, direction, size
):
    from guideplan.io.case_file import ImagePayload, read_case, write_case

    case = tmp_path_factory.mktemp("prop") / "c.gplan"
    labels = (np.arange(np.prod(size)).reshape(size[::-1]) % 3).astype(np.uint8)
    grid = Volume(np.zeros(size[::-1]), spacing, origin, direction)
    write_case(case, {}, {"l": ImagePayload.on_grid_of(labels, grid)})
    back = read_case(case)[1].load("l")
    assert back.same_grid(grid, tol=1e-9)
    np.testing.assert_array_equal(back.array, labels)


@FAST
@given(
    angles,
    angles,
    st.integers(2, 12),
    st.floats(0.5, 5.0),
    st.randoms(use_true_random=False),
)
def test_slice_order_depends_on_positions_never_on_file_order(rx, ry, n, step, rnd):
    d = _direction(rx, ry, 0.0, False)
    normal = d[:, 2]
    positions = np.array([k * step * normal + (3.0, -4.0, 5.0) for k in range(n)])
    shuffled = list(range(n))
    rnd.shuffle(shuffled)
    plan = plan_stack(positions[shuffled], np.r_[d[:, 0], d[:, 1]], (0.7, 0.9), 8, 6)
    assert [shuffled[i] for i in plan.order] == list(range(n))
    assert plan.regular and plan.spacing[2] == pytest.approx(step)
    np.testing.assert_allclose(plan.origin, positions[0], atol=1e-9)


@FAST
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=3, max_size=3))
def test_a_point_is_accepted_exactly_when_it_is_three_finite_numbers(values):
    text = ",".join(repr(x) for x in values)
    if all(np.isfinite(values)):
        np.testing.assert_array_equal(v.point(text, "--target"), values)
    else:
        with pytest.raises(v.InvalidValueError, match="--target"):
            v.point(text, "--target")
