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
    assert json.loads((out / "results.json").read_text())["experiment"] == "tiny-suite"
