"""The domain, headless: geometry, volumes, errors. numpy and the standard library only."""

from guideplan.core.errors import GuideplanError
from guideplan.core.volume import Volume

__all__ = ["GuideplanError", "Volume"]
