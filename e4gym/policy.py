"""The Policy protocol every governor and agent satisfies, and the explicit channel for what is not observed.

A policy has stable-baselines3's signature, so a trained SB3 model and a hand-written governor are
interchangeable in the benchmark harness::

    action, state = policy.predict(observation, state=None, episode_start=None, deterministic=True)
    policy.reset()  # before every episode

Some policies need more than the observation: a governor reads the measured load and clocks, a static policy
needs the device's level tables, an oracle knows each frame's hidden difficulty. They get it through one
documented channel, :class:`PolicyContext`, which the harness hands to ``policy.bind(context)`` (an optional
method) before the first episode, and updates after every step (``context.last_info``). A policy never
reaches into the env's internals, and only a policy that declares ``clairvoyant = True`` may read the future
(:meth:`PolicyContext.upcoming_frame`); the harness reports such policies as bounds, not as deployable.

Policies that need the board to run kernel governors (the Linux defaults) say so with an ``env_kwargs``
attribute (e.g. ``{"governors": "default"}``); the harness builds their env with those arguments.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from e4gym.envs.common import EnvSetup
from e4gym.errors import ConfigError
from e4gym.workload.base import FrameRecord


@runtime_checkable
class Policy(Protocol):
    """What the harness drives: SB3's ``predict`` plus ``reset``.

    Optional members a policy may define: ``bind(context: PolicyContext) -> None``, ``clairvoyant: bool``,
    ``env_kwargs: dict``, ``name: str``.
    """

    def predict(
        self,
        observation: np.ndarray,
        state: Any = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = True,
    ) -> tuple[np.ndarray, Any]:
        """The action for ``observation`` (and the recurrent state, ``None`` for stateless policies)."""
        ...

    def reset(self) -> None:
        """Forget everything about the previous episode."""
        ...


@dataclass
class PolicyContext:
    """What a policy may know beyond the observation (handed over by the harness through ``policy.bind``).

    Attributes:
        setup: the env's resolved arguments: device spec (level tables in Hz), model profile, deadline, frame
            rate, highest allowed levels, reward weights and reference figures.
        obs_names / action_names: the names of the observation fields and action components.
        last_info: the ``info`` of the last step (measured latency, energy, clocks, temperature, ...);
            empty before the first step of an episode.
    """

    setup: EnvSetup
    obs_names: tuple[str, ...]
    action_names: tuple[str, ...]
    last_info: dict[str, Any] = field(default_factory=dict)
    _peek: Callable[[], FrameRecord] | None = None
    _clairvoyant: bool = False

    @classmethod
    def for_env(cls, env: Any, clairvoyant: bool = False) -> PolicyContext:
        """The context of an e4gym env (``gymnasium.make`` result or the env itself)."""
        base = env.unwrapped
        return cls(
            setup=base.setup,
            obs_names=tuple(base.obs_names),
            action_names=tuple(base.action_names),
            _peek=getattr(base, "upcoming_frame", None),
            _clairvoyant=bool(clairvoyant),
        )

    def upcoming_frame(self) -> FrameRecord:
        """The next frame with its hidden ground truth (per-exit correctness, difficulty). Oracles only.

        Raises:
            ConfigError: the policy did not declare ``clairvoyant = True``, or the env has no such channel.
        """
        if not self._clairvoyant:
            raise ConfigError(
                "upcoming_frame() is the clairvoyant channel: only a policy with `clairvoyant = True` may read it"
            )
        if self._peek is None:
            raise ConfigError("this env does not expose the upcoming frame (real-hardware envs cannot)")
        return self._peek()


class FixedActionPolicy:
    """Base of policies that repeat one action computed at ``bind`` (static settings, kernel governors).

    Subclasses set ``self._action`` in ``bind`` and a ``name``.
    """

    name: str = "fixed"
    _action: np.ndarray | None = None

    def predict(self, observation: np.ndarray, state: Any = None, episode_start: np.ndarray | None = None,
                deterministic: bool = True) -> tuple[np.ndarray, Any]:
        """The fixed action ``(exit, cpu_level, gpu_level[, emc_level])``; ``state`` passes through.

        Raises:
            ConfigError: the policy was not bound to an env (:func:`bind_policy`).
        """
        if self._action is None:
            raise ConfigError(f"{self.name} is not bound to an env: call e4gym.policy.bind_policy(policy, env)")
        return self._action.copy(), state

    def reset(self) -> None:
        """Stateless: nothing to forget (a governor's state lives on the board, which the env resets)."""


def bind_policy(policy: Any, env: Any) -> PolicyContext:
    """Build the :class:`PolicyContext` for ``env`` and hand it to ``policy.bind`` when the policy has one.

    Raises:
        ConfigError: ``policy`` does not have ``predict`` and ``reset``.
    """
    if not callable(getattr(policy, "predict", None)):
        raise ConfigError(f"{policy!r} is not a policy: it needs predict(observation, state, episode_start, "
                          "deterministic) -> (action, state) and reset()")
    ctx = PolicyContext.for_env(env, clairvoyant=getattr(policy, "clairvoyant", False))
    if callable(getattr(policy, "bind", None)):
        policy.bind(ctx)
    return ctx


def run_episode(policy: Any, env: Any, seed: int | None = None, max_steps: int | None = None) -> list[dict[str, Any]]:
    """Run one episode of ``policy`` on ``env``; returns the info of every step (each with its ``reward``).

    Binds the policy (:func:`bind_policy`), calls ``reset()`` on it (if it has one; SB3 models do not), and
    updates ``context.last_info`` after each step.
    """
    ctx = bind_policy(policy, env)
    if callable(getattr(policy, "reset", None)):
        policy.reset()
    obs, info = env.reset(seed=seed)
    ctx.last_info = {}
    infos: list[dict[str, Any]] = []
    state, start = None, np.ones(1, dtype=bool)
    steps = 0
    while True:
        action, state = policy.predict(obs, state=state, episode_start=start, deterministic=True)
        obs, reward, terminated, truncated, info = env.step(action)
        info = {**info, "reward": float(reward)}
        infos.append(info)
        ctx.last_info = info
        start = np.zeros(1, dtype=bool)
        steps += 1
        if terminated or truncated or (max_steps is not None and steps >= max_steps):
            return infos
