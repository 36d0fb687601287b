"""The real Triton serving stack (:mod:`e4gym.serving.triton`): a real Triton server on this machine's CPU.

The server tests start a real server with the tiny conv net from the server environment ``.venv-triton``
(``make triton-env``; ``make test`` builds it) and are skipped, saying so, where it is missing. They check that
the batching Triton executed follows the configuration, that bad input gets a one-line error, and that no server
process outlives its run: after ``close()``, after the server dies, and after its parent process gets SIGTERM.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from e4gym.errors import ConfigError, HardwareError, UnknownNameError
from e4gym.hardware.monitor import PowerMonitor
from e4gym.serving.triton import (
    SERVER_PYTHON,
    BatchConfig,
    TritonBackend,
    TritonServer,
    drive,
    poisson_times,
    server_python,
)

ROOT = Path(__file__).resolve().parents[2]
SHAPE = (3, 32, 32)  # the tiny net's input in these tests (pixels)
#: The configuration the batching test ends with; the tests after it reuse it, so that the server need not reload.
LAST = BatchConfig(max_batch_size=4, instances=2, max_queue_delay_us=2000)

needs_server = pytest.mark.skipif(
    not SERVER_PYTHON.is_file(),
    reason=f"no Triton server environment ({SERVER_PYTHON} is missing): run `make triton-env` (`make test` does)",
)


def _gone(pid: int | None) -> bool:
    """Whether process ``pid`` no longer runs (a zombie no one reaped yet counts as gone)."""
    if pid is None:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return True
    return state in ("Z", "X")


def _group_gone(pgid: int) -> bool:
    """Whether process group ``pgid`` has no live member."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            return False
    return True


def _wait_gone(pids: list[int | None], pgid: int, timeout_s: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if all(_gone(p) for p in pids) and _group_gone(pgid):
            return True
        time.sleep(0.1)
    return False


def _one_line(exc: pytest.ExceptionInfo[BaseException]) -> str:
    text = str(exc.value)
    assert text and "\n" not in text, f"not a one-line message: {text!r}"
    return text


# ---------------------------------------------------------------------------------------------- no server


def test_missing_server_environment_is_a_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(HardwareError) as exc:
        TritonServer(tmp_path / "no-venv" / "bin" / "python")
    assert "make triton-env" in _one_line(exc)
    with pytest.raises(HardwareError):
        server_python(tmp_path / "missing")


@pytest.mark.parametrize(("kwargs", "words"), [
    ({"max_batch_size": 0}, "max_batch_size must be an integer >= 1, got 0"),
    ({"max_batch_size": 4, "instances": 0}, "instances must be an integer >= 1, got 0"),
    ({"max_batch_size": 4, "max_queue_delay_us": -1}, "max_queue_delay_us must be an integer >= 0"),
    ({"max_batch_size": 2.5}, "max_batch_size must be an integer"),
    ({"max_batch_size": True}, "max_batch_size must be an integer"),
])
def test_bad_batch_config_is_a_one_line_error(kwargs: dict[str, object], words: str) -> None:
    with pytest.raises(ConfigError) as exc:
        BatchConfig(**kwargs)  # type: ignore[arg-type]
    assert words in _one_line(exc)


def test_poisson_times() -> None:
    arr = poisson_times(200.0, 5.0, 0)
    assert np.all(np.diff(arr) >= 0) and arr.min() >= 0 and arr.max() < 5.0
    assert 850 < arr.size < 1150  # 1000 expected, sd 32
    assert np.array_equal(arr, poisson_times(200.0, 5.0, 0))
    for rate, duration in ((0.0, 1.0), (-1.0, 1.0), (float("nan"), 1.0), (10.0, 0.0)):
        with pytest.raises(ConfigError) as exc:
            poisson_times(rate, duration)
        _one_line(exc)


# ---------------------------------------------------------------------------------------------- one server


@pytest.fixture(scope="module")
def server() -> Iterator[TritonServer]:
    with TritonServer() as s:
        yield s
    assert _wait_gone([s.pid, s.tritonserver_pid], s.pid, 15.0)


@needs_server
@pytest.mark.slow
def test_server_runs_in_its_own_environment(server: TritonServer) -> None:
    assert server.alive and server.tritonserver_pid is not None and not _gone(server.tritonserver_pid)
    assert server.versions["numpy"].startswith("1.")  # PyTriton's pin, not this environment's numpy
    assert server.versions["torch"].split("+")[0] == __import__("torch").__version__.split("+")[0]
    assert {"tiny", "mobilenet_v2", "efficientnet_b0", "resnet18"} <= set(server.servable)


@needs_server
@pytest.mark.slow
def test_executed_batching_follows_the_configuration(server: TritonServer) -> None:
    burst = np.zeros(96)  # 96 requests at once: the batcher has all it can take

    one = server.configure("tiny", max_batch_size=1, instances=1, max_queue_delay_us=2000, input_shape=SHAPE)
    r1 = drive(server, one, burst, slo_ms=10_000)
    assert r1.completed == 96 and r1.failed == 0 and r1.slo_violations == 0
    assert r1.batch_histogram == {1: 96} and r1.mean_batch == 1.0 and r1.executions == 96

    eight = server.configure("tiny", max_batch_size=8, instances=1, max_queue_delay_us=2000, input_shape=SHAPE)
    assert eight.triton_name != one.triton_name  # a new model: Triton cannot rebatch a loaded one
    assert server.http.request("GET", f"/v2/models/{one.triton_name}/ready")[0] != 200  # the old one is unloaded
    r8 = drive(server, eight, burst)
    assert r8.completed == 96 and max(r8.batch_histogram) <= 8
    assert sum(size * n for size, n in r8.batch_histogram.items()) == 96
    assert r8.mean_batch > 1.5, r8.batch_histogram
    assert r8.queue_ms >= 0 and r8.compute_ms > 0 and set(r8.compute_ms_by_batch) == set(r8.batch_histogram)

    two = server.configure("tiny", LAST.max_batch_size, LAST.instances, LAST.max_queue_delay_us, input_shape=SHAPE)
    config = server.http.json("GET", f"/v2/models/{two.triton_name}/config")
    assert config["max_batch_size"] == 4
    assert sum(int(g.get("count", 1)) for g in config["instance_group"]) == 2
    r2 = drive(server, two, burst)
    assert r2.completed == 96 and max(r2.batch_histogram) <= 4 and r2.mean_batch > 1.5
    assert server.configure("tiny", 4, 2, 2000, input_shape=SHAPE) is two  # the same configuration: no rebinding
    assert server.models == {"tiny": two}


@needs_server
@pytest.mark.slow
def test_bad_input_with_a_server_is_a_one_line_error(server: TritonServer) -> None:
    cases = [
        (lambda: server.configure("tiny", 0, input_shape=SHAPE), ConfigError, "max_batch_size"),
        (lambda: server.configure("tiny", 4, 0, input_shape=SHAPE), ConfigError, "instances"),
        (lambda: server.configure("tiny", 4, input_shape=(1, 32, 32)), ConfigError, "input_shape"),
        (lambda: server.configure("vgg16", 4), UnknownNameError, "mobilenet_v2"),
        (lambda: server.unload("resnet18"), UnknownNameError, "no model serves"),
    ]
    served = server.configure("tiny", LAST.max_batch_size, LAST.instances, LAST.max_queue_delay_us, input_shape=SHAPE)
    cases += [
        (lambda: drive(server, served, [0.0], slo_ms=0), ConfigError, "slo_ms must be a finite number > 0"),
        (lambda: drive(server, served, [0.0], slo_ms=-5.0), ConfigError, "slo_ms"),
        (lambda: drive(server, served, []), ConfigError, "arrivals_s is empty"),
        (lambda: drive(server, served, [0.2, 0.1]), ConfigError, "non-decreasing"),
        (lambda: drive(server, served, [0.0], max_in_flight=0), ConfigError, "max_in_flight"),
    ]
    for call, kind, words in cases:
        with pytest.raises(kind) as exc:
            call()
        assert words in _one_line(exc)
    backend = TritonBackend(server, input_shape=SHAPE)
    for configs, arrivals, duration, slo, words in [
        ({"tiny": BatchConfig(4)}, {"tiny": 50.0}, 1.0, 0.0, "slo_ms must be"),
        ({"tiny": BatchConfig(4)}, {"tiny": 50.0}, 0.0, 100.0, "duration_s must be"),
        ({"tiny": BatchConfig(4)}, {}, 1.0, 100.0, "no arrivals for 'tiny'"),
        ({"tiny": BatchConfig(4)}, {"tiny": 0.0}, 1.0, 100.0, "rate_rps must be"),
        ({"tiny": BatchConfig(4)}, {"tiny": [0.5, 2.0]}, 1.0, 100.0, "past duration_s"),
        ({}, {}, 1.0, 100.0, "configs is empty"),
    ]:
        with pytest.raises(ConfigError) as exc:
            backend.serve(configs, arrivals, duration, slo)
        assert words in _one_line(exc)
    assert server.alive


@needs_server
@pytest.mark.slow
def test_backend_serves_one_decision_interval(server: TritonServer) -> None:
    with TritonBackend(server, input_shape=SHAPE, seed=1) as backend:
        first = backend.serve({"tiny": LAST}, {"tiny": 150.0}, duration_s=1.0, slo_ms=1000.0)
        r = first.results["tiny"]
        assert 100 < r.requests < 200 and r.completed == r.requests and r.failed == 0
        assert r.model.config == LAST and r.slo_ms == 1000.0
        assert 0.0 <= r.slo_violation_rate <= 1.0 and r.p50_ms <= r.p99_ms
        assert sum(size * n for size, n in r.batch_histogram.items()) == r.completed
        assert first.duration_s >= 0.9 and first.energy_j is None and first.avg_power_w is None
        again = backend.serve({"tiny": LAST}, {"tiny": [0.0, 0.0, 0.1]}, 1.0, {"tiny": 1e-3})
        assert again.results["tiny"].model is r.model  # nothing changed: no reconfiguration
        assert again.results["tiny"].completed == 3 and again.results["tiny"].slo_violations == 3
        idle = backend.serve({"tiny": LAST}, {"tiny": 1e-6}, 1.0, 100.0).results["tiny"]  # no request this time
        assert idle.requests == 0 and idle.slo_violation_rate == 0.0 and idle.batch_histogram == {}
    assert server.alive  # the backend closes only a server it started
    # A board's power (a constant reading here: the hardware boundary), integrated over the load.
    metered = TritonBackend(server, input_shape=SHAPE, power=lambda: PowerMonitor(lambda: (5.0, (3.0, 2.0)), 0.01))
    m = metered.serve({"tiny": LAST}, {"tiny": [0.0, 0.1, 0.2]}, 1.0, 100.0)
    assert m.results["tiny"].completed == 3 and m.avg_power_w == pytest.approx(5.0)
    assert m.energy_j == pytest.approx(5.0 * m.duration_s, rel=0.1)


@needs_server
@pytest.mark.slow  # two reconfigurations of a real server: about 10 s
def test_the_batching_env_serves_its_intervals_on_triton(server: TritonServer) -> None:
    """``e4gym/BatchConcurrency-v0`` with ``backend="triton"``: each action becomes Triton's batching and instances,
    the interval's arrivals are sent for real, and the info is what was measured."""
    import gymnasium as gym

    import e4gym  # noqa: F401

    env = gym.make("e4gym/BatchConcurrency-v0", models=["mobilenet_v2"], rates_rps=8.0, episode_intervals=3,
                   backend="triton", backend_kwargs={"server": server, "input_shape": [3, 32, 32], "seed": 2})
    obs, info = env.reset(seed=0)
    steps = []
    for action in ([0, 0], [3, 1], [3, 1]):  # batch 1 × 1 instance, then batch 8 × 2 instances
        obs, reward, _, truncated, info = env.step(np.array(action))
        assert env.observation_space.contains(obs) and np.isfinite(reward)
        steps.append((info, env.unwrapped.server.last.results["mobilenet_v2"]))
    env.close()
    assert truncated and server.alive  # a server the env was given is not the env's to stop
    for info, r in steps:
        assert int(info["arrived"]) == r.requests and int(info["completed"]) == r.completed
        assert info["throughput_rps"] == pytest.approx(r.completed / 1.0)
        assert np.isnan(info["energy_j"]) and info["power_w"] == 0.0  # no power monitor here: not measured
    (_, first), (_, second), (_, third) = steps
    assert first.model.config == BatchConfig(1, 1, first.model.config.max_queue_delay_us)
    assert first.batch_histogram.keys() <= {1}
    assert (second.model.config.max_batch_size, second.model.config.instances) == (8, 2)
    assert third.model is second.model  # the same configuration: no reconfiguration
    with pytest.raises(ConfigError, match="control_clocks needs the emulated backend"):
        gym.make("e4gym/BatchConcurrency-v0", backend="triton", control_clocks=True)
    with pytest.raises(ConfigError, match="backend_kwargs apply to backend='triton'"):
        gym.make("e4gym/BatchConcurrency-v0", backend_kwargs={"input_shape": [3, 8, 8]})
    with pytest.raises(ConfigError, match="backend must be one of"):
        gym.make("e4gym/BatchConcurrency-v0", backend="jetson")


# ---------------------------------------------------------------------------------------------- lifetime


@needs_server
@pytest.mark.slow
def test_close_and_death_leave_no_server_process() -> None:
    s = TritonServer()
    pids = [s.pid, s.tritonserver_pid]
    os.kill(s.pid, signal.SIGKILL)  # the server dies; tritonserver follows it (PR_SET_PDEATHSIG)
    deadline = time.monotonic() + 10
    while s.alive and time.monotonic() < deadline:
        time.sleep(0.05)
    with pytest.raises(HardwareError) as exc:
        s.configure("tiny", 2, input_shape=SHAPE)
    assert "died" in _one_line(exc)
    assert s.close() == [] and s.close() == []
    assert _wait_gone(pids, s.pid, 15.0), "a server process outlived close()"
    assert not s.home.exists()
    with pytest.raises(HardwareError):
        s.configure("tiny", 2, input_shape=SHAPE)


CHILD = textwrap.dedent("""
    import json, sys, time
    from e4gym.serving.triton import TritonServer
    s = TritonServer()
    s.configure("tiny", 4, 1, 0, input_shape=(3, 32, 32))
    print(json.dumps({"pid": s.pid, "tritonserver_pid": s.tritonserver_pid, "home": str(s.home)}), flush=True)
    time.sleep(600)
""")


@needs_server
@pytest.mark.slow
def test_server_dies_with_its_parent() -> None:
    """Two parents, each with a server: one gets SIGTERM (it closes its server through restore's handler), the
    other SIGKILL (its server stops by itself: PDEATHSIG, the parent watch, end of input). Run side by side."""
    signals = (signal.SIGTERM, signal.SIGKILL)
    children = [subprocess.Popen([sys.executable, "-c", CHILD], cwd=ROOT, stdout=subprocess.PIPE, text=True)
                for _ in signals]
    try:
        infos = []
        for child in children:
            assert child.stdout is not None
            line = child.stdout.readline()
            assert line, f"the child failed (exit code {child.wait()})"
            infos.append(json.loads(line))
            assert not _gone(infos[-1]["pid"]) and not _gone(infos[-1]["tritonserver_pid"])
        for child, sig in zip(children, signals):
            child.send_signal(sig)
        for child, sig, info in zip(children, signals, infos):
            assert child.wait(30) == -sig
            assert _wait_gone([info["pid"], info["tritonserver_pid"]], info["pid"], 30.0), \
                f"a Triton server process outlived its parent's {sig.name}"
            assert not Path(info["home"]).exists()  # its temporary folder too
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
