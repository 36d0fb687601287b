"""How the power-sampling period limits the energy a Jetson backend measures per frame.

Drives :class:`e4gym.hardware.jetson.JetsonBackend` on a fake Xavier NX tree (the test suite's builder) with a
runner that holds the INA3221 input rail at ``run_w`` for ``frame_ms`` and then returns it to ``idle_w``, as a
board's power does around one inference. For each sampling period the backend integrates its samples over
each run; the table gives the mean and worst relative error of the run's energy against the exact
``run_w × frame_ms``, over ``--frames`` runs.

Usage: ``python benchmarks/sampling_error.py [--frame-ms 30] [--frames 20] [--periods 1 5 10 30 100]``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "hardware"))


def main(argv: Sequence[str] | None = None) -> list[dict[str, float]]:
    """Measure and print the table; returns its rows."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frame-ms", type=float, default=30.0)
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--periods", type=float, nargs="+", default=[1, 5, 10, 30, 100], help="ms")
    parser.add_argument("--run-w", type=float, default=12.0)
    parser.add_argument("--idle-w", type=float, default=5.0)
    args = parser.parse_args(argv)

    from fake_jetson import build_xavier_nx

    from e4gym.dnn.profile import load_model_profile
    from e4gym.hardware.jetson import JetsonBackend

    work = load_model_profile("efficientnet_b0").frame_work(4)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        board = build_xavier_nx(Path(tmp))
        board.set_rail("VDD_IN", args.idle_w)

        class Runner:
            """Holds the input rail at run_w for frame_ms (an inference), then idle_w."""

            def run(self, w: object, batch: int = 1) -> float:
                board.set_rail("VDD_IN", args.run_w)
                t0 = time.perf_counter()
                time.sleep(args.frame_ms / 1e3)
                dt = time.perf_counter() - t0
                board.set_rail("VDD_IN", args.idle_w)
                return dt

        for period_ms in args.periods:
            with JetsonBackend(sysfs_root=tmp, runner=Runner(), power_source="sysfs", read_only=True,
                               sample_period_s=period_ms / 1e3) as b:
                errs = []
                for _ in range(args.frames):
                    b.idle(0.005)
                    m = b.run(work)
                    exact = args.run_w * m.latency_s
                    errs.append(abs(m.energy_j - exact) / exact)
            rows.append({"period_ms": period_ms, "mean": sum(errs) / len(errs), "max": max(errs)})
    print(f"energy of a {args.frame_ms:g} ms run at {args.run_w:g} W (idle {args.idle_w:g} W), {args.frames} runs\n")
    print("| sampling period | mean error | worst error |\n|---:|---:|---:|")
    for r in rows:
        print(f"| {r['period_ms']:g} ms | {100 * r['mean']:.1f} % | {100 * r['max']:.1f} % |")
    return rows


if __name__ == "__main__":
    main()
