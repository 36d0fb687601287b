"""stable-baselines3 agents learn on the envs (short runs on easy settings; the long ones live in benchmarks/).

Each test checks what training must change, measured in the same run: the learnt policy beats random actions (and
comes close to the best fixed action where one is known), the parameters moved, and a saved and loaded model acts
as the trained one.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from stable_baselines3 import A2C, DQN, PPO

import e4gym  # noqa: F401  (registers the envs)
from e4gym.envs import DiscreteActions
from e4gym.envs.core import FrameOutcome

FRAME_ID, BLOCK_ID = "e4gym/EarlyExitDVFS-v1", "e4gym/EarlyExitDVFSBlock-v1"
SMALL_NET = {"net_arch": [64, 64]}
TINY_NET = {"net_arch": [32]}
GRID = {"cpu_level": [8, 16, 24], "gpu_level": [4, 9, 14]}


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny networks: threads only add overhead on 2 cores
    yield
    torch.set_num_threads(threads)


def rollout(env: gym.Env, policy, steps: int, seed: int = 123) -> list[tuple[float, dict[str, Any]]]:
    """``(reward, info)`` of ``steps`` steps of ``policy(obs, env) -> action`` from a seeded reset, resetting as
    episodes end."""
    env.action_space.seed(seed)
    obs, _ = env.reset(seed=seed)
    out = []
    for _ in range(steps):
        obs, reward, terminated, truncated, info = env.step(policy(obs, env))
        out.append((float(reward), info))
        if terminated or truncated:
            obs, _ = env.reset()
    return out


def mean_reward(env: gym.Env, policy, steps: int = 300) -> float:
    """Mean reward per step of ``policy`` over :func:`rollout`."""
    return float(np.mean([r for r, _ in rollout(env, policy, steps)]))


def greedy(model):
    return lambda obs, _env: model.predict(obs, deterministic=True)[0]


def random_actions(_obs, env: gym.Env):
    return env.action_space.sample()


def low_latency(outcome: FrameOutcome) -> tuple[float, dict]:
    """An easy reward: minus the frame's latency (in 100 ms). Best at the first exit and the top clocks."""
    return -10.0 * float(outcome.latency_s), {}


def first_exit(outcome: FrameOutcome) -> tuple[float, dict]:
    """An easy reward for the block env: 1 when a frame leaves at the first exit (``exit_now`` right after it)."""
    return float(bool(outcome.frame_done) and outcome.exit == 0), {}


@pytest.mark.slow  # 8192 PPO steps: about 9 s on 2 shared cores
def test_short_ppo_run_beats_a_random_policy() -> None:
    env = gym.make(FRAME_ID, episode_frames=256)
    model = PPO("MlpPolicy", env, n_steps=512, batch_size=128, n_epochs=5, learning_rate=1e-3, gamma=0.9,
                seed=0, policy_kwargs=SMALL_NET, device="cpu")
    model.learn(8192)
    test_env = gym.make(FRAME_ID, episode_frames=300)
    trained, random = mean_reward(test_env, greedy(model)), mean_reward(test_env, random_actions)
    # Random clocks queue frames behind slow ones; PPO learns to keep up (measured: about -1.5 against -2.7).
    assert trained > random + 0.5, (trained, random)


@pytest.mark.parametrize("env_id", [FRAME_ID, BLOCK_ID])
def test_a2c_learn_moves_every_layer_and_a_saved_model_acts_the_same(env_id: str, tmp_path: Path) -> None:
    env = gym.make(env_id, episode_frames=64)
    model = A2C("MlpPolicy", env, n_steps=16, seed=0, policy_kwargs=SMALL_NET, device="cpu")
    before = {k: v.clone() for k, v in model.policy.state_dict().items()}
    model.learn(512)
    assert model.num_timesteps == 512
    after = model.policy.state_dict()
    unchanged = [k for k in before if torch.equal(before[k], after[k])]
    assert not unchanged, unchanged  # 32 updates of the policy and value losses reach every layer
    model.save(tmp_path / "a2c")
    loaded = A2C.load(tmp_path / "a2c.zip", device="cpu")
    assert loaded.observation_space == env.observation_space and loaded.action_space == env.action_space
    assert all(torch.equal(after[k], v) for k, v in loaded.policy.state_dict().items())
    env.observation_space.seed(0)
    obs = np.stack([env.observation_space.sample() for _ in range(64)])
    actions = model.predict(obs, deterministic=True)[0]
    assert np.array_equal(loaded.predict(obs, deterministic=True)[0], actions)
    assert all(env.action_space.contains(a) for a in actions)
    sampled = []
    for m in (model, loaded):  # the same distributions: the same draws from the same torch seed
        torch.manual_seed(1)
        sampled.append(m.predict(obs, deterministic=False)[0])
    assert np.array_equal(*sampled)


def test_ppo_learns_to_exit_at_the_first_head_on_the_block_env() -> None:
    """Reward 1 for a frame that leaves at the first exit: after its head the agent must pick ``exit_now``. A
    random policy does that about half the time; 512 PPO steps learn to do it every time."""
    env = gym.make(BLOCK_ID, episode_frames=16, reward=first_exit)
    model = PPO("MlpPolicy", env, n_steps=128, batch_size=64, n_epochs=4, learning_rate=3e-3, gamma=0.5, seed=0,
                policy_kwargs=TINY_NET, device="cpu").learn(512)
    test_env = gym.make(BLOCK_ID, episode_frames=16, reward=first_exit)

    def first_exit_share(policy) -> float:
        exits = [info["exit"] for _, info in rollout(test_env, policy, 300) if info["frame_done"]]
        return float(np.mean(np.array(exits) == 0))

    trained, random = first_exit_share(greedy(model)), first_exit_share(random_actions)
    assert trained > 0.95 and random < 0.8, (trained, random)


def test_dqn_learns_the_fastest_setting_through_the_discrete_wrapper() -> None:
    """Reward: minus the latency. Over the wrapper's 45 actions DQN finds the first exit at top clocks in 1000 steps:
    far above random actions and close to the best fixed action, all measured here."""

    def make() -> DiscreteActions:
        return DiscreteActions(gym.make(FRAME_ID, episode_frames=128, reward=low_latency), GRID)

    env = make()
    assert env.action_space.n == 5 * 3 * 3
    model = DQN("MlpPolicy", env, learning_starts=200, buffer_size=4096, train_freq=4, gamma=0.5,
                learning_rate=3e-3, exploration_fraction=0.5, target_update_interval=100, seed=0,
                policy_kwargs=TINY_NET, device="cpu").learn(1000)
    test_env = make()
    best_action = test_env.index_of([0, GRID["cpu_level"][-1], GRID["gpu_level"][-1]])
    trained = mean_reward(test_env, greedy(model), 200)
    random = mean_reward(test_env, random_actions, 200)
    best = mean_reward(test_env, lambda _obs, _env: best_action, 200)
    # Measured: trained about -0.12, random -0.70, best fixed -0.10 (100 ms of latency = 1).
    assert trained > random + 0.4 and trained > best - 0.05, (trained, random, best)


def test_a_model_without_a_logger_logs_into_the_sessions_folder_not_the_temp_dir() -> None:
    """SB3 logs a model without its own logger to ``$SB3_LOGDIR``, else to a new ``SB3-<date>`` folder of the
    system temp dir, left there; tests/conftest.py points ``SB3_LOGDIR`` at the session's temporary folder."""
    model = A2C("MlpPolicy", gym.make(FRAME_ID, episode_frames=8), n_steps=8, policy_kwargs=TINY_NET,
                device="cpu").learn(8)
    folder = Path(model.logger.get_dir())
    assert folder == Path(os.environ["SB3_LOGDIR"])
    assert folder.parent != Path(tempfile.gettempdir()) and not folder.name.startswith("SB3-")
