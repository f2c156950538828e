"""When the views draw: coalesced render requests with a frame budget during gestures.

Why: every render costs a fixed amount per view (with software OpenGL on a VM, about
8 ms per 600x450 view before anything is drawn), so a drag that re-renders all four
views on every mouse event runs well below 30 frames/s. Requests are therefore
coalesced (each view draws at most once per event-loop turn), and during a gesture
(dragging a needle end, painting, window/level) the view under the mouse draws on every
step while the others share what is left of the frame budget, stalest first. None is
starved: a view whose picture is older than ``max_stale_ms`` draws even if that step
runs over the budget. When the gesture ends everything pending draws at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from PySide6.QtCore import QObject, QTimer
from PySide6.QtWidgets import QWidget


class RenderScheduler(QObject):
    """Draws the views that asked for it, once per event-loop turn."""

    def __init__(
        self,
        views: Callable[[], dict[str, QWidget]],
        parent: QObject | None = None,
        frame_budget_ms: float = 30.0,
        max_stale_ms: float = 150.0,
        retry_ms: int = 15,
    ) -> None:
        super().__init__(parent)
        self._views = views
        self.frame_budget_ms = frame_budget_ms
        self.max_stale_ms = max_stale_ms
        self.retry_ms = retry_ms
        self._dirty: dict[str, float] = {}  # view -> when it first asked (monotonic s)
        self.gesture_view: str | None = None
        self._step_started: float | None = None
        self._cost_ms: dict[str, float] = {}  # a running estimate of each view's draw
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self.run_pending)
        #: Per drawn view: how long its picture was out of date (ms); read by benchmarks.
        self.staleness_ms: list[float] = []

    # -- requests ----------------------------------------------------------------------
    def request(self, names: Iterable[str] | None = None) -> None:
        """Ask ``names`` (all views when None) to draw at the next event-loop turn."""
        now = time.perf_counter()
        for name in self._views() if names is None else names:
            self._dirty.setdefault(name, now)
        if not self._timer.isActive():
            self._timer.start(0)

    def pending(self) -> set[str]:
        return set(self._dirty)

    def begin_gesture(self, view: str) -> None:
        """``view`` is being dragged in: it draws first, every step; views that have a
        cheaper way of drawing while something moves use it until the gesture ends."""
        self.gesture_view = view
        self._set_interactive(True)

    def end_gesture(self) -> None:
        """The gesture is over: draw everything still pending now."""
        self.gesture_view = None
        self.request(self._set_interactive(False))  # their full-quality picture
        self.flush()

    def _set_interactive(self, on: bool) -> list[str]:
        """Switch the views that can draw more cheaply during gestures; their names."""
        switched = []
        for name, widget in self._views().items():
            switch = getattr(widget, "set_interactive", None)
            if switch is not None:
                switch(on)
                switched.append(name)
        return switched

    def mark_step(self) -> None:
        """The current input event started now: the frame budget counts from here."""
        self._step_started = time.perf_counter()

    # -- drawing -----------------------------------------------------------------------
    def stop(self) -> None:
        """Draw nothing more (the window closes: its render windows are going away)."""
        self._timer.stop()
        self._dirty.clear()
        self.gesture_view = None

    def flush(self) -> None:
        """Draw every pending view now (tests, screenshots, the end of a gesture)."""
        self._timer.stop()
        for name in list(self._dirty):
            self._draw(name)

    def run_pending(self) -> None:
        """Draw what is pending: all of it outside gestures; within the budget during.

        During a gesture a step draws the gesture's view and then the other views,
        stalest first, while they fit the frame budget; a view overdue by more than
        ``max_stale_ms`` goes first instead, and the gesture's view waits for the next
        step if both do not fit. What is left is retried shortly."""
        if self.gesture_view is None:
            self.flush()
            return
        start = self._step_started or time.perf_counter()
        self._step_started = None
        now = time.perf_counter()
        overdue = [
            n
            for n in sorted(self._dirty, key=self._dirty.__getitem__)
            if n != self.gesture_view and (now - self._dirty[n]) * 1000.0 > self.max_stale_ms
        ]
        order = [*overdue[:1], self.gesture_view] if overdue else [self.gesture_view]
        order += [n for n in sorted(self._dirty, key=self._dirty.__getitem__) if n not in order]
        for index, name in enumerate(order):
            if name not in self._dirty:
                continue
            spent = (time.perf_counter() - start) * 1000.0
            if index == 0 or spent + self._cost_ms.get(name, 10.0) <= self.frame_budget_ms:
                self._draw(name)
        if self._dirty:
            self._timer.start(self.retry_ms)

    def _draw(self, name: str) -> None:
        asked = self._dirty.pop(name, None)
        widget = self._views().get(name)
        if widget is None or not widget.isVisible():
            return
        t0 = time.perf_counter()
        widget.render()
        done = time.perf_counter()
        cost = (done - t0) * 1000.0
        self._cost_ms[name] = 0.7 * self._cost_ms.get(name, cost) + 0.3 * cost
        if asked is not None:
            self.staleness_ms.append((done - asked) * 1000.0)
