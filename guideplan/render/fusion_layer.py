"""A prior study drawn over a slice view, resliced through its registration transform.

The layer samples the moving volume on the *same* output grid as the slice view's own
reslice (same plane, origin, spacing, extent), so a fused pixel is exactly over the
planning-CT pixel it is compared with. The reslice axes chain

    plane (x, y, 0) -> LPS (planning CT) -> LPS (prior, via T) -> prior's local frame

i.e. ``lps_to_local(moving) @ T(fixed->moving) @ plane_to_lps``: no resampled copy of
the prior is ever made, and a nudge only changes a 4x4.

Modes: ``blend`` (grey or colour at an opacity), ``overlay`` (colour map whose low end
fades to transparent: PET uptake over CT), ``checker`` (prior in alternate square
tiles, fixed in the others; tiles are in patient millimetres so they stay put while
scrolling) and ``flicker`` (the prior fully on or off, :meth:`FusionLayer.toggle`).
Outside the prior's field of view the layer is transparent.
"""

from __future__ import annotations

import math

import numpy as np
from vtkmodules.util import numpy_support
from vtkmodules.vtkCommonCore import vtkLookupTable
from vtkmodules.vtkCommonDataModel import vtkImageData
from vtkmodules.vtkImagingCore import (
    vtkImageAppendComponents,
    vtkImageExtractComponents,
    vtkImageMapToColors,
    vtkImageReslice,
)
from vtkmodules.vtkImagingStencil import vtkImageStencil
from vtkmodules.vtkRenderingCore import vtkImageActor

from guideplan.core.volume import Volume
from guideplan.model.nodes import DisplayProps
from guideplan.render import vtk_image
from guideplan.render.slice_view import SliceView

FUSION_MODES = ("blend", "overlay", "checker", "flicker")
COLORMAPS = ("grey", "hot", "rainbow")
#: Height of the layer above the slice image (plane units): over the image, under the
#: crosshair (0.1) and the measurements (0.2).
LAYER_Z = 0.05
_LUT_SIZE = 256


class FusionLayer:
    """One moving volume fused into one :class:`SliceView`.

    Call :meth:`update` after the view moves (``SliceView.set_cursor``/``set_volume``);
    setters change the look and need a render, not an update.
    """

    def __init__(self, slice_view: SliceView) -> None:
        self.view = slice_view
        self.volume: Volume | None = None
        self.matrix = np.eye(4)
        self.mode = "blend"
        self.colormap = "grey"
        self.opacity = 0.5
        self.window, self.level = 400.0, 40.0
        self.checker_mm = 20.0
        self.visible = True
        self._flicker_on = True
        self._pattern_key: tuple | None = None

        self.reslice = vtkImageReslice()
        self.reslice.SetOutputDimensionality(2)
        self.reslice.SetInterpolationModeToLinear()
        self.reslice.AutoCropOutputOff()
        self.reslice.GenerateStencilOutputOn()  # where the prior has data
        self.reslice.SetInputData(vtk_image.to_vtk_image(np.zeros((1, 1, 1), np.int16), (1, 1, 1)))
        self.lut = vtkLookupTable()
        self.colors = vtkImageMapToColors()
        self.colors.SetInputConnection(self.reslice.GetOutputPort())
        self.colors.SetLookupTable(self.lut)
        self.colors.SetOutputFormatToRGBA()
        self.rgb = vtkImageExtractComponents()
        self.rgb.SetInputConnection(self.colors.GetOutputPort())
        self.rgb.SetComponents(0, 1, 2)
        self.lut_alpha = vtkImageExtractComponents()
        self.lut_alpha.SetInputConnection(self.colors.GetOutputPort())
        self.lut_alpha.SetComponents(3)
        self.pattern = vtkImageData()
        self.rgba = vtkImageAppendComponents()
        self.rgba.AddInputConnection(self.rgb.GetOutputPort())
        self.rgba.AddInputConnection(self.lut_alpha.GetOutputPort())
        self.clip = vtkImageStencil()
        self.clip.SetInputConnection(self.rgba.GetOutputPort())
        self.clip.SetStencilConnection(self.reslice.GetOutputPort(1))
        self.clip.SetBackgroundColor(0.0, 0.0, 0.0, 0.0)
        self.actor = vtkImageActor()
        self.actor.GetMapper().SetInputConnection(self.clip.GetOutputPort())
        self.actor.InterpolateOff()
        self.actor.SetPosition(0.0, 0.0, LAYER_Z)
        self.actor.VisibilityOff()
        self.view.renderer.AddViewProp(self.actor)
        self._apply_look()

    # -- content ------------------------------------------------------------------------
    def set_volume(self, volume: Volume | None, matrix: np.ndarray | None = None) -> None:
        """The prior to show (None hides the layer) and its fixed->moving transform.

        The window/level starts at the modality's default (bone window for CT, a
        percentile window for MR/PET); :meth:`set_window_level` changes it.
        """
        from guideplan.render.snapshot import default_window_level

        self.volume = volume
        if volume is not None:
            self.reslice.SetInputData(vtk_image.to_vtk_image(volume.array, volume.spacing))
            self.reslice.SetBackgroundLevel(float(volume.array.min()))
            self.set_window_level(*default_window_level(volume))
        if matrix is not None:
            self.matrix = np.array(matrix, dtype=float)
        self.update()

    def set_transform(self, matrix: np.ndarray) -> None:
        self.matrix = np.array(matrix, dtype=float)
        self.update()

    def update(self) -> None:
        """Follow the slice view's plane and grid (call after it moves)."""
        view = self.view
        if self.volume is None or view.volume is None or view.frame is None:
            self.actor.VisibilityOff()
            return
        view.follow(self.reslice, self.volume, self.matrix)
        if self.mode == "checker":
            self._update_pattern()
        self._apply_visibility()

    # -- look ---------------------------------------------------------------------------
    def set_mode(self, mode: str) -> None:
        if mode not in FUSION_MODES:
            raise ValueError(f"unknown fusion mode {mode!r}; choose one of {FUSION_MODES}")
        self.mode = mode
        self._flicker_on = True
        self._apply_look()
        self.update()

    def set_colormap(self, name: str) -> None:
        if name not in COLORMAPS:
            raise ValueError(f"unknown colour map {name!r}; choose one of {COLORMAPS}")
        self.colormap = name
        self._apply_look()

    def set_opacity(self, opacity: float) -> None:
        self.opacity = float(min(max(opacity, 0.0), 1.0))
        self._apply_look()

    def set_window_level(self, window: float, level: float) -> None:
        self.window, self.level = max(float(window), 1e-3), float(level)
        self._apply_look()

    def set_checker_size(self, tile_mm: float) -> None:
        self.checker_mm = max(float(tile_mm), 1.0)
        if self.mode == "checker":
            self._update_pattern()

    def set_visible(self, visible: bool) -> None:
        self.visible = bool(visible)
        self._apply_visibility()

    def toggle(self) -> bool:
        """Flicker: swap between prior shown and hidden; returns True when shown."""
        self._flicker_on = not self._flicker_on
        self._apply_visibility()
        return self._flicker_on

    def apply_display(self, display: DisplayProps) -> None:
        """Take the look from a VolumeNode's display properties."""
        self.mode = display.fusion if display.fusion in FUSION_MODES else "blend"
        self.colormap = display.colormap if display.colormap in COLORMAPS else "grey"
        self.opacity = float(display.opacity)
        if display.window is not None and display.level is not None:
            self.window, self.level = max(float(display.window), 1e-3), float(display.level)
        self.checker_mm = max(float(display.checker_mm), 1.0)
        self.visible = bool(display.visible)
        self._apply_look()
        self.update()

    def remove(self) -> None:
        self.view.renderer.RemoveViewProp(self.actor)

    # -- internals ----------------------------------------------------------------------
    def _apply_look(self) -> None:
        lo = self.level - self.window / 2
        _fill_lut(self.lut, self.colormap, fade=self.mode == "overlay")
        self.lut.SetTableRange(lo, lo + self.window)
        self.lut.Modified()
        solid = self.mode in ("checker", "flicker")
        self.actor.GetProperty().SetOpacity(1.0 if solid else self.opacity)
        alpha_port = (
            self.pattern if self.mode == "checker" and self._pattern_key is not None else None
        )
        self.rgba.RemoveAllInputs()
        self.rgba.AddInputConnection(self.rgb.GetOutputPort())
        if alpha_port is not None:
            self.rgba.AddInputData(alpha_port)
        else:
            self.rgba.AddInputConnection(self.lut_alpha.GetOutputPort())
        self._apply_visibility()

    def _apply_visibility(self) -> None:
        shown = self.visible and self.volume is not None and self.view.frame is not None
        if self.mode == "flicker":
            shown = shown and self._flicker_on
        self.actor.SetVisibility(shown)

    def _update_pattern(self) -> None:
        """Alpha tiles (255 prior / 0 fixed) on the view's output grid, in plane mm."""
        spacing = self.reslice.GetOutputSpacing()
        origin = self.reslice.GetOutputOrigin()
        extent = self.reslice.GetOutputExtent()
        key = (tuple(spacing), tuple(origin), tuple(extent), self.checker_mm)
        if key != self._pattern_key:
            nx, ny = extent[1] - extent[0] + 1, extent[3] - extent[2] + 1
            x = origin[0] + spacing[0] * np.arange(extent[0], extent[1] + 1)
            y = origin[1] + spacing[1] * np.arange(extent[2], extent[3] + 1)
            tx = np.floor(x / self.checker_mm).astype(int)
            ty = np.floor(y / self.checker_mm).astype(int)
            tiles = ((tx[None, :] + ty[:, None]) % 2 == 0).astype(np.uint8) * 255
            image = self.pattern
            image.SetExtent(extent[0], extent[1], extent[2], extent[3], 0, 0)
            image.SetSpacing(spacing)
            image.SetOrigin(origin)
            scalars = numpy_support.numpy_to_vtk(tiles.reshape(ny * nx), deep=True)
            scalars.SetName("alpha")
            image.GetPointData().SetScalars(scalars)
            image.Modified()
            self._pattern_key = key
            self._apply_look()


def _fill_lut(lut: vtkLookupTable, name: str, *, fade: bool) -> None:
    """Grey, hot (black-red-yellow-white) or rainbow (blue to red); ``fade``: the lowest
    quarter of the range ramps from transparent to opaque (overlay mode)."""
    lut.SetNumberOfTableValues(_LUT_SIZE)
    for n in range(_LUT_SIZE):
        t = n / (_LUT_SIZE - 1)
        if name == "hot":
            rgb = (min(1.0, 3 * t), min(1.0, max(0.0, 3 * t - 1)), min(1.0, max(0.0, 3 * t - 2)))
        elif name == "rainbow":
            rgb = _hsv_to_rgb((1.0 - t) * 2.0 / 3.0)
        else:
            rgb = (t, t, t)
        alpha = min(1.0, 4 * t) if fade else 1.0
        lut.SetTableValue(n, *rgb, alpha)


def _hsv_to_rgb(hue: float) -> tuple[float, float, float]:
    """Fully saturated, full-value colour of ``hue`` in [0, 1)."""
    h = (hue % 1.0) * 6.0
    i = math.floor(h)
    f = h - i
    return [(1, f, 0), (1 - f, 1, 0), (0, 1, f), (0, 1 - f, 1), (f, 0, 1), (1, 0, 1 - f)][
        int(i) % 6
    ]
