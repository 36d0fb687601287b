"""The uplink and radio models of the edge-cloud env (DVFO): traces, exact transfer times, the controller's estimate,
and Huang et al.'s radio power."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from e4gym.errors import ConfigError, UnknownNameError
from e4gym.hardware.link import (
    DEFAULT_RADIO,
    LTE_HUANG2012,
    WIFI_HUANG2012,
    BandwidthTrace,
    RadioPower,
    Uplink,
    constant_bandwidth,
    load_bandwidth_trace,
    radio_profile,
    serialisation_time_s,
    synthetic_bandwidth,
    transfer_time_s,
)

# Three segments: 1 Mbps on [0, 1) s (RTT 10 ms), 2 Mbps on [1, 3) s (RTT 20 ms), 4 Mbps on [3, 4) s (RTT 40 ms).
# One loop carries 1 + 4 + 4 = 9 Mbit.
STEPS = BandwidthTrace(np.array([0.0, 1.0, 3.0]), np.array([1e6, 2e6, 4e6]), np.array([0.01, 0.02, 0.04]), 4.0)


def bytes_of(bits: float) -> float:
    return bits / 8.0


# ------------------------------------------------------------------------------------------------- transfer time


@pytest.mark.parametrize(
    ("start_s", "bits", "serialisation_s", "rtt_s"),
    [
        (0.0, 0.5e6, 0.5, 0.01),  # inside the first segment
        (0.5, 0.5e6 + 2e6, 1.5, 0.02),  # 0.5 s at 1 Mbps, then 1 s at 2 Mbps
        (0.5, 0.5e6 + 4e6 + 2e6, 3.0, 0.04),  # across two boundaries: 0.5 + 2 + 0.5 s
        (2.0, 2e6 + 4e6 + 1e6, 3.0, 0.02),  # 1 s at 2, 1 s at 4, loops, 1 s at 1 Mbps; ends at 1.0 s (seg 1)
        (0.0, 1e6, 1.0, 0.02),  # ends exactly on a boundary: the RTT of the segment that begins there
        (3.5, 2e6 + 9e6 + 1e6, 5.5, 0.02),  # 0.5 s at 4 Mbps, a whole loop (4 s), then 1 s at 1 Mbps
    ],
)
def test_transfer_time_exact_across_segment_boundaries(
    start_s: float, bits: float, serialisation_s: float, rtt_s: float
) -> None:
    assert serialisation_time_s(STEPS, start_s, bytes_of(bits)) == pytest.approx(serialisation_s, rel=1e-12)
    assert transfer_time_s(STEPS, start_s, bytes_of(bits)) == pytest.approx(serialisation_s + rtt_s / 2, rel=1e-12)


def test_transfer_time_loops_past_the_end_of_the_trace() -> None:
    for k in (1, 2, 7, 1000):
        for start in (0.0, 0.25, 1.0, 2.9, 3.99):
            for bits in (1e3, 3e6, 20e6):
                later = transfer_time_s(STEPS, start + 4.0 * k, bytes_of(bits))
                assert later == pytest.approx(transfer_time_s(STEPS, start, bytes_of(bits)), rel=1e-9)
    # Ten loops' worth of bits from 0 s take exactly ten loops.
    assert serialisation_time_s(STEPS, 0.0, bytes_of(90e6)) == pytest.approx(40.0, rel=1e-12)


def test_transfer_time_monotone_in_bytes_and_fifo_in_start() -> None:
    trace = synthetic_bandwidth(3, 120.0)
    sizes = np.linspace(0, 5e6, 301)
    for start in (0.0, 17.3, 119.9, 500.0):
        times = [transfer_time_s(trace, start, n) for n in sizes]
        assert np.all(np.diff(times[1:]) > 0)  # strictly increasing once something is sent
        ser = [serialisation_time_s(trace, start, n) for n in sizes]
        assert np.all(np.diff(ser) >= 0)
    # Starting later never finishes serialising earlier (a FIFO pipe).
    starts = np.linspace(0, 240, 997)
    ends = [s + serialisation_time_s(trace, s, 200_000) for s in starts]
    assert np.all(np.diff(ends) >= -1e-9)


def test_zero_bytes_take_zero_time() -> None:
    assert transfer_time_s(STEPS, 1.7, 0) == 0.0
    assert serialisation_time_s(STEPS, 1.7, 0) == 0.0
    assert transfer_time_s(constant_bandwidth(1.0, rtt_ms=100.0), 0.0, 0) == 0.0  # no RTT/2 either


@pytest.mark.parametrize(("mbps", "rtt_ms", "n_bytes", "start_s"),
                         [(0.5, 0.0, 1, 0.0), (0.5, 30.0, 150_528, 3.3), (8.0, 20.0, 1e6, 1e5), (2.0, 5.0, 37, 0.9)])
def test_constant_trace_is_bytes_over_bandwidth_plus_half_rtt(
    mbps: float, rtt_ms: float, n_bytes: float, start_s: float
) -> None:
    trace = constant_bandwidth(mbps, rtt_ms=rtt_ms)
    expected = n_bytes * 8 / (mbps * 1e6) + rtt_ms / 1000 / 2
    assert transfer_time_s(trace, start_s, n_bytes) == pytest.approx(expected, rel=1e-12)


def test_bad_transfer_arguments() -> None:
    with pytest.raises(ConfigError, match="size"):
        transfer_time_s(STEPS, 0.0, -1)
    with pytest.raises(ConfigError, match="start"):
        transfer_time_s(STEPS, -0.1, 10)
    with pytest.raises(ConfigError, match="size"):
        serialisation_time_s(STEPS, 0.0, float("nan"))


# ------------------------------------------------------------------------------------------------------ traces


def test_trace_is_immutable_and_reads_the_true_link() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        STEPS.duration_s = 5.0  # type: ignore[misc]
    with pytest.raises(ValueError):
        STEPS.bandwidth_bps[0] = 1.0
    assert STEPS.bandwidth_at(0.5) == 1e6 and STEPS.bandwidth_at(1.0) == 2e6 and STEPS.bandwidth_at(7.5) == 4e6
    assert STEPS.rtt_at(4.2) == 0.01
    assert STEPS.mean_bandwidth_bps() == pytest.approx(9e6 / 4)
    trace = BandwidthTrace(np.array([0.0, 2.0]), np.array([1e6, 3e6]), 0.05, 3.0)  # one RTT for every segment
    assert list(trace.rtt_s) == [0.05, 0.05]


@pytest.mark.parametrize(
    ("times", "bw", "rtt", "duration", "match"),
    [
        ([], [], 0.0, 1.0, "at least one segment"),
        ([0.0, 1.0], [1e6], 0.0, 2.0, "one bandwidth"),
        ([0.5], [1e6], 0.0, 2.0, "start at 0"),
        ([0.0, 1.0, 1.0], [1e6, 1e6, 1e6], 0.0, 2.0, "strictly increasing"),
        ([0.0, 1.0], [1e6, 1e6], 0.0, 1.0, "duration_s"),
        ([0.0], [0.0], 0.0, 1.0, "> 0 bit/s"),
        ([0.0], [1e6], -0.01, 1.0, "RTTs"),
        ([0.0], [float("inf")], 0.0, 1.0, "finite"),
    ],
)
def test_bad_traces_are_refused(times: list, bw: list, rtt: float, duration: float, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        BandwidthTrace(np.array(times), np.array(bw), rtt, duration)


def write(tmp_path: Path, text: str, name: str = "trace.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_csv_loader_accepts_a_good_file(tmp_path: Path) -> None:
    path = write(tmp_path, "# an uplink trace\ntime_s,bandwidth_mbps,rtt_ms\n10,4.0,20\n11.5,0.8,35\n\n14,6.2,20\n")
    trace = load_bandwidth_trace(path)
    assert list(trace.times_s) == [0.0, 1.5, 4.0]  # shifted to start at 0
    assert list(trace.bandwidth_bps) == pytest.approx([4e6, 0.8e6, 6.2e6])
    assert list(trace.rtt_s) == pytest.approx([0.02, 0.035, 0.02])
    assert trace.duration_s == pytest.approx(6.5)  # the last row holds as long as the step before it
    # 1.5 s at 4 Mbps then 1 s at 0.8 Mbps; the last bit leaves in the 0.8 Mbps segment (RTT 35 ms).
    assert transfer_time_s(trace, 0.0, bytes_of(6e6 + 0.8e6)) == pytest.approx(2.5 + 0.0175)
    # Any column order; rtt_ms optional (then 0); one row is a constant trace.
    other = load_bandwidth_trace(write(tmp_path, "bandwidth_mbps,time_s\n2,0\n", "one.csv"))
    assert other.n_segments == 1 and list(other.rtt_s) == [0.0]
    assert transfer_time_s(other, 123.0, 250_000) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("text", "line", "what"),
    [
        ("", None, "is empty"),
        ("time_s,bandwidth_mbps\n", None, "no data rows"),
        ("time_s,rtt_ms\n0,20\n", 1, "missing column 'bandwidth_mbps'"),
        ("bandwidth_mbps\n3\n", 1, "missing column 'time_s'"),
        ("time_s,bandwidth_mbps,rtt\n0,1,20\n", 1, "unknown column"),
        ("time_s,bandwidth_mbps\n0,1\n1,fast\n", 3, "not a number"),
        ("time_s,bandwidth_mbps\n0,1\n1,-2\n", 3, "must be > 0"),
        ("time_s,bandwidth_mbps\n0,1\n1,2\n2,0\n", 4, "must be > 0"),
        ("time_s,bandwidth_mbps,rtt_ms\n0,1,20\n1,2,\n", 3, "missing value for 'rtt_ms'"),
        ("time_s,bandwidth_mbps,rtt_ms\n0,1,20\n1,2\n", 3, "2 values for 3 columns"),
        ("time_s,bandwidth_mbps\n0,1\n2,2\n2,3\n", 4, "does not increase"),
        ("time_s,bandwidth_mbps\n0,1\n2,2\n1,3\n", 4, "does not increase"),
        ("time_s,bandwidth_mbps\n0,nan\n", 2, "finite"),
        ("time_s,bandwidth_mbps,rtt_ms\n0,1,-5\n", 2, "RTT must be >= 0"),
    ],
)
def test_csv_loader_refuses_each_bad_case_naming_file_line_and_fix(
    tmp_path: Path, text: str, line: int | None, what: str
) -> None:
    path = write(tmp_path, text, "bad_uplink.csv")
    with pytest.raises(ConfigError) as info:
        load_bandwidth_trace(path)
    msg = str(info.value)
    assert "\n" not in msg and "bad_uplink.csv" in msg and what in msg and "(fix: " in msg
    if line is not None:
        assert f"line {line}:" in msg


def test_csv_loader_refuses_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nowhere\.csv: no such file \(fix: "):
        load_bandwidth_trace(tmp_path / "nowhere.csv")


@pytest.mark.parametrize(("lo", "hi"), [(0.5, 8.0), (1.0, 2.0), (3.0, 3.0)])
def test_synthetic_traces_stay_in_bounds(lo: float, hi: float) -> None:
    for seed in range(5):
        trace = synthetic_bandwidth(seed, 600.0, lo, hi)
        assert trace.duration_s == 600.0
        bw = trace.bandwidth_bps
        assert np.all(bw >= lo * 1e6) and np.all(bw <= hi * 1e6)
        if hi > lo:  # reflected at the bounds, not clipped onto them
            assert np.mean((bw == lo * 1e6) | (bw == hi * 1e6)) < 0.01
    wide = synthetic_bandwidth(0, 3600.0)
    assert wide.bandwidth_bps.min() < 1e6 and wide.bandwidth_bps.max() > 6e6  # it explores the range
    assert 600 < wide.n_segments < 3000  # about one level every 2 s


def test_synthetic_traces_are_reproducible_per_seed_and_differ_across_seeds() -> None:
    a, b, c = synthetic_bandwidth(7, 300.0), synthetic_bandwidth(7, 300.0), synthetic_bandwidth(8, 300.0)
    assert np.array_equal(a.times_s, b.times_s) and np.array_equal(a.bandwidth_bps, b.bandwidth_bps)
    assert not np.array_equal(a.bandwidth_bps[:10], c.bandwidth_bps[:10])
    g1, g2 = np.random.default_rng(11), np.random.default_rng(11)
    x, y = synthetic_bandwidth(g1, 60.0), synthetic_bandwidth(g2, 60.0)
    assert np.array_equal(x.bandwidth_bps, y.bandwidth_bps)
    assert not np.array_equal(synthetic_bandwidth(g1, 60.0).bandwidth_bps[:5], x.bandwidth_bps[:5])  # it advanced


def test_bad_synthetic_arguments() -> None:
    with pytest.raises(ConfigError, match="duration_s"):
        synthetic_bandwidth(0, 0.0)
    with pytest.raises(ConfigError, match="lo_mbps"):
        synthetic_bandwidth(0, 10.0, 8.0, 0.5)
    with pytest.raises(ConfigError, match="lo_mbps"):
        synthetic_bandwidth(0, 10.0, 0.0, 1.0)
    with pytest.raises(ConfigError, match="mean_hold_s"):
        synthetic_bandwidth(0, 10.0, mean_hold_s=0.0)


# ------------------------------------------------------------------------------------------------------- radio


def test_radio_energy_matches_huang_2012_by_hand() -> None:
    # WiFi: P = 283.17 mW/Mbps · 4 Mbps + 132.86 mW = 1265.54 mW, for 2 s.
    assert WIFI_HUANG2012.power_w(4e6) == pytest.approx(1.26554, rel=1e-12)
    assert WIFI_HUANG2012.energy_j(2.0, 4e6) == pytest.approx(2.53108, rel=1e-12)
    # LTE: P = 438.39 · 1 + 1288.04 = 1726.43 mW, for 0.5 s.
    assert LTE_HUANG2012.energy_j(0.5, 1e6) == pytest.approx(0.863215, rel=1e-12)
    assert LTE_HUANG2012.energy_j(0.0, 1e6) == 0.0
    # LTE's tail: 3 s of a 11.576 s tail, then a tail that runs out; WiFi models none.
    assert LTE_HUANG2012.tail_energy_j(3.0) == pytest.approx(1.060 * 3.0)
    assert LTE_HUANG2012.tail_energy_j(60.0) == pytest.approx(1.060 * 11.576)
    assert WIFI_HUANG2012.tail_energy_j(60.0) == 0.0
    assert radio_profile() is WIFI_HUANG2012 and DEFAULT_RADIO == "wifi" and radio_profile("lte") is LTE_HUANG2012
    with pytest.raises(UnknownNameError, match="radios"):
        radio_profile("5g")
    with pytest.raises(ConfigError, match="beta_w"):
        RadioPower("x", 0.1, -1.0)


def test_transfer_energy_integrates_the_linear_model_across_segments() -> None:
    up = Uplink(STEPS, "lte")
    t = up.send(0.5, bytes_of(0.5e6 + 4e6 + 2e6))  # 0.5 s at 1, 2 s at 2, 0.5 s at 4 Mbps
    # Segment by segment: Σ (α·Mbps_k + β)·Δt_k = α·Mbit + β·T.
    by_hand = (0.43839 * 1 + 1.28804) * 0.5 + (0.43839 * 2 + 1.28804) * 2.0 + (0.43839 * 4 + 1.28804) * 0.5
    assert t.energy_j == pytest.approx(by_hand, rel=1e-12)
    assert t.throughput_bps == pytest.approx(6.5e6 / 3.0)


# ------------------------------------------------------------------------------------------------------ uplink


def test_uplink_transfer_record_and_fifo_queue() -> None:
    up = Uplink(constant_bandwidth(1.0, rtt_ms=40.0))
    a = up.send(0.0, 125_000)  # 1 Mbit: 1 s on the link
    assert (a.tx_start_s, a.serialisation_s, a.arrival_s, a.latency_s, a.rtt_s) == pytest.approx(
        (0.0, 1.0, 1.02, 1.02, 0.04))
    b = up.send(0.25, 62_500)  # ready while `a` still sends: waits until 1 s
    assert b.tx_start_s == pytest.approx(1.0) and b.arrival_s == pytest.approx(1.52)
    assert b.latency_s == pytest.approx(1.27) and up.busy_until_s() == pytest.approx(1.5)
    z = up.send(9.0, 0)
    assert (z.serialisation_s, z.latency_s, z.energy_j, z.tail_j) == (0.0, 0.0, 0.0, 0.0)
    assert up.busy_until_s() == pytest.approx(1.5)  # nothing was sent


def test_uplink_charges_the_lte_tail_between_transfers() -> None:
    up = Uplink(constant_bandwidth(2.0), "lte")
    first = up.send(0.0, 250_000)  # 1 s
    assert first.tail_j == 0.0  # nothing before it
    second = up.send(4.0, 250_000)  # 3 s idle since the last bit: within the 11.576 s tail
    assert second.tail_j == pytest.approx(1.060 * 3.0)
    third = up.send(100.0, 250_000)  # the tail ran out
    assert third.tail_j == pytest.approx(1.060 * 11.576)
    assert up.pending_tail_j(102.0) == pytest.approx(1.060 * 1.0)
    assert Uplink(constant_bandwidth(2.0)).pending_tail_j(5.0) == 0.0
    wifi = Uplink(constant_bandwidth(2.0))
    wifi.send(0.0, 250_000)
    assert wifi.send(4.0, 250_000).tail_j == 0.0


def test_estimate_follows_measured_transfers_not_the_future() -> None:
    # 1 Mbps for 10 s, then 8 Mbps (or, in the twin, 0.5 Mbps); RTT 100 ms.
    fast = BandwidthTrace(np.array([0.0, 10.0]), np.array([1e6, 8e6]), 0.1, 1000.0)
    slow = BandwidthTrace(np.array([0.0, 10.0]), np.array([1e6, 0.5e6]), 0.1, 1000.0)
    ups = [Uplink(fast, prior_bps=3e6), Uplink(slow, prior_bps=3e6)]
    for up in ups:
        assert up.estimate_bps(0.0) == 3e6 and up.estimate_rtt_s(0.0) == pytest.approx(0.02)  # priors
        t = up.send(0.0, 12_500)  # 0.1 s; its ACK is back at 0.2 s
        assert up.estimate_bps(0.15) == 3e6  # not known yet
        assert up.estimate_bps(0.2) == pytest.approx(1e6) and up.estimate_rtt_s(0.2) == pytest.approx(0.1)
        assert t.throughput_bps == pytest.approx(1e6)
        for k in range(1, 9):
            up.send(float(k), 12_500)
    # At 9.9 s the link is about to change: both estimates are the measured past, identical, blind to the future.
    assert ups[0].estimate_bps(9.9) == ups[1].estimate_bps(9.9) == pytest.approx(1e6)
    # After transfers on the new bandwidth are acknowledged, each estimate follows its own link.
    for up in ups:
        for k in range(10, 20):
            up.send(float(k) + 0.5, 12_500)
    assert ups[0].estimate_bps(30.0) == pytest.approx(8e6)
    assert ups[1].estimate_bps(30.0) == pytest.approx(0.5e6)
    ups[0].reset()
    assert ups[0].estimate_bps(30.0) == 3e6 and ups[0].busy_until_s() == 0.0


def test_estimate_is_the_harmonic_mean_of_the_last_window() -> None:
    trace = BandwidthTrace(np.arange(6.0), np.array([1e6, 2e6, 4e6, 8e6, 2e6, 1e6]), 0.0, 6.0)
    up = Uplink(trace, window=3)
    for k in range(6):
        up.send(float(k), 1_000)  # a short transfer inside each segment measures that segment's bandwidth
    assert up.estimate_bps(5.5) == pytest.approx(3 / (1 / 8e6 + 1 / 2e6 + 1 / 1e6))
    assert up.estimate_bps(3.5) == pytest.approx(3 / (1 / 2e6 + 1 / 4e6 + 1 / 8e6))
    with pytest.raises(ConfigError, match="window"):
        Uplink(trace, window=0)
    with pytest.raises(ConfigError, match="BandwidthTrace"):
        Uplink("trace.csv")  # type: ignore[arg-type]


def test_the_running_estimate_equals_a_scan_of_the_history() -> None:
    """The estimate kept up to date as queries move forward equals the plain scan of the kept history, bit for
    bit, through congestion (more unacknowledged transfers than the history keeps) and queries back in time."""
    rng = np.random.default_rng(1)
    for trial in range(12):
        up = Uplink(synthetic_bandwidth(trial, 60.0))
        t = 0.0
        for _ in range(300):
            t += rng.exponential(0.03)
            up.send(t, float(rng.integers(1, 40000)))
            q = max(t + rng.uniform(-0.05, 0.05), 0.0)
            rates = up._recent(q, 1)
            scan = len(rates) / sum(1.0 / r for r in rates) if rates else up.prior_bps
            assert up.estimate_bps(q) == scan
