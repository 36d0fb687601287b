"""What a controller knows about a board's costs: a cost model obtained by *running the backend*.

A policy that plans (E4's profiler, the best static setting) needs the latency and energy of a piece of work
at each clock setting. On a real board the only way to know them is to run the work at those settings and
read the power monitor; e4gym gives every policy exactly that (:attr:`e4gym.policy.PolicyContext.cost_model`)
and nothing more: :class:`MeasuredCostModel` applies each allowed level triple on a backend, runs each work
``warmup + frames`` times, and keeps the mean measured latency and the mean energy *as the power monitor
reports it* (``measured_energy_j``), plus the board's measured idle power at each setting and the measured
delay of a clock switch. On the emulator the backend is a separate emulated board of the same configuration
(its own seed: noise, thermal drift and the polled power monitor included), never the emulator's analytic
model; on a board it is the board itself, before the episode.

Measuring is work: :attr:`MeasuredCostModel.offline` counts the runs, the board time (s) and the measured
energy (J) spent, which the harness reports as *offline* work, apart from the episode's figures.

Only policies that declare ``clairvoyant = True`` (bounds) may read the analytic model
(:mod:`e4gym.hardware.model`) instead.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from e4gym.dnn.work import Work
from e4gym.errors import ConfigError

#: Measured and discarded runs per (setting, work) of a cost model (count): ASSUMPTION (3 frames average the
#: emulator's 2 % latency noise to about 1.2 %; one warm-up run absorbs the switch to the setting).
DEFAULT_FRAMES = 8
DEFAULT_WARMUP = 1
#: Idle time measured per setting (s): ASSUMPTION (several polls of a 10-50 ms power monitor).
DEFAULT_IDLE_S = 0.1
#: On a real board (no reset between tables, seconds of board time per setting): every 4th level of each
#: domain and the top one, interpolated between, with 3 measured runs per setting: ASSUMPTION (Xavier NX:
#: 7 × 5 settings instead of 25 × 15; Dutt et al. also sweep a subset of the levels).
BOARD_STRIDE = 4
BOARD_FRAMES = 3


@dataclass
class OfflineWork:
    """Board work spent measuring before an episode (reported apart from the episode's figures).

    Attributes:
        runs: work runs (count). seconds: board time, runs and idle measurements (s).
        energy_j: energy as the power monitor reported it (J).
    """

    runs: int = 0
    seconds: float = 0.0
    energy_j: float = 0.0

    def add(self, latency_s: float, energy_j: float, runs: int = 1) -> None:
        """Count ``runs`` runs taking ``latency_s`` (s) and ``energy_j`` (J) in all."""
        self.runs += runs
        self.seconds += float(latency_s)
        self.energy_j += float(energy_j)


def best_pair(energy_j: np.ndarray, feasible: np.ndarray, latency_s: np.ndarray) -> tuple[tuple[int, int], bool]:
    """The cheapest feasible ``(cpu, gpu)`` pair and ``True``; the fastest pair and ``False`` if none is feasible.

    Works on any ``(cpu, gpu)`` cost table: the analytic model's (:func:`e4gym.hardware.model.grid_cost`) or a
    measured one (:class:`MeasuredCostModel`)."""
    if feasible.any():
        idx = np.unravel_index(int(np.argmin(np.where(feasible, energy_j, np.inf))), energy_j.shape)
        return (int(idx[0]), int(idx[1])), True
    idx = np.unravel_index(int(np.argmin(latency_s)), latency_s.shape)
    return (int(idx[0]), int(idx[1])), False


class MeasuredCostModel:
    """Latency and energy of works over the allowed level grid, measured on a backend (see the module docs).

    Arrays are indexed ``[cpu, gpu, emc]`` with the level indices of :attr:`cpu_levels`, :attr:`gpu_levels`
    and :attr:`emc_levels`: every allowed CPU and GPU level, and every allowed EMC level when the memory clock
    is controlled (otherwise the single level the env holds it at).

    Args:
        backend: an open backend (any: emulated or real) that accepts ``apply((cpu, gpu, emc))``.
        max_levels: the highest allowed ``(cpu, gpu, emc)`` levels of the power mode.
        control_memory: measure every EMC level, not only the top one.
        frames / warmup: measured and discarded runs per (setting, work).
        idle_s: idle time measured per setting (s).
        source: what measured it (for reports), e.g. ``"emulated"`` or ``"jetson"``.
        seed: on a backend with ``reset(seed)`` (the emulator), each table is measured from a fresh state seeded
            from ``seed`` and the work's key: the model is then a function of the configuration alone
            (``None``: measure in one go, as on a real board).
        stride: measure every ``stride``-th level of each domain (and the top one) and fill the levels between
            by linear interpolation along each axis: a coarse sweep for a real board, where each setting costs
            seconds of board time (1: every level).
    """

    def __init__(self, backend: object, max_levels: Sequence[int], control_memory: bool = False, *,
                 frames: int = DEFAULT_FRAMES, warmup: int = DEFAULT_WARMUP, idle_s: float = DEFAULT_IDLE_S,
                 source: str = "", seed: int | None = None, stride: int = 1) -> None:
        if isinstance(frames, bool) or not isinstance(frames, int) or frames < 1:
            raise ConfigError(f"frames must be an integer >= 1, got {frames!r}")
        if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
            raise ConfigError(f"warmup must be an integer >= 0, got {warmup!r}")
        if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
            raise ConfigError(f"stride must be an integer >= 1, got {stride!r}")
        if not (isinstance(idle_s, (int, float)) and math.isfinite(idle_s) and idle_s > 0):
            raise ConfigError(f"idle_s must be a finite number of seconds > 0, got {idle_s!r}")
        mc, mg, me = (int(v) for v in max_levels)
        self.cpu_levels = np.arange(mc + 1)
        self.gpu_levels = np.arange(mg + 1)
        self.emc_levels = np.arange(me + 1) if control_memory else np.array([me])
        self.control_memory = bool(control_memory)
        self.frames, self.warmup, self.idle_s = frames, warmup, float(idle_s)
        self.stride = stride
        self.source = source or type(backend).__name__
        self.seed = seed
        self.offline = OfflineWork()
        self._backend = backend
        self._lat: dict[str, np.ndarray] = {}
        self._energy: dict[str, np.ndarray] = {}
        self._idle: np.ndarray | None = None
        self._delays: np.ndarray | None = None
        #: What measuring each table cost, by table ("idle", a work key, "transitions"): for per-policy reports.
        self.cost_of: dict[str, OfflineWork] = {}

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(n_cpu, n_gpu, n_emc)`` of the measured grid."""
        return (len(self.cpu_levels), len(self.gpu_levels), len(self.emc_levels))

    def emc_index(self, emc_level: int) -> int:
        """Index into the EMC axis of an EMC level (the held level when memory is not controlled)."""
        if not self.control_memory:
            return 0
        return int(emc_level)

    # ------------------------------------------------------------------ measuring
    def _measured_indices(self, n: int) -> list[int]:
        """Indices measured along an axis of ``n`` levels: every ``stride``-th, and the top one."""
        return sorted({*range(0, n, self.stride), n - 1})

    def _fresh(self, tag: str) -> bool:
        """On a backend that can be reset (the emulator), restart it from a seed derived from ``tag``, so a table
        depends only on the configuration and the work, never on what was measured before (reproducible
        whichever policy asks first). Returns whether it could (a real board cannot)."""
        reset = getattr(self._backend, "reset", None)
        if self.seed is None or not callable(reset):
            return False
        digest = hashlib.sha256(f"{self.seed}:{tag}".encode()).hexdigest()
        reset(int(digest[:15], 16))
        return True

    def measure(self, works: Sequence[Work], progress: Callable[[int, int], None] | None = None) -> None:
        """Measure every work of ``works`` not measured yet (and the idle power, the first time) over the grid.

        One pass over the settings: apply a setting once, then run the works in the given order, ``warmup +
        frames`` times (give a network's blocks and heads in execution order: a real runner computes each block
        from the previous block's output).
        """
        todo = [w for w in dict.fromkeys(works, None) if w.key not in self._lat]
        need_idle = self._idle is None
        if not todo and not need_idle:
            return
        if self.seed is not None and callable(getattr(self._backend, "reset", None)) and len(todo) + need_idle > 1:
            # A resettable board: one pass per work (and one for the idle power), each from its own fresh state.
            if need_idle:
                self.measure([], progress)
            for w in todo:
                self.measure([w], progress)
            return
        self._fresh("idle" if not todo else todo[0].key)
        b = self._backend
        lat = {w.key: np.zeros(self.shape) for w in todo}
        energy = {w.key: np.zeros(self.shape) for w in todo}
        idle = np.zeros(self.shape) if need_idle else None
        off = OfflineWork()
        sub = [self._measured_indices(len(ax)) for ax in (self.cpu_levels, self.gpu_levels, self.emc_levels)]
        total = int(np.prod([len(x) for x in sub]))
        done = 0
        for i in sub[0]:
            c = self.cpu_levels[i]
            for j in sub[1]:
                g = self.gpu_levels[j]
                for k in sub[2]:
                    e = self.emc_levels[k]
                    b.apply((int(c), int(g), int(e)))
                    # Every repetition runs the works in the order given (a network's blocks and heads in order:
                    # a real runner computes each block from the previous block's output).
                    for _ in range(self.warmup):
                        for w in todo:
                            m = b.run(w)
                            off.add(m.latency_s, m.measured_energy_j)
                    sums = np.zeros((len(todo), 2))
                    for _ in range(self.frames):
                        for n, w in enumerate(todo):
                            m = b.run(w)
                            sums[n, 0] += m.latency_s
                            sums[n, 1] += m.measured_energy_j
                    off.add(float(sums[:, 0].sum()), float(sums[:, 1].sum()), self.frames * len(todo))
                    for n, w in enumerate(todo):
                        lat[w.key][i, j, k] = sums[n, 0] / self.frames
                        energy[w.key][i, j, k] = sums[n, 1] / self.frames
                    if idle is not None:
                        m = b.idle(self.idle_s)
                        off.add(m.latency_s, m.measured_energy_j, runs=0)
                        idle[i, j, k] = m.measured_energy_j / m.latency_s if m.latency_s > 0 else m.avg_power_w
                    done += 1
                    if progress is not None:
                        progress(done, total)
        if self.stride > 1:  # fill the levels between measured ones by linear interpolation along each axis
            lat = {key: _interpolate(a, sub) for key, a in lat.items()}
            energy = {key: _interpolate(a, sub) for key, a in energy.items()}
            idle = None if idle is None else _interpolate(idle, sub)
        for key in lat:
            if not (np.all(np.isfinite(lat[key])) and np.all(lat[key] > 0)):
                raise ConfigError(f"measuring '{key}' gave non-positive or non-finite latencies; check the backend")
        self._account(off, [w.key for w in todo] + (["idle"] if need_idle else []))
        self._lat.update(lat)
        self._energy.update(energy)
        if idle is not None:
            self._idle = idle

    def measure_transitions(self, work: Work, repeats: int = 5) -> np.ndarray:
        """Measure, per clock domain (cpu, gpu, emc), how long new clocks take to act (s).

        For each domain: the steady latency of ``work`` with that domain at its lowest and at its highest
        level (others at the top), then the latency of a run right after switching it from lowest to highest.
        A run that starts at the old clocks for ``d`` seconds takes ``L_hi + d·(1 − L_hi/L_lo)``, so
        ``d = (L_switch − L_hi) / (1 − L_hi/L_lo)`` (stalls are folded into ``d``). Domains with one level, or
        the EMC when memory is not controlled, get 0.
        """
        if self._delays is not None:
            return self._delays
        self._fresh(f"transitions:{work.key}")
        b = self._backend
        off = OfflineWork()
        top = (int(self.cpu_levels[-1]), int(self.gpu_levels[-1]), int(self.emc_levels[-1]))
        lows = (int(self.cpu_levels[0]), int(self.gpu_levels[0]), int(self.emc_levels[0]))
        out = np.zeros(3)
        for d in range(3):
            if lows[d] == top[d]:
                continue
            low = list(top)
            low[d] = lows[d]
            est = []
            for _ in range(repeats):
                b.apply(tuple(low))
                for _ in range(self.warmup + 1):
                    m = b.run(work)
                    off.add(m.latency_s, m.measured_energy_j)
                l_lo = m.latency_s
                b.apply(top)
                m = b.run(work)  # right after the switch
                off.add(m.latency_s, m.measured_energy_j)
                l_sw = m.latency_s
                m = b.run(work)  # steady at the new clocks
                off.add(m.latency_s, m.measured_energy_j)
                l_hi = m.latency_s
                gain = 1.0 - l_hi / l_lo if l_lo > 0 else 0.0
                if gain > 0.02:  # a domain that hardly changes the latency tells nothing about its delay
                    est.append(max(0.0, (l_sw - l_hi) / gain))
            out[d] = float(np.median(est)) if est else 0.0
        self._delays = out
        self._account(off, ["transitions"])
        return out

    def _account(self, work: OfflineWork, tables: list[str]) -> None:
        """Add ``work`` to :attr:`offline` and split it evenly over ``tables`` in :attr:`cost_of`."""
        o = self.offline
        o.add(work.seconds, work.energy_j, work.runs)
        n = max(len(tables), 1)
        for t in tables:
            c = self.cost_of.setdefault(t, OfflineWork())
            c.add(work.seconds / n, work.energy_j / n, work.runs // n)

    def view(self) -> CostModelView:
        """A view of this model that records which tables its user read (:meth:`CostModelView.stats` reports
        what measuring exactly those would cost, however many users share the model)."""
        return CostModelView(self)

    # ------------------------------------------------------------------ reading
    def latency_s(self, work: Work) -> np.ndarray:
        """Mean measured latency of ``work`` (s), ``(n_cpu, n_gpu, n_emc)``; measured on first use."""
        if work.key not in self._lat:
            self.measure([work])
        return self._lat[work.key]

    def energy_j(self, work: Work) -> np.ndarray:
        """Mean measured energy of one run of ``work`` (J, power monitor), ``(n_cpu, n_gpu, n_emc)``."""
        if work.key not in self._energy:
            self.measure([work])
        return self._energy[work.key]

    @property
    def idle_power_w(self) -> np.ndarray:
        """Measured idle power of the board at each setting (W), ``(n_cpu, n_gpu, n_emc)``."""
        if self._idle is None:
            self.measure([])
        assert self._idle is not None
        return self._idle

    def streaming(self, work: Work, period_s: float) -> tuple[np.ndarray, np.ndarray]:
        """``(latency_s, energy_j)`` of one frame of ``work`` in streaming time at every setting: its run plus
        the idle wait until the next arrival ``period_s`` after its start, at the same clocks (no idle when
        the run is longer than the period)."""
        lat = self.latency_s(work)
        return lat, self.energy_j(work) + self.idle_power_w * np.maximum(0.0, period_s - lat)

    def stats(self) -> dict[str, float]:
        """Offline work for reports: ``offline_runs``, ``offline_s`` (s), ``offline_energy_j`` (J)."""
        return {"offline_runs": float(self.offline.runs), "offline_s": self.offline.seconds,
                "offline_energy_j": self.offline.energy_j}


def _interpolate(a: np.ndarray, measured: list[list[int]]) -> np.ndarray:
    """``a`` with the entries off the measured sub-grid filled by linear interpolation along each axis."""
    out = a[np.ix_(*measured)]
    for axis, idx in enumerate(measured):
        n = a.shape[axis]
        if len(idx) == n:
            continue
        moved = np.moveaxis(out, axis, -1)
        flat = moved.reshape(-1, len(idx))
        full = np.array([np.interp(np.arange(n), idx, row) for row in flat]).reshape(*moved.shape[:-1], n)
        out = np.moveaxis(full, -1, axis)
    return out


class CostModelView:
    """One policy's window on a shared :class:`MeasuredCostModel`: the same readings, and :meth:`stats` of the
    tables *this* policy read (a policy is charged the measuring it needed, not what other policies of the same
    process made the shared model measure)."""

    def __init__(self, model: MeasuredCostModel) -> None:
        self.model = model
        self.used: set[str] = set()

    def __getattr__(self, name: str) -> object:  # level axes, shape, emc_index, source, offline, ...
        return getattr(self.model, name)

    def measure(self, works: Sequence[Work], progress: Callable[[int, int], None] | None = None) -> None:
        """:meth:`MeasuredCostModel.measure`, recording the tables."""
        self.used.update(w.key for w in works)
        self.used.add("idle")
        self.model.measure(works, progress)

    def latency_s(self, work: Work) -> np.ndarray:
        """:meth:`MeasuredCostModel.latency_s`, recording the table."""
        self.used.add(work.key)
        return self.model.latency_s(work)

    def energy_j(self, work: Work) -> np.ndarray:
        """:meth:`MeasuredCostModel.energy_j`, recording the table."""
        self.used.add(work.key)
        return self.model.energy_j(work)

    @property
    def idle_power_w(self) -> np.ndarray:
        """:attr:`MeasuredCostModel.idle_power_w`, recording the table."""
        self.used.add("idle")
        return self.model.idle_power_w

    def streaming(self, work: Work, period_s: float) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`MeasuredCostModel.streaming`, recording the tables."""
        self.used.update((work.key, "idle"))
        return self.model.streaming(work, period_s)

    def measure_transitions(self, work: Work, repeats: int = 5) -> np.ndarray:
        """:meth:`MeasuredCostModel.measure_transitions`, recording it."""
        self.used.add("transitions")
        return self.model.measure_transitions(work, repeats)

    def stats(self) -> dict[str, float]:
        """``offline_runs``, ``offline_s`` (s), ``offline_energy_j`` (J) of measuring the tables this view read."""
        tot = OfflineWork()
        for t in self.used:
            c = self.model.cost_of.get(t)
            if c is not None:
                tot.add(c.seconds, c.energy_j, c.runs)
        return {"offline_runs": float(tot.runs), "offline_s": tot.seconds, "offline_energy_j": tot.energy_j}


def emulated_cost_model(setup: object, seed: int = 0x5EED, measured: object = None,
                        **kwargs: object) -> MeasuredCostModel:
    """A :class:`MeasuredCostModel` measured on a separate emulated board with an env setup's configuration.

    Args:
        setup: an :class:`~e4gym.envs.common.EnvSetup` (device, power mode, cooling, memory control).
        seed: the measuring board's seed (its noise), apart from any episode's.
        measured: a measured profile the emulator runs instead of its analytic model (as the env's backend).
        kwargs: :class:`MeasuredCostModel` options (``frames``, ``warmup``, ``idle_s``).
    """
    from e4gym.hardware.emulator import EmulatedBackend

    s = setup
    backend = EmulatedBackend(s.spec, seed=seed, power_mode=s.power_mode, cooling=s.cooling,  # type: ignore[attr-defined]
                              initial_temp_c=s.initial_temp_c, measured=measured)  # type: ignore[attr-defined]
    return MeasuredCostModel(backend, s.max_levels, s.control_memory, source="emulated", seed=seed,  # type: ignore[arg-type]
                             **kwargs)
