"""DICOM and file adapters: scanning folders, loading series, writing test series."""

from guideplan.io.dicom_headers import SkippedFile
from guideplan.io.dicom_scan import ScanReport, SeriesInfo, scan
from guideplan.io.dicom_series import (
    choose_planning_series,
    choose_series,
    load_series,
    load_series_info,
)

__all__ = [
    "ScanReport",
    "SeriesInfo",
    "SkippedFile",
    "choose_planning_series",
    "choose_series",
    "load_series",
    "load_series_info",
    "scan",
]
