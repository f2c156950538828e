"""Segmentation in the window: one-click lesion, brush strokes as single undo steps,
label overlay drawn, metrics shown, structures feed the trajectory checks."""

import numpy as np
import pytest

from guideplan.model.nodes import LabelMapNode
from tests.ui.test_main_window import _drag, _mouse
from tests.ui.test_trajectory_gui import _to_qt


def test_grow_lesion_on_click_then_undo(window, qtbot):
    centre = window.planning.volume.center_lps() + np.array([35.0, 0.0, 0.0])  # LEFT marker
    window.set_cursor(centre)
    window.segment_panel.select_label(1)
    window.set_tool("grow")
    axial = window.slice_widgets["axial"]
    pos = _to_qt(axial, centre)
    _mouse(axial.canvas, "press", pos)
    _mouse(axial.canvas, "release", pos)
    qtbot.waitUntil(
        lambda: (
            bool(window.scene.nodes_of(LabelMapNode))
            and window.scene.nodes_of(LabelMapNode)[0].array.any()
        ),
        timeout=30000,
    )
    (node,) = window.scene.nodes_of(LabelMapNode)
    grown = np.count_nonzero(node.array == 1) * 8.0 / 1000.0  # 2 mm voxels -> mL
    assert grown == pytest.approx(4 / 3 * np.pi * 5**3 / 1000.0, rel=0.5)

    qtbot.waitUntil(lambda: "mL" in window.segment_panel.metrics.text(), timeout=30000)
    window.act_undo.trigger()
    assert not node.array.any()


def test_brush_stroke_is_one_step_and_drawn(window, qtbot):
    window.set_tool("brush")
    window.segment_panel.select_label(4)  # spinal canal
    window.segment_panel.size.setValue(4.0)
    axial = window.slice_widgets["axial"]
    centre = window.cursor.copy()
    _drag(axial.canvas, _to_qt(axial, centre), _to_qt(axial, centre + [20.0, 0.0, 0.0]))
    (node,) = window.scene.nodes_of(LabelMapNode)
    painted = node.array == 4
    assert painted.any()
    ks = np.unique(np.nonzero(painted)[0])
    assert len(ks) == 1  # a 2D disc stroke stays in the slice it was drawn on
    steps = len(window.scene.history)
    window.act_undo.trigger()
    assert not (node.array == 4).any()
    assert len(window.scene.history) == steps - 1
    window.act_redo.trigger()
    assert (node.array == 4).any()
    # The painted 'canal' now counts as a structure to spare for needle checks.
    qtbot.waitUntil(
        lambda: any(f.name == "spinal canal" for f in window.path_ctx.structures), timeout=30000
    )
    assert window.label_layers["axial"].actor.GetVisibility()
