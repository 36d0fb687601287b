"""Device catalogue: frozen :class:`DeviceSpec` records loaded and validated from ``configs/devices``.

A device YAML has two halves (see ``configs/devices/xavier-nx.yaml``):

* hardware facts, each cited (frequency levels as the kernel lists them: cpufreq in kHz, devfreq and EMC
  in Hz; cores; CUDA cores; DRAM bandwidth; power modes; thermal trips; default governors);
* ``model:``, the emulator's coefficients. Nothing public gives them, so every one is an **assumption**,
  fitted to the rows of ``CALIBRATION.md`` (``e4gym calibrate`` checks them). This section is the one place
  the device assumptions live; a measured profile replaces the analytic model for a device.

Frequencies are converted to Hz once, here; everything downstream uses Hz (names end in ``_hz``).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from e4gym._yaml import Fields, load_yaml
from e4gym.errors import ConfigError, SettingError, UnknownNameError
from e4gym.paths import config_dir

#: Governor names the emulator implements per domain (``userspace`` = clocks set by the caller).
CPU_GOVERNORS = ("userspace", "performance", "powersave", "ondemand", "schedutil")
GPU_GOVERNORS = ("userspace", "performance", "powersave", "nvhost_podgov", "simple_ondemand")
EMC_GOVERNORS = ("userspace", "performance", "powersave")

#: Ambient temperatures a device YAML or an env accepts (°C, inclusive): the industrial temperature grade
#: (-40..85 °C). ASSUMPTION (docs/assumptions.md): no Jetson datasheet gives an ambient range for the module on
#: its heat sink; outside it the emulator's exponential leakage model leaves any calibrated regime.
AMBIENT_RANGE_C: tuple[float, float] = (-40.0, 85.0)


@dataclass(frozen=True)
class PowerMode:
    """An nvpmodel power mode: caps on clocks and online CPU cores.

    Attributes:
        name: mode name as nvpmodel shows it (``MAXN``, ``5W``...).
        cpu_max_hz / gpu_max_hz / emc_max_hz: highest clock allowed (Hz); ``inf`` when uncapped.
        cpu_online: online CPU cores.
        source: citation or ``ASSUMPTION: ...``.
    """

    name: str
    cpu_max_hz: float
    gpu_max_hz: float
    emc_max_hz: float
    cpu_online: int
    source: str = ""


@dataclass(frozen=True)
class DomainModel:
    """Power coefficients of one clock domain (all assumptions; see the device YAML).

    Attributes:
        c_eff_f: effective switched capacitance (F): dynamic power = c_eff_f · V² · f · activity (W).
        leak_w: leakage power at the top voltage and ``temp_ref_c`` (W), scaled ∝ V and by temperature.
        v_min / v_max: voltage at the floor and at the top clock (V).
        knee_frac: fraction of the clock range (from the lowest level) over which V stays at ``v_min``.
        idle_activity: activity factor of a clocked but idle domain (0..1).
    """

    c_eff_f: float
    leak_w: float
    v_min: float
    v_max: float
    knee_frac: float
    idle_activity: float


@dataclass(frozen=True)
class EmulatorModel:
    """Coefficients of the analytic emulator (every field an assumption fitted to CALIBRATION.md)."""

    # latency
    dispatch_cycles_per_kernel: float  # CPU cycles of framework + driver work per kernel launch
    gpu_flops_per_core_cycle: float  # achieved FLOPs per CUDA core per cycle (peak is 2 for FMA)
    gpu_cycles_per_kernel: float  # GPU cycles of launch/tail per kernel (small kernels underfill the GPU)
    mem_efficiency: float  # achieved fraction of peak DRAM bandwidth
    overlap_p: float  # p of the p-norm combining CPU, GPU and memory time (1 = serial, inf = full overlap)
    # power
    static_w: float  # board power that no clock changes (regulators, DRAM refresh, I/O) (W)
    cpu: DomainModel = field(repr=False, default=None)  # type: ignore[assignment]
    gpu: DomainModel = field(repr=False, default=None)  # type: ignore[assignment]
    emc: DomainModel = field(repr=False, default=None)  # type: ignore[assignment]
    leak_temp_coeff_per_c: float = 0.02  # leakage grows by exp(k·(T − temp_ref_c))
    temp_ref_c: float = 25.0
    # thermal
    r_th_fan_c_per_w: float = 3.0  # junction-to-ambient thermal resistance with the fan (°C/W)
    r_th_passive_c_per_w: float = 6.0  # same with the passive heat sink only (°C/W)
    tau_s: float = 60.0  # thermal time constant (s)
    throttle_hysteresis_c: float = 5.0  # throttling lifts once T falls this far below the trip (°C)
    throttle_frac: float = 0.6  # while throttled, CPU and GPU clocks are capped at this fraction of max
    # DVFS
    transition_delay_s: tuple[float, float, float] = (1e-3, 5e-3, 8e-3)  # CPU, GPU, EMC effect delay (s)
    transition_stall_s: float = 1e-4  # stall per domain switched (s)
    # measurement
    noise_latency: float = 0.02  # σ of the multiplicative latency noise per run
    noise_power: float = 0.015  # σ of the multiplicative power noise per run
    sensor_period_s: float = 0.1  # power monitor polling period (s)
    # governors
    governor_period_s: float = 0.02  # how often load-driven governors re-evaluate (s)


@dataclass(frozen=True)
class ThermalSpec:
    """Thermal trips and cooling defaults.

    Attributes:
        throttle_c: trip at which clocks are capped (°C).
        critical_c: critical trip (°C); the emulator stops a run there.
        ambient_c: default ambient temperature (°C).
        fan: whether the board has a fan by default.
    """

    throttle_c: float
    critical_c: float
    ambient_c: float
    fan: bool
    source: str = ""


@dataclass(frozen=True)
class DeviceSpec:
    """A Jetson-class board: clock tables, cores, power modes and the emulator's coefficients.

    All frequencies are in Hz, sorted ascending. Level indices (``Setting.cpu`` etc.) index these tuples.
    """

    name: str
    full_name: str
    soc: str
    cpu_freqs_hz: tuple[float, ...]
    gpu_freqs_hz: tuple[float, ...]
    emc_freqs_hz: tuple[float, ...]
    cpu_cores: int
    cpu_arch: str
    gpu_arch: str
    cuda_cores: int
    dram_bw_bytes_per_s: float
    power_modes: dict[str, PowerMode]
    default_power_mode: str
    governors: dict[str, str]
    thermal: ThermalSpec
    model: EmulatorModel
    source_file: str = ""
    #: Memory of the board (GB = 10^9 bytes; on a Jetson the CPU and the GPU share it); ``None`` where the YAML
    #: gives none (the cloud servers). The batching env's memory limit.
    memory_gb: float | None = None

    @property
    def n_cpu(self) -> int:
        """Number of CPU frequency levels."""
        return len(self.cpu_freqs_hz)

    @property
    def n_gpu(self) -> int:
        """Number of GPU frequency levels."""
        return len(self.gpu_freqs_hz)

    @property
    def n_emc(self) -> int:
        """Number of EMC (memory) frequency levels."""
        return len(self.emc_freqs_hz)

    @property
    def n_levels(self) -> tuple[int, int, int]:
        """``(n_cpu, n_gpu, n_emc)``."""
        return (self.n_cpu, self.n_gpu, self.n_emc)

    def flat_index(self, levels: Any) -> Any:
        """Index of level triples in the flat (C-order) per-setting tables of :mod:`e4gym.hardware.model`:
        ``(cpu · n_gpu + gpu) · n_emc + emc``.

        Args:
            levels: one ``(cpu, gpu, emc)`` tuple or list (gives an int), or an integer array whose last axis
                holds the three levels, e.g. shape ``(N, 3)`` (gives an int array of shape ``(N,)``).
        """
        if isinstance(levels, (tuple, list)):
            cpu, gpu, emc = levels
        else:
            cpu, gpu, emc = levels[..., 0], levels[..., 1], levels[..., 2]
        return (cpu * len(self.gpu_freqs_hz) + gpu) * len(self.emc_freqs_hz) + emc

    def power_mode(self, name: str | None = None) -> PowerMode:
        """The named power mode (default: the device's default mode).

        Raises:
            UnknownNameError: the mode does not exist; lists the ones that do.
        """
        name = name or self.default_power_mode
        if name not in self.power_modes:
            raise UnknownNameError(
                f"device '{self.name}' has no power mode '{name}'; modes: {sorted(self.power_modes)}"
            )
        return self.power_modes[name]

    def max_levels(self, power_mode: str | None = None) -> tuple[int, int, int]:
        """Highest allowed level index per domain under ``power_mode``."""
        mode = self.power_mode(power_mode)
        return (
            _cap_index(self.cpu_freqs_hz, mode.cpu_max_hz),
            _cap_index(self.gpu_freqs_hz, mode.gpu_max_hz),
            _cap_index(self.emc_freqs_hz, mode.emc_max_hz),
        )

    def level_of(self, domain: str, freq_hz: float) -> int:
        """Index of the level closest to ``freq_hz`` in ``domain`` (``cpu``, ``gpu`` or ``emc``)."""
        table = np.asarray(self.freqs_hz(domain))
        return int(np.argmin(np.abs(table - freq_hz)))

    def freqs_hz(self, domain: str) -> tuple[float, ...]:
        """The level table of ``domain`` (Hz)."""
        try:
            return {"cpu": self.cpu_freqs_hz, "gpu": self.gpu_freqs_hz, "emc": self.emc_freqs_hz}[domain]
        except KeyError:
            raise UnknownNameError(f"unknown clock domain '{domain}'; domains: ['cpu', 'gpu', 'emc']") from None

    def check_levels(self, cpu: int, gpu: int, emc: int) -> None:
        """Raise :class:`SettingError` if a level index is outside the device's tables."""
        for dom, idx, n in (("cpu", cpu, self.n_cpu), ("gpu", gpu, self.n_gpu), ("emc", emc, self.n_emc)):
            if isinstance(idx, bool) or not isinstance(idx, (int, np.integer)) or not 0 <= idx < n:
                raise SettingError(
                    f"{dom} level {idx!r} is out of range for device '{self.name}': "
                    f"levels are integers 0..{n - 1} ({self.freqs_hz(dom)[0] / 1e6:.1f}–"
                    f"{self.freqs_hz(dom)[-1] / 1e6:.1f} MHz)"
                )


def _cap_index(table: tuple[float, ...], cap_hz: float) -> int:
    allowed = [i for i, f in enumerate(table) if f <= cap_hz * (1 + 1e-9)]
    return allowed[-1] if allowed else 0


# --------------------------------------------------------------------------------------------- loading


def available_devices() -> list[str]:
    """Names of the devices in ``configs/devices``."""
    return sorted(p.stem for p in (config_dir() / "devices").glob("*.yaml"))


def _levels(f: Fields, key: str, scale: float) -> tuple[float, ...]:
    values = f.numbers(key)
    if any(b <= a for a, b in itertools.pairwise(values)):
        raise f.fail(key, "strictly increasing frequencies", list(values))
    return tuple(v * scale for v in values)


def _domain_model(f: Fields) -> DomainModel:
    f.check_known({"c_eff_f", "leak_w", "v_min", "v_max", "knee_frac", "idle_activity"})
    v_min = f.number("v_min", min=0.0, strict_min=True)
    v_max = f.number("v_max", min=v_min)
    return DomainModel(
        c_eff_f=f.number("c_eff_f", min=0.0),
        leak_w=f.number("leak_w", min=0.0),
        v_min=v_min,
        v_max=v_max,
        knee_frac=f.number("knee_frac", min=0.0, max=1.0),
        idle_activity=f.number("idle_activity", min=0.0, max=1.0),
    )


_MODEL_SCALARS = {
    "dispatch_cycles_per_kernel": dict(min=0.0),
    "gpu_flops_per_core_cycle": dict(min=0.0, strict_min=True),
    "gpu_cycles_per_kernel": dict(min=0.0),
    "mem_efficiency": dict(min=0.0, max=1.0, strict_min=True),
    "overlap_p": dict(min=1.0),
    "static_w": dict(min=0.0),
    "leak_temp_coeff_per_c": dict(min=0.0),
    "temp_ref_c": dict(),
    "r_th_fan_c_per_w": dict(min=0.0, strict_min=True),
    "r_th_passive_c_per_w": dict(min=0.0, strict_min=True),
    "tau_s": dict(min=0.0, strict_min=True),
    "throttle_hysteresis_c": dict(min=0.0),
    "throttle_frac": dict(min=0.0, max=1.0, strict_min=True),
    "transition_stall_s": dict(min=0.0),
    "noise_latency": dict(min=0.0, max=0.2),
    "noise_power": dict(min=0.0, max=0.2),
    "sensor_period_s": dict(min=0.0, strict_min=True),
    "governor_period_s": dict(min=0.0, strict_min=True),
}
_MODEL_REQUIRED = {
    "dispatch_cycles_per_kernel",
    "gpu_flops_per_core_cycle",
    "gpu_cycles_per_kernel",
    "mem_efficiency",
    "overlap_p",
    "static_w",
}


def _emulator_model(f: Fields) -> EmulatorModel:
    f.check_known(set(_MODEL_SCALARS) | {"cpu", "gpu", "emc", "transition_delay_s"})
    kwargs: dict = {}
    for key, bounds in _MODEL_SCALARS.items():
        if key in _MODEL_REQUIRED or key in f.data:
            kwargs[key] = f.number(key, **bounds)
    if "transition_delay_s" in f.data:
        delays = f.numbers("transition_delay_s", positive=False)
        if len(delays) != 3 or any(d < 0 for d in delays):
            raise f.fail("transition_delay_s", "three delays >= 0 [cpu, gpu, emc] in seconds", list(delays))
        kwargs["transition_delay_s"] = tuple(delays)
    for dom in ("cpu", "gpu", "emc"):
        kwargs[dom] = _domain_model(f.sub(dom))
    return EmulatorModel(**kwargs)


def parse_device(data: dict, file: Path | str = "<dict>") -> DeviceSpec:
    """Validate a device mapping (as read from YAML) and build the :class:`DeviceSpec`.

    Raises:
        ConfigError: names the file, the field and what was expected.
    """
    f = Fields(data, file)
    f.check_known({"name", "full_name", "soc", "memory_gb", "sources", "cpu", "gpu", "emc", "power_modes", "thermal",
                  "model"})
    cpu, gpu, emc = f.sub("cpu"), f.sub("gpu"), f.sub("emc")
    cpu.check_known({"arch", "cores", "clusters", "levels_khz", "governor", "source"})
    gpu.check_known({"arch", "cuda_cores", "tensor_cores", "levels_hz", "governor", "source"})
    emc.check_known({"levels_hz", "dram_gbps", "governor", "source"})
    cpu_freqs = _levels(cpu, "levels_khz", 1e3)
    gpu_freqs = _levels(gpu, "levels_hz", 1.0)
    emc_freqs = _levels(emc, "levels_hz", 1.0)
    cores = cpu.int("cores", min=1)
    governors = {
        "cpu": cpu.str("governor", "schedutil"),
        "gpu": gpu.str("governor", "nvhost_podgov"),
        "emc": emc.str("governor", "performance"),
    }
    for dom, allowed in (("cpu", CPU_GOVERNORS), ("gpu", GPU_GOVERNORS), ("emc", EMC_GOVERNORS)):
        if governors[dom] not in allowed:
            raise {"cpu": cpu, "gpu": gpu, "emc": emc}[dom].fail("governor", f"one of {list(allowed)}", governors[dom])

    pm = f.sub("power_modes")
    pm.check_known({"default", "modes"})
    modes_f = pm.sub("modes")
    modes: dict[str, PowerMode] = {}
    for mode_name in modes_f.data:
        m = modes_f.sub(mode_name)
        m.check_known({"cpu_max_khz", "gpu_max_hz", "emc_max_hz", "cpu_online", "source"})
        online = m.int("cpu_online", cores, min=1)
        if online > cores:
            raise m.fail("cpu_online", f"at most the {cores} cores of the device", online)
        modes[str(mode_name)] = PowerMode(
            name=str(mode_name),
            cpu_max_hz=m.number("cpu_max_khz", float("inf"), min=0.0, strict_min=True) * 1e3,
            gpu_max_hz=m.number("gpu_max_hz", float("inf"), min=0.0, strict_min=True),
            emc_max_hz=m.number("emc_max_hz", float("inf"), min=0.0, strict_min=True),
            cpu_online=online,
            source=str(m.raw("source", "")),
        )
    if not modes:
        raise pm.fail("modes", "at least one power mode")
    default_mode = pm.str("default")
    if default_mode not in modes:
        raise pm.fail("default", f"one of the modes {sorted(modes)}", default_mode)

    th = f.sub("thermal")
    th.check_known({"throttle_c", "critical_c", "ambient_c", "fan", "source"})
    throttle_c = th.number("throttle_c", min=0.0)
    thermal = ThermalSpec(
        throttle_c=throttle_c,
        critical_c=th.number("critical_c", min=throttle_c),
        ambient_c=th.number("ambient_c", 25.0, min=AMBIENT_RANGE_C[0], max=AMBIENT_RANGE_C[1]),
        fan=th.bool("fan", True),
        source=str(th.raw("source", "")),
    )
    return DeviceSpec(
        name=f.str("name"),
        full_name=f.str("full_name", f.str("name")),
        soc=f.str("soc", "unknown"),
        cpu_freqs_hz=cpu_freqs,
        gpu_freqs_hz=gpu_freqs,
        emc_freqs_hz=emc_freqs,
        cpu_cores=cores,
        cpu_arch=cpu.str("arch", "arm64"),
        gpu_arch=gpu.str("arch", "unknown"),
        cuda_cores=gpu.int("cuda_cores", min=1),
        dram_bw_bytes_per_s=emc.number("dram_gbps", min=0.0, strict_min=True) * 1e9,
        power_modes=modes,
        default_power_mode=default_mode,
        governors=governors,
        thermal=thermal,
        model=_emulator_model(f.sub("model")),
        source_file=str(file),
        memory_gb=f.number("memory_gb", min=0.0, strict_min=True) if "memory_gb" in f.data else None,
    )


_CACHE: dict[Path, tuple[float, DeviceSpec]] = {}

#: Short names accepted for devices (``device="nano"`` is the original Jetson Nano, not the Orin Nano).
DEVICE_ALIASES: dict[str, str] = {
    "nano": "jetson-nano",
    "tx2": "jetson-tx2",
    "nx": "xavier-nx",
    "xavier": "agx-xavier",
    "orin": "agx-orin",
}


def _catalogue_path(name_or_path: str | Path, folder: str, kind: str, aliases: dict[str, str] | None = None) -> Path:
    """The YAML of ``name_or_path``: a path ending in ``.yaml``/``.yml`` as given, else ``configs/<folder>/<name>.yaml``
    (after ``aliases``).

    Raises:
        UnknownNameError: no such name in the folder; the message lists the known names (and aliases).
    """
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        return path
    name = (aliases or {}).get(str(name_or_path), str(name_or_path))
    path = config_dir() / folder / f"{name}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in (config_dir() / folder).glob("*.yaml"))
        extra = f", aliases: {aliases}" if aliases else ""
        raise UnknownNameError(f"unknown {kind} '{name_or_path}'; known {kind}s: {known}{extra} (or pass a path to "
                               f"a {kind} YAML)")
    return path


def load_device(name_or_path: str | Path) -> DeviceSpec:
    """Load a device by name (``xavier-nx``), alias (``nano``, see :data:`DEVICE_ALIASES`) or YAML path.

    Results are cached per file.

    Raises:
        UnknownNameError: no device of that name; the message lists the known devices.
        ConfigError: the file is malformed.
    """
    if isinstance(name_or_path, DeviceSpec):
        return name_or_path
    path = _catalogue_path(name_or_path, "devices", "device", DEVICE_ALIASES)
    try:
        mtime = path.stat().st_mtime
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the file ({exc.strerror})") from exc
    except ValueError as exc:  # e.g. an embedded NUL character: no file can have that name
        raise ConfigError(f"device {str(name_or_path)!r} is not a usable path ({exc}); pass a device name "
                          f"({available_devices()}) or the path of a device YAML") from exc
    cached = _CACHE.get(path)
    if cached and cached[0] == mtime:
        return cached[1]
    spec = parse_device(load_yaml(path), path)
    _CACHE[path] = (mtime, spec)
    return spec


# --------------------------------------------------------------------------------------------- cloud servers


def available_servers() -> list[str]:
    """Names of the cloud servers in ``configs/servers`` (desktop GPUs a board offloads to; same format)."""
    return sorted(p.stem for p in (config_dir() / "servers").glob("*.yaml"))


def load_server(name_or_path: str | Path) -> DeviceSpec:
    """Load a cloud server by name (``rtx-3080``) or YAML path (the device format of :func:`load_device`).

    Raises:
        UnknownNameError: no server of that name; the message lists the known ones.
        ConfigError: the file is malformed.
    """
    if isinstance(name_or_path, DeviceSpec):
        return name_or_path
    return load_device(_catalogue_path(name_or_path, "servers", "cloud server"))
