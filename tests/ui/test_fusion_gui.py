"""Fusion in the window: add a prior, see it, nudge, undo, register, checkerboard, save
and reopen."""

import numpy as np
import pytest

from guideplan.io.dicom_write import SeriesSpec, write_volume
from guideplan.model.fusion import priors
from guideplan.ui.main_window import MainWindow
from tests.render.markers import marker_volume

SHIFT = np.array([6.0, -4.0, 3.0])


@pytest.fixture(scope="module")
def prior_series(tmp_path_factory):
    """The same phantom scanned again with the patient 'moved': its content sits at
    LPS + SHIFT, so the true fixed->moving transform is a translation by SHIFT."""
    vol = marker_volume()
    vol.origin = tuple(np.add(vol.origin, SHIFT))
    folder = tmp_path_factory.mktemp("prior")
    write_volume(
        vol, folder, SeriesSpec(modality="CT", seed="prior-shift", series_description="prior CT")
    )
    return folder


def _add_prior(window, qtbot, folder):
    window.add_prior_from(folder)
    qtbot.waitUntil(lambda: bool(priors(window.scene)), timeout=20000)
    return priors(window.scene)[0]


def test_add_nudge_undo_register(window, qtbot, prior_series):
    _, transform = _add_prior(window, qtbot, prior_series)
    assert window.fusion_layers["axial"].actor.GetVisibility()
    np.testing.assert_allclose(transform.matrix, np.eye(4))

    for _ in range(3):
        assert window.nudge_prior("axial", right=1, up=0, rotate=False)
    # Moving the prior 3 mm to the screen's right in axial = 3 mm toward the patient's
    # left (+x): T becomes a translation by -3 mm in x (see model.fusion.nudge).
    np.testing.assert_allclose(transform.matrix[:3, 3], [-3.0, 0.0, 0.0], atol=1e-9)
    window.act_undo.trigger()  # the three nudges are one step
    np.testing.assert_allclose(transform.matrix, np.eye(4))

    window.register_prior("rigid", local=False)
    qtbot.waitUntil(lambda: bool(transform.metric), timeout=60000)
    np.testing.assert_allclose(transform.matrix[:3, 3], SHIFT, atol=1.0)
    np.testing.assert_allclose(transform.matrix[:3, :3], np.eye(3), atol=0.02)
    window.act_undo.trigger()
    np.testing.assert_allclose(transform.matrix, np.eye(4))
    window.act_redo.trigger()
    assert "Registered" in window.fusion_panel.quality.text()


def test_checkerboard_and_visibility_are_plan_edits(window, qtbot, prior_series):
    node, _ = _add_prior(window, qtbot, prior_series)
    window._set_prior_display("display.fusion", "checker")
    assert node.display.fusion == "checker"
    assert window.fusion_layers["axial"].mode == "checker"
    window._set_prior_display("display.visible", False)
    assert not window.fusion_layers["axial"].actor.GetVisibility()
    window.act_undo.trigger()
    assert node.display.visible


def test_prior_and_transform_survive_save_and_reopen(window, qtbot, prior_series, tmp_path):
    _, transform = _add_prior(window, qtbot, prior_series)
    window.nudge_prior("coronal", right=0, up=2, rotate=False)
    matrix = transform.matrix.copy()
    case = tmp_path / "fused.gplan"
    assert window._save_to(case)
    again = MainWindow()
    qtbot.addWidget(again)
    again.show()
    again.open_path(case)
    qtbot.waitUntil(lambda: again.planning is not None, timeout=20000)
    ((node, reopened),) = priors(again.scene)
    np.testing.assert_allclose(reopened.matrix, matrix, atol=1e-9)
    assert node.volume.meta["description"] == "prior CT"
    assert again.fusion_layers["axial"].volume is node.volume


def test_landmark_pairs_drive_a_landmark_only_registration(window, qtbot, prior_series):
    _, transform = _add_prior(window, qtbot, prior_series)
    centre = window.planning.volume.center_lps()
    offsets = [(20.0, 0.0, 0.0), (0.0, -20.0, 0.0), (0.0, 0.0, 25.0), (-15.0, 10.0, -10.0)]
    for offset in offsets:
        ct_point = centre + np.array(offset)
        window.add_landmark(ct_point)  # the feature on the CT
        window.add_landmark(ct_point + SHIFT)  # the same feature where the prior shows it
    assert len(window.landmark_pairs()) == 4
    window.fusion_panel.landmarks_only.setChecked(True)
    window.register_prior("rigid", local=False)
    qtbot.waitUntil(lambda: bool(transform.metric), timeout=60000)
    np.testing.assert_allclose(transform.matrix[:3, 3], SHIFT, atol=1e-6)
    assert transform.metric["method"] == "landmarks"
    assert transform.metric["tre_mm"] < 1e-6
    assert "TRE" in window.fusion_panel.quality.text()
    window.clear_landmarks()
    assert window.landmark_pairs() == []
    window.act_undo.trigger()
    assert len(window.landmark_pairs()) == 4


def test_ctrl_drag_moves_the_prior_as_one_step(window, qtbot, prior_series):
    from PySide6.QtCore import QPoint, Qt

    from tests.ui.test_main_window import _mouse

    _, transform = _add_prior(window, qtbot, prior_series)
    canvas = window.slice_widgets["axial"].canvas
    start, end = QPoint(200, 200), QPoint(260, 200)
    ctrl = Qt.KeyboardModifier.ControlModifier
    for kind, pos, buttons in (
        ("press", start, None),
        ("move", QPoint(230, 200), None),
        ("move", end, None),
        ("release", end, None),
    ):
        _mouse(canvas, kind, pos, buttons=buttons, modifiers=ctrl)
    moved = -transform.matrix[0, 3]  # the prior moved toward the patient's left (+x)
    mm = 60 * window.slice_widgets["axial"].slice_view.mm_per_pixel()
    assert moved == pytest.approx(mm * canvas.devicePixelRatioF(), rel=0.05)
    window.act_undo.trigger()
    np.testing.assert_allclose(transform.matrix, np.eye(4))
