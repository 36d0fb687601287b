"""What a Jetson board exposes: its cpufreq policies, cores, GPU devfreq device, EMC control, INA3221 rails and
thermal zones, found by reading the tree rather than assuming one layout (paths in
:mod:`e4gym.hardware.jetson.paths`)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from e4gym.errors import HardwareError
from e4gym.hardware.jetson import paths
from e4gym.hardware.spec import DeviceSpec
from e4gym.hardware.sysfs import Sysfs

__all__ = [
    "EXCLUDED_ZONES",
    "CpuPolicy",
    "EmcClock",
    "GpuDevfreq",
    "JetsonLayout",
    "Rail",
    "ThermalZone",
    "find_cpu_policies",
    "find_readers",
    "parse_ints",
]

#: Thermal zone types left out of the hottest-zone reading (lower case, substrings).
EXCLUDED_ZONES = ("pmic", "fan-est", "fan_est")


@dataclass(frozen=True)
class CpuPolicy:
    """One cpufreq policy (a CPU cluster).

    Attributes:
        path: the policy folder.
        cpus: the cores it drives.
        available_khz: frequencies the kernel lists (kHz, ascending; the spec's table when not listed).
        method: ``userspace`` (governor ``userspace`` + ``scaling_setspeed``) or ``range`` (min = max).
        cap_khz: ``scaling_max_freq`` at open (kHz): the power mode's cap, never exceeded.
        floor_khz: lowest frequency the policy allows (kHz).
    """

    path: Path
    cpus: tuple[int, ...]
    available_khz: tuple[int, ...]
    method: str
    cap_khz: int
    floor_khz: int


@dataclass(frozen=True)
class GpuDevfreq:
    """The GPU's devfreq device.

    Attributes:
        path: the devfreq folder.
        available_hz: frequencies the kernel lists (Hz, ascending; the spec's table when not listed).
        method: ``range`` (``min_freq`` = ``max_freq``) or ``userspace`` (governor + ``userspace/set_freq``).
        cap_hz: ``max_freq`` at open (Hz): the power mode's cap, never exceeded.
        floor_hz: lowest frequency (Hz).
        load_path: GPU load file (tenths of a percent), if any.
    """

    path: Path
    available_hz: tuple[int, ...]
    method: str
    cap_hz: int
    floor_hz: int
    load_path: Path | None


@dataclass(frozen=True)
class EmcClock:
    """How the memory clock is held at a rate.

    Attributes:
        kind: ``bpmp`` (t186/t194/t234) or ``t210``.
        rate_path: current rate (Hz).
        set_path: where a new rate is written (Hz).
        lock_paths: files set to 1 to hold the written rate.
        rate_first: write the rate before the locks (t210) or after them (BPMP).
        cap_hz: highest rate allowed (Hz): the smallest positive value of
            :data:`~e4gym.hardware.jetson.paths.EMC_CAP_FILES`.
    """

    kind: str
    rate_path: Path
    set_path: Path
    lock_paths: tuple[Path, ...]
    rate_first: bool
    cap_hz: int | None = None


@dataclass(frozen=True)
class Rail:
    """One INA3221 channel.

    Attributes:
        name: rail label (``VDD_IN``, ``POM_5V_GPU``...).
        kind: ``iio`` (L4T <= 32) or ``hwmon`` (L4T >= 34).
        power_path: power (mW), iio only.
        volt_path: bus voltage (mV).
        curr_path: current (mA).
    """

    name: str
    kind: str
    power_path: Path | None
    volt_path: Path | None
    curr_path: Path | None

    def read_w(self, io: Sysfs) -> float:
        """The rail's power now (W).

        Raises:
            HardwareError: a file is missing or unreadable.
        """
        if self.power_path is not None:
            return io.read_int(self.power_path) / 1e3  # mW
        if self.volt_path is None or self.curr_path is None:
            raise HardwareError(f"rail {self.name}: neither a power file nor a voltage and current pair")
        return io.read_int(self.volt_path) * io.read_int(self.curr_path) / 1e6  # mV × mA = µW


@dataclass(frozen=True)
class ThermalZone:
    """A thermal zone: its ``type`` and its ``temp`` file (m°C)."""

    name: str
    temp_path: Path


@dataclass
class JetsonLayout:
    """Everything the backend found on the board (see :meth:`JetsonBackend.describe`).

    Attributes:
        cpu: the cpufreq policies it controls (clusters with an online core).
        cpu_skipped: policies left alone (every core offline: the kernel refuses their files).
        cores: every core and its ``online`` file (``None`` when the core cannot be hot-plugged).
        gpu: the GPU devfreq device.
        emc: the memory clock control, ``None`` when not controllable (no debugfs, not root).
        emc_rate_path: a readable EMC rate (Hz), even when not controllable.
        rails: INA3221 rails.
        zones: thermal zones used for the hottest-zone reading.
        notes: what was left out and why.
    """

    cpu: list[CpuPolicy] = field(default_factory=list)
    cpu_skipped: list[Path] = field(default_factory=list)
    cores: dict[int, Path | None] = field(default_factory=dict)
    gpu: GpuDevfreq | None = None
    emc: EmcClock | None = None
    emc_rate_path: Path | None = None
    rails: list[Rail] = field(default_factory=list)
    zones: list[ThermalZone] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _num_suffix(name: str) -> int:
    m = re.search(r"(\d+)$", name)
    return int(m.group(1)) if m else -1


def _parse_cpu_list(text: str) -> tuple[int, ...]:
    cpus: list[int] = []
    for part in text.replace(",", " ").split():
        if "-" in part:
            a, b = part.split("-", 1)
            cpus.extend(range(int(a), int(b) + 1))
        elif part.isdigit():
            cpus.append(int(part))
    return tuple(sorted(set(cpus)))


def parse_ints(text: str | None) -> tuple[int, ...]:
    """The distinct non-negative integers of a whitespace-separated list (e.g. ``available_frequencies``),
    ascending; ``()`` for ``None`` or an empty text."""
    if not text:
        return ()
    return tuple(sorted({int(x) for x in text.split() if x.isdigit()}))


def find_cpu_policies(io: Sysfs) -> list[tuple[Path, tuple[int, ...]]]:
    """Every cpufreq policy folder and the cores it drives (``cpufreq/policyN``, else the per-core folders)."""
    cpu_dir = io.path(paths.CPU_DIR)
    folders = sorted((cpu_dir / "cpufreq").glob("policy[0-9]*"), key=lambda p: _num_suffix(p.name))
    if not folders:  # older kernels: only per-core cpufreq folders, several linking to one policy
        seen: dict[Path, Path] = {}
        for core in sorted(cpu_dir.glob("cpu[0-9]*"), key=lambda p: _num_suffix(p.name)):
            cf = core / "cpufreq"
            if cf.is_dir():
                seen.setdefault(cf.resolve(), cf)
        folders = list(seen.values())
    policies = []
    for folder in folders:
        cpus = _parse_cpu_list(io.read_opt(folder / "related_cpus") or io.read_opt(folder / "affected_cpus") or "")
        if not cpus:
            n = _num_suffix(folder.name if folder.name != "cpufreq" else folder.parent.name)
            cpus = (n,) if n >= 0 else ()
        policies.append((folder, cpus))
    return policies


def _find_cores(io: Sysfs) -> dict[int, Path | None]:
    cores: dict[int, Path | None] = {}
    for core in io.path(paths.CPU_DIR).glob("cpu[0-9]*"):
        online = core / "online"
        cores[_num_suffix(core.name)] = online if online.is_file() else None
    return dict(sorted(cores.items()))


def _is_gpu_devfreq(io: Sysfs, entry: Path) -> bool:
    name = entry.name.lower()
    if name.rsplit(".", 1)[-1] in paths.GPU_DEVFREQ_NAMES or name.startswith("gpu"):
        return True
    of_name = (io.read_opt(entry / "device" / "of_node" / "name") or "").lower()
    return of_name in paths.GPU_DEVFREQ_NAMES


def _find_gpu_dir(io: Sysfs) -> Path | None:
    candidates: list[Path] = []
    cls = io.path(paths.DEVFREQ_CLASS)
    if cls.is_dir():
        candidates += [e for e in sorted(cls.iterdir(), key=lambda p: p.name) if _is_gpu_devfreq(io, e)]
    candidates += [io.path(p) for p in paths.GPU_DEVFREQ_DIRS]
    for c in candidates:
        if (c / "cur_freq").is_file() or (c / "max_freq").is_file():
            return c
    return None


def _find_emc(io: Sysfs) -> tuple[EmcClock | None, Path | None]:
    bpmp, t210 = io.path(paths.EMC_BPMP_DIR), io.path(paths.EMC_T210_DIR)
    caps = [c for c in (io.read_int_opt(io.path(p)) for p in paths.EMC_CAP_FILES) if c and c > 0]
    cap = min(caps) if caps else None
    if (bpmp / "rate").is_file():
        locks = tuple(bpmp / n for n in ("mrq_rate_locked", "state") if (bpmp / n).is_file())
        if bpmp / "mrq_rate_locked" in locks:
            return EmcClock("bpmp", bpmp / "rate", bpmp / "rate", locks, False, cap), bpmp / "rate"
        return None, bpmp / "rate"
    if (t210 / "clk_rate").is_file():
        if (t210 / "clk_update_rate").is_file() and (t210 / "clk_state").is_file():
            emc = EmcClock("t210", t210 / "clk_rate", t210 / "clk_update_rate", (t210 / "clk_state",), True, cap)
            return emc, t210 / "clk_rate"
        return None, t210 / "clk_rate"
    return None, None


def _find_rails(io: Sysfs) -> list[Rail]:
    rails: list[Rail] = []
    for dev in sorted(io.path(paths.INA3221_IIO_DRIVER).glob("*")):
        for iio in sorted(dev.glob("iio:device*")):
            for label in sorted(iio.glob("rail_name_*"), key=lambda p: _num_suffix(p.name)):
                n, name = _num_suffix(label.name), io.read_opt(label)
                if not name:
                    continue
                power, volt, curr = (iio / f"in_power{n}_input", iio / f"in_voltage{n}_input",
                                     iio / f"in_current{n}_input")
                if power.is_file():
                    rails.append(Rail(name, "iio", power, volt if volt.is_file() else None,
                                      curr if curr.is_file() else None))
                elif volt.is_file() and curr.is_file():
                    rails.append(Rail(name, "iio", None, volt, curr))
    for dev in sorted(io.path(paths.INA3221_HWMON_DRIVER).glob("*")):
        for hwmon in sorted(dev.glob("hwmon/hwmon*")):
            for label in sorted(hwmon.glob("in*_label"), key=lambda p: p.name):
                m = re.fullmatch(r"in(\d+)_label", label.name)
                name = io.read_opt(label) or ""
                if not m or not name or int(m.group(1)) == 7:  # channel 7: sum of shunt voltages
                    continue
                if name.upper() == "NC" or "sum of shunt" in name.lower():  # not connected
                    continue
                n = int(m.group(1))
                volt, curr = hwmon / f"in{n}_input", hwmon / f"curr{n}_input"
                if volt.is_file() and curr.is_file():
                    rails.append(Rail(name, "hwmon", None, volt, curr))
    seen: dict[str, int] = {}
    unique = []
    for r in rails:  # two monitors may label a channel alike
        seen[r.name] = seen.get(r.name, 0) + 1
        unique.append(r if seen[r.name] == 1 else Rail(f"{r.name}#{seen[r.name]}", r.kind, r.power_path,
                                                        r.volt_path, r.curr_path))
    return unique


def _find_zones(io: Sysfs) -> list[ThermalZone]:
    for base in paths.THERMAL_DIRS:
        folders = sorted(io.path(base).glob("thermal_zone[0-9]*"), key=lambda p: _num_suffix(p.name))
        if folders:
            break
    else:
        return []
    zones = []
    for z in folders:
        kind = io.read_opt(z / "type")
        if kind is None or not (z / "temp").is_file():
            continue
        if any(x in kind.lower() for x in EXCLUDED_ZONES):
            continue
        zones.append(ThermalZone(kind, z / "temp"))
    return zones


def find_readers(io: Sysfs, spec: DeviceSpec) -> JetsonLayout:
    """What the backend reads: the rails, thermal zones, GPU devfreq device, EMC rate (and control) and cores.

    The CPU policies are left to the backend (:attr:`JetsonLayout.cpu` is empty): which it controls depends on
    the cores it puts online. ``spec`` gives the GPU table where the kernel lists none.

    Raises:
        HardwareError: no GPU devfreq device (names where it looked), or its ``max_freq`` is unreadable.
    """
    lay = JetsonLayout()
    lay.rails = _find_rails(io)
    lay.zones = _find_zones(io)
    gpu_dir = _find_gpu_dir(io)
    if gpu_dir is None:
        raise HardwareError(
            f"no GPU devfreq device found under {io.root}: looked in {io.path(paths.DEVFREQ_CLASS)}/* for a "
            f"device named {list(paths.GPU_DEVFREQ_NAMES)} and in {[str(io.path(p)) for p in paths.GPU_DEVFREQ_DIRS]}"
        )
    load_path = next((p for p in (gpu_dir / "device" / "load", *(io.path(q) for q in paths.GPU_LOAD_FILES))
                      if p.is_file()), None)
    available = parse_ints(io.read_opt(gpu_dir / "available_frequencies"))
    if not available:
        available = tuple(round(f) for f in spec.gpu_freqs_hz)
        lay.notes.append(f"{gpu_dir}/available_frequencies not found: using the spec's GPU table")
    if (gpu_dir / "min_freq").is_file() and (gpu_dir / "max_freq").is_file():
        method, cap = "range", io.read_int(gpu_dir / "max_freq")
    elif (gpu_dir / "userspace" / "set_freq").is_file():
        method, cap = "userspace", max(available)
    else:
        method, cap = "none", max(available)
    lay.gpu = GpuDevfreq(gpu_dir, available, method, cap, min(available), load_path)
    lay.emc, lay.emc_rate_path = _find_emc(io)
    lay.cores = _find_cores(io)
    if not lay.zones:
        lay.notes.append(f"no thermal zone found in {[str(io.path(p)) for p in paths.THERMAL_DIRS]}")
    return lay
