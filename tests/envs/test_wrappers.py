"""Tests of e4gym.envs.wrappers and e4gym.envs.callbacks (with stable-baselines3 agents)."""

from __future__ import annotations

import csv
import itertools
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from gymnasium.utils.env_checker import check_env

import e4gym  # noqa: F401  (registers the envs)
from e4gym.envs.masking import DeadlineFeasibleActions
from e4gym.envs.wrappers import (
    EPISODE_STAT_DOCS,
    EPISODE_STAT_KEYS,
    ContinuousActions,
    DiscreteActions,
    EpisodeStats,
    SelectObservation,
)
from e4gym.errors import ConfigError, SettingError, UnknownNameError

ENV_ID = "e4gym/EarlyExitDVFS-v1"
CPU = [0, 12, 24]
GPU = [0, 7, 14]

# gymnasium's check_env warns that the env it checks is wrapped; checking the wrapper is the point here.
_wrapped_ok = pytest.mark.filterwarnings("ignore:.*different from the unwrapped version")


def make(frames: int = 20, **kw: Any) -> gym.Env:
    return gym.make(ENV_ID, episode_frames=frames, **kw)


@pytest.fixture
def one_torch_thread():
    """torch runs one math thread in the test (tiny networks: more threads only contend for 2 shared cores); the
    count before it is restored after."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---------------------------------------------------------------------------------------------- import


def test_wrappers_import_without_torch() -> None:
    code = "import sys, e4gym, e4gym.envs.wrappers; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------------------------------------- DiscreteActions


def test_discrete_round_trip_on_grid() -> None:
    env = DiscreteActions(make(), {"cpu_level": CPU, "gpu_level": GPU})
    n_exits = env.env.action_space.nvec[0]
    assert env.action_space == spaces.Discrete(n_exits * len(CPU) * len(GPU))
    assert env.choices == {"exit": tuple(range(n_exits)), "cpu_level": tuple(CPU), "gpu_level": tuple(GPU)}
    seen = set()
    for i in range(env.action_space.n):
        a = env.action(i)
        assert a.dtype == np.int64 and a.shape == (3,)
        assert a[1] in CPU and a[2] in GPU
        assert env.index_of(a) == i
        seen.add(tuple(a.tolist()))
    assert seen == set(itertools.product(range(n_exits), CPU, GPU))
    assert env.index_of([0, 0, 0]) == 0 and env.index_of(np.array([n_exits - 1, 24, 14])) == env.action_space.n - 1


def test_discrete_full_space_and_step() -> None:
    base = make()
    env = DiscreteActions(base)
    assert env.action_space.n == int(np.prod(base.action_space.nvec))
    env.reset(seed=0)
    _, _, _, _, info = env.step(env.action_space.n - 1)  # full network, top clocks
    assert info["exit"] == base.action_space.nvec[0] - 1


def test_discrete_errors() -> None:
    with pytest.raises(UnknownNameError, match=r"cpu_levle.*components: \['exit', 'cpu_level', 'gpu_level'\]"):
        DiscreteActions(make(), {"cpu_levle": [0]})
    with pytest.raises(SettingError, match=r"choices\['cpu_level'\].*\[99\].*0\.\.24"):
        DiscreteActions(make(), {"cpu_level": [0, 99]})
    with pytest.raises(SettingError, match=r"gpu_level"):
        DiscreteActions(make(), {"gpu_level": [-1]})
    with pytest.raises(SettingError, match=r"gpu_level"):
        DiscreteActions(make(), {"gpu_level": [1.5]})
    with pytest.raises(ConfigError, match=r"choices\['cpu_level'\] is empty"):
        DiscreteActions(make(), {"cpu_level": []})
    with pytest.raises(ConfigError, match=r"choices\['cpu_level'\] repeats value\(s\) \[3\]"):
        DiscreteActions(make(), {"cpu_level": [3, 3]})
    with pytest.raises(ConfigError, match="MultiDiscrete"):
        DiscreteActions(gym.make("CartPole-v1"))
    env = DiscreteActions(make(), {"cpu_level": CPU, "gpu_level": GPU})
    n = env.action_space.n
    for bad in (n, -1, 2.5, "3", True):
        with pytest.raises(SettingError, match=rf"Discrete\({n}\).*0\.\.{n - 1}"):
            env.action(bad)
    env.reset(seed=0)
    with pytest.raises(SettingError, match=rf"Discrete\({n}\)"):
        env.step(n)
    with pytest.raises(SettingError, match=r"'cpu_level' must be one of \[0, 12, 24\], got 5"):
        env.index_of([0, 5, 0])
    with pytest.raises(SettingError, match=r"2 components; the env takes 3"):
        env.index_of([0, 0])


@_wrapped_ok
def test_discrete_check_env_and_dqn(one_torch_thread) -> None:
    from stable_baselines3 import DQN

    env = DiscreteActions(make(50), {"cpu_level": CPU, "gpu_level": GPU})
    check_env(env, skip_render_check=True)
    model = DQN(
        "MlpPolicy", env, learning_starts=100, buffer_size=1000, batch_size=32, train_freq=4,
        policy_kwargs={"net_arch": [16]}, device="cpu", seed=0,
    )
    model.learn(500)
    action, _ = model.predict(env.reset(seed=1)[0], deterministic=True)
    assert env.action_space.contains(int(action))


# ---------------------------------------------------------------------------------------------- ContinuousActions


def test_continuous_mapping() -> None:
    base = make()
    env = ContinuousActions(base)
    nvec = base.action_space.nvec  # (5, 25, 15)
    assert env.action_space == spaces.Box(-1.0, 1.0, (3,), np.float32)
    assert env.action(np.full(3, -1.0, np.float32)).tolist() == [0, 0, 0]
    assert env.action(np.ones(3, np.float32)).tolist() == (nvec - 1).tolist()
    assert env.action(np.zeros(3, np.float32)).tolist() == ((nvec - 1) // 2).tolist()  # odd n: the exact middle
    assert env.action([-5.0, 5.0, 0.0]).tolist() == [0, nvec[1] - 1, (nvec[2] - 1) // 2]  # beyond ±1: clipped
    out = env.action(np.zeros(3))
    assert out.dtype == np.int64 and base.action_space.contains(out)
    for levels in ([0, 0, 0], [1, 3, 14], (nvec - 1).tolist()):
        assert env.action(env.continuous_of(levels)).tolist() == levels
    rng = np.random.default_rng(0)
    for a in rng.uniform(-1, 1, (200, 3)):
        assert base.action_space.contains(env.action(a))
    with pytest.raises(SettingError, match="NaN or infinite"):
        env.action([0.0, math.nan, 0.0])
    with pytest.raises(SettingError, match="NaN or infinite"):
        env.action([0.0, math.inf, 0.0])
    with pytest.raises(SettingError, match=r"Box\(-1, 1, \(3,\)\)"):
        env.action([0.0, 0.0])
    with pytest.raises(ConfigError, match="MultiDiscrete"):
        ContinuousActions(gym.make("CartPole-v1"))


@_wrapped_ok
def test_continuous_check_env_and_sac(one_torch_thread) -> None:
    from stable_baselines3 import SAC

    env = ContinuousActions(make(50))
    check_env(env, skip_render_check=True)
    model = SAC(
        "MlpPolicy", env, learning_starts=50, buffer_size=500, batch_size=32,
        policy_kwargs={"net_arch": [16]}, device="cpu", seed=0,
    )
    actor = [p.detach().clone() for p in model.actor.parameters()]
    model.learn(200)
    assert model.num_timesteps == 200
    assert any(not np.array_equal(a.numpy(), b.detach().numpy()) for a, b in zip(actor, model.actor.parameters()))
    # SAC acted in the wrapper's box; each action was mapped to levels the frame env took.
    stored = model.replay_buffer.actions[:200, 0]
    assert stored.shape == (200, 3) and np.all(np.abs(stored) <= 1.0) and np.ptp(stored, axis=0).min() > 0.5
    obs, _ = env.reset(seed=1)
    action, _ = model.predict(obs, deterministic=True)
    assert env.action_space.contains(action)
    levels = env.action(action)
    assert env.env.action_space.contains(levels)
    assert env.step(action)[4]["exit"] == levels[0]


# ---------------------------------------------------------------------------------------------- SelectObservation


def test_select_observation_matches_full() -> None:
    fields = ["slack", "edge_density", "temperature", "latency", "gpu_level"]
    full = make()
    sel = SelectObservation(make(), fields)
    names = full.unwrapped.obs_names
    idx = [names.index(f) for f in fields]
    assert sel.obs_names == tuple(fields)
    assert [f.name for f in sel.obs_fields] == fields
    assert sel.observation_space.shape == (len(fields),) and sel.observation_space.dtype == np.float32
    np.testing.assert_array_equal(sel.observation_space.low, full.observation_space.low[idx])
    np.testing.assert_array_equal(sel.observation_space.high, full.observation_space.high[idx])
    o_full, _ = full.reset(seed=3)
    o_sel, _ = sel.reset(seed=3)
    np.testing.assert_array_equal(o_sel, o_full[idx])
    rng = np.random.default_rng(1)
    for _ in range(20):
        a = rng.integers(0, full.action_space.nvec)
        o_full, r_full, *_ = full.step(a)
        o_sel, r_sel, *_ = sel.step(a)
        assert o_sel.dtype == np.float32
        np.testing.assert_array_equal(o_sel, o_full[idx])
        assert r_sel == r_full
    # Stacked: names come from the inner SelectObservation.
    sel2 = SelectObservation(sel, ["latency", "slack"])
    assert sel2.obs_names == ("latency", "slack")
    o2, _ = sel2.reset(seed=3)
    o1, _ = sel.reset(seed=3)
    np.testing.assert_array_equal(o2, o1[[3, 0]])


def test_select_observation_errors() -> None:
    with pytest.raises(UnknownNameError, match=r"\['latncy'\].*available: \['edge_density'.*'slack', 'fps'\]"):
        SelectObservation(make(), ["latncy"])
    with pytest.raises(ConfigError, match="empty"):
        SelectObservation(make(), [])
    with pytest.raises(ConfigError, match=r"repeats \['slack'\]"):
        SelectObservation(make(), ["slack", "latency", "slack"])
    with pytest.raises(ConfigError, match="list of field names"):
        SelectObservation(make(), "slack")
    with pytest.raises(ConfigError, match="obs_names"):
        SelectObservation(gym.make("CartPole-v1"), ["x"])


# ---------------------------------------------------------------------------------------------- EpisodeStats


def _run_episode(env: gym.Env, seed: int = 0) -> list[dict[str, Any]]:
    env.reset(seed=seed)
    env.action_space.seed(seed)
    infos = []
    while True:
        _, _, term, trunc, info = env.step(env.action_space.sample())
        infos.append(info)
        if term or trunc:
            return infos


def test_episode_stats_frame_env() -> None:
    env = EpisodeStats(make(20))
    infos = _run_episode(env)
    assert len(infos) == 20
    assert all(k not in i for i in infos[:-1] for k in EPISODE_STAT_KEYS)
    last = infos[-1]
    assert set(EPISODE_STAT_KEYS) <= set(last) and set(EPISODE_STAT_KEYS) == set(EPISODE_STAT_DOCS)
    lat = np.array([i["latency_ms"] for i in infos])
    assert last["ep_frames"] == 20
    assert last["ep_energy_per_frame_j"] == pytest.approx(np.mean([i["energy_j"] for i in infos]))
    assert last["ep_energy_per_frame_j"] > 0
    assert last["ep_measured_energy_per_frame_j"] == pytest.approx(np.mean([i["measured_energy_j"] for i in infos]))
    assert last["ep_latency_mean_ms"] == pytest.approx(lat.mean())
    assert last["ep_latency_p95_ms"] == pytest.approx(np.percentile(lat, 95))
    assert last["ep_latency_p99_ms"] == pytest.approx(np.percentile(lat, 99))
    assert last["ep_latency_mean_ms"] <= last["ep_latency_p95_ms"] <= last["ep_latency_p99_ms"] <= lat.max()
    assert last["ep_deadline_miss_rate"] == pytest.approx(np.mean([i["deadline_missed"] for i in infos]))
    assert last["ep_accuracy"] == pytest.approx(np.mean([i["correct"] for i in infos]))
    assert last["ep_dvfs_switches_per_frame"] == pytest.approx(np.mean([i["dvfs_switches"] for i in infos]))
    assert last["ep_throttled_fraction"] == pytest.approx(np.mean([i["throttled"] for i in infos]))
    assert last["ep_mean_exit"] == pytest.approx(np.mean([i["exit"] for i in infos]))
    assert env.last_episode_stats == {k: last[k] for k in EPISODE_STAT_KEYS}
    # reset() restarts the counters: a second episode reports its own figures.
    infos2 = _run_episode(env, seed=5)
    assert infos2[-1]["ep_frames"] == 20
    assert infos2[-1]["ep_energy_per_frame_j"] == pytest.approx(np.mean([i["energy_j"] for i in infos2]))


class _BlockLikeEnv(gym.Env):
    """A stand-in for the block env: a frame finishes every third step (``frame_done``)."""

    observation_space = spaces.Box(0.0, 1.0, (1,), np.float32)
    action_space = spaces.MultiDiscrete([2, 3])

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self._t = 0
        return np.zeros(1, np.float32), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        self._t += 1
        done = self._t % 3 == 0
        f = self._t // 3  # frame number, 1-based when done
        info = {
            "frame_done": done, "energy_j": float(f) if done else 99.0, "measured_energy_j": 0.5 if done else 99.0,
            "latency_ms": 10.0 * f if done else 999.0, "deadline_missed": done and f == 2, "correct": done,
            "dvfs_switches": 1 if done else 3, "throttled": False, "exit": f - 1 if done else -1,
        }
        return np.zeros(1, np.float32), 0.0, False, self._t >= 9, info


def test_episode_stats_counts_only_finished_frames() -> None:
    env = EpisodeStats(_BlockLikeEnv())
    env.reset(seed=0)
    infos = [env.step(np.array([0, 0]))[4] for _ in range(9)]
    last = infos[-1]
    assert last["ep_frames"] == 3
    assert last["ep_energy_per_frame_j"] == pytest.approx(2.0)  # frames 1, 2, 3
    assert last["ep_measured_energy_per_frame_j"] == pytest.approx(0.5)
    assert last["ep_latency_mean_ms"] == pytest.approx(20.0)
    assert last["ep_deadline_miss_rate"] == pytest.approx(1 / 3)
    assert last["ep_accuracy"] == 1.0
    assert last["ep_dvfs_switches_per_frame"] == 1.0
    assert last["ep_mean_exit"] == pytest.approx(1.0)


def test_episode_stats_monitor_csv(tmp_path: Path) -> None:
    from stable_baselines3.common.monitor import Monitor

    env = Monitor(EpisodeStats(make(20)), str(tmp_path / "run"), info_keywords=EPISODE_STAT_KEYS)
    infos = [_run_episode(env, seed=s)[-1] for s in (0, 1)]
    assert infos[-1]["episode"]["l"] == 20
    env.close()
    with open(tmp_path / "run.monitor.csv") as f:
        f.readline()  # the JSON header line
        rows = list(csv.DictReader(f))
    assert len(rows) == 2
    assert set(EPISODE_STAT_KEYS) <= set(rows[0])
    for row, info in zip(rows, infos):
        assert int(row["ep_frames"]) == 20
        assert float(row["ep_energy_per_frame_j"]) == pytest.approx(info["ep_energy_per_frame_j"])
        assert float(row["ep_latency_p99_ms"]) == pytest.approx(info["ep_latency_p99_ms"])


# ---------------------------------------------------------------------------------------------- callbacks


def test_callback_tensorboard(tmp_path: Path, one_torch_thread) -> None:
    from stable_baselines3 import PPO
    from stable_baselines3.common.monitor import Monitor
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from e4gym.envs.callbacks import EPISODE_STAT_TAGS, EpisodeStatsCallback

    assert EPISODE_STAT_TAGS["ep_energy_per_frame_j"] == "e4gym/energy_per_frame_j"
    assert EPISODE_STAT_TAGS["ep_latency_p99_ms"] == "e4gym/latency_p99_ms"
    env = Monitor(EpisodeStats(make(32)), info_keywords=EPISODE_STAT_KEYS)
    model = PPO(
        "MlpPolicy", env, n_steps=64, batch_size=32, n_epochs=2, policy_kwargs={"net_arch": [16]},
        tensorboard_log=str(tmp_path), device="cpu", seed=0,
    )
    cb = EpisodeStatsCallback()
    model.learn(256, callback=cb)
    assert cb.n_episodes == 256 // 32
    events = list(tmp_path.rglob("events.out.tfevents.*"))
    assert len(events) == 1
    acc = EventAccumulator(str(events[0].parent))
    acc.Reload()
    tags = acc.Tags()["scalars"]
    assert "rollout/ep_rew_mean" in tags
    for tag in ("e4gym/energy_per_frame_j", "e4gym/latency_p99_ms", "e4gym/deadline_miss_rate", "e4gym/accuracy"):
        assert tag in tags, f"{tag} not in {tags}"
    energy = [e.value for e in acc.Scalars("e4gym/energy_per_frame_j")]
    assert len(energy) == 4  # one dump per rollout of 64 steps (2 episodes each)
    assert all(0.0 < v < 10.0 and math.isfinite(v) for v in energy)
    acc_vals = [e.value for e in acc.Scalars("e4gym/accuracy")]
    assert all(0.0 <= v <= 1.0 for v in acc_vals)


def test_callback_without_monitor_and_nan(one_torch_thread) -> None:
    from stable_baselines3 import A2C

    from e4gym.envs.callbacks import EpisodeStatsCallback

    model = A2C("MlpPolicy", EpisodeStats(make(16)), n_steps=16, policy_kwargs={"net_arch": [8]}, device="cpu")
    cb = EpisodeStatsCallback()
    model.learn(32, callback=cb)
    assert cb.n_episodes == 2
    # A NaN figure (an episode without a finished frame) is not recorded.
    cb.locals = {"infos": [{"ep_frames": 0, "ep_energy_per_frame_j": math.nan}, {"other": 1}]}
    before = dict(model.logger.name_to_value)
    cb._on_step()
    assert model.logger.name_to_value.get("e4gym/energy_per_frame_j") == before.get("e4gym/energy_per_frame_j")
    assert cb.n_episodes == 3


def test_env_action_maps_through_every_action_wrapper() -> None:
    from e4gym.envs.wrappers import env_action

    base = gym.make(ENV_ID, episode_frames=50)
    feasible = DeadlineFeasibleActions(base)
    chain = DiscreteActions(feasible, {"cpu_level": [0, 24], "gpu_level": [0, 14]})
    for i in range(chain.action_space.n):
        multi = chain.action(i)
        assert np.array_equal(env_action(chain, i), feasible.action(multi))  # outermost first, then the projection
    assert env_action(base, [1, 2, 3]) == [1, 2, 3]
