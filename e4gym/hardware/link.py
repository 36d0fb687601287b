"""The edge's uplink to a cloud server and the edge radio's power: the replaceable parts of the edge-cloud env (DVFO).

DVFO (Zhang et al., IEEE TMC 2024) offloads part of a DNN's feature maps from a Jetson to a cloud server over an
uplink of 0.5–8 Mbps, shaped with Linux ``trickle`` in the paper. This module models that uplink:

- :class:`BandwidthTrace`: piecewise-constant uplink bandwidth (bit/s) over time (s), with a round-trip time (s),
  constant or per segment. A trace **loops**: time ``t`` past its end reads the trace at ``t mod duration_s``.
  Made by :func:`load_bandwidth_trace` (a user CSV), :func:`synthetic_bandwidth` (a seeded random process) or
  :func:`constant_bandwidth`.
- :func:`transfer_time_s` / :func:`serialisation_time_s`: the exact time to push ``n`` bytes through the trace
  from a start time, integrating across segment boundaries (and loops).
- :class:`Uplink`: a trace, a radio and what a controller on the board can observe, the harmonic mean of the
  throughput it measured on its last transfers (:meth:`Uplink.estimate_bps`), never the trace's future.
- :class:`RadioPower`: the radio's power from Huang et al.'s linear model (MobiSys 2012), WiFi (default) and LTE
  profiles, with LTE's tail.

**What the transfer time includes.** ``transfer_time_s(trace, t, n)`` is the time from ``t`` until the last byte
reaches the server: *serialisation* (the ``8·n`` bits pushed at the trace's bandwidth, segment by segment) plus
*one-way propagation*, half the RTT in effect when the last bit leaves the board. The link carries application
payload at exactly the trace's bandwidth: no TCP slow start, no header overhead, no loss or retransmission (the
bandwidth of a trace is taken as goodput, as ``trickle`` shapes it). The result's way back (the cloud's output, a
few bytes) is the caller's: add ``rtt_s / 2`` (:attr:`Transfer.rtt_s`). Zero bytes take zero time: nothing is sent.

Every figure here that no paper gives is an assumption, named as such where it is defined and listed in
``docs/assumptions.md``.
"""

from __future__ import annotations

import bisect
import csv
import math
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from e4gym.errors import ConfigError, UnknownNameError

# ----------------------------------------------------------------------------------------------------------------
# Assumptions (docs/assumptions.md, the "Edge-cloud uplink" and "Edge radio power" rows)
# ----------------------------------------------------------------------------------------------------------------

#: DVFO's uplink range (CALIBRATION.md, DVFO: 0.5–8 Mbps shaped with ``trickle``): the synthetic traces' bounds.
DVFO_LO_MBPS = 0.5
DVFO_HI_MBPS = 8.0
#: ASSUMPTION: mean holding time (s) of one bandwidth level in :func:`synthetic_bandwidth` (exponentially
#: distributed: bandwidth changes every few seconds, as a cellular or contended WiFi uplink does).
SYNTH_MEAN_HOLD_S = 2.0
#: ASSUMPTION: standard deviation of one step of the random walk in ln(bandwidth) (a step multiplies the bandwidth
#: by about e^±0.5, i.e. ×1.65 or ÷1.65; crossing 0.5–8 Mbps takes some 30 steps, about a minute).
SYNTH_LOG_STEP_SIGMA = 0.5
#: ASSUMPTION: round-trip time (ms) of the synthetic traces. DVFO does not report its RTT; 20 ms is a metropolitan
#: edge-to-cloud path (the paper shapes bandwidth only, ``trickle`` adds no delay).
SYNTH_RTT_MS = 20.0
#: ASSUMPTION: transfers over which :meth:`Uplink.estimate_bps` takes its harmonic mean (the estimate robust
#: adaptive-bitrate video players use on past chunk throughputs).
ESTIMATE_WINDOW = 5
#: ASSUMPTION: the uplink estimate before any transfer has been measured (bit/s): 2 Mbps, the geometric middle of
#: DVFO's 0.5–8 Mbps. And the RTT estimate before any transfer (s).
ESTIMATE_PRIOR_BPS = 2.0e6
ESTIMATE_PRIOR_RTT_S = SYNTH_RTT_MS / 1000.0

#: Columns of a bandwidth-trace CSV (:func:`load_bandwidth_trace`); ``rtt_ms`` is optional.
_INF = math.inf
CSV_COLUMNS = ("time_s", "bandwidth_mbps", "rtt_ms")


# ----------------------------------------------------------------------------------------------------------------
# Bandwidth traces
# ----------------------------------------------------------------------------------------------------------------


def _readonly(values: np.ndarray) -> np.ndarray:
    values = np.array(values, dtype=np.float64)  # a copy: the trace owns its arrays
    values.flags.writeable = False
    return values


@dataclass(frozen=True, eq=False)
class BandwidthTrace:
    """Piecewise-constant uplink bandwidth over time, with a round-trip time; immutable; loops.

    Segment ``k`` holds ``bandwidth_bps[k]`` and ``rtt_s[k]`` on ``[times_s[k], times_s[k+1])``, the last one up to
    ``duration_s``. ``times_s[0]`` is 0. When an episode outlasts the trace the trace **loops**: time ``t`` reads
    the trace at ``t mod duration_s``, so a trace of any length serves any episode (a short trace repeats itself;
    give one at least as long as an episode for no repetition).

    Attributes:
        times_s: segment start times (s), strictly increasing from 0; shape ``(n,)``, read-only.
        bandwidth_bps: bandwidth of each segment (bit/s), all > 0; shape ``(n,)``, read-only.
        rtt_s: round-trip time of each segment (s), all >= 0; a scalar is broadcast to every segment.
        duration_s: length of one loop of the trace (s), > ``times_s[-1]``.
    """

    times_s: np.ndarray
    bandwidth_bps: np.ndarray
    rtt_s: np.ndarray
    duration_s: float
    # Private caches for the per-frame fast path (Python lists: bisect on them costs about 0.1 µs).
    _t: list[float] = field(init=False, repr=False)
    _bw: list[float] = field(init=False, repr=False)
    _rtt: list[float] = field(init=False, repr=False)
    _cum: list[float] = field(init=False, repr=False)
    _loop_bits: float = field(init=False, repr=False)

    def __post_init__(self) -> None:
        t = np.asarray(self.times_s, dtype=np.float64).reshape(-1)
        bw = np.asarray(self.bandwidth_bps, dtype=np.float64).reshape(-1)
        rtt = np.asarray(self.rtt_s, dtype=np.float64)
        duration = float(self.duration_s)
        if t.size == 0:
            raise ConfigError("a bandwidth trace needs at least one segment")
        if rtt.size == 1:
            rtt = np.full(t.shape, float(rtt.reshape(-1)[0]))
        if bw.shape != t.shape or rtt.shape != t.shape:
            raise ConfigError(
                f"bandwidth trace: times_s has {t.size} entries but bandwidth_bps {bw.size} and rtt_s {rtt.size}; "
                "give one bandwidth (and one RTT, or a single RTT) per segment"
            )
        if not (np.all(np.isfinite(t)) and np.all(np.isfinite(bw)) and np.all(np.isfinite(rtt))):
            raise ConfigError("bandwidth trace: times, bandwidths and RTTs must be finite numbers")
        if t[0] != 0.0:
            raise ConfigError(f"bandwidth trace: the first segment must start at 0 s, not {t[0]} s")
        if np.any(np.diff(t) <= 0):
            raise ConfigError("bandwidth trace: segment start times must be strictly increasing")
        if not (math.isfinite(duration) and duration > t[-1]):
            raise ConfigError(
                f"bandwidth trace: duration_s ({duration}) must be finite and exceed the last segment's start "
                f"({t[-1]} s)"
            )
        if np.any(bw <= 0):
            raise ConfigError("bandwidth trace: every bandwidth must be > 0 bit/s (a zero-bandwidth link never "
                              "delivers; use a small positive bandwidth for an outage)")
        if np.any(rtt < 0):
            raise ConfigError("bandwidth trace: RTTs must be >= 0 s")
        set_ = object.__setattr__
        set_(self, "times_s", _readonly(t))
        set_(self, "bandwidth_bps", _readonly(bw))
        set_(self, "rtt_s", _readonly(rtt))
        set_(self, "duration_s", duration)
        lengths = np.diff(np.append(t, duration))
        cum = np.concatenate(([0.0], np.cumsum(bw * lengths)))
        set_(self, "_t", t.tolist())
        set_(self, "_bw", bw.tolist())
        set_(self, "_rtt", rtt.tolist())
        set_(self, "_cum", cum[:-1].tolist())
        set_(self, "_loop_bits", float(cum[-1]))

    @property
    def n_segments(self) -> int:
        """Number of constant-bandwidth segments in one loop."""
        return len(self._t)

    def _segment(self, phase_s: float) -> int:
        """Index of the segment holding in-loop time ``phase_s`` (in ``[0, duration_s)``)."""
        return bisect.bisect_right(self._t, phase_s) - 1

    def bandwidth_at(self, t_s: float) -> float:
        """The bandwidth (bit/s) in effect at time ``t_s`` (s, >= 0; the trace loops). This is the *true* link
        state: a controller must not read it (it sees :meth:`Uplink.estimate_bps`)."""
        return self._bw[self._segment(float(t_s) % self.duration_s)]

    def rtt_at(self, t_s: float) -> float:
        """The round-trip time (s) in effect at time ``t_s`` (s, >= 0; the trace loops)."""
        return self._rtt[self._segment(float(t_s) % self.duration_s)]

    def mean_bandwidth_bps(self) -> float:
        """Time-averaged bandwidth of one loop (bit/s)."""
        return self._loop_bits / self.duration_s


def constant_bandwidth(mbps: float, rtt_ms: float = 0.0, duration_s: float = 1.0) -> BandwidthTrace:
    """A trace of one constant bandwidth (for tests, and for a link shaped to one rate with ``tc``/``trickle``).

    Args:
        mbps: bandwidth (Mbit/s, 10^6 bit/s), > 0.
        rtt_ms: round-trip time (ms), >= 0.
        duration_s: loop length (s); irrelevant to the results of a constant trace.
    """
    return BandwidthTrace(np.zeros(1), np.array([float(mbps) * 1e6]), float(rtt_ms) / 1000.0, float(duration_s))


def _fold(x: float, a: float, b: float) -> float:
    """Reflect ``x`` into ``[a, b]`` at both bounds (the walk bounces off the walls)."""
    w = b - a
    if w <= 0:
        return a
    y = (x - a) % (2.0 * w)
    return a + (2.0 * w - y if y > w else y)


def synthetic_bandwidth(
    seed: int | np.random.Generator,
    duration_s: float,
    lo_mbps: float = DVFO_LO_MBPS,
    hi_mbps: float = DVFO_HI_MBPS,
    *,
    mean_hold_s: float = SYNTH_MEAN_HOLD_S,
    log_step_sigma: float = SYNTH_LOG_STEP_SIGMA,
    rtt_ms: float = SYNTH_RTT_MS,
) -> BandwidthTrace:
    """A reproducible synthetic uplink trace inside ``[lo_mbps, hi_mbps]`` (the same seed gives the same trace).

    The process (every parameter an ASSUMPTION, see ``docs/assumptions.md``): a continuous-time Markov jump
    process on ln(bandwidth). The first level is drawn uniformly in ``[ln lo, ln hi]``; each level holds for an
    exponentially distributed time of mean ``mean_hold_s``; the next level is the previous one plus a Gaussian step
    of standard deviation ``log_step_sigma``, reflected at ``ln lo`` and ``ln hi`` (so every level stays inside the
    bounds). The RTT is constant, ``rtt_ms``. The last segment is cut at ``duration_s``; past it the trace loops.

    Args:
        seed: an integer seed, or a :class:`numpy.random.Generator` to draw from (it advances).
        duration_s: length of the trace (s), > 0.
        lo_mbps, hi_mbps: bounds of the bandwidth (Mbit/s), ``0 < lo_mbps <= hi_mbps``; DVFO's 0.5–8 by default.
        mean_hold_s: mean holding time of one level (s), > 0.
        log_step_sigma: standard deviation of a step in ln(bandwidth) (dimensionless), >= 0.
        rtt_ms: round-trip time (ms), >= 0.
    """
    if not (math.isfinite(duration_s) and duration_s > 0):
        raise ConfigError(f"synthetic_bandwidth: duration_s must be a finite number > 0 s, got {duration_s}")
    if not (0 < lo_mbps <= hi_mbps and math.isfinite(hi_mbps)):
        raise ConfigError(f"synthetic_bandwidth: need 0 < lo_mbps <= hi_mbps (finite), got {lo_mbps}, {hi_mbps}")
    if not (math.isfinite(mean_hold_s) and mean_hold_s > 0):
        raise ConfigError(f"synthetic_bandwidth: mean_hold_s must be > 0 s, got {mean_hold_s}")
    if not (math.isfinite(log_step_sigma) and log_step_sigma >= 0):
        raise ConfigError(f"synthetic_bandwidth: log_step_sigma must be >= 0, got {log_step_sigma}")
    if not (math.isfinite(rtt_ms) and rtt_ms >= 0):
        raise ConfigError(f"synthetic_bandwidth: rtt_ms must be >= 0 ms, got {rtt_ms}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    a, b = math.log(lo_mbps), math.log(hi_mbps)
    holds: list[np.ndarray] = []
    total = 0.0
    while total < duration_s:  # draw holding times in batches until they cover the duration
        batch = rng.exponential(mean_hold_s, size=max(16, int(2 * (duration_s - total) / mean_hold_s) + 1))
        holds.append(batch)
        total += float(batch.sum())
    hold = np.concatenate(holds)
    starts = np.concatenate(([0.0], np.cumsum(hold)[:-1]))
    n = int(np.searchsorted(starts, duration_s, side="left"))  # segments starting before the end
    starts = starts[:n]
    steps = rng.normal(0.0, log_step_sigma, size=n)
    steps[0] = rng.uniform(a, b) if b > a else a
    # A reflected walk, step by step (reflection does not commute with the cumulative sum).
    level = np.empty(n)
    x = float(steps[0])
    level[0] = x
    for i in range(1, n):
        x = _fold(x + float(steps[i]), a, b)
        level[i] = x
    mbps = np.clip(np.exp(level), lo_mbps, hi_mbps)  # exp(log) may round a hair outside the bounds
    return BandwidthTrace(starts, mbps * 1e6, float(rtt_ms) / 1000.0, float(duration_s))


def _bad(path: Path, line: int | None, what: str, fix: str) -> ConfigError:
    where = f"{path}, line {line}" if line is not None else f"{path}"
    return ConfigError(f"{where}: {what} (fix: {fix})")


def load_bandwidth_trace(path: str | Path) -> BandwidthTrace:
    """Load an uplink trace from a CSV file.

    Format: a header line naming the columns, then one row per segment, in any column order::

        time_s,bandwidth_mbps,rtt_ms
        0,4.0,20
        1.5,0.8,35
        4,6.2,20

    - ``time_s`` (required): the time (s) from which the row's bandwidth holds, strictly increasing. The trace is
      shifted so that its first row starts at 0 s.
    - ``bandwidth_mbps`` (required): the uplink bandwidth (Mbit/s, 10^6 bit/s), > 0, taken as payload goodput.
    - ``rtt_ms`` (optional): the round-trip time (ms), >= 0; without the column the RTT is 0 (add it yourself).

    Each row holds until the next row's time; the last row holds for as long as the step before it (a trace
    sampled every second lasts one second per row), or 1 s in a one-row file. The trace loops past its end. Blank
    lines and lines starting with ``#`` are skipped; other columns are refused (a misspelt ``rtt_ms`` would be
    silently lost). Any fault raises :class:`ConfigError` naming the file, the line and the fix.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise _bad(path, None, "no such file", "check the path of the bandwidth trace") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise _bad(path, None, f"cannot be read ({exc})", "give a readable UTF-8 CSV file") from None
    rows = [
        (n, row)
        for n, row in enumerate(csv.reader(text.splitlines()), start=1)
        if row and any(c.strip() for c in row) and not row[0].lstrip().startswith("#")
    ]
    if not rows:
        raise _bad(path, None, "is empty", "write a header 'time_s,bandwidth_mbps[,rtt_ms]' and one row per segment")
    header_line, header = rows[0]
    names = [c.strip() for c in header]
    unknown = [c for c in names if c not in CSV_COLUMNS]
    if unknown:
        raise _bad(path, header_line, f"unknown column(s) {unknown}", f"use only the columns {list(CSV_COLUMNS)}")
    for required in ("time_s", "bandwidth_mbps"):
        if required not in names:
            raise _bad(path, header_line, f"missing column '{required}' (header: {names})",
                       "write a header 'time_s,bandwidth_mbps[,rtt_ms]'")
    if len(set(names)) != len(names):
        raise _bad(path, header_line, f"a column appears twice (header: {names})", "name each column once")
    data = rows[1:]
    if not data:
        raise _bad(path, None, "has a header but no data rows", "add one row per constant-bandwidth segment")
    col = {name: i for i, name in enumerate(names)}
    values: dict[str, list[float]] = {name: [] for name in names}
    lines: list[int] = []
    for line, row in data:
        if len(row) != len(names):
            raise _bad(path, line, f"has {len(row)} values for {len(names)} columns {names}",
                       "give one value per column, no missing or extra cells")
        for name in names:
            cell = row[col[name]].strip()
            if cell == "":
                raise _bad(path, line, f"missing value for '{name}'", "fill in the cell or remove the row")
            try:
                v = float(cell)
            except ValueError:
                raise _bad(path, line, f"'{name}' is not a number: {cell!r}", "write a plain decimal number") from None
            if not math.isfinite(v):
                raise _bad(path, line, f"'{name}' is {cell!r}", "write a finite number")
            values[name].append(v)
        lines.append(line)
    t = values["time_s"]
    bw = values["bandwidth_mbps"]
    rtt = values.get("rtt_ms", [0.0] * len(t))
    for i, line in enumerate(lines):
        if i and t[i] <= t[i - 1]:
            raise _bad(path, line, f"time_s {t[i]} does not increase (previous row: {t[i - 1]})",
                       "sort the rows by time and remove duplicate times")
        if bw[i] <= 0:
            raise _bad(path, line, f"bandwidth_mbps is {bw[i]}; a bandwidth must be > 0",
                       "correct the value (a short outage is a small positive bandwidth) or remove the row")
        if rtt[i] < 0:
            raise _bad(path, line, f"rtt_ms is {rtt[i]}; an RTT must be >= 0", "correct the value")
    times = np.asarray(t) - t[0]
    last_step = float(times[-1] - times[-2]) if len(times) > 1 else 1.0
    return BandwidthTrace(times, np.asarray(bw) * 1e6, np.asarray(rtt) / 1000.0, float(times[-1] + last_step))


# ----------------------------------------------------------------------------------------------------------------
# Transfer time
# ----------------------------------------------------------------------------------------------------------------


def _check_transfer(start_s: float, n_bytes: float) -> None:
    if not (start_s >= 0 and math.isfinite(start_s)):
        raise ConfigError(f"transfer start time must be a finite number >= 0 s, got {start_s}")
    if not (n_bytes >= 0 and math.isfinite(n_bytes)):
        raise ConfigError(f"transfer size must be a finite number >= 0 bytes, got {n_bytes}")


def _serialise(trace: BandwidthTrace, start_s: float, n_bytes: float) -> tuple[float, float]:
    """(serialisation time (s), RTT (s) in effect when the last bit leaves) for ``n_bytes > 0``."""
    dur = trace.duration_s
    phase = start_s % dur
    k = bisect.bisect_right(trace._t, phase) - 1
    # Bits the link could have carried from the start of this loop to `phase`, plus the payload.
    target = trace._cum[k] + trace._bw[k] * (phase - trace._t[k]) + 8.0 * n_bytes
    full, rem = divmod(target, trace._loop_bits)
    j = bisect.bisect_right(trace._cum, rem) - 1
    end_phase = trace._t[j] + (rem - trace._cum[j]) / trace._bw[j]
    if end_phase >= (trace._t[j + 1] if j + 1 < len(trace._t) else dur):  # rounding at a boundary
        j, end_phase = (j + 1, trace._t[j + 1]) if j + 1 < len(trace._t) else (0, dur)
    return full * dur + end_phase - phase, trace._rtt[j]


def serialisation_time_s(trace: BandwidthTrace, start_s: float, n_bytes: float) -> float:
    """Time (s) to push ``n_bytes`` (bytes) onto the link from ``start_s`` (s): the exact integral of the trace's
    piecewise-constant bandwidth across segment boundaries and loops. No propagation delay; 0 bytes → 0 s."""
    start_s, n_bytes = float(start_s), float(n_bytes)
    _check_transfer(start_s, n_bytes)
    return 0.0 if n_bytes == 0 else _serialise(trace, start_s, n_bytes)[0]


def transfer_time_s(trace: BandwidthTrace, start_s: float, n_bytes: float) -> float:
    """Time (s) from ``start_s`` (s) until the last of ``n_bytes`` (bytes) reaches the server.

    = serialisation (:func:`serialisation_time_s`) + one-way propagation, ``rtt / 2`` with the RTT of the segment
    in effect at the instant the last bit leaves the board (at a segment boundary, the segment that begins there).
    The way back of the cloud's result is not included. 0 bytes → 0 s (nothing is sent, no propagation).
    Costs a few µs (two bisections; no NumPy in the path).
    """
    start_s, n_bytes = float(start_s), float(n_bytes)
    _check_transfer(start_s, n_bytes)
    if n_bytes == 0:
        return 0.0
    ser, rtt = _serialise(trace, start_s, n_bytes)
    return ser + 0.5 * rtt


# ----------------------------------------------------------------------------------------------------------------
# Radio power (Huang et al., MobiSys 2012)
# ----------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RadioPower:
    """The edge radio's power while it sends, after Huang et al.'s linear model, and its tail after a transfer.

    Huang, Qian, Gerber, Mao, Sen, Spatscheck, "A Close Examination of Performance and Power Characteristics of
    4G LTE Networks", MobiSys 2012: during a transfer, ``P = α_u · t_u + α_d · t_d + β`` (mW), ``t_u`` / ``t_d``
    the uplink / downlink throughput (Mbit/s). Only the uplink term is modelled here (the cloud's result is a few
    bytes: ``α_d · t_d`` ≈ 0). The *tail*: after its last packet the radio stays in its high-power state for
    ``tail_s`` seconds at ``tail_power_w`` before it demotes; a transfer that starts within the tail cuts it
    short. Promotion delay and energy (the first transfer after a demotion) are not modelled.

    Attributes:
        name: profile name ("wifi", "lte").
        alpha_w_per_mbps: ``α_u``, uplink power per throughput (W per Mbit/s).
        beta_w: ``β``, base power while transferring (W).
        tail_s: tail length (s); 0 = no tail modelled.
        tail_power_w: power during the tail (W).
        source: where the coefficients come from.
    """

    name: str
    alpha_w_per_mbps: float
    beta_w: float
    tail_s: float = 0.0
    tail_power_w: float = 0.0
    source: str = ""

    def __post_init__(self) -> None:
        for label in ("alpha_w_per_mbps", "beta_w", "tail_s", "tail_power_w"):
            v = getattr(self, label)
            if not (math.isfinite(v) and v >= 0):
                raise ConfigError(f"radio '{self.name}': {label} must be a finite number >= 0, got {v}")

    def power_w(self, throughput_bps: float) -> float:
        """Power (W) while sending at ``throughput_bps`` (bit/s): ``α_u · Mbps + β``."""
        return self.alpha_w_per_mbps * (float(throughput_bps) / 1e6) + self.beta_w

    def energy_j(self, tx_s: float, throughput_bps: float) -> float:
        """Energy (J) of sending for ``tx_s`` (s) at an average ``throughput_bps`` (bit/s).

        With the average throughput = bits sent / ``tx_s``, this is exactly the integral of the linear model over a
        transfer whose throughput varies (``α_u`` multiplies the bits, ``β`` the time): ``α_u · Mbit + β · tx_s``.
        0 s → 0 J.
        """
        if tx_s <= 0:
            return 0.0
        return self.power_w(throughput_bps) * float(tx_s)

    def tail_energy_j(self, idle_s: float) -> float:
        """Energy (J) of the tail in an idle gap of ``idle_s`` (s) after a transfer: ``tail_power_w ·
        min(idle_s, tail_s)`` (the tail runs out, or the next transfer cuts it short). 0 without a tail."""
        return self.tail_power_w * min(max(float(idle_s), 0.0), self.tail_s)


HUANG_2012 = (
    "Huang et al., 'A Close Examination of Performance and Power Characteristics of 4G LTE Networks', MobiSys 2012: "
    "data-transfer power model (Table 4: alpha_u, beta) and LTE tail timer (Table 3)"
)

#: WiFi: Huang et al. 2012, Table 4 (data-transfer power model), α_u = 283.17 mW/Mbps, β = 132.86 mW. No tail
#: modelled: WiFi's tail is short (a fraction of a second in Huang et al.), ASSUMPTION: negligible next to the
#: board's own power, and the board's measured idle power includes its associated WiFi interface.
WIFI_HUANG2012 = RadioPower("wifi", alpha_w_per_mbps=0.28317, beta_w=0.13286, source=HUANG_2012)
#: LTE: Huang et al. 2012, Table 4, α_u = 438.39 mW/Mbps, β = 1288.04 mW; Table 3, tail timer T_tail = 11.576 s.
#: The tail power, 1.060 W, is Table 3's "LTE tail base" as recalled: UNVERIFIED (no stored public copy showing it
#: was found), an assumption until checked against the paper.
LTE_HUANG2012 = RadioPower(
    "lte", alpha_w_per_mbps=0.43839, beta_w=1.28804, tail_s=11.576, tail_power_w=1.060, source=HUANG_2012
)
#: The radio profiles by name.
RADIO_PROFILES: dict[str, RadioPower] = {"wifi": WIFI_HUANG2012, "lte": LTE_HUANG2012}
#: ASSUMPTION: the default radio is WiFi. Jetson dev kits connect by WiFi (M.2 card) or Ethernet, and DVFO's
#: testbed shapes a LAN link with ``trickle``; none has an LTE modem unless one is added.
DEFAULT_RADIO = "wifi"


def radio_profile(name: str = DEFAULT_RADIO) -> RadioPower:
    """The :class:`RadioPower` profile ``name`` ("wifi" — the default — or "lte")."""
    try:
        return RADIO_PROFILES[name]
    except KeyError:
        raise UnknownNameError(f"unknown radio '{name}'; radios: {sorted(RADIO_PROFILES)}") from None


# ----------------------------------------------------------------------------------------------------------------
# The uplink a controller sees
# ----------------------------------------------------------------------------------------------------------------


class Transfer(NamedTuple):
    """One transfer over an :class:`Uplink` (times in s from the episode start, energies in J).

    Attributes:
        start_s: when the data was ready to send.
        tx_start_s: when its first bit left (later than ``start_s`` if the previous transfer was still sending).
        serialisation_s: time on the link, from ``tx_start_s`` to the last bit out.
        arrival_s: when the last byte reached the server (``tx_start_s + serialisation_s + rtt_s / 2``).
        latency_s: ``arrival_s - start_s`` (queueing + serialisation + one-way propagation).
        n_bytes: payload (bytes).
        throughput_bps: measured average throughput, ``8 · n_bytes / serialisation_s`` (bit/s); 0 for 0 bytes.
        rtt_s: the RTT in effect when the last bit left (the result's way back takes ``rtt_s / 2``).
        energy_j: the radio's energy while sending (:meth:`RadioPower.energy_j`).
        tail_j: the radio's tail energy in the idle gap since the previous transfer's last bit.
    """

    start_s: float
    tx_start_s: float
    serialisation_s: float
    arrival_s: float
    latency_s: float
    n_bytes: float
    throughput_bps: float
    rtt_s: float
    energy_j: float
    tail_j: float


class Uplink:
    """An uplink: a :class:`BandwidthTrace`, a :class:`RadioPower`, and what a controller on the board can observe.

    :meth:`send` carries one transfer. The link is one FIFO pipe: a transfer that is ready while the previous one
    is still sending waits for it. The board measures each transfer's throughput, ``8 · bytes / serialisation
    time`` (what a socket's delivery-rate estimate reports, e.g. Linux ``tcpi_delivery_rate``), and its RTT; a
    measurement becomes known when the last byte's ACK is back, one RTT after the last bit left.
    :meth:`estimate_bps` is the harmonic mean of the last ``window`` known throughputs (``prior_bps`` before any):
    the past, never the trace's future. A policy must read only the estimates; :attr:`trace` is the true link.

    Args:
        trace: the true uplink bandwidth over time.
        radio: the edge radio (a profile name or a :class:`RadioPower`); WiFi by default (an ASSUMPTION).
        window: transfers in the harmonic mean (ASSUMPTION: 5).
        prior_bps: the estimate before any measurement (bit/s; ASSUMPTION: 2 Mbps).
        prior_rtt_s: the RTT estimate before any measurement (s; ASSUMPTION: 20 ms).
    """

    #: Measurements kept (enough for the window even when the latest ones are not yet known).
    HISTORY = 64

    def __init__(
        self,
        trace: BandwidthTrace,
        radio: str | RadioPower = DEFAULT_RADIO,
        *,
        window: int = ESTIMATE_WINDOW,
        prior_bps: float = ESTIMATE_PRIOR_BPS,
        prior_rtt_s: float = ESTIMATE_PRIOR_RTT_S,
    ) -> None:
        if not isinstance(trace, BandwidthTrace):
            raise ConfigError(f"Uplink needs a BandwidthTrace, got {type(trace).__name__}")
        if not (isinstance(window, int) and 1 <= window <= self.HISTORY):
            raise ConfigError(f"Uplink window must be an integer in 1..{self.HISTORY}, got {window!r}")
        if not (math.isfinite(prior_bps) and prior_bps > 0):
            raise ConfigError(f"Uplink prior_bps must be > 0 bit/s, got {prior_bps}")
        if not (math.isfinite(prior_rtt_s) and prior_rtt_s >= 0):
            raise ConfigError(f"Uplink prior_rtt_s must be >= 0 s, got {prior_rtt_s}")
        self.trace = trace
        self.radio = radio_profile(radio) if isinstance(radio, str) else radio
        self.window = window
        self.prior_bps = float(prior_bps)
        self.prior_rtt_s = float(prior_rtt_s)
        self._has_tail = self.radio.tail_s > 0.0 and self.radio.tail_power_w > 0.0
        #: The transfers' records: (known_at_s, bit/s, rtt_s, s/bit), oldest first.
        self._known: deque[tuple[float, float, float, float]] = deque(maxlen=self.HISTORY)
        self.reset()

    def reset(self) -> None:
        """Forget every transfer (a new episode on the same trace)."""
        self._known.clear()
        self._free_s = 0.0  # when the link has sent everything queued so far
        self._sent_any = False
        self._in_order = True  # the records became known in the order they were sent
        self._sent = 0  # transfers sent
        # The estimate, kept up to date while queries move forward in time (records in order): how many transfers
        # are acknowledged, the inverse throughputs of the last `window` of them, the estimate, the last query time.
        self._acked = 0
        self._window_inv: deque[float] = deque(maxlen=self.window)  # 1 / throughput (s/bit), oldest first
        self._window_num: deque[int] = deque(maxlen=self.window)  # their transfer numbers
        self._estimate = self.prior_bps
        self._last_query_s = 0.0

    def send(self, start_s: float, n_bytes: float) -> Transfer:
        """Send ``n_bytes`` (bytes) ready at ``start_s`` (s); return the :class:`Transfer` (times in s, energy in J).

        0 bytes sends nothing: a Transfer of zeros at ``start_s`` that measures nothing and leaves the tail running.
        """
        start_s, n_bytes = float(start_s), float(n_bytes)
        if not (0.0 <= start_s < _INF and 0.0 <= n_bytes < _INF):  # NaN fails too; the check says what is wrong
            _check_transfer(start_s, n_bytes)
        if n_bytes == 0:
            return Transfer(start_s, start_s, 0.0, start_s, 0.0, 0.0, 0.0, self.trace.rtt_at(start_s), 0.0, 0.0)
        tx_start = max(start_s, self._free_s)
        tail = self.radio.tail_energy_j(tx_start - self._free_s) if self._sent_any and self._has_tail else 0.0
        ser, rtt = _serialise(self.trace, tx_start, n_bytes)
        bps = 8.0 * n_bytes / ser
        end = tx_start + ser
        self._free_s = end
        self._sent_any = True
        known = self._known
        if known and end + rtt < known[-1][0]:
            self._in_order = False  # an RTT change made a later transfer known earlier: estimates scan the history
        known.append((end + rtt, bps, rtt, 1.0 / bps))
        self._sent += 1
        arrival = end + 0.5 * rtt
        return Transfer(start_s, tx_start, ser, arrival, arrival - start_s, n_bytes, bps, rtt,
                        self.radio.energy_j(ser, bps), tail)

    def pending_tail_j(self, now_s: float) -> float:
        """Tail energy (J) of the idle gap from the last transfer's last bit to ``now_s`` (s), not yet charged to
        a transfer (charge it at the end of an episode). 0 before any transfer or without a tail."""
        if not self._sent_any:
            return 0.0
        return self.radio.tail_energy_j(float(now_s) - self._free_s)

    def busy_until_s(self) -> float:
        """When the link will have sent everything queued so far (s); the board knows its own send queue."""
        return self._free_s

    def _recent(self, now_s: float, index: int) -> list[float]:
        out: list[float] = []
        for rec in reversed(self._known):
            if rec[0] <= now_s:
                out.append(rec[index])
                if len(out) == self.window:
                    break
        return out

    def estimate_bps(self, now_s: float) -> float:
        """The uplink estimate (bit/s) a controller can read at ``now_s`` (s): the harmonic mean of the throughput
        of the last ``window`` transfers whose ACK was back by ``now_s``; ``prior_bps`` before any."""
        if self._in_order and now_s >= self._last_query_s:  # the common case: advance the running window
            known, a, sent = self._known, self._acked, self._sent
            first = sent - len(known)  # the transfer number of known[0] (older ones fell out of the history)
            win = self._window_inv
            if a < first:  # transfers fell out of the history before they were acknowledged
                a = first
            nums = self._window_num
            if nums and nums[0] < first:  # the scan below sees only the history: so does the window
                while nums and nums[0] < first:
                    nums.popleft()
                    win.popleft()
                self._estimate = len(win) / sum(reversed(win)) if win else self.prior_bps
            if a < sent and known[a - first][0] <= now_s:
                while a < sent and known[a - first][0] <= now_s:
                    win.append(known[a - first][3])
                    nums.append(a)
                    a += 1
                # Summed newest first, as the scan below does (the same bits).
                self._estimate = len(win) / sum(reversed(win))
            self._acked = a
            self._last_query_s = now_s
            return self._estimate
        rates = self._recent(float(now_s), 1)
        if not rates:
            return self.prior_bps
        return len(rates) / sum(1.0 / r for r in rates)

    def estimate_rtt_s(self, now_s: float) -> float:
        """The RTT estimate (s) at ``now_s`` (s): the mean RTT of the last ``window`` acknowledged transfers;
        ``prior_rtt_s`` before any."""
        rtts = self._recent(float(now_s), 2)
        return sum(rtts) / len(rtts) if rtts else self.prior_rtt_s
