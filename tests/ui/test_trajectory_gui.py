"""Trajectories in the window: place target then entry, drag an end, undo, readouts."""

from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QPoint

from guideplan.model.nodes import TrajectoryNode
from tests.ui.test_main_window import _drag, _mouse


def _to_qt(widget, lps) -> QPoint:
    x, y = widget.slice_view.lps_to_display(np.asarray(lps, float))
    ratio = widget.canvas.devicePixelRatioF()
    return QPoint(
        int(round(x / ratio)), int(round((widget.canvas.height() * ratio - y - 1) / ratio))
    )


def test_place_drag_undo_and_readouts(window, qtbot):
    axial = window.slice_widgets["axial"]
    centre = window.cursor.copy()
    target = centre + np.array([0.0, 10.0, 0.0])
    entry = centre + np.array([-30.0, 50.0, 0.0])
    window.set_tool("trajectory")
    for point in (target, entry):
        pos = _to_qt(axial, point)
        _mouse(axial.canvas, "press", pos)
        _mouse(axial.canvas, "release", pos)
    (node,) = window.scene.nodes_of(TrajectoryNode)
    np.testing.assert_allclose(node.target, target, atol=1.5)
    np.testing.assert_allclose(node.entry, entry, atol=1.5)
    assert window.tool == "navigate"
    text = window.trajectory_panel.readouts.text()
    assert "Length" in text and "toward patient's left" in text  # tip moves to +x
    assert window.trajectory_report.angles.toward == "left"

    # Drag the entry 20 mm further to the patient's right: one undo step.
    start = _to_qt(axial, node.entry)
    end = _to_qt(axial, np.asarray(node.entry) + [-20.0, 0.0, 0.0])
    steps_before = len(window.scene.history)
    _drag(axial.canvas, start, end)
    assert node.entry[0] == pytest.approx(entry[0] - 20.0, abs=1.5)
    assert len(window.scene.history) == steps_before + 1
    length_after = window.trajectory_report.length_mm
    window.act_undo.trigger()
    np.testing.assert_allclose(node.entry, entry, atol=1.5)
    assert window.trajectory_report.length_mm < length_after
    window.act_redo.trigger()
    assert node.entry[0] == pytest.approx(entry[0] - 20.0, abs=1.5)


def test_locked_trajectory_cannot_be_dragged(window, qtbot):
    window._add_trajectory(window.cursor + [-30.0, 50.0, 0.0], window.cursor + [0.0, 10.0, 0.0])
    (node,) = window.scene.nodes_of(TrajectoryNode)
    window.trajectory_panel.lock.setChecked(True)
    assert node.locked
    axial = window.slice_widgets["axial"]
    before = node.entry
    _drag(axial.canvas, _to_qt(axial, node.entry), _to_qt(axial, np.add(node.entry, [-20, 0, 0])))
    assert node.entry == before


def test_device_change_is_undoable_and_updates_readouts(window, qtbot):
    window._add_trajectory(window.cursor + [-30.0, 50.0, 0.0], window.cursor + [0.0, 10.0, 0.0])
    (node,) = window.scene.nodes_of(TrajectoryNode)
    window._set_device("needle-16g-100")
    assert node.device_id == "needle-16g-100"
    assert window.trajectory_report.device.id == "needle-16g-100"
    window.act_undo.trigger()
    assert node.device_id != "needle-16g-100"


def test_needle_view_axes_contain_the_needle():
    from guideplan.ui.window_trajectories import needle_view_axes

    entry, target = np.array([-80.0, 90.0, 20.0]), np.array([-4.0, 44.0, 1.0])
    d = (target - entry) / np.linalg.norm(target - entry)
    axes = needle_view_axes(entry, target)
    for name in ("axial", "coronal"):
        u, v = axes[name]
        np.testing.assert_allclose(v, -d)  # the needle runs top (entry) to bottom
        assert abs(u @ d) < 1e-9
    u, v = axes["sagittal"]
    np.testing.assert_allclose(np.cross(u, v), d, atol=1e-9)  # bull's-eye looks down it


def test_needle_views_follow_the_needle(window, qtbot):
    window._add_trajectory(window.cursor + [-30.0, 50.0, 10.0], window.cursor + [0.0, 10.0, 0.0])
    (node,) = window.scene.nodes_of(TrajectoryNode)
    window.act_needle_views.setChecked(True)
    eye = window.slice_widgets["sagittal"].slice_view
    d = np.subtract(node.target, node.entry)
    np.testing.assert_allclose(eye.frame.w, d / np.linalg.norm(d), atol=1e-9)
    np.testing.assert_allclose(window.cursor, node.target)
    # Scrolling the bull's-eye moves along the needle.
    before = window.cursor.copy()
    window.set_cursor(eye.scroll(-5))
    moved = window.cursor - before
    assert abs(abs(moved @ (d / np.linalg.norm(d))) - np.linalg.norm(moved)) < 1e-6
    window.act_needle_views.setChecked(False)
    assert not eye.custom_axes


def test_keyboard_nudge_moves_the_entry_in_the_view_plane(window, qtbot):
    window._add_trajectory(window.cursor + [-30.0, 50.0, 0.0], window.cursor + [0.0, 10.0, 0.0])
    (node,) = window.scene.nodes_of(TrajectoryNode)
    start = np.asarray(node.entry)
    for _ in range(4):
        assert window.nudge_needle("axial", "entry", right=1, up=0)
    # Screen right in the axial view is the patient's left (+x).
    np.testing.assert_allclose(np.asarray(node.entry) - start, [4.0, 0.0, 0.0], atol=1e-9)
    window.act_undo.trigger()  # four nudges, one step
    np.testing.assert_allclose(node.entry, start)


def test_alt_arrow_keys_nudge_the_entry_not_the_slice(window, qtbot):
    """Real key presses in a focused slice view: Alt+arrow moves the needle's entry by
    1 mm in that view's plane (Alt+Shift: the target) and does not scroll the view."""
    from PySide6.QtCore import Qt
    from PySide6.QtTest import QTest

    window._add_trajectory(window.cursor + [-30.0, 50.0, 0.0], window.cursor + [0.0, 10.0, 0.0])
    (node,) = window.scene.nodes_of(TrajectoryNode)
    axial = window.slice_widgets["axial"]
    window._on_view_hovered("axial")
    entry, target, depth = np.asarray(node.entry), np.asarray(node.target), window.cursor[2]
    for _ in range(3):
        QTest.keyClick(axial.canvas, Qt.Key.Key_Left, Qt.KeyboardModifier.AltModifier)
    QTest.keyClick(axial.canvas, Qt.Key.Key_Up, Qt.KeyboardModifier.AltModifier)
    # Screen left in the axial view is the patient's right (-x); screen up is anterior (-y).
    np.testing.assert_allclose(np.asarray(node.entry) - entry, [-3.0, -1.0, 0.0], atol=1e-9)
    np.testing.assert_allclose(node.target, target)
    assert window.cursor[2] == depth  # the slice did not move
    mods = Qt.KeyboardModifier.AltModifier | Qt.KeyboardModifier.ShiftModifier
    QTest.keyClick(axial.canvas, Qt.Key.Key_Right, mods)
    np.testing.assert_allclose(np.asarray(node.target) - target, [1.0, 0.0, 0.0], atol=1e-9)
    window.act_undo.trigger()  # the target's nudge
    window.act_undo.trigger()  # the entry's four nudges: one step
    np.testing.assert_allclose(node.entry, entry)
    np.testing.assert_allclose(node.target, target)
    # Without Alt the arrows still scroll.
    QTest.keyClick(axial.canvas, Qt.Key.Key_Up)
    assert window.cursor[2] != depth


CASE01 = Path(__file__).resolve().parents[2] / "sample_data" / "case01_l2_lytic_rfa_cement"


def _click_3d(window, lps) -> None:
    """Click the 3D view where ``lps`` is drawn."""
    renderer = window.view3d.view3d.renderer
    renderer.SetWorldPoint(*map(float, lps), 1.0)
    renderer.WorldToDisplay()
    x, y, _ = renderer.GetDisplayPoint()
    canvas = window.view3d.canvas
    ratio = canvas.devicePixelRatioF()
    pos = QPoint(int(round(x / ratio)), int(round((canvas.height() * ratio - 1 - y) / ratio)))
    _mouse(canvas, "press", pos)
    _mouse(canvas, "release", pos)


def test_entry_picked_on_the_skin_in_3d(window, qtbot):
    """Looking at the patient's back in 3D, a click puts the entry on the back's skin,
    straight along the line of sight; looking at the belly, the click lands on the belly's
    skin, not on the CT table the prone patient (case01, HFP) lies on."""
    import json

    from guideplan.io import load_series
    from guideplan.io.seg_io import read_labelmap

    phantom = window.planning
    window.open_path(CASE01, pick_planning=True)
    qtbot.waitUntil(
        lambda: window.planning is not phantom and window.body_coarse is not None,
        timeout=60000,
    )
    truth = json.loads((CASE01 / "truth" / "truth.json").read_text())
    target = np.array(truth["lesion"]["center_lps"], dtype=float)
    camera = window.view3d.view3d.renderer.GetActiveCamera()
    camera.SetFocalPoint(*target)
    camera.SetPosition(*(target + [0.0, 700.0, 0.0]))  # behind the patient
    camera.SetViewUp(0.0, 0.0, 1.0)
    window.view3d.view3d.renderer.ResetCameraClippingRange()
    window.renders.flush()

    # Navigate tool: the crosshair jumps to the skin point.
    _click_3d(window, target)
    body = read_labelmap(CASE01 / "truth" / "body.nrrd")
    ct = load_series(CASE01 / "ct")
    hit = window.cursor.copy()
    np.testing.assert_allclose(hit[[0, 2]], target[[0, 2]], atol=1.0)  # on the sight line
    inside = body.array[tuple(body.physical_to_nearest_index(hit + [0, -2.0, 0])[::-1])]
    outside = body.array[tuple(body.physical_to_nearest_index(hit + [0, 2.0, 0])[::-1])]
    assert inside and not outside, "the picked point is not on the back's skin"
    assert ct.value_at(hit + [0, 3.0, 0]) < -500  # air behind it

    # From the front the table comes first along the line of sight: skipped, the belly's
    # skin is the hit.
    camera.SetPosition(*(target - [0.0, 700.0, 0.0]))
    window.view3d.view3d.renderer.ResetCameraClippingRange()
    window.renders.flush()
    _click_3d(window, target)
    front = window.cursor.copy()
    np.testing.assert_allclose(front[[0, 2]], target[[0, 2]], atol=1.0)
    inside = body.array[tuple(body.physical_to_nearest_index(front + [0, 2.0, 0])[::-1])]
    outside = body.array[tuple(body.physical_to_nearest_index(front + [0, -2.0, 0])[::-1])]
    assert inside and not outside, "the picked point is not on the belly's skin"
    assert ct.value_at(front + [0, -3.0, 0]) < -500  # air between the belly and the table
    table = [ct.value_at(front - [0.0, d, 0.0]) for d in range(4, 30)]
    assert max(v for v in table if v is not None) > 0, "no table in front of the belly"
    camera.SetPosition(*(target + [0.0, 700.0, 0.0]))  # behind the patient again
    window.view3d.view3d.renderer.ResetCameraClippingRange()
    window.renders.flush()

    # Trajectory tool: target in the axial view, then the entry on the skin in 3D.
    window.set_tool("trajectory")
    window._pending_points = [target]
    aim = target + [25.0, 0.0, 0.0]  # 25 mm to the patient's left
    _click_3d(window, aim)
    (node,) = window.scene.nodes_of(TrajectoryNode)
    np.testing.assert_allclose(node.target, target)
    entry = np.asarray(node.entry)
    assert entry[1] > target[1] + 40  # posterior skin
    assert entry[0] > target[0] + 15  # on the left: the screen's left, seen from behind
    eye = np.array(camera.GetPosition())
    sight = (aim - eye) / np.linalg.norm(aim - eye)
    off_line = (entry - eye) - ((entry - eye) @ sight) * sight
    assert np.linalg.norm(off_line) < 1.5  # on the line of sight (within a pixel)
    window.scene.history.mark_clean()


def test_suggestions_default_to_the_back_of_a_prone_planning_ct(window, qtbot):
    """case01's planning CT is prone (HFP): with the panel's default position ('from the
    images'), the suggested entry is on the posterior skin."""
    import json

    phantom = window.planning
    window.open_path(CASE01, pick_planning=True)
    qtbot.waitUntil(
        lambda: (
            window.planning is not phantom
            and getattr(window.path_ctx, "volume", None) is window.planning.volume
        ),
        timeout=60000,
    )
    assert window.planning.volume.meta["patient_position"] == "HFP"
    assert window.trajectory_panel.position.currentData() in (None, "")  # from the images
    truth = json.loads((CASE01 / "truth" / "truth.json").read_text())
    target = np.array(truth["lesion"]["center_lps"], dtype=float)
    start = target + [0.0, -60.0, 0.0]  # an anterior first guess
    window._add_trajectory(tuple(start), tuple(target))
    (node,) = window.scene.nodes_of(TrajectoryNode)
    window.suggest_entries()
    qtbot.waitUntil(lambda: not np.allclose(node.entry, start), timeout=120000)
    entry = np.asarray(node.entry)
    assert entry[1] > target[1] + 30, entry  # through the back
    window.scene.history.mark_clean()


def test_rename_and_recolour_a_needle_undoably(window, qtbot):
    window._add_trajectory(window.cursor + [-30.0, 50.0, 0.0], window.cursor + [0.0, 10.0, 0.0])
    (node,) = window.scene.nodes_of(TrajectoryNode)
    item = window.trajectory_panel.list.item(0)
    item.setText("Left transpedicular")  # what the list's editor does on double-click
    assert node.name == "Left transpedicular"
    assert window.trajectory_panel.list.item(0).text() == "Left transpedicular"
    window.set_trajectory_colour(node.id, (1.0, 0.0, 1.0))
    assert tuple(node.display.color) == (1.0, 0.0, 1.0)
    swatch = window.trajectory_panel.list.item(0).icon().pixmap(12, 12).toImage()
    colour = swatch.pixelColor(6, 6)
    assert (colour.red(), colour.green(), colour.blue()) == (255, 0, 255)
    window.act_undo.trigger()
    window.act_undo.trigger()
    assert node.name == "Needle 1" and tuple(node.display.color) != (1.0, 0.0, 1.0)
