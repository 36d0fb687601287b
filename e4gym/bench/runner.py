"""Running an experiment: one task per (scenario, policy, seed), in parallel processes, resumable.

Each task builds its env (``gymnasium.make(policy.env_id, **scenario kwargs, **policy.env_kwargs)``, under
:class:`~e4gym.envs.wrappers.EpisodeStats`), builds a fresh policy, runs one episode with
:func:`e4gym.policy.run_episode` on the seed (the env seed: every policy sees the same frame stream for a
seed), and writes, atomically:

* ``runs/<scenario>/<label>/seed<N>.npz``: the per-frame trace (:data:`e4gym.bench.metrics.TRACE_DOCS`);
* ``runs/<scenario>/<label>/seed<N>.json``: the task's definition, its hash and its result row
  (:data:`e4gym.bench.metrics.METRIC_DOCS` plus the policy's ``stats()``).

Every task runs its policy with one math thread, as in a worker process: the workers set ``OMP_NUM_THREADS``
(and MKL's, OpenBLAS's) to 1 before anything imports torch, and in the parent process (``jobs=1``) a task whose
policy has imported torch runs with ``torch.set_num_threads(1)``, the caller's setting restored afterwards.
The harness never imports torch itself. The decision-time columns (``decision_*_ms``) are measured that way.

Two executors run the tasks (``executor=``): ``"local"`` (the default) runs them in this process or in a spawn
pool of worker processes, each writing its own task's files; ``"ray"`` (the optional extra ``e4gym[ray]``,
docs/ray.md) runs each as a Ray task reserving :func:`task_resources`, on a Ray instance of this machine started
and shut down by the run (in its own temporary folder, removed afterwards), or on a cluster (``address=``,
checked before anything runs); :func:`ray_session` shares one Ray between several runs (``e4gym reproduce``).
A Ray task only computes (:func:`compute_task`): its row and trace come back to this process, which writes them
(:func:`write_task`, the same code as a local worker) on its own ``out``, so workers need no shared file system. A
task whose worker dies is run again by Ray (at most :data:`RAY_MAX_RETRIES` times); a dead attempt wrote nothing.
Ray is imported only by that executor.

A policy that trained on the episode's frame stream is refused (:func:`e4gym.policy.check_training_streams`):
the task fails with a :class:`~e4gym.errors.ConfigError` that names the policy, the stream and the fix.

Before any task runs, the output folder is checked (:func:`check_out`): ``out`` a file or not writable, an
output file that is a folder, or an output folder that is a file is a :class:`~e4gym.errors.ConfigError` then,
not a crash after the tasks ran.

A task whose JSON exists with the same definition hash is not run again when its files check out
(:func:`check_result`): the JSON reads, holds the task's own definition and a complete row, and the trace reads
(every zip member's CRC) and has every :data:`~e4gym.bench.metrics.TRACE_DOCS` array, one entry per frame of the
row. Damaged files are moved to ``out/quarantine/<time>-<pid>/runs/...`` with a one-line message on stderr and
the task runs again (one damaged file would otherwise break every later run). A changed config changes the hash
of the tasks it touches, which then run again (their old files are replaced, not quarantined). ``force=True`` runs
everything. A failing task does not stop the others; :class:`Results` lists the failures. After the tasks, the
parent process writes ``results.csv``, ``results.json`` and ``report.md`` (:mod:`e4gym.bench.report`), the
TensorBoard runs (:mod:`e4gym.bench.tb`) and the plots (:mod:`e4gym.bench.plots`); those two build each
scenario's folder beside it and swap it in whole (:func:`e4gym.io.staged_dir`), so a failure or Ctrl-C while
writing them leaves the previous ones in place.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import sys
import time
import traceback
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from e4gym.bench.config import Experiment, PolicyEntry, Scenario, canonical_json, load_experiment
from e4gym.bench.metrics import (
    ID_COLUMNS,
    TAIL_COLUMNS,
    env_family,
    episode_metrics,
    family_columns,
    frame_trace,
    interval_trace,
    serving_metrics,
)
from e4gym.io import atomic_write, output_dir_problem, write_json

#: Bumped when what a task computes changes, so results of an older harness are not reused.
HARNESS_VERSION = 2


@dataclass(frozen=True)
class Task:
    """One (scenario, policy, seed) episode.

    Attributes:
        scenario / policy: the experiment's entries. seed: the env seed.
        env_kwargs: the env arguments (the scenario's, overridden by the policy's ``env_kwargs``).
    """

    scenario: Scenario
    policy: PolicyEntry
    seed: int
    env_kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def definition(self) -> dict[str, Any]:
        """Everything that determines the task's result (hashed into :attr:`hash`)."""
        return {
            "harness": HARNESS_VERSION,
            "env_id": self.policy.env_id,
            "env_kwargs": self.env_kwargs,
            "policy": self.policy.name,
            "args": self.policy.args,
            "model_sha256": self.policy.fingerprint,
            "seed": self.seed,
        }

    @property
    def hash(self) -> str:
        """SHA-256 (hex) of the canonical JSON of :attr:`definition`."""
        return hashlib.sha256(canonical_json(self.definition).encode()).hexdigest()

    @property
    def relpath(self) -> str:
        """The task's files without suffix, relative to the output folder (``runs/<scenario>/<label>/seed<N>``)."""
        return f"runs/{self.scenario.name}/{self.policy.label}/seed{self.seed}"

    def describe(self) -> str:
        """``policy 'x' on scenario y, seed z`` (for messages)."""
        return f"policy '{self.policy.label}' on scenario {self.scenario.name}, seed {self.seed}"


@dataclass(frozen=True)
class TaskFailure:
    """A task that raised: which one, and the error (``Type: message``) with its traceback."""

    scenario: str
    label: str
    seed: int
    error: str
    traceback: str = ""

    def describe(self) -> str:
        """One line naming the task and the error."""
        return f"policy '{self.label}' on scenario {self.scenario}, seed {self.seed}: {self.error}"


@dataclass
class Results:
    """What :func:`run_benchmark` produced.

    Attributes:
        experiment: the validated experiment. out: the output folder.
        rows: one result row per finished task (config order: scenario, policy, seed), as in results.json.
        failures: the tasks that raised in this invocation.
        ran / reused: tasks run in this invocation / results reused from an earlier one.
        report: the Markdown report (also in ``out/report.md``). wall_s: duration of the invocation (s).
        quarantined: where the damaged stored results found by this invocation were moved (one folder per task;
            those tasks ran again).
    """

    experiment: Experiment
    out: Path
    rows: list[dict[str, Any]]
    failures: list[TaskFailure]
    ran: int
    reused: int
    report: str
    wall_s: float
    quarantined: list[Path] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Every task of the experiment has a result."""
        return not self.failures and len(self.rows) == self.experiment.n_tasks


def build_tasks(exp: Experiment) -> list[Task]:
    """The experiment's tasks, scenario-major, then policy, then seed (config order)."""
    return [
        Task(sc, p, seed, {**sc.env_kwargs, **p.env_kwargs})
        for sc in exp.scenarios for p in exp.policies for seed in exp.seeds
    ]


#: Folders of a benchmark's outputs under ``out`` (each must be a writable folder where it exists).
OUTPUT_DIRS = ("runs", "quarantine", "tb", "plots")


def check_out(out: Path, tensorboard: bool = True, plots: bool = True) -> None:
    """Refuse an output folder the benchmark could not write into, before any task runs; creates nothing.

    Args:
        out: the output folder. tensorboard / plots: whether ``tb/`` / ``plots/`` will be written.

    Raises:
        ConfigError: ``out`` is a file, is not writable or cannot be created; an output file
            (:data:`e4gym.bench.report.OUTPUT_FILES`) is a folder; an output folder (:data:`OUTPUT_DIRS`) is a file
            or is not writable. The message names the path and the fix.
    """
    from e4gym.bench.report import OUTPUT_FILES
    from e4gym.errors import ConfigError

    out = Path(out)
    problem = output_dir_problem(out)
    if problem:
        raise ConfigError(f"output folder {problem}; pass a writable folder as --out (a new one, or the output of "
                          "an earlier run to resume it)")
    for name in OUTPUT_FILES:
        path = out / name
        if os.path.lexists(path) and not path.is_file():
            what = "a folder" if path.is_dir() else "not a regular file"
            raise ConfigError(f"{path} is {what}, not a file: the benchmark writes its {name} there; move or delete "
                              "it, or pass another --out")
    for name in OUTPUT_DIRS:
        if (name == "tb" and not tensorboard) or (name == "plots" and not plots):
            continue
        path = out / name
        problem = output_dir_problem(path) if os.path.lexists(path) else None
        if problem:
            raise ConfigError(f"{problem}: the benchmark writes its {name}/ there; move or delete it, or pass "
                              "another --out")


def _same_json(a: Any, b: Any) -> bool:
    """``a`` and ``b`` are equal once written as JSON and read back (tuples as lists, NaN equal to NaN)."""
    try:
        return canonical_json(json.loads(json.dumps(a))) == canonical_json(json.loads(json.dumps(b)))
    except (TypeError, ValueError):
        return False


def check_result(out: Path, task: Task) -> tuple[dict[str, Any] | None, str | None]:
    """Whether the stored result of ``task`` can be reused.

    Returns:
        ``(data, None)``: the JSON's content, complete and the task's own (reuse it).
        ``(None, None)``: nothing to reuse and nothing damaged: no JSON (never run, or killed before the JSON
        was written), or the result of another definition (a changed config; the run replaces it).
        ``(None, why)``: the files are damaged (``why``, one line): the JSON does not read, lacks its hash, row
        or row columns, or holds another definition than the task's under the task's hash; the trace is
        missing, does not read (truncated, a member's CRC wrong), lacks a :data:`TRACE_DOCS` array, or has
        arrays whose length is not the row's ``frames``.
    """
    path = out / f"{task.relpath}.json"
    if not os.path.lexists(path):
        return None, None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return None, f"{path.name} does not read ({type(exc).__name__}: {exc})"
    if not isinstance(data, dict) or not isinstance(data.get("hash"), str):
        return None, f"{path.name} has no definition hash"
    if data["hash"] != task.hash:
        return None, None
    if not _same_json(data.get("definition"), task.definition):
        return None, f"{path.name} holds another definition than the task's under the task's hash"
    row = data.get("row")
    if not isinstance(row, dict):
        return None, f"{path.name} has no result row"
    metrics, trace_docs, count = family_columns(env_family(task.policy.env_id))
    missing = [c for c in (*ID_COLUMNS, *metrics, *TAIL_COLUMNS) if c not in row]
    if missing:
        return None, f"{path.name}'s row lacks the column(s) {missing}"
    expected = {"scenario": task.scenario.name, "label": task.policy.label, "seed": task.seed, "hash": task.hash,
                "trace": f"{task.relpath}.npz"}
    wrong = sorted(k for k, v in expected.items() if row[k] != v)
    frames = row[count]
    if wrong or isinstance(frames, bool) or not isinstance(frames, int) or frames < 0:
        return None, f"{path.name}'s row has wrong {', '.join(wrong) or 'frames'} for this task"
    trace = out / f"{task.relpath}.npz"
    if not trace.is_file():
        return None, f"its trace {trace.name} is missing"
    try:
        with zipfile.ZipFile(trace) as zf:
            bad = zf.testzip()  # reads every member: truncation and bit rot show here
        if bad is not None:
            raise ValueError(f"member {bad} fails its CRC check")
        with np.load(trace, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as exc:  # BadZipFile, EOFError, zlib.error, ValueError, OSError: any unreadable trace
        return None, f"{trace.name} does not read ({type(exc).__name__}: {exc})"
    absent = [k for k in trace_docs if k not in arrays]
    if absent:
        return None, f"{trace.name} lacks the array(s) {absent}"
    shapes = {k: arrays[k].shape for k in trace_docs if arrays[k].shape != (frames,)}
    if shapes:
        return None, f"{trace.name}'s arrays do not have the row's {frames} {count}: {shapes}"
    return data, None


def quarantine(out: Path, task: Task, stamp: str) -> Path:
    """Move ``task``'s result files (JSON and trace, those that exist) to ``out/quarantine/<stamp>/<relpath>``.

    Returns the folder they were moved to. ``stamp`` names this invocation (local time and pid).
    """
    dest = out / "quarantine" / stamp / Path(task.relpath).parent
    dest.mkdir(parents=True, exist_ok=True)
    for suffix in (".json", ".npz"):
        src = out / f"{task.relpath}{suffix}"
        if os.path.lexists(src):
            os.replace(src, dest / src.name)
    return dest


def compute_task(task: Task) -> dict[str, Any]:
    """Run one task's episode and return its result without writing anything; never raises for the task's own
    errors.

    Both executors call it: the local one in its worker processes (then :func:`write_task` in the same process),
    the Ray one in a Ray task whose outcome travels back to the driver, which writes it (:func:`write_task`).

    Returns:
        ``{"ok": True, "row": ..., "trace_npz": bytes, "started_at": ..., "finished_at": ...}`` (the row with
        ``wall_s``, the episode's time in s; the trace as the bytes of its compressed ``.npz``, some 10-100 kB; the
        times since the epoch in s) or
        ``{"ok": False, "error": "Type: message", "traceback": ...}``.
    """
    started = time.time()
    t0 = time.perf_counter()
    try:
        import gymnasium as gym

        import e4gym  # noqa: F401  (registers the envs)
        from e4gym.bench.policies import make_policy
        from e4gym.envs.wrappers import episode_stats_wrapper
        from e4gym.policy import run_episode

        policy = make_policy(task.policy.name, task.policy.args)
        seeded = getattr(policy, "for_task_seed", None)  # optional: a policy that depends on the episode's seed
        if callable(seeded):
            seeded(task.seed)
        env = episode_stats_wrapper(gym.make(task.policy.env_id, **task.env_kwargs))
        try:
            with one_torch_thread():
                infos = run_episode(policy, env, seed=task.seed)
            stats_ep = env.last_episode_stats
        finally:
            env.close()
        if stats_ep is None:
            raise RuntimeError("the episode did not end (no EpisodeStats figures)")
        serving = env_family(task.policy.env_id) == "serving"
        metrics = (serving_metrics if serving else episode_metrics)(infos, stats_ep)
        extra = _policy_stats(policy)
        setup = env.unwrapped.setup
        sc = task.scenario
        row: dict[str, Any] = {
            "scenario": sc.name,
            "device": setup.spec.name,
            # a serving scenario: its models joined by "+", no frame rate or deadline (each model has its SLO)
            "model": "+".join(setup.models) if serving else setup.profile.name,
            "fps": math.nan if serving else float(setup.fps),
            "deadline_ms": math.nan if serving else float(setup.deadline_s * 1e3),
            "policy": task.policy.name,
            "label": task.policy.label,
            "seed": task.seed,
            "clairvoyant": bool(getattr(policy, "clairvoyant", False)),
            "env_id": task.policy.env_id,
        }
        row.update({k: v for k, v in sc.params.items() if k not in row})
        row.update(metrics)
        clash = sorted(k for k in extra if k in row or k in TAIL_COLUMNS)
        if clash:
            raise ValueError(f"the policy's stats() keys {clash} clash with result columns; rename them")
        row.update(extra)
        row["wall_s"] = time.perf_counter() - t0
        row["hash"] = task.hash
        row["trace"] = f"{task.relpath}.npz"
        buf = io.BytesIO()  # compressed here, in the worker: the writer only moves bytes to disk
        np.savez_compressed(buf, **(interval_trace if serving else frame_trace)(infos))
        return {"ok": True, "row": row, "trace_npz": buf.getvalue(), "started_at": started,
                "finished_at": time.time()}
    except Exception as exc:
        return _failure(exc)


def _failure(exc: BaseException, first_line: bool = False) -> dict[str, Any]:
    """The outcome of a task that raised ``exc`` (called in its ``except`` block, for the traceback).

    ``first_line``: keep only the first line of the message (Ray's errors run over many lines).
    """
    text = str(exc).strip().splitlines()[:1] if first_line else [str(exc)]
    return {"ok": False, "error": f"{type(exc).__name__}: {text[0] if text else ''}",
            "traceback": traceback.format_exc()}


def write_task(out: str | Path, task: Task, outcome: dict[str, Any]) -> dict[str, Any]:
    """Write a computed outcome (:func:`compute_task`) as the task's trace and JSON, each atomically, the trace
    first (a JSON on disk always has its trace); never raises for a write error.

    Returns ``{"ok": True, "row": ...}``, the failed outcome as it is, or a failure for an error while writing
    (then no JSON was written: the task runs again on the next invocation).
    """
    if not outcome.get("ok"):
        return outcome
    out = Path(out)
    try:
        row = outcome["row"]
        data = outcome["trace_npz"]
        atomic_write(out / f"{task.relpath}.npz", lambda f: f.write(data))
        write_json(out / f"{task.relpath}.json", {
            "hash": task.hash,
            "definition": task.definition,
            "row": row,
            "started_at": outcome["started_at"],
            "finished_at": outcome["finished_at"],
        })
        return {"ok": True, "row": row}
    except Exception as exc:
        return _failure(exc)


def run_task(task: Task, out: str | Path) -> dict[str, Any]:
    """Run one task and write its trace and result (atomically); never raises for the task's own errors.

    Returns ``{"ok": True, "row": ...}`` or ``{"ok": False, "error": "Type: message", "traceback": ...}``.
    """
    return write_task(out, task, compute_task(task))


def _policy_stats(policy: Any) -> dict[str, float]:
    """The policy's ``stats()`` (numbers by name), or ``{}`` when it has none.

    Raises:
        ValueError: ``stats()`` did not return a mapping of names to numbers.
    """
    fn = getattr(policy, "stats", None)
    if not callable(fn):
        return {}
    stats = fn()
    if not isinstance(stats, Mapping):
        raise ValueError(f"{policy!r}.stats() must return a dict of numbers, got {stats!r}")
    out = {}
    for k, v in stats.items():
        try:
            out[str(k)] = float(v)
        except (TypeError, ValueError):
            raise ValueError(f"{policy!r}.stats()[{k!r}] must be a number, got {v!r}") from None
    return out


@contextmanager
def one_torch_thread() -> Iterator[None]:
    """Run the block with one torch thread when torch is imported (restoring the thread count after it).

    Does nothing when torch is not imported: the harness does not import torch for policies that do not use it
    (worker processes get one thread at torch's import from ``OMP_NUM_THREADS``, see :func:`_worker_init`).
    """
    torch = sys.modules.get("torch")
    get = getattr(torch, "get_num_threads", None)
    if torch is None or not callable(get):
        yield
        return
    before = int(get())
    if before != 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if before != 1:
            torch.set_num_threads(before)


def _worker_init(parent_pid: int | None = None) -> None:
    """Worker process setup: the worker dies with its parent, and runs one math thread (the processes already use
    the cores).

    With ``parent_pid`` (the pool's process) the worker ends when that process dies, however it died (SIGKILL
    and OOM kills included), restoring any board it drives first (:func:`e4gym.hardware.restore.die_with_parent`):
    an orphan never keeps driving a board or waits forever for tasks.

    The environment variables take effect when torch (or numpy's BLAS) is first imported; a torch already
    imported gets ``torch.set_num_threads(1)``.
    """
    if parent_pid is not None:
        from e4gym.hardware.restore import die_with_parent

        die_with_parent(parent_pid)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    torch = sys.modules.get("torch")
    if torch is not None and callable(getattr(torch, "set_num_threads", None)):
        torch.set_num_threads(1)


#: Executors of :func:`run_benchmark`: worker processes of this machine, or Ray tasks (``e4gym[ray]``).
EXECUTORS = ("local", "ray")
#: Times Ray runs a task again whose worker died (killed, out of memory, a lost node); its own errors are not
#: retried (:func:`compute_task` returns them as a failure).
RAY_MAX_RETRIES = 3
#: The one-line fix for a missing Ray.
RAY_INSTALL_HINT = "pip install 'e4gym[ray]'"


def import_ray() -> Any:
    """The ``ray`` module (imported here only: the local executor never imports it).

    Raises:
        ConfigError: Ray is not installed; the message names the fix (:data:`RAY_INSTALL_HINT`).
    """
    from e4gym.errors import ConfigError

    try:
        import ray
    except ImportError as exc:
        raise ConfigError(f"--executor ray needs Ray, which is not installed here ({exc}); install it with: "
                          f"{RAY_INSTALL_HINT}") from None
    return ray


def task_resources(task: Task) -> dict[str, float]:
    """What one Ray task of ``task`` reserves: one CPU (a task runs one math thread, see the module docstring),
    and one GPU when the task runs its network on CUDA (a real-board scenario whose ``backend_kwargs`` name a
    ``runner_device`` ``cuda`` or ``cuda:<i>``; ``e4gym bench --runner-device cuda``). A real board whose runner
    device is not given picks CUDA when its node has one, without a reservation: pass ``--runner-device``.
    """
    kw = task.env_kwargs.get("backend_kwargs") or {}
    device = kw.get("runner_device") if isinstance(kw, Mapping) else None
    cuda = task.env_kwargs.get("backend", "emulated") != "emulated" and str(device or "").startswith("cuda")
    return {"num_cpus": 1, "num_gpus": 1 if cuda else 0}


def _ray_compute(task: Task) -> dict[str, Any]:
    """The body of a Ray task: one math thread (as in a local worker), then :func:`compute_task`."""
    _worker_init()
    return compute_task(task)


#: Seconds the reachability check of ``--address`` waits for a TCP connection (:func:`check_ray_address`).
RAY_CONNECT_TIMEOUT_S = 3.0
#: Where a Ray instance started here keeps its temporary folder (sockets, logs): a new folder under this one (Ray's
#: ``RAY_TMPDIR`` when set), removed when the instance is shut down. Short: Ray's socket paths must fit in 107
#: bytes, so not the (possibly long) system temporary folder of ``tempfile``.
RAY_TEMP_PARENT = "/tmp"


def check_ray_address(address: str, timeout_s: float = RAY_CONNECT_TIMEOUT_S) -> None:
    """Check that a Ray cluster answers at ``address`` before anything runs or is written.

    ``host:port`` (the GCS port of the head node, ``ray start --head --port``) and ``ray://host:port`` (Ray Client)
    must accept a TCP connection within ``timeout_s`` seconds; ``auto`` must name a running cluster (Ray's own
    lookup: ``RAY_ADDRESS``, then the last ``ray start`` of this machine, then a running GCS). Ray's own connect
    would instead retry for tens of seconds before failing.

    Raises:
        ConfigError: nothing answers there, the address does not parse, or ``auto`` finds no cluster (one line
            naming the address and the fix).
    """
    import socket

    from e4gym.errors import ConfigError

    fix = ("start the cluster (`ray start --head --port PORT` on its head node) or fix --address; without --address "
           "the run starts a Ray instance of this machine")
    target = address
    if address == "auto":
        try:
            from ray._private.services import canonicalize_bootstrap_address_or_die
        except ImportError:  # Ray moved its private helper: let ray.init look for the cluster itself
            return
        try:
            target = canonicalize_bootstrap_address_or_die("auto")
        except Exception as exc:
            raise ConfigError(f"--address auto: no running Ray cluster found on this machine "
                              f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); {fix}") from None
    hostport = target.split("://", 1)[1] if "://" in target else target
    host, sep, port = hostport.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"--address {address}: not a Ray cluster address (expected HOST:PORT, ray://HOST:PORT "
                          f"or auto); {fix}")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            pass
    except OSError as exc:
        why = f"no answer within {timeout_s:g} s" if isinstance(exc, TimeoutError) else (
            exc.strerror or type(exc).__name__)
        raise ConfigError(f"--address {address}: no Ray cluster answers at {host}:{port} ({why}); {fix}") from None


@dataclass
class RaySession:
    """Ray for one :func:`ray_session` block: started (or connected to) on first use, at most once.

    Attributes:
        address: the cluster (``host:port``, ``auto``, ``ray://host:port``), or None for a Ray instance of this
            machine with ``num_cpus`` CPUs.
        num_cpus: CPUs of the instance started here (``address=None``).
        started: whether this session started a Ray instance of this machine (False: a cluster, or a caller's own
            ``ray.init()``, or not used yet).
        temp_dir: the instance's temporary folder (removed at the end), when it was started here.
    """

    address: str | None
    num_cpus: int
    started: bool = False
    temp_dir: str | None = None
    _ray: Any = None  # the ray module once initialised
    _module: Any = None  # the ray module this session called ray.init on
    _owned: bool = False  # this session called ray.init (so it calls ray.shutdown)
    _sigterm: Any = None

    def ray(self) -> Any:
        """The ``ray`` module, initialised: on the first call a Ray instance of this machine is started (no
        dashboard, no worker output on this terminal, its own temporary folder under :data:`RAY_TEMP_PARENT`, the
        driver's ``sys.path`` as the workers' ``PYTHONPATH``) or the cluster at ``address`` is connected to; a
        ``ray.init()`` the caller already made is used as it is."""
        if self._ray is not None:
            return self._ray
        import logging
        import signal
        import tempfile
        import threading

        ray = import_ray()
        if not ray.is_initialized():
            if threading.current_thread() is threading.main_thread():
                self._sigterm = signal.getsignal(signal.SIGTERM)  # ray.init installs its own: restored at the end
            common = {"log_to_driver": False, "logging_level": logging.ERROR}
            self._owned, self._module = True, ray  # shut down at the end even if ray.init fails halfway
            if self.address is None:
                parent = os.environ.get("RAY_TMPDIR") or RAY_TEMP_PARENT
                self.temp_dir = tempfile.mkdtemp(prefix="e4r", dir=parent if os.path.isdir(parent) else None)
                # "local": a new instance even when RAY_ADDRESS names a cluster.
                ray.init(address="local", num_cpus=self.num_cpus, include_dashboard=False, _temp_dir=self.temp_dir,
                         runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}},
                         **common)
                self.started = True
            else:
                ray.init(address=self.address, **common)
        self._ray = ray
        return ray

    def close(self) -> None:
        """Shut down the instance started here, or disconnect from the cluster (never shut down); remove the
        temporary folder; restore the SIGTERM handler. A caller's own session is left running."""
        import shutil
        import signal

        try:
            if self._owned and self._module is not None:
                self._module.shutdown()
        finally:
            if self._sigterm is not None:
                signal.signal(signal.SIGTERM, self._sigterm)
            if self.temp_dir is not None:
                shutil.rmtree(self.temp_dir, ignore_errors=True)
            self._ray = self._module = self._sigterm = None
            self._owned = False


#: The :class:`RaySession` of the innermost open :func:`ray_session` block (None outside any).
_ACTIVE_SESSION: RaySession | None = None


@contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None) -> Iterator[RaySession]:
    """One Ray for every Ray run inside the block: ``run_benchmark(..., executor="ray")`` calls in it share it.

    Ray is started (``address=None``: a Ray instance of this machine with ``num_cpus`` CPUs, default the CPU
    count) or connected to (``address``: a cluster) when a run first needs it, and shut down (or disconnected from)
    when the block ends, however it ends (an error, Ctrl-C). A block opened inside another one is the outer one.
    ``e4gym reproduce --executor ray`` runs its experiments in one such block; ``run_benchmark`` opens its own when
    none is open. A cluster ``address`` is checked first (:func:`check_ray_address`).

    Raises:
        ConfigError: Ray is not installed (:func:`import_ray`), nothing answers at ``address``, or an inner block
            names another ``address`` than the open one.
    """
    global _ACTIVE_SESSION
    from e4gym.errors import ConfigError

    if _ACTIVE_SESSION is not None:
        if address is not None and address != _ACTIVE_SESSION.address:
            raise ConfigError(f"a Ray session for {_ACTIVE_SESSION.address or 'this machine'} is open; "
                              f"--address {address} cannot be used inside it")
        yield _ACTIVE_SESSION
        return
    import_ray()
    if address is not None:
        check_ray_address(address)
    session = RaySession(address, num_cpus or os.cpu_count() or 1)
    _ACTIVE_SESSION = session
    try:
        yield session
    finally:
        _ACTIVE_SESSION = None
        session.close()


def _ray_outcomes(pending: list[Task], address: str | None, jobs: int) -> Iterator[tuple[Task, dict[str, Any]]]:
    """Run ``pending`` as Ray tasks (:func:`task_resources`, :data:`RAY_MAX_RETRIES`), at most ``jobs`` at a
    time; yield ``(task, outcome)`` as outcomes come back (:func:`compute_task`'s, or a failure when the task's
    retries ran out). Tasks still running when the caller stops (Ctrl-C) are cancelled.

    Ray is the open :func:`ray_session`'s, or one opened for these tasks (a Ray instance of this machine with
    ``jobs`` CPUs, or the cluster at ``address``). On an instance started here with at most ``jobs`` CPUs every
    task is submitted at once: Ray runs as many as it has CPUs and a worker starts its next task while this process
    writes the last one's result. On a cluster, a larger instance or a session the caller started, at most ``jobs``
    tasks are submitted at a time."""
    import queue as queues

    with ray_session(address, jobs) as session:
        ray = session.ray()
        remote = ray.remote(_ray_compute)
        todo = list(pending)
        # All at once on an instance of this machine no larger than jobs (its CPUs pace the tasks); else jobs.
        in_flight = len(todo) if session.started and session.num_cpus <= jobs else jobs
        running: dict[Any, Task] = {}
        remotes: dict[tuple[tuple[str, float], ...], Any] = {}
        # Results arrive through the futures' callbacks: this thread sleeps until one is done (no polling).
        done: queues.SimpleQueue[tuple[Any, Any]] = queues.SimpleQueue()
        try:
            while todo or running:
                while todo and len(running) < in_flight:
                    task = todo.pop(0)
                    need = tuple(sorted(task_resources(task).items()))
                    if need not in remotes:  # built once per kind of task, not once per task
                        remotes[need] = remote.options(**dict(need), max_retries=RAY_MAX_RETRIES,
                                                       retry_exceptions=False)
                    ref = remotes[need].remote(task)
                    running[ref] = task
                    ref.future().add_done_callback(lambda fut, ref=ref: done.put((ref, fut)))
                try:
                    ref, fut = done.get(timeout=1.0)  # a timeout: Ctrl-C is seen within a second
                except queues.Empty:
                    continue
                task = running.pop(ref)
                try:
                    outcome = fut.result()
                except Exception as exc:  # its worker died RAY_MAX_RETRIES + 1 times, or its node was lost
                    outcome = _failure(exc, first_line=True)
                yield task, outcome
        finally:
            for ref in running:
                try:
                    ray.cancel(ref, force=True)
                except Exception:  # already finished, or Ray is going away anyway
                    pass


def _run_pending(pending: list[Task], out: Path, jobs: int, quiet: bool, name: str, executor: str = "local",
                 address: str | None = None) -> list[TaskFailure]:
    """Run ``pending`` with a progress bar: locally in this process when ``jobs <= 1``, else in a spawn pool of
    ``jobs`` processes; with ``executor="ray"`` as Ray tasks, at most ``jobs`` at a time, each outcome written
    here (:func:`write_task`) as it comes back."""
    from tqdm import tqdm

    failures: list[TaskFailure] = []

    def record(task: Task, outcome: dict[str, Any]) -> None:
        if not outcome.get("ok"):
            failures.append(TaskFailure(task.scenario.name, task.policy.label, task.seed,
                                        str(outcome.get("error")), str(outcome.get("traceback", ""))))
        bar.set_postfix_str(f"{task.policy.label}/{task.scenario.name}/seed{task.seed}", refresh=False)
        bar.update(1)

    bar = tqdm(total=len(pending), desc=f"bench {name}", unit="task", file=sys.stderr, disable=quiet)
    try:
        if executor == "ray":
            with closing(_ray_outcomes(pending, address, jobs)) as outcomes:  # Ray stops with the loop, however
                for task, outcome in outcomes:
                    record(task, write_task(out, task, outcome))
        elif jobs <= 1:
            for task in pending:
                record(task, run_task(task, out))
        else:
            import multiprocessing as mp
            from concurrent.futures import ProcessPoolExecutor, as_completed

            with ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn"), initializer=_worker_init,
                                     initargs=(os.getpid(),)) as pool:  # workers die with this process
                futures = {pool.submit(run_task, t, str(out)): t for t in pending}
                try:
                    for fut in as_completed(futures):
                        try:
                            outcome = fut.result()
                        except Exception as exc:  # the worker process died (BrokenProcessPool, ...)
                            outcome = _failure(exc)
                        record(futures[fut], outcome)
                except BaseException:
                    pool.shutdown(wait=True, cancel_futures=True)
                    raise
    finally:
        bar.close()
    order = {(t.scenario.name, t.policy.label, t.seed): i for i, t in enumerate(pending)}
    return sorted(failures, key=lambda f: order[(f.scenario, f.label, f.seed)])


def run_benchmark(
    config: str | Path | Mapping[str, Any] | Experiment,
    out: str | Path,
    jobs: int | None = None,
    force: bool = False,
    frames: int | None = None,
    quiet: bool = True,
    plots: bool = True,
    tensorboard: bool = True,
    backend: Mapping[str, Any] | None = None,
    seeds: Any = None,
    executor: str = "local",
    address: str | None = None,
) -> Results:
    """Run an experiment and write its outputs under ``out``.

    Args:
        config: a config path, a name under ``configs/experiments/``, a mapping, or a loaded :class:`Experiment`.
        out: output folder (created). jobs: worker processes (default ``min(os.cpu_count(), tasks to run)``; 1
            whenever a scenario runs on a real board: one owner per board;
            1 runs in this process). force: re-run tasks that already have a result.
        frames: override ``episode_frames`` (frames per episode) of every scenario.
        backend: ``{"backend": NAME, "backend_kwargs": {...}}`` for every scenario (real boards).
        seeds: override the config's seeds (a list of integers >= 0).
        quiet: no progress bar. plots / tensorboard: write ``plots/`` / ``tb/``.
        executor: ``"local"`` (worker processes of this machine) or ``"ray"`` (Ray tasks; ``e4gym[ray]``,
            docs/ray.md): each task's outcome comes back to this process, which writes the same files as the local
            executor; a task whose worker dies runs again (:data:`RAY_MAX_RETRIES`). Inside a :func:`ray_session`
            block its Ray is used; otherwise, without ``address``, a Ray instance of this machine with ``jobs`` CPUs
            (and its own temporary folder) is started and shut down by the run.
        address: ``executor="ray"`` only: the Ray cluster to connect to (``host:port``, ``auto``), checked before
            anything is written (:func:`check_ray_address`); ``jobs`` then caps the tasks in flight (default: every
            pending task; the cluster's resources decide).

    Returns:
        The :class:`Results`; check ``results.ok`` (failed tasks do not raise).

    Stored results whose files are damaged are moved to ``out/quarantine/`` (one line on stderr each, listed in
    ``Results.quarantined``) and their tasks run again (:func:`check_result`).

    Raises:
        ConfigError / UnknownNameError: the config is invalid; nothing is run and ``out`` is not touched.
        ConfigError: ``out`` cannot take the outputs (:func:`check_out`); nothing is run.
        ConfigError: an unknown ``executor``, an ``address`` without ``executor="ray"``, Ray not installed, or no
            Ray cluster answering at ``address`` (one line naming the fix); nothing is run or written.
    """
    from e4gym.errors import ConfigError

    t0 = time.perf_counter()
    if executor not in EXECUTORS:
        raise ConfigError(f"executor must be one of {list(EXECUTORS)}, got {executor!r}")
    if address is not None and executor != "ray":
        raise ConfigError("--address is the Ray cluster of --executor ray; add --executor ray or drop --address")
    if executor == "ray":
        import_ray()
        if address is not None and (_ACTIVE_SESSION is None or _ACTIVE_SESSION.address != address):
            check_ray_address(address)  # nothing answers there: one line now, not Ray's timeout after writing
    if isinstance(config, Experiment):
        exp = config
        if frames is not None or backend or seeds is not None:
            raise ConfigError("frames=, backend= and seeds= apply when the config is loaded; pass them to "
                              "load_experiment")
    else:
        exp = load_experiment(config, frames=frames, backend=backend, seeds=seeds)
    if jobs is not None and (isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1):
        raise ConfigError(f"jobs must be an integer >= 1, got {jobs!r}")
    out = Path(out)
    check_out(out, tensorboard=tensorboard, plots=plots)
    tasks = build_tasks(exp)
    stored: dict[int, dict[str, Any]] = {}  # task index -> reusable result
    quarantined: list[Path] = []
    if not force:
        stamp = f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
        for i, t in enumerate(tasks):
            data, why = check_result(out, t)
            if data is not None:
                stored[i] = data
            elif why is not None:
                dest = quarantine(out, t, stamp)
                quarantined.append(dest)
                print(f"e4gym bench: {t.describe()}: stored result damaged ({why}); moved to {dest}{os.sep}, "
                      "running it again", file=sys.stderr)
    pending = [t for i, t in enumerate(tasks) if i not in stored]
    n_jobs = min(jobs or os.cpu_count() or 1, len(pending))
    if executor == "ray" and address is not None and jobs is None:
        n_jobs = len(pending)  # a cluster: every task in flight, the cluster's resources decide
    if n_jobs > 1 and any(t.scenario.env_kwargs.get("backend", "emulated") != "emulated" for t in pending):
        # One owner per board: real-board tasks take turns (two at once would clobber each other's settings).
        if not quiet:
            print(f"e4gym bench: real-board tasks run one at a time (--jobs {jobs or n_jobs} ignored)",
                  file=sys.stderr)
        n_jobs = 1
    out.mkdir(parents=True, exist_ok=True)
    failures = (_run_pending(pending, out, n_jobs, quiet, exp.name, executor, address)
                if pending else [])

    # A task that failed now is reported as failed, not by an older result it may have left (--force).
    failed = {(f.scenario, f.label, f.seed) for f in failures}
    rows = []
    for i, t in enumerate(tasks):
        if (t.scenario.name, t.policy.label, t.seed) in failed:
            continue
        data = stored[i] if i in stored else check_result(out, t)[0]
        if data is not None:
            rows.append(data["row"])
    from e4gym.bench.report import render_report, write_tables

    report = render_report(exp, rows, failures, ran=len(pending), reused=len(tasks) - len(pending),
                           quarantined=len(quarantined))
    write_tables(out, exp, rows, failures, report)
    if tensorboard:
        from e4gym.bench.tb import write_tensorboard

        write_tensorboard(out, exp, rows)
    if plots:
        from e4gym.bench.plots import write_plots

        write_plots(out, exp, rows)
    return Results(exp, out, rows, failures, ran=len(pending), reused=len(tasks) - len(pending), report=report,
                   wall_s=time.perf_counter() - t0, quarantined=quarantined)

