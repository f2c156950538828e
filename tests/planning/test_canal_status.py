"""The canal's status reaches every check: unknown is never reported as safe.

A needle or a zone far from a canal that is only *uncertain* (or was not found) must
raise CANAL_NOT_IDENTIFIED, because the true canal may be elsewhere; a canal found, given
as a mask, drawn or confirmed by the user stops that warning; a user's "no canal near
this plan" does too. Masks named as the cord or the canal under their usual names count
as the canal.
"""

import numpy as np
import pytest

from guideplan.core.status import Finding, Status
from guideplan.core.volume import Volume
from guideplan.planning.context import TreatmentContext, mask_role
from guideplan.planning.devices import load_catalog
from guideplan.planning.evaluate import evaluate_plan
from guideplan.planning.path_analysis import PathContext, analyze_path
from guideplan.planning.structures import (
    StructureField,
    canal_status,
    is_canal_name,
    structures_from_masks,
)
from guideplan.planning.zones import ablation_zone


def _body() -> Volume:
    """Muscle (40 HU) in a 100 mm cube of air, a bone block (250 HU) in the middle."""
    n = 101
    arr = np.full((n, n, n), -1000, np.int16)
    arr[5:-5, 5:-5, 5:-5] = 40
    arr[35:66, 35:66, 35:66] = 250
    return Volume(arr, (1.0, 1.0, 1.0), (-50.0, -50.0, -50.0))


def _canal(volume: Volume, x_mm: float, y_mm: float = 30.0) -> np.ndarray:
    """A tube of radius 6 mm along z at (x, y) = (x_mm, y_mm)."""
    k, j, i = np.indices(volume.array.shape)
    x, y = i - 50.0, j - 50.0
    return ((x - x_mm) ** 2 + (y - y_mm) ** 2 <= 36.0) & (np.abs(k - 50) <= 40)


def _field(volume, mask, finding=None, name="spinal canal"):
    return StructureField.from_mask(name, mask, volume, 10.0, finding=finding)


ENTRY, TARGET = (0.0, -45.0, 0.0), (0.0, 0.0, 0.0)


def _codes(report) -> set[str]:
    return {w.code for w in report.warnings}


@pytest.fixture(scope="module")
def volume():
    return _body()


@pytest.fixture(scope="module")
def needle():
    return load_catalog().default_needle()


def test_a_path_far_from_an_uncertain_canal_is_not_reported_safe(volume, needle):
    far = _field(volume, _canal(volume, 35.0), Finding.uncertain("off the spine's midline"))
    report = analyze_path(PathContext(volume, [far]), ENTRY, TARGET, needle)
    assert "CANAL_NOT_IDENTIFIED" in _codes(report)
    assert "NEAR_STRUCTURE" not in _codes(report)
    assert report.to_json()["structures_status"]["canal"]["status"] == "uncertain"


def test_a_found_canal_far_away_raises_no_canal_warning(volume, needle):
    far = _field(volume, _canal(volume, 35.0), Finding.found("arch and bodies agree"))
    report = analyze_path(PathContext(volume, [far]), ENTRY, TARGET, needle)
    assert not _codes(report) & {"CANAL_NOT_IDENTIFIED", "NEAR_STRUCTURE", "CROSSES_STRUCTURE"}


def test_a_canal_not_found_warns_and_says_why(volume, needle):
    ctx = PathContext(volume, [], canal_finding=Finding.not_found("no vertebral arch"))
    report = analyze_path(ctx, ENTRY, TARGET, needle)
    warning = next(w for w in report.warnings if w.code == "CANAL_NOT_IDENTIFIED")
    assert "no vertebral arch" in warning.message
    assert warning.values["status"] == "not_found"


def test_the_users_no_canal_here_silences_the_warning(volume, needle):
    none_here = Finding(Status.NOT_FOUND, "marked by the user", 1.0, "user")
    auto = _field(volume, _canal(volume, 35.0), Finding.uncertain("weak"))
    ctx = PathContext(volume, [auto], canal_finding=none_here)
    assert "CANAL_NOT_IDENTIFIED" not in _codes(analyze_path(ctx, ENTRY, TARGET, needle))


def test_a_needle_near_an_uncertain_canal_still_warns_about_it(volume, needle):
    near = _field(volume, _canal(volume, 10.0, 0.0), Finding.uncertain("weak"))
    codes = _codes(analyze_path(PathContext(volume, [near]), ENTRY, TARGET, needle))
    assert {"CANAL_NOT_IDENTIFIED", "NEAR_STRUCTURE"} <= codes


def test_a_drawn_canal_wins_over_the_automatic_one():
    volume = _body()
    auto = _field(volume, _canal(volume, 35.0), Finding.uncertain("weak"))
    drawn = _field(volume, _canal(volume, 20.0), Finding.given("user"), name="Spinal canal")
    assert canal_status([auto, drawn], None).source == "user"
    assert canal_status([auto], None).status is Status.UNCERTAIN
    assert canal_status([], None) is None


@pytest.mark.parametrize(
    "name", ["spinal_cord", "Spinal cord", "canal", "spinal_canal", "thecal sac", "Canal L2"]
)
def test_cord_and_canal_masks_are_the_canal_whatever_their_usual_name(name):
    assert is_canal_name(name)
    assert mask_role(name) == "canal"


@pytest.mark.parametrize("name", ["costal_cartilages", "aorta", "record", "vertebral_body_L2"])
def test_other_structures_are_not_the_canal(name):
    assert not is_canal_name(name)


def test_a_spinal_cord_mask_from_labels_is_a_given_canal(volume, needle):
    fields = structures_from_masks({"spinal_cord": _canal(volume, 35.0)}, volume)
    assert fields[0].is_canal and fields[0].finding.source == "labels"
    report = analyze_path(PathContext(volume, fields), ENTRY, TARGET, needle)
    assert "CANAL_NOT_IDENTIFIED" not in _codes(report)


def test_a_zone_next_to_an_uncertain_canal_warns_that_the_canal_is_unknown(volume):
    catalog = load_catalog()
    device = catalog.of_kind("mw_antenna")[0]
    canal = _canal(volume, 35.0)
    lesion = np.zeros(volume.array.shape, bool)
    lesion[45:56, 45:56, 45:56] = True
    for finding, expect in (
        (Finding.uncertain("weak"), True),
        (Finding.found("ok"), False),
        (Finding.given("user"), False),
    ):
        ctx = TreatmentContext(
            volume, lesion=lesion, structures=[_field(volume, canal, finding)], bone=None
        )
        zone = ablation_zone(ctx, device, [(ENTRY, TARGET)])
        evaluation = evaluate_plan(ctx, [zone])
        assert ("CANAL_NOT_IDENTIFIED" in evaluation.codes()) is expect, finding
        assert evaluation.to_json()["structures_status"]["canal"]["status"] == str(finding.status)
