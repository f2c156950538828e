"""Save, reopen, and recover after a crash, through the window."""

import json
import subprocess
import sys

from PySide6.QtWidgets import QMessageBox

from guideplan.model.commands import AddNode
from guideplan.model.nodes import MeasurementNode
from guideplan.ui.main_window import MainWindow


def _add_ruler(window) -> MeasurementNode:
    node = MeasurementNode(name="Ruler 1", points=[(0.0, 0.0, 60.0), (30.0, 40.0, 60.0)])
    window.scene.execute(AddNode(node))
    return node


def test_save_then_reopen_case(window, qtbot, tmp_path):
    _add_ruler(window)
    assert window.windowTitle().endswith("*")
    case = tmp_path / "p1.gplan"
    assert window._save_to(case)
    assert not window.windowTitle().endswith("*")
    assert case.is_dir()

    other = MainWindow()
    qtbot.addWidget(other)
    other.show()
    other.open_path(case)
    qtbot.waitUntil(lambda: other.planning is not None, timeout=20000)
    (ruler,) = other.scene.nodes_of(MeasurementNode)
    assert ruler.value == 50.0
    assert other.case_path == case
    assert str(case) in [str(p) for p in other.recent.list()]
    assert other.measure_list.count() == 1


def test_recover_after_crash(window, qtbot, monkeypatch):
    _add_ruler(window)
    assert window.autosaver.save_now()
    # The process "dies": its session file now names a pid that no longer runs, and
    # the window never gets to discard its recovery copy.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    session = json.loads(window.autosaver.session_file.read_text())
    session["pid"] = dead.pid
    window.autosaver.session_file.write_text(json.dumps(session))
    window.autosaver = None

    monkeypatch.setattr(
        QMessageBox, "question", staticmethod(lambda *a, **k: QMessageBox.StandardButton.Yes)
    )
    restarted = MainWindow()
    qtbot.addWidget(restarted)
    restarted.show()
    assert restarted.offer_recovery()
    qtbot.waitUntil(lambda: restarted.planning is not None, timeout=20000)
    (ruler,) = restarted.scene.nodes_of(MeasurementNode)
    assert ruler.value == 50.0
    assert not restarted.scene.history.is_clean  # recovered work is not saved yet
    assert restarted.windowTitle().endswith("*")
    monkeypatch.setattr(
        QMessageBox, "question", staticmethod(lambda *a, **k: QMessageBox.StandardButton.Discard)
    )


def test_no_recovery_offered_after_clean_exit(window, qtbot):
    _add_ruler(window)
    window.autosaver.save_now()
    window.close()  # answers 'Discard' to the unsaved-changes question
    again = MainWindow()
    qtbot.addWidget(again)
    assert not again.offer_recovery()


def test_a_protection_element_is_saved_and_reopened_by_the_window(window, qtbot, tmp_path):
    from guideplan.model.nodes import ProtectionNode

    node = ProtectionNode(name="tc", element="thermocouple", tip=(1.0, 2.0, 60.0), warn_c=44.0)
    window.scene.execute(AddNode(node))
    case = tmp_path / "p2.gplan"
    assert window._save_to(case)
    other = MainWindow()
    qtbot.addWidget(other)
    other.show()
    other.open_path(case)
    qtbot.waitUntil(lambda: other.planning is not None, timeout=20000)
    (again,) = other.scene.nodes_of(ProtectionNode)
    assert (again.element, again.tip, again.warn_c) == ("thermocouple", (1.0, 2.0, 60.0), 44.0)
    window.act_undo.trigger()  # adding it is one undo step
    assert not window.scene.nodes_of(ProtectionNode)
