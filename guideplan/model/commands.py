"""The edit commands of the plan: add, remove, set a field, and groups of those.

Tools build on these; a tool-specific command (a label-map stroke stored as a sparse
difference, a registration result) implements the same three methods.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from guideplan.model.nodes import Node

if TYPE_CHECKING:
    from guideplan.model.scene import Scene


@dataclass
class AddNode:
    node: Node
    text: str = ""
    merge_key: object | None = None
    _index: int | None = None

    def __post_init__(self) -> None:
        self.text = self.text or f"Add {self.node.name or self.node.kind}"

    def do(self, scene: Scene) -> None:
        scene._insert(self.node, self._index)

    def undo(self, scene: Scene) -> None:
        _, self._index = scene._delete(self.node.id)

    def merge(self, other) -> bool:
        return False


@dataclass
class RemoveNode:
    node_id: str
    text: str = "Delete"
    merge_key: object | None = None
    _node: Node | None = None
    _index: int | None = None

    def do(self, scene: Scene) -> None:
        self._node, self._index = scene._delete(self.node_id)
        self.text = f"Delete {self._node.name or self._node.kind}"

    def undo(self, scene: Scene) -> None:
        assert self._node is not None
        scene._insert(self._node, self._index)

    def merge(self, other) -> bool:
        return False


@dataclass
class SetField:
    """Set one field of a node ('entry', 'display.opacity', 'points' ...).

    With a ``merge_key`` (e.g. ("drag", node_id, field)), successive sets during one
    gesture merge: undo returns to the value before the gesture began.
    """

    node_id: str
    field: str
    value: Any
    text: str = ""
    merge_key: object | None = None
    _old: Any = None

    def __post_init__(self) -> None:
        self.text = self.text or f"Change {self.field}"

    def do(self, scene: Scene) -> None:
        self._old = scene.get_field(self.node_id, self.field)
        scene._set_field(self.node_id, self.field, self.value)

    def undo(self, scene: Scene) -> None:
        scene._set_field(self.node_id, self.field, self._old)

    def merge(self, other) -> bool:
        if not isinstance(other, SetField) or (other.node_id, other.field) != (
            self.node_id,
            self.field,
        ):
            return False
        self.value = other.value  # keep our _old: the value before the gesture
        return True


@dataclass
class Group:
    """Several commands as one undo step (e.g. delete a trajectory and its zone)."""

    commands: list[Any] = field(default_factory=list)
    text: str = "Edit"
    merge_key: object | None = None

    def do(self, scene: Scene) -> None:
        for cmd in self.commands:
            cmd.do(scene)

    def undo(self, scene: Scene) -> None:
        for cmd in reversed(self.commands):
            cmd.undo(scene)

    def merge(self, other) -> bool:
        return False


@dataclass
class SetFields:
    """Set several fields of one node at once (e.g. window and level), mergeable."""

    node_id: str
    values: dict[str, Any]
    text: str = "Change"
    merge_key: object | None = None
    _old: dict[str, Any] = field(default_factory=dict)

    def do(self, scene: Scene) -> None:
        self._old = {name: scene.get_field(self.node_id, name) for name in self.values}
        for name, value in self.values.items():
            scene._set_field(self.node_id, name, value)

    def undo(self, scene: Scene) -> None:
        for name, value in self._old.items():
            scene._set_field(self.node_id, name, value)

    def merge(self, other) -> bool:
        if not isinstance(other, SetFields) or other.node_id != self.node_id:
            return False
        if set(other.values) != set(self.values):
            return False
        self.values = dict(other.values)
        return True
