"""A case never opens silently corrupt: file digests checked on open and before reuse,
JSON depth bounded, every node field validated with a message that names it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from guideplan.core.errors import CaseFileError
from guideplan.core.volume import Volume
from guideplan.io.case_file import (
    ArrayPayload,
    ImagePayload,
    PayloadDamagedError,
    TransformPayload,
    read_case,
    write_case,
)
from guideplan.model.case import open_case, save_case
from guideplan.model.commands import AddNode
from guideplan.model.nodes import LabelMapNode, TrajectoryNode, VolumeNode
from guideplan.model.scene import Scene

GRID = Volume(np.zeros((6, 7, 8), np.int16), (0.7, 0.8, 2.5), (10.0, -20.0, 30.0))


def _labels(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 3, size=GRID.array.shape).astype(np.uint8)


def _write(case: Path, seed: int = 0) -> dict:
    write_case(
        case,
        {"nodes": []},
        {
            "labels": ImagePayload.on_grid_of(_labels(seed), GRID),
            "matrix": TransformPayload(np.diag([1.0, 1.0, 1.0, 1.0])),
            "curve": ArrayPayload(np.linspace(0, 1, 9)),
        },
    )
    return json.loads((case / "case.json").read_text())["payloads"]


def _flip_byte(path: Path, offset_from_end: int = 40) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) - offset_from_end] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("key", ["labels", "matrix", "curve"])
def test_one_flipped_byte_in_any_payload_is_refused_on_open_naming_the_file(tmp_path, key):
    case = tmp_path / "c.gplan"
    table = _write(case)
    _flip_byte(case / table[key]["file"], offset_from_end=min(40, table[key]["size"] - 1))
    with pytest.raises(PayloadDamagedError) as err:
        read_case(case)
    assert table[key]["file"] in err.value.message
    assert err.value.files == {key: table[key]["file"]}


def test_a_changed_digit_in_a_tfm_is_found(tmp_path):
    case = tmp_path / "c.gplan"
    table = _write(case)
    tfm = case / table["matrix"]["file"]
    tfm.write_text(tfm.read_text().replace("Parameters: 1", "Parameters: 2", 1))
    with pytest.raises(CaseFileError, match="changed since it was saved"):
        read_case(case)


def test_the_rest_of_a_damaged_case_can_be_opened_without_the_damaged_files(tmp_path):
    case = tmp_path / "c.gplan"
    table = _write(case)
    _flip_byte(case / table["labels"]["file"])
    _, payloads = read_case(case, skip_damaged=True)
    assert payloads.damaged == {"labels": table["labels"]["file"]}
    assert "labels" not in payloads
    np.testing.assert_array_equal(payloads.load("curve"), np.linspace(0, 1, 9))


def test_a_save_never_reuses_a_damaged_file_of_the_same_size(tmp_path):
    case = tmp_path / "c.gplan"
    table = _write(case)
    damaged = case / table["labels"]["file"]
    _flip_byte(damaged)
    size = damaged.stat().st_size
    new_table = _write(case)  # same content: the intact file would have been reused
    assert new_table["labels"]["file"] != table["labels"]["file"]
    assert (case / new_table["labels"]["file"]).stat().st_size == size
    _, payloads = read_case(case)
    np.testing.assert_array_equal(payloads.load("labels").array, _labels())
    # The intact ones are still reused.
    assert new_table["curve"]["file"] == table["curve"]["file"]


def _scene_case(tmp_path: Path) -> Path:
    scene = Scene()
    scene.execute(AddNode(TrajectoryNode(name="T1", entry=(0, 0, 0), target=(10, 20, 30))))
    scene.execute(AddNode(LabelMapNode(name="lesion", array=_labels())))
    case = tmp_path / "s.gplan"
    save_case(scene, case)
    return case


def _edit(case: Path, change) -> None:
    doc = json.loads((case / "case.json").read_text())
    change(doc)
    (case / "case.json").write_text(json.dumps(doc))


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("abc", "entry"),
        (None, "entry"),
        ([1, 2], "entry"),
        ([1, 2, "x"], "entry"),
        ([1e400, 0, 0], "entry"),  # json.dumps writes Infinity
    ],
)
def test_a_bad_trajectory_entry_is_refused_naming_the_field(tmp_path, value, words):
    case = _scene_case(tmp_path)

    def change(doc):
        traj = next(n for n in doc["nodes"] if n["kind"] == "trajectory")
        traj["entry"] = value

    _edit(case, change)
    with pytest.raises(CaseFileError) as err:
        open_case(case)
    assert words in err.value.message
    assert "T1" in err.value.message or "Infinity" in err.value.message


def test_duplicate_node_ids_are_refused_with_a_clear_message(tmp_path):
    case = _scene_case(tmp_path)

    def change(doc):
        doc["nodes"][1]["id"] = doc["nodes"][0]["id"]

    _edit(case, change)
    with pytest.raises(CaseFileError, match="is used by node 1 too"):
        open_case(case)


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda d: d["nodes"][0].update(kind="spaceship"), "kind"),
        (lambda d: d["nodes"][0]["display"].update(opacity=float("nan")), "NaN"),
        (lambda d: d["nodes"][0]["display"].update(color=[1, 0]), "display.color"),
        (lambda d: d["nodes"][1].update(labels={"x": {"name": "a", "color": [1, 0, 0]}}), "label"),
        (lambda d: d.update(nodes={"a": 1}), "node list"),
    ],
)
def test_other_invalid_fields_are_refused_naming_them(tmp_path, change, words):
    case = _scene_case(tmp_path)
    _edit(case, change)
    with pytest.raises(CaseFileError) as err:
        open_case(case)
    assert words in err.value.message


def test_a_deeply_nested_case_json_is_refused_not_a_recursion_error(tmp_path):
    case = _scene_case(tmp_path)
    doc = json.loads((case / "case.json").read_text())
    text = json.dumps(doc)[:-1] + ', "info": ' + "[" * 100_000 + "]" * 100_000 + "}"
    (case / "case.json").write_text(text)
    with pytest.raises(CaseFileError, match="nested"):
        open_case(case)


def test_nan_in_the_scene_info_is_saved_as_null_and_reopens(tmp_path):
    scene = Scene()
    scene.execute(AddNode(VolumeNode(name="v", volume=None)))
    scene.info = {"score": float("nan"), "ok": 1.5}
    case = tmp_path / "n.gplan"
    save_case(scene, case)
    text = (case / "case.json").read_text()
    assert "NaN" not in text
    assert open_case(case).info == {"score": None, "ok": 1.5}
