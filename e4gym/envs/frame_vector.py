"""The native vector version of ``e4gym/EarlyExitDVFS-v1``: N frame envs stepped in one NumPy call."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from e4gym.dnn.profile import ModelProfile
from e4gym.envs.common import (
    DEFAULT_EPISODE_FRAMES,
    FPS_EMA_ALPHA,
    INFO_KEYS,
    check_levels_action,
    frame_obs_fields,
    obs_bounds,
    resolve_setup,
)
from e4gym.errors import ConfigError, SettingError
from e4gym.hardware.emulator import BatchedEmulator
from e4gym.hardware.spec import DeviceSpec
from e4gym.workload.base import N_FEATURES, FrameSource

#: Frames buffered per sub-env (the frame stream does not depend on it).
VECTOR_CHUNK = 512


class EarlyExitDVFSVectorEnv(VectorEnv):
    """``num_envs`` copies of :class:`~e4gym.envs.frame.EarlyExitDVFSEnv` on the batched emulator.

    Every sub-env follows the single env's rules exactly (same spaces, reward, observation fields, info keys,
    streaming time); sub-env ``i`` reset with seed ``s`` produces what ``EarlyExitDVFSEnv`` reset with seed
    ``s`` produces for the same actions, up to floating-point rounding of the vectorised math (about 1e-12
    relative). ``reset(seed=s)`` seeds sub-env ``i`` with ``s + i``, as Gymnasium's ``SyncVectorEnv`` does.

    The boards run on :class:`~e4gym.hardware.emulator.BatchedEmulator` (userspace clocks), so the backend is
    always the emulator; for another backend use ``gymnasium.make_vec(..., vectorization_mode="sync")``.

    **Autoreset** (``metadata["autoreset_mode"]``): ``AutoresetMode.NEXT_STEP`` by default, as Gymnasium's own
    vector envs: the step after a sub-env's episode ends resets it, ignores its action and returns its first
    observation with reward 0. ``autoreset_mode=AutoresetMode.SAME_STEP`` resets in the same step instead and
    puts the last observation and info in ``info["final_obs"]`` and ``info["final_info"]``.

    **Info** is Gymnasium's vector layout: ``info[key]`` an array of shape ``(num_envs,)`` and ``info["_" +
    key]`` its mask (all True: every key is present for every sub-env), for every key of
    :data:`~e4gym.envs.common.INFO_KEYS`.

    Args:
        num_envs: number of sub-envs (>= 1).
        autoreset_mode: ``AutoresetMode.NEXT_STEP`` (default) or ``AutoresetMode.SAME_STEP`` (or their values).
        The others: as :class:`~e4gym.envs.frame.EarlyExitDVFSEnv`; ``workload`` is ``"synthetic"`` or a trace path.
    """

    metadata: ClassVar[dict[str, Any]] = {"autoreset_mode": AutoresetMode.NEXT_STEP, "render_modes": []}

    def __init__(
        self,
        num_envs: int = 1,
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
        autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
        render_mode: str | None = None,
        backend_kwargs: dict[str, Any] | None = None,
        reward_energy: str = "true",
    ) -> None:
        if isinstance(num_envs, bool) or not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
            raise ConfigError(f"num_envs must be an integer >= 1, got {num_envs!r}")
        if backend != "emulated" or backend_kwargs:
            raise ConfigError(
                "the native vector env runs on the batched emulator only (backend='emulated', no backend_kwargs); "
                "for another backend or a measured profile "
                "use gymnasium.make_vec(..., vectorization_mode='sync')"
            )
        if isinstance(workload, FrameSource):
            raise ConfigError(
                "the native vector env needs one frame source per sub-env: pass workload='synthetic' or a trace "
                "path, or use gymnasium.make_vec(..., vectorization_mode='sync') with your FrameSource"
            )
        if render_mode is not None:
            raise ConfigError("the native vector env does not render; use render_mode=None")
        try:
            mode = AutoresetMode(autoreset_mode)
        except ValueError:
            raise ConfigError(
                f"autoreset_mode must be one of {[m.value for m in (AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP)]}"
                f", got {autoreset_mode!r}"
            ) from None
        if mode == AutoresetMode.DISABLED:
            raise ConfigError("autoreset_mode DISABLED is not supported; use NEXT_STEP or SAME_STEP")
        self.metadata = {**self.metadata, "autoreset_mode": mode}
        self.autoreset_mode = mode
        self.setup = s = resolve_setup(
            device=device, model=model, workload=workload, workload_kwargs=workload_kwargs, fps=fps,
            deadline_ms=deadline_ms, reward_weights=reward_weights, control_memory=control_memory,
            power_mode=power_mode, episode_frames=episode_frames, fan=fan, ambient_c=ambient_c,
            initial_temp_c=initial_temp_c, reward_energy=reward_energy,
        )
        self._reward_measured = s.reward_energy == "measured"
        self.num_envs = n = int(num_envs)
        self._zeros_i, self._zeros_f = np.zeros(n, np.int64), np.zeros(n)  # no profiling runs in the vector env
        self.render_mode = None
        self.device_spec = s.spec
        self.profile = s.profile
        self.reward_fn = s.reward
        mx = s.max_levels
        self._nvec = np.array(
            (s.profile.n_exits, mx[0] + 1, mx[1] + 1) + ((mx[2] + 1,) if s.control_memory else ()), dtype=np.int64
        )
        self.action_names: tuple[str, ...] = ("exit", "cpu_level", "gpu_level") + (
            ("emc_level",) if s.control_memory else ()
        )
        self.obs_fields = frame_obs_fields(s.control_memory)
        self.obs_names: tuple[str, ...] = tuple(f.name for f in self.obs_fields)
        low, high = obs_bounds(self.obs_fields)
        self._low, self._high = low.astype(np.float64), high.astype(np.float64)
        self.single_action_space = spaces.MultiDiscrete(self._nvec)
        self.action_space = batch_space(self.single_action_space, n)
        self.single_observation_space = spaces.Box(low, high, dtype=np.float32)
        self.observation_space = batch_space(self.single_observation_space, n)
        self.emulator = BatchedEmulator(
            s.spec, [0] * n, power_mode=s.power_mode, cooling=s.cooling, initial_temp_c=s.initial_temp_c
        )
        #: Info keys of the power monitor's rails, ``power_<rail>_w`` (W), as in the single env.
        self.rail_keys: tuple[str, ...] = tuple(f"power_{r}_w" for r in self.emulator.rail_names)
        self._info_keys = (*INFO_KEYS, *self.rail_keys)
        self._sources = [s.make_source() for _ in range(n)]
        self._works = tuple(s.profile.frame_work(e) for e in range(s.profile.n_exits))
        self._rngs: list[np.random.Generator | None] = [None] * n
        self._inv_max = np.array([1.0 / m if m > 0 else 0.0 for m in mx])
        self._inv_exit = 1.0 / (s.profile.n_exits - 1) if s.profile.n_exits > 1 else 0.0
        self._temp_span = 1.0 / max(s.trip_c - s.cooling.ambient_c, 1e-9)
        self._rows = np.arange(n)
        self._freq_tables = tuple(np.asarray(s.spec.freqs_hz(d)) for d in ("cpu", "gpu", "emc"))
        self._all = np.ones(n, dtype=bool)
        self._all.setflags(write=False)
        e = s.profile.n_exits
        self._feat = np.zeros((n, VECTOR_CHUNK, N_FEATURES), np.float32)
        self._fchg = np.zeros((n, VECTOR_CHUNK, e), np.float32)
        self._correct = np.zeros((n, VECTOR_CHUNK, e), bool)
        self._conf = np.zeros((n, VECTOR_CHUNK, e), np.float32)
        self._pos = np.zeros(n, np.int64)
        self._k = np.zeros(n, np.int64)
        self._free = np.zeros(n)
        self._prev_done = np.zeros(n)
        self._fps = np.ones(n)
        self._p = {name: np.zeros(n) for name in ("exit", "conf", "fchg", "lat", "energy", "power", "temp",
                                                  "throttled")}
        self._slack = np.ones(n)
        self._autoreset = np.zeros(n, dtype=bool)
        self._started = False

    # ------------------------------------------------------------------------------------------ API

    def reset(
        self, *, seed: int | list[int | None] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset every sub-env; ``seed`` an int (sub-env ``i`` gets ``seed + i``), a list of per-env seeds, or None."""
        n = self.num_envs
        if seed is None:
            seeds: list[int | None] = [None] * n
        elif isinstance(seed, (int, np.integer)) and not isinstance(seed, bool):
            seeds = [int(seed) + i for i in range(n)]
        else:
            seeds = list(seed)  # type: ignore[arg-type]
            if len(seeds) != n:
                raise ConfigError(f"reset(seed=list) needs {n} seeds (one per sub-env), got {len(seeds)}")
        for i, sd in enumerate(seeds):
            if sd is not None or self._rngs[i] is None:
                self._rngs[i], _ = seeding.np_random(sd)
        self._reset_envs(self._rows)
        self._autoreset[:] = False
        self._started = True
        return self._obs(), self._blank_info(self._rows)

    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Step every sub-env with ``actions`` (int array ``(num_envs, n_components)``)."""
        if not self._started:
            raise ConfigError("call reset() before step()")
        a = self._check_actions(actions)
        s, emu, n = self.setup, self.emulator, self.num_envs
        ex = a[:, 0]
        levels = np.empty((n, 3), np.int64)
        levels[:, 0] = a[:, 1]
        levels[:, 1] = a[:, 2]
        levels[:, 2] = a[:, 3] if s.control_memory else s.max_levels[2]
        before = emu.levels.copy()
        emu.apply(levels)
        m = emu.run_choice(self._works, ex)
        period = s.period_s
        k = self._k
        arrival = k * period
        start = np.maximum(self._free, arrival)
        done = start + m.latency_s
        latency = done - arrival
        nxt = (k + 1) * period
        need = done < nxt
        idle = emu.idle(np.where(need, nxt - done, 0.0), active=need)
        energy = np.where(need, m.energy_j + idle.energy_j, m.energy_j)
        measured = np.where(need, m.measured_energy_j + idle.measured_energy_j, m.measured_energy_j)
        temp = np.where(need, idle.temp_c, m.temp_c)
        free = np.where(need, nxt, done)
        after = emu.levels
        switches = np.count_nonzero(before != after, axis=1)
        rows, pos = self._rows, self._pos
        correct = self._correct[rows, pos, ex]
        conf = self._conf[rows, pos, ex]
        missed = latency > s.deadline_s
        reward, terms = self.reward_fn(measured if self._reward_measured else energy, missed, correct)
        gap = np.where(k > 0, done - self._prev_done, period)
        with np.errstate(divide="ignore"):
            inst = np.where(gap > 0, period / np.where(gap > 0, gap, 1.0), 4.0)
        self._fps += FPS_EMA_ALPHA * (np.minimum(inst, 4.0) - self._fps)
        self._prev_done = done
        self._free = free
        self._slack = 1.0 - (free - nxt) / s.deadline_s
        p = self._p
        p["exit"] = ex * self._inv_exit
        p["conf"] = conf.astype(np.float64)
        p["fchg"] = self._fchg[rows, pos, ex].astype(np.float64)
        p["lat"] = latency / s.deadline_s
        # Observations from what the power monitor reported, as a controller reads it.
        p["energy"] = measured / s.energy_ref_j
        span = free - start
        with np.errstate(divide="ignore", invalid="ignore"):
            safe = np.where(span > 0, span, 1.0)
            power = np.where(span > 0, energy / safe, m.avg_power_w)
            p["power"] = np.where(span > 0, measured / safe, m.avg_power_w) / s.power_ref_w
        p["temp"] = temp
        p["throttled"] = m.throttled.astype(np.float64)
        self._k = k + 1
        self._pos = pos + 1
        self._refill(np.flatnonzero(self._pos == VECTOR_CHUNK))
        truncated = self._k >= s.episode_frames
        terminated = np.zeros(n, dtype=bool)
        info = {
            "latency_ms": latency * 1e3,
            "energy_j": energy,
            "power_w": power,
            "temp_c": temp,
            "exit": ex.copy(),
            "correct": correct,
            "confidence": p["conf"].copy(),
            "cpu_hz": m.cpu_hz,
            "gpu_hz": m.gpu_hz,
            "emc_hz": m.emc_hz,
            "deadline_missed": missed,
            "dvfs_switches": switches,
            "measured_energy_j": measured,
            "run_ms": m.latency_s * 1e3,
            "throttled": m.throttled,
            "frame": k.copy(),
            **terms,
            "profiling_runs": self._zeros_i,
            "profiling_ms": self._zeros_f,
            "profiling_energy_j": self._zeros_f,
        }
        # The power monitor's rails over the run and the idle wait, time-weighted (as the single env reports them).
        if self.rail_keys:
            t1 = m.latency_s[:, None]
            t2 = np.where(need, idle.latency_s, 0.0)[:, None]
            idle_rails = np.where(need[:, None], idle.rails_w, 0.0)
            rails = (np.asarray(m.rails_w) * t1 + idle_rails * t2) / (t1 + t2)
            for j, key in enumerate(self.rail_keys):
                info[key] = rails[:, j]
        # Clocks after the idle wait (as the single env reports them).
        for d, key in enumerate(("cpu_hz", "gpu_hz", "emc_hz")):
            info[key] = self._freq_tables[d][after[:, d]]
        reward = np.asarray(reward, dtype=np.float64)
        if self.autoreset_mode == AutoresetMode.NEXT_STEP:
            idx = np.flatnonzero(self._autoreset)
            if idx.size:
                self._reset_envs(idx)
                reward[idx] = 0.0
                truncated[idx] = False
                blank = self._blank_info(idx)
                for key in self._info_keys:
                    info[key] = np.asarray(info[key]).copy()
                    info[key][idx] = blank[key][idx]
            self._autoreset = terminated | truncated
            obs = self._obs()
        else:
            idx = np.flatnonzero(truncated | terminated)
            obs = self._obs()
            if idx.size:
                mask = np.zeros(n, dtype=bool)
                mask[idx] = True
                final_obs = np.empty(n, dtype=object)
                for i in idx:
                    final_obs[i] = obs[i]
                final_info = {key: np.asarray(info[key]).copy() for key in self._info_keys}
                final_info.update({"_" + key: mask.copy() for key in self._info_keys})
                self._reset_envs(idx)
                obs = self._obs()
                info["final_obs"], info["_final_obs"] = final_obs, mask
                info["final_info"], info["_final_info"] = final_info, mask.copy()
        for key in self._info_keys:
            info["_" + key] = self._all
        return obs, reward, terminated, truncated, info

    def close_extras(self, **kwargs: Any) -> None:
        """Nothing to release (the emulator holds no resources)."""

    # ------------------------------------------------------------------------------------------ helpers

    def _check_actions(self, actions: Any) -> np.ndarray:
        a = np.asarray(actions)
        k = len(self._nvec)
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
        bad = (a < 0) | (a >= self._nvec[None, :])
        if bad.any():
            i = int(np.argmax(bad.any(axis=1)))
            try:
                check_levels_action(a[i].tolist(), tuple(self._nvec.tolist()), self.action_names, a[i])
            except SettingError as exc:
                raise SettingError(f"sub-env {i}: {exc}") from None
        return a.astype(np.int64, copy=False)

    def _refill(self, idx: np.ndarray) -> None:
        for i in idx:
            b = self._sources[i].batch(VECTOR_CHUNK)
            self._feat[i] = b.features
            self._fchg[i] = b.feature_change
            self._correct[i] = b.correct
            self._conf[i] = b.confidence
            self._pos[i] = 0

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
        self._k[idx] = 0
        self._free[idx] = 0.0
        self._prev_done[idx] = 0.0
        self._fps[idx] = 1.0
        for key, arr in self._p.items():
            if key not in ("power", "temp"):
                arr[idx] = 0.0
        self._p["power"][idx] = self.emulator.sensor_power_w[idx] / self.setup.power_ref_w
        self._p["temp"][idx] = self.emulator.temp_c[idx]
        self._slack[idx] = 1.0

    def _obs(self) -> np.ndarray:
        s, p = self.setup, self._p
        lv = self.emulator.levels
        cols = [
            self._feat[self._rows, self._pos].astype(np.float64),
            p["exit"][:, None],
            p["conf"][:, None],
            p["fchg"][:, None],
            np.minimum(p["lat"], 10.0)[:, None],
            np.minimum(p["energy"], 10.0)[:, None],
            np.minimum(p["power"], 10.0)[:, None],
            np.clip((p["temp"] - s.cooling.ambient_c) * self._temp_span, -1.0, 2.0)[:, None],
            p["throttled"][:, None],
            (lv[:, :3 if s.control_memory else 2] * self._inv_max[: 3 if s.control_memory else 2]),
            np.maximum(self._slack, -10.0)[:, None],
            self._fps[:, None],
        ]
        return np.concatenate(cols, axis=1).astype(np.float32)

    def _blank_info(self, idx: np.ndarray) -> dict[str, Any]:
        """The reset info of every sub-env (arrays of shape (num_envs,); rows ``idx`` are the fresh ones)."""
        emu, n = self.emulator, self.num_envs
        lv = emu.levels
        info: dict[str, Any] = {
            "latency_ms": np.zeros(n),
            "energy_j": np.zeros(n),
            "power_w": emu.sensor_power_w,
            "temp_c": emu.temp_c.copy(),
            "exit": np.full(n, -1, np.int64),
            "correct": np.zeros(n, bool),
            "confidence": np.zeros(n),
            "cpu_hz": self._freq_tables[0][lv[:, 0]],
            "gpu_hz": self._freq_tables[1][lv[:, 1]],
            "emc_hz": self._freq_tables[2][lv[:, 2]],
            "deadline_missed": np.zeros(n, bool),
            "dvfs_switches": np.zeros(n, np.int64),
            "measured_energy_j": np.zeros(n),
            "run_ms": np.zeros(n),
            "throttled": emu.throttled,
            "frame": np.full(n, -1, np.int64),
            "reward_energy": np.zeros(n),
            "reward_deadline": np.zeros(n),
            "reward_accuracy": np.zeros(n),
            "profiling_runs": np.zeros(n, np.int64),
            "profiling_ms": np.zeros(n),
            "profiling_energy_j": np.zeros(n),
        }
        held = emu.sensor_rails_w
        for j, key in enumerate(self.rail_keys):  # the monitor's held rail readings
            info[key] = held[:, j]
        for key in self._info_keys:
            info["_" + key] = self._all
        return info
