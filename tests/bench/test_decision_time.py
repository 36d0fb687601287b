"""The decision-time benchmark script (benchmarks/decision_time.py), short: it runs and prints its table."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "decision_time.py"


def test_decision_time_prints_a_row_per_policy(capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location("bench_decision_time", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    import torch

    before = torch.get_num_threads()
    results = module.main(["--frames", "15", "--policies", "default", "ztt"])
    out = capsys.readouterr().out
    assert "| policy | frames | decisions | p50 ms | p99 ms |" in out and "1 torch thread(s)" in out
    assert "| default | 15 | 15 |" in out and "| ztt | 15 | 15 |" in out
    assert all(0 <= r["p50_ms"] <= r["p99_ms"] <= r["max_ms"] for r in results.values())
    assert torch.get_num_threads() == before
