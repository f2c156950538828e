"""Loading as a user meets it: several series (picker), bad folders (a dialog, no
traceback), drag-and-drop, zoom and pan."""

import numpy as np
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent
from PySide6.QtWidgets import QMessageBox

from guideplan.io import scan
from guideplan.io.dicom_write import SeriesSpec, write_volume
from guideplan.ui.dialogs import SeriesPicker
from guideplan.ui.main_window import MainWindow
from tests.render.markers import marker_volume


def _two_series(tmp_path):
    vol = marker_volume()
    write_volume(
        vol,
        tmp_path / "a",
        SeriesSpec(modality="CT", seed="pick-a", series_number=1, series_description="first"),
    )
    small = vol.with_array(vol.array.copy())
    write_volume(
        small,
        tmp_path / "b",
        SeriesSpec(modality="CT", seed="pick-b", series_number=2, series_description="second"),
    )
    return tmp_path


def test_series_picker_lists_every_series_with_a_thumbnail(qtbot, tmp_path):
    report = scan(_two_series(tmp_path))
    picker = SeriesPicker(report)
    qtbot.addWidget(picker)
    assert picker.table.rowCount() == 2
    descriptions = {picker.table.item(r, 2).text() for r in range(2)}
    assert descriptions == {"first", "second"}
    assert not picker.table.item(0, 0).icon().isNull()
    picker.table.selectRow(1)
    assert picker.selected().description == picker.table.item(1, 2).text()


def test_open_folder_with_several_series_asks_which(qtbot, tmp_path, monkeypatch):
    folder = _two_series(tmp_path)
    chosen = {}

    def fake_exec(self):
        self.table.selectRow(next(r for r in range(2) if self.table.item(r, 2).text() == "second"))
        chosen["shown"] = True
        return 1

    monkeypatch.setattr(SeriesPicker, "exec", fake_exec)
    win = MainWindow()
    qtbot.addWidget(win)
    win.show()
    win.open_path(folder)
    qtbot.waitUntil(lambda: win.planning is not None, timeout=20000)
    assert chosen["shown"]
    assert win.planning.volume.meta["description"] == "second"


def test_bad_folder_shows_a_clear_dialog(qtbot, tmp_path, monkeypatch):
    (tmp_path / "notes.txt").write_text("not an image")
    shown = []
    monkeypatch.setattr(
        QMessageBox,
        "warning",
        staticmethod(lambda parent, title, text, *a, **k: shown.append((title, text))),
    )
    win = MainWindow()
    qtbot.addWidget(win)
    win.show()
    win.open_path(tmp_path)
    qtbot.waitUntil(lambda: bool(shown), timeout=20000)
    title, text = shown[0]
    assert "DICOM" in title or "DICOM" in text
    assert "Traceback" not in text
    assert win.planning is None


def test_drop_a_folder_opens_it(window, qtbot, marker_series):
    window.planning = None
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(marker_series))])
    event = QDropEvent(
        QPointF(10, 10),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    window.dropEvent(event)
    qtbot.waitUntil(lambda: window.planning is not None, timeout=20000)


def test_zoom_and_pan_then_reset(window, qtbot):
    sv = window.slice_widgets["axial"].slice_view
    camera = sv.renderer.GetActiveCamera()
    scale0, focal0 = camera.GetParallelScale(), np.array(camera.GetFocalPoint())
    sv.zoom(2.0)
    sv.pan(10.0, -5.0)
    assert camera.GetParallelScale() == scale0 / 2.0
    assert not np.allclose(camera.GetFocalPoint(), focal0)
    assert window.act_reset.shortcut().toString() == "R"
    window.act_reset.trigger()
    assert camera.GetParallelScale() == scale0
    np.testing.assert_allclose(camera.GetFocalPoint(), focal0)
