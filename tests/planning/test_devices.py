"""The user's device catalog: validated, saved atomically, merged over the built-in one."""

import json

import pytest

from guideplan.planning import devices as dv
from guideplan.planning.devices import (
    CatalogError,
    delete_user_device,
    device_to_dict,
    load_catalog,
    save_user_catalog,
    save_user_device,
    user_catalog_entries,
    user_catalog_path,
    validate_device,
)
from guideplan.planning.zones import zone_dimensions


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("GUIDEPLAN_HOME", str(tmp_path / "home"))


def rf_entry(**changes):
    raw = {
        "id": "rf-mine-17g",
        "kind": "rf_probe",
        "name": "My RF probe",
        "gauge": 17,
        "outer_diameter_mm": 1.47,
        "length_mm": 150,
        "approximate": False,
        "source": "IFU of my probe, table 3",
        "zone": {
            "model": "ellipsoid",
            "parameters": ["time_s"],
            "time_interpolation": "linear",
            "default_time_s": 300,
            "rows": [
                {"time_s": 0, "length_mm": 20, "width_mm": 2, "center_offset_mm": 10},
                {"time_s": 300, "length_mm": 30, "width_mm": 20, "center_offset_mm": 10},
            ],
        },
    }
    raw.update(changes)
    return raw


def test_every_built_in_device_round_trips_through_validation():
    for device in load_catalog():
        again = validate_device(device_to_dict(device))
        assert again == device and again.data == device.data


def test_a_saved_user_device_joins_the_catalog_with_its_chart():
    save_user_device(rf_entry())
    catalog = load_catalog()
    device = catalog.get("rf-mine-17g")
    assert device.name == "My RF probe" and not device.approximate
    dims = zone_dimensions(device, time_s=150)  # interpolated between the two rows
    assert dims.length_mm == pytest.approx(25.0) and dims.width_mm == pytest.approx(11.0)
    doc = json.loads(user_catalog_path().read_text())
    assert doc["format"] == dv.CATALOG_FORMAT and doc["version"] == dv.CATALOG_VERSION


def test_saving_again_replaces_the_entry_and_a_renamed_id_drops_the_old_one():
    save_user_device(rf_entry())
    save_user_device(rf_entry(name="Renamed"))
    assert [e["name"] for e in user_catalog_entries()] == ["Renamed"]
    save_user_device(rf_entry(id="rf-mine-v2"), replace_id="rf-mine-17g")
    assert [e["id"] for e in user_catalog_entries()] == ["rf-mine-v2"]
    assert delete_user_device("rf-mine-v2")
    assert user_catalog_entries() == [] and "rf-mine-v2" not in load_catalog()


def test_a_user_entry_overrides_the_built_in_one_of_the_same_id():
    builtin = device_to_dict(load_catalog().get("rf-bone-16g-10mm"))
    builtin["name"] = "Bone RF, my chart"
    save_user_device(builtin)
    assert load_catalog().get("rf-bone-16g-10mm").name == "Bone RF, my chart"


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"id": ""}, "has no id"),
        ({"id": "bad id!"}, "only letters"),
        ({"kind": "laser"}, "unknown kind"),
        ({"outer_diameter_mm": -1}, "outer diameter"),
        ({"length_mm": "long"}, "not a number"),
        ({"gauge": 17.5}, "gauge"),
        ({"zone": None}, "needs a zone chart"),
        ({"zone": {"parameters": ["time_s"], "rows": []}}, "no rows"),
        (
            {
                "zone": {
                    "parameters": ["time_s"],
                    "rows": [{"time_s": 10, "length_mm": 0, "width_mm": 5}],
                }
            },
            "zone length",
        ),
        (
            {
                "zone": {
                    "parameters": ["time_s"],
                    "rows": [
                        {"time_s": 10, "length_mm": 5, "width_mm": 5},
                        {"time_s": 10, "length_mm": 6, "width_mm": 6},
                    ],
                }
            },
            "repeats",
        ),
        (
            {
                "zone": {
                    "parameters": ["time_s"],
                    "rows": [{"time_s": -5, "length_mm": 5, "width_mm": 5}],
                }
            },
            "negative",
        ),
    ],
)
def test_bad_entries_are_refused_with_a_message_naming_the_field(changes, words):
    with pytest.raises(CatalogError) as info:
        save_user_device(rf_entry(**changes))
    assert words in str(info.value)
    assert not user_catalog_path().exists()  # nothing written


def test_a_cryo_chart_needs_nested_isotherms():
    cryo = device_to_dict(load_catalog().get("cryo-17g-rod"))
    cryo["id"] = "cryo-mine"
    validate_device(cryo)
    shells = cryo["zone"]["rows"][1]["isotherms"]
    shells["-40"]["width_mm"] = shells["0"]["width_mm"] + 5
    with pytest.raises(CatalogError, match="colder isotherm is wider"):
        validate_device(cryo)


def test_duplicate_ids_are_refused():
    with pytest.raises(CatalogError, match="Two devices"):
        save_user_catalog([rf_entry(), rf_entry()])


def test_a_failed_write_keeps_the_old_catalog(monkeypatch):
    save_user_device(rf_entry())
    before = user_catalog_path().read_text()

    def broken(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(dv.os, "replace", broken)
    with pytest.raises(CatalogError, match="Cannot save"):
        save_user_device(rf_entry(name="Never written"))
    assert user_catalog_path().read_text() == before
    assert not list(user_catalog_path().parent.glob(".*.tmp"))
