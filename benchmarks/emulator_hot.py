"""Emulator hot paths as an env drives them: per-call time of the scalar and the batched emulator (issue 13).

Run: ``.venv/bin/python benchmarks/emulator_hot.py`` (``--boards``, ``--repeats``, ``--calls``). Prints a
Markdown table of the median over ``--repeats`` windows of the time per call (µs), with every random input
(levels, exits, idle times, active masks) drawn before the clock starts. Record results in
``docs/benchmarks.md``; compare before/after within one run, or as ratios to the steady ``run(frame)`` row,
since machines (and shared cores) differ.

Rows: the scalar board with unchanging levels; with random levels and exits (``apply`` + ``run``), and with
the idle wait until the next frame (+ ``idle(5 ms)``), as the frame env steps it; the batched emulator's
``apply`` + ``run_choice`` + ``idle(active mask)``, as the native vector env steps it. The line above the table
gives the time the first board took to get the emulator's compiled kernels ready (numba compiles them on the
first use after an edit, seconds; later processes load them from numba's cache in ``__pycache__``).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np

from e4gym.dnn import load_model_profile
from e4gym.hardware import BatchedEmulator, EmulatedBackend, load_device


def median_us(step: Callable[[int], None], calls: int, repeats: int) -> float:
    """Median over ``repeats`` windows of the time per call of ``step(k)``, ``k`` = 0 .. calls − 1 (µs)."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for k in range(calls):
            step(k)
        times.append((time.perf_counter() - t0) / calls * 1e6)
    return statistics.median(times)


#: Command-line options: flag -> (default, help).
OPTIONS = {
    "--device": ("xavier-nx", "device name"),
    "--boards": (1024, "boards of the batched emulator"),
    "--repeats": (7, "timed windows; the median is printed"),
    "--calls": (2000, "scalar calls per window (batched: calls / 10)"),
}


def main(argv: list[str] | None = None) -> None:
    """Measure and print the table."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for flag, (default, text) in OPTIONS.items():
        ap.add_argument(flag, type=type(default), default=default, help=text)
    args = ap.parse_args(argv)

    spec = load_device(args.device)
    profile = load_model_profile("efficientnet_b0")
    works = tuple(profile.frame_work(e) for e in range(profile.n_exits))
    frame = works[-1]
    rng = np.random.default_rng(0)
    n = args.calls
    levels = [tuple(int(v) for v in row) for row in rng.integers(0, spec.n_levels, size=(n, 3))]
    exits = [works[int(e)] for e in rng.integers(0, len(works), size=n)]

    t0 = time.perf_counter()
    board = EmulatedBackend(spec, seed=0)
    for w in works:
        board.run(w)
    board.idle(0.0)
    ready_s = time.perf_counter() - t0

    def steady(k: int) -> None:
        board.run(frame)

    def apply_run(k: int) -> None:
        board.apply(levels[k])
        board.run(exits[k])

    def apply_run_idle(k: int) -> None:
        board.apply(levels[k])
        board.run(exits[k])
        board.idle(0.005)

    rows = [
        ("scalar: run(frame), levels unchanged", median_us(steady, n, args.repeats)),
        ("scalar: apply + run, random levels and exits", median_us(apply_run, n, args.repeats)),
        ("scalar: apply + run + idle(5 ms), random", median_us(apply_run_idle, n, args.repeats)),
    ]

    nb, steps = args.boards, max(1, n // 10)
    t0 = time.perf_counter()
    emu = BatchedEmulator(spec, list(range(nb)))
    emu.apply(np.zeros((nb, 3), dtype=np.int64))
    ready_s += time.perf_counter() - t0
    b_levels = rng.integers(0, spec.n_levels, size=(steps, nb, 3))
    b_exits = rng.integers(0, len(works), size=(steps, nb))
    b_active = rng.random((steps, nb)) < 0.7
    b_idle = np.where(b_active, rng.uniform(0.0, 0.01, size=(steps, nb)), 0.0)
    emu.run_choice(works, b_exits[0])

    def batched(k: int) -> None:
        emu.apply(b_levels[k])
        emu.run_choice(works, b_exits[k])
        emu.idle(b_idle[k], active=b_active[k])

    def batched_steady(k: int) -> None:
        emu.run(frame)

    rows += [
        (f"batched x{nb}: run(frame), levels unchanged", median_us(batched_steady, steps, args.repeats)),
        (f"batched x{nb}: apply + run_choice + idle(active), random", median_us(batched, steps, args.repeats)),
    ]

    print(f"command: python {' '.join(sys.argv)}")
    print(f"python {platform.python_version()}, numpy {np.__version__}, {platform.machine()}, device {spec.name}, "
          f"{profile.name} ({len(works)} exits); median of {args.repeats} windows")
    print(f"emulator kernels ready (compiled, or loaded from numba's cache) with the first boards: {ready_s:.2f} s\n")
    print("| path | µs per call | × steady scalar run |")
    print("|---|---:|---:|")
    base = rows[0][1]
    for name, us in rows:
        print(f"| {name} | {us:,.1f} | {us / base:.1f} |")


if __name__ == "__main__":
    main()
