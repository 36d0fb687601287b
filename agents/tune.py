"""``e4gym tune``: hyper-parameter and reward-weight sweeps of any ``e4gym train`` algorithm with Ray Tune.

A sweep is one YAML file (``configs/tune/<name>.yaml``, or any path; ``e4gym tune --config NAME|FILE``)::

    agent: ppo                         # the agent config to start from: configs/agents/ppo.yaml
    # agent_config: path/to/file.yaml  # ... or another agent config file
    env: e4gym/EarlyExitDVFS-v1        # its section (default: the frame env)
    env_kwargs: {episode_frames: 200}  # over the section's env_kwargs, in every trial
    search_space:                      # dotted keys of the section -> a distribution
      learning_rate: {loguniform: [1.0e-5, 1.0e-2]}
      gamma: {uniform: [0.8, 0.999]}
      n_epochs: {randint: [3, 11]}     # integers lo <= k < hi (Tune's randint)
      batch_size: {choice: [64, 128, 256]}
      env_kwargs.reward_weights.energy: {uniform: [0.5, 2.0]}
    num_samples: 8                     # trials
    metric: eval/mean_reward           # agents.algos.EVAL_METRICS, or eval/<episode figure> (weight-free), e.g.
                                       # eval/ep_energy_per_frame_j with mode: min
    mode: max                          # or min
    budget: {steps: 4096, evaluations: 4, eval_episodes: 2}   # per trial at most: env steps, evaluations
    scheduler: {name: asha, grace_period: 1, reduction_factor: 2}   # or {name: fifo}: no early stopping
    search: random                     # Tune's random search (seeded), or optuna (when installed)
    seed: 0

Each trial is a normal ``e4gym train`` run (:func:`agents.train.train`) into ``OUT/trials/<trial>/``, from
that folder's ``agent.yaml`` (the agent config section with the trial's values; ``e4gym train --config`` takes
it): TensorBoard (``tb/``), checkpoints, evaluations, ``streams.jsonl``, the model and ``train.json``. It
evaluates ``budget.evaluations`` times, every ``budget.steps / budget.evaluations`` env steps, and each
evaluation is one Tune result (``training_iteration``), so ASHA (``grace_period`` and ``max_t`` in evaluations)
stops a trial that falls behind at a rung. A stopped trial stops at that evaluation and is written like any
finished run, with the steps it did (``train.json``). The trial pauses at each evaluation until the driver has
seen it (milliseconds), which is what makes a stopped trial end exactly where the scheduler decided. A trial's
process (one CPU, one torch thread) is reused for the next trial (Tune's ``reuse_actors``).

Trial ``k`` of a sweep seeded ``s`` trains with seed ``1000·s + k`` (:data:`TRIAL_SEED_STRIDE`): its training
streams and evaluation streams are disjoint as in any ``e4gym train`` run
(:data:`~agents.algos.TRAIN_SEED_OFFSET`, :data:`~agents.algos.EVAL_SEED_OFFSET`). The random search draws
from the sweep seed, so a sweep run again draws the same configurations and seeds (the scheduler's decisions
depend on the order in which concurrent trials report, which ``--jobs 1`` makes deterministic too).

At the end ``OUT/results.csv`` and ``OUT/results.md`` hold one row per trial (its values, its last evaluation's
metric, evaluations, env steps, whether the scheduler stopped it early, its status: ``finished``, ``error`` or
``interrupted`` by Ctrl-C), and ``OUT/best.yaml`` the
best trial's section in ``configs/agents`` style (``e4gym train --algo ALGO --env ENV --config OUT/best.yaml``),
with a comment header naming the sweep and the metric. Ray Tune's own records go to ``OUT/tune/``.

Ray: without ``--address`` a Ray instance of this machine is started with ``--jobs`` CPUs, no dashboard and its
own temporary folder (removed afterwards), and shut down however the sweep ends; with ``--address`` that cluster
is connected to and never shut down (``OUT`` must then be a folder every node can write, as the trials write
their run folders there). Ray Tune is imported only here (``e4gym[ray]``); without it the sweep stops before
anything is written, with one line naming the extra.
"""

from __future__ import annotations

import argparse
import copy
import csv
import io
import json
import math
import os
import queue
import re
import sys
import threading
import time
import traceback
import zlib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agents.algos import EVAL_METRICS, get_algo
from agents.train import check_env, load_agent_config, train
from e4gym._yaml import load_yaml
from e4gym.errors import ConfigError, E4gymError
from e4gym.io import write_json, write_text
from e4gym.markdown import markdown_table
from e4gym.paths import config_dir

__all__ = ["DISTRIBUTIONS", "SCHEDULERS", "SEARCHES", "TRIAL_SEED_STRIDE", "TUNE_INSTALL_HINT", "Distribution",
           "SweepResult", "TuneSpec", "add_tune_parser", "apply_params", "cmd_tune", "import_tune",
           "load_tune_config", "run_sweep"]

#: The one-line fix for a missing Ray Tune.
TUNE_INSTALL_HINT = "pip install 'e4gym[ray]'"
#: The distributions of a ``search_space`` entry (Ray Tune's of the same names).
DISTRIBUTIONS = ("loguniform", "uniform", "choice", "randint")
#: Schedulers: ASHA (early stopping), or FIFO (every trial runs its whole budget).
SCHEDULERS = ("asha", "fifo")
#: Search algorithms: Tune's seeded random search, or Optuna's TPE (needs ``optuna``).
SEARCHES = ("random", "optuna")
#: Trial ``k`` of a sweep seeded ``s`` trains with seed ``TRIAL_SEED_STRIDE * s + k``.
TRIAL_SEED_STRIDE = 1000
#: The keys of a tune config.
_KEYS = ("agent", "agent_config", "env", "env_kwargs", "search_space", "num_samples", "metric", "mode", "budget",
         "scheduler", "search", "seed")
#: The reward weights of the default reward (``env_kwargs.reward_weights.<name>``).
_REWARD_WEIGHTS = ("energy", "deadline", "accuracy")


# ---------------------------------------------------------------------------------------------- the config


@dataclass(frozen=True)
class Distribution:
    """One ``search_space`` entry: ``kind`` (one of :data:`DISTRIBUTIONS`) and its ``args`` (``[lo, hi]`` or
    the choices)."""

    kind: str
    args: tuple[Any, ...]

    def to_tune(self, tune: Any) -> Any:
        """The Ray Tune domain (``tune.loguniform(lo, hi)``, ...)."""
        if self.kind == "choice":
            return tune.choice(list(self.args))
        return getattr(tune, self.kind)(*self.args)

    def __str__(self) -> str:
        return f"{self.kind}{list(self.args)}"


@dataclass(frozen=True)
class TuneSpec:
    """A checked tune config (:func:`load_tune_config`).

    Attributes:
        source: the file it came from (``tune config`` for a mapping). name: the sweep's name (the file's stem;
            ``sweep`` for a mapping).
        agent: the algorithm. agent_config: its agent config file (``None``: ``configs/agents/<agent>.yaml``).
        env_id: the env id (its section). section: the agent config section with the tune config's
            ``env_kwargs`` merged into its ``env_kwargs``: every trial starts from it.
        search_space: dotted key of ``section`` -> distribution.
        num_samples: trials. metric / mode: what decides (:func:`metric_ok`: one of
            :data:`~agents.algos.EVAL_METRICS` or an ``eval/<episode figure>``; ``max`` or ``min``). steps: env
            steps per trial at most. evaluations: evaluations per trial (the scheduler's ``max_t``).
            eval_episodes: episodes per evaluation.
        scheduler: ``asha`` or ``fifo``. grace_period: evaluations before ASHA may stop a trial.
            reduction_factor: ASHA's (keeps ``1/reduction_factor`` of the trials at each rung).
        search: ``random`` or ``optuna``. seed: the sweep seed. env_kwargs: the tune config's own ``env_kwargs``
            (already merged into ``section``).
    """

    source: str
    name: str
    agent: str
    agent_config: Path | None
    env_id: str
    section: dict[str, Any]
    search_space: dict[str, Distribution]
    num_samples: int = 8
    metric: str = "eval/mean_reward"
    mode: str = "max"
    steps: int = 4096
    evaluations: int = 4
    eval_episodes: int = 2
    scheduler: str = "asha"
    grace_period: int = 1
    reduction_factor: float = 2.0
    search: str = "random"
    seed: int = 0
    env_kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def eval_freq(self) -> int:
        """Env steps between evaluations: ``steps // evaluations``."""
        return max(self.steps // self.evaluations, 1)

    @property
    def agent_source(self) -> str:
        """The agent config file, as text (for headers)."""
        return str(self.agent_config) if self.agent_config is not None else f"configs/agents/{self.agent}.yaml"


def _bad(where: str, key: str, msg: str) -> ConfigError:
    return ConfigError(f"{where}: {key}: {msg}")


def _int(where: str, key: str, value: Any, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise _bad(where, key, f"must be an integer >= {low}, got {value!r}")
    return int(value)


def _number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def parse_distribution(where: str, key: str, value: Any) -> Distribution:
    """The distribution of ``search_space`` entry ``key`` (``{loguniform: [lo, hi]}``, ...).

    Raises:
        ConfigError: not a one-key mapping of a known distribution, or bad bounds (one line naming ``key``).
    """
    form = "{loguniform: [lo, hi]}, {uniform: [lo, hi]}, {randint: [lo, hi]} or {choice: [a, b, ...]}"
    if not isinstance(value, Mapping) or len(value) != 1:
        raise _bad(where, f"search_space.{key}", f"must be one of {form}, got {value!r}")
    kind, args = next(iter(value.items()))
    if kind not in DISTRIBUTIONS:
        raise _bad(where, f"search_space.{key}", f"unknown distribution {kind!r}; use {form}")
    if not isinstance(args, list) or not args:
        raise _bad(where, f"search_space.{key}", f"{kind} takes a non-empty list, got {args!r}")
    if kind == "choice":
        return Distribution(kind, tuple(args))
    if len(args) != 2 or not all(_number(a) for a in args):
        raise _bad(where, f"search_space.{key}", f"{kind} takes [lo, hi] (two finite numbers), got {args!r}")
    lo, hi = args
    if kind == "randint":
        if not all(isinstance(a, int) for a in args) or lo >= hi:
            raise _bad(where, f"search_space.{key}", f"randint takes integers lo < hi (hi excluded), got {args!r}")
    elif not lo < hi:
        raise _bad(where, f"search_space.{key}", f"{kind} needs lo < hi, got {args!r}")
    if kind == "loguniform" and lo <= 0:
        raise _bad(where, f"search_space.{key}", f"loguniform needs 0 < lo < hi, got {args!r}")
    return Distribution(kind, (lo, hi) if kind == "randint" else (float(lo), float(hi)))


def _check_key(where: str, key: str, section: Mapping[str, Any], agent_source: str) -> None:
    """Check that the dotted ``key`` names a value of ``section`` (an agent config section); under
    ``env_kwargs`` also any env argument (:class:`~e4gym.envs.core.EnvConfig`) and
    ``env_kwargs.reward_weights.<energy|deadline|accuracy>``.

    Raises:
        ConfigError: the key is not there (one line naming it, what there is and the fix).
    """
    from e4gym.envs.core import EnvConfig

    name = f"search_space.{key}"
    parts = key.split(".")
    if not all(parts):
        raise _bad(where, name, "a dotted key of the agent config has no empty parts")
    if parts[0] == "env_kwargs":
        env_kw = dict(section.get("env_kwargs") or {})
        if len(parts) == 1:
            raise _bad(where, name, "sweep one env argument: env_kwargs.<argument>")
        known = sorted(set(EnvConfig.names()) | set(env_kw))
        if parts[1] not in known:
            raise _bad(where, name, f"{parts[1]!r} is not an env argument; env_kwargs take {known}")
        node, rest = env_kw.get(parts[1]), parts[2:]
        if not rest:
            return
        if parts[1] == "reward_weights" and not isinstance(node, Mapping):
            if len(rest) == 1 and rest[0] in _REWARD_WEIGHTS:
                return
            raise _bad(where, name, f"sweep one reward weight: env_kwargs.reward_weights."
                       f"<{'|'.join(_REWARD_WEIGHTS)}>")
        parents, node = parts[:2], node
    else:
        parents, rest, node = [], parts, section
    for part in rest:
        if not isinstance(node, Mapping) or part not in node:
            have = sorted(node) if isinstance(node, Mapping) else []
            path = ".".join([*parents, part])
            raise _bad(where, name, f"{path!r} is not in the agent config {agent_source} (there: {have}); add it "
                       "there first, or fix the name")
        parents.append(part)
        node = node[part]
    if isinstance(node, Mapping):
        raise _bad(where, name, f"names a mapping of {agent_source} ({sorted(node)}); sweep one of its keys")


def metric_ok(metric: str) -> bool:
    """Whether ``metric`` is one an evaluation reports (:data:`~agents.algos.EVAL_METRICS`, or ``eval/<figure>``
    of :data:`~e4gym.envs.wrappers.EPISODE_STAT_KEYS` / ``SERVING_STAT_KEYS``)."""
    from e4gym.envs.wrappers import EPISODE_STAT_KEYS, SERVING_STAT_KEYS

    return metric in EVAL_METRICS or (metric.startswith("eval/") and
                                      metric[5:] in (*EPISODE_STAT_KEYS, *SERVING_STAT_KEYS))


def apply_params(section: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy of ``section`` with each dotted key of ``params`` set to its value (mappings on the way are
    created when missing, e.g. ``env_kwargs.reward_weights``)."""
    out = copy.deepcopy(dict(section))
    for key, value in params.items():
        node = out
        *parents, last = key.split(".")
        for part in parents:
            child = node.get(part)
            node[part] = dict(child) if isinstance(child, Mapping) else {}
            node = node[part]
        node[last] = _plain(value)
    return out


def _plain(value: Any) -> Any:
    """``value`` as a plain YAML/JSON type (NumPy scalars become Python numbers)."""
    if hasattr(value, "item") and not isinstance(value, (list, dict, str)):
        return value.item()
    return value


def tune_config_path(name: str | Path) -> Path:
    """``configs/tune/<name>.yaml`` for a bare name, else the path itself.

    Raises:
        ConfigError: no such file (lists the shipped sweeps).
    """
    p = Path(name)
    if p.suffix in (".yaml", ".yml") or p.is_file():
        if not p.is_file():
            raise ConfigError(f"tune config {p} does not exist")
        return p
    file = config_dir() / "tune" / f"{name}.yaml"
    if not file.is_file():
        shipped = sorted(f.stem for f in (config_dir() / "tune").glob("*.yaml"))
        raise ConfigError(f"no tune config {name!r}: give a file, or one of {shipped} (configs/tune/)")
    return file


def load_tune_config(config: str | Path | Mapping[str, Any], seed: int | None = None) -> TuneSpec:
    """Read and check a tune config (see the module docstring): a name in ``configs/tune/``, a file, or the
    mapping itself. ``seed`` overrides its ``seed``.

    Raises:
        ConfigError / UnknownNameError: one line naming the bad key and the fix: an unknown key, agent or env
            section, a search-space key not in the agent config, a bad distribution or bounds, a bad budget,
            metric, mode, scheduler or search; ``search: optuna`` without Optuna installed.
    """
    if isinstance(config, Mapping):
        data, where, name = dict(config), "tune config", "sweep"
    else:
        file = tune_config_path(config)
        shown = os.path.relpath(file) if file.resolve().is_relative_to(Path.cwd()) else str(file)
        data, where, name = load_yaml(file), shown, file.stem
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: expected a mapping with {list(_KEYS)}")
    unknown = sorted(set(data) - set(_KEYS))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; a tune config takes {list(_KEYS)}")
    agent = data.get("agent")
    if not isinstance(agent, str):
        raise _bad(where, "agent", f"name the algorithm whose config the sweep starts from, e.g. agent: ppo; got "
                   f"{agent!r}")
    try:
        get_algo(agent)
    except E4gymError as exc:
        raise ConfigError(f"{where}: agent: {exc}") from None
    env_id = data.get("env", "e4gym/EarlyExitDVFS-v1")
    agent_config = Path(data["agent_config"]) if data.get("agent_config") is not None else None
    try:
        section = load_agent_config(agent, str(env_id), agent_config)
    except E4gymError as exc:
        raise ConfigError(f"{where}: agent/env: {exc}") from None
    agent_source = str(agent_config) if agent_config else f"configs/agents/{agent}.yaml"
    env_kwargs = data.get("env_kwargs") or {}
    if not isinstance(env_kwargs, Mapping):
        raise _bad(where, "env_kwargs", f"must be a mapping of env arguments, got {env_kwargs!r}")
    section["env_kwargs"] = {**dict(section.get("env_kwargs") or {}), **dict(env_kwargs)}
    space = data.get("search_space")
    if not isinstance(space, Mapping) or not space:
        raise _bad(where, "search_space", "must map dotted keys of the agent config to distributions, e.g. "
                   "learning_rate: {loguniform: [1.0e-5, 1.0e-2]}")
    search_space = {}
    for key, value in space.items():
        if not isinstance(key, str):
            raise _bad(where, "search_space", f"keys are dotted keys of the agent config, got {key!r}")
        _check_key(where, key, section, agent_source)
        search_space[key] = parse_distribution(where, key, value)
    budget = data.get("budget") or {}
    if not isinstance(budget, Mapping) or set(budget) - {"steps", "evaluations", "eval_episodes"}:
        raise _bad(where, "budget", f"takes steps, evaluations and eval_episodes, got {budget!r}")
    steps = _int(where, "budget.steps", budget.get("steps", section.get("n_timesteps", 4096)))
    evaluations = _int(where, "budget.evaluations", budget.get("evaluations", 4))
    if evaluations > steps:
        raise _bad(where, "budget.evaluations", f"{evaluations} evaluations do not fit in {steps} steps")
    metric = data.get("metric", "eval/mean_reward")
    if not isinstance(metric, str) or not metric_ok(metric):
        raise _bad(where, "metric", f"must be one an evaluation reports: {list(EVAL_METRICS)} or eval/<episode "
                   f"figure> such as eval/ep_energy_per_frame_j (mode: min); got {metric!r}")
    mode = data.get("mode", "max")
    if mode not in ("max", "min"):
        raise _bad(where, "mode", f"must be max or min, got {mode!r}")
    sched = data.get("scheduler") or {"name": "asha"}
    if isinstance(sched, str):
        sched = {"name": sched}
    if not isinstance(sched, Mapping) or sched.get("name", "asha") not in SCHEDULERS \
            or set(sched) - {"name", "grace_period", "reduction_factor"}:
        raise _bad(where, "scheduler", f"takes {{name: asha|fifo, grace_period: N, reduction_factor: F}}, got "
                   f"{sched!r}")
    grace = _int(where, "scheduler.grace_period", sched.get("grace_period", 1))
    if grace > evaluations:
        raise _bad(where, "scheduler.grace_period", f"{grace} is more than budget.evaluations ({evaluations}): "
                   "ASHA could never stop a trial")
    rf = sched.get("reduction_factor", 2)
    if not _number(rf) or rf <= 1:
        raise _bad(where, "scheduler.reduction_factor", f"must be a number > 1, got {rf!r}")
    search = data.get("search", "random")
    if search not in SEARCHES:
        raise _bad(where, "search", f"must be one of {list(SEARCHES)}, got {search!r}")
    if search == "optuna":
        _import_optuna(where)
    seed_value = seed if seed is not None else data.get("seed", 0)
    return TuneSpec(
        source=where, name=name, agent=agent, agent_config=agent_config, env_id=str(env_id), section=section,
        search_space=search_space, env_kwargs=dict(env_kwargs),
        num_samples=_int(where, "num_samples", data.get("num_samples", 8)), metric=str(metric), mode=str(mode),
        steps=steps, evaluations=evaluations,
        eval_episodes=_int(where, "budget.eval_episodes", budget.get("eval_episodes", 2)),
        scheduler=str(sched.get("name", "asha")), grace_period=grace, reduction_factor=float(rf),
        search=str(search), seed=_int(where, "seed", seed_value, low=0))


# ---------------------------------------------------------------------------------------------- Ray


def import_tune() -> tuple[Any, Any]:
    """``(ray, ray.tune)`` (imported here only).

    Raises:
        ConfigError: Ray or Ray Tune is not installed; one line naming the fix (:data:`TUNE_INSTALL_HINT`).
    """
    try:
        import ray
        from ray import tune
    except ImportError as exc:
        raise ConfigError(f"e4gym tune needs Ray Tune, which is not installed here ({exc}); install it with: "
                          f"{TUNE_INSTALL_HINT}") from None
    return ray, tune


def _import_optuna(where: str) -> Any:
    try:
        import optuna  # noqa: F401
        from ray.tune.search.optuna import OptunaSearch
    except ImportError as exc:
        raise ConfigError(f"{where}: search: optuna needs Optuna, which is not installed here ({exc}); install it "
                          "with: pip install optuna (or use search: random)") from None
    return OptunaSearch


@contextmanager
def ray_tune_session(address: str | None, num_cpus: int) -> Iterator[tuple[Any, Any]]:
    """Ray (and Tune) for the duration of the block; yields ``(ray, ray.tune)``: the benchmark harness's
    :func:`e4gym.bench.runner.ray_session` (a Ray instance of this machine with ``num_cpus`` CPUs, no dashboard and
    its own temporary folder, shut down however the block ends; or the cluster at ``address``, checked first,
    connected to and never shut down; a Ray this process already initialised is used as it is).

    Raises:
        ConfigError: Ray Tune is not installed (:func:`import_tune`), or nothing answers at ``address``.
    """
    from e4gym.bench.runner import ray_session

    _, tune = import_tune()
    with ray_session(address, num_cpus) as session:
        yield session.ray(), tune

def _trial_index(trial_id: str, params: Mapping[str, Any]) -> int:
    """The trial's index: the counter at the end of the id of Tune's random search (``a1b2c_00003`` -> 3);
    for other searches (random ids) a number in ``[0, TRIAL_SEED_STRIDE)`` from the trial's values."""
    tail = trial_id.rsplit("_", 1)[-1]
    if "_" in trial_id and tail.isdigit():
        return int(tail)
    key = json.dumps({k: _plain(v) for k, v in params.items()}, sort_keys=True, default=str)
    return zlib.crc32(key.encode()) % TRIAL_SEED_STRIDE


def _trainable(tune: Any) -> type:
    """The Tune trainable of a trial: ``train`` runs in a thread; each evaluation is one ``step`` result, and
    the thread waits there until the next ``step`` (go on) or ``cleanup`` (stop: the run ends after that
    evaluation and is written as a finished run)."""

    class E4gymTrial(tune.Trainable):  # type: ignore[misc, name-defined]
        """One ``e4gym train`` run as a Tune trial (see :func:`_trainable`)."""

        def setup(self, config: dict[str, Any], run: Mapping[str, Any] | None = None) -> None:
            import torch

            torch.set_num_threads(1)
            assert run is not None
            params = {k: _plain(v) for k, v in config.items()}
            index = _trial_index(self.trial_id, params)
            self.label = f"trial_{index:05d}" if self.trial_id.rsplit("_", 1)[-1].isdigit() else \
                f"trial_{self.trial_id}"
            self.folder = Path(run["out"]) / "trials" / self.label
            self.folder.mkdir(parents=True, exist_ok=True)
            self.seed = TRIAL_SEED_STRIDE * int(run["seed"]) + index
            section = apply_params(run["section"], params)
            self.agent_yaml = self.folder / "agent.yaml"
            write_text(self.agent_yaml, _yaml_text({run["env_id"]: section}))
            self.run_args = dict(run)
            self.params = params
            self.results: queue.Queue[tuple[str, Any]] = queue.Queue()
            self.go = threading.Semaphore(0)
            self.stop_now = False
            self.last: dict[str, Any] = {}
            self.evaluations: list[dict[str, float]] = []
            self.started = False
            self.thread = threading.Thread(target=self._train, daemon=True, name=f"e4gym-{self.label}")
            write_json(self.folder / "trial.json", self._record("running"))

        def _record(self, status: str) -> dict[str, Any]:
            return {"trial": self.label, "tune_trial_id": self.trial_id, "seed": self.seed, "params": self.params,
                    "status": status, "evaluations": self.evaluations}

        def _hook(self, steps: int, metrics: dict[str, float]) -> bool:
            self.results.put(("eval", {**metrics, "steps": int(steps)}))
            self.go.acquire()
            return not self.stop_now

        def _train(self) -> None:
            r = self.run_args
            try:
                train(r["agent"], r["env_id"], self.folder, None, self.agent_yaml, steps=r["steps"], seed=self.seed,
                      eval_freq=r["eval_freq"], eval_episodes=r["eval_episodes"], progress=False,
                      on_evaluation=self._hook)
                self.results.put(("done", None))
            except BaseException as exc:  # every failure is the trial's, reported by step()
                text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
                self.results.put(("error", f"{text}\n{traceback.format_exc()}"))

        def step(self) -> dict[str, Any]:
            if not self.started:
                self.started = True
                self.thread.start()
            else:
                self.go.release()
            kind, payload = self.results.get()
            if kind == "error":
                write_json(self.folder / "trial.json", self._record("error"))
                raise RuntimeError(f"trial {self.label} failed: {payload}")
            if kind == "done":  # training ended before the scheduler's last evaluation
                self.thread.join()
                write_json(self.folder / "trial.json", self._record("finished"))
                return {self.run_args["metric"]: math.nan, **self.last, "done": True}
            self.evaluations.append(payload)  # every figure in trial.json; Tune gets the metric and the steps
            metric = self.run_args["metric"]
            self.last = {metric: payload.get(metric, math.nan), "steps": payload["steps"], "trial": self.label}
            write_json(self.folder / "trial.json", self._record("running"))
            return dict(self.last)

        def cleanup(self) -> None:
            if self.thread.is_alive():
                self.stop_now = True
                self.go.release()
                self.thread.join()
                kind = "done"  # the thread's last message: done or error (an evaluation Tune did not see before)
                while not self.results.empty():
                    kind = self.results.get()[0]
                write_json(self.folder / "trial.json", self._record("error" if kind == "error" else "finished"))

        def reset_config(self, new_config: dict[str, Any]) -> bool:
            """Reuse this process for the next trial (Tune's ``reuse_actors``: no second start, no second import
            of torch): end this trial as :meth:`cleanup` does, set up the next."""
            self.cleanup()
            E4gymTrial.setup(self, new_config, run=self.run_args)  # not with_parameters' own setup
            return True

    return E4gymTrial


def _monitor(tune: Any, total: int, metric: str, mode: str, bar: bool) -> Any:
    """A Tune callback that records which trials Tune completed (its scheduler's stop, or the end of the budget;
    a trial stopped by Ctrl-C is not one of them) and, with ``bar``, draws a tqdm bar over the trials (stderr):
    finished trials, the running ones and the best metric so far."""
    from tqdm import tqdm

    class Monitor(tune.Callback):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            self.bar = tqdm(total=total, unit="trial", desc="tune", file=sys.stderr, dynamic_ncols=True) \
                if bar else None
            self.best: float | None = None
            self.running: set[str] = set()
            self.labels: dict[str, str] = {}  # Tune's trial id -> the trial's folder name
            self.completed: set[str] = set()  # folder names of the trials Tune completed

        def _show(self) -> None:
            if self.bar is not None:
                best = "–" if self.best is None else f"{self.best:.4g}"
                self.bar.set_postfix_str(f"running {len(self.running)}, best {metric} {best}")

        def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self.running.add(trial.trial_id)
            self._show()

        def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
            if result.get("trial"):
                self.labels[trial.trial_id] = str(result["trial"])
            value = result.get(metric)
            if isinstance(value, (int, float)) and math.isfinite(value):
                better = max if mode == "max" else min
                self.best = value if self.best is None else better(self.best, value)
            self._show()

        def _end(self, trial: Any) -> None:
            self.running.discard(trial.trial_id)
            if self.bar is not None:
                self.bar.update(1)
            self._show()

        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            if trial.trial_id in self.labels:
                self.completed.add(self.labels[trial.trial_id])
            self._end(trial)

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self._end(trial)

        def on_experiment_end(self, trials: list, **info: Any) -> None:
            if self.bar is not None:
                self.bar.close()

    return Monitor()


def _yaml_text(data: Any) -> str:
    import yaml

    return yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=120)


# ---------------------------------------------------------------------------------------------- the sweep


@dataclass(frozen=True)
class SweepResult:
    """What :func:`run_sweep` wrote: ``rows`` (one per trial: ``trial``, the values by dotted key, the metric,
    ``evaluations``, ``steps``, ``stopped_early``, ``status`` (``finished``, ``error`` or ``interrupted``),
    ``seed``, ``folder``, ``error``), the best row (``None`` when no trial evaluated), the output folder, the wall
    time (s) and the sweep's config."""

    rows: list[dict[str, Any]]
    best: dict[str, Any] | None
    out: Path
    wall_s: float
    spec: TuneSpec

    @property
    def interrupted(self) -> bool:
        """Whether some trials did not finish (the sweep was stopped, e.g. by Ctrl-C)."""
        return _unfinished(self.spec, self.rows) > 0


def _scheduler(spec: TuneSpec, tune: Any) -> Any:
    if spec.scheduler == "fifo":
        from ray.tune.schedulers import FIFOScheduler

        return FIFOScheduler()
    from ray.tune.schedulers import ASHAScheduler

    return ASHAScheduler(time_attr="training_iteration", max_t=spec.evaluations, grace_period=spec.grace_period,
                         reduction_factor=spec.reduction_factor)


def _search(spec: TuneSpec) -> Any:
    if spec.search == "optuna":
        return _import_optuna(spec.source)(seed=spec.seed)
    from ray.tune.search.basic_variant import BasicVariantGenerator

    return BasicVariantGenerator(random_state=spec.seed)


def run_sweep(config: str | Path | Mapping[str, Any] | TuneSpec, out: str | Path, *, jobs: int | None = None,
              address: str | None = None, seed: int | None = None, num_samples: int | None = None,
              steps: int | None = None, verbose: int = 1) -> SweepResult:
    """Run the sweep of ``config`` (a tune config name, file, mapping or :class:`TuneSpec`) into ``out`` and
    write ``results.csv``, ``results.md`` and ``best.yaml`` there (see the module docstring).

    Args:
        jobs: trials at a time (each reserves one CPU; default: 2, at most the CPU count). address: a Ray
            cluster to connect to (never shut down); ``None``: a Ray instance of this machine with ``jobs``
            CPUs, shut down at the end. seed / num_samples / steps: override the config's seed, trial count and
            env steps per trial. verbose: 0 silent, 1 a progress bar over the trials (stderr), 2 and 3 Ray Tune's
            own output (its ``verbose`` 1, status tables, and 2, every result).

    Raises:
        ConfigError: a bad config (before Ray starts), ``out`` already holding a sweep, or Ray Tune missing.
    """
    spec = config if isinstance(config, TuneSpec) else load_tune_config(config, seed=seed)
    if seed is not None and isinstance(config, TuneSpec):
        spec = _replace(spec, seed=int(seed))
    if num_samples is not None:
        spec = _replace(spec, num_samples=_int("--num-samples", "num_samples", num_samples))
    if steps is not None:
        spec = _replace(spec, steps=_int("--steps", "steps", steps, low=spec.evaluations))
    if jobs is not None and (isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1):
        raise ConfigError(f"--jobs must be an integer >= 1, got {jobs!r}")
    jobs = jobs or min(2, os.cpu_count() or 1)
    import_tune()  # a missing Ray is one line, before anything is written
    if spec.metric in ("eval/mean_reward", "eval/std_reward") and any(
            k.startswith(("env_kwargs.reward_weights", "env_kwargs.reward")) for k in spec.search_space):
        print(f"e4gym tune: note: the search space sweeps reward weights, and {spec.metric} is measured with each "
              "trial's own weights, so trials are not ranked on one scale; a weight-free metric such as "
              "eval/ep_energy_per_frame_j (mode: min) ranks them on one", file=sys.stderr)
    check_env(get_algo(spec.agent), spec.env_id, spec.section.get("env_kwargs") or {}, spec.section.get("wrapper"))
    out = Path(out).resolve()
    if (out / "trials").is_dir() and any((out / "trials").iterdir()):
        raise ConfigError(f"{out} already holds a sweep (trials/); use another --out")
    out.mkdir(parents=True, exist_ok=True)
    run = {"agent": spec.agent, "env_id": spec.env_id, "section": spec.section, "out": str(out), "metric": spec.metric,
           "seed": spec.seed, "steps": spec.steps, "eval_freq": spec.eval_freq, "eval_episodes": spec.eval_episodes}
    start = time.perf_counter()
    with ray_tune_session(address, jobs) as (_ray, tune):
        monitor = _monitor(tune, spec.num_samples, spec.metric, spec.mode, bar=verbose == 1)
        trainable = tune.with_resources(tune.with_parameters(_trainable(tune), run=run), {"cpu": 1})
        tuner = tune.Tuner(
            trainable,
            param_space={k: d.to_tune(tune) for k, d in spec.search_space.items()},
            tune_config=tune.TuneConfig(metric=spec.metric, mode=spec.mode, num_samples=spec.num_samples,
                                        scheduler=_scheduler(spec, tune), search_alg=_search(spec),
                                        max_concurrent_trials=jobs, reuse_actors=True),
            run_config=tune.RunConfig(name="tune", storage_path=str(out), verbose=max(verbose - 1, 0),
                                      callbacks=[monitor],
                                      stop={"training_iteration": spec.evaluations},
                                      checkpoint_config=tune.CheckpointConfig(checkpoint_frequency=0,
                                                                              checkpoint_at_end=False)),
        )
        with _env_var("RAY_AIR_NEW_OUTPUT", "0" if verbose <= 1 else None):  # the old output is silent at 0
            grid = tuner.fit()
        errors = {_label_of(r): (dict(r.config or {}), _first_line(r.error)) for r in grid if r.error is not None}
        if monitor.bar is not None:
            monitor.bar.close()  # (also when Tune ended early)
    wall = time.perf_counter() - start
    rows = _rows(spec, out, errors, monitor.completed)
    best = _best(spec, rows)
    _write_results(spec, out, rows, best, wall)
    return SweepResult(rows=rows, best=best, out=out, wall_s=wall, spec=spec)


@contextmanager
def _env_var(name: str, value: str | None) -> Iterator[None]:
    """``os.environ[name] = value`` for the block (``None``: left as it is)."""
    old = os.environ.get(name)
    if value is not None:
        os.environ[name] = value
    try:
        yield
    finally:
        if value is not None:
            if old is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = old


def _replace(spec: TuneSpec, **changes: Any) -> TuneSpec:
    import dataclasses

    return dataclasses.replace(spec, **changes)


def _label_of(result: Any) -> str:
    """The trial folder name of a Tune result (``trial_00003``), from its reported ``trial`` or its Tune
    folder's name (``E4gymTrial_<prefix>_00003_3_...``)."""
    label = (result.metrics or {}).get("trial")
    if label:
        return str(label)
    name = Path(str(result.path or "")).name
    match = re.match(r"^[^_]+_[0-9a-f]+_(\d{5})_", name)
    return f"trial_{match.group(1)}" if match else f"trial_{name}"


def _first_line(error: Any) -> str:
    """The last non-empty line of an error's text (the exception itself, after Ray's traceback)."""
    lines = [ln.strip() for ln in str(error).splitlines() if ln.strip() and not set(ln.strip()) <= {"^"}]
    return lines[-1] if lines else type(error).__name__


def _rows(spec: TuneSpec, out: Path, errors: Mapping[str, tuple[dict[str, Any], str]],
          completed: set[str]) -> list[dict[str, Any]]:
    """One row per trial: from its folder's ``trial.json`` and ``train.json``, and from Tune's errors
    (``errors``: folder name -> (values, the error's line)) for a trial that failed before writing them. A trial
    with fewer evaluations than the budget was stopped early when Tune completed it (``completed``), else it was
    interrupted (Ctrl-C: its run is on disk all the same)."""
    rows = []
    for folder in sorted((out / "trials").iterdir()):
        record_file = folder / "trial.json"
        if not record_file.is_file():
            continue
        record = json.loads(record_file.read_text())
        evals = record.get("evaluations") or []
        last = evals[-1] if evals else {}
        meta_file = folder / "train.json"
        steps = json.loads(meta_file.read_text()).get("steps") if meta_file.is_file() else last.get("steps")
        status = record.get("status", "?")
        if record["trial"] in errors:
            status = "error"
        elif status == "running" or (len(evals) < spec.evaluations and record["trial"] not in completed):
            status = "interrupted"  # never cleaned up, or stopped by Tune's end (Ctrl-C), not by its scheduler
        stopped = status == "finished" and len(evals) < spec.evaluations and (steps or 0) < spec.steps
        rows.append({"trial": record["trial"], **{k: record["params"].get(k) for k in spec.search_space},
                     spec.metric: last.get(spec.metric, math.nan), "evaluations": len(evals), "steps": steps,
                     "stopped_early": stopped, "status": status, "seed": record.get("seed"),
                     "folder": str(folder), "error": errors.get(record["trial"], ({}, ""))[1]})
    seen = {r["trial"] for r in rows}
    for label, (params, error) in sorted(errors.items()):
        if label not in seen:
            rows.append({"trial": label, **{k: _plain(params.get(k)) for k in spec.search_space},
                         spec.metric: math.nan, "evaluations": 0, "steps": None, "stopped_early": False,
                         "status": "error", "seed": None, "folder": "", "error": error})
    return sorted(rows, key=lambda r: r["trial"])


def _best(spec: TuneSpec, rows: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The row with the best metric of its last evaluation (``mode``; of equal ones the first trial);
    ``None`` when no trial evaluated."""
    scored = [r for r in rows if isinstance(r[spec.metric], float) and math.isfinite(r[spec.metric])]
    if not scored:
        return None
    sign = -1.0 if spec.mode == "max" else 1.0
    return min(scored, key=lambda r: (sign * r[spec.metric], r["trial"]))


def _unfinished(spec: TuneSpec, rows: Sequence[dict[str, Any]]) -> int:
    """Trials interrupted (Ctrl-C) or never started: ``num_samples`` less the finished and failed ones."""
    return spec.num_samples - sum(r["status"] in ("finished", "error") for r in rows)


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return "nan" if not math.isfinite(value) else f"{value:.4g}"
    return "" if value is None else str(value)


def results_table(spec: TuneSpec, rows: Sequence[dict[str, Any]]) -> str:
    """The results as a Markdown table (trial, values, metric, evaluations, steps, stopped early, status)."""
    headers = ["trial", *spec.search_space, spec.metric, "evals", "steps", "stopped early", "status"]
    body = [[r["trial"], *(_fmt(r[k]) for k in spec.search_space), _fmt(r[spec.metric]), r["evaluations"],
             _fmt(r["steps"]), _fmt(r["stopped_early"]), r["status"]] for r in rows]
    return markdown_table(headers, body)


def _write_results(spec: TuneSpec, out: Path, rows: Sequence[dict[str, Any]], best: dict[str, Any] | None,
                   wall: float) -> None:
    """``results.csv``, ``results.md`` and ``best.yaml`` (when a trial evaluated)."""
    columns = ["trial", *spec.search_space, spec.metric, "evaluations", "steps", "stopped_early", "status", "seed",
               "folder", "error"]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: r[k] for k in columns})
    write_text(out / "results.csv", buf.getvalue())
    stopped = sum(r["stopped_early"] for r in rows)
    unfinished = _unfinished(spec, rows)
    summary = (f"{len(rows)} trials of {spec.agent} on {spec.env_id} ({spec.source}, seed {spec.seed}, "
               f"{spec.scheduler.upper()}, at most {spec.steps} steps and {spec.evaluations} evaluations a trial): "
               f"{stopped} stopped early; "
               + (f"interrupted: {unfinished} of {spec.num_samples} trials did not finish; " if unfinished else "")
               + f"{wall:.1f} s")
    best_line = "no trial evaluated" if best is None else \
        f"best: {best['trial']}, {spec.metric} = {_fmt(best[spec.metric])} ({spec.mode})"
    failed = "".join(f"{r['trial']} failed: {r['error']}\n" for r in rows if r["error"])
    write_text(out / "results.md", f"{summary}\n\n{results_table(spec, rows)}\n\n{failed}{best_line}\n")
    if best is None:
        return
    params = {k: best[k] for k in spec.search_space}
    section = apply_params(spec.section, params)
    header = [
        f"# Best configuration of the e4gym tune sweep {spec.source} ({len(rows)} trials of {spec.agent}, seed "
        f"{spec.seed}, {spec.scheduler.upper()}, at most {spec.steps} steps a trial).",
        f"# Best trial {best['trial']}: {spec.metric} = {_fmt(best[spec.metric])} ({spec.mode}; its last evaluation, "
        f"after {best['steps']} steps).",
        f"# From {spec.agent_source} with: " + ", ".join(f"{k}={_fmt(v)}" for k, v in params.items()) + ".",
        f"# Train it: e4gym train --algo {spec.agent} --env {spec.env_id} --config {out / 'best.yaml'} --out DIR",
    ]
    write_text(out / "best.yaml", "\n".join(header) + "\n" + _yaml_text({spec.env_id: section}))


# ---------------------------------------------------------------------------------------------- CLI


def cmd_tune(args: argparse.Namespace) -> int:
    """The ``tune`` verb."""
    spec = load_tune_config(args.config, seed=args.seed)
    out = Path(args.out) if args.out else Path("runs") / "tune" / spec.name
    result = run_sweep(spec, out, jobs=args.jobs, address=args.address, num_samples=args.num_samples,
                       steps=args.steps, verbose=0 if args.quiet else 1 + args.verbose)
    print((result.out / "results.md").read_text(), end="")
    print(f"wrote {result.out / 'results.csv'}, {result.out / 'results.md'}"
          + (f", {result.out / 'best.yaml'}" if result.best else "")
          + f" (TensorBoard: tensorboard --logdir {result.out / 'trials'})")
    if result.interrupted:
        print("the sweep was interrupted: the finished trials are above; run it again into another --out to "
              "complete it", file=sys.stderr)
        return 130
    return 0 if result.best is not None else 1


def add_tune_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``tune`` verb."""
    p = sub.add_parser("tune", help="sweep hyper-parameters and reward weights of a training algorithm with Ray "
                       "Tune (ASHA), each trial an e4gym train run")
    p.add_argument("--config", required=True, help="a tune config: a name in configs/tune/ (e.g. ppo) or a file")
    p.add_argument("--out", default=None, help="sweep folder (default runs/tune/NAME): trials/, results, best.yaml")
    p.add_argument("--jobs", type=int, default=None, help="trials at a time, one CPU each (default 2)")
    p.add_argument("--address", default=None, help="a Ray cluster to run on (host:port or auto); it is never "
                   "shut down. Default: a Ray instance of this machine, shut down at the end")
    p.add_argument("--seed", type=int, default=None, help="sweep seed (default: the config's): the search and "
                   "the trials' seeds derive from it")
    p.add_argument("--num-samples", type=int, default=None, help="trials (default: the config's num_samples)")
    p.add_argument("--steps", type=int, default=None, help="env steps per trial at most (default: the config's "
                   "budget.steps)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("-v", "--verbose", action="count", default=0, help="Ray Tune's own output instead of the "
                   "progress bar: -v its status tables, -vv every result")
    p.set_defaults(func=cmd_tune)
