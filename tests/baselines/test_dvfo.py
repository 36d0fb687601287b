"""DVFO's baselines (baselines.dvfo) and the DVFO agent (agents.algos_dvfo, ``e4gym train --algo dvfo``)."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest

from agents.train import TrainedPolicy
from baselines.dvfo import BestStaticOffloadPolicy, CloudOnlyPolicy, EdgeOnlyPolicy, StaticOffloadPolicy
from baselines.governors import make_governor
from e4gym import EDGE_CLOUD_ENV_ID
from e4gym.cli import main
from e4gym.errors import ConfigError
from e4gym.policy import run_episode

DEVICE = "xavier-nx"


def _env(policy, **kw):
    return gym.make(EDGE_CLOUD_ENV_ID, device=DEVICE, **{**policy.env_kwargs, **kw})


def test_edge_only_is_the_default_governors_running_the_whole_network() -> None:
    """Edge-only on the edge-cloud env is, frame for frame, the default governors on the frame env's last exit."""
    edge = EdgeOnlyPolicy()
    a = run_episode(edge, _env(edge, fps=20, episode_frames=80), seed=3)
    gov = make_governor("default")
    b = run_episode(gov, gym.make("e4gym/EarlyExitDVFS-v1", device=DEVICE, fps=20, episode_frames=80,
                                  **gov.env_kwargs), seed=3)
    assert [i["energy_j"] for i in a] == [i["energy_j"] for i in b]
    assert [i["latency_ms"] for i in a] == [i["latency_ms"] for i in b]
    assert all(i["tx_bytes"] == 0 for i in a)


def test_cloud_only_sends_every_input_frame() -> None:
    cloud = CloudOnlyPolicy()
    infos = run_episode(cloud, _env(cloud, uplink=8.0, fps=5, episode_frames=20), seed=0)
    assert all(i["tx_bytes"] == pytest.approx(0.1 * 3 * 224 * 224) and i["offload_share"] == 1.0 for i in infos)
    assert max(i["run_ms"] for i in infos) < 5.0 and min(i["cloud_ms"] for i in infos) > 0


def test_static_offload_checks_its_setting() -> None:
    with pytest.raises(ConfigError, match="share must be an integer index"):
        StaticOffloadPolicy(share=-1, cpu_level=0, gpu_level=0)
    pol = StaticOffloadPolicy(share=3, cpu_level=99, gpu_level=0)
    with pytest.raises(ConfigError, match="exceed the power mode's highest"):
        run_episode(pol, _env(pol, episode_frames=5), seed=0)
    with pytest.raises(ConfigError, match="runs on e4gym/EdgeCloudDVFS-v0"):
        run_episode(StaticOffloadPolicy(1, 1, 1), gym.make("e4gym/EarlyExitDVFS-v1", device=DEVICE), seed=0)


@pytest.mark.slow
def test_best_static_offload_meets_the_constraints_on_held_out_streams_and_saves_energy() -> None:
    pol = BestStaticOffloadPolicy(frames=100, episodes=2, env_kwargs={"uplink": 4.0})
    env = _env(pol, fps=20, control_memory=True, episode_frames=300)
    held_out = [run_episode(pol, env, seed=s) for s in (0, 1)]
    assert pol.sweep["met_constraints"] and pol.sweep["settings"] == 11 * 4 * 4 * 4
    top = StaticOffloadPolicy(0, *env.unwrapped.setup.max_levels)
    edge = [run_episode(top, _env(top, fps=20, control_memory=True, episode_frames=300, uplink=4.0), seed=s)
            for s in (0, 1)]
    for infos, ref in zip(held_out, edge):
        assert np.mean([i["deadline_missed"] for i in infos]) <= 0.01
        assert np.mean([i["correct"] for i in infos]) >= np.mean([i["correct"] for i in ref]) - 0.03
        assert np.mean([i["energy_j"] for i in infos]) < np.mean([i["energy_j"] for i in ref])
    # Never scored on its calibration streams.
    streams = pol.training_streams()
    assert len(streams) == 2
    env.reset(seed=30_000)
    assert env.unwrapped.stream_key() in streams


@pytest.mark.slow
def test_dvfo_trains_from_the_cli_and_serves_the_harness_with_its_concurrent_env(tmp_path) -> None:
    out = tmp_path / "dvfo"
    assert main(["train", "--algo", "dvfo", "--env", EDGE_CLOUD_ENV_ID, "--out", str(out), "--steps", "600",
                 "--quiet", "--env-kwargs", "episode_frames=100", "--eval-freq", "300"]) == 0
    meta = json.loads((out / "train.json").read_text())
    assert meta["algo"] == "dvfo" and meta["env_kwargs"]["concurrent"] is True
    pol = TrainedPolicy(out)
    assert pol.env_kwargs == {"concurrent": True}  # the env's own option follows the model; scenario fields do not
    env = gym.make(pol.env_id, device=DEVICE, control_memory=True, episode_frames=30, **pol.env_kwargs)
    assert "pending_share" in env.unwrapped.obs_names
    infos = run_episode(pol, env, seed=5)
    assert len(infos) == 30 and {i["offload_share"] for i in infos} <= set(env.unwrapped.shares)


@pytest.mark.slow  # 6000 DQN steps: about 12 s
def test_dvfo_learning_curve_rises_in_tensorboard(tmp_path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "dvfo"
    assert main(["train", "--algo", "dvfo", "--env", EDGE_CLOUD_ENV_ID, "--out", str(out), "--steps", "6000",
                 "--quiet", "--env-kwargs", "episode_frames=200"]) == 0
    ea = EventAccumulator(str(out / "tb"))
    ea.Reload()
    curve = [e.value for e in ea.Scalars("e4gym/episode_reward")]
    assert len(curve) >= 20
    # DVFO's reward per 200-frame episode: about -500 while exploring, about -290 at the end (training is
    # deterministic per seed).
    assert np.mean(curve[-4:]) > np.mean(curve[:4]) + 100


def test_trained_policy_env_kwargs_override_the_config_for_the_sequential_variant() -> None:
    seq = TrainedPolicy(algo="dvfo", env_id=EDGE_CLOUD_ENV_ID, env_kwargs={"concurrent": False}, name="dvfo-seq")
    assert seq.env_kwargs == {"concurrent": False}
    assert TrainedPolicy(algo="dvfo", env_id=EDGE_CLOUD_ENV_ID).env_kwargs == {"concurrent": True}
    with pytest.raises(ConfigError, match="env_kwargs must be a mapping"):
        TrainedPolicy(algo="dvfo", env_id=EDGE_CLOUD_ENV_ID, env_kwargs=["concurrent"])  # type: ignore[arg-type]


@pytest.mark.slow
def test_the_baselines_run_through_the_benchmark_harness(tmp_path) -> None:
    from e4gym.bench import run_benchmark

    cfg = {
        "name": "dvfo-tiny", "env": {"episode_frames": 60, "control_memory": True},
        "matrix": {"device": [DEVICE], "model": ["efficientnet_b0"], "fps": [20], "deadline_ms": [None]},
        "seeds": [0],
        "policies": ["edge_only", "cloud_only",
                     {"name": "best_static_offload", "args": {"frames": 30, "episodes": 1, "levels": 2}},
                     {"name": "static_offload", "label": "half", "args": {"share": 5, "cpu_level": 20,
                                                                          "gpu_level": 10}}],
    }
    res = run_benchmark(cfg, tmp_path / "out", jobs=1, plots=False, tensorboard=False)
    assert res.ok, [f.describe() for f in res.failures]
    rows = {r["label"]: r for r in res.rows}
    assert {r["env_id"] for r in rows.values()} == {EDGE_CLOUD_ENV_ID}
    assert rows["best_static_offload"]["sweep_settings"] == 11 * 2 * 2 * 2
    # The sweep's board time is reported: its frames at the stream's 20 fps.
    assert rows["best_static_offload"]["sweep_board_s"] == pytest.approx(11 * 2 * 2 * 2 * 30 / 20)
    bad = dict(cfg, policies=[{"name": "static_offload", "args": {"share": 1, "cpu_level": 0, "gpu_level": 0,
                                                                   "bogus": 1}}])
    with pytest.raises(ConfigError):
        run_benchmark(bad, tmp_path / "bad", jobs=1, plots=False, tensorboard=False)


def test_dvfo_reward_is_its_weighted_energy_and_latency_objective() -> None:
    from agents.algos_dvfo import DVFOReward

    env = DVFOReward(gym.make(EDGE_CLOUD_ENV_ID, device=DEVICE, uplink=4.0, episode_frames=20))
    env.reset(seed=0)
    s = env.unwrapped.setup
    for a in ([0, 24, 14, 7], [10, 0, 0, 0]):
        _, r, _, _, info = env.step(np.array(a))
        lat = min(info["latency_ms"] / (s.deadline_s * 1e3), 10.0)
        expected = -(0.5 * info["energy_j"] / s.energy_ref_j + 0.5 * lat + info["deadline_missed"]
                     + (1.0 - info["correct"]))
        assert r == pytest.approx(expected, rel=1e-12) and r != info["env_reward"]
    with pytest.raises(ConfigError, match="energy_weight"):
        DVFOReward(gym.make(EDGE_CLOUD_ENV_ID, device=DEVICE), energy_weight=2.0)
