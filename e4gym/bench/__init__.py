"""The benchmark harness: scenarios, runner, metrics, TensorBoard, plots, reports (``e4gym bench``), and the
frequency sweep (``e4gym sweep``).

``run_benchmark``, ``load_experiment`` and ``Results`` are imported on first use, so importing this package
(as the ``e4gym`` command does for every verb) stays cheap.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Results", "load_experiment", "run_benchmark"]


def __getattr__(name: str) -> Any:
    if name in ("Results", "run_benchmark"):
        from e4gym.bench import runner

        return getattr(runner, name)
    if name == "load_experiment":
        from e4gym.bench.config import load_experiment

        return load_experiment
    raise AttributeError(f"module 'e4gym.bench' has no attribute {name!r}")
