"""A real serving stack: the project's networks served by a real Triton Inference Server, driven and measured.

Triton comes from PyPI's ``nvidia-pytriton`` (0.7.0 bundles Triton 2.51), which pins ``numpy<2``: the server runs
in its own environment, ``.venv-triton`` (``make triton-env``; ``make test`` builds it), as the subprocess
``.venv-triton/bin/python -m e4gym.serving.triton_server`` (:mod:`e4gym.serving.triton_server`). This module is
the client side: it runs in the project's environment and imports neither PyTriton nor ``tritonclient``; it
talks to Triton over HTTP (the KServe v2 protocol: ``/v2/health/ready``, ``/v2/models/{name}/infer`` with the
binary tensor extension, the statistics extension ``/v2/models/{name}/stats``).

- :class:`TritonServer` starts and stops the server and (re)configures models: :meth:`TritonServer.configure`
  sets a network's dynamic batching (``max_batch_size``, ``max_queue_delay_us``) and instance count.
- :func:`drive` sends requests to a served model at given arrival times (open loop, :func:`poisson_times`)
  and measures them (:class:`LoadResult`: latency, throughput, SLO violations) together with what Triton did
  (executed batch sizes, queue and compute times).
- :class:`TritonBackend` is what a batching env uses for one decision interval:
  ``serve(configs, arrivals, duration_s, slo_ms) -> IntervalMeasurement``.

Facts this design follows (found by running it; ``docs/serving.md``):

- A server starts in about 3 s and stops in 4-7 s.
- Batching and instance settings cannot change on a loaded model (binding the same name again or reloading it
  with a new config breaks the server): :meth:`TritonServer.configure` binds the new configuration under a new
  Triton model name (``<network>.c<k>``) and unloads the old one (about 2 s in all on 2 cores).
- PyTriton's instances are threads of the server process sharing its GIL (torch releases it while it computes).

The server never outlives its run: :meth:`TritonServer.close` (also from ``with``, ``atexit`` and SIGINT/SIGTERM
through :mod:`e4gym.hardware.restore`'s registry) stops it and then kills its whole process group (the server,
``tritonserver``, the Python backend's stubs), and the server stops by itself when this process dies (the
kernel's ``PR_SET_PDEATHSIG``, a parent-pid watch, end of input on its control pipe). Start a server from a
thread that outlives it (the main thread): the kernel signals the death of the *thread* that started it.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import math
import os
import queue
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from e4gym.errors import ConfigError, HardwareError, UnknownNameError
from e4gym.hardware import restore

if TYPE_CHECKING:
    from e4gym.hardware.monitor import PowerMonitor

__all__ = [
    "SERVER_PYTHON",
    "BatchConfig",
    "IntervalMeasurement",
    "LoadResult",
    "ServedModel",
    "TritonBackend",
    "TritonServer",
    "drive",
    "poisson_times",
    "server_python",
]

ROOT = Path(__file__).resolve().parents[2]
#: The server environment's interpreter (``make triton-env``); ``E4GYM_TRITON_PYTHON`` names another.
SERVER_PYTHON = ROOT / ".venv-triton" / "bin" / "python"
#: The make target that creates the server environment.
MAKE_TARGET = "make triton-env"
#: Input and output tensors of every served model (:mod:`e4gym.serving.triton_server`).
INPUT, OUTPUT = "image", "top1"


def server_python(python: str | os.PathLike[str] | None = None) -> Path:
    """The interpreter that runs the server: ``python``, else ``$E4GYM_TRITON_PYTHON``, else :data:`SERVER_PYTHON`.

    Raises:
        HardwareError: it does not exist (names the make target that creates it).
    """
    path = Path(python or os.environ.get("E4GYM_TRITON_PYTHON") or SERVER_PYTHON)
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise HardwareError(f"no Triton server environment: {path} is missing; run `{MAKE_TARGET}` (it creates "
                            f".venv-triton with nvidia-pytriton, which pins numpy<2) or set E4GYM_TRITON_PYTHON")
    return path


def _check_int(name: str, value: object, low: int) -> int:
    """``value`` as an int >= ``low``, else ConfigError (one line)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def _check_positive(name: str, value: object, unit: str) -> float:
    """``value`` as a finite float > 0, else ConfigError (one line)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not (
            math.isfinite(float(value)) and float(value) > 0):
        raise ConfigError(f"{name} must be a finite number > 0 {unit}, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class BatchConfig:
    """How Triton batches and runs one network: the action of a batching policy for one model.

    Attributes:
        max_batch_size: largest batch Triton's dynamic batcher forms (>= 1; 1: no batching).
        instances: model instances executing batches concurrently (>= 1; threads of the server process).
        max_queue_delay_us: how long (µs) the batcher may hold a request to fill a batch (>= 0).

    Raises:
        ConfigError: a field out of range (one line).
    """

    max_batch_size: int
    instances: int = 1
    max_queue_delay_us: int = 0

    def __post_init__(self) -> None:
        _check_int("max_batch_size", self.max_batch_size, 1)
        _check_int("instances", self.instances, 1)
        _check_int("max_queue_delay_us", self.max_queue_delay_us, 0)


@dataclass(frozen=True)
class ServedModel:
    """A network loaded in Triton with one :class:`BatchConfig`.

    Attributes:
        network: the network's name (``tiny`` or a :func:`~e4gym.dnn.multiexit.build_multiexit` backbone).
        triton_name: its name in Triton (``<network>.c<k>``: a new one per configuration).
        config: its batching configuration.
        input_shape: one request's image shape ``(3, H, W)``.
        load_s: time (s) configuring took (binding, unloading the previous configuration, a warm-up request).
    """

    network: str
    triton_name: str
    config: BatchConfig
    input_shape: tuple[int, int, int]
    load_s: float


@dataclass
class LoadResult:
    """What one load run measured on one served model.

    Client side (per request, open loop: a request's latency runs from its scheduled arrival to its response,
    so time spent waiting for a free sender counts):

    Attributes:
        model: the served model.
        requests: requests scheduled. completed: answered with a result. failed: refused, errors or timeouts.
        duration_s: first scheduled arrival to last response (s).
        throughput_rps: ``completed / duration_s`` (requests/s).
        latency_ms: latency of every completed request (ms), in arrival order.
        p50_ms, p99_ms, mean_ms: of ``latency_ms`` (NaN when none completed).
        slo_ms: the latency objective (ms), or None. slo_violations: requests over it, failed ones included.
        errors: the first few error messages (one line each).

    Triton side (from its statistics, differenced over the run):

    Attributes:
        executions: batches executed. batch_histogram: batch size -> batches executed of that size.
        mean_batch: mean executed batch size (requests per execution).
        queue_ms: mean time a request waited in Triton's queue (ms).
        compute_ms: mean compute time (input, inference, output) of one execution (ms).
        compute_ms_by_batch: batch size -> mean compute time of an execution of that size (ms).
    """

    model: ServedModel
    requests: int
    completed: int
    failed: int
    duration_s: float
    throughput_rps: float
    latency_ms: list[float]
    p50_ms: float
    p99_ms: float
    mean_ms: float
    slo_ms: float | None
    slo_violations: int
    executions: int
    batch_histogram: dict[int, int]
    mean_batch: float
    queue_ms: float
    compute_ms: float
    compute_ms_by_batch: dict[int, float]
    errors: list[str] = field(default_factory=list)

    @property
    def slo_violation_rate(self) -> float:
        """Fraction of the scheduled requests that missed the SLO or failed (0 when there were none)."""
        return self.slo_violations / self.requests if self.requests else 0.0


@dataclass
class IntervalMeasurement:
    """What :meth:`TritonBackend.serve` measured over one decision interval.

    Attributes:
        results: network -> its :class:`LoadResult`.
        reconfigure_s: time (s) spent reconfiguring models before the load (0 when nothing changed).
        duration_s: wall time (s) of the load (all models together).
        energy_j, avg_power_w: the board's energy (J) and mean power (W) over the load, where a power monitor
            was given (None otherwise, as on this CPU-only machine).
    """

    results: dict[str, LoadResult]
    reconfigure_s: float
    duration_s: float
    energy_j: float | None = None
    avg_power_w: float | None = None


def poisson_times(rate_rps: float, duration_s: float, rng: np.random.Generator | int | None = None) -> np.ndarray:
    """Arrival times (s from the start, increasing, all < ``duration_s``) of a Poisson process of rate ``rate_rps``.

    Raises:
        ConfigError: a rate or duration that is not a finite number > 0.
    """
    rate = _check_positive("rate_rps", rate_rps, "requests/s")
    duration = _check_positive("duration_s", duration_s, "s")
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    n = int(rng.poisson(rate * duration))
    return np.sort(rng.uniform(0.0, duration, size=n))


def _check_arrivals(arrivals_s: Sequence[float] | np.ndarray) -> np.ndarray:
    """Arrival times as a sorted float array, else ConfigError (one line)."""
    arr = np.asarray(arrivals_s, dtype=float).reshape(-1)
    if arr.size == 0:
        raise ConfigError("arrivals_s is empty: give at least one arrival time (s)")
    if not np.all(np.isfinite(arr)) or arr.min() < 0 or np.any(np.diff(arr) < 0):
        raise ConfigError("arrivals_s must be finite, >= 0 and non-decreasing (s from the start of the run)")
    return arr


class _Http:
    """One keep-alive HTTP connection per thread to Triton's endpoint."""

    def __init__(self, port: int, timeout_s: float) -> None:
        self.port, self.timeout_s = port, timeout_s
        self._local = threading.local()

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: Mapping[str, str] | None = None) -> tuple[int, bytes]:
        """Status and body of one request (one retry on a dropped keep-alive connection)."""
        for attempt in (0, 1):
            conn = getattr(self._local, "conn", None)
            if conn is None:
                conn = self._local.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout_s)
            try:
                conn.request(method, path, body=body, headers=dict(headers or {}))
                resp = conn.getresponse()
                return resp.status, resp.read()
            except (ConnectionError, http.client.HTTPException):
                conn.close()
                self._local.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def json(self, method: str, path: str, body: bytes | None = None) -> Any:
        """The JSON answer of a request that must succeed (HardwareError otherwise)."""
        try:
            status, data = self.request(method, path, body)
        except OSError as exc:
            raise HardwareError(f"Triton at 127.0.0.1:{self.port} did not answer {method} {path}: {exc}") from None
        if status != 200:
            raise HardwareError(f"Triton answered {method} {path} with HTTP {status}: "
                                f"{' '.join(data.decode(errors='replace').split())[:300]}")
        return json.loads(data) if data else None


def _free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class TritonServer:
    """A real Triton Inference Server in its own environment, started by the constructor, stopped by :meth:`close`.

    Use it as a context manager. It is also closed at interpreter exit and on SIGINT/SIGTERM of this process
    (:func:`e4gym.hardware.restore.register`), and it stops by itself when this process dies however it died.

    Args:
        python: the server environment's interpreter (default :func:`server_python`).
        start_timeout_s: how long (s) to wait for the server to answer.
        stop_timeout_s: how long (s) :meth:`close` lets it stop cleanly before killing its process group.
        request_timeout_s: timeout (s) of one HTTP request and of one control command.
        log_verbose: Triton's ``--log-verbose`` level.

    Raises:
        HardwareError: the server environment is missing, or the server failed to start (one line, naming the
            log file).
    """

    def __init__(self, python: str | os.PathLike[str] | None = None, *, start_timeout_s: float = 120.0,
                 stop_timeout_s: float = 20.0, request_timeout_s: float = 120.0, log_verbose: int = 0) -> None:
        py = server_python(python)
        self.stop_timeout_s = _check_positive("stop_timeout_s", stop_timeout_s, "s")
        self.request_timeout_s = _check_positive("request_timeout_s", request_timeout_s, "s")
        _check_positive("start_timeout_s", start_timeout_s, "s")
        self._closed = False
        self._lock = threading.RLock()
        self._models: dict[str, ServedModel] = {}
        self._counter = 0
        self.home = Path(tempfile.mkdtemp(prefix="e4gym-triton-"))
        #: The server's log (its stderr: PyTriton's and Triton's messages).
        self.log_path = self.home / "server.log"
        self.port = _free_port()
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
        env.update(PYTRITON_HOME=str(self.home / "pytriton"), PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
        self._log: IO[bytes] = open(self.log_path, "wb")  # closed by close()
        try:
            self._proc = subprocess.Popen(
                [str(py), "-m", "e4gym.serving.triton_server", "--http-port", str(self.port),
                 "--parent-pid", str(os.getpid()), "--log-verbose", str(int(log_verbose)), "--home", str(self.home)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, cwd=self.home, env=env,
                text=True, bufsize=1, start_new_session=True,  # its own process group: close() kills all of it
            )
        except OSError as exc:
            self._log.close()
            shutil.rmtree(self.home, ignore_errors=True)
            raise HardwareError(f"cannot start the Triton server with {py}: {exc}") from None
        #: The server process's pid (also its process group's id).
        self.pid = self._proc.pid
        self._restorer = restore.register(self.close, f"its Triton server (pid {self.pid})")
        self._replies: queue.Queue[dict[str, Any] | None] = queue.Queue()
        threading.Thread(target=self._read_replies, daemon=True, name=f"e4gym-triton-{self.pid}").start()
        self.http = _Http(self.port, self.request_timeout_s)
        try:
            ready = self._next_reply(start_timeout_s, "starting")
            if ready.get("event") != "ready":
                raise HardwareError(f"the Triton server failed to start: {ready.get('error', ready)} "
                                    f"(log: {self.log_path})")
            self.http.json("GET", "/v2/health/ready")
        except BaseException:
            self.close(keep_log=True)
            raise
        #: ``tritonserver``'s pid (None where PyTriton did not say).
        self.tritonserver_pid: int | None = ready.get("tritonserver_pid")
        #: Networks the server can build.
        self.servable: tuple[str, ...] = tuple(ready.get("servable", ()))
        #: Server-side versions (``numpy``, ``torch``).
        self.versions = {k: ready.get(k) for k in ("numpy", "torch")}

    # ------------------------------------------------------------------------------------------ process

    def _read_replies(self) -> None:
        """Move the server's control replies (one JSON object a line) to the queue; None at end of output."""
        assert self._proc.stdout is not None
        with contextlib.suppress(OSError, ValueError):  # ValueError: close() closed the pipe first
            for line in self._proc.stdout:
                with contextlib.suppress(json.JSONDecodeError):
                    self._replies.put(json.loads(line))
        self._replies.put(None)

    def _last_log_line(self) -> str:
        """The server log's last non-empty line (for error messages)."""
        with contextlib.suppress(OSError):
            lines = [ln for ln in self.log_path.read_text(errors="replace").splitlines() if ln.strip()]
            if lines:
                return " ".join(lines[-1].split())[:300]
        return "(empty log)"

    def _next_reply(self, timeout_s: float, doing: str) -> dict[str, Any]:
        """The next control reply; HardwareError if the server exits or says nothing within ``timeout_s``."""
        try:
            reply = self._replies.get(timeout=timeout_s)
        except queue.Empty:
            raise HardwareError(f"the Triton server (pid {self.pid}) did not answer within {timeout_s:g} s while "
                                f"{doing}; last log line: {self._last_log_line()} (log: {self.log_path})") from None
        if reply is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(10.0)
            code = self._proc.poll()
            raise HardwareError(f"the Triton server (pid {self.pid}) exited with code {code} while {doing}; last log "
                                f"line: {self._last_log_line()} (log: {self.log_path})")
        return reply

    def _command(self, msg: dict[str, Any], doing: str) -> dict[str, Any]:
        """Send one control command and return its reply's fields; ConfigError when the server refused it."""
        with self._lock:
            if self._closed:
                raise HardwareError("the Triton server is closed; start a new TritonServer")
            if self._proc.poll() is not None:
                raise HardwareError(f"the Triton server (pid {self.pid}) died (exit code {self._proc.returncode}); "
                                    f"last log line: {self._last_log_line()} (log: {self.log_path})")
            assert self._proc.stdin is not None
            try:
                self._proc.stdin.write(json.dumps(msg) + "\n")
                self._proc.stdin.flush()
            except OSError:
                pass  # it died: the reply reader says how
            reply = self._next_reply(self.request_timeout_s, doing)
        if not reply.get("ok"):
            raise ConfigError(f"the Triton server refused {doing}: {reply.get('error', reply)}")
        return reply

    @property
    def alive(self) -> bool:
        """Whether the server process still runs."""
        return self._proc.poll() is None

    def close(self, keep_log: bool = False) -> list[str]:
        """Stop the server (cleanly, then by killing its process group after ``stop_timeout_s``); idempotent.

        Args:
            keep_log: keep the temporary folder with the server's log (it is deleted otherwise).

        Returns:
            What could not be stopped (empty: everything stopped), for :mod:`e4gym.hardware.restore`.
        """
        with self._lock:
            if self._closed:
                return []
            self._closed = True
        proc = self._proc
        if proc.poll() is None:
            with contextlib.suppress(OSError, ValueError):
                assert proc.stdin is not None
                proc.stdin.write(json.dumps({"cmd": "stop"}) + "\n")
                proc.stdin.close()  # end of input stops it too
            try:
                proc.wait(self.stop_timeout_s)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGTERM)
                try:
                    proc.wait(5.0)
                except subprocess.TimeoutExpired:
                    self._signal_group(signal.SIGKILL)
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        proc.wait(5.0)
        self._signal_group(signal.SIGKILL)  # anything of the group left behind (tritonserver, stubs)
        for stream in (proc.stdin, proc.stdout):
            with contextlib.suppress(OSError, ValueError, AttributeError):
                stream.close()  # type: ignore[union-attr]
        self._log.close()
        self._models.clear()
        restore.unregister(self._restorer)
        if not keep_log:
            shutil.rmtree(self.home, ignore_errors=True)
        return [] if proc.poll() is not None else [f"the Triton server (pid {self.pid}) still runs"]

    def _signal_group(self, sig: int) -> None:
        """Send ``sig`` to the server's process group (the server, tritonserver, the stubs), if any is left."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)

    def __enter__(self) -> TritonServer:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    # ------------------------------------------------------------------------------------------ models

    @property
    def models(self) -> dict[str, ServedModel]:
        """Network -> the model currently serving it."""
        return dict(self._models)

    def configure(self, model_name: str, max_batch_size: int, instances: int = 1, max_queue_delay_us: int = 0, *,
                  input_shape: Sequence[int] = (3, 224, 224)) -> ServedModel:
        """Serve network ``model_name`` with this batching configuration; returns once it answers requests.

        Triton cannot change a loaded model's batching or instances, so a new configuration is bound under a new
        Triton name and the network's previous model is unloaded (about 2 s on 2 cores). The same configuration
        again is a no-op.

        Args:
            model_name: ``tiny`` or a backbone of :func:`~e4gym.dnn.multiexit.build_multiexit`
                (``mobilenet_v2``, ``efficientnet_b0``, ``resnet18``, ...).
            max_batch_size: largest batch the dynamic batcher forms (>= 1).
            instances: model instances (>= 1).
            max_queue_delay_us: the batcher's maximum queue delay (µs, >= 0).
            input_shape: one request's image shape ``(3, H, W)`` (pixels).

        Raises:
            ConfigError: a bad argument (one line). UnknownNameError: a network the server cannot build.
            HardwareError: the server died or did not answer.
        """
        config = BatchConfig(max_batch_size, instances, max_queue_delay_us)
        shape = tuple(input_shape)
        if not (len(shape) == 3 and shape[0] == 3 and all(isinstance(s, (int, np.integer)) and not isinstance(
                s, bool) and s >= 1 for s in shape)):
            raise ConfigError(f"input_shape must be (3, H, W) with H, W >= 1 pixels, got {tuple(input_shape)!r}")
        shape3 = (3, int(shape[1]), int(shape[2]))
        if model_name not in self.servable:
            raise UnknownNameError(f"unknown network {model_name!r}; the server builds: {', '.join(self.servable)}")
        old = self._models.get(model_name)
        if old is not None and old.config == config and old.input_shape == shape3:
            return old
        t0 = time.perf_counter()
        with self._lock:
            self._counter += 1
            name = f"{model_name}.c{self._counter}"
        self._command({"cmd": "bind", "name": name, "network": model_name, "input_shape": list(shape3),
                       "max_batch_size": config.max_batch_size, "instances": config.instances,
                       "max_queue_delay_us": config.max_queue_delay_us}, f"binding {name}")
        if old is not None:
            self.unload(model_name)
        served = ServedModel(model_name, name, config, shape3, 0.0)
        self._wait_model_ready(name)
        status, body = self.infer(served, np.zeros(shape3, dtype=np.float32))  # warm-up
        if status != 200:
            raise HardwareError(f"the warm-up request to {name} failed with HTTP {status}: {body[:300]!r}")
        deadline = time.monotonic() + 2.0  # Triton counts it a moment after answering: keep it out of drive()'s
        while self.stats(served).get("inference_count", 0) < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        served = ServedModel(model_name, name, config, shape3, time.perf_counter() - t0)
        self._models[model_name] = served
        return served

    def unload(self, model_name: str) -> None:
        """Unload the model serving network ``model_name``.

        Raises:
            UnknownNameError: no model serves it.
        """
        served = self._models.pop(model_name, None)
        if served is None:
            raise UnknownNameError(f"no model serves {model_name!r}; served: {', '.join(self._models) or 'none'}")
        self._command({"cmd": "unload", "name": served.triton_name}, f"unloading {served.triton_name}")
        deadline = time.monotonic() + self.request_timeout_s
        while time.monotonic() < deadline:  # the server is briefly not ready after an unload
            with contextlib.suppress(OSError):
                if self.http.request("GET", "/v2/health/ready")[0] == 200:
                    return
            time.sleep(0.05)

    def _wait_model_ready(self, triton_name: str) -> None:
        deadline = time.monotonic() + self.request_timeout_s
        while True:
            with contextlib.suppress(OSError):
                if self.http.request("GET", f"/v2/models/{triton_name}/ready")[0] == 200:
                    return
            if time.monotonic() > deadline or not self.alive:
                raise HardwareError(f"model {triton_name} is not ready after {self.request_timeout_s:g} s; last "
                                    f"log line: {self._last_log_line()} (log: {self.log_path})")
            time.sleep(0.05)

    # ------------------------------------------------------------------------------------------ requests

    def infer(self, served: ServedModel, image: np.ndarray) -> tuple[int, bytes]:
        """Send one request (one image ``(3, H, W)``, float32, binary tensor extension); returns HTTP status, body."""
        raw = np.ascontiguousarray(image, dtype=np.float32).tobytes()
        header = json.dumps({
            "inputs": [{"name": INPUT, "shape": [1, *served.input_shape], "datatype": "FP32",
                        "parameters": {"binary_data_size": len(raw)}}],
            "outputs": [{"name": OUTPUT, "parameters": {"binary_data": False}}],
        }).encode()
        return self.http.request("POST", f"/v2/models/{served.triton_name}/infer", header + raw,
                                 {"Inference-Header-Content-Length": str(len(header)),
                                  "Content-Type": "application/octet-stream"})

    def stats(self, served: ServedModel) -> dict[str, Any]:
        """Triton's statistics of ``served`` (the statistics extension's ``model_stats`` entry, cumulative)."""
        data = self.http.json("GET", f"/v2/models/{served.triton_name}/stats")
        return data["model_stats"][0]


def _triton_delta(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    """What Triton did between two statistics snapshots of one model (see :class:`LoadResult`)."""
    def ns(stats: Mapping[str, Any], key: str) -> tuple[int, int]:
        s = stats.get(key, {})
        return int(s.get("count", 0)), int(s.get("ns", 0))

    def batches(stats: Mapping[str, Any]) -> dict[int, tuple[int, int]]:
        out = {}
        for b in stats.get("batch_stats", []):
            keys = ("compute_input", "compute_infer", "compute_output")
            out[int(b["batch_size"])] = (int(b["compute_infer"]["count"]),
                                         sum(int(b[k]["ns"]) for k in keys if k in b))
        return out

    b0, b1 = batches(before), batches(after)
    hist, comp = {}, {}
    for size in sorted(b1):
        n = b1[size][0] - b0.get(size, (0, 0))[0]
        if n > 0:
            hist[size] = n
            comp[size] = (b1[size][1] - b0.get(size, (0, 0))[1]) / n / 1e6
    executions = sum(hist.values())
    inferences = sum(s * n for s, n in hist.items())
    qc0, qn0 = ns(before.get("inference_stats", {}), "queue")
    qc1, qn1 = ns(after.get("inference_stats", {}), "queue")
    total_ns = sum(comp[s] * hist[s] for s in hist)
    return {
        "executions": executions,
        "inferences": inferences,
        "batch_histogram": hist,
        "mean_batch": inferences / executions if executions else math.nan,
        "queue_ms": (qn1 - qn0) / (qc1 - qc0) / 1e6 if qc1 > qc0 else math.nan,
        "compute_ms": total_ns / executions if executions else math.nan,
        "compute_ms_by_batch": comp,
    }


def drive(server: TritonServer, served: ServedModel, arrivals_s: Sequence[float] | np.ndarray, *,
          slo_ms: float | None = None, max_in_flight: int = 64, seed: int = 0,
          settle_s: float = 2.0) -> LoadResult:
    """Send one request per arrival time to ``served`` (open loop) and measure them and Triton's batching.

    Requests are sent by up to ``max_in_flight`` threads, each its own keep-alive connection; a request whose
    arrival finds them all busy waits, and its latency counts the wait. Each request is one image of the model's
    input shape (random pixels, drawn once from ``seed``).

    Args:
        server: a running server. served: a model it serves (:meth:`TritonServer.configure`).
        arrivals_s: arrival times (s from the start of the run), non-decreasing.
        slo_ms: the latency objective (ms) that :attr:`LoadResult.slo_violations` counts against (None: none).
        max_in_flight: concurrent requests at most (>= 1).
        seed: seeds the request image.
        settle_s: how long (s) to wait after the last response for Triton's statistics to count every request.

    Raises:
        ConfigError: bad arrivals, SLO or concurrency (one line). HardwareError: the server died.
    """
    arrivals = _check_arrivals(arrivals_s)
    slo = None if slo_ms is None else _check_positive("slo_ms", slo_ms, "ms")
    workers = _check_int("max_in_flight", max_in_flight, 1)
    image = np.random.default_rng(seed).random(served.input_shape, dtype=np.float32)
    before = server.stats(served)
    n = arrivals.size
    latency = np.full(n, np.nan)
    errors: list[str] = []
    done_at = np.full(n, np.nan)

    def send(i: int, due: float) -> None:
        try:
            status, body = server.infer(served, image)
            ok = status == 200
            why = f"HTTP {status}: {' '.join(body.decode(errors='replace').split())[:200]}"
        except OSError as exc:
            ok, why = False, f"{type(exc).__name__}: {exc}"
        end = time.perf_counter()
        if ok:
            latency[i] = (end - due) * 1e3
            done_at[i] = end
        elif len(errors) < 5:
            errors.append(why)

    with ThreadPoolExecutor(max_workers=min(workers, n), thread_name_prefix="e4gym-triton-load") as pool:
        start = time.perf_counter() + 0.02
        futures = []
        for i, a in enumerate(arrivals):
            due = start + float(a)
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            futures.append(pool.submit(send, i, due))
        for f in futures:
            f.result()
    ok = np.isfinite(latency)
    completed = int(ok.sum())
    end = float(np.nanmax(done_at)) if completed else time.perf_counter()
    deadline = time.monotonic() + settle_s
    while True:  # Triton counts a request when it releases it, a moment after the response
        after = server.stats(served)
        delta = _triton_delta(before, after)
        if delta["inferences"] >= completed or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    lat = latency[ok]
    duration = max(end - start, 1e-9)
    return LoadResult(
        model=served, requests=n, completed=completed, failed=n - completed, duration_s=duration,
        throughput_rps=completed / duration, latency_ms=[float(x) for x in lat],
        p50_ms=float(np.percentile(lat, 50)) if completed else math.nan,
        p99_ms=float(np.percentile(lat, 99)) if completed else math.nan,
        mean_ms=float(lat.mean()) if completed else math.nan,
        slo_ms=slo, slo_violations=(int((lat > slo).sum()) + n - completed) if slo is not None else 0,
        executions=delta["executions"], batch_histogram=delta["batch_histogram"], mean_batch=delta["mean_batch"],
        queue_ms=delta["queue_ms"], compute_ms=delta["compute_ms"], compute_ms_by_batch=delta["compute_ms_by_batch"],
        errors=errors,
    )


class TritonBackend:
    """Serving on a real Triton server, one decision interval at a time: the backend of a batching env.

    Each :meth:`serve` applies a :class:`BatchConfig` per network (reconfiguring only those that changed, and
    unloading networks no longer served), then offers each network its arrivals for ``duration_s`` at once and
    returns what was measured. Use it as a context manager (it closes the server it started).

    Args:
        server: a running server (default: a new :class:`TritonServer`, closed by :meth:`close`).
        input_shape: one request's image shape ``(3, H, W)`` (pixels).
        power: makes a fresh :class:`~e4gym.hardware.monitor.PowerMonitor` for each interval, e.g. ``lambda:
            PowerMonitor(read_power, period_s=0.01)`` with ``read_power() -> (board W, rails W)`` (a Jetson's
            INA3221 rails); its energy (J) and mean power (W) over the load are reported. None: no power.
        max_in_flight: concurrent requests per network at most.
        seed: seeds the Poisson arrivals and the request images.
    """

    def __init__(self, server: TritonServer | None = None, *, input_shape: Sequence[int] = (3, 224, 224),
                 power: Callable[[], PowerMonitor] | None = None, max_in_flight: int = 64, seed: int = 0) -> None:
        self._owns = server is None
        self.server = server if server is not None else TritonServer()
        self.input_shape = tuple(int(s) for s in input_shape)
        self.power = power
        self.max_in_flight = _check_int("max_in_flight", max_in_flight, 1)
        self.seed = seed
        self.rng = np.random.default_rng(seed)

    def serve(self, configs: Mapping[str, BatchConfig], arrivals: Mapping[str, float | Sequence[float]],
              duration_s: float, slo_ms: float | Mapping[str, float]) -> IntervalMeasurement:
        """Serve one decision interval.

        Args:
            configs: network -> its batching configuration (every network to serve).
            arrivals: network -> a Poisson rate (requests/s) or arrival times (s from the start, < duration_s; an
                empty list: the network stays loaded and serves nothing this interval).
            duration_s: the interval's length (s) over which arrivals are drawn.
            slo_ms: the latency objective (ms), one for all networks or one per network.

        Raises:
            ConfigError: a bad config, rate, arrival list, duration or SLO (one line), or a network without
                arrivals. UnknownNameError: a network the server cannot build. HardwareError: the server died.
        """
        duration = _check_positive("duration_s", duration_s, "s")
        if not configs:
            raise ConfigError("configs is empty: give a BatchConfig for at least one network")
        slos: dict[str, float] = {}
        plans: dict[str, np.ndarray] = {}
        for net, cfg in configs.items():
            if not isinstance(cfg, BatchConfig):
                raise ConfigError(f"configs[{net!r}] must be a BatchConfig, got {type(cfg).__name__}")
            if net not in arrivals:
                raise ConfigError(f"no arrivals for {net!r}: give a rate (requests/s) or arrival times (s)")
            slo = slo_ms[net] if isinstance(slo_ms, Mapping) and net in slo_ms else slo_ms
            if isinstance(slo, Mapping):
                raise ConfigError(f"no slo_ms for {net!r}")
            slos[net] = _check_positive(f"slo_ms[{net!r}]" if isinstance(slo_ms, Mapping) else "slo_ms", slo, "ms")
            spec = arrivals[net]
            if isinstance(spec, (int, float, np.number)) and not isinstance(spec, bool):
                plans[net] = poisson_times(float(spec), duration, self.rng)  # may be empty at a low rate
            else:  # arrival times; none: the network stays loaded and serves nothing this interval
                arr = np.asarray(spec, dtype=float).reshape(-1)
                plans[net] = arr if arr.size == 0 else _check_arrivals(arr)
                if plans[net].size and plans[net][-1] >= duration:
                    raise ConfigError(f"arrivals[{net!r}] reach {plans[net][-1]:g} s, past duration_s={duration:g} s")
        t0 = time.perf_counter()
        for net in [n for n in self.server.models if n not in configs]:
            self.server.unload(net)
        served = {net: self.server.configure(net, cfg.max_batch_size, cfg.instances, cfg.max_queue_delay_us,
                                             input_shape=self.input_shape) for net, cfg in configs.items()}
        reconfigure_s = time.perf_counter() - t0
        results: dict[str, LoadResult] = {}
        failures: list[BaseException] = []

        def run(net: str) -> None:
            try:
                if plans[net].size == 0:  # no request this interval
                    results[net] = LoadResult(served[net], 0, 0, 0, 0.0, 0.0, [], math.nan, math.nan, math.nan,
                                              slos[net], 0, 0, {}, math.nan, math.nan, math.nan, {})
                    return
                results[net] = drive(self.server, served[net], plans[net], slo_ms=slos[net],
                                     max_in_flight=self.max_in_flight, seed=self.seed)
            except BaseException as exc:
                failures.append(exc)

        monitor = self.power() if self.power is not None else None
        t1 = time.perf_counter()
        with monitor if monitor is not None else contextlib.nullcontext():
            threads = [threading.Thread(target=run, args=(net,), name=f"e4gym-serve-{net}") for net in served]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        wall = time.perf_counter() - t1
        if failures:
            raise failures[0]
        energy = power_w = None
        if monitor is not None:
            monitor.check()
            energy, power_w = monitor.energy_j(), monitor.avg_power_w()
        return IntervalMeasurement({n: results[n] for n in served}, reconfigure_s, wall, energy, power_w)

    def close(self) -> None:
        """Close the server if this backend started it."""
        if self._owns:
            self.server.close()

    def __enter__(self) -> TritonBackend:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class TritonServing:
    """A real Triton server behind the batching env's serving interface (``reset`` / ``bind`` / ``advance`` /
    ``out``, as :class:`e4gym.hardware.serving.Server`): ``e4gym/BatchConcurrency-v0`` with ``backend="triton"``.

    Each :meth:`advance` serves one decision interval on the server: the configuration in ``par`` (per model: batch
    size, instances, batching delay (s), SLO (s)) becomes each network's :class:`BatchConfig`, the interval's arrivals
    are sent at their times (:meth:`TritonBackend.serve`), and the measurements fill :attr:`out` with the emulator's
    columns (:data:`~e4gym.hardware.serving.MODEL_STATS`, :data:`~e4gym.hardware.serving.BOARD_STATS`).

    What differs from the emulator, by construction of a real run:

    - an interval lasts until its requests are answered, plus any reconfiguration (3–7 s when a model's batching or
      instances change: Triton rebinds it under a new name); every request of the interval is served in it, so the
      queue at its end is 0 and every request resolves in its own interval;
    - a request that fails counts as an SLO violation; the p99 is over the completed requests;
    - without a power monitor (``power=None``, e.g. on a desktop CPU) the energy is NaN and the power and the GPU's
      utilisation 0 (not measured); with one (a Jetson's rails) they are measured;
    - the clocks are the board's own (the env refuses ``control_clocks`` on this backend).

    Args:
        models: the networks, in the env's order. backend: the :class:`TritonBackend` (closed by :meth:`close`).
    """

    def __init__(self, models: Sequence[str], backend: TritonBackend) -> None:
        from e4gym.hardware.serving import BOARD_STATS, MODEL_STATS, STATS_WIDTH

        self.models = tuple(models)
        self.n_models = len(self.models)
        self.backend = backend
        self.out = np.zeros((self.n_models + 1, STATS_WIDTH))
        self._m = {c: i for i, c in enumerate(MODEL_STATS)}
        self._b = {c: i for i, c in enumerate(BOARD_STATS)}
        self._arrivals: list[np.ndarray] = [np.zeros(0) for _ in self.models]
        self._par: np.ndarray | None = None
        self._t = 0.0
        #: The last interval's measurement (Triton's batching statistics per network included).
        self.last: IntervalMeasurement | None = None

    def reset(self, arrivals: Sequence[np.ndarray]) -> None:
        """Start an episode at 0 s with these arrivals (per model, sorted times in s)."""
        if len(arrivals) != self.n_models:
            raise ConfigError(f"the server has {self.n_models} models, got arrivals for {len(arrivals)}")
        self._arrivals = [np.asarray(a, dtype=float) for a in arrivals]
        self._t = 0.0
        self.out[:] = 0.0
        self.last = None

    def bind(self, tab: Any, par: np.ndarray, floor_w: float, cpu_busy_w: float, **_: Any) -> None:
        """Take the configuration ``par`` (read at each interval; the cost table and power terms are the emulator's
        and are not used)."""
        self._par = par

    def advance(self, t1_s: float) -> np.ndarray:
        """Serve the interval ``[t, t1_s)`` on the server; returns :attr:`out`."""
        if self._par is None:
            raise ConfigError("TritonServing.advance before bind(): nothing configured")
        t0, t1 = self._t, float(t1_s)
        duration = t1 - t0
        configs, arrivals, slos = {}, {}, {}
        for m, net in enumerate(self.models):
            batch, inst, delay_s, slo_s = (float(x) for x in self._par[m])
            configs[net] = BatchConfig(int(batch), int(inst), round(delay_s * 1e6))
            a = self._arrivals[m]
            arrivals[net] = a[(a >= t0) & (a < t1)] - t0
            slos[net] = slo_s * 1e3
        measured = self.backend.serve(configs, arrivals, duration, slos)
        self.last = measured
        out, M, B = self.out, self._m, self._b
        out[:] = 0.0
        all_lat: list[float] = []
        for m, net in enumerate(self.models):
            r = measured.results.get(net)
            requests = int(arrivals[net].size)
            done = viol = 0
            lat: list[float] = []
            if r is not None and requests:
                lat = [x for x in r.latency_ms if math.isfinite(x)]
                done, viol = int(r.completed), int(r.slo_violations)
            row = out[m]
            row[M["arrived"]] = requests
            row[M["completed"]] = done
            row[M["violations"]] = viol
            row[M["on_time"]] = max(done - viol, 0) if done else 0
            row[M["p99_s"]] = _nearest_rank(lat, 0.99) * 1e-3 if lat else 0.0
            row[M["mean_latency_s"]] = float(np.mean(lat)) * 1e-3 if lat else 0.0
            row[M["throughput_rps"]] = done / duration
            row[M["goodput_rps"]] = row[M["on_time"]] / duration
            row[M["violation_rate"]] = viol / requests if requests else 0.0
            all_lat += lat
        board = out[self.n_models]
        for col in ("completed", "on_time", "violations", "arrived", "throughput_rps", "goodput_rps"):
            board[B[col]] = out[: self.n_models, M[col]].sum()
        board[B["violation_rate"]] = board[B["violations"]] / board[B["arrived"]] if board[B["arrived"]] else 0.0
        board[B["p99_s"]] = _nearest_rank(all_lat, 0.99) * 1e-3 if all_lat else 0.0
        energy = math.nan if measured.energy_j is None else float(measured.energy_j)
        board[B["energy_j"]] = energy
        board[B["power_w"]] = 0.0 if measured.avg_power_w is None else float(measured.avg_power_w)
        done = board[B["completed"]]
        board[B["energy_per_request_j"]] = energy / done if done else energy
        self._t = t1
        return out

    def close(self) -> None:
        """Close the backend (and the server it started)."""
        self.backend.close()


def _nearest_rank(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile of ``values`` by nearest rank (the emulator's rule)."""
    xs = sorted(values)
    return float(xs[max(math.ceil(q * len(xs)) - 1, 0)])
