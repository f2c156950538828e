"""Closing the window, opening another series, and undoing while background work runs
(loading, registration, segmentation, anatomy, zones, surfaces, structures): nothing
crashes, no thread outlives its window, and no stale result reaches the plan.

Each task is held at a gate (the real computation runs once the test opens it), so the
order of events is the same on every run: the result arrives after the close, the
second open or the undo, through the real event loop (pytest-qt).
"""

import gc
import threading

import numpy as np
import pytest
from PySide6.QtCore import QThread
from PySide6.QtWidgets import QApplication

from guideplan.io.dicom_write import SeriesSpec, write_volume
from guideplan.model.commands import AddNode
from guideplan.model.nodes import LabelInfo, LabelMapNode, ZoneNode
from guideplan.ui import workers
from guideplan.ui.main_window import MainWindow
from tests.render.markers import marker_volume

TIMEOUT = 30000


class Gate:
    """Wraps a function run by a task: its first call waits until ``open()`` (or until
    its task is cancelled: the window closed), then computes for real; later calls pass
    straight through."""

    def __init__(self, fn):
        self.fn = fn
        self.entered = threading.Event()
        self.released = threading.Event()
        self.calls = 0
        self.threads: list[threading.Thread] = []

    def __call__(self, *args, **kwargs):
        self.calls += 1
        self.threads.append(threading.current_thread())
        if self.calls == 1:
            self.entered.set()
            while not self.released.wait(0.02) and not _own_task_cancelled():
                pass
        return self.fn(*args, **kwargs)

    def open(self):
        self.released.set()


def _own_task_cancelled() -> bool:
    """In a task's thread: whether that task was cancelled."""
    current = QThread.currentThread()
    return any(h.cancel_event.is_set() for h in list(workers._ACTIVE) if h.thread is current)


def _gate(monkeypatch, module, name) -> Gate:
    gate = Gate(getattr(module, name))
    monkeypatch.setattr(module, name, gate)
    return gate


def _entered(qtbot, gate):
    qtbot.waitUntil(gate.entered.is_set, timeout=TIMEOUT)


def _no_task_left(qtbot, window=None):
    def over():
        handles = workers.tasks_of(window) if window is not None else list(workers._ACTIVE)
        return not handles

    qtbot.waitUntil(over, timeout=TIMEOUT)


def _new_window(qtbot, owned_by_qtbot: bool = True) -> MainWindow:
    win = MainWindow()
    if owned_by_qtbot:  # closed and deleted by pytest-qt when the test ends
        qtbot.addWidget(win)
    win.resize(1200, 800)
    win.show()
    qtbot.waitExposed(win)
    return win


def _labelled(window):
    """A label map with a 'lesion' ball (r 6 mm) in a 'bone' ball (r 14 mm)."""
    vol = window.planning.volume
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in vol.array.shape], indexing="ij"), -1)
    lps = vol.index_to_physical(ijk[..., ::-1].reshape(-1, 3)).reshape(*vol.array.shape, 3)
    dist = np.linalg.norm(lps - vol.center_lps(), axis=-1)
    labels = np.zeros(vol.array.shape, np.uint8)
    labels[dist <= 14.0] = 2
    labels[dist <= 6.0] = 1
    node = LabelMapNode(
        name="Segmentation",
        array=labels,
        reference_id=window.planning.id,
        labels={1: LabelInfo("lesion", (1, 0, 0)), 2: LabelInfo("bone", (1, 1, 0.8))},
    )
    window.scene.execute(AddNode(node))
    return node


@pytest.fixture(scope="module")
def second_series(tmp_path_factory):
    """Another CT series (its own UIDs and description) to switch to."""
    folder = tmp_path_factory.mktemp("second_ct")
    write_volume(
        marker_volume(),
        folder,
        SeriesSpec(
            modality="CT",
            seed="gui-second",
            series_description="Second series",
            patient_name="OTHER^PATIENT",
            patient_id="ID999",
        ),
    )
    return folder


def test_closing_the_window_while_the_series_is_scanned_starts_and_applies_nothing(
    qtbot, marker_series, monkeypatch
):
    import guideplan.io as gio

    scan = _gate(monkeypatch, gio, "scan")
    load = _gate(monkeypatch, gio, "load_series_info")
    win = _new_window(qtbot)
    win.open_path(marker_series, pick_planning=True)
    _entered(qtbot, scan)
    scan.open()  # the scan ends while the window closes: its result comes afterwards
    win.close()
    qtbot.wait(300)
    assert load.calls == 0  # the queued scan result did not start the loading
    assert win.planning is None
    assert workers.run_task(win, lambda p, c: 1, lambda r: None, "late") is None
    _no_task_left(qtbot, win)


def test_a_window_deleted_after_closing_under_running_tasks_does_not_crash(
    qtbot, marker_series, monkeypatch
):
    """The automatic structures and the 3D bone surface arrive after the window closed;
    then the window is deleted. Before the fix the structures' result scheduled a zone
    computation on the closed window, whose QThread the deletion destroyed while it ran
    (Qt aborts the process)."""
    import guideplan.model.treatment as treatment
    import guideplan.planning.structures as structures
    import guideplan.render.view3d as view3d

    bone = _gate(monkeypatch, view3d, "patient_bone_surface")
    found = _gate(monkeypatch, structures, "auto_structures_with_status")
    win = _new_window(qtbot, owned_by_qtbot=False)  # this test deletes it
    try:
        win.open_path(marker_series, pick_planning=True)
        qtbot.waitUntil(lambda: win.planning is not None, timeout=TIMEOUT)
        _labelled(win)
        centre = win.planning.volume.center_lps()
        win._add_trajectory(centre + [-40.0, -40.0, 0.0], centre)
        win.add_zone("mw-antenna-14g")
        qtbot.waitUntil(lambda: getattr(win, "_zone_plan", None) is not None, timeout=TIMEOUT)
        _entered(qtbot, bone)
        _entered(qtbot, found)
        evaluate = _gate(monkeypatch, treatment, "evaluate_scene")  # a later zone task
        bone.open()
        found.open()
        win.close()
        qtbot.wait(300)  # the results arrive; the zone timer would fire
    finally:
        win.close()
        win.deleteLater()
    qtbot.wait(100)
    gc.collect()
    assert evaluate.calls == 0  # no zone computation started on the closed window
    assert not [h for h in workers._ACTIVE if h.thread.isRunning()]


def test_opening_another_series_while_one_loads_keeps_only_the_newest(
    qtbot, marker_series, second_series, monkeypatch
):
    import guideplan.io as gio

    load = _gate(monkeypatch, gio, "load_series_info")
    win = _new_window(qtbot)
    win.open_path(marker_series, pick_planning=True)
    _entered(qtbot, load)  # the first series is being read
    win.open_path(second_series, pick_planning=True)  # the user opens another one
    qtbot.waitUntil(lambda: win.planning is not None, timeout=TIMEOUT)
    assert win.planning.volume.meta["description"] == "Second series"
    load.open()  # the first series arrives late
    _no_task_left(qtbot, win)
    qtbot.wait(200)
    assert win.planning.volume.meta["description"] == "Second series"
    assert win.scene.info["patient_id"] == "ID999"
    assert len(list(win.scene)) == 1


def test_switching_the_series_during_automatic_anatomy_leaves_the_new_plan_untouched(
    window, qtbot, second_series, monkeypatch
):
    import guideplan.processing.anatomy as anatomy

    body = _gate(monkeypatch, anatomy, "body_mask")
    window.label_operation("anatomy")
    _entered(qtbot, body)
    first = window.planning
    window.open_path(second_series, pick_planning=True)
    qtbot.waitUntil(lambda: window.planning is not first, timeout=TIMEOUT)
    body.open()
    _no_task_left(qtbot, window)
    qtbot.wait(200)
    assert not window.scene.nodes_of(LabelMapNode)  # no anatomy painted on the new CT
    assert not window.scene.history.can_undo


def test_undo_while_a_label_operation_runs_drops_its_result(window, qtbot, monkeypatch):
    """Grow the current label by a margin; meanwhile the user undoes the brush stroke the
    computation started from: its result, which would bring the stroke back, is not
    applied, and the user is told."""
    import guideplan.processing.segmentation as seg

    node = _labelled(window)
    before = node.array.copy()
    window.set_tool("brush")
    window._on_tool_point(window.planning.volume.center_lps() + [30.0, 0.0, 0.0], False)
    window._on_tool_point(window.planning.volume.center_lps() + [30.0, 0.0, 0.0], True)
    assert not np.array_equal(node.array, before)
    grow = _gate(monkeypatch, seg, "grow_shrink")
    window.label_operation("grow")
    _entered(qtbot, grow)
    # Edit > Undo (the progress dialog may already be up: it is window-modal, so the
    # menu and Ctrl+Z reach the window only in its first 400 ms; the action is the same)
    window.act_undo.trigger()
    np.testing.assert_array_equal(node.array, before)  # the stroke is undone
    grow.open()
    _no_task_left(qtbot, window)
    qtbot.wait(100)
    np.testing.assert_array_equal(node.array, before)
    assert window.scene.history.can_redo  # the stroke can come back; nothing replaced it
    assert "not applied" in window.statusBar().currentMessage()


def test_undo_of_a_zone_while_it_is_computed_shows_no_zone(window, qtbot, monkeypatch):
    import guideplan.model.treatment as treatment

    _labelled(window)
    centre = window.planning.volume.center_lps()
    window._add_trajectory(centre + [-40.0, -40.0, 0.0], centre)
    evaluate = _gate(monkeypatch, treatment, "evaluate_scene")
    window.add_zone("mw-antenna-14g")
    _entered(qtbot, evaluate)
    window.act_undo.trigger()  # the zone goes; its computation still runs
    assert not window.scene.nodes_of(ZoneNode)
    qtbot.waitUntil(lambda: window._zone_timer.isActive(), timeout=TIMEOUT)
    qtbot.waitUntil(lambda: not window._zone_timer.isActive(), timeout=TIMEOUT)
    assert window._zone_plan is None  # the view followed the undo at once
    evaluate.open()  # now the result computed for the removed zone arrives
    _no_task_left(qtbot, window)
    qtbot.waitUntil(lambda: not window._zone_timer.isActive(), timeout=TIMEOUT)
    _no_task_left(qtbot, window)
    assert window._zone_plan is None
    assert window._zone_actors == []
    assert all(layer.volume is None for layer in window.zone_layers.values())


def test_closing_the_window_during_registration_and_surfaces_does_not_crash(
    window, qtbot, monkeypatch
):
    """Every kind of task at once when the window closes: registration, the label
    surfaces, the zones; their threads end with the window and nothing is applied."""
    import guideplan.model.treatment as treatment
    import guideplan.processing.registration as registration
    import guideplan.ui.window_segmentation as window_segmentation

    centre = window.planning.volume.center_lps()
    window._add_prior_volume(window.planning.volume.with_array(window.planning.volume.array))
    _, transform = window._prior()
    surfaces = _gate(monkeypatch, window_segmentation, "label_surfaces")
    register = _gate(monkeypatch, registration, "register")
    evaluate = _gate(monkeypatch, treatment, "evaluate_scene")
    _labelled(window)
    window._update_surfaces()
    window._add_trajectory(centre + [-40.0, -40.0, 0.0], centre)
    window.add_zone("mw-antenna-14g")
    window.register_prior("rigid", local=False)
    for gate in (surfaces, register, evaluate):
        _entered(qtbot, gate)
    titles = {h.title for h in workers.tasks_of(window)}
    assert {"Registering prior study", "Updating structures", "Zones"} <= titles
    for gate in (surfaces, register, evaluate):
        gate.open()
    window.close()
    assert not workers.tasks_of(window)
    qtbot.wait(200)
    # nothing arrived at the closed window: no zones, no registration, no surfaces
    assert getattr(window, "_zone_plan", None) is None
    assert window._zone_actors == []
    assert not transform.metric
    assert window._surface_actors == []


def test_the_garbage_collector_runs_on_the_gui_thread_only(qtbot):
    """A cycle holding a Qt object left by the GUI thread is not collected by a worker
    that allocates a lot; the GUI thread's timer collects it."""
    from PySide6.QtCore import QObject

    from guideplan.ui.gui_gc import pin_gc_to_gui_thread

    pin_gc_to_gui_thread()
    assert not gc.isenabled()
    collected_on = []

    class Holder:
        def __init__(self):
            self.qobject = QObject()
            self.me = self  # a reference cycle: only the cyclic collector frees it

        def __del__(self):
            collected_on.append(threading.current_thread())

    Holder()

    kept = []

    def allocate():  # far past generation 0's threshold, and kept: the count stays up
        kept.append([[] for _ in range(50000)])

    worker = threading.Thread(target=allocate)
    worker.start()
    worker.join()
    assert collected_on == []
    qtbot.waitUntil(lambda: bool(collected_on), timeout=5000)
    assert collected_on == [threading.main_thread()]


def test_a_qt_warning_is_recorded_for_the_test_that_caused_it():
    from PySide6.QtCore import qWarning

    from tests.ui import conftest

    qWarning("guideplan test: a deliberate warning")
    assert any("a deliberate warning" in line for line in conftest._captured)
    conftest._captured.clear()  # this one was asked for
    QApplication.processEvents()
