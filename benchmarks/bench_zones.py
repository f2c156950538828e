"""Treatment-zone speed on the sample cases, and accuracy on analytic phantoms.

* one probe's zone + the full evaluation (coverage, margins, healthy bone, distances to
  every structure, warnings), the fixed context (CT, masks, distance fields) built once,
  as while a trajectory is dragged. Target: under 50 ms.
* 5 mL of cement from a trocar tip (front, order, leak sites, fill fractions).
  Target: under 2 s.
Each the median of 5 runs, after one warm-up run. Accuracy: lesion coverage of a sphere
by ellipsoids against the analytic volume, and the minimal margin against geometry.

Usage: python benchmarks/bench_zones.py [--json] [--gui]  (--gui: also the zone following a
dragged needle in the real window; needs a display, see scripts/with-display.sh)
"""

from __future__ import annotations

import json
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from guideplan.io import load_series  # noqa: E402
from guideplan.planning.cement import predict_cement  # noqa: E402
from guideplan.planning.context import TreatmentContext  # noqa: E402
from guideplan.planning.devices import load_catalog  # noqa: E402
from guideplan.planning.evaluate import evaluate_plan, zone_figures  # noqa: E402
from guideplan.planning.zones import ablation_zone, thermal_zone  # noqa: E402

SAMPLES = ROOT / "sample_data"
#: case -> (zone devices, approach direction of the probe (entry -> tip), LPS)
CASES = {
    "case01_l2_lytic_rfa_cement": (
        ["rf-cooltip-17g-3cm", "mw-antenna-14g", "cryo-17g-rod"],
        (0.52, -0.853, 0.0),
    ),
    "case02_iliac_cryo_skin": (["cryo-17g-rod", "rf-cooltip-17g-3cm"], (-1.0, 0.0, 0.0)),
    "case03_t10_blastic": (["rf-bone-16g-10mm", "cryo-17g-rod"], (-0.52, -0.853, 0.0)),
}


def _median_ms(fn, runs: int = 5) -> float:
    fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1000.0 * statistics.median(times)


def bench_case(name: str) -> dict:
    folder = SAMPLES / name
    volume = load_series(folder / "ct")
    masks = {
        n: sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "truth" / f"{n}.nrrd"))) > 0
        for n in ("lesion", "bone", "canal", "body")
    }
    info = json.loads((folder / "case.json").read_text(encoding="utf-8"))["target"]
    t0 = time.perf_counter()
    ctx = TreatmentContext.from_masks(
        volume, masks, level=info.get("vertebral_level"), host=info.get("bone")
    )
    facts = ctx.lesion_facts()
    ctx.margin_region()
    context_s = time.perf_counter() - t0
    catalog = load_catalog()
    devices, approach = CASES[name]
    u = np.asarray(approach, dtype=float)
    u /= np.linalg.norm(u)
    out = {
        "case": name,
        "grid": list(volume.array.shape),
        "spacing_mm": list(volume.spacing),
        "context_s": round(context_s, 2),
        "zone_and_evaluation_ms": {},
    }
    for dev_id in devices:
        dev = catalog.get(dev_id)
        offset = dev.data["zone"]["rows"][-1].get("center_offset_mm", 0.0)
        tip = facts.centroid_lps + u * offset
        entry = tip - u * 90.0

        def run(dev=dev, entry=entry, tip=tip):
            zone = ablation_zone(ctx, dev, [(entry, tip)])
            return evaluate_plan(ctx, [zone])

        ms = _median_ms(run)
        ev = run()
        out["zone_and_evaluation_ms"][dev_id] = {
            "median_ms": round(ms, 1),
            "zone_ml": round(ev.ablation.zone_volume_ml, 2),
            "coverage_pct": round(ev.ablation.coverage_pct, 1),
            "warnings": sorted({w.code for w in ev.warnings}),
        }

    def cement():
        return predict_cement(ctx, facts.centroid_lps, 5.0)

    ms = _median_ms(cement)
    r = cement()
    out["cement_5ml"] = {
        "median_ms": round(ms, 1),
        "placed_ml": round(r.placed_ml, 3),
        "volume_error_pct": round(100 * (r.placed_ml - 5.0) / 5.0, 2),
        "vertebral_body_fill_pct": None if r.body_fill_pct is None else round(r.body_fill_pct, 1),
        "leaks": [(leak.site, round(leak.reached_at_ml, 2)) for leak in r.leaks],
    }
    return out


def accuracy() -> dict:
    """Coverage of a sphere (r 10) by ellipsoids vs the analytic value; minimal margin."""
    from tests.planning.zone_cases import (
        chart_device,
        grid_volume,
        lens_volume,
        sphere,
        spheroid_sphere_intersection,
    )

    rows = []
    for spacing in (0.5, 0.8):
        vol = grid_volume(22, spacing)
        ctx = TreatmentContext(vol, lesion=sphere(vol, (0, 0, 0), 10.0))
        ball = 4 / 3 * math.pi * 1000
        for a, b in ((14.0, 8.0), (12.0, 9.0)):
            z = thermal_zone(vol, chart_device(2 * a, 2 * b, a), (0, 0, -70), (0, 0, a))
            expected = 100 * spheroid_sphere_intersection(a, b, 10.0) / ball
            got = zone_figures(ctx, z).coverage_pct
            rows.append(
                {
                    "case": f"prolate {a}x{b} in sphere r10",
                    "spacing_mm": spacing,
                    "coverage_pct": round(got, 2),
                    "analytic_pct": round(expected, 2),
                    "relative_error_pct": round(100 * (got - expected) / expected, 2),
                }
            )
        z = thermal_zone(vol, chart_device(24, 24, 12), (7, -70, 0), (7, 12, 0))
        expected = 100 * lens_volume(10, 12, 7) / ball
        fig = zone_figures(ctx, z)
        rows.append(
            {
                "case": "sphere r12 offset 7 mm",
                "spacing_mm": spacing,
                "coverage_pct": round(fig.coverage_pct, 2),
                "analytic_pct": round(expected, 2),
                "relative_error_pct": round(100 * (fig.coverage_pct - expected) / expected, 2),
                "min_margin_mm": round(fig.min_margin_mm, 2),
                "analytic_margin_mm": -5.0,
            }
        )
    return {"coverage": rows}


def bench_gui_follow(steps: int = 40, interval_s: float = 1 / 30) -> dict:
    """In the real window (case 01, an RF zone on a needle): the needle is moved 1 mm
    per mouse event at 30 events/s; how often the zone display follows during the drag
    and what each update costs (evaluation in the worker, display on the GUI thread)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from gui_bench import close_window, open_sample_window
    from gui_bench import pump as pump_events

    from guideplan.model.commands import SetField
    from guideplan.ui.window_treatment import TreatmentActions

    app, window, target = open_sample_window(settle_s=0.5)

    def pump(seconds: float) -> None:
        pump_events(app, seconds)

    deadline = time.time() + 60
    entry = target + np.array([-45.0, 85.0, -10.0])
    window._add_trajectory(entry, target)
    window.add_zone("rf-cooltip-17g-3cm")
    while getattr(window, "_zone_plan", None) is None and time.time() < deadline:
        pump(0.05)
    pump(0.5)
    node_id = window.current_trajectory
    shown: list[float] = []
    costs: list[dict] = []
    real_show = window._show_zones

    def spy(result) -> None:
        real_show(result)
        shown.append(time.perf_counter())
        costs.append(dict(TreatmentActions.zone_timings))

    window._show_zones = spy
    window.renders.begin_gesture("axial")  # as when the user drags in the axial view
    start = time.perf_counter()
    for step in range(1, steps + 1):
        shift = np.array([1.0 * step, 0.0, 0.0])
        window.scene.execute(SetField(node_id, "target", tuple(target + shift)))
        window.renders.mark_step()
        window.scene.execute(SetField(node_id, "entry", tuple(entry + shift)))
        pump(interval_s)
    drag_s = time.perf_counter() - start
    window.renders.end_gesture()
    pump(1.0)
    close_window(window)
    during = [t for t in shown if t <= start + drag_s]
    gaps = np.diff([start, *during]) * 1000.0 if during else np.array([drag_s * 1000.0])
    return {
        "drag_s": round(drag_s, 2),
        "updates_during_drag": len(during),
        "update_interval_ms_median": round(float(np.median(gaps)), 1),
        "evaluate_ms_median": round(1000 * statistics.median(c["evaluate_s"] for c in costs), 1),
        "context_ms_median": round(1000 * statistics.median(c["context_s"] for c in costs), 1),
        "display_ms_median": round(1000 * statistics.median(c["display_s"] for c in costs), 1),
    }


def main() -> None:
    results = {
        "cases": [bench_case(name) for name in CASES if (SAMPLES / name).is_dir()],
        "accuracy": accuracy(),
    }
    if "--gui" in sys.argv:
        results["gui_follow"] = bench_gui_follow()
    if "--json" in sys.argv:
        print(json.dumps(results, indent=2))
        return
    for case in results["cases"]:
        print(
            f"{case['case']} {case['grid']} @ {case['spacing_mm']} mm "
            f"(context {case['context_s']} s)"
        )
        for dev, r in case["zone_and_evaluation_ms"].items():
            print(
                f"  zone + evaluation {dev:22s} {r['median_ms']:7.1f} ms  "
                f"({r['zone_ml']} mL, coverage {r['coverage_pct']} %)"
            )
        c = case["cement_5ml"]
        print(
            f"  cement 5 mL {c['median_ms']:7.1f} ms  placed {c['placed_ml']} mL "
            f"({c['volume_error_pct']:+.2f} %), leaks {c['leaks']}"
        )
    if "gui_follow" in results:
        g = results["gui_follow"]
        print(
            f"in the window, needle dragged 1 mm per event at 30 events/s for {g['drag_s']} s: "
            f"the zone followed {g['updates_during_drag']} times (every "
            f"{g['update_interval_ms_median']} ms); per update: context "
            f"{g['context_ms_median']} ms (reused), zone + evaluation "
            f"{g['evaluate_ms_median']} ms, 2D/3D display data {g['display_ms_median']} ms"
        )
    for row in results["accuracy"]["coverage"]:
        print(
            f"  {row['case']:30s} @ {row['spacing_mm']} mm: {row['coverage_pct']} % vs "
            f"{row['analytic_pct']} % ({row['relative_error_pct']:+.2f} %)"
            + (
                f", min margin {row['min_margin_mm']} vs {row['analytic_margin_mm']} mm"
                if "min_margin_mm" in row
                else ""
            )
        )


if __name__ == "__main__":
    main()
