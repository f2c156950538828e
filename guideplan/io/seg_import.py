"""Read any supported segmentation file onto the planning CT's grid, with clear messages
when it does not belong there.

DICOM SEG and RTSTRUCT carry a frame of reference (checked by :mod:`seg_io`); .nrrd /
.nii.gz label images carry only geometry, so here it is checked: the same grid is taken
as is, an overlapping other grid is resampled (nearest neighbour, noted), and a label
image lying outside the CT is refused.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pydicom

from guideplan.core.labelmap import LabelTable, load_label_table
from guideplan.core.volume import Volume
from guideplan.io.seg_io import (
    ImportedLabels,
    SegmentationFileError,
    labels_from_masks,
    read_labelmap,
    read_rtstruct,
    read_seg,
)

LABEL_IMAGE_SUFFIXES = (".nrrd", ".nii", ".nii.gz", ".nhdr", ".mha", ".mhd")
#: Label values a plan's label map (uint8) can hold.
MAX_LABEL = 255
#: Colours for labels the table does not know (distinct, readable on a dark image).
PALETTE = (
    (0.35, 0.85, 0.35),
    (0.95, 0.55, 0.15),
    (0.7, 0.4, 0.95),
    (0.2, 0.85, 0.85),
    (0.95, 0.4, 0.7),
    (0.6, 0.8, 0.2),
)


def is_label_image(path: str | os.PathLike) -> bool:
    name = Path(path).name.lower()
    return name.endswith(LABEL_IMAGE_SUFFIXES)


def read_segmentation(
    path: str | os.PathLike, reference: Volume, table: LabelTable | None = None
) -> ImportedLabels:
    """A DICOM SEG, an RTSTRUCT or a label image, as labels on ``reference``'s grid."""
    table = table or load_label_table()
    path = Path(path)
    if is_label_image(path):
        imported = _read_label_image(path, reference, table)
    else:
        try:
            modality = pydicom.dcmread(path, stop_before_pixels=True).get("Modality")
        except Exception as exc:  # any parse failure: not a DICOM file
            raise SegmentationFileError(
                f"{path.name} is neither a DICOM file nor a label image ({exc}).",
                hint="Choose a DICOM SEG, an RTSTRUCT, or a .nrrd / .nii.gz label map.",
            ) from None
        if modality == "RTSTRUCT":
            imported = _read_rtstruct(path, reference, table)
        elif modality == "SEG":
            imported = read_seg(path, reference, table)
        else:
            raise SegmentationFileError(
                f"{path.name} is a DICOM {modality or 'object'} file, not a segmentation.",
                hint="Choose a DICOM SEG or an RTSTRUCT (structure set).",
            )
    values = [int(v) for v in np.unique(imported.labels) if v != 0]
    if not values:
        raise SegmentationFileError(
            f"{path.name} labels no voxel of the planning CT.",
            hint="It may be empty, or drawn on a part of the patient this CT does not show.",
        )
    if max(values) > MAX_LABEL:
        raise SegmentationFileError(
            f"{path.name} uses label values up to {max(values)}; a plan holds values up to "
            f"{MAX_LABEL}.",
            hint="Renumber the labels (e.g. in 3D Slicer) and import again.",
        )
    imported.labels = imported.labels.astype(np.uint8)
    for n, value in enumerate(v for v in values if v not in imported.colors):
        imported.colors[value] = _colour(table, value, n)
    for value in values:
        imported.names.setdefault(value, _name(table, value))
    return imported


def _read_label_image(path: Path, reference: Volume, table: LabelTable) -> ImportedLabels:
    image = read_labelmap(path)
    notes: list[str] = []
    values = np.asarray(image.array)
    if np.issubdtype(values.dtype, np.floating) and (
        not np.all(np.isfinite(values)) or np.any(values != np.round(values))
    ):
        raise SegmentationFileError(
            f"{path.name} holds non-integer values: it is an image, not a label map.",
            hint="Export the segmentation as a label map (integer values).",
        )
    if np.any(values < 0):
        raise SegmentationFileError(f"{path.name} holds negative values: not a label map.")
    if not reference.same_grid(image):
        if not _overlap(image, reference):
            raise SegmentationFileError(
                f"{path.name} lies outside the planning CT: its voxels are at "
                f"{_extent_text(image)}, the CT covers {_extent_text(reference)}.",
                hint="It was made on another scan, or in another coordinate system. "
                "Import the label map made on this planning CT.",
            )
        size = image.size
        image = read_labelmap(path, reference)
        notes.append(
            f"its grid ({'×'.join(map(str, size))} voxels) differs from the CT's "
            f"({'×'.join(map(str, reference.size))}): resampled onto the CT by nearest "
            "neighbour"
        )
    labels = np.asarray(image.array).astype(np.int64)
    names = {int(v): _name(table, int(v)) for v in np.unique(labels) if v != 0}
    colours = {v: tuple(table[v].color) for v in names if v in table}
    return ImportedLabels(labels, names, colours, notes)


def _read_rtstruct(path: Path, reference: Volume, table: LabelTable) -> ImportedLabels:
    masks = read_rtstruct(path, reference)
    empty = [name for name, mask in masks.items() if not mask.any()]
    masks = {name: mask for name, mask in masks.items() if mask.any()}
    notes = [f"no contour of {', '.join(empty)} lies on the CT's slices"] if empty else []
    if not masks:
        raise SegmentationFileError(
            f"No structure of {path.name} lies on the planning CT's slices.",
            hint="The contours may have been drawn on another reconstruction of the scan.",
        )
    labels, names = labels_from_masks(masks, table)
    colours = {v: tuple(table[v].color) for v in names if v in table}
    return ImportedLabels(labels, names, colours, notes)


def _name(table: LabelTable, value: int) -> str:
    return table[value].name if value in table else f"label {value}"


def _colour(table: LabelTable, value: int, n: int) -> tuple[float, float, float]:
    return tuple(table[value].color) if value in table else PALETTE[n % len(PALETTE)]


def _bounds(volume: Volume) -> tuple[np.ndarray, np.ndarray]:
    i, j, k = (n - 1 for n in volume.size)
    corners = np.array([[a, b, c] for a in (0, i) for b in (0, j) for c in (0, k)], float)
    pts = volume.index_to_physical(corners)
    return pts.min(axis=0), pts.max(axis=0)


def _overlap(a: Volume, b: Volume) -> bool:
    lo_a, hi_a = _bounds(a)
    lo_b, hi_b = _bounds(b)
    return bool(np.all(np.maximum(lo_a, lo_b) <= np.minimum(hi_a, hi_b)))


def _extent_text(volume: Volume) -> str:
    lo, hi = _bounds(volume)
    axes = ", ".join(f"{n} {a:.0f}..{b:.0f}" for n, a, b in zip("xyz", lo, hi, strict=True))
    return f"{axes} mm"
