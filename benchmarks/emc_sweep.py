"""The emulator against the public TX2 sweep of GPU × memory clocks (issue 15): latency per point and the
memory-clock sensitivity.

Run: ``.venv/bin/python benchmarks/emc_sweep.py [--points] [--csv FILE]`` (default: ``benchmarks/data/``, a copy of the
shared sweep). For each
model of the sweep (ResNet-50 and tiny-YOLOv3, batch 1) and each measured (GPU clock, EMC clock) point, the
emulator's latency of the full network on ``jetson-tx2`` at MAXN with the CPU at its top level (as on the board),
from the analytic cost table (no noise, no temperature). Prints the per-point table (``--points``), then the
summary per model: median relative latency error, and the ratios the issue's targets are about:

- the EMC ratio at the top GPU clock: latency at EMC 1062.4 MHz / at 1866 MHz (board: 1.25 and 1.35);
- the EMC ratio at the lowest GPU clock (board: about 1.00: compute-bound there);
- the GPU ratio at the top EMC clock: latency at the lowest / at the top GPU clock.

The board ran TensorRT engines (``benchmarks/data/README.md``), so the emulator runs ``--runtime tensorrt-fp16``
by default (:mod:`e4gym.hardware.runtime`, whose three fitted factors come from this sweep); ``--runtime pytorch``
shows the eager model the board coefficients describe.
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
from pathlib import Path

import numpy as np

from e4gym.dnn.profile import load_model_profile
from e4gym.errors import ConfigError
from e4gym.hardware.measured import read_latency_sweep
from e4gym.hardware.model import cost_table, power_table
from e4gym.hardware.runtime import runtime_view
from e4gym.hardware.spec import load_device

DEFAULT_CSV = Path(__file__).resolve().parent / "data" / "tx2_trtexec_gpu_emc_sweep.csv"  # see data/README.md
MODELS = {"resnet50": "resnet50", "tiny-yolov3": "tiny_yolov3"}  # the sweep's name -> e4gym's profile
EMC_LOW_HZ, EMC_HIGH_HZ = 1062400000, 1866000000


def read_sweep(path: Path) -> dict[str, dict[tuple[int, int], float]]:
    """``{model: {(gpu_hz, emc_hz): latency_ms}}`` from the sweep CSV
    (:func:`~e4gym.hardware.measured.read_latency_sweep`, in ms).

    Raises:
        ConfigError: a missing file or a malformed row (names the file and the row).
    """
    return {m: {p: 1e3 * s for p, s in pts.items()} for m, pts in read_latency_sweep(path).items()}


def emulated_ms(profile_name: str, runtime: str = "tensorrt-fp16",
                device: str = "jetson-tx2") -> dict[tuple[int, int], float]:
    """``{(gpu_hz, emc_hz): latency_ms}`` of the full network under ``runtime`` on the emulator, CPU at its top
    level."""
    spec, profile = runtime_view(load_device(device), load_model_profile(profile_name), runtime)
    work = profile.frame_work()
    table = cost_table(spec, work, power_table(spec)).latency_s.reshape(spec.n_levels)
    top_cpu = spec.max_levels()[0]
    return {(int(g), int(e)): 1e3 * float(table[top_cpu, j, k])
            for j, g in enumerate(spec.gpu_freqs_hz) for k, e in enumerate(spec.emc_freqs_hz)}


def _ratios(lat: dict[tuple[int, int], float], low_gpu: int, top_gpu: int) -> tuple[float, float, float]:
    """The EMC ratio at the top GPU clock, the EMC ratio at the lowest, the GPU ratio at the top EMC clock."""
    return (lat[(top_gpu, EMC_LOW_HZ)] / lat[(top_gpu, EMC_HIGH_HZ)],
            lat[(low_gpu, EMC_LOW_HZ)] / lat[(low_gpu, EMC_HIGH_HZ)],
            lat[(low_gpu, EMC_HIGH_HZ)] / lat[(top_gpu, EMC_HIGH_HZ)])


def compare(sweep: dict[str, dict[tuple[int, int], float]],
            runtime: str = "tensorrt-fp16") -> dict[str, dict[str, float]]:
    """Per model: the median relative error and the three ratios, board and emulator (under ``runtime``)."""
    out = {}
    for name, points in sweep.items():
        if name not in MODELS:
            continue
        emu = emulated_ms(MODELS[name], runtime)
        missing = [p for p in points if p not in emu]
        if missing:
            raise ConfigError(f"{name}: clocks {missing[:3]} are not levels of jetson-tx2")
        errors = [abs(emu[p] / ms - 1.0) for p, ms in points.items()]
        gpus = sorted({g for g, _ in points})
        board, model = _ratios(points, gpus[0], gpus[-1]), _ratios(emu, gpus[0], gpus[-1])
        out[name] = {
            "points": len(points), "median_error": statistics.median(errors), "max_error": max(errors),
            "board_emc_top": board[0], "emu_emc_top": model[0], "board_emc_low": board[1], "emu_emc_low": model[1],
            "board_gpu": board[2], "emu_gpu": model[2],
        }
    return out


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    """Print the tables; return the summary per model."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--csv", type=Path, default=DEFAULT_CSV, help="the sweep (default: benchmarks/data/...)")
    ap.add_argument("--points", action="store_true", help="also print every point")
    ap.add_argument("--runtime", default="tensorrt-fp16",
                    help="the emulator's runtime (default tensorrt-fp16, as the board's engines; pytorch: eager)")
    args = ap.parse_args(argv)
    sweep = read_sweep(args.csv)
    given = argv if argv is not None else sys.argv[1:]
    print(f"command: {shlex.join(['python', 'benchmarks/emc_sweep.py', *given])}")
    print(f"sweep: {args.csv.name} (Jetson TX2, batch 1, TensorRT); emulator: jetson-tx2, MAXN, top CPU level, "
          f"runtime {args.runtime}")
    if args.points:
        print("\n| model | GPU MHz | EMC MHz | board ms | emulator ms | error % |\n|---|---:|---:|---:|---:|---:|")
        for name, points in sweep.items():
            if name not in MODELS:
                continue
            emu = emulated_ms(MODELS[name], args.runtime)
            for (g, e), ms in sorted(points.items()):
                print(f"| {name} | {g / 1e6:.1f} | {e / 1e6:.1f} | {ms:.2f} | {emu[(g, e)]:.2f} | "
                      f"{100 * (emu[(g, e)] / ms - 1):+.1f} |")
    summary = compare(sweep, args.runtime)
    print("\n| model | points | median error % | max error % | EMC ratio, top GPU (board / emulator) "
          "| EMC ratio, lowest GPU (board / emulator) | GPU ratio, top EMC (board / emulator) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, s in summary.items():
        print(f"| {name} | {s['points']} | {100 * s['median_error']:.1f} | {100 * s['max_error']:.1f} "
              f"| {s['board_emc_top']:.3f} / {s['emu_emc_top']:.3f} | {s['board_emc_low']:.3f} / "
              f"{s['emu_emc_low']:.3f} | {s['board_gpu']:.2f} / {s['emu_gpu']:.2f} |")
    targets = all(s["median_error"] <= 0.10 and abs(s["emu_emc_top"] / s["board_emc_top"] - 1) <= 0.15
                  and s["emu_emc_low"] <= 1.03 for s in summary.values())
    print(f"\nissue 15's targets (median error <= 10 %, top-GPU EMC ratio within 15 %, lowest-GPU ratio <= 1.03): "
          f"{'met' if targets else 'missed'}")
    return summary


if __name__ == "__main__":
    np.seterr(all="raise")
    main()
