"""The Ray executor of the benchmark harness (`e4gym bench --executor ray`, issue 20).

Ray is started with at most 2 CPUs and no dashboard, and every test checks that no Ray is left running and that
no folder was left in Ray's default temporary folder (/tmp/ray): a Ray started by a run keeps its own. The tests
that need Ray skip when it is not installed (CI installs it with the test extra).
"""

from __future__ import annotations

import copy
import importlib.util
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from e4gym.bench import run_benchmark
from e4gym.bench import runner as bench_runner
from e4gym.bench.config import load_experiment
from e4gym.bench.runner import build_tasks, check_result, ray_session, task_resources
from e4gym.cli import main
from e4gym.errors import ConfigError
from tests.cli_signals import interrupt_after_first_result
from tests.ray_helpers import ray_processes, ray_session_folders

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


def assert_no_ray_left(folders_before: set[str] | None = None) -> None:
    """No Ray initialised here, no Ray process left, and (given the folders before) no new folder in /tmp/ray."""
    import ray

    assert not ray.is_initialized()
    assert ray_processes() == []
    if folders_before is not None:
        assert ray_session_folders() - folders_before == set()


@pytest.fixture
def no_ray_folder_left():
    """Fail the test if it left a session folder of this process in /tmp/ray."""
    before = ray_session_folders()
    yield before
    assert ray_session_folders() - before == set()


@pytest.fixture(scope="module")
def both(tmp_path_factory) -> dict[str, Any]:
    """The tiny matrix run in-process by the local executor and by Ray with 2 CPUs (progress bars captured)."""
    root = tmp_path_factory.mktemp("ray")
    bars = {}
    results = {}
    folders = ray_session_folders()
    for name, kw in (("local", {"jobs": 1}), ("ray", {"jobs": 2, "executor": "ray"})):
        saved, sys.stderr = sys.stderr, io.StringIO()  # where the bar writes (tqdm's file=sys.stderr)
        try:
            results[name] = run_benchmark(copy.deepcopy(BASE), root / name, quiet=False, plots=False,
                                          tensorboard=False, **kw)
            bars[name] = sys.stderr.getvalue()
        finally:
            sys.stderr = saved
    return {"root": root, "results": results, "bars": bars, "folders_before": folders}


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
    assert_no_ray_left(both["folders_before"])


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
def test_a_task_whose_worker_dies_is_retried_and_one_out_of_retries_fails(tmp_path, monkeypatch,
                                                                          no_ray_folder_left) -> None:
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


def interrupt_second_write(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make the harness's second write of a task's result raise KeyboardInterrupt (Ctrl-C while results come in);
    returns the list of the tasks it was asked to write."""
    write = bench_runner.write_task
    written: list[str] = []

    def interrupted(out, task, outcome):
        written.append(task.describe())
        if len(written) == 2:
            raise KeyboardInterrupt
        return write(out, task, outcome)

    monkeypatch.setattr(bench_runner, "write_task", interrupted)
    return written


@needs_ray
@pytest.mark.slow
def test_ctrl_c_shuts_ray_down_and_keeps_finished_tasks(tmp_path, monkeypatch, no_ray_folder_left) -> None:
    write = bench_runner.write_task
    interrupt_second_write(monkeypatch)
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
    """A real Ctrl-C (SIGINT) to `e4gym bench --executor ray`: exit 130, one line with the resume command, no Ray
    process left (found by the temporary folder its processes name) and nothing left in that folder (the run's Ray
    keeps its own folder under ``RAY_TMPDIR`` and removes it)."""
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
        assert os.listdir(ray_tmp) == []
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


def free_port() -> int:
    """A TCP port of this machine on which nothing listens (just closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@needs_ray
def test_a_wrong_address_fails_up_front_in_one_line(tmp_path, capsys) -> None:
    """Nothing listening at --address: exit 2 within seconds, one line naming the address and the fix, nothing
    written (Ray's own connect would retry for tens of seconds)."""
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(json.dumps(BASE))
    out = tmp_path / "out"
    address = f"127.0.0.1:{free_port()}"
    for verb in (["bench", "--config", str(cfg)], ["reproduce", "--quick"]):
        t0 = time.monotonic()
        assert main([*verb, "--out", str(out), "--executor", "ray", "--address", address]) == 2
        assert time.monotonic() - t0 < 10
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and address in err and "ray start --head" in err, err
        assert not out.exists()
    for bad in ("nohost", "127.0.0.1:notaport"):
        with pytest.raises(ConfigError, match="not a Ray cluster address"):
            run_benchmark(copy.deepcopy(BASE), out, executor="ray", address=bad)
    assert not out.exists()
    assert_no_ray_left()


def _counting_ray_init(monkeypatch) -> list[dict]:
    """Record every ``ray.init`` call's keyword arguments (the calls still start Ray)."""
    import ray

    calls: list[dict] = []
    real = ray.init

    def init(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(ray, "init", init)
    return calls


@needs_ray
@pytest.mark.slow
def test_runs_in_one_ray_session_share_one_ray_in_its_own_temporary_folder(tmp_path, monkeypatch,
                                                                           no_ray_folder_left) -> None:
    calls = _counting_ray_init(monkeypatch)
    cfg = copy.deepcopy(BASE) | {"seeds": [0]}
    with ray_session(num_cpus=2) as session:
        assert calls == []  # started on first use only
        first = run_benchmark(copy.deepcopy(cfg), tmp_path / "a", executor="ray", plots=False, tensorboard=False)
        temp = Path(session.temp_dir)
        assert temp.is_dir() and temp.parent == Path("/tmp") and len(str(temp)) < 30
        second = run_benchmark(copy.deepcopy(cfg), tmp_path / "b", executor="ray", plots=False, tensorboard=False)
        assert first.ok and second.ok and first.ran == second.ran == 2
        import ray

        assert ray.is_initialized()
    assert len(calls) == 1 and calls[0]["_temp_dir"] == str(temp)
    assert not temp.exists()
    assert_no_ray_left()


#: The three experiments of `e4gym reproduce`, one or two cheap tasks each (its claims then mostly not comparable).
TINY_REPRODUCE = {
    "config": BASE | {"policies": ["performance"]},
    "dvfo_config": {"name": "tiny-dvfo", "env": {"episode_frames": 30, "control_memory": True},
                    "matrix": {"device": ["xavier-nx"], "model": ["efficientnet_b0"], "fps": [20],
                               "deadline_ms": [None]}, "seeds": [0], "policies": ["edge_only"]},
    "bcedge_config": {"name": "tiny-bcedge", "env": {"episode_intervals": 4}, "matrix": {"device": ["xavier-nx"]},
                      "seeds": [0], "policies": ["batch1"]},
}


def _reproduce_claims() -> list:
    from e4gym.bench.reproduce import CLAIMS

    return [c for c in CLAIMS if set(c.needs) <= {"bench", "dvfo", "bcedge"}]


@needs_ray
@pytest.mark.slow
def test_reproduce_starts_ray_once_and_shuts_it_down_on_ctrl_c(tmp_path, monkeypatch, no_ray_folder_left) -> None:
    from e4gym.bench.reproduce import run_reproduce

    calls = _counting_ray_init(monkeypatch)
    kw = dict(copy.deepcopy(TINY_REPRODUCE), claims=_reproduce_claims(), seeds=[0], frames=30, jobs=2,
              executor="ray")
    rep = run_reproduce(tmp_path / "out", **kw)
    assert (rep.ran, rep.reused, rep.failures) == (3, 0, [])  # one task in each of the three experiments
    assert len(calls) == 1  # one Ray for the three
    assert_no_ray_left()
    # Ctrl-C in the second experiment: Ray is shut down all the same
    calls.clear()
    written = interrupt_second_write(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        run_reproduce(tmp_path / "again", **kw)
    assert len(calls) == 1 and len(written) == 2
    assert_no_ray_left()


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
