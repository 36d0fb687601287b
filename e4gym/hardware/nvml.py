"""A backend for desktop and datacenter NVIDIA GPUs, read (and, only on request, driven) through NVML.

:class:`NvmlBackend` runs e4gym Work for real (through a runner, by default a CUDA
:class:`~e4gym.hardware.runner.TorchRunner`) and measures it with NVML (``nvidia-ml-py``, ``import pynvml``):

* **energy**: the difference of ``nvmlDeviceGetTotalEnergyConsumption`` (mJ since the driver loaded; Volta and
  newer) around a run; where the counter is not supported, power (``nvmlDeviceGetPowerUsage``, mW) polled every
  ``poll_s`` over the run by the shared :class:`~e4gym.hardware.monitor.PowerMonitor` and integrated with the
  trapezoid rule. NVML's energy and power cover the GPU board only (not the host CPU or DRAM). The counter is
  updated by the driver every few tens of ms, so the energy of one short run is coarse; sums over many runs are
  exact (the differences telescope);
* **latency**: what the runner returns (CUDA events), plus the stall of a clock change charged to the next run;
* **clocks, temperature, throttling**: ``nvmlDeviceGetClockInfo``, ``nvmlDeviceGetTemperature`` and the clock
  event reasons (thermal slowdowns count as throttling).

Safety: the backend **never changes anything** on the GPU unless it is built with ``lock_clocks=True``. Without
it (the default, ``read_only``) only NVML queries are issued, and :meth:`NvmlBackend.apply` records the request
without applying it. With ``lock_clocks=True``, :meth:`~NvmlBackend.apply` locks the graphics clock
(``nvmlDeviceSetGpuLockedClocks(f, f)``) and, where the GPU has several memory clocks, the memory clock
(``nvmlDeviceSetMemoryLockedClocks``); :meth:`~NvmlBackend.close` (also on ``__exit__`` and garbage collection,
and, once a clock is locked, through the restore registry :mod:`e4gym.hardware.restore` at interpreter exit and
on SIGINT / SIGTERM) resets exactly what was locked. NVML keeps locked clocks after the process ends, hence the
finaliser and the registry; by hand: ``sudo nvidia-smi -rgc`` and ``sudo nvidia-smi -rmc``. A read-only backend
changes nothing, so it has nothing to register.

Level tables (see :func:`build_gpu_spec`): a desktop GPU has no CPU DVFS here, so the CPU domain has one level
(the host's clock); the GPU levels are the graphics clocks NVML lists as supported (the union over memory
clocks, optionally thinned to ``max_gpu_levels``), and the EMC levels are the supported memory clocks.
"""

from __future__ import annotations

import math
import os
import platform
import re
import time
import warnings
import weakref
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any, TypeVar

from e4gym.dnn.work import Work
from e4gym.errors import ConfigError, HardwareError, SettingError
from e4gym.hardware import restore
from e4gym.hardware.backend import Measurement, SensorReading, Setting
from e4gym.hardware.monitor import PowerMonitor
from e4gym.hardware.runner import WorkRunner
from e4gym.hardware.spec import DeviceSpec, parse_device

__all__ = ["NvmlBackend", "WorkRunner", "build_gpu_spec"]

#: Clock event reasons counted as throttling: software and hardware thermal slowdown, hardware slowdown.
_THERMAL_REASONS = 0x20 | 0x40 | 0x08
_MIN_POLL_S = 1e-3
_T = TypeVar("_T")


class _NotSupportedError(HardwareError):
    """NVML says the GPU does not support the operation."""


# ----------------------------------------------------------------------------------------------- the spec


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "gpu"


def _thin(values: Sequence[int], k: int | None) -> list[int]:
    """``k`` of ``values`` (sorted), evenly spaced by index, always keeping the lowest and the highest."""
    if k is None or k >= len(values):
        return list(values)
    if k == 1:
        return [values[-1]]
    n = len(values)
    picks = sorted({round(i * (n - 1) / (k - 1)) for i in range(k)})
    return [values[i] for i in picks]


def _host_cpu_khz() -> tuple[float, str | None]:
    """The host CPU's top clock (kHz), and a note when it had to be assumed."""
    try:
        text = Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq").read_text().strip()
        return float(int(text)), None
    except (OSError, ValueError):
        pass
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("cpu mhz"):
                return float(line.split(":", 1)[1]) * 1e3, None
    except (OSError, ValueError, IndexError):
        pass
    return 1.0e6, "ASSUMPTION: host CPU clock unknown, 1 GHz used as the CPU domain's one level"


def build_gpu_spec(
    name: str,
    clocks_mhz: Mapping[int, Sequence[int]],
    *,
    power_limit_w: float | None = None,
    idle_power_w: float | None = None,
    cuda_cores: int | None = None,
    bus_width_bits: int | None = None,
    slowdown_c: float | None = None,
    shutdown_c: float | None = None,
    cpu_khz: float | None = None,
    cpu_cores: int | None = None,
    max_gpu_levels: int | None = None,
    source: str = "nvml",
) -> tuple[DeviceSpec, list[str]]:
    """A :class:`DeviceSpec` for a desktop/datacenter GPU from what NVML reports, and the assumptions it made.

    The spec is built from a mapping with :func:`e4gym.hardware.spec.parse_device` (the parser of the device
    YAMLs), so it is validated the same way and works wherever a Jetson spec does (``env(device=spec)``):

    * CPU: one level, the host's top clock (no CPU DVFS on a desktop GPU backend); one power mode ``default``;
    * GPU: the supported graphics clocks, the union over memory clocks (MHz → Hz), thinned to
      ``max_gpu_levels`` evenly spaced levels (lowest and highest kept) if given;
    * EMC: the supported memory clocks (MHz → Hz); DRAM bandwidth ``2 · f_mem · bus_width / 8`` (double data
      rate, as NVML reports HBM and GDDR clocks);
    * thermal trips: NVML's slowdown and shutdown thresholds;
    * ``model``: the emulator's coefficients. The backend measures everything and never uses them; the envs use
      them only for their reference figures (the nominal latency, energy and power of a full frame that
      normalise rewards and observations). Power: ``static_w`` is the power at open (idle), the GPU's dynamic
      power at the top clock fills the power limit; latency coefficients are generic desktop values. All are
      assumptions.

    Args:
        name: the GPU's name (``nvmlDeviceGetName``); the spec is named ``nvml-<slug of name>``.
        clocks_mhz: memory clock (MHz) → supported graphics clocks at that memory clock (MHz).
        power_limit_w / idle_power_w: enforced power limit and power at open (W).
        cuda_cores / bus_width_bits: from NVML where supported.
        slowdown_c / shutdown_c: temperature thresholds (°C).
        cpu_khz / cpu_cores: the host CPU's clock (kHz) and core count (default: read from the host).
        max_gpu_levels: keep at most this many GPU levels (``None``: all).
        source: where the facts came from (stored as the spec's ``source_file``).

    Raises:
        ConfigError: no clocks, or a bad ``max_gpu_levels``.
    """
    notes: list[str] = []
    mem = sorted({int(m) for m in clocks_mhz if int(m) > 0})
    gfx = sorted({int(g) for m in mem for g in clocks_mhz[m] if int(g) > 0})
    if not mem or not gfx:
        raise ConfigError(f"GPU '{name}': NVML reports no supported clocks ({dict(clocks_mhz)!r})")
    if max_gpu_levels is not None and (
        isinstance(max_gpu_levels, bool) or not isinstance(max_gpu_levels, int) or max_gpu_levels < 1
    ):
        raise ConfigError(f"max_gpu_levels must be a positive integer or None, got {max_gpu_levels!r}")
    gfx = _thin(gfx, max_gpu_levels)
    if cpu_khz is None:
        cpu_khz, note = _host_cpu_khz()
        if note:
            notes.append(note)
    cores = cpu_cores or os.cpu_count() or 1
    if power_limit_w is None or not power_limit_w > 0:
        power_limit_w = 250.0
        notes.append("ASSUMPTION: power limit unknown, 250 W used")
    if idle_power_w is None or not idle_power_w > 0:
        idle_power_w = 0.2 * power_limit_w
        notes.append("ASSUMPTION: idle power unknown, 20 % of the power limit used")
    static_w = min(max(idle_power_w, 0.05 * power_limit_w), 0.5 * power_limit_w)
    if not cuda_cores or cuda_cores < 1:
        cuda_cores = 4096
        notes.append("ASSUMPTION: CUDA core count unknown (nvmlDeviceGetNumGpuCores unsupported), 4096 used")
    if bus_width_bits and bus_width_bits > 0:
        dram_gbps = 2.0 * mem[-1] * 1e6 * bus_width_bits / 8 / 1e9
    else:
        dram_gbps = 500.0
        notes.append("ASSUMPTION: memory bus width unknown, 500 GB/s used")
    if slowdown_c is None or not slowdown_c > 0:
        slowdown_c = 85.0
        notes.append("ASSUMPTION: slowdown temperature unknown, 85 °C used")
    if shutdown_c is None or not shutdown_c > 0:
        shutdown_c = slowdown_c + 10.0
        notes.append(f"ASSUMPTION: shutdown temperature unknown, {shutdown_c:g} °C used")
    f_gpu, f_mem = gfx[-1] * 1e6, mem[-1] * 1e6
    dyn_w = max(power_limit_w - static_w, 1.0)
    data = {
        "name": f"nvml-{_slug(name)}",
        "full_name": name,
        "soc": "discrete-gpu",
        "cpu": {
            "arch": platform.machine() or "unknown",
            "cores": int(cores),
            "governor": "performance",
            "levels_khz": [float(cpu_khz)],
        },
        "gpu": {
            "arch": "nvidia",
            "cuda_cores": int(cuda_cores),
            "governor": "simple_ondemand",
            "levels_hz": [int(g) * 1_000_000 for g in gfx],
        },
        "emc": {"dram_gbps": dram_gbps, "governor": "performance", "levels_hz": [int(m) * 1_000_000 for m in mem]},
        "power_modes": {
            "default": "default",
            "modes": {"default": {"source": f"NVML enforced power limit {power_limit_w:g} W, uncapped clocks"}},
        },
        "thermal": {"throttle_c": float(slowdown_c), "critical_c": float(max(shutdown_c, slowdown_c)),
                    "ambient_c": 25.0, "fan": True},
        "model": {
            "dispatch_cycles_per_kernel": 3.0e4,
            "gpu_flops_per_core_cycle": 0.5,
            "gpu_cycles_per_kernel": 1.0e4,
            "mem_efficiency": 0.6,
            "overlap_p": 2.0,
            "static_w": float(static_w),
            "cpu": {"c_eff_f": 0.0, "leak_w": 0.0, "v_min": 1.0, "v_max": 1.0, "knee_frac": 0.0, "idle_activity": 0.0},
            "gpu": {"c_eff_f": 0.8 * dyn_w / f_gpu, "leak_w": 0.05 * power_limit_w, "v_min": 0.7, "v_max": 1.0,
                    "knee_frac": 0.3, "idle_activity": 0.05},
            "emc": {"c_eff_f": 0.2 * dyn_w / f_mem, "leak_w": 0.0, "v_min": 0.9, "v_max": 1.0, "knee_frac": 0.0,
                    "idle_activity": 0.3},
            "noise_latency": 0.0,
            "noise_power": 0.0,
        },
    }
    return parse_device(data, source), notes


# ----------------------------------------------------------------------------------------------- restoring


class _Undo:
    """What an :class:`NvmlBackend` changed (the clocks it locked, the NVML session it opened) and how to undo it.

    It holds no reference to the backend, so that it can run as the backend's finaliser (garbage collection,
    interpreter exit); :meth:`NvmlBackend.close` runs it, and so does the restore registry (interpreter exit,
    SIGINT / SIGTERM) from the first lock on. Calling it resets the locked clocks, shuts NVML down and returns what
    could not be reset; a second call finds nothing left to undo.
    """

    def __init__(self, nvml: Any, index: int) -> None:
        self.nvml, self.index = nvml, index
        self.handle: Any = None
        #: What is still to undo: NVML initialised, graphics clock locked, memory clock locked.
        self.init, self.gpu, self.mem = True, False, False
        self._entry: restore.Restorer | None = None

    def locked(self, domain: str) -> None:
        """Record that ``domain`` (``"gpu"``: graphics, ``"mem"``: memory) is locked; the first lock registers this
        undo with the restore registry."""
        setattr(self, domain, True)
        if self._entry is None:
            self._entry = restore.register(self, f"the clocks NvmlBackend locked on NVML GPU {self.index}")

    def __call__(self) -> list[str]:
        """Undo what is left to undo; returns what could not be reset (with the command that resets it by hand)."""
        errors = []
        for domain, reset, by_hand in (("gpu", "nvmlDeviceResetGpuLockedClocks", "-rgc"),
                                       ("mem", "nvmlDeviceResetMemoryLockedClocks", "-rmc")):
            if getattr(self, domain):
                try:
                    getattr(self.nvml, reset)(self.handle)
                    setattr(self, domain, False)
                except Exception as exc:
                    errors.append(f"{reset} failed ({exc}); run `sudo nvidia-smi {by_hand}`")
        if self.init:
            self.init = False
            try:
                self.nvml.nvmlShutdown()
            except Exception:  # nothing was changed by init: a failed shutdown leaves nothing to restore
                pass
        restore.unregister(self._entry)
        self._entry = None
        return errors


# ----------------------------------------------------------------------------------------------- the backend


class NvmlBackend:
    """An NVIDIA desktop or datacenter GPU measured through NVML (satisfies the :class:`Backend` protocol).

    Args:
        index: NVML device index (as ``nvidia-smi`` numbers GPUs: PCI bus order, not CUDA's order).
        runner: what executes the Work (``run(work, batch) -> seconds``), e.g. a
            :class:`~e4gym.hardware.runner.TorchRunner`. ``None``: a CUDA ``TorchRunner`` for the model of the
            first Work run, on the CUDA device whose UUID is this GPU's.
        lock_clocks: ``True`` lets :meth:`apply` lock the GPU's clocks (needs root on most GPUs). Anything else
            keeps the backend read-only: it then issues NVML queries only.
        read_only: ``None`` (the default): read-only unless ``lock_clocks=True``. ``True`` with
            ``lock_clocks=True``, or ``False`` without it, is contradictory and refused.
        spec: a :class:`DeviceSpec` whose GPU/EMC level tables (Hz) to use instead of the one built from NVML's
            supported clocks (:func:`build_gpu_spec`).
        nvml: the NVML module (default: ``import pynvml`` from nvidia-ml-py); tests pass a mock.
        max_gpu_levels: thin the GPU level table to this many levels (datacenter GPUs list 100+ clocks).
        strict_read_only: in read-only mode, :meth:`apply` raises :class:`SettingError` for a request that differs
            from the current clocks instead of warning once.
        poll_s: power sampling period while idling, when the energy counter is not supported (s).

    Raises:
        HardwareError: nvidia-ml-py missing, NVML cannot start (no driver), no GPU at ``index``.
        ConfigError: contradictory ``read_only`` / ``lock_clocks``, bad arguments.

    ``apply`` in read-only mode validates the levels and records the request (:attr:`requested`) but changes
    nothing and returns 0 s; it warns once (or, with ``strict_read_only``, raises) when the requested GPU/memory
    levels differ from the current ones, because the env's action then has no effect. :attr:`levels` always
    reports the levels of the clocks the GPU runs at now.

    Power rails (:attr:`rail_names`): one, ``"gpu"``: NVML's board power, the GPU board only; ``rails_w`` of a
    :class:`Measurement` is ``(avg_power_w,)``, of a :class:`SensorReading` ``(power_w,)``.

    Example:
        >>> with NvmlBackend(0) as gpu:                                             # doctest: +SKIP
        ...     m = gpu.run(load_model_profile("efficientnet_b0").frame_work())
        ...     print(m.latency_s, m.energy_j)
    """

    #: The power rails every Measurement and SensorReading carries (``rails_w``): the GPU board's NVML power.
    rail_names: tuple[str, ...] = ("gpu",)

    def __init__(
        self,
        index: int = 0,
        runner: WorkRunner | None = None,
        lock_clocks: bool = False,
        read_only: bool | None = None,
        spec: DeviceSpec | None = None,
        *,
        nvml: Any = None,
        max_gpu_levels: int | None = None,
        strict_read_only: bool = False,
        poll_s: float = 0.02,
    ) -> None:
        self._closed = True  # until NVML is up: close() before then has nothing to do
        if not isinstance(lock_clocks, bool):
            raise ConfigError(f"lock_clocks must be True or False, got {lock_clocks!r}")
        if read_only is None:
            read_only = not lock_clocks
        if not isinstance(read_only, bool):
            raise ConfigError(f"read_only must be True, False or None, got {read_only!r}")
        if read_only == lock_clocks:
            raise ConfigError(
                "read_only=True contradicts lock_clocks=True" if lock_clocks
                else "read_only=False needs lock_clocks=True: the backend changes clocks only when asked to "
                "explicitly with lock_clocks=True"
            )
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            raise ConfigError(f"index must be an NVML device index >= 0, got {index!r}")
        if not (isinstance(poll_s, (int, float)) and math.isfinite(poll_s) and poll_s >= _MIN_POLL_S):
            raise ConfigError(f"poll_s must be a number of seconds >= {_MIN_POLL_S}, got {poll_s!r}")
        if spec is not None and not isinstance(spec, DeviceSpec):
            raise ConfigError(f"spec must be a DeviceSpec or None, got {type(spec).__name__}")
        if nvml is None:
            try:
                import pynvml as nvml
            except ImportError as exc:
                raise HardwareError(
                    "NvmlBackend needs nvidia-ml-py: pip install nvidia-ml-py (it provides `import pynvml`)"
                ) from exc
        self._nvml = nvml
        self.index = index
        self.lock_clocks = lock_clocks
        self.read_only = read_only
        self.strict_read_only = bool(strict_read_only)
        self.poll_s = float(poll_s)
        try:
            nvml.nvmlInit()
        except nvml.NVMLError as exc:
            raise HardwareError(
                f"cannot initialise NVML ({exc}): is an NVIDIA GPU present and its driver loaded (nvidia-smi)?"
            ) from exc
        # What close() must undo; shared with the finaliser, which must not hold a reference to self.
        self._undo = _Undo(nvml, index)
        self._closed = False
        try:
            try:
                self._handle = nvml.nvmlDeviceGetHandleByIndex(index)
            except nvml.NVMLError as exc:
                count = self._try(nvml.nvmlDeviceGetCount)
                raise HardwareError(
                    f"no NVIDIA GPU at NVML index {index} ({exc}); this machine has {count} (see nvidia-smi -L)"
                ) from exc
            self._undo.handle = self._handle
            self._finalizer = weakref.finalize(self, self._undo)
            self.name: str = self._str(nvml.nvmlDeviceGetName(self._handle))
            self.clock_table: dict[int, tuple[int, ...]] = self._read_clocks()
            if spec is None:
                spec, notes = self._build_spec(max_gpu_levels)
            else:
                notes = [f"spec given by the caller ({spec.name})"]
            self.spec: DeviceSpec = spec
            self.spec_notes: list[str] = notes
            self._counter = self._try(nvml.nvmlDeviceGetTotalEnergyConsumption, self._handle) is not None
        except BaseException:
            self.close()
            raise
        self.energy_source: str = "counter" if self._counter else "power"
        self._runner = runner
        self.requested: Setting | None = None
        self._locked: list[int | None] = [None, None]  # GPU, EMC level the backend locked (None: not locked)
        self._pending_stall_s = 0.0
        self._warned = False
        self._t0 = time.perf_counter()

    # ------------------------------------------------------------------------------------------ NVML helpers

    @staticmethod
    def _str(value: Any) -> str:
        return value.decode() if isinstance(value, bytes) else str(value)

    def _try(self, fn: Any, *args: Any) -> Any:
        """``fn(*args)``, or ``None`` when NVML raises (not supported, ...)."""
        try:
            return fn(*args)
        except self._nvml.NVMLError:
            return None

    def _is(self, exc: BaseException, code_name: str) -> bool:
        return getattr(exc, "value", None) == getattr(self._nvml, code_name, object())

    def _read_clocks(self) -> dict[int, tuple[int, ...]]:
        """Memory clock (MHz) → supported graphics clocks (MHz); the current/max clocks where not listed."""
        nvml, h = self._nvml, self._handle
        table: dict[int, tuple[int, ...]] = {}
        for m in self._try(nvml.nvmlDeviceGetSupportedMemoryClocks, h) or []:
            gfx = self._try(nvml.nvmlDeviceGetSupportedGraphicsClocks, h, int(m)) or []
            if gfx:
                table[int(m)] = tuple(sorted({int(g) for g in gfx}))
        if not table:
            g = self._try(nvml.nvmlDeviceGetMaxClockInfo, h, nvml.NVML_CLOCK_GRAPHICS)
            m = self._try(nvml.nvmlDeviceGetMaxClockInfo, h, nvml.NVML_CLOCK_MEM)
            if not g or not m:
                raise HardwareError(
                    f"GPU '{self.name}' reports neither its supported clocks nor its maximum clocks through NVML; "
                    f"pass spec= with the level tables"
                )
            table[int(m)] = (int(g),)
        return table

    def _build_spec(self, max_gpu_levels: int | None) -> tuple[DeviceSpec, list[str]]:
        nvml, h = self._nvml, self._handle
        limit_mw = self._try(nvml.nvmlDeviceGetEnforcedPowerLimit, h)
        power_mw = self._try(nvml.nvmlDeviceGetPowerUsage, h)
        cores = self._try(nvml.nvmlDeviceGetNumGpuCores, h) if hasattr(nvml, "nvmlDeviceGetNumGpuCores") else None
        width = self._try(nvml.nvmlDeviceGetMemoryBusWidth, h) if hasattr(nvml, "nvmlDeviceGetMemoryBusWidth") else None
        slow = self._try(nvml.nvmlDeviceGetTemperatureThreshold, h, nvml.NVML_TEMPERATURE_THRESHOLD_SLOWDOWN)
        shut = self._try(nvml.nvmlDeviceGetTemperatureThreshold, h, nvml.NVML_TEMPERATURE_THRESHOLD_SHUTDOWN)
        spec, notes = build_gpu_spec(
            self.name,
            self.clock_table,
            power_limit_w=None if limit_mw is None else float(limit_mw) / 1e3,
            idle_power_w=None if power_mw is None else float(power_mw) / 1e3,
            cuda_cores=None if cores is None else int(cores),
            bus_width_bits=None if width is None else int(width),
            slowdown_c=None if slow is None else float(slow),
            shutdown_c=None if shut is None else float(shut),
            max_gpu_levels=max_gpu_levels,
            source=f"nvml:{self.index}",
        )
        if len(self.clock_table) == 1 and len(next(iter(self.clock_table.values()))) == 1:
            notes.append("NVML lists no supported clocks: one level each, at the maximum clocks")
        return spec, notes

    def energy_mj(self) -> float | None:
        """The GPU's energy counter now (mJ since the driver loaded), ``None`` where it is not supported.

        After the first failure the backend stops asking and integrates power instead (:attr:`energy_source`).
        """
        if not self._counter:
            return None
        try:
            return float(self._nvml.nvmlDeviceGetTotalEnergyConsumption(self._handle))
        except self._nvml.NVMLError:
            self._counter = False
            self.energy_source = "power"
            return None

    def _power_w(self) -> float:
        """Board power now (W); NaN when NVML cannot read it."""
        mw = self._try(self._nvml.nvmlDeviceGetPowerUsage, self._handle)
        return math.nan if mw is None else float(mw) / 1e3

    def _read_power(self) -> tuple[float, tuple[float, ...]]:
        """``(board power, rails)`` (W) for the power monitor: the one rail is the board power."""
        p = self._power_w()
        return p, (p,)

    def _clocks_mhz(self) -> tuple[float, float]:
        nvml, h = self._nvml, self._handle
        g = self._try(nvml.nvmlDeviceGetClockInfo, h, nvml.NVML_CLOCK_GRAPHICS)
        m = self._try(nvml.nvmlDeviceGetClockInfo, h, nvml.NVML_CLOCK_MEM)
        return (math.nan if g is None else float(g)), (math.nan if m is None else float(m))

    def _temp_c(self) -> float:
        t = self._try(self._nvml.nvmlDeviceGetTemperature, self._handle, self._nvml.NVML_TEMPERATURE_GPU)
        return math.nan if t is None else float(t)

    def _throttled(self) -> bool:
        nvml = self._nvml
        fn = getattr(nvml, "nvmlDeviceGetCurrentClocksEventReasons", None) or getattr(
            nvml, "nvmlDeviceGetCurrentClocksThrottleReasons", None
        )
        reasons = self._try(fn, self._handle) if fn is not None else None
        return bool(int(reasons) & _THERMAL_REASONS) if reasons is not None else False

    def _util(self) -> float:
        u = self._try(self._nvml.nvmlDeviceGetUtilizationRates, self._handle)
        return 0.0 if u is None else min(1.0, max(0.0, float(u.gpu) / 100.0))

    def _check_open(self) -> None:
        if self._closed or not self._undo.init:  # closed, or restored by the registry (a signal)
            raise HardwareError("this NvmlBackend is closed; create a new one")

    # ------------------------------------------------------------------------------------------ runner

    @property
    def runner(self) -> WorkRunner | None:
        """The runner executing Work (``None`` until the first :meth:`run` when none was given); settable."""
        return self._runner

    @runner.setter
    def runner(self, runner: WorkRunner | None) -> None:
        if runner is not None and not callable(getattr(runner, "run", None)):
            raise ConfigError(f"runner must have a run(work, batch) method, got {type(runner).__name__}")
        self._runner = runner

    def cuda_index(self) -> int:
        """The CUDA device index of this GPU, matched by UUID (CUDA and NVML may number GPUs differently).

        Imports torch. Falls back to the only CUDA device, else to the NVML index (with a warning).
        """
        import torch

        uuid = self._try(self._nvml.nvmlDeviceGetUUID, self._handle)
        want = self._str(uuid).lower().removeprefix("gpu-") if uuid is not None else None
        for i in range(torch.cuda.device_count()):
            have = str(getattr(torch.cuda.get_device_properties(i), "uuid", "")).lower().removeprefix("gpu-")
            if want and have == want:
                return i
        if torch.cuda.device_count() == 1:
            return 0
        warnings.warn(
            f"cannot match NVML GPU {self.index} to a CUDA device by UUID; using CUDA device {self.index} "
            f"(set CUDA_DEVICE_ORDER=PCI_BUS_ID, or pass runner=TorchRunner(device='cuda:<i>'))",
            RuntimeWarning,
            stacklevel=3,
        )
        return self.index

    def _get_runner(self, work: Work) -> WorkRunner:
        if self._runner is None:
            from e4gym.hardware.runner import TorchRunner

            self._runner = TorchRunner(model=work.key.split("/", 1)[0], device=f"cuda:{self.cuda_index()}")
        return self._runner

    # ------------------------------------------------------------------------------------------ Backend API

    @property
    def levels(self) -> tuple[int, int, int]:
        """Level indices ``(cpu, gpu, emc)`` nearest to the clocks the GPU runs at now (CPU: always 0)."""
        g, m = self._clocks_mhz()
        spec = self.spec
        gl = spec.level_of("gpu", g * 1e6) if math.isfinite(g) else spec.n_gpu - 1
        ml = spec.level_of("emc", m * 1e6) if math.isfinite(m) else spec.n_emc - 1
        return (0, gl, ml)

    def apply(self, setting: Setting | tuple[int, int, int]) -> float:
        """Request levels ``(cpu, gpu, emc)``; returns the stall the change cost (s).

        With ``lock_clocks=True`` the graphics clock is locked to the GPU level's clock
        (``nvmlDeviceSetGpuLockedClocks(f, f)``, MHz) and, on GPUs with several memory clocks, the memory clock to
        the EMC level's; only levels that changed since the last call are set. The wall time of the NVML calls
        is returned and charged to the next :meth:`run` or :meth:`idle` (``transition_s``). Read-only: the
        request is recorded, nothing changes, 0 s is returned (see the class docstring).

        Raises:
            SettingError: a level out of range; in strict read-only mode, a request that differs from the clocks.
            HardwareError: NVML refused to lock (no permission: run as root, or use ``read_only=True``; not
                supported by this GPU).
        """
        self._check_open()
        c, g, e = setting.as_tuple() if isinstance(setting, Setting) else setting
        self.spec.check_levels(c, g, e)
        c, g, e = int(c), int(g), int(e)
        self.requested = Setting(c, g, e)
        spec = self.spec
        g_mhz, m_mhz = round(spec.gpu_freqs_hz[g] / 1e6), round(spec.emc_freqs_hz[e] / 1e6)
        if self.read_only:
            now = self.levels
            if (g, e) != now[1:]:
                msg = (
                    f"NvmlBackend is read-only: the request (cpu {c}, gpu {g}, emc {e}) = graphics {g_mhz} MHz, "
                    f"memory {m_mhz} MHz is recorded but not applied; '{self.name}' runs at the driver's clocks "
                    f"(now levels {now}). Build NvmlBackend(lock_clocks=True) (as root) to lock clocks."
                )
                if self.strict_read_only:
                    raise SettingError(msg)
                if not self._warned:
                    self._warned = True
                    warnings.warn(msg, RuntimeWarning, stacklevel=2)
            return 0.0
        nvml = self._nvml
        t0 = time.perf_counter()
        if g != self._locked[0]:
            self._set(nvml.nvmlDeviceSetGpuLockedClocks, g_mhz, "lock the graphics clock")
            self._undo.locked("gpu")
            self._locked[0] = g
        if spec.n_emc > 1 and e != self._locked[1]:
            try:
                self._set(nvml.nvmlDeviceSetMemoryLockedClocks, m_mhz, "lock the memory clock")
                self._undo.locked("mem")
            except _NotSupportedError as exc:
                if e != spec.n_emc - 1:
                    raise
                # The top memory level is what the driver picks under load: leave memory to the driver.
                warnings.warn(f"{exc} The memory clock is left to the driver.", RuntimeWarning, stacklevel=2)
            self._locked[1] = e
        stall = time.perf_counter() - t0
        self._pending_stall_s += stall
        return stall

    def _set(self, fn: Any, mhz: int, what: str) -> None:
        try:
            fn(self._handle, mhz, mhz)
        except self._nvml.NVMLError as exc:
            if self._is(exc, "NVML_ERROR_NO_PERMISSION"):
                raise HardwareError(
                    f"NVML refused to {what} of '{self.name}' to {mhz} MHz ({exc}): locking clocks needs root "
                    f"(run as root, or allow it with `sudo nvidia-smi -acp UNRESTRICTED` where supported). To "
                    f"measure at the driver's clocks without changing anything, use NvmlBackend(read_only=True)."
                ) from exc
            if self._is(exc, "NVML_ERROR_NOT_SUPPORTED"):
                raise _NotSupportedError(
                    f"'{self.name}' cannot {what} through NVML ({exc}; locked clocks need a Volta or newer GPU, "
                    f"memory clocks only some GPUs). Use NvmlBackend(read_only=True), or keep this domain at the "
                    f"level it runs at."
                ) from exc
            raise HardwareError(f"NVML failed to {what} of '{self.name}' to {mhz} MHz ({exc})") from exc

    def _take_stall(self) -> float:
        stall, self._pending_stall_s = self._pending_stall_s, 0.0
        return stall

    def _measurement(self, latency_s: float, energy_j: float, wall_s: float, stall_s: float,
                     util: float) -> Measurement:
        g, m = self._clocks_mhz()
        power = energy_j / wall_s if wall_s > 0 else self._power_w()
        return Measurement(
            latency_s=latency_s,
            energy_j=energy_j,
            measured_energy_j=energy_j,
            avg_power_w=power,
            temp_c=self._temp_c(),
            cpu_hz=self.spec.cpu_freqs_hz[0],
            gpu_hz=g * 1e6,
            emc_hz=m * 1e6,
            throttled=self._throttled(),
            transition_s=stall_s,
            gpu_util=util,
            time_s=time.perf_counter() - self._t0,
            rails_w=(power,),
        )

    def run(self, work: Work, batch: int = 1) -> Measurement:
        """Run ``work`` on ``batch`` inferences through the runner and measure it.

        ``latency_s`` is the runner's latency (CUDA events for a CUDA ``TorchRunner``) plus the pending clock
        change stall; ``energy_j`` (= ``measured_energy_j``) is the energy counter's difference over the run's
        wall time (J), or power polled every ``poll_s`` during it and integrated over the polled window;
        ``avg_power_w`` is that energy over the wall time, or over the polled window (W);
        ``gpu_util`` is NVML's utilisation over the driver's last sample period (not this run alone). The energy
        of a clock change's stall (spent in :meth:`apply`, before the run) is not included.
        """
        self._check_open()
        runner = self._get_runner(work)
        stall = self._take_stall()
        latency, energy, seconds = self._measure(lambda: float(runner.run(work, batch)))
        return self._measurement(latency + stall, energy, seconds, stall, self._util())

    def idle(self, duration_s: float) -> Measurement:
        """Sleep ``duration_s`` (s) and measure it (``latency_s``: the wall time actually slept).

        Without the energy counter, power is sampled every ``poll_s`` and integrated (trapezoid rule).
        """
        self._check_open()
        if not (isinstance(duration_s, (int, float)) and math.isfinite(duration_s) and duration_s >= 0):
            raise SettingError(f"idle duration must be a finite number of seconds >= 0, got {duration_s!r}")
        stall = self._take_stall()
        _, energy, seconds = self._measure(lambda: time.sleep(duration_s))
        return self._measurement(seconds, energy, seconds, stall, 0.0)

    def _measure(self, body: Callable[[], _T]) -> tuple[_T, float, float]:
        """Run ``body`` and measure its energy: ``(its result, energy (J), seconds)``.

        Energy is the energy counter's difference over the wall time (the seconds returned); without the counter,
        power polled every ``poll_s`` by a :class:`~e4gym.hardware.monitor.PowerMonitor`, integrated over the
        monitor's window (the seconds returned: first sample to last); where the counter stops working during
        ``body``, the power at the end times the wall time.

        Raises:
            HardwareError: the power monitor failed.
        """
        e0 = self.energy_mj()
        monitor = None if e0 is not None else PowerMonitor(self._read_power, self.poll_s, name="e4gym-nvml-power")
        t0 = time.perf_counter()
        with monitor if monitor is not None else nullcontext():
            result = body()
        wall = time.perf_counter() - t0
        if monitor is not None:
            monitor.check()
            return result, monitor.energy_j(), monitor.window_s
        e1 = self.energy_mj()
        if e1 is not None and e1 >= e0:
            return result, (e1 - e0) / 1e3, wall
        return result, self._power_w() * wall, wall

    def read_sensors(self) -> SensorReading:
        """Board power (W), GPU temperature (°C), clocks (Hz) and thermal throttling now."""
        self._check_open()
        g, m = self._clocks_mhz()
        power = self._power_w()
        return SensorReading(
            power_w=power,
            temp_c=self._temp_c(),
            cpu_hz=self.spec.cpu_freqs_hz[0],
            gpu_hz=g * 1e6,
            emc_hz=m * 1e6,
            throttled=self._throttled(),
            time_s=time.perf_counter() - self._t0,
            rails_w=(power,),
        )

    def close(self) -> None:
        """Reset the clocks this backend locked and shut NVML down (idempotent).

        Raises:
            HardwareError: a reset failed (the message says how to reset by hand).
        """
        if self._closed:
            return
        self._closed = True
        finalizer = getattr(self, "_finalizer", None)
        errors = finalizer() if finalizer is not None else self._undo()
        if errors:
            raise HardwareError(f"NvmlBackend could not restore GPU {self.index}: " + "; ".join(errors))

    def __enter__(self) -> NvmlBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        mode = "lock_clocks" if self.lock_clocks else "read-only"
        return f"NvmlBackend(index={self.index}, name={getattr(self, 'name', '?')!r}, {mode})"
