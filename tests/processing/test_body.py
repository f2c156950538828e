"""The fast body and skin masks against shapes drawn by hand, and against the plain
full-resolution method on the real abdomen."""

import numpy as np
import pytest

from guideplan.processing import body, masks


def _phantom(pixel_mm: float = 0.8):
    """An elliptic body (40 HU, semi-axes 150 x 100 mm) with a lung (-850 HU, radius
    40 mm) inside, a couch (60 HU, 10 mm thick) 6 mm below its back, in air."""
    n_in, n_z = int(round(360 / pixel_mm)), 20
    c = (np.arange(n_in) + 0.5) * pixel_mm - 180.0
    y, x = np.meshgrid(c, c, indexing="ij")
    plane = np.full((n_in, n_in), -1000, np.int16)
    inside = (x / 150.0) ** 2 + (y / 100.0) ** 2 <= 1.0
    plane[inside] = 40
    lung = (x - 50.0) ** 2 + (y + 10.0) ** 2 <= 40.0**2
    plane[lung] = -850
    couch = (y >= 106.0) & (y <= 116.0) & (np.abs(x) <= 160.0)
    plane[couch] = 60
    array = np.repeat(plane[None], n_z, axis=0)
    return array, inside, couch


@pytest.mark.parametrize("pixel_mm", [0.6, 0.8, 1.5, 3.0])
def test_the_body_holds_the_lung_and_leaves_the_couch_out(pixel_mm):
    array, inside, couch = _phantom(pixel_mm)
    found = body.body_mask(array, -400.0, 0, pixel_mm, 2.5)
    assert not (found & couch[None]).any()
    wrong = np.count_nonzero(found[10] ^ inside)
    # the edge may differ by the partial voxels of the ellipse's boundary only
    perimeter = 2 * np.pi * np.sqrt((150**2 + 100**2) / 2) / pixel_mm
    assert wrong <= 0.5 * perimeter, (wrong, perimeter)


def test_the_fast_body_equals_the_plain_method_on_the_real_abdomen():
    from tests.real.real_ct import abdomen

    volume = abdomen().volume
    plain = masks.fill_holes_by_slice(masks.largest_component(volume.array > -400), 0)
    fast = body.body_mask(volume.array, -400.0, 0, 3.0, 2.5)
    assert np.count_nonzero(plain ^ fast) <= 0.002 * np.count_nonzero(plain)


def test_the_skin_is_the_outer_layers_and_open_at_the_ends():
    _, inside, _ = _phantom(1.0)
    mask = np.repeat(inside[None], 20, axis=0)
    shell = body.skin_shell(mask, 2, 0)
    # in each slice: the body minus its 2-pixel in-plane erosion (4-neighbourhood)
    core = inside.copy()
    for _ in range(2):
        src = core.copy()
        core[1:] &= src[:-1]
        core[:-1] &= src[1:]
        core[:, 1:] &= src[:, :-1]
        core[:, :-1] &= src[:, 1:]
    expected = inside & ~core
    assert np.array_equal(shell[5], expected)
    assert np.array_equal(shell[0], expected)  # the field of view's end is no skin
    assert not (shell & ~mask).any()
