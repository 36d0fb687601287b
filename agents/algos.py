"""The registry of training algorithms ``e4gym train`` knows (``--algo``), and what a training run gives them.

An algorithm is one :class:`AlgoSpec`: how it BUILDS a model from an env and hyper-parameters, how it TRAINS
(the loop, with its callbacks, checkpoints, evaluation and TensorBoard), how it SAVES and LOADS a model (file
name and format), which wrapper its env needs and which policy serves a trained model to the benchmark
harness. :func:`agents.train.train` looks the name up and calls these; it never branches on the name.

Adding an algorithm is one :func:`register_algo` call in its own module under ``agents/`` whose name starts with
``algos_`` (found and imported on the first lookup)::

    # agents/algos_mine.py
    from agents.algos import AlgoSpec, register_algo
    from agents.algos_sb3 import learn_with_callbacks

    register_algo(AlgoSpec(
        name="mine",
        build=lambda env, hp, seed: MyModel(env, seed=seed, **hp),   # SB3's learn/predict/save/load surface
        load=lambda path, env: MyModel.load(path, env=env),
        train=learn_with_callbacks,                                  # or a loop of its own: (TrainRun) -> model
        policy=lambda path, name, meta: MyPolicy(path, name=name),   # the harness's policy of a trained model
    ))

A module anywhere else (a test, a user's package) may register too, once it is imported. The hyper-parameters
come from ``configs/agents/<name>.yaml`` (:func:`agents.train.load_agent_config`). Built in: the SB3 algorithms
(:mod:`agents.algos_sb3`), zTT (:mod:`agents.algos_ztt`) and Ring-DVFS (:mod:`agents.algos_ring_dvfs`).
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from e4gym.errors import ConfigError, UnknownNameError
from e4gym.io import atomic_write, write_json

__all__ = [
    "EVAL_METRICS",
    "EVAL_SEED_OFFSET",
    "PROVIDER_PREFIX",
    "RECORD_SUFFIX",
    "RUN_KEYS",
    "STREAMS_FILE",
    "TRAIN_SEED_OFFSET",
    "AlgoSpec",
    "CheckpointMismatchError",
    "HyperparameterError",
    "StreamLog",
    "TrainRun",
    "algo_names",
    "check_spaces",
    "checkpoint_record",
    "checkpoints",
    "get_algo",
    "hyperparameter_changes",
    "make_env",
    "own_env_kwargs",
    "record_path",
    "register_algo",
    "save_model",
    "unregister_algo",
    "wrap_env",
]

#: Keys of an agent config section that configure the run, not the algorithm (the rest go to ``build``).
RUN_KEYS = ("n_timesteps", "env_kwargs", "wrapper", "eval_freq", "eval_episodes", "checkpoint_freq")
#: Offset of the evaluation env's seed from the training seed (so the two never share a stream).
EVAL_SEED_OFFSET = 10_000
#: Offset of the training env's seed from the training seed: episodes seeded 0, 1, 2, ... (a benchmark's seeds)
#: never start a training stream. Every stream an agent trains or is selected on is logged (:class:`StreamLog`).
TRAIN_SEED_OFFSET = 1_000_000
#: The run folder's log of the frame streams the agent trained and was evaluated on (one JSON key per line).
STREAMS_FILE = "streams.jsonl"
#: What a periodic evaluation gives :attr:`TrainRun.on_evaluation`: the mean and standard deviation of the
#: evaluation episodes' returns and their mean length (steps); besides these, ``eval/<figure>``: the mean over
#: the evaluation episodes of each :data:`~e4gym.envs.wrappers.EPISODE_STAT_KEYS` figure the algorithm's
#: evaluation gives (``eval/ep_energy_per_frame_j``, ``eval/ep_deadline_miss_rate``, ``eval/ep_accuracy``, ...),
#: which do not depend on the reward's weights.
EVAL_METRICS = ("eval/mean_reward", "eval/std_reward", "eval/mean_ep_length")
#: Prefix of the modules of this package that register algorithms (imported on the first lookup).
PROVIDER_PREFIX = "algos_"
#: Suffix of a checkpoint's record (``ckpt_<steps>_steps.meta.json``: env, hyper-parameters, overrides).
RECORD_SUFFIX = ".meta.json"


class CheckpointMismatchError(ConfigError):
    """A readable checkpoint (or replay buffer) made for another env than the run's: its observation or action
    space is not the env's (e.g. after ``device`` changed in the env kwargs). Raised by :attr:`AlgoSpec.load`;
    :meth:`TrainRun.load_checkpoint` passes it on rather than calling the checkpoint corrupt."""


class HyperparameterError(ConfigError):
    """Hyper-parameters an algorithm cannot apply to a checkpoint (``--override-hyperparams`` of a key that
    shapes its networks or tables, or an unknown key). Raised by :attr:`AlgoSpec.load_override`."""


def check_spaces(path: Path, observation_space: gym.Space, action_space: gym.Space, env: Any,
                 what: str = "checkpoint") -> None:
    """Check that ``env`` (an env, or a model, with ``observation_space`` and ``action_space``; ``None``: nothing
    to check) has the spaces the saved ``what`` at ``path`` was made for.

    Raises:
        CheckpointMismatchError: another observation or action space (one line naming the file and both spaces).
    """
    if env is None:
        return
    diffs = [" ".join(f"its {name} space is {saved} but this run's env has {have}".split())  # one line
             for name, saved, have in (("action", action_space, env.action_space),
                                       ("observation", observation_space, env.observation_space))
             if saved != have]
    if diffs:
        raise CheckpointMismatchError(
            f"{what} {path} was made for another env: {'; '.join(diffs)} (env kwargs such as device change the "
            "spaces); resume with the env kwargs it was trained with, or train anew into another --out")


# ---------------------------------------------------------------------------------------------- envs


class StreamLog(gym.Wrapper):
    """Offsets the seeds of ``reset`` by ``offset`` and appends every episode's stream key
    (``env.unwrapped.stream_key()``) to ``path`` (JSON lines): the streams an agent trained on, which
    :meth:`agents.train.TrainedPolicy.training_streams` gives the harness so it never scores the agent on one."""

    def __init__(self, env: gym.Env, path: Path | None, offset: int = 0) -> None:
        super().__init__(env)
        self._path, self._offset = path, int(offset)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict]:
        """Reset with ``seed + offset`` and log the stream key."""
        out = self.env.reset(seed=None if seed is None else seed + self._offset, options=options)
        if self._path is not None:
            key = getattr(self.env.unwrapped, "stream_key", None)
            if callable(key):
                self._path.parent.mkdir(parents=True, exist_ok=True)
                with open(self._path, "a") as f:
                    f.write(json.dumps(list(key())) + "\n")
        return out


def _level_grid(env: gym.Env, levels: int, low: float = 0.0) -> dict[str, list[int]]:
    """``levels`` evenly spaced values of each clock-level component, from ``low`` (a fraction of the highest
    level) to the highest (all values of the first component: exit, or offload share)."""
    if levels < 1 or not 0.0 <= low <= 1.0:
        raise ConfigError(f"the discrete wrapper takes levels >= 1 and low in [0, 1], got levels={levels}, low={low}")
    base = env.unwrapped
    nvec = env.action_space.nvec
    return {name: sorted({round(float(v)) for v in np.linspace(low * (int(n) - 1), int(n) - 1, levels)})
            for name, n in zip(base.action_names, nvec) if name.endswith("_level")}


def own_env_kwargs(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The env arguments that are not scenario fields (:class:`~e4gym.envs.core.EnvConfig`'s): the ones a trained
    model keeps wherever it runs (its env's own options, e.g. the edge-cloud env's ``concurrent``, which shapes
    the observation)."""
    from e4gym.envs.core import EnvConfig

    scenario = set(EnvConfig.names())
    return {k: v for k, v in kwargs.items() if k not in scenario}


def wrap_env(env: gym.Env, wrapper: Any) -> gym.Env:
    """Apply the config's action ``wrapper`` (None, ``discrete``, ``{discrete: {levels: K[, low: F]}}``: K levels
    of each clock from F × the highest to the highest; ``continuous``).

    Raises:
        ConfigError: an unknown wrapper.
    """
    from e4gym.envs.wrappers import ContinuousActions, DiscreteActions

    if wrapper is None:
        return env
    name, kw = (wrapper, {}) if isinstance(wrapper, str) else next(iter(dict(wrapper).items()), (None, {}))
    if name == "discrete":
        kw = dict(kw or {})
        unknown = sorted(set(kw) - {"levels", "low"})
        if unknown:
            raise ConfigError(f"the discrete wrapper takes levels and low, got {unknown}")
        return DiscreteActions(env, _level_grid(env, int(kw.get("levels", 3)), float(kw.get("low", 0.0))))
    if name == "continuous":
        return ContinuousActions(env)
    raise ConfigError(f"unknown wrapper {wrapper!r}; use discrete (optionally {{discrete: {{levels: K, low: F}}}}) or "
                      "continuous")


def make_env(algo: str | AlgoSpec, env_id: str, env_kwargs: Mapping[str, Any], wrapper: Any = None,
             monitor: bool = True, streams: Path | None = None, seed_offset: int = 0) -> gym.Env:
    """The env an agent trains on: the e4gym env, the algorithm's wrapper (:attr:`AlgoSpec.wrap_env`: the
    config's action ``wrapper`` by default, zTT's state and reward for ``ztt``), :class:`EpisodeStats` and SB3's
    ``Monitor`` (with the episode figures as info keywords). ``streams`` / ``seed_offset``: a
    :class:`StreamLog` under everything (log file, seed offset). ``algo``: a registered name or a spec.

    Raises:
        UnknownNameError: ``algo`` is not registered.
    """
    from stable_baselines3.common.monitor import Monitor

    from e4gym.envs.wrappers import EPISODE_STAT_KEYS, EpisodeStats

    spec = algo if isinstance(algo, AlgoSpec) else get_algo(algo)
    env = gym.make(env_id, **dict(env_kwargs))
    if streams is not None or seed_offset:
        env = StreamLog(env, streams, seed_offset)
    env = EpisodeStats(spec.wrap_env(env, wrapper))
    return Monitor(env, info_keywords=EPISODE_STAT_KEYS) if monitor else env


# ---------------------------------------------------------------------------------------------- the spec


def save_model(model: Any, path: Path) -> None:
    """Write ``model`` to ``path`` atomically with its ``save(file)`` (SB3 models and SB3-like learners)."""
    atomic_write(Path(path), lambda f: model.save(f))


@dataclass(frozen=True)
class AlgoSpec:
    """What ``e4gym train`` needs to know of one training algorithm.

    Attributes:
        name: the ``--algo`` name (and of ``configs/agents/<name>.yaml``).
        build: ``build(env, hyperparameters, seed) -> model``: a new model on the training env (from
            :meth:`TrainRun.env`); ``hyperparameters`` are the config section's keys outside :data:`RUN_KEYS`
            (``policy`` included, when the section has one).
        load: ``load(path, env) -> model``: a model :attr:`save` wrote; ``env`` is the env to continue training
            on (resume), ``None`` to serve it. Raises :class:`CheckpointMismatchError` (:func:`check_spaces`)
            for a model made for other spaces than ``env``'s; any other exception means an unreadable file.
        train: ``train(run) -> model``: the training loop of a :class:`TrainRun` (build or resume, learn with
            callbacks, checkpoints, evaluation, TensorBoard); returns the trained model, which
            :func:`agents.train.train` saves as :attr:`model_file`. A loop of its own calls
            :meth:`TrainRun.evaluated` after each periodic evaluation and stops when it returns ``False``
            (``e4gym tune`` reports and stops trials through it; :func:`~agents.algos_sb3.learn_with_callbacks`
            does it).
        policy: ``policy(path, name, meta) -> Policy``: the benchmark harness's policy serving a model file,
            with ``meta`` the run's ``train.json`` (env id, config wrapper, ...).
        save: ``save(model, path)``: write a model (default :func:`save_model`: ``model.save`` into an atomic
            write).
        wrap_env: ``wrap_env(env, wrapper) -> env``: the wrapper the algorithm's model acts through, given the
            config's ``wrapper`` entry (default :func:`wrap_env`, the config's action wrapper).
        load_override: ``load_override(path, env, hyperparameters, changed) -> model``: load a checkpoint as
            :attr:`load` does and apply new ``hyperparameters`` (all of the config's, as :attr:`build` gets
            them) to it, of which the keys ``changed`` differ from the checkpoint's (``--override-hyperparams``;
            a key no longer in ``hyperparameters`` goes back to its default). Raises :class:`HyperparameterError`
            for one it cannot change (e.g. a network's shape). ``None``: the algorithm cannot change them on resume.
        model_file: the final model's file name in the run folder; checkpoints share its suffix
            (``checkpoints/ckpt_<steps>_steps<suffix>``).
        summary: one line for listings.
    """

    name: str
    build: Callable[[gym.Env, dict[str, Any], int], Any]
    load: Callable[[Path, gym.Env | None], Any]
    train: Callable[[TrainRun], Any]
    policy: Callable[[Path, str, Mapping[str, Any]], Any]
    save: Callable[[Any, Path], None] = save_model
    wrap_env: Callable[[gym.Env, Any], gym.Env] = wrap_env
    load_override: Callable[[Path, gym.Env | None, dict[str, Any], frozenset[str]], Any] | None = None
    model_file: str = "model.zip"
    summary: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not re.fullmatch(r"[a-z0-9][a-z0-9_.-]*", self.name):
            raise ConfigError(f"an algorithm name is lower-case letters, digits, '-', '_' or '.', got {self.name!r}")
        if not Path(self.model_file).suffix or Path(self.model_file).name != self.model_file:
            raise ConfigError(f"{self.name}: model_file must be a file name with a suffix, got {self.model_file!r}")


_REGISTRY: dict[str, AlgoSpec] = {}
_providers_loaded = False


def register_algo(spec: AlgoSpec, *, replace: bool = False) -> AlgoSpec:
    """Make ``spec`` known to ``e4gym train`` under ``spec.name``; returns ``spec``.

    Raises:
        ConfigError: ``spec`` is not an :class:`AlgoSpec`, or the name is taken (and ``replace`` is false).
    """
    if not isinstance(spec, AlgoSpec):
        raise ConfigError(f"register_algo takes an AlgoSpec, got {spec!r}")
    old = _REGISTRY.get(spec.name)
    if old is not None and old is not spec and not replace:
        raise ConfigError(f"training algorithm {spec.name!r} is already registered; pick another name or pass "
                          "replace=True")
    _REGISTRY[spec.name] = spec
    return spec


def unregister_algo(name: str) -> None:
    """Forget the algorithm ``name`` (nothing happens when it is not registered)."""
    _REGISTRY.pop(name, None)


def _load_providers() -> None:
    """Import this package's ``algos_*`` modules once (each registers its algorithms)."""
    global _providers_loaded
    if _providers_loaded:
        return
    _providers_loaded = True
    package = importlib.import_module(__package__ or "agents")
    for mod in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        if mod.name.startswith(PROVIDER_PREFIX):
            importlib.import_module(f"{package.__name__}.{mod.name}")


def algo_names() -> tuple[str, ...]:
    """The registered algorithm names, sorted."""
    _load_providers()
    return tuple(sorted(_REGISTRY))


def get_algo(name: str) -> AlgoSpec:
    """The :class:`AlgoSpec` registered as ``name``.

    Raises:
        UnknownNameError: no such algorithm (the message lists the registered ones).
    """
    _load_providers()
    spec = _REGISTRY.get(name) if isinstance(name, str) else None
    if spec is None:
        raise UnknownNameError(f"unknown algorithm {name!r}; --algo takes {list(algo_names())}")
    return spec


# ---------------------------------------------------------------------------------------------- a run


_CKPT_RE = re.compile(r"^ckpt_(\d+)_steps(\.\w+)$")


@dataclass(frozen=True)
class TrainRun:
    """One ``e4gym train`` run, as :attr:`AlgoSpec.train` gets it: what to train, where, and the run's helpers.

    Attributes:
        spec: the algorithm. out: the run folder. env_id / env_kwargs: the env (config's kwargs with the
            command line's over them). section: the agent config section. total_steps: env steps in total.
        seed: training seed. eval_freq / eval_episodes / checkpoint_freq: steps between evaluations, episodes
            per evaluation, steps between checkpoints. progress: show a progress bar.
        resume_from: the checkpoint to continue from (``None``: a new model).
        override: the hyper-parameters (keys of :attr:`hyperparameters`, or keys dropped from them) that differ
            from the checkpoint's and are applied to the resumed model (``--override-hyperparams``, through
            :attr:`AlgoSpec.load_override`); empty: the checkpoint's are kept.
        overrides: the run's history of such changes, ``{"steps", "changed": {key: [old, new]}}`` each, the
            resume's own included; written into every checkpoint's record and ``train.json``.
        on_evaluation: ``on_evaluation(steps, metrics) -> bool``, called after every periodic evaluation with the
            env steps done and :data:`EVAL_METRICS` (``eval/mean_reward``: the mean evaluation return, ...);
            returning ``False`` ends training there, and the run finishes as usual (model, ``train.json``).
            ``None`` (the default): no hook (``e4gym tune`` sets one to report to Ray Tune).
    """

    spec: AlgoSpec
    out: Path
    env_id: str
    env_kwargs: dict[str, Any]
    section: dict[str, Any]
    total_steps: int
    seed: int
    eval_freq: int
    eval_episodes: int
    checkpoint_freq: int
    progress: bool = False
    resume_from: Path | None = None
    override: frozenset[str] = frozenset()
    overrides: tuple[dict[str, Any], ...] = ()
    on_evaluation: Callable[[int, dict[str, float]], bool] | None = field(default=None, compare=False)

    def evaluated(self, steps: int, metrics: Mapping[str, float]) -> bool:
        """Pass an evaluation's :data:`EVAL_METRICS` at ``steps`` env steps to :attr:`on_evaluation`; whether
        training goes on (always ``True`` without a hook)."""
        if self.on_evaluation is None:
            return True
        return self.on_evaluation(int(steps), {k: float(v) for k, v in metrics.items()}) is not False

    @property
    def streams(self) -> Path:
        """The run's :data:`STREAMS_FILE`."""
        return self.out / STREAMS_FILE

    @property
    def hyperparameters(self) -> dict[str, Any]:
        """The config section's keys outside :data:`RUN_KEYS`: what :attr:`AlgoSpec.build` gets."""
        return {k: v for k, v in self.section.items() if k not in RUN_KEYS}

    def hparams(self) -> dict[str, Any]:
        """The scalar hyper-parameters, the step count and the seed, for TensorBoard's HPARAMS tab."""
        flat = {k: v for k, v in self.section.items() if isinstance(v, (int, float, str, bool)) and k != "env_kwargs"}
        return {**flat, "n_timesteps": self.total_steps, "seed": self.seed}

    def env(self, *, train: bool, wrapped: bool = True) -> gym.Env:
        """A training env (``train``: seeds offset by :data:`TRAIN_SEED_OFFSET`) or an evaluation env, both
        logging their streams. ``wrapped``: :func:`make_env`'s stack (the algorithm's wrapper, EpisodeStats,
        Monitor); else the bare env under its :class:`StreamLog`."""
        offset = TRAIN_SEED_OFFSET if train else 0
        if not wrapped:
            return StreamLog(gym.make(self.env_id, **self.env_kwargs), self.streams, offset)
        return make_env(self.spec, self.env_id, self.env_kwargs, self.section.get("wrapper"),
                        streams=self.streams, seed_offset=offset)

    def checkpoint_path(self, steps: int) -> Path:
        """``checkpoints/ckpt_<steps>_steps<suffix of the model file>``."""
        return self.out / "checkpoints" / f"ckpt_{int(steps)}_steps{Path(self.spec.model_file).suffix}"

    def record(self) -> dict[str, Any]:
        """What a checkpoint of this run was made with: algorithm, env, wrapper, hyper-parameters in effect, the
        history of their overrides and the episodes per evaluation (the checkpoint's record,
        :func:`checkpoint_record`)."""
        return {"algo": self.spec.name, "env_id": self.env_id, "env_kwargs": _jsonable(self.env_kwargs),
                "wrapper": _jsonable(self.section.get("wrapper")), "hyperparameters": _jsonable(self.hyperparameters),
                "overrides": list(self.overrides), "eval_episodes": self.eval_episodes}

    def save_checkpoint(self, model: Any, steps: int) -> Path:
        """Write ``model`` as the checkpoint of ``steps`` (with :attr:`AlgoSpec.save`, atomic) after its record
        (``ckpt_<steps>_steps.meta.json``, atomic); returns the model's path. Files an algorithm keeps beside a
        checkpoint (a replay buffer) are written before this, so a checkpoint is listed only once complete."""
        path = self.checkpoint_path(steps)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(record_path(path), {"steps": int(steps), **self.record()})
        self.spec.save(model, path)
        return path

    def load_checkpoint(self, env: gym.Env | None) -> Any:
        """The model of :attr:`resume_from` on ``env``: with :attr:`AlgoSpec.load`, or with
        :attr:`AlgoSpec.load_override` when :attr:`override` names hyper-parameters to change.

        Raises:
            CheckpointMismatchError: a checkpoint made for another env (its observation or action space).
            ConfigError: no checkpoint to resume from, one that cannot be read (corrupt or truncated; names the
                file, the cause and the fix), or hyper-parameters the algorithm cannot change.
        """
        path = self.resume_from
        if path is None:
            raise ConfigError(f"{self.out}: nothing to resume from")
        if self.override and self.spec.load_override is None:
            raise HyperparameterError(f"--override-hyperparams: {self.spec.name} cannot change the hyper-parameters "
                                      f"of a checkpoint ({sorted(self.override)}); resume with the checkpoint's "
                                      "config, or train anew into another --out")
        try:
            if self.override and self.spec.load_override is not None:
                return self.spec.load_override(path, env, self.hyperparameters, self.override)
            return self.spec.load(path, env)
        except CheckpointMismatchError as exc:
            raise CheckpointMismatchError(f"{exc}{_kwargs_note(path, self.env_kwargs)}") from None
        except HyperparameterError:
            raise
        except Exception as exc:  # zip, pickle, torch and the loaders' own errors: not a usable checkpoint
            raise _corrupt(path, self.spec.name, exc) from None

    def logger(self) -> Any:
        """An SB3 logger writing TensorBoard and CSV into ``out/tb``. A resumed run appends to ``progress.csv``
        (and adds TensorBoard event files); a new run starts both afresh."""
        from stable_baselines3.common.logger import CSVOutputFormat, Logger, TensorBoardOutputFormat

        folder = self.out / "tb"
        folder.mkdir(parents=True, exist_ok=True)
        csv_file = folder / "progress.csv"
        csv_out = _AppendingCSV(csv_file) if self.resume_from is not None else CSVOutputFormat(str(csv_file))
        return Logger(str(folder), [TensorBoardOutputFormat(str(folder)), csv_out])


def _corrupt(path: Path, algo: str, exc: BaseException) -> ConfigError:
    """The one-line error of a checkpoint that cannot be read."""
    cause = " ".join(str(exc).split())
    return ConfigError(f"checkpoint {path} is corrupt or not a {algo} model (unreadable or truncated: "
                       f"{type(exc).__name__}: {cause}); delete it to resume from an older checkpoint, or train anew "
                       "without --resume")


def _kwargs_note(path: Path, env_kwargs: Mapping[str, Any]) -> str:
    """`` (it was trained with device='xavier-nx'; this run has device='orin-nano')`` when the checkpoint's
    record shows other env kwargs than the run's; empty otherwise."""
    try:
        record = checkpoint_record(path)
    except ConfigError:
        return ""
    if not record:
        return ""
    saved, have = dict(record.get("env_kwargs") or {}), _jsonable(dict(env_kwargs))
    keys = sorted(k for k in set(saved) | set(have) if saved.get(k) != have.get(k))
    if not keys:
        return ""
    return (f" (it was trained with {', '.join(f'{k}={saved.get(k)!r}' for k in keys)}; this run has "
            f"{', '.join(f'{k}={have.get(k)!r}' for k in keys)})")


def _jsonable(value: Any) -> Any:
    """``value`` as JSON reads it back (tuples become lists, unknown objects their ``str``), for comparisons."""
    return json.loads(json.dumps(value, default=str))


def record_path(checkpoint: Path) -> Path:
    """``ckpt_<steps>_steps.meta.json`` beside the checkpoint ``ckpt_<steps>_steps<suffix>``."""
    return checkpoint.with_name(checkpoint.stem + RECORD_SUFFIX)


def checkpoint_record(checkpoint: Path) -> dict[str, Any] | None:
    """The record :meth:`TrainRun.save_checkpoint` wrote beside ``checkpoint`` (its env, hyper-parameters and
    overrides); ``None`` for a checkpoint without one (written before e4gym kept them).

    Raises:
        ConfigError: a record that is not readable JSON (names the file; corrupt or truncated).
    """
    path = record_path(Path(checkpoint))
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as exc:
        raise ConfigError(f"checkpoint record {path} is corrupt or truncated ({type(exc).__name__}: {exc}); delete "
                          f"it with its checkpoint {Path(checkpoint).name} to resume from an older one, or train "
                          "anew without --resume") from None
    return data


def hyperparameter_changes(saved: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, list[Any]]:
    """The hyper-parameters that differ between a checkpoint's record (``saved``) and the config (``new``):
    ``{key: [saved value, new value]}`` (``None`` for a key one side lacks), keys sorted."""
    a, b = _jsonable(dict(saved)), _jsonable(dict(new))
    return {k: [a.get(k), b.get(k)] for k in sorted(set(a) | set(b)) if a.get(k, _MISSING) != b.get(k, _MISSING)}


_MISSING = object()


def _AppendingCSV(path: Path) -> Any:
    """SB3's CSV writer continuing an existing ``progress.csv`` (its columns, then new rows after its last);
    SB3's own starts the file afresh. A file without a header is started afresh."""
    import csv

    from stable_baselines3.common.logger import CSVOutputFormat

    class AppendingCSV(CSVOutputFormat):
        def __init__(self, filename: str) -> None:
            file = Path(filename)
            header = ""
            if file.is_file():
                with open(file) as f:
                    header = f.readline()
            if not header.strip():
                super().__init__(filename)
                return
            self.file = open(file, "r+")  # SB3's writer keeps it open and closes it
            self.keys = next(csv.reader([header]))
            self.separator, self.quotechar = ",", '"'
            self.file.seek(0, 2)
            if self.file.tell() and not file.read_bytes().endswith(b"\n"):
                self.file.write("\n")  # a row cut short by an interruption stays one row

    return AppendingCSV(str(path))


def checkpoints(out: Path, spec: AlgoSpec) -> list[tuple[int, Path]]:
    """The checkpoints of ``spec``'s models in ``out/checkpoints``, ``(steps, path)`` by steps."""
    suffix = Path(spec.model_file).suffix
    found = [(int(m.group(1)), p) for p in (Path(out) / "checkpoints").glob("ckpt_*")
             if (m := _CKPT_RE.match(p.name)) and m.group(2) == suffix]
    return sorted(found)
