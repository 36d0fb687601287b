"""Measured profiles (sim-to-real): the sweep on a backend, the emulator driven by it, the model's error."""

from __future__ import annotations

import dataclasses
import json

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
