"""The window's treatment actions: zones on needles, their evaluation and display.

A mixin of MainWindow, kept apart so that each part of the window reads on its own.

Every zone is a ZoneNode (what to compute: device, settings, needles); edits are undoable
commands. After any change of a needle, a zone or a label map, :meth:`_update_zones`
evaluates the whole plan off the GUI thread (``guideplan.model.treatment.evaluate_scene``,
the same function as ``guideplan plan --case``) and builds what the views show: one flag
array of the zones for the slice views (:class:`~guideplan.render.zone_layer.ZoneLayer`,
which follows oblique needle planes by itself) and their 3D surfaces, cryo isotherms as
nested shells.
"""

from __future__ import annotations

import time
import zlib
from typing import ClassVar

import numpy as np

from guideplan.model.commands import AddNode, RemoveNode, SetField
from guideplan.model.nodes import LabelMapNode, TrajectoryNode, ZoneNode
from guideplan.model.treatment import with_probes
from guideplan.planning.devices import load_catalog
from guideplan.render.label_layer import surface_actor
from guideplan.render.zone_layer import CHANNELS_BY_NAME, ZoneLayer, zone_surfaces
from guideplan.ui.treatment_panel import volume_limits
from guideplan.ui.workers import run_task

#: Which display channel a zone kind uses (cryo: one channel per isotherm, see below).
KIND_CHANNEL = {"thermal": "ablation", "ethanol": "ethanol", "cement": "cement"}
CRYO_CHANNELS = {"0": "cryo 0 °C", "-20": "cryo -20 °C", "-40": "cryo -40 °C"}


def zone_display(plan, volume):
    """(flag array on the planning grid, [(channel name, box, mask)]) of a ScenePlan:
    what the slice views and the 3D view show (pure: runs in the worker)."""
    flags = np.zeros(volume.array.shape, dtype=np.uint8)
    masks = []
    for outcome in plan.outcomes if plan is not None else []:
        zone = outcome.zone
        if zone is None:
            continue
        parts = []
        if zone.isotherms:
            for name, shell in zone.isotherms.items():
                channel = CRYO_CHANNELS.get(f"{float(name):g}")
                if channel is not None:
                    parts.append((channel, shell))
        else:
            parts.append(
                (
                    "cement"
                    if outcome.cement is not None
                    else KIND_CHANNEL.get(zone.kind, "ablation"),
                    zone,
                )
            )
        for channel, part in parts:
            flags[part.box][part.mask] |= CHANNELS_BY_NAME[channel].bit
            masks.append((channel, part.box, part.mask))
    return flags, masks


class TreatmentActions:
    """Ablation zones and cement on the plan's needles (part of MainWindow)."""

    #: Measured times of the last zone update (s): evaluation, display build; for the
    #: issue note and the tests.
    zone_timings: ClassVar[dict[str, float]] = {}

    # -- zones of the selected needle ------------------------------------------------------
    def _zone_of_current(self) -> ZoneNode | None:
        """The selected needle's zone: on the needle, or a cryo zone it is a probe of."""
        node = self._current()
        if node is None:
            return None
        zones = self.scene.nodes_of(ZoneNode)
        own = next((z for z in zones if z.trajectory_id == node.id), None)
        if own is not None:
            return own
        return next(
            (z for z in zones if node.id in z.parameters.get("probe_trajectory_ids", [])), None
        )

    def add_zone(self, device_id: str) -> None:
        node = self._current()
        if node is None:
            self.statusBar().showMessage("Place or select a needle first.", 5000)
            return
        self.show_panel("Treat")
        device = self.catalog.get(device_id)
        zones = self.scene.nodes_of(ZoneNode)
        if device.kind == "cryoprobe":
            # A further cryoprobe joins the cryo zone of the same device: the isotherms
            # of all probes merge.
            for zone in zones:
                if zone.parameters.get("device_id") != device_id:
                    continue
                extra = list(zone.parameters.get("probe_trajectory_ids", []))
                if node.id == zone.trajectory_id or node.id in extra:
                    self.statusBar().showMessage("This needle is already a probe.", 5000)
                    return
                self._set_probes(zone, [*extra, node.id], text="Add cryoprobe")
                self.statusBar().showMessage(
                    f"{node.name} added as probe {len(extra) + 2} of '{zone.name}'.", 5000
                )
                return
        params: dict = {"device_id": device_id}
        if device.kind in ("cement_trocar", "ethanol_needle"):
            params["volume_ml"] = volume_limits(device)[0]
        zone = ZoneNode(
            name=f"{device.name} on {node.name}", trajectory_id=node.id, parameters=params
        )
        self.scene.execute(AddNode(zone, text="Add treatment zone"))
        self._show_current_zone()

    def remove_zone(self) -> None:
        """Remove the selected needle's zone; a further cryoprobe only leaves the zone."""
        zone = self._zone_of_current()
        node = self._current()
        if zone is None or node is None:
            return
        if zone.trajectory_id != node.id:
            extra = [t for t in zone.parameters.get("probe_trajectory_ids", []) if t != node.id]
            self._set_probes(zone, extra, text="Remove cryoprobe")
            return
        self.scene.execute(RemoveNode(zone.id))

    def _set_probes(self, zone: ZoneNode, ids: list[str], text: str = "Cryoprobes") -> None:
        params = with_probes(zone.parameters, ids)
        if params != zone.parameters:
            self.scene.execute(SetField(zone.id, "parameters", params, text=text))

    def _set_zone_probes(self, ids: list) -> None:
        zone = self._zone_of_current()
        if zone is not None:
            self._set_probes(zone, [str(i) for i in ids])

    def _set_zone_parameters(self, values: dict) -> None:
        zone = self._zone_of_current()
        if zone is None:
            return
        params = {
            **{
                k: v
                for k, v in zone.parameters.items()
                if k not in ("power_w", "time_s", "freeze_s")
            },
            **values,
        }
        if params != zone.parameters:
            self.scene.execute(SetField(zone.id, "parameters", params, text="Zone settings"))

    def _set_zone_volume(self, volume_ml: float, gesture: int = 0) -> None:
        """The slider's volume; one slider gesture is one undo step."""
        zone = self._zone_of_current()
        if zone is None or not self._volume_zone(zone):
            return
        value = round(float(volume_ml), 2)
        if zone.parameters.get("volume_ml") == value:
            return
        self.scene.execute(
            SetField(
                zone.id,
                "parameters",
                {**zone.parameters, "volume_ml": value},
                text="Injected volume",
                merge_key=("zone-volume", zone.id, gesture),
            )
        )

    def _volume_zone(self, zone: ZoneNode) -> bool:
        device_id = zone.parameters.get("device_id", "")
        return device_id in self.catalog and self.catalog.get(device_id).kind in (
            "cement_trocar",
            "ethanol_needle",
        )

    def _show_current_zone(self) -> None:
        zone = self._zone_of_current()
        device = None
        if zone is not None and zone.parameters.get("device_id", "") in self.catalog:
            device = self.catalog.get(zone.parameters["device_id"])
        needles = [(n.id, n.name) for n in self.scene.nodes_of(TrajectoryNode)]
        self.treatment_panel.show_zone(
            zone.parameters if zone is not None else None,
            device,
            needles,
            zone.trajectory_id if zone is not None else "",
        )
        outcome = None
        plan = getattr(self, "_zone_plan", None)
        if plan is not None and zone is not None:
            outcome = next((o for o in plan.outcomes if o.node.id == zone.id), None)
        self.treatment_panel.show_cement(outcome.cement if outcome is not None else None)

    # -- the device catalog ------------------------------------------------------------------
    def open_catalog_dialog(self) -> None:
        from guideplan.ui.catalog_dialog import CatalogDialog

        dialog = CatalogDialog(self.catalog, self)
        dialog.catalog_saved.connect(self.reload_catalog)
        self.catalog_dialog = dialog  # tests reach it
        dialog.open()

    def reload_catalog(self, chosen: str = "") -> None:
        """Read the catalogs again (the user's catalog changed) into every panel."""
        self.catalog = load_catalog()
        self.treatment_panel.set_catalog(self.catalog)
        if chosen:
            index = self.treatment_panel.device.findData(chosen)
            if index >= 0:
                self.treatment_panel.device.setCurrentIndex(index)
        combo = self.trajectory_panel.device
        current = combo.currentData()
        combo.blockSignals(True)
        combo.clear()
        for device in self.catalog:
            combo.addItem(device.name, device.id)
        combo.setCurrentIndex(max(combo.findData(current), 0))
        combo.blockSignals(False)
        self._zone_timer.start()

    # -- computing and showing -----------------------------------------------------------------
    #: A needle tip may move this far (mm) outside the box of the tips and lesion the
    #: context was built around before the context is rebuilt: its skin field reaches
    #: 90 mm around that box, which leaves room for the largest zone plus its margin.
    CONTEXT_SLACK_MM: ClassVar[float] = 40.0

    def _context_for(self, scene, volume, auto, canal_finding, cached):
        """(treatment context, cache entry): the context (structures, distance maps) is
        reused while the label maps stay the same and the needles' tips stay near where
        it was built: dragging a needle, the cement slider and power/time changes do not
        rebuild it. Runs in the zone worker: it reads only its arguments (``auto``,
        ``canal_finding`` and ``cached`` were taken on the GUI thread) and returns the new
        cache entry instead of storing it; one zone task runs at a time, so a cached
        context is used by one worker at a time and by nothing else."""
        from guideplan.model.treatment import treatment_context

        key = (
            tuple(
                (n.id, zlib.adler32(np.ascontiguousarray(n.array).data))
                for n in scene.nodes_of(LabelMapNode)
                if n.array is not None
            ),
            id(volume),
            tuple(id(f) for f in auto),
            tuple(sorted(str(v) for v in (scene.info or {}).values()))
            if isinstance(scene.info, dict)
            else (),
            tuple(str(n.findings) for n in scene.nodes_of(LabelMapNode)),
            str(canal_finding),
        )
        tips = np.array([n.target for n in scene.nodes_of(TrajectoryNode)], dtype=float)
        if cached is not None and cached[0] == key and _tips_within(tips, *cached[2]):
            return cached[1], cached
        ctx = treatment_context(scene)
        if ctx.canal_field() is None:
            have = {f.name for f in ctx.structures}
            ctx.structures += [f for f in auto if f.name not in have]
        ctx.canal_finding = canal_finding  # not found, or the user's word
        built = tips if len(tips) else np.zeros((1, 3))
        bounds = (
            built.min(axis=0) - self.CONTEXT_SLACK_MM,
            built.max(axis=0) + self.CONTEXT_SLACK_MM,
        )
        return ctx, (key, ctx, bounds)

    def schedule_zones(self) -> None:
        """Recompute the zones soon. Throttled, not debounced: while a needle is dragged
        the zones follow it every timer interval instead of waiting for the mouse to
        stop."""
        if not self._zone_timer.isActive():
            self._zone_timer.start()

    def _update_zones(self) -> None:
        """Recompute every zone and the plan's evaluation off the GUI thread."""
        zones = self.scene.nodes_of(ZoneNode)
        if self.planning is None or not zones:
            self._zone_plan = None
            self._show_zones(None)
            return
        if self._zone_task is not None and self._zone_task.running:
            self._zone_timer.start()  # one computation at a time: try again shortly
            return
        from guideplan.model.treatment import evaluate_scene, treatment_snapshot

        # A copy of what the evaluation reads: the user goes on editing meanwhile.
        scene = treatment_snapshot(self.scene)
        catalog, volume = self.catalog, self.planning.volume
        # Structures found automatically on the CT (the canal) stand in for the ones
        # not segmented, as in `guideplan plan` without --labels: a zone reaching the
        # canal is warned about before anyone runs Auto anatomy.
        path_ctx = getattr(self, "path_ctx", None)
        auto = (
            [] if path_ctx is None or path_ctx.volume is not volume else list(path_ctx.structures)
        )
        canal_finding = (
            None if path_ctx is None or path_ctx.volume is not volume else path_ctx.canal_finding
        )
        cached = getattr(self, "_zone_ctx", None)
        context_for = self._context_for  # reads only its arguments (see there)

        def task(progress, cancel):
            t0 = time.perf_counter()
            ctx, cache = context_for(scene, volume, auto, canal_finding, cached)
            t1 = time.perf_counter()
            plan = evaluate_scene(scene, catalog, ctx)
            t2 = time.perf_counter()
            flags, masks = zone_display(plan, volume)
            surfaces = zone_surfaces(volume, masks)
            t3 = time.perf_counter()
            timings = {"context_s": t1 - t0, "evaluate_s": t2 - t1, "display_s": t3 - t2}
            return plan, volume.with_array(flags), surfaces, timings, cache

        # Zones are a throttled display: a result computed on slightly older positions or
        # settings is shown while the edit that made it stale has already scheduled the
        # next computation (a dragged needle's zone follows it). One whose zones or
        # needles were removed or added since (an undo) is dropped.
        nodes = _zone_nodes(self.scene)
        generation = self.plan_generation.guard()
        self._zone_task = run_task(
            self,
            task,
            self._show_zones,
            "Zones",
            show_progress=False,
            guard=lambda: generation() and _zone_nodes(self.scene) == nodes,
            on_stale=self.schedule_zones,
        )

    def _show_zones(self, result) -> None:
        plan, flags, surfaces, timings, cache = (
            result if result is not None else (None, None, [], {}, None)
        )
        if cache is not None:
            self._zone_ctx = cache
        if timings:
            TreatmentActions.zone_timings = timings
        if self.planning is None or (
            flags is not None and flags.array.shape != self.planning.volume.array.shape
        ):
            plan, flags, surfaces = None, None, []
        self._zone_plan = plan
        for name, widget in self.slice_widgets.items():
            layer = self.zone_layers.get(name)
            if layer is None:
                layer = self.zone_layers[name] = ZoneLayer(widget.slice_view)
            layer.set_zones(flags)
        renderer = self.view3d.view3d.renderer
        for actor in self._zone_actors:
            renderer.RemoveActor(actor)
        self._zone_actors = []
        for channel, poly in surfaces:
            actor = surface_actor(poly, channel.colour, channel.surface_opacity)
            if channel.name.startswith("cryo"):
                actor.GetProperty().BackfaceCullingOn()  # nested shells stay readable
            renderer.AddActor(actor)
            self._zone_actors.append(actor)
        errors = [o.error for o in (plan.outcomes if plan else []) if o.error]
        self.treatment_panel.show_evaluation(plan, errors[0] if errors else None)
        self._show_current_zone()
        self.render_all()


def _zone_nodes(scene) -> tuple[frozenset, frozenset]:
    """The ids of the plan's zones and needles: what a zone result is about."""
    return (
        frozenset(n.id for n in scene.nodes_of(ZoneNode)),
        frozenset(n.id for n in scene.nodes_of(TrajectoryNode)),
    )


def _tips_within(tips: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> bool:
    """Every needle tip inside the box [lo, hi] (LPS mm)."""
    return bool(np.all((tips >= lo) & (tips <= hi))) if len(tips) else True
