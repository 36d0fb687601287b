"""The :class:`Backend` protocol every hardware backend (emulated or real) satisfies, and its records."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import NamedTuple, Protocol, runtime_checkable

from e4gym.dnn.work import Work
from e4gym.errors import SettingError
from e4gym.hardware.spec import DeviceSpec


@dataclass(frozen=True)
class Setting:
    """Requested clock levels: indices into the device's CPU, GPU and EMC level tables."""

    cpu: int
    gpu: int
    emc: int

    def as_tuple(self) -> tuple[int, int, int]:
        """``(cpu, gpu, emc)``."""
        return (self.cpu, self.gpu, self.emc)


@dataclass(frozen=True)
class Cooling:
    """How the board is cooled.

    Attributes:
        fan: ``True`` with the fan running, ``False`` with the passive heat sink only.
        ambient_c: ambient temperature (°C).
    """

    fan: bool = True
    ambient_c: float = 25.0


class Measurement(NamedTuple):
    """What one :meth:`Backend.run` (or an idle period) measured (an immutable record; cheap to build).

    Attributes:
        latency_s: wall time of the segment (s), including DVFS stalls.
        energy_j: true board energy over the segment (J).
        measured_energy_j: energy as the board's power monitor reports it (J): power polled every
            ``sensor_period_s`` and held between polls, as a user integrating INA3221 readings gets.
        avg_power_w: ``energy_j / latency_s`` (W).
        temp_c: temperature at the end of the segment (°C).
        cpu_hz / gpu_hz / emc_hz: clocks the segment ran at (after power-mode caps and throttling) (Hz).
        throttled: the thermal trip capped the clocks during the segment.
        transition_s: time lost to DVFS transitions in this segment (s), included in ``latency_s``.
        gpu_util: GPU busy fraction over the segment (0..1).
        time_s: simulated (or wall) time at the end of the segment (s).
        rails_w: average power of each of the board's power-monitor rails over the segment (W), one per name of
            the backend's ``rail_names``, in that order, as the monitor reports them (see each backend for what
            its rails cover; :func:`rail_dict` pairs them with their names). ``()`` when the backend has none.
            The emulator's three rails split the board power (they sum to ``measured_energy_j / latency_s``); a
            board's rails may overlap (a Jetson's input rail ``VDD_IN`` includes the others).
    """

    latency_s: float
    energy_j: float
    measured_energy_j: float
    avg_power_w: float
    temp_c: float
    cpu_hz: float
    gpu_hz: float
    emc_hz: float
    throttled: bool
    transition_s: float
    gpu_util: float
    time_s: float
    rails_w: tuple[float, ...] = ()

    def rails(self, names: tuple[str, ...]) -> dict[str, float]:
        """``{rail name: W}`` of :attr:`rails_w` given the backend's ``rail_names``."""
        return dict(zip(names, self.rails_w, strict=True))


class SensorReading(NamedTuple):
    """A snapshot of the board's sensors.

    Attributes:
        power_w: the power monitor's latest reading (W).
        temp_c: hottest thermal zone (°C).
        cpu_hz / gpu_hz / emc_hz: current clocks (Hz).
        throttled: thermal throttling is active.
        time_s: time of the reading (s).
        rails_w: the power monitor's latest reading of each rail (W), in the order of the backend's
            ``rail_names``; ``()`` when the backend has none.
    """

    power_w: float
    temp_c: float
    cpu_hz: float
    gpu_hz: float
    emc_hz: float
    throttled: bool
    time_s: float
    rails_w: tuple[float, ...] = ()

    def rails(self, names: tuple[str, ...]) -> dict[str, float]:
        """``{rail name: W}`` of :attr:`rails_w` given the backend's ``rail_names``."""
        return dict(zip(names, self.rails_w, strict=True))


def rail_dict(backend: object, record: Measurement | SensorReading) -> dict[str, float]:
    """``{rail name: W}`` of a backend's :class:`Measurement` or :class:`SensorReading` (empty without rails).

    Rail names are canonical where a rail is clearly one domain: ``"cpu"``, ``"gpu"``, ``"soc"`` (the rest
    of the SoC: memory, static, ...); a board's own rails keep their own names (e.g. ``VDD_CPU_GPU_CV``, which
    feeds the CPU and the GPU together on Xavier NX).
    """
    return dict(zip(getattr(backend, "rail_names", ()), record.rails_w, strict=True))


@runtime_checkable
class Backend(Protocol):
    """A board that runs DNN work at chosen clocks and measures it.

    Backends are context managers: ``close()`` (also on ``__exit__``) restores whatever the backend
    changed (on a real board: governors, clocks, online cores). A backend may also offer
    ``reset(seed)`` (the emulator does): the envs call it at every episode start when present.

    ``rail_names`` names the power-monitor rails every :class:`Measurement` and :class:`SensorReading` carries
    in ``rails_w`` (same order): ``("cpu", "gpu", "soc")`` on the emulator, the board's INA3221 rails on a Jetson
    (canonical names where a rail is one domain), ``("gpu",)`` on an NVML GPU.
    """

    spec: DeviceSpec
    rail_names: tuple[str, ...]

    @property
    def levels(self) -> tuple[int, int, int]:
        """Current effective ``(cpu, gpu, emc)`` level indices (after power-mode caps and throttling)."""
        ...

    def apply(self, setting: Setting) -> float:
        """Request clock levels; returns the stall it costs (s). Raises SettingError when out of range."""
        ...

    def run(self, work: Work, batch: int = 1) -> Measurement:
        """Run ``work`` for a batch of ``batch`` inferences at the current clocks and measure it."""
        ...

    def idle(self, duration_s: float) -> Measurement:
        """Stay idle for ``duration_s`` seconds (e.g. until the next frame arrives) and measure it."""
        ...

    def read_sensors(self) -> SensorReading:
        """Read power, temperature and clocks now."""
        ...

    def close(self) -> None:
        """Restore what the backend changed."""
        ...

    def __enter__(self) -> Backend: ...

    def __exit__(self, *exc: object) -> None: ...


def run_then_idle(backend: Backend, work: Work, slot_s: float, batch: int = 1,
                  levels: tuple[int, int, int] | None = None) -> tuple[Measurement, Measurement | None]:
    """Request ``levels`` ``(cpu, gpu, emc)`` if given (``backend.apply``), run ``work`` on ``backend``, then idle
    for what is left of ``slot_s`` seconds after the run, if anything.

    This is one frame of a stream: ``slot_s`` is the time from when the frame can start to the next frame's
    arrival (:meth:`~e4gym.hardware.stream.StreamClock.slot_s`); the board idles ``slot_s − latency_s`` when that
    is > 0. A backend with a faster way of doing it all (the emulator's one compiled call) has a
    ``run_then_idle(work, slot_s, batch, levels)`` method, used here; it must give what
    :func:`run_then_idle_separately` gives.

    Returns:
        The run's :class:`Measurement`, and the idle's (None when the run took the whole slot).
    """
    return bound_run_then_idle(backend)(work, slot_s, batch, levels)


def bound_run_then_idle(backend: Backend) -> Callable[..., tuple[Measurement, Measurement | None]]:
    """:func:`run_then_idle` bound to ``backend``, looked up once (``f(work, slot_s, batch=1, levels=None)``): the
    backend's own ``run_then_idle`` method where it has one, else :func:`run_then_idle_separately` on it."""
    return getattr(backend, "run_then_idle", None) or partial(run_then_idle_separately, backend)


def run_then_idle_separately(backend: Backend, work: Work, slot_s: float, batch: int = 1,
                             levels: tuple[int, int, int] | None = None) -> tuple[Measurement, Measurement | None]:
    """:func:`run_then_idle` as separate calls: ``backend.apply(levels)`` (if given), ``backend.run(work,
    batch)``, then ``backend.idle(slot_s − latency)`` where that is > 0 (s)."""
    if not math.isfinite(slot_s):
        raise SettingError(f"slot_s must be a finite number of seconds, got {slot_s!r}")
    if levels is not None:
        backend.apply(levels)
    m = backend.run(work, batch)
    rest = slot_s - m.latency_s
    return m, (backend.idle(rest) if rest > 0.0 else None)
