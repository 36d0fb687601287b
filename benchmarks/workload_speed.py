"""Frames per second of the frame sources: SyntheticVideo.batch (vectorised), SyntheticVideo.next and
TraceSource.next in a Python loop.

Usage::

    python benchmarks/workload_speed.py [--repeats 3]

Prints the command line, the Python and NumPy versions and a Markdown table (best of ``--repeats`` runs).
Runs in a few seconds.
"""

from __future__ import annotations

import argparse
import platform
import shlex
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from e4gym.workload import SyntheticVideo, TraceSource, load_trace, save_trace

ACCURACIES = (0.4, 0.56, 0.67, 0.73, 0.7769)  # efficientnet_b0's exits


def best_fps(run: Callable[[], None], frames: int, repeats: int) -> tuple[float, float]:
    """Run ``run`` (which serves ``frames`` frames) ``repeats`` times; return (best frames/s, best seconds)."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - t0)
    return frames / best, best


def make_trace(folder: Path, frames: int = 2000) -> Path:
    """Write a small trace (from a synthetic stream) to ``folder`` and return its path."""
    b = SyntheticVideo(ACCURACIES, seed=0).batch(frames)
    labels = np.random.default_rng(0).integers(0, 1000, frames)
    predictions = np.where(b.correct, labels[:, None], (labels[:, None] + 1) % 1000)
    return save_trace(
        folder / "bench.npz",
        model="efficientnet_b0",
        fps=30.0,
        features=b.features,
        feature_change=b.feature_change,
        pooled=None,
        predictions=predictions,
        confidence=b.confidence,
        correct=b.correct,
        labels=labels,
        scene=b.scene,
    )


def main(argv: list[str] | None = None) -> None:
    """Measure and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs per row; the best is reported")
    args = parser.parse_args(argv)

    print(f"command: {shlex.join([Path(sys.executable).name, *sys.argv])}")
    print(f"python {platform.python_version()}, numpy {np.__version__}, {platform.machine()} {platform.system()}")
    print()

    rows: list[tuple[str, int, float, float]] = []
    video = SyntheticVideo(ACCURACIES, seed=0)
    n = 100_000
    fps, sec = best_fps(lambda: video.batch(n), n, args.repeats)
    rows.append(("`SyntheticVideo.batch(100_000)` (vectorised)", n, sec, fps))

    n = 20_000

    def loop_synthetic() -> None:
        for _ in range(n):
            video.next()

    fps, sec = best_fps(loop_synthetic, n, args.repeats)
    rows.append(("`SyntheticVideo.next()` loop", n, sec, fps))

    with tempfile.TemporaryDirectory() as tmp:
        source = TraceSource(load_trace(make_trace(Path(tmp))), seed=0)

    def loop_trace() -> None:
        for _ in range(n):
            source.next()

    fps, sec = best_fps(loop_trace, n, args.repeats)
    rows.append(("`TraceSource.next()` loop (2000-frame trace, wraps)", n, sec, fps))

    print("| source | frames | best time (s) | frames/s |")
    print("|---|---:|---:|---:|")
    for name, frames, seconds, rate in rows:
        print(f"| {name} | {frames:,} | {seconds:.4f} | {rate:,.0f} |")


if __name__ == "__main__":
    main()
