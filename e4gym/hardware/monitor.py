"""The power monitor of the real backends: energy over a time window, integrated from polled power readings.

:class:`PowerMonitor` serves every real backend that reads power as a sampled value: a Jetson's INA3221 rails
or jetson-stats (:class:`~e4gym.hardware.jetson.JetsonBackend`), an NVIDIA GPU's ``nvmlDeviceGetPowerUsage``
where its energy counter is not supported (:class:`~e4gym.hardware.nvml.NvmlBackend`). One monitor measures one
window, as a context manager around the work (Zeus's ``begin_window`` / ``end_window``)::

    with PowerMonitor(read_power, period_s=0.01) as mon:
        latency_s = runner.run(work)
    mon.check()
    energy_j, power_w = mon.energy_j(), mon.avg_power_w()

A sample is taken on entry, then every ``period_s`` by a background thread, and one on exit; energy is the
trapezoid integral of the samples (J), and so is each rail's. The emulator's power monitor is simulated (its
polls fall on simulated time) and lives in :mod:`e4gym.hardware.emulator`.
"""

from __future__ import annotations

import itertools
import math
import threading
import time
from collections.abc import Callable

from e4gym.errors import E4gymError, HardwareError

__all__ = ["PowerMonitor"]


class PowerMonitor:
    """Polls power and its rails (and optionally GPU load and a guard) in a background thread over one window.

    Args:
        read_power: ``() -> (power (W), rails (W, one per rail, always the same number))``; may raise (the error
            ends the polling and is raised by :meth:`check`).
        period_s: polling period (s). A poll that falls behind (a slow read, a busy CPU) skips the missed ones.
        read_load: ``() -> GPU load (0..1) or None``, read with every power sample (``None``: not read).
        guard: called from the polling thread every ``guard_period_s`` (e.g. a thermal guard); may raise.
        guard_period_s: how often ``guard`` runs (s).
        name: the polling thread's name.
    """

    def __init__(
        self,
        read_power: Callable[[], tuple[float, tuple[float, ...]]],
        period_s: float,
        read_load: Callable[[], float | None] | None = None,
        guard: Callable[[], None] | None = None,
        guard_period_s: float = 0.1,
        name: str = "e4gym-power",
    ) -> None:
        self._read_power, self._period, self._read_load, self._guard = read_power, period_s, read_load, guard
        self._guard_period = guard_period_s
        #: ``(time (s, monotonic), power (W))`` of every sample.
        self.samples: list[tuple[float, float]] = []
        #: Every sample's rails (W), in ``read_power``'s order.
        self.rail_samples: list[tuple[float, ...]] = []
        #: GPU loads read with the samples (0..1).
        self.loads: list[float] = []
        #: What the polling thread raised, if anything (it stopped polling then).
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)

    def _sample(self) -> None:
        t = time.monotonic()
        p, rails = self._read_power()
        self.rail_samples.append(rails)
        self.samples.append((t, p))
        if self._read_load is not None:
            load = self._read_load()
            if load is not None:
                self.loads.append(load)

    def __enter__(self) -> PowerMonitor:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        if exc_type is None and self.error is None:
            self._sample()

    def _loop(self) -> None:
        start = self.samples[0][0]
        next_t, next_guard = start + self._period, start + self._guard_period
        while not self._stop.wait(max(0.0, next_t - time.monotonic())):
            try:
                self._sample()
                now = time.monotonic()
                if self._guard is not None and now >= next_guard:
                    self._guard()
                    next_guard = now + self._guard_period
            except BaseException as exc:  # reported by the caller after the window
                self.error = exc
                return
            next_t += self._period
            if next_t < now:  # fell behind (a slow read, a busy CPU): skip the missed polls
                next_t = now + self._period

    def check(self) -> None:
        """Raise what the polling thread met, if anything: an e4gym error as it is, any other as a HardwareError.

        Raises:
            E4gymError: the error ``read_power``, ``read_load`` or ``guard`` raised.
            HardwareError: ``power sampling failed: ...`` for any other error.
        """
        err = self.error
        if err is None:
            return
        if isinstance(err, E4gymError):
            raise err
        raise HardwareError(f"power sampling failed: {err}") from err

    @property
    def window_s(self) -> float:
        """Time from the first sample to the last (s)."""
        return self.samples[-1][0] - self.samples[0][0] if len(self.samples) > 1 else 0.0

    def energy_j(self) -> float:
        """Trapezoid integral of power over the window (J)."""
        s = self.samples
        return sum(0.5 * (p0 + p1) * (t1 - t0) for (t0, p0), (t1, p1) in itertools.pairwise(s))

    def avg_power_w(self) -> float:
        """Mean power over the window (W): :meth:`energy_j` over :attr:`window_s`; the last reading when the
        window has no length."""
        window = self.window_s
        return self.energy_j() / window if window > 0 else self.samples[-1][1]

    def rails_w(self) -> tuple[float, ...]:
        """Each rail's mean power over the window (W): its trapezoid integral over the window's length; the last
        reading when the window has no length."""
        s, r = self.samples, self.rail_samples
        window = self.window_s
        if window <= 0:
            return r[-1]
        n = len(r[0])
        energy = [0.0] * n
        for k in range(1, len(s)):
            dt = 0.5 * (s[k][0] - s[k - 1][0])
            a, b = r[k - 1], r[k]
            for i in range(n):
                energy[i] += (a[i] + b[i]) * dt
        return tuple(e / window for e in energy)

    def gpu_util(self) -> float:
        """Mean GPU load over the window (0..1; NaN when no load was read)."""
        return sum(self.loads) / len(self.loads) if self.loads else math.nan
