"""Automatic entry suggestions: analytic phantoms and the lumbar sample case."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from guideplan.core.volume import Volume
from guideplan.io import load_series
from guideplan.planning.devices import load_catalog
from guideplan.planning.path_analysis import PathContext, analyze_path
from guideplan.planning.structures import StructureField
from guideplan.planning.suggest import suggest_entries

SAMPLES = Path(__file__).resolve().parents[2] / "sample_data"
LUMBAR = SAMPLES / "case01_l2_lytic_rfa_cement"


def _phantom():
    """Body: muscle cylinder (radius 80 mm, axis z) in air; bone ball (r 20) at the
    centre; a 'cord' rod (r 5) 30 mm posterior of the centre along z."""
    n = 181
    vol = Volume(np.full((n // 2, n, n), -1000, np.int16), (1.0, 1.0, 1.0), (-90.0, -90.0, -45.0))
    k, j, i = np.indices(vol.array.shape)
    x, y, z = i - 90.0, j - 90.0, k - 45.0
    vol.array[x**2 + y**2 <= 80**2] = 40
    vol.array[x**2 + y**2 + z**2 <= 20**2] = 300
    cord = (x**2 + (y - 30) ** 2) <= 25
    vol.meta["modality"] = "CT"
    return vol, cord


def test_best_path_avoids_the_cord_and_stays_on_the_reachable_side():
    vol, cord = _phantom()
    field = StructureField.from_mask("cord", cord, vol, threshold_mm=10.0)
    ctx = PathContext(vol, [field])
    needle = load_catalog().get("needle-18g-150")
    result = suggest_entries(ctx, (0.0, 0.0, 0.0), needle, position="prone")
    best = result.ranked[0]
    assert best.entry[1] > 0  # prone: posterior skin
    report = analyze_path(ctx, best.entry, (0.0, 0.0, 0.0), needle)
    codes = {w.code for w in report.warnings}
    assert "CROSSES_STRUCTURE" not in codes
    assert report.distances[0].distance_mm > 0
    # Straight posterior would hit the cord: that direction must be rejected.
    straight = min(result.candidates, key=lambda c: np.linalg.norm(c.direction - [0, 1, 0]))
    assert not straight.valid and straight.reason == "crosses a structure"
    # Every valid path leaves the body on the skin (radius 80 mm) and is that long.
    for cand in result.ranked[:20]:
        assert np.hypot(cand.entry[0], cand.entry[1]) == pytest.approx(80.0, abs=1.5)
        assert cand.length_mm == pytest.approx(np.linalg.norm(cand.entry), abs=0.01)


def test_supine_uses_the_anterior_skin():
    vol, cord = _phantom()
    ctx = PathContext(vol, [StructureField.from_mask("cord", cord, vol, 10.0)])
    result = suggest_entries(
        ctx, (0.0, 0.0, 0.0), load_catalog().get("needle-18g-150"), position="supine"
    )
    assert all(c.entry[1] < 0 for c in result.ranked)


def test_gas_and_short_needles_are_rejected():
    vol, _ = _phantom()
    k, j, i = np.indices(vol.array.shape)
    bowel = (i - 90.0) ** 2 + (j - 90.0 + 45.0) ** 2 + (k - 45.0) ** 2 <= 12**2
    vol.array[bowel] = -1000  # a gas-filled bowel loop in front of the target
    ctx = PathContext(vol, [])
    result = suggest_entries(
        ctx, (0.0, 0.0, 0.0), load_catalog().get("needle-16g-100"), position="supine"
    )
    reasons = {c.reason for c in result.candidates if not c.valid}
    assert "crosses gas (bowel/lung)" in reasons
    for cand in result.ranked:
        assert cand.length_mm + 20 <= 100


def test_a_lung_cut_by_the_field_of_view_is_gas_inside_the_patient_not_outside():
    """Lungs (and bowel) run out of the first and last slices of a real CT. Air that
    touches only those faces is inside the patient: a ray through it crosses gas; it
    must not be taken for the skin."""
    vol, _ = _phantom()
    k, j, i = np.indices(vol.array.shape)
    lung = ((i - 90.0 - 40.0) ** 2 + (j - 90.0) ** 2 <= 22**2) & (k >= 0)  # every slice
    vol.array[lung] = -850
    ctx = PathContext(vol, [])
    result = suggest_entries(
        ctx, (0.0, 0.0, 0.0), load_catalog().get("needle-18g-150"), position="left-up"
    )
    assert result.ranked
    for cand in result.ranked:  # valid paths go around the lung; none ends inside it
        assert np.hypot(cand.entry[0] - 40.0, cand.entry[1]) > 22.0
        assert np.hypot(cand.entry[0], cand.entry[1]) > 70.0 or abs(cand.entry[2]) > 40.0
    through = [c for c in result.candidates if c.direction[0] > 0.98]
    assert through and all(c.reason == "crosses gas (bowel/lung)" for c in through)


@pytest.mark.skipif(not LUMBAR.is_dir(), reason="sample data missing")
def test_lumbar_case_top_suggestion_is_posterior_and_clear_of_the_canal():
    vol = load_series(LUMBAR / "ct")
    canal = sitk.GetArrayFromImage(sitk.ReadImage(str(LUMBAR / "truth" / "canal.nrrd"))) > 0
    truth = json.loads((LUMBAR / "truth" / "truth.json").read_text())
    target = np.array(truth["lesion"]["center_lps"])
    ctx = PathContext(vol, [StructureField.from_mask("canal", canal, vol, 10.0)])
    trocar = load_catalog().get("trocar-11g-125")
    result = suggest_entries(ctx, target, trocar, position="prone")
    best = result.ranked[0]
    assert best.route.startswith(("transpedicular", "parapedicular"))
    assert best.entry[1] > target[1] + 30  # entry on the back
    report = analyze_path(ctx, best.entry, target, trocar)
    assert report.distances[0].distance_mm > 2.0
    assert "CROSSES_STRUCTURE" not in {w.code for w in report.warnings}
    routes = result.best_per_route()
    assert any(r.endswith("left") for r in routes) and any(r.endswith("right") for r in routes)


@pytest.mark.skipif(not LUMBAR.is_dir(), reason="sample data missing")
def test_cli_plan_and_suggest_json():
    common = [
        str(LUMBAR),
        "--target",
        "-4,44,1",
        "--labels",
        str(LUMBAR / "truth"),
        "--device",
        "trocar-11g-125",
        "--json",
    ]
    plan = subprocess.run(
        [sys.executable, "-m", "guideplan.cli", "plan", *common, "--entry", "-88,99,18"],
        capture_output=True,
        text=True,
        check=True,
    )
    doc = json.loads(plan.stdout)
    assert doc["toward"] == "left" and doc["craniocaudal_deg"] < 0
    assert {d["structure"] for d in doc["distances"]} == {"canal"}
    sug = subprocess.run(
        [
            sys.executable,
            "-m",
            "guideplan.cli",
            "suggest",
            *common,
            "--position",
            "prone",
            "--top",
            "3",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    out = json.loads(sug.stdout)
    assert len(out["suggestions"]) == 3
    assert out["suggestions"][0]["score"] >= out["suggestions"][1]["score"]


@pytest.mark.parametrize(("option", "expected"), [([], "prone"), (["--position", "any"], "any")])
def test_cli_suggest_takes_the_position_from_the_images(option, expected):
    """The lumbar sample's planning CT is prone (HFP): by default only the back is
    reachable, as in the window; --position any lifts that."""
    args = [str(LUMBAR), "--target", "-4,44,1", "--labels", str(LUMBAR / "truth"), "--json"]
    run = subprocess.run(
        [sys.executable, "-m", "guideplan.cli", "suggest", *args, *option],
        capture_output=True,
        text=True,
        check=True,
    )
    out = json.loads(run.stdout)
    assert out["position"] == expected
    if expected == "prone":
        assert all(s["entry_lps"][1] > 44.0 for s in out["suggestions"])


CASE_EXPECTATIONS = {
    # case: (position, what a radiologist would accept)
    "case01_l2_lytic_rfa_cement": ("prone", "vertebral"),
    "case03_t10_blastic": ("prone", "vertebral"),
    "case02_iliac_cryo_skin": (None, "short"),  # from the DICOM patient position
}


@pytest.mark.parametrize("case", sorted(CASE_EXPECTATIONS))
def test_top_suggestion_with_automatic_structures_is_sensible(case):
    """The whole chain as the GUI runs it: structures found automatically on the CT, the
    suggestion's best path, then checked against the generator's true canal."""
    from guideplan.planning.structures import auto_structures

    folder = SAMPLES / case
    vol = load_series(folder / "ct")
    truth = json.loads((folder / "truth" / "truth.json").read_text())
    target = np.array(truth["lesion"]["center_lps"])
    position, kind = CASE_EXPECTATIONS[case]
    if position is None:
        position = "prone" if vol.meta.get("patient_position", "").endswith("P") else "supine"
    trocar = load_catalog().get("trocar-11g-125")
    result = suggest_entries(PathContext(vol, auto_structures(vol)), target, trocar, position)
    assert result.ranked, "no path found"
    best = result.ranked[0]
    canal = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "truth" / "canal.nrrd"))) > 0
    truth_ctx = PathContext(vol, [StructureField.from_mask("canal", canal, vol, 10.0)])
    report = analyze_path(truth_ctx, best.entry, target, trocar)
    codes = {w.code for w in report.warnings}
    assert not codes & {"CROSSES_STRUCTURE", "CROSSES_PLEURA_OR_BOWEL", "NO_BONE_ACCESS"}, codes
    assert "NEEDLE_TOO_SHORT" not in codes and "STEEP_ANGLE" not in codes
    if kind == "vertebral":
        assert best.route.startswith(("transpedicular", "parapedicular")), best.route
        assert best.entry[1] > target[1] + 30  # through the back
        assert report.distances[0].distance_mm > 2.0  # clear of the true canal
    else:  # a superficial iliac lesion: a short straight path on its own side
        assert best.length_mm < 60.0
        assert np.sign(best.entry[0]) == np.sign(target[0])


def test_a_vertebral_body_is_reached_from_behind():
    """Without a position (or supine), the thoracic sample's vertebral target gets no
    anterior path through the chest: posterior routes, or none at all when supine."""
    folder = SAMPLES / "case03_t10_blastic"
    vol = load_series(folder / "ct")
    canal = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "truth" / "canal.nrrd"))) > 0
    ctx = PathContext(vol, [StructureField.from_mask("spinal canal", canal, vol, 10.0)])
    target = np.array(
        json.loads((folder / "truth" / "truth.json").read_text())["lesion"]["center_lps"]
    )
    trocar = load_catalog().get("trocar-11g-125")
    anywhere = suggest_entries(ctx, target, trocar, position=None)
    assert anywhere.ranked
    assert all(c.direction[1] >= 0.17 for c in anywhere.candidates)
    assert anywhere.ranked[0].entry[1] > target[1] + 30
    supine = suggest_entries(ctx, target, trocar, position="supine")
    assert supine.candidates == [] and supine.ranked == []
    # Bone with no spinal canal beside it (the phantom's ball) keeps every direction.
    phantom, _ = _phantom()
    free = suggest_entries(PathContext(phantom, []), (0.0, 0.0, 0.0), trocar, position="supine")
    assert free.ranked and all(c.entry[1] < 0 for c in free.ranked)


def test_air_under_the_back_is_outside_and_gas_under_the_skin_is_inside():
    """The patient lies on a couch with a 1 mm air gap under the back (open to the
    sides): the skin there is reachable, the gap is not gas in the patient. A gas bubble
    3 mm under the skin stays inside: rays through it cross gas."""
    vol, _ = _phantom()
    k, j, i = np.indices(vol.array.shape)
    x, y = i - 90.0, j - 90.0
    vol.array[(y >= 82) & (y <= 86)] = 200  # couch, a 1 mm gap below the back (y = 80)
    bubble_centre = np.array([-73.0, 0.0, 0.0]) @ _rot(-60)  # posterolateral, 7 mm deep
    bubble = (x - bubble_centre[0]) ** 2 + (y - bubble_centre[1]) ** 2 + (k - 45.0) ** 2 <= 16
    vol.array[bubble] = -1000
    ctx = PathContext(vol, [])
    result = suggest_entries(
        ctx, (0.0, 0.0, 0.0), load_catalog().get("needle-18g-150"), position="prone"
    )
    straight = min(result.candidates, key=lambda c: np.linalg.norm(c.direction - [0, 1, 0]))
    assert straight.valid, straight.reason
    assert straight.entry[1] == pytest.approx(80.0, abs=1.5)
    toward = bubble_centre / np.linalg.norm(bubble_centre)
    through = [c for c in result.candidates if c.direction @ toward > 0.9995]
    assert through and all(c.reason == "crosses gas (bowel/lung)" for c in through)
    for cand in result.ranked:  # no entry inside the bubble
        assert np.linalg.norm(cand.entry - bubble_centre) > 4.0


def _rot(deg: float) -> np.ndarray:
    """Rotation about z (LPS), row-vector convention."""
    a = np.radians(deg)
    return np.array([[np.cos(a), np.sin(a), 0.0], [-np.sin(a), np.cos(a), 0.0], [0, 0, 1]])


def test_thoracic_vertebral_routes_are_named_costotransverse_not_parapedicular():
    """The T10 sample: the spine lies between the lungs, so a path beside the pedicle
    is the costotransverse route; a given lumbar level overrides that reading."""
    folder = SAMPLES / "case03_t10_blastic"
    vol = load_series(folder / "ct")
    canal = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "truth" / "canal.nrrd"))) > 0
    ctx = PathContext(vol, [StructureField.from_mask("spinal canal", canal, vol, 10.0)])
    target = np.array(
        json.loads((folder / "truth" / "truth.json").read_text())["lesion"]["center_lps"]
    )
    trocar = load_catalog().get("trocar-11g-125")
    result = suggest_entries(ctx, target, trocar, position="prone")
    assert result.anatomy.vertebral and result.anatomy.thoracic
    approaches = {c.approach for c in result.ranked}
    assert "costotransverse" in approaches and "parapedicular" not in approaches
    assert result.ranked[0].approach in ("transpedicular", "costotransverse")
    as_lumbar = suggest_entries(ctx, target, trocar, position="prone", level="L2")
    assert not as_lumbar.anatomy.thoracic
    assert "costotransverse" not in {c.approach for c in as_lumbar.ranked}
