"""EENet (baselines.eenet): budget held on held-out streams, monotone in the budget, fixed clocks, never scored on
its own training stream, argument checks, and a run through the benchmark harness."""

from __future__ import annotations

import itertools

import gymnasium as gym
import numpy as np
import pytest

import e4gym  # noqa: F401  (registers the envs)
from baselines.eenet import ENV_ID, EENetPolicy, quota_thresholds
from e4gym.errors import ConfigError
from e4gym.policy import run_episode

DEVICE = "xavier-nx"
BUDGETS = (0.5, 0.7, 0.9)
SEEDS = range(5)  # benchmark-style episode seeds: EENet trains on seeds >= 30 000
FRAMES = 1000


def _frames(infos: list[dict]) -> list[dict]:
    return [i for i in infos if i["frame_done"]]


def _episode(policy: EENetPolicy, seed: int, frames: int = FRAMES, **env_kw) -> list[dict]:
    env = gym.make(policy.env_id, device=DEVICE, episode_frames=frames, **{**policy.env_kwargs, **env_kw})
    try:
        return run_episode(policy, env, seed=seed)
    finally:
        env.close()


@pytest.fixture(scope="module")
def at_max() -> dict[float, dict]:
    """EENet at the top clocks, per budget: the policy, per seed ``(mean run ms, accuracy, mean exit)`` and the
    exit of every frame."""
    out = {}
    for b in BUDGETS:
        pol = EENetPolicy(budget=b, clocks="max")
        rows, exits = [], []
        for seed in SEEDS:
            fr = _frames(_episode(pol, seed))
            rows.append((np.mean([f["run_ms"] for f in fr]), np.mean([f["correct"] for f in fr]),
                         np.mean([f["exit"] for f in fr])))
            exits.append(np.array([f["exit"] for f in fr]))
        out[b] = {"policy": pol, "rows": np.array(rows), "exits": exits}
    return out


# ---------------------------------------------------------------------------------------------- budget


@pytest.mark.slow
def test_budget_holds_on_held_out_seeds(at_max) -> None:
    """Over five 1000-frame episodes on streams it never saw, EENet's average latency (blocks and heads run,
    at the fixed top clocks) stays within its budget: the mean over seeds within 5 % (the thresholds hold it on
    the validation streams; a 1000-frame episode holds about 8 scenes, so single episodes scatter by 10-20 %),
    every episode within 20 %, and it uses the budget (not far below it)."""
    for b, res in at_max.items():
        pol = res["policy"]
        budget_ms = b * pol.reference_ms
        run = res["rows"][:, 0]
        assert pol.model.val_cost <= b + 1e-9
        assert run.mean() <= 1.05 * budget_ms, (b, run, budget_ms)
        assert run.max() <= 1.2 * budget_ms, (b, run, budget_ms)
        assert run.mean() >= 0.85 * budget_ms, (b, run, budget_ms)


@pytest.mark.slow
def test_smaller_budget_exits_earlier(at_max) -> None:
    """A smaller budget gives an earlier mean exit, a lower latency and a lower accuracy, on every seed."""
    rows = [at_max[b]["rows"] for b in BUDGETS]
    for lo, hi in itertools.pairwise(rows):
        assert np.all(lo[:, 2] < hi[:, 2])  # mean exit
        assert np.all(lo[:, 0] < hi[:, 0])  # mean run ms
        assert lo[:, 1].mean() < hi[:, 1].mean()  # accuracy


def test_quota_thresholds_take_the_quotas() -> None:
    """EENet's threshold rule: exit k takes floor(p_k·N) of the frames still running, the highest-scored ones."""
    rng = np.random.default_rng(0)
    scores = rng.random((1000, 3))
    thr = quota_thresholds(scores, np.array([0.2, 0.3, 0.0, 0.5]))
    passed = scores >= thr[None, :3]
    first = np.where(passed.any(axis=1), passed.argmax(axis=1), 3)
    assert np.bincount(first, minlength=4).tolist() == [200, 300, 0, 500]
    assert thr[2] == np.inf and thr[3] == 0.0


# ---------------------------------------------------------------------------------------------- clocks


@pytest.mark.slow
def test_fixed_clocks_never_change(at_max) -> None:
    """At explicit levels every step runs at those clocks (no switch after the first frame), the action's level
    part never changes, and budget_ms holds at those clocks."""
    pol = EENetPolicy(budget_ms=25.0, clocks=[18, 9])
    infos = _episode(pol, seed=7, frames=400)
    spec = gym.make(ENV_ID, device=DEVICE).unwrapped.device_spec
    assert {float(i["cpu_hz"]) for i in infos} == {float(spec.cpu_freqs_hz[18])}
    assert {float(i["gpu_hz"]) for i in infos} == {float(spec.gpu_freqs_hz[9])}
    fr = _frames(infos)
    assert all(f["dvfs_switches"] == 0 for f in fr[1:])
    assert np.mean([f["run_ms"] for f in fr]) <= 1.1 * 25.0
    assert pol.reference_ms > 25.0  # the budget binds: the full network is slower at these clocks
    stats = pol.stats()
    shares = [stats[f"exit{e}_share"] for e in range(5)]
    assert np.allclose(shares, np.bincount([f["exit"] for f in fr], minlength=5) / len(fr), atol=0.01)
    assert stats["eenet_budget_ms"] == pytest.approx(25.0) and stats["offline_runs"] > 0
    # At "max" the clocks are the top allowed ones throughout.
    top = at_max[0.7]["policy"]
    infos = _episode(top, seed=8, frames=50)
    assert {float(i["cpu_hz"]) for i in infos} == {float(spec.cpu_freqs_hz[-1])}
    assert all(f["dvfs_switches"] == 0 for f in _frames(infos))


@pytest.mark.slow
def test_default_governors_drive_the_clocks(at_max) -> None:
    """With clocks='default' the env runs the board's governors (env_kwargs) and the policy's level part is a
    constant. EENet's exits depend on the confidences alone: on the same stream they are the ones it takes at
    the top clocks, so the budget holds in the same work units (latency at the top clocks); the governors turn
    the saved work into slower clocks, so the wall-clock latency is longer."""
    pol = EENetPolicy(budget=0.7)
    assert pol.env_kwargs == {"governors": "default"}
    actions = []

    class Spy(EENetPolicy):
        def predict(self, observation, state=None, episode_start=None, deterministic=True):
            a, s = super().predict(observation, state, episode_start, deterministic)
            actions.append(a[1:].tolist())
            return a, s

    spy = Spy(budget=0.7)
    fr = _frames(_episode(spy, seed=0))
    assert len({tuple(a) for a in actions}) == 1
    assert np.array_equal([f["exit"] for f in fr], at_max[0.7]["exits"][0])
    assert spy.reference_ms == at_max[0.7]["policy"].reference_ms
    assert np.mean([f["run_ms"] for f in fr]) > 1.1 * at_max[0.7]["rows"][0, 0]  # the governors slow the clocks
    assert len({float(f["gpu_hz"]) for f in fr}) > 1  # ... and move them
    # The same env without governors would obey the levels: the policy refuses it.
    with pytest.raises(ConfigError, match="governors='default'"):
        _episode(EENetPolicy(budget=0.7), seed=0, frames=5, governors=None)
    with pytest.raises(ConfigError, match="ignore them"):
        _episode(EENetPolicy(budget=0.7, clocks="max"), seed=0, frames=5, governors="default")


# ---------------------------------------------------------------------------------------------- training streams


def _trace(path, seed: int, frames: int = 600):
    """A recorded-trace stand-in: a seeded synthetic stream saved as an e4gym trace."""
    from e4gym.workload import SyntheticVideo, save_trace

    b = SyntheticVideo([0.4, 0.56, 0.67, 0.73, 0.7769], seed=seed).batch(frames)
    return save_trace(path, model="efficientnet_b0", fps=30.0, features=b.features,
                      feature_change=b.feature_change, pooled=None,
                      predictions=np.where(b.correct, 0, 1), confidence=b.confidence, correct=b.correct,
                      labels=np.zeros(frames, np.int64), scene=b.scene)


def test_refused_on_its_own_training_stream(tmp_path) -> None:
    """Trained on the scored trace, the harness's check refuses the episode; by default on a trace workload it
    trains on synthetic video of the network; trained on another trace it runs, and it names both halves (train,
    validation) of that trace as its streams."""
    scored, other = _trace(tmp_path / "scored.npz", 1), _trace(tmp_path / "train.npz", 2)
    kw = {"clocks": "max", "train_steps": 20}
    with pytest.raises(ConfigError, match="overlaps the stream it trained on"):
        _episode(EENetPolicy(train_workload=str(scored), **kw), seed=0, frames=20, workload=str(scored))
    default = EENetPolicy(train_streams=2, train_frames=300, **kw)
    assert len(_frames(_episode(default, seed=0, frames=20, workload=str(scored)))) == 20
    assert {k[0] for k in default.training_streams()} == {"synthetic"}
    pol = EENetPolicy(train_workload=str(other), **kw)
    assert len(_frames(_episode(pol, seed=0, frames=20, workload=str(scored)))) == 20
    keys = pol.training_streams()
    assert len(keys) == 2 and {k[0] for k in keys} == {"trace"}


def test_synthetic_training_streams_are_declared() -> None:
    """On the synthetic workload EENet names its training and validation streams (one seed >= 30 000 each), and
    an episode on one of them is refused."""
    pol = EENetPolicy(clocks="max", train_streams=3, train_frames=300, train_steps=20)
    _episode(pol, seed=0, frames=5)
    keys = pol.training_streams()
    assert len(keys) == 3 and all(k[0] == "synthetic" and k[2] >= 30_000 for k in keys)
    env = gym.make(pol.env_id, device=DEVICE, episode_frames=5)
    env.unwrapped.stream_key = lambda: next(iter(keys))
    with pytest.raises(ConfigError, match="overlaps the stream it trained on"):
        run_episode(pol, env, seed=0)


# ---------------------------------------------------------------------------------------------- arguments


@pytest.mark.parametrize(("kwargs", "words"), [
    ({"budget": 0}, "budget"),
    ({"budget": 1.5}, "budget"),
    ({"budget": "half"}, "budget"),
    ({"budget_ms": -3}, "budget_ms"),
    ({"budget_ms": 20.0}, "fixed clocks"),  # the default governors choose the clocks
    ({"clocks": "turbo"}, "clocks"),
    ({"clocks": [1, 2, 3, 4]}, "clocks"),
    ({"clocks": [1.5, 2]}, "clocks"),
    ({"frame_features": 1}, "frame_features"),
    ({"margin": 1.0}, "margin"),
    ({"val_share": 0}, "val_share"),
    ({"train_streams": 1}, "train_streams"),
    ({"train_frames": 2.5}, "train_frames"),
    ({"seed": -1}, "seed"),
    ({"train_workload": 3}, "train_workload"),
])
def test_bad_arguments(kwargs, words) -> None:
    with pytest.raises(ConfigError, match=words) as info:
        EENetPolicy(**kwargs)
    assert "\n" not in str(info.value) and repr(next(iter(kwargs.values()))) in str(info.value)


@pytest.mark.parametrize(("kwargs", "env_kw", "words"), [
    ({"budget": 0.1, "clocks": "max"}, {}, "below the cost of exiting every frame at the first exit"),
    ({"budget_ms": 1.0, "clocks": "max"}, {}, "budget_ms=1"),
    ({"clocks": [99, 3]}, {}, "cpu level 99"),
    ({"clocks": [3, 3, 3]}, {}, "control_memory"),
])
def test_bad_arguments_at_bind(kwargs, env_kw, words) -> None:
    """What only the env can tell (the exits' costs, the level tables) is checked at bind, before training."""
    with pytest.raises(ConfigError, match=words) as info:
        _episode(EENetPolicy(**kwargs), seed=0, frames=5, **env_kw)
    assert "\n" not in str(info.value)


def test_needs_the_block_env_and_a_bind() -> None:
    pol = EENetPolicy(clocks="max")
    with pytest.raises(ConfigError, match="not bound"):
        pol.predict(np.zeros(16, np.float32))
    env = gym.make("e4gym/EarlyExitDVFS-v1", device=DEVICE, episode_frames=5)
    with pytest.raises(ConfigError, match=ENV_ID):
        run_episode(pol, env, seed=0)


# ---------------------------------------------------------------------------------------------- harness


@pytest.mark.slow
def test_runs_through_the_benchmark_harness(tmp_path, at_max) -> None:
    """Registered as `eenet`, it runs in the harness on the block env with its stats and a tiny decision time."""
    from e4gym.bench import run_benchmark
    from e4gym.bench.policies import registered_policies

    assert "eenet" in registered_policies()
    cfg = {
        "name": "eenet", "description": "EENet through the harness", "env": {"episode_frames": 60},
        "matrix": {"device": [DEVICE], "model": ["efficientnet_b0"], "fps": [30], "deadline_ms": [None]},
        "seeds": [0],
        "policies": [{"name": "eenet", "args": {"budget": 0.7, "clocks": "max"}, "label": "eenet"},
                     {"name": "eenet", "args": {"budget": 0.7}, "label": "eenet-default"}],
    }
    res = run_benchmark(cfg, tmp_path / "out", jobs=1, plots=False, tensorboard=False)
    assert res.ok, [f.describe() for f in res.failures]
    rows = {r["label"]: r for r in res.rows}
    for row in rows.values():
        assert row["env_id"] == ENV_ID and row["eenet_budget"] == pytest.approx(0.7)
        assert row["decision_p50_ms"] < 0.5
        assert sum(row[f"exit{e}_share"] for e in range(5)) == pytest.approx(1.0)
