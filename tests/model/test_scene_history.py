"""Scene events, batching and the whole-plan undo history, without Qt or VTK."""

import subprocess
import sys

import numpy as np
import pytest

from guideplan.model.commands import AddNode, Group, RemoveNode, SetField
from guideplan.model.nodes import (
    MeasurementNode,
    TrajectoryNode,
    TransformNode,
    node_from_dict,
)
from guideplan.model.scene import Scene


@pytest.fixture
def scene() -> Scene:
    return Scene()


def _events(scene: Scene) -> list:
    log: list = []
    scene.node_added.connect(lambda n: log.append(("added", n.id)))
    scene.node_removed.connect(lambda n: log.append(("removed", n.id)))
    scene.node_changed.connect(lambda n, f: log.append(("changed", n.id, f)))
    scene.modified.connect(lambda: log.append(("modified",)))
    return log


def test_model_imports_no_qt_or_vtk():
    code = (
        "import sys, guideplan.model.scene, guideplan.model.commands, guideplan.model.case;"
        "print([m for m in sys.modules if m.startswith(('PySide6', 'vtk'))])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_add_undo_redo(scene):
    traj = TrajectoryNode(name="T1", entry=(0, 0, 0), target=(0, 50, 0))
    scene.execute(AddNode(traj))
    assert traj.id in scene
    assert scene.history.undo_text == "Add T1"
    scene.history.undo()
    assert traj.id not in scene
    scene.history.redo()
    assert scene.get(traj.id) is traj


def test_remove_restores_position(scene):
    nodes = [MeasurementNode(name=f"m{i}") for i in range(3)]
    for n in nodes:
        scene.execute(AddNode(n))
    scene.execute(RemoveNode(nodes[1].id))
    assert [n.name for n in scene] == ["m0", "m2"]
    scene.history.undo()
    assert [n.name for n in scene] == ["m0", "m1", "m2"]


def test_drag_merges_into_one_step_until_sealed(scene):
    traj = TrajectoryNode(name="T", entry=(0, 0, 0), target=(10, 0, 0))
    scene.execute(AddNode(traj))
    for x in range(1, 6):
        scene.execute(SetField(traj.id, "entry", (float(x), 0, 0), merge_key=("drag", traj.id)))
    scene.history.seal()
    scene.execute(SetField(traj.id, "entry", (9.0, 0, 0), merge_key=("drag", traj.id)))
    assert len(scene.history) == 3  # add, drag 1..5, drag to 9
    scene.history.undo()
    assert traj.entry == (5.0, 0, 0)
    scene.history.undo()
    assert traj.entry == (0, 0, 0)


def test_display_fields_are_undoable_too(scene):
    m = MeasurementNode(name="ruler", points=[(0, 0, 0), (3, 4, 0)])
    scene.execute(AddNode(m))
    scene.execute(SetField(m.id, "display.opacity", 0.3))
    assert m.display.opacity == 0.3
    scene.history.undo()
    assert m.display.opacity == 1.0
    assert m.value == pytest.approx(5.0)


def test_batch_coalesces_events(scene):
    traj = TrajectoryNode(name="T")
    scene.execute(AddNode(traj))
    log = _events(scene)
    with scene.batch():
        for x in range(10):
            scene._set_field(traj.id, "entry", (float(x), 0, 0))
        scene._set_field(traj.id, "target", (1.0, 1, 1))
    assert log == [("changed", traj.id, "entry"), ("changed", traj.id, "target"), ("modified",)]


def test_group_is_one_step(scene):
    a, b = MeasurementNode(name="a"), MeasurementNode(name="b")
    scene.execute(Group([AddNode(a), AddNode(b)], text="Add two"))
    assert len(scene) == 2
    scene.history.undo()
    assert len(scene) == 0


def test_new_command_clears_redo(scene):
    a = MeasurementNode(name="a")
    scene.execute(AddNode(a))
    scene.history.undo()
    assert scene.history.can_redo
    scene.execute(AddNode(MeasurementNode(name="b")))
    assert not scene.history.can_redo


def test_clean_state_tracks_saves(scene):
    traj = TrajectoryNode(name="T")
    scene.execute(AddNode(traj))
    scene.history.mark_clean()
    assert scene.history.is_clean
    scene.execute(SetField(traj.id, "entry", (1.0, 0, 0), merge_key="drag"))
    assert not scene.history.is_clean
    scene.history.undo()
    assert scene.history.is_clean


def test_measurements():
    ruler = MeasurementNode(points=[(0, 0, 0), (0, 3, 4)])
    assert ruler.value == pytest.approx(5.0)
    assert ruler.label == "5.0 mm"
    angle = MeasurementNode(points=[(1, 0, 0), (0, 0, 0), (0, 1, 0)], measure="angle")
    assert angle.value == pytest.approx(90.0)


def test_node_dict_round_trip():
    traj = TrajectoryNode(name="T", entry=(1, 2, 3), target=(4, 5, 6), device_id="needle-13g")
    traj.display.color = (0.2, 0.4, 0.6)
    back = node_from_dict(traj.to_dict())
    assert back == traj
    tfm = TransformNode(name="prior", matrix=np.diag([1.0, 2.0, 3.0, 1.0]))
    back = node_from_dict(tfm.to_dict())
    back.restore_payloads(tfm.payloads())
    np.testing.assert_array_equal(back.matrix, tfm.matrix)


def test_mark_dirty_after_recovery(scene):
    scene.history.mark_clean()
    assert scene.history.is_clean
    scene.history.mark_dirty()
    assert not scene.history.is_clean
