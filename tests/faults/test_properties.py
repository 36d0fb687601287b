"""Property tests of the env arguments and actions (issue 14, finding 7).

* Building the frame env with arbitrary values for its numeric, bool and str arguments either works or raises an
  e4gym error with a one-line message, never another exception type.
* Stepping with arbitrary actions of the action space, under arbitrary valid arguments, never gives NaN,
  negative energy or negative latency in ``info``; an action outside the space is a :class:`SettingError`.
* The native vector env, stepped with a few random actions, keeps the same invariants.

Hypothesis runs a fixed, small number of examples per test (``database=None``: nothing is written to the
repository) so the whole file takes well under 30 s.
"""

from __future__ import annotations

import math
import warnings
from functools import cache
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import e4gym  # noqa: F401  (registers the envs)
from e4gym.dnn.profile import available_models
from e4gym.envs import EarlyExitDVFSEnv
from e4gym.envs.common import DEADLINE_MS_RANGE, FPS_RANGE
from e4gym.envs.core import (
    CONFIDENCE,
    ENERGY_J,
    LATENCY_MS,
    MEASURED_ENERGY_J,
    POWER_W,
    PROFILING_ENERGY_J,
    PROFILING_MS,
    RUN_MS,
)
from e4gym.errors import E4gymError, SettingError
from e4gym.hardware.spec import AMBIENT_RANGE_C, CPU_GOVERNORS, GPU_GOVERNORS, available_devices, load_device

ENV_ID = "e4gym/EarlyExitDVFS-v1"
DEVICES = available_devices()
MODELS = available_models()
#: Info values that are amounts (energy, time, power): never negative.
NON_NEGATIVE = (ENERGY_J, MEASURED_ENERGY_J, LATENCY_MS, RUN_MS, POWER_W, PROFILING_MS, PROFILING_ENERGY_J)

FAST = settings(max_examples=120, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=25, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

# ---------------------------------------------------------------------------------------------- strategies

#: Anything a user or a YAML file might put where a number belongs.
ODD_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**30), 10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(-100.0, 2000.0),
    st.text(max_size=3),
    st.sampled_from([np.float64("nan"), np.int64(30), np.float32(1e30), np.bool_(True), (), [], {}]),
)
FLAGS = st.one_of(
    st.booleans(), st.sampled_from([np.bool_(True), np.bool_(False), None, "no", "yes", 0, 1, 1.0]), st.text(max_size=3)
)
ALL_MODES = sorted({m for d in DEVICES for m in load_device(d).power_modes})
GOVERNOR_NAMES = sorted({*CPU_GOVERNORS, *GPU_GOVERNORS})
GOVERNORS = st.one_of(
    st.none(),
    st.sampled_from(["default", *GOVERNOR_NAMES]),
    st.text(max_size=4),
    st.dictionaries(st.sampled_from(["cpu", "gpu", "emc", "npu"]),
                    st.one_of(st.sampled_from(GOVERNOR_NAMES), ODD_VALUES), max_size=3),
    st.lists(st.sampled_from(GOVERNOR_NAMES), max_size=2),
)
WEIGHTS = st.one_of(st.none(), st.dictionaries(st.sampled_from(["energy", "deadline", "accuracy"]), ODD_VALUES,
                                               max_size=3))
WORKLOAD_KWARGS = st.one_of(
    st.none(),
    st.dictionaries(st.sampled_from(["mean_scene_s", "drift", "feature_noise"]), ODD_VALUES, max_size=3),
    st.lists(st.integers(0, 3), max_size=2),
)

@st.composite
def valid_kwargs(draw: st.DrawFn) -> dict[str, Any]:
    """Arguments inside every accepted range (extremes included)."""
    device = draw(st.sampled_from(DEVICES))
    spec = load_device(device)
    # Synthetic video needs a scene of at least one frame: fps >= 1 / mean_scene_s (4 s by default).
    fps = draw(st.one_of(st.floats(0.25, FPS_RANGE[1]), st.sampled_from([0.25, 30.0, FPS_RANGE[1]])))
    kw: dict[str, Any] = {
        "device": device,
        "model": draw(st.sampled_from(MODELS)),
        "fps": fps,
        "deadline_ms": draw(st.one_of(st.none(), st.floats(*DEADLINE_MS_RANGE), st.sampled_from(DEADLINE_MS_RANGE))),
        "ambient_c": draw(st.one_of(st.none(), st.floats(*AMBIENT_RANGE_C), st.sampled_from(AMBIENT_RANGE_C))),
        "initial_temp_c": draw(st.one_of(st.none(), st.floats(AMBIENT_RANGE_C[0], spec.thermal.critical_c))),
        "fan": draw(st.one_of(st.none(), st.booleans(), st.sampled_from([np.bool_(True), np.bool_(False)]))),
        "control_memory": draw(st.booleans()),
        "power_mode": draw(st.one_of(st.none(), st.sampled_from(sorted(spec.power_modes)))),
        "reward_energy": draw(st.sampled_from(["true", "measured"])),
        "reward_weights": draw(st.one_of(st.none(), st.dictionaries(
            st.sampled_from(["energy", "deadline", "accuracy"]), st.floats(0.0, 1e6), max_size=3))),
        "episode_frames": draw(st.integers(1, 10**9)),
    }
    return kw


#: Arbitrary values for each of the frame env's numeric, bool and str arguments.
ODD_ARGS: dict[str, st.SearchStrategy[Any]] = {
    "device": st.one_of(st.sampled_from(DEVICES), st.text(max_size=4), ODD_VALUES),
    "model": st.one_of(st.sampled_from(MODELS), st.text(max_size=4), ODD_VALUES),
    "workload": st.one_of(st.just("synthetic"), st.text(max_size=4), ODD_VALUES),
    "fps": ODD_VALUES,
    "deadline_ms": ODD_VALUES,
    "episode_frames": st.one_of(ODD_VALUES, st.integers(-3, 10**10)),
    "ambient_c": ODD_VALUES,
    "initial_temp_c": ODD_VALUES,
    "fan": FLAGS,
    "control_memory": FLAGS,
    "power_mode": st.one_of(st.none(), st.sampled_from(ALL_MODES), st.text(max_size=4), ODD_VALUES),
    "reward_energy": st.one_of(st.sampled_from(["true", "measured"]), st.text(max_size=4), ODD_VALUES),
    "reward_weights": WEIGHTS,
    "workload_kwargs": WORKLOAD_KWARGS,
    "governors": GOVERNORS,
}


@st.composite
def arbitrary_kwargs(draw: st.DrawFn) -> dict[str, Any]:
    """Valid arguments with one to three of them replaced by arbitrary values (so that each odd value is tried
    on its own, not hidden behind another argument's error)."""
    kw = draw(valid_kwargs())
    for name in draw(st.lists(st.sampled_from(sorted(ODD_ARGS)), min_size=1, max_size=3, unique=True)):
        kw[name] = draw(ODD_ARGS[name], label=name)
    return kw


def _check_info(info: dict[str, Any], reward: Any = 0.0, obs: np.ndarray | None = None, space: Any = None) -> None:
    """No NaN anywhere in ``info``, no negative amount, a finite reward and an observation inside its space."""
    for key, value in info.items():
        arr = np.asarray(value)
        if arr.dtype.kind == "f":
            assert not np.isnan(arr).any(), f"info[{key!r}] is NaN: {value!r}"
    for key in NON_NEGATIVE:
        if key in info:
            arr = np.asarray(info[key], dtype=np.float64)
            assert np.isfinite(arr).all() and (arr >= 0).all(), f"info[{key!r}] = {info[key]!r}"
    conf = np.asarray(info.get(CONFIDENCE, 0.0), dtype=np.float64)
    assert ((conf >= 0) & (conf <= 1)).all()
    assert np.isfinite(np.asarray(reward, dtype=np.float64)).all(), f"reward {reward!r}"
    if obs is not None:
        assert np.isfinite(obs).all() and (space is None or space.contains(obs)), f"observation {obs!r}"


# ---------------------------------------------------------------------------------------------- construction


@FAST
@given(kwargs=arbitrary_kwargs())
def test_frame_env_builds_or_raises_a_one_line_e4gym_error(kwargs: dict[str, Any]) -> None:
    try:
        env = EarlyExitDVFSEnv(**kwargs)
    except E4gymError as exc:
        assert "\n" not in str(exc), f"multi-line message for {kwargs!r}: {exc}"
        return
    except Exception as exc:  # the property: nothing but an e4gym error
        pytest.fail(f"EarlyExitDVFSEnv(**{kwargs!r}) raised {type(exc).__name__}: {exc}")
    try:
        obs, info = env.reset(seed=0)
        _check_info(info, obs=obs, space=env.observation_space)
        env.action_space.seed(0)
        for _ in range(2):
            obs, reward, _, _, info = env.step(env.action_space.sample())
            _check_info(info, reward, obs, env.observation_space)
    finally:
        env.close()


# ---------------------------------------------------------------------------------------------- actions


@SLOW
@given(kwargs=valid_kwargs(), data=st.data())
def test_in_space_actions_never_give_nan_or_negative_energy_or_latency(kwargs: dict[str, Any], data: st.DataObject
                                                                       ) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # an overflow on the way is a failure too
        env = EarlyExitDVFSEnv(**kwargs)
        try:
            obs, info = env.reset(seed=data.draw(st.integers(0, 2**31 - 1), label="seed"))
            _check_info(info, obs=obs, space=env.observation_space)
            nvec = env.action_space.nvec.tolist()
            action = st.tuples(*(st.integers(0, n - 1) for n in nvec)).map(lambda t: np.array(t, dtype=np.int64))
            for a in data.draw(st.lists(action, min_size=1, max_size=25), label="actions"):
                obs, reward, terminated, truncated, info = env.step(a)
                _check_info(info, reward, obs, env.observation_space)
                assert not terminated
                if truncated:
                    obs, info = env.reset()
        finally:
            env.close()


@cache
def _env(device: str, control_memory: bool) -> EarlyExitDVFSEnv:
    env = EarlyExitDVFSEnv(device=device, control_memory=control_memory, episode_frames=10**6)
    env.reset(seed=0)
    return env


#: Actions of every shape and type: in the space or out of it (out-of-range, non-integral, NaN, wrong length).
ANY_ACTION = st.one_of(
    st.lists(st.integers(-(10**20), 10**20), max_size=5),
    st.lists(st.integers(-2, 30), min_size=3, max_size=4),
    st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=5),
    st.lists(st.one_of(st.integers(-2, 30), st.floats(-2, 30), st.booleans(), st.text(max_size=2), st.none()),
             min_size=3, max_size=4),
    st.lists(st.integers(-2, 30), min_size=3, max_size=4).map(np.array),
    st.lists(st.floats(-2, 30, width=32), min_size=3, max_size=4).map(lambda v: np.array(v, dtype=np.float32)),
    st.none(), st.text(max_size=3), st.integers(), st.floats(), st.dictionaries(st.text(max_size=2), st.integers()),
)


@FAST
@given(device=st.sampled_from(DEVICES), control_memory=st.booleans(), action=ANY_ACTION)
def test_any_action_steps_or_raises_setting_error(device: str, control_memory: bool, action: Any) -> None:
    env = _env(device, control_memory)
    nvec = env.action_space.nvec.tolist()
    flat = np.ravel(np.asarray(action, dtype=object)).tolist() if isinstance(action, (list, np.ndarray)) else None
    in_space = (
        flat is not None and len(flat) == len(nvec)
        and all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))
                and math.isfinite(v) and float(v).is_integer() and 0 <= v < n for v, n in zip(flat, nvec))
    )
    try:
        obs, reward, _, _, info = env.step(action)
    except SettingError as exc:
        assert not in_space, f"an in-space action {action!r} was refused: {exc}"
        assert "\n" not in str(exc) and "MultiDiscrete" in str(exc)
        return
    except Exception as exc:
        pytest.fail(f"step({action!r}) raised {type(exc).__name__}: {exc}")
    # Bools in a list become 0/1 through NumPy; everything else accepted must be in the space.
    has_bool = flat is not None and any(isinstance(v, (bool, np.bool_)) for v in flat)
    assert in_space or has_bool, f"an out-of-space action {action!r} was accepted"
    _check_info(info, reward, obs, env.observation_space)


# ---------------------------------------------------------------------------------------------- vector env


@SLOW
@given(
    num_envs=st.integers(1, 4),
    device=st.sampled_from(DEVICES),
    control_memory=st.booleans(),
    ambient_c=st.sampled_from([None, *AMBIENT_RANGE_C]),
    fan=st.booleans(),
    data=st.data(),
)
def test_native_vector_env_random_actions_keep_the_invariants(num_envs: int, device: str, control_memory: bool,
                                                              ambient_c: float | None, fan: bool,
                                                              data: st.DataObject) -> None:
    venv = gym.make_vec(ENV_ID, num_envs=num_envs, vectorization_mode="vector_entry_point", device=device,
                        control_memory=control_memory, ambient_c=ambient_c, fan=fan, episode_frames=4)
    try:
        obs, info = venv.reset(seed=data.draw(st.integers(0, 2**31 - 1), label="seed"))
        _check_info(info, obs=obs)
        nvec = venv.single_action_space.nvec
        rng = np.random.default_rng(data.draw(st.integers(0, 2**31 - 1), label="rng"))
        for _ in range(6):  # crosses an episode boundary (autoreset)
            actions = rng.integers(0, nvec, size=(num_envs, len(nvec)))
            obs, reward, _, _, info = venv.step(actions)
            _check_info(info, reward, obs)
        bad = rng.integers(0, nvec, size=(num_envs, len(nvec)))
        j = int(rng.integers(len(nvec)))
        bad[rng.integers(num_envs), j] = data.draw(
            st.one_of(st.integers(-(10**6), -1), st.integers(int(nvec[j]), 10**6)), label="bad component")
        with pytest.raises(SettingError, match="outside the action space"):
            venv.step(bad)
        with pytest.raises(SettingError, match="actions must have shape"):
            venv.step(np.zeros((num_envs + 1, len(nvec)), np.int64))
    finally:
        venv.close()
