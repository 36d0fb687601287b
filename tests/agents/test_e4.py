"""E4: the attention cascade, the JIT coordinate-descent profiler and the governor (agents/e4)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import e4gym  # noqa: F401
from agents.e4 import Cascade, E4Policy, FeatureWindow, JITProfiler, train_cascade
from agents.e4.cascade import input_rows, stream_data, window_arrays
from baselines import ClairvoyantOracle, make_governor
from e4gym.envs.common import resolve_setup
from e4gym.errors import ConfigError
from e4gym.policy import run_episode

# A smaller training run than the default (6 × 3000 frames, 5 epochs: about 3 s), shared by the tests.


@pytest.fixture(scope="module")
def setup():
    return resolve_setup(device="xavier-nx", model="efficientnet_b0")


@pytest.fixture(scope="module")
def cascade(setup):
    return train_cascade(setup.make_source, setup.profile.n_exits, setup.profile.name, streams=6,
                         frames_per_stream=3000, epochs=5)


def frames(infos):
    return [i for i in infos if i.get("frame_done", True)]


# ------------------------------------------------------------------------------------------------ cascade


def test_window_arrays_match_pushing_frames_one_by_one(setup):
    rows, _, _ = stream_data(setup.make_source, 3, 300, 5)
    wins, masks = window_arrays(rows, 8)
    w = FeatureWindow(8, n_exits=5)
    for t in range(300):
        prev = np.flatnonzero(rows[t, 5:])
        w.push(rows[t, :4], int(prev[0]) if len(prev) else -1, float(rows[t, 4]))
        fw, fm = w.arrays()
        np.testing.assert_array_equal(fw[fm], wins[t][masks[t]])
        np.testing.assert_array_equal(fm, masks[t])


def test_a_scene_cut_masks_the_frames_before_it():
    w = FeatureWindow(4, n_exits=5)
    calm = np.array([0.5, 0.1, 0.5, 0.1], np.float32)
    for _ in range(3):
        w.push(calm)
    assert w.arrays()[1].tolist() == [False, True, True, True]
    w.push(np.array([0.5, 0.9, 0.5, 0.9], np.float32))  # feature_change above the cut threshold
    assert w.arrays()[1].tolist() == [False, False, False, True]
    w.clear()
    assert not w.arrays()[1].any()


def test_input_rows_carry_the_previous_result():
    rows = input_rows(np.zeros((3, 4), np.float32), np.array([-1, 2, 0]), np.array([0.0, 0.7, 0.3]), 5)
    assert rows[0, 4:].tolist() == [0.0] * 6
    assert rows[1, 4] == pytest.approx(0.7) and rows[1, 5 + 2] == 1.0 and rows[1, 5:].sum() == 1.0
    assert rows[2, 5] == 1.0


def test_the_cascade_learns_the_earliest_exit_better_than_the_prior(setup, cascade):
    rows, earliest, correct = stream_data(setup.make_source, 777, 3000, 5)
    p = cascade.predict_stream(rows)
    assert p.shape == (3000, 6) and np.allclose(p.sum(1), 1.0)
    # Beats always guessing the most common class, and its P(correct at e) tracks the truth.
    prior = np.bincount(np.minimum(earliest, 5), minlength=6).max() / 3000
    assert np.mean(p.argmax(1) == np.minimum(earliest, 5)) > prior + 0.05
    pc = np.cumsum(p[:, :-1], axis=1)
    easy, hard = pc[:, 0] > 0.8, pc[:, -1] < 0.3
    assert correct[easy, 0].mean() > 0.7 and correct[hard, -1].mean() < 0.4


def test_cascade_save_load_roundtrip_and_corrupt_file(setup, cascade, tmp_path):
    path = cascade.save(tmp_path / "c.pt")
    back = Cascade.load(path)
    rows, _, _ = stream_data(setup.make_source, 5, 200, 5)
    np.testing.assert_allclose(back.predict_stream(rows), cascade.predict_stream(rows))
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(ConfigError, match="not a readable E4 cascade"):
        Cascade.load(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        Cascade.load(tmp_path / "missing.pt")


# ------------------------------------------------------------------------------------------------ profiler


@pytest.mark.parametrize("device", ["xavier-nx", "agx-orin", "jetson-nano"])
def test_coordinate_descent_finds_the_full_sweep_optimum_with_a_fraction_of_its_evaluations(device):
    s = resolve_setup(device=device, model="efficientnet_b0")
    prof = JITProfiler(s)
    for e in range(s.profile.n_exits):
        plan = prof.solve(e)
        _, best_energy = prof.full_sweep(e)
        assert plan.energy_j <= best_energy * 1.01
    assert prof.stats.profiles == s.profile.n_exits
    assert prof.stats.full_sweep == s.profile.n_exits * prof.grid_size()
    assert prof.stats.share < 0.2


def test_profiler_caches_per_exit_and_bucket_and_reprofiles_on_drift(setup):
    prof = JITProfiler(setup)
    first = prof.solve(2, 1)
    evals = prof.stats.evaluations
    assert prof.solve(2, 1) is first and prof.stats.cache_hits == 1 and prof.stats.evaluations == evals
    prof.solve(2, 0)  # another bucket: profiled, warm-started from the last plan of exit 2
    assert prof.stats.profiles == 2 and prof.stats.evaluations - evals < evals
    # The board runs 20 % slower than modelled: after feedback the cached plan is re-profiled, faster.
    for _ in range(30):
        prof.observe(2, first.latency_s * 1.2, first.levels)
    again = prof.solve(2, 1)
    assert prof.stats.reprofiles == 1 and again is not first
    assert tuple(again.levels[0]) > tuple(first.levels[0]) or again.levels.sum() > first.levels.sum()
    assert again.latency_s <= prof.budget_s


def test_plans_meet_the_deadline_with_margin_or_are_the_fastest(setup):
    prof = JITProfiler(setup, margin=0.1)
    for e in range(5):
        plan = prof.solve(e)
        assert plan.feasible and plan.latency_s * 1.1 <= setup.period_s + 1e-12
    nano = JITProfiler(resolve_setup(device="jetson-nano", model="efficientnet_b0"))
    last = nano.solve(4)
    assert not last.feasible and tuple(last.levels[0]) == tuple(nano._hi)


def test_switch_penalty_is_charged_only_when_speeding_up(setup):
    prof = JITProfiler(setup)
    fast = prof.solve(4)
    slow = prof.solve(0)
    up = prof.switch_penalty_s(4, tuple(slow.levels[0]), fast)
    down = prof.switch_penalty_s(0, tuple(fast.levels[0]), slow)
    assert up > 1e-3  # a GPU switch keeps the old clocks for 5 ms
    assert down == pytest.approx(setup.spec.model.transition_stall_s * 2)
    assert prof.switch_penalty_s(4, tuple(fast.levels[0]), fast) == 0.0


def test_per_layer_plans_have_one_setting_per_block_and_never_lose_to_the_uniform_plan(setup):
    per_frame = JITProfiler(setup, heads="passed")
    per_layer = JITProfiler(setup, per_layer=True, heads="passed")
    for e in (0, 2):
        plan = per_layer.solve(e)
        assert plan.levels.shape == (setup.profile.exits[e].after_block + 1, 2)
        uniform = np.tile(per_frame.solve(e).levels, (plan.levels.shape[0], 1))
        assert plan.energy_j <= per_layer.evaluate(e, uniform)[1] + 1e-12


def test_profiler_rejects_bad_arguments(setup):
    with pytest.raises(ConfigError, match="heads"):
        JITProfiler(setup, heads="some")
    with pytest.raises(ConfigError, match="margin"):
        JITProfiler(setup, margin=-1)
    with pytest.raises(ConfigError, match="per-frame"):
        JITProfiler(setup, per_layer=True).full_sweep(0)


# ------------------------------------------------------------------------------------------------ policy


def run(policy, seed=0, frames_=400, device="xavier-nx", **kw):
    env = gym.make(getattr(policy, "env_id", "e4gym/EarlyExitDVFS-v0"), device=device, episode_frames=frames_,
                   **policy.env_kwargs, **kw)
    return frames(run_episode(policy, env, seed=seed))


def test_e4_saves_energy_against_default_without_missing_deadlines(cascade):
    e4 = run(E4Policy(cascade=cascade))
    perf = run(make_governor("performance"))
    default = run(make_governor("default"))
    energy = {k: np.mean([i["energy_j"] for i in v]) for k, v in (("e4", e4), ("default", default))}
    assert energy["e4"] < 0.85 * energy["default"]
    assert np.mean([i["deadline_missed"] for i in e4]) <= np.mean([i["deadline_missed"] for i in perf]) + 0.01
    # 400 frames are a few scenes: the accuracy given up varies by episode around the budget (0.5 points).
    assert np.mean([i["correct"] for i in e4]) >= np.mean([i["correct"] for i in perf]) - 0.025
    assert len({i["exit"] for i in e4}) >= 3  # it really exits early, and not always at one exit


def test_e4_is_not_clairvoyant_and_is_deterministic(cascade):
    a, b = E4Policy(cascade=cascade), E4Policy(cascade=cascade)
    assert not a.clairvoyant
    ia, ib = run(a, frames_=150), run(b, frames_=150)
    assert [(i["exit"], i["cpu_hz"], i["gpu_hz"]) for i in ia] == [(i["exit"], i["cpu_hz"], i["gpu_hz"]) for i in ib]
    st = a.stats()
    assert 0 < st["profiler_share"] < 0.15 and st["profiler_evaluations"] > 0
    assert sum(st[f"exit{e}_share"] for e in range(5)) == pytest.approx(1.0)


def test_a_larger_accuracy_budget_trades_accuracy_for_energy(cascade):
    tight, loose = E4Policy(cascade=cascade, accuracy_budget=0.0), E4Policy(cascade=cascade, accuracy_budget=0.05)
    it, il = run(tight), run(loose)
    assert tight.lambda_j > loose.lambda_j
    assert np.mean([i["energy_j"] for i in il]) < np.mean([i["energy_j"] for i in it])


def test_e4_per_layer_runs_in_the_block_env_with_several_settings_per_frame(cascade):
    pol = E4Policy(per_layer=True, cascade=cascade)
    assert pol.env_id == "e4gym/EarlyExitDVFSBlock-v0"
    env = gym.make(pol.env_id, device="xavier-nx", episode_frames=200)
    infos = run_episode(pol, env, seed=1)
    fr = frames(infos)
    assert len(fr) == 200
    default = run(make_governor("default"), seed=1, frames_=200)
    assert np.mean([i["energy_j"] for i in fr]) < np.mean([i["energy_j"] for i in default])
    assert np.mean([i["deadline_missed"] for i in fr]) < 0.05
    # Per-layer: within some frames the clocks change between blocks.
    per_frame_clocks: dict[int, set] = {}
    k = 0
    for i in infos:
        per_frame_clocks.setdefault(k, set()).add((i["cpu_hz"], i["gpu_hz"]))
        k += bool(i["frame_done"])
    assert any(len(v) > 1 for v in per_frame_clocks.values())


def test_e4_with_memory_control_sets_the_emc_level(cascade):
    pol = E4Policy(cascade=cascade)
    fr = run(pol, frames_=100, control_memory=True)
    assert len(fr) == 100 and pol.profiler is not None and pol.profiler._dims == 3


def test_e4_checks_its_env_and_arguments(cascade):
    with pytest.raises(ConfigError, match="EarlyExitDVFSBlock"):
        _bind_in_wrong_env(cascade)
    with pytest.raises(ConfigError, match="accuracy_budget"):
        E4Policy(accuracy_budget=2)
    with pytest.raises(ConfigError, match="not bound"):
        E4Policy(cascade=cascade).predict(np.zeros(15, np.float32))


def _bind_in_wrong_env(cascade):
    from e4gym.policy import bind_policy

    bind_policy(E4Policy(per_layer=True, cascade=cascade), gym.make("e4gym/EarlyExitDVFS-v0", device="xavier-nx"))


def test_oracle_bounds_e4(cascade):
    e4 = run(E4Policy(cascade=cascade))
    oracle = run(ClairvoyantOracle())
    assert np.mean([i["energy_j"] for i in oracle]) < np.mean([i["energy_j"] for i in e4])
