"""Loading speed and memory: guideplan.io.load_series against SimpleITK's ImageSeriesReader.

Writes a 512x512xN CT series once per transfer syntax (cached in benchmarks/out/), then
times both readers on the same files, interleaved, each run in a fresh subprocess so that
the page cache is warm for both but no Python-level cache helps either. Reports medians,
the ratio, and the peak memory above the interpreter's baseline (after imports) as a
multiple of the volume's int16 size. Compressed series are decoded by worker processes
(guideplan.io.parallel_decode): their peak is reported for the parent and for the
largest worker; the output volume is shared memory, counted in both.

Usage: python benchmarks/bench_load.py [--runs 5] [--slices 400] [--json]
       [--syntax native jpegls j2k jpeg rle]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"

_CHILD = r"""
import json, sys, time, resource

def rss_kb():
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1])

reader, folder = sys.argv[1], sys.argv[2]
if reader == 'guideplan':
    from guideplan.io import load_series
    import numpy
else:
    import SimpleITK as sitk
    import numpy
base = rss_kb()
_u = resource.getrusage(resource.RUSAGE_SELF)
cpu0 = _u.ru_utime + _u.ru_stime
t0 = time.perf_counter()
if reader == 'guideplan':
    vol = load_series(folder)
    shape, dtype = vol.array.shape, str(vol.array.dtype)
else:
    r = sitk.ImageSeriesReader()
    r.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(folder))
    img = r.Execute()
    shape, dtype = img.GetSize()[::-1], img.GetPixelIDTypeAsString()
elapsed = time.perf_counter() - t0
usage = resource.getrusage(resource.RUSAGE_SELF)
kids = resource.getrusage(resource.RUSAGE_CHILDREN)
cpu = usage.ru_utime + usage.ru_stime - cpu0 + kids.ru_utime + kids.ru_stime
peak = usage.ru_maxrss
print(json.dumps({'s': elapsed, 'cpu_s': cpu, 'base_kb': base, 'peak_kb': peak,
                  'child_peak_kb': kids.ru_maxrss, 'shape': shape, 'dtype': dtype}))
"""


SYNTAXES = {
    "native": "1.2.840.10008.1.2.1",  # explicit VR little endian
    "jpegls": "1.2.840.10008.1.2.4.80",  # JPEG-LS lossless
    "j2k": "1.2.840.10008.1.2.4.90",  # JPEG 2000 lossless
    "jpeg": "1.2.840.10008.1.2.4.70",  # JPEG lossless, first-order prediction (SV1)
    "rle": "1.2.840.10008.1.2.5",  # RLE lossless
}


def make_series(folder: Path, n_slices: int, size: int = 512, syntax: str = "native") -> None:
    """A CT-like series (HFS axial, 0.7 mm pixels, 1 mm slices), stored uint16 + intercept."""
    from guideplan.io.dicom_write import SeriesSpec, write_slices

    marker = folder / ".complete"
    if marker.exists() and marker.read_text() == f"{n_slices}x{size}":
        return
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.dcm"):
        old.unlink()
    yy, xx = np.mgrid[0:size, 0:size]
    body = (
        (xx - size / 2) ** 2 / (0.45 * size) ** 2 + (yy - size / 2) ** 2 / (0.35 * size) ** 2
    ) < 1
    rng = np.random.default_rng(0)
    spec = SeriesSpec(
        modality="CT",
        seed="bench",
        series_description=f"benchmark 512 {syntax}",
        transfer_syntax=SYNTAXES[syntax],
    )
    chunk = 50
    for start in range(0, n_slices, chunk):
        n = min(chunk, n_slices - start)
        frames = np.where(body, 40.0, -1000.0)[None].repeat(n, axis=0)
        frames += rng.normal(0, 15, frames.shape)
        frames[:, size // 2 - 20 : size // 2 + 20, size // 2 - 20 : size // 2 + 20] = 700.0
        positions = np.array([[-0.35 * size, -0.35 * size, float(start + k)] for k in range(n)])
        write_slices(
            folder,
            frames,
            positions,
            (1, 0, 0),
            (0, 1, 0),
            (0.7, 0.7),
            spec,
            rescale_intercept=-1024.0,
            pixel_representation=0,
            file_names=[f"IM{start + k + 1:05d}.dcm" for k in range(n)],
            instance_numbers=list(range(start + 1, start + n + 1)),
        )
    marker.write_text(f"{n_slices}x{size}")


def run_child(reader: str, folder: Path) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, reader, str(folder)],
        cwd=HERE.parent,  # this checkout's guideplan, not another installed one
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(folder: Path, runs: int, volume_mb: float) -> dict:
    results: dict[str, list[dict]] = {"guideplan": [], "simpleitk": []}
    run_child("guideplan", folder)  # warm the page cache once
    for _ in range(runs):
        for reader in results:
            results[reader].append(run_child(reader, folder))
    summary: dict = {}
    for reader, done in results.items():
        times = [r["s"] for r in done]
        extra_mb = [(r["peak_kb"] - r["base_kb"]) / 1024 for r in done]
        summary[reader] = {
            "median_s": statistics.median(times),
            "median_cpu_s": statistics.median(r["cpu_s"] for r in done),
            "times_s": [round(t, 3) for t in times],
            "peak_above_baseline_mb": statistics.median(extra_mb),
            "peak_ratio_to_int16_volume": statistics.median(extra_mb) / volume_mb,
            "worker_peak_mb": statistics.median(r["child_peak_kb"] for r in done) / 1024,
            "dtype": done[0]["dtype"],
        }
    summary["speedup_simpleitk_over_guideplan"] = (
        summary["simpleitk"]["median_s"] / summary["guideplan"]["median_s"]
    )
    summary["cpu_ratio_guideplan_over_simpleitk"] = (
        summary["guideplan"]["median_cpu_s"] / summary["simpleitk"]["median_cpu_s"]
    )
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--slices", type=int, default=400)
    parser.add_argument("--syntax", nargs="+", default=["native"], choices=sorted(SYNTAXES))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    volume_mb = 512 * 512 * args.slices * 2 / 2**20
    report: dict = {"volume_int16_mb": volume_mb, "slices": args.slices, "runs": args.runs}
    for syntax in args.syntax:
        suffix = "" if syntax == "native" else f"_{syntax}"
        folder = OUT / f"ct512x{args.slices}{suffix}"
        make_series(folder, args.slices, syntax=syntax)
        summary = measure(folder, args.runs, volume_mb)
        report[syntax] = summary
        if args.json:
            continue
        print(f"series: 512x512x{args.slices} CT, {syntax} ({SYNTAXES[syntax]}), {args.runs} runs")
        for reader in ("guideplan", "simpleitk"):
            s = summary[reader]
            print(
                f"{reader:>10}: median {s['median_s']:.3f} s (cpu {s['median_cpu_s']:.3f} s)  "
                f"runs {s['times_s']}  "
                f"peak +{s['peak_above_baseline_mb']:.0f} MB "
                f"({s['peak_ratio_to_int16_volume']:.2f}x int16 volume; largest worker "
                f"{s['worker_peak_mb']:.0f} MB)  dtype {s['dtype']}"
            )
        print(
            f"  SimpleITK / guideplan wall time: {summary['speedup_simpleitk_over_guideplan']:.2f}x"
            f" (target >= 1.8 compressed), cpu ratio guideplan/SimpleITK "
            f"{summary['cpu_ratio_guideplan_over_simpleitk']:.2f}; guideplan peak "
            f"{summary['guideplan']['peak_ratio_to_int16_volume']:.2f}x the volume "
            "(target <= 1.30)"
        )
    if args.json:
        print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
