"""kill -9 at any moment of a save or an autosave leaves exactly one saved version.

A child process saves two alternating versions of a plan as fast as it can, both with
``save_case`` and with the autosave writer (``write_scene``); it is killed with SIGKILL
after a pseudo-random delay. The case must then open, pass its digest checks, and equal
one of the two versions exactly: never a mix, never a damaged file.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from guideplan.model.case import open_case
from guideplan.model.nodes import LabelMapNode, TrajectoryNode

CHILD = textwrap.dedent(
    """
    import sys
    import numpy as np
    from guideplan.model.case import save_case, write_scene
    from guideplan.model.commands import AddNode
    from guideplan.model.nodes import LabelMapNode, TrajectoryNode
    from guideplan.model.scene import Scene

    def scene(v):
        s = Scene()
        s.execute(AddNode(TrajectoryNode(name="T", id="t1", entry=(0, 0, v), target=(9, 9, 9))))
        labels = np.full((20, 30, 40), v, np.uint8)
        labels[v % 20] = 7
        s.execute(AddNode(LabelMapNode(name="L", id="l1", array=labels)))
        return s

    case, mode = sys.argv[1], sys.argv[2]
    versions = [scene(1), scene(2)]
    save = save_case if mode == "save" else write_scene
    save(versions[0], case)
    print("ready", flush=True)
    n = 0
    while True:
        n += 1
        save(versions[n % 2], case)
    """
)


def _version_of(case: Path) -> int:
    scene = open_case(case)
    traj = next(iter(scene.nodes_of(TrajectoryNode)))
    labels = next(iter(scene.nodes_of(LabelMapNode))).array
    v = int(traj.entry[2])
    expected = np.full((20, 30, 40), v, np.uint8)
    expected[v % 20] = 7
    np.testing.assert_array_equal(labels, expected)  # the labels of the same version
    return v


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="POSIX signals")
@pytest.mark.parametrize("mode", ["save", "autosave"])
def test_a_kill_at_any_moment_leaves_exactly_one_saved_version(tmp_path, mode):
    rng = np.random.default_rng(12 if mode == "save" else 13)
    case = tmp_path / "plan.gplan"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    seen = set()
    for _ in range(5):
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(case), mode],
            stdout=subprocess.PIPE,
            env=env,
        )
        assert child.stdout.readline().strip() == b"ready"
        time.sleep(float(rng.uniform(0.0, 0.25)))
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
        seen.add(_version_of(case))
    assert seen <= {1, 2}
