"""The E4 governor: the attention cascade picks the exit, the JIT profiler picks the clocks up to it.

:class:`E4Policy` satisfies :class:`e4gym.policy.Policy`. Per frame:

1. push the frame's complexity features (from the observation) into the cascade's window and predict the
   probabilities ``p_k`` that exit ``k`` is the earliest correct one (``p_none``: no exit is);
2. bucket the frame's predicted complexity (the expected earliest exit, ``Σ k·p_k / n_exits``, with "none"
   counted as ``n_exits``) into ``n_buckets`` bins;
3. for each exit ``e`` look up (or profile) the JIT profiler's plan for ``(e, bucket)`` and its modelled
   energy ``E_e`` (J per frame, idle wait included);
4. take the exit minimising ``E_e − λ · P(correct at e)``, with ``P(correct at e) = Σ_{k<=e} p_k`` (exits
   are nearly nested: a frame right at ``k`` is right at later exits). ``λ`` (J per correct frame) is the
   smallest value on a grid whose rule loses at most ``accuracy_budget`` of accuracy against always taking
   the last exit, on a validation stream (offline, seeds the benchmark never uses);
5. run the plan: in the frame env one setting for the frame (action ``[exit, cpu, gpu(, emc)]``); in the
   block env the plan's setting for each block and ``exit_now`` at the chosen exit.

After each frame the measured run time and temperature (from ``PolicyContext.last_info``) feed the profiler,
which re-profiles a cached plan when the board drifts from the model. ``λ`` and the Lagrangian exit rule are
this project's reading of "predict the optimal exit": E4's paper does not publish its exit rule.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from agents.e4.cascade import CUT_THRESHOLD, DEFAULT_WINDOW, Cascade, FeatureWindow, stream_data, train_cascade
from agents.e4.profiler import JITProfiler, Plan
from e4gym.errors import ConfigError
from e4gym.policy import PolicyContext, not_bound
from e4gym.workload.base import COMPLEXITY_FEATURES

FRAME_ENV_ID = "e4gym/EarlyExitDVFS-v1"
BLOCK_ENV_ID = "e4gym/EarlyExitDVFSBlock-v1"

#: Default accuracy E4 may give up against the last exit (fraction of frames). A 1000-frame episode holds only
#: a few scenes, so the loss of one episode scatters by about ±0.4 points around the budget (measured over
#: seeds 0-4 in docs/benchmarks.md): 0.3 points keeps an episode within 1 point. ASSUMPTION (a design choice).
DEFAULT_ACCURACY_BUDGET = 0.003

#: Latency headroom (fraction) a plan keeps after a clock switch, whose delay the policy charges exactly: two
#: standard deviations of the emulator's 2 % latency noise. ASSUMPTION.
SWITCH_MARGIN = 0.04

#: Trained cascades of this process, by training key (the harness runs many scenarios per worker).
_CASCADES: dict[tuple, tuple[Cascade, frozenset]] = {}


class _Recording:
    """A frame source that records the stream key of every stream it serves (E4's training streams)."""

    def __init__(self, source: Any, keys: set[tuple]) -> None:
        self._src, self._keys = source, keys

    def reset(self, seed: int | None = None) -> None:
        self._src.reset(seed)
        self._keys.add(self._src.stream_key())

    def __getattr__(self, name: str) -> Any:
        return getattr(self._src, name)


class E4Policy:
    """E4: attention-based early exit plus just-in-time coordinate-descent DVFS (see the module docstring).

    Args:
        per_layer: run in the block env with one clock setting per backbone block (E4's per-layer plan);
            otherwise in the frame env with one setting per frame.
        accuracy_budget: accuracy (fraction of frames) the exit rule may lose against the last exit.
        n_buckets: complexity buckets of the profiler's cache.
        margin: latency headroom (fraction) of the profiler's deadline constraint.
        cascade: a trained cascade (:class:`Cascade`) or a path to one (:meth:`Cascade.save`); ``None`` trains
            one at :meth:`bind` on the env's workload (seconds; cached per process).
        window: frames the cascade attends over. train_streams / train_frames / train_epochs: its training
            data (streams × frames) and epochs. seed: training seed.
        train_workload: a trace to train and calibrate on instead of the env's workload (a path, or
            ``clip:<name>``, a shipped real-video trace: a policy scored on ``clip:bikes`` trains on another clip).
        name: display name.
    """

    clairvoyant = False

    def __init__(self, per_layer: bool = False, accuracy_budget: float = DEFAULT_ACCURACY_BUDGET,
                 n_buckets: int = 4, margin: float = 0.1, cascade: Cascade | str | Path | None = None,
                 window: int = DEFAULT_WINDOW, train_streams: int = 8, train_frames: int = 4000,
                 train_epochs: int = 6, seed: int = 0, name: str | None = None,
                 train_workload: str | None = None) -> None:
        if not isinstance(per_layer, bool):
            raise ConfigError(f"per_layer must be True or False, got {per_layer!r}")
        if isinstance(accuracy_budget, bool) or not isinstance(accuracy_budget, (int, float)) or not (
                0.0 <= accuracy_budget <= 1.0):
            raise ConfigError(f"accuracy_budget must be a fraction in [0, 1], got {accuracy_budget!r}")
        for label, v in (("n_buckets", n_buckets), ("window", window), ("train_streams", train_streams),
                         ("train_frames", train_frames), ("train_epochs", train_epochs)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"{label} must be an integer >= 1, got {v!r}")
        if cascade is not None and not isinstance(cascade, (Cascade, str, Path)):
            raise ConfigError(f"cascade must be a trained Cascade or a path to one, got {cascade!r}")
        self.per_layer = per_layer
        self.accuracy_budget = float(accuracy_budget)
        self.n_buckets = n_buckets
        self.margin = margin
        self.window = window
        self.train = {"streams": train_streams, "frames": train_frames, "epochs": train_epochs, "seed": seed}
        if train_workload is not None and not isinstance(train_workload, (str, Path)):
            raise ConfigError(f"train_workload must be a trace path (.npz from `e4gym record`) or clip:<name>, "
                              f"got {train_workload!r}")
        self.train_workload = None if train_workload is None else str(train_workload)
        self._train_keys: set[tuple] = set()
        self.name = name or ("e4-layer" if per_layer else "e4")
        self.env_kwargs: dict[str, Any] = {}
        self.env_id = BLOCK_ENV_ID if per_layer else FRAME_ENV_ID
        self.cascade: Cascade | None = Cascade.load(cascade) if isinstance(cascade, (str, Path)) else cascade
        self.profiler: JITProfiler | None = None
        self.lambda_j = math.nan
        self._ctx: PolicyContext | None = None
        self._window = FeatureWindow(window if self.cascade is None else self.cascade.window)
        self._prev: tuple[int, float, float] = (-1, 0.0, 0.0)
        self._applied: tuple[int, ...] | None = None  # levels the board was last set to by this policy
        self._plan: Plan | None = None
        self._frames = 0
        self._exits = np.zeros(0, np.int64)

    # ------------------------------------------------------------------ setup
    def bind(self, context: PolicyContext) -> None:
        """Train or check the cascade, build the profiler, profile every exit and calibrate ``λ``.

        Raises:
            ConfigError: the env is not the one this policy runs in (frame vs block env), or a loaded cascade
                was trained for a different network.
        """
        s = context.setup
        names = context.obs_names
        want = ("block", "at_exit", "exit_index") if self.per_layer else ("last_exit",)
        if any(n not in names for n in want) or any(n not in names for n in COMPLEXITY_FEATURES):
            raise ConfigError(f"{self.name} runs in {self.env_id} (per_layer={self.per_layer}); the env's "
                              f"observation has {list(names)}: build the env with gymnasium.make(policy.env_id)")
        self._feat_idx = [names.index(n) for n in COMPLEXITY_FEATURES]
        if self.per_layer:
            self._i_block, self._i_at, self._i_exit = (names.index(n) for n in want)
        else:
            self._i_last_exit, self._i_last_conf = names.index("last_exit"), names.index("last_confidence")
        self._i_last_change = names.index("last_feature_change")
        if self.per_layer:
            self._i_elapsed = names.index("elapsed")
        else:
            self._i_slack = names.index("slack")
        n_exits = s.profile.n_exits
        if self.cascade is None:
            key = (s.profile.name, n_exits, repr(s.workload), tuple(sorted(s.workload_kwargs.items())), s.fps,
                   self.window, tuple(sorted(self.train.items())), self.train_workload)
            if key not in _CASCADES:
                self._train_keys = set()
                cascade = train_cascade(
                    self._train_source(s), n_exits, s.profile.name, streams=self.train["streams"],
                    frames_per_stream=self.train["frames"], epochs=self.train["epochs"], window=self.window,
                    seed=self.train["seed"])
                _CASCADES[key] = (cascade, frozenset(self._train_keys))
            self.cascade, keys = _CASCADES[key]
            self._train_keys = set(keys)
        if self.cascade.n_exits != n_exits or self.cascade.model_name != s.profile.name:
            raise ConfigError(f"the cascade was trained for {self.cascade.model_name} ({self.cascade.n_exits} "
                              f"exits) but the env runs {s.profile.name} ({n_exits} exits)")
        self._window = FeatureWindow(self.cascade.window, n_exits, self.cascade.cut_threshold)
        self._cost_model = context.cost_model
        self.profiler = JITProfiler(s, self._cost_model, per_layer=self.per_layer,
                                    heads="passed" if self.per_layer else "chosen", margin=self.margin,
                                    # Per-layer plans re-plan on the corrected measured tables only: their
                                    # on-board re-profiles (a 28 ms frame per run) queued 10-50 % of frames
                                    # behind them in 200-frame episodes (measured, issue 12).
                                    measure=None if self.per_layer else context.profile_run)
        self.lambda_j = self._calibrate(s, n_exits)
        self._ctx = context
        self._exits = np.zeros(n_exits, np.int64)
        self.reset()

    def _train_source(self, setup: Any) -> Any:
        """The factory of the streams E4 trains and calibrates on: ``train_workload`` (a trace) when given,
        else :meth:`~e4gym.envs.common.EnvSetup.training_source` (the env's synthetic video at seeds the benchmark
        never uses; synthetic video of the network when the env replays a trace). Records their stream keys
        (:meth:`training_streams`)."""
        if self.train_workload is not None:
            from e4gym.workload.trace import TraceSource, load_trace

            trace = load_trace(self.train_workload)
            if trace.n_exits != setup.profile.n_exits:
                raise ConfigError(f"train_workload {self.train_workload} has {trace.n_exits} exits but the env's "
                                  f"model {setup.profile.name} has {setup.profile.n_exits}")

            def make() -> Any:
                return _Recording(TraceSource(trace), self._train_keys)
        else:
            def make() -> Any:
                return _Recording(setup.training_source(), self._train_keys)
        return make

    def training_streams(self) -> set[tuple]:
        """The stream keys (``FrameSource.stream_key()``) of every stream the cascade was trained and ``λ``
        calibrated on (the harness refuses to score E4 on one of them). A cascade given by the user (``cascade=``)
        was trained elsewhere: only the calibration streams are known."""
        return set(self._train_keys)

    def _after_switch(self, exit: int, bucket: int, applied: tuple[int, ...], plan: Plan) -> tuple[Plan, bool]:
        """The plan for ``exit`` right after the board ran at ``applied``, and whether it meets the deadline
        with :data:`SWITCH_MARGIN` of headroom (the switch's delay is known; the headroom is for noise)."""
        assert self.profiler is not None
        prof = self.profiler
        extra = prof.switch_penalty_s(exit, applied, plan)
        if extra > 0 and plan.latency_s + extra > prof.budget_s:
            plan = prof.solve(exit, bucket, extra_s=extra)
        return plan, (plan.latency_s + extra) * (1.0 + SWITCH_MARGIN) <= prof.limit_s

    def _transitions(self, n_exits: int) -> tuple[np.ndarray, np.ndarray]:
        """``(energy (n+1, n), feasible (n+1, n))`` of bucket-0 plans for exit ``e`` (columns) right after a
        frame that ran exit ``prev``'s plan (rows; the last row: no previous frame), transition delays
        included (see :meth:`_decide`)."""
        assert self.profiler is not None
        prof = self.profiler
        plans = [prof.solve(e, 0) for e in range(n_exits)]
        energy = np.array([[pl.energy_j for pl in plans]] * (n_exits + 1))
        feasible = np.ones((n_exits + 1, n_exits), bool)
        for prev in range(n_exits):
            applied = tuple(int(v) for v in plans[prev].levels[-1])
            for e, pl in enumerate(plans):
                alt, feasible[prev, e] = self._after_switch(e, 0, applied, pl)
                energy[prev, e] = alt.energy_j
        return energy, feasible

    def _calibrate(self, setup, n_exits: int) -> float:
        """The smallest ``λ`` (J) on a log grid whose exit rule loses at most ``accuracy_budget`` against the
        last exit on two validation streams (seeds ``20_000 + 100·seed + {0, 1}``), simulating the rule frame
        by frame with the transition constraints of :meth:`_transitions`."""
        assert self.cascade is not None
        base = 20_000 + 100 * self.train["seed"]
        correct, probs = [], []
        for s in (base, base + 1):
            rows, _, c = stream_data(self._train_source(setup), s, self.train["frames"], self.cascade.n_exits)
            probs.append(self.cascade.predict_stream(rows))
            correct.append(c)
        p_correct = [np.cumsum(p[:, :-1], axis=1) for p in probs]
        last_acc = float(np.concatenate(correct)[:, -1].mean())
        energy, feasible = self._transitions(n_exits)
        span = max(float(energy.max() - energy.min()), 1e-6)
        grid = span * np.geomspace(0.05, 1000.0, 60)

        def loss(lam: float) -> float:
            hits = total = 0
            for pc, c in zip(p_correct, correct):
                prev = n_exits
                cost = energy[None] - lam * pc[:, None, :]  # (T, prev, e)
                cost = np.where(feasible[None], cost, np.inf)
                for t in range(len(pc)):
                    row = cost[t, prev]
                    e = int(np.argmin(row)) if np.isfinite(row).any() else int(np.argmin(energy[prev]))
                    hits += bool(c[t, e])
                    prev = e
                total += len(pc)
            return last_acc - hits / total

        # The loss falls as λ grows: bisect the grid for the smallest λ within the budget.
        lo, hi = 0, len(grid) - 1
        if loss(float(grid[hi])) > self.accuracy_budget:
            return float(grid[hi])
        while lo < hi:
            mid = (lo + hi) // 2
            if loss(float(grid[mid])) <= self.accuracy_budget:
                hi = mid
            else:
                lo = mid + 1
        return float(grid[lo])

    def reset(self) -> None:
        """Forget the frame window and the board's drift (a new episode); cached plans stay as warm starts."""
        self._window.clear()
        self._plan = None
        self._prev = (-1, 0.0, 0.0)
        self._applied = None
        if self.profiler is not None:
            self.profiler.reset()

    # ------------------------------------------------------------------ acting
    def _decide(self, features: np.ndarray, backlog_s: float = 0.0) -> Plan:
        """Exit and plan for the frame with ``features`` (pushes it into the window with the previous
        frame's result, ``self._prev``); ``backlog_s`` (s) is how long the frame has already waited (queueing
        after a late frame or a profiling run): plans leave room for it, so a queue drains."""
        assert self.cascade is not None and self.profiler is not None
        self._window.push(features, *self._prev)
        win, mask = self._window.arrays()
        p = self.cascade.predict_one(win, mask)
        n = self.cascade.n_exits
        complexity = float(np.dot(p, np.arange(n + 1))) / n
        bucket = min(int(complexity * self.n_buckets), self.n_buckets - 1)
        backlog_s = max(0.0, backlog_s)
        plans = [self.profiler.solve(e, bucket, extra_s=backlog_s) for e in range(n)]
        feasible = np.ones(n, bool)
        if self._applied is not None:
            # A faster plan right after slower clocks first runs at the old ones (transition delay): give
            # such plans the room they need, or drop them when the frame would miss its deadline.
            for e, pl in enumerate(plans):
                plans[e], feasible[e] = self._after_switch(e, bucket, self._applied, pl)
        energies = np.array([pl.energy_j for pl in plans])
        cost = energies - self.lambda_j * np.cumsum(p[:-1])
        e = int(np.argmin(np.where(feasible, cost, np.inf))) if feasible.any() else int(np.argmin(energies))
        if self.profiler.needs_measuring(e):  # just-in-time: the board drifted; measure this exit's plan again
            plans[e] = self.profiler.profile_on_board(e, bucket)
        self._exits[e] += 1
        self._frames += 1
        self._applied = tuple(int(v) for v in plans[e].levels[-1])
        return plans[e]

    def _feedback(self) -> None:
        """Feed the last finished frame's measured run time and temperature to the profiler."""
        info = self._ctx.last_info if self._ctx is not None else {}
        if not info or self._plan is None or not info.get("frame_done", True) or info.get("exit", -1) < 0:
            return
        assert self.profiler is not None
        self.profiler.observe(int(info["exit"]), float(info["run_ms"]) / 1e3,
                              self._plan.levels if int(info["exit"]) == self._plan.exit else None,
                              float(info["temp_c"]))

    def predict(self, observation: np.ndarray, state: Any = None, episode_start: np.ndarray | None = None,
                deterministic: bool = True) -> tuple[np.ndarray, Any]:
        """The action for ``observation``: ``[exit, cpu, gpu(, emc)]`` in the frame env, ``[exit_now, cpu,
        gpu(, emc)]`` in the block env. ``state`` passes through; ``episode_start`` true clears the window.

        Raises:
            ConfigError: the policy was not bound to an env (:func:`e4gym.policy.bind_policy`).
        """
        if self._ctx is None or self.profiler is None:
            raise not_bound(self.name)
        if episode_start is not None and bool(np.asarray(episode_start).reshape(-1)[0]) and self._frames:
            self.reset()
        obs = np.asarray(observation, dtype=np.float64).reshape(-1)
        setup = self._ctx.setup
        if not self.per_layer:
            self._feedback()
            if self._plan is not None:  # the observation carries the previous frame's exit and confidence
                self._prev = (round(float(obs[self._i_last_exit]) * (setup.profile.n_exits - 1)),
                              float(obs[self._i_last_conf]), float(obs[self._i_last_change]))
            backlog = (1.0 - float(obs[self._i_slack])) * setup.deadline_s
            self._plan = self._decide(obs[self._feat_idx], backlog)
            lv = self._plan.levels[0]
            return np.array([self._plan.exit, *lv], dtype=np.int64), state
        n_blocks = setup.profile.n_blocks
        block = round(float(obs[self._i_block]) * n_blocks)
        at_exit = obs[self._i_at] > 0.5
        if self._plan is not None and at_exit:
            exit_ran = round(float(obs[self._i_exit]) * (setup.profile.n_exits - 1))
            if exit_ran == self._plan.exit:  # end the frame here; idle at the clocks the frame ended at
                lv = self._plan.levels[-1]
                return np.array([1, *lv], dtype=np.int64), state
        if self._plan is None or (block == 0 and not at_exit):
            self._feedback()
            info = self._ctx.last_info
            if self._plan is not None and info.get("frame_done") and info.get("exit", -1) >= 0:
                # A frame that runs to the last exit ends inside its last block's step: its result is in the info.
                self._prev = (int(info["exit"]), float(info["confidence"]),
                              float(obs[self._i_last_change]))
            self._plan = self._decide(obs[self._feat_idx], float(obs[self._i_elapsed]) * setup.deadline_s)
        lv = self._plan.levels_for_block(block)
        return np.array([0, *lv], dtype=np.int64), state

    # ------------------------------------------------------------------ reporting
    def stats(self) -> dict[str, float]:
        """Profiler and exit statistics since :meth:`bind` (for the benchmark's report)."""
        ps = self.profiler.stats if self.profiler is not None else None
        n = max(int(self._exits.sum()), 1)
        out = {
            "profiler_evaluations": float(ps.evaluations) if ps else math.nan,
            "profiler_full_sweep": float(ps.full_sweep) if ps else math.nan,
            "profiler_share": ps.share if ps else math.nan,
            "profiler_profiles": float(ps.profiles) if ps else math.nan,
            "profiler_cache_hits": float(ps.cache_hits) if ps else math.nan,
            "profiler_runs": float(ps.runs) if ps else math.nan,
            "profiler_run_s": ps.run_s if ps else math.nan,
            "profiler_run_energy_j": ps.run_energy_j if ps else math.nan,
            "profiler_measured": float(ps.measured_profiles) if ps else math.nan,
            "lambda_j": self.lambda_j,
            "cascade_val_accuracy": self.cascade.val_accuracy if self.cascade is not None else math.nan,
        }
        out.update({f"exit{e}_share": float(k) / n for e, k in enumerate(self._exits)})
        if getattr(self, "_cost_model", None) is not None:
            out.update(self._cost_model.stats())
        return out

    def __repr__(self) -> str:
        return f"E4Policy(per_layer={self.per_layer}, accuracy_budget={self.accuracy_budget})"


__all__ = ["BLOCK_ENV_ID", "CUT_THRESHOLD", "FRAME_ENV_ID", "E4Policy"]
