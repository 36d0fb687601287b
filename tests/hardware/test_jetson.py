"""JetsonBackend on fake sysfs trees: detection, writes (units and order), power, restoration, safety."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path

import pytest
from fake_jetson import BUILDERS, FakeBoard, FakeJtop, build_agx_orin, build_nano, build_xavier_nx

from e4gym.dnn.work import Work
from e4gym.errors import ConfigError, HardwareError, SettingError
from e4gym.hardware import jetson, restore, sysfs
from e4gym.hardware.backend import Backend, Setting
from e4gym.hardware.jetson import JetsonBackend, SysfsPermissionError, ThermalLimitError, detect_board
from e4gym.hardware.spec import load_device
from e4gym.hardware.sysfs import Sysfs

WORK = Work(key="fake/frame", names=("b0",), flops=(1.0,), param_bytes=(0.0,), activation_bytes=(0.0,),
            kernels=(1.0,))


def open_backend(board: FakeBoard, **kw) -> JetsonBackend:
    kw.setdefault("power_source", "sysfs")
    return JetsonBackend(sysfs_root=board.root, **kw)


def board_path(board: FakeBoard, path: str | Path) -> str:
    """The board path of a file the backend wrote (through symlinks: /sys/class/devfreq/...)."""
    return "/" + Path(path).resolve().relative_to(board.root.resolve()).as_posix()


@pytest.fixture(params=sorted(BUILDERS))
def board(request, tmp_path: Path) -> FakeBoard:
    return BUILDERS[request.param](tmp_path)


@pytest.fixture
def writes(monkeypatch):
    """Every real write as (absolute path, text), checking that every min/max pair stays ordered."""
    log: list[tuple[str, str]] = []
    original = Sysfs._raw_write

    def record(path: Path, text: str) -> None:
        original(path, text)
        log.append((str(path), text))
        for lo_name, hi_name in (("scaling_min_freq", "scaling_max_freq"), ("min_freq", "max_freq")):
            if path.name in (lo_name, hi_name) and (path.parent / lo_name).is_file():
                lo = int((path.parent / lo_name).read_text())
                hi = int((path.parent / hi_name).read_text())
                assert lo <= hi, f"min > max after writing {path}: {lo} > {hi}"

    monkeypatch.setattr(Sysfs, "_raw_write", staticmethod(record))
    return log


class SleepRunner:
    """A stand-in work runner: sleeps, optionally calling hooks before and halfway."""

    def __init__(self, seconds: float, halfway=None, start=None) -> None:
        self.seconds, self.halfway, self.start = seconds, halfway, start
        self.parts: list[float] = []
        self.returned: list[float] = []  # what each run() returned

    def run(self, work: Work, batch: int = 1) -> float:
        t0 = time.perf_counter()
        if self.start:
            self.start()
        if self.halfway is None:
            time.sleep(self.seconds)
        else:
            time.sleep(self.seconds / 2)
            t1 = time.perf_counter()
            self.halfway()
            time.sleep(self.seconds / 2)
            self.parts = [t1 - t0, time.perf_counter() - t1]
        self.returned.append(time.perf_counter() - t0)
        return self.returned[-1]


# ============================================================================================== detection

EXPECTED = {
    "jetson-nano": dict(soc="tegra210", l4t="32.7.1", rails=["POM_5V_IN", "POM_5V_GPU", "POM_5V_CPU"], kind="iio",
                        emc="t210", policies=1),
    "xavier-nx": dict(soc="tegra194", l4t="35.4.1", rails=["VDD_IN", "VDD_CPU_GPU_CV", "VDD_SOC"], kind="hwmon",
                      emc="bpmp", policies=3),
    "agx-orin": dict(soc="tegra234", l4t="36.3.0",
                     rails=["VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0", "VDDQ_VDD2_1V8AO"], kind="hwmon",
                     emc="bpmp", policies=3),
}


def test_detects_the_three_boards(board: FakeBoard) -> None:
    want = EXPECTED[board.device]
    info = detect_board(board.root)
    assert (info.device, info.soc, info.l4t, info.l4t_major) == (
        board.device, want["soc"], want["l4t"], int(want["l4t"].split(".")[0]))
    if board.device == "agx-orin":
        assert "dpkg" in info.l4t_source  # JetPack 6 tree: no /etc/nv_tegra_release
    with open_backend(board) as be:
        lay = be.layout
        assert be.spec.name == board.device
        assert [board_path(board, p.path) for p in lay.cpu] == board.policies
        assert len(lay.cpu) == want["policies"]
        assert board_path(board, lay.gpu.path) == board.gpu
        assert lay.gpu.method == "range" and lay.gpu.load_path is not None
        assert [r.name for r in lay.rails] == want["rails"]  # NC channels and channel 7 skipped
        assert {r.kind for r in lay.rails} == {want["kind"]}
        assert lay.emc is not None and lay.emc.kind == want["emc"]
        assert not any("PMIC" in z.name or "fan-est" in z.name for z in lay.zones)
        assert board.device in be.describe() and "journal" in be.describe()


def test_detects_from_compatible_without_a_model(tmp_path: Path) -> None:
    board = build_xavier_nx(tmp_path)
    board.path("/proc/device-tree/model").unlink()
    assert detect_board(tmp_path).device == "xavier-nx"  # p3668 in compatible


def test_unknown_board_names_what_was_looked_for(tmp_path: Path) -> None:
    board = build_xavier_nx(tmp_path)
    board.path("/proc/device-tree/model").unlink()
    board.path("/proc/device-tree/compatible").unlink()
    before = board.snapshot()
    with pytest.raises(HardwareError, match=r"proc/device-tree/model.*spec="):
        open_backend(board)
    assert board.snapshot() == before
    with open_backend(board, spec="xavier-nx") as be:  # spec overrides detection
        assert be.spec.name == "xavier-nx"


def test_spec_that_disagrees_with_the_board_warns(tmp_path: Path) -> None:
    board = build_nano(tmp_path)
    with pytest.warns(UserWarning, match="jetson-nano"), open_backend(board, spec="xavier-nx"):
        pass
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        open_backend(board).close()


def test_is_a_backend(tmp_path: Path) -> None:
    assert JetsonBackend.NONDETERMINISTIC is True
    with open_backend(build_nano(tmp_path)) as be:
        assert isinstance(be, Backend)


@pytest.mark.parametrize("kw", [dict(power_source="nvml"), dict(sample_period_s=0),
                                dict(thermal_limit_c=float("nan")), dict(read_only=True, cpu_online=2)])
def test_bad_arguments(tmp_path: Path, kw: dict) -> None:
    board = build_nano(tmp_path)
    with pytest.raises(ConfigError):
        JetsonBackend(sysfs_root=board.root, **kw)


# ============================================================================================== writes


def test_apply_writes_units_to_the_right_files(board: FakeBoard, writes: list) -> None:
    spec = load_device(board.device)
    cpu_khz, gpu_hz, emc_hz = (round(spec.cpu_freqs_hz[1] / 1e3), round(spec.gpu_freqs_hz[2]),
                               round(spec.emc_freqs_hz[1]))
    with open_backend(board) as be:
        be.apply(Setting(1, 2, 1))
        for i in range(len(board.policies)):
            assert board.policy(i, "scaling_governor") == "userspace"
            assert int(board.policy(i, "scaling_setspeed")) == cpu_khz  # kHz
            assert int(board.policy(i, "scaling_min_freq")) == round(spec.cpu_freqs_hz[0] / 1e3)
            assert int(board.policy(i, "scaling_max_freq")) == round(spec.cpu_freqs_hz[-1] / 1e3)
        assert board.read_int(f"{board.gpu}/min_freq") == board.read_int(f"{board.gpu}/max_freq") == gpu_hz  # Hz
        written = [board_path(board, p) for p, _ in writes]
        if board.emc_kind == "bpmp":
            assert board.read_int(f"{board.emc}/rate") == emc_hz  # Hz
            assert board.read(f"{board.emc}/mrq_rate_locked") == "1"
            assert written.index(f"{board.emc}/mrq_rate_locked") < written.index(f"{board.emc}/rate")
        else:
            assert board.read_int(f"{board.emc}/clk_update_rate") == emc_hz
            assert board.read(f"{board.emc}/clk_state") == "1"
            assert written.index(f"{board.emc}/clk_update_rate") < written.index(f"{board.emc}/clk_state")
        for pol in board.policies:  # the governor goes first, the speed last
            assert written.index(f"{pol}/scaling_governor") < written.index(f"{pol}/scaling_setspeed")
        board.settle()
        assert be.levels == (1, 2, 1)


def test_gpu_min_max_written_in_safe_order(tmp_path: Path, writes: list) -> None:
    board = build_xavier_nx(tmp_path)
    gpu = [f"{board.gpu}/min_freq", f"{board.gpu}/max_freq"]
    with open_backend(board) as be:
        top = be.spec.n_gpu - 1
        be.apply(Setting(5, 3, 7))  # [lowest, top] -> [3, 3]: min first (3 <= top), then max
        assert [board_path(board, p) for p, _ in writes if board_path(board, p) in gpu] == gpu
        writes.clear()
        be.apply(Setting(5, top, 7))  # [3, 3] -> [top, top]: max first (top > 3), then min
        assert [board_path(board, p) for p, _ in writes if board_path(board, p) in gpu] == gpu[::-1]
        assert [t for p, t in writes if board_path(board, p) in gpu] == [str(round(be.spec.gpu_freqs_hz[top]))] * 2
        writes.clear()
        be.apply(Setting(5, 0, 7))  # [top, top] -> [0, 0]: min first, then max
        assert [board_path(board, p) for p, _ in writes if board_path(board, p) in gpu] == gpu
        writes.clear()
    # restoration (min 114750000, max top) also kept min <= max (checked by the fixture)
    assert board.read_int(f"{board.gpu}/min_freq") == round(be.spec.gpu_freqs_hz[0])


def test_cpu_without_userspace_governor_sets_min_equal_max(tmp_path: Path, writes: list) -> None:
    board = build_nano(tmp_path, userspace=False)
    before = board.snapshot()
    pol = board.policies[0]
    with open_backend(board) as be:
        assert be.layout.cpu[0].method == "range"
        be.apply(Setting(3, 11, 6))
        assert board.read(f"{pol}/scaling_min_freq") == board.read(f"{pol}/scaling_max_freq") == "403200"  # kHz
        assert board.read(f"{pol}/scaling_governor") == "schedutil"  # untouched
        names = [Path(p).name for p, _ in writes if "cpufreq" in p]
        assert names == ["scaling_min_freq", "scaling_max_freq"]  # going down: min first
        writes.clear()
        be.apply(Setting(14, 11, 6))
        assert [Path(p).name for p, _ in writes if "cpufreq" in p] == ["scaling_max_freq", "scaling_min_freq"]
    assert board.snapshot() == before


def test_power_mode_caps_are_kept(tmp_path: Path) -> None:
    board = build_nano(tmp_path, cpu_max_khz=918000, gpu_max_hz=640000000)  # the 5 W mode's caps
    with open_backend(board) as be:
        be.apply(Setting(14, 11, 6))
        assert board.policy(0, "scaling_setspeed") == "825600"  # highest listed <= 918000 kHz
        assert board.policy(0, "scaling_max_freq") == "918000"
        assert board.read(f"{board.gpu}/max_freq") == "614400000"  # highest listed <= 640000000 Hz
        board.settle()
        assert be.levels == (7, 7, 6)


def test_stall_counts_switched_domains(board: FakeBoard) -> None:
    with open_backend(board) as be:
        stall = be.spec.model.transition_stall_s
        assert be.apply(Setting(0, 0, 0)) == pytest.approx(3 * stall)
        assert be.apply(Setting(0, 0, 0)) == 0.0
        assert be.apply(Setting(0, 1, 0)) == pytest.approx(stall)
        be.runner = SleepRunner(0.0)
        assert be.run(WORK).transition_s == pytest.approx(4 * stall)  # what apply() charged since the last run
        assert be.run(WORK).transition_s == 0.0


def test_out_of_range_level_writes_nothing(tmp_path: Path, writes: list) -> None:
    board = build_xavier_nx(tmp_path)
    with open_backend(board) as be, pytest.raises(SettingError, match="out of range"):
        be.apply(Setting(0, 99, 0))
    assert writes == []


def test_gpu_userspace_method(tmp_path: Path) -> None:
    board = build_agx_orin(tmp_path, gpu_userspace_only=True)
    before = board.snapshot()
    with open_backend(board) as be:
        assert be.layout.gpu.method == "userspace"
        be.apply(Setting(0, 3, 0))
        assert board.read(f"{board.gpu}/governor") == "userspace"
        assert board.read(f"{board.gpu}/userspace/set_freq") == "612000000"  # Hz
    assert board.snapshot() == before


def test_emc_not_controllable_is_skipped_with_one_warning(tmp_path: Path) -> None:
    board = build_nano(tmp_path, emc=False)
    with open_backend(board) as be:
        assert be.layout.emc is None
        with pytest.warns(UserWarning, match="EMC"):
            assert be.apply(Setting(0, 0, 0)) == pytest.approx(2 * be.spec.model.transition_stall_s)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            be.apply(Setting(0, 0, 3))


def test_cpu_online_is_set_and_restored(tmp_path: Path) -> None:
    board = build_nano(tmp_path, offline=(2, 3))
    before = board.snapshot()
    with open_backend(board, cpu_online=4):
        assert [board.read(f"/sys/devices/system/cpu/cpu{c}/online") for c in (1, 2, 3)] == ["1", "1", "1"]
    assert board.snapshot() == before
    with pytest.raises(ConfigError, match="cpu_online"):
        open_backend(board, cpu_online=9)


def test_cluster_with_every_core_offline_is_left_alone(tmp_path: Path) -> None:
    board = build_xavier_nx(tmp_path, offline=(4, 5))
    with open_backend(board) as be:
        assert [board_path(board, p) for p in be.layout.cpu_skipped] == [board.policies[2]]
        be.apply(Setting(0, 0, 0))
        assert board.policy(2, "scaling_governor") == "schedutil"
        assert board.policy(0, "scaling_governor") == "userspace"


# ============================================================================================== sensing


def test_power_from_the_rails(board: FakeBoard) -> None:
    with open_backend(board) as be:
        if board.device == "jetson-nano":  # iio: in_power0_input in mW, POM_5V_IN is the board's input
            board.set_rail("POM_5V_IN", 5.5)
            assert be.read_sensors().power_w == pytest.approx(5.5)
        elif board.device == "xavier-nx":  # hwmon: mV × mA, VDD_IN is the input
            board.write(board.rails["VDD_IN"].volt, 5080)
            board.write(board.rails["VDD_IN"].curr, 1300)
            assert be.read_sensors().power_w == pytest.approx(5.080 * 1.300)
        else:  # no input rail: the sum
            board.set_rail("VDD_GPU_SOC", 10.0)
            assert be.read_sensors().power_w == pytest.approx(10.0 + 1.6 + 3.2 + 0.8)
        assert set(be.rails_w()) == set(EXPECTED[board.device]["rails"])


def test_hottest_zone_leaves_out_pmic_fan_estimate_and_offline(tmp_path: Path) -> None:
    nano = build_nano(tmp_path / "nano")
    with open_backend(nano) as be:
        assert be.read_sensors().temp_c == pytest.approx(41.0)  # PMIC-Die reads 100 °C
        nano.set_temp("thermal-fan-est", 95.0)
        assert be.read_sensors().temp_c == pytest.approx(41.0)
        nano.set_temp("GPU-therm", 66.5)
        reading = be.read_sensors()
        assert reading.temp_c == pytest.approx(66.5) and not reading.throttled
        nano.set_temp("GPU-therm", 71.0)  # the Nano's throttle trip is 70 °C
        assert be.read_sensors().throttled
    orin = build_agx_orin(tmp_path / "orin")
    with open_backend(orin) as be:
        assert be.read_sensors().temp_c == pytest.approx(47.5)  # cv1 at -256 °C is offline


def test_power_through_fake_jtop(board: FakeBoard) -> None:
    client = FakeJtop(board)
    with JetsonBackend(sysfs_root=board.root, jtop_client=client) as be:  # power_source="auto"
        assert be.power_source == "jtop"
        tot = client.power["tot"]["power"] / 1e3
        assert be.read_sensors().power_w == pytest.approx(tot)
        rail = EXPECTED[board.device]["rails"][-1]
        board.set_rail(rail, 3.0)
        assert be.rails_w()[rail] == pytest.approx(3.0)
        assert set(be.rails_w()) == set(EXPECTED[board.device]["rails"])
        client.running = False
        with pytest.raises(HardwareError, match="jtop"):
            be.read_sensors()
    assert not client.closed  # a client that was given is not closed by the backend
    assert client.ok_calls > 0


def test_run_integrates_jtop_power(tmp_path: Path) -> None:
    board = build_xavier_nx(tmp_path)
    client = FakeJtop(board, power_mw=7500)
    with JetsonBackend(sysfs_root=board.root, power_source="jtop", jtop_client=client,
                       runner=SleepRunner(0.05)) as be:
        m = be.run(WORK)
        assert m.avg_power_w == pytest.approx(7.5)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # jetson-stats' own logger.warn calls
def test_fake_jtop_matches_jetson_stats(board: FakeBoard) -> None:
    try:
        from jtop.core.power import PowerService, find_all_i2c_power_monitor
        from jtop.core.temperature import TemperatureService, get_virtual_thermal_temperature
    except ImportError as exc:  # pragma: no cover - jetson-stats is a dependency
        pytest.skip(f"jetson-stats internals not importable: {exc}")
    power = PowerService.__new__(PowerService)  # its own parsers, pointed at the fake tree
    power._power_avg = {}
    power._power_sensor = dict(sorted(find_all_i2c_power_monitor(str(board.path("/sys/bus/i2c/devices"))).items()))
    temps = TemperatureService.__new__(TemperatureService)
    zones = get_virtual_thermal_temperature(str(board.path("/sys/devices/virtual/thermal")))
    temps._temperature = dict(sorted(zones.items(), key=lambda kv: kv[0].lower()))
    fake = FakeJtop(board)
    assert power.get_status() == fake.power
    assert temps.get_status() == fake.temperature


# ============================================================================================== run and idle


def test_run_integrates_rail_power(tmp_path: Path) -> None:
    board = build_xavier_nx(tmp_path)
    board.set_rail("VDD_IN", 6.0)
    sleeper = SleepRunner(0.2)
    with open_backend(board, runner=sleeper, sample_period_s=0.005) as be:
        be.apply(Setting(3, 4, 5))
        m = be.run(WORK)
        assert m.avg_power_w == pytest.approx(6.0)
        assert m.energy_j == m.measured_energy_j == pytest.approx(6.0 * m.latency_s, rel=0.1)
        assert m.latency_s == sleeper.returned[-1] >= 0.2  # the runner's own latency (a busy machine lengthens it)
        assert m.gpu_util == pytest.approx(0.25)  # load 250 (tenths of a percent)
        assert m.transition_s == pytest.approx(3 * be.spec.model.transition_stall_s)
        assert m.temp_c == pytest.approx(44.5) and m.time_s > 0
        # a power step halfway through: energy = 6 W × first half + 12 W × second half
        runner = SleepRunner(0.3, halfway=lambda: board.set_rail("VDD_IN", 12.0))
        be.runner = runner
        m = be.run(WORK)
        t1, t2 = runner.parts
        assert m.energy_j == pytest.approx(6.0 * t1 + 12.0 * t2, rel=0.05)
        assert 6.0 < m.avg_power_w < 12.0


def test_idle_integrates_power(tmp_path: Path) -> None:
    board = build_nano(tmp_path)
    board.set_rail("POM_5V_IN", 3.0)
    with open_backend(board) as be:
        m = be.idle(0.1)
        assert m.latency_s >= 0.099  # the polled window spans the wait (a busy machine lengthens it)
        assert m.energy_j == pytest.approx(3.0 * m.latency_s)
        with pytest.raises(SettingError):
            be.idle(-1.0)


def test_run_needs_a_runner(tmp_path: Path) -> None:
    with open_backend(build_nano(tmp_path)) as be, pytest.raises(HardwareError, match="runner="):
        be.run(WORK)


# ============================================================================================== restoration


def test_close_restores_everything_and_is_idempotent(board: FakeBoard, writes: list) -> None:
    before = board.snapshot()
    be = open_backend(board)
    for setting in (Setting(0, 0, 0), Setting(2, 3, 1), Setting(1, 1, 2)):
        be.apply(setting)
    assert board.snapshot() != before
    be.close()
    assert board.snapshot() == before
    n = len(writes)
    be.close()
    assert len(writes) == n
    with pytest.raises(HardwareError, match="closed"):
        be.apply(Setting(0, 0, 0))


def test_exception_inside_with_restores(board: FakeBoard) -> None:
    before = board.snapshot()
    with pytest.raises(RuntimeError, match="boom"), open_backend(board) as be:
        be.apply(Setting(0, 0, 0))
        raise RuntimeError("boom")
    assert board.snapshot() == before


CHILD = """
import signal, sys, time
signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a foreground run, however pytest was started
from e4gym.hardware.backend import Setting
from e4gym.hardware.jetson import JetsonBackend
be = JetsonBackend(sysfs_root=sys.argv[1], power_source="sysfs")
be.apply(Setting(0, 0, 0))
print("ready", flush=True)
if sys.argv[2] == "wait":
    time.sleep(30)
"""


def _child(board: FakeBoard, mode: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", CHILD, str(board.root), mode], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_in_a_child_restores_the_board(tmp_path: Path, sig: int) -> None:
    board = build_xavier_nx(tmp_path)
    before = board.snapshot()
    proc = _child(board, "wait")
    try:
        line = proc.stdout.readline()
        assert line.strip() == "ready", proc.stderr.read()
        assert board.policy(0, "scaling_governor") == "userspace"
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    if sig == signal.SIGTERM:
        assert proc.returncode == -signal.SIGTERM  # the default action, after restoring
    else:
        assert proc.returncode != 0  # KeyboardInterrupt, after restoring
    assert "restoring" in err
    assert board.snapshot() == before


def test_exit_without_close_restores_the_board(tmp_path: Path) -> None:
    board = build_agx_orin(tmp_path)
    before = board.snapshot()
    proc = _child(board, "exit")
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0 and out.strip() == "ready", err
    assert "exiting" in err
    assert board.snapshot() == before


def test_signal_handler_chains_to_the_previous_one(tmp_path: Path) -> None:
    board = build_nano(tmp_path)
    before = board.snapshot()
    calls: list[int] = []

    def mine(signum, frame):
        calls.append(signum)

    old = signal.signal(signal.SIGTERM, mine)
    try:
        be = open_backend(board)
        be.apply(Setting(0, 0, 0))
        assert signal.getsignal(signal.SIGTERM) is not mine
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(200):
            if calls:
                break
            time.sleep(0.01)
        assert calls == [signal.SIGTERM]
        assert be.closed and board.snapshot() == before
        assert signal.getsignal(signal.SIGTERM) is mine  # put back once no backend is open
    finally:
        signal.signal(signal.SIGTERM, old)


# ============================================================================================== failures


def test_missing_file_at_open_is_named(tmp_path: Path) -> None:
    board = build_xavier_nx(tmp_path)
    board.path(f"{board.policies[1]}/scaling_max_freq").unlink()
    before = board.snapshot()
    with pytest.raises(HardwareError, match=r"policy2/scaling_max_freq: no such file"):
        open_backend(board)
    assert board.snapshot() == before


def test_missing_file_at_apply_undoes_the_call(tmp_path: Path) -> None:
    board = build_xavier_nx(tmp_path)
    with open_backend(board) as be:
        be.apply(Setting(5, 5, 5))
        board.path(f"{board.gpu}/max_freq").unlink()
        before = board.snapshot()
        with pytest.raises(HardwareError, match=r"max_freq: no such file.*changed nothing"):
            be.apply(Setting(0, 0, 0))
        assert board.snapshot() == before  # the CPU clusters and the GPU min written first were put back
        board.path(f"{board.gpu}/max_freq").write_text(f"{round(be.spec.gpu_freqs_hz[5])}\n")
    assert board.read_int(f"{board.gpu}/max_freq") == round(be.spec.gpu_freqs_hz[-1])  # restored on close


@pytest.mark.parametrize("how", ["permission", "directory"])
def test_unwritable_file_gives_a_clear_error_and_changes_nothing(tmp_path: Path, monkeypatch, how: str) -> None:
    board = build_xavier_nx(tmp_path)
    target = board.path(f"{board.gpu}/max_freq")
    with open_backend(board) as be:
        if how == "directory":
            target.unlink()
            target.mkdir()
        elif os.geteuid() == 0:  # root ignores chmod: refuse the write where the backend opens the file
            real_open = sysfs._os_open

            def refusing_open(path, flags, *args):
                if Path(path).resolve() == target.resolve():
                    raise PermissionError(13, "Permission denied", path)
                return real_open(path, flags, *args)

            monkeypatch.setattr(sysfs, "_os_open", refusing_open)
        else:
            target.chmod(0o444)
        before = board.snapshot()
        if how == "directory":
            with pytest.raises(HardwareError, match=r"max_freq: it is a directory"):
                be.apply(Setting(0, 0, 0))
        else:
            with pytest.raises(SysfsPermissionError, match=r"max_freq: permission denied.*root.*sudo.*read_only=True"):
                be.apply(Setting(0, 0, 0))
            with pytest.raises(PermissionError):
                be.apply(Setting(0, 0, 0))
        assert board.snapshot() == before
        assert board.policy(0, "scaling_governor") == "schedutil"


def test_dry_run_prints_and_writes_nothing(board: FakeBoard, capsys) -> None:
    before = board.snapshot()
    with open_backend(board, dry_run=True) as be:
        be.apply(Setting(0, 0, 0))
        out = capsys.readouterr().out
    assert board.snapshot() == before
    lines = out.strip().splitlines()
    assert all(line.startswith("[e4gym dry-run]") for line in lines)
    assert any("scaling_governor: schedutil → userspace" in line for line in lines)
    assert any(line.endswith(f"scaling_setspeed: <unsupported> → {round(be.spec.cpu_freqs_hz[0] / 1e3)} kHz")
               for line in lines)
    top, low = round(be.spec.gpu_freqs_hz[-1]), round(be.spec.gpu_freqs_hz[0])
    assert any("devfreq" in line and line.endswith(f"/max_freq: {top} → {low} Hz") for line in lines)
    assert capsys.readouterr().out == ""  # closing had nothing to restore


def test_read_only_never_writes(board: FakeBoard, monkeypatch) -> None:
    def no_writes(*args, **kw):
        raise AssertionError(f"read-only backend opened a file for writing: {args}")

    monkeypatch.setattr(sysfs, "_os_open", no_writes)
    before = board.snapshot()
    with open_backend(board, read_only=True, runner=SleepRunner(0.01)) as be:
        assert be.read_sensors().power_w > 0
        assert be.run(WORK).energy_j > 0
        with pytest.raises(SettingError, match="read_only"):
            be.apply(Setting(0, 0, 0))
    assert board.snapshot() == before


# ============================================================================================== thermal guard


def test_thermal_guard_restores_and_raises(tmp_path: Path) -> None:
    board = build_xavier_nx(tmp_path)
    before = board.snapshot()
    be = open_backend(board, thermal_limit_c=80.0)
    be.apply(Setting(0, 0, 0))
    board.set_temp("CPU-therm", 85.0)
    with pytest.raises(ThermalLimitError, match=r"CPU-therm.*85\.0 °C"):
        be.read_sensors()
    assert be.closed
    board.set_temp("CPU-therm", 44.5)
    assert board.snapshot() == before
    with pytest.raises(ThermalLimitError):
        be.apply(Setting(1, 1, 1))
    be.close()


def test_thermal_guard_fires_during_a_run(tmp_path: Path) -> None:
    board = build_nano(tmp_path)
    seen: dict[str, bool] = {}

    def heat_and_wait() -> None:
        board.set_temp("GPU-therm", 90.0)
        deadline = time.monotonic() + 60.0  # a hang guard only: the guard polls every 0.1 s
        while time.monotonic() < deadline and board.policy(0, "scaling_governor") != "schedutil":
            time.sleep(0.01)
        seen["restored"] = board.policy(0, "scaling_governor") == "schedutil"

    with open_backend(board, thermal_limit_c=75.0, runner=SleepRunner(0.0, start=heat_and_wait)) as be:
        be.apply(Setting(0, 0, 0))
        with pytest.raises(ThermalLimitError, match="GPU-therm"):
            be.run(WORK)
    assert seen["restored"]  # restored while the work was still running


def test_thermal_guard_ends_an_idle_wait(tmp_path: Path) -> None:
    """An hour's idle wait ends when the guard trips (it polls every 0.1 s); only the guard can end it."""
    board = build_agx_orin(tmp_path)
    raised: list[BaseException] = []

    def idle_an_hour(be: JetsonBackend) -> None:
        try:
            be.idle(3600.0)
        except BaseException as exc:  # checked below, in the test's thread
            raised.append(exc)

    with open_backend(board, thermal_limit_c=70.0) as be:
        be.apply(Setting(0, 0, 0))
        board.set_temp("tj-thermal", 72.0)
        waiter = threading.Thread(target=idle_an_hour, args=(be,), daemon=True)
        waiter.start()
        waiter.join(60.0)  # a hang guard, not a time bound: the guard ends the wait at its next poll
        assert not waiter.is_alive(), "idle(3600) hung: the thermal guard did not end the wait"
        assert be.closed  # the guard closed (and restored) the backend before the with block did
    (exc,) = raised
    assert isinstance(exc, ThermalLimitError) and "tj-thermal" in str(exc)


def test_no_rails_is_a_clear_error(tmp_path: Path) -> None:
    board = build_xavier_nx(tmp_path)
    shutil.rmtree(board.path("/sys/bus/i2c"))
    with pytest.raises(HardwareError, match=r"ina3221.*power_source='jtop'"):
        open_backend(board)


def test_emc_rate_respects_the_nvpmodel_cap(tmp_path: Path) -> None:
    board = build_xavier_nx(tmp_path)
    board.path("/sys/kernel/nvpmodel_emc_cap").mkdir(parents=True)
    board.write("/sys/kernel/nvpmodel_emc_cap/emc_iso_cap", 1600000000)
    with open_backend(board) as be:
        be.apply(Setting(0, 0, be.spec.n_emc - 1))
        assert board.read(f"{board.emc}/rate") == "1600000000"  # Hz, not the table's 1866000000


def test_without_write_permission_open_fails_early(tmp_path: Path, monkeypatch) -> None:
    board = build_agx_orin(tmp_path)
    before = board.snapshot()
    monkeypatch.setattr(sysfs, "_os_access", lambda path, mode: False)  # a user without root
    with pytest.raises(SysfsPermissionError, match=r"no write permission.*root.*sudo.*read_only=True"):
        open_backend(board)
    with open_backend(board, read_only=True) as be:
        assert be.read_sensors().power_w > 0
    with open_backend(board, dry_run=True):
        pass
    assert board.snapshot() == before


def test_an_ignored_signal_stays_ignored(tmp_path: Path) -> None:
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with open_backend(build_nano(tmp_path)):
            assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) is restore._on_signal
    finally:
        signal.signal(signal.SIGINT, old)


def test_known_gpu_paths_when_devfreq_class_is_missing(tmp_path: Path) -> None:
    board = build_nano(tmp_path)
    shutil.rmtree(board.path("/sys/class/devfreq"))
    with open_backend(board) as be:
        assert board_path(board, be.layout.gpu.path) == "/sys/devices/gpu.0/devfreq/57000000.gpu"
        be.apply(Setting(0, 5, 0))
        assert board.read(f"{board.gpu}/max_freq") == "460800000"


def test_per_core_cpufreq_folders_without_policies(tmp_path: Path) -> None:
    """Older kernels: no cpufreq/policyN, cpuN/cpufreq links to one folder per cluster."""
    board = build_nano(tmp_path)
    cpu = board.path("/sys/devices/system/cpu")
    for c in range(4):
        (cpu / f"cpu{c}/cpufreq").unlink()
    shutil.move(cpu / "cpufreq/policy0", cpu / "cpu0/cpufreq")
    (cpu / "cpufreq").rmdir()
    for c in range(1, 4):
        os.symlink("../cpu0/cpufreq", cpu / f"cpu{c}/cpufreq")
    with open_backend(board) as be:
        assert len(be.layout.cpu) == 1 and be.layout.cpu[0].cpus == (0, 1, 2, 3)
        be.apply(Setting(2, 0, 0))
        assert (cpu / "cpu0/cpufreq/scaling_setspeed").read_text().strip() == "307200"
    assert (cpu / "cpu0/cpufreq/scaling_governor").read_text().strip() == "schedutil"


def test_close_names_what_it_could_not_restore(tmp_path: Path) -> None:
    board = build_xavier_nx(tmp_path)
    be = open_backend(board)
    be.apply(Setting(0, 0, 0))
    target = board.path(f"{board.gpu}/max_freq")
    target.unlink()
    target.mkdir()  # the attribute cannot be written any more
    with pytest.raises(HardwareError, match=r"by hand: .*max_freq = 1109250000"):
        be.close()
    assert board.policy(0, "scaling_governor") == "schedutil"  # the rest was restored
    be.close()  # idempotent


# ============================================================================================== rails


RAIL_NAMES = {
    "jetson-nano": ("POM_5V_IN", "gpu", "cpu"),
    "xavier-nx": ("VDD_IN", "VDD_CPU_GPU_CV", "soc"),  # CPU and GPU share VDD_CPU_GPU_CV
    "agx-orin": ("VDD_GPU_SOC", "VDD_CPU_CV", "VIN_SYS_5V0", "VDDQ_VDD2_1V8AO"),
}


def test_canonical_rail_names() -> None:
    assert jetson.canonical_rail_names(["VDD_IN", "VDD_SYS_GPU", "VDD_SYS_CPU", "VDD_SYS_SOC", "VDD_SYS_DDR"]) == (
        "VDD_IN", "gpu", "cpu", "soc", "VDD_SYS_DDR")  # TX2
    assert jetson.canonical_rail_names(["GPU", "CPU", "SOC", "CV", "VDDRQ", "SYS5V"])[:3] == ("gpu", "cpu", "soc")
    assert jetson.canonical_rail_names(["VDD_CPU", "CPU"]) == ("cpu", "CPU")  # names stay unique
    assert "VDD_CPU_GPU_CV" in jetson.SHARED_RAILS


def test_measurements_and_readings_carry_the_rails(board: FakeBoard) -> None:
    names = RAIL_NAMES[board.device]
    with open_backend(board, runner=SleepRunner(0.05), sample_period_s=0.005) as be:
        assert be.rail_names == names and be.rail_labels == tuple(EXPECTED[board.device]["rails"])
        labels = be.rail_labels
        for i, label in enumerate(labels):
            board.set_rail(label, 1.0 + i)
        want = tuple(1.0 + i for i in range(len(labels)))
        s = be.read_sensors()
        assert s.rails_w == pytest.approx(want, abs=1e-3)
        for m in (be.run(WORK), be.idle(0.03)):
            assert m.rails_w == pytest.approx(want, abs=1e-3)
            assert list(m.rails(be.rail_names)) == list(names)
        assert "rails:" in be.describe()
        if board.device == "xavier-nx":
            assert "VDD_CPU_GPU_CV feeds cpu+gpu+cv" in be.describe()


def test_rails_are_averaged_over_the_window(tmp_path: Path) -> None:
    board = build_nano(tmp_path)
    board.set_rail("POM_5V_GPU", 1.0)
    runner = SleepRunner(0.3, halfway=lambda: board.set_rail("POM_5V_GPU", 3.0))
    with open_backend(board, runner=runner, sample_period_s=0.005) as be:
        m = be.run(WORK)
        t1, t2 = runner.parts
        gpu = m.rails(be.rail_names)["gpu"]
        assert gpu == pytest.approx((1.0 * t1 + 3.0 * t2) / (t1 + t2), rel=0.05)


def test_rails_through_fake_jtop(board: FakeBoard) -> None:
    client = FakeJtop(board)
    with JetsonBackend(sysfs_root=board.root, jtop_client=client) as be:
        assert set(be.rail_labels) == set(EXPECTED[board.device]["rails"])
        rail = EXPECTED[board.device]["rails"][-1]
        board.set_rail(rail, 3.0)
        assert be.read_sensors().rails(be.rail_labels)[rail] == pytest.approx(3.0)
        assert be.idle(0.02).rails(be.rail_labels)[rail] == pytest.approx(3.0)


# ============================================================================================== governors


def test_default_governors_write_nothing_and_report_the_kernels_clocks(board: FakeBoard, writes: list) -> None:
    before = board.snapshot()
    with open_backend(board, governors="default") as be:
        assert len(be._journal) == 0
        assert be.governors == {"cpu": "schedutil", "gpu": "nvhost_podgov", "emc": "default"}
        assert be.apply(Setting(0, 0, 0)) == 0.0  # the kernel's governors run every domain
        assert writes == []
        spec = be.spec
        pol = board.policies[0]  # the "kernel" moves the clocks
        board.write(f"{pol}/scaling_cur_freq", round(spec.cpu_freqs_hz[1] / 1e3))
        board.write(f"{board.gpu}/cur_freq", round(spec.gpu_freqs_hz[2]))
        m = be.idle(0.01)
        assert (m.cpu_hz, m.gpu_hz) == (spec.cpu_freqs_hz[1], spec.gpu_freqs_hz[2])
        assert be.levels[:2] == (1, 2)
        assert "governors: cpu schedutil, gpu nvhost_podgov, emc default" in be.describe()
    assert writes == []
    after = board.snapshot()
    assert {k for k in before if before[k] != after[k]} <= {board.policies[0].lstrip("/") + "/scaling_cur_freq",
                                                         board.gpu.lstrip("/") + "/cur_freq"}


def test_default_governors_on_a_read_only_backend(tmp_path: Path) -> None:
    board = build_xavier_nx(tmp_path)
    before = board.snapshot()
    with open_backend(board, read_only=True, governors="default") as be:
        assert be.apply(Setting(3, 3, 3)) == 0.0
    assert board.snapshot() == before
    with pytest.raises(ConfigError, match="read_only"):
        open_backend(board, read_only=True, governors={"cpu": "ondemand"})
    assert board.snapshot() == before


def test_a_named_governor_is_set_and_restored(tmp_path: Path, writes: list) -> None:
    board = build_xavier_nx(tmp_path)
    before = board.snapshot()
    with open_backend(board, governors={"cpu": "ondemand"}) as be:
        assert [board.policy(i, "scaling_governor") for i in range(3)] == ["ondemand"] * 3
        assert be.governors == {"cpu": "ondemand", "gpu": "userspace", "emc": "userspace"}
        n = len(writes)
        be.apply(Setting(0, 3, 2))  # only the GPU and the EMC follow apply()
        assert all("cpufreq" not in p for p, _ in writes[n:]) and len(writes) > n
        assert [board.policy(i, "scaling_governor") for i in range(3)] == ["ondemand"] * 3
        assert board.read_int(f"{board.gpu}/max_freq") == round(be.spec.gpu_freqs_hz[3])
    assert board.snapshot() == before  # byte for byte


def test_a_governor_the_kernel_lacks_is_pinned(tmp_path: Path) -> None:
    board = build_xavier_nx(tmp_path)  # its GPU devfreq offers no powersave
    before = board.snapshot()
    with open_backend(board, governors={"cpu": "schedutil", "gpu": "powersave"}) as be:
        assert be.governors["gpu"] == "powersave (pinned)"
        lo = round(be.spec.gpu_freqs_hz[0])
        assert board.read_int(f"{board.gpu}/min_freq") == board.read_int(f"{board.gpu}/max_freq") == lo
        be.apply(Setting(5, 14, 3))  # the GPU stays pinned, the CPU stays with schedutil
        assert board.read_int(f"{board.gpu}/max_freq") == lo
        assert board.policy(0, "scaling_governor") == "schedutil"
    assert board.snapshot() == before


def test_unknown_governor_lists_the_boards_and_changes_nothing(tmp_path: Path) -> None:
    from e4gym.errors import UnknownNameError

    board = build_xavier_nx(tmp_path)
    before = board.snapshot()
    with pytest.raises(UnknownNameError, match=r"gpu governors here: .*nvhost_podgov"):
        open_backend(board, governors={"gpu": "turbo"})
    with pytest.raises(UnknownNameError, match="domains"):
        open_backend(board, governors={"npu": "performance"})
    with pytest.raises(ConfigError, match="governors must be"):
        open_backend(board, governors="kernel")
    assert board.snapshot() == before


#: Quickstart policies run on the fake board in the test below: every kernel-governor baseline (finding 8) and the
#: oracles. Left out for time: best_static (its measured sweep runs every CPU × GPU pair on the board: minutes
#: with the CPU TorchRunner) and e4 / e4-layer (profiling runs on the board).
# E4 runs too (checked by hand: the whole quickstart, one seed, 2 frames, took 166 s on a fake Xavier NX with the
# CPU runner); best_static stands for the policies that measure their cost model on the board first.
QUICKSTART_ON_BOARD = ("performance", "powersave", "ondemand", "schedutil", "nvhost_podgov", "default", "oracle",
                       "oracle-strict", "best_static")


@pytest.mark.slow  # the quickstart benchmark on a fake board: about 27 s on 2 shared cores
def test_quickstart_runs_on_a_fake_board(tmp_path: Path) -> None:
    """``e4gym bench --config quickstart --backend jetson``: the governor baselines run on the board's governors."""

    import yaml

    from e4gym.bench import run_benchmark
    from e4gym.paths import config_dir

    config = yaml.safe_load((config_dir() / "experiments" / "quickstart.yaml").read_text())
    label = {p if isinstance(p, str) else p.get("label", p["name"]): p for p in config["policies"]}
    config["policies"] = [label[k] for k in QUICKSTART_ON_BOARD]
    config["seeds"] = [0]
    tree = tmp_path / "tree"
    board = build_xavier_nx(tree)
    before = board.snapshot()
    with board.kernel():  # current clocks follow what the backend writes
        res = run_benchmark(config, tmp_path / "out", jobs=1, frames=2, plots=False, tensorboard=False,
                            backend={"backend": "jetson",
                                     "backend_kwargs": {"sysfs_root": str(tree), "runner_device": "cpu"}})
    assert res.ok, [str(f) for f in res.failures]
    assert [r["frames"] for r in res.rows] == [2] * len(QUICKSTART_ON_BOARD)
    (bs,) = [r for r in res.rows if r["label"] == "best_static"]
    # Its sweep ran on the board (a coarse one: every 4th level, interpolated), as offline work.
    assert bs["offline_runs"] > 0 and bs["offline_s"] > 0
    after = board.snapshot()
    changed = {k for k in before if before[k] != after.get(k) and "cur_freq" not in k}
    assert not changed, sorted(changed)
