"""Emulated DNN serving on one board: request queues, dynamic batching, concurrent model instances (BCEdge).

The batching env (``e4gym/BatchConcurrency-v0``) serves M models on one Jetson the way an inference server
(Triton) does, and this module is its board. Each model has a FIFO queue of requests and a number of
*instances* (copies of the model, each serving one batch at a time), and a batch size ``B``:

- **Dynamic batching** (Triton's ``dynamic_batching`` with ``max_queue_delay``): an instance that is free takes
  the first ``B`` requests of its model's queue as soon as there are ``B``, or, when fewer are waiting, the ones
  that are there once the oldest has waited ``delay_s`` (a bounded wait for the batch to fill). A partial batch
  of ``k < B`` requests costs what batch ``k`` costs.
- **Batch latency** is the cost model's (:func:`~e4gym.hardware.model.cost_table` at batch ``k``) at the
  current clock levels, noise-free, when the batch runs alone on the GPU.
- **Contention** (ASSUMPTION, docs/assumptions.md "Batching env"): a batch running alone uses a share of three
  throughput resources, from the cost table's own components: the GPU's arithmetic ``u_gpu = k · c / L`` (``c``
  the compute time of one inference, ``t_gpu`` at batch 2 minus batch 1: the per-kernel fixed cycles are the
  part of ``t_gpu`` a small batch leaves idle), the DRAM bandwidth ``u_mem = t_mem / L`` and the host's CPU
  ``u_cpu = t_cpu / L`` (one core of the power mode's online cores per instance thread). Batches running at
  once share them as processors share time: every running batch progresses at rate ``1 / s`` of its solo speed,
  ``s = max(1, Σ u_gpu, Σ u_mem, Σ u_cpu / cores)``, so no resource is ever used beyond its capacity, and small
  batches, which under-use the GPU, gain from running side by side until one resource saturates.
- **Energy** (the emulator's power model, :mod:`e4gym.hardware.model`; nothing new): the idle floor
  (:func:`~e4gym.hardware.model.floor_power_w` at the clocks, leakage at the ambient temperature) over the whole
  interval, plus each batch's GPU and memory dynamic energy (``busy_dyn_j − cpu_dyn_j`` of its cost table,
  spent in proportion to its progress), plus the busy host thread of each running instance
  (``dyn_active_cpu_w``, at most one per online core) while it runs. No thermal state, no measurement noise.
- **Memory** (ASSUMPTION): per instance, the model's weights, ``B`` times its largest block's activation bytes
  and a fixed runtime overhead (:data:`INSTANCE_OVERHEAD_GB`); the board keeps :data:`SYSTEM_RESERVED_GB` for
  the OS and the server process (:func:`instance_memory_gb`, :func:`usable_memory_gb`).

A request's **latency** runs from its arrival to the end of its batch (queueing, the wait for the batch and
contention included). It is **on time** when that latency is at most its model's SLO; it **violates** the SLO
when its deadline (arrival + SLO) passes before it is done, and is counted in the interval where the deadline
falls (whether it is done, running or still queued then). So each request counts once, on time or violated, and
a queue that never drains shows as violations.

The event loop (:func:`serve_interval`) advances one decision interval at a time over batch starts and batch
completions (arrivals are read from each model's sorted arrival array: the queue is a range of it), in a
compiled numba kernel. State (queues, batches in flight) carries over from one interval to the next; the
configuration (batch sizes, instances, clocks) changes between intervals only. No gym import here.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from e4gym.dnn.profile import ModelProfile
from e4gym.errors import ConfigError
from e4gym.hardware.model import cost_table, floor_power_w, power_table
from e4gym.hardware.runtime import runtime_view
from e4gym.hardware.spec import DeviceSpec

__all__ = [
    "BOARD_STATS",
    "INSTANCE_OVERHEAD_GB",
    "MODEL_STATS",
    "STATS_WIDTH",
    "SYSTEM_RESERVED_GB",
    "Server",
    "ServingTables",
    "capacity_rps",
    "instance_memory_gb",
    "serve_interval",
    "serving_tables",
    "solo_latency_s",
    "solo_power_w",
    "usable_memory_gb",
]

#: ASSUMPTION: memory (GB) each model instance holds besides its weights and activations: its execution context
#: and workspace in the server (a TensorRT execution context or a LibTorch module's allocator cache).
INSTANCE_OVERHEAD_GB = 0.25
#: ASSUMPTION: memory (GB) of the board not available to model instances: the OS (L4T) and the server process
#: with its CUDA context.
SYSTEM_RESERVED_GB = 1.0

# The per-setting table's rows (``ServingTables.table[setting, row, model, k]``): solo batch latency (s), the
# shares of the GPU's arithmetic, of DRAM bandwidth and of one CPU core, and the GPU + memory dynamic energy (J).
_LAT, _UGPU, _UMEM, _UCPU, _GDYN = 0, 1, 2, 3, 4
_N_ROWS = 5
# Columns of a batch slot (float64 array (slots, _NS)): model, first request, size, virtual finish (s), solo latency
# at the current clocks (s). The batches in flight are the first ``n_act`` rows (a completed one is replaced by the
# last).
_MOD, _FIRST, _K, _VFIN, _L = 0, 1, 2, 3, 4
_NS = 5
# Per-model int state (int64 (M, _NI)): next request not yet batched (the queue's head), next request whose
# deadline is still ahead, next request not yet arrived, instances running a batch, and the model's range of the
# arrival buffer (start, end).
_HEAD, _DPTR, _APTR, _RUN, _START, _END = 0, 1, 2, 3, 4, 5
_NI = 6
# Rows of the float buffer (float64 (3, N)): arrival times (s), latencies of this interval's completions (s, at
# the model's range), every model's latencies together (s, for the board's p99).
_ARR, _LATS, _ALL = 0, 1, 2
# Per-model parameters (float64 (M, _NP)): batch size, instances, batching delay (s), SLO (s).
_PB, _PN, _PDELAY, _PSLO = 0, 1, 2, 3
_NP = 4
#: The per-model statistics of an interval, the columns of the kernel's output (float64 ``(M + 1, width)``, see
#: :func:`serve_interval`): requests completed, completed within the SLO, SLO violations (deadlines passed
#: unserved or served late), arrived, waiting at the end; p99 (nearest rank) and mean latency of the completed
#: ones (s; 0 when none); the oldest waiting request's wait (s); batches running at the end; throughput and
#: goodput (req/s) and the violation share of the resolved requests (violations / (on time + violations), 0..1).
MODEL_STATS = ("completed", "on_time", "violations", "arrived", "queue", "p99_s", "mean_latency_s", "oldest_wait_s",
               "running", "throughput_rps", "goodput_rps", "violation_rate")
(_S_DONE, _S_ONTIME, _S_VIOL, _S_ARR, _S_QUEUE, _S_P99, _S_MEAN, _S_OLDEST, _S_RUN, _S_THR, _S_GOOD,
 _S_VRATE) = range(12)
#: The board's figures of an interval (the output's last row): energy (J), the GPU's throughput share used (time
#: average of ``max(Σ u_gpu, Σ u_mem) / s``, 0..1), p99 latency over every model's completed requests (s), average
#: power (W), the models' completed, on-time, violated, arrived and waiting requests summed, throughput and goodput
#: (req/s), violation share, and energy per completed request (J; the energy when none completed).
BOARD_STATS = ("energy_j", "gpu_util", "p99_s", "power_w", "completed", "on_time", "violations", "arrived", "queue",
               "throughput_rps", "goodput_rps", "violation_rate", "energy_per_request_j")
(_B_ENERGY, _B_UTIL, _B_P99, _B_POWER, _B_DONE, _B_ONTIME, _B_VIOL, _B_ARR, _B_QUEUE, _B_THR, _B_GOOD, _B_VRATE,
 _B_EPR) = range(13)
#: Columns of the kernel's output.
STATS_WIDTH = max(len(MODEL_STATS), len(BOARD_STATS))
# The float state (float64 (_NG,)): now (s), virtual time (s), the interval's start (s), its end (s), the idle
# floor (W), one busy host thread (W), online cores, batches in flight.
_G_T, _G_V, _G_T0, _G_T1, _G_FLOOR, _G_CPU, _G_CORES, _G_NACT = 0, 1, 2, 3, 4, 5, 6, 7
_NG = 8

# ---------------------------------------------------------------------------------------------- memory


def instance_memory_gb(profile: ModelProfile, batch: int) -> float:
    """Memory (GB) of one instance of ``profile`` serving batches of ``batch``: its weights, ``batch`` times its
    largest block's activation bytes (a working-set bound: a block's inputs and outputs are live together) and
    :data:`INSTANCE_OVERHEAD_GB`. Pass the runtime's view of the profile (fp16 halves the bytes)."""
    weights = sum(b.param_bytes for b in profile.blocks) + profile.exits[-1].head.param_bytes
    act = max(max(b.activation_bytes for b in profile.blocks), profile.exits[-1].head.activation_bytes)
    return (weights + batch * act) * 1e-9 + INSTANCE_OVERHEAD_GB


def usable_memory_gb(spec: DeviceSpec) -> float:
    """Memory (GB) model instances may use on ``spec``: its ``memory_gb`` less :data:`SYSTEM_RESERVED_GB`.

    Raises:
        ConfigError: the device YAML gives no ``memory_gb``.
    """
    if spec.memory_gb is None:
        raise ConfigError(f"device '{spec.name}' has no memory_gb in its YAML ({spec.source_file}); add the board's "
                          "memory in GB (e.g. 'memory_gb: 8') with its source")
    return spec.memory_gb - SYSTEM_RESERVED_GB


# ---------------------------------------------------------------------------------------------- cost tables


@dataclass(frozen=True)
class ServingTables:
    """What a batch of each model costs at every clock setting and batch size, and the board's power terms.

    Attributes:
        table: float64 ``(n_settings, 5, M, max_batch + 1)``: per flat setting (:meth:`DeviceSpec.flat_index`)
            the solo latency (s), the GPU-arithmetic, DRAM and CPU-core shares, and the GPU + memory dynamic
            energy (J) of a batch of ``k`` requests of model ``m`` (column ``k``; column 0 unused).
        floor_w: the idle floor per setting (W), leakage at the ambient temperature.
        cpu_busy_w: one busy host thread's dynamic power per setting (W).
        cores: the power mode's online CPU cores.
        profiles: the models as the runtime runs them (their bytes give the memory).
    """

    table: np.ndarray
    floor_w: np.ndarray
    cpu_busy_w: np.ndarray
    cores: int
    profiles: tuple[ModelProfile, ...]

    @property
    def max_batch(self) -> int:
        """The largest batch the tables cover."""
        return self.table.shape[-1] - 1


#: Tables built in this process, by (device object, profiles by value, runtime, max batch, power mode): the device
#: is held so its id is never reused; the oldest entry goes past :data:`_TABLES_KEPT`.
_TABLES: dict[tuple, tuple[DeviceSpec, ServingTables]] = {}
_TABLES_KEPT = 8


def serving_tables(spec: DeviceSpec, profiles: Sequence[ModelProfile], runtime: str, max_batch: int,
                   power_mode: str | None = None) -> ServingTables:
    """The :class:`ServingTables` of ``profiles`` on ``spec`` under ``runtime`` for batches 1..``max_batch``,
    cached per process (every cost is :func:`~e4gym.hardware.model.cost_table`'s)."""
    key = (id(spec), tuple(profiles), runtime, int(max_batch), power_mode)
    hit = _TABLES.get(key)
    if hit is not None and hit[0] is spec:
        return hit[1]
    mode = spec.power_mode(power_mode)
    views = [runtime_view(spec, p, runtime) for p in profiles]
    n_set = int(np.prod(spec.n_levels))
    table = np.zeros((n_set, _N_ROWS, len(profiles), max_batch + 1))
    for m, (rspec, prof) in enumerate(views):
        pt = power_table(rspec, mode.cpu_online)
        work = prof.frame_work(-1)
        tabs = [cost_table(rspec, work, pt, k) for k in range(1, max(max_batch, 2) + 1)]
        per_inference = tabs[1].t_gpu_s - tabs[0].t_gpu_s  # GPU arithmetic of one inference (s)
        for k in range(1, max_batch + 1):
            c = tabs[k - 1]
            table[:, _LAT, m, k] = c.latency_s
            table[:, _UGPU, m, k] = np.minimum(k * per_inference / c.latency_s, 1.0)
            table[:, _UMEM, m, k] = c.t_mem_s / c.latency_s
            table[:, _UCPU, m, k] = c.t_cpu_s / c.latency_s
            table[:, _GDYN, m, k] = c.busy_dyn_j - c.cpu_dyn_j
    pt = power_table(views[0][0], mode.cpu_online)
    floor = np.asarray(floor_power_w(pt, slice(None), spec.thermal.ambient_c, spec.model), dtype=float)
    out = ServingTables(np.ascontiguousarray(table), floor, np.asarray(pt.dyn_active_cpu_w, dtype=float),
                        mode.cpu_online, tuple(p for _, p in views))
    if len(_TABLES) >= _TABLES_KEPT:
        del _TABLES[next(iter(_TABLES))]
    _TABLES[key] = (spec, out)
    return out


# ---------------------------------------------------------------------------------------------- the kernel


def _select(a: np.ndarray, lo: int, hi: int, k: int) -> float:
    """The ``k``-th smallest of ``a[lo:hi]`` (0-based), partially reordering it in place (Hoare's selection)."""
    k += lo
    hi -= 1
    while lo < hi:
        pivot = a[(lo + hi) // 2]
        i, j = lo, hi
        while i <= j:
            while a[i] < pivot:
                i += 1
            while a[j] > pivot:
                j -= 1
            if i <= j:
                a[i], a[j] = a[j], a[i]
                i += 1
                j -= 1
        if k <= j:
            hi = j
        elif k >= i:
            lo = i
        else:
            break
    return a[k]


def _next_start(arr: np.ndarray, ist: np.ndarray, par: np.ndarray, m: int) -> float:
    """When model ``m``'s next batch can start (s), not before now: when its queue holds a full batch or its oldest
    request has waited the batching delay, whichever is first; ``inf`` without a free instance or a request."""
    h, end = ist[m, _HEAD], ist[m, _END]
    if ist[m, _RUN] >= par[m, _PN] or h >= end:
        return math.inf
    c = arr[h] + par[m, _PDELAY]
    full = h + int(par[m, _PB]) - 1
    if full < end and arr[full] < c:
        c = arr[full]
    return c


def _serve(buf: np.ndarray, ontime: np.ndarray, ist: np.ndarray, g: np.ndarray, slots: np.ndarray, tab: np.ndarray,
           par: np.ndarray, out: np.ndarray) -> None:
    """Serve from ``g[_G_T]`` (s) to ``g[_G_T1]``; see :class:`Server` and :func:`serve_interval`."""
    n_models = ist.shape[0]
    arr = buf[_ARR]
    t, v, t1 = g[_G_T], g[_G_V], g[_G_T1]
    cores = g[_G_CORES]
    n_act = int(g[_G_NACT])
    out[:, :] = 0.0
    # Batches in flight keep their progress; their solo latency follows the (new) clocks.
    s_gpu = s_mem = s_cpu = s_dyn = 0.0
    for j in range(n_act):
        m, k = int(slots[j, _MOD]), int(slots[j, _K])
        lat = tab[_LAT, m, k]
        if lat != slots[j, _L]:
            slots[j, _VFIN] = v + (slots[j, _VFIN] - v) * lat / slots[j, _L]
            slots[j, _L] = lat
        s_gpu += tab[_UGPU, m, k]
        s_mem += tab[_UMEM, m, k]
        s_cpu += tab[_UCPU, m, k]
        s_dyn += tab[_GDYN, m, k] / lat
    energy = util = 0.0
    cpu_w = g[_G_CPU]
    # When each model's next batch could start (s; before max(·, now)): inf while it has no free instance or no
    # request; recomputed for a model when its queue or its running batches change.
    cand = np.empty(n_models)
    for m in range(n_models):
        cand[m] = _next_start(arr, ist, par, m)
    while True:
        s = 1.0
        if s_gpu > s:
            s = s_gpu
        if s_mem > s:
            s = s_mem
        if s_cpu / cores > s:
            s = s_cpu / cores
        j_done = -1
        v_min = math.inf
        for j in range(n_act):
            if slots[j, _VFIN] < v_min:
                v_min = slots[j, _VFIN]
                j_done = j
        t_done = t + (v_min - v) * s if j_done >= 0 else math.inf
        if t_done < t:  # (a rounding residue: time never runs backwards)
            t_done = t
        m_start = -1
        t_start = math.inf
        for m in range(n_models):
            if cand[m] < t_start:
                t_start = cand[m]
                m_start = m
        if t_start < t:
            t_start = t
        if t_done <= t_start:
            t_next, event = t_done, 0
        else:
            t_next, event = t_start, 1
        if t_next > t1:
            t_next, event = t1, 2
        dt = t_next - t
        if dt > 0.0:
            busy_threads = n_act if n_act < cores else cores
            energy += dt * (s_dyn / s + cpu_w * busy_threads)
            util += dt * (s_gpu if s_gpu > s_mem else s_mem) / s
            v += dt / s
        t = t_next
        if event == 2:
            break
        if event == 0:  # batch j_done completes at t
            j = j_done
            m, first, k = int(slots[j, _MOD]), int(slots[j, _FIRST]), int(slots[j, _K])
            v = slots[j, _VFIN]
            slo = par[m, _PSLO]
            base = ist[m, _START] + int(out[m, _S_DONE])
            for i in range(first, first + k):
                lat = t - arr[i]
                buf[_LATS, base] = lat
                base += 1
                out[m, _S_MEAN] += lat
                if lat <= slo:
                    ontime[i] = 1
                    out[m, _S_ONTIME] += 1.0
            out[m, _S_DONE] += k
            lat_l = slots[j, _L]
            s_gpu -= tab[_UGPU, m, k]
            s_mem -= tab[_UMEM, m, k]
            s_cpu -= tab[_UCPU, m, k]
            s_dyn -= tab[_GDYN, m, k] / lat_l
            n_act -= 1
            if j != n_act:
                slots[j, :] = slots[n_act, :]
            ist[m, _RUN] -= 1
            cand[m] = _next_start(arr, ist, par, m)
            if n_act == 0:  # no rounding residue left behind
                s_gpu = s_mem = s_cpu = s_dyn = 0.0
        else:  # an instance of m_start takes a batch at t
            m = m_start
            h, end = ist[m, _HEAD], ist[m, _END]
            b = int(par[m, _PB])
            k = 0
            while k < b and h + k < end and arr[h + k] <= t:
                k += 1
            lat = tab[_LAT, m, k]
            j = n_act
            slots[j, _MOD] = m
            slots[j, _FIRST] = h
            slots[j, _K] = k
            slots[j, _VFIN] = v + lat
            slots[j, _L] = lat
            s_gpu += tab[_UGPU, m, k]
            s_mem += tab[_UMEM, m, k]
            s_cpu += tab[_UCPU, m, k]
            s_dyn += tab[_GDYN, m, k] / lat
            n_act += 1
            ist[m, _HEAD] = h + k
            ist[m, _RUN] += 1
            cand[m] = _next_start(arr, ist, par, m)
    interval = t1 - g[_G_T0]
    g[_G_T], g[_G_V], g[_G_T0], g[_G_NACT] = t, v, t1, n_act
    total = 0
    for m in range(n_models):
        end, slo = ist[m, _END], par[m, _PSLO]
        d = ist[m, _DPTR]
        viol = 0
        while d < end and arr[d] + slo <= t1:
            if ontime[d] == 0:
                viol += 1
            d += 1
        ist[m, _DPTR] = d
        out[m, _S_VIOL] = viol
        a0 = a = ist[m, _APTR]
        while a < end and arr[a] <= t1:
            a += 1
        ist[m, _APTR] = a
        out[m, _S_ARR] = a - a0
        h = ist[m, _HEAD]
        out[m, _S_QUEUE] = a - h
        out[m, _S_OLDEST] = t1 - arr[h] if h < a else 0.0
        out[m, _S_RUN] = ist[m, _RUN]
        n = int(out[m, _S_DONE])
        if n > 0:
            out[m, _S_MEAN] /= n
            lo = ist[m, _START]
            buf[_ALL, total:total + n] = buf[_LATS, lo:lo + n]
            total += n
            out[m, _S_P99] = _select(buf[_LATS], lo, lo + n, math.ceil(0.99 * n) - 1)
    row = out.shape[0] - 1
    inv = 1.0 / interval if interval > 0.0 else 0.0
    board_energy = energy + g[_G_FLOOR] * interval
    for m in range(n_models):
        out[m, _S_THR] = out[m, _S_DONE] * inv
        out[m, _S_GOOD] = out[m, _S_ONTIME] * inv
        resolved = out[m, _S_ONTIME] + out[m, _S_VIOL]
        out[m, _S_VRATE] = out[m, _S_VIOL] / resolved if resolved > 0.0 else 0.0
        out[row, _B_DONE] += out[m, _S_DONE]
        out[row, _B_ONTIME] += out[m, _S_ONTIME]
        out[row, _B_VIOL] += out[m, _S_VIOL]
        out[row, _B_ARR] += out[m, _S_ARR]
        out[row, _B_QUEUE] += out[m, _S_QUEUE]
    out[row, _B_ENERGY] = board_energy
    out[row, _B_POWER] = board_energy * inv
    out[row, _B_UTIL] = util * inv
    out[row, _B_THR] = out[row, _B_DONE] * inv
    out[row, _B_GOOD] = out[row, _B_ONTIME] * inv
    resolved = out[row, _B_ONTIME] + out[row, _B_VIOL]
    out[row, _B_VRATE] = out[row, _B_VIOL] / resolved if resolved > 0.0 else 0.0
    out[row, _B_EPR] = board_energy / out[row, _B_DONE] if out[row, _B_DONE] > 0.0 else board_energy
    if total > 0:
        out[row, _B_P99] = _select(buf[_ALL], 0, total, math.ceil(0.99 * total) - 1)


@functools.cache
def _compiled() -> Any:
    """:func:`_serve` compiled with numba (cached in ``__pycache__``), on first use."""
    import numba
    from numba.extending import register_jitable

    register_jitable(error_model="numpy")(_select)
    register_jitable(error_model="numpy")(_next_start)
    try:
        return numba.njit(cache=True, error_model="numpy")(_serve)
    except RuntimeError:  # no writable cache location: compile in each process
        return numba.njit(error_model="numpy")(_serve)


def serve_interval(server: Server, t1_s: float, tab: np.ndarray, par: np.ndarray, floor_w: float, cpu_busy_w: float,
                   *, compiled: bool = True) -> np.ndarray:
    """Advance ``server`` to time ``t1_s`` (s) and return the interval's statistics.

    Args:
        server: the board's serving state (:class:`Server`).
        t1_s: the end of the interval (s), at or after the server's time.
        tab: the cost table at the interval's clocks, ``ServingTables.table[setting]`` (float64 ``(5, M, B + 1)``).
        par: per model, float64 ``(M, 4)``: batch size, instances, the batching delay (s), the SLO (s).
        floor_w / cpu_busy_w: the idle floor and one busy host thread's power at the clocks (W).
        compiled: run the numba kernel (``False``: the same code in plain Python, for tests).

    Returns:
        ``server.out``, float64 ``(M + 1, STATS_WIDTH)``: a row per model, columns :data:`MODEL_STATS`; the last
        row :data:`BOARD_STATS`. Overwritten by the next call.
    """
    server.bind(tab, par, floor_w, cpu_busy_w, compiled=compiled)
    return server.advance(t1_s)


class Server:
    """The serving state of one board: every model's arrivals, queue, batches in flight, and the clock.

    Build it once per env; :meth:`reset` loads an episode's arrivals; :func:`serve_interval` advances it.

    Attributes:
        n_models: M. max_slots: batches that can be in flight at once (M × the most instances per model).
        buf: float64 ``(3, N)``: every model's sorted arrival times (s; model ``m``'s at ``ist[m, 4]:ist[m, 5]``),
            and the kernel's latency buffers.
        ontime: per request, 1 once it completed within its SLO. ist: per model, int64 queue pointers.
        state: float64: now, virtual time, the interval's start and end (s), the power terms, cores, batches
            in flight. slots: the batches in flight. out: the last interval's statistics.
    """

    def __init__(self, n_models: int, max_instances: int, cores: int) -> None:
        self.n_models = n_models
        self.max_slots = n_models * max_instances
        self.state = np.zeros(_NG)
        self.out = np.zeros((n_models + 1, STATS_WIDTH))
        self._fn: Any = None
        self._args: tuple | None = None
        self.reset([np.zeros(0) for _ in range(n_models)])
        self.state[_G_CORES] = float(cores)

    def reset(self, arrivals: Sequence[np.ndarray]) -> None:
        """Start an episode at 0 s with these arrivals (per model, sorted times in s): empty queues, no batch."""
        if len(arrivals) != self.n_models:
            raise ConfigError(f"the server has {self.n_models} models, got arrivals for {len(arrivals)}")
        ends = np.cumsum([len(a) for a in arrivals], dtype=np.int64)
        n = int(ends[-1]) if len(ends) else 0
        self.buf = np.zeros((3, n))
        if n:
            np.concatenate([np.asarray(a, dtype=float) for a in arrivals], out=self.buf[_ARR])
        self.ontime = np.zeros(n, dtype=np.uint8)
        self.ist = np.zeros((self.n_models, _NI), dtype=np.int64)
        self.ist[:, _END] = ends
        self.ist[:, _START] = ends - [len(a) for a in arrivals]
        self.ist[:, _HEAD] = self.ist[:, _DPTR] = self.ist[:, _APTR] = self.ist[:, _START]
        self.state[[_G_T, _G_V, _G_T0, _G_T1, _G_NACT]] = 0.0
        self.slots = np.zeros((self.max_slots, _NS))
        self.out[:] = 0.0
        if self._args is not None:  # the new buffers, the same table and parameters
            self._args = (self.buf, self.ontime, self.ist, self.state, self.slots, *self._args[5:])

    def bind(self, tab: np.ndarray, par: np.ndarray, floor_w: float, cpu_busy_w: float, *,
             compiled: bool = True) -> None:
        """Serve the next intervals with the cost table ``tab``, the parameters ``par`` (read at each interval: the
        caller may change them in place) and the power terms (W); see :func:`serve_interval`."""
        g = self.state
        g[_G_FLOOR], g[_G_CPU] = floor_w, cpu_busy_w
        self._fn = _compiled() if compiled else _serve
        self._args = (self.buf, self.ontime, self.ist, g, self.slots, tab, par, self.out)

    def advance(self, t1_s: float) -> np.ndarray:
        """Serve until ``t1_s`` (s) with what :meth:`bind` set; returns :attr:`out` (see :func:`serve_interval`)."""
        self.state[_G_T1] = t1_s
        self._fn(*self._args)
        return self.out

    @property
    def in_flight(self) -> int:
        """Batches running now."""
        return int(self.state[_G_NACT])


def capacity_rps(tables: ServingTables, setting: int, m: int, batches: Sequence[int], max_instances: int) -> float:
    """Requests per second model ``m`` can serve alone at flat setting ``setting``: the best over batch sizes in
    ``batches`` and 1..``max_instances`` instances of ``n · B / (L_B · s)`` with the contention factor ``s`` of
    ``n`` batches of ``B`` (the module docstring's model)."""
    t = tables.table[setting]
    best = 0.0
    for b in batches:
        for n in range(1, max_instances + 1):
            s = max(1.0, n * t[_UGPU, m, b], n * t[_UMEM, m, b], n * t[_UCPU, m, b] / tables.cores)
            best = max(best, n * b / (t[_LAT, m, b] * s))
    return best


def solo_power_w(tables: ServingTables, setting: int, m: int, batch: int = 1) -> float:
    """Board power (W) while one batch of ``batch`` requests of model ``m`` runs alone at flat ``setting``: the
    idle floor, the batch's GPU and memory dynamic power and one busy host thread."""
    t = tables.table[setting]
    return float(tables.floor_w[setting] + t[_GDYN, m, batch] / t[_LAT, m, batch] + tables.cpu_busy_w[setting])


def solo_latency_s(tables: ServingTables, setting: int, m: int, batch: int = 1) -> float:
    """Solo latency (s) of a batch of ``batch`` requests of model ``m`` at flat ``setting``."""
    return float(tables.table[setting, _LAT, m, batch])

