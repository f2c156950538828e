"""case01's planning CT is a prone (HFP) scan, as CT-guided spine procedures are done.

Pins the committed series: what a prone scanner writes (PatientPosition, image axes),
that the truth still overlays it voxel for voxel in LPS, that the couch is under the
belly, and that the views still show the patient in the LPS-fixed radiological
orientation (patient's left on the screen's right, anterior at the top). The prior CT
and the MR stay supine diagnostic scans.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from guideplan.io.dicom_series import load_series

CASE = Path(__file__).resolve().parents[2] / "sample_data" / "case01_l2_lytic_rfa_cement"
PRONE = np.diag([-1.0, -1.0, 1.0])  # rows toward the patient's right, columns anterior

pytestmark = pytest.mark.skipif(not CASE.is_dir(), reason="sample data not present")


def _truth() -> dict:
    return json.loads((CASE / "truth" / "truth.json").read_text(encoding="utf-8"))


def _read_series(folder: Path) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    return reader.Execute()


def _mask(name: str) -> sitk.Image:
    return sitk.ReadImage(str(CASE / "truth" / f"{name}.nrrd"))


def test_planning_ct_headers_are_head_first_prone() -> None:
    files = sorted((CASE / "ct").glob("*.dcm"))
    assert files
    for path in (files[0], files[len(files) // 2], files[-1]):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        assert ds.PatientPosition == "HFP"
        np.testing.assert_allclose(
            [float(v) for v in ds.ImageOrientationPatient], [-1, 0, 0, 0, -1, 0], atol=1e-6
        )
    # the first pixel of every slice is the patient's left-posterior corner
    first = pydicom.dcmread(files[0], stop_before_pixels=True)
    ct = _truth()["series"]["ct"]
    assert ct["patient_position"] == "HFP"
    np.testing.assert_allclose(ct["direction"], PRONE)
    origin = np.asarray(ct["origin_lps"])
    assert origin[0] > 100 and origin[1] > 100  # +x left, +y posterior
    np.testing.assert_allclose([float(v) for v in first.ImagePositionPatient][:2], origin[:2])
    # the diagnostic priors stay supine
    for sub in ("prior_ct", "mr"):
        ds = pydicom.dcmread(next((CASE / sub).glob("*.dcm")), stop_before_pixels=True)
        assert ds.PatientPosition == "HFS", sub


def test_direction_matrix_read_back_by_gdcm_and_by_guideplan() -> None:
    img = _read_series(CASE / "ct")
    np.testing.assert_allclose(np.reshape(img.GetDirection(), (3, 3)), PRONE, atol=1e-6)
    vol = load_series(CASE / "ct")
    np.testing.assert_allclose(vol.direction, PRONE, atol=1e-6)
    np.testing.assert_allclose(vol.origin, img.GetOrigin(), atol=1e-3)
    assert vol.meta["patient_position"] == "HFP"


def test_truth_lesion_centre_lands_on_the_lesion_voxel() -> None:
    centre = np.asarray(_truth()["lesion"]["center_lps"])
    lesion = _mask("lesion")
    ct = _read_series(CASE / "ct")
    assert lesion.GetSize() == ct.GetSize()
    np.testing.assert_allclose(lesion.GetDirection(), ct.GetDirection(), atol=1e-6)
    np.testing.assert_allclose(lesion.GetOrigin(), ct.GetOrigin(), atol=1e-3)
    ijk = lesion.TransformPhysicalPointToIndex(tuple(float(v) for v in centre))
    assert lesion[ijk] == 1
    # the same voxel through guideplan's geometry (a centre on a voxel boundary may round
    # to either neighbour), and it is lytic (soft tissue) on the CT
    vol = load_series(CASE / "ct")
    exact = vol.physical_to_index(centre)
    np.testing.assert_allclose(
        exact,
        lesion.TransformPhysicalPointToContinuousIndex(tuple(float(v) for v in centre)),
        atol=1e-6,
    )
    i, j, k = (int(v) for v in vol.physical_to_nearest_index(centre))
    assert np.all(np.abs(np.subtract((i, j, k), ijk)) <= 1)
    assert sitk.GetArrayViewFromImage(lesion)[k, j, i] == 1
    assert -50 < float(np.median(vol.array[k - 1 : k + 2, j - 1 : j + 2, i - 1 : i + 2])) < 120
    # the patient's left (+x) is at low column indices in a prone scan
    left = vol.physical_to_index(centre + np.array([50.0, 0.0, 0.0]))
    assert left[0] < i
    posterior = vol.physical_to_index(centre + np.array([0.0, 50.0, 0.0]))
    assert posterior[1] < j  # the back is at the top of the stored image


def test_couch_is_anterior_of_the_body() -> None:
    ct = _read_series(CASE / "ct")
    hu = sitk.GetArrayFromImage(ct)
    body = sitk.GetArrayFromImage(_mask("body")) > 0
    kji = np.argwhere(body)
    ys_body = np.asarray(
        [ct.TransformIndexToPhysicalPoint((0, int(j), 0))[1] for j in np.unique(kji[:, 1])]
    )
    front, back = ys_body.min(), ys_body.max()
    # dense voxels outside the body: the couch's shell (and the partial-volume skin edge)
    dense = np.argwhere((hu > -300) & ~body)
    ys = np.asarray(
        [ct.TransformIndexToPhysicalPoint((0, int(j), 0))[1] for j in np.unique(dense[:, 1])]
    )
    couch = ys[ys < front - 3.0]  # rows of couch shell in front of the belly
    assert couch.size >= 4 and couch.min() < front - 10.0
    assert not np.any(ys > back + 3.0)  # nothing behind the back


def test_axial_view_keeps_the_patient_left_on_screen_right() -> None:
    from vtkmodules.vtkRenderingCore import vtkRenderWindow

    import guideplan.render.snapshot  # noqa: F401  (picks EGL when there is no display)
    from guideplan.render.slice_view import SliceView

    vol = load_series(CASE / "ct")
    centre = np.asarray(_truth()["lesion"]["center_lps"])
    window = vtkRenderWindow()
    window.SetOffScreenRendering(1)
    window.SetSize(300, 300)
    try:
        view = SliceView("axial")
        window.AddRenderer(view.renderer)
        view.set_volume(vol, centre)
        letters = {side: actor.GetInput() for side, actor in view.letters.items()}
        assert letters == {"left": "R", "right": "L", "top": "A", "bottom": "P"}
        window.Render()
        x0, y0 = view.lps_to_display(centre)
        x_left, _ = view.lps_to_display(centre + np.array([40.0, 0.0, 0.0]))
        _, y_front = view.lps_to_display(centre + np.array([0.0, -40.0, 0.0]))
        assert x_left > x0 + 20  # patient's left toward the screen's right
        assert y_front > y0 + 20  # anterior up (VTK display y grows upward)
    finally:
        window.Finalize()
