"""The Ray executor on a two-node Ray cluster, one node lost mid-run (issue 20; docs/ray.md, "Tested on two nodes").

A head node and a worker node on this machine (``ray.cluster_utils.Cluster``, one CPU each, their own short
temporary folder) run a small matrix through ``address=``, as ``e4gym bench --executor ray --address`` does. Once
a result has been written and the worker node runs its second task (which waits there for the end of its node,
:class:`Marks`), the worker node is removed, its processes killed. With retries off (``RAY_MAX_RETRIES = 0``: what
happens once a task's retries have run out) that task fails with one line; the other tasks finish on the head.
The test checks that no finished result was lost or changed, that nothing partial was written, and that the next
run (the head alone) runs exactly the failed task and ends with the local executor's results.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from e4gym.bench import run_benchmark
from e4gym.bench import runner as bench_runner
from e4gym.bench.config import load_experiment
from e4gym.bench.runner import build_tasks, check_result

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # bench_policies must be importable here and in the workers
    sys.path.insert(0, str(HERE))

from bench_policies import Slow  # noqa: E402
from test_ray import BASE, assert_no_ray_left, comparable, ray_session_folders  # noqa: E402

pytestmark = [
    pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                       reason="ray is not installed (pip install 'e4gym[ray]'; the test extra installs it)"),
    pytest.mark.slow,
]

#: Eight tasks of about 1 s each (a policy that sleeps 20 ms a frame, 40 frames); the head and the worker node each
#: run one at a time.
CONFIG: dict = BASE | {"env": {"episode_frames": 40}, "seeds": [0, 1, 2, 3], "policies": [
    {"name": "test_ray_cluster:Marks", "label": "slow", "args": {"ms": 20.0}},
    {"name": "test_ray_cluster:Marks", "label": "slower", "args": {"ms": 25.0}}]}


class Marks(Slow):
    """:class:`Slow`, which also creates an empty file ``<node id>-<pid>-<n>`` in ``$E4GYM_TEST_MARKS`` when its
    episode starts (its first decision), ``n`` counting the episodes its process started, so that the test sees
    which node runs what. On the node named in the file ``hang-on`` there, a process's second episode hangs (60 s
    at most): that task is still running when the test removes its node."""

    started = 0  # episodes started by this process

    def predict(self, observation: np.ndarray, state: Any = None, episode_start: Any = None,
                deterministic: bool = True) -> tuple[np.ndarray, Any]:
        marks = os.environ.get("E4GYM_TEST_MARKS")
        if not getattr(self, "_marked", False) and marks:
            import ray

            node = ray.get_runtime_context().get_node_id() if ray.is_initialized() else "local"
            Marks.started += 1
            self._marked = True
            Path(marks, f"{node}-{os.getpid()}-{Marks.started}").touch()
            hang = Path(marks, "hang-on")
            if Marks.started >= 2 and hang.is_file() and hang.read_text() == node:
                time.sleep(60.0)  # until the node is removed
        return super().predict(observation, state)


def digests(out: Path) -> dict[str, str]:
    """SHA-256 of every result file under ``out/runs`` (by relative path)."""
    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted((out / "runs").rglob("seed*.*")) if ".tmp-" not in p.name}


@pytest.fixture
def cluster(monkeypatch, tmp_path):
    """A head node and a worker node with one CPU each; node loss is noticed within about 2 s. Their workers find
    this module through ``PYTHONPATH`` (a cluster's nodes need the policies' modules installed) and write
    :class:`Marks`'s files to ``cluster.marks``."""
    import ray
    from ray.cluster_utils import Cluster

    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in [str(HERE), *sys.path] if p))
    marks = tmp_path / "marks"
    marks.mkdir()
    monkeypatch.setenv("E4GYM_TEST_MARKS", str(marks))  # the nodes' workers inherit it (Marks)
    temp = tempfile.mkdtemp(prefix="e4c", dir="/tmp")  # short: Ray's socket paths must fit in 107 bytes
    folders = ray_session_folders()
    c = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "temp_dir": temp, "include_dashboard": False,
        "_system_config": {"health_check_initial_delay_ms": 0, "health_check_period_ms": 500,
                           "health_check_failure_threshold": 3}})
    try:
        c.worker = c.add_node(num_cpus=1, temp_dir=temp)
        c.marks = marks
        yield c
    finally:
        if ray.is_initialized():
            ray.shutdown()
        c.shutdown()
        shutil.rmtree(temp, ignore_errors=True)
        logging.getLogger("ray").setLevel(logging.WARNING)
    assert_no_ray_left(folders)


def test_losing_a_node_loses_no_finished_result_and_the_rerun_completes_the_rest(tmp_path, monkeypatch,
                                                                                  cluster) -> None:
    monkeypatch.setattr(bench_runner, "RAY_MAX_RETRIES", 0)  # a task lost with its node fails at once
    marks = cluster.marks
    out = tmp_path / "cluster"
    worker = cluster.worker.node_id
    (marks / "hang-on").write_text(worker)  # the worker node's second task runs until the node is removed
    kept: dict[str, str] = {}
    stop = threading.Event()

    def kill_when_the_worker_node_starts_its_second_task() -> None:
        while not stop.is_set():
            if len(list(marks.glob(f"{worker}-*"))) >= 2 and list((out / "runs").rglob("seed*.json")):
                kept.update(digests(out))  # what had come back by then
                cluster.remove_node(cluster.worker, allow_graceful=False)
                return
            time.sleep(0.01)

    killer = threading.Thread(target=kill_when_the_worker_node_starts_its_second_task, daemon=True)
    killer.start()
    try:
        first = run_benchmark(copy.deepcopy(CONFIG), out, executor="ray", address=cluster.address, plots=False,
                              tensorboard=False)
    finally:
        stop.set()
        killer.join()
    assert kept, ("the worker node was not removed", sorted(p.name for p in marks.iterdir()))
    assert first.ran == 8 and len(first.failures) == 1, "not exactly the hung task was lost with the worker node"
    for f in first.failures:  # one line each: Ray's error for a lost node
        assert "\n" not in f.error and "NodeDiedError" in f.error, f.error
    assert len(first.rows) + len(first.failures) == 8
    # every result that had come back is on disk, unchanged; the failed tasks wrote nothing
    after = digests(out)
    assert {k: after[k] for k in kept} == kept
    assert len(after) == 2 * len(first.rows)
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name]
    failed = {(f.label, f.seed) for f in first.failures}
    exp = load_experiment(copy.deepcopy(CONFIG))
    for task in build_tasks(exp):
        data, why = check_result(out, task)
        assert (data is None) == ((task.policy.label, task.seed) in failed), (task.describe(), why)
        assert why is None  # nothing damaged: missing or valid
    # the rerun, on the head alone, runs exactly the failed tasks
    second = run_benchmark(copy.deepcopy(CONFIG), out, executor="ray", address=cluster.address, plots=False,
                           tensorboard=False)
    assert second.ok and (second.ran, second.reused) == (len(failed), 8 - len(failed))
    assert {k: digests(out)[k] for k in after} == after  # the reused results untouched
    local = run_benchmark(copy.deepcopy(CONFIG), tmp_path / "local", jobs=2, plots=False, tensorboard=False)
    assert local.ok and [comparable(r) for r in second.rows] == [comparable(r) for r in local.rows]
