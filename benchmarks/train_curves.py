"""Learning curves of the learned baselines: each agent trained from its config, first and last episodes compared.

Trains zTT, Ring-DVFS, PPO on the frame env, PPO on the block env, DVFO on the edge-cloud env (its config's
20 fps) and BCEdge on the batching env on xavier-nx with the steps of
``configs/agents/<algo>.yaml`` (``--scale`` multiplies them), through :func:`agents.train.train` (what
``e4gym train`` runs), then reads each run's TensorBoard file back and prints, per agent: wall time, steps,
the mean ``e4gym/episode_reward`` of the first and of the last quarter of the logged points, and the last
logged energy per frame and deadline-miss rate.

Usage: ``python benchmarks/train_curves.py [--scale 1.0] [--out runs/train-curves] [--agents ztt ring-dvfs ...]``.
"""

from __future__ import annotations

import argparse
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

#: (label, algo, env id) of the agents this benchmark trains.
AGENTS = (
    ("ztt", "ztt", "e4gym/EarlyExitDVFS-v1"),
    ("ring-dvfs", "ring-dvfs", "e4gym/EarlyExitDVFS-v1"),
    ("ppo", "ppo", "e4gym/EarlyExitDVFS-v1"),
    ("ppo-block", "ppo", "e4gym/EarlyExitDVFSBlock-v1"),
    ("dvfo", "dvfo", "e4gym/EdgeCloudDVFS-v0"),
    ("bcedge", "bcedge", "e4gym/BatchConcurrency-v0"),
)


def _scalars(run: Path, tag: str) -> list[float]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ea = EventAccumulator(str(run / "tb"))
    ea.Reload()
    return [e.value for e in ea.Scalars(tag)] if tag in ea.Tags()["scalars"] else []


def main(argv: Sequence[str] | None = None) -> list[dict[str, float | str]]:
    """Train every agent, print the table; returns its rows."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=1.0, help="multiply each config's n_timesteps")
    parser.add_argument("--out", default="runs/train-curves")
    parser.add_argument("--agents", nargs="+", default=[a[0] for a in AGENTS], choices=[a[0] for a in AGENTS])
    parser.add_argument("--episode-frames", type=int, default=None, help="override the configs' episode length")
    args = parser.parse_args(argv)

    from agents.train import load_agent_config, train

    rows = []
    for label, algo, env_id in AGENTS:
        if label not in args.agents:
            continue
        section = load_agent_config(algo, env_id)
        steps = max(int(section.get("n_timesteps", 20_000) * args.scale), 1)
        run = Path(args.out) / label
        shutil.rmtree(run, ignore_errors=True)
        length = "episode_intervals" if env_id == "e4gym/BatchConcurrency-v0" else "episode_frames"  # its steps
        kw = {} if args.episode_frames is None else {length: args.episode_frames}
        t0 = time.perf_counter()
        train(algo, env_id, run, env_kwargs=kw, steps=steps, progress=False)
        wall = time.perf_counter() - t0
        curve = _scalars(run, "e4gym/episode_reward")
        q = max(len(curve) // 4, 1)
        energy = _scalars(run, "e4gym/energy_per_frame_j")
        miss = _scalars(run, "e4gym/deadline_miss_rate")
        rows.append({"agent": label, "steps": steps, "wall_s": wall, "episodes_logged": len(curve),
                     "first": sum(curve[:q]) / q if curve else float("nan"),
                     "last": sum(curve[-q:]) / q if curve else float("nan"),
                     "energy_j": energy[-1] if energy else float("nan"),
                     "miss": miss[-1] if miss else float("nan")})
    print("| agent | steps | wall s | logged points | episode reward, first quarter | last quarter "
          "| energy J/frame (last) | deadline misses (last) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['agent']} | {r['steps']} | {r['wall_s']:.1f} | {r['episodes_logged']} | {r['first']:.1f} "
              f"| {r['last']:.1f} | {r['energy_j']:.4f} | {100 * r['miss']:.1f} % |")
    return rows


if __name__ == "__main__":
    main()
