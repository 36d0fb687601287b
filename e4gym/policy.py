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
attribute (e.g. ``{"governors": "default"}``); the harness builds their env with those arguments. A policy with a
``for_task_seed(seed)`` method is told the benchmark episode's seed before ``bind`` (a learned agent trained with
several seeds picks the model of that seed, so a benchmark's interval covers the spread of training); the seed
says nothing about the episode's frames.

What a policy sees is what a controller on a real board could see: before the first step of an episode
``context.last_info`` is the env's reset ``info`` (the sensors at reset; ``exit`` and ``frame`` are -1), then
each step's ``info``. :func:`run_episode` times every ``predict`` call (``time.perf_counter_ns``) and reports
it per step as ``info["decision_ms"]``: a controller's decision time is spent on the board's CPU, inside the
frame period.

A policy is never scored on the frames it learned from. A policy that trains or calibrates on a workload
(cascade training, a profile, an online Q-table) exposes ``training_streams() -> set[tuple]``: after ``bind``,
the :meth:`~e4gym.workload.base.FrameSource.stream_key` of every frame stream it trained or calibrated on
(``("synthetic", params_sha, seed)`` or ``("trace", sha256, start, stop)``). :func:`run_episode` compares them
with the key of the episode's stream (``env.unwrapped.stream_key()``, after ``reset``) and raises
:class:`~e4gym.errors.ConfigError` when they overlap (:func:`streams_overlap`: the same synthetic stream, or
frame ranges of the same trace that intersect); the benchmark harness reports such a task as failed.
"""

from __future__ import annotations

import math
import time
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
    ``env_kwargs: dict``, ``name: str``, and ``training_streams() -> set[tuple]``: for a policy that trains or
    calibrates on a workload, the ``stream_key()`` tuples of the frame streams it trained or calibrated on
    (valid after ``bind``). :func:`run_episode` refuses to run an episode whose stream overlaps one of them
    (:func:`streams_overlap`); a policy that learns nothing from frames does not define it.
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
        last_info: the ``info`` of the last step (measured latency, energy, clocks, temperature, ...); before
            the first step of an episode, the env's reset ``info`` (every info key; ``exit`` and ``frame`` -1).

    Besides these, :attr:`cost_model` is what a controller of the board knows about costs: a cost model
    obtained by running the backend in use (:mod:`e4gym.hardware.costmodel`), never the emulator's analytic
    model; and :meth:`profile_run` runs a profiling frame on the board, charged to the episode. Setup fields
    that come from the emulator's model (``setup.spec.model`` coefficients) are for clairvoyant bounds only.
    """

    setup: EnvSetup
    obs_names: tuple[str, ...]
    action_names: tuple[str, ...]
    last_info: dict[str, Any] = field(default_factory=dict)
    _peek: Callable[[], FrameRecord] | None = None
    _clairvoyant: bool = False
    _cost_model: Callable[[], Any] | None = None
    _profile_run: Callable[..., Any] | None = None

    @property
    def clairvoyant(self) -> bool:
        """Whether the bound policy declared ``clairvoyant = True`` (a bound, not a deployable policy)."""
        return self._clairvoyant

    @property
    def cost_model(self) -> Any:
        """The env's :class:`~e4gym.hardware.costmodel.MeasuredCostModel`: latency and energy of works at each
        allowed setting, measured by running the backend (lazily, on first use of each work; its
        ``offline`` figures are the measuring cost, reported apart from the episode).

        Raises:
            ConfigError: the env offers no cost model.
        """
        if self._cost_model is None:
            raise ConfigError("this env offers no measured cost model (e4gym's frame and block envs do)")
        model = self._cost_model()
        return model.view() if callable(getattr(model, "view", None)) else model

    def profile_run(self, exit: int, levels: Any) -> Any:
        """Run a profiling frame to ``exit`` at ``levels`` on the board now; returns what it measured
        (:class:`~e4gym.envs.base.ProfileRun`: latency s, monitor energy J, temperature °C). Its time delays the
        next frame and its energy is charged to it (``info["profiling_*"]``).

        Raises:
            ConfigError: the env has no profiling channel.
        """
        if self._profile_run is None:
            raise ConfigError("this env cannot run profiling frames (e4gym's frame and block envs can)")
        return self._profile_run(exit, levels)

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
            _cost_model=getattr(base, "cost_model", None),
            _profile_run=getattr(base, "profiling_run", None),
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
            raise not_bound(self.name)
        return self._action.copy(), state

    def reset(self) -> None:
        """Stateless: nothing to forget (a governor's state lives on the board, which the env resets)."""


def not_bound(name: str) -> ConfigError:
    """The one-line error of a policy named ``name`` asked to act before :func:`bind_policy` bound it to an env."""
    return ConfigError(f"{name} is not bound to an env: call e4gym.policy.bind_policy(policy, env)")


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


#: The fix a :class:`~e4gym.errors.ConfigError` of :func:`check_training_streams` suggests.
TRAINING_STREAM_FIX = ("give the policy a separate training workload: other seeds, or a trace split with "
                       "TraceSource(start, stop) / train_workload=...")


def streams_overlap(a: tuple, b: tuple) -> bool:
    """Whether two frame-stream keys (:meth:`~e4gym.workload.base.FrameSource.stream_key`) share frames.

    * ``("synthetic", params_sha, seed)``: the same stream only when the keys are equal (another seed or other
      generator parameters give other frames);
    * ``("trace", sha256, start, stop)``: the same trace (``sha256``) and intersecting frame ranges
      ``[start, stop)``; ``start`` ``None`` is 0, ``stop`` ``None`` is the end of the trace;
    * any other pair (different kinds, unknown kinds): equal keys overlap, others do not.
    """
    a, b = tuple(a), tuple(b)
    if len(a) == len(b) == 4 and a[0] == b[0] == "trace":
        if a[1] != b[1]:
            return False
        lo_a, lo_b = a[2] or 0, b[2] or 0
        hi_a = math.inf if a[3] is None else a[3]
        hi_b = math.inf if b[3] is None else b[3]
        return max(lo_a, lo_b) < min(hi_a, hi_b)
    return a == b


def describe_stream(key: tuple) -> str:
    """A short readable form of a stream key (for messages): ``synthetic seed 3 (params 1a2b3c4d)``,
    ``trace 5e6f7a8b frames [0, 500)``."""
    key = tuple(key)
    if len(key) == 3 and key[0] == "synthetic":
        return f"synthetic seed {key[2]} (params {str(key[1])[:8]})"
    if len(key) == 4 and key[0] == "trace":
        lo = 0 if key[2] is None else key[2]
        hi = "end" if key[3] is None else key[3]
        return f"trace {str(key[1])[:8]} frames [{lo}, {hi})"
    return repr(key)


def episode_stream_key(env: Any) -> tuple | None:
    """The stream key of ``env``'s current episode (``env.unwrapped.stream_key()``), ``None`` when the env
    does not tell."""
    fn = getattr(getattr(env, "unwrapped", env), "stream_key", None)
    if not callable(fn):
        return None
    key = fn()
    return None if key is None else tuple(key)


def check_training_streams(policy: Any, env: Any) -> None:
    """Refuse an episode whose frame stream overlaps one the policy trained or calibrated on.

    Call after ``bind`` and ``env.reset`` (:func:`run_episode` does). Nothing to check when the policy has no
    ``training_streams`` or the env does not tell its stream (:func:`episode_stream_key`).

    Raises:
        ConfigError: the episode's stream overlaps a training stream (:func:`streams_overlap`); the one-line
            message names the policy, both streams and the fix (:data:`TRAINING_STREAM_FIX`).
    """
    fn = getattr(policy, "training_streams", None)
    if not callable(fn):
        return
    key = episode_stream_key(env)
    if key is None:
        return
    name = getattr(policy, "name", None) or type(policy).__name__
    for trained in fn() or ():
        if streams_overlap(tuple(trained), key):
            raise ConfigError(
                f"policy '{name}' would be scored on {describe_stream(key)}, which overlaps the stream it trained on "
                f"({describe_stream(tuple(trained))}): {TRAINING_STREAM_FIX}"
            )


def run_episode(policy: Any, env: Any, seed: int | None = None, max_steps: int | None = None) -> list[dict[str, Any]]:
    """Run one episode of ``policy`` on ``env``; returns the info of every step (each with its ``reward`` and
    ``decision_ms``: the wall time of that step's ``predict`` call, ms).

    Binds the policy (:func:`bind_policy`), calls ``reset()`` on it (if it has one; SB3 models do not), resets
    the env, sets ``context.last_info`` to the reset ``info``, checks the episode's stream is not one the policy
    trained on (:func:`check_training_streams`), and updates ``context.last_info`` after each step.

    Raises:
        ConfigError: the policy trained on this episode's frame stream (see :func:`check_training_streams`).
    """
    ctx = bind_policy(policy, env)
    if callable(getattr(policy, "reset", None)):
        policy.reset()
    obs, info = env.reset(seed=seed)
    check_training_streams(policy, env)
    ctx.last_info = dict(info)
    infos: list[dict[str, Any]] = []
    state, start = None, np.ones(1, dtype=bool)
    steps = 0
    clock = time.perf_counter_ns
    while True:
        t0 = clock()
        action, state = policy.predict(obs, state=state, episode_start=start, deterministic=True)
        decision_ms = (clock() - t0) * 1e-6
        obs, reward, terminated, truncated, info = env.step(action)
        info = {**info, "reward": float(reward), "decision_ms": decision_ms}
        infos.append(info)
        ctx.last_info = info
        start = np.zeros(1, dtype=bool)
        steps += 1
        if terminated or truncated or (max_steps is not None and steps >= max_steps):
            return infos
