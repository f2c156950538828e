"""Offscreen rendering with the GUI's pipelines: pixels that matter, not hashes.

The marker on the patient's left must appear on the screen's right in axial and coronal
views, anterior up in axial, superior up in coronal/sagittal, whatever the volume's axes.
"""

import numpy as np
import pytest
from vtkmodules.util.numpy_support import vtk_to_numpy
from vtkmodules.vtkIOImage import vtkPNGReader

from guideplan.core import geometry
from guideplan.render.slice_view import LETTER_COLOUR
from guideplan.render.snapshot import render_volume
from tests.render.markers import LEFT, SUPERIOR, marker_volume

DIRECTIONS = {
    "HFS": np.eye(3),
    "FFS": np.diag([-1.0, 1.0, -1.0]),
    "prone": np.diag([-1.0, -1.0, 1.0]),
    "sagittal": geometry.orientation_from_cosines([0, 1, 0], [0, 0, -1]),
    "oblique": geometry.euler_matrix(*np.deg2rad([8.0, -5.0, 12.0])),
}


def read_png(path) -> np.ndarray:
    reader = vtkPNGReader()
    reader.SetFileName(str(path))
    reader.Update()
    image = reader.GetOutput()
    w, h, _ = image.GetDimensions()
    arr = vtk_to_numpy(image.GetPointData().GetScalars()).reshape(h, w, -1)
    return arr[::-1, :, :3]  # VTK rows start at the bottom


def bright_centroid(img: np.ndarray, min_level: int = 250) -> tuple[float, float]:
    grey = img.mean(axis=2)
    ys, xs = np.nonzero(grey >= min_level)
    assert len(xs), "marker not visible"
    return float(ys.mean()), float(xs.mean())


def _window_for(value: int) -> tuple[float, float]:
    """A window in which only values >= value are white."""
    return 10.0, float(value) - 5.0


@pytest.mark.parametrize("name", list(DIRECTIONS))
def test_left_marker_on_screen_right_in_axial_and_coronal(tmp_path, name):
    vol = marker_volume(DIRECTIONS[name])
    centre = vol.center_lps()
    marker = centre + np.array([35.0, 0, 0])
    for view in ("axial", "coronal"):
        out = render_volume(
            vol,
            view,
            tmp_path / f"{view}.png",
            size=(300, 300),
            cursor_lps=marker,
            window_level=_window_for(LEFT),
        )
        img = read_png(out)
        _, x = bright_centroid(img)
        assert x > img.shape[1] / 2 + 20, f"{name} {view}: patient's left not on screen right"


@pytest.mark.parametrize("name", ["HFS", "FFS", "sagittal"])
def test_superior_marker_on_top_in_coronal_and_sagittal(tmp_path, name):
    vol = marker_volume(DIRECTIONS[name])
    marker = vol.center_lps() + np.array([0, 0, 45.0])
    for view in ("coronal", "sagittal"):
        img = read_png(
            render_volume(
                vol,
                view,
                tmp_path / f"{view}.png",
                size=(300, 300),
                cursor_lps=marker,
                window_level=_window_for(SUPERIOR),
            )
        )
        y, _ = bright_centroid(img)
        assert y < img.shape[0] / 2 - 20, f"{name} {view}: superior not at the top"


def test_anterior_marker_on_top_in_axial(tmp_path, markers):
    marker = markers.center_lps() + np.array([0, -30.0, 0])
    img = read_png(
        render_volume(
            markers,
            "axial",
            tmp_path / "a.png",
            size=(300, 300),
            cursor_lps=marker,
            window_level=(10.0, 2495.0),
        )
    )
    y, _ = bright_centroid(img)
    assert y < img.shape[0] / 2 - 20


def _letter_pixels(img: np.ndarray, region: tuple[slice, slice]) -> int:
    patch = img[region].astype(int)
    target = np.array([int(c * 255) for c in LETTER_COLOUR])
    return int(np.sum(np.all(np.abs(patch - target) < 40, axis=-1)))


def test_orientation_letters_on_every_edge_of_each_2d_view(tmp_path, markers):
    for view in ("axial", "coronal", "sagittal"):
        img = read_png(render_volume(markers, view, tmp_path / f"{view}.png", size=(400, 400)))
        h, w, _ = img.shape
        edges = {
            "left": (slice(h // 2 - 20, h // 2 + 20), slice(0, 30)),
            "right": (slice(h // 2 - 20, h // 2 + 20), slice(w - 30, w)),
            "top": (slice(0, 30), slice(w // 2 - 20, w // 2 + 20)),
            "bottom": (slice(h - 30, h), slice(w // 2 - 20, w // 2 + 20)),
        }
        for edge, region in edges.items():
            assert _letter_pixels(img, region) > 10, f"no orientation letter on {view} {edge}"


def test_3d_view_shows_bone(tmp_path, markers):
    img = read_png(render_volume(markers, "3d", tmp_path / "3d.png", size=(400, 400)))
    # The bone surface is drawn in a warm ivory; the background is a dark blue gradient.
    r, g, b = (img[..., c].astype(int) for c in range(3))
    ivory = (r > 150) & (g > 140) & (b > 110) & (r >= b)
    assert ivory.sum() > 500


def test_all_views_in_one_image(tmp_path, markers):
    img = read_png(render_volume(markers, "all", tmp_path / "all.png", size=(600, 600)))
    assert img.shape[:2] == (600, 600)
    for quadrant in (img[:300, :300], img[:300, 300:], img[300:, :300], img[300:, 300:]):
        assert quadrant.mean() > 3  # every quadrant has content
