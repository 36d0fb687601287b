"""The single-env base of the env core: arguments, spaces, seeding, frame buffering, action checks, streaming time.

:class:`StreamEnv` is what the frame env and the block env share; their native vector version
(:mod:`e4gym.envs.frame_vector`) shares the rest of the core with them (:mod:`e4gym.envs.core`: config,
reward, observation builder, info keys; :class:`~e4gym.hardware.stream.StreamClock`: streaming time).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, NamedTuple

import gymnasium as gym
import numpy as np
from gymnasium import logger, spaces

from e4gym.envs.common import SOURCE_CHUNK, check_levels_action, flat_action, make_backend, resolve_setup
from e4gym.envs.core import (
    CONFIDENCE,
    CORRECT,
    COST_ACCURACY,
    COST_MISS,
    CPU_HZ,
    DEADLINE_MISSED,
    DVFS_SWITCHES,
    EMC_HZ,
    ENERGY_J,
    EXIT,
    FRAME,
    GPU_HZ,
    LATENCY_MS,
    MEASURED_ENERGY_J,
    POWER_W,
    PROFILING_ENERGY_J,
    PROFILING_MS,
    PROFILING_RUNS,
    RUN_MS,
    TEMP_C,
    THROTTLED,
    EnvConfig,
    ObsBuilder,
    ObsField,
    rail_keys,
)
from e4gym.errors import ConfigError
from e4gym.hardware.backend import SensorReading, bound_run_then_idle
from e4gym.hardware.costmodel import BOARD_FRAMES, BOARD_STRIDE, MeasuredCostModel, emulated_cost_model
from e4gym.hardware.stream import StreamClock
from e4gym.workload.base import COMPLEXITY_FEATURES, FrameRecord

F64, I64, B = np.float64, np.int64, np.bool_
#: ``np.float64(0.0)``, made once (NumPy scalars are immutable: one object serves every info).
F64_ZERO = F64(0.0)
_tuple_new = tuple.__new__  # builds a NamedTuple without its Python-level __new__
# ``_obs`` unpacks a frame's features into these three names (faster than a loop over the names).
if COMPLEXITY_FEATURES != ("edge_density", "motion", "contrast"):  # pragma: no cover - a guard for editors
    raise ImportError("StreamEnv._obs unpacks COMPLEXITY_FEATURES by name: update it with the feature list")
#: NumPy scalars made once: ``NP_INT[i + 1]`` is ``np.int64(i)`` for -1 <= i < 4095 (exits, frames, counts), and
#: ``NP_BOOL[flag]`` is ``np.bool_(flag)`` (making a NumPy scalar costs as much as a dozen float operations).
NP_INT = tuple(np.int64(i) for i in range(-1, 4095))
NP_BOOL = (np.False_, np.True_)
#: ``NP_COST[d + 1]`` is ``np.float64(d)`` for d in (-1, 0, 1): the constraint costs' values (COST_KEYS).
NP_COST = (F64(-1.0), F64_ZERO, F64(1.0))


def env_config(config: EnvConfig | None, kwargs: dict[str, Any], extra: tuple[str, ...] = ()) -> EnvConfig:
    """The :class:`EnvConfig` of an env constructor called with a config or keyword arguments (not both)."""
    if config is None:
        return EnvConfig.from_kwargs(kwargs, extra=extra)
    if not isinstance(config, EnvConfig):
        raise ConfigError(f"the env's positional argument is an EnvConfig; pass the rest by keyword, got {config!r}")
    if kwargs:
        raise ConfigError("pass an EnvConfig or keyword arguments to the env, not both")
    return config


class _ObsState:
    """The current value of every observation field, by field name (read by :class:`ObsBuilder`)."""


class ProfileRun(NamedTuple):
    """What a profiling run measured, as a controller on the board sees it.

    Attributes:
        latency_s: wall time of the run (s). energy_j: its energy as the power monitor reports it (J).
        temp_c: board temperature after it (°C).
    """

    latency_s: float
    energy_j: float
    temp_c: float


#: Cost models measured in this process, by configuration (measuring takes about a second per configuration).
_COST_MODELS: dict[tuple, MeasuredCostModel] = {}


class StreamEnv(gym.Env):
    """Base of :class:`~e4gym.envs.frame.EarlyExitDVFSEnv` and :class:`~e4gym.envs.block.EarlyExitDVFSBlockEnv`.

    Takes an :class:`EnvConfig` or its fields as keyword arguments, resolves them
    (:func:`~e4gym.envs.common.resolve_setup`), builds the backend, the frame source, the spaces, the
    observation builder and the stream clock, and seeds everything from ``np_random`` at reset. Subclasses
    name the first action component (:attr:`ACTION_HEAD`) and their observation fields
    (:meth:`make_obs_fields`). Not registered itself.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi"], "render_fps": 30}
    #: Name of the first action component and its number of values (``None``: the model's number of exits).
    ACTION_HEAD: ClassVar[tuple[str, int | None]] = ("exit", None)

    def __init__(self, config: EnvConfig | None = None, /, **kwargs: Any) -> None:
        self.config = cfg = env_config(config, kwargs)
        self.setup = s = resolve_setup(cfg)
        modes = self.metadata["render_modes"]
        if cfg.render_mode is not None and cfg.render_mode not in modes:
            # As Gymnasium's own envs: warn and go on (SB3's make_vec_env passes render_mode="rgb_array").
            logger.warn(f"render_mode={cfg.render_mode!r} is not supported by {type(self).__name__} "
                        f"(render_modes: {modes}); render() returns None")
        self.render_mode = cfg.render_mode if cfg.render_mode in modes else None
        self.device_spec = s.spec
        self.profile = s.profile
        self.backend = make_backend(cfg.backend, s, cfg.backend_kwargs)
        #: ``(work, slot_s) -> (run, idle or None)``: :func:`~e4gym.hardware.backend.run_then_idle` on the backend.
        self._run_then_idle = bound_run_then_idle(self.backend)
        self.source = s.make_source()
        #: The reward callable ``(FrameOutcome) -> (reward, terms)`` (``reward=``, default :class:`FrameReward`).
        self.reward_fn = s.reward
        self._blank_terms = {k: F64(0.0) for k in getattr(s.reward, "terms", ())}
        mx = s.max_levels
        head, n_head = self.ACTION_HEAD
        self._nvec = (n_head or s.profile.n_exits, mx[0] + 1, mx[1] + 1) + ((mx[2] + 1,) if s.control_memory else ())
        self.action_names: tuple[str, ...] = (head, "cpu_level", "gpu_level") + (
            ("emc_level",) if s.control_memory else ()
        )
        self.action_space = spaces.MultiDiscrete(np.array(self._nvec, dtype=np.int64))
        self.obs_fields = self.make_obs_fields(s.control_memory)
        self._obs_builder = ObsBuilder(self.obs_fields)
        self.obs_names: tuple[str, ...] = self._obs_builder.names
        self.observation_space = self._obs_builder.space()
        self._o = _ObsState()
        # The level tables as NumPy scalars made once (the info's clocks are looked up, not converted).
        self._freqs = tuple(tuple(F64(f) for f in t) for t in (s.spec.cpu_freqs_hz, s.spec.gpu_freqs_hz,
                                                              s.spec.emc_freqs_hz))
        self._inv_max = tuple(1.0 / m if m > 0 else 0.0 for m in mx)
        n_exits = s.profile.n_exits
        self._inv_exit = 1.0 / (n_exits - 1) if n_exits > 1 else 0.0
        self._temp_span = 1.0 / max(s.trip_c - s.cooling.ambient_c, 1e-9)
        self._ambient_c = s.cooling.ambient_c
        # Reciprocals of the observation's scales (a step multiplies; the numbers are the same to a rounding).
        self._inv_deadline, self._inv_energy_ref, self._inv_power_ref = (
            1.0 / s.deadline_s, 1.0 / s.energy_ref_j, 1.0 / s.power_ref_w)
        #: The info's profiling figures of a frame with no profiling run before it (runs, ms, J).
        self._no_profiling = (NP_INT[1], F64_ZERO, F64_ZERO)
        self._clock = StreamClock(s.period_s, s.deadline_s)
        self._k: int | None = None
        #: Info keys of the power monitor's rails, ``power_<rail>_w`` (W), one per backend rail.
        self.rail_keys: tuple[str, ...] = rail_keys(tuple(getattr(self.backend, "rail_names", ())))

    @staticmethod
    def make_obs_fields(control_memory: bool) -> list[ObsField]:
        """The observation's fields, in order (subclasses define them)."""
        raise NotImplementedError

    def close(self) -> None:
        """Close the backend (a real board restores its governors and clocks)."""
        self.backend.close()

    def upcoming_frame(self) -> FrameRecord:
        """The frame the next step works on, hidden ground truth included (``correct``, ``difficulty``).

        This is the clairvoyant channel for oracles (:class:`e4gym.policy.PolicyContext` hands it only to
        policies that declare ``clairvoyant = True``); an agent that reads it is not a deployable policy.
        """
        if self._k is None:
            raise gym.error.ResetNeeded("call reset() before upcoming_frame()")
        i = self._pos
        return FrameRecord(
            index=self._k, scene=-1, features=np.asarray(self._feat[i], np.float32),
            feature_change=np.asarray(self._fchg[i], np.float32),
            correct=np.asarray(self._correct[i], bool), confidence=np.asarray(self._conf[i], np.float32),
            difficulty=float(self._difficulty[i]),
        )

    # ------------------------------------------------------------------------------------------ controller channels

    def cost_model(self) -> MeasuredCostModel:
        """The cost model a controller of this board obtains by measurement (:mod:`e4gym.hardware.costmodel`).

        On the emulator: a separate emulated board of the same configuration (device, power mode, cooling,
        measured profile) with its own seed, measured once per process and configuration. On any other backend:
        this env's own backend (measured when first read, before the first episode of the process; a coarse sweep,
        :data:`~e4gym.hardware.costmodel.BOARD_STRIDE`, interpolated between measured levels). Work is measured
        lazily, as policies ask for it; :attr:`MeasuredCostModel.offline` counts what it cost.
        """
        s = self.setup
        measured = getattr(self.backend, "measured", None)
        from e4gym.hardware.emulator import EmulatedBackend

        if isinstance(self.backend, EmulatedBackend):
            key = (s.spec.name, id(s.spec), s.runtime, s.power_mode, s.cooling, s.initial_temp_c, s.control_memory,
                   id(measured))
            if key not in _COST_MODELS:
                _COST_MODELS[key] = emulated_cost_model(s, measured=measured)
            return _COST_MODELS[key]
        # A board is profiled once per process (as a controller would keep its profile across episodes); what
        # is still to measure is measured on this env's backend.
        key = ("board", s.spec.name, s.power_mode, s.control_memory, type(self.backend).__name__,
               str(getattr(self.backend, "sysfs_root", "")))
        model = _COST_MODELS.get(key)
        if model is None:
            model = _COST_MODELS[key] = MeasuredCostModel(self.backend, s.max_levels, s.control_memory,
                                                          source=type(self.backend).__name__, stride=BOARD_STRIDE,
                                                          frames=BOARD_FRAMES)
        model._backend = self.backend
        return model

    def profiling_run(self, exit: int, levels: Any) -> ProfileRun:
        """Run a profiling frame on the board now, before the next frame, and charge it to the episode.

        The frame runs to ``exit`` with ``levels``: one ``(cpu, gpu[, emc])`` row for the whole frame, or one
        row per backbone block up to the exit (per-layer plans; the heads of the exits it passes run in the
        block of their branch). The board is busy meanwhile: the next frame starts that much later (it may
        queue and miss its deadline), and the run's energy is added to the next frame's ``energy_j`` (and
        ``measured_energy_j``); the step's info reports ``profiling_runs``, ``profiling_ms`` and
        ``profiling_energy_j``. Allowed only between frames.

        Raises:
            gymnasium.error.ResetNeeded: before ``reset()``.
            SettingError: levels outside the action space's level ranges, or a bad exit.
            ConfigError: in the block env, in the middle of a frame.
        """
        from e4gym.errors import SettingError

        if self._k is None:
            raise gym.error.ResetNeeded("call reset() before profiling_run()")
        if not self._between_frames():
            raise ConfigError("profiling_run() runs between frames; this frame has started (block env)")
        s = self.setup
        n_exits = s.profile.n_exits
        if isinstance(exit, bool) or not isinstance(exit, (int, np.integer)) or not 0 <= exit < n_exits:
            raise SettingError(f"exit must be an integer in 0..{n_exits - 1}, got {exit!r}")
        rows = np.atleast_2d(np.asarray(levels, dtype=np.int64))
        dims = 3 if s.control_memory else 2
        segs = self._profile_segments(int(exit), rows.shape[0])
        if rows.shape[1] != dims or rows.shape[0] != len(segs):
            raise SettingError(f"levels must have shape (1 or {len(self._profile_segments(int(exit), 0))}, {dims}) "
                               f"for exit {exit}, got {rows.shape}")
        for row in rows:
            check_levels_action(row.tolist(), self._nvec[1:], self.action_names[1:], row.tolist())
        b = self.backend
        lat = true_j = meas_j = 0.0
        temp = math.nan
        for works, row in zip(segs, rows):
            b.apply((int(row[0]), int(row[1]), int(row[2]) if dims == 3 else s.max_levels[2]))
            for w in works:
                m = b.run(w)
                lat += m.latency_s
                true_j += m.energy_j
                meas_j += m.measured_energy_j
                temp = m.temp_c
        p = self._prof
        p[0] += 1
        p[1] += lat
        p[2] += true_j
        p[3] += meas_j
        self._delay_next_frame(lat)
        return ProfileRun(lat, meas_j, temp)

    def _profile_segments(self, exit: int, n_rows: int) -> list[list]:
        """The works of a profiling frame to ``exit``: one segment (``n_rows == 1``) or one per block."""
        prof = self.setup.profile
        last = prof.exits[exit].after_block
        if n_rows == 1:
            return [[prof.frame_work(exit)]]
        heads = {x.after_block: e for e, x in enumerate(prof.exits) if e <= exit}
        return [[prof.block_work(j)] + ([prof.head_work(heads[j])] if j in heads else []) for j in range(last + 1)]

    def _between_frames(self) -> bool:
        return True

    def _delay_next_frame(self, seconds: float) -> None:
        """The next frame starts ``seconds`` later (the board was busy profiling)."""
        self._clock.delay(seconds)

    def _take_profiling(self) -> tuple[int, float, float, float]:
        """Profiling charged to the frame now running: ``(runs, s, true J, measured J)``; clears it."""
        p = self._prof
        self._prof = [0, 0.0, 0.0, 0.0]
        return p[0], p[1], p[2], p[3]

    def stream_key(self) -> tuple:
        """The identity of this episode's frame stream (``FrameSource.stream_key()``): the harness refuses to
        score a policy on a stream it trained or calibrated on."""
        if self._k is None:
            raise gym.error.ResetNeeded("call reset() before stream_key()")
        return self.source.stream_key()

    # ------------------------------------------------------------------------------------------ helpers

    def _reseed(self, seed: int | None) -> SensorReading:
        """Seed ``np_random``, restart the stream and the board from seeds drawn from it; returns the sensors."""
        super().reset(seed=seed)
        src_seed, hw_seed = (int(x) for x in self.np_random.integers(0, 2**63 - 1, size=2))
        self.source.reset(src_seed)
        if hasattr(self.backend, "reset"):
            self.backend.reset(hw_seed)
        self._k = 0
        self._clock.reset()
        self._prof = [0, 0.0, 0.0, 0.0]  # profiling since the last frame: runs, s, true J, measured J
        self._fill()
        sensors = self.backend.read_sensors()
        o = self._o
        o.power = sensors.power_w / self.setup.power_ref_w
        o.temperature = self._temperature(sensors.temp_c)
        o.throttled = 1.0 if sensors.throttled else 0.0
        o.last_feature_change = 0.0
        return sensors

    def _parse_action(self, action: Any) -> list[int]:
        """The action as a list of ints; raises :class:`SettingError` naming what is outside the space."""
        if self._k is None:
            raise gym.error.ResetNeeded("call reset() before step()")
        vals = action.tolist() if type(action) is np.ndarray else action
        nvec = self._nvec
        # The common case, unrolled (a loop over zip(vals, nvec) costs twice as much): 3 or 4 Python ints in range.
        try:
            if len(nvec) == 3:
                a, b, c = vals
                if (type(a) is int and type(b) is int and type(c) is int
                        and 0 <= a < nvec[0] and 0 <= b < nvec[1] and 0 <= c < nvec[2]):
                    return vals
            else:
                a, b, c, d = vals
                if (type(a) is int and type(b) is int and type(c) is int and type(d) is int
                        and 0 <= a < nvec[0] and 0 <= b < nvec[1] and 0 <= c < nvec[2] and 0 <= d < nvec[3]):
                    return vals
        except (TypeError, ValueError):  # not a sequence of that many values: the checks below say what it is
            pass
        flat = flat_action(action, nvec, self.action_names)
        check_levels_action(flat, nvec, self.action_names, action)  # raises with details
        return [int(v) for v in flat]

    def _fill(self) -> None:
        """Pull the next chunk of frames from the source into Python lists (fast per-step access)."""
        b = self.source.batch(SOURCE_CHUNK)
        self._feat = b.features.tolist()  # per frame, the COMPLEXITY_FEATURES in order
        self._fchg = b.feature_change.tolist()
        self._correct = b.correct.tolist()
        self._conf = b.confidence.tolist()
        self._difficulty = b.difficulty.tolist()
        self._pos = 0
        self._n_buf = len(b)

    def _temperature(self, temp_c: float) -> float:
        """The ``temperature`` observation: ``(T − T_ambient) / (T_trip − T_ambient)`` (clipped by the builder)."""
        return (temp_c - self.setup.cooling.ambient_c) * self._temp_span

    def _blank_info(self, sensors: SensorReading) -> dict[str, Any]:
        """The info of a reset: every key of INFO_KEYS (NumPy scalars), no frame yet."""
        return {
            LATENCY_MS: F64(0.0),
            ENERGY_J: F64(0.0),
            POWER_W: F64(sensors.power_w),
            TEMP_C: F64(sensors.temp_c),
            EXIT: I64(-1),
            CORRECT: B(False),
            CONFIDENCE: F64(0.0),
            CPU_HZ: F64(sensors.cpu_hz),
            GPU_HZ: F64(sensors.gpu_hz),
            EMC_HZ: F64(sensors.emc_hz),
            DEADLINE_MISSED: B(False),
            DVFS_SWITCHES: I64(0),
            MEASURED_ENERGY_J: F64(0.0),
            RUN_MS: F64(0.0),
            THROTTLED: B(sensors.throttled),
            FRAME: I64(-1),
            **self._blank_terms,
            PROFILING_RUNS: I64(0),
            PROFILING_MS: F64(0.0),
            PROFILING_ENERGY_J: F64(0.0),
            COST_MISS: F64_ZERO,
            COST_ACCURACY: F64_ZERO,
            **self._rails(getattr(sensors, "rails_w", ())),
        }

    def _frame_rails(self, info: dict[str, Any], run: Any, idle: Any) -> None:
        """Put into ``info`` the rails (``power_<rail>_w``, W) the power monitor read over a frame's run and its idle
        wait (time-weighted); nothing when the backend has no rails."""
        rk = self.rail_keys
        if not rk:
            return
        rails = run.rails_w
        if len(rails) != len(rk):
            info.update(self._rails(rails))
        elif idle is not None and idle.latency_s > 0.0:
            t1, t2, ir = run.latency_s, idle.latency_s, idle.rails_w
            w = 1.0 / (t1 + t2)
            for i, key in enumerate(rk):
                info[key] = F64((rails[i] * t1 + ir[i] * t2) * w)
        else:
            for key, v in zip(rk, rails):
                info[key] = F64(v)

    def _rails(self, rails_w: tuple[float, ...]) -> dict[str, Any]:
        """``{power_<rail>_w: W}`` for the backend's rails (0 W where the backend gave no reading)."""
        keys = self.rail_keys
        if len(rails_w) != len(keys):
            return dict.fromkeys(keys, F64(0.0))
        return dict(zip(keys, np.array(rails_w, dtype=np.float64)))

    def _obs(self, levels: tuple[int, int, int] | None = None) -> np.ndarray:
        """The observation from the current field values (:class:`ObsBuilder`: field order, clipped into the Box);
        ``levels``: the board's levels now, if the caller has just read them."""
        o, lv, im = self._o, levels or self.backend.levels, self._inv_max
        o.edge_density, o.motion, o.contrast = self._feat[self._pos]
        o.cpu_level = lv[0] * im[0]
        o.gpu_level = lv[1] * im[1]
        if self.setup.control_memory:
            o.emc_level = lv[2] * im[2]
        return self._obs_builder(o)
