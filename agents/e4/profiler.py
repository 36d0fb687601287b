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

**Evaluating a configuration.** On the emulator the profiler does not run frames: it evaluates the device's
noise-free analytic model (:mod:`e4gym.hardware.model`, the model behind the emulator, with the leakage of
the measured temperature), corrected by the ratio of measured to modelled latency of recent frames at that
exit (from the step ``info``'s ``run_ms``). That is E4's profile of the board, read from a model instead of
timed runs; with a measured profile (``e4gym profile-device``) the same search applies. Between segments the
model charges ``transition_stall_s`` per domain switched and the delay before new clocks take effect
(``transition_delay_s``: the segment runs at the old clocks until then), as the emulator does; a delay
longer than its segment is not carried into the next one (an approximation the measured-latency correction
absorbs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from e4gym.envs.common import EnvSetup
from e4gym.errors import ConfigError
from e4gym.hardware.model import cost_table, power_table

#: Default relative drift of measured over modelled latency that triggers re-profiling (fraction): ASSUMPTION.
DRIFT_TOLERANCE = 0.05
#: Default temperature change that triggers re-profiling (°C): ASSUMPTION (leakage ≈ +10 % per 5 °C).
TEMP_TOLERANCE_C = 5.0
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
    """

    evaluations: int = 0
    full_sweep: int = 0
    profiles: int = 0
    reprofiles: int = 0
    cache_hits: int = 0

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
        per_layer: one setting per backbone block (the block env) instead of one per frame.
        heads: ``"chosen"``: only the chosen exit's head runs (the frame env); ``"passed"``: every head the
            frame passes runs (the block env).
        margin: latency headroom (fraction) for noise and DVFS stalls.
        drift_tolerance / temp_tolerance_c: re-profiling triggers (fraction, °C).
    """

    setup: EnvSetup
    per_layer: bool = False
    heads: str = "chosen"
    margin: float = 0.1
    drift_tolerance: float = DRIFT_TOLERANCE
    temp_tolerance_c: float = TEMP_TOLERANCE_C
    stats: ProfilerStats = field(default_factory=ProfilerStats)

    def __post_init__(self) -> None:
        if self.heads not in ("chosen", "passed"):
            raise ConfigError(f"heads must be 'chosen' or 'passed', got {self.heads!r}")
        if not (isinstance(self.margin, (int, float)) and math.isfinite(self.margin) and self.margin >= 0):
            raise ConfigError(f"margin must be a finite number >= 0 (fraction), got {self.margin!r}")
        s = self.setup
        spec, prof = s.spec, s.profile
        mc, mg, me = s.max_levels
        self._dims = 3 if s.control_memory else 2
        self._hi = np.array([mc, mg, me][: self._dims])
        self._emc = me
        mode = spec.power_mode(s.power_mode)
        pt = power_table(spec, mode.cpu_online)
        shape = spec.n_levels
        sel = (slice(0, mc + 1), slice(0, mg + 1), slice(0, me + 1))

        def table(work):  # (latency, busy dyn J) over the allowed (cpu, gpu, emc) grid
            t = cost_table(spec, work, pt, 1)
            return t.latency_s.reshape(shape)[sel], t.busy_dyn_j.reshape(shape)[sel]

        self._block = [table(prof.block_work(j)) for j in range(prof.exits[-1].after_block + 1)]
        self._head = [table(prof.head_work(e)) for e in range(prof.n_exits)]
        m = spec.model
        self._floor_static = pt.static_w + pt.idle_dyn_w.reshape(shape)[sel]
        self._leak_ref = pt.leak_ref_w.reshape(shape)[sel]
        self._leak_k, self._temp_ref = m.leak_temp_coeff_per_c, m.temp_ref_c
        self._stall = m.transition_stall_s
        self._delays = m.transition_delay_s
        self._budget = min(s.deadline_s, s.period_s) / (1.0 + self.margin)
        self._period = s.period_s
        self._segments = [self._segments_of(e) for e in range(prof.n_exits)]
        self._cache: dict[tuple[int, int, int], Plan] = {}
        self._last: dict[int, Plan] = {}
        self._scale = np.ones(prof.n_exits)
        self.temp_c = s.cooling.ambient_c if s.initial_temp_c is None else s.initial_temp_c

    # ------------------------------------------------------------------ model
    def _segments_of(self, exit: int) -> list[tuple[list, list]]:
        """Per segment: (latency tables, dyn tables) of its blocks and heads."""
        prof = self.setup.profile
        last_block = prof.exits[exit].after_block
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
        return (int(levels[0]), int(levels[1]), int(levels[2]) if self._dims == 3 else self._emc)

    def evaluate(self, exit: int, levels: np.ndarray) -> tuple[float, float]:
        """Modelled ``(latency_s, energy_j)`` of a frame at exit ``exit`` with per-segment ``levels``
        (``(n_segments, 2|3)``): the latency correction is applied; energy includes the idle wait. Not
        counted in :attr:`stats` (the search counts its own evaluations)."""
        leak = math.exp(self._leak_k * (self.temp_c - self._temp_ref))
        lat = dyn = floor_e = 0.0
        prev = None
        scale = self._scale[exit]
        for (lat_t, dyn_t, _), lv in zip(self._segments[exit], levels):
            ix = self._idx(lv)
            floor = self._floor_static[ix] + self._leak_ref[ix] * leak
            seg_lat = lat_t[ix] * scale
            if prev is not None and prev != ix:
                changed = [i for i in range(3) if prev[i] != ix[i]]
                # The board keeps the old clocks for the longest delay of the switched domains: that much of
                # the segment runs at the old rate (all of it, if it is shorter than the delay).
                delay = max(self._delays[i] for i in changed)
                old = lat_t[prev] * scale
                seg_lat = old if delay >= old else delay + seg_lat * (1.0 - delay / old)
                seg_lat += self._stall * len(changed)
            lat += seg_lat
            dyn += dyn_t[ix]
            floor_e += floor * seg_lat
            prev = ix
        idle = max(0.0, self._period - lat) * floor  # at the last segment's clocks
        return lat, floor_e + dyn + idle

    # ------------------------------------------------------------------ search
    def switch_penalty_s(self, exit: int, prev: tuple[int, ...], plan: Plan) -> float:
        """Extra latency (s) of running ``plan`` right after the board ran at levels ``prev`` (cpu, gpu, emc).

        On a switch the board keeps the old levels for the longest transition delay of the domains that
        change (``transition_delay_s``; the emulator does the same), so a frame sped up by the switch first
        runs ``delay`` seconds at the old, slower rate: ``delay · (1 − L_new / L_old)`` extra, plus the stalls.
        """
        new = self._idx(plan.levels[0])
        old = (int(prev[0]), int(prev[1]), int(prev[2]) if len(prev) > 2 else self._emc)
        changed = [i for i in range(3) if old[i] != new[i]]
        if not changed:
            return 0.0
        d = self.setup.spec.model.transition_delay_s
        delay = max(d[i] for i in changed)
        old_levels = np.tile(np.array(old[: self._dims]), (self.n_segments(exit), 1))
        lat_old, _ = self.evaluate(exit, old_levels)
        lat_new = plan.latency_s
        slow = max(0.0, min(delay, lat_old) * (1.0 - lat_new / lat_old)) if lat_old > 0 else 0.0
        return slow + self._stall * len(changed)

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
                    while 0 <= x[s, d] + step <= self._hi[d]:
                        y = x.copy()
                        y[s, d] += step
                        v = f(full(y))
                        if not better(v, cur):
                            break
                        x, cur, changed = y, v, True
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

    # ------------------------------------------------------------------ feedback
    def observe(self, exit: int, run_s: float, levels: np.ndarray | None = None, temp_c: float | None = None) -> None:
        """Feed back a finished frame: its measured run time (s, DVFS stalls included) at ``exit`` with the
        plan ``levels`` it ran (default: the exit's last plan), and the board temperature (°C)."""
        if temp_c is not None and math.isfinite(temp_c):
            self.temp_c = float(temp_c)
        plan_levels = levels if levels is not None else (self._last[exit].levels if exit in self._last else None)
        if plan_levels is None or not (math.isfinite(run_s) and run_s > 0):
            return
        scale = self._scale[exit]
        modelled, _ = self.evaluate(exit, plan_levels)
        ratio = run_s / (modelled / scale)
        self._scale[exit] = (1 - CORRECTION_ALPHA) * scale + CORRECTION_ALPHA * ratio

    def reset(self) -> None:
        """Forget the latency corrections and temperature (a new episode: the board starts cool again).
        The cached plans stay (they are warm starts and are re-profiled when the board drifts)."""
        self._scale[:] = 1.0
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
