"""The treatment snapshot: a worker evaluates a plan the user cannot change under it."""

import numpy as np

from guideplan.core.volume import Volume
from guideplan.model.commands import AddNode
from guideplan.model.nodes import LabelMapNode, TrajectoryNode, VolumeNode, ZoneNode
from guideplan.model.scene import Scene
from guideplan.model.treatment import treatment_snapshot


def test_snapshot_is_a_consistent_copy():
    volume = Volume(np.zeros((4, 5, 6), np.int16), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    scene = Scene()
    scene._insert(VolumeNode(name="ct", volume=volume, role="planning"))
    labels = LabelMapNode(name="seg", array=np.zeros((4, 5, 6), np.uint8))
    needle = TrajectoryNode(name="n", entry=(0.0, 9.0, 0.0), target=(1.0, 2.0, 3.0))
    zone = ZoneNode(name="z", trajectory_id=needle.id, parameters={"probe_trajectory_ids": []})
    for node in (labels, needle, zone):
        scene.execute(AddNode(node))
    scene.info["target"] = {"vertebral_level": "L2"}

    snap = treatment_snapshot(scene)

    labels.array[1, 2, 3] = 7  # the user paints, drags and edits meanwhile
    needle.target = (5.0, 5.0, 5.0)
    zone.parameters["probe_trajectory_ids"].append("other")
    scene.info["target"]["vertebral_level"] = "T10"

    (snap_labels,) = snap.nodes_of(LabelMapNode)
    (snap_needle,) = snap.nodes_of(TrajectoryNode)
    (snap_zone,) = snap.nodes_of(ZoneNode)
    assert snap_labels.id == labels.id and not snap_labels.array.any()
    assert snap_needle.id == needle.id and snap_needle.target == (1.0, 2.0, 3.0)
    assert snap_zone.parameters["probe_trajectory_ids"] == []
    assert snap.info["target"]["vertebral_level"] == "L2"
    (planning,) = snap.nodes_of(VolumeNode)
    assert planning.volume is volume  # the CT is shared, not copied
