"""The batching env (BCEdge, issue 19): checkers, determinism, serving physics, memory refusal, bad input."""

from __future__ import annotations

import itertools

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import e4gym
from e4gym.envs.batching import (
    BATCH_INFO_KEYS,
    INSTANCES,
    PER_MODEL_INFO_KEYS,
    REFUSED,
    REWARD_MEMORY,
    UTILITY_TERMS,
    BatchConcurrencyEnv,
    BatchOutcome,
    BCEdgeUtility,
    model_key,
)
from e4gym.errors import ConfigError, SettingError, UnknownArgumentError
from e4gym.hardware.spec import available_devices

ID = e4gym.BATCH_ENV_ID
SMALL = ("mobilenet_v2", "resnet18")


def _run(env: gym.Env, actions: list, seed: int = 0) -> list[dict]:
    env.reset(seed=seed)
    return [env.step(a)[4] for a in actions]


def _steady(env: BatchConcurrencyEnv, action: list[int], n: int = 4, seed: int = 0) -> list[dict]:
    env.reset(seed=seed)
    return [env.step(np.array(action))[4] for _ in range(n)]


@pytest.mark.parametrize("device", available_devices())
def test_passes_gymnasiums_checker_on_every_board(device: str) -> None:
    env = gym.make(ID, device=device, episode_intervals=10)
    check_env(env.unwrapped, skip_render_check=True)
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    models = env.unwrapped.models
    keys = set(BATCH_INFO_KEYS) | {model_key(k, m) for k in PER_MODEL_INFO_KEYS for m in models} | set(UTILITY_TERMS)
    assert keys <= set(info)
    for _ in range(5):
        obs, r, term, _, info = env.step(env.action_space.sample())
        assert env.observation_space.contains(obs) and np.isfinite(r) and not term
        assert keys <= set(info) and all(isinstance(v, np.generic) for v in info.values())


def test_passes_sb3_checker_with_clock_control() -> None:
    from stable_baselines3.common.env_checker import check_env as sb3_check

    sb3_check(gym.make(ID, device="xavier-nx", episode_intervals=5, control_clocks=True).unwrapped, warn=False)
    sb3_check(gym.make(ID, device="orin-nx", episode_intervals=5).unwrapped, warn=False)


def test_spaces_and_truncation() -> None:
    assert "BATCH_ENV_ID" in e4gym.__all__ and ID in gym.registry
    env = gym.make(ID, episode_intervals=3, control_clocks=True).unwrapped
    mx = env.max_levels
    assert list(env.action_space.nvec) == [6, 4] * 4 + [mx[0] + 1, mx[1] + 1, mx[2] + 1]
    assert len(env.obs_names) == 7 * 4 + 3 + 3 and env.obs_names[0] == "efficientnet_b0_queue"
    env.reset(seed=0)
    truncs = [env.step(env.action_space.sample())[3] for _ in range(3)]
    assert truncs == [False, False, True]


def test_same_seed_same_trajectory_and_seeds_differ() -> None:
    env = gym.make(ID, device="orin-nx", arrivals="bursty")
    env.action_space.seed(3)
    actions = [env.action_space.sample() for _ in range(30)]
    a, b = _run(env, actions, seed=7), _run(gym.make(ID, device="orin-nx", arrivals="bursty"), actions, seed=7)
    for x, y in zip(a, b):
        assert x.keys() == y.keys() and all(x[k] == y[k] for k in x)
    c = _run(env, actions, seed=8)
    assert any(x["arrived"] != y["arrived"] for x, y in zip(a, c))


def test_batching_raises_throughput_under_heavy_load() -> None:
    env = BatchConcurrencyEnv(models=("efficientnet_b0",), rates_rps=300.0, arrivals="poisson-constant")
    b1 = _steady(env, [0, 0])[-1]["throughput_rps"]  # batch 1, one instance
    b8 = _steady(env, [3, 0])[-1]["throughput_rps"]  # batch 8
    assert b8 > 2.0 * b1


def test_instances_help_a_small_model_until_the_gpu_saturates() -> None:
    env = BatchConcurrencyEnv(models=("mobilenet_v2",), rates_rps=1000.0, arrivals="poisson-constant")
    thr = {n: _steady(env, [0, n - 1])[-1]["throughput_rps"] for n in (1, 2, 4)}
    assert thr[2] > 1.8 * thr[1]
    big = {n: _steady(env, [3, n - 1])[-1]["throughput_rps"] for n in (1, 4)}  # batch 8 nearly saturates DRAM
    assert big[4] < 1.5 * big[1]
    assert _steady(env, [0, 3])[-1]["gpu_util"] > _steady(env, [0, 0])[-1]["gpu_util"]


def test_higher_clocks_lower_latency_and_higher_power() -> None:
    env = BatchConcurrencyEnv(models=SMALL, control_clocks=True, arrivals="poisson-constant")
    mx = env.max_levels
    low = _steady(env, [0, 0, 0, 0, mx[0], 3, mx[2]])
    top = _steady(env, [0, 0, 0, 0, mx[0], mx[1], mx[2]])
    assert np.mean([i["p99_latency_ms"] for i in top]) < np.mean([i["p99_latency_ms"] for i in low])
    assert top[-1]["gpu_hz"] > low[-1]["gpu_hz"]
    # the same requests served faster at a higher power while busy: the energy per request is not lower at the
    # top clock when the board idles between requests
    assert top[-1]["power_w"] > low[-1]["power_w"]


def test_overload_grows_the_queue_and_the_violations() -> None:
    env = BatchConcurrencyEnv(models=("resnet18",), rates_rps=500.0, arrivals="poisson-constant", slo_ms=100.0)
    infos = _steady(env, [0, 0], n=6)
    queues = [i["queued"] for i in infos]
    assert all(b > a for a, b in itertools.pairwise(queues))
    assert infos[-1]["slo_violation_rate"] > 0.9
    light = BatchConcurrencyEnv(models=("resnet18",), rates_rps=5.0, arrivals="poisson-constant", slo_ms=100.0)
    assert _steady(light, [0, 0], n=6)[-1]["slo_violation_rate"] == 0.0


def test_an_over_memory_action_is_refused_with_the_penalty() -> None:
    env = BatchConcurrencyEnv(device="jetson-nano", memory_penalty=2.0)
    env.reset(seed=0)
    ok = np.array([1, 0] * 4)  # batch 2, one instance each
    _, _, _, _, info = env.step(ok)
    assert not info[REFUSED] and info[model_key(INSTANCES, "resnet18")] == 1
    huge = np.array([5, 3] * 4)  # batch 32, 4 instances of every model: far beyond 3 GB
    assert env.memory_gb(huge) > env.usable_memory_gb
    _, r, _, _, info = env.step(huge)
    assert info[REFUSED] and info[REWARD_MEMORY] == -2.0
    assert info[model_key(INSTANCES, "resnet18")] == 1 and info["batch_size/resnet18"] == 2  # the previous one
    assert info["memory_gb"] <= env.usable_memory_gb
    assert r == pytest.approx(sum(info[k] for k in UTILITY_TERMS) - 2.0)


def test_an_action_outside_the_space_is_a_setting_error() -> None:
    env = BatchConcurrencyEnv(models=SMALL)
    env.reset(seed=0)
    with pytest.raises(SettingError, match="mobilenet_v2_instances") as err:
        env.step(np.array([0, 4, 0, 0]))
    assert "\n" not in str(err.value)
    with pytest.raises(SettingError, match="components"):
        env.step(np.array([0, 0, 0]))
    with pytest.raises(gym.error.ResetNeeded):
        BatchConcurrencyEnv(models=SMALL).step(np.array([0, 0, 0, 0]))


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"batch_sizes": (0, 1, 2)}, "a batch holds at least one request"),
    ({"batch_sizes": (4, 2)}, "increase strictly"),
    ({"slo_ms": 0.0}, "slo_ms must be a number > 0"),
    ({"slo_ms": (50.0, -1.0)}, "slo_ms must be a number > 0"),
    ({"rates_rps": (10.0,)}, "one per model"),
    ({"max_instances": 0}, "max_instances must be an integer"),
    ({"device": "jetson-nano", "max_instances": 64}, "cannot fit"),
    ({"models": ("resnet50",) * 2}, "each model once"),
    ({"models": []}, "non-empty list"),
    ({"interval_ms": 0}, "interval_ms must be"),
    ({"episode_intervals": 0}, "episode_intervals must be"),
    ({"control_clocks": "yes"}, "control_clocks must be True or False"),
    ({"memory_penalty": -1}, "memory_penalty must be"),
    ({"utility": 3}, "utility must be a callable"),
    ({"max_queue_delay_ms": -5}, "max_queue_delay_ms must be"),
    ({"arrivals": "gamma"}, "arrivals must be one of"),
    ({"device": 7}, "device must be a device name"),
])
def test_bad_arguments_are_one_line_config_errors(kwargs: dict, match: str) -> None:
    kwargs = {"models": SMALL, **kwargs}
    with pytest.raises(ConfigError, match=match) as err:
        gym.make(ID, **kwargs)
    assert "\n" not in str(err.value)


def test_unknown_argument_and_malformed_trace(tmp_path) -> None:
    with pytest.raises(UnknownArgumentError, match="unexpected keyword argument 'fps'"):
        BatchConcurrencyEnv(fps=30)
    bad = tmp_path / "log.csv"
    bad.write_text("time_s,model\n0.5,resnet18\n0.1,mobilenet_v2\n")
    with pytest.raises(ConfigError, match=r"log\.csv, line 3") as err:
        BatchConcurrencyEnv(models=SMALL, arrivals=str(bad))
    assert "\n" not in str(err.value)
    bad.write_text("time_s,model\n0.1,resnet18\n0.5,mobilenet_v2\n")
    with pytest.raises(ConfigError, match="rates_rps does not apply"):
        BatchConcurrencyEnv(models=SMALL, arrivals=str(bad), rates_rps=3.0)


def test_a_csv_trace_drives_the_env(tmp_path) -> None:
    path = tmp_path / "log.csv"
    rows = [f"{0.005 + 0.01 * i:.3f},{SMALL[i % 2]}" for i in range(200)]  # 100 req/s, alternating, over 2 s
    path.write_text("time_s,model\n" + "\n".join(rows) + "\n")
    env = BatchConcurrencyEnv(models=SMALL, arrivals=str(path), episode_intervals=4)
    assert env.rate_ref_rps == (50.0, 50.0)
    a = _steady(env, [0, 1, 0, 1], n=4, seed=0)
    b = _steady(env, [0, 1, 0, 1], n=4, seed=99)  # a trace is the same whatever the seed
    assert [i["arrived"] for i in a] == [i["arrived"] for i in b] == [100, 100, 100, 100]  # looped after 2 s


def test_utility_is_replaceable_and_default_terms_add_up() -> None:
    calls: list[BatchOutcome] = []

    def goodput(o: BatchOutcome) -> tuple[float, dict[str, float]]:
        calls.append(o)
        return sum(o.goodput_rps), {"goodput_sum": sum(o.goodput_rps)}

    env = BatchConcurrencyEnv(models=SMALL, utility=goodput)
    env.reset(seed=0)
    _, r, _, _, info = env.step(np.array([0, 0, 0, 0]))
    assert r == pytest.approx(info["goodput_sum"]) and info["goodput_rps"] == pytest.approx(r)
    assert len(calls[0].slo_s) == 2
    env = BatchConcurrencyEnv(models=SMALL)
    env.reset(seed=0)
    _, r, _, _, info = env.step(np.array([0, 0, 0, 0]))
    assert r == pytest.approx(sum(info[k] for k in UTILITY_TERMS)) and info["reward_energy"] == 0.0
    assert BatchConcurrencyEnv(models=SMALL, control_clocks=True).utility.energy == 1.0
    with pytest.raises(ConfigError, match="latency"):
        BCEdgeUtility(latency=-1.0)


def test_energy_per_request_and_render() -> None:
    env = gym.make(ID, models=SMALL, render_mode="ansi").unwrapped
    env.reset(seed=0)
    _, _, _, _, info = env.step(np.array([1, 1, 1, 1]))
    assert info["energy_per_request_j"] == pytest.approx(info["energy_j"] / info["completed"])
    assert info["power_w"] == pytest.approx(info["energy_j"])  # a 1 s interval
    text = env.render()
    assert text.startswith("interval 1:") and "mobilenet_v2 B=2×2" in text


def test_tensorrt_runtime_is_faster_and_lighter() -> None:
    eager = BatchConcurrencyEnv(models=SMALL)
    trt = BatchConcurrencyEnv(models=SMALL, runtime="tensorrt-fp16")
    assert all(a < b for a, b in zip(trt.slo_s, eager.slo_s))  # SLOs follow each runtime's solo latency
    assert trt.memory_gb(np.array([5, 3, 5, 3])) < eager.memory_gb(np.array([5, 3, 5, 3]))  # fp16 bytes
    trt.reset(seed=0)
    assert trt.step(np.array([2, 1, 2, 1]))[4]["completed"] > 0


@pytest.mark.parametrize("control_clocks", [False, True])
def test_rewards_are_of_order_one(control_clocks: bool) -> None:
    """Each utility term is capped (throughput and latency ratios at 10), so any reward lies in a fixed range; a
    sensible configuration at the top clocks earns a reward of order 1."""
    env = gym.make(ID, control_clocks=control_clocks, memory_penalty=1.0)
    env.action_space.seed(0)
    env.reset(seed=0)
    rewards = [env.step(env.action_space.sample())[1] for _ in range(60)]
    assert all(-(0.5 * 10 + 1) - 3.0 - 1.0 <= r <= 10.0 for r in rewards) and np.std(rewards) > 0.05
    u = env.unwrapped
    sane = [1, 0] * 4 + ([*u.max_levels] if control_clocks else [])  # batch 2, one instance each
    u.reset(seed=1)
    rewards = [u.step(np.array(sane))[1] for _ in range(20)]
    assert -1.5 < np.mean(rewards) < 1.5  # (with the clocks controlled the energy term is about -1 at the top)
