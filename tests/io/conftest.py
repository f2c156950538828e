"""Session-wide synthetic DICOM cases: each is written once, on first use."""

from __future__ import annotations

from pathlib import Path

import pytest
from dicom_fixtures import CASES, WrittenSeries


class CaseFactory:
    """Writes the named case of ``dicom_fixtures.CASES`` into its own folder, once."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._cache: dict[str, WrittenSeries] = {}

    def __call__(self, name: str) -> WrittenSeries:
        if name not in self._cache:
            folder = self.root / name
            folder.mkdir(parents=True)
            self._cache[name] = CASES[name](folder)
        return self._cache[name]


@pytest.fixture(scope="session")
def dicom_case(tmp_path_factory: pytest.TempPathFactory) -> CaseFactory:
    """``dicom_case("axial_hfs")`` -> WrittenSeries (folder, files, spec, truth)."""
    return CaseFactory(tmp_path_factory.mktemp("dicom_cases"))
