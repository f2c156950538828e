"""A first viewer window: the planning CT in three orthogonal views.

This is the minimal shell the Foundation issue asks for (``make run`` shows the sample
CT); the full workstation (VTK views, plan model, tools) replaces its views. Loading runs
in a worker thread with progress and cancel; errors are shown in dialogs.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, Qt, QThread, Signal
from PySide6.QtGui import QColor, QFont, QImage, QPainter, QPixmap
from PySide6.QtWidgets import (
    QApplication,
    QComboBox,
    QFileDialog,
    QGridLayout,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressDialog,
    QSizePolicy,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from guideplan.core.errors import CancelledError, GuideplanError
from guideplan.core.volume import Volume
from guideplan.ui import slice_image

WL_PRESETS = {
    "Bone": (1800.0, 400.0),
    "Soft tissue": (400.0, 40.0),
    "Lung": (1500.0, -600.0),
    "Brain": (80.0, 40.0),
}
VIEW_COLOURS = {"axial": "#d05050", "coronal": "#50a050", "sagittal": "#d0b040"}
REPO_ROOT = Path(__file__).resolve().parents[2]


def default_sample_series() -> Path | None:
    """The planning CT of the first bundled sample case, if the samples exist."""
    root = REPO_ROOT / "sample_data"
    if not root.is_dir():
        return None
    for case in sorted(p for p in root.iterdir() if p.is_dir()):
        if (case / "ct").is_dir():
            return case / "ct"
    return None


class _Loader(QObject):
    progress = Signal(float, str)
    finished = Signal(object)
    failed = Signal(str, str)

    def __init__(self, path: str) -> None:
        super().__init__()
        self.path = path
        self.cancel_event = threading.Event()

    def run(self) -> None:
        from guideplan.io import load_series, scan

        try:
            report = scan(self.path, cancel=self.cancel_event.is_set)
            volumes = report.volumes
            # The planning CT first: prefer CT, then the largest series.
            volumes.sort(key=lambda s: (s.modality != "CT", -(s.n_slices or 0)))
            if not volumes:
                load_series(report)  # raises the explanatory error
            volume = load_series(
                volumes[0],
                progress=lambda f, m: self.progress.emit(f, m),
                cancel=self.cancel_event.is_set,
            )
            self.finished.emit(volume)
        except CancelledError:
            self.failed.emit("", "")
        except GuideplanError as exc:
            self.failed.emit(exc.title, str(exc))
        except Exception as exc:  # never a traceback in the GUI
            self.failed.emit("Unexpected error", f"{type(exc).__name__}: {exc}")


class SliceView(QLabel):
    """One 2D view: grey image, orientation letters on every edge, slice readout."""

    def __init__(self, view: str) -> None:
        super().__init__()
        self.view = view
        self.setMinimumSize(200, 200)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setStyleSheet(f"background:#000; border:1px solid {VIEW_COLOURS[view]};")
        self.image: np.ndarray | None = None
        self.aspect = 1.0
        self.caption = ""

    def set_image(self, image: np.ndarray, aspect: float, caption: str) -> None:
        self.image, self.aspect, self.caption = image, aspect, caption
        self._redraw()

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt naming
        super().resizeEvent(event)
        self._redraw()

    def _redraw(self) -> None:
        if self.image is None:
            return
        img = np.ascontiguousarray(self.image)
        h, w = img.shape
        qimg = QImage(img.data, w, h, w, QImage.Format.Format_Grayscale8).copy()
        box_w, box_h = max(self.width() - 4, 10), max(self.height() - 4, 10)
        phys_w, phys_h = w, h * self.aspect
        scale = min(box_w / phys_w, box_h / phys_h)
        pix = QPixmap.fromImage(qimg).scaled(
            int(phys_w * scale), int(phys_h * scale),
            Qt.AspectRatioMode.IgnoreAspectRatio, Qt.TransformationMode.SmoothTransformation,
        )
        canvas = QPixmap(box_w, box_h)
        canvas.fill(QColor("black"))
        painter = QPainter(canvas)
        painter.drawPixmap((box_w - pix.width()) // 2, (box_h - pix.height()) // 2, pix)
        painter.setPen(QColor("#f0e68c"))
        font = QFont()
        font.setPointSize(12)
        font.setBold(True)
        painter.setFont(font)
        left, right, top, bottom = slice_image.EDGE_LETTERS[self.view]
        painter.drawText(6, box_h // 2, left)
        painter.drawText(box_w - 16, box_h // 2, right)
        painter.drawText(box_w // 2, 18, top)
        painter.drawText(box_w // 2, box_h - 6, bottom)
        font.setBold(False)
        font.setPointSize(9)
        painter.setFont(font)
        painter.setPen(QColor("#c8c8c8"))
        painter.drawText(6, 14, f"{self.view.capitalize()}  {self.caption}")
        painter.end()
        self.setPixmap(canvas)


class ViewerWindow(QMainWindow):
    def __init__(self) -> None:
        super().__init__()
        self.setWindowTitle("guideplan")
        self.resize(1400, 900)
        self.volume: Volume | None = None
        self.aligned: slice_image.LpsAligned | None = None
        self.window_level = WL_PRESETS["Bone"]
        self.views = {name: SliceView(name) for name in slice_image.VIEWS}
        self.sliders = {name: QSlider(Qt.Orientation.Horizontal) for name in slice_image.VIEWS}
        self.info = QLabel("Open a DICOM folder (Ctrl+O).")
        self.info.setStyleSheet("color:#c8c8c8; padding:4px;")
        self.info.setWordWrap(True)
        self.preset = QComboBox()
        self.preset.addItems(list(WL_PRESETS))
        self.preset.currentTextChanged.connect(self._on_preset)

        grid = QGridLayout()
        for pos, name in zip([(0, 0), (0, 1), (1, 0)], slice_image.VIEWS, strict=True):
            box = QVBoxLayout()
            box.addWidget(self.views[name], 1)
            box.addWidget(self.sliders[name])
            self.sliders[name].valueChanged.connect(self._refresh)
            holder = QWidget()
            holder.setLayout(box)
            grid.addWidget(holder, *pos)
        side = QVBoxLayout()
        side.addWidget(QLabel("Window / level"))
        side.addWidget(self.preset)
        side.addWidget(self.info, 1)
        panel = QWidget()
        panel.setLayout(side)
        grid.addWidget(panel, 1, 1)
        central = QWidget()
        central.setLayout(grid)
        central.setStyleSheet("background:#1b1d21; color:#d0d0d0;")
        self.setCentralWidget(central)

        menu = self.menuBar().addMenu("&File")
        menu.addAction("&Open DICOM folder…", "Ctrl+O", self._open_dialog)
        menu.addAction("&Quit", "Ctrl+Q", self.close)
        self._thread: QThread | None = None

    # -- loading ----------------------------------------------------------------------
    def _open_dialog(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open DICOM folder")
        if path:
            self.load(path)

    def load(self, path: str) -> None:
        self._progress = QProgressDialog("Loading…", "Cancel", 0, 100, self)
        self._progress.setWindowModality(Qt.WindowModality.WindowModal)
        self._progress.setMinimumDuration(300)
        self._loader = _Loader(path)
        self._progress.canceled.connect(self._loader.cancel_event.set)
        self._thread = QThread(self)
        self._loader.moveToThread(self._thread)
        self._thread.started.connect(self._loader.run)
        # Bound methods of this (GUI-thread) object: Qt queues the calls to the GUI thread.
        self._loader.progress.connect(self._on_progress)
        self._loader.finished.connect(self._on_loaded)
        self._loader.failed.connect(self._on_failed)
        self._thread.start()

    def _on_progress(self, fraction: float, message: str) -> None:
        self._progress.setValue(int(fraction * 100))
        self._progress.setLabelText(message)

    def _finish_thread(self) -> None:
        self._progress.reset()
        if self._thread is not None:
            self._thread.quit()
            self._thread.wait()
            self._thread = None

    def _on_failed(self, title: str, message: str) -> None:
        self._finish_thread()
        if title:
            QMessageBox.warning(self, title, message)

    def _on_loaded(self, volume: Volume) -> None:
        self._finish_thread()
        self.set_volume(volume)

    def set_volume(self, volume: Volume) -> None:
        self.volume = volume
        self.aligned = slice_image.align_to_lps(volume)
        for name, slider in self.sliders.items():
            n = slice_image.slice_count(self.aligned, name)
            slider.blockSignals(True)
            slider.setRange(0, n - 1)
            slider.setValue(n // 2)
            slider.blockSignals(False)
        meta = volume.meta
        warnings = "".join(f"<br>⚠ {w}" for w in meta.get("warnings", []))
        self.info.setText(
            f"<b>{meta.get('description') or 'Series'}</b> ({meta.get('modality', '')})<br>"
            f"{'x'.join(map(str, volume.size))} voxels, "
            f"{' x '.join(f'{s:.2f}' for s in volume.spacing)} mm{warnings}"
        )
        self._refresh()

    # -- display ----------------------------------------------------------------------
    def _on_preset(self, name: str) -> None:
        self.window_level = WL_PRESETS[name]
        self._refresh()

    def _refresh(self) -> None:
        if self.aligned is None:
            return
        window, level = self.window_level
        for name, view in self.views.items():
            index = self.sliders[name].value()
            image, aspect = slice_image.slice_rgb(self.aligned, name, index, window, level)
            n = slice_image.slice_count(self.aligned, name)
            view.set_image(image, aspect, f"{index + 1}/{n}   W {window:.0f} L {level:.0f}")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv if argv is None else argv)
    app = QApplication.instance() or QApplication(argv)
    window = ViewerWindow()
    window.show()
    target = argv[1] if len(argv) > 1 else default_sample_series()
    if target is None:
        window.info.setText("No sample case found: run `make run` (it generates them) or Ctrl+O.")
    else:
        window.load(str(target))
    return app.exec()
