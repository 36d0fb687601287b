"""The shared power monitor: trapezoid energy over a window, rails, load, the guard, errors from its thread."""

from __future__ import annotations

import math
import time

import pytest

from e4gym.errors import ConfigError, HardwareError
from e4gym.hardware import monitor as monitor_module
from e4gym.hardware.monitor import PowerMonitor


class Readings:
    """Power and rails (W) from a list, one reading per call; the last one repeats."""

    def __init__(self, *readings: tuple[float, tuple[float, ...]]) -> None:
        self.readings, self.calls = list(readings), 0

    def __call__(self) -> tuple[float, tuple[float, ...]]:
        self.calls += 1
        return self.readings[min(self.calls, len(self.readings)) - 1]


def test_two_samples_give_the_trapezoid_over_the_window() -> None:
    read = Readings((2.0, (1.0, 3.0)), (4.0, (3.0, 5.0)))
    with PowerMonitor(read, period_s=60.0) as mon:  # no poll inside: the samples on entry and on exit
        time.sleep(0.01)
    mon.check()
    assert read.calls == 2 and mon.window_s >= 0.01
    assert mon.energy_j() == pytest.approx(3.0 * mon.window_s)  # J = mean W × s
    assert mon.avg_power_w() == pytest.approx(3.0)
    assert mon.rails_w() == pytest.approx((2.0, 4.0))
    assert math.isnan(mon.gpu_util())


def test_polls_every_period_and_reads_the_load() -> None:
    loads = iter([0.2, 0.4] * 1000)
    with PowerMonitor(lambda: (5.0, ()), period_s=0.005, read_load=lambda: next(loads)) as mon:
        time.sleep(0.1)
    assert len(mon.samples) >= 5
    assert [t for t, _ in mon.samples] == sorted(t for t, _ in mon.samples)
    assert mon.energy_j() == pytest.approx(5.0 * mon.window_s)
    assert mon.rails_w() == ()
    assert 0.2 <= mon.gpu_util() <= 0.4


def test_a_window_without_length_reports_the_last_reading(monkeypatch) -> None:
    monkeypatch.setattr(monitor_module.time, "monotonic", lambda: 100.0)  # both samples at one instant
    mon = PowerMonitor(Readings((2.0, (1.0,)), (6.0, (7.0,))), period_s=60.0)
    with mon:
        pass
    assert mon.window_s == 0.0 and mon.energy_j() == 0.0
    assert mon.avg_power_w() == 6.0 and mon.rails_w() == (7.0,)


def test_the_guard_runs_in_the_thread_and_its_error_is_raised_after_the_window() -> None:
    calls: list[float] = []

    def guard() -> None:
        calls.append(time.monotonic())
        if len(calls) == 2:
            raise ConfigError("too hot")

    with PowerMonitor(lambda: (1.0, ()), period_s=0.002, guard=guard, guard_period_s=0.01) as mon:
        time.sleep(0.2)
    assert len(calls) == 2 and calls[1] - calls[0] >= 0.01 - 1e-3  # the loop reads its clock just before
    with pytest.raises(ConfigError, match="too hot"):  # an e4gym error is raised as it is
        mon.check()


def test_a_failed_read_stops_polling_and_is_a_hardware_error() -> None:
    read = Readings((1.0, ()), (2.0, ()))

    def failing() -> tuple[float, tuple[float, ...]]:
        if read.calls >= 2:
            raise OSError("i2c bus gone")
        return read()

    with PowerMonitor(failing, period_s=0.002) as mon:
        time.sleep(0.05)
    assert len(mon.samples) == 2  # no sample on exit after a failure
    with pytest.raises(HardwareError, match="power sampling failed: i2c bus gone"):
        mon.check()
