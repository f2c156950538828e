"""Command line: ``guideplan scan|load|render|plan|suggest|register|segment|anatomy|sample``.

Every sub-command calls the same core functions as the GUI. Expected failures
(:class:`GuideplanError`) print their message and exit with status 2; nothing else is
caught, so a real bug still shows its traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from guideplan.core.errors import GuideplanError

#: Options whose value is an LPS point: "-4,44,1" must not be taken for an option.
POINT_OPTIONS = ("--slice-lps", "--target", "--entry", "--seed", "--mask-lps", "--range")


def _join_point_values(argv: Sequence[str]) -> list[str]:
    out: list[str] = []
    args = list(argv)
    i = 0
    while i < len(args):
        if args[i] in POINT_OPTIONS and i + 1 < len(args) and args[i + 1].startswith("-"):
            out.append(f"{args[i]}={args[i + 1]}")
            i += 2
        else:
            out.append(args[i])
            i += 1
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(_join_point_values(sys.argv[1:] if argv is None else argv))
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    try:
        return int(args.func(args) or 0)
    except GuideplanError as exc:
        print(f"guideplan: {exc.title}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("guideplan: interrupted", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="guideplan",
        description="Planning workstation for CT-guided treatment of bone metastases.",
    )
    sub = parser.add_subparsers(title="commands")

    p = sub.add_parser("scan", help="list the DICOM series in a folder, zip or file")
    p.add_argument("path")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_scan)

    p = sub.add_parser("load", help="load one series and describe the volume")
    p.add_argument("path")
    p.add_argument("--series", help="SeriesInstanceUID (when the folder holds several)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_load)

    p = sub.add_parser("render", help="draw views of a case or DICOM folder to PNG, offscreen")
    p.add_argument("path", help="a .gplan case, a sample case folder, or a DICOM folder")
    p.add_argument("--view", default="all", choices=["axial", "coronal", "sagittal", "3d", "all"])
    p.add_argument("--out", required=True, help="PNG file to write")
    p.add_argument("--slice-lps", help="x,y,z: the LPS point (mm) the slices go through")
    p.add_argument("--size", default="1000x1000", help="WIDTHxHEIGHT in pixels")
    p.add_argument("--series", help="SeriesInstanceUID (default: the planning CT)")
    p.set_defaults(func=_cmd_render)

    p = sub.add_parser(
        "plan",
        help="readouts, distances and warnings of one needle path",
        description="Analyse the straight path ENTRY -> TARGET (LPS mm). JSON keys: length_mm, "
        "skin_to_target_mm, bone_depth_mm, direction_lps, craniocaudal_deg (signed, + toward "
        "the head), axial_from_vertical_deg (unsigned), toward (left|right|none: the side the "
        "tip moves to), gantry_tilt_deg, tissues [{tissue, start_mm, end_mm, length_mm}], "
        "hu_profile {distance_mm, hu}, distances [{structure, distance_mm (from the needle's "
        "surface; <= 0 crosses), threshold_mm, closest_at_mm}], warnings [{code, severity, "
        "message, values}], device, structures_source.",
    )
    p.add_argument("series", help="the planning CT (DICOM folder, or a sample case folder)")
    p.add_argument("--target", required=True, help="x,y,z LPS mm")
    p.add_argument("--entry", required=True, help="x,y,z LPS mm")
    p.add_argument("--device", help="device id from the catalog (default: an 18 G needle)")
    p.add_argument("--labels", help="folder of structure masks (.nrrd...) or one label map")
    p.add_argument("--catalog", action="append", default=[], help="extra device catalog JSON")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_plan)

    p = sub.add_parser(
        "suggest",
        help="rank skin entry points for a target",
        description="Score straight paths from the target to the reachable skin. JSON: "
        "{target_lps, position, evaluated, valid, suggestions: [{entry_lps, length_mm, "
        "clearance_mm, craniocaudal_deg, score, route}], best_per_route, rejected: "
        "{reason: count}}.",
    )
    p.add_argument("series")
    p.add_argument("--target", required=True, help="x,y,z LPS mm")
    p.add_argument("--position", choices=["prone", "supine", "left-up", "right-up"])
    p.add_argument("--top", type=int, default=5)
    p.add_argument("--device", help="device id (default: an 18 G needle)")
    p.add_argument("--labels", help="folder of structure masks or one label map")
    p.add_argument("--catalog", action="append", default=[], help="extra device catalog JSON")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_suggest)

    p = sub.add_parser(
        "register",
        help="align a prior study (CT, MR, PET) to the planning CT",
        description="Register MOVING_DIR (a prior study) to FIXED_DIR (the planning CT): "
        "multi-resolution Mattes mutual information, rigid by default. Series sharing the "
        "planning CT's frame of reference (PET/CT) are aligned by geometry alone. JSON keys: "
        "matrix (4x4, row-major, maps FIXED LPS points to MOVING LPS points), tfm (the .tfm "
        "written, or null), metric (Mattes MI, lower is better), wall_s, mode, method "
        "(intensity|landmarks|frame-of-reference), init, iterations, tre_mm and "
        "landmark_errors_mm (with --landmarks).",
        epilog="Landmark file (--landmarks): JSON, LPS millimetres, at least 3 pairs (4 not "
        'in one plane for affine): {"pairs": [{"fixed": [x, y, z], "moving": [x, y, z]}, '
        '...]}; a bare list of such pairs, or {"fixed": [[x, y, z], ...], "moving": '
        "[[x, y, z], ...]} (same order), are accepted too. With landmarks the registration "
        "starts from their least-squares fit and reports their residual (tre_mm).",
    )
    p.add_argument("fixed", metavar="FIXED_DIR", help="planning CT (DICOM folder or sample case)")
    p.add_argument("moving", metavar="MOVING_DIR", help="prior study (DICOM folder)")
    p.add_argument("--mode", default="rigid", choices=["rigid", "affine", "deformable"])
    p.add_argument("--landmarks", metavar="FILE.json", help="landmark pairs (format below)")
    p.add_argument(
        "--landmarks-only", action="store_true", help="fit the landmarks; no intensity refinement"
    )
    p.add_argument(
        "--mask-lps",
        metavar="x,y,z,radius_mm",
        help="only match inside this sphere of the planning CT (e.g. the treated vertebra)",
    )
    p.add_argument(
        "--init",
        default="auto",
        choices=["auto", "geometry", "moments", "identity"],
        help="starting guess (default auto: the best of the others)",
    )
    p.add_argument(
        "--ignore-frame-of-reference",
        action="store_true",
        help="register even when both series share a FrameOfReferenceUID",
    )
    p.add_argument("--out", metavar="T.tfm", help="write the transform as an ITK .tfm file")
    p.add_argument("--fixed-series", help="SeriesInstanceUID in FIXED_DIR")
    p.add_argument("--moving-series", help="SeriesInstanceUID in MOVING_DIR")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_register)

    p = sub.add_parser("segment", help="segment the lesion under a seed point and measure it")
    p.add_argument("path", help="planning CT: DICOM folder, sample case folder or .gplan case")
    p.add_argument("--seed", required=True, help="x,y,z: LPS point (mm) inside the lesion")
    p.add_argument("--range", help="lo,hi: growing range (HU) instead of the estimated one")
    p.add_argument("--extension-mm", type=float,
                   help="soft-tissue extension allowed through a cortical breach (mm)")
    p.add_argument("--out", help="write the mask (.nrrd, .nii.gz) or a DICOM SEG (.dcm)")
    p.add_argument("--series", help="SeriesInstanceUID (default: the planning CT)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_segment)

    p = sub.add_parser("anatomy", help="automatic body, skin, bone, canal and vertebrae masks")
    p.add_argument("path", help="planning CT: DICOM folder, sample case folder or .gplan case")
    p.add_argument("--out", required=True, help="folder for the .nrrd masks and anatomy.json")
    p.add_argument("--series", help="SeriesInstanceUID (default: the planning CT)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_anatomy)

    p = sub.add_parser("sample", help="(re)generate the bundled sample cases")
    p.add_argument("--out", default="sample_data", help="output folder (default: sample_data)")
    p.add_argument("--case", action="append", help="only this case (repeatable)")
    p.set_defaults(func=_cmd_sample)
    return parser


def _cmd_scan(args: argparse.Namespace) -> int:
    from guideplan.io import scan

    report = scan(args.path)
    if args.json:
        print(json.dumps(report.to_json(), indent=2))
        return 0
    if not report.series:
        print(f"No image series in {args.path}.")
    for info in report.series:
        size = "x".join(str(v) for v in info.size) if info.size else "-"
        spacing = "x".join(f"{v:.3g}" for v in info.spacing) if info.spacing else "-"
        flag = " [localizer]" if info.is_localizer else ""
        print(
            f"{info.modality:3} #{info.series_number or '?':<4} "
            f"{info.description or '(no description)'}"
            f"{flag}: {info.n_slices} images, {size} voxels, {spacing} mm"
        )
        print(f"      uid {info.series_uid}")
        if info.error:
            print(f"      cannot load: {info.error}")
        for warning in info.warnings:
            print(f"      warning: {warning}")
    if report.skipped:
        print(f"{len(report.skipped)} file(s) skipped:")
        for item in report.skipped[:50]:
            print(f"  {item.path}: {item.reason}")
        if len(report.skipped) > 50:
            print(f"  ... and {len(report.skipped) - 50} more")
    return 0


def _cmd_load(args: argparse.Namespace) -> int:
    from guideplan.io import load_series

    start = time.perf_counter()
    volume = load_series(args.path, series_uid=args.series)
    elapsed = time.perf_counter() - start
    out = {
        "series_uid": volume.meta.get("series_uid"),
        "modality": volume.modality,
        "size": list(volume.size),
        "spacing": list(volume.spacing),
        "origin": list(volume.origin),
        "direction": [float(v) for v in volume.direction.ravel()],
        "dtype": str(volume.array.dtype),
        "units": volume.meta.get("units"),
        "min": float(volume.array.min()),
        "max": float(volume.array.max()),
        "warnings": volume.meta.get("warnings", []),
        "load_s": round(elapsed, 3),
    }
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        for key, value in out.items():
            print(f"{key:>10}: {value}")
    return 0


def _cmd_render(args: argparse.Namespace) -> int:
    from guideplan.render.snapshot import render_volume

    scene = _open_case_if_case(Path(args.path))
    volume = _load_for_render(Path(args.path), args.series, scene)
    cursor = _parse_point(args.slice_lps) if args.slice_lps else None
    overlays, needles = _plan_graphics(scene)
    try:
        width, height = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        raise GuideplanError(
            f"--size {args.size!r} is not WIDTHxHEIGHT.", hint="Example: --size 1200x900."
        ) from None
    out = render_volume(
        volume,
        args.view,
        args.out,
        size=(width, height),
        cursor_lps=cursor,
        overlays=overlays,
        needles=needles,
    )
    print(f"wrote {out}")
    return 0


def _open_case_if_case(path: Path):
    """The plan of a guideplan case, or None for DICOM folders and sample cases."""
    from guideplan.io.case_file import is_case

    if not is_case(path):
        return None
    from guideplan.model.case import open_case

    return open_case(path)


def _plan_graphics(scene):
    """2D overlays and 3D needles for a case's measurements and trajectories."""
    if scene is None:
        return [], []
    from guideplan.model.nodes import MeasurementNode, TrajectoryNode
    from guideplan.planning.devices import load_catalog
    from guideplan.render.slice_view import Overlay2D

    catalog = load_catalog()
    overlays = [
        Overlay2D(list(n.points), n.label, tuple(n.display.color))
        for n in scene.nodes_of(MeasurementNode)
        if n.display.visible
    ]
    needles = []
    for n in scene.nodes_of(TrajectoryNode):
        if not n.display.visible:
            continue
        overlays.append(Overlay2D([n.entry, n.target], n.name, tuple(n.display.color), needle=True))
        radius = catalog.get(n.device_id).radius_mm if n.device_id in catalog else 0.6
        needles.append((n.entry, n.target, tuple(n.display.color), radius, False))
    return overlays, needles


def _load_for_render(path: Path, series_uid: str | None, scene=None):
    from guideplan.io import choose_planning_series, load_series, scan

    if scene is not None:
        from guideplan.model.nodes import VolumeNode

        planning = [n for n in scene.nodes_of(VolumeNode) if n.role == "planning"]
        if not planning or planning[0].volume is None:
            raise GuideplanError(f"The case {path} has no planning CT.", hint="Open it in the GUI.")
        return planning[0].volume
    if (path / "ct").is_dir():  # a bundled sample case folder
        path = path / "ct"
    if series_uid:
        return load_series(path, series_uid=series_uid)
    return load_series(choose_planning_series(scan(path)))


def _parse_point(text: str):
    import numpy as np

    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 3:
        raise GuideplanError(
            f"{text!r} is not an LPS point.",
            hint="Give three numbers in mm: --slice-lps 10,-20,35.",
        )
    return np.array(values)


def _planning_context(args: argparse.Namespace):
    """CT, structures (from --labels, else automatic) and device for plan/suggest."""
    from guideplan.planning.devices import load_catalog
    from guideplan.planning.path_analysis import PathContext
    from guideplan.planning.structures import auto_structures, structures_from_masks

    volume = _load_for_render(Path(args.series), None, _open_case_if_case(Path(args.series)))
    catalog = load_catalog(*args.catalog)
    device = catalog.get(args.device) if args.device else catalog.default_needle()
    if args.labels:
        from guideplan.io.mask_io import read_masks

        masks = read_masks(args.labels, volume)
        lesion = masks.pop("lesion", None)
        structures, source = structures_from_masks(masks, volume), f"labels: {args.labels}"
    else:
        lesion = None
        structures, source = auto_structures(volume), "automatic"
    return PathContext(volume, structures, lesion=lesion), device, source


def _cmd_plan(args: argparse.Namespace) -> int:
    from guideplan.planning.path_analysis import analyze_path

    ctx, device, source = _planning_context(args)
    report = analyze_path(ctx, _parse_point(args.entry), _parse_point(args.target), device)
    doc = report.to_json()
    doc["structures_source"] = source
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    print(
        f"device {device.name}: path {doc['length_mm']} mm, skin to target "
        f"{doc['skin_to_target_mm']} mm, in bone {doc['bone_depth_mm']} mm"
    )
    print(
        f"craniocaudal {doc['craniocaudal_deg']:+.1f} deg, axial from vertical "
        f"{doc['axial_from_vertical_deg']:.1f} deg toward {doc['toward']}, gantry tilt "
        f"{doc['gantry_tilt_deg']:+.1f} deg"
    )
    print("tissues: " + ", ".join(f"{t['tissue']} {t['length_mm']:.1f}" for t in doc["tissues"]))
    for d in doc["distances"]:
        print(f"  {d['structure']}: {d['distance_mm']:.1f} mm (safety {d['threshold_mm']:g} mm)")
    for w in doc["warnings"]:
        print(f"  [{w['severity']}] {w['code']}: {w['message']}")
    return 0


def _cmd_suggest(args: argparse.Namespace) -> int:
    from collections import Counter

    from guideplan.planning.suggest import suggest_entries

    ctx, device, source = _planning_context(args)
    result = suggest_entries(ctx, _parse_point(args.target), device, position=args.position)
    ranked = result.ranked
    doc = {
        "target_lps": [float(v) for v in result.target],
        "position": args.position,
        "device": device.id,
        "structures_source": source,
        "evaluated": len(result.candidates),
        "valid": len(ranked),
        "suggestions": [c.to_json() for c in ranked[: args.top]],
        "best_per_route": {k: c.to_json() for k, c in result.best_per_route().items()},
        "rejected": dict(Counter(c.reason for c in result.candidates if not c.valid)),
    }
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    print(f"{doc['valid']} of {doc['evaluated']} paths are possible ({source} structures)")
    for rank, c in enumerate(doc["suggestions"], start=1):
        print(
            f"{rank}. entry {c['entry_lps']}  {c['route']:<22} length {c['length_mm']} mm, "
            f"clearance {c['clearance_mm']} mm, cc {c['craniocaudal_deg']:+.1f} deg, "
            f"score {c['score']:.3f}"
        )
    return 0


def _cmd_register(args: argparse.Namespace) -> int:
    from guideplan.io import load_series
    from guideplan.processing.registration import parse_landmarks, register, save_tfm

    fixed = _load_for_render(Path(args.fixed), args.fixed_series)
    moving = load_series(args.moving, series_uid=args.moving_series)
    landmarks = None
    if args.landmarks:
        try:
            data = json.loads(Path(args.landmarks).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise GuideplanError(
                f"Cannot read the landmark file {args.landmarks} ({exc}).",
                hint="Give a JSON file; see 'guideplan register --help' for the format.",
            ) from None
        landmarks = parse_landmarks(data)
    mask = _parse_numbers(args.mask_lps, 4, "--mask-lps 10,-20,35,40") if args.mask_lps else None
    result = register(
        fixed,
        moving,
        args.mode,
        landmarks=landmarks,
        mask_lps=mask,
        init="landmarks" if landmarks is not None else args.init,
        refine=not args.landmarks_only,
        trust_frame_of_reference=not args.ignore_frame_of_reference,
    )
    doc = result.to_json()
    doc["tfm"] = str(save_tfm(result.matrix, args.out)) if args.out else None
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    print(
        f"{doc['mode']} registration ({doc['method']}, start: {doc['init'] or '-'}) in "
        f"{doc['wall_s']:.1f} s, metric {doc['metric']}"
    )
    print("fixed -> moving (LPS mm):")
    for row in doc["matrix"]:
        print("  " + "  ".join(f"{v:10.5f}" for v in row))
    if doc["tre_mm"] is not None:
        print(f"landmark error (rms): {doc['tre_mm']:.2f} mm")
    if doc["tfm"]:
        print(f"wrote {doc['tfm']}")
    return 0


def _parse_numbers(text: str, count: int, example: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != count:
        raise GuideplanError(f"{text!r} is not {count} numbers.", hint=f"Example: {example}.")
    return values


def _cmd_segment(args: argparse.Namespace) -> int:
    import numpy as np

    from guideplan.io.seg_io import write_labelmap, write_seg
    from guideplan.processing.lesion_metrics import lesion_metrics
    from guideplan.processing.segmentation import GrowParams, grow_lesion

    volume = _load_for_render(Path(args.path), args.series)
    seed = _parse_point(args.seed)
    grow_range = tuple(_parse_numbers(args.range, 2, "--range -20,80")) if args.range else None
    overrides = {}
    if args.extension_mm is not None:
        overrides["soft_tissue_extension_mm"] = args.extension_mm
    start = time.perf_counter()
    result = grow_lesion(volume, seed, GrowParams.from_resources(**overrides),
                         grow_range=grow_range)  # type: ignore[arg-type]
    grow_s = time.perf_counter() - start
    if result.n_voxels == 0:
        raise GuideplanError(
            f"Nothing was segmented at {args.seed}: {'; '.join(result.notes) or 'empty'}.",
            hint="Check the seed is inside the lesion (LPS mm), or give --range.",
        )
    mask = result.full_mask(volume.array.shape)
    metrics = lesion_metrics(volume, mask)
    doc = metrics.to_json()
    doc.update({
        "seed_lps": [float(v) for v in seed],
        "grow_range": [round(v, 1) for v in result.grow_range],
        "boundary_range": [round(v, 1) for v in result.boundary_range],
        "mode": result.mode,
        "grow_s": round(grow_s, 3),
        "notes": result.notes + doc["notes"],
        "out": None,
    })
    if args.out:
        labels = mask.astype(np.uint8)
        out = Path(args.out)
        written = write_seg(out, labels, volume) if out.suffix.lower() == ".dcm" else \
            write_labelmap(out, labels, volume)
        doc["out"] = str(written)
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    d1, d2, d3 = doc["diameters_mm"]
    hu = doc["hu"]
    print(f"lesion: {doc['volume_ml']:.2f} mL, {d1} x {d2} x {d3} mm, {doc['type']}")
    print(f"HU mean {hu['mean']}, min {hu['min']}, max {hu['max']} "
          f"(bone around: {doc['bone_reference_hu']})")
    print(f"cortical breach: {'yes' if doc['cortical_breach'] else 'no'}; posterior wall: "
          f"{ {True: 'involved', False: 'intact', None: 'n/a'}[doc['posterior_wall']] }")
    for note in doc["notes"]:
        print(f"note: {note}")
    if doc["out"]:
        print(f"wrote {doc['out']}")
    return 0


def _cmd_anatomy(args: argparse.Namespace) -> int:
    import numpy as np

    from guideplan.io.seg_io import write_labelmap
    from guideplan.processing.anatomy import CORTICAL, segment_anatomy

    volume = _load_for_render(Path(args.path), args.series)
    start = time.perf_counter()
    result = segment_anatomy(volume)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "bone": result.bone > 0,
        "bone_labels": result.bone,  # 1 cortical, 2 trabecular
        "canal": result.canal,
        "body": result.body,
        "skin": result.skin,
        "vertebrae": result.vertebrae.labels,  # 1..n, cranial first (see anatomy.json)
    }
    written = {name: str(write_labelmap(out / f"{name}.nrrd", np.asarray(a, dtype=np.uint8),
                                        volume)) for name, a in files.items()}
    doc = result.summary(volume.spacing)
    doc["files"] = written
    doc["bone_labels"] = {"cortical": CORTICAL, "trabecular": CORTICAL + 1}
    doc["time_s"] = round(time.perf_counter() - start, 2)
    (out / "anatomy.json").write_text(json.dumps(doc, indent=2), encoding="utf-8")
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    print(f"bone {doc['bone_ml']} mL (cortical {doc['cortical_ml']} mL), canal "
          f"{doc['canal_ml']} mL, body {doc['body_ml']} mL")
    names = ", ".join(v["name"] + (" (partial)" if v["partial"] else "")
                      for v in doc["vertebrae"]) or "none"
    print(f"vertebral bodies: {names}")
    print(f"levels: {doc['levels_how']}")
    print(f"wrote {len(written)} masks to {out}")
    return 0


def _cmd_sample(args: argparse.Namespace) -> int:
    from guideplan.samples import generate_samples

    out = Path(args.out)
    start = time.perf_counter()

    def progress(fraction: float, message: str) -> None:
        print(f"[{fraction * 100:5.1f}%] {message}", flush=True)

    written = generate_samples(out, cases=args.case, progress=progress)
    print(f"{len(written)} case(s) written to {out} in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
