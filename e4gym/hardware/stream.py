"""Streaming time on a backend: frames arrive at a fixed rate, batch 1 (the env's default time mode).

A frame that arrives while the previous one is still running waits (it queues); its latency counts from
its arrival. After a frame the board idles until the next arrival, at the clocks then set, and that idle
energy is charged to the frame — so racing to idle and running slowly are both honest choices.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from e4gym.errors import ConfigError
from e4gym.hardware.backend import Backend
from e4gym.hardware.work import Work


@dataclass(frozen=True)
class FrameResult:
    """One streamed frame.

    Attributes:
        index: frame number from 0.
        latency_s: from the frame's arrival to its result (queueing included) (s).
        run_s: time running the network (s).
        energy_j: true energy of the run plus the idle time until the next arrival (J).
        measured_energy_j: the same as the power monitor reports it (J).
        deadline_missed: ``latency_s`` exceeded the deadline.
        temp_c: temperature after the frame (°C).
        cpu_hz / gpu_hz / emc_hz: clocks the frame ran at (Hz).
        throttled: thermal throttling was active.
    """

    index: int
    latency_s: float
    run_s: float
    energy_j: float
    measured_energy_j: float
    deadline_missed: bool
    temp_c: float
    cpu_hz: float
    gpu_hz: float
    emc_hz: float
    throttled: bool


def stream(
    backend: Backend, work: Work, frames: int, fps: float = 30.0, deadline_s: float | None = None
) -> Iterator[FrameResult]:
    """Run ``frames`` frames of ``work`` arriving at ``fps`` on ``backend``; yields one result per frame.

    Args:
        backend: any backend (its clocks are whatever it is set to, or its governors choose).
        work: the per-frame work (e.g. ``profile.frame_work(exit)``).
        frames: number of frames (>= 1).
        fps: arrival rate (frames per second, > 0).
        deadline_s: per-frame deadline (s); default the frame period ``1 / fps``.

    Raises:
        ConfigError: ``frames`` < 1, ``fps`` <= 0 or ``deadline_s`` <= 0.
    """
    if frames < 1:
        raise ConfigError(f"frames must be >= 1, got {frames}")
    if not fps > 0:
        raise ConfigError(f"fps must be > 0, got {fps}")
    period = 1.0 / fps
    deadline = period if deadline_s is None else deadline_s
    if not deadline > 0:
        raise ConfigError(f"deadline_s must be > 0 (seconds), got {deadline_s}")
    now = 0.0  # time the board is free, relative to the first arrival
    for k in range(frames):
        arrival = k * period
        start = max(now, arrival)
        m = backend.run(work)
        now = start + m.latency_s
        latency = now - arrival
        energy, measured = m.energy_j, m.measured_energy_j
        next_arrival = (k + 1) * period
        if now < next_arrival:
            idle = backend.idle(next_arrival - now)
            energy += idle.energy_j
            measured += idle.measured_energy_j
            now = next_arrival
        yield FrameResult(
            index=k,
            latency_s=latency,
            run_s=m.latency_s,
            energy_j=energy,
            measured_energy_j=measured,
            deadline_missed=latency > deadline,
            temp_c=m.temp_c,
            cpu_hz=m.cpu_hz,
            gpu_hz=m.gpu_hz,
            emc_hz=m.emc_hz,
            throttled=m.throttled,
        )
