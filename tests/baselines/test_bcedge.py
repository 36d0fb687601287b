"""BCEdge's baselines on the batching env (baselines.bcedge): batch1, triton_dynamic, best_static_batching,
scale_with_load."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest

from baselines.bcedge import (
    CALIBRATION_SEED,
    BatchOnePolicy,
    BestStaticBatchingPolicy,
    LoadScalingPolicy,
    TritonDynamicPolicy,
    triton_config,
)
from e4gym import BATCH_ENV_ID
from e4gym.envs.batching import BatchConcurrencyEnv
from e4gym.errors import ConfigError
from e4gym.policy import PolicyContext, bind_policy, run_episode

DEVICE = "xavier-nx"


def _env(**kw):
    return gym.make(BATCH_ENV_ID, device=DEVICE, **{"episode_intervals": 20, **kw})


def _high_load_env(factor: float = 2.0, **kw):
    """The default scenario at ``factor`` × its nominal rates (the default is about half the board's capacity)."""
    rates = _env().unwrapped.setup.rate_ref_rps
    return _env(rates_rps=[r * factor for r in rates], **kw)


@pytest.mark.parametrize("control_clocks", [False, True])
def test_each_baseline_runs_an_episode_with_valid_actions(control_clocks: bool) -> None:
    env = _env(control_clocks=control_clocks)
    setup = env.unwrapped.setup
    for pol in (BatchOnePolicy(), TritonDynamicPolicy(), LoadScalingPolicy(),
                BestStaticBatchingPolicy(intervals=5, episodes=1, passes=1)):
        seen = []
        inner = pol.predict

        def spy(obs, state=None, episode_start=None, deterministic=True, inner=inner, seen=seen):
            action, state = inner(obs, state, episode_start, deterministic)
            seen.append(action)
            return action, state

        pol.predict = spy  # type: ignore[method-assign]
        infos = run_episode(pol, env, seed=1)
        assert len(infos) == 20 and not any(bool(i["refused"]) for i in infos), pol.name
        for a in seen:
            assert env.action_space.contains(a), (pol.name, a)
            if control_clocks:  # clocks held at the top levels
                assert tuple(a[-3:]) == setup.max_levels
        assert all(math.isfinite(i["reward"]) for i in infos)


def test_batch1_serves_batch_one_with_one_instance() -> None:
    infos = run_episode(BatchOnePolicy(), _env(), seed=0)
    models = _env().unwrapped.models
    assert all(i[f"batch_size/{m}"] == 1 and i[f"instances/{m}"] == 1 for i in infos for m in models)


@pytest.mark.parametrize("instances", [1, 2])
def test_triton_dynamic_picks_the_largest_batch_within_the_slo_that_fits(instances: int) -> None:
    env = _env()
    pol = TritonDynamicPolicy(instances=instances)
    ctx = bind_policy(pol, env)
    s, cm = ctx.setup, ctx.cost_model
    cfg = pol.config
    assert s.config_memory_gb(cfg) <= s.usable_memory_gb
    for m in range(len(s.models)):
        b = cfg[2 * m]
        assert cfg[2 * m + 1] == instances - 1
        assert cm.latency_s(m, s.batch_sizes[b]) + s.max_queue_delay_s[m] <= s.slo_s[m]
        if b + 1 < len(s.batch_sizes):  # the next size breaks the rule
            assert cm.latency_s(m, s.batch_sizes[b + 1]) + s.max_queue_delay_s[m] > s.slo_s[m]
    assert max(cfg[0::2]) > 0  # it batches
    with pytest.raises(ConfigError, match=r"instances must be an integer in 1\.\.4"):
        triton_config(s, cm, instances=5)


def test_triton_dynamic_steps_batches_down_to_fit_memory() -> None:
    env = _env(slo_ms=5000.0, max_instances=4)  # loose SLOs: every model would take batch 32
    pol = TritonDynamicPolicy(instances=4)
    ctx = bind_policy(pol, env)
    s = ctx.setup
    assert s.config_memory_gb(pol.config) <= s.usable_memory_gb < s.config_memory_gb([5, 3] * len(s.models))
    assert not any(bool(i["refused"]) for i in run_episode(pol, env, seed=0))


def test_triton_dynamic_beats_batch1_on_throughput_at_high_load() -> None:
    env = _high_load_env(2.0, episode_intervals=30)
    thr = {}
    for pol in (BatchOnePolicy(), TritonDynamicPolicy()):
        thr[pol.name] = np.mean([i["throughput_rps"] for s in (0, 1) for i in run_episode(pol, env, seed=s)])
    # batch 1 cannot keep up (about 93 req/s of about 105 arriving); dynamic batching serves them all
    assert thr["triton_dynamic"] > 1.05 * thr["batch1"]


def test_best_static_sweeps_only_calibration_seeds_and_reports_its_board_time(monkeypatch) -> None:
    seeds: list[int | None] = []
    reset = BatchConcurrencyEnv.reset

    def spy(self, *, seed=None, options=None):
        seeds.append(seed)
        return reset(self, seed=seed, options=options)

    monkeypatch.setattr(BatchConcurrencyEnv, "reset", spy)
    BestStaticBatchingPolicy._CACHE.clear()
    pol = BestStaticBatchingPolicy(intervals=10, episodes=2, passes=2)
    env = _env(episode_intervals=30)
    ctx = bind_policy(pol, env)
    swept = list(seeds)
    assert swept and all(s is not None and s >= CALIBRATION_SEED for s in swept)
    assert set(swept) == {CALIBRATION_SEED, CALIBRATION_SEED + 1}
    st = pol.stats()
    n = st["sweep_configs"]
    # every configuration tried ran 2 episodes of 10 one-second intervals on the board
    assert st["sweep_board_s"] == pytest.approx(n * 2 * 10 * ctx.setup.interval_s)
    assert 24 < n <= 1 + 2 * 4 * 24 and len(seeds) == n * 2
    assert st["sweep_utility"] >= st["sweep_start_utility"]
    assert ctx.setup.config_memory_gb(pol.config) <= ctx.setup.usable_memory_gb
    # the evaluation episodes are the harness's own seeds
    seeds.clear()
    run_episode(pol, env, seed=3)
    assert seeds == [3]


def test_best_static_beats_triton_dynamic_on_held_out_seeds() -> None:
    BestStaticBatchingPolicy._CACHE.clear()
    env = _env(episode_intervals=40)
    util = {}
    for pol in (TritonDynamicPolicy(), BestStaticBatchingPolicy(intervals=20, episodes=2)):
        util[pol.name] = np.mean([i["reward"] for s in (0, 1, 2) for i in run_episode(pol, env, seed=s)])
    assert util["best_static_batching"] > util["triton_dynamic"] + 0.02


def test_best_static_sweeps_the_bound_scenario() -> None:
    env = _env(power_mode="10W", arrivals="poisson-constant")
    setup = env.unwrapped.setup
    pol = BestStaticBatchingPolicy(intervals=3, episodes=1, passes=1, env_kwargs={"memory_penalty": 2.0})
    kw = pol.sweep_env_kwargs(setup)
    # the scenario's own arguments (power mode and arrivals included), the sweep's length, env_kwargs over them
    assert kw == {**setup.scenario_kwargs(), "episode_intervals": 3, "memory_penalty": 2.0}
    assert kw["power_mode"] == "10W" and kw["arrivals"] == "poisson-constant"
    again = gym.make(BATCH_ENV_ID, **kw).unwrapped.setup
    assert again.max_levels == setup.max_levels and again.slo_s == setup.slo_s
    assert again.rate_ref_rps == setup.rate_ref_rps and again.memory_gb == setup.memory_gb
    with pytest.raises(ConfigError, match="intervals must be an integer >= 2"):
        BestStaticBatchingPolicy(intervals=1)


def test_scale_with_load_follows_its_rule() -> None:
    env = _env()
    pol = LoadScalingPolicy()
    ctx = bind_policy(pol, env)
    s, cm = ctx.setup, ctx.cost_model
    names = list(ctx.obs_names)
    cap = triton_config(s, cm)

    def obs_at(load: float, queue: float = 0.0) -> np.ndarray:
        obs = np.zeros(len(names), dtype=np.float32)
        for m in s.models:
            obs[names.index(f"{m}_arrival_rate")] = load
            obs[names.index(f"{m}_queue")] = queue
        return obs

    low, high = pol.config_for(obs_at(1.0)), pol.config_for(obs_at(4.0, 2.0))
    for m in range(len(s.models)):
        b = low[2 * m]
        assert s.batch_sizes[b] <= 4 and b <= cap[2 * m]
        per = cm.latency_s(m, s.batch_sizes[b]) / s.batch_sizes[b]
        assert low[2 * m + 1] + 1 == min(max(math.ceil(s.rate_ref_rps[m] * per), 1), s.max_instances)
    assert sum(high[1::2]) > sum(low[1::2])
    assert s.config_memory_gb(pol.config_for(obs_at(10.0, 10.0))) <= s.usable_memory_gb
    # at a load the board cannot serve, the backlog scales the instances up during the episode
    infos = run_episode(LoadScalingPolicy(), _high_load_env(3.0), seed=0)
    assert max(sum(int(i[f"instances/{m}"]) for m in s.models) for i in infos) > len(s.models)


def test_the_baselines_refuse_other_envs() -> None:
    env = gym.make("e4gym/EarlyExitDVFS-v1", device=DEVICE)
    for pol in (BatchOnePolicy(), TritonDynamicPolicy(), LoadScalingPolicy(), BestStaticBatchingPolicy()):
        with pytest.raises(ConfigError, match="runs on e4gym/BatchConcurrency-v0"):
            pol.bind(PolicyContext.for_env(env))
    with pytest.raises(ConfigError, match="not bound"):
        BatchOnePolicy().predict(np.zeros(3))
