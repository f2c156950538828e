"""Import and export of the plan's segmentation (File menu): DICOM SEG both ways,
RTSTRUCT import, .nrrd / .nii.gz both ways.

A mixin of MainWindow (through SegmentationActions). Reading and writing run off the
GUI thread; an import is one undoable step (the voxels it labels, plus the names of
labels the table does not know). A file made on another scan is refused with a message
saying so (frame of reference, or geometry for label images).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtWidgets import QFileDialog

from guideplan.core.labelmap import LabelDef, LabelDiff
from guideplan.io.seg_io import SegmentationFileError
from guideplan.model.commands import Group, SetFields
from guideplan.model.label_commands import LabelEdit
from guideplan.model.nodes import LabelInfo
from guideplan.ui.workers import run_task

IMPORT_FILTERS = (
    "Segmentations (*.dcm *.nrrd *.nii *.nii.gz);;"
    "DICOM SEG or RTSTRUCT (*.dcm *);;"
    "Label maps (*.nrrd *.nii *.nii.gz);;"
    "All files (*)"
)
EXPORT_FILTERS = {
    "DICOM SEG (*.dcm)": ".dcm",
    "NRRD label map (*.nrrd)": ".nrrd",
    "NIfTI label map (*.nii.gz)": ".nii.gz",
}


class SegmentIOActions:
    """File > Import / Export segmentation (part of MainWindow)."""

    # -- import ---------------------------------------------------------------------------
    def import_segmentation_dialog(self) -> None:
        if self.planning is None:
            return
        path, _ = QFileDialog.getOpenFileName(
            self, "Import segmentation", self._segmentation_folder(), IMPORT_FILTERS
        )
        if path:
            self.import_segmentation(path)

    def import_segmentation(self, path: str | Path) -> None:
        """Read ``path`` (SEG, RTSTRUCT, .nrrd, .nii.gz) onto the planning CT, then add its
        labels to the plan's label map as one undoable step."""
        from guideplan.io.seg_import import read_segmentation

        if self.planning is None or self.planning.volume is None:
            return
        reference, table = self.planning.volume, self.label_table
        path = Path(path)
        existing = self._labelmap(create=False)
        run_task(
            self,
            lambda progress, cancel: read_segmentation(path, reference, table),
            lambda imported: self._apply_imported(imported, path),
            "Importing the segmentation",
            guard=self.unchanged(existing.id if existing is not None else None),
            on_stale=lambda: self.stale_notice("Importing the segmentation"),
        )

    def _apply_imported(self, imported, path: Path) -> None:
        node = self._labelmap()
        if node is None or node.array.shape != imported.labels.shape:
            raise SegmentationFileError("The planning CT changed while the file was read.")
        flat = np.flatnonzero(imported.labels)
        diff = LabelDiff.from_values(node.array, flat, imported.labels.ravel()[flat])
        commands: list = []
        known = {int(v) for v in node.labels}
        new_labels = {
            v: LabelInfo(imported.names[v], tuple(imported.colors[v]))
            for v in imported.names
            if v not in known
        }
        if new_labels:
            commands.append(SetFields(node.id, {"labels": {**node.labels, **new_labels}}))
        commands.append(LabelEdit(node.id, diff))
        names = ", ".join(imported.names[v] for v in sorted(imported.names))
        self.scene.execute(Group(commands, text=f"Import segmentation {path.name}"))
        self._refresh_labels(changed=True)
        notes = "; ".join(imported.notes)
        self.statusBar().showMessage(
            f"Imported {names} from {path.name}" + (f" ({notes})" if notes else ""), 10000
        )

    # -- export ---------------------------------------------------------------------------
    def export_segmentation_dialog(self) -> None:
        if self.planning is None:
            return
        path, chosen = QFileDialog.getSaveFileName(
            self,
            "Export segmentation",
            str(Path(self._segmentation_folder()) / "segmentation.dcm"),
            ";;".join(EXPORT_FILTERS),
        )
        if not path:
            return
        name = path.lower()
        if not name.endswith((".dcm", ".nrrd", ".nii", ".nii.gz")):
            path += EXPORT_FILTERS.get(chosen, ".dcm")
        self.export_segmentation(path)

    def export_segmentation(self, path: str | Path) -> None:
        """Write the label map: a DICOM SEG referencing the planning CT (``.dcm`` or no
        known suffix), or a label image (``.nrrd``, ``.nii``, ``.nii.gz``)."""
        from guideplan.io.seg_import import is_label_image
        from guideplan.io.seg_io import write_labelmap, write_seg

        node = self._labelmap(create=False)
        if node is None or node.array is None or not node.array.any():
            self._warn(
                SegmentationFileError(
                    "The plan has no segmentation to export.",
                    hint="Segment the lesion (or import a segmentation) first.",
                )
            )
            return
        labels, reference = node.array.copy(), self.planning.volume
        table = self.label_table.updated(
            LabelDef(int(v), info.name, tuple(info.color))
            for v, info in node.labels.items()
            if int(v) not in self.label_table
        )
        path = Path(path)

        def task(progress, cancel):
            if is_label_image(path):
                return write_labelmap(path, labels, reference)
            return write_seg(path, labels, reference, table=table)

        def done(written: Path) -> None:
            count = len([v for v in np.unique(labels) if v])
            self.statusBar().showMessage(f"Exported {count} label(s) to {written}", 10000)

        run_task(self, task, done, "Exporting the segmentation")

    def _segmentation_folder(self) -> str:
        if self.case_path is not None:
            return str(Path(self.case_path).parent)
        source = self.planning.volume.meta.get("source_path") if self.planning else None
        return str(Path(source).parent) if source else str(Path.home())
