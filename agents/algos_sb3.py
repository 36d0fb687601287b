"""The stable-baselines3 algorithms of ``e4gym train`` (PPO, A2C, DQN, SAC, TD3), and the training loop of every
model with SB3's surface (:func:`learn_with_callbacks`, which zTT's learner uses too).

A run of :func:`learn_with_callbacks` writes into the run folder: ``tb/`` (SB3's own scalars, the episode figures
of :class:`~e4gym.envs.wrappers.EpisodeStats` under ``e4gym/...``, evaluation under ``eval/...`` and the
hyper-parameters), ``checkpoints/`` (every ``checkpoint_freq`` steps, with the replay buffer of off-policy
algorithms) and ``eval/`` (evaluation episodes on a separately seeded env; ``best_model.zip``).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from agents.algos import EVAL_SEED_OFFSET, AlgoSpec, TrainRun, get_algo, register_algo
from e4gym.errors import ConfigError

__all__ = ["SB3_ALGOS", "SB3ModelPolicy", "learn_with_callbacks", "sb3_algo"]

#: ``--algo`` name -> stable-baselines3 class name of the SB3 algorithms registered here.
SB3_ALGOS: dict[str, str] = {"ppo": "PPO", "a2c": "A2C", "dqn": "DQN", "sac": "SAC", "td3": "TD3"}


def _replay_buffer_path(checkpoint: Path) -> Path:
    """``ckpt_replay_buffer_<steps>_steps.pkl`` beside ``ckpt_<steps>_steps.zip``."""
    return checkpoint.with_name(checkpoint.stem.replace("ckpt_", "ckpt_replay_buffer_") + ".pkl")


def learn_with_callbacks(run: TrainRun) -> Any:
    """Train a model with SB3's surface (``learn(n, callback=...)``, ``set_logger``, ``save``) for ``run``.

    Builds the model on :meth:`TrainRun.env` (or loads :attr:`TrainRun.resume_from`, with the replay buffer
    saved beside it), logs to ``out/tb`` and learns up to ``run.total_steps`` env steps with the callbacks:
    the EpisodeStats figures, ``e4gym/episode_reward``, the hyper-parameters, SB3's ``EvalCallback`` on an
    env seeded ``seed + EVAL_SEED_OFFSET`` (``eval/``), checkpoints, and a progress bar. Returns the model.
    """
    from stable_baselines3.common.callbacks import CallbackList, EvalCallback
    from stable_baselines3.common.logger import HParam

    from e4gym.envs.callbacks import EpisodeStatsCallback

    env = run.env(train=True)
    eval_env = run.env(train=False)
    eval_env.reset(seed=run.seed + EVAL_SEED_OFFSET)
    if run.resume_from is not None:
        model = run.load_checkpoint(env)
        buffer = _replay_buffer_path(run.resume_from)
        if hasattr(model, "replay_buffer") and buffer.exists():
            model.load_replay_buffer(buffer)
    else:
        model = run.spec.build(env, run.hyperparameters, run.seed)
    model.set_logger(run.logger())
    callbacks: list[Any] = [
        EpisodeStatsCallback(),
        _EpisodeReward(),
        _HParamCallback(HParam, run.hparams()),
        EvalCallback(eval_env, n_eval_episodes=run.eval_episodes, eval_freq=run.eval_freq,
                     best_model_save_path=str(run.out / "eval"), log_path=str(run.out / "eval"), deterministic=True,
                     verbose=0),
        _Checkpoint(run),
    ]
    if run.progress:
        callbacks.append(_ProgressBar(run.total_steps))
    remaining = run.total_steps - model.num_timesteps
    if remaining > 0:
        model.learn(remaining, callback=CallbackList(callbacks), reset_num_timesteps=False, log_interval=1)
    env.close()
    eval_env.close()
    return model


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
        """Save ``checkpoints/ckpt_<steps>_steps.zip`` (and the replay buffer) every ``freq`` steps.

        Saved when a rollout starts, i.e. after the update of the previous one, so a checkpoint holds the
        networks and optimiser exactly as training continues from them (SB3's CheckpointCallback saves
        mid-rollout, before PPO's update of the steps it counts).
        """

        def _on_training_start(self) -> None:
            self.last = self.model.num_timesteps // freq

        def _save(self) -> None:
            path = run.save_checkpoint(self.model, self.model.num_timesteps)
            if getattr(self.model, "replay_buffer", None) is not None:
                self.model.save_replay_buffer(_replay_buffer_path(path))

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
                         power_mode=setup.power_mode, episode_frames=2)
        self._wrapper = self.spec.wrap_env(probe, self.meta.get("wrapper"))
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
            raise ConfigError(f"{self.name} is not bound to an env: call e4gym.policy.bind_policy(policy, env)")
        action, state = self._model.predict(observation, state=state, episode_start=episode_start,
                                            deterministic=deterministic)
        if isinstance(self._wrapper, gym.ActionWrapper):
            action = self._wrapper.action(action)
        return np.asarray(action, dtype=np.int64), state

    def reset(self) -> None:
        """Stateless (SB3 MLP policies keep no state between steps)."""


# ---------------------------------------------------------------------------------------------- registration


def sb3_algo(name: str, cls_name: str) -> AlgoSpec:
    """The :class:`AlgoSpec` of the stable-baselines3 class ``cls_name`` (``"PPO"``, ...) under ``name``: built
    with the config's ``policy`` (default ``MlpPolicy``) and hyper-parameters on the CPU, trained by
    :func:`learn_with_callbacks`, saved as SB3's ``.zip``, served by :class:`SB3ModelPolicy`."""

    def cls() -> Any:
        import stable_baselines3

        return getattr(stable_baselines3, cls_name)

    def build(env: gym.Env, hyperparameters: dict[str, Any], seed: int) -> Any:
        hp = dict(hyperparameters)
        policy = hp.pop("policy", "MlpPolicy")
        return cls()(policy, env, seed=seed, device="cpu", verbose=0, tensorboard_log=None, **hp)

    def load(path: Path, env: gym.Env | None) -> Any:
        return cls().load(path, env=env, device="cpu")

    return AlgoSpec(name=name, build=build, load=load, train=learn_with_callbacks, policy=SB3ModelPolicy,
                    summary=f"stable-baselines3 {cls_name}")


for _name, _cls_name in SB3_ALGOS.items():
    register_algo(sb3_algo(_name, _cls_name))
