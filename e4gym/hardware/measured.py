"""Measured profiles (sim-to-real): the CPU × GPU sweep of a real board, and the emulator driven by it.

:func:`profile_device` runs the sweep on any :class:`~e4gym.hardware.backend.Backend` (a Jetson through
``JetsonBackend``, a desktop GPU through ``NvmlBackend``, or the emulator itself): for every measured
``(cpu, gpu)`` level pair (EMC at its top allowed level) and every exit, it applies the levels, runs a few
warm-up frames, then ``frames`` frames, and records the mean run latency (s) and energy per frame (J); then
the idle power at that pair. :class:`MeasuredProfile` holds the result (``e4gym profile-device`` writes it as
JSON).

The emulator can replace its analytic model by the profile (``EmulatedBackend(..., measured=profile)``): every
work of the profiled model is scaled, per level pair, by the ratio of the measured latency and dynamic energy
to the analytic model's for the same exit (the nearest profiled exit for blocks and heads), so the frames the
profile measured cost what they cost on the board, and the emulator's state (temperature, transitions, noise,
governors) is kept. Pairs that were not measured take the ratio of the nearest measured pair.
:func:`model_error` is what ``e4gym calibrate --profile FILE`` prints: the analytic model against the profile.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from e4gym.errors import ConfigError

FORMAT = "e4gym-measured-profile-1"


@dataclass(frozen=True)
class MeasuredProfile:
    """A board's measured CPU × GPU sweep of one model.

    Attributes:
        device / model: the device spec and model profile names. power_mode: the nvpmodel mode it ran in.
        source: the backend that measured it (e.g. ``"jetson"``, ``"emulated"``). frames: frames per point.
        exits: the exits measured (0-based). emc_level: the memory level held during the sweep.
        cpu_levels / gpu_levels: the level indices measured (rows / columns).
        latency_s: ``(n_exits, n_cpu, n_gpu)`` mean run latency of one frame (s).
        energy_j: ``(n_exits, n_cpu, n_gpu)`` mean energy of one frame's run (J; no idle), or None where the
            source measured latency only (a published latency sweep): the analytic energy is kept then.
        idle_power_w: ``(n_cpu, n_gpu)`` board power while idle at those clocks (W), or None (not measured).
        ambient_c: the board temperature when the sweep started (°C).
        runtime: the inference runtime it was measured with (:mod:`e4gym.hardware.runtime`; ``pytorch`` for
            ``profile-device``'s runner).
    """

    device: str
    model: str
    power_mode: str
    source: str
    frames: int
    exits: tuple[int, ...]
    emc_level: int
    cpu_levels: tuple[int, ...]
    gpu_levels: tuple[int, ...]
    latency_s: np.ndarray
    energy_j: np.ndarray | None
    idle_power_w: np.ndarray | None
    ambient_c: float
    runtime: str = "pytorch"

    @property
    def model_key(self) -> str:
        """The model as the envs name it under this runtime (``resnet50@tensorrt-fp16``; the plain name for
        ``pytorch``): the prefix of the work keys the profile corrects."""
        return self.model if self.runtime == "pytorch" else f"{self.model}@{self.runtime}"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (arrays as nested lists)."""
        return {"format": FORMAT, "device": self.device, "model": self.model, "power_mode": self.power_mode,
                "source": self.source, "frames": self.frames, "exits": list(self.exits),
                "emc_level": self.emc_level, "cpu_levels": list(self.cpu_levels),
                "gpu_levels": list(self.gpu_levels), "latency_s": self.latency_s.tolist(),
                "energy_j": None if self.energy_j is None else self.energy_j.tolist(),
                "idle_power_w": None if self.idle_power_w is None else self.idle_power_w.tolist(),
                "ambient_c": self.ambient_c, "runtime": self.runtime}

    def save(self, path: str | Path) -> Path:
        """Write the profile as JSON (atomically); returns the path."""
        from e4gym.io import write_json

        path = Path(path)
        write_json(path, self.to_dict())
        return path

    @classmethod
    def load(cls, path: str | Path) -> MeasuredProfile:
        """Read a profile written by :meth:`save`.

        Raises:
            ConfigError: the file is missing, not JSON, not a measured profile, or its arrays do not have the
                shapes its level lists say (the message names the file and the field).
        """
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"measured profile {path} does not exist (write one with `e4gym profile-device`)")
        try:
            d = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{path} is not readable JSON ({exc})") from None
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise ConfigError(f"{path} is not an e4gym measured profile (no format tag {FORMAT!r})")
        try:
            prof = cls(
                device=str(d["device"]), model=str(d["model"]), power_mode=str(d["power_mode"]),
                source=str(d["source"]), frames=int(d["frames"]), exits=tuple(int(e) for e in d["exits"]),
                emc_level=int(d["emc_level"]), cpu_levels=tuple(int(c) for c in d["cpu_levels"]),
                gpu_levels=tuple(int(g) for g in d["gpu_levels"]), latency_s=np.asarray(d["latency_s"], float),
                energy_j=None if d["energy_j"] is None else np.asarray(d["energy_j"], float),
                idle_power_w=None if d["idle_power_w"] is None else np.asarray(d["idle_power_w"], float),
                ambient_c=float(d["ambient_c"]), runtime=str(d.get("runtime", "pytorch")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{path}: missing or malformed field ({type(exc).__name__}: {exc})") from None
        shape = (len(prof.exits), len(prof.cpu_levels), len(prof.gpu_levels))
        for name, arr, want in (("latency_s", prof.latency_s, shape), ("energy_j", prof.energy_j, shape),
                                ("idle_power_w", prof.idle_power_w, shape[1:])):
            if arr is None and name != "latency_s":
                continue  # not measured
            if arr is None or arr.shape != want:
                raise ConfigError(f"{path}: {name} has shape {arr.shape}, expected {want} (exits × CPU × GPU levels)")
            if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
                raise ConfigError(f"{path}: {name} must be finite and > 0 everywhere")
        return prof

    def check_for(self, device: str, model: str) -> None:
        """Raise ConfigError unless the profile is of ``device`` and ``model`` (the env's model name: with
        ``@runtime`` under a runtime other than pytorch)."""
        if (self.device, self.model_key) != (device, model):
            raise ConfigError(f"the measured profile is of {self.device} / {self.model_key}, not {device} / {model}"
                              "; a profile measured under a runtime needs the env's runtime= to match")


# ---------------------------------------------------------------------------------------------- measuring


def profile_device(backend: Any, model: str, *, exits: Sequence[int] | None = None, frames: int = 5,
                   warmup: int = 1, stride: int = 1, idle_s: float = 0.5,
                   progress: Callable[[int, int], None] | None = None) -> MeasuredProfile:
    """Measure the CPU × GPU sweep of ``model`` on ``backend`` (see the module docstring).

    Args:
        backend: an open backend (its ``spec`` names the device; it must allow setting clocks).
        model: a model name or profile path. exits: exits to measure (default all).
        frames / warmup: measured and discarded frames per (pair, exit). stride: measure every ``stride``-th
            level of each domain (the top level always). idle_s: idle time measured per pair (s).
        progress: called as ``progress(done, total)`` after each pair.
    """
    from e4gym.dnn.profile import load_model_profile

    prof = load_model_profile(model)
    spec = backend.spec
    mode = getattr(backend, "mode", None)
    mode_name = mode.name if mode is not None else spec.default_power_mode
    mc, mg, me = spec.max_levels(mode_name)
    if frames < 1 or stride < 1:
        raise ConfigError(f"frames and stride must be >= 1, got {frames} and {stride}")
    ex = tuple(range(prof.n_exits)) if exits is None else tuple(int(e) % prof.n_exits for e in exits)

    def grid(hi: int) -> tuple[int, ...]:
        return tuple(sorted({*range(0, hi + 1, stride), hi}))

    cpus, gpus = grid(mc), grid(mg)
    lat = np.zeros((len(ex), len(cpus), len(gpus)))
    energy = np.zeros_like(lat)
    idle = np.zeros((len(cpus), len(gpus)))
    ambient = float(backend.read_sensors().temp_c)
    works = [prof.frame_work(e) for e in ex]
    total, done = len(cpus) * len(gpus), 0
    for i, c in enumerate(cpus):
        for j, g in enumerate(gpus):
            backend.apply((c, g, me))
            for k, w in enumerate(works):
                for _ in range(warmup):
                    backend.run(w)
                ms = [backend.run(w) for _ in range(frames)]
                lat[k, i, j] = float(np.mean([m.latency_s for m in ms]))
                energy[k, i, j] = float(np.mean([m.measured_energy_j for m in ms]))
            m = backend.idle(idle_s)
            idle[i, j] = m.measured_energy_j / m.latency_s if m.latency_s > 0 else m.avg_power_w
            done += 1
            if progress is not None:
                progress(done, total)
    return MeasuredProfile(device=spec.name, model=prof.name, power_mode=mode_name,
                           source=type(backend).__name__, frames=frames, exits=ex, emc_level=me, cpu_levels=cpus,
                           gpu_levels=gpus, latency_s=lat, energy_j=energy, idle_power_w=idle, ambient_c=ambient)


# ---------------------------------------------------------------------------------------------- the analytic model


def analytic(spec: Any, model: str, profile: MeasuredProfile, temp_c: float | None = None) -> tuple[np.ndarray, ...]:
    """The analytic model's ``(latency_s, run energy_j, idle power_w, floor power_w)`` at the profile's points
    (noise-free, at ``temp_c``, default the profile's starting temperature), under the profile's runtime:
    ``spec`` is the device as that runtime runs it (:func:`~e4gym.hardware.runtime.runtime_view`; the emulator's
    own spec in an env), ``model`` the plain model name."""
    from e4gym.dnn.profile import load_model_profile
    from e4gym.hardware.model import cost_table, floor_power_w, power_table
    from e4gym.hardware.runtime import runtime_view

    _, prof = runtime_view(spec, load_model_profile(model), profile.runtime)
    mode = spec.power_mode(profile.power_mode)
    pt = power_table(spec, mode.cpu_online)
    shape = spec.n_levels
    t = profile.ambient_c if temp_c is None else temp_c
    ix = np.ix_(list(profile.cpu_levels), list(profile.gpu_levels))
    floor = floor_power_w(pt, slice(None), t, spec.model).reshape(shape)[..., profile.emc_level][ix]
    lat, energy = [], []
    for e in profile.exits:
        tab = cost_table(spec, prof.frame_work(e), pt, 1)
        la = tab.latency_s.reshape(shape)[..., profile.emc_level][ix]
        dyn = tab.busy_dyn_j.reshape(shape)[..., profile.emc_level][ix]
        lat.append(la)
        energy.append(floor * la + dyn)
    return np.array(lat), np.array(energy), floor, floor


@dataclass(frozen=True)
class ModelError:
    """The analytic model against a measured profile, per exit (fractions: (model − measured) / measured).

    Attributes:
        exit: the exit. latency_mape / energy_mape: mean absolute relative error. latency_max / energy_max:
            the largest absolute relative error. idle_mape: of the idle power (all exits share it).
    """

    exit: int
    latency_mape: float
    latency_max: float
    energy_mape: float
    energy_max: float
    idle_mape: float


def model_error(profile: MeasuredProfile, spec: Any | None = None) -> list[ModelError]:
    """Relative error of the analytic model against ``profile`` at every measured point, per exit."""
    from e4gym.dnn.profile import load_model_profile
    from e4gym.hardware.runtime import runtime_view
    from e4gym.hardware.spec import load_device

    if spec is None:
        spec, _ = runtime_view(load_device(profile.device), load_model_profile(profile.model), profile.runtime)
    lat, energy, idle, _ = analytic(spec, profile.model, profile)
    nan = float("nan")  # a figure the source did not measure
    idle_mape = nan if profile.idle_power_w is None else float(np.abs(idle / profile.idle_power_w - 1.0).mean())
    out = []
    for k, e in enumerate(profile.exits):
        rl = np.abs(lat[k] / profile.latency_s[k] - 1.0)
        if profile.energy_j is None:
            e_mean = e_max = nan
        else:
            re = np.abs(energy[k] / profile.energy_j[k] - 1.0)
            e_mean, e_max = float(re.mean()), float(re.max())
        out.append(ModelError(e, float(rl.mean()), float(rl.max()), e_mean, e_max, idle_mape))
    return out


def _pct(x: float) -> str:
    return "not measured" if x != x else f"{100 * x:.1f} %"


def format_errors(profile: MeasuredProfile, errors: Sequence[ModelError]) -> str:
    """A Markdown table of :func:`model_error`'s rows."""
    head = (f"{profile.device} / {profile.model_key}, power mode {profile.power_mode}, measured by {profile.source} "
            f"({len(profile.cpu_levels)} × {len(profile.gpu_levels)} CPU × GPU pairs, {profile.frames} frames each)"
            "\n\n| exit | latency error, mean | max | energy error, mean | max | idle power error, mean |\n"
            "|---:|---:|---:|---:|---:|---:|\n")
    return head + "\n".join(f"| {r.exit} | {_pct(r.latency_mape)} | {_pct(r.latency_max)} "
                            f"| {_pct(r.energy_mape)} | {_pct(r.energy_max)} | {_pct(r.idle_mape)} |"
                            for r in errors)


# ---------------------------------------------------------------------------------------------- the emulator


def correction(spec: Any, profile: MeasuredProfile, power: Any, work_key: str) -> tuple[np.ndarray, np.ndarray] | None:
    """``(latency ratio, dynamic-energy ratio)`` flat over every level triple, for a work of the profile's model
    (``None`` for another model's work): measured over analytic at the nearest profiled exit and level pair."""
    model, _, rest = work_key.partition("/")
    if model != profile.model_key:
        return None
    exit_ = _exit_of(rest, profile)
    k = min(range(len(profile.exits)), key=lambda i: abs(profile.exits[i] - exit_))
    lat_a, energy_a, _, floor = analytic(spec, profile.model, profile)
    r_lat = profile.latency_s[k] / lat_a[k]
    if profile.energy_j is None:  # latency only: the analytic dynamic power, over the measured time
        r_dyn = r_lat
    else:
        dyn_a = np.maximum(energy_a[k] - floor * lat_a[k], 1e-12)
        dyn_m = np.maximum(profile.energy_j[k] - floor * profile.latency_s[k], 0.0)
        r_dyn = dyn_m / dyn_a
    # Nearest measured pair for every (cpu, gpu) level; the same ratio at every EMC level.
    ci = np.abs(np.arange(spec.n_cpu)[:, None] - np.array(profile.cpu_levels)[None, :]).argmin(1)
    gi = np.abs(np.arange(spec.n_gpu)[:, None] - np.array(profile.gpu_levels)[None, :]).argmin(1)
    full_lat = r_lat[np.ix_(ci, gi)][..., None].repeat(spec.n_emc, axis=2).ravel()
    full_dyn = r_dyn[np.ix_(ci, gi)][..., None].repeat(spec.n_emc, axis=2).ravel()
    return full_lat, full_dyn


def _exit_of(rest: str, profile: MeasuredProfile) -> int:
    """The exit a work key stands for: ``frame/exitN`` and ``headN`` → N; ``blockJ`` → the last exit."""
    for tag in ("frame/exit", "head"):
        if rest.startswith(tag):
            try:
                return int(rest[len(tag):].split("+")[0])
            except ValueError:
                break
    return max(profile.exits)


# ---------------------------------------------------------------------------------------------- published sweeps


def read_latency_sweep(csv_path: str | Path) -> dict[str, dict[tuple[int, int], float]]:
    """A published latency sweep: ``{model: {(gpu_hz, emc_hz): latency_s}}`` from a CSV with columns ``model,
    gpu_hz, emc_hz, mean_gpu_latency_ms`` (e.g. ``benchmarks/data/tx2_trtexec_gpu_emc_sweep.csv``).

    Raises:
        ConfigError: a missing file or a malformed row (names the file and the row).
    """
    import csv

    path = Path(csv_path)
    if not path.is_file():
        raise ConfigError(f"{path}: the sweep CSV does not exist; pass its path (benchmarks/data/ holds the TX2 sweep)")
    sweep: dict[str, dict[tuple[int, int], float]] = {}
    with path.open(newline="") as f:
        for i, row in enumerate(csv.DictReader(f), start=2):
            try:
                point = (int(row["gpu_hz"]), int(float(row["emc_hz"])))
                sweep.setdefault(row["model"], {})[point] = float(row["mean_gpu_latency_ms"]) / 1e3
            except (KeyError, TypeError, ValueError) as exc:
                raise ConfigError(f"{path}: row {i} is malformed ({type(exc).__name__}: {exc}); expected columns "
                                  "model, gpu_hz, emc_hz, mean_gpu_latency_ms") from None
    return sweep


def sweep_profile(csv_path: str | Path, device: str, model: str, *, runtime: str = "tensorrt-fp16",
                  sweep_model: str | None = None, emc_hz: float | None = None) -> MeasuredProfile:
    """A measured profile from a published latency sweep (``e4gym import-sweep``), e.g. the TX2 GPU × EMC sweep
    (``benchmarks/data/tx2_trtexec_gpu_emc_sweep.csv``: columns ``model, gpu_hz, emc_hz, mean_gpu_latency_ms``).

    The sweep's points at one EMC rate (default: its highest) become the profile's GPU axis, at the device's
    top CPU level (the sweep ran at MAXN), for the network's last exit (the whole network). Energy and idle power
    were not measured: the emulator keeps the analytic energy model and rescales its dynamic energy with the
    measured time. The profile corrects every EMC level by the ratio measured at that one (the runtime's model
    carries the memory clock's effect).

    Args:
        csv_path: the sweep. device / model: e4gym's names (``jetson-tx2``, ``resnet50``).
        runtime: the runtime the sweep ran (TensorRT engines: ``tensorrt-fp16``).
        sweep_model: the model's name in the CSV (default: ``model`` with ``_`` as ``-``).
        emc_hz: the EMC rate to take (Hz; default the highest in the sweep).

    Raises:
        ConfigError: a missing or malformed CSV (names the row), no rows for the model or the EMC rate, or a
            clock that is not a level of the device (names it).
    """
    from e4gym.dnn.profile import load_model_profile
    from e4gym.hardware.runtime import get_runtime
    from e4gym.hardware.spec import load_device

    spec, prof = load_device(device), load_model_profile(model)
    get_runtime(runtime, spec)  # an unknown runtime fails here, listing them
    name = sweep_model or model.replace("_", "-")
    path = Path(csv_path)
    points = read_latency_sweep(path).get(name, {})
    if not points:
        raise ConfigError(f"{path}: no rows for model {name!r}; pass --sweep-model with the CSV's name for it")
    rates = sorted({e for _, e in points})
    emc = rates[-1] if emc_hz is None else int(emc_hz)
    if emc not in rates:
        raise ConfigError(f"{path}: no {name} rows at EMC {emc / 1e6:g} MHz; the sweep has "
                          f"{[r / 1e6 for r in rates]} MHz")

    def level(freqs: tuple[float, ...], hz: int, what: str) -> int:
        hits = [k for k, f in enumerate(freqs) if abs(f - hz) <= 0.5e6]
        if not hits:
            raise ConfigError(f"{path}: {what} {hz / 1e6:g} MHz is not a level of {device} "
                              f"({[f / 1e6 for f in freqs]} MHz)")
        return hits[0]

    gpus = sorted(g for g, e in points if e == emc)
    gpu_levels = tuple(level(spec.gpu_freqs_hz, g, "GPU clock") for g in gpus)
    mode = spec.default_power_mode
    latency = np.array([[[points[(g, emc)] for g in gpus]]])
    return MeasuredProfile(
        device=spec.name, model=prof.name, power_mode=mode, source=f"published sweep {path.name} ({name})",
        frames=0, exits=(prof.n_exits - 1,), emc_level=level(spec.emc_freqs_hz, emc, "EMC rate"),
        cpu_levels=(spec.max_levels(mode)[0],), gpu_levels=gpu_levels, latency_s=latency, energy_j=None,
        idle_power_w=None, ambient_c=spec.thermal.ambient_c, runtime=runtime,
    )
