"""Unit checks of the analytic phantom: shapes, painter and anatomy at known points.

Why: the generated images are only as right as the model; these pin known anatomy to
known LPS positions (left/right, front/back, head/feet) without writing any files.
"""

from __future__ import annotations

import numpy as np
import pytest

from guideplan.core import geometry
from guideplan.samples import imaging
from guideplan.samples.anatomy import Habitus, LesionSpec, Phantom, Tissue
from guideplan.samples.cases import build_cases
from guideplan.samples.shapes import Capsule, Ellipsoid, Grid, Profile, paint


def _f32(*v: float) -> tuple[np.ndarray, ...]:
    return tuple(np.asarray([x], dtype=np.float32) for x in v)


def test_primitives_inside_and_shrink() -> None:
    e = Ellipsoid(np.zeros(3), np.array([10.0, 5.0, 2.0]))
    assert e.inside(*_f32(9.9, 0, 0))[0] and not e.inside(*_f32(0, 5.1, 0))[0]
    assert not e.shrunk(1.0).inside(*_f32(9.5, 0, 0))[0]
    c = Capsule(np.array([0.0, 0, 0]), np.array([0.0, 0, 10]), 2.0)
    assert c.inside(*_f32(1.9, 0, 5))[0] and not c.inside(*_f32(0, 0, 12.1))[0]
    p = Profile(np.array([[0, 0, 0, 10, 8, 4], [10, 0, 0, 10, 8, 4]]))
    assert p.inside(*_f32(0, -7.9, 5))[0]  # anterior radius 8
    assert not p.inside(*_f32(0, 4.1, 5))[0]  # posterior radius 4
    assert not p.shrunk(1.0).inside(*_f32(0, -7.5, 5))[0]


def test_painter_on_rotated_grid_matches_direct_evaluation() -> None:
    m = geometry.rigid_matrix((10, -20, 30), (1, 2, 3)) @ np.diag([0.7, 0.9, 1.3, 1.0])
    grid = Grid((12, 14, 16), m)
    solid = Ellipsoid(np.array([5.0, 6.0, 7.0]), np.array([4.0, 3.0, 5.0]))
    labels = np.zeros(grid.shape, np.uint8)
    paint(labels, grid, solid, 7, chunk_voxels=50)
    k, j, i = np.meshgrid(*(np.arange(n) for n in grid.shape), indexing="ij")
    pts = geometry.apply_affine(m, np.stack([i, j, k], -1).reshape(-1, 3)).astype(np.float32)
    expected = solid.inside(pts[:, 0], pts[:, 1], pts[:, 2]).reshape(grid.shape)
    assert labels.any()
    np.testing.assert_array_equal(labels == 7, expected)


def _label_at(ph: Phantom, point) -> int:
    grid = imaging.centred_grid(point, np.eye(3), (1, 1, 1), (1, 1, 1), np.eye(4))
    labels, _ = imaging.render_labels(ph, grid.model_grid())
    return int(labels[0, 0, 0])


@pytest.fixture(scope="module")
def phantom() -> Phantom:
    return Phantom(Habitus())


def test_known_anatomy_positions(phantom: Phantom) -> None:
    l2 = phantom.levels["L2"]
    assert _label_at(phantom, (0, l2.y, l2.zc)) == Tissue.TRABECULAR
    assert _label_at(phantom, (0, l2.canal_cy, l2.zc)) in (Tissue.CSF, Tissue.NERVE)
    assert _label_at(phantom, (0, l2.y, l2.z_bottom - l2.disc_below / 2)) == Tissue.DISC
    # aorta on the patient's left (+x), IVC on the right (-x), both anterior of the spine
    assert _label_at(phantom, (13, float(phantom.spine_y(0)) - 30, 0)) == Tissue.ARTERY
    assert _label_at(phantom, (-24, float(phantom.spine_y(0)) - 28, 0)) == Tissue.VEIN
    t10 = phantom.levels["T10"]
    assert _label_at(phantom, (0, t10.canal_cy, t10.zc)) == Tissue.CORD
    assert _label_at(phantom, (-80, t10.y + 5, t10.zc)) == Tissue.LUNG
    # L2 is below T10 (head = +z) and the spine is posterior (+y) of the body centre
    assert l2.zc < t10.zc and l2.y > 0
    assert _label_at(phantom, (0, 0, 500)) != Tissue.AIR  # body continues beyond the model
    assert _label_at(phantom, (0, -200, 0)) == Tissue.AIR


def test_lesion_replaces_bone_only_near_its_host() -> None:
    case = build_cases()["case01_l2_lytic_rfa_cement"]
    ph = case.phantom()
    c = np.asarray(case.lesion.center)
    assert _label_at(ph, c) == Tissue.LESION
    small = case.phantom(lesion_scale=0.3)
    assert _label_at(small, c + np.array([0, 0, 6.0])) != Tissue.LESION
    far = Phantom(Habitus(), LesionSpec("lytic", (0.0, 200.0, 0.0), (30.0, 30, 30), "body:L2"))
    assert _label_at(far, (0, 200, 0)) != Tissue.LESION  # clipped to the vertebral body
