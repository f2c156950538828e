"""Run long work off the GUI thread, with progress, cancel and errors as dialogs.

``run_task(parent, fn, on_done, title)`` calls ``fn(progress, cancel)`` in a QThread;
progress updates a QProgressDialog (with a Cancel button that sets the cancel flag);
the result is delivered to ``on_done`` on the GUI thread. A GuideplanError becomes a
warning dialog with its message; anything else an "unexpected error" dialog — never a
traceback on screen and never a frozen window.
"""

from __future__ import annotations

import threading
import traceback
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, Qt, QThread, Signal, Slot
from PySide6.QtWidgets import QMessageBox, QProgressDialog, QWidget

from guideplan.core.errors import CancelledError, GuideplanError

Task = Callable[[Callable[[float, str], None], Callable[[], bool]], Any]


class _Runner(QObject):
    progress = Signal(float, str)
    finished = Signal(object)
    failed = Signal(str, str, bool)  # title, message, unexpected

    def __init__(self, fn: Task) -> None:
        super().__init__()
        self.fn = fn
        self.cancel_event = threading.Event()

    @Slot()
    def run(self) -> None:
        try:
            result = self.fn(
                lambda f, m: self.progress.emit(float(f), str(m)), self.cancel_event.is_set
            )
        except CancelledError:
            self.failed.emit("", "", False)
        except GuideplanError as exc:
            self.failed.emit(exc.title, str(exc), False)
        except Exception as exc:  # shown in a dialog, logged to stderr for the developers
            traceback.print_exc()
            self.failed.emit("Unexpected error", f"{type(exc).__name__}: {exc}", True)
        else:
            self.finished.emit(result)


class TaskHandle(QObject):
    """Owns the thread, the runner and the progress dialog of one background task."""

    done = Signal()

    def __init__(
        self,
        parent: QWidget,
        fn: Task,
        on_done: Callable[[Any], None],
        title: str,
        on_error: Callable[[str, str], None] | None = None,
        show_progress: bool = True,
    ) -> None:
        super().__init__(parent)
        self._parent = parent
        self._on_done = on_done
        self._on_error = on_error
        self.runner = _Runner(fn)
        self.thread = QThread(self)
        self.runner.moveToThread(self.thread)
        self.dialog: QProgressDialog | None = None
        if show_progress:
            self.dialog = QProgressDialog(title, "Cancel", 0, 1000, parent)
            self.dialog.setWindowTitle(title)
            self.dialog.setWindowModality(Qt.WindowModality.WindowModal)
            self.dialog.setMinimumDuration(400)
            self.dialog.setAutoClose(False)
            self.dialog.setAutoReset(False)
            self.dialog.canceled.connect(self.cancel)
        # Connected to this object's bound slots: Qt queues them to the GUI thread.
        self.runner.progress.connect(self._progress)
        self.runner.finished.connect(self._finished)
        self.runner.failed.connect(self._failed)
        self.thread.started.connect(self.runner.run)
        self.thread.start()

    @Slot()
    def cancel(self) -> None:
        self.runner.cancel_event.set()

    @property
    def running(self) -> bool:
        return self.thread.isRunning()

    def shutdown(self) -> None:
        """Cancel and wait for the thread (window closing). The result is dropped."""
        self.runner.cancel_event.set()
        self.thread.quit()  # the event loop ends as soon as the running task returns
        self.thread.wait()

    @Slot(float, str)
    def _progress(self, fraction: float, message: str) -> None:
        dialog = self.dialog  # setValue() of a modal dialog processes events: the task
        if dialog is None:  # may finish (and drop the dialog) inside this call
            return
        dialog.setLabelText(message)
        dialog.setValue(int(max(0.0, min(1.0, fraction)) * 1000))

    def _stop(self) -> None:
        if self.dialog is not None:
            # reset() also stops the dialog's delayed-show timer, which would otherwise
            # bring a finished dialog back on screen.
            self.dialog.canceled.disconnect(self.cancel)
            self.dialog.reset()
            self.dialog.hide()
            self.dialog.deleteLater()
            self.dialog = None
        self.thread.quit()
        self.thread.wait()
        self.done.emit()

    @Slot(object)
    def _finished(self, result: Any) -> None:
        self._stop()
        try:
            self._on_done(result)
        except GuideplanError as exc:  # e.g. the scanned folder holds nothing to load
            self._report(exc.title, str(exc), unexpected=False)
        except Exception as exc:
            traceback.print_exc()
            self._report("Unexpected error", f"{type(exc).__name__}: {exc}", unexpected=True)

    @Slot(str, str, bool)
    def _failed(self, title: str, message: str, unexpected: bool) -> None:
        self._stop()
        if not title:  # cancelled
            return
        self._report(title, message, unexpected)

    def _report(self, title: str, message: str, unexpected: bool) -> None:
        if self._on_error is not None:
            self._on_error(title, message)
            return
        if unexpected:
            message += "\n\nYour plan is unchanged. Please report this problem."
        QMessageBox.warning(self._parent, title, message)


def run_task(
    parent: QWidget,
    fn: Task,
    on_done: Callable[[Any], None],
    title: str,
    on_error: Callable[[str, str], None] | None = None,
    show_progress: bool = True,
) -> TaskHandle:
    handle = TaskHandle(parent, fn, on_done, title, on_error, show_progress)
    _ACTIVE.add(handle)  # keep a reference until the task ends
    handle.done.connect(lambda: _ACTIVE.discard(handle))
    return handle


_ACTIVE: set[TaskHandle] = set()
