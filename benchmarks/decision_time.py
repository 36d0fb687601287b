"""Decision time per policy: how long each policy's ``predict`` takes per frame, against the frame period.

A controller on a real board decides on the board's CPU, inside the frame period (33.3 ms at 30 fps). This
runs each policy for one episode of the quickstart scenario (Xavier NX, EfficientNet-B0, 30 fps) in this
process, with one torch thread (as ``e4gym bench`` runs its tasks), and prints the median, 99th percentile,
mean and maximum of the per-frame decision time (the wall time of the ``predict`` calls for a frame, as
:func:`e4gym.policy.run_episode` reports it; a block-env policy decides several times per frame).

Policies (``--policies``):

* ``e4``, ``e4-layer``: E4 through the ``e4`` entry point (``agents.e4:E4Policy``; per-layer in the block env);
* ``ztt``: zTT's DQN (``baselines.ztt.ZTTPolicy``, an untrained network: the decision time does not depend on
  the weights);
* ``default``: the stock Linux governors (the kernel decides; the policy only returns a fixed action);
* ``ppo``: a stable-baselines3 PPO ``MlpPolicy`` (untrained, for the same reason as zTT).

Usage: ``python benchmarks/decision_time.py [--frames 300] [--seed 0] [--torch-threads 1]
[--policies e4 e4-layer ztt default ppo]``. Decision times are wall times on this machine: a shared or
throttled machine inflates them; compare policies within one run.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

POLICIES = ("e4", "e4-layer", "ztt", "default", "ppo")
#: E4's target (issue 12): a median decision time of at most this (ms).
E4_TARGET_P50_MS = 1.0


def _scenario_kwargs(frames: int) -> dict[str, Any]:
    """The quickstart scenario's env arguments, with ``frames`` frames per episode."""
    from e4gym.bench import load_experiment

    (sc,) = load_experiment("quickstart", frames=frames).scenarios
    return dict(sc.env_kwargs)


def build(name: str, env_kwargs: dict[str, Any]) -> tuple[Any, str, dict[str, Any]]:
    """The policy ``name`` with its env id and env arguments (the scenario's plus the policy's)."""
    import gymnasium as gym

    from e4gym.bench.policies import DEFAULT_ENV_ID, make_policy, policy_env_id, policy_env_kwargs

    if name in ("e4", "e4-layer", "default"):
        policy = make_policy("e4" if name.startswith("e4") else name, {"per_layer": True} if name == "e4-layer"
                             else {})
    elif name == "ztt":
        from baselines.ztt import ZTTPolicy, make_ztt_model

        env = gym.make(DEFAULT_ENV_ID, **env_kwargs)
        policy = ZTTPolicy(model=make_ztt_model(env, seed=0))
    elif name == "ppo":
        from stable_baselines3 import PPO

        policy = PPO("MlpPolicy", gym.make(DEFAULT_ENV_ID, **env_kwargs), seed=0, device="cpu")
    else:
        raise SystemExit(f"unknown policy {name!r}; choose from {list(POLICIES)}")
    return policy, policy_env_id(policy), {**env_kwargs, **policy_env_kwargs(policy)}


def measure(name: str, frames: int, seed: int) -> dict[str, float]:
    """One episode of policy ``name`` on the quickstart scenario: its per-frame decision-time figures (ms)."""
    import gymnasium as gym

    import e4gym  # noqa: F401  (registers the envs)
    from e4gym.bench.metrics import frame_decision_ms
    from e4gym.policy import run_episode

    policy, env_id, kw = build(name, _scenario_kwargs(frames))
    env = gym.make(env_id, **kw)
    t0 = time.perf_counter()
    try:
        infos = run_episode(policy, env, seed=seed)
    finally:
        env.close()
    d = frame_decision_ms(infos)
    return {"frames": float(len(d)), "steps": float(len(infos)), "p50_ms": float(np.percentile(d, 50)),
            "p99_ms": float(np.percentile(d, 99)), "mean_ms": float(d.mean()), "max_ms": float(d.max()),
            "episode_s": time.perf_counter() - t0}


def main(argv: Sequence[str] | None = None) -> dict[str, dict[str, float]]:
    """Measure every policy asked for and print the table; returns the figures by policy."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--torch-threads", type=int, default=1,
                        help="torch threads while deciding (e4gym bench uses 1; 0: leave torch's default)")
    parser.add_argument("--policies", nargs="+", default=list(POLICIES), choices=POLICIES)
    args = parser.parse_args(argv)

    import torch

    before = torch.get_num_threads()
    if args.torch_threads > 0:
        torch.set_num_threads(args.torch_threads)
    threads = torch.get_num_threads()
    try:
        results = {name: measure(name, args.frames, args.seed) for name in args.policies}
    finally:
        torch.set_num_threads(before)

    period_ms = 1000.0 / 30.0
    print(f"Decision time per frame, quickstart scenario (xavier-nx · efficientnet_b0 · 30 fps, frame period "
          f"{period_ms:.1f} ms), {args.frames} frames, seed {args.seed}, {threads} torch thread(s)\n")
    print("| policy | frames | decisions | p50 ms | p99 ms | mean ms | max ms | p99 / period |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        print(f"| {name} | {r['frames']:.0f} | {r['steps']:.0f} | {r['p50_ms']:.3f} | {r['p99_ms']:.3f} "
              f"| {r['mean_ms']:.3f} | {r['max_ms']:.3f} | {100 * r['p99_ms'] / period_ms:.1f} % |")
    if "e4" in results:
        p50 = results["e4"]["p50_ms"]
        print(f"\nE4 p50 {p50:.3f} ms (target ≤ {E4_TARGET_P50_MS:g} ms: {'✓' if p50 <= E4_TARGET_P50_MS else '✗'})")
    return results


if __name__ == "__main__":
    main()
