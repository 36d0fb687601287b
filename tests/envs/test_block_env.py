"""The per-block env ``e4gym/EarlyExitDVFSBlock-v1``: checkers, seeding, reward, exits, streaming, consistency."""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import e4gym  # noqa: F401  (registers the envs)
from e4gym.envs.block import EarlyExitDVFSBlockEnv
from e4gym.envs.core import INFO_KEYS
from e4gym.envs.frame import EarlyExitDVFSEnv
from e4gym.errors import ConfigError, SettingError, UnknownNameError
from e4gym.hardware import available_devices
from e4gym.workload.base import N_FEATURES, FrameBatch, FrameRecord, FrameSource

ENV_ID = "e4gym/EarlyExitDVFSBlock-v1"
ALL_INFO_KEYS = {*INFO_KEYS, "frame_done", "block", "power_cpu_w", "power_gpu_w", "power_soc_w"}


def _make(**kwargs: Any) -> EarlyExitDVFSBlockEnv:
    kwargs.setdefault("episode_frames", 10)
    return EarlyExitDVFSBlockEnv(**kwargs)


def _top(env: EarlyExitDVFSBlockEnv) -> tuple[int, int]:
    mx = env.setup.max_levels
    return mx[0], mx[1]


def _run_frames(
    env: EarlyExitDVFSBlockEnv, n_frames: int, policy: Callable[[np.ndarray], Any], seed: int = 0
) -> list[list[tuple]]:
    """Reset with ``seed`` and step until ``n_frames`` frames ended.

    Returns per frame the list of its steps as ``(obs_before, action, reward, info)``.
    """
    obs, _ = env.reset(seed=seed)
    frames: list[list[tuple]] = [[]]
    while len(frames) <= n_frames:
        action = policy(obs)
        nxt, reward, terminated, _, info = env.step(action)
        assert not terminated
        frames[-1].append((obs, action, reward, info))
        if info["frame_done"]:
            frames.append([])
        obs = nxt
    return frames[:n_frames]


class FixedSource(FrameSource):
    """A frame source whose frames all have the given per-exit correctness and confidence."""

    def __init__(self, correct: list[bool], confidence: list[float], fps: float = 30.0) -> None:
        self.n_exits = len(correct)
        self.fps = fps
        self.length = None
        self._correct = np.asarray(correct, bool)
        self._conf = np.asarray(confidence, np.float32)
        self._i = 0

    def reset(self, seed: int | None = None) -> None:
        self._i = 0

    def next(self) -> FrameRecord:
        return self.batch(1).record(0)

    def batch(self, frames: int) -> FrameBatch:
        idx = np.arange(self._i, self._i + frames, dtype=np.int64)
        self._i += frames
        return FrameBatch(
            index=idx,
            scene=np.zeros(frames, np.int64),
            features=np.full((frames, N_FEATURES), 0.5, np.float32),
            correct=np.tile(self._correct, (frames, 1)),
            confidence=np.tile(self._conf, (frames, 1)),
            feature_change=np.zeros((frames, self.n_exits), np.float32),
            difficulty=np.full(frames, np.nan),
        )


# ---------------------------------------------------------------------------------------------- API checkers


@pytest.mark.parametrize("control_memory", [False, True])
@pytest.mark.parametrize("device", available_devices())
def test_gymnasium_and_sb3_checkers_pass(device: str, control_memory: bool) -> None:
    env = gym.make(ENV_ID, device=device, control_memory=control_memory, episode_frames=5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any checker warning fails the test
        gym_check_env(env.unwrapped)
        sb3_check_env(env.unwrapped)
    u = env.unwrapped
    n_act = 4 if control_memory else 3
    assert u.action_names[0] == "exit_now" and len(u.action_names) == n_act
    mx = u.setup.max_levels
    expected = [2, mx[0] + 1, mx[1] + 1] + ([mx[2] + 1] if control_memory else [])
    assert list(u.action_space.nvec) == expected
    assert u.observation_space.shape == (len(u.obs_names),) and u.observation_space.dtype == np.float32
    assert np.all(np.isfinite(u.observation_space.low)) and np.all(np.isfinite(u.observation_space.high))
    assert u.obs_names[-1] == ("emc_level" if control_memory else "gpu_level")
    env.close()


def test_info_keys_on_reset_and_every_step_and_obs_in_space() -> None:
    env = _make(control_memory=True, episode_frames=4)
    obs, info = env.reset(seed=5)
    assert set(info) == ALL_INFO_KEYS
    assert not info["frame_done"] and info["block"] == -1 and info["exit"] == -1 and info["frame"] == -1
    env.action_space.seed(5)
    for _ in range(40):
        obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
        assert set(info) == ALL_INFO_KEYS
        assert env.observation_space.contains(obs)
        assert isinstance(reward, float) and not terminated
        if truncated:
            env.reset()


# ---------------------------------------------------------------------------------------------- seeding


def _rollout(env: EarlyExitDVFSBlockEnv, seed: int, actions: np.ndarray) -> list:
    out = [env.reset(seed=seed)]
    for a in actions:
        out.append(env.step(a))
    return out


def test_same_seed_same_actions_identical_different_seed_differs() -> None:
    env = _make(episode_frames=1000)
    actions = np.random.default_rng(0).integers(0, env.action_space.nvec, size=(150, 3))
    a = _rollout(env, 11, actions)
    b = _rollout(env, 11, actions)
    c = _rollout(_make(episode_frames=1000), 11, actions)  # a fresh env, same seed
    for x, y, z in zip(a, b, c):
        assert len(x) == len(y) == len(z)
        for u, v, w in zip(x, y, z):
            if isinstance(u, np.ndarray):
                assert np.array_equal(u, v) and np.array_equal(u, w)
            else:
                assert u == v == w
    d = _rollout(env, 12, actions)
    assert any(not np.array_equal(x[0], y[0]) for x, y in zip(a, d))
    assert [x[1] for x in a[1:]] != [x[1] for x in d[1:]]


# ---------------------------------------------------------------------------------------------- reward


def test_rewards_of_a_frame_sum_to_the_frame_reward() -> None:
    w = {"energy": 2.5, "deadline": 0.7, "accuracy": 1.3}
    # Short scenes: frame difficulties vary quickly, so both correct and wrong exits occur in a few frames.
    env = _make(reward_weights=w, device="xavier-nx", episode_frames=100, workload_kwargs={"mean_scene_s": 0.1})
    rng = np.random.default_rng(3)

    def policy(obs: np.ndarray) -> np.ndarray:  # random clocks, mostly early exits: some frames miss, most not
        a = rng.integers(0, env.action_space.nvec)
        a[0] = rng.random() < 0.8
        return a

    frames = _run_frames(env, 25, policy, seed=3)
    e_ref = env.setup.energy_ref_j
    seen_missed, seen_wrong = set(), set()
    for steps in frames:
        info = steps[-1][3]
        assert info["frame_done"] and all(not s[3]["frame_done"] for s in steps[:-1])
        expected = -w["energy"] * info["energy_j"] / e_ref - w["deadline"] * info["deadline_missed"] - w[
            "accuracy"
        ] * (1 - info["correct"])
        assert sum(s[2] for s in steps) == pytest.approx(expected, rel=1e-12, abs=1e-12)
        # Terms: energy every step; deadline and accuracy only on the frame's last step.
        assert sum(s[3]["reward_energy"] for s in steps) == pytest.approx(-w["energy"] * info["energy_j"] / e_ref)
        assert all(s[3]["reward_deadline"] == 0 and s[3]["reward_accuracy"] == 0 for s in steps[:-1])
        assert info["reward_deadline"] == -w["deadline"] * info["deadline_missed"]
        assert info["reward_accuracy"] == -w["accuracy"] * (1 - info["correct"])
        for s in steps:
            terms = s[3]["reward_energy"] + s[3]["reward_deadline"] + s[3]["reward_accuracy"]
            assert s[2] == pytest.approx(terms, rel=1e-12, abs=1e-15)
        # The frame's energy is the sum of its steps' energies.
        assert info["energy_j"] == pytest.approx(sum(-s[3]["reward_energy"] for s in steps) * e_ref / w["energy"])
        seen_missed.add(info["deadline_missed"])
        seen_wrong.add(info["correct"])
    assert seen_missed == {True, False} and seen_wrong == {True, False}  # both branches of each term exercised


# ---------------------------------------------------------------------------------------------- exits


def test_always_exit_now_ends_every_frame_at_exit_zero() -> None:
    env = _make()
    c, g = _top(env)
    a0 = env.profile.exits[0].after_block
    frames = _run_frames(env, 6, lambda obs: np.array([1, c, g]))
    for k, steps in enumerate(frames):
        assert len(steps) == a0 + 2
        assert [s[3]["block"] for s in steps] == [*range(a0 + 1), -1]
        info = steps[-1][3]
        assert info["exit"] == 0 and info["frame"] == k
        assert steps[-1][0][env.obs_names.index("at_exit")] == 1.0  # the exit step saw the head's output


def test_never_exit_ends_at_the_last_exit_after_every_block() -> None:
    env = _make(model="mobilenet_v2")
    c, g = _top(env)
    n = env.profile.exits[-1].after_block + 1
    assert n == env.profile.n_blocks
    frames = _run_frames(env, 4, lambda obs: np.array([0, c, g]))
    for steps in frames:
        assert len(steps) == n
        assert [s[3]["block"] for s in steps] == list(range(n))
        assert steps[-1][3]["exit"] == env.profile.n_exits - 1
        assert all(s[3]["exit"] == -1 and not s[3]["correct"] for s in steps[:-1])


def test_exit_now_is_ignored_where_no_head_ran() -> None:
    env = _make()
    obs, _ = env.reset(seed=0)
    c, g = _top(env)
    i_at, i_block = env.obs_names.index("at_exit"), env.obs_names.index("block")
    first_exit = env.profile.exits[0].after_block
    for j in range(first_exit + 1):  # exit_now = 1 before any head ran: the blocks run anyway
        assert obs[i_at] == 0.0
        assert obs[i_block] == pytest.approx(j / env.profile.n_blocks)
        obs, _, _, _, info = env.step(np.array([1, c, g]))
        assert info["block"] == j and not info["frame_done"]
    assert obs[i_at] == 1.0
    obs, _, _, _, info = env.step(np.array([0, c, g]))  # not exiting: the next block runs
    assert info["block"] == first_exit + 1 and not info["frame_done"]
    assert obs[i_at] == float(any(x.after_block == first_exit + 1 for x in env.profile.exits))


def test_exit_confidence_and_correctness_come_from_the_frame() -> None:
    correct = [False, True, False, True, True]
    conf = [0.1, 0.2, 0.3, 0.4, 0.9]
    env = _make(workload=FixedSource(correct, conf))
    obs, _ = env.reset(seed=0)
    c, g = _top(env)
    names = env.obs_names
    exit_of = {x.after_block: e for e, x in enumerate(env.profile.exits)}
    target = 2
    for j in range(env.profile.exits[target].after_block + 1):
        obs, _, _, _, info = env.step(np.array([0, c, g]))
        if j in exit_of:
            e = exit_of[j]
            assert obs[names.index("at_exit")] == 1.0
            assert obs[names.index("exit_confidence")] == pytest.approx(conf[e])
            assert obs[names.index("exit_index")] == pytest.approx(e / (env.profile.n_exits - 1))
        else:
            assert obs[names.index("at_exit")] == obs[names.index("exit_confidence")] == 0.0
    obs, _, _, _, info = env.step(np.array([1, c, g]))
    assert info["frame_done"] and info["exit"] == target and bool(info["correct"]) is correct[target]
    assert info["block"] == -1 and info["reward_accuracy"] == -1.0
    # The new frame starts clean.
    assert obs[names.index("at_exit")] == 0.0 and obs[names.index("block")] == 0.0
    assert obs[names.index("frame_energy")] == 0.0 and obs[names.index("remaining_work")] == 1.0


def test_remaining_work_and_elapsed_observations() -> None:
    env = _make(device="xavier-nx")
    obs, _ = env.reset(seed=0)
    c, g = _top(env)
    i_rem, i_el, i_en = (env.obs_names.index(n) for n in ("remaining_work", "elapsed", "frame_energy"))
    rems, els, ens = [obs[i_rem]], [obs[i_el]], [obs[i_en]]
    for _ in range(env.profile.n_blocks - 1):
        obs, _, _, _, info = env.step(np.array([0, c, g]))
        rems.append(obs[i_rem])
        els.append(obs[i_el])
        ens.append(obs[i_en])
        assert obs[i_el] == pytest.approx(info["latency_ms"] / 1e3 / env.setup.deadline_s, rel=1e-5)
        assert obs[i_en] == pytest.approx(info["measured_energy_j"] / env.setup.energy_ref_j, rel=1e-5)
    assert rems[0] == 1.0 and all(a > b > 0 for a, b in itertools.pairwise(rems))
    assert els[0] == 0.0 and all(a < b for a, b in itertools.pairwise(els))
    assert ens[0] == 0.0 and all(a < b for a, b in itertools.pairwise(ens))


# ---------------------------------------------------------------------------------------------- streaming


def test_slow_device_at_lowest_levels_overruns_and_queues() -> None:
    env = _make(device="jetson-nano", episode_frames=100)
    frames = _run_frames(env, 6, lambda obs: np.array([0, 0, 0]))
    infos = [steps[-1][3] for steps in frames]
    assert all(i["deadline_missed"] for i in infos)
    lat = [i["latency_ms"] for i in infos]
    assert all(a < b for a, b in itertools.pairwise(lat))  # queueing grows
    # Latency counts from arrival: it exceeds the frame's own run time by the queueing delay.
    assert all(i["latency_ms"] > i["run_ms"] for i in infos[1:])
    assert infos[0]["latency_ms"] == pytest.approx(infos[0]["run_ms"])
    # The next frame's first observation shows the queueing it already has.
    i_el = env.obs_names.index("elapsed")
    assert all(steps[0][0][i_el] > 0 for steps in frames[1:])


def test_fast_device_at_top_levels_meets_deadlines_and_charges_idle() -> None:
    energies = {}
    for fps in (30.0, 10.0):
        env = _make(device="xavier-nx", fps=fps, deadline_ms=1e3 / 30, episode_frames=100)
        c, g = _top(env)
        i_at, i_ex = env.obs_names.index("at_exit"), env.obs_names.index("exit_index")
        # Exit 2 (about 21 ms at the top clocks): well inside the 33 ms deadline whatever the noise.

        def policy(obs: np.ndarray, c: int = c, g: int = g, i_at: int = i_at, i_ex: int = i_ex) -> np.ndarray:
            return np.array([int(obs[i_at] == 1 and obs[i_ex] == 0.5), c, g])

        frames = _run_frames(env, 8, policy)
        infos = [steps[-1][3] for steps in frames]
        assert not any(i["deadline_missed"] for i in infos)
        for k, steps in enumerate(frames):
            info = steps[-1][3]
            # No queueing: each frame starts at its arrival and leaves the board idle until the next.
            assert steps[0][0][env.obs_names.index("elapsed")] == 0.0
            assert info["latency_ms"] == pytest.approx(info["run_ms"])
            assert info["power_w"] * env.setup.period_s == pytest.approx(info["energy_j"])
            assert info["frame"] == k
        energies[fps] = np.mean([i["energy_j"] for i in infos])
    # A 10 fps frame idles 66.7 ms longer than a 30 fps one: at least the static power over that time.
    static_w = env.device_spec.model.static_w
    assert energies[10.0] - energies[30.0] > static_w * (1 / 10 - 1 / 30)


def test_truncation_on_the_step_that_ends_the_last_frame() -> None:
    env = _make(episode_frames=3)
    env.reset(seed=0)
    c, g = _top(env)
    done_frames = 0
    for _ in range(200):
        _, _, terminated, truncated, info = env.step(np.array([0, c, g]))
        assert not terminated
        done_frames += info["frame_done"]
        assert truncated == (done_frames == 3 and info["frame_done"])
        if truncated:
            break
    assert done_frames == 3 and info["frame"] == 2


def test_dvfs_switches_counts_domains_changed_in_the_frame() -> None:
    env = _make(control_memory=True)
    mx = env.setup.max_levels
    fixed = _run_frames(env, 3, lambda obs: np.array([0, *mx]))
    assert [s[-1][3]["dvfs_switches"] for s in fixed] == [0, 0, 0]
    i_block, n_blocks = env.obs_names.index("block"), env.profile.n_blocks

    def flip_policy(obs: np.ndarray) -> np.ndarray:  # alternate CPU and GPU levels block by block; EMC stays
        odd = round(float(obs[i_block]) * n_blocks) % 2
        return np.array([0, mx[0] - 1 + odd, mx[1] - 1 + odd, mx[2]])

    flip = _run_frames(env, 3, flip_policy)
    assert [s[-1][3]["dvfs_switches"] for s in flip] == [2, 2, 2]
    info = flip[-1][-1][3]
    spec = env.device_spec
    assert info["emc_hz"] == spec.emc_freqs_hz[mx[2]]


def test_emc_level_applies_with_control_memory() -> None:
    env = _make(control_memory=True)
    env.reset(seed=0)
    c, g = _top(env)
    _, _, _, _, info = env.step(np.array([0, c, g, 0]))
    assert info["emc_hz"] == env.device_spec.emc_freqs_hz[0]
    assert env.backend.levels[2] == 0


# ---------------------------------------------------------------------------------------------- frame env


@pytest.mark.parametrize("exit_index", [0, 4])
def test_agrees_with_the_frame_env_at_fixed_levels(exit_index: int) -> None:
    """Same nominal totals: mean run time and energy per frame within 2 % of the frame env's.

    The block env also runs the heads of the exits before ``exit_index`` (their outputs are what the agent
    decides on); the frame env's figures are corrected by their nominal cost.
    """
    n = 30
    fe = EarlyExitDVFSEnv(device="xavier-nx", episode_frames=100)
    be = _make(device="xavier-nx", episode_frames=100)
    c, g = _top(be)
    fe.reset(seed=4)
    f_infos = [fe.step(np.array([exit_index, c, g]))[4] for _ in range(n)]
    i_at, i_ex = be.obs_names.index("at_exit"), be.obs_names.index("exit_index")
    last = be.profile.n_exits - 1

    def policy(obs: np.ndarray) -> np.ndarray:
        return np.array([int(obs[i_at] == 1 and round(float(obs[i_ex]) * last) == exit_index), c, g])

    frames = _run_frames(be, n, policy, seed=4)
    b_infos = [steps[-1][3] for steps in frames]
    assert all(i["exit"] == exit_index for i in b_infos)
    spec, mx = be.device_spec, be.setup.max_levels
    idx = spec.flat_index(mx)
    heads = [be.backend.table(be.profile.head_work(e)) for e in range(exit_index)]
    extra_s = sum(float(t.latency_s[idx]) for t in heads)
    extra_j = sum(float(t.busy_dyn_j[idx]) for t in heads)  # the idle floor it displaces is the same power

    def mean(infos: list[dict], key: str) -> float:
        return float(np.mean([i[key] for i in infos]))

    assert mean(b_infos, "run_ms") == pytest.approx(mean(f_infos, "run_ms") + extra_s * 1e3, rel=0.02)
    assert mean(b_infos, "latency_ms") == pytest.approx(mean(f_infos, "latency_ms") + extra_s * 1e3, rel=0.02)
    assert mean(b_infos, "energy_j") == pytest.approx(mean(f_infos, "energy_j") + extra_j, rel=0.02)
    assert mean(b_infos, "measured_energy_j") == pytest.approx(mean(f_infos, "measured_energy_j") + extra_j, rel=0.05)
    assert [i["correct"] for i in b_infos] == [i["correct"] for i in f_infos]  # same stream for the same seed


def test_attributes_match_the_frame_env() -> None:
    fe, be = EarlyExitDVFSEnv(device="orin-nano", episode_frames=7), _make(device="orin-nano", episode_frames=7)
    assert be.setup == fe.setup
    assert be.device_spec is be.setup.spec and be.profile is be.setup.profile
    assert be.reward_fn == fe.reward_fn
    assert len(be.obs_fields) == len(be.obs_names) == be.observation_space.shape[0]


# ---------------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("action", "needle"),
    [
        ([2, 0, 0], "'exit_now' must be an integer in 0..1"),
        ([0, 999, 0], "'cpu_level' must be an integer in 0.."),
        ([0, 0, -1], "'gpu_level' must be an integer in 0.."),
        ([0, 0.5, 0], "'cpu_level'"),
        ([0, 0], "takes 3"),
        ([0, 0, 0, 0], "takes 3"),
    ],
)
def test_actions_outside_the_space_raise_setting_error(action: list, needle: str) -> None:
    env = gym.make(ENV_ID, episode_frames=5)
    env.reset(seed=0)
    with pytest.raises(SettingError, match="MultiDiscrete") as err:
        env.unwrapped.step(action)
    assert needle in str(err.value)


def test_level_above_the_power_mode_cap_is_rejected() -> None:
    env = _make(device="xavier-nx", power_mode="10W")
    env.reset(seed=0)
    n_cpu = env.action_space.nvec[1]
    assert n_cpu < env.device_spec.n_cpu  # the mode caps the CPU
    with pytest.raises(SettingError, match=rf"'cpu_level' must be an integer in 0..{n_cpu - 1}"):
        env.step(np.array([0, n_cpu, 0]))
    env.step(np.array([0, n_cpu - 1, 0]))  # the top allowed level is fine


def test_bad_arguments_raise() -> None:
    with pytest.raises(UnknownNameError, match="known"):
        gym.make(ENV_ID, device="jetson-banana")
    with pytest.raises(UnknownNameError, match="efficientnet_b0"):
        gym.make(ENV_ID, model="no_such_net")
    for bad in (0, -5.0):
        with pytest.raises(ConfigError, match="deadline_ms"):
            gym.make(ENV_ID, deadline_ms=bad)



def test_unsupported_render_mode_warns_and_renders_nothing() -> None:
    # As Gymnasium's envs: an unknown render_mode warns and the env goes on (SB3's make_vec_env passes one).
    with pytest.warns(UserWarning, match="render_mode='rgb_array' is not supported"):
        env = EarlyExitDVFSBlockEnv(render_mode="rgb_array", episode_frames=2)
    env.reset(seed=0)
    env.step(np.array([0, 0, 0]))
    assert env.render() is None


def test_step_before_reset_raises() -> None:
    env = _make()
    with pytest.raises(gym.error.ResetNeeded):
        env.step(np.array([0, 0, 0]))


def test_render_ansi_and_close() -> None:
    env = _make(render_mode="ansi")
    env.reset(seed=0)
    env.step(np.array([0, 0, 0]))
    line = env.render()
    assert isinstance(line, str) and "\n" not in line and line.startswith("frame 0 block 1")
    assert _make().render() is None
    env.close()
    with pytest.raises(SettingError, match="closed"):
        env.step(np.array([0, 0, 0]))
