"""Crash hunt: run GUI test files N times under K CPU-bound processes; report crashes.

Why: the window's crashes of issue 18 (an abort, a segmentation fault) showed up only
now and then, and only with the machine busy. Each run is a fresh pytest process on
its own display, with faulthandler on and Qt's messages written to a file that
survives a crash; a run that dies is reported with its signal, the Python stacks
faulthandler printed and the last Qt messages.

    python benchmarks/stress_gui.py --runs 20 --load 2 tests/ui/test_treatment_gui.py
    make stress N=20 LOAD=2

Exit status 0 when every run passed, 1 otherwise. A JSON summary is the last line.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_FILES = ["tests/ui/test_treatment_gui.py", "tests/ui/test_trajectory_gui.py"]
BURNER = "while True: pass"


def describe(code: int | None) -> str:
    """'passed', 'tests failed (1)', 'SIGSEGV', ... for a run's exit status (a negative
    status is the signal that killed pytest; xvfb-run and the shell report 128 + n)."""
    if code is None:
        return "timeout"
    if code == 0:
        return "passed"
    number = -code if code < 0 else code - 128 if code > 128 else None
    if number is not None:
        try:
            return signal.Signals(number).name
        except ValueError:
            pass
    return f"tests failed ({code})"


def crashed(code: int | None) -> bool:
    return describe(code).startswith("SIG")


def _burners(count: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", BURNER]) for _ in range(count)]


def _stop(processes: list[subprocess.Popen]) -> None:
    for process in processes:  # only the processes this script started, by their pid
        process.kill()
    for process in processes:
        process.wait()


def _excerpt(log: Path, qt_log: Path) -> str:
    """The end of faulthandler's report and the last Qt messages of a failed run."""
    text = log.read_text(errors="replace") if log.exists() else ""
    start = text.find("Fatal Python error")
    part = text[start : start + 4000] if start >= 0 else text[-3000:]
    qt = qt_log.read_text(errors="replace").splitlines()[-15:] if qt_log.exists() else []
    return part + ("\nLast Qt messages:\n" + "\n".join(qt) if qt else "\nNo Qt message.")


def _allow_core_dumps() -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))


def run_once(index: int, files: list[str], out: Path, timeout: float, cores: bool) -> dict:
    log, qt_log = out / f"run{index:02d}.log", out / f"run{index:02d}-qt.log"
    env = {**os.environ, "GUIDEPLAN_QT_LOG": str(qt_log), "PYTHONFAULTHANDLER": "1"}
    command = [
        "bash",
        "scripts/with-display.sh",
        sys.executable,
        "-X",
        "faulthandler",
        "-m",
        "pytest",
        "-x",
        "-q",
        "-p",
        "no:cacheprovider",
        *files,
    ]
    started = time.perf_counter()
    with log.open("w") as sink:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            preexec_fn=_allow_core_dumps if cores else None,
            start_new_session=True,  # a timed-out run is killed with its X server
        )
        try:
            code = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            code = None
    result = {
        "run": index,
        "exit": code,
        "outcome": describe(code),
        "seconds": round(time.perf_counter() - started, 1),
        "log": str(log),
    }
    if code != 0:
        result["excerpt"] = _excerpt(log, qt_log)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", default=DEFAULT_FILES)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--load", type=int, default=2, help="CPU-bound processes")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per run")
    parser.add_argument("--out", type=Path, default=None, help="folder for the logs")
    parser.add_argument("--cores", action="store_true", help="allow core dumps")
    parser.add_argument("--keep-going", action="store_true", help="do not stop at a crash")
    args = parser.parse_args(argv)
    out = args.out or Path(tempfile.mkdtemp(prefix="guideplan-stress-"))
    out.mkdir(parents=True, exist_ok=True)
    print(
        f"stress: {args.runs} runs of {' '.join(args.files)} under {args.load} CPU-bound "
        f"processes; logs in {out}",
        flush=True,
    )
    results = []
    burners = _burners(args.load)
    try:
        for index in range(1, args.runs + 1):
            result = run_once(index, args.files, out, args.timeout, args.cores)
            results.append(result)
            print(
                f"run {index}/{args.runs}: {result['outcome']} "
                f"(exit {result['exit']}, {result['seconds']} s)",
                flush=True,
            )
            if result["exit"] != 0:
                print(result["excerpt"], flush=True)
                if not args.keep_going:
                    break
    finally:
        _stop(burners)
    summary = {
        "files": args.files,
        "load": args.load,
        "runs_asked": args.runs,
        "runs_done": len(results),
        "passed": sum(r["exit"] == 0 for r in results),
        "crashed": [r["outcome"] for r in results if crashed(r["exit"])],
        "failed": [r["outcome"] for r in results if r["exit"] != 0 and not crashed(r["exit"])],
        "seconds": [r["seconds"] for r in results],
        "logs": str(out),
    }
    print(json.dumps(summary), flush=True)
    return 0 if summary["passed"] == args.runs else 1


if __name__ == "__main__":
    sys.exit(main())
