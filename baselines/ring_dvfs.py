"""Ring-DVFS: tabular Q-learning of one voltage-frequency level per frame, with a reliability penalty.

Source (``/work/shared/CALIBRATION.md``, section "Ring-DVFS"): Yeganeh-Khaksar et al., Ring-DVFS, IEEE
Embedded Systems Letters 13(3), 2020. Q-learning DVFS for sporadic real-time tasks on multicore CPUs: it picks one
voltage-frequency (V/f) level, rewarding power saving and penalising loss of reliability and missed deadlines.
The reliability model is the one of that literature (Zhu, Melhem, Mossé 2004): the transient fault rate at
normalised frequency ``f`` (``f / f_max``) is ``λ(f) = λ0 · 10^(d·(1 − f)/(1 − f_min))`` and a job of length
``t`` survives with probability ``R = exp(−λ(f)·t)``. ``λ0 = 1e-6`` per second and ``d = 3`` are the usual
constants of that literature; the paper's own values were not found (an assumption, see CALIBRATION.md). E4's
comparison extends Ring-DVFS from CPU-only to CPU+GPU; this module does the same.

How Ring-DVFS maps onto ``e4gym/EarlyExitDVFS-v1`` (one step = one frame):

- **Action** (:class:`RingDVFSAgent`): one normalised V/f level ``k`` in ``0..K−1`` (``K = 8`` by default, an
  assumption) applied to both clock domains proportionally, ``cpu_level = round(k/(K−1) · max_cpu)`` and
  ``gpu_level = round(k/(K−1) · max_gpu)`` (the power mode's highest allowed levels; rounding half up).
  Ring-DVFS picks *one* V/f level; keeping one knob is the closest extension to two domains and keeps the
  Q-table small (8 actions instead of the 25 × 15 = 375 CPU × GPU pairs of Xavier NX, which a tabular learner
  could not explore in a few thousand frames). The exit is fixed (``exit``, default the last: Ring-DVFS does
  not early-exit); the memory clock stays at its highest allowed level.
- **State** (:meth:`RingDVFSAgent.state_index`): three binned measurements of the previous frame, read from
  the observation and the last ``info`` (what a deployed governor sees):

  | component | value | default bin edges | bins |
  |---|---|---|---|
  | load | ``run_ms / period``: share of the frame period the network ran (0 before a frame) | 0.25, 0.5, 0.75, 1 | 5 |
  | slack | ``1 − latency / deadline`` (observation ``latency``, queueing included; < 0: missed) | −1, 0, 0.1, 0.3 | 5 |
  | temperature | ``(T − T_ambient) / (T_trip − T_ambient)`` (observation ``temperature``) | 0.25, 0.5, 0.8 | 4 |

  A value equal to an edge goes to the upper bin (``numpy.digitize``); 5 · 5 · 4 = 100 states by default.
  The slack bins separate a backlog (slack <= −1: the frame waited at least a whole deadline in the queue)
  from a plain miss, a tight frame (< 10 % slack), some slack and ample slack.
- **Reward** (:meth:`RingDVFSAgent.reward`), per frame:
  ``r = w_P · (1 − E/E_ref) − w_D · missed − w_Q · (B' − B) − w_R · (1 − R)/U_ref`` with ``E`` the frame's
  energy as the board's power monitor reports it (J, ``info["measured_energy_j"]``, run plus idle until the
  next arrival: the frame's share of average power over the period; a learner on the board sees no other),
  ``E_ref`` the env's reference energy (a full-network frame at the top clocks), ``missed`` the deadline flag,
  ``B = max(0, latency − period) / deadline`` the queueing delay a frame leaves to the next one (``B`` after the
  previous frame, ``B'`` after this one; 0 at an episode's start), ``R`` the frame's reliability and ``U_ref``
  the failure probability of a job of one frame period at the lowest CPU and GPU clocks (so the reliability
  term is about 1 for a whole period at the bottom levels). Defaults ``w_P = 1``, ``w_D = 2``, ``w_Q = 1``,
  ``w_R = 1`` (assumptions). The queue term is an adaptation: Ring-DVFS's sporadic tasks drop a late job,
  while the env queues late frames, so a backlog makes every following frame miss whatever the level and a
  flat miss penalty tells the levels apart only through a discounted future tens of frames away. Charging the
  growth of the backlog (and crediting its draining) frame by frame gives that signal at once; it is zero
  whenever frames do not queue.
- **Reliability of a frame** (:func:`frame_reliability`): ``R = R_cpu · R_gpu``, each domain with its own
  normalised clock (``info`` ``cpu_hz`` / ``gpu_hz`` over the top allowed frequency) and ``f_min``, over the
  frame's run time (``run_ms``): both domains are busy for the whole run and a fault in either corrupts it.
- **Learning**: Q-learning, ``Q(s,a) += α (r + γ max_a' Q(s',a') − Q(s,a))`` (the ``max`` over the greedy
  candidates below; no bootstrap on termination, which the endless stream never has), ε-greedy with ε decaying
  linearly from ``epsilon_start`` to ``epsilon_end`` over ``epsilon_decay_steps`` steps. Every hyper-parameter
  is an assumption collected in :class:`RingDVFSConfig`.
- **Greedy choice** (training's exploitation, the ``max`` of the target, and :class:`RingDVFSPolicy`): the
  level of highest Q among the levels *tried* in the state plus the top level, ties going to the higher
  level. A state never visited in training therefore runs at the top level (the safe real-time default: it
  meets every deadline that can be met), and an untried low level never wins on its initial Q: where no level
  saves energy (the top level's reward is slightly negative) plain ``argmax`` would pick an untried level at
  ``q_init = 0``, e.g. the lowest, and miss every deadline after it.

Training is resumable bit for bit: :meth:`RingDVFSAgent.save` writes the Q-table, visit counts, counters,
the agent's RNG state and the episode in progress (its reset seed and the levels taken so far);
:meth:`RingDVFSAgent.learn` after :meth:`RingDVFSAgent.load` replays that episode's actions on the env (which
is deterministic given its reset seed and the actions) and continues with the same Q updates as an
uninterrupted run.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from e4gym.envs.common import EnvSetup
from e4gym.errors import ConfigError
from e4gym.io import atomic_write
from e4gym.policy import PolicyContext, not_bound

#: Transient fault rate at the top frequency (faults per second), Zhu, Melhem & Mossé 2004 via CALIBRATION.md
#: ("Ring-DVFS"); the Ring-DVFS paper's own value was not found (assumption).
LAMBDA0_PER_S = 1e-6
#: Sensitivity of the fault rate to scaling: λ grows by ``10^d`` from the top to the lowest frequency
#: (Zhu, Melhem & Mossé 2004 via CALIBRATION.md; assumption as for :data:`LAMBDA0_PER_S`).
FAULT_EXPONENT_D = 3.0
#: Format tag of the files :meth:`RingDVFSAgent.save` writes.
FILE_FORMAT = "e4gym-ring-dvfs-1"

#: ``callback(step, stats) -> bool | None`` of :meth:`RingDVFSAgent.learn`; ``False`` stops training.
Callback = Callable[[int, dict[str, float]], "bool | None"]


# ---------------------------------------------------------------------------------------------- reliability


def fault_rate(f_norm: Any, f_min_norm: float, lam0: float = LAMBDA0_PER_S, d: float = FAULT_EXPONENT_D) -> Any:
    """Transient fault rate ``λ(f) = λ0 · 10^(d·(1 − f)/(1 − f_min))`` (faults per second).

    Args:
        f_norm: clock frequency over the top frequency (scalar or array, in ``[f_min_norm, 1]``; values
            outside are clipped to that range).
        f_min_norm: lowest frequency over the top frequency, in ``(0, 1)``.
        lam0: fault rate at the top frequency (1/s). d: the exponent (λ at ``f_min`` is ``λ0 · 10^d``).

    Raises:
        ConfigError: ``f_min_norm`` not in ``(0, 1)``, ``lam0`` not > 0, or ``d`` not >= 0.
    """
    if not (isinstance(f_min_norm, (int, float, np.floating)) and 0.0 < float(f_min_norm) < 1.0):
        raise ConfigError(f"f_min_norm must be in (0, 1) (lowest / top frequency), got {f_min_norm!r}")
    if not (math.isfinite(lam0) and lam0 > 0):
        raise ConfigError(f"lam0 must be a finite fault rate > 0 (1/s), got {lam0!r}")
    if not (math.isfinite(d) and d >= 0):
        raise ConfigError(f"d must be a finite number >= 0, got {d!r}")
    f = np.clip(f_norm, f_min_norm, 1.0)
    out = lam0 * np.power(10.0, d * (1.0 - f) / (1.0 - f_min_norm))
    return float(out) if np.ndim(out) == 0 else out


def reliability(f_norm: Any, t_s: Any, f_min_norm: float, lam0: float = LAMBDA0_PER_S,
                d: float = FAULT_EXPONENT_D) -> Any:
    """Probability that a job of ``t_s`` seconds at normalised frequency ``f_norm`` has no transient fault:
    ``exp(−λ(f) · t)`` (:func:`fault_rate`). ``t_s`` must be >= 0 (s).

    Raises:
        ConfigError: a negative ``t_s``, or bad ``f_min_norm`` / ``lam0`` / ``d`` (see :func:`fault_rate`).
    """
    t = np.asarray(t_s, dtype=np.float64)
    if np.any(t < 0) or not np.all(np.isfinite(t)):
        raise ConfigError(f"t_s must be a finite time >= 0 (s), got {t_s!r}")
    out = np.exp(-fault_rate(f_norm, f_min_norm, lam0, d) * t)
    return float(out) if np.ndim(out) == 0 else out


def frame_reliability(cpu_norm: float, gpu_norm: float, run_s: float, cpu_min_norm: float, gpu_min_norm: float,
                      lam0: float = LAMBDA0_PER_S, d: float = FAULT_EXPONENT_D) -> float:
    """Reliability of one frame on CPU+GPU: ``R_cpu · R_gpu`` over the frame's run time ``run_s`` (s), each
    domain at its own normalised clock (``cpu_norm``, ``gpu_norm``) with its own lowest normalised clock."""
    return float(reliability(cpu_norm, run_s, cpu_min_norm, lam0, d) * reliability(gpu_norm, run_s, gpu_min_norm,
                                                                                   lam0, d))


# ---------------------------------------------------------------------------------------------- config


@dataclass(frozen=True)
class RingDVFSConfig:
    """Every constant of the Ring-DVFS baseline in one place.

    Cited (CALIBRATION.md, "Ring-DVFS"): ``lam0_per_s`` (λ0, faults/s) and ``d`` of the fault-rate model.
    Everything else is an ASSUMPTION of this re-implementation (the letter's values were not available):

    Attributes:
        n_levels: K, the number of normalised V/f levels (actions), >= 2.
        load_edges: bin edges of the load, ``run_ms / frame period`` (fraction of the period).
        slack_edges: bin edges of the slack, ``1 − latency / deadline`` (fraction of the deadline).
        temp_edges: bin edges of the temperature, ``(T − T_ambient) / (T_trip − T_ambient)``.
        alpha: Q-learning rate, in (0, 1]. gamma: discount, in [0, 1).
        epsilon_start / epsilon_end: exploration probability at step 0 / after the decay, in [0, 1].
        epsilon_decay_steps: steps of the linear ε decay (>= 1).
        w_power / w_deadline / w_queue / w_reliability: reward weights (>= 0) of the power saving
            ``1 − E/E_ref``, of a missed deadline, of the growth of the queueing backlog (in deadlines), and of
            the normalised reliability loss ``(1 − R)/U_ref`` (see the module docstring).
        q_init: initial Q value of every (state, action).
    """

    lam0_per_s: float = LAMBDA0_PER_S
    d: float = FAULT_EXPONENT_D
    n_levels: int = 8
    load_edges: tuple[float, ...] = (0.25, 0.5, 0.75, 1.0)
    slack_edges: tuple[float, ...] = (-1.0, 0.0, 0.1, 0.3)
    temp_edges: tuple[float, ...] = (0.25, 0.5, 0.8)
    alpha: float = 0.1
    gamma: float = 0.9
    epsilon_start: float = 1.0
    epsilon_end: float = 0.05
    epsilon_decay_steps: int = 3000
    w_power: float = 1.0
    w_deadline: float = 2.0
    w_queue: float = 1.0
    w_reliability: float = 1.0
    q_init: float = 0.0

    def __post_init__(self) -> None:
        def num(name: str) -> float:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not math.isfinite(v):
                raise ConfigError(f"RingDVFSConfig.{name} must be a finite number, got {v!r}")
            return float(v)

        if num("lam0_per_s") <= 0:
            raise ConfigError(f"RingDVFSConfig.lam0_per_s must be > 0 (faults per second), got {self.lam0_per_s!r}")
        for name in ("d", "w_power", "w_deadline", "w_queue", "w_reliability"):
            if num(name) < 0:
                raise ConfigError(f"RingDVFSConfig.{name} must be >= 0, got {getattr(self, name)!r}")
        for name in ("n_levels", "epsilon_decay_steps"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < (2 if name == "n_levels" else 1):
                lo = 2 if name == "n_levels" else 1
                raise ConfigError(f"RingDVFSConfig.{name} must be an integer >= {lo}, got {v!r}")
        if not 0 < num("alpha") <= 1:
            raise ConfigError(f"RingDVFSConfig.alpha must be in (0, 1], got {self.alpha!r}")
        if not 0 <= num("gamma") < 1:
            raise ConfigError(f"RingDVFSConfig.gamma must be in [0, 1), got {self.gamma!r}")
        for name in ("epsilon_start", "epsilon_end"):
            if not 0 <= num(name) <= 1:
                raise ConfigError(f"RingDVFSConfig.{name} must be a probability in [0, 1], got {getattr(self, name)!r}")
        num("q_init")
        for name in ("load_edges", "slack_edges", "temp_edges"):
            e = getattr(self, name)
            ok = isinstance(e, (tuple, list)) and len(e) >= 1 and all(
                isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in e)
            if not ok or any(b <= a for a, b in itertools.pairwise(e)):
                raise ConfigError(f"RingDVFSConfig.{name} must be a non-empty, strictly increasing tuple of finite "
                                  f"numbers, got {e!r}")
            object.__setattr__(self, name, tuple(float(x) for x in e))

    @property
    def n_states(self) -> int:
        """Number of discrete states: (load bins) · (slack bins) · (temperature bins)."""
        return (len(self.load_edges) + 1) * (len(self.slack_edges) + 1) * (len(self.temp_edges) + 1)

    def to_dict(self) -> dict[str, Any]:
        """The config as JSON-able values (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RingDVFSConfig:
        """Inverse of :meth:`to_dict`. Raises ConfigError on unknown keys or invalid values."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown RingDVFSConfig field(s) {unknown}; fields: {sorted(known)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})


# ---------------------------------------------------------------------------------------------- env identity


def level_map(n_levels: int, max_cpu: int, max_gpu: int) -> np.ndarray:
    """``(n_levels, 2)`` int array: the (cpu_level, gpu_level) of each normalised level ``k``, i.e.
    ``round(k/(K−1) · max)`` per domain, rounding half up."""
    k = np.arange(n_levels, dtype=np.float64) / (n_levels - 1)
    return np.stack([np.floor(k * max_cpu + 0.5), np.floor(k * max_gpu + 0.5)], axis=1).astype(np.int64)


def _identity(setup: EnvSetup) -> dict[str, Any]:
    """What a Q-table is tied to: the device, its allowed level counts and the model's number of exits."""
    return {"device": setup.spec.name, "power_mode": setup.power_mode, "max_cpu_level": int(setup.max_levels[0]),
            "max_gpu_level": int(setup.max_levels[1]), "n_exits": int(setup.profile.n_exits)}


def _scenario(setup: EnvSetup) -> dict[str, Any]:
    """The env configuration an unfinished episode can only be replayed in (besides the identity)."""
    return {"model": setup.profile.name, "fps": float(setup.fps), "deadline_s": float(setup.deadline_s),
            "episode_frames": int(setup.episode_frames), "control_memory": bool(setup.control_memory),
            "power_mode": setup.power_mode}


def _check_identity(have: dict[str, Any], setup: EnvSetup, what: str) -> None:
    want = _identity(setup)
    if have["device"] != want["device"] or any(
            have[k] != want[k] for k in ("max_cpu_level", "max_gpu_level", "n_exits")):
        raise ConfigError(
            f"{what} was trained on {have['device']} (power mode {have['power_mode']}, CPU levels "
            f"0..{have['max_cpu_level']}, GPU levels 0..{have['max_gpu_level']}, {have['n_exits']} exits) but the env "
            f"runs {want['device']} (power mode {want['power_mode']}, CPU levels 0..{want['max_cpu_level']}, GPU "
            f"levels 0..{want['max_gpu_level']}, {want['n_exits']} exits); train it on this device and power mode"
        )


def _check_governors(setup: EnvSetup, what: str) -> None:
    if setup.governors is not None:
        raise ConfigError(f"{what} sets the CPU and GPU levels itself; build the env without governors= "
                          f"(got governors={setup.governors!r}, which would ignore its levels)")


# ---------------------------------------------------------------------------------------------- agent


class _Binding:
    """Per-env constants of an agent: action table, observation indices, reliability normalisation."""

    def __init__(self, cfg: RingDVFSConfig, setup: EnvSetup, obs_names: tuple[str, ...], exit: int) -> None:
        n = setup.profile.n_exits
        if isinstance(exit, bool) or not isinstance(exit, (int, np.integer)) or not -n <= exit < n:
            raise ConfigError(f"exit must be an integer in 0..{n - 1} (or -1 for the last exit) of "
                              f"{setup.profile.name}, got {exit!r}")
        for name in ("latency", "temperature"):
            if name not in obs_names:
                raise ConfigError(f"Ring-DVFS reads the observation field '{name}', which this env lacks "
                                  f"(fields: {list(obs_names)}); use e4gym/EarlyExitDVFS-v1")
        self.exit = int(exit) % n
        mx = setup.max_levels
        self.levels = level_map(cfg.n_levels, mx[0], mx[1])
        self.emc = int(mx[2]) if setup.control_memory else None
        self.i_lat = obs_names.index("latency")
        self.i_temp = obs_names.index("temperature")
        self.period_ms = setup.period_s * 1e3
        self.deadline_s = setup.deadline_s
        spec = setup.spec
        self.cpu_top = float(spec.cpu_freqs_hz[mx[0]])
        self.gpu_top = float(spec.gpu_freqs_hz[mx[1]])
        self.cpu_min = float(spec.cpu_freqs_hz[0]) / self.cpu_top
        self.gpu_min = float(spec.gpu_freqs_hz[0]) / self.gpu_top
        if not (0 < self.cpu_min < 1 and 0 < self.gpu_min < 1):
            raise ConfigError(f"{spec.name} in power mode {setup.power_mode} has a single CPU or GPU level: "
                              "Ring-DVFS needs a frequency range to scale")
        lam = cfg.lam0_per_s * 2 * 10.0 ** cfg.d  # both domains at their lowest clock
        self.u_ref = -math.expm1(-lam * setup.period_s)
        self.energy_ref_j = float(setup.energy_ref_j)

    def action(self, k: int) -> np.ndarray:
        c, g = self.levels[k]
        vals = [self.exit, int(c), int(g)] + ([self.emc] if self.emc is not None else [])
        return np.array(vals, dtype=np.int64)


class RingDVFSAgent:
    """Tabular Q-learning over (load, slack, temperature) states and K proportional CPU+GPU V/f levels.

    Args:
        config: the constants (:class:`RingDVFSConfig`; default the documented assumptions).
        exit: the exit every frame takes (0-based; ``-1``: the last, the full network).
        seed: seed of the agent's own RNG (``numpy.random.Generator`` on PCG64), which draws the exploration
            and the reset seed of every training episode. ``None``: fresh entropy.

    Attributes:
        q: ``(n_states, n_levels)`` Q-table (float64). visits: same shape, update counts per (state, action).
        num_timesteps: frames trained on so far. num_episodes: training episodes finished.
        identity: the env the agent is tied to (device, power mode, highest CPU/GPU levels, number of exits),
            set by the first :meth:`learn` or :meth:`bind`; ``None`` before.

    Raises:
        ConfigError: ``config`` is not a :class:`RingDVFSConfig`, or ``exit`` is not an integer.
    """

    def __init__(self, config: RingDVFSConfig | None = None, exit: int = -1, seed: int | None = None) -> None:
        cfg = RingDVFSConfig() if config is None else config
        if not isinstance(cfg, RingDVFSConfig):
            raise ConfigError(f"config must be a RingDVFSConfig, got {config!r}")
        if isinstance(exit, bool) or not isinstance(exit, (int, np.integer)):
            raise ConfigError(f"exit must be an integer (-1: the last exit), got {exit!r}")
        self.config = cfg
        self.exit = int(exit)
        self.q = np.full((cfg.n_states, cfg.n_levels), float(cfg.q_init))
        self.visits = np.zeros((cfg.n_states, cfg.n_levels), dtype=np.int64)
        self.num_timesteps = 0
        self.num_episodes = 0
        self.identity: dict[str, Any] | None = None
        self.rng = np.random.Generator(np.random.PCG64(seed))
        self._bound: _Binding | None = None
        self._bound_key: tuple[EnvSetup, tuple[str, ...]] | None = None
        # The episode in progress: reset seed, scenario, levels taken, accumulated statistics.
        self._episode: dict[str, Any] | None = None

    # -------------------------------------------------------------------------------------- env binding

    def bind(self, setup: EnvSetup, obs_names: tuple[str, ...]) -> None:
        """Tie the agent to an env setup (first call) or check it is the same device (later calls).

        Raises:
            ConfigError: another device, power mode level range or number of exits than the agent was trained
                for, an env driven by kernel governors, or an observation without ``latency``/``temperature``.
        """
        _check_governors(setup, "Ring-DVFS")
        if self.identity is not None:
            _check_identity(self.identity, setup, "this Ring-DVFS agent")
        key = (setup, tuple(obs_names))
        if self._bound_key is None or self._bound_key[0] is not setup or self._bound_key[1] != key[1]:
            self._bound = _Binding(self.config, setup, tuple(obs_names), self.exit)
            self._bound_key = key
        if self.identity is None:
            self.identity = _identity(setup)

    def _binding(self) -> _Binding:
        if self._bound is None:
            raise ConfigError("the Ring-DVFS agent is not bound to an env: call learn(env, ...) or bind(setup, "
                              "obs_names) first")
        return self._bound

    # -------------------------------------------------------------------------------------- model pieces

    def state_index(self, obs: np.ndarray, info: dict[str, Any] | None) -> int:
        """The discrete state of the previous frame (see the module docstring's table).

        ``obs`` is the frame env's observation; ``info`` the last step's info (``run_ms``; an empty dict or
        ``None`` before the first frame: load 0).
        """
        b, c = self._binding(), self.config
        run_ms = float((info or {}).get("run_ms", 0.0))
        load = run_ms / b.period_ms
        slack = 1.0 - float(obs[b.i_lat])
        temp = float(obs[b.i_temp])
        i_l = int(np.digitize(load, c.load_edges))
        i_s = int(np.digitize(slack, c.slack_edges))
        i_t = int(np.digitize(temp, c.temp_edges))
        return (i_l * (len(c.slack_edges) + 1) + i_s) * (len(c.temp_edges) + 1) + i_t

    def backlog(self, info: dict[str, Any] | None) -> float:
        """Queueing delay the frame of ``info`` leaves to the next one, in deadlines:
        ``max(0, latency − period) / deadline`` (0 for an empty info or the reset info)."""
        b = self._binding()
        late_ms = float((info or {}).get("latency_ms", 0.0)) - b.period_ms
        return late_ms / (b.deadline_s * 1e3) if late_ms > 0 else 0.0

    def reward(self, info: dict[str, Any], prev_info: dict[str, Any] | None = None) -> tuple[float, dict[str, float]]:
        """Ring-DVFS reward of a finished frame from its ``info`` (and the previous frame's, for the backlog
        it inherited; ``None`` at an episode's start), and its parts.

        Returns ``(r, parts)``: ``parts`` has ``power_saving`` (``1 − E/E_ref``, ``E`` the frame's energy as the
        board's power monitor reports it, ``measured_energy_j``: what a learner on the board can read),
        ``missed`` (0/1),
        ``backlog_growth`` (``B' − B``, deadlines), ``reliability`` (``R``, probability) and
        ``reliability_loss`` (``(1 − R)/U_ref``).
        """
        b, c = self._binding(), self.config
        saving = 1.0 - float(info["measured_energy_j"]) / b.energy_ref_j
        missed = 1.0 if info["deadline_missed"] else 0.0
        # R = R_cpu · R_gpu = exp(−(λ_cpu + λ_gpu)·t) (frame_reliability); 1 − R via expm1 keeps its precision.
        lam = fault_rate(float(info["cpu_hz"]) / b.cpu_top, b.cpu_min, c.lam0_per_s, c.d) + fault_rate(
            float(info["gpu_hz"]) / b.gpu_top, b.gpu_min, c.lam0_per_s, c.d)
        x = -lam * float(info["run_ms"]) * 1e-3
        rel = math.exp(x)
        loss = -math.expm1(x) / b.u_ref
        growth = self.backlog(info) - self.backlog(prev_info)
        r = c.w_power * saving - c.w_deadline * missed - c.w_queue * growth - c.w_reliability * loss
        return r, {"power_saving": saving, "missed": missed, "backlog_growth": growth, "reliability": rel,
                   "reliability_loss": loss}

    @property
    def epsilon(self) -> float:
        """Exploration probability at the current step (linear decay, then constant)."""
        c = self.config
        frac = min(1.0, self.num_timesteps / c.epsilon_decay_steps)
        return c.epsilon_start + frac * (c.epsilon_end - c.epsilon_start)

    def _candidates(self, state: int) -> np.ndarray:
        """Q of ``state`` over the levels the greedy choice may take (the tried ones and the top level);
        ``-inf`` elsewhere."""
        row = np.where(self.visits[state] > 0, self.q[state], -np.inf)
        row[-1] = self.q[state, -1]
        return row

    def greedy_level(self, state: int) -> int:
        """The level of highest Q in ``state`` among the levels tried there and the top level, ties going to
        the higher level. A never-visited state runs at the top level, the safe real-time default that meets
        every deadline that can be met; an untried lower level is never picked greedily (its ``q_init`` would
        look better than the slightly negative value of the top level where no level saves energy)."""
        row = self._candidates(state)
        return len(row) - 1 - int(np.argmax(row[::-1]))

    def state_value(self, state: int) -> float:
        """``max`` of Q over the greedy candidates of ``state`` (the bootstrap of the Q-learning target)."""
        return float(self._candidates(state).max())

    def action(self, level: int) -> np.ndarray:
        """The env action ``[exit, cpu_level, gpu_level(, emc_level)]`` of normalised level ``level``."""
        return self._binding().action(level)

    def predict(self, obs: np.ndarray, info: dict[str, Any] | None) -> np.ndarray:
        """The greedy env action for the observation and the last info (the agent must be bound)."""
        return self.action(self.greedy_level(self.state_index(obs, info)))

    # -------------------------------------------------------------------------------------- learning

    def learn(self, env: Any, total_steps: int, seed: int | None = None,
              callback: Callback | None = None) -> RingDVFSAgent:
        """Train for ``total_steps`` frames on ``env`` (an ``e4gym/EarlyExitDVFS-v1`` env); returns ``self``.

        Each episode is reset with a seed drawn from the agent's RNG. An episode left unfinished by an earlier
        call (or saved with it) is resumed by resetting the env with its seed and replaying its levels, so
        ``learn(n); save; load; learn(m)`` makes exactly the Q updates of ``learn(n + m)``. When the env's
        scenario (model, fps, deadline, episode length, power mode) differs from that episode's, a new episode
        starts instead.

        Args:
            env: the env (the agent reads ``env.unwrapped.setup`` and ``obs_names``).
            total_steps: frames to train on in this call (>= 0).
            seed: reseed the agent's RNG and drop the unfinished episode (the Q-table is kept). Leave ``None``
                to continue a run exactly.
            callback: ``callback(step, stats)`` after every frame, ``step`` being :attr:`num_timesteps`;
                ``stats`` has ``reward``, ``level``, ``epsilon``, ``energy_j``, ``missed``, ``reliability``,
                and at an episode's last frame also ``episode_reward`` (sum), ``episode_frames``,
                ``energy_per_frame_j`` (J), ``deadline_miss_rate``, ``mean_reliability``, ``mean_level``.
                Returning ``False`` stops training after that frame.

        Raises:
            ConfigError: ``total_steps`` not an integer >= 0, or an env the agent cannot train on (see
                :meth:`bind`).
        """
        if isinstance(total_steps, bool) or not isinstance(total_steps, (int, np.integer)) or total_steps < 0:
            raise ConfigError(f"total_steps must be an integer >= 0 (frames), got {total_steps!r}")
        base = env.unwrapped
        setup: EnvSetup = base.setup
        self.bind(setup, tuple(base.obs_names))
        if seed is not None:
            self.rng = np.random.Generator(np.random.PCG64(seed))
            self._episode = None
        cfg = self.config
        q, visits, rng = self.q, self.visits, self.rng
        alpha, gamma, n_levels = cfg.alpha, cfg.gamma, cfg.n_levels
        state = -1
        prev: dict[str, Any] = {}
        done = 0
        while done < total_steps:
            if state < 0:
                state, prev = self._start_episode(env, setup)
            ep = self._episode
            assert ep is not None
            explore = rng.random() < self.epsilon
            a = int(rng.integers(n_levels)) if explore else self.greedy_level(state)
            obs, _, terminated, truncated, info = env.step(self.action(a))
            r, parts = self.reward(info, prev)
            prev = info
            nxt = self.state_index(obs, info)
            target = r if terminated else r + gamma * self.state_value(nxt)
            q[state, a] += alpha * (target - q[state, a])
            visits[state, a] += 1
            self.num_timesteps += 1
            done += 1
            ep["actions"].append(a)
            acc = ep["acc"]
            acc["reward"] += r
            acc["energy_j"] += float(info["energy_j"])
            acc["missed"] += parts["missed"]
            acc["reliability"] += parts["reliability"]
            acc["level"] += a
            stats = {"reward": r, "level": float(a), "epsilon": self.epsilon, "energy_j": float(info["energy_j"]),
                     "missed": parts["missed"], "reliability": parts["reliability"]}
            state = nxt
            if terminated or truncated:
                n = len(ep["actions"])
                stats.update(episode_reward=acc["reward"], episode_frames=float(n),
                             energy_per_frame_j=acc["energy_j"] / n, deadline_miss_rate=acc["missed"] / n,
                             mean_reliability=acc["reliability"] / n, mean_level=acc["level"] / n)
                self.num_episodes += 1
                self._episode = None
                state = -1
            if callback is not None and callback(self.num_timesteps, stats) is False:
                break
        return self

    def _start_episode(self, env: Any, setup: EnvSetup) -> tuple[int, dict[str, Any]]:
        """Reset ``env`` for the episode in progress (replaying its levels) or a new one; returns the current
        state and the last info."""
        ep = self._episode
        if ep is not None and ep["scenario"] == _scenario(setup):
            obs, info = env.reset(seed=ep["seed"])
            for a in ep["actions"]:
                obs, _, _, _, info = env.step(self.action(a))
            return self.state_index(obs, info), info
        seed = int(self.rng.integers(0, 2**31 - 1))
        self._episode = {"seed": seed, "scenario": _scenario(setup), "actions": [],
                         "acc": {"reward": 0.0, "energy_j": 0.0, "missed": 0.0, "reliability": 0.0, "level": 0.0}}
        obs, info = env.reset(seed=seed)
        return self.state_index(obs, info), info

    # -------------------------------------------------------------------------------------- persistence

    def save(self, path: str | Path) -> Path:
        """Write everything :meth:`learn` needs to continue exactly to ``path`` (a ``.npz``); returns the path.

        Contents: the Q-table and visit counts (arrays), and a JSON header with the format tag, the config,
        the exit, the counters, the RNG's bit-generator state, the env identity and the unfinished episode.
        """
        path = Path(path)
        ep = self._episode
        meta = {"format": FILE_FORMAT, "config": self.config.to_dict(), "exit": self.exit,
                "num_timesteps": self.num_timesteps, "num_episodes": self.num_episodes,
                "rng_state": self.rng.bit_generator.state, "identity": self.identity,
                "episode": None if ep is None else {"seed": ep["seed"], "scenario": ep["scenario"],
                                                    "acc": ep["acc"]}}
        actions = np.asarray([] if ep is None else ep["actions"], dtype=np.int64)
        atomic_write(path, lambda f: np.savez(f, q=self.q, visits=self.visits, episode_actions=actions,
                                              meta=np.array(json.dumps(meta))))
        return path

    @classmethod
    def load(cls, path: str | Path) -> RingDVFSAgent:
        """Read an agent written by :meth:`save` (it continues training exactly where it stopped).

        Raises:
            ConfigError: the file is missing, unreadable, not a Ring-DVFS file, or inconsistent (names the file).
        """
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"Ring-DVFS agent file {path} does not exist (train one with RingDVFSAgent.learn "
                              "and save it)")
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
            meta = json.loads(str(arrays["meta"][()]))
        except Exception as exc:  # zip, npy and JSON readers raise several types for a corrupt file
            raise ConfigError(f"{path} is not a readable Ring-DVFS agent file ({type(exc).__name__}: {exc})") from None
        if not isinstance(meta, dict) or meta.get("format") != FILE_FORMAT:
            raise ConfigError(f"{path} is not a Ring-DVFS agent file (no '{FILE_FORMAT}' format tag)")
        try:
            cfg = RingDVFSConfig.from_dict(meta["config"])
            agent = cls(cfg, exit=int(meta["exit"]), seed=0)
            q = np.asarray(arrays["q"], dtype=np.float64)
            visits = np.asarray(arrays["visits"], dtype=np.int64)
            shape = (cfg.n_states, cfg.n_levels)
            if q.shape != shape or visits.shape != shape:
                raise ValueError(f"Q-table shape {q.shape} / visits {visits.shape} do not match the config's {shape}")
            agent.q, agent.visits = q.copy(), visits.copy()
            agent.num_timesteps = int(meta["num_timesteps"])
            agent.num_episodes = int(meta["num_episodes"])
            rs = meta["rng_state"]
            if rs.get("bit_generator") != "PCG64":
                raise ValueError(f"RNG {rs.get('bit_generator')!r} is not PCG64")
            agent.rng.bit_generator.state = rs
            ident = meta["identity"]
            if ident is not None and not (isinstance(ident, dict) and {"device", "power_mode", "max_cpu_level",
                                                                         "max_gpu_level", "n_exits"} <= set(ident)):
                raise ValueError(f"bad env identity {ident!r}")
            agent.identity = ident
            ep = meta["episode"]
            if ep is not None:
                acts = [int(a) for a in np.asarray(arrays["episode_actions"]).tolist()]
                if any(not 0 <= a < cfg.n_levels for a in acts):
                    raise ValueError("unfinished episode has levels outside the action range")
                agent._episode = {"seed": int(ep["seed"]), "scenario": dict(ep["scenario"]), "actions": acts,
                                  "acc": {k: float(v) for k, v in ep["acc"].items()}}
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ConfigError(f"{path} is not a consistent Ring-DVFS agent file ({type(exc).__name__}: {exc})") \
                from None
        return agent

    def policy(self, name: str = "ring-dvfs") -> RingDVFSPolicy:
        """The greedy policy of this agent for the benchmark harness."""
        return RingDVFSPolicy(agent=self, name=name)

    def __repr__(self) -> str:
        dev = self.identity["device"] if self.identity else "unbound"
        return (f"RingDVFSAgent({dev}, exit={self.exit}, levels={self.config.n_levels}, "
                f"steps={self.num_timesteps}, episodes={self.num_episodes})")


# ---------------------------------------------------------------------------------------------- policy


def _env_from_setup(setup: EnvSetup, episode_frames: int) -> Any:
    """A fresh frame env with the resolved arguments of ``setup`` but ``episode_frames`` frames an episode
    (for training at bind)."""
    from e4gym.envs.frame import EarlyExitDVFSEnv

    return EarlyExitDVFSEnv(
        device=setup.spec, model=setup.profile, workload=setup.workload, workload_kwargs=setup.workload_kwargs or None,
        fps=setup.fps, deadline_ms=setup.deadline_s * 1e3, reward_weights=setup.weights,
        control_memory=setup.control_memory, power_mode=setup.power_mode, episode_frames=episode_frames,
        fan=setup.cooling.fan, ambient_c=setup.cooling.ambient_c, initial_temp_c=setup.initial_temp_c,
    )


class RingDVFSPolicy:
    """The greedy policy of a trained :class:`RingDVFSAgent`, in the harness's Policy protocol.

    Args:
        path: a file written by :meth:`RingDVFSAgent.save`.
        agent: a trained agent (instead of ``path``).
        exit: the exit every frame takes; ``None``: the agent's (``-1``, the last, when it trains at bind).
            An exit other than the one the agent was trained with is refused.
        name: display name.
        train_steps: with neither ``path`` nor ``agent``, :meth:`bind` trains a fresh agent for this many
            frames on a copy of the bound env (Ring-DVFS learns online; about 0.07 s per 1000 frames) and keeps
            it for later binds to the same scenario.
        train_episode_frames: episode length (frames) of that training env. Short episodes matter: early in
            training the random levels build a queue that lasts to the episode's end, so long episodes leave
            few visits to the states where frames keep their deadlines.
        seed: seed of that agent.

    ``predict`` reads the observation and ``context.last_info`` (the previous frame's ``run_ms``) and returns
    ``[exit, cpu_level, gpu_level(, emc_level)]``.

    Raises:
        ConfigError: both ``path`` and ``agent``, a non-agent ``agent``, an unreadable file, or an exit that
            contradicts the agent's.
    """

    clairvoyant = False

    def __init__(self, path: str | Path | None = None, agent: RingDVFSAgent | None = None, exit: int | None = None,
                 name: str = "ring-dvfs", train_steps: int = 10000, train_episode_frames: int = 200,
                 seed: int = 0) -> None:
        if path is not None and agent is not None:
            raise ConfigError("give RingDVFSPolicy either path= or agent=, not both")
        if path is not None:
            agent = RingDVFSAgent.load(path)
        if agent is not None and not isinstance(agent, RingDVFSAgent):
            raise ConfigError(f"agent must be a RingDVFSAgent, got {agent!r}")
        if exit is not None and (isinstance(exit, bool) or not isinstance(exit, (int, np.integer))):
            raise ConfigError(f"exit must be an integer (-1: the last exit) or None, got {exit!r}")
        for label, v in (("train_steps", train_steps), ("train_episode_frames", train_episode_frames)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ConfigError(f"{label} must be an integer >= 1 (frames), got {v!r}")
        if agent is not None and exit is not None and int(exit) != agent.exit:
            raise ConfigError(f"{name}: the agent was trained with exit={agent.exit}, the policy asks for exit={exit}")
        self.agent = agent
        self.exit = agent.exit if agent is not None and exit is None else (-1 if exit is None else int(exit))
        self.name = name
        self.env_kwargs: dict[str, Any] = {}
        self.train_steps = int(train_steps)
        self.train_episode_frames = int(train_episode_frames)
        self.seed = seed
        self._trains_at_bind = agent is None
        self._trained_for: tuple | None = None
        self._ctx: PolicyContext | None = None

    def bind(self, context: PolicyContext) -> None:
        """Check the env matches the agent (or train one for it) and keep the context for ``last_info``.

        Raises:
            ConfigError: the agent was trained on another device / level range / number of exits, or the env
                is driven by kernel governors.
        """
        s = context.setup
        _check_governors(s, self.name)
        if self._trains_at_bind:
            scen = {k: v for k, v in _scenario(s).items() if k != "episode_frames"}
            key = (tuple(sorted(_identity(s).items())), tuple(sorted(scen.items())), s.cooling, self.exit)
            if self.agent is None or self._trained_for != key:
                agent = RingDVFSAgent(exit=self.exit, seed=self.seed)
                env = _env_from_setup(s, self.train_episode_frames)
                try:
                    agent.learn(env, self.train_steps)
                finally:
                    env.close()
                self.agent, self._trained_for = agent, key
        assert self.agent is not None
        if self.agent.identity is not None:
            _check_identity(self.agent.identity, s, self.name)
        self.agent.bind(s, context.obs_names)
        self._ctx = context

    def predict(self, observation: np.ndarray, state: Any = None, episode_start: np.ndarray | None = None,
                deterministic: bool = True) -> tuple[np.ndarray, Any]:
        """The greedy action ``[exit, cpu_level, gpu_level(, emc_level)]``; ``state`` passes through.

        Raises:
            ConfigError: the policy was not bound to an env (:func:`e4gym.policy.bind_policy`).
        """
        if self._ctx is None or self.agent is None:
            raise not_bound(self.name)
        return self.agent.predict(np.asarray(observation), self._ctx.last_info), state

    def reset(self) -> None:
        """Stateless between frames: the state is rebuilt from the observation and the last info."""

    def __repr__(self) -> str:
        return f"RingDVFSPolicy({self.name!r}, agent={self.agent!r})"
