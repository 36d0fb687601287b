"""Measured profiles (sim-to-real): the sweep on a backend, the emulator driven by it, the model's error."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import e4gym  # noqa: F401
from e4gym.cli import main
from e4gym.dnn.profile import load_model_profile
from e4gym.errors import ConfigError
from e4gym.hardware.emulator import EmulatedBackend
from e4gym.hardware.measured import MeasuredProfile, model_error, profile_device


@pytest.fixture(scope="module")
def profile() -> MeasuredProfile:
    with EmulatedBackend("xavier-nx", seed=0) as board:
        return profile_device(board, "efficientnet_b0", frames=3, stride=8)


def test_the_sweep_covers_the_grid_and_every_exit(profile) -> None:
    assert profile.exits == (0, 1, 2, 3, 4)
    assert profile.cpu_levels == (0, 8, 16, 24) and profile.gpu_levels == (0, 8, 14)  # the top levels included
    assert profile.latency_s.shape == profile.energy_j.shape == (5, 4, 3)
    # Faster clocks run faster; later exits cost more.
    assert profile.latency_s[4, -1, -1] < profile.latency_s[4, 0, 0]
    assert np.all(np.diff(profile.latency_s[:, -1, -1]) > 0)


def test_the_analytic_model_matches_the_emulator_and_flags_a_slower_board(profile) -> None:
    errs = model_error(profile)
    assert all(e.latency_mape < 0.03 for e in errs)  # the emulator is the model plus 2 % noise
    slow = dataclasses.replace(profile, latency_s=profile.latency_s * 1.25, energy_j=profile.energy_j * 1.25)
    assert all(0.18 < e.latency_mape < 0.22 for e in model_error(slow))


def test_the_emulator_runs_at_the_measured_cost(profile, tmp_path) -> None:
    slow = dataclasses.replace(profile, latency_s=profile.latency_s * 1.25)
    work = load_model_profile("efficientnet_b0").frame_work(4)
    with EmulatedBackend("xavier-nx", seed=1) as a, EmulatedBackend("xavier-nx", seed=1, measured=slow) as b:
        a.apply((24, 14, 7))
        b.apply((24, 14, 7))
        ra, rb = a.run(work), b.run(work)
    expected = profile.latency_s[4, -1, -1] * 1.25
    assert rb.latency_s == pytest.approx(expected, rel=0.05) and rb.latency_s > 1.15 * ra.latency_s
    # Through the env: backend_kwargs={"measured": path}.
    path = slow.save(tmp_path / "slow.json")
    env = gym.make("e4gym/EarlyExitDVFS-v1", device="xavier-nx", episode_frames=20,
                   backend_kwargs={"measured": str(path)})
    env.reset(seed=0)
    _, _, _, _, info = env.step(np.array([4, 24, 14]))
    assert info["run_ms"] > 1.15 * 29.7
    with pytest.raises(ConfigError, match="not jetson-nano"):
        gym.make("e4gym/EarlyExitDVFS-v1", device="jetson-nano", backend_kwargs={"measured": str(path)})
    with pytest.raises(ConfigError, match="only 'measured'"):
        gym.make("e4gym/EarlyExitDVFS-v1", backend_kwargs={"sysfs_root": "/"})


def test_bad_profile_files_are_refused(profile, tmp_path) -> None:
    path = profile.save(tmp_path / "p.json")
    back = MeasuredProfile.load(path)
    np.testing.assert_array_equal(back.latency_s, profile.latency_s)
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not readable JSON"):
        MeasuredProfile.load(tmp_path / "bad.json")
    d = json.loads(path.read_text())
    d["latency_s"] = d["latency_s"][:2]
    (tmp_path / "short.json").write_text(json.dumps(d))
    with pytest.raises(ConfigError, match="latency_s has shape"):
        MeasuredProfile.load(tmp_path / "short.json")
    (tmp_path / "other.json").write_text(json.dumps({"format": "x"}))
    with pytest.raises(ConfigError, match="not an e4gym measured profile"):
        MeasuredProfile.load(tmp_path / "other.json")


def test_profile_device_and_calibrate_profile_from_the_cli(tmp_path, capsys) -> None:
    out = tmp_path / "nx.json"
    assert main(["profile-device", "--backend", "emulated", "--device", "xavier-nx", "--out", str(out),
                 "--stride", "12", "--frames", "2", "--quiet"]) == 0
    assert main(["calibrate", "--profile", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| exit | latency error, mean |" in printed and printed.count("\n| ") >= 5
    assert main(["profile-device", "--backend", "emulated", "--out", str(out), "--quiet"]) == 2
    assert "pass --force" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- published sweeps

SWEEP = Path(__file__).resolve().parents[2] / "benchmarks" / "data" / "tx2_trtexec_gpu_emc_sweep.csv"


def test_a_published_sweep_becomes_a_measured_profile_the_envs_and_planners_run_on(tmp_path) -> None:
    """Sim-to-real (issue 15): the TX2 sweep's ResNet-50 points replace the analytic model for the env, its cost
    model (what planners read) and calibrate --profile alike."""
    from e4gym.hardware.measured import MeasuredProfile, model_error, sweep_profile

    prof = sweep_profile(SWEEP, "jetson-tx2", "resnet50")
    assert prof.model_key == "resnet50@tensorrt-fp16" and prof.energy_j is None and len(prof.gpu_levels) == 13
    path = prof.save(tmp_path / "r50.json")
    assert MeasuredProfile.load(path).latency_s.tolist() == prof.latency_s.tolist()
    err = model_error(prof)[0]
    assert err.latency_mape < 0.05 and err.energy_mape != err.energy_mape  # NaN: not measured

    env = gym.make("e4gym/EarlyExitDVFS-v1", device="jetson-tx2", model="resnet50", runtime="tensorrt-fp16",
                   backend_kwargs={"measured": str(path)})
    env.reset(seed=0)
    top = env.action_space.nvec - 1
    low = np.array([0, top[1], 0])

    def settled(action) -> float:
        for _ in range(5):
            env.step(action)
        return float(np.median([env.step(action)[4]["run_ms"] for _ in range(15)]))

    assert settled(top) == pytest.approx(18.7, rel=0.05)  # the board: 18.665 ms at 1300.5 / 1866 MHz
    assert settled(low) == pytest.approx(185.4, rel=0.05)  # the board: 185.365 ms at 114.75 / 1866 MHz
    model = env.unwrapped.cost_model()
    lat = model.latency_s(env.unwrapped.setup.profile.frame_work())
    assert 1e3 * lat[-1, -1, -1] == pytest.approx(18.7, rel=0.05)
    # A profile measured under TensorRT does not pass for eager PyTorch.
    with pytest.raises(ConfigError, match=r"resnet50@tensorrt-fp16, not jetson-tx2 / resnet50; .*runtime="):
        gym.make("e4gym/EarlyExitDVFS-v1", device="jetson-tx2", model="resnet50",
                 backend_kwargs={"measured": str(path)})


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"device": "jetson-tx2", "model": "mobilenet_v2"}, r"no rows for model 'mobilenet-v2'; pass --sweep-model"),
    ({"device": "jetson-tx2", "model": "resnet50", "emc_hz": 800e6}, r"no resnet50 rows at EMC 800 MHz"),
    ({"device": "xavier-nx", "model": "resnet50"}, r"GPU clock 216\.75 MHz is not a level of xavier-nx"),
    ({"device": "jetson-tx2", "model": "resnet50", "runtime": "onnx"}, r"unknown runtime 'onnx'"),
])
def test_bad_sweeps_name_the_problem(kwargs, message) -> None:
    from e4gym.errors import E4gymError
    from e4gym.hardware.measured import sweep_profile

    with pytest.raises(E4gymError, match=message):
        sweep_profile(SWEEP, **kwargs)


def test_import_sweep_cli_and_calibrate_profile(tmp_path, capsys) -> None:
    out = tmp_path / "ty.json"
    args = ["import-sweep", str(SWEEP), "--device", "jetson-tx2", "--model", "tiny_yolov3", "--out", str(out)]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "jetson-tx2 / tiny_yolov3@tensorrt-fp16" in text and "not measured" in text and out.is_file()
    assert main(args) == 2  # refuses to overwrite
    assert "exists; pass --force" in capsys.readouterr().err
    assert main(["calibrate", "--profile", str(out)]) == 0
    assert "| 0 |" in capsys.readouterr().out
    bad = tmp_path / "bad.csv"
    bad.write_text("model,gpu_hz,emc_hz,mean_gpu_latency_ms\nresnet50,x,1,2\n")
    assert main(["import-sweep", str(bad), "--device", "jetson-tx2", "--model", "resnet50", "--out",
                 str(tmp_path / "b.json")]) == 2
    assert "row 2 is malformed" in capsys.readouterr().err
