"""Application start: ``python main.py [DICOM_DIR | SAMPLE_CASE | CASE.gplan]``."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

_START = time.perf_counter()

from PySide6.QtCore import QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]


def default_sample_case() -> Path | None:
    """The first bundled sample case (a folder holding ct/), if the samples exist."""
    root = REPO_ROOT / "sample_data"
    if not root.is_dir():
        return None
    for case in sorted(p for p in root.iterdir() if p.is_dir()):
        if (case / "ct").is_dir():
            return case
    return None


def _report_startup(app) -> None:
    import json
    import resource

    print(
        json.dumps(
            {
                "first_slice_wall": time.time(),
                "since_import_s": time.perf_counter() - _START,
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        ),
        flush=True,
    )
    QTimer.singleShot(0, app.quit)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv if argv is None else argv)
    app = QApplication.instance() or QApplication(argv)
    app.setApplicationName("guideplan")
    app.setOrganizationName("guideplan")
    from guideplan.ui.main_window import MainWindow
    from guideplan.ui.style import STYLE_SHEET

    app.setStyleSheet(STYLE_SHEET)
    window = MainWindow()
    window.show()
    probe = bool(os.environ.get("GUIDEPLAN_STARTUP_PROBE"))
    if probe:
        # benchmarks/bench_startup.py: report when the first slice is on screen, then quit
        # (and never stop at a question: a measurement has nobody to answer it).
        window.first_slice_shown.connect(lambda: _report_startup(app))
    elif window.offer_recovery():
        return app.exec()
    target = Path(argv[1]) if len(argv) > 1 else default_sample_case()
    if target is None:
        window.statusBar().showMessage(
            "No sample case found: `make run` generates them; or Ctrl+O."
        )
    else:
        # A sample case folder opens its planning CT directly; a plain folder asks.
        QTimer.singleShot(
            0,
            lambda: window.open_path(
                target, pick_planning=len(argv) <= 1 or (target / "ct").is_dir()
            ),
        )
    return app.exec()
