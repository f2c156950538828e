"""Segmentation in the window: one-click lesion, brush strokes as single undo steps,
label overlay drawn, metrics shown, structures feed the trajectory checks; outline and
per-label display, re-grow with an adjusted range, threshold in a box or sphere, fill
between slices, islands and margins, growing on a fused prior, and SEG / RTSTRUCT /
.nrrd import and export through the File menu."""

import numpy as np
import pydicom
import pytest
from PySide6.QtWidgets import QApplication, QFileDialog
from vtkmodules.util.numpy_support import vtk_to_numpy

from guideplan.core.labelmap import LabelDiff
from guideplan.io.dicom_write import SeriesSpec, write_volume
from guideplan.io.seg_io import write_labelmap
from guideplan.model.commands import SetFields
from guideplan.model.fusion import priors
from guideplan.model.label_commands import edit_labels
from guideplan.model.nodes import LabelMapNode
from guideplan.processing.segmentation import grow_lesion
from guideplan.ui.workers import _ACTIVE
from tests.io.test_seg_io import _rtstruct
from tests.render.markers import marker_volume
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


# -- helpers ---------------------------------------------------------------------------


@pytest.fixture
def warnings(monkeypatch):
    """The warning dialogs the window shows (title, text), instead of showing them."""
    from PySide6.QtWidgets import QMessageBox

    shown: list[tuple[str, str]] = []
    monkeypatch.setattr(
        QMessageBox,
        "warning",
        staticmethod(lambda parent, title, text, *a: shown.append((title, text))),
    )
    return shown


def _idle(qtbot):
    """Wait until the background tasks (growing, operations, file i/o) have finished."""
    qtbot.waitUntil(lambda: not _ACTIVE, timeout=60000)
    qtbot.wait(20)


def _set_labels(window, values: dict[int, np.ndarray]) -> LabelMapNode:
    """Label voxels (one undo step per label), as a tool would."""
    node = window._labelmap()
    for value, mask in values.items():
        flat = np.flatnonzero(mask)
        edit_labels(window.scene, node.id, LabelDiff.from_values(node.array, flat, value))
    return node


def _cube(shape, centre_kji, half: int) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    k, j, i = centre_kji
    mask[k - half : k + half + 1, j - half : j + half + 1, i - half : i + half + 1] = True
    return mask


def _kji(volume, lps) -> tuple[int, int, int]:
    i, j, k = np.rint(volume.physical_to_index(np.asarray(lps, float))).astype(int)
    return int(k), int(j), int(i)


def _layer_rgba(layer, lps) -> np.ndarray:
    """The RGBA the label layer draws at ``lps`` (on the view's current plane)."""
    layer.colors.Update()
    image = layer.colors.GetOutput()
    nx, ny, _ = image.GetDimensions()
    rgba = vtk_to_numpy(image.GetPointData().GetScalars()).reshape(ny, nx, 4)
    x, y, _ = layer.view.frame.to_plane(np.asarray(lps, float))
    ox, oy, _ = image.GetOrigin()
    sx, sy, _ = image.GetSpacing()
    return rgba[int(round((y - oy) / sy)), int(round((x - ox) / sx))]


def _screen_at(window, widget, lps) -> np.ndarray:
    window.render_all()
    QApplication.processEvents()
    point = widget.canvas.mapToGlobal(_to_qt(widget, lps))
    image = window.screen().grabWindow(0).toImage()  # kept alive while read
    colour = image.pixelColor(point.x(), point.y())
    return np.array([colour.red(), colour.green(), colour.blue()])


def _click(widget, lps):
    pos = _to_qt(widget, lps)
    _mouse(widget.canvas, "press", pos)
    _mouse(widget.canvas, "release", pos)


# -- display ---------------------------------------------------------------------------


def test_outline_mode_and_per_label_visibility(window, qtbot):
    ct = window.planning.volume
    centre = window.cursor.copy()
    k, j, i = _kji(ct, centre)
    lesion = np.zeros(ct.array.shape, bool)
    lesion[k, j - 4 : j + 5, i - 4 : i + 5] = True  # 18 mm square on this axial slice
    bone = np.zeros(ct.array.shape, bool)
    bone[k, j - 4 : j + 5, i + 10 : i + 19] = True
    _set_labels(window, {1: lesion, 2: bone})
    layer, axial = window.label_layers["axial"], window.slice_widgets["axial"]
    inside = centre
    edge = ct.index_to_physical((i + 4, j, k))  # the square's last column
    bone_point = ct.index_to_physical((i + 14, j, k))
    panel = window.segment_panel

    assert panel.display_mode == "fill"
    assert _layer_rgba(layer, inside)[3] == pytest.approx(0.45 * 255, abs=2)
    assert _layer_rgba(layer, edge)[3] == pytest.approx(0.45 * 255, abs=2)
    filled = _screen_at(window, axial, inside)

    panel.set_display_mode("outline")
    assert _layer_rgba(layer, inside)[3] == 0  # the inside is not drawn
    assert tuple(_layer_rgba(layer, edge)) == (230, 26, 26, 255)  # opaque lesion red
    outlined = _screen_at(window, axial, inside)
    assert filled[0] - filled[1] > outlined[0] - outlined[1] + 40  # red tint gone on screen

    panel.set_display_mode("both")
    assert _layer_rgba(layer, inside)[3] == pytest.approx(0.45 * 255, abs=2)
    assert _layer_rgba(layer, edge)[3] == 255

    # Bone is not shown by default (it would tint the whole image); the list turns it on.
    assert _layer_rgba(layer, bone_point)[3] == 0
    panel.set_label_visible(2, True)
    assert _layer_rgba(layer, bone_point)[3] > 0
    panel.set_label_visible(1, False)
    assert _layer_rgba(layer, inside)[3] == 0
    assert _layer_rgba(layer, edge)[3] == 0


# -- growing range -----------------------------------------------------------------------


def test_regrow_with_an_adjusted_range_replaces_the_grow(window, qtbot):
    ct = window.planning.volume
    seed = ct.center_lps() + np.array([35.0, 0.0, 0.0])  # LEFT marker (3000) in 0 HU
    window.set_cursor(seed)
    window.segment_panel.select_label(1)
    window.set_tool("grow")
    panel = window.segment_panel
    assert not panel.regrow.isEnabled()
    _click(window.slice_widgets["axial"], seed)
    _idle(qtbot)
    node = window._labelmap(create=False)
    first = node.array == 1
    assert first.any() and panel.regrow.isEnabled()
    lo, hi = panel.grow_range
    assert 0 < lo < 3000 <= hi  # the marker's range, without the body around it
    steps = len(window.scene.history)

    panel.grow_low.setValue(-200)  # take the 0 HU body in as well
    panel.regrow.click()
    _idle(qtbot)
    wide = np.count_nonzero(node.array == 1)
    assert wide > 5 * np.count_nonzero(first)
    assert "-200" in window.act_undo.text()

    panel.grow_low.setValue(int(lo))
    panel.regrow.click()
    _idle(qtbot)
    narrow = grow_lesion(ct, seed, grow_range=panel.grow_range).full_mask(ct.array.shape)
    np.testing.assert_array_equal(node.array == 1, narrow)  # replaced, not accumulated
    assert np.count_nonzero(narrow) < wide / 5
    assert len(window.scene.history) == steps  # the grow and its re-grows: one step
    window.act_undo.trigger()
    assert not node.array.any()
    window.act_redo.trigger()
    np.testing.assert_array_equal(node.array == 1, narrow)


# -- threshold ---------------------------------------------------------------------------


def test_threshold_in_a_dragged_box_then_a_sphere(window, qtbot):
    ct = window.planning.volume
    spine = window.cursor + np.array([0.0, 15.0, 0.0])  # the 700 HU 'spine' column
    axial = window.slice_widgets["axial"]
    panel = window.segment_panel
    panel.select_label(2)
    panel.thr_low.setValue(600)
    panel.thr_high.setValue(800)
    panel.box_depth.setValue(10.0)
    window.set_tool("threshold")
    assert panel.tool_buttons["threshold"].isChecked()
    _drag(axial.canvas, _to_qt(axial, spine - [12, 12, 0]), _to_qt(axial, spine + [12, 12, 0]))
    node = window._labelmap(create=False)
    labelled = node.array == 2
    ks = np.unique(np.nonzero(labelled)[0])
    k = _kji(ct, spine)[0]
    assert ks.tolist() == list(range(k - 2, k + 3))  # 10 mm deep: 5 slices of 2 mm
    assert np.all(ct.array[labelled] == 700)
    assert np.count_nonzero(labelled) == 5 * np.count_nonzero(ct.array[k] == 700)
    assert not window._pending_points  # the preview is gone
    window.act_undo.trigger()
    assert not node.array.any()

    panel.thr_shape.setCurrentIndex(panel.thr_shape.findData("sphere"))
    _drag(axial.canvas, _to_qt(axial, spine), _to_qt(axial, spine + [6.0, 0, 0]))
    labelled = node.array == 2
    kk, jj, ii = np.nonzero(labelled)
    pts = ct.index_to_physical(np.stack([ii, jj, kk], axis=1).astype(float))
    assert np.linalg.norm(pts - spine, axis=1).max() <= 6.5
    kk, jj, ii = np.nonzero(ct.array == 700)
    pts = ct.index_to_physical(np.stack([ii, jj, kk], axis=1).astype(float))
    near = np.linalg.norm(pts - spine, axis=1) <= 5.5
    assert np.all(labelled[kk[near], jj[near], ii[near]])
    window.act_undo.trigger()
    assert not node.array.any()
    window.act_redo.trigger()
    assert node.array.any()


# -- operations ---------------------------------------------------------------------------


def test_fill_between_slices_in_the_view_orientation(window, qtbot, warnings):
    axial = window.slice_widgets["axial"]
    centre = window.cursor.copy()
    panel = window.segment_panel
    panel.select_label(1)
    panel.size.setValue(6.0)
    window.set_tool("brush")
    window._on_view_hovered("axial")
    window.set_cursor(centre - [0, 0, 6.0])
    _drag(axial.canvas, _to_qt(axial, centre), _to_qt(axial, centre + [1.0, 0, 0]))
    node = window._labelmap(create=False)
    panel.fill_button.click()  # one drawn slice: nothing to interpolate
    _idle(qtbot)
    assert warnings and "two slices" in warnings[-1][1]

    window.set_cursor(centre + [0, 0, 6.0])
    _drag(axial.canvas, _to_qt(axial, centre), _to_qt(axial, centre + [1.0, 0, 0]))
    drawn = np.unique(np.nonzero(node.array == 1)[0]).tolist()
    assert len(drawn) == 2 and drawn[1] - drawn[0] == 6
    panel.fill_button.click()
    _idle(qtbot)
    filled = np.unique(np.nonzero(node.array == 1)[0]).tolist()
    assert filled == list(range(drawn[0], drawn[1] + 1))
    assert "Fill between slices" in window.act_undo.text()
    window.act_undo.trigger()
    assert np.unique(np.nonzero(node.array == 1)[0]).tolist() == drawn


def test_islands_and_margins_use_the_panel_values(window, qtbot):
    ct = window.planning.volume
    k, j, i = _kji(ct, window.cursor)
    big = _cube(ct.array.shape, (k, j, i), 2)  # 5 voxels of 2 mm: 1 mL
    speck = _cube(ct.array.shape, (k, j, i + 10), 0)  # one voxel: 0.008 mL
    node = _set_labels(window, {1: big | speck})
    panel = window.segment_panel
    panel.select_label(1)

    panel.island_ml.setValue(0.05)
    window.label_operation("islands")
    _idle(qtbot)
    np.testing.assert_array_equal(node.array == 1, big)

    panel.margin.setValue(1.0)  # less than a voxel: nothing changes
    window.label_operation("grow")
    _idle(qtbot)
    assert np.count_nonzero(node.array == 1) == 125
    panel.margin.setValue(4.0)  # two voxels each side
    window.label_operation("grow")
    _idle(qtbot)
    grown = node.array == 1
    assert grown[k, j, i - 4] and grown[k, j, i + 4] and not grown[k, j, i + 5]
    assert 343 < np.count_nonzero(grown) < 729
    window.label_operation("shrink")
    _idle(qtbot)
    assert np.count_nonzero(node.array == 1) < np.count_nonzero(grown)
    for _ in range(3):
        window.act_undo.trigger()
    np.testing.assert_array_equal(node.array == 1, big | speck)


# -- fused prior -------------------------------------------------------------------------

PRIOR_SHIFT = np.array([6.0, -4.0, 3.0])
PRIOR_BLOB = np.array([-30.0, 0.0, 0.0])  # seen on the prior only


@pytest.fixture(scope="module")
def blob_prior(tmp_path_factory):
    """The phantom 'scanned' again (MR-like) with a lesion the CT does not show, the
    patient moved by PRIOR_SHIFT."""
    vol = marker_volume()
    ijk = np.stack(np.meshgrid(*(np.arange(n) for n in vol.size), indexing="ij"), -1)
    lps = vol.index_to_physical(ijk.reshape(-1, 3)).reshape(*vol.size, 3)
    blob = np.linalg.norm(lps - (vol.center_lps() + PRIOR_BLOB), axis=-1) < 6.0
    vol.array[blob.transpose(2, 1, 0)] = 1500
    vol.origin = tuple(np.add(vol.origin, PRIOR_SHIFT))
    folder = tmp_path_factory.mktemp("blob_prior")
    write_volume(vol, folder, SeriesSpec(modality="CT", seed="blob", series_description="prior"))
    return folder


def test_grow_on_the_fused_prior_labels_the_ct_grid(window, qtbot, blob_prior, warnings):
    ct = window.planning.volume
    seed = ct.center_lps() + PRIOR_BLOB
    assert ct.value_at(seed) == 0  # nothing to grow on in the CT
    window.set_cursor(seed)
    window.segment_panel.select_label(1)
    window.segment_panel.use_prior.setChecked(True)
    window.set_tool("grow")
    axial = window.slice_widgets["axial"]
    _click(axial, seed)  # no prior yet: a message, no label
    _idle(qtbot)
    assert warnings and "prior" in warnings[-1][1]

    window.add_prior_from(blob_prior)
    qtbot.waitUntil(lambda: bool(priors(window.scene)), timeout=20000)
    _, transform = priors(window.scene)[0]
    matrix = np.eye(4)
    matrix[:3, 3] = PRIOR_SHIFT  # CT point + shift = the same anatomy on the prior
    window.scene.execute(SetFields(transform.id, {"matrix": matrix}))
    _click(axial, seed)
    _idle(qtbot)
    node = window._labelmap(create=False)
    assert node.array.shape == ct.array.shape
    kk, jj, ii = np.nonzero(node.array == 1)
    centroid = ct.index_to_physical(np.stack([ii, jj, kk], 1).astype(float)).mean(axis=0)
    np.testing.assert_allclose(centroid, seed, atol=1.5)
    assert len(kk) * 8.0 / 1000 == pytest.approx(4 / 3 * np.pi * 6.0**3 / 1000, rel=0.4)
    assert "prior" in window.act_undo.text()
    window.act_undo.trigger()
    assert not node.array.any()


# -- import / export -----------------------------------------------------------------------


def test_seg_export_then_import_through_the_file_menu(
    window, qtbot, tmp_path, monkeypatch, warnings
):
    ct = window.planning.volume
    k, j, i = _kji(ct, window.cursor)
    node = _set_labels(
        window,
        {1: _cube(ct.array.shape, (k, j, i), 3), 4: _cube(ct.array.shape, (k + 2, j + 8, i), 1)},
    )
    original = node.array.copy()
    monkeypatch.setattr(
        QFileDialog,
        "getSaveFileName",
        staticmethod(lambda *a, **kw: (str(tmp_path / "plan-seg"), "DICOM SEG (*.dcm)")),
    )
    window.act_export_seg.trigger()
    _idle(qtbot)
    written = tmp_path / "plan-seg.dcm"  # the chosen filter's suffix
    ds = pydicom.dcmread(written)
    assert ds.Modality == "SEG"
    assert ds.FrameOfReferenceUID == ct.meta["frame_of_reference_uid"]
    assert [s.SegmentLabel for s in ds.SegmentSequence] == ["lesion", "spinal canal"]

    window.act_undo.trigger()
    window.act_undo.trigger()
    assert not node.array.any()
    chosen = {"path": str(written)}
    monkeypatch.setattr(
        QFileDialog, "getOpenFileName", staticmethod(lambda *a, **kw: (chosen["path"], ""))
    )
    window.act_import_seg.trigger()
    _idle(qtbot)
    np.testing.assert_array_equal(node.array, original)
    assert "Import segmentation" in window.act_undo.text()
    window.act_undo.trigger()  # the import is one step
    assert not node.array.any()
    window.act_redo.trigger()

    # .nrrd both ways
    monkeypatch.setattr(
        QFileDialog,
        "getSaveFileName",
        staticmethod(lambda *a, **kw: (str(tmp_path / "plan.nrrd"), "DICOM SEG (*.dcm)")),
    )
    window.act_export_seg.trigger()
    _idle(qtbot)
    window.act_undo.trigger()
    assert not node.array.any()
    chosen["path"] = str(tmp_path / "plan.nrrd")
    window.act_import_seg.trigger()
    _idle(qtbot)
    np.testing.assert_array_equal(node.array, original)

    # A SEG of another scan, a label map somewhere else: refused, with why.
    ds.FrameOfReferenceUID = "1.2.3.4.5"
    ds.save_as(tmp_path / "other.dcm")
    chosen["path"] = str(tmp_path / "other.dcm")
    window.act_import_seg.trigger()
    _idle(qtbot)
    assert "another scan" in warnings[-1][1]
    far = ct.with_array(original)
    far.origin = tuple(np.add(far.origin, [0.0, 0.0, 900.0]))
    write_labelmap(tmp_path / "far.nii.gz", original, far)
    chosen["path"] = str(tmp_path / "far.nii.gz")
    window.act_import_seg.trigger()
    _idle(qtbot)
    assert "outside the planning CT" in warnings[-1][1]
    np.testing.assert_array_equal(node.array, original)


def test_rtstruct_import_adds_unknown_structures_as_labels(window, qtbot, monkeypatch, tmp_path):
    ct = window.planning.volume
    k, j, i = _kji(ct, window.cursor)

    def ring(kk, i0, i1, j0, j1):
        ijk = np.array([[i0, j0, kk], [i1, j0, kk], [i1, j1, kk], [i0, j1, kk]], float)
        return ct.index_to_physical(ijk)

    path = _rtstruct(
        ct,
        tmp_path,
        {
            "Lesion": [ring(k, i - 3.5, i + 3.5, j - 3.5, j + 3.5)],
            "GTV boost": [ring(k + 1, i, i + 2.5, j, j + 2.5)],
        },
    )
    monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(lambda *a, **kw: (path, "")))
    window.act_import_seg.trigger()
    _idle(qtbot)
    node = window._labelmap(create=False)
    assert np.count_nonzero(node.array == 1) == 7 * 7
    (gtv,) = [v for v, info in node.labels.items() if info.name == "GTV boost"]
    assert np.count_nonzero(node.array == gtv) == 3 * 3
    assert gtv in window.segment_panel.visible_labels()  # listed, shown
    assert window.segment_panel.label.findData(gtv) >= 0  # and editable
    gtv_point = ct.index_to_physical((i + 1, j + 1, k + 1))
    window.set_cursor(gtv_point)
    assert _layer_rgba(window.label_layers["axial"], gtv_point)[3] > 0
    window.act_undo.trigger()
    assert not node.array.any()
    assert all(info.name != "GTV boost" for info in node.labels.values())
