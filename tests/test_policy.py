"""The Policy protocol and its explicit context channel (e4gym/policy.py), and the envs' governors argument."""

from __future__ import annotations

import time

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3 import PPO

import e4gym  # noqa: F401  (registers the envs)
from e4gym.envs import INFO_KEYS
from e4gym.errors import ConfigError, UnknownNameError
from e4gym.policy import Policy, PolicyContext, bind_policy, run_episode

ENV_ID = "e4gym/EarlyExitDVFS-v1"


class Fixed:
    """A minimal hand-written policy: always the same action; counts what the harness tells it."""

    name = "fixed"

    def __init__(self, action: list[int]) -> None:
        self.action = np.array(action)
        self.resets = 0
        self.seen: list[dict] = []
        self.ctx: PolicyContext | None = None

    def bind(self, context: PolicyContext) -> None:
        self.ctx = context

    def predict(self, observation, state=None, episode_start=None, deterministic=True):
        if self.ctx is not None and self.ctx.last_info:
            self.seen.append(self.ctx.last_info)
        return self.action, state

    def reset(self) -> None:
        self.resets += 1


class Peeker(Fixed):
    clairvoyant = True

    def predict(self, observation, state=None, episode_start=None, deterministic=True):
        frame = self.ctx.upcoming_frame()
        exit_ = int(np.argmax(frame.correct)) if frame.correct.any() else len(frame.correct) - 1
        return np.array([exit_, 24, 14]), state


def test_hand_written_policies_and_sb3_models_are_interchangeable() -> None:
    env = gym.make(ENV_ID, episode_frames=40)
    model = PPO("MlpPolicy", env, n_steps=64, batch_size=32, device="cpu", seed=0)
    fixed = Fixed([4, 24, 14])
    assert isinstance(fixed, Policy)
    for policy in (fixed, model):
        infos = run_episode(policy, env, seed=0)
        assert len(infos) == 40 and all("reward" in i and "energy_j" in i for i in infos)
    assert fixed.resets == 1
    # The context carries the reset info before the first step, then the last step's info, and the env's
    # figures, never the env itself.
    assert len(fixed.seen) == 40 and fixed.seen[1]["frame"] == 0
    assert set(INFO_KEYS) <= set(fixed.seen[0]) and fixed.seen[0]["frame"] == -1 and fixed.seen[0]["exit"] == -1
    assert fixed.ctx.setup.deadline_s == pytest.approx(1 / 30) and fixed.ctx.action_names[0] == "exit"


def test_only_clairvoyant_policies_see_the_future() -> None:
    env = gym.make(ENV_ID, episode_frames=50)
    infos = run_episode(Peeker([0, 0, 0]), env, seed=1)
    # Knowing each frame's earliest correct exit, every frame that any exit gets right is right.
    upcoming = served_frames(ENV_ID, seed=1, frames=50)
    assert [i["correct"] for i in infos] == [bool(c.any()) for c in upcoming]
    honest = Fixed([4, 24, 14])
    bind_policy(honest, env)
    with pytest.raises(ConfigError, match="clairvoyant"):
        honest.ctx.upcoming_frame()


def served_frames(env_id: str, seed: int, frames: int) -> list[np.ndarray]:
    """Per-exit correctness of the frames an env serves after ``reset(seed)``."""
    env = gym.make(env_id, episode_frames=frames)
    env.reset(seed=seed)
    out = []
    for _ in range(frames):
        out.append(env.unwrapped.upcoming_frame().correct)
        env.step(np.array([4, 24, 14]))
    return out


def test_bind_refuses_what_is_not_a_policy() -> None:
    with pytest.raises(ConfigError, match="is not a policy"):
        bind_policy(object(), gym.make(ENV_ID))


def test_governed_domains_ignore_the_action() -> None:
    env = gym.make(ENV_ID, device="xavier-nx", governors={"cpu": "performance", "gpu": "powersave"}, episode_frames=30)
    infos = run_episode(Fixed([2, 0, 14]), env, seed=0)
    spec = env.unwrapped.device_spec
    assert infos[-1]["cpu_hz"] == spec.cpu_freqs_hz[-1]  # performance, although the action asks for level 0
    assert infos[-1]["gpu_hz"] == spec.gpu_freqs_hz[0]  # powersave, although the action asks for the top
    with pytest.raises(UnknownNameError, match="cpu governors"):
        gym.make(ENV_ID, governors={"cpu": "turbo"})


def test_every_step_reports_the_decision_time() -> None:
    class Slow(Fixed):
        def predict(self, observation, state=None, episode_start=None, deterministic=True):
            time.sleep(0.002)
            return super().predict(observation, state)

    infos = run_episode(Slow([4, 24, 14]), gym.make(ENV_ID, episode_frames=10), seed=0)
    assert all(2.0 <= i["decision_ms"] < 1000.0 for i in infos)
    fast = run_episode(Fixed([4, 24, 14]), gym.make(ENV_ID, episode_frames=10), seed=0)
    assert all(0.0 <= i["decision_ms"] < 2.0 for i in fast)
    # Timing the policy does not change what the env does.
    strip = lambda i: {k: v for k, v in i.items() if k != "decision_ms"}  # noqa: E731
    assert [strip(i) for i in infos] == [strip(i) for i in fast]
