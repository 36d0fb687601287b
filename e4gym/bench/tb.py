"""TensorBoard runs of a benchmark: ``tb/<scenario>/<policy label>/``, one run per (scenario, policy).

``tensorboard --logdir OUT/tb`` overlays the policies of a scenario. Each run has

* per-episode summaries, step = seed: :data:`SUMMARY_TAGS` (plus ``policy/<key>`` for a policy's ``stats()``);
* the per-frame trace of the first seed with a result, step = frame: :data:`TRACE_TAGS`;
* ``score/normalised`` per seed where the policy is scored (:mod:`e4gym.bench.score`), and under
  ``tb/_suite/<policy label>`` its suite score: ``suite/score``, ``suite/score_low``, ``suite/score_high`` (the 95 %
  bootstrap interval), step 0.

The runs are written by the parent process after all tasks, in TensorBoard's record format (no torch).
A scenario's runs are built in a temporary folder beside ``tb/<scenario>`` and swapped in whole when complete
(:func:`e4gym.io.staged_dir`): a re-run rewrites them cleanly, and a failure or Ctrl-C while writing leaves the
previous runs as they were. A scenario without results gets an empty folder.
"""

from __future__ import annotations

import io
import os
import socket
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from e4gym.bench.config import Experiment
from e4gym.bench.metrics import ID_COLUMNS, METRICS, SERVING_METRICS, TAIL_COLUMNS
from e4gym.bench.score import experiment_scores, suite_scores
from e4gym.io import atomic_write, staged_dir

#: Summary tag -> result column (step = seed).
SUMMARY_TAGS: dict[str, str] = {
    "energy/frame_j": "energy_per_frame_j",
    "energy/measured_frame_j": "measured_energy_per_frame_j",
    "latency/mean_ms": "latency_mean_ms",
    "latency/p95_ms": "latency_p95_ms",
    "latency/p99_ms": "latency_p99_ms",
    "deadline/miss_rate": "deadline_miss_rate",
    "accuracy/top1": "accuracy",
    "exit/mean": "mean_exit",
    "dvfs/switches_per_frame": "switches_per_frame",
    "thermal/throttled_share": "throttled_share",
    "thermal/peak_c": "peak_temp_c",
    "power/avg_w": "avg_power_w",
    "reward/episode": "episode_reward",
    "decision/mean_ms": "decision_mean_ms",
    "decision/p50_ms": "decision_p50_ms",
    "decision/p99_ms": "decision_p99_ms",
    "profiling/runs": "profiling_runs",
    "profiling/energy_j": "profiling_energy_j",
    "profiling/share": "profiling_share",
}
#: Trace tag -> (trace array, scale): the value written is ``array * scale`` (step = frame).
#: A serving experiment's per-episode summaries (tag -> result column) and per-interval trace (tag -> (array, scale)).
SERVING_SUMMARY_TAGS: dict[str, str] = {
    "serving/utility_per_interval": "utility_per_interval",
    "serving/throughput_rps": "throughput_rps",
    "serving/goodput_rps": "goodput_rps",
    "serving/p99_latency_ms": "p99_latency_ms",
    "serving/slo_violation_rate": "slo_violation_rate",
    "serving/energy_per_request_j": "energy_per_request_j",
    "serving/refused_rate": "refused_rate",
    "serving/memory_gb": "memory_gb",
    "reward/episode": "episode_reward",
    "decision/mean_ms": "decision_mean_ms",
}
SERVING_TRACE_TAGS: dict[str, tuple[str, float]] = {
    "trace/throughput_rps": ("throughput_rps", 1.0),
    "trace/p99_latency_ms": ("p99_latency_ms", 1.0),
    "trace/slo_violation_rate": ("slo_violation_rate", 1.0),
    "trace/energy_j": ("energy_j", 1.0),
    "trace/memory_gb": ("memory_gb", 1.0),
    "trace/reward": ("reward", 1.0),
}
TRACE_TAGS: dict[str, tuple[str, float]] = {
    "trace/cpu_mhz": ("cpu_hz", 1e-6),
    "trace/gpu_mhz": ("gpu_hz", 1e-6),
    "trace/exit": ("exit", 1.0),
    "trace/temp_c": ("temp_c", 1.0),
    "trace/energy_j": ("energy_j", 1.0),
    "trace/latency_ms": ("latency_ms", 1.0),
    "trace/decision_ms": ("decision_ms", 1.0),
}


class _Writer:
    """Scalars into one TensorBoard event file (TensorBoard's record format and protos; no torch, no thread).

    The events are built in memory and written atomically at :meth:`close`.
    """

    def __init__(self, logdir: Path) -> None:
        from tensorboard.compat.proto.event_pb2 import Event
        from tensorboard.compat.proto.summary_pb2 import Summary
        from tensorboard.summary.writer.record_writer import RecordWriter

        self._event, self._summary = Event, Summary
        now = time.time()
        self.path = Path(logdir) / f"events.out.tfevents.{int(now)}.{socket.gethostname()}.{os.getpid()}.e4gym"
        self._buf = io.BytesIO()
        self._records = RecordWriter(self._buf)
        self._records.write(Event(wall_time=now, file_version="brain.Event:2").SerializeToString())

    def scalars(self, values: dict[str, float], step: int, wall_time: float) -> None:
        """Add every ``tag: value`` of ``values`` at ``step`` (one event)."""
        summary = self._summary(value=[self._summary.Value(tag=t, simple_value=float(v)) for t, v in values.items()])
        self._records.write(self._event(wall_time=wall_time, step=int(step), summary=summary).SerializeToString())

    def close(self) -> None:
        """Write the event file."""
        atomic_write(self.path, lambda f: f.write(self._buf.getvalue()))


def write_tensorboard(out: Path, exp: Experiment, rows: Sequence[dict[str, Any]]) -> list[Path]:
    """Write the runs of every (scenario, policy) with results under ``out/tb``; returns the run folders.

    Each scenario's folder is replaced whole, only once all its runs are written (see the module docstring).
    """
    root = Path(out) / "tb"
    runs: list[Path] = []
    seed_order = {s: i for i, s in enumerate(exp.seeds)}
    serving = exp.family == "serving"
    fixed = {*ID_COLUMNS, *exp.matrix_keys, *(SERVING_METRICS if serving else METRICS), *TAIL_COLUMNS}
    scores: dict[str, Any] = {sc.name: {} for sc in exp.scenarios} if serving else experiment_scores(exp, rows)
    for sc in exp.scenarios:
        groups = []
        for p in exp.policies:
            rs = sorted((r for r in rows if r["scenario"] == sc.name and r["label"] == p.label),
                        key=lambda r: seed_order.get(r["seed"], len(seed_order)))
            if rs:
                groups.append((p.label, rs))
        with staged_dir(root / sc.name) as staging:
            for label, rs in groups:
                got = scores[sc.name].get(label)
                per_seed = dict(zip(got.seeds, got.scores)) if got is not None and got.scores else {}
                _write_run(staging / label, Path(out), rs, fixed, per_seed, serving)
        runs += [root / sc.name / label for label, _ in groups]
    suite = suite_scores(scores, [p.label for p in exp.policies]) if any(scores.values()) else {}
    if suite:
        with staged_dir(root / "_suite") as staging:
            for label, st in suite.items():
                if st.scored:
                    (staging / label).mkdir(parents=True, exist_ok=True)
                    w = _Writer(staging / label)
                    w.scalars({"suite/score": st.mean, "suite/score_low": st.low, "suite/score_high": st.high},
                              0, time.time())
                    w.close()
                    runs.append(root / "_suite" / label)
    return runs


def _write_run(logdir: Path, out: Path, rs: Sequence[dict[str, Any]], fixed: set[str],
               scores: dict[int, float] | None = None, serving: bool = False) -> None:
    """One (scenario, policy) run into ``logdir``: the per-seed summaries of ``rs`` (step = seed) and the
    first row's per-frame trace (step = frame). ``fixed``: the result columns that are not the policy's stats."""
    logdir.mkdir(parents=True, exist_ok=True)
    w = _Writer(logdir)
    now = time.time()
    summary, trace_tags = (SERVING_SUMMARY_TAGS, SERVING_TRACE_TAGS) if serving else (SUMMARY_TAGS, TRACE_TAGS)
    for r in rs:
        values = {tag: r[col] for tag, col in summary.items() if col in r}
        values.update({f"policy/{k}": v for k, v in r.items() if k not in fixed})  # the policy's stats()
        if scores and int(r["seed"]) in scores:
            values["score/normalised"] = scores[int(r["seed"])]
        w.scalars(values, r["seed"], now)
    with np.load(out / rs[0]["trace"]) as z:
        series = {tag: np.asarray(z[key], dtype=np.float64) * scale
                  for tag, (key, scale) in trace_tags.items() if key in z.files}
    for i in range(len(next(iter(series.values()))) if series else 0):
        w.scalars({tag: v[i] for tag, v in series.items()}, i, now)
    w.close()
