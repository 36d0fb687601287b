"""Train RLlib's PPO (the new API stack) on an e4gym env: a runnable example (issue 20; docs/ray.md, "RLlib").

Usage (RLlib is the optional extra ``e4gym[rllib]``; in this repository ``make rllib-env`` builds ``.venv-rllib``)::

    pip install 'e4gym[rllib]'
    python examples/rllib_ppo.py                                  # frame env, 3 iterations
    python examples/rllib_ppo.py --env block --iterations 5
    python examples/rllib_ppo.py --env frame --native-vector --envs-per-runner 4
    python examples/rllib_ppo.py --env edge-cloud --device nano
    python examples/rllib_ppo.py --env batching

What it shows:

* the env is a Gymnasium id **with the package prefix**, ``"e4gym:e4gym/EarlyExitDVFS-v1"``. RLlib's EnvRunners
  are Ray actors, separate processes that never import this script; the prefix makes Gymnasium import e4gym there
  (without it a remote EnvRunner fails with ``gymnasium.error.NamespaceNotFound``);
* ``env_config`` is passed to ``gym.make_vec`` as the env's keyword arguments (``device``, ``episode_frames`` or,
  for the batching env, ``episode_intervals``; any field of :class:`e4gym.envs.EnvConfig`);
* ``--native-vector`` (frame env only) makes each EnvRunner's sub-envs one e4gym native vector env
  (``gym_env_vectorize_mode="vector_entry_point"``: ``gym.make_vec(..., vectorization_mode="vector_entry_point")``),
  whose sub-envs step in one NumPy call;
* PPO takes the envs' ``MultiDiscrete`` actions as they are.

Each iteration prints the env steps sampled so far and the mean return of the episodes finished in it (the sum of
the per-frame rewards: about -1 per frame at top clocks with the default reward; ``nan`` until an episode ends).
Ray is started here with ``--num-cpus`` CPUs, no dashboard and its own temporary folder, and shut down at the end.
"""

from __future__ import annotations

import argparse
import math
import shutil
import tempfile
from typing import Any

#: ``--env`` choices: the registered id (with the ``e4gym:`` prefix that remote EnvRunners need) and the keyword
#: argument that sets its episode length (frames, or decision intervals for the batching env).
ENVS: dict[str, tuple[str, str]] = {
    "frame": ("e4gym:e4gym/EarlyExitDVFS-v1", "episode_frames"),
    "block": ("e4gym:e4gym/EarlyExitDVFSBlock-v1", "episode_frames"),
    "edge-cloud": ("e4gym:e4gym/EdgeCloudDVFS-v0", "episode_frames"),
    "batching": ("e4gym:e4gym/BatchConcurrency-v0", "episode_intervals"),
}


def ppo_config(env: str = "frame", device: str = "xavier-nx", episode_length: int = 100, num_env_runners: int = 1,
               envs_per_runner: int = 1, native_vector: bool = False, batch_size: int = 256,
               seed: int | None = 0) -> Any:
    """RLlib's ``PPOConfig`` for one of :data:`ENVS` (new API stack, the default of RLlib >= 2.40).

    Args:
        env: a key of :data:`ENVS`. device: the board (``e4gym devices``). episode_length: frames per episode (blocks
            env: frames too; the batching env: decision intervals of 1 s).
        num_env_runners: remote EnvRunner actors (0: sample in the driver). envs_per_runner: sub-envs per runner.
        native_vector: frame env only: the sub-envs are e4gym's native vector env (``vector_entry_point``).
        batch_size: env steps per training iteration (``train_batch_size_per_learner``); a minibatch is a quarter.
        seed: seeds the sub-envs and the networks (None: unseeded).
    """
    from ray.rllib.algorithms.ppo import PPOConfig

    if env not in ENVS:
        raise ValueError(f"env must be one of {sorted(ENVS)}, got {env!r}")
    if native_vector and env != "frame":
        raise ValueError("--native-vector: only the frame env has a native vector env (vector_entry_point)")
    env_id, length_key = ENVS[env]
    config = (
        PPOConfig()
        # A string env is made in each EnvRunner by gym.make_vec(env_id, num_envs=..., **env_config).
        .environment(env_id, env_config={"device": device, length_key: episode_length})
        .env_runners(num_env_runners=num_env_runners, num_envs_per_env_runner=envs_per_runner,
                     gym_env_vectorize_mode="vector_entry_point" if native_vector else "sync")
        .training(train_batch_size_per_learner=batch_size, minibatch_size=max(batch_size // 4, 1), num_epochs=2,
                  lr=3e-4)
        .rl_module(model_config={"fcnet_hiddens": [64, 64]})
        .debugging(seed=seed, log_level="ERROR")
    )
    return config


def train(config: Any, iterations: int, verbose: bool = True) -> list[dict[str, float]]:
    """Build the algorithm from ``config``, run ``iterations`` training iterations, stop it.

    Returns:
        One dict per iteration: ``steps`` (env steps sampled so far, lifetime) and ``return`` (mean return of the
        episodes finished in the iteration, in reward units; nan when none finished).
    """
    algo = config.build_algo()
    history = []
    try:
        for i in range(iterations):
            result = algo.train()
            runners = result.get("env_runners", {})
            steps = float(runners.get("num_env_steps_sampled_lifetime", 0.0))
            ret = float(runners.get("episode_return_mean", math.nan))
            history.append({"steps": steps, "return": ret})
            if verbose:
                print(f"iteration {i + 1}: {steps:.0f} env steps sampled, episode return mean {ret:.2f}")
    finally:
        algo.stop()
    return history


def main(argv: list[str] | None = None) -> int:
    """Run the example; returns the exit status."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--env", choices=sorted(ENVS), default="frame")
    p.add_argument("--device", default="xavier-nx", help="the board (e4gym devices)")
    p.add_argument("--episode-length", type=int, default=100,
                   help="frames per episode (the batching env: 1-s decision intervals)")
    p.add_argument("--iterations", type=int, default=3)
    p.add_argument("--env-runners", type=int, default=1, help="remote EnvRunner actors")
    p.add_argument("--envs-per-runner", type=int, default=1)
    p.add_argument("--native-vector", action="store_true",
                   help="frame env: each runner's sub-envs are e4gym's native vector env")
    p.add_argument("--batch-size", type=int, default=256, help="env steps per iteration")
    p.add_argument("--num-cpus", type=int, default=2, help="CPUs of the Ray instance started here")
    args = p.parse_args(argv)

    import ray

    temp = tempfile.mkdtemp(prefix="e4rl", dir="/tmp")  # short: Ray's socket paths must fit in 107 bytes
    ray.init(num_cpus=args.num_cpus, include_dashboard=False, _temp_dir=temp, logging_level="ERROR")
    try:
        config = ppo_config(args.env, args.device, args.episode_length, args.env_runners, args.envs_per_runner,
                            args.native_vector, args.batch_size)
        train(config, args.iterations)
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
