"""Request arrivals for the batching env (``e4gym/BatchConcurrency-v0``): when each DNN service gets a request.

An arrival process gives, for each of M models, the sorted arrival times (s) of its requests over an episode,
drawn from a NumPy ``Generator`` (the env's ``np_random``), so one seed gives one set of arrivals:

- ``"poisson"``: a Poisson process per model whose rate drifts slowly: piecewise constant over segments of
  :data:`RATE_SEGMENT_S`, ``ln(rate / mean)`` an AR(1) random walk (:data:`RATE_WALK_RHO`,
  :data:`RATE_WALK_SIGMA`), corrected so that the long-run mean rate is the given mean;
- ``"poisson-constant"``: a homogeneous Poisson process at the mean rate;
- ``"bursty"``: a two-state Markov-modulated Poisson process (MMPP) per model: calm at
  :data:`BURST_LOW` × the mean rate, bursts at :data:`BURST_HIGH` ×, exponential dwell times with means
  :data:`BURST_CALM_S` and :data:`BURST_BURST_S` (the long-run mean is the given mean rate);
- a **user trace** as CSV (:func:`load_arrival_trace`): one row per request, ``time_s,model``, replayed from 0 s
  each episode and looped past its end.

Every figure here that no paper gives is an ASSUMPTION, listed in ``docs/assumptions.md`` (rows "Batching env").
Generation is vectorised: one Poisson draw per segment, one uniform per request, one sort per model.
"""

from __future__ import annotations

import csv
import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from e4gym.errors import ConfigError

__all__ = [
    "ARRIVAL_KINDS",
    "TRACE_COLUMNS",
    "ArrivalProcess",
    "ArrivalTrace",
    "bursty_arrivals",
    "load_arrival_trace",
    "make_arrivals",
    "poisson_arrivals",
]

#: The generated arrival processes (anything else is a CSV path).
ARRIVAL_KINDS = ("poisson", "poisson-constant", "bursty")
#: ASSUMPTION: the drifting Poisson rate holds for segments of this length (s).
RATE_SEGMENT_S = 5.0
#: ASSUMPTION: AR(1) coefficient of ``ln(rate / mean)`` from one segment to the next (a change keeps for ~25 s).
RATE_WALK_RHO = 0.8
#: ASSUMPTION: standard deviation of one AR(1) step of ``ln(rate / mean)`` (stationary spread 0.2 / 0.6 = 0.33:
#: the rate spends most of its time within ×0.5 .. ×2 of the mean).
RATE_WALK_SIGMA = 0.2
#: ASSUMPTION: the bursty MMPP's rates relative to the mean (calm, burst) and mean dwell times (s): a burst of 3×
#: the mean rate for about 2 s every 10 s; (0.5 · 8 + 3 · 2) / 10 = 1, so the long-run mean is the mean rate.
BURST_LOW, BURST_HIGH = 0.5, 3.0
BURST_CALM_S, BURST_BURST_S = 8.0, 2.0
#: The columns of a user trace CSV (both required, any order).
TRACE_COLUMNS = ("time_s", "model")


def _check_rates(rates_rps: Sequence[float], duration_s: float) -> np.ndarray:
    rates = np.asarray(rates_rps, dtype=float)
    if rates.ndim != 1 or not np.all(np.isfinite(rates)) or np.any(rates < 0):
        raise ConfigError(f"arrival rates must be finite numbers >= 0 (requests/s), one per model, got {rates_rps!r}")
    if not (math.isfinite(duration_s) and duration_s > 0):
        raise ConfigError(f"the arrivals' duration must be a finite number of seconds > 0, got {duration_s!r}")
    return rates


def _segments(rng: np.random.Generator, starts: list[np.ndarray], ends: list[np.ndarray],
              rates: list[np.ndarray]) -> list[np.ndarray]:
    """Per model ``m``, the sorted arrival times (s) of a Poisson process that is constant at ``rates[m][i]`` (1/s)
    on ``[starts[m][i], ends[m][i])`` (disjoint, in time order). One Poisson draw, one uniform draw and one sort for
    every model together."""
    s, e = np.concatenate(starts), np.concatenate(ends)
    lengths = e - s
    counts = rng.poisson(np.concatenate(rates) * lengths)
    seg = np.repeat(np.arange(len(s)), counts)
    # segment index + a uniform, sorted: model by model, each model's requests in time order. ``seg`` is sorted
    # already, so it lines up with the sorted keys (and a key that rounds up to seg + 1 stays in its segment).
    key = seg + rng.random(len(seg))
    key.sort()
    times = s[seg] + lengths[seg] * (key - seg)
    last_seg = np.cumsum([len(x) for x in starts]) - 1
    model_end = np.cumsum(counts)[last_seg].tolist()
    return [times[a:b] for a, b in zip([0, *model_end[:-1]], model_end)]


#: Up to this many segments the AR(1) walk is one matrix product (:func:`_walk_matrix`), beyond it a loop.
_WALK_MATRIX_MAX = 512


@functools.lru_cache(maxsize=4)
def _walk_matrix(n: int) -> np.ndarray:
    """``W`` with ``eps @ W`` the AR(1) walk of :func:`poisson_arrivals` over ``n`` segments from standard normal
    draws ``eps``: ``x_0 = spread · eps_0``, ``x_k = rho · x_(k-1) + sigma · eps_k``, unrolled."""
    spread = RATE_WALK_SIGMA / math.sqrt(1.0 - RATE_WALK_RHO**2)
    k = np.arange(n)
    lag = k[None, :] - k[:, None]  # (j, k): k - j
    w = np.where(lag >= 0, RATE_WALK_SIGMA * RATE_WALK_RHO ** np.maximum(lag, 0), 0.0)
    w[0, :] = spread * RATE_WALK_RHO**k
    w.flags.writeable = False
    return w


def poisson_arrivals(rng: np.random.Generator, rates_rps: Sequence[float], duration_s: float, *,
                     drift: bool = True) -> list[np.ndarray]:
    """Per model, the sorted arrival times (s) in ``[0, duration_s)`` of a Poisson process with mean rate
    ``rates_rps[m]`` (requests/s): drifting (see the module docstring) or, ``drift=False``, constant.

    Raises:
        ConfigError: a rate is negative or not finite, or the duration is not > 0.
    """
    return _poisson(rng, _check_rates(rates_rps, duration_s), duration_s, drift)


def _poisson(rng: np.random.Generator, rates: np.ndarray, duration_s: float, drift: bool) -> list[np.ndarray]:
    n_models = len(rates)
    if not drift:
        zero, end = np.zeros(1), np.array([duration_s])
        return _segments(rng, [zero] * n_models, [end] * n_models, [np.array([r]) for r in rates])
    n_seg = math.ceil(duration_s / RATE_SEGMENT_S)
    starts = np.arange(n_seg) * RATE_SEGMENT_S
    ends = np.minimum(starts + RATE_SEGMENT_S, duration_s)
    spread = RATE_WALK_SIGMA / math.sqrt(1.0 - RATE_WALK_RHO**2)  # stationary standard deviation
    eps = rng.standard_normal((n_models, n_seg))
    if n_seg <= _WALK_MATRIX_MAX:
        x = eps @ _walk_matrix(n_seg)
    else:
        x = np.empty((n_models, n_seg))
        x[:, 0] = spread * eps[:, 0]  # start in the stationary distribution
        for k in range(1, n_seg):
            x[:, k] = RATE_WALK_RHO * x[:, k - 1] + RATE_WALK_SIGMA * eps[:, k]
    # E[exp(x)] = exp(spread² / 2) for the stationary normal: divide it out so that the mean rate is the rate
    walk = rates[:, None] * np.exp(x - 0.5 * spread**2)
    return _segments(rng, [starts] * n_models, [ends] * n_models, list(walk))


def bursty_arrivals(rng: np.random.Generator, rates_rps: Sequence[float], duration_s: float) -> list[np.ndarray]:
    """Per model, the sorted arrival times (s) in ``[0, duration_s)`` of the two-state MMPP of the module
    docstring, with long-run mean rate ``rates_rps[m]`` (requests/s).

    Raises:
        ConfigError: a rate is negative or not finite, or the duration is not > 0.
    """
    return _bursty(rng, _check_rates(rates_rps, duration_s), duration_s)


def _bursty(rng: np.random.Generator, rates: np.ndarray, duration_s: float) -> list[np.ndarray]:
    p_burst = BURST_BURST_S / (BURST_CALM_S + BURST_BURST_S)
    # enough dwell periods to cover the duration with a wide margin (mean period 5 s); extended if short
    n = int(duration_s / min(BURST_CALM_S, BURST_BURST_S)) + 8
    all_starts, all_ends, all_rates = [], [], []
    for r in rates:
        burst0 = rng.random() < p_burst
        while True:
            state = (np.arange(n) + burst0) % 2 == 1  # alternating calm / burst from the first state
            dwell = rng.exponential(np.where(state, BURST_BURST_S, BURST_CALM_S))
            ends = np.cumsum(dwell)
            if ends[-1] >= duration_s:
                break
            n *= 2
        starts = np.concatenate(([0.0], ends[:-1]))
        keep = starts < duration_s
        all_starts.append(starts[keep])
        all_ends.append(np.minimum(ends[keep], duration_s))
        all_rates.append(r * np.where(state[keep], BURST_HIGH, BURST_LOW))
    return _segments(rng, all_starts, all_ends, all_rates)


# ---------------------------------------------------------------------------------------------- user traces


@dataclass(frozen=True)
class ArrivalTrace:
    """A recorded request log: per model, the sorted arrival times (s) of its requests, looping with
    ``period_s``.

    Attributes:
        models: the model of each row of ``times_s``. times_s: per model, sorted arrival times in
            ``[0, period_s)`` (s). period_s: the trace's length (s): it replays from 0 s and loops with this
            period. source: the file it came from.
    """

    models: tuple[str, ...]
    times_s: tuple[np.ndarray, ...]
    period_s: float
    source: str = ""

    @property
    def mean_rates_rps(self) -> tuple[float, ...]:
        """Requests per second of each model over one period."""
        return tuple(len(t) / self.period_s for t in self.times_s)

    def arrivals(self, duration_s: float) -> list[np.ndarray]:
        """Per model, the arrival times (s) in ``[0, duration_s)``: the trace from 0 s, looped past its end."""
        loops = math.ceil(duration_s / self.period_s)
        out = []
        for t in self.times_s:
            tiled = (t[None, :] + (np.arange(loops) * self.period_s)[:, None]).ravel()
            out.append(tiled[tiled < duration_s])
        return out


def _bad(path: Path, line: int | None, what: str, fix: str) -> ConfigError:
    where = f"{path}, line {line}" if line is not None else f"{path}"
    return ConfigError(f"arrival trace {where}: {what} (fix: {fix})")


def load_arrival_trace(path: str | Path, models: Sequence[str]) -> ArrivalTrace:
    """Load a user's request log from a CSV file.

    Format: a header naming the columns ``time_s`` and ``model`` (any order), then one row per request::

        time_s,model
        0.013,resnet18
        0.020,mobilenet_v2
        0.020,resnet18

    - ``time_s``: the request's arrival (s from the start of the log), a finite number >= 0, non-decreasing down
      the file (equal times are requests that arrive together);
    - ``model``: the model it asks for, one of ``models`` (the env's).

    The log replays from 0 s each episode and loops with period ``floor(last time_s) + 1`` s (a log of a minute,
    last request at 59.8 s, loops every 60 s). Blank lines and lines starting with ``#`` are skipped; other columns
    are refused. Every model needs at least one request. Any fault raises a one-line :class:`ConfigError` naming
    the file, the line and the fix.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise _bad(path, None, "no such file", "check the path, or pass arrivals='poisson' or 'bursty'") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise _bad(path, None, f"cannot be read ({exc})", "give a readable UTF-8 CSV file") from None
    rows = [(n, row) for n, row in enumerate(csv.reader(text.splitlines()), start=1)
            if row and any(c.strip() for c in row) and not row[0].lstrip().startswith("#")]
    if not rows:
        raise _bad(path, None, "is empty", "write a header 'time_s,model' and one row per request")
    header_line, header = rows[0]
    names = [c.strip() for c in header]
    for required in TRACE_COLUMNS:
        if required not in names:
            raise _bad(path, header_line, f"missing column '{required}' (header: {names})",
                       "write a header 'time_s,model'")
    unknown = [c for c in names if c not in TRACE_COLUMNS]
    if unknown or len(set(names)) != len(names):
        raise _bad(path, header_line, f"columns must be exactly {list(TRACE_COLUMNS)}, got {names}",
                   "write a header 'time_s,model' with each column once")
    if len(rows) == 1:
        raise _bad(path, None, "has a header but no requests", "add one row per request")
    i_t, i_m = names.index("time_s"), names.index("model")
    index = {m: k for k, m in enumerate(models)}
    times: list[list[float]] = [[] for _ in models]
    last = 0.0
    for line, row in rows[1:]:
        if len(row) != len(names):
            raise _bad(path, line, f"has {len(row)} values for the 2 columns {names}", "give time_s and model only")
        cell, model = row[i_t].strip(), row[i_m].strip()
        try:
            t = float(cell)
        except ValueError:
            raise _bad(path, line, f"time_s is not a number: {cell!r}", "write the arrival time in seconds") from None
        if not math.isfinite(t) or t < 0:
            raise _bad(path, line, f"time_s is {cell!r}", "write a finite time >= 0 s")
        if t < last:
            raise _bad(path, line, f"time_s {t} is earlier than the row before ({last})", "sort the rows by time")
        if model not in index:
            raise _bad(path, line, f"unknown model {model!r}", f"use one of the env's models {list(models)}")
        times[index[model]].append(t)
        last = t
    empty = [m for m, t in zip(models, times) if not t]
    if empty:
        raise _bad(path, None, f"no requests for model(s) {empty}", "add requests for them or leave them out of models")
    return ArrivalTrace(tuple(models), tuple(np.asarray(t) for t in times), float(math.floor(last) + 1.0), str(path))


# ---------------------------------------------------------------------------------------------- the env's view


@dataclass(frozen=True)
class ArrivalProcess:
    """The arrivals of an env: a generated kind at given mean rates, or a user trace.

    Attributes:
        kind: one of :data:`ARRIVAL_KINDS`, or ``"trace"``. mean_rates_rps: each model's long-run mean rate
        (requests/s). trace: the user trace when ``kind == "trace"``.
    """

    kind: str
    mean_rates_rps: tuple[float, ...]
    trace: ArrivalTrace | None = None

    def generate(self, rng: np.random.Generator, duration_s: float) -> list[np.ndarray]:
        """Per model, sorted arrival times (s) in ``[0, duration_s)``; draws from ``rng`` (none for a trace)."""
        if self.trace is not None:
            return self.trace.arrivals(duration_s)
        if not (math.isfinite(duration_s) and duration_s > 0):
            raise ConfigError(f"the arrivals' duration must be a finite number of seconds > 0, got {duration_s!r}")
        rates = np.asarray(self.mean_rates_rps)  # (checked by make_arrivals)
        if self.kind == "bursty":
            return _bursty(rng, rates, duration_s)
        return _poisson(rng, rates, duration_s, self.kind == "poisson")


def make_arrivals(arrivals: object, models: Sequence[str], rates_rps: Sequence[float] | None) -> ArrivalProcess:
    """The :class:`ArrivalProcess` of an env's ``arrivals=`` argument: a kind of :data:`ARRIVAL_KINDS` at
    ``rates_rps`` (one per model, requests/s), a CSV path (its own rates; ``rates_rps`` must be ``None``), or an
    :class:`ArrivalTrace`.

    Raises:
        ConfigError: an unknown kind, a malformed trace, rates given with a trace, or rates missing.
    """
    if isinstance(arrivals, ArrivalTrace):
        trace = arrivals
        if tuple(trace.models) != tuple(models):
            raise ConfigError(f"the arrival trace's models {list(trace.models)} differ from the env's {list(models)}")
    elif isinstance(arrivals, str) and arrivals in ARRIVAL_KINDS:
        if rates_rps is None:
            raise ConfigError(f"arrivals={arrivals!r} needs rates_rps, one mean rate per model (requests/s)")
        rates = _check_rates(rates_rps, 1.0)
        if len(rates) != len(models):
            raise ConfigError(f"rates_rps needs one rate per model ({len(models)}), got {len(rates)}")
        return ArrivalProcess(arrivals, tuple(float(r) for r in rates))
    elif isinstance(arrivals, (str, Path)) and str(arrivals).lower().endswith(".csv"):
        trace = load_arrival_trace(arrivals, models)
    else:
        raise ConfigError(f"arrivals must be one of {list(ARRIVAL_KINDS)}, the path of a CSV trace ('time_s,model' per "
                          f"request) or an ArrivalTrace, got {arrivals!r}")
    if rates_rps is not None:
        raise ConfigError("rates_rps does not apply to a trace (its rates are its own): leave rates_rps out")
    return ArrivalProcess("trace", trace.mean_rates_rps, trace)
