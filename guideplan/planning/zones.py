"""Predicted ablation zones: RF and microwave ellipsoids, cryoablation isotherms, ethanol.

Every zone is an *estimate* (the built-in device charts are approximate, see
``resources/devices/catalog.json``), computed as

* an analytic description: ellipsoids (centre in LPS, unit axes, semi-axes in mm), the
  first axis along the needle; and
* a boolean mask on a box of the planning CT's grid (:class:`Zone`), which is what the
  evaluation and the display use.

Models (``Zone.model``, also the ``ZoneNode.model`` of a saved plan):

``rf-ellipsoid`` / ``rf-bipolar`` / ``mw-ellipsoid``
    Bipolar bone RF (two electrodes at the tip): the zone grows with time back along the
    shaft and ends at the tip; no built-in chart (none citable), the user enters it from
    the instructions for use. The device chart gives length x width and the centre's
    offset from the tip for the chosen time (RF) or power x time (microwave), interpolated
    between chart rows
    (:func:`zone_dimensions`). Optionally clipped where heat would have to cross thick
    cortical bone (:func:`clip_at_cortex`, an estimate).
``cryo-isotherms``
    Each probe has nested 0 / -20 / -40 °C ellipsoids for the freeze time
    (:func:`cryo_isotherms`). Several probes: each probe's temperature field
    (piecewise linear between its shells) cools the tissue and the cooling adds; the
    combined isotherms merge between close probes (:func:`cryo_zone`). The zone's mask is
    the lethal isotherm (setting, -40 °C); its ``safety`` zone is the 0 °C iceball, whose
    edge is kept away from skin, nerves and organs. Probes farther apart than the
    device's rule raise ``CRYO_SPACING_TOO_WIDE``.
``ethanol-fill``
    The injected volume spreading from the tip through the lesion, then trabecular bone,
    in HU order, never through cortex (:mod:`guideplan.planning.fill`).

ZoneNode parameters (saved plans): ``device_id`` (default: the trajectory's device),
``power_w``, ``time_s`` (RF/MW), ``freeze_s`` (cryo), ``volume_ml`` (ethanol, cement),
``clip_cortex`` (bool), ``probe_trajectory_ids`` (cryo: the other probes' trajectories;
cement: other trocars).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from guideplan.core import trajectory as tr
from guideplan.core.errors import GuideplanError
from guideplan.core.jsonable import to_jsonable
from guideplan.core.labelmap import Box
from guideplan.core.resources import load_json
from guideplan.core.volume import Volume
from guideplan.planning import grid
from guideplan.planning.devices import Device
from guideplan.planning.path_analysis import PlanWarning

if TYPE_CHECKING:
    from guideplan.planning.context import TreatmentContext

#: Device kinds with a zone model, and the model each gives.
ZONE_MODELS = {
    "rf_probe": "rf-ellipsoid",
    "rf_bipolar": "rf-bipolar",
    "mw_antenna": "mw-ellipsoid",
    "cryoprobe": "cryo-isotherms",
    "ethanol_needle": "ethanol-fill",
}


class ZoneError(GuideplanError):
    title = "Cannot predict the zone"


def _treatment(section: str) -> dict[str, Any]:
    raw = load_json("treatment.json")[section]
    return {k: v["value"] if isinstance(v, dict) and "value" in v else v for k, v in raw.items()}


def estimate_statement() -> str:
    return str(load_json("treatment.json")["estimate_statement"])


# ======================================================================================
# ellipsoids
# ======================================================================================


def _perpendicular_axes(u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    helper = np.eye(3)[int(np.argmin(np.abs(u)))]
    v = np.cross(u, helper)
    v /= np.linalg.norm(v)
    return v, np.cross(u, v)


@dataclass(frozen=True, eq=False)
class Ellipsoid:
    """An ellipsoid in LPS: ``center``, unit ``axes`` (rows) and ``radii`` (semi-axes, mm).
    For zones the first axis runs along the needle toward its tip."""

    center: np.ndarray
    axes: np.ndarray
    radii: np.ndarray

    @classmethod
    def along(
        cls,
        tip: np.ndarray,
        direction: np.ndarray,
        length_mm: float,
        width_mm: float,
        center_offset_mm: float,
    ) -> Ellipsoid:
        """The zone of a needle whose tip is at ``tip``, pointing along ``direction``: the
        centre lies ``center_offset_mm`` back from the tip along the shaft."""
        u = np.asarray(direction, dtype=float)
        u = u / np.linalg.norm(u)
        v, w = _perpendicular_axes(u)
        radii = np.array([length_mm, width_mm, width_mm], dtype=float) / 2.0
        return cls(
            np.asarray(tip, float) - u * center_offset_mm,
            np.vstack([u, v, w]),
            np.maximum(radii, 1e-3),
        )

    @property
    def volume_ml(self) -> float:
        return float(4.0 / 3.0 * math.pi * np.prod(self.radii)) / 1000.0

    def local(self, points: np.ndarray) -> np.ndarray:
        return (np.atleast_2d(points) - self.center) @ self.axes.T

    def rho(self, points: np.ndarray) -> np.ndarray:
        """Normalised radius (1 on the surface, < 1 inside)."""
        return np.sqrt(np.sum((self.local(points) / self.radii) ** 2, axis=1))

    def contains(self, points: np.ndarray) -> np.ndarray:
        return self.rho(points) <= 1.0

    def signed_distance(self, points: np.ndarray, iterations: int = 64) -> np.ndarray:
        """Exact Euclidean distance (mm) to the surface, negative inside (vectorised
        bisection on the closest-point equation, Eberly's formulation)."""
        y = self.local(points)
        order = np.argsort(-self.radii)
        e = self.radii[order]
        z = np.abs(y[:, order]) + 1e-9
        ez = e * z
        e2 = e[2]
        lo = -e2 * e2 + ez[:, 2]
        hi = -e2 * e2 + np.sqrt(np.sum(ez**2, axis=1))
        for _ in range(iterations):
            t = 0.5 * (lo + hi)
            f = np.sum((ez / (t[:, None] + e**2)) ** 2, axis=1) - 1.0
            pos = f > 0
            lo = np.where(pos, t, lo)
            hi = np.where(pos, hi, t)
        t = 0.5 * (lo + hi)
        x = e**2 * z / (t[:, None] + e**2)
        dist = np.linalg.norm(x - z, axis=1)
        inside = np.sum((z / e) ** 2, axis=1) < 1.0
        return np.where(inside, -dist, dist)

    def lps_bounds(self, pad_mm: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        half = np.sqrt(np.sum((self.axes * self.radii[:, None]) ** 2, axis=0)) + pad_mm
        return self.center - half, self.center + half

    def surface_points(self, step_mm: float = 0.7) -> np.ndarray:
        """Points on the surface, about ``step_mm`` apart."""
        a, b, c = self.radii
        p = 1.6075
        area = 4 * math.pi * (((a * b) ** p + (a * c) ** p + (b * c) ** p) / 3) ** (1 / p)
        n = int(np.clip(area / step_mm**2, 200, 40000))
        unit = tr.fibonacci_directions(n)
        return self.center + (unit * self.radii) @ self.axes

    def mask_on(self, volume: Volume, box: Box) -> np.ndarray:
        q = grid.local_coords(volume, box, self.center, self.axes)
        f = (q[0] / self.radii[0]) ** 2
        f += (q[1] / self.radii[1]) ** 2
        f += (q[2] / self.radii[2]) ** 2
        return f <= 1.0

    def box_on(self, volume: Volume, pad_mm: float = 0.0) -> Box:
        lo, hi = self.lps_bounds(pad_mm)
        return grid.box_from_lps(volume, lo, hi)

    def to_json(self) -> dict[str, Any]:
        return {
            "center_lps": [round(float(v), 2) for v in self.center],
            "axes_lps": np.round(self.axes, 5).tolist(),
            "radii_mm": [round(float(v), 2) for v in self.radii],
            "volume_ml": round(self.volume_ml, 3),
        }


# ======================================================================================
# device charts
# ======================================================================================


@dataclass(frozen=True)
class ZoneDimensions:
    """A chart read at given settings: length and width of the zone, the centre's offset
    back from the tip; cryo charts give one (length, width) per isotherm."""

    length_mm: float
    width_mm: float
    center_offset_mm: float
    power_w: float | None
    time_s: float
    extrapolated: bool = False
    isotherms: dict[str, tuple[float, float]] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "length_mm": round(self.length_mm, 2),
            "width_mm": round(self.width_mm, 2),
            "center_offset_mm": round(self.center_offset_mm, 2),
            "time_s": self.time_s,
            "extrapolated": self.extrapolated,
        }
        if self.power_w is not None:
            out["power_w"] = self.power_w
        if self.isotherms:
            out["isotherms"] = {
                k: {"length_mm": round(v[0], 2), "width_mm": round(v[1], 2)}
                for k, v in self.isotherms.items()
            }
        return out


def zone_chart(device: Device) -> dict[str, Any]:
    chart = device.data.get("zone")
    if not isinstance(chart, dict):
        raise ZoneError(
            f"{device.name} ({device.id}) has no zone chart.",
            hint="Choose an RF probe, microwave antenna, cryoprobe or ethanol needle, or add "
            "a 'zone' chart to the device in your catalog.",
        )
    return chart


def _flatten(row: dict[str, Any], prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    for key, value in row.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}/"))
        elif isinstance(value, int | float) and not isinstance(value, bool):
            out[f"{prefix}{key}"] = float(value)
    return out


def _interp_rows(rows: list[dict[str, float]], key: str, x: float, scale) -> tuple[dict, bool]:
    """Values at ``x`` of the rows' parameter ``key`` (sorted), interpolated in
    ``scale(x)``; outside the rows the nearest row (extrapolated = True)."""
    rows = sorted(rows, key=lambda r: r[key])
    xs = [r[key] for r in rows]
    if x <= xs[0] or len(rows) == 1:
        return dict(rows[0]), x < xs[0] - 1e-9 or (len(rows) == 1 and abs(x - xs[0]) > 1e-9)
    if x >= xs[-1]:
        return dict(rows[-1]), x > xs[-1] + 1e-9
    hi = next(i for i, v in enumerate(xs) if v >= x)
    a, b = rows[hi - 1], rows[hi]
    sa, sb = scale(xs[hi - 1]), scale(xs[hi])
    t = 0.0 if sb == sa else (scale(x) - sa) / (sb - sa)
    keys = set(a) & set(b)
    return {k: a[k] + t * (b[k] - a[k]) for k in keys}, False


def _read_chart(device: Device, power_w: float | None, time_s: float | None) -> ZoneDimensions:
    chart = zone_chart(device)
    params = list(chart.get("parameters", ["time_s"]))
    raw_rows = chart.get("rows") or []
    if not raw_rows:
        raise ZoneError(f"The zone chart of {device.id} has no rows.", hint="Add chart rows.")
    rows = [_flatten(r) for r in raw_rows]
    time = float(
        chart.get("default_time_s", rows[-1].get("time_s", 0.0)) if time_s is None else time_s
    )
    if time < 0:
        raise ZoneError("The time must be positive.", hint="Give --time-s / --freeze-s >= 0.")
    sqrt = chart.get("time_interpolation", "linear") == "sqrt"

    def tscale(v: float) -> float:
        return math.sqrt(max(v, 0.0)) if sqrt else v

    extrapolated = False
    power = None
    if "power_w" in params:
        power = float(
            chart.get("default_power_w", rows[-1].get("power_w", 0.0))
            if power_w is None
            else power_w
        )
        if power <= 0:
            raise ZoneError("The power must be positive.", hint="Give --power-w > 0.")
        powers = sorted({r["power_w"] for r in rows})
        lo = max([p for p in powers if p <= power], default=powers[0])
        hi = min([p for p in powers if p >= power], default=powers[-1])
        extrapolated = power < powers[0] or power > powers[-1]
        at_lo, ex_lo = _interp_rows([r for r in rows if r["power_w"] == lo], "time_s", time, tscale)
        at_hi, ex_hi = _interp_rows([r for r in rows if r["power_w"] == hi], "time_s", time, tscale)
        t = 0.0 if hi == lo else (power - lo) / (hi - lo)
        values = {k: at_lo[k] + t * (at_hi[k] - at_lo[k]) for k in set(at_lo) & set(at_hi)}
        extrapolated = extrapolated or ex_lo or ex_hi
    else:
        values, extrapolated = _interp_rows(rows, "time_s", time, tscale)
    isotherms = {}
    for key in values:
        if key.startswith("isotherms/") and key.endswith("/length_mm"):
            name = key.split("/")[1]
            isotherms[name] = (values[key], values[f"isotherms/{name}/width_mm"])
    if isotherms:
        outer = max(isotherms, key=lambda n: isotherms[n][1])
        length, width = isotherms[outer]
    else:
        length, width = values["length_mm"], values["width_mm"]
    offset = float(values.get("center_offset_mm", 0.0))
    if device.kind == "rf_bipolar":
        # two electrodes at the tip: the zone grows back along the shaft from the tip
        # (its far edge at the tip unless the chart says how far beyond it)
        offset = length / 2.0 - float(values.get("far_edge_beyond_tip_mm", 0.0))
    elif isotherms and "far_edge_beyond_tip_mm" in values:
        # ProstateCryoAblation places the 0 °C iceball with its centre at tip + (far - Rz)
        # along the needle: its far edge lies ``far`` mm beyond the tip (the centre is
        # Rz - far back from the tip); the colder shells share that centre.
        offset = length / 2.0 - float(values["far_edge_beyond_tip_mm"])
    notes = []
    if extrapolated:
        notes.append(
            f"settings outside the chart of {device.id} (power {power} W, time {time:g} s): "
            "the nearest chart row is used"
        )
    return ZoneDimensions(
        length_mm=float(length),
        width_mm=float(width),
        center_offset_mm=offset,
        power_w=power,
        time_s=time,
        extrapolated=extrapolated,
        isotherms=dict(sorted(isotherms.items(), key=lambda kv: -float(kv[0]))),
        notes=tuple(notes),
    )


def zone_dimensions(
    device: Device, power_w: float | None = None, time_s: float | None = None
) -> ZoneDimensions:
    """Length, width and centre offset of an RF/microwave zone at the given settings
    (defaults: the chart's), interpolated between chart rows."""
    return _read_chart(device, power_w, time_s)


def cryo_isotherms(device: Device, freeze_s: float | None = None) -> ZoneDimensions:
    """Each isotherm's (length, width) for the freeze time; ``length_mm``/``width_mm``
    are the outermost (0 °C) iceball's."""
    dims = _read_chart(device, None, freeze_s)
    if not dims.isotherms:
        raise ZoneError(f"{device.id} has no isotherm chart.", hint="Choose a cryoprobe.")
    return dims


# ======================================================================================
# zones
# ======================================================================================


@dataclass(eq=False)
class Zone:
    """A predicted treatment volume: a mask on ``box`` of ``volume``'s grid, plus its
    analytic description where one exists."""

    model: str
    kind: str  # thermal | cryo | ethanol | cement | combined
    device_id: str
    parameters: dict[str, Any]
    volume: Volume
    box: Box
    mask: np.ndarray
    ellipsoids: list[Ellipsoid] = field(default_factory=list)
    #: True when ``mask`` is exactly ``ellipsoids[0]`` (distances are then analytic).
    exact: bool = False
    dimensions: ZoneDimensions | None = None
    #: Cryo: each isotherm's combined zone (name -> Zone) and each probe's ellipsoids.
    isotherms: dict[str, Zone] = field(default_factory=dict)
    probe_isotherms: list[dict[str, Ellipsoid]] = field(default_factory=list)
    #: The zone whose edge must stay away from structures (cryo: the 0 °C iceball).
    safety: Zone | None = None
    notes: list[str] = field(default_factory=list)
    warnings: list[PlanWarning] = field(default_factory=list)
    #: Needles that made the zone: (entry, tip) LPS.
    needles: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    _distance_cache: dict[Any, Any] = field(default_factory=dict, repr=False)

    # -- figures ------------------------------------------------------------------------
    @property
    def n_voxels(self) -> int:
        return int(np.count_nonzero(self.mask))

    @property
    def volume_ml(self) -> float:
        return self.n_voxels * grid.voxel_ml(self.volume)

    @property
    def analytic_volume_ml(self) -> float | None:
        return self.ellipsoids[0].volume_ml if self.exact and self.ellipsoids else None

    @property
    def center_lps(self) -> np.ndarray:
        if self.exact and self.ellipsoids:
            return self.ellipsoids[0].center
        pts = grid.points_of(self.volume, self.box, self.mask)
        return pts.mean(axis=0) if len(pts) else np.full(3, np.nan)

    @property
    def safety_zone(self) -> Zone:
        return self.safety if self.safety is not None else self

    def full_mask(self) -> np.ndarray:
        out = np.zeros(self.volume.array.shape, dtype=bool)
        out[self.box] = self.mask
        return out

    def surface_points(self) -> np.ndarray:
        """Points on the zone's edge (LPS): analytic for an exact ellipsoid, else the
        centres of the mask's boundary voxels."""
        if self.exact and self.ellipsoids:
            return self.ellipsoids[0].surface_points()
        return grid.points_of(self.volume, self.box, grid.boundary(self.mask))

    def signed_distance(self, points: np.ndarray, cover: Box | None = None) -> np.ndarray:
        """Distance (mm) from the zone's edge, negative inside. Exact for an ellipsoid;
        otherwise from a distance map of the mask on a box holding the points (``cover``
        may give that box, to reuse the map)."""
        pts = np.atleast_2d(points)
        if self.exact and self.ellipsoids:
            return self.ellipsoids[0].signed_distance(pts)
        if len(pts) == 0:
            return np.zeros(0)
        if cover is None:
            cover = grid.union_box(
                [self.box, grid.box_from_lps(self.volume, pts.min(axis=0), pts.max(axis=0))]
            )
        key = tuple((s.start, s.stop) for s in cover)
        dist = self._distance_cache.get(key)
        if dist is None:
            from guideplan.processing import masks

            m = grid.paste(self.mask, self.box, cover)
            sp = grid.spacing_kji(self.volume)
            dist = masks.signed_distance(m, sp) if m.any() else np.full(m.shape, np.inf)
            self._distance_cache = {key: dist}
        lo = np.array([cover[2].start, cover[1].start, cover[0].start], dtype=float)
        ijk = self.volume.physical_to_index(pts) - lo
        return tr.sample_trilinear(dist, ijk, outside=np.inf)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "model": self.model,
            "kind": self.kind,
            "device": self.device_id,
            "parameters": to_jsonable(self.parameters),
            "estimate": True,
            "estimate_statement": estimate_statement(),
            "center_lps": [round(float(v), 2) for v in self.center_lps],
            "volume_ml": round(self.volume_ml, 3),
        }
        if self.analytic_volume_ml is not None:
            out["analytic_volume_ml"] = round(self.analytic_volume_ml, 3)
        if self.dimensions is not None:
            out["dimensions"] = self.dimensions.to_json()
        if self.ellipsoids:
            out["ellipsoids"] = [e.to_json() for e in self.ellipsoids]
        else:
            out["extent_mm"] = _extent(self)
        if self.isotherms:
            out["isotherms"] = {
                name: {
                    "volume_ml": round(z.volume_ml, 3),
                    "center_lps": [round(float(v), 2) for v in z.center_lps],
                }
                for name, z in self.isotherms.items()
            }
        if self.probe_isotherms:
            out["probes"] = [
                {name: e.to_json() for name, e in probe.items()} for probe in self.probe_isotherms
            ]
        if self.needles:
            out["needles"] = [
                {
                    "entry_lps": [round(float(v), 2) for v in e],
                    "tip_lps": [round(float(v), 2) for v in t],
                }
                for e, t in self.needles
            ]
        out["notes"] = list(self.notes)
        out["warnings"] = [w.to_json() for w in self.warnings]
        return out


def _extent(zone: Zone) -> list[float]:
    pts = grid.points_of(zone.volume, zone.box, zone.mask)
    if len(pts) < 2:
        return [0.0, 0.0, 0.0]
    return [round(float(v), 1) for v in pts.max(axis=0) - pts.min(axis=0)]


def _direction(entry, tip) -> np.ndarray:
    try:
        return tr.unit_direction(entry, tip)
    except ValueError:
        raise ZoneError(
            "The needle's entry and tip are the same point.", hint="Move the entry point."
        ) from None


def _chart_warning(device: Device, dims: ZoneDimensions) -> list[PlanWarning]:
    if not dims.extrapolated:
        return []
    return [
        PlanWarning(
            "ZONE_CHART_EXTRAPOLATED",
            "warning",
            f"The settings lie outside the chart of {device.name}: the zone uses the "
            "nearest chart row and may be wrong.",
            {"device": device.id, "power_w": dims.power_w, "time_s": dims.time_s},
        )
    ]


# -- RF / microwave ------------------------------------------------------------------------
def thermal_zone(
    volume: Volume,
    device: Device,
    entry,
    tip,
    *,
    power_w: float | None = None,
    time_s: float | None = None,
    clip_cortex: bool = False,
) -> Zone:
    """The RF or microwave zone of a probe whose tip is at ``tip``."""
    if device.kind not in ("rf_probe", "rf_bipolar", "mw_antenna"):
        raise ZoneError(
            f"{device.name} is not an RF probe or microwave antenna.",
            hint="Use cryo_zone / ethanol_zone for other devices.",
        )
    entry = np.asarray(entry, dtype=float)
    tip = np.asarray(tip, dtype=float)
    dims = zone_dimensions(device, power_w, time_s)
    ell = Ellipsoid.along(
        tip, _direction(entry, tip), dims.length_mm, dims.width_mm, dims.center_offset_mm
    )
    box = ell.box_on(volume)
    zone = Zone(
        model=ZONE_MODELS[device.kind],
        kind="thermal",
        device_id=device.id,
        parameters={
            "power_w": dims.power_w,
            "time_s": dims.time_s,
            "clip_cortex": bool(clip_cortex),
        },
        volume=volume,
        box=box,
        mask=ell.mask_on(volume, box)
        if not grid.is_empty(box)
        else np.zeros(grid.box_shape(box), bool),
        ellipsoids=[ell],
        exact=True,
        dimensions=dims,
        notes=list(dims.notes),
        warnings=_chart_warning(device, dims),
        needles=[(entry, tip)],
    )
    if clip_cortex:
        clip_at_cortex(zone)
    return zone


def clip_at_cortex(
    zone: Zone, hu_threshold: float | None = None, thickness_mm: float | None = None
) -> Zone:
    """Remove the zone's voxels that heat would reach only through thick cortex: along the
    straight line from the nearest point of the probe's active part, more than
    ``thickness_mm`` of bone at or above ``hu_threshold``. An estimate (cortical bone
    insulates); the zone says so in its notes."""
    cfg = _treatment("thermal")
    hu_cut = float(cfg["clip_cortex_hu"] if hu_threshold is None else hu_threshold)
    thick = float(cfg["clip_cortex_thickness_mm"] if thickness_mm is None else thickness_mm)
    step = float(cfg["clip_ray_step_mm"])
    vol = zone.volume
    kji = np.argwhere(zone.mask)
    if len(kji) == 0:
        return zone
    lo = np.array([b.start for b in zone.box])
    pts = vol.index_to_physical((kji + lo)[:, ::-1].astype(float))
    starts = np.empty_like(pts)
    nearest = np.full(len(pts), np.inf)
    # the heating part of the shaft: symmetric about the zone's centre, from the tip back
    offset = zone.dimensions.center_offset_mm if zone.dimensions is not None else 0.0
    for entry, tip in zone.needles:
        u = _direction(entry, tip)
        a, b = tip - u * max(2.0 * offset, 1e-3), tip
        ab = b - a
        t = np.clip((pts - a) @ ab / float(ab @ ab), 0.0, 1.0)
        s = a + t[:, None] * ab
        d = np.linalg.norm(pts - s, axis=1)
        closer = d < nearest
        starts[closer] = s[closer]
        nearest[closer] = d[closer]
    # rays in index space on a crop holding every ray (cheap, cache-friendly lookups)
    to_index = vol.lps_to_index
    a_ijk = starts @ to_index[:3, :3].T + to_index[:3, 3]
    b_ijk = pts @ to_index[:3, :3].T + to_index[:3, 3]
    lo_c = np.maximum(np.floor(np.minimum(a_ijk.min(axis=0), b_ijk.min(axis=0))).astype(int), 0)
    hi_c = np.minimum(
        np.ceil(np.maximum(a_ijk.max(axis=0), b_ijk.max(axis=0))).astype(int) + 1,
        np.array(vol.array.shape[::-1]) - 1,
    )
    crop = vol.array[lo_c[2] : hi_c[2] + 1, lo_c[1] : hi_c[1] + 1, lo_c[0] : hi_c[0] + 1]
    cortex = (crop >= hu_cut).ravel()
    dims = np.array(crop.shape[::-1])  # ni, nj, nk
    crossed = np.zeros(len(pts), dtype=np.float32)
    if cortex.any():
        # longest rays first, so the rays still running at step n are a prefix
        by_length = np.argsort(-nearest)
        length = nearest[by_length]
        frac = (step / np.maximum(length, 1e-9)).astype(np.float32)
        start = (a_ijk[by_length] - lo_c + 0.5).astype(np.float32)
        delta = ((b_ijk[by_length] - a_ijk[by_length]) * frac[:, None]).astype(np.float32)
        limit = (dims - 1).astype(np.float32)
        acc = np.zeros(len(pts), dtype=np.float32)
        running = len(pts)
        n = 0
        while True:
            running = int(np.searchsorted(-length[:running], -n * step, side="left"))
            if running == 0:
                break
            ijk = start[:running] + delta[:running] * np.float32(n)
            np.clip(ijk, 0, limit, out=ijk)
            idx = ijk.astype(np.int32)
            flat = idx[:, 0] + dims[0] * (idx[:, 1] + dims[1] * idx[:, 2])
            acc[:running] += cortex[flat]
            n += 1
        crossed[by_length] = acc * np.float32(step)
    blocked = crossed > thick
    if blocked.any():
        b = kji[blocked]
        zone.mask = zone.mask.copy()
        zone.mask[b[:, 0], b[:, 1], b[:, 2]] = False
        zone.exact = False
        zone._distance_cache = {}
    zone.notes.append(
        f"clipped at thick cortex (estimate): {blocked.sum() * grid.voxel_ml(vol):.2f} mL behind "
        f"> {thick:g} mm of bone >= {hu_cut:g} HU removed"
    )
    zone.warnings.append(
        PlanWarning(
            "ZONE_CLIPPED_AT_CORTEX",
            "info",
            "The zone is clipped where heat would cross thick cortical bone: an estimate.",
            {
                "removed_ml": round(float(blocked.sum() * grid.voxel_ml(vol)), 3),
                "cortex_hu": hu_cut,
                "thickness_mm": thick,
            },
        )
    )
    return zone


# -- cryo ------------------------------------------------------------------------------
def cryo_zone(
    volume: Volume,
    device: Device,
    probes: list[tuple[Any, Any]],
    *,
    freeze_s: float | None = None,
    lethal_c: float | None = None,
) -> Zone:
    """The cryoablation zone of one or several probes ((entry, tip) each)."""
    if device.kind != "cryoprobe":
        raise ZoneError(f"{device.name} is not a cryoprobe.", hint="Choose a cryoprobe.")
    if not probes:
        raise ZoneError("No cryoprobe placed.", hint="Place at least one probe.")
    cfg = _treatment("cryo")
    lethal = float(cfg["lethal_isotherm_c"] if lethal_c is None else lethal_c)
    dims = cryo_isotherms(device, freeze_s)
    chart = zone_chart(device)
    needles = [(np.asarray(e, float), np.asarray(t, float)) for e, t in probes]
    per_probe: list[dict[str, Ellipsoid]] = []
    for entry, tip in needles:
        u = _direction(entry, tip)
        per_probe.append(
            {
                name: Ellipsoid.along(tip, u, length, width, dims.center_offset_mm)
                for name, (length, width) in dims.isotherms.items()
            }
        )
    names = list(dims.isotherms)  # warmest (0 °C) first
    temps = [float(n) for n in names]
    outer = names[0]
    tail = _tail_mm(dims, float(cfg["body_temperature_c"]))
    boxes = [p[outer].box_on(volume, pad_mm=tail + 1.0) for p in per_probe]
    box = grid.union_box(boxes)
    lethal_name = f"{lethal:g}"
    shells: dict[str, np.ndarray] = {}
    exact_names = set()
    if len(needles) == 1 and lethal in temps:
        for name in names:
            shells[name] = per_probe[0][name].mask_on(volume, box)
            exact_names.add(name)
        lethal_mask = shells[names[temps.index(lethal)]]
    else:
        field_c = _combined_temperature(volume, box, per_probe, names, cfg, tail)
        for name in names:
            shells[name] = field_c <= float(name)
        lethal_mask = field_c <= lethal
    params = {"freeze_s": dims.time_s, "probes": len(needles), "lethal_isotherm_c": lethal}
    warnings = _chart_warning(device, dims) + _spacing_warnings(
        device, chart, per_probe, volume, box, lethal_mask, lethal_name
    )

    def sub(name: str, mask: np.ndarray) -> Zone:
        single = len(needles) == 1 and name in exact_names
        return Zone(
            model="cryo-isotherms",
            kind="cryo",
            device_id=device.id,
            parameters={**params, "isotherm_c": float(name)},
            volume=volume,
            box=box,
            mask=mask,
            ellipsoids=[p[name] for p in per_probe],
            exact=single,
            dimensions=dims,
            needles=needles,
        )

    isotherms = {f"{float(n):g}": sub(n, shells[n]) for n in names}
    main = Zone(
        model="cryo-isotherms",
        kind="cryo",
        device_id=device.id,
        parameters=params,
        volume=volume,
        box=box,
        mask=lethal_mask,
        ellipsoids=[p[names[temps.index(lethal)]] for p in per_probe] if lethal in temps else [],
        exact=len(needles) == 1 and lethal in temps,
        dimensions=dims,
        isotherms=isotherms,
        probe_isotherms=per_probe,
        safety=isotherms[f"{float(outer):g}"],
        notes=list(dims.notes)
        + [
            f"mask = lethal isotherm {lethal_name} °C; safety distances from the "
            f"{float(outer):g} °C iceball edge"
        ],
        warnings=warnings,
        needles=needles,
    )
    return main


def _tail_mm(dims: ZoneDimensions, body_c: float) -> float:
    """How far beyond the outermost isotherm the tissue is still cooled (mm): the gradient
    between the two outer isotherms, continued up to body temperature."""
    names = list(dims.isotherms)
    if len(names) < 2:
        return dims.isotherms[names[0]][1] / 2.0
    t0, t1 = float(names[0]), float(names[1])
    w0, w1 = dims.isotherms[names[0]][1], dims.isotherms[names[1]][1]
    gap = max((w0 - w1) / 2.0, 0.0)
    return gap * (body_c - t0) / max(t0 - t1, 1e-6)


def _combined_temperature(
    volume: Volume,
    box: Box,
    per_probe: list[dict[str, Ellipsoid]],
    names: list[str],
    cfg: dict[str, Any],
    tail_mm: float,
) -> np.ndarray:
    """Superposed temperature field (°C) of all probes on ``box``."""
    body = float(cfg["body_temperature_c"])
    floor = float(cfg["probe_floor_c"])
    temps = [float(n) for n in names]  # warm to cold
    cooling = np.zeros(grid.box_shape(box), dtype=np.float32)
    for probe in per_probe:
        ref = probe[names[0]]
        q = grid.local_coords(volume, box, ref.center, ref.axes)
        r = np.sqrt(q[0] ** 2 + q[1] ** 2 + q[2] ** 2)
        # distance from the centre to each shell along the ray through the voxel
        knots_s = []
        for name in names:
            e = probe[name]
            rho = np.sqrt(
                (q[0] / e.radii[0]) ** 2 + (q[1] / e.radii[1]) ** 2 + (q[2] / e.radii[2]) ** 2
            )
            knots_s.append(np.where(rho > 0, r / np.maximum(rho, 1e-9), e.radii.min()))
        # warm end: the outer shell + tail (body temperature); cold end: continue the
        # innermost gradient inward down to the floor
        s_body = knots_s[0] + tail_mm
        knots = [(s_body, body)] + list(zip(knots_s, temps, strict=True))
        temp = np.full(r.shape, body, dtype=np.float64)
        # walk from the warm end inward: between consecutive knots, linear in r
        for (s_out, t_out), (s_in, t_in) in itertools.pairwise(knots):
            span = np.maximum(s_out - s_in, 1e-6)
            frac = np.clip((s_out - r) / span, 0.0, 1.0)
            seg = t_out + frac * (t_in - t_out)
            temp = np.where(r < s_out, seg, temp)
        s_in, t_in = knots[-1]
        if len(knots) >= 3:
            s_prev, t_prev = knots[-2]
            slope = (t_prev - t_in) / np.maximum(s_prev - s_in, 1e-6)
        else:
            slope = (body - t_in) / np.maximum(s_body - s_in, 1e-6)
        inner = np.maximum(t_in - slope * (s_in - r), floor)
        temp = np.where(r < s_in, inner, temp)
        cooling += (body - temp).astype(np.float32)
    return np.maximum(body - cooling, floor)


def _lethal_groups(
    volume: Volume, box: Box, per_probe: list[dict[str, Ellipsoid]], lethal_mask: np.ndarray
) -> list[int]:
    """For each probe, the label of the connected piece of the lethal zone around it
    (face-connected: corners touching do not join two zones); 0 when the probe has no
    lethal ice of its own."""
    from guideplan.processing import masks

    labels = masks.components(lethal_mask, full=False) if lethal_mask.any() else None
    out = []
    for probe in per_probe:
        coldest = probe[min(probe, key=float)]
        near = coldest.mask_on(volume, box)
        if labels is None or not near.any():
            out.append(0)
            continue
        hit = labels[near]
        hit = hit[hit > 0]
        out.append(int(np.bincount(hit).argmax()) if len(hit) else 0)
    return out


def _spacing_warnings(
    device: Device,
    chart: dict[str, Any],
    per_probe: list[dict[str, Ellipsoid]],
    volume: Volume,
    box: Box,
    lethal_mask: np.ndarray,
    lethal_name: str,
) -> list[PlanWarning]:
    """``CRYO_SPACING_TOO_WIDE`` exactly when the probes' lethal zones do not join into one
    (each probe outside the largest joined group gets one); an ``info`` when they join but
    probes stand farther apart than the source's spacing (the model's ice may be kinder
    than the measured one)."""
    if len(per_probe) < 2:
        return []
    groups = _lethal_groups(volume, box, per_probe, lethal_mask)
    centres = np.array([p[min(p, key=float)].center for p in per_probe])
    sizes = {g: groups.count(g) for g in set(groups) if g}
    main = max(sizes, key=lambda g: (sizes[g], -groups.index(g))) if sizes else None
    rule = chart.get("max_probe_spacing_mm")
    recommended = chart.get("recommended_spacing_mm")
    out = []
    for i, g in enumerate(groups):
        if g and g == main:
            continue
        others = [j for j in range(len(groups)) if j != i and (groups[j] != g or not g)]
        nearest = float(np.min(np.linalg.norm(centres[others] - centres[i], axis=1)))
        out.append(
            PlanWarning(
                "CRYO_SPACING_TOO_WIDE",
                "warning",
                f"The lethal zone ({lethal_name} °C) of probe {i + 1} does not join the other "
                f"probes' ({nearest:.1f} mm to the nearest probe outside its zone"
                + (
                    ""
                    if rule is None
                    else f"; {device.name}: lethal zones join up to {float(rule):g} mm apart"
                )
                + "): tissue between them may survive.",
                {
                    "probe": i + 1,
                    "spacing_mm": round(nearest, 1),
                    "max_spacing_mm": None if rule is None else float(rule),
                    "recommended_spacing_mm": recommended,
                    "lethal_isotherm_c": float(lethal_name),
                },
            )
        )
    source_max = chart.get("source_max_spacing_mm")
    if not out and source_max is not None:
        spacing = np.linalg.norm(centres[:, None] - centres[None], axis=2)
        np.fill_diagonal(spacing, np.inf)
        widest = float(spacing.min(axis=1).max())
        if widest > float(source_max) + 0.05:  # (a probe placed at exactly 20 mm is not)
            out.append(
                PlanWarning(
                    "CRYO_SPACING_ABOVE_SOURCE",
                    "info",
                    f"The modelled lethal zones join, but a probe is {widest:.1f} mm from its "
                    f"nearest neighbour, more than the {float(source_max):g} mm beyond which "
                    "the source measured a core warmer than -40 °C: place the probes closer.",
                    {
                        "spacing_mm": round(widest, 1),
                        "source_max_spacing_mm": float(source_max),
                        "recommended_spacing_mm": recommended,
                    },
                )
            )
    return out


# -- ethanol ---------------------------------------------------------------------------
def ethanol_zone(
    ctx: TreatmentContext, device: Device, entry, tip, *, volume_ml: float | None = None
) -> Zone:
    """The spread of ``volume_ml`` of ethanol injected at ``tip``: an HU-ordered fill of
    the lesion, then trabecular bone, never through cortex (see guideplan.planning.fill)."""
    from guideplan.planning import fill

    chart = zone_chart(device)
    volume = float(chart.get("default_volume_ml", 2.0) if volume_ml is None else volume_ml)
    if volume <= 0:
        raise ZoneError("The ethanol volume must be positive.", hint="Give --ethanol-ml > 0.")
    settings = fill.FillSettings.ethanol()
    tip = np.asarray(tip, dtype=float)
    cement_cfg = _treatment("cement")
    setup = fill.prepare_fill(
        ctx,
        tip[None, :],
        settings,
        float(cement_cfg["box_radius_mm"]),
        volume,
        float(cement_cfg["tip_search_mm"]),
        what="ethanol",
    )
    order = setup.order
    n = order.count_for(volume)
    placed = order.placed_ml(n)
    notes = list(setup.notes)
    warnings: list[PlanWarning] = []
    if placed < volume * 0.98:
        notes.append(f"only {placed:.2f} mL fit in the bone compartment reached from the tip")
        warnings.append(
            PlanWarning(
                "ETHANOL_OVERFLOW",
                "warning",
                f"Only {placed:.2f} of {volume:.2f} mL of ethanol fit in the lesion and bone "
                "reached from the tip: the rest would leave the bone.",
                {"requested_ml": volume, "placed_ml": round(placed, 3)},
            )
        )
    max_ml = chart.get("max_volume_ml")
    if max_ml is not None and volume > float(max_ml):
        warnings.append(
            PlanWarning(
                "ZONE_CHART_EXTRAPOLATED",
                "warning",
                f"{volume:g} mL is more than the {float(max_ml):g} mL per session of "
                f"{device.name}'s chart.",
                {"volume_ml": volume, "max_volume_ml": float(max_ml)},
            )
        )
    return Zone(
        model="ethanol-fill",
        kind="ethanol",
        device_id=device.id,
        parameters={"volume_ml": volume, "placed_ml": round(placed, 3)},
        volume=ctx.volume,
        box=setup.box,
        mask=order.mask(n),
        notes=notes,
        warnings=warnings,
        needles=[(np.asarray(entry, float), tip)],
    )


# -- any device ------------------------------------------------------------------------
def ablation_zone(
    ctx: TreatmentContext,
    device: Device,
    needles: list[tuple[Any, Any]],
    *,
    power_w: float | None = None,
    time_s: float | None = None,
    freeze_s: float | None = None,
    ethanol_ml: float | None = None,
    clip_cortex: bool = False,
) -> Zone:
    """The zone of ``device`` placed along ``needles`` ((entry, tip) each; several only
    for cryoprobes)."""
    if device.kind not in ZONE_MODELS:
        raise ZoneError(
            f"{device.name} ({device.kind}) makes no ablation zone.",
            hint="Choose an RF probe, microwave antenna, cryoprobe or ethanol needle.",
        )
    if device.kind == "cryoprobe":
        return cryo_zone(
            ctx.volume, device, needles, freeze_s=freeze_s if freeze_s is not None else time_s
        )
    if len(needles) != 1:
        raise ZoneError(
            f"{device.name} is planned with one needle here ({len(needles)} given).",
            hint="Plan one zone per probe.",
        )
    entry, tip = needles[0]
    if device.kind == "ethanol_needle":
        return ethanol_zone(ctx, device, entry, tip, volume_ml=ethanol_ml)
    return thermal_zone(
        ctx.volume, device, entry, tip, power_w=power_w, time_s=time_s, clip_cortex=clip_cortex
    )
