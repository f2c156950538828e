"""Registration: conventions pinned on synthetic volumes, accuracy on the sample cases.

Ground truth is geometry: a moving volume made by changing only the *geometry* of the
fixed one (``A @ index_to_lps``) is exactly the fixed image seen through ``A``, so the
fixed->moving answer is ``A`` with no interpolation in the data. The sample cases carry
their true transforms in truth/truth.json (read by tests only).
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from guideplan.core import geometry
from guideplan.core.errors import CancelledError, RegistrationError
from guideplan.core.volume import Volume
from guideplan.processing import registration as reg

SAMPLES = Path(__file__).resolve().parents[2] / "sample_data"
CASES = sorted(p.name for p in SAMPLES.glob("case*") if (p / "truth" / "truth.json").exists())


# -- synthetic data ---------------------------------------------------------------------
def phantom(n: int = 48, spacing: float = 4.0) -> Volume:
    """An asymmetric torso-like CT: body, organs, a 'spine' of blocks, two bony spots."""
    origin = (-(n - 1) * spacing / 2,) * 3
    vol = Volume(np.zeros((n, n, n), np.int16), (spacing,) * 3, origin, meta={"modality": "CT"})
    k, j, i = np.indices((n, n, n))
    p = vol.index_to_physical(np.stack([i, j, k], -1).reshape(-1, 3)).reshape(n, n, n, 3)
    hu = np.full((n, n, n), -1000.0)

    def ellipsoid(centre, radii, value):
        hu[(((p - np.array(centre)) / np.array(radii)) ** 2).sum(-1) < 1] = value

    ellipsoid((0, 0, 0), (80, 60, 85), 30)
    ellipsoid((-30, 10, 10), (25, 20, 30), -100)
    ellipsoid((25, -15, -20), (20, 25, 20), 60)
    for z in (-60, -25, 10, 45):
        ellipsoid((0, 25, z), (18, 14, 12), 400)
    ellipsoid((40, 30, 30), (8, 8, 8), 1200)
    ellipsoid((-45, -20, -40), (6, 10, 6), 900)
    vol.array = hu.astype(np.int16)
    return vol


def seen_through(volume: Volume, motion: np.ndarray, **meta) -> Volume:
    """The same voxels placed so that fixed point p lies at moving point motion(p)."""
    m = motion @ volume.index_to_lps
    direction = m[:3, :3] @ np.diag(1.0 / np.asarray(volume.spacing))
    return Volume(volume.array, volume.spacing, tuple(m[:3, 3]), direction, {**volume.meta, **meta})


@pytest.fixture(scope="module")
def fixed() -> Volume:
    return phantom()


@pytest.fixture(scope="module")
def truth_motion() -> np.ndarray:
    return geometry.rigid_matrix((6.0, -4.0, 8.0), (20.0, -15.0, 30.0), (10.0, 5.0, 0.0))


@pytest.fixture(scope="module")
def moving(fixed, truth_motion) -> Volume:
    return seen_through(fixed, truth_motion)


def spread_points(n: int = 50) -> np.ndarray:
    return np.random.default_rng(0).uniform(-40.0, 40.0, (n, 3))


# -- landmarks ----------------------------------------------------------------------------
def test_landmark_fit_recovers_rigid_and_affine():
    rigid = geometry.rigid_matrix((3.0, -7.0, 12.0), (5.0, 40.0, -22.0), (1.0, 2.0, 3.0))
    pts = np.array([[0, 0, 0], [80, 0, 0], [0, 60, 0], [0, 0, 70], [30, 40, 50]], float)
    pairs = np.stack([pts, geometry.apply_affine(rigid, pts)], axis=1)
    assert np.allclose(reg.landmark_transform(pairs), rigid, atol=1e-9)
    affine = rigid.copy()
    affine[:3, :3] = affine[:3, :3] @ np.diag([1.05, 0.97, 1.1])
    pairs = np.stack([pts, geometry.apply_affine(affine, pts)], axis=1)
    assert np.allclose(reg.landmark_transform(pairs, "affine"), affine, atol=1e-9)


def test_landmark_fit_refuses_degenerate_sets():
    line = np.array([[[0, 0, 0], [1, 1, 1]], [[10, 0, 0], [11, 1, 1]], [[20, 0, 0], [21, 1, 1]]])
    with pytest.raises(RegistrationError, match="not on one line"):
        reg.landmark_transform(line)
    with pytest.raises(RegistrationError, match="at least 4"):
        reg.landmark_transform(line, "affine")
    with pytest.raises(RegistrationError):
        reg.landmark_transform([[[0, 0, 0]]])


def test_parse_landmarks_accepts_the_documented_formats():
    expected = np.array([[[0, 0, 0], [1, 2, 3]], [[4, 5, 6], [7, 8, 9]]], float)
    pairs = [{"fixed": [0, 0, 0], "moving": [1, 2, 3]}, {"fixed": [4, 5, 6], "moving": [7, 8, 9]}]
    for data in (
        {"pairs": pairs},
        pairs,
        expected.tolist(),
        {"fixed": [[0, 0, 0], [4, 5, 6]], "moving": [[1, 2, 3], [7, 8, 9]]},
    ):
        assert np.array_equal(reg.parse_landmarks(data), expected)
    with pytest.raises(RegistrationError):
        reg.parse_landmarks({"pairs": [{"fixed": [0, 0]}]})


def test_landmark_only_registration_and_its_error(fixed, moving, truth_motion):
    pts = np.array([[-40, 0, 0], [40, 10, 0], [0, 40, 20], [0, -20, 50]], float)
    noise = np.array([[0.5, 0, 0], [0, -0.5, 0], [0, 0, 0.5], [0, 0, 0]])
    noisy = geometry.apply_affine(truth_motion, pts) + noise
    pairs = np.stack([pts, noisy], axis=1)
    result = reg.register(fixed, moving, init="landmarks", landmarks=pairs, refine=False)
    assert result.method == "landmarks"
    assert np.allclose(result.matrix, reg.landmark_transform(pairs))
    assert 0.0 < result.tre_mm < 0.6
    assert len(result.landmark_errors_mm) == 4
    assert np.isfinite(result.metric_value)


# -- transforms on disk and resampling ------------------------------------------------------
def test_tfm_round_trip_and_direction(tmp_path):
    """A .tfm holds fixed->moving: resampling with it reads moving at T(p)."""
    matrix = geometry.rigid_matrix((0.0, 0.0, 10.0), (12.0, -4.0, 8.0), (3.0, 2.0, 1.0))
    path = reg.save_tfm(matrix, tmp_path / "t.tfm")
    assert np.allclose(reg.load_tfm(path), matrix, atol=1e-9)
    # ITK itself: a resampled image at fixed point p shows the moving value at T(p).
    moving = Volume(np.zeros((40, 40, 40), np.int16), (2.0, 2.0, 2.0), (-40.0, -40.0, -40.0))
    q = np.array([10.0, -6.0, 4.0])  # a bright voxel in the moving image
    i, j, k = moving.physical_to_nearest_index(q)
    moving.array[k, j, i] = 1000
    tx = sitk.ReadTransform(str(path))
    out = sitk.Resample(moving.to_sitk(), moving.to_sitk(), tx, sitk.sitkNearestNeighbor, 0)
    kk, jj, ii = np.argwhere(sitk.GetArrayViewFromImage(out) == 1000)[0]
    p = moving.index_to_physical((ii, jj, kk))
    assert np.linalg.norm(geometry.apply_affine(matrix, p) - q) < 2.0  # one voxel


def test_load_tfm_reads_centred_euler_transforms(tmp_path):
    euler = sitk.Euler3DTransform((5.0, -3.0, 2.0), 0.05, -0.02, 0.1, (4.0, 5.0, 6.0))
    sitk.WriteTransform(euler, str(tmp_path / "e.tfm"))
    expected = geometry.rigid_matrix(np.rad2deg([0.05, -0.02, 0.1]), (4, 5, 6), (5, -3, 2))
    assert np.allclose(reg.load_tfm(tmp_path / "e.tfm"), expected, atol=1e-9)
    (tmp_path / "bad.tfm").write_text("not a transform")
    with pytest.raises(RegistrationError):
        reg.load_tfm(tmp_path / "bad.tfm")


def test_tfm_matches_the_case_file_reader(tmp_path):
    from guideplan.io.case_file import _read_tfm

    matrix = geometry.rigid_matrix((2.0, 4.0, -6.0), (1.0, 2.0, 3.0), (9.0, 8.0, 7.0))
    assert np.allclose(_read_tfm(reg.save_tfm(matrix, tmp_path / "c.tfm")), matrix, atol=1e-9)


def test_resample_to_undoes_the_motion(fixed, moving, truth_motion):
    out = reg.resample_to(fixed, moving, truth_motion, interpolator="nearest")
    assert out.same_grid(fixed)
    assert out.array.dtype == moving.array.dtype
    inner = (slice(8, -8),) * 3  # away from the border the moving image no longer covers
    assert np.mean(out.array[inner] == fixed.array[inner]) > 0.99


def test_tre_statistics():
    shift = np.eye(4)
    shift[:3, 3] = (3.0, 4.0, 0.0)
    stats = reg.target_registration_error(shift, np.eye(4), np.zeros((4, 3)))
    assert stats.mean_mm == pytest.approx(5.0)
    assert stats.max_mm == pytest.approx(5.0)
    assert stats.rms_mm == pytest.approx(5.0)


# -- intensity registration on synthetic volumes -------------------------------------------
@pytest.mark.parametrize(
    "kwargs",
    [{}, {"mask_lps": (0.0, 25.0, 10.0, 40.0)}, {"mode": "affine"}],
    ids=["rigid", "masked", "affine"],
)
def test_register_recovers_a_known_motion(fixed, moving, truth_motion, kwargs):
    result = reg.register(fixed, moving, **kwargs)
    tre = reg.target_registration_error(result.matrix, truth_motion, spread_points())
    assert tre.max_mm < 0.5, tre
    assert result.method == "intensity"
    assert result.metric_value < 0
    assert result.iterations > 0 and result.wall_s > 0


def test_register_is_deterministic(fixed, moving):
    """Fixed sampling seed: the same answer every time (up to multithreaded summation)."""
    first = reg.register(fixed, moving, init="geometry")
    second = reg.register(fixed, moving, init="geometry")
    assert np.allclose(first.matrix, second.matrix, rtol=0, atol=1e-6)


def test_deformable_keeps_the_rigid_region_rigid(fixed, moving, truth_motion):
    region = (0.0, 25.0, 10.0, 25.0)
    result = reg.register(fixed, moving, "deformable", rigid_region=region)
    assert result.transform is not None
    inside = np.array(region[:3]) + np.random.default_rng(1).uniform(-12, 12, (20, 3))
    full = result.transform_points(inside)
    assert np.allclose(full, geometry.apply_affine(result.matrix, inside), atol=1e-6)
    tre = reg.target_registration_error(result.matrix, truth_motion, inside)
    assert tre.max_mm < 0.5
    # The whole transform resamples too.
    out = reg.resample_to(fixed, moving, result)
    assert out.same_grid(fixed)


def test_same_frame_of_reference_is_aligned_by_geometry(fixed):
    ct = Volume(fixed.array, fixed.spacing, fixed.origin, meta={"frame_of_reference_uid": "1.2.3"})
    pet = Volume(
        (fixed.array // 10).astype(np.int16),
        fixed.spacing,
        fixed.origin,
        meta={"modality": "PT", "frame_of_reference_uid": "1.2.3"},
    )
    result = reg.register(ct, pet)
    assert result.method == "frame-of-reference"
    assert np.array_equal(result.matrix, np.eye(4))
    assert result.iterations == 0


def test_a_shared_frame_of_reference_that_does_not_align_is_registered(fixed, moving, truth_motion):
    """Patient moved between two series of one session, or a copied UID: register."""
    uid = {"frame_of_reference_uid": "1.2.3"}
    ct = Volume(fixed.array, fixed.spacing, fixed.origin, meta={**fixed.meta, **uid})
    moved = Volume(moving.array, moving.spacing, moving.origin, moving.direction, dict(uid))
    result = reg.register(ct, moved)
    assert result.method == "intensity"
    assert "same frame of reference" in result.stop_reason
    assert reg.target_registration_error(result.matrix, truth_motion, spread_points()).max_mm < 0.5


def test_progress_and_cancel(fixed, moving):
    fractions: list[float] = []
    reg.register(fixed, moving, init="identity", progress=lambda f, _m: fractions.append(f))
    assert fractions[-1] == 1.0
    assert all(0.0 <= f <= 1.0 for f in fractions)
    assert len(fractions) > 10

    calls = {"n": 0}

    def cancel_soon() -> bool:
        calls["n"] += 1
        return calls["n"] > 5

    with pytest.raises(CancelledError):
        reg.register(fixed, moving, cancel=cancel_soon)
    event = threading.Event()
    event.set()
    with pytest.raises(CancelledError):
        reg.register(fixed, moving, cancel=event)


def test_bad_arguments_are_user_errors(fixed, moving):
    with pytest.raises(RegistrationError):
        reg.register(fixed, moving, mode="elastic")
    with pytest.raises(RegistrationError):
        reg.register(fixed, moving, init="landmarks")
    with pytest.raises(RegistrationError, match="outside"):
        reg.register(fixed, moving, mask_lps=(900.0, 0.0, 0.0, 20.0))


# -- accuracy on the sample cases ---------------------------------------------------------
def _truth(case: str) -> dict:
    return json.loads((SAMPLES / case / "truth" / "truth.json").read_text())


@pytest.fixture(scope="module")
def planning_cts() -> dict[str, Volume]:
    from guideplan.io import load_series

    return {case: load_series(SAMPLES / case / "ct") for case in CASES}


def _bone_points_near(case: str, centre: np.ndarray, radius: float = 40.0) -> np.ndarray:
    """Points of the treated bone (truth/bone.nrrd) within ``radius`` of the lesion."""
    image = sitk.ReadImage(str(SAMPLES / case / "truth" / "bone.nrrd"))
    k, j, i = np.nonzero(sitk.GetArrayViewFromImage(image))
    to_lps = geometry.index_to_physical_matrix(
        image.GetSpacing(), image.GetOrigin(), np.asarray(image.GetDirection()).reshape(3, 3)
    )
    pts = geometry.apply_affine(to_lps, np.stack([i, j, k], 1).astype(float))
    pts = pts[np.linalg.norm(pts - centre, axis=1) < radius]
    rng = np.random.default_rng(0)
    return pts[rng.choice(len(pts), size=min(400, len(pts)), replace=False)]


@pytest.mark.skipif(not CASES, reason="sample_data not present")
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("series", ["prior_ct", "mr"])
def test_sample_priors_are_recovered(planning_cts, case, series):
    from guideplan.io import load_series

    truth = _truth(case)
    true_matrix = np.asarray(truth["transforms"][series]["fixed_to_moving"], float)
    lesion = np.asarray(truth["lesion"]["center_lps"], float)
    moving = load_series(SAMPLES / case / series)
    result = reg.register(planning_cts[case], moving)
    at_lesion = reg.target_registration_error(result.matrix, true_matrix, lesion).max_mm
    if series == "prior_ct":
        assert at_lesion <= 1.0
        bone = reg.target_registration_error(
            result.matrix, true_matrix, _bone_points_near(case, lesion)
        )
        assert bone.max_mm <= 2.0, bone
    else:
        assert at_lesion <= 2.0


@pytest.mark.skipif(not CASES, reason="sample_data not present")
def test_unknown_motion_of_a_sample_prior_is_recovered(planning_cts):
    """~10 degrees and ~5 cm on top of the sample's own offset (the checker's scenario)."""
    from guideplan.io import load_series

    case = CASES[0]
    truth = _truth(case)
    true_matrix = np.asarray(truth["transforms"]["prior_ct"]["fixed_to_moving"], float)
    lesion = np.asarray(truth["lesion"]["center_lps"], float)
    fixed = planning_cts[case]
    # The total fixed->moving motion: 10 degrees of roll/tilt, 48 mm.
    total = geometry.rigid_matrix((-6.0, 4.0, 7.0), (30.0, -20.0, -32.0), fixed.center_lps())
    moving = seen_through(
        load_series(SAMPLES / case / "prior_ct"), total @ np.linalg.inv(true_matrix)
    )
    result = reg.register(fixed, moving)
    assert reg.target_registration_error(result.matrix, total, lesion).max_mm <= 1.0
