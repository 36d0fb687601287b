"""`e4gym sweep`: the CPU × GPU frequency sweep (Dutt et al.; E4 Fig. 1), its files and its errors."""

from __future__ import annotations

import csv
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from e4gym.bench.sweep import (
    CSV_COLUMNS,
    OUTPUT_FILES,
    SweepResult,
    _ticks,
    frequency_sweep,
    grid_cost,
    write_outputs,
)
from e4gym.cli import main
from e4gym.dnn.profile import load_model_profile
from e4gym.errors import ConfigError, UnknownNameError
from e4gym.hardware.emulator import EmulatedBackend
from e4gym.hardware.spec import load_device

FRAMES = 60  # enough for the governors to settle; keeps each sweep well under a second


@pytest.fixture(scope="module")
def nx() -> SweepResult:
    """Xavier NX, EfficientNet-B0 full network, streaming at 30 fps (E4 Fig. 1's setting)."""
    return frequency_sweep("xavier-nx", "efficientnet_b0", frames=FRAMES)


@pytest.fixture(scope="module")
def nx_throughput() -> SweepResult:
    """The same, back to back at batch 1 with the 30 fps rate as the constraint."""
    return frequency_sweep("xavier-nx", "efficientnet_b0", fps=30.0, mode="throughput", frames=FRAMES)


# ---------------------------------------------------------------------------------------------- the grid


def test_shapes_and_units(nx: SweepResult) -> None:
    spec = load_device("xavier-nx")
    mc, mg, _ = spec.max_levels(nx.power_mode)
    shape = (mc + 1, mg + 1)
    for name in ("latency_s", "energy_j", "power_w", "run_power_w", "feasible"):
        assert getattr(nx, name).shape == shape, name
    assert nx.cpu_hz[0] == pytest.approx(115.2e6) and nx.cpu_hz[-1] == pytest.approx(1907.2e6)
    assert nx.gpu_hz[0] == pytest.approx(114.75e6) and nx.gpu_hz[-1] == pytest.approx(1109.25e6)
    # Seconds, watts, joules: a full EfficientNet-B0 frame at the top clocks is ~30 ms at a few watts.
    assert 0.02 < nx.latency_s[-1, -1] < 0.04
    assert 2.0 < nx.power_w.min() and nx.run_power_w.max() < 20.0
    period = 1 / 30
    np.testing.assert_allclose(nx.energy_j, nx.power_w * np.maximum(nx.latency_s, period), rtol=1e-12)
    assert nx.deadline_s == pytest.approx(period) and nx.fps == 30.0 and nx.exit == 4


def test_latency_falls_with_both_clocks(nx: SweepResult) -> None:
    assert np.all(np.diff(nx.latency_s, axis=0) < 0), "latency must fall with the CPU clock"
    assert np.all(np.diff(nx.latency_s, axis=1) < 0), "latency must fall with the GPU clock"
    assert np.all(np.diff(nx.run_power_w, axis=1) > 0), "run power must rise with the GPU clock"


def test_energy_is_the_emulators_at_a_hand_checked_pair() -> None:
    """CPU 1190 MHz / GPU 803 MHz, exit 2: one noise-free emulator run plus idle to the next frame."""
    spec = load_device("xavier-nx")
    quiet = dataclasses.replace(spec, model=dataclasses.replace(
        spec.model, noise_latency=0.0, noise_power=0.0, transition_delay_s=(0.0, 0.0, 0.0), transition_stall_s=0.0))
    work = load_model_profile("efficientnet_b0").frame_work(2)
    period = 1 / 30
    g = grid_cost(spec, work, period_s=period)
    c, gl = spec.level_of("cpu", 1190.4e6), spec.level_of("gpu", 803.25e6)
    with EmulatedBackend(quiet, seed=0) as board:
        board.apply((c, gl, g.emc_level))
        run = board.run(work)
        idle = board.idle(period - run.latency_s)
    assert g.latency_s[c, gl] == pytest.approx(run.latency_s, rel=1e-9)
    assert g.run_energy_j[c, gl] == pytest.approx(run.energy_j, rel=1e-9)
    # Idle at the end of the run is a hair warmer than ambient (leakage grows with temperature).
    assert g.energy_j[c, gl] == pytest.approx(run.energy_j + idle.energy_j, rel=1e-3)
    assert g.energy_j[c, gl] == pytest.approx(run.avg_power_w * run.latency_s + idle.avg_power_w * idle.latency_s,
                                              rel=1e-3)


def test_grid_matches_the_oracles_analytic_sweep() -> None:
    """The sweep and the clairvoyant oracle's sweep read the same noise-free model (`grid_cost`); the best static
    baseline plans on a measured cost model instead, close to it but not equal."""
    from baselines.oracle import analytic_sweep
    from baselines.static import best_static_sweep
    from e4gym.envs.common import resolve_setup

    for device, mode in (("xavier-nx", "10W"), ("jetson-nano", None)):
        setup = resolve_setup(device=device, model="efficientnet_b0", fps=15.0, power_mode=mode)
        ref = analytic_sweep(setup, exit=3)
        r = frequency_sweep(device, "efficientnet_b0", exit=3, fps=15.0, power_mode=mode, frames=5)
        np.testing.assert_allclose(r.latency_s, ref.latency_s, rtol=1e-12)
        np.testing.assert_allclose(r.energy_j, ref.energy_j, rtol=1e-12)
        np.testing.assert_array_equal(r.feasible, ref.feasible)
        assert r.best == ref.best and r.meets_deadline == ref.meets_deadline
        measured = best_static_sweep(device, "efficientnet_b0", exit=3, fps=15.0, power_mode=mode)
        rel = np.abs(measured.latency_s / ref.latency_s - 1.0)
        assert np.median(rel) < 0.05 and rel.max() > 1e-6  # measured: near the model, with noise


def test_streaming_charges_idle_that_throughput_does_not(nx: SweepResult, nx_throughput: SweepResult) -> None:
    idle = nx.latency_s < 1 / 30
    assert idle.any() and (~idle).any()
    np.testing.assert_allclose(nx.latency_s, nx_throughput.latency_s, rtol=1e-12)
    assert np.all(nx.energy_j[idle] > nx_throughput.energy_j[idle])
    np.testing.assert_allclose(nx.energy_j[~idle], nx_throughput.energy_j[~idle], rtol=1e-12)
    # Throughput power is the power while running.
    np.testing.assert_allclose(nx_throughput.power_w, nx_throughput.run_power_w, rtol=1e-12)


def test_batching_amortises_dispatch_and_no_rate_means_no_deadline() -> None:
    one = frequency_sweep("jetson-nano", mode="throughput", batch=1, frames=8)
    eight = frequency_sweep("jetson-nano", mode="throughput", batch=8, frames=8)
    assert np.all(eight.energy_j < one.energy_j), "energy per inference falls with the batch (Dutt et al.)"
    assert one.feasible.all() and one.deadline_s == np.inf and one.fps is None
    assert one.best == one.min_energy
    assert eight.default.frames == 8


# ---------------------------------------------------------------------------------------------- measured points


def test_default_point_is_measured_inside_the_grid(nx: SweepResult) -> None:
    d = nx.default
    rows, cols = nx.latency_s.shape
    assert 0 <= d.cpu_level < rows and 0 <= d.gpu_level < cols
    assert nx.cpu_hz[0] <= d.cpu_mean_hz <= nx.cpu_hz[-1] and nx.gpu_hz[0] <= d.gpu_mean_hz <= nx.gpu_hz[-1]
    assert d.frames == FRAMES and d.seed == 0
    # Dutt et al.: under DNN load the default governors sit at the top clocks most of the time.
    assert d.cpu_top_share > 0.5 and d.gpu_top_share > 0.5
    # Measured, not looked up: noise and warming move it off the model, but not far.
    model = float(nx.energy_j[nx.default_point])
    assert d.energy_j != model and d.energy_j == pytest.approx(model, rel=0.05)
    assert d.measured_energy_j != d.energy_j  # the power monitor's figure is kept apart
    again = frequency_sweep("xavier-nx", frames=FRAMES)
    assert again.default == d, "same seed, same measurement"
    assert frequency_sweep("xavier-nx", frames=FRAMES, seed=1).default.energy_j != d.energy_j


def test_default_governors_follow_the_load() -> None:
    """Under a light load (the first exit only) schedutil and nvhost_podgov lower the clocks: the point moves."""
    r = frequency_sweep("xavier-nx", exit=0, frames=FRAMES)
    rows, cols = r.latency_s.shape
    assert r.default.cpu_level < rows - 1 and r.default.gpu_level < cols - 1
    assert r.default.cpu_top_share < 0.5 and r.default.gpu_top_share < 0.5
    assert r.default.energy_j < float(r.energy_j[-1, -1]), "cheaper than holding the top clocks"


def test_best_pair_is_feasible_and_not_worse_than_default(nx: SweepResult) -> None:
    assert nx.meets_deadline and nx.feasible[nx.best]
    assert nx.energy_j[nx.best] == nx.energy_j[nx.feasible].min()
    assert nx.latency_s[nx.best] * (1 + nx.margin) <= nx.deadline_s
    assert nx.feasible[nx.default_point], "at 30 fps the default governors keep up on Xavier NX"
    assert nx.energy_j[nx.best] <= nx.energy_j[nx.default_point]
    assert nx.model_saving_pct >= 0.0
    b = nx.best_measured
    assert (b.cpu_level, b.gpu_level) == nx.best, "the best pair is measured at its own clocks"
    assert b.cpu_mean_hz == pytest.approx(nx.cpu_hz[nx.best[0]])
    assert b.gpu_mean_hz == pytest.approx(nx.gpu_hz[nx.best[1]])
    assert b.energy_j <= nx.default.energy_j * 1.01
    assert nx.saving_pct == pytest.approx(100 * (1 - nx.best_measured.energy_j / nx.default.energy_j))
    # Dutt et al.: energy is non-monotonic in the GPU clock, so the deadline-free minimum is interior.
    assert nx.min_energy[1] < nx.latency_s.shape[1] - 1
    assert nx.energy_j[nx.min_energy] < nx.energy_j[nx.best]
    assert nx.fastest == (nx.latency_s.shape[0] - 1, nx.latency_s.shape[1] - 1)


def test_no_feasible_pair_falls_back_to_the_fastest() -> None:
    r = frequency_sweep("jetson-nano", frames=10)  # ~70 ms a frame cannot keep up with 30 fps
    assert not r.meets_deadline and not r.feasible.any()
    assert r.best == r.fastest
    assert r.default.missed_frac > 0.5


# ---------------------------------------------------------------------------------------------- files and CLI


def test_cli_writes_three_files_and_refuses_to_overwrite(tmp_path: Path, capsys) -> None:
    out = tmp_path / "nx"
    argv = ["sweep", "--device", "xavier-nx", "--out", str(out), "--frames", "30", "--quiet"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "best pair" in printed and "E4 Fig. 1" in printed and "| point" in printed
    assert sorted(p.name for p in out.iterdir()) == sorted(OUTPUT_FILES), "no temporary files left behind"

    with open(out / "sweep.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0]) == CSV_COLUMNS and len(rows) == 25 * 15
    assert sum(int(r["default_point"]) for r in rows) == 1 and sum(int(r["best_point"]) for r in rows) == 1
    top = rows[-1]
    assert float(top["cpu_mhz"]) == pytest.approx(1907.2) and float(top["gpu_mhz"]) == pytest.approx(1109.25)
    assert 20 < float(top["latency_ms"]) < 40 and 100 < float(top["energy_mj"]) < 1000

    meta = json.loads((out / "sweep.json").read_text())
    assert meta["device"] == "xavier-nx" and meta["mode"] == "streaming" and meta["args"]["frames"] == 30
    s = meta["summary"]
    assert s["best"]["feasible"] and s["default_measured"]["frames"] == 30
    assert s["saving_vs_default_pct"] == pytest.approx(
        100 * (1 - s["best_measured"]["energy_mj"] / s["default_measured"]["energy_mj"]))

    png = (out / "heatmaps.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 50_000

    before = (out / "sweep.json").stat().st_mtime_ns
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "sweep.csv" in err and "already exist" in err and "--force" in err
    assert (out / "sweep.json").stat().st_mtime_ns == before
    assert main([*argv, "--force", "--mode", "throughput"]) == 0
    assert json.loads((out / "sweep.json").read_text())["mode"] == "throughput"


def test_refuses_one_existing_file(tmp_path: Path, nx: SweepResult) -> None:
    (tmp_path / "heatmaps.png").write_bytes(b"keep me")
    with pytest.raises(ConfigError, match=r"heatmaps\.png already exists"):
        write_outputs(nx, tmp_path)
    assert (tmp_path / "heatmaps.png").read_bytes() == b"keep me"
    assert not (tmp_path / "sweep.csv").exists()
    write_outputs(nx, tmp_path, force=True)
    assert (tmp_path / "heatmaps.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--device", "nope"], "unknown device 'nope'"),
        (["--device", "xavier-nx", "--exit", "7"], "exit must be an integer in 0..4"),
        (["--device", "xavier-nx", "--exit", "-6"], "exit must be an integer in 0..4"),
        (["--device", "xavier-nx", "--mode", "burst"], "mode must be one of ['streaming', 'throughput'], got 'burst'"),
        (["--device", "xavier-nx", "--batch", "4"], "batch must be 1"),
        (["--device", "xavier-nx", "--frames", "0"], "frames must be an integer >= 1"),
        (["--device", "xavier-nx", "--power-mode", "99W"], "no power mode '99W'"),
        (["--device", "xavier-nx", "--fps", "-1"], "fps"),
    ],
)
def test_bad_input_exits_2_with_message(tmp_path: Path, argv: list[str], message: str, capsys) -> None:
    out = tmp_path / "out"
    assert main(["sweep", *argv, "--out", str(out), "--quiet"]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists(), "nothing is written when the arguments are wrong"


def test_api_errors_name_the_argument() -> None:
    with pytest.raises(ConfigError, match="exit must be"):
        frequency_sweep("xavier-nx", exit=5)
    with pytest.raises(ConfigError, match="mode must be one of"):
        frequency_sweep("xavier-nx", mode="batch")
    with pytest.raises(UnknownNameError, match="unknown device 'tx9'"):
        frequency_sweep("tx9")
    with pytest.raises(ConfigError, match="margin"):
        frequency_sweep("xavier-nx", margin=-0.1)


def test_out_must_be_a_folder(tmp_path: Path, capsys) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    assert main(["sweep", "--device", "xavier-nx", "--out", str(f), "--quiet"]) == 2
    assert "is a file" in capsys.readouterr().err


def test_ticks_are_thinned_and_keep_the_top() -> None:
    hz = np.linspace(115.2e6, 1907.2e6, 25)
    idx, labels = _ticks(hz, 12)
    assert idx[0] == 0 and idx[-1] == 24 and len(idx) <= 13
    assert labels[-1] == "1907" and np.all(np.diff(idx) > 0)
    assert _ticks(hz[:5], 12)[0] == [0, 1, 2, 3, 4]


def test_module_imports_neither_torch_nor_matplotlib() -> None:
    code = (
        "import sys\n"
        "import e4gym.bench.sweep as s\n"
        "assert 'matplotlib' not in sys.modules, 'matplotlib imported at import time'\n"
        "s.frequency_sweep('jetson-nano', frames=3)\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_sweep_under_tensorrt_is_faster_everywhere_and_the_cli_takes_the_runtime(nx, tmp_path, capsys) -> None:
    trt = frequency_sweep("xavier-nx", "efficientnet_b0", frames=FRAMES, runtime="tensorrt-fp16")
    assert (trt.grid.latency_s < nx.grid.latency_s).all()
    assert main(["sweep", "--device", "xavier-nx", "--out", str(tmp_path / "s"), "--frames", "20", "--quiet",
                 "--runtime", "tensorrt-fp16"]) == 0
    run_args = json.loads((tmp_path / "s" / "sweep.json").read_text())
    assert "tensorrt-fp16" in json.dumps(run_args)
    assert main(["sweep", "--device", "xavier-nx", "--out", str(tmp_path / "t"), "--runtime", "onnx"]) == 2
    assert "unknown runtime 'onnx'" in capsys.readouterr().err
