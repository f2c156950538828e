"""GUI tests drive the real window under Xvfb (pytest-xvfb starts it).

Every GUI test runs with Qt's messages captured: written at once to the real stderr
(the descriptor faulthandler writes to, outside pytest's capture, so a message before a
crash is not lost with it), to the test log and, when GUIDEPLAN_QT_LOG names a file, to
that file; a Qt warning that is not in HARMLESS_QT_MESSAGES fails the test during which it came.
After each test its windows are deleted and no task thread may still run.
"""

import gc
import logging
import os
import re
import sys

import pytest
from PySide6.QtCore import QCoreApplication, QEvent, QtMsgType, qInstallMessageHandler
from PySide6.QtWidgets import QApplication

from guideplan.io.dicom_write import SeriesSpec, write_volume
from tests.render.markers import marker_volume


def pytest_collection_modifyitems(config, items):
    for item in items:  # our handler (below) stays installed, pytest-qt's would replace it
        if "tests/ui" in str(item.fspath):
            item.add_marker(pytest.mark.no_qt_log)
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        return
    skip = pytest.mark.skip(reason="no display: install xvfb (make test bootstraps it)")
    for item in items:
        if "tests/ui" in str(item.fspath):
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    monkeypatch.setenv("GUIDEPLAN_HOME", str(tmp_path / "home"))


@pytest.fixture(scope="session")
def marker_series(tmp_path_factory):
    """The marker phantom written as a CT DICOM series."""
    folder = tmp_path_factory.mktemp("marker_ct")
    vol = marker_volume()
    write_volume(
        vol,
        folder,
        SeriesSpec(
            modality="CT",
            seed="gui-markers",
            series_description="GUI markers",
            patient_name="TEST^PATIENT",
            patient_id="ID123",
        ),
    )
    return folder


@pytest.fixture(autouse=True)
def _no_modal_questions(monkeypatch):
    """Modal questions would block a test: answer 'Discard'/'No' unless a test says else."""
    from PySide6.QtWidgets import QMessageBox

    def answer(parent, title, text, buttons=None, *args, **kwargs):
        if buttons is not None and buttons & QMessageBox.StandardButton.Discard:
            return QMessageBox.StandardButton.Discard
        return QMessageBox.StandardButton.No

    monkeypatch.setattr(QMessageBox, "question", staticmethod(answer))
    monkeypatch.setattr(QMessageBox, "warning", staticmethod(lambda *a, **k: None))


@pytest.fixture
def window(qtbot, marker_series):
    from guideplan.ui.main_window import MainWindow
    from guideplan.ui.style import STYLE_SHEET

    QApplication.instance().setStyleSheet(STYLE_SHEET)
    win = MainWindow()
    qtbot.addWidget(win)
    win.resize(1400, 900)
    win.show()
    qtbot.waitExposed(win)
    win.open_path(marker_series, pick_planning=True)
    qtbot.waitUntil(lambda: win.planning is not None, timeout=20000)
    qtbot.wait(200)
    return win


#: Qt messages that do not mean a bug of ours, each with the reason. Anything else
#: fails the test that caused it.
HARMLESS_QT_MESSAGES: dict[str, str] = {}

_QT_LOG = logging.getLogger("qt")
_captured: list[str] = []
_stderr_fd: list[int] = []  # the real stderr, once the session has found it


def _qt_message(mode, context, message) -> None:
    """Qt's message handler: record, and write at once where a crash cannot lose it."""
    where = f" ({context.file}:{context.line})" if context.file else ""
    line = f"Qt {mode.name}: {message}{where}"
    if mode != QtMsgType.QtDebugMsg and mode != QtMsgType.QtInfoMsg:
        _captured.append(line)
    _QT_LOG.warning(line)
    if _stderr_fd:
        os.write(_stderr_fd[0], (line + "\n").encode(errors="replace"))
    else:
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
    path = os.environ.get("GUIDEPLAN_QT_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(line + "\n")


def _harmful(lines: list[str]) -> list[str]:
    return [
        line
        for line in lines
        if not any(re.search(pattern, line) for pattern in HARMLESS_QT_MESSAGES)
    ]


def _real_stderr(config) -> int | None:
    """pytest's faulthandler descriptor: the terminal's stderr, not the capture."""
    try:
        from _pytest.faulthandler import fault_handler_stderr_fd_key

        return config.stash[fault_handler_stderr_fd_key]
    except (ImportError, KeyError):
        return None


@pytest.fixture(scope="session", autouse=True)
def _gui_session(qapp, request):
    """For the whole GUI session: Qt's messages go through ``_qt_message``, and the
    window's own collector (guideplan.ui.gui_gc) runs Python's cyclic collector on the
    GUI thread only."""
    from guideplan.ui.gui_gc import pin_gc_to_gui_thread

    fd = _real_stderr(request.config)
    if fd is not None:
        _stderr_fd.append(fd)
    previous = qInstallMessageHandler(_qt_message)
    collector = pin_gc_to_gui_thread()
    yield collector
    collector.stop()
    gc.collect()
    qInstallMessageHandler(previous)
    _stderr_fd.clear()


@pytest.fixture(autouse=True)
def _qt_messages_fail_the_test(qapp):
    """Qt warnings fail the test; its windows are deleted and its tasks are over when
    it ends (pytest-qt has closed them before this teardown runs)."""
    from guideplan.ui.workers import _ACTIVE

    _captured.clear()
    yield
    # The closed windows go now (not inside the next test), with their VTK views; then
    # the cycles they leave are collected here, on the GUI thread.
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    QCoreApplication.processEvents()
    gc.collect()
    running = [h.title for h in list(_ACTIVE) if h.thread.isRunning()]
    assert not running, f"task threads outlived the test: {running}"
    bad = _harmful(_captured)
    if bad:
        pytest.fail("Qt warned during this test:\n" + "\n".join(bad), pytrace=False)
