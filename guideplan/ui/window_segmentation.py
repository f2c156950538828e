"""The window's segmentation actions: label map, growing, brush, anatomy, surfaces.

A mixin of MainWindow, kept apart so that each part of the window reads on its own.
"""

from __future__ import annotations

import numpy as np

from guideplan.model.commands import AddNode
from guideplan.model.label_commands import edit_labels, stroke_key
from guideplan.model.nodes import LabelInfo, LabelMapNode
from guideplan.render.label_layer import LabelLayer, label_surfaces, surface_actor
from guideplan.ui.workers import run_task


class SegmentationActions:
    """Label editing on the planning grid (part of MainWindow)."""

    # -- segmentation ------------------------------------------------------------------
    def _labelmap(self, create: bool = True) -> LabelMapNode | None:
        """The plan's label map on the planning grid (created, undoably, when needed)."""
        for node in self.scene.nodes_of(LabelMapNode):
            if self.planning is not None and node.reference_id == self.planning.id:
                return node
        if not create or self.planning is None or self.planning.volume is None:
            return None
        node = LabelMapNode(
            name="Segmentation",
            array=np.zeros(self.planning.volume.array.shape, dtype=np.uint8),
            reference_id=self.planning.id,
            labels={
                i: LabelInfo(self.label_table[i].name, tuple(self.label_table[i].color))
                for i in self.label_table
            },
        )
        node.display.opacity = 0.45
        self.scene.execute(AddNode(node, text="New segmentation"))
        return node

    def grow_lesion(self, seed) -> None:
        from guideplan.processing.segmentation import grow_lesion

        volume = self.planning.volume
        label = self.segment_panel.label_id

        def task(progress, cancel):
            return grow_lesion(volume, seed, progress=progress, cancel=cancel)

        def done(result) -> None:
            node = self._labelmap()
            diff = result.to_diff(node.array, label)
            edit_labels(self.scene, node.id, diff, text="Grow lesion")
            self.statusBar().showMessage(
                f"Lesion: {result.volume_ml(volume.spacing):.2f} mL "
                f"(HU {result.grow_range[0]:.0f}..{result.grow_range[1]:.0f}, {result.mode})",
                8000,
            )

        run_task(self, task, done, "Segmenting the lesion")

    def _brush(self, lps: np.ndarray) -> None:
        from guideplan.processing.segmentation import paint

        node = self._labelmap()
        if node is None:
            return
        view = self.slice_widgets.get(self._focus_view)
        normal = None
        if not self.segment_panel.ball.isChecked() and view is not None and view.slice_view.frame:
            normal = view.slice_view.frame.w
        diff = paint(
            self.planning.volume,
            node.array,
            lps,
            self.segment_panel.size.value(),
            self.segment_panel.label_id,
            normal=normal,
            end_lps=self._last_brush,
            erase=self.tool == "erase",
        )
        self._last_brush = np.asarray(lps, dtype=float)
        edit_labels(
            self.scene,
            node.id,
            diff,
            text=self.tool.capitalize(),
            merge_key=stroke_key(node.id, self.tool, self._stroke),
        )

    def label_operation(self, name: str) -> None:
        from guideplan.processing import segmentation as seg

        node = self._labelmap()
        if node is None:
            return
        label, spacing = self.segment_panel.label_id, self.planning.volume.spacing
        if name == "anatomy":
            self.auto_anatomy()
            return
        diff = {
            "largest": lambda: seg.keep_largest_island(node.array, label),
            "smooth": lambda: seg.smooth_label(node.array, label, 1.0, spacing),
            "grow1": lambda: seg.grow_shrink(node.array, label, 1.0, spacing),
            "shrink1": lambda: seg.grow_shrink(node.array, label, -1.0, spacing),
        }[name]()
        edit_labels(self.scene, node.id, diff, text=name.capitalize())

    def auto_anatomy(self) -> None:
        """Bone (cortical, trabecular), spinal canal and body, one undoable step."""
        from guideplan.core.labelmap import LabelDiff
        from guideplan.processing import anatomy

        volume = self.planning.volume
        table = self.label_table

        def task(progress, cancel):
            body = anatomy.body_mask(volume)
            bone = anatomy.bone_labels(volume, body, progress=progress, cancel=cancel)
            canal = anatomy.spinal_canal(volume, bone > 0)
            return body, bone, canal

        def done(result) -> None:
            body, bone, canal = result
            node = self._labelmap()
            target = node.array.copy()
            target[(body > 0) & (target == 0)] = table.id_of("body")
            target[bone == anatomy.CORTICAL] = table.id_of("cortical bone")
            target[bone == anatomy.TRABECULAR] = table.id_of("trabecular bone")
            target[canal > 0] = table.id_of("spinal canal")
            lesion = node.array == table.id_of("lesion")
            target[lesion] = table.id_of("lesion")  # never overwrite the lesion
            changed = np.flatnonzero(node.array.ravel() != target.ravel())
            diff = LabelDiff.from_values(node.array, changed, target.ravel()[changed])
            edit_labels(self.scene, node.id, diff, text="Automatic anatomy")

        run_task(self, task, done, "Finding bone, canal and body")

    def _refresh_labels(self, changed: bool = False) -> None:
        node = self._labelmap(create=False)
        if node is None or node.array is None or self.planning is None:
            for layer in self.label_layers.values():
                layer.set_labels(None, {}, 0.0)
            self.segment_panel.show_metrics(None)
            return
        volume = self.planning.volume.with_array(node.array)
        # Fill what planning is about (lesion, structures to spare, cement); bone and body
        # labels stay in the plan but would tint the whole image.
        shown = ("lesion", "critical", "other")
        colours = {
            i: tuple(self.label_table[i].color)
            for i in self.label_table
            if self.label_table[i].kind in shown and self.label_table[i].name != "body"
        }
        opacity = self.segment_panel.opacity.value() / 100.0
        for name, widget in self.slice_widgets.items():
            layer = self.label_layers.get(name)
            if layer is None:
                layer = self.label_layers[name] = LabelLayer(widget.slice_view)
            layer.set_labels(volume, colours, opacity)
            if changed:
                layer.modified()
        if changed:
            self._surface_timer.start()
        self.render_all()

    def _update_surfaces(self) -> None:
        """After edits settle: 3D surfaces, structures for the needle checks and the
        lesion's metrics, all computed off the GUI thread (a brush stroke stays fluid)."""
        node = self._labelmap(create=False)
        if node is None or self.planning is None:
            return
        from guideplan.planning.structures import fields_from_labels
        from guideplan.processing.lesion_metrics import lesion_metrics

        ct = self.planning.volume
        labels = node.array.copy()
        table = self.label_table
        surface_ids = [
            i for i in table if table[i].kind in ("lesion", "critical") and table[i].name != "skin"
        ]
        critical = {
            i: table[i].name
            for i in table
            if table[i].kind == "critical" and table[i].name != "skin"
        }
        lesion_id = table.id_of("lesion")
        bone_ids = [table.id_of("cortical bone"), table.id_of("trabecular bone")]
        canal_id = table.id_of("spinal canal")

        def task(progress, cancel):
            present = {i: name for i, name in critical.items() if np.any(labels == i)}
            fields = fields_from_labels(labels, present, ct) if present else None
            lesion = labels == lesion_id
            metrics = None
            if lesion.any():
                bone = np.isin(labels, bone_ids)
                canal = labels == canal_id
                metrics = lesion_metrics(
                    ct, lesion, bone if bone.any() else None, canal if canal.any() else None
                )
            surfaces = label_surfaces(ct.with_array(labels), surface_ids)
            return fields, (lesion if lesion.any() else None), metrics, surfaces

        def done(result) -> None:
            fields, lesion, metrics, surfaces = result
            if self.path_ctx is not None and self.path_ctx.volume is ct:
                if fields is not None:
                    self.path_ctx.structures = fields
                self.path_ctx.lesion = lesion
            self.segment_panel.show_metrics(metrics)
            renderer = self.view3d.view3d.renderer
            for actor in self._surface_actors:
                renderer.RemoveActor(actor)
            self._surface_actors = []
            for label, poly in surfaces.items():
                entry = table[label]
                actor = surface_actor(poly, entry.color, 0.9 if entry.kind == "lesion" else 0.6)
                renderer.AddActor(actor)
                self._surface_actors.append(actor)
            self._refresh_trajectories()
            self.render_all()

        run_task(self, task, done, "Updating structures", show_progress=False)
