"""The window's trajectory actions: needles, handles, needle views, suggestions.

A mixin of MainWindow, kept apart so that each part of the window reads on its own.
"""

from __future__ import annotations

import copy
from typing import ClassVar

import numpy as np

from guideplan.core.volume import Volume
from guideplan.model.commands import AddNode, SetField
from guideplan.model.nodes import TrajectoryNode
from guideplan.model.treatment import delete_trajectory_command
from guideplan.planning.path_analysis import PathContext, analyze_path
from guideplan.planning.suggest import position_from_dicom
from guideplan.ui.views import SliceWidget
from guideplan.ui.workers import run_task

NEEDLE_COLOURS = [(0.2, 0.9, 0.4), (1.0, 0.5, 0.2), (0.8, 0.4, 1.0), (0.3, 0.8, 1.0)]

HANDLE_PICK_PX = 10.0


class TrajectoryActions:
    """Needle paths of the plan (part of MainWindow)."""

    # -- trajectories ------------------------------------------------------------------
    def _add_trajectory(self, entry, target) -> None:
        count = len(self.scene.nodes_of(TrajectoryNode))
        node = TrajectoryNode(
            name=f"Needle {count + 1}",
            entry=tuple(float(v) for v in entry),
            target=tuple(float(v) for v in target),
            device_id=self.catalog.default_needle().id,
        )
        node.display.color = NEEDLE_COLOURS[count % len(NEEDLE_COLOURS)]
        self.scene.execute(AddNode(node))
        self.current_trajectory = node.id
        self.set_tool("navigate")
        self._refresh_trajectories()

    def _current(self) -> TrajectoryNode | None:
        node = self.scene.find(self.current_trajectory)
        return node if isinstance(node, TrajectoryNode) else None

    def select_trajectory(self, node_id: str) -> None:
        self.current_trajectory = node_id
        self._refresh_trajectories()
        self._refresh_views()

    def delete_current_trajectory(self) -> None:
        node = self._current()
        if node is not None:  # with its zone (or its place among a zone's probes)
            self.scene.execute(delete_trajectory_command(self.scene, node.id))

    def _set_device(self, device_id: str) -> None:
        node = self._current()
        if node is not None and device_id and node.device_id != device_id:
            self.scene.execute(SetField(node.id, "device_id", device_id, text="Change device"))

    def rename_trajectory(self, node_id: str, name: str) -> None:
        node = self.scene.find(node_id)
        if isinstance(node, TrajectoryNode) and name and node.name != name:
            self.scene.execute(SetField(node_id, "name", name, text=f"Rename {node.name}"))

    def set_trajectory_colour(self, node_id: str, rgb) -> None:
        node = self.scene.find(node_id)
        colour = tuple(float(c) for c in rgb[:3])
        if isinstance(node, TrajectoryNode) and tuple(node.display.color) != colour:
            self.scene.execute(
                SetField(node_id, "display.color", colour, text=f"Colour of {node.name}")
            )

    def _set_locked(self, locked: bool) -> None:
        node = self._current()
        if node is not None and node.locked != locked:
            self.scene.execute(SetField(node.id, "locked", locked, text="Lock trajectory"))

    def _pick_handle(self, widget: SliceWidget, pos) -> tuple[str, str] | None:
        """(node id, 'entry'|'target') of an unlocked needle end under the mouse."""
        sv = widget.slice_view
        # The trajectory tool places new points (a second probe may go next to a needle).
        if sv.frame is None or self.tool != "navigate":
            return None
        x, y = widget._display_xy(pos)
        tolerance = max(sv.step_mm, 0.5) * 0.6
        best, best_d = None, HANDLE_PICK_PX * widget.canvas.devicePixelRatioF()
        for node in self.scene.nodes_of(TrajectoryNode):
            if node.locked or not node.display.visible:
                continue
            for which in ("entry", "target"):
                point = np.asarray(getattr(node, which), dtype=float)
                if abs(sv.frame.to_plane(point)[2] - sv.depth) > tolerance:
                    continue
                dx, dy = sv.lps_to_display(point)
                d = float(np.hypot(dx - x, dy - y))
                if d < best_d:
                    best, best_d = (node.id, which), d
        return best

    def _on_handle_dragged(self, handle, lps, finished: bool) -> None:
        if finished:
            self.scene.history.seal()
            return
        node_id, which = handle
        self.current_trajectory = node_id
        self.scene.execute(
            SetField(
                node_id,
                which,
                tuple(float(v) for v in lps),
                text=f"Move {which}",
                merge_key=("drag", node_id, which),
            )
        )

    def _build_path_context(self, volume: Volume) -> None:
        """Readouts work at once on the CT; structures found automatically arrive later."""
        self.path_ctx = PathContext(volume)

        def task(progress, cancel):
            from guideplan.planning.structures import auto_structures_with_status

            return auto_structures_with_status(volume)

        def done(result) -> None:
            structures, canal = result
            if self.path_ctx is not None and self.path_ctx.volume is volume:
                self.path_ctx.structures = structures
                self.path_ctx.canal_finding = canal
                self._show_canal_status()  # the panel, then the needles' and zones' checks

        run_task(self, task, done, "Finding structures", show_progress=False)

    def _refresh_trajectories(self) -> None:
        nodes = self.scene.nodes_of(TrajectoryNode)
        if self.current_trajectory not in {n.id for n in nodes}:
            self.current_trajectory = nodes[-1].id if nodes else None
        self.trajectory_panel.set_trajectories(
            [(n.id, n.name) for n in nodes],
            self.current_trajectory,
            {n.id: tuple(n.display.color) for n in nodes},
        )
        node = self._current()
        report = None
        if node is not None and self.path_ctx is not None and node.entry != node.target:
            device = (
                self.catalog.get(node.device_id)
                if node.device_id in self.catalog
                else self.catalog.default_needle()
            )
            report = analyze_path(self.path_ctx, node.entry, node.target, device)
        self.trajectory_report = report
        if self.needle_views:
            self._apply_needle_views()
        self.trajectory_panel.show_report(
            report, node.device_id if node else "", node.locked if node else False
        )
        needles = []
        for n in nodes:
            if not n.display.visible:
                continue
            device = self.catalog.get(n.device_id) if n.device_id in self.catalog else None
            radius = device.radius_mm if device else 0.6
            needles.append(
                (n.entry, n.target, tuple(n.display.color), radius, n.id == self.current_trajectory)
            )
        self.view3d.view3d.set_needles(needles)

    NEEDLE_VIEW_NAMES: ClassVar[dict[str, str]] = {
        "axial": "Needle plane 1",
        "coronal": "Needle plane 2",
        "sagittal": "Bull's-eye",
    }

    def set_needle_views(self, on: bool) -> None:
        """Replace the three standard views by the current needle's views (and back)."""
        if on and self._current() is None:
            self.statusBar().showMessage("Place or select a trajectory first.", 5000)
            self.act_needle_views.setChecked(False)
            return
        self.needle_views = on
        if on:
            node = self._current()
            self.set_cursor(np.asarray(node.target, dtype=float), refresh=False)
        self._apply_needle_views()
        self._refresh_views()

    def _apply_needle_views(self) -> None:
        node = self._current()
        if not self.needle_views or node is None or node.entry == node.target:
            for widget in self.slice_widgets.values():
                if widget.slice_view.custom_axes:
                    widget.slice_view.set_plane_axes(None, cursor=self.cursor)
        else:
            axes = needle_view_axes(np.asarray(node.entry, float), np.asarray(node.target, float))
            for name, (u, v) in axes.items():
                self.slice_widgets[name].slice_view.set_plane_axes(u, v, cursor=self.cursor)
        # The overlays (priors, label maps, zones) follow the new planes.
        for layer in (
            *self.fusion_layers.values(),
            *self.label_layers.values(),
            *self.zone_layers.values(),
        ):
            layer.update()

    def _use_suggestion(self, entry) -> None:
        node = self._current()
        if node is not None and not node.locked:
            self.scene.execute(SetField(node.id, "entry", tuple(entry), text="Suggested entry"))

    def frame_path(self) -> None:
        """Centre every view on the current path's midpoint, zoomed to show all of it."""
        node = self._current()
        if node is None:
            return
        entry, target = np.asarray(node.entry, float), np.asarray(node.target, float)
        self.set_cursor((entry + target) / 2.0)
        for widget in self.slice_widgets.values():
            sv = widget.slice_view
            sv.reset_camera()
            if sv.frame is None:
                continue
            a, b = sv.frame.to_plane(entry)[:2], sv.frame.to_plane(target)[:2]
            centre = (a + b) / 2.0
            camera = sv.renderer.GetActiveCamera()
            fx, fy, _ = camera.GetFocalPoint()
            sv.pan(fx - centre[0], fy - centre[1])
            span = float(np.max(np.abs(b - a))) / 2.0 + 20.0
            camera.SetParallelScale(max(span, 30.0))
        self.render_all()

    def suggest_entries(self) -> None:
        node = self._current()
        if node is None or self.path_ctx is None:
            self.statusBar().showMessage("Place a trajectory (its target) first.", 5000)
            return
        from guideplan.planning.suggest import suggest_entries

        chosen = self.trajectory_panel.position.currentData()
        if chosen == "any":
            position = None
        else:
            position = chosen or position_from_dicom(
                self.planning.volume.meta.get("patient_position", "")
            )
        device = (
            self.catalog.get(node.device_id)
            if node.device_id in self.catalog
            else self.catalog.default_needle()
        )
        # A copy: the window replaces the context's structures and lesion meanwhile.
        ctx, target, node_id = copy.copy(self.path_ctx), node.target, node.id
        ctx.structures = list(ctx.structures)

        def task(progress, cancel):
            return suggest_entries(ctx, target, device, position=position, progress=progress)

        def done(result) -> None:
            ranked = result.ranked
            self.view3d.view3d.set_skin_scores(
                np.array([c.entry for c in result.candidates]),
                np.array([c.score for c in result.candidates]),
            )
            shown = list(result.best_per_route().values())
            shown += [c for c in ranked[:5] if c not in shown]
            self.trajectory_panel.show_suggestions(shown)
            self.render_all()
            if not ranked:
                side = f"the {position} patient's reachable skin" if position else "the skin"
                self.statusBar().showMessage(
                    f"No safe straight path found from {side}. Check the patient position "
                    "in the Needles tab (the images' position is used by default).",
                    12000,
                )
                return
            best = ranked[0]
            self.scene.execute(
                SetField(
                    node_id, "entry", tuple(float(v) for v in best.entry), text="Suggested entry"
                )
            )
            routes = ", ".join(f"{k} {c.score:.2f}" for k, c in result.best_per_route().items())
            self.statusBar().showMessage(
                f"{len(ranked)} possible paths; best {best.route} (score {best.score:.2f}). "
                f"Routes: {routes}",
                15000,
            )

        run_task(
            self,
            task,
            done,
            "Suggesting entry points",
            guard=self.unchanged(node_id),  # the needle may have moved or gone since
            on_stale=lambda: self.stale_notice("Suggesting entry points"),
        )

    def pick_in_3d(self, x: float, y: float) -> None:
        """A click on the patient in 3D: with the trajectory tool, the skin entry of the
        needle being placed (or of the selected one); otherwise the crosshair goes to the
        skin point, and every slice view with it."""
        if self.planning is None or self.path_ctx is None:
            return
        if self.body_coarse is None:
            self.statusBar().showMessage("3D picking is ready once the 3D view is built.", 4000)
            return
        from guideplan.planning.skin_pick import first_skin_point

        origin, direction = self.view3d.view3d.ray_at(x, y)
        point = first_skin_point(
            self.planning.volume,
            self.body_coarse,
            origin,
            direction,
            self.path_ctx.body_min_hu,
        )
        if point is None:
            self.statusBar().showMessage("No skin under the mouse in the 3D view.", 4000)
            return
        entry = tuple(float(v) for v in point)
        node = self._current()
        if self.tool == "trajectory" and len(self._pending_points) == 1:
            target = self._pending_points[0]
            self._pending_points = []
            self._add_trajectory(entry, target)
        elif self.tool == "trajectory" and node is not None and not node.locked:
            self.scene.execute(SetField(node.id, "entry", entry, text="Entry on the skin"))
        else:
            self.set_cursor(point)
            return
        self.statusBar().showMessage(
            "Entry placed on the skin: L/R {:.1f}  P/A {:.1f}  S/I {:.1f} mm".format(*entry), 6000
        )

    def nudge_needle(self, view: str, which: str, right: int, up: int) -> bool:
        """Move the selected needle's entry (or target) by 1 mm in a view's plane; a
        series of nudges is one undo step."""
        node = self._current()
        widget = self.slice_widgets.get(view)
        if node is None or node.locked or widget is None or widget.slice_view.frame is None:
            return False
        frame = widget.slice_view.frame
        point = np.asarray(getattr(node, which), dtype=float) + frame.u * right + frame.v * up
        self.scene.execute(
            SetField(
                node.id,
                which,
                tuple(float(v) for v in point),
                text=f"Nudge {which}",
                merge_key=("nudge", node.id, which),
            )
        )
        return True


def needle_view_axes(entry: np.ndarray, target: np.ndarray) -> dict[str, tuple]:
    """(screen right, screen up) of the three needle views, in LPS.

    The two in-plane views contain the needle, entry at the top; the first is the one
    closest to the axial plane (the patient's left-right axis stays on screen). The
    bull's-eye view looks down the needle: scrolling forward moves toward the tip.
    """
    d = (target - entry) / np.linalg.norm(target - entry)
    ref = np.array([1.0, 0.0, 0.0]) if abs(d[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    u1 = ref - (ref @ d) * d
    u1 /= np.linalg.norm(u1)
    u2 = np.cross(d, u1)
    return {"axial": (u1, -d), "coronal": (u2, -d), "sagittal": (u1, u2)}
