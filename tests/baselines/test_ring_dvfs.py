"""Ring-DVFS (Yeganeh-Khaksar et al. 2020), tabular Q-learning extended to CPU+GPU, on the emulated xavier-nx."""

from __future__ import annotations

import itertools
import math
from functools import cache
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import e4gym  # noqa: F401  (registers the envs)
from baselines import performance
from baselines.ring_dvfs import (
    FAULT_EXPONENT_D,
    LAMBDA0_PER_S,
    RingDVFSAgent,
    RingDVFSConfig,
    RingDVFSPolicy,
    fault_rate,
    frame_reliability,
    level_map,
    reliability,
)
from e4gym.errors import ConfigError
from e4gym.hardware.spec import load_device
from e4gym.policy import Policy, bind_policy, run_episode

#: The learning scenario: 20 fps gives the full network (29.7 ms at the top clocks) 50 ms, room to slow down.
FPS = 20
FRAMES = 250
TRAIN_STEPS = 6000


def _env(frames: int = FRAMES, **kwargs) -> gym.Env:
    kwargs.setdefault("fps", FPS)
    return gym.make("e4gym/EarlyExitDVFS-v1", device="xavier-nx", episode_frames=frames, **kwargs)


def _energy(infos: list[dict]) -> float:
    return float(np.mean([i["energy_j"] for i in infos]))


def _misses(infos: list[dict]) -> float:
    return float(np.mean([i["deadline_missed"] for i in infos]))


@cache
def _trained() -> tuple[RingDVFSAgent, list[dict[str, float]]]:
    """An agent trained on the learning scenario, and the stats of its training episodes."""
    env = _env()
    episodes: list[dict[str, float]] = []

    def cb(step: int, stats: dict[str, float]) -> None:
        if "episode_reward" in stats:
            episodes.append(stats)

    agent = RingDVFSAgent(seed=0).learn(env, TRAIN_STEPS, callback=cb)
    env.close()
    return agent, episodes


# ---------------------------------------------------------------------------------------------- reliability


def test_fault_rate_matches_the_formula() -> None:
    f_min = 0.06
    assert fault_rate(1.0, f_min) == pytest.approx(LAMBDA0_PER_S, rel=1e-12)
    assert fault_rate(f_min, f_min) == pytest.approx(LAMBDA0_PER_S * 10**FAULT_EXPONENT_D, rel=1e-12)
    mid = (1 + f_min) / 2  # halfway: 10^(d/2)
    assert fault_rate(mid, f_min) == pytest.approx(LAMBDA0_PER_S * 10 ** (FAULT_EXPONENT_D / 2), rel=1e-12)
    assert fault_rate(0.5, 0.2, lam0=2e-5, d=2.0) == pytest.approx(2e-5 * 10 ** (2.0 * 0.5 / 0.8), rel=1e-12)
    # Outside [f_min, 1] the frequency is clipped; arrays work element-wise and are monotone.
    assert fault_rate(1.5, f_min) == fault_rate(1.0, f_min) and fault_rate(0.0, f_min) == fault_rate(f_min, f_min)
    f = np.linspace(f_min, 1.0, 9)
    lam = fault_rate(f, f_min)
    assert lam.shape == (9,) and np.all(np.diff(lam) < 0)
    for bad in (0.0, 1.0, -0.1, "0.1"):
        with pytest.raises(ConfigError, match="f_min_norm"):
            fault_rate(0.5, bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="lam0"):
        fault_rate(0.5, 0.1, lam0=0.0)


def test_reliability_falls_with_lower_frequency_and_longer_jobs() -> None:
    f_min = 0.1
    assert reliability(1.0, 0.0, f_min) == 1.0
    assert reliability(1.0, 1.0, f_min) == pytest.approx(math.exp(-LAMBDA0_PER_S), rel=1e-15)
    freqs = np.linspace(f_min, 1.0, 7)
    r_f = reliability(freqs, 0.5, f_min)
    assert np.all(np.diff(r_f) > 0)  # higher frequency, more reliable
    r_t = reliability(0.4, np.array([0.01, 0.1, 1.0, 10.0]), f_min)
    assert np.all(np.diff(r_t) < 0) and np.all((r_t > 0) & (r_t < 1))
    with pytest.raises(ConfigError, match="t_s"):
        reliability(0.5, -1.0, f_min)
    # CPU+GPU: the frame survives only if both domains do.
    r = frame_reliability(0.3, 0.7, 0.2, 0.06, 0.1)
    assert r == pytest.approx(reliability(0.3, 0.2, 0.06) * reliability(0.7, 0.2, 0.1), rel=1e-15)
    assert r < min(reliability(0.3, 0.2, 0.06), reliability(0.7, 0.2, 0.1))


# ---------------------------------------------------------------------------------------------- model pieces


def test_level_map_is_proportional_and_spans_both_ranges() -> None:
    m = level_map(8, 24, 14)
    assert m.shape == (8, 2) and tuple(m[0]) == (0, 0) and tuple(m[-1]) == (24, 14)
    assert np.all(np.diff(m, axis=0) >= 0) and np.all(np.diff(m[:, 0]) > 0)
    assert tuple(m[4]) == (14, 8)  # 4/7·24 = 13.7 → 14, 4/7·14 = 8
    assert tuple(level_map(3, 3, 1)[1]) == (2, 1)  # halves round up: 1.5 → 2, 0.5 → 1


def _bound_agent(cfg: RingDVFSConfig | None = None, **env_kwargs) -> tuple[RingDVFSAgent, gym.Env]:
    env = _env(**env_kwargs)
    agent = RingDVFSAgent(cfg, seed=0)
    agent.bind(env.unwrapped.setup, env.unwrapped.obs_names)
    return agent, env


def test_state_bins_cover_the_edges() -> None:
    cfg = RingDVFSConfig()
    agent, env = _bound_agent(cfg)
    names = env.unwrapped.obs_names
    period_ms = env.unwrapped.setup.period_s * 1e3
    n_l, n_s, n_t = len(cfg.load_edges) + 1, len(cfg.slack_edges) + 1, len(cfg.temp_edges) + 1

    def state(load: float, slack: float, temp: float, info: dict | None = None) -> int:
        obs = np.zeros(len(names), np.float32)
        obs[names.index("latency")] = 1.0 - slack
        obs[names.index("temperature")] = temp
        return agent.state_index(obs, {"run_ms": load * period_ms} if info is None else info)

    def split(s: int) -> tuple[int, int, int]:
        return s // (n_s * n_t), (s // n_t) % n_s, s % n_t

    # Before the first frame (empty info, latency 0): no load, all slack.
    obs0, info0 = env.reset(seed=0)
    assert split(agent.state_index(obs0, info0)) == (0, n_s - 1, 0)
    assert agent.state_index(obs0, {}) == agent.state_index(obs0, None) == agent.state_index(obs0, info0)
    # Extremes of the observation's ranges land in the outer bins.
    assert split(state(0.0, 1.0, -1.0)) == (0, n_s - 1, 0)
    assert split(state(50.0, -9.0, 2.0)) == (n_l - 1, 0, n_t - 1)
    # A value on an edge goes to the upper bin; just below it, to the lower one.
    for i, e in enumerate(cfg.load_edges):
        assert split(state(e, 0.5, 0.0))[0] == i + 1 and split(state(e - 1e-6, 0.5, 0.0))[0] == i
    for i, e in enumerate(cfg.slack_edges):
        assert split(state(0.1, e, 0.0))[1] == i + 1 and split(state(0.1, e - 1e-3, 0.0))[1] == i
    for i, e in enumerate(cfg.temp_edges):
        assert split(state(0.1, 0.5, e))[2] == i + 1 and split(state(0.1, 0.5, e - 1e-3))[2] == i
    # Every (load, slack, temperature) bin combination is its own state, all in range.
    reps = [[-5.0, *((a + b) / 2 for a, b in itertools.pairwise(edges)), edges[-1] + 5.0]
            for edges in (cfg.load_edges, cfg.slack_edges, cfg.temp_edges)]
    reps[0][0] = 0.0  # a load is never negative
    seen = {state(lo, sl, te) for lo in reps[0] for sl in reps[1] for te in reps[2]}
    assert seen == set(range(cfg.n_states)) and cfg.n_states == n_l * n_s * n_t
    env.close()


def test_reward_terms() -> None:
    agent, env = _bound_agent()
    s = env.unwrapped.setup
    # The reward reads the power monitor's energy (what a learner on the board sees), not the true energy.
    top = {"measured_energy_j": s.energy_ref_j, "energy_j": 0.0, "deadline_missed": False,
           "cpu_hz": s.spec.cpu_freqs_hz[s.max_levels[0]],
           "gpu_hz": s.spec.gpu_freqs_hz[s.max_levels[1]], "run_ms": 30.0, "latency_ms": 30.0}
    r, parts = agent.reward(top)
    assert parts["power_saving"] == pytest.approx(0.0) and parts["missed"] == 0 and parts["backlog_growth"] == 0
    assert parts["reliability"] == pytest.approx(math.exp(-2 * LAMBDA0_PER_S * 0.03), rel=1e-12)
    assert r == pytest.approx(-parts["reliability_loss"]) and 0 < parts["reliability_loss"] < 1e-3
    low = {**top, "measured_energy_j": s.energy_ref_j / 2, "cpu_hz": s.spec.cpu_freqs_hz[0],
           "gpu_hz": s.spec.gpu_freqs_hz[0], "run_ms": s.period_s * 1e3}
    _, p_low = agent.reward(low)
    assert p_low["power_saving"] == pytest.approx(0.5)
    assert p_low["reliability_loss"] == pytest.approx(1.0, rel=1e-9)  # one period at the lowest clocks: U_ref
    late = {**top, "deadline_missed": True, "latency_ms": s.period_s * 1e3 + 2 * s.deadline_s * 1e3}
    r_late, p_late = agent.reward(late)
    assert p_late["backlog_growth"] == pytest.approx(2.0)
    assert r_late == pytest.approx(r - 2.0 - 2.0)  # w_D = 2 for the miss, w_Q = 1 per deadline of backlog
    _, p_drain = agent.reward(top, prev_info=late)
    assert p_drain["backlog_growth"] == pytest.approx(-2.0)  # draining the queue is credited
    env.close()


def test_config_validation() -> None:
    with pytest.raises(ConfigError, match="alpha"):
        RingDVFSConfig(alpha=0.0)
    with pytest.raises(ConfigError, match="gamma"):
        RingDVFSConfig(gamma=1.0)
    with pytest.raises(ConfigError, match="n_levels"):
        RingDVFSConfig(n_levels=1)
    with pytest.raises(ConfigError, match="slack_edges"):
        RingDVFSConfig(slack_edges=(0.5, 0.1))
    with pytest.raises(ConfigError, match="unknown RingDVFSConfig"):
        RingDVFSConfig.from_dict({"alpha": 0.1, "beta": 2})
    cfg = RingDVFSConfig(n_levels=5, temp_edges=[0.5])  # type: ignore[arg-type]
    assert RingDVFSConfig.from_dict(cfg.to_dict()) == cfg and cfg.temp_edges == (0.5,)
    with pytest.raises(ConfigError, match="total_steps"):
        RingDVFSAgent().learn(_env(), -1)


# ---------------------------------------------------------------------------------------------- learning


def test_learning_saves_energy_against_performance_and_keeps_deadlines() -> None:
    agent, _ = _trained()
    ring, perf = [], []
    for seed in (101, 202):
        env = _env()
        ring += run_episode(agent.policy(), env, seed=seed)
        env.close()
        pol = performance()
        penv = _env(**pol.env_kwargs)
        perf += run_episode(pol, penv, seed=seed)
        penv.close()
    e_ring, e_perf = _energy(ring), _energy(perf)
    assert _misses(ring) <= 0.02, f"Ring-DVFS missed {_misses(ring):.1%} of the deadlines"
    assert e_ring < 0.92 * e_perf, f"Ring-DVFS {e_ring:.4f} J/frame vs performance {e_perf:.4f} J/frame"
    assert _misses(perf) == 0
    # It really scales: most frames run below the top clocks, and above the lowest.
    spec = load_device("xavier-nx")
    cpu = np.array([i["cpu_hz"] for i in ring])
    gpu = np.array([i["gpu_hz"] for i in ring])
    assert np.mean((cpu < spec.cpu_freqs_hz[-1]) & (gpu < spec.gpu_freqs_hz[-1])) > 0.9
    assert np.all(cpu > spec.cpu_freqs_hz[0]) and np.all(gpu > spec.gpu_freqs_hz[0])


def test_holds_the_top_level_where_no_lower_level_keeps_the_deadline() -> None:
    """At 30 fps the full network has 29.7 ms of a 33.3 ms deadline at the top clocks and no lower level of the
    proportional ladder keeps it reliably: the greedy policy must not gamble on an untried level."""
    env = _env(fps=30)
    agent = RingDVFSAgent(seed=0).learn(env, TRAIN_STEPS)
    infos = run_episode(agent.policy(), _env(1000, fps=30), seed=7)
    assert _misses(infos) <= 0.02, f"missed {_misses(infos):.1%}"


def test_episode_reward_rises_over_training() -> None:
    agent, episodes = _trained()
    assert len(episodes) == TRAIN_STEPS // FRAMES and agent.num_episodes == len(episodes)
    rewards = np.array([e["episode_reward"] for e in episodes])
    first, last = rewards[:3].mean(), rewards[-3:].mean()
    assert last > first + 300, f"episode reward went from {first:.1f} to {last:.1f}"
    misses = np.array([e["deadline_miss_rate"] for e in episodes])
    assert misses[-3:].mean() < misses[:3].mean() - 0.5
    assert all(0 < e["mean_reliability"] <= 1 and e["energy_per_frame_j"] > 0 for e in episodes)


class _Recorder(gym.Wrapper):
    """Keeps the observations and infos the agent saw."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.seen: list[tuple[np.ndarray, dict]] = []

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self.seen.append((obs, info))
        return obs, info

    def step(self, action):
        obs, r, term, trunc, info = self.env.step(action)
        self.seen.append((obs, info))
        return obs, r, term, trunc, info


def test_one_q_learning_update() -> None:
    cfg = RingDVFSConfig(epsilon_start=0.0, epsilon_end=0.0, alpha=0.5, gamma=0.9)
    env = _Recorder(_env())
    agent = RingDVFSAgent(cfg, seed=0)
    agent.bind(env.unwrapped.setup, env.unwrapped.obs_names)
    agent.q[:] = np.random.default_rng(1).normal(size=agent.q.shape)
    q0 = agent.q.copy()
    rewards: list[float] = []
    agent.learn(env, 2, callback=lambda step, stats: rewards.append(stats["reward"]))
    (o0, i0), (o1, i1), (o2, i2) = env.seen
    s0, s1, s2 = agent.state_index(o0, i0), agent.state_index(o1, i1), agent.state_index(o2, i2)
    assert rewards[0] == pytest.approx(agent.reward(i1)[0]) and rewards[1] == pytest.approx(agent.reward(i2, i1)[0])
    top = cfg.n_levels - 1
    expect, visits = q0.copy(), np.zeros_like(agent.visits)

    def best(s: int) -> tuple[int, float]:  # greedy over the tried levels and the top level
        row = np.where(visits[s] > 0, expect[s], -np.inf)
        row[top] = expect[s, top]
        a = top - int(np.argmax(row[::-1]))
        return a, float(row[a])

    for s, r, nxt in ((s0, rewards[0], s1), (s1, rewards[1], s2)):
        a = best(s)[0]  # ε = 0: greedy
        expect[s, a] += 0.5 * (r + 0.9 * best(nxt)[1] - expect[s, a])
        visits[s, a] += 1
    assert np.allclose(agent.q, expect, rtol=0, atol=1e-12)
    assert np.array_equal(agent.visits, visits) and visits[s0, top] == 1  # an unvisited state runs at the top
    # Untried levels never win greedily, however high their Q; tried ones do.
    agent.q[0], agent.visits[0] = np.arange(cfg.n_levels, 0, -1.0), 0
    assert agent.greedy_level(0) == top
    agent.visits[0, 2] = 1
    assert agent.greedy_level(0) == 2 and agent.state_value(0) == agent.q[0, 2]
    agent.q[0, top] = agent.q[0, 2]
    assert agent.greedy_level(0) == top  # ties go to the higher level


def test_callback_false_stops_training() -> None:
    steps: list[int] = []
    agent = RingDVFSAgent(seed=3)
    agent.learn(_env(), 500, callback=lambda step, stats: steps.append(step) or step < 7)
    assert agent.num_timesteps == 7 and steps == list(range(1, 8))


# ---------------------------------------------------------------------------------------------- persistence


def _run(splits: list[int], tmp_path: Path, drop_episode: bool = False) -> tuple[RingDVFSAgent, list[float]]:
    """Train 600 frames (100-frame episodes) in the given chunks, saving and loading between them."""
    env = _env(frames=100)
    rewards: list[float] = []
    agent = RingDVFSAgent(RingDVFSConfig(epsilon_decay_steps=400), seed=11)
    for i, n in enumerate(splits):
        if i:
            path = agent.save(tmp_path / f"agent{i}.npz")
            agent = RingDVFSAgent.load(path)
            if drop_episode:
                agent._episode = None
        agent.learn(env, n, seed=5 if i == 0 else None, callback=lambda s, st: rewards.append(st["reward"]))
    env.close()
    return agent, rewards


def test_resume_after_save_and_load_is_exact(tmp_path: Path) -> None:
    straight, r_straight = _run([600], tmp_path)
    assert straight.num_timesteps == 600 and straight.num_episodes == 6
    for splits in ([300, 300], [250, 350], [1, 299, 137, 163]):  # at an episode boundary and mid-episode
        resumed, r_resumed = _run(splits, tmp_path)
        assert np.array_equal(resumed.q, straight.q), splits
        assert np.array_equal(resumed.visits, straight.visits)
        assert r_resumed == r_straight
        assert resumed.num_timesteps == 600 and resumed.num_episodes == 6
        assert resumed.rng.bit_generator.state == straight.rng.bit_generator.state
    # The test can tell: without replaying the unfinished episode the run diverges, and 300 frames are not 600.
    diverged, _ = _run([250, 350], tmp_path, drop_episode=True)
    assert not np.array_equal(diverged.q, straight.q)
    half, _ = _run([300], tmp_path)
    assert not np.array_equal(half.q, straight.q)


def test_load_rejects_bad_files(tmp_path: Path) -> None:
    missing = tmp_path / "missing.npz"
    with pytest.raises(ConfigError, match=r"missing\.npz"):
        RingDVFSAgent.load(missing)
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip archive at all")
    with pytest.raises(ConfigError, match=r"junk\.npz"):
        RingDVFSAgent.load(junk)
    other = tmp_path / "other.npz"
    np.savez(other, q=np.zeros(3))
    with pytest.raises(ConfigError, match=r"other\.npz"):
        RingDVFSAgent.load(other)
    # A real file with a truncated Q-table.
    agent = RingDVFSAgent(seed=0).learn(_env(), 50)
    good = agent.save(tmp_path / "good.npz")
    with np.load(good) as d:
        arrays = {k: d[k] for k in d.files}
    bad = tmp_path / "bad_shape.npz"
    np.savez(bad, **{**arrays, "q": arrays["q"][:-1]})
    with pytest.raises(ConfigError, match=r"bad_shape\.npz.*shape"):
        RingDVFSAgent.load(bad)
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(good.read_bytes()[:200])
    with pytest.raises(ConfigError, match=r"truncated\.npz"):
        RingDVFSAgent.load(truncated)
    loaded = RingDVFSAgent.load(good)
    assert np.array_equal(loaded.q, agent.q) and loaded.identity == agent.identity


# ---------------------------------------------------------------------------------------------- policy


def test_policy_protocol_and_action(tmp_path: Path) -> None:
    agent, _ = _trained()
    path = agent.save(tmp_path / "ring.npz")
    pol = RingDVFSPolicy(path=path)
    assert isinstance(pol, Policy) and pol.name == "ring-dvfs" and pol.clairvoyant is False
    assert pol.env_kwargs == {}
    env = _env()
    with pytest.raises(ConfigError, match="not bound"):
        pol.predict(np.zeros(env.observation_space.shape, np.float32))
    ctx = bind_policy(pol, env)
    obs, _ = env.reset(seed=0)
    action, state = pol.predict(obs)
    assert state is None and env.action_space.contains(action) and action[0] == 4
    # The loaded policy acts like the in-memory agent's.
    a_infos = run_episode(agent.policy(), env, seed=9)
    b_infos = run_episode(pol, env, seed=9)
    assert [(i["cpu_hz"], i["gpu_hz"]) for i in a_infos] == [(i["cpu_hz"], i["gpu_hz"]) for i in b_infos]
    assert ctx.setup is env.unwrapped.setup
    # With control_memory the action carries the EMC level (held at the top allowed level).
    menv = _env(control_memory=True)
    bind_policy(pol, menv)
    mobs, _ = menv.reset(seed=0)
    maction, _ = pol.predict(mobs)
    assert len(maction) == 4 and maction[3] == menv.unwrapped.setup.max_levels[2]
    assert menv.action_space.contains(maction)


def test_policy_refuses_a_mismatched_env() -> None:
    agent, _ = _trained()
    pol = agent.policy()
    nano = gym.make("e4gym/EarlyExitDVFS-v1", device="jetson-nano", episode_frames=10)
    with pytest.raises(ConfigError, match=r"xavier-nx.*jetson-nano"):
        bind_policy(pol, nano)
    with pytest.raises(ConfigError, match="xavier-nx"):
        agent.learn(nano, 10)
    with pytest.raises(ConfigError, match="governors"):
        bind_policy(pol, _env(governors="default"))
    with pytest.raises(ConfigError, match="exit"):
        RingDVFSPolicy(agent=agent, exit=2)
    with pytest.raises(ConfigError, match="either path= or agent="):
        RingDVFSPolicy(path="x.npz", agent=agent)


def test_policy_trains_at_bind_without_an_agent() -> None:
    pol = RingDVFSPolicy(exit=2, train_steps=3000, train_episode_frames=100, seed=1)
    env = _env(fps=30)
    infos = run_episode(pol, env, seed=4)
    agent = pol.agent
    assert agent is not None and agent.num_timesteps == 3000 and agent.exit == 2
    assert all(i["exit"] == 2 for i in infos)
    run_episode(pol, env, seed=5)
    assert pol.agent is agent  # same scenario: no retraining
    run_episode(pol, _env(fps=25), seed=5)
    assert pol.agent is not agent and pol.agent.num_timesteps == 3000
