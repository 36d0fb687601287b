"""stable-baselines3 callbacks for the e4gym envs (this module imports stable-baselines3, hence torch).

:class:`EpisodeStatsCallback` logs the per-episode figures of :class:`e4gym.envs.wrappers.EpisodeStats` to
SB3's logger (TensorBoard, CSV, stdout), next to ``rollout/ep_rew_mean``::

    from stable_baselines3 import PPO
    from stable_baselines3.common.monitor import Monitor
    from e4gym.envs.callbacks import EpisodeStatsCallback
    from e4gym.envs.wrappers import EPISODE_STAT_KEYS, EpisodeStats

    env = Monitor(EpisodeStats(gym.make("e4gym/EarlyExitDVFS-v1")), info_keywords=EPISODE_STAT_KEYS)
    PPO("MlpPolicy", env, tensorboard_log="runs/").learn(100_000, callback=EpisodeStatsCallback())
"""

from __future__ import annotations

import math

from stable_baselines3.common.callbacks import BaseCallback

from e4gym.envs.wrappers import EPISODE_STAT_KEYS

__all__ = ["EPISODE_STAT_TAGS", "EpisodeStatsCallback"]

#: The logger tag of each :data:`~e4gym.envs.wrappers.EPISODE_STAT_KEYS` key: ``ep_`` dropped, under ``e4gym/``
#: (``e4gym/energy_per_frame_j``, ``e4gym/latency_p99_ms``, ``e4gym/deadline_miss_rate``, ``e4gym/accuracy``, ...).
EPISODE_STAT_TAGS: dict[str, str] = {k: f"e4gym/{k.removeprefix('ep_')}" for k in EPISODE_STAT_KEYS}


class EpisodeStatsCallback(BaseCallback):
    """Record the :class:`~e4gym.envs.wrappers.EpisodeStats` figures of every finished episode in SB3's logger.

    Each step, for every sub-env whose ``info`` carries the episode figures (the step its episode ended),
    each figure goes to ``self.logger.record_mean`` under :data:`EPISODE_STAT_TAGS` (e.g.
    ``e4gym/energy_per_frame_j`` in J, ``e4gym/latency_p99_ms`` in ms, ``e4gym/deadline_miss_rate``,
    ``e4gym/accuracy``): the logger writes the mean over the episodes that ended since its last dump (each
    rollout for PPO/A2C, every ``log_interval`` episodes for DQN/SAC/TD3). NaN figures (an episode without a
    finished frame) are skipped. Works with or without SB3's ``Monitor``; the env (or each sub-env of a
    vector env) must be wrapped in ``EpisodeStats``.

    Args:
        verbose: SB3 verbosity (0: silent).
    """

    def __init__(self, verbose: int = 0) -> None:
        super().__init__(verbose)
        #: Episodes whose figures were recorded so far.
        self.n_episodes = 0

    def _on_step(self) -> bool:
        infos = self.locals.get("infos")
        if not infos:
            return True
        for info in infos:
            if not isinstance(info, dict) or EPISODE_STAT_KEYS[0] not in info:
                continue
            self.n_episodes += 1
            for key, tag in EPISODE_STAT_TAGS.items():
                value = info.get(key)
                if value is None:
                    continue
                value = float(value)
                if math.isfinite(value):
                    self.logger.record_mean(tag, value)
        return True
