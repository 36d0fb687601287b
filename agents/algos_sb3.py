"""The stable-baselines3 algorithms of ``e4gym train`` (PPO, A2C, DQN, SAC, TD3), and the training loop of every
model with SB3's surface (:func:`learn_with_callbacks`, which zTT's learner uses too).

A run of :func:`learn_with_callbacks` writes into the run folder: ``tb/`` (SB3's own scalars, the episode figures
of :class:`~e4gym.envs.wrappers.EpisodeStats` under ``e4gym/...``, evaluation under ``eval/...`` and the
hyper-parameters), ``checkpoints/`` (every ``checkpoint_freq`` steps, with the replay buffer of off-policy
algorithms) and ``eval/`` (evaluation episodes on a separately seeded env: ``evaluations.npz`` and the best model
so far, ``best_model.zip``). Every file is written atomically (temporary file, then ``os.replace``).

Resuming (:attr:`TrainRun.resume_from`) restores the model, its replay buffer and the evaluation history:
``eval/evaluations.npz`` keeps its earlier evaluations and gets the new ones appended, and ``best_model.zip`` is
replaced only by a model that scores better than the best evaluation so far. A checkpoint or replay buffer made
for another env (another observation or action space) raises :class:`~agents.algos.CheckpointMismatchError`,
one that cannot be read a ConfigError naming the file.
"""

from __future__ import annotations

import inspect
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from agents.algos import (
    EVAL_SEED_OFFSET,
    AlgoSpec,
    HyperparameterError,
    TrainRun,
    check_spaces,
    get_algo,
    own_env_kwargs,
    register_algo,
    save_model,
)
from e4gym.envs.wrappers import env_action
from e4gym.errors import ConfigError
from e4gym.io import atomic_path
from e4gym.policy import not_bound

__all__ = ["BEST_MODEL_FILE", "EVALUATIONS_FILE", "SB3_ALGOS", "SB3ModelPolicy", "learn_with_callbacks",
           "replay_buffer_path", "sb3_algo"]

#: ``--algo`` name -> stable-baselines3 class name of the SB3 algorithms registered here.
SB3_ALGOS: dict[str, str] = {"ppo": "PPO", "a2c": "A2C", "dqn": "DQN", "sac": "SAC", "td3": "TD3"}
#: The evaluation history in ``out/eval`` (SB3's EvalCallback's format: ``timesteps``, ``results``,
#: ``ep_lengths``, optionally ``successes``).
EVALUATIONS_FILE = "evaluations.npz"
#: The best model of the evaluations so far, in ``out/eval``.
BEST_MODEL_FILE = "best_model.zip"
#: Folder in ``out/eval`` where SB3 writes the evaluation history before it is moved into place.
_STAGING = ".staging"
#: Constructor arguments of an SB3 algorithm that are not hyper-parameters of the config.
_NOT_HYPERPARAMETERS = ("self", "env", "seed", "device", "verbose", "tensorboard_log", "_init_setup_model")
#: SB3 hyper-parameters that shape the networks: a checkpoint keeps them.
_SB3_FIXED = ("policy", "policy_kwargs")


def replay_buffer_path(checkpoint: Path) -> Path:
    """``ckpt_replay_buffer_<steps>_steps.pkl`` beside ``ckpt_<steps>_steps.zip``."""
    return checkpoint.with_name(checkpoint.stem.replace("ckpt_", "ckpt_replay_buffer_") + ".pkl")


def learn_with_callbacks(run: TrainRun) -> Any:
    """Train a model with SB3's surface (``learn(n, callback=...)``, ``set_logger``, ``save``) for ``run``.

    Builds the model on :meth:`TrainRun.env` (or loads :attr:`TrainRun.resume_from`, with the replay buffer
    saved beside it and the evaluation history of ``out/eval``), logs to ``out/tb`` and learns up to
    ``run.total_steps`` env steps with the callbacks: the EpisodeStats figures, ``e4gym/episode_reward``, the
    hyper-parameters, SB3's ``EvalCallback`` on an env seeded ``seed + EVAL_SEED_OFFSET`` (``eval/``),
    checkpoints, and a progress bar. Returns the model.

    Raises:
        ConfigError: a checkpoint, replay buffer or evaluation history that cannot be read (names the file), or
            a history of evaluations over another number of episodes than ``run.eval_episodes``.
        CheckpointMismatchError: a checkpoint or replay buffer made for another env.
    """
    from stable_baselines3.common.callbacks import CallbackList
    from stable_baselines3.common.logger import HParam

    from e4gym.envs.callbacks import EpisodeStatsCallback

    eval_dir = run.out / "eval"
    history = _read_evaluations(eval_dir / EVALUATIONS_FILE, run.eval_episodes) \
        if run.resume_from is not None else None
    env = run.env(train=True)
    try:
        if run.resume_from is not None:
            model = run.load_checkpoint(env)
            _load_replay_buffer(model, run.resume_from)
        else:
            model = run.spec.build(env, run.hyperparameters, run.seed)
    except BaseException:
        env.close()
        raise
    eval_env = run.env(train=False)
    eval_env.reset(seed=run.seed + EVAL_SEED_OFFSET)
    model.set_logger(run.logger())
    callbacks: list[Any] = [
        EpisodeStatsCallback(),
        _EpisodeReward(),
        _HParamCallback(HParam, run.hparams()),
        _evaluation(run, eval_env, history),
        _Checkpoint(run),
    ]
    if run.progress:
        callbacks.append(_ProgressBar(run.total_steps))
    remaining = run.total_steps - model.num_timesteps
    if remaining > 0:
        model.learn(remaining, callback=CallbackList(callbacks), reset_num_timesteps=False, log_interval=1)
    env.close()
    eval_env.close()
    staging = eval_dir / _STAGING
    if staging.is_dir() and not any(staging.iterdir()):
        staging.rmdir()
    return model


def _load_replay_buffer(model: Any, checkpoint: Path) -> None:
    """Restore the replay buffer saved beside ``checkpoint`` into ``model`` (nothing for a model without one, or
    when no buffer was saved).

    Raises:
        ConfigError: the buffer cannot be read (corrupt or truncated; names the file and the fix).
        CheckpointMismatchError: a buffer of another observation or action space than the model's.
    """
    buffer = replay_buffer_path(checkpoint)
    if getattr(model, "replay_buffer", None) is None or not buffer.exists():
        return
    try:
        model.load_replay_buffer(buffer)
    except Exception as exc:  # pickle, EOF, assertion and the learners' own errors: not a usable buffer
        cause = " ".join(str(exc).split())
        raise ConfigError(f"replay buffer {buffer} is corrupt or truncated ({type(exc).__name__}: {cause}); delete "
                          f"it to resume {checkpoint.name} with an empty buffer, delete both to resume from an "
                          "older checkpoint, or train anew without --resume") from None
    rb = model.replay_buffer
    if getattr(rb, "observation_space", None) is not None and getattr(rb, "action_space", None) is not None:
        check_spaces(buffer, rb.observation_space, rb.action_space, model, what="replay buffer")


def _read_evaluations(path: Path, episodes: int) -> dict[str, list] | None:
    """The evaluation history a resumed run continues (``None`` when there is none).

    Raises:
        ConfigError: an unreadable file (names it; corrupt or truncated), or evaluations over another number of
            episodes than ``episodes`` (names both).
    """
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            history = {k: np.asarray(data[k]).tolist() for k in data.files}
        n = len(history["timesteps"])
        if len(history["results"]) != n or len(history["ep_lengths"]) != n:
            raise ValueError(f"{n} timesteps but {len(history['results'])} results")
    except Exception as exc:  # zip, npy and key errors
        cause = " ".join(str(exc).split())
        raise ConfigError(f"evaluation history {path} is corrupt or truncated ({type(exc).__name__}: {cause}); "
                          "delete it to restart the history (and the best model's score), or train anew without "
                          "--resume") from None
    widths = sorted({len(r) for r in history["results"]})
    if widths and widths != [episodes]:
        raise ConfigError(f"evaluation history {path} holds evaluations of {widths[0]} episodes, this run evaluates "
                          f"{episodes}: resume with --eval-episodes {widths[0]}, or move the file away to start a "
                          "new history")
    return history


def _evaluation(run: TrainRun, eval_env: gym.Env, history: dict[str, list] | None) -> Any:
    """SB3's ``EvalCallback`` for ``run``: evaluations appended to ``history`` (a resumed run's) and written to
    ``eval/evaluations.npz``, the model saved as ``eval/best_model.zip`` when it beats the best mean reward so
    far (of ``history`` too, when its best model is there), both atomically."""
    from stable_baselines3.common.callbacks import BaseCallback, EvalCallback

    eval_dir = run.out / "eval"
    staged, published = eval_dir / _STAGING / EVALUATIONS_FILE, eval_dir / EVALUATIONS_FILE
    best = eval_dir / BEST_MODEL_FILE

    class SaveBest(BaseCallback):
        """Write the new best model (EvalCallback's own save is not atomic)."""

        def _on_step(self) -> bool:
            save_model(self.model, best)
            return True

    class Publish(BaseCallback):
        """Move the history EvalCallback wrote into place (EvalCallback's own ``np.savez`` is not atomic)."""

        def _on_step(self) -> bool:
            if staged.is_file():
                with open(staged, "rb") as f:
                    os.fsync(f.fileno())
                os.replace(staged, published)
            return True

    class EvalWithFigures(EvalCallback):
        """SB3's EvalCallback that also keeps each evaluation episode's figures (the ``Monitor``'s episode info:
        :data:`~e4gym.envs.wrappers.EPISODE_STAT_KEYS`), for the run's hook."""

        figures: list[dict[str, float]]

        def _log_success_callback(self, locals_: dict[str, Any], globals_: dict[str, Any]) -> None:
            super()._log_success_callback(locals_, globals_)
            episode = locals_["info"].get("episode") if locals_.get("done") else None
            if episode is not None:
                self.figures.append({k: float(v) for k, v in episode.items() if k not in ("r", "l", "t")
                                     and isinstance(v, (int, float, np.number)) and not isinstance(v, bool)})

    class Report(BaseCallback):
        """Give the evaluation to the run's hook (:meth:`TrainRun.evaluated`); ``False`` ends training."""

        def _on_step(self) -> bool:
            parent = self.parent
            results = parent.evaluations_results[-1] if parent.evaluations_results else [parent.last_mean_reward]
            lengths = parent.evaluations_length[-1] if parent.evaluations_length else [np.nan]
            figures, parent.figures = parent.figures, []
            means = {f"eval/{k}": float(np.mean([f[k] for f in figures if k in f]))
                     for k in dict.fromkeys(k for f in figures for k in f)}
            return run.evaluated(self.num_timesteps, {"eval/mean_reward": float(np.mean(results)),
                                                      "eval/std_reward": float(np.std(results)),
                                                      "eval/mean_ep_length": float(np.mean(lengths)), **means})

    after: BaseCallback = Publish()
    cls = EvalCallback
    if run.on_evaluation is not None:  # only a run with a hook differs from plain SB3 evaluation
        from stable_baselines3.common.callbacks import CallbackList

        after, cls = CallbackList([after, Report()]), EvalWithFigures
    callback = cls(eval_env, n_eval_episodes=run.eval_episodes, eval_freq=run.eval_freq,
                   best_model_save_path=None, log_path=str(staged.parent), deterministic=True, verbose=0,
                   callback_on_new_best=SaveBest(), callback_after_eval=after)
    if cls is EvalWithFigures:
        callback.figures = []
    if history:
        callback.evaluations_timesteps = [int(t) for t in history["timesteps"]]
        callback.evaluations_results = [list(r) for r in history["results"]]
        callback.evaluations_length = [list(n) for n in history["ep_lengths"]]
        if "successes" in history:
            callback.evaluations_successes = [list(x) for x in history["successes"]]
        if best.is_file() and callback.evaluations_results:
            callback.best_mean_reward = float(max(np.mean(r) for r in callback.evaluations_results))
    return callback


def _HParamCallback(hparam_cls: Any, hparams: dict[str, Any]) -> Any:
    from stable_baselines3.common.callbacks import BaseCallback

    class HParamCallback(BaseCallback):
        """Write the hyper-parameters to TensorBoard at the start of training."""

        def _on_training_start(self) -> None:
            metrics = {"rollout/ep_rew_mean": 0.0, "eval/mean_reward": 0.0}
            self.logger.record("hparams", hparam_cls(hparams, metrics), exclude=("stdout", "log", "json", "csv"))

        def _on_step(self) -> bool:
            return True

    return HParamCallback()


def _EpisodeReward() -> Any:
    from stable_baselines3.common.callbacks import BaseCallback

    class EpisodeReward(BaseCallback):
        """Log ``e4gym/episode_reward``: the mean return of the episodes that ended since the last dump (SB3's
        ``rollout/ep_rew_mean`` averages the last 100 episodes, which hides progress in short runs)."""

        def _on_step(self) -> bool:
            for info in self.locals.get("infos", ()):
                ep = info.get("episode")
                if ep is not None:
                    self.logger.record_mean("e4gym/episode_reward", float(ep["r"]))
            return True

    return EpisodeReward()


def _Checkpoint(run: TrainRun) -> Any:
    from stable_baselines3.common.callbacks import BaseCallback

    freq = run.checkpoint_freq

    class Checkpoint(BaseCallback):
        """Save ``checkpoints/ckpt_<steps>_steps.zip`` (after the replay buffer, both atomic) every ``freq`` steps.

        Saved when a rollout starts, i.e. after the update of the previous one, so a checkpoint holds the
        networks and optimiser exactly as training continues from them (SB3's CheckpointCallback saves
        mid-rollout, before PPO's update of the steps it counts).
        """

        def _on_training_start(self) -> None:
            self.last = self.model.num_timesteps // freq

        def _save(self) -> None:
            steps = self.model.num_timesteps
            if getattr(self.model, "replay_buffer", None) is not None:  # first: the model's file completes it
                with atomic_path(replay_buffer_path(run.checkpoint_path(steps))) as tmp:
                    self.model.save_replay_buffer(tmp)
            run.save_checkpoint(self.model, steps)

        def _on_rollout_start(self) -> None:
            if self.model.num_timesteps // freq > self.last:
                self.last = self.model.num_timesteps // freq
                self._save()

        def _on_training_end(self) -> None:
            if self.model.num_timesteps // freq > self.last:
                self._save()

        def _on_step(self) -> bool:
            return True

    return Checkpoint()


def _ProgressBar(total: int) -> Any:
    from stable_baselines3.common.callbacks import BaseCallback
    from tqdm import tqdm

    class ProgressBar(BaseCallback):
        """A tqdm bar over environment steps (SB3's own bar needs ``rich``)."""

        def _on_training_start(self) -> None:
            self.bar = tqdm(total=total, initial=self.model.num_timesteps, unit="step", desc="train",
                            file=sys.stderr, dynamic_ncols=True)

        def _on_step(self) -> bool:
            self.bar.update(self.model.num_timesteps - self.bar.n)
            return True

        def _on_training_end(self) -> None:
            self.bar.close()

    return ProgressBar()


# ---------------------------------------------------------------------------------------------- serving


class SB3ModelPolicy:
    """A saved model that acts through its training wrapper, as a harness policy (the :attr:`AlgoSpec.policy`
    of the SB3 algorithms): the model's action goes through the run's env wrapper back to the env's (e.g. a
    ``Discrete`` index to ``[exit, cpu, gpu]``).

    Args:
        path: the model file. name: display name. meta: the run's ``train.json`` (``algo``, ``env_id``,
            ``wrapper``).

    Raises:
        ConfigError: (at :meth:`bind`) an unreadable model, or one trained on observations of another shape.
    """

    clairvoyant = False

    def __init__(self, path: Path, name: str, meta: Mapping[str, Any]) -> None:
        self.path, self.name, self.meta = Path(path), name, dict(meta)
        self.spec = get_algo(str(self.meta.get("algo")))
        self.env_id = str(self.meta.get("env_id", "e4gym/EarlyExitDVFS-v1"))
        self.env_kwargs: dict[str, Any] = {}
        self._model: Any = None
        self._wrapper: gym.Env | None = None

    def bind(self, context: Any) -> None:
        """Load the model and build the env's action mapping for the bound env's scenario."""
        setup = context.setup
        probe = gym.make(self.env_id, device=setup.spec, model=setup.profile, fps=setup.fps,
                         deadline_ms=setup.deadline_s * 1e3, control_memory=setup.control_memory,
                         power_mode=setup.power_mode, episode_frames=2,
                         **own_env_kwargs(self.meta.get("env_kwargs") or {}))
        self._wrapper = self.spec.wrap_env(probe, self.meta.get("wrapper"))
        # Action masking maps with the measured cost model of the board the policy runs on (the harness's: a real
        # board's on a board), not the probe's emulated one.
        from e4gym.envs.masking import DeadlineFeasibleActions

        layer = self._wrapper
        while isinstance(layer, gym.Wrapper):
            if isinstance(layer, DeadlineFeasibleActions):
                layer.use_cost_model(context.cost_model)
            layer = layer.env
        try:
            self._model = self.spec.load(self.path, None)
        except Exception as exc:
            raise ConfigError(f"{self.path} is not a readable {self.spec.name} model ({type(exc).__name__}: {exc})") \
                from None
        if self._model.observation_space.shape != probe.observation_space.shape:
            raise ConfigError(f"{self.name} was trained on observations of shape "
                              f"{self._model.observation_space.shape}; this env has {probe.observation_space.shape}")

    def predict(self, observation: np.ndarray, state: Any = None, episode_start: np.ndarray | None = None,
                deterministic: bool = True) -> tuple[np.ndarray, Any]:
        """The env's action for ``observation`` (the model's action through the training wrapper)."""
        if self._model is None:
            raise not_bound(self.name)
        action, state = self._model.predict(observation, state=state, episode_start=episode_start,
                                            deterministic=deterministic)
        if self._wrapper is not None:
            action = env_action(self._wrapper, action)  # through every action wrapper of the training env
        return np.asarray(action, dtype=np.int64), state

    def reset(self) -> None:
        """Stateless (SB3 MLP policies keep no state between steps)."""


# ---------------------------------------------------------------------------------------------- registration


def _attach(model: Any, path: Path, env: gym.Env | None) -> Any:
    """``model`` (loaded from ``path`` without an env) set to continue on ``env``, after checking its spaces."""
    if env is not None:
        check_spaces(path, model.observation_space, model.action_space, env)
        model.set_env(env)
    return model


def sb3_algo(name: str, cls_name: str) -> AlgoSpec:
    """The :class:`AlgoSpec` of the stable-baselines3 class ``cls_name`` (``"PPO"``, ...) under ``name``: built
    with the config's ``policy`` (default ``MlpPolicy``) and hyper-parameters on the CPU, trained by
    :func:`learn_with_callbacks`, saved as SB3's ``.zip``, served by :class:`SB3ModelPolicy`. A resumed model
    takes new hyper-parameters (``--override-hyperparams``) as SB3's ``load(..., **kwargs)`` does (the learning
    rate, the rollout and batch sizes, ...), except ``policy`` and ``policy_kwargs``, which shape its networks."""

    def cls() -> Any:
        import stable_baselines3

        return getattr(stable_baselines3, cls_name)

    def build(env: gym.Env, hyperparameters: dict[str, Any], seed: int) -> Any:
        hp = dict(hyperparameters)
        policy = hp.pop("policy", "MlpPolicy")
        return cls()(policy, env, seed=seed, device="cpu", verbose=0, tensorboard_log=None, **hp)

    def load(path: Path, env: gym.Env | None) -> Any:
        return _attach(cls().load(path, env=None, device="cpu"), path, env)

    def load_override(path: Path, env: gym.Env | None, hyperparameters: dict[str, Any],
                      changed: frozenset[str]) -> Any:
        fixed = sorted(set(changed) & set(_SB3_FIXED))
        if fixed:
            raise HyperparameterError(f"--override-hyperparams cannot change {fixed} of checkpoint {path}: they "
                                      "shape its networks; resume with the checkpoint's values, or train anew into "
                                      "another --out")
        params = inspect.signature(cls().__init__).parameters
        unknown = sorted(k for k in changed if k not in params or k in _NOT_HYPERPARAMETERS)
        if unknown:
            raise HyperparameterError(f"--override-hyperparams: {cls_name} takes no hyper-parameter {unknown}")
        kw = {k: hyperparameters[k] if k in hyperparameters else params[k].default for k in sorted(changed)}
        return _attach(cls().load(path, env=None, device="cpu", **kw), path, env)

    return AlgoSpec(name=name, build=build, load=load, train=learn_with_callbacks, policy=SB3ModelPolicy,
                    load_override=load_override, summary=f"stable-baselines3 {cls_name}")


for _name, _cls_name in SB3_ALGOS.items():
    register_algo(sb3_algo(_name, _cls_name))
