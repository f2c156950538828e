"""Qt widgets around the render-layer views: mouse and keyboard, nothing else.

A :class:`SliceWidget` turns gestures into intentions (move the cursor, scroll, change
window/level, zoom, pan, place a measurement point) and emits them as signals; the main
window decides what they do to the plan. Mouse conventions of radiology workstations:
left = cursor or active tool, right-drag = window/level, middle-drag (or Shift+left)
= pan, wheel = scroll slices, Ctrl+wheel = zoom.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPoint, Qt, Signal
from PySide6.QtGui import QKeyEvent, QMouseEvent, QWheelEvent
from PySide6.QtWidgets import QFrame, QSlider, QVBoxLayout, QWidget
from vtkmodules.qt.QVTKRenderWindowInteractor import QVTKRenderWindowInteractor
from vtkmodules.vtkInteractionStyle import (
    vtkInteractorStyleTrackballCamera,
    vtkInteractorStyleUser,
)

from guideplan.render.slice_view import VIEW_COLOURS, SliceView
from guideplan.render.view3d import View3D


def _border_style(view: str, active: bool = False) -> str:
    r, g, b = (int(c * 255) for c in VIEW_COLOURS[view])
    width = 2 if active else 1
    return f"QFrame#viewFrame {{ border: {width}px solid rgb({r},{g},{b}); background: #000; }}"


class _VtkCanvas(QVTKRenderWindowInteractor):
    """The VTK widget with our own mouse handling (the VTK interactor style is inert)."""

    def __init__(self, owner: SliceWidget) -> None:
        super().__init__(owner)
        self.owner = owner
        self.setMouseTracking(True)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)

    def mousePressEvent(self, event: QMouseEvent) -> None:
        self.owner.handle_press(event)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        self.owner.handle_move(event)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        self.owner.handle_release(event)

    def wheelEvent(self, event: QWheelEvent) -> None:
        self.owner.handle_wheel(event)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if not self.owner.handle_key(event):
            event.ignore()

    def keyReleaseEvent(self, event: QKeyEvent) -> None:
        event.ignore()

    def enterEvent(self, event) -> None:
        self.owner.hovered.emit(self.owner.view)

    def leaveEvent(self, event) -> None:
        self.owner.hover_lps.emit(None)


class SliceWidget(QFrame):
    #: The user clicked/dragged to put the cursor (crosshair) here, LPS mm.
    cursor_requested = Signal(object)
    #: The view moved its plane (scroll): the new cursor position, LPS mm.
    scrolled = Signal(object)
    #: Right-drag: (delta window, delta level, gesture finished?)
    window_level_dragged = Signal(float, float, bool)
    #: Tool click: LPS point, button-release?
    tool_point = Signal(object, bool)
    tool_drag = Signal(object)
    #: Mouse over the view: LPS point or None.
    hover_lps = Signal(object)
    hovered = Signal(str)
    camera_changed = Signal()
    #: Dragging a plan handle (e.g. a needle's entry): key, LPS point, finished?
    handle_dragged = Signal(object, object, bool)
    #: Ctrl+left-drag: move the fused prior by (right, up) mm in this plane; finished?
    prior_dragged = Signal(float, float, bool)
    #: (view, started): a mouse gesture (any drag) begins or ends in this view.
    gesture = Signal(str, bool)
    #: A mouse-move of a gesture is about to be handled (frame budgets count from here).
    gesture_step = Signal()

    def __init__(self, view: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.view = view
        self.setObjectName("viewFrame")
        self.setStyleSheet(_border_style(view))
        self.canvas = _VtkCanvas(self)
        self.canvas.GetRenderWindow().SetMultiSamples(0)
        self.slice_view = SliceView(view)
        self.canvas.GetRenderWindow().AddRenderer(self.slice_view.renderer)
        self.canvas.SetInteractorStyle(vtkInteractorStyleUser())
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setObjectName(f"slider_{view}")
        self.slider.valueChanged.connect(self._slider_moved)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(1, 1, 1, 1)
        layout.setSpacing(0)
        layout.addWidget(self.canvas, 1)
        layout.addWidget(self.slider)
        self.tool = "navigate"
        #: Set by the window: (widget, Qt position) -> handle key under the mouse, or None.
        self.handle_picker = None
        self._handle = None
        self._drag: str | None = None
        self._gesture = False
        self._last = QPoint()
        self._updating_slider = False

    # -- helpers --------------------------------------------------------------------------
    def render(self) -> None:  # type: ignore[override]
        self.canvas.GetRenderWindow().Render()

    def set_active(self, active: bool) -> None:
        self.setStyleSheet(_border_style(self.view, active))

    def sync_slider(self) -> None:
        index, count = self.slice_view.slice_index()
        self._updating_slider = True
        self.slider.setRange(1, max(count, 1))
        self.slider.setValue(index)
        self._updating_slider = False

    def _slider_moved(self, value: int) -> None:
        if self._updating_slider or self.slice_view.frame is None:
            return
        index, _ = self.slice_view.slice_index()
        if value != index:
            self.scrolled.emit(self.slice_view.scroll(value - index))

    def _display_xy(self, pos) -> tuple[float, float]:
        ratio = self.canvas.devicePixelRatioF()
        height = self.canvas.height() * ratio
        return pos.x() * ratio, height - pos.y() * ratio - 1

    def lps_at(self, pos) -> np.ndarray | None:
        x, y = self._display_xy(pos)
        return self.slice_view.display_to_lps(x, y)

    # -- mouse ---------------------------------------------------------------------------
    def handle_press(self, event: QMouseEvent) -> None:
        self.canvas.setFocus()
        self._last = event.position().toPoint()
        button = event.button()
        shift = bool(event.modifiers() & Qt.KeyboardModifier.ShiftModifier)
        if button == Qt.MouseButton.RightButton:
            self._drag = "wl"
        elif button == Qt.MouseButton.MiddleButton or (
            button == Qt.MouseButton.LeftButton and shift
        ):
            self._drag = "pan"
        elif button == Qt.MouseButton.LeftButton and (
            event.modifiers() & Qt.KeyboardModifier.ControlModifier
        ):
            self._drag = "prior"
        elif button == Qt.MouseButton.LeftButton:
            lps = self.lps_at(self._last)
            if lps is None:
                return
            handle = self.handle_picker(self, self._last) if self.handle_picker else None
            if handle is not None:
                self._drag, self._handle = "handle", handle
            elif self.tool == "navigate":
                self._drag = "cursor"
                self.cursor_requested.emit(lps)
            else:
                self._drag = "tool"
                self.tool_point.emit(lps, False)
        if self._drag is not None and not self._gesture:
            self._gesture = True
            self.gesture.emit(self.view, True)

    def handle_move(self, event: QMouseEvent) -> None:
        pos = event.position().toPoint()
        if self._drag is not None:
            self.gesture_step.emit()
        dx, dy = pos.x() - self._last.x(), pos.y() - self._last.y()
        if self._drag == "wl":
            self.window_level_dragged.emit(dx * 4.0, -dy * 2.0, False)
        elif self._drag == "pan":
            mm = self.slice_view.mm_per_pixel() * self.canvas.devicePixelRatioF()
            self.slice_view.pan(dx * mm, -dy * mm)
            self.render()
            self.camera_changed.emit()
        elif self._drag == "cursor":
            lps = self.lps_at(pos)
            if lps is not None:
                self.cursor_requested.emit(lps)
        elif self._drag == "tool":
            lps = self.lps_at(pos)
            if lps is not None:
                self.tool_drag.emit(lps)
        elif self._drag == "prior":
            mm = self.slice_view.mm_per_pixel() * self.canvas.devicePixelRatioF()
            self.prior_dragged.emit(dx * mm, -dy * mm, False)
        elif self._drag == "handle":
            lps = self.lps_at(pos)
            if lps is not None:
                self.handle_dragged.emit(self._handle, lps, False)
        self._last = pos
        self.hover_lps.emit(self.lps_at(pos))

    def handle_release(self, event: QMouseEvent) -> None:
        self._release_drag(event)
        if self._gesture:
            self._gesture = False
            self.gesture.emit(self.view, False)

    def _release_drag(self, event: QMouseEvent) -> None:
        if self._drag == "prior":
            self.prior_dragged.emit(0.0, 0.0, True)
        elif self._drag == "handle":
            self.handle_dragged.emit(self._handle, None, True)
            self._handle = None
        elif self._drag == "wl":
            self.window_level_dragged.emit(0.0, 0.0, True)
        elif self._drag == "tool":
            lps = self.lps_at(event.position().toPoint())
            if lps is not None:
                self.tool_point.emit(lps, True)
        self._drag = None

    def handle_wheel(self, event: QWheelEvent) -> None:
        steps = event.angleDelta().y() / 120.0
        if steps == 0:
            return
        if event.modifiers() & Qt.KeyboardModifier.ControlModifier:
            self.slice_view.zoom(1.15**steps)
            self.render()
            self.camera_changed.emit()
            return
        n = int(np.sign(steps) * max(1, round(abs(steps))))
        self.scrolled.emit(self.slice_view.scroll(n))

    def handle_key(self, event: QKeyEvent) -> bool:
        key = event.key()
        page = 10
        moves = {
            Qt.Key.Key_Up: 1,
            Qt.Key.Key_Right: 1,
            Qt.Key.Key_Down: -1,
            Qt.Key.Key_Left: -1,
            Qt.Key.Key_PageUp: page,
            Qt.Key.Key_PageDown: -page,
        }
        # Ctrl+arrows nudge the fused prior and Alt+arrows the needle: the window's keys.
        nudges = Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.AltModifier
        if key in moves and not event.modifiers() & nudges:
            self.scrolled.emit(self.slice_view.scroll(moves[key]))
            return True
        return False


class _Vtk3DCanvas(QVTKRenderWindowInteractor):
    """The VTK widget of the 3D view: the trackball rotates; a click (press and release
    without moving) is reported, for picking."""

    CLICK_PX = 4

    def __init__(self, owner: View3DWidget) -> None:
        super().__init__(owner)
        self.owner = owner
        self._pressed: QPoint | None = None

    def mousePressEvent(self, event: QMouseEvent) -> None:
        if event.button() == Qt.MouseButton.LeftButton:
            self._pressed = event.position().toPoint()
        super().mousePressEvent(event)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        super().mouseReleaseEvent(event)
        pressed, self._pressed = self._pressed, None
        if pressed is None or event.button() != Qt.MouseButton.LeftButton:
            return
        pos = event.position().toPoint()
        if (pos - pressed).manhattanLength() <= self.CLICK_PX:
            ratio = self.devicePixelRatioF()
            x, y = pos.x() * ratio, (self.height() - pos.y()) * ratio - 1
            self.owner.clicked.emit(float(x), float(y))


class View3DWidget(QFrame):
    hovered = Signal(str)
    #: A click in the 3D view at display (x, y) pixels (VTK's origin: bottom left).
    clicked = Signal(float, float)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.view = "3d"
        self.setObjectName("viewFrame")
        self.setStyleSheet(_border_style("3d"))
        self.canvas = _Vtk3DCanvas(self)
        window = self.canvas.GetRenderWindow()
        window.SetMultiSamples(0)
        self.view3d = View3D()
        window.AddRenderer(self.view3d.renderer)
        self.view3d.attach_render_window(window)
        self.canvas.SetInteractorStyle(vtkInteractorStyleTrackballCamera())
        layout = QVBoxLayout(self)
        layout.setContentsMargins(1, 1, 1, 1)
        layout.addWidget(self.canvas)

    def set_active(self, active: bool) -> None:
        self.setStyleSheet(_border_style("3d", active))

    def set_interactive(self, on: bool) -> None:
        """While something is dragged: translucent surfaces blend in drawing order
        instead of order-independently (about half the cost with software OpenGL); the
        exact blend returns when the gesture ends."""
        self.view3d.renderer.SetUseOIT(not on)

    def render(self) -> None:  # type: ignore[override]
        self.canvas.GetRenderWindow().Render()

    def start(self) -> None:
        self.canvas.Initialize()
        self.canvas.Start()
