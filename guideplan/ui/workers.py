"""Run long work off the GUI thread, with progress, cancel and errors as dialogs.

``run_task(owner, fn, on_done, title)`` calls ``fn(progress, cancel)`` in a QThread;
progress updates a QProgressDialog (with a Cancel button that sets the cancel flag);
the result is delivered to ``on_done`` on the GUI thread. A GuideplanError becomes a
warning dialog with its message; anything else an "unexpected error" dialog — never a
traceback on screen and never a frozen window.

Which objects live on which thread, and who may touch them
----------------------------------------------------------
*GUI thread* (the Qt main thread) owns everything of the window: every QWidget and
QObject (the window, panels, dialogs, timers, the RenderScheduler, the TaskHandles and
their QThread objects), every VTK object that belongs to a view (render windows and
their OpenGL contexts, renderers, actors, mappers, image reslices, layers), the plan
(Scene, its nodes, their arrays, the undo history) and the window's PathContext. Only
the GUI thread creates, changes, draws or deletes them.

*A worker thread* (one per task) runs ``fn(progress, cancel)`` and nothing else. ``fn``
reads only what was handed to it when the task started — values that are never edited
in place (the planning Volume), or copies taken on the GUI thread (label arrays,
``treatment_snapshot``, a copy of the path context) — and returns new objects: numpy
arrays, dataclasses, stand-alone ``vtkPolyData`` connected to no pipeline of a view.
It never reads or writes the window (no ``self`` of a window in a task), never calls a
widget and never touches a VTK object of a view. Its only ways out are the progress
callback and its result or exception, all delivered as queued signals; its only way in
is the cancel flag (a ``threading.Event``).

*Hand-over*: the result reaches ``on_done`` on the GUI thread, which is where it becomes
actors, layers or an undoable command.

Lifetimes (why the window cannot crash when it closes under running work)
-------------------------------------------------------------------------
A TaskHandle has no Qt parent: the registry ``_ACTIVE`` keeps it, its thread and its
dialog reference alive until the thread has finished and its outcome is handled.
Deleting a window therefore never destroys a running QThread (Qt aborts the process:
"QThread: Destroyed while thread is still running" — the abort of issue 18, where a
result delivered to a closed window started a new task that the window's deletion then
destroyed). ``shutdown_tasks(owner)`` (the window's closeEvent) cancels the owner's
tasks, waits for their threads and marks them dropped; ``run_task`` on a closed owner
starts nothing; a dropped handle discards results still queued to it. At interpreter
exit the remaining threads are cancelled and waited for.

Stale results
-------------
``guard`` is called on the GUI thread when the result arrives; when it returns False
the plan has changed since the task started (another case or series, an undo of what
the task worked on) and the result is dropped instead of applied (``on_stale`` is told).
"""

from __future__ import annotations

import atexit
import threading
import traceback
import weakref
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, Qt, QThread, QTimer, Signal, Slot
from PySide6.QtWidgets import QMessageBox, QProgressBar, QProgressDialog, QWidget

from guideplan.core.errors import CancelledError, GuideplanError

Task = Callable[[Callable[[float, str], None], Callable[[], bool]], Any]
Guard = Callable[[], bool]


class Generation:
    """What results belong to: a counter that a new plan (or a new open request)
    advances; a guard taken now is False once it has moved on."""

    def __init__(self) -> None:
        self.value = 0

    def advance(self) -> None:
        self.value += 1

    def guard(self) -> Guard:
        start = self.value
        return lambda: self.value == start


class _TaskThread(QThread):
    """Runs the task in ``run()``; the QThread object itself lives on the GUI thread, so
    its signals, emitted from the worker, are queued to the (GUI-thread) handle."""

    progress = Signal(float, str)
    succeeded = Signal(object)
    failed = Signal(str, str, bool)  # title, message, unexpected

    def __init__(self, fn: Task, cancel_event: threading.Event) -> None:
        super().__init__()
        self._fn = fn
        self._cancel_event = cancel_event

    def run(self) -> None:
        try:
            result = self._fn(
                lambda f, m: self.progress.emit(float(f), str(m)), self._cancel_event.is_set
            )
        except CancelledError:
            self.failed.emit("", "", False)
        except GuideplanError as exc:
            self.failed.emit(exc.title, str(exc), False)
        except Exception as exc:  # shown in a dialog, logged to stderr for the developers
            traceback.print_exc()
            self.failed.emit("Unexpected error", f"{type(exc).__name__}: {exc}", True)
        else:
            self.succeeded.emit(result)
        finally:
            self._fn = None  # the task's inputs are not kept by a finished thread


class TaskHandle(QObject):
    """One background task: its thread, its progress dialog, how its outcome is handled.

    Lives on the GUI thread, without a Qt parent (see the module docstring)."""

    done = Signal()

    def __init__(
        self,
        owner: QWidget,
        fn: Task,
        on_done: Callable[[Any], None],
        title: str,
        on_error: Callable[[str, str], None] | None = None,
        show_progress: bool = True,
        guard: Guard | None = None,
        on_stale: Callable[[], None] | None = None,
    ) -> None:
        super().__init__()
        self.title = title
        self._owner = weakref.ref(owner)
        self._on_done = on_done
        self._on_error = on_error
        self._guard = guard
        self._on_stale = on_stale
        self.dropped = False  # the owner closed or went away: the outcome is discarded
        self.settled = False  # the outcome was handled (delivered, reported or dropped)
        self.cancel_event = threading.Event()
        self.thread = _TaskThread(fn, self.cancel_event)
        self.dialog: QProgressDialog | None = None
        self._bar: QProgressBar | None = None
        if show_progress:
            self.dialog = QProgressDialog(title, "Cancel", 0, 1000, owner)
            # Our own bar, set directly: QProgressDialog.setValue() of a modal dialog
            # runs a nested event loop, which would deliver other tasks' results (and
            # this one's) in the middle of whatever called it. The dialog still appears
            # after minimumDuration by its own timer.
            self._bar = QProgressBar(self.dialog)
            self._bar.setRange(0, 1000)
            self.dialog.setBar(self._bar)
            self.dialog.setWindowTitle(title)
            self.dialog.setWindowModality(Qt.WindowModality.WindowModal)
            self.dialog.setMinimumDuration(400)
            self.dialog.setAutoClose(False)
            self.dialog.setAutoReset(False)
            self.dialog.canceled.connect(self.cancel)
        # Bound slots of this GUI-thread object: Qt queues them from the worker.
        self.thread.progress.connect(self._progress)
        self.thread.succeeded.connect(self._finished)
        self.thread.failed.connect(self._failed)
        owner.destroyed.connect(self._owner_gone)

    def start(self) -> None:
        self.thread.start()

    @property
    def owner(self) -> QWidget | None:
        return self._owner()

    @Slot()
    def cancel(self) -> None:
        self.cancel_event.set()

    @property
    def running(self) -> bool:
        """Started and its outcome not handled yet (the thread may just have ended)."""
        return not self.settled

    def shutdown(self) -> None:
        """Cancel, wait for the thread and drop the outcome (the window is closing)."""
        self.dropped = True
        self.cancel_event.set()
        self.thread.wait()
        self._settle()

    @Slot()
    def _owner_gone(self) -> None:
        """The owner's C++ object is being destroyed: nothing may reach it any more."""
        self.dropped = True
        self.cancel_event.set()
        self.dialog = None  # a child of the owner: destroyed with it
        self._bar = None

    @Slot(float, str)
    def _progress(self, fraction: float, message: str) -> None:
        if self.dialog is None or self._bar is None or self.dropped:
            return
        self.dialog.setLabelText(message)
        self._bar.setValue(int(max(0.0, min(1.0, fraction)) * 1000))

    def _close_dialog(self) -> None:
        dialog, self.dialog, self._bar = self.dialog, None, None
        if dialog is not None:
            # reset() also stops the dialog's delayed-show timer, which would otherwise
            # bring a finished dialog back on screen.
            dialog.canceled.disconnect(self.cancel)
            dialog.reset()
            dialog.hide()
            dialog.deleteLater()

    def _settle(self) -> None:
        """The outcome is handled: the dialog goes, the registry lets the handle go."""
        if self.settled:
            return
        self.settled = True
        self._close_dialog()
        self.thread.wait()  # returns at once: the thread has emitted its last signal
        _ACTIVE.discard(self)
        # The last reference goes on a later turn of the event loop: this may run inside
        # one of the handle's own queued slots, and a QObject must not be deleted from
        # within its own event.
        _RETIRED.add(self)
        QTimer.singleShot(0, _release_retired)
        self.done.emit()

    def stale(self) -> bool:
        """The result would not be applied any more (checked without side effects)."""
        return self._guard is not None and not self._guard()

    def _deliverable(self) -> bool:
        """Whether the outcome may reach the owner: not dropped, and still current."""
        if self.dropped or self.owner is None:
            return False
        if self._guard is not None and not self._guard():
            if self._on_stale is not None:
                self._on_stale()
            return False
        return True

    @Slot(object)
    def _finished(self, result: Any) -> None:
        if self.settled:
            return
        deliver = self._deliverable()
        self._settle()
        if not deliver:
            return
        try:
            self._on_done(result)
        except GuideplanError as exc:  # e.g. the scanned folder holds nothing to load
            self._report(exc.title, str(exc), unexpected=False)
        except Exception as exc:
            traceback.print_exc()
            self._report("Unexpected error", f"{type(exc).__name__}: {exc}", unexpected=True)

    @Slot(str, str, bool)
    def _failed(self, title: str, message: str, unexpected: bool) -> None:
        if self.settled:
            return
        deliver = not self.dropped and self.owner is not None
        self._settle()
        if deliver and title:  # no title: cancelled
            self._report(title, message, unexpected)

    def _report(self, title: str, message: str, unexpected: bool) -> None:
        if self._on_error is not None:
            self._on_error(title, message)
            return
        if unexpected:
            message += "\n\nYour plan is unchanged. Please report this problem."
        QMessageBox.warning(self.owner, title, message)


def run_task(
    owner: QWidget,
    fn: Task,
    on_done: Callable[[Any], None],
    title: str,
    on_error: Callable[[str, str], None] | None = None,
    show_progress: bool = True,
    guard: Guard | None = None,
    on_stale: Callable[[], None] | None = None,
) -> TaskHandle | None:
    """Start ``fn`` for ``owner``; None (nothing started) once the owner has closed.

    Without a ``guard``, the owner's ``default_task_guard()`` is used when it has one
    (the window's: the plan the task ran for is still open)."""
    if owner in _CLOSED:
        return None
    if guard is None and hasattr(owner, "default_task_guard"):
        guard = owner.default_task_guard()
    handle = TaskHandle(owner, fn, on_done, title, on_error, show_progress, guard, on_stale)
    _ACTIVE.add(handle)  # keeps the handle and its thread until the outcome is handled
    handle.start()
    return handle


def tasks_of(owner: QWidget) -> list[TaskHandle]:
    """The owner's tasks whose outcome is not handled yet."""
    return [h for h in list(_ACTIVE) if h.owner is owner]


def cancel_stale_tasks(owner: QWidget) -> None:
    """Ask the owner's tasks whose result is stale already (another plan, another open
    request) to stop: their result would be dropped anyway."""
    for handle in tasks_of(owner):
        if handle.stale():
            handle.cancel()


def shutdown_tasks(owner: QWidget) -> None:
    """The owner is closing: cancel its tasks, wait for them, drop their outcomes, and
    refuse new ones (a queued result may no longer start follow-up work)."""
    _CLOSED.add(owner)
    for handle in tasks_of(owner):
        handle.shutdown()


def reopen(owner: QWidget) -> None:
    """The owner was closed and is shown again (a hidden main window): tasks may run."""
    _CLOSED.discard(owner)


@atexit.register
def _shutdown_all() -> None:
    """Interpreter exit: no QThread may be destroyed while it runs (Qt would abort)."""
    for handle in list(_ACTIVE):
        handle.dropped = True
        handle.cancel_event.set()
    for handle in list(_ACTIVE):
        handle.thread.wait()


def _release_retired() -> None:
    _RETIRED.clear()


_ACTIVE: set[TaskHandle] = set()
_RETIRED: set[TaskHandle] = set()
_CLOSED: weakref.WeakSet[QWidget] = weakref.WeakSet()
