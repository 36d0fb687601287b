"""The emulator's analytic model of a Jetson board, vectorised over every clock setting at once.

Given a :class:`~e4gym.dnn.work.Work` and a :class:`~e4gym.hardware.spec.DeviceSpec`, this module
computes, for **every** (CPU, GPU, EMC) level triple, the work's latency, dynamic energy and GPU busy time
(:class:`CostTable`), and per triple the leakage and idle power (:class:`PowerTable`). The emulator then
only looks values up and adds the state-dependent parts (temperature, throttling, transitions, noise).

Per block ``b`` of a batch of ``B`` inferences (every coefficient is from the device YAML's ``model:``):

* CPU-side dispatch: ``t_cpu = kernels · dispatch_cycles_per_kernel / f_cpu``
  (launches do not grow with the batch, so batching amortises them: Dutt et al.);
* GPU compute: ``t_gpu = (B · flops / (cuda_cores · gpu_flops_per_core_cycle)
  + kernels · gpu_cycles_per_kernel) / f_gpu``;
* memory: ``t_mem = (param_bytes + B · activation_bytes) / (dram_bw · f_emc / f_emc_max · mem_efficiency)``;
* latency ``L_b = (t_cpu^p + t_gpu^p + t_mem^p)^(1/p)`` (partial overlap: ``p = 1`` serial, ``p → ∞``
  perfect overlap).

Power per domain ``d`` (CPU, GPU, EMC):
``P_d = c_eff_d · V_d(f)² · f · a_d + leak_d · V_d(f)/V_max · exp(k · (T − T_ref))``, with activity
``a = idle + (1 − idle) · u``: ``u_cpu = 1`` while inferring (the host thread spins on the stream
synchronisation), ``u_gpu = t_gpu / L_b``, ``u_emc = t_mem / L_b``. ``V(f)`` is flat at ``v_min`` up to
``knee_frac`` of the range, then linear to ``v_max`` (assumption: Jetson V/f tables are not public). The
board adds ``static_w``. All of it is NumPy; nothing here loops in Python over settings.

The board's power at a setting with no work, at temperature ``T``, is :func:`floor_power_w`:
``static_w + idle_dyn + leak_ref · exp(k · (T − T_ref))`` (:func:`leakage_scale` is the exponential). Every
user of the model (the emulator, the grid, the measured profiles, the envs' reference frame) calls these two.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from e4gym.dnn.work import Work
from e4gym.errors import ConfigError, OverheatError
from e4gym.hardware.spec import DeviceSpec, DomainModel, EmulatorModel

#: A Python float or a NumPy array of floats: the functions typed with it work on either, elementwise.
FloatOrArray = TypeVar("FloatOrArray", float, np.ndarray)


def voltage(freqs_hz: np.ndarray, dom: DomainModel) -> np.ndarray:
    """Assumed supply voltage (V) at each clock of a domain's level table (sorted ascending)."""
    f = np.asarray(freqs_hz, dtype=float)
    lo, hi = f[0], f[-1]
    knee = lo + dom.knee_frac * (hi - lo)
    span = max(hi - knee, 1e-9)
    return dom.v_min + (dom.v_max - dom.v_min) * np.clip((f - knee) / span, 0.0, 1.0)


def dynamic_power_per_activity(freqs_hz: np.ndarray, dom: DomainModel) -> np.ndarray:
    """``c_eff · V² · f`` (W at activity 1) for each level of a domain."""
    f = np.asarray(freqs_hz, dtype=float)
    return dom.c_eff_f * voltage(f, dom) ** 2 * f


def leakage_power_ref(freqs_hz: np.ndarray, dom: DomainModel) -> np.ndarray:
    """Leakage (W) at the reference temperature for each level of a domain (∝ V)."""
    return dom.leak_w * voltage(freqs_hz, dom) / dom.v_max


@dataclass(frozen=True)
class PowerTable:
    """Setting-dependent power that does not depend on the work, flat over ``(cpu, gpu, emc)`` levels.

    Attributes:
        shape: ``(n_cpu, n_gpu, n_emc)``.
        leak_ref_w: leakage of all domains at ``temp_ref_c`` (W).
        idle_dyn_w: dynamic power of the clocked-but-idle domains (W).
        dyn_active_cpu_w: CPU dynamic power while the host thread is busy (W).
        gpu_dyn_w / emc_dyn_w: GPU and EMC dynamic power at activity 1 (W), for the cost tables.
        static_w: board static power (W).
        cpu_idle_w / gpu_idle_w: the CPU's and the GPU's share of ``idle_dyn_w`` (W);
        cpu_leak_ref_w / gpu_leak_ref_w: their share of ``leak_ref_w`` (W): the emulator's power-monitor rails.
    """

    shape: tuple[int, int, int]
    leak_ref_w: np.ndarray
    idle_dyn_w: np.ndarray
    dyn_active_cpu_w: np.ndarray
    gpu_dyn_w: np.ndarray
    emc_dyn_w: np.ndarray
    static_w: float
    cpu_idle_w: np.ndarray
    cpu_leak_ref_w: np.ndarray
    gpu_idle_w: np.ndarray
    gpu_leak_ref_w: np.ndarray


def power_table(spec: DeviceSpec, cpu_online: int | None = None) -> PowerTable:
    """Build the :class:`PowerTable` of ``spec`` with ``cpu_online`` cores online (default: all)."""
    m = spec.model
    online = spec.cpu_cores if cpu_online is None else cpu_online
    fc, fg, fe = (np.asarray(t) for t in (spec.cpu_freqs_hz, spec.gpu_freqs_hz, spec.emc_freqs_hz))
    c_dyn = dynamic_power_per_activity(fc, m.cpu)[:, None, None]
    g_dyn = dynamic_power_per_activity(fg, m.gpu)[None, :, None]
    e_dyn = dynamic_power_per_activity(fe, m.emc)[None, None, :]
    # Idle cores still leak; offline cores (power modes) are power-gated.
    c_leak = leakage_power_ref(fc, m.cpu)[:, None, None] * (online / spec.cpu_cores)
    g_leak = leakage_power_ref(fg, m.gpu)[None, :, None]
    e_leak = leakage_power_ref(fe, m.emc)[None, None, :]
    shape = spec.n_levels
    # Idle: every online core clocked but idle; one core's worth of activity is the busy host thread.
    c_idle = c_dyn * m.cpu.idle_activity * online / spec.cpu_cores
    g_idle = g_dyn * m.gpu.idle_activity
    # Inferring: the host thread's core is fully active on top of the idle floor.
    active_cpu = c_dyn * (1.0 - m.cpu.idle_activity)

    def flat(a: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(np.broadcast_to(a, shape)).ravel()

    return PowerTable(
        shape=shape,
        leak_ref_w=flat(c_leak + g_leak + e_leak),
        idle_dyn_w=flat(c_idle + g_idle + e_dyn * m.emc.idle_activity),
        dyn_active_cpu_w=flat(active_cpu),
        gpu_dyn_w=flat(g_dyn),
        emc_dyn_w=flat(e_dyn),
        static_w=m.static_w,
        cpu_idle_w=flat(c_idle),
        cpu_leak_ref_w=flat(c_leak),
        gpu_idle_w=flat(g_idle),
        gpu_leak_ref_w=flat(g_leak),
    )


def leak_scale(k_per_c: float, t_ref_c: float, temp_c: float) -> float:
    """Leakage at ``temp_c`` (°C) relative to ``t_ref_c`` (°C): ``exp(k · (T − T_ref))``, ``k`` in 1/°C (floats).

    The scalar core of :func:`leakage_scale`, compiled into the emulator's kernels as well (see :data:`JITABLE`),
    so the formula is written once. From Python it raises ``OverflowError`` where the exponential overflows; in
    compiled code it gives ``inf``.
    """
    return math.exp(k_per_c * (temp_c - t_ref_c))


def floor_power(static_w: FloatOrArray, idle_dyn_w: FloatOrArray, leak_ref_w: FloatOrArray,
                scale: FloatOrArray) -> FloatOrArray:
    """The idle floor (W): ``static_w + idle_dyn_w + leak_ref_w · scale``, ``scale`` the leakage's temperature
    factor (:func:`leak_scale`). Floats, or arrays elementwise; the core of :func:`floor_power_w`, compiled into
    the emulator's kernels as well (see :data:`JITABLE`)."""
    return static_w + idle_dyn_w + leak_ref_w * scale


#: The scalar cores of the power model that compiled code calls too: :mod:`e4gym.hardware.emulator` registers
#: them with ``numba.extending.register_jitable`` (callable from Python as plain functions and from ``njit``
#: code) when it first compiles its kernels, so that importing the model does not import numba (~0.5 s).
JITABLE = (leak_scale, floor_power)


def leakage_scale(model: EmulatorModel, temp_c: FloatOrArray) -> FloatOrArray:
    """Leakage at ``temp_c`` (°C) relative to ``model.temp_ref_c``: ``exp(k · (T − T_ref))``.

    A float (``math.exp``, cheap) for a float, an array (``np.exp``) for an array of temperatures.

    Raises:
        OverheatError: the float's exponential overflows (thermal runaway far past any critical trip), instead
            of a bare ``OverflowError``.
    """
    k, t_ref = model.leak_temp_coeff_per_c, model.temp_ref_c
    x = k * (temp_c - t_ref)
    if not isinstance(x, float):
        return np.exp(x)
    try:
        return leak_scale(k, t_ref, temp_c)
    except OverflowError:
        raise OverheatError(
            f"the emulated board's temperature ran away to {temp_c:.3g} °C (leakage grows as exp(k·ΔT)): its "
            "cooling cannot hold it at this ambient temperature and these clocks; lower ambient_c, pass fan=True "
            "or run lower clocks"
        ) from None


def floor_power_w(power: PowerTable | Any, idx: Any, temp_c: FloatOrArray, model: EmulatorModel, *,
                  scale: FloatOrArray | None = None) -> FloatOrArray:
    """Board power (W) at setting(s) ``idx`` with no work, at ``temp_c`` (°C): the idle floor.

    ``static_w + idle_dyn_w[idx] + leak_ref_w[idx] · leakage_scale(model, temp_c)``.

    Args:
        power: the :class:`PowerTable` (or anything with its ``static_w``, ``idle_dyn_w`` and ``leak_ref_w``,
            e.g. lists of them for a scalar hot path).
        idx: flat setting index (:meth:`~e4gym.hardware.spec.DeviceSpec.flat_index`): an int, an int array
            (one per board, with ``temp_c`` an array of the same shape) or ``slice(None)`` for every setting.
        temp_c: temperature (°C), a float or an array broadcasting against ``idx``.
        model: the device's emulator coefficients (``spec.model``).
        scale: ``leakage_scale(model, temp_c)`` when the caller has it already (saves the exponential).
    """
    if scale is None:
        scale = leakage_scale(model, temp_c)
    return floor_power(power.static_w, power.idle_dyn_w[idx], power.leak_ref_w[idx], scale)


@dataclass(frozen=True)
class CostTable:
    """A work's cost at every ``(cpu, gpu, emc)`` level triple, flat (C order), without temperature effects.

    Attributes:
        latency_s: time to run the work (s).
        busy_dyn_j: dynamic energy above the idle floor while running it (J); the idle floor, leakage and
            static power are added by the emulator from the :class:`PowerTable`, since leakage depends on
            the temperature at run time.
        gpu_busy_s: time the GPU (compute or memory) is busy (s); the load a GPU governor sees.
        t_cpu_s / t_gpu_s / t_mem_s: the three components summed over blocks (s), for reports.
        cpu_dyn_j / gpu_dyn_j: the CPU's (busy host thread) and the GPU's (compute) share of ``busy_dyn_j``
            (J): the emulator's power-monitor rails.
    """

    latency_s: np.ndarray
    busy_dyn_j: np.ndarray
    gpu_busy_s: np.ndarray
    t_cpu_s: np.ndarray
    t_gpu_s: np.ndarray
    t_mem_s: np.ndarray
    cpu_dyn_j: np.ndarray
    gpu_dyn_j: np.ndarray


def cost_table(spec: DeviceSpec, work: Work, power: PowerTable, batch: int = 1) -> CostTable:
    """Evaluate ``work`` (``batch`` inferences at once) at every level triple of ``spec``.

    Returns flat arrays of length ``n_cpu · n_gpu · n_emc``; see :class:`CostTable`.
    """
    m = spec.model
    fc = np.asarray(spec.cpu_freqs_hz)[:, None, None, None]
    fg = np.asarray(spec.gpu_freqs_hz)[None, :, None, None]
    fe = np.asarray(spec.emc_freqs_hz)[None, None, :, None]
    kernels = work.array("kernels")[None, None, None, :]
    flops = work.array("flops")[None, None, None, :]
    dram = (work.array("param_bytes") + batch * work.array("activation_bytes"))[None, None, None, :]

    t_cpu = kernels * m.dispatch_cycles_per_kernel / fc
    gpu_cycles = batch * flops / (spec.cuda_cores * m.gpu_flops_per_core_cycle) + kernels * m.gpu_cycles_per_kernel
    t_gpu = gpu_cycles / fg
    bw = spec.dram_bw_bytes_per_s * (fe / spec.emc_freqs_hz[-1]) * m.mem_efficiency
    t_mem = dram / bw
    p = m.overlap_p
    lat_b = (t_cpu**p + t_gpu**p + t_mem**p) ** (1.0 / p)  # (nc, ng, ne, nb)
    gpu_busy_b = np.minimum((t_gpu**p + t_mem**p) ** (1.0 / p), lat_b)

    shape = spec.n_levels
    g_dyn = power.gpu_dyn_w.reshape(shape)[..., None]
    e_dyn = power.emc_dyn_w.reshape(shape)[..., None]
    c_act = power.dyn_active_cpu_w.reshape(shape)[..., None]
    # Above the idle floor: CPU host thread fully busy, GPU/EMC busy for their share of each block.
    busy_dyn = c_act * lat_b + g_dyn * (1.0 - m.gpu.idle_activity) * np.broadcast_to(t_gpu, lat_b.shape)
    busy_dyn = busy_dyn + e_dyn * (1.0 - m.emc.idle_activity) * np.broadcast_to(t_mem, lat_b.shape)

    def flat(a: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(np.broadcast_to(a.sum(axis=-1), shape)).ravel()

    latency_s, t_gpu_s = flat(lat_b), flat(np.broadcast_to(t_gpu, lat_b.shape))
    return CostTable(
        latency_s=latency_s,
        busy_dyn_j=flat(busy_dyn),
        gpu_busy_s=flat(gpu_busy_b),
        t_cpu_s=flat(np.broadcast_to(t_cpu, lat_b.shape)),
        t_gpu_s=t_gpu_s,
        t_mem_s=flat(np.broadcast_to(t_mem, lat_b.shape)),
        cpu_dyn_j=power.dyn_active_cpu_w * latency_s,
        gpu_dyn_j=power.gpu_dyn_w * (1.0 - m.gpu.idle_activity) * t_gpu_s,
    )


# ---------------------------------------------------------------------------------------------- CPU × GPU grids


@dataclass(frozen=True)
class GridCost:
    """Noise-free cost of one work at every allowed ``(cpu, gpu)`` level pair (EMC at one level).

    Arrays have shape ``(max_cpu_level + 1, max_gpu_level + 1)`` of the power mode; leakage is evaluated at
    ``ambient_c``.

    Attributes:
        latency_s: run latency of one launch of ``batch`` inferences (s).
        run_energy_j: board energy of that launch (J): idle floor, leakage, static and dynamic power.
        energy_j: energy charged per inference (J): the run energy / ``batch``, plus, when ``period_s`` is set
            (streaming), the idle energy until the next arrival at the same clocks.
        time_s: time charged per launch (s): ``max(latency, period)`` streaming, the latency otherwise.
        cpu_hz / gpu_hz: the level tables of the rows / columns (Hz). emc_level / emc_hz: the memory level used.
        period_s: the frame period (s), ``None`` for back-to-back launches. batch: inferences per launch.
    """

    latency_s: np.ndarray
    run_energy_j: np.ndarray
    energy_j: np.ndarray
    time_s: np.ndarray
    cpu_hz: np.ndarray
    gpu_hz: np.ndarray
    emc_level: int
    emc_hz: float
    period_s: float | None
    batch: int

    @property
    def run_power_w(self) -> np.ndarray:
        """Average board power while running (W)."""
        return self.run_energy_j / self.latency_s

    @property
    def power_w(self) -> np.ndarray:
        """Average board power over the charged time (W): ``energy · batch / time``."""
        return self.energy_j * self.batch / self.time_s


def grid_cost(
    spec: DeviceSpec,
    work: Work,
    *,
    power_mode: str | None = None,
    period_s: float | None = None,
    ambient_c: float | None = None,
    batch: int = 1,
) -> GridCost:
    """Evaluate ``work`` at every allowed ``(cpu, gpu)`` pair of ``power_mode`` on the analytic model.

    Args:
        spec: the device. work: the per-inference work (e.g. ``profile.frame_work(exit)``).
        power_mode: nvpmodel mode (default: the device's); it caps the levels and sets the online cores.
        period_s: frame period (s): streaming time, idle until the next arrival charged; ``None``: back to back.
        ambient_c: temperature the leakage is evaluated at (°C; default the device's ambient).
        batch: inferences per launch (>= 1; streaming is batch 1).

    Raises:
        ConfigError: ``batch`` is not an integer >= 1, ``period_s`` is not > 0, or batch > 1 with a period.
    """
    if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1:
        raise ConfigError(f"batch must be an integer >= 1 (inferences per launch), got {batch!r}")
    if period_s is not None and not (math.isfinite(period_s) and period_s > 0):
        raise ConfigError(f"period_s must be a finite number of seconds > 0, got {period_s!r}")
    if period_s is not None and batch != 1:
        raise ConfigError(f"streaming time runs one frame per launch: batch must be 1, got {batch}")
    mode = spec.power_mode(power_mode)
    pt = power_table(spec, mode.cpu_online)
    table = cost_table(spec, work, pt, int(batch))
    mc, mg, me = spec.max_levels(mode.name)
    shape = spec.n_levels
    sel = (slice(0, mc + 1), slice(0, mg + 1), me)
    lat = table.latency_s.reshape(shape)[sel]
    dyn = table.busy_dyn_j.reshape(shape)[sel]
    temp = spec.thermal.ambient_c if ambient_c is None else float(ambient_c)
    floor = floor_power_w(pt, slice(None), temp, spec.model).reshape(shape)[sel]
    run = floor * lat + dyn
    if period_s is None:
        energy, time = run / batch, lat
    else:
        energy, time = run + floor * np.maximum(0.0, period_s - lat), np.maximum(lat, period_s)
    return GridCost(
        latency_s=lat, run_energy_j=run, energy_j=energy, time_s=time,
        cpu_hz=np.asarray(spec.cpu_freqs_hz[: mc + 1], dtype=float),
        gpu_hz=np.asarray(spec.gpu_freqs_hz[: mg + 1], dtype=float),
        emc_level=me, emc_hz=float(spec.emc_freqs_hz[me]), period_s=period_s, batch=int(batch),
    )
