"""Fake Jetson sysfs trees for tests, and a fake jetson-stats client.

Builders (each returns a :class:`FakeBoard` rooted in a temporary folder):

* :func:`build_nano`: Jetson Nano, L4T 32.7.1, INA3221 through the old iio driver (``ina3221x``, mW), GPU devfreq
  under ``/sys/devices/gpu.0``, EMC through ``/sys/kernel/debug/clk/override.emc``;
* :func:`build_xavier_nx`: Xavier NX, L4T 35.4.1, INA3221 through hwmon (``ina3221``, mV and mA), three CPU
  clusters, GPU ``17000000.gv11b``, EMC through BPMP debugfs;
* :func:`build_agx_orin`: AGX Orin on JetPack 6 (L4T 36.3, read from dpkg's record of ``nvidia-l4t-core``: the
  tree has no ``/etc/nv_tegra_release``), GPU ``/sys/devices/platform/bus@0/17000000.gpu``, two INA3221 (one
  with ``NC`` channels), an offline CV zone at −256 °C.

Frequency tables come from the device YAMLs (cpufreq in kHz, devfreq and EMC in Hz). Paths follow
CALIBRATION.md §3 and the layouts jetson-stats and jetson_clocks read; symlinks are relative, as in sysfs
(``/sys/class/devfreq/*``, ``cpuN/cpufreq``, ``/sys/bus/i2c/drivers/*/<addr>``, ``/sys/class/thermal``).
No kernel runs behind the files: :meth:`FakeBoard.settle` moves the ``cur`` files to what the written settings
select, as the kernel would.

:class:`FakeJtop` reproduces the data shapes of jetson-stats 7.x (``jtop.power``, ``temperature``, ``cpu``,
``gpu``, ``memory``; see ``jtop/core/power.py``, ``temperature.py``, ``cpu.py``, ``gpu.py``, ``memory.py``),
reading the fake tree on every access.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from e4gym.hardware.lock import JOURNAL_FILE, LOCK_FILE
from e4gym.hardware.spec import load_device
from e4gym.io import TMP_MARK

GOVERNORS_CPU = "interactive conservative ondemand userspace powersave performance schedutil"
GOVERNORS_GPU = "wmark_active wmark_simple nvhost_podgov userspace performance simple_ondemand"


# ---------------------------------------------------------------------------------------------- file helpers


def is_run_file(rel: Path) -> bool:
    """Whether ``rel`` (relative to a tree's root) is the board lock, the restore journal or a journal write's
    leftover: e4gym's own files in ``/run``, not board state."""
    return rel in (LOCK_FILE, JOURNAL_FILE) or (rel.parent == JOURNAL_FILE.parent
                                                 and rel.name.startswith(JOURNAL_FILE.name + TMP_MARK))


def _put(root: Path, board_path: str, text: str | bytes) -> Path:
    path = root / board_path.lstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text + "\n")
    return path


def _link(root: Path, board_link: str, board_target: str) -> None:
    link = root / board_link.lstrip("/")
    target = root / board_target.lstrip("/")
    link.parent.mkdir(parents=True, exist_ok=True)
    target.mkdir(parents=True, exist_ok=True)
    os.symlink(os.path.relpath(target, link.parent), link)


@dataclass
class FakeRail:
    """Files of one fake INA3221 channel (board paths).

    Attributes:
        kind: ``iio`` (power file in mW) or ``hwmon`` (voltage in mV, current in mA).
        power / volt / curr: board paths of the files (``power`` only for iio).
    """

    kind: str
    volt: str
    curr: str
    power: str | None = None


@dataclass
class FakeBoard:
    """A fake board tree and where its files are.

    Attributes:
        root: the tree's ``/``.
        device: the e4gym device spec name it should be detected as.
        policies: board paths of the cpufreq policy folders.
        cores: number of CPU cores.
        gpu: board path of the GPU devfreq folder.
        gpu_device: board path of the GPU device (its ``load``).
        emc: board path of the EMC debugfs folder (``None`` when absent).
        emc_kind: ``bpmp`` or ``t210``.
        rails: rail name → files.
        zones: zone type → board path of its ``temp``.
    """

    root: Path
    device: str
    policies: list[str]
    cores: int
    gpu: str
    gpu_device: str
    emc: str | None
    emc_kind: str
    rails: dict[str, FakeRail] = field(default_factory=dict)
    zones: dict[str, str] = field(default_factory=dict)

    # ------------------------------------------------------------------------------------------ access

    def path(self, board_path: str) -> Path:
        """The file of a board path in the tree."""
        return self.root / board_path.lstrip("/")

    def read(self, board_path: str) -> str:
        """A file's text, stripped."""
        return self.path(board_path).read_text().replace("\0", " ").strip()

    def read_int(self, board_path: str) -> int:
        """A file's integer."""
        return int(self.read(board_path).split()[0])

    def write(self, board_path: str, value: object) -> None:
        """Overwrite a file atomically, as a sysfs attribute changes for its readers (the backend's power sampler
        may be reading it from another thread)."""
        path = self.path(board_path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(f"{value}\n")
        os.replace(tmp, path)

    def policy(self, i: int, attr: str) -> str:
        """Attribute ``attr`` of the ``i``-th cpufreq policy."""
        return self.read(f"{self.policies[i]}/{attr}")

    def set_rail(self, name: str, watts: float, volt_mv: int = 5000) -> None:
        """Make rail ``name`` read ``watts`` (W): iio writes mW (and matching mV, mA), hwmon mV and mA."""
        rail = self.rails[name]
        curr_ma = round(watts * 1e6 / volt_mv)
        self.write(rail.volt, volt_mv)
        self.write(rail.curr, curr_ma)
        if rail.power is not None:
            self.write(rail.power, round(watts * 1e3))

    def set_temp(self, zone: str, celsius: float) -> None:
        """Make thermal zone ``zone`` (its ``type``) read ``celsius`` (°C; the file holds m°C)."""
        self.write(self.zones[zone], round(celsius * 1e3))

    def snapshot(self) -> dict[str, bytes]:
        """Every regular file of the tree (relative path → content) as a reader sees it; symlinks not followed.

        Attributes the kernel computes when read are brought up to date first (:meth:`kernel_reads`). The board
        lock (``run/e4gym-board.lock``) and the owner's restore journal (``run/e4gym-restore.json``, with what a
        write of it killed midway leaves: ``.tmp-*``), on a board in the ``/run`` tmpfs, are not board state and
        are left out.
        """
        self.kernel_reads()
        out: dict[str, bytes] = {}
        for folder, _dirs, files in os.walk(self.root):
            for name in files:
                p = Path(folder) / name
                if not p.is_symlink() and not is_run_file(p.relative_to(self.root)):
                    out[str(p.relative_to(self.root))] = p.read_bytes()
        return out

    def kernel_reads(self) -> None:
        """What the kernel shows in attributes it computes: ``scaling_setspeed`` reads ``<unsupported>`` and
        devfreq ``userspace/set_freq`` ``undefined`` unless the governor is ``userspace``."""
        for pol in self.policies:
            if self.path(f"{pol}/scaling_setspeed").is_file() and self.read(f"{pol}/scaling_governor") != "userspace":
                self.write(f"{pol}/scaling_setspeed", "<unsupported>")
        if self.path(f"{self.gpu}/userspace/set_freq").is_file() and self.read(f"{self.gpu}/governor") != "userspace":
            self.write(f"{self.gpu}/userspace/set_freq", "undefined")

    @contextlib.contextmanager
    def kernel(self, period_s: float = 0.002) -> Iterator[None]:
        """Run a thread that plays the kernel while the block runs: :meth:`settle` every ``period_s`` seconds (a
        read that lands mid-write is retried on the next tick)."""
        stop = threading.Event()

        def loop() -> None:
            while not stop.is_set():
                try:
                    self.settle()
                except (IndexError, ValueError):  # read a file the backend was writing: try again
                    pass
                stop.wait(period_s)

        t = threading.Thread(target=loop, daemon=True)
        t.start()
        try:
            yield
        finally:
            stop.set()
            t.join()

    def settle(self) -> None:
        """Move the current-frequency files to what the written settings select (what the kernel would do)."""
        for pol in self.policies:
            lo, hi = self.read_int(f"{pol}/scaling_min_freq"), self.read_int(f"{pol}/scaling_max_freq")
            cur = self.read_int(f"{pol}/scaling_cur_freq")
            setspeed = self.read(f"{pol}/scaling_setspeed")
            if self.read(f"{pol}/scaling_governor") == "userspace" and setspeed.isdigit():
                cur = int(setspeed)
            cur = min(max(cur, lo), hi)
            self.write(f"{pol}/scaling_cur_freq", cur)
            self.write(f"{pol}/cpuinfo_cur_freq", cur)
        cur = self.read_int(f"{self.gpu}/cur_freq")
        if self.path(f"{self.gpu}/userspace/set_freq").is_file() and self.read(f"{self.gpu}/governor") == "userspace":
            cur = self.read_int(f"{self.gpu}/userspace/set_freq")
        if self.path(f"{self.gpu}/min_freq").is_file():
            cur = min(max(cur, self.read_int(f"{self.gpu}/min_freq")), self.read_int(f"{self.gpu}/max_freq"))
        self.write(f"{self.gpu}/cur_freq", cur)
        if self.emc is not None and self.emc_kind == "t210" and self.read(f"{self.emc}/clk_state") == "1":
            self.write(f"{self.emc}/clk_rate", self.read(f"{self.emc}/clk_update_rate"))


# ---------------------------------------------------------------------------------------------- tree parts


def _identity(root: Path, model: str, compatible: list[str], release: str | None, dpkg_version: str | None) -> None:
    _put(root, "/proc/device-tree/model", model.encode() + b"\0")
    _put(root, "/proc/device-tree/compatible", b"".join(c.encode() + b"\0" for c in compatible))
    if release is not None:
        _put(root, "/etc/nv_tegra_release", release)
    if dpkg_version is not None:
        _put(root, "/var/lib/dpkg/status", "\n".join([
            "Package: nvidia-l4t-bootloader", "Status: install ok installed", "Version: 36.3.0-20240506102626", "",
            "Package: nvidia-l4t-core", "Status: install ok installed", "Architecture: arm64",
            f"Version: {dpkg_version}", "Description: NVIDIA Core Package", "",
        ]))


def _cpus(root: Path, clusters: list[list[int]], khz: list[int], *, userspace: bool, max_khz: int | None,
          offline: tuple[int, ...], governor: str = "schedutil") -> list[str]:
    base = "/sys/devices/system/cpu"
    n = sum(len(c) for c in clusters)
    policies = []
    for cluster in clusters:
        pol = f"{base}/cpufreq/policy{cluster[0]}"
        policies.append(pol)
        top = max_khz or khz[-1]
        govs = GOVERNORS_CPU if userspace else GOVERNORS_CPU.replace("userspace ", "")
        files = {
            "related_cpus": " ".join(map(str, cluster)),
            "affected_cpus": " ".join(str(c) for c in cluster if c not in offline),
            "scaling_available_frequencies": " ".join(map(str, khz)) + " ",
            "scaling_available_governors": govs,
            "scaling_governor": governor,
            "scaling_min_freq": str(khz[0]),
            "scaling_max_freq": str(top),
            "scaling_cur_freq": str(top),
            "cpuinfo_min_freq": str(khz[0]),
            "cpuinfo_max_freq": str(khz[-1]),
            "cpuinfo_cur_freq": str(top),
            "scaling_driver": "tegra-cpufreq",
        }
        if userspace:
            files["scaling_setspeed"] = "<unsupported>"
        for name, text in files.items():
            _put(root, f"{pol}/{name}", text)
        for c in cluster:
            _link(root, f"{base}/cpu{c}/cpufreq", pol)
    for c in range(n):
        if c > 0:  # cpu0 cannot be hot-plugged: no online file
            _put(root, f"{base}/cpu{c}/online", "0" if c in offline else "1")
        else:
            (root / base.lstrip("/") / "cpu0").mkdir(parents=True, exist_ok=True)
    online = [c for c in range(n) if c not in offline]
    _put(root, f"{base}/online", ",".join(map(str, online)))
    return policies


def _devfreq(root: Path, device: str, name: str, hz: list[int], *, of_name: str, max_hz: int | None = None,
             userspace_only: bool = False, load: int = 0) -> str:
    folder = f"{device}/devfreq/{name}"
    top = max_hz or hz[-1]
    files = {
        "available_frequencies": " ".join(map(str, hz)),
        "available_governors": GOVERNORS_GPU,
        "governor": "nvhost_podgov",
        "cur_freq": str(top),
        "target_freq": str(top),
        "polling_interval": "0",
    }
    if userspace_only:
        files["userspace/set_freq"] = "undefined"
    else:
        files["min_freq"] = str(hz[0])
        files["max_freq"] = str(top)
    for f, text in files.items():
        _put(root, f"{folder}/{f}", text)
    _put(root, f"{device}/load", str(load))
    _put(root, f"{device}/of_node/name", of_name.encode() + b"\0")
    _put(root, f"{device}/railgate_enable", "1")
    here = root / folder.lstrip("/")
    os.symlink(os.path.relpath(root / device.lstrip("/"), here), here / "device")
    _link(root, f"/sys/class/devfreq/{name}", folder)
    return folder


def _emc_bpmp(root: Path, rate: int, lo: int) -> str:
    d = "/sys/kernel/debug/bpmp/debug/clk/emc"
    for f, v in {"rate": rate, "min_rate": lo, "max_rate": rate, "mrq_rate_locked": 0, "state": 1}.items():
        _put(root, f"{d}/{f}", str(v))
    return d


def _emc_t210(root: Path, rate: int, lo: int) -> str:
    d = "/sys/kernel/debug/clk/override.emc"
    for f, v in {"clk_rate": rate, "clk_update_rate": 0, "clk_state": 0}.items():
        _put(root, f"{d}/{f}", str(v))
    _put(root, "/sys/kernel/debug/tegra_bwmgr/emc_max_rate", str(rate))
    _put(root, "/sys/kernel/debug/tegra_bwmgr/emc_min_rate", str(lo))
    return d


def _ina_iio(root: Path, device: str, addr: str, rails: dict[str, float]) -> dict[str, FakeRail]:
    iio = f"{device}/{addr}/iio:device0"
    out = {}
    _put(root, f"{device}/{addr}/name", "ina3221x")
    for n, (name, watts) in enumerate(rails.items()):
        mw = round(watts * 1e3)
        _put(root, f"{iio}/rail_name_{n}", name)
        _put(root, f"{iio}/in_power{n}_input", str(mw))
        _put(root, f"{iio}/in_voltage{n}_input", "5000")
        _put(root, f"{iio}/in_current{n}_input", str(round(mw / 5)))
        _put(root, f"{iio}/crit_current_limit_{n}", "3000")
        _put(root, f"{iio}/warn_current_limit_{n}", "2000")
        out[name] = FakeRail("iio", f"{iio}/in_voltage{n}_input", f"{iio}/in_current{n}_input",
                             f"{iio}/in_power{n}_input")
    _put(root, f"{iio}/name", "ina3221x")
    _link(root, f"/sys/bus/i2c/drivers/ina3221x/{addr}", f"{device}/{addr}")
    _link(root, f"/sys/bus/i2c/devices/{addr}", f"{device}/{addr}")
    return out


def _ina_hwmon(root: Path, device: str, addr: str, hwmon: str, rails: dict[str, float | None]) -> dict[str, FakeRail]:
    """Channels 1..3 labelled by ``rails`` (``None`` = an ``NC`` channel), plus channel 7 (sum of shunts)."""
    d = f"{device}/{addr}/hwmon/{hwmon}"
    out = {}
    _put(root, f"{device}/{addr}/name", "ina3221")
    _put(root, f"{d}/name", "ina3221")
    for n, (name, watts) in enumerate(rails.items(), start=1):
        label = "NC" if watts is None else name
        _put(root, f"{d}/in{n}_label", label)
        _put(root, f"{d}/in{n}_input", "5000")
        _put(root, f"{d}/curr{n}_input", str(round((watts or 0.0) * 1e6 / 5000)))
        _put(root, f"{d}/curr{n}_max", "32760")
        _put(root, f"{d}/curr{n}_crit", "32760")
        _put(root, f"{d}/in{n + 3}_input", "4")  # shunt voltages: unlabelled, ignored
        if watts is not None:
            out[name] = FakeRail("hwmon", f"{d}/in{n}_input", f"{d}/curr{n}_input")
    _put(root, f"{d}/in7_label", "sum of shunt voltages")
    _put(root, f"{d}/in7_input", "12")
    _link(root, f"/sys/bus/i2c/drivers/ina3221/{addr}", f"{device}/{addr}")
    _link(root, f"/sys/bus/i2c/devices/{addr}", f"{device}/{addr}")
    return out


def _zones(root: Path, zones: dict[str, float]) -> dict[str, str]:
    out = {}
    for i, (kind, celsius) in enumerate(zones.items()):
        z = f"/sys/devices/virtual/thermal/thermal_zone{i}"
        _put(root, f"{z}/type", kind)
        _put(root, f"{z}/temp", str(round(celsius * 1e3)))
        out[kind] = f"{z}/temp"
        _put(root, f"{z}/mode", "enabled")
        _link(root, f"/sys/class/thermal/thermal_zone{i}", z)
    _put(root, "/sys/devices/virtual/thermal/cooling_device0/type", "pwm-fan")
    _link(root, "/sys/class/thermal/cooling_device0", "/sys/devices/virtual/thermal/cooling_device0")
    return out


def _tables(device: str) -> tuple[list[int], list[int], list[int]]:
    spec = load_device(device)
    return ([round(f / 1e3) for f in spec.cpu_freqs_hz], [round(f) for f in spec.gpu_freqs_hz],
            [round(f) for f in spec.emc_freqs_hz])


# ---------------------------------------------------------------------------------------------- boards


def build_nano(root: Path, *, userspace: bool = True, cpu_max_khz: int | None = None, gpu_max_hz: int | None = None,
               offline: tuple[int, ...] = (), emc: bool = True) -> FakeBoard:
    """Jetson Nano (t210), L4T 32.7.1: one 4-core cluster, GPU ``/sys/devices/gpu.0``, INA3221 iio (mW).

    Args:
        userspace: offer the ``userspace`` CPU governor (else the backend must use min = max).
        cpu_max_khz / gpu_max_hz: caps at open (e.g. the 5 W mode: 918000 kHz, 640000000 Hz).
        offline: cores offline at open.
        emc: include the t210 EMC override in debugfs.
    """
    root = Path(root)
    cpu, gpu, emc_hz = _tables("jetson-nano")
    _identity(root, "NVIDIA Jetson Nano Developer Kit",
              ["nvidia,p3450-0000", "nvidia,p3449-0000-b00+p3448-0000-b00", "nvidia,jetson-nano", "nvidia,tegra210"],
              "# R32 (release), REVISION: 7.1, GCID: 29818004, BOARD: t210ref, EABI: aarch64, "
              "DATE: Sat Feb 19 17:05:08 UTC 2022", None)
    policies = _cpus(root, [[0, 1, 2, 3]], cpu, userspace=userspace, max_khz=cpu_max_khz, offline=offline)
    gpu_dir = _devfreq(root, "/sys/devices/gpu.0", "57000000.gpu", gpu, of_name="gpu", max_hz=gpu_max_hz)
    emc_dir = _emc_t210(root, emc_hz[-1], emc_hz[0]) if emc else None
    rails = _ina_iio(root, "/sys/devices/7000c400.i2c/i2c-6", "6-0040",
                     {"POM_5V_IN": 4.8, "POM_5V_GPU": 1.2, "POM_5V_CPU": 1.0})
    zones = _zones(root, {"AO-therm": 38.5, "CPU-therm": 41.0, "GPU-therm": 40.0, "PLL-therm": 39.0,
                          "PMIC-Die": 100.0, "thermal-fan-est": 40.5})
    return FakeBoard(root, "jetson-nano", policies, 4, gpu_dir, "/sys/devices/gpu.0", emc_dir, "t210", rails, zones)


def build_xavier_nx(root: Path, *, offline: tuple[int, ...] = ()) -> FakeBoard:
    """Xavier NX (t194), L4T 35.4.1: three 2-core clusters, GPU ``17000000.gv11b``, INA3221 hwmon, BPMP EMC."""
    root = Path(root)
    cpu, gpu, emc_hz = _tables("xavier-nx")
    _identity(root, "NVIDIA Jetson Xavier NX Developer Kit",
              ["nvidia,p3509-0000+p3668-0001", "nvidia,jetson-xavier-nx", "nvidia,tegra194"],
              "# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref, EABI: aarch64, "
              "DATE: Tue Aug  1 19:57:35 UTC 2023", None)
    policies = _cpus(root, [[0, 1], [2, 3], [4, 5]], cpu, userspace=True, max_khz=None, offline=offline)
    gpu_dir = _devfreq(root, "/sys/devices/17000000.gv11b", "17000000.gv11b", gpu, of_name="gv11b", load=250)
    _devfreq(root, "/sys/devices/15340000.vic", "15340000.vic", [115200000, 601600000], of_name="vic")
    emc_dir = _emc_bpmp(root, emc_hz[-1], emc_hz[0])
    rails = _ina_hwmon(root, "/sys/devices/c250000.i2c/i2c-7", "7-0040", "hwmon5",
                       {"VDD_IN": 6.0, "VDD_CPU_GPU_CV": 2.0, "VDD_SOC": 1.5})
    zones = _zones(root, {"AO-therm": 40.0, "CPU-therm": 44.5, "GPU-therm": 43.0, "PLL-therm": 42.0,
                          "PMIC-Die": 100.0, "Tboard_tegra": 38.0, "Tdiode_tegra": 41.0, "thermal-fan-est": 43.5})
    return FakeBoard(root, "xavier-nx", policies, 6, gpu_dir, "/sys/devices/17000000.gv11b", emc_dir, "bpmp",
                     rails, zones)


def build_agx_orin(root: Path, *, gpu_userspace_only: bool = False) -> FakeBoard:
    """AGX Orin (t234), JetPack 6 / L4T 36.3: three 4-core clusters, GPU ``bus@0/17000000.gpu``, two INA3221.

    The L4T release comes from ``/var/lib/dpkg/status`` (no ``/etc/nv_tegra_release``); the rails have no input
    rail (board power is their sum); ``cv1-thermal`` reads −256 °C (offline).

    Args:
        gpu_userspace_only: the GPU devfreq has no ``min_freq`` / ``max_freq``, only ``userspace/set_freq``.
    """
    root = Path(root)
    cpu, gpu, emc_hz = _tables("agx-orin")
    _identity(root, "NVIDIA Jetson AGX Orin Developer Kit",
              ["nvidia,p3737-0000+p3701-0005", "nvidia,p3701-0005", "nvidia,tegra234"], None, "36.3.0-20240506102626")
    policies = _cpus(root, [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]], cpu, userspace=True, max_khz=None,
                     offline=())
    device = "/sys/devices/platform/bus@0/17000000.gpu"
    gpu_dir = _devfreq(root, device, "17000000.gpu", gpu, of_name="gpu", userspace_only=gpu_userspace_only, load=0)
    _devfreq(root, "/sys/devices/platform/bus@0/15380000.nvjpg", "15380000.nvjpg", [115200000, 729600000],
             of_name="nvjpg")
    emc_dir = _emc_bpmp(root, emc_hz[-1], emc_hz[0])
    i2c = "/sys/devices/platform/bus@0/c240000.i2c/i2c-1"
    rails = _ina_hwmon(root, i2c, "1-0040", "hwmon1", {"VDD_GPU_SOC": 4.0, "VDD_CPU_CV": 1.6, "VIN_SYS_5V0": 3.2})
    rails |= _ina_hwmon(root, i2c, "1-0041", "hwmon2", {"NC1": None, "VDDQ_VDD2_1V8AO": 0.8, "NC3": None})
    zones = _zones(root, {"cpu-thermal": 47.0, "gpu-thermal": 46.5, "cv0-thermal": 45.0, "cv1-thermal": -256.0,
                          "soc0-thermal": 45.5, "soc1-thermal": 45.0, "soc2-thermal": 44.0, "tj-thermal": 47.5})
    return FakeBoard(root, "agx-orin", policies, 12, gpu_dir, device, emc_dir, "bpmp", rails, zones)


BUILDERS = {"jetson-nano": build_nano, "xavier-nx": build_xavier_nx, "agx-orin": build_agx_orin}


# ---------------------------------------------------------------------------------------------- fake jtop


class FakeJtop:
    """A stand-in for a started ``jtop.jtop`` client with jetson-stats 7.x's data shapes, read from a FakeBoard.

    Power follows ``jtop/core/power.py``: ``{'rail': {name: {'type', 'volt' (mV), 'curr' (mA), 'warn', 'crit',
    'power' (mW), 'online', 'avg' (mW)}}, 'tot': {...}}`` where the input rail (``VIN``, ``POM_5V_IN``,
    ``VDD_IN``) moves from ``rail`` to ``tot`` with its ``name``, else ``tot = {'power', 'avg'}`` is the sum.
    Temperatures follow ``temperature.py`` (``{name: {'temp' (°C), 'online'}}``, the name cut at ``-`` or ``_``,
    PMIC skipped, −256 when offline); ``cpu``, ``gpu`` and ``memory['EMC']`` follow ``cpu.py``, ``gpu.py``
    and ``memory.py`` (frequencies in kHz).

    Args:
        board: the fake tree it reads.
        interval: the service interval it reports (s).
        power_mw: when given, ``tot['power']`` is this value (mW) instead of the rails'.
    """

    def __init__(self, board: FakeBoard, *, interval: float = 0.5, power_mw: float | None = None) -> None:
        self.board = board
        self._interval = interval
        self.power_mw = power_mw
        self.running = True
        self.started = False
        self.closed = False
        self.ok_calls = 0

    # -------------------------------------------------------------------------------------- client API

    def start(self) -> None:
        """Connect (nothing to do)."""
        self.started = True

    def close(self) -> None:
        """Disconnect."""
        self.closed = True
        self.running = False

    def ok(self, spin: bool = False) -> bool:
        """Whether the client runs (``spin=True``: without waiting for fresh data, as jtop)."""
        self.ok_calls += 1
        return self.running

    @property
    def interval(self) -> float:
        """Service interval (s)."""
        return self._interval

    def __enter__(self) -> FakeJtop:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -------------------------------------------------------------------------------------- data

    @property
    def power(self) -> dict[str, Any]:
        """``jetson.power``: rails and total (mV, mA, mW)."""
        b = self.board
        rails: dict[str, dict[str, Any]] = {}
        for name, rail in sorted(b.rails.items()):
            volt, curr = b.read_int(rail.volt), b.read_int(rail.curr)
            power = b.read_int(rail.power) if rail.power else int(volt * (float(curr) / 1000))
            values: dict[str, Any] = {"volt": volt, "curr": curr, "power": power}
            if rail.kind == "hwmon":
                values.update(warn=32760, crit=32760)
            else:
                values.update(warn=2000, crit=3000)
            values["online"] = True
            values["avg"] = power
            rails[name] = values
        total_name = next((n for n in ("VIN", "POM_5V_IN", "VDD_IN") if n in rails), "")
        if total_name:
            total = rails.pop(total_name)
            total["name"] = total_name
        else:
            total = {"power": sum(v["power"] for v in rails.values()), "avg": sum(v["avg"] for v in rails.values())}
        if self.power_mw is not None:
            total["power"] = total["avg"] = self.power_mw
        return {"rail": rails, "tot": total}

    @property
    def temperature(self) -> dict[str, dict[str, Any]]:
        """``jetson.temperature``: ``{name: {'temp' (°C), 'online'}}``."""
        out: dict[str, dict[str, Any]] = {}
        idx = 0
        for kind, temp_path in self.board.zones.items():
            name = kind.split("-")[0] if "-" in kind else kind.split("_")[0]
            if "PMIC" in name:
                continue
            if name in out:
                name, idx = f"{name}{idx}", idx + 1
            t = self.board.read_int(temp_path) / 1000.0
            out[name] = {"temp": t, "online": t != -256}
        return dict(sorted(out.items(), key=lambda kv: kv[0].lower()))

    @property
    def cpu(self) -> dict[str, Any]:
        """``jetson.cpu``: ``{'total': {...}, 'cpu': [{'online', 'governor', 'freq', 'info_freq', ...}]}`` (kHz)."""
        b = self.board
        cores = []
        for c in range(b.cores):
            online_file = b.path(f"/sys/devices/system/cpu/cpu{c}/online")
            online = not online_file.is_file() or online_file.read_text().strip() == "1"
            core: dict[str, Any] = {"online": online}
            if online:
                pol = next(p for p in b.policies if c in map(int, b.read(f"{p}/related_cpus").split()))
                core["governor"] = b.read(f"{pol}/scaling_governor")
                core["freq"] = {"min": b.read_int(f"{pol}/scaling_min_freq"),
                                "max": b.read_int(f"{pol}/scaling_max_freq"),
                                "cur": b.read_int(f"{pol}/scaling_cur_freq")}
                core["info_freq"] = {"min": b.read_int(f"{pol}/cpuinfo_min_freq"),
                                     "max": b.read_int(f"{pol}/cpuinfo_max_freq"),
                                     "cur": b.read_int(f"{pol}/cpuinfo_cur_freq")}
                core.update(user=10.0, nice=0.0, system=2.0, idle=88.0)
            core["model"] = ""
            cores.append(core)
        return {"total": {"user": 10.0, "nice": 0.0, "system": 2.0, "idle": 88.0}, "cpu": cores}

    @property
    def gpu(self) -> dict[str, Any]:
        """``jetson.gpu``: ``{name: {'type', 'status': {..., 'load' (%)}, 'freq': {'governor', 'cur', 'max',
        'min'} (kHz), 'power_control'}}``."""
        b = self.board
        name = b.read(f"{b.gpu_device}/of_node/name")
        freq: dict[str, Any] = {"governor": b.read(f"{b.gpu}/governor"), "cur": b.read_int(f"{b.gpu}/cur_freq") // 1000}
        if b.path(f"{b.gpu}/max_freq").is_file():
            freq["max"] = b.read_int(f"{b.gpu}/max_freq") // 1000
            freq["min"] = b.read_int(f"{b.gpu}/min_freq") // 1000
        status = {"railgate": b.read(f"{b.gpu_device}/railgate_enable") == "1", "3d_scaling": False,
                  "load": b.read_int(f"{b.gpu_device}/load") / 10.0}
        return {name: {"type": "integrated", "status": status, "freq": freq, "power_control": "auto"}}

    @property
    def memory(self) -> dict[str, Any]:
        """``jetson.memory``: RAM and SWAP (kB) and EMC (kHz) as jetson-stats reports them."""
        b = self.board
        emc: dict[str, Any] = {}
        if b.emc is not None:
            if b.emc_kind == "bpmp":
                emc = {"cur": b.read_int(f"{b.emc}/rate") // 1000, "max": b.read_int(f"{b.emc}/max_rate") // 1000,
                       "min": b.read_int(f"{b.emc}/min_rate") // 1000,
                       "override": b.read_int(f"{b.emc}/mrq_rate_locked") // 1000}
            else:
                emc = {"cur": b.read_int(f"{b.emc}/clk_rate") // 1000,
                       "override": b.read_int(f"{b.emc}/clk_state") // 1000}
            emc.update(val=0, online=True)
        return {
            "RAM": {"tot": 7999456, "used": 2100000, "free": 4000000, "buffers": 100000, "cached": 1800000,
                    "shared": 50000, "lfb": 512},
            "SWAP": {"tot": 3999724, "used": 0, "cached": 0, "table": {}},
            "EMC": emc,
        }
