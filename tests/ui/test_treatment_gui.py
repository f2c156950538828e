"""Treatment zones in the window: devices, settings, undo, cement slider, several
cryoprobes, the catalog dialog, and zones in the needle views."""

import numpy as np
import pytest
from PySide6.QtCore import Qt

from guideplan.model.commands import AddNode
from guideplan.model.nodes import LabelInfo, LabelMapNode, ZoneNode
from guideplan.planning.devices import user_catalog_entries
from guideplan.render.zone_layer import CHANNELS_BY_NAME, compose_rgba

TIMEOUT = 30000


def _lps_grid(vol):
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in vol.array.shape], indexing="ij"), -1)
    return vol.index_to_physical(ijk[..., ::-1].reshape(-1, 3)).reshape(*vol.array.shape, 3)


@pytest.fixture
def planned(window):
    """The marker phantom with a 'lesion' ball (r 6 mm) in a 'bone' ball (r 14 mm)."""
    vol = window.planning.volume
    centre = vol.center_lps()
    dist = np.linalg.norm(_lps_grid(vol) - centre, axis=-1)
    labels = np.zeros(vol.array.shape, np.uint8)
    labels[dist <= 14.0] = 2
    labels[dist <= 6.0] = 1
    window.scene.execute(
        AddNode(
            LabelMapNode(
                name="Segmentation",
                array=labels,
                reference_id=window.planning.id,
                labels={1: LabelInfo("lesion", (1, 0, 0)), 2: LabelInfo("bone", (1, 1, 0.8))},
            )
        )
    )
    return window, centre


def _evaluated(window, qtbot, words: str) -> str:
    qtbot.waitUntil(lambda: words in window.treatment_panel.summary.text(), timeout=TIMEOUT)
    return window.treatment_panel.summary.text()


def _zone_ml(window, node) -> float:
    outcome = next(o for o in window._zone_plan.outcomes if o.node.id == node.id)
    return outcome.zone.volume_ml


def _settle(window, qtbot):
    """Wait until the zone computation triggered by the last edit has been shown."""
    qtbot.wait(400)  # the zone timer (150 ms) and the slider's debounce (250 ms)
    qtbot.waitUntil(
        lambda: (
            not window._zone_timer.isActive()
            and (window._zone_task is None or not window._zone_task.running)
        ),
        timeout=TIMEOUT,
    )
    qtbot.wait(50)


def test_rf_zone_power_time_undo_redo(planned, qtbot):
    window, centre = planned
    panel = window.treatment_panel
    window._add_trajectory(centre + [-40.0, -40.0, 0.0], centre)
    panel.device.setCurrentIndex(panel.device.findData("mw-antenna-14g"))
    qtbot.mouseClick(panel.add_button, Qt.MouseButton.LeftButton)
    (zone,) = window.scene.nodes_of(ZoneNode)
    first = _evaluated(window, qtbot, "covers")
    assert panel.power.isVisible() and panel.time.isVisible()
    assert not panel.volume_row.isVisible()
    big = _zone_ml(window, zone)
    assert window.zone_layers["axial"].actor.GetVisibility()
    assert panel.estimate.isVisible() and "estimates" in panel.estimate.text()

    # Shorter time, lower power: a smaller zone and another evaluation text.
    panel.time.setValue(120)
    panel.power.setValue(60)
    panel._emit()
    assert zone.parameters["time_s"] == 120 and zone.parameters["power_w"] == 60
    _settle(window, qtbot)
    small = _zone_ml(window, zone)
    assert small < 0.5 * big
    assert panel.summary.text() != first

    window.act_undo.trigger()  # the settings
    assert "time_s" not in zone.parameters
    _settle(window, qtbot)
    assert _zone_ml(window, zone) == pytest.approx(big, rel=1e-6)
    assert panel.time.value() == 0  # 'chart' again
    window.act_redo.trigger()
    _settle(window, qtbot)
    assert _zone_ml(window, zone) == pytest.approx(small, rel=1e-6)
    assert panel.time.value() == 120

    window.act_undo.trigger()
    window.act_undo.trigger()  # the zone itself
    assert zone.id not in window.scene
    _settle(window, qtbot)
    assert not window.zone_layers["axial"].actor.GetVisibility()
    assert window._zone_actors == []


def test_cement_slider_changes_the_filled_volume(planned, qtbot):
    window, centre = planned
    panel = window.treatment_panel
    window._add_trajectory(centre + [0.0, -45.0, 0.0], centre)
    window.add_zone("trocar-11g-125")
    (zone,) = window.scene.nodes_of(ZoneNode)
    _evaluated(window, qtbot, "Cement")
    assert panel.volume_row.isVisible() and not panel.time.isVisible()
    qtbot.waitUntil(lambda: "Injected" in panel.cement_info.text(), timeout=TIMEOUT)
    before = window._zone_plan.evaluation.cement_result.placed_ml
    assert before == pytest.approx(zone.parameters["volume_ml"], rel=0.05)

    # Several moves in one gesture: one computation after the debounce, one undo step.
    undo_depth = len(window.scene.history._undo)
    start = zone.parameters["volume_ml"]
    for value in (1.0, 1.5, 2.0):
        panel.volume.setValue(round(value / 0.1))
    assert zone.parameters["volume_ml"] == start  # debounced: not yet
    _settle(window, qtbot)
    assert zone.parameters["volume_ml"] == pytest.approx(2.0)
    after = window._zone_plan.evaluation.cement_result.placed_ml
    assert after == pytest.approx(2.0, rel=0.05) and after < before
    assert "Injected <b>2.0 mL</b>" in panel.cement_info.text()
    assert len(window.scene.history._undo) == undo_depth + 1
    cement_bit = CHANNELS_BY_NAME["cement"].bit
    layer = window.zone_layers["axial"]
    assert layer.volume is not None and np.any(layer.volume.array & cement_bit)

    window.act_undo.trigger()
    assert zone.parameters["volume_ml"] == start


def test_two_cryoprobes_merge_and_too_wide_spacing_is_warned(planned, qtbot):
    window, centre = planned
    panel = window.treatment_panel
    window._add_trajectory(centre + [-6.0, -45.0, 0.0], centre + [-6.0, 0.0, 0.0])
    window.add_zone("cryo-17g-rod")
    (zone,) = window.scene.nodes_of(ZoneNode)
    _evaluated(window, qtbot, "1 probe;")
    one = window._zone_plan.outcomes[0].zone
    window._add_trajectory(centre + [6.0, -45.0, 0.0], centre + [6.0, 0.0, 0.0])
    window.add_zone("cryo-17g-rod")  # a second probe of the same zone, not a new zone
    assert window.scene.nodes_of(ZoneNode) == [zone]
    assert len(zone.parameters["probe_trajectory_ids"]) == 1
    text = _evaluated(window, qtbot, "2 probes")
    two = window._zone_plan.outcomes[0].zone
    assert two.volume_ml > 1.5 * one.volume_ml  # merged between the probes
    assert "CRYO_SPACING_TOO_WIDE" not in text
    # The panel lists both needles as probes; the three shells are drawn and nested.
    assert panel.probes.isVisible() and panel.probes.count() == 2
    flags = window.zone_layers["axial"].volume.array
    bits = [CHANNELS_BY_NAME[n].bit for n in ("cryo 0 °C", "cryo -20 °C", "cryo -40 °C")]
    counts = [np.count_nonzero(flags & b) for b in bits]
    assert counts[0] > counts[1] > counts[2] > 0
    assert not np.any(((flags & bits[2]) != 0) & ((flags & bits[1]) == 0))  # -40 in -20
    assert len(window._zone_actors) == 3  # one 3D shell per isotherm

    # A third probe far away: the spacing warning.
    window._add_trajectory(centre + [40.0, -45.0, 0.0], centre + [40.0, 0.0, 0.0])
    window.add_zone("cryo-17g-rod")
    text = _evaluated(window, qtbot, "3 probes")
    assert "CRYO_SPACING_TOO_WIDE" in text
    # Unchecking it in the probe list takes it out again (undoable).
    item = panel.probes.item(2)
    item.setCheckState(Qt.CheckState.Unchecked)
    assert len(zone.parameters["probe_trajectory_ids"]) == 1
    text = _evaluated(window, qtbot, "2 probes")
    assert "CRYO_SPACING_TOO_WIDE" not in text


def test_zones_follow_the_needle_views(planned, qtbot):
    window, centre = planned
    window._add_trajectory(centre + [-30.0, -30.0, 20.0], centre)
    window.add_zone("rf-cooltip-17g-3cm")
    _evaluated(window, qtbot, "covers")
    window.act_needle_views.setChecked(True)
    qtbot.wait(100)
    window.render_all()
    for name, widget in window.slice_widgets.items():
        layer = window.zone_layers[name]
        assert widget.slice_view.custom_axes
        # The layer resliced on the view's oblique plane: its grid is the view's grid and
        # the zone (around the needle tip, on every needle plane) is drawn.
        assert layer._drawn_key == layer._view_key()
        assert layer.actor.GetVisibility(), name
        image = layer.image
        assert image.GetOrigin()[:2] == pytest.approx(
            widget.slice_view.reslice.GetOutputOrigin()[:2]
        )
        # The tip lies in the zone: the layer's pixel under it is coloured.
        x, y, _ = widget.slice_view.frame.to_plane(centre)
        ox, oy, _ = image.GetOrigin()
        sx, sy, _ = image.GetSpacing()
        nx = image.GetDimensions()[0]
        i, j = round((x - ox) / sx), round((y - oy) / sy)
        alpha = image.GetPointData().GetScalars().GetTuple4(j * nx + i)[3]
        assert alpha > 0, name


def test_catalog_dialog_adds_a_device_to_the_combo(window, qtbot):
    panel = window.treatment_panel
    assert panel.device.findData("rf-mine-17g") < 0
    window.open_catalog_dialog()
    dialog = window.catalog_dialog
    qtbot.waitExposed(dialog)
    # The built-in charts are shown: the cryoprobe's isotherm table.
    dialog.select("cryo-17g-rod")
    headers = [
        dialog.table.horizontalHeaderItem(c).text() for c in range(dialog.table.columnCount())
    ]
    assert "-40 °C width" in headers and dialog.table.rowCount() == 2
    assert dialog.approximate.isChecked() and "PMC" in dialog.source.toPlainText()
    # where a reader finds each number, and its limits
    refs = dialog.references.text()
    assert "PMID 19695903" in refs and "limits: agar phantom" in refs
    assert "0 °C edge past the tip (mm)" in headers
    chart = dialog.entry_from_form()["zone"]
    assert chart["rows"][1]["far_edge_beyond_tip_mm"] == 5.0

    dialog.new_device()
    dialog.id_edit.setText("rf-mine-17g")
    dialog.name_edit.setText("My RF probe")
    dialog.gauge.setValue(17)
    dialog.diameter.setValue(1.47)
    dialog.length.setValue(150)
    dialog.source.setPlainText("IFU table 2")
    # A bad cell: a clear message, nothing saved.
    for col, text in enumerate(["300", "30", "abc", "10"]):
        dialog.table.item(0, col).setText(text)
    assert not dialog.save()
    assert "not a number" in dialog.message.text() and "Width" in dialog.message.text()
    assert user_catalog_entries() == []
    dialog.table.item(0, 2).setText("20")
    assert dialog.save(), dialog.message.text()
    assert [e["id"] for e in user_catalog_entries()] == ["rf-mine-17g"]
    assert panel.device.findData("rf-mine-17g") >= 0
    assert window.catalog.get("rf-mine-17g").name == "My RF probe"
    # Duplicate and edit: a second device.
    dialog.duplicate_device()
    dialog.table.item(0, 2).setText("25")
    assert dialog.save()
    assert window.catalog.get("rf-mine-17g-copy").data["zone"]["rows"][0]["width_mm"] == 25
    # A bipolar bone RF probe from its IFU: the zone ends at the tip, so no offset column.
    dialog.new_device()
    dialog.kind.setCurrentIndex(dialog.kind.findData("rf_bipolar"))
    titles = [
        dialog.table.horizontalHeaderItem(c).text() for c in range(dialog.table.columnCount())
    ]
    assert titles == ["Time (s)", "Length (mm)", "Width (mm)"]
    dialog.id_edit.setText("rf-bipolar-mine")
    dialog.name_edit.setText("My bipolar bone RF")
    dialog.diameter.setValue(1.65)
    dialog.length.setValue(150)
    for col, text in enumerate(["450", "30", "20"]):
        dialog.table.item(0, col).setText(text)
    assert dialog.save(), dialog.message.text()
    assert window.catalog.get("rf-bipolar-mine").kind == "rf_bipolar"
    assert panel.device.findData("rf-bipolar-mine") >= 0
    dialog.accept()


def test_compose_rgba_draws_nested_shells_distinctly():
    flags = np.zeros((20, 20), np.uint8)
    flags[2:18, 2:18] |= CHANNELS_BY_NAME["cryo 0 °C"].bit
    flags[6:14, 6:14] |= CHANNELS_BY_NAME["cryo -40 °C"].bit
    rgba = compose_rgba(flags)
    assert rgba[0, 0, 3] == 0  # outside: transparent
    outer_edge, outer_fill, inner_fill = rgba[2, 10], rgba[4, 10], rgba[10, 10]
    assert outer_edge[3] > 200 and 0 < outer_fill[3] < outer_edge[3]
    assert not np.array_equal(outer_fill[:3], inner_fill[:3])


def test_dragging_the_tip_moves_the_zone_without_rebuilding_the_context(planned, qtbot):
    """A needle dragged near the lesion: the zone follows, the treatment context
    (structure distance maps, skin) is reused; a tip moved far away rebuilds it."""
    from guideplan.model.commands import SetField
    from guideplan.model.nodes import TrajectoryNode

    window, centre = planned
    window._add_trajectory(centre + [-40.0, -40.0, 0.0], centre)
    (needle,) = window.scene.nodes_of(TrajectoryNode)
    window.add_zone("mw-antenna-14g")
    _evaluated(window, qtbot, "covers")
    context = window._zone_ctx[1]
    before = window._zone_plan.outcomes[0].zone.center_lps.copy()
    entry = np.asarray(needle.entry)
    for step in range(1, 4):  # the needle moved sideways by 2 mm, three times
        shift = np.array([2.0 * step, 0.0, 0.0])
        window.scene.execute(SetField(needle.id, "target", tuple(centre + shift)))
        window.scene.execute(SetField(needle.id, "entry", tuple(entry + shift)))
    _settle(window, qtbot)
    after = window._zone_plan.outcomes[0].zone.center_lps
    np.testing.assert_allclose(after - before, [6.0, 0.0, 0.0], atol=0.6)
    assert window._zone_ctx[1] is context
    far = tuple(np.asarray(centre) + [0.0, 0.0, 60.0])
    window.scene.execute(SetField(needle.id, "target", far))
    _settle(window, qtbot)
    assert window._zone_ctx[1] is not context


def test_a_zone_reaching_the_canal_is_warned_without_segmenting_it(window, qtbot):
    """Before any segmentation the canal found automatically on the CT is checked: an
    RF zone on the lumbar sample's lesion (which touches the canal) is warned about."""
    import json
    from pathlib import Path

    case = Path(__file__).resolve().parents[2] / "sample_data" / "case01_l2_lytic_rfa_cement"
    phantom = window.planning
    window.open_path(case, pick_planning=True)
    qtbot.waitUntil(
        lambda: window.planning is not phantom and bool(window.path_ctx.structures),
        timeout=60000,
    )
    assert not window.scene.nodes_of(LabelMapNode)
    target = np.array(
        json.loads((case / "truth" / "truth.json").read_text())["lesion"]["center_lps"]
    )
    window._add_trajectory(target + [-45.0, 85.0, -10.0], target)
    window.add_zone("rf-cooltip-17g-3cm")
    text = _evaluated(window, qtbot, "THERMAL_RISK")
    assert "NERVE_THERMAL_RISK" in text or "CORD_THERMAL_RISK" in text
    assert "canal" in text.lower()
    window.scene.history.mark_clean()


def test_a_sample_case_opened_in_the_window_knows_its_level(window, qtbot):
    """Opening the lumbar sample carries its indication and target (L2: below the
    conus) into the plan, so a zone reaching the canal is a nerve-root risk."""
    from pathlib import Path

    case = Path(__file__).resolve().parents[2] / "sample_data" / "case01_l2_lytic_rfa_cement"
    phantom = window.planning
    window.open_path(case, pick_planning=True)
    qtbot.waitUntil(lambda: window.planning is not phantom, timeout=60000)
    assert window.scene.info["target"]["vertebral_level"] == "L2"
    assert window.scene.info["indication"]
    window.scene.history.mark_clean()


def test_the_panel_shows_the_fracture_score_with_each_components_origin():
    from guideplan.ui.treatment_panel import fracture_lines

    fracture = {
        "score": {
            "system": "SINS",
            "total": None,
            "min": 4,
            "max": 11,
            "complete": False,
            "category": "stable to potentially unstable (indeterminate)",
            "components": [
                {"name": "location", "points": 2, "value": "mobile", "origin": "level"},
                {"name": "pain", "points": None, "value": None, "origin": "unknown"},
            ],
        },
        "consolidation": {"fill_pct": 12.2, "target_pct": 16.2, "measure": "vertebral body"},
    }
    text = "<br>".join(fracture_lines(fracture))
    assert "SINS 4–11" in text and "location 2 (mobile, level)" in text
    assert "pain ? (not known, unknown)" in text
    assert "12.2 % of the vertebral body (target 16.2 %)" in text
    assert fracture_lines({"score": None}) == []
