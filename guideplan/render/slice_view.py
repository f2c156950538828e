"""A 2D slice view as a VTK pipeline (no Qt): the same code draws the GUI and snapshots.

The volume is resliced on a true LPS plane (axial, coronal or sagittal) through the
cursor, whatever the acquisition's orientation. The plane's own 2D coordinates are
screen coordinates: +x is screen right, +y screen up (radiological convention, see
``VIEW_AXES``). Overlays: orientation letters on every edge, corner annotations, the
crosshair, a scale bar, and measurements.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from vtkmodules.vtkCommonCore import vtkPoints
from vtkmodules.vtkCommonDataModel import vtkCellArray, vtkPolyData
from vtkmodules.vtkImagingColor import vtkImageMapToWindowLevelColors
from vtkmodules.vtkImagingCore import vtkImageReslice
from vtkmodules.vtkRenderingAnnotation import vtkCornerAnnotation
from vtkmodules.vtkRenderingCore import (
    vtkActor,
    vtkActor2D,
    vtkCoordinate,
    vtkImageActor,
    vtkPolyDataMapper,
    vtkPolyDataMapper2D,
    vtkRenderer,
    vtkTextActor,
)

from guideplan.core import geometry
from guideplan.core.volume import Volume
from guideplan.render import vtk_image
from guideplan.render.vtk_image import PlaneFrame

VIEW_COLOURS = {
    "axial": (0.85, 0.3, 0.3),
    "coronal": (0.3, 0.7, 0.3),
    "sagittal": (0.85, 0.7, 0.25),
    "3d": (0.5, 0.6, 0.9),
}
LETTER_COLOUR = (0.95, 0.9, 0.55)
TEXT_COLOUR = (0.85, 0.85, 0.85)
BACKGROUND = (0.0, 0.0, 0.0)
#: Scrolling "forward" (wheel up, arrow up) moves toward S in axial, A in coronal and L in
#: sagittal views, as on common workstations: +1 where that is the plane's +w.
SCROLL_SIGN = {"axial": -1, "coronal": 1, "sagittal": 1}


@dataclass
class Overlay2D:
    """A polyline (2 or 3 LPS points) with a label, e.g. a ruler or an angle.

    ``needle=True``: an entry -> target path, drawn projected on every plane (full where
    it lies in the plane, faint elsewhere), with its end points and the point where it
    crosses the plane marked.
    """

    points: list[tuple[float, float, float]]
    label: str
    color: tuple[float, float, float] = (1.0, 0.85, 0.2)
    needle: bool = False
    selected: bool = False


class SliceView:
    def __init__(self, view: str, renderer: vtkRenderer | None = None) -> None:
        if view not in vtk_image.VIEW_AXES:
            raise ValueError(f"unknown view {view!r}")
        self.view = view
        self.renderer = renderer or vtkRenderer()
        # 2D layers blend in the order they were added (image, fusion, labels, zones,
        # overlays); order-independent transparency would add full-frame passes that
        # cost more than the rest of the view with software OpenGL.
        self.renderer.UseOITOff()
        self.renderer.SetBackground(*BACKGROUND)
        self.volume: Volume | None = None
        self.frame: PlaneFrame | None = None
        self.depth = 0.0
        self.cursor = np.zeros(3)
        self.window, self.level = 1800.0, 400.0
        self.show_crosshair = True
        self.custom_axes = False
        self._corner_text: dict[int, str] = {}
        self._overlay_key: object = None
        self._plane_centre = (0.0, 0.0)  # in-plane middle of the image, mm

        self.reslice = vtkImageReslice()
        self.reslice.SetOutputDimensionality(2)
        self.reslice.SetInterpolationModeToLinear()
        self.reslice.SetBackgroundLevel(-1024.0)
        self.reslice.AutoCropOutputOff()
        self.reslice.SetInputData(vtk_image.to_vtk_image(np.zeros((1, 1, 1), np.int16), (1, 1, 1)))
        self.colors = vtkImageMapToWindowLevelColors()
        self.colors.SetInputConnection(self.reslice.GetOutputPort())
        self.colors.SetOutputFormatToLuminance()
        self.image_actor = vtkImageActor()
        self.image_actor.GetMapper().SetInputConnection(self.colors.GetOutputPort())
        self.image_actor.InterpolateOff()
        self.image_actor.VisibilityOff()
        self.renderer.AddViewProp(self.image_actor)

        self.letters = self._make_letters()
        self.corners = vtkCornerAnnotation()
        self.corners.SetMaximumFontSize(15)
        self.corners.SetLinearFontScaleFactor(2)
        self.corners.SetNonlinearFontScaleFactor(1)
        self.corners.GetTextProperty().SetColor(*TEXT_COLOUR)
        self.renderer.AddViewProp(self.corners)
        self.crosshair = self._make_crosshair()
        self.scale_bar, self.scale_text = self._make_scale_bar()
        self._overlay_actors: list = []
        self.renderer.AddObserver("StartEvent", lambda *_: self._update_scale_bar())

    # -- content ------------------------------------------------------------------------
    def set_volume(self, volume: Volume, cursor: np.ndarray | None = None) -> None:
        self.volume = volume
        image = vtk_image.to_vtk_image(volume.array, volume.spacing)
        self.reslice.SetInputData(image)
        self.reslice.SetBackgroundLevel(float(volume.array.min()))
        self.custom_axes = False
        self._set_frame(PlaneFrame.for_view(self.view, volume.center_lps()), cursor)
        self.reset_camera()

    def set_plane_axes(
        self, u: np.ndarray | None, v: np.ndarray | None = None, cursor: np.ndarray | None = None
    ) -> None:
        """Show an oblique plane (screen right ``u``, screen up ``v``, LPS vectors), e.g.
        a needle view; ``None`` returns to the view's standard plane."""
        if self.volume is None:
            return
        centre = self.volume.center_lps()
        if u is None:
            frame = PlaneFrame.for_view(self.view, centre)
        else:
            u = np.asarray(u, float) / np.linalg.norm(u)
            v = np.asarray(v, float) - (np.asarray(v, float) @ u) * u
            v /= np.linalg.norm(v)
            frame = PlaneFrame(u=u, v=v, w=np.cross(u, v), origin=centre)
        self.custom_axes = u is not None
        self._set_frame(frame, self.cursor if cursor is None else cursor)
        self.reset_camera()

    def _set_frame(self, frame: PlaneFrame, cursor: np.ndarray | None) -> None:
        volume = self.volume
        assert volume is not None
        self.frame = frame
        self._update_letters()
        lo, hi = vtk_image.volume_extent_in_plane(volume, self.frame)
        self._plane_centre = ((lo[0] + hi[0]) / 2.0, (lo[1] + hi[1]) / 2.0)
        spacing = float(min(volume.spacing))
        nx = math.ceil((hi[0] - lo[0]) / spacing) + 1
        ny = math.ceil((hi[1] - lo[1]) / spacing) + 1
        self.reslice.SetOutputSpacing(spacing, spacing, 1.0)
        self.reslice.SetOutputOrigin(float(lo[0]), float(lo[1]), 0.0)
        self.reslice.SetOutputExtent(0, nx - 1, 0, ny - 1, 0, 0)
        self._depth_range = (float(lo[2]), float(hi[2]))
        self.step_mm = vtk_image.slice_step_mm(volume, self.frame.w)
        self.image_actor.VisibilityOn()
        self.set_cursor(volume.center_lps() if cursor is None else cursor)

    def set_cursor(self, lps: np.ndarray) -> None:
        """Move the plane through ``lps`` and put the crosshair on it."""
        if self.frame is None:
            return
        self.cursor = np.asarray(lps, dtype=float)
        x, y, depth = self.frame.to_plane(self.cursor)
        self.depth = float(np.clip(depth, *self._depth_range))
        self._update_reslice_axes()
        self._update_crosshair(x, y)

    def scroll(self, steps: int) -> np.ndarray:
        """Move the plane by whole slices (positive: toward S, A or L); new cursor."""
        if self.frame is None:
            return self.cursor
        sign = 1 if self.custom_axes else SCROLL_SIGN[self.view]
        self.set_cursor(self.cursor + sign * steps * self.step_mm * self.frame.w)
        return self.cursor

    def set_window_level(self, window: float, level: float) -> None:
        self.window, self.level = max(float(window), 1.0), float(level)
        self.colors.SetWindow(self.window)
        self.colors.SetLevel(self.level)

    def slice_index(self) -> tuple[int, int]:
        """(1-based slice number, slice count) along the view normal."""
        lo, hi = self._depth_range
        n = math.floor((hi - lo) / self.step_mm + 0.5) + 1
        forward = 1 if self.custom_axes else SCROLL_SIGN[self.view]
        from_start = self.depth - lo if forward > 0 else hi - self.depth
        index = math.floor(from_start / self.step_mm + 0.5) + 1  # no round-half-to-even
        return int(min(max(index, 1), n)), int(n)

    def set_corner_text(self, corner: int, text: str) -> bool:
        """Corners: 0 lower-left, 1 lower-right, 2 upper-left, 3 upper-right. True when
        the text changed (the view needs drawing)."""
        if self._corner_text.get(corner) == text:  # new text = a new texture to rasterise
            return False
        self._corner_text[corner] = text
        self.corners.SetText(corner, text)
        return True

    def set_overlays(self, overlays: list[Overlay2D]) -> None:
        """Measurements and other 2D annotations; shown when near the current plane."""
        key = (
            self.depth,
            tuple(self.frame.w) if self.frame is not None else None,
            tuple(
                (tuple(map(tuple, o.points)), o.label, o.color, o.needle, o.selected)
                for o in overlays
            ),
        )
        if key == self._overlay_key:
            return  # unchanged: keep the actors (and their rasterised labels)
        self._overlay_key = key
        for actor in self._overlay_actors:
            self.renderer.RemoveViewProp(actor)
        self._overlay_actors = []
        if self.frame is None:
            return
        tolerance = max(self.step_mm, 0.5) * 0.6
        for overlay in overlays:
            plane = np.array([self.frame.to_plane(p) for p in overlay.points])
            if overlay.needle and len(plane) == 2:
                self._add_needle(plane, overlay, tolerance)
                continue
            if len(plane) == 0 or np.any(np.abs(plane[:, 2] - self.depth) > tolerance):
                continue
            line = _polyline_actor(plane[:, :2], overlay.color, z=0.2, width=2.0)
            self.renderer.AddViewProp(line)
            self._overlay_actors.append(line)
            label = vtkTextActor()
            label.SetInput(overlay.label)
            label.GetTextProperty().SetColor(*overlay.color)
            label.GetTextProperty().SetFontSize(14)
            label.GetTextProperty().SetShadow(True)
            coord = label.GetPositionCoordinate()
            coord.SetCoordinateSystemToWorld()
            anchor = plane[-1] if overlay.label.endswith("°") is False else plane[1]
            coord.SetValue(float(anchor[0]) + 2.0, float(anchor[1]) + 2.0, 0.3)
            self.renderer.AddViewProp(label)
            self._overlay_actors.append(label)

    def _add_needle(self, plane: np.ndarray, overlay: Overlay2D, tolerance: float) -> None:
        """Projection of a needle path with markers; solid where it lies in the plane."""
        in_plane = bool(np.all(np.abs(plane[:, 2] - self.depth) <= tolerance))
        width = 3.0 if overlay.selected else 2.0
        line = _polyline_actor(plane[:, :2], overlay.color, z=0.25, width=width)
        line.GetProperty().SetOpacity(1.0 if in_plane else 0.45)
        self.renderer.AddViewProp(line)
        self._overlay_actors.append(line)
        entry, target = plane
        for point, radius in ((entry, 2.5), (target, 3.5)):
            near = abs(point[2] - self.depth) <= tolerance
            ring = _polyline_actor(_circle(point[:2], radius), overlay.color, z=0.3, width=2.0)
            ring.GetProperty().SetOpacity(1.0 if near else 0.35)
            self.renderer.AddViewProp(ring)
            self._overlay_actors.append(ring)
        depth_span = target[2] - entry[2]
        if not in_plane and abs(depth_span) > 1e-6:
            t = (self.depth - entry[2]) / depth_span
            if 0.0 <= t <= 1.0:  # the needle pierces this plane: mark where
                cross = entry[:2] + t * (target[:2] - entry[:2])
                dot = _polyline_actor(_circle(cross, 1.5), (1.0, 1.0, 1.0), z=0.35, width=3.0)
                self.renderer.AddViewProp(dot)
                self._overlay_actors.append(dot)
        if overlay.label:
            label = vtkTextActor()
            label.SetInput(overlay.label)
            label.GetTextProperty().SetColor(*overlay.color)
            label.GetTextProperty().SetFontSize(13)
            label.GetTextProperty().SetShadow(True)
            # The text runs from the entry toward the middle of the image, so that an
            # entry near the view's edge keeps its name on screen.
            right = float(entry[0]) > self._plane_centre[0]
            above = float(entry[1]) > self._plane_centre[1]
            prop = label.GetTextProperty()
            prop.SetJustification(2 if right else 0)  # VTK_TEXT_RIGHT / LEFT
            prop.SetVerticalJustification(2 if above else 0)  # TOP / BOTTOM
            coord = label.GetPositionCoordinate()
            coord.SetCoordinateSystemToWorld()
            dx, dy = (-4.0 if right else 4.0), (-4.0 if above else 4.0)
            coord.SetValue(float(entry[0]) + dx, float(entry[1]) + dy, 0.3)
            self.renderer.AddViewProp(label)
            self._overlay_actors.append(label)

    # -- camera --------------------------------------------------------------------------
    def reset_camera(self) -> None:
        if self.frame is None or self.volume is None:
            return
        lo, hi = vtk_image.volume_extent_in_plane(self.volume, self.frame)
        cx, cy = (lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2
        camera = self.renderer.GetActiveCamera()
        camera.ParallelProjectionOn()
        camera.SetFocalPoint(cx, cy, 0.0)
        camera.SetPosition(cx, cy, 1000.0)
        camera.SetViewUp(0.0, 1.0, 0.0)
        camera.SetClippingRange(1.0, 2000.0)
        width, height = hi[0] - lo[0], hi[1] - lo[1]
        aspect = self._viewport_aspect()
        camera.SetParallelScale(0.52 * max(height, width / max(aspect, 1e-3)))

    def zoom(self, factor: float) -> None:
        camera = self.renderer.GetActiveCamera()
        camera.SetParallelScale(camera.GetParallelScale() / factor)

    def pan(self, dx_mm: float, dy_mm: float) -> None:
        camera = self.renderer.GetActiveCamera()
        fx, fy, fz = camera.GetFocalPoint()
        px, py, pz = camera.GetPosition()
        camera.SetFocalPoint(fx - dx_mm, fy - dy_mm, fz)
        camera.SetPosition(px - dx_mm, py - dy_mm, pz)

    def mm_per_pixel(self) -> float:
        height_px = max(self._viewport_size()[1], 1)
        return 2.0 * self.renderer.GetActiveCamera().GetParallelScale() / height_px

    def display_to_lps(self, x: float, y: float) -> np.ndarray | None:
        """LPS point under a display pixel (VTK display coordinates: origin bottom-left)."""
        if self.frame is None:
            return None
        self.renderer.SetDisplayPoint(float(x), float(y), 0.0)
        self.renderer.DisplayToWorld()
        wx, wy, _, w = self.renderer.GetWorldPoint()
        if w:
            wx, wy = wx / w, wy / w
        return self.frame.to_lps(wx, wy, self.depth)

    def lps_to_display(self, lps: np.ndarray) -> tuple[float, float]:
        assert self.frame is not None
        x, y, _ = self.frame.to_plane(lps)
        coord = vtkCoordinate()
        coord.SetCoordinateSystemToWorld()
        coord.SetValue(float(x), float(y), 0.0)
        dx, dy = coord.GetComputedDoubleDisplayValue(self.renderer)
        return float(dx), float(dy)

    def follow(
        self, reslice: vtkImageReslice, volume: Volume, fixed_to_moving: np.ndarray | None = None
    ) -> None:
        """Make another reslice (a fused prior, a label map) sample ``volume`` on this
        view's plane and output grid, through ``fixed_to_moving`` (LPS -> LPS) if given,
        so its pixels sit exactly over this view's."""
        reslice.SetOutputSpacing(self.reslice.GetOutputSpacing())
        reslice.SetOutputOrigin(self.reslice.GetOutputOrigin())
        reslice.SetOutputExtent(self.reslice.GetOutputExtent())
        plane_to_lps = self.frame.plane_to_lps_matrix(self.depth)
        if fixed_to_moving is not None:
            plane_to_lps = fixed_to_moving @ plane_to_lps
        lps_to_local = np.linalg.inv(vtk_image.local_to_lps(volume))
        reslice.SetResliceAxes(vtk_image.to_vtk_matrix(lps_to_local @ plane_to_lps))
        reslice.Modified()

    # -- internals -----------------------------------------------------------------------
    def _update_reslice_axes(self) -> None:
        assert self.volume is not None and self.frame is not None
        plane_to_lps = self.frame.plane_to_lps_matrix(self.depth)
        lps_to_local = np.linalg.inv(vtk_image.local_to_lps(self.volume))
        self.reslice.SetResliceAxes(vtk_image.to_vtk_matrix(lps_to_local @ plane_to_lps))
        self.reslice.Modified()

    def _update_letters(self) -> None:
        """Edge letters from the plane's axes: exact for standard views, dominant-first
        pairs (e.g. 'LA') for oblique ones."""
        if self.frame is None:
            return
        u, v = self.frame.u, self.frame.v
        for side, vector in (("left", -u), ("right", u), ("top", v), ("bottom", -v)):
            self.letters[side].SetInput(geometry.closest_axis_letters(vector)[:2])

    def _make_letters(self) -> dict[str, vtkTextActor]:
        u, v = vtk_image.VIEW_AXES[self.view]
        letters = {
            "left": geometry.closest_axis_letters(-u),
            "right": geometry.closest_axis_letters(u),
            "top": geometry.closest_axis_letters(v),
            "bottom": geometry.closest_axis_letters(-v),
        }
        placement = {
            "left": (0.012, 0.5, 0, 1),
            "right": (0.988, 0.5, 2, 1),
            "top": (0.5, 0.985, 1, 2),
            "bottom": (0.5, 0.015, 1, 0),
        }
        actors = {}
        for side, text in letters.items():
            actor = vtkTextActor()
            actor.SetInput(text)
            prop = actor.GetTextProperty()
            prop.SetFontSize(18)
            prop.BoldOn()
            prop.SetColor(*LETTER_COLOUR)
            prop.SetShadow(True)
            x, y, hjust, vjust = placement[side]
            (
                prop.SetJustificationToLeft,
                prop.SetJustificationToCentered,
                prop.SetJustificationToRight,
            )[hjust]()
            (
                prop.SetVerticalJustificationToBottom,
                prop.SetVerticalJustificationToCentered,
                prop.SetVerticalJustificationToTop,
            )[vjust]()
            actor.GetPositionCoordinate().SetCoordinateSystemToNormalizedViewport()
            actor.GetPositionCoordinate().SetValue(x, y)
            self.renderer.AddViewProp(actor)
            actors[side] = actor
        return actors

    def _make_crosshair(self) -> dict[str, vtkActor]:
        # In the axial view the vertical line is the sagittal plane, the horizontal one
        # the coronal plane, etc.: each line has the colour of the view it stands for.
        others = {
            "axial": ("sagittal", "coronal"),
            "coronal": ("sagittal", "axial"),
            "sagittal": ("coronal", "axial"),
        }[self.view]
        actors = {}
        for name, colour_of in zip(("vertical", "horizontal"), others, strict=True):
            actor = _polyline_actor(np.zeros((2, 2)), VIEW_COLOURS[colour_of], z=0.1, width=1.0)
            actor.GetProperty().SetOpacity(0.7)
            self.renderer.AddViewProp(actor)
            actors[name] = actor
        return actors

    def _update_crosshair(self, x: float, y: float) -> None:
        big = 1e4
        for name, pts in (
            ("vertical", [(x, -big), (x, big)]),
            ("horizontal", [(-big, y), (big, y)]),
        ):
            actor = self.crosshair[name]
            _set_polyline(actor.GetMapper().GetInput(), np.array(pts), z=0.1)
            actor.SetVisibility(self.show_crosshair)

    def _make_scale_bar(self) -> tuple[vtkActor2D, vtkTextActor]:
        poly = vtkPolyData()
        mapper = vtkPolyDataMapper2D()
        mapper.SetInputData(poly)
        bar = vtkActor2D()
        bar.SetMapper(mapper)
        bar.GetProperty().SetColor(*TEXT_COLOUR)
        bar.GetProperty().SetLineWidth(2)
        text = vtkTextActor()
        text.GetTextProperty().SetColor(*TEXT_COLOUR)
        text.GetTextProperty().SetFontSize(12)
        text.GetTextProperty().SetJustificationToCentered()
        self.renderer.AddViewProp(bar)
        self.renderer.AddViewProp(text)
        return bar, text

    def _update_scale_bar(self) -> None:
        width_px, _height_px = self._viewport_size()
        if self.frame is None or width_px < 20:
            self.scale_bar.VisibilityOff()
            self.scale_text.VisibilityOff()
            return
        mm_per_px = self.mm_per_pixel()
        target_mm = 0.18 * width_px * mm_per_px
        length_mm = _nice_length(target_mm)
        length_px = length_mm / mm_per_px
        x1 = width_px - 50
        x0 = x1 - length_px
        y = 40
        ticks = [(x0, y + 6), (x0, y), (x1, y), (x1, y + 6)]
        _set_polyline(self.scale_bar.GetMapper().GetInput(), np.array(ticks), z=0.0)
        self.scale_text.SetInput(
            f"{length_mm:g} mm" if length_mm < 10 else f"{length_mm / 10:g} cm"
        )
        self.scale_text.SetPosition((x0 + x1) / 2, y + 8)
        self.scale_bar.VisibilityOn()
        self.scale_text.VisibilityOn()

    def _viewport_size(self) -> tuple[int, int]:
        window = self.renderer.GetRenderWindow()
        if window is None:
            return (0, 0)
        w, h = window.GetSize()
        x0, y0, x1, y1 = self.renderer.GetViewport()
        return int(w * (x1 - x0)), int(h * (y1 - y0))

    def _viewport_aspect(self) -> float:
        w, h = self._viewport_size()
        return w / h if w and h else 1.0


def _nice_length(target: float) -> float:
    """The largest 1-2-5 x 10^n length not above ``target``."""
    if target <= 0:
        return 1.0
    exponent = math.floor(math.log10(target))
    for mantissa in (5, 2, 1):
        value = mantissa * 10**exponent
        if value <= target:
            return float(value)
    return float(10**exponent)


def _circle(centre: np.ndarray, radius: float, n: int = 24) -> np.ndarray:
    angles = np.linspace(0.0, 2.0 * np.pi, n + 1)
    return np.column_stack(
        [centre[0] + radius * np.cos(angles), centre[1] + radius * np.sin(angles)]
    )


def _polyline_actor(points_2d: np.ndarray, color, z: float, width: float) -> vtkActor:
    poly = vtkPolyData()
    _set_polyline(poly, points_2d, z)
    mapper = vtkPolyDataMapper()
    mapper.SetInputData(poly)
    actor = vtkActor()
    actor.SetMapper(mapper)
    prop = actor.GetProperty()
    prop.SetColor(*color)
    prop.SetLineWidth(width)
    prop.LightingOff()
    return actor


def _set_polyline(poly: vtkPolyData, points_2d: np.ndarray, z: float) -> None:
    points = vtkPoints()
    for x, y in points_2d:
        points.InsertNextPoint(float(x), float(y), z)
    cells = vtkCellArray()
    cells.InsertNextCell(len(points_2d))
    for idx in range(len(points_2d)):
        cells.InsertCellPoint(idx)
    poly.SetPoints(points)
    poly.SetLines(cells)
    poly.Modified()
