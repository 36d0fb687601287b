"""Ray executor against the local one: wall time of matrices of 1000-frame episodes, and Ray's per-task overhead.

Runs the quickstart scenario (Xavier NX, EfficientNet-B0, 30 fps, frame env) with four governors (performance,
ondemand, schedutil, default) × seeds × ``--frames`` frames through :func:`e4gym.bench.runner.run_benchmark`
(``force=True``, no progress bar, plots or TensorBoard), each run in a new Python process as ``e4gym bench`` runs
(imports, the local pool's or Ray's start and shutdown included), with the local executor (1 job: in the
process; 2 jobs: a spawn pool) and the Ray executor with 1 and 2 CPUs (a Ray instance the run starts itself).

Each configuration runs a small matrix (``--small-seeds`` seeds) and a large one (``--large-seeds``), each
``--repeats`` times, keeping the fastest. The wall time of a run is a fixed cost plus a cost per task: the slope
between the two sizes is the cost per task (ms), the intercept the fixed cost per run (s). Ray's end-to-end
overhead per task is its slope minus the local executor's with as many workers (what a user sees, CPU taken by
Ray's own processes from the episodes included; on a shared machine the slope moves with the machine's load).
With one worker the tasks run one after the other, so the time between one task's end and the next one's start
(from the ``started_at`` / ``finished_at`` stamps of the large run's results, median over the tasks and the
repeats) is the executor's own cost per task: Ray's dispatch and result transfer, against the local executor's
writing of the files. Both overheads are also given as a share of a task's time (the median ``wall_s`` of the
local 1-job runs: one episode; the first task of a process also pays its imports).

Usage: ``python benchmarks/ray_overhead.py [--frames 1000] [--small-seeds 2] [--large-seeds 32] [--repeats 3]``
(needs ``e4gym[ray]``). Wall times on a shared machine vary with its load; compare the rows of one run.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from itertools import pairwise
from pathlib import Path
from typing import Any

POLICIES = ("performance", "ondemand", "schedutil", "default")
#: The configurations: (executor, workers).
CONFIGS = (("local", 1), ("local", 2), ("ray", 1), ("ray", 2))
#: A fresh process's run: ``python -c FRESH CONFIG_JSON OUT JOBS EXECUTOR``.
FRESH = """
import json, sys
from e4gym.bench import run_benchmark
res = run_benchmark(json.loads(sys.argv[1]), sys.argv[2], jobs=int(sys.argv[3]), executor=sys.argv[4], force=True,
                    quiet=True, plots=False, tensorboard=False)
sys.exit(0 if res.ok else 1)
"""


def experiment(frames: int, seeds: int) -> dict[str, Any]:
    """The matrix: the quickstart scenario, :data:`POLICIES` × ``seeds`` seeds × ``frames`` frames."""
    return {
        "name": "ray-overhead",
        "env": {"episode_frames": frames},
        "matrix": {"device": ["xavier-nx"], "model": ["efficientnet_b0"], "fps": [30], "deadline_ms": [None]},
        "seeds": list(range(seeds)),
        "policies": list(POLICIES),
    }


def fresh_run(cfg: dict[str, Any], out: Path, jobs: int, executor: str) -> float:
    """Wall time (s) of one forced run of ``cfg`` into ``out`` in a new Python process, its start included.

    Raises:
        CalledProcessError: a task failed (or the run did not start).
    """
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", FRESH, json.dumps(cfg), str(out), str(jobs), executor], check=True)
    return time.perf_counter() - t0


def task_times(out: Path) -> list[float]:
    """The ``wall_s`` (s) of every task result under ``out/runs``."""
    return [json.loads(p.read_text())["row"]["wall_s"] for p in sorted((out / "runs").rglob("*.json"))]


def gaps(out: Path) -> list[float]:
    """The times (s) between one task's end and the next one's start, the results under ``out/runs`` in start
    order (one worker: the executor's time between tasks)."""
    stamps = sorted((d["started_at"], d["finished_at"])
                    for d in (json.loads(p.read_text()) for p in (out / "runs").rglob("*.json")))
    return [b[0] - a[1] for a, b in pairwise(stamps)]


def measure(frames: int, small: int, large: int, repeats: int) -> dict[str, Any]:
    """Fastest wall time (s) of every configuration at each size, by ``(executor, workers, tasks)``; the median
    time between tasks (s) of the 1-worker configurations' large runs, by executor; the median task time (s) of
    the local 1-job runs."""
    walls: dict[tuple[str, int, int], float] = {}
    between: dict[str, list[float]] = {"local": [], "ray": []}
    task_s: list[float] = []
    with tempfile.TemporaryDirectory(prefix="e4gym-ray-overhead-") as tmp:
        for _ in range(repeats):
            for executor, jobs in CONFIGS:
                for seeds in (small, large):
                    out = Path(tmp) / f"{executor}{jobs}-{seeds}"
                    wall = fresh_run(experiment(frames, seeds), out, jobs, executor)
                    key = (executor, jobs, len(POLICIES) * seeds)
                    walls[key] = min(wall, walls.get(key, math.inf))
                    if (executor, jobs) == ("local", 1):
                        task_s += task_times(out)
                    if jobs == 1 and seeds == large:
                        between[executor] += gaps(out)
    return {"walls": walls, "task_s": statistics.median(task_s), "sizes": (len(POLICIES) * small,
                                                                        len(POLICIES) * large),
            "between": {k: statistics.median(v) for k, v in between.items()}}


def fit(walls: dict[tuple[str, int, int], float], executor: str, jobs: int, sizes: tuple[int, int]
        ) -> tuple[float, float]:
    """(cost per task in s, fixed cost per run in s) of a configuration: the line through its two sizes."""
    (n1, n2), w1, w2 = sizes, walls[(executor, jobs, sizes[0])], walls[(executor, jobs, sizes[1])]
    per_task = (w2 - w1) / (n2 - n1)
    return per_task, w1 - n1 * per_task


def table(m: dict[str, Any], frames: int) -> str:
    """The Markdown table of :func:`measure`'s figures."""
    w, (n1, n2), task_s = m["walls"], m["sizes"], m["task_s"]
    base, _ = fit(w, "local", 1, (n1, n2))
    lines = [f"| executor | workers | wall s, {n1} tasks | wall s, {n2} tasks | ms per task | fixed s per run | "
             f"speed-up per task vs 1 local job | Ray overhead ms/task | % of a {frames}-frame task |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for executor, jobs in CONFIGS:
        per_task, fixed = fit(w, executor, jobs, (n1, n2))
        cells = [executor, str(jobs), f"{w[(executor, jobs, n1)]:.2f}", f"{w[(executor, jobs, n2)]:.2f}",
                 f"{per_task * 1e3:.1f}", f"{fixed:.2f}", f"{base / per_task:.2f}"]
        if executor == "ray":
            over = per_task - fit(w, "local", jobs, (n1, n2))[0]
            cells += [f"{over * 1e3:+.1f}", f"{over / task_s * 100:+.1f}"]
        else:
            cells += ["–", "–"]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append(f"\nmedian task time (local 1-job runs, one {frames}-frame episode): {task_s * 1e3:.1f} ms")
    gap_local, gap_ray = m["between"]["local"], m["between"]["ray"]
    lines.append(f"time between tasks, 1 worker (median): local {gap_local * 1e3:.1f} ms, Ray {gap_ray * 1e3:.1f} ms: "
                 f"Ray's dispatch overhead {(gap_ray - gap_local) * 1e3:+.1f} ms per task, "
                 f"{(gap_ray - gap_local) / task_s * 100:+.1f} % of a task")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Parse the arguments, measure, print the table."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=1000, help="frames per episode")
    p.add_argument("--small-seeds", type=int, default=2, help="seeds of the small matrix (tasks: 4 × seeds)")
    p.add_argument("--large-seeds", type=int, default=32, help="seeds of the large matrix (tasks: 4 × seeds)")
    p.add_argument("--repeats", type=int, default=3, help="runs per configuration and size (the fastest is kept)")
    args = p.parse_args(argv)
    if not 0 < args.small_seeds < args.large_seeds:
        p.error("need 0 < --small-seeds < --large-seeds")
    print(table(measure(args.frames, args.small_seeds, args.large_seeds, args.repeats), args.frames))


if __name__ == "__main__":
    main()
