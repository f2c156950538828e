"""Synthetic DICOM series written from an analytic phantom, for the loader tests.

The phantom is a function of the LPS position only, so the right value of every voxel of
every acquisition is known: a "body" sphere with a linear ramp (so that any flip changes
values) and a few bright marker spheres at known LPS points. The marker on the patient's
left sits at +x; the one on the right-anterior-inferior side at -x.

Images are deliberately not square (rows != columns, row spacing != column spacing) so a
row/column swap cannot go unnoticed.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom

from guideplan.core import Volume
from guideplan.io.dicom_write import SeriesSpec, write_enhanced, write_slices

#: LPS centre of every synthetic acquisition (off the origin on purpose).
CENTER = np.array([12.0, -18.0, 40.0])
BODY_RADIUS_MM = 75.0

ROWS, COLS = 56, 64  # j, i
ROW_SPACING, COL_SPACING = 2.4, 2.6  # DICOM PixelSpacing order: along j, along i
N_SLICES = 30
SLICE_SPACING = 3.0

#: The values of air and of the body ramp's centre, per modality (CT in HU, PT in Bq/ml).
AIR = {"CT": -1000.0, "MR": 0.0, "PT": 0.0}
TISSUE = {"CT": 40.0, "MR": 400.0, "PT": 5000.0}
RAMP_GAIN = {"CT": 1.0, "MR": 1.0, "PT": 20.0}


@dataclass(frozen=True)
class Marker:
    """A bright sphere at a known LPS point; ``values`` per modality."""

    name: str
    offset: tuple[float, float, float]  # LPS mm from CENTER
    values: dict[str, float]
    radius_mm: float = 7.0

    @property
    def position(self) -> np.ndarray:
        return CENTER + np.asarray(self.offset, dtype=float)

    def value(self, modality: str) -> float:
        return self.values[modality]


MARKERS = (
    Marker("left", (30.0, 4.0, -6.0), {"CT": 1400.0, "MR": 2400.0, "PT": 40000.0}),
    Marker("posterior", (-6.0, 28.0, 5.0), {"CT": 1100.0, "MR": 2100.0, "PT": 30000.0}),
    Marker("superior", (8.0, -10.0, 27.0), {"CT": 800.0, "MR": 1800.0, "PT": 20000.0}),
    Marker(
        "right_anterior_inferior",
        (-22.0, -20.0, -18.0),
        {"CT": 1700.0, "MR": 2700.0, "PT": 50000.0},
    ),
)
MARKER_BY_NAME = {m.name: m for m in MARKERS}


def phantom(points: np.ndarray, modality: str = "CT") -> np.ndarray:
    """Real-world value at LPS ``points`` (..., 3): air, a ramped body, bright markers."""
    p = np.asarray(points, dtype=float)
    d = p - CENTER
    ramp = 0.6 * d[..., 0] - 0.4 * d[..., 1] + 0.9 * d[..., 2]
    inside = np.sum(d * d, axis=-1) <= BODY_RADIUS_MM**2
    out = np.where(inside, TISSUE[modality] + RAMP_GAIN[modality] * ramp, AIR[modality])
    for m in MARKERS:
        in_marker = np.sum((p - m.position) ** 2, axis=-1) <= m.radius_mm**2
        out = np.where(in_marker, m.value(modality), out)
    return out


# ======================================================================================
# geometry
# ======================================================================================


def _unit(v: Sequence[float]) -> np.ndarray:
    a = np.asarray(v, dtype=float)
    return a / np.linalg.norm(a)


@dataclass
class StackGeometry:
    """Where each slice of a single-frame series lies (DICOM conventions)."""

    row_cosine: np.ndarray  # direction of increasing column index i
    col_cosine: np.ndarray  # direction of increasing row index j
    positions: np.ndarray  # (n, 3) ImagePositionPatient
    rows: int = ROWS
    cols: int = COLS
    pixel_spacing: tuple[float, float] = (ROW_SPACING, COL_SPACING)  # (along j, along i)

    @property
    def normal(self) -> np.ndarray:
        return np.cross(self.row_cosine, self.col_cosine)

    def pixel_points(self, index: int) -> np.ndarray:
        """LPS position of every pixel of slice ``index``, shape (rows, cols, 3)."""
        sy, sx = self.pixel_spacing
        j = np.arange(self.rows, dtype=float)[:, None, None]
        i = np.arange(self.cols, dtype=float)[None, :, None]
        return self.positions[index] + i * sx * self.row_cosine + j * sy * self.col_cosine

    def sample(self, modality: str) -> np.ndarray:
        """(n, rows, cols) real-world values of the phantom on these slices."""
        return np.stack(
            [phantom(self.pixel_points(k), modality) for k in range(len(self.positions))]
        )

    def subset(self, keep: Sequence[int]) -> StackGeometry:
        return dataclasses.replace(self, positions=self.positions[list(keep)])


def stack_geometry(
    row_cosine: Sequence[float],
    col_cosine: Sequence[float],
    *,
    n: int = N_SLICES,
    slice_spacing: float = SLICE_SPACING,
    step: Sequence[float] | None = None,
    offsets_mm: Sequence[float] | None = None,
    rows: int = ROWS,
    cols: int = COLS,
    pixel_spacing: tuple[float, float] = (ROW_SPACING, COL_SPACING),
    center: np.ndarray = CENTER,
) -> StackGeometry:
    """A stack of slices centred on ``center``.

    Slices advance along ``step`` (default: the unit normal row x col) by ``offsets_mm``
    (default: ``k * slice_spacing``, centred).
    """
    r = _unit(row_cosine)
    c = _unit(col_cosine)
    s = _unit(step) if step is not None else np.cross(r, c)
    if offsets_mm is None:
        offsets = (np.arange(n) - (n - 1) / 2) * slice_spacing
    else:
        offsets = np.asarray(offsets_mm, dtype=float)
        offsets = offsets - (offsets[0] + offsets[-1]) / 2
    sy, sx = pixel_spacing
    corner = center - r * sx * (cols - 1) / 2 - c * sy * (rows - 1) / 2
    positions = corner + offsets[:, None] * s
    return StackGeometry(r, c, positions, rows, cols, pixel_spacing)


def rotation(axis: Sequence[float], angle_deg: float) -> np.ndarray:
    """Rotation matrix about ``axis`` (Rodrigues)."""
    a = _unit(axis)
    t = math.radians(angle_deg)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + math.sin(t) * k + (1 - math.cos(t)) * (k @ k)


#: Image orientations (row cosine, column cosine) of the standard acquisitions.
AXIAL_HFS = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0))
AXIAL_FFS = ((-1.0, 0.0, 0.0), (0.0, 1.0, 0.0))
AXIAL_HFP = ((-1.0, 0.0, 0.0), (0.0, -1.0, 0.0))
SAGITTAL = ((0.0, 1.0, 0.0), (0.0, 0.0, -1.0))
CORONAL = ((1.0, 0.0, 0.0), (0.0, 0.0, -1.0))
_OBLIQUE_R = rotation((0, 1, 0), 20.0) @ rotation((1, 0, 0), 20.0)
OBLIQUE = (tuple(_OBLIQUE_R @ np.array(AXIAL_HFS[0])), tuple(_OBLIQUE_R @ np.array(AXIAL_HFS[1])))


def tilted_geometry(tilt_deg: float, **kw) -> StackGeometry:
    """Gantry-tilted axial stack: planes tilted about x, positions advancing along z only."""
    t = math.radians(tilt_deg)
    return stack_geometry(
        (1.0, 0.0, 0.0), (0.0, math.cos(t), -math.sin(t)), step=(0.0, 0.0, 1.0), **kw
    )


# ======================================================================================
# writing
# ======================================================================================


@dataclass
class WrittenSeries:
    """A series on disk plus the truth it was written from."""

    name: str
    folder: Path
    files: list[Path]
    spec: SeriesSpec
    geometry: StackGeometry | None
    frames: np.ndarray  # real-world values as handed to the writer, in file order
    modality: str
    notes: dict[str, object] = field(default_factory=dict)

    @property
    def series_uid(self) -> str:
        return self.spec.resolved_series_uid()


def spec_for(name: str, modality: str = "CT", **kw) -> SeriesSpec:
    """A SeriesSpec whose UIDs derive from the case name (distinct cases, distinct UIDs)."""
    kw.setdefault("series_description", name)
    return SeriesSpec(modality=modality, seed=f"guideplan-test-{name}", **kw)


def write_stack(
    folder: Path,
    name: str,
    geometry: StackGeometry,
    *,
    modality: str = "CT",
    spec: SeriesSpec | None = None,
    order: Sequence[int] | None = None,
    **kw,
) -> WrittenSeries:
    """Sample the phantom on ``geometry`` and write it (slices in ``order`` if given)."""
    spec = spec or spec_for(name, modality)
    frames = geometry.sample(modality)
    positions = geometry.positions
    if order is not None:
        frames = frames[list(order)]
        positions = positions[list(order)]
    kw.setdefault("rescale_intercept", -1024.0 if modality == "CT" else 0.0)
    kw.setdefault("pixel_representation", 0 if modality in ("CT", "MR") else 1)
    if modality == "CT":
        kw.setdefault("bits_stored", 12)
    if modality == "PT":
        kw.setdefault("rescale_slope", "auto")  # PET style: one slope per slice
    files = write_slices(
        folder,
        frames,
        positions,
        geometry.row_cosine,
        geometry.col_cosine,
        geometry.pixel_spacing,
        spec,
        **kw,
    )
    return WrittenSeries(name, folder, files, spec, geometry, frames, spec.modality)


def stored_real_values(files: Sequence[Path]) -> np.ndarray:
    """(n, rows, cols) real-world values of files, decoded by pydicom, in the given order."""
    out = []
    for f in files:
        ds = pydicom.dcmread(f)
        arr = ds.pixel_array.astype(float)
        out.append(
            arr * float(ds.get("RescaleSlope", 1.0)) + float(ds.get("RescaleIntercept", 0.0))
        )
    return np.stack(out)


def analytic_volume(
    modality: str = "CT",
    *,
    direction: np.ndarray | None = None,
    size: tuple[int, int, int] = (COLS, ROWS, N_SLICES),
    spacing: tuple[float, float, float] = (COL_SPACING, ROW_SPACING, SLICE_SPACING),
) -> Volume:
    """A Volume centred on CENTER whose voxels hold the phantom (rounded for CT/MR)."""
    d = np.eye(3) if direction is None else np.asarray(direction, dtype=float)
    half = (np.asarray(size, dtype=float) - 1) / 2 * np.asarray(spacing)
    origin = CENTER - d @ half
    vol = Volume(np.zeros(size[::-1]), spacing, origin, d)
    k, j, i = np.indices(vol.array.shape)
    pts = vol.index_to_physical(np.stack([i.ravel(), j.ravel(), k.ravel()], axis=1))
    values = phantom(pts, modality).reshape(vol.array.shape)
    if modality in ("CT", "MR"):
        values = np.rint(values)
    vol.array = values
    return vol


def write_enhanced_case(folder: Path, name: str, modality: str) -> tuple[Path, Volume]:
    vol = analytic_volume(modality, direction=np.column_stack([*OBLIQUE, np.cross(*OBLIQUE)]))
    kw = (
        {"rescale_intercept": -1024.0, "pixel_representation": 0}
        if modality == "CT"
        else {"pixel_representation": 0}
    )
    path = write_enhanced(vol, folder / "ENHANCED.dcm", spec_for(name, modality), **kw)
    return path, vol


def zip_folder(folder: Path, archive: Path, arc_prefix: str = "export/series") -> Path:
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(folder.rglob("*")):
            if f.is_file():
                zf.write(f, f"{arc_prefix}/{f.relative_to(folder).as_posix()}")
    return archive


def write_dicomdir(files: Sequence[Path], out_dir: Path) -> Path:
    """Copy ``files`` into a DICOM File-set (IHE PDI style names) with a DICOMDIR."""
    from pydicom.fileset import FileSet

    fs = FileSet()
    for f in files:
        fs.add(f)
    out_dir.mkdir(parents=True, exist_ok=True)
    fs.write(out_dir)
    return out_dir / "DICOMDIR"


def copy_files(files: Sequence[Path], folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for f in files:
        dst = folder / f.name
        shutil.copy2(f, dst)
        out.append(dst)
    return out


def suv_bw_factor(
    weight_kg: float, dose_bq: float, half_life_s: float, injection_hhmmss: str, series_hhmmss: str
) -> float:
    """SUVbw = Bq/ml * weight_g / (dose decayed to the series start), by hand."""

    def seconds(t: str) -> float:
        return int(t[0:2]) * 3600 + int(t[2:4]) * 60 + float(t[4:])

    elapsed = seconds(series_hhmmss) - seconds(injection_hhmmss)
    decayed = dose_bq * 2.0 ** (-elapsed / half_life_s)
    return weight_kg * 1000.0 / decayed


# ======================================================================================
# the cases
# ======================================================================================

#: name -> builder(folder) -> WrittenSeries. Each writes exactly one series in ``folder``.
CaseBuilder = Callable[[Path], WrittenSeries]
CASES: dict[str, CaseBuilder] = {}


def case(name: str) -> Callable[[CaseBuilder], CaseBuilder]:
    def register(fn: CaseBuilder) -> CaseBuilder:
        CASES[name] = fn
        return fn

    return register


@case("axial_hfs")
def _axial_hfs(folder: Path) -> WrittenSeries:
    return write_stack(folder, "axial_hfs", stack_geometry(*AXIAL_HFS))


@case("axial_ffs")
def _axial_ffs(folder: Path) -> WrittenSeries:
    spec = spec_for("axial_ffs", patient_position="FFS")
    return write_stack(folder, "axial_ffs", stack_geometry(*AXIAL_FFS), spec=spec)


@case("axial_hfp")
def _axial_hfp(folder: Path) -> WrittenSeries:
    spec = spec_for("axial_hfp", patient_position="HFP")
    return write_stack(folder, "axial_hfp", stack_geometry(*AXIAL_HFP), spec=spec)


@case("oblique")
def _oblique(folder: Path) -> WrittenSeries:
    return write_stack(folder, "oblique", stack_geometry(*OBLIQUE))


@case("sagittal")
def _sagittal(folder: Path) -> WrittenSeries:
    return write_stack(folder, "sagittal", stack_geometry(*SAGITTAL))


@case("coronal")
def _coronal(folder: Path) -> WrittenSeries:
    return write_stack(folder, "coronal", stack_geometry(*CORONAL))


@case("decreasing_z")
def _decreasing_z(folder: Path) -> WrittenSeries:
    order = list(range(N_SLICES))[::-1]  # IM00001 is the most superior slice
    return write_stack(folder, "decreasing_z", stack_geometry(*AXIAL_HFS), order=order)


@case("shuffled")
def _shuffled(folder: Path) -> WrittenSeries:
    rng = np.random.default_rng(20260101)
    order = rng.permutation(N_SLICES)
    names = [f"{rng.integers(0, 16**8):08x}.dcm" for _ in range(N_SLICES)]
    wrong_numbers = [int(v) for v in rng.permutation(N_SLICES) + 1]  # unrelated to position
    return write_stack(
        folder,
        "shuffled",
        stack_geometry(*AXIAL_HFS),
        order=order,
        file_names=names,
        instance_numbers=wrong_numbers,
    )


@case("tilt")
def _tilt(folder: Path) -> WrittenSeries:
    s = write_stack(folder, "tilt", tilted_geometry(15.0), gantry_tilt_deg=15.0)
    s.notes["tilt_deg"] = 15.0
    return s


@case("gap")
def _gap(folder: Path) -> WrittenSeries:
    keep = [k for k in range(N_SLICES) if k not in (14, 15)]  # two missing slices
    s = write_stack(
        folder, "gap", stack_geometry(*AXIAL_HFS).subset(keep), slice_thickness=SLICE_SPACING
    )
    s.notes["gap_between"] = (13, 16)  # original indices on either side of the gap
    return s


@case("irregular")
def _irregular(folder: Path) -> WrittenSeries:
    jitter = np.random.default_rng(7).uniform(-0.6, 0.6, N_SLICES)
    jitter[[0, -1]] = 0.0
    offsets = np.arange(N_SLICES) * SLICE_SPACING + jitter
    geo = stack_geometry(*AXIAL_HFS, offsets_mm=offsets)
    return write_stack(folder, "irregular", geo, slice_thickness=SLICE_SPACING)


@case("duplicates")
def _duplicates(folder: Path) -> WrittenSeries:
    geo = stack_geometry(*AXIAL_HFS)
    order = [*range(N_SLICES), 10]  # slice 10 written twice (another file, another UID)
    s = write_stack(folder, "duplicates", geo, order=order)
    s.notes["unique_slices"] = N_SLICES
    return s


@case("rescale_per_slice")
def _rescale_per_slice(folder: Path) -> WrittenSeries:
    slopes = np.array([1.0, 2.0, 1.0, 4.0, 2.0] * (N_SLICES // 5))
    intercepts = np.array([-1024.0, -1000.0, -2048.0, -512.0, -1500.0, -1024.0] * 5)
    return write_stack(
        folder,
        "rescale_per_slice",
        stack_geometry(*AXIAL_HFS),
        rescale_slope=slopes,
        rescale_intercept=intercepts,
        pixel_representation=1,
        bits_stored=16,
    )


@case("unsigned_intercept")
def _unsigned(folder: Path) -> WrittenSeries:
    return write_stack(
        folder,
        "unsigned_intercept",
        stack_geometry(*AXIAL_HFS),
        rescale_intercept=-1024.0,
        pixel_representation=0,
        bits_stored=12,
    )


@case("signed")
def _signed(folder: Path) -> WrittenSeries:
    return write_stack(
        folder,
        "signed",
        stack_geometry(*AXIAL_HFS),
        rescale_intercept=0.0,
        pixel_representation=1,
        bits_stored=16,
    )


def _compressed(ts: str) -> CaseBuilder:
    def build(folder: Path) -> WrittenSeries:
        name = f"ts_{pydicom.uid.UID(ts).keyword}"
        spec = spec_for(name, transfer_syntax=ts)
        return write_stack(folder, name, stack_geometry(*AXIAL_HFS), spec=spec)

    return build


for _ts in (
    pydicom.uid.ImplicitVRLittleEndian,
    pydicom.uid.RLELossless,
    pydicom.uid.JPEGLSLossless,
    pydicom.uid.JPEG2000Lossless,
    pydicom.uid.JPEGLosslessSV1,
):
    CASES[f"ts_{pydicom.uid.UID(_ts).keyword}"] = _compressed(_ts)


@case("mr")
def _mr(folder: Path) -> WrittenSeries:
    return write_stack(folder, "mr", stack_geometry(*SAGITTAL), modality="MR")


PET_WEIGHT_KG = 75.0
PET_DOSE_BQ = 370e6
PET_HALF_LIFE_S = 6586.2
PET_INJECTION = "080000"
PET_SERIES_TIME = "093000"


@case("pet_suv")
def _pet_suv(folder: Path) -> WrittenSeries:
    spec = spec_for(
        "pet_suv",
        "PT",
        patient_weight_kg=PET_WEIGHT_KG,
        radionuclide_total_dose_bq=PET_DOSE_BQ,
        radionuclide_half_life_s=PET_HALF_LIFE_S,
        radiopharmaceutical_start_time=PET_INJECTION,
        series_time=PET_SERIES_TIME,
        units="BQML",
        decay_correction="START",
    )
    return write_stack(
        folder, "pet_suv", stack_geometry(*AXIAL_HFS, n=24), modality="PT", spec=spec
    )


@case("pet_no_weight")
def _pet_no_weight(folder: Path) -> WrittenSeries:
    spec = spec_for("pet_no_weight", "PT", patient_weight_kg=None)
    return write_stack(
        folder, "pet_no_weight", stack_geometry(*AXIAL_HFS, n=24), modality="PT", spec=spec
    )


def write_localizer(
    folder: Path,
    study: SeriesSpec,
    *,
    series_uid: str | None = None,
    n: int = 2,
    name: str = "localizer",
) -> WrittenSeries:
    """1-3 scout images (ImageType LOCALIZER) in ``study``: coronal, sagittal, axial.

    With ``series_uid`` set to a CT's series UID, the scouts hide inside that series (as
    some scanners do); otherwise they form their own series (number 900).
    """
    orientations = [CORONAL, SAGITTAL, AXIAL_HFS][:n]
    spec = dataclasses.replace(
        study,
        series_number=900,
        series_description="Scout",
        series_uid=series_uid,
        image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"),
        seed=f"{study.seed}-{name}",
        study_uid=study.resolved_study_uid(),
        frame_of_reference_uid=study.resolved_frame_of_reference_uid(),
    )
    files = []
    frames = []
    for idx, (row, col) in enumerate(orientations):
        geo = stack_geometry(row, col, n=1, rows=64, cols=64, pixel_spacing=(3.0, 3.0))
        f = geo.sample("CT")
        frames.append(f[0])
        files += write_slices(
            folder,
            f,
            geo.positions,
            geo.row_cosine,
            geo.col_cosine,
            geo.pixel_spacing,
            spec,
            rescale_intercept=-1024.0,
            pixel_representation=0,
            bits_stored=12,
            file_names=[f"LOC{idx + 1}.dcm"],
            instance_numbers=[idx + 1],
        )
    return WrittenSeries(name, folder, files, spec, None, np.stack(frames), "CT")
