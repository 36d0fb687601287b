"""``e4gym/EarlyExitDVFS-v1``: one step is one video frame through a multi-exit DNN on a (emulated) Jetson."""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import numpy as np

from e4gym.envs.base import F64, I64, NP_BOOL, NP_COST, NP_INT, StreamEnv, _tuple_new
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
    FrameOutcome,
    ObsField,
    frame_obs_fields,
)


class EarlyExitDVFSEnv(StreamEnv):
    """Choose each frame's exit and the CPU/GPU(/memory) clock levels of a Jetson running a multi-exit DNN.

    ## Description

    A video stream arrives at ``fps`` frames per second (default 30). Each step, the agent decides for the next
    frame where the multi-exit network (EfficientNet-B0 with five exits by default) exits and at which CPU
    and GPU (and, with ``control_memory``, memory) frequency levels the board runs. The frame runs on the
    backend, by default the calibrated emulator of :mod:`e4gym.hardware.emulator` (thermal model, throttling,
    DVFS transition delays, measurement noise, a polled power monitor). Time is *streaming*: a frame that
    finishes early leaves the board idle (at the clocks then set) until the next arrival, and that idle energy
    is charged to the frame; a frame that overruns delays the next one (it queues) and misses its deadline.

    ## Action Space

    ``MultiDiscrete([n_exits, n_cpu, n_gpu])``, plus ``n_emc`` with ``control_memory=True``:

    | index | name | values |
    |---|---|---|
    | 0 | `exit` | exit of the network, 0 (earliest) .. n_exits − 1 (the full network) |
    | 1 | `cpu_level` | CPU frequency level, 0 (lowest) .. highest allowed in the power mode |
    | 2 | `gpu_level` | GPU frequency level |
    | 3 | `emc_level` | memory frequency level (only with `control_memory`) |

    The level tables are the device's (``env.unwrapped.device_spec.cpu_freqs_hz`` etc., in Hz); levels
    above the power mode's caps are not in the space. Without ``control_memory`` the memory clock stays at its
    highest allowed level. ``env.unwrapped.action_names`` names the components.

    ## Observation Space

    A float32 ``Box`` of named fields (``env.unwrapped.obs_names``; without ``control_memory`` there is no
    ``emc_level``). Reference figures: ``E_ref``/``P_ref`` are the energy and power of a full-network frame at
    the top levels (``env.unwrapped.setup.energy_ref_j``, ``power_ref_w``).

    | index | name | range | meaning |
    |---|---|---|---|
    | 0–2 | `edge_density`, `motion`, `contrast` | [0, 1] | pre-inference features of the next frame (its pixels) |
    | 3 | `last_exit` | [0, 1] | exit of the previous frame / (n_exits − 1) |
    | 4 | `last_confidence` | [0, 1] | confidence of that exit's prediction |
    | 5 | `last_feature_change` | [0, 1] | previous frame's feature change at that exit (post-inference) |
    | 6 | `latency` | [0, 10] | previous frame's latency / deadline (> 1: missed) |
    | 7 | `energy` | [0, 10] | previous frame's energy as the power monitor reports it / E_ref |
    | 8 | `power` | [0, 10] | previous frame's average power as the power monitor reports it / P_ref |
    | 9 | `temperature` | [−1, 2] | (T − T_ambient) / (T_trip − T_ambient) |
    | 10 | `throttled` | {0, 1} | the thermal trip caps the clocks |
    | 11, 12 (13) | `cpu_level`, `gpu_level` (`emc_level`) | [0, 1] | current level / highest allowed level |
    | −2 | `slack` | [−10, 1] | (deadline − queueing delay the next frame already has) / deadline |
    | −1 | `fps` | [0, 4] | achieved / stream frame rate (moving average, α = 0.2, of inter-completion times) |

    ## Rewards

    A reward is any callable ``(outcome) -> (reward, terms)`` (``reward=``), taking the frame's
    :class:`~e4gym.envs.core.FrameOutcome` (true and measured energy, missed, correct, latency, exit); its
    ``terms`` go into ``info``. The default, :class:`~e4gym.envs.core.FrameReward`, is
    ``r = −w_E·E/E_ref − w_D·missed − w_A·(1 − correct)`` per frame: ``E`` the frame's energy (J), run plus
    idle until the next arrival (the true energy, or the power monitor's with ``reward_energy="measured"``);
    ``missed`` 1 when its latency, queueing included, exceeds the deadline; ``correct`` 1 when the chosen exit's
    prediction is right. Weights ``reward_weights={"energy": w_E, "deadline": w_D, "accuracy": w_A}``, each 1.0
    by default. Its three terms are in ``info`` (``reward_energy``, ``reward_deadline``, ``reward_accuracy``).

    ## Starting State

    The board at ambient temperature (or ``initial_temp_c``), time 0, all clocks at the highest allowed
    level; the frame stream restarts (a synthetic video from a seed drawn from ``np_random``, or a trace at a
    random frame).

    ## Episode End

    No termination (the stream is endless); truncation after ``episode_frames`` frames (default 1000).

    ## Info

    Every step (and reset) carries the keys of :data:`e4gym.envs.core.INFO_KEYS` (named constants there), every
    value a NumPy scalar: ``latency_ms``,
    ``energy_j``, ``power_w``, ``temp_c``, ``exit``, ``correct``, ``cpu_hz``, ``gpu_hz``, ``emc_hz``,
    ``deadline_missed``, ``dvfs_switches`` (DESIGN.md) plus ``measured_energy_j`` (what the power monitor
    reports), ``run_ms``, ``throttled``, ``frame`` and the reward terms. At reset ``exit`` is −1 and the
    figures are zero.

    ## Arguments

    ```python
    gymnasium.make("e4gym/EarlyExitDVFS-v1", device="xavier-nx", model="efficientnet_b0", backend="emulated",
                   workload="synthetic", deadline_ms=None, fps=None, reward_weights=None, reward=None,
                   reward_energy="true", control_memory=False, power_mode=None, episode_frames=1000, fan=None,
                   ambient_c=None, initial_temp_c=None, workload_kwargs=None, governors=None, backend_kwargs=None,
                   render_mode=None)
    ```

    The arguments are the fields of :class:`~e4gym.envs.core.EnvConfig`, shared by every e4gym env; an
    ``EnvConfig`` may be passed instead (``EarlyExitDVFSEnv(EnvConfig(device="nano"))``). An unknown argument
    is an error naming the known ones; an unsupported ``render_mode`` warns (as Gymnasium's envs do) and
    ``render()`` returns None.

    - ``device``: a name of ``configs/devices`` (``e4gym devices``), an alias (``nano``, ``tx2``, ``nx``,
      ``xavier``, ``orin``), a YAML path or a :class:`DeviceSpec`.
    - ``model``: a name of ``configs/models`` (``efficientnet_b0``, ``mobilenet_v2``, ``resnet18``) or a profile.
    - ``backend``: ``"emulated"`` or a backend object (e.g. a configured :class:`EmulatedBackend`).
    - ``workload``: ``"synthetic"`` (seeded :class:`~e4gym.workload.SyntheticVideo`; ``workload_kwargs`` take
      ``mean_scene_s``, ``drift``, ``feature_noise``), ``"clip:bikes"`` / ``"clip:bigbuckbunny"`` /
      ``"clip:carphone"`` (real video traces shipped in the package, with ``model="efficientnet_lite0"``;
      :mod:`e4gym.workload.clips`), a trace path from ``e4gym record``, or a FrameSource.
    - ``deadline_ms``: per-frame deadline (ms, > 0); default the frame period (33.3 ms at 30 fps).
    - ``fps``: stream frame rate (default 30, or the trace's).
    - ``power_mode``: nvpmodel mode (default: the device's). ``fan`` / ``ambient_c``: cooling (default: device's).
    - ``governors``: kernel governors that drive clock domains instead of the action, e.g. ``"default"`` (the
      device's shipped schedutil + nvhost_podgov) or ``{"cpu": "ondemand"}``; the action's level for a governed
      domain is ignored. Default: every domain follows the action (userspace).

    ## Version History

    - v0: initial version.
    - v1: causal observations (issue 12): the complexity features are the upcoming frame's pre-inference
      ``edge_density``, ``motion``, ``contrast`` (its pixels); ``feature_change`` (computed by running the
      network) is gone from them and shown after the fact as the previous frame's ``last_feature_change`` at
      the exit it left at; ``energy``/``power`` observations are what the power monitor reports;
      ``reward_energy`` selects the reward's energy source; ``profiling_*`` and ``power_<rail>_w`` info keys;
      ``profiling_run`` and ``cost_model`` (the controller's channels, through ``PolicyContext``); a user's
      FrameSource is copied per env (``FrameSource.spawn``). Env core (issue 13), same id: info values are
      NumPy scalars; ``reward=`` takes a callable ``(FrameOutcome) -> (reward, terms)``; the observation is
      clipped into the Box; an unsupported ``render_mode`` warns instead of raising; ``temp_c`` is read at the
      end of the idle wait in every env.
    """

    ACTION_HEAD: ClassVar[tuple[str, int | None]] = ("exit", None)

    def __init__(self, config: EnvConfig | None = None, /, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self._works = tuple(self.profile.frame_work(e) for e in range(self.profile.n_exits))

    @staticmethod
    def make_obs_fields(control_memory: bool) -> list[ObsField]:
        """The observation's fields (:func:`~e4gym.envs.core.frame_obs_fields`)."""
        return frame_obs_fields(control_memory)

    # ------------------------------------------------------------------------------------------ gym API

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        """Start an episode: reseed the stream and the board from ``np_random`` (seeded by ``seed``)."""
        sensors = self._reseed(seed)
        o = self._o
        # Previous-frame figures for the first observation: none yet.
        o.last_exit = o.last_confidence = o.latency = o.energy = 0.0
        o.slack = o.fps = 1.0
        return self._obs(), self._blank_info(sensors)

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Run the next frame with ``action`` = (exit, cpu_level, gpu_level[, emc_level])."""
        vals = self._parse_action(action)
        k: int = self._k  # type: ignore[assignment]
        s, clock, o, b = self.setup, self._clock, self._o, self.backend
        ex = vals[0]
        before = b.levels
        start = clock.free_s
        # The levels, the frame, then idle until the next one.
        m, idle = self._run_then_idle(self._works[ex], clock.slot_s(), 1,
                                      (vals[1], vals[2], vals[3] if s.control_memory else s.max_levels[2]))
        done = start + m.latency_s
        energy, measured, temp = m.energy_j, m.measured_energy_j, m.temp_c
        if idle is not None:
            energy += idle.energy_j
            measured += idle.measured_energy_j
            temp = idle.temp_c
        latency = clock.finish(done)
        after = b.levels
        if self._prof[0]:  # profiling runs before this frame: the board time is in `start`, the energy here
            p_runs, p_s, p_true, p_meas = self._take_profiling()
            energy += p_true
            measured += p_meas
            prof = (I64(p_runs), F64(p_s * 1e3), F64(p_true))
        else:
            p_s, prof = 0.0, self._no_profiling
        pos = self._pos
        row = self._correct[pos]
        correct = row[ex]
        missed = latency > s.deadline_s
        reward, terms = self.reward_fn(_tuple_new(FrameOutcome, (energy, measured, missed, correct, latency, ex, True)))
        # The next observation: the previous frame's figures as a controller on the board reads them (the
        # power monitor's energy and power, not the true ones).
        span = clock.free_s - start + p_s
        if span > 0.0:
            power, o.power = energy / span, measured / span * self._inv_power_ref
        else:
            power = m.avg_power_w
            o.power = power * self._inv_power_ref
        o.last_exit = ex * self._inv_exit
        o.last_confidence = conf = self._conf[pos][ex]
        o.last_feature_change = self._fchg[pos][ex]
        o.latency = latency * self._inv_deadline
        o.energy = measured * self._inv_energy_ref
        o.temperature = (temp - self._ambient_c) * self._temp_span
        o.throttled = 1.0 if m.throttled else 0.0
        o.slack = clock.slack
        o.fps = clock.fps
        self._k = k + 1
        self._pos = pos = pos + 1
        if pos == self._n_buf:
            self._fill()
        f = self._freqs
        info = {
            LATENCY_MS: F64(latency * 1e3),
            ENERGY_J: F64(energy),
            POWER_W: F64(power),
            TEMP_C: F64(temp),
            EXIT: NP_INT[ex + 1],
            CORRECT: NP_BOOL[correct],
            CONFIDENCE: F64(conf),
            CPU_HZ: f[0][after[0]],
            GPU_HZ: f[1][after[1]],
            EMC_HZ: f[2][after[2]],
            DEADLINE_MISSED: NP_BOOL[missed],
            DVFS_SWITCHES: NP_INT[(before[0] != after[0]) + (before[1] != after[1]) + (before[2] != after[2]) + 1],
            MEASURED_ENERGY_J: F64(measured),
            RUN_MS: F64(m.latency_s * 1e3),
            THROTTLED: NP_BOOL[m.throttled],
            FRAME: NP_INT[k + 1] if k < 4094 else I64(k),
            PROFILING_RUNS: prof[0],
            PROFILING_MS: prof[1],
            PROFILING_ENERGY_J: prof[2],
            COST_MISS: NP_COST[missed + 1],
            COST_ACCURACY: NP_COST[row[-1] - correct + 1],
        }
        for key, v in terms.items():
            info[key] = F64(v)
        self._frame_rails(info, m, idle)
        return self._obs(after), reward, False, k + 1 >= s.episode_frames, info

    def render(self) -> str | None:
        """``ansi``: one line describing the last frame."""
        if self.render_mode != "ansi":
            return None
        if self._k is None:
            raise gym.error.ResetNeeded("call reset() before render()")
        o = self._o
        return (
            f"frame {self._k} exit={o.last_exit / self._inv_exit if self._inv_exit else 0:.0f} "
            f"latency={o.latency:.2f}×deadline energy={o.energy:.2f}×E_ref "
            f"T={o.temperature:.2f}×(trip − ambient) levels={self.backend.levels}"
        )
