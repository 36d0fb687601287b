"""The real Jetson backend: drives CPU, GPU and EMC clocks through sysfs, measures power and temperature.

:class:`JetsonBackend` satisfies :class:`~e4gym.hardware.backend.Backend` on a real board (L4T 32 to 36: Nano,
TX2, Xavier NX, AGX Xavier, Orin Nano / NX, AGX Orin). It finds what the board exposes
(:func:`~e4gym.hardware.jetson.layout.find_readers`, :func:`~e4gym.hardware.jetson.detect.detect_board`) rather
than assuming one layout, reads power through :mod:`e4gym.hardware.jetson.power` polled by the shared
:class:`~e4gym.hardware.monitor.PowerMonitor`, and restores what it changed on every exit path.

Governors (``governors=``): ``None`` drives every domain through :meth:`JetsonBackend.apply`; ``"default"``
leaves all three to the kernel (schedutil, nvhost_podgov, the EMC's own scaling): nothing is written, ``apply()``
only validates; a dict names the domains run by a governor (``{"cpu": "ondemand"}``), set through sysfs at open
and restored at close; the other domains stay driven by ``apply()``.

Safety: on open the backend takes the board's lock (:mod:`e4gym.hardware.lock`) and records every file it may
change (:class:`~e4gym.hardware.sysfs.Journal`, kept on disk beside the lock for ``e4gym restore``);
:meth:`JetsonBackend.close` (also on ``with`` exit, and through :mod:`e4gym.hardware.restore` at interpreter
exit and on SIGINT / SIGTERM before the previous handler runs) writes them back in reverse order. A failed
``apply()`` undoes its own writes. The thermal guard restores the board and raises :class:`ThermalLimitError`.
``read_only=True`` never writes; ``dry_run=True`` prints each write it would do.
"""

from __future__ import annotations

import math
import os
import threading
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from e4gym.dnn.work import Work
from e4gym.errors import ConfigError, E4gymError, HardwareError, SettingError, UnknownNameError
from e4gym.hardware.backend import Measurement, SensorReading, Setting
from e4gym.hardware.jetson.detect import detect_board
from e4gym.hardware.jetson.layout import CpuPolicy, find_cpu_policies, find_readers, parse_ints
from e4gym.hardware.jetson.paths import COMPATIBLE_FILES, CPU_DIR, MODEL_FILES
from e4gym.hardware.jetson.power import SHARED_RAILS, canonical_rail_names, open_power
from e4gym.hardware.lock import JOURNAL_FILE, BoardLock
from e4gym.hardware.monitor import PowerMonitor
from e4gym.hardware.restore import register, unregister
from e4gym.hardware.runner import WorkRunner
from e4gym.hardware.spec import DeviceSpec, available_devices, load_device
from e4gym.hardware.sysfs import ROOT_HINT, Journal, Sysfs, SysfsPermissionError, UndoFailedError, write_range

__all__ = ["PINNED_GOVERNORS", "PLAUSIBLE_TEMP_C", "THERMAL_CHECK_PERIOD_S", "JetsonBackend", "ThermalLimitError"]

#: Governors the backend can stand in for by pinning a domain when the kernel does not list them (the GPU's
#: devfreq has no ``powersave``; the EMC has no governor file): ``performance`` holds the cap, ``powersave`` the
#: lowest level, as those governors do.
PINNED_GOVERNORS = ("performance", "powersave")
#: Readings outside this range (°C) are treated as offline sensors (−256 °C marks an offline zone on Orin).
PLAUSIBLE_TEMP_C = (-40.0, 150.0)
#: How often the background sampler checks the thermal guard (s); temperature moves in seconds, not ms.
THERMAL_CHECK_PERIOD_S = 0.1


class ThermalLimitError(E4gymError, RuntimeError):
    """A thermal zone reached the backend's ``thermal_limit_c``: the board was restored and the backend closed."""


def _nearest(available: Sequence[int], target: float, cap: int | None = None) -> int:
    """The listed frequency nearest ``target``, not above ``cap`` (units as listed)."""
    allowed = [f for f in available if cap is None or f <= cap]
    if not allowed:
        return round(min(target, cap)) if cap is not None else round(target)
    return min(allowed, key=lambda f: (abs(f - target), f))


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
        # One owner per board (a backend that only reads, or only prints its writes, takes no lock).
        self._board_lock = None if (self.read_only or self.dry_run) else BoardLock(self.sysfs_root)
        try:
            # The journal's file (beside the lock, for `e4gym restore` after a SIGKILL) only for the lock's holder.
            journal_file = None if self._board_lock is None else self.sysfs_root / JOURNAL_FILE
            self._journal = Journal(self.io, journal_file)
            if self._journal.adopted is not None:
                warnings.warn(
                    f"process {self._journal.adopted.pid} ended without restoring the board (it left the restore "
                    f"journal {journal_file}, {len(self._journal.adopted.entries)} entries): the original values it "
                    "recorded are kept and restored when this backend closes", stacklevel=2,
                )
            self._lock = self._journal.lock
            self._closed = False
            self._tripped: str | None = None
            self._trip_event = threading.Event()
            self._pending_stall = 0.0
            self._warned_emc = False

            self.board = detect_board(self.sysfs_root)
            self.spec = self._resolve_spec(spec)
            self.layout = find_readers(self.io, self.spec)
            self._power = open_power(self.io, self.layout.rails, power_source, jtop_client, self.layout.notes)
            self._jtop = jtop_client if jtop_client is not None else getattr(self._power, "client", None)
            #: The board's labels of the rails every Measurement and SensorReading carries (``rails_w`` order).
            self.rail_labels: tuple[str, ...] = tuple(self._power.labels)
            #: The rails' names: canonical (``cpu``, ``gpu``, ``soc``) where a rail feeds one domain alone, the board's
            #: label otherwise (:func:`canonical_rail_names`).
            self.rail_names: tuple[str, ...] = canonical_rail_names(self.rail_labels)
            self._t0 = time.monotonic()
        except BaseException:
            self._release_board()
            raise
        self._restorer = register(self._shutdown, f"the Jetson board's clocks and governors ({self.sysfs_root})")
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
            "cpu": next((g for g in (io.read_opt(f / "scaling_governor") for f, _ in find_cpu_policies(io)) if g),
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
                                               for f, _ in find_cpu_policies(io)) if t]
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
        policies = find_cpu_policies(io)
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
            available = parse_ints(io.read_opt(folder / "scaling_available_frequencies")) or spec_khz
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

    def _sampler(self) -> PowerMonitor:
        guard = self._guard_background if self.thermal_limit_c is not None else None
        return PowerMonitor(self._power.read_all, self.sample_period_s, self._read_load, guard,
                            THERMAL_CHECK_PERIOD_S, name="e4gym-jetson-power")

    def _measurement(self, sampler: PowerMonitor, latency_s: float | None) -> Measurement:
        if self._tripped:
            raise ThermalLimitError(self._tripped)
        sampler.check()
        window = sampler.window_s
        energy = sampler.energy_j()
        avg = sampler.avg_power_w()
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
        unregister(self._restorer)
        self._release_board()
        power = getattr(self, "_power", None)
        if power is not None:
            power.close()
        return failures

    def _release_board(self) -> None:
        lock = getattr(self, "_board_lock", None)
        if lock is not None:
            lock.release()

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
