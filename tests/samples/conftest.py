"""Shared fixtures: one coarse generation of all sample cases per test session.

Why coarse: the shipped data take ~30 s to make; ``scale=0.35`` keeps every field of
view, transform and lesion while sampling ~25x fewer voxels (about 2-3 s).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from guideplan.samples import generate_samples

TEST_SCALE = 0.35


@pytest.fixture(scope="session")
def coarse_cases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("samples")
    paths = generate_samples(out, scale=TEST_SCALE)
    return {p.name: p for p in paths}
