"""The Linux governor baselines: protocol, names, env kwargs and the clocks the board's governors pick."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import e4gym  # noqa: F401  (registers the envs)
from baselines import GOVERNOR_NAMES, LinuxGovernor, make_governor, performance, powersave
from e4gym.errors import ConfigError, UnknownNameError
from e4gym.hardware.spec import load_device
from e4gym.policy import Policy, bind_policy, run_episode

FRAMES = 120


def _run(policy, frames: int = FRAMES, **kwargs) -> list[dict]:
    env = gym.make("e4gym/EarlyExitDVFS-v1", **policy.env_kwargs, episode_frames=frames, **kwargs)
    try:
        return run_episode(policy, env, seed=0)
    finally:
        env.close()


@pytest.mark.parametrize("name", GOVERNOR_NAMES)
def test_named_governors_are_policies(name: str) -> None:
    p = make_governor(name)
    assert isinstance(p, Policy)
    assert p.name == name
    assert p.clairvoyant is False
    assert set(p.env_kwargs["governors"]) == {"cpu", "gpu"}


def test_governor_pairs() -> None:
    assert make_governor("performance").env_kwargs["governors"] == {"cpu": "performance", "gpu": "performance"}
    assert make_governor("powersave").env_kwargs["governors"] == {"cpu": "powersave", "gpu": "powersave"}
    assert make_governor("ondemand").env_kwargs["governors"] == {"cpu": "ondemand", "gpu": "nvhost_podgov"}
    for n in ("default", "schedutil", "nvhost_podgov"):
        assert make_governor(n).env_kwargs["governors"] == {"cpu": "schedutil", "gpu": "nvhost_podgov"}


def test_unknown_names_list_the_known_ones() -> None:
    with pytest.raises(UnknownNameError, match="performance"):
        make_governor("turbo")
    with pytest.raises(UnknownNameError, match="schedutil"):
        LinuxGovernor(cpu="nvhost_podgov")
    with pytest.raises(UnknownNameError, match="nvhost_podgov"):
        LinuxGovernor(gpu="schedutil")


def test_bind_checks_the_env_runs_the_governors() -> None:
    env = gym.make("e4gym/EarlyExitDVFS-v1", episode_frames=10)
    with pytest.raises(ConfigError, match="governors"):
        bind_policy(performance(), env)
    env.close()


def test_predict_before_bind_raises() -> None:
    with pytest.raises(ConfigError, match="bind"):
        performance().predict(np.zeros(15, np.float32))


def test_performance_runs_at_top_clocks_and_powersave_at_lowest() -> None:
    spec = load_device("xavier-nx")
    top = _run(performance())
    assert all(i["cpu_hz"] == spec.cpu_freqs_hz[-1] and i["gpu_hz"] == spec.gpu_freqs_hz[-1] for i in top)
    low = _run(powersave(), frames=30)
    assert low[-1]["cpu_hz"] == spec.cpu_freqs_hz[0] and low[-1]["gpu_hz"] == spec.gpu_freqs_hz[0]
    assert np.mean([i["energy_j"] for i in low]) > np.mean([i["energy_j"] for i in top])


def test_governor_exit_choice() -> None:
    infos = _run(make_governor("default", exit=0), frames=30)
    assert {i["exit"] for i in infos} == {0}
    infos = _run(make_governor("default"), frames=30)
    assert {i["exit"] for i in infos} == {4}
