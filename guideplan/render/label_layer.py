"""Label maps over a slice view (fill and/or outline, colours from the label table) and
as 3D surfaces.

The label array is resliced on the slice view's own output grid with nearest-neighbour
interpolation, so label voxels sit exactly on the CT voxels they were painted on. Edits
change the array in place: :meth:`LabelLayer.modified` tells VTK without copying it.

Outline mode: a small pipeline step (:class:`LabelOutline`) marks, on the resliced 2D
slice only, the label pixels with a 4-neighbour of another value, and shifts them to a
second half of the colour table drawn opaque. It runs inside the VTK pipeline, so every
re-slice (scroll, edit, undo) updates it, at the cost of a few numpy operations on one
slice.
"""

from __future__ import annotations

import numpy as np
from vtkmodules.util.numpy_support import numpy_to_vtk, vtk_to_numpy
from vtkmodules.util.vtkAlgorithm import VTKPythonAlgorithmBase
from vtkmodules.vtkCommonCore import VTK_UNSIGNED_SHORT, vtkLookupTable
from vtkmodules.vtkCommonDataModel import vtkImageData, vtkPolyData
from vtkmodules.vtkFiltersGeneral import vtkDiscreteFlyingEdges3D
from vtkmodules.vtkImagingCore import vtkImageMapToColors, vtkImageReslice
from vtkmodules.vtkRenderingCore import vtkActor, vtkImageActor, vtkPolyDataMapper

from guideplan.core.volume import Volume
from guideplan.render import vtk_image
from guideplan.render.slice_view import SliceView
from guideplan.render.view3d import smooth_surface_to_lps

LAYER_Z = 0.08  # above the image and a fused prior (0.05), under the crosshair (0.1)
DISPLAY_MODES = ("fill", "outline", "both")
#: Outline pixels are shifted by this much: label ids stay below it (uint8 / imported).
OUTLINE_OFFSET = 1024
OUTLINE_OPACITY = 1.0


def label_lut(
    colours: dict[int, tuple[float, float, float]], opacity: float, outline: bool = False
) -> vtkLookupTable:
    """RGBA table indexed by label id; 0 and unknown ids transparent.

    With ``outline``, entries ``OUTLINE_OFFSET + id`` hold the same colours, opaque (the
    outline pixels :class:`LabelOutline` produces)."""
    top = max([1, *colours])
    size = OUTLINE_OFFSET + top + 1 if outline else top + 1
    lut = vtkLookupTable()
    lut.SetNumberOfTableValues(size)
    lut.SetTableRange(0, size - 1)
    for index in range(size):
        lut.SetTableValue(index, 0.0, 0.0, 0.0, 0.0)
    for index, (r, g, b) in colours.items():
        if 0 < index <= top:
            lut.SetTableValue(index, r, g, b, opacity)
            if outline:
                lut.SetTableValue(OUTLINE_OFFSET + index, r, g, b, OUTLINE_OPACITY)
    lut.Build()
    return lut


def outline_slice(labels: np.ndarray, mode: str) -> np.ndarray:
    """A 2D label slice as drawn: ``fill`` as is; ``outline`` only the label pixels with a
    4-neighbour of another value (the slice's edge counts as background), shifted by
    ``OUTLINE_OFFSET``; ``both`` the fill with its outline pixels shifted."""
    lab = np.asarray(labels)
    if mode == "fill":
        return lab.astype(np.uint16, copy=False)
    edge = np.zeros(lab.shape, dtype=bool)
    edge[0, :] = edge[-1, :] = True
    edge[:, 0] = edge[:, -1] = True
    diff_rows = lab[1:, :] != lab[:-1, :]
    edge[1:, :] |= diff_rows
    edge[:-1, :] |= diff_rows
    diff_cols = lab[:, 1:] != lab[:, :-1]
    edge[:, 1:] |= diff_cols
    edge[:, :-1] |= diff_cols
    edge &= lab != 0
    out = lab.astype(np.uint16) if mode == "both" else np.zeros(lab.shape, dtype=np.uint16)
    out[edge] = lab[edge].astype(np.uint16) + OUTLINE_OFFSET
    return out


class LabelOutline(VTKPythonAlgorithmBase):
    """Pipeline step between the 2D reslice and the colour map (see the module doc)."""

    def __init__(self) -> None:
        super().__init__(
            nInputPorts=1, inputType="vtkImageData", nOutputPorts=1, outputType="vtkImageData"
        )
        self.mode = "fill"

    def set_mode(self, mode: str) -> None:
        if mode not in DISPLAY_MODES:
            raise ValueError(f"unknown label display mode {mode!r}")
        if mode != self.mode:
            self.mode = mode
            self.Modified()

    def RequestData(self, request, in_info, out_info) -> int:  # VTK's name
        source = vtkImageData.GetData(in_info[0])
        out = vtkImageData.GetData(out_info)
        out.CopyStructure(source)
        scalars = source.GetPointData().GetScalars()
        if scalars is None:
            return 1
        nx, ny, nz = source.GetDimensions()
        labels = vtk_to_numpy(scalars).reshape(nz, ny, nx)
        drawn = np.stack([outline_slice(plane, self.mode) for plane in labels])
        array = numpy_to_vtk(drawn.ravel(), deep=True, array_type=VTK_UNSIGNED_SHORT)
        array.SetName("labels")
        out.GetPointData().SetScalars(array)
        return 1


class LabelLayer:
    def __init__(self, slice_view: SliceView) -> None:
        self.view = slice_view
        self.volume: Volume | None = None
        self._image = None
        self._lut_key: tuple | None = None
        self.reslice = vtkImageReslice()
        self.reslice.SetOutputDimensionality(2)
        self.reslice.SetInterpolationModeToNearestNeighbor()
        self.reslice.SetBackgroundLevel(0.0)
        self.outline = LabelOutline()
        self.outline.SetInputConnection(self.reslice.GetOutputPort())
        self.colors = vtkImageMapToColors()
        self.colors.SetInputConnection(self.outline.GetOutputPort())
        self.colors.SetOutputFormatToRGBA()
        self.actor = vtkImageActor()
        self.actor.GetMapper().SetInputConnection(self.colors.GetOutputPort())
        self.actor.SetPosition(0.0, 0.0, LAYER_Z)
        self.actor.InterpolateOff()
        self.actor.VisibilityOff()
        slice_view.renderer.AddViewProp(self.actor)

    def set_labels(
        self,
        volume: Volume | None,
        colours: dict[int, tuple],
        opacity: float,
        mode: str = "fill",
    ) -> None:
        """Show ``volume`` (a label array on the planning grid) with these colours (the
        labels to show), as ``mode``: ``fill``, ``outline`` or ``both``."""
        if volume is None:
            self.volume = None
            self.actor.VisibilityOff()
            return
        if self.volume is None or self.volume.array is not volume.array:
            self._image = vtk_image.to_vtk_image(volume.array, volume.spacing)
            self.reslice.SetInputData(self._image)
        self.volume = volume
        self.outline.set_mode(mode)
        key = (tuple(sorted((k, tuple(v)) for k, v in colours.items())), opacity, mode)
        if key != self._lut_key:  # a brush dab redraws; the table stays
            self._lut_key = key
            self.colors.SetLookupTable(label_lut(colours, opacity, outline=mode != "fill"))
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
