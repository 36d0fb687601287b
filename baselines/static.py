"""Static DVFS baselines: a fixed clock setting, and the best one by a full CPU × GPU sweep (Dutt et al.).

Dutt et al. observe that on Jetson boards the *best static* setting (one CPU and one GPU frequency held for the
whole stream, chosen offline) saves energy against the kernel's default governors. :func:`sweep_setup`
evaluates every allowed ``(cpu, gpu)`` level pair, with the memory clock at its highest allowed level, on a
*measured* cost model (:class:`~e4gym.hardware.costmodel.MeasuredCostModel`: the frame run on the backend at
every pair, the power monitor's energy and the measured idle power; the env's own through
``PolicyContext.cost_model``, or one measured on a separate emulated board), charging each frame its run
energy plus the idle energy until the next frame arrives (streaming time, as the env does). The sweep is
offline work: its runs, board time and energy are in the cost model's ``offline`` figures, which the harness
reports apart from the episode. :func:`best_static` returns the cheapest setting that meets the deadline as a
:class:`StaticPolicy`.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from e4gym.dnn.profile import ModelProfile
from e4gym.envs.common import EnvSetup, resolve_setup
from e4gym.errors import ConfigError, SettingError
from e4gym.hardware.costmodel import MeasuredCostModel, best_pair, emulated_cost_model
from e4gym.hardware.spec import DeviceSpec
from e4gym.policy import FixedActionPolicy, PolicyContext

#: Default latency headroom of the sweeps: a setting is feasible when ``latency · (1 + margin)`` fits the
#: deadline. It covers the emulator's multiplicative latency noise (σ = 2 %) and DVFS transition stalls.
DEFAULT_MARGIN = 0.1


@dataclass(frozen=True)
class StaticSweep:
    """Cost of one exit at every allowed ``(cpu, gpu)`` level pair (EMC at its top allowed level): measured
    (:func:`sweep_setup`) or, for the clairvoyant oracle, the noise-free analytic model.

    Arrays have shape ``(max_cpu_level + 1, max_gpu_level + 1)``: the levels the power mode allows (the
    device's full ``(n_cpu, n_gpu)`` tables when the mode caps nothing).

    Attributes:
        exit: the exit evaluated (0-based, resolved from ``-1``).
        latency_s: run latency of one frame (s).
        energy_j: energy per frame in streaming time (J): the run plus the idle time until the next arrival
            at the idle power of the same clocks (no idle when the run is longer than the frame period).
        feasible: ``latency_s · (1 + margin) <= min(deadline_s, period_s)``.
        cpu_hz / gpu_hz: the level tables (Hz) of the rows / columns. emc_level: the EMC level used.
        deadline_s / period_s / margin: the constraint used (s, s, fraction).
        best: the chosen ``(cpu_level, gpu_level)``: the cheapest feasible pair, or the fastest pair if none is.
        meets_deadline: whether ``best`` is feasible.
    """

    exit: int
    latency_s: np.ndarray
    energy_j: np.ndarray
    feasible: np.ndarray
    cpu_hz: np.ndarray
    gpu_hz: np.ndarray
    emc_level: int
    deadline_s: float
    period_s: float
    margin: float
    best: tuple[int, int]
    meets_deadline: bool

    @property
    def best_latency_s(self) -> float:
        """Noise-free latency of the chosen setting (s)."""
        return float(self.latency_s[self.best])

    @property
    def best_energy_j(self) -> float:
        """Noise-free streaming energy per frame of the chosen setting (J)."""
        return float(self.energy_j[self.best])


def sweep_setup(setup: EnvSetup, exit: int = -1, margin: float = DEFAULT_MARGIN,
                cost_model: MeasuredCostModel | None = None) -> StaticSweep:
    """The :class:`StaticSweep` of ``exit`` for a resolved env setup (device, model, power mode, fps, deadline),
    on ``cost_model`` (default: one measured on a separate emulated board of the setup's configuration).

    Raises:
        ConfigError: ``exit`` is not an exit of the model, or ``margin`` is not a finite number >= 0.
    """
    spec: DeviceSpec = setup.spec
    profile: ModelProfile = setup.profile
    ex = resolve_exit(exit, profile.n_exits)
    check_margin(margin)
    cm = cost_model if cost_model is not None else emulated_cost_model(setup)
    lat, energy = cm.streaming(profile.frame_work(ex), setup.period_s)
    k = cm.emc_index(setup.max_levels[2])
    lat, energy = lat[:, :, k], energy[:, :, k]
    feasible = lat * (1.0 + margin) <= min(setup.deadline_s, setup.period_s)
    best, ok = best_pair(energy, feasible, lat)
    mc, mg, me = setup.max_levels
    return StaticSweep(
        exit=ex, latency_s=lat, energy_j=energy, feasible=feasible,
        cpu_hz=np.asarray(spec.cpu_freqs_hz[: mc + 1]), gpu_hz=np.asarray(spec.gpu_freqs_hz[: mg + 1]),
        emc_level=me, deadline_s=setup.deadline_s, period_s=setup.period_s, margin=float(margin),
        best=best, meets_deadline=ok,
    )


def check_margin(margin: object) -> None:
    """Raise ConfigError unless ``margin`` is a finite number >= 0 (fraction of latency headroom)."""
    if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not (math.isfinite(margin) and margin >= 0):
        raise ConfigError(f"margin must be a finite number >= 0 (fraction of latency headroom), got {margin!r}")


def resolve_exit(exit: int, n_exits: int) -> int:
    """``exit`` as a 0-based index (``-1``: the last exit). Raises ConfigError if out of range."""
    if isinstance(exit, bool) or not isinstance(exit, (int, np.integer)) or not -n_exits <= exit < n_exits:
        raise ConfigError(f"exit must be an integer in 0..{n_exits - 1} (or -1 for the last exit), got {exit!r}")
    return int(exit) % n_exits


def best_static_sweep(
    device: str | DeviceSpec,
    model: str | ModelProfile = "efficientnet_b0",
    exit: int = -1,
    deadline_ms: float | None = None,
    fps: float = 30.0,
    power_mode: str | None = None,
    margin: float = DEFAULT_MARGIN,
) -> StaticSweep:
    """Dutt et al.'s full CPU × GPU sweep of ``model`` exiting at ``exit`` on ``device`` (see :class:`StaticSweep`).

    Args:
        device / model / power_mode: as for the envs. fps: stream frame rate (frames/s).
        deadline_ms: per-frame deadline (ms); default the frame period.
        margin: latency headroom (fraction) a feasible setting keeps for noise and DVFS stalls.
    """
    setup = resolve_setup(device=device, model=model, fps=fps, deadline_ms=deadline_ms, power_mode=power_mode)
    return sweep_setup(setup, exit, margin)


class StaticPolicy(FixedActionPolicy):
    """A fixed clock setting and exit for every frame (``predict`` ignores the observation).

    Args:
        cpu_level / gpu_level: level indices into the device's CPU / GPU tables (0 = lowest).
        exit: the exit every frame takes (0-based; ``-1``: the last, the full network).
        emc_level: memory level; ``None`` leaves EMC at its highest allowed level. Setting it makes the
            policy ask for an env with ``control_memory=True`` (``env_kwargs``).
        name: display name.

    The levels are checked against the env's device and power mode by :meth:`check_setup`: when the benchmark
    harness validates a config (before any task runs) and at :meth:`bind` (:class:`SettingError` naming the
    allowed range).
    """

    clairvoyant = False

    def __init__(self, cpu_level: int, gpu_level: int, exit: int = -1, emc_level: int | None = None,
                 name: str | None = None) -> None:
        for label, v in (("cpu_level", cpu_level), ("gpu_level", gpu_level), ("exit", exit), ("emc_level", emc_level)):
            if v is None and label == "emc_level":
                continue
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise SettingError(f"{label} must be an integer, got {v!r}")
        self.cpu_level, self.gpu_level, self.exit = int(cpu_level), int(gpu_level), int(exit)
        self.emc_level = None if emc_level is None else int(emc_level)
        self.name = name or f"static(cpu={self.cpu_level}, gpu={self.gpu_level}, exit={self.exit})"
        self.env_kwargs: dict[str, Any] = {} if emc_level is None else {"control_memory": True}
        #: Set by :func:`best_static`: the device the setting was chosen for (checked at bind).
        self.device_name: str | None = None
        #: Set by :func:`best_static`: the sweep the setting comes from.
        self.sweep: StaticSweep | None = None
        #: Set by :func:`best_static`: whether the chosen setting meets the deadline (noise-free, with margin).
        self.meets_deadline: bool | None = None
        self._action: np.ndarray | None = None

    def check_setup(self, setup: EnvSetup) -> None:
        """Check the setting against an env's resolved setup (device level tables, power mode, model's exits).

        The benchmark harness calls it for every scenario when it validates a config, before any task runs;
        :meth:`bind` calls it too.

        Raises:
            SettingError: a level outside ``0..highest allowed level`` of the power mode (the message names the
                level, the allowed range and the device's level count), or an exit the model does not have.
            ConfigError: an EMC level on an env without ``control_memory``, or a :func:`best_static` policy
                bound to a different device.
        """
        s = setup
        if self.device_name is not None and s.spec.name != self.device_name:
            raise ConfigError(f"{self.name} was chosen for '{self.device_name}' but the env runs '{s.spec.name}'")
        mx = s.max_levels
        n_levels = s.spec.n_levels
        checks = [("cpu_level", self.cpu_level, mx[0], n_levels[0]), ("gpu_level", self.gpu_level, mx[1], n_levels[1])]
        if self.emc_level is not None:
            if not s.control_memory:
                raise ConfigError(f"{self.name} sets the EMC level: build the env with control_memory=True")
            checks.append(("emc_level", self.emc_level, mx[2], n_levels[2]))
        for label, v, hi, n in checks:
            if not 0 <= v <= hi:
                capped = "" if hi == n - 1 else f" (the device has {n} levels; the power mode caps them)"
                raise SettingError(
                    f"{self.name}: {label}={v} is outside the allowed levels 0..{hi} of {s.spec.name} "
                    f"in power mode {s.power_mode}{capped}; pass a {label} in 0..{hi}"
                )
        n = s.profile.n_exits
        if not -n <= self.exit < n:
            raise SettingError(f"{self.name}: exit={self.exit} is outside 0..{n - 1} (or -1) of {s.profile.name}; "
                               f"pass an exit in that range")

    def bind(self, context: PolicyContext) -> None:
        """Check the setting against the env's device and power mode (:meth:`check_setup`) and build the action.

        Raises:
            SettingError / ConfigError: see :meth:`check_setup`.
        """
        s = context.setup
        self.check_setup(s)
        mx = s.max_levels
        n = s.profile.n_exits
        vals = [self.exit % n, self.cpu_level, self.gpu_level]
        if s.control_memory:
            vals.append(mx[2] if self.emc_level is None else self.emc_level)
        self._action = np.array(vals, dtype=np.int64)

    def __repr__(self) -> str:
        return f"StaticPolicy({self.name})"


def best_static(
    device: str | DeviceSpec,
    model: str | ModelProfile = "efficientnet_b0",
    exit: int = -1,
    deadline_ms: float | None = None,
    fps: float = 30.0,
    power_mode: str | None = None,
    margin: float = DEFAULT_MARGIN,
) -> StaticPolicy:
    """The best static ``(cpu, gpu)`` setting (Dutt et al.): the lowest streaming energy per frame that meets
    the deadline, from :func:`best_static_sweep` (same arguments).

    The returned policy carries the sweep (``policy.sweep``) and ``policy.meets_deadline``; when no setting
    meets the deadline it is the fastest one and a ``RuntimeWarning`` says so.
    """
    setup = resolve_setup(device=device, model=model, fps=fps, deadline_ms=deadline_ms, power_mode=power_mode)
    sw = sweep_setup(setup, exit, margin)
    spec_name = setup.spec.name
    c, g = sw.best
    pol = StaticPolicy(c, g, exit=exit, name=f"best_static(cpu={c}, gpu={g}, exit={sw.exit})")
    pol.device_name = spec_name
    pol.sweep = sw
    pol.meets_deadline = sw.meets_deadline
    if not sw.meets_deadline:
        warnings.warn(
            f"no static setting of {spec_name} meets the {sw.deadline_s * 1e3:.3g} ms deadline at exit {sw.exit} "
            f"(with {sw.margin:.0%} headroom); best_static picked the fastest (cpu={c}, gpu={g}, "
            f"{sw.best_latency_s * 1e3:.3g} ms)",
            RuntimeWarning,
            stacklevel=2,
        )
    return pol


class BestStaticPolicy(StaticPolicy):
    """:func:`best_static` chosen at :meth:`bind` for whatever env it is bound to (the harness's form).

    :func:`best_static` needs the device and deadline up front; this policy runs the same sweep
    (:func:`sweep_setup`) on the env's own setup when it is bound, so one entry in a benchmark config covers
    every device, model and deadline of the matrix.

    Args:
        exit: the exit every frame takes (0-based; ``-1``: the last).
        margin: latency headroom (fraction) a feasible setting keeps for noise and DVFS stalls.
        name: display name.
    """

    def __init__(self, exit: int = -1, margin: float = DEFAULT_MARGIN, name: str = "best_static") -> None:
        super().__init__(0, 0, exit=exit, name=name)
        check_margin(margin)
        self.margin = margin

    def bind(self, context: PolicyContext) -> None:
        """Sweep the env's device for ``exit`` and hold the cheapest setting that meets its deadline."""
        self._cost_model = context.cost_model
        sw = sweep_setup(context.setup, self.exit, self.margin, cost_model=self._cost_model)
        self.cpu_level, self.gpu_level = sw.best
        self.sweep = sw
        self.meets_deadline = sw.meets_deadline
        super().bind(context)

    def stats(self) -> dict[str, float]:
        """The offline sweep's cost (runs, board time s, monitor energy J of the cost model it used)."""
        cm = getattr(self, "_cost_model", None)
        return cm.stats() if cm is not None else {}

    def __repr__(self) -> str:
        return f"BestStaticPolicy(exit={self.exit}, margin={self.margin})"
