"""The 3D view (no Qt): bone surface, the three slice planes, an orientation cube.

World coordinates are LPS millimetres. The bone surface is extracted in the volume's
local frame on a downsampled copy and moved to LPS with the volume's affine, so oblique
volumes are placed correctly. The orientation cube lives in a small corner renderer whose
camera follows the main camera, so it works offscreen as well as in the GUI.
"""

from __future__ import annotations

import numpy as np
from vtkmodules.vtkCommonCore import vtkLookupTable, vtkPoints, vtkUnsignedCharArray
from vtkmodules.vtkCommonDataModel import vtkCellArray, vtkPolyData
from vtkmodules.vtkCommonTransforms import vtkTransform
from vtkmodules.vtkFiltersCore import (
    vtkFlyingEdges3D,
    vtkPolyDataNormals,
    vtkTubeFilter,
    vtkWindowedSincPolyDataFilter,
)
from vtkmodules.vtkFiltersGeneral import vtkTransformFilter, vtkVertexGlyphFilter
from vtkmodules.vtkFiltersSources import vtkSphereSource
from vtkmodules.vtkImagingCore import vtkImageMapToColors
from vtkmodules.vtkRenderingAnnotation import vtkAnnotatedCubeActor
from vtkmodules.vtkRenderingCore import (
    vtkActor,
    vtkImageActor,
    vtkPolyDataMapper,
    vtkRenderer,
)

from guideplan.core.volume import Volume
from guideplan.render import vtk_image
from guideplan.render.slice_view import SliceView

BONE_COLOUR = (0.93, 0.89, 0.80)
BACKGROUND_TOP = (0.16, 0.17, 0.21)
BACKGROUND_BOTTOM = (0.03, 0.03, 0.05)


def coarse_body(volume: Volume, max_voxels: int = 4_000_000) -> tuple[Volume, Volume]:
    """(block-mean CT, body mask) on a grid of at most ``max_voxels``.

    Block means, not strided samples: thin plates (the CT table, cortex) would alias
    into stripes otherwise. Each block's mean sits at its block's centre, so the coarse
    origin moves by half a block. The body is what 3D picking stops at (not the table).
    Pure function (safe in a worker thread).
    """
    factor = 1
    while np.prod(volume.array.shape) / factor**3 > max_voxels:
        factor += 1
    from guideplan.processing.anatomy import body_mask  # SimpleITK: not needed at start-up

    array = _block_mean(volume.array, factor)
    spacing = tuple(s * factor for s in volume.spacing)
    origin = volume.index_to_physical(np.full(3, (factor - 1) / 2.0))
    small = Volume(array, spacing, tuple(origin), volume.direction, dict(volume.meta))
    return small, small.with_array(body_mask(small).astype(np.uint8))


def bone_surface(volume: Volume, threshold_hu: float, body: Volume | None = None) -> vtkPolyData:
    """Iso-surface of ``volume`` at ``threshold_hu`` inside ``body`` (a mask on the same
    grid), in LPS. Pure function of its inputs: it builds no rendering objects."""
    array = volume.array.astype(np.float32)
    if body is not None:  # only bone inside the patient: the table is outside
        array = np.where(body.array > 0, array, np.float32(-1000.0))
    image = vtk_image.to_vtk_image(array, volume.spacing)
    surface = vtkFlyingEdges3D()
    surface.SetInputData(image)
    surface.SetValue(0, float(threshold_hu))
    surface.ComputeNormalsOff()
    return smooth_surface_to_lps(surface.GetOutputPort(), volume, iterations=12)


def patient_bone_surface(
    volume: Volume, threshold_hu: float, max_voxels: int = 4_000_000
) -> tuple[vtkPolyData, Volume]:
    """The 3D view's bone surface (inside the patient, on a coarse grid) and the coarse
    body mask it used, kept for picking the skin in 3D."""
    small, body = coarse_body(volume, max_voxels)
    return bone_surface(small, threshold_hu, body), body


def smooth_surface_to_lps(port, volume: Volume, iterations: int = 12) -> vtkPolyData:
    """Smooth an iso-surface made in ``volume``'s local frame and move it to LPS (with
    normals); a standalone copy, safe to hand to the GUI thread."""
    smooth = vtkWindowedSincPolyDataFilter()
    smooth.SetInputConnection(port)
    smooth.SetNumberOfIterations(iterations)
    smooth.SetPassBand(0.1)
    smooth.NonManifoldSmoothingOn()
    smooth.NormalizeCoordinatesOn()
    transform = vtkTransform()
    transform.SetMatrix(vtk_image.to_vtk_matrix(vtk_image.local_to_lps(volume)))
    to_lps = vtkTransformFilter()
    to_lps.SetTransform(transform)
    to_lps.SetInputConnection(smooth.GetOutputPort())
    normals = vtkPolyDataNormals()
    normals.SetInputConnection(to_lps.GetOutputPort())
    normals.ConsistencyOn()
    normals.SplittingOff()
    normals.Update()
    out = vtkPolyData()
    out.ShallowCopy(normals.GetOutput())
    return out


def _tubes_actor(segments, radius: float, colour, opacity: float, sides: int = 12) -> vtkActor:
    """Straight tubes (a needle, its dashed extension) as one actor: one draw call."""
    points = vtkPoints()
    lines = vtkCellArray()
    for a, b in segments:
        ia = points.InsertNextPoint(*map(float, a))
        ib = points.InsertNextPoint(*map(float, b))
        lines.InsertNextCell(2)
        lines.InsertCellPoint(ia)
        lines.InsertCellPoint(ib)
    poly = vtkPolyData()
    poly.SetPoints(points)
    poly.SetLines(lines)
    tube = vtkTubeFilter()
    tube.SetInputData(poly)
    tube.SetRadius(radius)
    tube.SetNumberOfSides(sides)
    tube.CappingOn()
    return _coloured_actor(tube.GetOutputPort(), colour, opacity)


def _coloured_actor(port, colour, opacity: float = 1.0) -> vtkActor:
    mapper = vtkPolyDataMapper()
    mapper.SetInputConnection(port)
    actor = vtkActor()
    actor.SetMapper(mapper)
    actor.GetProperty().SetColor(*colour)
    actor.GetProperty().SetOpacity(opacity)
    return actor


def _sphere_actor(centre, radius: float, colour) -> vtkActor:
    sphere = vtkSphereSource()
    sphere.SetCenter(*map(float, centre))
    sphere.SetRadius(radius)
    sphere.SetThetaResolution(20)
    sphere.SetPhiResolution(20)
    return _coloured_actor(sphere.GetOutputPort(), colour)


def _window_level_lut(lut: vtkLookupTable, window: float, level: float) -> None:
    """Grey ramp over the window; dark values fade out so planes never hide the bone.

    Air is fully transparent, soft tissue faint, bright values (bone) nearly opaque.
    """
    lo, hi = level - window / 2.0, level + window / 2.0
    lut.SetTableRange(lo, hi)
    n = lut.GetNumberOfTableValues()
    for idx in range(n):
        grey = idx / (n - 1)
        alpha = float(np.clip((grey - 0.12) * 1.6, 0.0, 0.85))
        lut.SetTableValue(idx, grey, grey, grey, alpha)
    lut.Modified()


def _block_mean(array: np.ndarray, factor: int) -> np.ndarray:
    """Average over factor^3 blocks (edges cropped); float32."""
    if factor == 1:
        return array.astype(np.float32)
    k, j, i = (n // factor * factor for n in array.shape)
    blocks = (
        array[:k, :j, :i]
        .astype(np.float32)
        .reshape(k // factor, factor, j // factor, factor, i // factor, factor)
    )
    return blocks.mean(axis=(1, 3, 5))


class View3D:
    def __init__(self, renderer: vtkRenderer | None = None) -> None:
        self.renderer = renderer or vtkRenderer()
        self.renderer.GradientBackgroundOn()
        self.renderer.SetBackground(*BACKGROUND_BOTTOM)
        self.renderer.SetBackground2(*BACKGROUND_TOP)
        self.bone_actor = vtkActor()
        mapper = vtkPolyDataMapper()
        mapper.ScalarVisibilityOff()
        self.bone_actor.SetMapper(mapper)
        prop = self.bone_actor.GetProperty()
        prop.SetColor(*BONE_COLOUR)
        prop.SetSpecular(0.2)
        prop.SetSpecularPower(20)
        self.bone_actor.VisibilityOff()
        self.renderer.AddActor(self.bone_actor)
        self.plane_actors: dict[str, vtkImageActor] = {}
        self.plane_luts: dict[str, vtkLookupTable] = {}
        self._plane_colors: dict[str, vtkImageMapToColors] = {}
        self.slice_views: dict[str, SliceView] = {}
        self.cube_renderer = self._make_cube_renderer()
        self.volume: Volume | None = None
        self._needle_actors: list[vtkActor] = []
        self._needle_key: object = None
        self._score_actor: vtkActor | None = None
        self._lut_wl: dict[str, tuple[float, float]] = {}

    def attach_render_window(self, window) -> None:
        """Add the corner cube renderer to the window that shows this view."""
        window.SetNumberOfLayers(max(window.GetNumberOfLayers(), 2))
        if not window.HasRenderer(self.cube_renderer):
            window.AddRenderer(self.cube_renderer)
        self._sync_cube_viewport()

    def set_volume(self, volume: Volume) -> None:
        self.volume = volume
        self.reset_camera()

    def set_bone_surface(self, surface: vtkPolyData | None) -> None:
        if surface is None:
            self.bone_actor.VisibilityOff()
            return
        self.bone_actor.GetMapper().SetInputData(surface)
        self.bone_actor.VisibilityOn()

    def show_slice_planes(self, views: dict[str, SliceView]) -> None:
        """Show each 2D view's current slice as a textured plane in 3D (shared pipeline)."""
        for name, view in views.items():
            actor = self.plane_actors.get(name)
            if actor is None:
                # Own colour mapping: air is transparent so the planes do not hide the bone.
                lut = vtkLookupTable()
                lut.SetNumberOfTableValues(256)
                colors = vtkImageMapToColors()
                colors.SetInputConnection(view.reslice.GetOutputPort())
                colors.SetLookupTable(lut)
                colors.SetOutputFormatToRGBA()
                actor = vtkImageActor()
                actor.GetMapper().SetInputConnection(colors.GetOutputPort())
                actor.ForceTranslucentOn()
                self.renderer.AddActor(actor)
                self.plane_actors[name] = actor
                self.plane_luts[name] = lut
                self._plane_colors[name] = colors
            self.slice_views[name] = view
        self.update_slice_planes()

    def update_slice_planes(self) -> None:
        for name, actor in self.plane_actors.items():
            view = self.slice_views[name]
            if view.frame is None:
                actor.VisibilityOff()
                continue
            matrix = view.frame.plane_to_lps_matrix(view.depth)
            actor.SetUserMatrix(vtk_image.to_vtk_matrix(matrix))
            if self._lut_wl.get(name) != (view.window, view.level):
                self._lut_wl[name] = (view.window, view.level)
                _window_level_lut(self.plane_luts[name], view.window, view.level)
            actor.VisibilityOn()

    def set_needles(self, needles: list[tuple]) -> None:
        """Needles as tubes with a tip ball and the path's extension beyond the tip dashed.

        ``needles``: (entry, target, colour, radius_mm, selected) tuples in LPS.
        """
        key = tuple((tuple(e), tuple(t), tuple(c), r, s) for e, t, c, r, s in needles)
        if key == self._needle_key:
            return
        self._needle_key = key
        for actor in self._needle_actors:
            self.renderer.RemoveActor(actor)
        self._needle_actors = []
        for entry, target, colour, radius, selected in needles:
            entry = np.asarray(entry, float)
            target = np.asarray(target, float)
            length = float(np.linalg.norm(target - entry))
            if length == 0:
                continue
            direction = (target - entry) / length
            tube = _tubes_actor(
                [(entry, target)], max(radius, 0.4) * (1.4 if selected else 1.0), colour, 1.0, 16
            )
            tip = _sphere_actor(target, max(radius * 1.8, 1.2), colour)
            starts = np.arange(2.0, 30.0, 4.0)  # 2 mm dashes, 2 mm gaps, 30 mm ahead
            segments = [(target + direction * a, target + direction * (a + 2.0)) for a in starts]
            dashes = _tubes_actor(segments, max(radius, 0.4) * 0.6, colour, opacity=0.6)
            for actor in (tube, tip, dashes):
                self.renderer.AddActor(actor)
                self._needle_actors.append(actor)

    def set_skin_scores(self, points: np.ndarray | None, scores: np.ndarray | None) -> None:
        """Entry-point suggestions as dots on the skin: red (impossible) to green (best)."""
        if self._score_actor is not None:
            self.renderer.RemoveActor(self._score_actor)
            self._score_actor = None
        if points is None or len(points) == 0:
            return
        vtk_points = vtkPoints()
        colours = vtkUnsignedCharArray()
        colours.SetNumberOfComponents(3)
        colours.SetName("score")
        top = float(np.max(scores)) if np.any(scores > 0) else 1.0
        for point, score in zip(points, scores, strict=True):
            vtk_points.InsertNextPoint(*map(float, point))
            if score < 0:
                colours.InsertNextTuple3(200, 40, 40)
            else:
                t = float(np.clip(score / top, 0.0, 1.0))
                colours.InsertNextTuple3(int(255 * (1 - t)), int(90 + 165 * t), 40)
        poly = vtkPolyData()
        poly.SetPoints(vtk_points)
        poly.GetPointData().SetScalars(colours)
        glyphs = vtkVertexGlyphFilter()
        glyphs.SetInputData(poly)
        mapper = vtkPolyDataMapper()
        mapper.SetInputConnection(glyphs.GetOutputPort())
        actor = vtkActor()
        actor.SetMapper(mapper)
        actor.GetProperty().SetPointSize(5)
        actor.GetProperty().RenderPointsAsSpheresOn()
        self.renderer.AddActor(actor)
        self._score_actor = actor

    def ray_at(self, x: float, y: float) -> tuple[np.ndarray, np.ndarray]:
        """The line of sight through display pixel (x, y): (origin on the near plane,
        unit direction into the scene), LPS mm."""
        ends = []
        for depth in (0.0, 1.0):
            self.renderer.SetDisplayPoint(float(x), float(y), depth)
            self.renderer.DisplayToWorld()
            wx, wy, wz, w = self.renderer.GetWorldPoint()
            ends.append(np.array([wx, wy, wz]) / (w if w else 1.0))
        direction = ends[1] - ends[0]
        return ends[0], direction / np.linalg.norm(direction)

    def reset_camera(self) -> None:
        """Head up, looking at the side of the patient that faces up on the table: the
        front (the patient's left on the screen's right) for a supine scan, the back for
        a prone one (as the operator stands over a prone patient)."""
        camera = self.renderer.GetActiveCamera()
        centre = self.volume.center_lps() if self.volume is not None else np.zeros(3)
        position = (self.volume.meta.get("patient_position", "") if self.volume else "") or ""
        side = 1.0 if position.upper().endswith("P") else -1.0  # +y is posterior
        camera.SetFocalPoint(*centre)
        camera.SetPosition(*(centre + np.array([0.0, 800.0 * side, 0.0])))
        camera.SetViewUp(0.0, 0.0, 1.0)
        self.renderer.ResetCamera()
        camera.Zoom(1.3)
        self.renderer.ResetCameraClippingRange()

    # -- orientation cube ----------------------------------------------------------------
    def _make_cube_renderer(self) -> vtkRenderer:
        cube = vtkAnnotatedCubeActor()
        cube.SetXPlusFaceText("L")
        cube.SetXMinusFaceText("R")
        cube.SetYPlusFaceText("P")
        cube.SetYMinusFaceText("A")
        cube.SetZPlusFaceText("S")
        cube.SetZMinusFaceText("I")
        cube.SetFaceTextScale(0.55)
        cube.GetCubeProperty().SetColor(0.35, 0.4, 0.5)
        cube.GetTextEdgesProperty().SetColor(0.9, 0.9, 0.9)
        for prop in (
            cube.GetXPlusFaceProperty(),
            cube.GetXMinusFaceProperty(),
            cube.GetYPlusFaceProperty(),
            cube.GetYMinusFaceProperty(),
            cube.GetZPlusFaceProperty(),
            cube.GetZMinusFaceProperty(),
        ):
            prop.SetColor(0.98, 0.92, 0.6)
        renderer = vtkRenderer()
        renderer.SetLayer(1)
        renderer.InteractiveOff()
        renderer.AddActor(cube)
        self._cube = cube
        self.renderer.AddObserver("StartEvent", lambda *_: self._sync_cube_camera(renderer))
        return renderer

    def _sync_cube_viewport(self) -> None:
        x0, y0, x1, y1 = self.renderer.GetViewport()
        w = 0.2 * (x1 - x0)
        h = 0.2 * (y1 - y0)
        self.cube_renderer.SetViewport(x1 - w - 0.005, y0 + 0.005, x1 - 0.005, y0 + h + 0.005)

    def _sync_cube_camera(self, renderer: vtkRenderer) -> None:
        main = self.renderer.GetActiveCamera()
        cam = renderer.GetActiveCamera()
        direction = np.subtract(main.GetPosition(), main.GetFocalPoint())
        norm = np.linalg.norm(direction)
        if norm == 0:
            return
        cam.SetFocalPoint(0.0, 0.0, 0.0)
        cam.SetPosition(*(direction / norm * 4.0))
        cam.SetViewUp(*main.GetViewUp())
        renderer.ResetCameraClippingRange()
