"""The native vector version of ``e4gym/EarlyExitDVFS-v1``: N frame envs stepped in one NumPy call."""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import logger, spaces
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from e4gym._jit import lazy_kernel
from e4gym.envs.base import _ObsState, env_config
from e4gym.envs.common import check_levels_action, resolve_setup
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
    INFO_KEYS,
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
    FrameOutcome,
    ObsBuilder,
    frame_obs_fields,
    rail_keys,
)
from e4gym.errors import ConfigError, SettingError
from e4gym.hardware.emulator import BatchedEmulator
from e4gym.hardware.stream import StreamClock
from e4gym.workload.base import COMPLEXITY_FEATURES, N_FEATURES, FrameSource, StackedFrames
from e4gym.workload.synthetic import SyntheticVideo

#: Frames buffered per sub-env (the frame stream does not depend on it).
VECTOR_CHUNK = 512
#: The autoreset modes the native vector env implements.
AUTORESET_MODES = (AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP)



def _k_results(
    correct_buf: np.ndarray, conf_buf: np.ndarray, fchg_buf: np.ndarray, pos: np.ndarray, ex: np.ndarray,
    latency_s: np.ndarray, deadline_s: float, correct: np.ndarray, missed: np.ndarray, conf: np.ndarray,
    fchg: np.ndarray, cost_miss: np.ndarray, cost_accuracy: np.ndarray,
) -> None:
    """Per sub-env ``i``, its frame ``pos[i]`` (buffers ``[position, sub-env, exit]``) left at exit ``ex[i]``
    after ``latency_s[i]`` (s): whether it was correct, missed the deadline, its confidence and feature change,
    and the constraint costs (``COST_MISS``: the miss as 0/1; ``COST_ACCURACY``: the last exit's correctness minus
    this exit's). One compiled loop in place of a dozen NumPy gathers and casts over ``(num_envs,)`` arrays."""
    last = correct_buf.shape[2] - 1
    for i in range(pos.shape[0]):
        p, e = pos[i], ex[i]
        c = correct_buf[p, i, e]
        m = latency_s[i] > deadline_s
        correct[i] = c
        missed[i] = m
        conf[i] = conf_buf[p, i, e]
        fchg[i] = fchg_buf[p, i, e]
        cost_miss[i] = 1.0 if m else 0.0
        cost_accuracy[i] = (1.0 if correct_buf[p, i, last] else 0.0) - (1.0 if c else 0.0)


#: :func:`_k_results` compiled (on first use).
_results_kernel = lazy_kernel(_k_results)

class EarlyExitDVFSVectorEnv(VectorEnv):
    """``num_envs`` copies of :class:`~e4gym.envs.frame.EarlyExitDVFSEnv` on the batched emulator.

    Every sub-env follows the single env's rules exactly (same spaces, reward, observation fields, info keys,
    streaming time); sub-env ``i`` reset with seed ``s`` produces what ``EarlyExitDVFSEnv`` reset with seed
    ``s`` produces for the same actions, up to floating-point rounding of the vectorised math (about 1e-12
    relative). ``reset(seed=s)`` seeds sub-env ``i`` with ``s + i``, as Gymnasium's ``SyncVectorEnv`` does.

    The boards run on :class:`~e4gym.hardware.emulator.BatchedEmulator` (userspace clocks), so the backend is
    always the emulator; for another backend use ``gymnasium.make_vec(..., vectorization_mode="sync")``.

    **Autoreset** (``metadata["autoreset_mode"]``): ``AutoresetMode.NEXT_STEP`` by default, as Gymnasium's own
    vector envs: the step after a sub-env's episode ends resets it, ignores its action, returns its first
    observation with reward 0 and its reset info. ``autoreset_mode=AutoresetMode.SAME_STEP`` resets in the same
    step instead, as ``SyncVectorEnv`` does: the sub-env's observation and top-level info are then its reset
    observation and reset info, and the finished step's are in ``info["final_obs"]`` (an object array) and
    ``info["final_info"]`` (a dict of arrays with ``_key`` masks, True for the sub-envs that ended).
    ``reset(options={"reset_mask": mask})`` resets only the sub-envs where ``mask`` (bool, ``(num_envs,)``)
    is True; the others keep their state, their observation rows are unchanged and their info masks False.

    **Info** is Gymnasium's vector layout: ``info[key]`` an array of shape ``(num_envs,)`` and ``info["_" +
    key]`` its mask, for every key of :data:`~e4gym.envs.core.INFO_KEYS`, the rail keys and the reward terms.

    Args:
        num_envs: number of sub-envs (>= 1).
        autoreset_mode: ``AutoresetMode.NEXT_STEP`` (default) or ``AutoresetMode.SAME_STEP`` (or their values).
        config: an :class:`~e4gym.envs.core.EnvConfig`, or its fields as keyword arguments: as
            :class:`~e4gym.envs.frame.EarlyExitDVFSEnv`; ``backend`` is ``"emulated"`` (without
            ``backend_kwargs`` or ``governors``: the batched emulator runs userspace clocks), ``workload`` is
            ``"synthetic"`` or a trace path.
    """

    metadata: ClassVar[dict[str, Any]] = {"autoreset_mode": AutoresetMode.NEXT_STEP, "render_modes": []}

    def __init__(
        self,
        num_envs: int = 1,
        autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
        config: EnvConfig | None = None,
        **kwargs: Any,
    ) -> None:
        if isinstance(num_envs, bool) or not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
            raise ConfigError(f"num_envs must be an integer >= 1, got {num_envs!r}")
        cfg = env_config(config, kwargs, extra=("num_envs", "autoreset_mode"))
        sync = "use gymnasium.make_vec(..., vectorization_mode='sync')"
        if cfg.backend != "emulated" or cfg.backend_kwargs:
            raise ConfigError("the native vector env runs on the batched emulator only (backend='emulated', no "
                              f"backend_kwargs); for another backend or a measured profile {sync}")
        if cfg.governors is not None:
            raise ConfigError(f"the native vector env runs userspace clocks only; for governors={cfg.governors!r} "
                              f"{sync}")
        if isinstance(cfg.workload, FrameSource):
            raise ConfigError("the native vector env needs one frame source per sub-env: pass workload='synthetic' "
                              f"or a trace path, or {sync} with your FrameSource")
        if cfg.render_mode is not None:
            logger.warn(f"render_mode={cfg.render_mode!r} is not supported by the native vector env; "
                        "render() returns None")
        try:
            mode = AutoresetMode(autoreset_mode)
        except ValueError:
            mode = None
        if mode not in AUTORESET_MODES:
            raise ConfigError(f"autoreset_mode must be one of {[m.value for m in AUTORESET_MODES]}, "
                              f"got {autoreset_mode!r}")
        self.metadata = {**self.metadata, "autoreset_mode": mode}
        self.autoreset_mode = mode
        self.config = cfg
        self.setup = s = resolve_setup(cfg)
        self.num_envs = n = int(num_envs)
        self.render_mode = None
        self.device_spec = s.spec
        self.profile = s.profile
        self.reward_fn = s.reward
        mx = s.max_levels
        self._nvec = np.array(
            (s.profile.n_exits, mx[0] + 1, mx[1] + 1) + ((mx[2] + 1,) if s.control_memory else ()), dtype=np.int64
        )
        self._nvec_u64 = self._nvec.astype(np.uint64)
        self.action_names: tuple[str, ...] = ("exit", "cpu_level", "gpu_level") + (
            ("emc_level",) if s.control_memory else ()
        )
        self.obs_fields = frame_obs_fields(s.control_memory)
        self._obs_builder = ObsBuilder(self.obs_fields)
        self.obs_names: tuple[str, ...] = self._obs_builder.names
        self.single_action_space = spaces.MultiDiscrete(self._nvec)
        self.action_space = batch_space(self.single_action_space, n)
        self.single_observation_space = self._obs_builder.space()
        self.observation_space = batch_space(self.single_observation_space, n)
        self.emulator = BatchedEmulator(
            s.spec, [0] * n, power_mode=s.power_mode, cooling=s.cooling, initial_temp_c=s.initial_temp_c
        )
        #: Info keys of the power monitor's rails, ``power_<rail>_w`` (W), as in the single env.
        self.rail_keys: tuple[str, ...] = rail_keys(self.emulator.rail_names)
        self._sources = [s.make_source() for _ in range(n)]
        self._works = tuple(s.profile.frame_work(e) for e in range(s.profile.n_exits))
        self._rngs: list[np.random.Generator | None] = [None] * n
        self._inv_max = np.array([1.0 / m if m > 0 else 0.0 for m in mx])
        self._inv_exit = 1.0 / (s.profile.n_exits - 1) if s.profile.n_exits > 1 else 0.0
        self._temp_span = 1.0 / max(s.trip_c - s.cooling.ambient_c, 1e-9)
        self._rows = np.arange(n)
        self._freq_tables = tuple(np.asarray(s.spec.freqs_hz(d)) for d in ("cpu", "gpu", "emc"))
        self._zeros_i, self._zeros_f = np.zeros(n, np.int64), np.zeros(n)  # no profiling runs in the vector env
        for a in (self._zeros_i, self._zeros_f):
            a.setflags(write=False)
        self._all = np.ones(n, dtype=bool)
        self._all.setflags(write=False)
        e = s.profile.n_exits
        # The frame buffers, frame-major (``[frame position, sub-env, ...]``): sub-envs in lockstep read one
        # contiguous row per step. ``_feat`` … are their ``(sub-env, position, ...)`` views, as frames are made.
        buffers = (np.zeros((VECTOR_CHUNK, n, N_FEATURES), np.float32), np.zeros((VECTOR_CHUNK, n, e), np.float32),
                   np.zeros((VECTOR_CHUNK, n, e), bool), np.zeros((VECTOR_CHUNK, n, e), np.float32))
        self._by_pos = buffers
        self._feat, self._fchg, self._correct, self._conf = (b.swapaxes(0, 1) for b in buffers)
        self._feat_rows = buffers[0].reshape(VECTOR_CHUNK * n, N_FEATURES)
        # The frame buffers as the ``out`` of a refill of every sub-env (index, scene, difficulty: scratch).
        self._stacked = StackedFrames(
            index=np.empty((n, VECTOR_CHUNK), np.int64), scene=np.empty((n, VECTOR_CHUNK), np.int64),
            features=self._feat, correct=self._correct, confidence=self._conf, feature_change=self._fchg,
            difficulty=np.empty((n, VECTOR_CHUNK)))
        self._pos = np.zeros(n, np.int64)
        self._k_results = _results_kernel()
        self._clock = StreamClock(s.period_s, s.deadline_s, n)
        self._o = o = _ObsState()
        for name in self.obs_names:
            setattr(o, name, np.zeros(n))
        self._autoreset = np.zeros(n, dtype=bool)
        self._started = False

    # ------------------------------------------------------------------------------------------ API

    def reset(
        self, *, seed: int | list[int | None] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset the sub-envs: all, or those of ``options["reset_mask"]`` (a bool array of shape ``(num_envs,)``).

        ``seed``: an int (sub-env ``i`` gets ``seed + i``), a list of per-env seeds, or None (a sub-env reset
        for the first time is seeded from the OS; later resets continue its generator), as ``SyncVectorEnv``.
        """
        n = self.num_envs
        if seed is None:
            seeds: list[int | None] = [None] * n
        elif isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
            seeds = [int(seed) + i for i in range(n)]
        else:
            seeds = list(seed)  # type: ignore[arg-type]
            if len(seeds) != n:
                raise ConfigError(f"reset(seed=list) needs {n} seeds (one per sub-env), got {len(seeds)}")
        mask = (options or {}).get("reset_mask")
        if mask is None:
            idx = self._rows
        else:
            if not isinstance(mask, np.ndarray) or mask.shape != (n,) or mask.dtype != np.bool_:
                raise ConfigError(f"options['reset_mask'] must be a bool NumPy array of shape ({n},), got {mask!r}")
            if not mask.any():
                raise ConfigError("options['reset_mask'] must have at least one True value")
            if not self._started and not mask.all():
                raise gym.error.ResetNeeded("the first reset() resets every sub-env; drop reset_mask")
            idx = np.flatnonzero(mask)
        for i in idx:
            if seeds[i] is not None or self._rngs[i] is None:
                self._rngs[i], _ = seeding.np_random(seeds[i])
        self._reset_envs(idx)
        self._autoreset[idx] = False
        self._started = True
        info = self._blank_info()
        if mask is not None:
            for key in self._info_keys():
                info["_" + key] = mask.copy()
        return self._obs(), info

    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Step every sub-env with ``actions`` (int array ``(num_envs, n_components)``)."""
        if not self._started:
            raise gym.error.ResetNeeded("call reset() before step()")
        a = self._check_actions(actions)
        s, emu, n, clock, o = self.setup, self.emulator, self.num_envs, self._clock, self._o
        ex = a[:, 0]
        levels = np.empty((n, 3), np.int64)
        levels[:, 0] = a[:, 1]
        levels[:, 1] = a[:, 2]
        levels[:, 2] = a[:, 3] if s.control_memory else s.max_levels[2]
        before = emu.levels  # (a copy)
        start = clock.free_s
        # The levels, each frame, then idle until the next.
        m, idle = emu.run_choice_then_idle(self._works, ex, clock.slot_s(), 1, levels)
        done = start + m.latency_s
        energy = m.energy_j + idle.energy_j  # the idle figures are 0 where it did not idle
        measured = m.measured_energy_j + idle.measured_energy_j
        temp = idle.temp_c  # after the idle wait; a board that did not idle is as the run left it
        k = clock.k
        latency = clock.finish(done)
        after = emu.levels
        pos = self._pos
        # Each sub-env's frame at its position and exit: correctness, confidence, feature change, miss, costs.
        correct, missed, conf, fchg = np.empty(n, bool), np.empty(n, bool), np.empty(n), np.empty(n, np.float32)
        cost_miss, cost_accuracy = np.empty(n), np.empty(n)
        _, fchg_buf, correct_buf, conf_buf = self._by_pos
        self._k_results(correct_buf, conf_buf, fchg_buf, pos, ex, latency, s.deadline_s,
                        correct, missed, conf, fchg, cost_miss, cost_accuracy)
        reward, terms = self.reward_fn(FrameOutcome(energy, measured, missed, correct, latency, ex, self._all))
        # Observations from what the power monitor reported, as a controller reads it.
        inv_span = 1.0 / (clock.free_s - start)  # > 0: every run takes time
        power = energy * inv_span
        o.last_exit = ex * self._inv_exit
        o.last_confidence = conf
        o.last_feature_change = fchg
        o.latency = latency / s.deadline_s
        o.energy = measured / s.energy_ref_j
        o.power = measured * inv_span * (1.0 / s.power_ref_w)
        o.temperature = (temp - s.cooling.ambient_c) * self._temp_span
        o.throttled = m.throttled
        o.slack = clock.slack
        o.fps = clock.fps
        self._pos = pos + 1
        self._refill(np.flatnonzero(self._pos == VECTOR_CHUNK))
        truncated = clock.k >= s.episode_frames
        terminated = np.zeros(n, dtype=bool)
        info = {
            LATENCY_MS: latency * 1e3,
            ENERGY_J: energy,
            POWER_W: power,
            TEMP_C: temp,
            EXIT: ex.copy(),
            CORRECT: correct,
            CONFIDENCE: conf,
            CPU_HZ: idle.cpu_hz,  # the clocks after the idle wait (views of its fresh record; every board's)
            GPU_HZ: idle.gpu_hz,
            EMC_HZ: idle.emc_hz,
            DEADLINE_MISSED: missed,
            DVFS_SWITCHES: ((before[:, 0] != after[:, 0]) + (before[:, 1] != after[:, 1]).astype(np.int64)
                            + (before[:, 2] != after[:, 2])),
            MEASURED_ENERGY_J: measured,
            RUN_MS: m.latency_s * 1e3,
            THROTTLED: m.throttled,
            FRAME: k,
            PROFILING_RUNS: self._zeros_i,
            PROFILING_MS: self._zeros_f,
            PROFILING_ENERGY_J: self._zeros_f,
            COST_MISS: cost_miss,
            COST_ACCURACY: cost_accuracy,
        }
        for key, v in terms.items():
            info[key] = np.asarray(v, dtype=np.float64)
        if self.rail_keys:
            # The power monitor's rails over the run and the idle wait, time-weighted (as the single env reports).
            t1 = m.latency_s
            t2 = idle.latency_s  # 0 where it did not idle
            w = 1.0 / (t1 + t2)
            run_rails, idle_rails = np.asarray(m.rails_w), np.asarray(idle.rails_w)  # (N, rails) views of rows
            for j, key in enumerate(self.rail_keys):
                r = run_rails[:, j] * t1
                r += idle_rails[:, j] * t2
                r *= w
                info[key] = r
        reward = np.asarray(reward, dtype=np.float64)
        if self.autoreset_mode == AutoresetMode.NEXT_STEP:
            idx = np.flatnonzero(self._autoreset)
            if idx.size:
                self._reset_envs(idx)
                reward[idx] = 0.0
                truncated[idx] = False
                blank = self._blank_info()
                for key in blank:
                    if not key.startswith("_"):
                        info[key] = np.array(info[key])
                        info[key][idx] = blank[key][idx]
            self._autoreset = terminated | truncated
            obs = self._obs()
        else:
            idx = np.flatnonzero(truncated | terminated)
            obs = self._obs()
            if idx.size:
                mask = np.zeros(n, dtype=bool)
                mask[idx] = True
                final_obs = np.full(n, None, dtype=object)
                for i in idx:
                    final_obs[i] = obs[i]
                final_info = {key: np.array(v) for key, v in info.items()}
                final_info.update({"_" + key: mask for key in list(final_info)})
                self._reset_envs(idx)
                obs = self._obs()
                blank = self._blank_info()
                for key in blank:
                    if not key.startswith("_"):
                        info[key] = np.array(info[key])
                        info[key][idx] = blank[key][idx]
                info["final_obs"], info["_final_obs"] = final_obs, mask
                info["final_info"], info["_final_info"] = final_info, mask.copy()
        for key in list(info):
            if not key.startswith(("_", "final_")):
                info["_" + key] = self._all
        return obs, reward, terminated, truncated, info

    def close_extras(self, **kwargs: Any) -> None:
        """Nothing to release (the emulator holds no resources)."""

    # ------------------------------------------------------------------------------------------ helpers

    def _info_keys(self) -> list[str]:
        return [*INFO_KEYS, *getattr(self.reward_fn, "terms", ()), *self.rail_keys]

    def _check_actions(self, actions: Any) -> np.ndarray:
        k = len(self._nvec)
        try:
            a = np.asarray(actions)
        except (ValueError, TypeError):  # a ragged nested sequence
            raise SettingError(f"actions must have shape ({self.num_envs}, {k}) (num_envs × "
                               f"{list(self.action_names)}), got a ragged sequence") from None
        if a.shape != (self.num_envs, k):
            raise SettingError(
                f"actions must have shape ({self.num_envs}, {k}) (num_envs × {list(self.action_names)}), "
                f"got {a.shape}"
            )
        if a.dtype.kind not in "iu":
            integral = np.isfinite(a) & (a == np.round(a)) if a.dtype.kind == "f" else np.zeros(a.shape, bool)
            if not integral.all():
                i = int(np.argmax(~integral.all(axis=1)))
                values = a[i].tolist()
                check_levels_action(values, tuple(self._nvec.tolist()), self.action_names, values)
                raise SettingError(f"sub-env {i}: actions must be integers, got {values!r} (dtype {a.dtype})")
            a = a.astype(np.int64)
        if a.dtype == np.int64:  # negative levels read as huge unsigned ones: one comparison for both ends
            out_of_range = (a.view(np.uint64) >= self._nvec_u64).any()
        else:
            out_of_range = ((a < 0) | (a >= self._nvec[None, :])).any()
        if out_of_range:
            bad = (a < 0) | (a >= self._nvec[None, :])
            i = int(np.argmax(bad.any(axis=1)))
            try:
                check_levels_action(a[i].tolist(), tuple(self._nvec.tolist()), self.action_names, a[i])
            except SettingError as exc:
                raise SettingError(f"sub-env {i}: {exc}") from None
        return a.astype(np.int64, copy=False)

    def _refill(self, idx: np.ndarray) -> None:
        """The next :data:`VECTOR_CHUNK` frames of sub-envs ``idx`` into the frame buffers (one
        :meth:`SyntheticVideo.batch_many` call: the sub-envs' streams are generated together, each from its own
        generator, bit for bit as its own ``batch``)."""
        k = len(idx)
        if not k:
            return
        streams = [self._sources[i] for i in idx]
        if k == self.num_envs:  # every sub-env at once (they run in lockstep): straight into the buffers
            SyntheticVideo.batch_many(streams, VECTOR_CHUNK, out=self._stacked)
        else:
            b = SyntheticVideo.batch_many(streams, VECTOR_CHUNK)
            self._feat[idx] = b.features
            self._fchg[idx] = b.feature_change
            self._correct[idx] = b.correct
            self._conf[idx] = b.confidence
        self._pos[idx] = 0

    def _reset_envs(self, idx: np.ndarray) -> None:
        """Reset sub-envs ``idx`` exactly as ``EarlyExitDVFSEnv.reset`` does (seeds drawn from their np_random)."""
        hw = []
        for i in idx:
            rng = self._rngs[i]
            if rng is None:
                rng, _ = seeding.np_random(None)
                self._rngs[i] = rng
            src_seed, hw_seed = (int(x) for x in rng.integers(0, 2**63 - 1, size=2))
            self._sources[i].reset(src_seed)
            hw.append(hw_seed)
        self.emulator.reset(idx, hw)
        self._refill(idx)
        self._clock.reset(idx)
        o, emu, s = self._o, self.emulator, self.setup
        # Fresh arrays: the old ones may be in an info the caller still holds (returned values never change).
        for name in ("last_exit", "last_confidence", "last_feature_change", "latency", "energy"):
            a = np.array(getattr(o, name), dtype=np.float64)
            a[idx] = 0.0
            setattr(o, name, a)
        o.power = np.array(o.power, dtype=np.float64)
        o.power[idx] = emu.sensor_power_w[idx] / s.power_ref_w
        o.temperature = np.array(o.temperature, dtype=np.float64)
        o.temperature[idx] = (emu.temp_c[idx] - s.cooling.ambient_c) * self._temp_span
        o.throttled = np.array(o.throttled, dtype=np.float64)
        o.throttled[idx] = emu.throttled[idx]
        o.slack = self._clock.slack
        o.fps = self._clock.fps

    def _obs(self) -> np.ndarray:
        o, lv = self._o, self.emulator.levels
        feat = self._feat_rows.take(self._pos * self.num_envs + self._rows, axis=0)
        for j, name in enumerate(COMPLEXITY_FEATURES):
            setattr(o, name, feat[:, j])
        o.cpu_level = lv[:, 0] * self._inv_max[0]
        o.gpu_level = lv[:, 1] * self._inv_max[1]
        if self.setup.control_memory:
            o.emc_level = lv[:, 2] * self._inv_max[2]
        return self._obs_builder.many(o)

    def _blank_info(self) -> dict[str, Any]:
        """Reset-info arrays for every sub-env, shape ``(num_envs,)``: fresh rows read as after a reset."""
        emu, n = self.emulator, self.num_envs
        lv = emu.levels
        info: dict[str, Any] = {
            LATENCY_MS: np.zeros(n),
            ENERGY_J: np.zeros(n),
            POWER_W: emu.sensor_power_w,
            TEMP_C: emu.temp_c.copy(),
            EXIT: np.full(n, -1, np.int64),
            CORRECT: np.zeros(n, bool),
            CONFIDENCE: np.zeros(n),
            CPU_HZ: self._freq_tables[0][lv[:, 0]],
            GPU_HZ: self._freq_tables[1][lv[:, 1]],
            EMC_HZ: self._freq_tables[2][lv[:, 2]],
            DEADLINE_MISSED: np.zeros(n, bool),
            DVFS_SWITCHES: np.zeros(n, np.int64),
            MEASURED_ENERGY_J: np.zeros(n),
            RUN_MS: np.zeros(n),
            THROTTLED: emu.throttled,
            FRAME: np.full(n, -1, np.int64),
            PROFILING_RUNS: np.zeros(n, np.int64),
            PROFILING_MS: np.zeros(n),
            PROFILING_ENERGY_J: np.zeros(n),
            COST_MISS: np.zeros(n),
            COST_ACCURACY: np.zeros(n),
        }
        for key in getattr(self.reward_fn, "terms", ()):
            info[key] = np.zeros(n)
        held = emu.sensor_rails_w
        for j, key in enumerate(self.rail_keys):  # the monitor's held rail readings
            info[key] = held[:, j]
        for key in list(info):
            info["_" + key] = self._all
        return info
