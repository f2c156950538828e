"""Dialogs: the series picker, recovery offer, and error helpers."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QIcon, QImage, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QDialogButtonBox,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from guideplan.io import ScanReport, SeriesInfo

THUMB = 72


def series_thumbnail(info: SeriesInfo) -> QPixmap | None:
    """The middle image of a series, windowed for a quick look (one frame is read)."""
    from guideplan.io.dicom_pixels import read_frames, stored_dtype

    if not info.frames:
        return None
    frames = info.frames if info.plan is None else [info.frames[int(i)] for i in info.plan.order]
    frame = frames[len(frames) // 2]
    try:
        out = np.empty((1, frame.rows, frame.columns), dtype=stored_dtype(frame).newbyteorder("="))
        read_frames([frame], out, workers=1)
    except Exception:
        return None
    image = out[0].astype(np.float32) * frame.rescale_slope + frame.rescale_intercept
    lo, hi = np.percentile(image, [1, 99])
    grey = np.clip((image - lo) * 255.0 / max(hi - lo, 1.0), 0, 255).astype(np.uint8)
    grey = np.ascontiguousarray(grey)
    qimage = QImage(
        grey.data, grey.shape[1], grey.shape[0], grey.shape[1], QImage.Format.Format_Grayscale8
    ).copy()
    return QPixmap.fromImage(qimage).scaled(
        THUMB, THUMB, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation
    )


class SeriesPicker(QDialog):
    """Choose one series of a folder: thumbnail, modality, description, slices, warnings."""

    COLUMNS = ("", "Modality", "Description", "Images", "Size (voxels)", "Spacing (mm)", "Notes")

    def __init__(self, report: ScanReport, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Choose a series")
        self.resize(980, 480)
        self.series = list(report.series)
        layout = QVBoxLayout(self)
        layout.addWidget(
            QLabel(
                f"<b>{report.root}</b> holds {len(report.volumes)} image series. "
                "Choose the one to open."
            )
        )
        self.table = QTableWidget(len(self.series), len(self.COLUMNS))
        self.table.setHorizontalHeaderLabels(self.COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setIconSize(QSize(THUMB, THUMB))
        self.table.verticalHeader().setDefaultSectionSize(THUMB + 6)
        self.table.horizontalHeader().setSectionResizeMode(6, QHeaderView.ResizeMode.Stretch)
        first_ok = None
        for row, info in enumerate(self.series):
            thumb = series_thumbnail(info) if info.can_load else None
            icon_item = QTableWidgetItem()
            if thumb is not None:
                icon_item.setIcon(QIcon(thumb))
            notes = info.error or "; ".join(info.warnings)
            if info.is_localizer:
                notes = "localizer (not a volume)"
            cells = [
                icon_item,
                QTableWidgetItem(info.modality),
                QTableWidgetItem(info.description or "(no description)"),
                QTableWidgetItem(str(info.n_slices)),
                QTableWidgetItem("×".join(map(str, info.size)) if info.size else "–"),
                QTableWidgetItem(
                    " × ".join(f"{s:.2f}" for s in info.spacing) if info.spacing else "–"
                ),
                QTableWidgetItem(notes),
            ]
            for col, item in enumerate(cells):
                if not info.can_load:
                    item.setFlags(
                        item.flags() & ~Qt.ItemFlag.ItemIsSelectable & ~Qt.ItemFlag.ItemIsEnabled
                    )
                item.setToolTip(notes)
                self.table.setItem(row, col, item)
            if info.can_load and (
                first_ok is None
                or (info.modality == "CT" and self.series[first_ok].modality != "CT")
            ):
                first_ok = row
        self.table.resizeColumnsToContents()
        if first_ok is not None:
            self.table.selectRow(first_ok)
        self.table.doubleClicked.connect(self.accept)
        layout.addWidget(self.table)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Open | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)

    def selected(self) -> SeriesInfo:
        rows = self.table.selectionModel().selectedRows()
        return self.series[rows[0].row()] if rows else self.series[0]
