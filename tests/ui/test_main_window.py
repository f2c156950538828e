"""The workstation window driven like a radiologist would: load, scroll, window/level,
crosshair, ruler, undo/redo, layouts; screenshots checked where it matters."""

import numpy as np
import pytest
from PySide6.QtCore import QEvent, QPoint, QPointF, Qt
from PySide6.QtGui import QMouseEvent, QWheelEvent
from PySide6.QtWidgets import QApplication

from guideplan.model.nodes import MeasurementNode


def _mouse(
    widget,
    kind,
    pos: QPoint,
    button=Qt.MouseButton.LeftButton,
    buttons=None,
    modifiers=Qt.KeyboardModifier.NoModifier,
):
    event_type = {
        "press": QEvent.Type.MouseButtonPress,
        "move": QEvent.Type.MouseMove,
        "release": QEvent.Type.MouseButtonRelease,
    }[kind]
    buttons = (
        buttons
        if buttons is not None
        else (Qt.MouseButton.NoButton if kind == "release" else button)
    )
    event = QMouseEvent(
        event_type,
        QPointF(pos),
        QPointF(widget.mapToGlobal(pos)),
        button,
        buttons,
        modifiers,
    )
    QApplication.sendEvent(widget, event)


def _drag(widget, start: QPoint, end: QPoint, button=Qt.MouseButton.LeftButton, steps=5):
    _mouse(widget, "press", start, button)
    for t in np.linspace(0, 1, steps + 1)[1:]:
        p = QPoint(
            int(start.x() + t * (end.x() - start.x())), int(start.y() + t * (end.y() - start.y()))
        )
        _mouse(widget, "move", p, Qt.MouseButton.NoButton, buttons=button)
    _mouse(widget, "release", end, button)


def _wheel(widget, clicks: int):
    centre = QPointF(widget.width() / 2, widget.height() / 2)
    event = QWheelEvent(
        centre,
        QPointF(widget.mapToGlobal(centre.toPoint())),
        QPoint(0, 0),
        QPoint(0, 120 * clicks),
        Qt.MouseButton.NoButton,
        Qt.KeyboardModifier.NoModifier,
        Qt.ScrollPhase.NoScrollPhase,
        False,
    )
    QApplication.sendEvent(widget, event)


def _screen(win) -> np.ndarray:
    image = (
        win.screen()
        .grabWindow(0)
        .toImage()
        .convertToFormat(win.screen().grabWindow(0).toImage().Format.Format_RGB888)
    )
    ptr = image.constBits()
    arr = np.frombuffer(ptr, np.uint8).reshape(image.height(), image.bytesPerLine())
    return arr[:, : image.width() * 3].reshape(image.height(), image.width(), 3)


def test_opens_the_series_with_geometry(window):
    vol = window.planning.volume
    assert vol.size == (64, 64, 64)
    assert vol.meta["patient_name"] == "TEST^PATIENT"
    np.testing.assert_allclose(window.cursor, vol.index_to_physical((31, 31, 31)))


def test_wheel_scrolls_one_slice_and_moves_the_slider(window, qtbot):
    axial = window.slice_widgets["axial"]
    z0 = window.cursor[2]
    index0 = axial.slider.value()
    _wheel(axial.canvas, 1)
    qtbot.wait(50)
    assert window.cursor[2] != pytest.approx(z0)
    assert abs(abs(window.cursor[2] - z0) - 2.0) < 1e-6  # one 2 mm slice
    assert abs(axial.slider.value() - index0) == 1
    # The other views follow: the coronal view's crosshair sits at the new z.
    assert window.slice_widgets["coronal"].slice_view.cursor[2] == pytest.approx(window.cursor[2])


def test_keys_scroll_too(window, qtbot):
    axial = window.slice_widgets["axial"]
    z0 = window.cursor[2]
    qtbot.keyClick(axial.canvas, Qt.Key.Key_PageUp)
    assert abs(window.cursor[2] - z0) == pytest.approx(20.0)


def test_click_moves_the_crosshair_in_the_other_views(window, qtbot):
    axial = window.slice_widgets["axial"]
    canvas = axial.canvas
    target = QPoint(int(canvas.width() * 0.7), int(canvas.height() * 0.5))
    before = window.cursor.copy()
    _mouse(canvas, "press", target)
    _mouse(canvas, "release", target)
    qtbot.wait(50)
    assert window.cursor[0] > before[0] + 5  # right of centre on screen = patient's left
    assert window.cursor[2] == pytest.approx(before[2])  # same axial slice
    sagittal = window.slice_widgets["sagittal"].slice_view
    assert sagittal.frame.to_plane(window.cursor)[2] == pytest.approx(sagittal.depth, abs=1e-6)


def test_window_level_drag_is_one_undoable_step(window, qtbot):
    axial = window.slice_widgets["axial"].canvas
    display = window.planning.display
    w0, l0 = display.window, display.level
    _drag(axial, QPoint(100, 100), QPoint(160, 60), button=Qt.MouseButton.RightButton)
    assert (display.window, display.level) != (w0, l0)
    assert len(window.scene.history) == 1
    window.act_undo.trigger()
    assert (display.window, display.level) == (w0, l0)
    window.act_redo.trigger()
    assert display.window > w0


def test_preset_sets_window_level(window):
    window.apply_preset("Soft tissue")
    assert (window.planning.display.window, window.planning.display.level) == (400, 40)
    assert window.slice_widgets["axial"].slice_view.window == 400


def test_ruler_measures_and_undo_redo(window, qtbot):
    window.set_tool("ruler")
    axial = window.slice_widgets["axial"]
    start, end = QPoint(150, 150), QPoint(250, 150)
    _drag(axial.canvas, start, end)
    qtbot.wait(50)
    rulers = window.scene.nodes_of(MeasurementNode)
    assert len(rulers) == 1
    expected = 100 * axial.slice_view.mm_per_pixel() * axial.canvas.devicePixelRatioF()
    assert rulers[0].value == pytest.approx(expected, rel=0.05)
    assert window.measure_list.count() == 1
    window.act_undo.trigger()
    assert not window.scene.nodes_of(MeasurementNode)
    assert window.measure_list.count() == 0
    window.act_redo.trigger()
    assert len(window.scene.nodes_of(MeasurementNode)) == 1


def test_ruler_by_two_clicks(window, qtbot):
    window.set_tool("ruler")
    canvas = window.slice_widgets["axial"].canvas
    for p in (QPoint(150, 200), QPoint(150, 260)):
        _mouse(canvas, "press", p)
        _mouse(canvas, "release", p)
    (ruler,) = window.scene.nodes_of(MeasurementNode)
    axial = window.slice_widgets["axial"]
    expected = 60 * axial.slice_view.mm_per_pixel() * canvas.devicePixelRatioF()
    assert ruler.value == pytest.approx(expected, rel=0.05)
    _mouse(canvas, "press", QPoint(200, 200))  # a new ruler starts; nothing more is added
    _mouse(canvas, "release", QPoint(200, 200))
    assert len(window.scene.nodes_of(MeasurementNode)) == 1


def test_angle_tool(window, qtbot):
    window.set_tool("angle")
    canvas = window.slice_widgets["axial"].canvas
    for p in (QPoint(300, 150), QPoint(200, 150), QPoint(200, 50)):
        _mouse(canvas, "press", p)
        _mouse(canvas, "release", p)
    (angle,) = window.scene.nodes_of(MeasurementNode)
    assert angle.measure == "angle"
    assert angle.value == pytest.approx(90.0, abs=1.0)


def test_layouts_and_full_view(window, qtbot):
    window.set_layout("one_plus_three", "coronal")
    qtbot.wait(50)
    assert all(w.isVisible() for w in window._all_views().values())
    window._focus_view = "sagittal"
    window.toggle_full_view()
    qtbot.wait(50)
    assert window.slice_widgets["sagittal"].isVisible()
    assert not window.slice_widgets["axial"].isVisible()
    window.toggle_full_view()
    assert window.slice_widgets["axial"].isVisible()


def test_anonymize_hides_patient_identity(window):
    corners = window.slice_widgets["axial"].slice_view.corners
    assert "TEST^PATIENT" in corners.GetText(2)
    window.set_anonymize(True)
    assert "TEST^PATIENT" not in corners.GetText(2)
    assert "ID123" not in corners.GetText(2)


def test_screenshot_letters_and_left_marker_on_the_right(window, qtbot):
    from tests.render.markers import LEFT

    # Put the cursor through the left marker and show only the very bright marker.
    marker = window.planning.volume.center_lps() + np.array([35.0, 0.0, 0.0])
    window.set_cursor(marker)
    for w in window.slice_widgets.values():
        w.slice_view.set_window_level(10.0, LEFT - 5.0)
    window.render_all()
    qtbot.wait(200)
    shot = _screen(window)
    axial = window.slice_widgets["axial"].canvas
    top_left = axial.mapToGlobal(QPoint(0, 0))
    ratio = axial.devicePixelRatioF()
    x0, y0 = int(top_left.x() * ratio), int(top_left.y() * ratio)
    w, h = int(axial.width() * ratio), int(axial.height() * ratio)
    view = shot[y0 : y0 + h, x0 : x0 + w].astype(int)
    white = view.mean(axis=2) > 240
    _, xs = np.nonzero(white[40:-40, 40:-40])
    assert len(xs) > 10
    assert xs.mean() + 40 > w / 2 + 20, "the patient's left marker is not on the screen's right"
    yellow = (view[..., 0] > 200) & (view[..., 1] > 190) & (view[..., 2] < 170)
    mid = h // 2
    assert yellow[mid - 25 : mid + 25, w - 35 :].sum() > 10, "no 'L' on the right edge"
    assert yellow[mid - 25 : mid + 25, :35].sum() > 10, "no 'R' on the left edge"
    assert yellow[:35, w // 2 - 25 : w // 2 + 25].sum() > 10, "no 'A' on the top edge"


def test_wheel_up_moves_toward_head_anterior_left(window, qtbot):
    start = window.cursor.copy()
    _wheel(window.slice_widgets["axial"].canvas, 1)
    assert window.cursor[2] > start[2]  # axial: toward S
    start = window.cursor.copy()
    _wheel(window.slice_widgets["coronal"].canvas, 1)
    assert window.cursor[1] < start[1]  # coronal: toward A (-y)
    start = window.cursor.copy()
    _wheel(window.slice_widgets["sagittal"].canvas, 1)
    assert window.cursor[0] > start[0]  # sagittal: toward L (+x)
