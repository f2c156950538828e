"""The workstation window: four views, the plan, menus, loading, saving, recovery.

The window owns no computation: it calls io/model/render functions and turns gestures
into plan commands. Navigation state (cursor, zoom, pan, layout) is view state; what
belongs to the plan (window/level of a volume, measurements, everything later tools
add) is edited through commands, so Ctrl+Z undoes any of it.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDockWidget,
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QMessageBox,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from guideplan.core import geometry
from guideplan.core.errors import GuideplanError
from guideplan.core.labelmap import load_label_table
from guideplan.core.resources import window_level_presets
from guideplan.core.volume import Volume
from guideplan.io.case_file import is_case
from guideplan.model.case import open_case, save_case
from guideplan.model.commands import AddNode, Group, RemoveNode, SetField, SetFields
from guideplan.model.fusion import (
    add_prior,
    apply_registration,
    nudge_command,
    priors,
    reset_command,
)
from guideplan.model.label_commands import edit_labels, stroke_key
from guideplan.model.nodes import (
    LabelInfo,
    LabelMapNode,
    LandmarkNode,
    MeasurementNode,
    Node,
    TrajectoryNode,
    TransformNode,
    VolumeNode,
    ZoneNode,
)
from guideplan.model.recovery import (
    Autosaver,
    RecentCases,
    discard_recovery,
    pending_recoveries,
    recover,
)
from guideplan.model.scene import Scene
from guideplan.planning.devices import load_catalog
from guideplan.planning.path_analysis import PathContext, analyze_path
from guideplan.render.fusion_layer import FusionLayer
from guideplan.render.label_layer import LabelLayer, label_surfaces, surface_actor
from guideplan.render.slice_view import Overlay2D
from guideplan.ui.fusion_panel import FusionPanel
from guideplan.ui.segment_panel import SegmentPanel
from guideplan.ui.trajectory_panel import TrajectoryPanel
from guideplan.ui.treatment_panel import TreatmentPanel
from guideplan.ui.views import SliceWidget, View3DWidget
from guideplan.ui.workers import _ACTIVE, run_task

SLICE_VIEWS = ("axial", "coronal", "sagittal")
LAYOUTS = ("four_up", "one_plus_three", "single")
MEASURE_COLOUR = (1.0, 0.85, 0.2)
NEEDLE_COLOURS = [(0.2, 0.9, 0.4), (1.0, 0.5, 0.2), (0.8, 0.4, 1.0), (0.3, 0.8, 1.0)]
HANDLE_PICK_PX = 10.0
PENDING_COLOUR = (0.4, 0.9, 1.0)


class MainWindow(QMainWindow):
    #: The first volume's slices have been drawn (start-up time is measured to here).
    first_slice_shown = Signal()

    def __init__(self) -> None:
        super().__init__()
        self.setWindowTitle("guideplan")
        self.resize(1500, 950)
        self.setAcceptDrops(True)
        self.scene = Scene()
        self.planning: VolumeNode | None = None
        self.cursor = np.zeros(3)
        self.anonymize = False
        self.tool = "navigate"
        self._pending_points: list[np.ndarray] = []
        self._hover: np.ndarray | None = None
        self._layout = "four_up"
        self._focus_view = "axial"
        self.case_path: Path | None = None
        self._first_slice_reported = False
        self.presets = window_level_presets()
        self.catalog = load_catalog()
        self.path_ctx: PathContext | None = None
        self.current_trajectory: str | None = None
        self.trajectory_report = None
        self.needle_views = False
        self.active_prior: str | None = None
        self.label_layers: dict[str, LabelLayer] = {}
        self.zone_layers: dict[str, LabelLayer] = {}
        self._zone_actors: list = []
        self._zone_timer = QTimer(self)
        self._zone_timer.setSingleShot(True)
        self._zone_timer.setInterval(150)
        self._zone_timer.timeout.connect(self._update_zones)
        self._zone_task = None
        self._stroke = 0
        self._last_brush: np.ndarray | None = None
        self._surface_actors: list = []
        self._surface_timer = QTimer(self)
        self._surface_timer.setSingleShot(True)
        self._surface_timer.setInterval(700)
        self._surface_timer.timeout.connect(self._update_surfaces)
        self.fusion_layers: dict[str, FusionLayer] = {}
        self._flicker = QTimer(self)
        self._flicker.setInterval(600)
        self._flicker.timeout.connect(self._flicker_step)

        self.slice_widgets = {name: SliceWidget(name) for name in SLICE_VIEWS}
        self.view3d = View3DWidget()
        self._build_central()
        self._build_panel()
        self._build_menus()
        self.statusBar().showMessage("Open a DICOM folder (Ctrl+O) or a case.")
        self.readout = QLabel("")
        self.statusBar().addPermanentWidget(self.readout)

        for widget in self.slice_widgets.values():
            widget.cursor_requested.connect(self.set_cursor)
            widget.scrolled.connect(self.set_cursor)
            widget.window_level_dragged.connect(self._drag_window_level)
            widget.hover_lps.connect(self._on_hover)
            widget.hovered.connect(self._on_view_hovered)
            widget.tool_point.connect(self._on_tool_point)
            widget.tool_drag.connect(self._on_tool_drag)
            widget.handle_dragged.connect(self._on_handle_dragged)
            widget.prior_dragged.connect(
                lambda right, up, done, view=widget.view: self._drag_prior(view, right, up, done)
            )
            widget.handle_picker = self._pick_handle
        self.view3d.hovered.connect(self._on_view_hovered)
        self.recent = RecentCases()
        self.autosaver: Autosaver | None = None
        self._connect_scene(self.scene)
        self._autosave_timer = QTimer(self)
        self._autosave_timer.timeout.connect(self._autosave_tick)
        self._autosave_timer.start(1000)
        self._rebuild_recent_menu()
        self._update_actions()

    # -- the plan ----------------------------------------------------------------------
    def _connect_scene(self, scene: Scene, unsaved: bool = False) -> None:
        """Make ``scene`` the window's plan: events, history, autosave."""
        if self.autosaver is not None:
            self.autosaver.discard()
        self.scene = scene
        scene.node_added.connect(lambda n: self._on_scene_change(n, "added"))
        scene.node_removed.connect(lambda n: self._on_scene_change(n, "removed"))
        scene.node_changed.connect(self._on_scene_change)
        scene.history.changed.connect(self._update_actions)
        self.autosaver = Autosaver(scene, case_path=self.case_path, unsaved=unsaved)

    def _autosave_tick(self) -> None:
        if self.autosaver is not None and self.planning is not None:
            self.autosaver.tick()

    def set_scene(self, scene: Scene, case_path: Path | None, unsaved: bool = False) -> None:
        """Show an opened, recovered or new plan."""
        self.case_path = case_path
        self._connect_scene(scene, unsaved=unsaved)
        if unsaved:
            scene.history.mark_dirty()
        planning = [n for n in scene.nodes_of(VolumeNode) if n.role == "planning"]
        self.planning = planning[0] if planning else None
        if self.planning is not None and self.planning.volume is not None:
            self._show_volume(self.planning.volume)
        self._refresh_measurement_list()
        self._refresh_trajectories()
        self.active_prior = None
        self._refresh_fusion()
        self._refresh_labels(changed=True)
        self._update_actions()
        if case_path is not None and not unsaved:
            self.recent.add(case_path)
            self._rebuild_recent_menu()

    # -- construction ------------------------------------------------------------------
    def _build_central(self) -> None:
        self.view_area = QWidget()
        self.view_grid = QGridLayout(self.view_area)
        self.view_grid.setContentsMargins(2, 2, 2, 2)
        self.view_grid.setSpacing(3)
        self.setCentralWidget(self.view_area)
        self.set_layout("four_up")

    def _all_views(self) -> dict[str, QWidget]:
        return {**self.slice_widgets, "3d": self.view3d}

    def set_layout(self, layout: str, focus: str | None = None) -> None:
        """'four_up' (2x2), 'one_plus_three' (one big, three stacked) or 'single'."""
        if layout not in LAYOUTS:
            raise ValueError(layout)
        self._layout = layout
        if focus:
            self._focus_view = focus
        views = self._all_views()
        for widget in views.values():
            self.view_grid.removeWidget(widget)
            widget.hide()
        for row in range(3):
            self.view_grid.setRowStretch(row, 0)
        for col in range(2):
            self.view_grid.setColumnStretch(col, 0)
        if layout == "four_up":
            for (row, col), name in zip(
                [(0, 0), (0, 1), (1, 0), (1, 1)],
                ("axial", "coronal", "sagittal", "3d"),
                strict=True,
            ):
                self.view_grid.addWidget(views[name], row, col)
                views[name].show()
            for i in range(2):
                self.view_grid.setRowStretch(i, 1)
                self.view_grid.setColumnStretch(i, 1)
        elif layout == "one_plus_three":
            main = self._focus_view
            others = [n for n in ("axial", "coronal", "sagittal", "3d") if n != main]
            self.view_grid.addWidget(views[main], 0, 0, 3, 1)
            views[main].show()
            for row, name in enumerate(others):
                self.view_grid.addWidget(views[name], row, 1)
                views[name].show()
                self.view_grid.setRowStretch(row, 1)
            self.view_grid.setColumnStretch(0, 3)
            self.view_grid.setColumnStretch(1, 1)
        else:
            self.view_grid.addWidget(views[self._focus_view], 0, 0)
            views[self._focus_view].show()
            self.view_grid.setRowStretch(0, 1)
            self.view_grid.setColumnStretch(0, 1)
        QTimer.singleShot(0, self.render_all)

    def _build_panel(self) -> None:
        panel = QWidget()
        box = QVBoxLayout(panel)
        box.addWidget(QLabel("<b>Window / level</b>"))
        self.preset_combo = QComboBox()
        self.preset_combo.addItems(list(self.presets))
        self.preset_combo.textActivated.connect(self.apply_preset)
        box.addWidget(self.preset_combo)

        box.addWidget(QLabel("<b>Tools</b>"))
        tools = QHBoxLayout()
        self.tool_buttons: dict[str, QPushButton] = {}
        for name, label in (("navigate", "Navigate"), ("ruler", "Ruler"), ("angle", "Angle")):
            button = QPushButton(label)
            button.setCheckable(True)
            button.clicked.connect(lambda _=False, n=name: self.set_tool(n))
            tools.addWidget(button)
            self.tool_buttons[name] = button
        self.tool_buttons["navigate"].setChecked(True)
        box.addLayout(tools)

        box.addWidget(QLabel("<b>Measurements</b>"))
        self.measure_list = QListWidget()
        box.addWidget(self.measure_list, 1)
        delete = QPushButton("Delete selected")
        delete.clicked.connect(self.delete_selected_measurement)
        box.addWidget(delete)

        self.fusion_panel = FusionPanel()
        self.fusion_panel.add_requested.connect(self.add_prior_dialog)
        self.fusion_panel.prior_selected.connect(self.select_prior)
        self.fusion_panel.display_changed.connect(self._set_prior_display)
        self.fusion_panel.register_requested.connect(self.register_prior)
        self.fusion_panel.reset_requested.connect(self.reset_fusion)
        self.fusion_panel.export_requested.connect(self.export_tfm)
        self.fusion_panel.landmark_tool.connect(lambda: self.set_tool("landmark"))
        self.fusion_panel.landmarks_cleared.connect(self.clear_landmarks)
        box.addWidget(self.fusion_panel)
        self.label_table = load_label_table()
        self.segment_panel = SegmentPanel(self.label_table)
        self.segment_panel.tool_chosen.connect(self.set_tool)
        self.segment_panel.operation.connect(self.label_operation)
        self.segment_panel.opacity_changed.connect(lambda _: self._refresh_labels())
        box.addWidget(self.segment_panel)
        self.trajectory_panel = TrajectoryPanel(self.catalog)
        self.trajectory_panel.new_requested.connect(lambda: self.set_tool("trajectory"))
        self.trajectory_panel.selected.connect(self.select_trajectory)
        self.trajectory_panel.delete_requested.connect(self.delete_current_trajectory)
        self.trajectory_panel.device_chosen.connect(self._set_device)
        self.trajectory_panel.lock_toggled.connect(self._set_locked)
        self.trajectory_panel.suggest_requested.connect(self.suggest_entries)
        self.trajectory_panel.suggestion_chosen.connect(self._use_suggestion)
        box.addWidget(self.trajectory_panel)
        self.treatment_panel = TreatmentPanel(self.catalog)
        self.treatment_panel.add_requested.connect(self.add_zone)
        self.treatment_panel.remove_requested.connect(self.remove_zone)
        self.treatment_panel.parameters_changed.connect(self._set_zone_parameters)
        box.addWidget(self.treatment_panel)
        self.anonymize_box = QCheckBox("Hide patient identity")
        self.anonymize_box.toggled.connect(self.set_anonymize)
        box.addWidget(self.anonymize_box)
        self.info = QLabel("")
        self.info.setWordWrap(True)
        self.info.setTextFormat(Qt.TextFormat.RichText)
        box.addWidget(self.info, 1)
        dock = QDockWidget("Plan", self)
        dock.setObjectName("planDock")
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setWidget(panel)
        scroll.setMinimumWidth(330)
        dock.setWidget(scroll)
        dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
        self.resizeDocks([dock], [300], Qt.Orientation.Horizontal)

    def _build_menus(self) -> None:
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        self.act_open = file_menu.addAction("&Open DICOM folder…", QKeySequence.StandardKey.Open)
        self.act_open.triggered.connect(self.open_dicom_dialog)
        self.act_add_prior = file_menu.addAction("Add &prior study…", QKeySequence("Ctrl+Shift+P"))
        self.act_add_prior.triggered.connect(self.add_prior_dialog)
        self.act_open_case = file_menu.addAction("Open &case…", QKeySequence("Ctrl+Shift+O"))
        self.act_open_case.triggered.connect(self.open_case_dialog)
        self.recent_menu = file_menu.addMenu("Open &recent")
        file_menu.addSeparator()
        self.act_save = file_menu.addAction("&Save case", QKeySequence.StandardKey.Save)
        self.act_save.triggered.connect(self.save)
        self.act_save_as = file_menu.addAction("Save case &as…", QKeySequence("Ctrl+Shift+S"))
        self.act_save_as.triggered.connect(self.save_as)
        file_menu.addSeparator()
        self.act_quit = file_menu.addAction("&Quit", QKeySequence.StandardKey.Quit)
        self.act_quit.triggered.connect(self.close)

        edit = bar.addMenu("&Edit")
        self.act_undo = edit.addAction("&Undo", QKeySequence.StandardKey.Undo)
        self.act_undo.triggered.connect(lambda: self.scene.history.undo())
        self.act_redo = edit.addAction("&Redo")
        self.act_redo.setShortcuts([QKeySequence("Ctrl+Shift+Z"), QKeySequence("Ctrl+Y")])
        self.act_redo.triggered.connect(lambda: self.scene.history.redo())

        view = bar.addMenu("&View")
        group = QActionGroup(self)
        for name, label, key in (
            ("four_up", "Four views", "Ctrl+1"),
            ("one_plus_three", "One + three", "Ctrl+2"),
            ("single", "Single view", "Ctrl+3"),
        ):
            action = view.addAction(label)
            action.setCheckable(True)
            action.setChecked(name == "four_up")
            action.setShortcut(QKeySequence(key))
            action.triggered.connect(lambda _=False, n=name: self.set_layout(n))
            group.addAction(action)
        self.act_full = view.addAction("Full-screen view under the mouse")
        self.act_full.setShortcut(QKeySequence("F"))
        self.act_full.triggered.connect(self.toggle_full_view)
        self.act_reset = view.addAction("Reset views")
        self.act_reset.setShortcut(QKeySequence("R"))
        self.act_reset.triggered.connect(self.reset_views)
        view.addSeparator()
        presets = view.addMenu("Window/level preset")
        for name in self.presets:
            presets.addAction(name).triggered.connect(lambda _=False, n=name: self.apply_preset(n))
        self.act_needle_views = view.addAction("Needle views (in-plane ×2, bull's-eye)")
        self.act_needle_views.setCheckable(True)
        self.act_needle_views.setShortcut(QKeySequence("V"))
        self.act_needle_views.toggled.connect(self.set_needle_views)
        self.act_frame_path = view.addAction("Show the whole path")
        self.act_frame_path.setShortcut(QKeySequence("P"))
        self.act_frame_path.triggered.connect(self.frame_path)
        self.act_crosshair = view.addAction("Crosshair")
        self.act_crosshair.setCheckable(True)
        self.act_crosshair.setChecked(True)
        self.act_crosshair.setShortcut(QKeySequence("C"))
        self.act_crosshair.toggled.connect(self.set_crosshair_visible)
        self.act_anon = view.addAction("Hide patient identity")
        self.act_anon.setCheckable(True)
        self.act_anon.toggled.connect(self.anonymize_box.setChecked)

        tools = bar.addMenu("&Tools")
        for name, label, key in (
            ("navigate", "Navigate", "N"),
            ("ruler", "Ruler", "M"),
            ("angle", "Angle", "A"),
            ("trajectory", "Trajectory (target, then entry)", "T"),
        ):
            action = tools.addAction(label)
            action.setShortcut(QKeySequence(key))
            action.triggered.connect(lambda _=False, n=name: self.set_tool(n))
        for action in self.findChildren(QAction):
            action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)

    # -- loading -----------------------------------------------------------------------
    def open_dicom_dialog(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open DICOM folder")
        if path:
            self.open_path(path)

    def open_path(self, path: str | Path, pick_planning: bool = False) -> None:
        """Open a DICOM folder/zip/file (a series picker when it holds several series)."""

        path = Path(path)
        if is_case(path):
            self.open_case(path)
            return
        if not self._confirm_discard():
            return
        if (path / "ct").is_dir() and pick_planning:
            path = path / "ct"

        self.load_series_from(
            path, self.set_planning_volume, "Loading series", ask=not pick_planning
        )

    def load_series_from(self, path: Path, on_loaded, title: str, ask: bool = True) -> None:
        """Scan ``path`` and load one series in the background: the planning CT, or the
        one the user picks when the folder holds several (``ask``)."""
        from guideplan.io import choose_planning_series, load_series_info, scan

        def scanned(report) -> None:
            if len(report.volumes) > 1 and ask:
                from guideplan.ui.dialogs import SeriesPicker

                picker = SeriesPicker(report, self)
                if not picker.exec():
                    return
                info = picker.selected()
            else:
                info = choose_planning_series(report)
            run_task(
                self,
                lambda progress, cancel: load_series_info(info, progress=progress, cancel=cancel),
                on_loaded,
                title,
            )

        run_task(
            self,
            lambda progress, cancel: scan(path, progress=progress, cancel=cancel),
            scanned,
            "Scanning",
        )

    def set_planning_volume(self, volume: Volume) -> None:
        """Start a new, unsaved plan on this volume."""
        from guideplan.render.snapshot import default_window_level

        scene = Scene()
        node = VolumeNode(
            name=volume.meta.get("description") or "Planning CT",
            volume=volume,
            role="planning",
            source=_source_of(volume),
        )
        node.display.window, node.display.level = default_window_level(volume)
        with scene.batch():
            scene._insert(node)  # the base image is not an undoable edit
        scene.info.update(
            patient_name=volume.meta.get("patient_name", ""),
            patient_id=volume.meta.get("patient_id", ""),
        )
        self.set_scene(scene, case_path=None)

    def _show_volume(self, volume: Volume) -> None:
        node = self.planning
        assert node is not None
        # Start on a voxel centre, so that every view shows a true slice, not a blend.
        self.cursor = volume.index_to_physical(np.floor((np.asarray(volume.size) - 1) / 2))
        for widget in self.slice_widgets.values():
            widget.slice_view.set_volume(volume, self.cursor)
            widget.slice_view.set_window_level(node.display.window, node.display.level)
        self._sync_preset_combo()
        self._build_path_context(volume)
        self.view3d.view3d.set_volume(volume)
        self.view3d.view3d.show_slice_planes(
            {n: w.slice_view for n, w in self.slice_widgets.items()}
        )
        self._update_info()
        self._refresh_views()
        self.reset_views()
        self.statusBar().showMessage(
            f"Loaded {volume.meta.get('description') or 'series'}: "
            f"{'x'.join(map(str, volume.size))} voxels",
            5000,
        )
        self._start_bone_surface(volume)
        if not self._first_slice_reported:
            self._first_slice_reported = True
            self.first_slice_shown.emit()

    def _start_bone_surface(self, volume: Volume) -> None:
        if volume.modality not in ("CT", ""):
            return
        from guideplan.core.resources import load_json
        from guideplan.render.view3d import bone_surface

        settings = load_json("display_presets.json")["bone_surface"]

        def task(progress, cancel):
            return bone_surface(volume, settings["threshold_hu"], settings["downsample_max_voxels"])

        def done(surface) -> None:
            if self.planning is not None and self.planning.volume is volume:
                self.view3d.view3d.set_bone_surface(surface)
                self.view3d.view3d.reset_camera()
                self.view3d.render()

        run_task(self, task, done, "Bone surface", show_progress=False)

    # -- navigation ----------------------------------------------------------------------
    def set_cursor(self, lps, refresh: bool = True) -> None:
        if self.planning is None or lps is None:
            return
        self.cursor = np.asarray(lps, dtype=float)
        for widget in self.slice_widgets.values():
            widget.slice_view.set_cursor(self.cursor)
        for layer in [
            *self.fusion_layers.values(),
            *self.label_layers.values(),
            *self.zone_layers.values(),
        ]:
            layer.update()
        if refresh:
            self._refresh_views()

    def reset_views(self) -> None:
        for widget in self.slice_widgets.values():
            widget.slice_view.reset_camera()
        self.view3d.view3d.reset_camera()
        self.render_all()

    def toggle_full_view(self) -> None:
        if self._layout == "single":
            self.set_layout("four_up")
        else:
            self.set_layout("single", self._focus_view)

    def _on_view_hovered(self, view: str) -> None:
        self._focus_view = view
        for name, widget in self._all_views().items():
            widget.set_active(name == view)

    def set_crosshair_visible(self, visible: bool) -> None:
        for widget in self.slice_widgets.values():
            widget.slice_view.show_crosshair = visible
            widget.slice_view.set_cursor(self.cursor)
        self.render_all()

    def set_anonymize(self, hidden: bool) -> None:
        self.anonymize = hidden
        self.act_anon.setChecked(hidden)
        self._refresh_views()

    # -- window / level ------------------------------------------------------------------
    def apply_preset(self, name: str) -> None:
        if self.planning is None or name not in self.presets:
            return
        window, level = self.presets[name]
        self.scene.execute(
            SetFields(
                self.planning.id,
                {"display.window": window, "display.level": level},
                text=f"Window/level {name}",
            )
        )

    def _sync_preset_combo(self) -> None:
        """Show the preset matching the current window/level, or 'Custom'."""
        if self.planning is None:
            return
        current = (self.planning.display.window, self.planning.display.level)
        name = next((n for n, wl in self.presets.items() if wl == current), "Custom")
        if self.preset_combo.findText("Custom") < 0:
            self.preset_combo.addItem("Custom")
        self.preset_combo.blockSignals(True)
        self.preset_combo.setCurrentText(name)
        self.preset_combo.blockSignals(False)

    def _drag_window_level(self, d_window: float, d_level: float, finished: bool) -> None:
        if self.planning is None:
            return
        if finished:
            self.scene.history.seal()
            return
        display = self.planning.display
        window = max(1.0, (display.window or 400.0) + d_window)
        level = (display.level or 40.0) + d_level
        self.scene.execute(
            SetFields(
                self.planning.id,
                {"display.window": window, "display.level": level},
                text="Window/level",
                merge_key=("wl", self.planning.id),
            )
        )

    # -- tools -------------------------------------------------------------------------
    def set_tool(self, tool: str) -> None:
        self.tool = tool
        self._pending_points = []
        for name, button in self.tool_buttons.items():
            button.setChecked(name == tool)
        for widget in self.slice_widgets.values():
            widget.tool = tool
        self.statusBar().showMessage(
            {
                "navigate": "Navigate: click to move the crosshair, right-drag for window/level.",
                "ruler": "Ruler: press on the first point, drag to the second, release.",
                "angle": "Angle: click the first point, the vertex, then the last point.",
                "trajectory": "Trajectory: click the target, then the skin entry point. "
                "Drag either end afterwards.",
                "grow": "Grow lesion: click inside the lesion.",
                "landmark": "Landmarks: click a point on the CT, then the same point on the "
                "fused prior; repeat (three pairs or more).",
                "brush": "Brush: paint the chosen label (size in the panel).",
                "erase": "Erase: remove the chosen label under the brush.",
            }[tool],
            6000,
        )
        self._refresh_views()

    def _on_tool_point(self, lps, released: bool) -> None:
        lps = np.asarray(lps, dtype=float)
        if self.tool == "ruler":
            if not released:
                self._pending_points = [lps, lps]
            else:
                if self._pending_points and np.linalg.norm(lps - self._pending_points[0]) > 0.5:
                    self._add_measurement([self._pending_points[0], lps], "distance")
                self._pending_points = []
        elif self.tool == "angle" and not released:
            self._pending_points.append(lps)
            if len(self._pending_points) == 3:
                self._add_measurement(self._pending_points, "angle")
                self._pending_points = []
        elif self.tool == "landmark" and not released:
            self.add_landmark(lps)
        elif self.tool == "grow" and not released:
            self.grow_lesion(lps)
        elif self.tool in ("brush", "erase"):
            if released:
                self._last_brush = None
                self.scene.history.seal()
            else:
                self._stroke += 1
                self._brush(lps)
        elif self.tool == "trajectory" and not released:
            self._pending_points.append(lps)
            if len(self._pending_points) == 2:
                target, entry = self._pending_points
                self._pending_points = []
                self._add_trajectory(entry, target)
        self._refresh_views()

    def _on_tool_drag(self, lps) -> None:
        if self.tool in ("brush", "erase"):
            self._brush(np.asarray(lps, dtype=float))
            return
        if self.tool == "ruler" and self._pending_points:
            self._pending_points[-1] = np.asarray(lps, dtype=float)
            self._refresh_views()

    def _add_measurement(self, points, measure: str) -> None:
        count = len(self.scene.nodes_of(MeasurementNode)) + 1
        node = MeasurementNode(
            name=f"{'Ruler' if measure == 'distance' else 'Angle'} {count}",
            points=[tuple(float(v) for v in p) for p in points],
            measure=measure,
        )
        node.display.color = MEASURE_COLOUR
        self.scene.execute(AddNode(node))

    def delete_selected_measurement(self) -> None:
        item = self.measure_list.currentItem()
        if item is not None:
            self.scene.execute(RemoveNode(item.data(Qt.ItemDataRole.UserRole)))

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
        name = f"{volume.modality} {volume.meta.get('description') or 'prior'}".strip()
        node, _ = add_prior(self.scene, volume, name, source=_source_of(volume))
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

        run_task(self, task, done, "Registering prior study")

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

    def keyPressEvent(self, event) -> None:
        keys = {
            Qt.Key.Key_Left: (-1, 0),
            Qt.Key.Key_Right: (1, 0),
            Qt.Key.Key_Up: (0, 1),
            Qt.Key.Key_Down: (0, -1),
        }
        mods = event.modifiers()
        if event.key() in keys and mods & Qt.KeyboardModifier.ControlModifier:
            right, up = keys[event.key()]
            rotate = bool(mods & Qt.KeyboardModifier.ShiftModifier)
            if self.nudge_prior(self._focus_view, right, up, rotate):
                return
        if event.key() in keys and mods & Qt.KeyboardModifier.AltModifier:
            right, up = keys[event.key()]
            which = "target" if mods & Qt.KeyboardModifier.ShiftModifier else "entry"
            if self.nudge_needle(self._focus_view, which, right, up):
                return
        super().keyPressEvent(event)

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
        if node is not None:
            self.scene.execute(RemoveNode(node.id))

    def _set_device(self, device_id: str) -> None:
        node = self._current()
        if node is not None and device_id and node.device_id != device_id:
            self.scene.execute(SetField(node.id, "device_id", device_id, text="Change device"))

    def _set_locked(self, locked: bool) -> None:
        node = self._current()
        if node is not None and node.locked != locked:
            self.scene.execute(SetField(node.id, "locked", locked, text="Lock trajectory"))

    def _pick_handle(self, widget: SliceWidget, pos) -> tuple[str, str] | None:
        """(node id, 'entry'|'target') of an unlocked needle end under the mouse."""
        sv = widget.slice_view
        if sv.frame is None or self.tool not in ("navigate", "trajectory"):
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
            from guideplan.planning.structures import auto_structures

            return auto_structures(volume)

        def done(structures) -> None:
            if self.path_ctx is not None and self.path_ctx.volume is volume:
                self.path_ctx.structures = structures
                self._refresh_trajectories()

        run_task(self, task, done, "Finding structures", show_progress=False)

    def _refresh_trajectories(self) -> None:
        nodes = self.scene.nodes_of(TrajectoryNode)
        if self.current_trajectory not in {n.id for n in nodes}:
            self.current_trajectory = nodes[-1].id if nodes else None
        self.trajectory_panel.set_trajectories(
            [(n.id, n.name) for n in nodes], self.current_trajectory
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
            return
        axes = needle_view_axes(np.asarray(node.entry, float), np.asarray(node.target, float))
        for name, (u, v) in axes.items():
            self.slice_widgets[name].slice_view.set_plane_axes(u, v, cursor=self.cursor)

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
            position = chosen or _position_of(self.planning.volume.meta.get("patient_position", ""))
        device = (
            self.catalog.get(node.device_id)
            if node.device_id in self.catalog
            else self.catalog.default_needle()
        )
        ctx, target, node_id = self.path_ctx, node.target, node.id

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
                self.statusBar().showMessage("No safe straight path found from the skin.", 8000)
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

        run_task(self, task, done, "Suggesting entry points")

    # -- scene -> views ----------------------------------------------------------------
    def _on_scene_change(self, node: Node, field: str) -> None:
        if node is self.planning and field.startswith("display."):
            for widget in self.slice_widgets.values():
                widget.slice_view.set_window_level(node.display.window, node.display.level)
            self._sync_preset_combo()
        if isinstance(node, MeasurementNode):
            self._refresh_measurement_list()
        if isinstance(node, LandmarkNode):
            self._refresh_views()
        if isinstance(node, TrajectoryNode):
            self._refresh_trajectories()
        if isinstance(node, TrajectoryNode | ZoneNode | LabelMapNode):
            self._zone_timer.start()
        if isinstance(node, LabelMapNode):
            self._refresh_labels(changed=True)
        if isinstance(node, TransformNode) or (
            isinstance(node, VolumeNode) and node.role == "prior"
        ):
            self._refresh_fusion()
        self._refresh_views()

    def _refresh_measurement_list(self) -> None:
        self.measure_list.clear()
        for node in self.scene.nodes_of(MeasurementNode):
            item = QListWidgetItem(f"{node.name}: {node.label}")
            item.setData(Qt.ItemDataRole.UserRole, node.id)
            self.measure_list.addItem(item)

    def _overlays(self) -> list[Overlay2D]:
        overlays = [
            Overlay2D(list(n.points), n.label, tuple(n.display.color))
            for n in self.scene.nodes_of(MeasurementNode)
            if n.display.visible
        ]
        prior, transform = self._prior()
        for n in self.scene.nodes_of(LandmarkNode):
            shown = n.points
            if prior is not None and n.volume_id == prior.id and transform is not None:
                back = np.linalg.inv(transform.matrix)  # prior points where they show
                shown = [tuple(geometry.apply_affine(back, np.asarray(p))) for p in n.points]
            for index, point in enumerate(shown, start=1):
                overlays.append(
                    Overlay2D([point, point], f"{index}", tuple(n.display.color), needle=True)
                )
        for n in self.scene.nodes_of(TrajectoryNode):
            if n.display.visible:
                label = n.name if n.id == self.current_trajectory else ""
                overlays.append(
                    Overlay2D(
                        [n.entry, n.target],
                        label,
                        tuple(n.display.color),
                        needle=True,
                        selected=n.id == self.current_trajectory,
                    )
                )
        if self._pending_points:
            pts = [tuple(p) for p in self._pending_points]
            label = ""
            if len(pts) == 2 and self.tool == "ruler":
                label = f"{np.linalg.norm(np.subtract(pts[1], pts[0])):.1f} mm"
            overlays.append(Overlay2D(pts, label, PENDING_COLOUR))
        return overlays

    def _refresh_views(self) -> None:
        if self.planning is None or self.planning.volume is None:
            return
        overlays = self._overlays()
        volume = self.planning.volume
        meta = volume.meta
        if self.anonymize:
            who = "Patient hidden"
        else:
            who = f"{meta.get('patient_name', '')}\n{meta.get('patient_id', '')}"
        series = (
            f"{meta.get('description', '')}\n"
            f"{meta.get('modality', '')}  {meta.get('study_date', '')}"
        )
        for name, widget in self.slice_widgets.items():
            sv = widget.slice_view
            sv.set_overlays(overlays)
            index, count = sv.slice_index()
            sv.set_corner_text(2, f"{who}")
            sv.set_corner_text(3, f"{series}\nW {sv.window:.0f}  L {sv.level:.0f}")
            sv.set_corner_text(0, self._slice_text(name, index, count) + self._hover_text())
            widget.sync_slider()
        self.view3d.view3d.update_slice_planes()
        self.render_all()

    def _slice_text(self, view: str, index: int, count: int) -> str:
        """'Axial 120/300  S 35.0 mm': slice number and the plane's LPS coordinate."""
        if self.slice_widgets[view].slice_view.custom_axes:
            node = self._current()
            depth = ""
            if node is not None and view == "sagittal":
                depth = f"   depth {np.linalg.norm(self.cursor - np.asarray(node.entry)):.1f} mm"
            return f"{self.NEEDLE_VIEW_NAMES[view]}  {index}/{count}{depth}"
        axis, pos, neg = {
            "axial": (2, "S", "I"),
            "coronal": (1, "P", "A"),
            "sagittal": (0, "L", "R"),
        }[view]
        value = float(self.cursor[axis])
        side = pos if value >= 0 else neg
        return f"{view.capitalize()}  {index}/{count}   {side} {abs(value):.1f} mm"

    def _hover_text(self) -> str:
        if self._hover is None or self.planning is None or self.planning.volume is None:
            return ""
        value = self.planning.volume.value_at(self._hover)
        x, y, z = self._hover
        units = self.planning.volume.meta.get("units", "")
        shown = "outside" if value is None else f"{value:.0f} {units}"
        return f"\n{shown}   L/R {x:.1f}  P/A {y:.1f}  S/I {z:.1f} mm"

    def _on_hover(self, lps) -> None:
        self._hover = None if lps is None else np.asarray(lps, dtype=float)
        text = self._hover_text().strip()
        self.readout.setText(text.replace("\n", "  "))
        if self.planning is not None:
            for name, widget in self.slice_widgets.items():
                sv = widget.slice_view
                index, count = sv.slice_index()
                sv.set_corner_text(0, self._slice_text(name, index, count) + self._hover_text())
            self.render_all()

    def render_all(self) -> None:
        for name, widget in self._all_views().items():
            if widget.isVisible():
                widget.render()
            del name

    def _update_info(self) -> None:
        if self.planning is None or self.planning.volume is None:
            self.info.setText("")
            return
        volume = self.planning.volume
        warnings = "".join(f"<br>⚠ {w}" for w in volume.meta.get("warnings", []))
        self.info.setText(
            f"<b>{volume.meta.get('description') or 'Series'}</b> ({volume.modality})<br>"
            f"{'×'.join(map(str, volume.size))} voxels<br>"
            f"{' × '.join(f'{s:.2f}' for s in volume.spacing)} mm{warnings}"
        )

    def _update_actions(self) -> None:
        history = self.scene.history
        name = self.case_path.name if self.case_path else "unsaved plan"
        dirty = "" if history.is_clean else " *"
        self.setWindowTitle(f"guideplan — {name}{dirty}" if self.planning else "guideplan")
        self.act_save.setEnabled(self.planning is not None)
        self.act_save_as.setEnabled(self.planning is not None)
        self.act_undo.setEnabled(history.can_undo)
        self.act_redo.setEnabled(history.can_redo)
        self.act_undo.setText(f"&Undo {history.undo_text}".strip())
        self.act_redo.setText(f"&Redo {history.redo_text}".strip())

    # -- cases -------------------------------------------------------------------------
    def open_case_dialog(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open guideplan case (.gplan folder)")
        if path:
            self.open_case(Path(path))

    def open_case(self, path: Path) -> None:
        if not self._confirm_discard():
            return
        path = Path(path)

        def task(progress, cancel):
            return open_case(path, progress=progress, cancel=cancel)

        def done(scene: Scene) -> None:
            self.set_scene(scene, case_path=path)
            self.statusBar().showMessage(f"Opened {path}", 5000)

        run_task(self, task, done, "Opening case")

    def save(self) -> bool:
        if self.planning is None:
            return False
        if self.case_path is None:
            return self.save_as()
        return self._save_to(self.case_path)

    def save_as(self) -> bool:
        if self.planning is None:
            return False
        start = str(self.case_path or Path.home() / _default_case_name(self.planning))
        path, _ = QFileDialog.getSaveFileName(
            self, "Save case as", start, "guideplan case (*.gplan)"
        )
        if not path:
            return False
        target = Path(path)
        if target.suffix != ".gplan":
            target = target.with_suffix(".gplan")
        return self._save_to(target)

    def _save_to(self, path: Path) -> bool:
        """Save on the GUI thread: the user sees 'saved' before going on."""
        try:
            save_case(self.scene, path)
        except GuideplanError as exc:
            QMessageBox.warning(self, exc.title, str(exc))
            return False
        except OSError as exc:
            QMessageBox.warning(self, "Cannot save", f"{exc}\n\nChoose another folder.")
            return False
        self.case_path = path
        if self.autosaver is not None:
            self.autosaver.saved(path)
        self.recent.add(path)
        self._rebuild_recent_menu()
        self._update_actions()
        self.statusBar().showMessage(f"Saved {path}", 5000)
        return True

    def _rebuild_recent_menu(self) -> None:
        self.recent_menu.clear()
        paths = self.recent.list()
        for path in paths:
            self.recent_menu.addAction(str(path)).triggered.connect(
                lambda _=False, p=path: self.open_case(Path(p))
            )
        self.recent_menu.setEnabled(bool(paths))

    def _confirm_discard(self) -> bool:
        """Ask before unsaved edits would be dropped; True to go on."""
        if self.planning is None or self.scene.history.is_clean:
            return True
        answer = QMessageBox.question(
            self,
            "Unsaved changes",
            "The plan has unsaved changes. Save them first?",
            QMessageBox.StandardButton.Save
            | QMessageBox.StandardButton.Discard
            | QMessageBox.StandardButton.Cancel,
        )
        if answer == QMessageBox.StandardButton.Save:
            return self.save()
        return answer == QMessageBox.StandardButton.Discard

    def offer_recovery(self) -> bool:
        """After a crash: offer the autosaved plan. True if a recovery was started."""
        infos = pending_recoveries()
        if not infos:
            return False
        info = infos[0]
        where = info.case_path or "a plan that was never saved"
        answer = QMessageBox.question(
            self,
            "Recover unsaved work?",
            "guideplan did not close normally. A plan was autosaved at "
            f"{_local_time(info.last_autosave_at or info.started_at)} ({where}).\n\n"
            "Recover it?",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
        )
        if answer != QMessageBox.StandardButton.Yes:
            discard_recovery(info)
            return False

        def task(progress, cancel):
            return recover(info, progress=progress, cancel=cancel)

        def done(scene: Scene) -> None:
            self.set_scene(scene, Path(info.case_path) if info.case_path else None, unsaved=True)
            discard_recovery(info)
            self.statusBar().showMessage("Recovered the autosaved plan; save it to keep it.")

        run_task(self, task, done, "Recovering plan")
        return True

    # -- drag and drop -----------------------------------------------------------------
    def dragEnterEvent(self, event) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        urls = event.mimeData().urls()
        if urls:
            self.open_path(urls[0].toLocalFile())

    def closeEvent(self, event) -> None:
        if not self._confirm_discard():
            event.ignore()
            return
        if self.autosaver is not None:
            self.autosaver.discard()  # a clean exit leaves nothing to recover
        # Background work must end before the window (and the VTK objects) go away.
        for task in list(_ACTIVE):
            task.shutdown()
        event.accept()


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


def _position_of(patient_position: str) -> str | None:
    """DICOM PatientPosition -> the reachable skin for suggestions."""
    code = patient_position.upper()
    if code.endswith("P"):
        return "prone"
    if code.endswith("S"):
        return "supine"
    if code.endswith("DL"):
        return "right-up"  # lying on the left side: the right side is up
    if code.endswith("DR"):
        return "left-up"
    return None


def _local_time(iso: str) -> str:
    """'2026-11-28T22:04:40+00:00' -> '28 Nov 2026 23:04' in the user's time zone."""
    from datetime import datetime

    try:
        return datetime.fromisoformat(iso).astimezone().strftime("%d %b %Y %H:%M")
    except (TypeError, ValueError):
        return str(iso)


def _default_case_name(node: VolumeNode) -> str:
    meta = node.volume.meta if node.volume is not None else {}
    stem = "_".join(p for p in (meta.get("patient_id", ""), meta.get("study_date", "")) if p)
    return f"{stem or 'plan'}.gplan"


def _source_of(volume: Volume) -> dict:
    meta = volume.meta
    return {
        "series_uid": meta.get("series_uid", ""),
        "study_uid": meta.get("study_uid", ""),
        "frame_of_reference_uid": meta.get("frame_of_reference_uid", ""),
        "path": meta.get("source_path", ""),
    }
