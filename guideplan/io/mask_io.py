"""Read structure masks from files onto a reference volume's grid.

A folder of .nrrd/.nii/.nii.gz/.mha files (one mask per file, the structure named by the
file name) or one such file holding a label map. Masks on another grid are resampled
(nearest neighbour) at the reference voxels' LPS positions, so a mask saved by another
tool lands where it belongs.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from guideplan.core.errors import GuideplanError
from guideplan.core.volume import Volume

MASK_SUFFIXES = (".nrrd", ".nii", ".nii.gz", ".mha", ".mhd")


def _stem(path: Path) -> str:
    name = path.name
    for suffix in MASK_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def read_label_image(path: str | os.PathLike, reference: Volume) -> np.ndarray:
    """One label image on ``reference``'s grid, as an integer [k, j, i] array."""
    from guideplan.io.seg_io import read_labelmap  # (highdicom) only when masks are read

    return read_labelmap(path, reference).array.astype(np.int32)


def read_masks(path: str | os.PathLike, reference: Volume) -> dict[str, np.ndarray]:
    """{structure name: boolean mask} from a folder of masks or one label-map file."""
    path = Path(path)
    if path.is_dir():
        files = sorted(
            p for p in path.iterdir() if p.is_file() and p.name.lower().endswith(MASK_SUFFIXES)
        )
        if not files:
            raise GuideplanError(
                f"No mask files in {path}.", hint="Expected .nrrd, .nii(.gz) or .mha files."
            )
        return {_stem(f): read_label_image(f, reference) > 0 for f in files}
    if not path.exists():
        raise GuideplanError(f"{path} does not exist.", hint="Check the --labels path.")
    labels = read_label_image(path, reference)
    values = [int(v) for v in np.unique(labels) if v != 0]
    if len(values) == 1:
        return {_stem(path): labels > 0}
    return {f"{_stem(path)}_{v}": labels == v for v in values}
