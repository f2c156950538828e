"""The device catalog dialog: every device's data and zone chart; add, edit, duplicate
and delete the user's own devices.

Built-in devices (``resources/devices/catalog.json``) are shown with their source and
whether their chart is approximate. Saving writes the device into the user's catalog
(:func:`guideplan.planning.devices.save_user_device`: validated, atomic); an entry with a
built-in id overrides the built-in one. The window then reloads its catalog.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from guideplan.planning.devices import (
    DEVICE_KINDS,
    Catalog,
    CatalogError,
    delete_user_device,
    device_to_dict,
    load_catalog,
    save_user_device,
    user_catalog_entries,
    user_catalog_path,
)

KIND_NAMES = {
    "needle": "Needle",
    "cement_trocar": "Cement trocar",
    "rf_probe": "Radiofrequency probe",
    "rf_bipolar": "Bipolar bone RF probe (zone ends at the tip)",
    "mw_antenna": "Microwave antenna",
    "cryoprobe": "Cryoprobe",
    "ethanol_needle": "Ethanol needle",
}
CRYO_SHELLS = ("0", "-20", "-40")  # the isotherms the planner shows (issue 7)
COLUMN_TITLES = {
    "power_w": "Power (W)",
    "time_s": "Time (s)",
    "length_mm": "Length (mm)",
    "width_mm": "Width (mm)",
    "center_offset_mm": "Centre offset (mm)",
    "far_edge_beyond_tip_mm": "0 °C edge past the tip (mm)",
}
EDGE = "far_edge_beyond_tip_mm"


def sources_text(raw: dict[str, Any]) -> str:
    """The entry's references as a reader looks them up: citation, PMID/DOI/URL, where
    in the paper, what they support and their limits (tissue, in/ex vivo, device)."""
    lines = []
    for ref in raw.get("sources") or []:
        if not isinstance(ref, dict):
            continue
        ids = ", ".join(
            f"{k.upper()} {ref[k]}" if k != "url" else str(ref[k])
            for k in ("pmid", "doi", "url")
            if ref.get(k)
        )
        lines.append(f"• {ref.get('ref', '')} [{ids}]")
        for key, label in (("locator", "where"), ("supports", "gives"), ("limits", "limits")):
            if ref.get(key):
                lines.append(f"   {label}: {ref[key]}")
    return "\n".join(lines) if lines else "No reference given: enter where the figures come from."


def chart_columns(kind: str, chart: dict[str, Any]) -> list[str]:
    """The table's columns for a kind: the chart's parameters, then the zone's size;
    cryo: one length and width per isotherm ('isotherms/-20/width_mm')."""
    if kind not in ("rf_probe", "rf_bipolar", "mw_antenna", "cryoprobe"):
        return []
    params = list(chart.get("parameters") or ["time_s"])
    if kind == "mw_antenna" and "power_w" not in params:
        params = ["power_w", *params]
    params = [p for p in ("power_w", "time_s") if p in params]
    if kind == "cryoprobe":
        names = CRYO_SHELLS
        rows = chart.get("rows") or []
        if rows and isinstance(rows[0].get("isotherms"), dict):
            names = tuple(sorted(rows[0]["isotherms"], key=lambda n: -float(n)))
        shells = [f"isotherms/{n}/{d}" for n in names for d in ("length_mm", "width_mm")]
        # the 0 °C far edge beyond the tip (what iceball charts give), unless an older
        # entry places the iceball by its centre
        place = "center_offset_mm" if rows and "center_offset_mm" in rows[0] else EDGE
        return [*params, place, *shells]  # shell sizes in mm
    if kind == "rf_bipolar":  # the zone ends at the tip: no offset to enter
        return [*params, "length_mm", "width_mm"]
    return [*params, "length_mm", "width_mm", "center_offset_mm"]


def column_title(column: str) -> str:
    if column.startswith("isotherms/"):
        _, name, dim = column.split("/")
        return f"{name} °C {'length' if dim.startswith('length') else 'width'}"
    return COLUMN_TITLES[column]


def _row_value(row: dict[str, Any], column: str):
    value: Any = row
    for part in column.split("/"):
        value = value.get(part) if isinstance(value, dict) else None
    return value


class CatalogDialog(QDialog):
    catalog_saved = Signal(str)  # the saved device's id ("" after a delete)

    def __init__(self, catalog: Catalog, parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Device catalog")
        self.resize(1100, 680)
        self.catalog = catalog
        self._loading = False
        self._original_id = ""  # the id of the entry being edited (to rename it)
        self._raw: dict[str, Any] = {}

        outer = QVBoxLayout(self)
        splitter = QSplitter()
        outer.addWidget(splitter, 1)

        left = QWidget()
        lbox = QVBoxLayout(left)
        lbox.setContentsMargins(0, 0, 0, 0)
        lbox.addWidget(QLabel("<b>Devices</b>"))
        self.devices = QListWidget()
        self.devices.currentItemChanged.connect(self._on_pick)
        lbox.addWidget(self.devices, 1)
        buttons = QHBoxLayout()
        self.new_button = QPushButton("New")
        self.new_button.clicked.connect(self.new_device)
        self.duplicate_button = QPushButton("Duplicate")
        self.duplicate_button.clicked.connect(self.duplicate_device)
        self.delete_button = QPushButton("Delete mine")
        self.delete_button.setToolTip("Remove your entry (a built-in entry it replaced returns)")
        self.delete_button.clicked.connect(self.delete_device)
        for button in (self.new_button, self.duplicate_button, self.delete_button):
            buttons.addWidget(button)
        lbox.addLayout(buttons)
        splitter.addWidget(left)

        right = QWidget()
        rbox = QVBoxLayout(right)
        rbox.setContentsMargins(6, 0, 0, 0)
        self.origin = QLabel("")
        self.origin.setWordWrap(True)
        rbox.addWidget(self.origin)
        form = QFormLayout()
        self.id_edit = QLineEdit()
        self.name_edit = QLineEdit()
        self.kind = QComboBox()
        for kind in DEVICE_KINDS:
            self.kind.addItem(KIND_NAMES.get(kind, kind), kind)
        self.kind.currentIndexChanged.connect(self._on_kind)
        self.gauge = QSpinBox()
        self.gauge.setRange(0, 40)
        self.gauge.setSpecialValueText("none")
        self.gauge.setSuffix(" G")
        self.diameter = self._mm_spin()
        self.length = self._mm_spin(top=2000.0)
        self.approximate = QCheckBox("Approximate (not the manufacturer's chart)")
        self.source = QPlainTextEdit()
        self.source.setPlaceholderText("Where the figures come from (IFU, paper, table)")
        self.source.setFixedHeight(70)
        form.addRow("Id", self.id_edit)
        form.addRow("Name", self.name_edit)
        form.addRow("Kind", self.kind)
        form.addRow("Gauge", self.gauge)
        form.addRow("Outer diameter", self.diameter)
        form.addRow("Length", self.length)
        form.addRow("", self.approximate)
        form.addRow("Source", self.source)
        self.references = QLabel()
        self.references.setWordWrap(True)
        self.references.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        form.addRow("References", self.references)
        rbox.addLayout(form)

        self.chart_box = QWidget()
        cbox = QVBoxLayout(self.chart_box)
        cbox.setContentsMargins(0, 0, 0, 0)
        self.chart_title = QLabel("<b>Zone chart</b>")
        cbox.addWidget(self.chart_title)
        chart_form = QFormLayout()
        self.interpolation = QComboBox()
        self.interpolation.addItem("linear in time", "linear")
        self.interpolation.addItem("in √time (heat conduction)", "sqrt")
        chart_form.addRow("Between rows", self.interpolation)
        self.default_power = self._plain_spin(" W", 1000.0, "chart's last row")
        self.default_time = self._plain_spin(" s", 36000.0, "chart's last row")
        self.max_spacing = self._plain_spin(" mm", 200.0, "no rule")
        self.default_volume = self._plain_spin(" mL", 100.0, "")
        self.max_volume = self._plain_spin(" mL", 100.0, "")
        for label, spin in (
            ("Default power", self.default_power),
            ("Default time", self.default_time),
            ("Max probe spacing", self.max_spacing),
            ("Default volume", self.default_volume),
            ("Max volume", self.max_volume),
        ):
            chart_form.addRow(label, spin)
        self.chart_form = chart_form
        cbox.addLayout(chart_form)
        self.table = QTableWidget(0, 0)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.table.verticalHeader().setDefaultSectionSize(22)
        cbox.addWidget(self.table, 1)
        rows = QHBoxLayout()
        self.add_row_button = QPushButton("Add row")
        self.add_row_button.clicked.connect(self.add_row)
        self.remove_row_button = QPushButton("Remove row")
        self.remove_row_button.clicked.connect(self.remove_row)
        rows.addWidget(self.add_row_button)
        rows.addWidget(self.remove_row_button)
        rows.addStretch(1)
        cbox.addLayout(rows)
        rbox.addWidget(self.chart_box, 1)
        splitter.addWidget(right)
        splitter.setStretchFactor(1, 3)
        splitter.setSizes([450, 650])

        self.message = QLabel("")
        self.message.setWordWrap(True)
        self.message.setTextFormat(Qt.TextFormat.RichText)
        outer.addWidget(self.message)
        bottom = QHBoxLayout()
        path = QLabel(f"<small>Your catalog: {user_catalog_path()}</small>")
        path.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        bottom.addWidget(path, 1)
        self.save_button = QPushButton("Save to my catalog")
        self.save_button.setDefault(True)
        self.save_button.clicked.connect(self.save)
        close = QPushButton("Close")
        close.clicked.connect(self.accept)
        bottom.addWidget(self.save_button)
        bottom.addWidget(close)
        outer.addLayout(bottom)
        self.refresh()

    # -- widgets -----------------------------------------------------------------------
    def _mm_spin(self, top: float = 50.0) -> QDoubleSpinBox:
        spin = QDoubleSpinBox()
        spin.setRange(0.0, top)
        spin.setDecimals(2)
        spin.setSuffix(" mm")
        return spin

    def _plain_spin(self, suffix: str, top: float, special: str) -> QDoubleSpinBox:
        spin = QDoubleSpinBox()
        spin.setRange(0.0, top)
        spin.setDecimals(1)
        spin.setSuffix(suffix)
        if special:
            spin.setSpecialValueText(special)
        return spin

    # -- the list ----------------------------------------------------------------------
    def refresh(self, select: str = "") -> None:
        """List the catalog (built-in + yours), selecting ``select`` (or the first)."""
        self.catalog = load_catalog()
        try:
            mine = {e.get("id") for e in user_catalog_entries()}
        except CatalogError as exc:
            mine = set()
            self._say(str(exc), error=True)
        self._mine = mine
        self.devices.blockSignals(True)
        self.devices.clear()
        order = {k: i for i, k in enumerate(DEVICE_KINDS)}
        picked = None
        for device in sorted(self.catalog, key=lambda d: (order.get(d.kind, 99), d.name)):
            tags = []
            if device.id in mine:
                tags.append("yours")
            if device.approximate:
                tags.append("approx.")
            text = f"{device.name}" + (f"  [{', '.join(tags)}]" if tags else "")
            item = QListWidgetItem(text)
            item.setData(Qt.ItemDataRole.UserRole, device.id)
            item.setToolTip(f"{text}\n{device.id} — {KIND_NAMES.get(device.kind, device.kind)}")
            self.devices.addItem(item)
            if device.id == select:
                picked = item
        self.devices.blockSignals(False)
        if picked is None and self.devices.count():
            picked = self.devices.item(0)
        if picked is not None:
            self.devices.setCurrentItem(picked)
            self._on_pick(picked)

    def select(self, device_id: str) -> None:
        for index in range(self.devices.count()):
            item = self.devices.item(index)
            if item.data(Qt.ItemDataRole.UserRole) == device_id:
                self.devices.setCurrentItem(item)
                return

    def _on_pick(self, item, _previous=None) -> None:
        if item is None:
            return
        device = self.catalog.get(item.data(Qt.ItemDataRole.UserRole))
        self.show_entry(device_to_dict(device), device.id in self._mine)

    # -- the form ----------------------------------------------------------------------
    def show_entry(self, raw: dict[str, Any], mine: bool) -> None:
        """Fill the form with a catalog entry."""
        self._loading = True
        self._raw = dict(raw)
        self._original_id = str(raw.get("id", "")) if mine else ""
        if mine:
            where = "Your device (saved in your catalog)."
        elif raw.get("id") in self.catalog:
            where = (
                "Built-in device. Saving stores your copy in your catalog, which replaces the "
                "built-in entry of the same id; 'Duplicate' to keep both."
            )
        else:
            where = "New device: enter the data and the zone chart from its instructions for use."
        approx = raw.get("approximate", True)
        flag = (
            "<span style='color:#f0c040'>approximate chart</span>"
            if approx
            else "manufacturer / measured chart"
        )
        self.origin.setText(f"{where} — {flag}")
        self.id_edit.setText(str(raw.get("id", "")))
        self.name_edit.setText(str(raw.get("name", "")))
        self.kind.setCurrentIndex(max(self.kind.findData(raw.get("kind")), 0))
        self.gauge.setValue(int(raw.get("gauge") or 0))
        self.diameter.setValue(float(raw.get("outer_diameter_mm") or 0.0))
        self.length.setValue(float(raw.get("length_mm") or 0.0))
        self.approximate.setChecked(bool(approx))
        self.source.setPlainText(str(raw.get("source", "")))
        self.references.setText(sources_text(raw))
        chart = raw.get("zone") if isinstance(raw.get("zone"), dict) else {}
        index = self.interpolation.findData(chart.get("time_interpolation", "linear"))
        self.interpolation.setCurrentIndex(max(index, 0))
        for key, spin in (
            ("default_power_w", self.default_power),
            ("default_time_s", self.default_time),
            ("max_probe_spacing_mm", self.max_spacing),
            ("default_volume_ml", self.default_volume),
            ("max_volume_ml", self.max_volume),
        ):
            spin.setValue(float(chart.get(key) or 0.0))
        self._fill_table(str(raw.get("kind", "")), chart)
        self.delete_button.setEnabled(mine)
        self._loading = False
        self._show_chart_fields(str(raw.get("kind", "")))

    def _fill_table(self, kind: str, chart: dict[str, Any]) -> None:
        columns = chart_columns(kind, chart)
        self.columns = columns
        rows = chart.get("rows") or []
        self.table.clear()
        self.table.setColumnCount(len(columns))
        self.table.setHorizontalHeaderLabels([column_title(c) for c in columns])
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(
            QHeaderView.ResizeMode.Stretch
            if len(columns) <= 5
            else QHeaderView.ResizeMode.ResizeToContents
        )
        self.table.setRowCount(len(rows) if columns else 0)
        for r, row in enumerate(rows if columns else []):
            for c, column in enumerate(columns):
                value = _row_value(row, column)
                text = "" if value is None else f"{float(value):g}"
                self.table.setItem(r, c, QTableWidgetItem(text))

    def _show_chart_fields(self, kind: str) -> None:
        chart = kind in ("rf_probe", "rf_bipolar", "mw_antenna", "cryoprobe", "ethanol_needle")
        self.chart_box.setVisible(chart)
        table = kind in ("rf_probe", "rf_bipolar", "mw_antenna", "cryoprobe")
        self.table.setVisible(table)
        self.add_row_button.setVisible(table)
        self.remove_row_button.setVisible(table)
        for spin, shown in (
            (self.default_power, "power_w" in getattr(self, "columns", [])),
            (self.default_time, table),
            (self.max_spacing, kind == "cryoprobe"),
            (self.default_volume, kind == "ethanol_needle"),
            (self.max_volume, kind == "ethanol_needle"),
        ):
            spin.setVisible(shown)
            self.chart_form.labelForField(spin).setVisible(shown)
        self.interpolation.setVisible(table)
        self.chart_form.labelForField(self.interpolation).setVisible(table)
        what = {
            "cryoprobe": "freeze time → isotherm sizes (0 / -20 / -40 °C)",
            "ethanol_needle": "injected volume",
        }.get(kind, "power / time → zone length, width, centre offset from the tip")
        self.chart_title.setText(f"<b>Zone chart</b> — {what}")

    def _on_kind(self, _index: int) -> None:
        if self._loading:
            return
        kind = self.kind.currentData()
        try:
            chart = self._chart_from_form(strict=False)
        except CatalogError:
            chart = {}
        self._fill_table(kind, chart)
        if not self.table.rowCount() and self.columns:
            self.add_row()
        self._show_chart_fields(kind)

    def add_row(self) -> None:
        row = self.table.rowCount()
        self.table.insertRow(row)
        for c in range(self.table.columnCount()):
            self.table.setItem(row, c, QTableWidgetItem(""))
        self.table.setCurrentCell(row, 0)

    def remove_row(self) -> None:
        row = self.table.currentRow()
        if row >= 0:
            self.table.removeRow(row)

    # -- form -> entry -------------------------------------------------------------------
    def _chart_from_form(self, strict: bool = True) -> dict[str, Any]:
        kind = self.kind.currentData()
        old = self._raw.get("zone") if isinstance(self._raw.get("zone"), dict) else {}
        chart: dict[str, Any] = {k: v for k, v in old.items() if k not in ("rows", "parameters")}
        if kind == "ethanol_needle":
            chart["model"] = "ethanol-fill"
            chart["default_volume_ml"] = self.default_volume.value()
            chart["max_volume_ml"] = self.max_volume.value()
            return chart
        chart["model"] = "cryo-isotherms" if kind == "cryoprobe" else "ellipsoid"
        chart["time_interpolation"] = self.interpolation.currentData()
        params = [c for c in self.columns if c in ("power_w", "time_s")]
        chart["parameters"] = params
        for key, spin, wanted in (
            ("default_power_w", self.default_power, "power_w" in params),
            ("default_time_s", self.default_time, True),
            ("max_probe_spacing_mm", self.max_spacing, kind == "cryoprobe"),
        ):
            if wanted and spin.value() > 0:
                chart[key] = spin.value()
            else:
                chart.pop(key, None)
        rows = []
        for r in range(self.table.rowCount()):
            row: dict[str, Any] = {}
            cells = [self.table.item(r, c) for c in range(self.table.columnCount())]
            texts = [(c.text().strip() if c is not None else "") for c in cells]
            if not any(texts):
                continue  # an empty row is ignored
            for column, text in zip(self.columns, texts, strict=True):
                try:
                    value = float(text.replace(",", "."))
                except ValueError:
                    if not strict:
                        continue
                    raise CatalogError(
                        f"Chart row {r + 1}, column '{column_title(column)}': "
                        f"{text or 'empty'!r} is not a number.",
                        hint="Enter a number in every cell of the row.",
                    ) from None
                target = row
                parts = column.split("/")
                for part in parts[:-1]:
                    target = target.setdefault(part, {})
                target[parts[-1]] = value
            rows.append(row)
        chart["rows"] = rows
        return chart

    def entry_from_form(self) -> dict[str, Any]:
        """The catalog entry the form describes (not yet validated)."""
        kind = self.kind.currentData()
        raw = {k: v for k, v in self._raw.items() if k != "zone"}
        raw.update(
            {
                "id": self.id_edit.text().strip(),
                "kind": kind,
                "name": self.name_edit.text().strip(),
                "outer_diameter_mm": self.diameter.value(),
                "length_mm": self.length.value(),
                "approximate": self.approximate.isChecked(),
                "source": self.source.toPlainText().strip(),
            }
        )
        if self.gauge.value():
            raw["gauge"] = self.gauge.value()
        else:
            raw.pop("gauge", None)
        if kind in ("rf_probe", "rf_bipolar", "mw_antenna", "cryoprobe", "ethanol_needle"):
            raw["zone"] = self._chart_from_form()
        return raw

    # -- actions -----------------------------------------------------------------------
    def _say(self, text: str, error: bool = False) -> None:
        colour = "#ff6b6b" if error else "#8fd18f"
        self.message.setText(f"<span style='color:{colour}'>{text}</span>")

    def save(self) -> bool:
        try:
            raw = self.entry_from_form()
            device = save_user_device(raw, replace_id=self._original_id or None)
        except CatalogError as exc:
            self._say(f"Not saved: {exc}", error=True)
            return False
        self._say(f"Saved {device.name} ({device.id}) to {user_catalog_path()}.")
        self.refresh(select=device.id)
        self.catalog_saved.emit(device.id)
        return True

    def new_device(self) -> None:
        self.devices.blockSignals(True)
        self.devices.clearSelection()
        self.devices.setCurrentItem(None)
        self.devices.blockSignals(False)
        self.show_entry(
            {"id": "", "kind": "rf_probe", "name": "", "approximate": False, "zone": {}}, False
        )
        self._on_kind(0)
        self.id_edit.setFocus()
        self._say("New device: fill in the data and the chart, then save.")

    def duplicate_device(self) -> None:
        try:
            raw = self.entry_from_form()
        except CatalogError as exc:
            self._say(str(exc), error=True)
            return
        raw["id"] = f"{raw['id']}-copy"
        raw["name"] = f"{raw['name']} (copy)"
        self.show_entry(raw, False)
        self._say("A copy: change its id, name and chart, then save.")

    def delete_device(self) -> None:
        device_id = self._original_id
        if not device_id:
            return
        try:
            delete_user_device(device_id)
        except CatalogError as exc:
            self._say(str(exc), error=True)
            return
        self._say(f"Deleted {device_id} from your catalog.")
        self.refresh(select=device_id)
        self.catalog_saved.emit("")
