"""Scene <-> case folder: every node type comes back as it was; DICOM is referenced."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from guideplan.core.errors import CancelledError, CaseFileError
from guideplan.core.geometry import rigid_matrix
from guideplan.core.volume import Volume
from guideplan.io import load_series
from guideplan.io.dicom_write import SeriesSpec, write_volume
from guideplan.model.case import open_case, save_case
from guideplan.model.commands import AddNode, SetField
from guideplan.model.nodes import (
    NODE_TYPES,
    DisplayProps,
    LabelInfo,
    LabelMapNode,
    LandmarkNode,
    MeasurementNode,
    ProtectionNode,
    TrajectoryNode,
    TransformNode,
    VolumeNode,
    ZoneNode,
)
from guideplan.model.scene import Scene

SPEC = SeriesSpec(seed="case-roundtrip", series_description="Planning CT", series_number=2)


def _ct_volume(spacing=(0.7, 0.8, 2.5)) -> Volume:
    """A small CT with a rotated in-plane orientation (so geometry errors show)."""
    k, j, i = np.mgrid[0:6, 0:12, 0:10]
    array = (-1000 + 37 * i + 11 * j + 300 * k).astype(np.int16)
    direction = rigid_matrix((0.0, 0.0, 20.0), (0, 0, 0))[:3, :3]
    return Volume(array, spacing, (10.0, -20.0, 30.0), direction)


@pytest.fixture
def dicom_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "patient" / "ct"
    write_volume(_ct_volume(), folder, SPEC)
    return folder


def _display(color, **kw) -> DisplayProps:
    return DisplayProps(color=color, **kw)


def build_scene(dicom_dir: Path | None) -> Scene:
    """A plan holding every node type, with display properties off their defaults."""
    scene = Scene()
    if dicom_dir is not None:
        ct = VolumeNode(name="CT", volume=load_series(dicom_dir), source={"path": str(dicom_dir)})
    else:
        ct = VolumeNode(name="CT", volume=_ct_volume())
    ct.display = _display((1.0, 1.0, 1.0), window=1500.0, level=300.0)
    prior = VolumeNode(name="prior MR", role="prior", volume=_ct_volume((1.0, 1.0, 3.0)))
    reg = TransformNode(
        name="MR to CT",
        matrix=rigid_matrix((2.0, -3.0, 5.0), (4.25, -1.5, 7.0), (10, 0, 40)),
        metric={"name": "mattes", "value": -0.61, "iterations": 42},
    )
    prior.transform_id = reg.id
    labels = np.zeros(ct.volume.array.shape, np.uint8)
    labels[2:4, 3:7, 4:8] = 1
    labels[1, 0:2, 0:3] = 2
    seg = LabelMapNode(
        name="lesion",
        array=labels,
        reference_id=ct.id,
        labels={1: LabelInfo("lesion", (1.0, 0.2, 0.2)), 2: LabelInfo("canal", (0.2, 0.4, 1.0))},
        display=_display((1.0, 0.0, 0.0), opacity=0.4, outline=True),
    )
    marks = LandmarkNode(
        name="fiducials",
        points=[(1.0, 2.0, 3.0), (-4.5, 6.0, 7.25), (0.0, 0.0, 1.0)],
        labels=["a", "b", "c"],
        volume_id=prior.id,
        display=_display((0.0, 1.0, 0.0), visible=False),
    )
    ruler = MeasurementNode(name="ruler", points=[(0.0, 0.0, 0.0), (3.0, 4.0, 0.0)])
    angle = MeasurementNode(
        name="angle", points=[(1.0, 0.0, 0.0), (0.0, 0.0, 0.0), (0.0, 1.0, 0.0)], measure="angle"
    )
    traj = TrajectoryNode(
        name="T1",
        entry=(30.5, -80.0, 42.0),
        target=(12.0, -20.0, 35.5),
        device_id="rf-17g-3cm",
        locked=True,
        display=_display((0.0, 0.8, 1.0), opacity=0.9),
    )
    zone = ZoneNode(
        name="ablation",
        trajectory_id=traj.id,
        model="rf-ellipsoid",
        parameters={"power_w": 60.0, "time_s": 720, "label": "catalog A"},
        display=_display((1.0, 0.5, 0.0), opacity=0.3),
    )
    dissection = ProtectionNode(
        name="hydrodissection",
        element="dissection",
        structure="bowel",
        agent="hydro",
        entry=(40.0, -60.0, 30.0),
        tip=(15.0, -25.0, 33.0),
        displacement_mm=8.0,
    )
    probe = ProtectionNode(name="tc 1", element="thermocouple", tip=(5.0, 5.0, 30.0), warn_c=44.0)
    for node in (ct, prior, reg, seg, marks, ruler, angle, traj, zone, dissection, probe):
        scene.execute(AddNode(node))
    scene.info = {"patient": "ANON^GUIDEPLAN", "indication": "L2 metastasis", "levels": ["L2"]}
    return scene


def _comparable(node) -> dict:
    data = node.to_dict()
    data.pop("source", None)  # stored relative + UIDs; checked separately
    return data


def assert_same_scene(a: Scene, b: Scene) -> None:
    assert [n.id for n in a] == [n.id for n in b]
    for x, y in zip(a, b, strict=True):
        assert type(x) is type(y)
        assert _comparable(x) == _comparable(y), x.name
        if isinstance(x, VolumeNode):
            assert y.volume is not None and x.volume.same_grid(y.volume, tol=1e-6)
            assert np.array_equal(x.volume.array, y.volume.array)
            assert y.volume.array.dtype == x.volume.array.dtype
        if isinstance(x, LabelMapNode):
            assert y.array.dtype == x.array.dtype and np.array_equal(x.array, y.array)
        if isinstance(x, TransformNode):
            np.testing.assert_allclose(y.matrix, x.matrix, atol=1e-12)
    assert b.info == a.info


def test_every_node_type_round_trips(tmp_path: Path, dicom_dir: Path):
    scene = build_scene(dicom_dir)
    assert {n.kind for n in scene} == set(NODE_TYPES)  # the test covers every type
    case = tmp_path / "plan.gplan"
    save_case(scene, case)
    reopened = open_case(case)
    assert_same_scene(scene, reopened)
    assert reopened.history.is_clean and not reopened.history.can_undo
    ct = reopened.nodes_of(VolumeNode)[0]
    assert ct.volume.meta["series_uid"] == SPEC.resolved_series_uid()
    assert Path(ct.source["path"]) == dicom_dir  # absolute again in memory
    assert reopened.get(scene.nodes_of(MeasurementNode)[1].id).value == pytest.approx(90.0)


def test_dicom_is_referenced_relative_with_uids_not_copied(tmp_path: Path, dicom_dir: Path):
    case = tmp_path / "plan.gplan"
    save_case(build_scene(dicom_dir), case)
    doc = json.loads((case / "case.json").read_text())
    source = doc["nodes"][0]["source"]
    assert source["path"] == "../patient/ct"
    assert source["series_uid"] == SPEC.resolved_series_uid()
    assert source["study_uid"] == SPEC.resolved_study_uid()
    assert source["frame_of_reference_uid"] == SPEC.resolved_frame_of_reference_uid()
    assert not list(case.rglob("*.dcm"))
    # The prior has no DICOM source: its voxels are kept in the case instead.
    prior = doc["nodes"][1]
    assert "path" not in prior["source"] and prior["embedded_volume"]


def test_case_and_images_moved_together_still_open(tmp_path: Path, dicom_dir: Path):
    scene = build_scene(dicom_dir)
    save_case(scene, tmp_path / "plan.gplan")
    moved = tmp_path / "usb-stick"
    moved.mkdir()
    shutil.move(tmp_path / "plan.gplan", moved / "plan.gplan")
    shutil.move(tmp_path / "patient", moved / "patient")
    reopened = open_case(moved / "plan.gplan")
    assert_same_scene(scene, reopened)
    assert Path(reopened.nodes_of(VolumeNode)[0].source["path"]) == moved / "patient" / "ct"


def test_moved_case_finds_images_by_absolute_path(tmp_path: Path, dicom_dir: Path):
    scene = build_scene(dicom_dir)
    save_case(scene, tmp_path / "plan.gplan")
    (tmp_path / "elsewhere" / "deeper").mkdir(parents=True)
    target = tmp_path / "elsewhere" / "deeper" / "plan.gplan"
    shutil.move(tmp_path / "plan.gplan", target)
    assert_same_scene(scene, open_case(target))


def test_moved_dicom_is_a_clear_error_naming_the_series(tmp_path: Path, dicom_dir: Path):
    save_case(build_scene(dicom_dir), tmp_path / "plan.gplan")
    shutil.move(dicom_dir, tmp_path / "archived")
    with pytest.raises(CaseFileError) as err:
        open_case(tmp_path / "plan.gplan")
    message = str(err.value)
    assert SPEC.resolved_series_uid() in message
    assert "Planning CT" in message and "'CT'" in message
    assert str(dicom_dir) in message  # where it was expected
    assert err.value.hint


def test_locate_callback_can_point_at_the_moved_images(tmp_path: Path, dicom_dir: Path):
    scene = build_scene(dicom_dir)
    save_case(scene, tmp_path / "plan.gplan")
    shutil.move(dicom_dir, tmp_path / "archived")
    asked = []

    def locate(ref: dict) -> Path:
        asked.append(ref)
        return tmp_path / "archived"

    assert_same_scene(scene, open_case(tmp_path / "plan.gplan", locate=locate))
    assert asked[0]["series_uid"] == SPEC.resolved_series_uid() and asked[0]["name"] == "CT"


def test_other_images_at_the_same_place_are_refused(tmp_path: Path, dicom_dir: Path):
    save_case(build_scene(dicom_dir), tmp_path / "plan.gplan")
    shutil.rmtree(dicom_dir)
    write_volume(_ct_volume(), dicom_dir, SeriesSpec(seed="another patient"))
    with pytest.raises(CaseFileError, match=SPEC.resolved_series_uid()) as err:
        open_case(tmp_path / "plan.gplan")
    assert "not in" in str(err.value)


def test_same_uids_with_another_study_uid_are_refused(tmp_path: Path, dicom_dir: Path):
    save_case(build_scene(dicom_dir), tmp_path / "plan.gplan")
    shutil.rmtree(dicom_dir)
    other = SeriesSpec(
        seed="x", series_uid=SPEC.resolved_series_uid(), study_uid="1.2.826.0.1.3680043.99.1"
    )
    write_volume(_ct_volume(), dicom_dir, other)
    with pytest.raises(CaseFileError, match="study_uid"):
        open_case(tmp_path / "plan.gplan")


def test_label_map_on_a_changed_grid_is_refused(tmp_path: Path, dicom_dir: Path):
    """Same UIDs, other spacing (a re-export): the label map would be misplaced."""
    save_case(build_scene(dicom_dir), tmp_path / "plan.gplan")
    shutil.rmtree(dicom_dir)
    write_volume(_ct_volume(spacing=(0.75, 0.8, 2.5)), dicom_dir, SPEC)
    with pytest.raises(CaseFileError, match="grid") as err:
        open_case(tmp_path / "plan.gplan")
    assert "lesion" in str(err.value)


def test_save_marks_clean_and_autosave_style_write_does_not(tmp_path: Path):
    from guideplan.model.case import write_scene

    scene = build_scene(None)
    traj = scene.nodes_of(TrajectoryNode)[0]
    assert not scene.history.is_clean
    write_scene(scene, tmp_path / "auto.gplan")
    assert not scene.history.is_clean
    save_case(scene, tmp_path / "plan.gplan")
    assert scene.history.is_clean
    scene.execute(SetField(traj.id, "display.opacity", 0.5))
    save_case(scene, tmp_path / "plan.gplan")
    assert open_case(tmp_path / "plan.gplan").get(traj.id).display.opacity == 0.5


def test_scene_without_dicom_round_trips(tmp_path: Path):
    scene = build_scene(None)
    save_case(scene, tmp_path / "plan.gplan")
    reopened = open_case(tmp_path / "plan.gplan")
    assert_same_scene(scene, reopened)


def test_progress_and_cancel(tmp_path: Path, dicom_dir: Path):
    save_case(build_scene(dicom_dir), tmp_path / "plan.gplan")
    seen: list[float] = []
    open_case(tmp_path / "plan.gplan", progress=lambda f, msg: seen.append(f))
    assert seen[-1] == 1.0 and seen == sorted(seen)
    stop = threading.Event()
    stop.set()
    with pytest.raises(CancelledError):
        open_case(tmp_path / "plan.gplan", cancel=stop)


def test_unknown_node_kind_is_reported_as_damage(tmp_path: Path):
    save_case(build_scene(None), tmp_path / "plan.gplan")
    doc = json.loads((tmp_path / "plan.gplan" / "case.json").read_text())
    doc["nodes"][3]["kind"] = "hologram"
    (tmp_path / "plan.gplan" / "case.json").write_text(json.dumps(doc))
    with pytest.raises(CaseFileError, match="hologram"):
        open_case(tmp_path / "plan.gplan")
