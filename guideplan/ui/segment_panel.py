"""The segmentation panel: which label, which tool (grow, threshold, brush, erase) and its
settings, the growing range of the last grow (adjust and re-grow), label operations
(fill between slices, islands, margins, smoothing, anatomy), the label display (fill /
outline, opacity, which labels are shown) and the lesion's metrics.

The panel only holds settings and emits what the user asks for; the window does the work.
"""

from __future__ import annotations

import html

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QIcon, QPixmap
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSlider,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from guideplan.core.labelmap import LabelTable

#: Shown in 2D by default: what planning is about. Bone and body would tint the whole
#: image; the user can turn them on in the list.
DEFAULT_SHOWN_KINDS = ("lesion", "critical", "other")
DEFAULT_HIDDEN_NAMES = ("body",)
DISPLAY_MODES = (("fill", "Fill"), ("outline", "Outline"), ("both", "Fill + outline"))
TOOLS = (
    ("grow", "Grow (click)", "Region growing from one click inside the lesion"),
    (
        "threshold",
        "Threshold (drag)",
        "Drag a box (or a sphere's radius) in a slice view: "
        "labels the voxels within the HU range inside it",
    ),
    ("brush", "Brush", "Paint the chosen label (radius beside the label)"),
    ("erase", "Erase", "Erase the chosen label under the brush"),
)


def _hu_spin(value: int) -> QSpinBox:
    spin = QSpinBox()
    spin.setRange(-32768, 65535)  # HU, or a fused MR's units
    spin.setValue(value)
    spin.setSingleStep(10)
    spin.setKeyboardTracking(False)
    return spin


def _swatch(colour) -> QIcon:
    pixmap = QPixmap(12, 12)
    pixmap.fill(QColor.fromRgbF(*(float(c) for c in colour[:3])))
    return QIcon(pixmap)


class SegmentPanel(QWidget):
    tool_chosen = Signal(str)  # grow | threshold | brush | erase
    #: anatomy | largest | islands | smooth | grow | shrink | fill
    operation = Signal(str)
    regrow_requested = Signal()
    opacity_changed = Signal(float)
    #: Display mode, opacity or the shown labels changed (view state, not plan edits).
    display_changed = Signal()

    def __init__(self, table: LabelTable) -> None:
        super().__init__()
        box = QVBoxLayout(self)
        box.setContentsMargins(0, 0, 0, 0)
        box.addWidget(QLabel("<b>Segmentation</b>"))
        row = QHBoxLayout()
        self.label = QComboBox()
        self.label.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        )
        self.label.setMinimumContentsLength(9)
        for label_id in table:
            entry = table[label_id]
            self.label.addItem(_swatch(entry.color), entry.name, label_id)
        row.addWidget(self.label, 1)
        self.size = QDoubleSpinBox()
        self.size.setRange(0.5, 30.0)
        self.size.setValue(3.0)
        self.size.setSuffix(" mm")
        self.size.setToolTip("Brush radius")
        row.addWidget(self.size)
        self.ball = QCheckBox("3D")
        self.ball.setToolTip("Paint a sphere instead of a disc in the view's plane")
        row.addWidget(self.ball)
        box.addLayout(row)

        tools = QGridLayout()
        self.tool_buttons: dict[str, QPushButton] = {}
        for index, (name, text, tip) in enumerate(TOOLS):
            button = QPushButton(text)
            button.setCheckable(True)
            button.setToolTip(tip)
            button.clicked.connect(lambda _=False, n=name: self.tool_chosen.emit(n))
            tools.addWidget(button, index // 2, index % 2)
            self.tool_buttons[name] = button
        box.addLayout(tools)
        self.use_prior = QCheckBox("Use the fused prior's intensities")
        self.use_prior.setToolTip(
            "Grow and threshold on the fused prior (e.g. an MR), through its registration; "
            "the label is written on the planning CT's grid"
        )
        box.addWidget(self.use_prior)

        ranges = QGridLayout()
        ranges.setColumnStretch(0, 1)
        ranges.setColumnStretch(2, 1)
        ranges.addWidget(QLabel("Growing range (HU) of the last grow"), 0, 0, 1, 4)
        self.grow_low = _hu_spin(0)
        self.grow_high = _hu_spin(100)
        for spin in (self.grow_low, self.grow_high):
            spin.setEnabled(False)
            spin.setToolTip("The intensity range the last grow used; change it and re-grow")
        ranges.addWidget(self.grow_low, 1, 0)
        ranges.addWidget(QLabel("–"), 1, 1)
        ranges.addWidget(self.grow_high, 1, 2)
        self.regrow = QPushButton("Re-grow")
        self.regrow.setToolTip("Grow again from the same seed with this range (replaces it)")
        self.regrow.setEnabled(False)
        self.regrow.clicked.connect(self.regrow_requested)
        ranges.addWidget(self.regrow, 1, 3)
        ranges.addWidget(QLabel("Threshold range (HU), shape"), 2, 0, 1, 4)
        self.thr_low = _hu_spin(-50)
        self.thr_high = _hu_spin(120)
        ranges.addWidget(self.thr_low, 3, 0)
        ranges.addWidget(QLabel("–"), 3, 1)
        ranges.addWidget(self.thr_high, 3, 2)
        self.thr_shape = QComboBox()
        self.thr_shape.addItem("Box", "box")
        self.thr_shape.addItem("Sphere", "sphere")
        self.thr_shape.setToolTip(
            "Box: drag from corner to corner. Sphere: press at the centre, drag the radius"
        )
        ranges.addWidget(self.thr_shape, 3, 3)
        ranges.addWidget(QLabel("Box depth"), 4, 0)
        self.box_depth = QDoubleSpinBox()
        self.box_depth.setRange(0.5, 300.0)
        self.box_depth.setValue(20.0)
        self.box_depth.setSuffix(" mm")
        self.box_depth.setToolTip("The box's extent across the view's plane, centred on it")
        ranges.addWidget(self.box_depth, 4, 2, 1, 2)
        box.addLayout(ranges)

        ops = QGridLayout()
        ops.setColumnStretch(0, 1)
        ops.setColumnStretch(1, 1)
        ops.setColumnStretch(2, 1)

        def op_button(text: str, name: str, tip: str) -> QPushButton:
            button = QPushButton(text)
            button.setToolTip(tip)
            button.clicked.connect(lambda: self.operation.emit(name))
            return button

        self.fill_button = op_button(
            "Fill between slices",
            "fill",
            "Interpolate the label between the slices drawn in the view under the mouse "
            "(its orientation)",
        )
        ops.addWidget(self.fill_button, 0, 0, 1, 2)
        ops.addWidget(op_button("Keep largest", "largest", "Keep the largest island"), 0, 2)
        ops.addWidget(
            op_button("Remove islands <", "islands", "Remove the islands smaller than this"),
            1,
            0,
            1,
            2,
        )
        self.island_ml = QDoubleSpinBox()
        self.island_ml.setRange(0.001, 100.0)
        self.island_ml.setDecimals(3)
        self.island_ml.setSingleStep(0.05)
        self.island_ml.setValue(0.1)
        self.island_ml.setSuffix(" mL")
        ops.addWidget(self.island_ml, 1, 2)
        ops.addWidget(op_button("Grow", "grow", "Grow the label by the margin"), 2, 0)
        ops.addWidget(op_button("Shrink", "shrink", "Shrink the label by the margin"), 2, 1)
        self.margin = QDoubleSpinBox()
        self.margin.setRange(0.1, 50.0)
        self.margin.setValue(1.0)
        self.margin.setSingleStep(0.5)
        self.margin.setSuffix(" mm")
        self.margin.setToolTip("Margin for Grow / Shrink (Euclidean, spacing-aware)")
        ops.addWidget(self.margin, 2, 2)
        ops.addWidget(op_button("Smooth", "smooth", "Smooth the label's surface (1 mm)"), 3, 0)
        ops.addWidget(
            op_button("Auto anatomy", "anatomy", "Bone, spinal canal and body, one step"),
            3,
            1,
            1,
            2,
        )
        box.addLayout(ops)
        box.addWidget(self._canal_box(op_button))

        row = QHBoxLayout()
        self.mode = QComboBox()
        for value, text in DISPLAY_MODES:
            self.mode.addItem(text, value)
        self.mode.setToolTip("How labels are drawn in the slice views")
        self.mode.currentIndexChanged.connect(lambda _: self.display_changed.emit())
        row.addWidget(self.mode)
        row.addWidget(QLabel("Opacity"))
        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(45)
        self.opacity.valueChanged.connect(lambda v: self.opacity_changed.emit(v / 100.0))
        self.opacity.valueChanged.connect(lambda _: self.display_changed.emit())
        row.addWidget(self.opacity, 1)
        box.addLayout(row)
        self.shown = QListWidget()
        self.shown.setToolTip("Labels shown in the slice views and in 3D")
        self.shown.setMaximumHeight(110)
        self.shown.itemChanged.connect(lambda _: self.display_changed.emit())
        box.addWidget(self.shown)
        self.set_labels(
            [
                (
                    i,
                    table[i].name,
                    tuple(table[i].color),
                    table[i].kind in DEFAULT_SHOWN_KINDS
                    and table[i].name not in DEFAULT_HIDDEN_NAMES,
                )
                for i in table
            ]
        )
        self.metrics = QLabel("")
        self.metrics.setWordWrap(True)
        self.metrics.setTextFormat(Qt.TextFormat.RichText)
        box.addWidget(self.metrics)

    def _canal_box(self, op_button) -> QGroupBox:
        """The spinal canal's status and what the radiologist can do about it: the cord
        warnings rest on it, so an uncertain canal is shown and asked about."""
        group = QGroupBox("Spinal canal")
        layout = QGridLayout(group)
        self.canal_status = QLabel("Not looked for yet")
        self.canal_status.setWordWrap(True)
        self.canal_status.setTextFormat(Qt.TextFormat.RichText)
        layout.addWidget(self.canal_status, 0, 0, 1, 3)
        self.canal_confirm = op_button(
            "Confirm", "canal_confirm", "The canal label is right (after checking or editing it)"
        )
        self.canal_draw = op_button(
            "Draw…",
            "canal_draw",
            "Brush the canal on a few axial slices, then Fill between slices; Confirm",
        )
        self.canal_none = op_button(
            "None here", "canal_none", "No spinal canal is near this plan (a limb, the pelvis)"
        )
        for column, button in enumerate((self.canal_confirm, self.canal_draw, self.canal_none)):
            layout.addWidget(button, 1, column)
        return group

    def show_canal_status(self, finding) -> None:
        """found (green), uncertain (orange, asks to confirm or draw), not found (red)."""
        if finding is None:
            self.canal_status.setText("Not looked for yet: run Auto anatomy or draw it")
            return
        status = str(finding.status)
        colour = {"found": "#3c3", "uncertain": "#e90", "not_found": "#e44"}.get(status, "#e44")
        who = {"user": " (by you)", "labels": " (given)"}.get(finding.source, "")
        text = {"found": "found", "uncertain": "uncertain", "not_found": "not found"}[status]
        ask = (
            ""
            if finding.usable or finding.source == "user"
            else "<br><b>Distances to the cord are unknown: confirm or draw the canal.</b>"
        )
        self.canal_status.setText(
            f"<span style='color:{colour}'><b>{text}</b></span>{who}: "
            f"{html.escape(finding.reason)}{ask}"
        )

    # -- settings ----------------------------------------------------------------------
    @property
    def label_id(self) -> int:
        return int(self.label.currentData())

    def select_label(self, label_id: int) -> None:
        index = self.label.findData(label_id)
        if index >= 0:
            self.label.setCurrentIndex(index)

    @property
    def display_mode(self) -> str:
        return str(self.mode.currentData())

    def set_display_mode(self, mode: str) -> None:
        index = self.mode.findData(mode)
        if index < 0:
            raise ValueError(mode)
        self.mode.setCurrentIndex(index)

    @property
    def grow_range(self) -> tuple[float, float]:
        lo, hi = self.grow_low.value(), self.grow_high.value()
        return float(min(lo, hi)), float(max(lo, hi))

    def show_grow_range(self, lo: float, hi: float) -> None:
        """The range the last grow used: editable, for a re-grow."""
        for spin, value in ((self.grow_low, lo), (self.grow_high, hi)):
            spin.blockSignals(True)
            spin.setValue(round(value))
            spin.setEnabled(True)
            spin.blockSignals(False)
        self.regrow.setEnabled(True)

    def clear_grow_range(self) -> None:
        for widget in (self.grow_low, self.grow_high, self.regrow):
            widget.setEnabled(False)

    @property
    def threshold_range(self) -> tuple[float, float]:
        lo, hi = self.thr_low.value(), self.thr_high.value()
        return float(min(lo, hi)), float(max(lo, hi))

    @property
    def threshold_shape(self) -> str:
        return str(self.thr_shape.currentData())

    def show_tool(self, tool: str) -> None:
        for name, button in self.tool_buttons.items():
            button.setChecked(name == tool)

    # -- shown labels --------------------------------------------------------------------
    def set_labels(self, entries: list[tuple[int, str, tuple, bool]]) -> None:
        """The labels listed for display: (id, name, colour, shown by default). Labels
        already listed keep their check state and stay first."""
        known = {self._item_id(self.shown.item(r)) for r in range(self.shown.count())}
        self.shown.blockSignals(True)
        for label_id, name, colour, shown in entries:
            if label_id in known:
                continue
            item = QListWidgetItem(_swatch(colour), name)
            item.setData(Qt.ItemDataRole.UserRole, int(label_id))
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked if shown else Qt.CheckState.Unchecked)
            self.shown.addItem(item)
            if self.label.findData(label_id) < 0:
                self.label.addItem(_swatch(colour), name, int(label_id))
        self.shown.blockSignals(False)

    def visible_labels(self) -> set[int]:
        return {
            self._item_id(item)
            for item in (self.shown.item(r) for r in range(self.shown.count()))
            if item.checkState() == Qt.CheckState.Checked
        }

    def set_label_visible(self, label_id: int, visible: bool) -> None:
        for row in range(self.shown.count()):
            item = self.shown.item(row)
            if self._item_id(item) == label_id:
                item.setCheckState(Qt.CheckState.Checked if visible else Qt.CheckState.Unchecked)
                return
        raise KeyError(label_id)

    @staticmethod
    def _item_id(item: QListWidgetItem) -> int:
        return int(item.data(Qt.ItemDataRole.UserRole))

    # -- metrics -------------------------------------------------------------------------
    def show_metrics(self, metrics) -> None:
        if metrics is None:
            self.metrics.setText("")
            return
        d = " × ".join(f"{v:.0f}" for v in metrics.diameters_mm)
        bone = getattr(metrics, "bone_reference_hu", None)
        versus = "" if bone is None else f" vs {bone:.0f} HU in the bone around"
        breach = "yes" if metrics.cortical_breach else "no"
        depth = getattr(metrics, "breach_depth_mm", None)
        if metrics.cortical_breach and depth:
            breach += f" (up to {depth:.1f} mm outside the bone)"
        self.metrics.setText(
            f"Lesion <b>{metrics.volume_ml:.2f} mL</b>, diameters {d} mm<br>"
            f"HU mean {metrics.hu_mean:.0f} (min {metrics.hu_min:.0f}, max "
            f"{metrics.hu_max:.0f}); <b>{metrics.type}</b>{versus}<br>"
            f"Cortical breach: {breach}; posterior wall: {_wall_text(metrics)}"
        )


def _wall_text(metrics) -> str:
    value = getattr(metrics, "posterior_wall", None)
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "involved" if value else "intact"
    return str(value)
