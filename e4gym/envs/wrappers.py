"""Wrappers that adapt the e4gym envs to common RL algorithms and collect per-episode figures.

- :class:`DiscreteActions`: ``MultiDiscrete`` → ``Discrete`` (DQN), optionally on a coarse grid of levels.
- :class:`ContinuousActions`: ``MultiDiscrete`` → ``Box(-1, 1)`` (SAC, TD3), rounded to the nearest level.
- :class:`SelectObservation`: keep only some named fields of the observation vector.
- :func:`env_action`: an action through every action wrapper of a chain (what the innermost env receives).
- :class:`EpisodeStats`: per-episode energy, latency, deadline, accuracy and DVFS figures in the final ``info``
  (keys :data:`EPISODE_STAT_KEYS`), ready for stable-baselines3's ``Monitor(info_keywords=...)``.

This module imports neither torch nor stable-baselines3 (``import e4gym`` stays light); the TensorBoard
callback that logs :class:`EpisodeStats`' figures is in :mod:`e4gym.envs.callbacks`.

Example::

    import gymnasium as gym
    import e4gym  # noqa: F401
    from stable_baselines3 import DQN
    from stable_baselines3.common.monitor import Monitor
    from e4gym.envs.wrappers import EPISODE_STAT_KEYS, DiscreteActions, EpisodeStats

    env = gym.make("e4gym/EarlyExitDVFS-v1", episode_frames=500)
    env = DiscreteActions(env, {"cpu_level": [0, 12, 24], "gpu_level": [0, 7, 14]})  # 5·3·3 = 45 actions
    env = Monitor(EpisodeStats(env), "logs/", info_keywords=EPISODE_STAT_KEYS)
    DQN("MlpPolicy", env).learn(10_000)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from e4gym.errors import ConfigError, SettingError, UnknownNameError

__all__ = [
    "EPISODE_STAT_DOCS",
    "EPISODE_STAT_KEYS",
    "SERVING_STAT_DOCS",
    "SERVING_STAT_KEYS",
    "ContinuousActions",
    "DiscreteActions",
    "EpisodeStats",
    "SelectObservation",
    "ServingEpisodeStats",
    "env_action",
    "episode_stats_wrapper",
]


# ---------------------------------------------------------------------------------------------- helpers


def _multi_discrete(env: gym.Env, wrapper: str) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """``(nvec, start, names)`` of a 1-D MultiDiscrete action space; ConfigError otherwise."""
    space = env.action_space
    if not isinstance(space, spaces.MultiDiscrete) or space.nvec.ndim != 1:
        raise ConfigError(
            f"{wrapper} needs an env with a 1-D MultiDiscrete action space (like the e4gym envs'), "
            f"got {space!r}"
        )
    nvec = np.asarray(space.nvec, dtype=np.int64)
    start = np.asarray(getattr(space, "start", np.zeros_like(nvec)), dtype=np.int64)
    names = getattr(env.unwrapped, "action_names", None)
    if names is None or len(names) != len(nvec):
        names = tuple(f"component_{i}" for i in range(len(nvec)))
    return nvec, start, tuple(str(n) for n in names)


def _as_int(value: Any) -> int | None:
    """``value`` as a Python int if it is an integer (or an integral float, or a size-1 array of one), else None."""
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.reshape(()).item()
    if isinstance(value, (bool, np.bool_)):
        return None
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)) and math.isfinite(value) and float(value).is_integer():
        return int(value)
    return None


# ---------------------------------------------------------------------------------------------- actions


class DiscreteActions(gym.ActionWrapper, gym.utils.RecordConstructorArgs):
    """Flatten a ``MultiDiscrete`` action space into one ``Discrete(n)`` (for DQN and other discrete-only agents).

    Each component keeps all its values unless ``choices`` restricts it: ``choices`` maps component names
    (``env.unwrapped.action_names``: ``exit``/``exit_now``, ``cpu_level``, ``gpu_level``, ``emc_level``) to the
    values allowed, e.g. ``{"cpu_level": [0, 12, 24], "gpu_level": [0, 7, 14]}`` (a zTT-style grid of levels).
    Component ``j`` then has ``m_j`` values and the space is ``Discrete(m_0 · m_1 · ...)``; index ``i`` maps to
    ``np.unravel_index(i, (m_0, m_1, ...))`` (C order: the last component varies fastest), each position
    taken from the component's value list in the order given.

    Attributes:
        action_names: the component names. choices: ``{name: (values, ...)}`` for every component.

    Raises:
        ConfigError: the env's action space is not a 1-D MultiDiscrete; an empty or duplicate value list.
        UnknownNameError: a name of ``choices`` is not a component (the message lists the components).
        SettingError: a value outside its component's range, or not an integer.
    """

    def __init__(self, env: gym.Env, choices: Mapping[str, Sequence[int]] | None = None) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, choices=choices)
        gym.ActionWrapper.__init__(self, env)
        nvec, start, names = _multi_discrete(env, "DiscreteActions")
        choices = {} if choices is None else choices
        if not isinstance(choices, Mapping):
            raise ConfigError(
                f"choices must be a mapping {{component name: [values, ...]}} like {{'cpu_level': [0, 12, 24]}}, "
                f"got {choices!r}"
            )
        unknown = [k for k in choices if k not in names]
        if unknown:
            raise UnknownNameError(f"unknown action component(s) {unknown} in choices; components: {list(names)}")
        values: list[np.ndarray] = []
        for name, n, s in zip(names, nvec.tolist(), start.tolist()):
            if name not in choices:
                values.append(np.arange(s, s + n, dtype=np.int64))
                continue
            raw = choices[name]
            if isinstance(raw, (str, bytes)) or not isinstance(raw, (Sequence, np.ndarray)):
                raise ConfigError(f"choices['{name}'] must be a list of integers in {s}..{s + n - 1}, got {raw!r}")
            vals = [_as_int(v) for v in raw]
            bad = [v for v, iv in zip(raw, vals) if iv is None or not s <= iv < s + n]
            if bad:
                raise SettingError(
                    f"choices['{name}'] has value(s) {bad} outside the component's range: "
                    f"integers in {s}..{s + n - 1}"
                )
            if not vals:
                raise ConfigError(f"choices['{name}'] is empty; give at least one integer in {s}..{s + n - 1}")
            if len(set(vals)) != len(vals):
                dup = sorted({v for v in vals if vals.count(v) > 1})
                raise ConfigError(f"choices['{name}'] repeats value(s) {dup}; list each value once")
            values.append(np.array(vals, dtype=np.int64))
        self.action_names: tuple[str, ...] = names
        self._values = tuple(values)
        self._shape = tuple(len(v) for v in values)
        self._lookup = tuple({int(v): j for j, v in enumerate(vs)} for vs in values)
        self._n = int(np.prod(self._shape, dtype=np.int64))
        self.choices: dict[str, tuple[int, ...]] = {n: tuple(int(x) for x in v) for n, v in zip(names, values)}
        self.action_space = spaces.Discrete(self._n)

    def action(self, action: Any) -> np.ndarray:
        """The env's MultiDiscrete action (int64 array) for the flat index ``action`` in ``0..n-1``."""
        i = _as_int(action)
        if i is None or not 0 <= i < self._n:
            raise SettingError(
                f"action {action!r} is outside the action space Discrete({self._n}): give an integer in "
                f"0..{self._n - 1}"
            )
        pos = np.unravel_index(i, self._shape)
        return np.array([vs[p] for vs, p in zip(self._values, pos)], dtype=np.int64)

    def index_of(self, multi_action: Any) -> int:
        """The flat index of an env action (one value per component); inverse of :meth:`action`.

        Raises:
            SettingError: wrong number of components, or a value that is not in its component's choices.
        """
        vals = list(np.ravel(np.asarray(multi_action)))
        if len(vals) != len(self._shape):
            raise SettingError(
                f"action {multi_action!r} has {len(vals)} components; the env takes {len(self._shape)}: "
                f"{list(self.action_names)}"
            )
        pos = []
        for v, lookup, name in zip(vals, self._lookup, self.action_names):
            iv = _as_int(v)
            if iv is None or iv not in lookup:
                raise SettingError(
                    f"action {multi_action!r} is not representable: component '{name}' must be one of "
                    f"{list(self.choices[name])}, got {iv if iv is not None else v!r}"
                )
            pos.append(lookup[iv])
        return int(np.ravel_multi_index(tuple(pos), self._shape))


class ContinuousActions(gym.ActionWrapper, gym.utils.RecordConstructorArgs):
    """A ``Box(-1, 1, (k,), float32)`` action for a k-component ``MultiDiscrete`` env (for SAC, TD3, ...).

    Component ``j`` with ``n_j`` values maps ``a_j ∈ [−1, 1]`` to ``level = clip(⌊(a_j + 1)/2 · (n_j − 1) + ½⌋,
    0, n_j − 1)`` (rounding half up; values beyond ±1 clip to the end levels): −1 is the lowest level (or the
    earliest exit), +1 the highest, 0 the middle. :meth:`continuous_of` gives the centre of a level's interval.

    Raises:
        ConfigError: the env's action space is not a 1-D MultiDiscrete.
        SettingError (from :meth:`action`): an action of the wrong shape or with NaN/inf values.
    """

    def __init__(self, env: gym.Env) -> None:
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.ActionWrapper.__init__(self, env)
        nvec, start, names = _multi_discrete(env, "ContinuousActions")
        self.action_names: tuple[str, ...] = names
        self._nvec = nvec
        self._start = start
        self._span = (nvec - 1).astype(np.float64)
        k = len(nvec)
        self.action_space = spaces.Box(-1.0, 1.0, (k,), dtype=np.float32)

    def action(self, action: Any) -> np.ndarray:
        """The env's MultiDiscrete action (int64 array) for ``action`` ∈ [−1, 1]^k."""
        try:
            a = np.asarray(action, dtype=np.float64)
        except (TypeError, ValueError):
            a = None
        k = len(self._nvec)
        if a is None or a.size != k:
            raise SettingError(
                f"action {action!r} does not fit the action space Box(-1, 1, ({k},)): give {k} numbers in "
                f"[-1, 1] for {list(self.action_names)}"
            )
        a = a.reshape(k)
        if not np.all(np.isfinite(a)):
            raise SettingError(f"action {action!r} has NaN or infinite values; give {k} finite numbers in [-1, 1]")
        lv = np.floor((a + 1.0) * 0.5 * self._span + 0.5)
        lv = np.clip(lv, 0, self._nvec - 1).astype(np.int64)
        return lv + self._start

    def continuous_of(self, multi_action: Any) -> np.ndarray:
        """The Box action (float32 in [−1, 1]) that maps to the env action ``multi_action``; inverse of :meth:`action`.

        Each component gets ``2·level/(n − 1) − 1`` (0 for a one-value component), the centre of the interval
        that rounds to that level.
        """
        vals = np.ravel(np.asarray(multi_action))
        k = len(self._nvec)
        if vals.size != k:
            raise SettingError(f"action {multi_action!r} has {vals.size} components; the env takes {k}")
        lv = vals.astype(np.int64) - self._start
        if np.any(lv < 0) or np.any(lv >= self._nvec):
            raise SettingError(
                f"action {multi_action!r} is outside the env's action space MultiDiscrete({self._nvec.tolist()}, "
                f"start={self._start.tolist()})"
            )
        span = np.where(self._span > 0, self._span, 1.0)
        return np.where(self._span > 0, 2.0 * lv / span - 1.0, 0.0).astype(np.float32)


# ---------------------------------------------------------------------------------------------- observations


def env_action(env: gym.Env, action: Any) -> Any:
    """``action`` as the innermost env receives it: through the ``action()`` of every action wrapper of ``env``,
    outermost first (e.g. a ``Discrete`` index through :class:`DiscreteActions`, then
    :class:`~e4gym.envs.masking.DeadlineFeasibleActions`)."""
    while isinstance(env, gym.Wrapper):
        if isinstance(env, gym.ActionWrapper):
            action = env.action(action)
        env = env.env
    return action


class SelectObservation(gym.ObservationWrapper, gym.utils.RecordConstructorArgs):
    """Keep only the named fields of an e4gym observation vector, in the order given.

    ``fields`` are names of ``env.unwrapped.obs_names`` (see the env's docstring for their meaning and units,
    e.g. ``["edge_density", "latency", "temperature", "slack"]``). The new observation space is a float32
    ``Box`` with those fields' bounds; ``self.obs_names`` (and ``self.obs_fields`` when the env describes its
    fields) list the kept fields. Stacks on another :class:`SelectObservation`: the names are looked up on the
    nearest wrapper that has ``obs_names``.

    Raises:
        ConfigError: ``fields`` empty or with duplicates; the env's observation is not a 1-D Box with names.
        UnknownNameError: a field that is not in the observation (the message lists the available ones).
    """

    def __init__(self, env: gym.Env, fields: Sequence[str]) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, fields=fields)
        gym.ObservationWrapper.__init__(self, env)
        space = env.observation_space
        try:
            names = tuple(env.get_wrapper_attr("obs_names"))
        except AttributeError:
            names = ()
        if not isinstance(space, spaces.Box) or len(space.shape) != 1 or len(names) != space.shape[0]:
            raise ConfigError(
                f"SelectObservation needs an env with a 1-D Box observation and matching `obs_names` "
                f"(like the e4gym envs'), got {space!r} with names {list(names)}"
            )
        if isinstance(fields, str) or not isinstance(fields, Sequence):
            raise ConfigError(f"fields must be a list of field names like ['latency', 'slack'], got {fields!r}")
        fields = list(fields)
        if not fields:
            raise ConfigError(f"fields is empty; give at least one of {list(names)}")
        unknown = [f for f in fields if f not in names]
        if unknown:
            raise UnknownNameError(f"unknown observation field(s) {unknown}; available: {list(names)}")
        dup = sorted({f for f in fields if fields.count(f) > 1})
        if dup:
            raise ConfigError(f"fields repeats {dup}; list each field once")
        self._idx = np.array([names.index(f) for f in fields], dtype=np.intp)
        self.obs_names: tuple[str, ...] = tuple(fields)
        try:
            all_fields = env.get_wrapper_attr("obs_fields")
        except AttributeError:
            all_fields = None
        if all_fields is not None and len(all_fields) == len(names):
            self.obs_fields = [all_fields[i] for i in self._idx]
        low = np.asarray(space.low, dtype=np.float32)[self._idx]
        high = np.asarray(space.high, dtype=np.float32)[self._idx]
        self.observation_space = spaces.Box(low, high, dtype=np.float32)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        """The selected fields of ``observation`` (float32)."""
        return np.asarray(observation, dtype=np.float32)[self._idx]


# ---------------------------------------------------------------------------------------------- episode stats

#: The keys :class:`EpisodeStats` adds to the ``info`` of an episode's last step, with their meaning and units.
#: All figures are over the episode's *frames* (for the block env: the steps whose ``frame_done`` is True).
EPISODE_STAT_DOCS: dict[str, str] = {
    "ep_frames": "frames finished in the episode (count)",
    "ep_energy_per_frame_j": "mean true board energy per frame, idle time until the next arrival included (J)",
    "ep_measured_energy_per_frame_j": "mean energy per frame as the board's power monitor reports it (J)",
    "ep_latency_mean_ms": "mean frame latency, queueing included (ms)",
    "ep_latency_p95_ms": "95th percentile of the frame latency (ms, linear interpolation)",
    "ep_latency_p99_ms": "99th percentile of the frame latency (ms, linear interpolation)",
    "ep_deadline_miss_rate": "fraction of frames whose latency exceeded the deadline (0..1)",
    "ep_accuracy": "fraction of frames whose exit predicted the right class (0..1)",
    "ep_dvfs_switches_per_frame": "mean number of clock domains that changed frequency per frame (0..3)",
    "ep_throttled_fraction": "fraction of frames during which the thermal trip capped the clocks (0..1)",
    "ep_mean_exit": "mean exit index the frames left at (0-based; n_exits − 1 is the full network)",
}

#: The keys of :data:`EPISODE_STAT_DOCS`, for ``Monitor(env, info_keywords=EPISODE_STAT_KEYS)``.
EPISODE_STAT_KEYS: tuple[str, ...] = tuple(EPISODE_STAT_DOCS)


def _at_episode_end(wrapper: Any, info: dict[str, Any], ended: bool) -> dict[str, Any]:
    """``info``, with the wrapper's episode figures added (and kept in ``last_episode_stats``) when the episode
    ``ended``."""
    if not ended:
        return info
    stats = wrapper.episode_stats()
    wrapper.last_episode_stats = stats
    return {**info, **stats}


class EpisodeStats(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Accumulate an episode's per-frame figures and report them in the ``info`` of its last step.

    A step counts as a frame unless its ``info`` has ``frame_done`` (the block env), in which case only the
    steps with ``frame_done`` True count. At the step where the episode ends (``terminated or truncated``) the
    ``info`` gets the flat keys of :data:`EPISODE_STAT_KEYS`:

    ``ep_frames``, ``ep_energy_per_frame_j`` (J), ``ep_measured_energy_per_frame_j`` (J),
    ``ep_latency_mean_ms``, ``ep_latency_p95_ms``, ``ep_latency_p99_ms`` (ms), ``ep_deadline_miss_rate``,
    ``ep_accuracy``, ``ep_dvfs_switches_per_frame``, ``ep_throttled_fraction``, ``ep_mean_exit``
    (meanings in :data:`EPISODE_STAT_DOCS`). With no frame in the episode the per-frame figures are NaN.

    Use it under stable-baselines3's ``Monitor(EpisodeStats(env), info_keywords=EPISODE_STAT_KEYS)`` to get
    the figures in the monitor CSV and in ``info["episode"]``, and with
    :class:`e4gym.envs.callbacks.EpisodeStatsCallback` to get them in TensorBoard. The figures of the last
    finished episode stay in :attr:`last_episode_stats`. The counters restart at ``reset()``.
    """

    def __init__(self, env: gym.Env) -> None:
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.Wrapper.__init__(self, env)
        self.last_episode_stats: dict[str, float] | None = None
        self._clear()

    def _clear(self) -> None:
        self._energy = 0.0
        self._measured = 0.0
        self._latencies: list[float] = []
        self._missed = 0
        self._correct = 0
        self._switches = 0.0
        self._throttled = 0
        self._exit_sum = 0.0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        """Reset the env and the episode counters."""
        self._clear()
        return self.env.reset(seed=seed, options=options)

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        """Step the env; on the episode's last step add the :data:`EPISODE_STAT_KEYS` figures to ``info``."""
        obs, reward, terminated, truncated, info = self.env.step(action)
        if info.get("frame_done", True):
            self._energy += float(info.get("energy_j", 0.0))
            self._measured += float(info.get("measured_energy_j", 0.0))
            self._latencies.append(float(info.get("latency_ms", math.nan)))
            self._missed += bool(info.get("deadline_missed", False))
            self._correct += bool(info.get("correct", False))
            self._switches += float(info.get("dvfs_switches", 0))
            self._throttled += bool(info.get("throttled", False))
            self._exit_sum += float(info.get("exit", math.nan))
        return obs, reward, terminated, truncated, _at_episode_end(self, info, terminated or truncated)

    def episode_stats(self) -> dict[str, float]:
        """The :data:`EPISODE_STAT_KEYS` figures of the episode so far."""
        n = len(self._latencies)
        if n == 0:
            nan = math.nan
            return {"ep_frames": 0, **{k: nan for k in EPISODE_STAT_KEYS[1:]}}
        lat = np.asarray(self._latencies, dtype=np.float64)
        p95, p99 = np.percentile(lat, [95.0, 99.0])
        return {
            "ep_frames": n,
            "ep_energy_per_frame_j": self._energy / n,
            "ep_measured_energy_per_frame_j": self._measured / n,
            "ep_latency_mean_ms": float(lat.mean()),
            "ep_latency_p95_ms": float(p95),
            "ep_latency_p99_ms": float(p99),
            "ep_deadline_miss_rate": self._missed / n,
            "ep_accuracy": self._correct / n,
            "ep_dvfs_switches_per_frame": self._switches / n,
            "ep_throttled_fraction": self._throttled / n,
            "ep_mean_exit": self._exit_sum / n,
        }


#: The figures :class:`ServingEpisodeStats` adds at the end of an episode of a serving env (the batching env), with
#: their meaning and units.
SERVING_STAT_DOCS: dict[str, str] = {
    "ep_intervals": "decision intervals served in the episode (count)",
    "ep_utility_per_interval": "mean reward (the utility, memory penalty included) per interval",
    "ep_throughput_rps": "requests completed / episode time (req/s)",
    "ep_goodput_rps": "requests completed within their SLO / episode time (req/s; the mean of the intervals')",
    "ep_p99_latency_ms": "mean over the intervals of their p99 latency (ms; intervals that completed none left out)",
    "ep_slo_violation_rate": "SLO violations / requests arrived in the episode (a request violates once: late, or "
                             "unserved when its deadline passed)",
    "ep_energy_per_request_j": "board energy / requests completed over the episode (J; NaN when not measured)",
    "ep_power_w": "board energy / episode time (W; NaN when not measured)",
    "ep_refused_rate": "share of the intervals whose action was refused for memory",
    "ep_memory_gb": "mean memory the served configuration held (GB)",
}
SERVING_STAT_KEYS: tuple[str, ...] = tuple(SERVING_STAT_DOCS)


class ServingEpisodeStats(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """:class:`EpisodeStats` for a serving env (``env.unwrapped.family == "serving"``, the batching env): an episode
    is counted by decision interval, and the step where it ends gets the :data:`SERVING_STAT_KEYS` figures in its
    ``info``; :attr:`last_episode_stats` keeps the last finished episode's."""

    def __init__(self, env: gym.Env) -> None:
        gym.utils.RecordConstructorArgs.__init__(self)
        gym.Wrapper.__init__(self, env)
        self.last_episode_stats: dict[str, float] | None = None
        self._interval_s = float(getattr(env.unwrapped, "interval_s", 1.0))
        self._clear()

    def _clear(self) -> None:
        self._n = 0
        self._reward = self._completed = self._violations = self._arrived = self._energy = 0.0
        self._goodput = self._refused = self._memory = 0.0
        self._p99: list[float] = []

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        """Reset the env and the episode counters."""
        self._clear()
        return self.env.reset(seed=seed, options=options)

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        """Step the env; on the episode's last step add the :data:`SERVING_STAT_KEYS` figures to ``info``."""
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._n += 1
        self._reward += float(reward)
        done = float(info.get("completed", 0))
        self._completed += done
        self._violations += float(info.get("violations", 0))
        self._arrived += float(info.get("arrived", 0))
        self._energy += float(info.get("energy_j", math.nan))
        self._goodput += float(info.get("goodput_rps", 0.0))
        self._refused += bool(info.get("refused", False))
        self._memory += float(info.get("memory_gb", math.nan))
        if done > 0:
            self._p99.append(float(info.get("p99_latency_ms", math.nan)))
        return obs, reward, terminated, truncated, _at_episode_end(self, info, terminated or truncated)

    def episode_stats(self) -> dict[str, float]:
        """The :data:`SERVING_STAT_KEYS` figures of the episode so far."""
        n = self._n
        if n == 0:
            return {"ep_intervals": 0, **{k: math.nan for k in SERVING_STAT_KEYS[1:]}}
        seconds = n * self._interval_s
        return {
            "ep_intervals": n,
            "ep_utility_per_interval": self._reward / n,
            "ep_throughput_rps": self._completed / seconds,
            "ep_goodput_rps": self._goodput / n,
            "ep_p99_latency_ms": float(np.mean(self._p99)) if self._p99 else math.nan,
            "ep_slo_violation_rate": self._violations / self._arrived if self._arrived else 0.0,
            "ep_energy_per_request_j": self._energy / self._completed if self._completed else math.nan,
            "ep_power_w": self._energy / seconds,
            "ep_refused_rate": self._refused / n,
            "ep_memory_gb": self._memory / n,
        }


def episode_stats_wrapper(env: gym.Env) -> EpisodeStats | ServingEpisodeStats:
    """``env`` under the episode-statistics wrapper of its family: :class:`ServingEpisodeStats` for a serving env
    (``env.unwrapped.family == "serving"``), :class:`EpisodeStats` for the frame, block and edge-cloud envs."""
    if getattr(env.unwrapped, "family", "frame") == "serving":
        return ServingEpisodeStats(env)
    return EpisodeStats(env)
