"""The one geometry convention: index (i, j, k) <-> LPS mm, SimpleITK's layout."""

import numpy as np
import pytest
import SimpleITK as sitk

from guideplan.core import geometry
from guideplan.core.volume import Volume


def _oblique_volume() -> Volume:
    direction = geometry.euler_matrix(*np.deg2rad([12.0, -7.0, 25.0]))
    array = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)  # [k, j, i]
    return Volume(array, spacing=(0.7, 0.9, 2.5), origin=(-120.0, 35.5, 410.0), direction=direction)


def test_index_to_lps_matches_simpleitk():
    vol = _oblique_volume()
    image = vol.to_sitk()
    for ijk in [(0, 0, 0), (5, 4, 3), (2, 1, 3), (1.5, 2.25, 0.5)]:
        expected = image.TransformContinuousIndexToPhysicalPoint([float(v) for v in ijk])
        np.testing.assert_allclose(vol.index_to_physical(ijk), expected, atol=1e-9)


def test_lps_to_index_round_trip_many_points():
    vol = _oblique_volume()
    rng = np.random.default_rng(1)
    ijk = rng.uniform(-3, 8, size=(200, 3))
    back = vol.physical_to_index(vol.index_to_physical(ijk))
    np.testing.assert_allclose(back, ijk, atol=1e-9)


def test_array_layout_is_k_j_i():
    vol = _oblique_volume()
    image = vol.to_sitk()
    assert image.GetSize() == vol.size == (6, 5, 4)
    # SimpleITK's GetPixel takes (i, j, k); our array is [k, j, i].
    assert image.GetPixel(5, 3, 2) == vol.array[2, 3, 5]


def test_sitk_round_trip_keeps_geometry_and_values():
    vol = _oblique_volume()
    back = Volume.from_sitk(vol.to_sitk())
    assert back.same_grid(vol)
    np.testing.assert_array_equal(back.array, vol.array)


def test_value_at_known_lps_point():
    array = np.zeros((3, 4, 5), dtype=np.int16)
    array[2, 1, 4] = 99  # k=2, j=1, i=4
    vol = Volume(array, spacing=(1.0, 2.0, 3.0), origin=(10.0, 20.0, 30.0))
    assert vol.value_at((14.0, 22.0, 36.0)) == 99
    assert vol.value_at((1000.0, 0.0, 0.0)) is None


def test_orientation_from_cosines_is_right_handed():
    d = geometry.orientation_from_cosines([1, 0, 0], [0, 1, 0])
    np.testing.assert_allclose(d, np.eye(3))
    # Sagittal: rows run posterior->anterior? DICOM sagittal: row cosine (0,1,0), col (0,0,-1).
    d = geometry.orientation_from_cosines([0, 1, 0], [0, 0, -1])
    np.testing.assert_allclose(d[:, 2], [-1, 0, 0])  # normal points to patient's right


@pytest.mark.parametrize(
    ("vector", "letters"),
    [
        ((1, 0, 0), "L"),
        ((-1, 0, 0), "R"),
        ((0, 1, 0), "P"),
        ((0, -1, 0), "A"),
        ((0, 0, 1), "S"),
        ((0, 0, -1), "I"),
        ((0.9, -0.3, 0), "LA"),
    ],
)
def test_axis_letters(vector, letters):
    assert geometry.closest_axis_letters(vector) == letters
    assert geometry.opposite_letters(letters) == geometry.closest_axis_letters(-np.array(vector))


def test_orientation_code():
    assert geometry.orientation_code(np.eye(3)) == "LPS"
    assert geometry.orientation_code(np.diag([1, 1, -1])) == "LPI"


def test_rigid_matrix_matches_simpleitk_euler():
    center = (5.0, -3.0, 100.0)
    rot = (10.0, -20.0, 30.0)
    trans = (1.0, 2.0, 3.0)
    m = geometry.rigid_matrix(rot, trans, center)
    t = sitk.Euler3DTransform(center, *np.deg2rad(rot), trans)
    for p in [(0, 0, 0), (10, 20, 30), (-50, 7, 120)]:
        np.testing.assert_allclose(geometry.apply_affine(m, p), t.TransformPoint(p), atol=1e-9)


def test_volume_rejects_bad_shapes():
    with pytest.raises(ValueError):
        Volume(np.zeros((3, 3)), spacing=(1, 1, 1), origin=(0, 0, 0))
    with pytest.raises(ValueError):
        Volume(np.zeros((3, 3, 3)), spacing=(1, 0, 1), origin=(0, 0, 0))
