"""Label maps over a slice view (fill colours from the label table) and as 3D surfaces.

The label array is resliced on the slice view's own output grid with nearest-neighbour
interpolation, so label voxels sit exactly on the CT voxels they were painted on. Edits
change the array in place: :meth:`LabelLayer.modified` tells VTK without copying it.
"""

from __future__ import annotations

import numpy as np
from vtkmodules.vtkCommonCore import vtkLookupTable
from vtkmodules.vtkCommonDataModel import vtkPolyData
from vtkmodules.vtkFiltersGeneral import vtkDiscreteFlyingEdges3D
from vtkmodules.vtkImagingCore import vtkImageMapToColors, vtkImageReslice
from vtkmodules.vtkRenderingCore import vtkActor, vtkImageActor, vtkPolyDataMapper

from guideplan.core.volume import Volume
from guideplan.render import vtk_image
from guideplan.render.slice_view import SliceView
from guideplan.render.view3d import smooth_surface_to_lps

LAYER_Z = 0.08  # above the image and a fused prior (0.05), under the crosshair (0.1)


def label_lut(colours: dict[int, tuple[float, float, float]], opacity: float) -> vtkLookupTable:
    """RGBA table indexed by label id; 0 and unknown ids transparent."""
    top = max([1, *colours])
    lut = vtkLookupTable()
    lut.SetNumberOfTableValues(top + 1)
    lut.SetTableRange(0, top)
    for index in range(top + 1):
        r, g, b = colours.get(index, (0.0, 0.0, 0.0))
        lut.SetTableValue(index, r, g, b, opacity if index in colours and index else 0.0)
    lut.Build()
    return lut


class LabelLayer:
    def __init__(self, slice_view: SliceView) -> None:
        self.view = slice_view
        self.volume: Volume | None = None
        self._image = None
        self.reslice = vtkImageReslice()
        self.reslice.SetOutputDimensionality(2)
        self.reslice.SetInterpolationModeToNearestNeighbor()
        self.reslice.SetBackgroundLevel(0.0)
        self.colors = vtkImageMapToColors()
        self.colors.SetInputConnection(self.reslice.GetOutputPort())
        self.colors.SetOutputFormatToRGBA()
        self.actor = vtkImageActor()
        self.actor.GetMapper().SetInputConnection(self.colors.GetOutputPort())
        self.actor.SetPosition(0.0, 0.0, LAYER_Z)
        self.actor.InterpolateOff()
        self.actor.VisibilityOff()
        slice_view.renderer.AddViewProp(self.actor)

    def set_labels(self, volume: Volume | None, colours: dict[int, tuple], opacity: float) -> None:
        """Show ``volume`` (a label array on the planning grid) with these colours."""
        if volume is None:
            self.volume = None
            self.actor.VisibilityOff()
            return
        if self.volume is None or self.volume.array is not volume.array:
            self._image = vtk_image.to_vtk_image(volume.array, volume.spacing)
            self.reslice.SetInputData(self._image)
        self.volume = volume
        self.colors.SetLookupTable(label_lut(colours, opacity))
        self.update()

    def modified(self) -> None:
        """The label array changed in place (a brush stroke, an undo)."""
        if self._image is not None:
            self._image.GetPointData().GetScalars().Modified()
            self._image.Modified()
            self.reslice.Modified()

    def update(self) -> None:
        view = self.view
        if self.volume is None or view.frame is None:
            self.actor.VisibilityOff()
            return
        view.follow(self.reslice, self.volume)
        self.actor.VisibilityOn()

    def remove(self) -> None:
        self.view.renderer.RemoveViewProp(self.actor)


def label_surfaces(volume: Volume, label_ids: list[int]) -> dict[int, vtkPolyData]:
    """Smooth surfaces of the given labels in LPS (pure: safe in a worker thread)."""
    image = vtk_image.to_vtk_image(volume.array, volume.spacing)
    out: dict[int, vtkPolyData] = {}
    for label in label_ids:
        if not np.any(volume.array == label):
            continue
        edges = vtkDiscreteFlyingEdges3D()
        edges.SetInputData(image)
        edges.SetValue(0, float(label))
        poly = smooth_surface_to_lps(edges.GetOutputPort(), volume, iterations=15)
        out[label] = poly
    return out


def surface_actor(poly: vtkPolyData, colour, opacity: float) -> vtkActor:
    mapper = vtkPolyDataMapper()
    mapper.SetInputData(poly)
    mapper.ScalarVisibilityOff()
    actor = vtkActor()
    actor.SetMapper(mapper)
    actor.GetProperty().SetColor(*colour)
    actor.GetProperty().SetOpacity(opacity)
    return actor
