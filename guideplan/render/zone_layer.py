"""Predicted treatment zones over a slice view: light fills with crisp outlines.

The zones come as one ``uint8`` flag array on the planning CT's grid, one bit per kind
of zone (:data:`ZONE_CHANNELS`: thermal, ethanol, cement, and the cryo isotherms
0 / -20 / -40 °C, which nest). The layer reslices it on its slice view's own output grid
(nearest neighbour, so zone voxels sit on the CT voxels) and draws every channel as a
translucent fill plus a one-pixel outline in its colour, so nested isotherm shells and
overlapping zones stay distinct.

It follows its view by itself: before each render it compares the view's reslice
(plane axes, depth, output grid) with what it drew last, and reslices again when they
differ, so oblique needle views (``SliceView.set_plane_axes``) show the zones without
the window having to tell it.

:func:`zone_surfaces` builds the 3D surfaces of the same channels on the zone's box
(pure VTK, safe in a worker thread).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from vtkmodules.util import numpy_support
from vtkmodules.vtkCommonDataModel import vtkImageData, vtkPolyData
from vtkmodules.vtkImagingCore import vtkImageReslice
from vtkmodules.vtkRenderingCore import vtkImageActor

from guideplan.core.volume import Volume
from guideplan.render.slice_view import SliceView

LAYER_Z = 0.085  # above label maps (0.08), under the crosshair (0.1)


@dataclass(frozen=True)
class ZoneChannel:
    bit: int
    name: str
    colour: tuple[float, float, float]
    fill_opacity: float  # 2D fill
    surface_opacity: float  # 3D surface


#: Drawn in this order (later over earlier): the warm cryo shell first, the cold core last.
ZONE_CHANNELS: tuple[ZoneChannel, ...] = (
    ZoneChannel(1, "ablation", (1.0, 0.55, 0.1), 0.28, 0.35),
    ZoneChannel(2, "ethanol", (0.75, 0.95, 0.3), 0.28, 0.35),
    ZoneChannel(4, "cement", (0.85, 0.9, 1.0), 0.40, 0.55),
    ZoneChannel(8, "cryo 0 °C", (0.45, 0.85, 1.0), 0.12, 0.2),
    ZoneChannel(16, "cryo -20 °C", (0.25, 0.5, 1.0), 0.18, 0.3),
    ZoneChannel(32, "cryo -40 °C", (0.55, 0.3, 1.0), 0.30, 0.6),
)
CHANNELS_BY_NAME = {c.name: c for c in ZONE_CHANNELS}


def _outline(mask: np.ndarray) -> np.ndarray:
    """The mask's edge pixels (4-neighbourhood)."""
    inner = mask.copy()
    inner[1:, :] &= mask[:-1, :]
    inner[:-1, :] &= mask[1:, :]
    inner[:, 1:] &= mask[:, :-1]
    inner[:, :-1] &= mask[:, 1:]
    return mask & ~inner


def compose_rgba(flags: np.ndarray, channels=ZONE_CHANNELS) -> np.ndarray:
    """RGBA (uint8) of a 2D flag image: each channel's fill, then its outline, 'over'."""
    rgb = np.zeros((*flags.shape, 3), np.float32)  # premultiplied
    alpha = np.zeros(flags.shape, np.float32)
    for channel in channels:
        mask = (flags & channel.bit) != 0
        if not mask.any():
            continue
        colour = np.asarray(channel.colour, np.float32)
        for region, a in ((mask, channel.fill_opacity), (_outline(mask), 0.95)):
            rgb[region] = colour * a + rgb[region] * (1.0 - a)
            alpha[region] = a + alpha[region] * (1.0 - a)
    out = np.zeros((*flags.shape, 4), np.uint8)
    shown = alpha > 0
    out[shown, :3] = np.clip(rgb[shown] / alpha[shown, None] * 255.0, 0, 255).astype(np.uint8)
    out[..., 3] = np.clip(alpha * 255.0, 0, 255).astype(np.uint8)
    return out


class ZoneLayer:
    """The zones of the plan over one slice view (standard or oblique plane)."""

    def __init__(self, slice_view: SliceView) -> None:
        self.view = slice_view
        self.volume: Volume | None = None
        self._image_in: vtkImageData | None = None
        self._version = 0
        self._drawn_key: tuple | None = None
        self.reslice = vtkImageReslice()
        self.reslice.SetOutputDimensionality(2)
        self.reslice.SetInterpolationModeToNearestNeighbor()
        self.reslice.SetBackgroundLevel(0.0)
        self.image = vtkImageData()
        self.actor = vtkImageActor()
        self.actor.GetMapper().SetInputData(self.image)
        self.actor.SetPosition(0.0, 0.0, LAYER_Z)
        self.actor.InterpolateOff()
        self.actor.VisibilityOff()
        slice_view.renderer.AddViewProp(self.actor)
        self._observer = slice_view.renderer.AddObserver("StartEvent", self._before_render)

    # -- content --------------------------------------------------------------------------
    def set_zones(self, flags: Volume | None) -> None:
        """Show ``flags`` (bits of :data:`ZONE_CHANNELS` on the planning grid); None hides."""
        self.volume = None if flags is None or not flags.array.any() else flags
        if self.volume is not None:
            from guideplan.render import vtk_image

            self._image_in = vtk_image.to_vtk_image(self.volume.array, self.volume.spacing)
            self.reslice.SetInputData(self._image_in)
        self._version += 1
        self.update()

    def modified(self) -> None:
        """Compatibility with LabelLayer: the next render redraws."""
        self._drawn_key = None

    def update(self) -> None:
        """Redraw now if the view's plane or the zones changed."""
        view = self.view
        if self.volume is None or view.frame is None:
            self.actor.VisibilityOff()
            self._drawn_key = None
            return
        key = self._view_key()
        if key == self._drawn_key:
            return
        view.follow(self.reslice, self.volume)
        self.reslice.Update()
        out = self.reslice.GetOutput()
        nx, ny, _ = out.GetDimensions()
        scalars = out.GetPointData().GetScalars()
        if scalars is None or nx * ny == 0:
            self.actor.VisibilityOff()
            return
        flags = numpy_support.vtk_to_numpy(scalars).reshape(ny, nx)
        rgba = compose_rgba(flags)
        image = vtkImageData()
        image.SetDimensions(nx, ny, 1)
        image.SetSpacing(out.GetSpacing())
        image.SetOrigin(out.GetOrigin())
        array = numpy_support.numpy_to_vtk(rgba.reshape(-1, 4), deep=True)
        array.SetName("rgba")
        image.GetPointData().SetScalars(array)
        self.image = image
        self.actor.GetMapper().SetInputData(image)
        self.actor.SetVisibility(bool(rgba[..., 3].any()))
        self._drawn_key = key

    def _view_key(self) -> tuple:
        r = self.view.reslice
        axes = r.GetResliceAxes()
        m = tuple(axes.GetElement(i, j) for i in range(4) for j in range(4)) if axes else ()
        return (
            self._version,
            m,
            tuple(r.GetOutputOrigin()),
            tuple(r.GetOutputExtent()),
            tuple(r.GetOutputSpacing()),
        )

    def _before_render(self, *_args) -> None:
        if self.volume is not None:
            self.update()

    def remove(self) -> None:
        self.view.renderer.RemoveObserver(self._observer)
        self.view.renderer.RemoveViewProp(self.actor)


# -- 3D ------------------------------------------------------------------------------------
def box_volume(
    volume: Volume, box: tuple[slice, slice, slice], mask: np.ndarray, pad: int = 2
) -> Volume:
    """``mask`` (on ``box`` of ``volume``'s grid, k/j/i slices) as a small uint8 Volume
    of its own, padded with ``pad`` empty voxels so that its surface closes."""
    start = np.array([s.start for s in box], float) - pad
    array = np.zeros(tuple(n + 2 * pad for n in mask.shape), np.uint8)
    array[pad:-pad, pad:-pad, pad:-pad] = mask
    origin = volume.index_to_physical(start[::-1])
    return Volume(array, volume.spacing, tuple(np.ravel(origin)), volume.direction, {})


def zone_surfaces(
    volume: Volume, masks: list[tuple[str, tuple[slice, slice, slice], np.ndarray]]
) -> list[tuple[ZoneChannel, vtkPolyData]]:
    """Smooth LPS surfaces of zone masks ((channel name, box, mask on the box) each),
    with their channel; empty masks give nothing (pure: safe in a worker thread)."""
    from guideplan.render.label_layer import label_surfaces

    out = []
    for name, box, mask in masks:
        if not mask.any():
            continue
        polys = label_surfaces(box_volume(volume, box, mask), [1])
        if 1 in polys:
            out.append((CHANNELS_BY_NAME[name], polys[1]))
    return out
