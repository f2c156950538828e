"""Command line: ``guideplan scan|load|render|plan|suggest|register|segment|anatomy|sample``.

Every sub-command calls the same core functions as the GUI. Arguments are checked by
:mod:`guideplan.cli_args` (argparse types, then the checks that need the images).
Expected failures (:class:`GuideplanError`) print their message and exit with status 2;
an unexpected one prints a one-line message and exits with status 3: the traceback is
shown only with ``GUIDEPLAN_DEBUG=1``. What native libraries (ITK, HDF5) print on stderr
is captured and summarised in the message.
"""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path

from guideplan import cli_args as ca
from guideplan import cli_json as json
from guideplan.core.errors import GuideplanError

#: Options whose value is an LPS point: "-4,44,1" must not be taken for an option.
POINT_OPTIONS = (
    "--slice-lps",
    "--target",
    "--entry",
    "--seed",
    "--mask-lps",
    "--range",
    "--extra-path",
    "--thermocouple",
)

PLAN_TREATMENT_HELP = """\
treatment zones (--zone-device, --cement-ml, --ethanol-ml, --case):
  Predicted zones are ESTIMATES (approximate device charts, simplified models).
  'treatment' (or, with --case, the top level) holds:
    estimate: true, estimate_statement
    settings: {margin_mm, safety_distance_mm {structure: mm}, full_coverage_pct,
               vertebral_level, canal_holds (spinal cord | cauda equina | unknown)}
    lesion: {volume_ml, centroid_lps, median_hu, type, distance_to_canal_mm,
             vertebral, level} or null (no lesion mask: no coverage figures)
    zones: [{model (rf-ellipsoid | mw-ellipsoid | cryo-isotherms | ethanol-fill |
             cement-fill), kind, device, parameters, center_lps, volume_ml,
             analytic_volume_ml, dimensions {length_mm, width_mm, center_offset_mm,
             power_w, time_s, extrapolated, isotherms}, ellipsoids [{center_lps,
             axes_lps (rows; first along the needle), radii_mm, volume_ml}],
             isotherms {"0" | "-20" | "-40": {volume_ml, center_lps}} (cryo),
             probes (cryo: each probe's isotherm ellipsoids), needles, notes,
             warnings, figures}]
    ablation | cement | combined (figures of all ablation zones, the cement, both):
            {zone_volume_ml, lesion_ml, coverage_pct, covered_ml, uncovered_ml,
             margin_mm, margin_coverage_pct (lesion + margin covered),
             min_margin_mm (signed: < 0 = the lesion sticks out), healthy_bone_ml,
             distances [{structure, code, distance_mm (from the zone's edge; <= 0:
             the zone reaches into it; cryo: from the 0 degC iceball),
             threshold_mm, closest_lps, lower_bound}]}
    cement.fill: {requested_ml, placed_ml, filled_region_ml, not_placed_ml,
             vertebral_body_ml, vertebral_body_fill_pct, strength_target_pct,
             lesion_fill_pct, leaks [{site (canal | breach | disc | endplate |
             basivertebral | overflow), label, severity, reached_at_ml,
             contact_mm2, location_lps}]}
    warnings: [{code, severity, message, values}] with codes SKIN_BURN_RISK,
             CORD_THERMAL_RISK, NERVE_THERMAL_RISK, ORGAN_BURN_RISK,
             INCOMPLETE_COVERAGE, MARGIN_BELOW_SETTING, CEMENT_LEAK_RISK,
             FRACTURE_RISK_CONSOLIDATE, SPINE_UNSTABLE, IMPENDING_FRACTURE_FIXATION,
             CRYO_SPACING_TOO_WIDE, CRYO_SPACING_ABOVE_SOURCE, THERMOCOUPLE_LIMIT,
             DISSECTION_INSUFFICIENT, PROTECTED_BY_DISSECTION,
             ZONE_CHART_EXTRAPOLATED, ZONE_CLIPPED_AT_CORTEX, ETHANOL_OVERFLOW
    fracture_risk: {score {system (SINS | Mirels), total (None while a component is
             not known), min, max, complete, category, components [{name, points,
             value, origin (image | level | bone | user | unknown), detail,
             max_points}], source}, consolidation {fill_pct, target_pct, measure
             (vertebral body | lesion), in_same_bone, enough}}
    protection: {estimate, dissections [{structure, agent, tip_lps, displacement_mm,
             thickness_mm, applies, distances [{zone, measured_mm, with_dissection_mm,
             threshold_mm, tip_to_structure_mm}]}], thermocouples [{name, point_lps,
             readings [{zone, edge_distance_mm, estimated_c, stands_for, warn_c,
             reached}]}]} (with --dissection / --thermocouple)
    device_references: [{device, name, approximate, source, references [{ref, pmid,
             doi, url, locator, supports, limits}]}] (where the zones' figures come from)
    worst_severity
  --case CASE: {case, trajectories [{id, name, device_id, path: <the keys above>}],
             zones [{node_id, name, trajectory_id, model, parameters, zone | cement |
             error}], treatment: <as above>}
  Masks: --labels names lesion, bone, canal, disc, vertebral body, body / skin and
  structures to spare by file name; without --labels the canal, bone, body and skin
  are found automatically. A custom device (zone chart format: see the 'zone_schema'
  of resources/devices/catalog.json) comes with --catalog FILE.json.
"""


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
    try:
        args = parser.parse_args(_join_point_values(sys.argv[1:] if argv is None else argv))
    except SystemExit as exc:  # argparse refused an argument (and printed why); --help exits
        if exc.code in (0, None):
            raise
        return exc.code if isinstance(exc.code, int) else 2
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    return _run_guarded(args)


def _run_guarded(args: argparse.Namespace) -> int:
    """Run a sub-command; no traceback reaches the user unless GUIDEPLAN_DEBUG is set."""
    from guideplan.io.native_stderr import captured_native_stderr, debug

    native = None
    try:
        with captured_native_stderr() as native:
            return int(args.func(args) or 0)
    except GuideplanError as exc:
        print(f"guideplan: {exc.title}: {exc}{_native_note(native)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("guideplan: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `guideplan scan ... | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:
        if debug():
            raise
        what = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        print(
            f"guideplan: unexpected error ({type(exc).__name__}{': ' + what if what else ''})"
            f"{_native_note(native)}. This is a bug in guideplan, not in your data's "
            "handling by you; run again with GUIDEPLAN_DEBUG=1 to see the details and "
            "report them.",
            file=sys.stderr,
        )
        return 3


def _native_note(native) -> str:
    summary = native.summary(prefix=" (") if native is not None else ""
    return summary + ")" if summary else ""


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
    p.add_argument(
        "--slice-lps", type=ca.LPS_POINT, help="x,y,z: the LPS point (mm) the slices go through"
    )
    p.add_argument("--size", default="1000x1000", type=ca.SIZE, help="WIDTHxHEIGHT in pixels")
    p.add_argument("--series", help="SeriesInstanceUID (default: the planning CT)")
    p.set_defaults(func=_cmd_render)

    p = sub.add_parser(
        "plan",
        help="readouts, distances and warnings of one needle path; predicted treatment zones",
        description=textwrap.fill(
            "Analyse the straight path ENTRY -> TARGET (LPS mm). JSON keys: length_mm, "
            "skin_to_target_mm, bone_depth_mm, direction_lps, craniocaudal_deg (signed, + "
            "toward the head), axial_from_vertical_deg (unsigned), toward (left|right|none: "
            "the side the tip moves to), gantry_tilt_deg, tissues [{tissue, start_mm, end_mm, "
            "length_mm}], hu_profile {distance_mm, hu}, distances [{structure, distance_mm "
            "(from the needle's surface; <= 0 crosses), threshold_mm, closest_at_mm}], "
            "warnings [{code, severity, message, values}], device, structures_source. With a "
            "zone option, 'treatment' holds the predicted zones and their evaluation (below).",
            84,
        ),
        epilog=PLAN_TREATMENT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "series", nargs="?", help="the planning CT (DICOM folder, or a sample case folder)"
    )
    p.add_argument("--target", type=ca.LPS_POINT, help="x,y,z LPS mm (the needle tip)")
    p.add_argument("--entry", type=ca.LPS_POINT, help="x,y,z LPS mm")
    p.add_argument("--device", help="device id from the catalog (default: an 18 G needle)")
    p.add_argument("--labels", help="folder of structure masks (.nrrd...) or one label map")
    p.add_argument("--catalog", action="append", default=[], help="extra device catalog JSON")
    p.add_argument("--json", action="store_true")
    z = p.add_argument_group("treatment zones (estimates)")
    z.add_argument(
        "--zone-device",
        metavar="ID",
        help="ablation device (RF probe, microwave antenna, cryoprobe, ethanol "
        "needle) whose tip is at --target",
    )
    z.add_argument(
        "--power-w", type=ca.positive_float("W"), metavar="P", help="microwave power (W)"
    )
    z.add_argument(
        "--time-s", type=ca.positive_float("s"), metavar="T", help="RF / microwave time (s)"
    )
    z.add_argument(
        "--freeze-s", type=ca.positive_float("s"), metavar="T", help="cryoablation freeze time (s)"
    )
    z.add_argument(
        "--cement-ml",
        type=ca.positive_float("mL"),
        metavar="V",
        help="cement volume (mL) injected at the tip(s)",
    )
    z.add_argument("--cement-device", metavar="ID", help="cement trocar (default: an 11 G one)")
    z.add_argument(
        "--ethanol-ml", type=ca.positive_float("mL"), metavar="V", help="ethanol volume (mL)"
    )
    z.add_argument("--lesion", metavar="MASK", help="lesion mask (.nrrd, .nii.gz, .mha)")
    z.add_argument(
        "--margin-mm",
        type=ca.positive_float("mm", allow_zero=True),
        metavar="M",
        help="ablative margin setting (default 5 mm)",
    )
    z.add_argument(
        "--clip-cortex",
        action="store_true",
        help="clip thermal zones at thick cortical bone (estimate)",
    )
    z.add_argument(
        "--extra-path",
        action="append",
        default=[],
        metavar="ENTRY:TARGET",
        help="another needle 'x,y,z:x,y,z' (more cryoprobes, a second trocar, "
        "another probe of the zone device); repeatable",
    )
    z.add_argument(
        "--cover-lesion",
        action="store_true",
        help="plan overlapping zones of --zone-device (RF, bipolar RF, microwave) along "
        "the entry -> target direction until the lesion + margin is covered (repositioned "
        "probe / parallel probes); needs the lesion",
    )
    z.add_argument(
        "--level",
        type=ca.LEVEL,
        help="vertebral level of the lesion (e.g. L2): cord above the "
        "conus, cauda equina below (default: from the case or found automatically)",
    )
    z.add_argument(
        "--case",
        metavar="CASE",
        help="a saved guideplan case: every trajectory and zone of it is evaluated",
    )
    f = p.add_argument_group("fracture risk (SINS for the spine, Mirels for long bones)")
    f.add_argument(
        "--bone",
        metavar="NAME",
        help="the lesion's host bone, e.g. 'femur', 'proximal femur peritrochanteric', "
        "'humerus', 'acetabulum', 'L2 vertebral body' (default: from the case)",
    )
    f.add_argument(
        "--pain",
        choices=["mechanical", "occasional", "none", "mild", "moderate", "functional"],
        help="pain as the patient reports it (SINS: mechanical/occasional/none; Mirels: "
        "mild/moderate/functional); not entered: the score is a range",
    )
    f.add_argument(
        "--alignment",
        choices=["subluxation", "deformity", "normal"],
        help="spinal alignment (SINS: subluxation/translation, de novo deformity, normal)",
    )
    t = p.add_argument_group("thermal protection (estimates)")
    t.add_argument(
        "--dissection",
        action="append",
        default=[],
        metavar="STRUCTURE:X,Y,Z:MM[:hydro|co2]",
        help="a hydro- or CO2 dissection at the LPS point, displacing STRUCTURE by MM (repeatable)",
    )
    t.add_argument(
        "--thermocouple",
        action="append",
        default=[],
        metavar="X,Y,Z[:WARN_C]",
        help="a thermocouple at the LPS point, with its warning temperature (default "
        "45 °C for heat, 10 °C for cold); repeatable",
    )
    p.set_defaults(func=_cmd_plan)

    p = sub.add_parser(
        "suggest",
        help="rank skin entry points for a target",
        description="Score straight paths from the target to the reachable skin. JSON: "
        "{target_lps, position, scan_position, target_anatomy, evaluated, valid, "
        "suggestions: [{entry_lps, length_mm, clearance_mm, craniocaudal_deg, score, route, "
        "approach, side, axial_from_sagittal_deg, canal_clearance_mm, bone_run_mm, "
        "closest_structure}], best_per_route, rejected: {reason: count}, notes}. "
        "Vertebra masks in --labels (vertebrae_L2, vertebral body) tell the target; without "
        "--labels the canal and bodies are found around the target.",
    )
    p.add_argument("series")
    p.add_argument("--target", required=True, type=ca.LPS_POINT, help="x,y,z LPS mm")
    p.add_argument(
        "--position",
        choices=["prone", "supine", "left-up", "right-up", "any"],
        help="the patient's position on the table: which skin is reachable (default: the "
        "series' PatientPosition; 'any' allows all skin)",
    )
    p.add_argument("--top", type=ca.at_least(1), default=5)
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
    p.add_argument(
        "--mode",
        default="rigid",
        choices=["rigid", "affine", "deformable"],
        help="default rigid; deformable adds a B-spline on top (the JSON matrix stays linear)",
    )
    p.add_argument("--landmarks", metavar="FILE.json", help="landmark pairs (format below)")
    p.add_argument(
        "--landmarks-only", action="store_true", help="fit the landmarks; no intensity refinement"
    )
    p.add_argument(
        "--mask-lps",
        type=ca.SPHERE,
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
    p.add_argument(
        "--seed", required=True, type=ca.LPS_POINT, help="x,y,z: LPS point (mm) inside the lesion"
    )
    p.add_argument(
        "--range", type=ca.HU_RANGE, help="lo,hi: growing range (HU) instead of the estimated one"
    )
    p.add_argument(
        "--extension-mm",
        type=ca.positive_float("mm", allow_zero=True),
        help="soft-tissue extension allowed through a cortical breach (mm)",
    )
    p.add_argument(
        "--out", type=ca.MASK_OUTPUT, help="write the mask (.nrrd, .nii.gz) or a DICOM SEG (.dcm)"
    )
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


def _parse_point(text: str, option: str = "point"):
    from guideplan.core import validate

    return validate.point(text, option, "10,-20,35")


def _planning_inputs(args: argparse.Namespace):
    """(volume, named masks from --labels or None, structures source) of plan/suggest."""
    volume = _load_for_render(Path(args.series), None, _open_case_if_case(Path(args.series)))
    if args.labels:
        from guideplan.io.mask_io import read_masks

        return volume, read_masks(args.labels, volume), f"labels: {args.labels}"
    return volume, None, "automatic"


def _planning_context(args: argparse.Namespace, inputs=None):
    """CT, structures (from --labels, else automatic) and device for plan/suggest."""
    from guideplan.planning.devices import load_catalog
    from guideplan.planning.path_analysis import PathContext
    from guideplan.planning.structures import auto_structures_with_status, structures_from_masks

    volume, named, source = inputs or _planning_inputs(args)
    catalog = load_catalog(*args.catalog)
    device = catalog.get(args.device) if args.device else catalog.default_needle()
    if named is not None:
        masks = dict(named)
        lesion = masks.pop("lesion", None)
        structures = structures_from_masks(masks, volume)
        canal = None
        if not any(f.is_canal for f in structures):
            # no canal among the labels: the automatic one (with its status) stands in
            auto, canal = auto_structures_with_status(volume)
            structures += auto
    else:
        lesion = None
        structures, canal = auto_structures_with_status(volume)
    return PathContext(volume, structures, lesion=lesion, canal_finding=canal), device, source


def _wants_treatment(args: argparse.Namespace) -> bool:
    return any(v is not None for v in (args.zone_device, args.cement_ml, args.ethanol_ml))


def _cmd_plan(args: argparse.Namespace) -> int:
    from guideplan.planning.path_analysis import analyze_path

    ca.known_devices(args)
    if args.case:
        return _plan_case(args)
    if not args.series or not args.target or not args.entry:
        raise GuideplanError(
            "plan needs the planning CT, --entry and --target (or --case CASE).",
            hint="Example: guideplan plan CT_DIR --entry -45,112,1 --target 4,31,1.",
        )
    inputs = _planning_inputs(args)
    entry, target = _parse_point(args.entry, "--entry"), _parse_point(args.target, "--target")
    ca.needle_path(inputs[0], entry, target)
    for extra in args.extra_path:
        ca.needle_path(inputs[0], *_parse_path(extra))
    if args.lesion:
        from guideplan.io.mask_io import read_label_image

        named = dict(inputs[1] or {})
        named["lesion"] = read_label_image(args.lesion, inputs[0]) > 0
        inputs = (inputs[0], named if inputs[1] is not None else None, inputs[2])
        lesion_only = named["lesion"]
    else:
        lesion_only = None
    if not args.device and _wants_treatment(args):
        args.device = _treatment_path_device(args)
    ctx, device, source = _planning_context(args, inputs)
    if lesion_only is not None:
        ctx.lesion = lesion_only
    report = analyze_path(ctx, entry, target, device)
    doc = report.to_json()
    doc["structures_source"] = source
    treatment = None
    if _wants_treatment(args):
        treatment = _plan_treatment(args, inputs, ctx, lesion_only, entry, target)
        doc["treatment"] = treatment
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
    if treatment is not None:
        _print_treatment(treatment)
    return 0


def _treatment_path_device(args: argparse.Namespace) -> str | None:
    """The needle the path check uses when --device is not given: the zone device, else a
    cement trocar for a cement-only plan."""
    if args.zone_device:
        return args.zone_device
    if args.cement_ml is not None:
        return args.cement_device or _default_of_kind(args, "cement_trocar")
    return None


def _default_of_kind(args: argparse.Namespace, kind: str) -> str:
    from guideplan.planning.devices import CatalogError, load_catalog

    found = load_catalog(*args.catalog).of_kind(kind)
    if not found:
        raise CatalogError(
            f"The catalog has no {kind.replace('_', ' ')}.", hint="Add one with --catalog."
        )
    return found[0].id


def _plan_treatment(args, inputs, path_ctx, lesion_only, entry, target) -> dict:
    """Zones of --zone-device / --cement-ml / --ethanol-ml and their evaluation."""
    import numpy as np

    from guideplan.planning.cement import predict_cement
    from guideplan.planning.context import TreatmentContext
    from guideplan.planning.devices import load_catalog
    from guideplan.planning.evaluate import evaluate_plan
    from guideplan.planning.zones import ablation_zone

    volume, named, source = inputs
    catalog = load_catalog(*args.catalog)
    needles = [(entry, target)] + [_parse_path(text) for text in args.extra_path]
    tips = np.array([t for _, t in needles])
    from guideplan.io.sample_case import sample_target

    level, host = sample_target(args.series)
    masks = dict(named) if named is not None else {}
    if lesion_only is not None:
        masks["lesion"] = lesion_only
    ctx = TreatmentContext.from_masks(
        volume,
        masks,
        roi_lps=tips,
        level=args.level or level,
        host=args.bone or host,
        margin_mm=args.margin_mm,
    )
    if named is None:  # automatic structures (the canal) plus the skin found from the CT
        ctx.structures = list(path_ctx.structures) + [f for f in ctx.structures if f.name == "skin"]
        ctx.canal_finding = path_ctx.canal_finding
    zones = []
    zone_id = args.zone_device
    if zone_id is None and args.ethanol_ml is not None:
        zone_id = _default_of_kind(args, "ethanol_needle")
    if zone_id is not None:
        device = catalog.get(zone_id)
        groups = [needles] if device.kind == "cryoprobe" else [[n] for n in needles]
        cover = None
        if args.cover_lesion:
            from guideplan.planning.overlap import plan_overlapping_zones

            cover = plan_overlapping_zones(
                ctx,
                device,
                entry,
                target,
                power_w=args.power_w,
                time_s=args.time_s,
                clip_cortex=args.clip_cortex,
            )
            zones.extend(cover.zones)
            groups = []
        for group in groups:
            zones.append(
                ablation_zone(
                    ctx,
                    device,
                    group,
                    power_w=args.power_w,
                    time_s=args.time_s,
                    freeze_s=args.freeze_s,
                    ethanol_ml=args.ethanol_ml,
                    clip_cortex=args.clip_cortex,
                )
            )
    cement = None
    if args.cement_ml is not None:
        trocar = args.cement_device or (
            args.device
            if args.device and catalog.get(args.device).kind == "cement_trocar"
            else _default_of_kind(args, "cement_trocar")
        )
        cement = predict_cement(
            ctx,
            tips,
            args.cement_ml,
            entries_lps=np.array([e for e, _ in needles]),
            device_id=trocar,
        )
    from guideplan.planning.fracture_risk import FractureInputs

    inputs = FractureInputs(pain=args.pain, alignment=args.alignment)
    dissections, thermocouples = _protection_args(args)
    evaluation = evaluate_plan(
        ctx, zones, cement, inputs, dissections=dissections, thermocouples=thermocouples
    )
    out = evaluation.to_json()
    if zone_id is not None and cover is not None:
        out["overlap"] = cover.to_json()
    used = [z.device_id for z in zones] + ([cement.zone.device_id] if cement is not None else [])
    out["device_references"] = _references(catalog, used)
    out["structures_source"] = source
    return out


def _protection_args(args: argparse.Namespace):
    """--dissection / --thermocouple as protection elements."""
    from guideplan.planning.protection import Dissection, Thermocouple

    dissections = []
    for text in args.dissection:
        parts = text.split(":")
        if len(parts) not in (3, 4) or (len(parts) == 4 and parts[3] not in ("hydro", "co2")):
            raise GuideplanError(
                f"{text!r} is not a dissection.",
                hint="Give --dissection STRUCTURE:X,Y,Z:MM[:hydro|co2], e.g. "
                "--dissection skin:-40,80,0:8:co2.",
            )
        mm = _parse_numbers(parts[2], 1, "8")[0]
        agent = parts[3] if len(parts) == 4 else "hydro"
        point = tuple(float(v) for v in _parse_point(parts[1]))
        dissections.append(Dissection(parts[0], point, agent, displacement_mm=mm))
    thermocouples = []
    for text in args.thermocouple:
        point, _, warn = text.partition(":")
        limit = _parse_numbers(warn, 1, "45")[0] if warn else None
        xyz = tuple(float(v) for v in _parse_point(point))
        thermocouples.append(Thermocouple(xyz, warn_c=limit))
    return dissections, thermocouples


def _references(catalog, device_ids) -> list[dict]:
    """Where the figures of the devices used come from (for reports)."""
    from guideplan.planning.devices import device_references

    seen = dict.fromkeys(d for d in device_ids if d and d in catalog)
    return [device_references(catalog.get(d)) for d in seen]


def _parse_path(text: str):
    if ":" not in text:
        raise GuideplanError(
            f"{text!r} is not a needle path.",
            hint="Give --extra-path ENTRY:TARGET, e.g. --extra-path -40,110,1:-2,40,1.",
        )
    a, b = text.split(":", 1)
    return _parse_point(a), _parse_point(b)


def _print_treatment(doc: dict) -> None:
    print("treatment (estimates):")
    for zone in doc["zones"]:
        fig = zone["figures"]
        dims = zone.get("dimensions") or {}
        size = (
            f"{dims['length_mm']:.0f} x {dims['width_mm']:.0f} mm, "
            if dims.get("length_mm")
            else ""
        )
        cover = (
            ""
            if fig["coverage_pct"] is None
            else (
                f", lesion coverage {fig['coverage_pct']:.1f} %, min margin "
                f"{fig['min_margin_mm']:+.1f} mm"
            )
        )
        print(
            f"  {zone['model']} ({zone['device'] or 'cement'}): {size}"
            f"{zone['volume_ml']:.2f} mL at {zone['center_lps']}{cover}"
        )
        for d in fig["distances"]:
            at_least = ">= " if d.get("lower_bound") else ""
            print(
                f"    {d['structure']}: {at_least}{d['distance_mm']:.1f} mm from the edge "
                f"(safety {d['threshold_mm']:g} mm)"
            )
    fill = (doc.get("cement") or {}).get("fill")
    if fill:
        body = fill["vertebral_body_fill_pct"]
        print(
            f"  cement {fill['placed_ml']:.2f} mL"
            + (
                ""
                if body is None
                else f", {body:.1f} % of the vertebral body "
                f"(strength {fill['strength_target_pct']:g} %)"
            )
        )
    _print_fracture(doc.get("fracture_risk"))
    for w in doc["warnings"]:
        print(f"  [{w['severity']}] {w['code']}: {w['message']}")
    print(f"  {doc['estimate_statement']}")


def _print_fracture(fracture: dict | None) -> None:
    score = (fracture or {}).get("score")
    if not score:
        return
    total = score["total"] if score["complete"] else f"{score['min']}-{score['max']}"
    print(f"  {score['system']} {total}: {score['category']}")
    for c in score["components"]:
        points = "?" if c["points"] is None else c["points"]
        print(
            f"    {c['name']}: {points} ({c['value'] or 'not known'}; {c['origin']}) {c['detail']}"
        )
    cons = fracture.get("consolidation")
    if cons and cons["fill_pct"] is not None:
        print(
            f"    cement fill {cons['fill_pct']:.1f} % of the {cons['measure']} "
            f"(target {cons['target_pct']:g} %)"
        )


def _plan_case(args: argparse.Namespace) -> int:
    import numpy as np

    from guideplan.model.case import open_case
    from guideplan.model.nodes import TrajectoryNode
    from guideplan.model.treatment import evaluate_scene, treatment_context
    from guideplan.planning.devices import load_catalog
    from guideplan.planning.path_analysis import PathContext, analyze_path

    scene = open_case(args.case)
    catalog = load_catalog(*args.catalog)
    ctx = treatment_context(scene, margin_mm=args.margin_mm, level=args.level)
    path_ctx = PathContext(ctx.volume, ctx.structures, lesion=ctx.lesion)
    trajectories = []
    for node in scene.nodes_of(TrajectoryNode):
        entry = {"id": node.id, "name": node.name, "device_id": node.device_id}
        try:
            device = catalog.get(node.device_id) if node.device_id else catalog.default_needle()
            ca.needle_path(ctx.volume, np.asarray(node.entry), np.asarray(node.target))
            entry["path"] = analyze_path(path_ctx, node.entry, node.target, device).to_json()
        except GuideplanError as exc:
            entry["error"] = str(exc)
        trajectories.append(entry)
    plan = evaluate_scene(scene, catalog, ctx)
    doc = {
        "case": str(args.case),
        "trajectories": trajectories,
        "zones": [o.to_json() for o in plan.outcomes],
        "treatment": None if plan.evaluation is None else plan.evaluation.to_json(),
    }
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    for t in trajectories:
        if "error" in t:
            print(f"{t['name'] or t['id']}: {t['error']}")
            continue
        path = t["path"]
        print(
            f"{t['name'] or t['id']} ({t['device_id'] or 'needle'}): {path['length_mm']} mm, "
            f"{len(path['warnings'])} path warning(s)"
        )
    for o in doc["zones"]:
        if "error" in o:
            print(f"zone {o['name'] or o['node_id']}: {o['error']}")
    if doc["treatment"] is not None:
        _print_treatment(doc["treatment"])
    else:
        print("no zone to evaluate")
    return 0


def _cmd_suggest(args: argparse.Namespace) -> int:
    from collections import Counter

    import numpy as np

    from guideplan.core.resources import load_json
    from guideplan.planning.context import mask_role
    from guideplan.planning.devices import load_catalog
    from guideplan.planning.structures import StructureField, safety_distance_mm
    from guideplan.planning.suggest import (
        position_from_dicom,
        reach_box,
        suggest_entries,
        suggestion_notes,
    )

    ca.known_devices(args)
    volume, named, source = _planning_inputs(args)
    target = ca.inside(volume, _parse_point(args.target, "--target"), "--target")
    scan_position = position_from_dicom(volume.meta.get("patient_position", ""))
    if args.position is None:
        position = scan_position
    else:
        position = None if args.position == "any" else args.position
    vertebral_body = None
    if named is not None:  # vertebra masks say what the target is; they are not to spare
        bodies = {n: m for n, m in named.items() if mask_role(n) == "vertebral_body"}
        named = {n: m for n, m in named.items() if n not in bodies}
        if bodies:
            vertebral_body = np.logical_or.reduce([m.astype(bool) for m in bodies.values()])
        # only what the needle can reach: distance fields on a box, not the whole CT
        catalog = load_catalog(*args.catalog)
        device = catalog.get(args.device) if args.device else catalog.default_needle()
        box = reach_box(volume, target, device, load_json("planning.json"), position)
        for name, mask in named.items():
            cropped = np.zeros(mask.shape, dtype=bool)
            cropped[box] = mask[box]
            named[name] = cropped
    ctx, device, source = _planning_context(args, inputs=(volume, named, source))
    level, found = None, None
    if named is None:  # automatic: the canal and bodies on a box around the target
        from guideplan.planning.suggest_anatomy import find_target_vertebra

        box_mm = float(ctx.settings["vertebral_access"]["auto_box_mm"])
        auto = find_target_vertebra(volume, target, box_mm)
        found = auto.finding
        if found.usable and auto.canal is not None and auto.canal.any():
            vertebral_body, level = auto.body, auto.level
            ctx.structures.append(
                StructureField.from_mask(
                    "spinal canal (near the target)",
                    auto.canal,
                    volume,
                    safety_distance_mm("canal", ctx.settings),
                    finding=found,
                )
            )
    result = suggest_entries(
        ctx, target, device, position=position, vertebral_body=vertebral_body, level=level
    )
    ranked = result.ranked
    doc = {
        "target_lps": [float(v) for v in result.target],
        "position": position or "any",
        "scan_position": scan_position or "unknown",
        "device": device.id,
        "structures_source": source,
        "target_anatomy": result.anatomy.to_json() if result.anatomy else None,
        "evaluated": len(result.candidates),
        "valid": len(ranked),
        "suggestions": [c.to_json() for c in ranked[: args.top]],
        "best_per_route": {k: c.to_json() for k, c in result.best_per_route().items()},
        "rejected": dict(Counter(c.reason for c in result.candidates if not c.valid)),
        "notes": suggestion_notes(result, position, scan_position),
    }
    if found is not None:
        doc["canal_finding"] = found.to_json()
    canal = ctx.canal_status()
    doc["structures_status"] = {} if canal is None else {"canal": canal.to_json()}
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    print(f"{doc['valid']} of {doc['evaluated']} paths are possible ({source} structures)")
    for note in doc["notes"]:
        print(f"Note: {note}")
    for rank, c in enumerate(doc["suggestions"], start=1):
        extra = ""
        if "axial_from_sagittal_deg" in c:
            extra = f", {c['axial_from_sagittal_deg']:.0f} deg from sagittal"
        print(
            f"{rank}. entry {c['entry_lps']}  {c['route']:<22} length {c['length_mm']} mm, "
            f"clearance {c['clearance_mm']} mm, cc {c['craniocaudal_deg']:+.1f} deg{extra}, "
            f"score {c['score']:.3f}"
        )
    return 0


def _cmd_register(args: argparse.Namespace) -> int:
    import numpy as np

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
    if mask is not None:
        ca.inside(fixed, np.array(mask[:3]), "--mask-lps (its centre)")
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
    from guideplan.core import validate

    return [float(x) for x in validate.numbers(text, example.split()[0], count, example)]


def _cmd_segment(args: argparse.Namespace) -> int:
    import numpy as np

    from guideplan.io.seg_io import write_labelmap, write_seg
    from guideplan.processing.lesion_metrics import lesion_metrics
    from guideplan.processing.segmentation import GrowParams, grow_lesion

    volume = _load_for_render(Path(args.path), args.series)
    seed = ca.inside(volume, _parse_point(args.seed, "--seed"), "--seed")
    grow_range = tuple(_parse_numbers(args.range, 2, "--range -20,80")) if args.range else None
    overrides = {}
    if args.extension_mm is not None:
        overrides["soft_tissue_extension_mm"] = args.extension_mm
    start = time.perf_counter()
    result = grow_lesion(
        volume, seed, GrowParams.from_resources(**overrides), grow_range=grow_range
    )  # type: ignore[arg-type]
    grow_s = time.perf_counter() - start
    if result.n_voxels == 0:
        raise GuideplanError(
            f"Nothing was segmented at {args.seed}: {'; '.join(result.notes) or 'empty'}.",
            hint="Check the seed is inside the lesion (LPS mm), or give --range.",
        )
    mask = result.full_mask(volume.array.shape)
    metrics = lesion_metrics(volume, mask)
    doc = metrics.to_json()
    doc.update(
        {
            "seed_lps": [float(v) for v in seed],
            "grow_range": [round(v, 1) for v in result.grow_range],
            "boundary_range": [round(v, 1) for v in result.boundary_range],
            "mode": result.mode,
            "grow_s": round(grow_s, 3),
            "notes": result.notes + doc["notes"],
            "out": None,
        }
    )
    if args.out:
        labels = mask.astype(np.uint8)
        out = Path(args.out)
        if out.suffix.lower() == ".dcm":
            written = write_seg(out, labels, volume, manual=False)
        else:
            written = write_labelmap(out, labels, volume)
        doc["out"] = str(written)
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    d1, d2, d3 = doc["diameters_mm"]
    hu = doc["hu"]
    print(f"lesion: {doc['volume_ml']:.2f} mL, {d1} x {d2} x {d3} mm, {doc['type']}")
    print(
        f"HU mean {hu['mean']}, min {hu['min']}, max {hu['max']} "
        f"(bone around: {doc['bone_reference_hu']})"
    )
    print(
        f"cortical breach: {'yes' if doc['cortical_breach'] else 'no'}; posterior wall: "
        f"{ {True: 'involved', False: 'intact', None: 'n/a'}[doc['posterior_wall']] }"
    )
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
    written = {
        name: str(write_labelmap(out / f"{name}.nrrd", np.asarray(a, dtype=np.uint8), volume))
        for name, a in files.items()
    }
    doc = result.summary(volume.spacing)
    doc["files"] = written
    doc["bone_labels"] = {"cortical": CORTICAL, "trabecular": CORTICAL + 1}
    doc["time_s"] = round(time.perf_counter() - start, 2)
    (out / "anatomy.json").write_text(json.dumps(doc, indent=2), encoding="utf-8")
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    print(
        f"bone {doc['bone_ml']} mL (cortical {doc['cortical_ml']} mL), canal "
        f"{doc['canal_ml']} mL, body {doc['body_ml']} mL"
    )
    names = (
        ", ".join(v["name"] + (" (partial)" if v["partial"] else "") for v in doc["vertebrae"])
        or "none"
    )
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
