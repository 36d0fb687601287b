"""The machinery the frame and block envs share: arguments, spaces, seeding, frame buffering, action checks."""

from __future__ import annotations

import math
from typing import Any, ClassVar, NamedTuple

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from e4gym.dnn.profile import ModelProfile
from e4gym.envs.common import (
    DEFAULT_EPISODE_FRAMES,
    SOURCE_CHUNK,
    ObsField,
    check_levels_action,
    make_backend,
    obs_bounds,
    resolve_setup,
)
from e4gym.errors import ConfigError
from e4gym.hardware.backend import SensorReading
from e4gym.hardware.costmodel import BOARD_FRAMES, BOARD_STRIDE, MeasuredCostModel, emulated_cost_model
from e4gym.hardware.spec import DeviceSpec
from e4gym.workload.base import FrameRecord


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

    Resolves the arguments (:func:`~e4gym.envs.common.resolve_setup`), builds the backend, the frame source and
    the spaces, and seeds everything from ``np_random`` at reset. Subclasses name the first action component
    (:attr:`ACTION_HEAD`) and their observation fields (:meth:`make_obs_fields`). Not registered itself.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi"], "render_fps": 30}
    #: Name of the first action component and its number of values (``None``: the model's number of exits).
    ACTION_HEAD: ClassVar[tuple[str, int | None]] = ("exit", None)

    def __init__(
        self,
        device: str | DeviceSpec = "xavier-nx",
        model: str | ModelProfile = "efficientnet_b0",
        backend: object = "emulated",
        workload: object = "synthetic",
        deadline_ms: float | None = None,
        fps: float | None = None,
        reward_weights: dict[str, float] | None = None,
        control_memory: bool = False,
        power_mode: str | None = None,
        episode_frames: int = DEFAULT_EPISODE_FRAMES,
        fan: bool | None = None,
        ambient_c: float | None = None,
        initial_temp_c: float | None = None,
        workload_kwargs: dict[str, Any] | None = None,
        governors: dict[str, str] | str | None = None,
        render_mode: str | None = None,
        backend_kwargs: dict[str, Any] | None = None,
        reward_energy: str = "true",
    ) -> None:
        self.setup = s = resolve_setup(
            device=device, model=model, workload=workload, workload_kwargs=workload_kwargs, fps=fps,
            deadline_ms=deadline_ms, reward_weights=reward_weights, control_memory=control_memory,
            power_mode=power_mode, episode_frames=episode_frames, fan=fan, ambient_c=ambient_c,
            initial_temp_c=initial_temp_c, governors=governors, reward_energy=reward_energy,
        )
        self._reward_measured = s.reward_energy == "measured"
        modes = self.metadata["render_modes"]
        if render_mode is not None and render_mode not in modes:
            raise ConfigError(f"render_mode must be None or one of {modes}, got {render_mode!r}")
        self.render_mode = render_mode
        self.device_spec = s.spec
        self.profile = s.profile
        self.backend = make_backend(backend, s, backend_kwargs)
        self.source = s.make_source()
        self.reward_fn = s.reward
        mx = s.max_levels
        head, n_head = self.ACTION_HEAD
        self._nvec = (n_head or s.profile.n_exits, mx[0] + 1, mx[1] + 1) + ((mx[2] + 1,) if s.control_memory else ())
        self.action_names: tuple[str, ...] = (head, "cpu_level", "gpu_level") + (
            ("emc_level",) if s.control_memory else ()
        )
        self.action_space = spaces.MultiDiscrete(np.array(self._nvec, dtype=np.int64))
        self.obs_fields = self.make_obs_fields(s.control_memory)
        self.obs_names: tuple[str, ...] = tuple(f.name for f in self.obs_fields)
        self._low, self._high = obs_bounds(self.obs_fields)
        self.observation_space = spaces.Box(self._low, self._high, dtype=np.float32)
        self._freqs = (s.spec.cpu_freqs_hz, s.spec.gpu_freqs_hz, s.spec.emc_freqs_hz)
        self._inv_max = tuple(1.0 / m if m > 0 else 0.0 for m in mx)
        n_exits = s.profile.n_exits
        self._inv_exit = 1.0 / (n_exits - 1) if n_exits > 1 else 0.0
        self._temp_span = 1.0 / max(s.trip_c - s.cooling.ambient_c, 1e-9)
        self._k: int | None = None
        #: Info keys of the power monitor's rails, ``power_<rail>_w`` (W), one per backend rail.
        self.rail_keys: tuple[str, ...] = tuple(f"power_{n}_w" for n in getattr(self.backend, "rail_names", ()))

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
            key = (s.spec.name, id(s.spec), s.power_mode, s.cooling, s.initial_temp_c, s.control_memory, id(measured))
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
        """Subclasses: the next frame starts ``seconds`` later (the board was busy profiling)."""
        raise NotImplementedError

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
        self._prof = [0, 0.0, 0.0, 0.0]  # profiling since the last frame: runs, s, true J, measured J
        self._fill()
        return self.backend.read_sensors()

    def _parse_action(self, action: Any) -> list[int]:
        """The action as a list of ints; raises :class:`SettingError` naming what is outside the space."""
        if self._k is None:
            raise gym.error.ResetNeeded("call reset() before step()")
        vals = action.tolist() if type(action) is np.ndarray else action
        nvec = self._nvec
        try:
            ok = len(vals) == len(nvec)
        except TypeError:
            ok = False
        if ok:
            for v, n in zip(vals, nvec):  # a plain loop: faster than all() over a generator
                if type(v) is not int or not 0 <= v < n:
                    ok = False
                    break
        if not ok:
            check_levels_action(np.ravel(action).tolist(), nvec, self.action_names, action)  # raises with details
            vals = [int(v) for v in np.ravel(action)]
        return vals

    def _fill(self) -> None:
        """Pull the next chunk of frames from the source into Python lists (fast per-step access)."""
        b = self.source.batch(SOURCE_CHUNK)
        self._feat = b.features.tolist()
        self._fchg = b.feature_change.tolist()
        self._correct = b.correct.tolist()
        self._conf = b.confidence.tolist()
        self._difficulty = b.difficulty.tolist()
        self._pos = 0
        self._n_buf = len(b)

    def _temperature_obs(self, temp_c: float) -> float:
        t = (temp_c - self.setup.cooling.ambient_c) * self._temp_span
        return -1.0 if t < -1.0 else (2.0 if t > 2.0 else t)

    def _blank_info(self, sensors: SensorReading) -> dict[str, Any]:
        """The info of a reset: every key of INFO_KEYS, no frame yet."""
        return {
            "latency_ms": 0.0,
            "energy_j": 0.0,
            "power_w": sensors.power_w,
            "temp_c": sensors.temp_c,
            "exit": -1,
            "correct": False,
            "confidence": 0.0,
            "cpu_hz": sensors.cpu_hz,
            "gpu_hz": sensors.gpu_hz,
            "emc_hz": sensors.emc_hz,
            "deadline_missed": False,
            "dvfs_switches": 0,
            "measured_energy_j": 0.0,
            "run_ms": 0.0,
            "throttled": sensors.throttled,
            "frame": -1,
            "reward_energy": 0.0,
            "reward_deadline": 0.0,
            "reward_accuracy": 0.0,
            "profiling_runs": 0,
            "profiling_ms": 0.0,
            "profiling_energy_j": 0.0,
            **self._rails(getattr(sensors, "rails_w", ())),
        }

    def _rails(self, rails_w: tuple[float, ...]) -> dict[str, float]:
        """``{power_<rail>_w: W}`` for the backend's rails (0 W where the backend gave no reading)."""
        keys = self.rail_keys
        if len(rails_w) != len(keys):
            return dict.fromkeys(keys, 0.0)
        return dict(zip(keys, rails_w))
