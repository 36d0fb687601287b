"""The Gymnasium environments, their native vector version and wrappers.

- :class:`EarlyExitDVFSEnv` (``e4gym/EarlyExitDVFS-v1``): one step is one frame.
- :class:`EarlyExitDVFSBlockEnv` (``e4gym/EarlyExitDVFSBlock-v1``): one step is one DNN block.
- :class:`EarlyExitDVFSVectorEnv`: N frame envs stepped in one NumPy call (the frame env's
  ``vector_entry_point``).
"""

from __future__ import annotations

from e4gym.envs.block import EarlyExitDVFSBlockEnv
from e4gym.envs.common import EnvSetup, resolve_setup
from e4gym.envs.core import (
    COST_KEYS,
    INFO_KEYS,
    Constraints,
    EnvConfig,
    FrameOutcome,
    FrameReward,
    ObsBuilder,
    ObsField,
    RewardWeights,
)
from e4gym.envs.frame import EarlyExitDVFSEnv
from e4gym.envs.frame_vector import EarlyExitDVFSVectorEnv
from e4gym.envs.masking import DeadlineFeasibleActions
from e4gym.envs.wrappers import EPISODE_STAT_KEYS, ContinuousActions, DiscreteActions, EpisodeStats, SelectObservation

__all__ = [
    "COST_KEYS",
    "EPISODE_STAT_KEYS",
    "INFO_KEYS",
    "Constraints",
    "ContinuousActions",
    "DeadlineFeasibleActions",
    "DiscreteActions",
    "EarlyExitDVFSBlockEnv",
    "EarlyExitDVFSEnv",
    "EarlyExitDVFSVectorEnv",
    "EnvConfig",
    "EnvSetup",
    "EpisodeStats",
    "FrameOutcome",
    "FrameReward",
    "ObsBuilder",
    "ObsField",
    "RewardWeights",
    "SelectObservation",
    "resolve_setup",
]
