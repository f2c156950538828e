"""What stays fixed while a treatment is planned: the CT, the lesion, bone, canal, the
structures to spare and the settings. Built once; zones, cement and the evaluation then
only touch boxes around the needle tips, which is what keeps them live.

Masks may be given (label map, ``--labels`` folder) or are found automatically, per box
around where they are needed (bone with :func:`guideplan.processing.anatomy.bone_labels`
on a crop, the canal from a structure field named "canal" or from the anatomy finder).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np

from guideplan.core.labelmap import Box, full_box, mask_bounds
from guideplan.core.resources import load_json
from guideplan.core.status import Finding
from guideplan.core.volume import Volume
from guideplan.planning import grid
from guideplan.planning.structures import (
    StructureField,
    auto_canal,
    canal_status,
    is_canal_name,
    safety_distance_mm,
)

#: Vertebral levels head to feet, to compare a level with the conus setting.
LEVELS = (
    [f"C{n}" for n in range(1, 8)]
    + [f"T{n}" for n in range(1, 13)]
    + [f"L{n}" for n in range(1, 6)]
    + [f"S{n}" for n in range(1, 6)]
)

#: Mask names (lower case, words) and what they are in a treatment plan.
_ROLE_WORDS = (
    ("lesion", ("lesion", "tumour", "tumor", "metastasis")),
    ("disc", ("disc", "disk")),
    ("vertebral_body", ("vertebral body", "vertebrae", "vertebra")),
    ("bone", ("bone", "cortical", "trabecular")),
    ("cement", ("cement",)),
    ("canal", ("canal",)),
    ("body", ("body",)),
    ("skin", ("skin",)),
)


def settings_values(section: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
    """A section of ``treatment.json`` with each ``{"value": v, "source": s}`` read as v."""
    raw = (data or load_json("treatment.json"))[section]
    return {k: v["value"] if isinstance(v, dict) and "value" in v else v for k, v in raw.items()}


def mask_role(name: str) -> str:
    """'lesion', 'bone', 'canal', 'disc', 'vertebral_body', 'body', 'skin', 'cement' or
    'structure' (something to spare) for a mask or label name."""
    key = name.lower().replace("_", " ")
    if is_canal_name(name):  # "spinal_cord", "thecal sac": the canal and its contents
        return "canal"
    for role, words in _ROLE_WORDS:
        if any(w in key for w in words):
            return role
    return "structure"


@dataclass
class LesionFacts:
    volume_ml: float
    n_voxels: int
    centroid_lps: np.ndarray
    boundary_lps: np.ndarray  # (N, 3) centres of the lesion's boundary voxels
    median_hu: float
    bone_reference_hu: float | None
    kind: str  # lytic | blastic | mixed | unknown
    canal_distance_mm: float | None
    vertebral: bool


class TreatmentContext:
    """The fixed inputs of treatment planning on one planning CT."""

    def __init__(
        self,
        volume: Volume,
        *,
        lesion: np.ndarray | None = None,
        structures: list[StructureField] | None = None,
        bone: np.ndarray | None = None,
        canal: np.ndarray | None = None,
        disc: np.ndarray | None = None,
        vertebral_body: np.ndarray | None = None,
        level: str | None = None,
        host: str | None = None,
        margin_mm: float | None = None,
        settings: dict[str, Any] | None = None,
        planning_settings: dict[str, Any] | None = None,
        canal_finding: Finding | None = None,
    ) -> None:
        shape = volume.array.shape
        for name, m in (
            ("lesion", lesion),
            ("bone", bone),
            ("canal", canal),
            ("disc", disc),
            ("vertebral body", vertebral_body),
        ):
            if m is not None and m.shape != shape:
                raise ValueError(f"the {name} mask is not on the planning CT's grid")
        self.volume = volume
        self.lesion = None if lesion is None or not lesion.any() else lesion.astype(bool)
        self.structures = list(structures or [])
        self.bone = None if bone is None else bone.astype(bool)
        self.canal = None if canal is None else canal.astype(bool)
        #: The automatic canal's finding when no canal field stands for it.
        self.canal_finding = canal_finding
        self.disc = None if disc is None else disc.astype(bool)
        self.vertebral_body = vertebral_body
        self.level = level
        self.host = host
        self.settings = settings or load_json("treatment.json")
        self.planning = planning_settings or load_json("planning.json")
        evaluation = settings_values("evaluation", self.settings)
        self.margin_mm = float(evaluation["margin_mm"] if margin_mm is None else margin_mm)
        self.voxel_ml = grid.voxel_ml(volume)
        self.spacing_kji = grid.spacing_kji(volume)
        self._auto: dict[str, tuple[Box, np.ndarray]] = {}
        self._lesion_facts: LesionFacts | None = None
        self._margin_regions: dict[float, tuple[Box, np.ndarray]] = {}
        self._level_auto: str | bool | None = False  # False: not looked for yet
        self._vertebrae: Any = False  # anatomy.VertebraeResult | None once looked for

    # -- construction from named masks ---------------------------------------------------
    @classmethod
    def from_masks(
        cls,
        volume: Volume,
        named: dict[str, np.ndarray],
        *,
        roi_lps: np.ndarray | None = None,
        auto_skin: bool = True,
        findings: dict[str, Finding] | None = None,
        **kwargs: Any,
    ) -> TreatmentContext:
        """Sort named masks (a ``--labels`` folder, a case's label map) into lesion, bone,
        canal, disc, vertebral body and structures to spare (each with its safety distance
        from ``planning.json`` and, from ``findings``, the status of a mask the anatomy
        finder made; others count as given); the skin comes from a skin mask, or the
        body's outer shell near ``roi_lps`` / the lesion, or the CT itself (``auto_skin``)."""
        roles: dict[str, list[np.ndarray]] = {}
        spare: dict[str, np.ndarray] = {}
        for name, mask in named.items():
            if mask is None or not np.any(mask):
                continue
            role = mask_role(name)
            if role == "structure":
                spare[name] = mask.astype(bool)
            else:
                roles.setdefault(role, []).append(mask)
                if role == "canal":
                    spare[name] = mask.astype(bool)

        def union(role: str) -> np.ndarray | None:
            items = roles.get(role)
            if not items:
                return None
            out = np.zeros(volume.array.shape, dtype=bool)
            for m in items:
                out |= m.astype(bool)
            return out

        lesion = union("lesion")
        planning = kwargs.get("planning_settings") or load_json("planning.json")
        structures = [
            StructureField.from_mask(
                n, m, volume, safety_distance_mm(n, planning), finding=(findings or {}).get(n)
            )
            for n, m in spare.items()
        ]
        skin = skin_structure(
            volume,
            skin=union("skin"),
            body=union("body"),
            around_lps=_roi_points(volume, lesion, roi_lps),
            auto=auto_skin,
            settings=planning,
        )
        if skin is not None:
            structures.append(skin)
        body_labels = roles.get("vertebral_body")
        return cls(
            volume,
            lesion=lesion,
            structures=structures,
            bone=union("bone"),
            canal=union("canal"),
            disc=union("disc"),
            vertebral_body=None if not body_labels else body_labels[0],
            **kwargs,
        )

    # -- masks on boxes -----------------------------------------------------------------
    def lesion_in(self, box: Box) -> np.ndarray:
        if self.lesion is None:
            return np.zeros(grid.box_shape(box), dtype=bool)
        return self.lesion[box]

    def bone_in(self, box: Box) -> np.ndarray:
        """Bone (cortical + trabecular) on ``box``: given, or found on a crop around it."""
        if self.bone is not None:
            return self.bone[box]
        return self._auto_mask("bone", box)

    def canal_in(self, box: Box) -> np.ndarray:
        if self.canal is not None:
            return self.canal[box]
        field = self.canal_field()
        if field is not None:
            return _field_mask(field, self.volume, box)
        return self._auto_mask("canal", box)

    def disc_in(self, box: Box) -> np.ndarray | None:
        return None if self.disc is None else self.disc[box]

    def vertebral_body_in(self, box: Box) -> np.ndarray | None:
        return None if self.vertebral_body is None else self.vertebral_body[box]

    def canal_field(self) -> StructureField | None:
        """The canal's distance field: a given one (labels, drawn) before an automatic one."""
        fields = [f for f in self.structures if f.is_canal]
        given = [f for f in fields if f.finding.source != "automatic"]
        return (given or fields or [None])[0]

    def canal_status(self) -> Finding | None:
        """Whether distances to the canal can be trusted (found or given) or not."""
        if self.canal is not None and self.canal.any() and self.canal_field() is None:
            return Finding.given("labels", "given as a mask")
        return canal_status(self.structures, self.canal_finding)

    def _auto_mask(self, what: str, box: Box) -> np.ndarray:
        cached = self._auto.get(what)
        if cached is None or not _contains(cached[0], box):
            roi = grid.grow(
                box, np.ceil(40.0 / self.spacing_kji).astype(int), self.volume.array.shape
            )
            if cached is not None:
                roi = grid.union_box([roi, cached[0]])
            cached = (roi, self._compute_auto(what, roi))
            self._auto[what] = cached
        return grid.paste(cached[1], cached[0], box)

    def _compute_auto(self, what: str, roi: Box) -> np.ndarray:
        from guideplan.processing import anatomy, masks

        crop = masks.crop(self.volume, roi)
        bone = self.bone[roi] if self.bone is not None else None
        if bone is None:
            if "bone" in self._auto and _contains(self._auto["bone"][0], roi):
                bone = grid.paste(self._auto["bone"][1], self._auto["bone"][0], roi)
            else:
                bone = anatomy.bone_labels(crop) > 0
                if what != "bone":
                    self._auto["bone"] = (roi, bone)
        if what == "bone":
            return bone
        # the canal is found on the whole CT once (a crop cuts the spine's context away)
        return auto_canal(self.volume)[0][roi]

    # -- the lesion -----------------------------------------------------------------------
    def lesion_facts(self) -> LesionFacts | None:
        if self.lesion is None:
            return None
        if self._lesion_facts is None:
            self._lesion_facts = self._measure_lesion()
        return self._lesion_facts

    def _measure_lesion(self) -> LesionFacts:
        from guideplan.processing import masks

        assert self.lesion is not None
        cfg = settings_values("evaluation", self.settings)
        pad = np.ceil((float(cfg["bone_reference_shell_mm"][1]) + 3.0) / self.spacing_kji)
        box = mask_bounds(self.lesion, pad.astype(int))
        assert box is not None
        les = self.lesion[box]
        hu = self.volume.array[box]
        values = hu[les].astype(float)
        pts = grid.points_of(self.volume, box, les)
        edge = grid.points_of(self.volume, box, grid.boundary(les))
        bone = self.bone_in(box)
        barrier = float(settings_values("cement", self.settings)["barrier_hu"])
        dist = masks.distance_to(les, self.spacing_kji)
        near, far = (float(v) for v in cfg["bone_reference_shell_mm"])
        shell = (dist >= near) & (dist <= far) & bone & (hu < barrier) & ~les
        reference = float(np.median(hu[shell])) if np.count_nonzero(shell) >= 20 else None
        median = float(np.median(values))
        if reference is not None:
            lytic = median < float(cfg["lytic_below_bone_fraction"]) * reference
            blastic = median > float(cfg["blastic_above_bone_fraction"]) * reference
            kind = "lytic" if lytic else ("blastic" if blastic else "mixed")
        else:
            kind = "lytic" if median < float(cfg["lytic_max_hu"]) else "unknown"
        canal_mm = self._canal_distance(edge, box)
        vertebral = canal_mm is not None and canal_mm <= float(cfg["vertebral_context_mm"])
        return LesionFacts(
            volume_ml=len(values) * self.voxel_ml,
            n_voxels=len(values),
            centroid_lps=pts.mean(axis=0),
            boundary_lps=edge,
            median_hu=median,
            bone_reference_hu=reference,
            kind=kind,
            canal_distance_mm=canal_mm,
            vertebral=vertebral,
        )

    def _canal_distance(self, edge_lps: np.ndarray, box: Box) -> float | None:
        field = self.canal_field()
        if field is not None:
            d = float(field.distance(edge_lps).min())
            return d if d < field.cap_mm else None
        if self.canal is None:
            return None
        from guideplan.processing import masks

        wide = grid.grow(box, np.ceil(30.0 / self.spacing_kji).astype(int), self.canal.shape)
        canal = self.canal[wide]
        if not canal.any():
            return None
        dist = masks.distance_to(canal, self.spacing_kji)
        les = grid.paste(self.lesion[box], box, wide)  # type: ignore[index]
        return float(dist[les].min())

    def margin_region(self, margin_mm: float | None = None) -> tuple[Box, np.ndarray] | None:
        """The lesion grown by the margin (Euclidean, mm): (box, mask)."""
        if self.lesion is None:
            return None
        margin = self.margin_mm if margin_mm is None else float(margin_mm)
        key = round(margin, 3)
        if key not in self._margin_regions:
            from guideplan.processing import masks

            pad = np.ceil((margin + 1.0) / self.spacing_kji).astype(int) + 1
            box = mask_bounds(self.lesion, pad)
            assert box is not None
            les = self.lesion[box]
            region = les | (masks.distance_to(les, self.spacing_kji) <= margin)
            self._margin_regions[key] = (box, region)
        return self._margin_regions[key]

    # -- level ----------------------------------------------------------------------------
    def vertebral_level(self) -> str | None:
        """The lesion's vertebral level: given, or named by the anatomy finder when bone
        and canal masks cover the CT (None when unknown)."""
        if self.level:
            return self.level
        if self._level_auto is False:
            self._level_auto = self._find_level()
        return self._level_auto or None  # type: ignore[return-value]

    def vertebrae(self):
        """Vertebral bodies found along the canal (anatomy.find_vertebrae), when bone and
        canal masks cover the CT; None otherwise. Computed once."""
        if self._vertebrae is False:
            self._vertebrae = None
            if self.bone is not None and self.canal is not None and self.canal.any():
                from guideplan.processing import anatomy

                self._vertebrae = anatomy.find_vertebrae(self.volume, self.bone, self.canal)
        return self._vertebrae

    def disc_slices(self) -> np.ndarray | None:
        """Boolean per slice (along the slice axis): between two vertebral bodies found
        by the anatomy finder, i.e. at a disc's level. None when unknown."""
        result = self.vertebrae()
        if result is None or len(result.vertebrae) < 2:
            return None
        axis = grid.slice_axis(self.volume)
        out = np.zeros(self.volume.array.shape[axis], dtype=bool)
        spans = sorted(v.slices for v in result.vertebrae)
        for (_, a_last), (b_first, _) in itertools.pairwise(spans):
            out[a_last + 1 : b_first] = True
        return out

    def vertebra_labels_in(self, box: Box) -> np.ndarray | None:
        result = self.vertebrae()
        if result is None or not result.vertebrae:
            return None
        return result.labels[box].astype(np.int32)

    def _find_level(self) -> str | None:
        facts = self.lesion_facts()
        if facts is None or not facts.vertebral:
            return None
        result = self.vertebrae()
        if result is None or not result.levels_known or not result.vertebrae:
            return None
        axis = grid.slice_axis(self.volume)
        k = float(self.volume.physical_to_index(facts.centroid_lps)[2 - axis])
        best = min(
            result.vertebrae,
            key=lambda v: (
                0.0
                if v.slices[0] <= k <= v.slices[1]
                else min(abs(k - v.slices[0]), abs(k - v.slices[1]))
            ),
        )
        return best.name

    def below_conus(self) -> bool | None:
        """True at levels holding the cauda equina (below the conus setting), False above,
        None when the level is unknown."""
        level = self.vertebral_level()
        if not level or level.upper() not in LEVELS:
            return None
        lowest = str(settings_values("conus", self.settings)["lowest_cord_level"]).upper()
        return LEVELS.index(level.upper()) > LEVELS.index(lowest)


def _contains(outer: Box, inner: Box) -> bool:
    return all(o.start <= i.start and i.stop <= o.stop for o, i in zip(outer, inner, strict=True))


def _field_mask(field: StructureField, volume: Volume, box: Box) -> np.ndarray:
    """The structure (distance <= 0) of a field, on ``box`` of the CT grid."""
    lo = field.lo_ijk.astype(int)[::-1]
    fbox = tuple(
        slice(int(a), int(a) + n) for a, n in zip(lo, field.distance_map.shape, strict=True)
    )
    return grid.paste(field.distance_map <= 0.0, fbox, box)  # type: ignore[arg-type]


def _roi_points(volume: Volume, lesion: np.ndarray | None, roi_lps) -> np.ndarray | None:
    pts = []
    if roi_lps is not None:
        pts.append(np.atleast_2d(np.asarray(roi_lps, dtype=float)))
    if lesion is not None and lesion.any():
        box = mask_bounds(lesion)
        assert box is not None
        lo = [b.start for b in box[::-1]]
        hi = [b.stop - 1 for b in box[::-1]]
        pts.append(volume.index_to_physical(np.array([lo, hi], dtype=float)))
    return np.vstack(pts) if pts else None


def skin_structure(
    volume: Volume,
    *,
    skin: np.ndarray | None = None,
    body: np.ndarray | None = None,
    around_lps: np.ndarray | None = None,
    radius_mm: float = 90.0,
    auto: bool = True,
    settings: dict[str, Any] | None = None,
) -> StructureField | None:
    """A 'skin' structure field near ``around_lps`` (within ``radius_mm``), from a skin
    mask, the outer shell of a body mask, or the CT's body outline (``auto``)."""
    from guideplan.processing import anatomy, masks

    box = (
        full_box(volume.array.shape)
        if around_lps is None
        else grid.box_around_lps(volume, around_lps, radius_mm)
    )
    if grid.is_empty(box):
        return None
    sp = grid.spacing_kji(volume)
    if skin is not None:
        shell = skin[box].astype(bool)
    else:
        if body is None:
            if not auto:
                return None
            body = anatomy.body_mask(volume)
        thickness = float(settings_values("skin", load_json("anatomy.json"))["thickness_mm"])
        # erode() counts the region beyond the crop as body: only real body-air
        # boundaries become skin, not the crop's faces or the field of view's edges
        crop = body[box].astype(bool)
        shell = crop & ~masks.erode(crop, sp, thickness)
    if not shell.any():
        return None
    full = np.zeros(volume.array.shape, dtype=bool)
    full[box] = shell
    return StructureField.from_mask(
        "skin", full, volume, safety_distance_mm("skin", settings), kind="critical"
    )
