"""benchmarks/stress_gui.py names how a run ended (the crash hunt of issue 18)."""

import importlib.util
import signal
from pathlib import Path

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "stress_gui.py"
_SPEC = importlib.util.spec_from_file_location("stress_gui", _PATH)
stress = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(stress)


def test_a_run_killed_by_a_signal_is_a_crash_named_by_its_signal():
    assert stress.describe(-signal.SIGSEGV) == "SIGSEGV"  # pytest itself killed
    assert stress.describe(128 + signal.SIGABRT) == "SIGABRT"  # reported by xvfb-run
    assert stress.crashed(139) and stress.crashed(-6)


def test_failed_tests_and_timeouts_are_not_crashes():
    assert stress.describe(0) == "passed"
    assert stress.describe(1) == "tests failed (1)"
    assert stress.describe(None) == "timeout"
    assert not stress.crashed(1) and not stress.crashed(0) and not stress.crashed(None)
