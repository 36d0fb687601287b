"""Env speed: steps per second of CartPole-v1 and of each e4gym env, and of the native vector env.

Run: ``.venv/bin/python benchmarks/env_speed.py`` (or ``make bench-env``). Prints a Markdown table; results are
recorded in ``docs/benchmarks.md``. Every env is built with ``gymnasium.make`` / ``gymnasium.make_vec`` (so the
wrappers users get are included) and driven by random valid actions drawn before timing; episodes reset as
they end. Everything is measured in one run, so read the ratios rather than the absolute rates.

Targets (issue 13, in the same run): the frame env at >= 0.5x CartPole-v1's step rate (aim: 1.0x); the native
vector env with 1024 envs at >= 10x CartPole-v1's single-env step rate in frames per second (aim: 30x). Issue 18:
the edge-cloud env at >= 0.3x. Issue 19: the batching env (default settings: four models, 1 s decision intervals)
at >= 0.2x; one of its steps serves a whole interval (some 50 requests on Xavier NX at the default rates).
"""

from __future__ import annotations

import argparse
import platform
import sys
import time

import gymnasium as gym
import numpy as np

import e4gym  # noqa: F401  (registers the envs)


def _single_rate(env: gym.Env, seconds: float, repeats: int) -> float:
    """Steps per second of ``env`` with random actions (best of ``repeats`` windows of ``seconds``)."""
    env.action_space.seed(0)
    actions = [env.action_space.sample() for _ in range(4096)]
    env.reset(seed=0)
    best = 0.0
    for _ in range(repeats):
        n, t0 = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - t0) < seconds:
            for a in actions[:256]:
                _, _, term, trunc, _ = env.step(a)
                if term or trunc:
                    env.reset()
            n += 256
            actions = actions[256:] + actions[:256]
        best = max(best, n / elapsed)
    return best


def _vector_rate(venv: gym.vector.VectorEnv, seconds: float, repeats: int) -> float:
    """Frames (sub-env steps) per second of a vector env with random actions, resets included."""
    rng = np.random.default_rng(0)
    nvec = venv.single_action_space.nvec
    actions = [rng.integers(0, nvec, size=(venv.num_envs, len(nvec))) for _ in range(16)]
    venv.reset(seed=0)
    best = 0.0
    for _ in range(repeats):
        n, t0 = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - t0) < seconds:
            for a in actions:
                venv.step(a)
            n += len(actions)
        best = max(best, n * venv.num_envs / elapsed)
    return best


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Measure, print the table, and return the rates (steps or frames per second) by row name."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="xavier-nx")
    ap.add_argument("--num-envs", type=int, default=1024, help="sub-envs of the native vector env")
    ap.add_argument("--seconds", type=float, default=1.0, help="time per measurement window (s)")
    ap.add_argument("--repeats", type=int, default=3, help="windows per row; the best is reported")
    args = ap.parse_args(argv)

    cartpole = _single_rate(gym.make("CartPole-v1"), args.seconds, args.repeats)
    frame_env = gym.make("e4gym/EarlyExitDVFS-v1", device=args.device)
    frame = _single_rate(frame_env, args.seconds, args.repeats)
    block_env = gym.make("e4gym/EarlyExitDVFSBlock-v1", device=args.device)
    block = _single_rate(block_env, args.seconds, args.repeats)
    frame_mem = _single_rate(
        gym.make("e4gym/EarlyExitDVFS-v1", device=args.device, control_memory=True), args.seconds, args.repeats
    )
    edge_cloud = _single_rate(gym.make("e4gym/EdgeCloudDVFS-v0", device=args.device), args.seconds, args.repeats)
    batch_env = gym.make("e4gym/BatchConcurrency-v0", device=args.device)
    batch_env.reset(seed=0)
    batch_env.step(batch_env.action_space.sample())  # loads the compiled serving kernel before timing
    batching = _single_rate(batch_env, args.seconds, args.repeats)
    venv = gym.make_vec("e4gym/EarlyExitDVFS-v1", num_envs=args.num_envs, device=args.device)
    vector = _vector_rate(venv, args.seconds * 2, args.repeats)
    sync = _vector_rate(
        gym.make_vec("e4gym/EarlyExitDVFS-v1", num_envs=8, vectorization_mode="sync", device=args.device),
        args.seconds, args.repeats,
    )

    print(f"command: python {' '.join(sys.argv)}")
    print(f"python {platform.python_version()}, numpy {np.__version__}, gymnasium {gym.__version__}, "
          f"{platform.machine()}, device {args.device}, efficientnet_b0, random actions, episodes of 1000 frames\n")
    rows = [
        ("CartPole-v1 (gymnasium.make)", "steps", cartpole),
        ("e4gym/EarlyExitDVFS-v1", "steps = frames", frame),
        ("e4gym/EarlyExitDVFS-v1, control_memory=True", "steps = frames", frame_mem),
        ("e4gym/EarlyExitDVFSBlock-v1", "steps = blocks", block),
        ("e4gym/EdgeCloudDVFS-v0 (synthetic uplink)", "steps = frames", edge_cloud),
        ("e4gym/BatchConcurrency-v0 (4 models, Poisson)", "steps = 1 s intervals", batching),
        ("make_vec sync, 8 envs", "frames", sync),
        (f"make_vec native vector env, {args.num_envs} envs", "frames", vector),
    ]
    print("| env | counted | per second | µs each | × CartPole rate |")
    print("|---|---|---:|---:|---:|")
    for name, unit, rate in rows:
        print(f"| {name} | {unit} | {rate:,.0f} | {1e6 / rate:.2f} | {rate / cartpole:.2f} |")
    f, v = frame / cartpole, vector / cartpole
    print(f"\nframe env: {f:.2f}× CartPole's step rate (target ≥ 0.5: {'met' if f >= 0.5 else 'missed'}; aim 1.0); "
          f"native vector env: {vector / 1e6:.2f} M frames/s = {v:.1f}× CartPole's rate (target ≥ 10: "
          f"{'met' if v >= 10 else 'missed'}; aim 30); edge-cloud env: {edge_cloud / cartpole:.2f}× (target ≥ 0.3, "
          f"issue 18: {'met' if edge_cloud / cartpole >= 0.3 else 'missed'}); batching env: {batching / cartpole:.2f}× "
          f"(target ≥ 0.2, issue 19: {'met' if batching / cartpole >= 0.2 else 'missed'})")
    return {name: rate for name, _, rate in rows}


if __name__ == "__main__":
    main()
