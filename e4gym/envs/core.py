"""The env core every e4gym env is built on: constructor config, info keys, outcomes and rewards, observations.

- :class:`EnvConfig`: the one set of constructor arguments (frame env, block env, native vector env, and the
  env families to come), validated once (:func:`e4gym.envs.common.resolve_setup`).
- Info keys are named constants (``LATENCY_MS`` …) documented in :data:`INFO_KEYS`; every value an env puts in
  ``info`` is a NumPy scalar (``np.float64``, ``np.int64``, ``np.bool_``), as TorchRL's info readers expect.
- A reward is any callable ``(outcome) -> (reward, terms)`` taking a :class:`FrameOutcome`; the default is
  :class:`FrameReward`. ``terms`` (a dict of floats) goes into ``info``. It works on Python numbers and on
  NumPy arrays alike (the native vector env passes arrays of shape ``(num_envs,)``).
- :class:`ObsBuilder` turns an env's named values into its observation in the order of its field list
  (:class:`ObsField`), clipped into the Box; the same builder serves one env and N envs.
- Streaming time is :class:`e4gym.hardware.stream.StreamClock` (one model for envs and sweeps).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from operator import attrgetter
from typing import Any, NamedTuple

import numpy as np
from gymnasium import spaces

from e4gym.errors import ConfigError, UnknownArgumentError, UnknownNameError
from e4gym.workload.base import COMPLEXITY_FEATURES

try:  # the clip ufunc itself: np.clip's Python wrappers cost more than the clipping of an observation
    from numpy._core.umath import clip as _clip
except ImportError:  # NumPy 1.x
    from numpy.core.umath import clip as _clip  # type: ignore[no-redef]

# ---------------------------------------------------------------------------------------------- info keys

LATENCY_MS = "latency_ms"
ENERGY_J = "energy_j"
POWER_W = "power_w"
TEMP_C = "temp_c"
EXIT = "exit"
CORRECT = "correct"
CONFIDENCE = "confidence"
CPU_HZ = "cpu_hz"
GPU_HZ = "gpu_hz"
EMC_HZ = "emc_hz"
DEADLINE_MISSED = "deadline_missed"
DVFS_SWITCHES = "dvfs_switches"
MEASURED_ENERGY_J = "measured_energy_j"
RUN_MS = "run_ms"
THROTTLED = "throttled"
FRAME = "frame"
REWARD_ENERGY = "reward_energy"
REWARD_DEADLINE = "reward_deadline"
REWARD_ACCURACY = "reward_accuracy"
PROFILING_RUNS = "profiling_runs"
PROFILING_MS = "profiling_ms"
PROFILING_ENERGY_J = "profiling_energy_j"
#: Block env only: the frame ended in this step; the block this step ran (−1: none).
FRAME_DONE = "frame_done"
BLOCK = "block"
#: Per-step constraint costs (issue 21; :class:`Constraints`): the frame missed its deadline (0 or 1), and the
#: accuracy it lost against the last exit on the same frame (−1, 0 or 1).
COST_MISS = "cost_miss"
COST_ACCURACY = "cost_accuracy"

#: ``info`` keys every step of every e4gym env carries (DESIGN.md "The environments"), with their meaning.
INFO_KEYS: dict[str, str] = {
    LATENCY_MS: "frame latency from its arrival to its result, queueing included (ms)",
    ENERGY_J: "true board energy charged to the frame: its run plus the idle time until the next arrival (J)",
    POWER_W: "average board power over the frame's time on the board (W)",
    TEMP_C: "board temperature at the end of the frame's time on the board, idle wait included (°C)",
    EXIT: "exit the frame left at (0-based; -1 when no frame finished)",
    CORRECT: "whether that exit's prediction was correct",
    CONFIDENCE: "that exit's confidence (e.g. top softmax), as the running system sees it; 0 when no frame finished",
    CPU_HZ: "CPU clock at the end of the frame's time on the board (Hz)",
    GPU_HZ: "GPU clock at the end of the frame's time on the board (Hz)",
    EMC_HZ: "memory (EMC) clock at the end of the frame's time on the board (Hz)",
    DEADLINE_MISSED: "the frame's latency exceeded the deadline",
    DVFS_SWITCHES: "clock domains whose frequency changed during the frame (0..3)",
    MEASURED_ENERGY_J: "energy_j as the board's power monitor reports it (J)",
    RUN_MS: "time the network ran, DVFS stalls included, queueing excluded (ms)",
    THROTTLED: "the thermal trip capped the clocks",
    FRAME: "frame number in the episode (0-based)",
    REWARD_ENERGY: "energy term of the default reward (FrameReward)",
    REWARD_DEADLINE: "deadline term of the default reward",
    REWARD_ACCURACY: "accuracy term of the default reward",
    PROFILING_RUNS: "profiling runs a policy ran on the board before this frame (PolicyContext.profile_run)",
    PROFILING_MS: "board time of those runs (ms); the frame started that much later",
    PROFILING_ENERGY_J: "true energy of those runs (J), included in energy_j",
    COST_MISS: "constraint cost: 1.0 if the frame missed its deadline, else 0.0 (0.0 while a frame is running)",
    COST_ACCURACY: "constraint cost: the last exit's correctness minus the result's on the same frame (-1.0, 0.0 or "
                   "1.0; 0.0 while a frame is running); its mean is the accuracy lost against the last exit",
}

#: Besides :data:`INFO_KEYS`, every step carries ``power_<rail>_w`` for each rail of the backend's power
#: monitor (``env.unwrapped.rail_keys``; the emulator's: ``power_cpu_w``, ``power_gpu_w``, ``power_soc_w``):
#: the rail's average power over the frame's run and idle wait as the monitor reports it (W; in the block env,
#: over the step's last run or idle segment).
RAIL_KEY_FORMAT = "power_{}_w"

#: The default reward's term keys (in :data:`INFO_KEYS`).
REWARD_TERMS = (REWARD_ENERGY, REWARD_DEADLINE, REWARD_ACCURACY)

#: Where the default reward's energy term comes from (``reward_energy=``): the true energy (the evaluation
#: metric), or what the board's power monitor reports (as a controller trained on a board would see it).
REWARD_ENERGY_SOURCES = ("true", "measured")


#: The constraint costs every frame-family step reports (:class:`Constraints` bounds their means).
COST_KEYS = (COST_MISS, COST_ACCURACY)


@dataclass(frozen=True)
class Constraints:
    """The constrained formulation of the frame-family envs (issue 21): bounds on the mean of each cost.

    Over an episode, the mean of ``info[COST_MISS]`` is the deadline-miss rate and the mean of
    ``info[COST_ACCURACY]`` is the accuracy lost against running the last exit on the same frames (a fraction:
    0.01 = 1 point). A run meets the constraints when each mean is at most its bound. The suite's score
    (:mod:`e4gym.bench.score`) uses these definitions and the defaults below; a constrained learner
    (``e4gym train --algo ppo-lagrangian``) reads the costs from ``info`` and the bounds from here.

    Attributes:
        max_miss_rate: largest share of frames over the deadline (fraction, default 0.01 = 1 %).
        max_accuracy_loss: largest accuracy loss against the last exit (fraction, default 0.01 = 1 point).
    """

    max_miss_rate: float = 0.01
    max_accuracy_loss: float = 0.01

    def __post_init__(self) -> None:
        for name in ("max_miss_rate", "max_accuracy_loss"):
            v = getattr(self, name)
            if not (_is_finite_number(v) and 0 <= v <= 1):
                raise ConfigError(f"constraint '{name}' must be a number in [0, 1] (a fraction: 0.01 = 1 %), got {v!r}")

    @property
    def limits(self) -> dict[str, float]:
        """The bound of each cost key's mean (:data:`COST_KEYS` → fraction)."""
        return {COST_MISS: float(self.max_miss_rate), COST_ACCURACY: float(self.max_accuracy_loss)}

    @classmethod
    def from_arg(cls, constraints: object) -> Constraints:
        """Bounds from ``None`` (defaults), a :class:`Constraints` or a dict of some of its fields."""
        if constraints is None:
            return cls()
        if isinstance(constraints, cls):
            return constraints
        if isinstance(constraints, Mapping):
            allowed = tuple(f.name for f in fields(cls))
            unknown = [k for k in constraints if k not in allowed]
            if unknown:
                raise UnknownNameError(f"unknown constraint(s) {unknown}; constraints: {list(allowed)}")
            return cls(**constraints)  # type: ignore[arg-type]
        raise ConfigError(f"constraints must be a dict like {{'max_miss_rate': 0.01, 'max_accuracy_loss': 0.01}}, "
                          f"got {constraints!r}")


def _is_finite_number(v: object) -> bool:
    """Whether ``v`` is a finite real number (a bool is not one)."""
    return not isinstance(v, bool) and isinstance(v, (int, float, np.integer, np.floating)) and math.isfinite(v)


def rail_keys(rail_names: tuple[str, ...]) -> tuple[str, ...]:
    """The info keys ``power_<rail>_w`` of a backend's rails."""
    return tuple(RAIL_KEY_FORMAT.format(n) for n in rail_names)


# ---------------------------------------------------------------------------------------------- rewards


class FrameOutcome(NamedTuple):
    """What a step produced, as a reward sees it (floats, or arrays of shape ``(num_envs,)`` in the vector env).

    Attributes:
        energy_j: true energy charged to the step (J): the frame's run and idle wait (the frame env), or the
            block, head and idle wait the step ran (the block env). Profiling runs before it are included.
        measured_energy_j: the same as the board's power monitor reports it (J).
        missed: the frame's latency exceeded the deadline (False while a frame is still running).
        correct: the exit the frame left at predicted right (True while a frame is still running).
        latency_s: from the frame's arrival to its result, or to now while it runs (s).
        exit: the exit it left at (−1 while it runs).
        frame_done: the step ended a frame (always True in the frame env).
    """

    energy_j: Any
    measured_energy_j: Any
    missed: Any
    correct: Any
    latency_s: Any
    exit: Any
    frame_done: Any


#: A reward: ``(outcome) -> (reward, terms)``; ``terms`` maps names to floats (or arrays) and goes into info.
RewardFn = Callable[[FrameOutcome], tuple[Any, dict[str, Any]]]


@dataclass(frozen=True)
class RewardWeights:
    """Weights of the default reward's terms (see :class:`FrameReward`); each must be a finite number >= 0."""

    energy: float = 1.0
    deadline: float = 1.0
    accuracy: float = 1.0

    def __post_init__(self) -> None:
        for name in ("energy", "deadline", "accuracy"):
            v = getattr(self, name)
            if not (_is_finite_number(v) and v >= 0):
                raise ConfigError(f"reward weight '{name}' must be a finite number >= 0, got {v!r}")

    @classmethod
    def from_arg(cls, reward_weights: object) -> RewardWeights:
        """Weights from ``None`` (defaults), a :class:`RewardWeights` or a dict of some of the three."""
        if reward_weights is None:
            return cls()
        if isinstance(reward_weights, cls):
            return reward_weights
        if isinstance(reward_weights, Mapping):
            allowed = ("energy", "deadline", "accuracy")
            unknown = [k for k in reward_weights if k not in allowed]
            if unknown:
                raise UnknownNameError(f"unknown reward weight(s) {unknown}; weights: {list(allowed)}")
            return cls(**reward_weights)  # type: ignore[arg-type]
        raise ConfigError(
            "reward_weights must be a dict like {'energy': 1.0, 'deadline': 1.0, 'accuracy': 1.0}, "
            f"got {reward_weights!r}"
        )


@dataclass(frozen=True)
class FrameReward:
    """The default reward ``r = −w_E·E/E_ref − w_D·missed − w_A·(1 − correct)`` of a :class:`FrameOutcome`.

    - ``E``: the step's energy (J), the frame's run plus the idle time until the next frame arrives: the true
      energy (``energy="true"``) or the power monitor's (``"measured"``); ``E_ref``: the energy of a frame that
      runs the full network at the power mode's top clocks (:attr:`EnvSetup.energy_ref_j`), so the energy term
      is about −1 per frame at top clocks on any device;
    - ``missed``: 1 if the frame's latency (queueing included) exceeds the deadline, else 0;
    - ``correct``: 1 if the exit the frame left at predicted the right class, else 0.

    Works on Python numbers and on NumPy arrays alike. Returns ``(reward, terms)`` with the terms under the
    keys of :data:`REWARD_TERMS`.
    """

    weights: RewardWeights
    energy_ref_j: float
    energy: str = "true"

    #: The keys of the terms it returns (zeros in the reset info).
    terms = REWARD_TERMS

    def __post_init__(self) -> None:
        if self.energy not in REWARD_ENERGY_SOURCES:
            raise ConfigError(f"reward_energy must be one of {list(REWARD_ENERGY_SOURCES)}, got {self.energy!r}")
        w = self.weights
        # The coefficients once (a step reads three floats, not six attributes): the energy index into the
        # outcome (0 true, 1 measured), -w_E / E_ref, -w_D and -w_A.
        object.__setattr__(self, "_k", (1 if self.energy == "measured" else 0, -w.energy / self.energy_ref_j,
                                        -w.deadline, -w.accuracy))

    def __call__(self, o: FrameOutcome) -> tuple[Any, dict[str, Any]]:
        """Reward and its terms for an outcome (floats or arrays)."""
        i, k_e, k_d, k_a = self._k  # type: ignore[attr-defined]
        r_e = k_e * o[i]
        r_d = k_d * (o[2] * 1.0)
        r_a = k_a * (1.0 - o[3] * 1.0)
        return r_e + r_d + r_a, {REWARD_ENERGY: r_e, REWARD_DEADLINE: r_d, REWARD_ACCURACY: r_a}


# ---------------------------------------------------------------------------------------------- observations


@dataclass(frozen=True)
class ObsField:
    """One named field of an observation vector: its bounds and what it means (with units)."""

    name: str
    low: float
    high: float
    doc: str


class ObsBuilder:
    """The observation of an env from its field list: the env keeps each field's current value as an attribute
    of a state object (one value per field name; floats, or arrays of shape ``(N,)`` for N envs), the builder
    reads them in field order and clips them into the Box.

    Attributes:
        fields: the fields, in order. names: their names. n: how many. low / high: float32 bounds.
    """

    def __init__(self, fields: list[ObsField]) -> None:
        self.fields = tuple(fields)
        self.names: tuple[str, ...] = tuple(f.name for f in fields)
        self.n = len(self.names)
        if len(set(self.names)) != len(self.names):
            raise ConfigError(f"observation field names must be unique, got {list(self.names)}")
        self.low = np.array([f.low for f in fields], np.float32)
        self.high = np.array([f.high for f in fields], np.float32)
        self._bounds: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # N -> the bounds as (n_fields, N) arrays
        self._get = attrgetter(*self.names) if len(self.names) > 1 else (lambda s, g=attrgetter(self.names[0]): (g(s),))

    def space(self) -> spaces.Box:
        """The observation space of one env."""
        return spaces.Box(self.low, self.high, dtype=np.float32)

    def __call__(self, state: object) -> np.ndarray:
        """The observation (float32, shape ``(n_fields,)``; ``(N, n_fields)`` when the values are arrays, as
        :meth:`many` gives)."""
        try:
            a = np.fromiter(self._get(state), np.float32, self.n)
        except (TypeError, ValueError):  # arrays of N values, not numbers
            return self.many(state)
        return _clip(a, self.low, self.high, out=a)

    def many(self, state: object) -> np.ndarray:
        """The observations of N envs whose values are arrays of shape ``(N,)`` (float32, ``(N, n_fields)``)."""
        a = np.array(self._get(state), dtype=np.float32)
        if a.ndim != 2:
            raise ValueError(f"ObsBuilder.many needs arrays of N values per field, got shape {a.shape}")
        # (fields, N): clipped against bounds of that shape (NumPy's contiguous SIMD loops; np.clip, or bounds
        # broadcast along the rows, take several times longer), then laid out (N, fields).
        bounds = self._bounds.get(a.shape[1])
        if bounds is None:
            bounds = self._bounds[a.shape[1]] = (np.repeat(self.low[:, None], a.shape[1], axis=1),
                                                 np.repeat(self.high[:, None], a.shape[1], axis=1))
        return np.minimum(np.maximum(a, bounds[0], out=a), bounds[1], out=a).T.copy()

    def table(self) -> str:
        """The fields as a Markdown table (for docstrings and the README)."""
        rows = ["| index | name | range | meaning |", "|---|---|---|---|"]
        rows += [f"| {i} | `{f.name}` | [{f.low:g}, {f.high:g}] | {f.doc} |" for i, f in enumerate(self.fields)]
        return "\n".join(rows)


_FEATURE_DOCS = {
    "edge_density": "edge density of the frame about to run, from its pixels (see e4gym.workload.COMPLEXITY_FEATURES)",
    "motion": "motion: mean absolute pixel change of the frame about to run to the previous frame",
    "contrast": "contrast of the frame about to run: pixel standard deviation, rescaled",
}


def feature_fields() -> list[ObsField]:
    """The pre-inference features of the frame about to run (from its and the previous frame's pixels), in [0, 1].

    Nothing computed by running the frame's network is among them (DESIGN.md: frame features are causal).
    """
    return [ObsField(n, 0.0, 1.0, _FEATURE_DOCS[n]) for n in COMPLEXITY_FEATURES]


#: The post-inference figure of the previous frame: how much its features changed at the exit it left at.
LAST_FEATURE_CHANGE = ObsField(
    "last_feature_change", 0.0, 1.0,
    "previous frame: 1 − cosine similarity of its pooled features at the exit it left at with the frame before's "
    "(high at scene cuts); 0 before the first frame")

#: Board fields shared by the envs: temperature and throttling.
TEMPERATURE = ObsField("temperature", -1.0, 2.0, "(T − T_ambient) / (T_trip − T_ambient): 1 at the throttle trip")
THROTTLED_FIELD = ObsField("throttled", 0.0, 1.0, "1 while the thermal trip caps the clocks")


def level_fields(control_memory: bool) -> list[ObsField]:
    """Current clock levels, each as ``level / max_level`` of the power mode, in [0, 1]."""
    doms = ("cpu", "gpu", "emc") if control_memory else ("cpu", "gpu")
    return [ObsField(f"{d}_level", 0.0, 1.0, f"current {d.upper()} level / highest allowed level") for d in doms]


def frame_obs_fields(control_memory: bool) -> list[ObsField]:
    """Fields of the frame env's observation (and its native vector version), in order."""
    return [
        *feature_fields(),
        ObsField("last_exit", 0.0, 1.0, "exit the previous frame left at / (n_exits − 1); 0 before the first frame"),
        ObsField("last_confidence", 0.0, 1.0, "confidence of that exit's prediction; 0 before the first frame"),
        LAST_FEATURE_CHANGE,
        ObsField("latency", 0.0, 10.0, "previous frame's latency / deadline (> 1: missed), clipped to 10"),
        ObsField("energy", 0.0, 10.0, "previous frame's energy as the power monitor reports it / E_ref "
                 "(energy of a full frame at top clocks)"),
        ObsField("power", 0.0, 10.0, "previous frame's average power as the power monitor reports it / P_ref "
                 "(full network at top clocks)"),
        TEMPERATURE,
        THROTTLED_FIELD,
        *level_fields(control_memory),
        ObsField("slack", -10.0, 1.0, "(deadline − queueing delay the next frame already has) / deadline"),
        ObsField("fps", 0.0, 4.0, "achieved frame rate / stream frame rate (moving average of inter-completion times)"),
    ]


# ---------------------------------------------------------------------------------------------- config


@dataclass(frozen=True)
class EnvConfig:
    """The constructor arguments every e4gym env takes (``gymnasium.make(id, **kwargs)``), with their defaults.

    Validated by :func:`e4gym.envs.common.resolve_setup` (all but ``backend``, ``backend_kwargs`` and
    ``render_mode``, which the env checks). See :class:`~e4gym.envs.frame.EarlyExitDVFSEnv` for their meaning.
    """

    device: Any = "xavier-nx"
    model: Any = "efficientnet_b0"
    backend: Any = "emulated"
    workload: Any = "synthetic"
    deadline_ms: float | None = None
    fps: float | None = None
    reward_weights: Any = None
    reward: RewardFn | None = None
    reward_energy: str = "true"
    control_memory: bool = False
    power_mode: str | None = None
    episode_frames: int = 1000
    fan: bool | None = None
    ambient_c: float | None = None
    initial_temp_c: float | None = None
    workload_kwargs: dict[str, Any] | None = None
    governors: dict[str, str] | str | None = None
    backend_kwargs: dict[str, Any] | None = None
    render_mode: str | None = None
    runtime: str = "pytorch"

    @classmethod
    def from_kwargs(cls, kwargs: Mapping[str, Any], *, extra: tuple[str, ...] = ()) -> EnvConfig:
        """A config from keyword arguments.

        Raises:
            UnknownArgumentError: an unknown name (a ``TypeError`` worded as Python's, listing the arguments).
        """
        names = cls.names()
        unknown = [k for k in kwargs if k not in names]
        if unknown:
            raise UnknownArgumentError(f"got an unexpected keyword argument {unknown[0]!r}; the e4gym env "
                                       f"arguments are {[*extra, *names]}")
        return cls(**kwargs)

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The argument names, in order."""
        return tuple(f.name for f in fields(cls))

    #: Arguments that configure the backend or rendering rather than the setup (:class:`EnvSetup`).
    NON_SETUP = ("backend", "backend_kwargs", "render_mode")

    def setup_kwargs(self) -> dict[str, Any]:
        """The arguments :func:`~e4gym.envs.common.resolve_setup` validates."""
        return {n: getattr(self, n) for n in self.names() if n not in self.NON_SETUP}


#: Default episode length (frames): 1000 frames is 33 s of video at 30 fps.
DEFAULT_EPISODE_FRAMES = EnvConfig.episode_frames
