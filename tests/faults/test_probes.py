"""Issue 14, finding 7: a bad argument or config value ends in a one-line e4gym error, not a raw traceback.

Each probe names the value, what is allowed and the fix, and fails before any work starts (at ``gymnasium.make``
or at config validation, not at the first step or the first task).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import yaml

import e4gym  # noqa: F401  (registers the envs)
from e4gym._yaml import load_yaml
from e4gym.bench import load_experiment, run_benchmark
from e4gym.envs import EarlyExitDVFSEnv
from e4gym.envs.common import (
    DEADLINE_MS_RANGE,
    FPS_RANGE,
    MAX_EPISODE_FRAMES,
    flat_action,
    resolve_setup,
)
from e4gym.errors import ConfigError, E4gymError, OverheatError, SettingError, UnknownNameError
from e4gym.hardware.model import leakage_scale
from e4gym.hardware.spec import AMBIENT_RANGE_C, load_device

ENV_ID = "e4gym/EarlyExitDVFS-v1"


def _one_line(exc: BaseException) -> str:
    """The error's message, checked to be a single line."""
    text = str(exc)
    assert "\n" not in text, f"multi-line message: {text!r}"
    return text


def _make_fails(kwargs: dict[str, Any], error: type[Exception] = ConfigError) -> str:
    """``gymnasium.make`` with ``kwargs`` raises ``error`` (nothing stepped); its one-line message."""
    with pytest.raises(error) as info:
        gym.make(ENV_ID, **kwargs)
    return _one_line(info.value)


# ---------------------------------------------------------------------------------------------- governors


def test_governors_as_a_bare_governor_name_is_a_clear_error() -> None:
    msg = _make_fails({"governors": "performance"})
    assert "governors='performance'" in msg
    assert "{'cpu': 'performance', 'gpu': 'performance'}" in msg and "'default'" in msg and "None" in msg


@pytest.mark.parametrize(
    ("governors", "shown"),
    [
        (["cpu", "performance"], "['cpu', 'performance'] (list)"),
        (5, "5 (int)"),
        ({"cpu": 5}, "'cpu': 5"),
        ({"cpu": "performance", "gpu": None}, "'gpu': None"),
        ({1: "performance"}, "1: 'performance'"),
    ],
)
def test_governors_of_the_wrong_type_are_a_clear_error(governors: object, shown: str) -> None:
    msg = _make_fails({"governors": governors})
    assert shown in msg and "'cpu': 'schedutil'" in msg


def test_governors_still_accept_default_and_dicts() -> None:
    assert resolve_setup(governors="default").governors == "default"
    s = resolve_setup(governors={"cpu": "performance", "gpu": "nvhost_podgov"})
    assert s.governors == {"cpu": "performance", "gpu": "nvhost_podgov"}
    with pytest.raises(UnknownNameError, match="cpu governors: "):
        resolve_setup(governors={"cpu": "turbo"})


# ---------------------------------------------------------------------------------------------- numbers


def test_ambient_1000_fails_at_make_naming_the_range() -> None:
    lo, hi = AMBIENT_RANGE_C
    msg = _make_fails({"ambient_c": 1000})
    assert "ambient_c" in msg and "got 1000" in msg and f"{lo:g}..{hi:g} °C" in msg and "None for" in msg


@pytest.mark.parametrize(
    ("arg", "value"),
    [
        ("ambient_c", 1000), ("ambient_c", -300.0), ("ambient_c", math.nan), ("ambient_c", math.inf),
        ("ambient_c", "25"), ("ambient_c", True), ("ambient_c", np.float64(86.0)),
        ("initial_temp_c", 1e6), ("initial_temp_c", math.nan), ("initial_temp_c", -100), ("initial_temp_c", 97.0),
        ("fps", math.nan), ("fps", math.inf), ("fps", 1e300), ("fps", 1e-300), ("fps", FPS_RANGE[1] * 2),
        ("deadline_ms", math.nan), ("deadline_ms", -math.inf), ("deadline_ms", 1e300), ("deadline_ms", 1e-9),
        ("deadline_ms", DEADLINE_MS_RANGE[1] * 2),
        ("episode_frames", 10**30), ("episode_frames", MAX_EPISODE_FRAMES + 1), ("episode_frames", 1.5),
        ("episode_frames", True), ("episode_frames", np.bool_(True)),
    ],
)
def test_numeric_arguments_out_of_range_fail_at_make(arg: str, value: object) -> None:
    msg = _make_fails({arg: value})
    assert msg.startswith(arg) and f"got {value!r}" in msg and ("pass" in msg), msg


@pytest.mark.parametrize("device", ["xavier-nx", "jetson-tx2"])
def test_ranges_are_inclusive_and_initial_temp_goes_up_to_just_below_the_critical_trip(device: str) -> None:
    crit = math.nextafter(load_device(device).thermal.critical_c, 0.0)  # the trip itself: see below
    lo, hi = AMBIENT_RANGE_C
    s = resolve_setup(device=device, ambient_c=hi, initial_temp_c=crit, fps=FPS_RANGE[0],
                      workload_kwargs={"mean_scene_s": 1 / FPS_RANGE[0]}, deadline_ms=DEADLINE_MS_RANGE[1],
                      episode_frames=MAX_EPISODE_FRAMES)
    assert resolve_setup(device=device, fps=FPS_RANGE[1], deadline_ms=DEADLINE_MS_RANGE[0]).fps == FPS_RANGE[1]
    assert s.cooling.ambient_c == hi and s.initial_temp_c == crit
    assert resolve_setup(device=device, ambient_c=lo, initial_temp_c=lo).cooling.ambient_c == lo


def test_vector_env_refuses_bad_numbers_at_make_vec() -> None:
    with pytest.raises(ConfigError, match="ambient_c") as info:
        gym.make_vec(ENV_ID, num_envs=2, vectorization_mode="vector_entry_point", ambient_c=1000)
    _one_line(info.value)


def test_device_yaml_ambient_uses_the_same_range(device_data: dict, write_yaml) -> None:
    device_data["thermal"]["ambient_c"] = AMBIENT_RANGE_C[1] + 1
    with pytest.raises(ConfigError, match=r"thermal\.ambient_c.*<= 85"):
        load_device(write_yaml(device_data))


def test_runaway_leakage_is_an_e4gym_error_not_overflow() -> None:
    model = load_device("xavier-nx").model
    with pytest.raises(OverheatError, match="lower ambient_c, pass fan=True") as info:
        leakage_scale(model, 1e6)
    _one_line(info.value)
    assert isinstance(info.value, E4gymError)


# ---------------------------------------------------------------------------------------------- booleans


@pytest.mark.parametrize("value", ["no", "yes", "false", 0, 1, 1.0, [], "True"])
def test_fan_must_be_a_real_bool(value: object) -> None:
    msg = _make_fails({"fan": value})
    assert msg.startswith("fan must be True or False") and f"got {value!r}" in msg and "fan=False" in msg


@pytest.mark.parametrize("value", ["no", 1, "True"])
def test_control_memory_must_be_a_real_bool(value: object) -> None:
    msg = _make_fails({"control_memory": value})
    assert msg.startswith("control_memory must be True or False") and f"got {value!r}" in msg


def test_numpy_bools_are_bools() -> None:
    s = resolve_setup(fan=np.bool_(False), control_memory=np.bool_(True))
    assert s.cooling.fan is False and s.control_memory is True
    assert resolve_setup(fan=None).cooling.fan == load_device("xavier-nx").thermal.fan


# ---------------------------------------------------------------------------------------------- other types


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"workload_kwargs": [1]}, "workload_kwargs must be a dict"),
        ({"workload_kwargs": {1: 0.1}}, "workload_kwargs must be a dict"),
        ({"backend_kwargs": 5}, "backend_kwargs must be a dict"),
        ({"device": "a\x00.yaml"}, "NUL character"),
        ({"model": "\x00.yaml"}, "NUL character"),
        ({"workload": "trace\x00.npz"}, "NUL character"),
    ],
)
def test_wrong_types_and_unusable_paths_are_config_errors(kwargs: dict[str, Any], match: str) -> None:
    assert match in _make_fails(kwargs)


def test_a_device_path_with_a_nul_is_a_config_error_in_the_loader() -> None:
    with pytest.raises(ConfigError, match="not a usable path"):
        load_device("bad\x00.yaml")


# ---------------------------------------------------------------------------------------------- actions


def test_a_ragged_action_is_a_setting_error() -> None:
    with pytest.raises(SettingError, match=r"not an array of 3 integers"):
        flat_action([[1], [2, 3]], (5, 25, 12), ("exit", "cpu_level", "gpu_level"))


def test_env_step_with_a_ragged_action_is_a_setting_error() -> None:
    env = EarlyExitDVFSEnv(episode_frames=5)
    env.reset(seed=0)
    with pytest.raises(SettingError):
        env.step([[1], [2, 3]])
    venv = gym.make_vec(ENV_ID, num_envs=2, vectorization_mode="vector_entry_point", episode_frames=5)
    venv.reset(seed=0)
    with pytest.raises(SettingError):
        venv.step([[1, 2, 3], [1, 2]])


# ---------------------------------------------------------------------------------------------- bench configs


def _config(**policy_args: Any) -> dict[str, Any]:
    return {
        "name": "probe",
        "env": {"episode_frames": 20},
        "matrix": {"device": ["jetson-nano", "xavier-nx"], "model": ["efficientnet_b0"]},
        "seeds": [0],
        "policies": ["performance", {"name": "static", "label": "st", "args": policy_args}],
    }


@pytest.mark.parametrize(
    ("args", "shown"),
    [
        ({"cpu_level": 100, "gpu_level": 1}, "cpu_level=100"),
        ({"cpu_level": 1, "gpu_level": 100}, "gpu_level=100"),
        ({"cpu_level": -1, "gpu_level": 1}, "cpu_level=-1"),
        ({"cpu_level": 1, "gpu_level": 1, "emc_level": 99}, "emc_level=99"),
        ({"cpu_level": 1, "gpu_level": 1, "exit": 9}, "exit=9"),
    ],
)
def test_static_levels_are_checked_against_the_device_at_config_validation(
    tmp_path: Path, args: dict[str, Any], shown: str
) -> None:
    cfg = tmp_path / "probe.yaml"
    cfg.write_text(yaml.safe_dump(_config(**args)))
    with pytest.raises(ConfigError) as info:
        load_experiment(cfg)
    msg = _one_line(info.value)
    assert str(cfg) in msg and "policy 'st'" in msg and "scenario jetson-nano" in msg and shown in msg
    if "level" in shown:
        assert "allowed levels 0.." in msg and "pass a" in msg
    out = tmp_path / "out"
    with pytest.raises(ConfigError):
        run_benchmark(cfg, out, jobs=1, plots=False, tensorboard=False)
    assert not out.exists(), "nothing may be run or written for a bad config"


def test_static_levels_valid_on_one_device_but_not_another_name_the_scenario() -> None:
    nano, nx = load_device("jetson-nano").n_levels, load_device("xavier-nx").n_levels
    assert nano[0] < nx[0]
    with pytest.raises(ConfigError, match=rf"scenario jetson-nano.*cpu_level={nx[0] - 1} .*0\.\.{nano[0] - 1}"):
        load_experiment(_config(cpu_level=nx[0] - 1, gpu_level=0))


def test_governor_policy_exit_is_checked_at_config_validation() -> None:
    cfg = _config(cpu_level=0, gpu_level=0)
    cfg["policies"] = [{"name": "performance", "args": {"exit": 7}}]
    with pytest.raises(ConfigError, match=r"exit=7 is outside 0\.\.\d+"):
        load_experiment(cfg)


def test_valid_static_config_still_loads() -> None:
    exp = load_experiment(_config(cpu_level=3, gpu_level=2))
    assert exp.n_tasks == 4


def test_bench_config_env_values_are_checked(tmp_path: Path) -> None:
    cfg = _config(cpu_level=0, gpu_level=0)
    cfg["env"]["fan"] = "off"  # quoted in YAML: a string, not YAML 1.1's false
    path = tmp_path / "fan.yaml"
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ConfigError, match="fan must be True or False, got 'off'"):
        load_experiment(path)


# ---------------------------------------------------------------------------------------------- YAML


def test_duplicate_yaml_key_names_key_line_and_file(tmp_path: Path) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text("name: a\nenv:\n  fan: true\n  episode_frames: 10\n  fan: false\n")
    with pytest.raises(ConfigError) as info:
        load_yaml(path)
    msg = _one_line(info.value)
    assert msg.startswith(f"{path}:5: duplicate key 'fan' (first on line 3)") and "delete one" in msg


@pytest.mark.parametrize(
    ("text", "key", "line"),
    [
        ("a: 1\na: 2\n", "'a'", 2),
        ("x: {a: 1, a: 2}\n", "'a'", 1),
        ("l:\n  - p: 1\n    q: 2\n    p: 3\n", "'p'", 4),
        ("1: a\n1: b\n", "1", 2),
    ],
)
def test_duplicate_keys_anywhere_are_refused(tmp_path: Path, text: str, key: str, line: int) -> None:
    path = tmp_path / "d.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=rf":{line}: duplicate key {key}"):
        load_yaml(path)


def test_merge_keys_may_still_be_overridden(tmp_path: Path) -> None:
    path = tmp_path / "merge.yaml"
    path.write_text("base: &b {p: 1, q: 2}\nmerged:\n  <<: *b\n  p: 3\nlist: [{a: 1}, {a: 2}]\n")
    assert load_yaml(path) == {"base": {"p": 1, "q": 2}, "merged": {"p": 3, "q": 2}, "list": [{"a": 1}, {"a": 2}]}


def test_duplicate_keys_in_experiment_and_device_files(tmp_path: Path) -> None:
    exp = tmp_path / "exp.yaml"
    exp.write_text("matrix:\n  device: [xavier-nx]\n  model: [efficientnet_b0]\nseeds: [0]\nseeds: [1]\n"
                   "policies: [performance]\n")
    with pytest.raises(ConfigError, match=r"exp\.yaml:5: duplicate key 'seeds'"):
        load_experiment(exp)
    dev = tmp_path / "dev.yaml"
    dev.write_text("name: x\nname: y\n")
    with pytest.raises(ConfigError, match=r"dev\.yaml:2: duplicate key 'name'"):
        load_device(dev)


def test_invalid_yaml_is_one_line_with_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("a: [1\nb: 2\n")
    with pytest.raises(ConfigError, match="not valid YAML") as info:
        load_yaml(path)
    assert _one_line(info.value).startswith(f"{path}:2: not valid YAML")


def test_a_board_cannot_start_at_its_critical_trip() -> None:
    # Found by the property test: initial_temp_c at the critical trip passed validation, then the emulator
    # (which stops a board there) raised OverheatError while building the env.
    critical = load_device("agx-orin").thermal.critical_c
    msg = _make_fails({"device": "agx-orin", "initial_temp_c": critical})
    assert msg.startswith(f"initial_temp_c must be below agx-orin's critical trip {critical:g} °C")
    gym.make(ENV_ID, device="agx-orin", initial_temp_c=critical - 1.0).reset(seed=0)
