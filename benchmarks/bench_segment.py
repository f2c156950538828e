"""Lesion segmentation speed: one-click region growing against SimpleITK's plain
ConnectedThreshold, and one brush dab.

The volume is a 512x512x300 CT of the sample phantom (0.75 x 0.75 x 1.0 mm) with a lytic
L2 lesion that breaks through the posterior wall (cached in benchmarks/out/ after the
first run). Both growers start from the same seed with the same intensity range (the one
guideplan estimates); each is timed ``--runs`` times in this process and the median is
reported, with each result's Dice against the phantom's true lesion. A brush dab is a
5 mm disc in an axial view or a 5 mm ball: footprint, diff against the label map, and
applying the diff (what the GUI does per mouse move).

Brush step in the window (``--gui``, the default when a display is there): sample case 01
opened in the real MainWindow, the brush driven through the window's own path (tool
point, then drags: the diff, the undoable edit, the label layers, the overlays) and the
render scheduler's turn (the view under the mouse draws every step, the others within
the 30 ms frame budget). Reported: median and p90 of the whole step, how out of date the
other views get, and, in the same run, four empty VTK windows of the views' sizes (this
machine's software-OpenGL floor, from gui_bench).

Usage: bash scripts/with-display.sh python benchmarks/bench_segment.py [--runs 5]
       [--json] [--no-gui]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from guideplan.core.volume import Volume
from guideplan.processing.segmentation import grow_lesion, paint

HERE = Path(__file__).resolve().parent
OUT = HERE / "out" / "seg512x300"


def make_volume() -> tuple[Volume, np.ndarray, np.ndarray]:
    """(CT volume, true lesion mask, seed LPS): generated once, then read from the cache."""
    meta_path = OUT / "meta.json"
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        array = np.load(OUT / "ct.npy")
        lesion = np.load(OUT / "lesion.npy")
        return Volume(array, meta["spacing"], meta["origin"]), lesion, np.array(meta["seed"])
    from guideplan.samples import imaging
    from guideplan.samples.anatomy import Habitus, LesionSpec, Phantom, Tissue

    level = Phantom(Habitus()).levels["L2"]
    center = (-4.0, level.y + 7.0, level.zc + 1.0)
    phantom = Phantom(Habitus(), LesionSpec("lytic", center, (11.5, 11.0, 10.5), "body:L2", 2.5))
    spacing = (0.75, 0.75, 1.0)
    grid = imaging.centred_grid((0.0, 20.0, 0.0), np.eye(3), spacing, (512, 512, 300), np.eye(4))
    hu, labels, _ = imaging.ct_image(phantom, grid, contrast=False, noise_hu=7.0, seed=5)
    array = np.clip(np.rint(hu), -1024, 3071).astype(np.int16)
    lesion = labels == Tissue.LESION
    OUT.mkdir(parents=True, exist_ok=True)
    np.save(OUT / "ct.npy", array)
    np.save(OUT / "lesion.npy", lesion)
    meta = {"spacing": spacing, "origin": [float(v) for v in grid.origin], "seed": center}
    meta_path.write_text(json.dumps(meta))
    return Volume(array, spacing, tuple(grid.origin)), lesion, np.array(center)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.count_nonzero(a & b) / max(np.count_nonzero(a) + np.count_nonzero(b), 1)


def bench_brush_gui(steps: int = 90) -> dict:
    """A brush stroke in the real window: press, then ``steps`` drags of 0.6 mm in the
    axial view, each timed from the mouse event to the end of the event-loop turn."""
    import os
    import sys

    os.environ.setdefault("QT_QPA_PLATFORM", "xcb")
    sys.path.insert(0, str(HERE))
    from gui_bench import close_window, empty_frame_ms, open_sample_window, step_figures

    app, window, centre = open_sample_window(settle_s=2.0)
    window.set_tool("brush")
    window._on_tool_point(centre, False)  # creates the label map (one undo step)
    window._on_tool_point(centre, True)
    renders = window.renders
    renders.flush()
    for _ in range(20):
        app.processEvents()

    renders.begin_gesture("axial")
    renders.staleness_ms.clear()
    times, compute = [], []
    start = centre + np.array([-25.0, -10.0, 0.0])
    for step in range(steps + 1):
        point = start + np.array([0.6 * step, 0.25 * step, 0.0])
        t0 = time.perf_counter()
        renders.mark_step()
        if step == 0:
            window._on_tool_point(point, False)
        else:
            window._on_tool_drag(point)
        t1 = time.perf_counter()
        renders.run_pending()
        app.processEvents()
        t2 = time.perf_counter()
        if step:
            times.append((t2 - t0) * 1000.0)
            compute.append((t1 - t0) * 1000.0)
        time.sleep(0.004)  # the next mouse-move event (a 250 Hz mouse at most)
    staleness = list(renders.staleness_ms)
    window._on_tool_point(point, True)
    renders.end_gesture()
    floor = empty_frame_ms(app, window)
    window._surface_timer.stop()
    close_window(window)
    figures = step_figures("brush_step", times, compute, staleness)
    figures["edit_ms_median"] = figures.pop("compute_ms_median")
    return {
        **figures,
        "empty_frames_ms_median": floor,
        "steps": steps,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--dabs", type=int, default=100)
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--no-gui",
        action="store_true",
        help="skip the brush step in the window (no display needed)",
    )
    args = parser.parse_args()
    volume, truth, seed = make_volume()

    ours, result = [], None
    for _ in range(args.runs):
        t0 = time.perf_counter()
        result = grow_lesion(volume, seed)
        ours.append(time.perf_counter() - t0)
    assert result is not None
    ours_mask = result.full_mask(volume.array.shape)

    image = volume.to_sitk()
    seed_ijk = tuple(int(v) for v in np.rint(volume.physical_to_index(seed)))
    lo, hi = result.grow_range
    peer, peer_mask = [], None
    for _ in range(args.runs):
        t0 = time.perf_counter()
        out = sitk.ConnectedThreshold(image, seedList=[seed_ijk], lower=float(lo), upper=float(hi))
        peer.append(time.perf_counter() - t0)
        peer_mask = sitk.GetArrayViewFromImage(out).astype(bool)
    assert peer_mask is not None

    labels = np.zeros(volume.array.shape, dtype=np.uint8)
    rng = np.random.default_rng(0)
    centres = seed + rng.uniform(-15, 15, size=(args.dabs, 3))
    dabs: dict[str, list[float]] = {"disc": [], "ball": []}
    for kind, normal in (("disc", (0.0, 0.0, 1.0)), ("ball", None)):
        for c in centres:
            t0 = time.perf_counter()
            diff = paint(volume, labels, c, 5.0, 1, normal=normal)
            diff.apply(labels)
            dabs[kind].append(time.perf_counter() - t0)

    summary = {
        "volume": "x".join(str(n) for n in volume.size),
        "guideplan_grow": {
            "median_s": statistics.median(ours),
            "times_s": [round(t, 3) for t in ours],
            "dice": round(dice(ours_mask, truth), 3),
            "voxels": int(np.count_nonzero(ours_mask)),
        },
        "simpleitk_connected_threshold": {
            "median_s": statistics.median(peer),
            "times_s": [round(t, 3) for t in peer],
            "dice": round(dice(peer_mask, truth), 3),
            "voxels": int(np.count_nonzero(peer_mask)),
            "range_hu": [round(lo, 1), round(hi, 1)],
        },
        "time_ratio_guideplan_over_simpleitk": statistics.median(ours) / statistics.median(peer),
        "brush_dab_5mm": {
            kind: {"median_ms": 1000 * statistics.median(t), "max_ms": 1000 * max(t)}
            for kind, t in dabs.items()
        },
    }
    if not args.no_gui:
        summary["brush_step_gui"] = bench_brush_gui()
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    g, p = summary["guideplan_grow"], summary["simpleitk_connected_threshold"]
    print(
        f"volume {summary['volume']} CT, lytic lesion with a posterior-wall breach, "
        f"{args.runs} runs each"
    )
    print(
        f"  guideplan grow_lesion : median {g['median_s']:.3f} s  runs {g['times_s']}  "
        f"Dice {g['dice']}  (target < 1 s)"
    )
    print(
        f"  SimpleITK Connected   : median {p['median_s']:.3f} s  runs {p['times_s']}  "
        f"Dice {p['dice']}  (same seed, range {p['range_hu']} HU)"
    )
    print(f"  time ratio guideplan/SimpleITK: {summary['time_ratio_guideplan_over_simpleitk']:.2f}")
    for kind, s in summary["brush_dab_5mm"].items():
        print(
            f"  brush dab ({kind}, 5 mm): median {s['median_ms']:.2f} ms, "
            f"max {s['max_ms']:.2f} ms  (dab compute alone)"
        )
    gui = summary.get("brush_step_gui")
    if gui is not None:
        print(
            f"  brush step in the window (sample case 01, axial, {gui['steps']} steps): "
            f"median {gui['brush_step_ms_median']:.1f} ms, p90 {gui['brush_step_ms_p90']:.1f} "
            f"ms  (target < 30 ms)"
        )
        print(
            f"    of which dab + edit + label layers + overlays: median "
            f"{gui['edit_ms_median']:.1f} ms; other views out of date by median "
            f"{gui['stale_ms_median']:.0f} ms, p90 {gui['stale_ms_p90']:.0f} ms"
        )
        print(
            f"    4 empty VTK windows of the views' sizes (software-OpenGL floor, same run): "
            f"{gui['empty_frames_ms_median']:.1f} ms"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
