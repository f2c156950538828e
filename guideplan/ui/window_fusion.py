"""The window's fusion actions: priors, registration, landmarks, nudges.

A mixin of MainWindow, kept apart so that each part of the window reads on its own.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtWidgets import QFileDialog

from guideplan.core import geometry
from guideplan.core.volume import Volume
from guideplan.model.commands import AddNode, Group, RemoveNode, SetField
from guideplan.model.fusion import (
    add_prior,
    apply_registration,
    nudge_command,
    priors,
    reset_command,
)
from guideplan.model.nodes import LandmarkNode, TransformNode, VolumeNode
from guideplan.render.fusion_layer import FusionLayer
from guideplan.ui.window_cases import volume_source
from guideplan.ui.workers import run_task


class FusionActions:
    """Fusing prior studies with the planning CT (part of MainWindow)."""

    # -- fusion ------------------------------------------------------------------------
    def add_prior_dialog(self) -> None:
        if self.planning is None:
            self.statusBar().showMessage("Open the planning CT first.", 5000)
            return
        path = QFileDialog.getExistingDirectory(self, "Add a prior study (DICOM folder)")
        if path:
            self.add_prior_from(Path(path))

    def add_prior_from(self, path: Path) -> None:
        """Load a prior series (asking which if several) and add it to the plan."""
        self.load_series_from(path, self._add_prior_volume, "Loading prior study")

    def _add_prior_volume(self, volume: Volume) -> None:
        description = volume.meta.get("description") or "prior"
        modality = volume.modality or ""
        # 'CT abdomen portal venous', not 'CT CT abdomen portal venous'
        starts = description.upper().startswith(modality.upper())
        name = description if modality and starts else f"{modality} {description}".strip()
        node, _ = add_prior(self.scene, volume, name, source=volume_source(volume))
        self.active_prior = node.id
        self._refresh_fusion()

    def select_prior(self, node_id: str) -> None:
        self.active_prior = node_id
        self._refresh_fusion()

    def _prior(self) -> tuple[VolumeNode | None, TransformNode | None]:
        pairs = priors(self.scene)
        for node, transform in pairs:
            if node.id == self.active_prior:
                return node, transform
        if pairs:
            self.active_prior = pairs[-1][0].id
            return pairs[-1]
        return None, None

    def _refresh_fusion(self) -> None:
        """Show the active prior in every slice view, as its display properties say."""
        node, transform = self._prior()
        self.fusion_panel.show_priors(
            [(n.id, n.name) for n, _ in priors(self.scene)], self.active_prior
        )
        if node is None or node.volume is None:
            for layer in self.fusion_layers.values():
                layer.remove()
            self.fusion_layers = {}
            self._flicker.stop()
            self.render_all()
            return
        matrix = transform.matrix if transform is not None else np.eye(4)
        for name, widget in self.slice_widgets.items():
            layer = self.fusion_layers.get(name)
            if layer is None:
                layer = self.fusion_layers[name] = FusionLayer(widget.slice_view)
            if layer.volume is not node.volume:
                layer.set_volume(node.volume, matrix)
            layer.set_transform(matrix)
            layer.apply_display(node.display)
        self.fusion_panel.show_display(node.display, transform.metric if transform else None)
        if node.display.window is None:  # the layer's modality default is in use
            layer = self.fusion_layers["axial"]
            self.fusion_panel.show_window_level(layer.window, layer.level)
        if node.display.fusion == "flicker":
            self._flicker.start()
        else:
            self._flicker.stop()
        self.render_all()

    def _flicker_step(self) -> None:
        for layer in self.fusion_layers.values():
            layer.toggle()
        self.render_all()

    def _set_prior_display(self, field: str, value) -> None:
        node, _ = self._prior()
        if node is not None and self.scene.get_field(node.id, field) != value:
            self.scene.execute(SetField(node.id, field, value, text="Fusion display"))

    def register_prior(self, mode: str, local: bool) -> None:
        node, transform = self._prior()
        if node is None or transform is None or self.planning is None:
            self.statusBar().showMessage("Add a prior study first.", 5000)
            return
        from guideplan.processing.registration import register

        fixed, moving = self.planning.volume, node.volume
        mask = (*map(float, self.cursor), 40.0) if local else None
        transform_id = transform.id
        pairs = self.landmark_pairs()
        landmarks = pairs if len(pairs) >= 3 else None
        only = landmarks is not None and self.fusion_panel.landmarks_only.isChecked()

        rigid = mask if mode == "deformable" else None  # keep the treated bone rigid

        def task(progress, cancel):
            return register(
                fixed,
                moving,
                mode,
                mask_lps=mask,
                progress=progress,
                cancel=cancel,
                landmarks=landmarks,
                init="landmarks" if landmarks is not None else "auto",
                refine=not only,
                rigid_region=rigid,
            )

        def done(result) -> None:
            self.scene.execute(apply_registration(transform_id, result))
            self.statusBar().showMessage(
                f"Registered ({result.method}, {result.mode}) in {result.wall_s:.1f} s", 8000
            )

        run_task(
            self,
            task,
            done,
            "Registering prior study",
            guard=self.unchanged(transform_id, node.id),  # not after an undo or a nudge
            on_stale=lambda: self.stale_notice("Registration"),
        )

    def _landmark_nodes(self, create: bool = False):
        """(CT landmarks, prior landmarks) of the active prior: matched by index."""
        node, _ = self._prior()
        if node is None or self.planning is None:
            return None, None
        found = {n.volume_id: n for n in self.scene.nodes_of(LandmarkNode)}
        fixed, moving = found.get(self.planning.id), found.get(node.id)
        if create and (fixed is None or moving is None):
            fixed = fixed or LandmarkNode(name="CT landmarks", volume_id=self.planning.id)
            moving = moving or LandmarkNode(name=f"{node.name} landmarks", volume_id=node.id)
            fixed.display.color, moving.display.color = (0.2, 1.0, 1.0), (1.0, 0.3, 1.0)
            adds = [AddNode(n) for n in (fixed, moving) if n.id not in self.scene]
            self.scene.execute(Group(adds, text="Landmarks"))
        return fixed, moving

    def landmark_pairs(self) -> list[tuple[tuple, tuple]]:
        fixed, moving = self._landmark_nodes()
        if fixed is None or moving is None:
            return []
        return list(zip(fixed.points, moving.points, strict=False))

    def add_landmark(self, lps) -> None:
        """Odd clicks: a CT point; even clicks: the same feature on the fused prior, stored
        in the prior's own coordinates (through the current transform)."""
        node, transform = self._prior()
        if node is None or transform is None:
            self.statusBar().showMessage("Add a prior study first.", 5000)
            return
        fixed, moving = self._landmark_nodes(create=True)
        point = tuple(float(v) for v in lps)
        if len(fixed.points) <= len(moving.points):
            self.scene.execute(
                SetField(fixed.id, "points", [*fixed.points, point], text="CT landmark")
            )
        else:
            mapped = geometry.apply_affine(transform.matrix, np.asarray(point))
            self.scene.execute(
                SetField(
                    moving.id,
                    "points",
                    [*moving.points, tuple(float(v) for v in mapped)],
                    text="Prior landmark",
                )
            )
        self.statusBar().showMessage(f"{len(self.landmark_pairs())} landmark pair(s)", 4000)

    def clear_landmarks(self) -> None:
        fixed, moving = self._landmark_nodes()
        commands = [RemoveNode(n.id) for n in (fixed, moving) if n is not None]
        if commands:
            self.scene.execute(Group(commands, text="Clear landmarks"))

    def reset_fusion(self) -> None:
        _, transform = self._prior()
        if transform is not None:
            self.scene.execute(reset_command(self.scene, transform.id))

    def export_tfm(self) -> None:
        _, transform = self._prior()
        if transform is None:
            return
        path, _ = QFileDialog.getSaveFileName(
            self, "Export transform", "prior.tfm", "ITK transform (*.tfm)"
        )
        if path:
            from guideplan.processing.registration import save_tfm

            save_tfm(transform.matrix, path)
            self.statusBar().showMessage(f"Transform written to {path}", 5000)

    def nudge_prior(self, view: str, right: int, up: int, rotate: bool) -> bool:
        """Move (1 mm) or turn (1°) the active prior in a view's plane; one undo step
        per series of nudges."""
        _, transform = self._prior()
        widget = self.slice_widgets.get(view)
        if transform is None or widget is None or widget.slice_view.frame is None:
            return False
        frame = widget.slice_view.frame
        if rotate:
            axis = frame.w * (right or up)
            command = nudge_command(
                self.scene, transform.id, rotation_deg=tuple(axis), center=tuple(self.cursor)
            )
        else:
            move = frame.u * right + frame.v * up
            command = nudge_command(self.scene, transform.id, translation_mm=tuple(move))
        self.scene.execute(command)
        return True

    def _drag_prior(self, view: str, right_mm: float, up_mm: float, finished: bool) -> None:
        """Ctrl+drag in a slice view moves the fused prior with the mouse (one undo step)."""
        if finished:
            self.scene.history.seal()
            return
        _, transform = self._prior()
        widget = self.slice_widgets.get(view)
        if transform is None or widget is None or widget.slice_view.frame is None:
            return
        frame = widget.slice_view.frame
        move = frame.u * right_mm + frame.v * up_mm
        self.scene.execute(nudge_command(self.scene, transform.id, translation_mm=tuple(move)))
