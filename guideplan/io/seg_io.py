"""Label maps in and out: DICOM SEG (highdicom), RTSTRUCT import, .nrrd / .nii.gz.

Why explicit geometry everywhere: a label map lives on the planning CT's grid, and that
grid may differ from the source slices (a gantry-tilted series is resampled on load). So
DICOM SEG export writes every frame's own plane position, orientation and pixel spacing
from the grid, and import places each frame by its LPS position onto the reference grid
(directly when the planes coincide, by nearest neighbour otherwise), never by frame order.
A SEG whose frame of reference is not the CT's is refused: it belongs to another scan.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.dataset import Dataset
from pydicom.sr.coding import Code

from guideplan import __version__ as _version
from guideplan.core.errors import GuideplanError
from guideplan.core.labelmap import LabelDef, LabelTable, load_label_table
from guideplan.core.volume import Volume


class SegmentationFileError(GuideplanError):
    """A segmentation file cannot be written or read onto the planning CT."""

    title = "Segmentation file problem"


_TRACKING_PREFIX = "guideplan-label-"
_GENERIC = ("91723000", "SCT", "Anatomical Structure")
_LESION = (("49755003", "SCT", "Morphologically Abnormal Structure"), ("52988006", "SCT", "Lesion"))
_ALGORITHM = hd.AlgorithmIdentificationSequence(
    name="guideplan", version=str(_version), family=Code("123109", "DCM", "Manual Processing")
)


# ======================================================================================
# DICOM SEG
# ======================================================================================


def write_seg(
    path: str | os.PathLike,
    labels: np.ndarray,
    reference: Volume,
    source: Sequence[Dataset] | str | os.PathLike | None = None,
    table: LabelTable | None = None,
    *,
    series_description: str = "guideplan segmentation",
    series_number: int = 300,
    manual: bool = True,
) -> Path:
    """Write the non-zero labels of ``labels`` (on ``reference``'s grid) as a DICOM SEG.

    ``source`` is the planning CT's datasets or its folder (default: the folder the
    volume was loaded from); they give patient, study and frame of reference. Each label
    becomes one segment named and coded from the label table.
    """
    if labels.shape != reference.array.shape:
        raise ValueError(
            f"labels {labels.shape} are not on the reference grid {reference.array.shape}"
        )
    table = table or load_label_table()
    datasets = _source_datasets(reference, source)
    values = [int(v) for v in np.unique(labels) if v != 0]
    if not values:
        raise SegmentationFileError(
            "The label map is empty: nothing to export.", hint="Segment something first."
        )
    numbered = np.zeros(labels.shape, dtype=np.uint16)
    descriptions = []
    for number, value in enumerate(values, start=1):
        numbered[labels == value] = number
        descriptions.append(_describe(number, value, table.get(value), manual))
    seg = hd.seg.Segmentation(
        source_images=datasets,
        pixel_array=numbered,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=hd.UID(),
        series_number=int(series_number),
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="guideplan",
        manufacturer_model_name="guideplan",
        software_versions=str(_version),
        device_serial_number="0",
        series_description=series_description,
        content_label="GUIDEPLAN",
        content_description="Planning segmentation",
        pixel_measures=hd.PixelMeasuresSequence(
            pixel_spacing=(reference.spacing[1], reference.spacing[0]),
            slice_thickness=reference.spacing[2],
            spacing_between_slices=reference.spacing[2],
        ),
        plane_orientation=hd.PlaneOrientationSequence(
            coordinate_system=hd.CoordinateSystemNames.PATIENT,
            image_orientation=(*reference.direction[:, 0], *reference.direction[:, 1]),
        ),
        plane_positions=[
            hd.PlanePositionSequence(
                coordinate_system=hd.CoordinateSystemNames.PATIENT,
                image_position=tuple(float(v) for v in reference.index_to_physical((0, 0, k))),
            )
            for k in range(labels.shape[0])
        ],
    )
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".partial")
    seg.save_as(tmp)
    os.replace(tmp, out)
    return out


@dataclass
class ImportedLabels:
    """Labels read from a file, on the reference grid."""

    labels: np.ndarray
    #: label value -> (name, colour) as found in the file / table
    names: dict[int, str]
    colors: dict[int, tuple[float, float, float]]
    notes: list[str] = field(default_factory=list)


def read_seg(
    path: str | os.PathLike, reference: Volume, table: LabelTable | None = None
) -> ImportedLabels:
    """Read a DICOM SEG onto ``reference``'s grid (uint16 label values).

    Segments written by guideplan keep their label values; others take the value of the
    label table entry of the same name, or a new value after the table's.
    """
    table = table or load_label_table()
    try:
        ds = pydicom.dcmread(path)
    except Exception as exc:  # any parse failure: the file is bad
        raise SegmentationFileError(f"{path} is not a readable DICOM file ({exc}).") from None
    if ds.get("Modality") != "SEG":
        raise SegmentationFileError(
            f"{path} is a {ds.get('Modality', '?')} file, not a SEG.",
            hint="Choose a DICOM SEG (segmentation) object.",
        )
    _check_frame_of_reference(ds, reference, path)
    frames = ds.pixel_array
    if frames.ndim == 2:
        frames = frames[np.newaxis]
    shared = (
        ds.SharedFunctionalGroupsSequence[0]
        if "SharedFunctionalGroupsSequence" in ds
        else Dataset()
    )
    values, names, colors = _segment_values(ds, table)
    out = np.zeros(reference.array.shape, dtype=np.uint16)
    notes: list[str] = []
    resampled = 0
    for f, group in enumerate(ds.PerFrameFunctionalGroupsSequence):
        number = int(group.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        frame = frames[f] > 0
        if not frame.any():
            continue
        geometry = _frame_geometry(group, shared)
        resampled += not _place(out, frame, geometry, reference, values[number])
    if resampled:
        notes.append(
            f"{resampled} frame(s) did not coincide with the CT slices and were "
            "placed by nearest neighbour"
        )
    return ImportedLabels(
        out, {values[n]: names[n] for n in values}, {values[n]: colors[n] for n in values}, notes
    )


def _describe(
    number: int, value: int, entry: LabelDef | None, manual: bool
) -> hd.seg.SegmentDescription:
    name = entry.name if entry else f"label {value}"
    category, kind = _GENERIC, _GENERIC
    if entry is not None and entry.kind == "lesion":
        category, kind = _LESION
    if entry is not None and entry.dicom:
        category = entry.dicom.get("category", category)
        kind = entry.dicom.get("type", kind)
    algorithm = (
        hd.seg.SegmentAlgorithmTypeValues.MANUAL
        if manual
        else hd.seg.SegmentAlgorithmTypeValues.SEMIAUTOMATIC
    )
    desc = hd.seg.SegmentDescription(
        segment_number=number,
        segment_label=name[:64],
        segmented_property_category=Code(*category),
        segmented_property_type=Code(*kind),
        algorithm_type=algorithm,
        algorithm_identification=None if manual else _ALGORITHM,
        tracking_uid=hd.UID(),
        tracking_id=f"{_TRACKING_PREFIX}{value}",
    )
    if entry is not None:
        desc.RecommendedDisplayCIELabValue = _rgb_to_cielab16(entry.color)
    return desc


def _segment_values(
    ds: Dataset, table: LabelTable
) -> tuple[dict[int, int], dict[int, str], dict[int, tuple]]:
    """segment number -> label value, name, colour."""
    values: dict[int, int] = {}
    names: dict[int, str] = {}
    colors: dict[int, tuple] = {}
    used: set[int] = set()
    pending = []
    for item in ds.SegmentSequence:
        number = int(item.SegmentNumber)
        name = str(item.get("SegmentLabel", f"segment {number}"))
        names[number] = name
        tracking = str(item.get("TrackingID", ""))
        value = None
        if tracking.startswith(_TRACKING_PREFIX):
            value = int(tracking[len(_TRACKING_PREFIX) :])
        else:
            try:
                value = table.id_of(name)
            except KeyError:
                pending.append(number)
        if value is not None:
            if value in used:
                pending.append(number)
            else:
                values[number] = value
                used.add(value)
        entry = table.get(values.get(number, -1))
        colors[number] = entry.color if entry else (1.0, 1.0, 0.0)
    free = max([*table.keys(), *used, 0]) + 1
    for number in pending:
        values[number] = free
        used.add(free)
        free += 1
    return values, names, colors


def _check_frame_of_reference(ds: Dataset, reference: Volume, path: Any) -> None:
    ours = reference.meta.get("frame_of_reference_uid")
    theirs = ds.get("FrameOfReferenceUID")
    if ours and theirs and str(ours) != str(theirs):
        raise SegmentationFileError(
            f"{path} belongs to another scan (frame of reference {theirs}, the planning CT "
            f"has {ours}).",
            hint="Import the segmentation made on this planning CT, or register the other "
            "scan first.",
        )


@dataclass
class _FrameGeometry:
    position: np.ndarray
    row_cosine: np.ndarray  # direction of increasing column index
    col_cosine: np.ndarray  # direction of increasing row index
    spacing_rc: tuple[float, float]  # (between rows, between columns)


def _frame_geometry(group: Dataset, shared: Dataset) -> _FrameGeometry:
    def find(name: str) -> Dataset:
        if name in group:
            return group[name][0]
        if name in shared:
            return shared[name][0]
        raise SegmentationFileError(f"The SEG has no {name}: its frames cannot be placed.")

    position = np.array(find("PlanePositionSequence").ImagePositionPatient, dtype=float)
    iop = np.array(find("PlaneOrientationSequence").ImageOrientationPatient, dtype=float)
    spacing = [float(v) for v in find("PixelMeasuresSequence").PixelSpacing]
    return _FrameGeometry(position, iop[:3], iop[3:], (spacing[0], spacing[1]))


def _place(
    out: np.ndarray, frame: np.ndarray, g: _FrameGeometry, reference: Volume, value: int
) -> bool:
    """Write ``frame`` into ``out`` at its LPS position; True when planes coincided."""
    ijk0 = reference.physical_to_index(g.position)
    d = reference.direction
    sp = np.asarray(reference.spacing)
    aligned = (
        np.allclose(g.row_cosine, d[:, 0], atol=1e-4)
        and np.allclose(g.col_cosine, d[:, 1], atol=1e-4)
        and np.allclose([g.spacing_rc[1], g.spacing_rc[0]], sp[:2], rtol=1e-4)
        and np.allclose(ijk0, np.rint(ijk0), atol=1e-3)
    )
    if aligned:
        i0, j0, k = (int(v) for v in np.rint(ijk0))
        if not 0 <= k < out.shape[0]:
            return True
        rows, cols = frame.shape
        js, is_ = max(j0, 0), max(i0, 0)
        je, ie = min(j0 + rows, out.shape[1]), min(i0 + cols, out.shape[2])
        if je > js and ie > is_:
            block = frame[js - j0 : je - j0, is_ - i0 : ie - i0]
            out[k, js:je, is_:ie][block] = value
        return True
    rr, cc = np.nonzero(frame)
    pts = (
        g.position
        + np.outer(cc * g.spacing_rc[1], g.row_cosine)
        + np.outer(rr * g.spacing_rc[0], g.col_cosine)
    )
    ijk = np.rint(reference.physical_to_index(pts)).astype(int)
    ok = np.all((ijk >= 0) & (ijk < np.array(reference.size)), axis=1)
    out[ijk[ok, 2], ijk[ok, 1], ijk[ok, 0]] = value
    return False


def _source_datasets(
    reference: Volume, source: Sequence[Dataset] | str | os.PathLike | None
) -> list[Dataset]:
    if source is not None and not isinstance(source, str | os.PathLike):
        datasets = list(source)
    else:
        folder = source if source is not None else reference.meta.get("source_path")
        if not folder or not Path(folder).is_dir():
            raise SegmentationFileError(
                "The planning CT's DICOM files are needed to export a SEG (patient, study, "
                "frame of reference), and their folder is unknown.",
                hint="Give the CT series folder.",
            )
        uid = reference.meta.get("series_uid")
        datasets = []
        for p in sorted(Path(folder).rglob("*")):
            if not p.is_file():
                continue
            try:
                ds = pydicom.dcmread(p, stop_before_pixels=True)
            except Exception:  # not DICOM: skip it, like the scanner
                continue
            if uid is None or ds.get("SeriesInstanceUID") == uid:
                datasets.append(ds)
    if not datasets:
        raise SegmentationFileError(
            "No DICOM image of the planning CT series was found.", hint="Give the CT series folder."
        )
    return datasets


def _rgb_to_cielab16(rgb: Iterable[float]) -> list[int]:
    """sRGB (0-1) to DICOM's scaled CIELab (0-65535), as RecommendedDisplayCIELabValue."""
    c = np.asarray(list(rgb), dtype=float)
    c = np.where(c > 0.04045, ((c + 0.055) / 1.055) ** 2.4, c / 12.92)
    m = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
    xyz = m @ c / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    lab = np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])
    scaled = [lab[0] / 100 * 65535, (lab[1] + 128) / 255 * 65535, (lab[2] + 128) / 255 * 65535]
    return [int(np.clip(round(v), 0, 65535)) for v in scaled]


# ======================================================================================
# RTSTRUCT
# ======================================================================================


def read_rtstruct(
    path: str | os.PathLike, reference: Volume, names: Iterable[str] | None = None
) -> dict[str, np.ndarray]:
    """Rasterise the closed planar contours of an RT Structure Set onto the CT grid.

    Returns {ROI name: bool mask}. Each contour is filled on the CT slice it lies on
    (even-odd rule at voxel centres, so a contour drawn inside another is a hole).
    """
    try:
        ds = pydicom.dcmread(path)
    except Exception as exc:
        raise SegmentationFileError(f"{path} is not a readable DICOM file ({exc}).") from None
    if ds.get("Modality") != "RTSTRUCT":
        raise SegmentationFileError(
            f"{path} is a {ds.get('Modality', '?')} file, not an RTSTRUCT.",
            hint="Choose an RT Structure Set.",
        )
    _check_frame_of_reference_rt(ds, reference, path)
    roi_names = {int(r.ROINumber): str(r.ROIName) for r in ds.StructureSetROISequence}
    wanted = None if names is None else {n.lower() for n in names}
    out: dict[str, np.ndarray] = {}
    for roi in ds.get("ROIContourSequence", []):
        name = roi_names.get(int(roi.ReferencedROINumber), f"ROI {roi.ReferencedROINumber}")
        if wanted is not None and name.lower() not in wanted:
            continue
        mask = np.zeros(reference.array.shape, dtype=bool)
        for contour in roi.get("ContourSequence", []):
            if str(contour.get("ContourGeometricType", "CLOSED_PLANAR")) != "CLOSED_PLANAR":
                continue
            pts = np.asarray(contour.ContourData, dtype=float).reshape(-1, 3)
            ijk = reference.physical_to_index(pts)
            k = int(np.rint(ijk[:, 2].mean()))
            if not 0 <= k < mask.shape[0] or np.ptp(ijk[:, 2]) > 0.5:
                continue  # off the grid, or not in a CT slice plane
            mask[k] ^= polygon_mask(ijk[:, :2], mask.shape[1:])
        out[name] = mask
    return out


def _check_frame_of_reference_rt(ds: Dataset, reference: Volume, path: Any) -> None:
    refs = [str(r.FrameOfReferenceUID) for r in ds.get("ReferencedFrameOfReferenceSequence", [])]
    ours = reference.meta.get("frame_of_reference_uid")
    if ours and refs and str(ours) not in refs:
        raise SegmentationFileError(
            f"{path} was drawn on another scan (frame of reference {refs[0]}).",
            hint="Import the structure set made on this planning CT.",
        )


def polygon_mask(points_ij: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Fill a closed polygon given in continuous (i, j) index units on a (rows, cols) grid.

    Even-odd rule at pixel centres: pixel (j, i) is inside when a ray from it crosses the
    polygon's edges an odd number of times. Vectorised over rows.
    """
    rows, cols = shape
    out = np.zeros(shape, dtype=bool)
    if len(points_ij) < 3:
        return out
    x0, y0 = points_ij[:, 0], points_ij[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    j_lo = max(int(np.ceil(y0.min())), 0)
    j_hi = min(int(np.floor(y0.max())), rows - 1)
    for j in range(j_lo, j_hi + 1):
        crosses = (y0 <= j) != (y1 <= j)
        if not crosses.any():
            continue
        xs = x0[crosses] + (j - y0[crosses]) * (x1[crosses] - x0[crosses]) / (
            y1[crosses] - y0[crosses]
        )
        xs.sort()
        for a, b in zip(xs[0::2], xs[1::2], strict=False):
            lo = max(int(np.ceil(a)), 0)
            hi = min(int(np.ceil(b)) - 1, cols - 1)
            if hi >= lo:
                out[j, lo : hi + 1] = True
    return out


# ======================================================================================
# .nrrd / .nii.gz
# ======================================================================================


def write_labelmap(path: str | os.PathLike, labels: np.ndarray, reference: Volume) -> Path:
    """Write a label array with the reference grid's geometry (.nrrd, .nii, .nii.gz).

    NIfTI stores RAS, SimpleITK converts; nrrd keeps LPS. Written atomically.
    """
    if labels.shape != reference.array.shape:
        raise ValueError("labels are not on the reference grid")
    out = Path(path)
    dtype = np.uint8 if labels.max(initial=0) < 256 else np.uint16
    image = reference.with_array(np.ascontiguousarray(labels, dtype=dtype)).to_sitk()
    out.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(out.suffixes[-2:]) if out.name.endswith(".nii.gz") else out.suffix
    tmp = out.with_name(f".{out.name}.partial{suffix}")
    sitk.WriteImage(image, str(tmp), True)
    os.replace(tmp, out)
    return out


def read_labelmap(path: str | os.PathLike, reference: Volume | None = None) -> Volume:
    """Read a label image; with ``reference``, brought onto its grid (nearest neighbour
    when the grids differ, so label values stay labels)."""
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        raise SegmentationFileError(
            f"Cannot read {path} as a label image ({str(exc).splitlines()[0]}).",
            hint="Give .nrrd, .nii(.gz) or .mha files.",
        ) from None
    if image.GetDimension() != 3:
        raise SegmentationFileError(f"{path} is not a 3D image.")
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise SegmentationFileError(
            f"{path} has several components per voxel; a label map has one."
        )
    volume = Volume.from_sitk(image, meta={"source_path": str(path)})
    if reference is None or reference.same_grid(volume):
        return volume
    resampled = sitk.Resample(
        image,
        reference.to_sitk(),
        sitk.Transform(),
        sitk.sitkNearestNeighbor,
        0,
        image.GetPixelID(),
    )
    return Volume.from_sitk(resampled, meta={"source_path": str(path), "resampled": True})


def labels_from_masks(
    masks: Mapping[str, np.ndarray], table: LabelTable | None = None
) -> tuple[np.ndarray, dict[int, str]]:
    """Combine named masks (e.g. from an RTSTRUCT) into one label array, table ids where
    the names match, later masks over earlier ones."""
    table = table or load_label_table()
    if not masks:
        raise ValueError("no masks to combine")
    shape = next(iter(masks.values())).shape
    out = np.zeros(shape, dtype=np.uint16)
    names: dict[int, str] = {}
    free = max(table.keys(), default=0) + 1
    for name, mask in masks.items():
        try:
            value = table.id_of(name)
        except KeyError:
            value, free = free, free + 1
        out[mask] = value
        names[value] = name
    return out, names
