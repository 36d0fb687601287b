"""Frames per second of ``record_trace`` (decode + preprocess + all exits + features) on this CPU.

Run: ``.venv/bin/python benchmarks/record_speed.py`` (about a minute on 2 cores). Prints a Markdown table.

A ~60-frame 320×240 MPEG-4 clip is generated in a temporary folder and recorded with EfficientNet-B0 at
224×224 and 112×112 pixels. The weights are random; a randomly initialised EfficientNet's activations decay to
denormal floats, which are very slow on x86 CPUs and do not occur with trained weights, so denormals are
flushed to zero (``torch.set_flush_denormal(True)``) to measure what a trained network would cost.
"""

from __future__ import annotations

import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from e4gym.workload.record import BATCH_FRAMES, record_trace

N_FRAMES = 60
WIDTH, HEIGHT = 320, 240
MODEL = "efficientnet_b0"
SIZES = (224, 112)


def make_clip(path: Path, n: int = N_FRAMES) -> Path:
    """A moving-gradient clip with a cut half-way, MPEG-4 in MP4, 30 fps."""
    import av

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=30)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        for t in range(n):
            phase = (xx + 3 * t) if t < n // 2 else (yy * 2 + 5 * t)
            base = np.stack([(phase % 256), (yy + t) % 256, (xx * yy // 64) % 256], -1).astype(np.float64)
            img = np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def main() -> int:
    """Print the benchmark table; returns 0."""
    torch.set_flush_denormal(True)
    warnings.filterwarnings("ignore", message="no exits checkpoint")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        clip = make_clip(Path(tmp) / "clip.mp4")
        out = Path(tmp) / "trace.npz"
        record_trace(MODEL, None, clip, out, image_size=112, max_frames=4, progress=False)  # warm-up
        for size in SIZES:
            t0 = time.perf_counter()
            record_trace(MODEL, None, clip, out, image_size=size, progress=False)
            dt = time.perf_counter() - t0
            rows.append((size, N_FRAMES, dt))
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}, "
        f"batch {BATCH_FRAMES} frames, clip {N_FRAMES} frames {WIDTH}×{HEIGHT} MPEG-4, model {MODEL} (random weights, "
        f"denormals flushed)\n"
    )
    print("| input (px) | frames | seconds | frames/s | ms/frame |")
    print("|------------|--------|---------|----------|----------|")
    for size, n, dt in rows:
        print(f"| {size}×{size} | {n} | {dt:.2f} | {n / dt:.1f} | {1000 * dt / n:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
