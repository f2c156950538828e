"""Structures to spare, as signed distance fields sampled in microseconds.

A :class:`StructureField` is computed once per structure (SimpleITK's Maurer distance
map on a box around the structure plus a margin) and then answers "how far is this
point from the structure" for any LPS points by trilinear interpolation: what path
readouts, safety checks and entry suggestions need, over and over, while dragging.
Beyond the box the distance is reported as the box margin (a lower bound), which is
more than any safety threshold.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from guideplan.core import trajectory as tr
from guideplan.core.resources import load_json
from guideplan.core.status import Finding, Status
from guideplan.core.volume import Volume

#: Structures whose crossing means gas (pneumothorax, bowel perforation).
GAS_BEARING = ("bowel", "colon", "lung", "pleura", "stomach", "intestine")

#: Names under which a mask stands for the spinal canal or what it holds (the canal is
#: what planning spares: its contents are the cord or the cauda equina). Matched as words
#: of the lower-cased name with "_" read as a space: "spinal_cord", "Spinal canal",
#: "thecal sac".
CANAL_WORDS = ("canal", "spinal cord", "cord", "thecal sac", "dural sac", "cauda equina")


def is_canal_name(name: str) -> bool:
    """Whether a structure or mask name is the spinal canal or its contents."""
    key = " " + name.lower().replace("_", " ").replace("-", " ") + " "
    return any(f" {w} " in key or (w == "canal" and "canal" in key) for w in CANAL_WORDS)


@dataclass
class StructureField:
    name: str
    kind: str  # critical | organ
    threshold_mm: float
    gas_bearing: bool
    distance_map: np.ndarray  # float32 [k, j, i] signed mm (negative inside), cropped
    lo_ijk: np.ndarray  # crop origin (i, j, k) in the full volume's index space
    lps_to_index: np.ndarray  # full volume's 4x4
    cap_mm: float
    #: How sure the structure is: a mask from --labels or drawn by the user is found;
    #: an automatic one carries the finder's status (uncertain = unknown to planning).
    finding: Finding = field(default_factory=lambda: Finding.given("labels", "given as a mask"))

    @classmethod
    def from_mask(
        cls,
        name: str,
        mask: np.ndarray,
        volume: Volume,
        threshold_mm: float,
        kind: str = "critical",
        margin_mm: float = 30.0,
        gas_bearing: bool | None = None,
        finding: Finding | None = None,
    ) -> StructureField:
        if mask.shape != volume.array.shape:
            raise ValueError(f"mask of {name} is not on the volume's grid")
        box = _bounding_box(mask)
        if box is None:
            raise ValueError(f"structure {name} is empty")
        margin = np.ceil(margin_mm / np.asarray(volume.spacing)[::-1]).astype(int)  # k, j, i
        lo = np.maximum(box[0] - margin, 0)
        hi = np.minimum(box[1] + margin + 1, mask.shape)
        import SimpleITK as sitk  # only when a field is built: keeps start-up light

        crop = mask[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
        image = sitk.GetImageFromArray(crop.astype(np.uint8))
        image.SetSpacing(volume.spacing)
        dist = sitk.SignedMaurerDistanceMap(
            image, insideIsPositive=False, squaredDistance=False, useImageSpacing=True
        )
        if gas_bearing is None:
            gas_bearing = any(word in name.lower() for word in GAS_BEARING)
        return cls(
            name=name,
            kind=kind,
            threshold_mm=float(threshold_mm),
            gas_bearing=gas_bearing,
            distance_map=sitk.GetArrayFromImage(dist).astype(np.float32),
            lo_ijk=lo[::-1].astype(float),
            lps_to_index=volume.lps_to_index,
            cap_mm=float(margin_mm),
            finding=finding or Finding.given("labels", "given as a mask"),
        )

    @property
    def is_canal(self) -> bool:
        return is_canal_name(self.name)

    def distance(self, points: np.ndarray) -> np.ndarray:
        """Signed distance (mm) from the structure's surface; negative inside."""
        pts = np.atleast_2d(points)
        ijk = pts @ self.lps_to_index[:3, :3].T + self.lps_to_index[:3, 3] - self.lo_ijk
        return tr.sample_trilinear(self.distance_map, ijk, outside=self.cap_mm)

    def inside(self, points: np.ndarray) -> np.ndarray:
        return self.distance(points) <= 0.0


def _bounding_box(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(first, last) [k, j, i] indices holding the mask, from axis projections (fast)."""
    ends = []
    for axis in range(3):
        others = tuple(a for a in range(3) if a != axis)
        hits = np.flatnonzero(mask.any(axis=others))
        if len(hits) == 0:
            return None
        ends.append((hits[0], hits[-1]))
    return np.array([e[0] for e in ends]), np.array([e[1] for e in ends])


def safety_distance_mm(name: str, settings: dict[str, Any] | None = None) -> float:
    """The safety distance setting for a structure name ('Spinal cord' -> 'cord' ...)."""
    table = (settings or load_json("planning.json"))["safety_distance_mm"]
    key = name.lower().replace(" ", "_")
    if key in table:
        return float(table[key])
    for word, value in table.items():
        if not word.startswith("_") and word != "default" and word in key:
            return float(value)
    return float(table["default"])


def fields_from_labels(
    labels: np.ndarray,
    table: dict[int, str],
    volume: Volume,
    skip: tuple[str, ...] = ("lesion", "bone", "cortical bone", "trabecular bone", "body"),
    settings: dict[str, Any] | None = None,
    findings: dict[str, Finding] | None = None,
) -> list[StructureField]:
    """One field per label id in ``table`` (id -> name), leaving out lesion and bone; a
    label the anatomy finder made keeps its finding (``findings`` by name)."""
    fields = []
    for label_id, name in table.items():
        if name.lower() in skip:
            continue
        mask = labels == label_id
        if mask.any():
            fields.append(
                StructureField.from_mask(
                    name,
                    mask,
                    volume,
                    safety_distance_mm(name, settings),
                    finding=(findings or {}).get(name),
                )
            )
    return fields


def structures_from_masks(
    masks: dict[str, np.ndarray], volume: Volume, settings: dict[str, Any] | None = None
) -> list[StructureField]:
    """Fields for named masks, leaving out what a needle may cross (bone, body, lesion)."""
    skip = ("lesion", "bone", "cortical", "trabecular", "body", "skin_surface")
    return [
        StructureField.from_mask(name, mask, volume, safety_distance_mm(name, settings))
        for name, mask in masks.items()
        if mask.any() and not any(word in name.lower() for word in skip)
    ]


def auto_structures(volume: Volume) -> list[StructureField]:
    """Structures to spare found automatically on the CT (the spinal canal), each with
    its finding; see :func:`auto_structures_with_status` for a canal not found."""
    return auto_structures_with_status(volume)[0]


def auto_structures_with_status(volume: Volume) -> tuple[list[StructureField], Finding]:
    """(fields, the canal's finding). A canal found or uncertain gets a field (distances
    to an uncertain one are shown, but planning treats it as unknown); a canal not found
    gets none, and its finding says why."""
    mask, finding = auto_canal(volume)
    fields: list[StructureField] = []
    if mask.any() and finding.status is not Status.NOT_FOUND:
        fields.append(
            StructureField.from_mask(
                "spinal canal", mask, volume, safety_distance_mm("spinal canal"), finding=finding
            )
        )
    return fields, finding


#: One automatic canal per planning CT: (the array it was found on, mask, finding).
_CANAL_CACHE: list[tuple[np.ndarray, tuple, np.ndarray, Finding]] = []


def auto_canal(volume: Volume) -> tuple[np.ndarray, Finding]:
    """The spinal canal found on the whole CT, with its finding; computed once per CT
    (the path checks, the zones and the cement all ask for it)."""
    key = (volume.array.shape, volume.index_to_lps.tobytes())
    for array, k, mask, finding in _CANAL_CACHE:
        if array is volume.array and k == key:
            return mask, finding
    from guideplan.processing import anatomy

    result = anatomy.find_canal(volume)
    mask, finding = result.mask.astype(bool), result.finding
    _CANAL_CACHE[:] = [*_CANAL_CACHE[-1:], (volume.array, key, mask, finding)]
    return mask, finding


def canal_status(fields: list[StructureField], auto: Finding | None) -> Finding | None:
    """The canal's status for planning. The user's word wins (a canal drawn or confirmed,
    or "no canal near this plan"), then a canal given as a mask (--labels), then the
    automatic finder's; None when nobody looked for it (a bare context in a test: the
    CLI and the window always look)."""
    if auto is not None and auto.source == "user":
        return auto
    canal = [f for f in fields if f.is_canal]
    for source in ("user", "labels"):
        given = [f for f in canal if f.finding.source == source]
        if given:
            return given[0].finding
    if canal:
        return canal[0].finding
    return auto
