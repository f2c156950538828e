"""Sparse label diffs (apply, revert, compose) and the user-extensible label table."""

import json

import numpy as np
import pytest

from guideplan.core.errors import GuideplanError
from guideplan.core.labelmap import (
    LabelDiff,
    LabelTable,
    box_around,
    erase_diff,
    load_label_table,
    mask_bounds,
    normalize_box,
    paint_diff,
    replace_diff,
)


@pytest.fixture
def labels() -> np.ndarray:
    a = np.zeros((6, 7, 8), dtype=np.uint8)
    a[2:4, 2:5, 3:6] = 2  # some "bone"
    return a


def test_from_values_apply_revert_round_trip(labels):
    before = labels.copy()
    diff = LabelDiff.from_values(labels, [0, 5, 5, 100, 100], [1, 1, 3, 0, 1])
    # index 5 written twice: the last value wins; index 100 to 0 is a no-op and drops out
    assert diff.indices.tolist() == [0, 5, 100]
    assert diff.new.tolist() == [1, 3, 1]
    assert diff.old.tolist() == [0, 0, 0]
    diff.apply(labels)
    assert labels.ravel()[[0, 5, 100]].tolist() == [1, 3, 1]
    diff.revert(labels)
    np.testing.assert_array_equal(labels, before)


def test_from_box_and_between(labels):
    box = (slice(2, 4), slice(2, 5), slice(3, 6))
    block = labels[box].copy()
    block[0, 0, 0] = 1
    diff = LabelDiff.from_box(labels, box, block)
    assert len(diff) == 1
    assert np.unravel_index(diff.indices[0], labels.shape) == (2, 2, 3)
    after = labels.copy()
    diff.apply(after)
    again = LabelDiff.between(labels, after)
    assert again.indices.tolist() == diff.indices.tolist()
    assert again.bounds() == ((2, 2, 3), (2, 2, 3))


def test_paint_respects_editable_labels(labels):
    mask = np.ones(labels.shape, dtype=bool)
    everywhere = paint_diff(labels, mask, 1)
    assert len(everywhere) == labels.size
    background_only = paint_diff(labels, mask, 1, editable={0})
    assert len(background_only) == labels.size - np.count_nonzero(labels == 2)
    assert background_only.count(1) == len(background_only)


def test_paint_in_a_box_maps_to_flat_indices(labels):
    box = normalize_box((slice(1, 3), slice(0, 2), slice(5, 8)), labels.shape)
    mask = np.zeros((2, 2, 3), dtype=bool)
    mask[1, 1, 2] = True
    diff = paint_diff(labels, mask, 4, box)
    assert np.unravel_index(diff.indices[0], labels.shape) == (2, 1, 7)


def test_erase_only_the_given_label(labels):
    labels[0, 0, :4] = 1
    mask = np.ones(labels.shape, dtype=bool)
    diff = erase_diff(labels, mask, value=1)
    assert len(diff) == 4 and diff.count(1) == -4
    diff.apply(labels)
    assert not (labels == 1).any() and (labels == 2).any()


def test_replace_makes_the_label_exactly_the_mask(labels):
    labels[0, 0, 0] = 1
    new = np.zeros(labels.shape, dtype=bool)
    new[5, 6, 7] = True
    diff = replace_diff(labels, 1, new)
    diff.apply(labels)
    assert np.argwhere(labels == 1).tolist() == [[5, 6, 7]]


def test_then_composes_two_dabs_into_one_undo_step(labels):
    original = labels.copy()
    first = LabelDiff.from_values(labels, [0, 1, 2], 1)
    first.apply(labels)
    second = LabelDiff.from_values(labels, [2, 3, 0], [1, 1, 0])  # index 0 back to 0
    second.apply(labels)
    merged = first.then(second)
    assert merged.indices.tolist() == [1, 2, 3]  # index 0 ended where it began
    assert merged.old.tolist() == [0, 0, 0] and merged.new.tolist() == [1, 1, 1]
    merged.revert(labels)
    np.testing.assert_array_equal(labels, original)
    merged.apply(labels)
    assert labels.ravel()[:4].tolist() == [0, 1, 1, 1]


def test_inverse_and_shape_checks(labels):
    diff = LabelDiff.from_values(labels, [3], 5)
    inv = diff.inverse()
    assert inv.old.tolist() == [5] and inv.new.tolist() == [0]
    with pytest.raises(ValueError):
        diff.apply(np.zeros((2, 2, 2), dtype=np.uint8))
    with pytest.raises(ValueError):
        diff.then(LabelDiff.empty((2, 2, 2)))
    assert LabelDiff.empty(labels.shape).is_empty
    assert diff.nbytes > 0


def test_boxes():
    assert box_around((5, 5, 5), (2, 2, 2), (8, 8, 8)) == (slice(3, 8), slice(3, 8), slice(3, 8))
    mask = np.zeros((5, 5, 5), dtype=bool)
    mask[2, 1, 3] = True
    assert mask_bounds(mask, (1, 1, 1)) == (slice(1, 4), slice(0, 3), slice(2, 5))
    assert mask_bounds(np.zeros((2, 2, 2), bool)) is None


def test_label_table_has_the_structures_planning_needs():
    table = load_label_table()
    for name in (
        "lesion",
        "cortical bone",
        "trabecular bone",
        "spinal canal",
        "spinal cord",
        "aorta",
        "inferior vena cava",
        "bowel",
        "nerve root",
        "pleura",
        "kidney",
        "skin",
    ):
        entry = table.by_name(name)
        assert len(entry.color) == 3 and all(0 <= c <= 1 for c in entry.color)
    assert table.by_name("lesion").kind == "lesion"
    assert table.by_name("Spinal Cord").safety_key == "cord_nerve_mm"
    assert {e.name for e in table.of_kind("critical")} >= {"aorta", "skin", "spinal canal"}


def test_user_label_table_extends_and_overrides(tmp_path, monkeypatch):
    user = tmp_path / "resources"
    user.mkdir()
    (user / "labels.json").write_text(
        json.dumps(
            {
                "labels": [
                    {
                        "id": 9,
                        "name": "aorta",
                        "color": [1, 0, 0],
                        "kind": "critical",
                        "safety_key": "vessel_mm",
                    },
                    {"id": 40, "name": "ureter", "color": [0.2, 0.8, 0.2], "kind": "critical"},
                ]
            }
        )
    )
    monkeypatch.setenv("GUIDEPLAN_HOME", str(tmp_path))
    table = load_label_table()
    assert table.by_name("ureter").id == 40
    assert table[9].color == (1.0, 0.0, 0.0)
    assert table.by_name("lesion").id == 1  # package entries stay


def test_invalid_label_entry_is_a_user_error():
    with pytest.raises(GuideplanError, match="invalid"):
        LabelTable.from_json({"labels": [{"id": 0, "name": "x", "color": [1, 1, 1]}]})
