"""Emulator speed: emulated blocks and frames per second, scalar and batched (issue: calibrated emulator).

Run: ``.venv/bin/python benchmarks/emulator_speed.py`` (or ``make bench-emulator``). Prints a Markdown table;
results are recorded in ``docs/benchmarks.md``. One frame = every block of EfficientNet-B0 to its last exit.
The scalar path is compared with one step of Gymnasium's CartPole-v1, measured in the same run, since an env
step must not be dominated by the emulator.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time

import gymnasium as gym
import numpy as np

from e4gym.dnn import load_model_profile
from e4gym.hardware import BatchedEmulator, EmulatedBackend, load_device


def _rate(fn, min_time_s: float) -> float:
    """Calls per second of ``fn`` (best of 3 windows of ``min_time_s``)."""
    best = 0.0
    for _ in range(3):
        n, t0 = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - t0) < min_time_s:
            for _ in range(64):
                fn()
            n += 64
        best = max(best, n / elapsed)
    return best


def main(argv: list[str] | None = None) -> None:
    """Measure and print the table."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="xavier-nx")
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--seconds", type=float, default=0.5, help="time per measurement window")
    args = ap.parse_args(argv)

    spec = load_device(args.device)
    profile = load_model_profile("efficientnet_b0")
    frame = profile.frame_work()
    blocks = [profile.block_work(i) for i in range(profile.n_blocks)] + [profile.head_work(profile.n_exits - 1)]
    n_blocks = len(blocks)
    rng = np.random.default_rng(0)

    board = EmulatedBackend(spec, seed=0)
    board.run(frame)
    for b in blocks:
        board.run(b)
    scalar_frame = _rate(lambda: board.run(frame), args.seconds)
    it = iter(range(10**12))
    scalar_block = _rate(lambda: board.run(blocks[next(it) % n_blocks]), args.seconds)
    settings = [tuple(int(v) for v in rng.integers(0, spec.n_levels)) for _ in range(256)]
    it2 = iter(range(10**12))

    def apply_run() -> None:
        board.apply(settings[next(it2) % 256])
        board.run(frame)

    scalar_apply = _rate(apply_run, args.seconds)

    env = gym.make("CartPole-v1")
    env.reset(seed=0)

    def cart() -> None:
        _, _, term, trunc, _ = env.step(env.action_space.sample())
        if term or trunc:
            env.reset()

    cartpole = _rate(cart, args.seconds)

    batched = BatchedEmulator(spec, list(range(args.batch)))
    levels = rng.integers(0, spec.n_levels, size=(args.batch, 3))
    batched.run(frame)
    batch_frame = _rate(lambda: batched.run(frame), args.seconds) * args.batch

    def batch_apply_run() -> None:
        batched.apply(levels)
        batched.run(frame)

    batch_apply = _rate(batch_apply_run, args.seconds) * args.batch
    idle = np.full(args.batch, 0.004)

    def batch_stream() -> None:
        batched.apply(levels)
        batched.run(frame)
        batched.idle(idle)

    batch_streaming = _rate(batch_stream, args.seconds) * args.batch

    print(f"command: python {' '.join(sys.argv)}")
    print(f"python {platform.python_version()}, numpy {np.__version__}, {platform.machine()}, "
          f"device {spec.name}, {profile.name} ({n_blocks} blocks per frame), batch {args.batch}\n")
    rows = [
        ("scalar: run(frame)", scalar_frame, scalar_frame * n_blocks, 1e6 / scalar_frame),
        ("scalar: run(block)", scalar_block / n_blocks, scalar_block, 1e6 / scalar_block),
        ("scalar: apply + run(frame)", scalar_apply, scalar_apply * n_blocks, 1e6 / scalar_apply),
        (f"batched x{args.batch}: run(frame)", batch_frame, batch_frame * n_blocks, 1e6 * args.batch / batch_frame),
        (f"batched x{args.batch}: apply + run(frame)", batch_apply, batch_apply * n_blocks,
         1e6 * args.batch / batch_apply),
        (f"batched x{args.batch}: apply + run + idle", batch_streaming, batch_streaming * n_blocks,
         1e6 * args.batch / batch_streaming),
    ]
    print("| path | frames/s | blocks/s | µs per call |")
    print("|---|---:|---:|---:|")
    for name, fps, bps, us in rows:
        print(f"| {name} | {fps:,.0f} | {bps:,.0f} | {us:.1f} |")
    print(f"| CartPole-v1 env.step (reference) | | | {1e6 / cartpole:.1f} |")
    print(f"\nscalar apply+run costs {cartpole / scalar_apply:.2f}× a CartPole step; "
          f"batched apply+run: {batch_apply / 1e6:.2f} M frames/s "
          f"({'meets' if batch_apply >= 1e6 else 'misses'} the 1 M frames/s target)")


if __name__ == "__main__":
    main()
