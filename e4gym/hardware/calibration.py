"""Check the emulator against the published figures of ``CALIBRATION.md`` (``e4gym calibrate``).

Each :class:`CalibrationRow` names the target, its source, the value the emulator gives and whether it
passes. :func:`calibrate` runs every row for the chosen devices; the test suite asserts that all pass.

Dutt et al.'s rows are throughput runs (inferences back to back in batches; batch 8 here, within their
4–64) of 3200 inferences; E4's Fig. 1 row is batch 1.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from e4gym.dnn.profile import ModelProfile, load_model_profile
from e4gym.hardware.backend import Cooling
from e4gym.hardware.emulator import EmulatedBackend
from e4gym.hardware.model import cost_table, floor_power_w, power_table
from e4gym.hardware.spec import DeviceSpec, available_devices, load_device

DUTT_MODELS = ("efficientnet_b0", "mobilenet_v2", "resnet18")
DUTT_INFERENCES = 3200  # Dutt et al.: 3200 inferences per experiment
DUTT_BATCH = 8  # within Dutt et al.'s batch sizes (4–64)
#: Dutt et al.: best CPU×GPU pair vs default governors, energy saving range per device.
SAVING_TARGETS = {"jetson-nano": (0.09, 0.19), "xavier-nx": (0.02, 0.15)}


@dataclass(frozen=True)
class CalibrationRow:
    """One checked target.

    Attributes:
        device: device name (or ``"all"``).
        target: what is checked, in words.
        expected: the published figure or range, in words.
        value: what the emulator gives, in words.
        passed: whether it meets the target.
        source: where the target comes from.
        evidence: :data:`MEASURED` (the emulator matches a figure measured on that board and published) or
            :data:`STRUCTURAL` (a qualitative property: monotone, throttles, reproducible; no board measurement
            is matched).
    """

    device: str
    target: str
    expected: str
    value: str
    passed: bool
    source: str
    evidence: str = "structural"


#: A row that matches a published measurement of the board.
MEASURED = "measured"
#: A row that checks a qualitative property only.
STRUCTURAL = "structural"


def _grid(spec: DeviceSpec, profile: ModelProfile, batch: int) -> tuple[np.ndarray, np.ndarray]:
    """Noise-free latency (s) and average power (W) over the level grid at the reference temperature."""
    pt = power_table(spec)
    t = cost_table(spec, profile.frame_work(), pt, batch)
    floor = floor_power_w(pt, slice(None), spec.model.temp_ref_c, spec.model)
    power = floor + t.busy_dyn_j / t.latency_s
    return t.latency_s.reshape(spec.n_levels), power.reshape(spec.n_levels)


def _run_for(backend: EmulatedBackend, profile: ModelProfile, inferences: int, batch: int) -> tuple[float, float]:
    """Run ``inferences`` back to back; returns (energy J, time s)."""
    work = profile.frame_work()
    energy = time = 0.0
    for _ in range(inferences // batch):
        m = backend.run(work, batch)
        energy += m.energy_j
        time += m.latency_s
    return energy, time


def default_governor_energy(spec: DeviceSpec, profile: ModelProfile, seed: int = 0) -> float:
    """Energy (J) of Dutt's experiment under the device's default governors."""
    with EmulatedBackend(spec, seed=seed, governors="default") as b:
        return _run_for(b, profile, DUTT_INFERENCES, DUTT_BATCH)[0]


def best_static(spec: DeviceSpec, profile: ModelProfile, seed: int = 0) -> tuple[tuple[int, int, int], float]:
    """The CPU×GPU pair (EMC at its top level) with the least energy for Dutt's experiment, and that energy.

    The sweep ranks pairs with the noise-free model, then runs the best pair in the emulator.
    """
    lat, power = _grid(spec, profile, DUTT_BATCH)
    top_emc = spec.max_levels()[2]
    energy = (lat * power)[:, :, top_emc]
    c, g = np.unravel_index(int(np.argmin(energy)), energy.shape)
    setting = (int(c), int(g), top_emc)
    with EmulatedBackend(spec, seed=seed) as b:
        b.apply(setting)
        return setting, _run_for(b, profile, DUTT_INFERENCES, DUTT_BATCH)[0]


def _row(device: str, target: str, expected: str, value: str, passed: bool, source: str,
         evidence: str = STRUCTURAL) -> CalibrationRow:
    return CalibrationRow(device, target, expected, value, bool(passed), source, evidence)


def rows_e4_fig1(models: dict[str, ModelProfile]) -> list[CalibrationRow]:
    """xavier-nx, EfficientNet-B0, top CPU and GPU clocks, batch 1: 30 ms and 8.6 W (±10 %)."""
    spec = load_device("xavier-nx")
    profile = models["efficientnet_b0"]
    with EmulatedBackend(spec, seed=0) as b:
        top = spec.max_levels()
        b.apply(top)
        work = profile.frame_work()
        ms = [b.run(work) for _ in range(300)]
    lat = float(np.mean([m.latency_s for m in ms]))
    power = float(np.sum([m.energy_j for m in ms]) / np.sum([m.latency_s for m in ms]))
    src = "E4 poster Fig. 1 (zTT governor, Xavier NX 8 GB, CPU 1.9 GHz, GPU 1.1 GHz)"
    return [
        _row("xavier-nx", "EfficientNet-B0 latency at top clocks", "30 ms ± 10 %", f"{lat * 1e3:.1f} ms",
             abs(lat - 0.030) <= 0.003, src, MEASURED),
        _row("xavier-nx", "EfficientNet-B0 board power at top clocks", "8.6 W ± 10 %", f"{power:.2f} W",
             abs(power - 8.6) <= 0.86, src, MEASURED),
    ]


def rows_monotonic(spec: DeviceSpec, models: dict[str, ModelProfile]) -> list[CalibrationRow]:
    """Latency falls and power rises with every clock (each domain, all other levels held)."""
    rows = []
    for name, profile in models.items():
        lat, power = _grid(spec, profile, 1)
        bad = []
        for axis, dom in enumerate(("cpu", "gpu", "emc")):
            if np.any(np.diff(lat, axis=axis) > 1e-12):
                bad.append(f"latency rises with {dom}")
            if np.any(np.diff(power, axis=axis) < -1e-12):
                bad.append(f"power falls with {dom}")
        rows.append(_row(spec.name, f"{name}: latency falls, power rises with every clock", "monotonic",
                         "; ".join(bad) or "monotonic", not bad,
                         "Dutt et al.; E4 poster Fig. 1"))
    return rows


def rows_energy_shape(spec: DeviceSpec, models: dict[str, ModelProfile]) -> list[CalibrationRow]:
    """Interior energy minimum over GPU levels; CPU clock moves latency less than the GPU clock."""
    rows = []
    top = spec.max_levels()
    for name, profile in models.items():
        lat, power = _grid(spec, profile, DUTT_BATCH)
        e_gpu = (lat * power)[top[0], : top[1] + 1, top[2]]
        k = int(np.argmin(e_gpu))
        interior = 0 < k < len(e_gpu) - 1
        rows.append(_row(spec.name, f"{name}: energy over GPU levels has an interior minimum",
                         "minimum strictly inside the range",
                         f"minimum at {spec.gpu_freqs_hz[k] / 1e6:.0f} MHz (level {k}/{len(e_gpu) - 1})",
                         interior, "Dutt et al. (energy non-monotonic in GPU frequency)"))
        l_top = lat[top]
        cpu_swing = lat[0, top[1], top[2]] / l_top
        gpu_swing = lat[top[0], 0, top[2]] / l_top
        rows.append(_row(spec.name, f"{name}: CPU clock moves latency less than GPU clock",
                         "latency(min CPU)/latency(top) < latency(min GPU)/latency(top)",
                         f"CPU ×{cpu_swing:.2f}, GPU ×{gpu_swing:.2f}", cpu_swing < gpu_swing,
                         f"Dutt et al. (batch {DUTT_BATCH})"))
    return rows


def rows_best_static(spec: DeviceSpec, models: dict[str, ModelProfile]) -> list[CalibrationRow]:
    """Best static CPU×GPU pair against the default governors (Dutt et al.)."""
    lo, hi = SAVING_TARGETS[spec.name]
    rows = []
    for name, profile in models.items():
        e_def = default_governor_energy(spec, profile)
        setting, e_best = best_static(spec, profile)
        saving = 1.0 - e_best / e_def
        rows.append(_row(
            spec.name, f"{name}: best static pair vs default governors", f"{lo:.0%}–{hi:.0%} less energy",
            f"{saving:.1%} (CPU {spec.cpu_freqs_hz[setting[0]] / 1e6:.0f} MHz, "
            f"GPU {spec.gpu_freqs_hz[setting[1]] / 1e6:.0f} MHz)",
            lo <= saving <= hi, "Dutt et al. (Nano up to 19 %, Xavier NX 2–15 %)", MEASURED))
    return rows


def rows_nano_vs_nx(models: dict[str, ModelProfile]) -> list[CalibrationRow]:
    """The same work takes 2×–4× less energy on xavier-nx than on nano."""
    nano, nx = load_device("jetson-nano"), load_device("xavier-nx")
    rows = []
    for name, profile in models.items():
        ratio = default_governor_energy(nano, profile) / default_governor_energy(nx, profile)
        rows.append(_row("jetson-nano/xavier-nx", f"{name}: energy on nano / on xavier-nx", "2×–4×",
                         f"{ratio:.2f}×", 2.0 <= ratio <= 4.0, "Dutt et al.", MEASURED))
    return rows


def thermal_run(spec: DeviceSpec, profile: ModelProfile, cooling: Cooling, minutes: float,
                seed: int = 0) -> tuple[float | None, float, EmulatedBackend]:
    """Run ``profile`` at top clocks back to back for ``minutes``; returns (first throttle time s or None,
    peak temperature °C, the backend for further use)."""
    b = EmulatedBackend(spec, seed=seed, cooling=cooling)
    b.apply(spec.max_levels())
    work = profile.frame_work()
    first, peak = None, b.temp_c
    while b.time_s < minutes * 60.0:
        m = b.run(work)
        peak = max(peak, m.temp_c)
        if m.throttled and first is None:
            first = m.time_s
    return first, peak, b


def rows_thermal(spec: DeviceSpec, models: dict[str, ModelProfile]) -> list[CalibrationRow]:
    """Passive cooling at a warm ambient throttles within minutes; the fan stays below; idle cools."""
    profile = models["efficientnet_b0"]
    trip = spec.thermal.throttle_c
    first, peak, b = thermal_run(spec, profile, Cooling(fan=False, ambient_c=35.0), 10.0)
    rows = [_row(spec.name, "passive, 35 °C ambient, top clocks: throttles within minutes",
                 f"trip {trip:.0f} °C reached in ≤ 10 min",
                 f"throttled after {first / 60:.1f} min" if first else f"peak {peak:.1f} °C, no throttle",
                 first is not None and first <= 600.0, "CALIBRATION.md §2 trips; time constant ASSUMPTION")]
    hot = b.temp_c
    b.idle(300.0)
    cooled = b.temp_c
    release = trip - spec.model.throttle_hysteresis_c
    rows.append(_row(spec.name, "idle after the hot run cools back",
                     f"below {release:.0f} °C within 5 min, not throttled", f"{hot:.1f} → {cooled:.1f} °C",
                     cooled < trip - spec.model.throttle_hysteresis_c and not b.read_sensors().throttled,
                     "first-order thermal model"))
    first_fan, peak_fan, _ = thermal_run(spec, profile, Cooling(fan=True, ambient_c=35.0), 10.0)
    rows.append(_row(spec.name, "fan, 35 °C ambient, top clocks: stays below the trip", f"peak < {trip:.0f} °C",
                     f"peak {peak_fan:.1f} °C", first_fan is None, "CALIBRATION.md §2 trips"))
    return rows


def rows_noise(spec: DeviceSpec, models: dict[str, ModelProfile]) -> list[CalibrationRow]:
    """Run-to-run spread σ ≤ 5 % (Dutt et al.), and a fixed seed gives identical numbers."""
    profile = models["efficientnet_b0"]
    work = profile.frame_work()

    def series(seed: int) -> np.ndarray:
        with EmulatedBackend(spec, seed=seed) as b:
            b.apply(spec.max_levels())
            return np.array([(m.latency_s, m.avg_power_w) for m in (b.run(work) for _ in range(500))])

    a, a2 = series(1), series(1)
    cv = a.std(axis=0) / a.mean(axis=0)
    return [
        _row(spec.name, "spread (σ/mean) of latency and power", "≤ 5 %",
             f"latency {cv[0]:.1%}, power {cv[1]:.1%}", bool(np.all(cv <= 0.05)), "Dutt et al. (< 5 %)",
             MEASURED if spec.name in SAVING_TARGETS else STRUCTURAL),  # measured on Dutt et al.'s boards only
        _row(spec.name, "same seed, same numbers", "identical", "identical" if np.array_equal(a, a2) else "differ",
             np.array_equal(a, a2), "reproducibility"),
    ]


def calibrate(devices: Iterable[str] | None = None, models: Iterable[str] = DUTT_MODELS,
              progress: Callable[[str], None] | None = None) -> list[CalibrationRow]:
    """Run every calibration row for ``devices`` (default: all in ``configs/devices``)."""
    names = list(devices) if devices else available_devices()
    profiles = {m: load_model_profile(m) for m in models}
    rows: list[CalibrationRow] = []
    for name in names:
        spec = load_device(name)
        if progress:
            progress(name)
        if name == "xavier-nx" and "efficientnet_b0" in profiles:
            rows += rows_e4_fig1(profiles)
        rows += rows_monotonic(spec, profiles)
        if name in SAVING_TARGETS:
            rows += rows_energy_shape(spec, profiles)
            rows += rows_best_static(spec, profiles)
        if "efficientnet_b0" in profiles:
            rows += rows_thermal(spec, profiles)
            rows += rows_noise(spec, profiles)
    if {"jetson-nano", "xavier-nx"} <= set(names):
        rows += rows_nano_vs_nx(profiles)
    return rows


def format_rows(rows: list[CalibrationRow]) -> str:
    """A Markdown table of the rows."""
    head = "| device | target | expected | emulator | pass | evidence | source |\n|---|---|---|---|---|---|---|\n"
    return head + "\n".join(
        f"| {r.device} | {r.target} | {r.expected} | {r.value} | {'PASS' if r.passed else 'FAIL'} | {r.evidence} "
        f"| {r.source} |"
        for r in rows
    )


def evidence_summary(rows: list[CalibrationRow]) -> str:
    """Per board, how many rows rest on published measurements of that board and how many are structural only
    (a Markdown table; rows of two boards, such as the Nano / Xavier NX energy ratio, count for both)."""
    boards = sorted({d for r in rows for d in r.device.split("/")})
    lines = ["| board | rows on published measurements | structural rows | what the emulator rests on |",
             "|---|---:|---:|---|"]
    for board in boards:
        mine = [r for r in rows if board in r.device.split("/")]
        measured = [r for r in mine if r.evidence == MEASURED]
        basis = ("fitted to published measurements of this board" if measured else
                 "structural checks only: its coefficients are scaled from the fitted boards")
        lines.append(f"| {board} | {len(measured)} | {len(mine) - len(measured)} | {basis} |")
    return "\n".join(lines)
