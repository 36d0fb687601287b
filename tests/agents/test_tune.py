"""``e4gym tune`` (issue 20): sweeps of ``e4gym train`` runs with Ray Tune and ASHA.

One tiny sweep (4 PPO trials on the frame env, 2 at a time, a Ray of 2 CPUs without dashboard) is run once for
the module through the CLI; the other tests check the config's validation and the missing-Ray error without
starting Ray. Every sweep test checks that no Ray process, no Ray session folder in ``/tmp/ray`` and no temporary
folder of its own is left behind.
"""

from __future__ import annotations

import contextlib
import csv
import importlib.util
import io
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from agents.train import load_agent_config
from agents.tune import TRIAL_SEED_STRIDE, load_tune_config, run_sweep
from e4gym.cli import main
from e4gym.errors import ConfigError
from tests.ray_helpers import ray_processes, ray_session_folders

needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                               reason="ray is not installed (pip install 'e4gym[ray]'; the test extra installs it)")

ENV_ID = "e4gym/EarlyExitDVFS-v1"
#: The tiny sweep. The energy weight is either 0 (good: the return is at least -2 a frame) or 1000 (bad: at
#: most about -300 a frame), and seed 10 draws good, good, bad, bad. With 2 trials at a time the third trial
#: starts only when one of the first two has finished, so when it reaches ASHA's first rung (1 evaluation) that
#: rung holds only good returns and ASHA stops it, whatever the timing.
SWEEP: dict[str, Any] = {
    "agent": "ppo",
    "env": ENV_ID,
    "env_kwargs": {"episode_frames": 32},
    "search_space": {
        "learning_rate": {"loguniform": [1.0e-4, 1.0e-3]},
        "env_kwargs.reward_weights.energy": {"choice": [0.0, 1000.0]},
    },
    "num_samples": 4,
    "metric": "eval/mean_reward",
    "mode": "max",
    "budget": {"steps": 128, "evaluations": 4, "eval_episodes": 1},
    "scheduler": {"name": "asha", "grace_period": 1, "reduction_factor": 2},
    "search": "random",
    "seed": 10,
}
BAD = 1000.0


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The tiny sweep run once through ``e4gym tune``, with what it printed and what it left behind."""
    if importlib.util.find_spec("ray") is None:
        pytest.skip("ray is not installed")
    root = tmp_path_factory.mktemp("tune")
    config = root / "tiny.yaml"
    config.write_text(yaml.safe_dump(SWEEP, sort_keys=False))
    out = root / "out"
    before = ray_session_folders()
    made: list[str] = []  # the sweep's own temporary folders (Ray's _temp_dir)
    real_mkdtemp = tempfile.mkdtemp

    def mkdtemp(*args: Any, **kwargs: Any) -> str:
        path = real_mkdtemp(*args, **kwargs)
        if kwargs.get("prefix") == "e4r":
            made.append(path)
        return path

    buf, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(buf), contextlib.redirect_stderr(err):
        mp.setattr(tempfile, "mkdtemp", mkdtemp)
        status = main(["tune", "--config", str(config), "--out", str(out), "--jobs", "2"])
    import ray

    return {"status": status, "out": out, "stdout": buf.getvalue(), "stderr": err.getvalue(),
            "ray_left": ray.is_initialized(), "processes": ray_processes(), "temp_dirs": made,
            "new_sessions": ray_session_folders() - before}


def results(out: Path) -> list[dict[str, str]]:
    with open(out / "results.csv") as f:
        return list(csv.DictReader(f))


@needs_ray
def test_sweep_trials_are_train_runs(sweep: dict[str, Any]) -> None:
    """Every trial is an `e4gym train` run folder: its config, TensorBoard events, checkpoints, the model,
    train.json, streams; its seed derives from the sweep's."""
    assert sweep["status"] == 0, sweep["stderr"][-2000:]
    rows = results(sweep["out"])
    assert len(rows) == 4 and all(r["status"] == "finished" for r in rows), rows
    for r in rows:
        folder = Path(r["folder"])
        assert folder.parent == sweep["out"] / "trials"
        assert list((folder / "tb").glob("events.out.tfevents.*")), f"no TensorBoard events in {folder}"
        for name in ("agent.yaml", "model.zip", "train.json", "streams.jsonl", "eval/evaluations.npz"):
            assert (folder / name).is_file(), f"{folder} lacks {name}"
        assert list((folder / "checkpoints").glob("ckpt_*_steps.zip"))
        section = load_agent_config("ppo", ENV_ID, folder / "agent.yaml")  # the trial's own config
        assert section["learning_rate"] == pytest.approx(float(r["learning_rate"]))
        assert section["env_kwargs"]["reward_weights"]["energy"] == float(r["env_kwargs.reward_weights.energy"])
        index = int(r["trial"].removeprefix("trial_"))
        assert int(r["seed"]) == TRIAL_SEED_STRIDE * SWEEP["seed"] + index


@needs_ray
def test_asha_stops_the_bad_trial_early(sweep: dict[str, Any]) -> None:
    """ASHA stopped the bad trial at its first rung; the stopped run is written with the steps it did."""
    rows = {r["trial"]: r for r in results(sweep["out"])}
    weights = [float(rows[k]["env_kwargs.reward_weights.energy"]) for k in sorted(rows)]
    assert weights == [0.0, 0.0, BAD, BAD]  # seed 10's draws (see SWEEP)
    stopped = [k for k, r in rows.items() if r["stopped_early"] == "True"]
    assert "trial_00002" in stopped
    for k, r in rows.items():
        done = int(r["steps"])
        if k in stopped:
            assert int(r["evaluations"]) < SWEEP["budget"]["evaluations"] and done < SWEEP["budget"]["steps"]
        else:
            assert int(r["evaluations"]) == SWEEP["budget"]["evaluations"] and done == SWEEP["budget"]["steps"]
        meta = yaml.safe_load((Path(r["folder"]) / "train.json").read_text())
        assert meta["steps"] == done


@needs_ray
def test_best_yaml_is_the_best_trial(sweep: dict[str, Any]) -> None:
    """best.yaml is a configs/agents file with the best trial's values and a header naming the sweep."""
    rows = results(sweep["out"])
    best = max(rows, key=lambda r: float(r["eval/mean_reward"]))
    text = (sweep["out"] / "best.yaml").read_text()
    assert text.startswith("# Best configuration of the e4gym tune sweep") and best["trial"] in text
    section = load_agent_config("ppo", ENV_ID, sweep["out"] / "best.yaml")
    assert section["learning_rate"] == pytest.approx(float(best["learning_rate"]))
    assert section["env_kwargs"]["reward_weights"]["energy"] == float(best["env_kwargs.reward_weights.energy"])
    assert section["env_kwargs"]["episode_frames"] == 32 and section["n_steps"] == 512  # the rest: the agent's
    assert (sweep["out"] / "results.md").read_text().count("| trial_") == 4
    assert f"best: {best['trial']}" in sweep["stdout"]


@needs_ray
def test_no_ray_left_behind(sweep: dict[str, Any]) -> None:
    """Ray is shut down: no process, no session folder in /tmp/ray, no temporary folder of the sweep's."""
    assert not sweep["ray_left"]
    assert sweep["processes"] == []
    assert sweep["new_sessions"] == set()
    assert len(sweep["temp_dirs"]) == 1 and len(sweep["temp_dirs"][0]) < 40  # short: Ray's socket paths
    assert not Path(sweep["temp_dirs"][0]).exists()


def test_missing_ray_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture) -> None:
    """Without Ray, one line naming the extra; nothing is written."""
    monkeypatch.setitem(sys.modules, "ray", None)
    monkeypatch.setitem(sys.modules, "ray.tune", None)
    with pytest.raises(ConfigError) as err:
        run_sweep(SWEEP, tmp_path / "out")
    assert "\n" not in str(err.value) and "pip install 'e4gym[ray]'" in str(err.value)
    assert not (tmp_path / "out").exists()
    config = tmp_path / "s.yaml"
    config.write_text(yaml.safe_dump(SWEEP))
    assert main(["tune", "--config", str(config), "--out", str(tmp_path / "out")]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def _with(**changes: Any) -> dict[str, Any]:
    cfg = {**SWEEP, "search_space": dict(SWEEP["search_space"])}
    for key, value in changes.items():
        if key.startswith("space:"):
            cfg["search_space"][key[6:]] = value
        else:
            cfg[key] = value
    return cfg


@pytest.mark.parametrize(("config", "names"), [
    (_with(**{"space:clip_rangee": {"uniform": [0.1, 0.3]}}), "search_space.clip_rangee"),
    (_with(**{"space:env_kwargs.fpss": {"choice": [15, 30]}}), "search_space.env_kwargs.fpss"),
    (_with(**{"space:env_kwargs.reward_weights.power": {"uniform": [0, 1]}}),
     "search_space.env_kwargs.reward_weights.power"),
    (_with(**{"space:gamma": {"normal": [0.9, 0.1]}}), "search_space.gamma"),
    (_with(**{"space:gamma": {"uniform": [0.99, 0.9]}}), "search_space.gamma"),
    (_with(**{"space:learning_rate": {"loguniform": [0.0, 0.1]}}), "search_space.learning_rate"),
    (_with(**{"space:n_epochs": {"randint": [3.5, 10]}}), "search_space.n_epochs"),
    (_with(**{"space:batch_size": {"choice": []}}), "search_space.batch_size"),
    (_with(agent="ppoo"), "agent"),
    (_with(sheduler={"name": "asha"}), "sheduler"),
    (_with(metric="train/loss"), "metric"),
    (_with(mode="maximum"), "mode"),
    (_with(scheduler={"name": "hyperband"}), "scheduler"),
    (_with(scheduler={"name": "asha", "grace_period": 9}), "scheduler.grace_period"),
    (_with(budget={"steps": 2, "evaluations": 4}), "budget.evaluations"),
    (_with(num_samples=0), "num_samples"),
])
def test_config_errors_are_one_line(config: dict[str, Any], names: str) -> None:
    """A bad tune config fails before Ray starts, in one line naming the key."""
    with pytest.raises(ConfigError) as err:
        load_tune_config(config)
    msg = str(err.value)
    assert "\n" not in msg and names in msg, msg


def test_good_config_and_shipped_sweep() -> None:
    """The shipped configs/tune/ppo.yaml and the test's sweep read; dotted keys set nested values."""
    from agents.tune import apply_params

    spec = load_tune_config("ppo")
    assert spec.agent == "ppo" and spec.scheduler == "asha" and spec.num_samples >= 4
    tiny = load_tune_config(SWEEP, seed=3)
    assert tiny.seed == 3 and tiny.eval_freq == 32 and tiny.section["env_kwargs"]["episode_frames"] == 32
    section = apply_params(tiny.section, {"env_kwargs.reward_weights.energy": 2.0, "gamma": 0.5})
    assert section["env_kwargs"]["reward_weights"] == {"energy": 2.0} and section["gamma"] == 0.5
    assert "reward_weights" not in tiny.section["env_kwargs"]  # a copy


@pytest.mark.skipif(importlib.util.find_spec("optuna") is not None, reason="optuna is installed")
def test_optuna_missing_is_one_line() -> None:
    with pytest.raises(ConfigError) as err:
        load_tune_config(_with(search="optuna"))
    assert "\n" not in str(err.value) and "pip install optuna" in str(err.value)


@pytest.mark.parametrize("algo", ["ppo", "ring-dvfs"])
def test_evaluation_hook_ends_training(tmp_path: Path, algo: str) -> None:
    """`train`'s on_evaluation hook (what a trial reports through) gets every evaluation's metrics, weight-free
    episode figures included; returning False ends the run there, written as a finished run."""
    from agents.train import train

    seen: list[tuple[int, dict[str, float]]] = []

    def hook(steps: int, metrics: dict[str, float]) -> bool:
        seen.append((steps, metrics))
        return len(seen) < 2

    out = tmp_path / algo
    train(algo, ENV_ID, out, {"episode_frames": 16}, steps=256, eval_freq=32, eval_episodes=1, progress=False,
          on_evaluation=hook)
    assert [s for s, _ in seen] == [32, 64]
    for _, metrics in seen:
        assert {"eval/mean_reward", "eval/mean_ep_length", "eval/ep_energy_per_frame_j",
                "eval/ep_deadline_miss_rate", "eval/ep_accuracy"} <= set(metrics)
        assert metrics["eval/mean_ep_length"] == 16 and metrics["eval/ep_energy_per_frame_j"] > 0
    meta = yaml.safe_load((out / "train.json").read_text())
    assert meta["steps"] == 64
