"""Deleting a needle keeps the treatment consistent, as one undo step."""

from guideplan.model.commands import AddNode
from guideplan.model.nodes import TrajectoryNode, ZoneNode
from guideplan.model.scene import Scene
from guideplan.model.treatment import delete_trajectory_command


def _plan():
    scene = Scene()
    needles = [
        TrajectoryNode(name=f"Needle {i}", entry=(0.0, 80.0, i * 10.0), target=(0.0, 0.0, 0.0))
        for i in range(3)
    ]
    for n in needles:
        scene.execute(AddNode(n))
    rf = ZoneNode(name="RF", trajectory_id=needles[0].id, parameters={"device_id": "rf"})
    cryo = ZoneNode(
        name="Cryo",
        trajectory_id=needles[1].id,
        parameters={"device_id": "cryo", "probe_trajectory_ids": [needles[2].id]},
    )
    scene.execute(AddNode(rf))
    scene.execute(AddNode(cryo))
    return scene, needles, rf, cryo


def test_the_needles_own_zone_goes_with_it_and_comes_back_on_undo():
    scene, needles, rf, cryo = _plan()
    steps = len(scene.history)
    scene.execute(delete_trajectory_command(scene, needles[0].id))
    assert needles[0].id not in scene and rf.id not in scene
    assert cryo.id in scene
    assert len(scene.history) == steps + 1
    scene.history.undo()
    assert needles[0].id in scene and rf.id in scene
    assert scene.find(rf.id).trajectory_id == needles[0].id


def test_a_shared_cryo_zone_passes_to_the_next_probe():
    scene, needles, _, cryo = _plan()
    scene.execute(delete_trajectory_command(scene, needles[1].id))
    zone = scene.find(cryo.id)
    assert zone is not None
    assert zone.trajectory_id == needles[2].id
    assert "probe_trajectory_ids" not in zone.parameters
    scene.history.undo()
    assert zone.trajectory_id == needles[1].id
    assert zone.parameters["probe_trajectory_ids"] == [needles[2].id]


def test_a_further_probe_leaves_its_zone():
    scene, needles, _, cryo = _plan()
    scene.execute(delete_trajectory_command(scene, needles[2].id))
    zone = scene.find(cryo.id)
    assert zone.trajectory_id == needles[1].id
    assert "probe_trajectory_ids" not in zone.parameters
    scene.history.undo()
    assert zone.parameters["probe_trajectory_ids"] == [needles[2].id]
