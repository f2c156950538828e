"""New UIDs for files whose Study/Series/SOP Instance UIDs are blank (anonymisers do that).

Such files cannot be grouped by SeriesInstanceUID, but they still say which acquisition
they belong to: frames that share a frame of reference, an orientation, an image size,
an acquisition and series number and a description are one series. Each group gets a
UID derived from what its files hold (never from where they are), so the same files
scanned again, from another folder or after a copy, get the same UID and a saved case
finds its images again.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

import numpy as np
from pydicom.uid import generate_uid

from guideplan.io.dicom_headers import FrameHeader


def assign_missing_uids(frames: Iterable[FrameHeader]) -> dict[str, str]:
    """Fill blank series/study/SOP UIDs in place; return {new series UID: warning}."""
    frames = list(frames)
    notes: dict[str, str] = {}
    blank_series: dict[tuple, list[FrameHeader]] = defaultdict(list)
    for f in frames:
        if not f.series_uid:
            blank_series[_series_key(f)].append(f)
    for key, group in blank_series.items():
        blank = ["SeriesInstanceUID"]
        positions = sorted(
            tuple(np.round(f.position, 2)) if f.position is not None else () for f in group
        )
        uid = generate_uid(entropy_srcs=["guideplan-series", repr(key), repr(positions)])
        for f in group:
            f.series_uid = uid
        if any(not f.study_uid for f in group):
            blank.append("StudyInstanceUID")
            study = generate_uid(entropy_srcs=["guideplan-study", repr(_study_key(group[0]))])
            for f in group:
                f.study_uid = f.study_uid or study
        if any(not f.sop_instance_uid for f in group):
            blank.append("SOPInstanceUID")
        notes[uid] = (
            f"the files' {', '.join(blank)} {'is' if len(blank) == 1 else 'are'} blank "
            "(an anonymiser's output): their images were grouped by frame of reference, "
            "orientation, image size and acquisition, and new UIDs were made for the case "
            f"(series {uid})"
        )
    for f in frames:
        if not f.sop_instance_uid:
            f.sop_instance_uid = generate_uid(
                entropy_srcs=["guideplan-sop", f.series_uid, repr(_frame_key(f))]
            )
    return notes


def _series_key(f: FrameHeader) -> tuple:
    orientation = tuple(np.round(f.orientation, 3)) if f.orientation is not None else None
    return (
        f.study_uid,
        f.frame_of_reference_uid,
        f.modality,
        f.patient_id,
        f.rows,
        f.columns,
        orientation,
        f.acquisition_number,
        f.series_number,
        f.series_description,
        f.is_localizer,
    )


def _study_key(f: FrameHeader) -> tuple:
    return (f.patient_id, f.patient_name, f.study_date, f.frame_of_reference_uid)


def _frame_key(f: FrameHeader) -> tuple:
    position = tuple(np.round(f.position, 3)) if f.position is not None else None
    return (position, f.instance_number, f.frame_index, f.ref.member or "")
