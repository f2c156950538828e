"""The fusion panel: prior studies, how they are shown, registration and its quality.

Every change of the look is a change of the prior VolumeNode's display properties (so it
is saved and undoable); the panel only reports what the user asked for.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSlider,
    QVBoxLayout,
    QWidget,
)

FUSION_MODES = (
    ("Blend", "blend"),
    ("Colour overlay", "overlay"),
    ("Checkerboard", "checker"),
    ("Flicker", "flicker"),
)
COLORMAPS = (("Grey", "grey"), ("Hot", "hot"), ("Rainbow", "rainbow"))
NO_PRIOR = "Add a prior study (earlier CT, MR) to fuse it with the planning CT."
HINT = (
    "Ctrl+arrows move the prior by 1 mm, Ctrl+Shift+arrows turn it "
    "by 1° in the view under the mouse."
)


class FusionPanel(QWidget):
    add_requested = Signal()
    prior_selected = Signal(str)
    display_changed = Signal(str, object)  # display field, value
    register_requested = Signal(str, bool)  # mode, only around the cursor
    reset_requested = Signal()
    export_requested = Signal()
    landmark_tool = Signal()
    landmarks_cleared = Signal()

    def __init__(self) -> None:
        super().__init__()
        box = QVBoxLayout(self)
        box.setContentsMargins(0, 0, 0, 0)
        header = QHBoxLayout()
        header.addWidget(QLabel("<b>Fusion</b>"))
        add = QPushButton("Add prior…")
        add.clicked.connect(self.add_requested.emit)
        header.addWidget(add)
        box.addLayout(header)
        self.prior = QComboBox()
        self.prior.activated.connect(lambda i: self.prior_selected.emit(self.prior.itemData(i)))
        box.addWidget(self.prior)

        row = QHBoxLayout()
        self.mode = QComboBox()
        for label, value in FUSION_MODES:
            self.mode.addItem(label, value)
        self.mode.setToolTip("How the prior is shown over the planning CT")
        self.mode.activated.connect(self._mode_chosen)
        self.colormap = QComboBox()
        for label, value in COLORMAPS:
            self.colormap.addItem(label, value)
        self.colormap.setToolTip("Colour map of the prior")
        self.colormap.activated.connect(
            lambda i: self.display_changed.emit("display.colormap", self.colormap.itemData(i))
        )
        row.addWidget(self.mode, 1)
        row.addWidget(self.colormap)
        box.addLayout(row)

        row = QHBoxLayout()
        row.addWidget(QLabel("Opacity"))
        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setToolTip("Opacity of the prior over the planning CT")
        self.opacity.sliderReleased.connect(
            lambda: self.display_changed.emit("display.opacity", self.opacity.value() / 100.0)
        )
        row.addWidget(self.opacity, 1)
        self.opacity_text = QLabel("0 %")
        self.opacity_text.setMinimumWidth(40)
        self.opacity.valueChanged.connect(lambda v: self.opacity_text.setText(f"{v} %"))
        row.addWidget(self.opacity_text)
        self.visible = QCheckBox("Show")
        self.visible.setToolTip("Show the prior in the slice views")
        self.visible.toggled.connect(lambda on: self.display_changed.emit("display.visible", on))
        row.addWidget(self.visible)
        box.addLayout(row)

        row = QHBoxLayout()
        self.checker_label = QLabel("Checkerboard tile")
        row.addWidget(self.checker_label)
        self.checker = QDoubleSpinBox()
        self.checker.setRange(2.0, 100.0)
        self.checker.setDecimals(0)
        self.checker.setSuffix(" mm")
        self.checker.setToolTip("Checkerboard tile size (used in the Checkerboard mode)")
        self.checker.editingFinished.connect(
            lambda: self.display_changed.emit("display.checker_mm", self.checker.value())
        )
        row.addWidget(self.checker, 1)
        box.addLayout(row)

        row = QHBoxLayout()
        row.addWidget(QLabel("Registration"))
        self.reg_mode = QComboBox()
        for mode in ("rigid", "affine", "deformable"):
            self.reg_mode.addItem(mode.capitalize(), mode)
        self.reg_mode.setToolTip(
            "Rigid: shift and turn; affine: also scale and shear; deformable: bends "
            "(the treated bone is kept rigid)"
        )
        row.addWidget(self.reg_mode, 1)
        self.local = QCheckBox("around the cursor")
        self.local.setToolTip(
            "Match only within 40 mm of the cursor (the treated bone): "
            "posture differs between scans"
        )
        self.local.setChecked(True)
        row.addWidget(self.local)
        box.addLayout(row)
        row = QHBoxLayout()
        pick = QPushButton("Landmark pairs")
        pick.setToolTip(
            "Click a point on the CT, then the same point on the prior (shown "
            "fused); three pairs or more start the registration from them"
        )
        pick.clicked.connect(self.landmark_tool.emit)
        row.addWidget(pick)
        clear = QPushButton("Clear pairs")
        clear.setToolTip("Remove every landmark pair of this prior")
        clear.clicked.connect(self.landmarks_cleared.emit)
        row.addWidget(clear)
        self.landmarks_only = QCheckBox("landmarks only")
        self.landmarks_only.setToolTip(
            "Register from the landmark pairs alone (no intensity refinement)"
        )
        row.addWidget(self.landmarks_only)
        self._landmark_widgets = (pick, clear)
        box.addLayout(row)
        row = QHBoxLayout()
        row.addWidget(QLabel("Prior window/level"))
        self.window = QDoubleSpinBox()
        self.window.setRange(1.0, 10000.0)
        self.window.setPrefix("W ")
        self.window.setToolTip("Window (width) of the prior's grey scale, in its own units")
        self.level = QDoubleSpinBox()
        self.level.setRange(-3000.0, 10000.0)
        self.level.setPrefix("L ")
        self.level.setToolTip("Level (centre) of the prior's grey scale, in its own units")
        for spin in (self.window, self.level):
            spin.setDecimals(0)
            spin.editingFinished.connect(self._window_level)
            row.addWidget(spin)
        box.addLayout(row)
        row = QHBoxLayout()
        self._action_buttons = []
        for label, slot, tip in (
            ("Register", self._register, "Register the prior to the planning CT"),
            ("Reset", self.reset_requested.emit, "Back to the prior's initial position"),
            (
                "Export .tfm…",
                self.export_requested.emit,
                "Save the registration as an ITK transform file",
            ),
        ):
            button = QPushButton(label)
            button.setToolTip(tip)
            button.clicked.connect(slot)
            row.addWidget(button)
            self._action_buttons.append(button)
        box.addLayout(row)
        self.quality = QLabel(NO_PRIOR)
        self.quality.setWordWrap(True)
        box.addWidget(self.quality)
        self.set_enabled(False)

    def _window_level(self) -> None:
        self.display_changed.emit("display.window", self.window.value())
        self.display_changed.emit("display.level", self.level.value())

    def _mode_chosen(self, index: int) -> None:
        self._sync_checker()
        self.display_changed.emit("display.fusion", self.mode.itemData(index))

    def _sync_checker(self) -> None:
        on = self.prior.count() > 0 and self.mode.currentData() == "checker"
        self.checker.setEnabled(on)
        self.checker_label.setEnabled(on)

    def _register(self) -> None:
        self.register_requested.emit(self.reg_mode.currentData(), self.local.isChecked())

    def set_enabled(self, on: bool) -> None:
        for widget in (
            self.prior,
            self.mode,
            self.colormap,
            self.opacity,
            self.checker,
            self.visible,
            self.reg_mode,
            self.local,
            self.landmarks_only,
            self.window,
            self.level,
            *self._landmark_widgets,
            *self._action_buttons,
        ):
            widget.setEnabled(on)
        self._sync_checker()
        if not on:
            self.quality.setText(NO_PRIOR)

    def show_priors(self, priors: list[tuple[str, str]], current: str | None) -> None:
        self.prior.clear()
        for node_id, name in priors:
            self.prior.addItem(name, node_id)
        index = self.prior.findData(current)
        if index >= 0:
            self.prior.setCurrentIndex(index)
        self.set_enabled(bool(priors))

    def show_window_level(self, window: float, level: float) -> None:
        for spin, value in ((self.window, window), (self.level, level)):
            spin.blockSignals(True)
            spin.setValue(float(value))
            spin.blockSignals(False)

    def show_display(self, display, metric: dict | None) -> None:
        for combo, value in ((self.mode, display.fusion), (self.colormap, display.colormap)):
            index = combo.findData(value)
            if index >= 0:
                combo.setCurrentIndex(index)
        self.opacity.setValue(int(round(display.opacity * 100)))
        for spin, value in ((self.window, display.window), (self.level, display.level)):
            if value is not None:
                spin.blockSignals(True)
                spin.setValue(float(value))
                spin.blockSignals(False)
        self.checker.setValue(float(display.checker_mm))
        self._sync_checker()
        self.visible.blockSignals(True)
        self.visible.setChecked(bool(display.visible))
        self.visible.blockSignals(False)
        if metric:
            parts = [f"{metric.get('method', '')} {metric.get('mode', '')}".strip()]
            if metric.get("metric") is not None:
                parts.append(f"mutual information {metric['metric']:.3f} (lower is better)")
            if metric.get("tre_mm") is not None:
                parts.append(f"landmark TRE {metric['tre_mm']:.2f} mm")
            if metric.get("wall_s"):
                parts.append(f"{metric['wall_s']:.1f} s")
            self.quality.setText("Registered: " + ", ".join(parts) + "<br>" + HINT)
        else:  # this prior is not registered (yet): no other prior's figures
            self.quality.setText("Not registered yet. " + HINT)
