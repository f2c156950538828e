"""GUI tests drive the real window under Xvfb (pytest-xvfb starts it)."""

import os

import pytest

from guideplan.io.dicom_write import SeriesSpec, write_volume
from tests.render.markers import marker_volume


def pytest_collection_modifyitems(config, items):
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        return
    skip = pytest.mark.skip(reason="no display: install xvfb (make test bootstraps it)")
    for item in items:
        if "tests/ui" in str(item.fspath):
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    monkeypatch.setenv("GUIDEPLAN_HOME", str(tmp_path / "home"))


@pytest.fixture(scope="session")
def marker_series(tmp_path_factory):
    """The marker phantom written as a CT DICOM series."""
    folder = tmp_path_factory.mktemp("marker_ct")
    vol = marker_volume()
    write_volume(vol, folder, SeriesSpec(modality="CT", seed="gui-markers",
                                         series_description="GUI markers",
                                         patient_name="TEST^PATIENT", patient_id="ID123"))
    return folder
