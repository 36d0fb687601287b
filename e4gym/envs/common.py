"""Argument resolution of the env core: an :class:`~e4gym.envs.core.EnvConfig` becomes a validated :class:`EnvSetup`.

Every env (:mod:`e4gym.envs.frame`, :mod:`e4gym.envs.frame_vector`, :mod:`e4gym.envs.block`) resolves its
arguments here once (:func:`resolve_setup`), so they validate input the same way and normalise observations
and rewards by the same reference figures; :func:`make_backend` builds the backend an env runs on.
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
from e4gym.envs.core import REWARD_ENERGY_SOURCES, EnvConfig, FrameReward, RewardFn, RewardWeights
from e4gym.errors import ConfigError, SettingError, UnknownNameError
from e4gym.hardware.backend import Backend, Cooling
from e4gym.hardware.emulator import EmulatedBackend
from e4gym.hardware.model import cost_table, floor_power_w, power_table
from e4gym.hardware.runtime import DEFAULT_RUNTIME, runtime_view
from e4gym.hardware.spec import AMBIENT_RANGE_C, CPU_GOVERNORS, GPU_GOVERNORS, DeviceSpec, load_device
from e4gym.workload.base import FrameSource
from e4gym.workload.clips import shipped_clip_traces
from e4gym.workload.synthetic import SyntheticVideo
from e4gym.workload.trace import Trace, TraceSource, load_trace

#: Default stream frame rate (frames per second) when the workload does not set one.
DEFAULT_FPS = 30.0
#: Frames pulled from the frame source at a time (the stream does not depend on it).
SOURCE_CHUNK = 256
#: Stream frame rates an env accepts (frames/s, inclusive): a frame every 100 s up to a 1000 fps high-speed
#: camera. Outside it the streaming clock's figures stop meaning anything (and overflow float32 observations).
FPS_RANGE: tuple[float, float] = (0.01, 1000.0)
#: Per-frame deadlines an env accepts (ms, inclusive): 1 µs to one hour.
DEADLINE_MS_RANGE: tuple[float, float] = (1e-3, 3.6e6)
#: Longest episode an env accepts (frames): 10^9 frames is a year of video at 30 fps.
MAX_EPISODE_FRAMES = 10**9


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
        weights: the default reward's weights. energy_ref_j / power_ref_w / latency_ref_s: a full-network frame at
            the top levels of the power mode, noise-free at ambient temperature, idle until the next arrival
            included.
        workload: ``"synthetic"``, a :class:`Trace`, or a user's :class:`FrameSource`.
        workload_kwargs: keyword arguments of :class:`SyntheticVideo` (besides accuracies and fps).
        governors: kernel governors driving clock domains instead of the action (``None``: all userspace).
        reward_energy: ``"true"`` (default) or ``"measured"``: the energy the default reward's energy term uses
            (the true energy is always the evaluation metric, ``info["energy_j"]``).
        reward: the reward callable ``(FrameOutcome) -> (reward, terms)``: the user's, or :class:`FrameReward`.
        runtime: the inference runtime the emulator models (:data:`~e4gym.hardware.runtime.RUNTIMES`):
            ``spec`` and ``profile`` are already its view (:func:`~e4gym.hardware.runtime.runtime_view`).
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
    reward: RewardFn | None = None
    runtime: str = "pytorch"

    def __post_init__(self) -> None:
        if self.reward is None:
            object.__setattr__(self, "reward", FrameReward(self.weights, self.energy_ref_j, self.reward_energy))

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

    def training_source(self) -> FrameSource:
        """A new frame source a policy may train or calibrate on by default: the env's own workload when it is
        synthetic video or a user's FrameSource (their other seeds never meet the benchmark's), and synthetic video
        of the same network when the env replays a trace (its frames are the ones it will be scored on; a policy
        that should learn from recorded frames takes another trace, ``train_workload=``)."""
        if isinstance(self.workload, Trace):
            return SyntheticVideo.from_profile(self.profile, fps=self.fps)
        return self.make_source()


def _show(value: object, limit: int = 200) -> str:
    """``repr(value)`` on one line (NumPy wraps long arrays over several), cut to ``limit`` characters."""
    text = " ".join(repr(value).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _in_range(value: object, name: str, lo: float, hi: float, unit: str, fix: str) -> float:
    """``value`` as a float when it is a real number in ``lo..hi`` (inclusive); else a one-line ConfigError
    naming the value, the range (in ``unit``) and ``fix``."""
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
    x = float(value) if ok else math.nan  # type: ignore[arg-type]
    if not (math.isfinite(x) and lo <= x <= hi):
        raise ConfigError(f"{name} must be a finite number{' > 0' if lo > 0 else ''} in {lo:g}..{hi:g} {unit}, "
                          f"got {_show(value)}; {fix}")
    return x


def _flag(value: object, name: str, fix: str) -> bool:
    """``value`` as a bool when it is ``True``/``False`` (Python or NumPy); strings such as ``"no"`` are
    refused, not read by their truthiness."""
    if not isinstance(value, (bool, np.bool_)):
        raise ConfigError(f"{name} must be True or False, got {_show(value)} ({type(value).__name__}); {fix}")
    return bool(value)


def _check_name(value: object, name: str) -> None:
    """Refuse a name or path with a NUL character (no file or registered name has one) before a loader sees it."""
    if isinstance(value, (str, os.PathLike)):
        text = os.fspath(value)
        if (isinstance(text, str) and "\x00" in text) or (isinstance(text, bytes) and b"\x00" in text):
            raise ConfigError(f"{name}={_show(value)} contains a NUL character, which no {name} name or file path has; "
                              f"pass a known {name} name or the path of its file")


def _governors(spec: DeviceSpec, governors: object) -> dict[str, str] | str | None:
    """The ``governors`` argument, checked: ``None`` (userspace: the action sets every clock), ``"default"``
    (the device's shipped governors) or a mapping of clock domains to governor names."""
    if governors is None:
        return None
    example = "{'cpu': 'schedutil', 'gpu': 'nvhost_podgov'}"
    if isinstance(governors, str):
        if governors != "default":
            doms = [d for d, allowed in (("cpu", CPU_GOVERNORS), ("gpu", GPU_GOVERNORS)) if governors in allowed]
            if doms:
                example = "{" + ", ".join(f"'{d}': '{governors}'" for d in doms) + "}"
            raise ConfigError(
                f"governors={_show(governors)} is not accepted: pass a dict of clock domain to governor like "
                f"{example}, 'default' (the device's shipped governors) or None (the action sets every clock)"
            )
    elif isinstance(governors, Mapping):
        for dom, gov in governors.items():
            if not isinstance(dom, str) or not isinstance(gov, str):
                raise ConfigError(f"governors must map clock domain names to governor names (strings), like "
                                  f"{example}; got {_show(dom)}: {_show(gov)}")
        governors = dict(governors)
    else:
        raise ConfigError(
            f"governors must be a dict of clock domain to governor like {example}, 'default' or None, "
            f"got {_show(governors)} ({type(governors).__name__})"
        )
    from e4gym.hardware.emulator import _validate_governors

    _validate_governors(spec, governors)  # type: ignore[arg-type]  # UnknownNameError naming the allowed governors
    return governors


def _workload(workload: object, profile: ModelProfile) -> tuple[object, float | None]:
    """Resolve the workload argument; returns it and the frame rate it imposes (None for synthetic)."""
    if isinstance(workload, str) and workload == "synthetic":
        return "synthetic", None
    if isinstance(workload, (str, os.PathLike)):  # a trace path, or clip:<name> (a shipped real-video trace)
        trace = load_trace(workload)
        workload = trace
    if isinstance(workload, (Trace, FrameSource)):
        # A trace names the model it was recorded with: its exits' correctness and confidences are that
        # network's, whatever the exit count says.
        trace = workload if isinstance(workload, Trace) else getattr(workload, "trace", None)
        if isinstance(trace, Trace) and trace.model != profile.name:
            raise ConfigError(
                f"the trace was recorded with model '{trace.model}' but the env runs '{profile.name}'; pass "
                f"model='{trace.model}', or record a trace with e4gym record --model {profile.name}"
            )
        n = workload.n_exits
        if n != profile.n_exits:
            raise ConfigError(
                f"the workload has {n} exits but model '{profile.name}' has {profile.n_exits}; record the trace "
                f"with that model (e4gym record --model {profile.name}) or pick the matching model"
            )
        return workload, float(workload.fps)
    raise ConfigError(
        "workload must be 'synthetic', 'clip:<name>' (a shipped real-video trace: "
        f"{sorted(shipped_clip_traces())}), a path to a trace (.npz from `e4gym record`) or a FrameSource, "
        f"got {_show(workload)}"
    )


def resolve_setup(config: EnvConfig | None = None, /, **kwargs: Any) -> EnvSetup:
    """Validate an env's arguments and compute the reference figures (the env classes document their meaning).

    Args:
        config: an :class:`EnvConfig`; or keyword arguments, the fields of :class:`EnvConfig` (defaults for the
            rest). ``backend``, ``backend_kwargs`` and ``render_mode`` are checked by the env, not here.

    Raises:
        UnknownNameError: unknown argument, device, model, power mode, governor or reward weight (lists the known
            ones).
        ConfigError: a number that is not finite or out of its range (:data:`FPS_RANGE`, :data:`DEADLINE_MS_RANGE`,
            ``episode_frames`` in 1..:data:`MAX_EPISODE_FRAMES`, ``ambient_c`` in
            :data:`~e4gym.hardware.spec.AMBIENT_RANGE_C`, ``initial_temp_c`` up to the critical trip), a flag
            (``fan``, ``control_memory``) that is not a bool, ``governors`` that is not None, ``"default"`` or a
            dict, a workload that is not a trace or does not match the model, a reward that is not callable.
            Every message is one line naming the value, what is allowed and the fix.
    """
    if config is None:
        config = EnvConfig.from_kwargs(kwargs)
    elif kwargs:
        raise ConfigError("pass an EnvConfig or keyword arguments to resolve_setup, not both")
    c = config
    device, model, workload, workload_kwargs, fps = c.device, c.model, c.workload, c.workload_kwargs, c.fps
    deadline_ms, control_memory, power_mode = c.deadline_ms, c.control_memory, c.power_mode
    episode_frames, fan, ambient_c, initial_temp_c = c.episode_frames, c.fan, c.ambient_c, c.initial_temp_c
    governors, reward_energy = c.governors, c.reward_energy
    if c.reward is not None:
        if not callable(c.reward):
            raise ConfigError(f"reward must be a callable (outcome) -> (reward, terms), got {_show(c.reward)}")
        if c.reward_weights is not None:
            raise ConfigError("reward_weights configure the default reward; drop them when you pass reward=")
    for arg, value in (("device", device), ("model", model), ("workload", workload), ("power_mode", power_mode)):
        _check_name(value, arg)
    if not isinstance(device, (str, os.PathLike, DeviceSpec)):
        raise ConfigError(f"device must be a device name like 'xavier-nx', the path of a device YAML or a DeviceSpec, "
                          f"got {_show(device)} ({type(device).__name__})")
    if not isinstance(model, (str, os.PathLike, ModelProfile)):
        raise ConfigError(f"model must be a model name like 'efficientnet_b0', the path of a profile YAML or a "
                          f"ModelProfile, got {_show(model)} ({type(model).__name__})")
    if power_mode is not None and not isinstance(power_mode, str):
        raise ConfigError(f"power_mode must be a power mode name (a string; None for the device's default), "
                          f"got {_show(power_mode)} ({type(power_mode).__name__})")
    spec = load_device(device)
    profile = model if isinstance(model, ModelProfile) else load_model_profile(model)
    mode = spec.power_mode(power_mode)  # raises UnknownNameError listing the modes
    max_levels = spec.max_levels(mode.name)
    wl, wl_fps = _workload(workload, profile)
    if not isinstance(c.runtime, str):
        raise ConfigError(f"runtime must be a runtime name such as 'pytorch' or 'tensorrt-fp16', got "
                          f"{_show(c.runtime)} ({type(c.runtime).__name__})")
    spec, profile = runtime_view(spec, profile, c.runtime)  # raises UnknownNameError listing the runtimes
    fix = "pass the stream's frame rate in that range (default 30; a trace sets its own)"
    if fps is None:
        fps = wl_fps if wl_fps is not None else DEFAULT_FPS
        if wl_fps is not None:
            fix = "the workload's trace sets it: record or resample the trace at a frame rate in that range"
    fps = _in_range(fps, "fps", *FPS_RANGE, "frames/s", fix)
    if wl_fps is not None and abs(fps - wl_fps) > 1e-9:
        raise ConfigError(f"fps={fps:g} contradicts the workload's frame rate {wl_fps:g}; leave fps unset")
    period = 1.0 / fps
    if deadline_ms is None:
        deadline_s = period
    else:
        deadline_s = _in_range(deadline_ms, "deadline_ms", *DEADLINE_MS_RANGE, "ms",
                               "pass the per-frame deadline in milliseconds, or None for the frame period") / 1e3
    if (isinstance(episode_frames, (bool, np.bool_)) or not isinstance(episode_frames, (int, np.integer))
            or not 1 <= episode_frames <= MAX_EPISODE_FRAMES):
        raise ConfigError(f"episode_frames must be an integer >= 1 and <= {MAX_EPISODE_FRAMES} (frames per "
                          f"episode), got {_show(episode_frames)}; pass e.g. episode_frames=1000")
    control_memory = _flag(control_memory, "control_memory",
                           "pass True for an action with the EMC level, False to hold EMC at its top level")
    if workload_kwargs is not None and (
        not isinstance(workload_kwargs, Mapping) or not all(isinstance(k, str) for k in workload_kwargs)
    ):
        raise ConfigError(f"workload_kwargs must be a dict of synthetic video arguments like {{'drift': 0.02}}, "
                          f"got {_show(workload_kwargs)}")
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
    if fan is not None:
        fan = _flag(fan, "fan", f"pass fan=False for the passive heat sink, True for the fan, or None for "
                                f"{spec.name}'s default ({spec.thermal.fan})")
    # The ambient range is an assumption (AMBIENT_RANGE_C, docs/assumptions.md): the industrial grade.
    cooling = Cooling(
        fan=spec.thermal.fan if fan is None else fan,
        ambient_c=spec.thermal.ambient_c if ambient_c is None else _in_range(
            ambient_c, "ambient_c", *AMBIENT_RANGE_C, "°C (industrial temperature grade)",
            f"pass the ambient temperature in °C, or None for {spec.name}'s default {spec.thermal.ambient_c:g} °C"),
    )
    if initial_temp_c is not None:
        # A board cannot start hotter than its critical trip (it shuts down there), nor colder than any ambient.
        initial_temp_c = _in_range(
            initial_temp_c, "initial_temp_c", AMBIENT_RANGE_C[0], spec.thermal.critical_c,
            f"°C (coldest ambient to {spec.name}'s critical trip)",
            "pass the board temperature at reset in °C, or None to start at the ambient temperature")
        if initial_temp_c >= spec.thermal.critical_c:  # a board there has shut down (the emulator refuses it)
            raise ConfigError(f"initial_temp_c must be below {spec.name}'s critical trip {spec.thermal.critical_c:g} "
                              f"°C, where a real board shuts down, got {initial_temp_c:g}; pass a lower board "
                              "temperature at reset, or None to start at the ambient temperature")
    governors = _governors(spec, governors)
    if reward_energy not in REWARD_ENERGY_SOURCES:
        raise ConfigError(f"reward_energy must be one of {list(REWARD_ENERGY_SOURCES)}, got {_show(reward_energy)}")
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
        weights=RewardWeights.from_arg(c.reward_weights),
        energy_ref_j=energy,
        power_ref_w=power,
        latency_ref_s=lat,
        workload=wl,
        workload_kwargs=wk,
        governors=governors,
        reward_energy=reward_energy,
        reward=c.reward,
        runtime=c.runtime,
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
    idx = spec.flat_index(spec.max_levels(power_mode))
    floor = floor_power_w(pt, idx, temp_c, spec.model)
    lat = float(table.latency_s[idx])
    run_j = floor * lat + float(table.busy_dyn_j[idx])
    return lat, float(run_j + floor * max(0.0, period_s - lat)), float(run_j / lat)


def flat_action(action: object, nvec: tuple[int, ...], names: tuple[str, ...]) -> list:
    """``action``'s components as a flat list (``np.ravel``); :class:`SettingError` naming the action space when
    it is not array-like (a ragged nested list, ...), instead of NumPy's ``ValueError``."""
    try:
        return np.ravel(action).tolist()  # type: ignore[arg-type]
    except (ValueError, TypeError):
        raise SettingError(
            f"action {_show(action)} is not an array of {len(nvec)} integers: the action space "
            f"MultiDiscrete({list(nvec)}) takes {list(names)}"
        ) from None


def check_levels_action(values: list, nvec: tuple[int, ...], names: tuple[str, ...], action: object) -> None:
    """Raise :class:`SettingError` naming the first component of ``values`` outside ``0..nvec-1``."""
    if len(values) != len(nvec):
        raise SettingError(
            f"action {_show(action)} has {len(values)} components; the action space MultiDiscrete({list(nvec)}) "
            f"takes {len(nvec)}: {list(names)}"
        )
    for v, n, name in zip(values, nvec, names):
        integral = isinstance(v, (int, np.integer)) or (isinstance(v, (float, np.floating)) and float(v).is_integer())
        if isinstance(v, bool) or not integral or not 0 <= v < n:
            raise SettingError(
                f"action {_show(action)} is outside the action space MultiDiscrete({list(nvec)}): component "
                f"'{name}' must be an integer in 0..{n - 1}, got {_show(v)}"
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
    if backend_kwargs is not None and not isinstance(backend_kwargs, Mapping):
        raise ConfigError(f"backend_kwargs must be a dict of the backend's keyword arguments (e.g. "
                          f"{{'sysfs_root': '/'}} for jetson), got {_show(backend_kwargs)}")
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
        if setup.runtime != DEFAULT_RUNTIME:
            raise ConfigError(f"runtime={setup.runtime!r} is emulated only: the board's runner runs eager PyTorch; "
                              f"drop runtime (or pass runtime={DEFAULT_RUNTIME!r}) on a real board")
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
        raise ConfigError(f"backend must be 'emulated' or an object with the Backend protocol, got {_show(backend)}")
    if setup.governors is not None:
        raise ConfigError("governors= configures the emulated backend; set the governors on your backend object")
    if backend.spec.name != setup.spec.name:
        raise ConfigError(f"the backend drives '{backend.spec.name}' but the env's device is '{setup.spec.name}'")
    return backend
