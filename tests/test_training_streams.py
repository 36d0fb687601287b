"""A policy is never scored on the frames it trained on: the overlap rule of stream keys (e4gym.policy)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import e4gym  # noqa: F401  (registers the envs)
from e4gym.errors import ConfigError
from e4gym.policy import (
    TRAINING_STREAM_FIX,
    check_training_streams,
    describe_stream,
    episode_stream_key,
    run_episode,
    streams_overlap,
)

ENV_ID = "e4gym/EarlyExitDVFS-v1"
SYN = ("synthetic", "a" * 64, 3)
TRACE = "b" * 64


@pytest.mark.parametrize(("a", "b", "overlap"), [
    # Synthetic streams: the same only when params and seed are the same.
    (SYN, SYN, True),
    (SYN, ("synthetic", "a" * 64, 4), False),
    (SYN, ("synthetic", "c" * 64, 3), False),
    # Trace ranges [start, stop): intersecting ranges of the same trace overlap, touching ones do not.
    (("trace", TRACE, 0, 500), ("trace", TRACE, 499, 1000), True),
    (("trace", TRACE, 0, 500), ("trace", TRACE, 500, 1000), False),
    (("trace", TRACE, 100, 200), ("trace", TRACE, 0, 1000), True),
    (("trace", TRACE, 0, 500), ("trace", "c" * 64, 0, 500), False),
    # None stop: to the end of the trace; None start: from its first frame.
    (("trace", TRACE, 0, None), ("trace", TRACE, 10_000, 10_001), True),
    (("trace", TRACE, 800, None), ("trace", TRACE, 0, 800), False),
    (("trace", TRACE, 800, None), ("trace", TRACE, 0, 801), True),
    (("trace", TRACE, None, 10), ("trace", TRACE, 5, None), True),
    (("trace", TRACE, None, None), ("trace", TRACE, 0, 1), True),
    # Empty ranges share nothing.
    (("trace", TRACE, 5, 5), ("trace", TRACE, 0, None), False),
    # Different kinds never overlap; unknown kinds overlap only when equal.
    (SYN, ("trace", TRACE, 0, None), False),
    (("camera", 1), ("camera", 1), True),
    (("camera", 1), ("camera", 2), False),
])
def test_overlap_rule(a, b, overlap) -> None:
    assert streams_overlap(a, b) is overlap
    assert streams_overlap(b, a) is overlap  # symmetric
    assert streams_overlap(list(a), list(b)) is overlap  # keys read back from JSON are lists


def test_describe_stream() -> None:
    assert describe_stream(SYN) == "synthetic seed 3 (params aaaaaaaa)"
    assert describe_stream(("trace", TRACE, 0, 500)) == "trace bbbbbbbb frames [0, 500)"
    assert describe_stream(("trace", TRACE, None, None)) == "trace bbbbbbbb frames [0, end)"
    assert describe_stream(("camera", 1)) == "('camera', 1)"


class Trained:
    """A frame-env policy that declares the streams it trained on."""

    name = "learner"

    def __init__(self, streams) -> None:
        self.streams = {tuple(s) for s in streams}
        self.bound = False

    def bind(self, context) -> None:
        self.bound = True

    def training_streams(self) -> set[tuple]:
        assert self.bound, "training_streams is read after bind"
        return self.streams

    def predict(self, observation, state=None, episode_start=None, deterministic=True):
        return np.array([4, 24, 14]), state

    def reset(self) -> None:
        pass


def _env(key):
    env = gym.make(ENV_ID, episode_frames=5)
    env.unwrapped.stream_key = lambda: key  # the env tells the stream of its episode
    return env


def test_run_episode_refuses_the_training_stream() -> None:
    with pytest.raises(ConfigError) as info:
        run_episode(Trained([SYN]), _env(SYN), seed=0)
    msg = str(info.value)
    assert "\n" not in msg
    assert "'learner'" in msg and "synthetic seed 3" in msg and TRAINING_STREAM_FIX in msg
    with pytest.raises(ConfigError, match="trace bbbbbbbb frames"):
        run_episode(Trained([("trace", TRACE, 0, 600)]), _env(("trace", TRACE, 500, None)), seed=0)


def test_run_episode_accepts_a_separate_stream() -> None:
    assert len(run_episode(Trained([SYN, ("trace", TRACE, 0, 500)]), _env(("synthetic", "a" * 64, 4)), seed=0)) == 5
    assert len(run_episode(Trained([("trace", TRACE, 0, 500)]), _env(("trace", TRACE, 500, None)), seed=0)) == 5
    assert len(run_episode(Trained([]), _env(SYN), seed=0)) == 5


def test_nothing_to_check_without_a_key_or_training_streams() -> None:
    class NoKey:
        unwrapped = None

    assert episode_stream_key(NoKey()) is None
    assert episode_stream_key(_env(None)) is None
    assert episode_stream_key(_env(["synthetic", "x", 1])) == ("synthetic", "x", 1)
    # An env that does not tell its stream cannot be checked; a policy without training_streams is not.
    check_training_streams(Trained([SYN]), _env(None))
    check_training_streams(object(), _env(SYN))
