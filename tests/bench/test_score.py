"""The normalised score (issue 17): 0 = default governors, 1 = strict oracle; constraints; the suite's interval."""

from __future__ import annotations

import json
import math

import pytest

from e4gym.bench.score import MAX_ACCURACY_LOSS, MAX_MISS_RATE, scenario_scores, suite_scores


def _row(label: str, seed: int, energy: float, miss: float = 0.0, acc: float = 0.8) -> dict:
    return {"label": label, "seed": seed, "energy_per_frame_j": energy, "deadline_miss_rate": miss, "accuracy": acc}


def _rows(**extra) -> list[dict]:
    rows = []
    for s in (0, 1, 2):
        rows += [_row("default", s, 0.30 + 0.01 * s), _row("strict", s, 0.20 + 0.01 * s)]
        rows += [_row(label, s, *(v if isinstance(v, tuple) else (v,))) for label, v in extra.items()]
    return rows


def test_the_references_score_zero_and_one_exactly_and_others_in_between() -> None:
    scores = scenario_scores(_rows(half=(0.25,)), ["default", "strict", "half"], "strict")
    assert scores["default"].scores == (0.0, 0.0, 0.0) and scores["strict"].scores == (1.0, 1.0, 1.0)
    assert scores["half"].scores == pytest.approx((0.5, 0.6, 0.7)) and not scores["half"].broken


def test_a_run_that_breaks_a_constraint_is_shown_not_scored() -> None:
    rows = _rows(late=(0.21, MAX_MISS_RATE + 0.005), wrong=(0.21, 0.0, 0.8 - MAX_ACCURACY_LOSS - 0.02),
                 edge=(0.21, MAX_MISS_RATE, 0.8 - MAX_ACCURACY_LOSS))
    scores = scenario_scores(rows, ["late", "wrong", "edge"], "strict")
    assert scores["late"].scores == () and scores["late"].broken == "miss 1.5 % > 1 %"
    assert math.isnan(scores["late"].mean)
    assert scores["wrong"].scores == () and scores["wrong"].broken == "acc −3.0 pts"
    assert len(scores["edge"].scores) == 3 and not scores["edge"].broken  # at the limits: scored
    assert scenario_scores(rows, ["late"], None) == {}  # no strict oracle in the experiment: no score


def test_the_suite_score_is_the_mean_over_scenarios_with_a_seeded_bootstrap_interval() -> None:
    a = scenario_scores(_rows(p=(0.25,)), ["p", "default"], "strict")
    b = scenario_scores(_rows(p=(0.28,)), ["p", "default"], "strict")
    c = scenario_scores(_rows(p=(0.28, 0.5)), ["p", "default"], "strict")  # breaks here
    suite = suite_scores({"a": a, "b": b, "c": c}, ["p", "default"])
    assert suite["p"].mean == pytest.approx((a["p"].mean + b["p"].mean) / 2) and suite["p"].scored == 2
    assert suite["p"].scenarios == 3 and suite["p"].low <= suite["p"].mean <= suite["p"].high
    assert suite["p"].low < suite["p"].high  # seeds differ, so the interval has width
    assert suite["default"].mean == suite["default"].low == suite["default"].high == 0.0
    assert suite_scores({"a": a, "b": b, "c": c}, ["p"]) == {"p": suite["p"]}  # the same seed, the same interval


@pytest.mark.slow
def test_a_tiny_suite_end_to_end_scores_default_zero_and_the_strict_oracle_one(tmp_path) -> None:
    from e4gym.cli import main

    config = tmp_path / "tiny.yaml"
    config.write_text(
        "name: tiny-suite\n"
        "env: {episode_frames: 80}\n"
        "matrix: {device: [xavier-nx], model: [efficientnet_b0], fps: [25, 30], deadline_ms: [null]}\n"
        "seeds: [0, 1]\n"
        "policies: [default, performance, oracle, {name: oracle, label: oracle-strict, args: {hopeless: first}}]\n"
    )
    out = tmp_path / "out"
    assert main(["bench", "--config", str(config), "--out", str(out), "--jobs", "1", "--quiet"]) == 0
    report = (out / "report.md").read_text()
    suite = report[report.index("## Suite score"):].split("\n\n")[1]
    lines = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]] for line in suite.splitlines()[2:]}
    assert lines["default"] == ["2/2", "0.000", "[0.000, 0.000]"]
    assert lines["oracle-strict"] == ["2/2", "1.000", "[1.000, 1.000]"]
    assert 0.0 < float(lines["oracle"][1]) <= 1.0 and float(lines["performance"][1]) < 0.0
    results = json.loads((out / "results.json").read_text())
    assert results["experiment"] == "tiny-suite" and len(results["config_sha256"]) == 64
    assert results["scores"]["suite"]["default"] == {"mean": 0.0, "low": 0.0, "high": 0.0, "scored": 2,
                                                     "scenarios": 2}
    assert results["scores"]["suite"]["oracle-strict"]["mean"] == 1.0
    per = next(iter(results["scores"]["scenarios"].values()))
    assert per["default"] == {"seeds": [0, 1], "scores": [0.0, 0.0], "mean": 0.0, "broken": ""}
    # TensorBoard: the suite score per policy, and the per-seed score in each scenario's run.
    suite_runs = sorted(p.name for p in (out / "tb" / "_suite").iterdir())
    assert suite_runs == ["default", "oracle", "oracle-strict", "performance"]
    events = next((out / "tb" / "_suite" / "oracle-strict").glob("events.out.tfevents.*")).read_bytes()
    assert b"suite/score" in events and b"suite/score_high" in events
    scenario_run = next((out / "tb").glob("xavier-nx_*")) / "oracle"
    assert b"score/normalised" in next(scenario_run.glob("events.out.tfevents.*")).read_bytes()


def test_fps_auto_and_a_tight_deadline_follow_the_network_on_each_board() -> None:
    """``fps: auto``: the highest whole rate whose period is >= 1.5 × the full network's latency at the top clocks;
    ``deadline_ms: tight``: 1.15 × that latency. A faster board gets a higher rate."""
    from e4gym.bench.config import AUTO_FPS_HEADROOM, TIGHT_DEADLINE_FACTOR, load_experiment
    from e4gym.envs.common import resolve_setup
    from e4gym.errors import ConfigError

    exp = load_experiment({"matrix": {"device": ["jetson-nano", "agx-orin"], "model": ["efficientnet_b0"],
                                      "fps": ["auto"], "deadline_ms": [None, "tight"]},
                           "seeds": [0], "policies": ["default"]})
    got = {}
    for sc in exp.scenarios:
        lat = resolve_setup(device=sc.device, model=sc.model).latency_ref_s
        period = 1.0 / sc.fps
        assert sc.fps == int(sc.fps) and period >= AUTO_FPS_HEADROOM * lat > 1.0 / (sc.fps + 1)
        if sc.params["deadline_ms"] == "tight":
            assert sc.deadline_ms == pytest.approx(TIGHT_DEADLINE_FACTOR * lat * 1e3, abs=0.01)
            assert sc.deadline_ms < 1e3 * period
        else:
            assert sc.deadline_ms == pytest.approx(1e3 * period)
        got[sc.device] = sc.fps
    assert got["agx-orin"] > 3 * got["jetson-nano"]
    with pytest.raises(ConfigError, match="fps must be a number, null or 'auto', got 'fast'"):
        load_experiment({"matrix": {"device": ["xavier-nx"], "model": ["efficientnet_b0"], "fps": ["fast"],
                                    "deadline_ms": ["tight"]}, "seeds": [0], "policies": ["default"]})
    with pytest.raises(ConfigError, match="fps: auto needs the synthetic workload"):
        load_experiment({"matrix": {"device": ["xavier-nx"], "model": ["efficientnet_lite0"], "fps": ["auto"],
                                    "workload": ["clip:bikes"]}, "seeds": [0], "policies": ["default"]})


def test_the_suite_config_is_every_board_and_both_networks_and_real_video_at_ten_seeds() -> None:
    from e4gym.bench.config import load_experiment
    from e4gym.bench.score import strict_oracle_label
    from e4gym.hardware.spec import available_devices

    exp = load_experiment("suite-v1")
    synthetic = [sc for sc in exp.scenarios if "workload" not in sc.params]
    real = [sc for sc in exp.scenarios if sc.params.get("workload") == "clip:bikes"]
    assert {sc.device for sc in synthetic} == set(available_devices())
    assert {sc.model for sc in synthetic} == {"efficientnet_b0", "mobilenet_v2"}
    assert len(synthetic) == 2 * 2 * len(available_devices()) and len(exp.seeds) >= 10
    # Real video wherever the full Lite0 fits the clip's 40 ms period with 50 % headroom (not the Nano).
    assert {sc.model for sc in real} == {"efficientnet_lite0"} and len(real) == len(available_devices()) - 1
    assert "jetson-nano" not in {sc.device for sc in real} and {sc.fps for sc in real} == {25.0}
    assert len(exp.scenarios) == len(synthetic) + len(real)
    assert strict_oracle_label(exp.policies) == "oracle-strict" and "default" in [p.label for p in exp.policies]


def test_results_name_the_config_content_hash(tmp_path) -> None:
    import hashlib

    from e4gym.bench.config import load_experiment, resolve_config_path

    exp = load_experiment("suite-v1")
    assert exp.sha256 == hashlib.sha256(resolve_config_path("suite-v1").read_bytes()).hexdigest()
    a = load_experiment({"matrix": {"device": ["xavier-nx"], "model": ["efficientnet_b0"]}, "seeds": [0],
                         "policies": ["default"]})
    b = load_experiment({"matrix": {"device": ["xavier-nx"], "model": ["efficientnet_b0"]}, "seeds": [1],
                         "policies": ["default"]})
    assert len(a.sha256) == 64 and a.sha256 != b.sha256
