"""Analytic solids and a painter that voxelises them on any (rotated) grid.

Why: the sample cases must be sampled on several grids (planning CT, prior CT, MR) that
are related by known rigid transforms, and the ground truth must be exact. So the
phantom is a list of solids defined in model millimetres (the planning CT's LPS frame);
each grid is only an affine map from voxel index to model mm, and every voxel is
classified by evaluating the solids at its model position.

Speed: each solid has a bounding box, so it is evaluated on the sub-block of the grid
that can contain it; coordinates are built by broadcasting, so an axis-aligned grid
costs 1D work for the z-dependent parameters of the big body-outline profiles.

All ``inside`` methods take broadcastable float32 arrays ``x, y, z`` (LPS mm) and return
a boolean array broadcastable to their common shape.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

Array = np.ndarray
BBox = tuple[np.ndarray, np.ndarray]


def _vec(v: Sequence[float] | np.ndarray) -> np.ndarray:
    return np.asarray(v, dtype=float).reshape(3)


class Solid:
    """A region of model space: bounding box, membership test, inward offset."""

    def bbox(self) -> BBox:
        raise NotImplementedError

    def inside(self, x: Array, y: Array, z: Array) -> Array:
        raise NotImplementedError

    def shrunk(self, t: float) -> Solid:
        """The solid moved inwards by about ``t`` mm (the marrow inside a cortex)."""
        raise NotImplementedError


# --------------------------------------------------------------------------------------
# primitives
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ellipsoid(Solid):
    """Ellipsoid, optionally rotated (columns of ``axes`` = local axes in LPS).

    ``lobes`` > 0 makes the border lobulated (lesions), deterministically.
    """

    center: np.ndarray
    radii: np.ndarray
    axes: np.ndarray | None = None
    lobes: float = 0.0

    def bbox(self) -> BBox:
        c, r = _vec(self.center), _vec(self.radii) * (1 + abs(self.lobes))
        if self.axes is None:
            return c - r, c + r
        ext = np.abs(np.asarray(self.axes)) @ r
        return c - ext, c + ext

    def inside(self, x: Array, y: Array, z: Array) -> Array:
        c = _vec(self.center)
        dx, dy, dz = x - np.float32(c[0]), y - np.float32(c[1]), z - np.float32(c[2])
        if self.axes is not None:
            a = np.asarray(self.axes, dtype=np.float32)
            dx, dy, dz = (
                a[0, 0] * dx + a[1, 0] * dy + a[2, 0] * dz,
                a[0, 1] * dx + a[1, 1] * dy + a[2, 1] * dz,
                a[0, 2] * dx + a[1, 2] * dy + a[2, 2] * dz,
            )
        r = _vec(self.radii).astype(np.float32)
        ux, uy, uz = dx / r[0], dy / r[1], dz / r[2]
        q = ux * ux + uy * uy + uz * uz
        if not self.lobes:
            return q <= 1.0
        # Lobulated border: radius factor 1 + a * f(direction), f a low-order harmonic.
        n = np.sqrt(q) + np.float32(1e-6)
        f = (
            np.sin(3.0 * ux / n + 0.7) * np.cos(2.0 * uy / n - 0.4)
            + 0.6 * np.sin(2.5 * uz / n + 1.3)
        ) * np.float32(0.6)
        lim = 1.0 + np.float32(self.lobes) * f
        return q <= lim * lim

    def shrunk(self, t: float) -> Solid:
        return replace(self, radii=np.maximum(_vec(self.radii) - t, 0.01))


@dataclass(frozen=True)
class Capsule(Solid):
    """Segment a-b swept by an ellipse: radius ``r`` across in the axial plane, ``rz`` in z.

    Pedicles, laminae, processes, rib segments, vessels, femoral neck and shaft.
    """

    a: np.ndarray
    b: np.ndarray
    r: float
    rz: float | None = None

    def bbox(self) -> BBox:
        a, b = _vec(self.a), _vec(self.b)
        rz = self.r if self.rz is None else self.rz
        ext = np.array([self.r, self.r, rz])
        return np.minimum(a, b) - ext, np.maximum(a, b) + ext

    def inside(self, x: Array, y: Array, z: Array) -> Array:
        a, b = _vec(self.a), _vec(self.b)
        d = b - a
        dd = float(d @ d) or 1e-9
        ax, ay, az = (np.float32(v) for v in a)
        px, py, pz = x - ax, y - ay, z - az
        t = (px * np.float32(d[0]) + py * np.float32(d[1]) + pz * np.float32(d[2])) / np.float32(dd)
        t = np.clip(t, 0.0, 1.0)
        ex = px - t * np.float32(d[0])
        ey = py - t * np.float32(d[1])
        ez = pz - t * np.float32(d[2])
        rz = self.r if self.rz is None else self.rz
        return (ex * ex + ey * ey) / np.float32(self.r**2) + ez * ez / np.float32(rz**2) <= 1.0

    def shrunk(self, t: float) -> Solid:
        rz = self.r if self.rz is None else self.rz
        return replace(self, r=max(self.r - t, 0.01), rz=max(rz - t, 0.01))


@dataclass(frozen=True)
class Profile(Solid):
    """A z-stack of superellipses whose centre and radii vary smoothly with z.

    ``knots`` holds rows (z, cx, cy, rx, ry_ant, ry_post); between knots values are
    interpolated linearly. Anterior (y < cy) and posterior halves may have different
    radii, e.g. a body outline flattened at the back. ``p`` is the superellipse exponent
    (2 = ellipse; larger = boxier). ``z0``/``z1`` clip the stack; ``round_mm`` rounds
    the end caps (vertebral endplate rims), and ``waist`` narrows the middle of the
    stack (the concave sides of a vertebral body).
    """

    knots: np.ndarray
    p: float = 2.0
    z0: float | None = None
    z1: float | None = None
    round_mm: float = 0.0
    waist: float = 0.0
    inset: tuple[float, float, float] = (0.0, 0.0, 0.0)  # (rx, ry_ant, ry_post) offsets

    def _zr(self) -> tuple[float, float]:
        k = np.asarray(self.knots)
        z0 = float(k[0, 0]) if self.z0 is None else self.z0
        z1 = float(k[-1, 0]) if self.z1 is None else self.z1
        return z0, z1

    def bbox(self) -> BBox:
        k = np.asarray(self.knots, dtype=float)
        z0, z1 = self._zr()
        zs = np.linspace(z0, z1, 64)
        cx, cy, rx, ra, rp = (np.interp(zs, k[:, 0], k[:, i]) for i in range(1, 6))
        lo = np.array([np.min(cx - rx), np.min(cy - ra), z0])
        hi = np.array([np.max(cx + rx), np.max(cy + rp), z1])
        return lo, hi

    def inside(self, x: Array, y: Array, z: Array) -> Array:
        k = np.asarray(self.knots, dtype=np.float64)
        z0, z1 = self._zr()
        zf = z.astype(np.float32)
        cx, cy, rx, ra, rp = (
            np.interp(zf, k[:, 0], k[:, i]).astype(np.float32) for i in range(1, 6)
        )
        ix, ia, ip = self.inset
        rx, ra, rp = rx - np.float32(ix), ra - np.float32(ia), rp - np.float32(ip)
        if self.waist or self.round_mm:
            # fraction of half-height from the centre of the stack (0 middle, 1 ends)
            h = np.float32(max((z1 - z0) / 2.0, 1e-6))
            u = np.abs(zf - np.float32((z0 + z1) / 2.0)) / h
            scale = np.ones_like(u)
            if self.waist:
                scale = scale - np.float32(self.waist) * (1.0 - u * u)
            if self.round_mm:
                # distance from the end plane, in mm; shrink radii near the ends
                dz = np.maximum(h * (1.0 - u), 0.0)
                rr = np.float32(self.round_mm)
                corner = np.where(
                    dz < rr, rr - np.sqrt(np.maximum(rr * rr - (rr - dz) ** 2, 0.0)), 0.0
                )
                rx = rx - corner
                ra = ra - corner
                rp = rp - corner
            rx, ra, rp = rx * scale, ra * scale, rp * scale
        dx = (x - cx) / np.maximum(rx, 1e-3)
        dyv = y - cy
        dy = dyv / np.maximum(np.where(dyv < 0, ra, rp), 1e-3)
        if self.p == 2.0:
            q = dx * dx + dy * dy
        else:
            p = np.float32(self.p)
            q = np.abs(dx) ** p + np.abs(dy) ** p
        return (q <= 1.0) & (zf >= np.float32(z0)) & (zf <= np.float32(z1))

    def shrunk(self, t: float) -> Solid:
        z0, z1 = self._zr()
        ix, ia, ip = self.inset
        return replace(
            self,
            z0=z0 + t,
            z1=z1 - t,
            inset=(ix + t, ia + t, ip + t),
            round_mm=max(self.round_mm - t, 0.0),
        )

    def with_inset(self, rx: float, ry_ant: float, ry_post: float) -> Profile:
        ix, ia, ip = self.inset
        return replace(self, inset=(ix + rx, ia + ry_ant, ip + ry_post))


@dataclass(frozen=True)
class ArcBand(Solid):
    """A curved plate: points whose axial distance to a circle arc is below a half-thickness.

    The iliac wing in axial section is such a curved band. ``side`` = +1 builds it on
    the patient's left (x > 0), -1 mirrors it to the right. Angles (degrees) are
    measured in the mirrored frame with atan2(y - cy, x' - cx); thickness and the crest
    height vary with angle via knot tables (angle_deg, value).
    """

    center_xy: tuple[float, float]
    radius: float
    z_bottom: float
    crest_z: np.ndarray  # (angle_deg, z_top) knots
    half_thickness: np.ndarray  # (angle_deg, mm) knots
    angle_min: np.ndarray  # (z, angle_deg) knots: anterior border vs height
    angle_max: np.ndarray  # (z, angle_deg) knots: posterior border vs height
    side: int = 1
    offset: float = 0.0

    def bbox(self) -> BBox:
        cx, cy = self.center_xy
        hmax = float(np.max(np.asarray(self.half_thickness)[:, 1]))
        rout = self.radius + hmax
        xs = np.array([cx - rout, cx + rout]) * self.side
        ztop = float(np.max(np.asarray(self.crest_z)[:, 1]))
        return (
            np.array([xs.min(), cy - rout, self.z_bottom]),
            np.array([xs.max(), cy + rout, ztop]),
        )

    def inside(self, x: Array, y: Array, z: Array) -> Array:
        cx, cy = self.center_xy
        xm = x * np.float32(self.side) - np.float32(cx)
        ym = y - np.float32(cy)
        rho = np.sqrt(xm * xm + ym * ym)
        ang = np.degrees(np.arctan2(ym, xm)).astype(np.float32)
        ht = np.asarray(self.half_thickness, dtype=float)
        cz = np.asarray(self.crest_z, dtype=float)
        amin = np.asarray(self.angle_min, dtype=float)
        amax = np.asarray(self.angle_max, dtype=float)
        h = np.interp(ang, ht[:, 0], ht[:, 1]).astype(np.float32) - np.float32(self.offset)
        ztop = np.interp(ang, cz[:, 0], cz[:, 1]).astype(np.float32) - np.float32(self.offset)
        zz = z.astype(np.float32)
        lo = np.interp(zz, amin[:, 0], amin[:, 1]).astype(np.float32)
        hi = np.interp(zz, amax[:, 0], amax[:, 1]).astype(np.float32)
        dang = np.float32(np.degrees(self.offset / self.radius))
        # thicker plate just below the crest (the iliac crest lip)
        hh = h + np.clip((zz - (ztop - 12.0)) / 12.0, 0.0, 1.0) * np.float32(3.0)
        # rounded crest: a half-disc cap of radius hh on top of the plate
        depth = ztop - zz
        cap = np.sqrt(np.maximum(hh * hh - (hh - depth) ** 2, 0.0))
        half = np.where(depth < hh, cap, hh)
        return (
            (np.abs(rho - np.float32(self.radius)) <= half)
            & (zz <= ztop)
            & (zz >= np.float32(self.z_bottom + self.offset))
            & (ang >= lo + dang)
            & (ang <= hi - dang)
        )

    def shrunk(self, t: float) -> Solid:
        return replace(self, offset=self.offset + t)


# --------------------------------------------------------------------------------------
# combinators
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Intersect(Solid):
    """Points inside every part (clip an organ to the abdominal cavity)."""

    parts: tuple[Solid, ...]

    def bbox(self) -> BBox:
        boxes = [p.bbox() for p in self.parts]
        return np.max([b[0] for b in boxes], axis=0), np.min([b[1] for b in boxes], axis=0)

    def inside(self, x: Array, y: Array, z: Array) -> Array:
        out = self.parts[0].inside(x, y, z)
        for p in self.parts[1:]:
            out = out & p.inside(x, y, z)
        return out

    def shrunk(self, t: float) -> Solid:
        return Intersect(tuple(p.shrunk(t) for p in self.parts))


@dataclass(frozen=True)
class Union(Solid):
    parts: tuple[Solid, ...]

    def bbox(self) -> BBox:
        boxes = [p.bbox() for p in self.parts]
        return np.min([b[0] for b in boxes], axis=0), np.max([b[1] for b in boxes], axis=0)

    def inside(self, x: Array, y: Array, z: Array) -> Array:
        out = self.parts[0].inside(x, y, z)
        for p in self.parts[1:]:
            out = out | p.inside(x, y, z)
        return out

    def shrunk(self, t: float) -> Solid:
        return Union(tuple(p.shrunk(t) for p in self.parts))


@dataclass(frozen=True)
class Difference(Solid):
    base: Solid
    minus: Solid

    def bbox(self) -> BBox:
        return self.base.bbox()

    def inside(self, x: Array, y: Array, z: Array) -> Array:
        return self.base.inside(x, y, z) & ~self.minus.inside(x, y, z)

    def shrunk(self, t: float) -> Solid:
        return Difference(self.base.shrunk(t), self.minus)


@dataclass(frozen=True)
class HalfSpace(Solid):
    """Points with n . p <= d (e.g. the non-dependent, anterior part of a bowel lumen)."""

    normal: np.ndarray
    d: float
    box: BBox = field(default_factory=lambda: (np.full(3, -1e4), np.full(3, 1e4)))

    def bbox(self) -> BBox:
        return self.box

    def inside(self, x: Array, y: Array, z: Array) -> Array:
        n = _vec(self.normal).astype(np.float32)
        return x * n[0] + y * n[1] + z * n[2] <= np.float32(self.d)

    def shrunk(self, t: float) -> Solid:
        return replace(self, d=self.d - t)


@dataclass(frozen=True)
class AboveSurface(Solid):
    """Points above a height field z > f(x, y) (the lungs above the diaphragm)."""

    height: Callable[[Array, Array], Array]
    box: BBox = field(default_factory=lambda: (np.full(3, -1e4), np.full(3, 1e4)))

    def bbox(self) -> BBox:
        return self.box

    def inside(self, x: Array, y: Array, z: Array) -> Array:
        return z > self.height(x, y)

    def shrunk(self, t: float) -> Solid:
        h = self.height
        lo, hi = self.box
        box = (lo + np.array([0.0, 0.0, t]), hi)
        return replace(self, height=lambda x, y: h(x, y) + np.float32(t), box=box)


# --------------------------------------------------------------------------------------
# grids and painting
# --------------------------------------------------------------------------------------


@dataclass
class Grid:
    """A voxel grid: ``shape`` (nk, nj, ni) and the 4x4 affine index (i, j, k) -> model mm."""

    shape: tuple[int, int, int]
    index_to_model: np.ndarray
    model_to_index: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.shape = tuple(int(n) for n in self.shape)  # type: ignore[assignment]
        self.index_to_model = np.asarray(self.index_to_model, dtype=float)
        self.model_to_index = np.linalg.inv(self.index_to_model)

    def block_coords(
        self, lo: Sequence[int], hi: Sequence[int], k_offset: float = 0.0
    ) -> tuple[Array, Array, Array]:
        """Model coordinates of the index block [lo, hi) (order k, j, i), broadcastable."""
        k = (np.arange(lo[0], hi[0], dtype=np.float64) + k_offset)[:, None, None]
        j = np.arange(lo[1], hi[1], dtype=np.float64)[None, :, None]
        i = np.arange(lo[2], hi[2], dtype=np.float64)[None, None, :]
        m = self.index_to_model
        out = []
        for row in range(3):
            acc = np.float64(m[row, 3])
            for coef, idx in ((m[row, 0], i), (m[row, 1], j), (m[row, 2], k)):
                if abs(coef) > 1e-12:
                    acc = acc + coef * idx
            out.append(np.asarray(acc, dtype=np.float32))
        return out[0], out[1], out[2]

    def index_block(self, box: BBox, margin_vox: int = 1) -> tuple[list[int], list[int]] | None:
        """Index block [lo, hi) (k, j, i) covering a model-space box, or None if outside."""
        lo, hi = (np.asarray(b, dtype=float) for b in box)
        corners = np.array(
            [[a, b, c] for a in (lo[0], hi[0]) for b in (lo[1], hi[1]) for c in (lo[2], hi[2])]
        )
        inv = self.model_to_index
        ijk = corners @ inv[:3, :3].T + inv[:3, 3]
        kji_lo = np.floor(ijk.min(axis=0))[::-1] - margin_vox
        kji_hi = np.ceil(ijk.max(axis=0))[::-1] + margin_vox + 1
        size = np.asarray(self.shape)
        a = np.clip(kji_lo, 0, size).astype(int)
        b = np.clip(kji_hi, 0, size).astype(int)
        if np.any(b <= a):
            return None
        return a.tolist(), b.tolist()


def paint(
    labels: np.ndarray,
    grid: Grid,
    solid: Solid,
    value: int,
    only: Sequence[int] | None = None,
    avoid: Sequence[int] | None = None,
    k_offset: float = 0.0,
    chunk_voxels: int = 1 << 19,
) -> None:
    """Set ``labels`` to ``value`` where ``solid`` holds, over ``only`` / not over ``avoid``.

    Large blocks are processed a few slices at a time so that temporaries stay in cache.
    """
    blk = grid.index_block(solid.bbox())
    if blk is None:
        return
    (k0, j0, i0), (k1, j1, i1) = blk
    per_slice = max((j1 - j0) * (i1 - i0), 1)
    step = max(1, chunk_voxels // per_slice)
    only_arr = None if only is None else np.asarray(only, dtype=labels.dtype)
    avoid_arr = None if avoid is None else np.asarray(avoid, dtype=labels.dtype)
    for ka in range(k0, k1, step):
        kb = min(ka + step, k1)
        x, y, z = grid.block_coords((ka, j0, i0), (kb, j1, i1), k_offset)
        view = labels[ka:kb, j0:j1, i0:i1]
        mask = np.broadcast_to(solid.inside(x, y, z), view.shape)
        if only_arr is not None:
            mask = mask & np.isin(view, only_arr)
        if avoid_arr is not None:
            mask = mask & ~np.isin(view, avoid_arr)
        view[mask] = value


def rotation_about(axis: Sequence[float], angle_deg: float) -> np.ndarray:
    """Rotation matrix (Rodrigues) used to orient organs; columns are the rotated axes."""
    a = _vec(axis)
    a = a / np.linalg.norm(a)
    t = np.deg2rad(angle_deg)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + np.sin(t) * k + (1 - np.cos(t)) * (k @ k)
