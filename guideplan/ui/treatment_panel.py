"""The treatment panel: a zone (ablation or cement) on the selected needle, its settings,
and the evaluation of the whole plan. It says, always, that zones are estimates."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QGridLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from guideplan.planning.devices import Catalog
from guideplan.ui.trajectory_panel import SEVERITY_COLOURS

ZONE_KINDS = ("rf_probe", "mw_antenna", "cryoprobe", "ethanol_needle", "cement_trocar")


class TreatmentPanel(QWidget):
    add_requested = Signal(str)  # device id
    parameters_changed = Signal(dict)
    remove_requested = Signal()

    def __init__(self, catalog: Catalog) -> None:
        super().__init__()
        box = QVBoxLayout(self)
        box.setContentsMargins(0, 0, 0, 0)
        box.addWidget(QLabel("<b>Treatment</b> <small>(predicted zones are estimates)</small>"))
        grid = QGridLayout()
        self.device = QComboBox()
        for device in catalog:
            if device.kind in ZONE_KINDS:
                self.device.addItem(device.name, device.id)
        grid.addWidget(self.device, 0, 0, 1, 2)
        add = QPushButton("Add zone to needle")
        add.clicked.connect(lambda: self.add_requested.emit(self.device.currentData()))
        grid.addWidget(add, 1, 0)
        remove = QPushButton("Remove zone")
        remove.clicked.connect(self.remove_requested.emit)
        grid.addWidget(remove, 1, 1)
        self.power = self._spin("Power", " W", 0, 300, grid, 2, 0)
        self.time = self._spin("Time", " s", 0, 3600, grid, 2, 1)
        self.volume = self._spin("Volume", " mL", 0, 20, grid, 3, 0, step=0.5)
        box.addLayout(grid)
        self.summary = QLabel("")
        self.summary.setWordWrap(True)
        self.summary.setTextFormat(Qt.TextFormat.RichText)
        box.addWidget(self.summary)

    def _spin(self, name, suffix, lo, hi, grid, row, col, step=1.0) -> QDoubleSpinBox:
        spin = QDoubleSpinBox()
        spin.setRange(lo, hi)
        spin.setSingleStep(step)
        spin.setSuffix(suffix)
        spin.setPrefix(f"{name} ")
        spin.setSpecialValueText(f"{name}: chart")
        spin.editingFinished.connect(self._emit)
        grid.addWidget(spin, row, col)
        return spin

    def _emit(self) -> None:
        params: dict = {}
        for key, spin in (
            ("power_w", self.power),
            ("time_s", self.time),
            ("volume_ml", self.volume),
        ):
            if spin.value() > 0:
                params[key] = float(spin.value())
        self.parameters_changed.emit(params)

    def show_zone(self, parameters: dict | None) -> None:
        for key, spin in (
            ("power_w", self.power),
            ("time_s", self.time),
            ("volume_ml", self.volume),
        ):
            spin.blockSignals(True)
            spin.setValue(float((parameters or {}).get(key, 0.0) or 0.0))
            spin.blockSignals(False)

    def show_evaluation(self, plan, error: str | None = None) -> None:
        if error:
            self.summary.setText(f"<span style='color:#ff6b6b'>{error}</span>")
            return
        if plan is None or plan.evaluation is None:
            self.summary.setText("")
            return
        ev = plan.evaluation
        lines = []
        for title, fig in (
            ("Ablation", ev.ablation),
            ("Cement", ev.cement),
            ("Combined", ev.combined),
        ):
            if fig is None:
                continue
            text = f"{title}: zone {fig.zone_volume_ml:.1f} mL"
            if fig.coverage_pct is not None:
                text += f", covers <b>{fig.coverage_pct:.0f} %</b> of the lesion"
            if fig.min_margin_mm is not None:
                text += f", min margin {fig.min_margin_mm:+.1f} mm"
            lines.append(text)
        if ev.cement_result is not None:
            c = ev.cement_result
            fill = getattr(c, "body_fill_pct", None)
            if fill is not None:
                lines.append(f"Cement fills {fill:.0f} % of the vertebral body")
        for w in ev.warnings:
            colour = SEVERITY_COLOURS.get(w.severity, "#ddd")
            lines.append(f"<span style='color:{colour}'>⚠ {w.code}: {w.message}</span>")
        lines.append(
            "<small>Predicted zones are estimates from approximate device charts "
            "and simplified models; check the device's instructions for use.</small>"
        )
        self.summary.setText("<br>".join(lines))
