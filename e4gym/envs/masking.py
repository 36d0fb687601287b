"""Action masking of clock settings that cannot meet the deadline (issue 21), from the *measured* cost model.

:class:`DeadlineFeasibleActions` wraps the frame env (``e4gym/EarlyExitDVFS-v1``): an action whose clock setting
cannot finish its exit within the deadline is replaced, before the env sees it, by a feasible setting for the same
exit. Feasibility comes from :meth:`e4gym.envs.base.StreamEnv.cost_model`, the cost model a controller on the
board obtains by running the network at each setting (on the emulator: a separate emulated board, never the
emulator's own model), so a policy trained with the wrapper uses only what a real controller could know.
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np

from e4gym.errors import ConfigError

__all__ = ["DEFAULT_FEASIBLE_MARGIN", "DeadlineFeasibleActions"]

#: Latency headroom of a feasible setting: ``latency · (1 + margin) <= min(deadline, frame period)``. The best
#: static sweep's 10 % (``baselines.static.DEFAULT_MARGIN``): it covers the 2 % latency noise and DVFS stalls.
DEFAULT_FEASIBLE_MARGIN = 0.1


class DeadlineFeasibleActions(gym.ActionWrapper):
    """Maps an action ``[exit, cpu, gpu(, emc)]`` whose setting cannot meet the deadline to one that can.

    A setting is feasible for exit ``e`` when the measured latency of a frame leaving at ``e`` there, times
    ``1 + margin``, fits the deadline and the frame period. The rule, per exit ``e`` and requested setting ``s``:

    1. ``s`` feasible: kept;
    2. else the feasible setting with the least measured streaming energy (run plus idle wait to the next frame)
       among those whose every level is at least ``s``'s ("raise the clocks until it fits");
    3. else (no such setting) the feasible setting with the least streaming energy for ``e``;
    4. else (``e`` fits at no setting) ``e`` at the setting with the least measured latency.

    The exit is never changed (the accuracy stays the policy's choice). The action space is unchanged.
    ``mapping[e, cpu, gpu, emc]`` holds the levels each action becomes; ``feasible[e, cpu, gpu, emc]`` which
    were kept. The table is built once, for the env's scenario (device, model, fps, deadline) at construction.

    Args:
        env: the frame env (its action's first component is the exit), possibly under observation wrappers.
        margin: the latency headroom (fraction, >= 0).
        cost_model: the measured cost model to map with (default: ``env.unwrapped.cost_model()``; see
            :meth:`use_cost_model`).

    Raises:
        ConfigError: not a frame env's ``MultiDiscrete`` exit-and-levels action, or a bad ``margin``.
    """

    def __init__(self, env: gym.Env, margin: float = DEFAULT_FEASIBLE_MARGIN, cost_model: Any = None) -> None:
        super().__init__(env)
        if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not (math.isfinite(margin)
                                                                                  and margin >= 0):
            raise ConfigError(f"margin must be a finite number >= 0 (fraction of latency headroom), got {margin!r}")
        base = env.unwrapped
        names = tuple(getattr(base, "action_names", ()))
        space = env.action_space
        if not (isinstance(space, gym.spaces.MultiDiscrete) and names[:1] == ("exit",)
                and hasattr(base, "cost_model") and hasattr(base, "setup")):
            raise ConfigError(f"DeadlineFeasibleActions wraps the frame env's [exit, cpu, gpu(, emc)] action, got "
                              f"{space} with components {list(names)}; use it on e4gym/EarlyExitDVFS-v1 without an "
                              "action wrapper")
        self.margin = float(margin)
        self._nvec = [int(n) for n in space.nvec]
        self._emc_action = len(self._nvec) > 3
        self.use_cost_model(base.cost_model() if cost_model is None else cost_model)

    def use_cost_model(self, cm: Any) -> None:
        """Build the mapping from the measured cost model ``cm`` (a
        :class:`~e4gym.hardware.costmodel.MeasuredCostModel` of this env's board: by default the env's own
        ``cost_model()``; a harness policy passes its ``PolicyContext.cost_model``, the real board's on a board)."""
        s = self.env.unwrapped.setup
        nvec = self._nvec
        n_exits, n_cpu, n_gpu = nvec[:3]
        n_emc = nvec[3] if self._emc_action else 1
        budget = min(s.deadline_s, s.period_s)
        emc_index = (np.array([cm.emc_index(m) for m in range(n_emc)]) if self._emc_action
                     else np.array([cm.emc_index(s.max_levels[2])]))
        self.mapping = np.zeros((n_exits, n_cpu, n_gpu, n_emc, 3), dtype=np.int64)
        self.feasible = np.zeros((n_exits, n_cpu, n_gpu, n_emc), dtype=bool)
        for e in range(n_exits):
            lat, energy = cm.streaming(s.profile.frame_work(e), s.period_s)
            lat, energy = lat[:n_cpu, :n_gpu][:, :, emc_index], energy[:n_cpu, :n_gpu][:, :, emc_index]
            ok = lat * (1.0 + self.margin) <= budget
            self.feasible[e] = ok
            cost = np.where(ok, energy, np.inf)
            cheapest = np.unravel_index(int(np.argmin(cost)), cost.shape) if ok.any() else \
                np.unravel_index(int(np.argmin(lat)), lat.shape)
            best, where = _suffix_argmin(cost)  # least cost over every setting with levels >= each one
            fallback = np.array(cheapest)
            here = np.stack(np.unravel_index(np.arange(cost.size).reshape(cost.shape), cost.shape), axis=-1)
            raised = np.stack(np.unravel_index(where, cost.shape), axis=-1)
            self.mapping[e] = np.where(ok[..., None], here, np.where(np.isfinite(best)[..., None], raised, fallback))

    def action(self, action: Any) -> np.ndarray:
        """The env's action for ``action``: its exit, at a setting that meets the deadline when one exists."""
        if not self.action_space.contains(np.asarray(action, dtype=np.int64)):
            return action  # not an action of the space: the env names what is wrong with it
        a = np.asarray(action, dtype=np.int64).reshape(-1)
        e, c, g = int(a[0]), int(a[1]), int(a[2])
        m = int(a[3]) if self._emc_action else 0
        levels = self.mapping[e, c, g, m]
        return np.array([e, levels[0], levels[1]] + ([levels[2]] if self._emc_action else []), dtype=np.int64)


def _suffix_argmin(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For every cell ``(c, g, m)`` of a 3-D array, the least value over ``cost[c:, g:, m:]`` and its flat index
    (a suffix minimum along each axis in turn; ties keep the lower levels)."""
    val = np.array(cost, dtype=np.float64)
    idx = np.arange(val.size).reshape(val.shape)
    for axis in range(val.ndim):
        v, i = np.moveaxis(val, axis, 0), np.moveaxis(idx, axis, 0)  # views: updated in place
        for k in range(v.shape[0] - 2, -1, -1):
            better = v[k + 1] < v[k]
            v[k] = np.where(better, v[k + 1], v[k])
            i[k] = np.where(better, i[k + 1], i[k])
    return val, idx
