"""The benchmark harness (`e4gym bench`): config validation, runner, resume, outputs, TensorBoard, CLI."""

from __future__ import annotations

import copy
import csv
import importlib.metadata as md
import json
import math
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import yaml

import e4gym  # noqa: F401
from e4gym.bench import load_experiment, run_benchmark
from e4gym.bench import policies as bench_policies
from e4gym.bench.policies import make_policy
from e4gym.cli import main
from e4gym.errors import ConfigError, UnknownNameError
from e4gym.policy import run_episode

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # bench_policies must be importable here and in spawned workers
    sys.path.insert(0, str(HERE))

FRAMES = 200
SCENARIO = "xavier-nx_efficientnet_b0_30fps_dl-period"
BASE: dict = {
    "name": "small",
    "description": "harness test",
    "env": {"episode_frames": FRAMES},
    "matrix": {"device": ["xavier-nx"], "model": ["efficientnet_b0"], "fps": [30], "deadline_ms": [None]},
    "seeds": [0, 1],
    "policies": [
        "performance",
        "default",
        "best_static",
        "oracle",
        {"name": "bench_policies:Profiled", "label": "profiled", "args": {"every": 4}},
    ],
}
LABELS = ["performance", "default", "best_static", "oracle", "profiled"]


def write_config(path: Path, data: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def config(**changes) -> dict:
    data = copy.deepcopy(BASE)
    data.update(changes)
    return data


def started(out: Path) -> dict[str, float]:
    """started_at of every task result under out/runs (by relative path)."""
    return {str(p.relative_to(out)): json.loads(p.read_text())["started_at"] for p in (out / "runs").rglob("*.json")}


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """The base config run once in-process, with plots and TensorBoard."""
    root = tmp_path_factory.mktemp("bench")
    cfg = write_config(root / "small.yaml", BASE)
    res = run_benchmark(cfg, root / "out", jobs=1)
    assert res.ok, [f.describe() for f in res.failures]
    return res


# ---------------------------------------------------------------------------------------------- outputs


def _cell_matches(value, cell: str) -> bool:
    if value is None:
        return cell == ""
    if isinstance(value, bool):
        return cell == str(value)
    if isinstance(value, int):
        return int(cell) == value
    if isinstance(value, float):
        return float(cell) == value or (math.isnan(value) and math.isnan(float(cell)))
    return cell == str(value)


def _table_rows(report: str, title_fragment: str) -> dict[str, list[str]]:
    """The cells of the report's table under the heading containing ``title_fragment``, by policy label."""
    section = report.split(title_fragment, 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        if line.startswith("| ") and not line.startswith("| policy"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows[cells[0].removesuffix(" (bound)")] = cells
    return rows


def test_outputs_exist_and_agree(small) -> None:
    out = small.out
    assert small.ran == 10 and small.reused == 0 and len(small.rows) == 10
    assert (out / "report.md").read_text() == small.report
    data = json.loads((out / "results.json").read_text())
    assert data["rows"] == small.rows
    with open(out / "results.csv", newline="") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == data["columns"]
        csv_rows = list(reader)
    assert len(csv_rows) == len(data["rows"])
    for cr, jr in zip(csv_rows, data["rows"]):
        for col in data["columns"]:
            assert _cell_matches(jr.get(col), cr[col]), (col, jr.get(col), cr[col])
    assert [(r["label"], r["seed"]) for r in data["rows"]] == [(lab, s) for lab in LABELS for s in (0, 1)]

    table = _table_rows(small.report, "xavier-nx · efficientnet_b0 · 30 fps · deadline 33.3 ms")
    assert list(table) == LABELS
    assert "oracle (bound)" in small.report and "performance (bound)" not in small.report
    by = {lab: [r for r in small.rows if r["label"] == lab] for lab in LABELS}
    mean = {lab: {k: float(np.mean([r[k] for r in rs])) for k in rs[0] if isinstance(rs[0][k], float)}
            for lab, rs in by.items()}
    for lab, cells in table.items():
        m = mean[lab]
        assert cells[1] == "2"
        assert cells[2].startswith(f"{m['energy_per_frame_j']:.4f} ± ")
        assert cells[3] == f"{m['measured_energy_per_frame_j']:.4f}"
        for cell, ref in ((cells[4], "default"), (cells[5], "oracle")):
            if lab == ref:
                assert cell == "+0.0"
                continue
            # The paired per-seed change against the reference, ± the 95 % CI over the two seeds (t = 12.706).
            rel = [100 * (a["energy_per_frame_j"] / b["energy_per_frame_j"] - 1) for a, b in zip(by[lab], by[ref])]
            half = 12.706 * np.std(rel, ddof=1) / np.sqrt(2)
            assert cell == f"{np.mean(rel):+.1f} ± {half:.1f}"
        assert cells[8] == f"{m['latency_p99_ms']:.2f}"
        assert cells[9] == f"{100 * m['deadline_miss_rate']:.2f}"
        assert cells[11] == f"{100 * (m['accuracy'] - mean['performance']['accuracy']):+.1f}"
        assert cells[15] == f"{m['decision_p50_ms']:.3f}" and cells[16] == f"{m['decision_p99_ms']:.3f}"
    # Profiler columns, then the offline measuring of the policies that planned on the measured cost model.
    assert table["profiled"][-3:] == ["50", "25.00", "–"] and table["oracle"][-3:] == ["–", "–", "–"]
    assert float(table["best_static"][-1]) > 0
    # The oracle is cheaper than the stock governors on this scenario (a sanity check of the figures).
    assert mean["oracle"]["energy_per_frame_j"] < mean["default"]["energy_per_frame_j"]

    for name in ("bars", "scatter", "traces"):
        png = out / "plots" / SCENARIO / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name]  # atomic writes leave no temporary files


def _hand_metrics(infos: list[dict]) -> dict[str, float]:
    frames = [i for i in infos if i.get("frame_done", True)]
    e = np.array([i["energy_j"] for i in frames])
    p = np.array([i["power_w"] for i in frames])
    lat = np.array([i["latency_ms"] for i in frames])
    return {
        "frames": len(frames),
        "energy_per_frame_j": e.mean(),
        "measured_energy_per_frame_j": np.mean([i["measured_energy_j"] for i in frames]),
        "latency_mean_ms": lat.mean(),
        "latency_p95_ms": np.percentile(lat, 95),
        "latency_p99_ms": np.percentile(lat, 99),
        "deadline_miss_rate": np.mean([i["deadline_missed"] for i in frames]),
        "accuracy": np.mean([i["correct"] for i in frames]),
        "mean_exit": np.mean([i["exit"] for i in frames]),
        "throttled_share": np.mean([i["throttled"] for i in frames]),
        "switches_per_frame": np.mean([i["dvfs_switches"] for i in frames]),
        "avg_power_w": e.sum() / (e / p).sum(),
        "peak_temp_c": max(i["temp_c"] for i in infos),
        "episode_reward": sum(i["reward"] for i in infos),
    }


@pytest.mark.parametrize(("label", "seed"), [("performance", 1), ("oracle", 0)])
def test_metrics_match_hand_computation(small, label, seed) -> None:
    row = next(r for r in small.rows if r["label"] == label and r["seed"] == seed)
    policy = make_policy(label)
    env = gym.make("e4gym/EarlyExitDVFS-v1", device="xavier-nx", model="efficientnet_b0", fps=30,
                   episode_frames=FRAMES, **getattr(policy, "env_kwargs", {}))
    infos = run_episode(policy, env, seed=seed)
    hand = _hand_metrics(infos)
    assert hand["frames"] == row["frames"] == FRAMES
    for k, v in hand.items():
        assert row[k] == pytest.approx(v, rel=1e-9, abs=1e-12), k
    assert row["clairvoyant"] is (label == "oracle")
    with np.load(small.out / row["trace"]) as z:
        np.testing.assert_allclose(z["cpu_hz"], [i["cpu_hz"] for i in infos])
        np.testing.assert_array_equal(z["exit"], [i["exit"] for i in infos])
        np.testing.assert_allclose(z["energy_j"], [i["energy_j"] for i in infos])
        np.testing.assert_allclose(z["latency_ms"], [i["latency_ms"] for i in infos])


def test_policy_stats_become_columns(small) -> None:
    rows = [r for r in small.rows if r["label"] == "profiled"]
    assert [r["profiler_evaluations"] for r in rows] == [FRAMES / 4] * 2
    assert all(r["profiler_share"] == 0.25 for r in rows)
    assert all("profiler_share" not in r for r in small.rows if r["label"] != "profiled")
    assert "profiler evals" in small.report and "profiler share %" in small.report


def test_block_env_policy_counts_frames_only(tmp_path) -> None:
    cfg = config(seeds=[3], env={"episode_frames": 20}, policies=[{"name": "bench_policies:BlockTop", "label": "blk"}])
    res = run_benchmark(cfg, tmp_path / "out", jobs=1, plots=False, tensorboard=False)
    assert res.ok
    (row,) = res.rows
    assert row["env_id"] == "e4gym/EarlyExitDVFSBlock-v1"
    policy = make_policy("bench_policies:BlockTop")
    env = gym.make(policy.env_id, device="xavier-nx", model="efficientnet_b0", fps=30, episode_frames=20)
    infos = run_episode(policy, env, seed=3)
    assert len(infos) > 20  # one step per block
    hand = _hand_metrics(infos)
    assert row["frames"] == hand["frames"] == 20
    for k, v in hand.items():
        assert row[k] == pytest.approx(v, rel=1e-9, abs=1e-12), k
    with np.load(tmp_path / "out" / row["trace"]) as z:
        assert len(z["exit"]) == 20 and (z["exit"] == 4).all()
        # A frame's decision time sums the decisions of its blocks.
        assert len(z["decision_ms"]) == 20 and (z["decision_ms"] > 0).all()
        assert row["decision_p50_ms"] == pytest.approx(np.percentile(z["decision_ms"], 50), rel=1e-12)
    steps = [i["decision_ms"] for i in infos]
    assert len(steps) > 20 and all(d >= 0 for d in steps)


# ---------------------------------------------------------------------------------------------- decision time


def test_decision_time_is_reported(small, tmp_path) -> None:
    for r in small.rows:
        assert 0 <= r["decision_p50_ms"] <= r["decision_p99_ms"] and r["decision_mean_ms"] > 0
        with np.load(small.out / r["trace"]) as z:
            d = z["decision_ms"]
        assert len(d) == FRAMES
        assert r["decision_p50_ms"] == pytest.approx(np.percentile(d, 50), rel=1e-12)
        assert r["decision_p99_ms"] == pytest.approx(np.percentile(d, 99), rel=1e-12)
        assert r["decision_mean_ms"] == pytest.approx(d.mean(), rel=1e-12)
    assert "decide p50 ms" in small.report and "decide p99 ms" in small.report
    slow = {"name": "bench_policies:Slow", "label": "slow", "args": {"ms": 3}}
    res = run_benchmark(config(seeds=[0], env={"episode_frames": 20}, policies=["performance", slow]),
                        tmp_path / "out", jobs=1, plots=False)
    assert res.ok
    perf, slow_row = res.rows
    assert 3.0 <= slow_row["decision_p50_ms"] <= slow_row["decision_p99_ms"] < 1000.0
    assert perf["decision_p99_ms"] < 3.0
    table = _table_rows(res.report, "xavier-nx · efficientnet_b0")
    assert float(table["slow"][15]) >= 3.0
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tmp_path / "out" / "tb" / SCENARIO / "slow"))
    acc.Reload()
    for tag, col in (("decision/p50_ms", "decision_p50_ms"), ("decision/p99_ms", "decision_p99_ms"),
                     ("decision/mean_ms", "decision_mean_ms")):
        assert [e.value for e in acc.Scalars(tag)] == [pytest.approx(slow_row[col], rel=1e-6)]
    assert len(acc.Scalars("trace/decision_ms")) == 20


def test_in_process_tasks_run_with_one_torch_thread(tmp_path) -> None:
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        cfg = config(seeds=[0], env={"episode_frames": 5},
                     policies=[{"name": "bench_policies:TorchThreads", "label": "threads"}])
        res = run_benchmark(cfg, tmp_path / "out", jobs=1, plots=False, tensorboard=False)
        assert res.ok and res.rows[0]["torch_threads"] == 1
        assert torch.get_num_threads() == 2  # the caller's setting is restored
    finally:
        torch.set_num_threads(before)


# ---------------------------------------------------------------------------------------------- training streams


def test_policy_is_not_scored_on_its_training_stream(tmp_path, monkeypatch) -> None:
    from e4gym.envs.base import StreamEnv

    key = ["synthetic", "f" * 64, 7]
    monkeypatch.setattr(StreamEnv, "stream_key", lambda self: tuple(key), raising=False)
    same = {"name": "bench_policies:TrainedOn", "label": "same", "args": {"streams": [key]}}
    other = {"name": "bench_policies:TrainedOn", "label": "other", "args": {"streams": [[*key[:2], 8]]}}
    res = run_benchmark(config(seeds=[0], env={"episode_frames": 10}, policies=[same, other, "performance"]),
                        tmp_path / "out", jobs=1, plots=False, tensorboard=False)
    assert not res.ok and [r["label"] for r in res.rows] == ["other", "performance"]
    (fail,) = res.failures
    assert fail.label == "same" and fail.error.startswith("ConfigError: policy 'trained-on' would be scored on ")
    assert "synthetic seed 7" in fail.error and "train_workload=" in fail.error and "\n" not in fail.error
    assert "## Failures" in res.report and "synthetic seed 7" in res.report


# ---------------------------------------------------------------------------------------------- TensorBoard


def test_tensorboard_runs_match_results(small) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    runs = sorted(p.name for p in (small.out / "tb" / SCENARIO).iterdir())
    assert runs == sorted(LABELS)
    for label in ("best_static", "profiled"):
        acc = EventAccumulator(str(small.out / "tb" / SCENARIO / label))
        acc.Reload()
        rows = {r["seed"]: r for r in small.rows if r["label"] == label}
        for tag, col in [("energy/frame_j", "energy_per_frame_j"), ("energy/measured_frame_j",
                                                                     "measured_energy_per_frame_j"),
                         ("latency/mean_ms", "latency_mean_ms"), ("latency/p95_ms", "latency_p95_ms"),
                         ("latency/p99_ms", "latency_p99_ms"), ("deadline/miss_rate", "deadline_miss_rate"),
                         ("accuracy/top1", "accuracy"), ("dvfs/switches_per_frame", "switches_per_frame"),
                         ("thermal/throttled_share", "throttled_share"), ("decision/p50_ms", "decision_p50_ms"),
                         ("decision/p99_ms", "decision_p99_ms")]:
            events = acc.Scalars(tag)
            assert [e.step for e in events] == [0, 1], tag
            for e in events:
                assert e.value == pytest.approx(rows[e.step][col], rel=1e-6, abs=1e-9), tag
        with np.load(small.out / rows[0]["trace"]) as z:
            for tag, key, scale in [("trace/cpu_mhz", "cpu_hz", 1e-6), ("trace/gpu_mhz", "gpu_hz", 1e-6),
                                    ("trace/exit", "exit", 1.0), ("trace/temp_c", "temp_c", 1.0),
                                    ("trace/energy_j", "energy_j", 1.0), ("trace/latency_ms", "latency_ms", 1.0),
                                    ("trace/decision_ms", "decision_ms", 1.0)]:
                events = acc.Scalars(tag)
                assert [e.step for e in events] == list(range(FRAMES))
                np.testing.assert_allclose([e.value for e in events], z[key] * scale, rtol=1e-6)
    acc = EventAccumulator(str(small.out / "tb" / SCENARIO / "profiled"))
    acc.Reload()
    assert [e.value for e in acc.Scalars("policy/profiler_share")] == [0.25, 0.25]


# ---------------------------------------------------------------------------------------------- resume


def test_resume_reuses_finished_tasks_and_force_reruns(tmp_path) -> None:
    cfg = write_config(tmp_path / "c.yaml", config(policies=["performance", "best_static"]))
    out = tmp_path / "out"
    first = run_benchmark(cfg, out, jobs=1, plots=False)
    assert first.ran == 4 and first.ok
    stamps = started(out)
    assert len(stamps) == 4
    second = run_benchmark(cfg, out, jobs=1, plots=False)
    assert (second.ran, second.reused) == (0, 4)
    assert started(out) == stamps
    assert second.rows == first.rows
    # TensorBoard runs are rewritten, not appended to.
    assert all(len(list(d.iterdir())) == 1 for d in (out / "tb" / SCENARIO).iterdir())
    forced = run_benchmark(cfg, out, jobs=1, force=True, plots=False, tensorboard=False)
    assert forced.ran == 4
    assert all(started(out)[k] > v for k, v in stamps.items())


def test_changed_config_reruns_only_the_changed_tasks(tmp_path) -> None:
    out = tmp_path / "out"
    static = {"name": "static", "label": "st", "args": {"cpu_level": 10, "gpu_level": 5}}
    run_benchmark(config(policies=["performance", static]), out, jobs=1, plots=False, tensorboard=False)
    stamps = started(out)
    result_file = out / "runs" / SCENARIO / "st" / "seed0.json"
    old_hash = json.loads(result_file.read_text())["hash"]
    static["args"]["cpu_level"] = 12
    res = run_benchmark(config(policies=["performance", static]), out, jobs=1, plots=False, tensorboard=False)
    assert res.ran == 2 and res.reused == 2
    now = started(out)
    for k, v in stamps.items():
        assert (now[k] > v) if "/st/" in k else (now[k] == v), k
    stored = json.loads(result_file.read_text())
    assert stored["hash"] != old_hash and stored["definition"]["args"]["cpu_level"] == 12
    assert res.rows[2]["label"] == "st" and res.rows[2]["hash"] == stored["hash"]
    old = run_benchmark(config(policies=["performance", static], env={"episode_frames": 50}), out, jobs=1,
                        plots=False, tensorboard=False)
    assert old.ran == 4 and all(r["frames"] == 50 for r in old.rows)


def test_failure_keeps_other_results_and_next_run_runs_only_missing(tmp_path, capsys) -> None:
    flag = tmp_path / "fail-now"
    flag.touch()
    flaky = {"name": "bench_policies:Flaky", "label": "flaky", "args": {"flag": str(flag)}}
    cfg = write_config(tmp_path / "c.yaml", config(policies=["performance", flaky, "best_static"]))
    out = tmp_path / "out"
    res = run_benchmark(cfg, out, jobs=1, plots=False)
    assert not res.ok and res.ran == 6 and len(res.rows) == 4
    assert [(f.label, f.seed) for f in res.failures] == [("flaky", 0), ("flaky", 1)]
    assert "RuntimeError: flaky policy" in res.failures[0].error and "Traceback" in res.failures[0].traceback
    assert "## Failures" in res.report and f"policy 'flaky' on scenario {SCENARIO}, seed 1" in res.report
    assert json.loads((out / "results.json").read_text())["failures"][0]["label"] == "flaky"
    stamps = started(out)
    assert len(stamps) == 4

    assert main(["bench", "--config", str(cfg), "--out", str(out), "--quiet", "--jobs", "1"]) == 1
    err = capsys.readouterr().err
    assert "2 task(s) failed" in err and "flaky" in err and "seed 0" in err

    flag.unlink()
    fixed = run_benchmark(cfg, out, jobs=1, plots=False)
    assert fixed.ok and fixed.ran == 2 and fixed.reused == 4
    now = started(out)
    assert {k: now[k] for k in stamps} == stamps and len(now) == 6


# ---------------------------------------------------------------------------------------------- parallel


def test_parallel_run_matches_in_process_run(small, tmp_path) -> None:
    res = run_benchmark(small.experiment, tmp_path / "par", jobs=2, plots=False, tensorboard=False)
    assert res.ok and res.ran == 10
    strip = lambda r: {k: v for k, v in r.items() if k != "wall_s" and not k.startswith("decision_")}  # noqa: E731
    assert [strip(r) for r in res.rows] == [strip(r) for r in small.rows]
    assert not [p for p in (tmp_path / "par").rglob("*") if ".tmp-" in p.name]


# ---------------------------------------------------------------------------------------------- bad configs


def _without(key: str) -> dict:
    data = config()
    del data[key]
    return data


BAD_CONFIGS = [
    (config(polices=["x"]), ConfigError, "unknown field(s) ['polices'] at the top level; allowed:"),
    (config(env={"episode_frame": 10}), ConfigError, "unknown field(s) ['episode_frame'] in 'env'; allowed:"),
    (config(matrix={"devices": ["xavier-nx"], "model": ["efficientnet_b0"]}), ConfigError,
     "unknown field(s) ['devices'] in 'matrix'"),
    (config(matrix={"device": ["nope"], "model": ["efficientnet_b0"]}), UnknownNameError,
     "unknown device 'nope'; known devices: ["),
    (config(matrix={"device": ["xavier-nx"], "model": ["vgg"]}), UnknownNameError, "unknown model 'vgg'"),
    (config(matrix={"device": ["xavier-nx"], "model": ["efficientnet_b0"], "fps": [-3]}), ConfigError, "fps"),
    (config(matrix={"device": ["xavier-nx"], "model": ["efficientnet_b0"], "power_mode": ["turbo"]}),
     UnknownNameError, "turbo"),
    (config(matrix={}), ConfigError, "'matrix' must be a non-empty mapping"),
    (_without("matrix"), ConfigError, "missing field 'matrix'"),
    (config(matrix={"device": [], "model": ["efficientnet_b0"]}), ConfigError, "'matrix.device' must be a non-empty"),
    (config(matrix={"device": "xavier-nx", "model": ["efficientnet_b0"]}), ConfigError, "non-empty list"),
    (config(matrix={"model": ["efficientnet_b0"]}), ConfigError, "no 'device'"),
    (config(matrix=[{"device": ["xavier-nx"], "model": ["efficientnet_b0"]}, {"model": ["mobilenet_v2"]}]),
     ConfigError, "no 'device' in 'matrix[1]'"),
    (config(matrix=[{"device": ["xavier-nx"], "model": ["efficientnet_b0"]}, {"device": [], "model": ["x"]}]),
     ConfigError, "'matrix[1].device' must be a non-empty list"),
    (config(matrix=[{"device": ["xavier-nx"], "model": ["efficientnet_b0"]}, 3]), ConfigError,
     "field 'matrix[1]' must be a non-empty mapping"),
    (config(env={"fps": 30}, matrix={"device": ["xavier-nx"], "model": ["efficientnet_b0"], "fps": [30]}),
     ConfigError, "'fps' is both in 'env' and in 'matrix'"),
    (config(seeds=[]), ConfigError, "'seeds' must be a non-empty list"),
    (config(seeds=[0, "a"]), ConfigError, "'seeds' must be a non-empty list of integers"),
    (config(seeds=[1, 1]), ConfigError, "'seeds' repeats [1]"),
    (config(policies=[]), ConfigError, "'policies' must be a non-empty list"),
    (config(policies=["magic"]), UnknownNameError, "unknown policy 'magic'; registered policies: ["),
    (config(policies=[{"name": "static", "args": {"cpu_level": 1, "gpu_level": 1, "turbo": True}}]), ConfigError,
     "policy 'static': bad args"),
    (config(policies=[{"name": "bench_policies:Profiled", "args": {"every": 0}}]), ConfigError,
     "every must be >= 1"),
    (config(policies=["performance", {"name": "static", "label": "performance", "args": {"cpu_level": 1,
                                                                                          "gpu_level": 1}}]),
     ConfigError, "duplicate policy label(s) ['performance']"),
    (config(policies=[{"name": "static", "policy": "static"}]), ConfigError, "exactly one of 'name' or 'policy'"),
    (config(policies=[{"name": "static", "arg": {}}]), ConfigError, "unknown field(s) ['arg'] in 'policies[0]'"),
    (config(policies=[{"name": "performance", "label": "a b"}]), ConfigError, "'policies[0].label' must be"),
    (config(policies=["bench_policies:Nope"]), UnknownNameError, "has no attribute 'Nope'"),
    (config(policies=["no_such_module_xyz:Policy"]), UnknownNameError, "cannot import module"),
    (config(policies=[{"policy": "sb3", "args": {"path": "/nonexistent/model.zip"}}]), ConfigError,
     "no saved model at '/nonexistent/model.zip'"),
]


@pytest.mark.parametrize(("data", "exc", "message"), BAD_CONFIGS)
def test_bad_config_fails_before_any_work(tmp_path, data, exc, message) -> None:
    cfg = write_config(tmp_path / "bad.yaml", data)
    out = tmp_path / "out"
    with pytest.raises(exc) as info:
        run_benchmark(cfg, out, jobs=1)
    assert message in str(info.value)
    assert str(cfg) in str(info.value) or exc is UnknownNameError
    assert not out.exists()


def test_bad_yaml_and_unknown_config_name(tmp_path) -> None:
    bad = tmp_path / "list.yaml"
    bad.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_experiment(bad)
    with pytest.raises(UnknownNameError, match=r"no experiment config 'nonexistent-exp'.*available: \["):
        load_experiment("nonexistent-exp")


def _patch_entry_points(monkeypatch, **extra: str) -> None:
    eps = dict(bench_policies._entry_points())
    for name, value in extra.items():
        eps[name] = md.EntryPoint(name, value, bench_policies.ENTRY_POINT_GROUP)
    monkeypatch.setattr(bench_policies, "_entry_points", lambda: eps)


def test_broken_entry_point_fails_only_configs_that_use_it(tmp_path, monkeypatch) -> None:
    _patch_entry_points(monkeypatch, broken="no_such_pkg_xyz.mod:Policy")
    assert "broken" in bench_policies.registered_policies()
    with pytest.raises(ConfigError, match=r"policy 'broken' is registered \(no_such_pkg_xyz.mod:Policy\) but cannot"):
        load_experiment(config(policies=["performance", "broken"]))
    assert len(load_experiment(config(policies=["performance"])).policies) == 1


def test_a_list_of_matrices_is_the_union_of_their_scenarios() -> None:
    exp = load_experiment(config(matrix=[
        {"device": ["xavier-nx", "orin-nx"], "model": ["efficientnet_b0"], "fps": [30]},
        {"device": ["xavier-nx"], "model": ["efficientnet_lite0"], "workload": ["clip:bikes"]},
    ]))
    assert [sc.name for sc in exp.scenarios] == ["xavier-nx_efficientnet_b0_30fps", "orin-nx_efficientnet_b0_30fps",
                                               "xavier-nx_efficientnet_lite0_workload-clip-bikes"]
    assert exp.matrix_keys == ("device", "model", "fps", "workload")
    assert exp.scenarios[-1].fps == 25.0  # the trace's rate
    with pytest.raises(ConfigError, match="same name"):
        load_experiment(config(matrix=[{"device": ["xavier-nx"], "model": ["efficientnet_b0"]}] * 2))


def test_shipped_configs_validate() -> None:
    quick = load_experiment("quickstart")
    assert quick.n_tasks == 55 and quick.seeds == (0, 1, 2, 3, 4)  # headline numbers: >= 5 seeds
    assert load_experiment("quickstart", seeds=[3]).seeds == (3,)
    with pytest.raises(ConfigError, match="seeds"):
        load_experiment("quickstart", seeds=[-1])
    (sc,) = quick.scenarios
    assert (sc.device, sc.model, sc.fps, sc.env_kwargs["episode_frames"]) == ("xavier-nx", "efficientnet_b0", 30.0,
                                                                              1000)
    assert sc.deadline_ms == pytest.approx(1000 / 30)
    assert [p.label for p in quick.policies] == ["performance", "powersave", "ondemand", "schedutil",
                                                 "nvhost_podgov", "default", "best_static", "oracle",
                                                 "oracle-strict", "e4", "e4-layer"]
    paper = load_experiment("e4-paper", frames=10)
    assert paper.n_tasks == 5 * 2 * 15 * 5 and paper.seeds == (0, 1, 2, 3, 4)
    assert {s.device for s in paper.scenarios} == {"jetson-nano", "jetson-tx2", "xavier-nx", "orin-nano", "agx-orin"}
    assert {s.model for s in paper.scenarios} == {"efficientnet_b0", "mobilenet_v2"}
    assert all(s.env_kwargs["episode_frames"] == 10 for s in paper.scenarios)


# ---------------------------------------------------------------------------------------------- SB3 and CLI


def test_saved_sb3_model_runs_and_a_new_model_reruns(tmp_path) -> None:
    from stable_baselines3 import PPO

    env = gym.make("e4gym/EarlyExitDVFS-v1", device="xavier-nx", model="efficientnet_b0", episode_frames=64)
    model = PPO("MlpPolicy", env, n_steps=128, batch_size=64, n_epochs=1, seed=0, device="cpu")
    model.learn(256)
    path = tmp_path / "ppo_tiny.zip"
    model.save(path)
    cfg = config(seeds=[0], env={"episode_frames": 40},
                 policies=[{"policy": "sb3", "label": "ppo", "args": {"path": str(path), "algo": "ppo"}},
                           str(path)])
    out = tmp_path / "out"
    res = run_benchmark(cfg, out, jobs=1, plots=False, tensorboard=False)
    assert res.ok and [r["label"] for r in res.rows] == ["ppo", "sb3-ppo_tiny"]
    assert res.rows[0]["frames"] == 40
    # Same model, same seed: both entries act identically.
    assert res.rows[0]["energy_per_frame_j"] == res.rows[1]["energy_per_frame_j"]
    model.learn(128)
    model.save(path)
    again = run_benchmark(cfg, out, jobs=1, plots=False, tensorboard=False)
    assert again.ran == 2  # the model file changed: its tasks are stale


def test_cli_runs_and_reports(tmp_path, capsys) -> None:
    cfg = write_config(tmp_path / "c.yaml", config(policies=["performance", "oracle"], seeds=[0]))
    out = tmp_path / "out"
    assert main(["bench", "--config", str(cfg), "--out", str(out), "--jobs", "1", "--quiet", "--frames", "30"]) == 0
    std = capsys.readouterr()
    assert "# Benchmark: small" in std.out and "oracle (bound)" in std.out and std.err == ""
    assert json.loads((out / "results.json").read_text())["rows"][0]["frames"] == 30
    assert main(["bench", "--config", str(tmp_path / "missing.yaml"), "--out", str(out)]) == 2
    assert "e4gym bench: error: no experiment config" in capsys.readouterr().err
    bad = write_config(tmp_path / "bad.yaml", config(policies=["magic"]))
    assert main(["bench", "--config", str(bad), "--out", str(tmp_path / "o2")]) == 2
    assert "unknown policy 'magic'" in capsys.readouterr().err
    assert not (tmp_path / "o2").exists()
    with pytest.raises(SystemExit):
        main(["bench", "--config", str(cfg), "--out", str(out), "--jobs", "0"])


def test_bench_cli_import_is_light() -> None:
    code = ("import argparse, sys; import e4gym.bench.cli as c; p = argparse.ArgumentParser(); "
            "c.add_bench_parser(p.add_subparsers()); "
            "print([m for m in ('torch', 'matplotlib', 'stable_baselines3', 'tqdm') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_runtime_is_a_scenario_argument(tmp_path) -> None:
    data = config(matrix={"device": ["xavier-nx"], "model": ["efficientnet_b0"],
                          "runtime": ["pytorch", "tensorrt-fp16"]})
    exp = load_experiment(write_config(tmp_path / "exp.yaml", data))
    assert [s.env_kwargs.get("runtime") for s in exp.scenarios] == ["pytorch", "tensorrt-fp16"]
    assert exp.scenarios[0].name != exp.scenarios[1].name
    with pytest.raises(UnknownNameError, match="unknown runtime 'onnx'"):
        load_experiment(write_config(tmp_path / "bad.yaml", config(
            matrix={"device": ["xavier-nx"], "model": ["efficientnet_b0"], "runtime": ["onnx"]})))
