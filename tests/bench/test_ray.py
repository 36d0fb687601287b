"""The Ray executor of the benchmark harness (`e4gym bench --executor ray`, issue 20).

Ray is started with at most 2 CPUs and no dashboard, and every test checks that no Ray is left running. The tests
that need Ray skip when it is not installed (CI installs it with the test extra).
"""

from __future__ import annotations

import copy
import importlib.util
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from e4gym.bench import run_benchmark
from e4gym.bench import runner as bench_runner
from e4gym.bench.config import load_experiment
from e4gym.bench.runner import build_tasks, check_result, task_resources
from e4gym.cli import main
from e4gym.errors import ConfigError
from tests.cli_signals import interrupt_after_first_result

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # bench_policies and this module must be importable here and in the workers
    sys.path.insert(0, str(HERE))

from bench_policies import _Top  # noqa: E402

needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                               reason="ray is not installed (pip install 'e4gym[ray]'; the test extra installs it)")

FRAMES = 60
SCENARIO = "xavier-nx_efficientnet_b0_30fps_dl-period"
BASE: dict = {
    "name": "tiny",
    "env": {"episode_frames": FRAMES},
    "matrix": {"device": ["xavier-nx"], "model": ["efficientnet_b0"], "fps": [30], "deadline_ms": [None]},
    "seeds": [0, 1],
    "policies": ["performance", "ondemand"],
}
#: Row columns and trace arrays that are wall-clock measurements (they differ between any two runs).
WALL_CLOCK_COLUMNS = {"wall_s", "decision_mean_ms", "decision_p50_ms", "decision_p99_ms"}
WALL_CLOCK_TRACES = {"decision_ms"}


class DiesOnce(_Top):
    """Kills its own process in the first ``predict`` unless ``marker`` exists (it creates it first), so a
    retried task succeeds; ``always=True`` kills it every time."""

    def __init__(self, marker: str, always: bool = False) -> None:
        self.marker = marker
        self.always = always

    def predict(self, observation: np.ndarray, state: Any = None, episode_start: Any = None,
                deterministic: bool = True) -> tuple[np.ndarray, Any]:
        if self.always or not Path(self.marker).exists():
            Path(self.marker).touch()
            os._exit(17)
        return super().predict(observation, state)


def comparable(row: dict) -> str:
    """A result row without its wall-clock columns, as canonical JSON text (NaN equal to NaN)."""
    return json.dumps({k: v for k, v in row.items() if k not in WALL_CLOCK_COLUMNS}, sort_keys=True)


def traces(out: Path) -> dict[str, dict[str, np.ndarray]]:
    """Every trace under ``out/runs`` (by relative path), without its wall-clock arrays."""
    found = {}
    for path in sorted((out / "runs").rglob("*.npz")):
        with np.load(path) as z:
            found[str(path.relative_to(out))] = {k: z[k] for k in z.files if k not in WALL_CLOCK_TRACES}
    return found


def ray_processes() -> list[str]:
    """Ray's processes (raylet, gcs_server, workers) descending from this process, as ``pid name``."""
    table = subprocess.run(["ps", "-e", "-o", "pid=,ppid=,comm="], capture_output=True, text=True, check=True)
    children: dict[int, list[tuple[int, str]]] = {}
    for line in table.stdout.splitlines():
        pid, ppid, comm = line.split(None, 2)
        children.setdefault(int(ppid), []).append((int(pid), comm))
    found, todo = [], [os.getpid()]
    while todo:
        for pid, comm in children.get(todo.pop(), []):
            todo.append(pid)
            if any(k in comm.lower() for k in ("raylet", "gcs_server", "ray::")):
                found.append(f"{pid} {comm}")
    return found


def assert_no_ray_left() -> None:
    import ray

    assert not ray.is_initialized()
    assert ray_processes() == []


@pytest.fixture(scope="module")
def both(tmp_path_factory) -> dict[str, Any]:
    """The tiny matrix run in-process by the local executor and by Ray with 2 CPUs (progress bars captured)."""
    root = tmp_path_factory.mktemp("ray")
    bars = {}
    results = {}
    for name, kw in (("local", {"jobs": 1}), ("ray", {"jobs": 2, "executor": "ray"})):
        saved, sys.stderr = sys.stderr, io.StringIO()  # where the bar writes (tqdm's file=sys.stderr)
        try:
            results[name] = run_benchmark(copy.deepcopy(BASE), root / name, quiet=False, plots=False,
                                          tensorboard=False, **kw)
            bars[name] = sys.stderr.getvalue()
        finally:
            sys.stderr = saved
    return {"root": root, "results": results, "bars": bars}


@needs_ray
@pytest.mark.slow
def test_ray_gives_the_local_executors_results(both) -> None:
    local, ray_res = both["results"]["local"], both["results"]["ray"]
    assert local.ok and ray_res.ok, [f.describe() for f in ray_res.failures]
    assert (ray_res.ran, ray_res.reused) == (4, 0)
    assert [comparable(r) for r in ray_res.rows] == [comparable(r) for r in local.rows]
    assert [r["label"] for r in ray_res.rows] == ["performance"] * 2 + ["ondemand"] * 2
    a, b = traces(both["root"] / "local"), traces(both["root"] / "ray")
    assert sorted(a) == sorted(b) and len(a) == 4
    for path in a:
        assert sorted(a[path]) == sorted(b[path])
        for k in a[path]:
            np.testing.assert_array_equal(a[path][k], b[path][k], err_msg=f"{path}: {k}")
    # the same tables, but for the measured decision times
    csv = {n: (both["root"] / n / "results.csv").read_text().splitlines()[0] for n in ("local", "ray")}
    assert csv["local"] == csv["ray"]
    assert_no_ray_left()


@needs_ray
@pytest.mark.slow
def test_the_progress_bar_is_the_local_executors(both) -> None:
    for name in ("local", "ray"):
        last = both["bars"][name].replace("\r", "\n").strip().splitlines()[-1]
        assert last.startswith("bench tiny: 100%") and "4/4" in last, (name, last)
        assert f"ondemand/{SCENARIO}/seed" in last or f"performance/{SCENARIO}/seed" in last


@needs_ray
@pytest.mark.slow
def test_a_ray_run_resumes_with_every_task_reused(both) -> None:
    out = both["root"] / "ray"
    exp = load_experiment(copy.deepcopy(BASE))
    for task in build_tasks(exp):
        data, why = check_result(out, task)
        assert data is not None and why is None, (task.describe(), why)
    for executor in ("ray", "local"):  # nothing pending: Ray is not even started
        res = run_benchmark(copy.deepcopy(BASE), out, jobs=2, executor=executor, plots=False, tensorboard=False)
        assert res.ok and (res.ran, res.reused) == (0, 4)
        assert [comparable(r) for r in res.rows] == [comparable(r) for r in both["results"]["ray"].rows]
    assert not list(out.rglob("*.tmp-*")) and not (out / "quarantine").exists()
    assert_no_ray_left()


@needs_ray
@pytest.mark.slow
def test_a_task_whose_worker_dies_is_retried_and_one_out_of_retries_fails(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(bench_runner, "RAY_MAX_RETRIES", 1)  # the always-dying task costs two worker deaths
    marker, doomed = tmp_path / "died-once", tmp_path / "died-always"
    cfg = copy.deepcopy(BASE) | {"seeds": [0], "policies": [
        {"name": "test_ray:DiesOnce", "label": "dies-once", "args": {"marker": str(marker)}},
        {"name": "test_ray:DiesOnce", "label": "dies-always", "args": {"marker": str(doomed), "always": True}},
    ]}
    res = run_benchmark(cfg, tmp_path / "ray", jobs=2, executor="ray", plots=False, tensorboard=False)
    assert marker.exists() and doomed.exists()  # both workers did die
    assert (res.ran, len(res.rows), len(res.failures)) == (2, 1, 1)
    fail = res.failures[0]
    assert fail.label == "dies-always" and "\n" not in fail.error and "Error" in fail.error.split(":")[0]
    runs = tmp_path / "ray" / "runs" / SCENARIO
    assert not (runs / "dies-always").exists()  # nothing partial: a dead attempt writes nothing
    assert sorted(p.name for p in (runs / "dies-once").iterdir()) == ["seed0.json", "seed0.npz"]
    assert_no_ray_left()
    # the retried result is complete and is what a run that never died gives
    task = next(t for t in build_tasks(load_experiment(cfg)) if t.policy.label == "dies-once")
    assert check_result(tmp_path / "ray", task)[0] is not None
    cfg["policies"] = cfg["policies"][:1]
    local = run_benchmark(cfg, tmp_path / "local", jobs=1, plots=False, tensorboard=False)
    assert local.ok and comparable(local.rows[0]) == comparable(res.rows[0])
    assert traces(tmp_path / "local").keys() == traces(tmp_path / "ray").keys()
    for path, arrays in traces(tmp_path / "local").items():
        for k, v in arrays.items():
            np.testing.assert_array_equal(v, traces(tmp_path / "ray")[path][k])


@needs_ray
@pytest.mark.slow
def test_ctrl_c_shuts_ray_down_and_keeps_finished_tasks(tmp_path, monkeypatch) -> None:
    write = bench_runner.write_task
    calls = []

    def interrupted(out, task, outcome):
        calls.append(task.describe())
        if len(calls) == 2:
            raise KeyboardInterrupt
        return write(out, task, outcome)

    monkeypatch.setattr(bench_runner, "write_task", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_benchmark(copy.deepcopy(BASE), tmp_path, jobs=2, executor="ray", plots=False, tensorboard=False)
    assert_no_ray_left()
    assert len(list((tmp_path / "runs").rglob("*.json"))) == 1
    monkeypatch.setattr(bench_runner, "write_task", write)
    res = run_benchmark(copy.deepcopy(BASE), tmp_path, jobs=1, plots=False, tensorboard=False)
    assert res.ok and (res.ran, res.reused) == (3, 1)


@needs_ray
@pytest.mark.slow
def test_sigint_to_a_ray_bench_shuts_its_ray_down(tmp_path) -> None:
    """A real Ctrl-C (SIGINT) to `e4gym bench --executor ray`: exit 130, one line with the resume command, and no
    Ray process left (found by the temporary folder its processes name)."""
    ray_tmp = tempfile.mkdtemp(prefix="e4r", dir="/tmp")  # short: Ray's socket paths must fit in 107 bytes
    cfg = tmp_path / "slow.yaml"
    cfg.write_text(json.dumps(BASE | {"seeds": [0, 1, 2], "policies": [
        {"name": "bench_policies:Slow", "label": "slow", "args": {"ms": 20.0}}]}))
    out = tmp_path / "out"
    args = ["bench", "--config", str(cfg), "--out", str(out), "--jobs", "1", "--executor", "ray", "--quiet"]
    env = {**os.environ, "RAY_TMPDIR": ray_tmp, "PYTHONPATH": os.pathsep.join([str(HERE), *sys.path])}
    rc, err = interrupt_after_first_result(args, out, env)
    try:
        left = subprocess.run(["ps", "-e", "-o", "pid=,args="], capture_output=True, text=True).stdout
        assert [line for line in left.splitlines() if ray_tmp in line] == []
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    if rc == 0:
        pytest.skip("the bench finished before the signal arrived")
    assert rc == 130, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("e4gym bench: interrupted"), err
    assert lines[0].endswith("--executor ray")
    kept = list((out / "runs").rglob("seed*.json"))
    assert 1 <= len(kept) < 3 and not [p for p in out.rglob("*") if ".tmp-" in p.name]


def test_executor_ray_without_ray_is_one_line_naming_the_fix(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(json.dumps(BASE))
    out = tmp_path / "out"
    assert main(["bench", "--config", str(cfg), "--out", str(out), "--executor", "ray"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install 'e4gym[ray]'" in err, err
    assert not out.exists()
    with pytest.raises(ConfigError, match=r"e4gym\[ray\]"):
        run_benchmark(copy.deepcopy(BASE), out, executor="ray")
    assert main(["reproduce", "--quick", "--out", str(out), "--executor", "ray"]) == 2
    assert "pip install 'e4gym[ray]'" in capsys.readouterr().err
    assert not out.exists()


def test_bad_executor_arguments_are_refused_before_anything_runs(tmp_path) -> None:
    with pytest.raises(ConfigError, match="executor must be one of"):
        run_benchmark(copy.deepcopy(BASE), tmp_path / "a", executor="dask")
    with pytest.raises(ConfigError, match="--address"):
        run_benchmark(copy.deepcopy(BASE), tmp_path / "b", address="127.0.0.1:6379")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_the_resume_command_keeps_the_executor() -> None:
    import argparse

    from e4gym.bench.cli import add_bench_parser, resume_command
    from e4gym.bench.reproduce import add_reproduce_parser
    from e4gym.bench.reproduce import resume_command as reproduce_resume

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    add_bench_parser(sub)
    add_reproduce_parser(sub)
    args = parser.parse_args(["bench", "--config", "quickstart", "--out", "o", "--executor", "ray", "--address",
                              "auto", "--force"])
    assert resume_command(args) == "e4gym bench --config quickstart --out o --executor ray --address auto"
    args = parser.parse_args(["reproduce", "--quick", "--executor", "ray"])
    assert reproduce_resume(args).endswith("--quick --executor ray")


def test_task_resources_reserve_a_gpu_for_cuda_runners_only() -> None:
    exp = load_experiment(copy.deepcopy(BASE))
    assert {tuple(task_resources(t).items()) for t in build_tasks(exp)} == {(("num_cpus", 1), ("num_gpus", 0))}
    board = {"backend": "jetson", "backend_kwargs": {"sysfs_root": "/", "runner_device": "cuda:0"}}
    cuda = load_experiment(copy.deepcopy(BASE), backend=board)
    assert all(task_resources(t) == {"num_cpus": 1, "num_gpus": 1} for t in build_tasks(cuda))
    board["backend_kwargs"]["runner_device"] = "cpu"
    cpu = load_experiment(copy.deepcopy(BASE), backend=board)
    assert all(task_resources(t) == {"num_cpus": 1, "num_gpus": 0} for t in build_tasks(cpu))


def test_the_overhead_benchmark_derives_its_columns_from_the_wall_times() -> None:
    spec = importlib.util.spec_from_file_location("bench_ray_overhead", HERE.parent.parent / "benchmarks" /
                                                  "ray_overhead.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    walls = {("local", 1, 8): 1.5, ("local", 1, 128): 6.3, ("local", 2, 8): 2.0, ("local", 2, 128): 4.4,
             ("ray", 1, 8): 7.0, ("ray", 1, 128): 11.92, ("ray", 2, 8): 8.0, ("ray", 2, 128): 10.64}
    text = module.table({"walls": walls, "task_s": 0.04, "sizes": (8, 128),
                         "between": {"local": 0.003, "ray": 0.0035}}, 1000)
    rows = {tuple(cells[:2]): cells[2:] for line in text.splitlines() if line.startswith(("| local", "| ray"))
            for cells in [[c.strip() for c in line.strip().strip("|").split("|")]]}
    assert list(rows) == [("local", "1"), ("local", "2"), ("ray", "1"), ("ray", "2")]
    # slope: ms per task; intercept: fixed s per run; the overhead is the slope over the local one's, same workers
    assert rows[("local", "1")] == ["1.50", "6.30", "40.0", "1.18", "1.00", "–", "–"]
    assert rows[("local", "2")] == ["2.00", "4.40", "20.0", "1.84", "2.00", "–", "–"]
    assert rows[("ray", "1")] == ["7.00", "11.92", "41.0", "6.67", "0.98", "+1.0", "+2.5"]
    assert rows[("ray", "2")] == ["8.00", "10.64", "22.0", "7.82", "1.82", "+2.0", "+5.0"]
    assert "one 1000-frame episode): 40.0 ms" in text
    assert text.endswith("local 3.0 ms, Ray 3.5 ms: Ray's dispatch overhead +0.5 ms per task, +1.2 % of a task")
