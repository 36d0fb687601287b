"""Multi-exit networks, their cost profiles and the unit of work backends run.

Importing this package does not import torch: the profiles (:mod:`e4gym.dnn.profile`) and :class:`Work`
(:mod:`e4gym.dnn.work`: what a frame, a block or an exit head costs, per block) are plain data.
The PyTorch networks live in :mod:`e4gym.dnn.nets` and :mod:`e4gym.dnn.multiexit`.
"""

from e4gym.dnn.profile import BlockCost, ExitSpec, ModelProfile, available_models, load_model_profile
from e4gym.dnn.work import Work

__all__ = ["BlockCost", "ExitSpec", "ModelProfile", "Work", "available_models", "load_model_profile"]
