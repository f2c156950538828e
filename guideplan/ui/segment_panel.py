"""The segmentation panel: which label, which tool, brush size, automatic anatomy,
island/margin/smoothing operations, and the lesion's metrics."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from guideplan.core.labelmap import LabelTable


class SegmentPanel(QWidget):
    tool_chosen = Signal(str)  # grow | brush | erase
    operation = Signal(str)  # anatomy | largest | smooth | grow1 | shrink1
    opacity_changed = Signal(float)

    def __init__(self, table: LabelTable) -> None:
        super().__init__()
        box = QVBoxLayout(self)
        box.setContentsMargins(0, 0, 0, 0)
        box.addWidget(QLabel("<b>Segmentation</b>"))
        row = QHBoxLayout()
        self.label = QComboBox()
        for label_id in table:
            entry = table[label_id]
            self.label.addItem(entry.name, label_id)
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
        grid = QGridLayout()
        buttons = [
            ("Grow lesion (click)", lambda: self.tool_chosen.emit("grow")),
            ("Brush", lambda: self.tool_chosen.emit("brush")),
            ("Erase", lambda: self.tool_chosen.emit("erase")),
            ("Auto anatomy", lambda: self.operation.emit("anatomy")),
            ("Keep largest", lambda: self.operation.emit("largest")),
            ("Smooth", lambda: self.operation.emit("smooth")),
            ("Grow 1 mm", lambda: self.operation.emit("grow1")),
            ("Shrink 1 mm", lambda: self.operation.emit("shrink1")),
        ]
        for index, (text, slot) in enumerate(buttons):
            button = QPushButton(text)
            button.clicked.connect(slot)
            grid.addWidget(button, index // 2, index % 2)
        box.addLayout(grid)
        row = QHBoxLayout()
        row.addWidget(QLabel("Opacity"))
        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(45)
        self.opacity.valueChanged.connect(lambda v: self.opacity_changed.emit(v / 100.0))
        row.addWidget(self.opacity, 1)
        box.addLayout(row)
        self.metrics = QLabel("")
        self.metrics.setWordWrap(True)
        self.metrics.setTextFormat(Qt.TextFormat.RichText)
        box.addWidget(self.metrics)

    @property
    def label_id(self) -> int:
        return int(self.label.currentData())

    def select_label(self, label_id: int) -> None:
        index = self.label.findData(label_id)
        if index >= 0:
            self.label.setCurrentIndex(index)

    def show_metrics(self, metrics) -> None:
        if metrics is None:
            self.metrics.setText("")
            return
        d = ", ".join(f"{v:.0f}" for v in metrics.diameters_mm)
        self.metrics.setText(
            f"Lesion <b>{metrics.volume_ml:.2f} mL</b>, diameters {d} mm<br>"
            f"HU mean {metrics.hu_mean:.0f} (min {metrics.hu_min:.0f}, max "
            f"{metrics.hu_max:.0f}); <b>{metrics.type}</b><br>"
            f"Cortical breach: {'yes' if metrics.cortical_breach else 'no'}; posterior wall: "
            f"{_wall_text(metrics)}"
        )


def _wall_text(metrics) -> str:
    value = getattr(metrics, "posterior_wall", None)
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "involved" if value else "intact"
    return str(value)
