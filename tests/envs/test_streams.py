"""Every env and sub-env owns its frame stream: same seed ⇒ same trajectory in single, sync, async and native
vector envs, also when the workload is a user's FrameSource object (issue 12, finding 6)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import e4gym  # noqa: F401
from e4gym.workload.synthetic import SyntheticVideo

ENV_ID = "e4gym/EarlyExitDVFS-v1"


def _single(seed: int, steps: int, **kw) -> np.ndarray:
    env = gym.make(ENV_ID, **kw)
    obs = [env.reset(seed=seed)[0]]
    for k in range(steps):
        obs.append(env.step(np.array([k % 5, 10, 7]))[0])
    env.close()
    return np.array(obs)


def _vector(mode: str, seed: int, steps: int, n: int = 2, **kw) -> np.ndarray:
    envs = gym.make_vec(ENV_ID, num_envs=n, vectorization_mode=mode, **kw)
    obs = [envs.reset(seed=seed)[0]]
    for k in range(steps):
        obs.append(envs.step(np.tile([k % 5, 10, 7], (n, 1)))[0])
    envs.close()
    return np.array(obs)  # (steps + 1, n, obs)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_sub_envs_of_a_frame_source_workload_own_their_streams(mode: str) -> None:
    src = SyntheticVideo([0.4, 0.5, 0.6, 0.7, 0.78], fps=30.0)
    vec = _vector(mode, seed=5, steps=12, workload=src, episode_frames=50)
    for i in range(2):
        alone = _single(5 + i, 12, workload=src, episode_frames=50)
        np.testing.assert_array_equal(vec[:, i], alone)
    assert not np.array_equal(vec[:, 0], vec[:, 1])
    # The user's object was copied, never advanced: its first frame is still frame 0.
    assert src.next().index == 0


def test_same_seed_same_trajectory_single_sync_async_native() -> None:
    single = [_single(3 + i, 10, episode_frames=40) for i in range(2)]
    for mode in ("sync", "async", "vector_entry_point"):
        vec = _vector(mode, seed=3, steps=10, episode_frames=40)
        for i in range(2):
            np.testing.assert_allclose(vec[:, i], single[i], rtol=1e-5, atol=1e-6, err_msg=mode)
