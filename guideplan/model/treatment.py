"""The treatment of a plan: rebuild each ZoneNode's predicted zone and evaluate them all.

A :class:`~guideplan.model.nodes.ZoneNode` stores what to compute, not the result: its
``model`` (``rf-ellipsoid``, ``mw-ellipsoid``, ``cryo-isotherms``, ``ethanol-fill``,
``cement-fill``; empty = from the device's kind), its trajectory (the needle) and its
``parameters``:

``device_id``              device (default: the trajectory's device)
``power_w``, ``time_s``    RF / microwave settings (default: the chart's)
``freeze_s``               cryo freeze time (``time_s`` accepted)
``volume_ml``              ethanol or cement volume
``clip_cortex``            clip thermal zones at thick cortex (estimate)
``probe_trajectory_ids``   further needles of the same zone (cryoprobes, a second trocar)

Used by ``guideplan plan --case`` and, the same way, by the GUI.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from guideplan.core.errors import GuideplanError
from guideplan.core.status import Finding
from guideplan.core.volume import Volume
from guideplan.model.commands import Group, RemoveNode, SetField, SetFields
from guideplan.model.nodes import LabelMapNode, TrajectoryNode, VolumeNode, ZoneNode
from guideplan.model.scene import Scene
from guideplan.planning.cement import CementResult, predict_cement
from guideplan.planning.context import TreatmentContext
from guideplan.planning.devices import Catalog
from guideplan.planning.evaluate import Evaluation, evaluate_plan
from guideplan.planning.zones import ZONE_MODELS, Zone, ZoneError, ablation_zone

CEMENT_MODEL = "cement-fill"


@dataclass
class ZoneOutcome:
    node: ZoneNode
    zone: Zone | None = None
    cement: CementResult | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "node_id": self.node.id,
            "name": self.node.name,
            "trajectory_id": self.node.trajectory_id,
            "model": self.node.model,
            "parameters": self.node.parameters,
        }
        if self.error:
            out["error"] = self.error
        elif self.cement is not None:
            out["cement"] = self.cement.to_json()
        elif self.zone is not None:
            out["zone"] = self.zone.to_json()
        return out


@dataclass
class ScenePlan:
    outcomes: list[ZoneOutcome] = field(default_factory=list)
    evaluation: Evaluation | None = None


def planning_volume(scene: Scene) -> Volume:
    nodes = [n for n in scene.nodes_of(VolumeNode) if n.role == "planning"]
    if not nodes or nodes[0].volume is None:
        raise GuideplanError("The plan has no planning CT.", hint="Load the planning CT first.")
    return nodes[0].volume


def named_masks(scene: Scene, volume: Volume) -> dict[str, np.ndarray]:
    """Every label of the label maps on the planning CT's grid, as {name: mask}."""
    out: dict[str, np.ndarray] = {}
    for node in scene.nodes_of(LabelMapNode):
        if node.array is None or node.array.shape != volume.array.shape:
            continue
        for value in np.unique(node.array):
            if value == 0:
                continue
            info = node.labels.get(int(value))
            name = info.name if info is not None else f"{node.name or 'label'} {int(value)}"
            mask = node.array == value
            out[name] = out[name] | mask if name in out else mask
    if "body" in out:
        # A label map holds one label per voxel: bone, lesion and organs painted over the
        # body are still inside it (else the 'skin' would wrap every organ).
        for name, mask in out.items():
            if name != "body":
                out["body"] |= mask
    return out


def label_findings(scene: Scene) -> dict[str, Finding]:
    """{label name: Finding} of the labels the anatomy finder made (or the user confirmed)."""
    out: dict[str, Finding] = {}
    for node in scene.nodes_of(LabelMapNode):
        for name, data in (node.findings or {}).items():
            try:
                out[str(name)] = Finding.from_json(data)
            except (KeyError, TypeError, ValueError):
                # never let an unreadable status pass for a confirmed structure
                out[str(name)] = Finding.uncertain("its saved status could not be read")
    return out


def case_target(scene: Scene) -> tuple[str | None, str | None]:
    """(vertebral level, host bone) from the case information, when it says."""
    info = scene.info if isinstance(scene.info, dict) else {}
    target = info.get("target") if isinstance(info.get("target"), dict) else {}
    level = target.get("vertebral_level") or info.get("vertebral_level")
    if not level and isinstance(info.get("levels"), list) and len(info["levels"]) == 1:
        level = info["levels"][0]
    host = target.get("bone") or info.get("bone")
    return (str(level) if level else None), (str(host) if host else None)


def treatment_snapshot(scene: Scene) -> Scene:
    """What the treatment evaluation reads, copied into a scene of its own: the planning
    CT (shared: never edited in place), the label maps (arrays copied), the needles and
    the zones. Taken on the GUI thread, so a worker evaluates one consistent plan while
    the user goes on painting or dragging."""
    snapshot = Scene()
    snapshot.info = copy.deepcopy(scene.info)
    for node in scene:
        if isinstance(node, VolumeNode) and node.role == "planning":
            snapshot._insert(node)
        elif isinstance(node, LabelMapNode):
            array = None if node.array is None else node.array.copy()
            snapshot._insert(dataclasses.replace(node, array=array))
        elif isinstance(node, ZoneNode):
            parameters = copy.deepcopy(node.parameters)
            snapshot._insert(dataclasses.replace(node, parameters=parameters))
        elif isinstance(node, TrajectoryNode):
            snapshot._insert(dataclasses.replace(node))
    return snapshot


def treatment_context(
    scene: Scene, *, margin_mm: float | None = None, level: str | None = None
) -> TreatmentContext:
    volume = planning_volume(scene)
    case_level, host = case_target(scene)
    tips = [n.target for n in scene.nodes_of(TrajectoryNode)]
    return TreatmentContext.from_masks(
        volume,
        named_masks(scene, volume),
        findings=label_findings(scene),
        roi_lps=np.array(tips) if tips else None,
        level=level or case_level,
        host=host,
        margin_mm=margin_mm,
    )


def _needles(scene: Scene, node: ZoneNode) -> list[tuple[np.ndarray, np.ndarray]]:
    ids = [node.trajectory_id, *node.parameters.get("probe_trajectory_ids", [])]
    out = []
    for tid in ids:
        traj = scene.find(tid)
        if not isinstance(traj, TrajectoryNode):
            raise ZoneError(
                f"Zone '{node.name}' refers to a missing trajectory {tid!r}.",
                hint="Re-attach the zone to a needle.",
            )
        out.append((np.asarray(traj.entry, float), np.asarray(traj.target, float)))
    return out


def compute_zone(
    ctx: TreatmentContext, scene: Scene, node: ZoneNode, catalog: Catalog
) -> ZoneOutcome:
    """The zone (or cement fill) a ZoneNode describes; errors are kept, not raised."""
    p = dict(node.parameters)
    try:
        needles = _needles(scene, node)
        traj = scene.find(node.trajectory_id)
        device_id = p.get("device_id") or getattr(traj, "device_id", "")
        model = node.model
        device = catalog.get(device_id) if device_id else None
        if model == CEMENT_MODEL or (
            not model and device is not None and device.kind == "cement_trocar"
        ):
            volume_ml = float(p.get("volume_ml", 0.0))
            result = predict_cement(
                ctx,
                np.array([t for _, t in needles]),
                volume_ml,
                entries_lps=np.array([e for e, _ in needles]),
                device_id=device_id or "",
            )
            return ZoneOutcome(node, zone=result.zone, cement=result)
        if device is None:
            raise ZoneError(f"Zone '{node.name}' has no device.", hint="Choose a device.")
        if model and model != ZONE_MODELS.get(device.kind):
            raise ZoneError(
                f"Zone '{node.name}' is a {model} but {device.id} is a {device.kind}.",
                hint="Choose a device of the zone's kind.",
            )
        zone = ablation_zone(
            ctx,
            device,
            needles,
            power_w=_num(p.get("power_w")),
            time_s=_num(p.get("time_s")),
            freeze_s=_num(p.get("freeze_s")),
            ethanol_ml=_num(p.get("volume_ml")),
            clip_cortex=bool(p.get("clip_cortex", False)),
        )
        return ZoneOutcome(node, zone=zone)
    except GuideplanError as exc:
        return ZoneOutcome(node, error=str(exc))


def _num(value: Any) -> float | None:
    return None if value is None else float(value)


def evaluate_scene(
    scene: Scene,
    catalog: Catalog,
    ctx: TreatmentContext | None = None,
    *,
    margin_mm: float | None = None,
    level: str | None = None,
) -> ScenePlan:
    """Every zone of the plan, then the evaluation of all of them together (ablation
    zones, the cement fills merged)."""
    ctx = ctx or treatment_context(scene, margin_mm=margin_mm, level=level)
    outcomes = [compute_zone(ctx, scene, n, catalog) for n in scene.nodes_of(ZoneNode)]
    ablation = [o.zone for o in outcomes if o.zone is not None and o.cement is None]
    cements = [o.cement for o in outcomes if o.cement is not None]
    cement = cements[0] if len(cements) == 1 else _merge_cement(cements)
    dissections, thermocouples = protection_elements(scene)
    evaluation = (
        evaluate_plan(ctx, ablation, cement, dissections=dissections, thermocouples=thermocouples)
        if (ablation or cement)
        else None
    )
    return ScenePlan(outcomes, evaluation)


def protection_elements(scene: Scene):
    """The plan's dissections and thermocouples (ProtectionNode) as evaluation inputs."""
    from guideplan.model.nodes import ProtectionNode
    from guideplan.planning.protection import Dissection, Thermocouple

    dissections, thermocouples = [], []
    for node in scene.nodes_of(ProtectionNode):
        tip = tuple(float(v) for v in node.tip)
        if node.element == "thermocouple":
            thermocouples.append(Thermocouple(tip, node.name, node.warn_c))
        else:
            entry = None if node.entry is None else tuple(float(v) for v in node.entry)
            dissections.append(
                Dissection(
                    node.structure,
                    tip,
                    node.agent,
                    displacement_mm=float(node.displacement_mm),
                    thickness_mm=float(node.thickness_mm),
                    entry_lps=entry,
                )
            )
    return dissections, thermocouples


def _merge_cement(results: list[CementResult]) -> CementResult | None:
    """Several separate cement zones (two levels): evaluated as one fill."""
    if not results:
        return None
    from guideplan.planning.cement import cement_warnings
    from guideplan.planning.evaluate import union_zone

    zone = union_zone([r.zone for r in results], "cement-fill")
    assert zone is not None
    zone.kind = "cement"
    first = results[0]
    merged = CementResult(
        zone=zone,
        requested_ml=sum(r.requested_ml for r in results),
        placed_ml=sum(r.placed_ml for r in results),
        region_ml=sum(r.region_ml for r in results),
        not_placed_ml=sum(r.not_placed_ml for r in results),
        body_ml=None,
        body_fill_pct=None,
        lesion_fill_pct=None,
        strength_target_pct=first.strength_target_pct,
        leaks=[leak for r in results for leak in r.leaks],
        warnings=[],
    )
    merged.warnings = cement_warnings(merged)
    return merged


def with_probes(parameters: dict[str, Any], probe_ids: list[str]) -> dict[str, Any]:
    """A zone's parameters with these further probes (none: the key is dropped)."""
    out = {k: v for k, v in parameters.items() if k != "probe_trajectory_ids"}
    if probe_ids:
        out["probe_trajectory_ids"] = list(probe_ids)
    return out


def delete_trajectory_command(scene: Scene, trajectory_id: str) -> Group:
    """Delete a needle and keep the treatment consistent, as one undo step.

    A zone placed on the needle goes with it, unless further probes share the zone (a
    cryoablation with several probes): then the next probe carries the zone. A zone the
    needle is a further probe of loses that probe.
    """
    commands: list = []
    for zone in scene.nodes_of(ZoneNode):
        probes = [str(t) for t in zone.parameters.get("probe_trajectory_ids", [])]
        others = [t for t in probes if t != trajectory_id and t in scene]
        if zone.trajectory_id == trajectory_id:
            if not others:
                commands.append(RemoveNode(zone.id))
                continue
            params = with_probes(zone.parameters, others[1:])
            commands.append(SetFields(zone.id, {"trajectory_id": others[0], "parameters": params}))
        elif trajectory_id in probes:
            commands.append(SetField(zone.id, "parameters", with_probes(zone.parameters, others)))
    commands.append(RemoveNode(trajectory_id))
    node = scene.find(trajectory_id)
    return Group(commands, text=f"Delete {node.name if node is not None else 'needle'}")
