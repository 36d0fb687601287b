"""BCEdge (Zhang et al., arXiv 2305.01519; IEEE TNSM 2024) as an ``e4gym train`` algorithm (``--algo bcedge``).

BCEdge picks each DNN service's batch size and instance count with maximum-entropy deep RL and keeps the choice
SLO-aware with a learned latency predictor. Here, on ``e4gym/BatchConcurrency-v0``:

- **The agent** is stable-baselines3's SAC (maximum entropy, as BCEdge's) on the env's own reward (the
  :class:`~e4gym.envs.batching.BCEdgeUtility`), over a continuous relaxation of the ``MultiDiscrete`` action:
  the project's ``continuous`` wrapper (:class:`~e4gym.envs.wrappers.ContinuousActions`), which maps each
  component's ``a ∈ [−1, 1]`` to the nearest of its levels (batch index, instances − 1, clock levels).
- **The SLO-aware latency predictor** (:class:`LatencyPredictor`) is a small MLP (numpy at decision time,
  trained with torch on one thread) from (configuration, each model's arrival rate / nominal rate, clock levels)
  to each model's ``log(p99 / SLO)``. It learns from measurements: random configurations served for
  ``hold`` intervals each on training seeds (:data:`PREDICTOR_SEED` + k, never an evaluation stream), the last
  interval of each measured, as a board's serving logs give them. It is trained **before** SAC and travels
  inside every saved model (an attribute SB3 pickles into the ``.zip``). Its load inputs are in units of the
  trained scenario's nominal rates: served where the rates differ, the observed load is converted; other SLOs,
  interval or action grid are refused.
- **How it is used** (ASSUMPTION, BCEdge's predictor details are not public; docs/assumptions.md "BCEdge agent"):
  as an action filter at every decision, in training and in serving (:class:`SLOFilter`). With the last
  interval's arrival rates and the queues now as the forecast, a model whose chosen (batch, instances) is
  predicted to miss its SLO (``p99 / SLO > threshold``) gets the nearest setting (L1 distance over batch index
  and instance count, the other models held) predicted to meet it within the board's memory; when none is, the
  one with the lowest predicted ``p99 / SLO``. Models are filtered in order, each against the others' settings
  so far. SAC learns from the action it chose (the filter is part of the environment it acts on).

Trained, checkpointed and resumed as the SB3 algorithms (:func:`agents.algos_sb3.learn_with_callbacks`); served
by :class:`BCEdgePolicy` (SAC's action through the continuous mapping, then the filter).
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from agents.algos import TRAIN_SEED_OFFSET, TrainRun, register_algo, wrap_env
from agents.algos_sb3 import learn_with_callbacks, sb3_algo
from e4gym.envs.batching import P99_LATENCY_MS, THROUGHPUT_RPS, BatchSetup, model_key
from e4gym.errors import ConfigError
from e4gym.policy import not_bound

#: The algorithm name (``e4gym train --algo bcedge``; ``configs/agents/bcedge.yaml``).
BCEDGE = "bcedge"
#: Seeds of the predictor's measurement episodes: ``PREDICTOR_SEED + 1000·seed + k`` (training streams, far from
#: a benchmark's small seeds, the eval env's ``seed + 10 000`` and the best static sweep's 30 000+).
PREDICTOR_SEED = TRAIN_SEED_OFFSET + 500_000
#: ``p99 / SLO`` is learned in log space from this floor (an interval with few requests has a tiny p99) to
#: :data:`RATIO_CAP`.
RATIO_FLOOR = 0.05
#: A model that completed nothing while requests waited counts as this ``p99 / SLO`` (the observation's bound).
RATIO_CAP = 10.0
#: The predictor's measurement episodes run each model at its nominal rate × a factor drawn log-uniformly from
#: this range (ASSUMPTION: a load generator's sweep on the board, from half to four times the nominal load, so the
#: predictor has seen the overloads it must warn of).
LOAD_RANGE = (0.5, 4.0)
#: Predictor defaults (ASSUMPTIONS: sized for seconds of training on one core): measurement episodes, intervals
#: per episode, intervals each random configuration is held (the last is measured), hidden units, epochs.
PREDICTOR_DEFAULTS: dict[str, Any] = {"episodes": 80, "intervals": 60, "hold": 2, "hidden": 64, "epochs": 300,
                                      "learning_rate": 0.003, "threshold": 1.0, "holdout": 0.2}


# ---------------------------------------------------------------------------------------------- the predictor


@dataclasses.dataclass
class LatencyPredictor:
    """BCEdge's SLO-aware latency predictor: ``(configuration, load, clock levels) -> p99 / SLO`` per model, a
    two-hidden-layer MLP (tanh) on ``log(p99 / SLO)``, evaluated in numpy.

    Attributes:
        n_models / n_batch / max_instances / max_levels: the action grid it was trained on (``max_levels``
            ``None`` when the clocks were not in the action). rho_scale: ``(M, n_batch)`` seconds of one instance
            per second of nominal traffic at each batch size (nominal rate (req/s) × solo batch latency at the top
            clocks (s) / batch size: from the measured cost model), for the utilisation features. weights:
            ``[(W, b)]`` per layer. x_mean / x_std: input standardisation. threshold: ``p99 / SLO`` above which
            the filter calls a setting an SLO miss. rate_ref_rps / slo_s / interval_s: the trained scenario's
            nominal rates (req/s), SLOs (s) and interval (s): its load inputs are in units of those rates.
        stats: training and held-out figures (``heldout_mae``: mean absolute error of ``p99 / SLO`` over held-out
            measurements, both clipped to ``[0, RATIO_CAP]``; ``heldout_accuracy``: share of held-out per-model
            measurements whose meet/miss the predictor calls right; sample counts).
    """

    n_models: int
    n_batch: int
    max_instances: int
    max_levels: tuple[int, int, int] | None
    rho_scale: np.ndarray
    weights: list[tuple[np.ndarray, np.ndarray]]
    x_mean: np.ndarray
    x_std: np.ndarray
    threshold: float = 1.0
    rate_ref_rps: tuple[float, ...] = ()
    slo_s: tuple[float, ...] = ()
    interval_s: float = 1.0
    stats: dict[str, float] = dataclasses.field(default_factory=dict)

    def features(self, configs: np.ndarray, loads: np.ndarray, levels: np.ndarray | None = None) -> np.ndarray:
        """Inputs of the network, ``(N, 6M (+3))``: per model batch index / (n_batch − 1), instance index /
        (max_instances − 1), arrival rate and queue (in nominal units, clipped to [0, 10]) and the utilisation
        ``ρ = rate × rho_scale / instances`` (clipped to [0, 20]); the board's ``Σ ρ``; then the clock levels /
        highest.

        Args:
            configs: ``(N, 2M)`` configurations ``[batch index, instances − 1] × M``. loads: ``(N, 2M)`` per model
                the arrival rate / nominal rate and the queue / (nominal rate · interval), as the observation's
                ``<m>_arrival_rate`` and ``<m>_queue``. levels: ``(N, 3)`` clock levels, or ``None``.
        """
        c = np.asarray(configs, dtype=np.int64)
        ld = np.clip(np.asarray(loads, dtype=np.float64), 0.0, 10.0)
        n, M = c.shape[0], self.n_models
        b, i = c[:, 0::2], c[:, 1::2]
        rho = np.clip(ld[:, 0::2] * self.rho_scale[np.arange(M)[None, :], b] / (i + 1), 0.0, 20.0)
        x = np.empty((n, 5 * M + 1))
        x[:, 0:5 * M:5] = b / max(self.n_batch - 1, 1)
        x[:, 1:5 * M:5] = i / max(self.max_instances - 1, 1)
        x[:, 2:5 * M:5] = ld[:, 0::2]
        x[:, 3:5 * M:5] = ld[:, 1::2]
        x[:, 4:5 * M:5] = rho
        x[:, 5 * M] = rho.sum(axis=1)
        if self.max_levels is not None and levels is not None:
            lv = np.asarray(levels, dtype=np.float64) / np.maximum(np.asarray(self.max_levels, dtype=np.float64), 1.0)
            x = np.concatenate([x, lv], axis=1)
        return x

    def predict(self, configs: np.ndarray, loads: np.ndarray, levels: np.ndarray | None = None) -> np.ndarray:
        """Predicted ``p99 / SLO`` per model, ``(N, M)``, for ``N`` configurations (see :meth:`features`)."""
        h = (self.features(configs, loads, levels) - self.x_mean) / self.x_std
        for k, (w, bias) in enumerate(self.weights):
            h = h @ w + bias
            if k < len(self.weights) - 1:
                h = np.tanh(h)
        return np.exp(h)

    def check(self, setup: BatchSetup) -> None:
        """Raise a one-line ConfigError when ``setup``'s action grid, SLOs or interval are not those it was trained
        on (other nominal rates are fine: :meth:`load_scale` converts the load)."""
        levels = tuple(setup.max_levels) if setup.control_clocks else None
        have = (len(setup.models), len(setup.batch_sizes), setup.max_instances, levels)
        want = (self.n_models, self.n_batch, self.max_instances,
                None if self.max_levels is None else tuple(self.max_levels))
        if have != want:
            raise ConfigError(f"the BCEdge latency predictor was trained for (models, batch sizes, max instances, "
                              f"clock levels) {want}, this env has {have}; train the agent on this scenario")
        same = np.allclose(setup.slo_s, self.slo_s, rtol=1e-6) and math.isclose(setup.interval_s, self.interval_s)
        if not same:
            ms = [round(x * 1e3, 1) for x in self.slo_s]
            raise ConfigError(f"the BCEdge latency predictor was trained for SLOs {ms} ms and {self.interval_s} s "
                              f"intervals, this env has {[round(x * 1e3, 1) for x in setup.slo_s]} ms and "
                              f"{setup.interval_s} s; train the agent on this scenario")

    def load_scale(self, setup: BatchSetup) -> np.ndarray:
        """``(2M,)`` factors from ``setup``'s load units (its nominal rates) to the predictor's."""
        return np.repeat(np.asarray(setup.rate_ref_rps) / np.asarray(self.rate_ref_rps), 2)


def _ratios(info: Mapping[str, Any], obs: np.ndarray, setup: BatchSetup, names: Sequence[str]) -> np.ndarray:
    """Each model's measured ``p99 / SLO`` of the interval an ``info`` covers (:data:`RATIO_CAP` when it completed
    nothing while requests waited)."""
    out = np.empty(len(setup.models))
    for m, name in enumerate(setup.models):
        p99 = float(info[model_key(P99_LATENCY_MS, name)]) * 1e-3 / setup.slo_s[m]
        waiting = obs[names.index(f"{name}_queue")] > 0 or obs[names.index(f"{name}_arrival_rate")] > 0
        out[m] = RATIO_CAP if float(info[model_key(THROUGHPUT_RPS, name)]) == 0 and waiting else p99
    return np.clip(out, 0.0, RATIO_CAP)


def random_config(setup: BatchSetup, rng: np.random.Generator) -> list[int]:
    """A configuration drawn uniformly from those that fit the board's memory (rejection sampling)."""
    for _ in range(1000):
        cfg = [int(v) for m in range(len(setup.models))
               for v in (rng.integers(len(setup.batch_sizes)), rng.integers(setup.max_instances))]
        if setup.config_memory_gb(cfg) <= setup.usable_memory_gb:
            return cfg
    return [0, 0] * len(setup.models)


def collect_measurements(env_id: str, env_kwargs: Mapping[str, Any], seeds: Sequence[int], intervals: int,
                         hold: int = 2, load: tuple[float, float] = LOAD_RANGE,
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray]:
    """Serve random configurations (within memory; random clock levels when the env controls them) on episodes
    seeded ``seeds``, each held ``hold`` intervals, and measure the last interval of each. Each episode runs each
    model at its nominal rate × a factor drawn log-uniformly from ``load`` (a load generator's sweep; a CSV
    arrival log is replayed as it is).

    Returns:
        ``(configs (N, 2M), loads (N, 2M), levels (N, 3) or None, ratios (N, M))``: the configuration served;
        what a controller knew when it chose it, per model the previous interval's arrival rate / nominal rate
        and the queue / (nominal rate · interval) (the observation's fields, rescaled to the nominal rates); the
        clock levels; the measured ``p99 / SLO`` per model of the interval served.
    """
    kw = {**dict(env_kwargs), "episode_intervals": int(intervals)}
    env = gym.make(env_id, **kw)
    base = env.unwrapped
    setup: BatchSetup = base.setup
    nominal = np.asarray(setup.rate_ref_rps)
    arrivals = kw.get("arrivals", "poisson")
    scalable = not (isinstance(arrivals, str) and arrivals.lower().endswith(".csv"))
    names = list(base.obs_names)
    load_idx = [names.index(f"{m}_{f}") for m in setup.models for f in ("arrival_rate", "queue")]
    configs, loads, levels, ratios = [], [], [], []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        factor = np.ones(len(nominal))
        if scalable and load != (1.0, 1.0):
            factor = np.exp(rng.uniform(math.log(load[0]), math.log(load[1]), len(nominal)))
            env.close()
            env = gym.make(env_id, **{**kw, "rates_rps": list(nominal * factor)})
        obs, _ = env.reset(seed=int(seed))
        done = False
        while not done:
            cfg = random_config(setup, rng)
            lv = [int(rng.integers(x + 1)) for x in setup.max_levels] if setup.control_clocks else []
            for _ in range(hold):
                before = obs
                obs, _, term, trunc, info = env.step(np.array(cfg + lv, dtype=np.int64))
                done = term or trunc
                if done:
                    break
            if bool(info["refused"]):
                continue
            configs.append(cfg)
            loads.append(before[load_idx] * np.repeat(factor, 2))  # in the nominal rates' units
            levels.append(lv)
            ratios.append(_ratios(info, obs, setup, names))
    env.close()
    lv_arr = np.asarray(levels, dtype=np.float64) if setup.control_clocks else None
    return np.asarray(configs), np.asarray(loads, dtype=np.float64), lv_arr, np.asarray(ratios)


def fit_predictor(setup: BatchSetup, cost_model: Any, configs: np.ndarray, loads: np.ndarray,
                  levels: np.ndarray | None, ratios: np.ndarray, hidden: int = 64, epochs: int = 300,
                  learning_rate: float = 0.003, threshold: float = 1.0, holdout: float = 0.2,
                  seed: int = 0) -> LatencyPredictor:
    """Train a :class:`LatencyPredictor` on measurements (:func:`collect_measurements`; ``cost_model``: the env's
    :class:`~e4gym.envs.batching.BatchCostModel`, for the utilisation features) with torch (one thread,
    full-batch Adam on the squared error of ``log(p99 / SLO)``); the last ``holdout`` share of the samples is
    held out and its error goes into :attr:`LatencyPredictor.stats`.

    Raises:
        ConfigError: fewer than 20 measurements.
    """
    import torch

    n = len(configs)
    if n < 20:
        raise ConfigError(f"the BCEdge latency predictor needs at least 20 measurements, got {n}; raise its "
                          "episodes or intervals")
    torch.set_num_threads(1)
    max_levels = tuple(setup.max_levels) if setup.control_clocks else None
    rho = np.array([[setup.rate_ref_rps[m] * cost_model.latency_s(m, size) / size for size in setup.batch_sizes]
                    for m in range(len(setup.models))])
    pred = LatencyPredictor(len(setup.models), len(setup.batch_sizes), setup.max_instances, max_levels, rho, [],
                            np.zeros(1), np.ones(1), float(threshold), tuple(setup.rate_ref_rps), tuple(setup.slo_s),
                            float(setup.interval_s))
    x = pred.features(configs, loads, levels)
    y = np.log(np.clip(ratios, RATIO_FLOOR, RATIO_CAP))
    n_test = round(n * holdout)
    n_fit = n - n_test
    mean, std = x[:n_fit].mean(axis=0), x[:n_fit].std(axis=0) + 1e-6
    xt = torch.tensor((x[:n_fit] - mean) / std, dtype=torch.float32)
    yt = torch.tensor(y[:n_fit], dtype=torch.float32)
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Linear(x.shape[1], hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, hidden),
                              torch.nn.Tanh(), torch.nn.Linear(hidden, y.shape[1]))
    opt = torch.optim.Adam(net.parameters(), lr=learning_rate)
    for _ in range(int(epochs)):
        opt.zero_grad()
        loss = torch.mean((net(xt) - yt) ** 2)
        loss.backward()
        opt.step()
    layers = [mod for mod in net if isinstance(mod, torch.nn.Linear)]
    weights = [(lay.weight.detach().numpy().T.astype(np.float64).copy(),
                lay.bias.detach().numpy().astype(np.float64).copy()) for lay in layers]
    pred.weights, pred.x_mean, pred.x_std = weights, mean, std
    pred.stats = {"samples": float(n), "fit_samples": float(n_fit), "train_mse_log": float(loss.detach()),
                  **predictor_error(pred, configs[n_fit:], loads[n_fit:],
                                    None if levels is None else levels[n_fit:], ratios[n_fit:])}
    return pred


def predictor_error(pred: LatencyPredictor, configs: np.ndarray, loads: np.ndarray, levels: np.ndarray | None,
                    ratios: np.ndarray) -> dict[str, float]:
    """The predictor's error on measurements: ``heldout_mae`` (mean absolute error of ``p99 / SLO``, both clipped
    to ``[0, RATIO_CAP]``), ``heldout_median_ae``, ``heldout_accuracy`` (share of per-model measurements whose
    meet/miss of ``threshold`` it calls right) and ``heldout_samples`` (NaN figures when there are none)."""
    if len(configs) == 0:
        return {"heldout_mae": math.nan, "heldout_median_ae": math.nan, "heldout_accuracy": math.nan,
                "heldout_samples": 0.0}
    p = np.clip(pred.predict(configs, loads, levels), 0.0, RATIO_CAP)
    t = np.clip(ratios, 0.0, RATIO_CAP)
    err = np.abs(p - t)
    return {"heldout_mae": float(err.mean()), "heldout_median_ae": float(np.median(err)),
            "heldout_accuracy": float(np.mean((p > pred.threshold) == (t > pred.threshold))),
            "heldout_samples": float(len(configs))}


# ---------------------------------------------------------------------------------------------- the filter


class SLOFilter:
    """The predictor as an action filter (module docstring): replaces a model's setting predicted to miss its SLO
    by the nearest one predicted to meet it, within memory.

    Args:
        predictor: the trained predictor. setup: the env's :class:`BatchSetup`. obs_names: the observation's
            field names (for ``<m>_arrival_rate`` and ``<m>_queue``).

    Raises:
        ConfigError: a predictor trained for another action grid.
    """

    def __init__(self, predictor: LatencyPredictor, setup: BatchSetup, obs_names: Sequence[str]) -> None:
        predictor.check(setup)
        self.predictor, self.setup = predictor, setup
        names = list(obs_names)
        self._load_idx = [names.index(f"{m}_{f}") for m in setup.models for f in ("arrival_rate", "queue")]
        self._scale = predictor.load_scale(setup)
        nb, ni = len(setup.batch_sizes), setup.max_instances
        self._grid = [(b, i) for b in range(nb) for i in range(ni)]
        #: filtered decisions / decisions, for reports
        self.changed = 0
        self.decisions = 0

    def forecast(self, observation: np.ndarray) -> np.ndarray:
        """Each model's load for the next interval, ``(2M,)``: the last interval's arrival rate and the queue now,
        in the predictor's nominal units (the env's nominal rate before the first interval, when the observation
        shows no traffic)."""
        ld = np.asarray(observation, dtype=np.float64)[self._load_idx]
        if not ld.any():
            ld[0::2] = 1.0
        return ld * self._scale

    def __call__(self, action: np.ndarray, observation: np.ndarray) -> np.ndarray:
        """The filtered env action (int64; clock levels unchanged)."""
        s, M = self.setup, len(self.setup.models)
        act = np.asarray(action, dtype=np.int64).copy()
        cfg = [int(v) for v in act[: 2 * M]]
        levels = act[2 * M: 2 * M + 3][None, :] if s.control_clocks else None
        loads = self.forecast(observation)[None, :]
        thr = self.predictor.threshold
        self.decisions += 1
        changed = False
        for m in range(M):
            cands = []
            for b, i in self._grid:
                c = list(cfg)
                c[2 * m], c[2 * m + 1] = b, i
                if s.config_memory_gb(c) <= s.usable_memory_gb or (b, i) == (cfg[2 * m], cfg[2 * m + 1]):
                    cands.append(c)
            arr = np.asarray(cands)
            lv = None if levels is None else np.repeat(levels, len(cands), axis=0)
            ratio = self.predictor.predict(arr, np.repeat(loads, len(cands), axis=0), lv)[:, m]
            here = next(k for k, c in enumerate(cands) if c[2 * m] == cfg[2 * m] and c[2 * m + 1] == cfg[2 * m + 1])
            if ratio[here] <= thr:
                continue
            ok = np.flatnonzero(ratio <= thr)
            if len(ok):
                dist = [abs(cands[k][2 * m] - cfg[2 * m]) + abs(cands[k][2 * m + 1] - cfg[2 * m + 1]) for k in ok]
                k = int(min(zip(dist, ratio[ok], ok))[2])
            else:
                k = int(np.argmin(ratio))
            if k != here:
                cfg = cands[k]
                changed = True
        self.changed += changed
        act[: 2 * M] = cfg
        return act


class SLOFilterWrapper(gym.ActionWrapper):
    """The :class:`SLOFilter` inside the training env (under the continuous wrapper): it filters the
    ``MultiDiscrete`` action with the last observation. ``predictor`` ``None``: actions pass unchanged."""

    def __init__(self, env: gym.Env, predictor: LatencyPredictor | None) -> None:
        super().__init__(env)
        base = env.unwrapped
        self.filter = None if predictor is None else SLOFilter(predictor, base.setup, base.obs_names)
        self._obs: np.ndarray | None = None

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        """Reset and remember the observation."""
        obs, info = self.env.reset(**kwargs)
        self._obs = obs
        return obs, info

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        """Step with the filtered action; remember the observation."""
        obs, reward, terminated, truncated, info = self.env.step(self.action(action))
        self._obs = obs
        return obs, reward, terminated, truncated, info

    def action(self, action: Any) -> Any:
        """The filtered action (unchanged without a predictor or before the first reset)."""
        if self.filter is None or self._obs is None:
            return action
        return self.filter(np.asarray(action), self._obs)


# ---------------------------------------------------------------------------------------------- training


def _predictor_options(section: Mapping[str, Any]) -> dict[str, Any]:
    opts = dict(section.get("predictor") or {})
    unknown = sorted(set(opts) - set(PREDICTOR_DEFAULTS))
    if unknown:
        raise ConfigError(f"bcedge: unknown predictor option(s) {unknown}; it takes {sorted(PREDICTOR_DEFAULTS)}")
    return {**PREDICTOR_DEFAULTS, **opts}


def train_predictor(env_id: str, env_kwargs: Mapping[str, Any], section: Mapping[str, Any],
                    seed: int = 0) -> LatencyPredictor:
    """Measure random configurations on training seeds (:data:`PREDICTOR_SEED` + 1000·``seed`` + k) and fit the
    predictor with the ``predictor`` options of the agent config section (:data:`PREDICTOR_DEFAULTS`)."""
    o = _predictor_options(section)
    seeds = [PREDICTOR_SEED + 1000 * int(seed) + k for k in range(int(o["episodes"]))]
    data = collect_measurements(env_id, env_kwargs, seeds, int(o["intervals"]), int(o["hold"]))
    env = gym.make(env_id, **dict(env_kwargs))
    setup, cost_model = env.unwrapped.setup, env.unwrapped.cost_model()
    env.close()
    pred = fit_predictor(setup, cost_model, *data, hidden=int(o["hidden"]), epochs=int(o["epochs"]),
                         learning_rate=float(o["learning_rate"]), threshold=float(o["threshold"]),
                         holdout=float(o["holdout"]), seed=int(seed))
    pred.stats["seeds_from"] = float(seeds[0])
    pred.stats["episodes"] = float(len(seeds))
    return pred


_SAC = sb3_algo(BCEDGE, "SAC")


def _hp(hyperparameters: Mapping[str, Any]) -> dict[str, Any]:
    """SAC's hyper-parameters: the section's without the predictor's."""
    return {k: v for k, v in hyperparameters.items() if k != "predictor"}


def _load_override(path: Path, env: gym.Env | None, hyperparameters: dict[str, Any],
                   changed: frozenset[str]) -> Any:
    """SAC's ``load_override`` with the section's hyper-parameters less the predictor's (the predictor is the
    checkpoint's: it cannot change on resume)."""
    assert _SAC.load_override is not None
    return _SAC.load_override(path, env, _hp(hyperparameters), frozenset(changed) - {"predictor"})


def _wrap(predictor: LatencyPredictor | None) -> Any:
    return lambda env, wrapper: wrap_env(SLOFilterWrapper(env, predictor), wrapper)


def _train(run: TrainRun) -> Any:
    """Fit the predictor (or take the resumed checkpoint's), then SAC through the filter; the predictor rides in
    the model (``model.bcedge_predictor``)."""
    import torch

    torch.set_num_threads(1)
    if run.resume_from is not None:
        predictor = _SAC.load(run.resume_from, None).bcedge_predictor
    else:
        predictor = train_predictor(run.env_id, run.env_kwargs, run.section, run.seed)

    def build(env: gym.Env, hyperparameters: dict[str, Any], seed: int) -> Any:
        # a deep copy: SB3's SAC writes use_sde into policy_kwargs, which would then differ from the config's
        # record of the checkpoint and refuse --resume
        model = _SAC.build(env, copy.deepcopy(_hp(hyperparameters)), seed)
        model.bcedge_predictor = predictor
        return model

    spec = dataclasses.replace(run.spec, build=build, wrap_env=_wrap(predictor))
    return learn_with_callbacks(dataclasses.replace(run, spec=spec))


# ---------------------------------------------------------------------------------------------- serving


class _ActionGrid(gym.Env):
    """A stand-in env with the batching env's action space, for the continuous mapping at serving time."""

    def __init__(self, nvec: Sequence[int], names: Sequence[str]) -> None:
        self.action_space = spaces.MultiDiscrete(np.asarray(nvec, dtype=np.int64))
        self.observation_space = spaces.Box(0.0, 1.0, (1,), dtype=np.float32)
        self.action_names = tuple(names)


class BCEdgePolicy:
    """A trained BCEdge model as a harness policy: SAC's action (deterministic) through the continuous mapping,
    then the SLO filter with the model's predictor.

    Args:
        path: the model file (``model.zip``). name: display name. meta: the run's ``train.json``.

    Raises:
        ConfigError: (at :meth:`bind`) not a batching env, an unreadable model, one without a predictor, or one
            trained for another observation or action grid.
    """

    clairvoyant = False

    def __init__(self, path: Path, name: str, meta: Mapping[str, Any]) -> None:
        self.path, self.name, self.meta = Path(path), name, dict(meta)
        self._model: Any = None
        self._map: Any = None
        self.filter: SLOFilter | None = None

    def bind(self, context: Any) -> None:
        """Load the model (one torch thread) and build the action mapping and the filter for the bound env."""
        import torch

        torch.set_num_threads(1)
        setup = context.setup
        if not isinstance(setup, BatchSetup):
            raise ConfigError(f"{self.name} (bcedge) runs on e4gym/BatchConcurrency-v0, got an env whose actions are "
                              f"{list(context.action_names)}")
        try:
            model = _SAC.load(self.path, None)
        except Exception as exc:
            raise ConfigError(f"{self.path} is not a readable bcedge model ({type(exc).__name__}: {exc})") from None
        predictor = getattr(model, "bcedge_predictor", None)
        if not isinstance(predictor, LatencyPredictor):
            raise ConfigError(f"{self.path} holds no BCEdge latency predictor: train it with e4gym train --algo bcedge")
        if model.observation_space.shape != (len(context.obs_names),):
            raise ConfigError(f"{self.name} was trained on observations of shape {model.observation_space.shape}; "
                              f"this env has {(len(context.obs_names),)}")
        nvec = [len(setup.batch_sizes), setup.max_instances] * len(setup.models) + (
            [x + 1 for x in setup.max_levels] if setup.control_clocks else [])
        self._map = wrap_env(_ActionGrid(nvec, context.action_names), self.meta.get("wrapper", "continuous"))
        if self._map.action_space != model.action_space:
            raise ConfigError(f"{self.name} acts in {model.action_space}; this env's mapping gives "
                              f"{self._map.action_space}")
        self.filter = SLOFilter(predictor, setup, context.obs_names)
        self._model = model

    def predict(self, observation: np.ndarray, state: Any = None, episode_start: np.ndarray | None = None,
                deterministic: bool = True) -> tuple[np.ndarray, Any]:
        """The filtered env action for ``observation``.

        Raises:
            ConfigError: the policy was not bound to an env.
        """
        if self._model is None or self.filter is None:
            raise not_bound(self.name)
        action, _ = self._model.predict(observation, deterministic=deterministic)
        if isinstance(self._map, gym.ActionWrapper):
            action = self._map.action(action)
        return self.filter(np.asarray(action, dtype=np.int64), observation), state

    def reset(self) -> None:
        """Stateless (the filter reads only the observation)."""

    def stats(self) -> dict[str, float]:
        """The share of decisions the filter changed (``filter_changed_share``) and the predictor's held-out
        figures from training (``predictor_*``)."""
        out = {f"predictor_{k}": float(v) for k, v in (self.filter.predictor.stats if self.filter else {}).items()}
        if self.filter is not None and self.filter.decisions:
            out["filter_changed_share"] = self.filter.changed / self.filter.decisions
        return out


register_algo(dataclasses.replace(
    _SAC, train=_train, wrap_env=_wrap(None), policy=BCEdgePolicy, load_override=_load_override,
    summary="BCEdge: stable-baselines3 SAC with an SLO-aware latency predictor as action filter "
            "(e4gym/BatchConcurrency-v0)"))
