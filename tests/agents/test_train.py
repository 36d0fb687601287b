"""``e4gym train`` (agents/train.py): SB3 agents from the CLI, TensorBoard, checkpoints, resume, bench loading."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest
import torch

import e4gym  # noqa: F401
from agents.train import TrainedPolicy, load_agent_config, parse_env_kwargs, train
from e4gym.cli import main
from e4gym.errors import ConfigError, UnknownNameError
from e4gym.policy import run_episode


def scalars(run_dir, tag: str) -> list[tuple[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ea = EventAccumulator(str(run_dir / "tb"))
    ea.Reload()
    return [(e.step, e.value) for e in ea.Scalars(tag)]


@pytest.mark.slow
def test_ppo_learning_curve_rises_in_tensorboard(tmp_path) -> None:
    out = tmp_path / "ppo"
    assert main(["train", "--algo", "ppo", "--out", str(out), "--steps", "12288", "--env-kwargs",
                 "episode_frames=256", "--quiet"]) == 0
    curve = scalars(out, "e4gym/episode_reward")
    assert len(curve) >= 10
    first = np.mean([v for _, v in curve[:4]])
    last = np.mean([v for _, v in curve[-4:]])
    assert last > first + 100  # returns per 256-frame episode: about -590 at random, above -400 after training
    energy = scalars(out, "e4gym/energy_per_frame_j")
    assert energy[-1][1] < energy[0][1]
    meta = json.loads((out / "train.json").read_text())
    assert meta["algo"] == "ppo" and meta["env_kwargs"]["episode_frames"] == 256
    assert meta["env_kwargs"]["device"] == "xavier-nx"  # from configs/agents/ppo.yaml
    assert scalars(out, "eval/mean_reward")  # evaluation episodes ran on their own env
    # The trained model runs in the harness as a policy, by path.
    pol = TrainedPolicy(out)
    env = gym.make(pol.env_id, device="xavier-nx", episode_frames=100)
    infos = run_episode(pol, env, seed=3)
    assert len(infos) == 100 and np.mean([i["energy_j"] for i in infos]) < 0.27


@pytest.mark.slow
def test_resume_continues_the_step_count_and_optimiser_state(tmp_path) -> None:
    out = tmp_path / "run"
    train("ppo", out=out, steps=2048, checkpoint_freq=1024, env_kwargs={"episode_frames": 128}, progress=False)
    from stable_baselines3 import PPO

    ckpt = PPO.load(out / "checkpoints" / "ckpt_2048_steps.zip", device="cpu")
    final = PPO.load(out / "model.zip", device="cpu")
    assert ckpt.num_timesteps == 2048
    a, b = ckpt.policy.optimizer.state_dict()["state"], final.policy.optimizer.state_dict()["state"]
    assert a and all(torch.equal(a[k]["exp_avg"], b[k]["exp_avg"]) for k in a)
    (out / "model.zip").unlink()  # as if the run had been interrupted after its last checkpoint
    train("ppo", out=out, steps=4096, checkpoint_freq=1024, env_kwargs={"episode_frames": 128}, progress=False,
          resume=True)
    resumed = PPO.load(out / "model.zip", device="cpu")
    assert resumed.num_timesteps == 4096
    steps = [s for s, _ in scalars(out, "time/fps")]
    assert steps == sorted(steps) and max(steps) == 4096 and min(steps) <= 1024  # one continuous curve


def test_corrupt_checkpoint_is_refused_with_a_clear_error(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    train("ppo", out=out, steps=1024, checkpoint_freq=512, env_kwargs={"episode_frames": 64}, progress=False)
    (out / "checkpoints" / "ckpt_1024_steps.zip").write_bytes(b"garbage, not a zip")
    rc = main(["train", "--algo", "ppo", "--out", str(out), "--steps", "2048", "--resume", "--quiet",
               "--env-kwargs", "episode_frames=64"])
    err = capsys.readouterr().err
    assert rc == 2 and "ckpt_1024_steps.zip is corrupt" in err


def test_dqn_with_the_discrete_wrapper_trains_and_maps_back_to_env_actions(tmp_path) -> None:
    out = tmp_path / "dqn"
    train("dqn", out=out, steps=1500, env_kwargs={"episode_frames": 250}, progress=False)
    pol = TrainedPolicy(out)
    env = gym.make(pol.env_id, device="xavier-nx", episode_frames=20)
    infos = run_episode(pol, env, seed=0)
    assert len(infos) == 20
    levels = {(i["cpu_hz"], i["gpu_hz"]) for i in infos}
    spec = env.unwrapped.device_spec
    grid_cpu = {spec.cpu_freqs_hz[k] for k in np.linspace(0, spec.n_cpu - 1, 4).round().astype(int)}
    assert all(c in grid_cpu for c, _ in levels)  # only the wrapper's grid of levels


def test_bad_arguments_fail_before_training(tmp_path, capsys) -> None:
    with pytest.raises(UnknownNameError, match="--algo takes"):
        load_agent_config("nope", "e4gym/EarlyExitDVFS-v1")
    with pytest.raises(UnknownNameError, match="has no section for 'CartPole-v1'"):
        load_agent_config("ppo", "CartPole-v1")
    with pytest.raises(ConfigError, match="key=value"):
        parse_env_kwargs(["device"])
    assert parse_env_kwargs(["fps=20", "control_memory=true", "device=nano"]) == {
        "fps": 20, "control_memory": True, "device": "nano"}
    out = tmp_path / "done"
    out.mkdir()
    (out / "model.zip").write_bytes(b"x")
    with pytest.raises(ConfigError, match="already holds a trained model"):
        train("ppo", out=out, steps=10, progress=False)
    with pytest.raises(ConfigError, match="no checkpoint"):
        train("ppo", out=tmp_path / "empty", steps=10, resume=True, progress=False)
    with pytest.raises(ConfigError, match=r"no train\.json"):
        TrainedPolicy(tmp_path)


def test_ring_dvfs_trains_from_the_cli_and_its_curve_rises(tmp_path) -> None:
    out = tmp_path / "ring"
    assert main(["train", "--algo", "ring-dvfs", "--out", str(out), "--steps", "5000", "--quiet",
                 "--env-kwargs", "fps=20", "episode_frames=250"]) == 0
    curve = [v for _, v in scalars(out, "e4gym/episode_reward")]
    assert np.mean(curve[-4:]) > np.mean(curve[:4]) + 300
    assert (out / "model.npz").is_file() and list((out / "checkpoints").glob("ckpt_*_steps.npz"))
    pol = TrainedPolicy(out)
    env = gym.make(pol.env_id, device="xavier-nx", fps=20, episode_frames=200)
    infos = run_episode(pol, env, seed=5)
    assert np.mean([i["deadline_missed"] for i in infos]) <= 0.02
    # Resume from the newest checkpoint continues the step count.
    (out / "model.npz").unlink()
    train("ring-dvfs", out=out, steps=6000, env_kwargs={"fps": 20, "episode_frames": 250}, resume=True,
          progress=False)
    from baselines.ring_dvfs import RingDVFSAgent

    assert RingDVFSAgent.load(out / "model.npz").num_timesteps == 6000


def test_ztt_trains_from_the_cli_and_serves_the_harness(tmp_path) -> None:
    out = tmp_path / "ztt"
    assert main(["train", "--algo", "ztt", "--out", str(out), "--steps", "2500", "--quiet",
                 "--env-kwargs", "episode_frames=250"]) == 0
    curve = [v for _, v in scalars(out, "e4gym/episode_reward")]
    assert len(curve) >= 8 and np.mean(curve[-3:]) > np.mean(curve[:3])
    from baselines.ztt import ZTTDQN

    assert isinstance(ZTTDQN.load(out / "model.zip", device="cpu"), ZTTDQN)
    pol = TrainedPolicy(out)
    env = gym.make(pol.env_id, device="xavier-nx", episode_frames=100)
    infos = run_episode(pol, env, seed=1)
    assert len(infos) == 100 and all(i["exit"] == 4 for i in infos)  # zTT runs the full network


def test_trained_policy_without_a_path_trains_once_per_scenario_and_reuses_it(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("E4GYM_CACHE_DIR", str(tmp_path))
    pol = TrainedPolicy(algo="ring-dvfs", steps=600)
    env = gym.make(pol.env_id, device="xavier-nx", fps=20, episode_frames=50)
    assert len(run_episode(pol, env, seed=0)) == 50
    (run,) = (tmp_path / "trained").glob("ring-dvfs-xavier-nx-efficientnet_b0-*")
    stamp = (run / "model.npz").stat().st_mtime_ns
    again = TrainedPolicy(algo="ring-dvfs", steps=600)
    run_episode(again, gym.make(again.env_id, device="xavier-nx", fps=20, episode_frames=50), seed=0)
    assert (run / "model.npz").stat().st_mtime_ns == stamp  # reused, not retrained
    other = TrainedPolicy(algo="ring-dvfs", steps=600)
    run_episode(other, gym.make(other.env_id, device="orin-nano", fps=20, episode_frames=20), seed=0)
    assert len(list((tmp_path / "trained").glob("ring-dvfs-*"))) == 2  # one run per scenario
    with pytest.raises(ConfigError, match="needs a path, or an algo"):
        TrainedPolicy()


def test_train_seeds_give_each_benchmark_seed_its_own_training_seed(tmp_path, monkeypatch) -> None:
    """train_seeds=2: the harness's seeds 0, 1, 2 run models trained with seeds 0, 1, 0 (two cached runs)."""
    from e4gym.bench import run_benchmark

    monkeypatch.setenv("E4GYM_CACHE_DIR", str(tmp_path / "cache"))
    config = {"name": "two-training-seeds", "env": {"episode_frames": 20},
              "matrix": {"device": ["xavier-nx"], "model": ["efficientnet_b0"], "fps": [20]}, "seeds": [0, 1, 2],
              "policies": [{"name": "trained", "label": "ring", "args": {"algo": "ring-dvfs", "steps": 300,
                                                                        "train_seeds": 2}}]}
    res = run_benchmark(config, tmp_path / "out", jobs=1, plots=False, tensorboard=False, quiet=True)
    assert res.ok, [str(f) for f in res.failures]
    runs = sorted((tmp_path / "cache" / "trained").glob("ring-dvfs-*"))
    assert len(runs) == 2
    assert sorted(json.loads((r / "train.json").read_text())["seed"] for r in runs) == [0, 1]
    pol = TrainedPolicy(algo="ring-dvfs", steps=300, train_seeds=3, seed=10)
    pol.for_task_seed(4)
    assert pol._to_train["seed"] == 11
    with pytest.raises(ConfigError, match="train_seeds must be an integer >= 1"):
        TrainedPolicy(algo="ring-dvfs", train_seeds=0)


@pytest.mark.parametrize("algo", ["sac", "td3", "a2c"])
def test_other_sb3_algorithms_train_and_serve_the_harness(tmp_path, algo: str) -> None:
    out = tmp_path / algo
    train(algo, out=out, steps=300, env_kwargs={"episode_frames": 100}, progress=False)
    pol = TrainedPolicy(out)
    env = gym.make(pol.env_id, device="xavier-nx", episode_frames=10)
    infos = run_episode(pol, env, seed=0)
    assert len(infos) == 10 and all(env.unwrapped.device_spec.cpu_freqs_hz[0] <= i["cpu_hz"] for i in infos)
    assert json.loads((out / "train.json").read_text())["wrapper"] == (None if algo == "a2c" else "continuous")


def test_a_trained_agent_is_never_scored_on_a_stream_it_trained_on(tmp_path) -> None:
    """Training seeds are offset from benchmark seeds, every training and evaluation stream is logged, and the
    harness refuses an episode on one of them (issue 12, finding 7)."""
    from agents.train import STREAMS_FILE, TRAIN_SEED_OFFSET

    out = tmp_path / "ring"
    train("ring-dvfs", out=out, steps=300, env_kwargs={"fps": 20, "episode_frames": 100}, progress=False)
    pol = TrainedPolicy(out)
    keys = pol.training_streams()
    assert keys and len(keys) == len(set((out / STREAMS_FILE).read_text().splitlines()))
    env = gym.make(pol.env_id, device="xavier-nx", fps=20, episode_frames=20)
    run_episode(pol, env, seed=0)  # seed 0 of a benchmark is not a training stream
    # An episode whose stream is one the agent trained on is refused.
    first = next(iter(keys))
    assert first[0] == "synthetic" and first[2] != env.unwrapped.stream_key()[2]
    env.unwrapped.stream_key = lambda: first
    with pytest.raises(ConfigError, match="overlaps the stream it trained on"):
        run_episode(pol, env, seed=TRAIN_SEED_OFFSET)
    (out / STREAMS_FILE).write_text("not json\n")
    with pytest.raises(ConfigError, match="corrupt"):
        TrainedPolicy(out).training_streams()
