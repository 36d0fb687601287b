"""Streaming time: arrivals at the frame rate, queueing on overrun, idle energy charged to the frame."""

from __future__ import annotations

import pytest

from e4gym.dnn import load_model_profile
from e4gym.errors import ConfigError
from e4gym.hardware import EmulatedBackend
from e4gym.hardware.stream import stream

WORK = load_model_profile("efficientnet_b0").frame_work()


def test_fast_setting_meets_deadline_and_pays_idle() -> None:
    b = EmulatedBackend("xavier-nx", seed=0)
    frames = list(stream(b, WORK, 60, fps=20.0))
    assert not any(f.deadline_missed for f in frames)
    assert b.time_s == pytest.approx(60 / 20.0)  # the board idled up to each next arrival
    f = frames[10]
    assert f.energy_j > f.run_s * 3.0  # run energy plus idle energy over the 50 ms period


def test_slow_setting_queues_and_misses() -> None:
    b = EmulatedBackend("xavier-nx", seed=0)
    b.apply((0, 0, 0))
    frames = list(stream(b, WORK, 20, fps=30.0))
    assert all(f.deadline_missed for f in frames)
    lat = [f.latency_s for f in frames]
    assert lat[-1] > lat[0]  # each frame waits for the previous ones


def test_bad_stream_arguments() -> None:
    b = EmulatedBackend("xavier-nx", seed=0)
    with pytest.raises(ConfigError, match="deadline_s must be > 0"):
        list(stream(b, WORK, 5, deadline_s=0.0))
    with pytest.raises(ConfigError, match="fps"):
        list(stream(b, WORK, 5, fps=-1))
