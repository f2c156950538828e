"""What the GUI benchmarks share: the real window opened on a sample case, an event
pump, and this machine's floor for drawing the views (four empty VTK windows).

Run the benchmarks with a display (``bash scripts/with-display.sh python ...``).
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_data"


def pump(app, seconds: float) -> None:
    """Let the event loop run for ``seconds`` (workers report, timers fire)."""
    end = time.time() + seconds
    while time.time() < end:
        app.processEvents()
        time.sleep(0.005)


def open_sample_window(case: str = "case01_l2_lytic_rfa_cement", settle_s: float = 2.0):
    """(app, window, lesion centre LPS): the main window on a sample case's planning CT,
    after its background work (bone surface, structures) has had time to arrive."""
    from PySide6.QtWidgets import QApplication

    from guideplan.ui.main_window import MainWindow

    folder = SAMPLES / case
    app = QApplication.instance() or QApplication([])
    window = MainWindow()
    window.resize(1600, 1000)
    window.show()
    window.open_path(folder, pick_planning=True)
    deadline = time.time() + 60
    while window.planning is None and time.time() < deadline:
        pump(app, 0.05)
    pump(app, settle_s)
    truth = json.loads((folder / "truth" / "truth.json").read_text())
    return app, window, np.array(truth["lesion"]["center_lps"], dtype=float)


def close_window(window) -> None:
    """Close without the 'save changes?' question (the benchmark's edits are throwaway)."""
    window.scene.history.mark_clean()
    window.close()


def empty_frame_ms(app, window) -> float:
    """The machine's floor: drawing four empty VTK windows of the views' sizes."""
    from vtkmodules.qt.QVTKRenderWindowInteractor import QVTKRenderWindowInteractor
    from vtkmodules.vtkRenderingCore import vtkRenderer

    blanks = []
    for widget in window._all_views().values():
        blank = QVTKRenderWindowInteractor()
        blank.GetRenderWindow().SetMultiSamples(0)  # as the views are
        blank.GetRenderWindow().AddRenderer(vtkRenderer())
        blank.resize(widget.width(), widget.height())
        blank.show()
        blanks.append(blank)
    pump(app, 0.2)
    runs = []
    for _ in range(15):
        t0 = time.perf_counter()
        for blank in blanks:
            blank.GetRenderWindow().Render()
        runs.append((time.perf_counter() - t0) * 1000.0)
    for blank in blanks:
        blank.close()
    return statistics.median(runs)


def step_figures(prefix: str, times: list[float], compute: list[float], staleness: list[float]):
    """Median and p90 of the steps of a gesture (ms), the plan work inside them, and how
    out of date the other views were."""
    return {
        f"{prefix}_ms_median": statistics.median(times),
        f"{prefix}_ms_p90": float(np.percentile(times, 90)),
        "compute_ms_median": statistics.median(compute),
        "stale_ms_median": statistics.median(staleness) if staleness else 0.0,
        "stale_ms_p90": float(np.percentile(staleness, 90)) if staleness else 0.0,
    }
