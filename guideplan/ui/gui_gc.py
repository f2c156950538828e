"""Python's cyclic garbage collector, run on the GUI thread only.

Why: CPython runs its cyclic collector in whichever thread happens to cross the
allocation threshold — in this program usually a worker (a DICOM scan's thread pool, a
segmentation). Objects of a closed window sit in reference cycles (PySide wrappers of
its widgets and signal lambdas, VTK render windows and actors); collecting them on a
worker traverses and destroys Qt and VTK objects off the GUI thread while the GUI
thread is using Qt: issue 18's segmentation fault (gdb: a worker's ``gc_collect_main``
-> ``subtract_refs`` -> shiboken's traverse on a dangling object, inside
``dicom_scan._read_all_headers``). The same mechanism is known from pyqtgraph, calibre,
napari and nexpy, and fixed the same way: automatic collection is off, and a GUI-thread
timer collects each generation when its count passes the threshold the automatic
collector would have used.
"""

from __future__ import annotations

import gc
import threading

from PySide6.QtCore import QCoreApplication, QObject, QTimer

#: How often the GUI thread looks at the collector's counts (ms). Collecting generation
#: 0 costs well under a millisecond; the full generation runs only past its threshold.
CHECK_INTERVAL_MS = 250


class GuiThreadCollector(QObject):
    """Turns automatic collection off and collects from a GUI-thread timer instead."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("the garbage collector must be pinned from the GUI thread")
        self.was_enabled = gc.isenabled()
        self.thresholds = gc.get_threshold()
        self.collections = [0, 0, 0]  # per generation, for the tests
        gc.disable()
        self._timer = QTimer(self)
        self._timer.setInterval(CHECK_INTERVAL_MS)
        self._timer.timeout.connect(self.check)
        self._timer.start()

    def check(self) -> None:
        """Collect the generations whose counts passed their thresholds (GUI thread)."""
        counts = gc.get_count()
        for generation in range(3):
            if counts[generation] <= self.thresholds[generation]:
                break
            gc.collect(generation)
            self.collections[generation] += 1

    @property
    def active(self) -> bool:
        return self._timer.isActive()

    def resume(self) -> None:
        self.was_enabled = gc.isenabled()
        gc.disable()
        self._timer.start()

    def stop(self) -> None:
        """Give collection back to Python (tests end; the application quits)."""
        self._timer.stop()
        if self.was_enabled:
            gc.enable()


def pin_gc_to_gui_thread() -> GuiThreadCollector:
    """The application's collector (created once, a child of the QApplication)."""
    app = QCoreApplication.instance()
    if app is None:
        raise RuntimeError("create the QApplication first")
    global _COLLECTOR
    try:
        same_app = _COLLECTOR is not None and _COLLECTOR.parent() is app
    except RuntimeError:  # the previous application (and its collector) was deleted
        same_app = False
    if not same_app:
        _COLLECTOR = GuiThreadCollector(app)
        app.aboutToQuit.connect(_COLLECTOR.stop)
    elif not _COLLECTOR.active:  # stopped (a test session ended): resume
        _COLLECTOR.resume()
    return _COLLECTOR


_COLLECTOR: GuiThreadCollector | None = None
