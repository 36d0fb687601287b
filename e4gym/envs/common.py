"""What the e4gym environments share: argument resolution, the reward, observation fields and info keys.

The frame env (:mod:`e4gym.envs.frame`), its native vector version (:mod:`e4gym.envs.frame_vector`) and the
block env (:mod:`e4gym.envs.block`) resolve their arguments here once (:func:`resolve_setup`), so they
validate input the same way and normalise observations and rewards by the same reference figures.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from e4gym.dnn.profile import ModelProfile, load_model_profile
from e4gym.errors import ConfigError, SettingError, UnknownNameError
from e4gym.hardware.backend import Backend, Cooling
from e4gym.hardware.emulator import EmulatedBackend
from e4gym.hardware.model import cost_table, power_table
from e4gym.hardware.spec import DeviceSpec, load_device
from e4gym.workload.base import COMPLEXITY_FEATURES, FrameSource
from e4gym.workload.synthetic import SyntheticVideo
from e4gym.workload.trace import Trace, TraceSource, load_trace

#: Default stream frame rate (frames per second) when the workload does not set one.
DEFAULT_FPS = 30.0
#: Default episode length (frames): 1000 frames is 33 s of video at 30 fps.
DEFAULT_EPISODE_FRAMES = 1000
#: Frames pulled from the frame source at a time (the stream does not depend on it).
SOURCE_CHUNK = 256
#: Smoothing factor of the ``fps`` observation (an exponential moving average over about 5 frames).
FPS_EMA_ALPHA = 0.2

# ---------------------------------------------------------------------------------------------- info keys

#: ``info`` keys every step of every e4gym env carries (DESIGN.md "The environments"), with their meaning.
INFO_KEYS: dict[str, str] = {
    "latency_ms": "frame latency from its arrival to its result, queueing included (ms)",
    "energy_j": "true board energy charged to the frame: its run plus the idle time until the next arrival (J)",
    "power_w": "average board power over the frame's time on the board (W)",
    "temp_c": "board temperature at the end of the frame (°C)",
    "exit": "exit the frame left at (0-based; -1 when no frame finished)",
    "correct": "whether that exit's prediction was correct",
    "confidence": "that exit's confidence (e.g. top softmax), as the running system sees it; 0 when no frame finished",
    "cpu_hz": "CPU clock the frame ended at (Hz)",
    "gpu_hz": "GPU clock the frame ended at (Hz)",
    "emc_hz": "memory (EMC) clock the frame ended at (Hz)",
    "deadline_missed": "the frame's latency exceeded the deadline",
    "dvfs_switches": "clock domains whose frequency changed during the frame (0..3)",
    "measured_energy_j": "energy_j as the board's power monitor reports it (J)",
    "run_ms": "time the network ran, DVFS stalls included, queueing excluded (ms)",
    "throttled": "the thermal trip capped the clocks",
    "frame": "frame number in the episode (0-based)",
    "reward_energy": "energy term of the reward",
    "reward_deadline": "deadline term of the reward",
    "reward_accuracy": "accuracy term of the reward",
    "profiling_runs": "profiling runs a policy ran on the board before this frame (PolicyContext.profile_run)",
    "profiling_ms": "board time of those runs (ms); the frame started that much later",
    "profiling_energy_j": "true energy of those runs (J), included in energy_j",
}

#: Besides :data:`INFO_KEYS`, every step carries ``power_<rail>_w`` for each rail of the backend's power
#: monitor (``env.unwrapped.rail_keys``; the emulator's: ``power_cpu_w``, ``power_gpu_w``, ``power_soc_w``):
#: the rail's average power over the frame's run and idle wait as the monitor reports it (W; in the block env,
#: over the step's last run or idle segment).
RAIL_KEY_FORMAT = "power_{}_w"

#: Where the reward's energy term comes from (``reward_energy=``): the true energy (the evaluation metric), or
#: what the board's power monitor reports (as a controller trained on a board would see it).
REWARD_ENERGY_SOURCES = ("true", "measured")

#: The reward term keys (also in :data:`INFO_KEYS`).
REWARD_TERMS = ("reward_energy", "reward_deadline", "reward_accuracy")


# ---------------------------------------------------------------------------------------------- reward


@dataclass(frozen=True)
class RewardWeights:
    """Weights of the reward terms (see :class:`FrameReward`); each must be a finite number >= 0."""

    energy: float = 1.0
    deadline: float = 1.0
    accuracy: float = 1.0

    def __post_init__(self) -> None:
        for name in ("energy", "deadline", "accuracy"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not (
                math.isfinite(v) and v >= 0
            ):
                raise ConfigError(f"reward weight '{name}' must be a finite number >= 0, got {v!r}")


@dataclass(frozen=True)
class FrameReward:
    """The per-frame reward ``r = −w_E·E/E_ref − w_D·missed − w_A·(1 − correct)``.

    - ``E``: the frame's true energy (J), its run plus the idle time until the next frame arrives;
      ``E_ref``: the energy of a frame that runs the full network at the power mode's top clocks
      (:attr:`EnvSetup.energy_ref_j`), so the energy term is about −1 per frame at top clocks on any device;
    - ``missed``: 1 if the frame's latency (queueing included) exceeds the deadline, else 0;
    - ``correct``: 1 if the exit the frame left at predicted the right class, else 0.

    Works on Python numbers and on NumPy arrays alike. Returns ``(reward, terms)`` with the terms under the
    keys of :data:`REWARD_TERMS`.
    """

    weights: RewardWeights
    energy_ref_j: float

    def __call__(self, energy_j: Any, missed: Any, correct: Any) -> tuple[Any, dict[str, Any]]:
        """Reward and its terms for a frame (or arrays of frames) with ``energy_j`` (J)."""
        w = self.weights
        r_e = -w.energy * energy_j / self.energy_ref_j
        r_d = -w.deadline * (missed * 1.0)
        r_a = -w.accuracy * (1.0 - correct * 1.0)
        return r_e + r_d + r_a, {"reward_energy": r_e, "reward_deadline": r_d, "reward_accuracy": r_a}


# ---------------------------------------------------------------------------------------------- observations


@dataclass(frozen=True)
class ObsField:
    """One named field of an observation vector: its bounds and what it means (with units)."""

    name: str
    low: float
    high: float
    doc: str


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


def level_fields(control_memory: bool) -> list[ObsField]:
    """Current clock levels, each as ``level / max_level`` of the power mode, in [0, 1]."""
    doms = ("cpu", "gpu", "emc") if control_memory else ("cpu", "gpu")
    return [ObsField(f"{d}_level", 0.0, 1.0, f"current {d.upper()} level / highest allowed level") for d in doms]


def frame_obs_fields(control_memory: bool) -> list[ObsField]:
    """Fields of the frame env's observation, in order."""
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
        ObsField("temperature", -1.0, 2.0, "(T − T_ambient) / (T_trip − T_ambient): 1 at the throttle trip"),
        ObsField("throttled", 0.0, 1.0, "1 while the thermal trip caps the clocks"),
        *level_fields(control_memory),
        ObsField("slack", -10.0, 1.0, "(deadline − queueing delay the next frame already has) / deadline"),
        ObsField("fps", 0.0, 4.0, "achieved frame rate / stream frame rate (moving average of inter-completion times)"),
    ]


def obs_bounds(fields: list[ObsField]) -> tuple[np.ndarray, np.ndarray]:
    """``(low, high)`` float32 arrays of the fields."""
    return (np.array([f.low for f in fields], np.float32), np.array([f.high for f in fields], np.float32))


def obs_table(fields: list[ObsField]) -> str:
    """The fields as a Markdown table (for docstrings and the README)."""
    rows = ["| index | name | range | meaning |", "|---|---|---|---|"]
    rows += [f"| {i} | `{f.name}` | [{f.low:g}, {f.high:g}] | {f.doc} |" for i, f in enumerate(fields)]
    return "\n".join(rows)


# ---------------------------------------------------------------------------------------------- setup


@dataclass(frozen=True)
class EnvSetup:
    """Resolved, validated arguments of an e4gym env (built by :func:`resolve_setup`).

    Attributes:
        spec / profile: the device and the multi-exit network's cost profile.
        power_mode: nvpmodel mode name. max_levels: highest allowed (cpu, gpu, emc) levels in that mode.
        fps: stream frame rate (frames/s). period_s: ``1 / fps`` (s). deadline_s: per-frame deadline (s).
        control_memory: the action includes the EMC level; otherwise EMC stays at its highest allowed level.
        episode_frames: frames per episode (the episode is truncated after them).
        cooling: fan or passive, ambient temperature. initial_temp_c: board temperature at reset (°C).
        weights: reward weights. energy_ref_j / power_ref_w / latency_ref_s: a full-network frame at the top
            levels of the power mode, noise-free at ambient temperature, idle until the next arrival included.
        workload: ``"synthetic"``, a :class:`Trace`, or a user's :class:`FrameSource`.
        workload_kwargs: keyword arguments of :class:`SyntheticVideo` (besides accuracies and fps).
        governors: kernel governors driving clock domains instead of the action (``None``: all userspace).
        reward_energy: ``"true"`` (default) or ``"measured"``: the energy the reward's energy term uses (the
            true energy is always the evaluation metric, ``info["energy_j"]``).
    """

    spec: DeviceSpec
    profile: ModelProfile
    power_mode: str
    max_levels: tuple[int, int, int]
    fps: float
    period_s: float
    deadline_s: float
    control_memory: bool
    episode_frames: int
    cooling: Cooling
    initial_temp_c: float | None
    weights: RewardWeights
    energy_ref_j: float
    power_ref_w: float
    latency_ref_s: float
    workload: Any
    workload_kwargs: dict[str, Any] = field(default_factory=dict)
    governors: dict[str, str] | str | None = None
    reward_energy: str = "true"

    @property
    def reward(self) -> FrameReward:
        """The reward function."""
        return FrameReward(self.weights, self.energy_ref_j)

    @property
    def trip_c(self) -> float:
        """Throttle trip temperature (°C)."""
        return self.spec.thermal.throttle_c

    def make_source(self) -> FrameSource:
        """A new frame source for one env (unseeded; the env seeds it at reset). A user's FrameSource is copied
        (:meth:`FrameSource.spawn`): every env and sub-env owns its stream, and the user's object is untouched."""
        w = self.workload
        if isinstance(w, FrameSource):
            return w.spawn()
        if isinstance(w, Trace):
            return TraceSource(w)
        return SyntheticVideo.from_profile(self.profile, fps=self.fps, **self.workload_kwargs)


def _number(value: object, name: str, *, positive: bool = True) -> float:
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    x = float(value) if ok else math.nan  # type: ignore[arg-type]
    if not (math.isfinite(x) and (x > 0 if positive else True)):
        raise ConfigError(f"{name} must be a finite number{' > 0' if positive else ''}, got {value!r}")
    return x


def _weights(reward_weights: object) -> RewardWeights:
    if reward_weights is None:
        return RewardWeights()
    if isinstance(reward_weights, RewardWeights):
        return reward_weights
    if isinstance(reward_weights, Mapping):
        allowed = ("energy", "deadline", "accuracy")
        unknown = [k for k in reward_weights if k not in allowed]
        if unknown:
            raise UnknownNameError(f"unknown reward weight(s) {unknown}; weights: {list(allowed)}")
        return RewardWeights(**reward_weights)  # type: ignore[arg-type]
    raise ConfigError(
        "reward_weights must be a dict like {'energy': 1.0, 'deadline': 1.0, 'accuracy': 1.0}, "
        f"got {reward_weights!r}"
    )


def _workload(workload: object, profile: ModelProfile) -> tuple[object, float | None]:
    """Resolve the workload argument; returns it and the frame rate it imposes (None for synthetic)."""
    if isinstance(workload, str) and workload == "synthetic":
        return "synthetic", None
    if isinstance(workload, (str, os.PathLike)):
        trace = load_trace(workload)
        workload = trace
    if isinstance(workload, (Trace, FrameSource)):
        n = workload.n_exits
        if n != profile.n_exits:
            raise ConfigError(
                f"the workload has {n} exits but model '{profile.name}' has {profile.n_exits}; record the trace "
                f"with that model (e4gym record --model {profile.name}) or pick the matching model"
            )
        return workload, float(workload.fps)
    raise ConfigError(
        f"workload must be 'synthetic', a path to a trace (.npz from `e4gym record`) or a FrameSource, got {workload!r}"
    )


def resolve_setup(
    *,
    device: str | DeviceSpec,
    model: str | ModelProfile,
    workload: object = "synthetic",
    workload_kwargs: Mapping[str, Any] | None = None,
    fps: float | None = None,
    deadline_ms: float | None = None,
    reward_weights: object = None,
    control_memory: bool = False,
    power_mode: str | None = None,
    episode_frames: int = DEFAULT_EPISODE_FRAMES,
    fan: bool | None = None,
    ambient_c: float | None = None,
    initial_temp_c: float | None = None,
    governors: dict[str, str] | str | None = None,
    reward_energy: str = "true",
) -> EnvSetup:
    """Validate the env arguments and compute the reference figures (see the env classes for their meaning).

    Raises:
        UnknownNameError: unknown device, model, power mode or reward weight (lists the known ones).
        ConfigError: a number out of range (deadline <= 0, fps <= 0, episode_frames < 1, ...), a workload that
            is not a trace or does not match the model.
    """
    spec = load_device(device)
    profile = model if isinstance(model, ModelProfile) else load_model_profile(model)
    mode = spec.power_mode(power_mode)  # raises UnknownNameError listing the modes
    max_levels = spec.max_levels(mode.name)
    wl, wl_fps = _workload(workload, profile)
    if fps is None:
        fps = wl_fps if wl_fps is not None else DEFAULT_FPS
    fps = _number(fps, "fps (frames per second)")
    if wl_fps is not None and abs(fps - wl_fps) > 1e-9:
        raise ConfigError(f"fps={fps:g} contradicts the workload's frame rate {wl_fps:g}; leave fps unset")
    period = 1.0 / fps
    deadline_s = period if deadline_ms is None else _number(deadline_ms, "deadline_ms (milliseconds)") / 1e3
    if isinstance(episode_frames, bool) or not isinstance(episode_frames, (int, np.integer)) or episode_frames < 1:
        raise ConfigError(f"episode_frames must be an integer >= 1, got {episode_frames!r}")
    if not isinstance(control_memory, (bool, np.bool_)):
        raise ConfigError(f"control_memory must be True or False, got {control_memory!r}")
    wk = dict(workload_kwargs or {})
    if wk and wl != "synthetic":
        raise ConfigError("workload_kwargs only apply to the synthetic workload; drop them for a trace")
    bad = [k for k in wk if k not in ("mean_scene_s", "drift", "feature_noise")]
    if bad:
        raise UnknownNameError(
            f"unknown workload_kwargs {bad}; synthetic video takes: ['mean_scene_s', 'drift', 'feature_noise']"
        )
    if wl == "synthetic":
        SyntheticVideo.from_profile(profile, fps=fps, **wk)  # validates the kwargs now, not at the first reset
    cooling = Cooling(
        fan=spec.thermal.fan if fan is None else bool(fan),
        ambient_c=spec.thermal.ambient_c if ambient_c is None else _number(ambient_c, "ambient_c", positive=False),
    )
    if initial_temp_c is not None:
        initial_temp_c = _number(initial_temp_c, "initial_temp_c", positive=False)
    if governors is not None:
        from e4gym.hardware.emulator import _validate_governors

        _validate_governors(spec, governors)  # raises UnknownNameError naming the allowed governors
    if reward_energy not in REWARD_ENERGY_SOURCES:
        raise ConfigError(f"reward_energy must be one of {list(REWARD_ENERGY_SOURCES)}, got {reward_energy!r}")
    lat, energy, power = reference_frame(spec, profile, power_mode, period, cooling.ambient_c)
    return EnvSetup(
        spec=spec,
        profile=profile,
        power_mode=mode.name,
        max_levels=max_levels,
        fps=fps,
        period_s=period,
        deadline_s=deadline_s,
        control_memory=bool(control_memory),
        episode_frames=int(episode_frames),
        cooling=cooling,
        initial_temp_c=initial_temp_c,
        weights=_weights(reward_weights),
        energy_ref_j=energy,
        power_ref_w=power,
        latency_ref_s=lat,
        workload=wl,
        workload_kwargs=wk,
        governors=governors,
        reward_energy=reward_energy,
    )


def reference_frame(
    spec: DeviceSpec, profile: ModelProfile, power_mode: str | None, period_s: float, temp_c: float
) -> tuple[float, float, float]:
    """Noise-free ``(latency_s, energy_j, run_power_w)`` of a full-network frame at the power mode's top levels.

    The energy includes the idle time until the next arrival (``period_s``) when the frame is faster than the
    frame period; leakage is evaluated at ``temp_c`` (°C). Same model as the emulator (:mod:`e4gym.hardware.model`).
    """
    mode = spec.power_mode(power_mode)
    pt = power_table(spec, mode.cpu_online)
    table = cost_table(spec, profile.frame_work(), pt, 1)
    c, g, e = spec.max_levels(power_mode)
    idx = (c * spec.n_gpu + g) * spec.n_emc + e
    m = spec.model
    floor = pt.static_w + pt.idle_dyn_w[idx] + pt.leak_ref_w[idx] * math.exp(
        m.leak_temp_coeff_per_c * (temp_c - m.temp_ref_c)
    )
    lat = float(table.latency_s[idx])
    run_j = floor * lat + float(table.busy_dyn_j[idx])
    return lat, float(run_j + floor * max(0.0, period_s - lat)), float(run_j / lat)


def check_levels_action(values: list, nvec: tuple[int, ...], names: tuple[str, ...], action: object) -> None:
    """Raise :class:`SettingError` naming the first component of ``values`` outside ``0..nvec-1``."""
    if len(values) != len(nvec):
        raise SettingError(
            f"action {action!r} has {len(values)} components; the action space MultiDiscrete({list(nvec)}) "
            f"takes {len(nvec)}: {list(names)}"
        )
    for v, n, name in zip(values, nvec, names):
        integral = isinstance(v, (int, np.integer)) or (isinstance(v, (float, np.floating)) and float(v).is_integer())
        if isinstance(v, bool) or not integral or not 0 <= v < n:
            raise SettingError(
                f"action {action!r} is outside the action space MultiDiscrete({list(nvec)}): component "
                f"'{name}' must be an integer in 0..{n - 1}, got {v!r}"
            )


#: Backend names an env accepts (``backend=``); a Backend object is accepted too.
BACKENDS = ("emulated", "jetson")


def make_backend(backend: object, setup: EnvSetup, backend_kwargs: Mapping[str, Any] | None = None) -> Any:
    """The backend an env runs on.

    ``"emulated"`` builds an :class:`EmulatedBackend` (``backend_kwargs``: ``measured``, a measured profile or
    its path, replaces the analytic model); ``"jetson"`` a :class:`~e4gym.hardware.jetson.JetsonBackend`
    running the model with a :class:`~e4gym.hardware.runner.TorchRunner` (CUDA when available) and taking
    ``backend_kwargs`` (e.g. ``sysfs_root``, ``read_only``, ``dry_run``, ``thermal_limit_c``; ``runner_device``)
    and the env's ``governors`` (``"default"``: the kernel's own governors run the board and the backend writes
    no clock; a dict: those governors are set through sysfs and restored at close); a backend object (e.g. an
    :class:`~e4gym.hardware.nvml.NvmlBackend`, with ``device=backend.spec``) is used as it is.
    """
    kw = dict(backend_kwargs or {})
    if isinstance(backend, str):
        if backend == "nvml":
            raise ConfigError("an NVML GPU is its own device: build b = e4gym.hardware.nvml.NvmlBackend(...) and "
                              "pass gym.make(..., device=b.spec, backend=b)")
        if backend not in BACKENDS:
            raise UnknownNameError(f"unknown backend '{backend}'; backends: {list(BACKENDS)} or a Backend object")
        if backend == "emulated":
            measured = kw.pop("measured", None)
            if kw:
                raise ConfigError(f"backend_kwargs {sorted(kw)} do not apply to the emulated backend (only 'measured')")
            if isinstance(measured, (str, Path)):
                from e4gym.hardware.measured import MeasuredProfile

                measured = MeasuredProfile.load(measured)
            if measured is not None:
                measured.check_for(setup.spec.name, setup.profile.name)
            return EmulatedBackend(
                setup.spec, seed=0, power_mode=setup.power_mode, cooling=setup.cooling,
                initial_temp_c=setup.initial_temp_c, governors=setup.governors, measured=measured,
            )
        if "governors" in kw:
            raise ConfigError("pass governors= to the env (gymnasium.make(..., governors=...)), not in backend_kwargs")
        from e4gym.hardware.jetson import JetsonBackend
        from e4gym.hardware.runner import TorchRunner

        device = kw.pop("runner_device", None)
        if device is None:
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        # governors: "default" leaves the kernel's governors in charge; a dict sets them through sysfs.
        return JetsonBackend(spec=setup.spec, runner=TorchRunner(setup.profile.name, device=device),
                             governors=setup.governors, **kw)
    if backend_kwargs:
        raise ConfigError("backend_kwargs apply to a backend given by name, not to a backend object")
    if not isinstance(backend, Backend):
        raise ConfigError(f"backend must be 'emulated' or an object with the Backend protocol, got {backend!r}")
    if setup.governors is not None:
        raise ConfigError("governors= configures the emulated backend; set the governors on your backend object")
    if backend.spec.name != setup.spec.name:
        raise ConfigError(f"the backend drives '{backend.spec.name}' but the env's device is '{setup.spec.name}'")
    return backend
