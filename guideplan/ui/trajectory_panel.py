"""The trajectory panel: list, device, live readouts, warnings and the HU profile.

Shows a :class:`~guideplan.planning.path_analysis.PathReport`; computes nothing itself.
"""

from __future__ import annotations

from html import escape

import numpy as np
from PySide6.QtCore import QPointF, Qt, Signal
from PySide6.QtGui import QColor, QIcon, QPainter, QPainterPath, QPen, QPixmap
from PySide6.QtWidgets import (
    QCheckBox,
    QColorDialog,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from guideplan.planning.devices import Catalog
from guideplan.planning.path_analysis import PathReport

SEVERITY_COLOURS = {"danger": "#ff6b6b", "warning": "#f0c040", "info": "#9ec5ff"}
TISSUE_COLOURS = {
    "skin": "#e8b4a0",
    "fat": "#d8c060",
    "soft tissue": "#c05050",
    "trabecular bone": "#e0d8c0",
    "cortical bone": "#ffffff",
    "lesion": "#40c0ff",
}


class HuProfile(QWidget):
    """HU along the path (entry at the left, target at the right), tissues as a band."""

    def __init__(self) -> None:
        super().__init__()
        self.setMinimumHeight(124)
        self.setToolTip(
            "CT numbers along the needle, from the skin entry (left) to the target "
            "(right); the band below shows the tissues crossed"
        )
        self.report: PathReport | None = None

    def set_report(self, report: PathReport | None) -> None:
        self.report = report
        self.update()

    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        painter.fillRect(self.rect(), QColor("#15171a"))
        r = self.report
        if r is None or len(r.profile_mm) < 2:
            painter.end()
            return
        w, h = self.width(), self.height()
        band = 10
        foot = 14  # the entry / target captions under the tissue band
        lo, hi = -1000.0, 2000.0
        length = float(r.profile_mm[-1]) or 1.0

        def x_of(s: float) -> float:
            return 4 + (w - 8) * s / length

        def y_of(v: float) -> float:
            return 4 + (h - band - foot - 10) * (1 - (np.clip(v, lo, hi) - lo) / (hi - lo))

        painter.setPen(QPen(QColor("#3a3f47"), 1))
        for level in (0, 1000):
            painter.drawLine(QPointF(4, y_of(level)), QPointF(w - 4, y_of(level)))
        painter.setPen(QColor("#6a6f78"))
        for level in (0, 1000):
            text = f"{level} HU"
            x = w - 6 - painter.fontMetrics().horizontalAdvance(text)
            painter.drawText(QPointF(x, y_of(level) - 2), text)
        path = QPainterPath(QPointF(x_of(r.profile_mm[0]), y_of(r.profile_hu[0])))
        for s, v in zip(r.profile_mm[1:], r.profile_hu[1:], strict=True):
            path.lineTo(QPointF(x_of(s), y_of(v)))
        painter.setPen(QPen(QColor("#9ec5ff"), 1.5))
        painter.drawPath(path)
        for seg in r.tissues:
            colour = QColor(TISSUE_COLOURS.get(seg.tissue, "#ff8040"))
            painter.fillRect(
                int(x_of(seg.start_mm)),
                h - band - foot - 2,
                max(1, int(x_of(seg.end_mm) - x_of(seg.start_mm))),
                band,
                colour,
            )
        painter.setPen(QColor("#8a8f98"))
        painter.drawText(6, 14, "HU along the path")
        painter.drawText(4, h - 3, "entry (skin)")
        caption = f"target, {length:.0f} mm"
        painter.drawText(w - 4 - painter.fontMetrics().horizontalAdvance(caption), h - 3, caption)
        painter.end()


class TrajectoryPanel(QWidget):
    selected = Signal(str)  # node id
    device_chosen = Signal(str)  # device id
    delete_requested = Signal()
    lock_toggled = Signal(bool)
    suggest_requested = Signal()
    new_requested = Signal()
    suggestion_chosen = Signal(object)  # entry point (LPS)
    renamed = Signal(str, str)  # node id, new name
    colour_chosen = Signal(str, object)  # node id, (r, g, b) in 0..1

    def __init__(self, catalog: Catalog) -> None:
        super().__init__()
        box = QVBoxLayout(self)
        box.setContentsMargins(0, 0, 0, 0)
        box.addWidget(QLabel("<b>Trajectories</b>"))
        self.list = QListWidget()
        self._list_key: object = None
        self.list.setMaximumHeight(90)
        self.list.currentItemChanged.connect(self._on_current)
        self.list.itemChanged.connect(self._on_renamed)
        self.list.setToolTip("Double-click a needle to rename it")
        box.addWidget(self.list)
        row = QHBoxLayout()
        for label, signal, tip in (
            ("New", self.new_requested, "Place a needle: click the target, then the entry (T)"),
            ("Delete", self.delete_requested, "Delete the selected needle (and its zone)"),
            (
                "Suggest entries",
                self.suggest_requested,
                "Search the skin for safe straight paths to the selected needle's target, "
                "for the patient position below",
            ),
        ):
            button = QPushButton(label)
            button.setToolTip(tip)
            button.clicked.connect(signal.emit)
            row.addWidget(button)
        box.addLayout(row)
        self.device = QComboBox()
        self.device.setToolTip("The selected needle's device (length, gauge)")
        for device in catalog:
            self.device.addItem(device.name, device.id)
        self.device.activated.connect(
            lambda index: self.device_chosen.emit(self.device.itemData(index))
        )
        box.addWidget(self.device)
        self.lock = QCheckBox("Locked")
        self.lock.setToolTip("A locked needle cannot be dragged or changed by a suggestion")
        self.lock.toggled.connect(self.lock_toggled.emit)
        self.colour = QPushButton("Colour…")
        self.colour.setToolTip("The selected needle's colour in every view")
        self.colour.clicked.connect(self._choose_colour)
        lock_row = QHBoxLayout()
        lock_row.addWidget(self.lock)
        lock_row.addStretch(1)
        lock_row.addWidget(self.colour)
        box.addLayout(lock_row)
        self.readouts = QLabel("Place a target, then an entry (tool T).")
        self.readouts.setWordWrap(True)
        self.readouts.setTextFormat(Qt.TextFormat.RichText)
        self.readouts.setToolTip(
            "Craniocaudal: angle to the axial plane, + toward the head. Axial from "
            "vertical: angle to the anterior-posterior line in the axial plane. Gantry "
            "tilt: the tilt that holds the whole path in one axial slice. Tissue lengths "
            "in mm, from the entry."
        )
        box.addWidget(self.readouts)
        self.profile = HuProfile()
        box.addWidget(self.profile)
        row = QHBoxLayout()
        row.addWidget(QLabel("Patient position"))
        self.position = QComboBox()
        for label, value in (
            ("from the images", ""),
            ("prone", "prone"),
            ("supine", "supine"),
            ("left side up", "left-up"),
            ("right side up", "right-up"),
            ("any", "any"),
        ):
            self.position.addItem(label, value)
        self.position.setToolTip(
            "Entries the suggestions may use: the skin facing up in this position. "
            "'from the images' reads the DICOM patient position (HFS, FFS: supine, so "
            "no entry from the back); choose prone or any for a posterior approach."
        )
        row.addWidget(self.position, 1)
        box.addLayout(row)
        self.suggestions = QListWidget()
        self.suggestions.setMaximumHeight(100)
        self.suggestions.setToolTip("Suggested entries: click one to use it")
        self.suggestions.itemClicked.connect(
            lambda item: self.suggestion_chosen.emit(item.data(Qt.ItemDataRole.UserRole))
        )
        self.suggestions.hide()
        box.addWidget(self.suggestions)

    def set_trajectories(
        self, items: list[tuple[str, str]], current: str | None, colours: dict | None = None
    ) -> None:
        """The needles (id, name), the selected one, and each one's colour swatch."""
        key = (tuple(items), current, tuple(sorted((colours or {}).items())))
        if key == self._list_key:
            return  # unchanged (a needle being dragged): keep the list as it is
        self._list_key = key
        self.list.blockSignals(True)
        self.list.clear()
        for node_id, name in items:
            item = QListWidgetItem(name)
            item.setData(Qt.ItemDataRole.UserRole, node_id)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsEditable)
            rgb = (colours or {}).get(node_id)
            if rgb is not None:
                item.setIcon(_swatch(rgb))
            self.list.addItem(item)
            if node_id == current:
                self.list.setCurrentItem(item)
        self.list.blockSignals(False)

    def _on_renamed(self, item: QListWidgetItem) -> None:
        name = item.text().strip()
        if name:
            self.renamed.emit(item.data(Qt.ItemDataRole.UserRole), name)

    def _choose_colour(self) -> None:
        item = self.list.currentItem()
        if item is None:
            return
        start = item.icon().pixmap(12, 12).toImage().pixelColor(6, 6)
        colour = QColorDialog.getColor(start, self, "Needle colour")
        if colour.isValid():
            rgb = (colour.redF(), colour.greenF(), colour.blueF())
            self.colour_chosen.emit(item.data(Qt.ItemDataRole.UserRole), rgb)

    def _on_current(self, item, _previous) -> None:
        if item is not None:
            self.selected.emit(item.data(Qt.ItemDataRole.UserRole))

    def show_report(self, report: PathReport | None, device_id: str = "", locked: bool = False):
        self.profile.set_report(report)
        index = self.device.findData(device_id)
        if index >= 0:
            self.device.setCurrentIndex(index)
        self.lock.blockSignals(True)
        self.lock.setChecked(locked)
        self.lock.blockSignals(False)
        if report is None:
            self.readouts.setText("Place a target, then an entry (tool T).")
            return
        a = report.angles
        toward = "" if a.toward == "none" else f" toward patient's {a.toward}"
        tissues = " → ".join(f"{escape(t.tissue)} {_mm(t.length_mm)}" for t in report.tissues)
        distances = "".join(
            f"<br>{escape(d.name)}: {d.distance_mm:.1f} mm (safety ≥ {d.threshold_mm:g} mm)"
            for d in report.distances
        )
        warnings = "".join(
            f"<br><span style='color:{SEVERITY_COLOURS.get(w.severity, '#ddd')}'>"
            f"⚠ {escape(w.code)}: {escape(w.message)}</span>"
            for w in report.warnings
        )
        self.readouts.setText(
            f"Length <b>{report.length_mm:.1f} mm</b>, skin→target "
            f"{report.skin_to_target_mm:.1f} mm, in bone {report.bone_depth_mm:.1f} mm<br>"
            f"Craniocaudal <b>{a.craniocaudal_deg:+.1f}°</b>, axial from vertical "
            f"<b>{a.axial_from_vertical_deg:.1f}°</b>{toward}<br>"
            f"Gantry tilt for one slice: {a.gantry_tilt_deg:+.1f}°<br>"
            f"Direction (LPS): {a.direction[0]:+.3f}, {a.direction[1]:+.3f}, "
            f"{a.direction[2]:+.3f}<br><small>Tissues (mm): {tissues}</small>"
            f"{distances}{warnings}"
        )

    def show_suggestions(self, candidates) -> None:
        """Top suggested entries (route, length, clearance, angle, score)."""
        self.suggestions.clear()
        for cand in candidates:
            clear = f"{cand.clearance_mm:.1f} mm" if np.isfinite(cand.clearance_mm) else "–"
            item = QListWidgetItem(
                f"{cand.route}: {cand.length_mm:.0f} mm, clearance {clear}, "
                f"craniocaudal {cand.craniocaudal_deg:+.0f}°, score {cand.score:.2f}"
            )
            item.setData(Qt.ItemDataRole.UserRole, tuple(float(v) for v in cand.entry))
            self.suggestions.addItem(item)
        self.suggestions.setVisible(bool(candidates))


def _mm(value: float) -> str:
    """A tissue length: whole millimetres, one decimal below 1 mm (a thin crossing of
    air or bone must not read as 0)."""
    return f"{value:.0f}" if value >= 1.0 else f"{value:.1f}"


def _swatch(rgb) -> QIcon:
    """A small square of the needle's colour for its list entry."""
    pixmap = QPixmap(12, 12)
    pixmap.fill(QColor.fromRgbF(*(float(c) for c in rgb[:3])))
    return QIcon(pixmap)
