"""Read one DICOM file's header into the few fields volume building needs.

Each file is parsed once, with large values (pixel data) deferred: the pixel data's byte
offset is kept so that uncompressed frames can later be read straight into a
preallocated array. Enhanced multi-frame files yield one :class:`FrameHeader` per frame.

A file that is not usable yields a :class:`SkippedFile` with the reason, never an
exception: a scan must never stop at one bad file.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID

from guideplan.io import zip_archives
from guideplan.io.fast_header import (
    CHARSETS,
    FastHeader,
    encapsulated_complete,
    read_fast_header,
)
from guideplan.io.file_kinds import (
    BoundedReader,
    HeaderTooLargeError,
    NotRegularFileError,
    open_regular,
    plausible_dicom_start,
)

#: SOP classes whose instances are image slices we can stack into volumes.
VOLUME_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.2": "CT Image",
    "1.2.840.10008.5.1.4.1.1.2.1": "Enhanced CT Image",
    "1.2.840.10008.5.1.4.1.1.2.2": "Legacy Converted Enhanced CT Image",
    "1.2.840.10008.5.1.4.1.1.4": "MR Image",
    "1.2.840.10008.5.1.4.1.1.4.1": "Enhanced MR Image",
    "1.2.840.10008.5.1.4.1.1.4.4": "Legacy Converted Enhanced MR Image",
    "1.2.840.10008.5.1.4.1.1.128": "PET Image",
    "1.2.840.10008.5.1.4.1.1.130": "Enhanced PET Image",
    "1.2.840.10008.5.1.4.1.1.128.1": "Legacy Converted Enhanced PET Image",
    "1.2.840.10008.5.1.4.1.1.7": "Secondary Capture Image",
    "1.2.840.10008.5.1.4.1.1.20": "Nuclear Medicine Image",
}

MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"

UNCOMPRESSED_SYNTAXES = {
    "1.2.840.10008.1.2",  # Implicit VR Little Endian
    "1.2.840.10008.1.2.1",  # Explicit VR Little Endian
    "1.2.840.10008.1.2.2",  # Explicit VR Big Endian (retired)
}


@dataclass(frozen=True)
class FileRef:
    """A file on disk, or a member of a zip archive."""

    path: str
    member: str | None = None

    def __str__(self) -> str:
        return f"{self.path}!{self.member}" if self.member else self.path

    def open(self) -> BinaryIO:
        """The file for reading; a zip member is streamed, never read whole.

        Refuses what is not a regular file (a FIFO would block the open for ever, a
        device would never end): :class:`NotRegularFileError`.
        """
        if self.member is None:
            return open_regular(self.path)
        return zip_archives.open_member(self.path, self.member)

    def size(self) -> int:
        if self.member is None:
            return Path(self.path).stat().st_size
        return zip_archives.member_size(self.path, self.member)


@dataclass(frozen=True)
class SkippedFile:
    path: str
    reason: str
    #: Set when the file belongs to an image series but is damaged (no or truncated
    #: pixel data): loading that series must fail loudly rather than interpolate over it.
    series_uid: str = ""


@dataclass
class PetInfo:
    """What SUV (body weight) needs; all optional because scanners omit them."""

    units: str = ""
    decay_correction: str = ""
    patient_weight_kg: float | None = None
    total_dose_bq: float | None = None
    half_life_s: float | None = None
    injection_datetime: str | None = None  # DICOM DT or TM, as found
    series_datetime: str | None = None
    acquisition_datetime: str | None = None
    corrected_image: tuple[str, ...] = ()


@dataclass
class FrameHeader:
    """One 2D frame: a single-frame file, or one frame of a multi-frame file."""

    ref: FileRef
    frame_index: int  # 0 for single-frame files
    n_frames_in_file: int
    sop_class_uid: str
    sop_instance_uid: str
    series_uid: str
    study_uid: str
    frame_of_reference_uid: str
    modality: str
    image_type: tuple[str, ...]
    rows: int
    columns: int
    position: np.ndarray | None  # ImagePositionPatient, LPS mm
    orientation: np.ndarray | None  # 6 cosines
    pixel_spacing: tuple[float, float] | None  # (row spacing, column spacing)
    slice_thickness: float | None
    rescale_slope: float
    rescale_intercept: float
    bits_allocated: int
    bits_stored: int
    pixel_representation: int
    samples_per_pixel: int
    photometric: str
    transfer_syntax: str
    is_little_endian: bool
    pixel_offset: int | None  # byte offset of the pixel data value in the file (native only)
    pixel_length: int | None  # declared byte length (None if encapsulated)
    instance_number: int | None
    acquisition_number: int | None
    gantry_tilt_deg: float | None
    series_description: str
    series_number: int | None
    patient_name: str
    patient_id: str
    patient_position: str
    study_date: str
    pet: PetInfo | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_localizer(self) -> bool:
        return any(t in ("LOCALIZER", "SCOUT", "TOPOGRAM") for t in self.image_type)

    @property
    def is_encapsulated(self) -> bool:
        return self.transfer_syntax not in UNCOMPRESSED_SYNTAXES

    @property
    def frame_bytes(self) -> int:
        return self.rows * self.columns * self.samples_per_pixel * self.bits_allocated // 8

    @property
    def path(self) -> str:
        return str(self.ref)


#: The most a pydicom parse may read of one file's header (values over 1 KB are seeked
#: past, not read): a file with the DICM preamble, and one without (a forced parse).
HEADER_READ_LIMIT = 64 << 20
FORCED_READ_LIMIT = 1 << 20


def read_headers(ref: FileRef) -> list[FrameHeader] | SkippedFile:
    """Parse one file; return its frames, or why it was skipped."""
    try:
        with ref.open() as fp:
            file_size = ref.size()
            fast = read_fast_header(fp, file_size)
            if fast is not None:
                frames = _frames_from_fast(fast, ref, file_size)
                if (
                    isinstance(frames, list)
                    and fast.pixel_length is None
                    and not encapsulated_complete(fp, fast.pixel_offset, file_size)
                ):
                    return SkippedFile(
                        str(ref),
                        "compressed pixel data truncated (the file was cut short; copy "
                        "it again from the source)",
                        frames[0].series_uid,
                    )
                if frames is not None:
                    return frames
            fp.seek(0)
            head = fp.read(132)
            if not plausible_dicom_start(head):
                return SkippedFile(str(ref), "not a DICOM file")
            fp.seek(0)
            ds = _dcmread(fp, str(ref), preamble=head[128:132] == b"DICM")
            if isinstance(ds, str):
                return SkippedFile(str(ref), ds)
            return _frames_from_dataset(ds, ref, file_size)
    except NotRegularFileError as exc:
        return SkippedFile(str(ref), exc.message)
    except HeaderTooLargeError as exc:
        return SkippedFile(str(ref), exc.message)
    except (OSError, zipfile.BadZipFile) as exc:
        return SkippedFile(str(ref), f"cannot read file: {exc}")
    except Exception as exc:  # a malformed header must not stop a scan
        return SkippedFile(str(ref), f"unreadable DICOM header ({type(exc).__name__}: {exc})")


def _dcmread(fp, name: str, preamble: bool) -> pydicom.Dataset | str:
    if preamble:
        try:
            return pydicom.dcmread(BoundedReader(fp, HEADER_READ_LIMIT, name), defer_size=1024)
        except InvalidDicomError:
            pass
    # Files without the 128-byte preamble exist (old ACR-NEMA style exports); accept them
    # only when they clearly carry an image instance, and read at most a few MiB of them.
    fp.seek(0)
    try:
        ds = pydicom.dcmread(
            BoundedReader(fp, FORCED_READ_LIMIT, name), defer_size=1024, force=True
        )
    except HeaderTooLargeError:
        raise
    except Exception:
        return "not a DICOM file"
    if "SOPInstanceUID" not in ds or "Rows" not in ds:
        return "not a DICOM file"
    return ds


def _frames_from_dataset(ds: pydicom.Dataset, ref: FileRef, file_size: int):
    meta = getattr(ds, "file_meta", None)
    ts = str(meta.get("TransferSyntaxUID", "1.2.840.10008.1.2")) if meta else "1.2.840.10008.1.2"
    media_sop = str(meta.get("MediaStorageSOPClassUID", "")) if meta else ""
    raw = ds.get_item(0x7FE00010, keep_deferred=True)
    pixel_offset = pixel_length = None
    if ts in UNCOMPRESSED_SYNTAXES:
        pixel_offset = getattr(raw, "value_tell", None)
        length = getattr(raw, "length", None)
        pixel_length = None if length in (None, 0xFFFFFFFF) else int(length)
    frames = _frames_from_values(
        _RawReader(ds), ref, file_size, media_sop, ts, pixel_offset, pixel_length, ds
    )
    offset = getattr(raw, "value_tell", None)
    if isinstance(frames, list) and ts not in UNCOMPRESSED_SYNTAXES and offset is not None:
        for f in frames:  # where frame_codec finds the fragments without pydicom
            f.extra["encapsulated_offset"] = int(offset)
    return frames


def _frames_from_fast(fast: FastHeader, ref: FileRef, file_size: int):
    """Frames from the fast reader, or None where pydicom must take over."""
    get = _FastReader(fast.values)
    charset = get.text(0x00080005)
    if charset not in CHARSETS:
        return None
    get.encoding = CHARSETS[charset]
    frames_value = get.integer(0x00280008)
    if get.has(0x52009230) or (frames_value or 1) > 1 or get.text(0x00080060) == "PT":
        return None
    ts = fast.transfer_syntax
    uncompressed = ts in UNCOMPRESSED_SYNTAXES
    frames = _frames_from_values(
        get,
        ref,
        file_size,
        fast.media_sop_class,
        ts,
        fast.pixel_offset if uncompressed else None,
        fast.pixel_length if uncompressed else None,
        None,
        has_pixels=fast.pixel_offset is not None,
    )
    if isinstance(frames, list) and not uncompressed:
        for f in frames:  # where frame_codec finds the fragments without pydicom
            f.extra["encapsulated_offset"] = fast.pixel_offset
    return frames


def _frames_from_values(
    get,
    ref: FileRef,
    file_size: int,
    media_sop: str,
    ts: str,
    pixel_offset: int | None,
    pixel_length: int | None,
    ds: pydicom.Dataset | None,
    has_pixels: bool | None = None,
):
    """FrameHeaders from attribute values, whichever reader produced them."""
    sop_class = get.text(0x00080016) or media_sop
    if sop_class == MEDIA_STORAGE_DIRECTORY or get.has(0x00041220):
        return SkippedFile(str(ref), "DICOMDIR index (the images it lists are scanned as files)")
    if sop_class and sop_class not in VOLUME_SOP_CLASSES:
        name = UID(sop_class).name if UID(sop_class).is_valid else sop_class
        return SkippedFile(str(ref), f"not an image slice ({name})")
    series_uid = get.text(0x0020000E)
    if not (get.has(0x7FE00010) if has_pixels is None else has_pixels):
        if get.has(0x7FE00008) or get.has(0x7FE00009):
            return SkippedFile(str(ref), "float pixel data is not supported", series_uid)
        return SkippedFile(str(ref), "no pixel data in the file", series_uid)

    samples = get.us(0x00280002, 1)
    if samples != 1:
        return SkippedFile(
            str(ref), f"colour image ({samples} samples per pixel) is not a volume slice"
        )
    rows = get.us(0x00280010, 0)
    columns = get.us(0x00280011, 0)
    if rows == 0 or columns == 0:
        return SkippedFile(str(ref), "image has zero rows or columns")
    n_frames = get.integer(0x00280008) or 1
    bits_allocated = get.us(0x00280100, 16)

    if pixel_offset is not None and pixel_length is not None:
        expected = rows * columns * bits_allocated // 8 * n_frames
        available = file_size - pixel_offset
        if pixel_length < expected or available < expected:
            have = min(pixel_length, available)
            return SkippedFile(
                str(ref),
                f"pixel data truncated: {have} of {expected} bytes present "
                "(the file was cut short; copy it again from the source)",
                series_uid,
            )

    modality = get.text(0x00080060)
    base = dict(
        ref=ref,
        n_frames_in_file=n_frames,
        sop_class_uid=sop_class,
        sop_instance_uid=get.text(0x00080018),
        series_uid=series_uid,
        study_uid=get.text(0x0020000D),
        frame_of_reference_uid=get.text(0x00200052),
        modality=modality,
        image_type=tuple(t.upper() for t in get.texts(0x00080008)),
        rows=rows,
        columns=columns,
        bits_allocated=bits_allocated,
        bits_stored=get.us(0x00280101, bits_allocated),
        pixel_representation=get.us(0x00280103, 0),
        samples_per_pixel=samples,
        photometric=get.text(0x00280004) or "MONOCHROME2",
        transfer_syntax=ts,
        is_little_endian=ts != "1.2.840.10008.1.2.2",
        pixel_offset=pixel_offset,
        pixel_length=pixel_length,
        instance_number=get.integer(0x00200013),
        acquisition_number=get.integer(0x00200012),
        gantry_tilt_deg=get.number(0x00181120),
        series_description=get.text(0x0008103E),
        series_number=get.integer(0x00200011),
        patient_name=get.text(0x00100010),
        patient_id=get.text(0x00100020),
        patient_position=get.text(0x00185100),
        study_date=get.text(0x00080020),
        pet=_pet_info(ds) if modality == "PT" and ds is not None else None,
    )

    if get.has(0x52009230) or n_frames > 1:
        assert ds is not None  # the fast reader leaves multi-frame files to pydicom
        return _enhanced_frames(ds, base, n_frames)

    slope = get.number(0x00281053)
    intercept = get.number(0x00281052)
    return [
        FrameHeader(
            frame_index=0,
            position=get.vector(0x00200032, 3),
            orientation=get.vector(0x00200037, 6),
            pixel_spacing=_positive_pair(get.vector(0x00280030, 2))
            or _positive_pair(get.vector(0x00181164, 2)),
            slice_thickness=get.number(0x00180050),
            rescale_slope=1.0 if slope in (None, 0.0) else slope,
            rescale_intercept=0.0 if intercept is None else intercept,
            **base,
        )
    ]


def _enhanced_frames(ds: pydicom.Dataset, base: dict, n_frames: int):
    """Frames of an enhanced (functional-group) multi-frame image."""
    shared = ds.get("SharedFunctionalGroupsSequence")
    shared_item = shared[0] if shared else pydicom.Dataset()
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame is None or len(per_frame) < n_frames:
        return SkippedFile(
            base["ref"].__str__(),
            "multi-frame image without per-frame positions (not an enhanced image): "
            "cannot place its frames in space",
        )
    frames = []
    for index in range(n_frames):
        item = per_frame[index]

        def pick(seq_name: str, attr: str, item=item):
            for group in (item, shared_item):
                seq = group.get(seq_name)
                if seq and attr in seq[0]:
                    return seq[0].get(attr)
            return ds.get(attr)

        slope = _float_or_none(pick("PixelValueTransformationSequence", "RescaleSlope"))
        intercept = _float_or_none(pick("PixelValueTransformationSequence", "RescaleIntercept"))
        measures = pick("PixelMeasuresSequence", "PixelSpacing")
        thickness = pick("PixelMeasuresSequence", "SliceThickness")
        frames.append(
            FrameHeader(
                frame_index=index,
                position=_vec(pick("PlanePositionSequence", "ImagePositionPatient"), 3),
                orientation=_vec(pick("PlaneOrientationSequence", "ImageOrientationPatient"), 6),
                pixel_spacing=_pair(measures),
                slice_thickness=_float_or_none(thickness),
                rescale_slope=1.0 if slope in (None, 0.0) else slope,
                rescale_intercept=0.0 if intercept is None else intercept,
                **base,
            )
        )
    return frames


def _pet_info(ds: pydicom.Dataset) -> PetInfo:
    info = PetInfo(
        units=str(ds.get("Units", "") or ""),
        decay_correction=str(ds.get("DecayCorrection", "") or ""),
        patient_weight_kg=_float_or_none(ds.get("PatientWeight")),
        corrected_image=tuple(str(v) for v in _as_list(ds.get("CorrectedImage", ()))),
        series_datetime=_join_dt(ds.get("SeriesDate"), ds.get("SeriesTime")),
        acquisition_datetime=_join_dt(ds.get("AcquisitionDate"), ds.get("AcquisitionTime")),
    )
    seq = ds.get("RadiopharmaceuticalInformationSequence")
    if seq:
        item = seq[0]
        info.total_dose_bq = _float_or_none(item.get("RadionuclideTotalDose"))
        info.half_life_s = _float_or_none(item.get("RadionuclideHalfLife"))
        start_dt = item.get("RadiopharmaceuticalStartDateTime")
        info.injection_datetime = (
            str(start_dt)
            if start_dt
            else _join_dt(ds.get("SeriesDate"), item.get("RadiopharmaceuticalStartTime"))
        )
    return info


def _join_dt(date, time) -> str | None:
    if not time:
        return None
    return f"{date or ''}{time}"


class _ValueReader:
    """Attribute values as the loader needs them, from raw text where possible.

    Converting values through pydicom costs more than parsing the whole header; the
    handful of string attributes volume building needs (UI, CS, LO, DS, IS, PN ...) are
    decoded here directly. Subclasses say where the raw value comes from.
    """

    encoding = "latin-1"

    def _raw(self, tag: int):  # bytes, an already converted value, or None
        raise NotImplementedError

    def has(self, tag: int) -> bool:
        raise NotImplementedError

    def us(self, tag: int, default: int) -> int:
        raise NotImplementedError

    def text(self, tag: int) -> str:
        value = self._raw(tag)
        if value is None:
            return ""
        if isinstance(value, bytes):
            return value.decode(self.encoding).strip(" \x00")
        return str(value).strip()

    def texts(self, tag: int) -> list[str]:
        value = self._raw(tag)
        if value is None:
            return []
        if isinstance(value, bytes):
            value = value.decode(self.encoding).strip(" \x00")
        if isinstance(value, str):
            return [v.strip() for v in value.split("\\")] if value else []
        return [str(v).strip() for v in _as_list(value)]

    def vector(self, tag: int, n: int) -> np.ndarray | None:
        return _vec(self.texts(tag) or None, n)

    def number(self, tag: int) -> float | None:
        items = self.texts(tag)
        return _float_or_none(items[0]) if items else None

    def integer(self, tag: int) -> int | None:
        value = self.number(tag)
        return None if value is None else int(value)


class _RawReader(_ValueReader):
    """Values from a pydicom dataset (deferred/raw elements read without conversion)."""

    def __init__(self, ds: pydicom.Dataset) -> None:
        self._ds = ds

    #: Free-text attributes decoded by pydicom with the file's character set.
    _TEXT_TAGS = frozenset({0x00100010, 0x00100020, 0x0008103E})

    def _raw(self, tag: int):
        if tag in self._TEXT_TAGS:
            return str(self._ds[tag].value) if tag in self._ds else None
        elem = self._ds.get_item(tag, keep_deferred=True)
        if elem is None:
            return None
        value = elem.value
        if isinstance(value, bytes):
            return value.decode("latin-1").strip(" \x00")
        return value

    def has(self, tag: int) -> bool:
        return tag in self._ds

    def us(self, tag: int, default: int) -> int:
        if tag not in self._ds:
            return default
        value = self._ds[tag].value
        return default if value in (None, "") else int(value)


class _FastReader(_ValueReader):
    """Values from :mod:`guideplan.io.fast_header` (raw bytes by tag)."""

    def __init__(self, values: dict[int, bytes]) -> None:
        self._values = values

    def _raw(self, tag: int):
        return self._values.get(tag)

    def has(self, tag: int) -> bool:
        return tag in self._values

    def us(self, tag: int, default: int) -> int:
        value = self._values.get(tag)
        if not value or len(value) < 2:
            return default
        return int.from_bytes(value[:2], "little")


def _pair(value) -> tuple[float, float] | None:
    return _positive_pair(_vec(value, 2))


def _positive_pair(v: np.ndarray | None) -> tuple[float, float] | None:
    if v is None or np.any(v <= 0):
        return None
    return float(v[0]), float(v[1])


def _vec(value, n: int) -> np.ndarray | None:
    if value is None:
        return None
    try:
        items = [float(x) for x in _as_list(value)]
    except (TypeError, ValueError):
        return None
    if len(items) != n or not np.all(np.isfinite(items)):
        return None
    return np.array(items, dtype=float)


def _as_list(value) -> list:
    if value is None:
        return []
    if isinstance(value, str | bytes):
        return [value]
    try:
        return list(value)
    except TypeError:
        return [value]


def _float_or_none(value) -> float | None:
    if value is None or value == "":
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if np.isfinite(out) else None


def _int_or_none(value) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
