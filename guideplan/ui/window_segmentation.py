"""The window's segmentation actions: label map, growing (and re-growing with an adjusted
range), threshold in a box or sphere, brush, label operations, anatomy, label display,
surfaces; import and export live in :mod:`guideplan.ui.segment_io_actions`.

A mixin of MainWindow, kept apart so that each part of the window reads on its own.
Every label edit is a :class:`~guideplan.model.label_commands.LabelEdit` (undoable).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PySide6.QtWidgets import QMessageBox

from guideplan.core.errors import GuideplanError
from guideplan.core.labelmap import LabelDiff
from guideplan.model.commands import AddNode, Group, SetField
from guideplan.model.label_commands import LabelEdit, edit_labels, stroke_key
from guideplan.model.nodes import LabelInfo, LabelMapNode
from guideplan.model.treatment import label_findings
from guideplan.processing.segmentation import SegmentationError
from guideplan.render.label_layer import LabelLayer, label_surfaces, surface_actor
from guideplan.ui.segment_io_actions import SegmentIOActions
from guideplan.ui.workers import run_task

#: Label operations that compute a diff from (labels, label id, spacing, window).
#: The label the anatomy finder writes the canal to (resources/labels.json).
CANAL_LABEL = "spinal canal"

_OPERATION_TEXT = {
    "largest": "Keep largest island",
    "islands": "Remove small islands",
    "smooth": "Smooth",
    "grow": "Grow label",
    "shrink": "Shrink label",
    "fill": "Fill between slices",
}


class _GrowEdit(LabelEdit):
    """A grow's label edit; a re-grow merges into it (one undo step) and renames it."""

    def merge(self, other: object) -> bool:
        if not super().merge(other):
            return False
        self.text = getattr(other, "text", self.text)
        return True


@dataclass
class _GrowState:
    """The last grow, so that a re-grow replaces it instead of adding to it."""

    node_id: str
    seed: np.ndarray
    label: int
    on_prior: bool
    serial: int
    #: Net change of this grow (and its re-grows) from the label map before it.
    diff: LabelDiff

    @property
    def merge_key(self) -> tuple:
        return ("grow", self.node_id, self.serial)


class SegmentationActions(SegmentIOActions):
    """Label editing on the planning grid (part of MainWindow)."""

    _grow_state: _GrowState | None = None
    _grow_serial = 0
    _threshold_start: np.ndarray | None = None
    _threshold_end: np.ndarray | None = None
    _surface_by_label: dict | None = None

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

    def _warn(self, exc: GuideplanError) -> None:
        QMessageBox.warning(self, exc.title, str(exc))

    def _tool_prior(self):
        """(prior volume, CT->prior matrix) when the tools read the fused prior, else
        (None, None). Raises when asked for a prior that is not there."""
        from guideplan.processing.segmentation import SegmentationError

        if not self.segment_panel.use_prior.isChecked():
            return None, None
        node, transform = self._prior()
        if node is None or node.volume is None:
            raise SegmentationError(
                "No prior study is fused, so there is nothing to grow or threshold on.",
                hint="Add a prior study (File > Add prior study), or untick 'Use the fused "
                "prior's intensities'.",
            )
        matrix = transform.matrix if transform is not None else np.eye(4)
        return node.volume, np.asarray(matrix, dtype=float)

    # -- region growing ------------------------------------------------------------------
    def grow_lesion(self, seed, grow_range: tuple[float, float] | None = None) -> None:
        """Grow from ``seed`` (a click); with ``grow_range``, re-grow the last grow with
        this range, replacing its result."""
        from guideplan.processing.segmentation import grow_lesion

        volume = self.planning.volume
        regrow = grow_range is not None and self._grow_state is not None
        label = self._grow_state.label if regrow else self.segment_panel.label_id
        try:
            if regrow:
                on_prior = self._grow_state.on_prior
                moving, to_moving = self._tool_prior() if on_prior else (None, None)
                if on_prior and moving is None:  # the box was unticked since
                    self.segment_panel.use_prior.setChecked(True)
                    moving, to_moving = self._tool_prior()
            else:
                moving, to_moving = self._tool_prior()
        except GuideplanError as exc:
            self._warn(exc)
            return
        seed = np.asarray(seed, dtype=float)

        def task(progress, cancel):
            return grow_lesion(
                volume,
                seed,
                grow_range=grow_range,
                moving=moving,
                fixed_to_moving=to_moving,
                progress=progress,
                cancel=cancel,
            )

        def done(result) -> None:
            node = self._labelmap()
            state = self._grow_state if regrow else None
            if state is not None and state.node_id != node.id:
                state = None
            if state is None:
                self._grow_serial += 1
                state = _GrowState(
                    node.id,
                    seed,
                    label,
                    moving is not None,
                    self._grow_serial,
                    LabelDiff.empty(node.array.shape, node.array.dtype),
                )
            diff = _replace_grow(node.array, state.diff, result, label)
            source = " on the prior" if moving is not None else ""
            lo, hi = result.grow_range
            if not diff.is_empty:
                text = f"Grow lesion{source} (HU {lo:.0f}..{hi:.0f})"
                self.scene.execute(_GrowEdit(node.id, diff, text=text, merge_key=state.merge_key))
            state.diff = state.diff.then(diff)
            self._grow_state = state
            self.segment_panel.show_grow_range(lo, hi)
            self.statusBar().showMessage(
                f"Lesion: {result.volume_ml(volume.spacing):.2f} mL "
                f"(HU {lo:.0f}..{hi:.0f}, {result.mode}{source}). Adjust the range in the "
                "panel and re-grow if needed.",
                8000,
            )

        existing = self._labelmap(create=False)
        run_task(
            self,
            task,
            done,
            "Segmenting the lesion",
            guard=self.unchanged(existing.id if existing is not None else None),
            on_stale=lambda: self.stale_notice("Segmenting the lesion"),
        )

    def regrow(self) -> None:
        """Grow again from the last seed with the panel's range (one undo step with it)."""
        if self._grow_state is None or self.planning is None:
            return
        self.grow_lesion(self._grow_state.seed, self.segment_panel.grow_range)

    # -- threshold in a box or a sphere --------------------------------------------------
    def _threshold_point(self, lps: np.ndarray, released: bool) -> None:
        if not released:
            self._threshold_start = self._threshold_end = np.asarray(lps, dtype=float)
            self._pending_points = []
            return
        start, self._threshold_start = self._threshold_start, None
        self._pending_points = []
        if start is None:
            return
        self.threshold_shape(start, np.asarray(lps, dtype=float))

    def _threshold_drag(self, lps: np.ndarray) -> None:
        if self._threshold_start is None:
            return
        self._threshold_end = np.asarray(lps, dtype=float)
        outline = self._threshold_outline(self._threshold_start, self._threshold_end)
        self._pending_points = [np.asarray(p) for p in outline] if outline is not None else []
        self._refresh_views()

    def _threshold_frame(self):
        name = self._focus_view if self._focus_view in self.slice_widgets else "axial"
        return self.slice_widgets[name].slice_view.frame

    def _threshold_outline(self, start: np.ndarray, end: np.ndarray) -> np.ndarray | None:
        """The shape's outline in the view's plane (a preview while dragging)."""
        frame = self._threshold_frame()
        if frame is None:
            return None
        d = end - start
        if self.segment_panel.threshold_shape == "sphere":
            radius = float(np.linalg.norm(d))
            t = np.linspace(0.0, 2.0 * np.pi, 49)
            return start + radius * (np.cos(t)[:, None] * frame.u + np.sin(t)[:, None] * frame.v)
        du, dv = (d @ frame.u) * frame.u, (d @ frame.v) * frame.v
        return np.array([start, start + du, start + du + dv, start + dv, start])

    def threshold_shape(self, start: np.ndarray, end: np.ndarray) -> bool:
        """Label the voxels within the panel's HU range inside the box dragged from
        ``start`` to ``end`` (the box's depth across the view from the panel), or inside
        the sphere centred on ``start`` through ``end``. Returns whether labels changed."""
        from guideplan.processing.segmentation import SegmentationError, threshold_region

        panel = self.segment_panel
        frame = self._threshold_frame()
        if self.planning is None or frame is None:
            return False
        lo, hi = panel.threshold_range
        d = np.asarray(end, float) - np.asarray(start, float)
        try:
            moving, to_moving = self._tool_prior()
            if panel.threshold_shape == "sphere":
                radius = float(np.linalg.norm(d))
                if radius < 0.5:
                    raise SegmentationError(
                        "The sphere is too small.",
                        hint="Press at the centre and drag to the radius you want.",
                    )
                shape = {"sphere_lps": (start, radius)}
                what = f"sphere r {radius:.1f} mm"
            else:
                width, height = abs(d @ frame.u), abs(d @ frame.v)
                if min(width, height) < 0.5:
                    raise SegmentationError(
                        "The box is too thin.",
                        hint="Drag from one corner of the box to the opposite one.",
                    )
                half = 0.5 * panel.box_depth.value() * frame.w
                du, dv = (d @ frame.u) * frame.u, (d @ frame.v) * frame.v
                corners = np.array(
                    [
                        start + a * du + b * dv + c * half
                        for a in (0, 1)
                        for b in (0, 1)
                        for c in (-1, 1)
                    ]
                )
                # an LPS-axis-aligned box: exact in the axial, coronal and sagittal views
                shape = {"box_lps": (corners.min(axis=0), corners.max(axis=0))}
                what = f"box {width:.0f}×{height:.0f}×{panel.box_depth.value():.0f} mm"
            node = self._labelmap()
            diff = threshold_region(
                self.planning.volume,
                node.array,
                panel.label_id,
                lo,
                hi,
                moving=moving,
                fixed_to_moving=to_moving,
                **shape,
            )
        except GuideplanError as exc:
            self._warn(exc)
            self._refresh_views()
            return False
        changed = edit_labels(self.scene, node.id, diff, text=f"Threshold {lo:.0f}..{hi:.0f}")
        self.statusBar().showMessage(
            f"Threshold {lo:.0f}..{hi:.0f} in a {what}: {len(diff)} voxels labelled"
            if changed
            else f"Threshold {lo:.0f}..{hi:.0f}: no voxel in range inside the {what}",
            8000,
        )
        self._refresh_views()
        return changed

    # -- brush -----------------------------------------------------------------------------
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

    # -- operations ----------------------------------------------------------------------
    def label_operation(self, name: str) -> None:
        """A panel operation on the chosen label, computed off the GUI thread."""
        if name == "anatomy":
            self.auto_anatomy()
            return
        if name.startswith("canal_"):
            self._canal_command(name)
            return
        node = self._labelmap()
        if node is None:
            return
        try:
            compute = self._operation(name, node)
        except GuideplanError as exc:
            self._warn(exc)
            return
        self._label_task(node, compute, _OPERATION_TEXT[name])

    def _operation(self, name: str, node: LabelMapNode) -> Callable[[np.ndarray], LabelDiff]:
        from guideplan.processing import segmentation as seg

        panel = self.segment_panel
        label, spacing = panel.label_id, self.planning.volume.spacing
        margin = panel.margin.value()
        if name == "fill":
            axis = self._fill_axis()
            return lambda labels: seg.fill_between_slices(labels, label, spacing, axis=axis)
        if name == "islands":
            min_mm3 = panel.island_ml.value() * 1000.0
            return lambda labels: seg.remove_small_islands(labels, label, min_mm3, spacing)
        return {
            "largest": lambda labels: seg.keep_largest_island(labels, label),
            "smooth": lambda labels: seg.smooth_label(labels, label, 1.0, spacing),
            "grow": lambda labels: seg.grow_shrink(labels, label, margin, spacing),
            "shrink": lambda labels: seg.grow_shrink(labels, label, -margin, spacing),
        }[name]

    def _fill_axis(self) -> int:
        """The array axis across the slices of the view under the mouse (0 = k)."""
        from guideplan.processing.segmentation import SegmentationError

        name = self._focus_view if self._focus_view in self.slice_widgets else "axial"
        frame = self.slice_widgets[name].slice_view.frame
        volume = self.planning.volume
        cosines = np.abs(volume.direction.T @ np.asarray(frame.w, dtype=float))
        ijk = int(np.argmax(cosines))
        if cosines[ijk] < 0.99:
            raise SegmentationError(
                f"The {name} view is oblique to the CT's slices.",
                hint="Fill between slices in an axial, coronal or sagittal view (turn the "
                "needle views off).",
            )
        return 2 - ijk

    def _label_task(
        self, node: LabelMapNode, compute: Callable[[np.ndarray], LabelDiff], text: str
    ) -> None:
        labels = node.array.copy()  # the worker reads a snapshot; edits may go on
        label_name = self.segment_panel.label.currentText()

        def done(diff: LabelDiff) -> None:
            current = self._labelmap(create=False)
            if current is None or current.array is None or current.array.shape != labels.shape:
                return
            # against the array as it is now (equal to the snapshot unless edited since)
            diff = LabelDiff.from_values(current.array, diff.indices, diff.new)
            if edit_labels(self.scene, current.id, diff, text=f"{text} ({label_name})"):
                self.statusBar().showMessage(f"{text}: {len(diff)} voxels changed", 6000)
            else:
                self.statusBar().showMessage(f"{text}: nothing to change in '{label_name}'", 6000)

        run_task(
            self,
            lambda progress, cancel: compute(labels),
            done,
            text,
            guard=self.unchanged(node.id),  # computed on the snapshot: not after an undo
            on_stale=lambda: self.stale_notice(text),
        )

    def auto_anatomy(self) -> None:
        """Bone (cortical, trabecular), spinal canal and body, one undoable step."""
        from guideplan.processing import anatomy

        volume = self.planning.volume
        table = self.label_table

        def task(progress, cancel):
            body = anatomy.body_mask(volume)
            bone = anatomy.bone_labels(volume, body, progress=progress, cancel=cancel)
            found = anatomy.find_canal(volume, bone > 0)
            return body, bone, found.mask, found.finding

        def done(result) -> None:
            body, bone, canal, finding = result
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
            findings = {**(node.findings or {}), CANAL_LABEL: finding.to_json()}
            steps: list = [SetField(node.id, "findings", findings)]
            if not diff.is_empty:
                steps.insert(0, LabelEdit(node.id, diff, text="Automatic anatomy"))
            self.scene.execute(Group(steps, text="Automatic anatomy"))
            self._show_canal_status()
            if not finding.usable:
                self._ask_about_canal(finding)

        existing = self._labelmap(create=False)
        run_task(
            self,
            task,
            done,
            "Finding bone, canal and body",
            guard=self.unchanged(existing.id if existing is not None else None),
            on_stale=lambda: self.stale_notice("Automatic anatomy"),
        )

    # -- the spinal canal's status ---------------------------------------------------------
    def canal_finding(self):
        """The canal's status as planning sees it: the label map's (the user's word or
        the anatomy finder's) before the automatic canal found on loading."""
        from guideplan.core.status import Finding

        node = self._labelmap(create=False)
        saved = (node.findings or {}).get(CANAL_LABEL) if node is not None else None
        if saved is not None:
            try:
                return Finding.from_json(saved)
            except (KeyError, TypeError, ValueError):
                return Finding.uncertain("its saved status could not be read")
        return None if self.path_ctx is None else self.path_ctx.canal_status()

    def _show_canal_status(self) -> None:
        finding = self.canal_finding()
        self.segment_panel.show_canal_status(finding)
        if self.path_ctx is not None and finding is not None and finding.source == "user":
            self.path_ctx.canal_finding = finding  # the user's word reaches the checks
        self._refresh_trajectories()
        self.schedule_zones()

    def _ask_about_canal(self, finding) -> None:
        """Show the canal highlighted and say what to do: uncertain is not safe."""
        canal_id = self.label_table.id_of(CANAL_LABEL)
        self.segment_panel.set_label_visible(canal_id, True)
        self.segment_panel.select_label(canal_id)
        self.show_panel("Segment")
        self.statusBar().showMessage(
            f"Spinal canal {str(finding.status).replace('_', ' ')}: {finding.reason}. "
            "Check it (highlighted), then Confirm, or Draw it.",
            0,
        )

    def _canal_command(self, name: str) -> None:
        """Confirm the canal label, draw it, or mark that there is none near the plan."""
        from guideplan.core.status import Finding, Status

        canal_id = self.label_table.id_of(CANAL_LABEL)
        if name == "canal_draw":
            self.segment_panel.set_label_visible(canal_id, True)
            self.segment_panel.select_label(canal_id)
            self.set_tool("brush")
            self.statusBar().showMessage(
                "Brush the spinal canal on a few axial slices, Fill between slices, then Confirm.",
                0,
            )
            return
        node = self._labelmap()
        if node is None:
            return
        if name == "canal_confirm":
            if not np.any(node.array == canal_id):
                self._warn(
                    SegmentationError(
                        "There is no spinal canal label to confirm.",
                        hint="Run Auto anatomy or draw the canal first (Draw…).",
                    )
                )
                return
            finding, text = Finding.given("user", "confirmed by the user"), "Confirm canal"
        else:
            finding = Finding(
                Status.NOT_FOUND, "the user marked that no canal is near this plan", 1.0, "user"
            )
            text = "No canal near the plan"
        findings = {**(node.findings or {}), CANAL_LABEL: finding.to_json()}
        self.scene.execute(SetField(node.id, "findings", findings, text=text))
        self._show_canal_status()
        self.statusBar().showMessage(f"{text}: the checks now use it.", 6000)

    # -- display ---------------------------------------------------------------------------
    def _label_colours(self, node: LabelMapNode | None) -> dict[int, tuple]:
        """Every label's colour: the table's, then the node's own (imported) labels."""
        colours = {i: tuple(self.label_table[i].color) for i in self.label_table}
        if node is not None:
            for value, info in node.labels.items():
                colours.setdefault(int(value), tuple(info.color))
        return colours

    def _refresh_labels(self, changed: bool = False) -> None:
        node = self._labelmap(create=False)
        if node is None or node.array is None or self.planning is None:
            for layer in self.label_layers.values():
                layer.set_labels(None, {}, 0.0)
            self.segment_panel.show_metrics(None)
            return
        volume = self.planning.volume.with_array(node.array)
        panel = self.segment_panel
        extra = [
            (int(v), info.name, tuple(info.color), True)
            for v, info in node.labels.items()
            if int(v) not in self.label_table
        ]
        if extra:
            panel.set_labels(extra)
        shown = panel.visible_labels()
        colours = {i: c for i, c in self._label_colours(node).items() if i in shown}
        opacity = panel.opacity.value() / 100.0
        for name, widget in self.slice_widgets.items():
            layer = self.label_layers.get(name)
            if layer is None:
                layer = self.label_layers[name] = LabelLayer(widget.slice_view)
            layer.set_labels(volume, colours, opacity, panel.display_mode)
            if changed:
                layer.modified()
        self._show_surfaces()
        if changed:  # an edit: the 3D surfaces follow when the edits settle
            self._surface_timer.start()
            self.renders.request(list(self.slice_widgets))
        else:  # a display change: surfaces may have been shown or hidden too
            self.render_all()

    def _show_surfaces(self) -> None:
        shown = self.segment_panel.visible_labels()
        for label, actor in (self._surface_by_label or {}).items():
            actor.SetVisibility(label in shown)

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
        surface_ids += [int(v) for v in node.labels if int(v) not in table]
        critical = {
            i: table[i].name
            for i in table
            if table[i].kind == "critical" and table[i].name != "skin"
        }
        lesion_id = table.id_of("lesion")
        bone_ids = [table.id_of("cortical bone"), table.id_of("trabecular bone")]
        canal_id = table.id_of("spinal canal")
        colours = self._label_colours(node)

        findings = label_findings(self.scene)

        def task(progress, cancel):
            present = {i: name for i, name in critical.items() if np.any(labels == i)}
            fields = fields_from_labels(labels, present, ct, findings=findings) if present else None
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
                    # automatic structures not segmented (the canal) keep standing in
                    auto = [f for f in self.path_ctx.structures if f.finding.source == "automatic"]
                    have_canal = any(f.is_canal for f in fields)
                    names = {f.name for f in fields}
                    self.path_ctx.structures = fields + [
                        f for f in auto if f.name not in names and not (f.is_canal and have_canal)
                    ]
                self.path_ctx.lesion = lesion
            self.segment_panel.show_canal_status(self.canal_finding())
            self.segment_panel.show_metrics(metrics)
            renderer = self.view3d.view3d.renderer
            for actor in self._surface_actors:
                renderer.RemoveActor(actor)
            self._surface_actors = []
            self._surface_by_label = {}
            for label, poly in surfaces.items():
                lesion_kind = label in table and table[label].kind == "lesion"
                actor = surface_actor(poly, colours[label], 0.9 if lesion_kind else 0.6)
                renderer.AddActor(actor)
                self._surface_actors.append(actor)
                self._surface_by_label[label] = actor
            self._show_surfaces()
            self._refresh_trajectories()
            self.render_all()

        # A result for labels edited (or undone) since is dropped: the edit that made it
        # stale has started the surface timer again.
        run_task(
            self,
            task,
            done,
            "Updating structures",
            show_progress=False,
            guard=self.unchanged(node.id),
        )


def _replace_grow(array: np.ndarray, previous: LabelDiff, result, label: int) -> LabelDiff:
    """The diff that takes back ``previous`` (a grow's net change, where its voxels are
    still as it left them) and paints ``result`` instead: a re-grow replaces, never adds."""
    if previous.is_empty:
        return result.to_diff(array, label)
    still = array.ravel()[previous.indices] == previous.new
    back = LabelDiff.from_values(array, previous.indices[still], previous.old[still])
    back.apply(array)  # briefly, on the GUI thread: the new grow is painted over this
    try:
        new = result.to_diff(array, label)
    finally:
        back.revert(array)
    return back.then(new)
