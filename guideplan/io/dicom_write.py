"""Deterministic writer of synthetic DICOM series (tests, sample cases, benchmarks).

Why it exists: the loader must be tested against many acquisition geometries and encodings,
and the sample cases must open in any viewer. Every file written here is meant to pass
``dciodvfy`` for its SOP class (CT, MR, PET, Enhanced CT, Enhanced MR). Output is
byte-for-byte reproducible: UIDs derive from ``SeriesSpec.seed`` and dates/times come
from the spec, never from the clock.

Geometry follows DICOM: ``row_cosine`` is the LPS direction of increasing column index i,
``col_cosine`` that of increasing row index j, ``pixel_spacing`` is DICOM PixelSpacing
order ``(between rows = along j, between columns = along i)``.
"""

from __future__ import annotations

import io
import math
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)

from guideplan.core import Volume

CT_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.2")
ENHANCED_CT_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.2.1")
MR_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.4")
ENHANCED_MR_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.4.1")
PET_IMAGE_STORAGE = UID("1.2.840.10008.5.1.4.1.1.128")

SOP_CLASS_BY_MODALITY = {"CT": CT_IMAGE_STORAGE, "MR": MR_IMAGE_STORAGE, "PT": PET_IMAGE_STORAGE}
ENHANCED_SOP_CLASS_BY_MODALITY = {"CT": ENHANCED_CT_IMAGE_STORAGE, "MR": ENHANCED_MR_IMAGE_STORAGE}

#: Transfer syntaxes pydicom encodes itself (through its plugins).
_PYDICOM_ENCODED = {RLELossless: "pydicom", JPEGLSLossless: "pyjpegls", JPEG2000Lossless: ""}
SUPPORTED_TRANSFER_SYNTAXES = (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    RLELossless,
    JPEGLSLossless,
    JPEG2000Lossless,
    JPEGLosslessSV1,  # encoded with SimpleITK's GDCM
    JPEGBaseline8Bit,  # encoded with Pillow; 8-bit only, lossy
)

_DEFAULT_IMAGE_TYPE = {
    "CT": ("ORIGINAL", "PRIMARY", "AXIAL"),
    "MR": ("ORIGINAL", "PRIMARY", "OTHER"),
    "PT": ("ORIGINAL", "PRIMARY"),
}
_IMPLEMENTATION_UID = generate_uid(entropy_srcs=["guideplan", "dicom_write", "implementation"])
_SOFTWARE_VERSION = "guideplan dicom_write 1"

#: Extra per-dataset hook: ``extra(ds, index)`` may change ``ds`` before it is saved.
ExtraHook = Callable[[Dataset, int], None]


@dataclass
class SeriesSpec:
    """Everything about a series that is not pixels or geometry.

    All UIDs derive from ``seed`` (+ ``series_number`` for the series) unless given, so
    two writes of the same spec give identical files. Dates and times are fixed here.
    """

    modality: str = "CT"
    seed: str = "guideplan"
    patient_name: str = "ANON^GUIDEPLAN"
    patient_id: str = "GP0001"
    patient_birth_date: str = "19600101"
    patient_sex: str = "O"
    patient_weight_kg: float | None = None
    study_uid: str | None = None
    series_uid: str | None = None
    frame_of_reference_uid: str | None = None
    study_description: str = ""
    series_description: str = ""
    series_number: int = 1
    study_date: str = "20260101"
    study_time: str = "090000"
    study_id: str = "1"
    accession_number: str = ""
    patient_position: str = "HFS"
    body_part_examined: str = ""
    #: Enhanced IODs' FrameAnatomySequence: (SNOMED CT code, meaning), CID 4031.
    anatomic_region: tuple[str, str] = ("818981001", "Abdomen")
    manufacturer: str = "guideplan synthetic"
    model_name: str = "guideplan phantom"
    transfer_syntax: str = ExplicitVRLittleEndian
    #: None: ORIGINAL\\PRIMARY\\AXIAL for CT, ...\\OTHER for MR, ORIGINAL\\PRIMARY for PET
    #: (the defined terms dciodvfy knows for each IOD).
    image_type: tuple[str, ...] | None = None
    acquisition_number: int = 1
    #: VOI window (centre, width); None: a soft-tissue window for CT, the data range else.
    window: tuple[float, float] | None = None
    # -- CT ------------------------------------------------------------------------
    kvp: float = 120.0
    convolution_kernel: str = "STANDARD"
    # -- MR ------------------------------------------------------------------------
    scanning_sequence: str = "GR"
    sequence_variant: str = "SP"
    mr_acquisition_type: str = "3D"
    repetition_time_ms: float = 8.0
    echo_time_ms: float = 4.0
    flip_angle_deg: float = 15.0
    echo_train_length: int = 1
    magnetic_field_strength_t: float = 1.5
    imaging_frequency_mhz: float = 63.87
    # -- PET -----------------------------------------------------------------------
    units: str = "BQML"
    decay_correction: str = "START"
    corrected_image: tuple[str, ...] = ("DECY", "ATTN", "SCAT", "DTIM", "RAN", "NORM")
    radionuclide_total_dose_bq: float | None = 370e6
    radionuclide_half_life_s: float = 6586.2  # fluorine-18
    radiopharmaceutical_start_time: str = "080000"
    radiopharmaceutical: str = "Fluorodeoxyglucose F^18^"
    series_date: str | None = None  # default: study_date
    series_time: str | None = None  # default: study_time
    frame_duration_ms: int = 300000

    # -- derived UIDs --------------------------------------------------------------
    def resolved_study_uid(self) -> str:
        return self.study_uid or _uid(self.seed, "study")

    def resolved_series_uid(self) -> str:
        return self.series_uid or _uid(self.seed, "series", str(self.series_number))

    def resolved_frame_of_reference_uid(self) -> str:
        return self.frame_of_reference_uid or _uid(self.seed, "frame-of-reference")

    def resolved_image_type(self) -> tuple[str, ...]:
        if self.image_type is not None:
            return tuple(self.image_type)
        return _DEFAULT_IMAGE_TYPE.get(self.modality.upper(), ("ORIGINAL", "PRIMARY"))

    def resolved_series_date(self) -> str:
        return self.series_date or self.study_date

    def resolved_series_time(self) -> str:
        return self.series_time or self.study_time


# ======================================================================================
# public API
# ======================================================================================


def write_slices(
    out_dir: str | Path,
    frames: np.ndarray,
    positions: np.ndarray | Sequence[Sequence[float]],
    row_cosine: Sequence[float],
    col_cosine: Sequence[float],
    pixel_spacing: Sequence[float],
    spec: SeriesSpec,
    *,
    rescale_slope: float | Sequence[float] | str = 1.0,
    rescale_intercept: float | Sequence[float] = 0.0,
    pixel_representation: int = 1,
    bits_stored: int = 16,
    slice_thickness: float | None = None,
    gantry_tilt_deg: float = 0.0,
    file_names: Sequence[str] | None = None,
    instance_numbers: Sequence[int] | None = None,
    extra: ExtraHook | None = None,
) -> list[Path]:
    """Write one single-frame image file per slice; return the paths in input order.

    ``frames`` (n, rows, cols) holds real-world values (HU for CT, Bq/ml for PET); they are
    stored as ``round((v - intercept) / slope)`` clipped to the stored type
    (``rescale_slope="auto"``: a per-slice slope using the full stored range). ``positions``
    (n, 3) are the ImagePositionPatient of each slice, in any order the caller wants.
    """
    frames = np.asarray(frames)  # converted slice by slice: big volumes stay small in memory
    if frames.ndim != 3:
        raise ValueError(f"frames must be (n, rows, cols), got shape {frames.shape}")
    n, rows, cols = frames.shape
    pos = np.asarray(positions, dtype=float).reshape(-1, 3)
    if len(pos) != n:
        raise ValueError(f"{n} frames but {len(pos)} positions")
    row_c, col_c = _check_cosines(row_cosine, col_cosine)
    spacing = _check_pixel_spacing(pixel_spacing)
    modality = spec.modality.upper()
    if modality not in SOP_CLASS_BY_MODALITY:
        raise ValueError(f"modality must be one of {sorted(SOP_CLASS_BY_MODALITY)}")
    intercepts = _per_slice(rescale_intercept, n, "rescale_intercept")
    slopes = _slopes(rescale_slope, frames, intercepts, pixel_representation, bits_stored)
    if modality == "PT" and np.any(intercepts != 0):
        raise ValueError("PET images require RescaleIntercept 0 (DICOM PET Image module)")
    names = list(file_names) if file_names is not None else [f"IM{i + 1:05d}.dcm" for i in range(n)]
    numbers = list(instance_numbers) if instance_numbers is not None else list(range(1, n + 1))
    if len(names) != n or len(numbers) != n:
        raise ValueError("file_names and instance_numbers need one entry per slice")

    normal = np.cross(row_c, col_c)
    spacing_between = _slice_spacing(pos, normal)
    thickness = float(slice_thickness) if slice_thickness is not None else spacing_between
    window = spec.window or _default_window(modality, frames)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    series_uid = spec.resolved_series_uid()
    paths = []
    for idx in range(n):
        stored = to_stored(
            frames[idx], slopes[idx], intercepts[idx], pixel_representation, bits_stored
        )
        sop_uid = _uid(spec.seed, series_uid, "sop", str(idx), names[idx])
        ds = _base_dataset(spec, SOP_CLASS_BY_MODALITY[modality], sop_uid)
        ds.InstanceNumber = int(numbers[idx])
        ds.AcquisitionNumber = spec.acquisition_number
        # Image Plane
        ds.PixelSpacing = [_ds(spacing[0]), _ds(spacing[1])]
        ds.ImageOrientationPatient = [_ds(v) for v in (*row_c, *col_c)]
        ds.ImagePositionPatient = [_ds(v) for v in pos[idx]]
        ds.SliceThickness = _ds(thickness)
        ds.SliceLocation = _ds(float(pos[idx] @ normal))
        _set_image_pixel_attrs(
            ds, rows, cols, pixel_representation, bits_stored, spec.transfer_syntax
        )
        ds.WindowCenter = _ds(window[0])
        ds.WindowWidth = _ds(max(window[1], 1.0))
        if modality == "CT":
            _add_ct_image(ds, spec, slopes[idx], intercepts[idx], gantry_tilt_deg)
        elif modality == "MR":
            _add_mr_image(ds, spec, spacing_between, slopes[idx], intercepts[idx])
        else:
            _add_pet(ds, spec, n, idx, slopes[idx], gantry_tilt_deg)
        _set_pixel_data(ds, stored[np.newaxis], spec.transfer_syntax)
        if extra is not None:
            extra(ds, idx)
        path = out / names[idx]
        path.parent.mkdir(parents=True, exist_ok=True)
        _save(ds, path)
        paths.append(path)
    return paths


def write_volume(volume: Volume, out_dir: str | Path, spec: SeriesSpec, **kw) -> list[Path]:
    """One file per k-slice of ``volume``; geometry from the Volume (LPS, [k, j, i])."""
    d = np.asarray(volume.direction, dtype=float)
    sx, sy, sz = volume.spacing
    origin = np.asarray(volume.origin, dtype=float)
    n = volume.array.shape[0]
    positions = origin + np.outer(np.arange(n) * sz, d[:, 2])
    kw.setdefault("slice_thickness", sz)
    return write_slices(out_dir, volume.array, positions, d[:, 0], d[:, 1], (sy, sx), spec, **kw)


def write_enhanced(
    volume: Volume,
    path: str | Path,
    spec: SeriesSpec,
    *,
    rescale_slope: float | Sequence[float] | str = 1.0,
    rescale_intercept: float | Sequence[float] = 0.0,
    pixel_representation: int = 1,
    bits_stored: int = 16,
    slice_thickness: float | None = None,
    extra: ExtraHook | None = None,
) -> Path:
    """One multi-frame Enhanced CT or Enhanced MR file holding every k-slice of ``volume``.

    Orientation and pixel measures go in the shared functional groups, one
    PlanePositionSequence per frame; CT gets a PixelValueTransformation (HU). Scalar
    rescale values are shared, per-frame sequences go in the per-frame groups.
    ``extra(ds, 0)`` is called once before saving.
    """
    modality = spec.modality.upper()
    if modality not in ENHANCED_SOP_CLASS_BY_MODALITY:
        raise ValueError("enhanced multi-frame writing supports CT and MR only")
    arr = np.asarray(volume.array)
    n, rows, cols = arr.shape
    d = np.asarray(volume.direction, dtype=float)
    row_c, col_c = _check_cosines(d[:, 0], d[:, 1])
    sx, sy, sz = volume.spacing
    origin = np.asarray(volume.origin, dtype=float)
    positions = origin + np.outer(np.arange(n) * sz, d[:, 2])
    intercepts = _per_slice(rescale_intercept, n, "rescale_intercept")
    slopes = _slopes(rescale_slope, arr, intercepts, pixel_representation, bits_stored)
    per_frame_rescale = bool(np.ptp(slopes) > 0 or np.ptp(intercepts) > 0)
    thickness = float(slice_thickness) if slice_thickness is not None else float(sz)
    series_uid = spec.resolved_series_uid()

    ds = _base_dataset(
        spec,
        ENHANCED_SOP_CLASS_BY_MODALITY[modality],
        _uid(spec.seed, series_uid, "sop", "enhanced"),
    )
    ds.InstanceNumber = 1
    ds.AcquisitionNumber = spec.acquisition_number
    acq_dt = spec.study_date + spec.study_time
    ds.AcquisitionDateTime = acq_dt
    ds.AcquisitionDuration = 10.0
    image_type = _enhanced_image_type(spec.resolved_image_type())
    ds.ImageType = list(image_type)
    ds.PixelPresentation = "MONOCHROME"
    ds.VolumetricProperties = "VOLUME"
    ds.VolumeBasedCalculationTechnique = "NONE"
    ds.ContentQualification = "RESEARCH"
    ds.BurnedInAnnotation = "NO"
    ds.RecognizableVisualFeatures = "NO"
    ds.LossyImageCompression = "00"
    ds.PresentationLUTShape = "IDENTITY"
    ds.NumberOfFrames = n
    ds.AcquisitionContextSequence = DicomSequence()
    _set_image_pixel_attrs(ds, rows, cols, pixel_representation, bits_stored, spec.transfer_syntax)
    if modality == "MR":
        _add_enhanced_mr_image(ds, spec)

    # Multi-frame Dimension module: a single stack, indexed by in-stack position.
    dim_uid = _uid(spec.seed, series_uid, "dimension-organization")
    ds.DimensionOrganizationType = "3D"
    ds.DimensionOrganizationSequence = DicomSequence([_item(DimensionOrganizationUID=dim_uid)])
    ds.DimensionIndexSequence = DicomSequence(
        [
            _item(
                DimensionOrganizationUID=dim_uid,
                DimensionIndexPointer=0x00209056,
                FunctionalGroupPointer=0x00209111,
                DimensionDescriptionLabel="Stack ID",
            ),
            _item(
                DimensionOrganizationUID=dim_uid,
                DimensionIndexPointer=0x00209057,
                FunctionalGroupPointer=0x00209111,
                DimensionDescriptionLabel="In-Stack Position Number",
            ),
        ]
    )

    shared = Dataset()
    shared.PixelMeasuresSequence = DicomSequence(
        [
            _item(
                PixelSpacing=[_ds(sy), _ds(sx)],
                SliceThickness=_ds(thickness),
                SpacingBetweenSlices=_ds(sz),
            )
        ]
    )
    shared.PlaneOrientationSequence = DicomSequence(
        [_item(ImageOrientationPatient=[_ds(v) for v in (*row_c, *col_c)])]
    )
    shared.FrameAnatomySequence = DicomSequence([_frame_anatomy(spec)])
    window = spec.window or _default_window(modality, arr)
    shared.FrameVOILUTSequence = DicomSequence(
        [_item(WindowCenter=_ds(window[0]), WindowWidth=_ds(max(window[1], 1.0)))]
    )
    if not per_frame_rescale:
        shared.PixelValueTransformationSequence = DicomSequence(
            [_pixel_value_transformation(modality, slopes[0], intercepts[0])]
        )
    if modality == "CT":
        _add_enhanced_ct_shared(shared, spec, rows, cols, sx, sy)
    else:
        _add_enhanced_mr_shared(shared, spec, rows, cols)
    ds.SharedFunctionalGroupsSequence = DicomSequence([shared])

    per_frame = []
    stored = np.empty((n, rows, cols), dtype=_stored_dtype(pixel_representation, bits_stored))
    for k in range(n):
        stored[k] = to_stored(arr[k], slopes[k], intercepts[k], pixel_representation, bits_stored)
        item = Dataset()
        item.FrameContentSequence = DicomSequence(
            [
                _item(
                    FrameAcquisitionNumber=k + 1,
                    FrameReferenceDateTime=acq_dt,
                    FrameAcquisitionDateTime=acq_dt,
                    FrameAcquisitionDuration=_ds(10.0),
                    StackID="1",
                    InStackPositionNumber=k + 1,
                    DimensionIndexValues=[1, k + 1],
                )
            ]
        )
        item.PlanePositionSequence = DicomSequence(
            [_item(ImagePositionPatient=[_ds(v) for v in positions[k]])]
        )
        if per_frame_rescale:
            item.PixelValueTransformationSequence = DicomSequence(
                [_pixel_value_transformation(modality, slopes[k], intercepts[k])]
            )
        if modality == "CT":
            item.CTPositionSequence = DicomSequence(
                [
                    _item(
                        TablePosition=_ds(float(positions[k][2])),
                        ReconstructionTargetCenterPatient=[
                            _ds(v)
                            for v in _frame_center(positions[k], row_c, col_c, rows, cols, sx, sy)
                        ],
                        DataCollectionCenterPatient=[
                            _ds(v)
                            for v in _frame_center(positions[k], row_c, col_c, rows, cols, sx, sy)
                        ],
                    )
                ]
            )
        per_frame.append(item)
    ds.PerFrameFunctionalGroupsSequence = DicomSequence(per_frame)
    _set_pixel_data(ds, stored, spec.transfer_syntax)
    if extra is not None:
        extra(ds, 0)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    _save(ds, out)
    return out


def to_stored(
    values: np.ndarray,
    slope: float,
    intercept: float,
    pixel_representation: int,
    bits_stored: int,
) -> np.ndarray:
    """Real-world values -> stored integers: round((v - b) / m), clipped to the stored range."""
    if slope == 0:
        raise ValueError("rescale slope must not be zero")
    lo, hi = _stored_range(pixel_representation, bits_stored)
    raw = np.rint((np.nan_to_num(np.asarray(values, dtype=float)) - intercept) / slope)
    return np.clip(raw, lo, hi).astype(_stored_dtype(pixel_representation, bits_stored))


# ======================================================================================
# dataset assembly
# ======================================================================================


def _base_dataset(spec: SeriesSpec, sop_class: UID, sop_uid: str) -> Dataset:
    """Patient, study, series, frame of reference, equipment and SOP common modules."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.file_meta.TransferSyntaxUID = UID(spec.transfer_syntax)
    ds.file_meta.ImplementationClassUID = _IMPLEMENTATION_UID
    ds.file_meta.ImplementationVersionName = "GUIDEPLAN_1"
    texts = (spec.patient_name, spec.study_description, spec.series_description, spec.manufacturer)
    if not all(t.isascii() for t in texts):
        ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.InstanceCreationDate = spec.study_date
    ds.InstanceCreationTime = spec.study_time
    # Patient
    ds.PatientName = spec.patient_name
    ds.PatientID = spec.patient_id
    ds.PatientBirthDate = spec.patient_birth_date
    ds.PatientSex = spec.patient_sex
    if spec.patient_weight_kg is not None:
        ds.PatientWeight = _ds(spec.patient_weight_kg)
    # General Study
    ds.StudyInstanceUID = spec.resolved_study_uid()
    ds.StudyDate = spec.study_date
    ds.StudyTime = spec.study_time
    ds.ReferringPhysicianName = ""
    ds.StudyID = spec.study_id
    ds.AccessionNumber = spec.accession_number
    if spec.study_description:
        ds.StudyDescription = spec.study_description
    # General Series
    ds.Modality = spec.modality.upper()
    ds.SeriesInstanceUID = spec.resolved_series_uid()
    ds.SeriesNumber = spec.series_number
    ds.SeriesDate = spec.resolved_series_date()
    ds.SeriesTime = spec.resolved_series_time()
    if spec.series_description:
        ds.SeriesDescription = spec.series_description
    if spec.body_part_examined:
        ds.BodyPartExamined = spec.body_part_examined
    if sop_class not in ENHANCED_SOP_CLASS_BY_MODALITY.values():
        # Laterality is 2C on "paired body part", which dciodvfy cannot judge; an explicit
        # ImageLaterality of U(npaired) settles it for both the standard and the checker.
        ds.ImageLaterality = "U"
    if sop_class != PET_IMAGE_STORAGE:  # PET carries the position as codes instead
        ds.PatientPosition = spec.patient_position
    # Frame of Reference
    ds.FrameOfReferenceUID = spec.resolved_frame_of_reference_uid()
    ds.PositionReferenceIndicator = ""
    # General / Enhanced General Equipment
    ds.Manufacturer = spec.manufacturer
    ds.ManufacturerModelName = spec.model_name
    ds.DeviceSerialNumber = "0001"
    ds.SoftwareVersions = _SOFTWARE_VERSION
    # General Image / Acquisition
    ds.ContentDate = spec.study_date
    ds.ContentTime = spec.study_time
    if sop_class not in ENHANCED_SOP_CLASS_BY_MODALITY.values():
        ds.ImageType = list(spec.resolved_image_type())
        ds.AcquisitionDate = spec.study_date
        ds.AcquisitionTime = spec.study_time
    return ds


def _set_image_pixel_attrs(
    ds: Dataset,
    rows: int,
    cols: int,
    pixel_representation: int,
    bits_stored: int,
    transfer_syntax: str,
) -> None:
    if pixel_representation not in (0, 1):
        raise ValueError("pixel_representation must be 0 (unsigned) or 1 (signed)")
    bits_allocated = 8 if bits_stored <= 8 else 16
    if not 1 <= bits_stored <= 16:
        raise ValueError("bits_stored must be between 1 and 16")
    if UID(transfer_syntax) == JPEGBaseline8Bit and bits_allocated != 8:
        raise ValueError("JPEG baseline holds 8-bit pixels only: pass bits_stored=8")
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = rows
    ds.Columns = cols
    ds.BitsAllocated = bits_allocated
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = pixel_representation


def _add_ct_image(
    ds: Dataset, spec: SeriesSpec, slope: float, intercept: float, tilt_deg: float
) -> None:
    """CT Image module (plus the CT-specific acquisition attributes viewers show)."""
    ds.RescaleIntercept = _ds(intercept)
    ds.RescaleSlope = _ds(slope)
    if "LOCALIZER" not in spec.resolved_image_type():
        ds.RescaleType = "HU"  # a localizer's values are not calibrated HU: leave it out
    ds.KVP = _ds(spec.kvp)
    ds.DataCollectionDiameter = _ds(500.0)
    ds.ReconstructionDiameter = _ds(float(ds.Columns) * float(ds.PixelSpacing[1]))
    ds.GantryDetectorTilt = _ds(tilt_deg)
    ds.TableHeight = _ds(150.0)
    ds.RotationDirection = "CW"
    ds.ExposureTime = 1000
    ds.XRayTubeCurrent = 200
    ds.Exposure = 200
    ds.ConvolutionKernel = spec.convolution_kernel
    ds.PatientPosition = spec.patient_position


def _add_mr_image(
    ds: Dataset, spec: SeriesSpec, spacing_between: float, slope: float, intercept: float
) -> None:
    """MR Image module; rescale only when it is not the identity (MR IOD has none)."""
    ds.ScanningSequence = spec.scanning_sequence
    ds.SequenceVariant = spec.sequence_variant
    ds.ScanOptions = ""
    ds.MRAcquisitionType = spec.mr_acquisition_type
    ds.SequenceName = "guideplan"
    ds.AngioFlag = "N"
    ds.RepetitionTime = _ds(spec.repetition_time_ms)
    ds.EchoTime = _ds(spec.echo_time_ms)
    if "IR" in spec.scanning_sequence.split("\\"):
        ds.InversionTime = _ds(300.0)
    ds.EchoTrainLength = spec.echo_train_length
    ds.NumberOfAverages = _ds(1.0)
    ds.ImagingFrequency = _ds(spec.imaging_frequency_mhz)
    ds.ImagedNucleus = "1H"
    ds.EchoNumbers = 1
    ds.MagneticFieldStrength = _ds(spec.magnetic_field_strength_t)
    ds.SpacingBetweenSlices = _ds(spacing_between)
    ds.FlipAngle = _ds(spec.flip_angle_deg)
    if slope != 1.0 or intercept != 0.0:
        ds.RescaleIntercept = _ds(intercept)
        ds.RescaleSlope = _ds(slope)
        ds.RescaleType = "US"


def _add_pet(
    ds: Dataset, spec: SeriesSpec, n: int, idx: int, slope: float, tilt_deg: float
) -> None:
    """PET Series, PET Isotope, NM/PET Patient Orientation and PET Image modules."""
    ds.Units = spec.units
    ds.CountsSource = "EMISSION"
    ds.SeriesType = ["STATIC", "IMAGE"]
    ds.NumberOfSlices = n
    ds.CorrectedImage = list(spec.corrected_image)
    ds.DecayCorrection = spec.decay_correction
    ds.RandomsCorrectionMethod = "DLYD"
    ds.AttenuationCorrectionMethod = "CT-based"
    ds.ReconstructionMethod = "OSEM"
    ds.CollimatorType = "NONE"
    if tilt_deg:
        ds.GantryDetectorTilt = _ds(tilt_deg)
    isotope = Dataset()
    isotope.RadionuclideCodeSequence = DicomSequence([_code("77004003", "SCT", "^18^Fluorine")])
    isotope.RadiopharmaceuticalStartTime = spec.radiopharmaceutical_start_time
    isotope.RadiopharmaceuticalStartDateTime = (
        spec.resolved_series_date() + spec.radiopharmaceutical_start_time
    )
    if spec.radionuclide_total_dose_bq is not None:
        isotope.RadionuclideTotalDose = _ds(spec.radionuclide_total_dose_bq)
    isotope.RadionuclideHalfLife = _ds(spec.radionuclide_half_life_s)
    isotope.RadionuclidePositronFraction = _ds(0.9673)
    isotope.Radiopharmaceutical = spec.radiopharmaceutical
    isotope.RadiopharmaceuticalCodeSequence = DicomSequence(
        [_code("35321007", "SCT", "Fluorodeoxyglucose F^18^")]
    )
    ds.RadiopharmaceuticalInformationSequence = DicomSequence([isotope])
    ds.PatientOrientationCodeSequence, ds.PatientGantryRelationshipCodeSequence = (
        _pet_orientation_codes(spec.patient_position)
    )
    # PET Image
    ds.RescaleIntercept = _ds(0.0)
    ds.RescaleSlope = _ds(slope)
    ds.FrameReferenceTime = _ds(spec.frame_duration_ms / 2.0)
    ds.ImageIndex = idx + 1
    ds.ActualFrameDuration = spec.frame_duration_ms
    if spec.decay_correction != "NONE":
        lam = math.log(2.0) / spec.radionuclide_half_life_s
        dur_s = spec.frame_duration_ms / 1000.0
        ds.DecayFactor = _ds(lam * dur_s / (1.0 - math.exp(-lam * dur_s)))


def _pet_orientation_codes(patient_position: str) -> tuple[DicomSequence, DicomSequence]:
    """NM/PET Patient Orientation codes (CID 19/20/21) for a PatientPosition like HFS."""
    pos = patient_position.upper()
    orientation = _code("102538003", "SCT", "recumbent")
    modifier = {
        "S": ("40199007", "supine"),
        "P": ("1240000", "prone"),
        "L": ("102535000", "left lateral decubitus"),
        "R": ("102536004", "right lateral decubitus"),
    }
    key = pos[-1:] if pos[-2:] not in ("DL", "DR") else pos[-1]
    if key in modifier:
        orientation.PatientOrientationModifierCodeSequence = DicomSequence(
            [_code(modifier[key][0], "SCT", modifier[key][1])]
        )
    gantry = (
        _code("102541007", "SCT", "feet-first")
        if pos.startswith("FF")
        else _code("102540008", "SCT", "headfirst")
    )
    return DicomSequence([orientation]), DicomSequence([gantry])


def _add_enhanced_mr_image(ds: Dataset, spec: SeriesSpec) -> None:
    """Enhanced MR Image and MR Pulse Sequence modules (the image-level MR facts)."""
    ds.ResonantNucleus = "1H"
    ds.KSpaceFiltering = "NONE"
    ds.MagneticFieldStrength = _ds(spec.magnetic_field_strength_t)
    ds.ApplicableSafetyStandardAgency = "IEC"
    ds.ImageComments = "guideplan synthetic phantom"
    ds.ComplexImageComponent = "MAGNITUDE"
    ds.AcquisitionContrast = "T1"
    # MR Pulse Sequence
    ds.PulseSequenceName = "guideplan"
    ds.MRAcquisitionType = spec.mr_acquisition_type
    ds.EchoPulseSequence = "GRADIENT"
    ds.MultiPlanarExcitation = "NO"
    ds.PhaseContrast = "NO"
    ds.TimeOfFlightContrast = "NO"
    ds.SteadyStatePulseSequence = "NONE"
    ds.EchoPlanarPulseSequence = "NO"
    ds.SaturationRecovery = "NO"
    ds.SpectrallySelectedSuppression = "NONE"
    ds.OversamplingPhase = "NONE"
    ds.GeometryOfKSpaceTraversal = "RECTILINEAR"
    ds.RectilinearPhaseEncodeReordering = "LINEAR"
    ds.SegmentedKSpaceTraversal = "SINGLE"
    ds.CoverageOfKSpace = "FULL"
    ds.NumberOfKSpaceTrajectories = 1


def _add_enhanced_ct_shared(
    shared: Dataset, spec: SeriesSpec, rows: int, cols: int, sx: float, sy: float
) -> None:
    """CT functional groups that hold for every frame of an original acquisition."""
    image_type = _enhanced_image_type(spec.resolved_image_type())
    shared.CTImageFrameTypeSequence = DicomSequence(
        [
            _item(
                FrameType=list(image_type),
                PixelPresentation="MONOCHROME",
                VolumetricProperties="VOLUME",
                VolumeBasedCalculationTechnique="NONE",
            )
        ]
    )
    shared.CTAcquisitionTypeSequence = DicomSequence(
        [_item(AcquisitionType="SPIRAL", ConstantVolumeFlag="NO", FluoroscopyFlag="NO")]
    )
    shared.CTAcquisitionDetailsSequence = DicomSequence(
        [
            _item(
                DataCollectionDiameter=_ds(500.0),
                GantryDetectorTilt=_ds(0.0),
                TableHeight=_ds(150.0),
                RotationDirection="CW",
                RevolutionTime=_ds(0.5),
                SingleCollimationWidth=_ds(0.625),
                TotalCollimationWidth=_ds(40.0),
            )
        ]
    )
    shared.CTTableDynamicsSequence = DicomSequence(
        [_item(TableSpeed=_ds(80.0), TableFeedPerRotation=_ds(40.0), SpiralPitchFactor=_ds(1.0))]
    )
    shared.CTGeometrySequence = DicomSequence(
        [
            _item(
                DistanceSourceToDetector=_ds(1040.0),
                DistanceSourceToDataCollectionCenter=_ds(570.0),
            )
        ]
    )
    shared.CTReconstructionSequence = DicomSequence(
        [
            _item(
                ReconstructionAlgorithm="FILTER_BACK_PROJ",
                ConvolutionKernel=spec.convolution_kernel,
                ConvolutionKernelGroup="SOFT_TISSUE",
                ReconstructionDiameter=_ds(max(rows * sy, cols * sx)),
                ReconstructionPixelSpacing=[_ds(sy), _ds(sx)],
                ReconstructionAngle=_ds(360.0),
                ImageFilter="NONE",
            )
        ]
    )
    shared.CTExposureSequence = DicomSequence(
        [
            _item(
                ExposureTimeInms=_ds(500.0),
                XRayTubeCurrentInmA=_ds(200.0),
                ExposureInmAs=_ds(100.0),
                ExposureModulationType="NONE",
                CTDIvol=_ds(10.0),
                CTDIPhantomTypeCodeSequence=DicomSequence(
                    [_code("113691", "DCM", "IEC Body Dosimetry Phantom")]
                ),
            )
        ]
    )
    shared.CTXRayDetailsSequence = DicomSequence(
        [
            _item(
                KVP=_ds(spec.kvp),
                FocalSpots=[_ds(0.7)],
                FilterType="BODY",
                FilterMaterial="ALUMINUM",
            )
        ]
    )
    shared.IrradiationEventIdentificationSequence = DicomSequence(
        [_item(IrradiationEventUID=_uid(spec.seed, spec.resolved_series_uid(), "irradiation"))]
    )


def _add_enhanced_mr_shared(shared: Dataset, spec: SeriesSpec, rows: int, cols: int) -> None:
    """MR functional groups that hold for every frame of an original acquisition."""
    image_type = _enhanced_image_type(spec.resolved_image_type())
    shared.MRImageFrameTypeSequence = DicomSequence(
        [
            _item(
                FrameType=list(image_type),
                PixelPresentation="MONOCHROME",
                VolumetricProperties="VOLUME",
                VolumeBasedCalculationTechnique="NONE",
                ComplexImageComponent="MAGNITUDE",
                AcquisitionContrast="T1",
            )
        ]
    )
    shared.MRTimingAndRelatedParametersSequence = DicomSequence(
        [
            _item(
                RepetitionTime=_ds(spec.repetition_time_ms),
                FlipAngle=_ds(spec.flip_angle_deg),
                EchoTrainLength=spec.echo_train_length,
                RFEchoTrainLength=0,
                GradientEchoTrainLength=spec.echo_train_length,
                SpecificAbsorptionRateSequence=DicomSequence(
                    [
                        _item(
                            SpecificAbsorptionRateDefinition="IEC_WHOLE_BODY",
                            SpecificAbsorptionRateValue=0.5,
                        )
                    ]
                ),
                GradientOutputType="DB_DT",
                GradientOutput=20.0,
                OperatingModeSequence=DicomSequence(
                    [_item(OperatingModeType="STATIC FIELD", OperatingMode="IEC_NORMAL")]
                ),
            )
        ]
    )
    shared.MRFOVGeometrySequence = DicomSequence(
        [
            _item(
                InPlanePhaseEncodingDirection="ROW",
                MRAcquisitionFrequencyEncodingSteps=cols,
                MRAcquisitionPhaseEncodingStepsInPlane=rows,
                MRAcquisitionPhaseEncodingStepsOutOfPlane=1,
                PercentSampling=_ds(100.0),
                PercentPhaseFieldOfView=_ds(100.0),
            )
        ]
    )
    shared.MREchoSequence = DicomSequence([_item(EffectiveEchoTime=_ds(spec.echo_time_ms))])
    shared.MRModifierSequence = DicomSequence(
        [
            _item(
                InversionRecovery="NO",
                FlowCompensation="NONE",
                Spoiling="RF",
                T2Preparation="NO",
                SpectrallySelectedExcitation="NONE",
                SpatialPresaturation="NONE",
                PartialFourier="NO",
                ParallelAcquisition="NO",
            )
        ]
    )
    shared.MRImagingModifierSequence = DicomSequence(
        [
            _item(
                MagnetizationTransfer="NONE",
                BloodSignalNulling="NO",
                Tagging="NONE",
                TransmitterFrequency=_ds(spec.imaging_frequency_mhz),
                PixelBandwidth=_ds(200.0),
            )
        ]
    )
    shared.MRReceiveCoilSequence = DicomSequence(
        [
            _item(
                ReceiveCoilName="BODY",
                ReceiveCoilManufacturerName=spec.manufacturer,
                ReceiveCoilType="BODY",
                QuadratureReceiveCoil="NO",
            )
        ]
    )
    shared.MRTransmitCoilSequence = DicomSequence(
        [
            _item(
                TransmitCoilName="BODY",
                TransmitCoilManufacturerName=spec.manufacturer,
                TransmitCoilType="BODY",
            )
        ]
    )
    shared.MRAveragesSequence = DicomSequence([_item(NumberOfAverages=_ds(1.0))])


def _pixel_value_transformation(modality: str, slope: float, intercept: float) -> Dataset:
    return _item(
        RescaleIntercept=_ds(intercept),
        RescaleSlope=_ds(slope),
        RescaleType="HU" if modality == "CT" else "US",
    )


def _frame_anatomy(spec: SeriesSpec) -> Dataset:
    code, meaning = spec.anatomic_region
    return _item(
        AnatomicRegionSequence=DicomSequence([_code(code, "SCT", meaning)]), FrameLaterality="U"
    )


def _frame_center(
    pos: np.ndarray,
    row_c: np.ndarray,
    col_c: np.ndarray,
    rows: int,
    cols: int,
    sx: float,
    sy: float,
) -> np.ndarray:
    return pos + row_c * sx * (cols - 1) / 2 + col_c * sy * (rows - 1) / 2


def _enhanced_image_type(image_type: Sequence[str]) -> tuple[str, str, str, str]:
    """Enhanced IODs need four values; the fourth (derived pixel contrast) is NONE."""
    vals = [*image_type, "", "", ""][:3]
    vals[0] = vals[0] or "ORIGINAL"
    vals[1] = vals[1] or "PRIMARY"
    # Enhanced CT/MR image flavours have no AXIAL/OTHER; a stack of slices is a VOLUME.
    vals[2] = "VOLUME" if vals[2] in ("", "AXIAL", "OTHER") else vals[2]
    return (vals[0], vals[1], vals[2], image_type[3] if len(image_type) > 3 else "NONE")


# ======================================================================================
# pixel data
# ======================================================================================


def _set_pixel_data(ds: Dataset, stored: np.ndarray, transfer_syntax: str) -> None:
    """Store (frames, rows, cols) integers in the requested transfer syntax."""
    ts = UID(transfer_syntax)
    n = stored.shape[0]
    if "NumberOfFrames" in ds or n > 1:
        ds.NumberOfFrames = n
    if ts in (ExplicitVRLittleEndian, ImplicitVRLittleEndian):
        raw = stored.astype(stored.dtype.newbyteorder("<")).tobytes()
        if len(raw) % 2:
            raw += b"\x00"
        ds.PixelData = raw
        ds["PixelData"].VR = "OW" if ds.BitsAllocated > 8 else "OB"
        ds.file_meta.TransferSyntaxUID = ts
        return
    if ts in _PYDICOM_ENCODED:
        if ts == JPEG2000Lossless and min(stored.shape[1:]) < 32:
            raise ValueError(
                "JPEG 2000 encoding (openjpeg, 6 resolution levels) needs frames "
                "of at least 32x32 pixels"
            )
        arr = stored if n > 1 else stored[0]
        ds.compress(ts, arr, encoding_plugin=_PYDICOM_ENCODED[ts], generate_instance_uid=False)
        return
    if ts == JPEGLosslessSV1:
        frames = [_encode_jpeg_lossless_sitk(f) for f in stored]
    elif ts == JPEGBaseline8Bit:
        frames = [_encode_jpeg_baseline_pillow(f) for f in stored]
        ds.LossyImageCompression = "01"
        ds.LossyImageCompressionMethod = "ISO_10918_1"
    else:
        raise ValueError(
            f"unsupported transfer syntax {ts} ({ts.name}); "
            f"use one of {[t.name for t in SUPPORTED_TRANSFER_SYNTAXES]}"
        )
    ds.PixelData = pydicom.encaps.encapsulate(frames)
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    ds.file_meta.TransferSyntaxUID = ts


def _encode_jpeg_lossless_sitk(frame: np.ndarray) -> bytes:
    """JPEG lossless (process 14, SV1) of one frame, encoded by GDCM through SimpleITK.

    pydicom has no JPEG encoder; GDCM's "JPEG" compressor is exactly this syntax.
    """
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(np.ascontiguousarray(frame)[np.newaxis])
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "frame.dcm"
        writer = sitk.ImageFileWriter()
        writer.SetFileName(str(path))
        writer.UseCompressionOn()
        writer.SetCompressor("JPEG")
        writer.KeepOriginalImageUIDOn()
        writer.Execute(image)
        encoded = pydicom.dcmread(path)
    if encoded.file_meta.TransferSyntaxUID != JPEGLosslessSV1:
        raise RuntimeError("SimpleITK/GDCM did not produce JPEG lossless SV1")
    return next(pydicom.encaps.generate_frames(encoded.PixelData, number_of_frames=1))


def _encode_jpeg_baseline_pillow(frame: np.ndarray) -> bytes:
    """Lossy 8-bit JPEG baseline of one frame (Pillow); for decoder tests only."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(frame.astype(np.uint8))).save(
        buf, format="JPEG", quality=90
    )
    return buf.getvalue()


def _stored_range(pixel_representation: int, bits_stored: int) -> tuple[int, int]:
    if pixel_representation:
        return -(2 ** (bits_stored - 1)), 2 ** (bits_stored - 1) - 1
    return 0, 2**bits_stored - 1


def _stored_dtype(pixel_representation: int, bits_stored: int) -> np.dtype:
    if bits_stored <= 8:
        return np.dtype(np.int8 if pixel_representation else np.uint8)
    return np.dtype(np.int16 if pixel_representation else np.uint16)


# ======================================================================================
# small helpers
# ======================================================================================


def _save(ds: Dataset, path: Path) -> None:
    implicit = UID(ds.file_meta.TransferSyntaxUID) == ImplicitVRLittleEndian
    ds.save_as(path, implicit_vr=implicit, little_endian=True, enforce_file_format=True)


def _uid(*parts: str) -> str:
    return str(generate_uid(entropy_srcs=list(parts)))


def _item(**attrs: object) -> Dataset:
    item = Dataset()
    _put(item, **attrs)
    return item


def _put(ds: Dataset, **attrs: object) -> None:
    """Set attributes, converting numbers to what each keyword's VR wants (DS text, FD float)."""
    for key, value in attrs.items():
        setattr(ds, key, _coerce(dictionary_VR(key), value))


def _coerce(vr: str, value: object) -> object:
    if isinstance(value, list | tuple):
        return [_coerce(vr, v) for v in value]
    if vr in ("FD", "FL") and isinstance(value, str | int | float):
        return float(value)
    if vr == "DS" and isinstance(value, int | float | np.floating):
        return _ds(float(value))
    return value


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    return _item(CodeValue=value, CodingSchemeDesignator=scheme, CodeMeaning=meaning)


def _ds(value: float) -> str:
    """Decimal String of at most 16 characters, with no '-0' and no exponent if avoidable."""
    v = float(value)
    if abs(v) < 5e-11:
        return "0"
    for digits in range(10, 0, -1):
        text = f"{v:.{digits}f}".rstrip("0").rstrip(".")
        if len(text) <= 16:
            return "0" if text in ("-0", "") else text
    text = f"{v:.8g}"
    return text if len(text) <= 16 else f"{v:.6g}"


def _check_cosines(row: Sequence[float], col: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    r = np.asarray(row, dtype=float)
    c = np.asarray(col, dtype=float)
    if r.shape != (3,) or c.shape != (3,):
        raise ValueError("row_cosine and col_cosine must be 3-vectors")
    if abs(np.linalg.norm(r) - 1) > 1e-4 or abs(np.linalg.norm(c) - 1) > 1e-4:
        raise ValueError("row_cosine and col_cosine must be unit vectors")
    if abs(r @ c) > 1e-4:
        raise ValueError("row_cosine and col_cosine must be orthogonal")
    return r, c


def _check_pixel_spacing(pixel_spacing: Sequence[float]) -> tuple[float, float]:
    sp = tuple(float(s) for s in pixel_spacing)
    if len(sp) != 2 or min(sp) <= 0:
        raise ValueError("pixel_spacing must be two positive numbers (row, column spacing)")
    return sp  # type: ignore[return-value]


def _per_slice(value: float | Sequence[float], n: int, name: str) -> np.ndarray:
    arr = np.asarray(value, dtype=float)
    if arr.ndim == 0:
        return np.full(n, float(arr))
    if arr.shape != (n,):
        raise ValueError(f"{name} needs a scalar or one value per slice ({n})")
    return arr


def _slopes(
    rescale_slope: float | Sequence[float] | str,
    frames: np.ndarray,
    intercepts: np.ndarray,
    pixel_representation: int,
    bits_stored: int,
) -> np.ndarray:
    """Per-slice slopes; "auto" picks, slice by slice, the slope that uses the whole stored
    range (what PET scanners do: Bq/ml values far beyond 16 bits keep their precision)."""
    n = len(frames)
    if isinstance(rescale_slope, str):
        if rescale_slope != "auto":
            raise ValueError('rescale_slope must be a number, one per slice, or "auto"')
        hi = _stored_range(pixel_representation, bits_stored)[1]
        peak = np.array(
            [
                np.max(np.abs(np.asarray(f, dtype=float) - b))
                for f, b in zip(frames, intercepts, strict=True)
            ]
        )
        return np.where(peak > 0, peak / hi, 1.0)
    slopes = _per_slice(rescale_slope, n, "rescale_slope")
    if np.any(slopes == 0):
        raise ValueError("rescale slope must not be zero")
    return slopes


def _slice_spacing(positions: np.ndarray, normal: np.ndarray) -> float:
    """Median distance between neighbouring slice planes (1.0 for a single slice)."""
    if len(positions) < 2:
        return 1.0
    dist = np.diff(np.sort(positions @ normal))
    dist = dist[dist > 1e-6]
    return float(np.median(dist)) if dist.size else 1.0


def _default_window(modality: str, frames: np.ndarray) -> tuple[float, float]:
    if modality == "CT":
        return (40.0, 400.0)
    lo, hi = float(np.min(frames)), float(np.max(frames))
    return ((lo + hi) / 2.0, max(hi - lo, 1.0))
