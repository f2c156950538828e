"""GUI tests drive the real window under Xvfb (pytest-xvfb starts it)."""

import os

import pytest
from PySide6.QtWidgets import QApplication

from guideplan.io.dicom_write import SeriesSpec, write_volume
from tests.render.markers import marker_volume


def pytest_collection_modifyitems(config, items):
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
