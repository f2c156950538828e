"""Undoable label-map edits: every tool's result goes through :class:`LabelEdit`.

A tool (brush, region growing, islands ...) computes a :class:`~guideplan.core.labelmap.
LabelDiff` against the node's current array without touching it; the command applies it
in place, so undo and redo cost the size of the change, not of the volume. The dabs of one
brush stroke carry the same ``merge_key`` and merge into one undo step until the stroke
ends (``scene.history.seal()`` on mouse release), like :class:`~guideplan.model.commands.
SetField` during a drag.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from guideplan.core.labelmap import LabelDiff
from guideplan.model.nodes import LabelMapNode

if TYPE_CHECKING:
    from guideplan.model.scene import Scene


@dataclass
class LabelEdit:
    """Apply a sparse difference to a label map node's array."""

    node_id: str
    diff: LabelDiff
    text: str = "Edit labels"
    merge_key: object | None = None

    def do(self, scene: Scene) -> None:
        node = _labelmap(scene, self.node_id)
        self.diff.apply(node.array)
        scene.notify_changed(node, "array")

    def undo(self, scene: Scene) -> None:
        node = _labelmap(scene, self.node_id)
        self.diff.revert(node.array)
        scene.notify_changed(node, "array")

    def merge(self, other: object) -> bool:
        if not isinstance(other, LabelEdit) or other.node_id != self.node_id:
            return False
        self.diff = self.diff.then(other.diff)
        return True


def edit_labels(
    scene: Scene,
    node_id: str,
    diff: LabelDiff,
    text: str = "Edit labels",
    merge_key: object | None = None,
) -> bool:
    """Execute ``diff`` as an undoable edit; an empty diff records nothing (returns False).

    Why skip empty diffs: a click that changes nothing must not leave an undo step that
    does nothing, nor mark the plan modified.
    """
    if diff.is_empty:
        return False
    scene.execute(LabelEdit(node_id, diff, text=text, merge_key=merge_key))
    return True


def stroke_key(node_id: str, tool: str, stroke: int) -> tuple[str, str, str, int]:
    """The merge key of one continuous stroke of a tool on one label map."""
    return ("labels", node_id, tool, stroke)


def _labelmap(scene: Scene, node_id: str) -> LabelMapNode:
    node = scene.get(node_id)
    if not isinstance(node, LabelMapNode) or node.array is None:
        raise TypeError(f"node {node_id!r} is not a label map with an array")
    return node
