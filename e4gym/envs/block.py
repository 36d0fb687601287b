"""``e4gym/EarlyExitDVFSBlock-v1``: one step is one DNN block of a video frame on a (emulated) Jetson.

The per-block counterpart of :mod:`e4gym.envs.frame`: the agent sets the clocks before every block of the
backbone (per-layer DVFS, as E4's just-in-time profiler does) and, after each exit head, decides whether the
frame leaves there.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from e4gym.envs.base import F64, F64_ZERO, I64, NP_BOOL, NP_COST, NP_INT, B, StreamEnv
from e4gym.envs.core import (
    BLOCK,
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
    FRAME_DONE,
    GPU_HZ,
    LAST_FEATURE_CHANGE,
    LATENCY_MS,
    MEASURED_ENERGY_J,
    POWER_W,
    PROFILING_ENERGY_J,
    PROFILING_MS,
    PROFILING_RUNS,
    RUN_MS,
    TEMP_C,
    TEMPERATURE,
    THROTTLED,
    THROTTLED_FIELD,
    EnvConfig,
    FrameOutcome,
    ObsField,
    feature_fields,
    level_fields,
)
from e4gym.hardware.model import cost_table, power_table


def block_obs_fields(control_memory: bool) -> list[ObsField]:
    """Fields of the block env's observation, in order (see :class:`EarlyExitDVFSBlockEnv`)."""
    return [
        *feature_fields(),
        LAST_FEATURE_CHANGE,
        ObsField("block", 0.0, 1.0, "index of the block about to run / n_blocks"),
        ObsField("at_exit", 0.0, 1.0, "1 if an exit head just ran (exit_now can end the frame there), else 0"),
        ObsField("exit_confidence", 0.0, 1.0, "confidence of the exit head that just ran; 0 when none did"),
        ObsField("exit_index", 0.0, 1.0, "exit whose head just ran / (n_exits − 1); 0 when none did"),
        ObsField("elapsed", 0.0, 10.0, "time since the frame arrived, queueing included / deadline, clipped to 10"),
        ObsField("frame_energy", 0.0, 10.0, "energy the frame has used so far / E_ref, clipped to 10"),
        ObsField("remaining_work", 0.0, 1.0, "nominal top-clock latency of the blocks still ahead / of the backbone"),
        ObsField("power", 0.0, 10.0, "average power of the last segment (block, head or idle) / P_ref"),
        TEMPERATURE,
        THROTTLED_FIELD,
        *level_fields(control_memory),
    ]


class EarlyExitDVFSBlockEnv(StreamEnv):
    """Set the CPU/GPU(/memory) clocks before every block of a multi-exit DNN and decide where each frame exits.

    ## Description

    The per-block version of ``e4gym/EarlyExitDVFS-v1`` (:class:`~e4gym.envs.frame.EarlyExitDVFSEnv`),
    with the same arguments, board, stream and reward. A video stream arrives at ``fps`` frames per second
    (default 30); frame ``k`` arrives at ``k / fps`` s. Each step is one decision point of the current frame:
    before block ``j`` of the backbone the agent picks the clock levels block ``j`` runs at (per-layer DVFS;
    switching is charged by the backend: stalls and transition delays). Then block ``j`` runs. If block ``j``
    is the last block an exit ``e`` needs (``profile.exits[e].after_block``), the exit's head runs right after
    it at the same levels and its confidence becomes observable; at the next decision point the agent may
    end the frame there (``exit_now = 1``). The frame ends by itself after the last exit's head.

    Time is *streaming*, as in the frame env: a frame's first block starts when the board is free or when
    the frame arrives, whichever is later; a frame that overruns delays the next one (it queues) and misses
    its deadline; a frame that ends before the next arrival leaves the board idle, at the clocks then set,
    until that arrival, and the idle energy is charged to the frame.

    ## Action Space

    ``MultiDiscrete([2, n_cpu, n_gpu])``, plus ``n_emc`` with ``control_memory=True``:

    | index | name | values |
    |---|---|---|
    | 0 | `exit_now` | 1: end the frame at the exit whose head just ran; 0: run the next block |
    | 1 | `cpu_level` | CPU frequency level, 0 (lowest) .. highest allowed in the power mode |
    | 2 | `gpu_level` | GPU frequency level |
    | 3 | `emc_level` | memory frequency level (only with `control_memory`) |

    ``exit_now`` is ignored where no exit head just ran (``at_exit`` is 0 in the observation): then the next
    block runs. The levels are applied in every step, also when the frame exits: they are then the clocks of
    the idle wait until the next arrival and of the next frame's first block. The level tables are the
    device's (``env.unwrapped.device_spec.cpu_freqs_hz`` etc., in Hz); levels above the power mode's caps are
    not in the space. Without ``control_memory`` the memory clock stays at its highest allowed level.
    ``env.unwrapped.action_names`` names the components.

    ## Observation Space

    A float32 ``Box`` of named fields (``env.unwrapped.obs_names``; without ``control_memory`` there is no
    ``emc_level``), every value clipped into its range. ``E_ref``/``P_ref`` are the energy and power of a
    full-network frame at the top levels (``env.unwrapped.setup.energy_ref_j``, ``power_ref_w``).

    | index | name | range | meaning |
    |---|---|---|---|
    | 0–2 | `edge_density`, `motion`, `contrast` | [0, 1] | pre-inference features of the current frame (its pixels) |
    | 3 | `last_feature_change` | [0, 1] | previous frame's feature change at the exit it left at (post-inference) |
    | 4 | `block` | [0, 1] | index ``j`` of the block about to run / n_blocks |
    | 5 | `at_exit` | {0, 1} | an exit head just ran (``exit_now`` takes effect) |
    | 6 | `exit_confidence` | [0, 1] | that head's confidence; 0 when none ran |
    | 7 | `exit_index` | [0, 1] | that exit / (n_exits − 1); 0 when none ran |
    | 8 | `elapsed` | [0, 10] | time since the frame arrived (queueing included) / deadline |
    | 9 | `frame_energy` | [0, 10] | energy of the frame so far as the power monitor reports it / E_ref |
    | 10 | `remaining_work` | [0, 1] | top-clock latency of blocks ``j..`` / of the whole backbone |
    | 11 | `power` | [0, 10] | monitor's average power of the last segment (block, head or idle) / P_ref |
    | 12 | `temperature` | [−1, 2] | (T − T_ambient) / (T_trip − T_ambient) |
    | 13 | `throttled` | {0, 1} | the thermal trip caps the clocks |
    | 14, 15 (16) | `cpu_level`, `gpu_level` (`emc_level`) | [0, 1] | current level / highest allowed level |

    ``remaining_work`` uses the nominal (noise-free, ambient) latency of each block at the power mode's top
    levels; the backbone is blocks ``0 .. exits[-1].after_block``.

    ## Rewards

    Each step gets the energy term of what it spent, ``−w_E·E_step/E_ref`` (``E_step``: the true energy of
    the block and head it ran, plus the idle wait when the frame ends in it); the step that ends a frame also
    gets ``−w_D·missed − w_A·(1 − correct)``. So the rewards of a frame's steps sum to the frame env's reward
    for that frame, ``−w_E·E/E_ref − w_D·missed − w_A·(1 − correct)``
    (:class:`~e4gym.envs.core.FrameReward`), with ``E`` the frame's energy including the idle wait,
    ``missed`` 1 when its latency (queueing included) exceeds the deadline and ``correct`` 1 when the exit
    it left at is right. Weights ``reward_weights={"energy": w_E, "deadline": w_D, "accuracy": w_A}``, each
    1.0 by default. The step's three terms are in ``info`` (``reward_energy``, ``reward_deadline``,
    ``reward_accuracy``).

    A ``reward=`` callable gets each step's :class:`~e4gym.envs.core.FrameOutcome` (the step's energy;
    ``frame_done`` False, ``missed`` False and ``correct`` True while the frame still runs).

    ## Starting State

    The board at ambient temperature (or ``initial_temp_c``), time 0, all clocks at the highest allowed
    level; the first frame arrives at time 0 and its block 0 is next. The frame stream restarts (a synthetic
    video from a seed drawn from ``np_random``, or a trace at a random frame).

    ## Episode End

    No termination (the stream is endless); truncation on the step where the ``episode_frames``-th frame
    (default 1000) ends.

    ## Info

    Every step (and reset) carries the keys of :data:`e4gym.envs.core.INFO_KEYS` plus ``frame_done``
    (the frame ended in this step) and ``block`` (the block this step ran; −1 when the step ended the frame
    at an exit without running one, and at reset).

    - When ``frame_done``: the finished frame's figures as in the frame env: ``latency_ms`` (arrival to
      result, queueing included), ``energy_j`` (the whole frame, idle wait included), ``measured_energy_j``,
      ``power_w`` (``energy_j`` over the frame's time on the board), ``temp_c``, ``exit``, ``correct``,
      ``deadline_missed``, ``run_ms`` (blocks and heads, DVFS stalls included), ``throttled`` (the trip capped
      the clocks in any of the frame's segments), ``dvfs_switches`` (the number of clock domains, 0..3, whose
      effective level changed at least once during the frame, counting changes made by its steps' actions),
      ``cpu_hz``/``gpu_hz``/``emc_hz`` (clocks at the end of the step), ``frame`` (its index).
    - Otherwise the same keys describe the current frame so far: ``latency_ms`` the time since its arrival,
      ``energy_j``/``measured_energy_j``/``run_ms``/``dvfs_switches``/``throttled`` so far, ``power_w``
      its energy over its run time so far; ``exit`` −1, ``correct`` and ``deadline_missed`` False;
      ``frame`` its index.

    At reset ``exit`` and ``frame`` are −1, the figures are zero, ``frame_done`` is False.

    ## Arguments

    ```python
    gymnasium.make("e4gym/EarlyExitDVFSBlock-v1", device="xavier-nx", model="efficientnet_b0",
                   backend="emulated", workload="synthetic", deadline_ms=None, fps=None, reward_weights=None,
                   control_memory=False, power_mode=None, episode_frames=1000, fan=None, ambient_c=None,
                   initial_temp_c=None, workload_kwargs=None)
    ```

    - ``device``: a name of ``configs/devices`` (``e4gym devices``), an alias (``nano``, ``tx2``, ``nx``,
      ``xavier``, ``orin``), a YAML path or a :class:`DeviceSpec`.
    - ``model``: a name of ``configs/models`` (``efficientnet_b0``, ``mobilenet_v2``, ``resnet18``) or a profile.
    - ``backend``: ``"emulated"`` or a backend object (e.g. a configured :class:`EmulatedBackend`).
    - ``workload``: ``"synthetic"`` (seeded :class:`~e4gym.workload.SyntheticVideo`; ``workload_kwargs`` take
      ``mean_scene_s``, ``drift``, ``feature_noise``), a trace path from ``e4gym record``, or a FrameSource.
    - ``deadline_ms``: per-frame deadline (ms, > 0); default the frame period (33.3 ms at 30 fps).
    - ``fps``: stream frame rate (default 30, or the trace's).
    - ``power_mode``: nvpmodel mode (default: the device's). ``fan`` / ``ambient_c``: cooling (default: device's).
    - ``episode_frames``: frames per episode (an episode has more steps: one per block run or exit taken).

    ## Version History

    - v0: initial version.
    - v1: the changes of ``e4gym/EarlyExitDVFS-v1`` (causal observations, monitor-reported energy and power,
      ``reward_energy``, ``profiling_*`` and rail info keys, a user's FrameSource copied per env), plus
      ``last_feature_change`` before ``block`` and ``profiling_run`` only between frames.
    """

    ACTION_HEAD: ClassVar[tuple[str, int | None]] = ("exit_now", 2)

    def __init__(self, config: EnvConfig | None = None, /, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        s, spec, prof, mx = self.setup, self.device_spec, self.profile, self.setup.max_levels
        n_exits = prof.n_exits
        self._last_exit = n_exits - 1
        # The blocks a frame can run: 0 .. the last exit's after_block (normally every block).
        n_run = prof.exits[-1].after_block + 1
        self._block_works = tuple(prof.block_work(j) for j in range(n_run))
        self._head_works = tuple(prof.head_work(e) for e in range(n_exits))
        exit_at = [-1] * n_run
        for e, x in enumerate(prof.exits):
            exit_at[x.after_block] = e
        self._exit_at = tuple(exit_at)
        # Nominal latency of each block at the power mode's top levels (noise-free, no temperature effect).
        pt = power_table(spec, spec.power_mode(s.power_mode).cpu_online)
        top = spec.flat_index(mx)
        lat = [float(cost_table(spec, w, pt, 1).latency_s[top]) for w in self._block_works]
        total = sum(lat)
        self._remaining = tuple(min(1.0, sum(lat[j:]) / total) for j in range(n_run))
        self._inv_blocks = 1.0 / prof.n_blocks

    @staticmethod
    def make_obs_fields(control_memory: bool) -> list[ObsField]:
        """The observation's fields (:func:`block_obs_fields`)."""
        return block_obs_fields(control_memory)

    # ------------------------------------------------------------------------------------------ gym API

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        """Start an episode: reseed the stream and the board from ``np_random`` (seeded by ``seed``)."""
        sensors = self._reseed(seed)
        self._new_frame()
        return self._obs(), {**self._blank_info(sensors), FRAME_DONE: B(False), BLOCK: I64(-1)}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Decide at the current decision point with ``action`` = (exit_now, cpu_level, gpu_level[, emc_level])."""
        vals = self._parse_action(action)
        k: int = self._k  # type: ignore[assignment]
        s, clock, o = self.setup, self._clock, self._o
        b = self.backend
        before = b.levels
        b.apply((vals[1], vals[2], vals[3] if s.control_memory else s.max_levels[2]))
        pend = self._pend
        e_step = meas_step = 0.0
        m = None
        if vals[0] and pend >= 0:
            # End the frame at the exit whose head just ran; no block runs.
            ex = pend
            block = -1
            frame_done = True
        else:
            block = self._j
            m = b.run(self._block_works[block])
            e_step, meas_step, run = m.energy_j, m.measured_energy_j, m.latency_s
            throttled = m.throttled
            ex = self._exit_at[block]
            if ex >= 0:
                m = b.run(self._head_works[ex])
                e_step += m.energy_j
                meas_step += m.measured_energy_j
                run += m.latency_s
                throttled = throttled or m.throttled
            self._run += run
            self._f_throttled = self._f_throttled or throttled
            self._j = block + 1
            self._pend = ex
            frame_done = ex == self._last_exit
        start = clock.free_s
        done = start + self._run
        elapsed = done - clock.arrival_s()
        if frame_done:
            idle_s = clock.idle_s(done)
            if idle_s > 0.0:
                m = b.idle(idle_s)
                e_step += m.energy_j
                meas_step += m.measured_energy_j
            clock.finish(done)
        if m is not None:
            # The power monitor's reading of the last segment, as a controller sees it.
            o.power = (m.measured_energy_j / m.latency_s if m.latency_s > 0 else m.avg_power_w) / s.power_ref_w
            self._temp_c = m.temp_c
            o.temperature = self._temperature(m.temp_c)
            o.throttled = 1.0 if m.throttled else 0.0
        after = b.levels
        self._switched |= (before[0] != after[0]) | ((before[1] != after[1]) << 1) | ((before[2] != after[2]) << 2)
        sw = self._switched
        switches = (sw & 1) + ((sw >> 1) & 1) + ((sw >> 2) & 1)
        if self._prof[0]:  # profiling runs before this frame's first block: charged to this step
            p_runs, p_s, p_true, p_meas = self._take_profiling()
            e_step += p_true
            meas_step += p_meas
        else:
            p_runs, p_s, p_true = 0, 0.0, 0.0
        energy = self._f_energy + e_step
        measured = self._f_measured + meas_step
        run_s = self._run
        if frame_done:
            pos = self._pos
            o.last_feature_change = self._fchg[pos][ex]
            row = self._correct[pos]
            correct = row[ex]
            confidence = self._conf[pos][ex]
            missed = elapsed > s.deadline_s
            costs = NP_COST[missed + 1], NP_COST[row[-1] - correct + 1]
            span = clock.free_s - start + self._prof_s
        else:
            ex, correct, missed, confidence = -1, True, False, 0.0
            costs = F64_ZERO, F64_ZERO
            span = run_s + self._prof_s
        reward, terms = self.reward_fn(FrameOutcome(e_step, meas_step, missed, correct, elapsed, ex, frame_done))
        f = self._freqs
        info = {
            LATENCY_MS: F64(elapsed * 1e3),
            ENERGY_J: F64(energy),
            POWER_W: F64(energy / span if span > 0 else o.power * s.power_ref_w),
            TEMP_C: F64(self._temp_c),
            EXIT: NP_INT[ex + 1],
            CORRECT: NP_BOOL[correct and frame_done],
            CONFIDENCE: F64(confidence),
            CPU_HZ: F64(f[0][after[0]]),
            GPU_HZ: F64(f[1][after[1]]),
            EMC_HZ: F64(f[2][after[2]]),
            DEADLINE_MISSED: NP_BOOL[missed],
            DVFS_SWITCHES: NP_INT[switches + 1],
            MEASURED_ENERGY_J: F64(measured),
            RUN_MS: F64(run_s * 1e3),
            THROTTLED: NP_BOOL[self._f_throttled],
            FRAME: NP_INT[k + 1] if k < 4094 else I64(k),
            FRAME_DONE: NP_BOOL[frame_done],
            BLOCK: NP_INT[block + 1],
            PROFILING_RUNS: NP_INT[p_runs + 1] if p_runs < 4094 else I64(p_runs),
            PROFILING_MS: F64(p_s * 1e3),
            PROFILING_ENERGY_J: F64(p_true),
            COST_MISS: costs[0],
            COST_ACCURACY: costs[1],
        }
        for key, v in terms.items():
            info[key] = F64(v)
        if self.rail_keys:  # the rails the power monitor read during the step's last run or idle (W)
            info.update(self._rails(m.rails_w if m is not None else ()))
        truncated = False
        if frame_done:
            self._k = k + 1
            truncated = self._k >= s.episode_frames
            self._pos += 1
            if self._pos == self._n_buf:
                self._fill()
            self._new_frame()
        else:
            self._f_energy = energy
            self._f_measured = measured
        return self._obs(), reward, False, truncated, info

    def render(self) -> str | None:
        """``ansi``: one line describing the current decision point."""
        if self.render_mode != "ansi" or self._k is None:
            return None
        at = f" after exit {self._pend}" if self._pend >= 0 else ""
        elapsed = (self._clock.free_s + self._run - self._clock.arrival_s()) / self.setup.deadline_s
        return (
            f"frame {self._k} block {self._j}/{self.profile.n_blocks}{at} elapsed={elapsed:.2f}×deadline "
            f"energy={self._f_energy / self.setup.energy_ref_j:.2f}×E_ref T={self._temp_c:.1f}°C "
            f"levels={self.backend.levels}"
        )

    # ------------------------------------------------------------------------------------------ helpers

    def _between_frames(self) -> bool:
        return self._j == 0 and self._pend < 0

    def _reseed(self, seed: int | None) -> Any:
        sensors = super()._reseed(seed)
        self._temp_c = sensors.temp_c
        return sensors

    def _delay_next_frame(self, seconds: float) -> None:
        super()._delay_next_frame(seconds)
        self._prof_s += seconds

    def _new_frame(self) -> None:
        """Per-frame state for the next frame (its first block starts when the stream clock says the board is free)."""
        self._j = 0
        self._pend = -1
        self._run = 0.0
        self._f_energy = 0.0
        self._f_measured = 0.0
        self._f_throttled = False
        self._switched = 0
        self._prof_s = 0.0  # profiling time before this frame (s), part of the frame's time on the board

    def _obs(self, levels: tuple[int, int, int] | None = None) -> np.ndarray:
        s, o, pend, pos = self.setup, self._o, self._pend, self._pos
        clock = self._clock
        o.block = self._j * self._inv_blocks
        o.at_exit = 1.0 if pend >= 0 else 0.0
        o.exit_confidence = self._conf[pos][pend] if pend >= 0 else 0.0
        o.exit_index = pend * self._inv_exit if pend >= 0 else 0.0
        o.elapsed = (clock.free_s + self._run - clock.arrival_s()) / s.deadline_s
        o.frame_energy = self._f_measured / s.energy_ref_j
        o.remaining_work = self._remaining[self._j]
        return super()._obs(levels)
