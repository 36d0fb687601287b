"""The env core: one config, one streaming clock, one observation builder, replaceable rewards, NumPy info."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import e4gym  # noqa: F401  (registers the envs)
from e4gym.envs import EarlyExitDVFSBlockEnv, EarlyExitDVFSEnv
from e4gym.envs.core import (
    INFO_KEYS,
    EnvConfig,
    FrameOutcome,
    FrameReward,
    ObsBuilder,
    ObsField,
    RewardWeights,
)
from e4gym.errors import ConfigError, UnknownNameError
from e4gym.hardware import EmulatedBackend
from e4gym.hardware.stream import StreamClock, stream

ENV_ID = "e4gym/EarlyExitDVFS-v1"


def test_stream_clock_queues_idles_and_matches_its_vector_form() -> None:
    period, deadline = 0.1, 0.1
    runs = [0.05, 0.25, 0.05, 0.02, 0.0]  # early, overrun (the next frame queues), catch-up, early, zero-length
    one = StreamClock(period, deadline)
    many = StreamClock(period, deadline, n=3)
    lat, idle = [], []
    for r in runs:
        done = one.free_s + r
        idle.append(one.idle_s(done))
        lat.append(one.finish(done))
        d = many.free_s + np.full(3, r)
        assert np.allclose(many.idle_s(d), idle[-1])
        assert np.allclose(many.finish(d), lat[-1])
        assert np.allclose(many.fps, one.fps) and np.allclose(many.slack, one.slack)
    assert idle[0] == pytest.approx(0.05) and lat[0] == pytest.approx(0.05)
    assert idle[1] == 0.0 and lat[1] == pytest.approx(0.25)  # frame 1 ends at 0.35, after frame 2's arrival
    assert lat[2] == pytest.approx(0.35 + 0.05 - 0.2)  # frame 2 queued 0.15 s
    assert one.k == 5 and 0.0 < one.fps <= 4.0
    many.reset(np.array([1]))
    assert many.k.tolist() == [5, 0, 5] and many.free_s[1] == 0.0


def test_stream_clock_rejects_bad_times() -> None:
    with pytest.raises(ConfigError, match="deadline_s"):
        StreamClock(0.1, 0.0)
    with pytest.raises(ConfigError, match="period"):
        StreamClock(-1.0, 0.1)


def test_sweeps_and_the_frame_env_keep_time_alike() -> None:
    # stream() (sweeps, `e4gym run`) and the frame env share the streaming model: same board seed, same
    # clocks, same frames -> same latency, energy and temperature (read after the idle wait in both).
    env = EarlyExitDVFSEnv(device="xavier-nx", episode_frames=20)
    env.reset(seed=3)
    seed_board = EmulatedBackend("xavier-nx", seed=0)
    env.backend.reset(7)
    seed_board.reset(7)
    top = env.setup.max_levels
    last = env.profile.n_exits - 1
    frames = list(stream(seed_board, env.profile.frame_work(last), 10, fps=env.setup.fps))
    for f in frames:
        _, _, _, _, info = env.step(np.array([last, top[0], top[1]]))
        assert info["latency_ms"] == pytest.approx(f.latency_s * 1e3, rel=1e-12)
        assert info["energy_j"] == pytest.approx(f.energy_j, rel=1e-12)
        assert info["temp_c"] == pytest.approx(f.temp_c, rel=1e-12)


def test_obs_builder_orders_clips_and_batches() -> None:
    b = ObsBuilder([ObsField("b", 0.0, 1.0, ""), ObsField("a", -1.0, 2.0, "")])

    class S:
        pass

    s = S()
    s.a, s.b = 5.0, 0.5
    assert b(s).tolist() == [0.5, 2.0] and b(s).dtype == np.float32
    s.a, s.b = np.array([-3.0, 0.0]), np.array([0.25, 9.0])
    assert b(s).tolist() == [[0.25, -1.0], [1.0, 0.0]]
    assert b.many(s).tolist() == b(s).tolist() and b.space().contains(b(s)[0])
    s.a, s.b = 5.0, 0.5  # numbers where many() wants arrays
    with pytest.raises(ValueError, match="arrays of N values per field"):
        b.many(s)
    with pytest.raises(ConfigError, match="unique"):
        ObsBuilder([ObsField("a", 0, 1, ""), ObsField("a", 0, 1, "")])


def test_frame_env_clips_its_observation_into_the_box() -> None:
    # A tiny deadline makes the latency field far above its bound; the observation stays in the Box.
    env = gym.make(ENV_ID, deadline_ms=0.5, episode_frames=5)
    env.reset(seed=0)
    obs, *_ = env.step(np.array([4, 0, 0]))
    names = env.unwrapped.obs_names
    assert obs[names.index("latency")] == 10.0 and env.observation_space.contains(obs)


def test_default_reward_on_outcomes_and_arrays() -> None:
    r = FrameReward(RewardWeights(energy=2.0), energy_ref_j=0.5)
    total, terms = r(FrameOutcome(0.25, 0.5, True, False, 0.04, 1, True))
    assert terms == {"reward_energy": -1.0, "reward_deadline": -1.0, "reward_accuracy": -1.0} and total == -3.0
    measured = FrameReward(RewardWeights(), 0.5, energy="measured")
    assert measured(FrameOutcome(0.25, 0.5, False, True, 0.0, 0, True))[0] == -1.0
    arr, _ = r(FrameOutcome(np.array([0.25, 0.0]), np.zeros(2), np.array([False, True]), np.array([True, True]),
                            np.zeros(2), np.zeros(2), np.ones(2, bool)))
    assert arr.tolist() == [-1.0, -1.0]
    with pytest.raises(ConfigError, match="reward_energy"):
        FrameReward(RewardWeights(), 1.0, energy="guessed")


def _latency_reward(o: FrameOutcome) -> tuple[float, dict[str, float]]:
    return -o.latency_s, {"reward_latency": -o.latency_s}


@pytest.mark.parametrize("env_id", [ENV_ID, "e4gym/EarlyExitDVFSBlock-v1"])
def test_a_user_reward_replaces_the_default(env_id: str) -> None:
    env = gym.make(env_id, reward=_latency_reward, episode_frames=3)
    env.reset(seed=0)
    _, reward, _, _, info = env.step(env.action_space.sample())
    assert reward == pytest.approx(-info["latency_ms"] / 1e3) and info["reward_latency"] == reward
    assert "reward_energy" not in info and isinstance(info["reward_latency"], np.float64)


def test_a_user_reward_in_the_native_vector_env() -> None:
    venv = gym.make_vec(ENV_ID, num_envs=2, reward=_latency_reward, episode_frames=3)
    venv.reset(seed=0)
    _, reward, _, _, info = venv.step(np.array([[4, 3, 3], [0, 0, 0]]))
    assert np.allclose(reward, -info["latency_ms"] / 1e3) and info["_reward_latency"].all()


def test_one_config_for_every_env() -> None:
    cfg = EnvConfig(device="jetson-nano", episode_frames=7)
    for env in (EarlyExitDVFSEnv(cfg), EarlyExitDVFSBlockEnv(cfg)):
        assert env.setup.spec.name == "jetson-nano" and env.setup.episode_frames == 7 and env.config is cfg
    venv = gym.make_vec(ENV_ID, num_envs=2, device="jetson-nano", episode_frames=7)
    assert venv.unwrapped.setup.episode_frames == 7
    with pytest.raises(UnknownNameError, match="episode_frames"):
        EarlyExitDVFSEnv(episode_frame=7)
    with pytest.raises(ConfigError, match="not both"):
        EarlyExitDVFSEnv(cfg, device="tx2")
    # The vector env refuses what the batched emulator cannot do, with the fix.
    with pytest.raises(ConfigError, match="vectorization_mode='sync'"):
        gym.make_vec(ENV_ID, num_envs=2, governors="default")


@pytest.mark.parametrize("env_id", [ENV_ID, "e4gym/EarlyExitDVFSBlock-v1"])
def test_info_values_are_numpy_scalars(env_id: str) -> None:
    env = gym.make(env_id, episode_frames=3)
    _, info = env.reset(seed=0)
    infos = [info] + [env.step(env.action_space.sample())[-1] for _ in range(3)]
    for info in infos:
        assert set(INFO_KEYS) <= set(info)
        bad = {k: type(v).__name__ for k, v in info.items() if not isinstance(v, np.generic)}
        assert not bad, bad


# ---------------------------------------------------------------------------------------------- constraints


def _costs_and_outcomes(env_id: str, seed: int, exit_choice: int | None, frames: int) -> dict[str, list]:
    """Per finished frame: the two costs, the miss flag and the correctness, over ``frames`` frames."""
    env = gym.make(env_id, episode_frames=frames)
    env.reset(seed=seed)
    env.action_space.seed(seed)
    out: dict[str, list] = {"cost_miss": [], "cost_accuracy": [], "missed": [], "correct": []}
    done = False
    while not done:
        a = env.action_space.sample()
        if exit_choice is not None:
            a[0] = exit_choice
        _, _, term, trunc, info = env.step(a)
        done = term or trunc
        if not info.get("frame_done", True):
            assert info["cost_miss"] == 0.0 and info["cost_accuracy"] == 0.0  # a running frame costs nothing
            continue
        out["cost_miss"].append(info["cost_miss"])
        out["cost_accuracy"].append(info["cost_accuracy"])
        out["missed"].append(bool(info["deadline_missed"]))
        out["correct"].append(bool(info["correct"]))
    env.close()
    return out


@pytest.mark.parametrize("env_id", [ENV_ID, "e4gym/EarlyExitDVFSBlock-v1", "e4gym/EdgeCloudDVFS-v0"])
def test_constraint_costs_are_the_miss_rate_and_the_accuracy_lost_to_the_last_exit(env_id: str) -> None:
    frames, seed = 1000, 4
    policy = _costs_and_outcomes(env_id, seed, None, frames)  # random exits and clocks
    assert np.mean(policy["cost_miss"]) == pytest.approx(np.mean(policy["missed"]))
    if env_id == ENV_ID:  # the last exit on the same frames: the reference the accuracy cost is measured from
        last = _costs_and_outcomes(env_id, seed, 4, frames)
        assert np.mean(policy["cost_accuracy"]) == pytest.approx(np.mean(last["correct"]) - np.mean(policy["correct"]))
        first = _costs_and_outcomes(env_id, seed, 0, frames)  # the first exit loses accuracy: the cost sees it
        assert np.mean(first["cost_accuracy"]) == pytest.approx(np.mean(last["correct"]) - np.mean(first["correct"]))
        assert np.mean(first["cost_accuracy"]) > 0.05
        assert np.all(np.asarray(last["cost_accuracy"]) == 0.0)
    assert set(np.unique(policy["cost_accuracy"])) <= {-1.0, 0.0, 1.0}


def test_constraint_costs_in_the_native_vector_env_match_the_single_env() -> None:
    n, steps = 3, 60
    venv = gym.make_vec(ENV_ID, num_envs=n, vectorization_mode="vector_entry_point", episode_frames=1000)
    venv.reset(seed=11)
    rng = np.random.default_rng(0)
    actions = [rng.integers(0, venv.single_action_space.nvec, size=(n, 3)) for _ in range(steps)]
    vec = np.array([[venv.step(a)[4][k] for k in ("cost_miss", "cost_accuracy")] for a in actions])  # (steps, 2, n)
    venv.close()
    for i in range(n):
        env = gym.make(ENV_ID, episode_frames=1000)
        env.reset(seed=11 + i)
        one = np.array([[env.step(a[i])[4][k] for k in ("cost_miss", "cost_accuracy")] for a in actions])
        assert np.array_equal(one, vec[:, :, i])
        env.close()


def test_constraints_bound_the_costs_and_reject_bad_bounds() -> None:
    from e4gym.bench.score import MAX_ACCURACY_LOSS, MAX_MISS_RATE
    from e4gym.envs import COST_KEYS, Constraints

    c = Constraints()
    assert c.limits == {"cost_miss": MAX_MISS_RATE, "cost_accuracy": MAX_ACCURACY_LOSS}  # the suite's definitions
    assert set(COST_KEYS) <= set(INFO_KEYS)
    assert Constraints.from_arg({"max_miss_rate": 0.05}).limits["cost_miss"] == 0.05
    with pytest.raises(ConfigError, match="max_miss_rate"):
        Constraints(max_miss_rate=5)
    with pytest.raises(UnknownNameError, match="unknown constraint"):
        Constraints.from_arg({"miss": 0.1})
