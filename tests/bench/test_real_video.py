"""The real-video benchmark (issue 16): the shipped clip trace through the harness, E4 trained on another clip."""

from __future__ import annotations

import csv

import pytest

from e4gym.bench.config import load_experiment
from e4gym.cli import main
from e4gym.errors import ConfigError


def test_the_real_video_configs_are_twins() -> None:
    """Same network, board, rate, deadline and policies; only the workload differs (and E4's training data)."""
    real, syn = load_experiment("real-video"), load_experiment("real-video-synthetic")
    assert len(real.scenarios) == len(syn.scenarios) == 1
    r, s = real.scenarios[0].env_kwargs, syn.scenarios[0].env_kwargs
    assert r["workload"] == "clip:bikes" and s["workload"] == "synthetic" and s["fps"] == 25
    assert {k: v for k, v in r.items() if k not in ("workload", "fps")} == \
        {k: v for k, v in s.items() if k not in ("workload", "fps")}
    assert [p.label for p in real.policies] == [p.label for p in syn.policies]


@pytest.mark.slow
def test_e4_is_scored_on_the_clip_and_trained_on_another(tmp_path) -> None:
    out = tmp_path / "rv"
    assert main(["bench", "--config", "real-video", "--out", str(out), "--frames", "100", "--jobs", "1",
                 "--quiet", "--seeds", "0"]) == 0
    rows = {r["label"]: r for r in csv.DictReader(open(out / "results.csv"))}
    assert float(rows["default"]["accuracy"]) == 1.0  # the last exit agrees with itself: the reference
    # E4's cascade, trained on the cartoon, exits early on the street scene and loses accuracy there
    # (docs/real_video.md); the oracle knows each frame's earliest agreeing exit.
    assert float(rows["e4"]["mean_exit"]) < float(rows["oracle"]["mean_exit"]) <= 4.0
    assert float(rows["e4"]["accuracy"]) < 0.9


def test_e4_may_not_train_on_the_clip_it_is_scored_on() -> None:
    import gymnasium as gym

    from agents.e4.policy import E4Policy
    from e4gym.policy import run_episode

    env = gym.make("e4gym/EarlyExitDVFS-v1", model="efficientnet_lite0", workload="clip:bikes", episode_frames=20)
    policy = E4Policy(train_workload="clip:bikes", train_streams=1, train_frames=50, train_epochs=1)
    with pytest.raises(ConfigError, match="trained"):
        run_episode(policy, env, seed=0)
