"""Anatomy masks the planning checks and the 3D view rely on.

``body_mask`` separates the patient from air and from the CT table: the table is a
separate, thin object in the air below (or above, prone) the patient, so the largest
connected component of the tissue mask is the body.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from guideplan.core.resources import load_json
from guideplan.core.volume import Volume


def body_mask(volume: Volume, threshold_hu: float | None = None) -> np.ndarray:
    """Boolean [k, j, i] mask of the patient's body (largest tissue component)."""
    if threshold_hu is None:
        threshold_hu = float(load_json("anatomy.json")["body"]["threshold_hu"])
    tissue = volume.array > threshold_hu
    return largest_component(tissue)


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 26-connected component of a boolean mask (empty stays empty)."""
    if not mask.any():
        return mask.copy()
    image = sitk.GetImageFromArray(mask.astype(np.uint8))
    labels = sitk.ConnectedComponent(image, True)
    ranked = sitk.RelabelComponent(labels, sortByObjectSize=True)
    return sitk.GetArrayViewFromImage(ranked) == 1
