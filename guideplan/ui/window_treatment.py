"""The window's treatment actions: zones on needles, their evaluation and display.

A mixin of MainWindow, kept apart so that each part of the window reads on its own.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from guideplan.model.commands import AddNode, RemoveNode, SetField
from guideplan.model.nodes import ZoneNode
from guideplan.render.label_layer import LabelLayer, label_surfaces, surface_actor
from guideplan.ui.workers import run_task


class TreatmentActions:
    """Ablation zones and cement on the plan's needles (part of MainWindow)."""

    # -- treatment zones ---------------------------------------------------------------
    ZONE_COLOURS: ClassVar[dict[int, tuple]] = {1: (1.0, 0.55, 0.1), 2: (0.85, 0.9, 1.0)}

    def _zone_of_current(self) -> ZoneNode | None:
        node = self._current()
        if node is None:
            return None
        return next((z for z in self.scene.nodes_of(ZoneNode) if z.trajectory_id == node.id), None)

    def add_zone(self, device_id: str) -> None:
        node = self._current()
        if node is None:
            self.statusBar().showMessage("Place or select a needle first.", 5000)
            return
        device = self.catalog.get(device_id)
        params: dict = {"device_id": device_id}
        if device.kind in ("cement_trocar", "ethanol_needle"):
            params["volume_ml"] = 3.0 if device.kind == "cement_trocar" else 2.0
        zone = ZoneNode(
            name=f"{device.name} on {node.name}", trajectory_id=node.id, parameters=params
        )
        self.scene.execute(AddNode(zone, text="Add treatment zone"))
        self.treatment_panel.show_zone(params)

    def remove_zone(self) -> None:
        zone = self._zone_of_current()
        if zone is not None:
            self.scene.execute(RemoveNode(zone.id))

    def _set_zone_parameters(self, values: dict) -> None:
        zone = self._zone_of_current()
        if zone is None:
            return
        params = {
            **{
                k: v
                for k, v in zone.parameters.items()
                if k not in ("power_w", "time_s", "volume_ml")
            },
            **values,
        }
        if params != zone.parameters:
            self.scene.execute(SetField(zone.id, "parameters", params, text="Zone settings"))

    def _update_zones(self) -> None:
        """Recompute every zone and the plan's evaluation off the GUI thread."""
        zones = self.scene.nodes_of(ZoneNode)
        if self.planning is None or not zones:
            self._show_zones(None)
            return
        if self._zone_task is not None and self._zone_task.running:
            self._zone_timer.start()  # one computation at a time: try again shortly
            return
        from guideplan.model.treatment import evaluate_scene

        scene, catalog = self.scene, self.catalog

        def task(progress, cancel):
            return evaluate_scene(scene, catalog)

        self._zone_task = run_task(self, task, self._show_zones, "Zones", show_progress=False)

    def _show_zones(self, plan) -> None:
        volume = self.planning.volume if self.planning is not None else None
        array = None
        if plan is not None and volume is not None:
            array = np.zeros(volume.array.shape, dtype=np.uint8)
            for outcome in plan.outcomes:
                if outcome.zone is None:
                    continue
                value = 2 if outcome.cement is not None else 1
                array[outcome.zone.box][outcome.zone.mask] = value
        for name, widget in self.slice_widgets.items():
            layer = self.zone_layers.get(name)
            if layer is None:
                layer = self.zone_layers[name] = LabelLayer(widget.slice_view)
            layer.set_labels(
                None if array is None else volume.with_array(array), self.ZONE_COLOURS, 0.35
            )
            layer.modified()
        renderer = self.view3d.view3d.renderer
        for actor in self._zone_actors:
            renderer.RemoveActor(actor)
        self._zone_actors = []
        if array is not None and array.any():
            for label, poly in label_surfaces(volume.with_array(array), [1, 2]).items():
                actor = surface_actor(poly, self.ZONE_COLOURS[label], 0.35)
                renderer.AddActor(actor)
                self._zone_actors.append(actor)
        errors = [o.error for o in (plan.outcomes if plan else []) if o.error]
        self.treatment_panel.show_evaluation(plan, errors[0] if errors else None)
        zone = self._zone_of_current()
        self.treatment_panel.show_zone(zone.parameters if zone else None)
        self.render_all()
