"""The emulated Jetson board: :class:`EmulatedBackend` (one board) and :class:`BatchedEmulator` (N boards).

Both look costs up in the analytic tables of :mod:`e4gym.hardware.model` and add what depends on state:

* **temperature**: first-order thermal model ``C·dT/dt = P − (T − T_amb)/R`` (time constant ``tau_s``,
  ``R`` for fan or passive cooling); leakage grows with temperature;
* **throttling**: at the device's trip temperature CPU and GPU clocks are capped at ``throttle_frac`` of
  their maximum until the board cools ``throttle_hysteresis_c`` below it;
* **DVFS transitions**: switching a domain stalls it (``transition_stall_s``) and the new clock takes effect
  only after the domain's delay (1 ms CPU, 5 ms GPU, 8 ms EMC, measured on Orin Nano; CALIBRATION.md §2):
  the first ``delay`` seconds of work still run at the old setting;
* **noise**: multiplicative, ``σ = noise_latency`` on latency and ``noise_power`` on power, drawn from a
  counter-based generator (splitmix64 of the board's key and a counter), so one board's numbers do not
  depend on how many boards are simulated beside it — the scalar and batched paths agree;
* **power monitor**: power polled every ``sensor_period_s`` and held between polls (INA3221 as read by a
  polling thread; Dutt et al. poll every 100 ms), so the measured energy differs from the true energy as on
  a board;
* **rails**: the monitor reports three rails, :data:`RAIL_NAMES` ``("cpu", "gpu", "soc")``: the CPU domain
  (its idle floor, its busy host thread, its leakage), the GPU domain (idle floor, compute, leakage) and the
  rest of the board (memory / EMC, static power). Each rail goes through the same sample-and-hold as the board
  power (the three are polled together), so ``Measurement.rails_w`` are the *measured* rails: they sum to
  ``measured_energy_j / latency_s`` (the monitor's average), not to the true ``avg_power_w``; the power noise
  multiplies every rail alike;
* **governors** (scalar backend): domains not in ``userspace`` are driven by the load-driven kernel
  governors of :mod:`e4gym.hardware.governors`.

The state update is :func:`_advance`, written once over an ``ops`` namespace (NumPy for many boards);
:func:`_advance_scalar` is the same update in plain Python for one board (an env step must stay cheap). A
test holds the two paths together: N scalar boards equal the batched boards to 1e-9.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from e4gym.errors import ConfigError, SettingError, UnknownNameError
from e4gym.hardware.backend import Cooling, Measurement, SensorReading, Setting
from e4gym.hardware.governors import GOVERNORS
from e4gym.hardware.model import (
    CostTable,
    PowerTable,
    cost_table,
    dynamic_power_per_activity,
    leakage_power_ref,
    power_table,
)
from e4gym.hardware.spec import CPU_GOVERNORS, EMC_GOVERNORS, GPU_GOVERNORS, DeviceSpec, load_device
from e4gym.hardware.work import Work

_M64 = (1 << 64) - 1
_TWO_PI = 2.0 * math.pi
_NOISE_CLIP = 3.0
_NOISE_BLOCK = 256  # noise draws generated at a time by the scalar backend
_IDLE_CHUNK_OF_TAU = 0.05  # idle periods longer than this fraction of the thermal time constant are split

#: The emulated power monitor's rails (``Measurement.rails_w`` order): the CPU domain, the GPU domain, and the
#: rest of the board (memory / EMC and static power).
RAIL_NAMES: tuple[str, ...] = ("cpu", "gpu", "soc")


# ------------------------------------------------------------------------------------------ generic ops


class _ScalarOps:
    exp = staticmethod(math.exp)
    floor = staticmethod(math.floor)
    minimum = staticmethod(min)
    maximum = staticmethod(max)

    @staticmethod
    def where(cond, a, b):
        return a if cond else b


class _ArrayOps:
    exp = staticmethod(np.exp)
    floor = staticmethod(np.floor)
    minimum = staticmethod(np.minimum)
    maximum = staticmethod(np.maximum)
    where = staticmethod(np.where)


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


def _splitmix64_np(x: np.ndarray) -> np.ndarray:
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _normals_np(keys: np.ndarray, counters: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two clipped standard normals per board from ``(key, counter)`` by Box–Muller (counter-based)."""
    with np.errstate(over="ignore"):
        base = keys + np.uint64(2) * counters.astype(np.uint64)
        u1 = ((_splitmix64_np(base) >> np.uint64(11)).astype(np.float64) + 1.0) * 2.0**-53
        u2 = (_splitmix64_np(base + np.uint64(1)) >> np.uint64(11)).astype(np.float64) * 2.0**-53
    r = np.sqrt(-2.0 * np.log(u1))
    cos = np.cos(_TWO_PI * u2)
    # sin(2πu) from the cosine: its sign is + for u < 1/2 (cheaper than a second transcendental).
    sin = np.sqrt(np.maximum(0.0, 1.0 - cos * cos))
    z1, z2 = r * cos, np.where(u2 < 0.5, r * sin, -(r * sin))
    return np.clip(z1, -_NOISE_CLIP, _NOISE_CLIP), np.clip(z2, -_NOISE_CLIP, _NOISE_CLIP)


def seed_to_key(seed: int | None) -> int:
    """Map a seed (or ``None`` for entropy from the OS) to a 64-bit noise key."""
    if seed is None:
        seed = int(np.random.SeedSequence().entropy) & _M64
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer or None, got {seed!r}")
    return _splitmix64(int(seed) & _M64)


# ------------------------------------------------------------------------------------------ shared state update


@dataclass
class _Consts:
    """Per-board constants the state update needs (floats; broadcast against array state)."""

    ambient_c: float
    r_th: float
    tau_s: float
    trip_c: float
    release_c: float
    leak_k: float
    temp_ref_c: float
    sensor_period_s: float
    noise_latency: float
    noise_power: float


def _advance(ops, c: _Consts, st, duration_s, power_w):
    """Advance time, temperature, throttling and the power monitor over one constant-power segment.

    Returns the energy the power monitor attributes to the segment (J).
    """
    t0 = st.time_s
    t1 = t0 + duration_s
    # Power monitor: sample-and-hold at fixed polling instants.
    sampled = st.sensor_next_s <= t1
    measured = ops.where(
        sampled,
        st.sensor_held_w * (st.sensor_next_s - t0) + power_w * (t1 - st.sensor_next_s),
        st.sensor_held_w * duration_s,
    )
    polls = ops.floor((t1 - st.sensor_next_s) / c.sensor_period_s) + 1.0
    st.sensor_next_s = ops.where(sampled, st.sensor_next_s + c.sensor_period_s * polls, st.sensor_next_s)
    st.sensor_held_w = ops.where(sampled, power_w, st.sensor_held_w)
    # First-order thermal model, exact for constant power over the segment.
    t_ss = c.ambient_c + power_w * c.r_th
    # (A zero-length segment leaves the temperature bit for bit unchanged.)
    st.temp_c = ops.where(duration_s > 0, t_ss + (st.temp_c - t_ss) * ops.exp(-duration_s / c.tau_s), st.temp_c)
    st.throttled = ops.where(
        st.temp_c >= c.trip_c, True, ops.where(st.temp_c < c.release_c, False, st.throttled)
    )
    st.time_s = t1
    return measured


def _advance_scalar(c: _Consts, st, duration_s: float, power_w: float) -> float:
    """:func:`_advance` for one board, without the ``ops`` indirection (same arithmetic, same order)."""
    t0 = st.time_s
    t1 = t0 + duration_s
    nxt = st.sensor_next_s
    if nxt <= t1:
        measured = st.sensor_held_w * (nxt - t0) + power_w * (t1 - nxt)
        st.sensor_next_s = nxt + c.sensor_period_s * (math.floor((t1 - nxt) / c.sensor_period_s) + 1.0)
        st.sensor_held_w = power_w
    else:
        measured = st.sensor_held_w * duration_s
    if duration_s > 0:
        t_ss = c.ambient_c + power_w * c.r_th
        temp = st.temp_c = t_ss + (st.temp_c - t_ss) * math.exp(-duration_s / c.tau_s)
        if temp >= c.trip_c:
            st.throttled = True
        elif temp < c.release_c:
            st.throttled = False
    st.time_s = t1
    return measured


def _leak_scale(ops, c: _Consts, temp_c):
    return ops.exp(c.leak_k * (temp_c - c.temp_ref_c))


@dataclass(frozen=True)
class _RailPower:
    """The CPU and GPU rails' share of a :class:`PowerTable`, flat over ``(cpu, gpu, emc)`` levels (W).

    ``cpu_idle_w`` / ``gpu_idle_w``: the domains' clocked-but-idle dynamic power; ``cpu_leak_ref_w`` /
    ``gpu_leak_ref_w``: their leakage at ``temp_ref_c``. The "soc" rail is the rest of the board power.
    """

    cpu_idle_w: np.ndarray
    cpu_leak_ref_w: np.ndarray
    gpu_idle_w: np.ndarray
    gpu_leak_ref_w: np.ndarray


def _rail_power(spec: DeviceSpec, cpu_online: int) -> _RailPower:
    """The per-domain terms :func:`~e4gym.hardware.model.power_table` sums (same formulas)."""
    m, shape = spec.model, spec.n_levels
    online = cpu_online / spec.cpu_cores
    fc, fg = np.asarray(spec.cpu_freqs_hz, dtype=float), np.asarray(spec.gpu_freqs_hz, dtype=float)

    def flat(a: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(np.broadcast_to(a, shape)).ravel()

    return _RailPower(
        cpu_idle_w=flat((dynamic_power_per_activity(fc, m.cpu) * m.cpu.idle_activity * online)[:, None, None]),
        cpu_leak_ref_w=flat((leakage_power_ref(fc, m.cpu) * online)[:, None, None]),
        gpu_idle_w=flat((dynamic_power_per_activity(fg, m.gpu) * m.gpu.idle_activity)[None, :, None]),
        gpu_leak_ref_w=flat(leakage_power_ref(fg, m.gpu)[None, :, None]),
    )


def _rail_busy(spec: DeviceSpec, power: PowerTable, table: CostTable) -> tuple[np.ndarray, np.ndarray]:
    """The CPU and GPU shares of ``table.busy_dyn_j`` (J): the busy host thread, and the GPU's compute."""
    cpu = power.dyn_active_cpu_w * table.latency_s
    gpu = power.gpu_dyn_w * (1.0 - spec.model.gpu.idle_activity) * table.t_gpu_s
    return cpu, gpu


# ------------------------------------------------------------------------------------------ the scalar backend


class _State:
    """Mutable state of one emulated board (attributes are Python scalars)."""

    __slots__ = (
        "counter",
        "eff",
        "pending_idx",
        "pending_s",
        "requested",
        "sensor_held_w",
        "sensor_next_s",
        "sensor_rails",
        "temp_c",
        "throttled",
        "time_s",
        "win_busy_cpu",
        "win_busy_gpu",
        "win_elapsed",
    )


def _validate_governors(spec: DeviceSpec, governors: dict[str, str] | None) -> dict[str, str]:
    chosen = {"cpu": "userspace", "gpu": "userspace", "emc": "userspace"}
    if governors == "default":
        governors = dict(spec.governors)
    for dom, name in (governors or {}).items():
        allowed = {"cpu": CPU_GOVERNORS, "gpu": GPU_GOVERNORS, "emc": EMC_GOVERNORS}.get(dom)
        if allowed is None:
            raise UnknownNameError(f"unknown clock domain '{dom}' in governors; domains: ['cpu', 'gpu', 'emc']")
        if name not in allowed:
            raise UnknownNameError(f"unknown {dom} governor '{name}'; {dom} governors: {list(allowed)}")
        chosen[dom] = name
    return chosen


class EmulatedBackend:
    """One emulated Jetson board (the default backend; needs no hardware).

    Args:
        device: a :class:`DeviceSpec` or a device name (``"xavier-nx"``) or YAML path.
        seed: seeds the measurement noise and the power monitor's phase (same seed ⇒ same numbers).
        power_mode: nvpmodel mode name (default: the device's default mode).
        cooling: fan or passive and the ambient temperature (default: the device's defaults).
        governors: per domain governor, e.g. ``{"cpu": "schedutil", "gpu": "nvhost_podgov"}``, or
            ``"default"`` for the device's shipped governors. Domains not named stay ``userspace``:
            clocks only change through :meth:`apply`.
        initial_temp_c: starting temperature (default: ambient).

    The board starts at the highest allowed levels of its power mode. Time starts at 0 s. Its power monitor
    reports the rails :attr:`rail_names` = ``("cpu", "gpu", "soc")`` (module docstring, "rails").

    Example:
        >>> from e4gym.dnn import load_model_profile
        >>> with EmulatedBackend("xavier-nx", seed=0) as board:
        ...     m = board.run(load_model_profile("efficientnet_b0").frame_work())
    """

    def __init__(
        self,
        device: DeviceSpec | str,
        *,
        seed: int | None = None,
        power_mode: str | None = None,
        cooling: Cooling | None = None,
        governors: dict[str, str] | str | None = None,
        initial_temp_c: float | None = None,
        measured: Any = None,
    ) -> None:
        self.spec = load_device(device) if not isinstance(device, DeviceSpec) else device
        spec = self.spec
        #: A :class:`~e4gym.hardware.measured.MeasuredProfile` replacing the analytic cost of its model's works.
        self.measured = measured
        if measured is not None and measured.device != spec.name:
            raise ConfigError(f"the measured profile is of {measured.device}, not {spec.name}")
        self.mode = spec.power_mode(power_mode)
        self.cooling = cooling or Cooling(fan=spec.thermal.fan, ambient_c=spec.thermal.ambient_c)
        self.governors = _validate_governors(spec, governors)  # type: ignore[arg-type]
        self._consts = _consts(spec, self.cooling)
        self.power: PowerTable = power_table(spec, self.mode.cpu_online)
        self._leak = self.power.leak_ref_w.tolist()
        self._idle = self.power.idle_dyn_w.tolist()
        rails = _rail_power(spec, self.mode.cpu_online)
        #: Rails of the power monitor, in ``Measurement.rails_w`` order.
        self.rail_names: tuple[str, ...] = RAIL_NAMES
        # Per setting: (cpu idle, cpu leak at T_ref, gpu idle, gpu leak at T_ref) (W), one lookup per step.
        self._rail_floor = list(zip(rails.cpu_idle_w.tolist(), rails.cpu_leak_ref_w.tolist(),
                                    rails.gpu_idle_w.tolist(), rails.gpu_leak_ref_w.tolist()))
        self._tables: dict[tuple[str, int], tuple[CostTable, list, list, list, list, list]] = {}
        self.max_levels = spec.max_levels(power_mode)
        self._throttle_caps = _throttle_caps(spec, self.max_levels)
        self._ng, self._ne = spec.n_gpu, spec.n_emc
        self._n_levels = spec.n_levels
        self._static_w = self.power.static_w
        self._freq_tables = (spec.cpu_freqs_hz, spec.gpu_freqs_hz, spec.emc_freqs_hz)
        self._last_lists: tuple = (None, None, None)
        self._last_req: tuple[int, int, int] | None = None
        self._last_eff: tuple[int, int, int] = (0, 0, 0)
        self._userspace = all(v == "userspace" for v in self.governors.values())
        self._initial_temp_c = self.cooling.ambient_c if initial_temp_c is None else float(initial_temp_c)
        self._closed = False
        self.reset(seed)

    # -------------------------------------------------------------------------------------- lifecycle

    def reset(self, seed: int | None = None, *, initial_temp_c: float | None = None) -> None:
        """Return the board to its initial state (time 0, ambient temperature, top levels), reseeded."""
        self._key = seed_to_key(seed)
        st = _State()
        st.time_s = 0.0
        st.temp_c = self._initial_temp_c if initial_temp_c is None else float(initial_temp_c)
        st.throttled = False
        st.requested = self.max_levels
        st.eff = self.max_levels
        st.pending_s = 0.0
        st.pending_idx = self._flat(st.eff)
        # The monitor's first poll falls at a seeded phase within one period.
        st.sensor_next_s = ((self._key >> 11) * 2.0**-53) * self.spec.model.sensor_period_s
        idx = self._flat(st.eff)
        st.sensor_held_w = self._idle_power(idx, st.temp_c)
        cpu_w, gpu_w = self._idle_rails(idx, st.temp_c)
        st.sensor_rails = (cpu_w, gpu_w, st.sensor_held_w - cpu_w - gpu_w)
        st.counter = 0
        st.win_elapsed = st.win_busy_cpu = st.win_busy_gpu = 0.0
        self._st = st
        self._nz_lat: list[float] = []
        self._nz_pow: list[float] = []
        self._nz_base = 0

    def close(self) -> None:
        """Nothing to restore on an emulated board; further calls raise."""
        self._closed = True

    def __enter__(self) -> EmulatedBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -------------------------------------------------------------------------------------- helpers

    def _flat(self, levels: tuple[int, int, int]) -> int:
        return (levels[0] * self._ng + levels[1]) * self._ne + levels[2]

    def _idle_power(self, idx: int, temp_c: float) -> float:
        return self.power.static_w + self._idle[idx] + self._leak[idx] * _leak_scale(_ScalarOps, self._consts, temp_c)

    def _idle_rails(self, idx: int, temp_c: float) -> tuple[float, float]:
        """The CPU and GPU rails' share of :meth:`_idle_power` (W)."""
        scale = _leak_scale(_ScalarOps, self._consts, temp_c)
        ci, cl, gi, gl = self._rail_floor[idx]
        return ci + cl * scale, gi + gl * scale

    def table(self, work: Work, batch: int = 1) -> CostTable:
        """The :class:`CostTable` of ``work`` at ``batch`` on this board (cached by ``work.key``)."""
        return self._lists(work, batch)[0]

    def _lists(self, work: Work, batch: int) -> tuple[CostTable, list, list, list, list, list]:
        last = self._last_lists
        if last[0] is work and last[1] == batch:
            return last[2]
        hit = self._lists_by_key(work, batch)
        self._last_lists = (work, batch, hit)
        return hit

    def _lists_by_key(self, work: Work, batch: int) -> tuple[CostTable, list, list, list, list, list]:
        key = (work.key, batch)
        hit = self._tables.get(key)
        if hit is None:
            if not isinstance(batch, (int, np.integer)) or batch < 1:
                raise ConfigError(f"batch must be an integer >= 1, got {batch!r}")
            t, cpu_dyn, gpu_dyn = self._cost(work, int(batch))
            hit = (t, t.latency_s.tolist(), t.busy_dyn_j.tolist(), t.gpu_busy_s.tolist(), cpu_dyn.tolist(),
                   gpu_dyn.tolist())
            self._tables[key] = hit
        return hit

    def _cost(self, work: Work, batch: int) -> tuple[CostTable, np.ndarray, np.ndarray]:
        """The analytic cost table of ``work``, scaled by the measured profile when one covers its model, and
        the CPU and GPU rails' shares of its ``busy_dyn_j`` (J)."""
        t = cost_table(self.spec, work, self.power, batch)
        cpu_dyn, gpu_dyn = _rail_busy(self.spec, self.power, t)
        if self.measured is None:
            return t, cpu_dyn, gpu_dyn
        from e4gym.hardware.measured import correction

        ratio = correction(self.spec, self.measured, self.power, work.key)
        if ratio is None:
            return t, cpu_dyn, gpu_dyn
        r_lat, r_dyn = ratio
        t = dataclasses.replace(t, latency_s=t.latency_s * r_lat, busy_dyn_j=t.busy_dyn_j * r_dyn,
                                gpu_busy_s=np.minimum(t.gpu_busy_s * r_lat, t.latency_s * r_lat))
        return t, cpu_dyn * r_dyn, gpu_dyn * r_dyn

    def _effective(self) -> tuple[int, int, int]:
        st = self._st
        r = st.requested
        if not st.throttled:
            if r == self._last_req:  # the common case: the same request as before, already capped
                return self._last_eff
            caps = self.max_levels
        else:
            caps = self._throttle_caps
        eff = (min(r[0], caps[0]), min(r[1], caps[1]), min(r[2], caps[2]))
        if not st.throttled:
            self._last_req, self._last_eff = r, eff
        return eff

    def _settle(self) -> float:
        """Apply pending level changes (requests, throttling); returns the stall time (s)."""
        st, m = self._st, self.spec.model
        eff = self._effective()
        if eff == st.eff:
            return 0.0
        now, d = st.eff, m.transition_delay_s
        delay, n = 0.0, 0
        if eff[0] != now[0]:
            delay, n = d[0], 1
        if eff[1] != now[1]:
            delay, n = max(delay, d[1]), n + 1
        if eff[2] != now[2]:
            delay, n = max(delay, d[2]), n + 1
        if st.pending_s <= 0.0:
            st.pending_idx = self._flat(now)
        st.pending_s = max(st.pending_s, delay)
        st.eff = eff
        return m.transition_stall_s * n

    def _check_open(self) -> None:
        if self._closed:
            raise SettingError("this EmulatedBackend is closed; create a new one")

    # -------------------------------------------------------------------------------------- Backend API

    @property
    def levels(self) -> tuple[int, int, int]:
        """Current effective levels ``(cpu, gpu, emc)`` (after caps and throttling)."""
        return self._st.eff

    @property
    def time_s(self) -> float:
        """Simulated time since the last reset (s)."""
        return self._st.time_s

    @property
    def temp_c(self) -> float:
        """Current temperature (°C)."""
        return self._st.temp_c

    def apply(self, setting: Setting | tuple[int, int, int]) -> float:
        """Request levels ``(cpu, gpu, emc)``; levels above the power mode's caps are clamped to them.

        Domains driven by a kernel governor ignore the request. Returns the stall the switch will cost
        (s), charged to the next segment.

        Raises:
            SettingError: a level index is outside the device's tables.
        """
        if self._closed:
            self._check_open()
        c, g, e = setting.as_tuple() if isinstance(setting, Setting) else setting
        nc, ng, ne = self._n_levels
        if not (type(c) is int and type(g) is int and type(e) is int and 0 <= c < nc and 0 <= g < ng and 0 <= e < ne):
            self.spec.check_levels(c, g, e)  # raises for anything out of range
            c, g, e = int(c), int(g), int(e)
        st = self._st
        if self._userspace:
            st.requested = (c, g, e)
        else:
            cur, gov = st.requested, self.governors
            st.requested = (
                c if gov["cpu"] == "userspace" else cur[0],
                g if gov["gpu"] == "userspace" else cur[1],
                e if gov["emc"] == "userspace" else cur[2],
            )
        eff, now = self._effective(), st.eff
        return self.spec.model.transition_stall_s * ((eff[0] != now[0]) + (eff[1] != now[1]) + (eff[2] != now[2]))

    def _noise(self) -> tuple[float, float]:
        """The next pair of standard normals of this board's counter-based stream (latency, power).

        Drawn in blocks with the batched emulator's vectorised generator, so one board's noise is bit for bit
        the batched emulator's for the same seed.
        """
        st = self._st
        i = st.counter - self._nz_base
        if i >= len(self._nz_lat) or i < 0:
            counters = np.arange(st.counter, st.counter + _NOISE_BLOCK, dtype=np.int64)
            z1, z2 = _normals_np(np.full(_NOISE_BLOCK, self._key, dtype=np.uint64), counters)
            self._nz_lat, self._nz_pow, self._nz_base = z1.tolist(), z2.tolist(), st.counter
            i = 0
        st.counter += 1
        return self._nz_lat[i], self._nz_pow[i]

    def run(self, work: Work, batch: int = 1) -> Measurement:
        """Run ``work`` (``batch`` inferences back to back in one launch) at the current clocks."""
        if self._closed:
            self._check_open()
        st, c = self._st, self._consts
        last = self._last_lists
        hit = last[2] if last[0] is work and last[1] == batch else self._lists(work, batch)
        _, lat_t, dyn_t, gbusy_t, cdyn_t, gdyn_t = hit
        stall = self._settle()
        eff = st.eff
        idx = (eff[0] * self._ng + eff[1]) * self._ne + eff[2]
        lat, dyn, gbusy = lat_t[idx], dyn_t[idx], gbusy_t[idx]
        extra = x = 0.0
        old = idx
        if st.pending_s > 0.0:
            old = st.pending_idx
            lat_old = lat_t[old]
            x = min(st.pending_s / lat_old, 1.0)
            blended = x * lat_old + (1.0 - x) * lat
            extra = blended - lat
            dyn = x * dyn_t[old] + (1.0 - x) * dyn
            gbusy = x * gbusy_t[old] + (1.0 - x) * gbusy
            st.pending_s = max(0.0, st.pending_s - blended)
            lat = blended
        z_lat, z_pow = self._noise()
        f_lat = 1.0 + c.noise_latency * z_lat
        f_pow = 1.0 + c.noise_power * z_pow
        scale = math.exp(c.leak_k * (st.temp_c - c.temp_ref_c))
        p_floor = self._static_w + self._idle[idx] + self._leak[idx] * scale
        power = (p_floor + dyn / lat) * f_pow
        run_lat, lat = lat, lat * f_lat
        # The stall runs at the idle floor before the work starts.
        total = lat + stall
        energy = power * lat + p_floor * stall
        avg_power = energy / total
        # _advance_scalar(c, st, total, avg_power), inlined (this is the hot path), with the rails' monitor.
        t0 = st.time_s
        t1 = t0 + total
        poll = st.sensor_next_s
        rails = st.sensor_rails
        if poll <= t1:  # the monitor polled during the run: it reads the run's power and rails from then on
            measured = st.sensor_held_w * (poll - t0) + avg_power * (t1 - poll)
            st.sensor_next_s = poll + c.sensor_period_s * (math.floor((t1 - poll) / c.sensor_period_s) + 1.0)
            st.sensor_held_w = avg_power
            cdyn, gdyn = cdyn_t[idx], gdyn_t[idx]
            if x > 0.0:
                cdyn = x * cdyn_t[old] + (1.0 - x) * cdyn
                gdyn = x * gdyn_t[old] + (1.0 - x) * gdyn
            ci, cl, gi, gl = self._rail_floor[idx]
            # Each rail as the board power: ((floor + busy / run_lat) * f_pow * lat + floor * stall) / total.
            if stall:
                k_busy = f_pow * lat / total
                k_floor = k_busy + stall / total
                k_busy /= run_lat
            else:
                k_floor, k_busy = f_pow, f_pow / run_lat
            cpu_w = (ci + cl * scale) * k_floor + cdyn * k_busy
            gpu_w = (gi + gl * scale) * k_floor + gdyn * k_busy
            st.sensor_rails = (cpu_w, gpu_w, avg_power - cpu_w - gpu_w)
            fresh = (t1 - poll) / total  # the share of the run after the poll
            cpu_m = rails[0] + (cpu_w - rails[0]) * fresh
            gpu_m = rails[1] + (gpu_w - rails[1]) * fresh
            rails = (cpu_m, gpu_m, measured / total - cpu_m - gpu_m)
        else:
            measured = st.sensor_held_w * total
        if total > 0:
            t_ss = c.ambient_c + avg_power * c.r_th
            temp = st.temp_c = t_ss + (st.temp_c - t_ss) * math.exp(-total / c.tau_s)
            if temp >= c.trip_c:
                st.throttled = True
            elif temp < c.release_c:
                st.throttled = False
        st.time_s = t1
        if not self._userspace:
            self._govern(total, total, gbusy * f_lat)
        eff, f = st.eff, self._freq_tables
        gpu_util = gbusy * f_lat / total
        return Measurement(
            total, energy, measured, avg_power, st.temp_c, f[0][eff[0]], f[1][eff[1]], f[2][eff[2]], st.throttled,
            stall + extra * f_lat, gpu_util if gpu_util < 1.0 else 1.0, st.time_s, rails,
        )

    def idle(self, duration_s: float) -> Measurement:
        """Stay idle for ``duration_s`` (s) at the current clocks (e.g. waiting for the next frame)."""
        self._check_open()
        if not duration_s >= 0.0 or not math.isfinite(duration_s):
            raise SettingError(f"idle duration must be a finite number of seconds >= 0, got {duration_s!r}")
        st, c = self._st, self._consts
        stall = self._settle()
        st.pending_s = max(0.0, st.pending_s - duration_s)
        idx = self._flat(st.eff)
        # Long idle periods are split so that leakage follows the falling temperature.
        chunks = max(1, math.ceil(duration_s / (c.tau_s * _IDLE_CHUNK_OF_TAU)))
        step = duration_s / chunks
        energy = measured = 0.0
        static, idle_w, leak_w = self._static_w, self._idle[idx], self._leak[idx]
        # Rail energies (J) the monitor attributes to the idle period, and the time (s) the current reading is
        # held for that they do not include yet; without a poll the rails read the held values throughout.
        e_cpu = e_gpu = e_soc = hold_s = 0.0
        polled = False
        for _ in range(chunks):
            scale = math.exp(c.leak_k * (st.temp_c - c.temp_ref_c))
            power = static + idle_w + leak_w * scale
            energy += power * step
            t0, poll = st.time_s, st.sensor_next_s
            measured += _advance_scalar(c, st, step, power)
            if poll <= t0 + step:
                ci, cl, gi, gl = self._rail_floor[idx]
                cpu_w, gpu_w = ci + cl * scale, gi + gl * scale
                h, fresh = st.sensor_rails, t0 + step - poll
                held = hold_s + (poll - t0)
                e_cpu += h[0] * held + cpu_w * fresh
                e_gpu += h[1] * held + gpu_w * fresh
                e_soc += h[2] * held + (power - cpu_w - gpu_w) * fresh
                st.sensor_rails = (cpu_w, gpu_w, power - cpu_w - gpu_w)
                hold_s, polled = 0.0, True
            else:
                hold_s += step
        if chunks > 1:
            power = energy / duration_s
        elif duration_s <= 0:
            power = self._idle_power(idx, st.temp_c)
        rails = st.sensor_rails
        if polled:
            e_cpu, e_gpu, e_soc = e_cpu + rails[0] * hold_s, e_gpu + rails[1] * hold_s, e_soc + rails[2] * hold_s
            rails = (e_cpu / duration_s, e_gpu / duration_s, e_soc / duration_s)
        if not self._userspace:
            self._govern(duration_s, 0.0, 0.0)
        return self._measurement(duration_s, energy, measured, power, stall, 0.0, rails)

    def _measurement(self, latency_s: float, energy_j: float, measured_j: float, power_w: float,
                     transition_s: float, gpu_util: float, rails_w: tuple[float, ...]) -> Measurement:
        st, spec = self._st, self.spec
        return Measurement(
            latency_s, energy_j, measured_j, power_w, st.temp_c, spec.cpu_freqs_hz[st.eff[0]],
            spec.gpu_freqs_hz[st.eff[1]], spec.emc_freqs_hz[st.eff[2]], st.throttled, transition_s, gpu_util,
            st.time_s, rails_w,
        )

    def read_sensors(self) -> SensorReading:
        """The power monitor's latest reading (board and rails), the temperature and the clocks now."""
        st = self._st
        return SensorReading(
            power_w=st.sensor_held_w,
            temp_c=st.temp_c,
            cpu_hz=self.spec.cpu_freqs_hz[st.eff[0]],
            gpu_hz=self.spec.gpu_freqs_hz[st.eff[1]],
            emc_hz=self.spec.emc_freqs_hz[st.eff[2]],
            throttled=st.throttled,
            time_s=st.time_s,
            rails_w=st.sensor_rails,
        )

    # -------------------------------------------------------------------------------------- governors

    def _govern(self, elapsed: float, busy_cpu: float, busy_gpu: float) -> None:
        if self._userspace:
            return
        gov = self.governors
        st = self._st
        st.win_elapsed += elapsed
        st.win_busy_cpu += busy_cpu
        st.win_busy_gpu += busy_gpu
        if st.win_elapsed < self.spec.model.governor_period_s:
            return
        loads = (st.win_busy_cpu / st.win_elapsed, st.win_busy_gpu / st.win_elapsed, 1.0)
        tables = (self.spec.cpu_freqs_hz, self.spec.gpu_freqs_hz, self.spec.emc_freqs_hz)
        req = list(st.requested)
        for d, dom in enumerate(("cpu", "gpu", "emc")):
            if gov[dom] != "userspace":
                req[d] = GOVERNORS[gov[dom]](st.eff[d], min(loads[d], 1.0), tables[d], self.max_levels[d])
        st.requested = (req[0], req[1], req[2])
        st.win_elapsed = st.win_busy_cpu = st.win_busy_gpu = 0.0


def _cap(table: tuple[float, ...], frac: float) -> int:
    limit = frac * table[-1]
    allowed = [i for i, f in enumerate(table) if f <= limit * (1 + 1e-9)]
    return allowed[-1] if allowed else 0


def _throttle_caps(spec: DeviceSpec, max_levels: tuple[int, int, int]) -> tuple[int, int, int]:
    frac = spec.model.throttle_frac
    return (
        min(max_levels[0], _cap(spec.cpu_freqs_hz, frac)),
        min(max_levels[1], _cap(spec.gpu_freqs_hz, frac)),
        max_levels[2],
    )


def _consts(spec: DeviceSpec, cooling: Cooling) -> _Consts:
    m = spec.model
    return _Consts(
        ambient_c=cooling.ambient_c,
        r_th=m.r_th_fan_c_per_w if cooling.fan else m.r_th_passive_c_per_w,
        tau_s=m.tau_s,
        trip_c=spec.thermal.throttle_c,
        release_c=spec.thermal.throttle_c - m.throttle_hysteresis_c,
        leak_k=m.leak_temp_coeff_per_c,
        temp_ref_c=m.temp_ref_c,
        sensor_period_s=m.sensor_period_s,
        noise_latency=m.noise_latency,
        noise_power=m.noise_power,
    )


# ------------------------------------------------------------------------------------------ the batched emulator


@dataclass
class MeasurementBatch:
    """:class:`~e4gym.hardware.backend.Measurement` for N boards: every field an array of shape ``(N,)``, but
    ``rails_w``, of shape ``(N, len(RAIL_NAMES))`` (the measured ``cpu``, ``gpu`` and ``soc`` rails, W; a
    transposed view of a rail-major array)."""

    latency_s: np.ndarray
    energy_j: np.ndarray
    measured_energy_j: np.ndarray
    avg_power_w: np.ndarray
    temp_c: np.ndarray
    cpu_hz: np.ndarray
    gpu_hz: np.ndarray
    emc_hz: np.ndarray
    throttled: np.ndarray
    transition_s: np.ndarray
    gpu_util: np.ndarray
    time_s: np.ndarray
    rails_w: np.ndarray


class _ArrayState:
    pass


class BatchedEmulator:
    """N independent emulated boards of one device, stepped together in NumPy.

    Board ``i`` with seed ``s`` produces the same numbers as ``EmulatedBackend(device, seed=s)`` given the
    same calls (up to floating-point rounding of the vectorised math), whatever N is. Clocks are set by the
    caller only (all domains ``userspace``); use :class:`EmulatedBackend` to emulate kernel governors.

    Args:
        device: a :class:`DeviceSpec` or a device name.
        seeds: one seed per board (its length is N).
        power_mode / cooling / initial_temp_c: as for :class:`EmulatedBackend`.
    """

    def __init__(
        self,
        device: DeviceSpec | str,
        seeds: list[int] | np.ndarray,
        *,
        power_mode: str | None = None,
        cooling: Cooling | None = None,
        initial_temp_c: float | None = None,
    ) -> None:
        self.spec = load_device(device) if not isinstance(device, DeviceSpec) else device
        spec = self.spec
        self.n = len(seeds)
        if self.n < 1:
            raise ConfigError("BatchedEmulator needs at least one seed (one board)")
        self.mode = spec.power_mode(power_mode)
        self.cooling = cooling or Cooling(fan=spec.thermal.fan, ambient_c=spec.thermal.ambient_c)
        self._consts = _consts(spec, self.cooling)
        self.power = power_table(spec, self.mode.cpu_online)
        r = _rail_power(spec, self.mode.cpu_online)
        pt = self.power
        # Per setting, the rails' idle floor and their leakage at T_ref (W), rows cpu, gpu, soc (the rest). Rail
        # arrays are rail-major, (3, ...): NumPy is several times faster on their contiguous rows than on (N, 3).
        self._rail_idle = np.stack((r.cpu_idle_w, r.gpu_idle_w,
                                    pt.static_w + pt.idle_dyn_w - r.cpu_idle_w - r.gpu_idle_w))
        self._rail_leak = np.stack((r.cpu_leak_ref_w, r.gpu_leak_ref_w,
                                    pt.leak_ref_w - r.cpu_leak_ref_w - r.gpu_leak_ref_w))
        #: Rails of the power monitor, in ``MeasurementBatch.rails_w`` column order.
        self.rail_names: tuple[str, ...] = RAIL_NAMES
        self.max_levels = spec.max_levels(power_mode)
        self._max = np.asarray(self.max_levels, dtype=np.int64)
        self._thr = np.asarray(_throttle_caps(spec, self.max_levels), dtype=np.int64)
        self._delays = np.asarray(spec.model.transition_delay_s)
        self._freqs = [np.asarray(t) for t in (spec.cpu_freqs_hz, spec.gpu_freqs_hz, spec.emc_freqs_hz)]
        self._tables: dict[tuple[str, int], CostTable] = {}
        self._stacks: dict[tuple[tuple[str, ...], int], tuple] = {}
        self._last_stack: tuple | None = None
        self._initial_temp_c = self.cooling.ambient_c if initial_temp_c is None else float(initial_temp_c)
        self._st = _ArrayState()
        self.reset(np.arange(self.n), seeds)

    def reset(self, index: np.ndarray, seeds: list[int] | np.ndarray) -> None:
        """Reset boards ``index`` (int array) with ``seeds`` (one per index) to their initial state."""
        index = np.asarray(index, dtype=np.int64)
        keys = np.asarray([seed_to_key(int(s)) for s in seeds], dtype=np.uint64)
        st, n = self._st, self.n
        if not hasattr(st, "time_s"):
            st.time_s = np.zeros(n)
            st.temp_c = np.zeros(n)
            st.throttled = np.zeros(n, dtype=bool)
            st.requested = np.tile(self._max, (n, 1))
            st.eff = np.tile(self._max, (n, 1))
            st.pending_s = np.zeros(n)
            st.pending_idx = np.zeros(n, dtype=np.int64)
            st.sensor_next_s = np.zeros(n)
            st.sensor_held_w = np.zeros(n)
            st.sensor_rails = np.zeros((len(RAIL_NAMES), n))
            st.counter = np.zeros(n, dtype=np.int64)
            st.key = np.zeros(n, dtype=np.uint64)
        st.key[index] = keys
        st.time_s[index] = 0.0
        st.temp_c[index] = self._initial_temp_c
        st.throttled[index] = False
        st.requested[index] = self._max
        st.eff[index] = self._max
        st.pending_s[index] = 0.0
        flat = self._flat(st.eff[index])
        st.pending_idx[index] = flat
        st.sensor_next_s[index] = (keys >> np.uint64(11)).astype(np.float64) * 2.0**-53 * self._consts.sensor_period_s
        scale = _leak_scale(_ArrayOps, self._consts, st.temp_c[index])
        pt = self.power
        st.sensor_held_w[index] = pt.static_w + pt.idle_dyn_w[flat] + pt.leak_ref_w[flat] * scale
        st.sensor_rails[:, index] = self._rail_idle.take(flat, axis=1) + self._rail_leak.take(flat, axis=1) * scale
        st.counter[index] = 0

    def _flat(self, levels: np.ndarray) -> np.ndarray:
        ng, ne = self.spec.n_gpu, self.spec.n_emc
        return (levels[..., 0] * ng + levels[..., 1]) * ne + levels[..., 2]

    def table(self, work: Work, batch: int = 1) -> CostTable:
        """The cost table of ``work`` (cached)."""
        key = (work.key, batch)
        if key not in self._tables:
            self._tables[key] = cost_table(self.spec, work, self.power, batch)
        return self._tables[key]

    @property
    def levels(self) -> np.ndarray:
        """Effective levels, shape ``(N, 3)``."""
        return self._st.eff

    @property
    def temp_c(self) -> np.ndarray:
        """Temperatures (°C), shape ``(N,)``."""
        return self._st.temp_c

    @property
    def throttled(self) -> np.ndarray:
        """Whether the thermal trip caps each board's clocks, shape ``(N,)`` (a copy)."""
        return self._st.throttled.copy()

    @property
    def sensor_power_w(self) -> np.ndarray:
        """The power monitors' latest (held) board readings (W), shape ``(N,)`` (a copy)."""
        return self._st.sensor_held_w.copy()

    @property
    def sensor_rails_w(self) -> np.ndarray:
        """The power monitors' latest (held) rail readings (W), shape ``(N, len(rail_names))`` (a copy)."""
        return np.asarray(self._st.sensor_rails, dtype=np.float64).T.copy()

    def apply(self, levels: np.ndarray) -> np.ndarray:
        """Request levels, an int array of shape ``(N, 3)``; returns each board's stall (s).

        Raises:
            SettingError: a level is outside the device's tables (names the first offending board).
        """
        levels = np.asarray(levels)
        if levels.shape != (self.n, 3) or not np.issubdtype(levels.dtype, np.integer):
            raise SettingError(
                f"levels must be an integer array of shape ({self.n}, 3), got {levels.dtype} {levels.shape}"
            )
        n_levels = np.asarray(self.spec.n_levels)
        bad = np.any((levels < 0) | (levels >= n_levels), axis=1)
        if bad.any():
            i = int(np.argmax(bad))
            self.spec.check_levels(*(int(v) for v in levels[i]))
        self._st.requested = levels.astype(np.int64)
        eff = self._effective()
        return self.spec.model.transition_stall_s * np.sum(eff != self._st.eff, axis=1)

    def _effective(self) -> np.ndarray:
        st = self._st
        if not st.throttled.any():
            return np.minimum(st.requested, self._max)
        caps = np.where(st.throttled[:, None], self._thr[None, :], self._max[None, :])
        return np.minimum(st.requested, caps)

    def _settle(self, active: np.ndarray | None = None) -> np.ndarray:
        st, m = self._st, self.spec.model
        eff = self._effective()
        if active is not None:
            eff = np.where(active[:, None], eff, st.eff)
        changed = eff != st.eff
        if not changed.any():
            return np.zeros(self.n)
        # Per-domain columns: reductions over the short trailing axis are slow in NumPy.
        c0, c1, c2 = changed[:, 0], changed[:, 1], changed[:, 2]
        d0, d1, d2 = self._delays
        any_change = c0 | c1 | c2
        delay = np.maximum(np.maximum(c0 * d0, c1 * d1), c2 * d2)
        fresh = any_change & (st.pending_s <= 0.0)
        st.pending_idx = np.where(fresh, self._flat(st.eff), st.pending_idx)
        st.pending_s = np.where(any_change, np.maximum(st.pending_s, delay), st.pending_s)
        st.eff = eff
        return m.transition_stall_s * (c0.astype(np.float64) + c1 + c2)

    def _stack(self, works: tuple[Work, ...], batch: int) -> tuple:
        """Cost tables of ``works`` stacked and flattened (``[w * F + setting]``): latency, busy dynamic energy,
        GPU busy time, that energy per rail (rows cpu, gpu, soc), and ``F``; cached per tuple of works."""
        last = self._last_stack
        if last is not None and last[0] is works and last[1] == batch:
            return last[2]
        key = (tuple(w.key for w in works), batch)
        hit = self._stacks.get(key)
        if hit is None:
            tables = [self.table(w, batch) for w in works]
            flat = [np.concatenate([getattr(t, f) for t in tables]) for f in ("latency_s", "busy_dyn_j", "gpu_busy_s")]
            busy = [_rail_busy(self.spec, self.power, t) for t in tables]
            cpu, gpu = np.concatenate([b[0] for b in busy]), np.concatenate([b[1] for b in busy])
            hit = (flat[0], flat[1], flat[2], np.stack((cpu, gpu, flat[1] - cpu - gpu)),
                   int(tables[0].latency_s.shape[0]))
            self._stacks[key] = hit
        self._last_stack = (works, batch, hit)
        return hit

    def run(self, work: Work, batch: int = 1) -> MeasurementBatch:
        """Run ``work`` on every board at its current clocks."""
        return self.run_choice((work,), np.zeros(self.n, dtype=np.int64), batch)

    def run_choice(self, works: tuple[Work, ...] | list[Work], choice: np.ndarray, batch: int = 1) -> MeasurementBatch:
        """Run ``works[choice[i]]`` on board ``i``, every board at its current clocks.

        This is how boards that take different exits of a network run in one call.

        Args:
            works: the candidate pieces of work (e.g. one per exit).
            choice: int array ``(N,)`` of indices into ``works``.
            batch: inferences per launch.
        """
        st, c = self._st, self._consts
        lat_t, dyn_t, gbusy_t, rdyn_t, n_set = self._stack(
            works if isinstance(works, tuple) else tuple(works), batch)
        base = np.asarray(choice, dtype=np.int64) * n_set
        stall = self._settle()
        idx = self._flat(st.eff)
        cur = base + idx
        lat, dyn, gbusy = lat_t.take(cur), dyn_t.take(cur), gbusy_t.take(cur)
        pend = st.pending_s > 0.0
        x = old = None
        if pend.any():
            old = base + st.pending_idx
            lat_old = lat_t.take(old)
            x = np.where(pend, np.minimum(st.pending_s / lat_old, 1.0), 0.0)
            blended = x * lat_old + (1.0 - x) * lat
            extra = blended - lat
            dyn = x * dyn_t.take(old) + (1.0 - x) * dyn
            gbusy = x * gbusy_t.take(old) + (1.0 - x) * gbusy
        else:
            blended, extra = lat, np.zeros(self.n)
        st.pending_s = np.where(pend, np.maximum(0.0, st.pending_s - blended), st.pending_s)
        lat = blended
        z_lat, z_pow = _normals_np(st.key, st.counter)
        st.counter = st.counter + 1
        f_lat = 1.0 + c.noise_latency * z_lat
        f_pow = 1.0 + c.noise_power * z_pow
        scale = _leak_scale(_ArrayOps, c, st.temp_c)
        leak = self.power.leak_ref_w[idx] * scale
        p_floor = self.power.static_w + self.power.idle_dyn_w[idx] + leak
        power = (p_floor + dyn / lat) * f_pow
        run_lat, lat = lat, lat * f_lat
        total = lat + stall
        energy = power * lat + p_floor * stall
        avg_power = energy / total
        t0, poll = st.time_s, st.sensor_next_s
        measured = _advance(_ArrayOps, c, st, total, avg_power)
        polled = poll <= t0 + total
        rails = st.sensor_rails
        if polled.any():  # boards whose monitor polled during the run: their rails now read the run's
            rdyn = rdyn_t.take(cur, axis=1)
            if x is not None:
                rdyn = x * rdyn_t.take(old, axis=1) + (1.0 - x) * rdyn
            floor = self._rail_idle.take(idx, axis=1) + self._rail_leak.take(idx, axis=1) * scale
            # Each rail: ((floor + busy / run_lat) * f_pow * lat + floor * stall) / total, as the board power.
            busy_w = f_pow * lat / total
            floor_w = busy_w + stall / total
            busy_w = busy_w / run_lat
            new = floor * floor_w + rdyn * busy_w
            fresh = np.maximum(t0 + total - poll, 0.0) / total  # share of the run after the poll; 0 without
            rails = rails + (new - rails) * fresh
            st.sensor_rails = np.where(polled, new, rails)
        else:
            rails = rails.copy()
        return self._measurement(total, energy, measured, avg_power, stall + extra * f_lat,
                                 np.minimum(1.0, gbusy * f_lat / total), rails)

    def idle(self, duration_s: np.ndarray, active: np.ndarray | None = None) -> MeasurementBatch:
        """Keep boards idle for ``duration_s`` (s, shape ``(N,)``, >= 0).

        Args:
            duration_s: idle time per board (s).
            active: optional bool mask ``(N,)``: boards where it is False are left exactly as they are
                (as if :meth:`EmulatedBackend.idle` were not called for them); their figures are zero.
        """
        st, c = self._st, self._consts
        duration_s = np.asarray(duration_s, dtype=float)
        if duration_s.shape != (self.n,):
            duration_s = np.broadcast_to(duration_s, (self.n,))
        if not (duration_s >= 0.0).all() or not duration_s.max() < np.inf:  # NaN fails the first test
            raise SettingError("idle durations must be finite numbers of seconds >= 0")
        if active is not None:
            active = np.asarray(active, dtype=bool)
            duration_s = np.where(active, duration_s, 0.0)
        stall = self._settle(active)
        st.pending_s = np.maximum(0.0, st.pending_s - duration_s)
        idx = self._flat(st.eff)
        chunks = np.maximum(1, np.ceil(duration_s / (c.tau_s * _IDLE_CHUNK_OF_TAU)))
        n_chunks = int(chunks.max())
        step = duration_s / chunks if n_chunks > 1 else duration_s
        energy = np.zeros(self.n)
        measured = np.zeros(self.n)
        idle_w, leak_w = self._rail_idle.take(idx, axis=1), self._rail_leak.take(idx, axis=1)
        # Rail energies (J) the monitor attributes to the period, and the time each board's current reading is
        # held for that they do not include yet (as EmulatedBackend.idle); without a poll the rails read the
        # held values throughout.
        e_rails = hold_s = polled_any = None
        rails = st.sensor_rails
        # A board idling for 0 s (or not active) goes through _advance unchanged (zero-length segments are exact).
        for k in range(n_chunks):
            scale = _leak_scale(_ArrayOps, c, st.temp_c)
            power = self.power.static_w + self.power.idle_dyn_w[idx] + self.power.leak_ref_w[idx] * scale
            dt = np.where(k < chunks, step, 0.0) if n_chunks > 1 else step
            energy += power * dt
            t0, poll = st.time_s, st.sensor_next_s
            measured += _advance(_ArrayOps, c, st, dt, power)
            polled = poll <= t0 + dt
            if n_chunks == 1:  # one segment: the rails' mean is the held and the new reading, time-weighted
                if polled.any():
                    new = idle_w + leak_w * scale
                    fresh = np.maximum(t0 + dt - poll, 0.0) / np.where(polled, dt, 1.0)
                    rails = rails + (new - rails) * fresh
                    st.sensor_rails = np.where(polled, new, st.sensor_rails)
                continue
            if e_rails is None:
                e_rails, hold_s, polled_any = np.zeros((len(RAIL_NAMES), self.n)), np.zeros(self.n), polled & False
            if polled.any():
                new = idle_w + leak_w * scale
                held = np.where(polled, hold_s + (poll - t0), 0.0)
                fresh = np.where(polled, t0 + dt - poll, 0.0)
                e_rails += st.sensor_rails * held + new * fresh
                st.sensor_rails = np.where(polled, new, st.sensor_rails)
                hold_s = np.where(polled, 0.0, hold_s + dt)
                polled_any |= polled
            else:
                hold_s = hold_s + dt
        if e_rails is not None:
            rails = st.sensor_rails
            if polled_any.any():
                safe = np.where(polled_any, duration_s, 1.0)
                rails = np.where(polled_any, (e_rails + rails * hold_s) / safe, rails)
        if rails is st.sensor_rails:
            rails = rails.copy()
        if n_chunks > 1:
            safe = np.where(duration_s > 0, duration_s, 1.0)
            power = np.where(duration_s > 0, energy / safe, power)
        return self._measurement(duration_s.copy(), energy, measured, power, stall, np.zeros(self.n), rails)

    def _measurement(self, lat, energy, measured, power, trans, gutil, rails) -> MeasurementBatch:
        st = self._st
        return MeasurementBatch(
            latency_s=lat,
            energy_j=energy,
            measured_energy_j=measured,
            avg_power_w=power,
            temp_c=st.temp_c.copy(),
            cpu_hz=self._freqs[0][st.eff[:, 0]],
            gpu_hz=self._freqs[1][st.eff[:, 1]],
            emc_hz=self._freqs[2][st.eff[:, 2]],
            throttled=st.throttled.copy(),
            transition_s=trans,
            gpu_util=gutil,
            time_s=st.time_s.copy(),
            rails_w=rails.T,
        )
