"""The workstation window: four views, the plan, menus, loading, saving, recovery.

The window owns no computation: it calls io/model/render functions and turns gestures
into plan commands. Navigation state (cursor, zoom, pan, layout) is view state; what
belongs to the plan (window/level of a volume, measurements, everything later tools
add) is edited through commands, so Ctrl+Z undoes any of it.

The window's parts live in their own modules as mixins (``window_cases``,
``window_fusion``, ``window_segmentation``, ``window_trajectories``,
``window_treatment``); this one keeps construction, loading, navigation, tools and
the scene-to-view refresh.
"""

from __future__ import annotations

from functools import partial
from html import escape
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
    QPushButton,
    QScrollArea,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from guideplan.core import geometry
from guideplan.core.labelmap import load_label_table
from guideplan.core.resources import window_level_presets
from guideplan.core.volume import Volume
from guideplan.io.case_file import is_case
from guideplan.model.commands import AddNode, RemoveNode, SetFields
from guideplan.model.nodes import (
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
)
from guideplan.model.scene import Scene
from guideplan.planning.devices import load_catalog
from guideplan.planning.path_analysis import PathContext
from guideplan.render.fusion_layer import FusionLayer
from guideplan.render.label_layer import LabelLayer
from guideplan.render.slice_view import Overlay2D
from guideplan.render.zone_layer import ZoneLayer
from guideplan.ui.fusion_panel import FusionPanel
from guideplan.ui.gui_gc import pin_gc_to_gui_thread
from guideplan.ui.render_scheduler import RenderScheduler
from guideplan.ui.segment_panel import SegmentPanel
from guideplan.ui.trajectory_panel import TrajectoryPanel
from guideplan.ui.treatment_panel import TreatmentPanel
from guideplan.ui.views import SliceWidget, View3DWidget
from guideplan.ui.window_cases import CaseActions, volume_source
from guideplan.ui.window_fusion import FusionActions
from guideplan.ui.window_segmentation import SegmentationActions
from guideplan.ui.window_trajectories import TrajectoryActions
from guideplan.ui.window_treatment import TreatmentActions
from guideplan.ui.workers import (
    Generation,
    Guard,
    cancel_stale_tasks,
    reopen,
    run_task,
    shutdown_tasks,
)

SLICE_VIEWS = ("axial", "coronal", "sagittal")
LAYOUTS = ("four_up", "one_plus_three", "single")
MEASURE_COLOUR = (1.0, 0.85, 0.2)
PENDING_COLOUR = (0.4, 0.9, 1.0)


class MainWindow(
    CaseActions,
    FusionActions,
    SegmentationActions,
    TrajectoryActions,
    TreatmentActions,
    QMainWindow,
):
    #: The first volume's slices have been drawn (start-up time is measured to here).
    first_slice_shown = Signal()

    def __init__(self) -> None:
        super().__init__()
        pin_gc_to_gui_thread()  # see gui_gc: no Qt or VTK object is collected on a worker
        #: Advanced by every new plan (case, series, recovery): older results are stale.
        self.plan_generation = Generation()
        #: Advanced by every open request: only the newest one may become the plan.
        self.open_generation = Generation()
        #: Per node id: how many times it was added, changed or removed in this plan.
        self._revisions: dict[str, int] = {}
        self.setWindowTitle("guideplan")
        self.resize(1500, 950)
        self.setAcceptDrops(True)
        self.scene = Scene()
        self.planning: VolumeNode | None = None
        self.cursor = np.zeros(3)
        self.anonymize = False
        self.tool = "navigate"
        self._pending_points: list[np.ndarray] = []
        self._ruler_waiting = False  # a ruler's first point was clicked, not dragged
        self._hover: np.ndarray | None = None
        self._layout = "four_up"
        self._focus_view = "axial"
        self.case_path: Path | None = None
        self._first_slice_reported = False
        self.presets = window_level_presets()
        self.catalog = load_catalog()
        self.path_ctx: PathContext | None = None
        #: Coarse body mask (from the 3D surface's task): where 3D picking meets the skin.
        self.body_coarse: Volume | None = None
        self.current_trajectory: str | None = None
        self.trajectory_report = None
        self.needle_views = False
        self.active_prior: str | None = None
        self.label_layers: dict[str, LabelLayer] = {}
        self.zone_layers: dict[str, ZoneLayer] = {}
        self._zone_actors: list = []
        self._zone_timer = QTimer(self)
        self._zone_timer.setSingleShot(True)
        self._zone_timer.setInterval(100)
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
        self.renders = RenderScheduler(self._all_views, self)
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
            widget.gesture.connect(self._on_gesture)
            widget.gesture_step.connect(self.renders.mark_step)
        self.view3d.hovered.connect(self._on_view_hovered)
        self.view3d.clicked.connect(self.pick_in_3d)
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
        self.plan_generation.advance()  # what still runs for the old plan is stale
        self._revisions = {}
        cancel_stale_tasks(self)
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

        measures = QWidget()
        measure_box = QVBoxLayout(measures)
        self.measure_list = QListWidget()
        measure_box.addWidget(self.measure_list, 1)
        delete = QPushButton("Delete selected")
        delete.clicked.connect(self.delete_selected_measurement)
        measure_box.addWidget(delete)

        self.fusion_panel = FusionPanel()
        self.fusion_panel.add_requested.connect(self.add_prior_dialog)
        self.fusion_panel.prior_selected.connect(self.select_prior)
        self.fusion_panel.display_changed.connect(self._set_prior_display)
        self.fusion_panel.register_requested.connect(self.register_prior)
        self.fusion_panel.reset_requested.connect(self.reset_fusion)
        self.fusion_panel.export_requested.connect(self.export_tfm)
        self.fusion_panel.landmark_tool.connect(lambda: self.set_tool("landmark"))
        self.fusion_panel.landmarks_cleared.connect(self.clear_landmarks)
        self.label_table = load_label_table()
        self.segment_panel = SegmentPanel(self.label_table)
        self.segment_panel.tool_chosen.connect(self.set_tool)
        self.segment_panel.operation.connect(self.label_operation)
        self.segment_panel.display_changed.connect(lambda: self._refresh_labels())
        self.segment_panel.regrow_requested.connect(self.regrow)
        self.trajectory_panel = TrajectoryPanel(self.catalog)
        self.trajectory_panel.new_requested.connect(lambda: self.set_tool("trajectory"))
        self.trajectory_panel.selected.connect(self.select_trajectory)
        self.trajectory_panel.delete_requested.connect(self.delete_current_trajectory)
        self.trajectory_panel.device_chosen.connect(self._set_device)
        self.trajectory_panel.lock_toggled.connect(self._set_locked)
        self.trajectory_panel.suggest_requested.connect(self.suggest_entries)
        self.trajectory_panel.suggestion_chosen.connect(self._use_suggestion)
        self.trajectory_panel.renamed.connect(self.rename_trajectory)
        self.trajectory_panel.colour_chosen.connect(self.set_trajectory_colour)
        self.treatment_panel = TreatmentPanel(self.catalog)
        self.treatment_panel.add_requested.connect(self.add_zone)
        self.treatment_panel.remove_requested.connect(self.remove_zone)
        self.treatment_panel.parameters_changed.connect(self._set_zone_parameters)
        self.treatment_panel.volume_changed.connect(self._set_zone_volume)
        self.treatment_panel.probes_changed.connect(self._set_zone_probes)
        self.treatment_panel.catalog_requested.connect(self.open_catalog_dialog)
        self.trajectory_panel.selected.connect(lambda _id: self._show_current_zone())
        # One tab per step of the work: the panel stays short and fits its dock.
        self.panel_tabs = QTabWidget()
        self.panel_tabs.setUsesScrollButtons(False)
        for widget, title in (
            (self.fusion_panel, "Fusion"),
            (self.segment_panel, "Segment"),
            (self.trajectory_panel, "Needles"),
            (self.treatment_panel, "Treat"),
            (measures, "Measure"),
        ):
            self.panel_tabs.addTab(_scrolling(widget), title)
        box.addWidget(self.panel_tabs, 1)
        self.anonymize_box = QCheckBox("Hide patient identity")
        self.anonymize_box.toggled.connect(self.set_anonymize)
        box.addWidget(self.anonymize_box)
        self.info = QLabel("")
        self.info.setWordWrap(True)
        self.info.setTextFormat(Qt.TextFormat.RichText)
        box.addWidget(self.info)
        dock = QDockWidget("Plan", self)
        dock.setObjectName("planDock")
        dock.setWidget(panel)
        # As wide as the widest tab needs: nothing is clipped.
        width = max(
            self.panel_tabs.widget(i).widget().sizeHint().width()
            for i in range(self.panel_tabs.count())
        )
        panel.setMinimumWidth(width + 40)
        dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
        self.resizeDocks([dock], [width + 40], Qt.Orientation.Horizontal)

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
        self.act_import_seg = file_menu.addAction("&Import segmentation…")
        self.act_import_seg.setToolTip("DICOM SEG, RTSTRUCT, .nrrd or .nii.gz")
        self.act_import_seg.triggered.connect(self.import_segmentation_dialog)
        self.act_export_seg = file_menu.addAction("&Export segmentation…")
        self.act_export_seg.setToolTip("DICOM SEG, .nrrd or .nii.gz")
        self.act_export_seg.triggered.connect(self.export_segmentation_dialog)
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
        tools.addSeparator()
        self.act_catalog = tools.addAction("Device &catalog…")
        self.act_catalog.triggered.connect(self.open_catalog_dialog)
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
        on_loaded = self.set_planning_volume
        if (path / "ct").is_dir() and pick_planning:
            from guideplan.io.sample_case import read_sample_info

            info = read_sample_info(path)  # a sample case: its indication and target
            path = path / "ct"
            on_loaded = partial(self.set_planning_volume, case_info=info)

        self.load_series_from(
            path, on_loaded, "Loading series", ask=not pick_planning, guard=self.new_open()
        )

    def load_series_from(
        self, path: Path, on_loaded, title: str, ask: bool = True, guard: Guard | None = None
    ) -> None:
        """Scan ``path`` and load one series in the background: the planning CT, or the
        one the user picks when the folder holds several (``ask``). ``guard`` says whether
        the result is still wanted (default: the plan it was asked for is still open)."""
        from guideplan.io import choose_planning_series, load_series_info, scan

        guard = guard or self.default_task_guard()

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
                guard=guard,
            )

        run_task(
            self,
            lambda progress, cancel: scan(path, progress=progress, cancel=cancel),
            scanned,
            "Scanning",
            guard=guard,
        )

    def set_planning_volume(self, volume: Volume, case_info: dict | None = None) -> None:
        """Start a new, unsaved plan on this volume (with a sample case's information:
        indication, findings, target bone and level)."""
        from guideplan.render.snapshot import default_window_level

        scene = Scene()
        node = VolumeNode(
            name=volume.meta.get("description") or "Planning CT",
            volume=volume,
            role="planning",
            source=volume_source(volume),
        )
        node.display.window, node.display.level = default_window_level(volume)
        with scene.batch():
            scene._insert(node)  # the base image is not an undoable edit
        scene.info.update(
            patient_name=volume.meta.get("patient_name", ""),
            patient_id=volume.meta.get("patient_id", ""),
            **(case_info or {}),
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
        from guideplan.render.view3d import patient_bone_surface

        settings = load_json("display_presets.json")["bone_surface"]
        self.body_coarse = None

        def task(progress, cancel):
            return patient_bone_surface(
                volume, settings["threshold_hu"], settings["downsample_max_voxels"]
            )

        def done(result) -> None:
            if self.planning is not None and self.planning.volume is volume:
                surface, self.body_coarse = result
                self.view3d.view3d.set_bone_surface(surface)
                self.view3d.view3d.reset_camera()
                self.view3d.render()

        run_task(self, task, done, "Bone surface", show_progress=False, guard=self.unchanged())

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
    #: The panel tab that goes with a tool (its options are there).
    TOOL_TABS: ClassVar[dict[str, str]] = {
        "trajectory": "Needles",
        "grow": "Segment",
        "brush": "Segment",
        "erase": "Segment",
        "threshold": "Segment",
        "landmark": "Fusion",
        "ruler": "Measure",
        "angle": "Measure",
    }

    def show_panel(self, title: str) -> None:
        """Bring the plan panel's tab ``title`` ('Fusion', 'Segment', 'Needles', 'Treat',
        'Measure') to the front: where the options of what the user just did are."""
        for index in range(self.panel_tabs.count()):
            if self.panel_tabs.tabText(index) == title:
                self.panel_tabs.setCurrentIndex(index)

    def set_tool(self, tool: str) -> None:
        self.tool = tool
        tab = self.TOOL_TABS.get(tool)
        if tab:
            self.show_panel(tab)
        self._pending_points = []
        self._ruler_waiting = False
        for name, button in self.tool_buttons.items():
            button.setChecked(name == tool)
        for widget in self.slice_widgets.values():
            widget.tool = tool
        self.segment_panel.show_tool(tool)
        self.statusBar().showMessage(
            {
                "navigate": "Navigate: click to move the crosshair, right-drag for window/level.",
                "ruler": "Ruler: press on the first point, drag to the second, release.",
                "angle": "Angle: click the first point, the vertex, then the last point.",
                "trajectory": "Trajectory: click the target, then the skin entry point (in a "
                "slice view, or on the skin in 3D). Drag either end afterwards.",
                "grow": "Grow lesion: click inside the lesion.",
                "threshold": "Threshold: drag a box (or a sphere's radius) around the "
                "structure; the HU range is in the panel.",
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
        if self.tool == "ruler":  # press-drag-release, or click the two ends
            first = self._pending_points[0] if self._pending_points else None
            if not released and first is not None and self._ruler_waiting:
                self._add_measurement([first, lps], "distance")
                self._pending_points, self._ruler_waiting = [], False
            elif not released:
                self._pending_points, self._ruler_waiting = [lps, lps], False
            elif first is not None and np.linalg.norm(lps - first) > 0.5:
                self._add_measurement([first, lps], "distance")
                self._pending_points = []
            elif first is not None:
                self._ruler_waiting = True
                self.statusBar().showMessage("Ruler: click the second point.", 4000)
        elif self.tool == "angle" and not released:
            self._pending_points.append(lps)
            if len(self._pending_points) == 3:
                self._add_measurement(self._pending_points, "angle")
                self._pending_points = []
        elif self.tool == "landmark" and not released:
            self.add_landmark(lps)
        elif self.tool == "grow" and not released:
            self.grow_lesion(lps)
        elif self.tool == "threshold":
            self._threshold_point(lps, released)
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
        if self.tool == "threshold":
            self._threshold_drag(lps)
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

    # -- scene -> views ----------------------------------------------------------------
    def _on_scene_change(self, node: Node, field: str) -> None:
        self._revisions[node.id] = self._revisions.get(node.id, 0) + 1
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
            self.schedule_zones()
        if isinstance(node, LabelMapNode):
            self._refresh_labels(changed=True)
        if isinstance(node, TransformNode) or (
            isinstance(node, VolumeNode) and node.role == "prior"
        ):
            self._refresh_fusion()
        # A label edit (a brush dab) changes what the slice views show; the 3D surfaces
        # follow on their own timer, so the 3D view is not drawn on every dab.
        self._refresh_views(list(SLICE_VIEWS) if isinstance(node, LabelMapNode) else None)

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

    def _refresh_views(self, views: list[str] | None = None) -> None:
        """Overlays and corner texts of the slice views from the plan, then ask ``views``
        (all when None) to draw."""
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
            sv.set_corner_text(2, f"{who}")
            sv.set_corner_text(3, f"{series}\nW {sv.window:.0f}  L {sv.level:.0f}")
            self._update_slice_text(name)
            widget.sync_slider()
        self.view3d.view3d.update_slice_planes()
        self.renders.request(views)

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
        """The value under the mouse: in the status bar and in the hovered view's corner
        (only the views whose text changed draw again)."""
        self._hover = None if lps is None else np.asarray(lps, dtype=float)
        text = self._hover_text().strip()
        self.readout.setText(text.replace("\n", "  "))
        if self.planning is not None:
            changed = [name for name in self.slice_widgets if self._update_slice_text(name)]
            if changed:
                self.renders.request(changed)

    def _update_slice_text(self, name: str) -> bool:
        """Lower-left corner: slice number and position, plus the value under the mouse
        in the view the mouse is over. True when the text changed."""
        sv = self.slice_widgets[name].slice_view
        index, count = sv.slice_index()
        hover = self._hover_text() if name == self._focus_view else ""
        return sv.set_corner_text(0, self._slice_text(name, index, count) + hover)

    def render_all(self) -> None:
        """Ask every view to draw (coalesced: once per event-loop turn, see
        RenderScheduler); ``self.renders.flush()`` draws at once."""
        self.renders.request()

    def _on_gesture(self, view: str, started: bool) -> None:
        if started:
            self.renders.begin_gesture(view)
        else:
            self.renders.end_gesture()

    def _update_info(self) -> None:
        if self.planning is None or self.planning.volume is None:
            self.info.setText("")
            return
        volume = self.planning.volume
        warnings = "".join(f"<br>⚠ {escape(str(w))}" for w in volume.meta.get("warnings", []))
        info = self.scene.info if isinstance(self.scene.info, dict) else {}
        case = ""
        if info.get("title") or info.get("indication"):  # a sample case: what it teaches
            case = (
                f"<b>{escape(str(info.get('title', '')))}</b><br>"
                f"{escape(str(info.get('indication', '')))}<br><br>"
            )
        self.info.setText(
            f"{case}<b>{escape(volume.meta.get('description') or 'Series')}</b> "
            f"({volume.modality})<br>"
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
        # Nothing of this window runs after it closed: its timers would start work on
        # it, and a result still queued would start follow-up work (see workers).
        for timer in (
            self._zone_timer,
            self._surface_timer,
            self._autosave_timer,
            self._flicker,
        ):
            timer.stop()
        self.renders.stop()
        self.plan_generation.advance()
        self.open_generation.advance()
        shutdown_tasks(self)  # cancels, waits, drops this window's outcomes
        event.accept()

    def showEvent(self, event) -> None:
        reopen(self)  # a window shown again after closing may run tasks again
        if not self._autosave_timer.isActive():
            self._autosave_timer.start(1000)
        super().showEvent(event)

    # -- background work: is a result still wanted when it arrives? -------------------------
    def default_task_guard(self) -> Guard:
        """Every task of this window by default: the plan it ran for is still open."""
        return self.plan_generation.guard()

    def new_open(self) -> Guard:
        """A new open request (series, case, recovery): it supersedes earlier ones."""
        self.open_generation.advance()
        cancel_stale_tasks(self)
        return self.open_generation.guard()

    def unchanged(self, *node_ids: str | None) -> Guard:
        """The same plan, and none of ``node_ids`` added, changed, undone or removed
        since now: a result computed from them may be applied."""
        ids = [i for i in node_ids if i is not None]
        before = {i: self._revisions.get(i, 0) for i in ids}
        generation = self.plan_generation.guard()
        return lambda: generation() and all(self._revisions.get(i, 0) == before[i] for i in ids)

    def stale_notice(self, title: str) -> None:
        """A result was dropped because the plan changed while it was computed."""
        self.statusBar().showMessage(
            f"{title}: the plan changed meanwhile, so the result was not applied. Run it again.",
            10000,
        )


def _scrolling(widget: QWidget) -> QScrollArea:
    """``widget`` in a vertical scroll area (a tab's content can be taller than the dock)."""
    scroll = QScrollArea()
    scroll.setWidgetResizable(True)
    scroll.setFrameShape(QScrollArea.Shape.NoFrame)
    scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    page = QWidget()
    layout = QVBoxLayout(page)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.addWidget(widget)
    layout.addStretch(1)  # short panels sit at the top, not spread over the tab
    scroll.setWidget(page)
    return scroll
