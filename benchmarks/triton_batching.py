"""Triton's dynamic batching on this machine: throughput, executed batch and tail latency per batching setting.

Run: ``.venv/bin/python benchmarks/triton_batching.py`` (needs ``make triton-env``). Starts a real Triton server
(:class:`e4gym.serving.triton.TritonServer`, CPU), serves one network (default the tiny conv net at 3×32×32, 600
requests/s; ``--network mobilenet_v2 --image 224 --rate 40 --duration 10 --slo-ms 500`` for a project network)
with ``max_batch_size`` 1, 4, 8 × instances 1, 2 (``max_queue_delay_us`` fixed), and offers each setting the
same Poisson arrivals at a fixed rate, open loop (:func:`e4gym.serving.triton.drive`).
The grid runs ``--repeats`` times, in reverse order every other time, and each setting's runs are pooled (so
that a burst of other work on the machine falls on different settings). Prints a Markdown table; the result is
recorded in ``docs/benchmarks.md``.

Columns: throughput (completed requests / s, from the first arrival to the last response), mean executed batch and
the batch histogram (Triton's statistics), p50 / p99 latency (client side, from the scheduled arrival), requests
over the SLO (failed ones included), Triton's mean queue time per request and compute time per execution, and the
time reconfiguring took (bind the new model, unload the old one, one warm-up request). The load generator runs on
the same cores as the server, so read the settings against each other.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections import Counter

import numpy as np

from e4gym.markdown import markdown_table
from e4gym.serving.triton import LoadResult, TritonServer, drive, poisson_times


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--network", default="tiny", help="network to serve (default: %(default)s)")
    p.add_argument("--image", type=int, default=32, help="input side (pixels; default: %(default)s)")
    p.add_argument("--rate", type=float, default=600.0, help="arrival rate (requests/s; default: %(default)s)")
    p.add_argument("--duration", type=float, default=5.0, help="seconds of arrivals per setting (default: 5)")
    p.add_argument("--slo-ms", type=float, default=100.0, help="latency objective (ms; default: %(default)s)")
    p.add_argument("--delay-us", type=int, default=5000, help="max_queue_delay_us (default: %(default)s)")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 4, 8], help="max_batch_size values")
    p.add_argument("--instances", type=int, nargs="+", default=[1, 2], help="instance counts")
    p.add_argument("--repeats", type=int, default=2, help="runs of the grid (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()

    arrivals = poisson_times(args.rate, args.duration, args.seed)
    shape = (3, args.image, args.image)
    grid = [(b, i) for i in args.instances for b in args.batches]
    runs: dict[tuple[int, int], list[LoadResult]] = {g: [] for g in grid}
    loads: dict[tuple[int, int], list[float]] = {g: [] for g in grid}
    t0 = time.perf_counter()
    with TritonServer() as server:
        for rep in range(args.repeats):
            for max_batch, instances in grid if rep % 2 == 0 else grid[::-1]:
                served = server.configure(args.network, max_batch, instances, args.delay_us, input_shape=shape)
                r = drive(server, served, arrivals, slo_ms=args.slo_ms, seed=args.seed)
                runs[max_batch, instances].append(r)
                loads[max_batch, instances].append(served.load_s)
                print(f"run {rep + 1}, max_batch {max_batch}, instances {instances}: {r.throughput_rps:.1f} req/s, "
                      f"mean batch {r.mean_batch:.2f}, p99 {r.p99_ms:.0f} ms", flush=True)
        versions = server.versions
    rows = []
    for g in grid:
        rs = runs[g]
        hist: Counter[int] = Counter()
        for r in rs:
            hist.update(r.batch_histogram)
        lat = np.concatenate([r.latency_ms for r in rs])
        requests = sum(r.requests for r in rs)
        executions = sum(hist.values())
        queue = sum(r.queue_ms * r.completed for r in rs) / max(1, sum(r.completed for r in rs))
        compute = sum(r.compute_ms * r.executions for r in rs) / max(1, executions)
        rows.append([g[0], g[1], f"{np.mean([r.throughput_rps for r in rs]):.1f}",
                     f"{sum(b * n for b, n in hist.items()) / executions:.2f}",
                     " ".join(f"{b}:{n}" for b, n in sorted(hist.items())),
                     f"{np.percentile(lat, 50):.0f}", f"{np.percentile(lat, 99):.0f}",
                     f"{100 * sum(r.slo_violations for r in rs) / requests:.1f}", f"{queue:.1f}", f"{compute:.1f}",
                     f"{np.mean(loads[g]):.1f}"])
    print()
    print(f"{args.network} {args.image}x{args.image}, Poisson {args.rate:g} req/s for {args.duration:g} s "
          f"({arrivals.size} requests) x {args.repeats} runs, max_queue_delay_us {args.delay_us}, SLO {args.slo_ms:g} "
          f"ms; Triton 2.51 (nvidia-pytriton 0.7.0), torch {versions['torch']}, numpy {versions['numpy']} on the "
          f"server; {platform.machine()}, {os.cpu_count()} CPUs; {time.perf_counter() - t0:.0f} s in all")
    print()
    print(markdown_table(
        ["max_batch", "instances", "throughput req/s", "mean batch", "batches (size:count)", "p50 ms", "p99 ms",
         "over SLO %", "queue ms", "compute ms/exec", "reconfigure s"],
        rows, align="rrrrlrrrrrr"))


if __name__ == "__main__":
    main()
