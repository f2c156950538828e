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


def test_gravity_moves_gas_and_roots_when_prone() -> None:
    """Prone: gas rises to the posterior side of the bowel, cauda equina roots sink
    anteriorly in the dural sac; everything else stays put in LPS."""
    supine, prone = Phantom(Habitus()), Phantom(Habitus(), prone=True)
    l2 = supine.levels["L2"]
    grid = imaging.centred_grid(
        (0.0, -20.0, l2.zc), np.eye(3), (2.0, 2.0, 2.0), (150, 110, 30), np.eye(4)
    ).model_grid()
    a, _ = imaging.render_labels(supine, grid)
    b, _ = imaging.render_labels(prone, grid)
    k, j, i = np.meshgrid(*(np.arange(n) for n in grid.shape), indexing="ij")
    y = geometry.apply_affine(grid.index_to_model, np.stack([i, j, k], -1).reshape(-1, 3))[:, 1]
    y = y.reshape(grid.shape)
    assert (a == Tissue.GAS).sum() > 100 and (b == Tissue.GAS).sum() > 100
    gravity = (Tissue.GAS, Tissue.BOWEL_FLUID, Tissue.FECES, Tissue.NERVE, Tissue.CSF)
    same = ~np.isin(a, gravity) | ~np.isin(b, gravity)
    np.testing.assert_array_equal(a[same], b[same])
    # one horizontal bowel loop (along z at y = 0): the gas lies above the fluid level
    for is_prone in (False, True):
        ph = Phantom(Habitus(), prone=is_prone)
        ph.ops = []
        ph._tube(
            [(0, 0, -20), (0, 0, 20)],
            12.0,
            Tissue.BOWEL_FLUID,
            0.3,
            Ellipsoid(np.zeros(3), np.full(3, 100.0)),
        )
        loop = imaging.centred_grid((0, 0, 0), np.eye(3), (1, 1, 4), (30, 30, 5), np.eye(4))
        lab, _ = imaging.render_labels(ph, loop.model_grid())
        gas_j = np.nonzero(lab == Tissue.GAS)[1]  # j grows toward posterior (+y)
        fluid_j = np.nonzero(lab == Tissue.BOWEL_FLUID)[1]
        assert gas_j.size > 20 and fluid_j.size > gas_j.size
        if is_prone:
            assert gas_j.min() > fluid_j.max()
        else:
            assert gas_j.max() < fluid_j.min()
    # the roots at L2: posterior of the sac's centre supine, anterior prone
    c = (0.0, l2.canal_cy, l2.zc)
    roots = imaging.centred_grid(c, np.eye(3), (0.5, 0.5, 1.0), (40, 40, 3), np.eye(4))
    ra, _ = imaging.render_labels(supine, roots.model_grid())
    rb, _ = imaging.render_labels(prone, roots.model_grid())
    ja = np.nonzero(ra == Tissue.NERVE)[1].mean()
    jb = np.nonzero(rb == Tissue.NERVE)[1].mean()
    assert ja > 20 > jb  # j grows toward posterior (+y)


def test_couch_under_the_patient_supine_and_prone() -> None:
    ph = Phantom(Habitus())
    for direction, prone in ((np.eye(3), False), (np.diag([-1.0, -1.0, 1.0]), True)):
        series = imaging.centred_grid((0, 10, 0), direction, (2, 2, 4), (180, 150, 3), np.eye(4))
        labels, _ = imaging.render_labels(ph, series.model_grid())
        imaging.add_table(labels, series, prone=prone)
        fg = series.frame_grid()
        k, j, i = np.meshgrid(*(np.arange(n) for n in fg.shape), indexing="ij")
        pts = geometry.apply_affine(fg.index_to_model, np.stack([i, j, k], -1).reshape(-1, 3))
        x, y = (pts[:, c].reshape(fg.shape) for c in (0, 1))
        couch = np.isin(labels, (Tissue.TABLE_SHELL, Tissue.TABLE_CORE))
        body = imaging.body_mask(labels)
        assert couch.sum() > 100
        mid = np.abs(x) < 60  # the couch's edges curve up beside the patient
        if prone:
            assert y[couch & mid].max() < y[body].min()
            assert y[couch].min() < y[body].min() - 20
        else:
            assert y[couch & mid].min() > y[body].max()
            assert y[couch].max() > y[body].max() + 20
