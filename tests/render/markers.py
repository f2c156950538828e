"""A small synthetic patient with markers whose sides are known (no DICOM needed)."""

import numpy as np

from guideplan.core.volume import Volume

#: Marker values: each sits on a known patient side of the centre.
LEFT, ANTERIOR, SUPERIOR = 3000, 2500, 2000


def marker_volume(direction: np.ndarray | None = None) -> Volume:
    """A 'body' (0 HU) ellipse with a 'spine' (700 HU) and three bright markers."""
    n = 64
    direction = np.eye(3) if direction is None else direction
    vol = Volume(np.full((n, n, n), -1000, np.int16), (2.0, 2.0, 2.0), (0.0, 0.0, 0.0), direction)
    ijk = np.stack(np.meshgrid(np.arange(n), np.arange(n), np.arange(n), indexing="ij"), -1)
    lps = vol.index_to_physical(ijk.reshape(-1, 3)).reshape(n, n, n, 3)  # [i, j, k, xyz]
    centre = vol.center_lps()
    d = lps - centre
    values = np.full((n, n, n), -1000, np.int16)
    values[(d[..., 0] / 55) ** 2 + (d[..., 1] / 40) ** 2 < 1] = 0
    values[(d[..., 0] ** 2 + (d[..., 1] - 15) ** 2) < 64] = 700
    for offset, value in (((35, 0, 0), LEFT), ((0, -30, 0), ANTERIOR), ((0, 0, 45), SUPERIOR)):
        values[np.linalg.norm(d - np.array(offset, float), axis=-1) < 5] = value
    vol.array = np.ascontiguousarray(values.transpose(2, 1, 0))  # [i,j,k] -> [k,j,i]
    vol.meta.update(modality="CT", units="HU", description="markers")
    return vol
