"""Resource files: a user's edited copy is laid over the defaults key by key."""

import json

import pytest

from guideplan.core.errors import GuideplanError
from guideplan.core.resources import load_json


@pytest.fixture
def user_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("GUIDEPLAN_HOME", str(tmp_path))
    load_json.cache_clear()
    folder = tmp_path / "resources"
    folder.mkdir()
    yield folder
    load_json.cache_clear()


def test_an_older_user_copy_keeps_its_values_and_gains_new_settings(user_dir):
    default = load_json.__wrapped__("anatomy.json")
    section = next(k for k, v in default.items() if isinstance(v, dict) and len(v) > 1)
    first_key = next(iter(default[section]))
    (user_dir / "anatomy.json").write_text(json.dumps({section: {first_key: 12345}}))
    load_json.cache_clear()
    merged = load_json("anatomy.json")
    assert merged[section][first_key] == 12345  # the user's value wins
    for key in default[section]:  # settings the old copy did not have come from the default
        assert key in merged[section]
    assert set(default) <= set(merged)


def test_a_broken_user_copy_says_which_file_and_what_to_do(user_dir):
    (user_dir / "planning.json").write_text("{not json")
    load_json.cache_clear()
    with pytest.raises(GuideplanError) as info:
        load_json("planning.json")
    assert "planning.json" in str(info.value) and "not valid JSON" in str(info.value)


def test_a_missing_resource_is_reported(user_dir):
    with pytest.raises(GuideplanError, match="missing"):
        load_json("no_such_file.json")
