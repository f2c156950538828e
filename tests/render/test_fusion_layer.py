"""Fusion layer drawn offscreen: the prior lands on the right pixels, through its transform."""

import itertools

import numpy as np
import pytest
from vtkmodules.util.numpy_support import vtk_to_numpy
from vtkmodules.vtkRenderingCore import vtkRenderWindow, vtkWindowToImageFilter

import guideplan.render.snapshot  # noqa: F401  (picks EGL when there is no display)
from guideplan.core import geometry
from guideplan.model.nodes import DisplayProps
from guideplan.render.fusion_layer import FusionLayer
from guideplan.render.slice_view import SliceView
from tests.render.markers import LEFT, marker_volume

SIZE = 200
#: A window in which only the LEFT marker is white.
MARKER_WL = (10.0, LEFT - 5.0)


@pytest.fixture
def scene():
    """An axial slice view through the LEFT marker, with nothing drawn but the image."""
    volume = marker_volume()
    window = vtkRenderWindow()
    window.SetOffScreenRendering(1)
    window.SetMultiSamples(0)
    window.SetSize(SIZE, SIZE)
    view = SliceView("axial")
    window.AddRenderer(view.renderer)
    view.show_crosshair = False
    view.set_volume(volume, volume.center_lps() + np.array([35.0, 0.0, 0.0]))
    view.set_window_level(*MARKER_WL)
    view.corners.VisibilityOff()
    for actor in view.letters.values():
        actor.VisibilityOff()
    layer = FusionLayer(view)
    layer.set_volume(volume)
    layer.set_window_level(*MARKER_WL)
    layer.set_opacity(1.0)
    yield window, view, layer, volume
    window.Finalize()


def grab(window) -> np.ndarray:
    window.Render()
    grabber = vtkWindowToImageFilter()
    grabber.SetInput(window)
    grabber.SetInputBufferTypeToRGB()
    grabber.ReadFrontBufferOff()
    grabber.Update()
    image = grabber.GetOutput()
    w, h, _ = image.GetDimensions()
    rgb = vtk_to_numpy(image.GetPointData().GetScalars()).reshape(h, w, 3)
    return rgb[::-1].astype(int)  # top row first


def centroid(img: np.ndarray, channel: int = 0) -> np.ndarray:
    ys, xs = np.nonzero(img[..., channel] > 230)  # the scale bar is 216 grey
    assert len(xs), "marker not visible"
    return np.array([xs.mean(), ys.mean()])


def test_identity_fusion_shows_the_same_pixels(scene):
    window, _view, layer, _ = scene
    layer.set_visible(False)
    base = grab(window)
    layer.set_visible(True)
    fused = grab(window)
    assert (base[..., 0] > 230).sum() > 20
    assert np.abs(fused - base).max() <= 1


def test_translation_moves_the_marker_by_the_expected_pixels(scene):
    window, view, layer, _ = scene
    view.image_actor.VisibilityOff()  # the prior alone
    before = centroid(grab(window))
    # fixed->moving +10 mm along L: the prior's marker is drawn 10 mm to the patient's
    # right, i.e. to the screen's left in an axial view.
    layer.set_transform(geometry.rigid_matrix((0, 0, 0), (10.0, 0.0, 0.0)))
    after = centroid(grab(window))
    expected_px = 10.0 / view.mm_per_pixel()
    assert after[0] - before[0] == pytest.approx(-expected_px, abs=1.0)
    assert after[1] == pytest.approx(before[1], abs=0.5)


def test_layer_follows_the_slice_view(scene):
    window, view, layer, volume = scene
    view.image_actor.VisibilityOff()
    view.set_cursor(volume.center_lps() + np.array([0.0, 0.0, 30.0]))  # off the marker
    layer.update()
    assert (grab(window)[..., 0] > 230).sum() == 0
    view.set_cursor(volume.center_lps() + np.array([35.0, 0.0, 0.0]))
    layer.update()
    assert (grab(window)[..., 0] > 230).sum() > 20


def test_blend_opacity_mixes_fixed_and_prior(scene):
    window, view, layer, _ = scene
    layer.set_transform(geometry.rigid_matrix((0, 0, 0), (20.0, 0.0, 0.0)))
    layer.set_opacity(0.5)
    red = grab(window)[..., 0]
    # Fixed marker under black prior, prior marker over black fixed: both half grey.
    assert (red > 230).sum() == 0
    _ys, xs = np.nonzero((red > 100) & (red < 160))
    assert len(xs) > 40
    assert xs.max() - xs.min() > 20.0 / view.mm_per_pixel()  # two spots 20 mm apart


def test_checkerboard_alternates_tiles(scene):
    window, view, layer, _ = scene
    view.set_window_level(1.0, 5000.0)  # fixed image black everywhere
    layer.set_window_level(1.0, -5000.0)  # prior white wherever it has data
    layer.set_mode("checker")
    layer.set_checker_size(20.0)
    img = grab(window)[..., 0]
    white = img > 230
    assert 0.3 < white.mean() < 0.7
    # Sample the centres of neighbouring 20 mm tiles along a row: they alternate.
    px = 20.0 / view.mm_per_pixel()
    x0 = view.lps_to_display(view.frame.to_lps(10.0, 10.0, view.depth))
    row = int(round(SIZE - x0[1]))
    cols = [int(round(x0[0] + n * px)) for n in range(-2, 3)]
    cols = [c for c in cols if 0 <= c < SIZE]
    values = [bool(white[row, c]) for c in cols]
    assert all(a != b for a, b in itertools.pairwise(values))


def test_flicker_toggles_and_hide_hides(scene):
    window, view, layer, _ = scene
    view.image_actor.VisibilityOff()
    layer.set_mode("flicker")
    assert (grab(window)[..., 0] > 230).sum() > 20
    assert layer.toggle() is False
    assert (grab(window)[..., 0] > 230).sum() == 0
    assert layer.toggle() is True
    layer.set_visible(False)
    assert (grab(window)[..., 0] > 230).sum() == 0


def test_overlay_colour_map_is_hot_and_transparent_outside_the_prior(scene):
    window, view, layer, _ = scene
    layer.apply_display(
        DisplayProps(opacity=1.0, fusion="overlay", colormap="hot", window=10.0, level=LEFT - 5.0)
    )
    img = grab(window)
    marker = img[img[..., 0] > 230]
    assert len(marker) > 20
    assert np.all(marker[:, 0] >= marker[:, 2])  # hot: red before blue
    # Move the prior far away: the layer is transparent there, the fixed marker shows.
    layer.set_transform(geometry.rigid_matrix((0, 0, 0), (500.0, 0.0, 0.0)))
    view.set_window_level(*MARKER_WL)
    assert (grab(window)[..., 0] > 230).sum() > 20


def test_unknown_mode_is_refused(scene):
    _, _, layer, _ = scene
    with pytest.raises(ValueError):
        layer.set_mode("difference")
