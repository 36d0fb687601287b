"""``e4gym sweep``: the CPU × GPU frequency sweep of one device and model, as heatmaps.

Dutt et al. run every CPU × GPU frequency pair of a Jetson board and find that energy is non-monotonic in the
GPU clock and that the best pair saves energy against the default governors (up to 15 % on Xavier NX, 19 % on
Nano), which sit at the top clocks most of the time; E4's Fig. 1 shows the same grid on Xavier NX for
EfficientNet-B0 at batch 1 (30 fps needs CPU 1.9 GHz and GPU 1.1 GHz, at 8.6 W). See CALIBRATION.md §1.

:func:`frequency_sweep` evaluates every allowed ``(cpu, gpu)`` level pair of a power mode, the memory clock
at its highest allowed level, on the noise-free analytic model of :mod:`e4gym.hardware.model` at ambient
temperature (:func:`grid_cost`), then streams the default governors (and the best pair) on the emulator to
measure where the kernel's governors actually run and what they cost. Two time bases:

* ``streaming`` (the env's definition): frames arrive at ``fps``, batch 1; a frame is charged its run plus the
  idle time until the next arrival (no idle when it runs longer than the frame period);
* ``throughput``: ``batch`` inferences per launch, launches back to back (Dutt et al.'s runs), no idle.

:func:`write_outputs` writes ``sweep.csv``, ``sweep.json`` and ``heatmaps.png``; :func:`format_summary` is
the Markdown summary ``e4gym sweep`` prints. Importing this module imports neither torch nor matplotlib.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from e4gym.errors import ConfigError
from e4gym.hardware.costmodel import best_pair
from e4gym.hardware.model import GridCost, grid_cost
from e4gym.io import atomic_write, output_dir_problem
from e4gym.markdown import markdown_table

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from e4gym.dnn.profile import ModelProfile
    from e4gym.dnn.work import Work
    from e4gym.hardware.spec import DeviceSpec

#: The time bases of a sweep (see the module docstring).
MODES = ("streaming", "throughput")
#: Frame rate of the streaming sweep when none is given (frames/s), as the envs default to.
DEFAULT_STREAM_FPS = 30.0
#: Frames (inferences) the default governors and the best pair are measured over on the emulator.
DEFAULT_FRAMES = 300
#: Latency headroom of a feasible pair: ``latency · (1 + margin)`` must fit the deadline. It covers the
#: emulator's multiplicative latency noise (σ = 2 %) and DVFS transition stalls (as ``baselines.static``).
DEFAULT_MARGIN = 0.1
#: The files ``e4gym sweep`` writes into its output folder.
OUTPUT_FILES = ("sweep.csv", "sweep.json", "heatmaps.png")
#: Columns of ``sweep.csv`` (units in the names).
CSV_COLUMNS = (
    "cpu_level", "gpu_level", "cpu_mhz", "gpu_mhz", "latency_ms", "run_power_w", "power_w", "energy_mj",
    "feasible", "default_point", "best_point",
)

#: Published figures the summary quotes (CALIBRATION.md §1): ``(device, model or None for any model, text)``.
PAPER_FIGURES: tuple[tuple[str, str | None, str], ...] = (
    ("xavier-nx", "efficientnet_b0",
     "E4 Fig. 1 (Xavier NX, EfficientNet-B0, batch 1): 30 fps needs CPU 1.9 GHz and GPU 1.1 GHz, at 8.6 W."),
    ("xavier-nx", None,
     "Dutt et al. (Xavier NX, batched throughput runs): the best CPU × GPU pair uses 2–15 % less energy than "
     "the default governors."),
    ("jetson-nano", None,
     "Dutt et al. (Nano, batched throughput runs): the best CPU × GPU pair uses 9–19 % less energy than the "
     "default governors."),
)
#: Dutt et al.: under DNN load the default governors sit at the top clock for CPU 89 %, GPU 83 % of samples.
DUTT_TOP_SHARE = {"cpu": 0.89, "gpu": 0.83}


# ---------------------------------------------------------------------------------------------- the model grid


# ---------------------------------------------------------------------------------------------- measurements


@dataclass(frozen=True)
class MeasuredPoint:
    """An operating point measured on the emulator over ``frames`` frames (inferences).

    Attributes:
        label: what ran (``"default governors"``, ``"best pair"``).
        cpu_level / gpu_level: grid levels nearest to the run-time-weighted mean clocks.
        cpu_mean_hz / gpu_mean_hz: run-time-weighted mean clocks (Hz).
        cpu_top_share / gpu_top_share: share of run time at the power mode's highest level (0..1).
        latency_s: mean run latency of a launch (s), comparable with the grid's latency.
        stream_latency_s: mean latency from a frame's arrival to its result, queueing included (s)
            (streaming; the run latency in throughput mode).
        missed_frac: share of frames over the deadline (streaming; 0 in throughput mode).
        energy_j: mean true board energy per frame (inference) (J), idle until the next arrival included
            when streaming. measured_energy_j: the same as the power monitor reports it (J).
        power_w: total energy / total time (W). peak_temp_c: highest board temperature (°C).
        frames: frames (inferences) measured. seed: the emulator seed.
    """

    label: str
    cpu_level: int
    gpu_level: int
    cpu_mean_hz: float
    gpu_mean_hz: float
    cpu_top_share: float
    gpu_top_share: float
    latency_s: float
    stream_latency_s: float
    missed_frac: float
    energy_j: float
    measured_energy_j: float
    power_w: float
    peak_temp_c: float
    frames: int
    seed: int

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready figures with units in the keys (ms, MHz, mJ, W, °C)."""
        return {
            "label": self.label, "cpu_level": self.cpu_level, "gpu_level": self.gpu_level,
            "cpu_mean_mhz": self.cpu_mean_hz / 1e6, "gpu_mean_mhz": self.gpu_mean_hz / 1e6,
            "cpu_top_share": self.cpu_top_share, "gpu_top_share": self.gpu_top_share,
            "latency_ms": self.latency_s * 1e3, "stream_latency_ms": self.stream_latency_s * 1e3,
            "missed_frac": self.missed_frac, "energy_mj": self.energy_j * 1e3,
            "measured_energy_mj": self.measured_energy_j * 1e3, "power_w": self.power_w,
            "peak_temp_c": self.peak_temp_c, "frames": self.frames, "seed": self.seed,
        }


def _progress_bar(total: int, desc: str, enabled: bool) -> Any:
    """A tqdm bar on stderr that appears only if the work takes longer than half a second."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="frame", file=sys.stderr, disable=not enabled, delay=0.5, leave=False)


def measure_point(
    spec: DeviceSpec,
    work: Work,
    *,
    label: str,
    levels: tuple[int, int, int] | None,
    frames: int,
    period_s: float | None,
    deadline_s: float,
    batch: int = 1,
    power_mode: str | None = None,
    seed: int = 0,
    progress: bool = False,
) -> MeasuredPoint:
    """Run ``work`` on an :class:`~e4gym.hardware.emulator.EmulatedBackend` and summarise it.

    Args:
        levels: fixed ``(cpu, gpu, emc)`` levels, or ``None`` for the device's default governors.
        frames: frames (inferences) to run (>= 1); in throughput mode ``ceil(frames / batch)`` launches.
        period_s: frame period (s) for streaming (:func:`e4gym.hardware.stream.stream`); ``None``: launches
            back to back (throughput). deadline_s: per-frame deadline (s) for the miss count when streaming.
        batch / power_mode / seed: inferences per launch, nvpmodel mode, emulator seed.
        progress: show a progress bar on stderr when it takes more than a moment.
    """
    from e4gym.hardware.emulator import EmulatedBackend
    from e4gym.hardware.stream import stream

    governors = "default" if levels is None else None
    runs, times, cpu, gpu, energy, measured, latency, missed, temps = ([] for _ in range(9))
    with EmulatedBackend(spec, seed=seed, power_mode=power_mode, governors=governors) as board:
        top = board.max_levels
        if levels is not None:
            board.apply(levels)
        if period_s is None:
            launches = math.ceil(frames / batch)
            with _progress_bar(launches * batch, f"{label} ({spec.name})", progress) as bar:
                for _ in range(launches):
                    m = board.run(work, batch)
                    runs.append(m.latency_s)
                    times.append(m.latency_s)
                    cpu.append(m.cpu_hz)
                    gpu.append(m.gpu_hz)
                    energy.append(m.energy_j / batch)
                    measured.append(m.measured_energy_j / batch)
                    latency.append(m.latency_s)
                    missed.append(False)
                    temps.append(m.temp_c)
                    bar.update(batch)
            n = launches * batch
        else:
            fps = 1.0 / period_s
            with _progress_bar(frames, f"{label} ({spec.name})", progress) as bar:
                for f in stream(board, work, frames, fps=fps, deadline_s=deadline_s):
                    runs.append(f.run_s)
                    cpu.append(f.cpu_hz)
                    gpu.append(f.gpu_hz)
                    energy.append(f.energy_j)
                    measured.append(f.measured_energy_j)
                    latency.append(f.latency_s)
                    missed.append(f.deadline_missed)
                    temps.append(f.temp_c)
                    bar.update(1)
            times = [frames * period_s + max(0.0, latency[-1] - period_s)]  # last result time
            n = frames
    w = np.asarray(runs)
    cpu_a, gpu_a = np.asarray(cpu), np.asarray(gpu)
    cpu_mean = float(np.average(cpu_a, weights=w))
    gpu_mean = float(np.average(gpu_a, weights=w))
    c = min(spec.level_of("cpu", cpu_mean), top[0])
    g = min(spec.level_of("gpu", gpu_mean), top[1])
    total_e = float(np.sum(energy)) * (batch if period_s is None else 1)
    return MeasuredPoint(
        label=label, cpu_level=c, gpu_level=g, cpu_mean_hz=cpu_mean, gpu_mean_hz=gpu_mean,
        cpu_top_share=float(np.sum(w[cpu_a >= spec.cpu_freqs_hz[top[0]]]) / w.sum()),
        gpu_top_share=float(np.sum(w[gpu_a >= spec.gpu_freqs_hz[top[1]]]) / w.sum()),
        latency_s=float(w.mean()), stream_latency_s=float(np.mean(latency)), missed_frac=float(np.mean(missed)),
        energy_j=float(np.mean(energy)), measured_energy_j=float(np.mean(measured)),
        power_w=total_e / float(np.sum(times)), peak_temp_c=float(max(temps)), frames=n, seed=int(seed),
    )


# ---------------------------------------------------------------------------------------------- the sweep


@dataclass(frozen=True)
class SweepResult:
    """A CPU × GPU frequency sweep of one device, model and exit (see :func:`frequency_sweep`).

    Grid arrays have shape ``(n_cpu_allowed, n_gpu_allowed)``: row ``i`` is CPU level ``i``, column ``j`` GPU
    level ``j``.

    Attributes:
        device / device_name / model / exit / power_mode: what was swept (``exit`` 0-based).
        mode: ``"streaming"`` or ``"throughput"``. batch: inferences per launch.
        fps: stream frame rate (frames/s), or the rate a throughput run must sustain; ``None``: no rate.
        deadline_s: per-launch deadline (s); ``inf`` when nothing constrains it. margin: latency headroom.
        grid: the noise-free model's :class:`GridCost`.
        feasible: ``latency · (1 + margin) <= deadline`` per pair.
        best: cheapest feasible pair (or the fastest if none is); meets_deadline: whether any pair is feasible.
        min_energy: cheapest pair ignoring the deadline. fastest: lowest-latency pair.
        default: the default governors measured on the emulator. best_measured: ``best`` measured the same way.
    """

    device: str
    device_name: str
    model: str
    exit: int
    power_mode: str
    mode: str
    batch: int
    fps: float | None
    deadline_s: float
    margin: float
    grid: GridCost
    feasible: np.ndarray
    best: tuple[int, int]
    meets_deadline: bool
    min_energy: tuple[int, int]
    fastest: tuple[int, int]
    default: MeasuredPoint
    best_measured: MeasuredPoint

    @property
    def cpu_hz(self) -> np.ndarray:
        """CPU clock of each row (Hz)."""
        return self.grid.cpu_hz

    @property
    def gpu_hz(self) -> np.ndarray:
        """GPU clock of each column (Hz)."""
        return self.grid.gpu_hz

    @property
    def latency_s(self) -> np.ndarray:
        """Run latency of one launch per pair (s)."""
        return self.grid.latency_s

    @property
    def energy_j(self) -> np.ndarray:
        """Energy per frame (inference) per pair (J), idle charged when streaming."""
        return self.grid.energy_j

    @property
    def power_w(self) -> np.ndarray:
        """Average board power per pair over the charged time (W)."""
        return self.grid.power_w

    @property
    def run_power_w(self) -> np.ndarray:
        """Average board power while running per pair (W)."""
        return self.grid.run_power_w

    @property
    def default_point(self) -> tuple[int, int]:
        """Grid pair nearest to the default governors' run-time-weighted mean clocks."""
        return (self.default.cpu_level, self.default.gpu_level)

    @property
    def saving_pct(self) -> float:
        """Energy the best pair saves per frame against the default governors, both measured (%)."""
        return 100.0 * (1.0 - self.best_measured.energy_j / self.default.energy_j)

    @property
    def model_saving_pct(self) -> float:
        """The same on the noise-free model, the default taken at its nearest grid pair (%)."""
        return 100.0 * (1.0 - float(self.energy_j[self.best]) / float(self.energy_j[self.default_point]))

    def pair(self, levels: tuple[int, int]) -> dict[str, Any]:
        """Model figures of one grid pair, units in the keys (MHz, ms, W, mJ)."""
        return {
            "cpu_level": levels[0], "gpu_level": levels[1],
            "cpu_mhz": float(self.cpu_hz[levels[0]]) / 1e6, "gpu_mhz": float(self.gpu_hz[levels[1]]) / 1e6,
            "latency_ms": float(self.latency_s[levels]) * 1e3, "run_power_w": float(self.run_power_w[levels]),
            "power_w": float(self.power_w[levels]), "energy_mj": float(self.energy_j[levels]) * 1e3,
            "feasible": bool(self.feasible[levels]),
        }

    def to_json(self) -> dict[str, Any]:
        """Metadata and summary for ``sweep.json`` (JSON-ready; no NaN or infinity)."""
        from e4gym import __version__

        return {
            "e4gym_version": __version__,
            "device": self.device, "device_name": self.device_name, "model": self.model, "exit": self.exit,
            "power_mode": self.power_mode, "mode": self.mode, "batch": self.batch, "fps": self.fps,
            "deadline_ms": self.deadline_s * 1e3 if math.isfinite(self.deadline_s) else None,
            "margin": self.margin, "emc_level": self.grid.emc_level, "emc_mhz": self.grid.emc_hz / 1e6,
            "cpu_mhz": [float(f) / 1e6 for f in self.cpu_hz], "gpu_mhz": [float(f) / 1e6 for f in self.gpu_hz],
            "energy_basis": ("per frame: run plus idle until the next arrival" if self.mode == "streaming"
                             else "per inference: back-to-back launches, no idle"),
            "model_figures": "noise-free analytic model at ambient temperature (e4gym.hardware.model)",
            "summary": {
                "meets_deadline": self.meets_deadline,
                "feasible_pairs": int(self.feasible.sum()), "pairs": int(self.feasible.size),
                "best": self.pair(self.best), "min_energy": self.pair(self.min_energy),
                "fastest": self.pair(self.fastest), "default_nearest": self.pair(self.default_point),
                "default_measured": self.default.as_dict(), "best_measured": self.best_measured.as_dict(),
                "saving_vs_default_pct": self.saving_pct, "model_saving_vs_default_pct": self.model_saving_pct,
            },
        }

    def csv_rows(self) -> list[list[object]]:
        """One row per pair in the order of :data:`CSV_COLUMNS`."""
        rows: list[list[object]] = []
        for i in range(len(self.cpu_hz)):
            for j in range(len(self.gpu_hz)):
                rows.append([
                    i, j, f"{self.cpu_hz[i] / 1e6:.1f}", f"{self.gpu_hz[j] / 1e6:.2f}",
                    f"{self.latency_s[i, j] * 1e3:.4f}", f"{self.run_power_w[i, j]:.4f}",
                    f"{self.power_w[i, j]:.4f}", f"{self.energy_j[i, j] * 1e3:.4f}", int(self.feasible[i, j]),
                    int((i, j) == self.default_point), int((i, j) == self.best),
                ])
        return rows


def _resolve_exit(exit: object, n_exits: int) -> int:
    if isinstance(exit, bool) or not isinstance(exit, (int, np.integer)) or not -n_exits <= exit < n_exits:
        raise ConfigError(f"exit must be an integer in 0..{n_exits - 1} (or -1 for the last exit), got {exit!r}")
    return int(exit) % n_exits


def frequency_sweep(
    device: str | DeviceSpec,
    model: str | ModelProfile = "efficientnet_b0",
    exit: int = -1,
    fps: float | None = None,
    deadline_ms: float | None = None,
    power_mode: str | None = None,
    mode: str = "streaming",
    batch: int = 1,
    frames: int = DEFAULT_FRAMES,
    seed: int = 0,
    margin: float = DEFAULT_MARGIN,
    progress: bool = False,
    runtime: str = "pytorch",
) -> SweepResult:
    """Sweep every allowed CPU × GPU pair of ``device`` for ``model`` exiting at ``exit``.

    Args:
        device / model / power_mode: as for the envs (names or loaded objects).
        exit: the exit every frame takes (0-based; ``-1``: the last, the full network).
        fps: streaming: frame arrival rate (frames/s; default 30). Throughput: the rate the launches must
            sustain (a launch of ``batch`` must fit ``batch / fps``); default none, so every pair is feasible
            unless ``deadline_ms`` is set (Dutt et al.'s unconstrained sweep).
        deadline_ms: per-launch deadline (ms). Streaming: default the frame period, and capped at it (a frame
            slower than the period makes the next one queue).
        mode: ``"streaming"`` (idle charged until the next arrival, batch 1) or ``"throughput"`` (back to back).
        batch: inferences per launch (throughput only).
        frames: frames (inferences) the default governors and the best pair are measured over (>= 1).
        seed: emulator seed of those measurements. margin: latency headroom (fraction) of a feasible pair.
        progress: progress bars on stderr for the measurements when they take more than a moment.
        runtime: the inference runtime the emulator models (``pytorch``, ``tensorrt-fp16``, ``tensorrt-int8``;
            :mod:`e4gym.hardware.runtime`).

    Raises:
        UnknownNameError: unknown device, model or power mode (lists the known ones).
        ConfigError: bad exit, mode, fps, deadline, batch, frames or margin (names it and what is allowed).
    """
    from e4gym.envs.common import resolve_setup

    if mode not in MODES:
        raise ConfigError(f"mode must be one of {list(MODES)}, got {mode!r}")
    if isinstance(frames, bool) or not isinstance(frames, (int, np.integer)) or frames < 1:
        raise ConfigError(f"frames must be an integer >= 1 (frames measured on the emulator), got {frames!r}")
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not (math.isfinite(margin) and margin >= 0):
        raise ConfigError(f"margin must be a finite number >= 0 (fraction of latency headroom), got {margin!r}")
    if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1:
        raise ConfigError(f"batch must be an integer >= 1 (inferences per launch), got {batch!r}")
    if mode == "streaming" and batch != 1:
        raise ConfigError(f"streaming runs one frame per launch: batch must be 1, got {batch}; use the throughput mode")
    stream_fps = DEFAULT_STREAM_FPS if fps is None else fps
    setup = resolve_setup(device=device, model=model, fps=stream_fps, deadline_ms=deadline_ms, power_mode=power_mode,
                          runtime=runtime)
    spec, profile = setup.spec, setup.profile
    ex = _resolve_exit(exit, profile.n_exits)
    work = profile.frame_work(ex)
    if mode == "streaming":
        period: float | None = setup.period_s
        deadline = min(setup.deadline_s, setup.period_s)
        rate: float | None = setup.fps
    else:
        period = None
        rate = None if fps is None else setup.fps
        budget = math.inf if rate is None else batch / rate
        deadline = min(budget, setup.deadline_s) if deadline_ms is not None else budget
    grid = grid_cost(spec, work, power_mode=setup.power_mode, period_s=period,
                     ambient_c=setup.cooling.ambient_c, batch=int(batch))
    feasible = grid.latency_s * (1.0 + margin) <= deadline
    best, ok = best_pair(grid.energy_j, feasible, grid.latency_s)
    min_energy, _ = best_pair(grid.energy_j, np.ones_like(feasible), grid.latency_s)
    fastest = np.unravel_index(int(np.argmin(grid.latency_s)), grid.latency_s.shape)
    measured = [
        measure_point(spec, work, label=label, levels=levels, frames=int(frames), period_s=period,
                      deadline_s=deadline, batch=int(batch), power_mode=setup.power_mode, seed=seed,
                      progress=progress)
        for label, levels in (("default governors", None), ("best pair", (best[0], best[1], grid.emc_level)))
    ]
    return SweepResult(
        device=spec.name, device_name=spec.full_name, model=profile.name, exit=ex, power_mode=setup.power_mode,
        mode=mode, batch=int(batch), fps=rate, deadline_s=float(deadline), margin=float(margin), grid=grid,
        feasible=feasible, best=best, meets_deadline=ok, min_energy=min_energy,
        fastest=(int(fastest[0]), int(fastest[1])), default=measured[0], best_measured=measured[1],
    )


# ---------------------------------------------------------------------------------------------- summary


def describe(result: SweepResult) -> str:
    """One line naming the sweep: device, model, exit, time base, deadline, power mode, memory clock."""
    r = result
    if r.mode == "streaming":
        base = f"streaming at {r.fps:g} fps, batch 1"
    else:
        base = f"throughput, batch {r.batch}" + (f", sustaining {r.fps:g} fps" if r.fps else "")
    dl = f"deadline {r.deadline_s * 1e3:.1f} ms" if math.isfinite(r.deadline_s) else "no deadline"
    return (f"{r.device_name}, {r.model} exit {r.exit}, {base} ({dl}), power mode {r.power_mode}, "
            f"EMC {r.grid.emc_hz / 1e6:.0f} MHz")


def format_summary(result: SweepResult) -> str:
    """The Markdown summary ``e4gym sweep`` prints: the default governors, the best pair, the lowest energy and
    the lowest latency, with the published figures for the device when there are any."""
    r = result
    unit = "frame" if r.mode == "streaming" else "inference"
    d, b = r.default, r.best_measured

    def mhz(levels: tuple[int, int]) -> list[str]:
        return [f"{r.cpu_hz[levels[0]] / 1e6:.0f}", f"{r.gpu_hz[levels[1]] / 1e6:.0f}"]

    ref = float(r.energy_j[r.default_point])

    def model_row(label: str, levels: tuple[int, int]) -> list[str]:
        e = float(r.energy_j[levels])
        return [label, *mhz(levels), f"{r.latency_s[levels] * 1e3:.1f}", f"{r.run_power_w[levels]:.2f}",
                f"{r.power_w[levels]:.2f}", f"{e * 1e3:.1f}", "reference" if levels == r.default_point
                else f"{100 * (e / ref - 1):+.1f} %"]

    best_label = "best pair" if r.meets_deadline else "fastest pair"
    if math.isfinite(r.deadline_s):
        feasible = (f"{int(r.feasible.sum())} meet the deadline with {100 * r.margin:.0f} % headroom; ")
    else:
        feasible = "no deadline, so all are candidates; "
    rows = [
        ["default governors, mean clocks (emulator)", f"{d.cpu_mean_hz / 1e6:.0f}", f"{d.gpu_mean_hz / 1e6:.0f}",
         f"{d.latency_s * 1e3:.1f}", "–", f"{d.power_w:.2f}", f"{d.energy_j * 1e3:.1f}", "reference"],
        [f"{best_label} (emulator)", *mhz(r.best), f"{b.latency_s * 1e3:.1f}", "–", f"{b.power_w:.2f}",
         f"{b.energy_j * 1e3:.1f}", f"{-r.saving_pct:+.1f} %"],
        model_row("default governors, nearest pair (model)", r.default_point),
        model_row(f"{best_label} (model)", r.best),
        model_row("lowest energy, deadline ignored (model)", r.min_energy),
        model_row("lowest latency (model)", r.fastest),
    ]
    out = [
        describe(r),
        f"{len(r.cpu_hz)} × {len(r.gpu_hz)} CPU × GPU pairs on the noise-free model, {feasible}the default "
        "governors and the best pair "
        f"measured over {d.frames} {unit}s on the emulator (seed {d.seed}).",
        "",
        markdown_table(["point", "CPU MHz", "GPU MHz", "latency ms", "run W", "avg W", f"energy mJ/{unit}",
                        "vs default"], rows, align="l"),
        "",
        f"- Default governors: mean clocks CPU {d.cpu_mean_hz / 1e6:.0f} MHz / GPU {d.gpu_mean_hz / 1e6:.0f} MHz "
        f"(nearest pair {mhz(r.default_point)[0]} / {mhz(r.default_point)[1]} MHz); at the top level "
        f"{100 * d.cpu_top_share:.0f} % (CPU) / {100 * d.gpu_top_share:.0f} % (GPU) of run time (Dutt et al.: "
        f"{100 * DUTT_TOP_SHARE['cpu']:.0f} % / {100 * DUTT_TOP_SHARE['gpu']:.0f} %)"
        + (f"; {100 * d.missed_frac:.0f} % of frames over the deadline." if r.mode == "streaming" else "."),
    ]
    if r.meets_deadline:
        which = "Best pair meeting the deadline" if math.isfinite(r.deadline_s) else "Best pair"
        out.append(f"- {which}: CPU {mhz(r.best)[0]} / GPU {mhz(r.best)[1]} MHz, "
                   f"{r.saving_pct:.1f} % less energy per {unit} than the default governors on the emulator "
                   f"({r.model_saving_pct:.1f} % on the model).")
    else:
        out.append(f"- No pair meets the {r.deadline_s * 1e3:.1f} ms deadline; the fastest is CPU "
                   f"{mhz(r.best)[0]} / GPU {mhz(r.best)[1]} MHz at {r.latency_s[r.best] * 1e3:.1f} ms.")
    f = r.fastest
    out.append(f"- Lowest latency: CPU {mhz(f)[0]} / GPU {mhz(f)[1]} MHz, {r.latency_s[f] * 1e3:.1f} ms "
               f"({r.batch / r.latency_s[f]:.1f} inferences/s) at {r.run_power_w[f]:.2f} W while running.")
    out += [f"- {text}" for dev, model, text in PAPER_FIGURES if dev == r.device and model in (None, r.model)]
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------- heatmaps


#: A heatmap's colour scale is logarithmic when its largest value exceeds its smallest by more than this.
LOG_SCALE_RATIO = 3.0
#: The energy panel's colour scale saturates at this multiple of the lowest energy, so the region around the
#: minimum (Dutt et al.'s interior optimum) is not washed out by the slowest clocks.
ENERGY_CLIP_RATIO = 2.0
#: Marker styles of the heatmaps (matplotlib ``plot`` keywords).
MARKERS: dict[str, dict[str, Any]] = {
    "default": {"marker": "o", "markersize": 15, "markerfacecolor": "none", "markeredgecolor": "red",
                "markeredgewidth": 2.5},
    "best": {"marker": "*", "markersize": 15, "markerfacecolor": "white", "markeredgecolor": "black",
             "markeredgewidth": 1.2},
    "min_energy": {"marker": "D", "markersize": 8, "markerfacecolor": "deepskyblue", "markeredgecolor": "black",
                   "markeredgewidth": 1.0},
}


def _ticks(values_hz: np.ndarray, max_ticks: int) -> tuple[list[int], list[str]]:
    """Tick positions (level indices) and MHz labels, thinned to at most about ``max_ticks``; keeps the top."""
    n = len(values_hz)
    step = max(1, math.ceil(n / max_ticks))
    idx = list(range(0, n, step))
    if idx[-1] != n - 1:
        if n - 1 - idx[-1] < step / 2 and len(idx) > 1:
            idx[-1] = n - 1
        else:
            idx.append(n - 1)
    return idx, [f"{values_hz[i] / 1e6:.0f}" for i in idx]


def _boundary_segments(mask: np.ndarray) -> list[list[tuple[float, float]]]:
    """Cell-edge segments between ``True`` and ``False`` cells of ``mask`` (rows = y, columns = x)."""
    segs: list[list[tuple[float, float]]] = []
    rows, cols = mask.shape
    for i in range(rows - 1):
        for j in range(cols):
            if mask[i, j] != mask[i + 1, j]:
                segs.append([(j - 0.5, i + 0.5), (j + 0.5, i + 0.5)])
    for i in range(rows):
        for j in range(cols - 1):
            if mask[i, j] != mask[i, j + 1]:
                segs.append([(j + 0.5, i - 0.5), (j + 0.5, i + 0.5)])
    return segs


def _log_ticks(lo: float, hi: float, n: int = 7) -> list[float]:
    """Round values (1, 1.5, 2, 3, 4, 5, 6, 8 × 10^k) spread evenly in log over ``[lo, hi]``, about ``n``."""
    nice = [m * 10.0**k for k in range(math.floor(math.log10(lo)) - 1, math.ceil(math.log10(hi)) + 1)
            for m in (1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0)]
    nice = [v for v in nice if lo <= v <= hi]
    gap = math.log(hi / lo) / n
    ticks: list[float] = []
    for v in nice:
        if not ticks or math.log(v / ticks[-1]) >= gap * 0.9:
            ticks.append(v)
    return ticks


def heatmap_panel(ax: Axes, data: np.ndarray, title: str, unit: str, cmap: str, result: SweepResult,
                  hatch: bool, mark_min_energy: bool = False, clip_ratio: float | None = None) -> None:
    """One heatmap of ``data`` over (CPU level rows, GPU level columns) with the markers and the deadline.

    ``clip_ratio``: saturate the colour scale at ``clip_ratio × min`` (linear scale) so the structure near the
    minimum stays visible; otherwise the scale is logarithmic when the values span more than
    :data:`LOG_SCALE_RATIO`.
    """
    from matplotlib.collections import LineCollection, PatchCollection
    from matplotlib.colors import LogNorm, Normalize
    from matplotlib.patches import Rectangle

    lo, hi = float(np.min(data)), float(np.max(data))
    extend = "neither"
    if clip_ratio is not None and lo > 0 and hi > clip_ratio * lo:
        hi, extend, log = clip_ratio * lo, "max", False
    else:
        log = lo > 0 and hi / lo > LOG_SCALE_RATIO
    norm = LogNorm(lo, hi) if log else Normalize(lo, hi)
    rows, cols = data.shape
    mesh = ax.pcolormesh(np.arange(cols + 1) - 0.5, np.arange(rows + 1) - 0.5, data, cmap=cmap, norm=norm,
                         shading="flat")
    bar = ax.figure.colorbar(mesh, ax=ax, fraction=0.046, pad=0.03, extend=extend)
    bar.set_label(unit + (f" (saturated above {hi:.0f})" if extend == "max" else ""))
    if log:  # plain round numbers rather than powers of ten
        bar.set_ticks(_log_ticks(lo, hi), labels=[f"{v:g}" for v in _log_ticks(lo, hi)])
        bar.ax.minorticks_off()
    infeasible = ~result.feasible
    if hatch and infeasible.any():
        cells = [Rectangle((j - 0.5, i - 0.5), 1.0, 1.0) for i, j in zip(*np.nonzero(infeasible))]
        ax.add_collection(PatchCollection(cells, facecolor="none", edgecolor=(1.0, 1.0, 1.0, 0.45),
                                          hatch="//", linewidth=0.0))
    segs = _boundary_segments(result.feasible)
    if segs:
        ax.add_collection(LineCollection(segs, colors="white", linewidths=3.2))
        ax.add_collection(LineCollection(segs, colors="black", linewidths=1.4))
    xt, xl = _ticks(result.gpu_hz, 12)
    yt, yl = _ticks(result.cpu_hz, 14)
    ax.set_xticks(xt, xl, rotation=60, ha="right", rotation_mode="anchor", fontsize=8)
    ax.set_yticks(yt, yl, fontsize=8)
    ax.set_xlim(-0.5, cols - 0.5)
    ax.set_ylim(-0.5, rows - 0.5)
    ax.set_xlabel("GPU clock (MHz)")
    ax.set_ylabel("CPU clock (MHz)")
    ax.set_title(title, fontsize=11)
    d, b, e = result.default_point, result.best, result.min_energy
    if mark_min_energy:
        ax.plot(e[1], e[0], linestyle="none", clip_on=False, zorder=5, **MARKERS["min_energy"])
    ax.plot(d[1], d[0], linestyle="none", clip_on=False, zorder=6, **MARKERS["default"])
    ax.plot(b[1], b[0], linestyle="none", clip_on=False, zorder=7, **MARKERS["best"])


def plot_heatmaps(result: SweepResult, path: str | os.PathLike[str]) -> None:
    """Write the three-panel heatmap PNG (latency ms, average power W, energy mJ) of ``result`` to ``path``.

    x is the GPU clock and y the CPU clock (MHz, one cell per level); the pairs over the deadline are outlined
    on every panel and hatched on the energy panel; a red ring marks the default governors' operating point,
    a white star the best pair meeting the deadline (the fastest pair if none does) and a blue diamond (energy
    panel) the lowest energy ignoring the deadline. A panel's colour scale is logarithmic when its values span
    more than :data:`LOG_SCALE_RATIO`. The file is written atomically.
    """
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    r = result
    unit = "frame" if r.mode == "streaming" else "inference"
    power_label = "average power over the frame period" if r.mode == "streaming" else "average power while running"
    fig = Figure(figsize=(17.5, 6.2), dpi=120, layout="constrained")
    axes = fig.subplots(1, 3)
    latency_title = "Latency per launch (model)" if r.batch > 1 else "Latency per frame (model)"
    heatmap_panel(axes[0], r.latency_s * 1e3, latency_title, "latency (ms)", "viridis", r, hatch=False)
    heatmap_panel(axes[1], r.power_w, power_label.capitalize() + " (model)", "board power (W)", "magma", r, hatch=False)
    heatmap_panel(axes[2], r.energy_j * 1e3, f"Energy per {unit} (model)", f"energy per {unit} (mJ)", "cividis", r,
                  hatch=True, mark_min_energy=True, clip_ratio=ENERGY_CLIP_RATIO)
    fig.suptitle(describe(r), fontsize=12)
    if not math.isfinite(r.deadline_s):
        best = "best pair (lowest energy)"
    else:
        best = "best pair meeting the deadline" if r.meets_deadline else "fastest pair (none meets the deadline)"
    handles = [
        Line2D([], [], linestyle="none", label="default governors (mean clocks on the emulator)", **MARKERS["default"]),
        Line2D([], [], linestyle="none", label=best, **MARKERS["best"]),
        Line2D([], [], linestyle="none", label="lowest energy, deadline ignored", **MARKERS["min_energy"]),
    ]
    if not r.feasible.all():
        handles += [
            Line2D([], [], color="black", linewidth=1.4, label="deadline boundary"),
            Patch(facecolor="0.45", edgecolor="white", hatch="//", label="over the deadline (energy panel)"),
        ]
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=10, frameon=False)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    _atomic_write(Path(path), buf.getvalue())


# ---------------------------------------------------------------------------------------------- outputs


def _atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and :func:`os.replace`."""
    atomic_write(path, lambda f: f.write(data))


def check_outputs(out_dir: str | os.PathLike[str], force: bool = False, create: bool = True) -> Path:
    """Make sure ``out_dir`` can take the outputs; returns it as a :class:`Path` (created if missing and
    ``create``).

    Raises:
        ConfigError: ``out_dir`` is a file, is not writable or cannot be created; one of :data:`OUTPUT_FILES` is
            a folder there (even with ``force``); or one of them exists there and ``force`` is off.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a folder; pick a folder for the sweep's outputs")
    problem = output_dir_problem(out)
    if problem:
        raise ConfigError(f"--out {problem}; pick a writable folder for the sweep's outputs")
    folders = [str(out / n) for n in OUTPUT_FILES if (out / n).is_dir()]
    if folders:
        raise ConfigError(f"{', '.join(folders)} {'is a folder' if len(folders) == 1 else 'are folders'}, not "
                          "files: the sweep writes its outputs there; move or delete them, or pick another --out")
    existing = [str(out / n) for n in OUTPUT_FILES if (out / n).exists()]
    if existing and not force:
        raise ConfigError(f"{', '.join(existing)} already exist{'s' if len(existing) == 1 else ''}; "
                          "pass --force to overwrite, or pick another --out folder")
    if create:
        out.mkdir(parents=True, exist_ok=True)
    return out


def write_outputs(result: SweepResult, out_dir: str | os.PathLike[str], force: bool = False,
                  run_args: dict[str, Any] | None = None) -> list[Path]:
    """Write ``sweep.csv``, ``sweep.json`` and ``heatmaps.png`` into ``out_dir`` (each atomically).

    Args:
        run_args: the resolved arguments to record in ``sweep.json`` under ``"args"``.

    Returns the paths written. Raises :class:`ConfigError` as :func:`check_outputs`.
    """
    out = check_outputs(out_dir, force)
    csv_buf = io.StringIO()
    writer = csv.writer(csv_buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    writer.writerows(result.csv_rows())
    paths = [out / n for n in OUTPUT_FILES]
    _atomic_write(paths[0], csv_buf.getvalue().encode())
    meta = result.to_json()
    if run_args is not None:
        meta["args"] = run_args
    _atomic_write(paths[1], (json.dumps(meta, indent=2, allow_nan=False) + "\n").encode())
    plot_heatmaps(result, paths[2])
    return paths


# ---------------------------------------------------------------------------------------------- command


def cmd_sweep(args: argparse.Namespace) -> int:
    """Run the sweep, write the three files and print the summary."""
    check_outputs(args.out, args.force, create=False)  # fail before the work, not after it
    result = frequency_sweep(
        args.device, args.model, exit=args.exit, fps=args.fps, deadline_ms=args.deadline_ms,
        power_mode=args.power_mode, mode=args.mode, batch=args.batch, frames=args.frames, seed=args.seed,
        margin=args.margin, progress=not args.quiet, runtime=args.runtime,
    )
    run_args = {k: v for k, v in vars(args).items() if k not in ("func",)}
    paths = write_outputs(result, args.out, force=args.force, run_args=run_args)
    print(format_summary(result))
    print("\nwrote " + ", ".join(str(p) for p in paths))
    return 0


def add_sweep_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``sweep`` verb on the ``e4gym`` command's subparsers."""
    p = sub.add_parser(
        "sweep", help="CPU × GPU frequency sweep of one device and model, as heatmaps",
        description="Evaluate every allowed CPU × GPU clock pair (memory at its top allowed level) on the "
                    "noise-free emulator model, measure the default governors on the emulator, and write "
                    "DIR/sweep.csv, DIR/sweep.json and DIR/heatmaps.png (latency, power, energy).",
    )
    p.add_argument("--device", required=True, help="device name, e.g. xavier-nx (see `e4gym devices`)")
    p.add_argument("--model", default="efficientnet_b0", help="model profile name (default: efficientnet_b0)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (created if missing)")
    p.add_argument("--exit", type=int, default=-1, help="exit every frame takes (0-based; default -1, the last)")
    p.add_argument("--fps", type=float, default=None,
                   help="streaming: frame rate (default 30); throughput: the rate to sustain (default: none)")
    p.add_argument("--deadline-ms", type=float, default=None,
                   help="per-launch deadline in ms (default: the frame period)")
    p.add_argument("--power-mode", default=None, help="nvpmodel mode (default: the device's default mode)")
    p.add_argument("--runtime", default="pytorch",
                   help="inference runtime: pytorch (default), tensorrt-fp16 or tensorrt-int8")
    p.add_argument("--mode", default="streaming", metavar="{streaming,throughput}",
                   help="streaming: frames at --fps with idle charged (default); throughput: back-to-back launches")
    p.add_argument("--batch", type=int, default=1, help="inferences per launch (throughput mode; default 1)")
    p.add_argument("--frames", type=int, default=DEFAULT_FRAMES,
                   help=f"frames the default governors are measured over on the emulator (default {DEFAULT_FRAMES})")
    p.add_argument("--seed", type=int, default=0, help="emulator seed of the measurements (default 0)")
    p.add_argument("--margin", type=float, default=DEFAULT_MARGIN,
                   help=f"latency headroom of a feasible pair, as a fraction (default {DEFAULT_MARGIN})")
    p.add_argument("--force", action="store_true", help="overwrite existing outputs in DIR")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_sweep)
