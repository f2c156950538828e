import pytest

from guideplan.core.volume import Volume
from tests.render.markers import marker_volume


@pytest.fixture
def markers() -> Volume:
    return marker_volume()
