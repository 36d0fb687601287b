"""Speed of refilling many SyntheticVideo streams by a chunk each: the per-stream loop
``[s.batch(512) for s in streams]`` against ``SyntheticVideo.batch_many(streams, 512)`` (the same frames, bit for
bit), for 1, 64 and 1024 streams (the native vector env's refill).

Usage::

    python benchmarks/synthetic_speed.py [--repeats 5] [--streams 1 64 1024] [--frames 512]

Prints the command line, the Python and NumPy versions and a Markdown table of µs per frame (per stream and
frame: wall time / (streams · frames)), best of ``--repeats`` runs, the variants interleaved within each repeat.
Columns: the loop; ``batch_many``; ``batch_many`` writing into reused arrays (``out=``); and the random draws
alone (each stream's own generator, the part that stays per stream: the floor of any per-stream-exact method).
Takes ~15 s with the defaults.

Before measuring, a 16 MiB array is allocated and freed. That raises glibc's thresholds (mmap, trim) as in any
process that has freed a large array before (e.g. a vector env after its first refill); at their start values
each large array is mapped anew and freed heap memory goes back to the OS, so pages are faulted in again and
again (on this VM that added ~0.1 µs a frame to both the loop and ``batch_many``, depending on the row order).
"""

from __future__ import annotations

import argparse
import platform
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from e4gym.workload import SyntheticVideo
from e4gym.workload.synthetic import _draw_stacked

ACCURACIES = (0.4, 0.56, 0.67, 0.73, 0.7769)  # efficientnet_b0's exits


def best_seconds(runs: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Best wall time of each of ``runs`` over ``repeats`` rounds (each round runs every one once, in turn)."""
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(repeats):
        for name, run in runs.items():
            t0 = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - t0)
    return best


def row(s_n: int, frames: int, repeats: int) -> dict[str, float]:
    """µs per frame of each variant for ``s_n`` streams of ``frames`` frames a call."""
    streams = [SyntheticVideo(ACCURACIES, seed=i) for i in range(s_n)]  # all at a chunk boundary throughout
    out = SyntheticVideo.batch_many(streams, frames)
    rngs = [s._rng for s in streams]
    assert rngs[0] is not None
    scratch: dict = {}
    best = best_seconds(
        {
            "loop": lambda: [s.batch(frames) for s in streams],
            "many": lambda: SyntheticVideo.batch_many(streams, frames),
            "many_out": lambda: SyntheticVideo.batch_many(streams, frames, out=out),
            # The draws of one chunk (into the stacked buffers, normals scaled), blocks of 16 streams.
            "draws": lambda: [_draw_stacked(rngs[i : i + 16], 512, streams[0], scratch) for i in range(0, s_n, 16)],
        },
        repeats,
    )
    per = {k: v / (s_n * frames) * 1e6 for k, v in best.items()}
    per["draws"] *= frames / 512  # per frame of a chunk
    return per


def main(argv: list[str] | None = None) -> None:
    """Measure and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="rounds; the best of each is reported")
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 64, 1024], help="numbers of streams")
    parser.add_argument("--frames", type=int, default=512, help="frames per stream and call (512: one chunk)")
    args = parser.parse_args(argv)
    np.ones(2 << 20).sum()  # 16 MiB allocated and freed: see the module docstring

    print(f"command: {shlex.join([Path(sys.executable).name, *sys.argv])}")
    print(f"python {platform.python_version()}, numpy {np.__version__}, {platform.machine()} {platform.system()}")
    print()
    print("| streams | loop `batch` (µs/frame) | `batch_many` (µs/frame) | `batch_many(out=)` (µs/frame) "
          "| speed-up | random draws alone (µs/frame) |")
    print("|---:|---:|---:|---:|---:|---:|")
    for s_n in args.streams:
        per = row(s_n, args.frames, args.repeats)
        print(
            f"| {s_n} | {per['loop']:.3f} | {per['many']:.3f} | {per['many_out']:.3f} "
            f"| {per['loop'] / per['many']:.2f}× | {per['draws']:.3f} |"
        )


if __name__ == "__main__":
    main()
