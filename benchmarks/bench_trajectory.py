"""Trajectory planning speed: one drag step of a needle end in the real window, and a
full entry suggestion over the skin.

Drag step = what happens per mouse-move event while dragging an entry point: the
undoable command, every readout (lengths, angles, tissues, distances, warnings), the
overlays of the three slice views and the 3D needle, and the render scheduler's turn
(the dragged view draws every step, the others within the frame budget, stalest first).
Target: under 33 ms per step (30 frames/s). Reported beside it: how out of date the
views get, drawing all four views every step, and four empty VTK windows (the floor of
software OpenGL on this machine). Suggestion target: under 3 s on a
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
sys.path.insert(0, str(Path(__file__).resolve().parent))

from gui_bench import (  # noqa: E402
    close_window,
    empty_frame_ms,
    open_sample_window,
    step_figures,
)

CASE = ROOT / "sample_data" / "case01_l2_lytic_rfa_cement"


def bench_drag(steps: int = 90) -> dict:
    """Drive a drag of the entry point through the window's own path: the gesture
    starts in the axial view, each step is one mouse-move (command, readouts, overlays,
    then the render scheduler's turn), and the gesture ends with every view drawn."""
    app, window, target = open_sample_window(settle_s=2.0)
    entry = target + np.array([-80.0, 55.0, 15.0])
    window._add_trajectory(entry, target)
    node_id = window.current_trajectory
    for _ in range(20):
        app.processEvents()
    renders = window.renders
    renders.flush()

    full = []
    for _ in range(15):  # every view drawn on every step (what an unscheduled app does)
        t0 = time.perf_counter()
        for widget in window._all_views().values():
            widget.render()
        full.append((time.perf_counter() - t0) * 1000.0)

    renders.begin_gesture("axial")
    renders.staleness_ms.clear()
    times, compute = [], []
    for step in range(steps):
        point = entry + np.array([0.5 * step, 0.0, 0.0])
        t0 = time.perf_counter()
        renders.mark_step()
        window._on_handle_dragged((node_id, "entry"), point, False)
        t1 = time.perf_counter()
        renders.run_pending()
        app.processEvents()  # and whatever else the event loop does before the next move
        t2 = time.perf_counter()
        times.append((t2 - t0) * 1000.0)
        compute.append((t1 - t0) * 1000.0)
        time.sleep(0.004)  # the next mouse-move event arrives (a 250 Hz mouse at most)
    staleness = list(renders.staleness_ms)
    window._on_handle_dragged((node_id, "entry"), None, True)
    renders.end_gesture()
    floor = empty_frame_ms(app, window)
    close_window(window)
    return {
        **step_figures("drag_step", times, compute, staleness),
        "all_views_ms_median": statistics.median(full),
        "empty_frames_ms_median": floor,
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
        f"drag step (command + readouts + overlays + scheduled drawing): median "
        f"{drag['drag_step_ms_median']:.1f} ms, p90 {drag['drag_step_ms_p90']:.1f} ms over "
        f"{drag['steps']} steps (target < 33 ms); plan + readouts + overlays "
        f"{drag['compute_ms_median']:.1f} ms. Views are out of date by median "
        f"{drag['stale_ms_median']:.0f} ms, p90 {drag['stale_ms_p90']:.0f} ms."
    )
    print(
        f"peer figures in the same run: drawing all 4 views every step "
        f"{drag['all_views_ms_median']:.1f} ms; 4 empty VTK windows of the same sizes "
        f"(this machine's software-OpenGL floor) {drag['empty_frames_ms_median']:.1f} ms"
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
