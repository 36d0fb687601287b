"""PPO-Lagrangian (issue 21): PPO that learns one Lagrange multiplier per constraint of
:class:`e4gym.envs.Constraints`, trained with ``e4gym train --algo ppo-lagrangian``.

The constrained problem is ``max E[Σ r]`` subject to ``mean cost_i <= d_i`` for each cost key of
:data:`e4gym.envs.COST_KEYS` (``cost_miss``: the deadline-miss rate; ``cost_accuracy``: the accuracy lost against
the last exit; bounds ``d_i`` from :class:`~e4gym.envs.Constraints`, default 1 % and 1 point). Its Lagrangian
relaxation ``max_π min_{λ>=0} E[Σ r] − Σ_i λ_i (J_i − d_i)`` is solved by alternating:

- **the multipliers**, once per rollout, from the rollout's mean cost *per frame* ``J_i`` (costs summed over
  the rollout's steps and envs, divided by the frames that finished: ``info["frame_done"]`` in the block env,
  every step elsewhere) with the PID-Lagrangian rule of Stooke, Achiam and Abbeel ("Responsive Safety in
  Reinforcement Learning by PID Lagrangian Methods", ICML 2020, Algorithm 2)::

      e = J − d;  I ← max(0, I + e);  ∂ = max(0, J − J_prev);  λ = min(λ_max, max(0, K_P·e + K_I·I + K_D·∂))

  (the integral term ``K_I·I`` is kept as one number, in λ's units: :func:`pid_update`).

  With ``K_P = K_D = 0`` (the defaults) this is the plain projected gradient ascent of Ray, Achiam and Amodei
  ("Benchmarking Safe Exploration in Deep Reinforcement Learning", 2019): ``λ ← max(0, λ + K_I·(J − d))``, so
  ``lambda_lr`` (= K_I) is the multipliers' learning rate;
- **the policy**, by PPO on the Lagrangian reward ``(r − Σ_i λ_i c_i) / (1 + Σ_i λ_i)`` of every step
  (``c_i = info[cost key]``), with the multipliers just updated. A single value head learns the return of that
  combined reward and PPO's advantage is the combined one (simpler than separate reward and cost critics, and
  exact for a fixed λ; the λ change between rollouts is what the critic has to track). The division by
  ``1 + Σλ`` (Stooke et al., section 4; ``rescale_penalty``) keeps the value targets' scale bounded as λ grows;
  PPO normalises advantages anyway, so the policy gradient's direction is unchanged by it.

Why this design: the multiplier update needs the whole rollout (its mean cost) and the shaped reward needs the
updated multiplier, so :meth:`PPOLagrangian.collect_rollouts` (a public method of SB3's on-policy algorithms)
runs SB3's own collection unchanged, recording each step's costs and raw rewards on the way (a proxy around the
callback it is given, reading the step's ``infos`` as every SB3 callback does), then updates λ, rewrites the
buffer's rewards and recomputes returns and advantages with SB3's ``compute_returns_and_advantage`` (the same
call, on the same last values, SB3 makes at the end of the rollout). PPO's ``train`` is untouched and no private
SB3 method is overridden. Reward shaping inside an env wrapper would have to read λ from the model and would
shape with the previous rollout's λ; a callback that edits SB3's local ``rewards`` array relies on SB3's
internals.

Observation and reward normalisation (``normalize: true`` or ``{norm_obs, norm_reward, clip_obs,
clip_reward}``): a :class:`RunningNormalization` VecEnv wrapper (SB3's ``VecNormalize`` arithmetic), whose running
statistics belong to the model: they are saved in ``model.zip`` and used frozen by :meth:`PPOLagrangian.predict`,
which always takes raw observations (the harness, SB3's evaluation callback). It is not a ``VecNormalize``
subclass, so SB3's evaluation callback does not try to synchronise an eval env that has none.

Action masking (the config's ``wrapper: feasible``, :func:`wrap_feasible`): the frame env under
:class:`e4gym.envs.DeadlineFeasibleActions`, which raises clock settings that cannot meet the deadline (by the
measured cost model) to the cheapest that can, so that exploring the later exits does not build a queue; the
harness serves the model through the same wrapper (it is recorded in ``train.json``).

The multipliers, their PID state, the constraints and the normalisation statistics are attributes of the model,
saved in ``model.zip`` and every checkpoint, so ``--resume`` continues with the same λ. Each rollout logs
``lagrangian/lambda_<cost key>``, ``lagrangian/mean_<cost key>`` (the rollout's per-frame mean cost),
``lagrangian/bound_<cost key>`` and ``lagrangian/frames`` through SB3's logger (the run's TensorBoard and
``progress.csv``).
"""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from agents.algos import AlgoSpec, HyperparameterError, check_spaces, register_algo, wrap_env
from agents.algos_sb3 import SB3ModelPolicy, learn_with_callbacks
from e4gym.envs.core import COST_KEYS, FRAME_DONE, Constraints
from e4gym.errors import ConfigError

__all__ = ["DEFAULT_LAMBDA_LR", "NormalizationStats", "PPOLagrangian", "RunningNormalization", "initial_state",
           "pid_update", "rollout_mean_costs", "wrap_feasible"]

#: Default learning rate of the multipliers (K_I): λ rises by 0.5 per rollout at a constraint violated by 1
#: (every frame missed) — in units of the (normalised) reward per unit of cost. ASSUMPTION (docs/assumptions.md).
DEFAULT_LAMBDA_LR = 0.5
#: Hyper-parameters of the model that shape its networks or its normalisation: a checkpoint keeps them.
_FIXED = ("policy", "policy_kwargs", "normalize")
#: Constructor arguments that are not hyper-parameters of the config.
_NOT_HYPERPARAMETERS = ("self", "policy", "env", "seed", "device", "verbose", "tensorboard_log",
                        "_init_setup_model", "kwargs")
#: Keys of ``normalize`` (SB3 VecNormalize's meaning and defaults).
_NORMALIZE_DEFAULTS = {"norm_obs": True, "norm_reward": True, "clip_obs": 10.0, "clip_reward": 10.0}


# ---------------------------------------------------------------------------------------------- the multipliers


def initial_state(keys: tuple[str, ...], lambda_init: float = 0.0) -> dict[str, dict]:
    """The PID state of each cost key before any rollout: ``{"lambda": λ_0, "integral": λ_0, "prev": None}``
    (``integral`` is the integral term ``K_I·I``, in λ's units, so the gradient form starts from ``λ_0``)."""
    lam = float(lambda_init)
    return {k: {"lambda": lam, "integral": lam, "prev": None} for k in keys}


def pid_update(state: Mapping[str, Mapping[str, Any]], mean_costs: Mapping[str, float], limits: Mapping[str, float],
               ki: float, kp: float = 0.0, kd: float = 0.0, lambda_max: float | None = None) -> dict[str, dict]:
    """One PID-Lagrangian update (Stooke et al. 2020, Algorithm 2) of every multiplier in ``state``.

    For each key: ``e = J − d``, integral term ``T ← max(0, T + K_I·e)`` (``T = K_I·I`` of the paper, kept in λ's
    units so a new ``K_I`` on resume continues from the current λ), ``∂ = max(0, J − J_prev)`` (0 on the first
    update), ``λ = clip(K_P·e + T + K_D·∂, 0, λ_max)``. With ``kp = kd = 0``: ``λ ← max(0, λ + K_I·e)`` (Ray et
    al. 2019). With ``lambda_max`` the integral term is held at most there (anti-windup). A key without a cost in
    ``mean_costs`` (no frame finished) keeps its state.

    Args:
        state: ``{key: {"lambda", "integral", "prev"}}`` (:func:`initial_state`); not modified.
        mean_costs: ``J``, the rollout's mean cost per frame of each key. limits: ``d``, each key's bound.
        ki / kp / kd: the gains (λ per unit of cost above the bound; per rollout for ``ki``). lambda_max: cap of λ.

    Returns:
        The new state (same keys).
    """
    out: dict[str, dict] = {}
    for key, s in state.items():
        j = mean_costs.get(key)
        if j is None or not math.isfinite(j):
            out[key] = dict(s)
            continue
        e = float(j) - float(limits[key])
        integral = max(0.0, float(s["integral"]) + ki * e)
        if lambda_max is not None:
            integral = min(integral, float(lambda_max))
        deriv = 0.0 if s.get("prev") is None else max(0.0, float(j) - float(s["prev"]))
        lam = max(0.0, kp * e + integral + kd * deriv)
        if lambda_max is not None:
            lam = min(lam, float(lambda_max))
        out[key] = {"lambda": lam, "integral": integral, "prev": float(j)}
    return out


def rollout_mean_costs(costs: np.ndarray, frames: np.ndarray, keys: tuple[str, ...]) -> tuple[dict[str, float], int]:
    """The mean cost per frame of each key over a rollout, and the frames it finished.

    Args:
        costs: ``(steps, n_envs, len(keys))`` each step's costs. frames: ``(steps, n_envs)``, 1 where the step
            finished a frame (``info["frame_done"]``; every step of the frame env). keys: the cost keys.

    Returns:
        ``({key: Σ cost / Σ frames}, Σ frames)``; an empty dict when no frame finished.
    """
    n = int(np.sum(frames))
    if n == 0:
        return {}, 0
    total = np.asarray(costs, dtype=np.float64).reshape(-1, len(keys)).sum(axis=0)
    return {k: float(total[i] / n) for i, k in enumerate(keys)}, n


# ---------------------------------------------------------------------------------------------- normalisation


class NormalizationStats:
    """Running statistics of observations and discounted returns (SB3's ``RunningMeanStd``), owned by a model.

    Args:
        shape: the observation's shape. norm_obs / norm_reward: normalise observations / rewards.
        clip_obs / clip_reward: bounds of the normalised values. gamma: discount of the returns whose spread
            scales the rewards (the model's). epsilon: added to variances.
    """

    def __init__(self, shape: tuple[int, ...], norm_obs: bool = True, norm_reward: bool = True,
                 clip_obs: float = 10.0, clip_reward: float = 10.0, gamma: float = 0.99,
                 epsilon: float = 1e-8) -> None:
        from stable_baselines3.common.running_mean_std import RunningMeanStd

        self.obs_rms = RunningMeanStd(shape=shape)
        self.ret_rms = RunningMeanStd(shape=())
        self.norm_obs, self.norm_reward = bool(norm_obs), bool(norm_reward)
        self.clip_obs, self.clip_reward = float(clip_obs), float(clip_reward)
        self.gamma, self.epsilon = float(gamma), float(epsilon)

    def normalize_obs(self, obs: np.ndarray) -> np.ndarray:
        """``clip((obs − mean) / sqrt(var + ε), ±clip_obs)`` as float32 (``obs`` itself without ``norm_obs``)."""
        if not self.norm_obs:
            return obs
        obs = np.asarray(obs, dtype=np.float64)
        z = (obs - self.obs_rms.mean) / np.sqrt(self.obs_rms.var + self.epsilon)
        return np.clip(z, -self.clip_obs, self.clip_obs).astype(np.float32)

    def normalize_reward(self, reward: np.ndarray) -> np.ndarray:
        """``clip(reward / sqrt(var of the returns + ε), ±clip_reward)`` (``reward`` without ``norm_reward``)."""
        if not self.norm_reward:
            return reward
        return np.clip(reward / np.sqrt(self.ret_rms.var + self.epsilon), -self.clip_reward,
                       self.clip_reward).astype(np.float32)


class RunningNormalization:
    """A VecEnv wrapper normalising observations and rewards with a model's :class:`NormalizationStats`,
    updated while training (SB3 ``VecNormalize``'s arithmetic, the terminal observations of ``infos`` included).

    This class is the marker base of the wrapper :func:`_normalization_wrapper` builds (a subclass of SB3's
    ``VecEnvWrapper`` made on first use, as SB3 is imported lazily): ``isinstance(env, RunningNormalization)``
    finds it.
    """


def _normalization_wrapper(venv: Any, stats: NormalizationStats) -> Any:
    """``venv`` wrapped in a :class:`RunningNormalization` VecEnvWrapper updating ``stats``."""
    from stable_baselines3.common.vec_env import VecEnvWrapper

    class _RunningNormalization(VecEnvWrapper, RunningNormalization):
        def __init__(self, venv: Any, stats: NormalizationStats) -> None:
            super().__init__(venv)
            self.stats = stats
            self.returns = np.zeros(self.num_envs)

        def reset(self) -> np.ndarray:
            obs = self.venv.reset()
            self.returns = np.zeros(self.num_envs)
            if self.stats.norm_obs:
                self.stats.obs_rms.update(obs)
            return self.stats.normalize_obs(obs)

        def step_wait(self) -> tuple:
            obs, rewards, dones, infos = self.venv.step_wait()
            st = self.stats
            if st.norm_obs:
                st.obs_rms.update(obs)
            self.returns = self.returns * st.gamma + rewards
            if st.norm_reward:
                st.ret_rms.update(self.returns)
            for idx, done in enumerate(dones):
                if done and "terminal_observation" in infos[idx]:
                    infos[idx]["terminal_observation"] = st.normalize_obs(infos[idx]["terminal_observation"])
            self.returns[dones] = 0.0
            return st.normalize_obs(obs), st.normalize_reward(rewards), dones, infos

    return _RunningNormalization(venv, stats)


def _normalize_arg(normalize: Any) -> dict[str, Any] | None:
    """``normalize`` (False/None, True, or a dict of :data:`_NORMALIZE_DEFAULTS`' keys) as keyword arguments of
    :class:`NormalizationStats`; ``None`` for no normalisation.

    Raises:
        ConfigError: another value, or unknown keys.
    """
    if normalize is None or normalize is False:
        return None
    if normalize is True:
        return dict(_NORMALIZE_DEFAULTS)
    if isinstance(normalize, Mapping):
        unknown = sorted(set(normalize) - set(_NORMALIZE_DEFAULTS))
        if unknown:
            raise ConfigError(f"normalize takes {list(_NORMALIZE_DEFAULTS)}, got unknown {unknown}")
        return {**_NORMALIZE_DEFAULTS, **dict(normalize)}
    raise ConfigError(f"normalize must be true, false or a mapping of {list(_NORMALIZE_DEFAULTS)}, got {normalize!r}")


# ---------------------------------------------------------------------------------------------- the learner


def _ppo_class() -> type:
    from stable_baselines3 import PPO

    return PPO


class _CostRecorder:
    """Stands in for the callback SB3's ``collect_rollouts`` gets: passes every call on, and at each step copies
    the step's raw rewards and reads its costs and ``frame_done`` from ``infos`` (before SB3 adds the timeout
    bootstrap to the rewards)."""

    def __init__(self, inner: Any, keys: tuple[str, ...]) -> None:
        self.inner, self.keys = inner, keys
        self.rewards: list[np.ndarray] = []
        self.costs: list[np.ndarray] = []
        self.frames: list[np.ndarray] = []
        self._locals: dict[str, Any] = {}

    def update_locals(self, locals_: dict[str, Any]) -> None:
        self._locals = locals_
        self.inner.update_locals(locals_)

    def on_step(self) -> bool:
        infos = self._locals["infos"]
        self.rewards.append(np.array(self._locals["rewards"], dtype=np.float64, copy=True))
        try:
            self.costs.append(np.array([[float(info[k]) for k in self.keys] for info in infos]))
        except KeyError as exc:
            raise ConfigError(f"ppo-lagrangian reads the constraint costs {list(self.keys)} from each step's info, "
                              f"but the env gives no {exc}; train it on a frame-family env (e4gym/EarlyExitDVFS-v1, "
                              "the block env, the edge-cloud env)") from None
        self.frames.append(np.array([float(bool(info.get(FRAME_DONE, True))) for info in infos]))
        return self.inner.on_step()

    def __getattr__(self, name: str) -> Any:  # on_rollout_start, on_rollout_end, ...
        return getattr(self.inner, name)


def _make_ppo_lagrangian() -> type:
    """The :class:`PPOLagrangian` class (a subclass of SB3's PPO, built on first use so that importing this
    module does not import SB3 and torch)."""
    import torch as th
    from stable_baselines3.common.utils import obs_as_tensor
    from stable_baselines3.common.vec_env import VecEnv

    PPO = _ppo_class()

    class PPOLagrangian(PPO):  # type: ignore[valid-type, misc]
        __doc__ = _PPO_LAGRANGIAN_DOC

        def __init__(self, policy: Any, env: Any, *, constraints: Any = None, lambda_lr: float = DEFAULT_LAMBDA_LR,
                     lambda_kp: float = 0.0, lambda_kd: float = 0.0, lambda_init: float = 0.0,
                     lambda_max: float | None = None, rescale_penalty: bool = True, normalize: Any = False,
                     **kwargs: Any) -> None:
            self.constraints = constraints
            self.lambda_lr, self.lambda_kp, self.lambda_kd = lambda_lr, lambda_kp, lambda_kd
            self.lambda_init, self.lambda_max, self.rescale_penalty = lambda_init, lambda_max, rescale_penalty
            self.normalize = normalize
            self.check_lagrangian()
            self.cost_keys = tuple(COST_KEYS)
            self.lagrangian_state = initial_state(self.cost_keys, float(lambda_init))
            self.normalization: NormalizationStats | None = None
            norm = _normalize_arg(normalize)
            if env is not None and norm is not None:
                if isinstance(env, str):
                    env = gym.make(env)
                space = env.observation_space
                if not isinstance(space, gym.spaces.Box):
                    raise ConfigError(f"normalize needs a Box observation space, got {space}")
                self.normalization = NormalizationStats(space.shape, gamma=float(kwargs.get("gamma", 0.99)), **norm)
                env = self._normalized(env, kwargs.get("verbose", 0))
            super().__init__(policy, env, **kwargs)

        # ------------------------------------------------------------------ configuration

        def check_lagrangian(self) -> None:
            """Check the constraints and the multipliers' settings.

            Raises:
                ConfigError: bad constraints (unknown key, value outside [0, 1]), negative or non-finite gains,
                    a ``lambda_max`` that is not > 0, a ``rescale_penalty`` that is not a bool, or a bad ``normalize``.
            """
            Constraints.from_arg(self.constraints)
            for name in ("lambda_lr", "lambda_kp", "lambda_kd", "lambda_init"):
                v = getattr(self, name)
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                    raise ConfigError(f"ppo-lagrangian: {name} must be a number >= 0, got {v!r}")
            lm = self.lambda_max
            if lm is not None and (isinstance(lm, bool) or not isinstance(lm, (int, float)) or not lm > 0):
                raise ConfigError(f"ppo-lagrangian: lambda_max must be a number > 0 or null, got {lm!r}")
            rp = self.rescale_penalty
            if not isinstance(rp, bool):
                raise ConfigError(f"ppo-lagrangian: rescale_penalty must be true or false, got {rp!r}")
            _normalize_arg(self.normalize)

        @property
        def limits(self) -> dict[str, float]:
            """The bound of each cost key's per-frame mean (:attr:`e4gym.envs.Constraints.limits`)."""
            return Constraints.from_arg(self.constraints).limits

        @property
        def multipliers(self) -> dict[str, float]:
            """The current Lagrange multiplier of each cost key."""
            return {k: float(s["lambda"]) for k, s in self.lagrangian_state.items()}

        def _normalized(self, env: Any, verbose: int = 0) -> Any:
            """``env`` as a VecEnv under this model's :class:`RunningNormalization` (``env`` without one)."""
            if self.normalization is None or env is None:
                return env
            if not isinstance(env, VecEnv):
                env = self._wrap_env(env, verbose)  # SB3's own: Monitor if missing, DummyVecEnv
            return _normalization_wrapper(env, self.normalization)

        # ------------------------------------------------------------------ SB3 surface

        def set_env(self, env: Any, force_reset: bool = True) -> None:
            """SB3's ``set_env``, with the env under the model's normalisation (its saved statistics)."""
            super().set_env(self._normalized(env, self.verbose), force_reset=force_reset)

        @classmethod
        def load(cls, path: Any, env: Any = None, device: Any = "auto", custom_objects: dict | None = None,
                 print_system_info: bool = False, force_reset: bool = True, **kwargs: Any) -> Any:
            """SB3's ``load``; ``env`` is attached with :meth:`set_env` (under the saved normalisation)."""
            model = super().load(path, env=None, device=device, custom_objects=custom_objects,
                                 print_system_info=print_system_info, force_reset=force_reset, **kwargs)
            model.check_lagrangian()
            if env is not None:
                model.set_env(env, force_reset=force_reset)
            return model

        def learn(self, *args: Any, **kwargs: Any) -> Any:
            """SB3's ``learn``, without SB3's warning that the training env (under the normalisation wrapper) and
            an evaluation env (raw: :meth:`predict` normalises) are of different types."""
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Training and eval env are not of the same type")
                return super().learn(*args, **kwargs)

        def predict(self, observation: Any, state: Any = None, episode_start: Any = None,
                    deterministic: bool = False) -> tuple[np.ndarray, Any]:
            """SB3's ``predict`` of a RAW observation: normalised first with the model's frozen statistics."""
            if self.normalization is not None:
                observation = self.normalization.normalize_obs(observation)
            return super().predict(observation, state=state, episode_start=episode_start,
                                   deterministic=deterministic)

        def collect_rollouts(self, env: Any, callback: Any, rollout_buffer: Any, n_rollout_steps: int) -> bool:
            """SB3's rollout, then the multiplier update and the Lagrangian reward (see the module docstring)."""
            rec = _CostRecorder(callback, self.cost_keys)
            if not super().collect_rollouts(env, rec, rollout_buffer, n_rollout_steps):
                return False
            costs, frames, raw = np.stack(rec.costs), np.stack(rec.frames), np.stack(rec.rewards)
            means, n_frames = rollout_mean_costs(costs, frames, self.cost_keys)
            limits = self.limits
            self.lagrangian_state = pid_update(self.lagrangian_state, means, limits, ki=float(self.lambda_lr),
                                               kp=float(self.lambda_kp), kd=float(self.lambda_kd),
                                               lambda_max=self.lambda_max)
            lam = self.multipliers
            for k in self.cost_keys:
                self.logger.record(f"lagrangian/lambda_{k}", lam[k])
                self.logger.record(f"lagrangian/bound_{k}", limits[k])
                if k in means:
                    self.logger.record(f"lagrangian/mean_{k}", means[k])
            self.logger.record("lagrangian/frames", n_frames)
            lam_vec = np.array([lam[k] for k in self.cost_keys])
            bootstrap = rollout_buffer.rewards - raw  # SB3's timeout bootstrap γ·V(terminal obs)
            shaped = raw - costs @ lam_vec
            if self.rescale_penalty:
                shaped = shaped / (1.0 + lam_vec.sum())
            rollout_buffer.rewards[:] = shaped + bootstrap
            with th.no_grad():
                last_values = self.policy.predict_values(obs_as_tensor(self._last_obs, self.device))
            rollout_buffer.compute_returns_and_advantage(last_values=last_values, dones=self._last_episode_starts)
            return True

    return PPOLagrangian


_PPO_LAGRANGIAN_DOC = """SB3's PPO with PID-Lagrangian multipliers on the constraint costs of the step infos (module
docstring of :mod:`agents.algos_lagrangian`).

Args:
    policy / env / **kwargs: as SB3's ``PPO``.
    constraints: the bounds (:meth:`e4gym.envs.Constraints.from_arg`: ``None`` for the defaults, a
        :class:`~e4gym.envs.Constraints` or ``{"max_miss_rate": 0.01, "max_accuracy_loss": 0.01}``).
    lambda_lr: K_I, the multipliers' learning rate (λ per unit of per-frame cost above the bound, per rollout).
    lambda_kp / lambda_kd: K_P and K_D of PID-Lagrangian (0: plain gradient ascent).
    lambda_init: λ before the first rollout. lambda_max: cap of λ (``None``: none).
    rescale_penalty: divide the Lagrangian reward by ``1 + Σλ`` (Stooke et al.).
    normalize: observation and reward normalisation (``True``, or ``{norm_obs, norm_reward, clip_obs,
        clip_reward}``); its statistics are saved with the model and used frozen by ``predict``.

Raises:
    ConfigError: bad constraints, gains or ``normalize`` (one line naming them).
"""

_CLASS: type | None = None
#: The learner class (a subclass of ``stable_baselines3.PPO``; built on first access by the module's ``__getattr__``).
PPOLagrangian: type


def __getattr__(name: str) -> Any:
    """``PPOLagrangian`` is built on first access (SB3 and torch are imported then)."""
    global _CLASS
    if name == "PPOLagrangian":
        if _CLASS is None:
            _CLASS = _make_ppo_lagrangian()
            _CLASS.__module__ = __name__
            _CLASS.__qualname__ = "PPOLagrangian"
        return _CLASS
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ---------------------------------------------------------------------------------------------- registration


def _build(env: gym.Env, hyperparameters: dict[str, Any], seed: int) -> Any:
    """A new :class:`PPOLagrangian` on ``env`` with the config's hyper-parameters (``policy``: default MlpPolicy)."""
    hp = dict(hyperparameters)
    policy = hp.pop("policy", "MlpPolicy")
    cls = __getattr__("PPOLagrangian")
    params = inspect.signature(cls.__init__).parameters
    ppo = inspect.signature(_ppo_class().__init__).parameters
    unknown = sorted(k for k in hp if (k not in params and k not in ppo) or k in _NOT_HYPERPARAMETERS)
    if unknown:
        raise ConfigError(f"ppo-lagrangian takes no hyper-parameter {unknown} (PPO's, constraints, lambda_lr, "
                          "lambda_kp, lambda_kd, lambda_init, lambda_max, rescale_penalty, normalize)")
    return cls(policy, env, seed=seed, device="cpu", verbose=0, tensorboard_log=None, **hp)


def wrap_feasible(env: gym.Env, wrapper: Any) -> gym.Env:
    """The config's ``wrapper``: ``feasible`` (or ``{feasible: {margin: F}}``) puts the frame env under
    :class:`e4gym.envs.masking.DeadlineFeasibleActions` (settings that cannot meet the deadline, by the measured
    cost model, are raised to ones that can); anything else is :func:`agents.algos.wrap_env`'s (discrete,
    continuous).

    Raises:
        ConfigError: an unknown wrapper or option, or ``feasible`` on an env other than the frame env.
    """
    from e4gym.envs.masking import DeadlineFeasibleActions

    name, kw = (wrapper, {}) if isinstance(wrapper, str) else \
        next(iter(dict(wrapper).items()), (None, {})) if isinstance(wrapper, Mapping) else (wrapper, {})
    if name != "feasible":
        return wrap_env(env, wrapper)
    kw = dict(kw or {})
    unknown = sorted(set(kw) - {"margin"})
    if unknown:
        raise ConfigError(f"the feasible wrapper takes margin, got {unknown}")
    return DeadlineFeasibleActions(env, **kw)


def _attach(model: Any, path: Path, env: gym.Env | None) -> Any:
    """``model`` (loaded without an env) set to continue on ``env``, after checking its spaces."""
    if env is not None:
        check_spaces(path, model.observation_space, model.action_space, env)
        model.set_env(env)
    return model


def _load(path: Path, env: gym.Env | None) -> Any:
    """A saved model (its multipliers and normalisation statistics with it), on ``env`` to continue training."""
    return _attach(__getattr__("PPOLagrangian").load(path, env=None, device="cpu"), path, env)


def _load_override(path: Path, env: gym.Env | None, hyperparameters: dict[str, Any], changed: frozenset[str]) -> Any:
    """A checkpoint with new hyper-parameters (``--override-hyperparams``): PPO's (as SB3's ``load(**kwargs)``),
    the constraints and the multipliers' gains; the multipliers themselves continue from the checkpoint's."""
    fixed = sorted(set(changed) & set(_FIXED))
    if fixed:
        raise HyperparameterError(f"--override-hyperparams cannot change {fixed} of checkpoint {path}: they shape its "
                                  "networks or its normalisation; resume with the checkpoint's values, or train anew "
                                  "into another --out")
    cls = __getattr__("PPOLagrangian")
    params = {**inspect.signature(_ppo_class().__init__).parameters, **inspect.signature(cls.__init__).parameters}
    unknown = sorted(k for k in changed if k not in params or k in _NOT_HYPERPARAMETERS)
    if unknown:
        raise HyperparameterError(f"--override-hyperparams: ppo-lagrangian takes no hyper-parameter {unknown}")
    kw = {k: hyperparameters[k] if k in hyperparameters else params[k].default for k in sorted(changed)}
    try:
        model = cls.load(path, env=None, device="cpu", **kw)
    except ConfigError as exc:
        raise HyperparameterError(f"--override-hyperparams: {exc}") from None
    return _attach(model, path, env)


register_algo(AlgoSpec(name="ppo-lagrangian", build=_build, load=_load, train=learn_with_callbacks,
                       policy=SB3ModelPolicy, wrap_env=wrap_feasible, load_override=_load_override,
                       summary="PPO with PID-Lagrangian multipliers on the constraint costs (issue 21)"))
