"""From phantom to images: label rendering, CT/MR contrast, partial volume, noise, table.

Why separate from the anatomy: the same labelled phantom becomes a non-contrast planning
CT, a contrast-enhanced prior CT and a T1-like MR; only the look-up tables, blur and
noise differ. Tissue intensities are data (resources/samples/tissues.json), not code.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from guideplan.core import geometry
from guideplan.samples.anatomy import OUTSIDE_BODY, Phantom, Tissue
from guideplan.samples.shapes import BBox, Grid, Solid, paint

_RESOURCES = Path(__file__).resolve().parents[2] / "resources" / "samples"


@lru_cache(maxsize=1)
def tissue_table() -> dict[str, dict]:
    """The tissue intensity table (resources/samples/tissues.json)."""
    path = _RESOURCES / "tissues.json"
    with path.open(encoding="utf-8") as fh:
        return json.load(fh)["tissues"]


def lut(column: str, lesion_kind: str | None) -> tuple[np.ndarray, np.ndarray]:
    """Value and texture per label for one contrast ("ct", "ct_contrast" or "mr")."""
    table = tissue_table()
    values = np.zeros(len(Tissue), np.float32)
    textures = np.zeros(len(Tissue), np.float32)
    base = "ct_hu" if column.startswith("ct") else "mr_t1"
    tex_key = "texture_ct" if column.startswith("ct") else "texture_mr"
    for t in Tissue:
        name = t.name
        if t is Tissue.LESION:
            name = "LESION_BLASTIC" if lesion_kind == "blastic" else "LESION_LYTIC"
        row = table[name]
        v = row.get("ct_hu_contrast", row[base]) if column == "ct_contrast" else row[base]
        values[t] = v
        textures[t] = row.get(tex_key, 0.0)
    return values, textures


# --------------------------------------------------------------------------------------
# geometry of a series
# --------------------------------------------------------------------------------------


@dataclass
class SeriesGrid:
    """A series' voxel grid in its own scanner frame, and how that frame sees the model."""

    size: tuple[int, int, int]  # (ni, nj, nk)
    spacing: tuple[float, float, float]  # (i, j, k) mm
    origin: np.ndarray  # frame LPS of voxel (0, 0, 0)
    direction: np.ndarray  # 3x3, columns i, j, k in frame LPS
    model_to_frame: np.ndarray  # 4x4: planning-CT (model) LPS -> this frame's LPS

    @property
    def index_to_frame(self) -> np.ndarray:
        return geometry.index_to_physical_matrix(self.spacing, self.origin, self.direction)

    def model_grid(self) -> Grid:
        """Index -> model mm (through the inverse of the known transform)."""
        m = np.linalg.inv(self.model_to_frame) @ self.index_to_frame
        return Grid((self.size[2], self.size[1], self.size[0]), m)

    def frame_grid(self) -> Grid:
        return Grid((self.size[2], self.size[1], self.size[0]), self.index_to_frame)


def centred_grid(
    center_frame: Sequence[float] | np.ndarray,
    direction: np.ndarray,
    spacing: Sequence[float],
    size: Sequence[int],
    model_to_frame: np.ndarray,
) -> SeriesGrid:
    """Grid whose centre voxel sits at ``center_frame`` (frame LPS)."""
    d = np.asarray(direction, dtype=float)
    sp = np.asarray(spacing, dtype=float)
    n = np.asarray(size, dtype=float)
    origin = np.asarray(center_frame, float) - d @ (sp * (n - 1) / 2)
    return SeriesGrid(
        tuple(int(v) for v in size),
        tuple(float(v) for v in sp),
        origin,
        d,
        np.asarray(model_to_frame, dtype=float),
    )


# --------------------------------------------------------------------------------------
# rendering
# --------------------------------------------------------------------------------------


def render_labels(
    phantom: Phantom, grid: Grid, k_offset: float = 0.0, keep_pre_lesion: bool = False
) -> tuple[np.ndarray, np.ndarray | None]:
    """Paint the phantom on ``grid``; optionally also return the labels before the lesion."""
    labels = np.zeros(grid.shape, np.uint8)
    for op in phantom.ops:
        paint(labels, grid, op.solid, int(op.label), op.only, op.avoid, k_offset)
    pre = labels.copy() if keep_pre_lesion else None
    lesion = phantom.lesion_solid()
    if lesion is not None:
        paint(labels, grid, lesion, int(Tissue.LESION), None, (Tissue.AIR, Tissue.SKIN), k_offset)
    return labels, pre


def texture(x: np.ndarray, y: np.ndarray, z: np.ndarray, seed: int) -> np.ndarray:
    """Unit-variance quasi-random texture, a function of model position (so priors match).

    A sum of plane waves of 2.5-7 mm wavelength: it looks like trabecular or stool
    heterogeneity at CT resolution and is identical wherever the model is sampled.
    """
    rng = np.random.default_rng(seed)
    out = np.zeros(np.broadcast(x, y, z).shape, np.float32)
    n = 10
    for _ in range(n):
        d = rng.normal(size=3)
        d /= np.linalg.norm(d)
        k = 2 * np.pi / rng.uniform(2.5, 7.0)
        phase = rng.uniform(0, 2 * np.pi)
        arg = (
            x * np.float32(d[0] * k)
            + y * np.float32(d[1] * k)
            + z * np.float32(d[2] * k)
            + np.float32(phase)
        )
        out += np.sin(arg)
    return out * np.float32(np.sqrt(2.0 / n))


def intensities(
    labels: np.ndarray, grid: Grid, values: np.ndarray, textures: np.ndarray, k_offset: float = 0.0
) -> np.ndarray:
    """Labels -> float32 intensities, plus anatomical texture where the table asks for it."""
    img = values[labels]
    for label in np.nonzero(textures)[0]:
        kji = np.nonzero(labels == label)
        if not kji[0].size:
            continue
        ijk = np.stack([kji[2], kji[1], kji[0] + k_offset], axis=1).astype(np.float64)
        p = geometry.apply_affine(grid.index_to_model, ijk).astype(np.float32)
        tex = texture(p[:, 0], p[:, 1], p[:, 2], seed=100 + int(label))
        img[kji] += np.float32(textures[label]) * tex
    return img


def gaussian_blur(img: np.ndarray, sigma_vox: tuple[float, float, float]) -> np.ndarray:
    """Separable Gaussian blur (sigma per axis k, j, i, in voxels); edges replicated.

    Plain numpy, so results are bit-identical from run to run (sample determinism).
    """
    out = img.astype(np.float32, copy=True)
    for axis, sigma in enumerate(sigma_vox):
        if sigma <= 0.05:
            continue
        kern = _kernel(sigma)
        r = len(kern) // 2
        pad = [(0, 0)] * 3
        pad[axis] = (r, r)
        padded = np.pad(out, pad, mode="edge")
        acc = np.zeros_like(out)
        n = out.shape[axis]
        for t, w in enumerate(kern):
            sl = [slice(None)] * 3
            sl[axis] = slice(t, t + n)
            acc += np.float32(w) * padded[tuple(sl)]
        out = acc
    return out


def _kernel(sigma: float) -> np.ndarray:
    r = max(1, int(np.ceil(3 * sigma)))
    x = np.arange(-r, r + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def correlated_noise(
    shape: tuple[int, int, int], sigma_vox: tuple[float, float, float], rng: np.random.Generator
) -> np.ndarray:
    """Unit-std Gaussian noise with a Gaussian correlation (CT noise texture)."""
    white = rng.standard_normal(shape, dtype=np.float32)
    smooth = gaussian_blur(white, sigma_vox)
    gain = 1.0
    for s in sigma_vox:
        if s > 0.05:
            gain *= float(np.sqrt(np.sum(_kernel(s) ** 2)))
    return smooth / np.float32(gain)


@dataclass(frozen=True)
class Table(Solid):
    """The CT couch in the scanner frame: a shallow curved slab under the patient.

    ``y_top`` is the surface the patient lies on. ``posterior`` (supine patient): the
    slab extends from there toward +y (the back); otherwise (prone patient) toward -y
    (the belly). Either way its edges curve up around the patient.
    """

    y_top: float
    thickness: float = 28.0
    half_width: float = 215.0
    curve: float = 0.0006
    inset: float = 0.0
    posterior: bool = True

    def bbox(self) -> BBox:
        if not self.posterior:
            return (
                np.array([-self.half_width, self.y_top - self.thickness - 1.0, -1e4]),
                np.array([self.half_width, self.y_top + 40.0, 1e4]),
            )
        return (
            np.array([-self.half_width, self.y_top - 40.0, -1e4]),
            np.array([self.half_width, self.y_top + self.thickness + 1.0, 1e4]),
        )

    def inside(self, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        # depth below the patient's side of the couch: +y supine, -y prone (mirror)
        sign = 1.0 if self.posterior else -1.0
        depth = y if self.posterior else -y
        top = np.float32(sign * self.y_top + self.inset) - np.float32(self.curve) * x * x
        return (
            (depth >= top)
            & (depth <= top + np.float32(self.thickness - 2 * self.inset))
            & (np.abs(x) <= np.float32(self.half_width - self.inset))
            & (z == z)
        )

    def shrunk(self, t: float) -> Solid:
        return Table(
            self.y_top, self.thickness, self.half_width, self.curve, self.inset + t, self.posterior
        )


def add_table(labels: np.ndarray, series: SeriesGrid, prone: bool = False) -> None:
    """Paint the couch under the patient, in the scanner frame: below the most posterior
    body voxel (supine) or the most anterior one (prone, lying on the belly)."""
    if abs(series.direction[1, 1]) < 0.99:
        return  # only axial series get a couch
    rows = np.nonzero(np.any(labels != Tissue.AIR, axis=(0, 2)))[0]
    if not rows.size:
        return
    # the row whose y (LPS) is largest (supine: the back) or smallest (prone: the belly)
    toward_plus_y = series.direction[1, 1] > 0
    j_down = rows.max() if toward_plus_y != prone else rows.min()
    y_down = float(series.origin[1] + series.direction[1, 1] * series.spacing[1] * j_down)
    table = Table(y_top=y_down - 4.0, posterior=False) if prone else Table(y_top=y_down + 4.0)
    fg = series.frame_grid()
    paint(labels, fg, table, int(Tissue.TABLE_SHELL), only=(Tissue.AIR,))
    paint(labels, fg, table.shrunk(2.5), int(Tissue.TABLE_CORE), only=(Tissue.TABLE_SHELL,))


def body_mask(labels: np.ndarray) -> np.ndarray:
    return ~np.isin(labels, np.asarray(OUTSIDE_BODY, dtype=np.uint8))


# --------------------------------------------------------------------------------------
# modality images
# --------------------------------------------------------------------------------------


def ct_image(
    phantom: Phantom,
    series: SeriesGrid,
    *,
    contrast: bool,
    noise_hu: float,
    seed: int,
    keep_pre_lesion: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """HU image (float32, [k, j, i]), its labels, and optionally pre-lesion labels.

    The couch goes on the side the phantom's patient lies on (``phantom.prone``).
    """
    grid = series.model_grid()
    labels, pre = render_labels(phantom, grid, keep_pre_lesion=keep_pre_lesion)
    add_table(labels, series, prone=phantom.prone)
    kind = phantom.lesion.kind if phantom.lesion else None
    values, textures = lut("ct_contrast" if contrast else "ct", kind)
    hu = intensities(labels, grid, values, textures)
    sp_i, sp_j, sp_k = series.spacing
    # partial volume: ~0.5 mm in-plane, ~0.45 of the slice along z (detector + recon)
    hu = gaussian_blur(hu, (0.45 * min(sp_k, 2.0) / sp_k, 0.5 / sp_j, 0.5 / sp_i))
    rng = np.random.default_rng(seed)
    noise = correlated_noise(hu.shape, (0.5, 0.8, 0.8), rng)
    inside = hu > -995.0
    hu[inside] += np.float32(noise_hu) * noise[inside]
    return hu, labels, pre


def mr_image(
    phantom: Phantom, series: SeriesGrid, *, noise: float, seed: int, sub_slices: int = 3
) -> np.ndarray:
    """T1-like magnitude image: slice profile by sub-slices, coil shading, Rician noise."""
    grid = series.model_grid()
    kind = phantom.lesion.kind if phantom.lesion else None
    values, textures = lut("mr", kind)
    acc = None
    offsets = (np.arange(sub_slices) + 0.5) / sub_slices - 0.5
    for off in offsets:
        labels, _ = render_labels(phantom, grid, k_offset=float(off))
        img = intensities(labels, grid, values, textures, k_offset=float(off))
        acc = img if acc is None else acc + img
    assert acc is not None
    img = acc / np.float32(len(offsets))
    img = gaussian_blur(img, (0.0, 0.55, 0.55))
    # receive-coil shading: the spine coil sits under the patient (posterior, +y)
    fg = series.frame_grid()
    nk, nj, ni = fg.shape
    _, y, _ = fg.block_coords((0, 0, 0), (nk, nj, ni))
    shade = np.float32(1.0) + np.float32(0.25) * np.tanh((y - np.float32(40.0)) / 90.0)
    img = img * shade
    rng = np.random.default_rng(seed)
    n1 = rng.standard_normal(img.shape, dtype=np.float32) * np.float32(noise)
    n2 = rng.standard_normal(img.shape, dtype=np.float32) * np.float32(noise)
    return np.sqrt((img + n1) ** 2 + n2 * n2)
