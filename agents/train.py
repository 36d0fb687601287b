"""``e4gym train``: train any registered algorithm (the SB3 ones, zTT, Ring-DVFS, ...) on an e4gym env, with
TensorBoard.

The algorithms are :class:`agents.algos.AlgoSpec` entries of the registry in :mod:`agents.algos` (how each
builds, trains, saves and loads a model, the wrapper its env needs and the policy that serves it); this module
looks ``--algo`` up there and never branches on its name. Hyper-parameters come from
``configs/agents/<algo>.yaml`` (or ``--config FILE``), keyed by env id as in rl-baselines3-zoo::

    e4gym/EarlyExitDVFS-v1:
      n_timesteps: 20000          # default of --steps
      policy: MlpPolicy
      env_kwargs: {device: xavier-nx, episode_frames: 500}   # --env-kwargs k=v override these
      wrapper: discrete           # optional: discrete (with `levels: K` per level component) or continuous
      learning_rate: 0.0003       # everything else goes to the algorithm's constructor
      n_steps: 512

A run writes into ``--out DIR``: ``tb/`` (TensorBoard: the algorithm's own scalars, the episode figures of
:class:`~e4gym.envs.wrappers.EpisodeStats` under ``e4gym/...``, evaluation under ``eval/...`` and the
hyper-parameters), ``checkpoints/`` (every ``--checkpoint-freq`` steps, with the replay buffer of off-policy
algorithms), ``eval/`` (evaluation episodes on a separately seeded env; ``best_model.zip``), and at the end
the model (the algorithm's ``model_file``: ``model.zip``, ``model.npz`` for Ring-DVFS) and ``train.json`` (what
was trained, on which env, with which wrapper and hyper-parameters, for how many steps), which
:class:`TrainedPolicy` and ``e4gym bench`` load. Every checkpoint file (the model, the replay buffer ``.pkl``,
the record ``ckpt_<steps>_steps.meta.json`` of its env and hyper-parameters) is written atomically (a temporary
file, then ``os.replace``), the model last, so a listed checkpoint is complete.

The env kwargs are checked (the env is built once) before anything is written: a bad argument is one line
naming it, and no ``--out`` folder is left behind.

``--resume`` continues from the newest checkpoint: the step counter, the network and optimiser state and the
replay buffer are restored, and the history continues: rows are appended to ``tb/progress.csv`` and
``eval/evaluations.npz``, and ``eval/best_model.zip`` is replaced only by a model that evaluates better than the
best evaluation so far. A resume is refused (one line, before training) when

- ``--steps`` is below the steps the checkpoint has done (both named);
- the config's hyper-parameters differ from the ones the checkpoint was trained with (its record): the keys are
  named; ``--override-hyperparams`` applies the config's to the resumed model (through the algorithm's
  :attr:`~agents.algos.AlgoSpec.load_override`, e.g. a new learning rate), and ``train.json`` records them and
  when they changed (``hyperparameter_overrides``). Without the flag the checkpoint's are kept, so what
  ``train.json`` records is what trained the model;
- the checkpoint (or its replay buffer, or the evaluation history) cannot be read: corrupt or truncated, named
  with the fix (delete it to resume from an older checkpoint, or train anew);
- the checkpoint was made for another env, e.g. after ``device`` changed in the env kwargs, which changes the
  action space (:class:`~agents.algos.CheckpointMismatchError`).

A checkpoint written before e4gym kept records is resumed with the config's hyper-parameters taken as its own.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

import e4gym  # noqa: F401  (registers the envs)
from agents.algos import (
    EVAL_SEED_OFFSET,
    RUN_KEYS,
    STREAMS_FILE,
    TRAIN_SEED_OFFSET,
    AlgoSpec,
    StreamLog,
    TrainRun,
    algo_names,
    checkpoint_record,
    checkpoints,
    get_algo,
    hyperparameter_changes,
    make_env,
    own_env_kwargs,
    wrap_env,
)
from e4gym._yaml import load_yaml
from e4gym.errors import ConfigError, E4gymError, HardwareError, UnknownNameError
from e4gym.io import write_json
from e4gym.paths import config_dir
from e4gym.policy import not_bound

# ---------------------------------------------------------------------------------------------- configs


def load_agent_config(algo: str, env_id: str, path: str | Path | None = None) -> dict[str, Any]:
    """The hyper-parameter section for ``env_id`` in ``configs/agents/<algo>.yaml`` (or ``path``).

    Raises:
        UnknownNameError: an unknown algorithm, or no section for ``env_id`` (lists the sections there are).
        ConfigError: the file is missing or is not a mapping of env ids to mappings.
    """
    get_algo(algo)
    file = Path(path) if path is not None else config_dir() / "agents" / f"{algo}.yaml"
    if not file.is_file():
        raise ConfigError(f"agent config {file} does not exist (give --config FILE or add configs/agents/{algo}.yaml)")
    data = load_yaml(file)
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise ConfigError(f"{file}: expected a mapping of env ids to hyper-parameter mappings")
    if env_id not in data:
        raise UnknownNameError(f"{file} has no section for {env_id!r}; it has {sorted(data)}")
    return dict(data[env_id])


def parse_env_kwargs(items: Sequence[str]) -> dict[str, Any]:
    """``["k=v", ...]`` into a dict; values are read as YAML scalars (``30`` → 30, ``true`` → True).

    Raises:
        ConfigError: an item without ``=``.
    """
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--env-kwargs takes key=value items, got {item!r}")
        out[key] = yaml.safe_load(value)
    return out


# ---------------------------------------------------------------------------------------------- training


def check_env(spec: AlgoSpec, env_id: str, env_kwargs: Mapping[str, Any], wrapper: Any = None) -> None:
    """Build the run's env once, with the algorithm's wrapper, and close it: a bad env argument or wrapper fails
    here, before anything is written.

    Raises:
        ConfigError: the env cannot be built with ``env_kwargs`` (one line naming the bad argument or value), or
            an unknown wrapper.
    """
    try:
        env = gym.make(env_id, **dict(env_kwargs))
    except HardwareError:
        raise  # a board that cannot be driven: its own message says what to do
    except (E4gymError, TypeError, ValueError, gym.error.Error) as exc:
        # gymnasium re-raises a constructor's TypeError with its kwargs appended; the env's own error is clearer
        cause = exc.__context__ if isinstance(exc.__context__, E4gymError) else exc
        msg = " ".join(str(cause).split())
        raise ConfigError(f"bad env kwargs for {env_id}: {msg}; fix --env-kwargs (or the config's env_kwargs)") \
            from None
    try:
        spec.wrap_env(env, wrapper)
    finally:
        env.close()


def _resume_point(spec: AlgoSpec, out: Path, total: int, hyperparameters: Mapping[str, Any],
                  override_hyperparams: bool) -> tuple[Path, frozenset[str], tuple[dict[str, Any], ...], dict]:
    """Where ``--resume`` continues: the newest checkpoint, the hyper-parameters to change on it (keys), the
    run's history of such changes (this one's appended) and the checkpoint's record (empty without one).

    Raises:
        ConfigError: no checkpoint; ``total`` below its steps; or the config's ``hyperparameters`` differ from
            its record without ``override_hyperparams``; an unreadable record.
    """
    found = checkpoints(out, spec)
    if not found:
        raise ConfigError(f"--resume: no checkpoint in {out / 'checkpoints'} "
                          f"(ckpt_<steps>_steps{Path(spec.model_file).suffix})")
    done, path = found[-1]
    if total < done:
        raise ConfigError(f"--resume: --steps {total} is below the {done} steps {path.name} has done; give --steps "
                          f"{done} or more")
    record = checkpoint_record(path)
    if record is None:  # written before checkpoints had records: the config's are taken as the checkpoint's
        return path, frozenset(), (), {}
    history = tuple(record.get("overrides") or ())
    changes = hyperparameter_changes(record.get("hyperparameters") or {}, hyperparameters)
    if not changes:
        return path, frozenset(), history, record
    if not override_hyperparams:
        listed = ", ".join(f"{k} {old!r} -> {new!r}" for k, (old, new) in changes.items())
        raise ConfigError(f"--resume: the config's hyper-parameters differ from those {path.name} was trained with "
                          f"({listed}); resume with the checkpoint's values, or pass --override-hyperparams to "
                          "apply the config's to the resumed model")
    return path, frozenset(changes), (*history, {"steps": done, "changed": changes}), record


def train(
    algo: str,
    env_id: str = "e4gym/EarlyExitDVFS-v1",
    out: str | Path = "runs/train",
    env_kwargs: Mapping[str, Any] | None = None,
    config: str | Path | None = None,
    steps: int | None = None,
    seed: int = 0,
    resume: bool = False,
    eval_freq: int | None = None,
    eval_episodes: int | None = None,
    checkpoint_freq: int | None = None,
    progress: bool = True,
    override_hyperparams: bool = False,
    on_evaluation: Callable[[int, dict[str, float]], bool] | None = None,
) -> Path:
    """Train ``algo`` on ``env_id`` and write the run into ``out`` (see the module docstring).

    Args:
        algo: a registered algorithm (:func:`agents.algos.algo_names`). env_id: an e4gym env id. env_kwargs: env
            arguments (over the config's). config: agent config file (default ``configs/agents/<algo>.yaml``).
            steps: environment steps in total (default the config's ``n_timesteps``). seed: training seed (the
            evaluation env uses ``seed + EVAL_SEED_OFFSET``). resume: continue from the newest checkpoint in
            ``out`` (see the module docstring).
        eval_freq / eval_episodes / checkpoint_freq: steps between evaluations, episodes per evaluation,
            steps between checkpoints (defaults from the config, else ``steps // 5``, 2 (a resumed run: its
            checkpoint's) and ``steps // 4``).
        progress: show a progress bar (stderr).
        override_hyperparams: with ``resume``, apply the config's hyper-parameters to the resumed model where
            they differ from the checkpoint's (without it such a difference is refused).
        on_evaluation: a hook called after every periodic evaluation (:attr:`agents.algos.TrainRun.on_evaluation`:
            ``(steps, metrics) -> bool``; ``False`` ends training there and the run is written as usual, with the
            steps it did). ``e4gym tune`` reports to Ray Tune through it; ``None``: training is unchanged.

    Returns:
        The path of the final model (``out/`` and the algorithm's ``model_file``).

    Raises:
        UnknownNameError / ConfigError: a bad algorithm, env id, env argument (before ``out`` is created), config
            or argument; ``out`` already holds a finished run (without ``resume``); ``--resume`` without a
            checkpoint, to fewer steps than it has done, with other hyper-parameters (without
            ``override_hyperparams``), or from a corrupt checkpoint or replay buffer.
        CheckpointMismatchError: (a ConfigError) ``--resume`` from a checkpoint made for another env.
    """
    section = load_agent_config(algo, env_id, config)
    spec = get_algo(algo)
    kw = {**dict(section.get("env_kwargs") or {}), **dict(env_kwargs or {})}
    total = int(steps if steps is not None else section.get("n_timesteps", 20_000))
    if total < 1:
        raise ConfigError(f"steps must be >= 1, got {total}")
    if override_hyperparams and not resume:
        raise ConfigError("--override-hyperparams changes the hyper-parameters of a resumed run: use it with --resume")
    check_env(spec, env_id, kw, section.get("wrapper"))
    out = Path(out)
    final = out / spec.model_file
    if final.exists() and not resume:
        raise ConfigError(f"{out} already holds a trained model ({final.name}); use another --out, or --resume")
    hyperparameters = {k: v for k, v in section.items() if k not in RUN_KEYS}
    resume_from, override, overrides, record = None, frozenset[str](), (), {}
    if resume:
        resume_from, override, overrides, record = _resume_point(spec, out, total, hyperparameters,
                                                                 override_hyperparams)
    out.mkdir(parents=True, exist_ok=True)
    run = TrainRun(spec=spec, out=out, env_id=env_id, env_kwargs=kw, section=section, total_steps=total, seed=seed,
                   eval_freq=int(eval_freq or section.get("eval_freq") or max(total // 5, 1)),
                   eval_episodes=int(eval_episodes or section.get("eval_episodes") or record.get("eval_episodes")
                                     or 2),
                   checkpoint_freq=int(checkpoint_freq or section.get("checkpoint_freq") or max(total // 4, 1)),
                   progress=progress, resume_from=resume_from, override=override, overrides=overrides,
                   on_evaluation=on_evaluation)
    model = spec.train(run)
    spec.save(model, final)
    done = getattr(model, "num_timesteps", None)
    meta = {"algo": algo, "env_id": env_id, "env_kwargs": kw, "wrapper": section.get("wrapper"), "seed": seed,
            "steps": int(done) if isinstance(done, (int, np.integer)) else total,
            "hyperparameters": {k: v for k, v in section.items() if k not in ("env_kwargs",)},
            "hyperparameter_overrides": list(overrides)}
    write_json(out / "train.json", meta)
    return final


# ---------------------------------------------------------------------------------------------- policy


class TrainedPolicy:
    """A model trained by ``e4gym train``, as a policy for the harness (entry point ``trained``).

    Args:
        path: the run folder (with ``train.json``) or its model file. ``None``: train one first, at
            :meth:`bind`, for the scenario of the env it is bound to (``algo``, ``env_id``, ``steps``, ``seed``),
            into a cache folder (``$E4GYM_CACHE_DIR/trained``, default ``~/.cache/e4gym/trained``) keyed by all
            of them, so each scenario is trained once and later benchmarks reuse it.
        algo / env_id / steps / seed: what to train when ``path`` is ``None`` (steps default: the config's).
        env_kwargs: env arguments over the agent config's ``env_kwargs`` when training (e.g. ``{"concurrent":
            false}`` for DVFO without its concurrent decisions).
        name: display name (default ``trained-<algo>``).
        train_seeds: how many models to train per scenario (``path=None`` only). With ``n > 1`` the benchmark
            episode of seed ``k`` is run by the model trained with seed ``seed + k mod n`` (the harness calls
            :meth:`for_task_seed`), so the interval over a benchmark's seeds includes the spread of training, not
            only that of the evaluation streams. Each model is cached on its own.

    The model is served by its algorithm's policy (:attr:`agents.algos.AlgoSpec.policy`): for SB3 models the
    config's action wrapper maps the model's action to the env's (e.g. a ``Discrete`` index back to
    ``[exit, cpu, gpu]``); zTT and Ring-DVFS models have their own policies
    (:class:`baselines.ztt.ZTTPolicy`, :class:`baselines.ring_dvfs.RingDVFSPolicy`). ``env_id`` and
    ``env_kwargs`` are the training env's own arguments, those that are not scenario fields (the harness builds the
    env with them, e.g. the edge-cloud env's ``concurrent``; the scenario's device, model, fps, deadline and the
    other :class:`~e4gym.envs.core.EnvConfig` fields win).

    Raises:
        ConfigError: no ``train.json`` beside the model, or a model that cannot be read.
    """

    clairvoyant = False

    def __init__(self, path: str | Path | None = None, algo: str | None = None,
                 env_id: str = "e4gym/EarlyExitDVFS-v1", steps: int | None = None, seed: int = 0,
                 name: str | None = None, env_kwargs: dict[str, Any] | None = None, train_seeds: int = 1) -> None:
        if env_kwargs is not None and not isinstance(env_kwargs, dict):
            raise ConfigError(f"TrainedPolicy env_kwargs must be a mapping of env arguments, got {env_kwargs!r}")
        if isinstance(train_seeds, bool) or not isinstance(train_seeds, int) or train_seeds < 1:
            raise ConfigError(f"TrainedPolicy train_seeds must be an integer >= 1 (models per scenario), got "
                              f"{train_seeds!r}")
        if train_seeds > 1 and path is not None:
            raise ConfigError("TrainedPolicy train_seeds applies when it trains (path=None), not to a given model")
        self.train_seeds, self._base_seed = train_seeds, int(seed)
        if path is None:
            if algo not in algo_names():
                raise ConfigError(f"TrainedPolicy needs a path, or an algo to train (one of {list(algo_names())}), "
                                  f"got algo={algo!r}")
            section = load_agent_config(algo, env_id)  # fail now on a missing config section
            self.algo, self.env_id, self.meta = algo, env_id, {}
            self._extra_env = dict(env_kwargs or {})
            self._to_train = {"steps": steps, "seed": seed, **({"env_kwargs": self._extra_env} if env_kwargs else {})}
            self.name = name or algo
            self.env_kwargs: dict[str, Any] = own_env_kwargs({**dict(section.get("env_kwargs") or {}),
                                                                **self._extra_env})
            self._inner: Any = None
            return
        if env_kwargs:
            raise ConfigError("TrainedPolicy: env_kwargs are for training (path=None); a trained run keeps its own")
        self._to_train = None
        self._load_meta(Path(path), name)

    def _load_meta(self, p: Path, name: str | None) -> None:
        run = p if p.is_dir() else p.parent
        meta_file = run / "train.json"
        if not meta_file.is_file():
            raise ConfigError(f"{run} has no train.json: give the folder `e4gym train --out` wrote")
        try:
            self.meta = json.loads(meta_file.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{meta_file} is not readable JSON ({exc})") from None
        self.algo = str(self.meta.get("algo"))
        if self.algo not in algo_names():
            raise ConfigError(f"{meta_file}: unknown algo {self.algo!r}; registered: {list(algo_names())}")
        self.model_path = p if p.is_file() else run / get_algo(self.algo).model_file
        if not self.model_path.is_file():
            raise ConfigError(f"{self.model_path} does not exist: the run in {run} did not finish")
        self.name = name or getattr(self, "name", None) or f"trained-{self.algo}"
        self.env_id = str(self.meta.get("env_id", "e4gym/EarlyExitDVFS-v1"))
        self.env_kwargs = own_env_kwargs(dict(self.meta.get("env_kwargs") or {}))
        self._inner = None

    def _train_for(self, setup: Any) -> Path:
        """Train (or reuse) a model for ``setup``'s scenario in the cache; returns the run folder."""
        import fcntl
        import hashlib
        import os

        assert self._to_train is not None and self.algo is not None
        section = load_agent_config(self.algo, self.env_id)
        scenario = getattr(setup, "scenario_kwargs", None)
        if callable(scenario):  # a serving scenario (the batching env): its own arguments
            kw = {**dict(section.get("env_kwargs") or {}), **self._extra_env, **scenario()}
            model = "+".join(setup.models)
        else:
            kw = {**dict(section.get("env_kwargs") or {}), **self._extra_env, "device": setup.spec.name,
                  "model": setup.profile.name,
                  "fps": setup.fps, "deadline_ms": setup.deadline_s * 1e3, "power_mode": setup.power_mode,
                  "control_memory": setup.control_memory}
            model = setup.profile.name
        key = json.dumps({"algo": self.algo, "env_id": self.env_id, "env_kwargs": kw, "section": section,
                          **self._to_train}, sort_keys=True, default=str)
        digest = hashlib.sha256(key.encode()).hexdigest()[:16]
        root = Path(os.environ.get("E4GYM_CACHE_DIR", Path.home() / ".cache" / "e4gym")) / "trained"
        run = root / f"{self.algo}-{setup.spec.name}-{model}-{digest}"
        (root / ".locks").mkdir(parents=True, exist_ok=True)
        with open(root / ".locks" / f"{run.name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # parallel bench workers train a scenario once
            if not (run / "train.json").is_file():
                train(self.algo, self.env_id, run, kw, steps=self._to_train["steps"], seed=self._to_train["seed"],
                      resume=bool(list((run / "checkpoints").glob("ckpt_*"))) if run.exists() else False,
                      progress=False)
        return run

    def for_task_seed(self, seed: int) -> None:
        """Called by the harness with the benchmark episode's seed before :meth:`bind`: with ``train_seeds > 1``,
        pick the model trained with seed ``seed + task seed mod train_seeds``."""
        if self._to_train is not None and self.train_seeds > 1:
            self._to_train["seed"] = self._base_seed + int(seed) % self.train_seeds

    def training_streams(self) -> set[tuple]:
        """The stream keys the agent trained and was evaluated on (the run's ``streams.jsonl``; empty for a run
        written before it existed). The harness refuses to score the agent on one of them."""
        run = getattr(self, "model_path", None)
        log = None if run is None else Path(run).parent / STREAMS_FILE
        if log is None or not log.is_file():
            return set()
        keys = set()
        for line in log.read_text().splitlines():
            try:
                keys.add(tuple(json.loads(line)))
            except (json.JSONDecodeError, TypeError):
                raise ConfigError(f"{log} is corrupt (a line is not a JSON stream key): delete it or retrain") \
                    from None
        return keys

    def bind(self, context: Any) -> None:
        """Load the model (training it first when no path was given) with its algorithm's policy and bind it."""
        if self._to_train is not None and self._inner is None:
            self._load_meta(self._train_for(context.setup), self.name)
        self._inner = get_algo(self.algo).policy(self.model_path, self.name, self.meta)
        self._inner.bind(context)

    def predict(self, observation: np.ndarray, state: Any = None, episode_start: np.ndarray | None = None,
                deterministic: bool = True) -> tuple[np.ndarray, Any]:
        """The env's action for ``observation`` (the algorithm's policy's).

        Raises:
            ConfigError: the policy was not bound to an env.
        """
        if self._inner is None:
            raise not_bound(self.name)
        return self._inner.predict(observation, state, episode_start, deterministic)

    def reset(self) -> None:
        """Forget the episode (delegates to the algorithm's policy)."""
        if self._inner is not None:
            self._inner.reset()


# ---------------------------------------------------------------------------------------------- CLI


def cmd_train(args: argparse.Namespace) -> int:
    """The ``train`` verb."""
    path = train(args.algo, args.env, args.out, parse_env_kwargs(args.env_kwargs or []), args.config, args.steps,
                 args.seed, args.resume, args.eval_freq, args.eval_episodes, args.checkpoint_freq,
                 progress=not args.quiet, override_hyperparams=args.override_hyperparams)
    print(f"trained {args.algo} on {args.env}: {path} (TensorBoard: tensorboard --logdir {Path(args.out) / 'tb'})")
    return 0


def add_train_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``train`` verb."""
    p = sub.add_parser("train", help="train an SB3 agent, zTT, Ring-DVFS or any registered algorithm on an e4gym "
                       "env (TensorBoard)")
    p.add_argument("--algo", required=True, help="a registered training algorithm, e.g. ppo (an unknown "
                   "name lists them all)")
    p.add_argument("--env", default="e4gym/EarlyExitDVFS-v1", help="env id (default: the frame env)")
    p.add_argument("--env-kwargs", nargs="*", metavar="K=V", help="env arguments, e.g. device=xavier-nx fps=30")
    p.add_argument("--config", default=None, help="agent config (default: configs/agents/ALGO.yaml)")
    p.add_argument("--out", required=True, help="run folder (TensorBoard, checkpoints, model)")
    p.add_argument("--steps", type=int, default=None, help="environment steps (default: the config's n_timesteps)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out (its "
                   "hyper-parameters are kept; a config that differs is refused)")
    p.add_argument("--override-hyperparams", action="store_true", help="with --resume: apply the config's "
                   "hyper-parameters (e.g. learning_rate) to the resumed model and record them in train.json")
    p.add_argument("--eval-freq", type=int, default=None, help="steps between evaluations")
    p.add_argument("--eval-episodes", type=int, default=None)
    p.add_argument("--checkpoint-freq", type=int, default=None, help="steps between checkpoints")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_train)


__all__ = ["EVAL_SEED_OFFSET", "STREAMS_FILE", "TRAIN_SEED_OFFSET", "StreamLog", "TrainedPolicy", "add_train_parser",
           "check_env", "load_agent_config", "make_env", "parse_env_kwargs", "train", "wrap_env"]
