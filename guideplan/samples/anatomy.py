"""The torso phantom: tissues as ordered paint operations on analytic solids (LPS mm).

Why a painter: anatomy nests (marrow inside cortex, canal through the vertebra, lesion
through the cortex), and "paint the later structure over the earlier one" expresses
that in a few lines per organ while keeping every structure an exact analytic solid.

Frame: L = patient's left = +x, P = posterior = +y, S = head = +z. The L2 body centre is
at z = 0; the spine runs at x = 0 with its body centres at y = ``spine_y(z)``.
Sizes follow CLINICAL.md (lumbar body 20-30 mm high, 30-35 deep, 40-50 wide) and
common adult anatomy; the phantom is plausible, not an atlas.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np

from guideplan.samples.shapes import (
    AboveSurface,
    ArcBand,
    Capsule,
    Ellipsoid,
    HalfSpace,
    Intersect,
    Profile,
    Solid,
    rotation_about,
)


class Tissue(IntEnum):
    """Label values of the phantom; intensities per modality live in resources/samples."""

    AIR = 0
    FAT = 1
    SKIN = 2
    MUSCLE = 3
    CORTICAL = 4
    TRABECULAR = 5
    DISC = 6
    CSF = 7
    CORD = 8
    LESION = 9
    ARTERY = 10
    VEIN = 11
    KIDNEY = 12
    LIVER = 13
    SPLEEN = 14
    BOWEL_WALL = 15
    BOWEL_FLUID = 16
    GAS = 17
    LUNG = 18
    HEART = 19
    CARTILAGE = 20
    NERVE = 21
    EPIDURAL_FAT = 22
    TABLE_SHELL = 23
    TABLE_CORE = 24
    URINE = 25
    FECES = 26
    JOINT = 27


BONE_TISSUES = (Tissue.CORTICAL, Tissue.TRABECULAR)
CANAL_TISSUES = (Tissue.CSF, Tissue.CORD, Tissue.NERVE, Tissue.EPIDURAL_FAT)
OUTSIDE_BODY = (Tissue.AIR, Tissue.TABLE_SHELL, Tissue.TABLE_CORE)
_NOT_BODY = (Tissue.AIR, Tissue.SKIN)

# name, body height, disc below, body half-width, body half-depth, canal half-width,
# canal half-depth (mm)
_LEVEL_TABLE = (
    ("T5", 18.0, 4.0, 14.0, 13.0, 7.5, 7.5),
    ("T6", 18.5, 4.0, 14.5, 13.5, 7.5, 7.5),
    ("T7", 19.0, 4.5, 15.0, 14.0, 7.5, 7.5),
    ("T8", 20.0, 4.5, 16.0, 14.5, 7.5, 7.5),
    ("T9", 21.0, 5.0, 17.0, 15.0, 7.5, 7.5),
    ("T10", 22.0, 5.0, 18.0, 15.5, 8.0, 7.5),
    ("T11", 23.0, 5.5, 19.5, 16.0, 8.5, 7.5),
    ("T12", 24.0, 6.5, 21.0, 16.5, 9.5, 8.0),
    ("L1", 25.0, 8.0, 22.0, 16.5, 10.5, 8.0),
    ("L2", 26.0, 9.0, 23.0, 17.0, 11.0, 8.5),
    ("L3", 27.0, 10.0, 24.0, 17.0, 11.5, 8.5),
    ("L4", 27.0, 10.5, 25.0, 17.0, 12.0, 8.5),
    ("L5", 26.0, 11.0, 26.0, 17.0, 12.5, 8.0),
)
#: Vertebral-body centre y (mm) by level: kyphosis, lordosis, sacral curve.
_SPINE_Y = {
    "T5": 60,
    "T7": 62,
    "T9": 58,
    "T10": 55,
    "T11": 52,
    "T12": 48,
    "L1": 42,
    "L2": 37,
    "L3": 33,
    "L4": 31,
    "L5": 34,
    "S1": 42,
    "S3": 60,
    "S5": 80,
}
#: Body outline by level: half-width, anterior depth, posterior depth (mm, average adult).
_OUTLINE = {
    "T5": (135, 95, 138),
    "T8": (142, 100, 140),
    "T10": (145, 100, 137),
    "T12": (145, 98, 132),
    "L1": (145, 97, 127),
    "L2": (146, 97, 123),
    "L3": (148, 97, 120),
    "L4": (155, 95, 118),
    "L5": (162, 93, 120),
    "S1": (168, 92, 122),
    "S3": (172, 92, 130),
    "S5": (172, 90, 130),
}


@dataclass(frozen=True)
class Level:
    """One vertebra's placement and size."""

    name: str
    zc: float
    height: float
    disc_below: float
    half_width: float
    half_depth: float
    canal_rx: float
    canal_ry: float
    y: float

    @property
    def z_top(self) -> float:
        return self.zc + self.height / 2

    @property
    def z_bottom(self) -> float:
        return self.zc - self.height / 2

    @property
    def thoracic(self) -> bool:
        return self.name.startswith("T")

    @property
    def canal_cy(self) -> float:
        """Centre of the vertebral foramen (behind the body's posterior wall)."""
        return self.y + self.half_depth + 1.0 + self.canal_ry


@dataclass(frozen=True)
class Habitus:
    """The patient's build: outline scale and fat; bowel layout seed."""

    width_scale: float = 1.0
    depth_scale: float = 1.0
    fat_mm: float = 18.0
    fat_back_mm: float = 12.0
    bowel_seed: int = 1


@dataclass(frozen=True)
class LesionSpec:
    """A metastasis: centre (model LPS mm), radii, kind, and the bone it may not leave.

    ``host`` names the solid that clips the lesion ("body:L2", "ilium:left", ...);
    ``extension_mm`` lets it grow that far beyond the host (epidural or soft-tissue
    extension through destroyed cortex).
    """

    kind: str  # "lytic" | "blastic"
    center: tuple[float, float, float]
    radii: tuple[float, float, float]
    host: str
    extension_mm: float = 0.0
    lobes: float = 0.08
    tilt_deg: float = 0.0


@dataclass
class PaintOp:
    solid: Solid
    label: Tissue
    only: tuple[int, ...] | None = None
    avoid: tuple[int, ...] | None = None


@dataclass
class Phantom:
    """The whole model: ordered paint operations plus the lesion, for one patient."""

    habitus: Habitus
    lesion: LesionSpec | None = None
    #: Lesion radii multiplier (a prior exam shows the lesion earlier, smaller).
    lesion_scale: float = 1.0
    #: Patient lying face down: gravity-dependent details (gas, cauda equina roots) are
    #: mirrored front to back. The anatomy itself does not move in LPS.
    prone: bool = False
    levels: dict[str, Level] = field(init=False)
    ops: list[PaintOp] = field(init=False)
    hosts: dict[str, Solid] = field(init=False)

    def __post_init__(self) -> None:
        self.levels = _build_levels()
        self.hosts = {}
        self.ops = []
        self._build()

    # -- lookups ---------------------------------------------------------------------
    def spine_y(self, z: float | np.ndarray) -> np.ndarray:
        zs, ys = self._spine_knots()
        return np.interp(z, zs, ys)

    def _spine_knots(self) -> tuple[np.ndarray, np.ndarray]:
        zs, ys = [], []
        for name, y in _SPINE_Y.items():
            zs.append(self.level_z(name))
            ys.append(y)
        order = np.argsort(zs)
        return np.asarray(zs)[order], np.asarray(ys, dtype=float)[order]

    def level_z(self, name: str) -> float:
        if name in self.levels:
            return self.levels[name].zc
        l5 = self.levels["L5"]
        s1_top = l5.z_bottom - l5.disc_below
        return {"S1": s1_top - 14.0, "S3": s1_top - 58.0, "S5": s1_top - 100.0}[name]

    @property
    def sacrum_top(self) -> float:
        l5 = self.levels["L5"]
        return l5.z_bottom - l5.disc_below

    @property
    def crest_z(self) -> float:
        """Top of the iliac crest (about the L4 body's middle)."""
        return self.levels["L4"].zc - 2.0

    def lesion_solid(self) -> Solid | None:
        if self.lesion is None:
            return None
        spec = self.lesion
        radii = np.asarray(spec.radii) * self.lesion_scale
        axes = rotation_about((0, 0, 1), spec.tilt_deg) if spec.tilt_deg else None
        ell = Ellipsoid(np.asarray(spec.center, float), radii, axes, spec.lobes)
        host = self.hosts[spec.host]
        clip = host.shrunk(-spec.extension_mm) if spec.extension_mm else host
        return Intersect((ell, clip))

    # -- construction ----------------------------------------------------------------
    def _outline_knots(
        self, inset_side: float = 0.0, inset_ant: float = 0.0, inset_back: float = 0.0
    ) -> np.ndarray:
        h = self.habitus
        rows = []
        for name, (rx, ra, rp) in _OUTLINE.items():
            z = self.level_z(name)
            sy = float(self.spine_y(z))
            rows.append(
                (
                    z,
                    0.0,
                    0.0,
                    rx * h.width_scale - inset_side,
                    ra * h.depth_scale - inset_ant,
                    sy + (rp - sy) * h.depth_scale - inset_back,
                )
            )
        rows.sort()
        k = np.array(rows)
        # extend flat beyond the ends so any grid gets a body
        return np.vstack([k[0] - [400, 0, 0, 0, 0, 0], k, k[-1] + [400, 0, 0, 0, 0, 0]])

    def _build(self) -> None:
        h = self.habitus
        f, fb = h.fat_mm, h.fat_back_mm
        outline = Profile(self._outline_knots(), p=2.2)
        skin = 2.0
        self._op(outline, Tissue.SKIN)
        self._op(Profile(self._outline_knots(skin, skin, skin), p=2.2), Tissue.FAT)
        #: inside the subcutaneous fat: muscles are clipped to it
        self.inner = Profile(self._outline_knots(f, f, fb), p=2.2)
        self._op(self.inner, Tissue.MUSCLE)
        wall = 12.0
        cavity = Profile(self._outline_knots(f + wall, f + wall, fb + 22.0), p=2.2)
        self.cavity = cavity
        self._op(cavity, Tissue.FAT)
        self._abdominal_organs(cavity)
        self._thorax(cavity)
        self._bowel(cavity)
        self._muscles()
        self._paravertebral()
        self._vessels()
        self._bones()
        self._canal()

    def _op(
        self,
        solid: Solid,
        label: Tissue,
        only: tuple[int, ...] | None = None,
        avoid: tuple[int, ...] | None = None,
    ) -> None:
        self.ops.append(PaintOp(solid, label, only, avoid))

    # -- organs ------------------------------------------------------------------------
    def _abdominal_organs(self, cavity: Solid) -> None:
        lv = self.levels
        z11, zl1, zl2 = lv["T11"].zc, lv["L1"].zc, lv["L2"].zc
        y11 = float(self.spine_y(z11))
        liver = Ellipsoid(
            np.array([-45.0, y11 - 45, z11 - 5]),
            np.array([105.0, 80, 80]),
            rotation_about((0, 1, 0), 12),
        )
        self._op(Intersect((liver, cavity)), Tissue.LIVER)
        spleen = Ellipsoid(
            np.array([88.0, y11 + 5, z11 - 5]),
            np.array([24.0, 48, 50]),
            rotation_about((0, 0, 1), 40),
        )
        self._op(Intersect((spleen, cavity)), Tissue.SPLEEN)
        st_c = np.array([55.0, y11 - 70, z11 + 5])
        st_ax = rotation_about((0, 0, 1), -20)
        stomach = Ellipsoid(st_c, np.array([42.0, 32, 55]), st_ax)
        self._op(Intersect((stomach, cavity)), Tissue.BOWEL_WALL)
        lumen = Ellipsoid(st_c, np.array([38.0, 28, 51]), st_ax)
        self._op(Intersect((lumen, cavity)), Tissue.BOWEL_FLUID)
        gas = Intersect((lumen, self._non_dependent(st_c[1], 12.0)))
        self._op(Intersect((gas, cavity)), Tissue.GAS)
        # kidneys: left higher than right; lower pole lateral, hilum anteromedial
        for side, zk in ((1, (zl1 + zl2) / 2), (-1, (zl1 + zl2) / 2 - 15)):
            yk = float(self.spine_y(zk)) + 18
            axes = rotation_about((0, 0, 1), side * 30) @ rotation_about((0, 1, 0), side * 12)
            c = np.array([side * 72.0, yk, zk])
            self._op(Ellipsoid(c, np.array([32.0, 24, 58]) + 6, axes), Tissue.FAT)
            self._op(Ellipsoid(c, np.array([27.0, 20, 55]), axes), Tissue.KIDNEY)
            sinus = c + axes @ np.array([-side * 14.0, -6, 0])
            self._op(Ellipsoid(sinus, np.array([9.0, 7, 25]), axes), Tissue.FAT)
        # bladder low in the pelvis
        zb = self.level_z("S5") - 10
        self._op(
            Ellipsoid(np.array([0.0, -45, zb]), np.array([45.0, 35, 35])),
            Tissue.URINE,
            avoid=_NOT_BODY,
        )

    def _diaphragm_height(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Height of the diaphragm: two domes, right higher, deep posterior recesses."""
        z9 = np.float32(self.levels["T9"].zc)
        top = np.where(x < 0, z9 + 8.0, z9 - 6.0).astype(np.float32)
        ax = np.abs(x) - np.float32(55.0)
        ay = y + np.float32(25.0)
        h = top - np.float32(0.0035) * ax * ax - np.float32(0.0055) * ay * ay
        return np.maximum(h, np.float32(self._diaphragm_floor))

    @property
    def _diaphragm_floor(self) -> float:
        """Lowest point of the posterior costophrenic recesses (T12/L1 disc)."""
        return self.levels["T12"].z_bottom - 2.0

    def _thorax(self, cavity: Profile) -> None:
        lv = self.levels
        floor = self._diaphragm_floor
        dome = AboveSurface(
            self._diaphragm_height, (np.array([-1e4, -1e4, floor - 6.0]), np.full(3, 1e4))
        )
        self._op(Intersect((cavity, dome.shrunk(-5.0))), Tissue.MUSCLE)  # diaphragm
        self._op(Intersect((cavity, dome)), Tissue.LUNG)
        z5, z10 = lv["T5"].zc, lv["T10"].zc
        y5, y10 = float(self.spine_y(z5)), float(self.spine_y(z10))
        med = Profile(
            np.array([[z10 - 60, 8, y10 - 40, 30, 45, 25], [z5 + 100, 5, y5 - 45, 26, 50, 25]])
        )
        self._op(Intersect((med, dome)), Tissue.FAT)
        heart_c = np.array([30.0, -30.0, lv["T8"].zc + 5])
        heart_ax = rotation_about((0, 0, 1), 35) @ rotation_about((1, 0, 0), -20)
        self._op(
            Intersect((Ellipsoid(heart_c, np.array([72.0, 52, 62]), heart_ax), dome)), Tissue.FAT
        )
        self._op(
            Intersect((Ellipsoid(heart_c, np.array([66.0, 47, 57]), heart_ax), dome)), Tissue.HEART
        )
        # oesophagus, right-anterior of the aorta
        pts = [(5.0, self.spine_y(z) - 25.0, z) for z in (z5 + 60, z10, lv["T11"].zc)]
        for a, b in itertools.pairwise(pts):
            self._op(Capsule(np.array(a), np.array(b), 8.0), Tissue.MUSCLE, avoid=_NOT_BODY)

    def _bowel(self, cavity: Solid) -> None:
        """Colon frame and small-bowel loops, some with gas on the non-dependent side
        (anterior when supine, posterior when prone)."""
        rng = np.random.default_rng(1000 + self.habitus.bowel_seed)
        lv = self.levels
        zs1, z12, zl1, zl2, zl3 = (
            self.level_z("S1"),
            lv["T12"].zc,
            lv["L1"].zc,
            lv["L2"].zc,
            lv["L3"].zc,
        )
        colon = [
            # ascending colon (right), transverse (anterior, sagging), descending (left)
            ([(-100, -5, zs1 + 10), (-98, 0, zl2), (-85, -25, zl1 + 5)], 21.0),
            ([(-85, -25, zl1 + 5), (-40, -70, zl2 - 10), (30, -72, zl2 - 5), (85, -30, z12)], 19.0),
            ([(85, -30, z12), (100, 10, zl2), (98, 15, zs1 + 15), (60, 5, zs1 - 40)], 15.0),
        ]
        for pts, r in colon:
            self._tube(pts, r, Tissue.FECES, gas_fraction=0.45, cavity=cavity)
        centre = np.array([0.0, -45.0, (zl3 + zs1) / 2])
        for _ in range(26):
            a = centre + rng.uniform([-70, -35, -55], [70, 25, 60])
            direction = rng.normal(size=3)
            direction[2] *= 0.3
            direction /= np.linalg.norm(direction)
            b = a + direction * rng.uniform(25, 45)
            content = Tissue.BOWEL_FLUID if rng.random() < 0.75 else Tissue.FECES
            self._tube(
                [tuple(a), tuple(b)],
                float(rng.uniform(10, 14)),
                content,
                gas_fraction=0.35 if rng.random() < 0.4 else 0.0,
                cavity=cavity,
            )

    def _tube(
        self,
        pts: Sequence[Sequence[float]],
        r: float,
        content: Tissue,
        gas_fraction: float,
        cavity: Solid,
    ) -> None:
        for a, b in itertools.pairwise(pts):
            a, b = np.array(a, float), np.array(b, float)
            self._op(Intersect((Capsule(a, b, r), cavity)), Tissue.BOWEL_WALL)
            lumen = Capsule(a, b, r - 2.5)
            self._op(Intersect((lumen, cavity)), content)
            if gas_fraction:
                top = max(a[1], b[1]) if self.prone else min(a[1], b[1])
                level = self._non_dependent(top, (r - 2.5) * (1 - 2 * gas_fraction))
                self._op(Intersect((lumen, cavity, level)), Tissue.GAS)

    def _non_dependent(self, y: float, depth: float) -> HalfSpace:
        """The part of space more than ``depth`` mm above ``y`` against gravity: anterior
        (y < y - depth) when supine, posterior (y > y + depth) when prone."""
        if self.prone:
            return HalfSpace(np.array([0.0, -1, 0]), -(y + depth))
        return HalfSpace(np.array([0.0, 1, 0]), y - depth)

    # -- muscles -----------------------------------------------------------------------
    def _paravertebral(self) -> None:
        """Soft tissue around the thoracic spine where the lungs were painted: the lungs
        reach the vertebral bodies' sides and the rib heads, not the neural arch, and the
        ring between the vertebral body and the laminae holds fat, not air. (Plain fat:
        the canal's own contents, painted later, define the truth canal.)"""
        envelope, ring = [], []
        for lvl in sorted(self.levels.values(), key=lambda lv: lv.zc):
            if not (lvl.thoracic or lvl.name == "L1"):
                continue
            ant = lvl.canal_cy - lvl.y  # forward to the vertebral body's centre line
            for z in (lvl.z_bottom - lvl.disc_below, lvl.z_top):
                envelope.append(
                    (z, 0.0, lvl.canal_cy, lvl.canal_rx + 16.0, ant, lvl.canal_ry + 28.0)
                )
                r = lvl.canal_ry + 4.0
                ring.append((z, 0.0, lvl.canal_cy, lvl.canal_rx + 4.0, r, r))
        if not envelope:
            return
        lung = (int(Tissue.LUNG),)
        self._op(Profile(np.array(ring), p=2.2), Tissue.FAT, only=lung)
        self._op(
            Intersect((Profile(np.array(envelope), p=2.2), self.inner)), Tissue.MUSCLE, only=lung
        )

    def _muscles(self) -> None:
        lv = self.levels
        names = ["T5", "T8", "T10", "T12", "L2", "L4", "L5", "S1", "S3"]
        for side in (1, -1):
            rows = []
            for n in names:
                z = self.level_z(n)
                y = float(self.spine_y(z))
                lumbar = n[0] in "LS"
                rx, ry = (27.0, 24.0) if lumbar else (22.0, 19.0)
                cy = y + (62.0 if lumbar else 58.0)
                if n == "S3":
                    rx, ry, cy = 14.0, 10.0, y + 30.0
                rows.append((z, side * (rx + 7.0), cy, rx, ry, ry))
            rows.sort()
            self._op(Intersect((Profile(np.array(rows), p=2.4), self.inner)), Tissue.MUSCLE)
            # psoas: thin at T12, widest at L4-L5, then anterior into the pelvis
            ps = []
            for n, dx, dy, rx, ry in (
                ("T12", 26, 4, 5, 5),
                ("L1", 30, 4, 9, 8),
                ("L2", 36, 2, 13, 11),
                ("L3", 42, -2, 17, 14),
                ("L4", 47, -8, 20, 17),
                ("L5", 54, -16, 21, 18),
                ("S1", 63, -30, 20, 18),
                ("S3", 75, -55, 17, 16),
                ("S5", 85, -75, 15, 14),
            ):
                z = self.level_z(n)
                ps.append((z, side * dx, float(self.spine_y(z)) + dy, rx, ry, ry))
            ps.sort()
            self._op(Profile(np.array(ps), z0=lv["T12"].z_bottom), Tissue.MUSCLE, avoid=_NOT_BODY)
            # quadratus lumborum, lateral to the transverse processes
            ql = []
            for n, dx, rx in (("T12", 55, 8), ("L2", 62, 15), ("L4", 66, 14)):
                z = self.level_z(n)
                ql.append((z, side * dx, float(self.spine_y(z)) + 28, rx, 9, 9))
            self._op(Profile(np.array(ql)), Tissue.MUSCLE, avoid=_NOT_BODY)
            # gluteus medius outside the iliac wing, iliacus inside it
            zc = self.crest_z
            ang = np.array([[zc - 120, -10], [zc, -10]])
            ang_hi = np.array([[zc - 120, 105], [zc, 105]])
            glut = ArcBand(
                _ilium_center_xy(self),
                _ILIUM_RADIUS + 24.0,
                zc - 110,
                np.array([[-20, zc - 14], [40, zc - 8], [110, zc - 14]]),
                np.array([[-20, 10.0], [30, 20.0], [100, 22.0]]),
                ang,
                ang_hi,
                side=side,
            )
            self._op(Intersect((glut, self.inner)), Tissue.MUSCLE)
            iliacus = ArcBand(
                _ilium_center_xy(self),
                _ILIUM_RADIUS - 14.0,
                zc - 100,
                np.array([[-20, zc - 10], [40, zc - 4], [100, zc - 10]]),
                np.array([[-20, 8.0], [40, 10.0], [90, 8.0]]),
                np.array([[zc - 120, 0], [zc, -15]]),
                np.array([[zc - 120, 80], [zc, 90]]),
                side=side,
            )
            self._op(iliacus, Tissue.MUSCLE, avoid=_NOT_BODY)
            # gluteus maximus behind the sacrum and ilium
            gm = []
            for dz, dx, dy, rx, ry in (
                (-30, 75, 55, 35, 18),
                (-60, 80, 70, 55, 28),
                (-100, 85, 75, 60, 32),
                (-150, 95, 60, 55, 30),
            ):
                z = self.sacrum_top + dz
                gm.append((z, side * dx, float(self.spine_y(z)) + dy, rx, ry, ry))
            gm.sort()
            self._op(Intersect((Profile(np.array(gm), p=2.3), self.inner)), Tissue.MUSCLE)

    # -- vessels -----------------------------------------------------------------------
    def _vessels(self) -> None:
        lv = self.levels
        sy = self.spine_y
        z = {
            n: self.level_z(n)
            for n in ("T5", "T8", "T10", "T12", "L1", "L2", "L3", "L4", "L5", "S1", "S3")
        }
        aorta = [
            (24, sy(z["T5"]) - 4, z["T5"] + 60),
            (24, sy(z["T8"]) - 6, z["T8"]),
            (15, sy(z["T12"]) - 24, z["T12"]),
            (13, sy(z["L2"]) - 30, z["L2"]),
            (9, sy(z["L4"]) - 32, lv["L4"].z_top),
        ]
        self._chain(aorta, 11.5, Tissue.ARTERY)
        fork = np.array(aorta[-1], float)
        for side in (1, -1):
            self._chain(
                [
                    tuple(fork),
                    (side * 40, sy(z["S1"]) - 35, z["S1"]),
                    (side * 75, -55, z["S3"] - 30),
                ],
                6.5,
                Tissue.ARTERY,
            )
        ivc = [
            (-18, sy(z["T8"]) - 60, z["T8"]),
            (-28, sy(z["T12"]) - 40, z["T12"]),
            (-24, sy(z["L2"]) - 28, z["L2"]),
            (-12, sy(z["L4"]) - 26, lv["L4"].z_bottom),
        ]
        self._chain(ivc, 11.0, Tissue.VEIN)
        confluence = np.array(ivc[-1], float)
        for side in (1, -1):
            self._chain(
                [
                    tuple(confluence),
                    (side * 42, sy(z["S1"]) - 18, z["S1"] - 5),
                    (side * 72, -45, z["S3"] - 30),
                ],
                8.0,
                Tissue.VEIN,
            )
        # azygos, right-posterior of the aorta in the chest
        self._chain(
            [(-10, sy(z["T5"]) - 12, z["T5"] + 60), (-12, sy(z["T12"]) - 14, z["T12"])],
            3.5,
            Tissue.VEIN,
        )

    def _chain(self, pts: Sequence[Sequence[float]], r: float, label: Tissue) -> None:
        arr = [np.array(p, float) for p in pts]
        for a, b in itertools.pairwise(arr):
            self._op(Capsule(a, b, r), label, avoid=_NOT_BODY)

    # -- bones -------------------------------------------------------------------------
    def _bones(self) -> None:
        spine: list[tuple[Solid, float]] = []
        discs: list[Solid] = []
        for lvl in self.levels.values():
            spine += self._vertebra(lvl)
            discs.append(self._disc(lvl))
        # L5-S1 disc sits on the sacrum
        for d in discs:
            self._op(d, Tissue.DISC, avoid=_NOT_BODY)
        ribs, cartilage = self._ribs()
        pelvis = self._ilium()
        self._bone_group(spine + ribs + pelvis)
        for c in cartilage:
            self._op(c, Tissue.CARTILAGE, avoid=_NOT_BODY)
        sacrum = self._sacrum()
        self._op(sacrum.shrunk(-2.0), Tissue.JOINT, only=BONE_TISSUES)  # SI joints
        self._bone_group([(sacrum, 1.5)])
        heads = self._femurs()
        for head, _ in heads[:2]:
            self._op(head.shrunk(-2.5), Tissue.JOINT, only=BONE_TISSUES)  # hip joints
        self._bone_group(heads)

    def _bone_group(self, solids: list[tuple[Solid, float]]) -> None:
        """Cortex pass then marrow pass, so touching bones merge into one marrow space."""
        for s, _ in solids:
            self._op(s, Tissue.CORTICAL, avoid=_NOT_BODY)
        for s, t in solids:
            self._op(s.shrunk(t), Tissue.TRABECULAR, avoid=_NOT_BODY)

    def _body_profile(self, lvl: Level) -> Profile:
        a, b = lvl.half_width, lvl.half_depth
        knots = np.array([[lvl.z_bottom, 0, lvl.y, a, b, b], [lvl.z_top, 0, lvl.y, a, b, b]])
        return Profile(knots, p=2.7, round_mm=2.0, waist=0.07)

    def _disc(self, lvl: Level) -> Solid:
        a, b = lvl.half_width + 1.0, lvl.half_depth + 1.0
        z0, z1 = lvl.z_bottom - lvl.disc_below - 0.5, lvl.z_bottom + 0.5
        return Profile(np.array([[z0, 0, lvl.y, a, b, b], [z1, 0, lvl.y, a, b, b]]), p=2.7)

    def _vertebra(self, lvl: Level) -> list[tuple[Solid, float]]:
        """Body, pedicles, laminae, spinous, transverse and articular processes."""
        out: list[tuple[Solid, float]] = []
        body = self._body_profile(lvl)
        self.hosts[f"body:{lvl.name}"] = body
        out.append((body, 1.2))
        a, b, h, zc = lvl.half_width, lvl.half_depth, lvl.height, lvl.zc
        crx, cry, ccy = lvl.canal_rx, lvl.canal_ry, lvl.canal_cy
        th = lvl.thoracic
        ped_r, ped_rz = (3.5, 6.5) if th else (4.5, 7.5)
        zp = zc + 0.15 * h
        back = ccy + cry + 2.5  # lamina junction behind the canal
        for s in (1, -1):
            p0 = np.array([s * a * 0.55, lvl.y + b * 0.55, zp])
            p1 = np.array([s * (crx + 3.5), ccy + cry * 0.3, zp])
            out.append((Capsule(p0, p1, ped_r, ped_rz), 1.4))
            lam0 = p1 + np.array([0.0, 0.0, -0.1 * h])
            lam1 = np.array([0.0, back, zc - 0.2 * h])
            out.append((Capsule(lam0, lam1, 3.2, 0.42 * h), 1.5))
            if th:
                tp1 = np.array([s * (crx + 22.0), ccy + 12.0, zc + 2])
            else:
                length = {"L1": 16, "L2": 20, "L3": 26, "L4": 23, "L5": 20}[lvl.name]
                tp1 = np.array([s * (crx + 4.0 + length), ccy - 4.0, zc])
            tp0 = p1 + np.array([0.0, 2.0, 0.0])
            out.append((Capsule(tp0, tp1, 4.0 if th else 3.2, 5.0), 1.4))
            # articular processes (facets) above and below the pedicle
            sup = np.array([s * (crx + 5.0), ccy + cry * 0.6, lvl.z_top + 1.0])
            inf = np.array([s * (crx + 3.0), ccy + cry * 1.0, lvl.z_bottom - 0.5 * lvl.disc_below])
            out.append((Ellipsoid(sup, np.array([4.5, 6.0, 7.0])), 1.4))
            out.append((Ellipsoid(inf, np.array([4.5, 6.0, 7.0])), 1.4))
        sp_len, drop = (36.0, 24.0) if th else (30.0, 7.0)
        sp0 = np.array([0.0, back, zc - 0.1 * h])
        sp1 = np.array([0.0, back + sp_len, zc - drop])
        out.append((Capsule(sp0, sp1, 3.0, 5.0 if th else 8.0), 1.4))
        return out

    def _rib_ring(self, z: float) -> tuple[float, float, float]:
        """(rx, ry_ant, ry_post) of the ellipse the ribs follow at height z."""
        h = self.habitus
        k = self._outline_knots(h.fat_mm + 7.0, h.fat_mm + 7.0, h.fat_back_mm + 14.0)
        return (
            float(np.interp(z, k[:, 0], k[:, 3])),
            float(np.interp(z, k[:, 0], k[:, 4])),
            float(np.interp(z, k[:, 0], k[:, 5])),
        )

    def _ribs(self) -> tuple[list[tuple[Solid, float]], list[Solid]]:
        bones: list[tuple[Solid, float]] = []
        cartilage: list[Solid] = []
        # end angle (deg; 90 = posterior, 0 = lateral, negative = anterior), cartilage end,
        # total drop (mm)
        spec = {
            "T5": (-65, -85, 55),
            "T6": (-62, -82, 58),
            "T7": (-60, -80, 60),
            "T8": (-55, -72, 60),
            "T9": (-50, -66, 58),
            "T10": (-42, -58, 52),
            "T11": (-12, -12, 32),
            "T12": (22, 22, 18),
        }
        for name, (end, cart_end, drop) in spec.items():
            lvl = self.levels[name]
            z_head = lvl.z_top + 1.0
            for s in (1, -1):
                head = np.array([s * (lvl.half_width + 2.0), lvl.y + lvl.half_depth * 0.3, z_head])
                tub = np.array([s * (lvl.canal_rx + 22.0), lvl.canal_cy + 12.0, z_head - 3])
                pts = [head, tub]
                start = 58.0
                angles = np.linspace(start, end, max(int((start - end) / 11) + 2, 3))
                for ang in angles:
                    frac = (start - ang) / max(start - end, 1.0)
                    z = z_head - 6 - drop * frac
                    rx, ra, rp = self._rib_ring(z)
                    t = np.deg2rad(ang)
                    ry = rp if np.sin(t) > 0 else ra
                    pts.append(np.array([s * rx * np.cos(t), ry * np.sin(t), z]))
                for a, b in itertools.pairwise(pts):
                    bones.append((Capsule(a, b, 3.8, 6.5), 1.3))
                if cart_end < end:
                    z_end = z_head - 6 - drop - 10
                    rx, ra, _ = self._rib_ring(z_end)
                    t = np.deg2rad(cart_end)
                    c_end = np.array([s * rx * np.cos(t) * 0.9, ra * np.sin(t), z_end])
                    cartilage.append(Capsule(pts[-1], c_end, 3.5, 5.5))
        # xiphoid / lower sternum
        z8, z10 = self.levels["T8"].zc, self.levels["T10"].zc
        _, ra, _ = self._rib_ring(z8)
        sternum = Profile(
            np.array([[z10 - 5, 0, -ra + 2, 11, 5, 5], [z8 + 40, 0, -ra + 2, 15, 6, 6]])
        )
        bones.append((sternum, 1.5))
        return bones, cartilage

    def _ilium(self) -> list[tuple[Solid, float]]:
        """Iliac wings (arc bands) and the ilium body down to the acetabulum."""
        out: list[tuple[Solid, float]] = []
        ysr = float(self.spine_y(self.level_z("S1")))
        zc = self.crest_z
        center = _ilium_center_xy(self)
        radius = _ILIUM_RADIUS
        crest = np.array([[-40, zc - 12], [-20, zc - 7], [35, zc], [90, zc - 8], [115, zc - 16]])
        thick = np.array(
            [[-40, 6], [-15, 6.5], [10, 4.5], [35, 3.0], [60, 6.0], [85, 11.0], [110, 15.0]]
        )
        amin = np.array([[zc - 120, 25], [zc - 60, 5], [zc - 20, -12], [zc, -20]])
        amax = np.array([[zc - 120, 60], [zc - 85, 96], [zc - 30, 100], [zc, 102]])
        for side in (1, -1):
            wing = ArcBand(center, radius, zc - 95, crest, thick, amin, amax, side=side)
            self.hosts["ilium:left" if side > 0 else "ilium:right"] = wing
            out.append((wing, 1.6))
            # ilium body and acetabulum
            zac = self.acetabulum_z
            ac = np.array([side * 92.0, ysr - 55.0, zac])
            mid = np.array([side * (center[0] + radius * 0.8), center[1] + radius * 0.5, zc - 92])
            out.append((Capsule(mid, ac + np.array([0.0, 0.0, 12.0]), 17.0, 20.0), 1.8))
            out.append((Ellipsoid(ac, np.array([36.0, 34.0, 34.0])), 2.0))
            # superior pubic ramus and ischium
            out.append((Capsule(ac, np.array([side * 20.0, ysr - 125, zac - 25]), 9.0, 11.0), 1.8))
            out.append((Capsule(ac, np.array([side * 60.0, ysr - 30, zac - 70]), 13.0), 1.8))
        return out

    @property
    def acetabulum_z(self) -> float:
        return self.crest_z - 118.0

    def _sacrum(self) -> Solid:
        rows = []
        top = self.sacrum_top
        for dz, rx, ra, rp, yoff in (
            (0, 50, 18, 20, -2),
            (-20, 52, 16, 22, 4),
            (-45, 42, 13, 17, 8),
            (-70, 30, 10, 12, 10),
            (-100, 14, 6, 7, 10),
        ):
            z = top + dz
            rows.append((z, 0.0, float(self.spine_y(z)) + yoff, rx, ra, rp))
        rows.sort()
        sac = Profile(np.array(rows), p=2.3)
        self.hosts["sacrum"] = sac
        return sac

    def _femurs(self) -> list[tuple[Solid, float]]:
        out: list[tuple[Solid, float]] = []
        ysr = float(self.spine_y(self.level_z("S1")))
        zac = self.acetabulum_z
        heads = []
        for side in (1, -1):
            c = np.array([side * 92.0, ysr - 55.0, zac])
            heads.append((Ellipsoid(c, np.array([23.5, 23.5, 23.5])), 1.5))
            troch = np.array([side * 135.0, ysr - 45, zac - 35])
            out.append((Capsule(c, troch, 15.0, 17.0), 2.0))
            out.append((Capsule(troch, troch + np.array([-side * 15.0, -5.0, -200.0]), 14.0), 4.0))
        return heads + out

    # -- spinal canal ------------------------------------------------------------------
    def _canal(self) -> None:
        rows, dura, cord = [], [], []
        for lvl in self.levels.values():
            for z in (lvl.z_top + lvl.disc_below / 2, lvl.zc):
                rows.append((z, 0.0, lvl.canal_cy, lvl.canal_rx, lvl.canal_ry, lvl.canal_ry))
                if lvl.thoracic:
                    dura.append(
                        (
                            z,
                            0.0,
                            lvl.canal_cy,
                            lvl.canal_rx - 1.5,
                            lvl.canal_ry - 1.0,
                            lvl.canal_ry - 2.0,
                        )
                    )
                else:
                    dura.append(
                        (
                            z,
                            0.0,
                            lvl.canal_cy - 0.5,
                            lvl.canal_rx - 2.5,
                            lvl.canal_ry - 1.5,
                            lvl.canal_ry - 3.5,
                        )
                    )
        top = self.sacrum_top
        for dz, rx, ry, yoff in ((-10, 11.0, 6.5, 24), (-45, 9.0, 5.0, 24), (-75, 6.0, 3.5, 22)):
            z = top + dz
            rows.append((z, 0.0, float(self.spine_y(z)) + yoff, rx, ry, ry))
        for dz, rx, ry, yoff in ((-10, 8.0, 4.5, 24), (-30, 5.0, 3.0, 24)):
            z = top + dz
            dura.append((z, 0.0, float(self.spine_y(z)) + yoff, rx, ry, ry))
        rows.sort()
        dura.sort()
        canal = Profile(np.array(rows), p=2.2)
        self.hosts["canal"] = canal
        self._op(canal, Tissue.EPIDURAL_FAT)
        self._op(Profile(np.array(dura)), Tissue.CSF)
        conus = self.levels["L1"].z_bottom + 4.0
        for lvl in self.levels.values():
            if lvl.zc < conus - 15:
                continue
            enlarged = lvl.name in ("T10", "T11", "T12")
            rx, ry = (5.0, 4.0) if enlarged else (4.5, 3.5)
            for z in (lvl.z_top + lvl.disc_below / 2, lvl.zc):
                if z > conus:
                    cord.append((z, 0.0, lvl.canal_cy, rx, ry, ry))
        cord.sort()
        l1 = self.levels["L1"]
        cord.insert(0, (conus - 8.0, 0.0, l1.canal_cy, 1.0, 1.0, 1.0))
        cord.insert(1, (conus, 0.0, l1.canal_cy, 3.5, 3.0, 3.0))
        self._op(Profile(np.array(cord)), Tissue.CORD)
        # cauda equina: roots lying dependent in the dural sac (posterior when supine,
        # anterior when prone)
        lower = [lv for lv in self.levels.values() if not lv.thoracic]
        sink = -1.0 if self.prone else 1.0
        for dx, dy in ((-5, 3), (-2, 4), (2, 4), (5, 3), (-7, 0.5), (7, 0.5)):
            dy = sink * dy
            pts = [
                np.array([dx * (0.5 if lvl.name == "L1" else 1.0), lvl.canal_cy + dy, lvl.zc])
                for lvl in lower
            ]
            pts.append(
                np.array([dx * 0.8, float(self.spine_y(top - 20)) + 24 + dy * 0.6, top - 20])
            )
            for a, b in itertools.pairwise(pts):
                if a[2] > conus:
                    continue
                self._op(Capsule(a, b, 1.3), Tissue.NERVE, only=(Tissue.CSF,))


#: Iliac wing arc in axial section: passes near the SI joint and the ASIS (see _ilium).
_ILIUM_RADIUS = 78.6


def _ilium_center_xy(ph: Phantom) -> tuple[float, float]:
    """Centre of the iliac-wing arc (x for the left side; mirrored for the right)."""
    return (45.9, float(ph.spine_y(ph.level_z("S1"))) - 68.7)


def _build_levels() -> dict[str, Level]:
    """Stack the vertebrae so that the L2 body centre is at z = 0."""
    zc = {}
    z = 0.0
    names = [row[0] for row in _LEVEL_TABLE]
    table = {row[0]: row for row in _LEVEL_TABLE}
    i2 = names.index("L2")
    zc["L2"] = 0.0
    for i in range(i2 - 1, -1, -1):  # upwards
        below = table[names[i + 1]]
        here = table[names[i]]
        z = zc[names[i + 1]] + below[1] / 2 + here[2] + here[1] / 2
        zc[names[i]] = z
    for i in range(i2 + 1, len(names)):  # downwards
        above = table[names[i - 1]]
        here = table[names[i]]
        zc[names[i]] = zc[names[i - 1]] - above[1] / 2 - above[2] - here[1] / 2
    zs = np.array([zc[n] for n in names])
    knot_z, knot_y = [], []
    for n, y in _SPINE_Y.items():
        if n in zc:
            knot_z.append(zc[n])
            knot_y.append(y)
    order = np.argsort(knot_z)
    ys = np.interp(zs, np.asarray(knot_z)[order], np.asarray(knot_y, float)[order])
    return {
        n: Level(n, float(zc[n]), *table[n][1:], y=float(y))  # type: ignore[misc]
        for n, y in zip(names, ys, strict=True)
    }
