"""`guideplan render` draws without any display: a DICOM folder, a sample case, a saved
case with its plan (the needle shows up in its colour)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from guideplan.io import load_series
from guideplan.io.dicom_write import SeriesSpec, write_volume
from guideplan.model.case import save_case
from guideplan.model.commands import AddNode
from guideplan.model.nodes import TrajectoryNode, VolumeNode
from guideplan.model.scene import Scene
from tests.render.markers import marker_volume
from tests.render.test_snapshot import read_png

SAMPLE = Path(__file__).resolve().parents[2] / "sample_data" / "case02_iliac_cryo_skin"


def _render(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    return subprocess.run(
        [sys.executable, "-m", "guideplan.cli", "render", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
    )


@pytest.mark.skipif(not SAMPLE.is_dir(), reason="sample data missing")
def test_render_sample_case_without_display(tmp_path):
    out = tmp_path / "all.png"
    result = _render(str(SAMPLE), "--view", "all", "--out", str(out), "--size", "600x600")
    assert result.returncode == 0, result.stderr
    img = read_png(out)
    assert img.shape == (600, 600, 3) and img.mean() > 5


def test_render_saved_case_shows_its_needle(tmp_path):
    series = tmp_path / "ct"
    write_volume(marker_volume(), series, SeriesSpec(modality="CT", seed="render-case"))
    volume = load_series(series)
    scene = Scene()
    scene._insert(
        VolumeNode(
            name="CT",
            volume=volume,
            role="planning",
            source={"path": str(series), "series_uid": volume.meta["series_uid"]},
        )
    )
    centre = volume.center_lps()
    needle = TrajectoryNode(
        name="N1",
        entry=tuple(centre + [-40.0, 40.0, 0.0]),
        target=tuple(centre),
        device_id="needle-18g-150",
    )
    needle.display.color = (0.0, 1.0, 0.0)
    scene.execute(AddNode(needle))
    case = tmp_path / "plan.gplan"
    save_case(scene, case)
    out = tmp_path / "axial.png"
    result = _render(
        str(case),
        "--view",
        "axial",
        "--out",
        str(out),
        "--size",
        "400x400",
        "--slice-lps",
        ",".join(f"{v:.3f}" for v in centre),
    )
    assert result.returncode == 0, result.stderr
    img = read_png(out).astype(int)
    green = (img[..., 1] > 200) & (img[..., 0] < 80) & (img[..., 2] < 80)
    assert green.sum() > 30


def test_render_reports_bad_input_without_traceback(tmp_path):
    (tmp_path / "junk.txt").write_text("nothing")
    result = _render(str(tmp_path), "--out", str(tmp_path / "x.png"))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "DICOM" in result.stderr
