"""The treatment panel: a zone (ablation or cement) on the selected needle, its settings,
and the evaluation of the whole plan. It says, always, that zones are estimates.

What it shows depends on the zone's device: power and time (RF, microwave), freeze time
and the probes of a multi-probe cryoablation (cryoprobes: every checked needle is a
probe, their isotherms merge), the injected volume on a slider (cement, ethanol: live,
debounced: the fill is computed off the GUI thread by the window).
"""

from __future__ import annotations

from html import escape

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from guideplan.core.resources import load_json
from guideplan.planning.devices import Catalog, Device
from guideplan.planning.zones import estimate_statement
from guideplan.render.zone_layer import CHANNELS_BY_NAME
from guideplan.ui.trajectory_panel import SEVERITY_COLOURS

ZONE_KINDS = (
    "rf_probe",
    "rf_bipolar",
    "mw_antenna",
    "cryoprobe",
    "ethanol_needle",
    "cement_trocar",
)
VOLUME_STEP_ML = 0.1  # slider resolution (display, not a clinical figure)
DEBOUNCE_MS = 250  # the slider's volume is applied when it rests this long


def _hex(colour) -> str:
    return "#" + "".join(f"{int(round(c * 255)):02x}" for c in colour)


def swatch(name: str) -> str:
    c = CHANNELS_BY_NAME[name]
    return f"<span style='color:{_hex(c.colour)}'>■</span> {name}"


def volume_limits(device: Device | None) -> tuple[float, float]:
    """(default, maximum) injected volume in mL for a cement trocar or ethanol needle."""
    if device is not None and device.kind == "ethanol_needle":
        chart = device.data.get("zone", {})
        return float(chart["default_volume_ml"]), float(chart["max_volume_ml"])
    cement = load_json("treatment.json")["cement"]
    return float(cement["default_volume_ml"]["value"]), float(cement["max_volume_ml"]["value"])


class TreatmentPanel(QWidget):
    add_requested = Signal(str)  # device id
    parameters_changed = Signal(dict)  # power_w / time_s (spin boxes)
    volume_changed = Signal(float, int)  # mL, gesture number (undo merges one gesture)
    probes_changed = Signal(list)  # trajectory ids of the cryo zone's further probes
    remove_requested = Signal()
    catalog_requested = Signal()

    def __init__(self, catalog: Catalog) -> None:
        super().__init__()
        self.device_kind = ""
        self.gesture = 0
        box = QVBoxLayout(self)
        box.setContentsMargins(0, 0, 0, 0)
        box.addWidget(QLabel("<b>Treatment</b>"))
        self.estimate = QLabel(f"<small>⚠ {estimate_statement()}</small>")
        self.estimate.setWordWrap(True)
        self.estimate.setStyleSheet("color: #e0c070;")
        box.addWidget(self.estimate)

        grid = QGridLayout()
        self.device = QComboBox()
        self.device.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        )
        self.device.setMinimumContentsLength(18)
        self.device.currentTextChanged.connect(self.device.setToolTip)
        grid.addWidget(self.device, 0, 0)
        catalog_button = QPushButton("Catalog…")
        catalog_button.setToolTip("View the device charts; add or edit your own devices")
        catalog_button.clicked.connect(self.catalog_requested.emit)
        grid.addWidget(catalog_button, 0, 1)
        self.add_button = QPushButton("Add zone to needle")
        self.add_button.setToolTip(
            "A zone of the chosen device on the selected needle. A cryoprobe on a second "
            "needle joins the existing cryo zone of that device as a further probe."
        )
        self.add_button.clicked.connect(lambda: self.add_requested.emit(self.device.currentData()))
        grid.addWidget(self.add_button, 1, 0)
        self.remove_button = QPushButton("Remove zone")
        self.remove_button.clicked.connect(self.remove_requested.emit)
        grid.addWidget(self.remove_button, 1, 1)
        box.addLayout(grid)
        self.set_catalog(catalog)

        self.zone_title = QLabel("")
        self.zone_title.setWordWrap(True)
        box.addWidget(self.zone_title)
        settings = QGridLayout()
        self.power = self._spin("Power", " W", 0, 300, settings, 0, 0)
        self.time = self._spin("Time", " s", 0, 3600, settings, 0, 1, step=10)
        box.addLayout(settings)

        self.volume_row = QWidget()
        row = QHBoxLayout(self.volume_row)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(QLabel("Volume"))
        self.volume = QSlider(Qt.Orientation.Horizontal)
        self.volume.setRange(1, 150)
        self.volume.setPageStep(5)
        row.addWidget(self.volume, 1)
        self.volume_text = QLabel("")
        self.volume_text.setMinimumWidth(58)
        row.addWidget(self.volume_text)
        box.addWidget(self.volume_row)
        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(DEBOUNCE_MS)
        self._debounce.timeout.connect(self._emit_volume)
        self.volume.valueChanged.connect(self._volume_moved)
        self.volume.sliderPressed.connect(self._new_gesture)
        self.volume.sliderReleased.connect(self._emit_volume)

        self.probes_title = QLabel("Cryoprobes (checked needles freeze together):")
        self.probes_title.setWordWrap(True)
        box.addWidget(self.probes_title)
        self.probes = QListWidget()
        self.probes.setMaximumHeight(84)
        self.probes.itemChanged.connect(self._emit_probes)
        box.addWidget(self.probes)

        self.legend = QLabel("")
        self.legend.setWordWrap(True)
        self.legend.setTextFormat(Qt.TextFormat.RichText)
        box.addWidget(self.legend)
        self.cement_info = QLabel("")
        self.cement_info.setWordWrap(True)
        self.cement_info.setTextFormat(Qt.TextFormat.RichText)
        box.addWidget(self.cement_info)
        self.summary = QLabel("")
        self.summary.setWordWrap(True)
        self.summary.setTextFormat(Qt.TextFormat.RichText)
        box.addWidget(self.summary)
        self._own_probe = ""
        self.show_zone(None)

    # -- catalog -----------------------------------------------------------------------
    def set_catalog(self, catalog: Catalog) -> None:
        """List the catalog's zone devices (after the catalog dialog saved), keeping the
        chosen one when it is still there."""
        current = self.device.currentData()
        self.device.blockSignals(True)
        self.device.clear()
        for device in catalog:
            if device.kind in ZONE_KINDS:
                mark = " (approx.)" if device.approximate else ""
                self.device.addItem(f"{device.name}{mark}", device.id)
                self.device.setItemData(
                    self.device.count() - 1, f"{device.name}{mark}", Qt.ItemDataRole.ToolTipRole
                )
        index = self.device.findData(current)
        self.device.setCurrentIndex(max(index, 0))
        self.device.blockSignals(False)

    # -- settings ----------------------------------------------------------------------
    def _spin(self, name, suffix, lo, hi, grid, row, col, step=1.0) -> QDoubleSpinBox:
        spin = QDoubleSpinBox()
        spin.setRange(lo, hi)
        spin.setDecimals(0)
        spin.setSingleStep(step)
        spin.setSuffix(suffix)
        spin.setPrefix(f"{name} ")
        spin.setSpecialValueText(f"{name}: chart")
        spin.setKeyboardTracking(False)
        spin.editingFinished.connect(self._emit)
        grid.addWidget(spin, row, col)
        return spin

    def _emit(self) -> None:
        params: dict = {}
        for key, spin in (("power_w", self.power), ("time_s", self.time)):
            if spin.isVisible() and spin.value() > 0:
                params[key] = float(spin.value())
        self.parameters_changed.emit(params)

    def volume_ml(self) -> float:
        return self.volume.value() * VOLUME_STEP_ML

    def set_volume_ml(self, value: float) -> None:
        """As a user moving the slider (tests, keyboard): applied after the debounce."""
        self._new_gesture()
        self.volume.setValue(round(value / VOLUME_STEP_ML))

    def _new_gesture(self) -> None:
        self.gesture += 1

    def _volume_moved(self, _value: int) -> None:
        self.volume_text.setText(f"{self.volume_ml():.1f} mL")
        self._debounce.start()

    def _emit_volume(self) -> None:
        self._debounce.stop()
        self.volume_changed.emit(self.volume_ml(), self.gesture)

    def _emit_probes(self, _item=None) -> None:
        ids = []
        for index in range(self.probes.count()):
            item = self.probes.item(index)
            tid = item.data(Qt.ItemDataRole.UserRole)
            if item.checkState() == Qt.CheckState.Checked and tid != self._own_probe:
                ids.append(tid)
        self.probes_changed.emit(ids)

    # -- showing a zone ----------------------------------------------------------------
    def show_zone(
        self,
        parameters: dict | None,
        device: Device | None = None,
        needles: list[tuple[str, str]] | None = None,
        own_id: str = "",
    ) -> None:
        """The settings of the selected needle's zone (None: no zone). ``needles``: every
        (trajectory id, name) of the plan, for the cryo probe list; ``own_id`` the zone's
        own needle."""
        p = parameters or {}
        kind = device.kind if device is not None and parameters is not None else ""
        self.device_kind = kind
        chart = device.data.get("zone", {}) if device is not None else {}
        chart_params = chart.get("parameters", ["time_s"]) if isinstance(chart, dict) else []
        self.remove_button.setEnabled(parameters is not None)
        if parameters is None:
            self.zone_title.setText("<i>No zone on the selected needle.</i>")
        else:
            name = device.name if device is not None else p.get("device_id", "?")
            approx = " — approximate chart" if device is not None and device.approximate else ""
            self.zone_title.setText(f"Zone: <b>{name}</b>{approx}")
        thermal = kind in ("rf_probe", "rf_bipolar", "mw_antenna", "cryoprobe")
        self.power.setVisible(thermal and "power_w" in chart_params)
        self.time.setVisible(thermal)
        word = "Freeze" if kind == "cryoprobe" else "Time"
        for key, spin, label, unit in (
            ("power_w", self.power, "Power", "W"),
            ("time_s", self.time, word, "s"),
        ):
            spin.blockSignals(True)
            spin.setPrefix(f"{label} ")
            default = chart.get(f"default_{key}")
            spin.setSpecialValueText(
                f"{label}: chart ({default:g} {unit})" if default is not None else f"{label}: chart"
            )
            value = p.get(key, p.get("freeze_s") if key == "time_s" else None)
            spin.setValue(float(value or 0.0))
            spin.blockSignals(False)
        volume = kind in ("cement_trocar", "ethanol_needle")
        self.volume_row.setVisible(volume)
        if volume:
            default, top = volume_limits(device)
            self.volume.blockSignals(True)
            self.volume.setRange(1, round(top / VOLUME_STEP_ML))
            if not self._debounce.isActive() and not self.volume.isSliderDown():
                self.volume.setValue(round(float(p.get("volume_ml", default)) / VOLUME_STEP_ML))
            self.volume.blockSignals(False)
            self.volume_text.setText(f"{self.volume_ml():.1f} mL")
        cryo = kind == "cryoprobe"
        self.probes_title.setVisible(cryo)
        self.probes.setVisible(cryo)
        if cryo:
            self._show_probes(needles or [], own_id, list(p.get("probe_trajectory_ids", [])))
        if cryo:
            self.legend.setText(
                "Isotherms: "
                + " &nbsp; ".join(swatch(n) for n in ("cryo 0 °C", "cryo -20 °C", "cryo -40 °C"))
            )
        elif kind == "cement_trocar":
            self.legend.setText(swatch("cement"))
        elif kind == "ethanol_needle":
            self.legend.setText(swatch("ethanol"))
        elif kind:
            self.legend.setText(swatch("ablation"))
        else:
            self.legend.setText("")

    def _show_probes(self, needles: list[tuple[str, str]], own_id: str, extra: list[str]):
        self._own_probe = own_id
        self.probes.blockSignals(True)
        self.probes.clear()
        for tid, name in needles:
            item = QListWidgetItem(name + (" (zone's needle)" if tid == own_id else ""))
            item.setData(Qt.ItemDataRole.UserRole, tid)
            flags = Qt.ItemFlag.ItemIsEnabled
            if tid != own_id:
                flags |= Qt.ItemFlag.ItemIsUserCheckable
            item.setFlags(flags)
            checked = tid == own_id or tid in extra
            item.setCheckState(Qt.CheckState.Checked if checked else Qt.CheckState.Unchecked)
            self.probes.addItem(item)
        self.probes.blockSignals(False)

    # -- evaluation --------------------------------------------------------------------
    def show_cement(self, result) -> None:
        """Injected volume and leak-risk sites of the selected needle's cement or ethanol
        fill (a CementResult, or None)."""
        if result is None:
            self.cement_info.setText("")
            return
        lines = [
            f"Injected <b>{result.requested_ml:.1f} mL</b>, placed in bone "
            f"{result.placed_ml:.1f} mL (filled region {result.region_ml:.1f} mL)"
        ]
        if result.body_fill_pct is not None:
            lines.append(
                f"Fills {result.body_fill_pct:.0f} % of the vertebral body "
                f"(strength target {result.strength_target_pct:g} %)"
            )
        if result.leaks:
            colour = SEVERITY_COLOURS.get("danger", "#ff6b6b")
            sites = ", ".join(
                f"{leak.label} (from {leak.reached_at_ml:.1f} mL)" for leak in result.leaks
            )
            lines.append(f"<span style='color:{colour}'>Leak risk: {escape(sites)}</span>")
        else:
            lines.append("No leak-risk site reached.")
        self.cement_info.setText("<br>".join(lines))

    def show_evaluation(self, plan, error: str | None = None) -> None:
        if error:
            self.summary.setText(f"<span style='color:#ff6b6b'>{escape(error)}</span>")
            return
        if plan is None or plan.evaluation is None:
            self.summary.setText("")
            return
        ev = plan.evaluation
        lines = []
        for outcome in plan.outcomes:
            zone = outcome.zone
            if zone is None or outcome.cement is not None:
                continue
            dims = zone.dimensions
            text = f"{escape(outcome.node.name)}: {zone.volume_ml:.1f} mL"
            if dims is not None and dims.isotherms:
                shells = ", ".join(
                    f"{float(n):g} °C {w:.0f} mm" for n, (_, w) in dims.isotherms.items()
                )
                probes = int(zone.parameters.get("probes", 1))
                lethal = zone.parameters.get("lethal_isotherm_c")
                if lethal is not None:
                    text = (
                        f"{escape(outcome.node.name)}: lethal zone (≤ {float(lethal):g} °C) "
                        f"{zone.volume_ml:.1f} mL"
                    )
                each = "each probe's widths" if probes > 1 else "widths"
                text += f" ({probes} probe{'s' if probes > 1 else ''}; {each} {shells})"
            elif dims is not None:
                text += f" ({dims.length_mm:.0f} × {dims.width_mm:.0f} mm)"
            lines.append(text)
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
        if ev.lesion is None:
            lines.append("<i>No lesion segmented: coverage and margins are not computed.</i>")
        lines.extend(fracture_lines(ev.fracture))
        if ev.ablation is not None:
            near = sorted(ev.ablation.distances, key=lambda d: d.distance_mm)[:6]
            if near:
                lines.append(
                    "Zone edge to: "
                    + ", ".join(
                        f"{escape(d.structure)} {_distance_text(d)} (safety {d.threshold_mm:g} mm)"
                        for d in near
                    )
                )
            if all("skin" in d.structure.lower() for d in ev.ablation.distances):
                lines.append(
                    f"<span style='color:{SEVERITY_COLOURS['warning']}'>No structure to "
                    "spare is segmented besides the skin: the zone's distances to the spinal "
                    "canal, nerves and organs are NOT checked (Segment tab: Auto "
                    "anatomy).</span>"
                )
        for w in ev.warnings:
            colour = SEVERITY_COLOURS.get(w.severity, "#ddd")
            lines.append(
                f"<span style='color:{colour}'>⚠ {escape(w.code)}: {escape(w.message)}</span>"
            )
        lines.append(
            "<small>Predicted zones are estimates from approximate device charts "
            "and simplified models; check the device's instructions for use.</small>"
        )
        self.summary.setText("<br>".join(lines))


def fracture_lines(fracture: dict | None) -> list[str]:
    """The fracture score (SINS / Mirels) with each component and where it came from
    (image, level, bone, user; unknown components make it a range), and the cement's
    fill against its target."""
    score = (fracture or {}).get("score")
    if not score:
        return []
    total = score["total"] if score["complete"] else f"{score['min']}–{score['max']}"
    parts = []
    for c in score["components"]:
        points = "?" if c["points"] is None else c["points"]
        parts.append(
            f"{escape(c['name'])} {points} ({escape(str(c['value'] or 'not known'))}, "
            f"{escape(c['origin'])})"
        )
    lines = [
        f"<b>{escape(score['system'])} {total}</b>: {escape(score['category'])}",
        "<small>" + "; ".join(parts) + "</small>",
    ]
    cons = fracture.get("consolidation")
    if cons and cons.get("fill_pct") is not None:
        lines.append(
            f"Cement fills {cons['fill_pct']:.1f} % of the {escape(cons['measure'])} "
            f"(target {cons['target_pct']:g} %)"
        )
    return lines


def _distance_text(d) -> str:
    """A zone edge's distance to a structure; inside when the zone reaches into it."""
    if d.distance_mm <= 0:
        return f"<b>reached, {-d.distance_mm:.1f} mm inside</b>"
    return f"{'≥ ' if d.lower_bound else ''}{d.distance_mm:.1f} mm"
