"""Constrained learning (issue 21): per-frame deadline-miss rate, accuracy loss against the last exit and energy of
trained agents (and of the oracle and the best static setting) on held-out streams.

Each argument is a run folder written by ``e4gym train`` (served as the harness serves it: ``TrainedPolicy``) or
``oracle`` / ``best_static``. Every policy runs the frame env on xavier-nx (EfficientNet-B0, 30 fps) for episodes of
``--frames`` frames seeded 0..``--seeds``−1: benchmark seeds, which no training stream starts from (training uses
``seed + TRAIN_SEED_OFFSET``, its evaluation ``seed + EVAL_SEED_OFFSET``; the harness refuses a stream a run trained
on). Per policy: the mean over seeds of each episode's miss rate (Σ ``cost_miss`` / frames), accuracy loss
(Σ ``cost_accuracy`` / frames) and energy per frame (J), with the worst seed's miss rate and accuracy loss.

Usage: ``python benchmarks/constrained_eval.py RUN_DIR [RUN_DIR ...] [oracle] [best_static] [--seeds 10]
[--frames 1000] [--env e4gym/EarlyExitDVFSBlock-v1]`` (the oracle and best_static: frame env only).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

import numpy as np


def evaluate(policy: Any, seeds: int, frames: int, device: str = "xavier-nx",
             env_id: str = "e4gym/EarlyExitDVFS-v1") -> dict[str, float]:
    """The policy's per-episode figures over seeds ``0..seeds-1``: means and worst seeds (fractions, J). Costs and
    energy are divided by the frames that finished (``info["frame_done"]``; every step in the frame env)."""
    import gymnasium as gym

    import e4gym  # noqa: F401
    from e4gym.policy import run_episode

    miss, acc, energy = [], [], []
    for seed in range(seeds):
        infos = run_episode(policy, gym.make(env_id, device=device, episode_frames=frames), seed=seed)
        n = sum(bool(i.get("frame_done", True)) for i in infos)
        miss.append(sum(float(i["cost_miss"]) for i in infos) / n)
        acc.append(sum(float(i["cost_accuracy"]) for i in infos) / n)
        energy.append(sum(float(i["energy_j"]) for i in infos) / n)
    return {"miss": float(np.mean(miss)), "miss_worst": float(np.max(miss)), "acc_loss": float(np.mean(acc)),
            "acc_loss_worst": float(np.max(acc)), "energy_j": float(np.mean(energy))}


def main(argv: Sequence[str] | None = None) -> None:
    """Print one line per policy."""
    import torch

    torch.set_num_threads(1)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("policies", nargs="+", help="run folders of e4gym train, oracle, best_static")
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--frames", type=int, default=1000)
    p.add_argument("--env", default="e4gym/EarlyExitDVFS-v1",
                   help="env id (the block env: e4gym/EarlyExitDVFSBlock-v1)")
    args = p.parse_args(argv)
    for name in args.policies:
        if name in ("oracle", "best_static"):
            from baselines import ClairvoyantOracle, best_static

            policy = ClairvoyantOracle() if name == "oracle" else best_static("xavier-nx")
        else:
            from agents.train import TrainedPolicy

            policy = TrainedPolicy(name)
        r = evaluate(policy, args.seeds, args.frames, env_id=args.env)
        print(f"{name}: misses {100 * r['miss']:.2f} % (worst seed {100 * r['miss_worst']:.2f}), accuracy loss "
              f"{100 * r['acc_loss']:.2f} points (worst {100 * r['acc_loss_worst']:.2f}), energy "
              f"{1e3 * r['energy_j']:.1f} mJ/frame", flush=True)


if __name__ == "__main__":
    main()
