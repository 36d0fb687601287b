"""E4's just-in-time (JIT) profiler: coordinate descent over the clock levels of the blocks before an exit.

For an exit ``e`` the decision is a clock setting per *segment* of the network up to ``e``: one segment for
the whole frame (the frame env: one setting per frame) or one per backbone block (the block env: per-layer
DVFS, E4's design). Each segment's setting is ``(cpu, gpu)`` levels, plus ``emc`` when the env controls the
memory clock. The profiler minimises the frame's streaming energy (its run plus the idle wait until the next
frame, at the last segment's clocks) subject to ``latency · (1 + margin) <= min(deadline, frame period)``:

1. **Start** from the cached solution of the same key, else the last solution found for the same exit,
   else every level at the top (the fastest setting; if even that misses the deadline, the profiler returns
   the fastest setting).
2. **Coordinate descent.** Visit the coordinates (segment × domain) in turn; along each, step one level
   down, then up, and keep stepping while the objective improves. An infeasible setting is worse than every
   feasible one; among infeasible ones the faster wins. When a pass changes nothing, try *exchanges*: lower
   one coordinate by a level and raise another domain until the deadline is met again; take the first that
   saves energy and go back to single-coordinate passes. Stop when neither finds an improvement. (Plain
   coordinate descent stops at the first point of the deadline boundary it reaches; the exchanges slide
   along the boundary.) Per-layer plans start from the best uniform plan (the per-frame search, exchanges
   included) and then move single coordinates only.
3. **Cache** the solution per ``(exit, complexity bucket)``. A cached solution is profiled again (warm
   started) when the measured latency of frames at that exit drifts from the model by more than
   ``drift_tolerance`` or the board temperature moves by more than ``temp_tolerance_c`` (leakage grows with
   temperature), which is what makes it *just in time*: it re-profiles only when the board changes.
4. **Count** every distinct configuration evaluated, against what a full sweep would evaluate for the same
   profiling calls (:attr:`ProfilerStats.share`). A full sweep of one call is the allowed level grid
   (``n_cpu · n_gpu``, times ``n_emc`` with memory control) for each segment: for per-layer plans that is a
   conservative denominator (the joint space is the grid to the power of the segment count).

**Evaluating a configuration.** The profiler knows the board only by measurement. Its tables are the
measured cost model the env hands every policy (:attr:`e4gym.policy.PolicyContext.cost_model`: each block
and head run on the backend at every allowed setting, with the power monitor's energy, the idle power per
setting and the measured delay of a clock switch), corrected online by the ratio of measured to tabled
latency of recent frames at each exit (the step ``info``'s ``run_ms``). Planning on these tables is
arithmetic (and a temperature change of more than ``temp_tolerance_c`` re-plans on them). *Just-in-time
profiling* is measuring: when the board's latency at an exit has drifted from what was last measured by more
than ``drift_tolerance``,
the next plan chosen for that exit is searched again with every configuration the search visits *run on
the board* (:meth:`e4gym.policy.PolicyContext.profile_run`: a profiling frame whose time delays the next
frame and whose energy is charged to it). Per-layer plans measure the uniform search only and refine the
per-block settings on the corrected tables (measuring every per-block move would cost seconds per plan).
Between segments a switch costs the measured delay before new clocks act (the segment runs at the old
clocks until then); a delay longer than its segment is not carried into the next one (an approximation the
measured-latency correction absorbs).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from e4gym.envs.common import EnvSetup
from e4gym.errors import ConfigError

#: Default relative drift of measured over modelled latency that triggers re-profiling (fraction): ASSUMPTION.
DRIFT_TOLERANCE = 0.05
#: Default temperature change that triggers re-profiling (°C): ASSUMPTION (leakage ≈ +10 % per 5 °C).
TEMP_TOLERANCE_C = 5.0
#: Profiling runs one just-in-time re-profile may run on the board (count); further configurations are judged
#: on the corrected tables. Each run is a frame's worth of board time that queues the next frames: ASSUMPTION.
MAX_PROFILE_RUNS = 4
#: Frames (fed back) an exit waits after an on-board re-profile before the next one: ASSUMPTION (without it a
#: noisy drift estimate re-profiled nearly every frame on AGX Orin, queueing 14-20 % of the frames).
REPROFILE_COOLDOWN = 100
#: Extra levels a coordinate step looks past a non-improving one (measured tables are noisy): ASSUMPTION.
PATIENCE = 2
#: Weight of a new measurement in the latency-correction average: ASSUMPTION.
CORRECTION_ALPHA = 0.1


@dataclass
class ProfilerStats:
    """Work done by a :class:`JITProfiler`.

    Attributes:
        evaluations: distinct configurations evaluated (count).
        full_sweep: configurations a full sweep would have evaluated for the same profiling calls (count).
        profiles: profiling calls (coordinate-descent searches) run. reprofiles: of which were re-profiles of a
            cached key after drift. cache_hits: lookups answered from the cache.
        measured_profiles: searches whose configurations ran on the board. runs: profiling runs on the board
            (count); run_s / run_energy_j: their board time (s) and monitor energy (J).
    """

    evaluations: int = 0
    full_sweep: int = 0
    profiles: int = 0
    reprofiles: int = 0
    cache_hits: int = 0
    measured_profiles: int = 0
    runs: int = 0
    run_s: float = 0.0
    run_energy_j: float = 0.0

    @property
    def share(self) -> float:
        """``evaluations / full_sweep`` (fraction; NaN before the first profile)."""
        return self.evaluations / self.full_sweep if self.full_sweep else math.nan


@dataclass
class Plan:
    """A solution: the levels of each segment and its modelled figures.

    Attributes:
        exit: the exit it is for. levels: ``(n_segments, 2 or 3)`` int array of (cpu, gpu[, emc]) levels.
        segment_blocks: the last backbone block of each segment.
        latency_s / energy_j: modelled latency (correction applied) and streaming energy per frame (s, J).
        feasible: whether it meets the deadline with the margin.
        scale / temp_c: the latency correction and temperature it was profiled at.
    """

    exit: int
    levels: np.ndarray
    segment_blocks: tuple[int, ...]
    latency_s: float
    energy_j: float
    feasible: bool
    scale: float
    temp_c: float

    def levels_for_block(self, block: int) -> np.ndarray:
        """The levels of the segment containing backbone block ``block``."""
        for s, last in enumerate(self.segment_blocks):
            if block <= last:
                return self.levels[s]
        return self.levels[-1]


@dataclass
class JITProfiler:
    """Coordinate-descent profiler over per-segment clock levels (see the module docstring).

    Args:
        setup: the env's resolved setup (device, model, power mode, fps, deadline, memory control).
        cost_model: the measured cost model (:class:`~e4gym.hardware.costmodel.MeasuredCostModel`).
        per_layer: one setting per backbone block (the block env) instead of one per frame.
        heads: ``"chosen"``: only the chosen exit's head runs (the frame env); ``"passed"``: every head the
            frame passes runs (the block env).
        margin: latency headroom (fraction) for noise and DVFS stalls.
        drift_tolerance / temp_tolerance_c: re-profiling triggers (fraction, °C).
        measure: ``measure(exit, levels) -> (latency_s, energy_j, temp_c)`` runs a profiling frame on the board
            (``PolicyContext.profile_run``); ``None``: plan on the tables only.
        max_runs: profiling runs one re-profile may run on the board (:data:`MAX_PROFILE_RUNS`).
    """

    setup: EnvSetup
    cost_model: Any
    per_layer: bool = False
    heads: str = "chosen"
    margin: float = 0.1
    drift_tolerance: float = DRIFT_TOLERANCE
    temp_tolerance_c: float = TEMP_TOLERANCE_C
    measure: Callable[[int, np.ndarray], Any] | None = None
    max_runs: int = MAX_PROFILE_RUNS
    stats: ProfilerStats = field(default_factory=ProfilerStats)

    def __post_init__(self) -> None:
        if self.heads not in ("chosen", "passed"):
            raise ConfigError(f"heads must be 'chosen' or 'passed', got {self.heads!r}")
        if not (isinstance(self.margin, (int, float)) and math.isfinite(self.margin) and self.margin >= 0):
            raise ConfigError(f"margin must be a finite number >= 0 (fraction), got {self.margin!r}")
        s = self.setup
        prof = s.profile
        cm = self.cost_model
        mc, mg, me = s.max_levels
        self._dims = 3 if s.control_memory else 2
        self._hi = np.array([mc, mg, me][: self._dims])

        def table(work):  # (latency s, run energy J as the monitor reports it) over the allowed grid
            return cm.latency_s(work), cm.energy_j(work)

        if self.per_layer or self.heads == "passed":
            blocks = [prof.block_work(j) for j in range(prof.exits[-1].after_block + 1)]
            heads = [prof.head_work(e) for e in range(prof.n_exits)]
            # One pass over the settings (offline work, counted by the cost model), in execution order: each
            # head right after the block it branches from.
            order = []
            for j, w in enumerate(blocks):
                order.append(w)
                order += [heads[e] for e, x in enumerate(prof.exits) if x.after_block == j]
            cm.measure(order)
            self._block = [table(w) for w in blocks]
            self._head = [table(w) for w in heads]
        else:  # per-frame plans in the frame env: the frames themselves
            cm.measure([prof.frame_work(e) for e in range(prof.n_exits)])
            self._block, self._head = [], []
        self._idle = cm.idle_power_w
        self._delays = tuple(float(d) for d in cm.measure_transitions(prof.frame_work(prof.n_exits - 1)))
        self._budget = min(s.deadline_s, s.period_s) / (1.0 + self.margin)
        self._period = s.period_s
        self._segments = [self._segments_of(e) for e in range(prof.n_exits)]
        self._cache: dict[tuple[int, int, int], Plan] = {}
        self._last: dict[int, Plan] = {}
        self._scale = np.ones(prof.n_exits)
        self._ref: dict[int, tuple[float, float]] = {}  # per exit: (scale, temperature) when last measured
        self._measured_at: dict[int, int] = {}  # per exit: the feedback count at its last on-board re-profile
        self._observed = 0  # frames fed back
        self.temp_c = s.cooling.ambient_c if s.initial_temp_c is None else s.initial_temp_c

    # ------------------------------------------------------------------ model
    def _segments_of(self, exit: int) -> list[tuple[list, list]]:
        """Per segment: (latency table, run-energy table, last block) of its blocks and heads. A per-frame plan
        in the frame env is the frame itself, measured as one run (a frame costs more than its blocks measured
        apart: launch overheads overlap differently); per-layer segments are the blocks as the block env runs
        them."""
        prof = self.setup.profile
        last_block = prof.exits[exit].after_block
        if not self.per_layer and self.heads == "chosen":
            w = prof.frame_work(exit)
            return [(self.cost_model.latency_s(w), self.cost_model.energy_j(w), last_block)]
        heads_at = {}
        for e, x in enumerate(prof.exits):
            if (self.heads == "passed" and e <= exit) or e == exit:
                heads_at.setdefault(x.after_block, []).append(e)
        groups = [[j] for j in range(last_block + 1)] if self.per_layer else [list(range(last_block + 1))]
        segs = []
        for g in groups:
            parts = [self._block[j] for j in g] + [self._head[e] for j in g for e in heads_at.get(j, [])]
            segs.append((sum(p[0] for p in parts), sum(p[1] for p in parts), g[-1]))
        return segs

    @property
    def limit_s(self) -> float:
        """The hard latency limit of a frame: ``min(deadline, period)`` (s)."""
        return self._budget * (1.0 + self.margin)

    @property
    def budget_s(self) -> float:
        """The latency a plan may take: ``min(deadline, period) / (1 + margin)`` (s)."""
        return self._budget

    def n_segments(self, exit: int) -> int:
        """Segments of exit ``exit``'s plan (1 per frame, or its backbone blocks per layer)."""
        return len(self._segments[exit])

    def grid_size(self) -> int:
        """Configurations of one segment's full sweep (the allowed level grid)."""
        return int(np.prod(self._hi + 1))

    def _idx(self, levels: np.ndarray) -> tuple[int, int, int]:
        """Index into the measured tables (the EMC axis has one entry when memory is not controlled)."""
        return (int(levels[0]), int(levels[1]), int(levels[2]) if self._dims == 3 else 0)

    def evaluate(self, exit: int, levels: np.ndarray) -> tuple[float, float]:
        """Tabled ``(latency_s, energy_j)`` of a frame at exit ``exit`` with per-segment ``levels``
        (``(n_segments, 2|3)``): measured tables, the latency correction applied (the run energy scaled with
        it); energy includes the idle wait at the last segment's measured idle power. Runs nothing and is not
        counted in :attr:`stats` (the search counts its own evaluations)."""
        lat = run_e = 0.0
        prev = None
        scale = self._scale[exit]
        ix = (0, 0, 0)
        for (lat_t, e_t, _), lv in zip(self._segments[exit], levels):
            ix = self._idx(lv)
            base = lat_t[ix] * scale
            seg_lat = base
            if prev is not None and prev != ix:
                changed = [i for i in range(3) if prev[i] != ix[i]]
                # The board keeps the old clocks for the longest delay of the switched domains: that much of
                # the segment runs at the old rate (all of it, if it is shorter than the delay).
                delay = max(self._delays[i] for i in changed)
                old = lat_t[prev] * scale
                seg_lat = old if delay >= old else delay + seg_lat * (1.0 - delay / old)
            lat += seg_lat
            run_e += e_t[ix] * (seg_lat / lat_t[ix])  # the run's power at these clocks, for its corrected time
            prev = ix
        idle = max(0.0, self._period - lat) * float(self._idle[ix])  # at the last segment's clocks
        return lat, run_e + idle

    # ------------------------------------------------------------------ search
    def switch_penalty_s(self, exit: int, prev: tuple[int, ...], plan: Plan) -> float:
        """Extra latency (s) of running ``plan`` right after the board ran at levels ``prev`` (cpu, gpu, emc).

        On a switch the board keeps the old levels for the longest transition delay of the domains that
        change (``transition_delay_s``; the emulator does the same), so a frame sped up by the switch first
        runs ``delay`` seconds at the old, slower rate: ``delay · (1 − L_new / L_old)`` extra (stalls are folded
        into the measured delays).
        """
        new = self._idx(plan.levels[0])
        old = (int(prev[0]), int(prev[1]), int(prev[2]) if len(prev) > 2 and self._dims == 3 else 0)
        changed = [i for i in range(3) if old[i] != new[i]]
        if not changed:
            return 0.0
        delay = max(self._delays[i] for i in changed)
        old_levels = np.tile(np.array(old[: self._dims]), (self.n_segments(exit), 1))
        lat_old, _ = self.evaluate(exit, old_levels)
        lat_new = plan.latency_s
        slow = max(0.0, min(delay, lat_old) * (1.0 - lat_new / lat_old)) if lat_old > 0 else 0.0
        return slow  # stalls are folded into the measured delays

    def solve(self, exit: int, bucket: int = 0, extra_s: float = 0.0) -> Plan:
        """The plan for ``exit`` and complexity ``bucket``: cached, or found by coordinate descent.

        ``extra_s`` (s) is latency the plan must leave room for besides its own (a clock switch's delay,
        :meth:`switch_penalty_s`); plans are cached per millisecond of it.
        """
        extra_ms = math.ceil(max(0.0, extra_s) * 1e3 - 1e-9)
        key = (int(exit), int(bucket), extra_ms)
        plan = self._cache.get(key)
        if plan is not None:
            drift = abs(self._scale[exit] / plan.scale - 1.0)
            if drift <= self.drift_tolerance and abs(self.temp_c - plan.temp_c) <= self.temp_tolerance_c:
                self.stats.cache_hits += 1
                return plan
            self.stats.reprofiles += 1
        start = plan if plan is not None else self._last.get(key[0])
        if start is None and extra_ms:
            start = self._cache.get((key[0], key[1], 0))
        plan = self._descend(key[0], None if start is None else start.levels, extra_ms / 1e3)
        self._cache[key] = plan
        if not extra_ms:
            self._last[key[0]] = plan
        return plan

    def _descend(self, exit: int, start: np.ndarray | None, extra_s: float = 0.0) -> Plan:
        n_seg = self.n_segments(exit)
        memo: dict[bytes, tuple[bool, float, float, float]] = {}

        def f(x: np.ndarray) -> tuple[bool, float, float, float]:
            """(feasible, objective, latency s, energy J) of the full plan ``x`` (memoised, counted once)."""
            k = x.tobytes()
            if k not in memo:
                lat, e = self.evaluate(exit, x)
                ok = lat + extra_s <= self._budget
                memo[k] = (ok, e if ok else lat, lat, e)  # objective: energy if feasible, else latency
            return memo[k]

        if start is not None and np.shape(start) != (n_seg, self._dims):
            start = np.tile(np.asarray(start).reshape(-1, self._dims)[-1], (n_seg, 1))
        if n_seg == 1:
            x = self._search(f, np.asarray(start, np.int64) if start is not None else None, 1, 1)
        else:
            # Per layer: first the best uniform plan (one setting for every segment, a per-frame search with
            # exchanges), then free the segments with single-coordinate moves only. Per-layer plans can only
            # improve on the uniform one, and without per-layer exchanges the search stays short.
            uni = self._search(f, None if start is None else np.asarray(start, np.int64)[-1:], 1, n_seg)[:1]
            x = self._search(f, np.tile(uni, (n_seg, 1)) if start is None else np.asarray(start, np.int64),
                             n_seg, n_seg, fallback=np.tile(uni, (n_seg, 1)), exchanges=False)
        cur = f(x)
        self.stats.evaluations += len(memo)
        self.stats.full_sweep += n_seg * self.grid_size()
        self.stats.profiles += 1
        return Plan(exit, x, tuple(seg[2] for seg in self._segments[exit]), cur[2], cur[3], cur[0],
                    float(self._scale[exit]), float(self.temp_c))

    def _search(self, f, start: np.ndarray | None, n_free: int, n_seg: int,
                fallback: np.ndarray | None = None, exchanges: bool = True) -> np.ndarray:
        """Coordinate descent (with exchanges unless ``exchanges=False``) over ``n_free`` segments' levels
        (tiled to ``n_seg`` when 1)."""
        def full(x: np.ndarray) -> np.ndarray:
            return x if n_free == n_seg else np.tile(x, (n_seg, 1))

        def better(a, b) -> bool:  # a better than b
            if a[0] != b[0]:
                return a[0]
            return a[1] < b[1] - 1e-12

        top = np.tile(self._hi, (n_free, 1))
        x = top.copy() if start is None else start.copy()
        cur = f(full(x))
        if not cur[0]:
            # Repair an infeasible warm start: raise every level one step at a time until it meets the deadline.
            while not cur[0] and (x < top).any():
                x = np.minimum(x + 1, top)
                cur = f(full(x))
        if fallback is not None and better(f(fallback), cur):
            x, cur = fallback.copy(), f(fallback)
        coords = [(s, d) for s in range(n_free) for d in range(self._dims)]
        # Exchanges: lower one coordinate and raise another until the deadline is met again. Along the
        # deadline boundary single-coordinate moves are all infeasible or worse, so plain coordinate descent
        # stops at the first boundary point it reaches; exchanges let it slide along the boundary. Pairs:
        # two domains of one segment, or one domain of two neighbouring segments (moving slack between layers).
        pairs = [(a, b) for a in coords for b in coords
                 if a != b and (a[0] == b[0] or (a[1] == b[1] and abs(a[0] - b[0]) == 1))]
        changed = True
        while changed:
            changed = False
            for s, d in coords:
                for step in (-1, 1):
                    while True:
                        # Measured costs are noisy: a step that does not improve may hide a better point one
                        # or two levels further (PATIENCE), so look that far before leaving the coordinate.
                        moved = False
                        for jump in range(1, PATIENCE + 2):
                            if not 0 <= x[s, d] + step * jump <= self._hi[d]:
                                break
                            y = x.copy()
                            y[s, d] += step * jump
                            v = f(full(y))
                            if better(v, cur):
                                x, cur, changed, moved = y, v, True, True
                                break
                        if not moved:
                            break
            if changed or not cur[0] or not exchanges:
                continue
            for (s1, d1), (s2, d2) in pairs:
                if x[s1, d1] == 0:
                    continue
                y = x.copy()
                y[s1, d1] -= 1
                while y[s2, d2] < self._hi[d2] and not f(full(y))[0]:
                    y[s2, d2] += 1
                v = f(full(y))
                if better(v, cur):
                    x, cur, changed = y, v, True
                    break
        return full(x)

    # ------------------------------------------------------------------ just-in-time profiling on the board
    def needs_measuring(self, exit: int) -> bool:
        """Whether the board's latency at ``exit`` has drifted from what was last measured by more than
        ``drift_tolerance`` and a profiling channel exists. An exit with no feedback yet trusts the offline
        tables. (A temperature change only re-plans on the tables: the board time of profiling runs queues
        frames, so the profiler measures only when the tables mispredict latency.)"""
        ref = self._ref.get(exit)
        if self.measure is None or ref is None:
            return False
        if self._observed - self._measured_at.get(exit, -REPROFILE_COOLDOWN) < REPROFILE_COOLDOWN:
            return False
        return abs(self._scale[exit] / ref[0] - 1.0) > self.drift_tolerance

    def profile_on_board(self, exit: int, bucket: int = 0) -> Plan:
        """Search ``exit``'s plan again with every configuration visited run on the board (warm-started from
        the cached plan); per-layer plans then refine per block on the corrected tables. Updates the latency
        correction from what was measured and caches the plan for ``(exit, bucket)``.

        Raises:
            ConfigError: no profiling channel (``measure``).
        """
        if self.measure is None:
            raise ConfigError("profile_on_board() needs a profiling channel (measure=PolicyContext.profile_run)")
        n_seg = self.n_segments(exit)
        key = (int(exit), int(bucket), 0)
        start = self._cache.get(key) or self._last.get(int(exit))
        memo: dict[bytes, tuple[bool, float, float, float]] = {}
        last_temp = [self.temp_c]

        runs = [0]

        def f(x: np.ndarray) -> tuple[bool, float, float, float]:
            k = x.tobytes()
            if k not in memo and runs[0] >= self.max_runs:
                lat, e = self.evaluate(exit, x)  # the run budget is spent: the corrected tables decide the rest
                ok = lat <= self._budget
                memo[k] = (ok, e if ok else lat, lat, e)
            if k not in memo:
                runs[0] += 1
                lat, energy, temp = (float(v) for v in self.measure(exit, x)[:3])
                st = self.stats
                st.runs += 1
                st.run_s += lat
                st.run_energy_j += energy
                if math.isfinite(temp):
                    last_temp[0] = temp
                e = energy + float(self._idle[self._idx(x[-1])]) * max(0.0, self._period - lat)
                ok = lat <= self._budget
                memo[k] = (ok, e if ok else lat, lat, e)
            return memo[k]

        x0 = None if start is None else np.asarray(start.levels, np.int64)[-1:]
        uni = self._search(f, x0, 1, n_seg)
        cur = f(uni)
        self.temp_c = last_temp[0]
        self.stats.evaluations += len(memo)
        self.stats.full_sweep += self.grid_size()
        self.stats.profiles += 1
        self.stats.measured_profiles += 1
        plan = Plan(exit, uni, tuple(seg[2] for seg in self._segments[exit]), cur[2], cur[3], cur[0],
                    float(self._scale[exit]), float(self.temp_c))
        if n_seg > 1:
            plan = self._descend(exit, uni)
        self._cache[key] = plan
        self._last[int(exit)] = plan
        # The drift is now measured: the next re-profile waits for a further drift from here (the latency
        # correction keeps following the frames; one noisy profiling run does not reset it).
        self._ref[int(exit)] = (float(self._scale[exit]), float(self.temp_c))
        self._measured_at[int(exit)] = self._observed
        return plan

    # ------------------------------------------------------------------ feedback
    def observe(self, exit: int, run_s: float, levels: np.ndarray | None = None, temp_c: float | None = None) -> None:
        """Feed back a finished frame: its measured run time (s, DVFS stalls included) at ``exit`` with the
        plan ``levels`` it ran (default: the exit's last plan), and the board temperature (°C)."""
        if temp_c is not None and math.isfinite(temp_c):
            self.temp_c = float(temp_c)
        plan_levels = levels if levels is not None else (self._last[exit].levels if exit in self._last else None)
        if plan_levels is None or not (math.isfinite(run_s) and run_s > 0):
            return
        self._observed += 1
        scale = self._scale[exit]
        modelled, _ = self.evaluate(exit, plan_levels)
        ratio = run_s / (modelled / scale)
        self._scale[exit] = (1 - CORRECTION_ALPHA) * scale + CORRECTION_ALPHA * ratio
        self._ref.setdefault(int(exit), (float(self._scale[exit]), float(self.temp_c)))

    def reset(self) -> None:
        """Forget the latency corrections and temperature (a new episode: the board starts cool again).
        The cached plans stay (they are warm starts and are re-profiled when the board drifts)."""
        self._scale[:] = 1.0
        self._ref.clear()
        self._measured_at.clear()
        self._observed = 0
        s = self.setup
        self.temp_c = s.cooling.ambient_c if s.initial_temp_c is None else s.initial_temp_c

    def full_sweep(self, exit: int) -> tuple[np.ndarray, float]:
        """Exhaustive per-frame search (one segment) for tests and reports: ``(levels, energy_j)`` of the
        cheapest feasible setting (the fastest when none is feasible). Not counted in :attr:`stats`."""
        if self.per_layer:
            raise ConfigError("full_sweep() covers per-frame plans only (the per-layer space is exponential)")
        cands = [np.array([ix], dtype=np.int64) for ix in np.ndindex(*(self._hi + 1))]
        figs = [self.evaluate(exit, x) for x in cands]
        ok = [i for i, (lat, _) in enumerate(figs) if lat <= self._budget]
        i = min(ok, key=lambda i: figs[i][1]) if ok else min(range(len(figs)), key=lambda i: figs[i][0])
        return cands[i], float(figs[i][1])
