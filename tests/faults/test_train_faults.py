"""Faults of ``e4gym train --resume`` and of its arguments (issue 14, findings 4, 5 and two probes of 7).

Each test fails on the code before the fix: a resume that recorded hyper-parameters and steps it did not use,
lost the CSV and evaluation history and overwrote the best model; a truncated replay buffer that crashed with a
raw ``UnpicklingError``; a checkpoint of another action space called "corrupt"; a bad env argument that left an
empty ``--out`` folder. Runs are tiny (32-frame episodes, 8-unit networks, 64-128 steps).
"""

from __future__ import annotations

import csv
import json
import pickle
from pathlib import Path

import numpy as np
import pytest

import e4gym  # noqa: F401
from agents.train import train
from e4gym.cli import main
from e4gym.errors import ConfigError

ENV_ID = "e4gym/EarlyExitDVFS-v1"

PPO_CONFIG = f"""{ENV_ID}:
  env_kwargs: {{device: xavier-nx, episode_frames: 32}}
  policy: MlpPolicy
  policy_kwargs: {{net_arch: [8]}}
  learning_rate: {{lr}}
  n_steps: 32
  batch_size: 32
  n_epochs: 1
"""

DQN_CONFIG = f"""{ENV_ID}:
  env_kwargs: {{device: xavier-nx, episode_frames: 32}}
  wrapper: {{discrete: {{levels: 2}}}}
  policy_kwargs: {{net_arch: [8]}}
  buffer_size: 500
  learning_starts: 16
  batch_size: 8
  train_freq: 4
  target_update_interval: 32
"""


def ppo_config(tmp_path: Path, lr: float = 0.0003, name: str = "ppo.yaml") -> Path:
    path = tmp_path / name
    path.write_text(PPO_CONFIG.replace("{lr}", repr(lr)))
    return path


def tiny_ppo(tmp_path: Path, steps: int = 64, **kw) -> Path:
    """A PPO run of ``steps`` steps into ``tmp_path/run`` (checkpoints and evaluations every 32 steps)."""
    out = tmp_path / "run"
    cfg = kw.pop("config", None) or ppo_config(tmp_path)
    train("ppo", out=out, config=cfg, steps=steps, checkpoint_freq=32, eval_freq=32, eval_episodes=1,
          progress=False, **kw)
    return out


def one_line_error(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


# ---------------------------------------------------------------------------------------------- finding 4


def test_resume_refuses_other_hyperparameters_unless_overridden_and_then_applies_them(tmp_path, capsys) -> None:
    out = tiny_ppo(tmp_path)
    new_cfg = ppo_config(tmp_path, lr=0.001, name="new.yaml")
    args = ["train", "--algo", "ppo", "--config", str(new_cfg), "--out", str(out), "--steps", "128", "--resume",
            "--checkpoint-freq", "32", "--eval-freq", "32", "--eval-episodes", "1", "--quiet"]
    assert main(args) == 2
    err = one_line_error(capsys)
    assert "learning_rate" in err and "--override-hyperparams" in err and "ckpt_64_steps.zip" in err
    assert json.loads((out / "train.json").read_text())["steps"] == 64  # nothing was trained or recorded
    # With --override-hyperparams the new learning rate is the model's, and train.json says so.
    assert main([*args, "--override-hyperparams"]) == 0
    from stable_baselines3 import PPO

    model = PPO.load(out / "model.zip", device="cpu")
    assert model.num_timesteps == 128 and model.learning_rate == 0.001
    assert model.policy.optimizer.param_groups[0]["lr"] == pytest.approx(0.001)  # applied, not only stored
    meta = json.loads((out / "train.json").read_text())
    assert meta["steps"] == 128 and meta["hyperparameters"]["learning_rate"] == 0.001
    assert meta["hyperparameter_overrides"] == [{"steps": 64, "changed": {"learning_rate": [0.0003, 0.001]}}]
    # The checkpoints after the change record it: resuming again with the new config needs no flag.
    assert main([*args[:8], "160", *args[9:]]) == 0
    assert json.loads((out / "train.json").read_text())["hyperparameter_overrides"][0]["steps"] == 64


def test_resume_refuses_fewer_steps_than_done(tmp_path, capsys) -> None:
    out = tiny_ppo(tmp_path)
    assert main(["train", "--algo", "ppo", "--config", str(ppo_config(tmp_path)), "--out", str(out), "--steps",
                 "32", "--resume", "--quiet"]) == 2
    err = one_line_error(capsys)
    assert "--steps 32" in err and "64 steps" in err
    assert json.loads((out / "train.json").read_text())["steps"] == 64


def test_resume_appends_the_csv_and_evaluation_history_and_keeps_the_best_model(tmp_path) -> None:
    out = tiny_ppo(tmp_path)
    rows = list(csv.DictReader((out / "tb" / "progress.csv").open()))
    steps_before = [int(float(r["time/total_timesteps"])) for r in rows if r.get("time/total_timesteps")]
    assert steps_before and max(steps_before) <= 64
    with np.load(out / "eval" / "evaluations.npz") as data:
        before = {k: data[k] for k in data.files}
    assert list(before["timesteps"]) == [32, 64]
    # Pretend the best evaluation so far was excellent: a resumed run's worse models must not replace it.
    results = before["results"].copy()
    results[0] = 1e9
    np.savez(out / "eval" / "evaluations.npz", timesteps=before["timesteps"], results=results,
             ep_lengths=before["ep_lengths"])
    best = (out / "eval" / "best_model.zip").read_bytes()
    tiny_ppo(tmp_path, steps=128, resume=True)
    assert (out / "eval" / "best_model.zip").read_bytes() == best
    with np.load(out / "eval" / "evaluations.npz") as data:
        assert list(data["timesteps"]) == [32, 64, 96, 128]
        assert data["results"][0, 0] == 1e9 and data["results"].shape == (4, 1)
    rows = list(csv.DictReader((out / "tb" / "progress.csv").open()))
    steps_after = [int(float(r["time/total_timesteps"])) for r in rows if r.get("time/total_timesteps")]
    assert steps_after[:len(steps_before)] == steps_before and max(steps_after) == 128
    # A better model does replace it.
    with np.load(out / "eval" / "evaluations.npz") as data:
        np.savez(out / "eval" / "evaluations.npz", timesteps=data["timesteps"],
                 results=np.full_like(data["results"], -1e9), ep_lengths=data["ep_lengths"])
    tiny_ppo(tmp_path, steps=160, resume=True)
    assert (out / "eval" / "best_model.zip").read_bytes() != best
    assert not (out / "eval" / ".staging").exists()


def test_an_interrupted_replay_buffer_write_leaves_no_truncated_file(tmp_path, monkeypatch) -> None:
    from stable_baselines3 import DQN

    save = DQN.save_replay_buffer
    calls = []

    def interrupted(self, path) -> None:
        calls.append(path)
        if len(calls) == 2:  # the second checkpoint: half a file, then Ctrl-C
            Path(path).write_bytes(b"\x80\x05 half a pickle")
            raise KeyboardInterrupt
        save(self, path)

    monkeypatch.setattr(DQN, "save_replay_buffer", interrupted)
    cfg = tmp_path / "dqn.yaml"
    cfg.write_text(DQN_CONFIG)
    out = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train("dqn", out=out, config=cfg, steps=128, checkpoint_freq=64, eval_freq=1000, progress=False)
    ckpts = out / "checkpoints"
    for pkl in ckpts.glob("ckpt_replay_buffer_*.pkl"):
        with open(pkl, "rb") as f:
            pickle.load(f)  # every buffer there is whole
    assert (ckpts / "ckpt_64_steps.zip").is_file() and (ckpts / "ckpt_replay_buffer_64_steps.pkl").is_file()
    assert not (ckpts / "ckpt_128_steps.zip").exists()  # a checkpoint is listed only once complete
    assert not [p.name for p in ckpts.iterdir() if ".tmp-" in p.name]


# ---------------------------------------------------------------------------------------------- finding 5


def test_a_truncated_replay_buffer_is_refused_in_one_line(tmp_path, capsys) -> None:
    cfg = tmp_path / "dqn.yaml"
    cfg.write_text(DQN_CONFIG)
    out = tmp_path / "run"
    train("dqn", out=out, config=cfg, steps=64, checkpoint_freq=64, eval_freq=1000, progress=False)
    pkl = out / "checkpoints" / "ckpt_replay_buffer_64_steps.pkl"
    pkl.write_bytes(pkl.read_bytes()[: pkl.stat().st_size // 2])
    assert main(["train", "--algo", "dqn", "--config", str(cfg), "--out", str(out), "--steps", "128", "--resume",
                 "--quiet"]) == 2
    err = one_line_error(capsys)
    assert "ckpt_replay_buffer_64_steps.pkl" in err and "corrupt or truncated" in err
    assert "delete" in err and "older checkpoint" in err


def test_a_truncated_checkpoint_is_refused_in_one_line(tmp_path, capsys) -> None:
    out = tiny_ppo(tmp_path)
    ckpt = out / "checkpoints" / "ckpt_64_steps.zip"
    ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    assert main(["train", "--algo", "ppo", "--config", str(ppo_config(tmp_path)), "--out", str(out), "--steps",
                 "128", "--resume", "--quiet"]) == 2
    err = one_line_error(capsys)
    assert "ckpt_64_steps.zip" in err and "truncated" in err and "older checkpoint" in err


# ---------------------------------------------------------------------------------------------- finding 7


def test_a_checkpoint_of_another_action_space_says_so_not_corrupt(tmp_path, capsys) -> None:
    out = tiny_ppo(tmp_path)
    assert main(["train", "--algo", "ppo", "--config", str(ppo_config(tmp_path)), "--out", str(out), "--steps",
                 "128", "--resume", "--quiet", "--env-kwargs", "device=orin-nano"]) == 2
    err = one_line_error(capsys)
    assert "ckpt_64_steps.zip" in err and "another env" in err and "action space" in err
    assert "orin-nano" in err and "corrupt" not in err


def test_a_bad_env_argument_is_one_line_and_leaves_no_out_folder(tmp_path, capsys) -> None:
    out = tmp_path / "never"
    assert main(["train", "--algo", "ppo", "--out", str(out), "--steps", "64", "--quiet",
                 "--env-kwargs", "bogus=1"]) == 2
    err = one_line_error(capsys)
    assert "'bogus'" in err and "--env-kwargs" in err
    assert not out.exists()
    with pytest.raises(ConfigError, match="bogus"):
        train("ppo", out=out, steps=64, env_kwargs={"bogus": 1}, progress=False)
    with pytest.raises(ConfigError, match="nope"):
        train("ppo", out=out, steps=64, env_kwargs={"device": "nope"}, progress=False)
    assert not out.exists()


# ---------------------------------------------------------------------------------------------- other algorithms


def test_ring_dvfs_resume_applies_overrides_and_refuses_another_device(tmp_path) -> None:
    from baselines.ring_dvfs import RingDVFSAgent

    def cfg(extra: str) -> Path:
        path = tmp_path / f"ring-{abs(hash(extra))}.yaml"
        path.write_text(f"{ENV_ID}:\n  env_kwargs: {{device: xavier-nx, fps: 20, episode_frames: 50}}\n{extra}")
        return path

    out = tmp_path / "ring"
    kw = {"out": out, "checkpoint_freq": 100, "eval_freq": 100, "eval_episodes": 1, "progress": False}
    train("ring-dvfs", config=cfg("  alpha: 0.1\n"), steps=100, **kw)
    with pytest.raises(ConfigError, match=r"alpha 0\.1 -> 0\.5.*--override-hyperparams"):
        train("ring-dvfs", config=cfg("  alpha: 0.5\n"), steps=200, resume=True, **kw)
    train("ring-dvfs", config=cfg("  alpha: 0.5\n"), steps=200, resume=True, override_hyperparams=True, **kw)
    assert RingDVFSAgent.load(out / "model.npz").config.alpha == 0.5
    with pytest.raises(ConfigError, match=r"cannot change \['n_levels'\]"):
        train("ring-dvfs", config=cfg("  alpha: 0.5\n  n_levels: 4\n"), steps=300, resume=True,
              override_hyperparams=True, **kw)
    from agents.algos import CheckpointMismatchError

    with pytest.raises(CheckpointMismatchError, match=r"another env.*orin-nano"):
        train("ring-dvfs", config=cfg("  alpha: 0.5\n"), steps=300, resume=True, env_kwargs={"device": "orin-nano"},
              **kw)
