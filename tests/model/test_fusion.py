"""Prior studies in the scene: one undo step to add, nudges that merge, reset, save/reopen."""

import numpy as np
import pytest

from guideplan.core import geometry
from guideplan.core.volume import Volume
from guideplan.model import fusion
from guideplan.model.nodes import TransformNode, VolumeNode
from guideplan.model.scene import Scene


@pytest.fixture
def scene() -> Scene:
    return Scene()


def _volume(modality: str = "MR") -> Volume:
    return Volume(
        np.zeros((4, 5, 6), np.int16), (1.0, 1.0, 2.0), (0.0, 0.0, 0.0), meta={"modality": modality}
    )


class _Result:
    """Stands in for a RegistrationResult (the model only needs these two)."""

    def __init__(self, matrix: np.ndarray) -> None:
        self.matrix = matrix

    def to_json(self) -> dict:
        return {"matrix": self.matrix.tolist(), "metric": -0.9, "method": "intensity"}


def test_add_prior_is_one_undo_step(scene):
    node, transform = fusion.add_prior(scene, _volume(), "T1 MR")
    assert node.role == "prior" and node.transform_id == transform.id
    assert np.array_equal(transform.matrix, np.eye(4))
    assert fusion.priors(scene) == [(node, transform)]
    assert scene.history.undo_text == "Add prior T1 MR"
    scene.history.undo()
    assert len(scene) == 0
    scene.history.redo()
    assert scene.get(node.id) is node and scene.get(transform.id) is transform


def test_pet_prior_starts_as_a_hot_overlay(scene):
    node, _ = fusion.add_prior(scene, _volume("PT"), "PET")
    assert (node.display.fusion, node.display.colormap) == ("overlay", "hot")
    mr, _ = fusion.add_prior(scene, _volume("MR"), "MR")
    assert (mr.display.fusion, mr.display.colormap) == ("blend", "grey")


def test_nudge_moves_the_prior_as_displayed():
    """After a +5 mm (left) nudge, what showed at p shows at p + 5 mm."""
    start = geometry.rigid_matrix((3.0, -2.0, 5.0), (10.0, 20.0, -5.0), (1.0, 2.0, 3.0))
    moved = fusion.nudge(start, translation_mm=(5.0, 0.0, 0.0))
    p = np.array([12.0, -7.0, 30.0])
    assert np.allclose(
        geometry.apply_affine(moved, p + [5.0, 0.0, 0.0]), geometry.apply_affine(start, p)
    )
    # A rotation about a centre leaves the centre's sample where it was.
    centre = np.array([4.0, 5.0, 6.0])
    turned = fusion.nudge(start, rotation_deg=(0.0, 0.0, 2.0), center=centre)
    assert np.allclose(geometry.apply_affine(turned, centre), geometry.apply_affine(start, centre))


def test_nudges_merge_until_sealed_and_undo_to_before_the_gesture(scene):
    _, transform = fusion.add_prior(scene, _volume(), "MR")
    before = transform.matrix.copy()
    for _ in range(5):
        scene.execute(fusion.nudge_command(scene, transform.id, translation_mm=(1.0, 0.0, 0.0)))
    assert len(scene.history) == 2  # add + one merged nudge
    assert np.allclose(transform.matrix[:3, 3], before[:3, 3] - [5.0, 0.0, 0.0])
    scene.history.seal()
    scene.execute(fusion.nudge_command(scene, transform.id, rotation_deg=(0.0, 0.0, 1.0)))
    assert len(scene.history) == 3
    scene.history.undo()
    scene.history.undo()
    assert np.array_equal(transform.matrix, before)


def test_registration_result_and_reset(scene):
    _, transform = fusion.add_prior(scene, _volume(), "MR")
    registered = geometry.rigid_matrix((1.0, 2.0, 3.0), (4.0, 5.0, 6.0))
    changes: list[str] = []
    scene.node_changed.connect(lambda node, field: changes.append(field))
    scene.execute(fusion.apply_registration(transform.id, _Result(registered)))
    assert scene.history.undo_text == "Register prior"
    assert np.allclose(transform.matrix, registered) and transform.metric["metric"] == -0.9
    assert "matrix" in changes
    scene.execute(fusion.nudge_command(scene, transform.id, translation_mm=(0.0, 3.0, 0.0)))
    scene.history.seal()
    scene.execute(fusion.reset_command(scene, transform.id))
    assert np.allclose(transform.matrix, registered)
    scene.history.undo()  # reset
    scene.history.undo()  # nudge
    scene.history.undo()  # registration
    assert np.array_equal(transform.matrix, np.eye(4)) and transform.metric == {}


def test_set_transform_copies_its_matrix(scene):
    _, transform = fusion.add_prior(scene, _volume(), "MR")
    matrix = np.eye(4)
    scene.execute(fusion.set_transform(transform.id, matrix))
    matrix[0, 3] = 99.0
    assert transform.matrix[0, 3] == 0.0


def test_prior_and_transform_survive_save_and_reopen(scene, tmp_path):
    from guideplan.model.case import open_case, save_case

    node, transform = fusion.add_prior(scene, _volume(), "MR")
    matrix = geometry.rigid_matrix((2.0, -1.0, 4.0), (7.0, -8.0, 9.0), (1.0, 1.0, 1.0))
    scene.execute(fusion.apply_registration(transform.id, _Result(matrix)))
    node.display.fusion, node.display.checker_mm = "checker", 15.0
    save_case(scene, tmp_path / "case")
    reopened = open_case(tmp_path / "case")
    [(prior, tx)] = fusion.priors(reopened)
    assert isinstance(prior, VolumeNode) and isinstance(tx, TransformNode)
    assert np.allclose(tx.matrix, matrix, atol=1e-9)
    assert tx.metric["method"] == "intensity"
    assert (prior.display.fusion, prior.display.checker_mm) == ("checker", 15.0)
