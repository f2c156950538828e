"""The window's case actions: open, save, save as, recent cases, crash recovery.

A mixin of MainWindow, kept apart so that each part of the window reads on its own.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QFileDialog, QMessageBox

from guideplan.core.errors import GuideplanError
from guideplan.core.volume import Volume
from guideplan.io.case_file import PayloadDamagedError
from guideplan.model.case import open_case, save_case
from guideplan.model.nodes import VolumeNode
from guideplan.model.recovery import discard_recovery, pending_recoveries, recover
from guideplan.model.scene import Scene
from guideplan.ui.workers import run_task


class CaseActions:
    """Case files and recovery (part of MainWindow)."""

    # -- cases -------------------------------------------------------------------------
    def open_case_dialog(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open guideplan case (.gplan folder)")
        if path:
            self.open_case(Path(path))

    def open_case(self, path: Path) -> None:
        if not self._confirm_discard():
            return
        path = Path(path)

        self._open_case_task(path, skip_damaged=False)

    def _open_case_task(self, path: Path, skip_damaged: bool) -> None:
        """Open in the background; a case with damaged data files offers to open the rest."""
        problems: list[str] = []

        def task(progress, cancel):
            try:
                return open_case(
                    path, progress=progress, cancel=cancel, skip_damaged=skip_damaged,
                    problems=problems,
                )  # fmt: skip
            except PayloadDamagedError as exc:
                return exc  # answered in the GUI thread (done)

        def done(result) -> None:
            if isinstance(result, PayloadDamagedError):
                answer = QMessageBox.question(
                    self,
                    result.title,
                    f"{result.message}\n\nOpen the rest of the case without the damaged "
                    "parts? (The case folder is left unchanged.)",
                )
                if answer == QMessageBox.StandardButton.Yes:
                    self._open_case_task(path, skip_damaged=True)
                return
            self.set_scene(result, case_path=path)
            self.statusBar().showMessage(f"Opened {path}", 5000)
            if problems:
                QMessageBox.warning(
                    self,
                    "Case opened without its damaged parts",
                    "\n".join(problems)
                    + "\n\nSaving writes the case without them; save under another name "
                    "to keep the damaged folder as it is.",
                )

        run_task(self, task, done, "Opening case", guard=self.new_open())

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

        run_task(self, task, done, "Recovering plan", guard=self.new_open())
        return True


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


def volume_source(volume: Volume) -> dict:
    """Where a volume came from, as the case file records it."""
    meta = volume.meta
    return {
        "series_uid": meta.get("series_uid", ""),
        "study_uid": meta.get("study_uid", ""),
        "frame_of_reference_uid": meta.get("frame_of_reference_uid", ""),
        "path": meta.get("source_path", ""),
    }
