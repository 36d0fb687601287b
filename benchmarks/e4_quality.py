"""E4 against issue 5's targets, per seed, on the quickstart scenario (Xavier NX, EfficientNet-B0, 30 fps).

Runs ``e4gym bench`` on the quickstart's scenario with the policies the targets compare (performance, default,
oracle, e4) over several seeds, then prints one row per seed:

* energy per frame of E4 against ``default`` (target: at least 20 % less);
* deadline misses of E4 minus those of ``performance`` (target: at most 1 point more);
* accuracy of E4 minus that of ``performance``, which runs the last exit (target: at most 1 point less);
* energy of E4 against the clairvoyant ``oracle`` (target: within 10 %);
* the share of a full sweep E4's profiler evaluated (target: at most 15 %).

Usage: ``python benchmarks/e4_quality.py [--seeds 0 1 2 3 4] [--frames 1000] [--out runs/e4-quality]``.
Finished episodes are reused on a second run (``--force`` re-runs them).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

TARGETS = {"saving_vs_default": 0.20, "extra_misses": 0.01, "accuracy_loss": 0.01, "vs_oracle": 0.10,
           "profiler_share": 0.15}


def experiment(seeds: Sequence[int], frames: int) -> dict:
    """The quickstart scenario with the four policies the targets compare."""
    return {
        "name": "e4-quality",
        "description": "E4 against issue 5's targets on the quickstart scenario.",
        "env": {"episode_frames": frames},
        "matrix": {"device": ["xavier-nx"], "model": ["efficientnet_b0"], "fps": [30], "deadline_ms": [None]},
        "seeds": list(seeds),
        "policies": ["performance", "default", "oracle", "e4"],
    }


def main(argv: Sequence[str] | None = None) -> list[dict[str, float]]:
    """Run the experiment, print the per-seed table; returns its rows."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--frames", type=int, default=1000)
    parser.add_argument("--out", default="runs/e4-quality")
    parser.add_argument("--jobs", type=int, default=None)
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args(argv)

    from e4gym.bench import run_benchmark

    res = run_benchmark(experiment(args.seeds, args.frames), args.out, jobs=args.jobs, force=args.force,
                        plots=False, tensorboard=False)
    by = {(r["label"], r["seed"]): r for r in res.rows}
    rows = []
    for s in args.seeds:
        e4, perf, default, oracle = (by[(k, s)] for k in ("e4", "performance", "default", "oracle"))
        rows.append({
            "seed": s,
            "saving_vs_default": 1.0 - e4["energy_per_frame_j"] / default["energy_per_frame_j"],
            "extra_misses": e4["deadline_miss_rate"] - perf["deadline_miss_rate"],
            "accuracy_loss": perf["accuracy"] - e4["accuracy"],
            "vs_oracle": e4["energy_per_frame_j"] / oracle["energy_per_frame_j"] - 1.0,
            "profiler_share": e4["profiler_share"],
        })

    def ok(key: str, v: float) -> str:
        good = v >= TARGETS[key] if key == "saving_vs_default" else v <= TARGETS[key]
        return "✓" if good else "✗"

    print(f"E4 on xavier-nx · efficientnet_b0 · 30 fps, {args.frames} frames per episode\n")
    print("| seed | saving vs default | extra misses vs performance | accuracy loss vs last exit "
          "| energy vs oracle | profiler share |")
    print("|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['seed']} | {100 * r['saving_vs_default']:.1f} % {ok('saving_vs_default', r['saving_vs_default'])} "
              f"| {100 * r['extra_misses']:+.1f} pts {ok('extra_misses', r['extra_misses'])} "
              f"| {100 * r['accuracy_loss']:.1f} pts {ok('accuracy_loss', r['accuracy_loss'])} "
              f"| {100 * r['vs_oracle']:+.1f} % {ok('vs_oracle', r['vs_oracle'])} "
              f"| {100 * r['profiler_share']:.1f} % {ok('profiler_share', r['profiler_share'])} |")
    print("\ntargets: saving ≥ 20 %, extra misses ≤ 1 pt, accuracy loss ≤ 1 pt, within 10 % of the oracle, "
          "profiler share ≤ 15 %")
    return rows


if __name__ == "__main__":
    main()
