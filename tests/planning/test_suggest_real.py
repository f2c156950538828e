"""Entry suggestions on a real CT (TotalSegmentator's abdomen, 3 mm, supine), checked
against its reference masks: a target in the L2 vertebral body, planned prone."""

from __future__ import annotations

import numpy as np
import pytest

from guideplan.planning.devices import load_catalog
from guideplan.planning.path_analysis import PathContext
from guideplan.planning.structures import StructureField, structures_from_masks
from guideplan.planning.suggest import position_from_dicom, suggest_entries
from tests.real.real_ct import abdomen, centroid_lps, rotated, turned_prone

#: Reference masks a needle to L2 must keep >= 5 mm from (issue 11's targets).
ORGANS = (
    "aorta",
    "inferior_vena_cava",
    "kidney_left",
    "kidney_right",
    "colon",
    "small_bowel",
    "duodenum",
    "stomach",
    "lungs",
)
CORD_MM = 3.0
ORGAN_MM = 5.0
NEEDLE = "needle-18g-150"


def _variant(name: str):
    case = abdomen()
    if name == "turned prone":
        return turned_prone(case)
    if name == "rotated":
        return rotated(case, (6.0, 0.0, 10.0), keep=list(case.masks))
    return case


def _distance_mm(volume, mask: np.ndarray, entry, target, radius_mm: float) -> float:
    """From the needle's surface to the nearest voxel centre of ``mask`` (brute force,
    independent of the planner's distance fields)."""
    s = np.arange(0.0, np.linalg.norm(entry - target) + 0.25, 0.5)
    u = (entry - target) / np.linalg.norm(entry - target)
    path = target + s[:, None] * u
    voxels = volume.index_to_physical(np.argwhere(mask)[:, ::-1].astype(float))
    lo, hi = path.min(axis=0) - 40.0, path.max(axis=0) + 40.0
    voxels = voxels[np.all((voxels >= lo) & (voxels <= hi), axis=1)]
    if len(voxels) == 0:
        return np.inf
    d = np.sqrt(((path[:, None, :] - voxels[None, :, :]) ** 2).sum(axis=2)).min()
    return float(d) - radius_mm


def _check_top(case, result, target, needle) -> None:
    assert result.anatomy is not None and result.anatomy.vertebral
    assert result.ranked, {c.reason for c in result.candidates}
    best = result.ranked[0]
    assert best.approach in ("transpedicular", "parapedicular"), best.route
    assert best.entry[1] > target[1] + 30.0  # on the back (+y is posterior in LPS)
    cord = _distance_mm(
        case.volume, case.masks["spinal_cord"], best.entry, target, needle.radius_mm
    )
    assert cord >= CORD_MM, cord
    for name in ORGANS:
        d = _distance_mm(case.volume, case.masks[name], best.entry, target, needle.radius_mm)
        assert d >= ORGAN_MM, (name, d)
    label = best.to_json()
    assert label["approach"] == best.approach and label["side"] in ("left", "right")
    assert 0.0 < label["axial_from_sagittal_deg"] < 60.0
    assert label["length_mm"] == pytest.approx(np.linalg.norm(best.entry - target), abs=0.1)


@pytest.mark.parametrize("variant", ["as scanned", "turned prone", "rotated"])
def test_the_top_prone_path_to_l2_is_pedicular_and_clear_of_cord_and_organs(variant):
    """Structures from the reference masks, the body from the L2 body mask."""
    case = _variant(variant)
    volume = case.volume
    target = centroid_lps(volume, case.masks["vertebral_body_L2"])
    named = {n: case.masks[n] for n in ("spinal_cord", *ORGANS)}
    ctx = PathContext(volume, structures_from_masks(named, volume))
    needle = load_catalog().get(NEEDLE)
    result = suggest_entries(
        ctx, target, needle, position="prone", vertebral_body=case.masks["vertebral_body_L2"]
    )
    _check_top(case, result, target, needle)


def test_a_spinal_cord_mask_alone_makes_the_l2_target_vertebral():
    """No body mask: the target in bone close in front of a structure named
    'spinal_cord' is a vertebral body (not only a structure named 'canal')."""
    case = abdomen()
    target = centroid_lps(case.volume, case.masks["vertebral_body_L2"])
    cord = StructureField.from_mask("spinal_cord", case.masks["spinal_cord"], case.volume, 10.0)
    ctx = PathContext(case.volume, [cord])
    result = suggest_entries(ctx, target, load_catalog().get(NEEDLE), position="prone")
    assert result.anatomy.vertebral and "spinal canal or cord" in result.anatomy.how


def test_automatic_structures_give_the_same_kind_of_path():
    """The canal and the vertebral body found automatically around the target; the top
    path checked against the reference cord and organs."""
    from guideplan.planning.suggest_anatomy import find_target_vertebra

    case = abdomen()
    volume = case.volume
    target = centroid_lps(volume, case.masks["vertebral_body_L2"])
    auto = find_target_vertebra(volume, target, 70.0)
    if not auto.finding.usable:
        pytest.skip(f"the anatomy finder gives no canal here: {auto.finding.reason}")
    assert auto.body is not None
    fields = [StructureField.from_mask("spinal canal", auto.canal, volume, 10.0)]
    needle = load_catalog().get(NEEDLE)
    result = suggest_entries(
        PathContext(volume, fields), target, needle, position="prone", vertebral_body=auto.body
    )
    assert result.anatomy.how == "the target is in the vertebral body mask"
    _check_top(case, result, target, needle)


def test_the_supine_scan_by_default_gives_no_posterior_access():
    """The scan's own position (HFS): a vertebral body is reached from behind, so no
    path is offered; the same scan planned prone on request has paths on the back."""
    case = abdomen()
    volume = case.volume
    target = centroid_lps(volume, case.masks["vertebral_body_L2"])
    position = position_from_dicom(volume.meta.get("patient_position", ""))
    assert position == "supine"
    ctx = PathContext(
        volume, structures_from_masks({"spinal_cord": case.masks["spinal_cord"]}, volume)
    )
    needle = load_catalog().get(NEEDLE)
    body = case.masks["vertebral_body_L2"]
    supine = suggest_entries(ctx, target, needle, position=position, vertebral_body=body)
    assert supine.anatomy.vertebral and supine.candidates == []
    prone = suggest_entries(ctx, target, needle, position="prone", vertebral_body=body)
    assert prone.ranked and all(c.entry[1] > target[1] for c in prone.ranked)


def test_entries_on_the_back_lie_on_the_skin_not_beyond_the_mattress():
    """Each valid entry is where the body ends: from the target to the entry every voxel
    is tissue, the entry's voxel is air (the air between back and mattress is outside,
    not gas in the patient, so paths exist and stop at the skin)."""
    from guideplan.core import trajectory as tr

    case = abdomen()
    volume = case.volume
    target = centroid_lps(volume, case.masks["vertebral_body_L2"])
    ctx = PathContext(
        volume, structures_from_masks({"spinal_cord": case.masks["spinal_cord"]}, volume)
    )
    result = suggest_entries(
        ctx,
        target,
        load_catalog().get(NEEDLE),
        position="prone",
        vertebral_body=case.masks["vertebral_body_L2"],
    )
    assert len(result.ranked) >= 10
    for cand in result.ranked:
        s = np.arange(0.0, cand.length_mm + 0.25, 0.5)
        hu = tr.sample_nearest(volume.array, ctx.ijk(target + s[:, None] * cand.direction))
        assert hu[-1] <= -400 and np.all(hu[:-1] > -400)


def _cli_suggest(*args: str) -> dict:
    import json
    import subprocess
    import sys

    run = subprocess.run(
        [sys.executable, "-m", "guideplan.cli", "suggest", *args, "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(run.stdout)


def test_cli_with_reference_labels_plans_prone_on_request_and_says_the_patient_is_turned(
    tmp_path,
):
    """--labels with the cord under TotalSegmentator's name and a vertebra mask: the
    target is a vertebral body (the vertebra is not a structure to spare), the supine
    scan gives no path by default and says why; --position prone gives a labelled
    pedicular route and the note that the patient will be turned."""
    from tests.real.real_ct import ABDOMEN

    for name in ("spinal_cord", "vertebrae_L2", *ORGANS):
        (tmp_path / f"{name}.nii.gz").symlink_to(ABDOMEN / "reference" / f"{name}.nii.gz")
    case = abdomen()
    target = centroid_lps(case.volume, case.masks["vertebral_body_L2"])
    common = [
        str(ABDOMEN / "dicom"),
        "--target",
        ",".join(f"{v:.1f}" for v in target),
        "--labels",
        str(tmp_path),
    ]
    default = _cli_suggest(*common)
    assert default["position"] == "supine" and default["evaluated"] == 0
    assert default["target_anatomy"]["vertebral_body"]
    assert any("no posterior access" in n for n in default["notes"])
    prone = _cli_suggest(*common, "--position", "prone", "--top", "3")
    assert prone["scan_position"] == "supine" and prone["valid"] > 0
    assert any("turned prone" in n and "on the back" in n for n in prone["notes"])
    top = prone["suggestions"][0]
    assert top["approach"] in ("transpedicular", "parapedicular")
    assert top["side"] in ("left", "right") and top["entry_lps"][1] > target[1] + 30
    for key in ("length_mm", "craniocaudal_deg", "axial_from_sagittal_deg", "clearance_mm"):
        assert key in top
