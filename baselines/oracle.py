"""The clairvoyant oracle: knows each frame's per-exit correctness and picks the cheapest way to get it right.

It is a lower bound on energy (for the accuracy it achieves: every frame any exit gets right), not a
deployable policy: it reads the future through :meth:`e4gym.policy.PolicyContext.upcoming_frame`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from baselines.static import DEFAULT_MARGIN, StaticSweep, check_margin, resolve_exit
from e4gym.envs.common import EnvSetup
from e4gym.errors import ConfigError
from e4gym.hardware.costmodel import best_pair
from e4gym.hardware.model import grid_cost
from e4gym.policy import PolicyContext, not_bound


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


def _through_switch(old_s: Any, new_s: Any, delay_s: Any) -> Any:
    """A frame's latency (s) when it starts at a setting where it takes ``old_s`` and switches to one where it
    takes ``new_s``: it runs at the old setting until the switch takes effect after ``delay_s``, then at the new
    one for the rest of its work (arrays broadcast)."""
    done = np.minimum(delay_s / old_s, 1.0)  # share of the frame's work done at the old setting
    return np.where(delay_s >= old_s, old_s, delay_s + (1.0 - done) * new_s)


class ClairvoyantOracle:
    """Earliest correct exit, cheapest ``(cpu, gpu)`` setting that meets the deadline for that exit.

    At :meth:`bind` it runs :func:`analytic_sweep` for every exit (the emulator's noise-free streaming energy
    per frame, J; feasible when ``latency · (1 + margin)`` fits the deadline and the frame period, s). Each
    step it reads the upcoming frame's per-exit correctness, takes the earliest correct exit and that exit's
    cheapest feasible setting (the fastest one when none is feasible).

    **Switches are planned.** A clock change takes effect only after its domain's delay (the model's
    ``transition_delay_s``: 1 ms CPU, 5 ms GPU by default); until then the frame runs at the previous setting. So
    when the setting would change, the latency of each candidate is that of the frame run at the previous setting
    for the delay and at the candidate for the rest of its work, and the cheapest candidate whose latency fits is
    taken (without this, a bound that switches every few frames missed up to 8 % of 12–20 ms deadlines). And
    it only takes **safe** settings: those from which the fastest setting still runs the last exit within the
    deadline through the switch, so that whatever the next frame needs stays reachable (without this, tight
    deadlines still saw up to 5 % misses).

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
        self._prev: tuple[int, int] | None = None  # the (cpu, gpu) levels requested for the previous frame
        self._budget_s = math.inf
        self._delays = (0.0, 0.0)
        self._safe = np.ones((1, 1), bool)

    def bind(self, context: PolicyContext) -> None:
        """Precompute the best setting of every exit for the env's device, model, power mode and deadline."""
        s = context.setup
        self.sweeps = tuple(analytic_sweep(s, e, self.margin) for e in range(s.profile.n_exits))
        extra = [s.max_levels[2]] if s.control_memory else []
        self._budget_s = min(s.deadline_s, s.period_s) / (1.0 + self.margin)
        self._delays = (float(s.spec.model.transition_delay_s[0]), float(s.spec.model.transition_delay_s[1]))
        last = self.sweeps[-1].latency_s
        top = np.unravel_index(np.argmin(last), last.shape)
        # Safe settings: from each, a switch to the fastest setting still runs the last exit in the budget.
        self._safe = _through_switch(last, last[top], self._switch_delay(last.shape, top)) <= self._budget_s
        self._actions = [np.array([sw.exit, *self._pick(sw.energy_j, sw.feasible, sw.latency_s), *extra],
                                  dtype=np.int64) for sw in self.sweeps]
        self._prev = None
        self._ctx = context

    def predict(self, observation: np.ndarray, state: Any = None, episode_start: np.ndarray | None = None,
                deterministic: bool = True) -> tuple[np.ndarray, Any]:
        """The action for the upcoming frame ``(exit, cpu_level, gpu_level[, emc_level])``.

        Raises:
            ConfigError: not bound to an env, or the env cannot show the upcoming frame.
        """
        if self._ctx is None:
            raise not_bound(self.name)
        correct = np.asarray(self._ctx.upcoming_frame().correct, bool)
        ex = int(np.argmax(correct)) if correct.any() else (len(self._actions) - 1 if self.hopeless == "last" else 0)
        action = self._actions[ex].copy()
        prev, best = self._prev, (int(action[1]), int(action[2]))
        if prev is not None and prev != best:
            action[1], action[2] = self._from(self.sweeps[ex], prev)
        self._prev = (int(action[1]), int(action[2]))
        return action, state

    def _from(self, sweep: StaticSweep, prev: tuple[int, int]) -> tuple[int, int]:
        """The cheapest ``(cpu, gpu)`` levels for ``sweep``'s exit coming from ``prev``: the frame runs at ``prev``
        until the slowest changed domain's delay has passed (s), then at the new levels; the fastest if none fits."""
        lat = sweep.latency_s
        eff = _through_switch(lat[prev], lat, self._switch_delay(lat.shape, prev))
        return self._pick(sweep.energy_j, eff <= self._budget_s, eff)

    def _switch_delay(self, shape: tuple[int, ...], other: tuple[Any, Any]) -> np.ndarray:
        """Per ``(cpu, gpu)`` setting of a grid of ``shape``, the delay (s) until a switch between it and the
        setting ``other`` takes effect: the slowest changed domain's."""
        rows, cols = np.arange(shape[0])[:, None], np.arange(shape[1])[None, :]
        return np.maximum((rows != other[0]) * self._delays[0], (cols != other[1]) * self._delays[1])

    def _pick(self, energy: np.ndarray, fits: np.ndarray, latency: np.ndarray) -> tuple[int, int]:
        """The cheapest setting that fits and is safe; else the cheapest that fits; else the fastest."""
        for ok in (fits & self._safe, fits):
            if ok.any():
                i = np.unravel_index(np.argmin(np.where(ok, energy, np.inf)), energy.shape)
                return int(i[0]), int(i[1])
        i = np.unravel_index(np.argmin(latency), latency.shape)
        return int(i[0]), int(i[1])

    def reset(self) -> None:
        """Forget the previous frame's setting (a new episode starts from the board's reset levels)."""
        self._prev = None

    def __repr__(self) -> str:
        return f"ClairvoyantOracle(margin={self.margin}, hopeless={self.hopeless!r})"
