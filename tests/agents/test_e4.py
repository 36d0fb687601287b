"""E4: the attention cascade, the JIT coordinate-descent profiler and the governor (agents/e4)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

import e4gym  # noqa: F401
from agents.e4 import Cascade, E4Policy, FeatureWindow, JITProfiler, train_cascade
from agents.e4.cascade import CASCADE_FORMAT, input_rows, input_width, stream_data, window_arrays
from baselines import ClairvoyantOracle, make_governor
from e4gym.envs.common import resolve_setup
from e4gym.errors import ConfigError
from e4gym.hardware.costmodel import emulated_cost_model
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
    assert rows.shape == (300, input_width(5)) == (300, 3 + 2 + 5)
    for t in range(300):
        prev = np.flatnonzero(rows[t, 5:])
        w.push(rows[t, :3], int(prev[0]) if len(prev) else -1, float(rows[t, 3]), float(rows[t, 4]))
        fw, fm = w.arrays()
        np.testing.assert_array_equal(fw[fm], wins[t][masks[t]])
        np.testing.assert_array_equal(fm, masks[t])


def test_a_scene_cut_masks_the_frames_before_it():
    w = FeatureWindow(4, n_exits=5)
    calm = np.array([0.5, 0.1, 0.5], np.float32)
    for _ in range(3):
        w.push(calm, 2, 0.8, 0.9)  # a high previous feature change alone is no cut
    assert w.arrays()[1].tolist() == [False, True, True, True]
    w.push(np.array([0.5, 0.9, 0.5], np.float32))  # motion (pre-inference) above the cut threshold
    assert w.arrays()[1].tolist() == [False, False, False, True]
    w.clear()
    assert not w.arrays()[1].any()
    with pytest.raises(ConfigError, match="3 values"):
        w.push(np.zeros(4, np.float32))  # the old layout, with the frame's own feature change
    with pytest.raises(ConfigError, match="prev_exit"):
        w.push(calm, 5)


def test_input_rows_carry_the_previous_result():
    rows = input_rows(np.zeros((3, 3), np.float32), np.array([-1, 2, 0]), np.array([0.9, 0.7, 0.3]),
                      np.array([0.5, 0.2, 0.6]), 5)
    assert rows[0, 3:].tolist() == [0.0] * 7  # no previous frame: its figures are ignored
    assert rows[1, 3] == pytest.approx(0.7) and rows[1, 4] == pytest.approx(0.2)
    assert rows[1, 5 + 2] == 1.0 and rows[1, 5:].sum() == 1.0
    assert rows[2, 5] == 1.0 and rows[2, 4] == pytest.approx(0.6)


def test_stream_data_rows_are_causal(setup):
    """Row t: frame t's pre-inference features and frame t-1's figures at frame t-1's exit, nothing of frame t's
    own pass (its confidence and feature change)."""
    rows, earliest, correct = stream_data(setup.make_source, 4, 400, 5)
    src = setup.make_source()
    src.reset(seed=4)
    b = src.batch(400)
    np.testing.assert_array_equal(rows[:, :3], b.features)
    np.testing.assert_array_equal(earliest, b.earliest_correct)
    np.testing.assert_array_equal(correct, b.correct)
    prev = rows[:, 5:].argmax(1)
    assert rows[0, 3:].sum() == 0 and (rows[1:, 5:].sum(1) == 1).all()
    assert len(set(prev[1:].tolist())) == 5  # every exit is used as the previous one
    t = np.arange(1, 400)
    np.testing.assert_array_equal(rows[1:, 3], b.confidence[t - 1, prev[1:]])
    np.testing.assert_array_equal(rows[1:, 4], b.feature_change[t - 1, prev[1:]])
    # Frame t's own feature change is not in its row (it differs from the previous frame's at cuts).
    own = b.feature_change[t, prev[1:]]
    assert not np.allclose(rows[1:, 4], own)


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
    assert torch.load(path, weights_only=True)["format"] == CASCADE_FORMAT == "e4gym-e4-cascade-2"


def test_cascade_of_the_old_format_is_refused(setup, cascade, tmp_path):
    path = cascade.save(tmp_path / "c.pt")
    data = torch.load(path, weights_only=True)
    data["format"] = "e4gym-e4-cascade-1"
    torch.save(data, tmp_path / "old.pt")
    with pytest.raises(ConfigError, match=r"old\.pt.*e4gym-e4-cascade-1.*own feature change.*[Rr]etrain"):
        Cascade.load(tmp_path / "old.pt")
    data["format"] = "something-else"
    torch.save(data, tmp_path / "other.pt")
    with pytest.raises(ConfigError, match="not an E4 cascade file"):
        Cascade.load(tmp_path / "other.pt")


# ------------------------------------------------------------------------------------------------ profiler


_CMS: dict = {}


def _cm(setup):
    """A measured cost model of the setup's board (the profiler's only source of costs), cached per test run."""
    key = (setup.spec.name, setup.power_mode, setup.control_memory)
    if key not in _CMS:
        _CMS[key] = emulated_cost_model(setup)
    return _CMS[key]


def _profiler(setup, **kw):
    return JITProfiler(setup, _cm(setup), **kw)


@pytest.mark.parametrize("device", ["xavier-nx", "agx-orin", "jetson-nano"])
def test_coordinate_descent_finds_the_full_sweep_optimum_with_a_fraction_of_its_evaluations(device):
    s = resolve_setup(device=device, model="efficientnet_b0")
    prof = JITProfiler(s, _cm(s))
    gaps = []
    for e in range(s.profile.n_exits):
        plan = prof.solve(e)
        _, best_energy = prof.full_sweep(e)
        gaps.append(plan.energy_j / best_energy - 1.0)
    # On measured (noisy) tables the streaming-energy landscape has flat, noisy plateaus: coordinate descent
    # lands near the table's optimum, not on it (measured: 0-24 % above, median 2-20 % by board; see the
    # issue-12 note). On the noise-free model it found the exact optimum. The sweep is a lower bound.
    assert min(gaps) >= -1e-9 and np.median(gaps) < 0.25
    assert prof.stats.profiles == s.profile.n_exits
    assert prof.stats.full_sweep == s.profile.n_exits * prof.grid_size()
    assert prof.stats.share < 0.2


def test_profiler_caches_per_exit_and_bucket_and_reprofiles_on_drift(setup):
    prof = JITProfiler(setup, _cm(setup))
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
    assert again.latency_s <= prof.budget_s
    assert again.latency_s == pytest.approx(prof.evaluate(2, again.levels)[0])  # planned with the correction


def test_plans_meet_the_deadline_with_margin_or_are_the_fastest(setup):
    prof = JITProfiler(setup, _cm(setup), margin=0.1)
    for e in range(5):
        plan = prof.solve(e)
        assert plan.feasible and plan.latency_s * 1.1 <= setup.period_s + 1e-12
    nano = _profiler(resolve_setup(device="jetson-nano", model="efficientnet_b0"))
    last = nano.solve(4)
    top_latency, _ = nano.evaluate(4, nano._hi[None])
    # Nothing meets the deadline: the plan is (about) the fastest, measured noise allowing neighbours of the top.
    assert not last.feasible and last.latency_s <= 1.03 * top_latency


def test_switch_penalty_is_charged_only_when_speeding_up(setup):
    prof = JITProfiler(setup, _cm(setup))
    fast = prof.solve(4)
    slow = prof.solve(0)
    up = prof.switch_penalty_s(4, (0, 0), fast)  # from the lowest clocks up to the full network's plan
    down = prof.switch_penalty_s(0, tuple(fast.levels[0]), slow)
    assert up > 1e-3  # a GPU switch keeps the old clocks for about 5 ms (measured)
    assert down == 0.0  # slowing down costs nothing extra (stalls are folded into the measured delays)
    assert prof.switch_penalty_s(4, tuple(fast.levels[0]), fast) == 0.0


def test_per_layer_plans_have_one_setting_per_block_and_never_lose_to_the_uniform_plan(setup):
    per_frame = JITProfiler(setup, _cm(setup), heads="passed")
    per_layer = JITProfiler(setup, _cm(setup), per_layer=True, heads="passed")
    for e in (0, 2):
        plan = per_layer.solve(e)
        assert plan.levels.shape == (setup.profile.exits[e].after_block + 1, 2)
        uniform = np.tile(per_frame.solve(e).levels, (plan.levels.shape[0], 1))
        assert plan.energy_j <= per_layer.evaluate(e, uniform)[1] + 1e-12


def test_profiler_rejects_bad_arguments(setup):
    with pytest.raises(ConfigError, match="heads"):
        JITProfiler(setup, _cm(setup), heads="some")
    with pytest.raises(ConfigError, match="margin"):
        JITProfiler(setup, _cm(setup), margin=-1)
    with pytest.raises(ConfigError, match="per-frame"):
        JITProfiler(setup, _cm(setup), per_layer=True).full_sweep(0)


# ------------------------------------------------------------------------------------------------ policy


def run(policy, seed=0, frames_=400, device="xavier-nx", **kw):
    env = gym.make(getattr(policy, "env_id", "e4gym/EarlyExitDVFS-v1"), device=device, episode_frames=frames_,
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
    assert pol.env_id == "e4gym/EarlyExitDVFSBlock-v1"
    env = gym.make(pol.env_id, device="xavier-nx", episode_frames=200)
    infos = run_episode(pol, env, seed=1)
    fr = frames(infos)
    assert len(fr) == 200
    default = run(make_governor("default"), seed=1, frames_=200)
    # On measured tables per-layer E4 is about on par with the default governors here (it was 5-10 % below
    # them on the analytic model); what this test holds is the mechanism and the deadline.
    assert np.mean([i["energy_j"] for i in fr]) < 1.1 * np.mean([i["energy_j"] for i in default])
    # Its just-in-time re-profiles run on the board (a few frames' time each) and queue frames behind them.
    assert np.mean([i["deadline_missed"] for i in fr]) < 0.2
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

    bind_policy(E4Policy(per_layer=True, cascade=cascade), gym.make("e4gym/EarlyExitDVFS-v1", device="xavier-nx"))


def test_oracle_bounds_e4(cascade):
    e4 = run(E4Policy(cascade=cascade))
    oracle = run(ClairvoyantOracle())
    assert np.mean([i["energy_j"] for i in oracle]) < np.mean([i["energy_j"] for i in e4])


def test_numpy_inference_matches_the_network(cascade):
    rng = np.random.default_rng(1)
    width = cascade.net.embed[0].in_features
    for _ in range(5):
        win = rng.random((cascade.window, width)).astype(np.float32)
        mask = rng.random(cascade.window) < 0.6
        mask[-1] = True
        ref = cascade.predict(win[None], mask[None])[0]
        np.testing.assert_allclose(cascade.predict_one(win, mask), ref, atol=1e-5)


def test_jit_reprofile_runs_on_the_board_and_the_env_charges_it(setup):
    """When the board drifts from the measured tables, the next plan is searched with profiling frames run on the
    board (at most MAX_PROFILE_RUNS), and the env charges their time and energy to the next frame."""
    from agents.e4.profiler import MAX_PROFILE_RUNS

    env = gym.make("e4gym/EarlyExitDVFS-v1", device="xavier-nx").unwrapped
    env.reset(seed=0)
    prof = JITProfiler(env.setup, env.cost_model(), measure=env.profiling_run)
    first = prof.solve(2)
    assert not prof.needs_measuring(2)  # no feedback yet: the offline tables are trusted
    prof.observe(2, first.latency_s, first.levels)
    assert not prof.needs_measuring(2)
    for _ in range(30):  # the board now runs this exit 20 % slower than measured
        prof.observe(2, first.latency_s * 1.2, first.levels)
    assert prof.needs_measuring(2)
    plan = prof.profile_on_board(2)
    assert 1 <= prof.stats.runs <= MAX_PROFILE_RUNS and prof.stats.measured_profiles == 1
    assert plan.latency_s <= prof.budget_s and not prof.needs_measuring(2)
    _, _, _, _, info = env.step(np.array([2, *plan.levels[0]]))
    assert info["profiling_runs"] == prof.stats.runs
    assert info["profiling_ms"] == pytest.approx(prof.stats.run_s * 1e3)
    assert info["profiling_energy_j"] > 0


def _trace(path, seed: int):
    """A recorded-trace stand-in: 300 frames of a seeded synthetic stream saved as an e4gym trace."""
    from e4gym.workload import SyntheticVideo, save_trace

    b = SyntheticVideo([0.4, 0.56, 0.67, 0.73, 0.7769], seed=seed).batch(300)
    labels = np.zeros(300, np.int64)
    return save_trace(path, model="efficientnet_b0", fps=30.0, features=b.features,
                      feature_change=b.feature_change, pooled=None,
                      predictions=np.where(b.correct, 0, 1), confidence=b.confidence, correct=b.correct,
                      labels=labels, scene=b.scene)


def test_e4_is_never_scored_on_the_trace_it_trained_on(tmp_path):
    """Finding 7: on a trace workload E4 trained its cascade and λ on the very video it was scored on. Now it
    trains on synthetic video of the network by default (EnvSetup.training_source), the harness refuses a policy
    trained on the scored trace, and a separate training trace (or a split) is the way to learn from recordings."""
    scored, other = _trace(tmp_path / "scored.npz", 1), _trace(tmp_path / "train.npz", 2)
    kw = {"train_frames": 300, "train_streams": 2, "train_epochs": 1}
    env = gym.make("e4gym/EarlyExitDVFS-v1", device="xavier-nx", workload=str(scored), episode_frames=30)
    with pytest.raises(ConfigError, match="overlaps the stream it trained on"):
        run_episode(E4Policy(train_workload=str(scored), **kw), env, seed=0)
    default = E4Policy(**kw)
    assert len(run_episode(default, env, seed=0)) == 30
    assert {k[0] for k in default.training_streams()} == {"synthetic"}
    pol = E4Policy(train_workload=str(other), **kw)
    assert len(run_episode(pol, env, seed=0)) == 30
    assert {k[0] for k in pol.training_streams()} == {"trace"}
    with pytest.raises(ConfigError, match="train_workload"):
        E4Policy(train_workload=3)
