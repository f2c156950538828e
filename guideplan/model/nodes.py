"""Plan nodes: the things a plan is made of, with display properties kept apart from data.

A node's *data* (a point, an array, a matrix) is what the plan means; its *display*
(visibility, colour, opacity, window/level) is how it is shown. Both are edited through
commands (see :mod:`guideplan.model.commands`) so the whole plan has one undo history.

Every node serialises to a JSON-able dict (``to_dict``) and back (``node_from_dict``);
large arrays and matrices are handed out separately (``payloads``) so that the case
file can store them as .nrrd/.tfm files next to ``case.json``.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar

import numpy as np

from guideplan.core.jsonable import to_jsonable
from guideplan.core.volume import Volume

Point = tuple[float, float, float]


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@dataclass
class DisplayProps:
    visible: bool = True
    color: tuple[float, float, float] = (1.0, 1.0, 0.0)
    opacity: float = 1.0
    #: Window/level for image layers (None: the layer's default).
    window: float | None = None
    level: float | None = None
    #: Label maps: draw the outline only in slice views.
    outline: bool = False
    #: Fused prior volumes: "blend", "overlay", "checker" or "flicker"; colour map
    #: ("grey", "hot", "rainbow") and checkerboard tile size.
    fusion: str = "blend"
    colormap: str = "grey"
    checker_mm: float = 20.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DisplayProps:
        names = {f.name for f in fields(cls)}
        kw = {k: v for k, v in data.items() if k in names}
        if "color" in kw:
            kw["color"] = tuple(float(c) for c in kw["color"])
        return cls(**kw)


@dataclass
class Node:
    """Base of every plan node."""

    kind: ClassVar[str] = "node"
    #: Data fields that are points or numbers and serialise directly into case.json.
    json_fields: ClassVar[tuple[str, ...]] = ()

    name: str = ""
    id: str = ""
    display: DisplayProps = field(default_factory=DisplayProps)

    def __post_init__(self) -> None:
        if not self.id:
            self.id = new_id(self.kind)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": self.kind,
            "id": self.id,
            "name": self.name,
            "display": self.display.to_dict(),
        }
        for name in self.json_fields:
            out[name] = to_jsonable(getattr(self, name))
        return out

    def payloads(self) -> dict[str, Any]:
        """Large data to store beside case.json: {key: ndarray or Volume}."""
        return {}

    def restore_payloads(self, payloads: dict[str, Any]) -> None:
        """Receive what :meth:`payloads` produced (after loading from disk)."""


@dataclass
class VolumeNode(Node):
    """An image volume: the planning CT or a prior study (CT, MR, PET)."""

    kind: ClassVar[str] = "volume"
    json_fields: ClassVar[tuple[str, ...]] = ("role", "source", "transform_id")

    volume: Volume | None = None
    #: "planning" for the planning CT, "prior" for fused studies.
    role: str = "planning"
    #: Where the images come from: path (relative in case files), series/study/FoR UIDs.
    source: dict[str, Any] = field(default_factory=dict)
    #: TransformNode mapping planning-CT LPS points to this volume's LPS points.
    transform_id: str | None = None


@dataclass
class LabelInfo:
    name: str
    color: tuple[float, float, float]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "color": list(self.color)}


@dataclass
class LabelMapNode(Node):
    """Integer labels on the grid of a reference volume (lesion, bone, canal, skin ...)."""

    kind: ClassVar[str] = "labelmap"
    json_fields: ClassVar[tuple[str, ...]] = ("reference_id", "findings")

    array: np.ndarray | None = None
    reference_id: str = ""
    labels: dict[int, LabelInfo] = field(default_factory=dict)
    #: How sure each automatically made label is ({label name: Finding.to_json()}): the
    #: anatomy finder's status, until the user confirms or draws the structure.
    findings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["labels"] = {str(k): v.to_dict() for k, v in self.labels.items()}
        return out

    def payloads(self) -> dict[str, Any]:
        return {} if self.array is None else {"labels": self.array}

    def restore_payloads(self, payloads: dict[str, Any]) -> None:
        self.array = payloads.get("labels")


@dataclass
class LandmarkNode(Node):
    """Named points (fiducials), e.g. for landmark registration."""

    kind: ClassVar[str] = "landmarks"
    json_fields: ClassVar[tuple[str, ...]] = ("points", "labels", "volume_id")

    points: list[Point] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    volume_id: str = ""


@dataclass
class MeasurementNode(Node):
    """A ruler (two points) or an angle (three points, vertex in the middle), LPS mm."""

    kind: ClassVar[str] = "measurement"
    json_fields: ClassVar[tuple[str, ...]] = ("points", "measure")

    points: list[Point] = field(default_factory=list)
    measure: str = "distance"  # "distance" | "angle"

    @property
    def value(self) -> float | None:
        pts = np.asarray(self.points, dtype=float)
        if self.measure == "distance" and len(pts) == 2:
            return float(np.linalg.norm(pts[1] - pts[0]))
        if self.measure == "angle" and len(pts) == 3:
            a, b = pts[0] - pts[1], pts[2] - pts[1]
            na, nb = np.linalg.norm(a), np.linalg.norm(b)
            if na == 0 or nb == 0:
                return None
            return float(np.degrees(np.arccos(np.clip(a @ b / (na * nb), -1.0, 1.0))))
        return None

    @property
    def label(self) -> str:
        value = self.value
        if value is None:
            return ""
        return f"{value:.1f} mm" if self.measure == "distance" else f"{value:.1f}°"


@dataclass
class TrajectoryNode(Node):
    """A straight needle path from a skin entry point to a target point (LPS mm)."""

    kind: ClassVar[str] = "trajectory"
    json_fields: ClassVar[tuple[str, ...]] = ("entry", "target", "device_id", "locked")

    entry: Point = (0.0, 0.0, 0.0)
    target: Point = (0.0, 0.0, 0.0)
    device_id: str = ""
    locked: bool = False

    @property
    def length_mm(self) -> float:
        return float(np.linalg.norm(np.subtract(self.target, self.entry)))


@dataclass
class ZoneNode(Node):
    """A predicted treatment volume (ablation zone or cement fill) for a trajectory."""

    kind: ClassVar[str] = "zone"
    json_fields: ClassVar[tuple[str, ...]] = ("trajectory_id", "model", "parameters")

    trajectory_id: str = ""
    model: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass
class ProtectionNode(Node):
    """Thermal protection (guideplan.planning.protection): a hydro- or CO2 dissection
    placed with its own needle (``entry`` -> ``tip``) that displaces ``structure`` by
    ``displacement_mm`` or lays an insulating layer ``thickness_mm`` thick; or a
    thermocouple at ``tip`` with its warning temperature ``warn_c``."""

    kind: ClassVar[str] = "protection"
    json_fields: ClassVar[tuple[str, ...]] = (
        "element",
        "structure",
        "agent",
        "entry",
        "tip",
        "displacement_mm",
        "thickness_mm",
        "warn_c",
    )

    element: str = "dissection"  # dissection | thermocouple
    structure: str = ""
    agent: str = "hydro"  # hydro | co2
    entry: Point | None = None
    tip: Point = (0.0, 0.0, 0.0)
    displacement_mm: float = 0.0
    thickness_mm: float = 0.0
    warn_c: float | None = None


@dataclass
class TransformNode(Node):
    """A 4x4 affine mapping fixed (planning CT) LPS points to moving LPS points."""

    kind: ClassVar[str] = "transform"
    json_fields: ClassVar[tuple[str, ...]] = ("metric",)

    matrix: np.ndarray = field(default_factory=lambda: np.eye(4))
    metric: dict[str, Any] = field(default_factory=dict)

    def payloads(self) -> dict[str, Any]:
        return {"matrix": np.asarray(self.matrix, dtype=float)}

    def restore_payloads(self, payloads: dict[str, Any]) -> None:
        if "matrix" in payloads:
            self.matrix = np.asarray(payloads["matrix"], dtype=float)


NODE_TYPES: dict[str, type[Node]] = {
    cls.kind: cls
    for cls in (
        VolumeNode,
        LabelMapNode,
        LandmarkNode,
        MeasurementNode,
        TrajectoryNode,
        ZoneNode,
        ProtectionNode,
        TransformNode,
    )
}


def node_from_dict(data: dict[str, Any]) -> Node:
    """Rebuild a node (without payloads) from :meth:`Node.to_dict` output."""
    kind = data.get("kind")
    cls = NODE_TYPES.get(str(kind))
    if cls is None:
        raise ValueError(f"unknown node kind {kind!r}")
    node = cls(name=str(data.get("name", "")), id=str(data.get("id", "")))
    node.display = DisplayProps.from_dict(data.get("display", {}))
    for name in cls.json_fields:
        if name in data:
            setattr(node, name, _from_json(data[name]))
    if isinstance(node, LabelMapNode):
        node.labels = {
            int(k): LabelInfo(v["name"], tuple(float(c) for c in v["color"]))
            for k, v in data.get("labels", {}).items()
        }
    return node


def _from_json(value: Any) -> Any:
    """Lists of 3 numbers become point tuples; lists of points stay lists of tuples."""
    if isinstance(value, list):
        if len(value) == 3 and all(isinstance(v, int | float) for v in value):
            return tuple(float(v) for v in value)
        return [_from_json(v) for v in value]
    return value
