"""Streaming time: frames arrive at a fixed rate, batch 1 — the one model every env and sweep uses.

Frame ``k`` arrives at ``k · period``. It starts when the board is free (a frame that arrives while the
previous one still runs waits: it queues), and its latency counts from its arrival. After a frame the board
idles until the next arrival, at the clocks then set, and that idle energy is charged to the frame — so racing
to idle and running slowly are both honest choices. A frame that overruns delays the next one.

:class:`StreamClock` is that model, written once for one stream (Python floats) and for N streams at once
(NumPy arrays of shape ``(N,)``): the frame env, the block env, the native vector env and :func:`stream`
(sweeps, ``e4gym run``) all keep time with it. The caller runs the frame on its backend and idles the board
for :meth:`StreamClock.idle_s`; the clock does the bookkeeping.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from e4gym.dnn.work import Work
from e4gym.errors import ConfigError
from e4gym.hardware.backend import Backend

#: Smoothing factor of the achieved-frame-rate estimate :attr:`StreamClock.fps` (an exponential moving
#: average over about 5 frames).
FPS_EMA_ALPHA = 0.2
#: Upper bound of :attr:`StreamClock.fps` (achieved / stream frame rate).
FPS_MAX = 4.0


class StreamClock:
    """Streaming time of one frame stream (floats) or of ``n`` streams at once (arrays of shape ``(n,)``).

    The arithmetic is branch-free (``a + (b - a) * cond``), so one implementation serves both.

    Attributes:
        period_s: time between arrivals (s). deadline_s: per-frame deadline, from arrival (s).
        k: frames finished so far (the next frame's index).
        free_s: when the board is free for frame ``k`` (s, stream time; never before its arrival).
        fps: achieved / stream frame rate, a moving average (α = :data:`FPS_EMA_ALPHA`) of inter-completion
            times, capped at :data:`FPS_MAX`; 1 before the first frame.
        slack: ``(deadline − queueing delay frame k already has) / deadline`` (1 when it starts on arrival).

    Use per frame: ``done = clock.free_s + run_s``; idle the board for ``clock.idle_s(done)`` (> 0 only when
    the frame finished before the next arrival); ``latency = clock.finish(done)``. Board time spent between
    frames on something else (profiling runs) is :meth:`delay`.
    """

    __slots__ = ("_prev_done_s", "deadline_s", "fps", "free_s", "k", "n", "period_s", "slack")

    def __init__(self, period_s: float, deadline_s: float, n: int | None = None) -> None:
        """Args: period_s (s, > 0), deadline_s (s, > 0), n: ``None`` for one stream, else the number of streams."""
        if not period_s > 0:
            raise ConfigError(f"the frame period must be > 0 s, got {period_s!r}")
        if not deadline_s > 0:
            raise ConfigError(f"deadline_s must be > 0 (seconds), got {deadline_s!r}")
        self.period_s = float(period_s)
        self.deadline_s = float(deadline_s)
        self.n = n
        if n is None:
            self.reset()
        else:
            self.k = np.zeros(n, np.int64)
            self.free_s, self._prev_done_s = np.zeros(n), np.zeros(n)
            self.fps, self.slack = np.ones(n), np.ones(n)

    def reset(self, rows: Any = None) -> None:
        """Restart the stream (time 0, no frame yet); with ``n`` streams, the streams ``rows`` (default all)."""
        if self.n is None:
            self.k, self.free_s, self._prev_done_s, self.fps, self.slack = 0, 0.0, 0.0, 1.0, 1.0
            return
        rows = slice(None) if rows is None else rows
        # New arrays, not in-place writes: values handed out earlier (e.g. in a vector env's info) never change.
        for name, value in (("k", 0), ("free_s", 0.0), ("_prev_done_s", 0.0), ("fps", 1.0), ("slack", 1.0)):
            a = getattr(self, name).copy()
            a[rows] = value
            setattr(self, name, a)

    def arrival_s(self) -> Any:
        """Arrival time of frame ``k`` (s)."""
        return self.k * self.period_s

    def delay(self, seconds: Any) -> None:
        """The board is busy ``seconds`` (s) before frame ``k`` starts (e.g. profiling runs): it starts later."""
        self.free_s = self.free_s + seconds

    def slot_s(self) -> Any:
        """Frame ``k``'s slot (s): from when it can start (``free_s``) to the next frame's arrival. The frame runs
        in it and the board idles the rest (:func:`~e4gym.hardware.backend.run_then_idle`); <= 0 when the board
        is a period or more behind."""
        return (self.k + 1) * self.period_s - self.free_s

    def idle_s(self, done_s: Any) -> Any:
        """How long the board idles after frame ``k`` finishes at ``done_s`` (s): until the next arrival, or 0."""
        gap = (self.k + 1) * self.period_s - done_s
        return gap * (gap > 0.0)

    def finish(self, done_s: Any) -> Any:
        """Frame ``k`` finished at ``done_s`` (s; the board then idled :meth:`idle_s`); returns its latency (s).

        Advances ``k``, ``free_s``, ``fps`` and ``slack``.
        """
        k, p = self.k, self.period_s
        nxt = (k + 1) * p
        free = nxt + (done_s - nxt) * (done_s > nxt)
        gap = done_s - self._prev_done_s
        gap = gap + (p - gap) * (k == 0)  # the first frame counts one period
        gap = gap + (0.25 * p - gap) * (gap <= 0.0)  # a zero-length frame counts as the maximum rate
        inst = p / gap
        inst = inst + (FPS_MAX - inst) * (inst > FPS_MAX)
        self.fps = self.fps + FPS_EMA_ALPHA * (inst - self.fps)
        self._prev_done_s = done_s
        self.free_s = free
        self.slack = 1.0 - (free - nxt) / self.deadline_s
        self.k = k + 1
        return done_s - k * p


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
        temp_c: temperature at the end of the frame's time on the board, idle wait included (°C), as the envs
            report it.
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
    clock = StreamClock(1.0 / fps, 1.0 / fps if deadline_s is None else deadline_s)
    for k in range(frames):
        m = backend.run(work)
        done = clock.free_s + m.latency_s
        energy, measured, temp = m.energy_j, m.measured_energy_j, m.temp_c
        idle_s = clock.idle_s(done)
        if idle_s > 0.0:
            idle = backend.idle(idle_s)
            energy += idle.energy_j
            measured += idle.measured_energy_j
            temp = idle.temp_c
        latency = clock.finish(done)
        yield FrameResult(
            index=k,
            latency_s=latency,
            run_s=m.latency_s,
            energy_j=energy,
            measured_energy_j=measured,
            deadline_missed=latency > clock.deadline_s,
            temp_c=temp,
            cpu_hz=m.cpu_hz,
            gpu_hz=m.gpu_hz,
            emc_hz=m.emc_hz,
            throttled=m.throttled,
        )
