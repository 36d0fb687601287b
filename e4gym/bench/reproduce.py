"""``e4gym reproduce``: every claim of the seed papers next to the emulated figure, with a verdict.

Usage::

    e4gym reproduce [--out DIR] [--quick] [--jobs N] [--force] [--quiet] [--config NAME_OR_PATH]
                    [--executor {local,ray}] [--address ADDR]

One command runs what the claims need and writes one report, ``DIR/report.md`` (default ``build/reproduce``, or
``build/reproduce-quick`` with ``--quick``):

* the **bench experiment** ``configs/experiments/reproduce.yaml`` (the E4 paper's five boards × EfficientNet-B0 and
  MobileNet-V2 at 30 fps and at each board's feasible rate; E4, zTT, Ring-DVFS, EENet and the default governors;
  seeds 0–4, 1000 frames), run by :func:`e4gym.bench.runner.run_benchmark` into ``DIR/bench``: cached per task,
  resumable, ``--jobs`` worker processes (or Ray tasks: ``--executor ray [--address ADDR]``, as for ``e4gym
  bench``), bench's progress bar. Its tables are ``DIR/bench/report.md``; its plots and TensorBoard runs are
  not drawn (``e4gym bench --config reproduce --out DIR/bench`` draws them, reusing every task);
* **Dutt et al.'s experiments** (3200 inferences back to back, batch 8, under the default governors and at the
  best static CPU × GPU pair, on Jetson Nano and Xavier NX): the functions ``e4gym calibrate`` checks with
  (:mod:`e4gym.hardware.calibration`), once per seed (milliseconds each);
* **the frequency sweep** of Xavier NX with EfficientNet-B0 (:func:`e4gym.bench.sweep.frequency_sweep`), from which
  E4's Fig. 1 is redrawn (``fig1_xavier_nx.png``: latency and board power over CPU × GPU). E4's Fig. 3 (average
  power and latency per method, per board, 95 % confidence intervals over seeds) is drawn from the bench results
  (``fig3_power_latency.png``).

``--quick`` runs seeds 0–1 (:data:`QUICK_SEEDS`) with 300 frames per episode (:data:`QUICK_FRAMES`); the report
says that it is not a headline result. The full run's figures are means over the config's five seeds with 95 %
confidence intervals (Student's t over seeds).

**Claims** (:data:`CLAIMS`) are entries of one registry: each names its source (paper, figure or section, the
published numbers), the evidence it needs (``bench``: the E4 experiment; ``dvfo``: DVFO's, ``configs/experiments/
dvfo.yaml``, run into ``OUT/bench-dvfo``; ``bcedge``: BCEdge's; ``dutt``, ``sweep``), a function that computes the
emulated figure from that evidence (per seed, so that it has a confidence interval), and a verdict rule
(:class:`Range`, :class:`Point`, :class:`Above`, :class:`AtMost`). Adding a claim is adding one :class:`Claim` to
:data:`CLAIMS`; methods whose claims are not checked yet would be listed in :data:`NOT_BUILT` and named in the
report (none is now). DVFO's claims compare DVFO (trained per board) with its baselines by the same comparability
rule as E4's; BCEdge's (``bcedge``: ``configs/experiments/bcedge.yaml``, the serving env, into ``OUT/bench-bcedge``)
compare BCEdge with every baseline in every scenario (a serving env has no frame deadline to exclude a pair by).

**Verdicts** (:func:`judge`): *reproduced*, *not reproduced* (the reason gives the emulated figure, its interval and
the published one), or *not comparable*: the emulated figure cannot stand for the published one. E4 is compared
with a baseline in a scenario only when neither misses more than :data:`MAX_MISS_RATE` of the deadlines on average
over the seeds (more means the frames queue and latencies measure the backlog) and E4's accuracy is at most
:data:`MAX_ACCURACY_LOSS` below the baseline's on the same seeds (more means E4 bought its saving with accuracy);
a claim with no comparable scenario is *not comparable*, and the reason says what broke, in numbers. A range or a
single value is judged on the emulated mean (the interval is said, not counted); an order ("larger on AGX Orin")
needs its whole interval on the right side (:class:`Above`).

Exit status: 0 when every claim has a verdict from complete results, 1 when a bench task failed (the claims are
judged on what finished), 2 for bad input (one line), 130 on Ctrl-C (one line with the command that resumes:
finished tasks are kept and not run again). A folder holding a run of the other mode (quick or full) is refused
without ``--force``, so a quick run never replaces a full one's results.

Importing this module imports neither torch nor matplotlib.
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from e4gym.bench.report import ci95_halfwidth
from e4gym.bench.score import MAX_ACCURACY_LOSS
from e4gym.errors import ConfigError
from e4gym.hardware.calibration import (
    DUTT_BATCH,
    DUTT_INFERENCES,
    DUTT_MODELS,
    SAVING_TARGETS,
    best_static,
    default_governor_energy,
)
from e4gym.io import atomic_write, output_dir_problem, write_json, write_text
from e4gym.markdown import markdown_table

if TYPE_CHECKING:
    from e4gym.bench.config import Experiment, Scenario
    from e4gym.bench.sweep import SweepResult

# ---------------------------------------------------------------------------------------------- constants

#: The bench experiment the E4 claims read (a name under ``configs/experiments/``).
DEFAULT_CONFIG = "reproduce"
#: Default output folders of the full and the quick run (separate, so a quick run never replaces a full one).
DEFAULT_OUT = "build/reproduce"
QUICK_OUT = "build/reproduce-quick"
#: ``--quick``: the seeds and frames per episode (at least two seeds, so intervals exist).
QUICK_SEEDS: tuple[int, ...] = (0, 1)
QUICK_FRAMES = 300
#: A scenario compares E4 with a baseline only when neither misses more than this share of deadlines (mean over
#: seeds). ASSUMPTION (docs/assumptions.md): occasional misses are allowed, a queue is not.
MAX_MISS_RATE = 0.05
#: A point claim (``26 %``, ``2.8×``, ``8.6 W``) is reproduced within this relative distance of the published value
#: (or when the value lies in the emulated 95 % interval): the ±10 % `e4gym calibrate` allows E4 Fig. 1's figures.
POINT_TOLERANCE = 0.10
#: Policy labels the E4 claims read from the bench experiment, and the names shown for them. The poster compares
#: E4 with zTT and Ring-DVFS; the full paper adds EENet (:data:`FULL_PAPER_BASELINES`).
E4_LABEL = "e4"
BASELINES: dict[str, str] = {"e4": "E4", "ztt": "zTT", "ring-dvfs": "Ring-DVFS", "eenet": "EENet", "dvfo": "DVFO",
                             "edge_only": "edge-only", "cloud_only": "cloud-only",
                             "best_static_offload": "the best static offload", "batch1": "batch 1",
                             "triton_dynamic": "Triton dynamic batching", "scale_with_load": "load-scaled instances",
                             "best_static_batching": "the best static configuration"}
FULL_PAPER_BASELINES = ("ztt", "ring-dvfs", "eenet")
#: The experiment DVFO's claims read (``configs/experiments/dvfo.yaml``), run into ``OUT/bench-dvfo``; DVFO's label
#: there and the baselines its energy and latency claims average over (issue 18): edge-only at the default governors,
#: edge-only with E4's early exits, cloud-only (the compressed input sent) and the best static offload.
DVFO_CONFIG = "dvfo"
DVFO_BENCH_DIR = "bench-dvfo"
DVFO_LABEL = "dvfo"
DVFO_BASELINES = ("edge_only", "e4", "cloud_only", "best_static_offload")
#: The experiment BCEdge's claims read (``configs/experiments/bcedge.yaml``, the serving env), run into
#: ``OUT/bench-bcedge``; BCEdge's label and its baselines (issue 19).
BCEDGE_CONFIG = "bcedge"
BCEDGE_BENCH_DIR = "bench-bcedge"
BCEDGE_LABEL = "bcedge"
BCEDGE_BASELINES = ("batch1", "triton_dynamic", "scale_with_load", "best_static_batching")
#: The experiments besides the E4 one, by the evidence name a claim needs: (default config, output folder under OUT).
EXTRA_EXPERIMENTS: dict[str, tuple[str, str]] = {"dvfo": (DVFO_CONFIG, DVFO_BENCH_DIR),
                                                 "bcedge": (BCEDGE_CONFIG, BCEDGE_BENCH_DIR)}
#: The files ``e4gym reproduce`` writes in its output folder (the bench run goes to ``bench/``).
REPORT_FILE = "report.md"
STATE_FILE = "reproduce.json"
FIG1_FILE = "fig1_xavier_nx.png"
FIG3_FILE = "fig3_power_latency.png"
OUTPUT_FILES = (REPORT_FILE, STATE_FILE, FIG1_FILE, FIG3_FILE)
BENCH_DIR = "bench"
#: E4 Fig. 1's board and network.
FIG1_DEVICE, FIG1_MODEL, FIG1_FPS = "xavier-nx", "efficientnet_b0", 30.0

REPRODUCED = "reproduced"
NOT_REPRODUCED = "not reproduced"
NOT_COMPARABLE = "not comparable"
VERDICTS = (REPRODUCED, NOT_REPRODUCED, NOT_COMPARABLE)

# ---------------------------------------------------------------------------------------------- estimates


def number(x: float, unit: str) -> str:
    """``x`` as a number with the precision of ``unit`` (``×`` and ``W``: two decimals; ``points``: signed)."""
    if not math.isfinite(x):
        return "–"
    if unit in ("×", "W"):
        return f"{x:.2f}"
    return f"{x:+.2f}" if unit == "points" else f"{x:.1f}"


def fmt(x: float, unit: str) -> str:
    """``x`` in ``unit`` for a report (``%``, ``×``, ``points``, ``W``, or any other unit after a space)."""
    if not math.isfinite(x):
        return "–"
    return f"{number(x, unit)}×" if unit == "×" else f"{number(x, unit)} {unit}"


@dataclass(frozen=True)
class Estimate:
    """An emulated figure: one value per seed (mean and 95 % interval over them), with what it was computed from.

    Attributes:
        seeds / values: the per-seed figures (one value and seed ``-1`` for a noise-free model figure).
        unit: ``%``, ``×``, ``points``, ``W`` ...
        groups: ``(name, mean over seeds)`` per part the figure averages or ranges over (scenario × baseline,
            model, board); a :class:`Range` with ``over="groups"`` judges each.
        used / excluded: lines for the report's details (what the figure is computed from; what was left out
            and why, in numbers).
        note: said after the verdict's reason (a figure the rule does not judge, such as a relative size).
    """

    seeds: tuple[int, ...]
    values: tuple[float, ...]
    unit: str
    groups: tuple[tuple[str, float], ...] = ()
    used: tuple[str, ...] = ()
    excluded: tuple[str, ...] = ()
    note: str = ""

    @property
    def mean(self) -> float:
        """Mean over the seeds."""
        return float(np.mean(self.values)) if self.values else math.nan

    @property
    def half(self) -> float:
        """Half-width of the 95 % confidence interval of the mean (Student's t; NaN under two seeds)."""
        return ci95_halfwidth(self.values)

    @property
    def low(self) -> float:
        """Lower end of the 95 % interval (the mean when there is none)."""
        return self.mean - self.half if math.isfinite(self.half) else self.mean

    @property
    def high(self) -> float:
        """Upper end of the 95 % interval (the mean when there is none)."""
        return self.mean + self.half if math.isfinite(self.half) else self.mean

    def text(self) -> str:
        """``24.1 % [22.0, 26.3]`` (the interval when there are several seeds)."""
        if not math.isfinite(self.half):
            return fmt(self.mean, self.unit)
        return f"{fmt(self.mean, self.unit)} [{number(self.low, self.unit)}, {number(self.high, self.unit)}]"


@dataclass(frozen=True)
class NotComparable:
    """No emulated figure can stand for the published one: ``reason`` says why, in numbers. ``excluded``: the
    detail lines (every scenario left out and why)."""

    reason: str
    excluded: tuple[str, ...] = ()


# ---------------------------------------------------------------------------------------------- verdict rules


def _ci_note(est: Estimate, reaches: bool) -> str:
    """What the 95 % interval says beside a mean on the wrong side of a published bound."""
    if not math.isfinite(est.half):
        return ""
    return "; its 95 % interval reaches it" if reaches else "; its whole 95 % interval too"


@dataclass(frozen=True)
class Range:
    """The published figure is a range ``lo``–``hi``. ``over="mean"``: reproduced when the emulated mean lies in
    it; ``over="groups"``: when every group's mean does (a range published across models: each must fall in it)."""

    lo: float
    hi: float
    over: str = "mean"

    def judge(self, est: Estimate) -> tuple[str, str]:
        """``(verdict, reason)`` for ``est``."""
        u = est.unit
        span = f"{self.lo:g}–{self.hi:g}" + ("×" if u == "×" else f" {u}")
        if self.over == "groups":
            out = [(n, v) for n, v in est.groups if not self.lo <= v <= self.hi]
            listed = ", ".join(f"{n} {fmt(v, u)}" for n, v in est.groups)
            if not out:
                return REPRODUCED, f"every one in {span}: {listed}"
            bad = "; ".join(f"{n} at {fmt(v, u)} is {'below' if v < self.lo else 'above'} {span}" for n, v in out)
            return NOT_REPRODUCED, f"{bad} ({listed})"
        m = est.mean
        if self.lo <= m <= self.hi:
            return REPRODUCED, f"{est.text()} lies in {span}"
        side = "below" if m < self.lo else "above"
        reaches = est.high >= self.lo if m < self.lo else est.low <= self.hi
        return NOT_REPRODUCED, f"{est.text()} is {side} {span}{_ci_note(est, reaches)}"


@dataclass(frozen=True)
class Point:
    """The published figure is one value: reproduced when the emulated mean is within ``rel_tol`` of it
    (relative). Whether the 95 % interval reaches the value is said in the reason, not counted: two seeds' wide
    interval would otherwise reproduce almost anything."""

    value: float
    rel_tol: float = POINT_TOLERANCE

    def judge(self, est: Estimate) -> tuple[str, str]:
        """``(verdict, reason)`` for ``est``."""
        u, v, m = est.unit, self.value, est.mean
        dev = abs(m - v) / abs(v) if v else abs(m)
        where = f"{100 * dev:.0f} % {'below' if m < v else 'above'}" if dev >= 0.005 else "at"
        head = f"{est.text()} is {where} {fmt(v, u)} (tolerance {100 * self.rel_tol:g} %)"
        if dev <= self.rel_tol:
            return REPRODUCED, head
        return NOT_REPRODUCED, head + _ci_note(est, est.low <= v <= est.high)


@dataclass(frozen=True)
class Above:
    """The published claim is an order (``larger than``) on a difference: reproduced when the emulated mean exceeds
    ``threshold`` and so does the whole 95 % interval (when there is one). A sign within the seeds' noise is no
    order."""

    threshold: float = 0.0

    def judge(self, est: Estimate) -> tuple[str, str]:
        """``(verdict, reason)`` for ``est``."""
        t = fmt(self.threshold, est.unit)
        if est.mean <= self.threshold:
            return NOT_REPRODUCED, f"{est.text()} ≤ {t}{_ci_note(est, est.high > self.threshold)}"
        if math.isfinite(est.half) and est.low <= self.threshold:
            return NOT_REPRODUCED, f"{est.text()} > {t}, but its 95 % interval reaches {t}: no order beyond the noise"
        return REPRODUCED, f"{est.text()} > {t}" + ("; its whole 95 % interval too" if math.isfinite(est.half) else "")


@dataclass(frozen=True)
class AtMost:
    """The published claim is a bound (``within 1 point``): reproduced when the emulated mean is at most ``value``
    (whether the 95 % interval stays under it is said, not counted)."""

    value: float

    def judge(self, est: Estimate) -> tuple[str, str]:
        """``(verdict, reason)`` for ``est``."""
        v = fmt(self.value, est.unit)
        if est.mean <= self.value:
            tail = (f"; its 95 % interval reaches above it, to {number(est.high, est.unit)}"
                    if math.isfinite(est.half) and est.high > self.value else "")
            return REPRODUCED, f"{est.text()} ≤ {v}{tail}"
        return NOT_REPRODUCED, f"{est.text()} > {v}{_ci_note(est, est.low <= self.value)}"


Rule = Range | Point | Above | AtMost


# ---------------------------------------------------------------------------------------------- evidence


@dataclass(frozen=True)
class DuttRun:
    """One of Dutt et al.'s experiments on the emulator (3200 inferences, batch 8): energy under the default
    governors and at the best static pair (J), and that pair's ``(cpu, gpu, emc)`` levels."""

    default_j: float
    best_j: float
    levels: tuple[int, int, int]


@dataclass
class Evidence:
    """What the claims are computed from.

    Attributes:
        experiment: the bench experiment (``None`` when no claim needed it). rows: its result rows by
            ``(scenario, label, seed)`` (a failed task has none).
        extra: the other experiments' ``(experiment, rows)`` by evidence name (``dvfo``, ``bcedge``;
            :data:`EXTRA_EXPERIMENTS`).
        dutt: Dutt et al.'s experiments by ``(device, model, seed)``. sweep: the Fig. 1 sweep.
        seeds: the seeds of the run.
    """

    experiment: Experiment | None = None
    rows: dict[tuple[str, str, int], dict[str, Any]] = field(default_factory=dict)
    extra: dict[str, tuple[Experiment, dict[tuple[str, str, int], dict[str, Any]]]] = field(default_factory=dict)
    dutt: dict[tuple[str, str, int], DuttRun] = field(default_factory=dict)
    sweep: SweepResult | None = None
    seeds: tuple[int, ...] = ()

    def bench(self, which: str) -> tuple[Experiment | None, dict[tuple[str, str, int], dict[str, Any]]]:
        """``(experiment, rows)`` of ``which``: ``"bench"`` (the E4 experiment) or an extra one (``"dvfo"``,
        ``"bcedge"``); ``(None, {})`` when it did not run."""
        if which == "bench":
            return self.experiment, self.rows
        return self.extra.get(which, (None, {}))


@dataclass(frozen=True)
class Setting:
    """Which scenarios of the bench experiment a claim reads: frame rate (a number or ``auto``), deadline = frame
    period."""

    fps: float | str
    text: str

    def matches(self, sc: Scenario) -> bool:
        """``sc`` is at this frame rate with the frame period as its deadline."""
        fps = sc.params.get("fps", sc.env_kwargs.get("fps"))
        deadline = sc.params.get("deadline_ms", sc.env_kwargs.get("deadline_ms"))
        return deadline is None and fps == self.fps


#: The E4 paper's setting, and the one where every board's network fits its deadline.
PAPER = Setting(30, "30 fps, deadline = frame period (the paper's setting)")
FITS = Setting("auto", "each board's feasible rate (fps auto: the full network fits with 50 % headroom)")
#: DVFO's experiment: EfficientNet-B0 at 20 fps on its five boards.
DVFO_SETTING = Setting(20, "EfficientNet-B0 at 20 fps, deadline = frame period (50 ms), memory clocks controlled, "
                           "DVFO's five boards (Nano, TX2, Xavier NX, Orin NX, AGX Orin)")


def scenario_name(sc: Scenario) -> str:
    """``jetson-nano efficientnet_b0 30 fps`` (short, for the report)."""
    return f"{sc.device} {sc.model} {sc.fps:g} fps"


@dataclass(frozen=True)
class Comparison:
    """A method (E4, DVFO) against one baseline in one scenario: the result rows ``(method, baseline)`` per seed."""

    scenario: Scenario
    baseline: str
    pairs: dict[int, tuple[dict[str, Any], dict[str, Any]]]

    @property
    def name(self) -> str:
        """``xavier-nx efficientnet_b0 30 fps vs zTT``."""
        return f"{scenario_name(self.scenario)} vs {BASELINES.get(self.baseline, self.baseline)}"


def comparisons(ev: Evidence, setting: Setting, baselines: Sequence[str],
                devices: Sequence[str] | None = None, subject: str = E4_LABEL,
                which: str = "bench") -> tuple[list[Comparison], list[str]]:
    """``subject`` (a policy label, E4 by default) against each of ``baselines`` in every scenario of ``setting``
    (on ``devices``, default all) of experiment ``which`` (:meth:`Evidence.bench`): the comparable ones, and a line
    per one left out saying why (see the module docstring), in numbers."""
    used: list[Comparison] = []
    excluded: list[str] = []
    exp, rows = ev.bench(which)
    if exp is None:
        return used, [f"the {'DVFO ' if which == 'dvfo' else ''}bench experiment did not run"]
    me = BASELINES.get(subject, subject)
    labels = {p.label for p in exp.policies}
    missing = [b for b in (subject, *baselines) if b not in labels]
    excluded += [f"{BASELINES.get(b, b)}: not a policy of this experiment (label {b!r})" for b in missing]
    baselines = [b for b in baselines if b in labels]
    for sc in exp.scenarios:
        if not setting.matches(sc) or (devices is not None and sc.device not in devices):
            continue
        for b in baselines:
            bname = BASELINES.get(b, b)
            pairs = {s: (rows[(sc.name, subject, s)], rows[(sc.name, b, s)]) for s in exp.seeds
                     if (sc.name, subject, s) in rows and (sc.name, b, s) in rows}
            if not pairs:
                excluded.append(f"{scenario_name(sc)} vs {bname}: no results ({me} or {bname} failed or did not run)")
                continue
            e4_miss = float(np.mean([a["deadline_miss_rate"] for a, _ in pairs.values()]))
            b_miss = float(np.mean([r["deadline_miss_rate"] for _, r in pairs.values()]))
            dacc = float(np.mean([a["accuracy"] - r["accuracy"] for a, r in pairs.values()]))
            why = []
            if e4_miss > MAX_MISS_RATE:
                why.append(f"{me} misses {100 * e4_miss:.1f} % of deadlines")
            if b_miss > MAX_MISS_RATE:
                why.append(f"{bname} misses {100 * b_miss:.1f} %")
            if dacc < -MAX_ACCURACY_LOSS - 1e-12:
                why.append(f"{me} loses {-100 * dacc:.1f} accuracy points against it")
            if why:
                excluded.append(f"{scenario_name(sc)} vs {bname}: " + ", ".join(why))
            else:
                used.append(Comparison(sc, b, pairs))
    return used, excluded


def saving_pct(e4: Mapping[str, Any], base: Mapping[str, Any]) -> float:
    """Energy E4 saves per frame against the baseline, ``100 · (1 − E_e4 / E_base)`` (%)."""
    return 100.0 * (1.0 - float(e4["energy_per_frame_j"]) / float(base["energy_per_frame_j"]))


def speedup(e4: Mapping[str, Any], base: Mapping[str, Any]) -> float:
    """The baseline's mean frame latency (queueing included) over E4's (×)."""
    return float(base["latency_mean_ms"]) / float(e4["latency_mean_ms"])


def latency_reduction_pct(a: Mapping[str, Any], base: Mapping[str, Any]) -> float:
    """How much lower the method's mean end-to-end frame latency is than the baseline's,
    ``100 · (1 − L / L_base)`` (%; queueing included)."""
    return 100.0 * (1.0 - float(a["latency_mean_ms"]) / float(base["latency_mean_ms"]))


Metric = Callable[[Mapping[str, Any], Mapping[str, Any]], float]


def per_seed(comps: Sequence[Comparison], metric: Metric) -> dict[int, float]:
    """Per seed, the mean of ``metric`` over the comparisons that have that seed."""
    by_seed: dict[int, list[float]] = defaultdict(list)
    for c in comps:
        for s, (a, b) in c.pairs.items():
            by_seed[s].append(metric(a, b))
    return {s: float(np.mean(v)) for s, v in sorted(by_seed.items())}


def _group(c: Comparison, metric: Metric) -> tuple[str, float]:
    return c.name, float(np.mean([metric(a, b) for a, b in c.pairs.values()]))


def _summary_of(excluded: Sequence[str], limit: int = 2) -> str:
    shown = "; ".join(excluded[:limit])
    return shown + (f"; {len(excluded) - limit} more in the details" if len(excluded) > limit else "")


def against(baselines: Sequence[str], metric: Metric, unit: str, setting: Setting = PAPER,
               best: bool = False, subject: str = E4_LABEL,
               which: str = "bench") -> Callable[[Evidence], Estimate | NotComparable]:
    """A claim's figure: ``metric`` of ``subject`` (E4 by default) against ``baselines`` over the comparable
    scenarios of ``setting`` in experiment ``which``, averaged per seed (``best``: the comparison with the highest
    mean, its per-seed values)."""
    def compute(ev: Evidence) -> Estimate | NotComparable:
        comps, excluded = comparisons(ev, setting, baselines, subject=subject, which=which)
        if not comps:
            return NotComparable(f"no comparable scenario at {setting.text}: {_summary_of(excluded)}",
                                 tuple(excluded))
        return _pairs_estimate(comps, [_group(c, metric) for c in comps], metric, unit, best, excluded,
                               f"comparable scenario × baseline pair(s) at {setting.text}")
    return compute


def _pairs_estimate(comps: Sequence[Comparison], groups: Sequence[tuple[str, float]], metric: Metric, unit: str,
                    best: bool, excluded: Sequence[str], what: str) -> Estimate:
    """The figure of a claim over method × baseline pairs: with ``best``, the pair with the highest mean (its
    per-seed values: the papers' "up to"); else the mean over the pairs, per seed. ``groups``: each pair's name and
    mean; ``what``: the pairs, in words."""
    if best:
        top = max(range(len(comps)), key=lambda i: groups[i][1])
        values = per_seed([comps[top]], metric)
        used = (f"the highest of {len(comps)} {what}: {groups[top][0]}",)
    else:
        values = per_seed(comps, metric)
        used = (f"mean over {len(comps)} {what}, per seed",)
    return Estimate(tuple(values), tuple(values.values()), unit, tuple(groups), used, tuple(excluded))


def larger_on(big: str, small: str, setting: Setting) -> Callable[[Evidence], Estimate | NotComparable]:
    """A claim's figure: E4's mean saving against every baseline on board ``big`` minus that on ``small``
    (percentage points, per seed), over the comparable scenarios of ``setting``."""
    def compute(ev: Evidence) -> Estimate | NotComparable:
        comps, excluded = comparisons(ev, setting, FULL_PAPER_BASELINES, devices=(big, small))
        on = {d: [c for c in comps if c.scenario.device == d] for d in (big, small)}
        missing = [d for d in (big, small) if not on[d]]
        if missing:
            lines = [x for x in excluded if x.startswith(tuple(f"{d} " for d in missing))]
            return NotComparable(f"no comparable scenario on {' or '.join(missing)} at {setting.text}: "
                                 f"{_summary_of(lines)}", tuple(excluded))
        a, b = per_seed(on[big], saving_pct), per_seed(on[small], saving_pct)
        seeds = tuple(s for s in a if s in b)
        mean_a, mean_b = float(np.mean([a[s] for s in seeds])), float(np.mean([b[s] for s in seeds]))
        names = ", ".join(dict.fromkeys(BASELINES.get(c.baseline, c.baseline) for c in comps))
        used = (f"E4's mean saving against {names} on {big} ({len(on[big])} comparable "
                f"pair(s)) minus on {small} ({len(on[small])}), at {setting.text}: {mean_a:.1f} % − {mean_b:.1f} %",
                *(f"{c.name}: {_group(c, saving_pct)[1]:.1f} %" for c in on[big] + on[small]))
        rel = f"{100.0 * (mean_a / mean_b - 1.0):+.0f} %" if mean_b > 0 else "–"
        note = f"{big} saves {mean_a:.1f} %, {small} {mean_b:.1f} % ({rel} relative)"
        return Estimate(seeds, tuple(a[s] - b[s] for s in seeds), "points", (), used, tuple(excluded), note)
    return compute


def bcedge_against(metric: Callable[[Mapping[str, Any], Mapping[str, Any]], float], unit: str,
                   best: bool = True, positive: str | None = None) -> Callable[[Evidence], Estimate | NotComparable]:
    """A BCEdge claim's figure: ``metric`` of BCEdge against each of :data:`BCEDGE_BASELINES` in every scenario of
    its experiment (serving: no deadline to miss), per seed; ``best``: the pair with the highest mean (the paper's
    "up to"), else the mean over the pairs. ``positive``: a column the baseline's mean must have above 0 for the
    pair to count (a relative gain on a utility at or below 0 has no meaning: the utility's zero is arbitrary)."""
    def compute(ev: Evidence) -> Estimate | NotComparable:
        exp, rows = ev.bench("bcedge")
        if exp is None:
            return NotComparable("the BCEdge bench experiment did not run")
        comps, excluded = [], []
        for sc in exp.scenarios:
            for b in BCEDGE_BASELINES:
                pairs = {s: (rows[(sc.name, BCEDGE_LABEL, s)], rows[(sc.name, b, s)]) for s in exp.seeds
                         if (sc.name, BCEDGE_LABEL, s) in rows and (sc.name, b, s) in rows}
                if not pairs:
                    excluded.append(f"{sc.name} vs {b}: no results (BCEdge or {b} failed or did not run)")
                    continue
                ref = float(np.mean([float(r[positive]) for _, r in pairs.values()])) if positive else 1.0
                if ref <= 0.0:
                    excluded.append(f"{sc.name} vs {BASELINES.get(b, b)}: its {positive} is {ref:.3f} (≤ 0): no "
                                    "relative gain")
                    continue
                comps.append(Comparison(sc, b, pairs))
        if not comps:
            return NotComparable(f"no BCEdge comparison: {_summary_of(excluded)}", tuple(excluded))
        groups = [(f"{c.scenario.name} vs {BASELINES.get(c.baseline, c.baseline)}",
                   float(np.mean([metric(a, r) for a, r in c.pairs.values()]))) for c in comps]
        return _pairs_estimate(comps, groups, metric, unit, best, excluded, "scenario × baseline pairs")
    return compute


def utility_gain_pct(a: Mapping[str, Any], base: Mapping[str, Any]) -> float:
    """BCEdge's utility per interval above the baseline's, relative to the baseline's magnitude (%)."""
    u, ub = float(a["utility_per_interval"]), float(base["utility_per_interval"])
    return 100.0 * (u - ub) / abs(ub) if ub else math.nan


def memory_saving_pct(a: Mapping[str, Any], base: Mapping[str, Any]) -> float:
    """Memory BCEdge's configurations held below the baseline's, ``100 · (1 − M / M_base)`` (%)."""
    return 100.0 * (1.0 - float(a["memory_gb"]) / float(base["memory_gb"]))


def bcedge_violations(ev: Evidence) -> Estimate | NotComparable:
    """BCEdge's SLO-violation rate (%), mean over the scenarios of its experiment, per seed."""
    exp, rows = ev.bench("bcedge")
    if exp is None:
        return NotComparable("the BCEdge bench experiment did not run")
    by_seed: dict[int, list[float]] = defaultdict(list)
    groups = []
    for sc in exp.scenarios:
        vals = {s: 100.0 * float(rows[(sc.name, BCEDGE_LABEL, s)]["slo_violation_rate"]) for s in exp.seeds
                if (sc.name, BCEDGE_LABEL, s) in rows}
        if vals:
            groups.append((sc.name, float(np.mean(list(vals.values())))))
            for s, v in vals.items():
                by_seed[s].append(v)
    if not groups:
        return NotComparable("BCEdge has no result in its experiment")
    values = {s: float(np.mean(v)) for s, v in sorted(by_seed.items())}
    used = (f"BCEdge's SLO violations / requests arrived, mean over {len(groups)} scenario(s), per seed",)
    return Estimate(tuple(values), tuple(values.values()), "%", tuple(groups), used)


def dvfo_accuracy_loss(ev: Evidence) -> Estimate | NotComparable:
    """DVFO's accuracy claim: the top-1 points DVFO loses against edge-only inference (the whole network on the
    board, default governors) in every scenario of its experiment (deadlines do not matter here), per seed."""
    exp, rows = ev.bench("dvfo")
    if exp is None:
        return NotComparable("the DVFO bench experiment did not run")
    groups, by_seed, excluded = [], defaultdict(list), []
    for sc in exp.scenarios:
        loss = {s: 100.0 * (rows[(sc.name, "edge_only", s)]["accuracy"] - rows[(sc.name, DVFO_LABEL, s)]["accuracy"])
                for s in exp.seeds if (sc.name, "edge_only", s) in rows and (sc.name, DVFO_LABEL, s) in rows}
        if not loss:
            excluded.append(f"{scenario_name(sc)}: no results (DVFO or edge-only failed or did not run)")
            continue
        groups.append((scenario_name(sc), float(np.mean(list(loss.values())))))
        for s, v in loss.items():
            by_seed[s].append(v)
    if not groups:
        return NotComparable(f"no scenario with both DVFO and edge-only results: {_summary_of(excluded)}",
                             tuple(excluded))
    values = {s: float(np.mean(v)) for s, v in sorted(by_seed.items())}
    used = (f"edge-only's accuracy minus DVFO's (top-1 points), mean over {len(groups)} scenario(s), per seed",)
    return Estimate(tuple(values), tuple(values.values()), "points", tuple(groups), used, tuple(excluded))


#: Dutt et al.'s boards and networks (the networks ``e4gym calibrate`` checks them with).
DUTT_DEVICES = ("jetson-nano", "xavier-nx")


def dutt_best_static(device: str) -> Callable[[Evidence], Estimate | NotComparable]:
    """A claim's figure: energy the best static CPU × GPU pair saves against the default governors on ``device``
    in Dutt et al.'s experiment (%; per model, and their mean per seed)."""
    def compute(ev: Evidence) -> Estimate | NotComparable:
        runs = {k: r for k, r in ev.dutt.items() if k[0] == device}
        if not runs:
            return NotComparable(f"Dutt et al.'s experiment did not run on {device}")
        models = [m for m in DUTT_MODELS if any(k[1] == m for k in runs)]
        seeds = sorted({s for _, _, s in runs})
        sav = {(m, s): 100.0 * (1.0 - runs[(device, m, s)].best_j / runs[(device, m, s)].default_j)
               for m in models for s in seeds}
        groups = tuple((m, float(np.mean([sav[(m, s)] for s in seeds]))) for m in models)
        values = tuple(float(np.mean([sav[(m, s)] for m in models])) for s in seeds)
        used = (f"{device}, {len(models)} networks × {len(seeds)} seed(s), {DUTT_INFERENCES} inferences in batches "
                f"of {DUTT_BATCH} each; the figure is the mean over the networks, each judged",)
        return Estimate(tuple(seeds), values, "%", groups, used)
    return compute


def dutt_energy_ratio(big: str, small: str) -> Callable[[Evidence], Estimate | NotComparable]:
    """A claim's figure: energy of Dutt et al.'s experiment under the default governors on ``big`` over that on
    ``small`` (×; per model, and their mean per seed)."""
    def compute(ev: Evidence) -> Estimate | NotComparable:
        keys = {(m, s) for d, m, s in ev.dutt if d == big} & {(m, s) for d, m, s in ev.dutt if d == small}
        if not keys:
            return NotComparable(f"Dutt et al.'s experiment did not run on both {big} and {small}")
        models = [m for m in DUTT_MODELS if any(k[0] == m for k in keys)]
        seeds = sorted({s for _, s in keys})
        ratio = {k: ev.dutt[(big, *k)].default_j / ev.dutt[(small, *k)].default_j for k in keys}
        groups = tuple((m, float(np.mean([ratio[(m, s)] for s in seeds]))) for m in models)
        values = tuple(float(np.mean([ratio[(m, s)] for m in models])) for s in seeds)
        used = (f"default governors, {len(models)} networks × {len(seeds)} seed(s), energy on {big} / on {small}",)
        return Estimate(tuple(seeds), values, "×", groups, used)
    return compute


def fig1_top_clocks(ev: Evidence) -> Estimate | NotComparable:
    """E4 Fig. 1's claim that 30 fps needs both clocks at their top: the lowest CPU and GPU clock (as % of the
    top one) of any pair that meets 30 fps on Xavier NX (batch 1, noise-free model) as ``e4gym sweep`` counts it,
    with 10 % latency headroom (≤ 30.3 ms: the paper's "about 30 ms per frame")."""
    r = ev.sweep
    if r is None:
        return NotComparable("the frequency sweep did not run")
    ok = r.feasible
    top = (len(r.cpu_hz) - 1, len(r.gpu_hz) - 1)
    bare = int((r.latency_s <= r.deadline_s).sum())
    limit = r.deadline_s / (1.0 + r.margin) * 1e3
    if not ok.any():
        used = (f"no pair meets {limit:.1f} ms; the top clocks take {r.latency_s[top] * 1e3:.1f} ms",)
        return Estimate((-1,), (0.0,), "% of the top clock", (), used)
    ci, gi = np.nonzero(ok)
    cpu, gpu = float(r.cpu_hz[ci.min()]), float(r.gpu_hz[gi.min()])
    pct = 100.0 * min(cpu / float(r.cpu_hz[-1]), gpu / float(r.gpu_hz[-1]))
    used = (f"{int(ok.sum())} of {ok.size} CPU × GPU pairs run a frame in ≤ {limit:.1f} ms (noise-free model, "
            f"{100 * r.margin:g} % headroom under the {r.deadline_s * 1e3:.1f} ms period; {bare} without it); the "
            f"slowest clocks among them: CPU {cpu / 1e6:.0f} of {r.cpu_hz[-1] / 1e6:.0f} MHz, GPU {gpu / 1e6:.0f} of "
            f"{r.gpu_hz[-1] / 1e6:.0f} MHz; the top pair takes {r.latency_s[top] * 1e3:.1f} ms",)
    return Estimate((-1,), (pct,), "% of the top clock", (), used)


def fig1_top_power(ev: Evidence) -> Estimate | NotComparable:
    """E4 Fig. 1's board power at the top clocks (W, noise-free model, while running)."""
    r = ev.sweep
    if r is None:
        return NotComparable("the frequency sweep did not run")
    top = (len(r.cpu_hz) - 1, len(r.gpu_hz) - 1)
    used = (f"Xavier NX, EfficientNet-B0, batch 1, CPU {r.cpu_hz[-1] / 1e6:.0f} / GPU {r.gpu_hz[-1] / 1e6:.0f} MHz: "
            f"{r.latency_s[top] * 1e3:.1f} ms at {r.run_power_w[top]:.2f} W while running (noise-free model)",)
    return Estimate((-1,), (float(r.run_power_w[top]),), "W", (), used)


def _dutt_range(device: str) -> Range:
    """Dutt et al.'s best-static saving range on ``device`` (%), from the calibration's targets."""
    lo, hi = SAVING_TARGETS[device]
    return Range(100.0 * lo, 100.0 * hi, over="groups")


# ---------------------------------------------------------------------------------------------- the registry


@dataclass(frozen=True)
class Claim:
    """One published claim and how to check it on the emulator.

    Attributes:
        key: a short unique id. paper: the source. where: figure, table or section. text: the claim in words.
        published: the published figure as the paper gives it. setting: what the emulated figure is computed on.
        rule: the verdict rule (:class:`Range`, :class:`Point`, :class:`Above`).
        needs: the evidence it reads: ``bench`` (the experiment), ``dutt`` (Dutt et al.'s runs), ``sweep`` (Fig. 1).
        compute: the emulated figure from the :class:`Evidence`.
    """

    key: str
    paper: str
    where: str
    text: str
    published: str
    setting: str
    rule: Rule
    needs: tuple[str, ...]
    compute: Callable[[Evidence], Estimate | NotComparable]


DVFO = "DVFO (Zhang et al., IEEE TMC 2024)"
BCEDGE = "BCEdge (Zhang et al., IEEE TNSM 2024)"
#: The BCEdge experiment's setting.
_BCEDGE_SETTING = ("the serving env: four models (EfficientNet-B0, MobileNet-V2, ResNet-18, tiny-YOLOv3) at half "
                   "their capacity, Poisson and bursty arrivals, Xavier NX and AGX Orin, 60 one-second intervals")
E4_POSTER = "E4 poster (SenSys 2023)"
E4_PAPER = "E4 full paper (AAAI 2025)"
DUTT = "Dutt et al. (Stony Brook)"
_DUTT_SETTING = (f"{DUTT_INFERENCES} inferences back to back, batch {DUTT_BATCH} (within their 4–64), "
                 f"{len(DUTT_MODELS)} networks")

#: Every claim ``e4gym reproduce`` checks, in report order (CALIBRATION.md §1). One entry per claim.
CLAIMS: tuple[Claim, ...] = (
    Claim("e4-saving-ztt", E4_POSTER, "results", "E4 saves energy against zTT", "20–37 %", PAPER.text,
          Range(20, 37), ("bench",), against(("ztt",), saving_pct, "%")),
    Claim("e4-saving-ring", E4_POSTER, "results", "E4 saves energy against Ring-DVFS (extended to CPU+GPU)",
          "20–37 %", PAPER.text, Range(20, 37), ("bench",), against(("ring-dvfs",), saving_pct, "%")),
    Claim("e4-speedup-ztt", E4_POSTER, "results", "E4's inference speedup against zTT", "1.3–2.2×", PAPER.text,
          Range(1.3, 2.2), ("bench",), against(("ztt",), speedup, "×")),
    Claim("e4-speedup-ring", E4_POSTER, "results", "E4's inference speedup against Ring-DVFS", "1.3–2.2×",
          PAPER.text, Range(1.3, 2.2), ("bench",), against(("ring-dvfs",), speedup, "×")),
    Claim("e4-average-saving", E4_PAPER, "abstract", "E4's average energy saving against its baselines (zTT, "
          "Ring-DVFS, EENet)", "26 %", PAPER.text, Point(26), ("bench",),
          against(FULL_PAPER_BASELINES, saving_pct, "%")),
    Claim("e4-max-speedup", E4_PAPER, "abstract", "E4's speedup against them, at best", "up to 2.8×", PAPER.text,
          Point(2.8), ("bench",), against(FULL_PAPER_BASELINES, speedup, "×", best=True)),
    Claim("e4-orin-vs-nano", E4_PAPER, "results", "E4's gain is larger on AGX Orin than on Nano (saving on AGX "
          "Orin minus on Nano)", "larger (37 % higher on average)", PAPER.text, Above(0), ("bench",),
          larger_on("agx-orin", "jetson-nano", PAPER)),
    Claim("e4-orin-vs-nano-fits", E4_PAPER, "results", "the same at each board's feasible frame rate", "larger "
          "(37 % higher on average)", FITS.text, Above(0), ("bench",), larger_on("agx-orin", "jetson-nano", FITS)),
    Claim("e4-fig1-clocks", E4_POSTER, "Fig. 1", "30 fps on Xavier NX (EfficientNet-B0) needs both clocks at their "
          "highest (CPU 1.9 GHz, GPU 1.1 GHz)", "100 % of the top clocks", "noise-free model, batch 1, a frame in "
          "≤ 30.3 ms (the sweep's 10 % headroom under 33.3 ms; the paper: about 30 ms)",
          Point(100), ("sweep",), fig1_top_clocks),
    Claim("e4-fig1-power", E4_POSTER, "Fig. 1", "board power at those clocks", "8.6 W",
          "noise-free model, batch 1, while running", Point(8.6), ("sweep",), fig1_top_power),
    Claim("dutt-best-static-nano", DUTT, "results", "the best static CPU × GPU pair uses less energy than the "
          "default governors on Jetson Nano", "9–19 % (six networks: 13, 19, 15, 9, 17, 17 %)", _DUTT_SETTING,
          _dutt_range("jetson-nano"), ("dutt",), dutt_best_static("jetson-nano")),
    Claim("dutt-best-static-nx", DUTT, "results", "the same on Xavier NX", "2–15 % (2, 13, 15 %)", _DUTT_SETTING,
          _dutt_range("xavier-nx"), ("dutt",), dutt_best_static("xavier-nx")),
    Claim("dutt-nx-vs-nano", DUTT, "results", "Xavier NX uses 2–4× less energy than Nano for the same work "
          "(energy on Nano / on Xavier NX)", "2–4×", _DUTT_SETTING + ", default governors", Range(2, 4, over="groups"),
          ("dutt",), dutt_energy_ratio("jetson-nano", "xavier-nx")),
    Claim("dvfo-energy", DVFO, "abstract", "DVFO's average energy reduction against its baselines (edge-only at "
          "the default governors, edge-only with E4's early exits, cloud-only, the best static offload)", "33 %",
          DVFO_SETTING.text, Point(33), ("dvfo",),
          against(DVFO_BASELINES, saving_pct, "%", DVFO_SETTING, subject=DVFO_LABEL, which="dvfo")),
    Claim("dvfo-latency", DVFO, "abstract", "DVFO's end-to-end latency reduction against them", "28.6–59.1 %",
          DVFO_SETTING.text, Range(28.6, 59.1), ("dvfo",),
          against(DVFO_BASELINES, latency_reduction_pct, "%", DVFO_SETTING, subject=DVFO_LABEL, which="dvfo")),
    Claim("dvfo-accuracy", DVFO, "abstract", "DVFO's accuracy loss against edge-only inference", "within 1 % "
          "(on average)", DVFO_SETTING.text, AtMost(1.0), ("dvfo",), dvfo_accuracy_loss),
    Claim("bcedge-utility", BCEDGE, "abstract", "BCEdge's utility gain over its baselines (batch 1, Triton-style "
          "dynamic batching, load-scaled instances, the best static configuration), at best", "up to 37.6 %",
          _BCEDGE_SETTING, Point(37.6), ("bcedge",),
          bcedge_against(utility_gain_pct, "%", positive="utility_per_interval")),
    Claim("bcedge-slo", BCEDGE, "abstract", "BCEdge's SLO violations", "within 5 %", _BCEDGE_SETTING, AtMost(5.0),
          ("bcedge",), bcedge_violations),
    Claim("bcedge-memory", BCEDGE, "abstract", "BCEdge's memory saving over its baselines, at best", "up to 38 %",
          _BCEDGE_SETTING, Point(38.0), ("bcedge",), bcedge_against(memory_saving_pct, "%")),
)

#: Seed papers whose claims are not checked yet: ``(paper, its claims, why not)``. A claim moves into :data:`CLAIMS`
#: (one entry each) once its method and benchmark exist.
NOT_BUILT: tuple[tuple[str, str, str], ...] = ()


@dataclass(frozen=True)
class ClaimResult:
    """A claim judged: the emulated figure (or why there is none), the verdict and its reason."""

    claim: Claim
    result: Estimate | NotComparable
    verdict: str
    reason: str

    @property
    def emulated(self) -> str:
        """The emulated figure with its interval, or ``–``."""
        return self.result.text() if isinstance(self.result, Estimate) else "–"


def judge(claim: Claim, ev: Evidence) -> ClaimResult:
    """Compute ``claim``'s emulated figure from ``ev`` and give its verdict (module docstring)."""
    res = claim.compute(ev)
    if isinstance(res, NotComparable):
        return ClaimResult(claim, res, NOT_COMPARABLE, res.reason)
    if not res.values or not all(math.isfinite(v) for v in res.values):
        return ClaimResult(claim, NotComparable("the emulated figure is not finite"), NOT_COMPARABLE,
                           "the emulated figure is not finite (a reference is zero or missing)")
    verdict, reason = claim.rule.judge(res)
    return ClaimResult(claim, res, verdict, f"{reason}; {res.note}" if res.note else reason)


# ---------------------------------------------------------------------------------------------- running


def run_dutt(seeds: Sequence[int], devices: Sequence[str] = DUTT_DEVICES) -> dict[tuple[str, str, int], DuttRun]:
    """Dutt et al.'s experiment on the emulator for every board, network and seed (``e4gym calibrate``'s)."""
    from e4gym.dnn.profile import load_model_profile
    from e4gym.hardware.spec import load_device

    out = {}
    for d in devices:
        spec = load_device(d)
        for m in DUTT_MODELS:
            profile = load_model_profile(m)
            for s in seeds:
                levels, best_j = best_static(spec, profile, seed=s)
                out[(d, m, s)] = DuttRun(default_governor_energy(spec, profile, seed=s), best_j, levels)
    return out


@dataclass
class Reproduction:
    """What :func:`run_reproduce` produced.

    Attributes:
        out: the output folder. results: every claim judged, in registry order. evidence: what they read.
        quick: the quick mode. ran / reused: bench tasks run now / reused. failures: bench tasks that failed.
        wall_s: the invocation's duration (s). report: ``report.md``'s text. files: the files written.
    """

    out: Path
    results: list[ClaimResult]
    evidence: Evidence
    quick: bool
    ran: int
    reused: int
    failures: list[Any]
    wall_s: float
    report: str
    files: list[Path]

    @property
    def verdicts(self) -> dict[str, str]:
        """Claim key -> verdict."""
        return {r.claim.key: r.verdict for r in self.results}


def check_out(out: Path, quick: bool, config: str, force: bool) -> None:
    """Refuse, before anything runs, an ``out`` that cannot take the outputs, or that holds a run of the other
    mode or of another config (unless ``force``)."""
    import json

    problem = output_dir_problem(out)
    if problem:
        raise ConfigError(f"output folder {problem}; pass a writable folder as --out")
    for name in OUTPUT_FILES:
        p = out / name
        if os.path.lexists(p) and not p.is_file():
            raise ConfigError(f"{p} is not a file: e4gym reproduce writes its {name} there; move it or pass another "
                              "--out")
    state = out / STATE_FILE
    if state.is_file() and not force:
        try:
            prev = json.loads(state.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            prev = {}
        mode = "quick" if quick else "full"
        if isinstance(prev, dict) and prev.get("mode") not in (None, mode):
            raise ConfigError(f"{out} holds a {prev['mode']} run of e4gym reproduce; pass --force to replace it with "
                              f"a {mode} one, or pick another --out")
        if isinstance(prev, dict) and prev.get("config") not in (None, config):
            raise ConfigError(f"{out} holds a run of the config {prev['config']!r}, not {config!r}; pass --force to "
                              "replace it, or pick another --out")


def run_reproduce(
    out: str | Path | None = None,
    quick: bool = False,
    jobs: int | None = None,
    force: bool = False,
    quiet: bool = True,
    config: str | Path | Mapping[str, Any] = DEFAULT_CONFIG,
    frames: int | None = None,
    seeds: Sequence[int] | None = None,
    claims: Sequence[Claim] = CLAIMS,
    command: str | None = None,
    sweep_frames: int | None = None,
    dvfo_config: str | Path | Mapping[str, Any] = DVFO_CONFIG,
    bcedge_config: str | Path | Mapping[str, Any] = BCEDGE_CONFIG,
    executor: str = "local",
    address: str | None = None,
) -> Reproduction:
    """Run what ``claims`` need, judge them, write the report and figures under ``out``.

    Args:
        out: the output folder (default :data:`DEFAULT_OUT`, or :data:`QUICK_OUT` when ``quick``).
        quick: :data:`QUICK_SEEDS` and :data:`QUICK_FRAMES` (unless ``seeds`` / ``frames`` are given).
        jobs / force / quiet: as for ``e4gym bench`` (worker processes; re-run finished tasks; no progress bar).
        config: the bench experiment the E4 claims read (a name, a path or a mapping). frames / seeds: override
            its frames per episode and seeds (DVFO's experiment's too). claims: the claims to judge. command: the
            command line to record.
        sweep_frames: frames the Fig. 1 sweep measures the default governors over (default: the sweep's).
        dvfo_config / bcedge_config: the experiments DVFO's and BCEdge's claims read (run into ``out/bench-dvfo``
            and ``out/bench-bcedge`` when a claim needs them).
        executor / address: where the bench tasks run, as for :func:`e4gym.bench.runner.run_benchmark`. With
            ``executor="ray"`` every experiment runs in one :func:`e4gym.bench.runner.ray_session`: one Ray instance
            of this machine (``jobs`` CPUs, default the CPU count; started only if a task is to run) or one
            connection to the cluster at ``address`` (checked first), shut down or closed when the runs end.

    Raises:
        ConfigError / UnknownNameError: a bad config or output folder, or no Ray cluster answering at
            ``address``; nothing runs.
    """
    from contextlib import nullcontext

    from e4gym.bench.config import load_experiment
    from e4gym.bench.runner import EXECUTORS, check_ray_address, import_ray, ray_session, run_benchmark

    t0 = time.perf_counter()
    if executor not in EXECUTORS or (address is not None and executor != "ray"):
        raise ConfigError(f"executor must be one of {list(EXECUTORS)} (address only with 'ray'), got "
                          f"{executor!r} with address {address!r}")
    if executor == "ray":
        import_ray()  # Ray missing: one line before anything is written
        if address is not None:
            check_ray_address(address)  # nothing answers there: one line now, before the configs load
    out = Path(out if out is not None else QUICK_OUT if quick else DEFAULT_OUT)
    if quick:
        seeds = list(QUICK_SEEDS) if seeds is None else seeds
        frames = QUICK_FRAMES if frames is None else frames
    config_name = config if isinstance(config, (str, Path)) else "<dict>"
    needs = {n for c in claims for n in c.needs}
    loaded = load_experiment(config, frames=frames, seeds=seeds)  # also the seeds of the other experiments
    exp = loaded if "bench" in needs else None
    configs = {"dvfo": dvfo_config, "bcedge": bcedge_config}
    extra_exps = {name: _load_extra(configs[name], frames, seeds) for name in EXTRA_EXPERIMENTS if name in needs}
    run_seeds = tuple(loaded.seeds)
    check_out(out, quick, str(config_name), force)
    ev = Evidence(seeds=run_seeds)
    ran = reused = 0
    failures: list[Any] = []
    # One Ray for every experiment (started when a run first has a task for it, shut down when the last ends, also
    # on an error or Ctrl-C); a wrong --address is refused here, before anything is written.
    with ray_session(address, jobs) if executor == "ray" else nullcontext():
        write_json(out / STATE_FILE, {"mode": "quick" if quick else "full", "config": str(config_name),
                                      "status": "running", "command": command})
        if exp is not None:
            res = run_benchmark(exp, out / BENCH_DIR, jobs=jobs, force=force, quiet=quiet, plots=False,
                                tensorboard=False, executor=executor, address=address)
            ran, reused, failures = res.ran, res.reused, list(res.failures)
            ev.experiment = exp
            ev.rows = {(r["scenario"], r["label"], int(r["seed"])): r for r in res.rows}
        for name, extra_exp in extra_exps.items():
            _say(quiet, f"the {extra_exp.name} experiment ({extra_exp.n_tasks} tasks; learned agents trained per "
                        "scenario) ...")
            res = run_benchmark(extra_exp, out / EXTRA_EXPERIMENTS[name][1], jobs=jobs, force=force, quiet=quiet,
                                plots=False, tensorboard=False, executor=executor, address=address)
            ran, reused, failures = ran + res.ran, reused + res.reused, failures + list(res.failures)
            ev.extra[name] = (extra_exp, {(r["scenario"], r["label"], int(r["seed"])): r for r in res.rows})
    if "dutt" in needs:
        _say(quiet, "Dutt et al.'s experiments (Nano, Xavier NX) ...")
        ev.dutt = run_dutt(run_seeds)
    if "sweep" in needs:
        from e4gym.bench.sweep import DEFAULT_FRAMES, frequency_sweep

        _say(quiet, "E4 Fig. 1's frequency sweep (Xavier NX) ...")
        ev.sweep = frequency_sweep(FIG1_DEVICE, FIG1_MODEL, fps=FIG1_FPS, frames=sweep_frames or DEFAULT_FRAMES,
                                   seed=run_seeds[0])
    results = [judge(c, ev) for c in claims]
    files: list[Path] = []
    if ev.sweep is not None:
        plot_fig1(ev.sweep, out / FIG1_FILE)
        files.append(out / FIG1_FILE)
    if exp is not None and ev.rows:
        plot_fig3(exp, ev.rows, out / FIG3_FILE)
        files.append(out / FIG3_FILE)
    wall = time.perf_counter() - t0
    report = render_report(results, ev, quick=quick, command=command, wall_s=wall, ran=ran, reused=reused,
                           failures=failures, figures=[f.name for f in files], config=str(config_name),
                           seeds_overridden=seeds is not None)
    write_text(out / REPORT_FILE, report)
    write_json(out / STATE_FILE, {
        "mode": "quick" if quick else "full", "config": str(config_name), "status": "done", "command": command,
        "wall_s": wall, "seeds": list(run_seeds), "frames": _frames(exp, *extra_exps.values()), "tasks_run": ran,
        "tasks_reused": reused,
        "failures": [f.describe() for f in failures],
        "claims": [{"key": r.claim.key, "paper": r.claim.paper, "published": r.claim.published, "verdict": r.verdict,
                    "reason": r.reason,
                    **({"mean": r.result.mean, "low": r.result.low, "high": r.result.high, "unit": r.result.unit,
                        "seeds": list(r.result.seeds), "values": list(r.result.values)}
                       if isinstance(r.result, Estimate) else {})} for r in results],
    })
    files = [out / REPORT_FILE, out / STATE_FILE, *files]
    return Reproduction(out, results, ev, quick, ran, reused, failures, time.perf_counter() - t0, report, files)


def _load_extra(config: str | Path | Mapping[str, Any], frames: int | None, seeds: Sequence[int] | None) -> Experiment:
    """One of the other experiments with the run's seeds; ``frames`` (frames per episode, e.g. ``--quick``'s) applies
    to a frame-env experiment only: a serving experiment keeps its decision intervals per episode (its learned agent's
    cached training stays valid)."""
    from e4gym.bench.config import load_experiment

    exp = load_experiment(config, seeds=seeds)
    return exp if frames is None or exp.family == "serving" else load_experiment(config, frames=frames, seeds=seeds)


def _frames(*exps: Experiment | None) -> list[int]:
    """The frames per episode of the experiments' scenarios."""
    from e4gym.envs.core import DEFAULT_EPISODE_FRAMES

    return sorted({int(sc.env_kwargs.get("episode_frames", DEFAULT_EPISODE_FRAMES)) for exp in exps
                   if exp is not None and exp.family != "serving" for sc in exp.scenarios})


def _say(quiet: bool, text: str) -> None:
    if not quiet:
        print(f"e4gym reproduce: {text}", file=sys.stderr)


# ---------------------------------------------------------------------------------------------- report


def _duration(s: float) -> str:
    m, sec = divmod(round(s), 60)
    return f"{m} min {sec} s" if m else f"{s:.1f} s"


def verdict_table(results: Sequence[ClaimResult]) -> str:
    """The verdict table: one row per claim."""
    rows = [[str(i), r.claim.text, f"{r.claim.paper}, {r.claim.where}", r.claim.published, r.emulated,
             f"**{r.verdict}**", r.reason] for i, r in enumerate(results, 1)]
    return markdown_table(["#", "claim", "source", "published", "emulated", "verdict", "reason"], rows, align="rllllll")


def render_report(results: Sequence[ClaimResult], ev: Evidence, *, quick: bool, command: str | None, wall_s: float,
                  ran: int, reused: int, failures: Sequence[Any], figures: Sequence[str], config: str,
                  seeds_overridden: bool = False) -> str:
    """The Markdown report: the verdict table first, then what is not checked, the figures, the details, the runs."""
    exp = ev.experiment
    frames = _frames(exp, *(e for e, _ in ev.extra.values()))
    seeds = ", ".join(map(str, ev.seeds))
    counts = {v: sum(r.verdict == v for r in results) for v in VERDICTS}
    parts = ["# e4gym reproduce: the seed papers' claims on the emulator", ""]
    if quick:
        parts += [f"> **Quick run** (seeds {seeds}; {', '.join(map(str, frames)) or '–'} frames per episode): **not a "
                  f"headline result**. Intervals over {len(ev.seeds)} seeds are wide; the full run is `e4gym "
                  "reproduce` (the config's seeds and frames).", ""]
    parts += [f"Command: `{command or 'e4gym reproduce'}`. Wall time: **{_duration(wall_s)}** ({ran} bench task(s) "
              f"run, {reused} reused). Seeds {seeds}; frames per episode {', '.join(map(str, frames)) or '–'}."
              + (f" Config `{exp.source}` (sha256 `{exp.sha256[:16]}`)." if exp is not None else ""), "",
              f"{len(results)} claims: {counts[REPRODUCED]} reproduced, {counts[NOT_REPRODUCED]} not reproduced, "
              f"{counts[NOT_COMPARABLE]} not comparable.", ""]
    if failures:
        parts += [f"**{len(failures)} bench task(s) failed**; the claims are judged on what finished:", ""]
        parts += [f"- {f.describe()}" for f in failures] + [""]
    parts += ["## Verdicts", "", verdict_table(results), "",
              f"Emulated figures are means over the seeds, [95 % confidence interval] (Student's t over seeds; none "
              f"for a noise-free model figure). Energy saving = `1 − E_E4 / E_baseline` per frame (idle wait "
              f"included), speedup = the baseline's mean frame latency (queueing included) over E4's, both paired "
              f"by seed and averaged over the comparable scenarios. E4 and a baseline are compared in a scenario only "
              f"when neither misses more than {100 * MAX_MISS_RATE:g} % of deadlines and E4 loses at most "
              f"{100 * MAX_ACCURACY_LOSS:g} accuracy point against it (means over seeds). A range is reproduced when "
              f"the emulated mean lies in it (across networks: when every network's does); a single value when the "
              f"mean is within {100 * POINT_TOLERANCE:g} % of it (for ranges and values, whether the interval reaches "
              "the published figure is said, not counted); an order (larger) when the difference's whole interval "
              "is above 0.", ""]
    parts += ["## Not checked yet", ""]
    parts += [f"- **{p}**: {c}. {why}." for p, c, why in NOT_BUILT] or ["Every seed paper's claims are checked."]
    parts += [""]
    if figures:
        parts += ["## Figures", ""]
        if FIG1_FILE in figures and ev.sweep is not None:
            parts += [f"**E4 Fig. 1, redrawn from the emulator** (`e4gym sweep --device {FIG1_DEVICE} --model "
                      f"{FIG1_MODEL}`): latency and board power while running over every CPU × GPU pair, noise-free "
                      "model; the black line bounds the pairs meeting the 33.3 ms period with the sweep's 10 % "
                      "headroom.", "", f"![E4 Fig. 1 redrawn]({FIG1_FILE})", ""]
        if FIG3_FILE in figures:
            parts += [f"**E4 Fig. 3, from the bench results** ({PAPER.text}): average board power and mean frame "
                      "latency per method and board, means over seeds with 95 % intervals.", "",
                      f"![E4 Fig. 3 redrawn]({FIG3_FILE})", ""]
    parts += ["## Details", ""]
    for i, r in enumerate(results, 1):
        c = r.claim
        parts += [f"### {i}. {c.text} (`{c.key}`)", "",
                  f"{c.paper}, {c.where}: {c.published}. Setting: {c.setting}. Verdict: **{r.verdict}**: {r.reason}.",
                  ""]
        res = r.result
        if isinstance(res, Estimate):
            parts += [f"- {u}" for u in res.used]
            if len(res.seeds) > 1 or res.seeds != (-1,):
                parts.append("- per seed: " + ", ".join(f"{s}: {fmt(v, res.unit)}" for s, v in zip(res.seeds,
                                                                                                   res.values)))
            if res.groups:
                parts.append("- parts: " + "; ".join(f"{n}: {fmt(v, res.unit)}" for n, v in res.groups))
        parts += [f"- left out: {x}" for x in res.excluded] + [""]
    parts += ["## Runs", ""]

    def rerun(e: Experiment, conf: str, folder: str) -> str:
        """The command that redraws an experiment's plots and TensorBoard runs (reusing every task)."""
        extra = (f" --frames {e.episode_frames}" if e.episode_frames is not None else "") + \
            (f" --seeds {' '.join(map(str, ev.seeds))}" if seeds_overridden else "")
        return f"`e4gym bench --config {conf} --out OUT/{folder}{extra}` (reuses every task)"

    if exp is not None:
        parts += [f"- The bench experiment's tables: [`{BENCH_DIR}/report.md`]({BENCH_DIR}/report.md) and "
                  f"`{BENCH_DIR}/results.csv`. Its plots and TensorBoard runs: {rerun(exp, config, BENCH_DIR)}."]
    for name, (dexp, _) in ev.extra.items():
        folder = EXTRA_EXPERIMENTS[name][1]
        parts += [f"- The {dexp.name} experiment: [`{folder}/report.md`]({folder}/report.md) and "
                  f"`{folder}/results.csv`; its plots: {rerun(dexp, str(dexp.source), folder)}. Its learned agent "
                  "is trained per scenario (and per training seed, `train_seeds`) and cached like zTT."]
    parts += ["- Dutt et al.'s experiments: `e4gym.hardware.calibration` (`best_static`, `default_governor_energy`), "
              "the functions `e4gym calibrate` checks with, once per seed.",
              "- The learned baselines zTT and Ring-DVFS are trained per scenario and cached in "
              "`$E4GYM_CACHE_DIR/trained` (default `~/.cache/e4gym/trained`)."]
    return "\n".join(parts).rstrip() + "\n"


# ---------------------------------------------------------------------------------------------- figures


def plot_fig1(sweep: SweepResult, path: Path) -> None:
    """E4 Fig. 1 redrawn: latency per frame and board power while running over CPU × GPU (two heatmaps, the
    sweep's panels and markers), written atomically to ``path``."""
    import io

    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    from e4gym.bench.sweep import MARKERS, heatmap_panel

    r = sweep
    top = (len(r.cpu_hz) - 1, len(r.gpu_hz) - 1)
    fig = Figure(figsize=(12.5, 6.0), dpi=110, layout="constrained")
    axes = fig.subplots(1, 2)
    heatmap_panel(axes[0], r.latency_s * 1e3, "Latency per frame", "latency (ms)", "viridis", r, hatch=False)
    heatmap_panel(axes[1], r.run_power_w, "Board power while running", "board power (W)", "magma", r, hatch=False)
    fig.suptitle(f"E4 Fig. 1 on the emulator: {r.device_name}, EfficientNet-B0, batch 1. Top clocks: "
                 f"{r.latency_s[top] * 1e3:.1f} ms at {r.run_power_w[top]:.2f} W (paper: about 30 ms, 8.6 W)",
                 fontsize=11)
    handles = [Line2D([], [], linestyle="none", label="default governors (mean clocks)", **MARKERS["default"]),
               Line2D([], [], linestyle="none", label="cheapest pair meeting 30 fps", **MARKERS["best"]),
               Line2D([], [], color="black", linewidth=1.4, label="30 fps boundary (10 % headroom)")]
    fig.legend(handles=handles, loc="outside lower center", ncols=3, fontsize=9, frameon=False)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    atomic_write(path, lambda f: f.write(buf.getvalue()))


def plot_fig3(exp: Experiment, rows: Mapping[tuple[str, str, int], Mapping[str, Any]], path: Path,
              setting: Setting = PAPER) -> None:
    """E4 Fig. 3 from the bench results: average board power (W) and mean frame latency (ms) per method, grouped
    by board, one column per network, bars the mean over seeds with 95 % intervals; latency on a log axis when
    queues make it span more than :data:`e4gym.bench.plots.LOG_RATIO`. Written atomically to ``path``."""
    import io

    from matplotlib.figure import Figure

    from e4gym.bench.plots import LOG_RATIO, policy_styles

    scen = [sc for sc in exp.scenarios if setting.matches(sc)]
    models = list(dict.fromkeys(sc.model for sc in scen))
    devices = list(dict.fromkeys(sc.device for sc in scen))
    labels = [p.label for p in exp.policies]
    styles = policy_styles(labels)
    fig = Figure(figsize=(max(7.0, 6.0 * len(models)), 8.0), dpi=110, layout="constrained")
    axes = np.atleast_2d(fig.subplots(2, max(1, len(models)), squeeze=False))
    width = 0.8 / max(1, len(labels))
    for j, model in enumerate(models):
        for i, (key, unit, title) in enumerate((("avg_power_w", "average board power (W)", "Power"),
                                                ("latency_mean_ms", "mean frame latency (ms)", "Latency"))):
            ax = axes[i, j]
            tops: list[float] = []
            for k, lab in enumerate(labels):
                means, errs = [], []
                for d in devices:
                    sc = next((s for s in scen if s.model == model and s.device == d), None)
                    vals = [float(rows[(sc.name, lab, s)][key]) for s in exp.seeds
                            if sc is not None and (sc.name, lab, s) in rows]
                    means.append(float(np.mean(vals)) if vals else math.nan)
                    h = ci95_halfwidth(vals)
                    errs.append(h if math.isfinite(h) else 0.0)
                x = np.arange(len(devices)) + (k - (len(labels) - 1) / 2) * width
                ax.bar(x, means, width, yerr=errs, capsize=2, color=styles[lab][0], label=lab,
                       hatch="//" if lab == E4_LABEL else None, edgecolor="black", linewidth=0.4)
                tops += [m for m in means if math.isfinite(m) and m > 0]
            if key == "latency_mean_ms":
                period = 1e3 / float(setting.fps) if isinstance(setting.fps, (int, float)) else None
                if period:
                    ax.axhline(period, color="black", linestyle="--", linewidth=1, label="frame period")
                if tops and max(tops) > LOG_RATIO * min(tops):
                    ax.set_yscale("log")
            ax.set_xticks(np.arange(len(devices)), devices, rotation=20, ha="right", fontsize=8)
            ax.set_ylabel(unit)
            ax.set_title(f"{title}, {model}", fontsize=10)
            ax.grid(axis="y", alpha=0.3)
    handles, names = axes[1, 0].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside lower center", ncols=len(names), fontsize=9, frameon=False)
    fig.suptitle(f"E4 Fig. 3 on the emulator: {setting.text}\nmeans over seeds {list(exp.seeds)}, 95 % intervals",
                 fontsize=11)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    atomic_write(path, lambda f: f.write(buf.getvalue()))


# ---------------------------------------------------------------------------------------------- command


def resume_command(args: argparse.Namespace) -> str:
    """The command that resumes ``args``' run: the same options without ``--force``."""
    argv = ["e4gym", "reproduce", "--out", str(args.out or (QUICK_OUT if args.quick else DEFAULT_OUT))]
    if args.quick:
        argv.append("--quick")
    if args.jobs is not None:
        argv += ["--jobs", str(args.jobs)]
    if args.quiet:
        argv.append("--quiet")
    if args.config != DEFAULT_CONFIG:
        argv += ["--config", str(args.config)]
    if args.dvfo_config != DVFO_CONFIG:
        argv += ["--dvfo-config", str(args.dvfo_config)]
    if args.bcedge_config != BCEDGE_CONFIG:
        argv += ["--bcedge-config", str(args.bcedge_config)]
    for option, attr in (("--executor", "executor"), ("--address", "address")):
        if getattr(args, attr, None) is not None:
            argv += [option, str(getattr(args, attr))]
    return shlex.join(argv)


def _command(args: argparse.Namespace) -> str:
    cmd = resume_command(args)
    return cmd + " --force" if args.force else cmd


def cmd_reproduce(args: argparse.Namespace) -> int:
    """Run ``e4gym reproduce``: print the verdict table; exit status as the module docstring says."""
    out = Path(args.out or (QUICK_OUT if args.quick else DEFAULT_OUT))
    try:
        rep = run_reproduce(out, quick=args.quick, jobs=args.jobs, force=args.force, quiet=args.quiet,
                            config=args.config, dvfo_config=args.dvfo_config, bcedge_config=args.bcedge_config,
                            command=_command(args), executor=getattr(args, "executor", None) or "local",
                            address=getattr(args, "address", None))
    except KeyboardInterrupt:
        print(f"e4gym reproduce: interrupted; finished tasks are kept under {out / BENCH_DIR / 'runs'}, resume with: "
              f"{resume_command(args)}", file=sys.stderr)
        return 130
    print(verdict_table(rep.results))
    counts = {v: sum(r.verdict == v for r in rep.results) for v in VERDICTS}
    print(f"\n{counts[REPRODUCED]} reproduced, {counts[NOT_REPRODUCED]} not reproduced, {counts[NOT_COMPARABLE]} not "
          f"comparable{' (quick run: not a headline result)' if rep.quick else ''}")
    print(f"outputs in {rep.out}: {', '.join(p.name for p in rep.files)}, {BENCH_DIR}/, {DVFO_BENCH_DIR}/, "
          f"{BCEDGE_BENCH_DIR}/ ({rep.ran} task(s) run, "
          f"{rep.reused} reused, {_duration(rep.wall_s)})")
    from e4gym.bench.cli import report_failures

    return report_failures("reproduce", rep.failures)


def add_reproduce_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``reproduce`` verb."""
    from e4gym.bench.cli import _positive_int, add_executor_arguments

    p = sub.add_parser("reproduce", help="every claim of the seed papers against the emulator, with a verdict; one "
                       "report (Markdown + PNG)", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=None, metavar="DIR",
                   help=f"output folder (default {DEFAULT_OUT}, or {QUICK_OUT} with --quick; reused: finished tasks "
                        "are not run again)")
    p.add_argument("--quick", action="store_true",
                   help=f"seeds {' '.join(map(str, QUICK_SEEDS))} and {QUICK_FRAMES} frames per episode (not a "
                        "headline result)")
    p.add_argument("--jobs", type=_positive_int, default=None,
                   help="worker processes (default: min(CPU count, tasks to run); 1 runs in-process)")
    p.add_argument("--force", action="store_true",
                   help="re-run the bench tasks that have a result; replace a run of the other mode in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--config", default=DEFAULT_CONFIG,
                   help="the bench experiment the E4 claims read (default: reproduce; its labels e4, ztt, ring-dvfs "
                        "and default are what the claims read)")
    p.add_argument("--dvfo-config", default=DVFO_CONFIG,
                   help=f"the bench experiment DVFO's claims read (default: {DVFO_CONFIG}; its labels dvfo, edge_only, "
                        "e4, cloud_only and best_static_offload are what the claims read)")
    p.add_argument("--bcedge-config", default=BCEDGE_CONFIG,
                   help=f"the bench experiment BCEdge's claims read (default: {BCEDGE_CONFIG}; its labels bcedge, "
                        "batch1, triton_dynamic, scale_with_load and best_static_batching are what the claims read)")
    add_executor_arguments(p)
    p.set_defaults(func=cmd_reproduce)
