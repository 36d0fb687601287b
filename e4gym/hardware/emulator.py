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
  counter-based generator (splitmix64 of the board's key and a counter, one Box–Muller pair per run), so one
  board's numbers do not depend on how many boards are simulated beside it;
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

**The state update is written once, over N boards**: numba kernels, each a loop over boards, compiled on first
use (``njit(cache=True)``: the compiled code is cached in ``__pycache__``; a read-only install compiles in each
process): :func:`_k_reset`, :func:`_k_request` (the batched ``apply``), :func:`_k_run`, :func:`_k_idle` and
:func:`_k_run_idle` (a frame's run, then its idle wait: ``run_then_idle``, what the frame envs call). The
scalar :class:`EmulatedBackend` is N = 1 and the :class:`BatchedEmulator` N, so one seed gives the same numbers,
bit for bit, on either. A kernel takes a few arrays (numba's dispatch costs about 0.1 µs an array): the boards'
state, a ``float64`` array ``(N, _KF)`` and an ``int64`` array ``(N, _KI)`` with one row per board (columns
``_TIME``, ``_TEMP``, ... and ``_REQ``, ``_EFF``, ...), updated in place; the device array
(:func:`_device_array`: the coefficients, read once per call into :class:`_Consts`, then per setting the
idle-floor and rail powers, then the clock tables); the stacked cost rows of the works
(``[work · settings + setting, column]``, columns :data:`_ROW`); the inputs (each board's work, its idle
duration and mask); and a ``float64`` output ``(_KO, >= N)`` whose rows are the fields of a
:class:`~e4gym.hardware.backend.Measurement` (:data:`_OUT`; a fresh one per call of the batched emulator, whose
:class:`MeasurementBatch` fields are views of it). :func:`_k_run` and :func:`_k_idle` also return board 0's
record as a tuple: numba boxes it into the Python floats, bool and rails tuple of the scalar backend's
``Measurement``.

A board's segment settles its levels first (:func:`_settle`: the request capped by the power mode or the
throttle; the stall; the pending delay), then either runs a work (its cost row at the new setting, blended with
the old setting's while a switch is pending; the noise pair of :func:`_normals`; the idle floor by
:func:`~e4gym.hardware.model.floor_power` at the leakage :func:`~e4gym.hardware.model.leak_scale` of the
temperature, the power model's own scalar cores, registered with ``register_jitable``) or idles (in chunks of
``0.05 · tau_s`` so that leakage follows the temperature); both advance the power monitor and the thermal model
with :func:`_advance` (exact over a constant-power segment). What stays in Python is what differs in kind:
checking requests (a tuple against an ``(N, 3)`` array), the cost tables with the measured profile's correction,
the kernel governors (run after the kernel, on its outputs) and the result records. A board whose temperature is
at or past its critical trip (``thermal.critical_c``, where a real Jetson shuts down; checked at the start of each
run and idle chunk) makes a kernel return an error code, and Python raises the
:class:`~e4gym.errors.OverheatError` (the same for a leakage exponential that overflows). numba's cache follows
this file only: a kernel loaded from a cache older than an edit of the model's jitable cores is caught by
:meth:`_Boards._verify_kernels` and recompiled.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import warnings
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, NamedTuple, NoReturn

import numpy as np

from e4gym._jit import njit_cached
from e4gym.dnn.work import Work
from e4gym.errors import ConfigError, OverheatError, SettingError, UnknownNameError
from e4gym.hardware.backend import Cooling, Measurement, SensorReading, Setting, run_then_idle_separately
from e4gym.hardware.governors import GOVERNORS
from e4gym.hardware.model import (
    JITABLE,
    CostTable,
    PowerTable,
    cost_table,
    floor_power,
    leak_scale,
    leakage_scale,
    power_table,
)
from e4gym.hardware.spec import CPU_GOVERNORS, EMC_GOVERNORS, GPU_GOVERNORS, DeviceSpec, load_device

_M64 = (1 << 64) - 1
_TWO_PI = 2.0 * math.pi
_NOISE_CLIP = 3.0
_IDLE_CHUNK_OF_TAU = 0.05  # idle periods longer than this fraction of the thermal time constant are split
_tuple_new = tuple.__new__  # builds a NamedTuple without its Python-level __new__ (a third of the cost)
#: Per (work, setting), the cost-table columns a run reads, in this order (one row per lookup).
_ROW = ("latency_s", "busy_dyn_j", "gpu_busy_s", "cpu_dyn_j", "gpu_dyn_j")

#: The emulated power monitor's rails (``Measurement.rails_w`` order): the CPU domain, the GPU domain, and the
#: rest of the board (memory / EMC and static power).
RAIL_NAMES: tuple[str, ...] = ("cpu", "gpu", "soc")

# ------------------------------------------------------------------------------------------ kernel layouts
# (Module-level ints: numba compiles them in as constants.)

# The boards' float state, a float64 array (N, _KF), one row per board, columns: simulated time (s), temperature
# (°C), time left before a pending switch takes effect (s), the monitor's next poll (s), its held board reading (W)
# and rail readings (W, _RAIL .. _RAIL + 2).
_TIME, _TEMP, _PEND_S, _NEXT, _HELD, _RAIL = 0, 1, 2, 3, 4, 5
_KF = 8
# The boards' int state, an int64 array (N, _KI), columns: requested levels (_REQ .. _REQ + 2), effective levels
# (_EFF .. _EFF + 2), their flat setting index, the setting held before the pending switch, the throttle flag, the
# noise counter and the noise key (the uint64's bits).
_REQ, _EFF, _IDX, _PEND_IDX, _THR, _COUNT, _KEY = 0, 3, 6, 7, 8, 9, 10
_KI = 11
#: The output rows of _k_run and _k_idle: the Measurement's fields in order (``rails_w`` three rows), then the
#: GPU busy time (s) the governors read.
_OUT = ("latency_s", "energy_j", "measured_energy_j", "avg_power_w", "temp_c", "cpu_hz", "gpu_hz", "emc_hz",
        "throttled", "transition_s", "gpu_util", "time_s", "rail_cpu_w", "rail_gpu_w", "rail_soc_w", "gpu_busy_s")
_O_LAT, _O_ENERGY, _O_MEAS, _O_POWER, _O_TEMP, _O_HZ, _O_THR, _O_TRANS, _O_UTIL, _O_TIME, _O_RAIL, _O_BUSY = (
    0, 1, 2, 3, 4, 5, 8, 9, 10, 11, 12, 15)
_KO = 16
# The device array (float64): coefficients, then _P_COLS columns per flat setting (idle dynamic power, leakage at
# T_ref, the CPU's idle and leakage share, the GPU's, W), then the CPU, GPU and EMC clock tables (Hz). Level
# counts and caps are stored as floats (exact).
(_C_AMB, _C_RTH, _C_TAU, _C_TRIP, _C_RELEASE, _C_PERIOD, _C_NZ_LAT, _C_NZ_POW, _C_STALL, _C_DELAY, _C_STATIC,
 _C_LEAK_K, _C_T_REF, _C_CHUNK, _C_MAX, _C_CAP, _C_N, _C_CRIT) = (
    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 13, 14, 15, 16, 19, 22, 25)
_C_HEAD = 26
_P_COLS = 6

_BOARD_0 = np.zeros(1, dtype=np.int64)  # the scalar backend's board index (reset) and work choice (run)
_NO_LEVELS = np.zeros((0, 3), dtype=np.int64)  # run_idle's levels: no request before the run
_ACTIVE_1 = np.ones(1, dtype=bool)  # the scalar backend's idle mask


def _out_array(n: int, rows: int = _KO) -> np.ndarray:
    """A fresh kernel output for ``n`` boards, ``(rows, m)`` with ``m >= n`` (the kernels write columns ``0 .. n-1``):
    rows padded to an odd number of cache lines, since rows a power of two of 4 KiB apart would all fall into one
    cache set (and a board writes one value per row). C-contiguous: numba dispatches other layouts slower."""
    lines = -(-n // 8)
    return np.empty((rows, 8 * (lines + 1 - lines % 2)))


def _kernel_arg(a: Any, dtype: Any, shape: tuple[int, ...]) -> np.ndarray:
    """``a`` as a writable C-contiguous array of ``dtype`` and ``shape`` (broadcast), the one array type a kernel
    is compiled for (numba compiles read-only or strided arrays anew). Raises ``ValueError`` or ``TypeError``."""
    a = np.asarray(a, dtype=dtype)
    if a.shape != shape:
        a = np.broadcast_to(a, shape)
    if not (a.flags.c_contiguous and a.flags.writeable):
        a = np.array(a, dtype=dtype, order="C")
    return a


def _device_array(spec: DeviceSpec, cooling: Cooling, max_levels: tuple[int, int, int],
                  power: PowerTable) -> np.ndarray:
    """The kernels' per-device constants (layout above), for ``spec`` under ``cooling`` at the power mode whose
    top levels are ``max_levels`` and whose power table is ``power``."""
    m = spec.model
    head = np.zeros(_C_HEAD)
    head[_C_AMB] = cooling.ambient_c
    head[_C_RTH] = m.r_th_fan_c_per_w if cooling.fan else m.r_th_passive_c_per_w
    head[_C_TAU] = m.tau_s
    head[_C_TRIP] = spec.thermal.throttle_c
    head[_C_CRIT] = spec.thermal.critical_c
    head[_C_RELEASE] = spec.thermal.throttle_c - m.throttle_hysteresis_c
    head[_C_PERIOD] = m.sensor_period_s
    head[_C_NZ_LAT] = m.noise_latency
    head[_C_NZ_POW] = m.noise_power
    head[_C_STALL] = m.transition_stall_s
    head[_C_DELAY:_C_DELAY + 3] = m.transition_delay_s
    head[_C_STATIC] = power.static_w
    head[_C_LEAK_K] = m.leak_temp_coeff_per_c
    head[_C_T_REF] = m.temp_ref_c
    head[_C_CHUNK] = m.tau_s * _IDLE_CHUNK_OF_TAU
    head[_C_MAX:_C_MAX + 3] = max_levels
    head[_C_CAP:_C_CAP + 3] = _throttle_caps(spec, max_levels)
    head[_C_N:_C_N + 3] = spec.n_levels
    rows = np.stack((power.idle_dyn_w, power.leak_ref_w, power.cpu_idle_w, power.cpu_leak_ref_w, power.gpu_idle_w,
                     power.gpu_leak_ref_w), axis=1)
    return np.concatenate((head, rows.ravel(), spec.cpu_freqs_hz, spec.gpu_freqs_hz, spec.emc_freqs_hz))


# ------------------------------------------------------------------------------------------ compiled helpers
# Plain Python functions; _kernels() registers them with numba's register_jitable, so the kernels call them.


class _Consts(NamedTuple):
    """The device constants the kernels read, unpacked from the device array once per kernel call (a tuple stays
    in registers; an array would be read again after every store to the state, which the compiler cannot tell
    apart from it)."""

    period_s: float  # the power monitor's polling period (s)
    ambient_c: float  # ambient temperature (°C)
    r_th: float  # thermal resistance (°C/W)
    tau_s: float  # thermal time constant (s)
    trip_c: float  # throttle trip (°C)
    release_c: float  # throttle release (°C)
    noise_latency: float  # σ of the latency noise
    noise_power: float  # σ of the power noise
    stall_s: float  # stall per switched domain (s)
    delays_s: tuple[float, float, float]  # CPU, GPU, EMC switch delays (s)
    static_w: float  # board static power (W)
    leak_k: float  # leakage temperature coefficient (1/°C)
    t_ref_c: float  # leakage reference temperature (°C)
    chunk_s: float  # longest idle chunk (s)
    max_levels: tuple[int, int, int]  # the power mode's top levels
    throttle_caps: tuple[int, int, int]  # the levels a throttled board is capped at
    n_gpu: int  # GPU levels
    n_emc: int  # EMC levels
    freq_at: tuple[int, int, int]  # where the CPU, GPU and EMC clock tables start in the device array
    critical_c: float  # critical trip (°C): a board at or above it shuts down (the kernels return -2 - i)


def _consts(dev: np.ndarray) -> _Consts:
    """The :class:`_Consts` of a device array (:func:`_device_array`)."""
    n_cpu, n_gpu, n_emc = int(dev[_C_N]), int(dev[_C_N + 1]), int(dev[_C_N + 2])
    f_cpu = _C_HEAD + _P_COLS * n_cpu * n_gpu * n_emc
    return _Consts(dev[_C_PERIOD], dev[_C_AMB], dev[_C_RTH], dev[_C_TAU], dev[_C_TRIP], dev[_C_RELEASE],
                   dev[_C_NZ_LAT], dev[_C_NZ_POW], dev[_C_STALL], (dev[_C_DELAY], dev[_C_DELAY + 1], dev[_C_DELAY + 2]),
                   dev[_C_STATIC], dev[_C_LEAK_K], dev[_C_T_REF], dev[_C_CHUNK],
                   (int(dev[_C_MAX]), int(dev[_C_MAX + 1]), int(dev[_C_MAX + 2])),
                   (int(dev[_C_CAP]), int(dev[_C_CAP + 1]), int(dev[_C_CAP + 2])), n_gpu, n_emc,
                   (f_cpu, f_cpu + n_cpu, f_cpu + n_cpu + n_gpu), dev[_C_CRIT])


def _splitmix64(x: int) -> int:
    """splitmix64's output function of a 64-bit state ``x`` (a Python int, or a uint64 in compiled code)."""
    x = (x + 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


def _normals(key: Any, counter: int) -> tuple[float, float]:
    """Two clipped standard normals from the counter-based stream ``(key, counter)`` (Box–Muller of splitmix64
    of ``key + 2·counter`` and ``key + 2·counter + 1``; compiled code only: ``key`` a uint64)."""
    x = key + np.uint64(2) * np.uint64(counter)
    u1 = (float(_splitmix64(x) >> np.uint64(11)) + 1.0) * 2.0**-53
    u2 = float(_splitmix64(x + np.uint64(1)) >> np.uint64(11)) * 2.0**-53
    r = math.sqrt(-2.0 * math.log(u1))
    cos = math.cos(_TWO_PI * u2)
    # sin(2πu) from the cosine: its sign is + for u < 1/2 (cheaper than a second transcendental).
    sin = math.sqrt(max(0.0, 1.0 - cos * cos))
    z1, z2 = r * cos, math.copysign(r * sin, 0.5 - u2)
    return min(max(z1, -_NOISE_CLIP), _NOISE_CLIP), min(max(z2, -_NOISE_CLIP), _NOISE_CLIP)


def _stall(stall_s: float, cpu: Any, gpu: Any, emc: Any) -> float:
    """The stall (s) of switching the domains flagged (bools), each ``stall_s`` (s)."""
    return stall_s * (cpu + gpu + emc)


def _settle(fs: np.ndarray, ist: np.ndarray, i: int, k: _Consts) -> float:
    """Board ``i`` switches to its requested levels, capped by the power mode or, throttled, the throttle caps.

    Until the slowest changed domain's delay has passed, work runs at the setting held before the first of the
    pending switches. Returns the stall (s); 0 when nothing changes.
    """
    caps = k.throttle_caps if ist[i, _THR] != 0 else k.max_levels
    c, g, e = min(ist[i, _REQ], caps[0]), min(ist[i, _REQ + 1], caps[1]), min(ist[i, _REQ + 2], caps[2])
    cc, gc, ec = c != ist[i, _EFF], g != ist[i, _EFF + 1], e != ist[i, _EFF + 2]
    if not (cc or gc or ec):
        return 0.0
    d = k.delays_s
    delay = max(max(cc * d[0], gc * d[1]), ec * d[2])
    if fs[i, _PEND_S] <= 0.0:  # (where nothing is pending, the old setting is the current one)
        ist[i, _PEND_IDX] = ist[i, _IDX]
    fs[i, _PEND_S] = max(fs[i, _PEND_S], delay)
    ist[i, _EFF], ist[i, _EFF + 1], ist[i, _EFF + 2] = c, g, e
    ist[i, _IDX] = (c * k.n_gpu + g) * k.n_emc + e
    return _stall(k.stall_s, cc, gc, ec)


def _advance(t0: float, nxt: float, held: float, temp: float, throttled: bool, duration_s: float, power_w: float,
             k: _Consts) -> tuple[float, float, float, float, bool]:
    """Advance a board's power monitor, temperature and throttling over one constant-power segment of
    ``duration_s`` (s) at ``power_w`` (W) that starts at ``t0`` (s), the monitor's next poll at ``nxt`` (s) and
    its reading ``held`` (W), the board at ``temp`` (°C).

    Returns the energy the power monitor attributes to the segment (J), the next poll, the held reading, the
    temperature and the throttle. A zero-length segment leaves the temperature and the throttle as they were.
    (Scalars in and out: compiled, they stay in registers and no array reference is counted.)
    """
    t1 = t0 + duration_s
    # Power monitor: sample-and-hold at fixed polling instants.
    measured = held * duration_s
    if nxt <= t1:
        measured = held * (nxt - t0) + power_w * (t1 - nxt)
        nxt = nxt + k.period_s * (np.floor((t1 - nxt) / k.period_s) + 1.0)
        held = power_w
    # First-order thermal model, exact for constant power over the segment; the trip with its hysteresis.
    if duration_s > 0:
        t_ss = k.ambient_c + power_w * k.r_th
        temp = t_ss + (temp - t_ss) * math.exp(-duration_s / k.tau_s)
        throttled = (temp >= k.trip_c) or (throttled and temp >= k.release_c)
    return measured, nxt, held, temp, throttled


def _snapshot(fs: np.ndarray, ist: np.ndarray, i: int, dev: np.ndarray, k: _Consts, out: np.ndarray) -> None:
    """Write board ``i``'s state after a segment (temperature, clocks, throttle, time) into ``out``."""
    out[_O_TEMP, i] = fs[i, _TEMP]
    out[_O_HZ, i] = dev[k.freq_at[0] + ist[i, _EFF]]
    out[_O_HZ + 1, i] = dev[k.freq_at[1] + ist[i, _EFF + 1]]
    out[_O_HZ + 2, i] = dev[k.freq_at[2] + ist[i, _EFF + 2]]
    out[_O_THR, i] = ist[i, _THR]
    out[_O_TIME, i] = fs[i, _TIME]


def _record(out: np.ndarray) -> tuple:
    """Board 0's :class:`~e4gym.hardware.backend.Measurement` fields in ``out``, as a tuple (numba boxes it into
    Python floats, a bool and a tuple of rails: the scalar backend's Measurement, built without NumPy scalars)."""
    return (out[_O_LAT, 0], out[_O_ENERGY, 0], out[_O_MEAS, 0], out[_O_POWER, 0], out[_O_TEMP, 0], out[_O_HZ, 0],
            out[_O_HZ + 1, 0], out[_O_HZ + 2, 0], out[_O_THR, 0] != 0.0, out[_O_TRANS, 0], out[_O_UTIL, 0],
            out[_O_TIME, 0], (out[_O_RAIL, 0], out[_O_RAIL + 1, 0], out[_O_RAIL + 2, 0]))


# ------------------------------------------------------------------------------------------ the kernels
# The board loops return -1, or i >= 0: board i's input is invalid (nothing changed), or -2 - i: board i's
# temperature is at or past its critical trip, where a real board shuts down (or its leakage overflowed: thermal
# runaway; the boards before it have moved on).


def _k_reset(fs: np.ndarray, ist: np.ndarray, dev: np.ndarray, index: np.ndarray, keys: np.ndarray,
             temp_c: float) -> int:
    """Reset boards ``index`` with noise ``keys`` (uint64 bits as int64): time 0, temperature ``temp_c`` (°C),
    top levels, nothing pending, the monitor's first poll at a seeded phase within one period."""
    k = _consts(dev)
    scale = leak_scale(k.leak_k, k.t_ref_c, temp_c)
    for j in range(index.shape[0]):
        i = index[j]
        fs[i, _TEMP] = temp_c
        if not (scale < math.inf and temp_c < k.critical_c):
            return -2 - i
        fs[i, _TIME] = fs[i, _PEND_S] = 0.0
        c, g, e = k.max_levels
        ist[i, _REQ], ist[i, _REQ + 1], ist[i, _REQ + 2] = c, g, e
        ist[i, _EFF], ist[i, _EFF + 1], ist[i, _EFF + 2] = c, g, e
        idx = (c * k.n_gpu + g) * k.n_emc + e
        ist[i, _IDX] = ist[i, _PEND_IDX] = idx
        ist[i, _THR] = ist[i, _COUNT] = 0
        ist[i, _KEY] = keys[j]
        fs[i, _NEXT] = float(np.uint64(keys[j]) >> np.uint64(11)) * 2.0**-53 * k.period_s
        p = _C_HEAD + _P_COLS * idx
        power = floor_power(k.static_w, dev[p], dev[p + 1], scale)
        cpu, gpu = dev[p + 2] + dev[p + 3] * scale, dev[p + 4] + dev[p + 5] * scale
        fs[i, _HELD] = power
        fs[i, _RAIL], fs[i, _RAIL + 1], fs[i, _RAIL + 2] = cpu, gpu, power - cpu - gpu
    return -1


def _k_request(fs: np.ndarray, ist: np.ndarray, dev: np.ndarray, levels: np.ndarray, stall: np.ndarray) -> int:
    """Request ``levels`` (int64 ``(N, 3)``) on every board; ``stall[i]`` the stall (s) board ``i``'s switch will
    cost. Returns the first board with a level outside the device's tables (nothing requested), or -1."""
    k = _consts(dev)
    n = fs.shape[0]
    n_levels = (int(dev[_C_N]), k.n_gpu, k.n_emc)
    for i in range(n):
        for d in range(3):
            if not 0 <= levels[i, d] < n_levels[d]:
                return i
    for i in range(n):
        caps = k.throttle_caps if ist[i, _THR] != 0 else k.max_levels
        c, g, e = levels[i, 0], levels[i, 1], levels[i, 2]
        ist[i, _REQ], ist[i, _REQ + 1], ist[i, _REQ + 2] = c, g, e
        stall[i] = _stall(k.stall_s, min(c, caps[0]) != ist[i, _EFF], min(g, caps[1]) != ist[i, _EFF + 1],
                          min(e, caps[2]) != ist[i, _EFF + 2])
    return -1


def _run_boards(fs: np.ndarray, ist: np.ndarray, dev: np.ndarray, table: np.ndarray, n_set: int, choice: np.ndarray,
                out: np.ndarray) -> int:
    """Board ``i`` runs work ``choice[i]`` of ``table`` (``n_set`` rows per work) after settling its levels.

    Returns the first board whose choice is not a work of ``table`` (nothing run), -2 - i on overflow, or -1.
    """
    k = _consts(dev)
    n = fs.shape[0]
    n_works = table.shape[0] // n_set
    for i in range(n):
        if not 0 <= choice[i] < n_works:
            return i
    for i in range(n):
        scale = leak_scale(k.leak_k, k.t_ref_c, fs[i, _TEMP])  # (the switch does not change the temperature)
        if not (scale < math.inf and fs[i, _TEMP] < k.critical_c):
            return -2 - i
        stall = _settle(fs, ist, i, k)
        idx = ist[i, _IDX]
        base = choice[i] * n_set
        r = base + idx
        lat, dyn, gbusy, cpu_dyn, gpu_dyn = table[r, 0], table[r, 1], table[r, 2], table[r, 3], table[r, 4]
        extra = 0.0
        pending = fs[i, _PEND_S]
        if pending > 0.0:
            # The first pending_s seconds still run at the old setting: blend its row with the new one.
            o = base + ist[i, _PEND_IDX]
            x = min(pending / table[o, 0], 1.0)
            y = 1.0 - x
            blended = x * table[o, 0] + y * lat
            extra = blended - lat
            dyn = x * table[o, 1] + y * dyn
            gbusy = x * table[o, 2] + y * gbusy
            cpu_dyn = x * table[o, 3] + y * cpu_dyn
            gpu_dyn = x * table[o, 4] + y * gpu_dyn
            fs[i, _PEND_S] = max(0.0, pending - blended)
            lat = blended
        counter = ist[i, _COUNT]
        ist[i, _COUNT] = counter + 1
        z_lat, z_pow = _normals(np.uint64(ist[i, _KEY]), counter)
        f_lat, f_pow = 1.0 + k.noise_latency * z_lat, 1.0 + k.noise_power * z_pow
        p = _C_HEAD + _P_COLS * idx
        p_floor = floor_power(k.static_w, dev[p], dev[p + 1], scale)
        power = (p_floor + dyn / lat) * f_pow
        run_lat = lat
        lat = lat * f_lat
        # The stall runs at the idle floor before the work starts.
        total = lat + stall
        energy = power * lat + p_floor * stall
        avg_power = energy / total
        t0, poll = fs[i, _TIME], fs[i, _NEXT]
        measured, fs[i, _NEXT], fs[i, _HELD], fs[i, _TEMP], thr = _advance(
            t0, poll, fs[i, _HELD], fs[i, _TEMP], ist[i, _THR] != 0, total, avg_power, k)
        ist[i, _THR] = thr
        fs[i, _TIME] = t0 + total
        r0, r1, r2 = fs[i, _RAIL], fs[i, _RAIL + 1], fs[i, _RAIL + 2]
        if poll <= t0 + total:  # the monitor polled during the run: it reads the run's rails from then on
            cpu_floor, gpu_floor = dev[p + 2] + dev[p + 3] * scale, dev[p + 4] + dev[p + 5] * scale
            # Each rail as the board power: ((floor + busy / run_lat) * f_pow * lat + floor * stall) / total.
            k_busy = f_pow * lat / total
            k_floor = k_busy + stall / total
            k_busy = k_busy / run_lat
            cpu_w = cpu_floor * k_floor + cpu_dyn * k_busy
            gpu_w = gpu_floor * k_floor + gpu_dyn * k_busy
            fresh = max(t0 + total - poll, 0.0) / total  # the share of the run after the poll
            cpu_m = r0 + (cpu_w - r0) * fresh
            gpu_m = r1 + (gpu_w - r1) * fresh
            fs[i, _RAIL], fs[i, _RAIL + 1], fs[i, _RAIL + 2] = cpu_w, gpu_w, avg_power - cpu_w - gpu_w
            r0, r1, r2 = cpu_m, gpu_m, measured / total - cpu_m - gpu_m
        busy = gbusy * f_lat
        out[_O_LAT, i] = total
        out[_O_ENERGY, i] = energy
        out[_O_MEAS, i] = measured
        out[_O_POWER, i] = avg_power
        out[_O_TRANS, i] = stall + extra * f_lat
        out[_O_UTIL, i] = min(busy / total, 1.0)
        out[_O_RAIL, i], out[_O_RAIL + 1, i], out[_O_RAIL + 2, i] = r0, r1, r2
        out[_O_BUSY, i] = busy
        _snapshot(fs, ist, i, dev, k, out)
    return -1


def _idle_boards(fs: np.ndarray, ist: np.ndarray, dev: np.ndarray, duration: np.ndarray, active: np.ndarray,
                 out: np.ndarray) -> int:
    """Every board ``i`` where ``active[i]`` settles its levels and idles ``duration[i]`` seconds, in chunks of at
    most ``chunk_s`` so that leakage follows the temperature.

    Returns the first board whose duration is not a finite number >= 0 (nothing changed), -2 - i on overflow,
    or -1. Boards outside the mask are untouched: zero figures, their current state and held rails.
    """
    k = _consts(dev)
    n = fs.shape[0]
    for i in range(n):
        if not (duration[i] >= 0.0 and duration[i] < math.inf):  # (NaN fails both)
            return i
    for i in range(n):
        if not active[i]:  # untouched: zero figures, the floor power now, the held rails
            scale = leak_scale(k.leak_k, k.t_ref_c, fs[i, _TEMP])
            if not scale < math.inf:
                return -2 - i
            p = _C_HEAD + _P_COLS * ist[i, _IDX]
            duration_s = energy = measured = stall = 0.0
            power = floor_power(k.static_w, dev[p], dev[p + 1], scale)
            h0, h1, h2 = fs[i, _RAIL], fs[i, _RAIL + 1], fs[i, _RAIL + 2]
        else:
            duration_s = duration[i]
            stall = _settle(fs, ist, i, k)
            p = _C_HEAD + _P_COLS * ist[i, _IDX]
            fs[i, _PEND_S] = max(0.0, fs[i, _PEND_S] - duration_s)
            chunks = max(1, math.ceil(duration_s / k.chunk_s))
            dt = duration_s / chunks if chunks > 1 else duration_s
            energy = measured = hold = power = 0.0
            # Rail energies (J) the monitor attributes to the period, and the time (s) the current reading is
            # held for that they do not include yet; without a poll the rails read the held values throughout.
            e0 = e1 = e2 = 0.0
            polled_any = False
            for _ in range(chunks):
                scale = leak_scale(k.leak_k, k.t_ref_c, fs[i, _TEMP])
                if not (scale < math.inf and fs[i, _TEMP] < k.critical_c):
                    return -2 - i
                power = floor_power(k.static_w, dev[p], dev[p + 1], scale)
                energy = energy + power * dt
                t0, poll = fs[i, _TIME], fs[i, _NEXT]
                m, fs[i, _NEXT], fs[i, _HELD], fs[i, _TEMP], thr = _advance(
                    t0, poll, fs[i, _HELD], fs[i, _TEMP], ist[i, _THR] != 0, dt, power, k)
                ist[i, _THR] = thr
                fs[i, _TIME] = t0 + dt
                measured = measured + m
                if not poll <= t0 + dt:
                    hold = hold + dt
                    continue
                cpu_w, gpu_w = dev[p + 2] + dev[p + 3] * scale, dev[p + 4] + dev[p + 5] * scale
                held, fresh = hold + (poll - t0), t0 + dt - poll
                e0 = e0 + (fs[i, _RAIL] * held + cpu_w * fresh)
                e1 = e1 + (fs[i, _RAIL + 1] * held + gpu_w * fresh)
                e2 = e2 + (fs[i, _RAIL + 2] * held + (power - cpu_w - gpu_w) * fresh)
                fs[i, _RAIL], fs[i, _RAIL + 1], fs[i, _RAIL + 2] = cpu_w, gpu_w, power - cpu_w - gpu_w
                hold = 0.0
                polled_any = True
            h0, h1, h2 = fs[i, _RAIL], fs[i, _RAIL + 1], fs[i, _RAIL + 2]
            if polled_any:
                h0, h1, h2 = ((e0 + h0 * hold) / duration_s, (e1 + h1 * hold) / duration_s,
                              (e2 + h2 * hold) / duration_s)
            if chunks > 1:  # the mean power (``power`` is the last chunk's)
                power = energy / duration_s
        out[_O_LAT, i] = duration_s
        out[_O_ENERGY, i] = energy
        out[_O_MEAS, i] = measured
        out[_O_POWER, i] = power
        out[_O_TRANS, i] = stall
        out[_O_UTIL, i] = out[_O_BUSY, i] = 0.0
        out[_O_RAIL, i], out[_O_RAIL + 1, i], out[_O_RAIL + 2, i] = h0, h1, h2
        _snapshot(fs, ist, i, dev, k, out)
    return -1


def _k_run(fs: np.ndarray, ist: np.ndarray, dev: np.ndarray, table: np.ndarray, n_set: int, choice: np.ndarray,
           out: np.ndarray) -> tuple[int, float, tuple]:
    """:func:`_run_boards`; returns its code, board 0's GPU busy time (s) and board 0's :func:`_record`."""
    err = _run_boards(fs, ist, dev, table, n_set, choice, out)
    return err, out[_O_BUSY, 0], _record(out)


def _k_idle(fs: np.ndarray, ist: np.ndarray, dev: np.ndarray, duration: np.ndarray, active: np.ndarray,
            out: np.ndarray) -> tuple[int, tuple]:
    """:func:`_idle_boards`; returns its code and board 0's :func:`_record`."""
    return _idle_boards(fs, ist, dev, duration, active, out), _record(out)


def _k_run_idle(fs: np.ndarray, ist: np.ndarray, dev: np.ndarray, table: np.ndarray, n_set: int, choice: np.ndarray,
                slot: np.ndarray, out: np.ndarray, levels: np.ndarray) -> tuple[int, float, tuple, tuple | None]:
    """Where ``levels`` (int64 ``(N, 3)``) has rows, every board first requests them (:func:`_k_request`); then
    :func:`_run_boards`, then every board idles for what is left of its slot after its run: ``slot[i] −`` its
    run's latency (s), where that is > 0 (the others are left as their run left them: zero idle figures).
    ``out`` is ``(2 · _KO, >= N)``: the run's rows, then the idle's. Returns the code (the first board whose slot
    is not finite, whose choice is not a work or whose levels are outside the tables, in that order of checks,
    nothing requested or run; else the run's, else the idle's), board 0's GPU busy time, its run record and its
    idle record (None where board 0 did not idle: no tuple to box)."""
    n = fs.shape[0]
    out_run, out_idle = out[:_KO], out[_KO:]
    for i in range(n):
        if not abs(slot[i]) < math.inf:  # (NaN too)
            return i, 0.0, _record(out_run), None
    if levels.shape[0] > 0:
        n_works = table.shape[0] // n_set
        for i in range(n):  # (checked before the request: nothing changes when a choice is bad)
            if not 0 <= choice[i] < n_works:
                return i, 0.0, _record(out_run), None
        err = _k_request(fs, ist, dev, levels, out_idle[_O_TRANS])  # (the stalls: scratch, _settle charges them)
        if err != -1:
            return err, 0.0, _record(out_run), None
    err = _run_boards(fs, ist, dev, table, n_set, choice, out_run)
    if err == -1:
        rest = np.empty(n)
        active = np.empty(n, np.bool_)
        for i in range(n):
            d = slot[i] - out_run[_O_LAT, i]
            active[i] = d > 0.0
            rest[i] = d if d > 0.0 else 0.0
        err = _idle_boards(fs, ist, dev, rest, active, out_idle)
        if err == -1 and active[0]:
            return err, out_run[_O_BUSY, 0], _record(out_run), _record(out_idle)
    return err, out_run[_O_BUSY, 0], _record(out_run), None


@functools.cache
def _kernels() -> SimpleNamespace:
    """The compiled kernels (``reset``, ``request``, ``run``, ``idle``, ``run_idle``), compiled (or loaded from
    numba's cache in ``__pycache__``) on first use, so that importing the emulator does not import numba."""
    from numba.extending import register_jitable

    for fn in (*JITABLE, _consts, _splitmix64, _normals, _stall, _settle, _advance, _snapshot, _record, _run_boards,
               _idle_boards, _k_request):
        # error_model="numpy": IEEE division (inf, nan) and no division checks, as NumPy and the old code had.
        # (numba-level inlining would triple the compile time; LLVM inlines them anyway.)
        register_jitable(error_model="numpy")(fn)

    jit = njit_cached
    return SimpleNamespace(reset=jit(_k_reset), request=jit(_k_request), run=jit(_k_run), idle=jit(_k_idle),
                           run_idle=jit(_k_run_idle))


# ------------------------------------------------------------------------------------------ the Python side


def seed_to_key(seed: int | None) -> int:
    """Map a seed (or ``None`` for entropy from the OS) to a 64-bit noise key."""
    if seed is None:
        seed = int(np.random.SeedSequence().entropy) & _M64
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer or None, got {seed!r}")
    return _splitmix64(int(seed) & _M64)


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


_verified: list[bool] = []  # set once the compiled kernels were checked against the power model (per process)


class _Boards:
    """What the two emulators share: the device and its tables, the kernels and the state arrays ``_f``
    (float64 ``(N, _KF)``) and ``_i`` (int64 ``(N, _KI)``) they update (see the module docstring)."""

    spec: DeviceSpec
    measured: Any
    power: PowerTable
    _f: np.ndarray
    _i: np.ndarray

    def _setup(self, power_mode: str | None, cooling: Cooling | None, initial_temp_c: float | None) -> None:
        spec = self.spec
        self.mode = spec.power_mode(power_mode)
        self.cooling = cooling or Cooling(fan=spec.thermal.fan, ambient_c=spec.thermal.ambient_c)
        self._model = spec.model
        self.power: PowerTable = power_table(spec, self.mode.cpu_online)
        #: Rails of the power monitor, in ``rails_w`` order.
        self.rail_names: tuple[str, ...] = RAIL_NAMES
        self.max_levels = spec.max_levels(power_mode)
        self._dev = _device_array(spec, self.cooling, self.max_levels, self.power)
        self._n_set = int(np.prod(spec.n_levels))  # settings: cost rows per work
        self._tables: dict[tuple[str, int], CostTable] = {}
        self._initial_temp_c = float(self.cooling.ambient_c if initial_temp_c is None else initial_temp_c)
        k = _kernels()
        self._k_reset, self._k_request, self._k_run, self._k_idle = k.reset, k.request, k.run, k.idle
        self._k_run_idle = k.run_idle

    def _fail(self, err: int, bad_input: str) -> NoReturn:
        """Raise for a kernel's error code ``err``: ``bad_input`` (a message) for board ``err`` >= 0, the
        :class:`~e4gym.errors.OverheatError` for a leakage overflow."""
        if err >= 0:
            raise SettingError(bad_input)
        temp = float(self._f[-2 - err, _TEMP])
        critical = self.spec.thermal.critical_c
        raise OverheatError(
            f"the emulated board's temperature ran away to {temp:.4g} °C, at or past its critical trip "
            f"({critical:g} °C, where a real {self.spec.full_name} shuts down): its cooling cannot hold it at this "
            f"ambient temperature ({self.cooling.ambient_c:g} °C, fan={self.cooling.fan}) and these clocks; lower "
            "ambient_c, pass fan=True or run lower clocks")

    def _verify_kernels(self) -> bool:
        """Once per process, after a reset: the compiled idle floor of board 0 must be the power model's.

        numba's cache sees edits to this file only, not to the model's jitable cores (``model.JITABLE``): a
        kernel loaded from a stale cache is recompiled (returns False: the caller resets again).
        """
        if _verified:
            return True
        temp = float(self._f[0, _TEMP])
        want = floor_power(self.power.static_w, float(self.power.idle_dyn_w[int(self._i[0, _IDX])]),
                           float(self.power.leak_ref_w[int(self._i[0, _IDX])]), leakage_scale(self._model, temp))
        _verified.append(True)
        if math.isclose(float(self._f[0, _HELD]), want, rel_tol=1e-12):
            return True
        warnings.warn("e4gym's compiled emulator kernels disagree with e4gym.hardware.model (a stale numba cache?): "
                      "recompiling them", RuntimeWarning, stacklevel=3)
        for kernel in vars(_kernels()).values():
            kernel.recompile()
        return False

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

    def _cost_rows(self, tables: list[CostTable]) -> np.ndarray:
        """The :data:`_ROW` columns of ``tables`` stacked, ``[table · settings + setting, column]`` (C order)."""
        return np.ascontiguousarray(
            np.stack([np.concatenate([getattr(t, f) for t in tables]) for f in _ROW], axis=1), dtype=np.float64)


# ------------------------------------------------------------------------------------------ the scalar backend


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
    reports the rails :attr:`rail_names` = ``("cpu", "gpu", "soc")`` (module docstring, "rails"). It is the
    kernels' N = 1: the same seed gives the numbers of a :class:`BatchedEmulator` board bit for bit.

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
        self.governors = _validate_governors(spec, governors)  # type: ignore[arg-type]
        self._setup(power_mode, cooling, initial_temp_c)
        # The state of the one board, and the kernels' output; flat memoryviews read and write single values as
        # Python ints and floats (no NumPy scalars).
        self._f = np.zeros((1, _KF))
        self._i = np.zeros((1, _KI), dtype=np.int64)
        self._out = np.zeros((_KO, 1))
        self._dur = np.zeros(1)  # the idle duration, the idle kernel's input
        self._dur_v = memoryview(self._dur)
        self._slot = np.zeros(1)  # the slot of run_then_idle, its kernel's input; its output, run and idle rows
        self._slot_v = memoryview(self._slot)
        self._levels = np.zeros((1, 3), dtype=np.int64)  # run_then_idle's levels, its kernel's input
        self._levels_v = memoryview(self._levels).cast("B").cast("q")
        self._out2 = np.zeros((2 * _KO, 1))
        self._fv = memoryview(self._f.reshape(-1))
        self._iv = memoryview(self._i.reshape(-1))
        self._rows_by_key: dict[tuple[str, int], np.ndarray] = {}
        self._last_rows: tuple = (None, None, None)
        self._throttle_caps = _throttle_caps(spec, self.max_levels)
        self._n_levels = spec.n_levels
        self._freq_tables = (spec.cpu_freqs_hz, spec.gpu_freqs_hz, spec.emc_freqs_hz)
        self._stall_s = spec.model.transition_stall_s
        self._userspace = all(v == "userspace" for v in self.governors.values())
        self._closed = False
        self.reset(seed)
        if not self._verify_kernels():
            self.reset(seed)

    # -------------------------------------------------------------------------------------- lifecycle

    def reset(self, seed: int | None = None, *, initial_temp_c: float | None = None) -> None:
        """Return the board to its initial state (time 0, ambient temperature, top levels), reseeded."""
        keys = np.array([seed_to_key(seed)], dtype=np.uint64).view(np.int64)
        temp = self._initial_temp_c if initial_temp_c is None else float(initial_temp_c)
        err = self._k_reset(self._f, self._i, self._dev, _BOARD_0, keys, temp)
        if err != -1:
            self._fail(err, "")
        self._win = [0.0, 0.0, 0.0]  # the governors' window: elapsed, CPU busy, GPU busy (s)

    def close(self) -> None:
        """Nothing to restore on an emulated board; further calls raise."""
        self._closed = True

    def __enter__(self) -> EmulatedBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -------------------------------------------------------------------------------------- helpers

    def _rows(self, work: Work, batch: int) -> np.ndarray:
        """The :data:`_ROW` costs of ``work`` at ``batch``, ``(settings, 5)`` (cached; the last one by identity)."""
        last = self._last_rows
        if last[0] is work and last[1] == batch:
            return last[2]
        key = (work.key, batch)
        rows = self._rows_by_key.get(key)
        if rows is None:
            rows = self._rows_by_key[key] = self._cost_rows([self.table(work, batch)])
        self._last_rows = (work, batch, rows)
        return rows

    def _check_open(self) -> None:
        if self._closed:
            raise SettingError("this EmulatedBackend is closed; create a new one")

    # -------------------------------------------------------------------------------------- Backend API

    @property
    def levels(self) -> tuple[int, int, int]:
        """Current effective levels ``(cpu, gpu, emc)`` (after caps and throttling)."""
        iv = self._iv
        return (iv[_EFF], iv[_EFF + 1], iv[_EFF + 2])

    @property
    def time_s(self) -> float:
        """Simulated time since the last reset (s)."""
        return self._fv[_TIME]

    @property
    def temp_c(self) -> float:
        """Current temperature (°C)."""
        return self._fv[_TEMP]

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
        iv = self._iv
        if self._userspace:
            iv[_REQ], iv[_REQ + 1], iv[_REQ + 2] = c, g, e
        else:
            for d, (dom, level) in enumerate((("cpu", c), ("gpu", g), ("emc", e))):
                if self.governors[dom] == "userspace":
                    iv[_REQ + d] = level
            c, g, e = iv[_REQ], iv[_REQ + 1], iv[_REQ + 2]
        mc, mg, me = self._throttle_caps if iv[_THR] else self.max_levels
        return _stall(self._stall_s, (c if c < mc else mc) != iv[_EFF], (g if g < mg else mg) != iv[_EFF + 1],
                      (e if e < me else me) != iv[_EFF + 2])

    def run(self, work: Work, batch: int = 1) -> Measurement:
        """Run ``work`` (``batch`` inferences back to back in one launch) at the current clocks."""
        if self._closed:
            self._check_open()
        last = self._last_rows
        rows = last[2] if last[0] is work and last[1] == batch else self._rows(work, batch)
        err, busy, m = self._k_run(self._f, self._i, self._dev, rows, self._n_set, _BOARD_0, self._out)
        if err != -1:
            self._fail(err, "")
        if not self._userspace:
            self._govern(m[0], m[0], busy)
        return _tuple_new(Measurement, m)

    def idle(self, duration_s: float) -> Measurement:
        """Stay idle for ``duration_s`` (s) at the current clocks (e.g. waiting for the next frame)."""
        if self._closed:
            self._check_open()
        if not duration_s >= 0.0 or not math.isfinite(duration_s):
            raise SettingError(f"idle duration must be a finite number of seconds >= 0, got {duration_s!r}")
        self._dur_v[0] = float(duration_s)
        err, m = self._k_idle(self._f, self._i, self._dev, self._dur, _ACTIVE_1, self._out)
        if err != -1:
            self._fail(err, f"idle duration must be a finite number of seconds >= 0, got {duration_s!r}")
        if not self._userspace:
            self._govern(m[0], 0.0, 0.0)
        return _tuple_new(Measurement, m)

    def run_then_idle(self, work: Work, slot_s: float, batch: int = 1,
                      levels: tuple[int, int, int] | None = None) -> tuple[Measurement, Measurement | None]:
        """Request ``levels`` (as :meth:`apply`, if given), run ``work``, then idle for what is left of ``slot_s``
        (s) after the run: one frame's slot in a stream (:func:`~e4gym.hardware.backend.run_then_idle`, which
        defines it; here one compiled call where every domain is ``userspace``, else apply, run and idle with the
        kernel governors between them).

        Returns:
            The run's :class:`Measurement`, and the idle's (None when the run took the whole slot).
        """
        if self._closed:
            self._check_open()
        if not self._userspace:
            return run_then_idle_separately(self, work, slot_s, batch, levels)
        if levels is None:
            if slot_s <= 0.0:  # a board a period or more behind cannot idle after this frame: the run alone
                return self.run(work, batch), None
            req = _NO_LEVELS
        else:
            c, g, e = levels
            if not (type(c) is int and type(g) is int and type(e) is int):
                self.spec.check_levels(c, g, e)  # raises for anything that is not a level index
                c, g, e = int(c), int(g), int(e)
            req, lv = self._levels, self._levels_v
            try:
                lv[0], lv[1], lv[2] = c, g, e
            except (ValueError, OverflowError):  # beyond int64
                self.spec.check_levels(c, g, e)  # raises naming the level outside the tables
                raise
        last = self._last_rows
        rows = last[2] if last[0] is work and last[1] == batch else self._rows(work, batch)
        self._slot_v[0] = slot_s
        err, _, m, mi = self._k_run_idle(self._f, self._i, self._dev, rows, self._n_set, _BOARD_0, self._slot,
                                         self._out2, req)
        if err != -1:
            if err >= 0 and abs(slot_s) < math.inf:
                self.spec.check_levels(c, g, e)  # raises naming the level outside the tables
            self._fail(err, f"slot_s must be a finite number of seconds, got {slot_s!r}")
        return _tuple_new(Measurement, m), (None if mi is None else _tuple_new(Measurement, mi))

    def read_sensors(self) -> SensorReading:
        """The power monitor's latest reading (board and rails), the temperature and the clocks now."""
        fv, iv, f = self._fv, self._iv, self._freq_tables
        return SensorReading(
            power_w=fv[_HELD],
            temp_c=fv[_TEMP],
            cpu_hz=f[0][iv[_EFF]],
            gpu_hz=f[1][iv[_EFF + 1]],
            emc_hz=f[2][iv[_EFF + 2]],
            throttled=iv[_THR] != 0,
            time_s=fv[_TIME],
            rails_w=(fv[_RAIL], fv[_RAIL + 1], fv[_RAIL + 2]),
        )

    # -------------------------------------------------------------------------------------- governors

    def _govern(self, elapsed: float, busy_cpu: float, busy_gpu: float) -> None:
        """Advance the governors' window (s); at its end, each governed domain requests its governor's level."""
        if self._userspace:
            return
        w = self._win
        w[0] += elapsed
        w[1] += busy_cpu
        w[2] += busy_gpu
        if w[0] < self.spec.model.governor_period_s:
            return
        loads = (w[1] / w[0], w[2] / w[0], 1.0)
        iv, gov = self._iv, self.governors
        for d, dom in enumerate(("cpu", "gpu", "emc")):
            if gov[dom] != "userspace":
                iv[_REQ + d] = int(GOVERNORS[gov[dom]](iv[_EFF + d], min(loads[d], 1.0), self._freq_tables[d],
                                                       self.max_levels[d]))
        self._win = [0.0, 0.0, 0.0]


# ------------------------------------------------------------------------------------------ the batched emulator


@dataclass
class MeasurementBatch:
    """:class:`~e4gym.hardware.backend.Measurement` for N boards: every field an array of shape ``(N,)``, but
    ``rails_w``, of shape ``(N, len(RAIL_NAMES))`` (the measured ``cpu``, ``gpu`` and ``soc`` rails, W; a
    transposed view of a rail-major array). Fresh arrays: later calls never change them."""

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


class BatchedEmulator(_Boards):
    """N independent emulated boards of one device, stepped together by the compiled kernels.

    Board ``i`` with seed ``s`` produces the same numbers as ``EmulatedBackend(device, seed=s)`` given the
    same calls, bit for bit, whatever N is. Clocks are set by the caller only (all domains ``userspace``); use
    :class:`EmulatedBackend` to emulate kernel governors.

    Args:
        device: a :class:`DeviceSpec` or a device name.
        seeds: one seed per board (its length is N).
        power_mode / cooling / initial_temp_c: as for :class:`EmulatedBackend`.
    """

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
        self.n = len(seeds)
        if self.n < 1:
            raise ConfigError("BatchedEmulator needs at least one seed (one board)")
        self._setup(power_mode, cooling, initial_temp_c)
        self._f = np.zeros((self.n, _KF))
        self._i = np.zeros((self.n, _KI), dtype=np.int64)
        self._boards = np.arange(self.n)
        self._zeros = np.zeros(self.n, dtype=np.int64)  # every board runs work 0
        self._all = np.ones(self.n, dtype=bool)  # every board idles
        self._stacks: dict[tuple[tuple[str, ...], int], tuple[np.ndarray, int]] = {}
        self._last_stack: tuple | None = None
        self.reset(self._boards, seeds)
        if not self._verify_kernels():
            self.reset(self._boards, seeds)

    def reset(self, index: np.ndarray, seeds: list[int] | np.ndarray) -> None:
        """Reset boards ``index`` (int array) with ``seeds`` (one per index) to their initial state."""
        try:
            index = self._boards[np.asarray(index, dtype=np.int64)].ravel()
        except IndexError:
            raise ConfigError(f"board indices must be in 0..{self.n - 1}, got {index!r}") from None
        if len(seeds) != index.shape[0]:
            raise ConfigError(f"reset needs one seed per board index: {len(seeds)} seeds for {index.shape[0]} boards")
        keys = np.asarray([seed_to_key(int(s)) for s in seeds], dtype=np.uint64).view(np.int64)
        err = self._k_reset(self._f, self._i, self._dev, index, keys, self._initial_temp_c)
        if err != -1:
            self._fail(err, "")

    @property
    def levels(self) -> np.ndarray:
        """Effective levels, shape ``(N, 3)`` (a copy)."""
        return self._i[:, _EFF:_EFF + 3].copy()

    @property
    def temp_c(self) -> np.ndarray:
        """Temperatures (°C), shape ``(N,)`` (a copy)."""
        return self._f[:, _TEMP].copy()

    @property
    def throttled(self) -> np.ndarray:
        """Whether the thermal trip caps each board's clocks, shape ``(N,)`` (a copy)."""
        return self._i[:, _THR] != 0

    @property
    def sensor_power_w(self) -> np.ndarray:
        """The power monitors' latest (held) board readings (W), shape ``(N,)`` (a copy)."""
        return self._f[:, _HELD].copy()

    @property
    def sensor_rails_w(self) -> np.ndarray:
        """The power monitors' latest (held) rail readings (W), shape ``(N, len(rail_names))`` (a copy)."""
        return self._f[:, _RAIL:_RAIL + 3].copy()

    def apply(self, levels: np.ndarray) -> np.ndarray:
        """Request levels, an int array of shape ``(N, 3)``; returns each board's stall (s).

        Raises:
            SettingError: a level is outside the device's tables (names the first offending board).
        """
        levels = self._levels_arg(levels)
        stall = np.empty(self.n)
        err = self._k_request(self._f, self._i, self._dev, levels, stall)
        if err != -1:
            self._bad_levels(levels, err)
        return stall

    def _levels_arg(self, levels: np.ndarray) -> np.ndarray:
        """``levels`` as the kernels' int64 ``(N, 3)`` array; raises :class:`SettingError` for another shape."""
        levels = np.asarray(levels)
        if levels.shape != (self.n, 3) or levels.dtype.kind not in "iu":
            raise SettingError(
                f"levels must be an integer array of shape ({self.n}, 3), got {levels.dtype} {levels.shape}"
            )
        return _kernel_arg(levels, np.int64, (self.n, 3))

    def _bad_levels(self, levels: np.ndarray, i: int) -> NoReturn:
        """Raise :class:`SettingError` naming board ``i``'s level outside the device's tables."""
        self.spec.check_levels(*(int(v) for v in levels[i]))  # raises, naming the level
        self._fail(i, f"levels {levels[i].tolist()} of board {i} are out of range")

    def _stack(self, works: tuple[Work, ...], batch: int) -> tuple[np.ndarray, int]:
        """The :data:`_ROW` costs of ``works`` stacked, ``[w * F + setting, column]``, and ``F`` (settings);
        cached per tuple of works."""
        last = self._last_stack
        if last is not None and last[0] is works and last[1] == batch:
            return last[2]
        key = (tuple(w.key for w in works), batch)
        hit = self._stacks.get(key)
        if hit is None:
            hit = self._stacks[key] = (self._cost_rows([self.table(w, batch) for w in works]), self._n_set)
        self._last_stack = (works, batch, hit)
        return hit

    def run(self, work: Work, batch: int = 1) -> MeasurementBatch:
        """Run ``work`` on every board at its current clocks."""
        return self.run_choice((work,), self._zeros, batch)

    def run_choice(self, works: tuple[Work, ...] | list[Work], choice: np.ndarray,
                   batch: int = 1) -> MeasurementBatch:
        """Run ``works[choice[i]]`` on board ``i``, every board at its current clocks.

        This is how boards that take different exits of a network run in one call.

        Args:
            works: the candidate pieces of work (e.g. one per exit).
            choice: int array ``(N,)`` of indices into ``works``.
            batch: inferences per launch.

        Raises:
            SettingError: a choice is not an index into ``works``.
        """
        rows, n_set = self._stack(works if isinstance(works, tuple) else tuple(works), batch)
        choice = np.asarray(choice)
        if choice.shape != (self.n,) or choice.dtype.kind not in "iu":
            raise SettingError(f"choice must be an int array of shape ({self.n},), got {choice.dtype} {choice.shape}")
        choice = _kernel_arg(choice, np.int64, (self.n,))
        out = _out_array(self.n)
        err = self._k_run(self._f, self._i, self._dev, rows, n_set, choice, out)[0]
        if err != -1:
            self._fail(err, f"choice[{err}] = {choice[err]} is not an index into the {len(works)} works"
                       if err >= 0 else "")
        return self._measurement(out)

    def run_choice_then_idle(
        self, works: tuple[Work, ...] | list[Work], choice: np.ndarray, slot_s: np.ndarray, batch: int = 1,
        levels: np.ndarray | None = None,
    ) -> tuple[MeasurementBatch, MeasurementBatch]:
        """:meth:`apply` ``levels`` (if given), :meth:`run_choice`, then each board idles for what is left of its
        slot ``slot_s[i]`` (s) after its run (:func:`~e4gym.hardware.backend.run_then_idle`); one compiled call.

        Returns:
            The run's records, and the idle's: zero figures (and the state the run left) where a run took the
            whole slot, as :meth:`idle` gives boards outside its mask.

        Raises:
            SettingError: a choice is not an index into ``works``, a slot is not a finite number, or a level is
                outside the device's tables (nothing is changed).
        """
        req = _NO_LEVELS if levels is None else self._levels_arg(levels)
        rows, n_set = self._stack(works if isinstance(works, tuple) else tuple(works), batch)
        choice = np.asarray(choice)
        if choice.shape != (self.n,) or choice.dtype.kind not in "iu":
            raise SettingError(f"choice must be an int array of shape ({self.n},), got {choice.dtype} {choice.shape}")
        try:
            slot = _kernel_arg(slot_s, np.float64, (self.n,))
        except (TypeError, ValueError):
            raise SettingError(f"slot_s must be {self.n} numbers of seconds, one per board") from None
        choice = _kernel_arg(choice, np.int64, (self.n,))
        both = _out_array(self.n, 2 * _KO)
        err = self._k_run_idle(self._f, self._i, self._dev, rows, n_set, choice, slot, both, req)[0]
        if err >= 0:
            bad = f"slot_s[{err}] = {float(slot[err])!r} is not a finite number of seconds"
            if abs(slot[err]) < math.inf:
                bad = f"choice[{err}] = {choice[err]} is not an index into the {len(works)} works"
                if levels is not None and 0 <= choice[err] < len(works):  # checked after the choices: these
                    self._bad_levels(req, err)
            self._fail(err, bad)
        elif err != -1:
            self._fail(err, "")
        return self._measurement(both[:_KO]), self._measurement(both[_KO:])

    def idle(self, duration_s: np.ndarray | float, active: np.ndarray | None = None) -> MeasurementBatch:
        """Keep boards idle for ``duration_s`` (s, shape ``(N,)``, >= 0).

        Args:
            duration_s: idle time per board (s).
            active: optional bool mask ``(N,)``: boards where it is False are left exactly as they are
                (as if :meth:`EmulatedBackend.idle` were not called for them); their figures are zero.
        """
        bad = "idle durations must be finite numbers of seconds >= 0"
        try:
            duration = _kernel_arg(duration_s, np.float64, (self.n,))
            active = self._all if active is None else _kernel_arg(active, bool, (self.n,))
        except (TypeError, ValueError):
            raise SettingError(f"{bad}, one per board ({self.n}), and active a bool mask of the boards") from None
        out = _out_array(self.n)
        err = self._k_idle(self._f, self._i, self._dev, duration, active, out)[0]
        if err != -1:
            self._fail(err, bad)
        return self._measurement(out)

    def _measurement(self, out: np.ndarray) -> MeasurementBatch:
        """The batch record of a kernel's fresh output ``out`` (rows :data:`_OUT`; every field a view of it)."""
        n = self.n
        return MeasurementBatch(
            latency_s=out[_O_LAT, :n],
            energy_j=out[_O_ENERGY, :n],
            measured_energy_j=out[_O_MEAS, :n],
            avg_power_w=out[_O_POWER, :n],
            temp_c=out[_O_TEMP, :n],
            cpu_hz=out[_O_HZ, :n],
            gpu_hz=out[_O_HZ + 1, :n],
            emc_hz=out[_O_HZ + 2, :n],
            throttled=out[_O_THR, :n] != 0.0,
            transition_s=out[_O_TRANS, :n],
            gpu_util=out[_O_UTIL, :n],
            time_s=out[_O_TIME, :n],
            rails_w=out[_O_RAIL:_O_RAIL + 3, :n].T,
        )
