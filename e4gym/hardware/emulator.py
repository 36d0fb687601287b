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

The state update (transitions, a run, an idle period, the monitor and the thermal model) is written once, in
:class:`_Boards`, over an ``ops`` namespace: :class:`_ScalarOps` (Python floats, so that an env step stays
cheap) for the one board of :class:`EmulatedBackend`, :class:`_ArrayOps` (NumPy) for the N boards of
:class:`BatchedEmulator`; its arithmetic is exact for boards outside a mask (``x · old + (1 − x) · new`` with
``x = 0``, ``t + period · (polls · sampled)``), so the batched boards take a branch when any board needs it.
What stays apart is what differs in kind: checking requests and capping them (a tuple against an ``(N, 3)``
array), the caching of cost tables (lists of per-setting tuples against stacked arrays), keeping noise drawn
ahead (a list for one board; rows for N boards, redrawn for boards that are reset) and the result records
(:class:`~e4gym.hardware.backend.Measurement` against :class:`MeasurementBatch`). A test holds the two paths
together: N scalar boards equal the batched boards to 1e-9 (they agree bit for bit on the same calls).
"""

from __future__ import annotations

import dataclasses
import math
import operator
from abc import ABC, abstractmethod
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np

from e4gym.dnn.work import Work
from e4gym.errors import ConfigError, SettingError, UnknownNameError
from e4gym.hardware.backend import Cooling, Measurement, SensorReading, Setting
from e4gym.hardware.governors import GOVERNORS
from e4gym.hardware.model import CostTable, PowerTable, cost_table, floor_power_w, leakage_scale, power_table
from e4gym.hardware.spec import CPU_GOVERNORS, EMC_GOVERNORS, GPU_GOVERNORS, DeviceSpec, load_device

_M64 = (1 << 64) - 1
_TWO_PI = 2.0 * math.pi
_NOISE_CLIP = 3.0
_NOISE_BLOCK = 1024  # noise draws generated at a time by the scalar backend
_BATCH_NOISE_BLOCK = 32  # runs' worth of noise generated at a time for every board of the batched emulator
_IDLE_CHUNK_OF_TAU = 0.05  # idle periods longer than this fraction of the thermal time constant are split
_tuple_new = tuple.__new__  # builds a NamedTuple without its Python-level __new__ (a third of the cost)
#: Per (work, setting), the cost-table columns a run reads, in this order (one row per lookup).
_ROW = ("latency_s", "busy_dyn_j", "gpu_busy_s", "cpu_dyn_j", "gpu_dyn_j")

#: The emulated power monitor's rails (``Measurement.rails_w`` order): the CPU domain, the GPU domain, and the
#: rest of the board (memory / EMC and static power).
RAIL_NAMES: tuple[str, ...] = ("cpu", "gpu", "soc")


# ------------------------------------------------------------------------------------------ generic ops


class _ScalarOps:
    """One board: Python scalars (a NumPy call on a scalar costs a microsecond; so does the builtin ``min``)."""

    exp = staticmethod(math.exp)
    floor = staticmethod(math.floor)
    rows = staticmethod(operator.getitem)  # table[i]: a list of per-setting tuples

    @staticmethod
    def minimum(a: float, b: float) -> float:
        return b if b < a else a

    @staticmethod
    def maximum(a: float, b: float) -> float:
        return b if b > a else a

    any = all = staticmethod(bool)  # (a C call: cheaper than a Python one)

    @staticmethod
    def where(cond: bool, a: Any, b: Any) -> Any:
        return a if cond else b


class _ArrayOps:
    """N boards: NumPy arrays of shape ``(N,)``."""

    exp = staticmethod(np.exp)
    floor = staticmethod(np.floor)
    minimum = staticmethod(np.minimum)
    maximum = staticmethod(np.maximum)
    any = staticmethod(np.count_nonzero)  # (a count is as good as a bool for ``if``; three times cheaper)
    where = staticmethod(np.where)

    @staticmethod
    def all(cond: np.ndarray) -> bool:
        return np.count_nonzero(cond) == cond.shape[0]

    @staticmethod
    def rows(table: np.ndarray, i: np.ndarray) -> np.ndarray:
        """Rows ``i`` of a ``(settings, K)`` table as K contiguous arrays of shape ``(N,)`` (one gather: each row
        is one cache line; faster than K gathers, and than arithmetic on strided columns)."""
        return table.take(i, axis=0).T.copy()


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


def _normals_np(keys: np.ndarray, counters: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two clipped standard normals per board from ``(key, counter)`` by Box–Muller (counter-based)."""
    n = keys.shape[0]
    x = np.empty(2 * n, dtype=np.uint64)  # splitmix64 of key + 2·counter and of key + 2·counter + 1, at once
    np.add(keys, np.uint64(2) * counters.astype(np.uint64), out=x[:n])
    np.add(x[:n], np.uint64(1), out=x[n:])
    x += np.uint64(0x9E3779B97F4A7C15)
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    u = (x >> np.uint64(11)).astype(np.float64)
    u1 = (u[:n] + 1.0) * 2.0**-53
    u2 = u[n:] * 2.0**-53
    r = np.sqrt(-2.0 * np.log(u1))
    cos = np.cos(_TWO_PI * u2)
    # sin(2πu) from the cosine: its sign is + for u < 1/2 (cheaper than a second transcendental).
    sin = np.sqrt(np.maximum(0.0, 1.0 - cos * cos))
    z1, z2 = r * cos, np.copysign(r * sin, 0.5 - u2)
    for z in (z1, z2):
        np.minimum(np.maximum(z, -_NOISE_CLIP, out=z), _NOISE_CLIP, out=z)
    return z1, z2


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
    sensor_period_s: float
    noise_latency: float
    noise_power: float
    stall_s: float
    delays_s: tuple[float, float, float]


def _consts(spec: DeviceSpec, cooling: Cooling) -> _Consts:
    m = spec.model
    return _Consts(
        ambient_c=cooling.ambient_c,
        r_th=m.r_th_fan_c_per_w if cooling.fan else m.r_th_passive_c_per_w,
        tau_s=m.tau_s,
        trip_c=spec.thermal.throttle_c,
        release_c=spec.thermal.throttle_c - m.throttle_hysteresis_c,
        sensor_period_s=m.sensor_period_s,
        noise_latency=m.noise_latency,
        noise_power=m.noise_power,
        stall_s=m.transition_stall_s,
        delays_s=tuple(m.transition_delay_s),  # type: ignore[arg-type]
    )


def _stall(c: _Consts, cpu: Any, gpu: Any, emc: Any) -> Any:
    """The stall (s) of switching the domains flagged (bools, or 0/1 float arrays)."""
    return c.stall_s * (cpu + gpu + emc)


def _noise_block(c: _Consts, keys: np.ndarray, counters: np.ndarray, runs: int) -> tuple[np.ndarray, np.ndarray]:
    """The multiplicative latency and power noise of the next ``runs`` runs of boards with noise ``keys`` whose
    counters are at ``counters`` (arrays ``(N,)``): two arrays ``(runs, N)``, row ``j`` at counter + j."""
    at = counters[None, :] + np.arange(runs)[:, None]
    z_lat, z_pow = _normals_np(np.broadcast_to(keys, at.shape).ravel(), at.ravel())
    return (1.0 + c.noise_latency * z_lat).reshape(at.shape), (1.0 + c.noise_power * z_pow).reshape(at.shape)


class _Boards(ABC):
    """The state update of emulated boards, written once over ``_ops`` (see the module docstring).

    A subclass sets ``_ops``, ``_st`` (the state: scalars, or arrays of shape ``(N,)``, with the same attribute
    names; ``sensor_rails`` a tuple of the three rails), ``_consts``, ``spec``, ``_model`` (``spec.model``),
    ``_floor_table`` (what :func:`~e4gym.hardware.model.floor_power_w` reads: the :class:`PowerTable`, or
    lists of its columns), ``_rail_rows`` (per setting ``(cpu idle, cpu leak at T_ref, gpu idle, gpu leak at
    T_ref)``, W) and ``_noise()`` (the next latency and power noise factors).
    """

    _ops: Any
    _st: Any
    _consts: _Consts
    _model: Any
    _floor_table: Any
    _rail_rows: Any
    spec: DeviceSpec
    measured: Any
    power: PowerTable
    _tables: dict

    @abstractmethod
    def _noise(self) -> tuple[Any, Any]:
        """The next run's latency and power noise factors: each board class draws them its own way (the scalar
        board from its block of the counter-based stream, the batched one for every board at once)."""

    def table(self, work: Work, batch: int = 1) -> CostTable:
        """The :class:`CostTable` of ``work`` at ``batch`` on this board (cached by ``work.key``)."""
        key = (work.key, batch)
        hit = self._tables.get(key)
        if hit is None:
            if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1:
                raise ConfigError(f"batch must be an integer >= 1, got {batch!r}")
            hit = self._tables[key] = self._cost(work, int(batch))
        return hit

    def _cost(self, work: Work, batch: int) -> CostTable:
        """The analytic cost table of ``work``, scaled by the measured profile when one covers its model."""
        t = cost_table(self.spec, work, self.power, batch)
        if self.measured is None:
            return t
        from e4gym.hardware.measured import correction

        ratio = correction(self.spec, self.measured, self.power, work.key)
        if ratio is None:
            return t
        r_lat, r_dyn = ratio
        return dataclasses.replace(t, latency_s=t.latency_s * r_lat, busy_dyn_j=t.busy_dyn_j * r_dyn,
                                   gpu_busy_s=np.minimum(t.gpu_busy_s * r_lat, t.latency_s * r_lat),
                                   cpu_dyn_j=t.cpu_dyn_j * r_dyn, gpu_dyn_j=t.gpu_dyn_j * r_dyn)

    def _rail_floors(self, idx: Any, scale: Any) -> tuple[Any, Any]:
        """The CPU and GPU rails' share (W) of the idle floor at settings ``idx``, leakage scaled by ``scale``."""
        cpu_idle, cpu_leak, gpu_idle, gpu_leak = self._ops.rows(self._rail_rows, idx)
        return cpu_idle + cpu_leak * scale, gpu_idle + gpu_leak * scale

    def _idle_reading(self, idx: Any, temp_c: Any) -> tuple[Any, tuple[Any, Any, Any]]:
        """The idle floor (W) at settings ``idx`` and temperature ``temp_c``, and its three rails (W)."""
        scale = leakage_scale(self._model, temp_c)
        power = floor_power_w(self._floor_table, idx, temp_c, self._model, scale=scale)
        cpu, gpu = self._rail_floors(idx, scale)
        return power, (cpu, gpu, power - cpu - gpu)

    def _transition(self, cpu: Any, gpu: Any, emc: Any, eff: Any) -> Any:
        """Switch to the effective levels ``eff``; ``cpu``, ``gpu``, ``emc`` flag the domains that change.

        Until the slowest changed domain's delay has passed, work runs at the setting held before the first
        of the pending switches. Returns the stall (s).
        """
        ops, st, c = self._ops, self._st, self._consts
        d_cpu, d_gpu, d_emc = c.delays_s
        delay = ops.maximum(ops.maximum(cpu * d_cpu, gpu * d_gpu), emc * d_emc)
        # (Where nothing is pending, the old setting is the current one; where nothing changes, delay is 0.)
        st.pending_idx = st.pending_idx + (st.pending_s <= 0.0) * (st.idx - st.pending_idx)
        st.pending_s = ops.maximum(st.pending_s, delay)
        st.eff = eff
        st.idx = self.spec.flat_index(eff)
        return _stall(c, cpu, gpu, emc)

    def _advance(self, duration_s: Any, power_w: Any) -> Any:
        """Advance time, the power monitor, temperature and throttling over one constant-power segment.

        Returns the energy the power monitor attributes to the segment (J). A zero-length segment leaves the
        state bit for bit as it was.
        """
        ops, st, c = self._ops, self._st, self._consts
        t0, nxt, held = st.time_s, st.sensor_next_s, st.sensor_held_w
        t1 = t0 + duration_s
        # Power monitor: sample-and-hold at fixed polling instants.
        measured = held * duration_s
        sampled = nxt <= t1
        if ops.any(sampled):
            measured = ops.where(sampled, held * (nxt - t0) + power_w * (t1 - nxt), measured)
            polls = ops.floor((t1 - nxt) / c.sensor_period_s) + 1.0
            st.sensor_next_s = nxt + c.sensor_period_s * (polls * sampled)
            st.sensor_held_w = ops.where(sampled, power_w, held)
        # First-order thermal model, exact for constant power over the segment; the trip with its hysteresis.
        t_ss = c.ambient_c + power_w * c.r_th
        temp = t_ss + (st.temp_c - t_ss) * ops.exp(-duration_s / c.tau_s)
        throttled = (temp >= c.trip_c) | (st.throttled & (temp >= c.release_c))
        moved = duration_s > 0
        if not ops.all(moved):
            temp = ops.where(moved, temp, st.temp_c)
            throttled = ops.where(moved, throttled, st.throttled)
        st.temp_c, st.throttled, st.time_s = temp, throttled, t1
        return measured

    def _run_segment(self, table: Any, base: Any, stall: Any) -> tuple:
        """Run a work after a stall (s) at the current clocks: its costs are ``table``'s rows at ``base + idx``.

        Returns ``(latency_s, energy_j, measured_energy_j, avg_power_w, transition_s, gpu_busy_s, gpu_util,
        rails_w)``.
        """
        ops, st = self._ops, self._st
        idx = st.idx
        lat, dyn, gbusy, cpu_dyn, gpu_dyn = ops.rows(table, base + idx)
        old = None
        extra = 0.0
        if ops.any(st.pending_s > 0.0):
            # The first pending_s seconds still run at the old setting: blend its row with the new one.
            old = ops.rows(table, base + st.pending_idx)
            x = ops.minimum(st.pending_s / old[0], 1.0)
            y = 1.0 - x
            blended = x * old[0] + y * lat
            extra = blended - lat
            dyn = x * old[1] + y * dyn
            gbusy = x * old[2] + y * gbusy
            st.pending_s = ops.maximum(0.0, st.pending_s - blended)
            lat = blended
        f_lat, f_pow = self._noise()
        scale = leakage_scale(self._model, st.temp_c)
        p_floor = floor_power_w(self._floor_table, idx, st.temp_c, self._model, scale=scale)
        power = (p_floor + dyn / lat) * f_pow
        run_lat, lat = lat, lat * f_lat
        # The stall runs at the idle floor before the work starts.
        total = lat + stall
        energy = power * lat + p_floor * stall
        avg_power = energy / total
        t0, poll = st.time_s, st.sensor_next_s
        measured = self._advance(total, avg_power)
        rails = st.sensor_rails
        polled = poll <= t0 + total
        if ops.any(polled):  # the monitor polled during the run: it reads the run's rails from then on
            if old is not None:
                cpu_dyn = x * old[3] + y * cpu_dyn
                gpu_dyn = x * old[4] + y * gpu_dyn
            cpu_floor, gpu_floor = self._rail_floors(idx, scale)
            # Each rail as the board power: ((floor + busy / run_lat) * f_pow * lat + floor * stall) / total.
            k_busy = f_pow * lat / total
            k_floor = k_busy + stall / total
            k_busy = k_busy / run_lat
            cpu_w = cpu_floor * k_floor + cpu_dyn * k_busy
            gpu_w = gpu_floor * k_floor + gpu_dyn * k_busy
            fresh = ops.maximum(t0 + total - poll, 0.0) / total  # the share of the run after the poll
            cpu_m = rails[0] + (cpu_w - rails[0]) * fresh
            gpu_m = rails[1] + (gpu_w - rails[1]) * fresh
            where = ops.where
            st.sensor_rails = (where(polled, cpu_w, rails[0]), where(polled, gpu_w, rails[1]),
                               where(polled, avg_power - cpu_w - gpu_w, rails[2]))
            rails = (cpu_m, gpu_m, where(polled, measured / total - cpu_m - gpu_m, rails[2]))
        busy = gbusy * f_lat
        return total, energy, measured, avg_power, stall + extra * f_lat, busy, ops.minimum(busy / total, 1.0), rails

    def _idle_segment(self, duration_s: Any, chunks: Any, n_chunks: int) -> tuple:
        """Stay idle for ``duration_s`` (s) at the current clocks, in ``chunks`` equal steps (at most
        ``n_chunks``) so that leakage follows the temperature. Returns ``(energy_j, measured_energy_j,
        avg_power_w, rails_w)``."""
        ops, st, model = self._ops, self._st, self._model
        where = ops.where
        st.pending_s = ops.maximum(0.0, st.pending_s - duration_s)
        idx = st.idx
        step = duration_s / chunks if n_chunks > 1 else duration_s
        energy = measured = hold = 0.0
        # Rail energies (J) the monitor attributes to the period, and the time (s) the current reading is held
        # for that they do not include yet; without a poll the rails read the held values throughout.
        e_rails: tuple | None = None
        polled_any: Any = False
        for k in range(n_chunks):
            dt = step * (k < chunks) if n_chunks > 1 else step  # boards with fewer chunks idle 0 s (exact)
            temp = st.temp_c
            scale = leakage_scale(model, temp)
            power = floor_power_w(self._floor_table, idx, temp, model, scale=scale)
            energy = energy + power * dt
            t0, poll = st.time_s, st.sensor_next_s
            measured = measured + self._advance(dt, power)
            polled = poll <= t0 + dt
            if not ops.any(polled):
                hold = hold + dt
                continue
            cpu_w, gpu_w = self._rail_floors(idx, scale)
            new = (cpu_w, gpu_w, power - cpu_w - gpu_w)
            held = where(polled, hold + (poll - t0), 0.0)
            fresh = where(polled, t0 + dt - poll, 0.0)
            h = st.sensor_rails
            e = e_rails or (0.0, 0.0, 0.0)
            e_rails = (e[0] + (h[0] * held + new[0] * fresh), e[1] + (h[1] * held + new[1] * fresh),
                       e[2] + (h[2] * held + new[2] * fresh))
            st.sensor_rails = (where(polled, new[0], h[0]), where(polled, new[1], h[1]), where(polled, new[2], h[2]))
            hold = where(polled, 0.0, hold + dt)
            polled_any = polled_any | polled
        rails = h = st.sensor_rails
        if e_rails is not None:
            safe = where(polled_any, duration_s, 1.0)
            rails = (where(polled_any, (e_rails[0] + h[0] * hold) / safe, h[0]),
                     where(polled_any, (e_rails[1] + h[1] * hold) / safe, h[1]),
                     where(polled_any, (e_rails[2] + h[2] * hold) / safe, h[2]))
        if n_chunks > 1:  # the mean power (``power`` is the last chunk's, or a zero-length period's)
            moved = duration_s > 0
            power = where(moved, energy / where(moved, duration_s, 1.0), power)
        return energy, measured, power, rails


# ------------------------------------------------------------------------------------------ the scalar backend


class _State:
    """Mutable state of one emulated board (attributes are Python scalars)."""

    __slots__ = (
        "counter",
        "eff",
        "idx",
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


class EmulatedBackend(_Boards):
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

    _ops = _ScalarOps

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
        self._model = spec.model
        self.power: PowerTable = power_table(spec, self.mode.cpu_online)
        pt = self.power
        # The per-setting tables as Python lists: a step looks values up without NumPy scalars.
        self._floor_table = SimpleNamespace(static_w=pt.static_w, idle_dyn_w=pt.idle_dyn_w.tolist(),
                                            leak_ref_w=pt.leak_ref_w.tolist())
        self._rail_rows = list(zip(pt.cpu_idle_w.tolist(), pt.cpu_leak_ref_w.tolist(), pt.gpu_idle_w.tolist(),
                                   pt.gpu_leak_ref_w.tolist(), strict=True))
        #: Rails of the power monitor, in ``Measurement.rails_w`` order.
        self.rail_names: tuple[str, ...] = RAIL_NAMES
        self._tables: dict[tuple[str, int], CostTable] = {}
        self._rows_by_key: dict[tuple[str, int], list[tuple[float, ...]]] = {}
        self._last_rows: tuple = (None, None, None)
        self.max_levels = spec.max_levels(power_mode)
        self._throttle_caps = _throttle_caps(spec, self.max_levels)
        self._n_levels = spec.n_levels
        self._freq_tables = (spec.cpu_freqs_hz, spec.gpu_freqs_hz, spec.emc_freqs_hz)
        self._idle_chunk_s = self._consts.tau_s * _IDLE_CHUNK_OF_TAU
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
        st.requested = st.eff = self.max_levels
        st.pending_s = 0.0
        st.idx = st.pending_idx = self.spec.flat_index(st.eff)
        # The monitor's first poll falls at a seeded phase within one period.
        st.sensor_next_s = ((self._key >> 11) * 2.0**-53) * self._consts.sensor_period_s
        st.sensor_held_w, st.sensor_rails = self._idle_reading(st.idx, st.temp_c)
        st.counter = 0
        st.win_elapsed = st.win_busy_cpu = st.win_busy_gpu = 0.0
        self._st = st
        self._nz: list[tuple[float, float]] = []
        self._nz_base = 0

    def close(self) -> None:
        """Nothing to restore on an emulated board; further calls raise."""
        self._closed = True

    def __enter__(self) -> EmulatedBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -------------------------------------------------------------------------------------- helpers

    def _rows(self, work: Work, batch: int) -> list[tuple[float, ...]]:
        """Per setting, the :data:`_ROW` costs of ``work`` at ``batch`` (cached; the last one by identity)."""
        last = self._last_rows
        if last[0] is work and last[1] == batch:
            return last[2]
        key = (work.key, batch)
        rows = self._rows_by_key.get(key)
        if rows is None:
            t = self.table(work, batch)
            rows = self._rows_by_key[key] = list(zip(*(getattr(t, f).tolist() for f in _ROW), strict=True))
        self._last_rows = (work, batch, rows)
        return rows

    def _effective(self) -> tuple[int, int, int]:
        st = self._st
        r = st.requested
        if not st.throttled:
            if r == self._last_req:  # the common case: the same request as before, already capped
                return self._last_eff
            caps = self.max_levels
        else:
            caps = self._throttle_caps
        c, g, e = caps
        eff = (r[0] if r[0] < c else c, r[1] if r[1] < g else g, r[2] if r[2] < e else e)
        if not st.throttled:
            self._last_req, self._last_eff = r, eff
        return eff

    def _settle(self) -> float:
        """Apply pending level changes (requests, throttling); returns the stall time (s)."""
        eff, now = self._effective(), self._st.eff
        if eff == now:
            return 0.0
        return self._transition(eff[0] != now[0], eff[1] != now[1], eff[2] != now[2], eff)

    def _noise(self) -> tuple[float, float]:
        """The next latency and power noise factors of this board's counter-based stream.

        Drawn in blocks with the batched emulator's vectorised generator, so one board's noise is bit for bit
        the batched emulator's for the same seed.
        """
        st = self._st
        i = st.counter - self._nz_base
        if i >= len(self._nz) or i < 0:
            f_lat, f_pow = _noise_block(self._consts, np.array([self._key], dtype=np.uint64),
                                        np.array([st.counter]), _NOISE_BLOCK)
            self._nz = list(zip(f_lat.ravel().tolist(), f_pow.ravel().tolist(), strict=True))
            self._nz_base, i = st.counter, 0
        st.counter += 1
        return self._nz[i]

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
        return _stall(self._consts, eff[0] != now[0], eff[1] != now[1], eff[2] != now[2])

    def run(self, work: Work, batch: int = 1) -> Measurement:
        """Run ``work`` (``batch`` inferences back to back in one launch) at the current clocks."""
        if self._closed:
            self._check_open()
        last = self._last_rows
        rows = last[2] if last[0] is work and last[1] == batch else self._rows(work, batch)
        total, energy, measured, power, trans, busy, util, rails = self._run_segment(rows, 0, self._settle())
        if not self._userspace:
            self._govern(total, total, busy)
        return self._measurement(total, energy, measured, power, trans, util, rails)

    def idle(self, duration_s: float) -> Measurement:
        """Stay idle for ``duration_s`` (s) at the current clocks (e.g. waiting for the next frame)."""
        if self._closed:
            self._check_open()
        if not duration_s >= 0.0 or not math.isfinite(duration_s):
            raise SettingError(f"idle duration must be a finite number of seconds >= 0, got {duration_s!r}")
        stall = self._settle()
        # Long idle periods are split so that leakage follows the falling temperature.
        chunks = math.ceil(duration_s / self._idle_chunk_s) or 1
        energy, measured, power, rails = self._idle_segment(duration_s, chunks, chunks)
        if not self._userspace:
            self._govern(duration_s, 0.0, 0.0)
        return self._measurement(duration_s, energy, measured, power, stall, 0.0, rails)

    def _measurement(self, latency_s: float, energy_j: float, measured_j: float, power_w: float,
                     transition_s: float, gpu_util: float, rails_w: tuple[float, ...]) -> Measurement:
        st, f = self._st, self._freq_tables
        eff = st.eff
        return _tuple_new(Measurement, (latency_s, energy_j, measured_j, power_w, st.temp_c, f[0][eff[0]],
                                        f[1][eff[1]], f[2][eff[2]], st.throttled, transition_s, gpu_util, st.time_s,
                                        rails_w))

    def read_sensors(self) -> SensorReading:
        """The power monitor's latest reading (board and rails), the temperature and the clocks now."""
        st, f = self._st, self._freq_tables
        return SensorReading(
            power_w=st.sensor_held_w,
            temp_c=st.temp_c,
            cpu_hz=f[0][st.eff[0]],
            gpu_hz=f[1][st.eff[1]],
            emc_hz=f[2][st.eff[2]],
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
        req = list(st.requested)
        for d, dom in enumerate(("cpu", "gpu", "emc")):
            if gov[dom] != "userspace":
                req[d] = GOVERNORS[gov[dom]](st.eff[d], min(loads[d], 1.0), self._freq_tables[d], self.max_levels[d])
        st.requested = (req[0], req[1], req[2])
        st.win_elapsed = st.win_busy_cpu = st.win_busy_gpu = 0.0


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
    """Mutable state of N emulated boards (attributes are arrays of shape ``(N,)``; ``eff`` and ``requested``
    ``(N, 3)``; ``sensor_rails`` a tuple of three ``(N,)`` arrays)."""


class BatchedEmulator(_Boards):
    """N independent emulated boards of one device, stepped together in NumPy.

    Board ``i`` with seed ``s`` produces the same numbers as ``EmulatedBackend(device, seed=s)`` given the
    same calls (up to floating-point rounding of the vectorised math), whatever N is. Clocks are set by the
    caller only (all domains ``userspace``); use :class:`EmulatedBackend` to emulate kernel governors.

    Args:
        device: a :class:`DeviceSpec` or a device name.
        seeds: one seed per board (its length is N).
        power_mode / cooling / initial_temp_c: as for :class:`EmulatedBackend`.
    """

    _ops = _ArrayOps
    measured = None

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
        self._model = spec.model
        self.power = power_table(spec, self.mode.cpu_online)
        pt = self._floor_table = self.power
        self._rail_rows = np.stack((pt.cpu_idle_w, pt.cpu_leak_ref_w, pt.gpu_idle_w, pt.gpu_leak_ref_w), axis=1)
        #: Rails of the power monitor, in ``MeasurementBatch.rails_w`` column order.
        self.rail_names: tuple[str, ...] = RAIL_NAMES
        self.max_levels = spec.max_levels(power_mode)
        self._max = np.asarray(self.max_levels, dtype=np.int64)
        self._n_levels = np.asarray(spec.n_levels, dtype=np.int64)
        self._thr = np.asarray(_throttle_caps(spec, self.max_levels), dtype=np.int64)
        self._freqs = [np.asarray(t) for t in (spec.cpu_freqs_hz, spec.gpu_freqs_hz, spec.emc_freqs_hz)]
        self._tables: dict[tuple[str, int], CostTable] = {}
        self._stacks: dict[tuple[tuple[str, ...], int], tuple[np.ndarray, int]] = {}
        self._last_stack: tuple | None = None
        self._last_eff: tuple = (None, None)
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
            # Levels (N, 3) in Fortran order: each domain's column contiguous (NumPy broadcasts a (3,) row fast).
            st.requested = np.asfortranarray(np.tile(self._max, (n, 1)))
            st.eff = np.asfortranarray(np.tile(self._max, (n, 1)))
            st.idx = np.zeros(n, dtype=np.int64)
            st.pending_s = np.zeros(n)
            st.pending_idx = np.zeros(n, dtype=np.int64)
            st.sensor_next_s = np.zeros(n)
            st.sensor_held_w = np.zeros(n)
            st.sensor_rails = tuple(np.zeros(n) for _ in RAIL_NAMES)
            st.counter = np.zeros(n, dtype=np.int64)
            st.key = np.zeros(n, dtype=np.uint64)
            self._nz, self._nz_j = (np.empty((0, n)), np.empty((0, n))), 0
        self._last_eff = (None, None)  # (rows of requested and eff change in place below)
        st.key[index] = keys
        st.time_s[index] = 0.0
        st.temp_c[index] = self._initial_temp_c
        st.throttled[index] = False
        st.requested[index] = self._max
        st.eff[index] = self._max
        st.pending_s[index] = 0.0
        flat = self.spec.flat_index(st.eff[index])
        st.idx[index] = st.pending_idx[index] = flat
        st.sensor_next_s[index] = (keys >> np.uint64(11)).astype(np.float64) * 2.0**-53 * self._consts.sensor_period_s
        st.sensor_held_w[index], rails = self._idle_reading(flat, st.temp_c[index])
        for held, new in zip(st.sensor_rails, rails, strict=True):
            held[index] = new
        st.counter[index] = 0
        j = self._nz_j
        if j < self._nz[0].shape[0]:
            for block, new in zip(self._nz, _noise_block(self._consts, keys, st.counter[index], len(self._nz[0]) - j),
                                  strict=True):
                block[j:, index] = new

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
        return np.array(self._st.sensor_rails).T

    def apply(self, levels: np.ndarray) -> np.ndarray:
        """Request levels, an int array of shape ``(N, 3)``; returns each board's stall (s).

        Raises:
            SettingError: a level is outside the device's tables (names the first offending board).
        """
        levels = np.asarray(levels)
        if levels.shape != (self.n, 3) or levels.dtype.kind not in "iu":
            raise SettingError(
                f"levels must be an integer array of shape ({self.n}, 3), got {levels.dtype} {levels.shape}"
            )
        requested = levels.astype(np.int64, order="F")
        if requested.min() < 0 or np.count_nonzero(requested.max(axis=0) >= self._n_levels):
            bad = np.any((requested < 0) | (requested >= self._n_levels), axis=1)
            i = int(np.argmax(bad))
            self.spec.check_levels(*(int(v) for v in requested[i]))
        self._st.requested = requested
        changed = (self._effective() != self._st.eff).astype(np.float64)
        return _stall(self._consts, changed[:, 0], changed[:, 1], changed[:, 2])

    def _effective(self) -> np.ndarray:
        st = self._st
        if np.count_nonzero(st.throttled):
            caps = np.where(st.throttled[:, None], self._thr[None, :], self._max[None, :])
            return np.minimum(st.requested, caps, order="F")
        last = self._last_eff  # the common case: the same request as before, no board throttled
        if last[0] is not st.requested:
            self._last_eff = last = (st.requested, np.minimum(st.requested, self._max))
        return last[1]

    def _settle(self, active: np.ndarray | None = None) -> np.ndarray:
        st = self._st
        eff = self._effective()
        changed = eff != st.eff
        if active is not None:
            changed &= active[:, None]
        if not np.count_nonzero(changed):
            return np.zeros(self.n)
        if active is not None:
            eff = np.asfortranarray(np.where(active[:, None], eff, st.eff))
        # Per-domain columns (0/1 floats): reductions over the short trailing axis are slow in NumPy.
        flags = changed.astype(np.float64)
        return self._transition(flags[:, 0], flags[:, 1], flags[:, 2], eff)

    def _noise(self) -> tuple[np.ndarray, np.ndarray]:
        """The next latency and power noise factors of every board (a block of runs is drawn ahead: every run
        advances every board's counter by one; :meth:`reset` redraws the rest of the block for its boards)."""
        st, j = self._st, self._nz_j
        if j == self._nz[0].shape[0]:
            self._nz, j = _noise_block(self._consts, st.key, st.counter, _BATCH_NOISE_BLOCK), 0
        self._nz_j = j + 1
        st.counter += 1
        return self._nz[0][j], self._nz[1][j]

    def _stack(self, works: tuple[Work, ...], batch: int) -> tuple[np.ndarray, int]:
        """The :data:`_ROW` costs of ``works`` stacked, ``[w * F + setting, column]``, and ``F`` (settings);
        cached per tuple of works."""
        last = self._last_stack
        if last is not None and last[0] is works and last[1] == batch:
            return last[2]
        key = (tuple(w.key for w in works), batch)
        hit = self._stacks.get(key)
        if hit is None:
            tables = [self.table(w, batch) for w in works]
            rows = np.stack([np.concatenate([getattr(t, f) for t in tables]) for f in _ROW], axis=1)
            hit = self._stacks[key] = (rows, int(tables[0].latency_s.shape[0]))
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
        rows, n_set = self._stack(works if isinstance(works, tuple) else tuple(works), batch)
        base = np.asarray(choice, dtype=np.int64) * n_set
        total, energy, measured, power, trans, _, util, rails = self._run_segment(rows, base, self._settle())
        return self._measurement(total, energy, measured, power, trans, util, rails)

    def idle(self, duration_s: np.ndarray, active: np.ndarray | None = None) -> MeasurementBatch:
        """Keep boards idle for ``duration_s`` (s, shape ``(N,)``, >= 0).

        Args:
            duration_s: idle time per board (s).
            active: optional bool mask ``(N,)``: boards where it is False are left exactly as they are
                (as if :meth:`EmulatedBackend.idle` were not called for them); their figures are zero.
        """
        duration_s = np.asarray(duration_s, dtype=float)
        if duration_s.shape != (self.n,):
            duration_s = np.broadcast_to(duration_s, (self.n,))
        longest = duration_s.max()
        if not (duration_s.min() >= 0.0 and longest < np.inf):  # NaN fails both
            raise SettingError("idle durations must be finite numbers of seconds >= 0")
        if active is not None:
            active = np.asarray(active, dtype=bool)
            duration_s = np.where(active, duration_s, 0.0)
        stall = self._settle(active)
        chunk_s = self._consts.tau_s * _IDLE_CHUNK_OF_TAU
        if longest <= chunk_s:
            chunks, n_chunks = 1, 1
        else:
            chunks = np.maximum(1.0, np.ceil(duration_s / chunk_s))
            n_chunks = int(chunks.max())
        energy, measured, power, rails = self._idle_segment(duration_s, chunks, n_chunks)
        return self._measurement(duration_s.copy(), energy, measured, power, stall, np.zeros(self.n), rails)

    def _measurement(self, lat, energy, measured, power, trans, gutil, rails) -> MeasurementBatch:
        st, eff = self._st, self._st.eff
        return MeasurementBatch(
            latency_s=lat,
            energy_j=energy,
            measured_energy_j=measured,
            avg_power_w=power,
            temp_c=st.temp_c.copy(),
            cpu_hz=self._freqs[0][eff[:, 0]],
            gpu_hz=self._freqs[1][eff[:, 1]],
            emc_hz=self._freqs[2][eff[:, 2]],
            throttled=st.throttled.copy(),
            transition_s=trans,
            gpu_util=gutil,
            time_s=st.time_s.copy(),
            rails_w=np.array(rails).T,
        )
