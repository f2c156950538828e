"""Cement-fill prediction (vertebroplasty, cementoplasty) and leak-risk detection.

From the trocar tip(s), cement spreads along the path of least resistance: the lytic
cavity and low-density trabecular bone first, dense bone later, never through intact
cortex (:mod:`guideplan.planning.fill`: an HU-driven fast-marching front, volume
conserved to one voxel). The front is computed once per trocar placement; any volume up
to ``cement.max_volume_ml`` is then a prefix of its order (:class:`CementSimulation`,
what a volume slider calls).

Leak risks (CLINICAL.md: leakage in metastases 53-57 %, posterior-wall destruction an
independent risk factor, the basivertebral foramen predicts venous leak) are the places
the front *reaches*, with the volume at which it first does:

``canal``         an opening of the bone within ``canal_contact_mm`` of the spinal canal
                  (posterior wall breach) - danger
``breach``        any other opening of the cortex (lesion through the cortex) - warning
``disc``          an opening above or below the body (endplate defect into the disc)
``endplate``      cement against an endplate with disc just beyond - info (leaks through
                  unseen endplate defects are the most frequent)
``basivertebral`` the posterior-central body in front of the canal (venous leak)
``overflow``      the bone reached from the tips holds less than the volume asked for

An opening must be touched over ``breach_min_area_mm2`` before it counts. All settings
are in ``resources/treatment.json`` ("cement").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from guideplan.planning import fill, grid
from guideplan.planning.context import TreatmentContext, settings_values
from guideplan.planning.path_analysis import PlanWarning
from guideplan.planning.zones import Zone, estimate_statement

#: Leak sites: bit, label, severity, what it risks.
SITES = {
    "canal": (
        1,
        "posterior wall / spinal canal",
        "danger",
        "leakage into the spinal canal (cord or nerve-root compression)",
    ),
    "breach": (2, "cortical breach", "warning", "leakage into the soft tissue around the bone"),
    "disc": (4, "endplate defect / disc", "warning", "leakage into the disc"),
    "endplate": (
        8,
        "endplate",
        "info",
        "leakage into the disc through an endplate defect the CT may not show",
    ),
    "basivertebral": (
        16,
        "basivertebral region",
        "warning",
        "venous leakage through the basivertebral foramen",
    ),
}


@dataclass
class LeakSite:
    site: str
    label: str
    severity: str
    reached_at_ml: float
    contact_mm2: float
    location_lps: tuple[float, float, float] | None

    def to_json(self) -> dict[str, Any]:
        return {
            "site": self.site,
            "label": self.label,
            "severity": self.severity,
            "reached_at_ml": round(self.reached_at_ml, 3),
            "contact_mm2": round(self.contact_mm2, 1),
            "location_lps": None
            if self.location_lps is None
            else [round(v, 2) for v in self.location_lps],
        }


@dataclass
class CementResult:
    zone: Zone
    requested_ml: float
    placed_ml: float  # cement held by the filled voxels (porosity x voxel volume)
    region_ml: float  # the filled voxels' volume (bone + cement)
    not_placed_ml: float
    body_ml: float | None
    body_fill_pct: float | None
    lesion_fill_pct: float | None
    strength_target_pct: float
    leaks: list[LeakSite]
    warnings: list[PlanWarning]
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        def r(v, n=2):
            return None if v is None else round(float(v), n)

        return {
            "model": "cement-fill",
            "estimate": True,
            "estimate_statement": estimate_statement(),
            "requested_ml": r(self.requested_ml, 3),
            "placed_ml": r(self.placed_ml, 3),
            "filled_region_ml": r(self.region_ml, 3),
            "not_placed_ml": r(self.not_placed_ml, 3),
            "center_lps": [round(float(v), 2) for v in self.zone.center_lps],
            "vertebral_body_ml": r(self.body_ml, 1),
            "vertebral_body_fill_pct": r(self.body_fill_pct, 1),
            "strength_target_pct": self.strength_target_pct,
            "lesion_fill_pct": r(self.lesion_fill_pct, 1),
            "leaks": [leak.to_json() for leak in self.leaks],
            "warnings": [w.to_json() for w in self.warnings],
            "notes": self.notes,
        }


class CementSimulation:
    """The cement front from fixed trocar tips; :meth:`at` gives any volume instantly."""

    def __init__(
        self,
        ctx: TreatmentContext,
        tips_lps,
        *,
        entries_lps=None,
        device_id: str = "",
        max_volume_ml: float | None = None,
    ) -> None:
        cfg = settings_values("cement", ctx.settings)
        self.ctx = ctx
        self.cfg = cfg
        self.device_id = device_id
        self.tips = np.atleast_2d(np.asarray(tips_lps, dtype=float))
        self.entries = (
            None if entries_lps is None else np.atleast_2d(np.asarray(entries_lps, dtype=float))
        )
        self.max_volume_ml = float(cfg["max_volume_ml"] if max_volume_ml is None else max_volume_ml)
        self.setup = fill.prepare_fill(
            ctx,
            self.tips,
            fill.FillSettings.cement(),
            float(cfg["box_radius_mm"]),
            self.max_volume_ml,
            float(cfg["tip_search_mm"]),
            what="cement",
        )
        self._sites = self._site_first_reach()
        self._body = self._body_labels()

    # -- leak sites along the fill order -------------------------------------------------
    def _site_flags(self) -> np.ndarray:
        s = self.setup
        ctx = self.ctx
        cfg = self.cfg
        sp = ctx.spacing_kji
        opening = ~s.container & ~s.barrier
        flags = np.zeros(s.fillable.shape, dtype=np.uint8)
        vertebral = bool(s.canal.any())
        near_canal = np.zeros_like(opening)
        if vertebral:
            from guideplan.processing import masks

            near_canal = masks.distance_to(s.canal, sp) <= float(cfg["canal_contact_mm"])
        disc = ctx.disc_in(s.box)
        if disc is None:
            disc = self._disc_levels(opening) if vertebral else np.zeros_like(opening)
        o_canal = opening & near_canal
        o_disc = opening & disc
        o_other = opening & ~o_canal & ~o_disc
        axis = grid.slice_axis(ctx.volume)
        fillable = s.fillable
        flags[fillable & _touch(o_canal)] |= SITES["canal"][0]
        flags[fillable & _touch(o_disc)] |= SITES["disc"][0]
        flags[fillable & _touch(o_other)] |= SITES["breach"][0]
        if vertebral:
            reach = int(np.ceil(float(cfg["endplate_probe_mm"]) / sp[axis]))
            flags[fillable & _endplate(s.barrier, o_disc, axis, reach)] |= SITES["endplate"][0]
            flags[fillable & self._basivertebral()] |= SITES["basivertebral"][0]
        return flags

    def _disc_levels(self, opening: np.ndarray) -> np.ndarray:
        """Openings at a disc's level (between two vertebral bodies found along the canal)
        and within the bodies' footprint, when known."""
        out = np.zeros_like(opening)
        levels = self.ctx.disc_slices()
        labels = self.ctx.vertebra_labels_in(self.setup.box)
        if levels is None or labels is None:
            return out
        axis = grid.slice_axis(self.ctx.volume)
        at = levels[self.setup.box[axis]]
        shape = [1, 1, 1]
        shape[axis] = len(at)
        footprint = np.any(labels > 0, axis=axis, keepdims=True)
        return opening & at.reshape(shape) & footprint

    def _basivertebral(self) -> np.ndarray:
        s = self.setup
        vol = self.ctx.volume
        cfg = self.cfg
        canal = s.canal
        axis = grid.slice_axis(vol)
        if axis != 0 or not canal.any():
            return np.zeros_like(canal)
        kk, jj, ii = grid.axis_coords(vol, s.box, np.array([1.0, 0, 0]), np.zeros(3))
        x = kk + jj + ii
        kk, jj, ii = grid.axis_coords(vol, s.box, np.array([0, 1.0, 0]), np.zeros(3))
        y = kk + jj + ii
        region = np.zeros_like(canal)
        depth = float(cfg["basivertebral_depth_mm"])
        half = float(cfg["basivertebral_half_width_mm"])
        for k in range(canal.shape[0]):
            c = canal[k]
            if not c.any():
                continue
            mid = float(np.median(x[k][c]))
            front = float(y[k][c].min())  # anterior edge (anterior is -y in LPS)
            region[k] = (
                (np.abs(x[k] - mid) <= half) & (y[k] <= front + 1.0) & (y[k] >= front - depth)
            )
        return region

    def _site_first_reach(self) -> dict[str, tuple[int, float]]:
        """site -> (index in the fill order where it counts, contact area per voxel)."""
        order = self.setup.order
        flags = self._site_flags().ravel()[order.order]
        sp = self.ctx.spacing_kji
        face = float((sp[0] * sp[1] + sp[0] * sp[2] + sp[1] * sp[2]) / 3.0)
        need = max(1, int(np.ceil(float(self.cfg["breach_min_area_mm2"]) / face)))
        out: dict[str, tuple[int, float]] = {}
        for site, (bit, *_rest) in SITES.items():
            hits = np.flatnonzero(flags & bit)
            if len(hits) >= need:
                out[site] = (int(hits[need - 1]), face)
        self._flags_in_order = flags
        self._face_mm2 = face
        return out

    # -- vertebral body --------------------------------------------------------------------
    def _body_labels(self) -> np.ndarray | None:
        """Labels of the vertebral bodies on the fill's box (0 = none), if known."""
        box = self.setup.box
        given = self.ctx.vertebral_body_in(box)
        if given is not None:
            if given.dtype == bool or given.max() <= 1:
                from guideplan.processing import masks

                return masks.components(given.astype(bool), full=False)
            return given.astype(np.int32)
        return self.ctx.vertebra_labels_in(box)

    # -- results ----------------------------------------------------------------------------
    def at(self, volume_ml: float) -> CementResult:
        volume_ml = float(volume_ml)
        if volume_ml <= 0:
            raise fill.FillError(
                "The cement volume must be positive.", hint="Give --cement-ml > 0."
            )
        s = self.setup
        order = s.order
        n = order.count_for(volume_ml)
        placed = order.placed_ml(n)
        mask = order.mask(n)
        ctx = self.ctx
        vox = ctx.voxel_ml
        notes = list(s.notes)
        leaks: list[LeakSite] = []
        for site, (index, face) in self._sites.items():
            if index < n:
                bit, label, severity, _ = SITES[site]
                contact = np.count_nonzero(self._flags_in_order[:n] & bit) * face
                kji = np.unravel_index(order.order[index], order.shape)
                lps = grid.points_of(ctx.volume, s.box, _single(order.shape, kji))[0]
                leaks.append(
                    LeakSite(
                        site,
                        label,
                        severity,
                        order.placed_ml(index + 1),
                        contact,
                        tuple(float(v) for v in lps),
                    )
                )
        not_placed = max(volume_ml - placed, 0.0)
        exhausted = n >= len(order.order) and not_placed > 0.02 * volume_ml
        if exhausted:
            if order.touches_edge:
                notes.append("the fill reached the edge of its box: the volume is cut there")
            else:
                leaks.append(
                    LeakSite("overflow", "bone compartment full", "danger", placed, 0.0, None)
                )
        body_ml, body_pct = self._body_fill(mask)
        lesion = ctx.lesion_in(s.box)
        facts = ctx.lesion_facts()
        lesion_pct = None
        if facts is not None and facts.n_voxels:
            lesion_pct = 100.0 * np.count_nonzero(mask & lesion) / facts.n_voxels
        strength = float(
            settings_values("evaluation", ctx.settings)["cement_strength_fraction_pct"]
        )
        zone = Zone(
            model="cement-fill",
            kind="cement",
            device_id=self.device_id,
            parameters={
                "volume_ml": volume_ml,
                "placed_ml": round(placed, 3),
                "tips_lps": np.round(self.tips, 2).tolist(),
            },
            volume=ctx.volume,
            box=s.box,
            mask=mask,
            notes=notes,
            needles=[]
            if self.entries is None
            else list(zip(self.entries, self.tips, strict=False)),
        )
        result = CementResult(
            zone=zone,
            requested_ml=volume_ml,
            placed_ml=placed,
            region_ml=n * vox,
            not_placed_ml=not_placed,
            body_ml=body_ml,
            body_fill_pct=body_pct,
            lesion_fill_pct=lesion_pct,
            strength_target_pct=strength,
            leaks=sorted(leaks, key=lambda leak: leak.reached_at_ml),
            warnings=[],
            notes=notes,
        )
        result.warnings = cement_warnings(result)
        zone.warnings = list(result.warnings)
        return result

    def _body_fill(self, mask: np.ndarray) -> tuple[float | None, float | None]:
        labels = self._body
        if labels is None or not mask.any():
            return None, None
        hit = labels[mask]
        hit = hit[hit > 0]
        if len(hit) == 0:
            return None, None
        label = int(np.bincount(hit).argmax())
        body = labels == label
        body_ml = np.count_nonzero(body) * self.ctx.voxel_ml
        # cement volume inside the body relative to the body's volume
        order = self.setup.order
        n = int(np.count_nonzero(mask))
        inside = body.ravel()[order.order[:n]]
        cap = np.diff(np.concatenate([[0.0], order.cumulative_ml[:n]]))
        return body_ml, 100.0 * float(cap[inside].sum()) / body_ml


def predict_cement(
    ctx: TreatmentContext,
    tips_lps,
    volume_ml: float,
    *,
    entries_lps=None,
    device_id: str = "",
) -> CementResult:
    """Cement fill of ``volume_ml`` from the trocar tip(s)."""
    sim = CementSimulation(
        ctx,
        tips_lps,
        entries_lps=entries_lps,
        device_id=device_id,
        max_volume_ml=float(volume_ml) * 1.02 + 0.05,
    )
    return sim.at(volume_ml)


def cement_warnings(result: CementResult) -> list[PlanWarning]:
    out = []
    for leak in result.leaks:
        if leak.site == "overflow":
            out.append(
                PlanWarning(
                    "CEMENT_LEAK_RISK",
                    "danger",
                    f"The bone reached from the trocar holds only {result.placed_ml:.1f} mL: "
                    f"{result.not_placed_ml:.1f} mL of the {result.requested_ml:.1f} mL would "
                    "leave the bone.",
                    {
                        "site": "overflow",
                        "placed_ml": round(result.placed_ml, 2),
                        "not_placed_ml": round(result.not_placed_ml, 2),
                    },
                )
            )
            continue
        risk = SITES[leak.site][3]
        out.append(
            PlanWarning(
                "CEMENT_LEAK_RISK",
                leak.severity,
                f"The cement reaches the {leak.label} after {leak.reached_at_ml:.1f} mL "
                f"(of {result.requested_ml:.1f} mL): risk of {risk}.",
                {
                    "site": leak.site,
                    "reached_at_ml": round(leak.reached_at_ml, 2),
                    "volume_ml": round(result.requested_ml, 2),
                    "contact_mm2": round(leak.contact_mm2, 1),
                    "location_lps": None
                    if leak.location_lps is None
                    else [round(v, 1) for v in leak.location_lps],
                },
            )
        )
    return out


def _touch(opening: np.ndarray, axes: tuple[int, ...] = (0, 1, 2)) -> np.ndarray:
    """Voxels with a 6-neighbour (along ``axes``) in ``opening``."""
    out = np.zeros_like(opening)
    for axis in axes:
        n = opening.shape[axis]
        if n < 2:
            continue
        lo = [slice(None)] * 3
        hi = [slice(None)] * 3
        lo[axis], hi[axis] = slice(0, n - 1), slice(1, n)
        out[tuple(lo)] |= opening[tuple(hi)]
        out[tuple(hi)] |= opening[tuple(lo)]
    return out


def _endplate(barrier: np.ndarray, opening: np.ndarray, axis: int, reach: int) -> np.ndarray:
    """Voxels whose neighbour along ``axis`` is cortex with an opening (disc) within
    ``reach`` voxels beyond it, on either side."""
    out = np.zeros_like(barrier)
    n = barrier.shape[axis]
    for sign in (-1, 1):
        wall = _shifted(barrier, axis, sign, n)
        beyond = np.zeros_like(barrier)
        for m in range(2, reach + 2):
            beyond |= _shifted(opening, axis, sign * m, n)
        out |= wall & beyond
    return out


def _shifted(a: np.ndarray, axis: int, offset: int, n: int) -> np.ndarray:
    """``out[x] = a[x + offset]`` along ``axis`` (False beyond the edges)."""
    out = np.zeros_like(a)
    if abs(offset) >= n:
        return out
    src = [slice(None)] * 3
    dst = [slice(None)] * 3
    if offset > 0:
        src[axis], dst[axis] = slice(offset, n), slice(0, n - offset)
    else:
        src[axis], dst[axis] = slice(0, n + offset), slice(-offset, n)
    out[tuple(dst)] = a[tuple(src)]
    return out


def _single(shape, kji) -> np.ndarray:
    m = np.zeros(shape, dtype=bool)
    m[kji] = True
    return m
