"""Label edits on the undo stack: do/undo/redo, stroke merging, change events."""

import numpy as np
import pytest

from guideplan.core.labelmap import LabelDiff
from guideplan.core.volume import Volume
from guideplan.model.commands import AddNode
from guideplan.model.label_commands import LabelEdit, edit_labels, stroke_key
from guideplan.model.nodes import LabelMapNode
from guideplan.model.scene import Scene
from guideplan.processing.segmentation import paint


@pytest.fixture
def setup():
    scene = Scene()
    node = LabelMapNode(name="labels", array=np.zeros((10, 12, 14), dtype=np.uint8))
    scene.execute(AddNode(node))
    scene.history.clear()
    grid = Volume(np.zeros((10, 12, 14), dtype=np.int16), (1.0, 1.0, 2.0), (0.0, 0.0, 0.0))
    return scene, node, grid


def test_do_undo_redo(setup):
    scene, node, _ = setup
    events = []
    scene.node_changed.connect(lambda n, f: events.append((n.id, f)))
    diff = LabelDiff.from_values(node.array, [5, 6, 7], 1)
    assert edit_labels(scene, node.id, diff, "Paint")
    assert np.count_nonzero(node.array) == 3
    assert events == [(node.id, "array")]
    assert scene.history.undo_text == "Paint"
    scene.history.undo()
    assert not node.array.any()
    scene.history.redo()
    assert np.count_nonzero(node.array) == 3
    assert len(events) == 3


def test_dabs_of_one_stroke_merge_into_one_step(setup):
    scene, node, grid = setup
    key = stroke_key(node.id, "brush", 1)
    for x in (2.0, 4.0, 6.0, 8.0):
        diff = paint(grid, node.array, (x, 5.0, 8.0), 2.0, 1, normal=(0, 0, 1))
        edit_labels(scene, node.id, diff, "Paint", merge_key=key)
    assert len(scene.history) == 1
    painted = np.count_nonzero(node.array)
    assert painted > 0
    scene.history.seal()  # mouse release: the next stroke is its own step
    diff = paint(grid, node.array, (5.0, 5.0, 8.0), 3.0, 1, normal=(0, 0, 1), erase=True)
    edit_labels(scene, node.id, diff, "Erase", merge_key=stroke_key(node.id, "brush", 2))
    assert len(scene.history) == 2
    erased = np.count_nonzero(node.array)
    assert erased < painted
    scene.history.undo()
    assert np.count_nonzero(node.array) == painted
    scene.history.undo()
    assert not node.array.any()


def test_empty_edit_is_not_recorded(setup):
    scene, node, _ = setup
    assert not edit_labels(scene, node.id, LabelDiff.empty(node.array.shape), "Nothing")
    assert len(scene.history) == 0


def test_merge_refuses_other_nodes(setup):
    _, node, _ = setup
    a = LabelEdit(node.id, LabelDiff.empty(node.array.shape))
    b = LabelEdit("other", LabelDiff.empty(node.array.shape))
    assert not a.merge(b)
    assert not a.merge(object())


def test_edit_of_a_node_without_array_fails(setup):
    scene, _, _ = setup
    empty = LabelMapNode(name="empty")
    scene.execute(AddNode(empty))
    with pytest.raises(TypeError):
        scene.execute(LabelEdit(empty.id, LabelDiff.empty((1, 1, 1))))
