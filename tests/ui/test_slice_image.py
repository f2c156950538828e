"""Radiological display convention: the patient's left on the screen's right, whatever the
acquisition's axes (a left/right flip is the worst bug this program can have)."""

import numpy as np
import pytest

from guideplan.core import geometry
from guideplan.core.volume import Volume
from guideplan.ui import slice_image

DIRECTIONS = {
    "HFS identity": np.eye(3),
    "FFS (i->R, k->I)": np.diag([-1.0, 1.0, -1.0]),
    "prone (i->R, j->A)": np.diag([-1.0, -1.0, 1.0]),
    "sagittal acquisition": geometry.orientation_from_cosines([0, 1, 0], [0, 0, -1]),
    "coronal acquisition": geometry.orientation_from_cosines([1, 0, 0], [0, 0, -1]),
}


def _volume_with_markers(direction: np.ndarray) -> Volume:
    shape = (21, 21, 21)
    vol = Volume(np.zeros(shape, np.int16), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0), direction)
    centre = vol.center_lps()
    for offset, value in [((8, 0, 0), 100), ((0, -8, 0), 200), ((0, 0, 8), 300)]:
        i, j, k = vol.physical_to_nearest_index(centre + np.array(offset, float))
        vol.array[k, j, i] = value  # 100: patient's left, 200: anterior, 300: superior
    return vol


def _where(img: np.ndarray, value: int) -> tuple[int, int]:
    rows, cols = np.nonzero(img == value)
    return int(rows[0]), int(cols[0])


@pytest.mark.parametrize("name", list(DIRECTIONS))
def test_left_anterior_superior_land_on_the_expected_screen_side(name):
    aligned = slice_image.align_to_lps(_volume_with_markers(DIRECTIONS[name]))
    mid = 10
    axial, _ = slice_image.slice_rgb(aligned, "axial", mid, window=600, level=150)
    coronal, _ = slice_image.slice_rgb(aligned, "coronal", mid, window=600, level=150)
    sagittal, _ = slice_image.slice_rgb(aligned, "sagittal", mid, window=600, level=150)
    to8 = lambda v: int(np.clip((v - (150 - 300)) * 255 / 600, 0, 255))  # noqa: E731
    # Axial: left marker on the right half; anterior marker in the top half.
    assert _where(axial, to8(100))[1] > mid
    assert _where(axial, to8(200))[0] < mid
    # Coronal: left on the right, superior on top.
    assert _where(coronal, to8(100))[1] > mid
    assert _where(coronal, to8(300))[0] < mid
    # Sagittal: anterior on the left, superior on top.
    assert _where(sagittal, to8(200))[1] < mid
    assert _where(sagittal, to8(300))[0] < mid
    assert slice_image.EDGE_LETTERS["axial"][1] == "L"
