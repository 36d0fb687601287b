"""The registry of training algorithms (agents/algos.py): lookup errors, and an algorithm registered here (not in
agents/train.py) that trains, checkpoints, resumes and serves the harness through ``e4gym train``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

import e4gym  # noqa: F401
from agents.algos import AlgoSpec, TrainRun, algo_names, checkpoints, get_algo, register_algo, unregister_algo
from agents.algos_sb3 import sb3_algo
from agents.train import TrainedPolicy, train
from e4gym.cli import main
from e4gym.errors import ConfigError, UnknownNameError
from e4gym.policy import run_episode

ENV_ID = "e4gym/EarlyExitDVFS-v1"


class ToyModel:
    """Runs one clock level for every frame; its only state is the step count."""

    def __init__(self, level: int, num_timesteps: int = 0) -> None:
        self.level, self.num_timesteps = int(level), int(num_timesteps)

    def action(self, env: gym.Env) -> np.ndarray:
        return np.array([int(env.action_space.nvec[0]) - 1, self.level, self.level])

    def save(self, f: Any) -> None:
        f.write(json.dumps({"level": self.level, "num_timesteps": self.num_timesteps}).encode())

    @classmethod
    def load(cls, path: Path) -> ToyModel:
        return cls(**json.loads(Path(path).read_text()))


class ToyPolicy:
    clairvoyant = False

    def __init__(self, path: Path, name: str) -> None:
        self.model, self.name, self.env_kwargs = ToyModel.load(path), name, {}

    def bind(self, context: Any) -> None:
        self.last_exit = context.setup.profile.n_exits - 1

    def predict(self, observation: Any, state: Any = None, episode_start: Any = None,
                deterministic: bool = True) -> tuple[np.ndarray, Any]:
        return np.array([self.last_exit, self.model.level, self.model.level]), state

    def reset(self) -> None:
        pass


def toy_train(run: TrainRun) -> ToyModel:
    env = run.env(train=True)
    model = run.load_checkpoint(env) if run.resume_from is not None else \
        run.spec.build(env, run.hyperparameters, run.seed)
    env.reset(seed=run.seed)
    while model.num_timesteps < run.total_steps:
        _, _, terminated, truncated, _ = env.step(model.action(env))
        model.num_timesteps += 1
        if terminated or truncated:
            env.reset()
        if model.num_timesteps % run.checkpoint_freq == 0:
            run.save_checkpoint(model, model.num_timesteps)
    env.close()
    return model


TOY = AlgoSpec(name="toy", build=lambda env, hp, seed: ToyModel(hp["level"]),
               load=lambda path, env: ToyModel.load(path), train=toy_train,
               policy=lambda path, name, meta: ToyPolicy(path, name), model_file="model.json")


@pytest.fixture
def toy(tmp_path):
    register_algo(TOY)
    cfg = tmp_path / "toy.yaml"
    cfg.write_text(f"{ENV_ID}:\n  n_timesteps: 50\n  env_kwargs: {{device: xavier-nx, episode_frames: 20}}\n"
                   "  level: 2\n")
    yield cfg
    unregister_algo("toy")


def test_unknown_algorithm_is_one_line_listing_the_registered_ones(tmp_path, capsys) -> None:
    names = algo_names()
    assert {"ppo", "a2c", "dqn", "sac", "td3", "ztt", "ring-dvfs"} <= set(names) and list(names) == sorted(names)
    with pytest.raises(UnknownNameError) as err:
        get_algo("nope")
    assert "\n" not in str(err.value) and all(n in str(err.value) for n in names)
    assert main(["train", "--algo", "nope", "--out", str(tmp_path / "x"), "--quiet"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "unknown algorithm 'nope'" in lines[0] and "ring-dvfs" in lines[0]
    assert get_algo("ring-dvfs").model_file == "model.npz" and get_algo("ppo").model_file == "model.zip"


def test_registration_is_checked(toy) -> None:
    assert get_algo("toy") is TOY and "toy" in algo_names()
    register_algo(TOY)  # the same spec again (a module imported twice) is fine
    with pytest.raises(ConfigError, match="already registered"):
        register_algo(AlgoSpec(name="toy", build=TOY.build, load=TOY.load, train=TOY.train, policy=TOY.policy))
    with pytest.raises(ConfigError, match="register_algo takes an AlgoSpec"):
        register_algo("toy")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="algorithm name"):
        AlgoSpec(name="Bad Name", build=TOY.build, load=TOY.load, train=TOY.train, policy=TOY.policy)
    with pytest.raises(ConfigError, match="model_file"):
        AlgoSpec(name="x", build=TOY.build, load=TOY.load, train=TOY.train, policy=TOY.policy, model_file="model")


def test_a_registered_toy_algorithm_trains_resumes_and_serves_through_train_py(toy, tmp_path) -> None:
    out = tmp_path / "run"
    assert main(["train", "--algo", "toy", "--config", str(toy), "--out", str(out), "--steps", "40",
                 "--checkpoint-freq", "20", "--quiet"]) == 0
    assert ToyModel.load(out / "model.json").num_timesteps == 40
    assert [s for s, _ in checkpoints(out, TOY)] == [20, 40]
    assert not checkpoints(out, get_algo("ppo"))  # another algorithm's suffix
    meta = json.loads((out / "train.json").read_text())
    assert meta["algo"] == "toy" and meta["hyperparameters"]["level"] == 2
    assert meta["env_kwargs"]["episode_frames"] == 20
    assert (out / "streams.jsonl").read_text().count("\n") == 3  # the toy loop resets 3 times, each logged
    with pytest.raises(ConfigError, match=r"already holds a trained model \(model\.json\)"):
        train("toy", config=toy, out=out, steps=40, progress=False)
    # Resume from the newest checkpoint.
    (out / "model.json").unlink()
    train("toy", config=toy, out=out, steps=60, checkpoint_freq=20, resume=True, progress=False)
    assert ToyModel.load(out / "model.json").num_timesteps == 60
    (out / "checkpoints" / "ckpt_60_steps.json").write_text("not json")
    (out / "model.json").unlink()
    with pytest.raises(ConfigError, match=r"ckpt_60_steps\.json is corrupt or not a toy model"):
        train("toy", config=toy, out=out, steps=80, resume=True, progress=False)
    with pytest.raises(ConfigError, match=r"no checkpoint .*ckpt_<steps>_steps\.json"):
        train("toy", config=toy, out=tmp_path / "empty", steps=10, resume=True, progress=False)
    # The harness serves the trained model with the algorithm's own policy.
    (out / "model.json").write_text(json.dumps({"level": 2, "num_timesteps": 60}))
    pol = TrainedPolicy(out)
    env = gym.make(pol.env_id, device="xavier-nx", episode_frames=10)
    infos = run_episode(pol, env, seed=0)
    assert len(infos) == 10 and {i["cpu_hz"] for i in infos} == {env.unwrapped.device_spec.cpu_freqs_hz[2]}


def test_a_resume_keeps_the_checkpoints_hyperparameters_of_an_algorithm_that_cannot_change_them(toy, tmp_path) \
        -> None:
    """The toy algorithm has no ``load_override``: a config with another ``level`` is refused on resume, with and
    without ``--override-hyperparams``, and nothing records the level it did not train with (issue 14, 4)."""
    out = tmp_path / "run"
    train("toy", config=toy, out=out, steps=40, checkpoint_freq=20, progress=False)
    record = json.loads((out / "checkpoints" / "ckpt_40_steps.meta.json").read_text())
    assert record["hyperparameters"] == {"level": 2} and record["env_kwargs"]["episode_frames"] == 20
    assert [s for s, _ in checkpoints(out, TOY)] == [20, 40]  # the records are not checkpoints
    other = tmp_path / "toy3.yaml"
    other.write_text(toy.read_text().replace("level: 2", "level: 3"))
    with pytest.raises(ConfigError, match=r"level 2 -> 3.*--override-hyperparams"):
        train("toy", config=other, out=out, steps=60, checkpoint_freq=20, resume=True, progress=False)
    with pytest.raises(ConfigError, match="toy cannot change the hyper-parameters"):
        train("toy", config=other, out=out, steps=60, checkpoint_freq=20, resume=True, override_hyperparams=True,
              progress=False)
    with pytest.raises(ConfigError, match="with --resume"):
        train("toy", config=other, out=tmp_path / "new", steps=60, override_hyperparams=True, progress=False)
    assert json.loads((out / "train.json").read_text())["hyperparameters"]["level"] == 2
    assert ToyModel.load(out / "model.json").num_timesteps == 40


def test_an_sb3_algorithm_registered_under_a_new_name_trains_through_train_py(tmp_path) -> None:
    spec = register_algo(sb3_algo("ppo-tiny", "PPO"))
    try:
        cfg = tmp_path / "ppo-tiny.yaml"
        cfg.write_text(f"{ENV_ID}:\n  env_kwargs: {{device: xavier-nx, episode_frames: 32}}\n  n_steps: 32\n"
                       "  batch_size: 32\n  n_epochs: 1\n")
        out = tmp_path / "run"
        path = train("ppo-tiny", config=cfg, out=out, steps=64, checkpoint_freq=32, progress=False)
        assert path == out / "model.zip" and spec.load(path, None).num_timesteps == 64
        assert [s for s, _ in checkpoints(out, spec)] == [32, 64] and (out / "eval" / "best_model.zip").is_file()
        infos = run_episode(TrainedPolicy(out), gym.make(ENV_ID, device="xavier-nx", episode_frames=5), seed=0)
        assert len(infos) == 5
    finally:
        unregister_algo("ppo-tiny")
