"""Write the sample cases: DICOM series (JPEG-LS lossless), truth masks and descriptions.

Why: the program needs ready-to-open, realistic-looking cases whose answers are known
exactly (lesion position and volume, the true prior-to-planning transforms), for the
GUI demo, the tutorials and the end-to-end tests. Everything is deterministic: the
same call rewrites the same bytes.

Patient position: each series states its DICOM PatientPosition (HFS or HFP, see
cases.Acquisition). A prone series is written as a prone scanner writes it (axial rows
toward the patient's right, columns toward anterior), with the couch under the belly
and gravity-dependent details (gas) on the other side; the anatomy and so the truth
(masks on the planning-CT grid, centres in LPS) stay where they are in patient LPS.

Layout of one case::

    <out_dir>/<case>/ct/        planning CT (axial, non-contrast; supine or prone)
                     prior_ct/  earlier CT (contrast), other frame of reference
                     mr/        T1-like MR, other orientation, other frame of reference
                     truth/     lesion/bone/canal/body masks (.nrrd), truth.json
                     case.json, README.md
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from guideplan.core import Volume, geometry
from guideplan.core.errors import GuideplanError
from guideplan.samples import imaging
from guideplan.samples.anatomy import BONE_TISSUES, CANAL_TISSUES, Tissue
from guideplan.samples.cases import PHANTOM_NOTE, POSITIONS, Acquisition, CaseSpec, build_cases

ProgressFn = Callable[[float, str], None]

#: CT stored as unsigned 12-bit with intercept -1024 (the common scanner convention).
CT_INTERCEPT = -1024.0
CT_NOISE_HU = 7.0
MR_NOISE = 6.0
FORMAT_VERSION = 1


class SampleError(GuideplanError):
    title = "Cannot write sample data"


def generate_samples(
    out_dir: str | Path,
    cases: Sequence[str] | None = None,
    progress: ProgressFn | None = None,
    *,
    scale: float = 1.0,
) -> list[Path]:
    """Generate the sample cases into ``out_dir``; return the case folders.

    ``cases`` picks a subset by name (default: all). ``scale`` < 1 samples every grid
    more coarsely over the same field of view (fast variants for tests); 1.0 is the
    shipped data. ``progress(fraction, message)`` is called as work advances.
    """
    specs = build_cases()
    names = list(specs) if cases is None else list(cases)
    unknown = [n for n in names if n not in specs]
    if unknown:
        raise SampleError(
            f"Unknown sample case(s): {', '.join(unknown)}.",
            hint=f"Known cases: {', '.join(specs)}.",
        )
    if not 0.05 <= scale <= 1.0:
        raise SampleError(f"scale must be between 0.05 and 1, got {scale}.")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    done: list[Path] = []
    for idx, name in enumerate(names):
        sub = _sub_progress(progress, idx / len(names), (idx + 1) / len(names), name)
        done.append(_write_case(specs[name], out, scale, sub))
    _write_index(out, specs)
    if progress is not None:
        progress(1.0, "Sample cases written")
    return done


# --------------------------------------------------------------------------------------
# one case
# --------------------------------------------------------------------------------------


def _write_case(spec: CaseSpec, out: Path, scale: float, progress: ProgressFn | None) -> Path:
    final = out / spec.name
    if final.exists() and not (final / "case.json").exists() and any(final.iterdir()):
        raise SampleError(
            f"{final} exists and is not a guideplan sample case.",
            hint="Choose another output folder or remove it.",
        )
    tmp = out / f".{spec.name}.partial"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    t0 = time.perf_counter()
    lesion_c = np.asarray(spec.lesion.center, dtype=float)
    series_info: dict[str, dict] = {}
    transforms: dict[str, dict] = {}
    truth_extra: dict[str, object] = {}
    steps = len(spec.acquisitions())
    for n, acq in enumerate(spec.acquisitions()):
        _report(progress, n / (steps + 1), f"{acq.folder}: rendering")
        acq = _scaled(acq, scale)
        _check_position(acq)
        m2f = geometry.rigid_matrix(acq.rotation_deg, acq.translation_mm, lesion_c)
        anchor = lesion_c if acq.center_mm is None else np.asarray(acq.center_mm, float)
        center = geometry.apply_affine(m2f, anchor) + np.asarray(acq.center_offset_mm)
        grid = imaging.centred_grid(center, acq.direction_matrix(), acq.spacing, acq.size, m2f)
        phantom = spec.phantom(acq.lesion_scale, prone=acq.prone)
        seed = spec.seed * 100 + n
        if acq.modality == "CT":
            first = acq.folder == "ct"
            hu, labels, pre = imaging.ct_image(
                phantom,
                grid,
                contrast=acq.contrast,
                noise_hu=CT_NOISE_HU,
                seed=seed,
                keep_pre_lesion=first,
            )
            if first:
                truth_extra = _write_truth_masks(tmp / "truth", grid, labels, pre, hu)
            vol = Volume(
                np.clip(hu, -1024.0, 3071.0), grid.spacing, tuple(grid.origin), grid.direction
            )
            _report(progress, (n + 0.6) / (steps + 1), f"{acq.folder}: writing DICOM")
            _write_series(vol, tmp / acq.folder, spec, acq, rescale_intercept=CT_INTERCEPT)
        else:
            img = imaging.mr_image(
                phantom, grid, noise=MR_NOISE, seed=seed, sub_slices=3 if scale >= 0.5 else 1
            )
            vol = Volume(
                np.clip(img, 0.0, 4095.0), grid.spacing, tuple(grid.origin), grid.direction
            )
            _report(progress, (n + 0.6) / (steps + 1), f"{acq.folder}: writing DICOM")
            _write_series(vol, tmp / acq.folder, spec, acq, rescale_intercept=0.0)
        series_info[acq.folder] = _series_json(spec, acq, grid)
        if acq.folder != "ct":
            transforms[acq.folder] = _transform_json(acq, m2f, lesion_c)
    _report(progress, steps / (steps + 1), "truth and descriptions")
    _write_json(
        tmp / "truth" / "truth.json",
        _truth_json(spec, series_info, transforms, truth_extra, lesion_c),
    )
    _write_json(tmp / "case.json", _case_json(spec, series_info))
    (tmp / "README.md").write_text(_readme(spec, series_info, truth_extra), encoding="utf-8")
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)
    _report(progress, 1.0, f"done in {time.perf_counter() - t0:.1f} s")
    return final


def _check_position(acq: Acquisition) -> None:
    """An axial CT's image axes must be the ones a scanner writes for its position."""
    if acq.modality != "CT" or abs(acq.direction_matrix()[2, 2]) < 0.99:
        return
    expected = np.asarray(POSITIONS[acq.patient_position], dtype=float)
    if not np.allclose(acq.direction_matrix()[:, :2], expected[:, :2], atol=1e-6):
        raise SampleError(
            f"{acq.folder}: axial direction {acq.direction} does not match patient "
            f"position {acq.patient_position}.",
            hint="Use cases.POSITIONS[position] as the direction of an axial CT.",
        )


def _scaled(acq: Acquisition, scale: float) -> Acquisition:
    """Same field of view, fewer voxels (test variants)."""
    if scale == 1.0:
        return acq
    size = tuple(max(2, round(n * scale)) for n in acq.size)
    fov = np.asarray(acq.size) * np.asarray(acq.spacing)
    spacing = tuple(float(v) for v in fov / np.asarray(size))
    return replace(acq, size=size, spacing=spacing)  # type: ignore[arg-type]


def _write_series(
    vol: Volume, folder: Path, spec: CaseSpec, acq: Acquisition, rescale_intercept: float
) -> list[Path]:
    from pydicom.uid import JPEGLSLossless

    from guideplan.io.dicom_write import SeriesSpec, write_volume

    p = spec.patient
    n = vol.array.shape[0]
    series_seed = f"guideplan-sample/{spec.name}/{acq.folder}"
    extra = dict(acq.mr_sequence) if acq.modality == "MR" else {}
    sspec = SeriesSpec(
        modality=acq.modality,
        seed=series_seed,
        patient_name=p.name,
        patient_id=p.patient_id,
        patient_birth_date=p.birth_date,
        patient_sex=p.sex,
        patient_weight_kg=p.weight_kg,
        study_description=acq.study_description,
        series_description=acq.description,
        series_number=acq.series_number,
        study_date=acq.study_date,
        study_time=acq.study_time,
        accession_number=f"GP{spec.seed}{acq.series_number:02d}",
        patient_position=acq.patient_position,
        body_part_examined=_body_part(spec),
        manufacturer="guideplan synthetic",
        transfer_syntax=JPEGLSLossless,
        image_type=("ORIGINAL", "PRIMARY", "AXIAL" if acq.modality == "CT" else "OTHER"),
        window=(40.0, 400.0) if acq.modality == "CT" else (550.0, 1100.0),
        **extra,  # type: ignore[arg-type]
    )
    axial = acq.modality == "CT" and abs(vol.direction[2, 2]) > 0.99
    # Axial CT numbered head first, like a head-first scanner; others in k order.
    numbers = list(range(n, 0, -1)) if axial else list(range(1, n + 1))
    prefix = "CT" if acq.modality == "CT" else "MR"
    names = [f"{prefix}{num:04d}.dcm" for num in numbers]
    kw: dict[str, object] = {}
    if acq.modality == "CT":
        kw = {"rescale_intercept": rescale_intercept, "pixel_representation": 0, "bits_stored": 12}
    else:
        kw = {"pixel_representation": 0, "bits_stored": 12}
    return write_volume(vol, folder, sspec, instance_numbers=numbers, file_names=names, **kw)


def _body_part(spec: CaseSpec) -> str:
    if spec.level and spec.level.startswith("L"):
        return "LSPINE"
    if spec.level and spec.level.startswith("T"):
        return "TSPINE"
    return "PELVIS"


# --------------------------------------------------------------------------------------
# truth
# --------------------------------------------------------------------------------------


def _write_truth_masks(
    folder: Path,
    grid: imaging.SeriesGrid,
    labels: np.ndarray,
    pre: np.ndarray | None,
    hu: np.ndarray,
) -> dict[str, object]:
    """Masks on the planning-CT grid, and the numbers measured from them."""
    import SimpleITK as sitk

    folder.mkdir(parents=True, exist_ok=True)
    assert pre is not None
    lesion = labels == Tissue.LESION
    masks = {
        "lesion": lesion,
        # bone envelope before the lesion was painted: lesion-in-bone counts as bone,
        # the extra-osseous part of the lesion does not
        "bone": np.isin(pre, np.asarray(BONE_TISSUES, np.uint8)),
        "canal": np.isin(labels, np.asarray(CANAL_TISSUES, np.uint8)),
        "body": imaging.body_mask(labels),
    }
    images = {}
    for name, mask in masks.items():
        vol = Volume(mask.astype(np.uint8), grid.spacing, tuple(grid.origin), grid.direction)
        img = vol.to_sitk()
        images[name] = img
        sitk.WriteImage(img, str(folder / f"{name}.nrrd"), useCompression=True)
    voxel_ml = float(np.prod(grid.spacing)) / 1000.0
    vol = Volume(lesion.astype(np.uint8), grid.spacing, tuple(grid.origin), grid.direction)
    kji = np.argwhere(lesion)
    centroid = vol.index_to_physical(kji[:, ::-1].mean(axis=0)) if len(kji) else np.full(3, np.nan)
    extent = np.ptp(vol.index_to_physical(kji[:, ::-1]), axis=0) if len(kji) else np.zeros(3)
    out: dict[str, object] = {
        "lesion_voxels": int(lesion.sum()),
        "lesion_volume_ml": round(float(lesion.sum()) * voxel_ml, 3),
        "lesion_centroid_lps": _r(centroid),
        "lesion_extent_mm": _r(extent, 1),
        "lesion_to_skin_mm": _min_distance(images["body"], lesion, inside_positive=True),
        "lesion_to_canal_mm": _min_distance(images["canal"], lesion, inside_positive=False),
        "bone_volume_ml": round(float(masks["bone"].sum()) * voxel_ml, 1),
        "measured_hu": {
            "lesion_median": _median(hu, lesion),
            "bone_without_lesion_median": _median(hu, masks["bone"] & ~lesion),
            "canal_median": _median(hu, masks["canal"]),
            "fat_median": _median(hu, labels == Tissue.FAT),
            "muscle_median": _median(hu, labels == Tissue.MUSCLE),
        },
    }
    return out


def _min_distance(mask_img: object, lesion: np.ndarray, inside_positive: bool) -> float | None:
    """Smallest distance (mm) from the lesion to the surface of a mask (0 if touching)."""
    import SimpleITK as sitk

    if not lesion.any():
        return None
    dist = sitk.SignedMaurerDistanceMap(
        mask_img, insideIsPositive=inside_positive, squaredDistance=False, useImageSpacing=True
    )
    d = sitk.GetArrayViewFromImage(dist)[lesion]
    return round(max(float(d.min()), 0.0), 2)


def _median(img: np.ndarray, mask: np.ndarray) -> float | None:
    return round(float(np.median(img[mask])), 1) if mask.any() else None


def _series_json(spec: CaseSpec, acq: Acquisition, grid: imaging.SeriesGrid) -> dict:
    from guideplan.io.dicom_write import SeriesSpec

    s = SeriesSpec(
        seed=f"guideplan-sample/{spec.name}/{acq.folder}", series_number=acq.series_number
    )
    return {
        "folder": acq.folder,
        "modality": acq.modality,
        "description": acq.description,
        "study_date": acq.study_date,
        "series_uid": s.resolved_series_uid(),
        "study_uid": s.resolved_study_uid(),
        "frame_of_reference_uid": s.resolved_frame_of_reference_uid(),
        "size_ijk": list(grid.size),
        "spacing_mm": _r(grid.spacing, 4),
        "origin_lps": _r(grid.origin, 4),
        "direction": _r(grid.direction, 6),
        "orientation": geometry.orientation_code(grid.direction),
        "contrast": "portal venous" if acq.contrast else "none",
        # stated when not the default (HFS), so supine cases keep their files
        **({"patient_position": acq.patient_position} if acq.prone else {}),
    }


def _transform_json(acq: Acquisition, m2f: np.ndarray, lesion_c: np.ndarray) -> dict:
    return {
        "fixed": "ct",
        "moving": acq.folder,
        "fixed_to_moving": _r(m2f, 8),
        "moving_to_fixed": _r(np.linalg.inv(m2f), 8),
        "rotation_deg": list(acq.rotation_deg),
        "translation_mm": list(acq.translation_mm),
        "center_lps": _r(lesion_c, 6),
        "convention": (
            "p_moving = R (p_fixed - c) + c + t, R = Rz @ Rx @ Ry "
            "(SimpleITK Euler3DTransform order; guideplan.core.geometry."
            "rigid_matrix). Points in LPS mm."
        ),
        "lesion_center_in_moving_lps": _r(geometry.apply_affine(m2f, lesion_c)),
        "lesion_scale": acq.lesion_scale,
    }


def _truth_json(
    spec: CaseSpec, series: dict, transforms: dict, measured: dict, lesion_c: np.ndarray
) -> dict:
    lesion = spec.lesion
    return {
        "format_version": FORMAT_VERSION,
        "case": spec.name,
        "note": PHANTOM_NOTE + " Ground truth: the GUI must not read this folder.",
        "model_frame": "planning CT (ct/) patient LPS, mm",
        "vertebral_level": spec.level,
        "bone": spec.bone,
        "side": spec.side,
        "lesion": {
            "kind": lesion.kind,
            "center_lps": _r(lesion_c, 6),
            "radii_mm": list(lesion.radii),
            "host": lesion.host,
            "extension_beyond_bone_mm": lesion.extension_mm,
            **measured,
        },
        "masks": {
            "lesion": "truth/lesion.nrrd",
            "bone": "truth/bone.nrrd (cortical + trabecular bone envelope, lesion inside "
            "bone included, extra-osseous lesion excluded)",
            "canal": "truth/canal.nrrd (bony spinal canal contents: epidural fat, CSF, "
            "cord, cauda equina)",
            "body": "truth/body.nrrd (everything inside the skin; table excluded)",
            "grid": "same geometry as the planning CT series",
        },
        "transforms": transforms,
        "series": series,
        "intensities": "resources/samples/tissues.json",
    }


def _case_json(spec: CaseSpec, series: dict) -> dict:
    return {
        "format_version": FORMAT_VERSION,
        "name": spec.name,
        "title": spec.title,
        "synthetic": True,
        "note": PHANTOM_NOTE,
        "patient": {
            "name": spec.patient.name,
            "id": spec.patient.patient_id,
            "sex": spec.patient.sex,
            "birth_date": spec.patient.birth_date,
        },
        "indication": spec.indication,
        "findings": spec.findings,
        "target": {
            "bone": spec.bone,
            "vertebral_level": spec.level,
            "side": spec.side,
            "lesion_kind": spec.lesion.kind,
        },
        "suggested_treatment": spec.suggested_treatment,
        "planning_notes": list(spec.planning_notes),
        "series": [
            {
                "folder": s["folder"],
                "role": _role(s["folder"]),
                "modality": s["modality"],
                "description": s["description"],
                "series_uid": s["series_uid"],
                "study_date": s["study_date"],
            }
            for s in series.values()
        ],
    }


def _role(folder: str) -> str:
    return {"ct": "planning", "prior_ct": "prior (fusion)", "mr": "prior (fusion)"}[folder]


def _readme(spec: CaseSpec, series: dict, measured: dict) -> str:
    lines = [
        f"# {spec.name}: {spec.title}",
        "",
        f"*{PHANTOM_NOTE}*",
        "",
        f"**Indication.** {spec.indication}",
        "",
        f"**Findings.** {spec.findings}",
        "",
        f"**Suggested treatment.** {spec.suggested_treatment}",
        "",
        "**Planning notes.**",
        "",
        *[f"- {n}" for n in spec.planning_notes],
        "",
        "## Series",
        "",
        "| folder | modality | description | grid (i x j x k) | spacing mm |",
        "|---|---|---|---|---|",
    ]
    for s in series.values():
        sp = " x ".join(f"{v:g}" for v in s["spacing_mm"])
        sz = " x ".join(str(v) for v in s["size_ijk"])
        position = f", {s['patient_position']} prone" if "patient_position" in s else ""
        lines.append(
            f"| {s['folder']}/ | {s['modality']} | {s['description']} "
            f"({s['orientation']}{position}) | {sz} | {sp} |"
        )
    lines += [
        "",
        "`truth/` holds the exact answers (lesion, bone, canal and body masks on the "
        "planning-CT grid; `truth.json` with the lesion centre, volume and the true "
        "planning-CT -> prior transforms). It is for tests and teaching; the "
        "application never reads it.",
        "",
        f"Lesion volume (mask): {measured.get('lesion_volume_ml')} ml; "
        f"distance to skin: {measured.get('lesion_to_skin_mm')} mm.",
        "",
    ]
    return "\n".join(lines)


_INDEX_MARK = "<!-- written by guideplan.samples; regenerated on each run -->"


def _write_index(out: Path, specs: dict[str, CaseSpec]) -> None:
    """README.md listing the cases present in ``out`` (never overwrites a foreign one)."""
    path = out / "README.md"
    if path.exists() and _INDEX_MARK not in path.read_text(encoding="utf-8"):
        return
    present = [specs[n] for n in sorted(specs) if (out / n / "case.json").exists()]
    lines = [
        _INDEX_MARK,
        "# guideplan sample cases",
        "",
        f"*{PHANTOM_NOTE}*",
        "",
        "Regenerate with `guideplan sample --out DIR` "
        "(guideplan.samples.generate_samples); output is byte-for-byte reproducible.",
        "",
        "| case | target | planning CT position | suggested treatment |",
        "|---|---|---|---|",
        *[
            f"| [{c.name}]({c.name}/README.md) | {c.bone} ({c.lesion.kind}) | "
            f"{'prone' if c.ct.prone else 'supine'} ({c.ct.patient_position}) | "
            f"{c.suggested_treatment} |"
            for c in present
        ],
        "",
        "Each case: `ct/` planning CT (patient position in the table above), `prior_ct/` "
        "earlier contrast CT and `mr/` T1-like MR (supine diagnostic scans; own frames "
        "of reference, known rigid offsets), `truth/` ground truth (never read by the "
        "application), `case.json` for the GUI.",
        "",
    ]
    path.write_text("\n".join(lines), encoding="utf-8")


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------


def _r(values: object, digits: int = 3) -> list:
    arr = np.asarray(values, dtype=float)
    return np.round(arr, digits).tolist()


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def _report(progress: ProgressFn | None, fraction: float, message: str) -> None:
    if progress is not None:
        progress(min(max(fraction, 0.0), 1.0), message)


def _sub_progress(
    progress: ProgressFn | None, lo: float, hi: float, name: str
) -> ProgressFn | None:
    if progress is None:
        return None
    return lambda f, msg: progress(lo + (hi - lo) * f, f"{name}: {msg}")
