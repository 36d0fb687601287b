"""zTT (Kim et al., "zTT: Learning-based DVFS with Zero Thermal Throttling for Mobile Devices", MobiSys 2021)
as a baseline on the e4gym frame env.

Source: ``/work/shared/CALIBRATION.md`` §1, "zTT (Kim et al., MobiSys 2021) — public artifact for Jetson TX2",
and the artifact itself (``Jetson_tx2/agent.py`` of the public zTT repository), which settles the details
CALIBRATION.md leaves open (noted "artifact" below).

zTT is a DQN that picks the CPU and GPU clocks once per fps measurement from a 7-value state, with two hand rules
around the network that keep the board below a temperature target:

* **State** (7 values, :func:`ztt_state`): CPU clock index, GPU clock index, CPU power, GPU power (both in units
  of 100 mW), CPU temperature, GPU temperature (°C), fps (frames/s).
* **Action**: ``Discrete(9)``, a 3×3 grid of absolute levels, CPU major (artifact: index ``3·i + j`` is CPU
  grid position ``i``, GPU position ``j``); on TX2 both from levels {3, 7, 11} (:func:`ztt_grid`).
* **Reward** (:func:`ztt_reward`): ``r = u + v + β/P``; ``u = 1`` if fps ≥ target else ``fps/target``;
  ``v = 0.2·tanh(T_target − T_cpu)`` below the limit, ``v = −2`` once ``T_cpu ≥ T_target``; ``β = 2``,
  ``T_target = 50 °C``, ``P`` = CPU + GPU power (in 100 mW units, departure 11). Targets in the paper: 30 fps
  rendering, 15 fps YOLO; here the stream's frame rate by default.
* **Rules** (:meth:`ZTTCore.apply_rules`): at or above ``T_target`` the clocks are drawn at random at or below
  the current ones; with ≥ 5 °C headroom and fps below target, with probability 0.3 they are drawn at or above
  the current ones (the network is not asked). The replay memory stores the action that ran (artifact).
* **DQN** (:data:`ZTT_DQN_KWARGS`, :class:`ZTTDQN`): MLP 7→6→6→9, ReLU, MSE loss, Adam lr 0.05, replay 500,
  batch 64, training from 200 samples on, one gradient step per step, ε from 1 multiplied by 0.95 per training
  call (the artifact's floor is 0). Every transition is stored as terminal, so the target is the immediate
  reward: a contextual bandit. Samples with ``r < 0`` or ``r > 1`` are stored three
  times ("highlighted samples", artifact). One step per fps measurement, 2000 steps a run.

On the frame env one zTT step is one frame. :class:`ZTTEnv` wraps the frame env with zTT's state, action
grid, reward and rules (train it with :func:`make_ztt_model`); :class:`ZTTPolicy` serves a trained model to the
benchmark harness on the plain frame env and takes exactly the actions :class:`ZTTEnv` would.

Departures from the original (each forced by the emulator, or a stated choice):

1. **Per-rail power.** zTT reads the CPU and GPU rails of the TX2's INA3221; here the env's step ``info``
   reports the power monitor's rails, and zTT reads ``info["power_cpu_w"]`` and ``info["power_gpu_w"]``
   (:data:`ZTT_RAIL_KEYS`; the rails averaged over the frame, as the monitor reports them). The emulator's
   monitor has ``cpu``, ``gpu`` and ``soc`` rails (EMC and static power are on ``soc``, on neither of zTT's, as
   on the TX2). A board without separate CPU and GPU rails (Xavier NX, Orin: ``VDD_CPU_GPU_CV``) cannot run zTT:
   a :class:`~e4gym.errors.ConfigError` names the rails it has. Nothing is taken from the emulator's model.
2. **One temperature.** The emulator has one board temperature: it is both the CPU and the GPU temperature.
3. **fps.** zTT measures the app's frame rate once per step (about a second on TX2). Here fps is the throughput
   of the frame just run: ``min(stream fps, 1000 / run_ms)`` (``run_ms``: network time with DVFS stalls,
   queueing excluded). A frame as fast as the stream counts as meeting it; a slower one yields
   ``1000 / run_ms``, the rate a backlogged stream completes frames at. (``1000 / latency_ms`` would count the
   growing queueing delay of a backlog as slowness and fall towards 0.) 0 before the first frame.
4. **Learner; no target network or discount.** :class:`ZTTDQN` is zTT's DQN written in plain PyTorch with
   stable-baselines3's surface (``learn`` with SB3 callbacks, ``predict``, ``save``/``load``), not SB3's DQN.
   Every transition is stored as terminal, so the target is the immediate reward and the artifact's target
   network (copied every step) and γ = 0.99 never enter the update; the learner has neither.
5. **Loss.** The mean squared error of the taken action's Q value (Keras' ``mse`` over all 9 outputs, of which
   8 have zero error, differs by a factor 1/9 that Adam normalises away). No gradient clipping, as in Keras'
   default.
6. **ε.** Training starts after ``learning_starts=200`` *steps*; the artifact starts when its memory holds
   200 samples, highlighted copies included (so a little earlier). ε = max(ε_min, 0.95^n) with n the training
   calls so far; ε_min = 0 (artifact: ``epsilon_min = 0``). Before training starts actions are uniform at
   random, which is what ε = 1 does.
7. **Initialisation.** PyTorch's default layer initialisation instead of Keras' ``normal`` (σ = 0.05).
8. **Grid on other boards.** TX2's {3, 7, 11} generalises to the top level of each of three equal blocks of
   levels (:func:`ztt_grid`); it reproduces {3, 7, 11} for TX2's 12 CPU and 13 GPU levels.
9. **Thermal rules' randomness.** Drawn from a generator seeded by ``(rule_seed, frame index, state)``, so the
   wrapper and the policy draw the same numbers and a seeded episode replays exactly.
10. **First state.** Before the first frame the state is what the sensors read at reset: the env's reset
    ``info`` (clocks, temperature, the rails' reading; fps 0), which :class:`ZTTEnv` gets from ``reset()`` and
    :class:`ZTTPolicy` from ``context.last_info``. Without one (a harness that hands no reset ``info``) it is
    :meth:`ZTTCore.reset_info`: the top allowed clocks, the configured initial temperature and rails at 0 W
    (nothing measured yet).
11. **Power unit of β/P: the artifact's, not CALIBRATION.md's.** CALIBRATION.md gives P in W; the artifact's
    ``agent.py`` divides β by ``c_p + g_p``, the rail readings in units of 100 mW (ten times the watts), and its
    other constants fit that scale (a transition with ``r > 1``, "highlighted", is one that met the fps target
    below the temperature limit). The default follows the artifact (:data:`ZTT_POWER_UNIT_W` = 0.1 W);
    ``power_unit_w=1.0`` gives CALIBRATION.md's reading. On the emulated Xavier NX, whose CPU + GPU rails draw
    1–4 W, watts make ``β/P`` (0.5–2) outweigh the fps term (≤ 1) and the agent learns to sit at the lowest
    clocks; with the artifact's unit ``β/P`` is 0.05–0.2 and fps and temperature lead, as in the artifact.
12. **Clock levels.** The state's levels are the device table's levels nearest the clocks the frame ended at
    (``info["cpu_hz"]``, ``info["gpu_hz"]``; exact on the emulator, nearest on a board).

Example::

    import gymnasium as gym
    import e4gym  # noqa: F401
    from baselines.ztt import ZTTEnv, ZTTPolicy, make_ztt_model
    from e4gym.policy import run_episode

    env = ZTTEnv(gym.make("e4gym/EarlyExitDVFS-v1", device="xavier-nx", episode_frames=1000))
    model = make_ztt_model(env, seed=0)
    model.learn(2000)
    infos = run_episode(ZTTPolicy(model=model), gym.make("e4gym/EarlyExitDVFS-v1", device="xavier-nx"), seed=0)
"""

from __future__ import annotations

import io
import itertools
import json
import math
import sys
import time
import zipfile
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any, SupportsFloat

import gymnasium as gym
import numpy as np
import torch as th
import torch.nn.functional as F
from gymnasium import spaces
from stable_baselines3.common.callbacks import BaseCallback, CallbackList, ConvertCallback
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv

from e4gym.envs.common import EnvSetup
from e4gym.envs.wrappers import DiscreteActions
from e4gym.errors import ConfigError, SettingError
from e4gym.io import atomic_write
from e4gym.policy import PolicyContext, not_bound

__all__ = [
    "ZTTDQN",
    "ZTT_BETA",
    "ZTT_DQN_KWARGS",
    "ZTT_EPS_DECAY",
    "ZTT_EPS_MIN",
    "ZTT_EXPLORE_HEADROOM_C",
    "ZTT_EXPLORE_PROB",
    "ZTT_GRID_SIZE",
    "ZTT_HIGHLIGHT_COPIES",
    "ZTT_MODEL_FORMAT",
    "ZTT_POWER_UNIT_W",
    "ZTT_RAIL_KEYS",
    "ZTT_RULES",
    "ZTT_STATE_NAMES",
    "ZTT_T_TARGET_C",
    "ZTTCore",
    "ZTTEnv",
    "ZTTPolicy",
    "ZTTReplayBuffer",
    "make_ztt_model",
    "ztt_grid",
    "ztt_rails",
    "ztt_reward",
    "ztt_state",
]

# ---------------------------------------------------------------------------------------------- constants

#: β of the reward's power term ``β / P`` (CALIBRATION.md, zTT: β = 2).
ZTT_BETA = 2.0
#: Temperature target (°C): the penalty ``v = −2`` and the cooling rule apply at or above it (CALIBRATION.md).
ZTT_T_TARGET_C = 50.0
#: Scale of the below-limit temperature term ``v = 0.2·tanh(T_target − T)`` (CALIBRATION.md).
ZTT_TEMP_SCALE = 0.2
#: Temperature term once ``T ≥ T_target`` (CALIBRATION.md).
ZTT_TEMP_PENALTY = -2.0
#: Headroom below ``T_target`` (°C) from which the explore-higher rule may fire (CALIBRATION.md: 5 °C).
ZTT_EXPLORE_HEADROOM_C = 5.0
#: Probability of the explore-higher rule when it may fire (CALIBRATION.md: 0.3).
ZTT_EXPLORE_PROB = 0.3
#: Grid positions per clock domain: the 3×3 grid of ``Discrete(9)`` (CALIBRATION.md).
ZTT_GRID_SIZE = 3
#: Units of the state's power values (W): zTT reports CPU and GPU power in units of 100 mW (CALIBRATION.md).
ZTT_STATE_POWER_UNIT_W = 0.1
#: Unit (W) of the power ``P`` in the reward's ``β / P``: the artifact's ``agent.py`` divides β by ``c_p + g_p``, the
#: rail readings in units of 100 mW (departure 11). CALIBRATION.md writes P in W; ``power_unit_w=1.0`` gives that.
ZTT_POWER_UNIT_W = 0.1
#: Multiplicative ε decay per training call (CALIBRATION.md: 0.95).
ZTT_EPS_DECAY = 0.95
#: Floor of ε (artifact ``agent.py``: ``epsilon_min = 0``; CALIBRATION.md does not give one).
ZTT_EPS_MIN = 0.0
#: Extra copies of a "highlighted" transition (reward < 0 or > 1) in the replay memory (artifact ``agent.py``).
ZTT_HIGHLIGHT_COPIES = 2
#: Floor of the power ``P`` in ``β / P`` (W), against a division by a zero reading (the artifact substitutes a
#: dummy value for a zero reading instead).
ZTT_MIN_POWER_W = 0.01

#: Hyper-parameters of zTT's DQN (:class:`ZTTDQN`; CALIBRATION.md, zTT "DQN"; departures 4–6): MLP 7→6→6→9 with
#: ReLU, Adam lr 0.05, replay memory 500, batch 64, training from 200 steps on (one training call of one gradient
#: step per env step), ε from 1 multiplied by 0.95 per training call down to :data:`ZTT_EPS_MIN`, highlighted
#: transitions stored ``1 + 2`` times. Keys given to :func:`make_ztt_model` (or in ``configs/agents/ztt.yaml``)
#: override these.
ZTT_DQN_KWARGS: dict[str, Any] = {
    "net_arch": [6, 6],
    "learning_rate": 0.05,
    "buffer_size": 500,
    "batch_size": 64,
    "learning_starts": 200,
    "eps_decay": ZTT_EPS_DECAY,
    "eps_min": ZTT_EPS_MIN,
    "highlight_copies": ZTT_HIGHLIGHT_COPIES,
}


# ---------------------------------------------------------------------------------------------- grid


def ztt_grid(n_levels: int, k: int = ZTT_GRID_SIZE) -> list[int]:
    """The ``k`` level indices zTT's grid uses in a clock domain with ``n_levels`` levels (0 = lowest).

    The top level of each of ``k`` equal blocks of ``⌊n_levels / k⌋`` levels: ``(j + 1)·⌊n_levels / k⌋ − 1`` for
    ``j = 0..k−1``. On TX2 this is zTT's {3, 7, 11} for both the 12 CPU levels zTT used (11 is the top) and the
    13 GPU levels (the top level 12 is not on the grid, as in the artifact). On Xavier NX (25 CPU, 15 GPU levels)
    it is [7, 15, 23] and [4, 9, 14]. The ``n_levels mod k`` highest levels stay off the grid.

    Raises:
        ConfigError: ``k`` < 1 or ``n_levels`` < ``k`` (a grid of ``k`` distinct levels needs ``k`` levels).
    """
    for name, v in (("n_levels", n_levels), ("k", k)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise ConfigError(f"{name} must be an integer, got {v!r}")
    if k < 1 or n_levels < k:
        raise ConfigError(
            f"zTT's grid takes {k} distinct levels per clock domain but the domain allows only {n_levels} "
            "(a power mode that caps a domain below 3 levels cannot run zTT's 3×3 grid; pick another power mode)"
        )
    step = int(n_levels) // int(k)
    return [(j + 1) * step - 1 for j in range(int(k))]


def _check_grid(grid: Sequence[int], n_allowed: int, label: str) -> list[int]:
    vals = list(grid)
    ok = len(vals) == ZTT_GRID_SIZE and all(
        not isinstance(v, bool) and isinstance(v, (int, np.integer)) and 0 <= v < n_allowed for v in vals
    )
    if not ok or sorted(set(vals)) != vals:
        raise ConfigError(
            f"{label} must be {ZTT_GRID_SIZE} distinct increasing level indices in 0..{n_allowed - 1}, got {grid!r}"
        )
    return [int(v) for v in vals]


# ---------------------------------------------------------------------------------------------- power rails


#: The step ``info`` keys zTT reads its CPU and GPU power from (W): the power monitor's ``cpu`` and ``gpu`` rails.
ZTT_RAIL_KEYS: tuple[str, str] = ("power_cpu_w", "power_gpu_w")


def _rails_in(info: Mapping[str, Any]) -> list[str]:
    """The rails an ``info`` reports (``power_<rail>_w`` keys; ``power_w`` is the board's)."""
    return [k[len("power_"):-len("_w")] for k in info if k.startswith("power_") and k.endswith("_w") and k != "power_w"]


def ztt_rails(info: Mapping[str, Any]) -> tuple[float, float]:
    """``(cpu_w, gpu_w)``: the CPU and GPU rails' power (W) of a step's ``info`` (departure 1).

    Raises:
        ConfigError: ``info`` has no ``power_cpu_w`` / ``power_gpu_w`` (the backend's power monitor has no
            separate CPU and GPU rails); the message names the rails it has.
    """
    try:
        return float(info[ZTT_RAIL_KEYS[0]]), float(info[ZTT_RAIL_KEYS[1]])
    except KeyError:
        raise ConfigError(_no_rails_message(_rails_in(info))) from None


def _no_rails_message(rails: Sequence[str]) -> str:
    return (f"zTT reads the board's CPU and GPU power rails (info['power_cpu_w'], info['power_gpu_w']), but this "
            f"backend's power monitor reports the rails {list(rails)}: zTT needs a board with separate CPU and GPU "
            "rails (the emulator, Jetson Nano or TX2; Xavier NX and Orin feed the CPU and GPU from one rail)")


# ---------------------------------------------------------------------------------------------- state, reward


def _fps(info: Mapping[str, Any], stream_fps: float) -> float:
    """Frames per second of a step (departure 3): ``min(stream_fps, 1000 / run_ms)``, 0 without a frame."""
    run = float(info.get("run_ms", 0.0))
    if run <= 0.0 or int(info.get("exit", -1)) < 0:
        return 0.0
    f = 1000.0 / run
    return stream_fps if f > stream_fps else f


def ztt_state(info: Mapping[str, Any], setup: EnvSetup) -> np.ndarray:
    """zTT's 7-value state (float32) from a frame env step's ``info`` (CALIBRATION.md, zTT "State").

    ``[cpu_level, gpu_level, cpu_power, gpu_power, cpu_temp, gpu_temp, fps]``:

    - ``cpu_level`` / ``gpu_level``: raw level indices (0 = lowest) of the clocks the frame ended at in the
      device's tables, as zTT's state carries them (not normalised; departure 12);
    - ``cpu_power`` / ``gpu_power``: the CPU and GPU rails' power in units of 100 mW (so 35.0 is 3.5 W), from
      ``info["power_cpu_w"]`` / ``info["power_gpu_w"]`` (departure 1);
    - ``cpu_temp`` / ``gpu_temp``: the board temperature (°C), both (departure 2);
    - ``fps``: frames per second, ``min(stream fps, 1000 / run_ms)``, 0 when no frame ran (departure 3).

    Args:
        info: a step's ``info`` (keys of :data:`e4gym.envs.core.INFO_KEYS`, with the rails), or a reset's.
        setup: the env's setup (``env.unwrapped.setup``).

    Raises:
        ConfigError: ``info`` has no CPU and GPU rails (:func:`ztt_rails`).
    """
    cpu_w, gpu_w = ztt_rails(info)
    t = float(info["temp_c"])
    spec = setup.spec
    return np.array(
        [spec.level_of("cpu", float(info["cpu_hz"])), spec.level_of("gpu", float(info["gpu_hz"])),
         cpu_w / ZTT_STATE_POWER_UNIT_W, gpu_w / ZTT_STATE_POWER_UNIT_W, t, t, _fps(info, setup.fps)],
        dtype=np.float32,
    )


def ztt_reward(
    fps: float,
    temp_c: float,
    power_w: float,
    fps_target: float,
    t_target_c: float = ZTT_T_TARGET_C,
    beta: float = ZTT_BETA,
    power_unit_w: float = ZTT_POWER_UNIT_W,
) -> tuple[float, dict[str, float]]:
    """zTT's reward ``r = u + v + β/P`` and its terms (CALIBRATION.md, zTT "Reward").

    Args:
        fps: frames per second achieved (frames/s). fps_target: the target (frames/s).
        temp_c: CPU temperature (°C). t_target_c: the temperature target (°C).
        power_w: CPU + GPU rail power (W). beta: β. power_unit_w: the unit ``P`` is expressed in for ``β/P``
            (W; 0.1: the artifact's 100 mW units, the default; 1.0: watts as CALIBRATION.md; departure 11).

    Returns:
        ``(r, {"ztt_reward_fps": u, "ztt_reward_temp": v, "ztt_reward_power": β/P})`` with
        ``u = 1`` if ``fps ≥ fps_target`` else ``fps / fps_target``; ``v = 0.2·tanh(t_target_c − temp_c)`` below
        the target, ``−2`` at or above it.
    """
    u = 1.0 if fps >= fps_target else fps / fps_target
    v = ZTT_TEMP_PENALTY if temp_c >= t_target_c else ZTT_TEMP_SCALE * math.tanh(t_target_c - temp_c)
    w = beta / (max(power_w, ZTT_MIN_POWER_W) / power_unit_w)
    return u + v + w, {"ztt_reward_fps": u, "ztt_reward_temp": v, "ztt_reward_power": w}


# ---------------------------------------------------------------------------------------------- the shared core


#: Names of zTT's state fields, in order (units in :func:`ztt_state`).
ZTT_STATE_NAMES: tuple[str, ...] = ("cpu_level", "gpu_level", "cpu_power", "gpu_power", "cpu_temp", "gpu_temp",
                                    "fps")
#: Rule that set a step's clocks (``info["ztt_rule"]``): the network, the cooling rule, the explore rule.
ZTT_RULES: tuple[str, ...] = ("agent", "cool", "explore")


class ZTTCore:
    """What :class:`ZTTEnv` and :class:`ZTTPolicy` share: the grid, the state, the reward and the thermal rules.

    Args:
        setup: the frame env's setup (``env.unwrapped.setup``); its domains must follow the action (no kernel
            governors).
        exit: the exit every frame takes (0-based; ``-1``: the last, the full network, as zTT runs it).
        fps_target: zTT's fps target (frames/s); default the stream's frame rate.
        t_target_c: temperature target (°C). beta: β of ``β/P``. power_unit_w: unit of ``P`` in ``β/P`` (W).
        cpu_grid / gpu_grid: the three level indices of each domain (default :func:`ztt_grid` of the power mode's
            allowed levels).
        rule_seed: seed of the thermal rules' random draws (departure 9).

    Raises:
        ConfigError: the env runs kernel governors, a bad exit, target or grid.
    """

    def __init__(
        self,
        setup: EnvSetup,
        exit: int = -1,
        fps_target: float | None = None,
        t_target_c: float = ZTT_T_TARGET_C,
        beta: float = ZTT_BETA,
        power_unit_w: float = ZTT_POWER_UNIT_W,
        cpu_grid: Sequence[int] | None = None,
        gpu_grid: Sequence[int] | None = None,
        rule_seed: int = 0,
    ) -> None:
        from baselines.static import resolve_exit

        govs = setup.governors
        if govs is not None and not (isinstance(govs, Mapping) and all(v == "userspace" for v in govs.values())):
            raise ConfigError(
                f"zTT sets the CPU and GPU clocks itself: build the env without governors (got governors={govs!r})"
            )
        self.setup = setup
        self.exit = resolve_exit(exit, setup.profile.n_exits)
        for label, v in (("fps_target", fps_target), ("t_target_c", t_target_c), ("beta", beta),
                         ("power_unit_w", power_unit_w)):
            if v is None and label == "fps_target":
                continue
            ok = isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
            if not ok or not math.isfinite(float(v)) or (label != "t_target_c" and float(v) <= 0):
                raise ConfigError(f"{label} must be a finite number{'' if label == 't_target_c' else ' > 0'}, "
                                  f"got {v!r}")
        if isinstance(rule_seed, bool) or not isinstance(rule_seed, (int, np.integer)) or rule_seed < 0:
            raise ConfigError(f"rule_seed must be an integer >= 0, got {rule_seed!r}")
        self.fps_target = float(setup.fps if fps_target is None else fps_target)
        self.t_target_c, self.beta, self.power_unit_w = float(t_target_c), float(beta), float(power_unit_w)
        self.rule_seed = int(rule_seed)
        mx = setup.max_levels
        self.cpu_grid = ztt_grid(mx[0] + 1) if cpu_grid is None else _check_grid(cpu_grid, mx[0] + 1, "cpu_grid")
        self.gpu_grid = ztt_grid(mx[1] + 1) if gpu_grid is None else _check_grid(gpu_grid, mx[1] + 1, "gpu_grid")
        self.n_actions = ZTT_GRID_SIZE * ZTT_GRID_SIZE
        spec = setup.spec
        self._low = np.array([0, 0, 0, 0, -40.0, -40.0, 0], dtype=np.float32)
        self._high = np.array([spec.n_cpu - 1, spec.n_gpu - 1, 2000.0, 2000.0, 150.0, 150.0, setup.fps],
                              dtype=np.float32)

    # ---------------------------------------------------------------------------------- spaces and actions

    def observation_space(self) -> spaces.Box:
        """``Box(7,)`` float32: levels in the device's tables, power 0..2000 (×100 mW), −40..150 °C, fps."""
        return spaces.Box(self._low.copy(), self._high.copy(), dtype=np.float32)

    def choices(self) -> dict[str, list[int]]:
        """:class:`DiscreteActions` choices of the frame env: one exit, the grids, EMC at its top allowed level."""
        ch = {"exit": [self.exit], "cpu_level": list(self.cpu_grid), "gpu_level": list(self.gpu_grid)}
        if self.setup.control_memory:
            ch["emc_level"] = [self.setup.max_levels[2]]
        return ch

    def frame_action(self, index: int) -> np.ndarray:
        """The frame env's action ``[exit, cpu_level, gpu_level(, emc_level)]`` of grid action ``index`` (0..8).

        ``index = 3·i + j``: CPU grid position ``i``, GPU position ``j`` (the artifact's order; the same as
        :class:`DiscreteActions` with :meth:`choices`).
        """
        i, j = divmod(int(index), ZTT_GRID_SIZE)
        vals = [self.exit, self.cpu_grid[i], self.gpu_grid[j]]
        if self.setup.control_memory:
            vals.append(self.setup.max_levels[2])
        return np.array(vals, dtype=np.int64)

    # ---------------------------------------------------------------------------------- state and reward

    def reset_info(self) -> dict[str, Any]:
        """The first state's ``info`` when no reset ``info`` is at hand (departure 10): the top allowed clocks,
        the configured initial temperature (°C, the ambient's unless ``initial_temp_c``), rails at 0 W (nothing
        measured yet), no frame. Nothing here comes from the emulator's model."""
        s = self.setup
        spec = s.spec
        c, g, e = s.max_levels
        temp = s.cooling.ambient_c if s.initial_temp_c is None else float(s.initial_temp_c)
        return {"power_w": 0.0, "power_cpu_w": 0.0, "power_gpu_w": 0.0, "temp_c": temp,
                "cpu_hz": spec.cpu_freqs_hz[c], "gpu_hz": spec.gpu_freqs_hz[g], "emc_hz": spec.emc_freqs_hz[e],
                "run_ms": 0.0, "latency_ms": 0.0, "exit": -1, "frame": -1}

    def first_info(self, info: Mapping[str, Any] | None) -> Mapping[str, Any]:
        """The ``info`` the first state is built from: the env's reset ``info`` when given (and non-empty),
        else :meth:`reset_info` (departure 10)."""
        return info if info else self.reset_info()

    def state(self, info: Mapping[str, Any]) -> np.ndarray:
        """:func:`ztt_state` of ``info``, clipped into :meth:`observation_space`."""
        return np.clip(ztt_state(info, self.setup), self._low, self._high)

    def reward(self, state: np.ndarray) -> tuple[float, dict[str, float]]:
        """:func:`ztt_reward` of a state (after the step): its fps, CPU temperature and CPU + GPU power."""
        p = (float(state[2]) + float(state[3])) * ZTT_STATE_POWER_UNIT_W
        return ztt_reward(float(state[6]), float(state[4]), p, self.fps_target, self.t_target_c, self.beta,
                          self.power_unit_w)

    # ---------------------------------------------------------------------------------- thermal rules

    @staticmethod
    def _position(grid: list[int], level: float) -> int:
        """Grid position of the highest grid level not above ``level`` (0 if all are above)."""
        p = 0
        for i, v in enumerate(grid):
            if v <= level:
                p = i
        return p

    def apply_rules(self, action: int, state: np.ndarray, frame: int) -> tuple[int, str]:
        """zTT's thermal rules around the network (CALIBRATION.md, zTT "Rules"; artifact ``agent.py``).

        With ``T = state[4]`` (°C), ``fps = state[6]`` and ``(p_c, p_g)`` the grid positions of the current
        clocks (``state[0:2]``; a level off the grid counts as the highest grid level below it):

        - ``T ≥ t_target_c`` (rule ``"cool"``): each domain's position is drawn uniformly from ``0..p``, at or
          below the current one (the artifact's ``randint(0, p)``);
        - ``t_target_c − T ≥ 5`` and ``fps < fps_target``: with probability 0.3 (rule ``"explore"``) each
          position is drawn uniformly from ``p..2``, at or above the current one;
        - otherwise the network's ``action`` runs (rule ``"agent"``).

        The draws come from ``numpy.random.default_rng([rule_seed, frame, *state bits])`` (departure 9).

        Args:
            action: the network's grid action (0..8). state: the zTT state the action was chosen for.
            frame: index of the frame about to run (0 for the first of an episode).

        Returns:
            ``(action that runs, rule)``.
        """
        t, fps = float(state[4]), float(state[6])
        cool = t >= self.t_target_c
        may_explore = self.t_target_c - t >= ZTT_EXPLORE_HEADROOM_C and fps < self.fps_target
        if not (cool or may_explore):
            return int(action), "agent"
        bits = np.ascontiguousarray(state, dtype=np.float32).view(np.uint32).tolist()
        rng = np.random.default_rng([self.rule_seed, int(frame) + 1, *bits])
        pc = self._position(self.cpu_grid, float(state[0]))
        pg = self._position(self.gpu_grid, float(state[1]))
        top = ZTT_GRID_SIZE - 1
        if cool:
            i, j = int(rng.integers(0, pc + 1)), int(rng.integers(0, pg + 1))
            return i * ZTT_GRID_SIZE + j, "cool"
        if rng.random() < ZTT_EXPLORE_PROB:
            i, j = int(rng.integers(pc, top + 1)), int(rng.integers(pg, top + 1))
            return i * ZTT_GRID_SIZE + j, "explore"
        return int(action), "agent"


# ---------------------------------------------------------------------------------------------- the env wrapper


class ZTTEnv(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """zTT's view of the frame env ``e4gym/EarlyExitDVFS-v1``: its state, its 3×3 clock grid, its reward and rules.

    One step is one frame. The action is ``Discrete(9)`` (grid action ``3·i + j``: CPU grid position ``i``, GPU
    position ``j``; :meth:`ZTTCore.frame_action`); every frame takes exit ``exit`` (default the last: zTT runs
    the full network) and, with ``control_memory``, the EMC stays at its top allowed level. Before the frame
    runs, zTT's thermal rules may replace the action (:meth:`ZTTCore.apply_rules`). The observation is zTT's
    7-value state after the frame (:func:`ztt_state`), the reward zTT's ``u + v + β/P`` (:func:`ztt_reward`).

    ``info`` is the frame env's, plus ``ztt_reward_fps`` (u), ``ztt_reward_temp`` (v), ``ztt_reward_power``
    (β/P), ``ztt_fps`` (frames/s), ``ztt_cpu_power_w`` / ``ztt_gpu_power_w`` (rail power, W),
    ``ztt_agent_action`` (the action given), ``ztt_action`` (the grid action that ran; the replay memory stores
    it) and ``ztt_rule`` (``"agent"``, ``"cool"`` or ``"explore"``). The first observation of an episode is the
    state of the env's reset ``info`` (departure 10).

    Args:
        env: the frame env (``gymnasium.make("e4gym/EarlyExitDVFS-v1", ...)``) without kernel governors.
        exit, fps_target, t_target_c, beta, power_unit_w, cpu_grid, gpu_grid, rule_seed: see :class:`ZTTCore`.

    Raises:
        ConfigError: the env is not a frame env, runs kernel governors, or a bad argument.
    """

    def __init__(
        self,
        env: gym.Env,
        exit: int = -1,
        fps_target: float | None = None,
        t_target_c: float = ZTT_T_TARGET_C,
        beta: float = ZTT_BETA,
        power_unit_w: float = ZTT_POWER_UNIT_W,
        cpu_grid: Sequence[int] | None = None,
        gpu_grid: Sequence[int] | None = None,
        rule_seed: int = 0,
    ) -> None:
        gym.utils.RecordConstructorArgs.__init__(
            self, exit=exit, fps_target=fps_target, t_target_c=t_target_c, beta=beta, power_unit_w=power_unit_w,
            cpu_grid=cpu_grid, gpu_grid=gpu_grid, rule_seed=rule_seed,
        )
        setup = getattr(env.unwrapped, "setup", None)
        names = tuple(getattr(env.unwrapped, "action_names", ()))
        if not isinstance(setup, EnvSetup) or not names or names[0] != "exit":
            raise ConfigError(f"ZTTEnv wraps the frame env e4gym/EarlyExitDVFS-v1, got {env!r}")
        rails = getattr(getattr(env.unwrapped, "backend", None), "rail_names", None)
        if rails is not None and not {"cpu", "gpu"} <= set(rails):
            raise ConfigError(_no_rails_message(rails))
        self.core = ZTTCore(setup, exit=exit, fps_target=fps_target, t_target_c=t_target_c, beta=beta,
                            power_unit_w=power_unit_w, cpu_grid=cpu_grid, gpu_grid=gpu_grid, rule_seed=rule_seed)
        gym.Wrapper.__init__(self, env)
        #: Grid action -> frame env action (the same mapping as :meth:`ZTTCore.frame_action`).
        self.grid = DiscreteActions(env, self.core.choices())
        self.action_space = spaces.Discrete(self.core.n_actions)
        self.observation_space = self.core.observation_space()
        self.obs_names: tuple[str, ...] = ZTT_STATE_NAMES
        self._state: np.ndarray | None = None
        self._frame = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        """Reset the frame env; the observation is the state its reset ``info`` reads (departure 10)."""
        _, info = self.env.reset(seed=seed, options=options)
        self._state = self.core.state(self.core.first_info(info))
        self._frame = 0
        return self._state.copy(), info

    def step(self, action: Any) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        """Apply the thermal rules to ``action`` (0..8), run the frame, return zTT's state and reward."""
        if self._state is None:
            raise gym.error.ResetNeeded("call reset() before step()")
        agent = _grid_index(action, self.core.n_actions)
        ran, rule = self.core.apply_rules(agent, self._state, self._frame)
        _, _, terminated, truncated, info = self.env.step(self.grid.action(ran))
        state = self.core.state(info)
        reward, terms = self.core.reward(state)
        self._state = state
        self._frame += 1
        info = {**info, **terms, "ztt_fps": float(state[6]),
                "ztt_cpu_power_w": float(state[2]) * ZTT_STATE_POWER_UNIT_W,
                "ztt_gpu_power_w": float(state[3]) * ZTT_STATE_POWER_UNIT_W,
                "ztt_agent_action": agent, "ztt_action": ran, "ztt_rule": rule}
        return state.copy(), reward, terminated, truncated, info


# ---------------------------------------------------------------------------------------------- the DQN


#: Format tag of a saved :class:`ZTTDQN` (the JSON member of its ``.zip``).
ZTT_MODEL_FORMAT = "e4gym-ztt-dqn-1"
_META_MEMBER = "ztt_dqn.json"
_STATE_MEMBER = "state.pth"


class ZTTReplayBuffer:
    """zTT's replay memory: a ring of ``buffer_size`` transitions ``(state, action that ran, reward)``.

    Every transition is terminal (zTT's target is the immediate reward), so no next state is kept.

    Attributes:
        observations: ``(buffer_size, state size)`` float32. actions: ``(buffer_size,)`` int64 grid actions.
        rewards: ``(buffer_size,)`` float32. pos: the next row written. full: every row holds a transition.
    """

    def __init__(self, buffer_size: int, obs_dim: int) -> None:
        self.observations = np.zeros((buffer_size, obs_dim), dtype=np.float32)
        self.actions = np.zeros(buffer_size, dtype=np.int64)
        self.rewards = np.zeros(buffer_size, dtype=np.float32)
        self.pos = 0
        self.full = False

    def __len__(self) -> int:
        return len(self.actions) if self.full else self.pos

    def add(self, obs: np.ndarray, action: int, reward: float) -> None:
        """Store one transition (overwriting the oldest once full)."""
        self.observations[self.pos], self.actions[self.pos], self.rewards[self.pos] = obs, action, reward
        self.pos = (self.pos + 1) % len(self.actions)
        self.full = self.full or self.pos == 0

    def sample(self, batch_size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``batch_size`` transitions drawn uniformly with replacement: ``(states, actions, rewards)``."""
        i = rng.integers(0, len(self), size=batch_size)
        return self.observations[i], self.actions[i], self.rewards[i]


def _check_hyperparameters(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """:data:`ZTT_DQN_KWARGS` with ``overrides``; ConfigError for an unknown key or a bad value."""
    unknown = sorted(set(overrides) - set(ZTT_DQN_KWARGS))
    if unknown:
        raise ConfigError(f"zTT's DQN takes no argument {unknown}; it takes {sorted(ZTT_DQN_KWARGS)}")
    hp = {**ZTT_DQN_KWARGS, **overrides}
    arch = hp["net_arch"]
    if isinstance(arch, (str, bytes)) or not isinstance(arch, Sequence) or not all(
            isinstance(n, (int, np.integer)) and not isinstance(n, bool) and n >= 1 for n in arch):
        raise ConfigError(f"net_arch must be a list of layer widths >= 1, got {arch!r}")
    hp["net_arch"] = [int(n) for n in arch]
    for key, low in (("buffer_size", 1), ("batch_size", 1), ("learning_starts", 0), ("highlight_copies", 0)):
        v = hp[key]
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
            raise ConfigError(f"{key} must be an integer >= {low}, got {v!r}")
        hp[key] = int(v)
    for key, ok, what in (("learning_rate", lambda x: x > 0, "> 0"), ("eps_decay", lambda x: 0 < x <= 1, "in (0, 1]"),
                          ("eps_min", lambda x: 0 <= x <= 1, "in [0, 1]")):
        v = hp[key]
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not ok(float(v)):
            raise ConfigError(f"{key} must be a number {what}, got {v!r}")
        hp[key] = float(v)
    return hp


class ZTTDQN:
    """zTT's DQN, a small learner in plain PyTorch with stable-baselines3's surface (build it with
    :func:`make_ztt_model`; departures 4–6).

    - the network is an MLP ``state → net_arch → 9`` with ReLU, trained by Adam on the mean squared error of the
      taken action's Q value against the immediate reward (every transition is terminal: a contextual bandit);
    - the replay memory (:class:`ZTTReplayBuffer`) stores the grid action that ran (``info["ztt_action"]`` of
      :class:`ZTTEnv`), not the network's, as the artifact does when its thermal rules override the network;
      transitions with reward ``< 0`` or ``> 1`` are stored ``1 + highlight_copies`` times (artifact);
    - actions are uniform at random for the first ``learning_starts`` steps; after each later step one training
      call (one gradient step on a batch of ``batch_size``) runs, and actions are ε-greedy with
      ε = ``max(eps_min, eps_decay ** n)`` after ``n`` training calls (:attr:`exploration_rate`).

    The surface is SB3's where the harness and ``e4gym train`` use it: :meth:`learn` drives SB3 callbacks (a
    ``BaseCallback``, a list of them or a function) through their public hooks and logs to an SB3 ``Logger``
    (``rollout/``, ``train/`` and ``time/`` keys); :meth:`predict`, :meth:`save` / :meth:`load` (a ``.zip``,
    to a path or a binary file), :meth:`save_replay_buffer` / :meth:`load_replay_buffer`, :meth:`get_env`,
    :meth:`set_logger`, ``num_timesteps``, ``observation_space`` and ``action_space``.

    Args:
        env: the env to learn on (a :class:`ZTTEnv` or a wrapper of one, or an SB3 ``VecEnv`` of one env);
            ``None`` with ``observation_space`` and ``action_space`` for a model that only predicts.
        seed: seed of the network initialisation (PyTorch's default initialisation under ``seed``), the
            exploration, the replay sampling and the env's first reset.
        device: PyTorch device. observation_space / action_space: the spaces without an env.
        hyperparameters: keys of :data:`ZTT_DQN_KWARGS`, which they override.

    Attributes:
        q_net: the Q network. optimizer: its Adam optimiser. replay_buffer: the :class:`ZTTReplayBuffer`.
        n_updates: training calls so far. num_timesteps: env steps so far.

    Raises:
        ConfigError: an unknown or bad hyper-parameter, spaces other than a ``Box`` state and a ``Discrete``
            action, or no env and no spaces.
    """

    def __init__(self, env: gym.Env | VecEnv | None = None, *, seed: int = 0, device: str = "cpu",
                 observation_space: spaces.Space | None = None, action_space: spaces.Space | None = None,
                 **hyperparameters: Any) -> None:
        self.hyperparameters = _check_hyperparameters(hyperparameters)
        hp = self.hyperparameters
        self.learning_starts, self.batch_size = hp["learning_starts"], hp["batch_size"]
        self.highlight_copies = hp["highlight_copies"]
        self.seed, self.device = int(seed), th.device(device)
        self._env: VecEnv | None = None
        if env is not None:
            self._env = env if isinstance(env, VecEnv) else DummyVecEnv([lambda: env])
            observation_space, action_space = self._env.observation_space, self._env.action_space
        if not isinstance(observation_space, spaces.Box) or len(observation_space.shape) != 1 \
                or not isinstance(action_space, spaces.Discrete):
            raise ConfigError(f"zTT's DQN takes a Box state vector and a Discrete action (ZTTEnv's), got "
                              f"{observation_space} and {action_space}")
        self.observation_space, self.action_space = observation_space, action_space
        with th.random.fork_rng(devices=[]):
            th.manual_seed(self.seed)
            sizes = [observation_space.shape[0], *hp["net_arch"]]
            layers: list[th.nn.Module] = []
            for a, b in itertools.pairwise(sizes):
                layers += [th.nn.Linear(a, b), th.nn.ReLU()]
            self.q_net = th.nn.Sequential(*layers, th.nn.Linear(sizes[-1], int(action_space.n))).to(self.device)
        self.optimizer = th.optim.Adam(self.q_net.parameters(), lr=hp["learning_rate"])
        self.replay_buffer = ZTTReplayBuffer(hp["buffer_size"], observation_space.shape[0])
        self._rng = np.random.Generator(np.random.PCG64(self.seed))
        self.num_timesteps = 0
        self.n_updates = 0
        self._episode_num = 0
        self._ep_return, self._ep_len = 0.0, 0
        self._ep_infos: deque[tuple[float, int]] = deque(maxlen=100)
        self._last_obs: np.ndarray | None = None
        self._logger = Logger(folder=None, output_formats=[])
        if self._env is not None:
            self._env.seed(self.seed)  # the first reset of learn() (as SB3 seeds its env)

    # ---------------------------------------------------------------------------------- SB3's surface

    @property
    def exploration_rate(self) -> float:
        """ε: ``max(eps_min, eps_decay ** n_updates)`` (1 before the first training call)."""
        return max(self.hyperparameters["eps_min"], self.hyperparameters["eps_decay"] ** self.n_updates)

    @property
    def logger(self) -> Logger:
        """The SB3 logger training writes to (no output until :meth:`set_logger`)."""
        return self._logger

    def set_logger(self, logger: Logger) -> None:
        """Log to ``logger`` (e.g. ``stable_baselines3.common.logger.configure(folder, ["tensorboard"])``)."""
        self._logger = logger

    def get_env(self) -> VecEnv | None:
        """The training env, as a one-env SB3 ``VecEnv`` (``None`` without one)."""
        return self._env

    def get_vec_normalize_env(self) -> None:
        """SB3's hook for ``VecNormalize``: zTT normalises nothing."""
        return None

    def predict(self, observation: np.ndarray, state: Any = None, episode_start: np.ndarray | None = None,
                deterministic: bool = False) -> tuple[np.ndarray, Any]:
        """The grid action of one state (a 0-d array) or of a batch of states (``(n,)``); ``state`` passes
        through. ``deterministic=False`` explores with probability :attr:`exploration_rate`, as SB3's DQN."""
        obs = np.asarray(observation, dtype=np.float32)
        batch = obs.reshape(-1, self.observation_space.shape[0])
        with th.no_grad():
            actions = self.q_net(th.as_tensor(batch, device=self.device)).argmax(dim=1).cpu().numpy()
        if not deterministic:
            explore = self._rng.random(len(actions)) < self.exploration_rate
            actions = np.where(explore, self._rng.integers(0, self.action_space.n, len(actions)), actions)
        return (actions if obs.ndim > 1 else np.asarray(actions[0])), state

    def learn(self, total_timesteps: int, callback: Any = None, log_interval: int | None = 1,
              reset_num_timesteps: bool = True) -> ZTTDQN:
        """Train for ``total_timesteps`` env steps (more, with ``reset_num_timesteps=False``: up to
        ``num_timesteps + total_timesteps``); returns ``self``.

        Each step: the action (uniform at random before ``learning_starts`` steps, else ε-greedy), the env step,
        the callbacks' ``on_step`` (a ``False`` stops training), the transition into the memory, a log dump
        every ``log_interval`` episodes, and once past ``learning_starts`` one training call. The callbacks'
        ``on_rollout_start`` / ``on_rollout_end`` frame each step (SB3's DQN with ``train_freq=1``).

        Raises:
            ConfigError: the model has no env.
        """
        env = self._env
        if env is None:
            raise ConfigError("this zTT model has no env to learn on: build it with make_ztt_model(env)")
        if reset_num_timesteps:
            self.num_timesteps, self._episode_num = 0, 0
        total_timesteps = int(total_timesteps) + self.num_timesteps
        if reset_num_timesteps or self._last_obs is None:
            self._last_obs = env.reset()
            self._ep_return, self._ep_len = 0.0, 0
        callback = _as_callback(callback)
        callback.init_callback(self)  # type: ignore[arg-type]  (SB3's callbacks use the surface above)
        start, start_steps = time.time_ns(), self.num_timesteps
        callback.on_training_start(locals(), globals())
        while self.num_timesteps < total_timesteps:
            callback.on_rollout_start()
            obs = self._last_obs
            if self.num_timesteps < self.learning_starts:
                actions = self._rng.integers(0, self.action_space.n, env.num_envs)
            else:
                actions, _ = self.predict(obs, deterministic=False)
            new_obs, rewards, dones, infos = env.step(actions)
            self.num_timesteps += env.num_envs
            callback.update_locals(locals())
            if not callback.on_step():
                break
            self._store(obs, actions, rewards, infos)
            self._last_obs = new_obs
            for r, done in zip(rewards, dones):
                self._ep_return, self._ep_len = self._ep_return + float(r), self._ep_len + 1
                if done:
                    self._ep_infos.append((self._ep_return, self._ep_len))
                    self._ep_return, self._ep_len = 0.0, 0
                    self._episode_num += 1
                    if log_interval and self._episode_num % log_interval == 0:
                        self._dump_logs(start, start_steps)
            callback.on_rollout_end()
            if self.num_timesteps > self.learning_starts:
                self._train()
        callback.on_training_end()
        return self

    def _store(self, obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray, infos: list[dict]) -> None:
        """Store each env's transition with the action that ran, highlighted ones ``1 + highlight_copies`` times."""
        for o, a, r, info in zip(obs, actions, rewards, infos):
            ran = info.get("ztt_action", a)
            copies = 1 + (self.highlight_copies if (r < 0 or r > 1) else 0)
            for _ in range(copies):
                self.replay_buffer.add(o, int(ran), float(r))

    def _train(self) -> None:
        """One training call: a gradient step of the MSE between Q(state, action) and the reward (departure 5)."""
        obs, act, rew = self.replay_buffer.sample(self.batch_size, self._rng)
        q = self.q_net(th.as_tensor(obs, device=self.device))
        taken = q.gather(1, th.as_tensor(act, device=self.device).view(-1, 1)).squeeze(1)
        loss = F.mse_loss(taken, th.as_tensor(rew, device=self.device))
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self.n_updates += 1
        self._logger.record("train/n_updates", self.n_updates, exclude="tensorboard")
        self._logger.record("train/loss", float(loss.item()))
        self._logger.record("rollout/exploration_rate", self.exploration_rate)

    def _dump_logs(self, start_ns: int, start_steps: int) -> None:
        elapsed = max((time.time_ns() - start_ns) / 1e9, sys.float_info.epsilon)
        log = self._logger
        log.record("time/episodes", self._episode_num, exclude="tensorboard")
        if self._ep_infos:
            log.record("rollout/ep_rew_mean", float(np.mean([r for r, _ in self._ep_infos])))
            log.record("rollout/ep_len_mean", float(np.mean([n for _, n in self._ep_infos])))
        log.record("time/fps", int((self.num_timesteps - start_steps) / elapsed))
        log.record("time/time_elapsed", int(elapsed), exclude="tensorboard")
        log.record("time/total_timesteps", self.num_timesteps, exclude="tensorboard")
        log.dump(step=self.num_timesteps)

    # ---------------------------------------------------------------------------------- persistence

    def save(self, path: str | Path | IO[bytes]) -> None:
        """Write the model (hyper-parameters, spaces, network and optimiser state, counters, RNG state) as a
        ``.zip`` to ``path`` (``.zip`` is added to a path without a suffix, as SB3 does) or a binary file."""
        if isinstance(path, (str, Path)):
            path = Path(path)
            atomic_write(path.with_suffix(".zip") if not path.suffix else path, self.save)
            return
        obs = self.observation_space
        meta = {"format": ZTT_MODEL_FORMAT, "hyperparameters": self.hyperparameters, "seed": self.seed,
                "num_timesteps": self.num_timesteps, "n_updates": self.n_updates, "episodes": self._episode_num,
                "obs_low": obs.low.tolist(), "obs_high": obs.high.tolist(), "n_actions": int(self.action_space.n),
                "rng_state": self._rng.bit_generator.state}
        state = io.BytesIO()
        th.save({"q_net": self.q_net.state_dict(), "optimizer": self.optimizer.state_dict()}, state)
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr(_META_MEMBER, json.dumps(meta))
            zf.writestr(_STATE_MEMBER, state.getvalue())

    @classmethod
    def load(cls, path: str | Path, env: gym.Env | VecEnv | None = None, device: str = "cpu") -> ZTTDQN:
        """Read a model :meth:`save` wrote; with ``env``, ready to continue learning on it.

        Raises:
            ConfigError: the file is missing or not a zTT model, or ``env``'s spaces are not the model's.
        """
        try:
            with zipfile.ZipFile(path) as zf:
                meta = json.loads(zf.read(_META_MEMBER))
                state = th.load(io.BytesIO(zf.read(_STATE_MEMBER)), map_location=device, weights_only=True)
            if meta.get("format") != ZTT_MODEL_FORMAT:
                raise ValueError(f"format {meta.get('format')!r} is not {ZTT_MODEL_FORMAT!r}")
            obs = spaces.Box(np.asarray(meta["obs_low"], np.float32), np.asarray(meta["obs_high"], np.float32))
            act = spaces.Discrete(int(meta["n_actions"]))
        except Exception as exc:  # zip, JSON, torch and key errors all mean: not a zTT model file
            raise ConfigError(f"{path} is not a readable zTT model ({type(exc).__name__}: {exc})") from None
        if env is not None and (env.observation_space.shape != obs.shape or env.action_space != act):
            raise ConfigError(f"{path} was trained on states {obs.shape} and actions {act}; the env has "
                              f"{env.observation_space.shape} and {env.action_space}")
        model = cls(env, seed=int(meta["seed"]), device=device, observation_space=obs, action_space=act,
                    **meta["hyperparameters"])
        model.q_net.load_state_dict(state["q_net"])
        model.optimizer.load_state_dict(state["optimizer"])
        model.num_timesteps, model.n_updates = int(meta["num_timesteps"]), int(meta["n_updates"])
        model._episode_num = int(meta["episodes"])
        model._rng.bit_generator.state = meta["rng_state"]
        return model

    def save_replay_buffer(self, path: str | Path) -> None:
        """Write the replay memory to ``path`` (NumPy ``.npz`` content, whatever the suffix)."""
        b = self.replay_buffer
        atomic_write(Path(path), lambda f: np.savez(f, observations=b.observations, actions=b.actions,
                                                    rewards=b.rewards, pos=b.pos, full=b.full))

    def load_replay_buffer(self, path: str | Path) -> None:
        """Read the replay memory :meth:`save_replay_buffer` wrote.

        Raises:
            ConfigError: an unreadable file, or a memory of another size than the model's.
        """
        b = self.replay_buffer
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in ("observations", "actions", "rewards", "pos", "full")}
        except Exception as exc:  # zip, npy and key errors
            raise ConfigError(f"{path} is not a readable zTT replay memory ({type(exc).__name__}: {exc})") from None
        if arrays["observations"].shape != b.observations.shape:
            raise ConfigError(f"{path} holds a memory of shape {arrays['observations'].shape}; the model's is "
                              f"{b.observations.shape}")
        b.observations[:], b.actions[:], b.rewards[:] = arrays["observations"], arrays["actions"], arrays["rewards"]
        b.pos, b.full = int(arrays["pos"]), bool(arrays["full"])


def _as_callback(callback: Any) -> BaseCallback:
    """SB3's callback forms as one ``BaseCallback``: None, a callback, a list of them, or ``f(locals, globals)``."""
    if callback is None:
        return CallbackList([])
    if isinstance(callback, list):
        return CallbackList(callback)
    return callback if isinstance(callback, BaseCallback) else ConvertCallback(callback)


def _grid_index(action: Any, n: int) -> int:
    """``action`` (an integer, or a size-1 array of one) as an int in ``0..n-1``; SettingError otherwise."""
    a = np.asarray(action)
    v = a.reshape(-1)[0] if a.size == 1 else None
    if v is None or isinstance(v, (bool, np.bool_)) or not np.issubdtype(np.asarray(v).dtype, np.integer) \
            or not 0 <= int(v) < n:
        raise SettingError(f"action {action!r} is outside the action space Discrete({n}): give an integer in "
                           f"0..{n - 1}")
    return int(v)


def _find_ztt_env(env: gym.Env) -> ZTTEnv | None:
    e: Any = env
    while e is not None:
        if isinstance(e, ZTTEnv):
            return e
        e = getattr(e, "env", None)
    return None


def make_ztt_model(env: gym.Env, seed: int = 0, tensorboard_log: str | Path | None = None,
                   **overrides: Any) -> ZTTDQN:
    """zTT's agent (:class:`ZTTDQN` with :data:`ZTT_DQN_KWARGS`) on ``env``.

    Args:
        env: a :class:`ZTTEnv`, or a wrapper of one (``Monitor``, ``EpisodeStats``); a bare frame env is wrapped
            in a default :class:`ZTTEnv`.
        seed: seed of the network initialisation, replay sampling and exploration.
        tensorboard_log: TensorBoard folder (``None``: no logging).
        overrides: keys of :data:`ZTT_DQN_KWARGS` that replace its values (e.g. ``learning_starts=100``).

    Raises:
        ConfigError: ``env`` is neither a :class:`ZTTEnv` (or a wrapper of one) nor a frame env; an unknown or
            bad hyper-parameter.
    """
    if _find_ztt_env(env) is None:
        env = ZTTEnv(env)
    model = ZTTDQN(env, seed=seed, **overrides)
    if tensorboard_log is not None:
        from stable_baselines3.common.logger import configure

        model.set_logger(configure(str(tensorboard_log), ["tensorboard"]))
    return model


def _load_ztt_model(path: Path) -> Any:
    """A saved zTT model: :class:`ZTTDQN`'s ``.zip``, or a stable-baselines3 ``DQN``'s trained on :class:`ZTTEnv`
    (as zTT's agent was before it had its own learner).

    Raises:
        ConfigError: neither (names the file).
    """
    try:
        with zipfile.ZipFile(path) as zf:
            ours = _META_MEMBER in zf.namelist()
    except (zipfile.BadZipFile, OSError):
        ours = True  # ZTTDQN.load says what is wrong
    if ours:
        return ZTTDQN.load(path)
    from stable_baselines3 import DQN

    try:  # an old ZTTDQN's schedule class is gone: SB3 rebuilds its own
        return DQN.load(path, device="cpu", custom_objects={"exploration_schedule": None})
    except Exception as exc:  # zip, pickle and torch errors all mean: not a usable model
        raise ConfigError(f"{path} is not a readable zTT (DQN) model ({type(exc).__name__}: {exc})") from None


# ---------------------------------------------------------------------------------------------- the policy


class ZTTPolicy:
    """A trained zTT agent as a :class:`~e4gym.policy.Policy` of the frame env ``e4gym/EarlyExitDVFS-v1``.

    Each step it builds zTT's state from the previous frame's ``info`` (``context.last_info``: the CPU and GPU
    rails, clocks, temperature, run time; before the first frame the reset ``info``, departure 10), takes the
    network's greedy action, applies zTT's
    thermal rules with the same seeded draws as :class:`ZTTEnv` (:meth:`ZTTCore.apply_rules`), and returns the
    frame env's action ``[exit, cpu_level, gpu_level(, emc_level)]``. Given the same model, env arguments, seed
    and ZTT arguments it takes exactly the actions of stepping :class:`ZTTEnv` with ``model.predict(obs,
    deterministic=True)``. The observation handed to :meth:`predict` (the frame env's) is not used.

    Args:
        path: a saved model (``.zip`` of :class:`ZTTDQN`, or of an SB3 ``DQN`` trained on :class:`ZTTEnv`).
        model: a model object with SB3's ``predict`` (instead of ``path``).
        exit: the exit every frame takes (``-1``: the last).
        name: display name.
        fps_target, t_target_c, cpu_grid, gpu_grid, rule_seed: as for :class:`ZTTCore` (they must match the
            :class:`ZTTEnv` the model was trained on to reproduce it).

    Raises:
        ConfigError: neither or both of ``path`` and ``model``; an unreadable model (at :meth:`bind`); a model
            whose spaces are not zTT's; an env with kernel governors; (at :meth:`predict`) an env whose ``info``
            has no CPU and GPU rails (:func:`ztt_rails`).
    """

    clairvoyant = False

    def __init__(
        self,
        path: str | Path | None = None,
        model: Any = None,
        exit: int = -1,
        name: str = "ztt",
        fps_target: float | None = None,
        t_target_c: float = ZTT_T_TARGET_C,
        cpu_grid: Sequence[int] | None = None,
        gpu_grid: Sequence[int] | None = None,
        rule_seed: int = 0,
    ) -> None:
        if (path is None) == (model is None):
            raise ConfigError("ZTTPolicy needs exactly one of path= (a saved zTT model .zip) or model=")
        if model is not None and not callable(getattr(model, "predict", None)):
            raise ConfigError(f"model must have SB3's predict(observation, deterministic=True), got {model!r}")
        self.path = None if path is None else Path(path)
        self.model = model
        self.exit = exit
        self.name = name
        self.env_kwargs: dict[str, Any] = {}
        self._core_kwargs = {"exit": exit, "fps_target": fps_target, "t_target_c": t_target_c,
                             "cpu_grid": cpu_grid, "gpu_grid": gpu_grid, "rule_seed": rule_seed}
        self.core: ZTTCore | None = None
        self._ctx: PolicyContext | None = None

    def _load(self) -> Any:
        if self.model is None:
            assert self.path is not None
            if not self.path.is_file():
                raise ConfigError(f"{self.path} does not exist: give the .zip a zTT training run saved")
            self.model = _load_ztt_model(self.path)
        return self.model

    def bind(self, context: PolicyContext) -> None:
        """Load the model and check it and the env (no kernel governors; zTT's 7-value state and 9 actions)."""
        core = ZTTCore(context.setup, **self._core_kwargs)
        model = self._load()
        obs_space, act_space = getattr(model, "observation_space", None), getattr(model, "action_space", None)
        if obs_space is not None and tuple(obs_space.shape) != (len(ZTT_STATE_NAMES),):
            raise ConfigError(f"{self.name}: the model takes observations of shape {obs_space.shape}, not zTT's "
                              f"({len(ZTT_STATE_NAMES)},) state: was it trained on ZTTEnv?")
        if act_space is not None and getattr(act_space, "n", None) != core.n_actions:
            raise ConfigError(f"{self.name}: the model's action space is {act_space}, not zTT's "
                              f"Discrete({core.n_actions})")
        self.core = core
        self._ctx = context

    def predict(self, observation: np.ndarray, state: Any = None, episode_start: np.ndarray | None = None,
                deterministic: bool = True) -> tuple[np.ndarray, Any]:
        """The frame env's action for the next frame (``observation`` is not used; ``state`` passes through).

        The network's action is always the greedy one (zTT's deployed agent); ``deterministic`` is ignored.

        Raises:
            ConfigError: the policy was not bound to an env (:func:`e4gym.policy.bind_policy`).
        """
        core, ctx = self.core, self._ctx
        if core is None or ctx is None:
            raise not_bound(self.name)
        info = core.first_info(ctx.last_info)
        s = core.state(info)
        a, _ = self.model.predict(s, deterministic=True)
        frame = int(info.get("frame", -1)) + 1
        ran, _ = core.apply_rules(int(np.asarray(a).reshape(-1)[0]), s, frame)
        return core.frame_action(ran), state

    def reset(self) -> None:
        """Stateless between steps: the state comes from the last ``info``, the rules' draws are seeded per frame."""

    def __repr__(self) -> str:
        src = str(self.path) if self.path is not None else type(self.model).__name__
        return f"ZTTPolicy({src}, exit={self.exit}, name={self.name!r})"
