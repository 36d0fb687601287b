"""The real Jetson backend: drives CPU, GPU and EMC clocks through sysfs, measures power and temperature.

:class:`JetsonBackend` satisfies :class:`~e4gym.hardware.backend.Backend` on a real board (L4T 32 to 36: Nano,
TX2, Xavier NX, AGX Xavier, Orin Nano / NX, AGX Orin). It finds what the board exposes rather than assuming one
layout, and restores what it changed on every exit path.

Where things are (board paths; the sources are CALIBRATION.md §3 unless said otherwise):

===============  =====================================================================================
board, L4T       ``/proc/device-tree/model`` and ``compatible`` (NUL-separated), ``/etc/nv_tegra_release``
                 (``# R32 (release), REVISION: 7.1, ...``), else the ``nvidia-l4t-core`` version in
                 ``/var/lib/dpkg/status`` (JetPack 6) [jetson-stats ``jetson_variables.py``; jetson_clocks]
CPU              ``/sys/devices/system/cpu/cpufreq/policyN/`` (else ``cpuN/cpufreq/``): ``scaling_governor``,
                 ``scaling_setspeed``, ``scaling_min_freq``, ``scaling_max_freq``,
                 ``scaling_available_frequencies``, ``scaling_cur_freq`` (**kHz**); cores ``cpuN/online``
GPU              devfreq (**Hz**): ``min_freq``, ``max_freq``, ``cur_freq``, ``governor``,
                 ``available_frequencies``, ``userspace/set_freq``; found by scanning ``/sys/class/devfreq/*``
                 for a GPU (``57000000.gpu`` Nano, ``17000000.gp10b`` TX2, ``17000000.gv11b`` Xavier,
                 ``17000000.ga10b`` Orin JetPack 5, ``17000000.gpu`` Orin JetPack 6), else the known device
                 paths; load in ``<devfreq>/device/load`` or ``/sys/devices/gpu.0/load`` (tenths of a percent)
EMC              t186/t194/t234 ``/sys/kernel/debug/bpmp/debug/clk/emc/``: write 1 to ``mrq_rate_locked``
                 (and ``state``), then the rate (**Hz**) to ``rate``; t210 ``/sys/kernel/debug/clk/override.emc/``:
                 rate (Hz) to ``clk_update_rate``, then 1 to ``clk_state``, read ``clk_rate`` [jetson_clocks];
                 never above ``/sys/kernel/nvpmodel_emc_cap/emc_iso_cap`` or the maximum rate [jetson_clocks]
power            INA3221: L4T <= 32 ``/sys/bus/i2c/drivers/ina3221x/*/iio:device*/`` ``rail_name_N``,
                 ``in_power{N}_input`` (**mW**); L4T >= 34 ``/sys/bus/i2c/drivers/ina3221/*/hwmon/hwmon*/``
                 ``inN_label``, ``inN_input`` (**mV**), ``currN_input`` (**mA**), channel 7 and ``NC`` skipped.
                 Board power = the input rail (``VDD_IN``, ``POM_5V_IN``, ``VIN``) when present, else the sum of
                 the rails [jetson-stats ``power.py`` ``total_power``]; or jetson-stats' ``jetson.power['tot']``.
                 Every rail is polled with it; a rail that feeds one domain alone gets a canonical name
                 (:data:`CANONICAL_RAILS`: ``cpu``, ``gpu``, ``soc``), the others keep the board's label
temperature      ``/sys/class/thermal/thermal_zone*/{type,temp}`` (= ``/sys/devices/virtual/thermal``, **m°C**);
                 the hottest zone, without ``PMIC-Die`` (a fixed reading on t210/t186, which jetson-stats also
                 skips), the virtual ``thermal-fan-est`` and offline zones (−256 °C)
===============  =====================================================================================

Rails per board (``JetsonBackend.rail_names``, in ``Measurement.rails_w`` order; labels from the INA3221
``rail_name_N`` / ``inN_label`` files): Nano ``POM_5V_IN`` (input), ``gpu`` (``POM_5V_GPU``), ``cpu``
(``POM_5V_CPU``); TX2 ``VDD_IN``, ``gpu``, ``cpu``, ``soc``, ``VDD_SYS_DDR``, ... (``VDD_SYS_*``); Xavier NX and
Orin Nano / NX ``VDD_IN``, ``VDD_CPU_GPU_CV``, ``soc`` (``VDD_SOC``): **the CPU and the GPU share one rail**
(with the CV engines), so these boards have no separate ``cpu`` / ``gpu`` rails; AGX Orin ``VDD_GPU_SOC`` (GPU and
SoC), ``VDD_CPU_CV`` (CPU and CV), ``VIN_SYS_5V0``, ``VDDQ_VDD2_1V8AO``: no single-domain rail either
(:data:`SHARED_RAILS`).

Governors (``governors=``): ``None`` drives every domain through :meth:`JetsonBackend.apply`; ``"default"``
leaves all three to the kernel (schedutil, nvhost_podgov, the EMC's own scaling): nothing is written, ``apply()``
only validates; a dict names the domains run by a governor (``{"cpu": "ondemand"}``), set through sysfs at open
and restored at close; the other domains stay driven by ``apply()``.

Safety: on open the backend records every file it may change (:class:`~e4gym.hardware.sysfs.Journal`);
:meth:`JetsonBackend.close` (also on ``with`` exit, at interpreter exit, and on SIGINT / SIGTERM before the
previous handler runs) writes them back in reverse order. A failed ``apply()`` undoes its own writes. The
thermal guard restores the board and raises :class:`ThermalLimitError`. ``read_only=True`` never writes;
``dry_run=True`` prints each write it would do.
"""

from __future__ import annotations

import atexit
import itertools
import math
import os
import re
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

from e4gym.errors import ConfigError, E4gymError, HardwareError, SettingError, UnknownNameError
from e4gym.hardware.backend import Measurement, SensorReading, Setting
from e4gym.hardware.spec import DeviceSpec, available_devices, load_device
from e4gym.hardware.sysfs import ROOT_HINT, Journal, Sysfs, SysfsPermissionError, UndoFailedError, write_range
from e4gym.hardware.work import Work

__all__ = [
    "BoardInfo",
    "CpuPolicy",
    "EmcClock",
    "GpuDevfreq",
    "JetsonBackend",
    "JetsonLayout",
    "Rail",
    "SysfsPermissionError",
    "ThermalLimitError",
    "ThermalZone",
    "WorkRunner",
    "detect_board",
]


class ThermalLimitError(E4gymError, RuntimeError):
    """A thermal zone reached the backend's ``thermal_limit_c``: the board was restored and the backend closed."""


@runtime_checkable
class WorkRunner(Protocol):
    """Executes :class:`~e4gym.hardware.work.Work` for real (e.g. :class:`e4gym.hardware.runner.TorchRunner`)."""

    def run(self, work: Work, batch: int = 1) -> float:
        """Run ``work`` on ``batch`` inferences at once; returns its latency (s)."""
        ...


# ============================================================================================== board paths

#: Board model string (device-tree ``model``) [jetson-stats ``jetson_variables.py``; jetson_clocks].
MODEL_FILES = ("/proc/device-tree/model", "/sys/firmware/devicetree/base/model")
#: Device-tree ``compatible`` (NUL-separated; names the module part number and the SoC, e.g. ``nvidia,tegra194``).
COMPATIBLE_FILES = ("/proc/device-tree/compatible", "/sys/firmware/devicetree/base/compatible")
#: L4T release (``# R35 (release), REVISION: 4.1, ...``) [jetson-stats ``get_nvidia_l4t``].
NV_TEGRA_RELEASE = "/etc/nv_tegra_release"
#: dpkg's package database: the version of ``nvidia-l4t-core`` is the L4T release where the file above is absent.
DPKG_STATUS = "/var/lib/dpkg/status"
#: CPU cores, cpufreq policies (kHz) [CALIBRATION.md §3].
CPU_DIR = "/sys/devices/system/cpu"
#: devfreq devices (the GPU among them) [jetson-stats ``gpu.py``; jetson_clocks ``detect_igpu_devfreq``].
DEVFREQ_CLASS = "/sys/class/devfreq"
#: devfreq names of Jetson GPUs (the part after the unit address) [jetson-stats ``KNOWN_GPU_DEVICE_NAMES``].
GPU_DEVFREQ_NAMES = ("gpu", "gp10b", "gv11b", "ga10b", "gb10b")
#: Known GPU devfreq folders, tried when ``/sys/class/devfreq`` names none [CALIBRATION.md §3].
GPU_DEVFREQ_DIRS = (
    "/sys/devices/gpu.0/devfreq/57000000.gpu",  # Nano
    "/sys/devices/57000000.gpu/devfreq/57000000.gpu",  # Nano (the same node under its unit address)
    "/sys/devices/17000000.gp10b/devfreq/17000000.gp10b",  # TX2
    "/sys/devices/17000000.gv11b/devfreq/17000000.gv11b",  # Xavier NX, AGX Xavier
    "/sys/devices/17000000.ga10b/devfreq/17000000.ga10b",  # Orin, JetPack 5
    "/sys/devices/platform/bus@0/17000000.gpu/devfreq/17000000.gpu",  # Orin, JetPack 6
)
#: GPU load (tenths of a percent) when ``<devfreq>/device/load`` is absent [CALIBRATION.md §3].
GPU_LOAD_FILES = ("/sys/devices/gpu.0/load",)
#: EMC on t186/t194/t234 (BPMP debugfs, Hz) [CALIBRATION.md §3; jetson_clocks].
EMC_BPMP_DIR = "/sys/kernel/debug/bpmp/debug/clk/emc"
#: EMC on t210 (clock override debugfs, Hz) [CALIBRATION.md §3; jetson_clocks: clk_rate, clk_update_rate, clk_state].
EMC_T210_DIR = "/sys/kernel/debug/clk/override.emc"
#: EMC caps: nvpmodel's ISO cap (t186/t194/t234, 0 = none) and BPMP's / tegra_bwmgr's maximum rate (Hz)
#: [jetson_clocks ``do_emc``; jetson-stats ``read_emc``].
EMC_CAP_FILES = (
    "/sys/kernel/nvpmodel_emc_cap/emc_iso_cap",
    "/sys/kernel/debug/bpmp/debug/clk/emc/max_rate",
    "/sys/kernel/debug/tegra_bwmgr/emc_max_rate",
)
#: Thermal zones (m°C) [CALIBRATION.md §3; /sys/class/thermal links into /sys/devices/virtual/thermal].
THERMAL_DIRS = ("/sys/class/thermal", "/sys/devices/virtual/thermal")
#: INA3221 on L4T <= 32: iio driver ``ina3221x``, power in mW [CALIBRATION.md §3].
INA3221_IIO_DRIVER = "/sys/bus/i2c/drivers/ina3221x"
#: INA3221 on L4T >= 34: hwmon driver ``ina3221``, mV and mA [CALIBRATION.md §3].
INA3221_HWMON_DRIVER = "/sys/bus/i2c/drivers/ina3221"
#: Rails that measure the whole module's input: board power when present [jetson-stats ``total_power``].
TOTAL_RAILS = ("VIN", "POM_5V_IN", "VDD_IN")
#: INA3221 labels of rails that feed one clock domain alone, and the canonical name ``rail_names`` gives them
#: (L4T 32 ``POM_5V_*`` on Nano, ``VDD_SYS_*`` on TX2, the bare names of AGX Xavier, ``VDD_*`` on L4T >= 34).
CANONICAL_RAILS: dict[str, str] = {
    "POM_5V_CPU": "cpu", "VDD_SYS_CPU": "cpu", "VDD_CPU": "cpu", "CPU": "cpu",
    "POM_5V_GPU": "gpu", "VDD_SYS_GPU": "gpu", "VDD_GPU": "gpu", "GPU": "gpu",
    "VDD_SYS_SOC": "soc", "VDD_SOC": "soc", "SOC": "soc",
}
#: Rails that feed several domains together (they keep the board's label): no per-domain split exists there.
SHARED_RAILS: dict[str, tuple[str, ...]] = {
    "VDD_CPU_GPU_CV": ("cpu", "gpu", "cv"),  # Xavier NX, Orin Nano, Orin NX
    "VDD_GPU_SOC": ("gpu", "soc"),  # AGX Orin
    "VDD_CPU_CV": ("cpu", "cv"),  # AGX Orin
}
#: Governors the backend can stand in for by pinning a domain when the kernel does not list them (the GPU's
#: devfreq has no ``powersave``; the EMC has no governor file): ``performance`` holds the cap, ``powersave`` the
#: lowest level, as those governors do.
PINNED_GOVERNORS = ("performance", "powersave")
#: Thermal zone types left out of the hottest-zone reading (lower case, substrings).
EXCLUDED_ZONES = ("pmic", "fan-est", "fan_est")
#: Readings outside this range (°C) are treated as offline sensors (−256 °C marks an offline zone on Orin).
PLAUSIBLE_TEMP_C = (-40.0, 150.0)
#: How often the background sampler checks the thermal guard (s); temperature moves in seconds, not ms.
THERMAL_CHECK_PERIOD_S = 0.1
#: jetson-stats service interval asked for when this backend starts its own client (s).
JTOP_INTERVAL_S = 0.5

#: (lower-case text in the model string or a ``compatible`` entry, device spec name); first match wins.
DEVICE_RULES: tuple[tuple[str, str], ...] = (
    ("orin nano", "orin-nano"),
    ("p3767-0003", "orin-nano"),
    ("p3767-0004", "orin-nano"),
    ("p3767-0005", "orin-nano"),
    ("orin nx", "orin-nx"),
    ("p3767-0000", "orin-nx"),
    ("p3767-0001", "orin-nx"),
    ("agx orin", "agx-orin"),
    ("p3701", "agx-orin"),
    ("xavier nx", "xavier-nx"),
    ("p3668", "xavier-nx"),
    ("agx xavier", "agx-xavier"),
    ("jetson-agx", "agx-xavier"),  # the model string of AGX Xavier on L4T 32
    ("p2888", "agx-xavier"),
    ("tx2", "jetson-tx2"),
    ("p3310", "jetson-tx2"),
    ("p3489", "jetson-tx2"),
    ("p3636", "jetson-tx2"),
    ("jetson nano", "jetson-nano"),
    ("jetson-nano", "jetson-nano"),
    ("p3448", "jetson-nano"),
)


# ============================================================================================== detection


@dataclass(frozen=True)
class BoardInfo:
    """What the tree says about the board.

    Attributes:
        model: device-tree model string (``""`` when not found).
        compatible: device-tree ``compatible`` entries.
        soc: ``tegra210``, ``tegra186``, ``tegra194``, ``tegra234`` (``""`` when unknown).
        device: the e4gym device spec it maps to (``None`` when unknown).
        l4t: L4T release, e.g. ``"35.4.1"`` (``None`` when not found).
        l4t_source: the file the release was read from.
    """

    model: str
    compatible: tuple[str, ...]
    soc: str
    device: str | None
    l4t: str | None
    l4t_source: str = ""

    @property
    def l4t_major(self) -> int | None:
        """Major L4T release (32, 35, 36...), ``None`` when unknown."""
        if not self.l4t:
            return None
        try:
            return int(self.l4t.split(".")[0])
        except ValueError:
            return None


_L4T_RELEASE_RE = re.compile(r"R(\d+)\s*\(release\),\s*REVISION:\s*([0-9.]+)")


def _read_l4t(io: Sysfs) -> tuple[str | None, str]:
    text = io.read_opt(io.path(NV_TEGRA_RELEASE))
    if text:
        m = _L4T_RELEASE_RE.search(text)
        if m:
            return f"{m.group(1)}.{m.group(2).rstrip('.')}", NV_TEGRA_RELEASE
    status = io.read_opt(io.path(DPKG_STATUS))
    if status:
        for stanza in re.split(r"\n\s*\n", status):
            if re.search(r"^Package:\s*nvidia-l4t-core\s*$", stanza, re.M):
                m = re.search(r"^Version:\s*(\S+)", stanza, re.M)
                if m:
                    return m.group(1).split("-")[0], f"{DPKG_STATUS} (nvidia-l4t-core)"
    return None, ""


def _device_for(texts: Sequence[str]) -> str | None:
    for text in texts:
        low = text.lower()
        for key, device in DEVICE_RULES:
            if key in low:
                return device
    return None


def detect_board(sysfs_root: str | Path = "/") -> BoardInfo:
    """Read the board model, SoC and L4T release from the tree rooted at ``sysfs_root`` (never raises).

    The device spec name comes from the model string (``NVIDIA Jetson Xavier NX Developer Kit`` →
    ``xavier-nx``), else from the module part number in ``compatible`` (``p3668`` → ``xavier-nx``); see
    :data:`DEVICE_RULES`.
    """
    io = Sysfs(sysfs_root, read_only=True)
    model = next((t for t in (io.read_opt(io.path(p)) for p in MODEL_FILES) if t), "")
    compatible: tuple[str, ...] = ()
    for p in COMPATIBLE_FILES:
        text = io.read_opt(io.path(p))
        if text:
            compatible = tuple(x for x in text.split() if x)
            break
    soc = next((c.split(",")[-1] for c in compatible if "tegra" in c), "")
    l4t, l4t_source = _read_l4t(io)
    return BoardInfo(model, compatible, soc, _device_for((model, " ".join(compatible))), l4t, l4t_source)


# ============================================================================================== layout


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
        cap_hz: highest rate allowed (Hz): the smallest positive value of :data:`EMC_CAP_FILES`.
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


def _ints(text: str | None) -> tuple[int, ...]:
    if not text:
        return ()
    return tuple(sorted({int(x) for x in text.split() if x.isdigit()}))


def _find_cpu_policies(io: Sysfs) -> list[tuple[Path, tuple[int, ...]]]:
    cpu_dir = io.path(CPU_DIR)
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
    for core in io.path(CPU_DIR).glob("cpu[0-9]*"):
        online = core / "online"
        cores[_num_suffix(core.name)] = online if online.is_file() else None
    return dict(sorted(cores.items()))


def _is_gpu_devfreq(io: Sysfs, entry: Path) -> bool:
    name = entry.name.lower()
    if name.rsplit(".", 1)[-1] in GPU_DEVFREQ_NAMES or name.startswith("gpu"):
        return True
    of_name = (io.read_opt(entry / "device" / "of_node" / "name") or "").lower()
    return of_name in GPU_DEVFREQ_NAMES


def _find_gpu_dir(io: Sysfs) -> Path | None:
    candidates: list[Path] = []
    cls = io.path(DEVFREQ_CLASS)
    if cls.is_dir():
        candidates += [e for e in sorted(cls.iterdir(), key=lambda p: p.name) if _is_gpu_devfreq(io, e)]
    candidates += [io.path(p) for p in GPU_DEVFREQ_DIRS]
    for c in candidates:
        if (c / "cur_freq").is_file() or (c / "max_freq").is_file():
            return c
    return None


def _find_emc(io: Sysfs) -> tuple[EmcClock | None, Path | None]:
    bpmp, t210 = io.path(EMC_BPMP_DIR), io.path(EMC_T210_DIR)
    caps = [c for c in (io.read_int_opt(io.path(p)) for p in EMC_CAP_FILES) if c and c > 0]
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
    for dev in sorted(io.path(INA3221_IIO_DRIVER).glob("*")):
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
    for dev in sorted(io.path(INA3221_HWMON_DRIVER).glob("*")):
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
    for base in THERMAL_DIRS:
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


def canonical_rail_names(labels: Sequence[str]) -> tuple[str, ...]:
    """``rail_names`` of INA3221 rails labelled ``labels``: :data:`CANONICAL_RAILS`' name where a rail feeds one
    domain alone (the first such rail; a second keeps its label), the board's label otherwise."""
    names: list[str] = []
    for label in labels:
        name = CANONICAL_RAILS.get(label.upper(), label)
        names.append(label if name in names else name)
    return tuple(names)


def _nearest(available: Sequence[int], target: float, cap: int | None = None) -> int:
    """The listed frequency nearest ``target``, not above ``cap`` (units as listed)."""
    allowed = [f for f in available if cap is None or f <= cap]
    if not allowed:
        return round(min(target, cap)) if cap is not None else round(target)
    return min(allowed, key=lambda f: (abs(f - target), f))


# ============================================================================================== power readers


class _SysfsPower:
    """Board power from the INA3221 rails (W)."""

    name = "sysfs"

    def __init__(self, io: Sysfs, rails: list[Rail]) -> None:
        self.io, self.rails = io, rails
        self.total = next((r for t in TOTAL_RAILS for r in rails if r.name == t), None)
        #: Rail labels, in :meth:`read_all` order.
        self.labels: tuple[str, ...] = tuple(r.name for r in rails)
        self._total_index = None if self.total is None else rails.index(self.total)

    def read_w(self) -> float:
        if self.total is not None:
            return self.total.read_w(self.io)
        return sum(r.read_w(self.io) for r in self.rails)

    def read_all(self) -> tuple[float, tuple[float, ...]]:
        """``(board power, every rail)`` (W), each rail read once."""
        rails = tuple(r.read_w(self.io) for r in self.rails)
        return (rails[self._total_index] if self._total_index is not None else sum(rails)), rails

    def rails_w(self) -> dict[str, float]:
        return {r.name: r.read_w(self.io) for r in self.rails}

    def describe(self) -> str:
        how = f"input rail {self.total.name}" if self.total else "sum of the rails"
        kinds = sorted({r.kind for r in self.rails})
        return f"INA3221 ({'/'.join(kinds)}): {', '.join(r.name for r in self.rails)}; board power = {how}"

    def close(self) -> None:
        pass


class _JtopPower:
    """Board power through a jetson-stats client: ``jetson.power['tot']['power']`` (mW)."""

    name = "jtop"

    def __init__(self, client: Any, owned: bool) -> None:
        self.client, self.owned = client, owned
        try:
            names = tuple(self._rails(self.client.power or {}))
        except Exception:  # a client without data yet: no rails
            names = ()
        #: Rail names jetson-stats reported at open (the input rail included), in :meth:`read_all` order.
        self.labels: tuple[str, ...] = names

    def _check(self) -> None:
        if not self.client.ok(spin=True):
            raise HardwareError("the jetson-stats (jtop) client has stopped; restart the jtop service and the backend")

    def read_w(self) -> float:
        self._check()
        tot = (self.client.power or {}).get("tot") or {}
        if "power" not in tot:
            raise HardwareError(f"jetson-stats reports no board power (jetson.power = {self.client.power!r})")
        return float(tot["power"]) / 1e3

    @staticmethod
    def _rails(power: dict[str, Any]) -> dict[str, float]:
        rails = {name: float(v.get("power", 0)) / 1e3 for name, v in (power.get("rail") or {}).items()}
        tot = power.get("tot") or {}
        if "name" in tot:  # jetson-stats moves the input rail out of 'rail' into 'tot'
            rails[tot["name"]] = float(tot.get("power", 0)) / 1e3
        return rails

    def rails_w(self) -> dict[str, float]:
        self._check()
        return self._rails(self.client.power or {})

    def read_all(self) -> tuple[float, tuple[float, ...]]:
        """``(board power, the rails of :attr:`labels`)`` (W) from one ``jetson.power`` (NaN: a rail gone)."""
        self._check()
        power = self.client.power or {}
        tot = power.get("tot") or {}
        if "power" not in tot:
            raise HardwareError(f"jetson-stats reports no board power (jetson.power = {power!r})")
        rails = self._rails(power)
        return float(tot["power"]) / 1e3, tuple(rails.get(n, math.nan) for n in self.labels)

    def describe(self) -> str:
        return f"jetson-stats client ({'started by the backend' if self.owned else 'given'}): power['tot']"

    def close(self) -> None:
        if self.owned:
            try:
                self.client.close()
            except Exception:  # the service may already be gone; nothing to restore here
                pass


def _start_jtop() -> Any:
    """A started jetson-stats client, or :class:`HardwareError` saying why not."""
    try:
        from jtop import JtopException, jtop
    except ImportError as exc:
        raise HardwareError(f"jetson-stats is not importable ({exc}); pip install jetson-stats") from None
    client = jtop(interval=JTOP_INTERVAL_S)
    try:
        client.start()
    except (JtopException, OSError) as exc:
        raise HardwareError(f"the jetson-stats service is not available: {exc}") from None
    return client


# ============================================================================================== sampling


class _Sampler:
    """Polls board power and its rails (and GPU load, and the thermal guard) in a background thread over one window.

    The window starts with a sample taken on entry and ends with one taken on exit; energy is the trapezoid
    integral of the samples (J), and so is each rail's.
    """

    def __init__(
        self,
        read_power: Callable[[], tuple[float, tuple[float, ...]]],
        period_s: float,
        read_load: Callable[[], float | None] | None = None,
        guard: Callable[[], None] | None = None,
    ) -> None:
        self._read_power, self._period, self._read_load, self._guard = read_power, period_s, read_load, guard
        self.samples: list[tuple[float, float]] = []
        self.rail_samples: list[tuple[float, ...]] = []
        self.loads: list[float] = []
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="e4gym-jetson-power", daemon=True)

    def _sample(self) -> None:
        t = time.monotonic()
        p, rails = self._read_power()
        self.rail_samples.append(rails)
        self.samples.append((t, p))
        if self._read_load is not None:
            load = self._read_load()
            if load is not None:
                self.loads.append(load)

    def __enter__(self) -> _Sampler:
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
        next_t, next_guard = start + self._period, start + THERMAL_CHECK_PERIOD_S
        while not self._stop.wait(max(0.0, next_t - time.monotonic())):
            try:
                self._sample()
                now = time.monotonic()
                if self._guard is not None and now >= next_guard:
                    self._guard()
                    next_guard = now + THERMAL_CHECK_PERIOD_S
            except BaseException as exc:  # reported by the caller after the window
                self.error = exc
                return
            next_t += self._period
            if next_t < now:  # fell behind (a slow read, a busy CPU): skip the missed polls
                next_t = now + self._period

    @property
    def window_s(self) -> float:
        """Time from the first sample to the last (s)."""
        return self.samples[-1][0] - self.samples[0][0] if len(self.samples) > 1 else 0.0

    def energy_j(self) -> float:
        """Trapezoid integral of power over the window (J)."""
        s = self.samples
        return sum(0.5 * (p0 + p1) * (t1 - t0) for (t0, p0), (t1, p1) in itertools.pairwise(s))

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
        """Mean GPU load over the window (0..1; NaN when the board has no load file)."""
        return sum(self.loads) / len(self.loads) if self.loads else math.nan


# ============================================================================================== the backend


class JetsonBackend:
    """A real Jetson board: sets clocks through sysfs, runs work through a runner, measures power and heat.

    Args:
        spec: device spec (object, name or YAML path); default: detected from the board's model string.
        sysfs_root: the board's ``/`` (a fake tree in tests).
        runner: executes work for :meth:`run` (``run(work, batch) -> seconds``, e.g.
            :class:`e4gym.hardware.runner.TorchRunner`); optional for sensing, :meth:`idle` and :meth:`apply`.
        power_source: ``"sysfs"`` (INA3221 rails), ``"jtop"`` (jetson-stats), or ``"auto"``: the given
            ``jtop_client``, else the jetson-stats service when it runs (only with ``sysfs_root="/"``), else the
            rails. Note jetson-stats refreshes every ``JTOP_INTERVAL_S`` or slower: for runs of tens of
            milliseconds the rails (polled every ``sample_period_s``) resolve energy far better.
        read_only: never write anything; :meth:`apply` raises :class:`~e4gym.errors.SettingError`.
        dry_run: print every write it would do (path, old → new value, units) and write nothing.
        thermal_limit_c: when a thermal zone reaches it (°C), restore the board, close the backend and raise
            :class:`ThermalLimitError` (checked in every call and every ``THERMAL_CHECK_PERIOD_S`` during
            :meth:`run` and :meth:`idle`, where the board is restored at once and the error raised on return).
        sample_period_s: power polling period during :meth:`run` and :meth:`idle` (s).
        jtop_client: a started jetson-stats client (or an object with its ``power``, ``temperature`` and
            ``ok(spin)``); used for power when ``power_source`` is ``"auto"`` or ``"jtop"``; not closed here.
        cpu_online: number of CPU cores to keep online (cores ``0..n-1`` online, the others offline), restored
            on close; ``None`` leaves hot-plugging alone.
        governors: who sets each domain's clock. ``None``: :meth:`apply`, for every domain. ``"default"``: the
            kernel's own governors for all three (schedutil, nvhost_podgov, the EMC's own scaling): the backend
            writes nothing and :meth:`apply` only checks its levels. A dict ``{domain: governor}`` (domains
            ``cpu``, ``gpu``, ``emc``): that governor runs the domain, written at open (cpufreq
            ``scaling_governor`` of every cluster, devfreq ``governor``) and restored at close; ``"default"``
            leaves that domain's governor as it is; ``"userspace"`` (and any domain not named) is driven by
            :meth:`apply`. The allowed names are those the kernel lists (``scaling_available_governors``,
            ``available_governors``), plus ``performance`` / ``powersave`` where the kernel lacks them (the GPU
            has no ``powersave``, the EMC no governor file): the backend then pins the domain at its cap / lowest
            level, as the governor would (:data:`PINNED_GOVERNORS`). :meth:`apply` leaves governed domains alone;
            measurements report the clocks the kernel chose.

    CPU clocks are set per cluster: governor ``userspace`` and ``scaling_setspeed`` where offered (the range is
    widened to ``[lowest, cap]`` first), else ``scaling_min_freq = scaling_max_freq``. The GPU: devfreq
    ``min_freq = max_freq`` (written in the order that keeps min <= max), else governor ``userspace`` +
    ``userspace/set_freq``. EMC: the debugfs override when present and writable. A level maps to the spec's
    frequency, then to the nearest frequency the kernel lists, never above the cap found at open (the power
    mode's ``scaling_max_freq`` / ``max_freq``, as the emulator caps levels by power mode).

    Raises:
        HardwareError: the board or a file it needs was not found (names what was looked for), or the first
            writes (``cpu_online``) were refused.
        ConfigError: an argument is invalid.
    """

    #: Real measurements are noisy: envs on this backend register ``nondeterministic=True``.
    NONDETERMINISTIC: ClassVar[bool] = True

    def __init__(
        self,
        spec: DeviceSpec | str | Path | None = None,
        *,
        sysfs_root: str | Path = "/",
        runner: WorkRunner | None = None,
        power_source: str = "auto",
        read_only: bool = False,
        dry_run: bool = False,
        thermal_limit_c: float | None = None,
        sample_period_s: float = 0.01,
        jtop_client: Any = None,
        cpu_online: int | None = None,
        governors: str | dict[str, str] | None = None,
    ) -> None:
        if power_source not in ("auto", "sysfs", "jtop"):
            raise ConfigError(f"power_source must be 'auto', 'sysfs' or 'jtop', got {power_source!r}")
        if not (isinstance(sample_period_s, (int, float)) and 0 < sample_period_s < math.inf):
            raise ConfigError(f"sample_period_s must be a positive number of seconds, got {sample_period_s!r}")
        if thermal_limit_c is not None and not math.isfinite(float(thermal_limit_c)):
            raise ConfigError(f"thermal_limit_c must be a finite temperature (°C) or None, got {thermal_limit_c!r}")
        if cpu_online is not None and read_only:
            raise ConfigError("cpu_online changes which cores are online: it needs read_only=False")
        self.sysfs_root = Path(sysfs_root)
        self.read_only, self.dry_run = bool(read_only), bool(dry_run)
        self.runner = runner
        self.thermal_limit_c = None if thermal_limit_c is None else float(thermal_limit_c)
        self.sample_period_s = float(sample_period_s)
        self.io = Sysfs(self.sysfs_root, read_only=self.read_only, dry_run=self.dry_run)
        self._journal = Journal(self.io)
        self._lock = self._journal.lock
        self._closed = False
        self._tripped: str | None = None
        self._trip_event = threading.Event()
        self._pid = os.getpid()
        self._pending_stall = 0.0
        self._warned_emc = False

        self.board = detect_board(self.sysfs_root)
        self.spec = self._resolve_spec(spec)
        self.layout = JetsonLayout()
        self._discover_readers()
        self._power = self._open_power(power_source, jtop_client)
        self._jtop = jtop_client if jtop_client is not None else getattr(self._power, "client", None)
        #: The board's labels of the rails every Measurement and SensorReading carries (``rails_w`` order).
        self.rail_labels: tuple[str, ...] = tuple(self._power.labels)
        #: The rails' names: canonical (``cpu``, ``gpu``, ``soc``) where a rail feeds one domain alone, the board's
        #: label otherwise (:func:`canonical_rail_names`).
        self.rail_names: tuple[str, ...] = canonical_rail_names(self.rail_labels)
        self._t0 = time.monotonic()
        _register(self)
        try:
            #: Who sets each domain's clock: ``"userspace"`` (:meth:`apply`), or the governor running it.
            self.governors: dict[str, str] = {"cpu": "userspace", "gpu": "userspace", "emc": "userspace"}
            self._pinned: dict[str, int] = {}
            self._set_governors: dict[str, str] = self._check_governors(governors)
            self._driven = tuple(self.governors[d] == "userspace" for d in ("cpu", "gpu", "emc"))
            self._discover_controls(cpu_online)
            self._start_governors()
        except BaseException:
            self._shutdown()
            raise
        self._requested = self.levels

    # ------------------------------------------------------------------------------------------ opening

    def _resolve_spec(self, spec: DeviceSpec | str | Path | None) -> DeviceSpec:
        board = self.board
        if spec is None:
            if board.device is None:
                looked = ", ".join(str(self.io.path(p)) for p in (*MODEL_FILES, *COMPATIBLE_FILES))
                found = f"model {board.model!r}" if board.model else "no model string"
                raise HardwareError(
                    f"cannot tell which Jetson board this is ({found}, compatible {list(board.compatible)}); "
                    f"looked in {looked}. Pass spec= with the device name, one of {available_devices()}"
                )
            try:
                return load_device(board.device)
            except UnknownNameError:
                raise HardwareError(
                    f"board {board.model!r} maps to device '{board.device}', which has no YAML in configs/devices; "
                    f"pass spec= with one of {available_devices()}"
                ) from None
        resolved = spec if isinstance(spec, DeviceSpec) else load_device(spec)
        if board.device is not None and board.device != resolved.name:
            warnings.warn(
                f"the board reports {board.model!r} (device '{board.device}') but spec '{resolved.name}' was given; "
                "using the given spec's level tables",
                stacklevel=3,
            )
        return resolved

    def _discover_readers(self) -> None:
        io, lay = self.io, self.layout
        lay.rails = _find_rails(io)
        lay.zones = _find_zones(io)
        gpu_dir = _find_gpu_dir(io)
        if gpu_dir is None:
            raise HardwareError(
                f"no GPU devfreq device found under {self.sysfs_root}: looked in {io.path(DEVFREQ_CLASS)}/* for a "
                f"device named {list(GPU_DEVFREQ_NAMES)} and in {[str(io.path(p)) for p in GPU_DEVFREQ_DIRS]}"
            )
        load_path = next((p for p in (gpu_dir / "device" / "load", *(io.path(q) for q in GPU_LOAD_FILES))
                          if p.is_file()), None)
        available = _ints(io.read_opt(gpu_dir / "available_frequencies"))
        if not available:
            available = tuple(round(f) for f in self.spec.gpu_freqs_hz)
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
            lay.notes.append(f"no thermal zone found in {[str(io.path(p)) for p in THERMAL_DIRS]}")

    def _open_power(self, source: str, client: Any) -> _SysfsPower | _JtopPower:
        rails = self.layout.rails
        where = f"{self.io.path(INA3221_IIO_DRIVER)}/*/iio:device*, {self.io.path(INA3221_HWMON_DRIVER)}/*/hwmon/hwmon*"
        if source == "jtop" or (source == "auto" and client is not None):
            if client is not None:
                return _JtopPower(client, owned=False)
            return _JtopPower(_start_jtop(), owned=True)
        if source == "auto" and self.sysfs_root == Path("/"):
            try:
                return _JtopPower(_start_jtop(), owned=True)
            except HardwareError as exc:
                self.layout.notes.append(f"jetson-stats not used: {exc}")
        if not rails:
            raise HardwareError(
                f"no INA3221 power rail found (looked in {where}); use power_source='jtop' with the jetson-stats "
                "service running, or check that the ina3221 driver is loaded"
            )
        return _SysfsPower(self.io, rails)

    def _check_governors(self, governors: str | dict[str, str] | None) -> dict[str, str]:
        """Resolve ``governors=`` against what the board offers; returns the governors to write at open.

        Sets :attr:`governors` (who runs each domain) and ``_pinned`` (domains held at one level in place of a
        governor the kernel lacks).

        Raises:
            UnknownNameError: an unknown domain, or a governor the board does not offer (lists those it does).
            ConfigError: ``governors`` is neither ``None``, ``"default"`` nor a dict; a governor to set on a
                read-only backend; a pinned EMC the board does not let be set.
        """
        if governors is None:
            return {}
        io, lay = self.io, self.layout
        assert lay.gpu is not None
        kernel = {
            "cpu": next((g for g in (io.read_opt(f / "scaling_governor") for f, _ in _find_cpu_policies(io)) if g),
                        "unknown"),
            "gpu": io.read_opt(lay.gpu.path / "governor") or "unknown",
            "emc": "default",  # no governor file: the EMC's own (actmon / BPMP) scaling
        }
        if governors == "default":
            self.governors = dict(kernel)
            return {}
        if not isinstance(governors, dict):
            raise ConfigError(f"governors must be None, 'default' or a dict {{domain: governor}}, got {governors!r}")
        cpu_lists = [set(t.split()) for t in (io.read_opt(f / "scaling_available_governors")
                                               for f, _ in _find_cpu_policies(io)) if t]
        offered = {
            "cpu": sorted(set.intersection(*cpu_lists)) if cpu_lists else [kernel["cpu"]],
            "gpu": sorted(set((io.read_opt(lay.gpu.path / "available_governors") or "").split()) | {kernel["gpu"]}),
            "emc": [],
        }
        to_set: dict[str, str] = {}
        for dom, name in governors.items():
            if dom not in offered:
                raise UnknownNameError(f"unknown clock domain '{dom}' in governors; domains: ['cpu', 'gpu', 'emc']")
            allowed = sorted({"userspace", "default", *offered[dom], *PINNED_GOVERNORS})
            if name not in allowed:
                raise UnknownNameError(f"the board offers no {dom} governor '{name}'; {dom} governors here: {allowed}")
            if name == "default":
                self.governors[dom] = kernel[dom]
            elif name == "userspace":
                self.governors[dom] = "userspace"
            elif name in offered[dom]:
                self.governors[dom] = name
                to_set[dom] = name
            else:  # performance / powersave the kernel lacks: hold the cap / the lowest level
                self.governors[dom] = f"{name} (pinned)"
                n = {"cpu": self.spec.n_cpu, "gpu": self.spec.n_gpu, "emc": self.spec.n_emc}[dom]
                self._pinned[dom] = n - 1 if name == "performance" else 0
        if self.read_only and (to_set or self._pinned):
            raise ConfigError(
                f"read_only=True writes nothing, but governors={governors!r} sets "
                f"{sorted({*to_set, *self._pinned})}: open the backend read-write (as root), or pass "
                "governors='default' to leave the kernel's governors running"
            )
        return to_set

    def _start_governors(self) -> None:
        """Write the governors of ``governors=`` and pin the domains that stand in for one (journaled)."""
        if not (self._set_governors or self._pinned):
            return
        if "emc" in self._pinned and self.layout.emc is None:
            why = "; ".join(n for n in self.layout.notes if "EMC" in n) or "no EMC debugfs override found"
            raise ConfigError(f"governors sets the EMC to {self.governors['emc']}, but the EMC clock is not "
                              f"controllable on this board ({why})")
        with self._journal.transaction():
            for dom, name in self._set_governors.items():
                if dom == "cpu":
                    for pol in self.layout.cpu:
                        self.io.write(pol.path / "scaling_governor", name)
                else:
                    assert self.layout.gpu is not None
                    self.io.write(self.layout.gpu.path / "governor", name)
            for dom, level in self._pinned.items():
                {"cpu": self._set_cpu, "gpu": self._set_gpu, "emc": self._set_emc}[dom](level)

    def _discover_controls(self, cpu_online: int | None) -> None:
        """Find the CPU policies, record every file the backend may change, and hot-plug cores if asked."""
        io, lay, journal = self.io, self.layout, self._journal
        writable = not self.read_only
        policies = _find_cpu_policies(io)
        if not policies:
            raise HardwareError(
                f"no cpufreq policy found: looked in {io.path(CPU_DIR)}/cpufreq/policy* and "
                f"{io.path(CPU_DIR)}/cpu*/cpufreq"
            )
        if cpu_online is not None:
            n_cores = len(lay.cores)
            if isinstance(cpu_online, bool) or not isinstance(cpu_online, int) or not 1 <= cpu_online <= n_cores:
                raise ConfigError(f"cpu_online must be an integer in 1..{n_cores} (cores found), got {cpu_online!r}")
            for path in lay.cores.values():
                if path is not None:
                    journal.record(path)
            for core, path in lay.cores.items():
                want = "1" if core < cpu_online else "0"
                if path is None:
                    if want == "0":
                        raise HardwareError(f"cpu{core} cannot be taken offline (no online file): cpu_online too low")
                    continue
                io.write(path, want)
        online = {c for c, p in lay.cores.items() if p is None or io.read_opt(p) != "0"}
        spec_khz = tuple(round(f / 1e3) for f in self.spec.cpu_freqs_hz)
        for folder, cpus in policies:
            if cpus and not (set(cpus) & online):
                lay.cpu_skipped.append(folder)
                lay.notes.append(f"{folder}: every core of {list(cpus)} is offline; this cluster is left alone")
                continue
            available = _ints(io.read_opt(folder / "scaling_available_frequencies")) or spec_khz
            govs = (io.read_opt(folder / "scaling_available_governors") or "").split()
            method = "userspace" if "userspace" in govs and (folder / "scaling_setspeed").is_file() else "range"
            cap = io.read_int(folder / "scaling_max_freq")
            floor = io.read_int_opt(folder / "cpuinfo_min_freq") or min(available)
            lay.cpu.append(CpuPolicy(folder, cpus, available, method, cap, floor))
            if writable and "cpu" in self._set_governors:
                journal.record(folder / "scaling_governor")
            if writable and (self._driven[0] or "cpu" in self._pinned):
                if method == "userspace":
                    journal.record(folder / "scaling_governor")
                journal.record_range(folder / "scaling_min_freq", folder / "scaling_max_freq", unit="kHz")
                if method == "userspace":
                    journal.record(folder / "scaling_setspeed", unit="kHz", numeric=True)
        if not lay.cpu:
            raise HardwareError(f"no cpufreq policy with an online core among {[str(p) for p, _ in policies]}")
        gpu = lay.gpu
        assert gpu is not None
        if writable:
            gpu_writes = self._driven[1] or "gpu" in self._pinned
            if "gpu" in self._set_governors:
                journal.record(gpu.path / "governor")
            if not gpu_writes:
                pass  # the GPU's governor sets its clock: no clock file is written
            elif gpu.method == "range":
                journal.record_range(gpu.path / "min_freq", gpu.path / "max_freq", unit="Hz")
            elif gpu.method == "userspace":
                journal.record(gpu.path / "governor")
                journal.record(gpu.path / "userspace" / "set_freq", unit="Hz", numeric=True)
            else:
                raise HardwareError(
                    f"{gpu.path}: neither min_freq/max_freq nor userspace/set_freq: the GPU clock cannot be set"
                )
            emc = lay.emc if (self._driven[2] or "emc" in self._pinned) else None
            emc_files = {emc.set_path, *emc.lock_paths} if emc is not None else set()
            if emc is not None:
                try:
                    for p in (*emc.lock_paths, emc.set_path) if not emc.rate_first else (emc.set_path, *emc.lock_paths):
                        journal.record(p, unit="Hz" if p == emc.set_path else "")
                    if not self.dry_run and not all(io.writable(p) for p in (emc.set_path, *emc.lock_paths)):
                        raise HardwareError(f"{emc.set_path.parent}: not writable")
                except HardwareError as exc:
                    lay.emc = None
                    lay.notes.append(f"EMC left alone: {exc}")
            if not self.dry_run:  # the EMC is optional: its files were checked above
                denied = [p for p, _ in journal.saved if Path(p) not in emc_files and not io.writable(Path(p))]
                if denied:
                    raise SysfsPermissionError(
                        f"cannot change clocks: no write permission on {len(denied)} files such as {denied[0]} "
                        f"(running as uid {os.geteuid()}); {ROOT_HINT}"
                    )
        elif lay.emc is not None:
            lay.notes.append("read-only: EMC not controlled")
        if not self._driven[2] and "emc" not in self._pinned and lay.emc is not None:
            lay.emc = None
            lay.notes.append(f"EMC left to its governor ({self.governors['emc']})")

    # ------------------------------------------------------------------------------------------ reading

    def _clocks_hz(self) -> tuple[float, float, float]:
        io, lay, spec = self.io, self.layout, self.spec
        req = getattr(self, "_requested", None)
        cpu = None
        for pol in lay.cpu:
            khz = io.read_int_opt(pol.path / "scaling_cur_freq") or io.read_int_opt(pol.path / "cpuinfo_cur_freq")
            if khz:
                cpu = khz * 1e3
                break
        gpu = io.read_int_opt(lay.gpu.path / "cur_freq") if lay.gpu else None
        emc = io.read_int_opt(lay.emc_rate_path) if lay.emc_rate_path else None
        fallback = req or spec.max_levels()
        return (
            float(cpu) if cpu else spec.cpu_freqs_hz[fallback[0]],
            float(gpu) if gpu else spec.gpu_freqs_hz[fallback[1]],
            float(emc) if emc else spec.emc_freqs_hz[fallback[2]],
        )

    def _hottest(self) -> tuple[float, str]:
        """Hottest plausible zone: (°C, zone name); NaN when none can be read."""
        lo, hi = PLAUSIBLE_TEMP_C
        best, where = -math.inf, ""
        for z in self.layout.zones:
            milli = self.io.read_int_opt(z.temp_path)
            if milli is None:
                continue
            t = milli / 1e3
            if lo < t < hi and t > best:
                best, where = t, z.name
        if where:
            return best, where
        if self._jtop is not None:
            try:
                temps = self._jtop.temperature or {}
            except Exception:
                temps = {}
            for name, v in temps.items():
                t = float(v.get("temp", -256.0))
                if v.get("online", True) and lo < t < hi and t > best and "pmic" not in name.lower():
                    best, where = t, f"jtop:{name}"
        return (best, where) if where else (math.nan, "")

    def _read_load(self) -> float | None:
        path = self.layout.gpu.load_path if self.layout.gpu else None
        if path is None:
            return None
        tenths = self.io.read_int_opt(path)
        return None if tenths is None else min(max(tenths / 1000.0, 0.0), 1.0)

    @property
    def levels(self) -> tuple[int, int, int]:
        """Current ``(cpu, gpu, emc)`` level indices, read back from the kernel (nearest spec level)."""
        cpu, gpu, emc = self._clocks_hz()
        return (self.spec.level_of("cpu", cpu), self.spec.level_of("gpu", gpu), self.spec.level_of("emc", emc))

    @property
    def time_s(self) -> float:
        """Wall time since the backend was opened (s)."""
        return time.monotonic() - self._t0

    @property
    def power_source(self) -> str:
        """``"sysfs"`` or ``"jtop"``: where board power is read."""
        return self._power.name

    @property
    def closed(self) -> bool:
        """Whether the board has been restored and the backend closed."""
        return self._closed

    def rails_w(self) -> dict[str, float]:
        """Power of every rail now (W), by the board's label (:attr:`rail_labels`)."""
        self._check_open()
        return self._power.rails_w()

    def read_sensors(self) -> SensorReading:
        """Board power, hottest temperature and clocks now.

        Raises:
            ThermalLimitError: a zone is at or above ``thermal_limit_c`` (the board was restored).
        """
        self._check_open()
        power, rails = self._power.read_all()
        temp, zone = self._hottest()
        self._guard(temp, zone)
        cpu, gpu, emc = self._clocks_hz()
        return SensorReading(power, temp, cpu, gpu, emc, self._throttled(temp), self.time_s, rails)

    def _throttled(self, temp_c: float) -> bool:
        return bool(temp_c >= self.spec.thermal.throttle_c)

    # ------------------------------------------------------------------------------------------ driving

    def apply(self, setting: Setting | tuple[int, int, int]) -> float:
        """Set CPU, GPU and EMC levels; returns the stall estimate (s): ``transition_stall_s`` per switched domain.

        Writes go CPU (every cluster), GPU, then EMC (skipped, with a one-time warning, when the board does not
        let it be set). If a write fails, the writes already made by this call are undone first. Domains run by
        a governor (``governors=``) are left alone; with every domain governed ``apply`` only checks the levels
        (also on a read-only backend).

        Raises:
            SettingError: a level is out of range, or the backend is read-only.
            SysfsPermissionError: a write was refused (needs root).
            HardwareError: a file is missing or rejected the value (names it; the tree is as before the call).
            ThermalLimitError: the thermal guard fired.
        """
        c, g, e = setting.as_tuple() if isinstance(setting, Setting) else tuple(setting)
        self._check_open()
        self.spec.check_levels(c, g, e)
        c, g, e = int(c), int(g), int(e)
        driven = self._driven
        if not any(driven):  # every domain runs its governor: nothing to set
            return 0.0
        if self.read_only:
            raise SettingError(
                "this JetsonBackend is read-only (read_only=True): apply() never changes clocks. Open it with "
                "read_only=False (as root) to drive the board, or dry_run=True to print the writes it would do"
            )
        if self.thermal_limit_c is not None:
            self._guard(*self._hottest())
        try:
            with self._journal.transaction():
                if driven[0]:
                    self._set_cpu(c)
                if driven[1]:
                    self._set_gpu(g)
                if driven[2]:
                    self._set_emc(e)
        except UndoFailedError:
            raise
        except HardwareError as exc:
            raise type(exc)(f"{exc} (apply{(c, g, e)} changed nothing: its earlier writes were undone)") from exc
        prev = self._requested
        c, g, e = (c if driven[0] else prev[0]), (g if driven[1] else prev[1]), (e if driven[2] else prev[2])
        switched = (c != prev[0]) + (g != prev[1]) + (e != prev[2] and self.layout.emc is not None)
        self._requested = (c, g, e)
        stall = self.spec.model.transition_stall_s * switched
        self._pending_stall += stall
        return stall

    def _set_cpu(self, level: int) -> None:
        io, target_hz = self.io, self.spec.cpu_freqs_hz[level]
        for pol in self.layout.cpu:
            khz = _nearest(pol.available_khz, target_hz / 1e3, pol.cap_khz)
            lo, hi = pol.path / "scaling_min_freq", pol.path / "scaling_max_freq"
            if pol.method == "userspace":
                io.write(pol.path / "scaling_governor", "userspace")
                write_range(io, lo, hi, min(pol.floor_khz, khz), pol.cap_khz, unit="kHz")
                io.write(pol.path / "scaling_setspeed", khz, unit="kHz")
            else:
                write_range(io, lo, hi, khz, khz, unit="kHz")

    def _set_gpu(self, level: int) -> None:
        gpu = self.layout.gpu
        assert gpu is not None
        hz = _nearest(gpu.available_hz, self.spec.gpu_freqs_hz[level], gpu.cap_hz)
        if gpu.method == "range":
            write_range(self.io, gpu.path / "min_freq", gpu.path / "max_freq", hz, hz, unit="Hz")
        else:
            self.io.write(gpu.path / "governor", "userspace")
            self.io.write(gpu.path / "userspace" / "set_freq", hz, unit="Hz")

    def _set_emc(self, level: int) -> None:
        emc = self.layout.emc
        if emc is None:
            if level != self._requested[2] and not self._warned_emc:
                self._warned_emc = True
                why = "; ".join(n for n in self.layout.notes if "EMC" in n) or "no EMC debugfs override found"
                warnings.warn(f"the EMC (memory) clock is not controllable on this board ({why}): EMC levels "
                              "are ignored", stacklevel=4)
            return
        hz = round(self.spec.emc_freqs_hz[level])
        if emc.cap_hz is not None:
            hz = min(hz, emc.cap_hz)
        if emc.rate_first:
            self.io.write(emc.set_path, hz, unit="Hz")
        for lock in emc.lock_paths:
            self.io.write(lock, 1)
        if not emc.rate_first:
            self.io.write(emc.set_path, hz, unit="Hz")

    # ------------------------------------------------------------------------------------------ measuring

    def run(self, work: Work, batch: int = 1) -> Measurement:
        """Run ``work`` through the runner at the current clocks, integrating board power while it runs.

        ``latency_s`` is the runner's latency; ``energy_j`` (= ``measured_energy_j``) the trapezoid integral of
        the power polled every ``sample_period_s`` from just before to just after the runner's call, and
        ``avg_power_w`` that energy over the polled window. ``transition_s`` is the stall estimate of the
        ``apply()`` calls since the last measurement (the real stall is inside the measured time). ``rails_w``:
        each rail of :attr:`rail_names`, polled with the board power and integrated the same way, over the window.

        Raises:
            HardwareError: no runner was given, or power could not be read.
            ThermalLimitError: the thermal guard fired during the run (the board was restored at once).
        """
        self._check_open()
        if self.runner is None:
            raise HardwareError(
                "JetsonBackend.run() needs a runner that executes the work: pass runner= (an object with "
                "run(work, batch) -> seconds, e.g. e4gym.hardware.runner.TorchRunner); read_sensors(), idle() and "
                "apply() work without one"
            )
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise ConfigError(f"batch must be an integer >= 1, got {batch!r}")
        sampler = self._sampler()
        with sampler:
            latency = float(self.runner.run(work, batch))
        return self._measurement(sampler, latency)

    def idle(self, duration_s: float) -> Measurement:
        """Stay idle for ``duration_s`` seconds at the current clocks, integrating board power (J).

        Raises:
            SettingError: the duration is negative or not finite.
            ThermalLimitError: the thermal guard fired (the wait ends early).
        """
        self._check_open()
        if not (isinstance(duration_s, (int, float)) and 0.0 <= duration_s < math.inf):
            raise SettingError(f"idle duration must be a finite number of seconds >= 0, got {duration_s!r}")
        sampler = self._sampler()
        with sampler:
            self._trip_event.wait(float(duration_s))
        return self._measurement(sampler, None)

    def _sampler(self) -> _Sampler:
        guard = self._guard_background if self.thermal_limit_c is not None else None
        return _Sampler(self._power.read_all, self.sample_period_s, self._read_load, guard)

    def _measurement(self, sampler: _Sampler, latency_s: float | None) -> Measurement:
        if self._tripped:
            raise ThermalLimitError(self._tripped)
        if sampler.error is not None:
            err = sampler.error
            if isinstance(err, E4gymError):
                raise err
            raise HardwareError(f"power sampling failed: {err}") from err
        window = sampler.window_s
        energy = sampler.energy_j()
        avg = energy / window if window > 0 else sampler.samples[-1][1]
        temp, zone = self._hottest()
        self._guard(temp, zone)
        cpu, gpu, emc = self._clocks_hz()
        stall, self._pending_stall = self._pending_stall, 0.0
        return Measurement(
            latency_s=window if latency_s is None else latency_s,
            energy_j=energy,
            measured_energy_j=energy,
            avg_power_w=avg,
            temp_c=temp,
            cpu_hz=cpu,
            gpu_hz=gpu,
            emc_hz=emc,
            throttled=self._throttled(temp),
            transition_s=stall,
            gpu_util=sampler.gpu_util(),
            time_s=self.time_s,
            rails_w=sampler.rails_w(),
        )

    # ------------------------------------------------------------------------------------------ safety

    def _guard(self, temp_c: float, zone: str) -> None:
        if self._tripped:
            raise ThermalLimitError(self._tripped)
        limit = self.thermal_limit_c
        if limit is not None and temp_c >= limit:
            self._trip(temp_c, zone)
            raise ThermalLimitError(self._tripped)

    def _guard_background(self) -> None:
        temp, zone = self._hottest()
        if self.thermal_limit_c is not None and temp >= self.thermal_limit_c:
            self._trip(temp, zone)

    def _trip(self, temp_c: float, zone: str) -> None:
        with self._lock:
            if self._tripped:
                return
            self._tripped = (
                f"thermal zone '{zone}' reached {temp_c:.1f} °C, at or above thermal_limit_c = "
                f"{self.thermal_limit_c:.1f} °C: the board's clocks and governors were restored and this backend "
                "is closed; let the board cool and open a new backend (or raise thermal_limit_c)"
            )
            self._trip_event.set()
            failures = self._shutdown()
            if failures:
                self._tripped += "; restoring failed for: " + "; ".join(failures)

    def _check_open(self) -> None:
        if self._closed:
            if self._tripped:
                raise ThermalLimitError(self._tripped)
            raise HardwareError("this JetsonBackend is closed (the board was restored); open a new one")

    def _shutdown(self) -> list[str]:
        """Restore the board (once) and release the backend; returns the files that could not be restored."""
        with self._lock:
            if self._closed:
                return []
            self._closed = True
            failures = self._journal.restore()
            self.io.sealed = True
        _unregister(self)
        power = getattr(self, "_power", None)
        if power is not None:
            power.close()
        return failures

    def close(self) -> None:
        """Restore every governor, clock range, setspeed, EMC override and online state it changed (idempotent).

        Raises:
            HardwareError: some files could not be restored (names each with the value it should hold).
        """
        failures = self._shutdown()
        if failures:
            raise HardwareError("could not restore the board completely; set these by hand: " + "; ".join(failures))

    def __enter__(self) -> JetsonBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def describe(self) -> str:
        """A multi-line summary of the board and of what the backend drives and reads."""
        lay, b = self.layout, self.board
        lines = [
            f"board: {b.model or '?'} (soc {b.soc or '?'}, L4T {b.l4t or '?'}"
            f"{' from ' + b.l4t_source if b.l4t_source else ''}) -> spec '{self.spec.name}'",
            f"mode: {'read-only' if self.read_only else 'dry-run' if self.dry_run else 'read-write'}",
        ]
        for pol in lay.cpu:
            lines.append(f"cpu {pol.path} cores {list(pol.cpus)}: {pol.method}, {len(pol.available_khz)} levels, "
                         f"cap {pol.cap_khz} kHz")
        if lay.gpu:
            lines.append(f"gpu {lay.gpu.path}: {lay.gpu.method}, {len(lay.gpu.available_hz)} levels, "
                         f"cap {lay.gpu.cap_hz} Hz, load {lay.gpu.load_path or 'n/a'}")
        lines.append(f"emc: {lay.emc.kind + ' ' + str(lay.emc.set_path) if lay.emc else 'not controlled'}")
        lines.append(f"power: {self._power.describe()}")
        named = [f"{n} ({lab})" if n != lab else n for n, lab in zip(self.rail_names, self.rail_labels)]
        shared = [f"{lab} feeds {'+'.join(SHARED_RAILS[lab])}" for lab in self.rail_labels if lab in SHARED_RAILS]
        lines.append(f"rails: {', '.join(named) or 'none'}" + (f"; shared: {'; '.join(shared)}" if shared else ""))
        lines.append("governors: " + ", ".join(f"{d} {g if g != 'userspace' else 'apply()'}"
                                               for d, g in self.governors.items()))
        lines.append(f"thermal zones: {', '.join(z.name for z in lay.zones) or 'none'}")
        lines.append(f"journal: {len(self._journal)} entries")
        lines += [f"note: {n}" for n in lay.notes]
        return "\n".join(lines)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"JetsonBackend(spec='{self.spec.name}', root='{self.sysfs_root}', power={self.power_source}, {state})"


# ============================================================================================== process-wide safety

_REGISTRY_LOCK = threading.RLock()  # re-entrant: a signal handler may run while the main thread holds it
_OPEN: list[JetsonBackend] = []
_PREVIOUS_HANDLERS: dict[int, Any] = {}
_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_atexit_installed = False


def _register(backend: JetsonBackend) -> None:
    """Track an open backend; install the atexit hook and (from the main thread) the signal handlers.

    Signals the process ignores (``SIG_IGN``, e.g. SIGINT in a background job) are left ignored.
    """
    global _atexit_installed
    with _REGISTRY_LOCK:
        _OPEN.append(backend)
        if not _atexit_installed:
            atexit.register(_restore_all, "the interpreter is exiting")
            _atexit_installed = True
        if threading.current_thread() is threading.main_thread():
            for sig in _SIGNALS:
                current = signal.getsignal(sig)
                if current == signal.SIG_IGN:  # an ignored signal stays ignored: it must not close the backend
                    continue
                if current is not _on_signal:
                    _PREVIOUS_HANDLERS[sig] = current
                    signal.signal(sig, _on_signal)


def _unregister(backend: JetsonBackend) -> None:
    """Forget a closed backend; with none left, put the previous signal handlers back (main thread only)."""
    with _REGISTRY_LOCK:
        if backend in _OPEN:
            _OPEN.remove(backend)
        if _OPEN or threading.current_thread() is not threading.main_thread():
            return
        for sig, previous in list(_PREVIOUS_HANDLERS.items()):
            if signal.getsignal(sig) is _on_signal:
                signal.signal(sig, previous if previous is not None else signal.SIG_DFL)
            del _PREVIOUS_HANDLERS[sig]


def _restore_all(reason: str) -> None:
    """Restore every backend this process opened and has not closed (atexit and signals)."""
    with _REGISTRY_LOCK:
        backends = [b for b in reversed(_OPEN) if b._pid == os.getpid()]
    for b in backends:
        print(f"e4gym: {reason}: restoring the Jetson board's clocks and governors ({b.sysfs_root})",
              file=sys.stderr, flush=True)
        try:
            failures = b._shutdown()
        except Exception as exc:  # keep restoring the others
            failures = [str(exc)]
        if failures:
            print("e4gym: could not restore: " + "; ".join(failures), file=sys.stderr, flush=True)


def _on_signal(signum: int, frame: Any) -> None:
    """SIGINT / SIGTERM: restore the boards, then do what the previous handler would have done."""
    previous = _PREVIOUS_HANDLERS.get(signum, signal.SIG_DFL)
    _restore_all(f"{signal.Signals(signum).name} received")
    if callable(previous):
        previous(signum, frame)
    elif previous == signal.SIG_IGN:
        return
    else:  # SIG_DFL (or a handler not installed from Python): die of the signal as the default action would
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)

