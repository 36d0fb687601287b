"""`e4gym reproduce` (issue 17): the verdict rules on synthetic numbers (both sides of every bound), the comparability
filter, the claim registry resolved against a tiny real run, the report and figures end to end, resume, Ctrl-C
and bad input."""

from __future__ import annotations

import json
import math
import shlex
from pathlib import Path

import pytest
import yaml

from e4gym.bench import reproduce as rp
from e4gym.bench import runner as bench_runner
from e4gym.bench.config import Experiment, PolicyEntry, Scenario
from e4gym.bench.reproduce import (
    CLAIMS,
    FITS,
    MAX_MISS_RATE,
    NOT_COMPARABLE,
    NOT_REPRODUCED,
    PAPER,
    REPRODUCED,
    VERDICTS,
    Above,
    AtMost,
    Claim,
    Estimate,
    Evidence,
    NotComparable,
    Point,
    Range,
    against,
    comparisons,
    judge,
    larger_on,
    run_reproduce,
    saving_pct,
    speedup,
)
from e4gym.bench.score import MAX_ACCURACY_LOSS
from e4gym.cli import main
from e4gym.errors import ConfigError
from e4gym.hardware.calibration import SAVING_TARGETS

# ---------------------------------------------------------------------------------------------- verdict rules


def test_at_most_judges_the_mean_and_says_the_interval() -> None:
    under = Estimate((0, 1), (0.2, 1.0), "points")  # mean 0.6, its interval reaches above 1
    verdict, reason = AtMost(1.0).judge(under)
    assert verdict == REPRODUCED and "reaches above it" in reason
    assert AtMost(1.0).judge(Estimate((0, 1), (0.5, 0.5), "points"))[0] == REPRODUCED
    verdict, reason = AtMost(1.0).judge(Estimate((0, 1), (1.4, 1.6), "points"))
    assert verdict == NOT_REPRODUCED and "> +1.00 points" in reason


def est(*values: float, unit: str = "%", groups: tuple = ()) -> Estimate:
    return Estimate(tuple(range(len(values))), tuple(values), unit, groups)


@pytest.mark.parametrize(("values", "verdict"), [
    ((24.0, 24.2), REPRODUCED),
    ((20.0, 20.0), REPRODUCED),  # the bounds belong to the range
    ((37.0, 37.0), REPRODUCED),
    ((19.9, 19.9), NOT_REPRODUCED),
    ((37.1, 37.1), NOT_REPRODUCED),
    ((5.0, 6.0), NOT_REPRODUCED),
    ((40.0, 50.0), NOT_REPRODUCED),
])
def test_range_judges_the_mean_on_both_sides_of_each_bound(values, verdict) -> None:
    v, reason = Range(20, 37).judge(est(*values))
    assert v == verdict
    assert "20–37 %" in reason and f"{sum(values) / len(values):.1f} %" in reason


def test_range_reasons_say_where_the_interval_lies() -> None:
    _, below = Range(20, 37).judge(est(10.0, 11.0, 12.0))
    assert "is below 20–37 %" in below and "whole 95 % interval too" in below
    _, reaches = Range(20, 37).judge(est(5.0, 30.0))  # mean 17.5, interval wide enough to reach 20
    assert "is below" in reaches and "interval reaches it" in reaches
    _, above = Range(1.3, 2.2).judge(est(2.5, 2.6, unit="×"))
    assert "is above 1.3–2.2×" in above
    assert Estimate((0, 1), (24.0, 24.2), "%").text() == "24.1 % [22.8, 25.4]"


def test_range_over_groups_needs_every_group_inside() -> None:
    inside = est(14.0, unit="%", groups=(("a", 9.0), ("b", 19.0), ("c", 14.0)))
    assert Range(9, 19, over="groups").judge(inside)[0] == REPRODUCED
    for bad, side in ((8.9, "below"), (19.1, "above")):
        v, reason = Range(9, 19, over="groups").judge(est(14.0, groups=(("a", 14.0), ("b", bad))))
        assert v == NOT_REPRODUCED and f"b at {bad:.1f} % is {side} 9–19 %" in reason
    # The mean inside the range does not rescue a group outside it.
    assert Range(9, 19, over="groups").judge(est(14.0, groups=(("a", 5.0), ("b", 23.0))))[0] == NOT_REPRODUCED


@pytest.mark.parametrize(("mean", "verdict"), [
    (26.0, REPRODUCED), (23.5, REPRODUCED), (28.5, REPRODUCED),  # within 10 % of 26
    (23.3, NOT_REPRODUCED), (28.7, NOT_REPRODUCED), (4.7, NOT_REPRODUCED),
])
def test_point_tolerance_on_both_sides(mean, verdict) -> None:
    assert Point(26).judge(est(mean))[0] == verdict


def test_point_counts_the_mean_not_the_interval() -> None:
    far = est(29.0, 31.0, 30.0)  # mean 30, 15 % above 26, interval [27.5, 32.5] misses 26
    v, reason = Point(26).judge(far)
    assert v == NOT_REPRODUCED and "15 % above 26.0 %" in reason and "whole 95 % interval too" in reason
    far_wide = est(20.0, 40.0)  # mean 30, two seeds: the interval contains 26, but the mean is off
    v, reason = Point(26).judge(far_wide)
    assert v == NOT_REPRODUCED and "interval reaches it" in reason
    assert Point(2.8).judge(est(2.6, 2.7, unit="×"))[0] == REPRODUCED  # 5 % below


@pytest.mark.parametrize(("values", "verdict"), [
    ((5.0, 5.1), REPRODUCED),  # the whole interval (4.5 to 5.7) above 0
    ((0.1,), REPRODUCED),  # a noise-free figure: no interval
    ((0.1, 0.2), NOT_REPRODUCED),  # mean above 0, interval reaching below: no order beyond the noise
    ((0.0, 0.0), NOT_REPRODUCED),
    ((-2.0, -2.2), NOT_REPRODUCED),
])
def test_above_on_both_sides_of_its_threshold(values, verdict) -> None:
    v, reason = Above(0).judge(est(*values, unit="points"))
    assert v == verdict, reason
    if values == (0.1, 0.2):
        assert "interval reaches +0.00 points" in reason


def test_judge_gives_not_comparable_when_there_is_no_figure() -> None:
    claim = CLAIMS[0]
    none = Claim("x", "p", "w", "t", "1 %", "s", Range(1, 2), ("bench",), lambda ev: NotComparable("E4 misses 9.0 %"))
    r = judge(none, Evidence())
    assert (r.verdict, r.reason, r.emulated) == (NOT_COMPARABLE, "E4 misses 9.0 %", "–")
    nan = Claim("y", "p", "w", "t", "1 %", "s", Range(1, 2), ("bench",), lambda ev: est(1.0, math.nan))
    assert judge(nan, Evidence()).verdict == NOT_COMPARABLE
    # The E4 claims need the bench experiment: without it they are not comparable, with a reason.
    r = judge(claim, Evidence())
    assert r.verdict == NOT_COMPARABLE and "did not run" in r.reason


def test_adding_a_claim_is_one_entry() -> None:
    mine = Claim("mine", "Someone (2030)", "Fig. 9", "a new claim", "1–2×", "anywhere", Range(1, 2), ("bench",),
                 lambda ev: est(1.5, 1.6, unit="×"))
    r = judge(mine, Evidence())
    assert r.verdict == REPRODUCED and r.emulated.startswith("1.55×")
    assert "a new claim" in rp.verdict_table([r])


# ---------------------------------------------------------------------------------------------- the registry


def test_the_registry_names_every_claim_of_the_issue() -> None:
    keys = [c.key for c in CLAIMS]
    assert len(keys) == len(set(keys))
    assert {"e4-saving-ztt", "e4-saving-ring", "e4-speedup-ztt", "e4-speedup-ring", "e4-average-saving",
            "e4-max-speedup", "e4-orin-vs-nano", "dutt-best-static-nano", "dutt-best-static-nx",
            "dutt-nx-vs-nano"} <= set(keys)
    for c in CLAIMS:
        assert set(c.needs) <= {"bench", "dvfo", "bcedge", "dutt", "sweep"} and c.needs, c.key
        assert c.paper and c.published and c.setting and c.text
    by = {c.key: c for c in CLAIMS}
    assert by["e4-saving-ztt"].rule == Range(20, 37) and by["e4-speedup-ring"].rule == Range(1.3, 2.2)
    assert by["e4-average-saving"].rule == Point(26) and by["e4-max-speedup"].rule == Point(2.8)
    # Dutt et al.'s ranges are the calibration's (one source of the published numbers).
    for key, dev in (("dutt-best-static-nano", "jetson-nano"), ("dutt-best-static-nx", "xavier-nx")):
        lo, hi = SAVING_TARGETS[dev]
        assert by[key].rule == Range(100 * lo, 100 * hi, over="groups")
    assert rp.NOT_BUILT == ()  # every seed paper's claims are entries


# ---------------------------------------------------------------------------------------------- comparability


def _scenario(device: str, fps: float | str = 30) -> Scenario:
    name = f"{device}_m_{fps}"
    return Scenario(name, {"device": device, "model": "m", "fps": fps, "deadline_ms": None},
                    {"device": device, "model": "m", "fps": 9.0 if fps == "auto" else fps}, name, device, "m",
                    9.0 if fps == "auto" else float(fps), 33.3)


def _row(energy: float, latency: float = 30.0, miss: float = 0.0, acc: float = 0.8) -> dict:
    return {"energy_per_frame_j": energy, "latency_mean_ms": latency, "deadline_miss_rate": miss, "accuracy": acc}


def _evidence(rows: dict[tuple[str, str], tuple[dict, dict]], seeds=(0, 1)) -> Evidence:
    """E4 and zTT rows per scenario (the same on every seed but for a small energy step per seed)."""
    scen = {}
    ev_rows = {}
    for (device, fps), (e4, ztt) in rows.items():
        sc = _scenario(device, fps)
        scen[sc.name] = sc
        for s in seeds:
            ev_rows[(sc.name, "e4", s)] = {**e4, "energy_per_frame_j": e4["energy_per_frame_j"] + 0.01 * s}
            ev_rows[(sc.name, "ztt", s)] = ztt
    policies = tuple(PolicyEntry(lab, lab, {}, lab, "e4gym/EarlyExitDVFS-v1", {}, False)
                     for lab in ("e4", "ztt", "ring-dvfs"))
    exp = Experiment("t", "", "<dict>", ("device", "model", "fps", "deadline_ms"), tuple(seeds),
                     tuple(scen.values()), policies)
    return Evidence(experiment=exp, rows=ev_rows, seeds=tuple(seeds))


def test_comparability_limits_on_both_sides() -> None:
    eps = 1e-4
    cases = {
        ("a", 30): (_row(0.8, miss=MAX_MISS_RATE), _row(1.0, miss=MAX_MISS_RATE)),  # at the limits: kept
        ("b", 30): (_row(0.8, miss=MAX_MISS_RATE + eps), _row(1.0)),
        ("c", 30): (_row(0.8), _row(1.0, miss=MAX_MISS_RATE + eps)),
        ("d", 30): (_row(0.8, acc=0.8 - MAX_ACCURACY_LOSS), _row(1.0, acc=0.8)),  # loses exactly the limit: kept
        ("e", 30): (_row(0.8, acc=0.8 - MAX_ACCURACY_LOSS - eps), _row(1.0, acc=0.8)),
        ("f", "auto"): (_row(0.8), _row(1.0)),  # another setting: not read at 30 fps
    }
    used, excluded = comparisons(_evidence(cases), PAPER, ["ztt"])
    assert sorted(c.scenario.device for c in used) == ["a", "d"]
    text = "\n".join(excluded)
    assert "b m 30 fps vs zTT: E4 misses 5.0 % of deadlines" in text
    assert "c m 30 fps vs zTT: zTT misses 5.0 %" in text
    assert "e m 30 fps vs zTT: E4 loses 1.0 accuracy points against it" in text
    assert "f m" not in text and len(excluded) == 3
    # A baseline the experiment does not have is said once, not compared.
    used, excluded = comparisons(_evidence(cases), PAPER, ["ztt", "eenet"])
    assert sorted(c.scenario.device for c in used) == ["a", "d"]
    assert excluded[0] == "EENet: not a policy of this experiment (label 'eenet')" and len(excluded) == 4


def test_the_e4_figures_are_paired_by_seed_and_averaged_over_comparable_scenarios() -> None:
    ev = _evidence({("x", 30): (_row(0.8, latency=20.0), _row(1.0, latency=30.0)),
                    ("y", 30): (_row(0.6, latency=10.0), _row(1.0, latency=30.0)),
                    ("z", 30): (_row(0.1, acc=0.2), _row(1.0, acc=0.8))})  # z: E4 drops accuracy, left out
    sav = against(("ztt",), saving_pct, "%")(ev)
    assert isinstance(sav, Estimate)
    # seed 0: (20 + 40) / 2 = 30; seed 1: (19 + 39) / 2 = 29
    assert sav.values == pytest.approx((30.0, 29.0)) and sav.seeds == (0, 1)
    assert any("z m 30 fps" in x for x in sav.excluded)
    sp = against(("ztt",), speedup, "×")(ev)
    assert sp.mean == pytest.approx((1.5 + 3.0) / 2)
    best = against(("ztt",), speedup, "×", best=True)(ev)
    assert best.mean == pytest.approx(3.0) and "y m 30 fps vs zTT" in best.used[0]


def test_larger_on_needs_both_boards_comparable() -> None:
    ev = _evidence({("agx-orin", 30): (_row(0.7), _row(1.0)), ("jetson-nano", 30): (_row(0.1, miss=1.0), _row(1.0)),
                    ("agx-orin", "auto"): (_row(0.7), _row(1.0)), ("jetson-nano", "auto"): (_row(0.9), _row(1.0))})
    for k in [k for k in ev.rows if k[1] == "ztt"]:  # both baselines present
        ev.rows[(k[0], "ring-dvfs", k[2])] = ev.rows[k]
    at30 = larger_on("agx-orin", "jetson-nano", PAPER)(ev)
    assert isinstance(at30, NotComparable) and "jetson-nano" in at30.reason and "E4 misses 100.0 %" in at30.reason
    fits = larger_on("agx-orin", "jetson-nano", FITS)(ev)
    assert isinstance(fits, Estimate)
    assert fits.values == pytest.approx((30.0 - 10.0, 29.0 - 9.0))  # AGX Orin's saving minus the Nano's, per seed
    assert Above(0).judge(fits)[0] == REPRODUCED  # +20 points on both seeds


# ---------------------------------------------------------------------------------------------- a tiny real run

#: Two boards × one network × both frame rates, the claims' labels with cheap training: every claim resolves.
TINY = {
    "name": "tiny-reproduce",
    "env": {"episode_frames": 60},
    "matrix": {"device": ["jetson-nano", "agx-orin"], "model": ["mobilenet_v2"], "fps": [30, "auto"],
               "deadline_ms": [None]},
    "seeds": [0, 1],
    "policies": [
        "default",
        {"name": "e4", "args": {"train_streams": 1, "train_frames": 400, "train_epochs": 1}},
        {"name": "trained", "label": "ztt", "args": {"algo": "ztt", "steps": 200}},
        {"name": "trained", "label": "ring-dvfs", "args": {"algo": "ring-dvfs", "steps": 200}},
        {"name": "eenet", "args": {"train_streams": 3, "train_frames": 300, "train_steps": 30}},
    ],
}


#: DVFO's experiment, tiny: one board where offloading pays, DVFO and its baselines with cheap training and sweeps.
TINY_DVFO = {
    "name": "tiny-dvfo",
    "env": {"episode_frames": 60, "control_memory": True},
    "matrix": {"device": ["xavier-nx"], "model": ["efficientnet_b0"], "fps": [20], "deadline_ms": [None]},
    "seeds": [0, 1],
    "policies": [
        {"name": "e4", "args": {"train_streams": 1, "train_frames": 400, "train_epochs": 1}},
        "edge_only",
        "cloud_only",
        {"name": "best_static_offload", "args": {"frames": 40, "episodes": 1, "levels": 2}},
        {"name": "trained", "label": "dvfo", "args": {"algo": "dvfo", "env_id": "e4gym/EdgeCloudDVFS-v0",
                                                      "steps": 300}},
    ],
}


#: BCEdge's experiment, tiny: one board, BCEdge and its baselines with cheap training and sweeps.
TINY_BCEDGE = {
    "name": "tiny-bcedge",
    "env": {"episode_intervals": 8},
    "matrix": {"device": ["xavier-nx"]},
    "seeds": [0, 1],
    "policies": [
        "batch1", "triton_dynamic", "scale_with_load",
        {"name": "best_static_batching", "args": {"intervals": 4, "episodes": 1, "passes": 1}},
        {"name": "trained", "label": "bcedge", "args": {"algo": "bcedge", "env_id": "e4gym/BatchConcurrency-v0",
                                                        "steps": 200}},
    ],
}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, rp.Reproduction]:
    """The tiny configs run once (in-process, trained baselines cached in a temporary folder)."""
    root = tmp_path_factory.mktemp("reproduce")
    cfg, dvfo, bcedge = root / "tiny.yaml", root / "tiny-dvfo.yaml", root / "tiny-bcedge.yaml"
    cfg.write_text(yaml.safe_dump(TINY, sort_keys=False))
    dvfo.write_text(yaml.safe_dump(TINY_DVFO, sort_keys=False))
    bcedge.write_text(yaml.safe_dump(TINY_BCEDGE, sort_keys=False))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("E4GYM_CACHE_DIR", str(root / "cache"))
        rep = run_reproduce(root / "out", config=str(cfg), jobs=1, command="e4gym reproduce (test)", sweep_frames=30,
                            dvfo_config=str(dvfo), bcedge_config=str(bcedge))
    return cfg, rep


@pytest.mark.slow
def test_every_claim_resolves_against_a_tiny_run(tiny) -> None:
    _, rep = tiny
    assert rep.ran == 40 + 10 + 10 and rep.reused == 0 and not rep.failures  # E4's experiment, DVFO's, BCEdge's
    assert [r.claim.key for r in rep.results] == [c.key for c in CLAIMS]
    for r in rep.results:
        assert r.verdict in VERDICTS and r.reason, r.claim.key
        if isinstance(r.result, Estimate):
            assert r.result.values and all(math.isfinite(v) for v in r.result.values), r.claim.key
        else:  # not comparable: the reason says why, in numbers
            assert any(ch.isdigit() for ch in r.reason), r.reason
    by = {r.claim.key: r for r in rep.results}
    for key in ("dutt-best-static-nano", "dutt-best-static-nx", "dutt-nx-vs-nano", "e4-fig1-clocks", "e4-fig1-power"):
        assert isinstance(by[key].result, Estimate), key
    assert by["dutt-best-static-nano"].result.seeds == (0, 1)  # once per seed of the run
    # The bench claims read real rows: the Nano cannot run MobileNet-V2 at 30 fps, so no claim compares there.
    assert any(isinstance(by[k].result, Estimate) for k in ("e4-saving-ztt", "e4-saving-ring", "e4-average-saving"))
    assert by["e4-orin-vs-nano"].verdict == NOT_COMPARABLE and "jetson-nano" in by["e4-orin-vs-nano"].reason


@pytest.mark.slow
def test_the_report_and_figures_end_to_end_and_a_resumed_run_reuses_every_task(tiny, capsys) -> None:
    cfg, rep = tiny
    out = rep.out
    report = (out / "report.md").read_text()
    # The verdict table comes first, then what is not built, the figures, the details.
    order = [report.index(h) for h in ("## Verdicts", "## Not checked yet", "## Figures", "## Details", "## Runs")]
    assert order == sorted(order)
    assert "Command: `e4gym reproduce (test)`" in report and "Wall time: **" in report
    for r in rep.results:
        assert r.claim.text in report and r.reason in report
    assert "Every seed paper's claims are checked." in report
    assert "(`dvfo-energy`)" in report and (out / rp.DVFO_BENCH_DIR / "report.md").is_file()
    assert "(`bcedge-utility`)" in report and (out / rp.BCEDGE_BENCH_DIR / "report.md").is_file()
    for png in (rp.FIG1_FILE, rp.FIG3_FILE):
        assert f"]({png})" in report
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    state = json.loads((out / rp.STATE_FILE).read_text())
    assert state["status"] == "done" and state["mode"] == "full" and state["seeds"] == [0, 1]
    assert [c["key"] for c in state["claims"]] == [c.key for c in CLAIMS]
    assert (out / "bench" / "report.md").is_file() and not (out / "bench" / "plots").exists()

    # Resume through the command: every bench task is reused, the verdicts are the same.
    assert main(["reproduce", "--config", str(cfg), "--dvfo-config", str(cfg.parent / "tiny-dvfo.yaml"),
                 "--bcedge-config", str(cfg.parent / "tiny-bcedge.yaml"), "--out", str(out), "--jobs", "1",
                 "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "(0 task(s) run, 60 reused" in printed
    again = json.loads((out / rp.STATE_FILE).read_text())
    assert [c["verdict"] for c in again["claims"]] == [r.verdict for r in rep.results]


# ---------------------------------------------------------------------------------------------- modes and input

DUTT_ONLY = [c for c in CLAIMS if c.needs == ("dutt",)]


def test_frames_shorten_frame_experiments_not_serving_ones() -> None:
    """--quick's frames per episode apply to DVFO's frame-env experiment; BCEdge's keeps its decision intervals (so
    its cached trained agent stays valid)."""
    dvfo = rp._load_extra(TINY_DVFO, 30, [0, 1])
    assert {sc.env_kwargs["episode_frames"] for sc in dvfo.scenarios} == {30}
    bcedge = rp._load_extra(TINY_BCEDGE, 30, [0, 1])
    assert bcedge.family == "serving" and {sc.env_kwargs["episode_intervals"] for sc in bcedge.scenarios} == {8}
    assert bcedge.seeds == (0, 1) and rp._frames(dvfo, bcedge) == [30]


def test_quick_mode_is_labelled_and_a_folder_keeps_its_mode(tmp_path) -> None:
    rep = run_reproduce(tmp_path / "q", quick=True, claims=DUTT_ONLY)
    assert rep.quick and rep.evidence.seeds == rp.QUICK_SEEDS and len(rp.QUICK_SEEDS) >= 2
    text = (tmp_path / "q" / "report.md").read_text()
    assert "**Quick run**" in text and "not a headline result" in text
    assert text.index("Quick run") < text.index("## Verdicts")
    with pytest.raises(ConfigError, match="holds a quick run"):
        run_reproduce(tmp_path / "q", claims=DUTT_ONLY)
    full = run_reproduce(tmp_path / "q", claims=DUTT_ONLY, force=True)  # the config's five seeds
    assert not full.quick and "Quick run" not in full.report and full.ran == 0
    assert all(r.result.seeds == (0, 1, 2, 3, 4) for r in full.results)
    assert not (tmp_path / "q" / "bench").exists()  # no claim needed the bench experiment


@pytest.mark.slow
def test_ctrl_c_prints_one_line_with_the_resume_command(tmp_path, monkeypatch, capsys) -> None:
    cfg = tmp_path / "one.yaml"
    cfg.write_text(yaml.safe_dump({**TINY, "matrix": {**TINY["matrix"], "device": ["xavier-nx"], "fps": [30]},
                                   "env": {"episode_frames": 30}, "policies": ["default"]}, sort_keys=False))
    dvfo = tmp_path / "dvfo.yaml"
    dvfo.write_text(yaml.safe_dump({**TINY_DVFO, "env": {"episode_frames": 30}, "policies": ["edge_only"]}))
    bcedge = tmp_path / "bcedge.yaml"
    bcedge.write_text(yaml.safe_dump({**TINY_BCEDGE, "policies": ["batch1"]}))
    out = tmp_path / "out"
    real = bench_runner.run_task
    calls = []

    def second_is_interrupted(task, out_dir):
        calls.append(task)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(task, out_dir)

    monkeypatch.setattr(bench_runner, "run_task", second_is_interrupted)
    argv = ["reproduce", "--config", str(cfg), "--dvfo-config", str(dvfo), "--bcedge-config", str(bcedge), "--out",
            str(out), "--jobs", "1", "--quiet", "--force"]
    assert main(argv) == 130
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("e4gym reproduce: interrupted") and "kept" in lines[0]
    command = lines[0].split("resume with: ", 1)[1]
    assert command == shlex.join(["e4gym", "reproduce", "--out", str(out), "--jobs", "1", "--quiet", "--config",
                                  str(cfg), "--dvfo-config", str(dvfo), "--bcedge-config", str(bcedge)])
    monkeypatch.setattr(bench_runner, "run_task", real)
    assert main(shlex.split(command)[1:]) == 0
    assert "(5 task(s) run, 1 reused" in capsys.readouterr().out  # the rest of E4's, then DVFO's and BCEdge's two


def test_bad_input_is_one_line(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as exc:  # argparse: its usage line and one error line
        main(["reproduce", "--out", str(tmp_path / "o"), "--jobs", "0"])
    assert exc.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith("expected an integer >= 1, got '0'")
    assert main(["reproduce", "--out", str(tmp_path / "o"), "--config", "no-such-experiment"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("e4gym reproduce: error: no experiment config 'no-such-experiment'")
    assert not (tmp_path / "o").exists()  # nothing was written


def test_an_out_that_is_a_file_is_refused_before_anything_runs(tmp_path, capsys) -> None:
    f = tmp_path / "file"
    f.write_text("x")
    assert main(["reproduce", "--out", str(f), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("e4gym reproduce: error: output folder") and "not a folder" in err[0]
