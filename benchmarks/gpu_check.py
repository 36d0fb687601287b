"""Check e4gym's real-hardware path on an NVIDIA desktop/datacenter GPU, read-only.

Opens :class:`e4gym.hardware.nvml.NvmlBackend` with ``read_only=True`` (only NVML queries: the clocks are never
locked or changed), prints what NVML reports (name, supported clocks, current clocks, power, temperature), then
runs multi-exit frames (EfficientNet-B0 by default) with a CUDA :class:`e4gym.hardware.runner.TorchRunner`
through the backend and prints, per exit: latency (CUDA events; mean, median, p95), energy per frame (J, from
the energy counter) and average power (W); then the same frame block by block (as the block env runs it), and,
unless ``--cpu-frames 0``, the CPU latency of the same frames for comparison.

Run (on the GPU machine, from the repository root)::

    .venv/bin/python benchmarks/gpu_check.py                  # GPU 0, 200 frames per exit
    .venv/bin/python benchmarks/gpu_check.py --index 1 --frames 500 --out gpu_check.json

It needs e4gym installed (``pip install -e .``) with a CUDA build of torch and nvidia-ml-py.

Energy: the driver updates the counter every few tens of ms, so one ~ms frame's own reading is coarse; the
table gives the counter difference over the whole loop divided by the number of frames (``J/frame``) and the
mean of the per-run readings (``J/frame (runs)``). ``dyn J/frame`` subtracts the idle power measured first.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from e4gym.dnn import load_model_profile
from e4gym.dnn.work import Work
from e4gym.hardware.nvml import NvmlBackend
from e4gym.hardware.runner import TorchRunner


def _pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def _counter_period_s(gpu: NvmlBackend, window_s: float = 0.5) -> float | None:
    """How often the energy counter changes (s), polled for ``window_s`` (``None``: no counter or no change)."""
    first = gpu.energy_mj()
    if first is None:
        return None
    changes, last, t0 = [], first, time.perf_counter()
    while time.perf_counter() - t0 < window_s:
        v = gpu.energy_mj()
        if v is None:
            return None
        if v != last:
            changes.append(time.perf_counter())
            last = v
    if len(changes) < 2:
        return None
    return (changes[-1] - changes[0]) / (len(changes) - 1)


def _measure(gpu: NvmlBackend, works: list[Work], frames: int, batch: int, idle_w: float) -> dict[str, Any]:
    """Run ``frames`` frames, each the ``works`` in turn, through the backend; summarise per frame."""
    for _ in range(3):  # untimed: warm-up of this exact sequence
        for w in works:
            gpu.run(w, batch)
    lat, run_j = [], []
    e0, t0 = gpu.energy_mj(), time.perf_counter()
    for _ in range(frames):
        f_lat = f_j = 0.0
        for w in works:
            m = gpu.run(w, batch)
            f_lat += m.latency_s
            f_j += m.energy_j
        lat.append(f_lat)
        run_j.append(f_j)
    wall = time.perf_counter() - t0
    e1 = gpu.energy_mj()
    window_j = (e1 - e0) / 1e3 if e0 is not None and e1 is not None else sum(run_j)
    s = gpu.read_sensors()
    per_frame = window_j / frames
    return {
        "frames": frames,
        "batch": batch,
        "latency_ms_mean": 1e3 * statistics.fmean(lat),
        "latency_ms_p50": 1e3 * _pct(lat, 0.5),
        "latency_ms_p95": 1e3 * _pct(lat, 0.95),
        "energy_j_per_frame": per_frame,
        "energy_j_per_frame_runs": statistics.fmean(run_j),
        "dyn_energy_j_per_frame": per_frame - idle_w * wall / frames,
        "avg_power_w": window_j / wall if wall > 0 else float("nan"),
        "wall_s": wall,
        "fps": frames / wall if wall > 0 else float("nan"),
        "temp_c_end": s.temp_c,
        "gpu_mhz_end": s.gpu_hz / 1e6,
        "mem_mhz_end": s.emc_hz / 1e6,
        "throttled_end": s.throttled,
    }


def _cpu_latency(model: str, size: int, works: list[Work], frames: int, batch: int) -> dict[str, float]:
    runner = TorchRunner(model, device="cpu", input_size=size, warmup=1)
    out = {}
    for w in works:
        runner.run(w, batch)
        lat = [runner.run(w, batch) for _ in range(frames)]
        out[w.key] = 1e3 * statistics.fmean(lat)
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the check, print the tables, optionally write JSON; returns the exit status."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--index", type=int, default=0, help="NVML GPU index (as nvidia-smi numbers GPUs)")
    ap.add_argument("--model", default="efficientnet_b0", help="model profile (efficientnet_b0, mobilenet_v2, ...)")
    ap.add_argument("--frames", type=int, default=200, help="frames per exit on the GPU")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--input-size", type=int, default=224, help="input side (pixels)")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float16", "bfloat16"])
    ap.add_argument("--idle-s", type=float, default=1.0, help="idle period measured first (s)")
    ap.add_argument("--cpu-frames", type=int, default=5, help="frames per exit on the CPU (0: skip the CPU run)")
    ap.add_argument("--out", type=Path, help="also write the results to this JSON file")
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"],
                    help="where the measured frames run (cpu: only to check the script's plumbing)")
    args = ap.parse_args(argv)
    if args.frames < 1 or args.batch < 1:
        ap.error("--frames and --batch must be >= 1")

    import torch

    prof = load_model_profile(args.model)
    result: dict[str, Any] = {
        "host": {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
                 "machine": platform.machine()},
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
    }
    with NvmlBackend(args.index, read_only=True) as gpu:
        s = gpu.read_sensors()
        spec = gpu.spec
        table = gpu.clock_table
        info = {
            "name": gpu.name,
            "spec_name": spec.name,
            "memory_clocks_mhz": sorted(table),
            "graphics_clocks_per_memory_clock": {str(m): len(g) for m, g in sorted(table.items())},
            "gpu_levels": spec.n_gpu,
            "emc_levels": spec.n_emc,
            "graphics_mhz_range": [spec.gpu_freqs_hz[0] / 1e6, spec.gpu_freqs_hz[-1] / 1e6],
            "cuda_cores": spec.cuda_cores,
            "dram_gbps": spec.dram_bw_bytes_per_s / 1e9,
            "slowdown_c": spec.thermal.throttle_c,
            "energy_source": gpu.energy_source,
            "now": {"graphics_mhz": s.gpu_hz / 1e6, "memory_mhz": s.emc_hz / 1e6, "power_w": s.power_w,
                    "temp_c": s.temp_c, "throttled": s.throttled, "levels": list(gpu.levels)},
            "spec_notes": gpu.spec_notes,
        }
        result["gpu"] = info
        print(f"# {gpu.name} (NVML index {args.index}; read-only: clocks are never changed)")
        print(f"memory clocks (MHz): {info['memory_clocks_mhz']}")
        print(f"graphics clocks per memory clock: {info['graphics_clocks_per_memory_clock']}")
        lo, hi = info["graphics_mhz_range"]
        print(f"levels: gpu {spec.n_gpu} ({lo:.0f}-{hi:.0f} MHz), emc {spec.n_emc}; CUDA cores {spec.cuda_cores}; "
              f"DRAM {info['dram_gbps']:.0f} GB/s")
        print(f"now: graphics {s.gpu_hz / 1e6:.0f} MHz, memory {s.emc_hz / 1e6:.0f} MHz, {s.power_w:.1f} W, "
              f"{s.temp_c:.0f} °C, throttled {s.throttled}, levels {gpu.levels}")
        for note in gpu.spec_notes:
            print(f"note: {note}")

        period = _counter_period_s(gpu)
        info["energy_counter_period_ms"] = None if period is None else 1e3 * period
        idle = gpu.idle(args.idle_s)
        idle_w = idle.avg_power_w
        info["idle_power_w"] = idle_w
        print(f"energy: {gpu.energy_source}; counter changes every "
              f"{'?' if period is None else f'{1e3 * period:.1f}'} ms; idle {idle_w:.1f} W over {idle.latency_s:.2f} s")

        device = f"cuda:{gpu.cuda_index()}" if args.device == "cuda" else "cpu"
        runner = TorchRunner(args.model, device=device, input_size=args.input_size, dtype=args.dtype, warmup=3)
        gpu.runner = runner
        rows = []
        for e in range(prof.n_exits):
            w = prof.frame_work(e)
            r = _measure(gpu, [w], args.frames, args.batch, idle_w)
            rows.append({"exit": e, "after_block": prof.exits[e].after_block, "work": w.key, **r})
        last = prof.exits[-1].after_block
        block_steps = [prof.block_work(j) for j in range(last + 1)] + [prof.head_work(prof.n_exits - 1)]
        r = _measure(gpu, block_steps, args.frames, args.batch, idle_w)
        rows.append({"exit": prof.n_exits - 1, "after_block": last, "work": "block by block", **r})
        result["cuda"] = rows

        cpu = {}
        if args.cpu_frames > 0:
            cpu = _cpu_latency(args.model, args.input_size, [prof.frame_work(e) for e in range(prof.n_exits)],
                               args.cpu_frames, args.batch)
        result["cpu_latency_ms"] = cpu
        s_end = gpu.read_sensors()
        result["gpu"]["end"] = {"graphics_mhz": s_end.gpu_hz / 1e6, "memory_mhz": s_end.emc_hz / 1e6,
                                "power_w": s_end.power_w, "temp_c": s_end.temp_c}

    print()
    print(f"## {args.model}, batch {args.batch}, {args.frames} frames per row, {args.dtype}, "
          f"{args.input_size}px, {device} (torch {torch.__version__})")
    print("| exit | blocks | work | latency ms mean | p50 | p95 | J/frame | J/frame (runs) | dyn J/frame | avg W | "
          "end MHz | CPU ms |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        cpu_ms = cpu.get(row["work"])
        print(f"| {row['exit']} | 0..{row['after_block']} | {row['work']} | {row['latency_ms_mean']:.3f} | "
              f"{row['latency_ms_p50']:.3f} | {row['latency_ms_p95']:.3f} | {row['energy_j_per_frame']:.4f} | "
              f"{row['energy_j_per_frame_runs']:.4f} | {row['dyn_energy_j_per_frame']:.4f} | "
              f"{row['avg_power_w']:.1f} | {row['gpu_mhz_end']:.0f} | "
              f"{'-' if cpu_ms is None else f'{cpu_ms:.1f}'} |")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))
        print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
