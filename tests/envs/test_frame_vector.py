"""The native vector env: it must be N frame envs stepped at once, and fast enough to matter."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode

import e4gym  # noqa: F401  (registers the envs)
from e4gym.envs import INFO_KEYS, EarlyExitDVFSEnv, EarlyExitDVFSVectorEnv
from e4gym.errors import ConfigError, SettingError
from e4gym.workload import SyntheticVideo

ENV_ID = "e4gym/EarlyExitDVFS-v1"


def _close(a: object, b: object) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype.kind == "f":
        return np.allclose(a, b, rtol=1e-9, atol=1e-12)
    return np.array_equal(a, b)


def _step_singles(envs: list[EarlyExitDVFSEnv], actions: np.ndarray, done: list[bool]) -> list[tuple]:
    """Step single envs as NEXT_STEP autoreset does: a finished env is reset (action ignored, reward 0)."""
    out = []
    for i, env in enumerate(envs):
        if done[i]:
            obs, info = env.reset()
            out.append((obs, 0.0, False, False, info))
            done[i] = False
        else:
            obs, r, term, trunc, info = env.step(actions[i])
            out.append((obs, r, term, trunc, info))
            done[i] = term or trunc
    return out


@pytest.mark.parametrize(("device", "control_memory"), [("jetson-nano", False), ("orin-nx", True)])
def test_native_vector_env_matches_single_envs_stepped_one_by_one(device: str, control_memory: bool) -> None:
    n = 5
    kw = {"device": device, "control_memory": control_memory, "episode_frames": 25}
    venv = EarlyExitDVFSVectorEnv(num_envs=n, **kw)
    singles = [EarlyExitDVFSEnv(**kw) for _ in range(n)]
    vobs, vinfo = venv.reset(seed=100)
    sobs = [env.reset(seed=100 + i)[0] for i, env in enumerate(singles)]
    assert np.array_equal(vobs, np.stack(sobs))
    rng = np.random.default_rng(0)
    done = [False] * n
    resets = 0
    for _ in range(80):  # crosses three episode boundaries
        actions = rng.integers(0, venv.single_action_space.nvec, size=(n, len(venv.single_action_space.nvec)))
        vobs, vr, vterm, vtrunc, vinfo = venv.step(actions)
        resets += int(sum(done))
        ref = _step_singles(singles, actions, done)
        assert _close(vobs, np.stack([r[0] for r in ref]))
        assert _close(vr, [r[1] for r in ref])
        assert np.array_equal(vtrunc, [r[3] for r in ref]) and not vterm.any()
        for key in (*INFO_KEYS, "power_cpu_w", "power_gpu_w", "power_soc_w"):
            assert _close(vinfo[key], [r[4][key] for r in ref]), key
            assert vinfo["_" + key].all()
    assert resets == 3 * n


def test_same_seed_gives_identical_vector_trajectories_and_envs_differ() -> None:
    def rollout(seed: int) -> list:
        venv = EarlyExitDVFSVectorEnv(num_envs=8, episode_frames=20)
        out = [venv.reset(seed=seed)[0]]
        rng = np.random.default_rng(1)
        for _ in range(45):
            obs, r, _, trunc, info = venv.step(rng.integers(0, venv.single_action_space.nvec, size=(8, 3)))
            out += [obs, r, trunc, info["energy_j"], info["latency_ms"]]
        return out

    a, b, c = rollout(3), rollout(3), rollout(4)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))
    assert len({tuple(row) for row in a[0]}) == 8  # every sub-env has its own stream


def test_same_step_autoreset_returns_the_final_observation() -> None:
    n = 3
    venv = EarlyExitDVFSVectorEnv(num_envs=n, episode_frames=4, autoreset_mode=AutoresetMode.SAME_STEP)
    assert venv.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
    singles = [EarlyExitDVFSEnv(episode_frames=4) for _ in range(n)]
    venv.reset(seed=0)
    for i, env in enumerate(singles):
        env.reset(seed=i)
    actions = np.tile([3, 10, 10], (n, 1))
    for _t in range(4):
        vobs, _, _, vtrunc, vinfo = venv.step(actions)
        ref = [env.step(actions[i]) for i, env in enumerate(singles)]
    assert vtrunc.all() and vinfo["_final_obs"].all()
    for i in range(n):
        assert _close(vinfo["final_obs"][i], ref[i][0])
        assert _close(vinfo["final_info"]["energy_j"][i], ref[i][4]["energy_j"])
        assert np.array_equal(vobs[i], singles[i].reset()[0])  # already reset, in the same step


def test_make_vec_modes_agree_with_the_native_env() -> None:
    native = gym.make_vec(ENV_ID, num_envs=2, episode_frames=10)
    assert isinstance(native.unwrapped, EarlyExitDVFSVectorEnv)
    sync = gym.make_vec(ENV_ID, num_envs=2, vectorization_mode="sync", episode_frames=10)
    asyn = gym.make_vec(ENV_ID, num_envs=2, vectorization_mode="async", episode_frames=10)
    results = []
    for venv in (native, sync, asyn):
        obs, _ = venv.reset(seed=9)
        rewards = []
        for _ in range(12):
            obs, r, *_ = venv.step(np.array([[1, 20, 10], [4, 5, 3]]))
            rewards.append(r)
        results.append((obs, np.array(rewards)))
        venv.close()
    for obs, rewards in results[1:]:
        assert _close(obs, results[0][0]) and _close(rewards, results[0][1])


def test_bad_vector_actions_name_the_sub_env_and_component() -> None:
    venv = EarlyExitDVFSVectorEnv(num_envs=3)
    venv.reset(seed=0)
    bad = np.array([[0, 0, 0], [0, 0, 0], [0, 99, 0]])
    with pytest.raises(SettingError, match=r"sub-env 2: .*'cpu_level' must be an integer in 0\.\.24"):
        venv.step(bad)
    with pytest.raises(SettingError, match=r"shape \(3, 3\)"):
        venv.step(np.zeros((2, 3), int))
    with pytest.raises(SettingError, match="cpu_level"):
        venv.step(np.array([[0, 0.5, 0]] * 3))
    venv.step(np.zeros((3, 3)))  # integral floats are accepted


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_envs": 0}, "num_envs must be an integer >= 1"),
        ({"backend": object()}, "batched emulator only"),
        ({"workload": SyntheticVideo([0.5] * 5)}, "one frame source per sub-env"),
        ({"autoreset_mode": "Sometimes"}, "autoreset_mode must be one of"),
        ({"deadline_ms": -1}, "deadline_ms"),
    ],
)
def test_bad_vector_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        EarlyExitDVFSVectorEnv(**kwargs)


def test_reset_with_a_list_of_seeds() -> None:
    venv = EarlyExitDVFSVectorEnv(num_envs=2)
    obs, _ = venv.reset(seed=[7, 7])
    assert np.array_equal(obs[0], obs[1])
    with pytest.raises(ConfigError, match="needs 2 seeds"):
        venv.reset(seed=[1, 2, 3])


def test_native_vector_env_refuses_backend_kwargs_with_the_fix() -> None:
    import gymnasium as gym
    import pytest

    from e4gym.errors import ConfigError

    with pytest.raises(ConfigError, match="vectorization_mode='sync'"):
        gym.make_vec("e4gym/EarlyExitDVFS-v1", num_envs=2, vectorization_mode="vector_entry_point",
                     backend_kwargs={"measured": "x.json"})
