"""The frame env ``e4gym/EarlyExitDVFS-v1``: checkers, determinism, streaming time, reward, bad input."""

from __future__ import annotations

import subprocess
import sys
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import e4gym
from e4gym.envs import INFO_KEYS, EarlyExitDVFSEnv
from e4gym.errors import ConfigError, SettingError, UnknownNameError
from e4gym.hardware import available_devices
from e4gym.workload.trace import TraceSource, save_trace

ENV_ID = "e4gym/EarlyExitDVFS-v1"


def run(env: gym.Env, actions: list, seed: int) -> list:
    out = [env.reset(seed=seed)]
    out += [env.step(a) for a in actions]
    return out


def same(a: object, b: object) -> bool:
    if isinstance(a, tuple | list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))  # type: ignore[arg-type]
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)  # type: ignore[union-attr,index]
    if isinstance(a, np.ndarray):
        return np.array_equal(a, b)
    return a == b


@pytest.mark.parametrize("control_memory", [False, True])
@pytest.mark.parametrize("device", available_devices())
def test_checkers_pass_on_every_device(device: str, control_memory: bool) -> None:
    env = gym.make(ENV_ID, device=device, control_memory=control_memory, episode_frames=30)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any checker warning fails the test
        check_env(env.unwrapped)
    sb3_check_env(EarlyExitDVFSEnv(device=device, control_memory=control_memory, episode_frames=30), warn=True)
    n = 4 if control_memory else 3
    assert env.action_space.shape == (n,)
    assert env.unwrapped.action_names[-1] == ("emc_level" if control_memory else "gpu_level")
    assert ("emc_level" in env.unwrapped.obs_names) == control_memory


def test_make_after_import_with_alias_and_module_prefix() -> None:
    env = gym.make(ENV_ID, device="nano")
    assert env.unwrapped.device_spec.name == "jetson-nano"
    assert set(e4gym.ENV_IDS) <= set(gym.registry)
    code = (
        "import gymnasium as gym, sys\n"
        "env = gym.make('e4gym:e4gym/EarlyExitDVFS-v1', episode_frames=5)\n"
        "env.reset(seed=0); env.step(env.action_space.sample())\n"
        "assert 'torch' not in sys.modules, 'importing e4gym must not import torch'\n"
        "print(env.unwrapped.device_spec.name)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "xavier-nx"


def test_same_seed_same_actions_gives_identical_trajectories() -> None:
    env = gym.make(ENV_ID, device="jetson-tx2", episode_frames=50)
    rng = np.random.default_rng(3)
    actions = [rng.integers(0, env.action_space.nvec) for _ in range(60)]
    first = run(env, actions[:40], seed=11)
    again = run(gym.make(ENV_ID, device="jetson-tx2", episode_frames=50), actions[:40], seed=11)
    assert same(first, again)
    other = run(env, actions[:40], seed=12)
    assert not np.array_equal(first[5][0], other[5][0])
    # Unseeded resets continue the seeded generator: the second episode is reproducible too.
    a = EarlyExitDVFSEnv(episode_frames=10)
    b = EarlyExitDVFSEnv(episode_frames=10)
    for env_ in (a, b):
        env_.reset(seed=5)
        for act in actions[:10]:
            env_.step(act)
    assert same(run(a, actions[:10], seed=None), run(b, actions[:10], seed=None))  # type: ignore[arg-type]


def test_info_keys_always_present_and_reward_is_its_terms() -> None:
    weights = {"energy": 2.0, "deadline": 3.0, "accuracy": 0.5}
    env = EarlyExitDVFSEnv(device="jetson-nano", reward_weights=weights, episode_frames=200)
    _, info = env.reset(seed=0)
    assert {*INFO_KEYS, *env.unwrapped.rail_keys} == set(info) and info["exit"] == -1
    e_ref = env.setup.energy_ref_j
    for t in range(120):
        level = 0 if t % 3 == 0 else env.action_space.nvec[1] - 1
        _, r, term, _trunc, info = env.step(np.array([t % 5, level, level % env.action_space.nvec[2]]))
        assert {*INFO_KEYS, *env.unwrapped.rail_keys} == set(info) and not term
        expected = -2.0 * info["energy_j"] / e_ref - 3.0 * info["deadline_missed"] - 0.5 * (1 - info["correct"])
        assert r == pytest.approx(expected, rel=1e-12, abs=1e-12)
        assert r == pytest.approx(info["reward_energy"] + info["reward_deadline"] + info["reward_accuracy"])
        assert info["exit"] == t % 5 and info["frame"] == t


def test_top_levels_full_network_costs_about_the_reference_energy() -> None:
    env = EarlyExitDVFSEnv(device="xavier-nx", episode_frames=100)
    env.reset(seed=0)
    top = env.action_space.nvec - 1
    infos = [env.step(top)[4] for _ in range(100)]
    energy = np.array([i["energy_j"] for i in infos])
    assert not any(i["deadline_missed"] for i in infos)
    assert energy.mean() == pytest.approx(env.setup.energy_ref_j, rel=0.05)
    # Streaming time: each frame occupies the board for one frame period (run + idle), no overrun.
    occupied = energy / np.array([i["power_w"] for i in infos])
    assert occupied == pytest.approx(np.full(100, 1 / 30), rel=1e-9)
    # CALIBRATION.md: EfficientNet-B0 on Xavier NX at top clocks runs in about 30 ms.
    assert np.mean([i["run_ms"] for i in infos]) == pytest.approx(29.7, rel=0.05)


def test_earlier_exits_and_lower_clocks_trade_energy_latency_and_accuracy() -> None:
    def mean_of(action: list[int], key: str, frames: int = 200) -> float:
        env = EarlyExitDVFSEnv(device="xavier-nx", episode_frames=frames)
        env.reset(seed=1)
        return float(np.mean([env.step(np.array(action))[4][key] for _ in range(frames)]))

    top = [24, 14]
    assert mean_of([0, *top], "run_ms") < 0.6 * mean_of([4, *top], "run_ms")
    assert mean_of([0, *top], "energy_j") < mean_of([4, *top], "energy_j")
    # (1000 frames, about eight scenes: a 200-frame window can sit in one hard scene where every exit errs.)
    assert mean_of([0, *top], "correct", 1000) < mean_of([4, *top], "correct", 1000) - 0.2
    assert mean_of([4, 24, 6], "run_ms") > 1.3 * mean_of([4, *top], "run_ms")


def test_overrunning_frames_queue_and_miss_their_deadlines() -> None:
    env = EarlyExitDVFSEnv(device="jetson-nano", episode_frames=60)
    obs, _ = env.reset(seed=0)
    slack = env.obs_names.index("slack")
    lat = [env.step(np.array([4, 0, 0]))[4]["latency_ms"] for _ in range(30)]
    assert all(np.diff(lat) > 0)  # the queue grows frame after frame
    obs, *_ = env.step(np.array([4, 0, 0]))
    assert obs[slack] == -10.0  # clipped: the next frame starts far past its deadline
    assert env.observation_space.contains(obs)
    # Top clocks and the first exit drain the queue: the backlog shrinks frame after frame.
    top = env.action_space.nvec - 1
    drain = [env.step(np.array([0, top[1], top[2]]))[4]["latency_ms"] for _ in range(10)]
    assert all(np.diff(drain) < 0)


def test_dvfs_switches_count_changed_domains() -> None:
    env = EarlyExitDVFSEnv(device="xavier-nx", control_memory=True, episode_frames=10)
    env.reset(seed=0)
    top = env.action_space.nvec - 1
    assert env.step(top)[4]["dvfs_switches"] == 0
    info = env.step(np.array([4, 10, top[2], 3]))[4]
    assert info["dvfs_switches"] == 2
    assert info["cpu_hz"] == env.device_spec.cpu_freqs_hz[10] and info["emc_hz"] == env.device_spec.emc_freqs_hz[3]
    assert env.step(np.array([4, 10, 5, 3]))[4]["dvfs_switches"] == 1


def test_power_mode_caps_the_action_space() -> None:
    full = EarlyExitDVFSEnv(device="xavier-nx", power_mode="20W")
    low = EarlyExitDVFSEnv(device="xavier-nx", power_mode="10W")
    assert (low.action_space.nvec[1:] <= full.action_space.nvec[1:]).all()
    assert (low.action_space.nvec[1:] < full.action_space.nvec[1:]).any()


def test_passive_cooling_heats_and_throttles() -> None:
    env = EarlyExitDVFSEnv(device="jetson-nano", fan=False, episode_frames=10_000)
    obs, _ = env.reset(seed=0)
    temp = env.obs_names.index("temperature")
    top = env.action_space.nvec - 1
    throttled = False
    for _ in range(9000):  # 5 minutes of video at 30 fps
        obs, _, _, _, info = env.step(top)
        throttled |= info["throttled"]
    assert throttled and obs[temp] > 0.9
    assert env.observation_space.contains(obs)


def test_episode_truncates_after_episode_frames() -> None:
    env = gym.make(ENV_ID, episode_frames=7)
    env.reset(seed=0)
    flags = [env.step(env.action_space.sample())[2:4] for _ in range(7)]
    assert flags[-1] == (False, True) and all(f == (False, False) for f in flags[:-1])


def test_trace_workload(tmp_path) -> None:
    rng = np.random.default_rng(0)
    t, e = 40, 5
    correct = rng.random((t, e)) < np.linspace(0.3, 0.8, e)
    path = tmp_path / "clip.npz"
    save_trace(
        path, features=rng.random((t, 3)).astype(np.float32), predictions=rng.integers(0, 10, (t, e)),
        feature_change=rng.random((t, e)).astype(np.float32),
        confidence=rng.random((t, e)).astype(np.float32), correct=correct, labels=rng.integers(0, 10, t),
        scene=np.repeat(np.arange(4), 10), fps=15.0, model="efficientnet_b0", pooled=None,
    )
    env = EarlyExitDVFSEnv(workload=str(path), episode_frames=t)
    assert env.setup.fps == 15.0 and env.setup.deadline_s == pytest.approx(1 / 15)
    env.reset(seed=0)
    start = env.source.first_row
    infos = [env.step(np.array([2, 10, 10]))[4] for _ in range(t)]
    assert [i["correct"] for i in infos] == [bool(correct[(start + k) % t, 2]) for k in range(t)]
    # Finding 6 of the fault audit: a trace of another model with as many exits was accepted. It names its model.
    for other in ("mobilenet_v2", "resnet18"):
        with pytest.raises(ConfigError, match=f"recorded with model 'efficientnet_b0' but the env runs '{other}'"):
            EarlyExitDVFSEnv(workload=str(path), model=other)
        with pytest.raises(ConfigError, match="recorded with model 'efficientnet_b0'"):
            EarlyExitDVFSEnv(workload=TraceSource(str(path)), model=other)
    with pytest.raises(ConfigError, match="contradicts the workload's frame rate"):
        EarlyExitDVFSEnv(workload=str(path), fps=30)


@pytest.mark.parametrize(
    "action",
    [np.array([5, 0, 0]), np.array([0, 25, 0]), np.array([0, 0, -1]), np.array([0, 0]), np.array([0.5, 1, 1]),
     [0, 1, 2, 3]],
)
def test_actions_outside_the_space_are_refused(action: object) -> None:
    env = EarlyExitDVFSEnv(device="xavier-nx")
    env.reset(seed=0)
    with pytest.raises(SettingError, match=r"MultiDiscrete\(\[5, 25, 15\]\)") as exc:
        env.step(action)
    assert "0.." in str(exc.value) or "components" in str(exc.value)


def test_step_before_reset_is_refused() -> None:
    with pytest.raises(gym.error.ResetNeeded):
        EarlyExitDVFSEnv().step(np.array([0, 0, 0]))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"device": "nanoo"}, UnknownNameError, "known devices: .*jetson-nano"),
        ({"model": "vgg"}, UnknownNameError, "known models: .*efficientnet_b0"),
        ({"deadline_ms": 0}, ConfigError, "deadline_ms .* > 0"),
        ({"deadline_ms": -5.0}, ConfigError, "deadline_ms"),
        ({"fps": 0}, ConfigError, "fps"),
        ({"episode_frames": 0}, ConfigError, "episode_frames must be an integer >= 1"),
        ({"power_mode": "99W"}, UnknownNameError, "modes: "),
        ({"backend": "jetsonn"}, UnknownNameError, "backends: \\['emulated', 'jetson'\\]"),
        ({"reward_weights": {"latency": 1.0}}, UnknownNameError, "weights: \\['energy', 'deadline', 'accuracy'\\]"),
        ({"reward_weights": {"energy": -1.0}}, ConfigError, "finite number >= 0"),
        ({"workload": 3}, ConfigError, r"'synthetic', 'clip:<name>' \(a shipped real-video trace: .*a path to a trace"),
        ({"workload_kwargs": {"speed": 1}}, UnknownNameError, "mean_scene_s"),
        ({"workload_kwargs": {"drift": 5.0}}, ConfigError, "drift"),
        ({"episode_frmaes": 10}, UnknownNameError, "episode_frames"),
        ({"reward": 3}, ConfigError, "callable"),
        ({"reward": lambda o: (0.0, {}), "reward_weights": {"energy": 2.0}}, ConfigError, "drop them"),
    ],
)
def test_bad_arguments_say_what_is_allowed(kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        gym.make(ENV_ID, **kwargs)


def test_missing_trace_file_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"missing\.npz"):
        EarlyExitDVFSEnv(workload=str(tmp_path / "missing.npz"))


def test_render_ansi() -> None:
    env = gym.make(ENV_ID, render_mode="ansi")
    env.reset(seed=0)
    env.step(np.array([2, 3, 4]))
    text = env.render()
    assert "exit=2" in text and "levels=(3, 4," in text


@pytest.mark.parametrize("env_id", [ENV_ID, "e4gym/EarlyExitDVFSBlock-v1"])
def test_step_before_reset_through_make_is_refused(env_id: str) -> None:
    env = gym.make(env_id)
    with pytest.raises(gym.error.ResetNeeded):
        env.step(env.action_space.sample())


def test_reward_energy_source_and_monitor_observations() -> None:
    """The reward's energy is the true energy by default or what the monitor reports; the observation's energy and
    power are always the monitor's (a controller's view), the info keeps the true energy as the metric."""
    envs = {src: gym.make(ENV_ID, reward_energy=src, reward_weights={"deadline": 0, "accuracy": 0}).unwrapped
            for src in ("true", "measured")}
    out = {}
    for src, env in envs.items():
        env.reset(seed=4)
        obs, r, _, _, info = env.step(np.array([4, 20, 10]))
        out[src] = (obs, r, info)
    (o_t, r_t, i_t), (o_m, r_m, i_m) = out["true"], out["measured"]
    ref = envs["true"].setup.energy_ref_j
    assert r_t == pytest.approx(-i_t["energy_j"] / ref) and r_m == pytest.approx(-i_m["measured_energy_j"] / ref)
    assert i_t["energy_j"] != pytest.approx(i_t["measured_energy_j"], rel=1e-3)  # the monitor lags
    np.testing.assert_array_equal(o_t, o_m)  # the reward's energy source does not change what the policy sees
    i_e = envs["true"].obs_names.index("energy")
    assert o_t[i_e] == pytest.approx(i_t["measured_energy_j"] / ref, rel=1e-5)
    with pytest.raises(ConfigError, match="reward_energy must be one of"):
        gym.make(ENV_ID, reward_energy="both")
