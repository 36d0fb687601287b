"""``e4gym/BatchConcurrency-v0`` (BCEdge): per decision interval, each DNN service's batch size and number of
concurrent instances on one Jetson (and optionally the board's clock levels)."""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, NamedTuple

import gymnasium as gym
import numpy as np
from gymnasium import logger, spaces

from e4gym.dnn.profile import load_model_profile
from e4gym.envs.base import _tuple_new
from e4gym.envs.common import check_levels_action, flat_action
from e4gym.envs.core import CPU_HZ, EMC_HZ, ENERGY_J, GPU_HZ, POWER_W, ObsBuilder, ObsField
from e4gym.errors import ConfigError, UnknownArgumentError
from e4gym.hardware import serving as sv
from e4gym.hardware.runtime import get_runtime
from e4gym.hardware.spec import DeviceSpec, load_device
from e4gym.workload.arrivals import ArrivalProcess, make_arrivals

try:  # the clip ufunc itself (as e4gym.envs.core)
    from numpy._core.umath import clip as _clip
except ImportError:  # NumPy 1.x
    from numpy.core.umath import clip as _clip  # type: ignore[no-redef]

# ---------------------------------------------------------------------------------------------- defaults

#: The default services (issue 19): two light classifiers, a heavier one and a detector.
DEFAULT_MODELS = ("efficientnet_b0", "mobilenet_v2", "resnet18", "tiny_yolov3")
#: The default batch-size grid of the action.
DEFAULT_BATCH_SIZES = (1, 2, 4, 8, 16, 32)
#: ASSUMPTION: a model's default SLO is this multiple of its batch-1 latency alone at the power mode's top clocks
#: (BCEdge's SLO definition is not public; serving papers set SLOs a few times the solo latency).
SLO_FACTOR = 5.0
#: ASSUMPTION: a model's default mean arrival rate is this share of its capacity alone (the best batch size and
#: instance count at the top clocks, :func:`~e4gym.hardware.serving.capacity_rps`) divided by the number of
#: models: the board is about half loaded on average.
LOAD_FACTOR = 0.5
#: ASSUMPTION: Triton's ``max_queue_delay`` per model by default: this share of its SLO (ms).
QUEUE_DELAY_OF_SLO = 0.1
#: Constructor arguments that do not define the scenario (left out of :attr:`BatchSetup.env_kwargs`).
SCENARIO_EXCLUDED = ("utility", "render_mode", "backend", "backend_kwargs")
#: Serving backends: the emulator, or a real Triton server (:class:`e4gym.serving.triton.TritonServing`).
BACKENDS = ("emulated", "triton")
#: ASSUMPTION: the serving runtime by default: eager PyTorch (Triton's PyTorch backend), what the board
#: coefficients are fitted to (``runtime="tensorrt-fp16"`` is offered).
DEFAULT_RUNTIME = "pytorch"

# ---------------------------------------------------------------------------------------------- info keys

THROUGHPUT_RPS = "throughput_rps"
GOODPUT_RPS = "goodput_rps"
P99_LATENCY_MS = "p99_latency_ms"
SLO_VIOLATION_RATE = "slo_violation_rate"
ENERGY_PER_REQUEST_J = "energy_per_request_j"
MEMORY_GB = "memory_gb"
REFUSED = "refused"
GPU_UTIL = "gpu_util"
ARRIVED = "arrived"
COMPLETED = "completed"
VIOLATIONS = "violations"
QUEUED = "queued"
INTERVAL = "interval"
BATCH_SIZE = "batch_size"
INSTANCES = "instances"
REWARD_THROUGHPUT = "reward_throughput"
REWARD_LATENCY = "reward_latency"
REWARD_VIOLATION = "reward_violation"
REWARD_ENERGY = "reward_energy"
REWARD_MEMORY = "reward_memory"

#: ``info`` keys of every step of the batching env (NumPy scalars), with their meaning. Each covers the interval
#: the step served.
BATCH_INFO_KEYS: dict[str, str] = {
    THROUGHPUT_RPS: "requests completed in the interval / interval (req/s), every model",
    GOODPUT_RPS: "requests completed within their SLO in the interval / interval (req/s)",
    P99_LATENCY_MS: "99th percentile (nearest rank) of the latencies of the requests completed in the interval, "
                    "arrival to result, queueing included (ms; 0 when none completed)",
    SLO_VIOLATION_RATE: "share of the requests resolved in the interval that violated their SLO: a request resolves "
                        "when it completes on time or when its deadline passes unserved (0 when none resolved)",
    ENERGY_J: "board energy over the interval (J)",
    ENERGY_PER_REQUEST_J: "energy_j / requests completed (J; energy_j when none completed)",
    POWER_W: "average board power over the interval (W)",
    MEMORY_GB: "memory the model instances hold in the configuration served (GB)",
    REFUSED: "the action's configuration needed more memory than the board has: it was refused and the previous "
             "configuration served the interval",
    GPU_UTIL: "share of the GPU's throughput used, time-averaged (0..1; the contention model's max(Σ u_gpu, "
              "Σ u_mem) / s)",
    ARRIVED: "requests that arrived in the interval",
    COMPLETED: "requests completed in the interval",
    VIOLATIONS: "requests that violated their SLO in the interval (completed late, or still unserved when their "
                "deadline passed)",
    QUEUED: "requests waiting (arrived, not yet in a batch) at the end of the interval",
    INTERVAL: "decision interval served (0-based)",
    CPU_HZ: "CPU clock during the interval (Hz)",
    GPU_HZ: "GPU clock during the interval (Hz)",
    EMC_HZ: "memory (EMC) clock during the interval (Hz)",
    REWARD_MEMORY: "the memory penalty: -memory_penalty when refused, else 0",
}
#: Per-model info keys: ``<key>/<model>`` (e.g. ``throughput_rps/resnet18``; grouped by "/" as SB3's logger
#: keys are), with the meaning of :data:`BATCH_INFO_KEYS` restricted to the model, plus its configuration.
PER_MODEL_INFO_KEYS: dict[str, str] = {
    THROUGHPUT_RPS: "the model's completed requests / interval (req/s)",
    P99_LATENCY_MS: "the model's p99 latency over its requests completed in the interval (ms)",
    SLO_VIOLATION_RATE: "the model's share of SLO violations among its resolved requests",
    QUEUED: "the model's waiting requests at the end of the interval",
    BATCH_SIZE: "the model's batch size in the interval",
    INSTANCES: "the model's instance count in the interval",
}
#: The default utility's term keys (in ``info``).
UTILITY_TERMS = (REWARD_THROUGHPUT, REWARD_LATENCY, REWARD_VIOLATION, REWARD_ENERGY)


def model_key(key: str, model: str) -> str:
    """The per-model info key ``<key>/<model>``."""
    return f"{key}/{model}"


# ---------------------------------------------------------------------------------------------- utility


class BatchOutcome(NamedTuple):
    """What an interval produced, as a utility sees it. Per-model fields are sequences of M floats.

    Attributes:
        throughput_rps: requests completed / interval (req/s). goodput_rps: those within their SLO (req/s).
        p99_latency_s: p99 latency of the completed requests (s; 0 when none). violation_rate: SLO violations /
        resolved requests (0..1). rate_ref_rps: the model's mean arrival rate (req/s). slo_s: its SLO (s).
        energy_j: board energy (J). interval_s: the interval (s). power_ref_w: the reference power (W; the top
        clocks running the first model's batch 1 alone). memory_gb: memory held (GB). refused: the action was
        refused for memory.
    """

    throughput_rps: Sequence[float]
    goodput_rps: Sequence[float]
    p99_latency_s: Sequence[float]
    violation_rate: Sequence[float]
    rate_ref_rps: Sequence[float]
    slo_s: Sequence[float]
    energy_j: float
    interval_s: float
    power_ref_w: float
    memory_gb: float
    refused: bool


#: A utility: ``(outcome) -> (reward, terms)``; ``terms`` maps names to floats and goes into info.
UtilityFn = Callable[[BatchOutcome], tuple[float, dict[str, float]]]


@dataclass(frozen=True)
class BCEdgeUtility:
    """The default utility (ASSUMPTION: BCEdge's formula is not public), a mean over the M models minus energy:

    ``U = (1/M) Σ_m [ w_T · min(X_m / λ_m, 10) − w_L · min(p99_m / SLO_m, 10) − w_V · v_m ] − w_E · E / (P_ref · T)``

    ``X_m`` the model's throughput and ``λ_m`` its mean arrival rate (the throughput term is about 1 when the
    model keeps up), ``p99_m / SLO_m`` its tail latency against its SLO (the latency that batching buys
    throughput with), ``v_m`` its SLO-violation share, ``E`` the interval's energy against the reference power
    ``P_ref`` over the interval ``T``. Each term is O(1). ``energy`` is 0 by default (BCEdge's utility has no
    energy); the env sets it to 1 when the agent controls the clocks. The memory penalty is the env's.
    """

    throughput: float = 1.0
    latency: float = 0.5
    violation: float = 1.0
    energy: float = 0.0

    #: The keys of the terms it returns.
    terms = UTILITY_TERMS

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not (math.isfinite(v) and v >= 0):
                raise ConfigError(f"BCEdgeUtility weight '{f.name}' must be a finite number >= 0, got {v!r}")

    def __call__(self, o: BatchOutcome) -> tuple[float, dict[str, float]]:
        """Reward and its terms for an outcome."""
        thr = lat = 0.0
        for x, ref, p99, slo in zip(o.throughput_rps, o.rate_ref_rps, o.p99_latency_s, o.slo_s):
            x /= ref
            thr += x if x < 10.0 else 10.0
            p99 /= slo
            lat += p99 if p99 < 10.0 else 10.0
        vio = sum(o.violation_rate)
        k = 1.0 / len(o.slo_s)
        r_t, r_l, r_v = self.throughput * thr * k, -self.latency * lat * k, -self.violation * vio * k
        r_e = -self.energy * o.energy_j / (o.power_ref_w * o.interval_s) if self.energy else 0.0
        return r_t + r_l + r_v + r_e, {REWARD_THROUGHPUT: r_t, REWARD_LATENCY: r_l, REWARD_VIOLATION: r_v,
                                       REWARD_ENERGY: r_e}


# ---------------------------------------------------------------------------------------------- what a controller knows


@dataclass(frozen=True)
class BatchSetup:
    """What a controller of the serving board knows (``PolicyContext.setup`` for the batching env).

    Attributes:
        spec: the board (level tables in Hz). models: the services, in action order. batch_sizes: the batch-size
        grid. max_instances: the instance counts are 1..max_instances. slo_s: each model's SLO (s). rate_ref_rps:
        each model's nominal mean arrival rate (req/s; the service's provisioned load, not the future).
        interval_s: the decision interval (s). episode_intervals: intervals per episode. max_queue_delay_s: each
        model's dynamic-batching wait bound (s). usable_memory_gb: memory the instances may use (GB).
        memory_gb: memory of ``n + 1`` instances of model ``m`` at batch index ``b``, ``memory_gb[m][b][n]`` (GB;
        on a board: measured by loading each model once per batch size). control_clocks: the action carries the
        clock levels. max_levels: the highest CPU, GPU, EMC levels of the power mode.
        env_kwargs: the scenario's constructor arguments (device, models, rates, arrivals, SLOs, interval, ...;
        not the utility, the backend or the render mode): what builds the same scenario again (a policy's sweep
        on calibration seeds, a trained agent's env).
    """

    spec: DeviceSpec
    models: tuple[str, ...]
    batch_sizes: tuple[int, ...]
    max_instances: int
    slo_s: tuple[float, ...]
    rate_ref_rps: tuple[float, ...]
    interval_s: float
    episode_intervals: int
    max_queue_delay_s: tuple[float, ...]
    usable_memory_gb: float
    memory_gb: tuple[tuple[tuple[float, ...], ...], ...]
    control_clocks: bool
    max_levels: tuple[int, int, int]
    env_kwargs: dict[str, Any] = field(default_factory=dict)

    def scenario_kwargs(self) -> dict[str, Any]:
        """Keyword arguments that build this scenario's env again (:attr:`env_kwargs`)."""
        return dict(self.env_kwargs)

    def config_memory_gb(self, config: Sequence[int]) -> float:
        """Memory (GB) of a configuration ``[batch index, instances − 1] * M``."""
        return sum(self.memory_gb[m][int(config[2 * m])][int(config[2 * m + 1])] for m in range(len(self.models)))


@dataclass(frozen=True)
class BatchCostModel:
    """Batch latencies as a controller measures them (profiling runs of each model alone): the solo latency of a
    batch of ``k`` requests of a model at a clock setting. The emulated serving has no noise, so this is its
    table; on a board it is measured.

    Attributes:
        spec: the board. tables: the serving cost tables (latency row only is read here). top_levels: the power
        mode's highest levels.
    """

    spec: DeviceSpec
    tables: sv.ServingTables
    top_levels: tuple[int, int, int]

    def latency_s(self, model: int, batch: int, levels: tuple[int, int, int] | None = None) -> float:
        """Solo latency (s) of a batch of ``batch`` requests of model index ``model`` at ``levels`` (default: the
        power mode's top levels)."""
        lv = self.top_levels if levels is None else levels
        return sv.solo_latency_s(self.tables, int(self.spec.flat_index(lv)), int(model), int(batch))


# ---------------------------------------------------------------------------------------------- options


@dataclass(frozen=True)
class BatchConcurrencyOptions:
    """The batching env's arguments (see :class:`BatchConcurrencyEnv`'s "Arguments")."""

    device: Any = "xavier-nx"
    models: Sequence[str] = DEFAULT_MODELS
    slo_ms: Any = None
    rates_rps: Any = None
    arrivals: Any = "poisson"
    interval_ms: float = 1000.0
    episode_intervals: int = 60
    batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES
    max_instances: int = 4
    control_clocks: bool = False
    utility: UtilityFn | None = None
    memory_penalty: float = 1.0
    max_queue_delay_ms: float | None = None
    power_mode: str | None = None
    runtime: str = DEFAULT_RUNTIME
    render_mode: str | None = None
    backend: str = "emulated"
    backend_kwargs: dict[str, Any] | None = None

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The argument names."""
        return tuple(f.name for f in fields(cls))


def _plain(value: Any) -> Any:
    """A constructor argument as plain data (sequences as lists, a device spec as its name)."""
    if isinstance(value, DeviceSpec):
        return value.name
    if isinstance(value, (tuple, list, np.ndarray)):
        return [_plain(v) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value.item() if isinstance(value, np.generic) else value


def _number(value: object) -> float:
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))
    return float(value) if ok else math.nan  # type: ignore[arg-type]


def _per_model(value: object, name: str, n: int, unit: str, *, allow_zero: bool = False) -> tuple[float, ...]:
    """One positive number per model from a number (all models) or a sequence of ``n``; one-line ConfigError."""
    vals = [value] * n if not isinstance(value, (Sequence, np.ndarray)) or isinstance(value, str) else list(value)
    xs = [_number(v) for v in vals]
    if len(xs) != n or not all(math.isfinite(x) and (x >= 0 if allow_zero else x > 0) for x in xs):
        raise ConfigError(f"{name} must be a number {'>= 0' if allow_zero else '> 0'} ({unit}) or one per model "
                          f"({n}), got {value!r}")
    return tuple(xs)


def _int_in(value: object, name: str, lo: int, hi: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or not lo <= value <= hi:
        raise ConfigError(f"{name} must be an integer in {lo}..{hi}, got {value!r}")
    return int(value)


def _check(o: BatchConcurrencyOptions) -> BatchConcurrencyOptions:
    """Validate the arguments that need no device or model; one-line :class:`ConfigError` naming the value and fix."""
    if not isinstance(o.device, (str, os.PathLike, DeviceSpec)):
        raise ConfigError(f"device must be a device name (configs/devices), a YAML path or a DeviceSpec, got "
                          f"{o.device!r}")
    models = o.models
    if isinstance(models, str) or not isinstance(models, (Sequence, np.ndarray)) or len(models) == 0 or not all(
            isinstance(m, str) for m in models):
        raise ConfigError(f"models must be a non-empty list of model names (configs/models), got {models!r}")
    if len(set(models)) != len(models):
        raise ConfigError(f"models must name each model once, got {list(models)}")
    bs = o.batch_sizes
    if isinstance(bs, str) or not isinstance(bs, (Sequence, np.ndarray)) or len(bs) == 0 or not all(
            isinstance(b, (int, np.integer)) and not isinstance(b, (bool, np.bool_)) and 1 <= b <= 256 for b in bs):
        raise ConfigError(f"batch_sizes must be a non-empty list of integers in 1..256 (a batch holds at least one "
                          f"request), got {bs!r}")
    if any(b2 <= b1 for b1, b2 in itertools.pairwise(bs)):
        raise ConfigError(f"batch_sizes must increase strictly, got {list(bs)}")
    interval = _number(o.interval_ms)
    if not (math.isfinite(interval) and 1.0 <= interval <= 3.6e6):
        raise ConfigError(f"interval_ms must be a decision interval in 1..3600000 ms, got {o.interval_ms!r}")
    _int_in(o.episode_intervals, "episode_intervals", 1, 10**7)
    _int_in(o.max_instances, "max_instances", 1, 64)
    if not isinstance(o.control_clocks, (bool, np.bool_)):
        raise ConfigError(f"control_clocks must be True or False, got {o.control_clocks!r}")
    if o.utility is not None and not callable(o.utility):
        raise ConfigError(f"utility must be a callable (outcome) -> (reward, terms), got {o.utility!r}")
    pen = _number(o.memory_penalty)
    if not (math.isfinite(pen) and pen >= 0):
        raise ConfigError(f"memory_penalty must be a finite number >= 0, got {o.memory_penalty!r}")
    if o.max_queue_delay_ms is not None:
        d = _number(o.max_queue_delay_ms)
        if not (math.isfinite(d) and 0 <= d <= 3.6e6):
            raise ConfigError(f"max_queue_delay_ms must be a time in 0..3600000 ms (or None: a tenth of each SLO), "
                              f"got {o.max_queue_delay_ms!r}")
    if o.backend not in BACKENDS:
        raise ConfigError(f"backend must be one of {list(BACKENDS)} (the emulator, or a real Triton server: make "
                          f"triton-env), got {o.backend!r}")
    if o.backend == "triton" and o.control_clocks:
        raise ConfigError("control_clocks needs the emulated backend: the Triton backend serves on this machine's own "
                          "clocks (drop control_clocks, or use backend='emulated')")
    if o.backend_kwargs is not None and (o.backend == "emulated" or not isinstance(o.backend_kwargs, Mapping)):
        raise ConfigError(f"backend_kwargs apply to backend='triton' (a mapping of TritonBackend arguments, e.g. "
                          f"{{'input_shape': [3, 64, 64]}}), got {o.backend_kwargs!r} with backend={o.backend!r}")
    if o.power_mode is not None and not isinstance(o.power_mode, str):
        raise ConfigError(f"power_mode must be a power mode's name or None, got {o.power_mode!r}")
    return o


# ---------------------------------------------------------------------------------------------- the env


class BatchConcurrencyEnv(gym.Env):
    """Choose, every decision interval, each DNN service's batch size and number of concurrent instances (BCEdge).

    ## Description

    M models (default EfficientNet-B0, MobileNet-V2, ResNet-18, tiny-YOLOv3) serve requests on one emulated
    Jetson, as an inference server (Triton) would: each model has a FIFO queue, ``instances`` copies of the model
    each running one batch at a time, and dynamic batching up to the batch size with a bounded wait. Requests
    arrive by a drifting Poisson process, a bursty MMPP or a user's CSV log (:mod:`e4gym.workload.arrivals`),
    each with its model's SLO. Batch latency comes from the project's cost model at batch ``k`` and the current
    clocks, stretched when concurrent batches (of any model) contend for the GPU, DRAM and CPU; energy from the
    emulator's power model; memory from the models' bytes (:mod:`e4gym.hardware.serving` states the model and
    its assumptions). With ``control_clocks=True`` the agent also sets the CPU, GPU and memory clock levels
    (batching **with** DVFS); otherwise the clocks stay at the power mode's top levels.

    ## Action Space

    ``MultiDiscrete([n_batch, max_instances] * M (+ [n_cpu, n_gpu, n_emc]))``: per model (in ``models`` order)
    the index into ``env.unwrapped.batch_sizes`` and the instance count minus one (index ``i``: ``i + 1``
    instances); then, with ``control_clocks``, the clock levels (up to the power mode's caps). An action whose
    instances need more memory than the board has is **refused**, as the board would fail to load it: the previous
    configuration serves the interval (the action's clock levels still apply), ``info["refused"]`` is True and the
    reward loses ``memory_penalty``. An action outside the space raises :class:`~e4gym.errors.SettingError`.

    ## Observation Space

    ``Box`` of ``7·M + 3`` (``+ 3`` with ``control_clocks``) float32 values, clipped, in this order
    (``env.unwrapped.obs_names``; :meth:`obs_table` gives the full table). Per model ``<m>``, in ``models`` order:

    | name | range | meaning |
    |---|---|---|
    | `<m>_queue` | [0, 10] | waiting requests / (mean rate · interval) |
    | `<m>_arrival_rate` | [0, 10] | arrival rate over the last interval / mean rate |
    | `<m>_latency` | [0, 10] | p99 latency over the last interval / SLO (0: none completed) |
    | `<m>_violations` | [0, 1] | SLO-violation share over the last interval |
    | `<m>_oldest_wait` | [0, 10] | the oldest waiting request's wait / SLO |
    | `<m>_batch` | [0, 1] | batch-size index / (n_batch − 1) |
    | `<m>_instances` | [0, 1] | (instances − 1) / (max_instances − 1) |

    then the board:

    | name | range | meaning |
    |---|---|---|
    | `gpu_util` | [0, 1] | share of the GPU's throughput used over the last interval |
    | `memory` | [0, 1] | memory the instances hold / memory usable by them |
    | `power` | [0, 3] | average board power over the last interval / reference power |
    | `cpu_level`, `gpu_level`, `emc_level` | [0, 1] | with ``control_clocks``: level / highest allowed level |

    ## Rewards

    ``utility(outcome)`` (:class:`BatchOutcome`; default :class:`BCEdgeUtility`, throughput against latency and
    SLO violations, energy too when the clocks are controlled) minus ``memory_penalty`` when the action was
    refused. The terms go into ``info`` (:data:`UTILITY_TERMS`, ``reward_memory``).

    ## Starting State

    Empty queues, every model at the smallest batch size with one instance, top clocks; the episode's arrivals
    are drawn from ``np_random`` at reset.

    ## Episode End

    Truncation after ``episode_intervals`` intervals; no termination.

    ## Info

    :data:`BATCH_INFO_KEYS` and, per model, :data:`PER_MODEL_INFO_KEYS` as ``<key>/<model>``
    (:func:`model_key`), plus the utility's terms. Values are NumPy scalars.

    ## Arguments

    - ``device``: a board of ``configs/devices`` (needs ``memory_gb``), default ``"xavier-nx"``.
    - ``models``: model names of ``configs/models`` (default :data:`DEFAULT_MODELS`).
    - ``slo_ms``: per-model SLO (ms, > 0), a number for all or one per model; default :data:`SLO_FACTOR` × the
      model's batch-1 latency alone at the top clocks.
    - ``rates_rps``: per-model mean arrival rate (req/s, > 0); default :data:`LOAD_FACTOR` × its capacity / M.
    - ``arrivals``: ``"poisson"`` (drifting rate), ``"poisson-constant"``, ``"bursty"`` or a CSV path
      (``time_s,model`` per request; its own rates, so no ``rates_rps``).
    - ``interval_ms`` (default 1000), ``episode_intervals`` (default 60), ``batch_sizes`` (default 1..32 in
      powers of 2), ``max_instances`` (default 4), ``control_clocks`` (default False).
    - ``utility``: a callable ``(BatchOutcome) -> (reward, terms)``; ``memory_penalty`` (default 1.0).
    - ``max_queue_delay_ms``: the dynamic batcher's bounded wait (default :data:`QUEUE_DELAY_OF_SLO` × SLO).
    - ``power_mode`` (the device's default), ``runtime`` (default :data:`DEFAULT_RUNTIME`), ``render_mode``
      (``"ansi"``).
    - ``backend``: ``"emulated"`` (default) or ``"triton"``: the intervals are served by a real Triton Inference
      Server on this machine (:class:`e4gym.serving.triton.TritonServing`; ``make triton-env``; docs/serving.md),
      the env's models as its networks, each action's batch sizes and instances as Triton's dynamic batching and
      instance counts, the arrivals sent at their times; ``backend_kwargs``: :class:`~e4gym.serving.triton.
      TritonBackend`'s arguments (e.g. ``input_shape``, ``power``). Not deterministic (a real server's timing);
      the memory refusals stay the model's; ``close()`` stops the server.

    Raises :class:`~e4gym.errors.ConfigError` (one line) on bad input, including a configuration that cannot
    fit at all: the starting one, or ``max_instances`` instances of the smallest model at the smallest batch.

    ## Version History

    - v0: initial version (issue 19).
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi"], "render_fps": 1}
    #: The env family (the benchmark harness counts its episodes by decision interval, not by frame).
    family: ClassVar[str] = "serving"
    #: The arguments it takes (:class:`BatchConcurrencyOptions`).
    OPTIONS: ClassVar[tuple[str, ...]] = BatchConcurrencyOptions.names()

    def __init__(self, options: BatchConcurrencyOptions | None = None, /, **kwargs: Any) -> None:
        if options is None:
            unknown = [k for k in kwargs if k not in self.OPTIONS]
            if unknown:
                raise UnknownArgumentError(f"got an unexpected keyword argument {unknown[0]!r}; the batching env's "
                                           f"arguments are {list(self.OPTIONS)}")
            options = BatchConcurrencyOptions(**kwargs)
        elif kwargs:
            raise ConfigError("pass BatchConcurrencyOptions or keyword arguments to the env, not both")
        self.options = o = _check(options)
        modes = self.metadata["render_modes"]
        if o.render_mode is not None and o.render_mode not in modes:
            logger.warn(f"render_mode={o.render_mode!r} is not supported by {type(self).__name__} "
                        f"(render_modes: {modes}); render() returns None")
        self.render_mode = o.render_mode if o.render_mode in modes else None
        self.device_spec: DeviceSpec = load_device(o.device)
        spec = self.device_spec
        self.usable_memory_gb = sv.usable_memory_gb(spec)
        get_runtime(o.runtime, spec)  # an unknown runtime: UnknownNameError listing them
        self.models: tuple[str, ...] = tuple(o.models)
        M = self.n_models = len(self.models)
        self.batch_sizes: tuple[int, ...] = tuple(int(b) for b in o.batch_sizes)
        self.max_instances = int(o.max_instances)
        self.interval_s = float(o.interval_ms) * 1e-3
        self.episode_intervals = int(o.episode_intervals)
        profiles = [load_model_profile(m) for m in self.models]
        self.tables = t = sv.serving_tables(spec, profiles, o.runtime, self.batch_sizes[-1], o.power_mode)
        mx = self.max_levels = spec.max_levels(o.power_mode)
        self._top = int(spec.flat_index(mx))
        # SLOs, rates and the reference power, at the top clocks
        if o.slo_ms is None:
            self.slo_s = tuple(SLO_FACTOR * sv.solo_latency_s(t, self._top, m) for m in range(M))
        else:
            self.slo_s = tuple(x * 1e-3 for x in _per_model(o.slo_ms, "slo_ms", M, "ms"))
        rates = None if o.rates_rps is None else _per_model(o.rates_rps, "rates_rps", M, "requests/s")
        if rates is None and isinstance(o.arrivals, str) and not o.arrivals.lower().endswith(".csv"):
            rates = tuple(LOAD_FACTOR * sv.capacity_rps(t, self._top, m, self.batch_sizes, self.max_instances) / M
                          for m in range(M))
        self.arrivals: ArrivalProcess = make_arrivals(o.arrivals, self.models, rates)
        self.rate_ref_rps = tuple(max(r, 1e-9) for r in self.arrivals.mean_rates_rps)
        delay = None if o.max_queue_delay_ms is None else float(o.max_queue_delay_ms) * 1e-3
        self.max_queue_delay_s = tuple(QUEUE_DELAY_OF_SLO * s if delay is None else delay for s in self.slo_s)
        self.power_ref_w = sv.solo_power_w(t, self._top, 0)
        # Memory of every (model, batch index, instance count) (GB): the refusals look it up
        self._mem = [[[n * sv.instance_memory_gb(p, b) for n in range(1, self.max_instances + 1)]
                      for b in self.batch_sizes] for p in t.profiles]
        start = sum(self._mem[m][0][0] for m in range(M))
        if start > self.usable_memory_gb:
            raise ConfigError(f"the starting configuration (batch {self.batch_sizes[0]}, 1 instance per model) needs "
                              f"{start:.2f} GB, more than the {self.usable_memory_gb:.2f} GB usable on {spec.name}; "
                              "serve fewer models or use a larger board")
        least = min(self._mem[m][0][-1] for m in range(M))
        if least > self.usable_memory_gb:
            raise ConfigError(f"max_instances={self.max_instances} cannot fit: that many instances of the smallest "
                              f"model need {least:.2f} GB, more than the {self.usable_memory_gb:.2f} GB usable on "
                              f"{spec.name}; lower max_instances")
        self.utility: UtilityFn = o.utility or BCEdgeUtility(energy=1.0 if o.control_clocks else 0.0)
        self.memory_penalty = float(o.memory_penalty)
        self.control_clocks = bool(o.control_clocks)
        # spaces
        nb, ni = len(self.batch_sizes), self.max_instances
        nvec = [nb, ni] * M + ([mx[0] + 1, mx[1] + 1, mx[2] + 1] if self.control_clocks else [])
        self._nvec = tuple(nvec)
        self.action_names: tuple[str, ...] = tuple(
            n for m in self.models for n in (f"{m}_batch", f"{m}_instances")) + (
            ("cpu_level", "gpu_level", "emc_level") if self.control_clocks else ())
        self.action_space = spaces.MultiDiscrete(np.array(nvec, dtype=np.int64))
        self.obs_fields = self._obs_fields()
        self._obs_builder = ObsBuilder(self.obs_fields)
        self.obs_names = self._obs_builder.names
        self.observation_space = self._obs_builder.space()
        self._low, self._high = self._obs_builder.low, self._obs_builder.high
        self.server: Any = sv.Server(M, self.max_instances, t.cores)
        if o.backend == "triton":
            from e4gym.serving.triton import TritonBackend, TritonServing

            self.server = TritonServing(self.models, TritonBackend(**dict(o.backend_kwargs or {})))
        self._par = np.zeros((M, 4))
        self._par[:, 2] = self.max_queue_delay_s
        self._par[:, 3] = self.slo_s
        self._freqs = tuple(tuple(np.float64(f) for f in tab) for tab in (spec.cpu_freqs_hz, spec.gpu_freqs_hz,
                                                                           spec.emc_freqs_hz))
        self._k: int | None = None
        self._batch_np = tuple(np.int64(b) for b in self.batch_sizes)
        self._inst_np = tuple(np.int64(n + 1) for n in range(ni))
        self._cfg_keys = tuple((model_key(BATCH_SIZE, m), model_key(INSTANCES, m)) for m in self.models)
        self._inv_nb = 1.0 / (nb - 1) if nb > 1 else 0.0
        self._inv_ni = 1.0 / (ni - 1) if ni > 1 else 0.0
        self._inv_max = tuple(1.0 / x if x else 0.0 for x in mx)
        self._gathers()
        #: What a controller knows (:class:`BatchSetup`; ``PolicyContext.setup``).
        self.setup = BatchSetup(
            spec=spec, models=self.models, batch_sizes=self.batch_sizes, max_instances=self.max_instances,
            slo_s=tuple(self.slo_s), rate_ref_rps=tuple(self.rate_ref_rps), interval_s=self.interval_s,
            episode_intervals=self.episode_intervals, max_queue_delay_s=tuple(self.max_queue_delay_s),
            usable_memory_gb=float(self.usable_memory_gb),
            memory_gb=tuple(tuple(tuple(float(x) for x in row) for row in per) for per in self._mem),
            control_clocks=self.control_clocks, max_levels=tuple(int(x) for x in mx),
            env_kwargs={f.name: _plain(getattr(o, f.name)) for f in fields(o) if f.name not in SCENARIO_EXCLUDED})

    def cost_model(self) -> BatchCostModel:
        """Batch latencies as profiling runs measure them (:class:`BatchCostModel`)."""
        return BatchCostModel(self.device_spec, self.tables, tuple(int(x) for x in self.max_levels))

    def _gathers(self) -> None:
        """Where the observation and the info read the server's output (flat indices into ``server.out``) and
        how they scale it: a step is then a few NumPy calls, not a loop per model."""
        M, W, T = self.n_models, sv.STATS_WIDTH, self.interval_s
        board = M * W
        S, Bd = sv.MODEL_STATS.index, sv.BOARD_STATS.index
        idx: list[int] = []
        scale: list[float] = []
        for m in range(M):
            inv_ref, inv_slo = 1.0 / (self.rate_ref_rps[m] * T), 1.0 / self.slo_s[m]
            for col, k in (("queue", inv_ref), ("arrived", inv_ref), ("p99_s", inv_slo), ("violation_rate", 1.0),
                           ("oldest_wait_s", inv_slo), ("queue", 0.0), ("queue", 0.0)):  # the last two: config
                idx.append(m * W + S(col))
                scale.append(k)
        # (the placeholders, scale 0, gather a count that is always finite: a backend may leave the energy NaN)
        hold = board + Bd("completed")
        idx += [board + Bd("gpu_util"), hold, board + Bd("power_w")]
        scale += [1.0, 0.0, 1.0 / self.power_ref_w]
        n_clock = 3 if self.control_clocks else 0
        idx += [hold] * n_clock
        scale += [0.0] * n_clock
        self._obs_idx, self._obs_scale = np.array(idx, dtype=np.intp), np.array(scale)
        #: the observation's values that are not statistics (configuration, memory, clocks), added to the gather
        self._obs_offset = np.zeros(len(idx))
        self._low64, self._high64 = self._low.astype(np.float64), self._high.astype(np.float64)
        f_keys = [THROUGHPUT_RPS, GOODPUT_RPS, P99_LATENCY_MS, SLO_VIOLATION_RATE, ENERGY_J, ENERGY_PER_REQUEST_J,
                  POWER_W, GPU_UTIL]
        f_idx = [board + Bd(c) for c in ("throughput_rps", "goodput_rps", "p99_s", "violation_rate", "energy_j",
                                         "energy_per_request_j", "power_w", "gpu_util")]
        f_scale = [1.0, 1.0, 1e3, 1.0, 1.0, 1.0, 1.0, 1.0]
        for m, name in enumerate(self.models):
            for key, col, k in ((THROUGHPUT_RPS, "throughput_rps", 1.0), (P99_LATENCY_MS, "p99_s", 1e3),
                                (SLO_VIOLATION_RATE, "violation_rate", 1.0)):
                f_keys.append(model_key(key, name))
                f_idx.append(m * W + S(col))
                f_scale.append(k)
        self._f_keys, self._f_idx, self._f_scale = tuple(f_keys), np.array(f_idx, dtype=np.intp), np.array(f_scale)
        i_keys = [ARRIVED, COMPLETED, VIOLATIONS, QUEUED, *(model_key(QUEUED, m) for m in self.models)]
        i_idx = [board + Bd("arrived"), board + Bd("completed"), board + Bd("violations"), board + Bd("queue"),
                 *(m * W + S("queue") for m in range(M))]
        self._i_keys, self._i_idx = tuple(i_keys), np.array(i_idx, dtype=np.intp)
        self._outcome_cols = tuple(S(c) for c in ("throughput_rps", "goodput_rps", "p99_s", "violation_rate"))
        self._interval_ints = tuple(np.int64(k) for k in range(-1, min(self.episode_intervals, 10**5)))

    def _obs_fields(self) -> list[ObsField]:
        fields_: list[ObsField] = []
        for m in self.models:
            fields_ += [
                ObsField(f"{m}_queue", 0.0, 10.0, f"{m}: waiting requests / (mean rate · interval)"),
                ObsField(f"{m}_arrival_rate", 0.0, 10.0, f"{m}: arrival rate over the last interval / mean rate"),
                ObsField(f"{m}_latency", 0.0, 10.0, f"{m}: p99 latency over the last interval / SLO (0: none done)"),
                ObsField(f"{m}_violations", 0.0, 1.0, f"{m}: SLO-violation share over the last interval"),
                ObsField(f"{m}_oldest_wait", 0.0, 10.0, f"{m}: the oldest waiting request's wait / SLO"),
                ObsField(f"{m}_batch", 0.0, 1.0, f"{m}: batch-size index / (n_batch − 1)"),
                ObsField(f"{m}_instances", 0.0, 1.0, f"{m}: (instances − 1) / (max_instances − 1)"),
            ]
        fields_ += [
            ObsField("gpu_util", 0.0, 1.0, "share of the GPU's throughput used over the last interval"),
            ObsField("memory", 0.0, 1.0, "memory the instances hold / memory usable by them"),
            ObsField("power", 0.0, 3.0, "average board power over the last interval / reference power"),
        ]
        if self.control_clocks:
            fields_ += [ObsField(f"{d}_level", 0.0, 1.0, f"current {d.upper()} level / highest allowed level")
                        for d in ("cpu", "gpu", "emc")]
        return fields_

    def obs_table(self) -> str:
        """The observation's fields as a Markdown table."""
        return self._obs_builder.table()

    # ------------------------------------------------------------------------------------------ gym API

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        """Start an episode: draw its arrivals from ``np_random``; empty queues, the starting configuration."""
        super().reset(seed=seed)
        duration = self.episode_intervals * self.interval_s
        self.server.reset(self.arrivals.generate(self.np_random, duration))
        self._set_levels(tuple(self.max_levels))
        self._set_config([0, 0] * self.n_models)
        self._k = 0
        # the board idles until the first batch
        self.server.out[-1, sv.BOARD_STATS.index("power_w")] = self.tables.floor_w[self._idx]
        info = self._info(False, 0.0, -1)
        for k in getattr(self.utility, "terms", ()):
            info[k] = np.float64(0.0)
        return self._observe(), info

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Serve one decision interval with ``action`` (see the class docstring's Action Space)."""
        if self._k is None:
            raise gym.error.ResetNeeded("call reset() before step()")
        vals = action.tolist() if type(action) is np.ndarray else action
        nvec = self._nvec
        ok = False
        try:
            if len(vals) == len(nvec):
                ok = True
                for v, n in zip(vals, nvec):
                    if type(v) is not int or not 0 <= v < n:
                        ok = False
                        break
        except TypeError:  # not a sequence: the checks below say what it is
            pass
        if not ok:
            flat = flat_action(action, nvec, self.action_names)
            check_levels_action(flat, nvec, self.action_names, action)  # raises with details
            vals = [int(v) for v in flat]
        M = self.n_models
        cfg = vals[: 2 * M]
        refused = False
        if self.control_clocks:
            lv = (vals[2 * M], vals[2 * M + 1], vals[2 * M + 2])
            if lv != self._levels:
                self._set_levels(lv)
        if cfg != self._cfg:
            mem = self._memory(cfg)
            if mem > self.usable_memory_gb:
                refused = True
            else:
                self._set_config(cfg, mem)
        k = self._k
        out = self.server.advance((k + 1) * self.interval_s)
        cols = out[:M].T.tolist()
        c = self._outcome_cols
        energy = float(out[M, 0])
        outcome = _tuple_new(BatchOutcome, (cols[c[0]], cols[c[1]], cols[c[2]], cols[c[3]], self.rate_ref_rps,
                                            self.slo_s, energy, self.interval_s, self.power_ref_w, self._mem_gb,
                                            refused))
        reward, terms = self.utility(outcome)
        pen = -self.memory_penalty if refused else 0.0
        self._k = k + 1
        info = self._info(refused, pen, k)
        for key, v in terms.items():
            info[key] = np.float64(v)
        return self._observe(), float(reward) + pen, False, k + 1 >= self.episode_intervals, info

    def close(self) -> None:
        """Stop the Triton server with ``backend="triton"`` (nothing to do on the emulator)."""
        closer = getattr(self.server, "close", None)
        if callable(closer):
            closer()

    def render(self) -> str | None:
        """``ansi``: one line describing the last interval and the configuration."""
        if self.render_mode != "ansi":
            return None
        if self._k is None:
            raise gym.error.ResetNeeded("call reset() before render()")
        out = self.server.out
        cfg = ", ".join(f"{m} B={self.batch_sizes[self._cfg[2 * i]]}×{self._cfg[2 * i + 1] + 1}"
                        for i, m in enumerate(self.models))
        done = out[:-1, 0].sum()
        return (f"interval {self._k}: {done / self.interval_s:.1f} req/s, p99 {out[-1, 2] * 1e3:.1f} ms, "
                f"energy {out[-1, 0]:.2f} J, memory {self._mem_gb:.2f}/{self.usable_memory_gb:.2f} GB, "
                f"levels {self._levels}; {cfg}")

    # ------------------------------------------------------------------------------------------ helpers

    def _memory(self, cfg: list[int]) -> float:
        """Memory (GB) of a configuration ``[batch index, instances − 1] * M``."""
        mem = self._mem
        total = 0.0
        for m in range(self.n_models):
            total += mem[m][cfg[2 * m]][cfg[2 * m + 1]]
        return total

    def memory_gb(self, action: Any) -> float:
        """Memory (GB) the configuration of ``action`` needs (its first 2·M components)."""
        flat = [int(v) for v in flat_action(action, self._nvec, self.action_names)]
        check_levels_action(flat, self._nvec, self.action_names, action)
        return self._memory(flat[: 2 * self.n_models])

    def _set_config(self, cfg: list[int], mem_gb: float | None = None) -> None:
        """Serve with configuration ``cfg`` (``[batch index, instances − 1] * M``, memory ``mem_gb``) from now on."""
        self._cfg = cfg = list(cfg)
        par, off, inv_nb, inv_ni = self._par, self._obs_offset, self._inv_nb, self._inv_ni
        b_np, n_np, keys = self._batch_np, self._inst_np, self._cfg_keys
        cfg_info: dict[str, Any] = {}
        for m in range(self.n_models):
            b, n = cfg[2 * m], cfg[2 * m + 1]
            par[m, 0] = self.batch_sizes[b]
            par[m, 1] = n + 1
            off[7 * m + 5] = b * inv_nb
            off[7 * m + 6] = n * inv_ni
            kb, kn = keys[m]
            cfg_info[kb] = b_np[b]
            cfg_info[kn] = n_np[n]
        self._cfg_info = cfg_info
        self._mem_gb = self._memory(cfg) if mem_gb is None else mem_gb
        off[7 * self.n_models + 1] = self._mem_gb / self.usable_memory_gb

    def _set_levels(self, levels: tuple[int, int, int]) -> None:
        """Serve at clock levels ``levels`` from now on."""
        self._levels = levels
        self._idx = idx = int(self.device_spec.flat_index(levels))
        t = self.tables
        # (a table of its own: a view costs the kernel's dispatch more than this copy once per change)
        self.server.bind(t.table[idx].copy(), self._par, float(t.floor_w[idx]), float(t.cpu_busy_w[idx]))
        self._set_clock_obs()

    def _set_clock_obs(self) -> None:
        f, lv = self._freqs, self._levels
        self._clock_info = {CPU_HZ: f[0][lv[0]], GPU_HZ: f[1][lv[1]], EMC_HZ: f[2][lv[2]]}
        if self.control_clocks:
            i0, im = 7 * self.n_models + 3, self._inv_max
            self._obs_offset[i0:i0 + 3] = (lv[0] * im[0], lv[1] * im[1], lv[2] * im[2])

    def _observe(self) -> np.ndarray:
        v = self.server.out.ravel()[self._obs_idx]
        v *= self._obs_scale
        v += self._obs_offset
        _clip(v, self._low64, self._high64, out=v)
        return v.astype(np.float32)

    def _info(self, refused: bool, pen: float, k: int) -> dict[str, Any]:
        flat = self.server.out.ravel()
        fv = flat[self._f_idx]
        fv *= self._f_scale
        info: dict[str, Any] = dict(zip(self._f_keys, fv))
        info.update(zip(self._i_keys, flat[self._i_idx].astype(np.int64)))
        info[MEMORY_GB] = np.float64(self._mem_gb)
        info[REWARD_MEMORY] = np.float64(pen)
        info[REFUSED] = np.True_ if refused else np.False_
        ints = self._interval_ints
        info[INTERVAL] = ints[k + 1] if k + 1 < len(ints) else np.int64(k)
        info.update(self._cfg_info)
        info.update(self._clock_info)
        return info
