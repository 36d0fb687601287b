"""Ring-DVFS (:mod:`baselines.ring_dvfs`) as an ``e4gym train`` algorithm: tabular Q-learning in NumPy on the bare
frame env, with its own loop (:func:`train_ring_dvfs`), saved as ``model.npz``, served by
:class:`~baselines.ring_dvfs.RingDVFSPolicy`.

The config's keys outside the run's (``configs/agents/ring-dvfs.yaml``) are fields of
:class:`~baselines.ring_dvfs.RingDVFSConfig`, which they override. A resumed agent takes new ones
(``--override-hyperparams``) except those that shape its Q-table (``n_levels`` and the bin edges), and refuses an
env of another device (:class:`~agents.algos.CheckpointMismatchError`).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from agents.algos import (
    EVAL_SEED_OFFSET,
    AlgoSpec,
    CheckpointMismatchError,
    HyperparameterError,
    TrainRun,
    register_algo,
)
from e4gym.errors import ConfigError

#: Ring-DVFS callback figures of the last frame alone (not logged: the episode figures are).
_RING_FRAME_KEYS = ("reward", "level", "energy_j", "missed", "reliability")


def _build(env: gym.Env, hyperparameters: dict[str, Any], seed: int) -> Any:
    from baselines.ring_dvfs import RingDVFSAgent, RingDVFSConfig

    return RingDVFSAgent(RingDVFSConfig(**hyperparameters), seed=seed)


#: RingDVFSConfig fields that shape the Q-table (states × levels): a checkpoint keeps them.
_RING_FIXED = ("n_levels", "load_edges", "slack_edges", "temp_edges")


def _bound(agent: Any, path: Path, env: gym.Env | None) -> Any:
    """``agent`` (read from ``path``) checked against ``env``: the device, level ranges and exits it was trained
    for (:meth:`~baselines.ring_dvfs.RingDVFSAgent.bind`)."""
    if env is not None:
        base = env.unwrapped
        try:
            agent.bind(base.setup, tuple(base.obs_names))
        except ConfigError as exc:
            raise CheckpointMismatchError(f"checkpoint {path} was made for another env: {exc}") from None
    return agent


def _load(path: Path, env: gym.Env | None) -> Any:
    from baselines.ring_dvfs import RingDVFSAgent

    return _bound(RingDVFSAgent.load(path), path, env)


def _load_override(path: Path, env: gym.Env | None, hyperparameters: dict[str, Any],
                   changed: frozenset[str]) -> Any:
    """A checkpoint with a new :class:`~baselines.ring_dvfs.RingDVFSConfig` (defaults with the config's over
    them): learning rate, discount, ε schedule, reward weights, fault model."""
    from baselines.ring_dvfs import RingDVFSAgent, RingDVFSConfig

    agent = RingDVFSAgent.load(path)
    try:
        new = RingDVFSConfig(**hyperparameters)
    except (ConfigError, TypeError) as exc:
        raise HyperparameterError(f"--override-hyperparams: {exc}") from None
    fixed = sorted(k for k in _RING_FIXED if getattr(new, k) != getattr(agent.config, k))
    if fixed:
        raise HyperparameterError(f"--override-hyperparams cannot change {fixed} of checkpoint {path}: they shape "
                                  "the Q-table; resume with the checkpoint's values, or train anew into another "
                                  "--out")
    agent.config = new  # before the first bind, which builds the agent's tables from it
    return _bound(agent, path, env)


def _save(agent: Any, path: Path) -> None:
    agent.save(path)  # atomic itself


def _policy(path: Path, name: str, meta: Mapping[str, Any]) -> Any:
    from baselines.ring_dvfs import RingDVFSPolicy

    return RingDVFSPolicy(path=path, name=name)


def train_ring_dvfs(run: TrainRun) -> Any:
    """Ring-DVFS's training loop: the agent learns on the bare training env; every episode's figures go to
    ``tb/`` under ``e4gym/...``, every ``checkpoint_freq`` steps a checkpoint, every ``eval_freq`` steps
    ``eval/mean_reward`` of the greedy policy over ``eval_episodes`` episodes seeded ``seed + EVAL_SEED_OFFSET + i``.
    Returns the agent."""
    from tqdm import tqdm

    from baselines.ring_dvfs import RingDVFSPolicy
    from e4gym.policy import run_episode

    env = run.env(train=True, wrapped=False)
    agent = run.load_checkpoint(env) if run.resume_from is not None else \
        run.spec.build(env, run.hyperparameters, run.seed)
    logger = run.logger()
    bar = tqdm(total=run.total_steps, initial=agent.num_timesteps, unit="step", desc="train", file=sys.stderr,
               disable=not run.progress, dynamic_ncols=True)

    def callback(step: int, stats: dict[str, float]) -> bool:
        bar.update(step - bar.n)
        if "episode_reward" in stats:
            for k, v in stats.items():
                if math.isfinite(v) and k not in _RING_FRAME_KEYS:
                    logger.record(f"e4gym/{k}", v)
            logger.dump(step)
        if step % run.checkpoint_freq == 0:
            run.save_checkpoint(agent, step)
        if step % run.eval_freq == 0:
            pol = RingDVFSPolicy(agent=agent)
            rewards, lengths, figures = [], [], []
            for i in range(run.eval_episodes):
                ev = run.env(train=False, wrapped=False)
                infos = run_episode(pol, ev, seed=run.seed + EVAL_SEED_OFFSET + i)
                rewards.append(sum(x["reward"] for x in infos))
                lengths.append(len(infos))
                figures.append([[float(x["energy_j"]), float(x["deadline_missed"]), float(x["correct"])]
                                for x in infos])
                ev.close()
            logger.record("eval/mean_reward", float(np.mean(rewards)))
            logger.dump(step)
            energy, missed, correct = np.mean([np.mean(f, axis=0) for f in figures], axis=0)
            return run.evaluated(step, {"eval/mean_reward": float(np.mean(rewards)),
                                        "eval/std_reward": float(np.std(rewards)),
                                        "eval/mean_ep_length": float(np.mean(lengths)),
                                        "eval/ep_energy_per_frame_j": float(energy),
                                        "eval/ep_deadline_miss_rate": float(missed),
                                        "eval/ep_accuracy": float(correct)})
        return True

    remaining = run.total_steps - agent.num_timesteps
    if remaining > 0:
        agent.learn(env, remaining, callback=callback)
    bar.close()
    env.close()
    return agent


register_algo(AlgoSpec(name="ring-dvfs", build=_build, load=_load, train=train_ring_dvfs, policy=_policy,
                       save=_save, load_override=_load_override, model_file="model.npz",
                       summary="Ring-DVFS tabular Q-learning (Yeganeh-Khaksar et al., 2020)"))
