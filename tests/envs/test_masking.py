"""DeadlineFeasibleActions (e4gym/envs/masking.py, issue 21): settings that cannot meet the deadline, by the
measured cost model, are raised to feasible ones; the exit is the policy's."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import e4gym  # noqa: F401
from e4gym.envs.masking import DeadlineFeasibleActions
from e4gym.errors import ConfigError


def test_the_mapping_keeps_feasible_settings_and_raises_the_others_to_the_cheapest_feasible() -> None:
    env = gym.make("e4gym/EarlyExitDVFS-v1", device="xavier-nx", episode_frames=300)
    masked = DeadlineFeasibleActions(env)
    base = env.unwrapped
    cm, s = base.cost_model(), base.setup
    for e in range(s.profile.n_exits):
        lat, energy = cm.streaming(s.profile.frame_work(e), s.period_s)
        ok = lat * 1.1 <= min(s.deadline_s, s.period_s)
        np.testing.assert_array_equal(masked.feasible[e], ok)
        cost = np.where(ok, energy, np.inf)
        for c in range(0, 25, 3):
            for g in range(0, 15, 2):
                out = masked.action(np.array([e, c, g]))
                assert out[0] == e
                if ok[c, g, 0]:
                    assert tuple(out[1:]) == (c, g)
                elif np.isfinite(cost[c:, g:]).any():  # raised: every level >= the request, the least energy
                    assert out[1] >= c and out[2] >= g and cost[out[1], out[2], 0] == cost[c:, g:].min()
                else:
                    assert cost[out[1], out[2], 0] == cost.min()
    # Random actions through the mask rarely miss; without it the queue never drains.
    rng = np.random.default_rng(0)
    missed = {}
    for name, e in (("masked", masked), ("raw", env)):
        e.reset(seed=7)
        missed[name] = np.mean([e.step(rng.integers(env.action_space.nvec))[4]["cost_miss"] for _ in range(300)])
    assert missed["masked"] < 0.1 < 0.9 < missed["raw"]


def test_only_the_frame_env_and_a_valid_margin_are_taken() -> None:
    with pytest.raises(ConfigError, match="wraps the frame env"):
        DeadlineFeasibleActions(gym.make("e4gym/EarlyExitDVFSBlock-v1", device="xavier-nx"))
    with pytest.raises(ConfigError, match="margin must be"):
        DeadlineFeasibleActions(gym.make("e4gym/EarlyExitDVFS-v1", device="xavier-nx"), margin=-0.1)
