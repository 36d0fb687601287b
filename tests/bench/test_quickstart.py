"""The `make demo` job, short: the quickstart experiment end to end through the CLI (E4 included)."""

from __future__ import annotations

import csv

import pytest

from e4gym.cli import main


@pytest.mark.slow
def test_quickstart_runs_end_to_end_short(tmp_path, capsys) -> None:
    out = tmp_path / "quick"
    assert main(["bench", "--config", "quickstart", "--out", str(out), "--frames", "120", "--jobs", "1",
                 "--quiet", "--seeds", "0"]) == 0
    printed = capsys.readouterr().out
    rows = {r["label"]: r for r in csv.DictReader(open(out / "results.csv"))}
    assert set(rows) == {"performance", "powersave", "ondemand", "schedutil", "nvhost_podgov", "default",
                         "best_static", "oracle", "oracle-strict", "e4", "e4-layer"}
    assert all(int(r["frames"]) == 120 for r in rows.values())
    # E4 reports its profiler's work, its offline measuring and its decision time, and really exits early
    # (the governors always run the last exit).
    assert 0 < float(rows["e4"]["profiler_share"]) < 0.15
    assert float(rows["e4"]["offline_runs"]) > 1000 and float(rows["best_static"]["offline_s"]) > 0
    assert float(rows["e4"]["decision_p50_ms"]) > 0 and float(rows["default"]["profiling_runs"]) == 0
    assert float(rows["e4"]["mean_exit"]) < float(rows["default"]["mean_exit"]) == 4.0
    assert float(rows["e4"]["energy_per_frame_j"]) < float(rows["default"]["energy_per_frame_j"])
    assert "| e4 " in printed and "oracle (bound)" in printed
    for png in ("bars.png", "scatter.png", "traces.png"):
        assert any(out.glob(f"plots/*/{png}"))
    # A second run reuses every finished task.
    assert main(["bench", "--config", "quickstart", "--out", str(out), "--frames", "120", "--jobs", "1",
                 "--quiet", "--seeds", "0"]) == 0
    assert "0 run now, 11 reused" in capsys.readouterr().out
