"""The benchmark harness on the serving env family (``e4gym/BatchConcurrency-v0``): configs, tasks, rows, report,
TensorBoard and plots count decision intervals, not frames (issue 19)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import e4gym  # noqa: F401
from e4gym.bench import load_experiment, run_benchmark
from e4gym.bench.metrics import SERVING_METRICS, SERVING_TRACE_DOCS, env_family, interval_trace, serving_metrics
from e4gym.envs.wrappers import ServingEpisodeStats, episode_stats_wrapper
from e4gym.errors import ConfigError
from e4gym.policy import run_episode

#: Two serving scenarios (Poisson and bursty arrivals), two rule baselines, two seeds, 8 intervals.
SMALL = {
    "name": "serving-small",
    "env": {"episode_intervals": 8},
    "matrix": {"device": ["xavier-nx"], "arrivals": ["poisson", "bursty"]},
    "seeds": [0, 1],
    "policies": ["batch1", "triton_dynamic"],
}


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> tuple[Path, object]:
    out = tmp_path_factory.mktemp("serving") / "out"
    return out, run_benchmark(SMALL, out, jobs=1, quiet=True)


def test_a_serving_experiment_runs_and_reports_per_interval(small) -> None:
    out, res = small
    assert res.ok and res.ran == 8 and len(res.rows) == 8
    exp = load_experiment(SMALL)
    assert exp.family == "serving" and [sc.name for sc in exp.scenarios] == ["xavier-nx_arrivals-poisson",
                                                                            "xavier-nx_arrivals-bursty"]
    for r in res.rows:
        assert r["intervals"] == 8 and set(SERVING_METRICS) <= set(r)
        assert r["model"] == "efficientnet_b0+mobilenet_v2+resnet18+tiny_yolov3" and math.isnan(r["fps"])
        assert 0.0 <= r["slo_violation_rate"] <= 1.0 and r["throughput_rps"] > 0
        with np.load(out / r["trace"]) as z:
            assert set(SERVING_TRACE_DOCS) <= set(z.files) and z["reward"].shape == (8,)
            assert r["episode_reward"] == pytest.approx(float(z["reward"].sum()))
            assert r["utility_per_interval"] == pytest.approx(float(z["reward"].mean()))
    report = (out / "report.md").read_text()
    assert "Intervals per episode: 8" in report and "utility/interval" in report
    assert "Δ vs batch1" in report and "energy J/frame" not in report
    with open(out / "results.csv") as f:
        header = next(csv.reader(f))
    assert "utility_per_interval" in header and "energy_per_frame_j" not in header
    assert json.loads((out / "results.json").read_text())["scores"] == {"scenarios": {}, "suite": {}}
    assert (out / "plots" / "xavier-nx_arrivals-poisson" / "bars.png").read_bytes()[:4] == b"\x89PNG"
    assert list((out / "tb" / "xavier-nx_arrivals-bursty" / "triton_dynamic").glob("events.out.tfevents.*"))
    # The same config again: every task's files check out (counted by interval) and are reused.
    again = run_benchmark(SMALL, out, jobs=1, quiet=True)
    assert again.ran == 0 and again.reused == 8


def test_the_rows_are_the_episode_as_run_by_hand(small) -> None:
    _, res = small
    row = next(r for r in res.rows if r["label"] == "triton_dynamic" and r["seed"] == 1
               and r["scenario"].endswith("poisson"))
    from e4gym.bench.policies import make_policy

    env = episode_stats_wrapper(gym.make("e4gym/BatchConcurrency-v0", episode_intervals=8, arrivals="poisson"))
    assert isinstance(env, ServingEpisodeStats)
    infos = run_episode(make_policy("triton_dynamic"), env, seed=1)
    stats = env.last_episode_stats
    assert stats is not None and stats["ep_intervals"] == 8
    done = sum(float(i["completed"]) for i in infos)
    assert stats["ep_throughput_rps"] == pytest.approx(done / 8.0)
    assert stats["ep_slo_violation_rate"] == pytest.approx(sum(float(i["violations"]) for i in infos)
                                                           / sum(float(i["arrived"]) for i in infos))
    assert stats["ep_energy_per_request_j"] == pytest.approx(sum(float(i["energy_j"]) for i in infos) / done)
    got = serving_metrics(infos, stats)
    for k in ("utility_per_interval", "throughput_rps", "p99_latency_ms", "slo_violation_rate",
              "energy_per_request_j", "memory_gb", "episode_reward"):
        assert got[k] == pytest.approx(row[k]), k
    assert interval_trace(infos)["refused"].dtype == np.bool_


def test_a_config_mixing_env_families_or_fields_is_refused_in_one_line() -> None:
    with pytest.raises(ConfigError, match="different families") as exc:
        load_experiment({**SMALL, "policies": ["batch1", "performance"]})
    assert "\n" not in str(exc.value)
    with pytest.raises(ConfigError, match="fps"):  # a frame env's field in a serving scenario
        load_experiment({**SMALL, "matrix": {"device": ["xavier-nx"], "fps": [30]}})
    with pytest.raises(ConfigError, match="rates_rps"):  # the serving env's own check, at config time
        load_experiment({**SMALL, "matrix": {"device": ["xavier-nx"], "rates_rps": [-1.0]}})
    with pytest.raises(ConfigError, match="--backend applies to the frame envs"):
        load_experiment(SMALL, backend={"backend": "jetson"})
    assert env_family("e4gym:e4gym/BatchConcurrency-v0") == "serving"
    assert env_family("e4gym/EarlyExitDVFS-v1") == "frame"


def test_frames_override_sets_the_intervals(tmp_path) -> None:
    res = run_benchmark({**SMALL, "policies": ["batch1"], "seeds": [0]}, tmp_path, jobs=1, quiet=True, frames=3,
                        plots=False, tensorboard=False)
    assert res.ok and {r["intervals"] for r in res.rows} == {3}
