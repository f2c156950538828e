"""Property-based tests (hypothesis) of the evaluation's invariants: coverage stays in
[0, 100] %, covered + uncovered is the lesion, a union of zones neither loses nor invents
volume."""

from __future__ import annotations

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from guideplan.core.volume import Volume  # noqa: E402

SLOW = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _blob(shape, center, radius) -> np.ndarray:
    k, j, i = np.indices(shape)
    c = np.asarray(center)[::-1]
    return (k - c[0]) ** 2 + (j - c[1]) ** 2 + (i - c[2]) ** 2 <= radius**2


@SLOW
@given(
    st.tuples(*[st.integers(6, 14)] * 3),
    st.tuples(*[st.integers(6, 14)] * 3),
    st.integers(2, 5),
    st.integers(1, 7),
)
def test_coverage_stays_within_0_and_100_percent_and_lesion_volume_is_conserved(
    lesion_c, zone_c, lesion_r, zone_r
):
    from guideplan.planning.context import TreatmentContext
    from guideplan.planning.evaluate import union_zone, zone_figures
    from guideplan.planning.zones import Zone

    shape = (20, 20, 20)
    ct = Volume(np.full(shape, 40, np.int16), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    lesion = _blob(shape, lesion_c, lesion_r)
    ctx = TreatmentContext.from_masks(ct, {"lesion": lesion}, auto_skin=False)
    full = (slice(0, 20),) * 3
    zmask = _blob(shape, zone_c, zone_r)
    zone = Zone("test", "thermal", "", {}, ct, full, zmask)
    fig = zone_figures(ctx, zone, distances=False)
    voxel_ml = 1e-3
    assert 0.0 <= fig.coverage_pct <= 100.0
    assert 0.0 <= fig.margin_coverage_pct <= 100.0
    assert fig.covered_ml + fig.uncovered_ml == pytest.approx(lesion.sum() * voxel_ml)
    assert fig.covered_ml == pytest.approx((lesion & zmask).sum() * voxel_ml)
    # A union never loses volume and never invents any.
    other = Zone("o", "thermal", "", {}, ct, full, _blob(shape, lesion_c, zone_r))
    both = union_zone([zone, other], "combined")
    n = int(np.count_nonzero(both.mask))
    assert max(zmask.sum(), other.mask.sum()) <= n <= zmask.sum() + other.mask.sum()
    assert n == int((zmask | other.mask).sum())
