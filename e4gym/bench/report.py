"""The tables of a benchmark: ``results.csv`` and ``results.json`` (one row per task) and ``report.md``.

``report.md`` has one Markdown table per scenario, one line per policy, aggregated over the seeds (mean, and
± the 95 % confidence interval of the mean over seeds, Student's t, for the energy and the relative changes
when there are several):

| column | meaning |
|---|---|
| seeds | seeds with a result |
| energy J/frame | true energy per frame, idle wait included (J); ± the 95 % CI of the mean over seeds (t) |
| measured J/frame | the same as the board's power monitor reports it (J) |
| vs default % | energy change against the ``default`` policy (stock Linux governors) on the same seeds, %, ± 95 % CI |
| vs oracle % | energy above the clairvoyant ``oracle`` (its bound) on the same seeds, %, ± 95 % CI |
| lat mean / p95 / p99 ms | frame latency, queueing included (ms) |
| miss % | frames over the deadline (%) |
| acc % | frames whose exit predicted the right class (%) |
| Δacc pts | accuracy minus the ``performance`` policy's, in percentage points |
| exit | mean exit index (0-based) |
| throttled % | frames under the thermal cap (%) |
| switches/frame | clock domains that changed per frame (0..3) |
| decide p50 / p99 ms | median / 99th percentile of the policy's per-frame decision time (``predict``, ms) |
| profiling runs / % E | profiling runs the policy ran on the board per episode, and their share of its energy (%) |
| profiler evals / share % | a policy's ``stats()`` ``profiler_evaluations`` and ``profiler_share`` (when reported) |
| offline s | board time the policy's measured cost model took to measure, before the episode (``offline_s``, s) |
| score | normalised score (:mod:`e4gym.bench.score`: 0 = ``default``, 1 = strict oracle) ± 95 % CI; ``✗``: broken |

With the strict oracle (``oracle`` with ``hopeless: first``) and ``default`` in the experiment, the report opens
with the **suite score** of each policy: its mean score over the scenarios, with a 95 % bootstrap interval.
``results.json`` holds the same under ``scores`` (:func:`scores_json`).

The reference policies (``default``, ``oracle``, ``performance``) are found by policy name; a cell is ``–``
when the reference is not in the experiment. Clairvoyant policies are marked ``(bound)``: they read the
future and bound what a deployable policy can reach. The decision times are wall times of the policy's
``predict`` calls for a frame with one torch thread, on the machine that ran the benchmark (the per-seed
percentiles, averaged over seeds).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from e4gym.bench.config import Experiment
from e4gym.bench.metrics import ID_COLUMNS, METRICS, SERVING_METRICS, TAIL_COLUMNS
from e4gym.bench.score import (
    MAX_ACCURACY_LOSS,
    MAX_MISS_RATE,
    ScenarioScore,
    SuiteScore,
    experiment_scores,
    suite_scores,
)
from e4gym.io import write_json, write_text
from e4gym.markdown import markdown_table

#: The files :func:`write_tables` writes under the output folder.
OUTPUT_FILES = ("results.csv", "results.json", "report.md")
#: Policy names the relative columns compare against.
REFERENCES = {"default": "default", "oracle": "oracle", "performance": "performance"}
#: Policy ``stats()`` keys the report shows (as columns, when a scenario has them).
PROFILER_KEYS = ("profiler_evaluations", "profiler_share", "offline_s")
_PROFILER_HEADERS = {"profiler_evaluations": "profiler evals", "profiler_share": "profiler share %",
                     "offline_s": "offline s"}
_DASH = "–"


@dataclass(frozen=True)
class PolicySummary:
    """One policy's results in one scenario, over its seeds.

    Attributes:
        label / policy: the entry's label and policy name. clairvoyant: reported as a bound.
        seeds: the seeds with a result. mean / std: per numeric column, over the seeds (std 0 for one seed).
        values: per numeric column, the per-seed values in the order of ``seeds``.
    """

    label: str
    policy: str
    clairvoyant: bool
    seeds: tuple[int, ...]
    mean: dict[str, float]
    std: dict[str, float]
    values: dict[str, np.ndarray] = field(default_factory=dict)

    def ci95(self, key: str) -> float:
        """Half-width of the 95 % confidence interval of the mean of ``key`` over the seeds (NaN for one)."""
        return ci95_halfwidth(self.values.get(key, np.array([])))


#: Two-sided 97.5 % quantiles of Student's t for 1..30 degrees of freedom (beyond: the normal's 1.96).
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042)


def ci95_halfwidth(values: Any) -> float:
    """Half-width of the 95 % confidence interval of the mean of ``values`` (Student's t; NaN under 2 values)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    n = len(v)
    if n < 2:
        return math.nan
    t = _T975[n - 2] if n - 1 <= len(_T975) else 1.96
    return float(t * v.std(ddof=1) / math.sqrt(n))


def paired_change(s: PolicySummary, ref: PolicySummary | None, key: str) -> tuple[float, float]:
    """Mean and 95 % CI half-width (%) of the per-seed change of ``key`` against ``ref`` on the same seeds."""
    if ref is None or key not in s.values or key not in ref.values:
        return math.nan, math.nan
    base = dict(zip(ref.seeds, ref.values[key]))
    rel = [100.0 * (x - base[sd]) / base[sd] for sd, x in zip(s.seeds, s.values[key])
           if sd in base and math.isfinite(base[sd]) and base[sd] > 0]
    if not rel:
        return math.nan, math.nan
    return float(np.mean(rel)), ci95_halfwidth(rel)


def result_columns(exp: Experiment, rows: Sequence[dict[str, Any]]) -> list[str]:
    """The column order of the result tables: ids, matrix parameters, metrics, policy stats, tail."""
    cols = list(ID_COLUMNS)
    cols += [k for k in exp.matrix_keys if k not in cols]
    cols += list(SERVING_METRICS if exp.family == "serving" else METRICS)
    for r in rows:
        cols += [k for k in r if k not in cols and k not in TAIL_COLUMNS]
    return cols + list(TAIL_COLUMNS)


def _csv_cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, (dict, list)):
        return json.dumps(v, sort_keys=True)
    if isinstance(v, float):
        return repr(v)
    return str(v)


def to_csv(columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> str:
    """The rows as CSV (floats at full precision, missing cells empty)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    for r in rows:
        w.writerow([_csv_cell(r.get(c)) for c in columns])
    return buf.getvalue()


def aggregate(exp: Experiment, rows: Sequence[dict[str, Any]]) -> dict[str, list[PolicySummary]]:
    """Per scenario name, the :class:`PolicySummary` of each policy with at least one result (config order)."""
    out: dict[str, list[PolicySummary]] = {}
    for sc in exp.scenarios:
        items = []
        for p in exp.policies:
            rs = [r for r in rows if r["scenario"] == sc.name and r["label"] == p.label]
            if not rs:
                continue
            keys = [k for k in rs[0] if isinstance(rs[0][k], (int, float)) and not isinstance(rs[0][k], bool)]
            mean, std, values = {}, {}, {}
            for k in keys:
                vals = np.array([float(r.get(k, math.nan)) for r in rs], dtype=np.float64)
                mean[k] = float(vals.mean())
                std[k] = float(vals.std()) if len(vals) > 1 else 0.0
                values[k] = vals
            items.append(PolicySummary(p.label, p.name, any(bool(r["clairvoyant"]) for r in rs),
                                       tuple(int(r["seed"]) for r in rs), mean, std, values))
        out[sc.name] = items
    return out


def _reference(items: Sequence[PolicySummary], name: str) -> PolicySummary | None:
    cands = [s for s in items if s.policy == name]
    return next((s for s in cands if s.label == name), cands[0] if cands else None)


def _num(x: float, fmt: str) -> str:
    return _DASH if x is None or not math.isfinite(x) else format(x, fmt)


def _rel_ci(s: PolicySummary, ref: PolicySummary | None, key: str) -> str:
    """The paired per-seed change against ``ref`` (%), ``± CI95`` with several seeds."""
    if s is ref:
        return "+0.0"
    m, h = paired_change(s, ref, key)
    if not math.isfinite(m):
        return _DASH
    return _num(m, "+.1f") + (f" ± {h:.1f}" if math.isfinite(h) else "")


def _score_cell(sc: ScenarioScore | None) -> str:
    if sc is None:
        return _DASH
    if sc.broken:
        return f"✗ {sc.broken}"
    h = ci95_halfwidth(sc.scores)
    return _num(sc.mean, ".3f") + (f" ± {h:.3f}" if math.isfinite(h) else "")


def scenario_table(items: Sequence[PolicySummary], scores: Mapping[str, ScenarioScore] | None = None) -> str:
    """The Markdown table of one scenario (columns in the module docstring; ``score`` with ``scores``)."""
    ref_def, ref_orc, ref_perf = (_reference(items, REFERENCES[k]) for k in ("default", "oracle", "performance"))
    prof = [k for k in PROFILER_KEYS if any(k in s.mean for s in items)]
    headers = ["policy", "seeds", "energy J/frame", "measured J/frame", "vs default %", "vs oracle %",
               "lat mean ms", "p95 ms", "p99 ms", "miss %", "acc %", "Δacc pts", "exit", "throttled %",
               "switches/frame", "decide p50 ms", "decide p99 ms", "profiling runs", "profiling % E"]
    headers += [_PROFILER_HEADERS[k] for k in prof]
    if scores:
        headers.append("score")
    lines = []
    for s in items:
        m = s.mean
        e = m["energy_per_frame_j"]
        energy = _num(e, ".4f") + (f" ± {s.ci95('energy_per_frame_j'):.4f}" if len(s.seeds) > 1 else "")
        dacc = _DASH if ref_perf is None else _num(100.0 * (m["accuracy"] - ref_perf.mean["accuracy"]), "+.1f")
        cells = [
            s.label + (" (bound)" if s.clairvoyant else ""),
            str(len(s.seeds)),
            energy,
            _num(m["measured_energy_per_frame_j"], ".4f"),
            _rel_ci(s, ref_def, "energy_per_frame_j"),
            _rel_ci(s, ref_orc, "energy_per_frame_j"),
            _num(m["latency_mean_ms"], ".2f"),
            _num(m["latency_p95_ms"], ".2f"),
            _num(m["latency_p99_ms"], ".2f"),
            _num(100.0 * m["deadline_miss_rate"], ".2f"),
            _num(100.0 * m["accuracy"], ".2f"),
            dacc,
            _num(m["mean_exit"], ".2f"),
            _num(100.0 * m["throttled_share"], ".1f"),
            _num(m["switches_per_frame"], ".3f"),
            _num(m.get("decision_p50_ms", math.nan), ".3f"),
            _num(m.get("decision_p99_ms", math.nan), ".3f"),
            _num(m.get("profiling_runs", math.nan), ".0f"),
            _num(100.0 * m.get("profiling_share", math.nan), ".2f"),
        ]
        if "profiler_evaluations" in prof:
            cells.append(_num(m.get("profiler_evaluations", math.nan), ".0f"))
        if "profiler_share" in prof:
            cells.append(_num(100.0 * m.get("profiler_share", math.nan), ".2f"))
        if "offline_s" in prof:
            cells.append(_num(m.get("offline_s", math.nan), ".1f"))
        if scores:
            cells.append(_score_cell(scores.get(s.label)))
        lines.append(cells)
    return markdown_table(headers, lines)


def serving_table(items: Sequence[PolicySummary]) -> str:
    """The Markdown table of one scenario of a serving experiment (the batching env): per policy its utility per
    interval (± 95 % CI over seeds) and the paired difference to ``batch1`` (batch 1, one instance), throughput,
    goodput, p99 latency, SLO violations, energy per request, refusals, memory, decision time, and the board time a
    policy's sweep spent (``sweep_board_s``, when reported)."""
    ref = _reference(items, "batch1")
    sweep = any("sweep_board_s" in s.mean for s in items)
    headers = ["policy", "seeds", "utility/interval", "Δ vs batch1", "throughput req/s", "goodput req/s",
               "p99 ms", "SLO viol. %", "J/request", "refused %", "memory GB", "decide p50 ms", "decide p99 ms"]
    if sweep:
        headers.append("sweep board s")
    lines = []
    for s in items:
        m = s.mean
        u = m["utility_per_interval"]
        util = _num(u, ".3f") + (f" ± {s.ci95('utility_per_interval'):.3f}" if len(s.seeds) > 1 else "")
        if ref is None:
            delta = _DASH
        elif s is ref:
            delta = "+0.000"
        else:
            common = [i for i, x in enumerate(s.seeds) if x in ref.seeds]
            diffs = np.array([s.values["utility_per_interval"][i]
                              - ref.values["utility_per_interval"][ref.seeds.index(s.seeds[i])] for i in common])
            h = ci95_halfwidth(diffs)
            delta = _num(float(diffs.mean()), "+.3f") + (f" ± {h:.3f}" if math.isfinite(h) else "") if common \
                else _DASH
        cells = [s.label + (" (bound)" if s.clairvoyant else ""), str(len(s.seeds)), util, delta,
                 _num(m["throughput_rps"], ".2f"), _num(m["goodput_rps"], ".2f"), _num(m["p99_latency_ms"], ".1f"),
                 _num(100.0 * m["slo_violation_rate"], ".2f"), _num(m["energy_per_request_j"], ".4f"),
                 _num(100.0 * m["refused_rate"], ".1f"), _num(m["memory_gb"], ".2f"),
                 _num(m.get("decision_p50_ms", math.nan), ".3f"), _num(m.get("decision_p99_ms", math.nan), ".3f")]
        if sweep:
            cells.append(_num(m.get("sweep_board_s", math.nan), ".0f"))
        lines.append(cells)
    return markdown_table(headers, lines)


def render_report(exp: Experiment, rows: Sequence[dict[str, Any]], failures: Sequence[Any], ran: int,
                  reused: int, quarantined: int = 0) -> str:
    """The Markdown report: a header, one table per scenario, the failures, the column legend.

    ``quarantined``: stored results found damaged and moved to ``quarantine/`` (their tasks ran again).
    """
    serving = exp.family == "serving"
    count = "intervals" if serving else "frames"
    frames = sorted({int(r[count]) for r in rows})
    parts = [f"# Benchmark: {exp.name}", ""]
    if exp.description:
        parts += [exp.description.strip(), ""]
    parts += [
        f"{len(exp.scenarios)} scenario(s) × {len(exp.policies)} policies × {len(exp.seeds)} seed(s) "
        f"{list(exp.seeds)} = {exp.n_tasks} tasks; {len(rows)} with results ({ran} run now, {reused} reused), "
        f"{len(failures)} failed. {count.capitalize()} per episode: {', '.join(map(str, frames)) or _DASH}. "
        f"Config: `{exp.source}` (sha256 `{exp.sha256[:16]}`).",
        "",
    ]
    if quarantined:
        parts += [f"{quarantined} stored result(s) were damaged: moved to `quarantine/` and run again.", ""]
    agg = aggregate(exp, rows)
    scores = {} if serving else experiment_scores(exp, rows)
    suite = suite_scores(scores, [p.label for p in exp.policies]) if any(scores.values()) else {}
    if suite:
        parts += ["## Suite score", "", suite_table(suite), "",
                  f"0 = the `default` governors, 1 = the strict clairvoyant oracle; energy per frame, scored only "
                  f"where misses ≤ {100 * MAX_MISS_RATE:g} % and accuracy ≥ `default`'s − {100 * MAX_ACCURACY_LOSS:g} "
                  f"point on every seed (e4gym.bench.score). Mean over the scenarios scored, [95 % bootstrap "
                  f"interval over seeds].", ""]
    any_bound = False
    for sc in exp.scenarios:
        parts += [f"## {sc.title}", "", f"Scenario `{sc.name}`.", ""]
        items = agg.get(sc.name, [])
        if items:
            parts += [serving_table(items) if serving else scenario_table(items, scores.get(sc.name)), ""]
            any_bound = any_bound or any(s.clairvoyant for s in items)
        else:
            parts += ["No results.", ""]
    if failures:
        parts += ["## Failures", ""]
        parts += [f"- {f.describe()}" for f in failures]
        parts += [""]
    notes = [SERVING_NOTE] if serving else [
        "Energy: true board energy per frame including the idle wait until the next frame (J); measured: as the "
        "power monitor reports it. vs default / vs oracle: energy change against those policies on the same "
        "seeds (%). Latency includes queueing. Δacc: accuracy minus the `performance` policy's (percentage "
        "points). Means over seeds; ± the 95 % confidence interval of the mean (Student's t over seeds). decide "
        "p50 / p99: the policy's decision time per frame (wall time of its predict calls, one torch thread, on the "
        "machine that ran the benchmark), to compare with the frame period. profiling runs / % E: profiling frames "
        "the policy ran on the board during the episode and their share of its energy. offline s: board time spent "
        "measuring the policy's cost model before the episode (not in the episode's figures).",
    ]
    if any_bound:
        notes.append("")
        notes.append("(bound): clairvoyant policy, reads each frame's ground truth before running it; a bound, not "
                     "deployable.")
    parts += notes
    return "\n".join(parts).rstrip() + "\n"


#: The legend of a serving experiment's tables.
SERVING_NOTE = (
    "Utility: the env's reward per decision interval (its utility, the memory penalty included; "
    "e4gym.envs.batching.BCEdgeUtility unless the config names another), mean over seeds ± the 95 % confidence "
    "interval of the mean (Student's t); Δ vs batch1: the paired per-seed difference to `batch1` (batch 1, one "
    "instance per model). p99: the mean over the intervals of their p99 latency. SLO viol.: violations / requests "
    "arrived (a request violates once: late, or unserved when its deadline passed). J/request: board energy / "
    "requests completed. refused: intervals whose action needed more memory than the board has. decide: the "
    "policy's decision time per interval (wall time of its predict call). sweep board s: board time a policy's "
    "calibration sweep spent before the episode (not in the episode's figures).")


def suite_table(suite: Mapping[str, SuiteScore]) -> str:
    """The suite score per policy, best first (unscored policies last)."""
    order = sorted(suite.values(), key=lambda s: (not math.isfinite(s.mean), -s.mean if math.isfinite(s.mean) else 0))
    rows = [[s.label, f"{s.scored}/{s.scenarios}",
             _num(s.mean, ".3f") if s.scored else "✗ not scored",
             f"[{s.low:.3f}, {s.high:.3f}]" if s.scored else _DASH] for s in order]
    return markdown_table(["policy", "scenarios scored", "score", "95 % CI"], rows)


def scores_json(exp: Experiment, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The normalised scores as JSON: ``{"scenarios": {scenario: {label: {"seeds", "scores", "mean", "broken"}}},
    "suite": {label: {"mean", "low", "high", "scored", "scenarios"}}}`` (NaN as null; empty without the
    references)."""
    def num(x: float) -> float | None:
        return float(x) if math.isfinite(x) else None

    scores = {} if exp.family == "serving" else experiment_scores(exp, rows)
    suite = suite_scores(scores, [p.label for p in exp.policies]) if any(scores.values()) else {}
    return {
        "scenarios": {name: {label: {"seeds": list(sc.seeds), "scores": list(sc.scores), "mean": num(sc.mean),
                                     "broken": sc.broken} for label, sc in per.items()}
                      for name, per in scores.items() if per},
        "suite": {label: {"mean": num(st.mean), "low": num(st.low), "high": num(st.high), "scored": st.scored,
                          "scenarios": st.scenarios} for label, st in suite.items()},
    }


def write_tables(out: Path, exp: Experiment, rows: Sequence[dict[str, Any]], failures: Sequence[Any],
                 report: str) -> None:
    """Write ``results.csv``, ``results.json`` and ``report.md`` under ``out`` (atomically)."""
    cols = result_columns(exp, rows)
    csv_name, json_name, report_name = OUTPUT_FILES
    write_text(out / csv_name, to_csv(cols, rows))
    write_json(out / json_name, {
        "experiment": exp.name,
        "config": exp.source,
        "config_sha256": exp.sha256,
        "columns": cols,
        "rows": list(rows),
        "failures": [{"scenario": f.scenario, "label": f.label, "seed": f.seed, "error": f.error} for f in failures],
        "scores": scores_json(exp, rows),
    })
    write_text(out / report_name, report)
