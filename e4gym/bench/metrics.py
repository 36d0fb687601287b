"""Per-episode metrics and per-frame traces of one benchmark task.

The per-frame figures (energy, latency percentiles, misses, accuracy, switches, throttling, exit) are the
:class:`e4gym.envs.wrappers.EpisodeStats` figures of the episode (the task runs its env under that
wrapper), so the harness and training callbacks count frames the same way: every step of the frame env,
only the ``frame_done`` steps of the block env. :func:`episode_metrics` adds the figures that wrapper does not
keep (average power, peak temperature, episode reward) and the policy's decision time; :func:`frame_trace`
extracts the per-frame arrays saved for plots.

Decision time: :func:`e4gym.policy.run_episode` times every ``predict`` call (``info["decision_ms"]``, wall
time). A frame's decision time is the sum over the steps that served it (one step in the frame env; every
block's step, up to the one that finished the frame, in the block env): the CPU time a controller on the board
spends deciding that frame, against the frame period. Under the benchmark harness each task runs with one
torch thread (:mod:`e4gym.bench.runner`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

#: The metrics of a task's row, with their meaning and units (the order of the result columns).
METRIC_DOCS: dict[str, str] = {
    "frames": "frames finished in the episode (count)",
    "energy_per_frame_j": "mean true board energy per frame, idle time until the next arrival included (J)",
    "measured_energy_per_frame_j": "mean energy per frame as the board's power monitor reports it (J)",
    "latency_mean_ms": "mean frame latency, queueing included (ms)",
    "latency_p95_ms": "95th percentile of the frame latency (ms)",
    "latency_p99_ms": "99th percentile of the frame latency (ms)",
    "deadline_miss_rate": "fraction of frames whose latency exceeded the deadline (0..1)",
    "accuracy": "fraction of frames whose exit predicted the right class (0..1)",
    "mean_exit": "mean exit index the frames left at (0-based)",
    "throttled_share": "fraction of frames during which the thermal trip capped the clocks (0..1)",
    "switches_per_frame": "mean number of clock domains that changed frequency per frame (0..3)",
    "avg_power_w": "average board power over the episode: total energy / time on the board (W)",
    "peak_temp_c": "highest board temperature of the episode (°C)",
    "episode_reward": "sum of the rewards of every step of the episode",
    "decision_mean_ms": "mean wall time the policy took to decide a frame: its predict calls for the frame (ms)",
    "decision_p50_ms": "median per-frame decision time (ms)",
    "decision_p99_ms": "99th percentile of the per-frame decision time (ms)",
    "profiling_runs": "profiling runs the policy ran on the board during the episode (count)",
    "profiling_energy_j": "true energy of those runs (J; included in the frames' energy)",
    "profiling_share": "share of the episode's energy spent in those runs (0..1)",
}
#: The metric names, in column order.
METRICS: tuple[str, ...] = tuple(METRIC_DOCS)
#: Result-row columns that come before the matrix parameters and metrics.
ID_COLUMNS = ("scenario", "device", "model", "fps", "deadline_ms", "policy", "label", "seed", "clairvoyant", "env_id")
#: Result-row columns after the metrics and the policy's stats.
TAIL_COLUMNS = ("wall_s", "hash", "trace")

#: Metric name -> the :data:`e4gym.envs.wrappers.EPISODE_STAT_KEYS` key it is read from.
_FROM_EPISODE_STATS: dict[str, str] = {
    "frames": "ep_frames",
    "energy_per_frame_j": "ep_energy_per_frame_j",
    "measured_energy_per_frame_j": "ep_measured_energy_per_frame_j",
    "latency_mean_ms": "ep_latency_mean_ms",
    "latency_p95_ms": "ep_latency_p95_ms",
    "latency_p99_ms": "ep_latency_p99_ms",
    "deadline_miss_rate": "ep_deadline_miss_rate",
    "accuracy": "ep_accuracy",
    "mean_exit": "ep_mean_exit",
    "throttled_share": "ep_throttled_fraction",
    "switches_per_frame": "ep_dvfs_switches_per_frame",
}

#: The per-frame arrays of a trace file (``.npz``), with units.
TRACE_DOCS: dict[str, str] = {
    "cpu_hz": "CPU clock at the end of the frame (Hz)",
    "gpu_hz": "GPU clock at the end of the frame (Hz)",
    "emc_hz": "memory clock at the end of the frame (Hz)",
    "exit": "exit the frame left at (0-based)",
    "temp_c": "board temperature at the end of the frame (°C)",
    "latency_ms": "frame latency, queueing included (ms)",
    "energy_j": "true energy of the frame, idle wait included (J)",
    "measured_energy_j": "the frame's energy as the power monitor reports it (J)",
    "deadline_missed": "the frame missed its deadline",
    "correct": "the frame's exit predicted the right class",
    "decision_ms": "wall time the policy took to decide the frame: its predict calls for the frame (ms)",
}
_TRACE_DTYPES = {"exit": np.int16, "deadline_missed": np.bool_, "correct": np.bool_}


def is_frame(info: Mapping[str, Any]) -> bool:
    """A step's ``info`` describes a finished frame (every step of the frame env; ``frame_done`` ones of the
    block env), the criterion :class:`~e4gym.envs.wrappers.EpisodeStats` counts by."""
    return bool(info.get("frame_done", True))


def frame_decision_ms(infos: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """Per finished frame, the decision time of the steps that served it (ms; the sum of their
    ``decision_ms``, NaN when a step has none). Steps after the last finished frame are not counted."""
    out: list[float] = []
    acc = 0.0
    for i in infos:
        acc += float(i.get("decision_ms", math.nan))
        if is_frame(i):
            out.append(acc)
            acc = 0.0
    return np.asarray(out, dtype=np.float64)


def episode_metrics(infos: Sequence[Mapping[str, Any]], episode_stats: Mapping[str, float]) -> dict[str, float]:
    """The :data:`METRICS` of an episode.

    Args:
        infos: the ``info`` of every step (each with its ``reward``), as :func:`e4gym.policy.run_episode`
            returns them.
        episode_stats: the :class:`~e4gym.envs.wrappers.EpisodeStats` figures of the same episode.
    """
    out: dict[str, float] = {k: float(episode_stats[src]) for k, src in _FROM_EPISODE_STATS.items()}
    out["frames"] = int(episode_stats["ep_frames"])
    frames = [i for i in infos if is_frame(i)]
    energy = np.array([float(i["energy_j"]) for i in frames])
    power = np.array([float(i["power_w"]) for i in frames])
    ok = power > 0
    seconds = float(np.sum(energy[ok] / power[ok]))
    out["avg_power_w"] = float(energy[ok].sum() / seconds) if seconds > 0 else math.nan
    out["peak_temp_c"] = float(max((float(i["temp_c"]) for i in infos), default=math.nan))
    out["episode_reward"] = float(sum(float(i["reward"]) for i in infos))
    dec = frame_decision_ms(infos)
    ok_dec = dec.size > 0 and bool(np.isfinite(dec).all())
    out["decision_mean_ms"] = float(dec.mean()) if ok_dec else math.nan
    out["decision_p50_ms"] = float(np.percentile(dec, 50)) if ok_dec else math.nan
    out["decision_p99_ms"] = float(np.percentile(dec, 99)) if ok_dec else math.nan
    out["profiling_runs"] = float(sum(int(i.get("profiling_runs", 0)) for i in infos))
    prof_j = float(sum(float(i.get("profiling_energy_j", 0.0)) for i in infos))
    total_j = float(sum(float(i["energy_j"]) for i in frames))
    out["profiling_energy_j"] = prof_j
    out["profiling_share"] = prof_j / total_j if total_j > 0 else 0.0
    return {k: out[k] for k in METRICS}


def frame_trace(infos: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
    """The per-frame arrays of :data:`TRACE_DOCS` (one entry per finished frame, in order)."""
    frames = [i for i in infos if is_frame(i)]
    out = {k: np.array([i[k] for i in frames], dtype=_TRACE_DTYPES.get(k, np.float64))
           for k in TRACE_DOCS if k != "decision_ms"}
    out["decision_ms"] = frame_decision_ms(infos)
    return {k: out[k] for k in TRACE_DOCS}


# ---------------------------------------------------------------------------------------------- serving envs

#: The metrics of a task's row on a serving env (the batching env; ``env.unwrapped.family == "serving"``), with
#: their meaning and units: the :data:`e4gym.envs.wrappers.SERVING_STAT_KEYS` figures without their ``ep_`` prefix,
#: the episode's reward and the policy's decision time per interval.
SERVING_METRIC_DOCS: dict[str, str] = {
    "intervals": "decision intervals served in the episode (count)",
    "utility_per_interval": "mean reward (the utility, memory penalty included) per interval",
    "throughput_rps": "requests completed / episode time (req/s)",
    "goodput_rps": "requests completed within their SLO / episode time (req/s)",
    "p99_latency_ms": "mean over the intervals of their p99 latency (ms)",
    "slo_violation_rate": "SLO violations / requests arrived (0..1)",
    "energy_per_request_j": "board energy / requests completed (J; NaN when not measured)",
    "power_w": "board energy / episode time (W; NaN when not measured)",
    "refused_rate": "share of the intervals whose action was refused for memory (0..1)",
    "memory_gb": "mean memory the served configuration held (GB)",
    "episode_reward": "sum of the rewards of every step of the episode",
    "decision_mean_ms": "mean wall time the policy took to decide an interval (ms)",
    "decision_p50_ms": "median decision time (ms)",
    "decision_p99_ms": "99th percentile of the decision time (ms)",
}
SERVING_METRICS: tuple[str, ...] = tuple(SERVING_METRIC_DOCS)
#: The per-interval arrays of a serving task's trace file (``.npz``), with units.
SERVING_TRACE_DOCS: dict[str, str] = {
    "throughput_rps": "requests completed in the interval / interval (req/s)",
    "p99_latency_ms": "p99 latency of the interval's completed requests (ms)",
    "slo_violation_rate": "the interval's SLO-violation share",
    "energy_j": "board energy over the interval (J)",
    "memory_gb": "memory of the configuration served (GB)",
    "refused": "the interval's action was refused for memory",
    "reward": "the interval's reward",
    "decision_ms": "wall time the policy took to decide the interval (ms)",
}


def serving_metrics(infos: Sequence[Mapping[str, Any]], episode_stats: Mapping[str, float]) -> dict[str, float]:
    """The :data:`SERVING_METRICS` of a serving env's episode (``episode_stats``: the
    :class:`~e4gym.envs.wrappers.ServingEpisodeStats` figures of the same episode)."""
    out: dict[str, float] = {k[3:]: float(v) for k, v in episode_stats.items()}
    out["intervals"] = int(episode_stats["ep_intervals"])
    out["episode_reward"] = float(sum(float(i["reward"]) for i in infos))
    dec = np.array([float(i.get("decision_ms", math.nan)) for i in infos])
    ok = dec.size > 0 and bool(np.isfinite(dec).all())
    out["decision_mean_ms"] = float(dec.mean()) if ok else math.nan
    out["decision_p50_ms"] = float(np.percentile(dec, 50)) if ok else math.nan
    out["decision_p99_ms"] = float(np.percentile(dec, 99)) if ok else math.nan
    return {k: out[k] for k in SERVING_METRICS}


def interval_trace(infos: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
    """The per-interval arrays of :data:`SERVING_TRACE_DOCS` (one entry per step, in order)."""
    return {k: np.array([i.get(k, math.nan) for i in infos], dtype=np.bool_ if k == "refused" else np.float64)
            for k in SERVING_TRACE_DOCS}


def env_family(env_id: str) -> str:
    """``"serving"`` for an env of :data:`e4gym.SERVING_ENV_IDS` (with or without the ``e4gym:`` prefix), else
    ``"frame"`` (the frame, block and edge-cloud envs)."""
    from e4gym import SERVING_ENV_IDS

    return "serving" if env_id.split(":", 1)[-1] in SERVING_ENV_IDS else "frame"


def family_columns(family: str) -> tuple[tuple[str, ...], tuple[str, ...], str]:
    """``(metrics, trace arrays, count column)`` of a result row of ``family`` (:func:`env_family`)."""
    if family == "serving":
        return SERVING_METRICS, tuple(SERVING_TRACE_DOCS), "intervals"
    return METRICS, tuple(TRACE_DOCS), "frames"
