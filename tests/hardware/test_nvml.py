"""NvmlBackend against an autospec'd pynvml module (signatures checked; no GPU needed)."""

from __future__ import annotations

import gc
import signal
import threading
import time
import warnings
from types import SimpleNamespace
from unittest.mock import create_autospec, sentinel

import numpy as np
import pynvml
import pytest

from e4gym.dnn import load_model_profile
from e4gym.errors import ConfigError, HardwareError, SettingError
from e4gym.hardware import Backend, Setting, restore
from e4gym.hardware.nvml import NvmlBackend, build_gpu_spec

MEM = {5001: [1500, 1000, 500], 810: [500, 300]}  # memory MHz -> graphics MHz, as NVML lists them (unsorted)
HANDLE = sentinel.handle


def make_nvml(energy_mj=None, power_mw=None, clocks=(1500, 5001)):
    """An autospec'd pynvml with the real constants and exception classes and a small fake GPU behind it."""
    m = create_autospec(pynvml)
    for name in dir(pynvml):
        value = getattr(pynvml, name)
        if (name.startswith("NVML_") and isinstance(value, int)) or name.startswith("NVMLError"):
            setattr(m, name, value)
    m.nvmlDeviceGetHandleByIndex.return_value = HANDLE
    m.nvmlDeviceGetCount.return_value = 1
    m.nvmlDeviceGetName.return_value = "NVIDIA Test GPU 8GB"
    m.nvmlDeviceGetSupportedMemoryClocks.return_value = list(MEM)
    m.nvmlDeviceGetSupportedGraphicsClocks.side_effect = lambda h, mem: MEM[mem]
    m.nvmlDeviceGetEnforcedPowerLimit.return_value = 200_000
    m.nvmlDeviceGetNumGpuCores.return_value = 2560
    m.nvmlDeviceGetMemoryBusWidth.return_value = 256
    thresholds = {pynvml.NVML_TEMPERATURE_THRESHOLD_SLOWDOWN: 90, pynvml.NVML_TEMPERATURE_THRESHOLD_SHUTDOWN: 100}
    m.nvmlDeviceGetTemperatureThreshold.side_effect = lambda h, t: thresholds[t]
    m.nvmlDeviceGetTemperature.return_value = 45
    info = {pynvml.NVML_CLOCK_GRAPHICS: clocks[0], pynvml.NVML_CLOCK_MEM: clocks[1]}
    m.nvmlDeviceGetClockInfo.side_effect = lambda h, t: info[t]
    m.nvmlDeviceGetCurrentClocksEventReasons.return_value = 0
    m.nvmlDeviceGetUtilizationRates.return_value = SimpleNamespace(gpu=80, memory=20)
    if energy_mj is None:
        m.nvmlDeviceGetTotalEnergyConsumption.return_value = 1_000
    else:
        m.nvmlDeviceGetTotalEnergyConsumption.side_effect = energy_mj
    if power_mw is None:
        m.nvmlDeviceGetPowerUsage.return_value = 50_000
    else:
        m.nvmlDeviceGetPowerUsage.side_effect = power_mw
    return m


class FakeRunner:
    """Returns a fixed latency after sleeping a little (so the run has a wall time)."""

    def __init__(self, latency_s: float = 0.004, sleep_s: float = 0.002) -> None:
        self.latency_s, self.sleep_s, self.calls = latency_s, sleep_s, []

    def run(self, work, batch=1):
        self.calls.append((work.key, batch))
        time.sleep(self.sleep_s)
        return self.latency_s


def changes(m) -> list[str]:
    """Names of the NVML calls that change the GPU's state."""
    return [c[0] for c in m.method_calls if "Set" in c[0] or "Reset" in c[0]]


@pytest.fixture
def frame():
    return load_model_profile("efficientnet_b0").frame_work()


def test_init_reads_name_and_clocks_into_levels():
    m = make_nvml()
    with NvmlBackend(0, runner=FakeRunner(), nvml=m) as b:
        m.nvmlInit.assert_called_once_with()
        m.nvmlDeviceGetHandleByIndex.assert_called_once_with(0)
        spec = b.spec
        assert b.name == "NVIDIA Test GPU 8GB"
        assert spec.name == "nvml-nvidia-test-gpu-8gb" and spec.full_name == b.name
        assert spec.gpu_freqs_hz == (300e6, 500e6, 1000e6, 1500e6)  # union over memory clocks, sorted
        assert spec.emc_freqs_hz == (810e6, 5001e6)
        assert spec.n_cpu == 1 and spec.n_levels == (1, 4, 2)
        assert b.clock_table == {810: (300, 500), 5001: (500, 1000, 1500)}
        assert spec.cuda_cores == 2560
        assert spec.dram_bw_bytes_per_s == pytest.approx(2 * 5001e6 * 256 / 8)
        assert (spec.thermal.throttle_c, spec.thermal.critical_c) == (90.0, 100.0)
        assert spec.model.static_w == pytest.approx(50.0)  # the power at open
        assert spec.max_levels() == (0, 3, 1)
        assert b.levels == (0, 3, 1)  # 1500 MHz, 5001 MHz now
        assert b.energy_source == "counter"
        assert isinstance(b, Backend)
        assert not any("ASSUMPTION" in n and "power" in n for n in b.spec_notes)
    m.nvmlShutdown.assert_called_once_with()
    assert changes(m) == []


def test_max_gpu_levels_thins_keeping_both_ends():
    clocks = {2619: list(range(345, 1981, 15))}
    spec, _ = build_gpu_spec("NVIDIA H100", clocks, cpu_khz=3e6, cpu_cores=8, max_gpu_levels=8)
    assert spec.n_gpu == 8
    assert spec.gpu_freqs_hz[0] == 345e6 and spec.gpu_freqs_hz[-1] == 1980e6
    assert list(spec.gpu_freqs_hz) == sorted(spec.gpu_freqs_hz)
    full, notes = build_gpu_spec("NVIDIA H100", clocks, cpu_khz=3e6, cpu_cores=8)
    assert full.n_gpu == len(clocks[2619]) and full.n_emc == 1
    assert any("power limit" in n for n in notes)  # assumptions are reported, not hidden
    with pytest.raises(ConfigError, match="no supported clocks"):
        build_gpu_spec("x", {}, cpu_khz=3e6)
    with pytest.raises(ConfigError, match="max_gpu_levels"):
        build_gpu_spec("x", clocks, cpu_khz=3e6, max_gpu_levels=0)


def test_env_reference_figures_are_finite_for_the_built_spec():
    from e4gym.envs.common import reference_frame

    spec, _ = build_gpu_spec("NVIDIA H100", {2619: list(range(345, 1981, 15))}, power_limit_w=700.0,
                             idle_power_w=70.0, cuda_cores=16896, bus_width_bits=5120, cpu_khz=3e6)
    lat, energy, power = reference_frame(spec, load_model_profile("efficientnet_b0"), None, 1 / 30, 25.0)
    assert all(np.isfinite(v) and v > 0 for v in (lat, energy, power))
    assert lat < 0.1 and power < 700.0


def test_energy_from_counter_difference(frame):
    # init probe, then before/after the run (mJ)
    m = make_nvml(energy_mj=[10_000, 10_000, 12_500])
    runner = FakeRunner(latency_s=0.004)
    with NvmlBackend(0, runner=runner, nvml=m) as b:
        r = b.run(frame, batch=2)
        assert runner.calls == [(frame.key, 2)]
        assert r.energy_j == pytest.approx(2.5) and r.measured_energy_j == r.energy_j
        assert r.latency_s == pytest.approx(0.004)
        assert r.avg_power_w > 0 and r.energy_j / r.avg_power_w >= 0.002  # energy over the run's wall time
        assert r.temp_c == 45.0 and r.gpu_hz == 1500e6 and r.emc_hz == 5001e6
        assert r.gpu_util == pytest.approx(0.8) and not r.throttled and r.transition_s == 0.0
        assert b.rail_names == ("gpu",) and r.rails_w == (r.avg_power_w,)
        assert r.rails(b.rail_names) == {"gpu": r.avg_power_w}
    assert changes(m) == []


def test_energy_falls_back_to_power_integration(frame):
    m = make_nvml(power_mw=[30_000, 40_000, 60_000, 45_000])
    m.nvmlDeviceGetTotalEnergyConsumption.side_effect = pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
    with NvmlBackend(0, runner=FakeRunner(sleep_s=0.005), nvml=m, poll_s=60.0) as b:
        assert b.energy_source == "power"
        r = b.run(frame)
        # no poll within the run: trapezoid between the samples before (40 W) and after (60 W) over the window
        assert r.avg_power_w == pytest.approx(50.0)
        assert r.energy_j == pytest.approx(50.0 * r.energy_j / r.avg_power_w)
        assert r.energy_j >= 50.0 * 0.005 * 0.99


class SwitchingRunner:
    """Sleeps ``seconds`` with the fake GPU's power at ``high_w`` during the middle half, ``low_w`` otherwise.

    ``high_s`` is how long the power was actually high (s): sleeps overshoot on a loaded machine.
    """

    def __init__(self, power: list[float], seconds: float, low_w: float, high_w: float) -> None:
        self.power, self.seconds, self.low_w, self.high_w = power, seconds, low_w, high_w
        self.high_s = 0.0

    def run(self, work, batch=1):
        time.sleep(self.seconds / 4)
        self.power[0] = self.high_w
        t = time.perf_counter()
        time.sleep(self.seconds / 2)
        self.power[0] = self.low_w
        self.high_s = time.perf_counter() - t
        time.sleep(self.seconds / 4)
        return self.seconds


def test_power_is_polled_during_a_run_and_an_idle(frame):
    """Without the energy counter the shared power monitor polls every poll_s: a peak inside the run counts."""
    power = [40.0]  # W, what the fake GPU draws now
    m = make_nvml(power_mw=lambda h: power[0] * 1e3)
    m.nvmlDeviceGetTotalEnergyConsumption.side_effect = pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
    runner = SwitchingRunner(power, 0.2, 40.0, 80.0)
    with NvmlBackend(0, runner=runner, nvml=m, poll_s=0.005) as b:
        calls = m.nvmlDeviceGetPowerUsage.call_count
        r = b.run(frame)
        assert m.nvmlDeviceGetPowerUsage.call_count - calls >= 10  # polled, not only before and after
        # The energy above the 40 W floor is the peak's 40 W over the time it lasted (about 4 J); the samples
        # before and after alone would say 0 J. The polled window's length varies with load, the excess does not.
        window_s = r.energy_j / r.avg_power_w
        excess_j = r.energy_j - 40.0 * window_s
        assert excess_j == pytest.approx(40.0 * runner.high_s, rel=0.3)
        assert r.avg_power_w > 40.0
        assert r.rails_w == (r.avg_power_w,)
        calls = m.nvmlDeviceGetPowerUsage.call_count
        idle = b.idle(0.05)
        assert m.nvmlDeviceGetPowerUsage.call_count - calls >= 3
        assert idle.latency_s >= 0.05 and idle.avg_power_w == pytest.approx(40.0)
        assert idle.energy_j == pytest.approx(40.0 * idle.latency_s)
    assert changes(m) == []


def test_idle_measures_counter_and_sleeps():
    m = make_nvml(energy_mj=[0, 1_000, 1_600])
    with NvmlBackend(0, runner=FakeRunner(), nvml=m) as b:
        t0 = time.perf_counter()
        r = b.idle(0.03)
        assert time.perf_counter() - t0 >= 0.03
        assert r.latency_s >= 0.03 and r.energy_j == pytest.approx(0.6)
        with pytest.raises(SettingError, match="idle duration"):
            b.idle(-1.0)


def test_read_sensors():
    m = make_nvml()
    m.nvmlDeviceGetCurrentClocksEventReasons.return_value = pynvml.nvmlClocksEventReasonSwThermalSlowdown
    with NvmlBackend(0, runner=FakeRunner(), nvml=m) as b:
        s = b.read_sensors()
        assert s.power_w == pytest.approx(50.0) and s.temp_c == 45.0
        assert s.gpu_hz == 1500e6 and s.emc_hz == 5001e6 and s.throttled
        assert s.rails_w == (s.power_w,)


def test_read_only_apply_never_changes_anything():
    m = make_nvml(clocks=(500, 810))
    b = NvmlBackend(0, runner=FakeRunner(), nvml=m)
    assert b.read_only and not b.lock_clocks
    with pytest.warns(RuntimeWarning, match="read-only"):
        assert b.apply(Setting(0, 3, 1)) == 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once only
        b.apply((0, 2, 1))
        b.apply((0, 1, 0))  # the clocks it runs at: no warning either
    assert b.requested == Setting(0, 1, 0)
    with pytest.raises(SettingError, match="out of range"):
        b.apply((0, 4, 0))
    b.run(load_model_profile("efficientnet_b0").frame_work(0))
    b.close()
    b.close()  # idempotent
    assert changes(m) == []
    m.nvmlShutdown.assert_called_once_with()
    with pytest.raises(HardwareError, match="closed"):
        b.read_sensors()


def test_strict_read_only_raises():
    m = make_nvml(clocks=(500, 810))
    with NvmlBackend(0, runner=FakeRunner(), nvml=m, strict_read_only=True) as b:
        with pytest.raises(SettingError, match=r"read-only.*lock_clocks=True"):
            b.apply((0, 3, 1))
        b.apply((0, 1, 0))
    assert changes(m) == []


def test_lock_clocks_sets_and_close_resets(frame):
    m = make_nvml()
    with NvmlBackend(0, runner=FakeRunner(), lock_clocks=True, nvml=m) as b:
        assert not b.read_only
        assert changes(m) == []  # nothing is locked before the first apply
        stall = b.apply(Setting(0, 2, 1))
        assert stall >= 0.0
        m.nvmlDeviceSetGpuLockedClocks.assert_called_once_with(HANDLE, 1000, 1000)
        m.nvmlDeviceSetMemoryLockedClocks.assert_called_once_with(HANDLE, 5001, 5001)
        b.apply(Setting(0, 2, 1))  # unchanged levels: no NVML call
        b.apply(Setting(0, 0, 1))
        assert m.nvmlDeviceSetGpuLockedClocks.call_count == 2
        m.nvmlDeviceSetGpuLockedClocks.assert_called_with(HANDLE, 300, 300)
        assert m.nvmlDeviceSetMemoryLockedClocks.call_count == 1
        r = b.run(frame)
        assert r.transition_s >= 0.0 and r.latency_s == pytest.approx(0.004 + r.transition_s)
    m.nvmlDeviceResetGpuLockedClocks.assert_called_once_with(HANDLE)
    m.nvmlDeviceResetMemoryLockedClocks.assert_called_once_with(HANDLE)
    m.nvmlShutdown.assert_called_once_with()
    b.close()
    m.nvmlDeviceResetGpuLockedClocks.assert_called_once_with(HANDLE)


def test_single_memory_clock_is_never_locked():
    m = make_nvml()
    m.nvmlDeviceGetSupportedMemoryClocks.return_value = [5001]
    with NvmlBackend(0, runner=FakeRunner(), lock_clocks=True, nvml=m) as b:
        b.apply((0, 1, 0))
    assert changes(m) == ["nvmlDeviceSetGpuLockedClocks", "nvmlDeviceResetGpuLockedClocks"]


def test_no_permission_is_a_clear_error():
    m = make_nvml()
    m.nvmlDeviceSetGpuLockedClocks.side_effect = pynvml.NVMLError(pynvml.NVML_ERROR_NO_PERMISSION)
    with NvmlBackend(0, runner=FakeRunner(), lock_clocks=True, nvml=m) as b:
        with pytest.raises(HardwareError, match=r"needs root.*read_only=True"):
            b.apply((0, 1, 1))
    m.nvmlDeviceResetGpuLockedClocks.assert_not_called()  # nothing was locked, nothing to reset


def test_memory_lock_not_supported():
    m = make_nvml()
    m.nvmlDeviceSetMemoryLockedClocks.side_effect = pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
    with NvmlBackend(0, runner=FakeRunner(), lock_clocks=True, nvml=m) as b:
        with pytest.warns(RuntimeWarning, match="left to the driver"):
            b.apply((0, 1, 1))  # the top memory level: left to the driver
        with pytest.raises(HardwareError, match="cannot lock the memory clock"):
            b.apply((0, 1, 0))
    m.nvmlDeviceResetMemoryLockedClocks.assert_not_called()
    m.nvmlDeviceResetGpuLockedClocks.assert_called_once_with(HANDLE)


def test_locked_clocks_are_restored_by_the_registry_on_a_signal():
    """Once a clock is locked the backend is in the restore registry (SIGINT / SIGTERM, exit); read-only is not."""
    with NvmlBackend(0, runner=FakeRunner(), nvml=make_nvml()) as ro:
        ro.read_sensors()
        assert not any("NvmlBackend" in e.what for e in restore._OPEN)
    m = make_nvml()
    b = NvmlBackend(0, runner=FakeRunner(), lock_clocks=True, nvml=m)
    assert not any("NvmlBackend" in e.what for e in restore._OPEN)  # nothing locked yet
    b.apply((0, 1, 0))
    assert any("NVML GPU 0" in e.what for e in restore._OPEN)
    if threading.current_thread() is threading.main_thread():
        assert signal.getsignal(signal.SIGTERM) is restore._on_signal
    restore._restore_all("a test")  # what SIGTERM does before the previous handler
    m.nvmlDeviceResetGpuLockedClocks.assert_called_once_with(HANDLE)
    m.nvmlDeviceResetMemoryLockedClocks.assert_called_once_with(HANDLE)
    m.nvmlShutdown.assert_called_once_with()
    assert not any("NVML GPU 0" in e.what for e in restore._OPEN)
    with pytest.raises(HardwareError, match="closed"):
        b.read_sensors()
    b.close()  # nothing left to undo
    m.nvmlDeviceResetGpuLockedClocks.assert_called_once_with(HANDLE)
    m.nvmlShutdown.assert_called_once_with()


def test_finaliser_resets_when_not_closed():
    m = make_nvml()
    b = NvmlBackend(0, runner=FakeRunner(), lock_clocks=True, nvml=m)
    b.apply((0, 1, 1))
    del b
    gc.collect()
    m.nvmlDeviceResetGpuLockedClocks.assert_called_once_with(HANDLE)
    m.nvmlShutdown.assert_called_once_with()
    assert not any("NVML GPU 0" in e.what for e in restore._OPEN)  # the finaliser left the registry too


def test_flags_and_init_errors():
    with pytest.raises(ConfigError, match="contradicts"):
        NvmlBackend(lock_clocks=True, read_only=True, nvml=make_nvml())
    with pytest.raises(ConfigError, match="needs lock_clocks=True"):
        NvmlBackend(read_only=False, nvml=make_nvml())
    with pytest.raises(ConfigError, match="lock_clocks must be True or False"):
        NvmlBackend(lock_clocks="yes", nvml=make_nvml())
    m = make_nvml()
    m.nvmlInit.side_effect = pynvml.NVMLError(pynvml.NVML_ERROR_DRIVER_NOT_LOADED)
    with pytest.raises(HardwareError, match="cannot initialise NVML"):
        NvmlBackend(nvml=m)
    m = make_nvml()
    m.nvmlDeviceGetHandleByIndex.side_effect = pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
    with pytest.raises(HardwareError, match=r"no NVIDIA GPU at NVML index 3.*has 1"):
        NvmlBackend(3, nvml=m)
    m.nvmlShutdown.assert_called_once_with()


def test_spec_override_and_env_step():
    """The backend drives a frame env built on its spec (read-only, fake runner)."""
    from e4gym.envs import EarlyExitDVFSEnv

    m = make_nvml()
    with NvmlBackend(0, runner=FakeRunner(sleep_s=0.0), nvml=m) as b:
        env = EarlyExitDVFSEnv(device=b.spec, backend=b, episode_frames=3)
        obs, _ = env.reset(seed=0)
        assert np.all(np.isfinite(obs))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            for _ in range(3):
                obs, reward, _, _, _ = env.step(env.action_space.sample())
                assert np.isfinite(reward) and np.all(np.isfinite(obs))
        own = NvmlBackend(0, runner=FakeRunner(), nvml=make_nvml(), spec=b.spec)
        assert own.spec is b.spec and own.spec_notes == [f"spec given by the caller ({b.spec.name})"]
        own.close()
    assert changes(m) == []


def test_real_nvml_without_a_gpu_is_a_clear_error():
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        with pytest.raises(HardwareError, match="cannot initialise NVML"):
            NvmlBackend()
    else:
        pynvml.nvmlShutdown()
        pytest.skip("an NVIDIA driver is present")


def test_block_env_runs_a_real_torch_runner_block_by_block():
    """Block env → NvmlBackend → TorchRunner (CPU): blocks run in order, frames restart at block 0."""
    from e4gym.envs import EarlyExitDVFSBlockEnv
    from e4gym.hardware.runner import TorchRunner

    runner = TorchRunner("efficientnet_b0", device="cpu", input_size=32, warmup=0)
    with NvmlBackend(0, runner=runner, nvml=make_nvml()) as b:
        env = EarlyExitDVFSBlockEnv(device=b.spec, backend=b, episode_frames=3)
        env.reset(seed=0)
        rng = np.random.default_rng(0)
        frames = 0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            for _ in range(40):
                action = env.action_space.sample()
                action[0] = int(rng.random() < 0.5)  # exit early half of the time once an exit head has run
                _, _, terminated, truncated, info = env.step(action)
                frames += bool(info["frame_done"])
                if terminated or truncated:
                    break
        assert frames == 3


@pytest.mark.slow  # a subprocess that imports torch: about 5 s on 2 shared cores
def test_gpu_check_script_runs_read_only(monkeypatch, tmp_path, capsys):
    """benchmarks/gpu_check.py end to end on the mocked GPU, frames on the CPU (plumbing only)."""
    import importlib.util
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.py"
    spec = importlib.util.spec_from_file_location("bench_gpu_check", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    m = make_nvml()
    counter = iter(range(0, 10**9, 7))
    m.nvmlDeviceGetTotalEnergyConsumption.side_effect = lambda h: next(counter)

    def backend(index, read_only):
        assert read_only is True
        return NvmlBackend(index, read_only=read_only, nvml=m)

    monkeypatch.setattr(module, "NvmlBackend", backend)
    out = tmp_path / "check.json"
    args = ["--device", "cpu", "--frames", "2", "--input-size", "32", "--idle-s", "0.01", "--cpu-frames", "1",
            "--out", str(out)]
    assert module.main(args) == 0
    text = capsys.readouterr().out
    assert "NVIDIA Test GPU 8GB" in text and "| block by block |" in text
    data = json.loads(out.read_text())
    assert len(data["cuda"]) == 6 and data["gpu"]["gpu_levels"] == 4
    assert all(r["latency_ms_mean"] > 0 for r in data["cuda"])
    assert set(data["cpu_latency_ms"]) == {f"efficientnet_b0/frame/exit{e}" for e in range(5)}
    assert changes(m) == []
