"""Undo/redo for the whole plan.

Every edit is a :class:`Command` with ``do`` and ``undo``. A continuous gesture (dragging
an entry point, painting a stroke, nudging with a key held down) pushes many commands
with the same ``merge_key``; they merge into one undo step until the gesture ends
(:meth:`History.seal`, called on mouse release).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from psygnal import Signal

if TYPE_CHECKING:
    from guideplan.model.scene import Scene


class Command(Protocol):
    #: Shown in Edit > Undo "<text>".
    text: str
    #: Commands with the same non-None key merge while the history is not sealed.
    merge_key: object | None

    def do(self, scene: Scene) -> None: ...

    def undo(self, scene: Scene) -> None: ...

    def merge(self, other: Command) -> bool:
        """Absorb ``other`` (already done) into self; return False if impossible."""
        ...


class History:
    changed = Signal()

    def __init__(self, scene: Scene, limit: int = 500) -> None:
        self._scene = scene
        self._undo: list[Command] = []
        self._redo: list[Command] = []
        self._sealed = True
        self._limit = limit
        self._clean_marker: Command | None = None
        self._clean_depth = 0

    # -- state -------------------------------------------------------------------------
    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    @property
    def undo_text(self) -> str:
        return self._undo[-1].text if self._undo else ""

    @property
    def redo_text(self) -> str:
        return self._redo[-1].text if self._redo else ""

    @property
    def is_clean(self) -> bool:
        """True when the plan equals what was last saved."""
        top = self._undo[-1] if self._undo else None
        return top is self._clean_marker and len(self._undo) == self._clean_depth

    def mark_clean(self) -> None:
        self._clean_marker = self._undo[-1] if self._undo else None
        self._clean_depth = len(self._undo)
        self._sealed = True
        self.changed.emit()

    def mark_dirty(self) -> None:
        """The plan differs from any saved file (e.g. just recovered after a crash)."""
        self._clean_marker = None
        self._clean_depth = -1
        self.changed.emit()

    def __len__(self) -> int:
        return len(self._undo)

    # -- operations --------------------------------------------------------------------
    def push(self, command: Command) -> None:
        with self._scene.batch():
            command.do(self._scene)
        top = self._undo[-1] if self._undo else None
        if (
            not self._sealed
            and top is not None
            and command.merge_key is not None
            and top.merge_key == command.merge_key
            and top is not self._clean_marker
            and top.merge(command)
        ):
            pass
        else:
            self._undo.append(command)
            if len(self._undo) > self._limit:
                dropped = self._undo.pop(0)
                if dropped is self._clean_marker:
                    self._clean_marker = None
                    self._clean_depth = -1
                else:
                    self._clean_depth -= 1
        self._redo.clear()
        self._sealed = command.merge_key is None
        self.changed.emit()

    def seal(self) -> None:
        """End a continuous gesture: the next command starts a new undo step."""
        self._sealed = True

    def undo(self) -> bool:
        if not self._undo:
            return False
        command = self._undo.pop()
        with self._scene.batch():
            command.undo(self._scene)
        self._redo.append(command)
        self._sealed = True
        self.changed.emit()
        return True

    def redo(self) -> bool:
        if not self._redo:
            return False
        command = self._redo.pop()
        with self._scene.batch():
            command.do(self._scene)
        self._undo.append(command)
        self._sealed = True
        self.changed.emit()
        return True

    def clear(self) -> None:
        self._undo.clear()
        self._redo.clear()
        self._clean_marker = None
        self._clean_depth = 0
        self._sealed = True
        self.changed.emit()
