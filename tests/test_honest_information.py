"""The rule of DESIGN.md "What a policy may know", enforced: policies read only what a controller on the board
could read (observation, infos, PolicyContext with a *measured* cost model); only declared bounds read the
emulator's model; profiling runs cost board time and energy."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import e4gym  # noqa: F401  (registers the envs)
from e4gym.errors import ConfigError, SettingError
from e4gym.hardware.costmodel import MeasuredCostModel
from e4gym.hardware.model import cost_table, power_table
from e4gym.policy import PolicyContext

ROOT = Path(__file__).resolve().parents[1]
#: Modules that only a clairvoyant bound may import: the emulator, its analytic model and its calibration.
FORBIDDEN = ("e4gym.hardware.model", "e4gym.hardware.emulator", "e4gym.hardware.calibration")


def _imports(tree: ast.AST) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
    return out


def _declares_bound(tree: ast.AST) -> bool:
    """Every class with a ``predict`` in the module declares ``clairvoyant = True``."""
    classes = [n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)
               and any(isinstance(b, ast.FunctionDef) and b.name == "predict" for b in n.body)]
    def bound(c: ast.ClassDef) -> bool:
        return any(isinstance(s, ast.Assign) and any(getattr(t, "id", None) == "clairvoyant" for t in s.targets)
                   and isinstance(s.value, ast.Constant) and s.value.value is True for s in c.body)
    return bool(classes) and all(bound(c) for c in classes)


def _policy_modules() -> list[Path]:
    return sorted(p for d in ("agents", "baselines") for p in (ROOT / d).rglob("*.py"))


@pytest.mark.parametrize("path", _policy_modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_only_declared_bounds_read_the_emulator_or_its_model(path: Path) -> None:
    text = path.read_text()
    tree = ast.parse(text)
    if _declares_bound(tree):
        return
    bad = sorted(m for m in _imports(tree) if m.startswith(FORBIDDEN))
    assert not bad, f"{path.relative_to(ROOT)} imports {bad}: only clairvoyant bounds may read the emulator's model"
    # The device YAML's model coefficients (spec.model: leakage, transition delays, ...) are the emulator's too.
    assert not re.search(r"spec\.model\b", text), f"{path.relative_to(ROOT)} reads spec.model (the emulator's model)"


def test_the_scan_would_catch_a_forbidden_import() -> None:
    tree = ast.parse("from e4gym.hardware.model import cost_table\nclass P:\n    def predict(self): ...\n")
    assert not _declares_bound(tree) and "e4gym.hardware.model" in _imports(tree)
    bound = ast.parse("class O:\n    clairvoyant = True\n    def predict(self): ...\n")
    assert _declares_bound(bound)


def test_the_oracle_is_a_declared_bound() -> None:
    assert _declares_bound(ast.parse((ROOT / "baselines" / "oracle.py").read_text()))


# ---------------------------------------------------------------------------------------------- cost model


def test_context_cost_model_is_measured_not_the_analytic_model() -> None:
    env = gym.make("e4gym/EarlyExitDVFS-v1", device="xavier-nx")
    ctx = PolicyContext.for_env(env)
    cm = ctx.cost_model  # the policy's view of the env's measured model
    assert isinstance(cm.model, MeasuredCostModel) and cm.source == "emulated"
    s = env.unwrapped.setup
    w = s.profile.frame_work(-1)
    lat = cm.latency_s(w)[:, :, 0]
    spec = s.spec
    table = cost_table(spec, w, power_table(spec, spec.power_mode(s.power_mode).cpu_online), 1)
    mc, mg, me = s.max_levels
    ana = table.latency_s.reshape(spec.n_levels)[: mc + 1, : mg + 1, me]
    rel = lat / ana - 1.0
    # Close to the model (it is the same board), but measured: noise makes it differ point by point.
    assert np.median(np.abs(rel)) < 0.05 and np.abs(rel).max() > 1e-4
    assert cm.offline.runs > 0 and cm.offline.seconds > 0 and cm.offline.energy_j > 0
    assert set(cm.stats()) == {"offline_runs", "offline_s", "offline_energy_j"}
    # A policy is charged the tables it read, not what others sharing the model made it measure.
    other = ctx.cost_model
    other.latency_s(s.profile.frame_work(0))
    assert 0 < other.stats()["offline_runs"] < cm.stats()["offline_runs"] + other.stats()["offline_runs"]
    assert other.stats()["offline_runs"] < cm.model.offline.runs
    env.close()


def test_measured_transition_delays_are_close_to_the_board() -> None:
    env = gym.make("e4gym/EarlyExitDVFS-v1", device="xavier-nx")
    s = env.unwrapped.setup
    d = env.unwrapped.cost_model().measure_transitions(s.profile.frame_work(-1))
    true = s.spec.model.transition_delay_s  # the test may read the emulator's model; policies may not
    # The CPU clock moves the latency little, so its delay is the noisier estimate.
    assert d[0] == pytest.approx(true[0], abs=2.5e-3) and d[1] == pytest.approx(true[1], abs=2e-3)
    assert d[2] == 0.0  # memory is not controlled
    env.close()


def test_cost_model_rejects_bad_options() -> None:
    with pytest.raises(ConfigError, match="frames"):
        MeasuredCostModel(object(), (1, 1, 1), frames=0)


# ---------------------------------------------------------------------------------------------- profiling runs


def _run(profile: bool) -> tuple[dict, dict]:
    env = gym.make("e4gym/EarlyExitDVFS-v1", device="xavier-nx").unwrapped
    env.reset(seed=3)
    a = np.array([4, 24, 14])
    env.step(a)
    pr = env.profiling_run(4, [[24, 14]]) if profile else None
    _, _, _, _, info = env.step(a)
    return info, {"pr": pr}


def test_a_profiling_run_costs_the_next_frame_time_and_energy() -> None:
    base, _ = _run(False)
    charged, extra = _run(True)
    pr = extra["pr"]
    assert pr.latency_s > 0.02 and pr.energy_j > 0  # a full frame at the top clocks: about 30 ms
    assert charged["profiling_runs"] == 1 and base["profiling_runs"] == 0
    assert charged["profiling_ms"] == pytest.approx(pr.latency_s * 1e3)
    # The board was busy: the frame queued behind the profiling run and missed its deadline.
    assert charged["latency_ms"] > base["latency_ms"] + 0.9 * pr.latency_s * 1e3
    assert charged["deadline_missed"] and not base["deadline_missed"]
    assert charged["energy_j"] > base["energy_j"] + 0.5 * charged["profiling_energy_j"]
    assert charged["profiling_energy_j"] > 0


def test_profiling_run_checks_its_input() -> None:
    env = gym.make("e4gym/EarlyExitDVFS-v1", device="xavier-nx").unwrapped
    with pytest.raises(gym.error.ResetNeeded):
        env.profiling_run(0, [[0, 0]])
    env.reset(seed=0)
    with pytest.raises(SettingError, match="exit"):
        env.profiling_run(9, [[0, 0]])
    with pytest.raises(SettingError, match="cpu_level"):
        env.profiling_run(0, [[99, 0]])


def test_block_env_profiles_only_between_frames() -> None:
    env = gym.make("e4gym/EarlyExitDVFSBlock-v1", device="xavier-nx").unwrapped
    env.reset(seed=0)
    n_blocks = env.setup.profile.exits[1].after_block + 1
    pr = env.profiling_run(1, np.tile([24, 14], (n_blocks, 1)))  # per-layer rows: one per block
    assert pr.latency_s > 0
    env.step(np.array([0, 24, 14]))
    with pytest.raises(ConfigError, match="between frames"):
        env.profiling_run(1, [[24, 14]])


def test_e4_reports_its_profiling_and_offline_work() -> None:
    from agents.e4 import E4Policy
    from e4gym.policy import run_episode

    p = E4Policy(train_frames=600, train_streams=2, train_epochs=1)
    env = gym.make(p.env_id, device="xavier-nx", episode_frames=60)
    infos = run_episode(p, env, seed=0)
    st = p.stats()
    assert st["offline_runs"] > 1000 and st["offline_energy_j"] > 0  # the measured cost model's sweep
    assert st["profiler_runs"] == sum(i["profiling_runs"] for i in infos)
    env.close()


def test_a_coarse_sweep_interpolates_between_measured_levels() -> None:
    from e4gym.envs.common import resolve_setup
    from e4gym.hardware.costmodel import emulated_cost_model

    s = resolve_setup(device="xavier-nx", model="efficientnet_b0")
    w = s.profile.frame_work(-1)
    full = emulated_cost_model(s)
    coarse = emulated_cost_model(s, stride=4)
    lf, lc = full.latency_s(w), coarse.latency_s(w)
    assert lc.shape == lf.shape
    assert coarse.offline.runs < full.offline.runs / 10  # 7 × 5 settings measured instead of 25 × 15
    assert np.median(np.abs(lc / lf - 1.0)) < 0.05  # latency is smooth in the levels: interpolation holds
    with pytest.raises(ConfigError, match="stride"):
        emulated_cost_model(s, stride=0)
