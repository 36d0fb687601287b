"""Faults of `e4gym bench`'s outputs (issue 14, finding 3 and the bench probes of finding 7).

* A damaged per-task result (truncated trace, missing or inconsistent arrays, unreadable JSON, a definition
  that is not the task's) is moved to ``OUT/quarantine/`` with a one-line message and the task runs again,
  instead of being reused and crashing every later run (``BadZipFile`` in the TensorBoard writer).
* TensorBoard runs and plots are built beside their folder and swapped in whole: a writer that fails leaves the
  previous ``tb/<scenario>`` / ``plots/<scenario>`` as they were.
* ``--out`` that is a file or not writable, and an output file that is a folder, are one-line errors before any
  task runs.
* Ctrl-C prints one line with the resume command, keeps the finished tasks and exits with 130.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml

from e4gym.bench import run_benchmark
from e4gym.bench import runner as bench_runner
from e4gym.bench import tb as bench_tb
from e4gym.cli import main
from e4gym.errors import ConfigError
from tests.cli_signals import interrupt_after_first_result

SCENARIO = "xavier-nx_efficientnet_b0_30fps_dl-period"
#: Two tasks of 20 frames (well under a second each).
TINY: dict = {
    "name": "tiny",
    "description": "fault tests",
    "env": {"episode_frames": 20},
    "matrix": {"device": ["xavier-nx"], "model": ["efficientnet_b0"], "fps": [30], "deadline_ms": [None]},
    "seeds": [0],
    "policies": ["performance", "default"],
}
TASK = f"runs/{SCENARIO}/performance/seed0"


def write_config(path: Path, data: dict = TINY) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """An output folder of the tiny config run once (TensorBoard, no plots)."""
    root = tmp_path_factory.mktemp("finished")
    res = run_benchmark(TINY, root / "out", jobs=1, plots=False)
    assert res.ok and res.ran == 2
    return root / "out"


@pytest.fixture
def out(finished, tmp_path) -> Path:
    """A private copy of :func:`finished`."""
    dst = tmp_path / "out"
    shutil.copytree(finished, dst)
    return dst


def _no_tasks(monkeypatch) -> list:
    """Make every task fail the test; returns the list of tasks attempted."""
    calls: list = []

    def refuse(task, out):
        calls.append(task)
        raise AssertionError(f"a task ran: {task.describe()}")

    monkeypatch.setattr(bench_runner, "run_task", refuse)
    return calls


def _tree(path: Path) -> dict[str, tuple[int, int]]:
    """``relative path -> (inode, size)`` of every file under ``path`` (an unchanged file keeps its inode)."""
    return {str(p.relative_to(path)): (p.stat().st_ino, p.stat().st_size) for p in path.rglob("*") if p.is_file()}


# ---------------------------------------------------------------------------------------------- damaged results


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _rewrite_npz(path: Path, change) -> None:
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    change(arrays)
    with open(path, "wb") as f:
        np.savez_compressed(f, **arrays)


def _corrupt_crc(path: Path) -> None:
    """Flip a byte inside the compressed data of one array (the zip's central directory stays readable)."""
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("exit.npy")
    data = bytearray(path.read_bytes())
    at = info.header_offset + 30 + len(info.filename) + len(info.extra) + info.compress_size // 2
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))


def _edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


DAMAGE = {
    "truncated trace": lambda out: _truncate(out / f"{TASK}.npz"),
    "empty trace": lambda out: (out / f"{TASK}.npz").write_bytes(b""),
    "corrupt trace data": lambda out: _corrupt_crc(out / f"{TASK}.npz"),
    "trace without an array": lambda out: _rewrite_npz(out / f"{TASK}.npz", lambda a: a.pop("exit")),
    "trace arrays of different lengths": lambda out: _rewrite_npz(
        out / f"{TASK}.npz", lambda a: a.update(cpu_hz=a["cpu_hz"][:5])),
    "trace shorter than the row's frames": lambda out: _rewrite_npz(
        out / f"{TASK}.npz", lambda a: a.update({k: v[:10] for k, v in a.items()})),
    "trace missing": lambda out: (out / f"{TASK}.npz").unlink(),
    "truncated result json": lambda out: _truncate(out / f"{TASK}.json"),
    "result row without a metric": lambda out: _edit_json(out / f"{TASK}.json", lambda d: d["row"].pop("accuracy")),
    "definition that is not the task's": lambda out: _edit_json(
        out / f"{TASK}.json", lambda d: d["definition"].update(seed=7)),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_result_is_quarantined_and_rerun(out, damage, capsys) -> None:
    DAMAGE[damage](out)
    before = (out / f"{TASK}.npz").read_bytes() if (out / f"{TASK}.npz").exists() else None
    res = run_benchmark(TINY, out, jobs=1, plots=False)
    assert res.ok and (res.ran, res.reused) == (1, 1)
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert "policy 'performance' on scenario" in lines[0] and "seed 0" in lines[0]
    assert "quarantine" in lines[0] and "running it again" in lines[0]
    # The damaged files are kept aside, the task has a sound result again.
    moved = [p for p in (out / "quarantine").rglob("seed0.*") if p.is_file()]
    assert moved and all("performance" in p.parts for p in moved)
    if before is not None:
        assert any(p.read_bytes() == before for p in moved if p.name.startswith("seed0.npz"))
    assert len(res.quarantined) == 1
    with np.load(out / f"{TASK}.npz") as z:
        assert len(z["exit"]) == 20
    assert "quarantine" in res.report
    # The next run reuses everything and says nothing.
    again = run_benchmark(TINY, out, jobs=1, plots=False)
    assert again.ok and (again.ran, again.reused) == (0, 2) and capsys.readouterr().err == ""


def test_truncated_trace_no_longer_breaks_every_rerun(out, capsys) -> None:
    """The issue's reproduction through the command: a truncated trace, then the same command twice."""
    _truncate(out / f"{TASK}.npz")
    argv = ["bench", "--config", str(write_config(out.parent / "tiny.yaml")), "--out", str(out), "--jobs", "1",
            "--quiet"]
    assert main(argv) == 0
    std = capsys.readouterr()
    assert "1 task(s) run, 1 reused" in std.out and "quarantine" in std.err
    assert sorted(p.name for p in (out / "tb" / SCENARIO).iterdir()) == ["default", "performance"]
    assert main(argv) == 0
    assert "0 task(s) run, 2 reused" in capsys.readouterr().out


def test_stale_result_of_another_definition_is_rerun_without_quarantine(out, capsys) -> None:
    """A changed config is not damage: the old result is replaced in place, silently."""
    res = run_benchmark({**TINY, "env": {"episode_frames": 12}}, out, jobs=1, plots=False, tensorboard=False)
    assert res.ok and res.ran == 2 and not res.quarantined
    assert not (out / "quarantine").exists() and capsys.readouterr().err == ""


def test_unfinished_task_without_json_is_rerun_without_quarantine(out, capsys) -> None:
    """A run killed between the trace and the JSON leaves a trace alone: not damage, just not finished."""
    (out / f"{TASK}.json").unlink()
    res = run_benchmark(TINY, out, jobs=1, plots=False, tensorboard=False)
    assert res.ok and (res.ran, res.reused) == (1, 1) and not res.quarantined
    assert capsys.readouterr().err == ""


def test_task_files_are_written_atomically(tmp_path, monkeypatch) -> None:
    """A trace write that dies half-way leaves no file (and no temporary) where the result belongs."""
    exp = bench_runner.load_experiment(TINY)
    task = bench_runner.build_tasks(exp)[0]

    def dies(f, **arrays):
        f.write(b"PK\x03\x04 half a zip")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez_compressed", dies)
    outcome = bench_runner.run_task(task, tmp_path)
    assert not outcome["ok"] and "disk full" in outcome["error"]
    folder = tmp_path / Path(task.relpath).parent
    assert not folder.exists() or list(folder.iterdir()) == []


# ---------------------------------------------------------------------------------------------- TB and plots


def test_failing_tensorboard_writer_keeps_the_previous_runs(out, monkeypatch) -> None:
    tb = out / "tb" / SCENARIO
    before = _tree(tb)
    assert len(before) == 2
    closes = []
    real_close = bench_tb._Writer.close

    def close_then_fail(self) -> None:
        closes.append(self.path)
        if len(closes) == 2:
            raise RuntimeError("disk went away")
        real_close(self)

    monkeypatch.setattr(bench_tb._Writer, "close", close_then_fail)
    with pytest.raises(RuntimeError, match="disk went away"):
        run_benchmark(TINY, out, jobs=1, plots=False)
    assert _tree(tb) == before  # the same files, not rewritten
    assert sorted(p.name for p in (out / "tb").iterdir()) == [SCENARIO]  # no temporary folder left
    monkeypatch.setattr(bench_tb._Writer, "close", real_close)
    run_benchmark(TINY, out, jobs=1, plots=False)
    after = _tree(tb)
    assert len(after) == 2 and not set(after.values()) & set(before.values())


def test_interrupted_tensorboard_writer_keeps_the_previous_runs(out, monkeypatch) -> None:
    tb = out / "tb" / SCENARIO
    before = _tree(tb)

    def interrupted(self, values, step, wall_time) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(bench_tb._Writer, "scalars", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_benchmark(TINY, out, jobs=1, plots=False)
    assert _tree(tb) == before
    assert sorted(p.name for p in (out / "tb").iterdir()) == [SCENARIO]


def test_killed_swap_leftovers_are_cleaned(out) -> None:
    """Temporary folders a killed writer left beside tb/<scenario> (TensorBoard would list them) are removed."""
    (out / "tb" / f"{SCENARIO}.tmp-abc123" / "performance").mkdir(parents=True)
    (out / "tb" / f"{SCENARIO}.old-xyz" / SCENARIO).mkdir(parents=True)
    run_benchmark(TINY, out, jobs=1, plots=False)
    assert sorted(p.name for p in (out / "tb").iterdir()) == [SCENARIO]


@pytest.mark.slow
def test_failing_plot_keeps_the_previous_plots(out, monkeypatch) -> None:
    from e4gym.bench import plots as bench_plots

    run_benchmark(TINY, out, jobs=1, tensorboard=False)
    folder = out / "plots" / SCENARIO
    before = _tree(folder)
    assert sorted(before) == ["bars.png", "scatter.png", "traces.png"]

    def fails(*args, **kwargs):
        raise RuntimeError("matplotlib broke")

    monkeypatch.setattr(bench_plots, "_traces", fails)
    with pytest.raises(RuntimeError, match="matplotlib broke"):
        run_benchmark(TINY, out, jobs=1, tensorboard=False)
    assert _tree(folder) == before
    assert sorted(p.name for p in (out / "plots").iterdir()) == [SCENARIO]


# ---------------------------------------------------------------------------------------------- bad --out


def _bench(cfg: Path, out: Path | str, *extra: str) -> list[str]:
    return ["bench", "--config", str(cfg), "--out", str(out), "--jobs", "1", "--quiet", *extra]


def _one_error_line(capsys) -> str:
    std = capsys.readouterr()
    lines = [ln for ln in std.err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("e4gym bench: error: "), std.err
    assert "Traceback" not in std.err
    return lines[0]


def test_out_that_is_a_file_fails_before_any_task(tmp_path, monkeypatch, capsys) -> None:
    calls = _no_tasks(monkeypatch)
    cfg = write_config(tmp_path / "tiny.yaml")
    target = tmp_path / "results"
    target.write_text("not a folder")
    assert main(_bench(cfg, target)) == 2
    line = _one_error_line(capsys)
    assert str(target) in line and "not a folder" in line and "--out" in line
    assert target.read_text() == "not a folder" and calls == []
    # A folder that cannot be created because an ancestor is a file.
    assert main(_bench(cfg, target / "sub")) == 2
    line = _one_error_line(capsys)
    assert str(target / "sub") in line and str(target) in line and "--out" in line
    assert calls == []


def _unwritable_dir(tmp_path: Path) -> Path:
    """A folder this process cannot create files in (a read-only folder; /sys when running as root)."""
    ro = tmp_path / "read-only"
    ro.mkdir()
    ro.chmod(0o555)
    for cand in (ro, Path("/sys")):
        try:
            fd, name = tempfile.mkstemp(dir=cand)
        except OSError:
            return cand
        os.close(fd)
        os.unlink(name)
    pytest.skip("no unwritable folder here (root, and /sys is writable)")


def test_unwritable_out_fails_before_any_task(tmp_path, monkeypatch, capsys) -> None:
    calls = _no_tasks(monkeypatch)
    cfg = write_config(tmp_path / "tiny.yaml")
    ro = _unwritable_dir(tmp_path)
    try:
        for target in (ro, ro / "new-output"):
            assert main(_bench(cfg, target)) == 2
            line = _one_error_line(capsys)
            assert str(target) in line and "not writable" in line and "--out" in line
        assert calls == []
    finally:
        (tmp_path / "read-only").chmod(0o755)


@pytest.mark.parametrize("name", ["results.csv", "results.json", "report.md"])
def test_output_file_that_is_a_folder_fails_before_any_task(out, monkeypatch, capsys, name) -> None:
    (out / name).unlink()
    (out / name).mkdir()
    calls = _no_tasks(monkeypatch)
    assert main(_bench(write_config(out.parent / "tiny.yaml"), out, "--force")) == 2
    line = _one_error_line(capsys)
    assert str(out / name) in line and "folder" in line and ("move" in line or "delete" in line)
    assert calls == []


@pytest.mark.parametrize("name", ["tb", "runs"])
def test_output_folder_that_is_a_file_fails_before_any_task(tmp_path, monkeypatch, capsys, name) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / name).write_text("")
    calls = _no_tasks(monkeypatch)
    assert main(_bench(write_config(tmp_path / "tiny.yaml"), out)) == 2
    line = _one_error_line(capsys)
    assert str(out / name) in line and "not a folder" in line
    assert calls == []


def test_bad_out_from_the_library_raises_config_error(tmp_path) -> None:
    target = tmp_path / "file"
    target.write_text("")
    with pytest.raises(ConfigError, match="not a folder"):
        run_benchmark(TINY, target, jobs=1)


def test_sweep_output_that_is_a_folder_is_refused_even_with_force(tmp_path) -> None:
    from e4gym.bench.sweep import check_outputs

    (tmp_path / "sweep.csv").mkdir()
    with pytest.raises(ConfigError, match=r"sweep\.csv is a folder"):
        check_outputs(tmp_path, force=True, create=False)
    ro = _unwritable_dir(tmp_path)
    try:
        with pytest.raises(ConfigError, match="not writable"):
            check_outputs(ro, create=False)
    finally:
        (tmp_path / "read-only").chmod(0o755)


# ---------------------------------------------------------------------------------------------- Ctrl-C


def test_ctrl_c_keeps_finished_tasks_and_prints_the_resume_command(tmp_path, monkeypatch, capsys) -> None:
    cfg = write_config(tmp_path / "tiny.yaml")
    out = tmp_path / "out"
    real = bench_runner.run_task
    calls = []

    def second_is_interrupted(task, out_dir):
        calls.append(task)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(task, out_dir)

    monkeypatch.setattr(bench_runner, "run_task", second_is_interrupted)
    assert main(_bench(cfg, out, "--frames", "20", "--force")) == 130
    std = capsys.readouterr()
    lines = [ln for ln in std.err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in std.err, std.err
    assert lines[0].startswith("e4gym bench: interrupted") and "kept" in lines[0]
    command = lines[0].split("resume with: ", 1)[1]
    assert command == shlex.join(["e4gym", *_bench(cfg, out, "--frames", "20")])  # --force dropped
    assert (out / f"{TASK}.json").is_file() and (out / f"{TASK}.npz").is_file()
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name]

    monkeypatch.setattr(bench_runner, "run_task", real)
    assert main(shlex.split(command)[1:]) == 0
    assert "1 task(s) run, 1 reused" in capsys.readouterr().out


@pytest.mark.slow
def test_sigint_to_a_running_bench(tmp_path) -> None:
    """A real Ctrl-C (SIGINT) to the command: one line, exit 130, the finished task kept and resumed."""
    cfg = write_config(tmp_path / "tiny.yaml", {**TINY, "env": {"episode_frames": 400}, "seeds": [0, 1, 2]})
    out = tmp_path / "out"
    rc, err = interrupt_after_first_result(_bench(cfg, out), out)
    if rc == 0:
        pytest.skip("the bench finished before the signal arrived")
    assert rc == 130, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("e4gym bench: interrupted") and "resume with: e4gym bench --config" in lines[0]
    kept = list((out / "runs").rglob("seed*.json"))
    assert kept and not [p for p in out.rglob("*") if ".tmp-" in p.name]
    res = run_benchmark(cfg, out, jobs=1, plots=False, tensorboard=False)
    assert res.ok and res.reused >= len(kept)
