"""Trajectory planning speed: one drag step of a needle end in the real window, and a
full entry suggestion over the skin.

Drag step = what happens per mouse-move event while dragging an entry point: the
undoable command, every readout (lengths, angles, tissues, distances, warnings), the
overlays of the three slice views and the 3D needle, and the render of all four views.
Target: under 33 ms per step (30 frames/s). Suggestion target: under 3 s on a
512x512x300 CT (the sample CT resampled onto such a grid).

Usage: bash scripts/with-display.sh python benchmarks/bench_trajectory.py
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CASE = ROOT / "sample_data" / "case01_l2_lytic_rfa_cement"


def bench_drag(steps: int = 60) -> dict:
    from PySide6.QtWidgets import QApplication

    from guideplan.ui.main_window import MainWindow

    app = QApplication.instance() or QApplication([])
    window = MainWindow()
    window.resize(1600, 1000)
    window.show()
    window.open_path(CASE, pick_planning=True)
    deadline = time.time() + 60
    while window.planning is None and time.time() < deadline:
        app.processEvents()
        time.sleep(0.01)
    truth = json.loads((CASE / "truth" / "truth.json").read_text())
    target = np.array(truth["lesion"]["center_lps"], dtype=float)
    entry = target + np.array([-80.0, 55.0, 15.0])
    window._add_trajectory(entry, target)
    node_id = window.current_trajectory
    for _ in range(20):
        app.processEvents()
    times, compute, render = [], [], []
    real_render_all = window.render_all
    for step in range(steps):
        point = entry + np.array([0.5 * step, 0.0, 0.0])
        t0 = time.perf_counter()
        window.render_all = lambda: None  # split: the plan/readout/overlay work ...
        window._on_handle_dragged((node_id, "entry"), point, False)
        t1 = time.perf_counter()
        window.render_all = real_render_all
        real_render_all()  # ... and drawing the four views (software OpenGL here)
        app.processEvents()
        t2 = time.perf_counter()
        times.append((t2 - t0) * 1000.0)
        compute.append((t1 - t0) * 1000.0)
        render.append((t2 - t1) * 1000.0)
    window._on_handle_dragged((node_id, "entry"), None, True)
    window.scene.history.mark_clean()
    window.close()
    return {
        "drag_step_ms_median": statistics.median(times),
        "compute_ms_median": statistics.median(compute),
        "render_ms_median": statistics.median(render),
        "drag_step_ms_p90": float(np.percentile(times, 90)),
        "steps": steps,
    }


def bench_suggest(runs: int = 3) -> dict:
    import SimpleITK as sitk

    from guideplan.core.volume import Volume
    from guideplan.io import load_series
    from guideplan.planning.devices import load_catalog
    from guideplan.planning.path_analysis import PathContext
    from guideplan.planning.structures import StructureField
    from guideplan.planning.suggest import suggest_entries

    ct = load_series(CASE / "ct")
    image = ct.to_sitk()
    size = (512, 512, 300)
    extent = np.array(image.GetSize()) * np.array(image.GetSpacing())
    spacing = tuple(float(e / n) for e, n in zip(extent, size, strict=True))
    big = sitk.Resample(
        image,
        size,
        sitk.Transform(),
        sitk.sitkLinear,
        image.GetOrigin(),
        spacing,
        image.GetDirection(),
        -1000.0,
        sitk.sitkInt16,
    )
    volume = Volume.from_sitk(big, {"modality": "CT"})
    canal = sitk.ReadImage(str(CASE / "truth" / "canal.nrrd"))
    canal = sitk.Resample(canal, big, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    truth = json.loads((CASE / "truth" / "truth.json").read_text())
    target = np.array(truth["lesion"]["center_lps"], dtype=float)
    device = load_catalog().get("trocar-11g-125")
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        field = StructureField.from_mask("canal", sitk.GetArrayFromImage(canal) > 0, volume, 10)
        ctx = PathContext(volume, [field])
        result = suggest_entries(ctx, target, device, position="prone")
        times.append(time.perf_counter() - t0)
    return {
        "suggest_s_median": statistics.median(times),
        "runs_s": [round(t, 2) for t in times],
        "valid_paths": len(result.ranked),
        "volume": list(volume.size),
    }


def main() -> int:
    drag = bench_drag()
    print(
        f"drag step (command + readouts + overlays + 4 renders): median "
        f"{drag['drag_step_ms_median']:.1f} ms, p90 {drag['drag_step_ms_p90']:.1f} ms "
        f"over {drag['steps']} steps (target < 33 ms); of which plan + readouts + "
        f"overlays {drag['compute_ms_median']:.1f} ms, drawing 4 views "
        f"{drag['render_ms_median']:.1f} ms"
    )
    sug = bench_suggest()
    print(
        f"suggestion on {sug['volume']} CT (incl. canal distance field): median "
        f"{sug['suggest_s_median']:.2f} s, runs {sug['runs_s']}, {sug['valid_paths']} valid "
        "paths (target < 3 s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
