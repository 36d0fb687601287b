"""The real clips and the traces recorded from them that ship in the package (issue 16)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import e4gym  # noqa: F401  (registers the envs)
from e4gym.errors import ConfigError, UnknownNameError
from e4gym.workload import clips
from e4gym.workload.clips import CLIPS, clip_trace, clip_video, resolve_video, shipped_clip_traces
from e4gym.workload.distill import video_frames
from e4gym.workload.trace import load_trace

ENV_ID = "e4gym/EarlyExitDVFS-v1"


def test_every_clip_is_found_and_decodes() -> None:
    assert set(CLIPS) == {"bikes", "bigbuckbunny", "carphone"}
    for name in CLIPS:
        assert clip_video(name).is_file() and resolve_video(f"clip:{name}") == clip_video(name)
    frames = np.stack(video_frames("clip:carphone", every=40))
    assert frames.shape == (3, 144, 176, 3) and frames.dtype == np.uint8 and frames.std() > 10
    with pytest.raises(UnknownNameError, match=r"unknown clip 'cats'; the clips are \['bigbuckbunny', 'bikes'"):
        clip_video("cats")


def test_every_clip_has_a_shipped_trace_of_its_held_out_frames() -> None:
    """Recorded by EfficientNet-Lite0 with distilled exit heads over the frames the heads were not trained on."""
    assert set(shipped_clip_traces()) == set(CLIPS)
    agreement = {}
    for name, n_video in (("bikes", 250), ("bigbuckbunny", 132), ("carphone", 120)):
        tr = load_trace(clip_trace(name))
        assert tr.model == "efficientnet_lite0" and tr.n_exits == 5 and (tr.labels == -1).all()  # unlabelled
        assert tr.n_frames == n_video - n_video // 2 and tr.pooled.shape == (tr.n_frames, 0)
        assert tr.correct[:, -1].all()  # no labels: the final exit agrees with itself
        agreement[name] = tr.correct[:, :-1].mean()
        assert np.all((tr.features >= 0) & (tr.features <= 1)) and tr.features.std(axis=0).min() > 0
    # What the distilled heads make of each held-out half (docs/real_video.md): the man in the car is always
    # the same four classes (every exit agrees), the cartoon often, the street scene of 25 classes seldom.
    assert agreement["carphone"] == 1.0 and 0.4 < agreement["bigbuckbunny"] < 0.9 and 0.0 < agreement["bikes"] < 0.3


def test_the_env_replays_a_shipped_trace() -> None:
    env = gym.make(ENV_ID, model="efficientnet_lite0", workload="clip:bikes", episode_frames=50)
    obs, info = env.reset(seed=0)
    trace = load_trace(clip_trace("bikes"))
    correct, total = [], 0.0
    for k in range(50):
        exit_ = k % 5
        obs, reward, _, trunc, info = env.step(np.array([exit_, 10, 10]))
        correct.append((exit_, bool(info["correct"])))
        total += reward
        assert env.observation_space.contains(obs)
    assert trunc and np.isfinite(total)
    # The frames are the trace's, in order from some start: each step's correctness is the trace's at its exit.
    rows = trace.correct
    starts = [s for s in range(trace.n_frames) if all(rows[(s + k) % trace.n_frames, e] == c
                                                      for k, (e, c) in enumerate(correct))]
    assert starts, "the env's exits' correctness is not a run of the shipped trace"


def test_a_clip_workload_needs_its_model_and_a_missing_trace_says_so(monkeypatch, tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"recorded with model 'efficientnet_lite0'.*pass model='efficientnet_lite0'"):
        gym.make(ENV_ID, workload="clip:bikes")
    with pytest.raises(UnknownNameError, match="unknown clip"):
        gym.make(ENV_ID, model="efficientnet_lite0", workload="clip:cats")
    monkeypatch.setattr(clips, "_TRACES", tmp_path)
    with pytest.raises(ConfigError, match="the shipped trace of clip 'bikes' is missing"):
        clip_trace("bikes")
