"""Autosave, crash recovery and the recent-cases list; no Qt (the GUI drives the clock).

Why: a crash, a power cut or a killed process must not cost the user their plan. While
the program runs, an :class:`Autosaver` writes the scene, a little after each burst of
edits, to its own recovery case ``<recovery_dir>/<session-id>.gplan`` plus
``<session-id>.session.json`` (pid, host, start time, original case, last autosave).
A clean exit discards both. At the next start :func:`pending_recoveries` lists the
sessions whose process is gone: those are what the program offers to recover.

Locations: ``$GUIDEPLAN_HOME`` if set (tests, CI, portable installs), else
``$XDG_DATA_HOME/guideplan`` (``~/.local/share/guideplan``) for recovery and
``$XDG_CONFIG_HOME/guideplan/recent.json`` (``~/.config/...``) for the recent list.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shutil
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from guideplan import __version__
from guideplan.io import case_file
from guideplan.model.case import ProgressFn, open_case, write_scene
from guideplan.model.scene import Scene

log = logging.getLogger(__name__)

ENV_HOME = "GUIDEPLAN_HOME"
SESSION_SUFFIX = ".session.json"
_SESSION_FORMAT = "guideplan-session"
_RECENT_FORMAT = "guideplan-recent"


# -- locations --------------------------------------------------------------------------
def data_home() -> Path:
    """Where guideplan keeps data that is not the user's documents."""
    if os.environ.get(ENV_HOME):
        return Path(os.environ[ENV_HOME])
    if os.environ.get("XDG_DATA_HOME"):
        return Path(os.environ["XDG_DATA_HOME"]) / "guideplan"
    if sys.platform == "win32" and os.environ.get("LOCALAPPDATA"):
        return Path(os.environ["LOCALAPPDATA"]) / "guideplan"
    return Path.home() / ".local" / "share" / "guideplan"


def config_home() -> Path:
    """Where guideplan keeps small settings such as the recent-cases list."""
    if os.environ.get(ENV_HOME):
        return Path(os.environ[ENV_HOME])
    if os.environ.get("XDG_CONFIG_HOME"):
        return Path(os.environ["XDG_CONFIG_HOME"]) / "guideplan"
    if sys.platform == "win32" and os.environ.get("APPDATA"):
        return Path(os.environ["APPDATA"]) / "guideplan"
    return Path.home() / ".config" / "guideplan"


def default_recovery_dir() -> Path:
    return data_home() / "recovery"


def default_recent_path() -> Path:
    return config_home() / "recent.json"


# -- autosave ---------------------------------------------------------------------------
class Autosaver:
    """Writes the scene to a recovery case after edits, debounced; the GUI calls ``tick``.

    A save happens on the first ``tick`` at least ``delay_s`` after the last change, or
    ``max_delay_s`` after the first unsaved change even if edits keep coming (a long
    drag must not postpone safety forever). Autosave errors never reach the caller: they
    are logged and kept in ``last_error``, and the next attempt waits ``delay_s``.

    ``unsaved=True`` says the scene holds work that is in no case file yet although its
    history is clean (a scene just recovered): it is written at the first tick and kept
    until :meth:`saved` is called.
    """

    def __init__(
        self,
        scene: Scene,
        recovery_dir: str | os.PathLike | None = None,
        case_path: str | os.PathLike | None = None,
        delay_s: float = 2.0,
        *,
        max_delay_s: float = 30.0,
        unsaved: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.scene = scene
        self.recovery_dir = Path(recovery_dir) if recovery_dir else default_recovery_dir()
        self.delay_s = float(delay_s)
        self.max_delay_s = float(max_delay_s)
        self._clock = clock
        self._case_path = os.path.abspath(case_path) if case_path else None
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        self.session_id = f"{stamp}-{os.getpid()}-{secrets.token_hex(3)}"
        self.started_at = _now_iso()
        self.last_autosave_at: str | None = None
        self.last_error: Exception | None = None
        self._unsaved_base = unsaved
        self._dirty = unsaved
        self._first_change: float | None = -float("inf") if unsaved else None
        self._last_change = -float("inf")
        self._connected = True
        scene.modified.connect(self._on_modified)

    # -- paths ---------------------------------------------------------------------------
    @property
    def case_dir(self) -> Path:
        """The recovery case this session writes."""
        return self.recovery_dir / f"{self.session_id}{case_file.CASE_SUFFIX}"

    @property
    def session_file(self) -> Path:
        return self.recovery_dir / f"{self.session_id}{SESSION_SUFFIX}"

    @property
    def case_path(self) -> str | None:
        """The user's case this session edits (None: not saved yet)."""
        return self._case_path

    @property
    def pending(self) -> bool:
        """True while there are edits not yet autosaved."""
        return self._dirty

    # -- events --------------------------------------------------------------------------
    def _on_modified(self) -> None:
        now = self._clock()
        self._dirty = True
        self._last_change = now
        if self._first_change is None:
            self._first_change = now

    def saved(self, case_path: str | os.PathLike) -> None:
        """The user saved the scene as ``case_path``: the recovery copy is not needed."""
        self._case_path = os.path.abspath(case_path)
        self._unsaved_base = False
        self._drop_recovery()

    def tick(self, now: float | None = None) -> bool:
        """Autosave if due; True if a recovery case was written. Cheap when nothing is due."""
        if not self._dirty or not self._connected:
            return False
        now = self._clock() if now is None else now
        quiet = now - self._last_change >= self.delay_s
        overdue = self._first_change is not None and now - self._first_change >= self.max_delay_s
        if not (quiet or overdue):
            return False
        if not self._unsaved_base and self.scene.history.is_clean:
            # Back to exactly what was saved (or undone to the start): nothing to recover.
            self._drop_recovery()
            return False
        return self.save_now(now)

    def save_now(self, now: float | None = None) -> bool:
        """Write the recovery case now, due or not; False (and ``last_error``) on failure."""
        now = self._clock() if now is None else now
        try:
            self.recovery_dir.mkdir(parents=True, exist_ok=True)
            self._write_session()  # first: a case without a session would never be found
            write_scene(self.scene, self.case_dir)
            self.last_autosave_at = _now_iso()
            self._write_session()
        except Exception as exc:  # autosave must never take the GUI down
            log.warning("autosave to %s failed: %s", self.case_dir, exc)
            self.last_error = exc
            self._last_change = now  # retry after another delay, not in a tight loop
            self._first_change = now
            return False
        self.last_error = None
        self._dirty = False
        self._first_change = None
        return True

    def discard(self) -> None:
        """Clean exit: stop listening and delete this session's recovery files."""
        if self._connected:
            self.scene.modified.disconnect(self._on_modified)
            self._connected = False
        self._dirty = False
        self._drop_recovery()

    # -- internals -----------------------------------------------------------------------
    def _drop_recovery(self) -> None:
        self._dirty = False
        self._first_change = None
        with contextlib.suppress(OSError):
            self.session_file.unlink()
        shutil.rmtree(self.case_dir, ignore_errors=True)
        self.last_autosave_at = None

    def _write_session(self) -> None:
        data = {
            "format": _SESSION_FORMAT,
            "session_id": self.session_id,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "boot_id": _boot_id(),
            "process_start": _process_start(os.getpid()),
            "started_at": self.started_at,
            "case_path": self._case_path,
            "last_autosave_at": self.last_autosave_at,
            "app_version": __version__,
        }
        _atomic_write_json(self.session_file, data)


# -- recovery ---------------------------------------------------------------------------
@dataclass
class RecoveryInfo:
    """A session that ended without a clean exit and left a recovery case."""

    session_id: str
    case_dir: Path
    session_file: Path
    pid: int
    host: str
    started_at: str
    last_autosave_at: str | None
    #: The case the session was editing (None: it was never saved).
    case_path: str | None


def pending_recoveries(recovery_dir: str | os.PathLike | None = None) -> list[RecoveryInfo]:
    """Recovery cases left by sessions that are no longer running, newest first."""
    folder = Path(recovery_dir) if recovery_dir else default_recovery_dir()
    if not folder.is_dir():
        return []
    out: list[RecoveryInfo] = []
    for session_file in sorted(folder.glob(f"*{SESSION_SUFFIX}")):
        try:
            data = json.loads(session_file.read_text(encoding="utf-8"))
            if data.get("format") != _SESSION_FORMAT:
                continue
            session_id = str(data["session_id"])
            info = RecoveryInfo(
                session_id=session_id,
                case_dir=folder / f"{session_id}{case_file.CASE_SUFFIX}",
                session_file=session_file,
                pid=int(data["pid"]),
                host=str(data.get("host", "")),
                started_at=str(data.get("started_at", "")),
                last_autosave_at=data.get("last_autosave_at"),
                case_path=data.get("case_path"),
            )
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue  # not ours or half-written: leave it alone
        if _session_alive(data):
            continue
        if not (info.case_dir / case_file.CASE_JSON).exists():
            # Died before its first autosave finished: nothing to offer.
            with contextlib.suppress(OSError):
                session_file.unlink()
            shutil.rmtree(info.case_dir, ignore_errors=True)
            continue
        out.append(info)
    out.sort(key=lambda r: r.last_autosave_at or r.started_at, reverse=True)
    return out


def recover(
    info: RecoveryInfo, progress: ProgressFn | None = None, cancel: Any | None = None
) -> Scene:
    """Open a recovery case. Its content is in no user file: give the new session's
    :class:`Autosaver` ``unsaved=True`` (and ``case_path=info.case_path``), let it save
    once, then :func:`discard_recovery` this one.
    """
    return open_case(info.case_dir, progress=progress, cancel=cancel)


def discard_recovery(info: RecoveryInfo) -> None:
    """Delete a recovery case the user declined (or has recovered and saved again)."""
    shutil.rmtree(info.case_dir, ignore_errors=True)
    with contextlib.suppress(OSError):
        info.session_file.unlink()


def _session_alive(data: dict[str, Any]) -> bool:
    """Is the process that wrote this session still running? (Unsure -> yes: never steal
    the recovery case of a running program.)"""
    if data.get("host") != socket.gethostname():
        return False
    boot = _boot_id()
    if boot and data.get("boot_id") and data["boot_id"] != boot:
        return False  # rebooted since: the pid may have been reused
    pid = int(data["pid"])
    if not _pid_running(pid):
        return False
    recorded, current = data.get("process_start"), _process_start(pid)
    return not (recorded and current and recorded != current)


def _pid_running(pid: int) -> bool:
    if pid <= 0:
        return False
    if sys.platform == "win32":  # os.kill(pid, 0) would terminate the process there
        import ctypes

        kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined]
        handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
        if not handle:
            return False
        code = ctypes.c_ulong()
        kernel32.GetExitCodeProcess(handle, ctypes.byref(code))
        kernel32.CloseHandle(handle)
        return code.value == 259  # STILL_ACTIVE
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, another user's
    return True


def _process_start(pid: int) -> str | None:
    """The process' start time in clock ticks since boot (Linux), to detect reused pids."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()
    return fields[19] if len(fields) > 19 else None


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip() or None
    except OSError:
        return None


# -- recent cases -----------------------------------------------------------------------
class RecentCases:
    """The recently opened cases, most recent first; cases that no longer exist drop out.

    A damaged list is treated as empty (it is a convenience, not the user's work).
    """

    def __init__(self, path: str | os.PathLike | None = None, limit: int = 10) -> None:
        self.path = Path(path) if path else default_recent_path()
        self.limit = int(limit)

    def list(self) -> list[Path]:
        entries = self._load()
        present = [e for e in entries if Path(e["path"]).exists()]
        if len(present) != len(entries):
            self._save(present)
        return [Path(e["path"]) for e in present]

    def add(self, case_path: str | os.PathLike) -> None:
        path = os.path.abspath(case_path)
        entries = [e for e in self._load() if not _same(e["path"], path)]
        entries.insert(0, {"path": path, "opened_at": _now_iso()})
        self._save(entries[: self.limit])

    def remove(self, case_path: str | os.PathLike) -> None:
        path = os.path.abspath(case_path)
        entries = self._load()
        kept = [e for e in entries if not _same(e["path"], path)]
        if len(kept) != len(entries):
            self._save(kept)

    def clear(self) -> None:
        self._save([])

    def _load(self) -> list[dict[str, str]]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            cases = data["cases"] if data.get("format") == _RECENT_FORMAT else []
            return [
                {"path": str(c["path"]), "opened_at": str(c.get("opened_at", ""))}
                for c in cases
                if isinstance(c, dict) and c.get("path")
            ]
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return []

    def _save(self, entries: list[dict[str, str]]) -> None:
        _atomic_write_json(self.path, {"format": _RECENT_FORMAT, "cases": entries})


def _same(a: str, b: str) -> bool:
    return os.path.normcase(os.path.abspath(a)) == os.path.normcase(os.path.abspath(b))


# -- helpers ----------------------------------------------------------------------------
def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _atomic_write_json(path: Path, data: Any) -> None:
    """Temp file in the same folder, fsync, rename: readers see the old or the new file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp.{secrets.token_hex(6)}.{path.name}")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
