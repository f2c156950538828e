"""Offscreen drawing to PNG with the very pipelines the GUI uses.

With no display VTK picks EGL (or OSMesa); nothing here needs Qt or an X server.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
    # Skip the failed X connection attempt (and its warning) when there is no display.
    os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")

from vtkmodules.vtkIOImage import vtkPNGWriter
from vtkmodules.vtkRenderingCore import vtkRenderWindow, vtkWindowToImageFilter

from guideplan.core.resources import load_json
from guideplan.core.volume import Volume
from guideplan.render.slice_view import Overlay2D, SliceView
from guideplan.render.view3d import View3D, patient_bone_surface

VIEWS_2D = ("axial", "coronal", "sagittal")
ALL_VIEWS = (*VIEWS_2D, "3d")
#: Four-up layout viewports (x0, y0, x1, y1): axial top-left, coronal top-right,
#: sagittal bottom-left, 3D bottom-right — the GUI's layout.
FOUR_UP = {
    "axial": (0.0, 0.5, 0.5, 1.0),
    "coronal": (0.5, 0.5, 1.0, 1.0),
    "sagittal": (0.0, 0.0, 0.5, 0.5),
    "3d": (0.5, 0.0, 1.0, 0.5),
}


def render_volume(
    volume: Volume,
    view: str,
    out: str | Path,
    size: tuple[int, int] = (800, 800),
    cursor_lps: np.ndarray | None = None,
    window_level: tuple[float, float] | None = None,
    overlays: list[Overlay2D] | None = None,
    needles: list[tuple] | None = None,
) -> Path:
    """Draw ``view`` ('axial', 'coronal', 'sagittal', '3d' or 'all') of a volume to PNG.

    ``overlays``: measurements and needle paths for the 2D views; ``needles``: (entry,
    target, colour, radius_mm, selected) tuples for the 3D view.
    """
    if view not in (*ALL_VIEWS, "all"):
        raise ValueError(f"unknown view {view!r}; choose one of {', '.join(ALL_VIEWS)}, all")
    window = vtkRenderWindow()
    window.SetOffScreenRendering(1)
    window.SetMultiSamples(0)
    window.SetSize(*size)
    names = ALL_VIEWS if view == "all" else (view,)
    cursor = volume.center_lps() if cursor_lps is None else np.asarray(cursor_lps, float)
    w, level = window_level or default_window_level(volume)
    slice_views: dict[str, SliceView] = {}
    for name in names:
        if name == "3d":
            continue
        sv = SliceView(name)
        if view == "all":
            sv.renderer.SetViewport(*FOUR_UP[name])
        window.AddRenderer(sv.renderer)
        sv.set_volume(volume, cursor)
        sv.set_window_level(w, level)
        index, count = sv.slice_index()
        sv.set_corner_text(2, f"{name.capitalize()}  {index}/{count}")
        sv.set_corner_text(3, f"W {w:.0f}  L {level:.0f}")
        sv.set_overlays(overlays or [])
        slice_views[name] = sv
    if "3d" in names:
        v3 = View3D()
        if view == "all":
            v3.renderer.SetViewport(*FOUR_UP["3d"])
        window.AddRenderer(v3.renderer)
        v3.attach_render_window(window)
        v3.set_volume(volume)
        if volume.modality in ("CT", ""):
            settings = load_json("display_presets.json")["bone_surface"]
            surface, _ = patient_bone_surface(
                volume, settings["threshold_hu"], settings["downsample_max_voxels"]
            )
            v3.set_bone_surface(surface)
        v3.show_slice_planes(slice_views)
        v3.set_needles(needles or [])
        v3.reset_camera()
    for sv in slice_views.values():
        sv.reset_camera()
    window.Render()
    grab = vtkWindowToImageFilter()
    grab.SetInput(window)
    grab.ReadFrontBufferOff()
    grab.Update()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    writer = vtkPNGWriter()
    writer.SetFileName(str(out))
    writer.SetInputConnection(grab.GetOutputPort())
    writer.Write()
    window.Finalize()
    return out


def default_window_level(volume: Volume) -> tuple[float, float]:
    """Bone window for CT; a robust percentile window for other modalities."""
    if volume.modality == "CT" or volume.meta.get("units") == "HU":
        presets = load_json("display_presets.json")
        name = presets["default_window_level"]["CT"]
        wl = presets["window_level"][name]
        return float(wl["window"]), float(wl["level"])
    sample = volume.array[:: max(1, volume.array.shape[0] // 16)]
    lo, hi = np.percentile(sample, [1, 99.5])
    return float(max(hi - lo, 1.0)), float((hi + lo) / 2)
