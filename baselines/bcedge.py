"""BCEdge's baselines on the batching env (``e4gym/BatchConcurrency-v0``, issue 19), as harness policies.

An action of the batching env is ``[batch index, instances − 1] × M`` (then the clock levels with
``control_clocks``); every policy here holds the clocks at the power mode's top levels.

- :class:`BatchOnePolicy` (``batch1``): batch 1, one instance per model: serving without batching or concurrency.
- :class:`TritonDynamicPolicy` (``triton_dynamic``): Triton's dynamic batcher with a fixed instance count. Rule
  (ASSUMPTION, stated in docs/assumptions.md "BCEdge baselines"): per model the largest batch size of the grid
  whose solo latency at the top clocks (``context.cost_model``, measured by profiling runs) plus the model's
  queue-delay bound stays within its SLO; if the configuration does not fit the board's memory, the model whose
  batch holds the most memory steps down one batch size until it fits.
- :class:`BestStaticBatchingPolicy` (``best_static_batching``): the best fixed configuration of a sweep through the
  backend on calibration seeds (>= :data:`CALIBRATION_SEED`, never an evaluation stream): coordinate descent
  over the models (each model's 24 batch × instance settings with the others fixed, :data:`SWEEP_PASSES` passes,
  starting from ``triton_dynamic``'s configuration), maximising the mean utility (the env's reward) over short
  episodes, configurations over the board's memory skipped. Reports the board time the sweep took
  (``sweep_board_s``) and the configurations it tried.
- :class:`LoadScalingPolicy` (``scale_with_load``): instances scale with each model's load. Rule (ASSUMPTION):
  at a fixed moderate batch (``min(batch, triton_dynamic's batch)``), ``instances = ceil(λ̂ · L(B) / B)``, with
  ``λ̂`` the last interval's arrival rate plus the backlog drained over one interval (observation fields
  ``<m>_arrival_rate`` and ``<m>_queue``, in units of the model's nominal rate) and ``L(B)`` the solo batch
  latency at the top clocks; clipped to ``1..max_instances``; over memory, the model with the most instances
  (the one whose instances hold most memory among equals) gives one up until it fits.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np

from e4gym import BATCH_ENV_ID
from e4gym.envs.batching import BatchSetup
from e4gym.errors import ConfigError
from e4gym.policy import PolicyContext, not_bound

#: Calibration episodes of the best static sweep are seeded from here (the benchmark's are small integers).
CALIBRATION_SEED = 30_000
#: Coordinate-descent passes over the models in the best static sweep.
SWEEP_PASSES = 2
#: ``scale_with_load``'s batch size (ASSUMPTION: a moderate batch; capped by triton_dynamic's rule).
LOAD_SCALING_BATCH = 4


def _setup(context: PolicyContext, name: str) -> BatchSetup:
    """The bound env's :class:`BatchSetup`; a one-line ConfigError naming the policy on another env."""
    setup = context.setup
    if not isinstance(setup, BatchSetup):
        raise ConfigError(f"{name} runs on {BATCH_ENV_ID} (its setup is a BatchSetup), got an env whose actions "
                          f"are {list(context.action_names)}")
    return setup


def with_clocks(setup: BatchSetup, config: list[int]) -> np.ndarray:
    """The env action of a configuration ``[batch index, instances − 1] × M``: the top clock levels appended when
    the env controls the clocks (int64 array)."""
    return np.array(list(config) + (list(setup.max_levels) if setup.control_clocks else []), dtype=np.int64)


def triton_config(setup: BatchSetup, cost_model: Any, instances: int = 1) -> list[int]:
    """``triton_dynamic``'s configuration (see the module docstring): per model the largest batch of the grid
    whose solo latency at the top clocks (s) + queue-delay bound (s) ≤ SLO (s), ``instances`` instances, stepped
    down to fit the board's memory (GB).

    Raises:
        ConfigError: ``instances`` outside ``1..max_instances``.
    """
    if isinstance(instances, bool) or not isinstance(instances, (int, np.integer)) or \
            not 1 <= instances <= setup.max_instances:
        raise ConfigError(f"triton_dynamic: instances must be an integer in 1..{setup.max_instances}, got "
                          f"{instances!r}")
    cfg: list[int] = []
    for m in range(len(setup.models)):
        best = 0
        for b, size in enumerate(setup.batch_sizes):
            if cost_model.latency_s(m, size) + setup.max_queue_delay_s[m] <= setup.slo_s[m]:
                best = b
        cfg += [best, int(instances) - 1]
    while setup.config_memory_gb(cfg) > setup.usable_memory_gb:
        heavy = [m for m in range(len(setup.models)) if cfg[2 * m] > 0]
        if not heavy:
            break  # batch 1 everywhere: the env refuses it and says so
        m = max(heavy, key=lambda i: setup.memory_gb[i][cfg[2 * i]][cfg[2 * i + 1]])
        cfg[2 * m] -= 1
    return cfg


class _BatchPolicy:
    """A policy of the batching env; subclasses compute ``self._config`` in :meth:`bind`."""

    clairvoyant = False
    env_id = BATCH_ENV_ID
    name = "batch-policy"

    def __init__(self) -> None:
        self.env_kwargs: dict[str, Any] = {}
        self._setup: BatchSetup | None = None
        self._action: np.ndarray | None = None

    def bind(self, context: PolicyContext) -> None:
        """Read the bound env's setup."""
        self._setup = _setup(context, self.name)

    def predict(self, observation: np.ndarray, state: Any = None, episode_start: np.ndarray | None = None,
                deterministic: bool = True) -> tuple[np.ndarray, Any]:
        """The fixed action (a copy); ``state`` passes through.

        Raises:
            ConfigError: the policy was not bound to an env.
        """
        if self._action is None:
            raise not_bound(self.name)
        return self._action.copy(), state

    def reset(self) -> None:
        """Nothing to forget."""


class BatchOnePolicy(_BatchPolicy):
    """Batch 1, one instance per model, top clocks (``batch1``)."""

    name = "batch1"

    def bind(self, context: PolicyContext) -> None:
        """Build the fixed action."""
        super().bind(context)
        assert self._setup is not None
        self._action = with_clocks(self._setup, [0, 0] * len(self._setup.models))


class TritonDynamicPolicy(_BatchPolicy):
    """Triton-style dynamic batching with ``instances`` instances per model (``triton_dynamic``; the rule is in
    the module docstring and :func:`triton_config`).

    Args:
        instances: instances per model (1..the env's ``max_instances``).
    """

    def __init__(self, instances: int = 1) -> None:
        super().__init__()
        if isinstance(instances, bool) or not isinstance(instances, int) or instances < 1:
            raise ConfigError(f"triton_dynamic: instances must be an integer >= 1, got {instances!r}")
        self.instances = instances
        self.name = "triton_dynamic" if instances == 1 else f"triton_dynamic(instances={instances})"
        self.config: list[int] = []

    def bind(self, context: PolicyContext) -> None:
        """Apply the rule with the bound env's measured batch latencies."""
        super().bind(context)
        assert self._setup is not None
        self.config = triton_config(self._setup, context.cost_model, self.instances)
        self._action = with_clocks(self._setup, self.config)


class BestStaticBatchingPolicy(_BatchPolicy):
    """The best fixed configuration of a coordinate-descent sweep through the backend (module docstring).

    The sweep runs its own env with the bound env's scenario arguments (:meth:`BatchSetup.scenario_kwargs`: board,
    models, SLOs, rates, arrivals, interval, batch grid, instances, queue-delay bounds, clocks, power mode, runtime,
    memory penalty; always on the emulator) and ``env_kwargs`` over them (e.g. a ``utility``).

    Args:
        intervals: decision intervals per calibration episode. episodes: calibration episodes (seeds
            ``CALIBRATION_SEED + k``) per configuration. passes: coordinate-descent passes over the models.
        env_kwargs: env arguments over the bound env's scenario for the sweep (default: none; the scenario's own,
            :meth:`BatchSetup.scenario_kwargs`, are used).
    """

    name = "best_static_batching"
    _CACHE: ClassVar[dict[str, tuple[list[int], dict[str, Any]]]] = {}

    def __init__(self, intervals: int = 30, episodes: int = 2, passes: int = SWEEP_PASSES,
                 env_kwargs: dict[str, Any] | None = None) -> None:
        super().__init__()
        for key, v, lo in (("intervals", intervals, 2), ("episodes", episodes, 1), ("passes", passes, 1)):
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ConfigError(f"best_static_batching: {key} must be an integer >= {lo}, got {v!r}")
        if env_kwargs is not None and not isinstance(env_kwargs, dict):
            raise ConfigError(f"best_static_batching: env_kwargs must be a mapping of env arguments, got "
                              f"{env_kwargs!r}")
        self.intervals, self.episodes, self.passes = intervals, episodes, passes
        self.env_kwargs = dict(env_kwargs or {})
        self.config: list[int] = []
        self.sweep: dict[str, Any] = {}

    def calibration_seeds(self) -> list[int]:
        """The seeds of the calibration episodes (>= :data:`CALIBRATION_SEED`)."""
        return [CALIBRATION_SEED + k for k in range(self.episodes)]

    def sweep_env_kwargs(self, setup: BatchSetup) -> dict[str, Any]:
        """The arguments of the sweep's env: the bound env's scenario (:meth:`BatchSetup.scenario_kwargs`), with
        the sweep's episode length, and :attr:`env_kwargs` over them."""
        kw = {**setup.scenario_kwargs(), "episode_intervals": self.intervals}
        return {**kw, **{k: v for k, v in self.env_kwargs.items() if k != "episode_intervals"}}

    def bind(self, context: PolicyContext) -> None:
        """Run the sweep (cached per process and scenario), then hold the best configuration."""
        super().bind(context)
        setup = self._setup
        assert setup is not None
        kw = self.sweep_env_kwargs(setup)
        key = repr((setup.spec.name, sorted((k, repr(v)) for k, v in kw.items() if k != "device"), self.intervals,
                    self.episodes, self.passes))
        if key not in self._CACHE:
            self._CACHE[key] = self._run_sweep(setup, context.cost_model, kw)
        config, self.sweep = self._CACHE[key]
        self.config = list(config)
        self._action = with_clocks(setup, self.config)

    def _run_sweep(self, setup: BatchSetup, cost_model: Any, kw: dict[str, Any]) -> tuple[list[int], dict[str, Any]]:
        env = gym.make(BATCH_ENV_ID, **kw)
        seeds = self.calibration_seeds()
        scores: dict[tuple[int, ...], float] = {}

        def utility(cfg: list[int]) -> float:
            t = tuple(cfg)
            if t not in scores:
                action, total = with_clocks(setup, cfg), 0.0
                for seed in seeds:
                    env.reset(seed=seed)
                    for _ in range(self.intervals):
                        total += float(env.step(action)[1])
                scores[t] = total / (self.intervals * len(seeds))
            return scores[t]

        start = triton_config(setup, cost_model)
        best, best_u = list(start), utility(start)
        n_b, n_i = len(setup.batch_sizes), setup.max_instances
        for _ in range(self.passes):
            for m in range(len(setup.models)):
                for b in range(n_b):
                    for i in range(n_i):
                        cfg = list(best)
                        cfg[2 * m], cfg[2 * m + 1] = b, i
                        if setup.config_memory_gb(cfg) > setup.usable_memory_gb:
                            continue  # the board cannot load it
                        u = utility(cfg)
                        if u > best_u:
                            best, best_u = cfg, u
        env.close()
        n = len(scores)
        return best, {"configs": n, "intervals": n * len(seeds) * self.intervals,
                      # what the sweep costs a board: every interval of every calibration episode served (s)
                      "board_s": n * len(seeds) * self.intervals * setup.interval_s,
                      "utility": best_u, "start_utility": scores[tuple(start)], "seeds": seeds}

    def stats(self) -> dict[str, float]:
        """The sweep's figures: ``sweep_configs`` (configurations tried), ``sweep_intervals``, ``sweep_board_s``
        (the board time it takes, s: every calibration interval served; offline, before the episode and not in
        its figures), ``sweep_utility`` (the chosen configuration's mean utility) and ``sweep_start_utility``
        (triton_dynamic's, where the descent started)."""
        return {f"sweep_{k}": float(v) for k, v in self.sweep.items() if isinstance(v, (int, float))}

    def __repr__(self) -> str:
        return (f"BestStaticBatchingPolicy(intervals={self.intervals}, episodes={self.episodes}, "
                f"passes={self.passes})")


class LoadScalingPolicy(_BatchPolicy):
    """Instances scale with each model's observed load at a fixed moderate batch (``scale_with_load``; the rule
    is in the module docstring).

    Args:
        batch: the batch size it serves with (capped by triton_dynamic's batch for the model; the grid's largest
            size not above it).
    """

    name = "scale_with_load"

    def __init__(self, batch: int = LOAD_SCALING_BATCH) -> None:
        super().__init__()
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise ConfigError(f"scale_with_load: batch must be an integer >= 1, got {batch!r}")
        self.batch = batch
        self._b: list[int] = []
        self._per_instance_s: list[float] = []
        self._obs_idx: list[tuple[int, int]] = []

    def bind(self, context: PolicyContext) -> None:
        """Fix each model's batch and its solo batch latency per request; locate the load fields."""
        super().bind(context)
        s = self._setup
        assert s is not None
        cap = triton_config(s, context.cost_model)
        grid = [b for b, size in enumerate(s.batch_sizes) if size <= self.batch] or [0]
        self._b = [min(grid[-1], cap[2 * m]) for m in range(len(s.models))]
        cm = context.cost_model
        # seconds of one instance per request at the model's batch (s)
        self._per_instance_s = [cm.latency_s(m, s.batch_sizes[b]) / s.batch_sizes[b] for m, b in enumerate(self._b)]
        names = list(context.obs_names)
        self._obs_idx = [(names.index(f"{m}_arrival_rate"), names.index(f"{m}_queue")) for m in s.models]
        self._action = with_clocks(s, self.config_for(None))

    def config_for(self, observation: np.ndarray | None) -> list[int]:
        """The configuration for an observation (``None``: the nominal rates)."""
        s = self._setup
        assert s is not None
        cfg: list[int] = []
        for m, (b, per) in enumerate(zip(self._b, self._per_instance_s)):
            if observation is None:
                load = 1.0
            else:
                ia, iq = self._obs_idx[m]
                load = float(observation[ia]) + float(observation[iq])  # arrivals + backlog, in nominal rates
            rate = load * s.rate_ref_rps[m]  # req/s
            n = min(max(math.ceil(rate * per - 1e-9), 1), s.max_instances)
            cfg += [b, n - 1]
        while s.config_memory_gb(cfg) > s.usable_memory_gb:
            many = [m for m in range(len(s.models)) if cfg[2 * m + 1] > 0]
            if not many:
                break
            m = max(many, key=lambda i: (cfg[2 * i + 1], s.memory_gb[i][cfg[2 * i]][0]))
            cfg[2 * m + 1] -= 1
        return cfg

    def predict(self, observation: np.ndarray, state: Any = None, episode_start: np.ndarray | None = None,
                deterministic: bool = True) -> tuple[np.ndarray, Any]:
        """The configuration for the observed load (top clocks with ``control_clocks``).

        Raises:
            ConfigError: the policy was not bound to an env.
        """
        if self._setup is None:
            raise not_bound(self.name)
        return with_clocks(self._setup, self.config_for(np.asarray(observation))), state
