"""The clairvoyant oracle: knows each frame's per-exit correctness and picks the cheapest way to get it right.

It is a lower bound on energy (for the accuracy it achieves: every frame any exit gets right), not a
deployable policy: it reads the future through :meth:`e4gym.policy.PolicyContext.upcoming_frame`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from baselines.static import DEFAULT_MARGIN, StaticSweep, check_margin, resolve_exit
from e4gym.envs.common import EnvSetup
from e4gym.errors import ConfigError
from e4gym.hardware.costmodel import best_pair
from e4gym.hardware.model import grid_cost
from e4gym.policy import PolicyContext


def analytic_sweep(setup: EnvSetup, exit: int = -1, margin: float = DEFAULT_MARGIN) -> StaticSweep:
    """The :class:`~baselines.static.StaticSweep` of ``exit`` on the emulator's *noise-free analytic model*
    (:func:`e4gym.hardware.model.grid_cost`, at ambient temperature): what only a clairvoyant bound may read.

    Raises:
        ConfigError: ``exit`` is not an exit of the model, or ``margin`` is not a finite number >= 0.
    """
    ex = resolve_exit(exit, setup.profile.n_exits)
    check_margin(margin)
    g = grid_cost(setup.spec, setup.profile.frame_work(ex), power_mode=setup.power_mode, period_s=setup.period_s,
                  ambient_c=setup.cooling.ambient_c)
    feasible = g.latency_s * (1.0 + margin) <= min(setup.deadline_s, setup.period_s)
    best, ok = best_pair(g.energy_j, feasible, g.latency_s)
    return StaticSweep(
        exit=ex, latency_s=g.latency_s, energy_j=g.energy_j, feasible=feasible, cpu_hz=g.cpu_hz, gpu_hz=g.gpu_hz,
        emc_level=g.emc_level, deadline_s=setup.deadline_s, period_s=setup.period_s, margin=float(margin),
        best=best, meets_deadline=ok,
    )


class ClairvoyantOracle:
    """Earliest correct exit, cheapest ``(cpu, gpu)`` setting that meets the deadline for that exit.

    At :meth:`bind` it runs :func:`analytic_sweep` for every exit (the emulator's noise-free streaming energy
    per frame, J; feasible when ``latency · (1 + margin)`` fits the deadline and the frame period, s). Each
    step it reads the upcoming frame's per-exit correctness, takes the earliest correct exit and that exit's
    cheapest feasible setting (the fastest one when none is feasible).

    A frame no exit gets right is wrong whatever runs. ``hopeless="last"`` (the default) runs it to the last
    exit, as a network without a clairvoyant exit rule would: the bound then isolates the cost of choosing
    exits among frames that can be answered. ``hopeless="first"`` stops it at the first exit, the cheapest:
    the strict lower bound on energy at the oracle's accuracy.

    Args:
        margin: latency headroom (fraction) for measurement noise and DVFS stalls.
        hopeless: ``"last"`` or ``"first"``: where frames that no exit gets right leave.
        name: display name.
    """

    clairvoyant = True

    def __init__(self, margin: float = DEFAULT_MARGIN, hopeless: str = "last", name: str = "oracle") -> None:
        if hopeless not in ("last", "first"):
            raise ConfigError(f"hopeless must be 'last' or 'first' (where frames no exit gets right leave), "
                              f"got {hopeless!r}")
        self.margin = margin
        self.hopeless = hopeless
        self.name = name
        self.env_kwargs: dict[str, Any] = {}
        self.sweeps: tuple[StaticSweep, ...] = ()
        self._ctx: PolicyContext | None = None
        self._actions: list[np.ndarray] = []

    def bind(self, context: PolicyContext) -> None:
        """Precompute the best setting of every exit for the env's device, model, power mode and deadline."""
        s = context.setup
        self.sweeps = tuple(analytic_sweep(s, e, self.margin) for e in range(s.profile.n_exits))
        extra = [s.max_levels[2]] if s.control_memory else []
        self._actions = [np.array([sw.exit, *sw.best, *extra], dtype=np.int64) for sw in self.sweeps]
        self._ctx = context

    def predict(self, observation: np.ndarray, state: Any = None, episode_start: np.ndarray | None = None,
                deterministic: bool = True) -> tuple[np.ndarray, Any]:
        """The action for the upcoming frame ``(exit, cpu_level, gpu_level[, emc_level])``.

        Raises:
            ConfigError: not bound to an env, or the env cannot show the upcoming frame.
        """
        if self._ctx is None:
            raise ConfigError(f"{self.name} is not bound to an env: call e4gym.policy.bind_policy(policy, env)")
        correct = np.asarray(self._ctx.upcoming_frame().correct, bool)
        ex = int(np.argmax(correct)) if correct.any() else (len(self._actions) - 1 if self.hopeless == "last" else 0)
        return self._actions[ex].copy(), state

    def reset(self) -> None:
        """Stateless: nothing to forget."""

    def __repr__(self) -> str:
        return f"ClairvoyantOracle(margin={self.margin}, hopeless={self.hopeless!r})"
