"""A treatment zone on a needle in the window: shown, evaluated, undoable."""

import numpy as np

from guideplan.model.commands import AddNode
from guideplan.model.nodes import LabelInfo, LabelMapNode, ZoneNode


def test_rf_zone_on_a_needle_is_evaluated_and_undoable(window, qtbot):
    vol = window.planning.volume
    centre = vol.center_lps()
    # A 'lesion' label: a ball of radius 6 mm at the centre.
    labels = np.zeros(vol.array.shape, np.uint8)
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in vol.array.shape], indexing="ij"), -1)
    lps = vol.index_to_physical(ijk[..., ::-1].reshape(-1, 3)).reshape(*vol.array.shape, 3)
    labels[np.linalg.norm(lps - centre, axis=-1) <= 6.0] = 1
    window.scene.execute(
        AddNode(
            LabelMapNode(
                name="Segmentation",
                array=labels,
                reference_id=window.planning.id,
                labels={1: LabelInfo("lesion", (1, 0, 0))},
            )
        )
    )
    window._add_trajectory(centre + [-40.0, 40.0, 0.0], centre)
    window.add_zone("rf-cooltip-17g-3cm")
    (zone,) = window.scene.nodes_of(ZoneNode)
    qtbot.waitUntil(lambda: "covers" in window.treatment_panel.summary.text(), timeout=30000)
    assert "estimates" in window.treatment_panel.summary.text()
    assert window.zone_layers["axial"].actor.GetVisibility()
    window.act_undo.trigger()
    assert zone.id not in window.scene
