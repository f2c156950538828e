"""Autosave (debounced), crash recovery of dead sessions only, and the recent-cases list."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from guideplan.model import recovery
from guideplan.model.case import save_case
from guideplan.model.commands import AddNode, SetField
from guideplan.model.nodes import LabelMapNode, TrajectoryNode
from guideplan.model.recovery import (
    Autosaver,
    RecentCases,
    discard_recovery,
    pending_recoveries,
    recover,
)
from guideplan.model.scene import Scene


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch) -> Path:
    """Every test gets its own GUIDEPLAN_HOME: nothing touches the real user folders."""
    root = tmp_path / "home"
    monkeypatch.setenv("GUIDEPLAN_HOME", str(root))
    return root


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def _scene() -> tuple[Scene, TrajectoryNode]:
    scene = Scene()
    traj = TrajectoryNode(name="T1", entry=(0.0, 0.0, 0.0), target=(10.0, 20.0, 30.0))
    scene.execute(AddNode(traj))
    labels = np.zeros((3, 4, 5), np.uint8)
    labels[1, 2, 3] = 1
    scene.execute(AddNode(LabelMapNode(name="lesion", array=labels)))
    scene.info = {"patient": "ANON"}
    return scene, traj


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _age_session(saver: Autosaver, **changes) -> None:
    """Pretend the session was written by another process (the one that crashed)."""
    data = json.loads(saver.session_file.read_text())
    data.update(changes)
    saver.session_file.write_text(json.dumps(data))


# -- locations --------------------------------------------------------------------------
def test_default_locations_follow_guideplan_home(home: Path, monkeypatch):
    assert recovery.default_recovery_dir() == home / "recovery"
    assert recovery.default_recent_path() == home / "recent.json"
    monkeypatch.delenv("GUIDEPLAN_HOME")
    monkeypatch.setenv("XDG_DATA_HOME", "/xdg/data")
    monkeypatch.setenv("XDG_CONFIG_HOME", "/xdg/config")
    assert recovery.default_recovery_dir() == Path("/xdg/data/guideplan/recovery")
    assert recovery.default_recent_path() == Path("/xdg/config/guideplan/recent.json")


# -- autosave ---------------------------------------------------------------------------
def test_autosave_waits_for_a_quiet_moment(home: Path, clock: FakeClock):
    scene, traj = _scene()
    saver = Autosaver(scene, case_path="/cases/p.gplan", delay_s=2.0, clock=clock)
    assert not saver.tick() and not saver.case_dir.exists()  # nothing edited yet

    scene.execute(SetField(traj.id, "entry", (1.0, 2.0, 3.0)))
    clock.t += 1.0
    assert not saver.tick()  # too soon
    scene.execute(SetField(traj.id, "display.opacity", 0.5))
    clock.t += 1.5
    assert not saver.tick()  # 1.5 s after the last change
    clock.t += 0.6
    assert saver.tick()
    assert saver.case_dir.parent == home / "recovery"
    assert not saver.tick()  # nothing new

    session = json.loads(saver.session_file.read_text())
    assert session["pid"] == os.getpid() and session["host"] == socket.gethostname()
    assert session["case_path"] == os.path.abspath("/cases/p.gplan")
    assert session["started_at"] and session["last_autosave_at"]

    restored = recover(pending_info(saver))
    node = restored.get(traj.id)
    assert node.entry == (1.0, 2.0, 3.0) and node.display.opacity == 0.5
    assert restored.info == {"patient": "ANON"}
    (labels,) = restored.nodes_of(LabelMapNode)
    assert np.array_equal(labels.array, scene.nodes_of(LabelMapNode)[0].array)


def pending_info(saver: Autosaver) -> recovery.RecoveryInfo:
    """The RecoveryInfo of a (live) session, as the next start would see it once dead."""
    _age_session(saver, pid=_dead_pid())
    (info,) = pending_recoveries(saver.recovery_dir)
    return info


def test_autosave_during_endless_edits_happens_after_max_delay(clock: FakeClock):
    scene, traj = _scene()
    saver = Autosaver(scene, delay_s=2.0, max_delay_s=5.0, clock=clock)
    saved_at = []
    for step in range(12):
        scene.execute(SetField(traj.id, "entry", (float(step), 0.0, 0.0), merge_key="drag"))
        clock.t += 1.0
        if saver.tick():
            saved_at.append(step)
    assert saved_at == [4, 9]


def test_back_to_the_saved_state_drops_the_recovery_copy(tmp_path: Path, clock: FakeClock):
    scene, traj = _scene()
    save_case(scene, tmp_path / "p.gplan")
    saver = Autosaver(scene, case_path=tmp_path / "p.gplan", clock=clock)
    scene.execute(SetField(traj.id, "locked", True))
    clock.t += 3
    assert saver.tick() and saver.case_dir.exists()
    scene.history.undo()
    clock.t += 3
    assert not saver.tick()
    assert not saver.case_dir.exists() and not saver.session_file.exists()


def test_saved_drops_the_recovery_copy(tmp_path: Path, clock: FakeClock):
    scene, _ = _scene()
    saver = Autosaver(scene, clock=clock)
    scene.modified.emit()
    clock.t += 3
    assert saver.tick()
    save_case(scene, tmp_path / "p.gplan")
    saver.saved(tmp_path / "p.gplan")
    assert not saver.case_dir.exists() and saver.case_path == str(tmp_path / "p.gplan")


def test_discard_on_clean_exit(clock: FakeClock):
    scene, traj = _scene()
    saver = Autosaver(scene, clock=clock)
    scene.execute(SetField(traj.id, "locked", True))
    clock.t += 3
    assert saver.tick()
    saver.discard()
    assert not saver.case_dir.exists() and not saver.session_file.exists()
    scene.execute(SetField(traj.id, "locked", False))
    clock.t += 3
    assert not saver.tick()  # no longer listening
    assert pending_recoveries() == []


def test_autosave_failure_is_kept_not_raised(clock: FakeClock, monkeypatch):
    scene, traj = _scene()
    saver = Autosaver(scene, clock=clock)

    def fail(*a, **kw):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(recovery, "write_scene", fail)
    scene.execute(SetField(traj.id, "locked", True))
    clock.t += 3
    assert not saver.tick()
    assert isinstance(saver.last_error, OSError) and saver.pending
    clock.t += 1
    assert not saver.tick()  # waits another delay before retrying
    monkeypatch.undo()
    clock.t += 2
    assert saver.tick() and saver.last_error is None


def test_recovered_scene_is_written_even_though_its_history_is_clean(clock: FakeClock):
    scene, _ = _scene()
    scene.history.mark_clean()  # what open_case/recover hand back
    saver = Autosaver(scene, unsaved=True, clock=clock)
    assert saver.tick() and saver.case_dir.exists()


# -- recovery ---------------------------------------------------------------------------
def _autosaved(clock: FakeClock, **kw) -> tuple[Autosaver, Scene]:
    scene, traj = _scene()
    saver = Autosaver(scene, clock=clock, **kw)
    scene.execute(SetField(traj.id, "target", (5.0, 5.0, 5.0)))
    clock.t += 3
    assert saver.tick()
    return saver, scene


def test_a_live_session_is_not_offered(clock: FakeClock):
    _autosaved(clock)  # this very process: alive
    assert pending_recoveries() == []


def test_a_dead_session_is_offered_and_recovered(clock: FakeClock):
    saver, scene = _autosaved(clock, case_path="/cases/p.gplan")
    _age_session(saver, pid=_dead_pid())
    (info,) = pending_recoveries()
    assert info.session_id == saver.session_id
    assert info.case_path == os.path.abspath("/cases/p.gplan")
    restored = recover(info)
    assert [n.to_dict() for n in restored] == [n.to_dict() for n in scene]
    discard_recovery(info)
    assert pending_recoveries() == [] and not info.case_dir.exists()


@pytest.mark.parametrize(
    "changes",
    [{"host": "another-workstation"}, {"boot_id": "before-a-reboot"}, {"process_start": "1"}],
    ids=["other-host", "rebooted", "pid-reused"],
)
def test_sessions_of_other_hosts_boots_or_reused_pids_are_offered(clock, changes):
    saver, _ = _autosaved(clock)
    if "boot_id" in changes and recovery._boot_id() is None:
        pytest.skip("no boot id on this system")
    if "process_start" in changes and recovery._process_start(os.getpid()) is None:
        pytest.skip("no process start time on this system")
    _age_session(saver, **changes)
    assert [r.session_id for r in pending_recoveries()] == [saver.session_id]


def test_a_session_that_died_before_its_first_autosave_is_cleaned_up(home: Path):
    folder = home / "recovery"
    folder.mkdir(parents=True)
    stale = folder / f"x{recovery.SESSION_SUFFIX}"
    stale.write_text(
        json.dumps(
            {"format": "guideplan-session", "session_id": "x", "pid": _dead_pid(), "host": "h"}
        )
    )
    (folder / "unrelated.session.json").write_text("not json")
    assert pending_recoveries() == []
    assert not stale.exists() and (folder / "unrelated.session.json").exists()


# -- recent cases -----------------------------------------------------------------------
def test_recent_cases_most_recent_first_deduplicated_and_limited(tmp_path: Path, home: Path):
    cases = []
    for i in range(5):
        case = tmp_path / f"c{i}.gplan"
        case.mkdir()
        cases.append(case)
    recent = RecentCases(limit=3)
    for case in cases:
        recent.add(case)
    recent.add(cases[3])
    assert recent.list() == [cases[3], cases[4], cases[2]]
    assert (home / "recent.json").exists()
    assert not [p for p in home.iterdir() if p.name.startswith(".tmp.")]
    recent.remove(cases[4])
    assert RecentCases(limit=3).list() == [cases[3], cases[2]]


def test_recent_cases_prune_missing_files(tmp_path: Path):
    path = tmp_path / "recent.json"
    keep, gone = tmp_path / "keep.gplan", tmp_path / "gone.gplan"
    keep.mkdir()
    gone.mkdir()
    recent = RecentCases(path)
    recent.add(keep)
    recent.add(gone)
    gone.rmdir()
    assert recent.list() == [keep]
    assert [c["path"] for c in json.loads(path.read_text())["cases"]] == [str(keep)]


def test_a_damaged_recent_list_is_treated_as_empty(tmp_path: Path):
    path = tmp_path / "recent.json"
    path.write_text("{ nope")
    recent = RecentCases(path)
    assert recent.list() == []
    recent.add(tmp_path)
    assert recent.list() == [tmp_path]
