"""The scene: every node of the plan, with change events and one undo history.

Views and panels listen to the scene's psygnal signals; nothing edits a node behind the
scene's back. ``with scene.batch():`` holds the events of many changes and emits each
changed (node, field) once at the end, so a view redraws once per user action.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from psygnal import Signal

from guideplan.model.history import History
from guideplan.model.nodes import Node

N = TypeVar("N", bound=Node)


class Scene:
    node_added = Signal(object)  # node
    node_removed = Signal(object)  # node
    node_changed = Signal(object, str)  # node, field name ("display.opacity", "entry" ...)
    #: Something in the plan changed (any of the above, once per batch): autosave, title.
    modified = Signal()

    def __init__(self) -> None:
        self._nodes: dict[str, Node] = {}
        self.history = History(self)
        self._batch_depth = 0
        self._pending: list[tuple[str, Any, str]] = []
        #: Free-form case information (patient, indication, paths), saved with the case.
        self.info: dict[str, Any] = {}

    # -- access --------------------------------------------------------------------------
    def __contains__(self, node_id: str) -> bool:
        return node_id in self._nodes

    def __iter__(self) -> Iterator[Node]:
        return iter(list(self._nodes.values()))

    def __len__(self) -> int:
        return len(self._nodes)

    def get(self, node_id: str) -> Node:
        try:
            return self._nodes[node_id]
        except KeyError:
            raise KeyError(f"no node {node_id!r} in the scene") from None

    def find(self, node_id: str | None) -> Node | None:
        return self._nodes.get(node_id) if node_id else None

    def nodes_of(self, cls: type[N]) -> list[N]:
        return [n for n in self._nodes.values() if isinstance(n, cls)]

    # -- raw mutation (used by commands; user edits go through ``execute``) ---------------
    def _insert(self, node: Node, index: int | None = None) -> None:
        if node.id in self._nodes:
            raise ValueError(f"node {node.id} already in the scene")
        items = list(self._nodes.items())
        if index is None or index >= len(items):
            items.append((node.id, node))
        else:
            items.insert(index, (node.id, node))
        self._nodes = dict(items)
        self._emit("added", node, "")

    def _delete(self, node_id: str) -> tuple[Node, int]:
        index = list(self._nodes).index(node_id)
        node = self._nodes.pop(node_id)
        self._emit("removed", node, "")
        return node, index

    def _set_field(self, node_id: str, field: str, value: Any) -> None:
        node = self.get(node_id)
        target, attr = _resolve(node, field)
        setattr(target, attr, value)
        self._emit("changed", node, field)

    def get_field(self, node_id: str, field: str) -> Any:
        target, attr = _resolve(self.get(node_id), field)
        return getattr(target, attr)

    def notify_changed(self, node: Node, field: str) -> None:
        """Announce an in-place change of a node's data (e.g. a label-map stroke)."""
        self._emit("changed", node, field)

    # -- editing ------------------------------------------------------------------------
    def execute(self, command) -> None:
        """Run a command and record it in the history (the only way users edit)."""
        self.history.push(command)

    def clear(self) -> None:
        """Empty the scene and its history (a new case)."""
        with self.batch():
            for node_id in list(self._nodes):
                self._delete(node_id)
        self.history.clear()
        self.info = {}

    # -- events -------------------------------------------------------------------------
    @contextmanager
    def batch(self) -> Iterator[None]:
        self._batch_depth += 1
        try:
            yield
        finally:
            self._batch_depth -= 1
            if self._batch_depth == 0:
                self._flush()

    def _emit(self, what: str, node: Node, field: str) -> None:
        self._pending.append((what, node, field))
        if self._batch_depth == 0:
            self._flush()

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        if not pending:
            return
        seen: set[tuple[str, str, str]] = set()
        for what, node, field in pending:
            key = (what, node.id, field)
            if what == "changed" and key in seen:
                continue
            seen.add(key)
            if what == "added":
                self.node_added.emit(node)
            elif what == "removed":
                self.node_removed.emit(node)
            else:
                self.node_changed.emit(node, field)
        self.modified.emit()


def _resolve(node: Node, field: str) -> tuple[Any, str]:
    """'display.opacity' -> (node.display, 'opacity'); 'entry' -> (node, 'entry')."""
    target: Any = node
    parts = field.split(".")
    for part in parts[:-1]:
        target = getattr(target, part)
    if not hasattr(target, parts[-1]):
        raise AttributeError(f"{type(node).__name__} has no field {field!r}")
    return target, parts[-1]
